//! The node's storage facade: topics, their partition logs, configs, background maintenance
//! (interval flush, retention, compaction, disk budget). The gateway talks to this type only.
//!
//! Data layout (Kafka's): `<data_dir>/meta.redb` (metadata, see `docs/metadata-format.md`) and one
//! directory per partition, `<data_dir>/<topic>-<partition>/`. Topic creation persists the topic
//! in the registry before creating its partition directories; deletion removes it from the
//! registry first, then renames each partition directory to `<topic>-<p>.<uuid>-delete` and removes
//! it. On open, `*-delete` directories and partition directories the registry does not know are
//! removed, so a crash at any point of either operation leaves a consistent node.

use crate::sync::{LockExt, RwLockExt};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use uuid::Uuid;

use crate::backlog::{Backlog, BacklogConfig};
use crate::clock::now_ms;
use crate::crypto::{CipherKind, Encryption};
use crate::io::Storage;
use crate::keyring::{self, KeyError};
use crate::liveness::Liveness;
use crate::log::{FlushPolicy, LogError, LogOptions, PartitionLog};
use crate::maintenance::{Maintenance, MaintenanceTasks, Schedule};
use crate::metadata::{MetaStore, KEY_ENCRYPTION};
use crate::topic_config::{self, ConfigEntry, ConfigError, TopicConfig};
use crate::topic_registry::{RegistryError, TopicRecord, TopicRegistry};

/// Where the master key comes from (defined with the keyring; named here because it is part of
/// [`BrokerConfig`]).
pub use crate::keyring::KeySource;

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
    /// How often the maintenance thread applies retention and the disk budget (ms).
    pub retention_check_interval_ms: u64,
    /// How often the maintenance thread runs the log cleaner (compaction) over compacted topics.
    pub cleaner_interval_ms: u64,
    /// What happens when data held by a retention floor (not yet mirrored) nears the topic's
    /// retention or the disk budget (see [`crate::backlog`]).
    pub backlog: BacklogConfig,
    /// Told about fsyncs, bytes written, retention deletions and cleaner passes of every log
    /// (the gateway's metrics; [`crate::storage_observer::none`] by default).
    pub observer: Arc<dyn crate::storage_observer::StorageObserver>,
    /// Which partitions of a registered topic this node keeps a log for.
    pub hosting: Hosting,
}

/// Which partitions of a registered topic a node keeps a log for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hosting {
    /// A node alone: every partition of every topic (a missing directory is created).
    #[default]
    AllPartitions,
    /// A cluster member: only the partitions the metadata image assigns to this node. At open,
    /// the partitions whose directories exist; [`Broker::reconcile_topic`] then makes the set
    /// exactly the image's.
    Assigned,
}

impl BrokerConfig {
    /// The embedded defaults: flush before acknowledging (`Always`), encryption `Auto`, one
    /// partition per auto-created topic, auto-creation on, Kafka's topic defaults, no disk budget,
    /// retention checked every 5 s.
    pub fn new(data_dir: impl Into<PathBuf>, key_source: KeySource) -> BrokerConfig {
        BrokerConfig {
            data_dir: data_dir.into(),
            key_source,
            encryption: EncryptionSetting::Auto,
            flush: FlushPolicy::Always,
            default_topic_config: TopicConfig::default(),
            auto_create_topics: true,
            default_partitions: 1,
            disk_budget_bytes: None,
            retention_check_interval_ms: DEFAULT_RETENTION_CHECK_INTERVAL_MS,
            cleaner_interval_ms: DEFAULT_CLEANER_INTERVAL_MS,
            backlog: BacklogConfig::default(),
            hosting: Hosting::AllPartitions,
            observer: crate::storage_observer::none(),
        }
    }
}

pub use crate::maintenance::{DEFAULT_CLEANER_INTERVAL_MS, DEFAULT_RETENTION_CHECK_INTERVAL_MS};

/// Most partitions one topic may have on a node.
pub const MAX_PARTITIONS: i32 = 10_000;

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
    /// A local topic change on a cluster member ([`Hosting::Assigned`]): topics of a cluster are
    /// created and grown through the controller.
    #[error("topic '{0}' cannot be created or grown locally on a cluster member: topics are created through the controller (CreateTopics / CreatePartitions on any node)")]
    ManagedByController(String),
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

impl From<KeyError> for BrokerError {
    fn from(e: KeyError) -> BrokerError {
        match e {
            KeyError::WrongMasterKey {
                data_dir,
                expected,
                found,
            } => BrokerError::WrongMasterKey {
                data_dir,
                expected,
                found,
            },
            KeyError::Metadata(e) => BrokerError::Metadata(e.to_string()),
            e => BrokerError::Key(e.to_string()),
        }
    }
}

impl From<crate::key_rotation::KeyRotationError> for BrokerError {
    fn from(e: crate::key_rotation::KeyRotationError) -> BrokerError {
        match e {
            crate::key_rotation::KeyRotationError::Key(k) => k.into(),
            e => BrokerError::Key(e.to_string()),
        }
    }
}

/// The open logs of one topic by partition (every partition on a node alone, the hosted replicas
/// in a cluster).
type TopicLogs = BTreeMap<i32, Arc<PartitionLog>>;

/// The node's storage state.
pub struct Broker {
    config: BrokerConfig,
    meta: Arc<MetaStore>,
    registry: TopicRegistry,
    encryption: Encryption,
    storage: Arc<dyn Storage>,
    logs: RwLock<HashMap<String, TopicLogs>>,
    /// Serialises topic creation, deletion, partition changes and config changes.
    admin: Mutex<()>,
    cluster_id: String,
    maintenance: Mutex<Option<Maintenance>>,
    /// Marked by the maintenance thread (for the service watchdog).
    maintenance_liveness: Liveness,
    backlog: Backlog,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

fn registry_err(e: RegistryError) -> BrokerError {
    match e {
        RegistryError::AlreadyExists(n) => BrokerError::TopicAlreadyExists(n),
        RegistryError::UnknownTopic(n) => BrokerError::UnknownTopicOrPartition {
            topic: n,
            partition: -1,
        },
        RegistryError::InvalidName { name, reason } => BrokerError::InvalidTopic { name, reason },
        e @ (RegistryError::Storage(_) | RegistryError::CorruptRecord { .. }) => {
            BrokerError::Metadata(e.to_string())
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BrokerError + '_ {
    move |source| BrokerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn unknown_topic(topic: &str) -> BrokerError {
    BrokerError::UnknownTopicOrPartition {
        topic: topic.to_string(),
        partition: -1,
    }
}

/// Effective config of a stored topic. Stored overrides were validated when set; should the node
/// defaults have changed so that they no longer combine, the invalid override is skipped (and
/// logged) rather than refusing to start.
fn effective_config(
    base: &TopicConfig,
    topic: &str,
    overrides: &BTreeMap<String, String>,
) -> TopicConfig {
    match TopicConfig::with_overrides(base, overrides) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%topic, error = %e, "stored topic config no longer valid; skipping invalid overrides");
            let mut cfg = base.clone();
            for (k, v) in overrides {
                let one = BTreeMap::from([(k.clone(), v.clone())]);
                match TopicConfig::with_overrides(&cfg, &one) {
                    Ok(c) => cfg = c,
                    Err(e) => tracing::warn!(%topic, key = %k, error = %e, "ignoring override"),
                }
            }
            cfg
        }
    }
}

/// Parse a partition directory name `<topic>-<p>` (not a `-delete` directory).
fn parse_partition_dir(name: &str) -> Option<(&str, i32)> {
    let (topic, p) = name.rsplit_once('-')?;
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let p: i32 = p.parse().ok()?;
    crate::topic_registry::validate_topic_name(topic).ok()?;
    Some((topic, p))
}

impl Broker {
    /// Open the data directory (creating it), check the master key, open every partition log.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, BrokerError> {
        let data_dir = config.data_dir.clone();
        // The key is loaded before the directory is created: generating a key file is only
        // allowed while the data directory is still missing or empty.
        let encryption = match config.encryption {
            EncryptionSetting::Off => Encryption::Off,
            setting => {
                let loaded = keyring::load_key(&config.key_source, &data_dir)?;
                let cipher = match setting {
                    EncryptionSetting::Cipher(c) => c,
                    _ => CipherKind::auto(),
                };
                Encryption::On {
                    cipher,
                    master: Arc::new(loaded.master_key()),
                }
            }
        };
        std::fs::create_dir_all(&data_dir).map_err(io_err(&data_dir))?;
        let meta =
            Arc::new(MetaStore::open(&data_dir).map_err(|e| BrokerError::Metadata(e.to_string()))?);
        let registry = TopicRegistry::open(Arc::clone(&meta)).map_err(registry_err)?;
        let encryption = check_encryption_setting(&meta, &registry, encryption, &data_dir)?;
        let cluster_id = meta
            .cluster_id()
            .map_err(|e| BrokerError::Metadata(e.to_string()))?;

