//! Per-topic configuration with Kafka's names (`retention.ms`, `cleanup.policy`, ...).
//!
//! CONTRACT (names fixed; bodies are being implemented).

use std::collections::BTreeMap;

/// `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    #[default]
    Delete,
    Compact,
    CompactDelete,
}

/// `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    #[default]
    CreateTime,
    LogAppendTime,
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

impl Default for TopicConfig {
    /// Kafka's defaults (retention.ms 7 days, segment.bytes 1 GiB, ...).
    fn default() -> Self {
        todo!()
    }
}

impl TopicConfig {
    /// Apply `overrides` (Kafka names) on top of `base`, validating every key and value.
    pub fn with_overrides(
        _base: &TopicConfig,
        _overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, ConfigError> {
        todo!()
    }
    /// All known keys with values and sources, for DescribeConfigs.
    pub fn describe(&self, _overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
        todo!()
    }
}
