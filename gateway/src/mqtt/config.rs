//! The `[mqtt]` section of the node configuration (the plain listener address is
//! `[listeners] mqtt` / `--mqtt-listen`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::auth::AuthConfig;
use super::mapping::RuleConfig;

/// TLS listener settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the MQTT-over-TLS listener (e.g. `0.0.0.0:8883`).
    pub listen: String,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate signed by it, and a
    /// certificate's common name stands in for the username when the client sends none.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// `[mqtt]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Mapping rules (`[[mqtt.rules]]`), tried in order before the fallback rule.
    pub rules: Vec<RuleConfig>,
    /// Device authentication and ACLs.
    pub auth: AuthConfig,
    /// Optional TLS listener.
    pub tls: Option<TlsConfig>,
    /// Largest packet accepted, in bytes.
    pub max_packet_size: usize,
    /// Receive Maximum: QoS 1/2 publishes a client may have unacknowledged.
    pub receive_maximum: u16,
    /// Outgoing QoS 1/2 messages in flight per connection (further capped by the client's
    /// Receive Maximum).
    pub max_inflight: u16,
    /// Longest session expiry interval granted, in seconds.
    pub max_session_expiry_secs: u32,
    /// Highest topic alias a client may use.
    pub topic_alias_maximum: u16,
    /// Seconds a new connection has to send CONNECT.
    pub connect_timeout_secs: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            rules: Vec::new(),
            auth: AuthConfig::default(),
            tls: None,
            max_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            max_inflight: 256,
            max_session_expiry_secs: u32::MAX,
            topic_alias_maximum: 64,
            connect_timeout_secs: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml() {
        let cfg: MqttConfig = toml::from_str(
            r#"
            [[rules]]
            pattern = "devices/{device}/telemetry"
            topic = "telemetry"
            key = "device"
            payload = "cbor-to-json"
            [auth]
            enabled = true
            publish = ["devices/{client_id}/#"]
            "#,
        )
        .unwrap();
        assert_eq!(cfg.rules.len(), 1);
        assert!(cfg.auth.enabled);
        assert_eq!(cfg.auth.subscribe, vec!["commands/{client_id}/#"]);
        assert_eq!(cfg.max_packet_size, 1024 * 1024);
    }
}
