//! The classic group coordinator, modeled on Kafka's `GroupCoordinator`: JoinGroup (v0-9 semantics,
//! including the v4+ MEMBER_ID_REQUIRED two-step join and static membership), SyncGroup,
//! Heartbeat, LeaveGroup, session/rebalance timeouts, ListGroups, DescribeGroups, DeleteGroups,
//! OffsetCommit/OffsetFetch/OffsetDelete and the expiry of offsets of empty groups.
//!
//! The coordinator is synchronous: every call takes the current time (`now_ms`) and the gateway
//! calls [`GroupCoordinator::tick`] periodically (e.g. every 100 ms) to expire sessions, pending
//! member ids, rebalance timeouts and old offsets. Requests that wait (JoinGroup until the
//! rebalance completes, SyncGroup until the leader's assignment arrives) get a
//! [`tokio::sync::oneshot::Receiver`] that is answered when the state machine gets there. This keeps
//! core free of sockets and timers and makes every sequence testable with explicit time.
//!
//! Committed offsets are written durably to redb through [`OffsetStore`] (outside the coordinator
//! lock, group-committed); callers on an async runtime should call the committing methods from a
//! blocking context (`spawn_blocking`), since they wait for the disk.

use crate::sync::LockExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use crate::consumer_group::{Group, GroupState, InitialDelay, Member, CONSUMER_PROTOCOL_TYPE};
use crate::epoch_group::{EpochGroup, EpochGroupState, EpochMember};
use crate::offset_store::{CommittedOffset, OffsetStore, OffsetStoreError, TopicPartition};
use crate::server_assignor::{Assignment, ASSIGNORS};

/// Longest accepted group id, in bytes (Kafka has no limit of its own; ids are keys on disk and
/// in logs, so Rill caps them like topic names are capped).
pub const MAX_GROUP_ID_LEN: usize = 255;

/// How long a new member that is waiting in JoinGroup is kept when it stops talking (Kafka's
/// `NewMemberJoinTimeoutMs`).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: u64 = 300_000;

/// Node-level group settings (Kafka names in the node config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: u64,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: u64,
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: u64,
    /// `offsets.retention.minutes`, in milliseconds.
    pub offsets_retention_ms: u64,
    /// `offsets.retention.check.interval.ms`
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups)
    pub consumer_session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups)
    pub consumer_heartbeat_interval_ms: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
        }
    }
}

/// Group errors; each maps to the Kafka error code clients expect ([`GroupError::to_kafka`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the group id is empty or longer than {MAX_GROUP_ID_LEN} bytes")]
    InvalidGroupId,
    #[error("the session timeout is outside the configured range")]
    InvalidSessionTimeout,
    #[error("the member must rejoin with the member id it was given")]
    MemberIdRequired,
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("stale or unknown generation")]
    IllegalGeneration,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("the protocol type or protocols are incompatible with the group")]
    InconsistentGroupProtocol,
    #[error("another member with the same group.instance.id has joined")]
    FencedInstanceId,
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    #[error("group not found")]
    GroupIdNotFound,
    #[error("the group has members")]
    NonEmptyGroup,
    #[error("the group is subscribed to this topic")]
    GroupSubscribedToTopic,
    #[error("the offset metadata is too large")]
    OffsetMetadataTooLarge,
    #[error("the member epoch is fenced; rejoin with epoch 0")]
    FencedMemberEpoch,
    #[error("the member epoch is stale")]
    StaleMemberEpoch,
    #[error("unsupported server assignor (supported: uniform, range)")]
    UnsupportedAssignor,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Storage(#[from] OffsetStoreError),
}

impl GroupError {
    /// The Kafka error for this error (storage failures are retriable for clients).
    pub fn to_kafka(&self) -> ResponseError {
        match self {
            GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
            GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
            GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
            GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
            GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
            GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
            GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
            GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
            GroupError::CoordinatorNotAvailable | GroupError::Storage(_) => {
                ResponseError::CoordinatorNotAvailable
            }
            GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
            GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
            GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
            GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
            GroupError::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
            GroupError::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
            GroupError::UnsupportedAssignor => ResponseError::UnsupportedAssignor,
            GroupError::InvalidRequest(_) => ResponseError::InvalidRequest,
        }
    }

    /// The Kafka error code.
    pub fn code(&self) -> i16 {
        self.to_kafka().code()
    }
}

/// A JoinGroup request, version-independent.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a member that does not have an id yet.
    pub member_id: String,
    /// `group.instance.id` of a static member (v5+).
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    /// v0 has none: pass the session timeout.
    pub rebalance_timeout_ms: u64,
    pub protocol_type: String,
    /// (name, metadata) in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new dynamic member first gets MEMBER_ID_REQUIRED and must rejoin with that id.
    pub require_known_member_id: bool,
    /// v9+: the leader may be told to skip assignment.
    pub supports_skip_assignment: bool,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// The member's metadata for the selected protocol.
    pub metadata: Bytes,
}

/// A JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: Option<GroupError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// Non-empty for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    fn error(member_id: &str, error: GroupError) -> JoinResponse {
        JoinResponse {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v5+: checked against the group's when present.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment (member id, opaque bytes); empty for followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    fn error(error: GroupError) -> SyncResponse {
        SyncResponse {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A Heartbeat request.
#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// One member leaving in a LeaveGroup request (v0-2 carry one dynamic member).
#[derive(Debug, Clone)]
pub struct LeavingMember {
    /// May be empty when `group_instance_id` identifies the member.
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// One partition of an OffsetCommit request.
#[derive(Debug, Clone)]
pub struct OffsetCommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// An OffsetCommit request.
#[derive(Debug, Clone)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    /// -1 for commits from outside group management (admin tools, simple consumers).
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v2-v4 `retention_time_ms` when not -1.
    pub retention_ms: Option<u64>,
    pub offsets: Vec<OffsetCommitEntry>,
}

/// A group as listed by ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// Empty when unknown.
    pub protocol_type: String,
    /// The state's name (classic or KIP-848 spelling).
    pub state: String,
    /// "classic" or "consumer" (KIP-848).
    pub group_type: &'static str,
}

/// A member as shown by DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The metadata for the selected protocol (only while Stable, as Kafka).
    pub metadata: Bytes,
    /// The current assignment (only while Stable, as Kafka).
    pub assignment: Bytes,
}

/// A group as shown by DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    /// The selected protocol (only while Stable, as Kafka).
    pub protocol: String,
    pub generation_id: i32,
    pub leader: String,
    pub members: Vec<MemberDescription>,
}

/// The node's group coordinator.
pub struct GroupCoordinator {
    config: GroupConfig,
    store: Arc<dyn OffsetStore>,
    inner: Mutex<Inner>,
}

struct Inner {
    groups: HashMap<String, Group>,
    /// KIP-848 groups (never also in `groups`).
    epoch_groups: HashMap<String, EpochGroup>,
    next_offset_expiry_ms: u64,
}

fn validate_group_id(group_id: &str) -> Result<(), GroupError> {
    if group_id.is_empty() || group_id.len() > MAX_GROUP_ID_LEN {
        Err(GroupError::InvalidGroupId)
    } else {
        Ok(())
    }
}

fn send<T>(tx: oneshot::Sender<T>, value: T) {
    // The requester may have gone away (closed connection); nothing to do then.
    let _ = tx.send(value);
}

