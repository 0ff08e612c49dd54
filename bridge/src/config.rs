//! Bridge configuration: TOML `[[mirror]]` entries, in a bridge file (`rill serve
//! --bridge-config FILE`, `rill bridge --config FILE`) or in the node's own TOML file.
//! [`diagnostics`] checks either kind of file and reports every error at once, with its line.
//!
//! ```toml
//! node_name = "edge-01"            # alias used by the rename policy and in rill.origin
//! data_dir = "./rill-data"         # standalone `rill bridge`: the (stopped) node's data
//! [[mirror]]
//! topics = ["alarms", "telemetry"] # names ...
//! topics_regex = "sensor-.*"       # ... and/or a regex (whole name)
//! target = "central:9092"          # bootstrap servers, comma separated
//! rename = "{node_name}.{topic}"   # default; "{topic}" is the identity
//! filter_key_prefix = "dev-"       # optional: only records whose key starts with this
//! filter_header = "class=alarm"    # optional: only records with this header (and value)
//! priority = 0                     # higher first (informational for now)
//! bandwidth_bytes_per_sec = 0      # 0 = unlimited
//! compression = "zstd"             # or "none"
//! target_alias = "central"         # MM2 alias of the target in heartbeats
//! emit_heartbeats = true           # one record a second to the target's `heartbeats`
//! checkpoint_interval_ms = 5000    # consumer group checkpoints, 0 = none
//! sync_group_offsets = true        # commit translated offsets on the target
//! tls = true                       # TLS to the target (default false)
//! tls_ca_file = "ca.pem"           # PEM roots; default: the system's root certificates
//! tls_server_name = "central"      # name to verify; default: the host of the address
//! sasl_mechanism = "SCRAM-SHA-512" # or "SCRAM-SHA-256", "PLAIN"; unset: no SASL
//! sasl_username = "edge-01"
//! sasl_password_env = "RILL_BRIDGE_PASSWORD"   # or sasl_password = "..."
//!
//! [[mirror]]                       # a pull (downstream) mirror: central -> edge
//! direction = "pull"
//! topics = ["commands"]            # remote topics (names and/or topics_regex)
//! target = "central:9092"          # the remote cluster (the edge still dials out)
//! remote_alias = "central"         # default; names the remote in rill.origin
//! rename = "{remote_alias}.{topic}" # default for pull: the LOCAL topic
//! ```

use std::path::Path;

use serde::Deserialize;

pub mod diagnostics;

use diagnostics::{Checker, KeyPath, Problem, Report};

/// Errors of a bridge configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file has errors (every one, each with its line).
    #[error("{0}")]
    File(Report),
    /// A value is out of range.
    #[error("invalid mirror: {0}")]
    Invalid(String),
}

/// The whole bridge configuration. Unknown keys are errors ([`Checker`] collects them, so the
/// struct does not deny them itself).
#[derive(Debug, Clone, Deserialize, Default)]
pub struct BridgeConfig {
    /// This node's name (the `{node_name}` of rename policies and the origin in headers).
    #[serde(default)]
    pub node_name: Option<String>,
    /// Data directory of the node (standalone `rill bridge`).
    #[serde(default)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Master key file of the node (standalone `rill bridge`).
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
    /// Mirrors.
    #[serde(default)]
    pub mirror: Vec<MirrorConfig>,
}

/// Transfer compression.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransferCompression {
    /// zstd (default).
    #[default]
    Zstd,
    /// Uncompressed.
    None,
}

fn default_target_alias() -> String {
    "central".to_string()
}

fn default_true() -> bool {
    true
}

fn default_checkpoint_interval_ms() -> u64 {
    5000
}

/// The default rename policy (MirrorMaker 2's default replication policy).
pub const DEFAULT_RENAME: &str = "{node_name}.{topic}";
/// The default local name of a pulled topic (MirrorMaker 2's policy seen from the edge).
pub const DEFAULT_PULL_RENAME: &str = "{remote_alias}.{topic}";
/// The default alias of the remote cluster of a pull mirror.
pub const DEFAULT_REMOTE_ALIAS: &str = "central";

/// Which way a mirror copies.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Local topics to the target (upstream, the default).
    #[default]
    Push,
    /// Topics of the target (the remote cluster) into local topics (downstream).
    Pull,
}

