//! The node's TOML configuration (`rill serve --config FILE`) and `rill config validate`.
//!
//! The file has one section per concern; every key is optional and unknown keys are errors:
//!
//! ```toml
//! [node]
//! id = 0                      # Kafka broker id
//! name = "edge-01"            # readable name (mirroring); default: the host name
//! data_dir = "./rill-data"
//! key_file = "./rill-master.key"   # RILL_MASTER_KEY wins when set
//!
//! [listeners]
//! kafka = "127.0.0.1:9092"
//! advertised_kafka = "127.0.0.1:9092"   # default: the bound address (0.0.0.0 -> 127.0.0.1)
//! http = "127.0.0.1:9644"
//! mqtt = "127.0.0.1:1883"
//! kafka_tls = { cert = "server.pem", key = "server.key" }
//!
//! [storage]
//! encryption = "auto"         # "auto" | "aes-256-gcm" | "chacha20-poly1305" | "off"
//! flush = "always"            # or { interval_ms = 1000 }
//! disk_budget_bytes = 10737418240
//! retention_check_interval_ms = 5000   # retention, disk budget and backlog policy pass
//! backlog_policy = "pause"    # or "drop_oldest": unmirrored data near retention / the budget
//! backlog_high_water = 0.9    # fraction of retention.bytes / retention.ms / the disk budget
//!
//! [kafka]
//! auto_create_topics = true
//! num_partitions = 1
//! socket_request_max_bytes = 104857600
//! sasl = false                # require SASL on the Kafka listener (see docs/security.md)
//! sasl_mechanisms = ["SCRAM-SHA-512", "SCRAM-SHA-256"]   # default; "PLAIN" too
//!
//! [topic_defaults]            # Kafka topic config names
//! "retention.ms" = 604800000
//!
//! [mqtt]                      # see docs/mqtt.md
//! max_packet_size = 1048576
//! [[mqtt.rules]]
//! pattern = "devices/{device}/telemetry"
//! topic = "telemetry"
//! key = "device"
//! [mqtt.auth]
//! enabled = false
//! ```
//!
//! Command-line flags override the file; [`NodeSettings::resolve`] merges both.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rill_core::backlog::BacklogPolicy;
use rill_core::broker::{BrokerConfig, EncryptionSetting, KeySource};
use rill_core::crypto::CipherKind;
use rill_core::group::GroupConfig;
use rill_core::log::FlushPolicy;
use rill_core::topic_config::{ConfigError, TopicConfig};
use serde::Deserialize;

/// `rill config ...`
#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check a node configuration file; prints `OK` or the first error with its line and column.
    Validate {
        /// The TOML file to check.
        file: PathBuf,
    },
}

