//! The classic rebalance protocol on one group, as Kafka's `GroupMetadataManager` runs it for
//! classic groups: JoinGroup (new, known and static members), SyncGroup, Heartbeat, LeaveGroup,
//! and the timers (session expiry, pending member ids, the join deadline with the initial
//! rebalance delay, the sync deadline). Every state change goes through
//! [`ClassicGroup::transition_to`].
//!
//! Requests that wait (JoinGroup until the rebalance completes, SyncGroup until the leader's
//! assignment arrives) leave a `oneshot::Sender` on their member, answered when the state machine
//! gets there.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::group::ClassicGroup;
use super::member::ClassicGroupMember;
use super::state::{ClassicGroupState, ClassicGroupStateName, InitialDelay, PreparingRebalance};
use super::{
    HeartbeatRequest, JoinRequest, JoinResponse, JoinedMember, LeavingMember, SyncRequest,
    SyncResponse,
};
use crate::group::context::{ms, OpContext};
use crate::group::error::GroupError;

use ClassicGroupStateName as S;

pub(crate) fn send<T>(tx: oneshot::Sender<T>, value: T) {
    // The requester may have gone away (closed connection); nothing to do then.
    let _ = tx.send(value);
}

impl ClassicGroup {
    // ---------------------------------------------------------------- JoinGroup

    /// JoinGroup of a member without a member id.
    pub fn join_new_member(
        &mut self,
        ctx: &OpContext,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
    ) {
        if !self.supports_protocols(&req.protocol_type, &req.protocols, None) {
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
            Some(instance) => match self.static_members.get(&instance).cloned() {
                Some(old_id) => {
                    self.update_static_member(ctx, &instance, &old_id, &new_id, req, tx)
                }
                None => self.add_member_and_rebalance(ctx, &new_id, req, tx),
            },
            None if req.require_known_member_id => {
                self.pending_members
                    .insert(new_id.clone(), ctx.now + ms(req.session_timeout_ms));
                send(
                    tx,
                    JoinResponse::error(&new_id, GroupError::MemberIdRequired),
                );
            }
            None => self.add_member_and_rebalance(ctx, &new_id, req, tx),
        }
    }

    /// JoinGroup of a member with a member id (pending or known).
    pub fn join_known_member(
        &mut self,
        ctx: &OpContext,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
    ) {
        let member_id = req.member_id.clone();
        if self.pending_members.contains_key(&member_id) {
            if !self.supports_protocols(&req.protocol_type, &req.protocols, None) {
                send(
                    tx,
                    JoinResponse::error(&member_id, GroupError::InconsistentGroupProtocol),
                );
                return;
            }
            self.pending_members.remove(&member_id);
            self.add_member_and_rebalance(ctx, &member_id, req, tx);
            return;
        }
        if self.is_static_member_fenced(req.group_instance_id.as_deref(), &member_id) {
            send(
                tx,
                JoinResponse::error(&member_id, GroupError::FencedInstanceId),
            );
            return;
        }
        let Some(member) = self.members.get(&member_id) else {
            send(
                tx,
                JoinResponse::error(&member_id, GroupError::UnknownMemberId),
            );
            return;
        };
        if !self.supports_protocols(&req.protocol_type, &req.protocols, Some(&member_id)) {
            send(
                tx,
                JoinResponse::error(&member_id, GroupError::InconsistentGroupProtocol),
            );
            return;
        }
        let unchanged = member.matches(&req.protocols);
        match self.state_name() {
            S::PreparingRebalance => {
                self.update_member_and_rebalance(ctx, req, tx);
            }
            S::CompletingRebalance if unchanged => {
                // A retry of a join whose response was lost: same generation again.
                self.respond_current_generation(ctx, &member_id, false, tx);
            }
            S::Stable if unchanged && !self.is_leader(&member_id) => {
                self.respond_current_generation(ctx, &member_id, false, tx);
            }
            S::CompletingRebalance | S::Stable => {
                // The leader rejoining (e.g. new topic metadata) or changed metadata: rebalance.
                self.update_member_and_rebalance(ctx, req, tx);
            }
            S::Empty | S::Dead => {
                send(
                    tx,
                    JoinResponse::error(&member_id, GroupError::UnknownMemberId),
                );
            }
        }
    }