/// One mirror: which topics go where, and how. Unknown keys are errors (collected by
/// [`Checker`]).
#[derive(Debug, Clone, Deserialize)]
pub struct MirrorConfig {
    /// Source topic names.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Source topics matching this regex (whole name).
    #[serde(default)]
    pub topics_regex: Option<String>,
    /// Every non-internal topic not itself from a mirror (what `--mirror-to` uses).
    #[serde(default)]
    pub all_topics: bool,
    /// Target bootstrap servers (comma separated); for a pull mirror the remote cluster.
    pub target: String,
    /// Push (default) or pull.
    #[serde(default)]
    pub direction: Direction,
    /// Pull only: the remote cluster's name in `rill.origin` headers (default `central`).
    #[serde(default)]
    pub remote_alias: Option<String>,
    /// Name of the topic written to: `{node_name}`, `{topic}` and (pull) `{remote_alias}` are
    /// substituted. Default [`DEFAULT_RENAME`] (push) or [`DEFAULT_PULL_RENAME`] (pull).
    #[serde(default)]
    pub rename: Option<String>,
    /// Only records whose key starts with this.
    #[serde(default)]
    pub filter_key_prefix: Option<String>,
    /// Only records with this header: `name` or `name=value`.
    #[serde(default)]
    pub filter_header: Option<String>,
    /// Priority (higher first).
    #[serde(default)]
    pub priority: i32,
    /// Bandwidth cap in bytes per second (0 = none).
    #[serde(default)]
    pub bandwidth_bytes_per_sec: u64,
    /// Transfer compression.
    #[serde(default)]
    pub compression: TransferCompression,
    /// Alias of the target cluster in heartbeats (MM2's target cluster alias).
    #[serde(default = "default_target_alias")]
    pub target_alias: String,
    /// Send a heartbeat a second to the target's `heartbeats` topic.
    #[serde(default = "default_true")]
    pub emit_heartbeats: bool,
    /// How often consumer group checkpoints are written (0 = never).
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// Also commit the translated group offsets on the target.
    #[serde(default = "default_true")]
    pub sync_group_offsets: bool,
    /// TLS to the target.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA certificates trusted for the target (default: the system's roots).
    #[serde(default)]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Name verified against the target's certificate (default: the host of the address).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// SASL mechanism: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (unset: no SASL).
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    /// SASL user name.
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// SASL password (prefer `sasl_password_env`).
    #[serde(default)]
    pub sasl_password: Option<String>,
    /// Environment variable holding the SASL password.
    #[serde(default)]
    pub sasl_password_env: Option<String>,
}

impl MirrorConfig {
    /// The `--mirror-to` mirror: every topic, default rename, zstd.
    pub fn all_to(target: &str) -> MirrorConfig {
        MirrorConfig {
            topics: Vec::new(),
            topics_regex: None,
            all_topics: true,
            target: target.to_string(),
            direction: Direction::Push,
            remote_alias: None,
            rename: None,
            filter_key_prefix: None,
            filter_header: None,
            priority: 0,
            bandwidth_bytes_per_sec: 0,
            compression: TransferCompression::Zstd,
            target_alias: default_target_alias(),
            emit_heartbeats: true,
            checkpoint_interval_ms: default_checkpoint_interval_ms(),
            sync_group_offsets: true,
            tls: false,
            tls_ca_file: None,
            tls_server_name: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            sasl_password_env: None,
        }
    }

    /// The TLS and SASL settings of the target (reads the CA file and the password variable).
    pub fn security(&self) -> Result<crate::security::TargetSecurity, ConfigError> {
        self.security_of_keys()
            .map_err(|(_, reason)| ConfigError::Invalid(reason))
    }