/// Run `rill config ...`.
pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Validate { file } => match FileConfig::load(&file) {
            Ok(_) => {
                println!("OK");
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => {
                eprintln!("{err}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

/// Default `socket.request.max.bytes` (Kafka's default, 100 MiB).
pub const DEFAULT_SOCKET_REQUEST_MAX_BYTES: usize = 104_857_600;

/// Errors reading or checking a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type (the message has line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line and column.
        message: String,
    },
    /// A value that parses but is not valid.
    #[error("{path}: invalid value for '{key}': {reason}")]
    Invalid {
        /// The file (or `<flags>`).
        path: PathBuf,
        /// The setting.
        key: String,
        /// Why.
        reason: String,
    },
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[node]`
    #[serde(default)]
    pub node: NodeSection,
    /// `[listeners]`
    #[serde(default)]
    pub listeners: ListenersSection,
    /// `[storage]`
    #[serde(default)]
    pub storage: StorageSection,
    /// `[kafka]`
    #[serde(default)]
    pub kafka: KafkaSection,
    /// `[topic_defaults]`: node-wide topic config defaults, Kafka names.
    #[serde(default)]
    pub topic_defaults: BTreeMap<String, toml::Spanned<toml::Value>>,
    /// `[groups]`: consumer group coordinator settings.
    #[serde(default)]
    pub groups: GroupsSection,
    /// `[mqtt]`: the MQTT front end (mapping rules, auth, TLS, limits).
    #[serde(default)]
    pub mqtt: crate::mqtt::MqttConfig,
}

/// `[groups]` (Kafka's names: `group.min.session.timeout.ms`, `group.max.session.timeout.ms`,
/// `group.initial.rebalance.delay.ms`, `offsets.retention.minutes`,
/// `offsets.retention.check.interval.ms`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsSection {
    /// `group.min.session.timeout.ms` (default 6000).
    pub min_session_timeout_ms: Option<u64>,
    /// `group.max.session.timeout.ms` (default 1800000).
    pub max_session_timeout_ms: Option<u64>,
    /// `group.initial.rebalance.delay.ms` (default 3000).
    pub initial_rebalance_delay_ms: Option<u64>,
    /// `offsets.retention.minutes` (default 10080, 7 days).
    pub offsets_retention_minutes: Option<u64>,
    /// `offsets.retention.check.interval.ms` (default 600000).
    pub offsets_retention_check_interval_ms: Option<u64>,
    /// `group.consumer.session.timeout.ms` of KIP-848 groups (default 45000).
    pub consumer_session_timeout_ms: Option<u64>,
    /// `group.consumer.heartbeat.interval.ms` of KIP-848 groups (default 5000).
    pub consumer_heartbeat_interval_ms: Option<u64>,
}

impl GroupsSection {
    /// The coordinator settings (Kafka's defaults where unset).
    pub fn resolve(&self) -> GroupConfig {
        let d = GroupConfig::default();
        GroupConfig {
            min_session_timeout_ms: self
                .min_session_timeout_ms
                .unwrap_or(d.min_session_timeout_ms),
            max_session_timeout_ms: self
                .max_session_timeout_ms
                .unwrap_or(d.max_session_timeout_ms),
            initial_rebalance_delay_ms: self
                .initial_rebalance_delay_ms
                .unwrap_or(d.initial_rebalance_delay_ms),
            offsets_retention_ms: self
                .offsets_retention_minutes
                .map_or(d.offsets_retention_ms, |m| m.saturating_mul(60_000)),
            offsets_retention_check_interval_ms: self
                .offsets_retention_check_interval_ms
                .unwrap_or(d.offsets_retention_check_interval_ms),
            consumer_session_timeout_ms: self
                .consumer_session_timeout_ms
                .unwrap_or(d.consumer_session_timeout_ms),
            consumer_heartbeat_interval_ms: self
                .consumer_heartbeat_interval_ms
                .unwrap_or(d.consumer_heartbeat_interval_ms),
            ..d
        }
    }
}

/// `[node]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Kafka broker id.
    pub id: Option<i32>,
    /// Readable node name.
    pub name: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Master key file.
    pub key_file: Option<PathBuf>,
}

/// `[listeners]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenersSection {
    /// Kafka listener address.
    pub kafka: Option<SocketAddr>,
    /// Address advertised to Kafka clients (`host:port`).
    pub advertised_kafka: Option<String>,
    /// Admin HTTP listener address.
    pub http: Option<SocketAddr>,
    /// MQTT listener address.
    pub mqtt: Option<SocketAddr>,
    /// TLS for the Kafka listener.
    pub kafka_tls: Option<TlsFiles>,
}

/// PEM files of a TLS listener.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[storage]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// `"auto"`, `"aes-256-gcm"`, `"chacha20-poly1305"` or `"off"`.
    pub encryption: Option<EncryptionName>,
    /// `"always"` or `{ interval_ms = N }`.
    pub flush: Option<FlushSetting>,
    /// Node-wide disk budget.
    pub disk_budget_bytes: Option<u64>,
    /// How often the log cleaner (compaction) runs, in ms.
    pub cleaner_interval_ms: Option<u64>,
    /// How often retention, the disk budget and the backlog policy are applied, in ms.
    pub retention_check_interval_ms: Option<u64>,
    /// What happens when data the bridge has not mirrored yet nears the topic's retention or
    /// the disk budget: `"pause"` (default) or `"drop_oldest"`.
    pub backlog_policy: Option<BacklogPolicyName>,
    /// Fraction of the limit at which the backlog policy applies (default 0.9).
    pub backlog_high_water: Option<f64>,
}

