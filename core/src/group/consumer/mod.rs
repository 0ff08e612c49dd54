//! Consumer groups of the KIP-848 protocol (`group.protocol=consumer`), Kafka's `ConsumerGroup`:
//! the coordinator computes the assignment and members converge to it through
//! ConsumerGroupHeartbeat, advancing their member epochs. This module has the requests and
//! responses; [`group`] the group (epochs, target assignment, reconciliation), [`member`] its
//! members, [`assignor`] the server-side assignors.

pub mod assignor;
pub(crate) mod group;
pub(crate) mod member;

pub use assignor::Assignment;

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
