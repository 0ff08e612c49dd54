//! Classic groups: the classic rebalance protocol (JoinGroup v0-9 with the v4+ MEMBER_ID_REQUIRED
//! two-step join and static membership, SyncGroup, Heartbeat, LeaveGroup, session and rebalance
//! timeouts), as Kafka's `ClassicGroup`. This module has the version-independent requests and
//! responses; [`group`] the group's data, [`member`] its members, [`state`] the state enum and its
//! checked transitions, [`rebalance`] the protocol that moves a group between states.

pub(crate) mod group;
pub(crate) mod member;
pub(crate) mod rebalance;
pub mod state;

use bytes::Bytes;

use super::error::GroupError;

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
    pub(crate) fn error(member_id: &str, error: GroupError) -> JoinResponse {
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
    /// A response carrying only `error`.
    pub fn error(error: GroupError) -> SyncResponse {
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
