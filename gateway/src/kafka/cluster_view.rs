//! What a Kafka request handler may know of the cluster this node belongs to (issue 11): the
//! newest metadata image this node has applied, the quorum as it sees it, and a way to submit a
//! controller command (forwarded to the active controller when that is another node, as Kafka's
//! KIP-590 forwards admin requests).
//!
//! The Kafka layer depends only on this trait; the gateway's `cluster` module (the cluster
//! listener, the openraft controller, broker registration) implements it. A node alone has no
//! cluster view (`Context::cluster` is `None`) and answers from its own storage as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rill_core::controller::{
    BrokerRegistration, Command, CommandOutcome, ControllerError, Endpoint, MetadataImage,
};
use uuid::Uuid;

/// Listener name of the client (Kafka) endpoint in broker registrations: what Metadata and
/// DescribeCluster advertise.
pub const KAFKA_LISTENER: &str = "KAFKA";
/// Listener name of the cluster listener in broker registrations (inter-node traffic: replica
/// fetches go there).
pub const CLUSTER_LISTENER: &str = "CLUSTER";

/// The endpoint of a broker that Kafka clients connect to (its [`KAFKA_LISTENER`] listener), if
/// it registered one.
pub fn kafka_endpoint(broker: &BrokerRegistration) -> Option<&Endpoint> {
    listener_endpoint(broker, KAFKA_LISTENER)
}

/// The endpoint a broker registered for the listener `name` (`KAFKA`, or the name of an extra
/// Kafka listener, `[[listeners.kafka_extra]]`): what a client that came in on that listener
/// is told (Kafka answers each listener with its own endpoints).
pub fn listener_endpoint<'a>(broker: &'a BrokerRegistration, name: &str) -> Option<&'a Endpoint> {
    broker.listeners.iter().find(|l| l.name == name)
}

/// A boxed future, so the trait stays object-safe.
pub type SubmitFuture = Pin<Box<dyn Future<Output = Result<CommandOutcome, SubmitError>> + Send>>;

/// Why a submitted command has no outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// The controller applied the command and rejected it (the caller answers with the Kafka code
    /// the error names).
    #[error(transparent)]
    Rejected(#[from] ControllerError),
    /// No active controller is known right now, or it could not be reached (callers answer
    /// NOT_CONTROLLER-free codes: REQUEST_TIMED_OUT for writes, and clients retry).
    #[error("no active controller is reachable: {0}")]
    ControllerUnavailable(String),
    /// The command was sent but no outcome arrived in time: it may or may not be applied.
    #[error("no outcome from the controller within {0:?}")]
    Timeout(Duration),
}

/// One member of the controller quorum as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumMember {
    /// Node id.
    pub node_id: i32,
    /// The directory id the member was formatted with.
    pub directory_id: Uuid,
    /// The member's log end offset as the leader last saw it (`-1` if unknown).
    pub log_end_offset: i64,
    /// Milliseconds since the leader last heard from it (`None` if unknown).
    pub last_fetch_ago_ms: Option<u64>,
    /// Milliseconds since it was last caught up with the leader (`None` if unknown).
    pub last_caught_up_ago_ms: Option<u64>,
}

/// The controller quorum as this node sees it (Kafka's DescribeQuorum).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuorumInfo {
    /// The active controller, if one is known.
    pub leader_id: Option<i32>,
    /// The leader's term (Kafka: leader epoch of the metadata log).
    pub leader_epoch: i32,
    /// The committed index of the metadata log (Kafka: high watermark).
    pub high_watermark: i64,
    /// Voters.
    pub voters: Vec<QuorumMember>,
    /// Learners (Kafka: observers).
    pub observers: Vec<QuorumMember>,
}

/// The cluster as a request handler sees it.
pub trait ClusterView: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> i32;
    /// The newest metadata image this node has applied (cheap: an `Arc` clone).
    fn image(&self) -> Arc<MetadataImage>;
    /// Submit a command to the active controller; resolves once it is committed and applied, with
    /// its outcome.
    fn submit(&self, command: Command) -> SubmitFuture;
    /// The controller quorum as this node sees it.
    fn quorum(&self) -> QuorumInfo;
    /// The replication factor for topics created without one (CreateTopics with `-1`,
    /// auto-created topics): `[cluster] default_replication_factor`.
    fn default_replication_factor(&self) -> i16;
}
