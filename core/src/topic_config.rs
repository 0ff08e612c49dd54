//! Per-topic configuration with Kafka's names (`retention.ms`, `cleanup.policy`, ...).
//!
//! Every topic config key a Kafka client or AdminClient commonly sends is known here, with its
//! type, valid range, Kafka default and a one-line documentation. Keys the log engine acts on
//! (retention, segments, cleanup, message size, timestamps, index interval) are parsed into typed
//! fields of [`TopicConfig`]; the other keys (`compression.type`, `min.insync.replicas`,
//! `flush.ms`, ...) are validated the same way and kept, normalised, in [`TopicConfig::other`], so
//! they are stored and described even though they do not change behaviour (yet).
//!
//! Values are parsed the way Kafka parses them: numbers are trimmed decimal, booleans are
//! case-insensitive `true`/`false`, `cleanup.policy` is a comma-separated list of `delete` and
//! `compact` in any order.

use std::collections::BTreeMap;

/// `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    #[default]
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    /// Kafka's spelling (`delete`, `compact`, `compact,delete`).
    pub fn as_str(&self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }

    /// Whether the log deletes segments by time/size.
    pub fn deletes(&self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }

    /// Whether the cleaner compacts the log.
    pub fn compacts(&self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
}

/// `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    #[default]
    CreateTime,
    LogAppendTime,
}

impl TimestampType {
    /// Kafka's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

/// Effective configuration of one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub cleanup_policy: CleanupPolicy,
    pub max_message_bytes: usize,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub message_timestamp_type: TimestampType,
    pub index_interval_bytes: u32,
    /// Validated, normalised values of the known keys that have no typed field above
    /// (`compression.type`, `min.insync.replicas`, `flush.ms`, ...). Only keys that were set (as a
    /// node default or a topic override) are present; the rest take their Kafka default.
    pub other: BTreeMap<String, String>,
}

/// A config key or value that is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown topic config '{0}'")]
    UnknownKey(String),
    #[error("invalid value '{value}' for '{key}': {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
}

/// Where a described value comes from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    TopicOverride,
    NodeDefault,
    Default,
}

/// One entry of a described config.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
}

/// The type of a config key, numbered like DescribeConfigs' `config_type` (v3+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

/// How a key's value is checked.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// A 64-bit integer in `[min, max]`.
    Long { min: i64 },
    /// A 32-bit integer in `[min, i32::MAX]`.
    Int { min: i64 },
    /// A floating point number in `[min, max]`.
    Double { min: f64, max: f64 },
    /// `true` or `false`.
    Bool,
    /// One of the listed strings (case-sensitive, as Kafka's `ValidString`).
    Choice(&'static [&'static str]),
    /// A non-empty comma-separated subset of `delete`, `compact`.
    CleanupPolicy,
    /// Throttled replicas: empty, `*`, or `partition:broker` pairs separated by commas.
    ReplicaList,
}

