//! One hosted partition replica (Kafka's `Partition`): its role, and as leader the replication
//! state of every remote replica, the ISR and the high watermark.
//!
//! - **Role**: leader (leader epoch, partition epoch, replicas, ISR) or follower (leader id and
//!   leader epoch), set only from the controller's registrations; an older leader epoch than the
//!   current one is ignored.
//! - **Remote replicas** (Kafka's `Replica`): each follower's log end offset is the offset it
//!   fetches from. Under `flush = "always"` a follower fsyncs what it fetched before it fetches
//!   again, so that offset is durable on the follower. Also tracked: the last time it was caught
//!   up with the leader's log end offset (Kafka's `lastCaughtUpTimeMs` rule: a fetch at the
//!   leader's end, or at least at the end the leader had at the previous fetch, counts), the last
//!   fetch time, and its broker epoch: a fetch under a newer broker epoch (a restarted follower,
//!   KIP-903) starts its state afresh, one under an older epoch is refused.
//! - **ISR** (KIP-497): the committed ISR, plus at most one in-flight change. While an expand is
//!   pending the high watermark is computed over the *maximal* ISR (committed plus the joining
//!   replica); a shrink takes effect only when committed. Changes are proposals
//!   ([`IsrProposal`]) that the replica manager sends to the controller; the committed outcome is
//!   applied with [`Partition::apply_partition_state`].
//! - **High watermark**: the minimum over the maximal ISR of the durable ends (this leader's is
//!   its flushed offset: [`PartitionLog::update_high_watermark`] caps it there), and it does not
//!   move while the maximal ISR is smaller than `min.insync.replicas`, so a committed record is
//!   always durable on at least that many replicas.
//! - **Shrink**: an ISR follower not caught up within `replica_lag_time_max`. **Expand**: a
//!   replica outside the ISR whose log end offset reached both the high watermark and this
//!   leader epoch's start offset, if its broker is eligible (unfenced, not shutting down, the
//!   broker epoch it fetches with is its registered one).
//!
//! Time comes from a [`Clock`](crate::clock::Clock) (monotonic `Instant`s only).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

use super::alter_partition::AlterPartitionError;
use super::ReplicaError;
use crate::clock::SharedClock;
use crate::controller::{ControllerError, PartitionRegistration, PartitionState};
use crate::log::{HighWatermarkMode, PartitionLog};
use crate::sync::RwLockExt;

/// After a proposal failed for a reason other than stale epochs, the next one waits this long.
pub const ALTER_PARTITION_RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// Offset unknown (a replica that has not fetched under this leadership).
const UNKNOWN_OFFSET: i64 = -1;

/// A leader epoch and the offset where it ends (OffsetForLeaderEpoch, a KIP-320 diverging
/// epoch in a Fetch response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub leader_epoch: i32,
    pub end_offset: i64,
}

/// A remote replica's state as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSnapshot {
    pub replica_id: i32,
    /// The offset it last fetched from (`-1` before its first fetch under this leadership).
    pub log_end_offset: i64,
    /// The last time it was caught up with the leader.
    pub last_caught_up: Option<Instant>,
    /// The time of its last fetch.
    pub last_fetch: Option<Instant>,
    /// The broker epoch of its last fetch (`-1` unknown).
    pub broker_epoch: i64,
}

/// An ISR change the leader wants committed (the replica manager turns it into an
/// [`AlterPartitionRequest`](super::AlterPartitionRequest)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader_epoch: i32,
    /// The partition epoch of the committed state the change is based on.
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// The ISR with its in-flight change (KIP-497).
#[derive(Debug, Clone, PartialEq, Eq)]
enum IsrState {
    Committed { isr: Vec<i32> },
    PendingExpand { committed: Vec<i32>, adding: i32 },
    PendingShrink { committed: Vec<i32> },
}

impl IsrState {
    fn committed(&self) -> &[i32] {
        match self {
            IsrState::Committed { isr } => isr,
            IsrState::PendingExpand { committed, .. } | IsrState::PendingShrink { committed } => {
                committed
            }
        }
    }

