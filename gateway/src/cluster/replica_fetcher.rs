//! The follower side of partition replication (Kafka's `ReplicaFetcherManager` and
//! `ReplicaFetcherThread`): one task per leader broker fetches every partition this node follows
//! on it, with Fetch requests carrying this node's replica id and broker epoch (`ReplicaState`,
//! v15+; `replica_id` before), each partition's current leader epoch and last fetched epoch
//! (KIP-320).
//!
//! Per partition answer: records are appended as the leader wrote them and fsynced (under
//! `flush = "always"`) before the next fetch, so the fetch offset the leader sees is durable
//! here; this replica's high watermark becomes min(leader's high watermark, its durable end). A
//! diverging epoch truncates the log to where it agrees with the leader's and the next fetch
//! compares again (KIP-279). Routing errors (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH,
//! UNKNOWN_LEADER_EPOCH, unknown partition) and connection errors back off; each round takes the
//! partitions and their leaders afresh from the [`ReplicaManager`], which the metadata image
//! drives, and a broken connection is reopened through the [`LeaderConnector`] (which resolves
//! the broker's address again). The transport is a [`LeaderChannel`]: a rill-client
//! [`Connection`] ([`DirectConnector`]) or the cluster module's authenticated peer connection.
//!
//! The leader's log start offset comes with every answer: this replica's log start follows it
//! (up to its own high watermark), so the leader's retention and DeleteRecords reach the
//! replicas. OFFSET_OUT_OF_RANGE comes with the leader's log start (a Rill leader names it;
//! Kafka's followers ask ListOffsets): a follower whose log ends below it truncates fully and
//! starts there ([`ReplicaManager::reset_out_of_range`]). A log end beyond the leader's (only
//! an unclean election leaves one; Rill has none) backs off and logs.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rill_client::{ClientError, ConnectOptions, Connection};
use rill_core::replica::{EpochEndOffset, FetchPosition, ReplicaError, ReplicaManager};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The Fetch version followers send: v15 carries `ReplicaState` (replica id and broker epoch,
/// KIP-903) and topic ids; every Rill node serves it (rill-client negotiates at most v12 for
/// consumers, so the fetcher sets the version itself).
pub const REPLICA_FETCH_VERSION: i16 = 15;

/// Fetcher settings, Kafka's `replica.fetch.*` names in their comments.
#[derive(Debug, Clone)]
pub struct ReplicaFetcherConfig {
    /// `replica.fetch.wait.max.ms`: how long the leader may hold a fetch with no new data.
    pub max_wait: Duration,
    /// `replica.fetch.min.bytes`.
    pub min_bytes: i32,
    /// `replica.fetch.max.bytes`: per partition.
    pub partition_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`.
    pub max_bytes: i32,
    /// `replica.fetch.backoff.ms`: the pause after an error.
    pub backoff: Duration,
}

impl Default for ReplicaFetcherConfig {
    fn default() -> Self {
        ReplicaFetcherConfig {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            partition_max_bytes: 1 << 20,
            max_bytes: 10 << 20,
            backoff: Duration::from_millis(1000),
        }
    }
}

/// Why a fetch round failed.
#[derive(Debug, thiserror::Error)]
pub enum FetcherError {
    /// The metadata image names no cluster address for the leader.
    #[error("no cluster address is known for broker {0}")]
    UnknownBroker(i32),
    /// Connecting or talking to the leader failed (rill-client).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Connecting or talking to the leader failed (another [`LeaderChannel`]).
    #[error("cannot reach broker {leader}: {source}")]
    Transport {
        leader: i32,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The whole Fetch was refused.
    #[error("broker {leader} refused the fetch: {code:?}")]
    Refused { leader: i32, code: ResponseError },
    /// Appending or truncating here failed.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// A blocking log task panicked.
    #[error("log task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What [`LeaderChannel::fetch`] yields.
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<FetchResponse, FetcherError>> + Send + 'a>>;

/// A connection to one leader's cluster listener that carries replica Fetch requests (a
/// rill-client [`Connection`], or the cluster module's authenticated peer connection).
pub trait LeaderChannel: Send {
    /// Send `req` as Fetch `version` and wait for its response.
    fn fetch<'a>(&'a mut self, version: i16, req: &'a FetchRequest) -> FetchFuture<'a>;
}

impl LeaderChannel for Connection {
    fn fetch<'a>(&'a mut self, version: i16, req: &'a FetchRequest) -> FetchFuture<'a> {
        Box::pin(async move { Ok(self.send_with_version(req, version).await?) })
    }
}

/// What [`LeaderConnector::connect`] yields.
pub type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<Box<dyn LeaderChannel>, FetcherError>> + Send>>;

/// Opens a channel to a broker's cluster listener, ready for requests (authenticated as the
/// cluster listener requires). The fetcher opens a new one after any error.
pub trait LeaderConnector: Send + Sync + 'static {
    /// A channel to broker `broker_id` (its address as the newest metadata image has it).
    fn connect(&self, broker_id: i32) -> ConnectFuture;
}

/// A [`LeaderConnector`] that opens rill-client connections (TCP or TLS, optional SASL, as
/// `options` say) to the address `addresses` names for a broker.
pub struct DirectConnector {
    addresses: Arc<dyn Fn(i32) -> Option<String> + Send + Sync>,
    options: ConnectOptions,
}

impl DirectConnector {
    /// Connects to `addresses(broker_id)` with `options`.
    pub fn new(
        addresses: Arc<dyn Fn(i32) -> Option<String> + Send + Sync>,
        options: ConnectOptions,
    ) -> Self {
        DirectConnector { addresses, options }
    }
}

impl LeaderConnector for DirectConnector {
    fn connect(&self, broker_id: i32) -> ConnectFuture {
        let addr = (self.addresses)(broker_id);
        let options = self.options.clone();
        Box::pin(async move {
            let addr = addr.ok_or(FetcherError::UnknownBroker(broker_id))?;
            let conn = Connection::connect(&addr, &options).await?;
            Ok(Box::new(conn) as Box<dyn LeaderChannel>)
        })
    }
}

/// Run one fetcher per leader broker this node follows partitions of, until `shutdown`:
/// fetchers start and stop as the replica manager's partitions change role.
pub async fn run(
    replicas: Arc<ReplicaManager>,
    connector: Arc<dyn LeaderConnector>,
    config: ReplicaFetcherConfig,
    shutdown: CancellationToken,
) {
    let mut changes = replicas.watch_changes();
    let mut fetchers: HashMap<i32, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    loop {
        changes.borrow_and_update();
        let leaders = replicas.leaders_followed();
        fetchers.retain(|leader, (stop, _)| {
            let keep = leaders.contains(leader);
            if !keep {
                tracing::info!(leader, "stopping replica fetcher");
                stop.cancel();
            }
            keep
        });
        for leader in leaders {
            fetchers.entry(leader).or_insert_with(|| {
                tracing::info!(leader, "starting replica fetcher");
                let stop = shutdown.child_token();
                let task = tokio::spawn(fetch_from(
                    leader,
                    replicas.clone(),
                    connector.clone(),
                    config.clone(),
                    stop.clone(),
                ));
                (stop, task)
            });
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = changes.changed() => if r.is_err() { break },
        }
    }
    for (_, (stop, task)) in fetchers {
        stop.cancel();
        let _ = task.await;
    }
}

/// One leader's fetcher (Kafka's `ReplicaFetcherThread`), until `stop`.
async fn fetch_from(
    leader: i32,
    replicas: Arc<ReplicaManager>,
    connector: Arc<dyn LeaderConnector>,
    config: ReplicaFetcherConfig,
    stop: CancellationToken,
) {
    let mut conn: Option<Box<dyn LeaderChannel>> = None;
    let mut changes = replicas.watch_changes();
    while !stop.is_cancelled() {
        let positions = replicas.fetch_positions(leader);
        if positions.is_empty() {
            changes.borrow_and_update();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = changes.changed() => continue,
            }
        }
        let round = async {
            if conn.is_none() {
                conn = Some(connector.connect(leader).await?);
            }
            let Some(c) = conn.as_mut() else {
                return Err(FetcherError::UnknownBroker(leader));
            };
            fetch_round(leader, &replicas, c.as_mut(), &config, &positions).await
        };
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            r = round => r,
        };
        let pause = match outcome {
            Ok(clean) => !clean,
            Err(e) => {
                tracing::warn!(leader, error = %e, "replica fetch failed; backing off");
                if matches!(
                    e,
                    FetcherError::Client(_)
                        | FetcherError::Transport { .. }
                        | FetcherError::UnknownBroker(_)
                        | FetcherError::Refused { .. }
                ) {
                    conn = None;
                }
                true
            }
        };
        if pause {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(config.backoff) => {}
            }
        }
    }
}

/// The Fetch request for `positions` in `version`.
fn fetch_request(
    version: i16,
    replica_id: i32,
    replica_epoch: i64,
    config: &ReplicaFetcherConfig,
    positions: &[FetchPosition],
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for pos in positions {
        let partition = FetchPartition::default()
            .with_partition(pos.partition)
            .with_current_leader_epoch(pos.current_leader_epoch)
            .with_fetch_offset(pos.fetch_offset)
            .with_last_fetched_epoch(if version >= 12 {
                pos.last_fetched_epoch
            } else {
                -1
            })
            .with_log_start_offset(-1)
            .with_partition_max_bytes(config.partition_max_bytes);
        let same = |t: &FetchTopic| {
            if version >= 13 {
                t.topic_id == pos.topic_id
            } else {
                t.topic.0.as_str() == pos.topic
            }
        };
        match topics.iter_mut().find(|t| same(t)) {
            Some(t) => t.partitions.push(partition),
            None => {
                let t = if version >= 13 {
                    FetchTopic::default().with_topic_id(pos.topic_id)
                } else {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(pos.topic.clone())))
                };
                topics.push(t.with_partitions(vec![partition]));
            }
        }
    }
    let req = FetchRequest::default()
        .with_max_wait_ms(i32::try_from(config.max_wait.as_millis()).unwrap_or(i32::MAX))
        .with_min_bytes(config.min_bytes)
        .with_max_bytes(config.max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics);
    if version >= 15 {
        req.with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(replica_id))
                .with_replica_epoch(replica_epoch),
        )
    } else {
        req.with_replica_id(BrokerId(replica_id))
    }
}

/// One fetch from `leader` and the handling of its answer. `Ok(true)`: every partition was
/// served; `Ok(false)`: some answered with an error (the caller backs off).
async fn fetch_round(
    leader: i32,
    replicas: &Arc<ReplicaManager>,
    conn: &mut dyn LeaderChannel,
    config: &ReplicaFetcherConfig,
    positions: &[FetchPosition],
) -> Result<bool, FetcherError> {
    let version = REPLICA_FETCH_VERSION;
    let req = fetch_request(
        version,
        replicas.broker_id(),
        replicas.local_broker_epoch(),
        config,
        positions,
    );
    let resp = conn.fetch(version, &req).await?;
    if let Some(code) = ResponseError::try_from_code(resp.error_code) {
        return Err(FetcherError::Refused { leader, code });
    }
    let mut clean = true;
    for t in resp.responses {
        for p in t.partitions {
            let Some(pos) = positions.iter().find(|pos| {
                pos.partition == p.partition_index
                    && if version >= 13 {
                        pos.topic_id == t.topic_id
                    } else {
                        pos.topic == t.topic.0.as_str()
                    }
            }) else {
                continue;
            };
            if let Some(code) = ResponseError::try_from_code(p.error_code) {
                clean = false;
                if code == ResponseError::OffsetOutOfRange && p.log_start_offset >= 0 {
                    // Rill's leaders name their log start with the error (Kafka's send -1
                    // there and their followers ask ListOffsets).
                    let (rm, topic, partition, epoch) = (
                        replicas.clone(),
                        pos.topic.clone(),
                        pos.partition,
                        pos.current_leader_epoch,
                    );
                    let start = p.log_start_offset;
                    let reset = tokio::task::spawn_blocking(move || {
                        rm.reset_out_of_range(&topic, partition, epoch, start)
                    })
                    .await?;
                    match reset {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(
                            leader,
                            topic = %pos.topic,
                            partition = pos.partition,
                            fetch_offset = pos.fetch_offset,
                            leader_log_start = start,
                            "replica fetch out of range, not below the leader's log start"
                        ),
                        Err(e) => tracing::warn!(
                            leader,
                            topic = %pos.topic,
                            partition = pos.partition,
                            error = %e,
                            "resetting an out-of-range follower log failed"
                        ),
                    }
                    continue;
                }
                match code {
                    ResponseError::NotLeaderOrFollower
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::UnknownTopicId => tracing::debug!(
                        leader,
                        topic = %pos.topic,
                        partition = pos.partition,
                        ?code,
                        "leader moved or not known there yet; waiting for metadata"
                    ),
                    _ => tracing::warn!(
                        leader,
                        topic = %pos.topic,
                        partition = pos.partition,
                        fetch_offset = pos.fetch_offset,
                        ?code,
                        "replica fetch of a partition refused"
                    ),
                }
                continue;
            }
            let (rm, topic, partition, epoch) = (
                replicas.clone(),
                pos.topic.clone(),
                pos.partition,
                pos.current_leader_epoch,
            );
            if p.diverging_epoch.epoch >= 0 {
                let diverging = EpochEndOffset {
                    leader_epoch: p.diverging_epoch.epoch,
                    end_offset: p.diverging_epoch.end_offset,
                };
                tokio::task::spawn_blocking(move || {
                    rm.truncate_on_divergence(&topic, partition, epoch, diverging)
                })
                .await??;
                continue;
            }
            let records: Bytes = p.records.unwrap_or_default();
            let (hw, log_start) = (p.high_watermark, p.log_start_offset);
            let appended = tokio::task::spawn_blocking(move || {
                rm.append_fetched(&topic, partition, epoch, &records, hw, log_start)
            })
            .await?;
            if let Err(e) = appended {
                // Leadership changed under the fetch (the next round sees it), or the disk
                // failed (reported; the node's storage error policy applies).
                tracing::warn!(leader, topic = %pos.topic, partition, error = %e, "follower append failed");
                clean = false;
            }
        }
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
    use rill_core::batch::BatchBuilder;
    use rill_core::broker::{Broker, BrokerConfig};
    use rill_core::clock::system_clock;
    use rill_core::controller::{
        Command, CommandOutcome, ControllerRequest, Endpoint, MetadataImage,
    };
    use rill_core::crypto::Encryption;
    use rill_core::io::OsStorage;
    use rill_core::keyring::KeySource;
    use rill_core::log::{FlushPolicy, LogOptions, PartitionLog};
    use rill_core::replica::{
        AlterPartitionError, AlterPartitionFuture, AlterPartitionManager, AlterPartitionRequest,
        ReplicaManagerConfig, RequiredAcks,
    };
    use rill_core::topic_config::TopicConfig;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::kafka::context::{Context, ListenerKind};
    use crate::metrics::Metrics;

    /// AlterPartition applied to a real metadata image (the controller's state machine).
    #[derive(Clone)]
    struct ImageController(Arc<Mutex<(MetadataImage, u64)>>);

    impl ImageController {
        fn run(&self, command: Command) -> CommandOutcome {
            let mut g = self.0.lock().unwrap();
            g.1 += 1;
            let index = g.1;
            g.0.apply(index, &ControllerRequest::new(command))
                .expect("command applies")
        }
        fn image(&self) -> Arc<MetadataImage> {
            Arc::new(self.0.lock().unwrap().0.clone())
        }
    }

    impl AlterPartitionManager for ImageController {
        fn submit(&self, request: AlterPartitionRequest) -> AlterPartitionFuture {
            let this = self.clone();
            Box::pin(async move {
                let mut g = this.0.lock().unwrap();
                g.1 += 1;
                let index = g.1;
                match g.0.apply(index, &ControllerRequest::new(request.command())) {
                    Ok(CommandOutcome::Partition(state)) => Ok(state),
                    Ok(other) => Err(AlterPartitionError::Unavailable(format!("{other:?}"))),
                    Err(e) => Err(AlterPartitionError::Rejected(e)),
                }
            })
        }
    }

    fn batch(values: &[&str]) -> Bytes {
        let mut b = BatchBuilder::new();
        for v in values {
            b.push(None, Some(Bytes::copy_from_slice(v.as_bytes())), 1);
        }
        b.build().unwrap()
    }

    fn open_log(dir: &std::path::Path, topic_id: uuid::Uuid) -> Arc<PartitionLog> {
        Arc::new(
            PartitionLog::open(
                dir.join("t-0"),
                LogOptions {
                    topic_id,
                    topic: "t".into(),
                    partition: 0,
                    config: TopicConfig::default(),
                    flush: FlushPolicy::Always,
                    encryption: Encryption::Off,
                    storage: Arc::new(OsStorage),
                    observer: rill_core::storage_observer::none(),
                },
            )
            .unwrap(),
        )
    }

    /// A Kafka listener of broker 1 serving `replicas`, as `listener`; returns its address.
    async fn serve(
        dir: &std::path::Path,
        replicas: Arc<ReplicaManager>,
        listener: ListenerKind,
        shutdown: CancellationToken,
    ) -> String {
        let broker = Broker::open(BrokerConfig::new(
            dir.join("node"),
            KeySource::File(dir.join("master.key")),
        ))
        .unwrap();
        let groups = crate::kafka::groups::open(broker.clone(), Default::default()).unwrap();
        let ctx = Arc::new(Context {
            broker: broker.clone(),
            groups,
            node_id: 1,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 0,
            listener_name: crate::kafka::cluster_view::KAFKA_LISTENER.to_string(),
            cluster_id: broker.cluster_id(),
            socket_request_max_bytes: 100 << 20,
            memory: crate::memory_budget::MemoryBudget::unlimited(),
            broker_configs: Vec::new(),
            metrics: Arc::new(Metrics::new(&crate::metrics::MetricsConfig::default())),
            authorization: None,
            shutdown: shutdown.clone(),
            producer_ids: Arc::new(crate::kafka::producer_id_manager::ProducerIdManager::new(
                Arc::new(rill_core::producer_state::ProducerIdAllocator::new(
                    broker.metadata_handle(),
                )),
            )),
            sasl: None,
            credentials: Arc::new(
                rill_core::credentials::CredentialStore::open(broker.metadata_handle()).unwrap(),
            ),
            cluster: None,
            coordinators: None,
            listener,
            replicas: Some(replicas),
        });
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap().to_string();
        tokio::spawn(crate::kafka::server::run(
            ctx,
            tcp,
            None::<crate::kafka::server::ListenerTls>,
            shutdown,
            TaskTracker::new(),
            rill_core::liveness::Liveness::new(),
        ));
        addr
    }

    struct Cluster {
        controller: ImageController,
        topic_id: uuid::Uuid,
    }

    impl Cluster {
        /// Broker `id`'s replica manager, on the controller's current image.
        fn replica_manager(&self, id: i32) -> Arc<ReplicaManager> {
            let rm = ReplicaManager::new(
                ReplicaManagerConfig::new(id),
                system_clock(),
                Arc::new(self.controller.clone()),
            );
            rm.update_image(self.controller.image());
            rm
        }
    }

    /// Serves broker 1 (`leader`) on a cluster listener and runs broker 2's (`follower`)
    /// fetcher against it until `shutdown`: the listener's address and the fetcher task.
    async fn follow_over_the_wire(
        dir: &std::path::Path,
        leader: &Arc<ReplicaManager>,
        follower: &Arc<ReplicaManager>,
        shutdown: &CancellationToken,
    ) -> (String, JoinHandle<()>) {
        let addr = serve(dir, leader.clone(), ListenerKind::Cluster, shutdown.clone()).await;
        let leader_addr = addr.clone();
        let addresses: Arc<dyn Fn(i32) -> Option<String> + Send + Sync> =
            Arc::new(move |id| (id == 1).then(|| leader_addr.clone()));
        let connector = Arc::new(DirectConnector::new(addresses, ConnectOptions::default()));
        let config = ReplicaFetcherConfig {
            backoff: Duration::from_millis(50),
            ..Default::default()
        };
        let fetcher = tokio::spawn(run(follower.clone(), connector, config, shutdown.clone()));
        (addr, fetcher)
    }

    /// Brokers 1 and 2, topic `t` on [2, 1]; 2 led epoch 0, then was fenced: 1 leads epoch 1.
    fn cluster() -> Cluster {
        let controller = ImageController(Arc::new(Mutex::new(Default::default())));
        controller.run(Command::Bootstrap {
            cluster_id: "c".into(),
            scram_credentials: vec![],
        });
        for b in [1, 2] {
            let CommandOutcome::BrokerRegistered { broker_epoch } =
                controller.run(Command::RegisterBroker {
                    broker_id: b,
                    incarnation_id: uuid::Uuid::new_v4(),
                    cluster_id: "c".into(),
                    listeners: vec![Endpoint {
                        name: "CLUSTER".into(),
                        host: "127.0.0.1".into(),
                        port: 0,
                        security_protocol: "PLAINTEXT".into(),
                    }],
                    rack: None,
                })
            else {
                panic!()
            };
            controller.run(Command::UnfenceBroker {
                broker_id: b,
                broker_epoch,
            });
        }
        let topic_id = uuid::Uuid::new_v4();
        controller.run(Command::CreateTopic {
            name: "t".into(),
            topic_id,
            configs: Default::default(),
            assignments: vec![vec![2, 1]],
        });
        let e2 = controller.image().broker(2).unwrap().broker_epoch;
        controller.run(Command::FenceBroker {
            broker_id: 2,
            broker_epoch: e2,
        });
        controller.run(Command::UnfenceBroker {
            broker_id: 2,
            broker_epoch: e2,
        });
        Cluster {
            controller,
            topic_id,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_truncates_its_divergent_suffix_and_replicates_over_the_wire() {
        let dir = tempfile::tempdir().unwrap();
        let c = cluster();
        let reg = c.controller.image().topic("t").unwrap().partitions[&0].clone();
        assert_eq!(
            (reg.leader, reg.leader_epoch, reg.isr.clone()),
            (1, 1, vec![1])
        );
        // Under epoch 0, 2 led and wrote a, b, x; 1 had fetched only a, b.
        let log1 = open_log(&dir.path().join("b1"), c.topic_id);
        let log2 = open_log(&dir.path().join("b2"), c.topic_id);
        for log in [&log1, &log2] {
            log.append(&batch(&["a", "b"])).unwrap();
        }
        log2.append(&batch(&["x"])).unwrap();
        for log in [&log1, &log2] {
            log.flush().unwrap();
        }
        let (rm1, rm2) = (c.replica_manager(1), c.replica_manager(2));
        rm1.become_leader("t", c.topic_id, 0, log1.clone(), &reg)
            .unwrap();
        rm2.become_follower("t", c.topic_id, 0, log2.clone(), &reg);
        let shutdown = CancellationToken::new();
        let (addr, fetcher) = follow_over_the_wire(dir.path(), &rm1, &rm2, &shutdown).await;
        // The leader takes more under epoch 1; 2 truncates x away, fetches, and rejoins the ISR.
        let info = rm1
            .append_records(
                "t",
                0,
                &batch(&["c", "d"]),
                RequiredAcks::Leader,
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(info.base_offset, 2);
        let p1 = rm1.partition("t", 0).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !p1.isr().contains(&2) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "2 never rejoined the ISR: {:?}",
                c.controller.image().topic("t").unwrap().partitions[&0]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A Kafka producer's acks=all (Produce through the listener) waits for 2's durable copy.
        let mut producer = Connection::connect(&addr, &ConnectOptions::default())
            .await
            .unwrap();
        let produce = |acks: i16, value: &str| {
            ProduceRequest::default()
                .with_acks(acks)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(&[value])))])])
        };
        let resp: ProduceResponse = producer.send(&produce(-1, "e")).await.unwrap();
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, 4));
        assert!(
            log1.high_watermark() >= 5,
            "acknowledged only once committed"
        );
        assert!(
            log2.flushed_offset() >= 5,
            "durable on the follower before the ack"
        );
        // acks=2 is not a Kafka value.
        let resp: ProduceResponse = producer.send(&produce(2, "f")).await.unwrap();
        assert_eq!(
            resp.responses[0].partition_responses[0].error_code,
            ResponseError::InvalidRequiredAcks.code()
        );
        while log2.high_watermark() < 5 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "2's high watermark stayed behind"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(log2.log_end_offset(), 5);
        assert!(log2.flushed_offset() >= 5);
        let values = |log: &PartitionLog| {
            let mut out = Vec::new();
            let mut next = 0;
            while next < log.log_end_offset() {
                let mut r = log
                    .read_up_to(next, 1 << 20, rill_core::log::ReadLimit::LogEnd)
                    .unwrap()
                    .records;
                for set in kafka_protocol::records::RecordBatchDecoder::decode_all(&mut r).unwrap()
                {
                    for rec in set.records {
                        next = rec.offset + 1;
                        out.push((rec.offset, rec.value.unwrap().to_vec()));
                    }
                }
            }
            out
        };
        let want: Vec<(i64, Vec<u8>)> = ["a", "b", "c", "d", "e"]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, v.as_bytes().to_vec()))
            .collect();
        assert_eq!(
            values(&log2),
            want,
            "x is gone, the leader's records are in"
        );
        assert_eq!(log2.latest_epoch(), Some(1));
        shutdown.cancel();
        fetcher.await.unwrap();
    }

    /// The leader's log start moved past everything a follower holds (DeleteRecords here, as
    /// retention would): the follower starts over at the leader's log start, fetches from
    /// there and rejoins the ISR; later the leader's log start moves again, and the follower's
    /// follows it.
    #[tokio::test]
    async fn a_follower_below_the_leaders_log_start_starts_over_there() {
        let dir = tempfile::tempdir().unwrap();
        let c = cluster();
        let reg = c.controller.image().topic("t").unwrap().partitions[&0].clone();
        let log1 = open_log(&dir.path().join("b1"), c.topic_id);
        let log2 = open_log(&dir.path().join("b2"), c.topic_id);
        // 2 had fetched a, b; the leader went on to 6 records and deleted the first 4.
        for log in [&log1, &log2] {
            log.append(&batch(&["a", "b"])).unwrap();
        }
        for v in ["c", "d", "e", "f"] {
            log1.append(&batch(&[v])).unwrap();
        }
        for log in [&log1, &log2] {
            log.flush().unwrap();
        }
        let (rm1, rm2) = (c.replica_manager(1), c.replica_manager(2));
        rm1.become_leader("t", c.topic_id, 0, log1.clone(), &reg)
            .unwrap();
        log1.update_high_watermark(6);
        assert_eq!(log1.high_watermark(), 6);
        assert_eq!(log1.delete_records_before(4).unwrap(), 4);
        rm2.become_follower("t", c.topic_id, 0, log2.clone(), &reg);
        let shutdown = CancellationToken::new();
        let (_, fetcher) = follow_over_the_wire(dir.path(), &rm1, &rm2, &shutdown).await;
        let p1 = rm1.partition("t", 0).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !p1.isr().contains(&2) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "2 never rejoined the ISR (its log: {}..{})",
                log2.log_start_offset(),
                log2.log_end_offset()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            (log2.log_start_offset(), log2.log_end_offset()),
            (4, 6),
            "started over at the leader's log start and fetched the rest"
        );
        assert!(log2.read(0, 1 << 20).is_err(), "a and b are gone");
        // The leader deletes more: the follower's log start follows (once it has the records
        // committed).
        rm1.append_records(
            "t",
            0,
            &batch(&["g"]),
            RequiredAcks::All,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(log1.delete_records_before(6).unwrap(), 6);
        rm1.append_records(
            "t",
            0,
            &batch(&["h"]),
            RequiredAcks::All,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        while log2.log_start_offset() < 6 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "2's log start stayed at {}",
                log2.log_start_offset()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(log2.log_end_offset(), 8);
        shutdown.cancel();
        fetcher.await.unwrap();
    }

    #[tokio::test]
    async fn a_replica_fetch_on_a_client_listener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = cluster();
        let reg = c.controller.image().topic("t").unwrap().partitions[&0].clone();
        let log1 = open_log(&dir.path().join("b1"), c.topic_id);
        log1.append(&batch(&["a"])).unwrap();
        let rm1 = c.replica_manager(1);
        rm1.become_leader("t", c.topic_id, 0, log1, &reg).unwrap();
        let shutdown = CancellationToken::new();
        let addr = serve(
            dir.path(),
            rm1.clone(),
            ListenerKind::Client,
            shutdown.clone(),
        )
        .await;
        let mut conn = Connection::connect(&addr, &ConnectOptions::default())
            .await
            .unwrap();
        let version = REPLICA_FETCH_VERSION;
        let pos = FetchPosition {
            topic: "t".into(),
            topic_id: c.topic_id,
            partition: 0,
            fetch_offset: 0,
            current_leader_epoch: 1,
            last_fetched_epoch: -1,
        };
        let req = fetch_request(version, 2, 7, &ReplicaFetcherConfig::default(), &[pos]);
        let resp: FetchResponse = conn.send_with_version(&req, version).await.unwrap();
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, ResponseError::TopicAuthorizationFailed.code());
        assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
        shutdown.cancel();
    }
}
