//! Downstream (pull) mirrors: topics of a remote cluster (e.g. central `commands`) copied into
//! local topics of this node, so MQTT devices at the edge receive what was sent centrally.
//!
//! The edge still dials out. One task per pulled remote partition fetches from the partition's
//! leader (Fetch v11, read_committed) and appends to the local partition through the same log
//! path as local producers (append, then the group-commit flush), so MQTT subscribers and Kafka
//! consumers see the records once they are durable. Each record keeps key, value, headers and
//! timestamp and gets a `rill.origin` header `remote_alias/topic/partition/offset`.
//!
//! Exactly once: the resume position of a remote partition is taken from the local log itself
//! (the last local record whose `rill.origin` names this alias, topic and partition), read
//! in-process on every (re)start, so a crash of either side at any point neither loses nor
//! duplicates a record. Pulled records name another node as their origin, so this node's push
//! mirrors never send them back (and pulled topics are not selected by push mirrors at all).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::AbortedTransaction;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use rill_core::batch::{BatchBuilder, BatchHeader, Headers};
use rill_core::broker::{Broker, BrokerError};
use rill_core::log::{LogError, PartitionLog};
use tokio_util::sync::CancellationToken;

use crate::client::{ClientError, Connection, PartitionFetch};
use crate::mirror::{
    header, jitter_ms, origin_value, parse_origin, target_partition, Mirror, ORIGIN_HEADER,
};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a Fetch waits at the remote for new records.
const FETCH_WAIT_MS: i32 = 500;
const FETCH_BYTES: i32 = 4 << 20;
/// Uncompressed bytes per local batch (well under the default `max.message.bytes`).
const LOCAL_BATCH_BYTES: usize = 256 << 10;
/// How often the remote topic list is refreshed (new topics for a regex, new partitions).
const REFRESH: Duration = Duration::from_secs(5);
/// Records read per step when scanning the local tail backwards for the resume position.
const MAX_SCAN_WINDOW: i64 = 4096;
const ERR_OFFSET_OUT_OF_RANGE: i16 = 1;
/// Size of the fixed v2 record batch header.
const BATCH_HEADER_LEN: usize = 61;

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

/// Local topics written by pull mirrors. Push mirrors skip them: their records came from
/// elsewhere and are never sent on (see `docs/bridge.md`, "Cycles").
#[derive(Debug, Default)]
pub struct PulledTopics(RwLock<HashSet<String>>);

impl PulledTopics {
    /// Whether `topic` is (or will be) written by a pull mirror.
    pub fn contains(&self, topic: &str) -> bool {
        self.0.read().map(|s| s.contains(topic)).unwrap_or(false)
    }

    fn insert(&self, topic: String) {
        if let Ok(mut s) = self.0.write() {
            s.insert(topic);
        }
    }
}

/// The pull mirrors of a node.
pub struct Downstream {
    broker: Arc<Broker>,
    node: String,
    mirrors: Vec<Arc<Mirror>>,
    shutdown: CancellationToken,
    pulled: Arc<PulledTopics>,
}

/// (local topic, remote alias, remote topic, remote partition): one pull task each.
type TaskKey = (String, String, String, i32);

impl Downstream {
    /// Pull mirrors `mirrors` into `broker`. The local names of literally named topics are
    /// registered in `pulled` at once, so push mirrors never pick them up.
    pub fn new(
        broker: Arc<Broker>,
        node: String,
        mirrors: Vec<Arc<Mirror>>,
        shutdown: CancellationToken,
        pulled: Arc<PulledTopics>,
    ) -> Downstream {
        let mut keep = Vec::new();
        for m in mirrors {
            if let Err(e) = m.config.validate_for_node(&node) {
                tracing::error!(target = %m.config.target, error = %e, "pull mirror not started");
                continue;
            }
            for t in &m.config.topics {
                pulled.insert(m.config.target_topic(&node, t));
            }
            keep.push(m);
        }
        Downstream {
            broker,
            node,
            mirrors: keep,
            shutdown,
            pulled,
        }
    }

