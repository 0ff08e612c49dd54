//! The partition log: an ordered set of segments, offsets, high watermark, recovery, flushing.
//!
//! Concurrency: appends, rolls and retention are serialized by one writer mutex; reads take the
//! segment map's read lock only to pick segments and then use positional reads, so they run
//! concurrently with appends. Durability (group commit): [`PartitionLog::flush_to`] takes a flush
//! mutex; the holder notes the log end offset, fsyncs the active segment and publishes the new
//! flushed offset, so callers that queued behind it find themselves covered and return without an
//! fsync of their own.
//!
//! The log is split the way Kafka splits it: [`loader`] (`LogLoader`: opening and recovery),
//! [`validator`] (`LogValidator`: batch checks, producer-state checks, offset assignment),
//! [`segments`] (`LogSegments` / `LocalLog`: the segment map, rolling, removing segments),
//! [`tail_cache`] (recent plaintext batches), [`swap`] (the compaction swap protocol),
//! [`leader_epoch_cache`] (`LeaderEpochFileCache`: where each leader epoch starts) and
//! [`truncation`] (`truncateTo`, crash-safe). Replication's other log primitive is
//! [`PartitionLog::append_as_follower`].
//! Retention ([`crate::retention`]) and the backlog policy ([`crate::backlog`]) sit above the log
//! and delete closed segments through [`PartitionLog::remove_segment`].
//!
//! High watermark ([`HighWatermarkMode`]): a node alone moves it itself: under
//! [`FlushPolicy::Always`] to the *flushed* offset (a consumer never sees a record that a power cut
//! could take back), under [`FlushPolicy::Interval`] to the log end offset. Under `Always` whoever
//! appends must call `flush_to` (or `flush`) for the records to become visible, also for acks=0
//! producers. A replicated partition's high watermark is moved only by the replica layer
//! ([`PartitionLog::update_high_watermark`]), never past this replica's own durable end; followers
//! read past it with [`ReadLimit::LogEnd`].

pub mod leader_epoch_cache;
pub(crate) mod loader;
pub(crate) mod segments;
pub(crate) mod swap;
mod tail_cache;
pub mod truncation;
pub mod validator;

use crate::clock::now_ms;
use crate::sync::{LockExt, RwLockExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::{Bytes, BytesMut};
use uuid::Uuid;

use crate::crypto::Encryption;
use crate::io::Storage;
use crate::producer_state::{self, ProducerError, ProducerStateManager};
use crate::segment::{self, BadRegion, PartitionIdent, Segment, SegmentError, StoredBatch};
use crate::storage_observer::StorageObserver;
use crate::topic_config::{TimestampType, TopicConfig};
use leader_epoch_cache::{EpochEntry, LeaderEpochFileCache};
use segments::LogSegments;
use tail_cache::TailCache;
use validator::{Assigned, Batches};

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushPolicy {
    /// fsync before acknowledging; concurrent appends share one fsync (group commit). Default.
    #[default]
    Always,
    /// Kafka's `flush.ms` style: a background flush every `ms`; acks do not wait for fsync.
    Interval {
        /// Milliseconds between background flushes.
        ms: u64,
    },
}

/// Errors of the partition log. The gateway maps them to Kafka error codes.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A batch failed validation (CRC, magic, framing, size).
    #[error(transparent)]
    Batch(#[from] crate::batch::BatchError),
    /// The requested offset is outside [log start, log end].
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// A stored batch failed verification (CRC or AEAD tag) and is not served.
    #[error("corrupt data in {file} at position {position}: {reason}")]
    Corrupt {
        file: PathBuf,
        position: u64,
        reason: String,
    },
    /// Encryption / key errors.
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    /// The disk failed or is full.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The log was closed or deleted.
    #[error("log is closed")]
    Closed,
    /// A leader append to a replica this node does not lead (see
    /// [`PartitionLog::set_leader_appends`]).
    #[error(
        "{topic}-{partition} is led by another node; this replica takes only the leader's data"
    )]
    NotLeader { topic: String, partition: i32 },
    /// An idempotent producer's batch was refused (sequence gap, stale epoch, unknown producer).
    #[error(transparent)]
    Producer(#[from] ProducerError),
    /// A follower append does not continue the log: a batch starts below the offset it must
    /// start at or after (the log end offset, then the previous batch's last offset + 1).
    #[error("follower append at offset {got}, expected {expected} or later")]
    UnexpectedOffset { expected: i64, got: i64 },
    /// A leader epoch entry with a negative epoch or start offset.
    #[error("invalid leader epoch entry: epoch {epoch} at offset {start_offset}")]
    InvalidLeaderEpoch { epoch: i32, start_offset: i64 },
    /// A truncation target inside a batch (truncation cuts only between batches).
    #[error("cannot truncate to offset {offset}: inside batch {batch_base}..={batch_last}")]
    TruncationInsideBatch {
        offset: i64,
        batch_base: i64,
        batch_last: i64,
    },
    /// A new leader's epoch is older than the epoch the log already has.
    #[error("leader epoch {epoch} is older than the log's epoch {current}")]
    StaleLeaderEpoch { epoch: i32, current: i32 },
}

impl From<SegmentError> for LogError {
    fn from(e: SegmentError) -> LogError {
        match e {
            SegmentError::BadFileHeader { file, source } => LogError::Corrupt {
                file,
                position: 0,
                reason: source.to_string(),
            },
            SegmentError::Corrupt {
                file,
                position,
                reason,
            } => LogError::Corrupt {
                file,
                position,
                reason,
            },
            SegmentError::Crypto(e) => LogError::Crypto(e),
            SegmentError::Batch(e) => LogError::Batch(e),
            SegmentError::Io { path, source } => LogError::Io { path, source },
        }
    }
}

/// What an append assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Largest timestamp among the appended batches.
    pub max_timestamp: i64,
    /// Broker time used when the topic uses LogAppendTime, else -1.
    pub log_append_time: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
    /// Number of records appended.
    pub record_count: u32,
}

/// Whole plaintext v2 batches returned by [`PartitionLog::read`].
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    /// Concatenated whole batches, first one containing the requested offset. May be empty.
    pub records: Bytes,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// Who moves a partition's high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HighWatermarkMode {
    /// A node alone: the log moves it itself, to the flushed offset under
    /// [`FlushPolicy::Always`] and to the log end offset under [`FlushPolicy::Interval`].
    #[default]
    Local,
    /// A replicated partition: only [`PartitionLog::update_high_watermark`] moves it (the replica
    /// layer, from what every in-sync replica holds durably), never past this log's own end.
    Replicated,
}

/// How far a read may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// Consumers (and anything reading for someone else): up to the high watermark.
    HighWatermark,
    /// Follower fetches: up to the log end offset, replicated or not.
    LogEnd,
}

/// Options fixed when a partition log is opened.
#[derive(Clone)]
pub struct LogOptions {
    pub topic_id: Uuid,
    pub topic: String,
    pub partition: i32,
    pub config: TopicConfig,
    pub flush: FlushPolicy,
    pub encryption: Encryption,
    pub storage: Arc<dyn Storage>,
    /// Told about fsyncs and bytes written ([`crate::storage_observer::none`] for nothing).
    pub observer: Arc<dyn StorageObserver>,
}

/// Marker written by [`PartitionLog::close`]: the last segment needs no full verification.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Checkpoint of a log start offset that lies inside the first segment (DeleteRecords).
pub const LOG_START_FILE: &str = "log-start-offset";
/// Default capacity of the plaintext tail cache of a partition (tailing consumers read what was
/// just appended; kept small because an edge node may hold many partitions).
pub const DEFAULT_CACHE_BYTES: usize = 256 << 10;
/// A write buffer grown beyond this by a large append is shrunk afterwards.
const MAX_IDLE_WRITE_BUFFER: usize = 4 << 20;

#[derive(Default)]
struct Writer {
    /// Sealed batches of the current append (one write).
    out: Vec<u8>,
    stored: Vec<StoredBatch>,
    /// A write failed part-way: positions of the active segment may hold bytes sealed with its
    /// key, so the next append must go to a new segment (never reuse a nonce).
    force_roll: bool,
}

