//! The state of one classic consumer group, modeled on Kafka's `GroupMetadata`/`MemberMetadata`:
//! its state machine position, generation, protocol, leader, members (dynamic and static) and the
//! members that were handed a member id but have not rejoined yet (the v4+ two-step join).
//!
//! This module is pure data plus the small invariants that belong to the group itself (leader
//! re-election, protocol selection, static member replacement). The rules that move a group from one
//! state to another live in [`crate::group_coordinator`]. It also decodes the embedded
//! "consumer" protocol (subscriptions and assignments) that clients put into the opaque bytes, for
//! OffsetDelete, offset expiry and the lag view.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::group_coordinator::{JoinResponse, SyncResponse};

/// The protocol type that Kafka consumers use; its metadata and assignments have a known layout.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Where a group is in the rebalance protocol (Kafka's names, shown by ListGroups/DescribeGroups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members; the group may still hold committed offsets.
    Empty,
    /// Waiting for members to (re)join before a new generation is formed.
    PreparingRebalance,
    /// The generation is formed; waiting for the leader's assignment in SyncGroup.
    CompletingRebalance,
    /// Every member has its assignment; heartbeats keep it alive.
    Stable,
    /// The group was deleted or has no members and no offsets left.
    Dead,
}

impl GroupState {
    /// Kafka's spelling of the state.
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Parse Kafka's spelling (case-insensitive, as ListGroups' states filter is).
    pub fn parse(s: &str) -> Option<GroupState> {
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ]
        .into_iter()
        .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member of a classic group.
#[derive(Debug)]
pub(crate) struct Member {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: u64,
    pub session_timeout_ms: u64,
    pub protocol_type: String,
    /// Supported protocols in preference order, each with its opaque metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// The assignment of the current generation (opaque bytes from the leader).
    pub assignment: Bytes,
    /// Pending JoinGroup response, while the member waits for the rebalance to complete.
    pub join_waiter: Option<oneshot::Sender<JoinResponse>>,
    /// Pending SyncGroup response, while the member waits for the leader's assignment.
    pub sync_waiter: Option<oneshot::Sender<SyncResponse>>,
    /// Time of the last heartbeat (or join/sync), for session expiry.
    pub last_heartbeat_ms: u64,
    /// Joined but not yet part of a completed generation.
    pub is_new: bool,
    /// The member's JoinGroup version supports `skip_assignment` (v9+).
    pub supports_skip_assignment: bool,
}

impl Member {
    pub fn awaiting_join(&self) -> bool {
        self.join_waiter.is_some()
    }

    /// The metadata this member sent for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m)
    }

    /// Same protocols and metadata as before (a rejoin that changes nothing).
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// This member's first choice among `candidates`.
    fn vote<'a>(&'a self, candidates: &BTreeSet<&str>) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| candidates.contains(name))
    }
}

/// A classic group (Kafka's `GroupMetadata`).
#[derive(Debug)]
pub(crate) struct Group {
    pub group_id: String,
    pub state: GroupState,
    /// When the group entered its current state, if that happened in this process.
    pub state_since_ms: Option<u64>,
    pub generation_id: i32,
    /// Protocol type of the members ("consumer", "connect", ...); kept after members leave.
    pub protocol_type: Option<String>,
    /// The protocol chosen for the current generation.
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    /// Members by id; `join_order` keeps the order in which they joined.
    pub members: HashMap<String, Member>,
    pub join_order: Vec<String>,
    /// `group.instance.id` to member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time they expire unless the member
    /// rejoins.
    pub pending_members: HashMap<String, u64>,
    /// When PreparingRebalance gives up waiting for members that did not rejoin.
    pub join_deadline_ms: Option<u64>,
    /// For a group that was empty: the `group.initial.rebalance.delay.ms` window is running and
    /// this much rebalance timeout remains for extensions.
    pub initial_delay: Option<InitialDelay>,
    /// A member joined during the initial delay (extends it once more).
    pub new_member_added: bool,
    /// In CompletingRebalance: when members that have not sent SyncGroup are removed (Kafka's
    /// pending-sync timeout, the rebalance timeout).
    pub sync_deadline_ms: Option<u64>,
}

/// The running `group.initial.rebalance.delay.ms` window of a group formed from empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InitialDelay {
    pub delay_ms: u64,
    pub remaining_ms: u64,
}