    fn respond_current_generation(
        &mut self,
        ctx: &OpContext,
        member_id: &str,
        skip_assignment: bool,
        tx: oneshot::Sender<JoinResponse>,
    ) {
        let is_leader = self.is_leader(member_id);
        let members = if is_leader {
            self.current_member_metadata()
        } else {
            Vec::new()
        };
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = ctx.now;
        }
        send(
            tx,
            JoinResponse {
                error: None,
                generation_id: self.generation_id,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol_name.clone(),
                leader: self.leader_id.clone().unwrap_or_default(),
                skip_assignment,
                member_id: member_id.to_string(),
                members,
            },
        );
    }

    fn add_member_and_rebalance(
        &mut self,
        ctx: &OpContext,
        member_id: &str,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
    ) {
        if self.generation_id == 0 {
            if let ClassicGroupState::PreparingRebalance(PreparingRebalance {
                initial_delay: Some(d),
                ..
            }) = &mut self.state
            {
                d.new_member_added = true;
            }
        }
        self.add_member(ClassicGroupMember {
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
            last_heartbeat: ctx.now,
            is_new: true,
            supports_skip_assignment: req.supports_skip_assignment,
        });
        self.maybe_prepare_rebalance(ctx);
        self.try_complete_join(ctx);
    }

    fn update_member_and_rebalance(
        &mut self,
        ctx: &OpContext,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
    ) {
        if let Some(m) = self.members.get_mut(&req.member_id) {
            m.protocols = req.protocols;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.supports_skip_assignment = req.supports_skip_assignment;
            m.last_heartbeat = ctx.now;
            // A previous join of this member still waiting is superseded (its receiver closes).
            m.join_waiter = Some(tx);
        }
        self.maybe_prepare_rebalance(ctx);
        self.try_complete_join(ctx);
    }

    /// A static member came back with a new process (unknown member id, known instance id).
    fn update_static_member(
        &mut self,
        ctx: &OpContext,
        instance: &str,
        old_id: &str,
        new_id: &str,
        req: JoinRequest,
        tx: oneshot::Sender<JoinResponse>,
    ) {
        self.replace_static_member(
            instance,
            old_id,
            new_id,
            |old| JoinResponse::error(old, GroupError::FencedInstanceId),
            || SyncResponse::error(GroupError::FencedInstanceId),
        );
        if let Some(m) = self.members.get_mut(new_id) {
            m.protocols = req.protocols;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.supports_skip_assignment = req.supports_skip_assignment;
            m.last_heartbeat = ctx.now;
        }
        match self.state_name() {
            S::Stable => {
                if self.select_protocol() == self.protocol_name {
                    // Nothing changes for the group: hand the new id the current generation; it
                    // gets its old assignment from SyncGroup.
                    let skip = self.is_leader(new_id)
                        && self
                            .members
                            .get(new_id)
                            .is_some_and(|m| m.supports_skip_assignment);
                    if self.is_leader(new_id) && !skip {
                        // The leader must not recompute an assignment for this generation.
                        send(
                            tx,
                            JoinResponse {
                                error: None,
                                generation_id: self.generation_id,
                                protocol_type: self.protocol_type.clone(),
                                protocol_name: self.protocol_name.clone(),
                                leader: new_id.to_string(),
                                skip_assignment: false,
                                member_id: new_id.to_string(),
                                members: Vec::new(),
                            },
                        );
                    } else {
                        self.respond_current_generation(ctx, new_id, skip, tx);
                    }
                } else {
                    if let Some(m) = self.members.get_mut(new_id) {
                        m.join_waiter = Some(tx);
                    }
                    self.prepare_rebalance(ctx);
                    self.try_complete_join(ctx);
                }
            }
            S::CompletingRebalance => {
                // The leader may be assigning to the old id: start over.
                if let Some(m) = self.members.get_mut(new_id) {
                    m.join_waiter = Some(tx);
                }
                self.prepare_rebalance(ctx);
                self.try_complete_join(ctx);
            }
            S::PreparingRebalance => {
                if let Some(m) = self.members.get_mut(new_id) {
                    m.join_waiter = Some(tx);
                }
                self.try_complete_join(ctx);
            }
            S::Empty | S::Dead => {
                send(tx, JoinResponse::error(new_id, GroupError::UnknownMemberId));
            }
        }
    }

    fn maybe_prepare_rebalance(&mut self, ctx: &OpContext) {
        if matches!(
            self.state_name(),
            S::Stable | S::CompletingRebalance | S::Empty
        ) {
            self.prepare_rebalance(ctx);
        }
    }

    fn prepare_rebalance(&mut self, ctx: &OpContext) {
        if self.is_in(S::CompletingRebalance) {
            self.reset_and_propagate_assignment_error(GroupError::RebalanceInProgress);
        }
        let rebalance_timeout = self.max_rebalance_timeout_ms();
        let initial = ctx.config.initial_rebalance_delay_ms;
        let next = if self.is_in(S::Empty) && initial > 0 {
            PreparingRebalance {
                join_deadline: ctx.now + ms(initial),
                initial_delay: Some(InitialDelay {
                    delay_ms: initial,
                    remaining_ms: rebalance_timeout.saturating_sub(initial),
                    new_member_added: false,
                }),
            }
        } else {
            PreparingRebalance {
                join_deadline: ctx.now + ms(rebalance_timeout),
                initial_delay: None,
            }
        };
        self.transition_to(ClassicGroupState::PreparingRebalance(next), ctx.wall_ms);
    }

    /// Complete the join phase early when every known member has rejoined (not while the initial
    /// delay of a new group runs).
    pub fn try_complete_join(&mut self, ctx: &OpContext) {
        if let ClassicGroupState::PreparingRebalance(PreparingRebalance {
            initial_delay: None,
            ..
        }) = self.state
        {
            if self.all_members_joined() {
                self.complete_join(ctx);
            }
        }
    }

    /// The join deadline passed: extend the initial delay if members keep arriving, else form the
    /// generation with whoever rejoined.
    fn on_join_deadline(&mut self, ctx: &OpContext) {
        if let ClassicGroupState::PreparingRebalance(p) = &mut self.state {
            if let Some(d) = p.initial_delay {
                if d.new_member_added && d.remaining_ms > 0 {
                    let delay = ctx.config.initial_rebalance_delay_ms.min(d.remaining_ms);
                    p.initial_delay = Some(InitialDelay {
                        delay_ms: delay,
                        remaining_ms: d.remaining_ms.saturating_sub(d.delay_ms),
                        new_member_added: false,
                    });
                    p.join_deadline = ctx.now + ms(delay);
                    return;
                }
            }
        }
        self.complete_join(ctx);
    }

    fn complete_join(&mut self, ctx: &OpContext) {
        // Dynamic members that did not rejoin in time are out; static members keep their place
        // until their session expires.
        let failed: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join() && m.instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in failed {
            self.remove_and_answer(&id);
        }
        if !self.members.is_empty() {
            let leader_joined = self
                .leader_id
                .as_ref()
                .and_then(|l| self.members.get(l))
                .is_some_and(ClassicGroupMember::awaiting_join);
            if !leader_joined {
                let first_joined = self
                    .ordered_members()
                    .find(|m| m.awaiting_join())
                    .map(|m| m.member_id.clone());
                match first_joined {
                    Some(id) => self.leader_id = Some(id),
                    None => {
                        // Only absent static members are left: wait for them or their sessions.
                        let join_deadline = ctx.now + ms(self.max_rebalance_timeout_ms());
                        self.state = ClassicGroupState::PreparingRebalance(PreparingRebalance {
                            join_deadline,
                            initial_delay: None,
                        });
                        return;
                    }
                }
            }
        }
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader_id = None;
            self.transition_to(ClassicGroupState::Empty, ctx.wall_ms);
            self.store_metadata(ctx);
            return;
        }
        self.protocol_name = self.select_protocol();
        let sync_deadline = ctx.now + ms(self.max_rebalance_timeout_ms());
        self.transition_to(
            ClassicGroupState::CompletingRebalance { sync_deadline },
            ctx.wall_ms,
        );
        if let Some(pt) = &self.protocol_type {
            if let Err(e) = ctx.store.set_protocol_type(&self.group_id, pt) {
                tracing::warn!(group = %self.group_id, error = %e, "could not record protocol type");
            }
        }
        let all = self.current_member_metadata();
        let leader = self.leader_id.clone().unwrap_or_default();
        let generation = self.generation_id;
        let protocol_type = self.protocol_type.clone();
        let protocol_name = self.protocol_name.clone();
        for m in self.members.values_mut() {
            let Some(tx) = m.join_waiter.take() else {
                continue;
            };
            m.is_new = false;
            m.last_heartbeat = ctx.now;
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
    fn remove_member_and_update(&mut self, ctx: &OpContext, member_id: &str) {
        self.remove_and_answer(member_id);
        match self.state_name() {
            S::Stable | S::CompletingRebalance => {
                self.prepare_rebalance(ctx);
                self.try_complete_join(ctx);
            }
            S::PreparingRebalance => self.try_complete_join(ctx),
            S::Empty | S::Dead => {}
        }
    }

    // ---------------------------------------------------------------- SyncGroup

    /// SyncGroup: the leader's assignment is handed to every member waiting for it.
    pub fn sync(&mut self, ctx: &OpContext, req: SyncRequest, tx: oneshot::Sender<SyncResponse>) {
        if let Err(e) = self.check_member(
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        ) {
            send(tx, SyncResponse::error(e));
            return;
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| self.protocol_type.as_ref() != Some(t));
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| self.protocol_name.as_ref() != Some(n));
        if type_mismatch || name_mismatch {
            send(
                tx,
                SyncResponse::error(GroupError::InconsistentGroupProtocol),
            );
            return;
        }
        match self.state_name() {
            S::Empty => send(tx, SyncResponse::error(GroupError::UnknownMemberId)),
            S::Dead => send(tx, SyncResponse::error(GroupError::CoordinatorNotAvailable)),
            S::PreparingRebalance => send(tx, SyncResponse::error(GroupError::RebalanceInProgress)),
            S::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(&req.member_id) {
                    m.sync_waiter = Some(tx);
                    m.last_heartbeat = ctx.now;
                }
                if self.is_leader(&req.member_id) {
                    let mut assignments: HashMap<String, Bytes> =
                        req.assignments.into_iter().collect();
                    let protocol_type = self.protocol_type.clone();
                    let protocol_name = self.protocol_name.clone();
                    for m in self.members.values_mut() {
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
                    self.transition_to(ClassicGroupState::Stable, ctx.wall_ms);
                    self.store_metadata(ctx);
                }
            }
            S::Stable => {
                let protocol_type = self.protocol_type.clone();
                let protocol_name = self.protocol_name.clone();
                if let Some(m) = self.members.get_mut(&req.member_id) {
                    m.last_heartbeat = ctx.now;
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
    }

    // ---------------------------------------------------------------- Heartbeat / LeaveGroup

    /// Heartbeat: keeps the member's session alive; REBALANCE_IN_PROGRESS asks it to rejoin.
    pub fn heartbeat(&mut self, ctx: &OpContext, req: &HeartbeatRequest) -> Result<(), GroupError> {
        self.check_member(
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        )?;
        let state = self.state_name();
        match state {
            S::Empty => return Err(GroupError::UnknownMemberId),
            S::Dead => return Err(GroupError::CoordinatorNotAvailable),
            _ => {}
        }
        if let Some(m) = self.members.get_mut(&req.member_id) {
            m.last_heartbeat = ctx.now;
        }
        if state == S::PreparingRebalance {
            Err(GroupError::RebalanceInProgress)
        } else {
            Ok(())
        }
    }

    /// LeaveGroup of one member (by member id, or by instance id for static members).
    pub fn leave(&mut self, ctx: &OpContext, lm: &LeavingMember) -> Result<(), GroupError> {
        if let Some(instance) = &lm.group_instance_id {
            match self.static_members.get(instance).cloned() {
                None => Err(GroupError::UnknownMemberId),
                Some(current) if !lm.member_id.is_empty() && current != lm.member_id => {
                    Err(GroupError::FencedInstanceId)
                }
                Some(current) => {
                    self.remove_member_and_update(ctx, &current);
                    Ok(())
                }
            }
        } else if self.pending_members.remove(&lm.member_id).is_some() {
            self.try_complete_join(ctx);
            Ok(())
        } else if self.members.contains_key(&lm.member_id) {
            self.remove_member_and_update(ctx, &lm.member_id);
            Ok(())
        } else {
            Err(GroupError::UnknownMemberId)
        }
    }

    // ---------------------------------------------------------------- time

    /// Expire member sessions and pending member ids, and act on a passed join or sync deadline.
    pub fn tick(&mut self, ctx: &OpContext) {
        let expired_pending: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, deadline)| **deadline <= ctx.now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired_pending {
            self.pending_members.remove(&id);
            self.try_complete_join(ctx);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.keep_alive(ctx.now))
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.group_id, member = %id, "member session expired");
            self.remove_member_and_update(ctx, &id);
        }
        if let ClassicGroupState::PreparingRebalance(p) = &self.state {
            if p.join_deadline <= ctx.now {
                self.on_join_deadline(ctx);
            }
        }
        if let ClassicGroupState::CompletingRebalance { sync_deadline } = self.state {
            if sync_deadline <= ctx.now {
                // Members (the leader included) that never sent SyncGroup are removed and the
                // group rebalances without them.
                let unsynced: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| m.sync_waiter.is_none())
                    .map(|m| m.member_id.clone())
                    .collect();
                for id in unsynced {
                    tracing::info!(group = %self.group_id, member = %id, "member did not sync in time");
                    self.remove_member_and_update(ctx, &id);
                }
            }
        }
    }

    // ---------------------------------------------------------------- offsets

    /// May this commit be stored (Kafka's `validateOffsetCommit` of a classic group)? Group
    /// members must pass their member id and generation; commits from outside group management
    /// (generation -1, no member id) are accepted only while the group is Empty.
    pub fn validate_offset_commit(
        &mut self,
        ctx: &OpContext,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        let managed = generation_id >= 0 || !member_id.is_empty() || instance_id.is_some();
        if managed {
            self.check_member(member_id, instance_id, generation_id)?;
            if self.is_in(S::CompletingRebalance) {
                return Err(GroupError::RebalanceInProgress);
            }
            if let Some(m) = self.members.get_mut(member_id) {
                m.last_heartbeat = ctx.now;
            }
            Ok(())
        } else if !self.is_in(S::Empty) {
            Err(GroupError::UnknownMemberId)
        } else {
            Ok(())
        }
    }

    // ---------------------------------------------------------------- helpers

    /// Membership checks shared by SyncGroup, Heartbeat and OffsetCommit.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), GroupError> {
        if self.is_in(S::Dead) {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if self.is_static_member_fenced(instance_id, member_id) {
            return Err(GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    /// Record the group's metadata in the store (Kafka's `storeGroup`): a completed generation
    /// or the group becoming empty.
    fn store_metadata(&self, ctx: &OpContext) {
        if let Err(e) = ctx.store.store_group(&self.group_id, &self.metadata()) {
            tracing::warn!(group = %self.group_id, error = %e, "could not record group metadata");
        }
    }

    fn current_member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.ordered_members()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(&protocol).cloned().unwrap_or_default(),
            })
            .collect()
    }

    fn reset_and_propagate_assignment_error(&mut self, error: GroupError) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(tx) = m.sync_waiter.take() {
                send(tx, SyncResponse::error(error.clone()));
            }
        }
    }

    /// Remove a member and answer anything it is waiting for with UNKNOWN_MEMBER_ID.
    fn remove_and_answer(&mut self, member_id: &str) {
        if let Some(mut m) = self.remove_member(member_id) {
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
}
