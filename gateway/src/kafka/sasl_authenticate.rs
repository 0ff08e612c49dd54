//! SaslAuthenticate (key 36, v0-2, KIP-152): one SASL token each way. A failure answers
//! SASL_AUTHENTICATION_FAILED (or ILLEGAL_SASL_STATE) with a message, then the connection closes.
//! Sessions do not expire (`session_lifetime_ms` 0: no KIP-368 re-authentication).

use bytes::Bytes;
use kafka_protocol::messages::{ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse};
use kafka_protocol::protocol::StrBytes;

use super::auth::Session;

/// Answer SaslAuthenticate.
pub fn handle(session: &mut Session, _version: i16, req: SaslAuthenticateRequest) -> ResponseKind {
    let resp = match session.authenticate(&req.auth_bytes) {
        Ok(token) => SaslAuthenticateResponse::default()
            .with_error_code(0)
            .with_auth_bytes(Bytes::from(token))
            .with_session_lifetime_ms(0),
        Err(failure) => SaslAuthenticateResponse::default()
            .with_error_code(failure.code)
            .with_error_message(Some(StrBytes::from_string(failure.message)))
            .with_auth_bytes(Bytes::new()),
    };
    ResponseKind::SaslAuthenticate(resp)
}