impl GroupCoordinator {
    /// A coordinator over the committed offsets in `store`. Groups that have offsets start Empty
    /// (members rebuild the rest by rejoining, as in Kafka).
    pub fn new(config: GroupConfig, store: Arc<dyn OffsetStore>, now_ms: u64) -> GroupCoordinator {
        let mut groups = HashMap::new();
        for id in store.groups() {
            let mut g = Group::new(&id, None);
            g.protocol_type = store.protocol_type(&id);
            groups.insert(id, g);
        }
        GroupCoordinator {
            inner: Mutex::new(Inner {
                groups,
                epoch_groups: HashMap::new(),
                next_offset_expiry_ms: now_ms + config.offsets_retention_check_interval_ms,
            }),
            config,
            store,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The committed offsets (e.g. to drop a deleted topic's offsets).
    pub fn offsets(&self) -> &dyn OffsetStore {
        self.store.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock_unpoisoned()
    }

    // ---------------------------------------------------------------- JoinGroup

    /// JoinGroup. The receiver is answered when the rebalance completes (or at once on error).
    pub fn join_group(&self, req: JoinRequest, now_ms: u64) -> oneshot::Receiver<JoinResponse> {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = validate_group_id(&req.group_id) {
            send(tx, JoinResponse::error(&req.member_id, e));
            return rx;
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            send(
                tx,
                JoinResponse::error(&req.member_id, GroupError::InvalidSessionTimeout),
            );
            return rx;
        }
        let mut inner = self.lock();
        if inner.epoch_groups.contains_key(&req.group_id) {
            // A KIP-848 group with members: classic members cannot join it.
            send(
                tx,
                JoinResponse::error(&req.member_id, GroupError::InconsistentGroupProtocol),
            );
            return rx;
        }
        let known = !req.member_id.is_empty();
        if known && !inner.groups.contains_key(&req.group_id) {
            send(
                tx,
                JoinResponse::error(&req.member_id, GroupError::UnknownMemberId),
            );
            return rx;
        }
        let group_id = req.group_id.clone();
        let group = inner
            .groups
            .entry(group_id.clone())
            .or_insert_with(|| Group::new(&group_id, Some(now_ms)));
        if known {
            self.join_known_member(group, req, tx, now_ms);
        } else {
            self.join_new_member(group, req, tx, now_ms);
        }
        let discard = group.state == GroupState::Empty
            && group.members.is_empty()
            && group.pending_members.is_empty()
            && !self.store.has_offsets(&group_id);
        if discard {
            inner.groups.remove(&group_id);
        }
        rx
    }

    fn join_new_member(
        &self,
        group: &mut Group,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
        now: u64,
    ) {
        if !group.supports_protocols(&req.protocol_type, &req.protocols, None) {
            send(
                tx,
                JoinResponse::error("", GroupError::InconsistentGroupProtocol),
            );
            return;
        }
        let prefix = req
            .group_instance_id
            .as_deref()
            .unwrap_or(req.client_id.as_str());
        let new_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        match req.group_instance_id.clone() {
            Some(instance) => match group.static_members.get(&instance).cloned() {
                Some(old_id) => {
                    self.update_static_member(group, &instance, &old_id, &new_id, req, tx, now)
                }
                None => self.add_member_and_rebalance(group, &new_id, req, tx, now),
            },
            None if req.require_known_member_id => {
                group
                    .pending_members
                    .insert(new_id.clone(), now + req.session_timeout_ms);
                send(
                    tx,
                    JoinResponse::error(&new_id, GroupError::MemberIdRequired),
                );
            }
            None => self.add_member_and_rebalance(group, &new_id, req, tx, now),
        }
    }

    fn join_known_member(
        &self,
        group: &mut Group,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
        now: u64,
    ) {
        let member_id = req.member_id.clone();
        if group.pending_members.contains_key(&member_id) {
            if !group.supports_protocols(&req.protocol_type, &req.protocols, None) {
                send(
                    tx,
                    JoinResponse::error(&member_id, GroupError::InconsistentGroupProtocol),
                );
                return;
            }
            group.pending_members.remove(&member_id);
            self.add_member_and_rebalance(group, &member_id, req, tx, now);
            return;
        }
        if group.is_static_member_fenced(req.group_instance_id.as_deref(), &member_id) {
            send(
                tx,
                JoinResponse::error(&member_id, GroupError::FencedInstanceId),
            );
            return;
        }
        let Some(member) = group.members.get(&member_id) else {
            send(
                tx,
                JoinResponse::error(&member_id, GroupError::UnknownMemberId),
            );
            return;
        };
        if !group.supports_protocols(&req.protocol_type, &req.protocols, Some(&member_id)) {
            send(
                tx,
                JoinResponse::error(&member_id, GroupError::InconsistentGroupProtocol),
            );
            return;
        }
        let unchanged = member.matches(&req.protocols);
        match group.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(group, req, tx, now);
            }
            GroupState::CompletingRebalance if unchanged => {
                // A retry of a join whose response was lost: same generation again.
                self.respond_current_generation(group, &member_id, false, tx, now);
            }
            GroupState::Stable if unchanged && !group.is_leader(&member_id) => {
                self.respond_current_generation(group, &member_id, false, tx, now);
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                // The leader rejoining (e.g. new topic metadata) or changed metadata: rebalance.
                self.update_member_and_rebalance(group, req, tx, now);
            }
            GroupState::Empty | GroupState::Dead => {
                send(
                    tx,
                    JoinResponse::error(&member_id, GroupError::UnknownMemberId),
                );
            }
        }
    }

    fn respond_current_generation(
        &self,
        group: &mut Group,
        member_id: &str,
        skip_assignment: bool,
        tx: oneshot::Sender<JoinResponse>,
        now: u64,
    ) {
        let is_leader = group.is_leader(member_id);
        let members = if is_leader {
            current_member_metadata(group)
        } else {
            Vec::new()
        };
        if let Some(m) = group.members.get_mut(member_id) {
            m.last_heartbeat_ms = now;
        }
        send(
            tx,
            JoinResponse {
                error: None,
                generation_id: group.generation_id,
                protocol_type: group.protocol_type.clone(),
                protocol_name: group.protocol_name.clone(),
                leader: group.leader_id.clone().unwrap_or_default(),
                skip_assignment,
                member_id: member_id.to_string(),
                members,
            },
        );
    }

    fn add_member_and_rebalance(
        &self,
        group: &mut Group,
        member_id: &str,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
        now: u64,
    ) {
        if group.state == GroupState::PreparingRebalance && group.generation_id == 0 {
            group.new_member_added = true;
        }
        group.add_member(Member {
            member_id: member_id.to_string(),
            instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(tx),
            sync_waiter: None,
            last_heartbeat_ms: now,
            is_new: true,
            supports_skip_assignment: req.supports_skip_assignment,
        });
        self.maybe_prepare_rebalance(group, now);
        self.try_complete_join(group, now);
    }

    fn update_member_and_rebalance(
        &self,
        group: &mut Group,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
        now: u64,
    ) {
        if let Some(m) = group.members.get_mut(&req.member_id) {
            m.protocols = req.protocols;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.supports_skip_assignment = req.supports_skip_assignment;
            m.last_heartbeat_ms = now;
            // A previous join of this member still waiting is superseded (its receiver closes).
            m.join_waiter = Some(tx);
        }
        self.maybe_prepare_rebalance(group, now);
        self.try_complete_join(group, now);
    }

    /// A static member came back with a new process (unknown member id, known instance id).
    #[allow(clippy::too_many_arguments)]
    fn update_static_member(
        &self,
        group: &mut Group,
        instance: &str,
        old_id: &str,
        new_id: &str,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
        now: u64,
    ) {
        group.replace_static_member(
            instance,
            old_id,
            new_id,
            |old| JoinResponse::error(old, GroupError::FencedInstanceId),
            || SyncResponse::error(GroupError::FencedInstanceId),
        );
        if let Some(m) = group.members.get_mut(new_id) {
            m.protocols = req.protocols;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.supports_skip_assignment = req.supports_skip_assignment;
            m.last_heartbeat_ms = now;
        }
        match group.state {
            GroupState::Stable => {
                if group.select_protocol() == group.protocol_name {
                    // Nothing changes for the group: hand the new id the current generation; it
                    // gets its old assignment from SyncGroup.
                    let skip = group.is_leader(new_id)
                        && group
                            .members
                            .get(new_id)
                            .is_some_and(|m| m.supports_skip_assignment);
                    if group.is_leader(new_id) && !skip {
                        // The leader must not recompute an assignment for this generation.
                        let generation = group.generation_id;
                        send(
                            tx,
                            JoinResponse {
                                error: None,
                                generation_id: generation,
                                protocol_type: group.protocol_type.clone(),
                                protocol_name: group.protocol_name.clone(),
                                leader: new_id.to_string(),
                                skip_assignment: false,
                                member_id: new_id.to_string(),
                                members: Vec::new(),
                            },
                        );
                    } else {
                        self.respond_current_generation(group, new_id, skip, tx, now);
                    }
                } else {
                    if let Some(m) = group.members.get_mut(new_id) {
                        m.join_waiter = Some(tx);
                    }
                    self.prepare_rebalance(group, now);
                    self.try_complete_join(group, now);
                }
            }
            GroupState::CompletingRebalance => {
                // The leader may be assigning to the old id: start over.
                if let Some(m) = group.members.get_mut(new_id) {
                    m.join_waiter = Some(tx);
                }
                self.prepare_rebalance(group, now);
                self.try_complete_join(group, now);
            }
            GroupState::PreparingRebalance => {
                if let Some(m) = group.members.get_mut(new_id) {
                    m.join_waiter = Some(tx);
                }
                self.try_complete_join(group, now);
            }
            GroupState::Empty | GroupState::Dead => {
                send(tx, JoinResponse::error(new_id, GroupError::UnknownMemberId));
            }
        }
    }

    fn maybe_prepare_rebalance(&self, group: &mut Group, now: u64) {
        if matches!(
            group.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(group, now);
        }
    }

    fn prepare_rebalance(&self, group: &mut Group, now: u64) {
        if group.state == GroupState::CompletingRebalance {
            reset_and_propagate_assignment_error(group, GroupError::RebalanceInProgress);
        }
        let rebalance_timeout = group.max_rebalance_timeout_ms();
        let initial = self.config.initial_rebalance_delay_ms;
        if group.state == GroupState::Empty && initial > 0 {
            group.initial_delay = Some(InitialDelay {
                delay_ms: initial,
                remaining_ms: rebalance_timeout.saturating_sub(initial),
            });
            group.new_member_added = false;
            group.join_deadline_ms = Some(now + initial);
        } else {
            group.initial_delay = None;
            group.join_deadline_ms = Some(now + rebalance_timeout);
        }
        group.transition(GroupState::PreparingRebalance, now);
    }

    /// Complete the join phase early when every known member has rejoined (not while the initial
    /// delay of a new group runs).
    fn try_complete_join(&self, group: &mut Group, now: u64) {
        if group.state == GroupState::PreparingRebalance
            && group.initial_delay.is_none()
            && group.all_members_joined()
        {
            self.complete_join(group, now);
        }
    }

    /// The join deadline passed: extend the initial delay if members keep arriving, else form the
    /// generation with whoever rejoined.
    fn on_join_deadline(&self, group: &mut Group, now: u64) {
        if let Some(d) = group.initial_delay {
            if group.new_member_added && d.remaining_ms > 0 {
                let delay = self.config.initial_rebalance_delay_ms.min(d.remaining_ms);
                group.initial_delay = Some(InitialDelay {
                    delay_ms: delay,
                    remaining_ms: d.remaining_ms.saturating_sub(d.delay_ms),
                });
                group.new_member_added = false;
                group.join_deadline_ms = Some(now + delay);
                return;
            }
        }
        self.complete_join(group, now);
    }

    fn complete_join(&self, group: &mut Group, now: u64) {
        group.initial_delay = None;
        group.new_member_added = false;
        group.join_deadline_ms = None;
        // Dynamic members that did not rejoin in time are out; static members keep their place
        // until their session expires.
        let failed: Vec<String> = group
            .members
            .values()
            .filter(|m| !m.awaiting_join() && m.instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in failed {
            remove_and_answer(group, &id);
        }
        if !group.members.is_empty() {
            let leader_joined = group
                .leader_id
                .as_ref()
                .and_then(|l| group.members.get(l))
                .is_some_and(Member::awaiting_join);
            if !leader_joined {
                let first_joined = group
                    .ordered_members()
                    .find(|m| m.awaiting_join())
                    .map(|m| m.member_id.clone());
                match first_joined {
                    Some(id) => group.leader_id = Some(id),
                    None => {
                        // Only absent static members are left: wait for them or their sessions.
                        group.join_deadline_ms = Some(now + group.max_rebalance_timeout_ms());
                        return;
                    }
                }
            }
        }
        group.generation_id += 1;
        if group.members.is_empty() {
            group.protocol_name = None;
            group.leader_id = None;
            group.transition(GroupState::Empty, now);
            return;
        }
        group.protocol_name = group.select_protocol();
        group.transition(GroupState::CompletingRebalance, now);
        group.sync_deadline_ms = Some(now + group.max_rebalance_timeout_ms());
        if let Some(pt) = &group.protocol_type {
            if let Err(e) = self.store.set_protocol_type(&group.group_id, pt) {
                tracing::warn!(group = %group.group_id, error = %e, "could not record protocol type");
            }
        }
        let all = current_member_metadata(group);
        let leader = group.leader_id.clone().unwrap_or_default();
        let generation = group.generation_id;
        let protocol_type = group.protocol_type.clone();
        let protocol_name = group.protocol_name.clone();
        for m in group.members.values_mut() {
            let Some(tx) = m.join_waiter.take() else {
                continue;
            };
            m.is_new = false;
            m.last_heartbeat_ms = now;
            send(
                tx,
                JoinResponse {
                    error: None,
                    generation_id: generation,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    leader: leader.clone(),
                    skip_assignment: false,
                    member_id: m.member_id.clone(),
                    members: if m.member_id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                },
            );
        }
    }

    /// Remove a member (left or expired) and move the group on.
    fn remove_member_and_update(&self, group: &mut Group, member_id: &str, now: u64) {
        remove_and_answer(group, member_id);
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(group, now);
                self.try_complete_join(group, now);
            }
            GroupState::PreparingRebalance => self.try_complete_join(group, now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ---------------------------------------------------------------- SyncGroup

    /// SyncGroup. Followers' receivers are answered when the leader's assignment arrives.
    pub fn sync_group(&self, req: SyncRequest, now_ms: u64) -> oneshot::Receiver<SyncResponse> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        let group = match validate_group_id(&req.group_id) {
            Err(e) => {
                send(tx, SyncResponse::error(e));
                return rx;
            }
            Ok(()) => match inner.groups.get_mut(&req.group_id) {
                Some(g) => g,
                None => {
                    send(tx, SyncResponse::error(GroupError::UnknownMemberId));
                    return rx;
                }
            },
        };
        if let Err(e) = check_member(
            group,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        ) {
            send(tx, SyncResponse::error(e));
            return rx;
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| group.protocol_type.as_ref() != Some(t));
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| group.protocol_name.as_ref() != Some(n));
        if type_mismatch || name_mismatch {
            send(
                tx,
                SyncResponse::error(GroupError::InconsistentGroupProtocol),
            );
            return rx;
        }
        match group.state {
            GroupState::Empty => send(tx, SyncResponse::error(GroupError::UnknownMemberId)),
            GroupState::Dead => send(tx, SyncResponse::error(GroupError::CoordinatorNotAvailable)),
            GroupState::PreparingRebalance => {
                send(tx, SyncResponse::error(GroupError::RebalanceInProgress))
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = group.members.get_mut(&req.member_id) {
                    m.sync_waiter = Some(tx);
                    m.last_heartbeat_ms = now_ms;
                }
                if group.is_leader(&req.member_id) {
                    let mut assignments: HashMap<String, Bytes> =
                        req.assignments.into_iter().collect();
                    let protocol_type = group.protocol_type.clone();
                    let protocol_name = group.protocol_name.clone();
                    for m in group.members.values_mut() {
                        m.assignment = assignments.remove(&m.member_id).unwrap_or_default();
                        if let Some(tx) = m.sync_waiter.take() {
                            send(
                                tx,
                                SyncResponse {
                                    error: None,
                                    protocol_type: protocol_type.clone(),
                                    protocol_name: protocol_name.clone(),
                                    assignment: m.assignment.clone(),
                                },
                            );
                        }
                    }
                    group.transition(GroupState::Stable, now_ms);
                }
            }
            GroupState::Stable => {
                let protocol_type = group.protocol_type.clone();
                let protocol_name = group.protocol_name.clone();
                if let Some(m) = group.members.get_mut(&req.member_id) {
                    m.last_heartbeat_ms = now_ms;
                    send(
                        tx,
                        SyncResponse {
                            error: None,
                            protocol_type,
                            protocol_name,
                            assignment: m.assignment.clone(),
                        },
                    );
                }
            }
        }
        rx
    }

    // ---------------------------------------------------------------- Heartbeat / LeaveGroup

    /// Heartbeat: keeps the member's session alive; REBALANCE_IN_PROGRESS asks it to rejoin.
    pub fn heartbeat(&self, req: &HeartbeatRequest, now_ms: u64) -> Result<(), GroupError> {
        validate_group_id(&req.group_id)?;
        let mut inner = self.lock();
        let group = inner
            .groups
            .get_mut(&req.group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        check_member(
            group,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        )?;
        let state = group.state;
        match state {
            GroupState::Empty => return Err(GroupError::UnknownMemberId),
            GroupState::Dead => return Err(GroupError::CoordinatorNotAvailable),
            _ => {}
        }
        if let Some(m) = group.members.get_mut(&req.member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        if state == GroupState::PreparingRebalance {
            Err(GroupError::RebalanceInProgress)
        } else {
            Ok(())
        }
    }

    /// LeaveGroup for a batch of members (v3+; older versions send one). The outer error applies
    /// to the whole request, the inner ones to each member in order.
    pub fn leave_group(
        &self,
        group_id: &str,
        members: &[LeavingMember],
        now_ms: u64,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        validate_group_id(group_id)?;
        let mut inner = self.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Ok(members
                .iter()
                .map(|_| Err(GroupError::UnknownMemberId))
                .collect());
        };
        let mut results = Vec::with_capacity(members.len());
        for lm in members {
            let result = if let Some(instance) = &lm.group_instance_id {
                match group.static_members.get(instance).cloned() {
                    None => Err(GroupError::UnknownMemberId),
                    Some(current) if !lm.member_id.is_empty() && current != lm.member_id => {
                        Err(GroupError::FencedInstanceId)
                    }
                    Some(current) => {
                        self.remove_member_and_update(group, &current, now_ms);
                        Ok(())
                    }
                }
            } else if group.pending_members.remove(&lm.member_id).is_some() {
                self.try_complete_join(group, now_ms);
                Ok(())
            } else if group.members.contains_key(&lm.member_id) {
                self.remove_member_and_update(group, &lm.member_id, now_ms);
                Ok(())
            } else {
                Err(GroupError::UnknownMemberId)
            };
            results.push(result);
        }
        Ok(results)
    }

    // ---------------------------------------------------------------- time

    /// Advance time: expire member sessions and pending member ids, complete rebalances whose
    /// timeout passed, and (every `offsets.retention.check.interval.ms`) expire old offsets.
    pub fn tick(&self, now_ms: u64) {
        let mut inner = self.lock();
        for group in inner.groups.values_mut() {
            let expired_pending: Vec<String> = group
                .pending_members
                .iter()
                .filter(|(_, deadline)| **deadline <= now_ms)
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired_pending {
                group.pending_members.remove(&id);
                self.try_complete_join(group, now_ms);
            }
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| !keep_alive(m, now_ms))
                .map(|m| m.member_id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %group.group_id, member = %id, "member session expired");
                self.remove_member_and_update(group, &id, now_ms);
            }
            if group.state == GroupState::PreparingRebalance
                && group.join_deadline_ms.is_some_and(|d| d <= now_ms)
            {
                self.on_join_deadline(group, now_ms);
            }
            if group.state == GroupState::CompletingRebalance
                && group.sync_deadline_ms.is_some_and(|d| d <= now_ms)
            {
                // Members (the leader included) that never sent SyncGroup are removed and the
                // group rebalances without them.
                group.sync_deadline_ms = None;
                let unsynced: Vec<String> = group
                    .members
                    .values()
                    .filter(|m| m.sync_waiter.is_none())
                    .map(|m| m.member_id.clone())
                    .collect();
                for id in unsynced {
                    tracing::info!(group = %group.group_id, member = %id, "member did not sync in time");
                    self.remove_member_and_update(group, &id, now_ms);
                }
            }
        }
        self.tick_epoch_groups(&mut inner, now_ms);
        if now_ms >= inner.next_offset_expiry_ms {
            inner.next_offset_expiry_ms = now_ms + self.config.offsets_retention_check_interval_ms;
            self.expire_offsets(&mut inner, now_ms);
        }
    }

