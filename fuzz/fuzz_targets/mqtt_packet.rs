//! Fuzz MQTT packet decoding as a connection does it: the first bytes must be a CONNECT (level 4
//! or 5), then packets are decoded in a loop from the same buffer; every decoded packet is
//! re-encoded in the connection's protocol level, and topic names/filters go through validation,
//! matching and the mapping rules; AUTH packets (coded by Rill, see `codec`) are re-encoded and
//! must decode to themselves. Must never panic; every input decodes or returns an error.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rill_gateway::mqtt::codec::{Framer, Inbound};
use rill_gateway::mqtt::mapping::{Mapping, RuleConfig};
use rill_gateway::mqtt::topic;
use rumqttc::v5::mqttbytes::v5::Packet;

fuzz_target!(|data: &[u8]| {
    let mapping = Mapping::new(&[RuleConfig {
        pattern: "devices/{device}/telemetry".into(),
        topic: "telemetry".into(),
        key: Some("device".into()),
        payload: Default::default(),
    }])
    .expect("valid rule");
    let mut framer = Framer::new(64 * 1024);
    let mut buf = BytesMut::from(data);
    for _ in 0..64 {
        let before = buf.len();
        match framer.decode_inbound(&mut buf) {
            Ok(Some(Inbound::Auth(auth))) => {
                assert!(buf.len() < before, "a decoded packet consumed no bytes");
                let mut out = BytesMut::new();
                framer.encode_auth(&auth, &mut out);
                match framer.decode_inbound(&mut out) {
                    Ok(Some(Inbound::Auth(again))) => assert_eq!(again, auth),
                    other => panic!("re-encoded AUTH decodes as {other:?}"),
                }
            }
            Ok(Some(Inbound::Packet(packet))) => {
                assert!(buf.len() < before, "a decoded packet consumed no bytes");
                match &packet {
                    Packet::Publish(p) => {
                        if let Ok(name) = std::str::from_utf8(&p.topic) {
                            if topic::validate_name(name).is_ok() {
                                let route = mapping.route(name);
                                assert!(!route.log_topic.is_empty());
                            }
                        }
                    }
                    Packet::Subscribe(s) => {
                        for f in &s.filters {
                            if let Ok(sub) = topic::parse_subscription(&f.path) {
                                let _ = mapping.log_topics_for_filter(&sub.filter);
                                let _ = topic::matches(&sub.filter, "devices/d1/telemetry");
                            }
                        }
                    }
                    _ => {}
                }
                let mut out = BytesMut::new();
                let _ = framer.encode(packet, &mut out);
            }
            Ok(None) | Err(_) => break,
        }
    }
});