/// Backlog policy names in the file.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum BacklogPolicyName {
    /// Hold producers back (Kafka and MQTT backpressure).
    #[serde(rename = "pause")]
    Pause,
    /// Delete the oldest unmirrored data, with a metric and a log line.
    #[serde(rename = "drop_oldest")]
    DropOldest,
}

/// Encryption names in the file.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum EncryptionName {
    /// AES-256-GCM when the CPU has AES instructions, else ChaCha20-Poly1305.
    #[serde(rename = "auto")]
    Auto,
    /// AES-256-GCM.
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
    /// ChaCha20-Poly1305.
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
    /// Plaintext on disk (benchmarks only).
    #[serde(rename = "off")]
    Off,
}

/// The flush setting in the file: `"always"` or `{ interval_ms = N }`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(try_from = "toml::Value")]
pub enum FlushSetting {
    /// fsync before every acknowledgement (group commit).
    Always,
    /// A background flush every `interval_ms`; acknowledgements do not wait for fsync.
    Interval {
        /// Milliseconds between background flushes.
        interval_ms: u64,
    },
}

impl TryFrom<toml::Value> for FlushSetting {
    type Error = String;

    fn try_from(value: toml::Value) -> Result<Self, Self::Error> {
        const EXPECTED: &str = "expected \"always\" or { interval_ms = N }";
        match value {
            toml::Value::String(s) if s == "always" => Ok(FlushSetting::Always),
            toml::Value::Table(t) => {
                if let Some(k) = t.keys().find(|k| k.as_str() != "interval_ms") {
                    return Err(format!("unknown key `{k}` in flush, {EXPECTED}"));
                }
                match t.get("interval_ms") {
                    Some(toml::Value::Integer(ms)) if *ms >= 1 => Ok(FlushSetting::Interval {
                        interval_ms: *ms as u64,
                    }),
                    Some(other) => Err(format!(
                        "interval_ms must be a positive integer, found {other}"
                    )),
                    None => Err(format!("missing interval_ms, {EXPECTED}")),
                }
            }
            other => Err(format!("{EXPECTED}, found {other}")),
        }
    }
}

/// `[kafka]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// `auto.create.topics.enable`.
    pub auto_create_topics: Option<bool>,
    /// `num.partitions` of auto-created topics.
    pub num_partitions: Option<i32>,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: Option<usize>,
    /// Require SASL authentication (default: true when `sasl_mechanisms` is set).
    pub sasl: Option<bool>,
    /// `sasl.enabled.mechanisms`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
    pub sasl_mechanisms: Option<Vec<String>>,
}

impl FileConfig {
    /// Read, parse and check a file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and check file contents (`path` is used in messages only).
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigFileError> {
        let config: FileConfig = toml::from_str(text).map_err(|err| ConfigFileError::Parse {
            path: path.to_path_buf(),
            message: err.to_string().trim_end().to_string(),
        })?;
        config.check(path).map_err(|err| config.locate(err, text))?;
        Ok(config)
    }

    /// Add the line and column of the offending `[topic_defaults]` entry to a semantic error.
    fn locate(&self, err: ConfigFileError, text: &str) -> ConfigFileError {
        let ConfigFileError::Invalid { path, key, reason } = err else {
            return err;
        };
        let entry = key
            .strip_prefix("topic_defaults.")
            .map(|k| k.trim_matches('"'))
            .and_then(|k| self.topic_defaults.get(k));
        match entry {
            Some(v) => {
                let start = v.span().start.min(text.len());
                let before = &text[..start];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                ConfigFileError::Invalid {
                    path,
                    key: format!("{key} (line {line}, column {column})"),
                    reason,
                }
            }
            None => ConfigFileError::Invalid { path, key, reason },
        }
    }