        let backlog = Backlog::new(config.backlog);
        let broker = Broker {
            config,
            meta,
            registry,
            encryption,
            storage: crate::failpoints::log_storage(),
            logs: RwLock::new(HashMap::new()),
            admin: Mutex::new(()),
            cluster_id,
            maintenance: Mutex::new(None),
            maintenance_liveness: Liveness::new(),
            backlog,
        };
        broker.remove_stray_dirs()?;
        {
            let mut logs = broker.logs_write();
            for rec in broker.registry.list() {
                let cfg = effective_config(
                    &broker.config.default_topic_config,
                    &rec.name,
                    &rec.overrides,
                );
                let mut parts = TopicLogs::new();
                for p in 0..rec.partitions {
                    if broker.config.hosting == Hosting::Assigned
                        && !broker.partition_dir(&rec.name, p).exists()
                    {
                        continue;
                    }
                    parts.insert(p, Arc::new(broker.open_log(&rec, p, &cfg)?));
                }
                logs.insert(rec.name.clone(), parts);
            }
        }
        let broker = Arc::new(broker);
        let schedule = Schedule::new(
            broker.config.flush,
            broker.config.retention_check_interval_ms,
        )
        .with_cleaner(broker.config.cleaner_interval_ms);
        let m = Maintenance::start(
            Arc::downgrade(&broker),
            schedule,
            broker.maintenance_liveness.clone(),
        )
        .map_err(io_err(&broker.config.data_dir))?;
        *broker.maintenance.lock_unpoisoned() = Some(m);
        tracing::info!(
            data_dir = %broker.config.data_dir.display(),
            topics = broker.registry.list().len(),
            encrypted = matches!(broker.encryption, Encryption::On { .. }),
            "broker storage open"
        );
        Ok(broker)
    }

    /// Marked by the maintenance thread while it runs (see [`crate::liveness`]).
    pub fn maintenance_liveness(&self) -> &Liveness {
        &self.maintenance_liveness
    }

    /// The cipher new segments are sealed with, or `None` when encryption is off.
    pub fn cipher(&self) -> Option<crate::crypto::CipherKind> {
        match &self.encryption {
            Encryption::On { cipher, .. } => Some(*cipher),
            Encryption::Off => None,
        }
    }