/// One known key.
struct KeySpec {
    name: &'static str,
    rule: Rule,
    default: &'static str,
    doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";

/// Every known topic config key, sorted by name.
const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "cleanup.policy",
        rule: Rule::CleanupPolicy,
        default: "delete",
        doc: "delete: drop old segments by time/size; compact: keep the latest record per key; or both.",
    },
    KeySpec {
        name: "compression.gzip.level",
        rule: Rule::Int { min: -1 },
        default: "-1",
        doc: "Compression level for gzip when compression.type is gzip (stored; batches are kept as sent).",
    },
    KeySpec {
        name: "compression.lz4.level",
        rule: Rule::Int { min: 1 },
        default: "9",
        doc: "Compression level for lz4 when compression.type is lz4 (stored; batches are kept as sent).",
    },
    KeySpec {
        name: "compression.type",
        rule: Rule::Choice(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        default: "producer",
        doc: "Final compression of the topic; 'producer' keeps the producer's codec (Rill stores batches as sent).",
    },
    KeySpec {
        name: "compression.zstd.level",
        rule: Rule::Int { min: -131072 },
        default: "3",
        doc: "Compression level for zstd when compression.type is zstd (stored; batches are kept as sent).",
    },
    KeySpec {
        name: "delete.retention.ms",
        rule: Rule::Long { min: 0 },
        default: "86400000",
        doc: "How long tombstones are kept in a compacted topic.",
    },
    KeySpec {
        name: "file.delete.delay.ms",
        rule: Rule::Long { min: 0 },
        default: "60000",
        doc: "Delay before a deleted file is removed from the file system (stored).",
    },
    KeySpec {
        name: "flush.messages",
        rule: Rule::Long { min: 1 },
        default: LONG_MAX,
        doc: "Force an fsync after this many messages (stored; the node flush policy governs fsync).",
    },
    KeySpec {
        name: "flush.ms",
        rule: Rule::Long { min: 0 },
        default: LONG_MAX,
        doc: "Force an fsync after this many milliseconds (stored; the node flush policy governs fsync).",
    },
    KeySpec {
        name: "follower.replication.throttled.replicas",
        rule: Rule::ReplicaList,
        default: "",
        doc: "Replicas whose follower replication is throttled (stored; no replicas yet).",
    },
    KeySpec {
        name: "index.interval.bytes",
        rule: Rule::Int { min: 0 },
        default: "4096",
        doc: "Bytes of batches between two entries of the sparse offset index.",
    },
    KeySpec {
        name: "leader.replication.throttled.replicas",
        rule: Rule::ReplicaList,
        default: "",
        doc: "Replicas whose leader replication is throttled (stored; no replicas yet).",
    },
    KeySpec {
        name: "local.retention.bytes",
        rule: Rule::Long { min: -2 },
        default: "-2",
        doc: "Local retention size with tiered storage; -2 means retention.bytes (stored).",
    },
    KeySpec {
        name: "local.retention.ms",
        rule: Rule::Long { min: -2 },
        default: "-2",
        doc: "Local retention time with tiered storage; -2 means retention.ms (stored).",
    },
    KeySpec {
        name: "max.compaction.lag.ms",
        rule: Rule::Long { min: 1 },
        default: LONG_MAX,
        doc: "Maximum time a record stays uncompacted (stored).",
    },
    KeySpec {
        name: "max.message.bytes",
        rule: Rule::Int { min: 0 },
        default: "1048588",
        doc: "Largest record batch the topic accepts.",
    },
    KeySpec {
        name: "message.downconversion.enable",
        rule: Rule::Bool,
        default: "true",
        doc: "Down-conversion of batches for old consumers (stored; Rill never down-converts).",
    },
    KeySpec {
        name: "message.timestamp.after.max.ms",
        rule: Rule::Long { min: 0 },
        default: LONG_MAX,
        doc: "Largest allowed amount a batch timestamp may be ahead of the broker's clock (stored).",
    },
    KeySpec {
        name: "message.timestamp.before.max.ms",
        rule: Rule::Long { min: 0 },
        default: LONG_MAX,
        doc: "Largest allowed amount a batch timestamp may be behind the broker's clock (stored).",
    },
    KeySpec {
        name: "message.timestamp.difference.max.ms",
        rule: Rule::Long { min: 0 },
        default: LONG_MAX,
        doc: "Deprecated: largest difference between batch and broker timestamps (stored).",
    },
    KeySpec {
        name: "message.timestamp.type",
        rule: Rule::Choice(&["CreateTime", "LogAppendTime"]),
        default: "CreateTime",
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with broker time.",
    },
    KeySpec {
        name: "min.cleanable.dirty.ratio",
        rule: Rule::Double { min: 0.0, max: 1.0 },
        default: "0.5",
        doc: "Share of uncompacted bytes in a log that triggers the cleaner.",
    },
    KeySpec {
        name: "min.compaction.lag.ms",
        rule: Rule::Long { min: 0 },
        default: "0",
        doc: "Minimum time a record stays uncompacted.",
    },
    KeySpec {
        name: "min.insync.replicas",
        rule: Rule::Int { min: 1 },
        default: "1",
        doc: "In-sync replicas an acks=all write needs (a node without replicas has one).",
    },
    KeySpec {
        name: "preallocate",
        rule: Rule::Bool,
        default: "false",
        doc: "Preallocate segment files (stored).",
    },
    KeySpec {
        name: "remote.storage.enable",
        rule: Rule::Bool,
        default: "false",
        doc: "Tiered storage for this topic (stored; not supported).",
    },
    KeySpec {
        name: "retention.bytes",
        rule: Rule::Long { min: i64::MIN },
        default: "-1",
        doc: "Largest size a partition grows to before old segments are deleted; -1 means no limit.",
    },
    KeySpec {
        name: "retention.ms",
        rule: Rule::Long { min: -1 },
        default: "604800000",
        doc: "How long records are kept before their segment is deleted; -1 means forever.",
    },
    KeySpec {
        name: "segment.bytes",
        rule: Rule::Int { min: 14 },
        default: "1073741824",
        doc: "Size at which the active segment is rolled.",
    },
    KeySpec {
        name: "segment.index.bytes",
        rule: Rule::Int { min: 4 },
        default: "10485760",
        doc: "Maximum size of a segment's offset index (stored).",
    },
    KeySpec {
        name: "segment.jitter.ms",
        rule: Rule::Long { min: 0 },
        default: "0",
        doc: "Random jitter subtracted from segment.ms (stored).",
    },
    KeySpec {
        name: "segment.ms",
        rule: Rule::Long { min: 1 },
        default: "604800000",
        doc: "Age at which the active segment is rolled even if not full.",
    },
    KeySpec {
        name: "unclean.leader.election.enable",
        rule: Rule::Bool,
        default: "false",
        doc: "Allow out-of-sync replicas to become leader (stored; no replicas yet).",
    },
];

