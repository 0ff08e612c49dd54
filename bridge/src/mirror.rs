//! The mirror engine: one task per (mirror, source partition) reads the local log in-process and
//! produces to the target cluster over the Kafka protocol.
//!
//! Exactly once: on every (re)connect the task reads the tail of each target partition and finds
//! the last record whose `rill.origin` header names this node, topic and partition; it continues
//! after that source offset, skipping records a target partition already holds. Within a
//! connection an idempotent producer (InitProducerId, per-partition sequences) makes retries of a
//! Produce safe. Any other failure drops the connection and starts over (backoff with jitter),
//! so nothing is lost or duplicated whatever the point of failure on either side.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, InitProducerIdRequest, MetadataRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rill_core::broker::Broker;
use rill_core::partitioner::partition_for_key;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::GroupOffsets;
use crate::client::{ClientError, Connection, PartitionFetch};
use crate::config::{Direction, MirrorConfig, TransferCompression};
use crate::floor::{FloorGuard, FloorRegistry};
use crate::priority::Scheduler;
use crate::status::{BridgeStatus, MirrorState, PartitionStatus};

/// Header carrying `node/topic/partition/offset` of a mirrored record's source.
pub const ORIGIN_HEADER: &str = "rill.origin";

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CHUNK_BYTES: usize = 1 << 20;
/// Largest batch sent (uncompressed bound), below Kafka's default `max.message.bytes` (1 MiB):
/// origin headers make a mirrored batch larger than the source's.
const MAX_BATCH_BYTES: usize = 900 << 10;
/// zstd level of transfer compression: level 1 compresses about twice as fast as the codec's
/// default 3, and compression was most of the edge's CPU in a backlog drain (docs/benchmarks.md).
const ZSTD_LEVEL: i32 = 1;
const ERR_TOPIC_EXISTS: i16 = 36;
const ERR_DUPLICATE_SEQUENCE: i16 = 46;
/// Errors retried on the same connection with the same sequence numbers.
const RETRIABLE: &[i16] = &[7, 19, 20];

/// An upper bound of a record's encoded size once mirrored with an origin header value of
/// `origin_len` bytes (varints, its headers, the origin).
fn encoded_size_bound(r: &Record, origin_len: usize) -> usize {
    let len = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len());
    let headers: usize = r.headers.iter().map(|(k, v)| 10 + k.len() + len(v)).sum();
    64 + ORIGIN_HEADER.len() + origin_len + len(&r.key) + len(&r.value) + headers
}

/// The origin header value of a source record.
pub fn origin_value(node: &str, topic: &str, partition: i32, offset: i64) -> String {
    format!("{node}/{topic}/{partition}/{offset}")
}

/// Parse an origin header value into (node, topic, partition, offset).
pub fn parse_origin(v: &[u8]) -> Option<(&str, &str, i32, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut it = s.rsplitn(4, '/');
    let offset = it.next()?.parse().ok()?;
    let partition = it.next()?.parse().ok()?;
    let topic = it.next()?;
    let node = it.next()?;
    Some((node, topic, partition, offset))
}

/// A record header by name (the codec keys headers by `StrBytes`).
pub(crate) fn header<'a>(r: &'a Record, name: &str) -> Option<&'a Option<Bytes>> {
    r.headers
        .iter()
        .find(|(k, _)| k.as_str() == name)
        .map(|(_, v)| v)
}

/// Target partition of a record from `source_partition` when the target has `n` partitions:
/// the same partition if it exists, else the key's murmur2 hash (Kafka's), else round robin.
pub fn target_partition(source_partition: i32, n: i32, key: Option<&[u8]>) -> i32 {
    if source_partition < n {
        return source_partition;
    }
    match key {
        Some(k) => partition_for_key(k, n),
        None => source_partition % n.max(1),
    }
}

/// Errors of a mirror session (the session is restarted after a backoff).
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// Talking to the target failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Reading the local log failed.
    #[error("source: {0}")]
    Source(String),
    /// The target refused something.
    #[error("target: {0}")]
    Target(String),
}

