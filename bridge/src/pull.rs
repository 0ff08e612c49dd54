//! A pull session: one remote partition fetched from its leader (read_committed) and appended to
//! the local topic through the same log path as local producers (append, then the group-commit
//! flush), so MQTT subscribers and Kafka consumers see the records once they are durable. Each
//! record keeps key, value, headers and timestamp and gets a `rill.origin` header
//! `remote_alias/topic/partition/offset`.
//!
//! Exactly once: the resume position of a remote partition is taken from the local log itself
//! (the last local record whose `rill.origin` names this alias, topic and partition, found by
//! [`crate::origin::find_last_origin`]), read in-process on every (re)start, so a crash of either
//! side at any point neither loses nor duplicates a record.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::AbortedTransaction;

use kafka_protocol::records::{Record, RecordBatchDecoder};
use rill_client::{Client, ClientError, PartitionFetch};
use rill_core::batch::{BatchBuilder, BatchError, BatchHeader, Batches, Headers};
use rill_core::broker::{Broker, BrokerError};
use rill_core::log::{LogError, PartitionLog};
use tokio_util::sync::CancellationToken;

use crate::mirror::{target_partition, Mirror};
use crate::origin::{find_last_origin, origin_of, origin_value, set_origin, RecordSource};
use crate::supervisor::supervise;

/// How long a Fetch waits at the remote for new records.
const FETCH_WAIT_MS: i32 = 500;
const FETCH_BYTES: i32 = 4 << 20;
/// Uncompressed bytes per local batch (well under the default `max.message.bytes`).
const LOCAL_BATCH_BYTES: usize = 256 << 10;

/// Errors of a pull session (the session is restarted after a backoff).
#[derive(Debug, thiserror::Error)]
pub enum DownstreamError {
    /// Talking to the remote cluster failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The remote cluster answered with an error or something unusable.
    #[error("remote: {0}")]
    Remote(String),
    /// Reading or writing the local log failed.
    #[error("local log: {0}")]
    Local(String),
    /// The bridge is shutting down.
    #[error("shutting down")]
    Stopped,
}

impl From<LogError> for DownstreamError {
    fn from(e: LogError) -> Self {
        DownstreamError::Local(e.to_string())
    }
}

impl From<BrokerError> for DownstreamError {
    fn from(e: BrokerError) -> Self {
        DownstreamError::Local(e.to_string())
    }
}

/// Run `f` unless the bridge shuts down first.
pub(crate) async fn until_stop<T>(
    shutdown: &CancellationToken,
    f: impl Future<Output = Result<T, DownstreamError>>,
) -> Result<T, DownstreamError> {
    tokio::select! {
        _ = shutdown.cancelled() => Err(DownstreamError::Stopped),
        r = f => r,
    }
}