/// One partition's log.
pub struct PartitionLog {
    dir: PathBuf,
    ident: PartitionIdent,
    topic: String,
    flush_policy: FlushPolicy,
    encryption: Encryption,
    storage: Arc<dyn Storage>,
    config: RwLock<TopicConfig>,
    segments: RwLock<LogSegments>,
    writer: Mutex<Writer>,
    flush_lock: Mutex<()>,
    /// Every offset below this is durable.
    flushed: AtomicI64,
    leo: AtomicI64,
    hw: AtomicI64,
    hw_tx: tokio::sync::watch::Sender<i64>,
    cache: Mutex<TailCache>,
    closed: AtomicBool,
    retention_floor: Mutex<Option<i64>>,
    /// See [`PartitionLog::set_in_flight_floor`].
    in_flight_floor: Mutex<Option<i64>>,
    corruption: Mutex<Vec<BadRegion>>,
    /// Closed segments that could not be opened (file header or key file damaged): their offset
    /// ranges answer reads with `LogError::Corrupt`. Their files are left in place.
    lost: RwLock<Vec<BadRegion>>,
    /// Idempotent producer state (sequence numbers), locked after `writer`.
    producers: Mutex<ProducerStateManager>,
    /// The partition leader epoch stamped on every appended batch (see [`Self::leader_epoch`]).
    leader_epoch: AtomicI32,
    /// Set under [`HighWatermarkMode::Replicated`]: the log no longer moves its high watermark.
    hw_replicated: AtomicBool,
    /// Cleared while this replica follows another node: [`PartitionLog::append`] refuses.
    leader_appends: AtomicBool,
    /// The leader epoch cache, changed under `writer` (locked after it).
    epochs: Mutex<LeaderEpochFileCache>,
    /// Told about fsyncs, bytes written, retention deletions and cleaner passes.
    observer: Arc<dyn StorageObserver>,
    /// Batches appended since open; the flush reports the difference to `batches_flushed`.
    batches_appended: AtomicU64,
    /// `batches_appended` as of the last flush (written under `flush_lock`).
    batches_flushed: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock_unpoisoned()
}

impl PartitionLog {
    /// Open (recovering the tail, see [`loader`]) or create the log in `dir`. Opening for writing
    /// always starts a new active segment with a fresh data key.
    pub fn open(dir: PathBuf, opts: LogOptions) -> Result<PartitionLog, LogError> {
        let ident = PartitionIdent {
            topic_id: opts.topic_id,
            partition: opts.partition,
        };
        let index_interval = u64::from(opts.config.index_interval_bytes.max(1));
        let loaded = loader::load(
            &*opts.storage,
            &dir,
            ident,
            &opts.encryption,
            index_interval,
        )?;
        let leo = loaded.log_end;
        let epochs = LeaderEpochFileCache::load(
            opts.storage.clone(),
            &dir,
            &loaded.segments,
            loaded.log_start,
            leo,
        )?;
        // The epoch stamped on appends never goes back, across restarts too.
        let epoch = epochs.latest_epoch().unwrap_or(0);
        let (hw_tx, _) = tokio::sync::watch::channel(leo);
        let log = PartitionLog {
            dir,
            ident,
            topic: opts.topic,
            flush_policy: opts.flush,
            encryption: opts.encryption,
            storage: opts.storage,
            config: RwLock::new(opts.config),
            segments: RwLock::new(LogSegments {
                map: loaded.segments,
                log_start: loaded.log_start,
            }),
            writer: Mutex::new(Writer::default()),
            flush_lock: Mutex::new(()),
            flushed: AtomicI64::new(leo),
            leo: AtomicI64::new(leo),
            hw: AtomicI64::new(leo),
            hw_tx,
            cache: Mutex::new(TailCache::new(DEFAULT_CACHE_BYTES)),
            closed: AtomicBool::new(false),
            retention_floor: Mutex::new(None),
            in_flight_floor: Mutex::new(None),
            corruption: Mutex::new(loaded.bad),
            lost: RwLock::new(loaded.lost),
            producers: Mutex::new(ProducerStateManager::new()),
            leader_epoch: AtomicI32::new(epoch),
            hw_replicated: AtomicBool::new(false),
            leader_appends: AtomicBool::new(true),
            epochs: Mutex::new(epochs),
            observer: opts.observer,
            batches_appended: AtomicU64::new(0),
            batches_flushed: AtomicU64::new(0),
        };
        log.rebuild_producer_state(loaded.snapshots);
        Ok(log)
    }

    /// Write the producer state snapshot covering everything below `offset`; keep the newest two.
    fn write_producer_snapshot(&self, offset: i64) {
        let data = lock(&self.producers).encode();
        let path = self.dir.join(producer_state::snapshot_file_name(offset));
        if let Err(e) = self.storage.write_file_atomic(&path, &data) {
            tracing::warn!(file = %path.display(), error = %e, "cannot write producer snapshot");
            return;
        }
        if let Ok(names) = self.storage.list(&self.dir) {
            let mut offs: Vec<i64> = names
                .iter()
                .filter_map(|n| segment::parse_file_name(n))
                .filter(|(_, ext)| *ext == producer_state::SNAPSHOT_EXT)
                .map(|(b, _)| b)
                .collect();
            offs.sort_unstable();
            let keep = offs.len().saturating_sub(2);
            for o in &offs[..keep] {
                let _ = self
                    .storage
                    .remove(&self.dir.join(producer_state::snapshot_file_name(*o)));
            }
        }
    }

    /// The idempotent producer state of this partition (a copy).
    pub fn producer_state(&self) -> ProducerStateManager {
        lock(&self.producers).clone()
    }

    fn write_log_start(&self, offset: i64) -> Result<(), LogError> {
        loader::write_log_start_file(&*self.storage, &self.dir, offset)
    }

    pub(crate) fn check_open(&self) -> Result<(), LogError> {
        if self.closed.load(Ordering::Acquire) {
            Err(LogError::Closed)
        } else {
            Ok(())
        }
    }

