//! The node's storage facade: topics, their partition logs, configs, background maintenance
//! (interval flush, retention, compaction, disk budget). The gateway talks to this type only.
//!
//! CONTRACT (signatures fixed; bodies are being implemented).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use uuid::Uuid;

use crate::crypto::CipherKind;
use crate::log::{FlushPolicy, LogError, PartitionLog};
use crate::topic_config::{ConfigEntry, ConfigError, TopicConfig};

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// 64 hex chars (or base64 of 32 bytes) from `RILL_MASTER_KEY`.
    Env(String),
    /// A key file; generated (0600) on first start only when the data directory is empty.
    File(PathBuf),
}

/// Encryption setting of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptionSetting {
    /// AES-256-GCM if the CPU has AES instructions, else ChaCha20-Poly1305.
    Auto,
    Cipher(CipherKind),
    /// Plaintext (benchmarks).
    Off,
}

/// Everything the broker needs to open.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub key_source: KeySource,
    pub encryption: EncryptionSetting,
    pub flush: FlushPolicy,
    /// Defaults for new topics (node-level `log.*` settings).
    pub default_topic_config: TopicConfig,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `num.partitions` for auto-created topics.
    pub default_partitions: i32,
    /// Node-wide disk budget; oldest closed segments across topics are deleted past it.
    pub disk_budget_bytes: Option<u64>,
}

/// A topic as the broker knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Per-topic overrides (Kafka names), as set by CreateTopics / AlterConfigs.
    pub overrides: BTreeMap<String, String>,
    /// Effective config (node defaults + overrides).
    pub config: TopicConfig,
    /// Internal topics (names starting with `__`).
    pub internal: bool,
}

/// One IncrementalAlterConfigs operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
    Append(String, String),
    Subtract(String, String),
}

/// Broker errors; the gateway maps each to a Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("unknown topic or partition {topic}-{partition}")]
    UnknownTopicOrPartition { topic: String, partition: i32 },
    #[error("unknown topic id {0}")]
    UnknownTopicId(Uuid),
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopic { name: String, reason: String },
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    #[error("invalid replication factor {0}: this node has no replicas")]
    InvalidReplicationFactor(i16),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(
        "data in {data_dir} was written under master key {found}; this node has key {expected}"
    )]
    WrongMasterKey {
        data_dir: PathBuf,
        expected: String,
        found: String,
    },
    #[error("key error: {0}")]
    Key(String),
    #[error("metadata store error: {0}")]
    Metadata(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The node's storage state.
pub struct Broker {}

impl Broker {
    /// Open the data directory (creating it), check the master key, open every partition log.
    pub fn open(_config: BrokerConfig) -> Result<Arc<Broker>, BrokerError> {
        todo!()
    }
    pub fn config(&self) -> &BrokerConfig {
        todo!()
    }
    /// Create a topic. `validate_only` checks without creating.
    pub fn create_topic(
        &self,
        _name: &str,
        _partitions: i32,
        _overrides: &BTreeMap<String, String>,
        _validate_only: bool,
    ) -> Result<TopicMeta, BrokerError> {
        todo!()
    }
    /// Delete a topic and its data.
    pub fn delete_topic(&self, _name: &str) -> Result<(), BrokerError> {
        todo!()
    }
    /// Grow a topic to `total` partitions.
    pub fn create_partitions(
        &self,
        _name: &str,
        _total: i32,
        _validate_only: bool,
    ) -> Result<(), BrokerError> {
        todo!()
    }
    pub fn topics(&self) -> Vec<TopicMeta> {
        todo!()
    }
    pub fn topic(&self, _name: &str) -> Option<TopicMeta> {
        todo!()
    }
    pub fn topic_by_id(&self, _id: Uuid) -> Option<TopicMeta> {
        todo!()
    }
    /// The log of one partition.
    pub fn partition(
        &self,
        _topic: &str,
        _partition: i32,
    ) -> Result<Arc<PartitionLog>, BrokerError> {
        todo!()
    }
    /// DescribeConfigs for a topic.
    pub fn describe_topic_config(&self, _topic: &str) -> Result<Vec<ConfigEntry>, BrokerError> {
        todo!()
    }
    /// AlterConfigs (`incremental == false`: replace all overrides with the Set ops) and
    /// IncrementalAlterConfigs.
    pub fn alter_topic_config(
        &self,
        _topic: &str,
        _ops: &[ConfigOp],
        _incremental: bool,
        _validate_only: bool,
    ) -> Result<(), BrokerError> {
        todo!()
    }
    /// The metadata store (redb), shared with the group coordinator.
    pub fn metadata(&self) -> &crate::metadata::MetaStore {
        todo!()
    }
    /// The cluster id (a random UUID fixed when the data directory was created), for Metadata and
    /// DescribeCluster.
    pub fn cluster_id(&self) -> String {
        todo!()
    }
    /// Flush every log and stop background work.
    pub fn shutdown(&self) -> Result<(), BrokerError> {
        todo!()
    }
}
