//! The bridge's live status: one entry per (mirror, source partition), updated by its mirror
//! task and read by `GET /bridge/status` (and so `rill bridge status`).
//!
//! Updates are cheap (one uncontended mutex per task); the lag is computed only when a report is
//! asked for, from the source log:
//!
//! - lag records: high watermark minus the next source offset to mirror (records the mirror has
//!   not processed yet, including ones its filters will skip). Until the task has reached the
//!   target once, where it continues is unknown and the log start is used;
//! - lag bytes: an estimate, lag records times the partition's average stored bytes per record
//!   (segment and index bytes on disk divided by the records they hold), so batch overhead and
//!   the log's compression are included;
//! - lag seconds: now minus the timestamp of the oldest unmirrored record (0 when caught up).
//!
//! Each entry also holds the offset syncs (source offset to target offset) that the checkpoint
//! task translates consumer group offsets with.

use rill_core::clock::now_ms;
use rill_core::sync::LockExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::records::{Record, RecordBatchDecoder};
use rill_core::log::PartitionLog;
use serde::{Deserialize, Serialize};

use crate::offset_sync::OffsetSyncs;
use crate::origin::{parse_origin, ORIGIN_HEADER};

/// What a mirror task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorState {
    /// Connecting to the target (metadata, topic creation).
    Connecting,
    /// Reading the target's tail to find where to continue.
    Resuming,
    /// Sending records.
    Mirroring,
    /// Everything up to the high watermark is mirrored; waiting for new records.
    CaughtUp,
    /// The last session failed; waiting before reconnecting.
    Backoff,
}

impl MirrorState {
    /// The state's name as shown in tables (`caught_up`, ...).
    pub fn name(self) -> &'static str {
        match self {
            MirrorState::Connecting => "connecting",
            MirrorState::Resuming => "resuming",
            MirrorState::Mirroring => "mirroring",
            MirrorState::CaughtUp => "caught_up",
            MirrorState::Backoff => "backoff",
        }
    }
}

/// One mirrored source partition as reported by `GET /bridge/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionReport {
    /// Index of the mirror in the configuration (after sorting by priority).
    pub mirror: usize,
    /// Target bootstrap servers.
    pub target: String,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Target topic.
    pub target_topic: String,
    /// Task state.
    pub state: MirrorState,
    /// Next source offset to mirror (None until the target was reached once).
    pub next_offset: Option<i64>,
    /// Source high watermark.
    pub high_watermark: i64,
    /// Source records not processed yet.
    pub lag_records: i64,
    /// Estimated bytes of those records (see the module documentation).
    pub lag_bytes: u64,
    /// Age in seconds of the oldest unmirrored record (0 when caught up).
    pub lag_seconds: f64,
    /// Records sent and acknowledged since the node started.
    pub records_mirrored: u64,
    /// Key and value bytes of those records.
    pub bytes_mirrored: u64,
    /// The last error (kept after recovery until the next one).
    pub last_error: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StatusReport {
    /// This node's name (the source alias).
    pub node: String,
    /// One entry per mirrored source partition.
    pub partitions: Vec<PartitionReport>,
}

#[derive(Debug)]
struct Mutable {
    state: MirrorState,
    next_offset: Option<i64>,
    last_error: Option<String>,
}

/// The status of one (mirror, source partition): a shared handle its task updates.
pub struct PartitionStatus {
    /// Index of the mirror.
    pub mirror: usize,
    /// Target bootstrap servers.
    pub target: String,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Target topic.
    pub target_topic: String,
    log: Option<Arc<PartitionLog>>,
    inner: Mutex<Mutable>,
    records_mirrored: AtomicU64,
    bytes_mirrored: AtomicU64,
    syncs: Mutex<OffsetSyncs>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock_unpoisoned()
}

impl PartitionStatus {
    /// Set the task's state.
    pub fn set_state(&self, state: MirrorState) {
        lock(&self.inner).state = state;
    }

    /// The session failed with `error`; the task backs off.
    pub fn failed(&self, error: &str) {
        let mut g = lock(&self.inner);
        g.state = MirrorState::Backoff;
        g.last_error = Some(error.to_string());
    }

    /// The task moved on to source offset `next` (state mirroring).
    pub fn advanced(&self, next: i64) {
        {
            let mut g = lock(&self.inner);
            g.next_offset = Some(next);
            g.state = MirrorState::Mirroring;
        }
        lock(&self.syncs).set_processed(next);
    }

    /// The next source offset, once known.
    pub fn next_offset(&self) -> Option<i64> {
        lock(&self.inner).next_offset
    }

    /// The current state.
    pub fn state(&self) -> MirrorState {
        lock(&self.inner).state
    }

