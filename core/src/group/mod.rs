//! The group coordinator, along the lines of Kafka's group-coordinator module:
//! - [`GroupCoordinator`] (here): the facade the gateway calls; one lock over the groups, time
//!   from an injectable [`Clock`](crate::clock::Clock),
//! - [`group_metadata_manager`]: Kafka's `GroupMetadataManager`, the one map of groups, each a
//!   classic group or a consumer group (an enum, so a group id is never both),
//! - [`classic`]: the classic rebalance protocol (JoinGroup v0-9 with MEMBER_ID_REQUIRED and
//!   static membership, SyncGroup, Heartbeat, LeaveGroup), `ClassicGroup` and its state enum,
//! - [`consumer`]: KIP-848 consumer groups (`ConsumerGroup`, member epochs, server-side
//!   assignors),
//! - [`offset_metadata_manager`]: committed offsets (Kafka's `OffsetMetadataManager`: commit,
//!   fetch, delete, expiry) over an [`OffsetStore`] ([`offset_store`]: the trait and its redb
//!   backend),
//! - [`partition_offset_store`]: the store of a cluster's coordinator, one partition of the
//!   replicated internal topic `__consumer_offsets` in Kafka's record layout
//!   ([`coordinator_record`]),
//! - [`consumer_protocol`]: decoding of the consumer protocol's subscription and assignment bytes.
//!
//! The coordinator is synchronous and never sleeps. Every timeout (sessions, pending member ids,
//! join and sync deadlines, the initial rebalance delay, KIP-848 revocation deadlines, the offset
//! expiry interval) is an `Instant` from the coordinator's [`Clock`](crate::clock::Clock); what is stored (commit
//! times, explicit expiry, when a group became empty) is wall-clock milliseconds
//! ([`Clock::wall_ms`](crate::clock::Clock::wall_ms), which is [`crate::clock::now_ms`] outside tests). The gateway calls
//! [`GroupCoordinator::tick`] periodically (every 100 ms) to act on passed deadlines; tests move
//! a [`crate::clock::ManualClock`] instead. Requests that wait (JoinGroup until the rebalance
//! completes, SyncGroup until the leader's assignment arrives) get a
//! [`tokio::sync::oneshot::Receiver`] answered when the state machine gets there.
//!
//! Committed offsets are written durably through the [`OffsetStore`] outside the coordinator
//! lock (group-committed); callers on an async runtime should call the committing methods from a
//! blocking context (`spawn_blocking`), since they wait for the disk.

pub mod classic;
pub mod config;
pub mod consumer;
pub mod consumer_protocol;
pub(crate) mod context;
pub mod coordinator_record;
pub mod error;
pub(crate) mod group_metadata_manager;
pub(crate) mod offset_metadata_manager;
pub mod offset_store;
pub mod partition_offset_store;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::clock::SharedClock;
use crate::sync::LockExt;

pub use classic::state::ClassicGroupStateName;
pub use classic::{
    HeartbeatRequest, JoinRequest, JoinResponse, JoinedMember, LeavingMember, SyncRequest,
    SyncResponse,
};
pub use config::{GroupConfig, MAX_GROUP_ID_LEN, NEW_MEMBER_JOIN_TIMEOUT_MS};
pub use consumer::{
    Assignment, ConsumerGroupDescription, ConsumerHeartbeatRequest, ConsumerHeartbeatResponse,
    ConsumerMemberDescription,
};
pub use consumer_protocol::{decode_assignment, decode_subscription, CONSUMER_PROTOCOL_TYPE};
pub use coordinator_record::{partition_for, GroupMetadata, MemberMetadata};
pub use error::GroupError;
pub use group_metadata_manager::{GroupDescription, GroupListing, MemberDescription};
pub use offset_metadata_manager::{OffsetCommitEntry, OffsetCommitRequest};
pub use offset_store::{
    CommittedOffset, OffsetStore, OffsetStoreError, RedbOffsetStore, TopicPartition,
};
pub use partition_offset_store::{CoordinatorPartitionWriter, PartitionOffsetStore, OFFSETS_TOPIC};

use context::OpContext;
use group_metadata_manager::GroupMetadataManager;
use offset_metadata_manager::OffsetMetadataManager;

/// The node's group coordinator.
pub struct GroupCoordinator {
    config: GroupConfig,
    clock: SharedClock,
    offsets: OffsetMetadataManager,
    state: Mutex<State>,
}

/// What the coordinator lock guards.
struct State {
    groups: GroupMetadataManager,
    /// When old offsets are next expired (`offsets.retention.check.interval.ms`).
    next_offset_expiry: Instant,
}