fn spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|s| s.name == key)
}

/// All known topic config keys, sorted.
pub fn known_keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|s| s.name)
}

/// Whether `key` is a known topic config key.
pub fn is_known_key(key: &str) -> bool {
    spec(key).is_some()
}

/// Whether `key` holds a list (IncrementalAlterConfigs APPEND/SUBTRACT apply to it).
pub fn is_list_key(key: &str) -> bool {
    matches!(
        spec(key).map(|s| s.rule),
        Some(Rule::CleanupPolicy | Rule::ReplicaList)
    )
}

/// The type of a known key (DescribeConfigs `config_type`).
pub fn config_type(key: &str) -> Option<ConfigType> {
    spec(key).map(|s| match s.rule {
        Rule::Long { .. } => ConfigType::Long,
        Rule::Int { .. } => ConfigType::Int,
        Rule::Double { .. } => ConfigType::Double,
        Rule::Bool => ConfigType::Boolean,
        Rule::Choice(_) => ConfigType::String,
        Rule::CleanupPolicy | Rule::ReplicaList => ConfigType::List,
    })
}

/// One-line documentation of a known key (DescribeConfigs `documentation`).
pub fn documentation(key: &str) -> Option<&'static str> {
    spec(key).map(|s| s.doc)
}

/// Kafka's default value of a known key, as text.
pub fn default_value(key: &str) -> Option<&'static str> {
    spec(key).map(|s| s.default)
}