    /// The largest ISR the partition may have: the committed one plus a joining replica.
    fn maximal(&self) -> Vec<i32> {
        let mut isr = self.committed().to_vec();
        if let IsrState::PendingExpand { adding, .. } = self {
            isr.push(*adding);
        }
        isr
    }

    fn in_flight(&self) -> bool {
        !matches!(self, IsrState::Committed { .. })
    }
}

#[derive(Debug, Clone)]
struct RemoteReplica {
    log_end_offset: i64,
    last_caught_up: Option<Instant>,
    last_fetch: Option<Instant>,
    /// The leader's log end offset at this replica's previous fetch.
    last_fetch_leader_leo: i64,
    broker_epoch: i64,
}

impl RemoteReplica {
    /// A replica at the start of a leadership: ISR members count as caught up now (they get a
    /// full lag period to fetch), the others never were.
    fn new(now: Instant, in_isr: bool) -> Self {
        RemoteReplica {
            log_end_offset: UNKNOWN_OFFSET,
            last_caught_up: in_isr.then_some(now),
            last_fetch: None,
            last_fetch_leader_leo: UNKNOWN_OFFSET,
            broker_epoch: -1,
        }
    }

    fn is_caught_up(&self, leader_leo: i64, now: Instant, lag_max: Duration) -> bool {
        (self.log_end_offset != UNKNOWN_OFFSET && self.log_end_offset >= leader_leo)
            || self
                .last_caught_up
                .is_some_and(|t| now.saturating_duration_since(t) <= lag_max)
    }
}

#[derive(Debug)]
struct Leader {
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: IsrState,
    /// The log end offset when this leadership began (Kafka's leader epoch start offset).
    epoch_start_offset: i64,
    remotes: BTreeMap<i32, RemoteReplica>,
    /// After a failed proposal: none before this instant.
    retry_after: Option<Instant>,
    /// A proposal based on this partition epoch was rejected as stale: none until a newer
    /// committed state is applied.
    stale_at: Option<i32>,
}

impl Leader {
    fn may_propose(&self, now: Instant) -> bool {
        !self.isr.in_flight()
            && self.stale_at != Some(self.partition_epoch)
            && self.retry_after.is_none_or(|t| now >= t)
    }
}

#[derive(Debug)]
enum Role {
    Leader(Leader),
    Follower {
        /// The leader's broker id, or `-1` while the partition has none.
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
    },
}

/// One hosted partition replica (see the module doc).
pub struct Partition {
    topic: String,
    topic_id: Uuid,
    index: i32,
    local_id: i32,
    log: Arc<PartitionLog>,
    clock: SharedClock,
    lag_max: Duration,
    role: RwLock<Role>,
    /// Bumped on every change of role, epoch or ISR (acks=all waiters watch it).
    changes: watch::Sender<u64>,
    /// The log end offset after each leader append (follower fetches long-poll on it).
    appended: watch::Sender<i64>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("topic", &self.topic)
            .field("partition", &self.index)
            .field("role", &*self.role.read_unpoisoned())
            .finish()
    }
}

impl Partition {
    /// A replica of `topic`-`index` on broker `local_id`, starting as a follower of `leader`
    /// (the replica manager turns it into a leader at once if the registration says so). The
    /// log's high watermark is moved by replication from now on.
    pub(crate) fn new(
        topic: &str,
        topic_id: Uuid,
        index: i32,
        local_id: i32,
        log: Arc<PartitionLog>,
        clock: SharedClock,
        lag_max: Duration,
    ) -> Partition {
        log.set_high_watermark_mode(HighWatermarkMode::Replicated);
        // A replica takes local appends only once it leads (see `make_leader`).
        log.set_leader_appends(false);
        Partition {
            topic: topic.to_string(),
            topic_id,
            index,
            local_id,
            log,
            clock,
            lag_max,
            role: RwLock::new(Role::Follower {
                leader: -1,
                leader_epoch: -1,
                partition_epoch: -1,
            }),
            changes: watch::channel(0).0,
            appended: watch::channel(-1).0,
        }
    }

