//! A push session: one task per (mirror, source partition) reads the local log in-process and
//! produces to the target cluster over the Kafka protocol.
//!
//! Exactly once: on every (re)connect the task reads the tail of each target partition and finds
//! the last record whose `rill.origin` header names this node, topic and partition
//! ([`crate::origin::find_last_origin`]); it continues after that source offset, skipping records
//! a target partition already holds. Within a session an idempotent producer (InitProducerId,
//! per-partition sequences) makes retries of a Produce safe. Any other failure ends the session
//! and the [`crate::supervisor`] starts a new one after a backoff, so nothing is lost or
//! duplicated whatever the point of failure on either side.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use kafka_protocol::records::{Record, RecordBatchDecoder, TimestampType};
use rill_client::{Client, ClientError, PartitionFetch};
use rill_core::batch::{BatchBuilder, Compression as BatchCompression};
use rill_core::broker::Broker;
use tokio_util::sync::CancellationToken;

use crate::config::TransferCompression;
use crate::floor::FloorGuard;
use crate::mirror::{target_partition, Mirror, MirrorError};
use crate::origin::{
    came_from_elsewhere, find_last_origin, header, origin_value, parse_origin, set_origin,
    RecordSource, ORIGIN_HEADER,
};
use crate::priority::Scheduler;
use crate::status::{MirrorState, PartitionStatus};
use crate::supervisor::supervise;

const CHUNK_BYTES: usize = 1 << 20;
/// Largest batch sent (uncompressed bound), below Kafka's default `max.message.bytes` (1 MiB):
/// origin headers make a mirrored batch larger than the source's.
const MAX_BATCH_BYTES: usize = 900 << 10;
/// zstd level of transfer compression: level 1 compresses about twice as fast as the codec's
/// default 3, and compression was most of the edge's CPU in a backlog drain (docs/benchmarks.md).
const ZSTD_LEVEL: i32 = 1;

/// An upper bound of a record's encoded size once mirrored with an origin header value of
/// `origin_len` bytes (varints, its headers, the origin).
fn encoded_size_bound(r: &Record, origin_len: usize) -> usize {
    let len = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len());
    let headers: usize = r.headers.iter().map(|(k, v)| 10 + k.len() + len(v)).sum();
    64 + ORIGIN_HEADER.len() + origin_len + len(&r.key) + len(&r.value) + headers
}

/// The push task of one source partition.
pub(crate) struct PartitionMirror {
    pub(crate) broker: Arc<Broker>,
    pub(crate) node: String,
    pub(crate) mirror: Arc<Mirror>,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) source_partitions: i32,
    pub(crate) shutdown: CancellationToken,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) status: Arc<PartitionStatus>,
    /// Holds this task's unmirrored records from retention (see [`crate::floor`]).
    pub(crate) floor: FloorGuard,
}

impl PartitionMirror {
    /// Run sessions until shutdown.
    pub(crate) async fn run(self) {
        let session = || async {
            tokio::select! {
                _ = self.shutdown.cancelled() => Ok(()),
                r = self.session() => r,
            }
        };
        supervise(&self.shutdown, session, |e: &MirrorError, backoff| {
            self.status.failed(&e.to_string());
            tracing::warn!(topic = %self.topic, partition = self.partition,
                target = %self.mirror.config.target, error = %e,
                backoff_ms = backoff.as_millis() as u64, "mirror session failed; reconnecting");
            true
        })
        .await
    }

    fn target_topic(&self) -> String {
        self.mirror.config.target_topic(&self.node, &self.topic)
    }