/// Validate `value` for `key` and return it in canonical form (trimmed numbers, lower-case
/// booleans, `cleanup.policy` as `delete` / `compact` / `compact,delete`).
pub fn normalize(key: &str, value: &str) -> Result<String, ConfigError> {
    let spec = spec(key).ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
    let invalid = |reason: String| ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    };
    let v = value.trim();
    match spec.rule {
        Rule::Long { min } => {
            let n: i64 = v
                .parse()
                .map_err(|_| invalid("expected a 64-bit integer".into()))?;
            if n < min {
                return Err(invalid(format!("must be at least {min}")));
            }
            Ok(n.to_string())
        }
        Rule::Int { min } => {
            let n: i32 = v
                .parse()
                .map_err(|_| invalid("expected a 32-bit integer".into()))?;
            if i64::from(n) < min {
                return Err(invalid(format!("must be at least {min}")));
            }
            Ok(n.to_string())
        }
        Rule::Double { min, max } => {
            let n: f64 = v.parse().map_err(|_| invalid("expected a number".into()))?;
            if !n.is_finite() || n < min || n > max {
                return Err(invalid(format!("must be between {min} and {max}")));
            }
            Ok(format!("{n:?}"))
        }
        Rule::Bool => match v.to_ascii_lowercase().as_str() {
            "true" => Ok("true".into()),
            "false" => Ok("false".into()),
            _ => Err(invalid("expected true or false".into())),
        },
        Rule::Choice(choices) => {
            if choices.contains(&v) {
                Ok(v.to_string())
            } else {
                Err(invalid(format!("must be one of {}", choices.join(", "))))
            }
        }
        Rule::CleanupPolicy => parse_cleanup_policy(v)
            .map(|p| p.as_str().to_string())
            .map_err(invalid),
        Rule::ReplicaList => normalize_replica_list(v).map_err(invalid),
    }
}

fn parse_cleanup_policy(v: &str) -> Result<CleanupPolicy, String> {
    let (mut delete, mut compact) = (false, false);
    for item in split_list(v) {
        match item {
            "delete" => delete = true,
            "compact" => compact = true,
            other => {
                return Err(format!(
                    "unknown policy '{other}' (use delete and/or compact)"
                ))
            }
        }
    }
    match (compact, delete) {
        (true, true) => Ok(CleanupPolicy::CompactDelete),
        (true, false) => Ok(CleanupPolicy::Compact),
        (false, true) => Ok(CleanupPolicy::Delete),
        (false, false) => Err("must name at least one of delete, compact".into()),
    }
}

fn normalize_replica_list(v: &str) -> Result<String, String> {
    if v == "*" {
        return Ok("*".into());
    }
    let mut out = Vec::new();
    for item in split_list(v) {
        let ok = item
            .split_once(':')
            .map(|(p, b)| p.trim().parse::<i32>().is_ok() && b.trim().parse::<i32>().is_ok())
            .unwrap_or(false);
        if !ok {
            return Err(format!(
                "'{item}' is not partition:broker (use '*' or a comma-separated list)"
            ));
        }
        out.push(item.to_string());
    }
    Ok(out.join(","))
}

/// Items of a comma-separated list value, trimmed, empty items skipped.
pub fn split_list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// IncrementalAlterConfigs APPEND: `current` plus the items of `add` not already in it.
pub fn list_append(current: &str, add: &str) -> String {
    let mut items: Vec<&str> = split_list(current).collect();
    for item in split_list(add) {
        if !items.contains(&item) {
            items.push(item);
        }
    }
    items.join(",")
}

/// IncrementalAlterConfigs SUBTRACT: `current` without the items of `remove`.
pub fn list_subtract(current: &str, remove: &str) -> String {
    let remove: Vec<&str> = split_list(remove).collect();
    split_list(current)
        .filter(|item| !remove.contains(item))
        .collect::<Vec<_>>()
        .join(",")
}

impl Default for TopicConfig {
    /// Kafka's defaults (retention.ms 7 days, segment.bytes 1 GiB, ...).
    fn default() -> Self {
        TopicConfig {
            retention_ms: 604_800_000,
            retention_bytes: -1,
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            cleanup_policy: CleanupPolicy::Delete,
            max_message_bytes: 1_048_588,
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            message_timestamp_type: TimestampType::CreateTime,
            index_interval_bytes: 4096,
            other: BTreeMap::new(),
        }
    }
}