    /// [`MirrorConfig::security`], an error naming the key at fault.
    fn security_of_keys(&self) -> Result<crate::security::TargetSecurity, (&'static str, String)> {
        use crate::security::{SaslCredentials, SaslMechanism, TargetSecurity, TlsSettings};
        let tls = if self.tls {
            let config = crate::security::client_config(self.tls_ca_file.as_deref())
                .map_err(|e| ("tls_ca_file", e.to_string()))?;
            if let Some(name) = &self.tls_server_name {
                crate::security::server_name("", Some(name))
                    .map_err(|e| ("tls_server_name", e.to_string()))?;
            }
            Some(TlsSettings {
                config,
                server_name: self.tls_server_name.clone(),
            })
        } else {
            if self.tls_ca_file.is_some() || self.tls_server_name.is_some() {
                let key = if self.tls_ca_file.is_some() {
                    "tls_ca_file"
                } else {
                    "tls_server_name"
                };
                return Err((key, "tls_ca_file / tls_server_name need tls = true".into()));
            }
            None
        };
        let sasl = match &self.sasl_mechanism {
            None => {
                let key = [
                    ("sasl_username", self.sasl_username.is_some()),
                    ("sasl_password", self.sasl_password.is_some()),
                    ("sasl_password_env", self.sasl_password_env.is_some()),
                ]
                .into_iter()
                .find_map(|(k, set)| set.then_some(k));
                if let Some(key) = key {
                    return Err((
                        key,
                        "sasl_username / sasl_password need sasl_mechanism".into(),
                    ));
                }
                None
            }
            Some(name) => {
                let mechanism = SaslMechanism::from_name(name).ok_or_else(|| {
                    (
                        "sasl_mechanism",
                        format!(
                            "sasl_mechanism {name:?}: expected PLAIN, SCRAM-SHA-256 or \
                             SCRAM-SHA-512"
                        ),
                    )
                })?;
                let username = self
                    .sasl_username
                    .clone()
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| {
                        (
                            "sasl_mechanism",
                            "sasl_mechanism needs sasl_username".to_string(),
                        )
                    })?;
                let password = match (&self.sasl_password, &self.sasl_password_env) {
                    (Some(p), None) => p.clone(),
                    (None, Some(var)) => std::env::var(var).map_err(|_| {
                        (
                            "sasl_password_env",
                            format!("sasl_password_env: environment variable {var} is not set"),
                        )
                    })?,
                    _ => {
                        return Err((
                            "sasl_mechanism",
                            "sasl_mechanism needs exactly one of sasl_password, \
                             sasl_password_env"
                                .into(),
                        ))
                    }
                };
                Some(SaslCredentials {
                    mechanism,
                    username,
                    password,
                })
            }
        };
        Ok(TargetSecurity { tls, sasl })
    }

    /// The rename template in effect (the direction's default unless configured).
    pub fn rename(&self) -> &str {
        match (&self.rename, self.direction) {
            (Some(r), _) => r,
            (None, Direction::Push) => DEFAULT_RENAME,
            (None, Direction::Pull) => DEFAULT_PULL_RENAME,
        }
    }

    /// The remote cluster's alias of a pull mirror.
    pub fn remote_alias(&self) -> &str {
        self.remote_alias.as_deref().unwrap_or(DEFAULT_REMOTE_ALIAS)
    }

    /// Topic written for `topic` on a node named `node_name`: the target topic of a push
    /// mirror, the local topic of a pull mirror.
    pub fn target_topic(&self, node_name: &str, topic: &str) -> String {
        self.rename()
            .replace("{node_name}", node_name)
            .replace("{remote_alias}", self.remote_alias())
            .replace("{topic}", topic)
    }
}

impl BridgeConfig {
    /// Parse TOML text and check it (messages name the file `<bridge config>`).
    pub fn parse(text: &str) -> Result<BridgeConfig, ConfigError> {
        BridgeConfig::parse_file(text, Path::new("<bridge config>"))
    }

    /// Parse and check the text of the file `path`: every error at once, with its line.
    pub fn parse_file(text: &str, path: &Path) -> Result<BridgeConfig, ConfigError> {
        let mut checker = Checker::parse(path, text).map_err(ConfigError::File)?;
        let config: Option<BridgeConfig> = checker.deserialize();
        if let Some(c) = &config {
            checker.problems(c.check());
        }
        checker.finish(config).map_err(ConfigError::File)
    }

    /// Read, parse and check a file.
    pub fn load(path: &Path) -> Result<BridgeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        BridgeConfig::parse_file(&text, path)
    }

    /// Every problem of the mirrors (with `node_name`'s checks when it is set).
    pub fn check(&self) -> Vec<Problem> {
        check_mirrors(&self.mirror, self.node_name.as_deref())
    }
}

/// Every problem of `[[mirror]]` entries, located at `mirror[i].KEY`; `node_name` (when known)
/// adds [`MirrorConfig::validate_for_node`]'s check.
pub fn check_mirrors(mirrors: &[MirrorConfig], node_name: Option<&str>) -> Vec<Problem> {
    mirrors
        .iter()
        .enumerate()
        .flat_map(|(i, m)| m.check(&KeyPath::dotted("mirror").index(i), node_name))
        .collect()
}

