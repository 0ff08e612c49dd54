//! The data of one classic group (Kafka's `ClassicGroup`): its state, generation, protocol,
//! leader, members (dynamic and static) and the members that were handed a member id but have not
//! rejoined yet (the v4+ two-step join), with the invariants that belong to the group itself
//! (checked state transitions, leader re-election, protocol selection, static member
//! replacement). The rebalance protocol that moves a group between states is in
//! [`super::rebalance`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use bytes::Bytes;

use super::member::ClassicGroupMember;
use super::state::{ClassicGroupState, ClassicGroupStateName};
use super::{JoinResponse, SyncResponse};
use crate::group::consumer_protocol::{decode_subscription, CONSUMER_PROTOCOL_TYPE};
use crate::group::coordinator_record::{GroupMetadata, MemberMetadata};

/// A classic group (Kafka's `ClassicGroup`).
#[derive(Debug)]
pub(crate) struct ClassicGroup {
    pub group_id: String,
    /// Change it with [`ClassicGroup::transition_to`] (the data of the current state may be
    /// updated in place).
    pub state: ClassicGroupState,
    /// When the group entered its current state (wall-clock ms), if that happened in this
    /// process.
    pub state_since_ms: Option<i64>,
    pub generation_id: i32,
    /// Protocol type of the members ("consumer", "connect", ...); kept after members leave.
    pub protocol_type: Option<String>,
    /// The protocol chosen for the current generation.
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    /// Members by id; `join_order` keeps the order in which they joined.
    pub members: HashMap<String, ClassicGroupMember>,
    pub join_order: Vec<String>,
    /// `group.instance.id` to member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time they expire unless the member
    /// rejoins.
    pub pending_members: HashMap<String, Instant>,
}

impl ClassicGroup {
    /// An Empty group; `wall_ms` is when it became so, if known.
    pub fn new(group_id: &str, wall_ms: Option<i64>) -> ClassicGroup {
        ClassicGroup {
            group_id: group_id.to_string(),
            state: ClassicGroupState::Empty,
            state_since_ms: wall_ms,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: HashMap::new(),
            join_order: Vec::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
        }
    }

