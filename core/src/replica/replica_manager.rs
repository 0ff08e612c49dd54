//! The partitions this node hosts (Kafka's `ReplicaManager`): leader and follower transitions
//! from the controller's partition registrations, the leader's append path with Kafka's acks,
//! the leader side of follower fetches, and the periodic ISR shrink check.
//!
//! - [`ReplicaManager::become_leader`] / [`ReplicaManager::become_follower`]: what the node does
//!   with each partition registration of a new metadata image that names it as a replica (the
//!   cluster module calls them for every changed registration; [`ReplicaManager::update_image`]
//!   gives it the brokers' registrations, for ISR eligibility and this node's broker epoch).
//! - [`ReplicaManager::append_records`]: every writer of the process appends through it; it
//!   checks leadership, `min.insync.replicas` (NOT_ENOUGH_REPLICAS before the append), appends,
//!   makes the records durable here, and for acks=all waits until the high watermark passes them
//!   (REQUEST_TIMED_OUT after the timeout, NOT_LEADER_OR_FOLLOWER if leadership moves,
//!   NOT_ENOUGH_REPLICAS_AFTER_APPEND if the committed ISR shrinks below the minimum).
//! - [`ReplicaManager::fetch_for_follower`]: a follower's fetch, read up to the log end; it
//!   records the follower's position, flushes this leader when followers hold more than it has
//!   flushed, moves the high watermark and may propose an ISR expand.
//! - [`ReplicaManager::maybe_shrink_isr`]: run every [`ReplicaManager::isr_check_interval`]
//!   (Kafka: half of `replica.lag.time.max.ms`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use uuid::Uuid;

use super::alter_partition::{AlterPartitionError, AlterPartitionManager, AlterPartitionRequest};
use super::partition::{EpochEndOffset, IsrProposal, Partition};
use super::ReplicaError;
use crate::clock::SharedClock;
use crate::controller::{MetadataImage, PartitionRegistration, PartitionState};
use crate::log::{AppendInfo, LogError, PartitionLog, ReadLimit};
use crate::sync::RwLockExt;

/// Kafka's `replica.lag.time.max.ms` default.
pub const DEFAULT_REPLICA_LAG_TIME_MAX: Duration = Duration::from_millis(30_000);

/// Settings of the replica manager.
#[derive(Debug, Clone)]
pub struct ReplicaManagerConfig {
    /// This node's broker id.
    pub broker_id: i32,
    /// `[cluster] replica_lag_time_max_ms`: an ISR follower not caught up for this long is
    /// removed from the ISR.
    pub replica_lag_time_max: Duration,
}

impl ReplicaManagerConfig {
    /// Settings for broker `broker_id` with Kafka's defaults.
    pub fn new(broker_id: i32) -> Self {
        ReplicaManagerConfig {
            broker_id,
            replica_lag_time_max: DEFAULT_REPLICA_LAG_TIME_MAX,
        }
    }
}

/// Kafka's `acks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequiredAcks {
    /// `acks=0`: nobody waits; the records are flushed in the background.
    None,
    /// `acks=1`: durable on this leader.
    Leader,
    /// `acks=all` (`-1`): committed (below the high watermark).
    All,
}

impl RequiredAcks {
    /// From the Produce request's `acks` field (`None` for values Kafka rejects).
    pub fn from_kafka(acks: i16) -> Option<RequiredAcks> {
        match acks {
            0 => Some(RequiredAcks::None),
            1 => Some(RequiredAcks::Leader),
            -1 => Some(RequiredAcks::All),
            _ => None,
        }
    }
}

/// The leader's answer to a follower's fetch of one partition.
#[derive(Debug, Clone)]
pub struct FollowerFetch {
    /// Whole batches from the fetch offset, up to the log end (empty on a diverging epoch).
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// KIP-320: the follower's last fetched epoch ends earlier on this leader; the follower
    /// truncates to `end_offset` and fetches again.
    pub diverging_epoch: Option<EpochEndOffset>,
    /// The leader epoch this leader serves under.
    pub leader_epoch: i32,
}

/// Where this node, as a follower, fetches one partition from next (the fetcher's view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPosition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    /// This replica's log end offset.
    pub fetch_offset: i64,
    /// The leader epoch this replica follows under.
    pub current_leader_epoch: i32,
    /// The newest epoch in this replica's leader epoch cache (`-1`: none), for KIP-320.
    pub last_fetched_epoch: i32,
}

/// The hosted partitions (see the module doc).
pub struct ReplicaManager {
    config: ReplicaManagerConfig,
    clock: SharedClock,
    alter: Arc<dyn AlterPartitionManager>,
    partitions: RwLock<HashMap<(String, i32), Arc<Partition>>>,
    image: RwLock<Option<Arc<MetadataImage>>>,
    /// Bumped when a partition is added, removed or changes role (fetchers re-plan).
    changes: watch::Sender<u64>,
    isr_changes: Arc<IsrChangeCounts>,
}

/// Committed ISR changes of the partitions this node led (Kafka's `IsrShrinksPerSec` /
/// `IsrExpandsPerSec`, as totals).
#[derive(Debug, Default)]
pub struct IsrChangeCounts {
    shrinks: std::sync::atomic::AtomicU64,
    expands: std::sync::atomic::AtomicU64,
}

impl IsrChangeCounts {
    /// Committed shrinks.
    pub fn shrinks(&self) -> u64 {
        self.shrinks.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Committed expands.
    pub fn expands(&self) -> u64 {
        self.expands.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn count(&self, before: usize, after: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        match after.cmp(&before) {
            std::cmp::Ordering::Less => self.shrinks.fetch_add(1, Relaxed),
            std::cmp::Ordering::Greater => self.expands.fetch_add(1, Relaxed),
            std::cmp::Ordering::Equal => 0,
        };
    }
}

impl std::fmt::Debug for ReplicaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaManager")
            .field("broker_id", &self.config.broker_id)
            .finish_non_exhaustive()
    }
}

impl ReplicaManager {
    /// A replica manager hosting nothing yet.
    pub fn new(
        config: ReplicaManagerConfig,
        clock: SharedClock,
        alter: Arc<dyn AlterPartitionManager>,
    ) -> Arc<ReplicaManager> {
        Arc::new(ReplicaManager {
            config,
            clock,
            alter,
            partitions: RwLock::new(HashMap::new()),
            image: RwLock::new(None),
            changes: watch::channel(0).0,
            isr_changes: Arc::default(),
        })
    }

    /// Committed ISR shrinks and expands of the partitions this node led.
    pub fn isr_changes(&self) -> &IsrChangeCounts {
        &self.isr_changes
    }

    /// This node's broker id.
    pub fn broker_id(&self) -> i32 {
        self.config.broker_id
    }

    /// How often [`Self::maybe_shrink_isr`] should run (half the lag time, as Kafka).
    pub fn isr_check_interval(&self) -> Duration {
        self.config.replica_lag_time_max / 2
    }

    /// The newest metadata image: brokers' registrations decide who may join an ISR, and this
    /// node's registration gives the broker epoch its ISR proposals carry. Without an image no
    /// ISR change is proposed.
    pub fn update_image(&self, image: Arc<MetadataImage>) {
        *self.image.write_unpoisoned() = Some(image);
    }

    /// A receiver that changes when a partition is added, removed or changes role.
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The hosted replica of `topic`-`partition`.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read_unpoisoned()
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// The hosted replica of partition `partition` of the topic with id `topic_id`.
    pub fn partition_by_topic_id(&self, topic_id: Uuid, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read_unpoisoned()
            .values()
            .find(|p| p.topic_id() == topic_id && p.index() == partition)
            .cloned()
    }

