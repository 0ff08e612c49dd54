//! The node's TOML configuration (`rill serve --config FILE`) and `rill config validate`.
//!
//! The file has one section per concern; every key is optional and unknown keys are errors.
//! Mirrors (`[[mirror]]`, the bridge's entries, see docs/bridge.md) may live here too:
//!
//! ```toml
//! [node]
//! id = 0                      # Kafka broker id
//! name = "edge-01"            # readable name (mirroring); default: the host name
//! data_dir = "./rill-data"
//! key_file = "./rill-master.key"   # RILL_MASTER_KEY wins when set
//! key_command = ["/usr/lib/rill/get-key", "arg"]   # instead of key_file: argv, no shell,
//!                             # prints the key as 64 hex chars; key_command_timeout_ms = 10000
//! rack = "rack-a"             # Kafka's broker.rack (rack-aware replica placement)
//! memory_budget_bytes = 33554432   # stop reading sockets at this much memory (docs/operations.md);
//!                             # default 3/4 of the cgroup memory.max, else 256 MiB
//!
//! [listeners]
//! kafka = "127.0.0.1:9092"
//! advertised_kafka = "127.0.0.1:9092"   # default: the bound address (0.0.0.0 -> 127.0.0.1)
//! http = "127.0.0.1:9644"
//! mqtt = "127.0.0.1:1883"
//! mqtt_ws = "127.0.0.1:8080"   # MQTT over WebSocket; off unless set
//! kafka_tls = { cert = "server.pem", key = "server.key" }   # client_ca = "ca.pem": mTLS
//! # next to any client_ca: crl_files = ["revoked.crl.pem"] (PEM or DER CRLs, read at start)
//! http_tls = { cert = "admin.pem", key = "admin.key", client_ca = "ops-ca.pem" }   # admin HTTPS
//! cluster = "10.0.0.1:9093"   # the cluster listener (inter-node traffic, cluster mode only)
//! advertised_cluster = "10.0.0.1:9093"   # default: the bound address
//!
//! [[listeners.kafka_extra]]   # more Kafka listeners, each with its own security
//! name = "LAN"
//! listen = "0.0.0.0:9094"
//! advertised = "edge-01.lan:9094"
//! security = "SASL_SSL"       # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
//! tls = { cert = "server.pem", key = "server.key" }
//! sasl_mechanisms = ["SCRAM-SHA-512"]
//!
//! [cluster]                   # only for a data directory formatted by `rill cluster format`
//! secret_file = "/etc/rill/cluster.secret"   # shared secret: mutual HMAC-SHA256 challenge
//! broker_session_timeout_ms = 9000
//! broker_heartbeat_interval_ms = 2000
//! replica_lag_time_max_ms = 30000
//! default_replication_factor = 3   # topics created without one; more than the live brokers fails
//! min_insync_replicas = 1
//! offsets_topic_num_partitions = 16   # partitions of __consumer_offsets, fixed at its creation
//! tls = { cert = "node.pem", key = "node.key", ca = "cluster-ca.pem" }   # mTLS between nodes
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
//! authorizer = false          # Kafka ACLs (StandardAuthorizer semantics; docs/security.md)
//! super_users = ["User:admin"]
//! allow_everyone_if_no_acl_found = false
//! ssl_principal_mapping_rules = "RULE:^CN=(.*?),.*$/$1/,DEFAULT"   # client certificates
//!
//! [admin]
//! tokens_file = "/etc/rill/admin-tokens"   # admin HTTP bearer tokens (docs/security.md)
//! console_writes = false                   # the web console may produce test messages
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
//!
//! [[mirror]]                  # the bridge, run inside the node
//! topics = ["alarms"]
//! target = "central:9092"
//! ```
//!
//! `rill config validate FILE` reports every error at once, one a line as `FILE:LINE:COLUMN:
//! message` (see `rill_bridge::config::diagnostics`); only a TOML syntax error is reported
//! alone. Command-line flags override the file; [`NodeSettings::resolve`] merges both.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use rill_bridge::config::diagnostics::{Checker, KeyPath, Problem, Report};
use rill_bridge::MirrorConfig;
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
    /// Check a node configuration file (its mirrors too); prints `OK`, or every error, one a
    /// line as `FILE:LINE:COLUMN: message`, and exits 1.
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
    /// Every error of the file (TOML syntax alone; else unknown keys, values of the wrong type
    /// and invalid values), each with its line and column.
    #[error("{0}")]
    File(Report),
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

/// The whole file. Unknown keys are errors: [`Checker`] collects them all, so the sections do
/// not deny them themselves.
#[derive(Debug, Default, Deserialize)]
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
    /// `[[mirror]]`: the bridge's mirrors, run inside the node (as with `--bridge-config`).
    #[serde(default)]
    pub mirror: Vec<MirrorConfig>,
    /// `[metrics]`: `enabled`, `per_partition`.
    #[serde(default)]
    pub metrics: crate::metrics::MetricsConfig,
    /// `[cluster]`: settings of a node in a cluster (Kafka's names, snake_case).
    #[serde(default)]
    pub cluster: ClusterSection,
    /// `[admin]`: the admin HTTP API's authentication.
    #[serde(default)]
    pub admin: AdminSection,
    /// `[tracing]`: OpenTelemetry export (`otlp_endpoint`, `service_name`).
    #[serde(default)]
    pub tracing: crate::telemetry::TracingConfig,
}

/// Default `broker.session.timeout.ms` (Kafka's).
pub const DEFAULT_BROKER_SESSION_TIMEOUT_MS: u64 = 9000;
/// Default `broker.heartbeat.interval.ms` (Kafka's).
pub const DEFAULT_BROKER_HEARTBEAT_INTERVAL_MS: u64 = 2000;
/// Default `replica.lag.time.max.ms` (Kafka's).
pub const DEFAULT_REPLICA_LAG_TIME_MAX_MS: u64 = 30000;
/// Default `default.replication.factor` in a cluster: 3 (what a three-node cluster needs to
/// survive the loss of one node with `min.insync.replicas` 2). Kafka's own default is 1; a topic
/// created with more replicas than there are available brokers fails with
/// INVALID_REPLICATION_FACTOR, as in Kafka.
pub const DEFAULT_REPLICATION_FACTOR: i16 = 3;
/// Default `min.insync.replicas` (Kafka's).
pub const DEFAULT_MIN_INSYNC_REPLICAS: i16 = 1;
/// Kafka's default `offsets.topic.num.partitions` is 50; 16 suits a small cluster.
pub const DEFAULT_OFFSETS_TOPIC_NUM_PARTITIONS: i32 = 16;