/// The remote offset carried by the last local record in `log` whose `rill.origin` header
/// names `alias`/`topic`/`partition` (None: no such record), found by the resume scan
/// ([`find_last_origin`]) from the high watermark down.
pub async fn last_pulled(
    log: &Arc<PartitionLog>,
    alias: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, LogError> {
    let (start, end) = (log.log_start_offset(), log.high_watermark());
    let mut local = LocalPartition(log.clone());
    let found = find_last_origin(&mut local, start, end, alias, topic, partition).await?;
    Ok(found.map(|f| f.source_offset))
}

/// A local partition read by the resume scan (each window read on a blocking thread).
struct LocalPartition(Arc<PartitionLog>);

impl RecordSource for LocalPartition {
    type Error = LogError;

    async fn records(&mut self, from: i64, to: i64) -> Result<Vec<Record>, LogError> {
        let log = self.0.clone();
        tokio::task::spawn_blocking(move || loop {
            let from = from.max(log.log_start_offset());
            match read_range(&log, from, to) {
                // Retention removed the start while scanning: read what is left.
                Err(LogError::OffsetOutOfRange { .. }) if log.log_start_offset() > from => {}
                r => return r,
            }
        })
        .await
        .map_err(|e| LogError::Corrupt {
            file: self.0.dir().to_path_buf(),
            position: 0,
            reason: format!("resume scan task failed: {e}"),
        })?
    }
}

/// The records of `log` with offsets in `[from, end)`.
fn read_range(log: &PartitionLog, from: i64, end: i64) -> Result<Vec<Record>, LogError> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < end {
        let rr = log.read(pos, 1 << 20)?;
        if rr.records.is_empty() {
            break;
        }
        let mut next = pos;
        let batches = whole_batches(&rr.records).map_err(|e| LogError::Corrupt {
            file: log.dir().to_path_buf(),
            position: 0,
            reason: e.to_string(),
        })?;
        for (slice, h) in batches {
            next = next.max(h.last_offset() + 1);
            let mut buf = slice;
            let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| LogError::Corrupt {
                file: log.dir().to_path_buf(),
                position: 0,
                reason: format!("undecodable batch at {}: {e}", h.base_offset),
            })?;
            for s in sets {
                out.extend(
                    s.records
                        .into_iter()
                        .filter(|r| r.offset >= pos && r.offset < end),
                );
            }
        }
        if next <= pos {
            break;
        }
        pos = next;
    }
    Ok(out)
}

/// The complete v2 batches at the start of `buf` with their headers ([`Batches`]: a Kafka broker
/// may end a Fetch response with a partial batch; it is left for the next fetch). A header that
/// is complete but invalid (e.g. an old message format) is an error.
fn whole_batches(buf: &Bytes) -> Result<Vec<(Bytes, BatchHeader)>, BatchError> {
    Batches::new(buf)
        .map(|b| b.map(|b| (buf.slice_ref(b.bytes), b.header)))
        .collect()
}

/// read_committed for a client: records of aborted transactions (the Fetch response's
/// `aborted_transactions`) and control records are dropped, as Kafka's consumer does.
struct AbortedFilter {
    /// (first offset, producer id), latest first (popped from the end).
    pending: Vec<(i64, i64)>,
    active: HashSet<i64>,
}

impl AbortedFilter {
    fn new(aborted: Option<&Vec<AbortedTransaction>>) -> AbortedFilter {
        let mut pending: Vec<(i64, i64)> = aborted
            .map(|a| {
                a.iter()
                    .map(|t| (t.first_offset, t.producer_id.0))
                    .collect()
            })
            .unwrap_or_default();
        pending.sort_unstable_by(|a, b| b.cmp(a));
        AbortedFilter {
            pending,
            active: HashSet::new(),
        }
    }

    /// Whether `r` (visited in offset order) is dropped.
    fn drops(&mut self, r: &Record) -> bool {
        while let Some(&(first, pid)) = self.pending.last() {
            if first > r.offset {
                break;
            }
            self.active.insert(pid);
            self.pending.pop();
        }
        if r.control {
            // Control record key: version (i16), type (i16; 0 = ABORT, 1 = COMMIT).
            let abort = r
                .key
                .as_ref()
                .is_some_and(|k| k.len() >= 4 && k[2..4] == [0, 0]);
            if abort {
                self.active.remove(&r.producer_id);
            }
            return true;
        }
        r.transactional && self.active.contains(&r.producer_id)
    }
}

/// One remote partition pulled into the local topic.
pub(crate) struct PartitionPull {
    pub(crate) broker: Arc<Broker>,
    pub(crate) node: String,
    pub(crate) mirror: Arc<Mirror>,
    pub(crate) alias: String,
    pub(crate) remote_topic: String,
    pub(crate) partition: i32,
    pub(crate) local_topic: String,
    pub(crate) shutdown: CancellationToken,
}

/// Local batches being built for one local partition.
#[derive(Default)]
struct Pending {
    batches: Vec<Bytes>,
    current: Option<BatchBuilder>,
    bytes: usize,
    /// Remote offset of the last record added.
    last: i64,
}