    /// Semantic checks beyond types.
    fn check(&self, path: &Path) -> Result<(), ConfigFileError> {
        let invalid = |key: &str, reason: String| ConfigFileError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason,
        };
        if let Some(id) = self.node.id {
            if id < 0 {
                return Err(invalid("node.id", format!("{id} is negative")));
            }
        }
        if let Some(n) = self.kafka.num_partitions {
            if n < 1 {
                return Err(invalid("kafka.num_partitions", format!("{n} is below 1")));
            }
        }
        if let Some(names) = &self.kafka.sasl_mechanisms {
            crate::kafka::auth::Mechanism::parse_list(names)
                .map_err(|reason| invalid("kafka.sasl_mechanisms", reason))?;
        }
        crate::mqtt::mapping::Mapping::new(&self.mqtt.rules)
            .map_err(|e| invalid("mqtt.rules", e.to_string()))?;
        self.mqtt
            .validate_limits()
            .map_err(|(key, reason)| invalid(key, reason))?;
        if let Some(n) = self.kafka.socket_request_max_bytes {
            if n < 1024 || n > i32::MAX as usize {
                return Err(invalid(
                    "kafka.socket_request_max_bytes",
                    format!("{n} is outside [1024, {}]", i32::MAX),
                ));
            }
        }
        let groups = self.groups.resolve();
        if groups.min_session_timeout_ms > groups.max_session_timeout_ms {
            return Err(invalid(
                "groups.min_session_timeout_ms",
                "is above groups.max_session_timeout_ms".to_string(),
            ));
        }
        if groups.offsets_retention_check_interval_ms == 0 {
            return Err(invalid(
                "groups.offsets_retention_check_interval_ms",
                "must be at least 1".to_string(),
            ));
        }
        if let Some(FlushSetting::Interval { interval_ms: 0 }) = self.storage.flush {
            return Err(invalid(
                "storage.flush.interval_ms",
                "must be at least 1".to_string(),
            ));
        }
        if self.storage.retention_check_interval_ms == Some(0) {
            return Err(invalid(
                "storage.retention_check_interval_ms",
                "must be at least 1".to_string(),
            ));
        }
        if let Some(hw) = self.storage.backlog_high_water {
            if !rill_core::backlog::valid_high_water(hw) {
                return Err(invalid(
                    "storage.backlog_high_water",
                    format!("{hw} is not in (0, 1]"),
                ));
            }
        }
        if let Some(adv) = &self.listeners.advertised_kafka {
            parse_host_port(adv).map_err(|reason| invalid("listeners.advertised_kafka", reason))?;
        }
        let overrides = self
            .topic_default_strings()
            .map_err(|(key, reason)| invalid(&format!("topic_defaults.{key}"), reason))?;
        TopicConfig::with_overrides(&TopicConfig::default(), &overrides).map_err(|err| {
            let key = match &err {
                ConfigError::UnknownKey(k) => k.clone(),
                ConfigError::InvalidValue { key, .. } => key.clone(),
            };
            invalid(&format!("topic_defaults.\"{key}\""), err.to_string())
        })?;
        Ok(())
    }

    /// `[topic_defaults]` as Kafka-style strings.
    pub fn topic_default_strings(&self) -> Result<BTreeMap<String, String>, (String, String)> {
        self.topic_defaults
            .iter()
            .map(|(k, v)| {
                let s = match v.get_ref() {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err((
                            k.clone(),
                            format!("expected a string or number, found {}", other.type_str()),
                        ))
                    }
                };
                Ok((k.clone(), s))
            })
            .collect()
    }
}

/// Split `host:port` (IPv6 hosts in brackets).
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("'{s}' is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{port}' in '{s}' is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("'{s}' has an empty host"));
    }
    Ok((host.to_string(), port))
}