    fn expire_offsets(&self, inner: &mut Inner, now: u64) {
        let retention = self.config.offsets_retention_ms;
        let mut dead = Vec::new();
        for group in inner.groups.values() {
            let offsets = self.store.group_offsets(&group.group_id);
            let now = i64::try_from(now).unwrap_or(i64::MAX);
            let retention = i64::try_from(retention).unwrap_or(i64::MAX);
            let expired = |base: i64, c: &CommittedOffset| match c.expire_timestamp_ms {
                Some(t) => now >= t,
                None => now.saturating_sub(base) >= retention,
            };
            let doomed: Vec<TopicPartition> = match group.state {
                GroupState::Empty => {
                    let since = group
                        .state_since_ms
                        .map_or(0, |t| i64::try_from(t).unwrap_or(i64::MAX));
                    offsets
                        .iter()
                        .filter(|(_, c)| expired(since.max(c.commit_timestamp_ms), c))
                        .map(|(tp, _)| tp.clone())
                        .collect()
                }
                GroupState::Stable => match group.subscribed_topics() {
                    Some(topics) => offsets
                        .iter()
                        .filter(|((t, _), c)| {
                            !topics.contains(t) && expired(c.commit_timestamp_ms, c)
                        })
                        .map(|(tp, _)| tp.clone())
                        .collect(),
                    None => Vec::new(),
                },
                _ => Vec::new(),
            };
            if !doomed.is_empty() {
                tracing::info!(group = %group.group_id, count = doomed.len(), "expiring committed offsets");
                if let Err(e) = self.store.delete_offsets(&group.group_id, &doomed) {
                    tracing::warn!(group = %group.group_id, error = %e, "offset expiry failed");
                    continue;
                }
            }
            if group.state == GroupState::Empty
                && group.pending_members.is_empty()
                && !self.store.has_offsets(&group.group_id)
            {
                dead.push(group.group_id.clone());
            }
        }
        for id in dead {
            if let Err(e) = self.store.delete_group(&id) {
                tracing::warn!(group = %id, error = %e, "could not remove group record");
                continue;
            }
            inner.groups.remove(&id);
        }
    }

    // ---------------------------------------------------------------- offsets

    /// OffsetCommit. The outer error applies to every partition; inner results follow the request
    /// order. Group members must pass their member id and generation; commits from outside group
    /// management (generation -1, no member id) are accepted only while the group is Empty.
    pub fn commit_offsets(
        &self,
        req: &OffsetCommitRequest,
        now_ms: u64,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        validate_group_id(&req.group_id)?;
        let mut inner = self.lock();
        if let Some(g) = inner.epoch_groups.get_mut(&req.group_id) {
            // KIP-848 group (non-empty by construction): members commit with their member epoch.
            let m = g
                .members
                .get_mut(&req.member_id)
                .ok_or(GroupError::UnknownMemberId)?;
            if req.generation_id != m.epoch {
                return Err(GroupError::StaleMemberEpoch);
            }
            m.last_heartbeat_ms = now_ms;
            let (results, accepted) = self.offsets_to_commit(req, now_ms);
            drop(inner);
            self.store.commit(&req.group_id, &accepted)?;
            return Ok(results);
        }
        if !inner.groups.contains_key(&req.group_id) {
            if req.generation_id >= 0 {
                return Err(GroupError::IllegalGeneration);
            }
            inner.groups.insert(
                req.group_id.clone(),
                Group::new(&req.group_id, Some(now_ms)),
            );
        }
        let group = inner
            .groups
            .get_mut(&req.group_id)
            .ok_or(GroupError::CoordinatorNotAvailable)?;
        let managed =
            req.generation_id >= 0 || !req.member_id.is_empty() || req.group_instance_id.is_some();
        if managed {
            check_member(
                group,
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation_id,
            )?;
            if group.state == GroupState::CompletingRebalance {
                return Err(GroupError::RebalanceInProgress);
            }
            if let Some(m) = group.members.get_mut(&req.member_id) {
                m.last_heartbeat_ms = now_ms;
            }
        } else if group.state != GroupState::Empty {
            return Err(GroupError::UnknownMemberId);
        }
        let (results, accepted) = self.offsets_to_commit(req, now_ms);
        // The disk write happens without the coordinator lock (other groups' heartbeats must not
        // wait for an fsync), batched with concurrent commits.
        drop(inner);
        self.store.commit(&req.group_id, &accepted)?;
        if !accepted.is_empty() {
            // A DeleteGroups that ran meanwhile removed the group: this commit came after it, so
            // the group exists again (Empty), as with a simple commit to an unknown group.
            let mut inner = self.lock();
            if !inner.groups.contains_key(&req.group_id)
                && !inner.epoch_groups.contains_key(&req.group_id)
            {
                inner.groups.insert(
                    req.group_id.clone(),
                    Group::new(&req.group_id, Some(now_ms)),
                );
            }
        }
        Ok(results)
    }