impl MirrorConfig {
    /// Check the entry: the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.check(&KeyPath::default(), None).into_iter().next() {
            Some(p) => Err(ConfigError::Invalid(p.reason)),
            None => Ok(()),
        }
    }

    /// Every problem of the entry, each at its key under `at` (the entry itself when no one key
    /// is at fault); `node_name` adds the checks that need the node's name.
    pub fn check(&self, at: &KeyPath, node_name: Option<&str>) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, reason: String| {
            let path = if key.is_empty() {
                at.clone()
            } else {
                at.clone().key(key)
            };
            out.push(Problem::new(path, reason));
        };
        if self.target.trim().is_empty() {
            bad("target", "empty target".into());
        }
        if !self.rename().contains("{topic}") {
            bad(
                "rename",
                format!("rename {:?} must contain {{topic}}", self.rename()),
            );
        }
        self.check_direction(&mut bad);
        if self.topics.is_empty() && self.topics_regex.is_none() && !self.all_topics {
            bad(
                "",
                "a mirror needs topics, topics_regex or all_topics".into(),
            );
        }
        if let Some(r) = &self.topics_regex {
            if let Err(e) = regex_automata::meta::Regex::new(&format!("^(?:{r})$")) {
                bad("topics_regex", format!("topics_regex: {e}"));
            }
        }
        if let Err((key, reason)) = self.security_of_keys() {
            bad(key, reason);
        }
        if let Some(node) = node_name {
            if let Err(ConfigError::Invalid(reason)) = self.validate_for_node(node) {
                bad("remote_alias", reason);
            }
        }
        out
    }

    /// Direction-specific checks: pull mirrors name their remote topics and alias; push
    /// mirrors take neither `remote_alias` nor `{remote_alias}`.
    fn check_direction(&self, bad: &mut impl FnMut(&str, String)) {
        match self.direction {
            Direction::Push => {
                if self.remote_alias.is_some() {
                    bad(
                        "remote_alias",
                        "remote_alias applies to pull mirrors only (direction = \"pull\")".into(),
                    );
                }
                if self.rename().contains("{remote_alias}") {
                    bad(
                        "rename",
                        "{remote_alias} in rename applies to pull mirrors only".into(),
                    );
                }
            }
            Direction::Pull => {
                if self.all_topics {
                    bad(
                        "all_topics",
                        "a pull mirror names its remote topics (topics and/or topics_regex), \
                         all_topics is for push mirrors"
                            .into(),
                    );
                }
                let alias = self.remote_alias();
                if alias.is_empty() || alias.contains(char::is_whitespace) {
                    bad(
                        "remote_alias",
                        format!("remote_alias {alias:?} must be a non-empty name without spaces"),
                    );
                }
            }
        }
    }

    /// Checks that need the node's name: a pull mirror's remote alias must differ from it, or
    /// pulled records would look local and be mirrored back.
    pub fn validate_for_node(&self, node_name: &str) -> Result<(), ConfigError> {
        if self.direction == Direction::Pull && self.remote_alias() == node_name {
            return Err(ConfigError::Invalid(format!(
                "remote_alias {node_name:?} is this node's name: pulled records would look \
                 local and be mirrored back; pick another alias"
            )));
        }
        Ok(())
    }

    /// Whether `other` is the same mirror: the same topics (names, regex, all), the same
    /// direction, target and rename template, whatever the other settings. Two definitions of
    /// one mirror would copy the same records twice.
    pub fn is_same_mirror(&self, other: &MirrorConfig) -> bool {
        let bootstrap = |m: &MirrorConfig| {
            let mut servers: Vec<String> = m
                .target
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            servers.sort();
            servers
        };
        let topics = |m: &MirrorConfig| {
            let mut t = m.topics.clone();
            t.sort();
            t.dedup();
            t
        };
        self.direction == other.direction
            && bootstrap(self) == bootstrap(other)
            && topics(self) == topics(other)
            && self.topics_regex == other.topics_regex
            && self.all_topics == other.all_topics
            && self.rename() == other.rename()
    }

    /// A short description for messages: `push of ["a"] to central:9092`.
    pub fn describe(&self) -> String {
        let direction = match self.direction {
            Direction::Push => "push",
            Direction::Pull => "pull",
        };
        let mut what = Vec::new();
        if !self.topics.is_empty() {
            what.push(format!("{:?}", self.topics));
        }
        if let Some(r) = &self.topics_regex {
            what.push(format!("/{r}/"));
        }
        if self.all_topics {
            what.push("all topics".to_string());
        }
        format!("{direction} of {} to {}", what.join(" and "), self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mirrors_with_defaults() {
        let c = BridgeConfig::parse(
            r#"
node_name = "edge-01"
[[mirror]]
topics = ["alarms"]
topics_regex = "sensor-.*"
target = "central:9092"
filter_header = "class=alarm"
compression = "none"
[[mirror]]
all_topics = true
target = "c:1"
rename = "{topic}"
"#,
        )
        .unwrap();
        assert_eq!(c.mirror.len(), 2);
        assert_eq!(
            c.mirror[0].target_topic("edge-01", "alarms"),
            "edge-01.alarms"
        );
        assert_eq!(c.mirror[1].target_topic("edge-01", "alarms"), "alarms");
        assert_eq!(c.mirror[0].compression, TransferCompression::None);
        assert_eq!(c.mirror[0].target_alias, "central");
        assert!(c.mirror[0].emit_heartbeats && c.mirror[0].sync_group_offsets);
        assert_eq!(c.mirror[0].checkpoint_interval_ms, 5000);
        assert!(BridgeConfig::parse("[[mirror]]\ntarget = \"x:1\"\n").is_err());
        assert!(BridgeConfig::parse(
            "[[mirror]]\ntopics=[\"a\"]\ntarget = \"x:1\"\nrename=\"x\"\n"
        )
        .is_err());
        assert!(BridgeConfig::parse("[[mirror]]\ntopics_regex=\"(\"\ntarget = \"x:1\"\n").is_err());
    }

    #[test]
    fn pull_mirrors_default_and_validate() {
        let c = BridgeConfig::parse(
            r#"
node_name = "edge-01"
[[mirror]]
direction = "pull"
topics = ["commands"]
target = "central:9092"
[[mirror]]
direction = "pull"
topics_regex = "cmd-.*"
target = "c:1"
remote_alias = "hq"
rename = "{topic}"
"#,
        )
        .unwrap();
        assert_eq!(c.mirror[0].direction, Direction::Pull);
        assert_eq!(c.mirror[0].remote_alias(), "central");
        assert_eq!(
            c.mirror[0].target_topic("edge-01", "commands"),
            "central.commands"
        );
        assert_eq!(c.mirror[1].target_topic("edge-01", "cmd-a"), "cmd-a");
        assert_eq!(c.mirror[1].remote_alias(), "hq");
        let err = |text: &str| match BridgeConfig::parse(text) {
            Err(ConfigError::File(r)) if r.diagnostics.len() == 1 => {
                let m = &r.diagnostics[0].message;
                assert!(m.starts_with("invalid value for 'mirror[0]"), "{r}");
                m.clone()
            }
            other => panic!("expected one invalid-mirror error, got {other:?}"),
        };
        assert!(
            err("[[mirror]]\ndirection = \"pull\"\nall_topics = true\ntarget = \"x:1\"\n")
                .contains("all_topics")
        );
        assert!(
            err("[[mirror]]\ntopics = [\"a\"]\ntarget = \"x:1\"\nremote_alias = \"c\"\n")
                .contains("pull mirrors only")
        );
        assert!(err(
            "[[mirror]]\ntopics = [\"a\"]\ntarget = \"x:1\"\nrename = \"{remote_alias}.{topic}\"\n"
        )
        .contains("pull mirrors only"));
        assert!(err("[[mirror]]\ndirection = \"pull\"\ntopics = [\"a\"]\ntarget = \"x:1\"\nremote_alias = \"\"\n")
            .contains("remote_alias"));
        assert!(
            err("[[mirror]]\ndirection = \"pull\"\ntarget = \"x:1\"\n").contains("needs topics")
        );
        // The alias must not be this node's name (pulled records would look local).
        assert!(err(
            "node_name = \"central\"\n[[mirror]]\ndirection = \"pull\"\ntopics = [\"a\"]\ntarget = \"x:1\"\n"
        )
        .contains("this node's name"));
        match BridgeConfig::parse(
            "[[mirror]]\ndirection = \"sideways\"\ntopics = [\"a\"]\ntarget = \"x:1\"\n",
        ) {
            Err(ConfigError::File(r)) => {
                assert_eq!(r.diagnostics.len(), 1, "{r}");
                assert!(r.diagnostics[0].message.contains("unknown variant"), "{r}");
                assert_eq!(r.diagnostics[0].line, 2, "{r}");
            }
            other => panic!("expected a type error, got {other:?}"),
        }
    }

    #[test]
    fn security_settings() {
        let base = "[[mirror]]\ntopics = [\"a\"]\ntarget = \"central:9093\"\n";
        let c = BridgeConfig::parse(base).unwrap();
        let s = c.mirror[0].security().unwrap();
        assert!(s.tls.is_none() && s.sasl.is_none());
        let c = BridgeConfig::parse(&format!(
            "{base}sasl_mechanism = \"scram-sha-512\"\nsasl_username = \"edge\"\nsasl_password = \"pw\"\n"
        ))
        .unwrap();
        let sasl = c.mirror[0].security().unwrap().sasl.unwrap();
        assert_eq!(sasl.mechanism.name(), "SCRAM-SHA-512");
        assert_eq!(
            (sasl.username.as_str(), sasl.password.as_str()),
            ("edge", "pw")
        );
        for bad in [
            "sasl_mechanism = \"GSSAPI\"\nsasl_username = \"u\"\nsasl_password = \"p\"\n",
            "sasl_mechanism = \"PLAIN\"\nsasl_password = \"p\"\n",
            "sasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\n",
            "sasl_mechanism = \"PLAIN\"\nsasl_username = \"u\"\nsasl_password_env = \"RILL_TEST_SURELY_UNSET_VAR\"\n",
            "sasl_username = \"u\"\n",
            "tls_ca_file = \"ca.pem\"\n",
            "tls = true\ntls_ca_file = \"/nonexistent/ca.pem\"\n",
        ] {
            let err = BridgeConfig::parse(&format!("{base}{bad}")).unwrap_err();
            assert!(
                matches!(&err, ConfigError::File(r) if r.diagnostics.len() == 1
                    && r.diagnostics[0].message.starts_with("invalid value for 'mirror[0].")),
                "{bad}: {err}"
            );
            let mirror: MirrorConfig =
                toml::from_str(&format!("topics = [\"a\"]\ntarget = \"c:1\"\n{bad}")).unwrap();
            assert!(
                matches!(mirror.validate(), Err(ConfigError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_error_of_a_bridge_file_with_its_line() {
        let text = "node_name = \"edge-01\"\nnode_nmae = \"x\"\n\
                    [[mirror]]\ntopics = [\"a\"]\ntarget = \"c:1\"\nrename = \"x\"\n\
                    [[mirror]]\ntopics = [\"b\"]\ntarget = \"c:1\"\ncompresion = \"none\"\n\
                    [[mirror]]\ndirection = \"pull\"\ntopics = [\"c\"]\ntarget = \"c:1\"\n\
                    remote_alias = \"edge-01\"\ntopics_regex = \"(\"\n";
        let Err(ConfigError::File(r)) = BridgeConfig::parse_file(text, Path::new("b.toml")) else {
            panic!("accepted")
        };
        let lines: Vec<usize> = r.diagnostics.iter().map(|d| d.line).collect();
        assert_eq!(lines, [2, 6, 10, 15, 16], "{r}");
        let out = r.to_string();
        assert!(
            out.starts_with("b.toml:2:1: unknown key 'node_nmae'\n"),
            "{out}"
        );
        assert!(
            out.contains("b.toml:6:10: invalid value for 'mirror[0].rename'"),
            "{out}"
        );
        assert!(
            out.contains("b.toml:10:1: unknown key 'mirror[1].compresion'"),
            "{out}"
        );
        assert!(
            out.contains("'mirror[2].remote_alias': remote_alias \"edge-01\" is this node"),
            "{out}"
        );
        assert!(
            out.contains("b.toml:16:16: invalid value for 'mirror[2].topics_regex'"),
            "{out}"
        );
    }

    #[test]
    fn same_mirror_ignores_order_and_other_settings() {
        let m = |text: &str| -> MirrorConfig { toml::from_str(text).unwrap() };
        let a = m("topics = [\"a\", \"b\"]\ntarget = \"x:1, y:2\"\n");
        let b = m("topics = [\"b\", \"a\"]\ntarget = \"y:2,x:1\"\ncompression = \"none\"\n");
        assert!(a.is_same_mirror(&b));
        assert!(!a.is_same_mirror(&m("topics = [\"a\"]\ntarget = \"x:1,y:2\"\n")));
        assert!(!a.is_same_mirror(&m(
            "topics = [\"a\", \"b\"]\ntarget = \"x:1,y:2\"\nrename = \"{topic}\"\n"
        )));
        assert!(!a.is_same_mirror(&m(
            "direction = \"pull\"\ntopics = [\"a\", \"b\"]\ntarget = \"x:1,y:2\"\n"
        )));
        assert_eq!(a.describe(), "push of [\"a\", \"b\"] to x:1, y:2");
    }
}
