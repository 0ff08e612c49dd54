//! The partition log: an ordered set of segments, offsets, high watermark, recovery, flushing.
//!
//! CONTRACT (signatures are fixed; bodies are being implemented).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use crate::crypto::Encryption;
use crate::io::Storage;
use crate::topic_config::TopicConfig;

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
}

/// One partition's log.
pub struct PartitionLog {}

impl PartitionLog {
    /// Open (recovering the tail) or create the log in `dir`. Opening for writing always starts a
    /// new active segment with a fresh data key.
    pub fn open(_dir: PathBuf, _opts: LogOptions) -> Result<PartitionLog, LogError> {
        todo!()
    }
    /// Validate `records` (one or more v2 batches), assign offsets, write them. Not yet durable:
    /// call [`PartitionLog::flush_to`] before acknowledging.
    pub fn append(&self, _records: &[u8], _leader_epoch: i32) -> Result<AppendInfo, LogError> {
        todo!()
    }
    /// Block until everything up to and including `offset` is durable under the flush policy
    /// (group commit). Returns at once under `FlushPolicy::Interval`.
    pub fn flush_to(&self, _offset: i64) -> Result<(), LogError> {
        todo!()
    }
    /// fsync everything written so far (used by the interval flusher and at shutdown).
    pub fn flush(&self) -> Result<(), LogError> {
        todo!()
    }
    /// Whole batches starting with the one containing `from_offset`, up to `max_bytes` (at least
    /// one batch if any exists at `from_offset`, as Kafka does).
    pub fn read(&self, _from_offset: i64, _max_bytes: usize) -> Result<ReadResult, LogError> {
        todo!()
    }
    /// Earliest offset whose batch max timestamp is >= `timestamp`, with that timestamp.
    pub fn offset_for_timestamp(&self, _timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        todo!()
    }
    /// (offset, timestamp) of the record with the largest timestamp (ListOffsets MAX_TIMESTAMP).
    pub fn max_timestamp_offset(&self) -> Option<(i64, i64)> {
        todo!()
    }
    pub fn log_start_offset(&self) -> i64 {
        todo!()
    }
    pub fn log_end_offset(&self) -> i64 {
        todo!()
    }
    pub fn high_watermark(&self) -> i64 {
        todo!()
    }
    /// A receiver that changes whenever the high watermark moves (Fetch long polls wait on it).
    pub fn watch_high_watermark(&self) -> tokio::sync::watch::Receiver<i64> {
        todo!()
    }
    /// DeleteRecords: advance the log start offset to `offset` (deleting whole segments below it).
    pub fn delete_records_before(&self, _offset: i64) -> Result<i64, LogError> {
        todo!()
    }
    /// Apply a changed topic config (retention, segment size, ...).
    pub fn set_config(&self, _config: TopicConfig) {
        todo!()
    }
    /// Total bytes on disk of this log's segments.
    pub fn size_bytes(&self) -> u64 {
        todo!()
    }
    /// Flush and close; further calls return [`LogError::Closed`].
    pub fn close(&self) -> Result<(), LogError> {
        todo!()
    }
}
