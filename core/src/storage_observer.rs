//! The storage engine's instrumentation seam: [`StorageObserver`] is told about fsyncs (group
//! commits), bytes written, retention deletions and cleaner passes as they happen. Core has no
//! metrics library; the gateway implements the trait with Prometheus histograms and counters
//! (Kafka's `LogFlushStats` and the log cleaner / retention meters). Every method has an empty
//! default body, so [`NoObserver`] (the default) costs a virtual call and nothing else.

use std::sync::Arc;
use std::time::Duration;

/// What the storage engine reports while it works. Called on the thread doing the work (an
/// appender holding the flush lock, the maintenance thread): implementations must be cheap and
/// must not block.
pub trait StorageObserver: Send + Sync + std::fmt::Debug {
    /// One fsync of a partition's active segment finished (a group commit under
    /// `FlushPolicy::Always`, an interval flush otherwise): how long it took and how many batches
    /// it made durable (0 when nothing new was written).
    fn flushed(&self, _topic: &str, _partition: i32, _elapsed: Duration, _batches: u64) {}
    /// Bytes written to segment files (stored size, after encryption) by an append.
    fn written(&self, _bytes: u64) {}
    /// Retention (time, size or the node's disk budget) deleted `segments` segments of `bytes`.
    fn retention_deleted(&self, _segments: u64, _bytes: u64) {}
    /// A cleaner (compaction) pass ran over one partition and shrank its segments by `bytes`.
    fn cleaned(&self, _bytes_reclaimed: u64) {}
}

/// The observer that ignores everything (the default of `BrokerConfig` and `LogOptions`).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl StorageObserver for NoObserver {}

/// A shared [`NoObserver`].
pub fn none() -> Arc<dyn StorageObserver> {
    Arc::new(NoObserver)
}