    /// Run until shutdown: discover the remote topics of every pull mirror (every few seconds)
    /// and run one task per remote partition.
    pub async fn run(self) {
        let tasks = tokio_util::task::TaskTracker::new();
        let running: Arc<Mutex<HashSet<TaskKey>>> = Arc::default();
        let this = Arc::new(self);
        for m in &this.mirrors {
            let (this, m, running, t2) = (this.clone(), m.clone(), running.clone(), tasks.clone());
            tasks.spawn(async move { this.discover(m, running, t2).await });
        }
        tasks.close();
        tasks.wait().await;
    }

    async fn discover(
        &self,
        mirror: Arc<Mirror>,
        running: Arc<Mutex<HashSet<TaskKey>>>,
        tasks: tokio_util::task::TaskTracker,
    ) {
        let mut backoff = 100u64;
        let mut missing_logged: HashSet<String> = HashSet::new();
        loop {
            let wait = match remote_topics(&mirror, &self.shutdown).await {
                Ok(topics) => {
                    backoff = 100;
                    for (topic, partitions) in topics {
                        if partitions == 0 {
                            if missing_logged.insert(topic.clone()) {
                                tracing::info!(target = %mirror.config.target, topic = %topic,
                                    "remote topic to pull does not exist (yet)");
                            }
                            continue;
                        }
                        self.start_topic(&mirror, &topic, partitions, &running, &tasks)
                            .await;
                    }
                    REFRESH
                }
                Err(DownstreamError::Stopped) => return,
                Err(e) => {
                    tracing::warn!(target = %mirror.config.target, error = %e, backoff_ms = backoff,
                        "pull mirror: cannot list remote topics; retrying");
                    let w = Duration::from_millis(backoff / 2 + jitter_ms(backoff / 2 + 1));
                    backoff = (backoff * 2).min(5_000);
                    w
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Create the local topic if missing and start a task for every new remote partition.
    async fn start_topic(
        &self,
        mirror: &Arc<Mirror>,
        topic: &str,
        partitions: i32,
        running: &Mutex<HashSet<TaskKey>>,
        tasks: &tokio_util::task::TaskTracker,
    ) {
        // Topics that came from this node (e.g. `edge-01.telemetry` at central) are never
        // pulled back; their records would be skipped anyway.
        if topic.starts_with(&format!("{}.", self.node)) || !mirror.selects(topic) {
            return;
        }
        let local = mirror.config.target_topic(&self.node, topic);
        if local.starts_with("__") {
            tracing::error!(topic, local = %local, "pull mirror would write an internal topic; skipped");
            return;
        }
        self.pulled.insert(local.clone());
        if self.broker.topic(&local).is_none() {
            let (broker, name) = (self.broker.clone(), local.clone());
            let created = tokio::task::spawn_blocking(move || {
                broker.create_topic(&name, partitions, &BTreeMap::new(), false)
            })
            .await;
            match created {
                Ok(Ok(_)) => {
                    tracing::info!(local = %local, partitions, "created the local topic of a pull mirror");
                }
                Ok(Err(BrokerError::TopicAlreadyExists(_))) => {}
                Ok(Err(e)) => {
                    tracing::warn!(local = %local, error = %e, "cannot create the local topic of a pull mirror");
                    return;
                }
                Err(e) => {
                    tracing::warn!(local = %local, error = %e, "creating a local topic panicked");
                    return;
                }
            }
        }
        let alias = mirror.config.remote_alias().to_string();
        for p in 0..partitions {
            let key = (local.clone(), alias.clone(), topic.to_string(), p);
            let fresh = running.lock().map(|mut r| r.insert(key)).unwrap_or(false);
            if !fresh {
                continue;
            }
            let task = PartitionPull {
                broker: self.broker.clone(),
                node: self.node.clone(),
                mirror: mirror.clone(),
                alias: alias.clone(),
                remote_topic: topic.to_string(),
                partition: p,
                local_topic: local.clone(),
                shutdown: self.shutdown.clone(),
            };
            tasks.spawn(task.run());
        }
    }
}

/// Run `f` unless the bridge shuts down first.
async fn until_stop<T>(
    shutdown: &CancellationToken,
    f: impl Future<Output = Result<T, DownstreamError>>,
) -> Result<T, DownstreamError> {
    tokio::select! {
        _ = shutdown.cancelled() => Err(DownstreamError::Stopped),
        r = f => r,
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

async fn connect_any(mirror: &Mirror) -> Result<Connection, DownstreamError> {
    let mut last = None;
    for addr in mirror.config.target.split(',') {
        match Connection::connect_with(addr.trim(), &mirror.security, REQUEST_TIMEOUT).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .map(DownstreamError::from)
        .unwrap_or_else(|| DownstreamError::Remote("no bootstrap address".into())))
}

/// Metadata of the remote cluster: all topics when the mirror has a regex, else its named ones.
async fn metadata(
    conn: &mut Connection,
    topics: Option<Vec<String>>,
) -> Result<MetadataResponse, DownstreamError> {
    let req = MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(str_bytes(t)))))
                .collect()
        }))
        .with_allow_auto_topic_creation(false);
    Ok(conn.call(&req, 9).await?)
}