impl Pending {
    fn push(&mut self, r: Record, headers: Headers) -> Result<(), DownstreamError> {
        let size = r.key.as_ref().map_or(0, |k| k.len())
            + r.value.as_ref().map_or(0, |v| v.len())
            + headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()))
                .sum::<usize>();
        if self.bytes + size > LOCAL_BATCH_BYTES {
            self.cut()?;
        }
        self.bytes += size;
        self.last = r.offset;
        self.current
            .get_or_insert_with(BatchBuilder::new)
            .push_with_headers(r.key, r.value, r.timestamp, headers);
        Ok(())
    }

    fn cut(&mut self) -> Result<(), DownstreamError> {
        if let Some(b) = self.current.take() {
            if !b.is_empty() {
                self.batches.push(
                    b.build()
                        .map_err(|e| DownstreamError::Local(format!("encode: {e}")))?,
                );
            }
        }
        self.bytes = 0;
        Ok(())
    }
}

impl PartitionPull {
    /// Run sessions until shutdown.
    pub(crate) async fn run(self) {
        supervise(
            &self.shutdown,
            || self.session(),
            |e: &DownstreamError, backoff| {
                if matches!(e, DownstreamError::Stopped) {
                    return false;
                }
                tracing::warn!(topic = %self.remote_topic, partition = self.partition,
                remote = %self.mirror.config.target, error = %e,
                backoff_ms = backoff.as_millis() as u64, "pull session failed; reconnecting");
                true
            },
        )
        .await
    }

    /// Resume positions: per local partition this remote partition writes to, the last remote
    /// offset it holds (-1: none).
    async fn resume(&self) -> Result<HashMap<i32, i64>, DownstreamError> {
        let meta = self.broker.topic(&self.local_topic).ok_or_else(|| {
            DownstreamError::Local(format!("local topic {} is gone", self.local_topic))
        })?;
        let n = meta.partitions;
        let targets: Vec<i32> = if self.partition < n {
            vec![self.partition]
        } else {
            (0..n).collect()
        };
        let mut logs = Vec::new();
        for t in targets {
            logs.push((t, self.broker.partition(&self.local_topic, t)?));
        }
        let (alias, topic, p) = (
            self.alias.clone(),
            self.remote_topic.clone(),
            self.partition,
        );
        let mut done = HashMap::new();
        for (t, log) in logs {
            // Make an earlier session's appends durable and visible (high watermark) before
            // looking for them, should its flush have failed.
            let flushed = log.clone();
            tokio::task::spawn_blocking(move || flushed.flush_to(flushed.log_end_offset() - 1))
                .await
                .map_err(|e| DownstreamError::Local(e.to_string()))??;
            done.insert(t, last_pulled(&log, &alias, &topic, p).await?.unwrap_or(-1));
        }
        Ok(done)
    }

