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
    /// Address of the secure WebSocket listener (MQTT over WebSocket over TLS, e.g.
    /// `0.0.0.0:8884`), with this certificate; off when unset.
    #[serde(default)]
    pub ws_listen: Option<String>,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate signed by it, and a
    /// certificate's common name stands in for the username when the client sends none.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM or DER files) checked against client certificates
    /// (`crate::tls`); only with `client_ca`. Read at start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crl_files: Vec<PathBuf>,
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
    /// Receive Maximum (MQTT 5 §3.2.2.3.3): QoS 1/2 publishes a client may have
    /// unacknowledged (QoS 2 until PUBCOMP). Announced in CONNACK; an MQTT 5 client sending more
    /// is disconnected with 0x93, a 3.1.1 connection is no longer read until acks are out.
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
    /// Server Keep Alive (MQTT 5 §3.2.2.3.14): when set, every MQTT 5 client is told in CONNACK
    /// to use this keep alive (seconds) instead of its own, and it is enforced at 1.5x. 3.1.1
    /// clients keep their own (that protocol has no way to tell them).
    pub server_keep_alive_secs: Option<u16>,
    /// Server redirection (MQTT 5 §4.11): when set, every MQTT 5 CONNECT is refused with this
    /// Server Reference (`host:port`, or several separated by spaces) and CONNACK 0x9C (Use
    /// another server), or 0x9D (Server moved) with `server_moved`; 3.1.1 clients get 0x03
    /// (server unavailable).
    pub server_reference: Option<String>,
    /// Redirection is permanent (0x9D) rather than temporary (0x9C).
    pub server_moved: bool,
    /// Seconds between `$SYS` topic updates (Mosquitto's `sys_interval`); 0: no `$SYS` topics.
    pub sys_interval_s: u64,
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
            server_keep_alive_secs: None,
            server_reference: None,
            server_moved: false,
            sys_interval_s: 10,
        }
    }
}

impl MqttConfig {
    /// Checks the limits: `Err((key, reason))` for a value MQTT 5 gives no meaning to.
    pub fn validate_limits(&self) -> Result<(), (&'static str, String)> {
        // §3.2.2.3.3 and §3.2.2.3.6: zero is a Protocol Error for both properties.
        if self.receive_maximum == 0 {
            return Err(("mqtt.receive_maximum", "must be at least 1".into()));
        }
        if self.max_packet_size == 0 || self.max_packet_size > MAX_PACKET_SIZE_LIMIT {
            return Err((
                "mqtt.max_packet_size",
                format!(
                    "{} is outside [1, {MAX_PACKET_SIZE_LIMIT}]",
                    self.max_packet_size
                ),
            ));
        }
        if self.max_inflight == 0 {
            return Err(("mqtt.max_inflight", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// The largest packet MQTT can frame: a remaining length of 268,435,455 plus 5 header bytes.
pub const MAX_PACKET_SIZE_LIMIT: usize = 268_435_460;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml() {
        let cfg: MqttConfig = toml::from_str(
            r#"
            receive_maximum = 8
            server_keep_alive_secs = 30
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
        assert_eq!(cfg.receive_maximum, 8);
        assert_eq!(cfg.server_keep_alive_secs, Some(30));
        assert_eq!(MqttConfig::default().server_keep_alive_secs, None);
        assert!(cfg.validate_limits().is_ok());
        let zero: MqttConfig = toml::from_str("receive_maximum = 0").unwrap();
        assert_eq!(
            zero.validate_limits().unwrap_err().0,
            "mqtt.receive_maximum"
        );
    }
}