/// A compiled mirror.
pub struct Mirror {
    /// Its configuration.
    pub config: MirrorConfig,
    pub(crate) security: crate::security::TargetSecurity,
    regex: Option<regex_automata::meta::Regex>,
    header_filter: Option<(String, Option<Vec<u8>>)>,
}

impl Mirror {
    /// Compile a validated mirror configuration.
    pub fn new(config: MirrorConfig) -> Result<Mirror, crate::config::ConfigError> {
        config.validate()?;
        let regex = match &config.topics_regex {
            Some(r) => Some(
                regex_automata::meta::Regex::new(&format!("^(?:{r})$")).map_err(|e| {
                    crate::config::ConfigError::Invalid(format!("topics_regex: {e}"))
                })?,
            ),
            None => None,
        };
        let header_filter = config
            .filter_header
            .as_ref()
            .map(|f| match f.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.as_bytes().to_vec())),
                None => (f.clone(), None),
            });
        Ok(Mirror {
            security: config.security()?,
            config,
            regex,
            header_filter,
        })
    }

    /// Whether a source topic is mirrored. Internal topics never are; with `all_topics`, names
    /// with a dot are remote topics (MirrorMaker 2's convention) and are not sent on.
    pub fn selects(&self, topic: &str) -> bool {
        if topic.starts_with("__") {
            return false;
        }
        if self.config.topics.iter().any(|t| t == topic) {
            return true;
        }
        if let Some(r) = &self.regex {
            if r.is_match(topic) {
                return true;
            }
        }
        self.config.all_topics && !topic.contains('.')
    }

    /// Whether a record passes the filters.
    pub fn passes(&self, r: &Record) -> bool {
        if let Some(p) = &self.config.filter_key_prefix {
            match &r.key {
                Some(k) if k.starts_with(p.as_bytes()) => {}
                _ => return false,
            }
        }
        if let Some((k, v)) = &self.header_filter {
            match header(r, k) {
                Some(got) => {
                    if let Some(v) = v {
                        if got.as_deref() != Some(v.as_slice()) {
                            return false;
                        }
                    }
                }
                None => return false,
            }
        }
        true
    }
}

/// The bridge inside a node: watches the topics and runs one task per mirrored partition.
pub struct Bridge {
    broker: Arc<Broker>,
    node_name: String,
    mirrors: Vec<Arc<Mirror>>,
    shutdown: CancellationToken,
    scheduler: Arc<Scheduler>,
    status: Arc<BridgeStatus>,
    group_offsets: Option<Arc<dyn GroupOffsets>>,
    floors: Arc<FloorRegistry>,
}

impl Bridge {
    /// Report status into `status` (e.g. the registry the admin HTTP API serves).
    pub fn with_status(mut self, status: Arc<BridgeStatus>) -> Bridge {
        self.status = status;
        self
    }

    /// Translate and checkpoint the committed offsets of these consumer groups.
    pub fn with_group_offsets(mut self, groups: Arc<dyn GroupOffsets>) -> Bridge {
        self.group_offsets = Some(groups);
        self
    }

    /// A bridge over the node's broker.
    pub fn new(
        broker: Arc<Broker>,
        node_name: String,
        mirrors: Vec<Mirror>,
        shutdown: CancellationToken,
    ) -> Bridge {
        let mut mirrors: Vec<Arc<Mirror>> = mirrors.into_iter().map(Arc::new).collect();
        mirrors.sort_by_key(|m| -m.config.priority);
        let scheduler = Scheduler::for_priorities(
            mirrors
                .iter()
                .filter(|m| m.config.direction != Direction::Pull)
                .map(|m| m.config.priority),
        );
        Bridge {
            floors: FloorRegistry::new(broker.clone()),
            broker,
            node_name,
            mirrors,
            shutdown,
            scheduler,
            status: BridgeStatus::new(),
            group_offsets: None,
        }
    }