    async fn session(&self) -> Result<(), DownstreamError> {
        let mut done = self.resume().await?;
        let n = self
            .broker
            .topic(&self.local_topic)
            .map(|t| t.partitions)
            .unwrap_or(1);
        let mut pos = done.values().copied().min().unwrap_or(-1) + 1;
        let mut client = self.mirror.client()?;
        tracing::info!(topic = %self.remote_topic, partition = self.partition,
            local = %self.local_topic, from = pos, "pulling");
        // Under a bandwidth cap, fetch about a quarter second's worth at a time.
        let cap = self.mirror.config.bandwidth_bytes_per_sec;
        let mut caught_up = false;
        let fetch_bytes = match cap {
            0 => FETCH_BYTES,
            c => (c / 4).clamp(1024, FETCH_BYTES as u64) as i32,
        };
        loop {
            let fetch = PartitionFetch {
                topic: &self.remote_topic,
                partition: self.partition,
                offset: pos,
                max_bytes: fetch_bytes,
                max_wait_ms: FETCH_WAIT_MS,
                min_bytes: 1,
                isolation_level: 1,
            };
            let part =
                until_stop(&self.shutdown, async { Ok(client.fetch(&fetch).await?) }).await?;
            match part.error {
                None => {}
                Some(ResponseError::OffsetOutOfRange) => {
                    pos = self.out_of_range(&mut client, pos).await?;
                    continue;
                }
                Some(code) => {
                    return Err(ClientError::Kafka {
                        context: format!("fetch {}[{}]", self.remote_topic, self.partition),
                        code,
                        message: None,
                    }
                    .into())
                }
            }
            // read_committed: the end is the last stable offset.
            let end = if part.last_stable_offset >= 0 {
                part.last_stable_offset
            } else {
                part.high_watermark
            };
            let data = part.records.clone();
            let batches = whole_batches(&data)
                .map_err(|e| DownstreamError::Remote(format!("records at {pos}: {e}")))?;
            if batches.is_empty() {
                if !data.is_empty() {
                    // Kafka returns at least one whole batch at the fetch position (KIP-74);
                    // refetching would only spin.
                    return Err(DownstreamError::Remote(format!(
                        "incomplete record batch at {pos} ({} bytes)",
                        data.len()
                    )));
                }
                self.note_caught_up(&mut caught_up, pos, end);
                continue;
            }
            caught_up = false;
            let mut filter = AbortedFilter::new(part.aborted_transactions.as_ref());
            let mut pending: BTreeMap<i32, Pending> = BTreeMap::new();
            let mut next = pos;
            let mut bytes_in = 0usize;
            for (slice, h) in batches {
                next = next.max(h.last_offset() + 1);
                let mut buf = slice;
                let sets = RecordBatchDecoder::decode_all(&mut buf)
                    .map_err(|e| DownstreamError::Remote(format!("decode: {e}")))?;
                for s in sets {
                    for r in s.records {
                        // The filter sees every record in order (transaction markers).
                        if filter.drops(&r) || r.offset < pos || !self.mirror.passes(&r) {
                            continue;
                        }
                        // Records that came from this node are never brought back (no cycles).
                        if origin_of(&r).is_some_and(|o| o.0 == self.node) {
                            continue;
                        }
                        let t = target_partition(self.partition, n, r.key.as_deref());
                        if done.get(&t).copied().unwrap_or(-1) >= r.offset {
                            continue;
                        }
                        let mut headers = r.headers.clone();
                        set_origin(
                            &mut headers,
                            origin_value(&self.alias, &self.remote_topic, self.partition, r.offset),
                        );
                        bytes_in += r.key.as_ref().map_or(0, |k| k.len())
                            + r.value.as_ref().map_or(0, |v| v.len());
                        pending.entry(t).or_default().push(r, headers)?;
                    }
                }
            }
            for (t, mut p) in pending {
                p.cut()?;
                self.append(t, p.batches).await?;
                done.insert(t, p.last);
            }
            pos = next;
            self.note_caught_up(&mut caught_up, pos, end);
            if cap > 0 && bytes_in > 0 {
                let secs = bytes_in as f64 / cap as f64;
                until_stop(&self.shutdown, async {
                    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                    Ok(())
                })
                .await?;
            }
        }
    }

    /// Log once each time the pull reaches the remote end (`end`).
    fn note_caught_up(&self, caught_up: &mut bool, pos: i64, end: i64) {
        if !*caught_up && pos >= end {
            *caught_up = true;
            tracing::info!(topic = %self.remote_topic, partition = self.partition,
                local = %self.local_topic, offset = pos, "pull caught up");
        }
    }

    /// Append batches to a local partition the way a producer's are appended (then the
    /// group-commit flush, so MQTT subscribers and consumers see them once durable). Not
    /// cancelled by shutdown: the node closes its logs only after the bridge has stopped.
    async fn append(&self, partition: i32, batches: Vec<Bytes>) -> Result<(), DownstreamError> {
        if batches.is_empty() {
            return Ok(());
        }
        let log = self.broker.partition(&self.local_topic, partition)?;
        tokio::task::spawn_blocking(move || {
            let mut last = -1;
            for b in &batches {
                last = log.append(b)?.last_offset;
            }
            log.flush_to(last)?;
            Ok(())
        })
        .await
        .map_err(|e| DownstreamError::Local(e.to_string()))?
    }