    /// At resume: the last record from this source partition found in `target_partition` has
    /// source offset `source` and target offset `target`.
    pub fn seed(&self, target_partition: i32, source: i64, target: i64) {
        if target_partition == self.partition {
            lock(&self.syncs).record(source, target);
        }
    }

    /// `records` (each with a `rill.origin` header) were acknowledged by `target_partition`, the
    /// first at `base_offset`.
    pub fn produced(&self, target_partition: i32, base_offset: i64, records: &[Record]) {
        let bytes: usize = records
            .iter()
            .map(|r| {
                r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len())
            })
            .sum();
        self.records_mirrored
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.bytes_mirrored
            .fetch_add(bytes as u64, Ordering::Relaxed);
        // Offset syncs only where the partitions map one to one (a key-hashed target partition
        // mixes several source partitions, so a group's position there has no single source).
        if target_partition != self.partition || base_offset < 0 {
            return;
        }
        let mut syncs = lock(&self.syncs);
        for (i, r) in records.iter().enumerate() {
            let source = r
                .headers
                .iter()
                .find(|(k, _)| k.as_str() == ORIGIN_HEADER)
                .and_then(|(_, v)| v.as_deref())
                .and_then(parse_origin)
                .map(|o| o.3);
            if let Some(s) = source {
                syncs.record(s, base_offset + i as i64);
            }
        }
    }

    /// Translate a committed source offset (see [`OffsetSyncs::translate`]).
    pub fn translate(&self, committed: i64) -> Option<i64> {
        lock(&self.syncs).translate(committed)
    }

    /// The oldest known (source, target) offset sync.
    pub fn first_sync(&self) -> Option<(i64, i64)> {
        lock(&self.syncs).first()
    }

    /// This partition's report, with the lag computed from the source log now.
    pub fn report(&self) -> PartitionReport {
        let (state, next, last_error) = {
            let g = lock(&self.inner);
            (g.state, g.next_offset, g.last_error.clone())
        };
        let (hw, lag_records, lag_bytes, lag_seconds) = match &self.log {
            Some(log) => lag_of(log, next),
            None => (0, 0, 0, 0.0),
        };
        PartitionReport {
            mirror: self.mirror,
            target: self.target.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            target_topic: self.target_topic.clone(),
            state,
            next_offset: next,
            high_watermark: hw,
            lag_records,
            lag_bytes,
            lag_seconds,
            records_mirrored: self.records_mirrored.load(Ordering::Relaxed),
            bytes_mirrored: self.bytes_mirrored.load(Ordering::Relaxed),
            last_error,
        }
    }
}

/// (high watermark, lag records, lag bytes, lag seconds) of a log for a mirror at `next`.
fn lag_of(log: &PartitionLog, next: Option<i64>) -> (i64, i64, u64, f64) {
    let hw = log.high_watermark();
    let start = log.log_start_offset();
    let from = next.unwrap_or(start).max(start);
    let lag = (hw - from).max(0);
    if lag == 0 {
        return (hw, 0, 0, 0.0);
    }
    let span = (log.log_end_offset() - start).max(1) as u64;
    let lag_bytes = (log.size_bytes() as f64 / span as f64 * lag as f64) as u64;
    let mut seconds = 0.0;
    if let Ok(rr) = log.read(from, 1) {
        let mut buf = rr.records;
        if let Ok(sets) = RecordBatchDecoder::decode_all(&mut buf) {
            let ts = sets
                .iter()
                .flat_map(|s| s.records.iter())
                .find(|r| r.offset >= from)
                .map(|r| r.timestamp);
            if let Some(ts) = ts {
                seconds = ((now_ms() - ts).max(0)) as f64 / 1000.0;
            }
        }
    }
    (hw, lag, lag_bytes, seconds)
}

/// The registry of every mirror task's status (cheap to clone through an `Arc`).
#[derive(Default)]
pub struct BridgeStatus {
    node: Mutex<String>,
    entries: Mutex<Vec<Arc<PartitionStatus>>>,
}

impl BridgeStatus {
    /// An empty registry.
    pub fn new() -> Arc<BridgeStatus> {
        Arc::new(BridgeStatus::default())
    }

    /// Set the node name shown in reports.
    pub fn set_node(&self, node: &str) {
        *lock(&self.node) = node.to_string();
    }