impl TopicConfig {
    /// Apply `overrides` (Kafka names) on top of `base`, validating every key and value.
    pub fn with_overrides(
        base: &TopicConfig,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, ConfigError> {
        let mut cfg = base.clone();
        for (key, value) in overrides {
            cfg.set(key, value)?;
        }
        cfg.check_consistency()?;
        Ok(cfg)
    }

    /// Set one key (validated).
    fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let v = normalize(key, value)?;
        // `normalize` has checked type and range; parse errors below cannot happen, but are
        // reported rather than unwrapped.
        let bad = |reason: &str| ConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let int = |s: &str| s.parse::<i64>().map_err(|_| bad("expected an integer"));
        match key {
            "retention.ms" => self.retention_ms = int(&v)?,
            "retention.bytes" => self.retention_bytes = int(&v)?,
            "segment.bytes" => {
                self.segment_bytes = u64::try_from(int(&v)?).map_err(|_| bad("negative"))?
            }
            "segment.ms" => self.segment_ms = int(&v)?,
            "cleanup.policy" => {
                self.cleanup_policy = parse_cleanup_policy(&v).map_err(|r| bad(&r))?
            }
            "max.message.bytes" => {
                self.max_message_bytes = usize::try_from(int(&v)?).map_err(|_| bad("negative"))?
            }
            "delete.retention.ms" => self.delete_retention_ms = int(&v)?,
            "min.cleanable.dirty.ratio" => {
                self.min_cleanable_dirty_ratio =
                    v.parse::<f64>().map_err(|_| bad("expected a number"))?
            }
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = int(&v)?,
            "message.timestamp.type" => {
                self.message_timestamp_type = if v == "LogAppendTime" {
                    TimestampType::LogAppendTime
                } else {
                    TimestampType::CreateTime
                }
            }
            "index.interval.bytes" => {
                self.index_interval_bytes =
                    u32::try_from(int(&v)?).map_err(|_| bad("out of range"))?
            }
            _ => {
                self.other.insert(key.to_string(), v);
            }
        }
        Ok(())
    }

    /// Checks that involve more than one key.
    fn check_consistency(&self) -> Result<(), ConfigError> {
        let max_lag = self
            .value_of("max.compaction.lag.ms")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(i64::MAX);
        if self.min_compaction_lag_ms > max_lag {
            return Err(ConfigError::InvalidValue {
                key: "min.compaction.lag.ms".into(),
                value: self.min_compaction_lag_ms.to_string(),
                reason: format!("must not exceed max.compaction.lag.ms ({max_lag})"),
            });
        }
        Ok(())
    }