    /// Where to continue after OFFSET_OUT_OF_RANGE at `pos`: the remote log start when
    /// retention removed records before they were pulled (with a warning), the remote log end
    /// when the remote partition is now shorter than what was pulled (truncated or recreated).
    async fn out_of_range(&self, client: &mut Client, pos: i64) -> Result<i64, DownstreamError> {
        let start = self.list_offset(client, -2).await?;
        let end = self.list_offset(client, -1).await?;
        if pos < start {
            tracing::warn!(topic = %self.remote_topic, partition = self.partition, from = pos,
                remote_log_start = start,
                "remote retention removed records before they were pulled; skipping to the remote log start");
            Ok(start)
        } else if pos > end {
            tracing::warn!(topic = %self.remote_topic, partition = self.partition, from = pos,
                remote_log_end = end,
                "the remote partition is shorter than what was pulled (truncated or recreated); continuing at its end");
            Ok(end)
        } else {
            Ok(pos)
        }
    }

    async fn list_offset(&self, client: &mut Client, ts: i64) -> Result<i64, DownstreamError> {
        until_stop(&self.shutdown, async {
            Ok(client
                .list_offset(&self.remote_topic, self.partition, ts, 1)
                .await?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ProducerId;
    use kafka_protocol::records::TimestampType;
    use rill_core::broker::{BrokerConfig, KeySource};

    const KEY: &str = "0001020304050607080910111213141516171819202122232425262728293031";

    fn open(dir: &std::path::Path) -> Arc<Broker> {
        Broker::open(BrokerConfig::new(
            dir.join("data"),
            KeySource::Env(KEY.into()),
        ))
        .unwrap()
    }

    /// Append `count` records to `log` in one batch, with an origin header when `origin` is
    /// `Some((alias, topic, partition, first_remote_offset))`.
    fn append(log: &PartitionLog, count: i64, origin: Option<(&str, &str, i32, i64)>) {
        let mut b = BatchBuilder::new();
        for i in 0..count {
            let mut h = Headers::new();
            if let Some((a, t, p, o)) = origin {
                set_origin(&mut h, origin_value(a, t, p, o + i));
            }
            b.push_with_headers(None, Some(Bytes::from(format!("v{i}"))), 1000 + i, h);
        }
        let info = log.append(&b.build().unwrap()).unwrap();
        log.flush_to(info.last_offset).unwrap();
    }

    #[tokio::test]
    async fn resume_position_is_the_last_pulled_record_of_that_remote_partition() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open(dir.path());
        broker
            .create_topic("commands", 2, &BTreeMap::new(), false)
            .unwrap();
        let log = broker.partition("commands", 0).unwrap();
        // Nothing pulled yet (empty log, then only local records).
        assert_eq!(
            last_pulled(&log, "central", "commands", 0).await.unwrap(),
            None
        );
        append(&log, 3, None);
        assert_eq!(
            last_pulled(&log, "central", "commands", 0).await.unwrap(),
            None
        );
        // Remote partition 0 offsets 10..15, interleaved with remote partition 1 (key-hash
        // mapping), another alias, and local records.
        append(&log, 5, Some(("central", "commands", 0, 10)));
        append(&log, 4, Some(("central", "commands", 1, 0)));
        append(&log, 2, Some(("hq", "commands", 0, 99)));
        assert_eq!(
            last_pulled(&log, "central", "commands", 0).await.unwrap(),
            Some(14)
        );
        assert_eq!(
            last_pulled(&log, "central", "commands", 1).await.unwrap(),
            Some(3)
        );
        assert_eq!(
            last_pulled(&log, "hq", "commands", 0).await.unwrap(),
            Some(100)
        );
        assert_eq!(
            last_pulled(&log, "central", "other", 0).await.unwrap(),
            None
        );
        // Many newer local records: the scan widens its window (1, 16, 256, 4096, ...).
        for _ in 0..30 {
            append(&log, 200, None);
        }
        assert_eq!(
            last_pulled(&log, "central", "commands", 0).await.unwrap(),
            Some(14)
        );
        assert_eq!(
            last_pulled(&log, "central", "commands", 1).await.unwrap(),
            Some(3)
        );
        // Continuing later: the newest pulled record wins.
        append(&log, 1, Some(("central", "commands", 0, 15)));
        assert_eq!(
            last_pulled(&log, "central", "commands", 0).await.unwrap(),
            Some(15)
        );
        // Survives a restart (read from the log itself, no checkpoint).
        drop(log);
        broker.shutdown().unwrap();
        drop(broker);
        let broker = open(dir.path());
        let log = broker.partition("commands", 0).unwrap();
        assert_eq!(
            last_pulled(&log, "central", "commands", 0).await.unwrap(),
            Some(15)
        );
        let other = broker.partition("commands", 1).unwrap();
        assert_eq!(
            last_pulled(&other, "central", "commands", 1).await.unwrap(),
            None
        );
        broker.shutdown().unwrap();
    }

    fn rec(offset: i64, pid: i64, transactional: bool, control: Option<bool>) -> Record {
        Record {
            transactional,
            control: control.is_some(),
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp: 0,
            // Control key: version 0, type 0 (abort) or 1 (commit).
            key: control
                .map(|abort| Bytes::from_static(if abort { &[0, 0, 0, 0] } else { &[0, 0, 0, 1] })),
            value: None,
            headers: Headers::new(),
        }
    }

    #[test]
    fn read_committed_drops_aborted_transactions_and_control_records() {
        let aborted = vec![AbortedTransaction::default()
            .with_producer_id(ProducerId(7))
            .with_first_offset(1)];
        let mut f = AbortedFilter::new(Some(&aborted));
        let kept: Vec<i64> = [
            rec(0, -1, false, None),      // plain
            rec(1, 7, true, None),        // aborted txn of 7
            rec(2, 8, true, None),        // committed txn of 8
            rec(3, 7, true, None),        // aborted txn of 7
            rec(4, 7, true, Some(true)),  // ABORT marker of 7
            rec(5, 8, true, Some(false)), // COMMIT marker of 8
            rec(6, 7, true, None),        // a later (committed) txn of 7
            rec(7, -1, false, None),
        ]
        .iter()
        .filter(|r| !f.drops(r))
        .map(|r| r.offset)
        .collect();
        assert_eq!(kept, vec![0, 2, 6, 7]);
        let mut none = AbortedFilter::new(None);
        assert!(!none.drops(&rec(0, 3, true, None)));
    }

    #[test]
    fn partial_trailing_batch_is_left_for_the_next_fetch() {
        let mut b = BatchBuilder::new();
        b.push(None, Some(Bytes::from_static(b"a")), 1);
        let one = b.build().unwrap();
        let mut two = one.to_vec();
        two.extend_from_slice(&one);
        let whole = whole_batches(&Bytes::from(two.clone())).unwrap();
        assert_eq!(whole.len(), 2);
        // Cut inside the second batch's header, then inside its records.
        for cut in [one.len() + 30, two.len() - 1] {
            let part = whole_batches(&Bytes::from(two[..cut].to_vec())).unwrap();
            assert_eq!(part.len(), 1);
            assert_eq!(part[0].0, one);
            assert_eq!(part[0].1.last_offset(), 0);
        }
        assert!(whole_batches(&Bytes::new()).unwrap().is_empty());
        // A complete header with another magic (an old message format) is an error.
        let mut old = one.to_vec();
        old[16] = 1;
        assert!(whole_batches(&Bytes::from(old)).is_err());
    }
}
