//! The client's errors: I/O, protocol, TLS, SASL and the broker's error codes, kept as
//! kafka-protocol's [`ResponseError`] and shown with Kafka's names (`NOT_LEADER_OR_FOLLOWER`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;

use crate::security::SecurityError;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Address tried.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing a connection failed (also: the broker closed it).
    #[error("connection to {addr} failed: {source}")]
    Io {
        /// Peer address.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The broker did not answer in time.
    #[error("timed out waiting for {addr}")]
    Timeout {
        /// Peer address.
        addr: String,
    },
    /// A frame could not be encoded or decoded.
    #[error("protocol error talking to {addr}: {message}")]
    Protocol {
        /// Peer address.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// The TLS settings are unusable (CA file, client certificate, server name).
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// The TLS handshake failed (untrusted certificate, wrong name, not a TLS listener, ...).
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        /// Peer address.
        addr: String,
        /// Cause (rustls' error inside).
        #[source]
        source: std::io::Error,
    },
    /// The broker refused SASL authentication (wrong user or password, mechanism not enabled).
    #[error("SASL {mechanism} authentication to {addr} failed: {} (error code {}){}{}",
        error_name(*code), code.code(),
        message.as_ref().map(|m| format!(": {m}")).unwrap_or_default(),
        if enabled.is_empty() { String::new() } else { format!(" (enabled mechanisms: [{}])", enabled.join(", ")) })]
    Auth {
        /// Peer address.
        addr: String,
        /// The mechanism tried.
        mechanism: &'static str,
        /// The broker's error code (SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM, ...).
        code: ResponseError,
        /// The broker's error message.
        message: Option<String>,
        /// The mechanisms the broker offers (SaslHandshake's answer), when it refused ours.
        enabled: Vec<String>,
    },
    /// The SCRAM exchange failed on our side (malformed server message, bad server signature).
    #[error("SCRAM authentication to {addr} failed: {source}")]
    Scram {
        /// Peer address.
        addr: String,
        /// Cause.
        #[source]
        source: rill_core::scram::ScramError,
    },
    /// The broker does not support any version of an API this client speaks.
    #[error("broker {addr} does not support a usable version of {api:?} (broker: {broker}, client: {client})")]
    UnsupportedApi {
        /// Peer address.
        addr: String,
        /// The API.
        api: ApiKey,
        /// Versions the broker advertised, if any.
        broker: String,
        /// Versions this client speaks.
        client: String,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {} ({}){}", error_name(*code), code.code(), message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        /// What was being done.
        context: String,
        /// The error code.
        code: ResponseError,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
    /// A [`Connector`](crate::connector::Connector) other than TCP could not open its
    /// transport to a broker (for example an inter-node connection whose handshake failed).
    #[error("cannot open a connection to {addr}: {source}")]
    Transport {
        /// The address (or name) of the broker.
        addr: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Something the caller asked for does not exist or is not valid (no broker address, a
    /// partition the topic does not have, a broker missing from the metadata).
    #[error("{0}")]
    Usage(String),
}

impl ClientError {
    /// The Kafka error code carried by this error, if any.
    pub fn kafka_code(&self) -> Option<ResponseError> {
        match self {
            ClientError::Kafka { code, .. } | ClientError::Auth { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the connection this error came from is unusable (drop it and reconnect).
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::Io { .. }
                | ClientError::Timeout { .. }
                | ClientError::Protocol { .. }
                | ClientError::Tls { .. }
                | ClientError::Transport { .. }
        )
    }

    /// Whether the broker said the client's view of leaders or coordinators is stale (see
    /// [`needs_metadata_refresh`]): the operations retry these themselves after a refresh. A
    /// broken connection is left to the caller (the next call reconnects).
    pub fn is_stale_routing(&self) -> bool {
        matches!(self, ClientError::Kafka { code, .. } if needs_metadata_refresh(*code))
    }

    /// Whether the error means the client's view of leaders or coordinators is stale (see
    /// [`needs_metadata_refresh`]), or the connection broke: retry after a metadata refresh.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Kafka { code, .. } => needs_metadata_refresh(*code),
            other => other.is_connection_error(),
        }
    }
}

/// The error codes answered by refreshing metadata (new leader, new coordinator) and retrying:
/// NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, LEADER_NOT_AVAILABLE,
/// NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT (and
/// NOT_ENOUGH_REPLICAS_AFTER_APPEND, which an idempotent producer retries the same way).
pub fn needs_metadata_refresh(code: ResponseError) -> bool {
    matches!(
        code,
        ResponseError::NotLeaderOrFollower
            | ResponseError::FencedLeaderEpoch
            | ResponseError::UnknownLeaderEpoch
            | ResponseError::LeaderNotAvailable
            | ResponseError::NotCoordinator
            | ResponseError::CoordinatorLoadInProgress
            | ResponseError::NotEnoughReplicas
            | ResponseError::NotEnoughReplicasAfterAppend
            | ResponseError::RequestTimedOut
    )
}

/// The Kafka name of an error code, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn error_name(code: ResponseError) -> String {
    match code {
        ResponseError::Unknown(c) => format!("UNKNOWN_ERROR_CODE_{c}"),
        other => {
            let camel = format!("{other:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

/// Turns a response error code into a [`ClientError::Kafka`] when it is not 0.
pub fn check(
    code: i16,
    message: Option<&StrBytes>,
    context: impl FnOnce() -> String,
) -> Result<(), ClientError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(code) => Err(ClientError::Kafka {
            context: context(),
            code,
            message: message.map(|m| m.to_string()).filter(|m| !m.is_empty()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafka_style() {
        assert_eq!(
            error_name(ResponseError::UnknownTopicOrPartition),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(
            error_name(ResponseError::TopicAlreadyExists),
            "TOPIC_ALREADY_EXISTS"
        );
        assert_eq!(
            error_name(ResponseError::Unknown(999)),
            "UNKNOWN_ERROR_CODE_999"
        );
    }

    #[test]
    fn check_maps_codes() {
        assert!(check(0, None, || "x".into()).is_ok());
        let err = check(36, Some(&StrBytes::from_static_str("exists")), || {
            "create t".into()
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "create t: TOPIC_ALREADY_EXISTS (36): exists"
        );
        assert!(!err.is_retriable());
        let stale = check(6, None, || "produce".into()).unwrap_err();
        assert!(stale.is_retriable());
        assert_eq!(stale.kafka_code(), Some(ResponseError::NotLeaderOrFollower));
    }

    #[test]
    fn auth_errors_name_the_code() {
        let err = ClientError::Auth {
            addr: "h:1".into(),
            mechanism: "SCRAM-SHA-512",
            code: ResponseError::SaslAuthenticationFailed,
            message: Some("invalid credentials".into()),
            enabled: vec![],
        };
        assert_eq!(
            err.to_string(),
            "SASL SCRAM-SHA-512 authentication to h:1 failed: SASL_AUTHENTICATION_FAILED \
             (error code 58): invalid credentials"
        );
    }
}