    /// The last source offset of this source partition present in a target partition, if any.
    async fn last_mirrored(
        &self,
        client: &mut Client,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, MirrorError> {
        let end = client.list_offset(topic, partition, -1, 0).await?;
        let start = client.list_offset(topic, partition, -2, 0).await?;
        let mut target = TargetPartition {
            client,
            topic,
            partition,
        };
        let found = find_last_origin(
            &mut target,
            start,
            end,
            &self.node,
            &self.topic,
            self.partition,
        )
        .await?;
        Ok(found.map(|f| {
            self.status.seed(partition, f.source_offset, f.offset);
            f.source_offset
        }))
    }

    async fn session(&self) -> Result<(), MirrorError> {
        let ttopic = self.target_topic();
        self.status.set_state(MirrorState::Connecting);
        let mut client = self.mirror.client()?;
        let n = client
            .create_topic_if_missing(&ttopic, self.source_partitions, -1, &[])
            .await?
            .partitions
            .len() as i32;
        self.status.set_state(MirrorState::Resuming);
        // Which target partitions this source partition writes to.
        let targets: Vec<i32> = if self.partition < n {
            vec![self.partition]
        } else {
            (0..n).collect()
        };
        let mut done: HashMap<i32, i64> = HashMap::new();
        for &t in &targets {
            let last = self.last_mirrored(&mut client, &ttopic, t).await?;
            done.insert(t, last.unwrap_or(-1));
        }
        let log = self
            .broker
            .partition(&self.topic, self.partition)
            .map_err(|e| MirrorError::Source(e.to_string()))?;
        let mut pos = done.values().copied().min().unwrap_or(-1) + 1;
        let log_start = log.log_start_offset();
        if pos < log_start {
            if pos > 0 {
                tracing::warn!(topic = %self.topic, partition = self.partition, from = pos, log_start,
                    "records removed by retention before they were mirrored");
            }
            pos = log_start;
        }
        self.floor.set(pos);
        tracing::info!(topic = %self.topic, partition = self.partition, target_topic = %ttopic,
            from = pos, "mirroring");
        let mut lane = self.scheduler.lane(self.mirror.config.priority);
        self.status.advanced(pos);
        let (pid, epoch) = match client.init_producer_id().await {
            Ok(p) => p,
            Err(e @ ClientError::Kafka { .. }) => {
                tracing::warn!(error = %e, "target refused InitProducerId; producing without idempotence");
                (-1, -1)
            }
            Err(e) => return Err(e.into()),
        };
        let mut seqs: HashMap<i32, i32> = HashMap::new();
        let mut hw_rx = log.watch_high_watermark();
        let compression = match self.mirror.config.compression {
            TransferCompression::Zstd => BatchCompression::Zstd,
            TransferCompression::None => BatchCompression::None,
        };
        loop {
            // Held from `drop_oldest` from the read to the acknowledgement (see crate::floor).
            let sending = self.floor.sending(pos);
            let rr = match log.read(pos, CHUNK_BYTES) {
                Ok(r) => r,
                Err(rill_core::log::LogError::OffsetOutOfRange { log_start, .. })
                    if pos < log_start =>
                {
                    tracing::warn!(topic = %self.topic, partition = self.partition, from = pos,
                        log_start, "records removed before they were mirrored; skipping forward");
                    pos = log_start;
                    sending.done(pos);
                    continue;
                }
                Err(e) => return Err(MirrorError::Source(e.to_string())),
            };
            if rr.records.is_empty() {
                sending.done(pos);
                lane.idle();
                if pos < rr.high_watermark {
                    return Err(MirrorError::Source(format!("no data readable at {pos}")));
                }
                self.status.set_state(MirrorState::CaughtUp);
                tokio::select! {
                    _ = self.shutdown.cancelled() => return Ok(()),
                    _ = hw_rx.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            let mut buf = rr.records.clone();
            let sets = RecordBatchDecoder::decode_all(&mut buf)
                .map_err(|e| MirrorError::Source(format!("decode: {e}")))?;
            let mut per_target: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
            let mut next = pos;
            let mut bytes_out = 0usize;
            let mut batch_bytes = 0usize;
            'records: for s in sets {
                for r in s.records {
                    if r.offset < pos || r.control {
                        next = next.max(r.offset + 1);
                        continue;
                    }
                    // The batch (origin headers added) must fit the target's max.message.bytes.
                    batch_bytes += encoded_size_bound(&r, self.node.len() + self.topic.len() + 32);
                    if batch_bytes > MAX_BATCH_BYTES && !per_target.is_empty() {
                        break 'records;
                    }
                    next = next.max(r.offset + 1);
                    if !self.mirror.passes(&r) {
                        continue;
                    }
                    // Never send back a record that came from another node (no cycles).
                    if came_from_elsewhere(&r, &self.node) {
                        continue;
                    }
                    let t = target_partition(self.partition, n, r.key.as_deref());
                    if done.get(&t).copied().unwrap_or(-1) >= r.offset {
                        continue;
                    }
                    let mut headers = r.headers.clone();
                    set_origin(
                        &mut headers,
                        origin_value(&self.node, &self.topic, self.partition, r.offset),
                    );
                    bytes_out += r.key.as_ref().map_or(0, |k| k.len())
                        + r.value.as_ref().map_or(0, |v| v.len());
                    per_target.entry(t).or_default().push(Record {
                        transactional: false,
                        control: false,
                        delete_horizon: false,
                        partition_leader_epoch: -1,
                        producer_id: pid,
                        producer_epoch: epoch,
                        timestamp_type: TimestampType::Creation,
                        offset: 0,
                        sequence: -1,
                        timestamp: r.timestamp,
                        key: r.key,
                        value: r.value,
                        headers,
                    });
                }
            }
            let sent = !per_target.is_empty();
            if sent {
                // Higher-priority mirrors go first (see priority.rs); held until the ack.
                let turn = lane.turn(bytes_out).await;
                self.produce(
                    &mut client,
                    &ttopic,
                    pid,
                    &mut seqs,
                    &mut per_target,
                    compression,
                    &mut done,
                )
                .await?;
                drop(turn);
            }
            pos = next;
            sending.done(pos);
            self.status.advanced(pos);
            let cap = self.mirror.config.bandwidth_bytes_per_sec;
            if sent && cap > 0 {
                lane.idle();
                let secs = bytes_out as f64 / cap as f64;
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn produce(
        &self,
        client: &mut Client,
        topic: &str,
        pid: i64,
        seqs: &mut HashMap<i32, i32>,
        per_target: &mut BTreeMap<i32, Vec<Record>>,
        compression: BatchCompression,
        done: &mut HashMap<i32, i64>,
    ) -> Result<(), MirrorError> {
        let mut parts = Vec::new();
        let mut last_origin: HashMap<i32, (i64, i32)> = HashMap::new();
        for (t, recs) in per_target.iter_mut() {
            let seq0 = *seqs.get(t).unwrap_or(&0);
            for (i, r) in recs.iter_mut().enumerate() {
                r.offset = i as i64;
            }
            let last = recs
                .last()
                .and_then(|r| header(r, ORIGIN_HEADER).cloned().flatten())
                .and_then(|v| parse_origin(&v).map(|o| o.3))
                .unwrap_or(-1);
            last_origin.insert(*t, (last, recs.len() as i32));
            // Without a producer id the batch's base sequence is -1.
            let epoch = recs.first().map_or(-1, |r| r.producer_epoch);
            let mut batch = BatchBuilder::new()
                .compression(compression)
                .compression_level(ZSTD_LEVEL)
                .producer(pid, epoch, if pid >= 0 { seq0 } else { -1 });
            for r in recs.iter() {
                batch.push_with_headers(
                    r.key.clone(),
                    r.value.clone(),
                    r.timestamp,
                    r.headers.clone(),
                );
            }
            let buf = batch
                .build()
                .map_err(|e| MirrorError::Source(format!("encode: {e}")))?;
            parts.push((*t, buf));
        }
        // With idempotence a retry resends the same sequences: the target drops what it has.
        let results = client.produce(topic, &parts, -1, 30_000, pid >= 0).await?;
        for (p, r) in results {
            match r {
                Ok(base) => {
                    if let Some(recs) = per_target.get(&p) {
                        self.status.produced(p, base, recs);
                    }
                }
                Err(e)
                    if pid >= 0
                        && e.kafka_code() == Some(ResponseError::DuplicateSequenceNumber) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for (t, (last, count)) in last_origin {
            let s = seqs.entry(t).or_insert(0);
            *s = s.wrapping_add(count) & i32::MAX;
            done.insert(t, last);
        }
        Ok(())
    }
}

/// A target partition read by the resume scan.
struct TargetPartition<'a> {
    client: &'a mut Client,
    topic: &'a str,
    partition: i32,
}

impl RecordSource for TargetPartition<'_> {
    type Error = MirrorError;

    /// Records of the target partition in [from, to).
    async fn records(&mut self, from: i64, to: i64) -> Result<Vec<Record>, MirrorError> {
        let mut out = Vec::new();
        let mut pos = from;
        while pos < to {
            let p = self
                .client
                .fetch(&PartitionFetch {
                    topic: self.topic,
                    partition: self.partition,
                    offset: pos,
                    max_bytes: 8 << 20,
                    max_wait_ms: 0,
                    min_bytes: 0,
                    isolation_level: 0,
                })
                .await?;
            if let Some(code) = p.error {
                return Err(ClientError::Kafka {
                    context: format!("fetch {}[{}]", self.topic, self.partition),
                    code,
                    message: None,
                }
                .into());
            }
            let mut buf = p.records;
            if buf.is_empty() {
                break;
            }
            let sets = RecordBatchDecoder::decode_all(&mut buf)
                .map_err(|e| MirrorError::Target(format!("decode target records: {e}")))?;
            let before = pos;
            for s in sets {
                for r in s.records {
                    if r.offset >= pos && r.offset < to {
                        pos = r.offset + 1;
                        out.push(r);
                    }
                }
            }
            if pos == before {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};

    #[test]
    fn size_bound_covers_the_mirrored_encoding() {
        // Records of many shapes, mirrored (origin header added), encoded one per batch: the
        // bound on the source record covers the encoded record (batch header: 61 bytes).
        for (key, value, headers) in [(0, 0, 0), (3, 100, 1), (40, 1024, 4), (0, 70_000, 20)] {
            let mut r = Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: 7,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: 0,
                sequence: 0,
                timestamp: i64::MAX / 2,
                key: (key > 0).then(|| Bytes::from(vec![b'k'; key])),
                value: (value > 0).then(|| Bytes::from(vec![b'v'; value])),
                headers: Vec::new(),
            };
            for h in 0..headers {
                r.headers.push((
                    StrBytes::from_string(format!("header-{h}")),
                    Some(Bytes::from(vec![b'h'; 30])),
                ));
            }
            let (node, topic) = ("a-long-edge-node-name", "t".repeat(249));
            let bound = encoded_size_bound(&r, node.len() + topic.len() + 32);
            let origin = origin_value(node, &topic, i32::MAX, i64::MAX);
            set_origin(&mut r.headers, origin);
            let mut buf = BytesMut::new();
            let opts = RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            };
            RecordBatchEncoder::encode(&mut buf, [&r], &opts).expect("encode");
            assert!(buf.len() - 61 <= bound, "{} > {bound}", buf.len() - 61);
        }
    }
}