    /// `min.insync.replicas`: how many in-sync replicas an acks=all write needs (Kafka's default
    /// 1; a value that does not parse counts as the default).
    pub fn min_insync_replicas(&self) -> usize {
        self.other
            .get("min.insync.replicas")
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n >= 1)
            .unwrap_or(1)
    }

    /// The effective value of a known key as Kafka would print it, or `None` for unknown keys.
    pub fn value_of(&self, key: &str) -> Option<String> {
        let spec = spec(key)?;
        Some(match key {
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "cleanup.policy" => self.cleanup_policy.as_str().to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "min.cleanable.dirty.ratio" => format!("{:?}", self.min_cleanable_dirty_ratio),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "message.timestamp.type" => self.message_timestamp_type.as_str().to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            _ => self
                .other
                .get(key)
                .cloned()
                .unwrap_or_else(|| spec.default.to_string()),
        })
    }

    /// All known keys with values and sources, for DescribeConfigs.
    ///
    /// A key present in `overrides` is a [`ConfigSource::TopicOverride`]; otherwise a value that
    /// differs from Kafka's default was set by the node ([`ConfigSource::NodeDefault`]); otherwise
    /// it is [`ConfigSource::Default`].
    pub fn describe(&self, overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
        KEYS.iter()
            .map(|spec| {
                let value = self
                    .value_of(spec.name)
                    .unwrap_or_else(|| spec.default.to_string());
                let source = if overrides.contains_key(spec.name) {
                    ConfigSource::TopicOverride
                } else if normalize(spec.name, spec.default).ok().as_deref() != Some(value.as_str())
                {
                    ConfigSource::NodeDefault
                } else {
                    ConfigSource::Default
                };
                ConfigEntry {
                    name: spec.name.to_string(),
                    value,
                    source,
                    read_only: false,
                    sensitive: false,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = TopicConfig::default();
        assert_eq!(c.retention_ms, 604_800_000);
        assert_eq!(c.retention_bytes, -1);
        assert_eq!(c.segment_bytes, 1_073_741_824);
        assert_eq!(c.segment_ms, 604_800_000);
        assert_eq!(c.cleanup_policy, CleanupPolicy::Delete);
        assert_eq!(c.max_message_bytes, 1_048_588);
        assert_eq!(c.delete_retention_ms, 86_400_000);
        assert_eq!(c.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(c.min_compaction_lag_ms, 0);
        assert_eq!(c.message_timestamp_type, TimestampType::CreateTime);
        assert_eq!(c.index_interval_bytes, 4096);
        // Every default in the key table parses and round-trips.
        for key in known_keys() {
            let d = default_value(key).unwrap();
            let n = normalize(key, d).unwrap();
            assert_eq!(c.value_of(key).unwrap(), n, "{key}");
        }
    }

    #[test]
    fn keys_are_sorted_and_unique() {
        let keys: Vec<_> = known_keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn overrides_apply_to_typed_fields() {
        let c = TopicConfig::with_overrides(
            &TopicConfig::default(),
            &map(&[
                ("retention.ms", " 1000 "),
                ("retention.bytes", "5000"),
                ("segment.bytes", "1048576"),
                ("segment.ms", "60000"),
                ("max.message.bytes", "2000"),
                ("delete.retention.ms", "0"),
                ("min.cleanable.dirty.ratio", "0.1"),
                ("min.compaction.lag.ms", "10"),
                ("message.timestamp.type", "LogAppendTime"),
                ("index.interval.bytes", "100"),
            ]),
        )
        .unwrap();
        assert_eq!(c.retention_ms, 1000);
        assert_eq!(c.retention_bytes, 5000);
        assert_eq!(c.segment_bytes, 1_048_576);
        assert_eq!(c.segment_ms, 60000);
        assert_eq!(c.max_message_bytes, 2000);
        assert_eq!(c.delete_retention_ms, 0);
        assert_eq!(c.min_cleanable_dirty_ratio, 0.1);
        assert_eq!(c.min_compaction_lag_ms, 10);
        assert_eq!(c.message_timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(c.index_interval_bytes, 100);
        assert!(c.other.is_empty());
    }

    #[test]
    fn cleanup_policy_in_any_order() {
        for (v, want) in [
            ("delete", CleanupPolicy::Delete),
            ("compact", CleanupPolicy::Compact),
            ("compact,delete", CleanupPolicy::CompactDelete),
            ("delete,compact", CleanupPolicy::CompactDelete),
            (" delete , compact ", CleanupPolicy::CompactDelete),
            ("compact,compact", CleanupPolicy::Compact),
        ] {
            let c = TopicConfig::with_overrides(
                &TopicConfig::default(),
                &map(&[("cleanup.policy", v)]),
            )
            .unwrap();
            assert_eq!(c.cleanup_policy, want, "{v}");
            assert_eq!(c.value_of("cleanup.policy").unwrap(), want.as_str());
        }
        for bad in ["", ",", "remove", "delete,remove", "Delete"] {
            let e = normalize("cleanup.policy", bad).unwrap_err();
            assert!(matches!(e, ConfigError::InvalidValue { .. }), "{bad}");
        }
        assert!(CleanupPolicy::CompactDelete.compacts() && CleanupPolicy::CompactDelete.deletes());
        assert!(!CleanupPolicy::Compact.deletes());
    }

    #[test]
    fn passive_keys_are_validated_and_kept() {
        let c = TopicConfig::with_overrides(
            &TopicConfig::default(),
            &map(&[
                ("compression.type", "zstd"),
                ("min.insync.replicas", "2"),
                ("flush.ms", "1000"),
                ("preallocate", "TRUE"),
                ("unclean.leader.election.enable", "false"),
                ("local.retention.ms", "-2"),
                ("leader.replication.throttled.replicas", "0:1, 1:2"),
                ("message.timestamp.after.max.ms", "3600000"),
            ]),
        )
        .unwrap();
        assert_eq!(c.value_of("compression.type").unwrap(), "zstd");
        assert_eq!(c.value_of("min.insync.replicas").unwrap(), "2");
        assert_eq!(c.min_insync_replicas(), 2);
        assert_eq!(TopicConfig::default().min_insync_replicas(), 1);
        assert_eq!(c.value_of("flush.ms").unwrap(), "1000");
        assert_eq!(c.value_of("preallocate").unwrap(), "true");
        assert_eq!(
            c.value_of("leader.replication.throttled.replicas").unwrap(),
            "0:1,1:2"
        );
        assert_eq!(c.value_of("flush.messages").unwrap(), LONG_MAX);
        // Typed fields untouched.
        assert_eq!(c.retention_ms, TopicConfig::default().retention_ms);
    }

    #[test]
    fn bad_values_and_keys_are_refused() {
        let cases = [
            ("retention.ms", "-2"),
            ("retention.ms", "abc"),
            ("retention.ms", "1.5"),
            ("segment.bytes", "13"),
            ("segment.bytes", "3000000000"),
            ("segment.ms", "0"),
            ("max.message.bytes", "-1"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.cleanable.dirty.ratio", "NaN"),
            ("message.timestamp.type", "createtime"),
            ("compression.type", "brotli"),
            ("min.insync.replicas", "0"),
            ("preallocate", "yes"),
            ("flush.messages", "0"),
            ("local.retention.bytes", "-3"),
            ("follower.replication.throttled.replicas", "x"),
        ];
        for (k, v) in cases {
            let r = TopicConfig::with_overrides(&TopicConfig::default(), &map(&[(k, v)]));
            match r {
                Err(ConfigError::InvalidValue { key, value, .. }) => {
                    assert_eq!(key, k);
                    assert_eq!(value, v);
                }
                other => panic!("{k}={v}: expected InvalidValue, got {other:?}"),
            }
        }
        let r = TopicConfig::with_overrides(&TopicConfig::default(), &map(&[("retention", "1")]));
        assert!(matches!(r, Err(ConfigError::UnknownKey(k)) if k == "retention"));
        // retention.bytes takes any long, -1 meaning unlimited.
        assert!(normalize("retention.bytes", "-1").is_ok());
        assert!(normalize("retention.ms", "-1").is_ok());
    }

    #[test]
    fn compaction_lags_must_be_ordered() {
        let r = TopicConfig::with_overrides(
            &TopicConfig::default(),
            &map(&[
                ("min.compaction.lag.ms", "1000"),
                ("max.compaction.lag.ms", "999"),
            ]),
        );
        assert!(
            matches!(r, Err(ConfigError::InvalidValue { key, .. }) if key == "min.compaction.lag.ms")
        );
    }

    #[test]
    fn describe_reports_every_key_with_source() {
        let node = TopicConfig::with_overrides(
            &TopicConfig::default(),
            &map(&[("retention.ms", "3600000"), ("compression.type", "lz4")]),
        )
        .unwrap();
        let overrides = map(&[
            ("segment.bytes", "1048576"),
            ("cleanup.policy", "delete,compact"),
        ]);
        let eff = TopicConfig::with_overrides(&node, &overrides).unwrap();
        let entries = eff.describe(&overrides);
        assert_eq!(entries.len(), known_keys().count());
        let get = |k: &str| entries.iter().find(|e| e.name == k).unwrap().clone();
        let e = get("segment.bytes");
        assert_eq!(
            (e.value.as_str(), e.source),
            ("1048576", ConfigSource::TopicOverride)
        );
        let e = get("cleanup.policy");
        assert_eq!(
            (e.value.as_str(), e.source),
            ("compact,delete", ConfigSource::TopicOverride)
        );
        let e = get("retention.ms");
        assert_eq!(
            (e.value.as_str(), e.source),
            ("3600000", ConfigSource::NodeDefault)
        );
        let e = get("compression.type");
        assert_eq!(
            (e.value.as_str(), e.source),
            ("lz4", ConfigSource::NodeDefault)
        );
        let e = get("max.message.bytes");
        assert_eq!(
            (e.value.as_str(), e.source),
            ("1048588", ConfigSource::Default)
        );
        let e = get("min.cleanable.dirty.ratio");
        assert_eq!((e.value.as_str(), e.source), ("0.5", ConfigSource::Default));
        assert!(entries.iter().all(|e| !e.read_only && !e.sensitive));
    }

    #[test]
    fn list_operations() {
        assert_eq!(list_append("delete", "compact"), "delete,compact");
        assert_eq!(list_append("delete", "delete"), "delete");
        assert_eq!(list_append("", "compact"), "compact");
        assert_eq!(list_subtract("compact,delete", "delete"), "compact");
        assert_eq!(list_subtract("compact", "compact"), "");
        assert!(is_list_key("cleanup.policy"));
        assert!(!is_list_key("retention.ms"));
        assert_eq!(config_type("retention.ms"), Some(ConfigType::Long));
        assert_eq!(config_type("cleanup.policy"), Some(ConfigType::List));
        assert_eq!(config_type("nope"), None);
        assert!(documentation("segment.ms").is_some());
    }

    proptest::proptest! {
        /// Any accepted value is described exactly as normalised, and normalising is idempotent.
        #[test]
        fn accepted_values_describe_as_normalised(
            key_index in 0usize..KEYS.len(),
            n in proptest::num::i64::ANY,
            ratio in 0.0f64..=1.0,
            spaces in 0usize..3,
        ) {
            let spec = &KEYS[key_index];
            let raw = match spec.rule {
                Rule::Double { .. } => format!("{ratio}"),
                Rule::Bool => if n % 2 == 0 { "TRUE".into() } else { "false".into() },
                Rule::Choice(c) => c[n.unsigned_abs() as usize % c.len()].to_string(),
                Rule::CleanupPolicy => ["delete", "compact", "delete,compact"][n.unsigned_abs() as usize % 3].into(),
                Rule::ReplicaList => format!("{}:{}", n & 0xff, (n >> 8) & 0xff),
                Rule::Long { .. } | Rule::Int { .. } => n.to_string(),
            };
            let padded = format!("{}{raw}{}", " ".repeat(spaces), " ".repeat(spaces));
            let overrides: BTreeMap<String, String> =
                [(spec.name.to_string(), padded.clone())].into_iter().collect();
            match normalize(spec.name, &padded) {
                Ok(norm) => {
                    proptest::prop_assert_eq!(normalize(spec.name, &norm).unwrap(), norm.clone());
                    let cfg = TopicConfig::with_overrides(&TopicConfig::default(), &overrides);
                    // The only cross-key rule: min.compaction.lag.ms <= max.compaction.lag.ms.
                    if let Ok(cfg) = cfg {
                        let e = cfg.describe(&overrides).into_iter().find(|e| e.name == spec.name).unwrap();
                        proptest::prop_assert_eq!(e.value, norm);
                        proptest::prop_assert_eq!(e.source, ConfigSource::TopicOverride);
                    }
                }
                Err(ConfigError::InvalidValue { key, .. }) => {
                    proptest::prop_assert_eq!(key, spec.name);
                    let numeric = matches!(spec.rule, Rule::Long { .. } | Rule::Int { .. });
                    proptest::prop_assert!(numeric);
                    proptest::prop_assert!(
                        TopicConfig::with_overrides(&TopicConfig::default(), &overrides).is_err()
                    );
                }
                Err(e) => proptest::prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}