    /// Every hosted replica.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read_unpoisoned()
            .values()
            .cloned()
            .collect()
    }

    fn get(&self, topic: &str, partition: i32) -> Result<Arc<Partition>, ReplicaError> {
        self.partition(topic, partition)
            .ok_or_else(|| ReplicaError::UnknownTopicOrPartition {
                topic: topic.to_string(),
                partition,
            })
    }

    fn hosted(
        &self,
        topic: &str,
        topic_id: Uuid,
        partition: i32,
        log: Arc<PartitionLog>,
    ) -> Arc<Partition> {
        let mut map = self.partitions.write_unpoisoned();
        let key = (topic.to_string(), partition);
        match map.get(&key) {
            // A topic deleted and created again under the same name is another partition.
            Some(p) if p.topic_id() == topic_id => p.clone(),
            _ => {
                let p = Arc::new(Partition::new(
                    topic,
                    topic_id,
                    partition,
                    self.config.broker_id,
                    log,
                    self.clock.clone(),
                    self.config.replica_lag_time_max,
                ));
                map.insert(key, p.clone());
                p
            }
        }
    }

    /// `reg` names this node the leader of `topic`-`partition` (whose log is `log`; ignored if
    /// the partition is hosted already under the same topic id). A new leader epoch starts a new leadership: the epoch
    /// is written to the log's leader epoch cache (durably) before anything is appended under it,
    /// and every follower's state starts afresh. The same epoch with a newer partition epoch
    /// updates replicas and ISR. If the epoch cannot be recorded (a disk error, or the log has
    /// a newer epoch already) the replica does not lead.
    pub fn become_leader(
        &self,
        topic: &str,
        topic_id: Uuid,
        partition: i32,
        log: Arc<PartitionLog>,
        reg: &PartitionRegistration,
    ) -> Result<Arc<Partition>, ReplicaError> {
        let p = self.hosted(topic, topic_id, partition, log);
        if p.make_leader(reg)? {
            tracing::info!(
                topic,
                partition,
                leader_epoch = reg.leader_epoch,
                isr = ?reg.isr,
                "leading partition"
            );
            self.changed();
        }
        Ok(p)
    }

    /// `reg` names another broker (or none) the leader of `topic`-`partition`: this replica
    /// follows it. acks=all writes waiting on this node fail with NOT_LEADER_OR_FOLLOWER.
    pub fn become_follower(
        &self,
        topic: &str,
        topic_id: Uuid,
        partition: i32,
        log: Arc<PartitionLog>,
        reg: &PartitionRegistration,
    ) -> Arc<Partition> {
        let p = self.hosted(topic, topic_id, partition, log);
        if p.make_follower(reg) {
            tracing::info!(
                topic,
                partition,
                leader = reg.leader,
                leader_epoch = reg.leader_epoch,
                "following partition"
            );
            self.changed();
        }
        p
    }

    /// Stop hosting `topic`-`partition` (its topic was deleted or the replica moved away). The
    /// log itself is the caller's.
    pub fn stop_replica(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let removed = self
            .partitions
            .write_unpoisoned()
            .remove(&(topic.to_string(), partition));
        if removed.is_some() {
            self.changed();
        }
        removed
    }

    /// Apply a partition state the controller committed (an AlterPartition outcome that reached
    /// this node another way than as the answer to its own proposal).
    pub fn apply_partition_state(&self, topic: &str, state: &PartitionState) -> bool {
        self.partition(topic, state.partition)
            .is_some_and(|p| p.apply_partition_state(state))
    }

    /// Append `records` to the leader log of `topic`-`partition` and wait as `acks` asks
    /// (see the module doc). `timeout` bounds the acks=all wait.
    pub async fn append_records(
        &self,
        topic: &str,
        partition: i32,
        records: &[u8],
        acks: RequiredAcks,
        timeout: Duration,
    ) -> Result<AppendInfo, ReplicaError> {
        self.append_to_leader(topic, partition, records, acks)?
            .wait(timeout)
            .await
    }

    /// The first half of [`Self::append_records`] (Kafka's append before its delayed produce):
    /// the leadership and `min.insync.replicas` checks and the append itself, now, so that a
    /// connection's pipelined requests are appended in order; [`PendingAppend::wait`] does the
    /// waiting.
    pub fn append_to_leader(
        &self,
        topic: &str,
        partition: i32,
        records: &[u8],
        acks: RequiredAcks,
    ) -> Result<PendingAppend, ReplicaError> {
        self.append_to_leader_in_epoch(topic, partition, records, acks, -1)
    }

    /// [`Self::append_to_leader`] only while this node leads under `leader_epoch` (`-1`: any):
    /// a writer that loaded state under one leadership (a group coordinator) is fenced by a newer
    /// epoch (FENCED_LEADER_EPOCH) even if this node leads again.
    pub fn append_to_leader_in_epoch(
        &self,
        topic: &str,
        partition: i32,
        records: &[u8],
        acks: RequiredAcks,
        leader_epoch: i32,
    ) -> Result<PendingAppend, ReplicaError> {
        let p = self.get(topic, partition)?;
        let (leader_epoch, isr) = p.check_leader(leader_epoch)?;
        let min_isr = p.min_insync_replicas();
        if acks == RequiredAcks::All && isr < min_isr {
            return Err(ReplicaError::NotEnoughReplicas { isr, min_isr });
        }
        let info = p.while_leader(leader_epoch, || {
            let info = p.log().append(records)?;
            p.appended(p.log().log_end_offset());
            Ok(info)
        })?;
        Ok(PendingAppend {
            partition: p,
            leader_epoch,
            info,
            acks,
        })
    }

    /// A follower's fetch of `topic`-`partition` (blocking: it reads, and may fsync this leader;
    /// call it from a blocking context). `broker_epoch` and the epochs are `-1` when the request
    /// does not carry them. Checks the leader epoch, answers a diverging epoch (KIP-320), records
    /// the follower's position (its log end offset is `fetch_offset`), then reads up to the log
    /// end at most `max_bytes` (at least one batch).
    #[allow(clippy::too_many_arguments)]
    pub fn fetch_for_follower(
        &self,
        replica_id: i32,
        broker_epoch: i64,
        topic: &str,
        partition: i32,
        fetch_offset: i64,
        current_leader_epoch: i32,
        last_fetched_epoch: i32,
        max_bytes: usize,
    ) -> Result<FollowerFetch, ReplicaError> {
        let p = self.get(topic, partition)?;
        let (leader_epoch, _) = p.check_leader(current_leader_epoch)?;
        let log = p.log();
        let (log_start, log_end) = (log.log_start_offset(), log.log_end_offset());
        if last_fetched_epoch >= 0 {
            // KIP-320: does the follower's log agree with this one up to its fetch offset?
            let (epoch, end_offset) = log.end_offset_for_epoch(last_fetched_epoch);
            if epoch < 0 || end_offset < 0 || fetch_offset < log_start {
                return Err(LogError::OffsetOutOfRange {
                    offset: fetch_offset,
                    log_start,
                    log_end,
                }
                .into());
            }
            if epoch < last_fetched_epoch || end_offset < fetch_offset {
                return Ok(FollowerFetch {
                    records: Bytes::new(),
                    high_watermark: log.high_watermark(),
                    log_start_offset: log_start,
                    log_end_offset: log_end,
                    diverging_epoch: Some(EpochEndOffset {
                        leader_epoch: epoch,
                        end_offset,
                    }),
                    leader_epoch,
                });
            }
        }
        if fetch_offset < log_start || fetch_offset > log_end {
            return Err(LogError::OffsetOutOfRange {
                offset: fetch_offset,
                log_start,
                log_end,
            }
            .into());
        }
        let eligible = self.isr_eligible(replica_id, broker_epoch);
        if let Some(proposal) =
            p.update_follower_fetch(replica_id, broker_epoch, fetch_offset, eligible)?
        {
            self.spawn_proposal(&p, proposal);
        }
        if let Some(to) = p.flush_needed() {
            log.flush_to(to)?;
        }
        p.maybe_increment_high_watermark();
        let read = log.read_up_to(fetch_offset, max_bytes.max(1), ReadLimit::LogEnd)?;
        Ok(FollowerFetch {
            records: read.records,
            high_watermark: read.high_watermark,
            log_start_offset: read.log_start_offset,
            log_end_offset: read.log_end_offset,
            diverging_epoch: None,
            leader_epoch,
        })
    }

    /// The brokers this node follows partitions of (leaders other than itself).
    pub fn leaders_followed(&self) -> BTreeSet<i32> {
        self.partitions()
            .iter()
            .filter_map(|p| p.following())
            .map(|(leader, _)| leader)
            .filter(|l| *l >= 0 && *l != self.config.broker_id)
            .collect()
    }

    /// Where to fetch each partition this node follows on `leader` from.
    pub fn fetch_positions(&self, leader: i32) -> Vec<FetchPosition> {
        self.partitions()
            .iter()
            .filter_map(|p| {
                let (l, epoch) = p.following()?;
                (l == leader).then(|| FetchPosition {
                    topic: p.topic().to_string(),
                    topic_id: p.topic_id(),
                    partition: p.index(),
                    fetch_offset: p.log().log_end_offset(),
                    current_leader_epoch: epoch,
                    last_fetched_epoch: p.log().latest_epoch().unwrap_or(-1),
                })
            })
            .collect()
    }

    /// This node's broker epoch (its registration in the newest image; `-1` before it is
    /// registered), sent as the `ReplicaState.replica_epoch` of its fetches.
    pub fn local_broker_epoch(&self) -> i64 {
        self.image
            .read_unpoisoned()
            .as_ref()
            .and_then(|i| i.broker(self.config.broker_id).map(|b| b.broker_epoch))
            .unwrap_or(-1)
    }

    /// As a follower under `leader_epoch`: append `records` fetched from the leader (offsets and
    /// epochs as the leader assigned them), make them durable (under `flush = "always"`, before
    /// the next fetch reports them as held), then move this replica's high watermark to the
    /// smaller of the leader's and what it holds durably, and its log start up to the leader's
    /// `leader_log_start` (not past its own high watermark; `-1`: unknown). Blocking (disk
    /// writes and fsync).
    pub fn append_fetched(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        records: &[u8],
        leader_high_watermark: i64,
        leader_log_start: i64,
    ) -> Result<Option<AppendInfo>, ReplicaError> {
        let p = self.get(topic, partition)?;
        let info = if records.is_empty() {
            p.while_follower(leader_epoch, || Ok(()))?;
            None
        } else {
            let info =
                p.while_follower(leader_epoch, || Ok(p.log().append_as_follower(records)?))?;
            if !crate::failpoints::is_set(crate::failpoints::SKIP_FOLLOWER_FSYNC) {
                p.log().flush_to(info.last_offset)?;
            }
            Some(info)
        };
        p.update_follower_high_watermark(leader_high_watermark);
        if leader_log_start >= 0 {
            p.while_follower(leader_epoch, || {
                let log = p.log();
                // Kafka's follower `maybeIncrementLogStartOffset`: the leader's retention and
                // DeleteRecords reach the replicas (never past what this replica has
                // committed).
                let start = leader_log_start.min(log.high_watermark());
                if start > log.log_start_offset() {
                    log.delete_records_before(start)?;
                }
                Ok(())
            })?;
        }
        Ok(info)
    }

    /// As a follower under `leader_epoch`, the leader answered OFFSET_OUT_OF_RANGE to this
    /// replica's fetch and named its log start offset (Kafka's follower looks it up with
    /// ListOffsets: `ReplicaFetcherThread.fetchOffsetAndTruncate`). A log end below the leader's
    /// log start (its retention or DeleteRecords removed what this replica would fetch next)
    /// restarts this log, empty, at the leader's log start
    /// ([`PartitionLog::truncate_fully_and_start_at`]); returns `true` then. Otherwise the
    /// leader refused for another reason (a log end beyond the leader's, which only an unclean
    /// election leaves, is not repaired here) and nothing changes. Blocking (durable when it
    /// returns).
    pub fn reset_out_of_range(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        leader_log_start: i64,
    ) -> Result<bool, ReplicaError> {
        let p = self.get(topic, partition)?;
        p.while_follower(leader_epoch, || {
            let log = p.log();
            let leo = log.log_end_offset();
            if leader_log_start < 0 || leo >= leader_log_start {
                return Ok(false);
            }
            tracing::warn!(
                topic,
                partition,
                log_end = leo,
                leader_log_start,
                "follower log ends below the leader's log start; starting over there"
            );
            log.truncate_fully_and_start_at(leader_log_start)?;
            Ok(true)
        })
    }

    /// As a follower under `leader_epoch`, the leader answered that this replica's log diverges
    /// from its own (KIP-320): truncate to where they agree, as far as this replica can tell
    /// (Kafka's `getOffsetTruncationState`, KIP-279): if this log knows the leader's epoch, to
    /// the smaller of both ends of it; if not, to the end of the largest epoch below it here
    /// (the next fetch compares again). Never below what the leader said, never beyond the log
    /// end. Returns the new log end offset. Blocking (durable when it returns).
    pub fn truncate_on_divergence(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        diverging: EpochEndOffset,
    ) -> Result<i64, ReplicaError> {
        let p = self.get(topic, partition)?;
        p.while_follower(leader_epoch, || {
            let log = p.log();
            let leo = log.log_end_offset();
            let (epoch, end) = log.end_offset_for_epoch(diverging.leader_epoch);
            let target = if epoch < 0 || end < 0 {
                diverging.end_offset.min(leo)
            } else if epoch != diverging.leader_epoch {
                end.min(leo)
            } else {
                end.min(diverging.end_offset).min(leo)
            };
            if target < leo {
                tracing::info!(
                    topic,
                    partition,
                    from = leo,
                    to = target,
                    leader_epoch = diverging.leader_epoch,
                    leader_end_offset = diverging.end_offset,
                    "truncating a diverging follower log"
                );
                log.truncate_to(target)?;
            } else {
                // Nothing to cut, but an epoch this replica led without appending anything goes
                // (else the leader answers the same divergence forever).
                log.truncate_to(leo)?;
            }
            Ok(log.log_end_offset())
        })
    }

    /// Propose an ISR shrink for every led partition with a follower not caught up within the
    /// lag time (and no ISR change in flight), and wait for the controller's answers. Returns
    /// how many were proposed.
    pub async fn maybe_shrink_isr(&self, now: Instant) -> usize {
        let proposals: Vec<(Arc<Partition>, IsrProposal)> = self
            .partitions()
            .into_iter()
            .filter_map(|p| p.shrink_proposal(now).map(|x| (p, x)))
            .collect();
        let n = proposals.len();
        for (p, proposal) in proposals {
            tracing::info!(
                topic = p.topic(),
                partition = p.index(),
                isr = ?p.isr(),
                new_isr = ?proposal.new_isr,
                "proposing ISR shrink"
            );
            if crate::failpoints::is_set(crate::failpoints::LEADER_LOCAL_ISR_SHRINK) {
                // Broken on purpose: the shrink takes effect without the controller.
                p.apply_local_isr(&proposal.new_isr);
                continue;
            }
            if let Some(request) = self.request(&p, &proposal) {
                propose(
                    self.alter.clone(),
                    self.isr_changes.clone(),
                    p,
                    proposal.partition_epoch,
                    request,
                )
                .await;
            }
        }
        n
    }

    /// Kafka's `isr-expiration` task: [`Self::maybe_shrink_isr`] every
    /// [`Self::isr_check_interval`] until `stop` completes.
    pub async fn run_isr_expiration(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick =
            tokio::time::interval(self.isr_check_interval().max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    self.maybe_shrink_isr(self.clock.now()).await;
                }
            }
        }
    }

    /// May `replica_id`, fetching under `broker_epoch`, join an ISR: registered, unfenced, not
    /// shutting down, and fetching under its registered broker epoch (KIP-903).
    fn isr_eligible(&self, replica_id: i32, broker_epoch: i64) -> bool {
        let image = self.image.read_unpoisoned();
        image
            .as_ref()
            .and_then(|i| i.broker(replica_id))
            .is_some_and(|b| {
                b.is_eligible() && (broker_epoch < 0 || b.broker_epoch == broker_epoch)
            })
    }

    /// The request for `proposal`, or `None` (and the proposal dropped) if this node's broker
    /// epoch is not known yet.
    fn request(&self, p: &Partition, proposal: &IsrProposal) -> Option<AlterPartitionRequest> {
        let broker_epoch = self
            .image
            .read_unpoisoned()
            .as_ref()
            .and_then(|i| i.broker(self.config.broker_id).map(|b| b.broker_epoch));
        let Some(broker_epoch) = broker_epoch else {
            p.proposal_failed(
                proposal.partition_epoch,
                &AlterPartitionError::Unavailable("this broker is not registered yet".into()),
            );
            return None;
        };
        Some(AlterPartitionRequest {
            broker_id: self.config.broker_id,
            broker_epoch,
            topic_id: p.topic_id(),
            partition: p.index(),
            leader_epoch: proposal.leader_epoch,
            partition_epoch: proposal.partition_epoch,
            new_isr: proposal.new_isr.clone(),
        })
    }

    fn spawn_proposal(&self, p: &Arc<Partition>, proposal: IsrProposal) {
        tracing::info!(
            topic = p.topic(),
            partition = p.index(),
            isr = ?p.isr(),
            new_isr = ?proposal.new_isr,
            "proposing ISR expand"
        );
        let Some(request) = self.request(p, &proposal) else {
            return;
        };
        let fut = propose(
            self.alter.clone(),
            self.isr_changes.clone(),
            p.clone(),
            proposal.partition_epoch,
            request,
        );
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(fut);
            }
            Err(_) => {
                tracing::error!("no async runtime to propose an ISR change on");
                p.proposal_failed(
                    proposal.partition_epoch,
                    &AlterPartitionError::Unavailable("no async runtime".into()),
                );
            }
        }
    }
}