    /// Run until shutdown: start a task for every mirrored partition (new topics and
    /// partitions are picked up every second); pull mirrors run in [`crate::downstream`].
    pub async fn run(self) {
        let tasks = tokio_util::task::TaskTracker::new();
        let mut running: HashSet<(usize, String, i32)> = HashSet::new();
        self.status.set_node(&self.node_name);
        crate::heartbeats::start(&tasks, &self.mirrors, &self.node_name, &self.shutdown);
        crate::checkpoint::start(
            &tasks,
            &self.mirrors,
            &self.node_name,
            &self.status,
            self.group_offsets.clone(),
            &self.shutdown,
        );
        // Pull (downstream) mirrors run beside; the topics they write are never pushed.
        let pulled = Arc::new(crate::downstream::PulledTopics::default());
        let pulls: Vec<Arc<Mirror>> = self
            .mirrors
            .iter()
            .filter(|m| m.config.direction == Direction::Pull)
            .cloned()
            .collect();
        if !pulls.is_empty() {
            let (b, n, s) = (
                self.broker.clone(),
                self.node_name.clone(),
                self.shutdown.clone(),
            );
            tasks.spawn(crate::downstream::Downstream::new(b, n, pulls, s, pulled.clone()).run());
        }
        loop {
            for (i, m) in self.mirrors.iter().enumerate() {
                if m.config.direction == Direction::Pull {
                    continue;
                }
                for t in self.broker.topics() {
                    if t.internal || !m.selects(&t.name) || pulled.contains(&t.name) {
                        continue;
                    }
                    for p in 0..t.partitions {
                        if running.insert((i, t.name.clone(), p)) {
                            let task = PartitionMirror {
                                broker: self.broker.clone(),
                                node: self.node_name.clone(),
                                mirror: m.clone(),
                                topic: t.name.clone(),
                                partition: p,
                                source_partitions: t.partitions,
                                shutdown: self.shutdown.clone(),
                                scheduler: self.scheduler.clone(),
                                status: self.status.register(
                                    i,
                                    &m.config.target,
                                    &t.name,
                                    p,
                                    &m.config.target_topic(&self.node_name, &t.name),
                                    self.broker.partition(&t.name, p).ok(),
                                ),
                                floor: self.floors.register(&t.name, p),
                            };
                            tasks.spawn(task.run());
                        }
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        tasks.close();
        tasks.wait().await;
    }
}

struct PartitionMirror {
    broker: Arc<Broker>,
    node: String,
    mirror: Arc<Mirror>,
    topic: String,
    partition: i32,
    source_partitions: i32,
    shutdown: CancellationToken,
    scheduler: Arc<Scheduler>,
    status: Arc<PartitionStatus>,
    /// Holds this task's unmirrored records from retention (see [`crate::floor`]).
    floor: FloorGuard,
}

/// A random number of milliseconds below `max` (backoff jitter).
pub(crate) fn jitter_ms(max: u64) -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return max / 2;
    }
    u64::from_le_bytes(b) % max.max(1)
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl PartitionMirror {
    async fn run(self) {
        let mut backoff = 100u64;
        loop {
            let started = std::time::Instant::now();
            let res = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                r = self.session() => r,
            };
            match res {
                Ok(()) => return,
                Err(e) => {
                    self.status.failed(&e.to_string());
                    if started.elapsed() > Duration::from_secs(10) {
                        backoff = 100;
                    }
                    tracing::warn!(topic = %self.topic, partition = self.partition,
                        target = %self.mirror.config.target, error = %e, backoff_ms = backoff,
                        "mirror session failed; reconnecting");
                    let wait = backoff / 2 + jitter_ms(backoff / 2 + 1);
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    }
                    backoff = (backoff * 2).min(5_000);
                }
            }
        }
    }

    fn target_topic(&self) -> String {
        self.mirror.config.target_topic(&self.node, &self.topic)
    }

    async fn connect_any(&self) -> Result<Connection, MirrorError> {
        let mut last = None;
        for addr in self.mirror.config.target.split(',') {
            match Connection::connect_with(addr.trim(), &self.mirror.security, REQUEST_TIMEOUT)
                .await
            {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .map(MirrorError::from)
            .unwrap_or_else(|| MirrorError::Target("no bootstrap address".into())))
    }

    /// Partition count of the target topic and a connection to the leader of `want` (or of
    /// partition 0), creating the topic if needed.
    async fn prepare(&self, topic: &str) -> Result<(Connection, i32), MirrorError> {
        let mut conn = self.connect_any().await?;
        for attempt in 0..20 {
            let req = MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(TopicName(str_bytes(topic))))
                ]))
                .with_allow_auto_topic_creation(false);
            let md = conn.call(&req, 9).await?;
            let t = md.topics.first();
            let ok = t
                .map(|t| t.error_code == 0 && !t.partitions.is_empty())
                .unwrap_or(false);
            if !ok {
                if attempt == 0 {
                    let req = CreateTopicsRequest::default()
                        .with_topics(vec![CreatableTopic::default()
                            .with_name(TopicName(str_bytes(topic)))
                            .with_num_partitions(self.source_partitions)
                            .with_replication_factor(-1)])
                        .with_timeout_ms(30_000);
                    let r = conn.call(&req, 5).await?;
                    if let Some(ct) = r.topics.first() {
                        if ct.error_code != 0 && ct.error_code != ERR_TOPIC_EXISTS {
                            return Err(MirrorError::Target(format!(
                                "create topic {topic}: error {}",
                                ct.error_code
                            )));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let t = t.ok_or_else(|| MirrorError::Target("no topic in metadata".into()))?;
            let n = t.partitions.len() as i32;
            // Single-leader assumption for the connection: talk to the leader of partition 0
            // when it is another broker (enough for one-node targets and tests).
            let leader = t
                .partitions
                .iter()
                .find(|p| p.partition_index == self.partition.min(n - 1))
                .map(|p| p.leader_id)
                .unwrap_or(BrokerId(-1));
            if let Some(b) = md.brokers.iter().find(|b| b.node_id == leader) {
                let addr = format!("{}:{}", b.host, b.port);
                if addr != conn.addr() && !self.mirror.config.target.contains(&addr) {
                    conn = Connection::connect_with(&addr, &self.mirror.security, REQUEST_TIMEOUT)
                        .await?;
                }
            }
            return Ok((conn, n));
        }
        Err(MirrorError::Target(format!("topic {topic} did not appear")))
    }

    async fn list_offset(
        &self,
        conn: &mut Connection,
        topic: &str,
        partition: i32,
        ts: i64,
    ) -> Result<i64, MirrorError> {
        Ok(conn.list_offset(topic, partition, ts, 0).await?)
    }

    /// Records of a target partition in [from, end).
    async fn fetch_range(
        &self,
        conn: &mut Connection,
        topic: &str,
        partition: i32,
        from: i64,
        end: i64,
    ) -> Result<Vec<Record>, MirrorError> {
        let mut out = Vec::new();
        let mut pos = from;
        while pos < end {
            let p = conn
                .fetch_partition(&PartitionFetch {
                    topic,
                    partition,
                    offset: pos,
                    max_bytes: 8 << 20,
                    max_wait_ms: 0,
                    min_bytes: 0,
                    isolation_level: 0,
                })
                .await?;
            if p.error_code != 0 {
                return Err(MirrorError::Target(format!(
                    "Fetch {topic}[{partition}]: error {}",
                    p.error_code
                )));
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
                    if r.offset >= pos && r.offset < end {
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

    /// The last source offset of this source partition present in a target partition, if any.
    async fn last_mirrored(
        &self,
        conn: &mut Connection,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, MirrorError> {
        let end = self.list_offset(conn, topic, partition, -1).await?;
        let start = self.list_offset(conn, topic, partition, -2).await?;
        let mut window = 1i64;
        let mut hi = end;
        while hi > start {
            let lo = (end - window).max(start);
            let recs = self.fetch_range(conn, topic, partition, lo, hi).await?;
            for r in recs.iter().rev() {
                if let Some(Some(v)) = header(r, ORIGIN_HEADER) {
                    if let Some((n, t, p, o)) = parse_origin(v) {
                        if n == self.node && t == self.topic && p == self.partition {
                            self.status.seed(partition, o, r.offset);
                            return Ok(Some(o));
                        }
                    }
                }
            }
            hi = lo;
            window = window.saturating_mul(16);
        }
        Ok(None)
    }

    async fn session(&self) -> Result<(), MirrorError> {
        let ttopic = self.target_topic();
        self.status.set_state(MirrorState::Connecting);
        let (mut conn, n) = self.prepare(&ttopic).await?;
        self.status.set_state(MirrorState::Resuming);
        // Which target partitions this source partition writes to.
        let targets: Vec<i32> = if self.partition < n {
            vec![self.partition]
        } else {
            (0..n).collect()
        };
        let mut done: HashMap<i32, i64> = HashMap::new();
        for &t in &targets {
            let last = self.last_mirrored(&mut conn, &ttopic, t).await?;
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
        let init = conn
            .call(
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(kafka_protocol::messages::ProducerId(-1))
                    .with_producer_epoch(-1),
                4,
            )
            .await?;
        let (pid, epoch) = if init.error_code == 0 {
            (init.producer_id.0, init.producer_epoch)
        } else {
            tracing::warn!(
                code = init.error_code,
                "target refused InitProducerId; producing without idempotence"
            );
            (-1, -1)
        };
        let mut seqs: HashMap<i32, i32> = HashMap::new();
        let mut hw_rx = log.watch_high_watermark();
        let compression = match self.mirror.config.compression {
            TransferCompression::Zstd => Compression::Zstd,
            TransferCompression::None => Compression::None,
        };
        loop {
            let rr = match log.read(pos, CHUNK_BYTES) {
                Ok(r) => r,
                Err(rill_core::log::LogError::OffsetOutOfRange { log_start, .. })
                    if pos < log_start =>
                {
                    tracing::warn!(topic = %self.topic, partition = self.partition, from = pos,
                        log_start, "records removed before they were mirrored; skipping forward");
                    pos = log_start;
                    continue;
                }
                Err(e) => return Err(MirrorError::Source(e.to_string())),
            };
            if rr.records.is_empty() {
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
                    if let Some(Some(v)) = header(&r, ORIGIN_HEADER) {
                        if parse_origin(v).map(|o| o.0 != self.node).unwrap_or(true) {
                            continue;
                        }
                    }
                    let t = target_partition(self.partition, n, r.key.as_deref());
                    if done.get(&t).copied().unwrap_or(-1) >= r.offset {
                        continue;
                    }
                    let mut headers: IndexMap<StrBytes, Option<Bytes>> = r.headers.clone();
                    headers.insert(
                        StrBytes::from_static_str(ORIGIN_HEADER),
                        Some(Bytes::from(origin_value(
                            &self.node,
                            &self.topic,
                            self.partition,
                            r.offset,
                        ))),
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
            if !per_target.is_empty() {
                // Higher-priority mirrors go first (see priority.rs); held until the ack.
                let turn = lane.turn(bytes_out).await;
                self.produce(
                    &mut conn,
                    &ttopic,
                    pid,
                    &mut seqs,
                    &mut per_target,
                    compression,
                    &mut done,
                )
                .await?;
                drop(turn);
                let cap = self.mirror.config.bandwidth_bytes_per_sec;
                if cap > 0 {
                    lane.idle();
                    let secs = bytes_out as f64 / cap as f64;
                    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                }
            }
            pos = next;
            self.floor.set(pos);
            self.status.advanced(pos);
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn produce(
        &self,
        conn: &mut Connection,
        topic: &str,
        pid: i64,
        seqs: &mut HashMap<i32, i32>,
        per_target: &mut BTreeMap<i32, Vec<Record>>,
        compression: Compression,
        done: &mut HashMap<i32, i64>,
    ) -> Result<(), MirrorError> {
        let mut parts = Vec::new();
        let mut last_origin: HashMap<i32, (i64, i32)> = HashMap::new();
        for (t, recs) in per_target.iter_mut() {
            let seq0 = *seqs.get(t).unwrap_or(&0);
            for (i, r) in recs.iter_mut().enumerate() {
                r.offset = i as i64;
                // Without a producer id the batch's base sequence must be -1; keeping offset minus
                // sequence constant keeps the records in one batch.
                r.sequence = if pid >= 0 {
                    seq0.wrapping_add(i as i32)
                } else {
                    i as i32 - 1
                };
            }
            let last = recs
                .last()
                .and_then(|r| header(r, ORIGIN_HEADER).cloned().flatten())
                .and_then(|v| parse_origin(&v).map(|o| o.3))
                .unwrap_or(-1);
            last_origin.insert(*t, (last, recs.len() as i32));
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode_with_custom_compression(
                &mut buf,
                recs.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression,
                },
                Some(
                    |records: &mut BytesMut, out: &mut BytesMut, c: Compression| {
                        match c {
                            Compression::Zstd => {
                                zstd::stream::copy_encode(&records[..], out.writer(), ZSTD_LEVEL)?
                            }
                            _ => out.extend_from_slice(records),
                        }
                        Ok(())
                    },
                ),
            )
            .map_err(|e| MirrorError::Source(format!("encode: {e}")))?;
            parts.push(
                PartitionProduceData::default()
                    .with_index(*t)
                    .with_records(Some(buf.freeze())),
            );
        }
        let req = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(str_bytes(topic)))
                .with_partition_data(parts)]);
        let mut attempt = 0;
        let resp = loop {
            let resp = conn.call(&req, 8).await?;
            let mut retry = false;
            for t in &resp.responses {
                for p in &t.partition_responses {
                    let code = p.error_code;
                    if code == 0 || (code == ERR_DUPLICATE_SEQUENCE && pid >= 0) {
                        continue;
                    }
                    if RETRIABLE.contains(&code) && attempt < 3 && pid >= 0 {
                        retry = true;
                        continue;
                    }
                    return Err(MirrorError::Target(format!(
                        "produce to {topic}[{}]: error {code}",
                        p.index
                    )));
                }
            }
            if !retry {
                break resp;
            }
            // Same request, same sequences: the target drops what it already has.
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
        };
        for p in resp.responses.iter().flat_map(|t| &t.partition_responses) {
            if let (0, Some(recs)) = (p.error_code, per_target.get(&p.index)) {
                self.status.produced(p.index, p.base_offset, recs);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_roundtrip() {
        let v = origin_value("edge/1", "t.x", 3, 42);
        assert_eq!(parse_origin(v.as_bytes()), Some(("edge/1", "t.x", 3, 42)));
        assert_eq!(parse_origin(b"junk"), None);
    }

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
                headers: IndexMap::new(),
            };
            for h in 0..headers {
                r.headers.insert(
                    StrBytes::from_string(format!("header-{h}")),
                    Some(Bytes::from(vec![b'h'; 30])),
                );
            }
            let (node, topic) = ("a-long-edge-node-name", "t".repeat(249));
            let bound = encoded_size_bound(&r, node.len() + topic.len() + 32);
            let origin = origin_value(node, &topic, i32::MAX, i64::MAX);
            r.headers.insert(
                StrBytes::from_static_str(ORIGIN_HEADER),
                Some(Bytes::from(origin)),
            );
            let mut buf = BytesMut::new();
            let opts = RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            };
            RecordBatchEncoder::encode(&mut buf, [&r], &opts).expect("encode");
            assert!(buf.len() - 61 <= bound, "{} > {bound}", buf.len() - 61);
        }
    }

    #[test]
    fn partition_mapping_and_selection() {
        assert_eq!(target_partition(2, 4, Some(b"k")), 2);
        let p = target_partition(5, 4, Some(b"k"));
        assert!((0..4).contains(&p));
        assert_eq!(p, target_partition(7, 4, Some(b"k")));
        let m = Mirror::new(MirrorConfig::all_to("x:1")).unwrap();
        assert!(m.selects("orders"));
        assert!(!m.selects("__consumer_offsets"));
        assert!(!m.selects("edge.orders"));
        let mut c = MirrorConfig::all_to("x:1");
        c.all_topics = false;
        c.topics_regex = Some("sens.*".into());
        c.filter_header = Some("class=alarm".into());
        let m = Mirror::new(c).unwrap();
        assert!(m.selects("sensors") && !m.selects("xsensors"));
        let mut r = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 0,
            key: None,
            value: None,
            headers: IndexMap::new(),
        };
        assert!(!m.passes(&r));
        r.headers.insert(
            StrBytes::from_static_str("class"),
            Some(Bytes::from_static(b"alarm")),
        );
        assert!(m.passes(&r));
    }
}