/// Command-line overrides (all optional: unset flags fall back to the file, then the defaults).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--kafka-listen`
    pub kafka_listen: Option<SocketAddr>,
    /// `--mqtt-listen`
    pub mqtt_listen: Option<SocketAddr>,
    /// `--http-listen`
    pub http_listen: Option<SocketAddr>,
    /// `--node-id`
    pub node_id: Option<i32>,
    /// `--node-name`
    pub node_name: Option<String>,
    /// `--advertised-kafka`
    pub advertised_kafka: Option<String>,
    /// `--key-file`
    pub key_file: Option<PathBuf>,
    /// `RILL_MASTER_KEY`
    pub master_key_env: Option<String>,
    /// `--kafka-sasl MECHANISMS`: require SASL with these mechanisms.
    pub kafka_sasl: Option<Vec<String>>,
}

/// The node's effective settings: defaults, then the file, then flags.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Kafka broker id.
    pub node_id: i32,
    /// Readable name.
    pub node_name: String,
    /// Kafka listener.
    pub kafka_listen: SocketAddr,
    /// Advertised `host:port` (None: derive from the bound address).
    pub advertised_kafka: Option<(String, u16)>,
    /// Admin HTTP listener.
    pub http_listen: SocketAddr,
    /// MQTT listener (the MQTT front end binds it).
    pub mqtt_listen: SocketAddr,
    /// TLS for the Kafka listener.
    pub kafka_tls: Option<TlsFiles>,
    /// SASL mechanisms required on the Kafka listener (None: no authentication).
    pub kafka_sasl: Option<Vec<crate::kafka::auth::Mechanism>>,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// Everything the storage layer needs.
    pub broker: BrokerConfig,
    /// The group coordinator's settings (`[groups]`).
    pub groups: GroupConfig,
    /// The MQTT front end.
    pub mqtt: crate::mqtt::MqttConfig,
}

impl NodeSettings {
    /// Merge embedded defaults, `file` and `flags`.
    pub fn resolve(file: &FileConfig, flags: &Overrides) -> Result<NodeSettings, ConfigFileError> {
        let invalid = |key: &str, reason: String| ConfigFileError::Invalid {
            path: PathBuf::from("<settings>"),
            key: key.to_string(),
            reason,
        };
        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| file.node.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./rill-data"));
        let key_source = match &flags.master_key_env {
            Some(key) => KeySource::Env(key.clone()),
            None => KeySource::File(
                flags
                    .key_file
                    .clone()
                    .or_else(|| file.node.key_file.clone())
                    .unwrap_or_else(|| PathBuf::from("./rill-master.key")),
            ),
        };
        let encryption = match file.storage.encryption.unwrap_or(EncryptionName::Auto) {
            EncryptionName::Auto => EncryptionSetting::Auto,
            EncryptionName::Aes256Gcm => EncryptionSetting::Cipher(CipherKind::Aes256Gcm),
            EncryptionName::ChaCha20Poly1305 => {
                EncryptionSetting::Cipher(CipherKind::ChaCha20Poly1305)
            }
            EncryptionName::Off => EncryptionSetting::Off,
        };
        let flush = match file.storage.flush {
            None | Some(FlushSetting::Always) => FlushPolicy::Always,
            Some(FlushSetting::Interval { interval_ms }) => {
                FlushPolicy::Interval { ms: interval_ms }
            }
        };
        let overrides = file
            .topic_default_strings()
            .map_err(|(k, reason)| invalid(&format!("topic_defaults.{k}"), reason))?;
        let default_topic_config = TopicConfig::with_overrides(&TopicConfig::default(), &overrides)
            .map_err(|e| invalid("topic_defaults", e.to_string()))?;
        let advertised = flags
            .advertised_kafka
            .clone()
            .or_else(|| file.listeners.advertised_kafka.clone())
            .map(|s| parse_host_port(&s).map_err(|r| invalid("advertised_kafka", r)))
            .transpose()?;
        let kafka_sasl = match &flags.kafka_sasl {
            Some(names) => Some(names.clone()),
            None if file
                .kafka
                .sasl
                .unwrap_or(file.kafka.sasl_mechanisms.is_some()) =>
            {
                Some(file.kafka.sasl_mechanisms.clone().unwrap_or_default())
            }
            None => None,
        }
        .map(|names| {
            crate::kafka::auth::Mechanism::parse_list(&names).map_err(|r| invalid("kafka_sasl", r))
        })
        .transpose()?;
        let node_id = flags.node_id.or(file.node.id).unwrap_or(0);
        if node_id < 0 {
            return Err(invalid("node_id", format!("{node_id} is negative")));
        }
        Ok(NodeSettings {
            node_id,
            node_name: flags
                .node_name
                .clone()
                .or_else(|| file.node.name.clone())
                .unwrap_or_else(host_name),
            kafka_listen: flags
                .kafka_listen
                .or(file.listeners.kafka)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9092))),
            advertised_kafka: advertised,
            http_listen: flags
                .http_listen
                .or(file.listeners.http)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9644))),
            mqtt_listen: flags
                .mqtt_listen
                .or(file.listeners.mqtt)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 1883))),
            kafka_tls: file.listeners.kafka_tls.clone(),
            kafka_sasl,
            socket_request_max_bytes: file
                .kafka
                .socket_request_max_bytes
                .unwrap_or(DEFAULT_SOCKET_REQUEST_MAX_BYTES),
            broker: {
                let mut b = BrokerConfig::new(data_dir, key_source);
                b.encryption = encryption;
                b.flush = flush;
                b.default_topic_config = default_topic_config;
                b.auto_create_topics = file.kafka.auto_create_topics.unwrap_or(true);
                b.default_partitions = file.kafka.num_partitions.unwrap_or(1);
                b.disk_budget_bytes = file.storage.disk_budget_bytes;
                if let Some(ms) = file.storage.cleaner_interval_ms {
                    b.cleaner_interval_ms = ms;
                }
                if let Some(ms) = file.storage.retention_check_interval_ms {
                    b.retention_check_interval_ms = ms;
                }
                if let Some(p) = file.storage.backlog_policy {
                    b.backlog.policy = match p {
                        BacklogPolicyName::Pause => BacklogPolicy::Pause,
                        BacklogPolicyName::DropOldest => BacklogPolicy::DropOldest,
                    };
                }
                if let Some(hw) = file.storage.backlog_high_water {
                    b.backlog.high_water = hw;
                }
                b
            },
            groups: file.groups.resolve(),
            mqtt: file.mqtt.clone(),
        })
    }
}

