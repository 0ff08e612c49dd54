//! Fuzz the Kafka request path: the frame payload (after the length prefix) through header and
//! body decoding exactly as the server does it. Must never panic or abort; every input either
//! decodes or returns a `DecodeError`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_gateway::kafka::request::{decode_request, Decoded};

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Request(req)) = decode_request(bytes::Bytes::copy_from_slice(data)) {
        // Decoded requests must carry the version that was checked against the table.
        assert!(rill_gateway::kafka::api_support::supported(req.api_key as i16).is_some());
    }
});