impl GroupCoordinator {
    /// A coordinator over the committed offsets in `store`, timed by `clock`. Groups that have
    /// offsets start Empty (members rebuild the rest by rejoining, as in Kafka).
    pub fn new(
        config: GroupConfig,
        store: Arc<dyn OffsetStore>,
        clock: SharedClock,
    ) -> GroupCoordinator {
        let groups = GroupMetadataManager::load(store.as_ref(), clock.now());
        let next_offset_expiry =
            clock.now() + context::ms(config.offsets_retention_check_interval_ms);
        GroupCoordinator {
            state: Mutex::new(State {
                groups,
                next_offset_expiry,
            }),
            offsets: OffsetMetadataManager::new(store),
            config,
            clock,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The committed offsets (e.g. to drop a deleted topic's offsets).
    pub fn offsets(&self) -> &dyn OffsetStore {
        self.offsets.store()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock_unpoisoned()
    }

    /// The context of an operation happening now.
    fn ctx(&self) -> OpContext<'_> {
        OpContext {
            config: &self.config,
            store: self.offsets.store(),
            now: self.clock.now(),
            wall_ms: self.clock.wall_ms(),
        }
    }

    /// JoinGroup. The receiver is answered when the rebalance completes (or at once on error).
    pub fn join_group(&self, req: JoinRequest) -> oneshot::Receiver<JoinResponse> {
        let (tx, rx) = oneshot::channel();
        let ctx = self.ctx();
        self.lock().groups.join_group(&ctx, req, tx);
        rx
    }

    /// SyncGroup. Followers' receivers are answered when the leader's assignment arrives.
    pub fn sync_group(&self, req: SyncRequest) -> oneshot::Receiver<SyncResponse> {
        let (tx, rx) = oneshot::channel();
        let ctx = self.ctx();
        self.lock().groups.sync_group(&ctx, req, tx);
        rx
    }

    /// Heartbeat: keeps the member's session alive; REBALANCE_IN_PROGRESS asks it to rejoin.
    pub fn heartbeat(&self, req: &HeartbeatRequest) -> Result<(), GroupError> {
        let ctx = self.ctx();
        self.lock().groups.heartbeat(&ctx, req)
    }

    /// LeaveGroup for a batch of members (v3+; older versions send one). The outer error applies
    /// to the whole request, the inner ones to each member in order.
    pub fn leave_group(
        &self,
        group_id: &str,
        members: &[LeavingMember],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let ctx = self.ctx();
        self.lock().groups.leave_group(&ctx, group_id, members)
    }

    /// Act on passed deadlines: expire member sessions and pending member ids, complete
    /// rebalances whose timeout passed, and (every `offsets.retention.check.interval.ms`) expire
    /// old offsets.
    pub fn tick(&self) {
        let ctx = self.ctx();
        let mut state = self.lock();
        state.groups.tick(&ctx);
        if ctx.now >= state.next_offset_expiry {
            state.next_offset_expiry =
                ctx.now + context::ms(self.config.offsets_retention_check_interval_ms);
            self.offsets
                .expire(&self.config, &mut state.groups, ctx.wall_ms);
        }
    }

    /// OffsetCommit. The outer error applies to every partition; inner results follow the request
    /// order. Classic group members must pass their member id and generation, consumer group
    /// members their member epoch; commits from outside group management (generation -1, no
    /// member id) are accepted only while the group is Empty.
    pub fn commit_offsets(
        &self,
        req: &OffsetCommitRequest,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        error::validate_group_id(&req.group_id)?;
        let ctx = self.ctx();
        let mut state = self.lock();
        state.groups.validate_offset_commit(
            &ctx,
            &req.group_id,
            req.generation_id,
            &req.member_id,
            req.group_instance_id.as_deref(),
        )?;
        let (results, accepted) = self.offsets.prepare_commit(&self.config, req, ctx.wall_ms);
        // The disk write happens without the coordinator lock (other groups' heartbeats must not
        // wait for an fsync), batched with concurrent commits.
        drop(state);
        self.offsets.commit(&req.group_id, &accepted)?;
        if !accepted.is_empty() {
            // A DeleteGroups that ran meanwhile removed the group: this commit came after it, so
            // the group exists again (Empty), as with a simple commit to an unknown group.
            self.lock()
                .groups
                .ensure_classic(&req.group_id, ctx.wall_ms);
        }
        Ok(results)
    }

    /// OffsetFetch: the committed offsets of the given partitions (`None`: all the group has).
    /// Partitions without a commit come back as `None`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<(TopicPartition, Option<CommittedOffset>)>, GroupError> {
        self.offsets.fetch(group_id, partitions)
    }

    /// OffsetDelete: delete committed offsets of partitions the group does not consume.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let state = self.lock();
        self.offsets.delete(&state.groups, group_id, partitions)
    }

    /// ListGroups, optionally filtered by state (empty filter: all).
    pub fn list_groups(&self, states: &[ClassicGroupStateName]) -> Vec<GroupListing> {
        self.lock().groups.list_groups(states)
    }

    /// DescribeGroups for one group; GROUP_ID_NOT_FOUND when there is no such group (older
    /// DescribeGroups versions show that as state "Dead").
    pub fn describe_group(&self, group_id: &str) -> Result<GroupDescription, GroupError> {
        self.lock().groups.describe_group(group_id)
    }

    /// DeleteGroups: only empty groups can be deleted; their offsets go with them.
    pub fn delete_groups(&self, group_ids: &[String]) -> Vec<Result<(), GroupError>> {
        let ctx = self.ctx();
        self.lock().groups.delete_groups(&ctx, group_ids)
    }

    /// ConsumerGroupHeartbeat (KIP-848): join (epoch 0), heartbeat/acknowledge, or leave (-1/-2).
    /// `resolve` maps a topic name to its id and partition count.
    pub fn consumer_group_heartbeat(
        &self,
        req: &ConsumerHeartbeatRequest,
        resolve: &dyn Fn(&str) -> Option<(uuid::Uuid, i32)>,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        let ctx = self.ctx();
        self.lock()
            .groups
            .consumer_group_heartbeat(&ctx, req, resolve)
    }

    /// ConsumerGroupDescribe (consumer groups only; classic groups are GROUP_ID_NOT_FOUND).
    pub fn consumer_group_describe(
        &self,
        group_id: &str,
    ) -> Result<ConsumerGroupDescription, GroupError> {
        self.lock().groups.consumer_group_describe(group_id)
    }
}

#[cfg(test)]
mod tests;