/// The machine's host name (Linux), or `rill` when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rill".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy")
            .join(name)
    }

    #[test]
    fn example_deploy_files_validate() {
        for name in ["edge.toml", "central.toml"] {
            let config = FileConfig::load(&deploy(name))
                .unwrap_or_else(|e| panic!("{name} does not validate: {e}"));
            NodeSettings::resolve(&config, &Overrides::default())
                .unwrap_or_else(|e| panic!("{name} does not resolve: {e}"));
        }
    }

    #[test]
    fn unknown_key_is_reported_with_line_and_column() {
        let text = "[node]\nid = 1\n\n[listeners]\nkafak = \"127.0.0.1:9092\"\n";
        let err = FileConfig::parse(text, Path::new("x.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 5"), "{msg}");
        assert!(msg.contains("column 1"), "{msg}");
        assert!(msg.contains("kafak"), "{msg}");
    }

    #[test]
    fn bad_topic_default_is_located() {
        let text = "[node]\nid = 1\n\n[topic_defaults]\n\"retention.ms\" = \"soon\"\n";
        let msg = FileConfig::parse(text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 5, column 18"), "{msg}");
        assert!(msg.contains("retention.ms"), "{msg}");
    }

    #[test]
    fn bad_values_are_errors() {
        for text in [
            "[storage]\nencryption = \"rot13\"\n",
            "[storage]\nflush = \"sometimes\"\n",
            "[storage]\nflush = { interval_ms = 0 }\n",
            "[storage]\nflush = { interval_ms = 5, extra = 1 }\n",
            "[kafka]\nnum_partitions = 0\n",
            "[listeners]\nkafka = \"not an address\"\n",
            "[listeners]\nadvertised_kafka = \"nohost\"\n",
            "[node]\nid = -3\n",
            "[kafka]\nsasl_mechanisms = [\"GSSAPI\"]\n",
            "[storage]\nbacklog_policy = \"drop\"\n",
            "[storage]\nbacklog_high_water = 0\n",
            "[storage]\nbacklog_high_water = 1.5\n",
            "[storage]\nretention_check_interval_ms = 0\n",
        ] {
            assert!(
                FileConfig::parse(text, Path::new("x.toml")).is_err(),
                "accepted: {text}"
            );
        }
    }

    #[test]
    fn flags_override_file() {
        let text = "[node]\nid = 3\ndata_dir = \"/a\"\n[listeners]\nkafka = \"0.0.0.0:1\"\n\
                    [storage]\nflush = { interval_ms = 50 }\nencryption = \"off\"\n";
        let file = FileConfig::parse(text, Path::new("x.toml")).unwrap();
        let flags = Overrides {
            node_id: Some(7),
            kafka_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Overrides::default()
        };
        let s = NodeSettings::resolve(&file, &flags).unwrap();
        assert_eq!(s.node_id, 7);
        assert_eq!(s.kafka_listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(s.broker.data_dir, PathBuf::from("/a"));
        assert_eq!(s.broker.flush, FlushPolicy::Interval { ms: 50 });
        assert_eq!(s.broker.encryption, EncryptionSetting::Off);
        assert_eq!(s.socket_request_max_bytes, DEFAULT_SOCKET_REQUEST_MAX_BYTES);
    }

    #[test]
    fn sasl_settings() {
        use crate::kafka::auth::{Mechanism, DEFAULT_MECHANISMS};
        use rill_core::scram::ScramMechanism;
        let resolve = |text: &str, flag: Option<Vec<String>>| {
            let file = FileConfig::parse(text, Path::new("x.toml")).unwrap();
            let flags = Overrides {
                kafka_sasl: flag,
                ..Overrides::default()
            };
            NodeSettings::resolve(&file, &flags).unwrap().kafka_sasl
        };
        assert_eq!(resolve("", None), None);
        assert_eq!(
            resolve("[kafka]\nsasl = true\n", None),
            Some(DEFAULT_MECHANISMS.to_vec())
        );
        assert_eq!(
            resolve("[kafka]\nsasl_mechanisms = [\"PLAIN\"]\n", None),
            Some(vec![Mechanism::Plain])
        );
        assert_eq!(
            resolve(
                "[kafka]\nsasl = false\nsasl_mechanisms = [\"PLAIN\"]\n",
                None
            ),
            None
        );
        assert_eq!(
            resolve("", Some(vec!["SCRAM-SHA-256".into()])),
            Some(vec![Mechanism::Scram(ScramMechanism::Sha256)])
        );
    }

    #[test]
    fn backlog_settings() {
        let text = "[storage]\nbacklog_policy = \"drop_oldest\"\nbacklog_high_water = 0.75\n\
                    retention_check_interval_ms = 200\n";
        let file = FileConfig::parse(text, Path::new("x.toml")).unwrap();
        let s = NodeSettings::resolve(&file, &Overrides::default()).unwrap();
        assert_eq!(s.broker.backlog.policy, BacklogPolicy::DropOldest);
        assert_eq!(s.broker.backlog.high_water, 0.75);
        assert_eq!(s.broker.retention_check_interval_ms, 200);
        let d = NodeSettings::resolve(&FileConfig::default(), &Overrides::default()).unwrap();
        assert_eq!(d.broker.backlog.policy, BacklogPolicy::Pause);
        assert_eq!(d.broker.backlog.high_water, 0.9);
    }

    #[test]
    fn host_port_parsing() {
        assert_eq!(
            parse_host_port("[::1]:9092").unwrap(),
            ("::1".to_string(), 9092)
        );
        assert_eq!(parse_host_port("edge:1").unwrap(), ("edge".to_string(), 1));
        assert!(parse_host_port(":1").is_err());
        assert!(parse_host_port("h:x").is_err());
    }
}