    /// Topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// Topic id.
    pub fn topic_id(&self) -> Uuid {
        self.topic_id
    }
    /// Partition index.
    pub fn index(&self) -> i32 {
        self.index
    }
    /// This replica's log.
    pub fn log(&self) -> &Arc<PartitionLog> {
        &self.log
    }

    /// A receiver that changes whenever the role, an epoch or the ISR changes.
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// A receiver that changes after every append on this leader (a follower's long poll).
    pub fn watch_appends(&self) -> watch::Receiver<i64> {
        self.appended.subscribe()
    }

    pub(crate) fn appended(&self, log_end_offset: i64) {
        self.appended.send_replace(log_end_offset);
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// This node leads the partition.
    pub fn is_leader(&self) -> bool {
        matches!(*self.role.read_unpoisoned(), Role::Leader(_))
    }

    /// The leader's broker id as this replica knows it (`-1`: none).
    pub fn leader_id(&self) -> i32 {
        match &*self.role.read_unpoisoned() {
            Role::Leader(_) => self.local_id,
            Role::Follower { leader, .. } => *leader,
        }
    }

    /// The current leader epoch (`-1` before the first registration).
    pub fn leader_epoch(&self) -> i32 {
        match &*self.role.read_unpoisoned() {
            Role::Leader(l) => l.leader_epoch,
            Role::Follower { leader_epoch, .. } => *leader_epoch,
        }
    }

    /// The partition epoch of the last committed state applied.
    pub fn partition_epoch(&self) -> i32 {
        match &*self.role.read_unpoisoned() {
            Role::Leader(l) => l.partition_epoch,
            Role::Follower {
                partition_epoch, ..
            } => *partition_epoch,
        }
    }

    /// The committed ISR (leader only; empty on a follower).
    pub fn isr(&self) -> Vec<i32> {
        match &*self.role.read_unpoisoned() {
            Role::Leader(l) => l.isr.committed().to_vec(),
            Role::Follower { .. } => Vec::new(),
        }
    }

    /// The ISR the high watermark is computed over: the committed ISR plus a replica whose
    /// joining is in flight (leader only).
    pub fn maximal_isr(&self) -> Vec<i32> {
        match &*self.role.read_unpoisoned() {
            Role::Leader(l) => l.isr.maximal(),
            Role::Follower { .. } => Vec::new(),
        }
    }

    /// An ISR change is waiting for the controller.
    pub fn isr_change_in_flight(&self) -> bool {
        match &*self.role.read_unpoisoned() {
            Role::Leader(l) => l.isr.in_flight(),
            Role::Follower { .. } => false,
        }
    }

    /// The replicas (leader only).
    pub fn replicas(&self) -> Vec<i32> {
        match &*self.role.read_unpoisoned() {
            Role::Leader(l) => l.replicas.clone(),
            Role::Follower { .. } => Vec::new(),
        }
    }

    /// The remote replicas' states (leader only).
    pub fn remote_replicas(&self) -> Vec<ReplicaSnapshot> {
        match &*self.role.read_unpoisoned() {
            Role::Leader(l) => l
                .remotes
                .iter()
                .map(|(id, r)| ReplicaSnapshot {
                    replica_id: *id,
                    log_end_offset: r.log_end_offset,
                    last_caught_up: r.last_caught_up,
                    last_fetch: r.last_fetch,
                    broker_epoch: r.broker_epoch,
                })
                .collect(),
            Role::Follower { .. } => Vec::new(),
        }
    }

    /// The log end offset when this node's current leadership began (leader only).
    pub fn leader_epoch_start_offset(&self) -> Option<i64> {
        match &*self.role.read_unpoisoned() {
            Role::Leader(l) => Some(l.epoch_start_offset),
            Role::Follower { .. } => None,
        }
    }

    /// A new leader whose high watermark has not reached its epoch's start offset yet: it cannot
    /// tell which records below it are committed (ListOffsets LATEST answers
    /// OFFSET_NOT_AVAILABLE meanwhile, as Kafka does).
    pub fn hw_behind_epoch_start(&self) -> bool {
        match &*self.role.read_unpoisoned() {
            Role::Leader(l) => self.log.high_watermark() < l.epoch_start_offset,
            Role::Follower { .. } => false,
        }
    }

    /// `min.insync.replicas` of the topic.
    pub fn min_insync_replicas(&self) -> usize {
        self.log.config().min_insync_replicas()
    }

    fn not_leader(&self, leader: i32, leader_epoch: i32) -> ReplicaError {
        ReplicaError::NotLeaderOrFollower {
            topic: self.topic.clone(),
            partition: self.index,
            leader,
            leader_epoch,
        }
    }

    /// Kafka's leader epoch check of a request: `-1` checks nothing, an older epoch is fenced, a
    /// newer one unknown here.
    fn check_epoch(current: i32, requested: i32) -> Result<(), ReplicaError> {
        if requested < 0 || requested == current {
            Ok(())
        } else if requested < current {
            Err(ReplicaError::FencedLeaderEpoch {
                current,
                got: requested,
            })
        } else {
            Err(ReplicaError::UnknownLeaderEpoch {
                current,
                got: requested,
            })
        }
    }

    /// This node leads under a leader epoch that `requested_epoch` (`-1`: any) matches; returns
    /// the leader epoch and the committed ISR size.
    pub fn check_leader(&self, requested_epoch: i32) -> Result<(i32, usize), ReplicaError> {
        match &*self.role.read_unpoisoned() {
            Role::Leader(l) => {
                Self::check_epoch(l.leader_epoch, requested_epoch)?;
                Ok((l.leader_epoch, l.isr.committed().len()))
            }
            Role::Follower {
                leader,
                leader_epoch,
                ..
            } => {
                Self::check_epoch(*leader_epoch, requested_epoch)?;
                Err(self.not_leader(*leader, *leader_epoch))
            }
        }
    }

    /// Run `f` while this node leads under `leader_epoch` (no role change meanwhile: Kafka
    /// appends under the read side of its leader/ISR lock).
    pub(crate) fn while_leader<R>(
        &self,
        leader_epoch: i32,
        f: impl FnOnce() -> Result<R, ReplicaError>,
    ) -> Result<R, ReplicaError> {
        let role = self.role.read_unpoisoned();
        match &*role {
            Role::Leader(l) if l.leader_epoch == leader_epoch => f(),
            Role::Leader(l) => Err(self.not_leader(self.local_id, l.leader_epoch)),
            Role::Follower {
                leader,
                leader_epoch,
                ..
            } => Err(self.not_leader(*leader, *leader_epoch)),
        }
    }

    /// Become (or stay) the leader as `reg` says. Returns whether this started a new leadership
    /// (a new leader epoch). A registration older than the current state is ignored.
    pub(crate) fn make_leader(&self, reg: &PartitionRegistration) -> Result<bool, ReplicaError> {
        let now = self.clock.now();
        let mut role = self.role.write_unpoisoned();
        let current_epoch = match &*role {
            Role::Leader(l) => l.leader_epoch,
            Role::Follower { leader_epoch, .. } => *leader_epoch,
        };
        if reg.leader_epoch < current_epoch {
            return Ok(false);
        }
        let new_leadership = match &mut *role {
            Role::Leader(l) if l.leader_epoch == reg.leader_epoch => {
                if reg.partition_epoch < l.partition_epoch {
                    return Ok(false);
                }
                // Same leadership, a newer registration: replicas and ISR as committed.
                l.remotes.retain(|id, _| reg.replicas.contains(id));
                for id in &reg.replicas {
                    if *id != self.local_id {
                        l.remotes
                            .entry(*id)
                            .or_insert_with(|| RemoteReplica::new(now, false));
                    }
                }
                l.replicas = reg.replicas.clone();
                l.isr = IsrState::Committed {
                    isr: reg.isr.clone(),
                };
                l.partition_epoch = reg.partition_epoch;
                l.stale_at = None;
                false
            }
            _ => {
                // The epoch is in the cache (durably) before the first append of this
                // leadership; no follower append runs meanwhile (they take the role lock).
                self.log.assign_epoch_start(reg.leader_epoch)?;
                self.log.set_leader_appends(true);
                let start = self.log.log_end_offset();
                let remotes = reg
                    .replicas
                    .iter()
                    .filter(|id| **id != self.local_id)
                    .map(|id| (*id, RemoteReplica::new(now, reg.isr.contains(id))))
                    .collect();
                *role = Role::Leader(Leader {
                    leader_epoch: reg.leader_epoch,
                    partition_epoch: reg.partition_epoch,
                    replicas: reg.replicas.clone(),
                    isr: IsrState::Committed {
                        isr: reg.isr.clone(),
                    },
                    epoch_start_offset: start,
                    remotes,
                    retry_after: None,
                    stale_at: None,
                });
                true
            }
        };
        drop(role);
        self.changed();
        self.maybe_increment_high_watermark();
        Ok(new_leadership)
    }

    /// Become (or stay) a follower of `reg.leader` (`-1`: the partition has no leader). Returns
    /// whether the leader or leader epoch changed. A registration older than the current state
    /// is ignored.
    pub(crate) fn make_follower(&self, reg: &PartitionRegistration) -> bool {
        let mut role = self.role.write_unpoisoned();
        let (current_epoch, current_partition_epoch, was_leader) = match &*role {
            Role::Leader(l) => (l.leader_epoch, l.partition_epoch, true),
            Role::Follower {
                leader_epoch,
                partition_epoch,
                ..
            } => (*leader_epoch, *partition_epoch, false),
        };
        if reg.leader_epoch < current_epoch
            || (reg.leader_epoch == current_epoch && reg.partition_epoch < current_partition_epoch)
        {
            return false;
        }
        let new_leader = was_leader || reg.leader_epoch != current_epoch;
        self.log.set_leader_appends(false);
        *role = Role::Follower {
            leader: reg.leader,
            leader_epoch: reg.leader_epoch,
            partition_epoch: reg.partition_epoch,
        };
        drop(role);
        self.changed();
        new_leader
    }

    /// Run `f` while this replica follows under `leader_epoch` (a leadership change waits for it,
    /// so no follower append lands after a new leader recorded its epoch start).
    pub(crate) fn while_follower<R>(
        &self,
        leader_epoch: i32,
        f: impl FnOnce() -> Result<R, ReplicaError>,
    ) -> Result<R, ReplicaError> {
        let role = self.role.read_unpoisoned();
        match &*role {
            Role::Follower {
                leader_epoch: e, ..
            } if *e == leader_epoch => f(),
            Role::Follower {
                leader,
                leader_epoch: e,
                ..
            } => Err(self.not_leader(*leader, *e)),
            Role::Leader(l) => Err(self.not_leader(self.local_id, l.leader_epoch)),
        }
    }

    /// As a follower: the leader it follows and the leader epoch (`None` while leading).
    pub fn following(&self) -> Option<(i32, i32)> {
        match &*self.role.read_unpoisoned() {
            Role::Follower {
                leader,
                leader_epoch,
                ..
            } => Some((*leader, *leader_epoch)),
            Role::Leader(_) => None,
        }
    }

    /// A follower fetch at `fetch_offset` from `replica_id` under `broker_epoch` (`-1`: not
    /// sent): update its state; propose an ISR expand if it qualifies and `eligible` (its broker
    /// may join the ISR). The caller moves the high watermark afterwards.
    pub(crate) fn update_follower_fetch(
        &self,
        replica_id: i32,
        broker_epoch: i64,
        fetch_offset: i64,
        eligible: bool,
    ) -> Result<Option<IsrProposal>, ReplicaError> {
        let now = self.clock.now();
        let leo = self.log.log_end_offset();
        let hw = self.log.high_watermark();
        let mut role = self.role.write_unpoisoned();
        let l = match &mut *role {
            Role::Leader(l) => l,
            Role::Follower {
                leader,
                leader_epoch,
                ..
            } => return Err(self.not_leader(*leader, *leader_epoch)),
        };
        let Some(r) = l.remotes.get_mut(&replica_id) else {
            return Err(ReplicaError::UnknownReplica {
                topic: self.topic.clone(),
                partition: self.index,
                replica_id,
            });
        };
        if broker_epoch >= 0 && r.broker_epoch >= 0 {
            if broker_epoch < r.broker_epoch {
                return Err(ReplicaError::StaleBrokerEpoch {
                    replica_id,
                    got: broker_epoch,
                    current: r.broker_epoch,
                });
            }
            if broker_epoch > r.broker_epoch {
                // A new incarnation: what the old one fetched may not have survived (KIP-903).
                *r = RemoteReplica::new(now, false);
            }
        }
        if broker_epoch >= 0 {
            r.broker_epoch = broker_epoch;
        }
        if fetch_offset >= leo {
            r.last_caught_up = Some(now);
        } else if r.last_fetch_leader_leo != UNKNOWN_OFFSET
            && fetch_offset >= r.last_fetch_leader_leo
        {
            r.last_caught_up = r.last_fetch;
        }
        r.log_end_offset = fetch_offset;
        r.last_fetch = Some(now);
        r.last_fetch_leader_leo = leo;
        let qualifies = eligible
            && fetch_offset >= hw
            && fetch_offset >= l.epoch_start_offset
            && l.replicas.contains(&replica_id);
        if !qualifies || l.isr.maximal().contains(&replica_id) || !l.may_propose(now) {
            if !l.isr.maximal().contains(&replica_id) {
                tracing::debug!(
                    topic = %self.topic,
                    partition = self.index,
                    replica_id,
                    fetch_offset,
                    high_watermark = hw,
                    epoch_start_offset = l.epoch_start_offset,
                    eligible,
                    in_flight = l.isr.in_flight(),
                    stale_at = ?l.stale_at,
                    "a replica outside the ISR does not join it yet"
                );
            }
            return Ok(None);
        }
        let committed = l.isr.committed().to_vec();
        let mut new_isr = committed.clone();
        new_isr.push(replica_id);
        l.isr = IsrState::PendingExpand {
            committed,
            adding: replica_id,
        };
        let proposal = IsrProposal {
            leader_epoch: l.leader_epoch,
            partition_epoch: l.partition_epoch,
            new_isr,
        };
        drop(role);
        self.changed();
        Ok(Some(proposal))
    }

    /// The ISR followers that are not caught up within the lag time; if there are any and no
    /// change is in flight, the shrink to propose (now pending).
    pub(crate) fn shrink_proposal(&self, now: Instant) -> Option<IsrProposal> {
        let leo = self.log.log_end_offset();
        let mut role = self.role.write_unpoisoned();
        let Role::Leader(l) = &mut *role else {
            return None;
        };
        if !l.may_propose(now) {
            return None;
        }
        let committed = l.isr.committed().to_vec();
        let new_isr: Vec<i32> = committed
            .iter()
            .copied()
            .filter(|id| {
                *id == self.local_id
                    || l.remotes
                        .get(id)
                        .is_some_and(|r| r.is_caught_up(leo, now, self.lag_max))
            })
            .collect();
        if new_isr.len() == committed.len() {
            return None;
        }
        l.isr = IsrState::PendingShrink { committed };
        let proposal = IsrProposal {
            leader_epoch: l.leader_epoch,
            partition_epoch: l.partition_epoch,
            new_isr,
        };
        drop(role);
        self.changed();
        Some(proposal)
    }

    /// Apply a partition state the controller committed (the answer to a proposal). Ignored
    /// unless it is this leadership's and not older than the current state; returns whether it
    /// was applied.
    pub fn apply_partition_state(&self, state: &PartitionState) -> bool {
        let mut role = self.role.write_unpoisoned();
        let Role::Leader(l) = &mut *role else {
            return false;
        };
        if state.leader != self.local_id || state.leader_epoch != l.leader_epoch {
            // Leadership moved: the new registration will say what this node is now.
            l.isr = IsrState::Committed {
                isr: l.isr.committed().to_vec(),
            };
            drop(role);
            self.changed();
            return false;
        }
        if state.partition_epoch < l.partition_epoch {
            return false;
        }
        l.isr = IsrState::Committed {
            isr: state.isr.clone(),
        };
        l.partition_epoch = state.partition_epoch;
        l.stale_at = None;
        l.retry_after = None;
        drop(role);
        self.changed();
        self.maybe_increment_high_watermark();
        true
    }

    /// The failpoint `leader_local_isr_shrink` (debug test builds only): take `isr` as committed
    /// without the controller, the bug the fault suite must catch (a leader acknowledging
    /// writes that the replicas the controller would elect do not have).
    pub(crate) fn apply_local_isr(&self, isr: &[i32]) {
        let mut role = self.role.write_unpoisoned();
        let Role::Leader(l) = &mut *role else {
            return;
        };
        l.isr = IsrState::Committed { isr: isr.to_vec() };
        drop(role);
        self.changed();
        self.maybe_increment_high_watermark();
    }

    /// A proposal based on `partition_epoch` failed: back to the committed ISR. After a stale
    /// epoch nothing is proposed until a newer committed state arrives; after other failures the
    /// next proposal waits [`ALTER_PARTITION_RETRY_BACKOFF`].
    pub(crate) fn proposal_failed(&self, partition_epoch: i32, error: &AlterPartitionError) {
        let now = self.clock.now();
        let mut role = self.role.write_unpoisoned();
        let Role::Leader(l) = &mut *role else {
            return;
        };
        if l.partition_epoch != partition_epoch || !l.isr.in_flight() {
            return;
        }
        l.isr = IsrState::Committed {
            isr: l.isr.committed().to_vec(),
        };
        match error {
            AlterPartitionError::Rejected(
                ControllerError::FencedLeaderEpoch { .. }
                | ControllerError::InvalidUpdateVersion { .. }
                | ControllerError::NotLeaderOrFollower { .. }
                | ControllerError::StaleBrokerEpoch { .. }
                | ControllerError::UnknownTopicId(_)
                | ControllerError::UnknownTopicOrPartition { .. },
            ) => l.stale_at = Some(partition_epoch),
            _ => l.retry_after = Some(now + ALTER_PARTITION_RETRY_BACKOFF),
        }
        drop(role);
        self.changed();
    }

    /// The offset up to which this leader should flush so that followers' durable data counts
    /// (acks=0/1 appends are not flushed by their producers): `Some(last offset)` when every
    /// follower of the maximal ISR holds data beyond this leader's flushed offset.
    pub(crate) fn flush_needed(&self) -> Option<i64> {
        let role = self.role.read_unpoisoned();
        let Role::Leader(l) = &*role else {
            return None;
        };
        let followers_end = l
            .isr
            .maximal()
            .iter()
            .filter(|id| **id != self.local_id)
            .map(|id| {
                l.remotes
                    .get(id)
                    .map_or(UNKNOWN_OFFSET, |r| r.log_end_offset)
            })
            .min()?;
        (followers_end > self.log.flushed_offset()).then_some(followers_end - 1)
    }

    /// Move the high watermark to the minimum durable end over the maximal ISR, if that ISR has
    /// at least `min.insync.replicas` members (leader only). Returns the high watermark.
    pub fn maybe_increment_high_watermark(&self) -> i64 {
        let role = self.role.read_unpoisoned();
        let Role::Leader(l) = &*role else {
            return self.log.high_watermark();
        };
        let maximal = l.isr.maximal();
        if maximal.len() < self.min_insync_replicas() {
            return self.log.high_watermark();
        }
        let mut hw = self.log.log_end_offset();
        for id in maximal.iter().filter(|id| **id != self.local_id) {
            hw = hw.min(
                l.remotes
                    .get(id)
                    .map_or(UNKNOWN_OFFSET, |r| r.log_end_offset),
            );
        }
        if hw >= 0 {
            // Capped at this leader's flushed offset by the log.
            self.log.update_high_watermark(hw);
        }
        self.log.high_watermark()
    }

    /// As a follower: the leader's high watermark arrived with fetched data; this replica's high
    /// watermark becomes the smaller of it and what this replica holds durably.
    pub fn update_follower_high_watermark(&self, leader_hw: i64) {
        if !self.is_leader() {
            self.log.update_high_watermark(leader_hw);
        }
    }
}
