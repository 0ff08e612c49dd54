//! SaslHandshake (key 17, v0-1): the client names its SASL mechanism; the answer lists the
//! enabled ones. v1 continues with SaslAuthenticate requests (KIP-152), v0 with raw SASL tokens
//! (see [`super::auth`]).

use kafka_protocol::messages::{ResponseKind, SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

use super::auth::Session;

/// Answer SaslHandshake.
pub fn handle(session: &mut Session, version: i16, req: SaslHandshakeRequest) -> ResponseKind {
    let (error_code, enabled) = session.handshake(req.mechanism.as_str(), version);
    if error_code != 0 {
        tracing::warn!(mechanism = %req.mechanism.as_str(), error_code, "SaslHandshake refused");
    }
    ResponseKind::SaslHandshake(
        SaslHandshakeResponse::default()
            .with_error_code(error_code)
            .with_mechanisms(enabled.into_iter().map(StrBytes::from_static_str).collect()),
    )
}