/// The remote topics a pull mirror selects, with their partition counts (0: does not exist).
async fn remote_topics(
    mirror: &Mirror,
    shutdown: &CancellationToken,
) -> Result<Vec<(String, i32)>, DownstreamError> {
    until_stop(shutdown, async {
        let mut conn = connect_any(mirror).await?;
        let want = if mirror.config.topics_regex.is_some() {
            None
        } else {
            Some(mirror.config.topics.clone())
        };
        let md = metadata(&mut conn, want).await?;
        let mut out = Vec::new();
        for t in md.topics {
            let Some(name) = t.name else { continue };
            let name = name.0.to_string();
            if t.is_internal || !mirror.selects(&name) {
                continue;
            }
            let n = if t.error_code == 0 {
                t.partitions.len() as i32
            } else {
                0
            };
            out.push((name, n));
        }
        Ok(out)
    })
    .await
}

/// The remote offset carried by the last local record in `log` whose `rill.origin` header
/// names `alias`/`topic`/`partition` (None: no such record). Scans backwards from the high
/// watermark in growing windows (1, 16, 256, ... records), so the common case (the newest
/// record is the last pulled one) reads one batch.
pub fn last_pulled(
    log: &PartitionLog,
    alias: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>, LogError> {
    let end = log.high_watermark();
    let mut hi = end;
    let mut window = 1i64;
    loop {
        let start = log.log_start_offset();
        if hi <= start {
            return Ok(None);
        }
        let lo = (hi - window).max(start);
        let recs = match read_range(log, lo, hi) {
            Ok(r) => r,
            // Retention removed the start while scanning: scan what is left.
            Err(LogError::OffsetOutOfRange { .. }) if log.log_start_offset() > lo => continue,
            Err(e) => return Err(e),
        };
        for r in recs.iter().rev() {
            if let Some(Some(v)) = header(r, ORIGIN_HEADER) {
                if let Some((n, t, p, o)) = parse_origin(v) {
                    if n == alias && t == topic && p == partition {
                        return Ok(Some(o));
                    }
                }
            }
        }
        hi = lo;
        window = (window * 16).min(MAX_SCAN_WINDOW);
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
        let batches = whole_batches(&rr.records).map_err(|reason| LogError::Corrupt {
            file: log.dir().to_path_buf(),
            position: 0,
            reason,
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

/// The complete v2 batches at the start of `buf` with their headers (a Kafka broker may end a
/// Fetch response with a partial batch; it is left for the next fetch). A header that is
/// complete but invalid (e.g. an old message format) is an error.
fn whole_batches(buf: &Bytes) -> Result<Vec<(Bytes, BatchHeader)>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < buf.len() {
        if buf.len() - at < BATCH_HEADER_LEN {
            break;
        }
        let h = BatchHeader::parse(&buf[at..]).map_err(|e| e.to_string())?;
        let len = h.total_len();
        if at + len > buf.len() {
            break;
        }
        out.push((buf.slice(at..at + len), h));
        at += len;
    }
    Ok(out)
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
struct PartitionPull {
    broker: Arc<Broker>,
    node: String,
    mirror: Arc<Mirror>,
    alias: String,
    remote_topic: String,
    partition: i32,
    local_topic: String,
    shutdown: CancellationToken,
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
    async fn run(self) {
        let mut backoff = 100u64;
        loop {
            let started = std::time::Instant::now();
            match self.session().await {
                Ok(()) | Err(DownstreamError::Stopped) => return,
                Err(e) => {
                    if started.elapsed() > Duration::from_secs(10) {
                        backoff = 100;
                    }
                    tracing::warn!(topic = %self.remote_topic, partition = self.partition,
                        remote = %self.mirror.config.target, error = %e, backoff_ms = backoff,
                        "pull session failed; reconnecting");
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

    /// A connection to the leader of the remote partition.
    async fn leader(&self) -> Result<Connection, DownstreamError> {
        let mut conn = connect_any(&self.mirror).await?;
        let md = metadata(&mut conn, Some(vec![self.remote_topic.clone()])).await?;
        let t = md
            .topics
            .first()
            .ok_or_else(|| DownstreamError::Remote("no topic in metadata".into()))?;
        if t.error_code != 0 {
            return Err(DownstreamError::Remote(format!(
                "metadata of {}: error {}",
                self.remote_topic, t.error_code
            )));
        }
        let leader = t
            .partitions
            .iter()
            .find(|p| p.partition_index == self.partition)
            .map(|p| p.leader_id)
            .ok_or_else(|| {
                DownstreamError::Remote(format!("partition {} is gone", self.partition))
            })?;
        let b = md
            .brokers
            .iter()
            .find(|b| b.node_id == leader)
            .ok_or_else(|| DownstreamError::Remote(format!("no leader ({})", leader.0)))?;
        let addr = format!("{}:{}", b.host, b.port);
        if addr != conn.addr() {
            conn = Connection::connect_with(&addr, &self.mirror.security, REQUEST_TIMEOUT).await?;
        }
        Ok(conn)
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
        tokio::task::spawn_blocking(move || {
            let mut done = HashMap::new();
            for (t, log) in logs {
                // Make an earlier session's appends durable and visible (high watermark)
                // before looking for them, should its flush have failed.
                log.flush_to(log.log_end_offset() - 1)?;
                done.insert(t, last_pulled(&log, &alias, &topic, p)?.unwrap_or(-1));
            }
            Ok(done)
        })
        .await
        .map_err(|e| DownstreamError::Local(e.to_string()))?
    }

    async fn session(&self) -> Result<(), DownstreamError> {
        let mut done = self.resume().await?;
        let n = self
            .broker
            .topic(&self.local_topic)
            .map(|t| t.partitions)
            .unwrap_or(1);
        let mut pos = done.values().copied().min().unwrap_or(-1) + 1;
        let mut conn = until_stop(&self.shutdown, self.leader()).await?;
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
            let part = until_stop(&self.shutdown, async {
                Ok(conn.fetch_partition(&fetch).await?)
            })
            .await?;
            if part.error_code == ERR_OFFSET_OUT_OF_RANGE {
                pos = self.out_of_range(&mut conn, pos).await?;
                continue;
            }
            if part.error_code != 0 {
                return Err(DownstreamError::Remote(format!(
                    "Fetch error {}",
                    part.error_code
                )));
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
                        if let Some(Some(v)) = header(&r, ORIGIN_HEADER) {
                            if parse_origin(v).is_some_and(|o| o.0 == self.node) {
                                continue;
                            }
                        }
                        let t = target_partition(self.partition, n, r.key.as_deref());
                        if done.get(&t).copied().unwrap_or(-1) >= r.offset {
                            continue;
                        }
                        let mut headers = r.headers.clone();
                        headers.insert(
                            StrBytes::from_static_str(ORIGIN_HEADER),
                            Some(Bytes::from(origin_value(
                                &self.alias,
                                &self.remote_topic,
                                self.partition,
                                r.offset,
                            ))),
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
    async fn out_of_range(&self, conn: &mut Connection, pos: i64) -> Result<i64, DownstreamError> {
        let start = self.list_offset(conn, -2).await?;
        let end = self.list_offset(conn, -1).await?;
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

    async fn list_offset(&self, conn: &mut Connection, ts: i64) -> Result<i64, DownstreamError> {
        until_stop(&self.shutdown, async {
            Ok(conn
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
                h.insert(
                    StrBytes::from_static_str(ORIGIN_HEADER),
                    Some(Bytes::from(origin_value(a, t, p, o + i))),
                );
            }
            b.push_with_headers(None, Some(Bytes::from(format!("v{i}"))), 1000 + i, h);
        }
        let info = log.append(&b.build().unwrap()).unwrap();
        log.flush_to(info.last_offset).unwrap();
    }

    #[test]
    fn resume_position_is_the_last_pulled_record_of_that_remote_partition() {
        let dir = tempfile::tempdir().unwrap();
        let broker = open(dir.path());
        broker
            .create_topic("commands", 2, &BTreeMap::new(), false)
            .unwrap();
        let log = broker.partition("commands", 0).unwrap();
        // Nothing pulled yet (empty log, then only local records).
        assert_eq!(last_pulled(&log, "central", "commands", 0).unwrap(), None);
        append(&log, 3, None);
        assert_eq!(last_pulled(&log, "central", "commands", 0).unwrap(), None);
        // Remote partition 0 offsets 10..15, interleaved with remote partition 1 (key-hash
        // mapping), another alias, and local records.
        append(&log, 5, Some(("central", "commands", 0, 10)));
        append(&log, 4, Some(("central", "commands", 1, 0)));
        append(&log, 2, Some(("hq", "commands", 0, 99)));
        assert_eq!(
            last_pulled(&log, "central", "commands", 0).unwrap(),
            Some(14)
        );
        assert_eq!(
            last_pulled(&log, "central", "commands", 1).unwrap(),
            Some(3)
        );
        assert_eq!(last_pulled(&log, "hq", "commands", 0).unwrap(), Some(100));
        assert_eq!(last_pulled(&log, "central", "other", 0).unwrap(), None);
        // Many newer local records: the scan widens its window (1, 16, 256, 4096, ...).
        for _ in 0..30 {
            append(&log, 200, None);
        }
        assert_eq!(
            last_pulled(&log, "central", "commands", 0).unwrap(),
            Some(14)
        );
        assert_eq!(
            last_pulled(&log, "central", "commands", 1).unwrap(),
            Some(3)
        );
        // Continuing later: the newest pulled record wins.
        append(&log, 1, Some(("central", "commands", 0, 15)));
        assert_eq!(
            last_pulled(&log, "central", "commands", 0).unwrap(),
            Some(15)
        );
        // Survives a restart (read from the log itself, no checkpoint).
        drop(log);
        broker.shutdown().unwrap();
        drop(broker);
        let broker = open(dir.path());
        let log = broker.partition("commands", 0).unwrap();
        assert_eq!(
            last_pulled(&log, "central", "commands", 0).unwrap(),
            Some(15)
        );
        let other = broker.partition("commands", 1).unwrap();
        assert_eq!(last_pulled(&other, "central", "commands", 1).unwrap(), None);
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