/// Records appended on the leader, not yet acknowledged (see
/// [`ReplicaManager::append_to_leader`]).
#[derive(Debug)]
pub struct PendingAppend {
    partition: Arc<Partition>,
    leader_epoch: i32,
    info: AppendInfo,
    acks: RequiredAcks,
}

impl PendingAppend {
    /// What the append assigned.
    pub fn info(&self) -> AppendInfo {
        self.info
    }

    /// Wait as the acks ask: acks=0 returns at once (the records are flushed in the
    /// background), acks=1 once they are durable here, acks=all once the high watermark passed
    /// them (at most `timeout`; see the module doc for the errors).
    pub async fn wait(self, timeout: Duration) -> Result<AppendInfo, ReplicaError> {
        let PendingAppend {
            partition: p,
            leader_epoch,
            info,
            acks,
        } = self;
        if acks == RequiredAcks::None {
            tokio::task::spawn_blocking(move || match p.log().flush_to(info.last_offset) {
                Ok(()) => {
                    p.maybe_increment_high_watermark();
                }
                Err(e) => tracing::error!(error = %e, "background flush after acks=0 failed"),
            });
            return Ok(info);
        }
        let flushing = p.clone();
        tokio::task::spawn_blocking(move || flushing.log().flush_to(info.last_offset)).await??;
        p.maybe_increment_high_watermark();
        if acks == RequiredAcks::Leader {
            return Ok(info);
        }
        wait_for_commit(&p, leader_epoch, info, timeout).await
    }
}