    /// The segment map (read lock).
    pub(crate) fn segs(&self) -> std::sync::RwLockReadGuard<'_, LogSegments> {
        self.segments.read_unpoisoned()
    }
    fn segs_mut(&self) -> std::sync::RwLockWriteGuard<'_, LogSegments> {
        self.segments.write_unpoisoned()
    }
    pub(crate) fn cfg(&self) -> TopicConfig {
        self.config.read_unpoisoned().clone()
    }
    fn active(&self) -> Result<Arc<Segment>, LogError> {
        self.segs().active().cloned().ok_or(LogError::Closed)
    }

    /// Run `f` under the writer lock: no append, roll, swap or other segment deletion runs
    /// meanwhile (retention and the backlog policy delete segments this way). Fails if closed.
    pub(crate) fn with_writer<R>(
        &self,
        f: impl FnOnce() -> Result<R, LogError>,
    ) -> Result<R, LogError> {
        self.check_open()?;
        let _w = lock(&self.writer);
        f()
    }

    /// The partition's directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
    /// Topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// Partition index.
    pub fn partition(&self) -> i32 {
        self.ident.partition
    }
    /// Topic id.
    pub fn topic_id(&self) -> Uuid {
        self.ident.topic_id
    }
    /// The flush policy.
    pub fn flush_policy(&self) -> FlushPolicy {
        self.flush_policy
    }
    /// Corrupt regions found by recovery (reported, not served).
    pub fn corruption(&self) -> Vec<BadRegion> {
        lock(&self.corruption).clone()
    }
    /// Set the capacity of the plaintext tail cache (0 disables it).
    pub fn set_cache_capacity(&self, bytes: usize) {
        lock(&self.cache).set_capacity(bytes);
    }
    /// Base offsets of the segments, oldest first (the last is the active segment).
    /// Number of segments (closed and active).
    pub fn segment_count(&self) -> usize {
        self.segs().map.len()
    }

    /// The observer this log reports to (retention and the cleaner report through it too).
    pub fn observer(&self) -> &Arc<dyn StorageObserver> {
        &self.observer
    }

    /// The base timestamp of the batch holding `offset` (below the high watermark), read from the
    /// clear batch header without decrypting anything: `None` when `offset` is at or past the high
    /// watermark, below the log start, or in a region that cannot be read. Consumer lag in seconds
    /// uses it (batch granularity: the first record's time of the batch holding the committed offset).
    pub fn batch_timestamp_at(&self, offset: i64) -> Option<i64> {
        if self.check_open().is_err() || offset >= self.high_watermark() {
            return None;
        }
        let seg = {
            let s = self.segs();
            if offset < s.log_start {
                return None;
            }
            s.map.range(..=offset).next_back().map(|(_, v)| v.clone())?
        };
        seg.batch_header_containing(offset)
            .ok()
            .flatten()
            .map(|h| h.base_timestamp)
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segs().map.keys().copied().collect()
    }

    /// Who moves the high watermark from now on (see [`HighWatermarkMode`]). Switching to
    /// `Replicated` lowers it to the log start offset: a replica cannot tell which of its records
    /// are committed (it keeps no high watermark checkpoint; what it holds beyond the last
    /// committed offset may be an unreplicated suffix that a new leader does not have), so
    /// nothing is readable until replication moves it again. Switching back to `Local` publishes
    /// what the flush policy allows at once.
    pub fn set_high_watermark_mode(&self, mode: HighWatermarkMode) {
        let replicated = mode == HighWatermarkMode::Replicated;
        let was = self.hw_replicated.swap(replicated, Ordering::AcqRel);
        if replicated && !was {
            self.lower_hw(self.log_start_offset());
        }
        if !replicated {
            let to = match self.flush_policy {
                FlushPolicy::Always => self.flushed.load(Ordering::Acquire),
                FlushPolicy::Interval { .. } => self.leo.load(Ordering::Acquire),
            };
            self.publish_hw(to);
        }
    }

    /// Whether [`Self::append`] (an append by this node as the partition's leader: Produce, MQTT,
    /// mirrors, coordinators) is allowed. The replica layer turns it off while this replica
    /// follows another node, so nothing but the leader's data
    /// ([`Self::append_as_follower`]) lands in it. On by default (a node alone).
    pub fn set_leader_appends(&self, allowed: bool) {
        self.leader_appends.store(allowed, Ordering::Release);
    }

    /// The current [`HighWatermarkMode`].
    pub fn high_watermark_mode(&self) -> HighWatermarkMode {
        if self.hw_replicated.load(Ordering::Acquire) {
            HighWatermarkMode::Replicated
        } else {
            HighWatermarkMode::Local
        }
    }

    /// Under [`HighWatermarkMode::Replicated`]: move the high watermark to `hw`, capped at this
    /// log's end offset and, under [`FlushPolicy::Always`], at its flushed offset (a record is
    /// visible only once this replica holds it durably too). It never moves back. Ignored in
    /// `Local` mode.
    pub fn update_high_watermark(&self, hw: i64) {
        if !self.hw_replicated.load(Ordering::Acquire) {
            return;
        }
        let cap = match self.flush_policy {
            FlushPolicy::Always => self.flushed.load(Ordering::Acquire),
            FlushPolicy::Interval { .. } => self.leo.load(Ordering::Acquire),
        };
        self.publish_hw(hw.min(cap));
    }

    /// Publish `hw` if the log moves its own high watermark ([`HighWatermarkMode::Local`]).
    fn publish_local_hw(&self, hw: i64) {
        if !self.hw_replicated.load(Ordering::Acquire) {
            self.publish_hw(hw);
        }
    }

    fn publish_hw(&self, hw: i64) {
        let prev = self.hw.fetch_max(hw, Ordering::AcqRel);
        if hw > prev {
            self.hw_tx.send_if_modified(|v| {
                if *v < hw {
                    *v = hw;
                    true
                } else {
                    false
                }
            });
        }
    }

    /// The partition leader epoch the log stamps on appended batches, whoever appends them
    /// (Kafka Produce, MQTT, the pull mirror): 0 for a new log, the latest epoch of the leader
    /// epoch cache after a reopen, moved by [`Self::set_leader_epoch`] /
    /// [`Self::assign_epoch_start`] and by follower appends; batches stored with epoch -1 (MQTT
    /// appends before the log owned the epoch) count as epoch 0 (`docs/on-disk-format.md`).
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Stamp later appends with `epoch` (a new leadership); an epoch never goes back, so a lower
    /// value is ignored.
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    /// Validate `records` (one or more v2 batches), assign offsets and the log's leader epoch,
    /// write them. Not yet durable: call [`PartitionLog::flush_to`] before acknowledging.
    pub fn append(&self, records: &[u8]) -> Result<AppendInfo, LogError> {
        self.check_open()?;
        if !self.leader_appends.load(Ordering::Acquire) {
            return Err(LogError::NotLeader {
                topic: self.topic.clone(),
                partition: self.partition(),
            });
        }
        let cfg = self.cfg();
        let parts = validator::validate_batches(records, &cfg)?;
        let mut w = lock(&self.writer);
        self.check_open()?;
        let w = &mut *w;
        let now = now_ms();
        let append_time = cfg.message_timestamp_type == TimestampType::LogAppendTime;
        let leo = self.leo.load(Ordering::Acquire);
        let offsets: i64 = parts.iter().map(|(h, _)| h.offset_count()).sum();
        let active = self.active_for(w, &cfg, records.len() as u64, parts.len(), leo + offsets)?;
        // Idempotent producers: refuse gaps and stale epochs, answer retries with their offsets.
        let mut pstate = lock(&self.producers);
        if let Some(b) = validator::check_producers(&parts, &pstate, leo)? {
            return Ok(AppendInfo {
                base_offset: b.first_offset,
                last_offset: b.last_offset,
                max_timestamp: -1,
                log_append_time: -1,
                log_start_offset: self.segs().log_start,
                record_count: 0,
            });
        }
        let epoch = self.leader_epoch();
        let a = validator::assign_offsets(records, &parts, leo, epoch, append_time.then_some(now))?;
        // Kafka assigns the epoch before writing: the checkpoint never misses an epoch that
        // durable data carries.
        {
            let mut epochs = lock(&self.epochs);
            if epochs.latest_epoch().is_none_or(|l| epoch > l) {
                epochs.assign(epoch, leo)?;
            }
        }
        let (next_offset, max_timestamp, record_count) =
            (a.next_offset, a.max_timestamp, a.record_count);
        self.write_appended(w, &active, a, &parts, &cfg, &mut pstate)?;
        drop(pstate);
        Ok(AppendInfo {
            base_offset: leo,
            last_offset: next_offset - 1,
            max_timestamp,
            log_append_time: if append_time { now } else { -1 },
            log_start_offset: self.segs().log_start,
            record_count,
        })
    }

    /// Append batches fetched from the partition leader (Kafka's `appendAsFollower`): offsets,
    /// partition leader epochs and timestamps stay as the leader assigned them. Every batch is
    /// checked for framing and CRC (no size or key checks: the leader accepted it); the first must
    /// start at or after the log end offset and each later one after its predecessor (gaps are
    /// compaction on the leader), else [`LogError::UnexpectedOffset`] and nothing is written.
    /// Producer state is updated from the batch headers without refusing anything, the leader
    /// epoch cache gets each batch's epoch (-1 counts as 0). Not durable until
    /// [`Self::flush_to`]; under [`HighWatermarkMode::Replicated`] the high watermark does not
    /// move. Sealed like leader appends when encrypted.
    pub fn append_as_follower(&self, records: &[u8]) -> Result<AppendInfo, LogError> {
        self.check_open()?;
        let cfg = self.cfg();
        let parts = crate::batch::split_batches(records, usize::MAX)?;
        let mut w = lock(&self.writer);
        self.check_open()?;
        let w = &mut *w;
        let leo = self.leo.load(Ordering::Acquire);
        let mut expected = leo;
        let mut headers = Vec::with_capacity(parts.len());
        let mut max_timestamp = -1i64;
        let mut record_count: u32 = 0;
        for (h, _) in &parts {
            if h.base_offset < expected || h.last_offset_delta < 0 {
                return Err(LogError::UnexpectedOffset {
                    expected,
                    got: h.base_offset,
                });
            }
            expected = h.last_offset() + 1;
            max_timestamp = max_timestamp.max(h.max_timestamp);
            record_count = record_count.saturating_add(h.records_count.max(0) as u32);
            headers.push(*h);
        }
        let a = Assigned {
            plain: BytesMut::from(records),
            headers,
            next_offset: expected,
            max_timestamp,
            record_count,
        };
        let active = self.active_for(w, &cfg, records.len() as u64, parts.len(), expected)?;
        {
            let mut epochs = lock(&self.epochs);
            for h in &a.headers {
                let epoch = h.partition_leader_epoch.max(0);
                epochs.assign(epoch, h.base_offset)?;
                self.leader_epoch.fetch_max(epoch, Ordering::AcqRel);
            }
        }
        let base_offset = a.headers.first().map_or(leo, |h| h.base_offset);
        let mut pstate = lock(&self.producers);
        self.write_appended(w, &active, a, &parts, &cfg, &mut pstate)?;
        drop(pstate);
        Ok(AppendInfo {
            base_offset,
            last_offset: expected - 1,
            max_timestamp,
            log_append_time: -1,
            log_start_offset: self.segs().log_start,
            record_count,
        })
    }

    /// The segment an append of `bytes` in `batches` batches ending before `next_offset` goes
    /// to: the active one, or a new one if it must roll (or a failed write forced a roll).
    fn active_for(
        &self,
        w: &mut Writer,
        cfg: &TopicConfig,
        bytes: u64,
        batches: usize,
        next_offset: i64,
    ) -> Result<Arc<Segment>, LogError> {
        let mut active = self.active()?;
        let incoming = bytes + active.overhead() * batches as u64;
        if w.force_roll || self.should_roll(&active, cfg, incoming, next_offset) {
            active = self.roll_locked(self.leo.load(Ordering::Acquire), cfg)?;
            w.force_roll = false;
        }
        Ok(active)
    }

    /// Write an append whose headers are final, then publish it: log end offset, producer
    /// state, tail cache and (under `Interval`, in `Local` mode) the high watermark.
    fn write_appended(
        &self,
        w: &mut Writer,
        active: &Segment,
        a: Assigned,
        parts: &Batches,
        cfg: &TopicConfig,
        pstate: &mut ProducerStateManager,
    ) -> Result<(), LogError> {
        if let Err(e) = Self::write_batches(w, active, &a, parts, cfg) {
            w.force_roll = true;
            return Err(e);
        }
        self.observer
            .written(w.stored.iter().map(|b| b.stored_len).sum());
        self.batches_appended
            .fetch_add(w.stored.len() as u64, Ordering::AcqRel);
        self.leo.store(a.next_offset, Ordering::Release);
        for h in &a.headers {
            pstate.record(h);
        }
        let plain = a.plain.freeze();
        let mut cache = lock(&self.cache);
        for (h, (_, range)) in a.headers.iter().zip(parts) {
            cache.push(h.base_offset, h.last_offset(), plain.slice(range.clone()));
        }
        drop(cache);
        if let FlushPolicy::Interval { .. } = self.flush_policy {
            self.publish_local_hw(a.next_offset);
        }
        Ok(())
    }

    /// The newest leader epoch in the leader epoch cache (`None` while the log has no data and no
    /// leader wrote its epoch).
    pub fn latest_epoch(&self) -> Option<i32> {
        lock(&self.epochs).latest_epoch()
    }

    /// The leader epoch that wrote `offset` as the epoch cache has it (`None` before its
    /// earliest entry, and on a log whose leaders never recorded an epoch: a node alone).
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        lock(&self.epochs).epoch_for_offset(offset)
    }

    /// OffsetForLeaderEpoch for `epoch` (Kafka's `endOffsetFor`, see
    /// [`LeaderEpochFileCache::end_offset_for`]): the largest epoch <= `epoch` and its end offset,
    /// the log end offset for the latest epoch, `(-1, -1)` when the cache cannot place it.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let epochs = lock(&self.epochs);
        epochs.end_offset_for(epoch, self.leo.load(Ordering::Acquire))
    }

    /// A new leader's first step before it serves (KIP-101): record that `epoch` starts at the
    /// log end offset in the epoch cache (durably) and stamp later appends with it. Refused with
    /// [`LogError::StaleLeaderEpoch`] if the log already has a newer epoch; the same epoch again
    /// changes nothing.
    pub fn assign_epoch_start(&self, epoch: i32) -> Result<(), LogError> {
        self.check_open()?;
        let _w = lock(&self.writer);
        self.check_open()?;
        let current = self.leader_epoch();
        let mut epochs = lock(&self.epochs);
        let latest = epochs.latest_epoch().unwrap_or(current).max(current);
        if epoch < latest {
            return Err(LogError::StaleLeaderEpoch {
                epoch,
                current: latest,
            });
        }
        epochs.assign(epoch, self.leo.load(Ordering::Acquire))?;
        self.set_leader_epoch(epoch);
        Ok(())
    }

    /// The entries of the leader epoch cache, oldest first (tests, diagnostics).
    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        lock(&self.epochs).entries()
    }

    /// Seal the assigned batches for `active` (one buffer, one write) and append them. After an
    /// error the active segment may hold bytes sealed with its key: the caller forces a roll.
    fn write_batches(
        w: &mut Writer,
        active: &Segment,
        a: &Assigned,
        parts: &Batches,
        cfg: &TopicConfig,
    ) -> Result<(), LogError> {
        w.out.clear();
        w.stored.clear();
        let mut pos = active.size();
        let encrypted = active.key.is_some();
        for (h, (_, range)) in a.headers.iter().zip(parts) {
            let plain = &a.plain[range.clone()];
            let len = if encrypted {
                let before = w.out.len();
                active.seal_into(plain, pos, &mut w.out)?;
                (w.out.len() - before) as u64
            } else {
                range.len() as u64
            };
            w.stored.push(StoredBatch {
                header: *h,
                max_ts_offset: crate::batch::offset_of_max_timestamp(plain),
                position: pos,
                stored_len: len,
            });
            pos += len;
        }
        let data: &[u8] = if encrypted { &w.out } else { &a.plain };
        active.append_stored(data, &w.stored, u64::from(cfg.index_interval_bytes.max(1)))?;
        if w.out.capacity() > MAX_IDLE_WRITE_BUFFER {
            w.out = Vec::new();
        }
        Ok(())
    }

    /// Block until everything up to and including `offset` is durable under the flush policy
    /// (group commit). Returns at once under `FlushPolicy::Interval`.
    pub fn flush_to(&self, offset: i64) -> Result<(), LogError> {
        match self.flush_policy {
            FlushPolicy::Always => {
                if self.flushed.load(Ordering::Acquire) > offset {
                    return Ok(());
                }
                self.flush_inner(Some(offset))
            }
            // The broker's maintenance thread calls `flush` every `ms`.
            FlushPolicy::Interval { .. } => Ok(()),
        }
    }

    /// fsync everything written so far (used by the interval flusher and at shutdown).
    pub fn flush(&self) -> Result<(), LogError> {
        self.flush_inner(None)
    }

    fn flush_inner(&self, covered: Option<i64>) -> Result<(), LogError> {
        let guard = lock(&self.flush_lock);
        if let Some(o) = covered {
            if self.flushed.load(Ordering::Acquire) > o {
                return Ok(());
            }
        }
        // Read the end offset BEFORE picking the active segment: data below it is either in that
        // segment or in older ones, which were fsynced when they were rolled.
        let leo = self.leo.load(Ordering::Acquire);
        let batches = self.batches_appended.load(Ordering::Acquire);
        let started = std::time::Instant::now();
        let active = self.active()?;
        active.write_indexes()?;
        active.sync_log()?;
        let covered = batches.saturating_sub(self.batches_flushed.swap(batches, Ordering::AcqRel));
        self.observer.flushed(
            &self.topic,
            self.ident.partition,
            started.elapsed(),
            covered,
        );
        // Under Always the high watermark is the flushed offset: publish it before the flushed
        // offset, so a caller that finds itself covered is also visible to consumers.
        if self.flush_policy == FlushPolicy::Always {
            self.publish_local_hw(leo);
        }
        self.flushed.fetch_max(leo, Ordering::AcqRel);
        drop(guard);
        Ok(())
    }

    /// Offset below which everything is durable.
    pub fn flushed_offset(&self) -> i64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// Whole batches starting with the one containing `from_offset`, up to `max_bytes` (at least
    /// one batch if any exists at `from_offset`, as Kafka does).
    ///
    /// Under `Always`, a reader that is caught up with the high watermark while unflushed data
    /// exists (e.g. appended by acks=0 producers, which never wait for `flush_to`) triggers the
    /// group-commit flush, so such data becomes visible without waiting for another producer.
    pub fn read(&self, from_offset: i64, max_bytes: usize) -> Result<ReadResult, LogError> {
        self.read_up_to(from_offset, max_bytes, ReadLimit::HighWatermark)
    }

    /// [`Self::read`] with an explicit limit: [`ReadLimit::LogEnd`] is a follower's fetch, which
    /// reads past the high watermark (and triggers no flush); the result's `high_watermark` is
    /// still the high watermark.
    pub fn read_up_to(
        &self,
        from_offset: i64,
        max_bytes: usize,
        limit: ReadLimit,
    ) -> Result<ReadResult, LogError> {
        self.check_open()?;
        let mut hw = self.hw.load(Ordering::Acquire);
        let leo = self.leo.load(Ordering::Acquire);
        if limit == ReadLimit::HighWatermark
            && self.flush_policy == FlushPolicy::Always
            && !self.hw_replicated.load(Ordering::Acquire)
            && from_offset >= hw
            && from_offset < leo
            && from_offset >= self.log_start_offset()
        {
            self.flush_to(leo - 1)?;
            hw = self.hw.load(Ordering::Acquire);
        }
        let (log_start, segs) = {
            let s = self.segs();
            let log_start = s.log_start;
            if from_offset < log_start || from_offset > leo {
                return Err(LogError::OffsetOutOfRange {
                    offset: from_offset,
                    log_start,
                    log_end: leo,
                });
            }
            let first = s
                .map
                .range(..=from_offset)
                .next_back()
                .map(|(k, _)| *k)
                .unwrap_or(log_start);
            let segs: Vec<Arc<Segment>> = s.map.range(first..).map(|(_, v)| v.clone()).collect();
            (log_start, segs)
        };
        let mut result = ReadResult {
            records: Bytes::new(),
            high_watermark: hw,
            last_stable_offset: hw,
            log_start_offset: log_start,
            log_end_offset: leo,
        };
        let upper = match limit {
            ReadLimit::HighWatermark => hw,
            ReadLimit::LogEnd => leo,
        };
        if from_offset >= upper {
            return Ok(result);
        }
        if let Some(l) = self
            .lost
            .read_unpoisoned()
            .iter()
            .find(|l| l.first_offset <= from_offset && from_offset < l.next_offset)
        {
            return Err(LogError::Corrupt {
                file: l.file.clone(),
                position: 0,
                reason: l.reason.clone(),
            });
        }
        if let Some(b) = lock(&self.cache).read(from_offset, max_bytes, upper) {
            result.records = b;
            return Ok(result);
        }
        let mut out = BytesMut::new();
        for seg in segs {
            if seg.base_offset >= upper {
                break;
            }
            let reached_end = seg.read_into(from_offset, max_bytes, upper, &mut out)?;
            if !out.is_empty() || !reached_end {
                break;
            }
        }
        result.records = out.freeze();
        Ok(result)
    }

    /// Earliest offset whose batch max timestamp is >= `timestamp`, with that timestamp.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        self.check_open()?;
        let hw = self.hw.load(Ordering::Acquire);
        let (log_start, segs) = {
            let s = self.segs();
            (s.log_start, s.map.values().cloned().collect::<Vec<_>>())
        };
        for seg in segs {
            if seg.base_offset >= hw {
                break;
            }
            if seg.next_offset() <= log_start {
                continue;
            }
            if let Some((o, t)) = seg.offset_for_timestamp(timestamp, hw)? {
                return Ok(Some((o.max(log_start), t)));
            }
        }
        Ok(None)
    }

    /// (offset, timestamp) of the record with the largest timestamp (ListOffsets MAX_TIMESTAMP).
    /// Covers the whole log up to the log end offset (under `Always` the newest batches become
    /// readable with the next group commit).
    pub fn max_timestamp_offset(&self) -> Option<(i64, i64)> {
        let s = self.segs();
        let mut best: Option<(i64, i64)> = None;
        for seg in s.map.values() {
            let st = seg.state();
            if st.offset_of_max_ts >= 0
                && st.offset_of_max_ts >= s.log_start
                && best.is_none_or(|(_, t)| st.max_timestamp > t)
            {
                best = Some((st.offset_of_max_ts, st.max_timestamp));
            }
        }
        best
    }

    pub fn log_start_offset(&self) -> i64 {
        self.segs().log_start
    }
    pub fn log_end_offset(&self) -> i64 {
        self.leo.load(Ordering::Acquire)
    }
    pub fn high_watermark(&self) -> i64 {
        self.hw.load(Ordering::Acquire)
    }
    /// A receiver that changes whenever the high watermark moves (Fetch long polls wait on it).
    pub fn watch_high_watermark(&self) -> tokio::sync::watch::Receiver<i64> {
        self.hw_tx.subscribe()
    }

    /// DeleteRecords: advance the log start offset to `offset` (deleting whole segments below it).
    /// `-1` means the high watermark. Returns the new log start offset.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        self.check_open()?;
        let _w = lock(&self.writer);
        let hw = self.hw.load(Ordering::Acquire);
        let offset = if offset == -1 { hw } else { offset };
        let log_start = self.log_start_offset();
        if offset < 0 || offset > hw {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                log_end: hw,
            });
        }
        if offset <= log_start {
            return Ok(log_start);
        }
        self.write_log_start(offset)?;
        self.segs_mut().log_start = offset;
        lock(&self.epochs).truncate_from_start(offset)?;
        // Whole closed segments entirely below the new start go.
        loop {
            let victim = {
                let s = self.segs();
                let mut it = s.map.values();
                match (it.next(), s.map.len()) {
                    (Some(seg), n) if n > 1 && seg.next_offset() <= offset => Some(seg.clone()),
                    _ => None,
                }
            };
            match victim {
                Some(seg) => {
                    self.remove_segment(&seg)?;
                }
                None => break,
            }
        }
        Ok(offset)
    }

    /// Apply a changed topic config (retention, segment size, ...).
    pub fn set_config(&self, config: TopicConfig) {
        *self.config.write_unpoisoned() = config;
    }

    /// Current topic config.
    pub fn config(&self) -> TopicConfig {
        self.cfg()
    }

    /// Hold back retention: segments holding offsets >= `floor` are never deleted (used by the
    /// bridge for data not yet mirrored). `None` lifts the floor.
    pub fn set_retention_floor(&self, floor: Option<i64>) {
        *lock(&self.retention_floor) = floor;
    }

    /// The retention floor, if set.
    pub fn retention_floor(&self) -> Option<i64> {
        *lock(&self.retention_floor)
    }

    /// Records from `from` on are being sent by a mirror right now (read and not acknowledged
    /// yet): the backlog policy `drop_oldest` leaves the segment holding them until the send
    /// ends, so a record is either mirrored or counted as dropped, never both. `None`: nothing
    /// in flight.
    pub fn set_in_flight_floor(&self, from: Option<i64>) {
        *lock(&self.in_flight_floor) = from;
    }

    /// The in-flight floor, if set.
    pub fn in_flight_floor(&self) -> Option<i64> {
        *lock(&self.in_flight_floor)
    }

    /// Total bytes on disk of this log's segments.
    pub fn size_bytes(&self) -> u64 {
        self.segs()
            .map
            .values()
            .map(|s| {
                let st = s.state();
                st.size + st.index_file_len + st.time_file_len
            })
            .sum()
    }

    // ---- compaction support (used by cleaner.rs; owned by the compaction work) ----

    /// The closed (non-active) segments, oldest first.
    pub(crate) fn closed_segments(&self) -> Vec<Arc<Segment>> {
        let s = self.segs();
        let n = s.map.len().saturating_sub(1);
        s.map.values().take(n).cloned().collect()
    }

    /// Storage, encryption and identity of the log, for writing a replacement segment.
    pub(crate) fn parts(&self) -> (&Arc<dyn Storage>, &Encryption, PartitionIdent) {
        (&self.storage, &self.encryption, self.ident)
    }

    /// Replace the closed segment `old` by a cleaned copy with the same base offset: under the
    /// writer lock (no roll, retention or other swap meanwhile), `commit` makes the swap durable
    /// on disk and returns the new segment, which then replaces `old` in the segment map. Returns
    /// `Ok(false)` without calling `commit` if `old` is no longer in the log (e.g. deleted by
    /// retention). Readers that already picked `old` finish on its open file handles.
    pub(crate) fn swap_segment(
        &self,
        old: &Arc<Segment>,
        commit: impl FnOnce() -> Result<Segment, LogError>,
    ) -> Result<bool, LogError> {
        self.check_open()?;
        let _w = lock(&self.writer);
        self.check_open()?;
        {
            let s = self.segs();
            let present = s
                .map
                .get(&old.base_offset)
                .is_some_and(|x| Arc::ptr_eq(x, old));
            let is_active = s.active().is_some_and(|a| Arc::ptr_eq(a, old));
            if !present || is_active {
                return Ok(false);
            }
        }
        let new = Arc::new(commit()?);
        self.segs_mut().map.insert(old.base_offset, new);
        // The tail cache may still hold batches the cleaner removed.
        lock(&self.cache).clear();
        Ok(true)
    }

    // ---- end of compaction support ----

    /// Flush and close; further calls return [`LogError::Closed`].
    pub fn close(&self) -> Result<(), LogError> {
        let _w = lock(&self.writer);
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let active = self.active()?;
        active.finish()?;
        self.write_producer_snapshot(self.leo.load(Ordering::Acquire));
        self.flushed
            .fetch_max(self.leo.load(Ordering::Acquire), Ordering::AcqRel);
        let p = self.dir.join(CLEAN_SHUTDOWN_FILE);
        let f = self.storage.create(&p).map_err(|source| LogError::Io {
            path: p.clone(),
            source,
        })?;
        f.sync()
            .map_err(|source| LogError::Io { path: p, source })?;
        self.storage
            .sync_dir(&self.dir)
            .map_err(|source| LogError::Io {
                path: self.dir.clone(),
                source,
            })?;
        lock(&self.cache).clear();
        Ok(())
    }

    /// Delete every file of this log (topic deletion). The log is closed first.
    pub fn delete(&self) -> Result<(), LogError> {
        let _w = lock(&self.writer);
        self.closed.store(true, Ordering::Release);
        self.storage
            .remove_dir_all(&self.dir)
            .map_err(|source| LogError::Io {
                path: self.dir.clone(),
                source,
            })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::batch::test_util::batch;
    use crate::batch::BatchHeader;
    use crate::crypto::{CipherKind, MasterKey};
    use crate::io::{OsStorage, SimStorage};
    use crate::topic_config::CleanupPolicy;

    pub(crate) fn test_config() -> TopicConfig {
        TopicConfig {
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            cleanup_policy: CleanupPolicy::Delete,
            max_message_bytes: 1 << 20,
            delete_retention_ms: 24 * 3600 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            message_timestamp_type: TimestampType::CreateTime,
            index_interval_bytes: 4096,
            ..TopicConfig::default()
        }
    }

    pub(crate) fn opts(storage: Arc<dyn Storage>, enc: bool) -> LogOptions {
        LogOptions {
            topic_id: Uuid::from_u128(0x1234),
            topic: "t".into(),
            partition: 0,
            config: test_config(),
            flush: FlushPolicy::Always,
            encryption: if enc {
                Encryption::On {
                    cipher: CipherKind::Aes256Gcm,
                    master: Arc::new(MasterKey::from_bytes([5u8; 32])),
                }
            } else {
                Encryption::Off
            },
            storage,
            observer: crate::storage_observer::none(),
        }
    }

    fn values(rr: &ReadResult) -> Vec<(i64, Vec<u8>)> {
        let mut buf = rr.records.clone();
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf).unwrap();
        sets.into_iter()
            .flat_map(|s| s.records)
            .map(|r| (r.offset, r.value.map(|v| v.to_vec()).unwrap_or_default()))
            .collect()
    }

    #[test]
    fn append_flush_read_reopen_encrypted() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("t-0");
        let log = PartitionLog::open(dir.clone(), opts(Arc::new(OsStorage), true)).unwrap();
        log.set_leader_epoch(3);
        let a = log.append(&batch(&[b"one", b"two"], 1000)).unwrap();
        assert_eq!((a.base_offset, a.last_offset, a.record_count), (0, 1, 2));
        assert_eq!(
            log.high_watermark(),
            0,
            "not visible before flush under Always"
        );
        let b = log.append(&batch(&[b"three"], 2000)).unwrap();
        assert_eq!(b.base_offset, 2);
        log.flush_to(b.last_offset).unwrap();
        assert_eq!(log.high_watermark(), 3);
        let rr = log.read(1, 1 << 20).unwrap();
        assert_eq!(
            values(&rr),
            vec![
                (0, b"one".to_vec()),
                (1, b"two".to_vec()),
                (2, b"three".to_vec())
            ]
        );
        // Bypass the cache: read from disk.
        log.set_cache_capacity(0);
        let rr = log.read(2, 1).unwrap();
        assert_eq!(values(&rr), vec![(2, b"three".to_vec())]);
        let h = BatchHeader::parse(&rr.records).unwrap();
        assert_eq!(h.partition_leader_epoch, 3);
        assert_eq!(log.offset_for_timestamp(1001).unwrap(), Some((1, 1001)));
        assert_eq!(log.offset_for_timestamp(1500).unwrap(), Some((2, 2000)));
        assert_eq!(log.offset_for_timestamp(2001).unwrap(), None);
        assert_eq!(log.max_timestamp_offset(), Some((2, 2000)));
        assert!(matches!(
            log.read(4, 100),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(log.read(3, 100).unwrap().records.is_empty());
        drop(log);
        // Unclean reopen: full recovery of the last segment, new active segment.
        let log = PartitionLog::open(dir.clone(), opts(Arc::new(OsStorage), true)).unwrap();
        assert_eq!(log.log_end_offset(), 3);
        assert_eq!(log.segment_base_offsets(), vec![0, 3]);
        let rr = log.read(0, 1 << 20).unwrap();
        assert_eq!(values(&rr).len(), 3);
        assert_eq!(log.offset_for_timestamp(1500).unwrap(), Some((2, 2000)));
        let c = log.append(&batch(&[b"four"], 3000)).unwrap();
        assert_eq!(c.base_offset, 3);
        log.close().unwrap();
        assert!(matches!(log.read(0, 10), Err(LogError::Closed)));
        // Clean reopen: quick open of all segments.
        let log = PartitionLog::open(dir, opts(Arc::new(OsStorage), true)).unwrap();
        assert_eq!(log.log_end_offset(), 4);
        log.set_cache_capacity(0);
        assert_eq!(
            values(&log.read(0, 1 << 20).unwrap()).len(),
            3,
            "one segment per read"
        );
        assert_eq!(
            values(&log.read(3, 1 << 20).unwrap()),
            vec![(3, b"four".to_vec())]
        );
        assert_eq!(log.max_timestamp_offset(), Some((3, 3000)));
    }

    #[test]
    fn the_log_stamps_its_leader_epoch_whatever_the_batch_says() {
        let s = SimStorage::new();
        let log = PartitionLog::open("/p".into(), opts(Arc::new(s), false)).unwrap();
        let mut b = batch(&[b"mqtt"], 1);
        crate::batch::set_leader_epoch(&mut b, -1); // as MQTT encoded its batches
        log.append(&b).unwrap();
        log.set_leader_epoch(2);
        log.set_leader_epoch(1); // never goes back
        assert_eq!(log.leader_epoch(), 2);
        let a = log.append(&batch(&[b"kafka"], 2)).unwrap();
        log.flush_to(a.last_offset).unwrap();
        log.set_cache_capacity(0);
        let epochs: Vec<i32> = (0..2)
            .map(|o| {
                let rr = log.read(o, 1).unwrap();
                BatchHeader::parse(&rr.records)
                    .unwrap()
                    .partition_leader_epoch
            })
            .collect();
        assert_eq!(epochs, vec![0, 2]);
    }

    #[test]
    fn rejects_bad_batches_without_writing() {
        let s = SimStorage::new();
        let log = PartitionLog::open("/p".into(), opts(Arc::new(s), true)).unwrap();
        let good = batch(&[b"a"], 1);
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        let mut payload = good.clone();
        payload.extend_from_slice(&bad);
        assert!(matches!(
            log.append(&payload),
            Err(LogError::Batch(
                crate::batch::BatchError::CrcMismatch { .. }
            ))
        ));
        assert_eq!(log.log_end_offset(), 0);
        let mut cfg = test_config();
        cfg.max_message_bytes = 10;
        log.set_config(cfg);
        assert!(matches!(
            log.append(&good),
            Err(LogError::Batch(crate::batch::BatchError::TooLarge { .. }))
        ));
    }

    #[test]
    fn log_append_time_rewrites_max_timestamp() {
        let s = SimStorage::new();
        let mut o = opts(Arc::new(s), true);
        o.config.message_timestamp_type = TimestampType::LogAppendTime;
        let log = PartitionLog::open("/p".into(), o).unwrap();
        let info = log.append(&batch(&[b"a", b"b"], 5)).unwrap();
        assert!(info.log_append_time > 0);
        assert_eq!(info.max_timestamp, info.log_append_time);
        log.flush().unwrap();
        let rr = log.read(0, 100).unwrap();
        let h = BatchHeader::parse(&rr.records).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, info.log_append_time);
        crate::batch::verify_crc(&rr.records).unwrap();
    }

    #[test]
    fn rolls_by_size_and_reads_across_segments() {
        let s = SimStorage::new();
        let mut o = opts(Arc::new(s), true);
        o.config.segment_bytes = 600;
        o.config.index_interval_bytes = 100;
        let log = PartitionLog::open("/p".into(), o).unwrap();
        for i in 0..40u32 {
            let v = format!("value-{i}");
            log.append(&batch(&[v.as_bytes()], i as i64 * 10)).unwrap();
        }
        log.flush().unwrap();
        assert!(log.segment_base_offsets().len() > 5);
        log.set_cache_capacity(0);
        let mut next = 0;
        while next < 40 {
            let rr = log.read(next, 150).unwrap();
            let vals = values(&rr);
            assert!(!vals.is_empty());
            for (o, v) in vals {
                assert_eq!(o, next);
                assert_eq!(v, format!("value-{next}").into_bytes());
                next += 1;
            }
        }
        for t in [0i64, 5, 10, 155, 390] {
            let want = (t + 9) / 10;
            assert_eq!(
                log.offset_for_timestamp(t).unwrap(),
                Some((want, want * 10))
            );
        }
    }

    /// Records what the log reports (the gateway's metrics implement the same trait).
    #[derive(Debug, Default)]
    struct Recorder {
        flushes: AtomicU64,
        batches: AtomicU64,
        written: AtomicU64,
    }

    impl StorageObserver for Recorder {
        fn flushed(&self, _t: &str, _p: i32, _e: std::time::Duration, batches: u64) {
            self.flushes.fetch_add(1, Ordering::Relaxed);
            self.batches.fetch_add(batches, Ordering::Relaxed);
        }
        fn written(&self, bytes: u64) {
            self.written.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    #[test]
    fn observer_sees_group_commits_and_bytes() {
        let s = SimStorage::new();
        let rec = Arc::new(Recorder::default());
        let mut o = opts(Arc::new(s.clone()), true);
        o.observer = rec.clone();
        let log = PartitionLog::open("/p".into(), o).unwrap();
        for i in 0..3 {
            log.append(&batch(&[b"a", b"b"], 1_000 + i * 10)).unwrap();
        }
        log.flush_to(5).unwrap();
        assert_eq!(rec.flushes.load(Ordering::Relaxed), 1);
        assert_eq!(
            rec.batches.load(Ordering::Relaxed),
            3,
            "three batches in one commit"
        );
        assert!(
            rec.written.load(Ordering::Relaxed) > 3 * 61,
            "stored bytes counted"
        );
        // The clear header gives each batch's base timestamp, also for an encrypted log.
        assert_eq!(log.batch_timestamp_at(0), Some(1_000));
        assert_eq!(log.batch_timestamp_at(3), Some(1_010));
        assert_eq!(log.batch_timestamp_at(5), Some(1_020));
        assert_eq!(log.batch_timestamp_at(6), None, "at the high watermark");
        assert_eq!(log.segment_count(), 1);
    }

    #[test]
    fn group_commit_shares_fsyncs() {
        let s = SimStorage::new();
        let log =
            Arc::new(PartitionLog::open("/p".into(), opts(Arc::new(s.clone()), true)).unwrap());
        // The first append of an epoch writes the leader epoch checkpoint: not counted.
        let a = log.append(&batch(&[b"x"], 1)).unwrap();
        log.flush_to(a.last_offset).unwrap();
        let before = s.sync_count();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let a = log.append(&batch(&[b"x"], 1)).unwrap();
                        log.flush_to(a.last_offset).unwrap();
                        assert!(log.high_watermark() > a.last_offset);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(log.high_watermark(), 401);
        let syncs = s.sync_count() - before;
        assert!(syncs <= 400, "at most one fsync per append, got {syncs}");
    }

    #[test]
    fn max_timestamp_offset_is_exact_after_recoveries() {
        let mut second = crate::batch::BatchBuilder::new();
        for ts in [5, 50, 50] {
            second.push(None, Some(Bytes::from_static(b"v")), ts);
        }
        let second = second.build().unwrap();
        let s = SimStorage::new();
        let mut o = opts(Arc::new(s.clone()), true);
        o.config.index_interval_bytes = 1 << 20; // only the first batch is indexed
        let log = PartitionLog::open("/p".into(), o.clone()).unwrap();
        log.append(&batch(&[b"a"], 10)).unwrap();
        log.append(&second).unwrap();
        log.flush().unwrap();
        assert_eq!(log.max_timestamp_offset(), Some((2, 50)));
        drop(log); // unclean: full recovery of segment 0
        let log = PartitionLog::open("/p".into(), o.clone()).unwrap();
        assert_eq!(log.max_timestamp_offset(), Some((2, 50)));
        drop(log); // segment 0 is now a closed segment: quick open from its indexes
        let log = PartitionLog::open("/p".into(), o).unwrap();
        assert_eq!(log.max_timestamp_offset(), Some((2, 50)));
        assert_eq!(log.offset_for_timestamp(6).unwrap(), Some((0, 10)));
        assert_eq!(log.offset_for_timestamp(11).unwrap(), Some((2, 50)));
    }

    #[test]
    fn caught_up_reader_flushes_unacknowledged_appends() {
        // acks=0 producers never call flush_to; a caught-up consumer makes their data visible.
        let s = SimStorage::new();
        let log = PartitionLog::open("/p".into(), opts(Arc::new(s.clone()), true)).unwrap();
        log.append(&batch(&[b"fire-and-forget"], 1)).unwrap();
        assert_eq!(log.high_watermark(), 0);
        let syncs = s.sync_count();
        let rr = log.read(0, 100).unwrap();
        assert_eq!(values(&rr), vec![(0, b"fire-and-forget".to_vec())]);
        assert_eq!(log.high_watermark(), 1);
        assert_eq!(log.flushed_offset(), 1);
        assert!(s.sync_count() > syncs, "made durable before being served");
        // Nothing unflushed: a read at the end does not fsync.
        let syncs = s.sync_count();
        assert!(log.read(1, 100).unwrap().records.is_empty());
        assert_eq!(s.sync_count(), syncs);
    }

    #[test]
    fn replicated_high_watermark_moves_only_when_told_and_never_past_durable_data() {
        let s = SimStorage::new();
        let log = PartitionLog::open("/p".into(), opts(Arc::new(s), true)).unwrap();
        log.set_high_watermark_mode(HighWatermarkMode::Replicated);
        let a = log.append(&batch(&[b"a", b"b"], 1)).unwrap();
        log.flush_to(a.last_offset).unwrap();
        assert_eq!(log.flushed_offset(), 2);
        assert_eq!(log.high_watermark(), 0, "a local flush no longer moves it");
        // A consumer read at the end triggers no flush and sees nothing above the watermark.
        log.append(&batch(&[b"c"], 2)).unwrap();
        assert!(log.read(0, 1 << 20).unwrap().records.is_empty());
        assert_eq!(log.flushed_offset(), 2);
        // A follower's read goes to the log end.
        let rr = log.read_up_to(0, 1 << 20, ReadLimit::LogEnd).unwrap();
        assert_eq!(
            values(&rr).iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(rr.high_watermark, 0);
        // The replica layer moves it, capped at this replica's durable end; never back.
        log.update_high_watermark(3);
        assert_eq!(log.high_watermark(), 2, "offset 2 is not durable here yet");
        log.update_high_watermark(1);
        assert_eq!(log.high_watermark(), 2);
        assert_eq!(values(&log.read(0, 1 << 20).unwrap()).len(), 2);
        // A follower replica refuses local (leader) appends.
        log.set_leader_appends(false);
        assert!(matches!(
            log.append(&batch(&[b"d"], 3)),
            Err(LogError::NotLeader { .. })
        ));
        log.set_leader_appends(true);
        // Back to Local: the flush policy moves it again.
        log.flush().unwrap();
        log.set_high_watermark_mode(HighWatermarkMode::Local);
        assert_eq!(log.high_watermark(), 3);
    }

    #[test]
    fn a_replicated_high_watermark_starts_at_the_log_start() {
        let s = SimStorage::new();
        let log = PartitionLog::open("/p".into(), opts(Arc::new(s.clone()), true)).unwrap();
        for (i, v) in [b"a", b"b", b"c"].iter().enumerate() {
            log.append(&batch(&[*v], i as i64)).unwrap();
        }
        log.flush().unwrap();
        drop(log);
        // Reopened (a restart): alone, everything durable is readable ...
        let log = PartitionLog::open("/p".into(), opts(Arc::new(s), true)).unwrap();
        assert_eq!(log.high_watermark(), 3);
        // ... as a replica nothing is, until replication says what is committed.
        log.set_high_watermark_mode(HighWatermarkMode::Replicated);
        assert_eq!(log.high_watermark(), 0);
        assert!(log.read(0, 1 << 20).unwrap().records.is_empty());
        log.update_high_watermark(2);
        assert_eq!(values(&log.read(0, 1 << 20).unwrap()).len(), 2);
        // Switching again while replicated changes nothing.
        log.set_high_watermark_mode(HighWatermarkMode::Replicated);
        assert_eq!(log.high_watermark(), 2);
    }

    #[test]
    fn reads_run_concurrently_with_appends() {
        let s = SimStorage::new();
        let mut o = opts(Arc::new(s), true);
        o.config.segment_bytes = 2000; // rolls while the reader runs
        o.config.index_interval_bytes = 128;
        let log = Arc::new(PartitionLog::open("/p".into(), o).unwrap());
        log.set_cache_capacity(512); // mostly disk reads, some cache hits
        let writer = {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..400u32 {
                    let v = format!("v{i}");
                    let a = log.append(&batch(&[v.as_bytes()], i as i64)).unwrap();
                    log.flush_to(a.last_offset).unwrap();
                }
            })
        };
        let mut next = 0i64;
        while next < 400 {
            let rr = log.read(next, 300).unwrap();
            for (o, v) in values(&rr) {
                if o >= next {
                    assert_eq!(o, next);
                    assert_eq!(v, format!("v{o}").into_bytes());
                    next += 1;
                }
            }
            if rr.records.is_empty() {
                std::thread::yield_now();
            }
        }
        writer.join().unwrap();
    }

    #[test]
    fn interval_policy_hw_is_leo() {
        let s = SimStorage::new();
        let mut o = opts(Arc::new(s), false);
        o.flush = FlushPolicy::Interval { ms: 60_000 };
        let log = PartitionLog::open("/p".into(), o).unwrap();
        let mut rx = log.watch_high_watermark();
        log.append(&batch(&[b"x"], 1)).unwrap();
        assert_eq!(log.high_watermark(), 1);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 1);
        assert_eq!(values(&log.read(0, 100).unwrap()), vec![(0, b"x".to_vec())]);
    }

    /// A batch as a leader stored it: offsets from `base`, partition leader epoch `epoch`.
    fn leader_batch(values: &[&[u8]], ts: i64, base: i64, epoch: i32) -> Vec<u8> {
        let mut b = batch(values, ts);
        crate::batch::set_base_offset(&mut b, base);
        crate::batch::set_leader_epoch(&mut b, epoch);
        b
    }

    fn epochs_of(log: &PartitionLog) -> Vec<(i32, i64)> {
        log.epoch_entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn follower_append_keeps_the_leaders_offsets_and_epochs() {
        let s = SimStorage::new();
        let o = opts(Arc::new(s.clone()), true);
        let leader = PartitionLog::open("/leader".into(), o.clone()).unwrap();
        leader.append(&batch(&[b"a", b"b"], 10)).unwrap();
        leader.assign_epoch_start(2).unwrap();
        leader.append(&batch(&[b"secret-value"], 20)).unwrap();
        leader.assign_epoch_start(5).unwrap();
        leader.append(&batch(&[b"d", b"e", b"f"], 30)).unwrap();
        leader.flush().unwrap();
        assert_eq!(epochs_of(&leader), vec![(0, 0), (2, 2), (5, 3)]);
        let fetched = leader.read_up_to(0, 1 << 20, ReadLimit::LogEnd).unwrap();

        let follower = PartitionLog::open("/follower".into(), o.clone()).unwrap();
        follower.set_high_watermark_mode(HighWatermarkMode::Replicated);
        let info = follower.append_as_follower(&fetched.records).unwrap();
        assert_eq!((info.base_offset, info.last_offset), (0, 5));
        assert_eq!((info.record_count, info.max_timestamp), (6, 32));
        assert_eq!(follower.log_end_offset(), 6);
        assert_eq!(epochs_of(&follower), vec![(0, 0), (2, 2), (5, 3)]);
        assert_eq!(follower.leader_epoch(), 5);
        follower.flush().unwrap();
        assert_eq!(follower.high_watermark(), 0, "the replica layer moves it");
        let rr = follower.read_up_to(0, 1 << 20, ReadLimit::LogEnd).unwrap();
        assert_eq!(
            rr.records, fetched.records,
            "byte for byte the leader's batches"
        );
        assert_eq!(
            follower.offset_for_timestamp(25).unwrap(),
            None,
            "above the HW"
        );
        follower.update_high_watermark(6);
        assert_eq!(follower.offset_for_timestamp(25).unwrap(), Some((3, 30)));
        // Sealed at rest: no plaintext value on the simulated disk.
        for (path, data) in s.snapshot() {
            if path.starts_with("/follower") && path.extension().is_some_and(|e| e == "log") {
                assert!(!data.windows(12).any(|w| w == b"secret-value"));
            }
        }
        // Overlapping or going back is refused, nothing written.
        let again = leader_batch(&[b"x"], 40, 5, 5);
        assert!(matches!(
            follower.append_as_follower(&again),
            Err(LogError::UnexpectedOffset {
                expected: 6,
                got: 5
            })
        ));
        let two = [
            leader_batch(&[b"x"], 40, 6, 5),
            leader_batch(&[b"y"], 41, 6, 5),
        ]
        .concat();
        assert!(matches!(
            follower.append_as_follower(&two),
            Err(LogError::UnexpectedOffset {
                expected: 7,
                got: 6
            })
        ));
        assert_eq!(follower.log_end_offset(), 6);
        // A gap (compaction on the leader) is kept as sent; a bad CRC is refused.
        let mut bad = leader_batch(&[b"z"], 50, 6, 5);
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(
            follower.append_as_follower(&bad),
            Err(LogError::Batch(
                crate::batch::BatchError::CrcMismatch { .. }
            ))
        ));
        let gap = leader_batch(&[b"g"], 60, 9, 7);
        assert_eq!(follower.append_as_follower(&gap).unwrap().base_offset, 9);
        assert_eq!(follower.log_end_offset(), 10);
        assert_eq!(epochs_of(&follower), vec![(0, 0), (2, 2), (5, 3), (7, 9)]);
        follower.flush().unwrap();
        drop(follower);
        // Reopen: data, epochs and the stamped epoch come back.
        let follower = PartitionLog::open("/follower".into(), o).unwrap();
        assert_eq!(follower.log_end_offset(), 10);
        assert_eq!(epochs_of(&follower), vec![(0, 0), (2, 2), (5, 3), (7, 9)]);
        assert_eq!(follower.leader_epoch(), 7);
        follower.set_cache_capacity(0);
        let offsets: Vec<i64> = values(&follower.read(0, 1 << 20).unwrap())
            .iter()
            .map(|(o, _)| *o)
            .collect();
        assert_eq!(offsets, vec![0, 1, 2, 3, 4, 5, 9]);
    }

    #[test]
    fn follower_append_records_producers_without_refusing() {
        let s = SimStorage::new();
        let log = PartitionLog::open("/p".into(), opts(Arc::new(s), false)).unwrap();
        let idem = |seq: i32, base: i64| {
            let mut b = crate::batch::BatchBuilder::new().producer(7, 0, seq);
            b.push(None, Some(Bytes::from_static(b"v")), 1);
            let mut b = b.build().unwrap().to_vec();
            crate::batch::set_base_offset(&mut b, base);
            b
        };
        log.append_as_follower(&idem(0, 0)).unwrap();
        // A sequence gap a leader would refuse: the follower trusts its leader.
        log.append_as_follower(&idem(5, 1)).unwrap();
        let st = log.producer_state();
        let e = st.entry(7).unwrap();
        assert_eq!(e.batches.back().unwrap().first_seq, 5);
        assert_eq!(e.batches.back().unwrap().first_offset, 1);
    }

    #[test]
    fn epoch_cache_is_filled_by_appends_persisted_and_answers_kafkas_way() {
        let s = SimStorage::new();
        let o = opts(Arc::new(s.clone()), true);
        let log = PartitionLog::open("/p".into(), o.clone()).unwrap();
        assert_eq!(log.latest_epoch(), None);
        assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
        let ckpt = std::path::Path::new("/p").join(leader_epoch_cache::CHECKPOINT_FILE);
        assert_eq!(s.read_file(&ckpt).unwrap(), b"0\n0\n");
        let mut mqtt = batch(&[b"m"], 1);
        crate::batch::set_leader_epoch(&mut mqtt, -1);
        log.append(&mqtt).unwrap();
        log.append(&batch(&[b"a", b"b"], 2)).unwrap();
        assert_eq!(epochs_of(&log), vec![(0, 0)]);
        log.assign_epoch_start(3).unwrap();
        assert_eq!(log.leader_epoch(), 3);
        assert!(matches!(
            log.assign_epoch_start(2),
            Err(LogError::StaleLeaderEpoch {
                epoch: 2,
                current: 3
            })
        ));
        log.append(&batch(&[b"c"], 3)).unwrap();
        log.set_leader_epoch(4); // the stamped epoch alone: the entry comes with the next append
        log.append(&batch(&[b"d"], 4)).unwrap();
        assert_eq!(epochs_of(&log), vec![(0, 0), (3, 3), (4, 4)]);
        assert_eq!(s.read_file(&ckpt).unwrap(), b"0\n3\n0 0\n3 3\n4 4\n");
        assert_eq!(log.end_offset_for_epoch(0), (0, 3));
        assert_eq!(log.end_offset_for_epoch(2), (0, 3));
        assert_eq!(log.end_offset_for_epoch(3), (3, 4));
        assert_eq!(log.end_offset_for_epoch(4), (4, 5));
        assert_eq!(log.end_offset_for_epoch(9), (-1, -1));
        log.flush().unwrap();
        drop(log);
        // Missing: rebuilt from the batch headers (-1 counts as 0) and rewritten.
        s.remove(&ckpt).unwrap();
        let log = PartitionLog::open("/p".into(), o.clone()).unwrap();
        assert_eq!(epochs_of(&log), vec![(0, 0), (3, 3), (4, 4)]);
        assert_eq!(log.leader_epoch(), 4);
        drop(log);
        assert_eq!(s.read_file(&ckpt).unwrap(), b"0\n3\n0 0\n3 3\n4 4\n");
        // Unreadable: the same.
        s.write_file_atomic(&ckpt, b"0\n7\n0 0\n").unwrap();
        let log = PartitionLog::open("/p".into(), o.clone()).unwrap();
        assert_eq!(epochs_of(&log), vec![(0, 0), (3, 3), (4, 4)]);
        // An entry past the log end (its data never became durable) is cut on open; one at the
        // log end (a new leader's epoch before its first append) stays.
        drop(log);
        s.write_file_atomic(&ckpt, b"0\n4\n0 0\n3 3\n4 4\n6 6\n")
            .unwrap();
        let log = PartitionLog::open("/p".into(), o.clone()).unwrap();
        assert_eq!(epochs_of(&log), vec![(0, 0), (3, 3), (4, 4)]);
        assert_eq!(log.leader_epoch(), 4);
        log.assign_epoch_start(6).unwrap();
        drop(log);
        let log = PartitionLog::open("/p".into(), o).unwrap();
        assert_eq!(epochs_of(&log), vec![(0, 0), (3, 3), (4, 4), (6, 5)]);
        assert_eq!(log.leader_epoch(), 6);
        // DeleteRecords moves the first entry to the new log start.
        log.delete_records_before(4).unwrap();
        assert_eq!(epochs_of(&log), vec![(4, 4), (6, 5)]);
        assert_eq!(log.end_offset_for_epoch(3), (3, 4));
    }

    #[test]
    fn segment_deletion_truncates_the_epoch_cache_from_the_start() {
        let s = SimStorage::new();
        let log = PartitionLog::open("/p".into(), opts(Arc::new(s), false)).unwrap();
        log.append(&batch(&[b"a"], 1)).unwrap();
        log.roll().unwrap();
        log.assign_epoch_start(1).unwrap();
        log.append(&batch(&[b"b"], 2)).unwrap();
        log.roll().unwrap();
        log.append(&batch(&[b"c"], 3)).unwrap();
        assert_eq!(epochs_of(&log), vec![(0, 0), (1, 1)]);
        let oldest = log.closed_segments()[0].clone();
        log.with_writer(|| log.remove_segment(&oldest)).unwrap();
        assert_eq!(log.log_start_offset(), 1);
        assert_eq!(epochs_of(&log), vec![(1, 1)]);
    }
}