/// `[cluster]`: Kafka's broker settings of a cluster member, in snake_case.
#[derive(Debug, Default, Deserialize)]
pub struct ClusterSection {
    /// `replica.lag.time.max.ms` (default 30000).
    pub replica_lag_time_max_ms: Option<u64>,
    /// `broker.session.timeout.ms` (default 9000): the active controller fences a broker that sent
    /// no heartbeat for this long.
    pub broker_session_timeout_ms: Option<u64>,
    /// `broker.heartbeat.interval.ms` (default 2000).
    pub broker_heartbeat_interval_ms: Option<u64>,
    /// `default.replication.factor` (default [`DEFAULT_REPLICATION_FACTOR`]).
    pub default_replication_factor: Option<i16>,
    /// `min.insync.replicas` (default 1).
    pub min_insync_replicas: Option<i16>,
    /// `offsets.topic.num.partitions` (default [`DEFAULT_OFFSETS_TOPIC_NUM_PARTITIONS`]): the
    /// partition count `__consumer_offsets` is created with (fixed afterwards).
    pub offsets_topic_num_partitions: Option<i32>,
    /// A file holding the shared cluster secret (every node the same; at least 16 bytes).
    pub secret_file: Option<PathBuf>,
    /// mTLS against a cluster CA: every node presents `cert`, which must chain to `ca` and name
    /// the host of the node's cluster address.
    pub tls: Option<ClusterTlsFiles>,
}

impl ClusterSection {
    /// Whether any `[cluster]` key is set.
    pub fn is_set(&self) -> bool {
        let ClusterSection {
            replica_lag_time_max_ms,
            broker_session_timeout_ms,
            broker_heartbeat_interval_ms,
            default_replication_factor,
            min_insync_replicas,
            offsets_topic_num_partitions,
            secret_file,
            tls,
        } = self;
        replica_lag_time_max_ms.is_some()
            || broker_session_timeout_ms.is_some()
            || broker_heartbeat_interval_ms.is_some()
            || default_replication_factor.is_some()
            || min_insync_replicas.is_some()
            || offsets_topic_num_partitions.is_some()
            || secret_file.is_some()
            || tls.is_some()
    }
}

/// `[cluster] tls = { cert, key, ca }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ClusterTlsFiles {
    /// The node's certificate chain (PEM).
    pub cert: PathBuf,
    /// The node's private key (PEM).
    pub key: PathBuf,
    /// The cluster CA every peer's certificate must chain to (PEM).
    pub ca: PathBuf,
}

/// The cluster settings of a node, resolved (defaults applied). Whether the node is in cluster
/// mode is decided by its data directory (`meta.properties`), not by these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The cluster listener (`--cluster-listen`, `[listeners] cluster`).
    pub listen: Option<SocketAddr>,
    /// `host:port` advertised to peers (default: the bound address).
    pub advertised: Option<(String, u16)>,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: u64,
    /// `broker.session.timeout.ms`.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`.
    pub broker_heartbeat_interval_ms: u64,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i16,
    /// `offsets.topic.num.partitions`.
    pub offsets_topic_num_partitions: i32,
    /// The shared secret file.
    pub secret_file: Option<PathBuf>,
    /// mTLS files.
    pub tls: Option<ClusterTlsFiles>,
    /// `[node] rack`.
    pub rack: Option<String>,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
pub struct AdminSection {
    /// Bearer tokens of the admin HTTP API, one `scope:sha256-hex` a line (`crate::admin_tokens`).
    pub tokens_file: Option<PathBuf>,
    /// Let the web console change things (produce a test message); off by default.
    pub console_writes: Option<bool>,
}

/// `[groups]` (Kafka's names: `group.min.session.timeout.ms`, `group.max.session.timeout.ms`,
/// `group.initial.rebalance.delay.ms`, `offsets.retention.minutes`,
/// `offsets.retention.check.interval.ms`).
#[derive(Debug, Default, Deserialize)]
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
pub struct NodeSection {
    /// Kafka broker id.
    pub id: Option<i32>,
    /// Readable node name.
    pub name: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Master key file.
    pub key_file: Option<PathBuf>,
    /// External key helper (argv, no shell) printing the master key as 64 hex characters;
    /// exclusive with `key_file` (`--key-file` and `RILL_MASTER_KEY` win over it).
    pub key_command: Option<Vec<String>>,
    /// How long `key_command` may run (default 10000).
    pub key_command_timeout_ms: Option<u64>,
    /// Kafka's `broker.rack`.
    pub rack: Option<String>,
    /// The memory budget in bytes ([`crate::memory_budget`]; default 3/4 of the cgroup v2
    /// `memory.max`, else [`crate::memory_budget::DEFAULT_BUDGET_BYTES`]).
    pub memory_budget_bytes: Option<u64>,
}

/// `[listeners]`
#[derive(Debug, Default, Deserialize)]
pub struct ListenersSection {
    /// Kafka listener address.
    pub kafka: Option<SocketAddr>,
    /// Address advertised to Kafka clients (`host:port`).
    pub advertised_kafka: Option<String>,
    /// Admin HTTP listener address.
    pub http: Option<SocketAddr>,
    /// MQTT listener address.
    pub mqtt: Option<SocketAddr>,
    /// MQTT over WebSocket listener address (off when unset).
    pub mqtt_ws: Option<SocketAddr>,
    /// TLS for the Kafka listener.
    pub kafka_tls: Option<TlsFiles>,
    /// TLS (and with `client_ca`, client certificates) for the admin HTTP listener.
    pub http_tls: Option<TlsFiles>,
    /// The cluster listener address (cluster mode).
    pub cluster: Option<SocketAddr>,
    /// Address advertised to the other nodes (`host:port`).
    pub advertised_cluster: Option<String>,
    /// More Kafka listeners (`[[listeners.kafka_extra]]`), each with its own security.
    #[serde(default)]
    pub kafka_extra: Vec<KafkaListenerSection>,
}

/// PEM files of a TLS listener.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) client certificates must chain to; set, a client certificate is
    /// required (Kafka's `ssl.client.auth=required`).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM or DER files) checked against the client certificates
    /// (`crate::tls`); only with `client_ca`. Read at start.
    #[serde(default)]
    pub crl_files: Vec<PathBuf>,
}