impl Group {
    pub fn new(group_id: &str, now_ms: Option<u64>) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            state_since_ms: now_ms,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: HashMap::new(),
            join_order: Vec::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            join_deadline_ms: None,
            initial_delay: None,
            new_member_added: false,
            sync_deadline_ms: None,
        }
    }

    pub fn transition(&mut self, state: GroupState, now_ms: u64) {
        self.state = state;
        self.state_since_ms = Some(now_ms);
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// Members in join order.
    pub fn ordered_members(&self) -> impl Iterator<Item = &Member> {
        self.join_order.iter().filter_map(|id| self.members.get(id))
    }

    pub fn add_member(&mut self, member: Member) {
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
    pub fn remove_member(&mut self, member_id: &str) -> Option<Member> {
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
        self.pending_members.is_empty() && self.members.values().all(Member::awaiting_join)
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
        let others: Vec<&Member> = self
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

/// Decode the topics of a consumer-protocol subscription (the JoinGroup protocol metadata of
/// Kafka consumers: an i16 version followed by `ConsumerProtocolSubscription`, whose first field is
/// the topic list in every version).
///
/// Parsed by hand with bounds checks because the bytes come from clients and kafka-protocol's
/// decoder preallocates from the length prefixes it reads (garbage can make it allocate gigabytes).
pub fn decode_subscription(metadata: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(metadata);
    if r.i16()? < 0 {
        return None;
    }
    let n = r.count(2)?;
    let mut topics = Vec::with_capacity(n);
    for _ in 0..n {
        topics.push(r.string()?);
    }
    Some(topics)
}

/// Decode a consumer-protocol assignment (SyncGroup bytes of Kafka consumers: an i16 version
/// followed by `ConsumerProtocolAssignment`, whose first field is the partition list in every
/// version) into topic to partitions. Empty bytes are an empty assignment.
pub fn decode_assignment(assignment: &[u8]) -> Option<BTreeMap<String, Vec<i32>>> {
    if assignment.is_empty() {
        return Some(BTreeMap::new());
    }
    let mut r = Reader(assignment);
    if r.i16()? < 0 {
        return None;
    }
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for _ in 0..r.count(6)? {
        let topic = r.string()?;
        let n = r.count(4)?;
        let parts = out.entry(topic).or_default();
        for _ in 0..n {
            parts.push(r.i32()?);
        }
    }
    Some(out)
}

/// A bounds-checked big-endian reader over untrusted bytes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// An array count whose elements take at least `min_size` bytes each (so it cannot exceed
    /// what is left).
    fn count(&mut self, min_size: usize) -> Option<usize> {
        let n = usize::try_from(self.i32()?).ok()?;
        (n.saturating_mul(min_size) <= self.0.len()).then_some(n)
    }
    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{
        ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
    };
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn member(id: &str, protocols: &[&str]) -> Member {
        Member {
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
            last_heartbeat_ms: 0,
            is_new: true,
            supports_skip_assignment: false,
        }
    }

    #[test]
    fn protocol_selection_prefers_majority_among_common() {
        let mut g = Group::new("g", Some(0));
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
        let mut g = Group::new("g", Some(0));
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

    #[test]
    fn consumer_protocol_round_trip() {
        let sub = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t1")]);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&1i16.to_be_bytes());
        sub.encode(&mut buf, 1).unwrap();
        assert_eq!(decode_subscription(&buf), Some(vec!["t1".to_string()]));

        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            kafka_protocol::messages::consumer_protocol_assignment::TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("t1")))
                .with_partitions(vec![0, 2]),
        ]);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&0i16.to_be_bytes());
        a.encode(&mut buf, 0).unwrap();
        let decoded = decode_assignment(&buf).unwrap();
        assert_eq!(decoded.get("t1"), Some(&vec![0, 2]));
        assert_eq!(decode_assignment(&[]), Some(BTreeMap::new()));
        assert_eq!(decode_assignment(&[0]), None);
        // Garbage with huge counts is rejected without allocating.
        assert_eq!(decode_subscription(b"\x00\x01\x7f\xff\xff\xffxx"), None);
        assert_eq!(decode_assignment(b"meta-range-x"), None);
        // Newer versions add fields after the first one; they are ignored.
        let mut v3 = BytesMut::new();
        v3.extend_from_slice(&3i16.to_be_bytes());
        sub.encode(&mut v3, 3).unwrap();
        assert_eq!(decode_subscription(&v3), Some(vec!["t1".to_string()]));
    }
}