    /// Register a mirror task; its state starts as connecting.
    pub fn register(
        &self,
        mirror: usize,
        target: &str,
        topic: &str,
        partition: i32,
        target_topic: &str,
        log: Option<Arc<PartitionLog>>,
    ) -> Arc<PartitionStatus> {
        let entry = Arc::new(PartitionStatus {
            mirror,
            target: target.to_string(),
            topic: topic.to_string(),
            partition,
            target_topic: target_topic.to_string(),
            log,
            inner: Mutex::new(Mutable {
                state: MirrorState::Connecting,
                next_offset: None,
                last_error: None,
            }),
            records_mirrored: AtomicU64::new(0),
            bytes_mirrored: AtomicU64::new(0),
            syncs: Mutex::new(OffsetSyncs::default()),
        });
        lock(&self.entries).push(entry.clone());
        entry
    }

    /// Every registered task.
    pub fn entries(&self) -> Vec<Arc<PartitionStatus>> {
        lock(&self.entries).clone()
    }

    /// The task of `mirror` for a source partition, if any.
    pub fn find(&self, mirror: usize, topic: &str, partition: i32) -> Option<Arc<PartitionStatus>> {
        lock(&self.entries)
            .iter()
            .find(|e| e.mirror == mirror && e.topic == topic && e.partition == partition)
            .cloned()
    }

    /// The report of every task, sorted by mirror, topic and partition.
    pub fn report(&self) -> StatusReport {
        let mut partitions: Vec<PartitionReport> =
            self.entries().iter().map(|e| e.report()).collect();
        partitions.sort_by(|a, b| {
            (a.mirror, &a.topic, a.partition).cmp(&(b.mirror, &b.topic, b.partition))
        });
        StatusReport {
            node: lock(&self.node).clone(),
            partitions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rill_core::batch::BatchBuilder;
    use rill_core::broker::{Broker, BrokerConfig, KeySource};

    const KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    fn origin_record(offset: i64) -> Record {
        let headers = vec![(
            kafka_protocol::protocol::StrBytes::from_static_str(ORIGIN_HEADER),
            Some(Bytes::from(crate::origin::origin_value(
                "n", "t", 0, offset,
            ))),
        )];
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: kafka_protocol::records::TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 0,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"value")),
            headers,
        }
    }

    #[test]
    fn lag_from_the_log_and_syncs_from_produce_responses() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(
            dir.path().join("data"),
            KeySource::Env(KEY.into()),
        ))
        .unwrap();
        broker
            .create_topic("t", 1, &Default::default(), false)
            .unwrap();
        let log = broker.partition("t", 0).unwrap();
        let ts0 = now_ms() - 60_000;
        for i in 0..10 {
            let mut b = BatchBuilder::new();
            b.push(None, Some(Bytes::from(format!("v{i}"))), ts0 + i * 1000);
            log.append(&b.build().unwrap()).unwrap();
        }
        log.flush().unwrap();
        let reg = BridgeStatus::new();
        reg.set_node("n");
        let e = reg.register(0, "c:9092", "t", 0, "n.t", Some(log.clone()));
        // Unknown resume point: the whole log is lag.
        let r = reg.report();
        assert_eq!(r.node, "n");
        let p = &r.partitions[0];
        assert_eq!((p.state, p.next_offset), (MirrorState::Connecting, None));
        assert_eq!((p.high_watermark, p.lag_records), (10, 10));
        assert!(p.lag_bytes > 0);
        assert!(
            p.lag_seconds >= 59.0 && p.lag_seconds < 600.0,
            "{}",
            p.lag_seconds
        );
        // Records 0..4 mirrored to target offsets 100..104.
        let recs: Vec<Record> = (0..4).map(origin_record).collect();
        e.produced(0, 100, &recs);
        e.advanced(4);
        let p = e.report();
        assert_eq!(
            (p.state, p.lag_records, p.records_mirrored),
            (MirrorState::Mirroring, 6, 4)
        );
        assert_eq!(p.bytes_mirrored, 4 * 6);
        assert!(
            p.lag_seconds >= 55.0 && p.lag_seconds < 600.0,
            "{}",
            p.lag_seconds
        );
        assert_eq!(e.translate(2), Some(102));
        assert_eq!(e.translate(4), Some(104));
        assert_eq!(e.translate(5), None);
        // A key-hashed target partition gives no syncs.
        e.produced(1, 0, &[origin_record(4)]);
        assert_eq!(e.translate(5), None);
        e.advanced(10);
        e.set_state(MirrorState::CaughtUp);
        let p = e.report();
        assert_eq!((p.lag_records, p.lag_bytes, p.lag_seconds), (0, 0, 0.0));
        e.failed("connection refused");
        let json = serde_json::to_string(&reg.report()).unwrap();
        let back: StatusReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.partitions[0].state, MirrorState::Backoff);
        assert_eq!(
            back.partitions[0].last_error.as_deref(),
            Some("connection refused")
        );
        broker.shutdown().unwrap();
    }
}