impl TlsFiles {
    /// Why this table is not valid, if it is not: `crl_files` without `client_ca` (the key is
    /// `crl_files`).
    pub fn crl_files_problem(&self) -> Option<String> {
        crl_files_problem(self.client_ca.as_deref(), &self.crl_files)
    }
}

/// Why `crl_files` are not valid next to `client_ca`, if they are not: given without it.
pub fn crl_files_problem(client_ca: Option<&Path>, crl_files: &[PathBuf]) -> Option<String> {
    (client_ca.is_none() && !crl_files.is_empty()).then(|| {
        "crl_files needs client_ca: revocation lists check client certificates, which are only \
         asked for with client_ca"
            .to_string()
    })
}

/// Kafka's security protocols (`listener.security.protocol.map`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// TCP, no authentication.
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    /// TLS (client certificates with `tls.client_ca`).
    #[serde(rename = "SSL")]
    Ssl,
    /// SASL over TCP.
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// SASL over TLS.
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether the protocol runs over TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether the protocol requires SASL.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One `[[listeners.kafka_extra]]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaListenerSection {
    /// The listener's name (Kafka's listener name, e.g. `LAN`; not `KAFKA` nor `CLUSTER`).
    pub name: String,
    /// The address to bind.
    pub listen: SocketAddr,
    /// `host:port` advertised to clients that came in on this listener (default: the bound
    /// address, 0.0.0.0 as 127.0.0.1).
    pub advertised: Option<String>,
    /// The security protocol.
    pub security: SecurityProtocol,
    /// Certificate, key and optional client CA (SSL and SASL_SSL only).
    pub tls: Option<TlsFiles>,
    /// SASL mechanisms (SASL_PLAINTEXT and SASL_SSL only; default SCRAM-SHA-512, SCRAM-SHA-256).
    pub sasl_mechanisms: Option<Vec<String>>,
}

/// Listener names taken by the node itself (the `[listeners] kafka` and `cluster` listeners).
pub const RESERVED_LISTENER_NAMES: [&str; 2] = ["KAFKA", "CLUSTER"];

impl KafkaListenerSection {
    /// The problems of this entry (key relative to the entry, dotted, reason).
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let valid_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            out.push((
                "name",
                format!(
                    "{:?} is not a listener name (letters, digits, _ and -)",
                    self.name
                ),
            ));
        } else if RESERVED_LISTENER_NAMES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&self.name))
        {
            out.push((
                "name",
                format!("{:?} is the name of a built-in listener", self.name),
            ));
        }
        if let Some(adv) = &self.advertised {
            if let Err(reason) = parse_host_port(adv) {
                out.push(("advertised", reason));
            }
        }
        match (self.security.tls(), &self.tls) {
            (true, None) => out.push((
                "tls",
                format!(
                    "security {} needs tls = {{ cert, key }}",
                    self.security.name()
                ),
            )),
            (false, Some(_)) => out.push((
                "tls",
                format!("security {} does not use TLS", self.security.name()),
            )),
            _ => {}
        }
        if let Some(reason) = self.tls.as_ref().and_then(TlsFiles::crl_files_problem) {
            out.push(("tls.crl_files", reason));
        }
        match (&self.sasl_mechanisms, self.security.sasl()) {
            (Some(names), true) => {
                if let Err(reason) = crate::kafka::auth::Mechanism::parse_list(names) {
                    out.push(("sasl_mechanisms", reason));
                }
            }
            (Some(_), false) => out.push((
                "sasl_mechanisms",
                format!("security {} does not use SASL", self.security.name()),
            )),
            (None, _) => {}
        }
        out
    }
}

/// An extra Kafka listener as the node runs it.
#[derive(Debug, Clone)]
pub struct KafkaListenerSettings {
    /// The listener name, upper case (as Kafka normalises listener names).
    pub name: String,
    /// The address to bind.
    pub listen: SocketAddr,
    /// `host:port` advertised (None: from the bound address).
    pub advertised: Option<(String, u16)>,
    /// The security protocol.
    pub security: SecurityProtocol,
    /// TLS files (SSL, SASL_SSL).
    pub tls: Option<TlsFiles>,
    /// SASL mechanisms (SASL_PLAINTEXT, SASL_SSL).
    pub sasl: Option<Vec<crate::kafka::auth::Mechanism>>,
}

/// `[storage]`
#[derive(Debug, Default, Deserialize)]
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
    /// Check every request against the ACLs (Kafka's `authorizer.class.name` set).
    pub authorizer: Option<bool>,
    /// Principals that may do everything (`super.users`), e.g. `["User:admin"]`.
    pub super_users: Option<Vec<String>>,
    /// `allow.everyone.if.no.acl.found` (default false).
    pub allow_everyone_if_no_acl_found: Option<bool>,
    /// `ssl.principal.mapping.rules`: the principal of a client certificate (default `DEFAULT`:
    /// the certificate's distinguished name).
    pub ssl_principal_mapping_rules: Option<String>,
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

    /// Parse and check file contents (`path` is used in messages only): every error at once.
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigFileError> {
        let mut checker = Checker::parse(path, text).map_err(ConfigFileError::File)?;
        let config: Option<FileConfig> = checker.deserialize();
        if let Some(c) = &config {
            checker.problems(c.check());
        }
        checker.finish(config).map_err(ConfigFileError::File)
    }

    /// Semantic checks beyond types, every problem found (mirrors included).
    fn check(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut invalid = |key: &str, reason: String| {
            out.push(Problem::new(KeyPath::dotted(key), reason));
        };
        if let Some(id) = self.node.id {
            if id < 0 {
                invalid("node.id", format!("{id} is negative"));
            }
        }
        if let Err(reason) = self.tracing.check() {
            invalid("tracing.otlp_endpoint", reason);
        }
        #[cfg(not(feature = "cluster"))]
        {
            let refused = crate::cluster::NO_CLUSTER_SUPPORT;
            if self.cluster.is_set() {
                invalid("cluster", refused.to_string());
            }
            if self.listeners.cluster.is_some() {
                invalid("listeners.cluster", refused.to_string());
            }
            if self.listeners.advertised_cluster.is_some() {
                invalid("listeners.advertised_cluster", refused.to_string());
            }
        }
        if let Some(n) = self.kafka.num_partitions {
            if n < 1 {
                invalid("kafka.num_partitions", format!("{n} is below 1"));
            }
        }
        if let Some(names) = &self.kafka.sasl_mechanisms {
            if let Err(reason) = crate::kafka::auth::Mechanism::parse_list(names) {
                invalid("kafka.sasl_mechanisms", reason);
            }
        }
        if let Some(rules) = &self.kafka.ssl_principal_mapping_rules {
            if let Err(e) = crate::kafka::ssl_principal_mapper::SslPrincipalMapper::parse(rules) {
                invalid("kafka.ssl_principal_mapping_rules", e.to_string());
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, l) in self.listeners.kafka_extra.iter().enumerate() {
            for (key, reason) in l.problems() {
                let path = key
                    .split('.')
                    .fold(KeyPath::dotted("listeners.kafka_extra").index(i), |p, k| {
                        p.key(k)
                    });
                out.push(Problem::new(path, reason));
            }
            if !names.insert(l.name.to_ascii_uppercase()) {
                out.push(Problem::new(
                    KeyPath::dotted("listeners.kafka_extra")
                        .index(i)
                        .key("name"),
                    format!("listener {:?} is defined twice", l.name),
                ));
            }
        }
        let mut invalid = |key: &str, reason: String| {
            out.push(Problem::new(KeyPath::dotted(key), reason));
        };
        for p in self.kafka.super_users.iter().flatten() {
            if !matches!(p.split_once(':'), Some((k, n)) if !k.is_empty() && !n.is_empty()) {
                invalid(
                    "kafka.super_users",
                    format!("{p:?} is not a principal (Type:name, e.g. User:admin)"),
                );
            }
        }
        if let Err(e) = crate::mqtt::mapping::Mapping::new(&self.mqtt.rules) {
            invalid("mqtt.rules", e.to_string());
        }
        if let Err((key, reason)) = self.mqtt.validate_limits() {
            invalid(key, reason);
        }
        if let Some(n) = self.kafka.socket_request_max_bytes {
            if n < 1024 || n > i32::MAX as usize {
                invalid(
                    "kafka.socket_request_max_bytes",
                    format!("{n} is outside [1024, {}]", i32::MAX),
                );
            }
        }
        let groups = self.groups.resolve();
        if groups.min_session_timeout_ms > groups.max_session_timeout_ms {
            invalid(
                "groups.min_session_timeout_ms",
                "is above groups.max_session_timeout_ms".to_string(),
            );
        }
        if groups.offsets_retention_check_interval_ms == 0 {
            invalid(
                "groups.offsets_retention_check_interval_ms",
                "must be at least 1".to_string(),
            );
        }
        if let Some(FlushSetting::Interval { interval_ms: 0 }) = self.storage.flush {
            invalid(
                "storage.flush.interval_ms",
                "must be at least 1".to_string(),
            );
        }
        if self.storage.retention_check_interval_ms == Some(0) {
            invalid(
                "storage.retention_check_interval_ms",
                "must be at least 1".to_string(),
            );
        }
        if let Some(hw) = self.storage.backlog_high_water {
            if !rill_core::backlog::valid_high_water(hw) {
                invalid(
                    "storage.backlog_high_water",
                    format!("{hw} is not in (0, 1]"),
                );
            }
        }
        for (table, files) in [
            ("listeners.kafka_tls", &self.listeners.kafka_tls),
            ("listeners.http_tls", &self.listeners.http_tls),
        ] {
            if let Some(reason) = files.as_ref().and_then(TlsFiles::crl_files_problem) {
                invalid(&format!("{table}.crl_files"), reason);
            }
        }
        if let Some(tls) = &self.mqtt.tls {
            if let Some(reason) = crl_files_problem(tls.client_ca.as_deref(), &tls.crl_files) {
                invalid("mqtt.tls.crl_files", reason);
            }
        }
        if let Some(adv) = &self.listeners.advertised_kafka {
            if let Err(reason) = parse_host_port(adv) {
                invalid("listeners.advertised_kafka", reason);
            }
        }
        if let Some(adv) = &self.listeners.advertised_cluster {
            if let Err(reason) = parse_host_port(adv) {
                invalid("listeners.advertised_cluster", reason);
            }
        }
        let c = &self.cluster;
        for (key, v) in [
            (
                "cluster.broker_session_timeout_ms",
                c.broker_session_timeout_ms,
            ),
            (
                "cluster.broker_heartbeat_interval_ms",
                c.broker_heartbeat_interval_ms,
            ),
            ("cluster.replica_lag_time_max_ms", c.replica_lag_time_max_ms),
        ] {
            if v == Some(0) {
                invalid(key, "must be at least 1".to_string());
            }
        }
        let session = c
            .broker_session_timeout_ms
            .unwrap_or(DEFAULT_BROKER_SESSION_TIMEOUT_MS);
        let heartbeat = c
            .broker_heartbeat_interval_ms
            .unwrap_or(DEFAULT_BROKER_HEARTBEAT_INTERVAL_MS);
        if heartbeat >= session {
            invalid(
                "cluster.broker_heartbeat_interval_ms",
                format!("{heartbeat} must be below cluster.broker_session_timeout_ms ({session})"),
            );
        }
        for (key, v) in [
            (
                "cluster.default_replication_factor",
                c.default_replication_factor,
            ),
            ("cluster.min_insync_replicas", c.min_insync_replicas),
        ] {
            if let Some(n) = v {
                if n < 1 {
                    invalid(key, format!("{n} is below 1"));
                }
            }
        }
        if let Some(n) = c.offsets_topic_num_partitions {
            if n < 1 {
                invalid(
                    "cluster.offsets_topic_num_partitions",
                    format!("{n} is below 1"),
                );
            }
        }
        if let Some(rack) = &self.node.rack {
            if rack.is_empty() {
                invalid("node.rack", "is empty".to_string());
            }
        }
        if let Some(budget) = self.node.memory_budget_bytes {
            if let Err(reason) = check_memory_budget(budget, &self.mqtt) {
                invalid("node.memory_budget_bytes", reason);
            }
        }
        out.extend(self.check_topic_defaults());
        out.extend(rill_bridge::config::check_mirrors(
            &self.mirror,
            self.node.name.as_deref(),
        ));
        out
    }

    /// `[topic_defaults]`: each entry on its own (so every bad one is found), then together.
    fn check_topic_defaults(&self) -> Vec<Problem> {
        let at = |key: &str| KeyPath::dotted("topic_defaults").key(key);
        let mut out = Vec::new();
        let mut all = BTreeMap::new();
        for (key, value) in &self.topic_defaults {
            let one = match topic_default_string(value.get_ref()) {
                Ok(v) => BTreeMap::from([(key.clone(), v)]),
                Err(reason) => {
                    out.push(Problem::new(at(key), reason));
                    continue;
                }
            };
            match TopicConfig::with_overrides(&TopicConfig::default(), &one) {
                Ok(_) => all.extend(one),
                Err(err) => out.push(Problem::new(at(key), err.to_string())),
            }
        }
        if out.is_empty() {
            if let Err(err) = TopicConfig::with_overrides(&TopicConfig::default(), &all) {
                let key = match &err {
                    ConfigError::UnknownKey(k) => k.clone(),
                    ConfigError::InvalidValue { key, .. } => key.clone(),
                };
                out.push(Problem::new(at(&key), err.to_string()));
            }
        }
        out
    }

    /// `[topic_defaults]` as Kafka-style strings.
    pub fn topic_default_strings(&self) -> Result<BTreeMap<String, String>, (String, String)> {
        self.topic_defaults
            .iter()
            .map(|(k, v)| {
                topic_default_string(v.get_ref())
                    .map(|s| (k.clone(), s))
                    .map_err(|reason| (k.clone(), reason))
            })
            .collect()
    }
}

/// A `[topic_defaults]` value as Kafka's string form.
fn topic_default_string(value: &toml::Value) -> Result<String, String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => {
            return Err(format!(
                "expected a string or number, found {}",
                other.type_str()
            ))
        }
    })
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
    /// `--mqtt-ws-listen`
    pub mqtt_ws_listen: Option<SocketAddr>,
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
    /// `--cluster-listen`
    pub cluster_listen: Option<SocketAddr>,
    /// `--kafka-authorizer`: turn the authorizer on.
    pub kafka_authorizer: bool,
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
    /// MQTT over WebSocket listener (None: off).
    pub mqtt_ws_listen: Option<SocketAddr>,
    /// TLS for the Kafka listener.
    pub kafka_tls: Option<TlsFiles>,
    /// SASL mechanisms required on the Kafka listener (None: no authentication).
    pub kafka_sasl: Option<Vec<crate::kafka::auth::Mechanism>>,
    /// The extra Kafka listeners (`[[listeners.kafka_extra]]`).
    pub kafka_extra: Vec<KafkaListenerSettings>,
    /// `ssl.principal.mapping.rules` for client certificates.
    pub ssl_principal_mapper: Arc<crate::kafka::ssl_principal_mapper::SslPrincipalMapper>,
    /// TLS of the admin HTTP listener (`[listeners] http_tls`).
    pub http_tls: Option<TlsFiles>,
    /// `[admin] tokens_file`.
    pub admin_tokens_file: Option<PathBuf>,
    /// `[admin] console_writes` (default false): the web console may produce test messages.
    pub console_writes: bool,
    /// The authorizer's settings when it is on (`[kafka] authorizer = true`, `--kafka-authorizer`).
    pub kafka_authorizer: Option<rill_core::authorizer::AuthorizerConfig>,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// `[node] memory_budget_bytes` (None: the default, [`crate::memory_budget::default_budget`]).
    pub memory_budget_bytes: Option<u64>,
    /// Everything the storage layer needs.
    pub broker: BrokerConfig,
    /// The group coordinator's settings (`[groups]`).
    pub groups: GroupConfig,
    /// The MQTT front end.
    pub mqtt: crate::mqtt::MqttConfig,
    /// The file's `[[mirror]]` entries (the bridge runs them inside the node).
    pub mirrors: Vec<MirrorConfig>,
    /// `[cluster]`, the cluster listener and the rack (used in cluster mode only).
    pub cluster: ClusterSettings,
    /// `[metrics]`.
    pub metrics: crate::metrics::MetricsConfig,
    /// `[tracing]`.
    pub tracing: crate::telemetry::TracingConfig,
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
        if file.node.key_command.is_some() && file.node.key_file.is_some() {
            return Err(invalid(
                "node.key_command",
                "key_command and key_file are exclusive: the key comes from one of them".into(),
            ));
        }
        if file.node.key_command.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(invalid(
                "node.key_command",
                "must name the program (and its arguments), e.g. [\"/usr/lib/rill/get-key\"]"
                    .into(),
            ));
        }
        let key_source = match (
            &flags.master_key_env,
            &flags.key_file,
            &file.node.key_command,
        ) {
            (Some(key), _, _) => KeySource::Env(key.clone()),
            (None, Some(path), _) => KeySource::File(path.clone()),
            (None, None, Some(argv)) => KeySource::Command {
                argv: argv.clone(),
                timeout: file
                    .node
                    .key_command_timeout_ms
                    .map(std::time::Duration::from_millis)
                    .unwrap_or(rill_core::keyring::DEFAULT_KEY_COMMAND_TIMEOUT),
            },
            (None, None, None) => KeySource::File(
                file.node
                    .key_file
                    .clone()
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
        let kafka_extra = file
            .listeners
            .kafka_extra
            .iter()
            .map(|l| {
                let key = |k: &str| format!("listeners.kafka_extra.{}.{k}", l.name);
                Ok(KafkaListenerSettings {
                    name: l.name.to_ascii_uppercase(),
                    listen: l.listen,
                    advertised: l
                        .advertised
                        .as_deref()
                        .map(|a| parse_host_port(a).map_err(|r| invalid(&key("advertised"), r)))
                        .transpose()?,
                    security: l.security,
                    tls: l.tls.clone(),
                    sasl: l
                        .security
                        .sasl()
                        .then(|| {
                            crate::kafka::auth::Mechanism::parse_list(
                                l.sasl_mechanisms.as_deref().unwrap_or_default(),
                            )
                            .map_err(|r| invalid(&key("sasl_mechanisms"), r))
                        })
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>, ConfigFileError>>()?;
        let ssl_principal_mapper = Arc::new(
            crate::kafka::ssl_principal_mapper::SslPrincipalMapper::parse(
                file.kafka
                    .ssl_principal_mapping_rules
                    .as_deref()
                    .unwrap_or(crate::kafka::ssl_principal_mapper::DEFAULT_RULES),
            )
            .map_err(|e| invalid("kafka.ssl_principal_mapping_rules", e.to_string()))?,
        );
        #[cfg(not(feature = "cluster"))]
        if flags.cluster_listen.is_some() {
            return Err(invalid(
                "--cluster-listen",
                crate::cluster::NO_CLUSTER_SUPPORT.to_string(),
            ));
        }
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
            mqtt_ws_listen: flags.mqtt_ws_listen.or(file.listeners.mqtt_ws),
            kafka_tls: file.listeners.kafka_tls.clone(),
            kafka_sasl,
            kafka_extra,
            ssl_principal_mapper,
            http_tls: file.listeners.http_tls.clone(),
            admin_tokens_file: file.admin.tokens_file.clone(),
            console_writes: file.admin.console_writes.unwrap_or(false),
            kafka_authorizer: (flags.kafka_authorizer || file.kafka.authorizer.unwrap_or(false))
                .then(|| rill_core::authorizer::AuthorizerConfig {
                    super_users: file.kafka.super_users.clone().unwrap_or_default(),
                    allow_everyone_if_no_acl_found: file
                        .kafka
                        .allow_everyone_if_no_acl_found
                        .unwrap_or(false),
                }),
            socket_request_max_bytes: file
                .kafka
                .socket_request_max_bytes
                .unwrap_or(DEFAULT_SOCKET_REQUEST_MAX_BYTES),
            memory_budget_bytes: file.node.memory_budget_bytes,
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
            mirrors: file.mirror.clone(),
            cluster: ClusterSettings {
                listen: flags.cluster_listen.or(file.listeners.cluster),
                advertised: file
                    .listeners
                    .advertised_cluster
                    .as_deref()
                    .map(|s| parse_host_port(s).map_err(|r| invalid("advertised_cluster", r)))
                    .transpose()?,
                replica_lag_time_max_ms: file
                    .cluster
                    .replica_lag_time_max_ms
                    .unwrap_or(DEFAULT_REPLICA_LAG_TIME_MAX_MS),
                broker_session_timeout_ms: file
                    .cluster
                    .broker_session_timeout_ms
                    .unwrap_or(DEFAULT_BROKER_SESSION_TIMEOUT_MS),
                broker_heartbeat_interval_ms: file
                    .cluster
                    .broker_heartbeat_interval_ms
                    .unwrap_or(DEFAULT_BROKER_HEARTBEAT_INTERVAL_MS),
                default_replication_factor: file
                    .cluster
                    .default_replication_factor
                    .unwrap_or(DEFAULT_REPLICATION_FACTOR),
                min_insync_replicas: file
                    .cluster
                    .min_insync_replicas
                    .unwrap_or(DEFAULT_MIN_INSYNC_REPLICAS),
                offsets_topic_num_partitions: file
                    .cluster
                    .offsets_topic_num_partitions
                    .unwrap_or(DEFAULT_OFFSETS_TOPIC_NUM_PARTITIONS),
                secret_file: file.cluster.secret_file.clone(),
                tls: file.cluster.tls.clone(),
                rack: file.node.rack.clone(),
            },
            metrics: file.metrics.clone(),
            tracing: file.tracing.clone(),
        })
    }
}

/// Why a memory budget of `budget` bytes cannot serve the node: below
/// [`crate::memory_budget::MIN_BUDGET_BYTES`], or too small for one MQTT packet of
/// `[mqtt] max_packet_size` and a read allowance.
pub fn check_memory_budget(budget: u64, mqtt: &crate::mqtt::MqttConfig) -> Result<(), String> {
    use crate::memory_budget::{MIN_BUDGET_BYTES, READ_ALLOWANCE};
    let packet = mqtt.max_packet_size as u64 + READ_ALLOWANCE as u64;
    if budget < MIN_BUDGET_BYTES {
        return Err(format!(
            "{budget} is below the minimum of {MIN_BUDGET_BYTES} bytes (4 MiB)"
        ));
    }
    if budget < packet {
        return Err(format!(
            "{budget} bytes cannot hold one MQTT packet of mqtt.max_packet_size ({}) plus a read \
             allowance of {READ_ALLOWANCE}: raise it to at least {packet} or lower \
             mqtt.max_packet_size",
            mqtt.max_packet_size
        ));
    }
    Ok(())
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
        for name in [
            "edge.toml",
            "central.toml",
            "cluster/node1.toml",
            "cluster/node2.toml",
            "cluster/node3.toml",
        ] {
            let config = FileConfig::load(&deploy(name))
                .unwrap_or_else(|e| panic!("{name} does not validate: {e}"));
            NodeSettings::resolve(&config, &Overrides::default())
                .unwrap_or_else(|e| panic!("{name} does not resolve: {e}"));
        }
    }

    #[test]
    fn cluster_settings_resolve_with_kafka_defaults_and_bad_values_are_located() {
        let text = "[node]\nrack = \"r1\"\n[listeners]\ncluster = \"127.0.0.11:9093\"\n\
                    advertised_cluster = \"n1:9093\"\n[cluster]\nsecret_file = \"s\"\n\
                    broker_session_timeout_ms = 3000\n";
        let file = FileConfig::parse(text, Path::new("c.toml")).unwrap();
        let c = NodeSettings::resolve(&file, &Overrides::default())
            .unwrap()
            .cluster;
        assert_eq!(c.listen, Some("127.0.0.11:9093".parse().unwrap()));
        assert_eq!(c.advertised, Some(("n1".to_string(), 9093)));
        assert_eq!(c.rack.as_deref(), Some("r1"));
        assert_eq!(c.broker_session_timeout_ms, 3000);
        assert_eq!(c.broker_heartbeat_interval_ms, 2000);
        assert_eq!(c.replica_lag_time_max_ms, 30000);
        assert_eq!(c.default_replication_factor, DEFAULT_REPLICATION_FACTOR);
        assert_eq!(c.min_insync_replicas, 1);
        let flags = Overrides {
            cluster_listen: Some("127.0.0.12:1".parse().unwrap()),
            ..Overrides::default()
        };
        let c = NodeSettings::resolve(&file, &flags).unwrap().cluster;
        assert_eq!(c.listen, Some("127.0.0.12:1".parse().unwrap()));

        let bad =
            "[cluster]\nbroker_heartbeat_interval_ms = 5000\nbroker_session_timeout_ms = 4000\n\
                   min_insync_replicas = 0\nsecret_fil = \"x\"\n";
        let Err(ConfigFileError::File(r)) = FileConfig::parse(bad, Path::new("c.toml")) else {
            panic!("accepted")
        };
        let out = r.to_string();
        assert!(
            out.contains("c.toml:5:1: unknown key 'cluster.secret_fil'"),
            "{out}"
        );
        assert!(
            out.contains("cluster.broker_heartbeat_interval_ms': 5000 must be below"),
            "{out}"
        );
        assert!(
            out.contains("cluster.min_insync_replicas': 0 is below 1"),
            "{out}"
        );
    }

    #[test]
    fn unknown_key_is_reported_with_line_and_column() {
        let text = "[node]\nid = 1\n\n[listeners]\nkafak = \"127.0.0.1:9092\"\n";
        let err = FileConfig::parse(text, Path::new("x.toml")).unwrap_err();
        let msg = err.to_string();
        // Line 5, column 1, Vector-style.
        assert_eq!(msg, "x.toml:5:1: unknown key 'listeners.kafak'");
    }

    #[test]
    fn bad_topic_default_is_located() {
        let text = "[node]\nid = 1\n\n[topic_defaults]\n\"retention.ms\" = \"soon\"\n";
        let msg = FileConfig::parse(text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        // Line 5, column 18: the value.
        assert!(
            msg.starts_with("x.toml:5:18: invalid value for 'topic_defaults.\"retention.ms\"': "),
            "{msg}"
        );
    }

    #[test]
    fn a_memory_budget_too_small_for_one_packet_is_refused_with_the_size_needed() {
        let text = "[node]\nmemory_budget_bytes = 5000000\n[mqtt]\nmax_packet_size = 8388608\n";
        let msg = FileConfig::parse(text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("x.toml:2:23: invalid value for 'node.memory_budget_bytes': "),
            "{msg}"
        );
        assert!(msg.contains("at least 8392704"), "{msg}");
        let tiny = "[node]\nmemory_budget_bytes = 1024\n";
        let msg = FileConfig::parse(tiny, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("below the minimum"), "{msg}");
        let ok = "[node]\nmemory_budget_bytes = 33554432\n";
        let file = FileConfig::parse(ok, Path::new("x.toml")).unwrap();
        let settings = NodeSettings::resolve(&file, &Overrides::default()).unwrap();
        assert_eq!(settings.memory_budget_bytes, Some(33_554_432));
    }

    /// The file of issue 10: unknown keys in three sections, a bad `[topic_defaults]` value and
    /// a bad `[[mirror]]` rename.
    pub(crate) const FIVE_ERRORS: &str = "[node]\nid = 1\nnmae = \"edge-01\"\n\
        [listeners]\nkafka = \"127.0.0.1:9092\"\nkafak = \"127.0.0.1:9093\"\n\
        [storage]\nflush = \"always\"\nfluhs = 1\n\
        [topic_defaults]\n\"retention.ms\" = \"soon\"\n\
        [[mirror]]\ntopics = [\"alarms\"]\ntarget = \"central:9092\"\nrename = \"edge\"\n";

    #[test]
    fn every_error_is_reported_with_its_line() {
        let Err(ConfigFileError::File(report)) =
            FileConfig::parse(FIVE_ERRORS, Path::new("n.toml"))
        else {
            panic!("accepted")
        };
        let out = report.to_string();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{out}");
        assert_eq!(lines[0], "n.toml:3:1: unknown key 'node.nmae'");
        assert_eq!(lines[1], "n.toml:6:1: unknown key 'listeners.kafak'");
        assert_eq!(lines[2], "n.toml:9:1: unknown key 'storage.fluhs'");
        assert!(
            lines[3]
                .starts_with("n.toml:11:18: invalid value for 'topic_defaults.\"retention.ms\"'"),
            "{out}"
        );
        assert!(
            lines[4].starts_with("n.toml:15:10: invalid value for 'mirror[0].rename': "),
            "{out}"
        );
    }

    #[test]
    fn type_errors_of_several_sections_are_all_reported() {
        let text = "[storage]\nencryption = \"rot13\"\n[kafka]\nnum_partitions = \"six\"\n\
                    [groups]\nmin_session_timeout_ms = 10\nmax_session_timeout_ms = 5\n\
                    [[mirror]]\ntopics = [\"a\"]\n[[mirror]]\ntopics = [\"b\"]\ntarget = \"c:1\"\n\
                    tls_ca_file = \"ca.pem\"\n";
        let Err(ConfigFileError::File(r)) = FileConfig::parse(text, Path::new("n.toml")) else {
            panic!("accepted")
        };
        let lines: Vec<usize> = r.diagnostics.iter().map(|d| d.line).collect();
        assert_eq!(lines, [2, 4, 6, 8, 13], "{r}");
        let out = r.to_string();
        assert!(
            out.contains("'storage.encryption': unknown variant `rot13`"),
            "{out}"
        );
        assert!(
            out.contains("'kafka.num_partitions': invalid type"),
            "{out}"
        );
        assert!(out.contains("missing field `target`"), "{out}");
        assert!(out.contains("'mirror[1].tls_ca_file'"), "{out}");
    }

    #[test]
    fn mirrors_in_the_node_file() {
        let text = "[node]\nname = \"edge-01\"\n[[mirror]]\ntopics = [\"alarms\"]\n\
                    target = \"central:9092\"\n[[mirror]]\ndirection = \"pull\"\n\
                    topics = [\"commands\"]\ntarget = \"central:9092\"\n";
        let file = FileConfig::parse(text, Path::new("n.toml")).unwrap();
        let s = NodeSettings::resolve(&file, &Overrides::default()).unwrap();
        assert_eq!(s.mirrors.len(), 2);
        assert_eq!(
            s.mirrors[0].target_topic("edge-01", "alarms"),
            "edge-01.alarms"
        );
        // A pull mirror whose remote alias is the node's own name is refused.
        let err = FileConfig::parse(
            &text.replace("name = \"edge-01\"", "name = \"central\""),
            Path::new("n.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("n.toml:6:1: invalid value for 'mirror[1].remote_alias'"),
            "{err}"
        );
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
    fn extra_kafka_listeners() {
        let text = "[listeners]\nkafka = \"127.0.0.1:9092\"\n\
                    [[listeners.kafka_extra]]\nname = \"lan\"\nlisten = \"0.0.0.0:9094\"\n\
                    advertised = \"edge.lan:9094\"\nsecurity = \"SASL_SSL\"\n\
                    tls = { cert = \"s.pem\", key = \"s.key\", client_ca = \"ca.pem\" }\n\
                    sasl_mechanisms = [\"PLAIN\"]\n\
                    [[listeners.kafka_extra]]\nname = \"LOCAL\"\nlisten = \"127.0.0.1:9095\"\n\
                    security = \"PLAINTEXT\"\n\
                    [kafka]\nssl_principal_mapping_rules = \"RULE:^CN=(.*?),.*$/$1/L,DEFAULT\"\n";
        let file = FileConfig::parse(text, Path::new("x.toml")).unwrap();
        let s = NodeSettings::resolve(&file, &Overrides::default()).unwrap();
        assert_eq!(s.kafka_extra.len(), 2);
        let lan = &s.kafka_extra[0];
        assert_eq!(lan.name, "LAN");
        assert_eq!(lan.advertised, Some(("edge.lan".to_string(), 9094)));
        assert_eq!(lan.security, SecurityProtocol::SaslSsl);
        assert_eq!(
            lan.tls.as_ref().unwrap().client_ca,
            Some(PathBuf::from("ca.pem"))
        );
        assert_eq!(lan.sasl, Some(vec![crate::kafka::auth::Mechanism::Plain]));
        assert_eq!(s.kafka_extra[1].sasl, None);
        assert_eq!(s.ssl_principal_mapper.name("CN=Bob,O=x").unwrap(), "bob");

        let bad = "[[listeners.kafka_extra]]\nname = \"kafka\"\nlisten = \"127.0.0.1:1\"\n\
                   security = \"SSL\"\n\
                   [[listeners.kafka_extra]]\nname = \"A\"\nlisten = \"127.0.0.1:2\"\n\
                   security = \"PLAINTEXT\"\ntls = { cert = \"c\", key = \"k\" }\n\
                   sasl_mechanisms = [\"PLAIN\"]\nadvertised = \"nohost\"\n\
                   [[listeners.kafka_extra]]\nname = \"a\"\nlisten = \"127.0.0.1:3\"\n\
                   security = \"SASL_PLAINTEXT\"\nsasl_mechanisms = [\"GSSAPI\"]\n\
                   [kafka]\nssl_principal_mapping_rules = \"RULE:x\"\n";
        let msg = FileConfig::parse(bad, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        for needle in [
            "listeners.kafka_extra[0].name",
            "built-in listener",
            "needs tls",
            "listeners.kafka_extra[1].tls",
            "listeners.kafka_extra[1].sasl_mechanisms",
            "listeners.kafka_extra[1].advertised",
            "defined twice",
            "GSSAPI",
            "kafka.ssl_principal_mapping_rules",
        ] {
            assert!(msg.contains(needle), "{needle} missing in:\n{msg}");
        }
        let unknown = "[[listeners.kafka_extra]]\nname = \"b\"\nlisten = \"127.0.0.1:4\"\n\
                       security = \"TLS\"\n";
        let msg = FileConfig::parse(unknown, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown variant `TLS`"), "{msg}");
    }

    #[test]
    fn crl_files_need_client_ca() {
        let text = "[listeners]\n\
                    kafka_tls = { cert = \"s.pem\", key = \"s.key\", client_ca = \"ca.pem\", \
                    crl_files = [\"a.crl\", \"b.crl.pem\"] }\n";
        let file = FileConfig::parse(text, Path::new("x.toml")).unwrap();
        let s = NodeSettings::resolve(&file, &Overrides::default()).unwrap();
        let files = &s.kafka_tls.as_ref().unwrap().crl_files;
        assert_eq!(files, &[PathBuf::from("a.crl"), PathBuf::from("b.crl.pem")]);

        let bad = "[listeners]\n\
                   kafka_tls = { cert = \"s.pem\", key = \"s.key\", crl_files = [\"a.crl\"] }\n\
                   http_tls = { cert = \"s.pem\", key = \"s.key\", crl_files = [\"a.crl\"] }\n\
                   [[listeners.kafka_extra]]\nname = \"LAN\"\nlisten = \"127.0.0.1:1\"\n\
                   security = \"SSL\"\ntls = { cert = \"c\", key = \"k\", crl_files = [\"a.crl\"] }\n\
                   [mqtt.tls]\nlisten = \"127.0.0.1:8883\"\ncert = \"c\"\nkey = \"k\"\n\
                   crl_files = [\"a.crl\"]\n";
        let msg = FileConfig::parse(bad, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        for needle in [
            "x.toml:2:",
            "listeners.kafka_tls.crl_files",
            "x.toml:3:",
            "listeners.http_tls.crl_files",
            "listeners.kafka_extra[0].tls.crl_files",
            "mqtt.tls.crl_files",
        ] {
            assert!(msg.contains(needle), "{needle} missing in:\n{msg}");
        }
        assert_eq!(msg.matches("needs client_ca").count(), 4, "{msg}");
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
    fn authorizer_settings() {
        use rill_core::authorizer::AuthorizerConfig;
        let resolve = |text: &str, flag: bool| {
            let file = FileConfig::parse(text, Path::new("x.toml")).unwrap();
            let flags = Overrides {
                kafka_authorizer: flag,
                ..Overrides::default()
            };
            NodeSettings::resolve(&file, &flags)
                .unwrap()
                .kafka_authorizer
        };
        assert_eq!(resolve("", false), None);
        assert_eq!(
            resolve("[kafka]\nsuper_users = [\"User:admin\"]\n", true),
            Some(AuthorizerConfig {
                super_users: vec!["User:admin".into()],
                allow_everyone_if_no_acl_found: false,
            })
        );
        assert_eq!(
            resolve(
                "[kafka]\nauthorizer = true\nallow_everyone_if_no_acl_found = true\n",
                false
            ),
            Some(AuthorizerConfig {
                super_users: vec![],
                allow_everyone_if_no_acl_found: true,
            })
        );
        let err = FileConfig::parse("[kafka]\nsuper_users = [\"admin\"]\n", Path::new("x.toml"))
            .unwrap_err();
        assert!(err.to_string().contains("super_users"), "{err}");
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