    /// The group as its metadata record stores it (Kafka's `GroupMetadataValue`): the
    /// generation, protocol, leader and, while Stable, every member with its subscription and
    /// assignment.
    pub fn metadata(&self) -> GroupMetadata {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupMetadata {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: self.protocol_name.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp_ms: self.state_since_ms.unwrap_or(-1),
            members: self
                .ordered_members()
                .map(|m| MemberMetadata {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: i32::try_from(m.rebalance_timeout_ms).unwrap_or(i32::MAX),
                    session_timeout_ms: i32::try_from(m.session_timeout_ms).unwrap_or(i32::MAX),
                    subscription: m.metadata(&protocol).cloned().unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// A group loaded from its metadata record (a new coordinator taking over): Stable with the
    /// recorded members, whose sessions start at `now` (as Kafka reschedules their heartbeats on
    /// load), or Empty at the recorded generation when it had none.
    pub fn from_metadata(group_id: &str, m: &GroupMetadata, now: Instant) -> ClassicGroup {
        let mut g = ClassicGroup::new(
            group_id,
            (m.current_state_timestamp_ms >= 0).then_some(m.current_state_timestamp_ms),
        );
        g.generation_id = m.generation;
        g.protocol_type = (!m.protocol_type.is_empty()).then(|| m.protocol_type.clone());
        if m.members.is_empty() {
            return g;
        }
        let protocol = m.protocol.clone().unwrap_or_default();
        for r in &m.members {
            let member = ClassicGroupMember {
                member_id: r.member_id.clone(),
                instance_id: r.group_instance_id.clone(),
                client_id: r.client_id.clone(),
                client_host: r.client_host.clone(),
                rebalance_timeout_ms: u64::try_from(r.rebalance_timeout_ms).unwrap_or(0),
                session_timeout_ms: u64::try_from(r.session_timeout_ms).unwrap_or(0),
                protocol_type: m.protocol_type.clone(),
                protocols: vec![(protocol.clone(), r.subscription.clone())],
                assignment: r.assignment.clone(),
                join_waiter: None,
                sync_waiter: None,
                last_heartbeat: now,
                is_new: false,
                supports_skip_assignment: false,
            };
            g.add_member(member);
        }
        g.protocol_name = m.protocol.clone();
        g.leader_id = m.leader.clone().or(g.leader_id);
        g.state = ClassicGroupState::Stable;
        g
    }

    /// Kafka's name of the current state.
    pub fn state_name(&self) -> ClassicGroupStateName {
        self.state.name()
    }

    /// Is the group in state `name`?
    pub fn is_in(&self, name: ClassicGroupStateName) -> bool {
        self.state.name() == name
    }

    /// Move to `next` if the current state is one of its valid previous states (Kafka's
    /// `assertValidTransition`). An invalid transition is a bug: it fails debug builds and is
    /// refused (logged) in release builds.
    pub fn transition_to(&mut self, next: ClassicGroupState, wall_ms: i64) {
        let (from, to) = (self.state.name(), next.name());
        let valid = to.valid_previous_states().contains(&from);
        debug_assert!(
            valid,
            "group {}: invalid transition {from} -> {to}",
            self.group_id
        );
        if !valid {
            tracing::error!(group = %self.group_id, %from, %to, "invalid group state transition refused");
            return;
        }
        self.state = next;
        self.state_since_ms = Some(wall_ms);
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// Members in join order.
    pub fn ordered_members(&self) -> impl Iterator<Item = &ClassicGroupMember> {
        self.join_order.iter().filter_map(|id| self.members.get(id))
    }

    pub fn add_member(&mut self, member: ClassicGroupMember) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        self.join_order.push(member.member_id.clone());
        self.members.insert(member.member_id.clone(), member);
    }

    /// Remove a member; a removed leader is replaced by the earliest remaining member.
    pub fn remove_member(&mut self, member_id: &str) -> Option<ClassicGroupMember> {
        let member = self.members.remove(member_id)?;
        self.join_order.retain(|id| id != member_id);
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.join_order.first().cloned();
        }
        Some(member)
    }

    /// A static member whose instance id maps to a different member id is a zombie.
    pub fn is_static_member_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        match instance_id.and_then(|i| self.static_members.get(i)) {
            Some(current) => current != member_id,
            None => false,
        }
    }

    /// Move a static member to a new member id (a restarted static member). The old id's pending
    /// responses are answered with `fenced`.
    pub fn replace_static_member(
        &mut self,
        instance_id: &str,
        old_id: &str,
        new_id: &str,
        fence_join: impl FnOnce(&str) -> JoinResponse,
        fence_sync: impl FnOnce() -> SyncResponse,
    ) -> bool {
        let Some(mut member) = self.members.remove(old_id) else {
            return false;
        };
        if let Some(tx) = member.join_waiter.take() {
            let _ = tx.send(fence_join(old_id));
        }
        if let Some(tx) = member.sync_waiter.take() {
            let _ = tx.send(fence_sync());
        }
        member.member_id = new_id.to_string();
        for id in self.join_order.iter_mut() {
            if id == old_id {
                *id = new_id.to_string();
            }
        }
        if self.is_leader(old_id) {
            self.leader_id = Some(new_id.to_string());
        }
        self.static_members
            .insert(instance_id.to_string(), new_id.to_string());
        self.members.insert(new_id.to_string(), member);
        true
    }

    /// Every known member has rejoined and no handed-out member id is outstanding.
    pub fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty()
            && self.members.values().all(ClassicGroupMember::awaiting_join)
    }

    /// The longest rebalance timeout among members (how long PreparingRebalance waits).
    pub fn max_rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// Would a member with these protocols be compatible with the group? `exclude` is the joining
    /// member itself when it is already known.
    pub fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
        exclude: Option<&str>,
    ) -> bool {
        let others: Vec<&ClassicGroupMember> = self
            .members
            .values()
            .filter(|m| Some(m.member_id.as_str()) != exclude)
            .collect();
        if others.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(p, _)| p == name))
        })
    }

    /// Choose the protocol for the next generation: among the protocols every member supports,
    /// the one most members prefer (ties go to the earliest member's preference).
    pub fn select_protocol(&self) -> Option<String> {
        let mut members = self.ordered_members();
        let first = members.next()?;
        let mut candidates: BTreeSet<&str> =
            first.protocols.iter().map(|(n, _)| n.as_str()).collect();
        for m in self.ordered_members().skip(1) {
            let theirs: BTreeSet<&str> = m.protocols.iter().map(|(n, _)| n.as_str()).collect();
            candidates = candidates.intersection(&theirs).copied().collect();
        }
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        let mut first_seen: Vec<&str> = Vec::new();
        for m in self.ordered_members() {
            if let Some(p) = m.vote(&candidates) {
                *votes.entry(p).or_default() += 1;
                if !first_seen.contains(&p) {
                    first_seen.push(p);
                }
            }
        }
        let best = votes.values().copied().max()?;
        first_seen
            .into_iter()
            .find(|p| votes.get(p) == Some(&best))
            .map(str::to_string)
    }

    /// Topics the members subscribe to, when the group uses the consumer protocol and every
    /// member's subscription can be decoded; `None` means "unknown" (treat every topic as used).
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            let sub = decode_subscription(m.metadata(protocol)?)?;
            topics.extend(sub);
        }
        Some(topics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn member(id: &str, protocols: &[&str]) -> ClassicGroupMember {
        ClassicGroupMember {
            member_id: id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 1000,
            session_timeout_ms: 1000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::new()))
                .collect(),
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            last_heartbeat: ManualClock::new().now(),
            is_new: true,
            supports_skip_assignment: false,
        }
    }

    #[test]
    fn protocol_selection_prefers_majority_among_common() {
        let mut g = ClassicGroup::new("g", Some(0));
        g.add_member(member("a", &["range", "roundrobin"]));
        g.add_member(member("b", &["roundrobin", "range", "sticky"]));
        g.add_member(member("c", &["roundrobin", "range"]));
        assert_eq!(g.select_protocol().as_deref(), Some("roundrobin"));
        assert!(g.supports_protocols("consumer", &[("range".into(), Bytes::new())], None));
        assert!(!g.supports_protocols("consumer", &[("sticky".into(), Bytes::new())], None));
        assert!(!g.supports_protocols("connect", &[("range".into(), Bytes::new())], None));
    }

    #[test]
    fn leader_moves_to_earliest_remaining_member() {
        let mut g = ClassicGroup::new("g", Some(0));
        g.add_member(member("a", &["range"]));
        g.add_member(member("b", &["range"]));
        g.add_member(member("c", &["range"]));
        assert!(g.is_leader("a"));
        g.remove_member("a");
        assert!(g.is_leader("b"));
        g.remove_member("c");
        assert!(g.is_leader("b"));
        g.remove_member("b");
        assert_eq!(g.leader_id, None);
    }
}