    /// The configuration the broker was opened with.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    fn logs_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, TopicLogs>> {
        self.logs.read_unpoisoned()
    }

    fn logs_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, TopicLogs>> {
        self.logs.write_unpoisoned()
    }

    fn admin_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.admin.lock_unpoisoned()
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.config.data_dir.join(format!("{topic}-{partition}"))
    }

    fn open_log(
        &self,
        rec: &TopicRecord,
        partition: i32,
        config: &TopicConfig,
    ) -> Result<PartitionLog, BrokerError> {
        let opts = LogOptions {
            topic_id: rec.id,
            topic: rec.name.clone(),
            partition,
            config: config.clone(),
            flush: self.config.flush,
            encryption: self.encryption.clone(),
            storage: Arc::clone(&self.storage),
            observer: Arc::clone(&self.config.observer),
        };
        let log = PartitionLog::open(self.partition_dir(&rec.name, partition), opts)?;
        if self.config.hosting == Hosting::Assigned {
            // A cluster member's log is a replica: until the replica layer says what it is (leader
            // or follower, from the controller's image), it takes no local appends and shows
            // nothing it cannot know to be committed.
            log.set_leader_appends(false);
            log.set_high_watermark_mode(crate::log::HighWatermarkMode::Replicated);
        }
        Ok(log)
    }

    /// Open the log of a partition that is new to the registry (a new topic or added partition).
    /// A directory of that name left over from an earlier topic is discarded first, so its data
    /// is never mixed in.
    fn open_new_log(
        &self,
        rec: &TopicRecord,
        partition: i32,
        config: &TopicConfig,
    ) -> Result<PartitionLog, BrokerError> {
        let dir = self.partition_dir(&rec.name, partition);
        if dir.exists() {
            self.discard_dir(&dir)?;
        }
        self.open_log(rec, partition, config)
    }

    /// Rename a partition directory to `<name>.<uuid>-delete`, make that durable, then remove it.
    /// Failures to remove are logged (the next open retries); failure to rename is an error.
    fn discard_dir(&self, dir: &Path) -> Result<(), BrokerError> {
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
            return Ok(());
        };
        let target = dir.with_file_name(format!("{name}.{}-delete", Uuid::new_v4().simple()));
        std::fs::rename(dir, &target).map_err(io_err(dir))?;
        sync_dir(&self.config.data_dir);
        if let Err(e) = std::fs::remove_dir_all(&target) {
            tracing::warn!(dir = %target.display(), error = %e, "could not remove deleted partition directory; will retry at next start");
        }
        Ok(())
    }

    /// Remove `*-delete` directories and partition directories the registry does not know.
    fn remove_stray_dirs(&self) -> Result<(), BrokerError> {
        let dir = &self.config.data_dir;
        let entries = std::fs::read_dir(dir).map_err(io_err(dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err(dir))?;
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_dir {
                continue;
            }
            if name.ends_with("-delete") {
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "could not remove deleted partition directory");
                }
                continue;
            }
            let Some((topic, p)) = parse_partition_dir(&name) else {
                continue;
            };
            let known = self.registry.get(topic).is_some_and(|t| p < t.partitions);
            if !known {
                tracing::warn!(dir = %entry.path().display(), "removing partition directory of a topic that no longer exists");
                self.discard_dir(&entry.path())?;
            }
        }
        Ok(())
    }

    fn topic_meta(&self, rec: TopicRecord) -> TopicMeta {
        let config = effective_config(&self.config.default_topic_config, &rec.name, &rec.overrides);
        TopicMeta {
            internal: rec.name.starts_with("__"),
            name: rec.name,
            id: rec.id,
            partitions: rec.partitions,
            overrides: rec.overrides,
            config,
        }
    }

    /// Validate and normalise overrides (Kafka names), returning them with the effective config
    /// (node defaults + overrides).
    pub fn validate_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<(BTreeMap<String, String>, TopicConfig), BrokerError> {
        let mut normalized = BTreeMap::new();
        for (k, v) in overrides {
            normalized.insert(k.clone(), topic_config::normalize(k, v)?);
        }
        let config = TopicConfig::with_overrides(&self.config.default_topic_config, &normalized)?;
        Ok((normalized, config))
    }

    /// Check a requested replication factor: `-1` (broker default) and `1` are fine on a node
    /// without replicas; anything else is [`BrokerError::InvalidReplicationFactor`].
    pub fn check_replication_factor(replication_factor: i16) -> Result<(), BrokerError> {
        match replication_factor {
            -1 | 1 => Ok(()),
            rf => Err(BrokerError::InvalidReplicationFactor(rf)),
        }
    }

    /// Create a topic. `validate_only` checks without creating. A partition count of `-1` means
    /// the node default (`default_partitions`), as in CreateTopics v4+.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: &BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMeta, BrokerError> {
        let partitions = if partitions == -1 {
            self.config.default_partitions
        } else {
            partitions
        };
        if self.config.hosting == Hosting::Assigned {
            return Err(BrokerError::ManagedByController(name.to_string()));
        }
        let _admin = self.admin_lock();
        self.registry.check_new(name).map_err(registry_err)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(BrokerError::InvalidPartitions(partitions));
        }
        let (normalized, config) = self.validate_overrides(overrides)?;
        if validate_only {
            return Ok(TopicMeta {
                name: name.to_string(),
                id: Uuid::nil(),
                partitions,
                overrides: normalized,
                config,
                internal: name.starts_with("__"),
            });
        }
        let rec = self
            .registry
            .create(name, partitions, normalized, now_ms())
            .map_err(registry_err)?;
        let mut parts = TopicLogs::new();
        for p in 0..partitions {
            match self.open_new_log(&rec, p, &config) {
                Ok(log) => {
                    parts.insert(p, Arc::new(log));
                }
                Err(e) => {
                    // Roll back: forget the topic, drop what was created.
                    for log in parts.values() {
                        let _ = log.close();
                    }
                    if let Err(re) = self.registry.delete(name) {
                        tracing::error!(topic = %name, error = %re, "rollback of failed topic creation failed");
                    }
                    for q in 0..=p {
                        let d = self.partition_dir(name, q);
                        if d.exists() {
                            let _ = self.discard_dir(&d);
                        }
                    }
                    return Err(e);
                }
            }
        }
        self.logs_write().insert(name.to_string(), parts);
        tracing::info!(topic = %name, id = %rec.id, partitions, "created topic");
        Ok(self.topic_meta(rec))
    }

    /// Create `name` with the node defaults if it does not exist and auto-creation is on
    /// (Metadata and Produce use this). `Ok(None)` when the topic does not exist and may not be
    /// auto-created.
    pub fn auto_create_topic_if_allowed(
        &self,
        name: &str,
    ) -> Result<Option<TopicMeta>, BrokerError> {
        if let Some(t) = self.topic(name) {
            return Ok(Some(t));
        }
        if !self.config.auto_create_topics {
            return Ok(None);
        }
        match self.create_topic(
            name,
            self.config.default_partitions,
            &BTreeMap::new(),
            false,
        ) {
            Ok(t) => Ok(Some(t)),
            // Created concurrently by another request.
            Err(BrokerError::TopicAlreadyExists(_)) => Ok(self.topic(name)),
            Err(e) => Err(e),
        }
    }

    /// Delete a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        let _admin = self.admin_lock();
        let rec = self.registry.delete(name).map_err(registry_err)?;
        let logs = self.logs_write().remove(name).unwrap_or_default();
        for (p, log) in &logs {
            match log.close() {
                Ok(()) | Err(LogError::Closed) => {}
                Err(e) => {
                    tracing::warn!(topic = %name, partition = p, error = %e, "closing deleted partition failed")
                }
            }
        }
        drop(logs);
        for p in 0..rec.partitions {
            let dir = self.partition_dir(name, p);
            if dir.exists() {
                if let Err(e) = self.discard_dir(&dir) {
                    // The registry no longer has the topic: the next open removes the directory.
                    tracing::warn!(topic = %name, partition = p, error = %e, "could not remove partition directory now; it is removed at next start");
                }
            }
        }
        tracing::info!(topic = %name, id = %rec.id, "deleted topic");
        Ok(())
    }

    /// Grow a topic to `total` partitions.
    pub fn create_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        if self.config.hosting == Hosting::Assigned {
            return Err(BrokerError::ManagedByController(name.to_string()));
        }
        let _admin = self.admin_lock();
        let rec = self.registry.get(name).ok_or_else(|| unknown_topic(name))?;
        if total <= rec.partitions || total > MAX_PARTITIONS {
            return Err(BrokerError::InvalidPartitions(total));
        }
        if validate_only {
            return Ok(());
        }
        let config = effective_config(&self.config.default_topic_config, name, &rec.overrides);
        let mut added = TopicLogs::new();
        for p in rec.partitions..total {
            match self.open_new_log(&rec, p, &config) {
                Ok(log) => {
                    added.insert(p, Arc::new(log));
                }
                Err(e) => {
                    for (p, log) in &added {
                        let _ = log.close();
                        let _ = self.discard_dir(&self.partition_dir(name, *p));
                    }
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.registry.set_partitions(name, total) {
            for (p, log) in &added {
                let _ = log.close();
                let _ = self.discard_dir(&self.partition_dir(name, *p));
            }
            return Err(registry_err(e));
        }
        self.logs_write()
            .entry(name.to_string())
            .or_default()
            .extend(added);
        tracing::info!(topic = %name, from = rec.partitions, to = total, "added partitions");
        Ok(())
    }

    /// Cluster mode ([`Hosting::Assigned`]): make this node's copy of a topic match the metadata
    /// image: the registry record (id, partition count, config overrides) and exactly the logs of
    /// the `hosted` partitions (the ones the image assigns to this node). A topic of that name
    /// under another id (deleted and re-created while this node was away) is discarded first;
    /// logs of partitions no longer hosted are closed and their directories removed. Returns the
    /// hosted logs.
    pub fn reconcile_topic(
        &self,
        name: &str,
        topic_id: Uuid,
        partitions: i32,
        overrides: &BTreeMap<String, String>,
        hosted: &BTreeSet<i32>,
    ) -> Result<BTreeMap<i32, Arc<PartitionLog>>, BrokerError> {
        if !(1..=MAX_PARTITIONS).contains(&partitions) || hosted.iter().any(|p| *p >= partitions) {
            return Err(BrokerError::InvalidPartitions(partitions));
        }
        if self.registry.get(name).is_some_and(|r| r.id != topic_id) {
            tracing::warn!(topic = %name, "local copy belongs to an earlier topic of that name; discarding it");
            self.delete_topic(name)?;
        }
        let (normalized, config) = self.validate_overrides(overrides)?;
        let _admin = self.admin_lock();
        let rec = match self.registry.get(name) {
            None => self
                .registry
                .create_with_id(name, topic_id, partitions, normalized, now_ms())
                .map_err(registry_err)?,
            Some(mut rec) => {
                if rec.partitions != partitions {
                    rec = self
                        .registry
                        .set_partitions(name, partitions)
                        .map_err(registry_err)?;
                }
                if rec.overrides != normalized {
                    rec = self
                        .registry
                        .set_overrides(name, normalized)
                        .map_err(registry_err)?;
                }
                rec
            }
        };
        let current = self.logs_read().get(name).cloned().unwrap_or_default();
        let mut next = TopicLogs::new();
        for (p, log) in &current {
            if hosted.contains(p) {
                log.set_config(config.clone());
                next.insert(*p, Arc::clone(log));
            } else {
                if let Err(e) = log.close() {
                    tracing::warn!(topic = %name, partition = p, error = %e, "closing a replica no longer hosted failed");
                }
                self.discard_dir(&self.partition_dir(name, *p))?;
                tracing::info!(topic = %name, partition = p, "removed a replica no longer assigned to this node");
            }
        }
        for p in hosted {
            if !next.contains_key(p) {
                next.insert(*p, Arc::new(self.open_new_log(&rec, *p, &config)?));
                tracing::info!(topic = %name, partition = p, "created a replica assigned to this node");
            }
        }
        self.logs_write().insert(name.to_string(), next.clone());
        Ok(next)
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<TopicMeta> {
        self.registry
            .list()
            .into_iter()
            .map(|r| self.topic_meta(r))
            .collect()
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.registry.get(name).map(|r| self.topic_meta(r))
    }

    /// A topic by its UUID topic id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<TopicMeta> {
        self.registry.get_by_id(id).map(|r| self.topic_meta(r))
    }

    /// The log of one partition.
    pub fn partition(&self, topic: &str, partition: i32) -> Result<Arc<PartitionLog>, BrokerError> {
        let logs = self.logs_read();
        logs.get(topic)
            .and_then(|parts| parts.get(&partition))
            .cloned()
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition {
                topic: topic.to_string(),
                partition,
            })
    }

    /// Every open log as (topic, partition, log), for background work.
    pub fn all_logs(&self) -> Vec<(String, i32, Arc<PartitionLog>)> {
        let logs = self.logs_read();
        let mut out = Vec::new();
        for (topic, parts) in logs.iter() {
            for (p, log) in parts {
                out.push((topic.clone(), *p, Arc::clone(log)));
            }
        }
        out
    }

    /// Apply retention to every log now (the maintenance thread does this periodically).
    pub fn run_retention(&self, now_ms: i64) {
        crate::maintenance::apply_retention(&self.all_logs(), now_ms);
    }

    /// Run the log cleaner (compaction) over every log of a compacted topic now (the maintenance
    /// thread does this every `cleaner_interval_ms`).
    pub fn run_cleaner(&self, now_ms: i64) {
        crate::maintenance::clean_logs(&self.all_logs(), now_ms);
    }

    /// Enforce the node-wide disk budget now (the maintenance thread does this periodically).
    /// Returns the bytes freed; 0 without a budget.
    pub fn enforce_disk_budget(&self) -> u64 {
        match self.config.disk_budget_bytes {
            Some(budget) => crate::maintenance::enforce_disk_budget(&self.all_logs(), budget),
            None => 0,
        }
    }

    /// Apply the backlog policy now (the maintenance thread does this after retention and the
    /// disk budget; see [`crate::backlog`]).
    pub fn run_backlog_check(&self, now_ms: i64) {
        crate::backlog::apply(
            &self.backlog,
            self.all_logs(),
            self.config.disk_budget_bytes,
            now_ms,
        );
    }

    /// The backlog state: which topics producers are held back from, dropped-record count.
    pub fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    /// Set (or with `None` lift) the retention floor of a partition: segments holding offsets
    /// `>= floor` are kept from retention and the disk budget (the bridge's unmirrored data).
    /// While producers are held back, a moved floor wakes the maintenance thread at once so
    /// the pressure is re-evaluated.
    pub fn set_retention_floor(
        &self,
        topic: &str,
        partition: i32,
        floor: Option<i64>,
    ) -> Result<(), BrokerError> {
        let log = self.partition(topic, partition)?;
        let before = log.retention_floor();
        log.set_retention_floor(floor);
        if before != floor && self.backlog.blocks(topic) {
            self.wake_maintenance();
        }
        Ok(())
    }

    /// Run the retention, disk budget and backlog pass now on the maintenance thread.
    fn wake_maintenance(&self) {
        if let Some(m) = self.maintenance.lock_unpoisoned().as_ref() {
            m.wake();
        }
    }

    /// DescribeConfigs for a topic.
    pub fn describe_topic_config(&self, topic: &str) -> Result<Vec<ConfigEntry>, BrokerError> {
        let meta = self.topic(topic).ok_or_else(|| unknown_topic(topic))?;
        Ok(meta.config.describe(&meta.overrides))
    }

    /// The overrides a topic with `current` overrides has after `ops` (AlterConfigs when
    /// `incremental` is false: the Set ops replace every override; IncrementalAlterConfigs
    /// otherwise), validated and normalised, with the effective config. Changes nothing: the
    /// node alone applies the result to its registry, a cluster node submits it to the controller.
    pub fn plan_topic_config(
        &self,
        topic: &str,
        current_overrides: &BTreeMap<String, String>,
        ops: &[ConfigOp],
        incremental: bool,
    ) -> Result<(BTreeMap<String, String>, TopicConfig), BrokerError> {
        let current = effective_config(&self.config.default_topic_config, topic, current_overrides);
        let mut next = if incremental {
            current_overrides.clone()
        } else {
            BTreeMap::new()
        };
        for op in ops {
            let key = match op {
                ConfigOp::Set(k, _)
                | ConfigOp::Delete(k)
                | ConfigOp::Append(k, _)
                | ConfigOp::Subtract(k, _) => k,
            };
            if !topic_config::is_known_key(key) {
                return Err(ConfigError::UnknownKey(key.clone()).into());
            }
            match op {
                ConfigOp::Set(k, v) => {
                    next.insert(k.clone(), v.clone());
                }
                ConfigOp::Delete(k) => {
                    next.remove(k);
                }
                ConfigOp::Append(k, v) | ConfigOp::Subtract(k, v) => {
                    let op_name = if matches!(op, ConfigOp::Append(..)) {
                        "APPEND"
                    } else {
                        "SUBTRACT"
                    };
                    if !incremental || !topic_config::is_list_key(k) {
                        return Err(ConfigError::InvalidValue {
                            key: k.clone(),
                            value: v.clone(),
                            reason: if incremental {
                                format!("{op_name} is only allowed for list-typed configs")
                            } else {
                                format!("{op_name} is only allowed in IncrementalAlterConfigs")
                            },
                        }
                        .into());
                    }
                    let base = next
                        .get(k)
                        .cloned()
                        .or_else(|| current.value_of(k))
                        .unwrap_or_default();
                    let value = if matches!(op, ConfigOp::Append(..)) {
                        topic_config::list_append(&base, v)
                    } else {
                        topic_config::list_subtract(&base, v)
                    };
                    next.insert(k.clone(), value);
                }
            }
        }
        self.validate_overrides(&next)
    }

    /// AlterConfigs (`incremental == false`: replace all overrides with the Set ops) and
    /// IncrementalAlterConfigs (SET, DELETE, and APPEND/SUBTRACT on list keys such as
    /// `cleanup.policy`, starting from the effective value when the topic has no override).
    pub fn alter_topic_config(
        &self,
        topic: &str,
        ops: &[ConfigOp],
        incremental: bool,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let _admin = self.admin_lock();
        let rec = self
            .registry
            .get(topic)
            .ok_or_else(|| unknown_topic(topic))?;
        let (normalized, config) =
            self.plan_topic_config(topic, &rec.overrides, ops, incremental)?;
        if validate_only {
            return Ok(());
        }
        self.registry
            .set_overrides(topic, normalized)
            .map_err(registry_err)?;
        if let Some(parts) = self.logs_read().get(topic) {
            for log in parts.values() {
                log.set_config(config.clone());
            }
        }
        tracing::info!(%topic, "altered topic config");
        Ok(())
    }

    /// The metadata store (redb), shared with the group coordinator.
    pub fn metadata(&self) -> &crate::metadata::MetaStore {
        &self.meta
    }

    /// The metadata store as a shareable handle.
    pub fn metadata_handle(&self) -> Arc<MetaStore> {
        Arc::clone(&self.meta)
    }

    /// The cluster id (a random UUID fixed when the data directory was created), for Metadata and
    /// DescribeCluster. Kafka's form: the 16 UUID bytes in URL-safe base64 without padding.
    pub fn cluster_id(&self) -> String {
        self.cluster_id.clone()
    }

    /// Flush every log and stop background work. Further calls do nothing.
    pub fn shutdown(&self) -> Result<(), BrokerError> {
        let maintenance = self.maintenance.lock_unpoisoned().take();
        if let Some(m) = maintenance {
            m.stop();
        }
        let _admin = self.admin_lock();
        // Logs stay in the map, closed: late requests get `LogError::Closed`.
        let logs: Vec<(String, TopicLogs)> = self
            .logs_read()
            .iter()
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect();
        let mut first_err = None;
        for (topic, parts) in logs {
            for (p, log) in &parts {
                match log.close() {
                    Ok(()) | Err(LogError::Closed) => {}
                    Err(e) => {
                        tracing::error!(%topic, partition = p, error = %e, "closing log at shutdown failed");
                        first_err.get_or_insert(BrokerError::Log(e));
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl MaintenanceTasks for Broker {
    fn flush_all(&self) {
        crate::maintenance::flush_all(&self.all_logs());
    }
    fn run_retention(&self, now_ms: i64) {
        Broker::run_retention(self, now_ms);
    }
    fn enforce_disk_budget(&self) -> u64 {
        Broker::enforce_disk_budget(self)
    }
    fn run_backlog_check(&self, now_ms: i64) {
        Broker::run_backlog_check(self, now_ms);
    }
    fn run_cleaner(&self, now_ms: i64) {
        Broker::run_cleaner(self, now_ms);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let m = crate::sync::get_mut_unpoisoned(&mut self.maintenance).take();
        if let Some(m) = m {
            m.stop();
        }
    }
}

/// fsync a directory so renames in it are durable (best effort: logged on failure).
fn sync_dir(dir: &Path) {
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "directory fsync failed");
    }
}

/// Check the node's encryption setting against what the metadata recorded, then record it.
///
/// - Encrypted: an interrupted master key rotation is completed, then the key must be the
///   recorded one (recorded on first start) or the previous key of a rotation not yet retired;
///   the result carries the current master key, and the metadata data key is installed.
/// - A node whose topics were written encrypted cannot be opened with encryption off, and a node
///   with unencrypted topics cannot switch encryption on; both are refused with a clear error.
///   With no topics, the setting may change freely.
fn check_encryption_setting(
    meta: &MetaStore,
    registry: &TopicRegistry,
    encryption: Encryption,
    data_dir: &Path,
) -> Result<Encryption, BrokerError> {
    let recorded = meta
        .node_value(KEY_ENCRYPTION)
        .map_err(|e| BrokerError::Metadata(e.to_string()))?;
    let has_topics = !registry.list().is_empty();
    let now = match &encryption {
        Encryption::Off => "off",
        Encryption::On { .. } => "on",
    };
    if has_topics {
        match (recorded.as_deref(), now) {
            (Some("on"), "off") => {
                return Err(BrokerError::Key(format!(
                    "data directory {} holds encrypted topics; encryption cannot be switched off \
                     for it (use a new data directory)",
                    data_dir.display()
                )))
            }
            (Some("off"), "on") => {
                return Err(BrokerError::Key(format!(
                    "data directory {} holds unencrypted topics; encryption cannot be switched on \
                     for it (start with encryption off, or use a new data directory)",
                    data_dir.display()
                )))
            }
            _ => {}
        }
    }
    let encryption = match encryption {
        Encryption::Off => Encryption::Off,
        Encryption::On { cipher, master } => {
            let current = crate::key_rotation::open_master(meta, data_dir, &master)?;
            meta.install_cipher(&current)
                .map_err(|e| BrokerError::Key(e.to_string()))?;
            Encryption::On {
                cipher,
                master: Arc::new(current),
            }
        }
    };
    if recorded.as_deref() != Some(now) {
        meta.set_node_value(KEY_ENCRYPTION, now)
            .map_err(|e| BrokerError::Metadata(e.to_string()))?;
    }
    Ok(encryption)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const KEY_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn config(dir: &Path) -> BrokerConfig {
        let mut c = BrokerConfig::new(dir.join("data"), KeySource::Env(KEY_A.into()));
        c.flush = FlushPolicy::Interval { ms: 50 };
        c
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn overrides_of(b: &Broker, t: &str) -> BTreeMap<String, String> {
        b.topic(t).unwrap().overrides
    }

    #[test]
    fn new_config_has_embedded_defaults() {
        let c = BrokerConfig::new("/x", KeySource::File("k".into()));
        assert_eq!(c.flush, FlushPolicy::Always);
        assert_eq!(c.encryption, EncryptionSetting::Auto);
        assert_eq!(c.default_partitions, 1);
        assert!(c.auto_create_topics);
        assert_eq!(c.disk_budget_bytes, None);
        assert_eq!(c.retention_check_interval_ms, 5000);
        assert_eq!(c.default_topic_config, TopicConfig::default());
    }

    #[test]
    fn partition_dir_names_parse() {
        assert_eq!(parse_partition_dir("orders-0"), Some(("orders", 0)));
        assert_eq!(parse_partition_dir("a-b-12"), Some(("a-b", 12)));
        assert_eq!(parse_partition_dir("orders"), None);
        assert_eq!(parse_partition_dir("orders-"), None);
        assert_eq!(parse_partition_dir("orders-x"), None);
        assert_eq!(parse_partition_dir("a b-1"), None);
    }

    #[test]
    fn replication_factor_checks() {
        assert!(Broker::check_replication_factor(-1).is_ok());
        assert!(Broker::check_replication_factor(1).is_ok());
        assert!(matches!(
            Broker::check_replication_factor(3),
            Err(BrokerError::InvalidReplicationFactor(3))
        ));
    }

    #[test]
    fn cluster_id_is_fixed_at_creation() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        let b = Broker::open(cfg.clone()).unwrap();
        let id = b.cluster_id();
        assert_eq!(id.len(), 22);
        b.shutdown().unwrap();
        drop(b);
        let b = Broker::open(cfg).unwrap();
        assert_eq!(b.cluster_id(), id);
        let other = Broker::open(config(tempfile::tempdir().unwrap().path())).unwrap();
        assert_ne!(other.cluster_id(), id);
    }

    #[test]
    fn create_list_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        let id;
        {
            let b = Broker::open(cfg.clone()).unwrap();
            let t = b
                .create_topic("orders", 3, &map(&[("retention.ms", " 1000 ")]), false)
                .unwrap();
            assert_eq!(t.partitions, 3);
            assert_eq!(t.config.retention_ms, 1000);
            assert_eq!(
                t.overrides.get("retention.ms").map(String::as_str),
                Some("1000")
            );
            assert!(!t.id.is_nil());
            assert!(!t.internal);
            id = t.id;
            for p in 0..3 {
                assert!(cfg.data_dir.join(format!("orders-{p}")).is_dir());
                b.partition("orders", p).unwrap();
            }
            assert!(matches!(
                b.partition("orders", 3),
                Err(BrokerError::UnknownTopicOrPartition { partition: 3, .. })
            ));
            assert!(matches!(
                b.partition("nope", 0),
                Err(BrokerError::UnknownTopicOrPartition { .. })
            ));
            let internal = b
                .create_topic("__internal", 1, &BTreeMap::new(), false)
                .unwrap();
            assert!(internal.internal);
            b.shutdown().unwrap();
        }
        let b = Broker::open(cfg.clone()).unwrap();
        let t = b.topic("orders").unwrap();
        assert_eq!((t.id, t.partitions, t.config.retention_ms), (id, 3, 1000));
        assert_eq!(b.topic_by_id(id).unwrap().name, "orders");
        assert_eq!(
            b.topics()
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["__internal", "orders"]
        );
        b.partition("orders", 2).unwrap();
        b.shutdown().unwrap();
        // Shutdown twice is fine.
        b.shutdown().unwrap();
    }

    #[test]
    fn assigned_hosting_keeps_exactly_the_image_replicas() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = config(tmp.path());
        c.hosting = Hosting::Assigned;
        let id = Uuid::new_v4();
        let set = |ps: &[i32]| ps.iter().copied().collect::<BTreeSet<i32>>();
        let b = Broker::open(c.clone()).unwrap();
        let logs = b
            .reconcile_topic(
                "t",
                id,
                3,
                &map(&[("retention.ms", "60000")]),
                &set(&[0, 2]),
            )
            .unwrap();
        assert_eq!(logs.keys().copied().collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(b.topic("t").unwrap().id, id, "the image's topic id");
        assert!(b.partition("t", 1).is_err(), "not hosted here");
        assert!(matches!(
            b.create_topic("local", 1, &BTreeMap::new(), false),
            Err(BrokerError::ManagedByController(_))
        ));
        assert!(matches!(
            b.create_partitions("t", 5, false),
            Err(BrokerError::ManagedByController(_))
        ));
        let log = b.partition("t", 2).unwrap();
        // A cluster member's log is a replica: no local appends, nothing readable, until the
        // replica layer makes it a leader.
        assert!(matches!(
            log.append(&crate::batch::test_util::batch(&[b"x"], 1)),
            Err(crate::log::LogError::NotLeader { .. })
        ));
        assert_eq!(
            log.high_watermark_mode(),
            crate::log::HighWatermarkMode::Replicated
        );
        log.set_leader_appends(true);
        let a = log
            .append(&crate::batch::test_util::batch(&[b"x"], 1))
            .unwrap();
        log.flush_to(a.last_offset).unwrap();
        b.shutdown().unwrap();
        drop((b, log, logs));

        // Reopened: only the hosted partitions' directories are opened, with their data.
        let b = Broker::open(c.clone()).unwrap();
        assert!(b.partition("t", 1).is_err());
        assert_eq!(b.partition("t", 2).unwrap().log_end_offset(), 1);
        // Reassigned away from 0, more partitions, another config.
        b.reconcile_topic("t", id, 4, &BTreeMap::new(), &set(&[2, 3]))
            .unwrap();
        assert!(!c.data_dir.join("t-0").exists(), "replica 0 removed");
        assert_eq!(b.partition("t", 2).unwrap().log_end_offset(), 1, "kept");
        assert_eq!(b.topic("t").unwrap().partitions, 4);
        assert!(b.topic("t").unwrap().overrides.is_empty());
        // The same name under another id: the old copy is discarded.
        let other = Uuid::new_v4();
        b.reconcile_topic("t", other, 1, &BTreeMap::new(), &set(&[0]))
            .unwrap();
        assert_eq!(b.topic("t").unwrap().id, other);
        assert_eq!(b.partition("t", 0).unwrap().log_end_offset(), 0);
        assert!(!c.data_dir.join("t-2").exists());
        assert!(b
            .reconcile_topic("t", other, 1, &BTreeMap::new(), &set(&[1]))
            .is_err());
        b.shutdown().unwrap();
    }

    #[test]
    fn create_errors_are_precise() {
        let tmp = tempfile::tempdir().unwrap();
        let b = Broker::open(config(tmp.path())).unwrap();
        b.create_topic("t", 1, &BTreeMap::new(), false).unwrap();
        assert!(matches!(
            b.create_topic("t", 1, &BTreeMap::new(), false),
            Err(BrokerError::TopicAlreadyExists(n)) if n == "t"
        ));
        assert!(matches!(
            b.create_topic("bad name", 1, &BTreeMap::new(), false),
            Err(BrokerError::InvalidTopic { .. })
        ));
        assert!(matches!(
            b.create_topic("..", 1, &BTreeMap::new(), false),
            Err(BrokerError::InvalidTopic { .. })
        ));
        assert!(matches!(
            b.create_topic("u", 0, &BTreeMap::new(), false),
            Err(BrokerError::InvalidPartitions(0))
        ));
        assert!(matches!(
            b.create_topic("u", -5, &BTreeMap::new(), false),
            Err(BrokerError::InvalidPartitions(-5))
        ));
        assert!(matches!(
            b.create_topic("u", 1, &map(&[("retention.ms", "soon")]), false),
            Err(BrokerError::Config(ConfigError::InvalidValue { .. }))
        ));
        assert!(matches!(
            b.create_topic("u", 1, &map(&[("no.such.key", "1")]), false),
            Err(BrokerError::Config(ConfigError::UnknownKey(_)))
        ));
        assert!(b.topic("u").is_none());
        // validate_only checks and creates nothing.
        let v = b
            .create_topic("v", 2, &map(&[("cleanup.policy", "compact")]), true)
            .unwrap();
        assert_eq!(v.partitions, 2);
        assert!(b.topic("v").is_none());
        assert!(!b.config().data_dir.join("v-0").exists());
        // -1 partitions means the node default.
        assert_eq!(
            b.create_topic("w", -1, &BTreeMap::new(), false)
                .unwrap()
                .partitions,
            1
        );
        b.shutdown().unwrap();
    }

    #[test]
    fn delete_topic_removes_data_and_survives_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        let old_id;
        {
            let b = Broker::open(cfg.clone()).unwrap();
            old_id = b
                .create_topic("gone", 2, &BTreeMap::new(), false)
                .unwrap()
                .id;
            let log = b.partition("gone", 0).unwrap();
            b.delete_topic("gone").unwrap();
            assert!(b.topic("gone").is_none());
            assert!(b.topic_by_id(old_id).is_none());
            assert!(matches!(log.apply_retention(0), Err(LogError::Closed)));
            assert!(matches!(
                b.partition("gone", 0),
                Err(BrokerError::UnknownTopicOrPartition { .. })
            ));
            assert!(matches!(
                b.delete_topic("gone"),
                Err(BrokerError::UnknownTopicOrPartition { .. })
            ));
            let leftovers: Vec<_> = std::fs::read_dir(&cfg.data_dir)
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("gone"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
            b.shutdown().unwrap();
        }
        let b = Broker::open(cfg).unwrap();
        assert!(b.topic("gone").is_none());
        let again = b.create_topic("gone", 1, &BTreeMap::new(), false).unwrap();
        assert_ne!(again.id, old_id);
        b.shutdown().unwrap();
    }

    #[test]
    fn stray_directories_are_removed_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        {
            let b = Broker::open(cfg.clone()).unwrap();
            b.create_topic("keep", 1, &BTreeMap::new(), false).unwrap();
            b.shutdown().unwrap();
        }
        let d = &cfg.data_dir;
        for stray in ["ghost-0", "keep-4", "keep-0.0123abcd-delete"] {
            std::fs::create_dir_all(d.join(stray)).unwrap();
            std::fs::write(d.join(stray).join("x"), b"x").unwrap();
        }
        std::fs::create_dir_all(d.join("not-a-partition")).unwrap();
        let b = Broker::open(cfg.clone()).unwrap();
        assert!(!d.join("ghost-0").exists());
        assert!(!d.join("keep-4").exists());
        assert!(!d.join("keep-0.0123abcd-delete").exists());
        assert!(d.join("keep-0").is_dir());
        assert!(
            d.join("not-a-partition").is_dir(),
            "only partition-shaped dirs are touched"
        );
        b.partition("keep", 0).unwrap();
        b.shutdown().unwrap();
    }

    #[test]
    fn create_partitions_grows_only() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        {
            let b = Broker::open(cfg.clone()).unwrap();
            b.create_topic("p", 1, &BTreeMap::new(), false).unwrap();
            b.create_partitions("p", 3, true).unwrap();
            assert_eq!(b.topic("p").unwrap().partitions, 1);
            b.create_partitions("p", 3, false).unwrap();
            assert_eq!(b.topic("p").unwrap().partitions, 3);
            b.partition("p", 2).unwrap();
            assert!(matches!(
                b.create_partitions("p", 3, false),
                Err(BrokerError::InvalidPartitions(3))
            ));
            assert!(matches!(
                b.create_partitions("p", 2, false),
                Err(BrokerError::InvalidPartitions(2))
            ));
            assert!(matches!(
                b.create_partitions("q", 2, false),
                Err(BrokerError::UnknownTopicOrPartition { .. })
            ));
            b.shutdown().unwrap();
        }
        let b = Broker::open(cfg).unwrap();
        assert_eq!(b.topic("p").unwrap().partitions, 3);
        b.partition("p", 2).unwrap();
        b.shutdown().unwrap();
    }

    #[test]
    fn alter_configs_replaces_and_incremental_edits() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        {
            let b = Broker::open(cfg.clone()).unwrap();
            b.create_topic("c", 1, &map(&[("retention.ms", "1000")]), false)
                .unwrap();
            // AlterConfigs replaces every override.
            b.alter_topic_config(
                "c",
                &[ConfigOp::Set("segment.ms".into(), "60000".into())],
                false,
                false,
            )
            .unwrap();
            assert_eq!(overrides_of(&b, "c"), map(&[("segment.ms", "60000")]));
            assert_eq!(b.topic("c").unwrap().config.retention_ms, 604_800_000);
            // Incremental keeps others.
            b.alter_topic_config(
                "c",
                &[
                    ConfigOp::Set("retention.ms".into(), "5000".into()),
                    ConfigOp::Append("cleanup.policy".into(), "compact".into()),
                ],
                true,
                false,
            )
            .unwrap();
            assert_eq!(
                overrides_of(&b, "c"),
                map(&[
                    ("segment.ms", "60000"),
                    ("retention.ms", "5000"),
                    ("cleanup.policy", "compact,delete")
                ])
            );
            b.alter_topic_config(
                "c",
                &[
                    ConfigOp::Subtract("cleanup.policy".into(), "delete".into()),
                    ConfigOp::Delete("segment.ms".into()),
                ],
                true,
                false,
            )
            .unwrap();
            let t = b.topic("c").unwrap();
            assert_eq!(
                t.config.cleanup_policy,
                crate::topic_config::CleanupPolicy::Compact
            );
            assert_eq!(
                t.overrides,
                map(&[("retention.ms", "5000"), ("cleanup.policy", "compact")])
            );
            // Errors and validate_only change nothing.
            let before = overrides_of(&b, "c");
            assert!(matches!(
                b.alter_topic_config(
                    "c",
                    &[ConfigOp::Append("retention.ms".into(), "1".into())],
                    true,
                    false
                ),
                Err(BrokerError::Config(ConfigError::InvalidValue { .. }))
            ));
            assert!(matches!(
                b.alter_topic_config(
                    "c",
                    &[ConfigOp::Subtract(
                        "cleanup.policy".into(),
                        "compact".into()
                    )],
                    true,
                    false
                ),
                Err(BrokerError::Config(ConfigError::InvalidValue { .. }))
            ));
            assert!(matches!(
                b.alter_topic_config(
                    "c",
                    &[ConfigOp::Set("bogus".into(), "1".into())],
                    true,
                    false
                ),
                Err(BrokerError::Config(ConfigError::UnknownKey(_)))
            ));
            assert!(matches!(
                b.alter_topic_config(
                    "c",
                    &[ConfigOp::Set("retention.ms".into(), "x".into())],
                    false,
                    false
                ),
                Err(BrokerError::Config(ConfigError::InvalidValue { .. }))
            ));
            assert!(matches!(
                b.alter_topic_config("nope", &[], true, false),
                Err(BrokerError::UnknownTopicOrPartition { .. })
            ));
            b.alter_topic_config(
                "c",
                &[ConfigOp::Set("retention.ms".into(), "1".into())],
                true,
                true,
            )
            .unwrap();
            assert_eq!(overrides_of(&b, "c"), before);
            // Describe reports the overrides with their source.
            let d = b.describe_topic_config("c").unwrap();
            let e = d.iter().find(|e| e.name == "cleanup.policy").unwrap();
            assert_eq!(e.value, "compact");
            assert_eq!(e.source, crate::topic_config::ConfigSource::TopicOverride);
            let e = d.iter().find(|e| e.name == "segment.ms").unwrap();
            assert_eq!(e.source, crate::topic_config::ConfigSource::Default);
            b.shutdown().unwrap();
        }
        let b = Broker::open(cfg).unwrap();
        assert_eq!(
            overrides_of(&b, "c"),
            map(&[("retention.ms", "5000"), ("cleanup.policy", "compact")])
        );
        b.shutdown().unwrap();
    }

    #[test]
    fn auto_create_follows_config() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(tmp.path());
        cfg.default_partitions = 2;
        {
            let b = Broker::open(cfg.clone()).unwrap();
            let t = b.auto_create_topic_if_allowed("auto").unwrap().unwrap();
            assert_eq!(t.partitions, 2);
            let again = b.auto_create_topic_if_allowed("auto").unwrap().unwrap();
            assert_eq!(again.id, t.id);
            assert!(matches!(
                b.auto_create_topic_if_allowed("bad/name"),
                Err(BrokerError::InvalidTopic { .. })
            ));
            b.shutdown().unwrap();
        }
        cfg.auto_create_topics = false;
        let b = Broker::open(cfg).unwrap();
        assert!(b.auto_create_topic_if_allowed("other").unwrap().is_none());
        assert!(b.topic("other").is_none());
        assert!(b.auto_create_topic_if_allowed("auto").unwrap().is_some());
        b.shutdown().unwrap();
    }

    #[test]
    fn wrong_master_key_refuses_to_open() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        {
            let b = Broker::open(cfg.clone()).unwrap();
            b.create_topic("secret", 1, &BTreeMap::new(), false)
                .unwrap();
            b.shutdown().unwrap();
        }
        let mut other = cfg.clone();
        other.key_source = KeySource::Env(KEY_B.into());
        let id_a = crate::crypto::MasterKey::from_bytes([0x11; 32]).id_hex();
        let id_b = crate::crypto::MasterKey::from_bytes([0x22; 32]).id_hex();
        match Broker::open(other) {
            Err(BrokerError::WrongMasterKey {
                expected, found, ..
            }) => {
                assert_eq!(expected, id_b);
                assert_eq!(found, id_a);
            }
            Err(e) => panic!("expected WrongMasterKey, got {e}"),
            Ok(_) => panic!("opened with the wrong key"),
        }
        // The data is untouched: the right key still opens it.
        let b = Broker::open(cfg).unwrap();
        assert!(b.topic("secret").is_some());
        b.shutdown().unwrap();
    }

    #[test]
    fn key_file_is_generated_for_new_node_only() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("rill-master.key");
        let mut cfg = config(tmp.path());
        cfg.key_source = KeySource::File(key.clone());
        {
            let b = Broker::open(cfg.clone()).unwrap();
            b.create_topic("t", 1, &BTreeMap::new(), false).unwrap();
            b.shutdown().unwrap();
        }
        assert!(key.exists());
        assert!(!cfg.data_dir.join("rill-master.key").exists());
        // Same key file: opens.
        Broker::open(cfg.clone()).unwrap().shutdown().unwrap();
        // Key file lost while data exists: clear error, nothing generated.
        std::fs::remove_file(&key).unwrap();
        match Broker::open(cfg.clone()) {
            Err(BrokerError::Key(msg)) => assert!(msg.contains("already holds data"), "{msg}"),
            Err(e) => panic!("expected Key error, got {e}"),
            Ok(_) => panic!("opened without its key"),
        }
        assert!(!key.exists());
    }

    #[test]
    fn encryption_cannot_be_switched_under_existing_topics() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(tmp.path());
        cfg.encryption = EncryptionSetting::Off;
        {
            let b = Broker::open(cfg.clone()).unwrap();
            b.create_topic("plain", 1, &BTreeMap::new(), false).unwrap();
            b.shutdown().unwrap();
        }
        cfg.encryption = EncryptionSetting::Auto;
        match Broker::open(cfg.clone()) {
            Err(BrokerError::Key(msg)) => assert!(msg.contains("unencrypted"), "{msg}"),
            Err(e) => panic!("expected Key error, got {e}"),
            Ok(_) => panic!("switched encryption on under plaintext data"),
        }
    }

    fn append(log: &PartitionLog, values: &[&[u8]], ts: i64) -> crate::log::AppendInfo {
        let batch = crate::batch::test_util::batch(values, ts);
        let info = log.append(&batch).unwrap();
        log.flush_to(info.last_offset).unwrap();
        info
    }

    #[test]
    fn records_survive_reopen_and_are_encrypted_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        let secret: &[u8] = b"plaintext-sensor-reading-4711";
        {
            let b = Broker::open(cfg.clone()).unwrap();
            b.create_topic("d", 1, &BTreeMap::new(), false).unwrap();
            let info = append(&b.partition("d", 0).unwrap(), &[secret, b"two"], 1_000);
            assert_eq!((info.base_offset, info.last_offset), (0, 1));
            b.shutdown().unwrap();
        }
        let b = Broker::open(cfg.clone()).unwrap();
        let log = b.partition("d", 0).unwrap();
        assert_eq!(log.log_end_offset(), 2);
        let r = log.read(0, 1 << 20).unwrap();
        assert!(r.records.windows(secret.len()).any(|w| w == secret));
        b.shutdown().unwrap();
        for entry in std::fs::read_dir(cfg.data_dir.join("d-0")).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!data.windows(secret.len()).any(|w| w == secret));
        }
    }

    #[test]
    fn retention_bytes_is_applied_through_the_broker() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(tmp.path());
        cfg.retention_check_interval_ms = 3_600_000;
        let b = Broker::open(cfg).unwrap();
        b.create_topic(
            "r",
            1,
            &map(&[("segment.bytes", "14"), ("retention.bytes", "1")]),
            false,
        )
        .unwrap();
        let log = b.partition("r", 0).unwrap();
        for i in 0..4 {
            append(&log, &[b"value"], 1_000 + i);
        }
        assert_eq!(log.log_start_offset(), 0);
        b.run_retention(now_ms());
        assert!(log.log_start_offset() > 0, "old segments deleted");
        assert_eq!(log.log_end_offset(), 4);
        b.shutdown().unwrap();
    }

    #[test]
    fn disk_budget_deletes_oldest_segments_across_topics() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(tmp.path());
        cfg.retention_check_interval_ms = 3_600_000;
        let b = Broker::open(cfg.clone()).unwrap();
        let small = map(&[("segment.bytes", "14")]);
        b.create_topic("older", 1, &small, false).unwrap();
        b.create_topic("newer", 1, &small, false).unwrap();
        let (older, newer) = (
            b.partition("older", 0).unwrap(),
            b.partition("newer", 0).unwrap(),
        );
        // Timestamps ahead of the segment creation times, so they decide the order.
        let t0 = now_ms() + 1_000_000;
        for i in 0..3 {
            append(&older, &[b"o"], t0 + i);
            append(&newer, &[b"n"], t0 + 100_000 + i);
        }
        // No budget: nothing happens.
        assert_eq!(b.enforce_disk_budget(), 0);
        b.shutdown().unwrap();
        drop(b);

        let total =
            |b: &Broker| -> u64 { b.all_logs().iter().map(|(_, _, l)| l.size_bytes()).sum() };
        let b = Broker::open(cfg.clone()).unwrap();
        let budget = total(&b) - 1;
        drop(b);
        cfg.disk_budget_bytes = Some(budget);
        let b = Broker::open(cfg.clone()).unwrap();
        let (older, newer) = (
            b.partition("older", 0).unwrap(),
            b.partition("newer", 0).unwrap(),
        );
        let freed = b.enforce_disk_budget();
        assert!(freed > 0);
        assert_eq!(
            older.log_start_offset(),
            1,
            "the oldest segment of all went first"
        );
        assert_eq!(newer.log_start_offset(), 0);
        assert!(total(&b) <= budget);
        b.shutdown().unwrap();
        drop(b);

        // A budget of zero deletes every closed segment but keeps the active ones.
        cfg.disk_budget_bytes = Some(0);
        let b = Broker::open(cfg).unwrap();
        b.enforce_disk_budget();
        for t in ["older", "newer"] {
            let log = b.partition(t, 0).unwrap();
            assert_eq!(log.log_start_offset(), 3, "{t}");
            assert_eq!(log.log_end_offset(), 3, "{t}");
        }
        b.shutdown().unwrap();
    }

    #[test]
    fn interval_flush_runs_in_background() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(tmp.path());
        cfg.flush = FlushPolicy::Interval { ms: 5 };
        let b = Broker::open(cfg).unwrap();
        b.create_topic("f", 1, &BTreeMap::new(), false).unwrap();
        let log = b.partition("f", 0).unwrap();
        let batch = crate::batch::test_util::batch(&[b"x"], 1);
        let info = log.append(&batch).unwrap();
        // Interval policy: the append does not wait; the maintenance thread makes it durable.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while log.flushed_offset() <= info.last_offset {
            assert!(
                std::time::Instant::now() < deadline,
                "interval flush never ran"
            );
            std::thread::yield_now();
        }
        b.shutdown().unwrap();
    }

    #[test]
    fn shutdown_stops_background_work_and_closes_logs() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(tmp.path());
        cfg.flush = FlushPolicy::Interval { ms: 1 };
        cfg.retention_check_interval_ms = 1;
        cfg.disk_budget_bytes = Some(1);
        let b = Broker::open(cfg).unwrap();
        b.create_topic("bg", 2, &BTreeMap::new(), false).unwrap();
        b.shutdown().unwrap();
        assert!(b.maintenance.lock().unwrap().is_none());
        assert!(matches!(
            b.partition("bg", 0).unwrap().apply_retention(0),
            Err(LogError::Closed)
        ));
    }
}