    /// Per-partition checks of a commit, and the offsets to store.
    #[allow(clippy::type_complexity)]
    fn offsets_to_commit(
        &self,
        req: &OffsetCommitRequest,
        now_ms: u64,
    ) -> (
        Vec<Result<(), GroupError>>,
        Vec<(TopicPartition, CommittedOffset)>,
    ) {
        let now_ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let expire = req
            .retention_ms
            .map(|r| now_ms.saturating_add(i64::try_from(r).unwrap_or(i64::MAX)));
        let mut results = Vec::with_capacity(req.offsets.len());
        let mut accepted = Vec::new();
        for e in &req.offsets {
            let metadata = e.metadata.clone().unwrap_or_default();
            if metadata.len() > self.config.offset_metadata_max_bytes {
                results.push(Err(GroupError::OffsetMetadataTooLarge));
                continue;
            }
            results.push(Ok(()));
            accepted.push((
                (e.topic.clone(), e.partition),
                CommittedOffset {
                    offset: e.offset,
                    leader_epoch: e.leader_epoch,
                    metadata,
                    commit_timestamp_ms: now_ms,
                    expire_timestamp_ms: expire,
                },
            ));
        }
        (results, accepted)
    }

    /// OffsetFetch: the committed offsets of the given partitions (`None`: all the group has).
    /// Partitions without a commit come back as `None`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<(TopicPartition, Option<CommittedOffset>)>, GroupError> {
        validate_group_id(group_id)?;
        let all = self.store.group_offsets(group_id);
        Ok(match partitions {
            None => all.into_iter().map(|(tp, c)| (tp, Some(c))).collect(),
            Some(list) => list
                .iter()
                .map(|tp| (tp.clone(), all.get(tp).cloned()))
                .collect(),
        })
    }

    /// OffsetDelete: delete committed offsets of partitions the group does not consume.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        validate_group_id(group_id)?;
        let inner = self.lock();
        let group = inner
            .groups
            .get(group_id)
            .ok_or(GroupError::GroupIdNotFound)?;
        let subscribed = match group.state {
            GroupState::Empty => None,
            GroupState::Dead => return Err(GroupError::GroupIdNotFound),
            _ if group.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE) => {
                // Unknown subscriptions protect every topic.
                Some(group.subscribed_topics())
            }
            _ => return Err(GroupError::NonEmptyGroup),
        };
        let mut results = Vec::with_capacity(partitions.len());
        let mut doomed = Vec::new();
        for tp in partitions {
            let protected = match &subscribed {
                None => false,
                Some(None) => true,
                Some(Some(topics)) => topics.contains(&tp.0),
            };
            if protected {
                results.push(Err(GroupError::GroupSubscribedToTopic));
            } else {
                results.push(Ok(()));
                doomed.push(tp.clone());
            }
        }
        self.store.delete_offsets(group_id, &doomed)?;
        Ok(results)
    }

    // ---------------------------------------------------------------- admin

    /// ListGroups, optionally filtered by state (empty filter: all).
    pub fn list_groups(&self, states: &[GroupState]) -> Vec<GroupListing> {
        let inner = self.lock();
        let mut out: Vec<GroupListing> = inner
            .groups
            .values()
            .filter(|g| states.is_empty() || states.contains(&g.state))
            .map(|g| GroupListing {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.as_str().to_string(),
                group_type: "classic",
            })
            .collect();
        for g in inner.epoch_groups.values() {
            let state = g.state();
            // The classic state filter maps onto KIP-848 states as Kafka does for listing.
            let classic = match state {
                EpochGroupState::Empty => GroupState::Empty,
                EpochGroupState::Assigning | EpochGroupState::Reconciling => {
                    GroupState::PreparingRebalance
                }
                EpochGroupState::Stable => GroupState::Stable,
            };
            if states.is_empty() || states.contains(&classic) {
                out.push(GroupListing {
                    group_id: g.group_id.clone(),
                    protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
                    state: state.as_str().to_string(),
                    group_type: "consumer",
                });
            }
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// DescribeGroups for one group; GROUP_ID_NOT_FOUND when there is no such group (older
    /// DescribeGroups versions show that as state "Dead").
    pub fn describe_group(&self, group_id: &str) -> Result<GroupDescription, GroupError> {
        validate_group_id(group_id)?;
        let inner = self.lock();
        if let Some(g) = inner.epoch_groups.get(group_id) {
            // A KIP-848 group through the classic API: state and members, no protocol bytes.
            let state = match g.state() {
                EpochGroupState::Empty => GroupState::Empty,
                EpochGroupState::Stable => GroupState::Stable,
                _ => GroupState::PreparingRebalance,
            };
            return Ok(GroupDescription {
                group_id: g.group_id.clone(),
                state,
                protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
                protocol: g.assignor.clone(),
                generation_id: g.group_epoch,
                leader: String::new(),
                members: g
                    .members
                    .values()
                    .map(|m| MemberDescription {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: Bytes::new(),
                        assignment: Bytes::new(),
                    })
                    .collect(),
            });
        }
        let group = inner
            .groups
            .get(group_id)
            .ok_or(GroupError::GroupIdNotFound)?;
        let stable = group.state == GroupState::Stable;
        let protocol = if stable {
            group.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let members = group
            .ordered_members()
            .map(|m| MemberDescription {
                member_id: m.member_id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(&protocol).cloned().unwrap_or_default()
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        Ok(GroupDescription {
            group_id: group.group_id.clone(),
            state: group.state,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol,
            generation_id: group.generation_id,
            leader: group.leader_id.clone().unwrap_or_default(),
            members,
        })
    }

    /// DeleteGroups: only empty groups can be deleted; their offsets go with them.
    pub fn delete_groups(&self, group_ids: &[String]) -> Vec<Result<(), GroupError>> {
        let mut inner = self.lock();
        group_ids
            .iter()
            .map(|id| {
                validate_group_id(id)?;
                if inner.epoch_groups.contains_key(id) {
                    return Err(GroupError::NonEmptyGroup);
                }
                let group = inner.groups.get(id).ok_or(GroupError::GroupIdNotFound)?;
                match group.state {
                    GroupState::Empty => {}
                    GroupState::Dead => return Err(GroupError::GroupIdNotFound),
                    _ => return Err(GroupError::NonEmptyGroup),
                }
                self.store.delete_group(id)?;
                inner.groups.remove(id);
                Ok(())
            })
            .collect()
    }
}

/// A ConsumerGroupHeartbeat (KIP-848) request.
#[derive(Debug, Clone, Default)]
pub struct ConsumerHeartbeatRequest {
    pub group_id: String,
    /// Empty on a v0 join (the coordinator picks one); v1 clients choose their own.
    pub member_id: String,
    /// 0 joins, -1 leaves, -2 leaves temporarily (static member), otherwise the current epoch.
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged since the last heartbeat.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The partitions the client owns; `None`: unchanged.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
}

/// A ConsumerGroupHeartbeat response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerHeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's whole assignment when it changed; `None`: keep the current one.
    pub assignment: Option<Assignment>,
}

/// A KIP-848 member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub assignment: Assignment,
    pub target_assignment: Assignment,
}

/// A KIP-848 group as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberDescription>,
}

impl GroupCoordinator {
    /// ConsumerGroupHeartbeat (KIP-848): join (epoch 0), heartbeat/acknowledge, or leave (-1/-2).
    /// `resolve` maps a topic name to its id and partition count.
    pub fn consumer_group_heartbeat(
        &self,
        req: &ConsumerHeartbeatRequest,
        resolve: &dyn Fn(&str) -> Option<(uuid::Uuid, i32)>,
        now_ms: u64,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        validate_group_id(&req.group_id)?;
        if req
            .subscribed_topic_regex
            .as_deref()
            .is_some_and(|r| !r.is_empty())
        {
            return Err(GroupError::InvalidRequest(
                "regular expression subscriptions are not supported; subscribe to topic names"
                    .into(),
            ));
        }
        if let Some(a) = &req.server_assignor {
            if !ASSIGNORS.contains(&a.as_str()) {
                return Err(GroupError::UnsupportedAssignor);
            }
        }
        let interval =
            i32::try_from(self.config.consumer_heartbeat_interval_ms).unwrap_or(i32::MAX);
        let mut inner = self.lock();
        if let Some(g) = inner.groups.get(&req.group_id) {
            if g.state != GroupState::Empty || !g.pending_members.is_empty() {
                // A classic group with members: not a consumer (KIP-848) group.
                return Err(GroupError::GroupIdNotFound);
            }
        }
        if req.member_epoch < 0 {
            if req.member_epoch != -1 && req.member_epoch != -2 {
                return Err(GroupError::InvalidRequest(format!(
                    "invalid member epoch {}",
                    req.member_epoch
                )));
            }
            let g = inner
                .epoch_groups
                .get_mut(&req.group_id)
                .ok_or(GroupError::UnknownMemberId)?;
            g.members
                .remove(&req.member_id)
                .ok_or(GroupError::UnknownMemberId)?;
            g.group_epoch += 1;
            self.retire_if_empty(&mut inner, &req.group_id, now_ms);
            return Ok(ConsumerHeartbeatResponse {
                member_id: req.member_id.clone(),
                member_epoch: req.member_epoch,
                heartbeat_interval_ms: interval,
                assignment: None,
            });
        }
        if req.member_epoch == 0 && !inner.epoch_groups.contains_key(&req.group_id) {
            // A new group, or an empty classic one (only offsets) converted to the new protocol.
            inner.groups.remove(&req.group_id);
            inner
                .epoch_groups
                .insert(req.group_id.clone(), EpochGroup::new(&req.group_id));
        }
        let g = inner
            .epoch_groups
            .get_mut(&req.group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let member_id = if req.member_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            req.member_id.clone()
        };
        if req.member_epoch == 0 {
            let subs = req.subscribed_topic_names.as_ref().ok_or_else(|| {
                GroupError::InvalidRequest("a joining member must send its subscription".into())
            })?;
            // A rejoin (after being fenced) starts over: its old partitions are released.
            g.members.remove(&member_id);
            let mut m = EpochMember::new(&member_id, now_ms);
            m.subscribed = subs.iter().cloned().collect();
            m.server_assignor = req.server_assignor.clone();
            m.instance_id = req.instance_id.clone();
            m.rack_id = req.rack_id.clone();
            m.client_id = req.client_id.clone();
            m.client_host = req.client_host.clone();
            if req.rebalance_timeout_ms >= 0 {
                m.rebalance_timeout_ms = req.rebalance_timeout_ms as u64;
            }
            g.members.insert(member_id.clone(), m);
            g.group_epoch += 1;
        } else {
            let m = g
                .members
                .get_mut(&member_id)
                .ok_or(GroupError::UnknownMemberId)?;
            if req.member_epoch != m.epoch {
                // Tolerate a member that missed our last response (it still has the previous
                // epoch and what it owned then); anything else is a zombie.
                let lost_response = req.member_epoch == m.previous_epoch
                    && req.owned.as_ref().is_none_or(|o| *o == m.assigned);
                if !lost_response {
                    return Err(GroupError::FencedMemberEpoch);
                }
            }
            m.last_heartbeat_ms = now_ms;
            let mut bump = false;
            if let Some(subs) = &req.subscribed_topic_names {
                let set: std::collections::BTreeSet<String> = subs.iter().cloned().collect();
                if set != m.subscribed {
                    m.subscribed = set;
                    bump = true;
                }
            }
            if req.server_assignor.is_some() && req.server_assignor != m.server_assignor {
                m.server_assignor = req.server_assignor.clone();
                bump = true;
            }
            if req.rebalance_timeout_ms >= 0 {
                m.rebalance_timeout_ms = req.rebalance_timeout_ms as u64;
            }
            if bump {
                g.group_epoch += 1;
            }
        }
        g.refresh_topics(resolve);
        g.maybe_assign();
        g.reconcile(&member_id, req.owned.as_ref(), now_ms);
        let m = g
            .members
            .get_mut(&member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let changed = req.member_epoch == 0
            || m.last_sent.as_ref() != Some(&m.assigned)
            || req.owned.as_ref().is_some_and(|o| *o != m.assigned);
        let assignment = if changed {
            m.last_sent = Some(m.assigned.clone());
            Some(m.assigned.clone())
        } else {
            None
        };
        Ok(ConsumerHeartbeatResponse {
            member_id,
            member_epoch: m.epoch,
            heartbeat_interval_ms: interval,
            assignment,
        })
    }

    /// An epoch group without members becomes an empty classic group again (its offsets, listing
    /// and expiry then work like any empty group's).
    fn retire_if_empty(&self, inner: &mut Inner, group_id: &str, now_ms: u64) {
        if inner
            .epoch_groups
            .get(group_id)
            .is_some_and(|g| g.members.is_empty())
        {
            inner.epoch_groups.remove(group_id);
            let mut g = Group::new(group_id, Some(now_ms));
            g.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.to_string());
            if let Err(e) = self
                .store
                .set_protocol_type(group_id, CONSUMER_PROTOCOL_TYPE)
            {
                tracing::warn!(group = %group_id, error = %e, "could not record protocol type");
            }
            inner.groups.insert(group_id.to_string(), g);
        }
    }

    /// Expire KIP-848 members whose session ended or who did not revoke in time.
    fn tick_epoch_groups(&self, inner: &mut Inner, now_ms: u64) {
        let session = self.config.consumer_session_timeout_ms;
        let mut emptied = Vec::new();
        for g in inner.epoch_groups.values_mut() {
            let expired: Vec<String> = g
                .members
                .values()
                .filter(|m| {
                    m.last_heartbeat_ms + session <= now_ms
                        || m.revocation_deadline_ms.is_some_and(|d| d <= now_ms)
                })
                .map(|m| m.member_id.clone())
                .collect();
            if !expired.is_empty() {
                for id in &expired {
                    tracing::info!(group = %g.group_id, member = %id, "consumer group member expired");
                    g.members.remove(id);
                }
                g.group_epoch += 1;
            }
            if g.members.is_empty() {
                emptied.push(g.group_id.clone());
            }
        }
        for id in emptied {
            self.retire_if_empty(inner, &id, now_ms);
        }
    }

    /// ConsumerGroupDescribe (KIP-848 groups only; classic groups are GROUP_ID_NOT_FOUND).
    pub fn consumer_group_describe(
        &self,
        group_id: &str,
    ) -> Result<ConsumerGroupDescription, GroupError> {
        validate_group_id(group_id)?;
        let inner = self.lock();
        let g = inner
            .epoch_groups
            .get(group_id)
            .ok_or(GroupError::GroupIdNotFound)?;
        Ok(ConsumerGroupDescription {
            group_id: g.group_id.clone(),
            state: g.state().as_str(),
            group_epoch: g.group_epoch,
            assignment_epoch: g.assignment_epoch,
            assignor: g.assignor.clone(),
            members: g
                .members
                .values()
                .map(|m| ConsumerMemberDescription {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.subscribed.iter().cloned().collect(),
                    assignment: m.assigned.clone(),
                    target_assignment: g.target.get(&m.member_id).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }
}

/// Membership checks shared by SyncGroup, Heartbeat and OffsetCommit.
fn check_member(
    group: &Group,
    member_id: &str,
    instance_id: Option<&str>,
    generation_id: i32,
) -> Result<(), GroupError> {
    if group.state == GroupState::Dead {
        return Err(GroupError::CoordinatorNotAvailable);
    }
    if group.is_static_member_fenced(instance_id, member_id) {
        return Err(GroupError::FencedInstanceId);
    }
    if !group.members.contains_key(member_id) {
        return Err(GroupError::UnknownMemberId);
    }
    if generation_id != group.generation_id {
        return Err(GroupError::IllegalGeneration);
    }
    Ok(())
}

/// Is the member's session still alive at `now`?
fn keep_alive(m: &Member, now: u64) -> bool {
    if m.awaiting_join() {
        // Waiting in JoinGroup counts as alive; a brand-new member gets a generous bound.
        !m.is_new || m.last_heartbeat_ms + NEW_MEMBER_JOIN_TIMEOUT_MS > now
    } else {
        m.last_heartbeat_ms + m.session_timeout_ms > now
    }
}

fn current_member_metadata(group: &Group) -> Vec<JoinedMember> {
    let protocol = group.protocol_name.clone().unwrap_or_default();
    group
        .ordered_members()
        .map(|m| JoinedMember {
            member_id: m.member_id.clone(),
            group_instance_id: m.instance_id.clone(),
            metadata: m.metadata(&protocol).cloned().unwrap_or_default(),
        })
        .collect()
}

fn reset_and_propagate_assignment_error(group: &mut Group, error: GroupError) {
    for m in group.members.values_mut() {
        m.assignment = Bytes::new();
        if let Some(tx) = m.sync_waiter.take() {
            send(tx, SyncResponse::error(error.clone()));
        }
    }
}

/// Remove a member and answer anything it is waiting for with UNKNOWN_MEMBER_ID.
fn remove_and_answer(group: &mut Group, member_id: &str) {
    if let Some(mut m) = group.remove_member(member_id) {
        if let Some(tx) = m.join_waiter.take() {
            send(
                tx,
                JoinResponse::error(member_id, GroupError::UnknownMemberId),
            );
        }
        if let Some(tx) = m.sync_waiter.take() {
            send(tx, SyncResponse::error(GroupError::UnknownMemberId));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::metadata::MetaStore;
    use crate::offset_store::RedbOffsetStore;

    const SESSION: u64 = 10_000;
    const REBALANCE: u64 = 30_000;

    fn coordinator_with(config: GroupConfig) -> GroupCoordinator {
        let store = RedbOffsetStore::open(Arc::new(MetaStore::in_memory().unwrap())).unwrap();
        GroupCoordinator::new(config, Arc::new(store), 0)
    }

    /// No initial delay, so joins complete as soon as everyone is in.
    fn coordinator() -> GroupCoordinator {
        coordinator_with(GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        })
    }

    fn join_req(member_id: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
                .collect(),
            require_known_member_id: false,
            supports_skip_assignment: false,
        }
    }

    fn ready<T>(rx: &mut oneshot::Receiver<T>) -> T {
        rx.try_recv().expect("response should be ready")
    }

    fn pending<T: std::fmt::Debug>(rx: &mut oneshot::Receiver<T>) {
        assert!(
            matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
            "response should still be pending"
        );
    }

    fn hb(c: &GroupCoordinator, member: &str, generation: i32, now: u64) -> Result<(), GroupError> {
        c.heartbeat(
            &HeartbeatRequest {
                group_id: "g".into(),
                generation_id: generation,
                member_id: member.into(),
                group_instance_id: None,
            },
            now,
        )
    }

    fn sync(
        c: &GroupCoordinator,
        member: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: u64,
    ) -> oneshot::Receiver<SyncResponse> {
        c.sync_group(
            SyncRequest {
                group_id: "g".into(),
                generation_id: generation,
                member_id: member.into(),
                group_instance_id: None,
                protocol_type: Some("consumer".into()),
                protocol_name: None,
                assignments,
            },
            now,
        )
    }

    fn state(c: &GroupCoordinator) -> GroupState {
        c.describe_group("g").unwrap().state
    }

    /// One member joins (old-style, no two-step) and forms generation 1 alone.
    /// [`single_stable_member`] `a`, then a second member `b` joins and `a` rejoins at `now`:
    /// both have their generation-2 JoinGroup answers, neither has synced. Returns `(a, b)`.
    fn second_member_joined(c: &GroupCoordinator, now: u64) -> (String, String) {
        let a = single_stable_member(c);
        let mut b = c.join_group(join_req("", &["range"]), now);
        let mut a2 = c.join_group(join_req(&a, &["range"]), now);
        let rb = ready(&mut b);
        ready(&mut a2);
        (a, rb.member_id)
    }

    /// [`second_member_joined`], then both sync generation 2 (empty assignments) at `now`.
    fn two_stable_members(c: &GroupCoordinator, now: u64) -> (String, String) {
        let (a, b) = second_member_joined(c, now);
        ready(&mut sync(c, &a, 2, vec![], now));
        ready(&mut sync(c, &b, 2, vec![], now));
        (a, b)
    }

    fn single_stable_member(c: &GroupCoordinator) -> String {
        let mut rx = c.join_group(join_req("", &["range"]), 0);
        let r = ready(&mut rx);
        assert_eq!(r.error, None);
        let mut s = sync(
            c,
            &r.member_id,
            1,
            vec![(r.member_id.clone(), Bytes::from("a1"))],
            0,
        );
        assert_eq!(ready(&mut s).assignment, Bytes::from("a1"));
        r.member_id
    }

    #[test]
    fn two_step_join_then_sync_makes_group_stable() {
        let c = coordinator();
        let mut req = join_req("", &["range", "roundrobin"]);
        req.require_known_member_id = true;
        let mut rx = c.join_group(req.clone(), 0);
        let first = ready(&mut rx);
        assert_eq!(first.error, Some(GroupError::MemberIdRequired));
        assert!(first.member_id.starts_with("client-"));
        // Until the member rejoins, it is only pending: heartbeats do not know it.
        assert_eq!(
            hb(&c, &first.member_id, 0, 1),
            Err(GroupError::UnknownMemberId)
        );

        req.member_id = first.member_id.clone();
        let mut rx = c.join_group(req, 10);
        let joined = ready(&mut rx);
        assert_eq!(joined.error, None);
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.leader, first.member_id);
        assert_eq!(joined.protocol_name.as_deref(), Some("range"));
        assert_eq!(joined.protocol_type.as_deref(), Some("consumer"));
        assert_eq!(joined.members.len(), 1);
        assert_eq!(joined.members[0].metadata, Bytes::from("meta-range"));
        assert_eq!(state(&c), GroupState::CompletingRebalance);
        // Heartbeats during CompletingRebalance are fine.
        assert_eq!(hb(&c, &joined.member_id, 1, 20), Ok(()));

        let mut s = sync(
            &c,
            &joined.member_id,
            1,
            vec![(joined.member_id.clone(), Bytes::from("x"))],
            30,
        );
        let s = ready(&mut s);
        assert_eq!(s.error, None);
        assert_eq!(s.assignment, Bytes::from("x"));
        assert_eq!(s.protocol_name.as_deref(), Some("range"));
        assert_eq!(state(&c), GroupState::Stable);
        assert_eq!(hb(&c, &joined.member_id, 1, 40), Ok(()));
        assert_eq!(
            hb(&c, &joined.member_id, 0, 40),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(hb(&c, "nobody", 1, 40), Err(GroupError::UnknownMemberId));
    }

    #[test]
    fn initial_rebalance_delay_waits_and_extends_while_members_arrive() {
        let c = coordinator_with(GroupConfig {
            initial_rebalance_delay_ms: 3_000,
            ..GroupConfig::default()
        });
        let mut a = c.join_group(join_req("", &["range"]), 0);
        let mut b = c.join_group(join_req("", &["range"]), 1_000);
        c.tick(2_999);
        pending(&mut a);
        // b arrived during the first window: the delay is extended once more.
        c.tick(3_000);
        pending(&mut a);
        let mut d = c.join_group(join_req("", &["range"]), 4_000);
        c.tick(5_999);
        pending(&mut d);
        c.tick(6_000);
        pending(&mut a);
        c.tick(9_000);
        let (ra, rb, rd) = (ready(&mut a), ready(&mut b), ready(&mut d));
        for r in [&ra, &rb, &rd] {
            assert_eq!(r.error, None);
            assert_eq!(r.generation_id, 1);
            assert_eq!(r.leader, ra.member_id);
        }
        assert_eq!(ra.members.len(), 3);
        assert!(rb.members.is_empty() && rd.members.is_empty());
    }

    #[test]
    fn followers_wait_for_leader_assignment() {
        let c = coordinator_with(GroupConfig {
            initial_rebalance_delay_ms: 100,
            ..GroupConfig::default()
        });
        let mut a = c.join_group(join_req("", &["range"]), 0);
        let mut b = c.join_group(join_req("", &["range"]), 0);
        c.tick(100);
        c.tick(200);
        let (ra, rb) = (ready(&mut a), ready(&mut b));
        let mut sb = sync(&c, &rb.member_id, 1, vec![], 300);
        pending(&mut sb);
        let mut sa = sync(
            &c,
            &ra.member_id,
            1,
            vec![
                (ra.member_id.clone(), Bytes::from("pa")),
                (rb.member_id.clone(), Bytes::from("pb")),
            ],
            400,
        );
        assert_eq!(ready(&mut sa).assignment, Bytes::from("pa"));
        assert_eq!(ready(&mut sb).assignment, Bytes::from("pb"));
        // A follower that syncs again in Stable gets its stored assignment.
        let mut again = sync(&c, &rb.member_id, 1, vec![], 500);
        assert_eq!(ready(&mut again).assignment, Bytes::from("pb"));
        let d = c.describe_group("g").unwrap();
        assert_eq!(d.state, GroupState::Stable);
        assert_eq!(d.protocol, "range");
        assert_eq!(d.members.len(), 2);
        assert_eq!(d.members[1].assignment, Bytes::from("pb"));
    }

    #[test]
    fn new_member_triggers_rebalance_and_completes_when_all_rejoined() {
        let c = coordinator();
        let a = single_stable_member(&c);
        let mut b = c.join_group(join_req("", &["range"]), 1_000);
        pending(&mut b);
        assert_eq!(state(&c), GroupState::PreparingRebalance);
        assert_eq!(hb(&c, &a, 1, 1_100), Err(GroupError::RebalanceInProgress));
        let mut a2 = c.join_group(join_req(&a, &["range"]), 1_200);
        let (ra, rb) = (ready(&mut a2), ready(&mut b));
        assert_eq!(ra.generation_id, 2);
        assert_eq!(rb.generation_id, 2);
        assert_eq!(ra.leader, a);
        assert_eq!(ra.members.len(), 2);
        // Syncing with the old generation is refused.
        let mut old = sync(&c, &a, 1, vec![], 1_300);
        assert_eq!(ready(&mut old).error, Some(GroupError::IllegalGeneration));
    }

    #[test]
    fn members_that_do_not_rejoin_are_removed_at_rebalance_timeout() {
        let c = coordinator();
        let (a, b) = second_member_joined(&c, 0);
        let assign = vec![(a.clone(), Bytes::from("1")), (b.clone(), Bytes::from("2"))];
        ready(&mut sync(&c, &a, 2, assign, 0));
        ready(&mut sync(&c, &b, 2, vec![], 0));
        // A third member joins; b keeps heartbeating but never rejoins.
        let mut d = c.join_group(join_req("", &["range"]), 1_000);
        let mut a3 = c.join_group(join_req(&a, &["range"]), 1_000);
        for t in (2_000..REBALANCE).step_by(2_000) {
            let _ = hb(&c, &b, 2, t);
            c.tick(t);
        }
        pending(&mut a3);
        c.tick(1_000 + REBALANCE);
        let (ra, rd) = (ready(&mut a3), ready(&mut d));
        assert_eq!(ra.generation_id, 3);
        assert_eq!(rd.generation_id, 3);
        assert_eq!(ra.members.len(), 2);
        assert_eq!(
            hb(&c, &b, 3, 1_000 + REBALANCE),
            Err(GroupError::UnknownMemberId)
        );
    }

    #[test]
    fn session_timeout_evicts_and_rebalances() {
        let c = coordinator();
        let (a, b) = two_stable_members(&c, 100);
        // a heartbeats, b goes silent.
        for t in (1_000..=SESSION + 100).step_by(1_000) {
            assert_eq!(hb(&c, &a, 2, t), Ok(()));
            c.tick(t);
        }
        c.tick(SESSION + 100);
        assert_eq!(state(&c), GroupState::PreparingRebalance);
        assert_eq!(
            hb(&c, &a, 2, SESSION + 200),
            Err(GroupError::RebalanceInProgress)
        );
        let mut a3 = c.join_group(join_req(&a, &["range"]), SESSION + 300);
        let r = ready(&mut a3);
        assert_eq!(r.generation_id, 3);
        assert_eq!(r.members.len(), 1);
        assert_eq!(
            hb(&c, &b, 2, SESSION + 300),
            Err(GroupError::UnknownMemberId)
        );
    }

    #[test]
    fn expired_pending_member_unblocks_the_rebalance() {
        let c = coordinator();
        let a = single_stable_member(&c);
        let mut req = join_req("", &["range"]);
        req.require_known_member_id = true;
        let first = ready(&mut c.join_group(req, 0));
        assert_eq!(first.error, Some(GroupError::MemberIdRequired));
        // The group only rebalances once the pending member rejoins; a's rejoin in Stable as the
        // leader starts one, which must wait for the pending id.
        let mut a2 = c.join_group(join_req(&a, &["range"]), 0);
        pending(&mut a2);
        c.tick(SESSION - 1);
        pending(&mut a2);
        c.tick(SESSION);
        assert_eq!(ready(&mut a2).generation_id, 2);
    }

    #[test]
    fn leave_group_batched_and_last_leave_empties_group() {
        let c = coordinator();
        let mut a = c.join_group(join_req("", &["range"]), 0);
        let ra = ready(&mut a);
        let mut b = c.join_group(join_req("", &["range"]), 0);
        let mut a2 = c.join_group(join_req(&ra.member_id, &["range"]), 0);
        let rb = ready(&mut b);
        ready(&mut a2);
        let res = c
            .leave_group(
                "g",
                &[
                    LeavingMember {
                        member_id: ra.member_id.clone(),
                        group_instance_id: None,
                    },
                    LeavingMember {
                        member_id: "ghost".into(),
                        group_instance_id: None,
                    },
                    LeavingMember {
                        member_id: rb.member_id.clone(),
                        group_instance_id: None,
                    },
                ],
                10,
            )
            .unwrap();
        assert_eq!(res, vec![Ok(()), Err(GroupError::UnknownMemberId), Ok(())]);
        let d = c.describe_group("g").unwrap();
        assert_eq!(d.state, GroupState::Empty);
        assert_eq!(d.generation_id, 3);
        assert!(d.members.is_empty());
        // Without offsets an empty group disappears at the next cleanup.
        c.tick(GroupConfig::default().offsets_retention_check_interval_ms);
        assert_eq!(c.describe_group("g"), Err(GroupError::GroupIdNotFound));
    }

    #[test]
    fn leader_leaving_during_sync_restarts_rebalance() {
        let c = coordinator();
        let (a, b) = second_member_joined(&c, 0);
        let mut sb = sync(&c, &b, 2, vec![], 0);
        pending(&mut sb);
        c.leave_group(
            "g",
            &[LeavingMember {
                member_id: a.clone(),
                group_instance_id: None,
            }],
            1,
        )
        .unwrap();
        assert_eq!(ready(&mut sb).error, Some(GroupError::RebalanceInProgress));
        let mut b2 = c.join_group(join_req(&b, &["range"]), 2);
        let r = ready(&mut b2);
        assert_eq!(r.leader, b);
        assert_eq!(r.generation_id, 3);
    }

    #[test]
    fn follower_rejoin_with_same_metadata_does_not_rebalance_but_leader_does() {
        let c = coordinator();
        let (a, b) = two_stable_members(&c, 0);
        let r = ready(&mut c.join_group(join_req(&b, &["range"]), 1));
        assert_eq!(r.generation_id, 2);
        assert_eq!(state(&c), GroupState::Stable);
        let mut a3 = c.join_group(join_req(&a, &["range"]), 2);
        pending(&mut a3);
        assert_eq!(state(&c), GroupState::PreparingRebalance);
    }

    #[test]
    fn static_member_rejoin_keeps_generation_and_fences_old_id() {
        let c = coordinator();
        let mut req = join_req("", &["range"]);
        req.group_instance_id = Some("inst-1".into());
        req.require_known_member_id = true;
        let r1 = ready(&mut c.join_group(req.clone(), 0));
        // Static members join directly, without MEMBER_ID_REQUIRED.
        assert_eq!(r1.error, None);
        assert!(r1.member_id.starts_with("inst-1-"));
        ready(&mut sync(
            &c,
            &r1.member_id,
            1,
            vec![(r1.member_id.clone(), Bytes::from("A"))],
            0,
        ));

        // Process restarts: same instance id, no member id.
        let r2 = ready(&mut c.join_group(req.clone(), 1_000));
        assert_eq!(r2.error, None);
        assert_ne!(r2.member_id, r1.member_id);
        assert_eq!(r2.generation_id, 1);
        assert_eq!(state(&c), GroupState::Stable);
        let hb_old = c.heartbeat(
            &HeartbeatRequest {
                group_id: "g".into(),
                generation_id: 1,
                member_id: r1.member_id.clone(),
                group_instance_id: Some("inst-1".into()),
            },
            1_100,
        );
        assert_eq!(hb_old, Err(GroupError::FencedInstanceId));
        let mut s = c.sync_group(
            SyncRequest {
                group_id: "g".into(),
                generation_id: 1,
                member_id: r2.member_id.clone(),
                group_instance_id: Some("inst-1".into()),
                protocol_type: None,
                protocol_name: None,
                assignments: vec![],
            },
            1_200,
        );
        assert_eq!(ready(&mut s).assignment, Bytes::from("A"));
        // The old id joining again is fenced too.
        let mut old = req.clone();
        old.member_id = r1.member_id.clone();
        assert_eq!(
            ready(&mut c.join_group(old, 1_300)).error,
            Some(GroupError::FencedInstanceId)
        );
        // Leaving by instance id with a stale member id is fenced; with the current one it works.
        let res = c
            .leave_group(
                "g",
                &[
                    LeavingMember {
                        member_id: r1.member_id.clone(),
                        group_instance_id: Some("inst-1".into()),
                    },
                    LeavingMember {
                        member_id: String::new(),
                        group_instance_id: Some("inst-1".into()),
                    },
                ],
                1_400,
            )
            .unwrap();
        assert_eq!(res, vec![Err(GroupError::FencedInstanceId), Ok(())]);
        assert_eq!(state(&c), GroupState::Empty);
    }

    #[test]
    fn static_member_absent_at_rebalance_keeps_its_place_until_session_expiry() {
        let c = coordinator();
        let mut sreq = join_req("", &["range"]);
        sreq.group_instance_id = Some("s".into());
        let rs = ready(&mut c.join_group(sreq, 0));
        ready(&mut sync(&c, &rs.member_id, 1, vec![], 0));
        let mut d = c.join_group(join_req("", &["range"]), 100);
        pending(&mut d);
        // The static member keeps heartbeating (told to rejoin) but never rejoins.
        for t in (1_000..=100 + REBALANCE).step_by(1_000) {
            assert_eq!(
                hb(&c, &rs.member_id, 1, t),
                Err(GroupError::RebalanceInProgress)
            );
            c.tick(t);
        }
        c.tick(100 + REBALANCE);
        // The static member did not rejoin but stays; the dynamic newcomer leads generation 2.
        let rd = ready(&mut d);
        assert_eq!(rd.generation_id, 2);
        assert_eq!(rd.leader, rd.member_id);
        assert_eq!(rd.members.len(), 2);
        // Its last heartbeat was at REBALANCE: the session ends SESSION later.
        c.tick(REBALANCE + SESSION - 1);
        assert_eq!(state(&c), GroupState::CompletingRebalance);
        c.tick(REBALANCE + SESSION);
        assert_eq!(state(&c), GroupState::PreparingRebalance);
        assert_eq!(c.describe_group("g").unwrap().members.len(), 1);
    }

    #[test]
    fn protocol_checks_and_invalid_inputs() {
        let c = coordinator();
        let _a = single_stable_member(&c);
        let mut other_type = join_req("", &["range"]);
        other_type.protocol_type = "connect".into();
        assert_eq!(
            ready(&mut c.join_group(other_type, 0)).error,
            Some(GroupError::InconsistentGroupProtocol)
        );
        assert_eq!(
            ready(&mut c.join_group(join_req("", &["sticky"]), 0)).error,
            Some(GroupError::InconsistentGroupProtocol)
        );
        let mut empty = join_req("", &[]);
        empty.group_id = "fresh".into();
        assert_eq!(
            ready(&mut c.join_group(empty, 0)).error,
            Some(GroupError::InconsistentGroupProtocol)
        );
        assert!(c.list_groups(&[]).iter().all(|g| g.group_id != "fresh"));

        let mut bad = join_req("", &["range"]);
        bad.group_id = String::new();
        assert_eq!(
            ready(&mut c.join_group(bad.clone(), 0)).error,
            Some(GroupError::InvalidGroupId)
        );
        bad.group_id = "x".repeat(MAX_GROUP_ID_LEN + 1);
        assert_eq!(
            ready(&mut c.join_group(bad, 0)).error,
            Some(GroupError::InvalidGroupId)
        );
        let mut short = join_req("", &["range"]);
        short.session_timeout_ms = 5_999;
        assert_eq!(
            ready(&mut c.join_group(short.clone(), 0)).error,
            Some(GroupError::InvalidSessionTimeout)
        );
        short.session_timeout_ms = 1_800_001;
        assert_eq!(
            ready(&mut c.join_group(short, 0)).error,
            Some(GroupError::InvalidSessionTimeout)
        );
        assert_eq!(
            ready(&mut c.join_group(join_req("made-up", &["range"]), 0)).error,
            Some(GroupError::UnknownMemberId)
        );
        assert_eq!(GroupError::InvalidGroupId.code(), 24);
        assert_eq!(GroupError::MemberIdRequired.code(), 79);
    }

    #[test]
    fn protocol_selection_across_members() {
        let c = coordinator();
        let mut a = c.join_group(join_req("", &["cooperative-sticky", "range"]), 0);
        let ra = ready(&mut a);
        assert_eq!(ra.protocol_name.as_deref(), Some("cooperative-sticky"));
        let mut b = c.join_group(join_req("", &["range"]), 0);
        let mut a2 = c.join_group(join_req(&ra.member_id, &["cooperative-sticky", "range"]), 0);
        let r = ready(&mut a2);
        ready(&mut b);
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.members[0].metadata, Bytes::from("meta-range"));
    }

    fn commit(
        c: &GroupCoordinator,
        generation: i32,
        member: &str,
        offsets: &[(&str, i32, i64)],
        now: u64,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        c.commit_offsets(
            &OffsetCommitRequest {
                group_id: "g".into(),
                generation_id: generation,
                member_id: member.into(),
                group_instance_id: None,
                retention_ms: None,
                offsets: offsets
                    .iter()
                    .map(|(t, p, o)| OffsetCommitEntry {
                        topic: t.to_string(),
                        partition: *p,
                        offset: *o,
                        leader_epoch: 7,
                        metadata: Some(format!("md-{o}")),
                    })
                    .collect(),
            },
            now,
        )
    }

    #[test]
    fn offset_commit_checks_membership_and_round_trips() {
        let c = coordinator();
        let a = single_stable_member(&c);
        assert_eq!(
            commit(&c, 1, &a, &[("t", 0, 10), ("t", 1, 20)], 5),
            Ok(vec![Ok(()), Ok(())])
        );
        assert_eq!(
            commit(&c, 1, "ghost", &[("t", 0, 11)], 5),
            Err(GroupError::UnknownMemberId)
        );
        assert_eq!(
            commit(&c, 0, &a, &[("t", 0, 11)], 5),
            Err(GroupError::IllegalGeneration)
        );
        // Outside group management while the group has members: refused.
        assert_eq!(
            commit(&c, -1, "", &[("t", 0, 11)], 5),
            Err(GroupError::UnknownMemberId)
        );
        let got = c
            .fetch_offsets("g", Some(&[("t".into(), 0), ("t".into(), 9)]))
            .unwrap();
        let c0 = got[0].1.clone().unwrap();
        assert_eq!(
            (c0.offset, c0.leader_epoch, c0.metadata.as_str()),
            (10, 7, "md-10")
        );
        assert_eq!(got[1].1, None);
        assert_eq!(c.fetch_offsets("g", None).unwrap().len(), 2);
        // During CompletingRebalance members must finish the rebalance first.
        let mut b = c.join_group(join_req("", &["range"]), 6);
        let mut a2 = c.join_group(join_req(&a, &["range"]), 6);
        ready(&mut b);
        ready(&mut a2);
        assert_eq!(
            commit(&c, 2, &a, &[("t", 0, 12)], 7),
            Err(GroupError::RebalanceInProgress)
        );
        // Too large metadata is refused per partition.
        let big = c.commit_offsets(
            &OffsetCommitRequest {
                group_id: "solo".into(),
                generation_id: -1,
                member_id: String::new(),
                group_instance_id: None,
                retention_ms: None,
                offsets: vec![OffsetCommitEntry {
                    topic: "t".into(),
                    partition: 0,
                    offset: 1,
                    leader_epoch: -1,
                    metadata: Some("m".repeat(5000)),
                }],
            },
            8,
        );
        assert_eq!(big, Ok(vec![Err(GroupError::OffsetMetadataTooLarge)]));
        // A commit with a generation to a group that does not exist.
        let unknown = c.commit_offsets(
            &OffsetCommitRequest {
                group_id: "nope".into(),
                generation_id: 3,
                member_id: "m".into(),
                group_instance_id: None,
                retention_ms: None,
                offsets: vec![],
            },
            8,
        );
        assert_eq!(unknown, Err(GroupError::IllegalGeneration));
    }

    #[test]
    fn simple_commits_create_an_empty_group_that_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        {
            let db = MetaStore::open(&path).unwrap();
            let c = GroupCoordinator::new(
                GroupConfig::default(),
                Arc::new(RedbOffsetStore::open(Arc::new(db)).unwrap()),
                0,
            );
            assert_eq!(commit(&c, -1, "", &[("t", 3, 42)], 1), Ok(vec![Ok(())]));
            let mut other = join_req("", &["range"]);
            other.group_id = "members".into();
            let mut rx = c.join_group(other.clone(), 0);
            c.tick(3_000); // initial delay
            let r = ready(&mut rx);
            assert_eq!(r.error, None);
            let _ = c.commit_offsets(
                &OffsetCommitRequest {
                    group_id: "members".into(),
                    generation_id: 1,
                    member_id: r.member_id.clone(),
                    group_instance_id: None,
                    retention_ms: None,
                    offsets: vec![],
                },
                3_000,
            );
        }
        let db = MetaStore::open(&path).unwrap();
        let c = GroupCoordinator::new(
            GroupConfig::default(),
            Arc::new(RedbOffsetStore::open(Arc::new(db)).unwrap()),
            10,
        );
        let groups = c.list_groups(&[GroupState::Empty]);
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(groups[0].group_id, "g");
        assert_eq!(groups[1].protocol_type, "consumer");
        let got = c.fetch_offsets("g", None).unwrap();
        assert_eq!(got[0].0, ("t".to_string(), 3));
        assert_eq!(got[0].1.as_ref().map(|o| o.offset), Some(42));
    }

    #[test]
    fn offsets_of_empty_groups_expire_after_retention() {
        let c = coordinator_with(GroupConfig {
            initial_rebalance_delay_ms: 0,
            offsets_retention_ms: 60_000,
            offsets_retention_check_interval_ms: 1_000,
            ..GroupConfig::default()
        });
        let a = single_stable_member(&c);
        commit(&c, 1, &a, &[("t", 0, 5)], 0).unwrap();
        // Stable group subscribed (unknown metadata): offsets are kept however old.
        for t in (1_000..=120_000).step_by(1_000) {
            hb(&c, &a, 1, t).unwrap();
            c.tick(t);
        }
        assert_eq!(c.fetch_offsets("g", None).unwrap().len(), 1);
        c.leave_group(
            "g",
            &[LeavingMember {
                member_id: a,
                group_instance_id: None,
            }],
            120_000,
        )
        .unwrap();
        c.tick(179_000);
        assert_eq!(c.fetch_offsets("g", None).unwrap().len(), 1);
        c.tick(180_000);
        assert!(c.fetch_offsets("g", None).unwrap().is_empty());
        assert_eq!(c.describe_group("g"), Err(GroupError::GroupIdNotFound));
    }

    #[test]
    fn delete_groups_and_offset_delete() {
        let c = coordinator();
        let a = single_stable_member(&c);
        commit(&c, 1, &a, &[("t", 0, 5), ("u", 0, 6)], 0).unwrap();
        assert_eq!(
            c.delete_groups(&["g".into(), "missing".into(), String::new()]),
            vec![
                Err(GroupError::NonEmptyGroup),
                Err(GroupError::GroupIdNotFound),
                Err(GroupError::InvalidGroupId)
            ]
        );
        // Subscriptions cannot be decoded (test metadata): every topic is protected.
        assert_eq!(
            c.delete_offsets("g", &[("u".into(), 0)]),
            Ok(vec![Err(GroupError::GroupSubscribedToTopic)])
        );
        c.leave_group(
            "g",
            &[LeavingMember {
                member_id: a,
                group_instance_id: None,
            }],
            1,
        )
        .unwrap();
        assert_eq!(c.delete_offsets("g", &[("u".into(), 0)]), Ok(vec![Ok(())]));
        assert_eq!(c.fetch_offsets("g", None).unwrap().len(), 1);
        assert_eq!(c.delete_groups(&["g".into()]), vec![Ok(())]);
        assert!(c.fetch_offsets("g", None).unwrap().is_empty());
        assert!(c.list_groups(&[]).is_empty());
        assert_eq!(c.delete_offsets("g", &[]), Err(GroupError::GroupIdNotFound));
    }

    #[test]
    fn offset_delete_uses_consumer_subscriptions() {
        use bytes::BytesMut;
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let c = coordinator();
        let sub = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")]);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&0i16.to_be_bytes());
        sub.encode(&mut buf, 0).unwrap();
        let mut req = join_req("", &["range"]);
        req.protocols = vec![("range".into(), buf.freeze())];
        let r = ready(&mut c.join_group(req, 0));
        ready(&mut sync(&c, &r.member_id, 1, vec![], 0));
        commit(&c, 1, &r.member_id, &[("t", 0, 5), ("u", 0, 6)], 0).unwrap();
        assert_eq!(
            c.delete_offsets("g", &[("t".into(), 0), ("u".into(), 0)]),
            Ok(vec![Err(GroupError::GroupSubscribedToTopic), Ok(())])
        );
    }

    fn topic_id() -> uuid::Uuid {
        uuid::Uuid::from_u128(42)
    }

    fn resolve(name: &str) -> Option<(uuid::Uuid, i32)> {
        (name == "t").then_some((topic_id(), 4))
    }

    fn beat(
        c: &GroupCoordinator,
        member: &str,
        epoch: i32,
        owned: Option<Assignment>,
        now: u64,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        c.consumer_group_heartbeat(
            &ConsumerHeartbeatRequest {
                group_id: "cg".into(),
                member_id: member.into(),
                member_epoch: epoch,
                rebalance_timeout_ms: 5_000,
                subscribed_topic_names: (epoch == 0).then(|| vec!["t".to_string()]),
                owned,
                ..Default::default()
            },
            &resolve,
            now,
        )
    }

    fn parts(a: &Option<Assignment>) -> usize {
        a.as_ref().map_or(0, |a| a.values().map(|s| s.len()).sum())
    }

    #[test]
    fn kip848_members_converge_without_double_ownership() {
        let c = coordinator();
        let a1 = beat(&c, "a", 0, None, 0).unwrap();
        assert_eq!(a1.member_epoch, 1);
        assert_eq!(parts(&a1.assignment), 4);
        // Unchanged: no assignment in the response.
        let a2 = beat(&c, "a", 1, a1.assignment.clone(), 10).unwrap();
        assert_eq!(a2.assignment, None);

        // b joins: it is at the new epoch but gets nothing until a revokes.
        let b1 = beat(&c, "b", 0, None, 20).unwrap();
        assert_eq!(b1.member_epoch, 2);
        assert_eq!(parts(&b1.assignment), 0);
        let a3 = beat(&c, "a", 1, a1.assignment.clone(), 30).unwrap();
        assert_eq!(a3.member_epoch, 1, "a stays behind until it has revoked");
        assert_eq!(parts(&a3.assignment), 2);
        // A commit from a at its (still current) epoch works; a stale epoch is refused.
        let commit = |member: &str, epoch: i32| {
            c.commit_offsets(
                &OffsetCommitRequest {
                    group_id: "cg".into(),
                    generation_id: epoch,
                    member_id: member.into(),
                    group_instance_id: None,
                    retention_ms: None,
                    offsets: vec![OffsetCommitEntry {
                        topic: "t".into(),
                        partition: 0,
                        offset: 1,
                        leader_epoch: -1,
                        metadata: None,
                    }],
                },
                35,
            )
        };
        assert_eq!(commit("a", 1), Ok(vec![Ok(())]));
        assert_eq!(commit("a", 0), Err(GroupError::StaleMemberEpoch));
        assert_eq!(commit("zz", 1), Err(GroupError::UnknownMemberId));
        assert_eq!(commit("", -1), Err(GroupError::UnknownMemberId));
        // a acknowledges the revocation, moves to epoch 2; then b gets the two partitions.
        let a4 = beat(&c, "a", 1, a3.assignment.clone(), 40).unwrap();
        assert_eq!(a4.member_epoch, 2);
        let b2 = beat(&c, "b", 2, Some(Assignment::new()), 50).unwrap();
        assert_eq!(parts(&b2.assignment), 2);
        let (sa, sb) = (a3.assignment.unwrap(), b2.assignment.unwrap());
        assert!(sa[&topic_id()].is_disjoint(&sb[&topic_id()]));
        let d = c.consumer_group_describe("cg").unwrap();
        assert_eq!(d.state, "Stable");
        assert_eq!(d.members.len(), 2);

        // Zombie epochs are fenced; a classic member cannot join.
        assert_eq!(
            beat(&c, "b", 7, None, 60),
            Err(GroupError::FencedMemberEpoch)
        );
        assert_eq!(
            beat(&c, "nobody", 2, None, 60),
            Err(GroupError::UnknownMemberId)
        );
        let mut classic = join_req("", &["range"]);
        classic.group_id = "cg".into();
        assert_eq!(
            ready(&mut c.join_group(classic, 60)).error,
            Some(GroupError::InconsistentGroupProtocol)
        );
        assert_eq!(
            c.delete_groups(&["cg".into()]),
            vec![Err(GroupError::NonEmptyGroup)]
        );

        // b leaves; a's session later expires; the group ends as an empty classic group with its
        // offsets.
        let left = beat(&c, "b", -1, None, 70).unwrap();
        assert_eq!(left.member_epoch, -1);
        c.tick(70 + GroupConfig::default().consumer_session_timeout_ms);
        assert_eq!(
            c.consumer_group_describe("cg"),
            Err(GroupError::GroupIdNotFound)
        );
        assert_eq!(c.describe_group("cg").unwrap().state, GroupState::Empty);
        assert_eq!(c.fetch_offsets("cg", None).unwrap().len(), 1);
    }

    #[test]
    fn kip848_rejects_unknown_assignors_and_regex() {
        let c = coordinator();
        let mut req = ConsumerHeartbeatRequest {
            group_id: "cg".into(),
            member_id: "m".into(),
            subscribed_topic_names: Some(vec!["t".into()]),
            server_assignor: Some("sticky".into()),
            ..Default::default()
        };
        assert_eq!(
            c.consumer_group_heartbeat(&req, &resolve, 0),
            Err(GroupError::UnsupportedAssignor)
        );
        req.server_assignor = None;
        req.subscribed_topic_regex = Some("t.*".into());
        assert!(matches!(
            c.consumer_group_heartbeat(&req, &resolve, 0),
            Err(GroupError::InvalidRequest(_))
        ));
        // A classic group with members is not a consumer group.
        let _ = single_stable_member(&c);
        req.group_id = "g".into();
        req.subscribed_topic_regex = None;
        assert_eq!(
            c.consumer_group_heartbeat(&req, &resolve, 0),
            Err(GroupError::GroupIdNotFound)
        );
    }

    #[test]
    fn leader_that_never_syncs_is_removed_at_the_rebalance_timeout() {
        let c = coordinator();
        let mut a = c.join_group(join_req("", &["range"]), 0);
        let ra = ready(&mut a);
        let mut b = c.join_group(join_req("", &["range"]), 0);
        let mut a2 = c.join_group(join_req(&ra.member_id, &["range"]), 0);
        let rb = ready(&mut b);
        assert_eq!(ready(&mut a2).leader, ra.member_id);
        // The follower syncs and waits; the leader keeps heartbeating but never syncs.
        let mut sb = sync(&c, &rb.member_id, 2, vec![], 10);
        for t in (1_000..REBALANCE).step_by(1_000) {
            assert_eq!(hb(&c, &ra.member_id, 2, t), Ok(()));
            assert_eq!(hb(&c, &rb.member_id, 2, t), Ok(()));
            c.tick(t);
        }
        pending(&mut sb);
        c.tick(REBALANCE);
        // The leader is gone; the follower is told to rejoin and leads the next generation.
        assert_eq!(ready(&mut sb).error, Some(GroupError::RebalanceInProgress));
        assert_eq!(
            hb(&c, &ra.member_id, 2, REBALANCE),
            Err(GroupError::UnknownMemberId)
        );
        let r = ready(&mut c.join_group(join_req(&rb.member_id, &["range"]), REBALANCE + 1));
        assert_eq!(
            (r.generation_id, r.leader.as_str()),
            (3, rb.member_id.as_str())
        );
    }
}
