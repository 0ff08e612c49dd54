//! Group coordination in a cluster (Kafka's `GroupCoordinatorService` over its
//! `CoordinatorRuntime`): the coordinator of group G is the leader of partition
//! `abs(hashCode(G)) % N` of the internal topic `__consumer_offsets`, N its partition count
//! (`[cluster] offsets_topic_num_partitions`, fixed when the topic is created).
//!
//! This node runs one coordinator shard ([`GroupCoordinator`] over a [`PartitionOffsetStore`])
//! per `__consumer_offsets` partition it leads:
//! - when the metadata publisher makes this node the leader of such a partition
//!   ([`CoordinatorRuntime::on_become_leader`]), the shard is *loading*: it waits until this
//!   process is registered and unfenced in the image (not a restarted node acting on its stale
//!   copy of the metadata log) and the high watermark reached the new leader epoch's start offset (everything earlier leaders wrote is
//!   then committed), replays the partition up to it, and only then serves; group requests for it
//!   answer COORDINATOR_LOAD_IN_PROGRESS meanwhile,
//! - when the node stops leading it ([`CoordinatorRuntime::on_resign`]), the shard is dropped;
//!   group requests answer NOT_COORDINATOR and clients ask FindCoordinator again,
//! - a shard appends only under the leader epoch it was loaded in (the replica manager refuses
//!   other epochs), so at most one coordinator writes for a group even while an old leader has
//!   not yet heard of its replacement; and its offset commits are acknowledged only when
//!   committed (acks=all).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rill_core::clock::system_clock;
use rill_core::controller::MetadataImage;
use rill_core::group::OffsetStore;
use rill_core::group::{
    partition_for, CoordinatorPartitionWriter, GroupConfig, GroupCoordinator, GroupError,
    OffsetStoreError, PartitionOffsetStore, OFFSETS_TOPIC,
};
use rill_core::replica::{Partition, ReplicaError, ReplicaManager, RequiredAcks};
use rill_core::sync::RwLockExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long an offset commit waits for replication before COORDINATOR_NOT_AVAILABLE (the client
/// retries; Kafka bounds it by `offsets.commit.timeout.ms`, default 5 s).
pub const OFFSETS_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a loading shard checks whether the high watermark reached its epoch start.
const LOAD_POLL: Duration = Duration::from_millis(20);

/// Where one `__consumer_offsets` partition led here is.
enum ShardState {
    Loading,
    Active(Arc<GroupCoordinator>),
}

struct Shard {
    leader_epoch: i32,
    state: ShardState,
}

/// The coordinator shards of the `__consumer_offsets` partitions this node leads.
pub struct CoordinatorRuntime {
    config: GroupConfig,
    replicas: Arc<ReplicaManager>,
    handle: tokio::runtime::Handle,
    shards: RwLock<HashMap<i32, Shard>>,
    /// The partition count of `__consumer_offsets` in the newest image (0: not created yet).
    num_partitions: AtomicI32,
    /// `[cluster] offsets_topic_num_partitions`: the count it is created with.
    create_partitions: i32,
    /// This process's incarnation id.
    incarnation: Uuid,
    /// The newest image has this process's registration, unfenced (see [`Self::update_image`]).
    registered: AtomicBool,
}

/// Appends of one shard: the replica manager's leader append path, in the shard's leader epoch.
struct ReplicaWriter {
    replicas: Arc<ReplicaManager>,
    handle: tokio::runtime::Handle,
    partition: i32,
    leader_epoch: i32,
}

fn store_error(e: ReplicaError) -> OffsetStoreError {
    match e {
        ReplicaError::NotLeaderOrFollower { .. }
        | ReplicaError::FencedLeaderEpoch { .. }
        | ReplicaError::UnknownLeaderEpoch { .. }
        | ReplicaError::UnknownTopicOrPartition { .. } => {
            OffsetStoreError::NotCoordinator(e.to_string())
        }
        other => OffsetStoreError::Replication(other.to_string()),
    }
}

impl CoordinatorPartitionWriter for ReplicaWriter {
    fn append(&self, batch: Bytes, wait: bool) -> Result<i64, OffsetStoreError> {
        // The broken build of the fault suite acknowledges commits once they are durable here,
        // before any follower has them.
        let acks =
            if rill_core::failpoints::is_set(rill_core::failpoints::OFFSET_COMMIT_ACKS_LEADER) {
                RequiredAcks::Leader
            } else {
                RequiredAcks::All
            };
        let pending = self
            .replicas
            .append_to_leader_in_epoch(
                OFFSETS_TOPIC,
                self.partition,
                &batch,
                acks,
                self.leader_epoch,
            )
            .map_err(store_error)?;
        let base = pending.info().base_offset;
        if wait {
            self.handle
                .block_on(pending.wait(OFFSETS_COMMIT_TIMEOUT))
                .map_err(store_error)?;
        } else {
            let partition = self.partition;
            self.handle.spawn(async move {
                if let Err(e) = pending.wait(OFFSETS_COMMIT_TIMEOUT).await {
                    tracing::warn!(partition, error = %e, "group metadata write to __consumer_offsets not replicated");
                }
            });
        }
        Ok(base)
    }
}

impl CoordinatorRuntime {
    /// A runtime leading nothing yet; `handle` runs its loads and replication waits;
    /// `__consumer_offsets` is created with `offsets_topic_num_partitions` partitions.
    pub fn new(
        config: GroupConfig,
        replicas: Arc<ReplicaManager>,
        handle: tokio::runtime::Handle,
        offsets_topic_num_partitions: i32,
        incarnation: Uuid,
    ) -> Arc<CoordinatorRuntime> {
        Arc::new(CoordinatorRuntime {
            config,
            replicas,
            handle,
            shards: RwLock::new(HashMap::new()),
            num_partitions: AtomicI32::new(0),
            create_partitions: offsets_topic_num_partitions,
            incarnation,
            registered: AtomicBool::new(false),
        })
    }

    /// `[cluster] offsets_topic_num_partitions`.
    pub fn offsets_topic_num_partitions(&self) -> i32 {
        self.create_partitions
    }

    /// Follow `image`: the partition count of `__consumer_offsets`, and whether the image holds
    /// this process's own registration, unfenced. A restarted node first replays its local copy
    /// of the metadata log, whose leaderships may be long gone; like Kafka's broker, which
    /// serves only once it caught up with the metadata log and is unfenced, a shard loads only
    /// when the image has caught up at least to this process's registration (every leadership
    /// change before it has been applied, and a stale leadership has been resigned).
    pub fn update_image(&self, image: &MetadataImage) {
        let n = image
            .topic(OFFSETS_TOPIC)
            .map_or(0, |t| i32::try_from(t.partitions.len()).unwrap_or(i32::MAX));
        self.num_partitions.store(n, Ordering::Release);
        let registered = image
            .broker(self.replicas.broker_id())
            .is_some_and(|b| b.incarnation_id == self.incarnation && !b.fenced);
        self.registered.store(registered, Ordering::Release);
    }

    /// The partition count of `__consumer_offsets` (0: the topic does not exist yet).
    pub fn num_partitions(&self) -> i32 {
        self.num_partitions.load(Ordering::Acquire)
    }

    /// The `__consumer_offsets` partition of `group` (`None` while the topic does not exist).
    pub fn partition_of(&self, group: &str) -> Option<i32> {
        let n = self.num_partitions();
        (n > 0).then(|| partition_for(group, n))
    }

    /// The coordinator of `group` if this node is it: COORDINATOR_NOT_AVAILABLE while the topic
    /// does not exist, COORDINATOR_LOAD_IN_PROGRESS while loading, NOT_COORDINATOR when another
    /// node leads the group's partition.
    pub fn coordinator(&self, group: &str) -> Result<Arc<GroupCoordinator>, GroupError> {
        let p = self
            .partition_of(group)
            .ok_or(GroupError::CoordinatorNotAvailable)?;
        match self.shards.read_unpoisoned().get(&p).map(|s| &s.state) {
            Some(ShardState::Active(c)) => Ok(c.clone()),
            Some(ShardState::Loading) => Err(GroupError::CoordinatorLoadInProgress),
            None => Err(GroupError::NotCoordinator),
        }
    }

    /// Every coordinator shard serving here.
    pub fn coordinators(&self) -> Vec<Arc<GroupCoordinator>> {
        self.shards
            .read_unpoisoned()
            .values()
            .filter_map(|s| match &s.state {
                ShardState::Active(c) => Some(c.clone()),
                ShardState::Loading => None,
            })
            .collect()
    }

    /// This node now leads `partition` of `__consumer_offsets`: load it (in the background)
    /// unless a shard of the same leader epoch exists.
    pub fn on_become_leader(self: &Arc<Self>, partition: Arc<Partition>) {
        let index = partition.index();
        let epoch = partition.leader_epoch();
        {
            let mut shards = self.shards.write_unpoisoned();
            if shards.get(&index).is_some_and(|s| s.leader_epoch == epoch) {
                return;
            }
            shards.insert(
                index,
                Shard {
                    leader_epoch: epoch,
                    state: ShardState::Loading,
                },
            );
        }
        tracing::info!(
            partition = index,
            leader_epoch = epoch,
            "loading __consumer_offsets partition"
        );
        let runtime = self.clone();
        self.handle
            .spawn(async move { runtime.load(partition, epoch).await });
    }

    /// This node no longer leads `partition` of `__consumer_offsets`: drop its shard.
    pub fn on_resign(&self, partition: i32) {
        if self.shards.write_unpoisoned().remove(&partition).is_some() {
            tracing::info!(partition, "unloaded __consumer_offsets partition");
        }
    }

    fn still_loading(&self, index: i32, epoch: i32) -> bool {
        self.shards
            .read_unpoisoned()
            .get(&index)
            .is_some_and(|s| s.leader_epoch == epoch && matches!(s.state, ShardState::Loading))
    }

    async fn load(self: Arc<Self>, partition: Arc<Partition>, epoch: i32) {
        let index = partition.index();
        // Everything written under earlier epochs lies below this epoch's start offset; once the
        // high watermark reached it, all of it is committed and may be replayed.
        let target = partition
            .leader_epoch_start_offset()
            .unwrap_or_else(|| partition.log().log_end_offset());
        loop {
            if !self.still_loading(index, epoch) || partition.check_leader(epoch).is_err() {
                return;
            }
            if self.registered.load(Ordering::Acquire) && partition.log().high_watermark() >= target
            {
                break;
            }
            tokio::time::sleep(LOAD_POLL).await;
        }
        let writer = Arc::new(ReplicaWriter {
            replicas: self.replicas.clone(),
            handle: self.handle.clone(),
            partition: index,
            leader_epoch: epoch,
        });
        let log = partition.log().clone();
        let config = self.config.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let up_to = if rill_core::failpoints::is_set(rill_core::failpoints::SKIP_OFFSETS_LOAD) {
                log.log_start_offset()
            } else {
                log.high_watermark()
            };
            PartitionOffsetStore::load(writer, &log, up_to).map(|store| {
                let groups = store.groups().len();
                let c = GroupCoordinator::new(config, Arc::new(store), system_clock());
                (c, groups, up_to)
            })
        })
        .await;
        match loaded {
            Ok(Ok((coordinator, groups, up_to))) => {
                let mut shards = self.shards.write_unpoisoned();
                match shards.get_mut(&index) {
                    Some(s) if s.leader_epoch == epoch => {
                        s.state = ShardState::Active(Arc::new(coordinator));
                        tracing::info!(
                            partition = index,
                            leader_epoch = epoch,
                            groups,
                            up_to,
                            "coordinating the groups of __consumer_offsets partition"
                        );
                    }
                    _ => {}
                }
            }
            Ok(Err(e)) => {
                tracing::error!(partition = index, error = %e, "cannot load __consumer_offsets partition");
                self.retry_later(partition, epoch);
            }
            Err(e) => {
                tracing::error!(partition = index, error = %e, "loading __consumer_offsets partition failed");
                self.retry_later(partition, epoch);
            }
        }
    }

    fn retry_later(self: &Arc<Self>, partition: Arc<Partition>, epoch: i32) {
        let runtime = self.clone();
        self.handle.spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if runtime.still_loading(partition.index(), epoch) {
                Box::pin(runtime.load(partition, epoch)).await;
            }
        });
    }

    /// Tick every shard (sessions, rebalance timeouts, offset expiry) until `shutdown`.
    pub async fn run_ticker(self: Arc<Self>, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(crate::kafka::groups::TICK_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => {
                    let shards = self.coordinators();
                    if shards.is_empty() {
                        continue;
                    }
                    let ticked = tokio::task::spawn_blocking(move || {
                        for c in shards {
                            c.tick();
                        }
                    });
                    if let Err(e) = ticked.await {
                        tracing::error!(error = %e, "group coordinator tick failed");
                    }
                }
            }
        }
    }
}
