//! The one map of groups (Kafka's `GroupMetadataManager`): every group id maps to one [`Group`],
//! either a classic group or a KIP-848 consumer group, so a group id is never both. This module
//! routes each request to the right kind of group and owns the rules between the two kinds (a
//! classic JoinGroup to a consumer group is INCONSISTENT_GROUP_PROTOCOL; an empty classic group
//! becomes a consumer group on the first ConsumerGroupHeartbeat, and a consumer group that loses
//! its last member becomes an empty classic group again), and the admin views (ListGroups,
//! DescribeGroups, DeleteGroups).

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::classic::group::ClassicGroup;
use super::classic::rebalance::send;
use super::classic::state::{ClassicGroupState, ClassicGroupStateName};
use super::classic::{
    HeartbeatRequest, JoinRequest, JoinResponse, LeavingMember, SyncRequest, SyncResponse,
};
use super::consumer::assignor::ASSIGNORS;
use super::consumer::group::{ConsumerGroup, ConsumerGroupState};
use super::consumer::{
    ConsumerGroupDescription, ConsumerHeartbeatRequest, ConsumerHeartbeatResponse,
};
use super::consumer_protocol::CONSUMER_PROTOCOL_TYPE;
use super::context::OpContext;
use super::error::{validate_group_id, GroupError};
use super::offset_store::OffsetStore;

/// A group of either kind.
#[derive(Debug)]
pub(crate) enum Group {
    /// A group of the classic rebalance protocol (JoinGroup/SyncGroup).
    Classic(ClassicGroup),
    /// A KIP-848 consumer group (ConsumerGroupHeartbeat).
    Consumer(ConsumerGroup),
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
    pub state: ClassicGroupStateName,
    pub protocol_type: String,
    /// The selected protocol (only while Stable, as Kafka).
    pub protocol: String,
    pub generation_id: i32,
    pub leader: String,
    pub members: Vec<MemberDescription>,
}

/// Every group of this node.
#[derive(Debug, Default)]
pub(crate) struct GroupMetadataManager {
    groups: HashMap<String, Group>,
}

impl GroupMetadataManager {
    /// The groups known from `store`: groups that have offsets start as Empty classic groups
    /// (members rebuild the rest by rejoining, as in Kafka).
    pub fn load(store: &dyn OffsetStore, now: Instant) -> GroupMetadataManager {
        let mut groups = HashMap::new();
        for id in store.groups() {
            let g = match store.group_metadata(&id) {
                Some(m) => ClassicGroup::from_metadata(&id, &m, now),
                None => {
                    let mut g = ClassicGroup::new(&id, None);
                    g.protocol_type = store.protocol_type(&id);
                    g
                }
            };
            groups.insert(id, Group::Classic(g));
        }
        GroupMetadataManager { groups }
    }

    /// The classic group `group_id`, if that is what it is.
    pub fn classic(&self, group_id: &str) -> Option<&ClassicGroup> {
        match self.groups.get(group_id) {
            Some(Group::Classic(g)) => Some(g),
            _ => None,
        }
    }

    fn classic_mut(&mut self, group_id: &str) -> Option<&mut ClassicGroup> {
        match self.groups.get_mut(group_id) {
            Some(Group::Classic(g)) => Some(g),
            _ => None,
        }
    }

    /// Every classic group.
    pub fn classic_groups(&self) -> impl Iterator<Item = &ClassicGroup> {
        self.groups.values().filter_map(|g| match g {
            Group::Classic(g) => Some(g),
            Group::Consumer(_) => None,
        })
    }

