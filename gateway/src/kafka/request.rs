//! Decoding one request frame (header + body) and encoding one response frame.
//!
//! The frame is the payload after the 4-byte length prefix. Decoding checks the API key and version
//! against [`api_support::SUPPORTED_APIS`] before touching the body, so the body decoder only ever
//! sees versions this node advertises. This is also the entry point of the fuzz target.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::api_support;

/// A request this node will handle.
#[derive(Debug)]
pub struct Request {
    /// The API.
    pub api_key: ApiKey,
    /// The decoded request header (version, correlation id, client id).
    pub header: RequestHeader,
    /// The decoded body.
    pub body: RequestKind,
}

/// What a frame turned out to be.
#[derive(Debug)]
pub enum Decoded {
    /// A supported API at a supported version.
    Request(Box<Request>),
    /// ApiVersions at a version above what this node speaks: the reply is the v0 error response
    /// with the supported table, so the client retries with a version both sides know.
    UnsupportedApiVersions {
        /// The client's correlation id.
        correlation_id: i32,
        /// The version the client asked for.
        version: i16,
    },
}

/// Why a frame cannot be served; the connection is closed (Kafka does the same).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than api key + version + correlation id.
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    /// Not an API this node handles.
    #[error("unsupported API key {0}")]
    UnknownApiKey(i16),
    /// A handled API at a version this node does not speak.
    #[error("unsupported version {version} of {api:?} (supported {min}..={max})")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// Requested version.
        version: i16,
        /// Lowest supported.
        min: i16,
        /// Highest supported.
        max: i16,
    },
    /// The header does not decode.
    #[error("malformed request header: {0}")]
    Header(String),
    /// The body does not decode.
    #[error("malformed {api:?} v{version} request: {reason}")]
    Body {
        /// The API.
        api: ApiKey,
        /// Its version.
        version: i16,
        /// The decoder's message.
        reason: String,
    },
}

/// Decode one frame.
pub fn decode_request(frame: Bytes) -> Result<Decoded, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let mut peek = &frame[..8];
    let key = peek.get_i16();
    let version = peek.get_i16();
    let correlation_id = peek.get_i32();
    let support = api_support::supported(key).ok_or(DecodeError::UnknownApiKey(key))?;
    let api = support.key;
    if version < support.min || version > support.max {
        if api == ApiKey::ApiVersions && version > support.max {
            return Ok(Decoded::UnsupportedApiVersions {
                correlation_id,
                version,
            });
        }
        return Err(DecodeError::UnsupportedVersion {
            api,
            version,
            min: support.min,
            max: support.max,
        });
    }
    if support.closes_below > version {
        return Err(DecodeError::UnsupportedVersion {
            api,
            version,
            min: support.closes_below,
            max: support.max,
        });
    }
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, api.request_header_version(version))
        .map_err(|e| DecodeError::Header(e.to_string()))?;
    let body = RequestKind::decode(api, &mut buf, version).map_err(|e| DecodeError::Body {
        api,
        version,
        reason: format!("{e:#}"),
    })?;
    Ok(Decoded::Request(Box::new(Request {
        api_key: api,
        header,
        body,
    })))
}

/// Encode a response frame payload (header + body, without the length prefix).
pub fn encode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<Bytes> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api.response_header_version(version);
    let mut buf = BytesMut::with_capacity(header.compute_size(header_version)? + 256);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    fn frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn decodes_supported_requests() {
        for v in 0..=4 {
            let f = frame(ApiKey::ApiVersions, v, &ApiVersionsRequest::default());
            match decode_request(f).unwrap() {
                Decoded::Request(r) => {
                    assert_eq!(r.header.correlation_id, 42);
                    assert_eq!(r.header.request_api_version, v);
                    assert!(matches!(r.body, RequestKind::ApiVersions(_)));
                }
                other => panic!("{other:?}"),
            }
        }
        let f = frame(ApiKey::Metadata, 12, &MetadataRequest::default());
        assert!(matches!(decode_request(f).unwrap(), Decoded::Request(_)));
    }

    #[test]
    fn future_api_versions_gets_fallback() {
        let mut buf = BytesMut::new();
        buf.put_i16(18);
        buf.put_i16(99);
        buf.put_i32(7);
        buf.put_slice(b"whatever the future holds");
        match decode_request(buf.freeze()).unwrap() {
            Decoded::UnsupportedApiVersions {
                correlation_id,
                version,
            } => assert_eq!((correlation_id, version), (7, 99)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_frames() {
        assert!(matches!(
            decode_request(Bytes::from_static(b"\x00\x03")),
            Err(DecodeError::TooShort(2))
        ));
        let mut unknown = BytesMut::new();
        unknown.put_i16(1000);
        unknown.put_i16(0);
        unknown.put_i32(1);
        assert!(matches!(
            decode_request(unknown.freeze()),
            Err(DecodeError::UnknownApiKey(1000))
        ));
        // Produce v2 is advertised (like Kafka 4.0) but closes the connection.
        let mut old = BytesMut::new();
        old.put_i16(0);
        old.put_i16(2);
        old.put_i32(1);
        old.put_i16(-1);
        assert!(matches!(
            decode_request(old.freeze()),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        // Truncated body.
        let f = frame(ApiKey::Metadata, 12, &MetadataRequest::default());
        let cut = f.slice(..f.len() - 2);
        assert!(matches!(
            decode_request(cut),
            Err(DecodeError::Body { .. }) | Err(DecodeError::Header(_))
        ));
    }
}
#[cfg(test)]
mod hostile_input {
    use super::*;
    use bytes::BufMut;

    fn header(key: i16, version: i16) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_i16(key);
        b.put_i16(version);
        b.put_i32(1);
        b.put_i16(-1);
        b
    }

    /// A 14-byte request promising 2^31-1 topics used to abort the process in the codec's
    /// `Vec::with_capacity` (fixed in vendor/kafka-protocol).
    #[test]
    fn huge_array_length_is_an_error_not_an_abort() {
        let mut b = header(3, 1);
        b.put_i32(i32::MAX);
        assert!(matches!(
            decode_request(b.freeze()),
            Err(DecodeError::Body { .. })
        ));
        let mut b = header(3, 12);
        b.put_u8(0); // header tagged fields
        b.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]); // compact array of 2^31-2
        assert!(decode_request(b.freeze()).is_err());
    }

    /// Random bodies for every supported API and version never panic (a cheap, deterministic
    /// sibling of the cargo-fuzz target).
    #[test]
    fn random_bodies_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for api in api_support::SUPPORTED_APIS {
            for version in api.min..=api.max {
                for _ in 0..200 {
                    let mut b = header(api.key as i16, version);
                    let len = (next() % 64) as usize;
                    for _ in 0..len {
                        b.put_u8(next() as u8);
                    }
                    let _ = decode_request(b.freeze());
                }
            }
        }
    }
}