/// Submit one ISR change and apply its outcome to `p`.
async fn propose(
    alter: Arc<dyn AlterPartitionManager>,
    counts: Arc<IsrChangeCounts>,
    p: Arc<Partition>,
    partition_epoch: i32,
    request: AlterPartitionRequest,
) {
    let before = p.isr().len();
    match alter.submit(request).await {
        Ok(state) => {
            if p.apply_partition_state(&state) {
                counts.count(before, state.isr.len());
            }
        }
        Err(e) => {
            tracing::warn!(
                topic = p.topic(),
                partition = p.index(),
                error = %e,
                "ISR change not committed"
            );
            p.proposal_failed(partition_epoch, &e);
        }
    }
}

/// acks=all: wait until the high watermark passes `info`, while this node leads under
/// `leader_epoch` and the committed ISR keeps `min.insync.replicas` members, at most `timeout`.
async fn wait_for_commit(
    p: &Partition,
    leader_epoch: i32,
    info: AppendInfo,
    timeout: Duration,
) -> Result<AppendInfo, ReplicaError> {
    let target = info.last_offset + 1;
    let mut hw = p.log().watch_high_watermark();
    let mut changes = p.watch_changes();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        hw.borrow_and_update();
        changes.borrow_and_update();
        match p.check_leader(-1) {
            Ok((epoch, _)) if epoch != leader_epoch => {
                return Err(ReplicaError::NotLeaderOrFollower {
                    topic: p.topic().to_string(),
                    partition: p.index(),
                    leader: p.leader_id(),
                    leader_epoch: epoch,
                })
            }
            Ok((_, isr)) => {
                let min_isr = p.min_insync_replicas();
                if isr < min_isr {
                    return Err(ReplicaError::NotEnoughReplicasAfterAppend { isr, min_isr });
                }
            }
            Err(e) => return Err(e),
        }
        if p.log().high_watermark() >= target {
            return Ok(info);
        }
        tokio::select! {
            _ = &mut deadline => return Err(ReplicaError::RequestTimedOut(timeout)),
            r = hw.changed() => {
                if r.is_err() {
                    return Err(LogError::Closed.into());
                }
            }
            _ = changes.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::batch::test_util::batch;
    use crate::clock::{Clock, ManualClock};
    use crate::controller::{
        Command, CommandOutcome, ControllerError, ControllerRequest, Endpoint,
    };
    use crate::io::SimStorage;
    use crate::replica::AlterPartitionFuture;
    use crate::sync::LockExt;
    use crate::topic_config::TopicConfig;

    const CLUSTER: &str = "replica-test";
    const LAG: Duration = Duration::from_secs(30);

    /// The controller as the replica manager sees it: AlterPartition commands applied to a real
    /// metadata image. `down` makes it unreachable; `hold` keeps answers back until released.
    struct ImageController {
        image: Mutex<(MetadataImage, u64)>,
        down: AtomicBool,
        hold: watch::Sender<bool>,
        submitted: AtomicU64,
    }

    impl ImageController {
        fn run(&self, command: Command) -> Result<CommandOutcome, ControllerError> {
            let mut g = self.image.lock_unpoisoned();
            g.1 += 1;
            let index = g.1;
            g.0.apply(index, &ControllerRequest::new(command))
        }
        fn snapshot(&self) -> Arc<MetadataImage> {
            Arc::new(self.image.lock_unpoisoned().0.clone())
        }
        fn registration(&self) -> PartitionRegistration {
            self.image
                .lock_unpoisoned()
                .0
                .topic("t")
                .unwrap()
                .partitions[&0]
                .clone()
        }
        fn topic_id(&self) -> Uuid {
            self.image.lock_unpoisoned().0.topic("t").unwrap().topic_id
        }
        fn broker_epoch(&self, id: i32) -> i64 {
            self.image
                .lock_unpoisoned()
                .0
                .broker(id)
                .unwrap()
                .broker_epoch
        }
    }

    impl AlterPartitionManager for Arc<ImageController> {
        fn submit(&self, request: AlterPartitionRequest) -> AlterPartitionFuture {
            let this = self.clone();
            Box::pin(async move {
                this.submitted.fetch_add(1, Ordering::SeqCst);
                let mut hold = this.hold.subscribe();
                while *hold.borrow_and_update() {
                    if hold.changed().await.is_err() {
                        break;
                    }
                }
                if this.down.load(Ordering::SeqCst) {
                    return Err(AlterPartitionError::Unavailable("controller down".into()));
                }
                match this.run(request.command()) {
                    Ok(CommandOutcome::Partition(state)) => Ok(state),
                    Ok(other) => Err(AlterPartitionError::Unavailable(format!("{other:?}"))),
                    Err(e) => Err(AlterPartitionError::Rejected(e)),
                }
            })
        }
    }

    struct Fixture {
        controller: Arc<ImageController>,
        clock: Arc<ManualClock>,
        rm: Arc<ReplicaManager>,
        log: Arc<PartitionLog>,
    }

    impl Fixture {
        /// Brokers 1..=3, topic `t` with one partition on [1, 2, 3] led by 1 (this node).
        fn new(min_isr: usize) -> Fixture {
            let controller = Arc::new(ImageController {
                image: Mutex::new((MetadataImage::default(), 0)),
                down: AtomicBool::new(false),
                hold: watch::channel(false).0,
                submitted: AtomicU64::new(0),
            });
            controller
                .run(Command::Bootstrap {
                    cluster_id: CLUSTER.into(),
                    scram_credentials: vec![],
                })
                .unwrap();
            for b in 1..=3 {
                let Ok(CommandOutcome::BrokerRegistered { broker_epoch }) =
                    controller.run(Command::RegisterBroker {
                        broker_id: b,
                        incarnation_id: Uuid::new_v4(),
                        cluster_id: CLUSTER.into(),
                        listeners: vec![Endpoint {
                            name: "CLUSTER".into(),
                            host: "127.0.0.1".into(),
                            port: 9093,
                            security_protocol: "PLAINTEXT".into(),
                        }],
                        rack: None,
                    })
                else {
                    panic!("registration failed")
                };
                controller
                    .run(Command::UnfenceBroker {
                        broker_id: b,
                        broker_epoch,
                    })
                    .unwrap();
            }
            let configs: BTreeMap<String, String> =
                [("min.insync.replicas".to_string(), min_isr.to_string())].into();
            controller
                .run(Command::CreateTopic {
                    name: "t".into(),
                    topic_id: Uuid::new_v4(),
                    configs: configs.clone(),
                    assignments: vec![vec![1, 2, 3]],
                })
                .unwrap();
            let mut opts = crate::log::tests::opts(Arc::new(SimStorage::new()), false);
            opts.config = TopicConfig::with_overrides(&opts.config, &configs).unwrap();
            let log = Arc::new(PartitionLog::open("/t-0".into(), opts).unwrap());
            let clock = Arc::new(ManualClock::new());
            let config = ReplicaManagerConfig {
                broker_id: 1,
                replica_lag_time_max: LAG,
            };
            let rm = ReplicaManager::new(config, clock.clone(), Arc::new(controller.clone()));
            rm.update_image(controller.snapshot());
            let f = Fixture {
                controller,
                clock,
                rm,
                log,
            };
            f.apply_registration();
            f
        }

        /// What the cluster module does with every new image.
        fn apply_registration(&self) -> Arc<Partition> {
            let reg = self.controller.registration();
            self.rm.update_image(self.controller.snapshot());
            let id = self.controller.topic_id();
            if reg.leader == 1 {
                self.rm
                    .become_leader("t", id, 0, self.log.clone(), &reg)
                    .unwrap()
            } else {
                self.rm.become_follower("t", id, 0, self.log.clone(), &reg)
            }
        }

        fn partition(&self) -> Arc<Partition> {
            self.rm.partition("t", 0).unwrap()
        }

        fn fetch(&self, replica: i32, offset: i64) -> Result<FollowerFetch, ReplicaError> {
            let epoch = self.controller.broker_epoch(replica);
            self.rm
                .fetch_for_follower(replica, epoch, "t", 0, offset, -1, -1, 1 << 20)
        }

        async fn produce(&self, values: &[&[u8]], acks: RequiredAcks) -> AppendInfo {
            self.rm
                .append_records("t", 0, &batch(values, 1), acks, Duration::from_secs(30))
                .await
                .unwrap()
        }

        /// Commits an ISR change in the controller as another party would (then applied here
        /// like any new image).
        fn commit_isr(&self, isr: &[i32]) {
            let reg = self.controller.registration();
            self.controller
                .run(Command::AlterPartition {
                    broker_id: 1,
                    broker_epoch: self.controller.broker_epoch(1),
                    topic_id: self.controller.topic_id(),
                    partition: 0,
                    leader_epoch: reg.leader_epoch,
                    partition_epoch: reg.partition_epoch,
                    new_isr: isr.to_vec(),
                })
                .unwrap();
            self.apply_registration();
        }
    }

    impl Fixture {
        /// 1 shuts down (2 leads under epoch 1), comes back, rejoins the ISR, and a preferred
        /// election makes it the leader under epoch 2. Applies the registrations here.
        fn move_leadership_away_and_back(&self) {
            let e1 = self.controller.broker_epoch(1);
            self.controller
                .run(Command::ControlledShutdown {
                    broker_id: 1,
                    broker_epoch: e1,
                })
                .unwrap();
            self.apply_registration();
            self.controller
                .run(Command::UnfenceBroker {
                    broker_id: 1,
                    broker_epoch: e1,
                })
                .unwrap();
            let reg = self.controller.registration();
            assert_eq!(reg.leader, 2);
            self.controller
                .run(Command::AlterPartition {
                    broker_id: 2,
                    broker_epoch: self.controller.broker_epoch(2),
                    topic_id: self.controller.topic_id(),
                    partition: 0,
                    leader_epoch: reg.leader_epoch,
                    partition_epoch: reg.partition_epoch,
                    new_isr: vec![2, 3, 1],
                })
                .unwrap();
            self.controller
                .run(Command::ElectLeader {
                    topic: "t".into(),
                    partition: 0,
                    election: crate::controller::ElectionType::Preferred,
                })
                .unwrap();
        }

        /// Another broker's replica manager and log, following as the image says.
        /// `rounds` turns of broker 3's fetcher loop against this leader for `t`-0: fetch,
        /// truncate on a diverging epoch or append what came; returns how many diverged.
        fn fetch_rounds(&self, rm3: &ReplicaManager, rounds: usize) -> usize {
            let mut divergences = 0;
            for _ in 0..rounds {
                let pos = rm3.fetch_positions(1).remove(0);
                let r = self
                    .rm
                    .fetch_for_follower(
                        3,
                        -1,
                        "t",
                        0,
                        pos.fetch_offset,
                        pos.current_leader_epoch,
                        pos.last_fetched_epoch,
                        1 << 20,
                    )
                    .unwrap();
                match r.diverging_epoch {
                    Some(d) => {
                        divergences += 1;
                        rm3.truncate_on_divergence("t", 0, r.leader_epoch, d)
                            .unwrap();
                    }
                    None => {
                        rm3.append_fetched(
                            "t",
                            0,
                            r.leader_epoch,
                            &r.records,
                            r.high_watermark,
                            r.log_start_offset,
                        )
                        .unwrap();
                    }
                }
            }
            divergences
        }

        /// Broker 1 leads again under epoch 2 (moved away and back), broker 3 (`rm3`, `log3`)
        /// follows it, and 1 takes one more record ("c").
        async fn lead_epoch_2_with_3_following(
            &self,
            rm3: &ReplicaManager,
            log3: &Arc<PartitionLog>,
        ) {
            self.move_leadership_away_and_back();
            self.apply_registration();
            rm3.become_follower(
                "t",
                self.controller.topic_id(),
                0,
                log3.clone(),
                &self.controller.registration(),
            );
            self.produce(&[b"c"], RequiredAcks::Leader).await;
        }

        /// [`Self::follower`] `id` holding a copy of the leader's log so far.
        fn follower_with_leaders_log(&self, id: i32) -> (Arc<ReplicaManager>, Arc<PartitionLog>) {
            let (rm, log) = self.follower(id);
            let records = self
                .log
                .read_up_to(0, 1 << 20, ReadLimit::LogEnd)
                .unwrap()
                .records;
            log.append_as_follower(&records).unwrap();
            (rm, log)
        }

        fn follower(&self, id: i32) -> (Arc<ReplicaManager>, Arc<PartitionLog>) {
            let opts = crate::log::tests::opts(Arc::new(SimStorage::new()), false);
            let mut opts = opts;
            opts.config = self.log.config();
            let log = Arc::new(PartitionLog::open(format!("/f{id}").into(), opts).unwrap());
            let config = ReplicaManagerConfig {
                broker_id: id,
                replica_lag_time_max: LAG,
            };
            let rm = ReplicaManager::new(
                config,
                self.clock.clone(),
                Arc::new(self.controller.clone()),
            );
            rm.update_image(self.controller.snapshot());
            rm.become_follower(
                "t",
                self.controller.topic_id(),
                0,
                log.clone(),
                &self.controller.registration(),
            );
            (rm, log)
        }
    }

    /// Every batch of `log` up to its end, across segments.
    fn all(log: &PartitionLog) -> Vec<u8> {
        let mut out = Vec::new();
        let mut next = log.log_start_offset();
        while next < log.log_end_offset() {
            let r = log.read_up_to(next, 1 << 20, ReadLimit::LogEnd).unwrap();
            for b in crate::batch::Batches::new(&r.records) {
                let b = b.unwrap();
                next = b.header.last_offset() + 1;
            }
            out.extend_from_slice(&r.records);
        }
        out
    }

    /// One fetch round of follower `rm` (broker `id`) against leader `leader`, as the fetcher
    /// does it: fetch from its position, append, fsync, take the leader's high watermark.
    fn fetch_round(leader: &ReplicaManager, id: i32, rm: &ReplicaManager) -> usize {
        let mut appended = 0;
        for pos in rm.fetch_positions(1) {
            let r = leader
                .fetch_for_follower(
                    id,
                    rm.local_broker_epoch(),
                    &pos.topic,
                    pos.partition,
                    pos.fetch_offset,
                    pos.current_leader_epoch,
                    pos.last_fetched_epoch,
                    1 << 20,
                )
                .unwrap();
            assert!(r.diverging_epoch.is_none());
            if let Some(info) = rm
                .append_fetched(
                    &pos.topic,
                    pos.partition,
                    r.leader_epoch,
                    &r.records,
                    r.high_watermark,
                    r.log_start_offset,
                )
                .unwrap()
            {
                appended += info.record_count as usize;
            }
        }
        appended
    }

    /// Yield until `cond` holds (spawned proposals run on this runtime).
    async fn eventually(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..1000 {
            if cond() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("never happened: {what}");
    }

    #[tokio::test]
    async fn the_high_watermark_needs_every_isr_members_durable_offset() {
        let f = Fixture::new(1);
        let p = f.partition();
        assert!(p.is_leader());
        assert_eq!(p.isr(), vec![1, 2, 3]);
        f.produce(&[b"a", b"b", b"c"], RequiredAcks::Leader).await;
        assert_eq!(f.log.flushed_offset(), 3);
        assert_eq!(f.log.high_watermark(), 0, "followers hold nothing yet");
        let r = f.fetch(2, 0).unwrap();
        assert!(
            !r.records.is_empty(),
            "a follower reads above the high watermark"
        );
        assert_eq!(r.high_watermark, 0);
        assert_eq!(
            f.fetch(2, 3).unwrap().high_watermark,
            0,
            "3 has not fetched"
        );
        assert_eq!(f.fetch(3, 1).unwrap().high_watermark, 1);
        assert_eq!(f.fetch(3, 3).unwrap().high_watermark, 3);
        assert_eq!(
            f.log.read(0, 1 << 20).unwrap().high_watermark,
            3,
            "consumers see it now"
        );

        // Appended but not flushed here (an acks=0 write whose background flush has not run):
        // followers holding it durably make the leader flush, then it commits.
        let a = f.log.append(&batch(&[b"d", b"e"], 2)).unwrap();
        assert_eq!(f.log.flushed_offset(), 3);
        f.fetch(2, a.last_offset + 1).unwrap();
        assert_eq!(f.log.flushed_offset(), 3, "3 does not hold it yet");
        assert_eq!(f.log.high_watermark(), 3);
        let r = f.fetch(3, a.last_offset + 1).unwrap();
        assert_eq!(
            f.log.flushed_offset(),
            5,
            "flushed once every follower held it"
        );
        assert_eq!(r.high_watermark, 5);
    }

    #[tokio::test]
    async fn the_high_watermark_does_not_move_below_min_insync_replicas() {
        let f = Fixture::new(2);
        f.commit_isr(&[1]);
        assert_eq!(f.partition().isr(), vec![1]);
        f.produce(&[b"a"], RequiredAcks::Leader).await;
        assert_eq!(f.log.flushed_offset(), 1);
        assert_eq!(
            f.log.high_watermark(),
            0,
            "one durable copy is fewer than min.insync.replicas"
        );
        // Broker 2 catches up and rejoins: now two copies count.
        f.fetch(2, 1).unwrap();
        let p = f.partition();
        eventually("2 rejoined", || p.isr() == vec![1, 2]).await;
        f.fetch(2, 1).unwrap();
        assert_eq!(f.log.high_watermark(), 1);
    }

    #[tokio::test]
    async fn a_lagging_follower_leaves_the_isr_only_through_the_controller() {
        let f = Fixture::new(1);
        let p = f.partition();
        let info = f.produce(&[b"a", b"b"], RequiredAcks::Leader).await;
        let leo = info.last_offset + 1;
        f.fetch(2, leo).unwrap();
        // 3 never fetches; within the lag time nothing happens.
        f.clock.advance(LAG - Duration::from_secs(1));
        assert_eq!(f.rm.maybe_shrink_isr(f.clock.now()).await, 0);
        f.fetch(2, leo).unwrap(); // 2 stays caught up
        f.clock.advance(Duration::from_secs(2));
        // The controller is unreachable: proposed, but the ISR does not change here.
        f.controller.down.store(true, Ordering::SeqCst);
        assert_eq!(f.rm.maybe_shrink_isr(f.clock.now()).await, 1);
        assert_eq!(p.isr(), vec![1, 2, 3]);
        assert_eq!(f.controller.registration().isr, vec![1, 2, 3]);
        assert!(!p.isr_change_in_flight());
        // No retry before the backoff.
        f.controller.down.store(false, Ordering::SeqCst);
        assert_eq!(f.rm.maybe_shrink_isr(f.clock.now()).await, 0);
        f.clock
            .advance(crate::replica::partition::ALTER_PARTITION_RETRY_BACKOFF);
        f.fetch(2, leo).unwrap();
        assert_eq!(f.rm.maybe_shrink_isr(f.clock.now()).await, 1);
        assert_eq!(p.isr(), vec![1, 2]);
        let reg = f.controller.registration();
        assert_eq!(reg.isr, vec![1, 2]);
        assert_eq!(p.partition_epoch(), reg.partition_epoch);
        assert_eq!(f.controller.submitted.load(Ordering::SeqCst), 2);
        // Committed without 3 now.
        let b = f.produce(&[b"c"], RequiredAcks::Leader).await;
        f.fetch(2, b.last_offset + 1).unwrap();
        assert_eq!(f.log.high_watermark(), b.last_offset + 1);
    }

    #[tokio::test]
    async fn a_caught_up_replica_joins_and_counts_while_its_expand_is_in_flight() {
        let f = Fixture::new(1);
        f.commit_isr(&[1, 2]);
        let p = f.partition();
        let a = f.produce(&[b"a", b"b"], RequiredAcks::Leader).await;
        f.fetch(2, a.last_offset + 1).unwrap();
        assert_eq!(f.log.high_watermark(), 2);
        // Behind the high watermark: not in sync.
        f.fetch(3, 1).unwrap();
        assert_eq!(f.controller.submitted.load(Ordering::SeqCst), 0);
        // Caught up: expand proposed, held by the controller.
        f.controller.hold.send_replace(true);
        f.fetch(3, 2).unwrap();
        eventually("expand submitted", || {
            f.controller.submitted.load(Ordering::SeqCst) == 1
        })
        .await;
        assert!(p.isr_change_in_flight());
        assert_eq!(p.isr(), vec![1, 2], "not committed yet");
        assert_eq!(p.maximal_isr(), vec![1, 2, 3]);
        // The high watermark already waits for 3 (KIP-497's maximal ISR).
        let b = f.produce(&[b"c"], RequiredAcks::Leader).await;
        f.fetch(2, b.last_offset + 1).unwrap();
        assert_eq!(f.log.high_watermark(), 2);
        f.controller.hold.send_replace(false);
        eventually("expand committed", || p.isr() == vec![1, 2, 3]).await;
        assert!(!p.isr_change_in_flight());
        assert_eq!(f.controller.registration().isr, vec![1, 2, 3]);
        f.fetch(3, b.last_offset + 1).unwrap();
        assert_eq!(f.log.high_watermark(), b.last_offset + 1);
    }

    #[tokio::test]
    async fn acks_all_waits_for_the_isr() {
        let f = Arc::new(Fixture::new(2));
        let waiting = {
            let f = f.clone();
            tokio::spawn(async move { f.produce(&[b"x"], RequiredAcks::All).await })
        };
        eventually("appended", || f.log.log_end_offset() == 1).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(
            !waiting.is_finished(),
            "not committed: only the leader has it"
        );
        f.fetch(2, 1).unwrap();
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "3 is in the ISR and has not fetched"
        );
        f.fetch(3, 1).unwrap();
        let info = waiting.await.unwrap();
        assert_eq!(info.base_offset, 0);
        assert_eq!(f.log.high_watermark(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn acks_all_times_out_when_the_isr_does_not_follow() {
        let f = Fixture::new(1);
        let r =
            f.rm.append_records(
                "t",
                0,
                &batch(&[b"x"], 1),
                RequiredAcks::All,
                Duration::from_millis(500),
            )
            .await;
        assert!(matches!(r, Err(ReplicaError::RequestTimedOut(_))), "{r:?}");
        assert_eq!(f.log.log_end_offset(), 1, "appended all the same");
    }

    #[tokio::test]
    async fn min_insync_replicas_refuses_before_and_after_the_append() {
        let f = Arc::new(Fixture::new(3));
        f.commit_isr(&[1, 2]);
        let r =
            f.rm.append_records("t", 0, &batch(&[b"x"], 1), RequiredAcks::All, LAG)
                .await;
        assert!(
            matches!(
                r,
                Err(ReplicaError::NotEnoughReplicas { isr: 2, min_isr: 3 })
            ),
            "{r:?}"
        );
        assert_eq!(f.log.log_end_offset(), 0, "nothing appended");
        // acks=1 is not held to it.
        f.produce(&[b"y"], RequiredAcks::Leader).await;

        let f = Arc::new(Fixture::new(2));
        let waiting = {
            let f = f.clone();
            tokio::spawn(async move {
                f.rm.append_records("t", 0, &batch(&[b"x"], 1), RequiredAcks::All, LAG)
                    .await
            })
        };
        eventually("appended", || f.log.log_end_offset() == 1).await;
        f.commit_isr(&[1]);
        let r = waiting.await.unwrap();
        assert!(
            matches!(
                r,
                Err(ReplicaError::NotEnoughReplicasAfterAppend { isr: 1, min_isr: 2 })
            ),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_leader_change_ends_acks_all_waits_and_appends() {
        let f = Arc::new(Fixture::new(1));
        let waiting = {
            let f = f.clone();
            tokio::spawn(async move {
                f.rm.append_records("t", 0, &batch(&[b"x"], 1), RequiredAcks::All, LAG)
                    .await
            })
        };
        eventually("appended", || f.log.log_end_offset() == 1).await;
        // The controller fences this node: 2 leads under a new epoch.
        let e1 = f.controller.broker_epoch(1);
        f.controller
            .run(Command::FenceBroker {
                broker_id: 1,
                broker_epoch: e1,
            })
            .unwrap();
        let p = f.apply_registration();
        assert!(!p.is_leader());
        let r = waiting.await.unwrap();
        assert!(
            matches!(
                r,
                Err(ReplicaError::NotLeaderOrFollower {
                    leader: 2,
                    leader_epoch: 1,
                    ..
                })
            ),
            "{r:?}"
        );
        let r =
            f.rm.append_records("t", 0, &batch(&[b"y"], 1), RequiredAcks::Leader, LAG)
                .await;
        assert!(
            matches!(r, Err(ReplicaError::NotLeaderOrFollower { leader: 2, .. })),
            "{r:?}"
        );
        assert_eq!(f.log.log_end_offset(), 1);
        // A fetch as if this node still led is refused too, with the epoch checks first.
        let stale = f.rm.fetch_for_follower(3, -1, "t", 0, 0, 0, -1, 1024);
        assert!(
            matches!(
                stale,
                Err(ReplicaError::FencedLeaderEpoch { current: 1, got: 0 })
            ),
            "{stale:?}"
        );
        let current = f.rm.fetch_for_follower(3, -1, "t", 0, 0, 1, -1, 1024);
        assert!(
            matches!(
                current,
                Err(ReplicaError::NotLeaderOrFollower { leader: 2, .. })
            ),
            "{current:?}"
        );
    }

    #[tokio::test]
    async fn fetch_checks_epochs_replicas_and_offsets() {
        let f = Fixture::new(1);
        f.produce(&[b"a"], RequiredAcks::Leader).await;
        let fetch = |epoch| f.rm.fetch_for_follower(2, -1, "t", 0, 0, epoch, -1, 1024);
        assert!(fetch(0).is_ok());
        assert!(fetch(-1).is_ok());
        assert!(matches!(
            fetch(1),
            Err(ReplicaError::UnknownLeaderEpoch { current: 0, got: 1 })
        ));
        assert!(matches!(
            f.rm.fetch_for_follower(4, -1, "t", 0, 0, 0, -1, 1024),
            Err(ReplicaError::UnknownReplica { replica_id: 4, .. })
        ));
        assert!(matches!(
            f.rm.fetch_for_follower(2, -1, "t", 0, 5, 0, -1, 1024),
            Err(ReplicaError::Log(LogError::OffsetOutOfRange { .. }))
        ));
        assert!(matches!(
            f.rm.fetch_for_follower(2, -1, "u", 0, 0, 0, -1, 1024),
            Err(ReplicaError::UnknownTopicOrPartition { .. })
        ));
    }

    #[tokio::test]
    async fn a_new_broker_epoch_resets_the_followers_state() {
        let f = Fixture::new(1);
        let p = f.partition();
        f.produce(&[b"a", b"b", b"c"], RequiredAcks::Leader).await;
        let epoch = f.controller.broker_epoch(2);
        f.rm.fetch_for_follower(2, epoch, "t", 0, 3, -1, -1, 1024)
            .unwrap();
        let state = |p: &Partition| {
            p.remote_replicas()
                .into_iter()
                .find(|r| r.replica_id == 2)
                .unwrap()
        };
        let s = state(&p);
        assert_eq!((s.log_end_offset, s.broker_epoch), (3, epoch));
        assert!(s.last_caught_up.is_some());
        // A fetch of the previous incarnation is refused.
        assert!(matches!(
            f.rm.fetch_for_follower(2, epoch - 1, "t", 0, 3, -1, -1, 1024),
            Err(ReplicaError::StaleBrokerEpoch { .. })
        ));
        // A restarted follower (new broker epoch) starts afresh: its old position and catch-up
        // time do not count.
        f.clock.advance(Duration::from_secs(1));
        f.rm.fetch_for_follower(2, epoch + 10, "t", 0, 1, -1, -1, 1024)
            .unwrap();
        let s = state(&p);
        assert_eq!((s.log_end_offset, s.broker_epoch), (1, epoch + 10));
        assert_eq!(s.last_caught_up, None);
    }

    #[tokio::test]
    async fn a_new_leaders_high_watermark_is_behind_its_epoch_start_until_followers_fetch() {
        let f = Fixture::new(1);
        f.produce(&[b"a", b"b"], RequiredAcks::Leader).await;
        assert!(!f.partition().hw_behind_epoch_start());
        // Leadership moves to 2 and back to 1 under epoch 2 before the followers fetched: 1's
        // log ends at 2, its high watermark is 0.
        f.move_leadership_away_and_back();
        let p = f.apply_registration();
        assert!(p.is_leader());
        assert_eq!(p.leader_epoch(), 2);
        assert_eq!(f.log.leader_epoch(), 2);
        assert_eq!(p.leader_epoch_start_offset(), Some(2));
        assert!(p.hw_behind_epoch_start());
        f.fetch(2, 2).unwrap();
        assert!(p.hw_behind_epoch_start());
        f.fetch(3, 2).unwrap();
        assert!(!p.hw_behind_epoch_start());
        assert_eq!(f.log.high_watermark(), 2);
    }

    #[tokio::test]
    async fn a_diverging_follower_is_told_where_its_epoch_ends() {
        let f = Fixture::new(1);
        f.produce(&[b"a", b"b"], RequiredAcks::Leader).await; // epoch 0: offsets 0, 1
        f.move_leadership_away_and_back();
        let p = f.apply_registration();
        assert_eq!(p.leader_epoch(), 2);
        f.produce(&[b"c", b"d"], RequiredAcks::Leader).await; // epoch 2: offsets 2, 3
        let fetch = |offset, last_epoch| {
            f.rm.fetch_for_follower(3, -1, "t", 0, offset, 2, last_epoch, 1 << 20)
                .unwrap()
        };
        // A follower that wrote offsets 2.. under epoch 1 (a leader this node never saw): its
        // epoch 1 maps to epoch 0 here, which ends at 2.
        let r = fetch(3, 1);
        assert_eq!(
            r.diverging_epoch,
            Some(EpochEndOffset {
                leader_epoch: 0,
                end_offset: 2
            })
        );
        assert!(r.records.is_empty());
        // Epoch 0 up to offset 3: epoch 0 ended at 2 here.
        assert_eq!(fetch(3, 0).diverging_epoch.map(|d| d.end_offset), Some(2));
        // Further than this log goes, with a diverging epoch: told, not out of range.
        assert!(fetch(7, 1).diverging_epoch.is_some());
        // In agreement: records.
        assert!(fetch(2, 0).diverging_epoch.is_none());
        let r = fetch(3, 2);
        assert!(r.diverging_epoch.is_none());
        assert!(!r.records.is_empty());
        // The follower's state was not touched by the diverging fetches... only the last one.
        let s = p
            .remote_replicas()
            .into_iter()
            .find(|r| r.replica_id == 3)
            .unwrap();
        assert_eq!(s.log_end_offset, 3);
    }

    #[tokio::test]
    async fn followers_replicate_in_process_and_acks_all_commits() {
        let f = Arc::new(Fixture::new(2));
        let (rm2, log2) = f.follower(2);
        let (rm3, log3) = f.follower(3);
        assert_eq!(rm2.leaders_followed(), BTreeSet::from([1]));
        let waiting = {
            let f = f.clone();
            tokio::spawn(async move { f.produce(&[b"x", b"y", b"z"], RequiredAcks::All).await })
        };
        eventually("appended", || f.log.log_end_offset() == 3).await;
        assert_eq!(fetch_round(&f.rm, 2, &rm2), 3);
        assert_eq!(fetch_round(&f.rm, 3, &rm3), 3);
        assert_eq!(log2.flushed_offset(), 3, "durable before the next fetch");
        assert!(!waiting.is_finished());
        // The next fetches report the durable positions: committed.
        fetch_round(&f.rm, 2, &rm2);
        fetch_round(&f.rm, 3, &rm3);
        assert_eq!(waiting.await.unwrap().base_offset, 0);
        assert_eq!(f.log.high_watermark(), 3);
        // 3's fetch completed the ISR: its answer carried the new high watermark; 2 learns it
        // with its next fetch.
        assert_eq!(log3.high_watermark(), 3);
        assert_eq!(log2.high_watermark(), 0);
        fetch_round(&f.rm, 2, &rm2);
        assert_eq!(log2.high_watermark(), 3);
        assert_eq!(all(&log2), all(&f.log), "same batches, offsets and epochs");
        assert_eq!(log2.latest_epoch(), Some(0));
        // A follower refuses appends for an epoch it does not follow under.
        assert!(matches!(
            rm2.append_fetched("t", 0, 5, &[], 3, 0),
            Err(ReplicaError::NotLeaderOrFollower { leader: 1, .. })
        ));
    }

    #[tokio::test]
    async fn a_diverging_follower_truncates_and_catches_up() {
        let f = Fixture::new(1);
        f.produce(&[b"a", b"b"], RequiredAcks::Leader).await; // epoch 0: offsets 0, 1
                                                              // Broker 3 holds the same epoch 0 prefix, then led under epoch 1 elsewhere and wrote 2
                                                              // records no one else has (a zombie's acks=1 suffix).
        let (rm3, log3) = f.follower_with_leaders_log(3);
        log3.assign_epoch_start(1).unwrap();
        // It led then: local appends were allowed.
        log3.set_leader_appends(true);
        log3.append(&batch(&[b"lost-1", b"lost-2"], 9)).unwrap();
        log3.flush().unwrap();
        assert_eq!((log3.log_end_offset(), log3.latest_epoch()), (4, Some(1)));
        // Meanwhile 1 leads again under epoch 2 and takes one more record.
        f.lead_epoch_2_with_3_following(&rm3, &log3).await; // epoch 2: offset 2
                                                            // The fetcher's loop: fetch, truncate on a diverging epoch, fetch again.
        let truncations = f.fetch_rounds(&rm3, 4);
        assert_eq!(truncations, 1);
        assert_eq!(log3.log_end_offset(), 3);
        assert_eq!(
            all(&log3),
            all(&f.log),
            "the suffix of epoch 1 is gone, epoch 2's record is in"
        );
        assert_eq!(log3.latest_epoch(), Some(2));
    }

    #[tokio::test]
    async fn a_follower_that_led_an_epoch_without_appending_catches_up() {
        let f = Fixture::new(1);
        f.produce(&[b"a", b"b"], RequiredAcks::Leader).await; // epoch 0: offsets 0, 1
        let (rm3, log3) = f.follower_with_leaders_log(3);
        // Broker 3 led epoch 1 and was gone before it appended anything: its epoch cache says
        // epoch 1 starts at its log end.
        log3.assign_epoch_start(1).unwrap();
        assert_eq!((log3.log_end_offset(), log3.latest_epoch()), (2, Some(1)));
        f.lead_epoch_2_with_3_following(&rm3, &log3).await; // epoch 2: offset 2
        let divergences = f.fetch_rounds(&rm3, 4);
        // One divergence (no record to cut: the empty epoch goes), then it fetches on.
        assert_eq!(divergences, 1);
        assert_eq!(all(&log3), all(&f.log));
        assert_eq!(log3.latest_epoch(), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_isr_expiration_task_shrinks_on_its_own() {
        let f = Arc::new(Fixture::new(1));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = {
            let f = f.clone();
            tokio::spawn(async move {
                f.rm.run_isr_expiration(async {
                    let _ = stop_rx.await;
                })
                .await
            })
        };
        f.fetch(2, 0).unwrap();
        f.clock.advance(LAG + Duration::from_secs(1));
        f.fetch(2, 0).unwrap(); // 2 stays caught up (nothing to fetch), 3 never fetched
        tokio::time::sleep(LAG).await; // the task ticks (paused time moves by itself)
        assert_eq!(f.partition().isr(), vec![1, 2]);
        assert_eq!(f.controller.registration().isr, vec![1, 2]);
        stop_tx.send(()).unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_recreated_topic_is_a_new_partition() {
        let f = Fixture::new(1);
        let old = f.partition();
        let reg = f.controller.registration();
        let other = Uuid::new_v4();
        let p =
            f.rm.become_leader("t", other, 0, f.log.clone(), &reg)
                .unwrap();
        assert!(!Arc::ptr_eq(&old, &p));
        assert_eq!(f.rm.partition("t", 0).unwrap().topic_id(), other);
    }
}