    /// Add an Empty classic group `group_id` unless a group of that id exists.
    pub fn ensure_classic(&mut self, group_id: &str, wall_ms: i64) {
        self.groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::Classic(ClassicGroup::new(group_id, Some(wall_ms))));
    }

    /// Delete a group from the map (moving a classic group to Dead first, as Kafka does).
    pub fn remove(&mut self, group_id: &str, wall_ms: i64) {
        if let Some(Group::Classic(mut g)) = self.groups.remove(group_id) {
            g.transition_to(ClassicGroupState::Dead, wall_ms);
        }
    }

    // ---------------------------------------------------------------- classic protocol

    /// JoinGroup; `tx` is answered when the rebalance completes (or at once on error).
    pub fn join_group(
        &mut self,
        ctx: &OpContext,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
    ) {
        if let Err(e) = validate_group_id(&req.group_id) {
            send(tx, JoinResponse::error(&req.member_id, e));
            return;
        }
        if req.session_timeout_ms < ctx.config.min_session_timeout_ms
            || req.session_timeout_ms > ctx.config.max_session_timeout_ms
        {
            send(
                tx,
                JoinResponse::error(&req.member_id, GroupError::InvalidSessionTimeout),
            );
            return;
        }
        let known = !req.member_id.is_empty();
        match self.groups.get(&req.group_id) {
            Some(Group::Consumer(_)) => {
                // A KIP-848 group with members: classic members cannot join it.
                send(
                    tx,
                    JoinResponse::error(&req.member_id, GroupError::InconsistentGroupProtocol),
                );
                return;
            }
            None if known => {
                send(
                    tx,
                    JoinResponse::error(&req.member_id, GroupError::UnknownMemberId),
                );
                return;
            }
            _ => {}
        }
        let group_id = req.group_id.clone();
        self.ensure_classic(&group_id, ctx.wall_ms);
        let Some(group) = self.classic_mut(&group_id) else {
            send(
                tx,
                JoinResponse::error(&req.member_id, GroupError::CoordinatorNotAvailable),
            );
            return;
        };
        if known {
            group.join_known_member(ctx, req, tx);
        } else {
            group.join_new_member(ctx, req, tx);
        }
        let discard = group.is_in(ClassicGroupStateName::Empty)
            && group.members.is_empty()
            && group.pending_members.is_empty()
            && !ctx.store.has_offsets(&group_id);
        if discard {
            self.groups.remove(&group_id);
        }
    }

    /// SyncGroup; followers' `tx` is answered when the leader's assignment arrives.
    pub fn sync_group(
        &mut self,
        ctx: &OpContext,
        req: SyncRequest,
        tx: oneshot::Sender<SyncResponse>,
    ) {
        if let Err(e) = validate_group_id(&req.group_id) {
            send(tx, SyncResponse::error(e));
            return;
        }
        match self.classic_mut(&req.group_id) {
            Some(group) => group.sync(ctx, req, tx),
            None => send(tx, SyncResponse::error(GroupError::UnknownMemberId)),
        }
    }

    /// Heartbeat of a classic group member.
    pub fn heartbeat(&mut self, ctx: &OpContext, req: &HeartbeatRequest) -> Result<(), GroupError> {
        validate_group_id(&req.group_id)?;
        self.classic_mut(&req.group_id)
            .ok_or(GroupError::UnknownMemberId)?
            .heartbeat(ctx, req)
    }

    /// LeaveGroup for a batch of members: the outer error applies to the whole request, the inner
    /// ones to each member in order.
    pub fn leave_group(
        &mut self,
        ctx: &OpContext,
        group_id: &str,
        members: &[LeavingMember],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        validate_group_id(group_id)?;
        let Some(group) = self.classic_mut(group_id) else {
            return Ok(members
                .iter()
                .map(|_| Err(GroupError::UnknownMemberId))
                .collect());
        };
        Ok(members.iter().map(|lm| group.leave(ctx, lm)).collect())
    }

    // ---------------------------------------------------------------- consumer groups

    /// ConsumerGroupHeartbeat (KIP-848): join (epoch 0), heartbeat/acknowledge, or leave (-1/-2).
    /// `resolve` maps a topic name to its id and partition count.
    pub fn consumer_group_heartbeat(
        &mut self,
        ctx: &OpContext,
        req: &ConsumerHeartbeatRequest,
        resolve: &dyn Fn(&str) -> Option<(uuid::Uuid, i32)>,
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
        let interval = i32::try_from(ctx.config.consumer_heartbeat_interval_ms).unwrap_or(i32::MAX);
        if let Some(g) = self.classic(&req.group_id) {
            if !g.is_in(ClassicGroupStateName::Empty) || !g.pending_members.is_empty() {
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
            match self.groups.get_mut(&req.group_id) {
                Some(Group::Consumer(g)) => g.leave(&req.member_id)?,
                _ => return Err(GroupError::UnknownMemberId),
            }
            self.retire_if_empty(ctx, &req.group_id);
            return Ok(ConsumerHeartbeatResponse {
                member_id: req.member_id.clone(),
                member_epoch: req.member_epoch,
                heartbeat_interval_ms: interval,
                assignment: None,
            });
        }
        let is_consumer = matches!(self.groups.get(&req.group_id), Some(Group::Consumer(_)));
        if req.member_epoch == 0 && !is_consumer {
            // A new group, or an empty classic one (only offsets) converted to the new protocol.
            self.groups.insert(
                req.group_id.clone(),
                Group::Consumer(ConsumerGroup::new(&req.group_id)),
            );
        }
        match self.groups.get_mut(&req.group_id) {
            Some(Group::Consumer(g)) => g.heartbeat(ctx, req, resolve),
            _ => Err(GroupError::UnknownMemberId),
        }
    }

    /// A consumer group without members becomes an empty classic group again (its offsets,
    /// listing and expiry then work like any empty group's).
    fn retire_if_empty(&mut self, ctx: &OpContext, group_id: &str) {
        let empty =
            matches!(self.groups.get(group_id), Some(Group::Consumer(g)) if g.members.is_empty());
        if !empty {
            return;
        }
        let mut g = ClassicGroup::new(group_id, Some(ctx.wall_ms));
        g.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.to_string());
        if let Err(e) = ctx
            .store
            .set_protocol_type(group_id, CONSUMER_PROTOCOL_TYPE)
        {
            tracing::warn!(group = %group_id, error = %e, "could not record protocol type");
        }
        self.groups.insert(group_id.to_string(), Group::Classic(g));
    }

    /// ConsumerGroupDescribe (consumer groups only; classic groups are GROUP_ID_NOT_FOUND).
    pub fn consumer_group_describe(
        &self,
        group_id: &str,
    ) -> Result<ConsumerGroupDescription, GroupError> {
        validate_group_id(group_id)?;
        match self.groups.get(group_id) {
            Some(Group::Consumer(g)) => Ok(g.describe()),
            _ => Err(GroupError::GroupIdNotFound),
        }
    }

    // ---------------------------------------------------------------- offsets and time

    /// May this OffsetCommit be stored? Classic members need their member id and generation;
    /// consumer group members their member epoch. A commit from outside group management to an
    /// unknown group creates it (Empty).
    pub fn validate_offset_commit(
        &mut self,
        ctx: &OpContext,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        match self.groups.get_mut(group_id) {
            Some(Group::Consumer(g)) => g.validate_offset_commit(ctx, generation_id, member_id),
            Some(Group::Classic(g)) => {
                g.validate_offset_commit(ctx, generation_id, member_id, instance_id)
            }
            None if generation_id >= 0 => Err(GroupError::IllegalGeneration),
            None => {
                let mut g = ClassicGroup::new(group_id, Some(ctx.wall_ms));
                let result = g.validate_offset_commit(ctx, generation_id, member_id, instance_id);
                self.groups.insert(group_id.to_string(), Group::Classic(g));
                result
            }
        }
    }

    /// Advance time: expire sessions, pending member ids and rebalance deadlines.
    pub fn tick(&mut self, ctx: &OpContext) {
        let mut emptied = Vec::new();
        for group in self.groups.values_mut() {
            match group {
                Group::Classic(g) => g.tick(ctx),
                Group::Consumer(g) => {
                    g.expire_members(ctx);
                    if g.members.is_empty() {
                        emptied.push(g.group_id.clone());
                    }
                }
            }
        }
        for id in emptied {
            self.retire_if_empty(ctx, &id);
        }
    }

    // ---------------------------------------------------------------- admin

    /// ListGroups, optionally filtered by state (empty filter: all).
    pub fn list_groups(&self, states: &[ClassicGroupStateName]) -> Vec<GroupListing> {
        let mut out: Vec<GroupListing> = Vec::new();
        for group in self.groups.values() {
            match group {
                Group::Classic(g) => {
                    if states.is_empty() || states.contains(&g.state_name()) {
                        out.push(GroupListing {
                            group_id: g.group_id.clone(),
                            protocol_type: g.protocol_type.clone().unwrap_or_default(),
                            state: g.state_name().as_str().to_string(),
                            group_type: "classic",
                        });
                    }
                }
                Group::Consumer(g) => {
                    let state = g.state();
                    if states.is_empty() || states.contains(&classic_name(state)) {
                        out.push(GroupListing {
                            group_id: g.group_id.clone(),
                            protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
                            state: state.as_str().to_string(),
                            group_type: "consumer",
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// DescribeGroups for one group; GROUP_ID_NOT_FOUND when there is no such group (older
    /// DescribeGroups versions show that as state "Dead").
    pub fn describe_group(&self, group_id: &str) -> Result<GroupDescription, GroupError> {
        validate_group_id(group_id)?;
        let group = match self.groups.get(group_id) {
            None => return Err(GroupError::GroupIdNotFound),
            Some(Group::Consumer(g)) => {
                // A consumer group through the classic API: state and members, no protocol bytes.
                return Ok(GroupDescription {
                    group_id: g.group_id.clone(),
                    state: classic_name(g.state()),
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
            Some(Group::Classic(g)) => g,
        };
        let stable = group.is_in(ClassicGroupStateName::Stable);
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
            state: group.state_name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol,
            generation_id: group.generation_id,
            leader: group.leader_id.clone().unwrap_or_default(),
            members,
        })
    }

    /// DeleteGroups: only empty groups can be deleted; their offsets go with them.
    pub fn delete_groups(
        &mut self,
        ctx: &OpContext,
        group_ids: &[String],
    ) -> Vec<Result<(), GroupError>> {
        group_ids
            .iter()
            .map(|id| {
                validate_group_id(id)?;
                let group = match self.groups.get(id) {
                    None => return Err(GroupError::GroupIdNotFound),
                    Some(Group::Consumer(_)) => return Err(GroupError::NonEmptyGroup),
                    Some(Group::Classic(g)) => g,
                };
                match group.state_name() {
                    ClassicGroupStateName::Empty => {}
                    ClassicGroupStateName::Dead => return Err(GroupError::GroupIdNotFound),
                    _ => return Err(GroupError::NonEmptyGroup),
                }
                ctx.store.delete_group(id)?;
                self.remove(id, ctx.wall_ms);
                Ok(())
            })
            .collect()
    }
}

/// The classic state a consumer group's state is listed and described as (as Kafka maps them
/// for the classic APIs).
fn classic_name(state: ConsumerGroupState) -> ClassicGroupStateName {
    match state {
        ConsumerGroupState::Empty => ClassicGroupStateName::Empty,
        ConsumerGroupState::Assigning | ConsumerGroupState::Reconciling => {
            ClassicGroupStateName::PreparingRebalance
        }
        ConsumerGroupState::Stable => ClassicGroupStateName::Stable,
    }
}
