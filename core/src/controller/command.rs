//! Controller commands: every change to the [metadata image](super::image) is one
//! [`ControllerRequest`] in the Raft log, and every applied request has one [`CommandResult`].
//!
//! A command is a request, not a fact: `apply()` validates it against the image as it stands when
//! the entry is applied (compare-and-set on broker epochs, leader epochs and partition epochs), so
//! two controllers, or a controller and a stale broker, can never both win. A rejected command
//! changes nothing and its [`ControllerError`] says which Kafka error code the caller answers with.
//! Requests carry a request id; a retried request (same id) gets the first outcome back.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::image::Endpoint;
use crate::authorizer::acl::{AclBinding, AclBindingFilter};
use crate::scram::{ScramCredential, ScramMechanism};

/// One entry of the controller's log: a command and the id that deduplicates its retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerRequest {
    /// Chosen by the proposer, unique per logical request; a retry reuses it.
    pub request_id: Uuid,
    /// What to change.
    pub command: Command,
}

impl ControllerRequest {
    /// A request with a fresh random request id.
    pub fn new(command: Command) -> Self {
        Self {
            request_id: Uuid::new_v4(),
            command,
        }
    }
}

/// How a leader is chosen by [`Command::ElectLeader`] (Kafka's `ElectionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    /// Move leadership to the first replica, if it is in the ISR and eligible.
    Preferred,
    /// Elect a leader for a partition that has none, from outside the ISR if no ISR member is
    /// eligible (may lose acknowledged records; an operator's explicit choice).
    Unclean,
}

/// A change to the metadata image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Records the cluster id the voters were formatted with. Applied once; repeating it with the
    /// same id is a no-op, with another id it is rejected.
    Bootstrap {
        /// The id from `rill cluster format --cluster-id`.
        cluster_id: String,
        /// The first SCRAM users (`rill cluster format --add-scram`, Kafka's KIP-900), created
        /// with the cluster; absent from entries written before users lived in the image.
        #[serde(default)]
        scram_credentials: Vec<ScramCredentialEntry>,
    },
    /// A broker (re)joins (Kafka's BrokerRegistration). The same incarnation again returns the
    /// existing registration; a new incarnation gets a new broker epoch (the log index of this
    /// entry), starts fenced, and loses the leadership and ISR membership of the old incarnation.
    RegisterBroker {
        broker_id: i32,
        /// Random per process start (Kafka's incarnation id).
        incarnation_id: Uuid,
        /// Must equal the image's cluster id.
        cluster_id: String,
        listeners: Vec<Endpoint>,
        rack: Option<String>,
    },
    /// The active controller saw the broker caught up and heartbeating: it becomes eligible for
    /// leadership and the ISR, and leaderless partitions it can lead get it as leader.
    UnfenceBroker { broker_id: i32, broker_epoch: i64 },
    /// The active controller's session timer for the broker expired: it is fenced, partitions it
    /// led get a new leader from the ISR, and it leaves every ISR (except as the last member).
    FenceBroker { broker_id: i32, broker_epoch: i64 },
    /// The broker asked to shut down (BrokerHeartbeat `wantShutDown`): leadership moves away and it
    /// leaves every ISR, as for fencing, but it stays registered and unfenced until it stops.
    ControlledShutdown { broker_id: i32, broker_epoch: i64 },
    /// Creates a topic with an explicit replica assignment (from
    /// [`placement`](super::placement) or the request), one list of broker ids per partition.
    CreateTopic {
        name: String,
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
        assignments: Vec<Vec<i32>>,
    },
    /// Adds partitions to a topic, numbered after the existing ones.
    CreatePartitions {
        topic: String,
        assignments: Vec<Vec<i32>>,
    },
    /// Removes a topic and its partitions.
    DeleteTopic { topic_id: Uuid },
    /// Sets and removes topic config overrides (values already validated by the caller).
    AlterTopicConfigs {
        topic: String,
        set: BTreeMap<String, String>,
        delete: BTreeSet<String>,
    },
    /// A partition leader changes the ISR (Kafka's AlterPartition), as a compare-and-set on the
    /// broker epoch, the leader epoch and the partition epoch it last saw.
    AlterPartition {
        broker_id: i32,
        broker_epoch: i64,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    },
    /// Elects a leader on request (Kafka's ElectLeaders).
    ElectLeader {
        topic: String,
        partition: i32,
        election: ElectionType,
    },
    /// Creates, replaces and deletes the SCRAM credentials of one user (Kafka's
    /// AlterUserScramCredentials, `UserScramCredentialRecord`): every operation applies, or none
    /// (deleting a credential that does not exist rejects them all).
    AlterScramCredentials {
        user: String,
        upsertions: Vec<(ScramMechanism, ScramCredential)>,
        deletions: Vec<ScramMechanism>,
    },
    /// Adds and removes ACL bindings (Kafka's `AccessControlEntryRecord` /
    /// `RemoveAccessControlEntryRecord`, written by CreateAcls and DeleteAcls at any member).
    /// Every binding added and every filter must be valid, else nothing changes; adding a
    /// binding that exists and removing one that does not are no-ops. `remove_matching`
    /// (DeleteAcls' filters) is matched against the image when the command applies, not
    /// against a member's possibly older copy; the outcome lists what each filter removed.
    AlterAcls {
        add: Vec<AclBinding>,
        remove: Vec<AclBinding>,
        #[serde(default)]
        remove_matching: Vec<AclBindingFilter>,
    },
    /// A broker asks for the next block of producer ids (Kafka's AllocateProducerIds, KIP-730):
    /// [`PRODUCER_ID_BLOCK_SIZE`] ids starting at the cluster's next unallocated id, or at
    /// `floor` if that is higher (the ids a node handed out on its own before it was a cluster
    /// member stay unused). Only the registered broker under its current epoch gets a block.
    AllocateProducerIds {
        broker_id: i32,
        broker_epoch: i64,
        /// The lowest id the block may start at.
        floor: i64,
    },
}

/// One SCRAM credential of one user, as [`Command::Bootstrap`] carries the first users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentialEntry {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub credential: ScramCredential,
}

/// How many producer ids one [`Command::AllocateProducerIds`] hands out (Kafka's
/// `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// Producer ids `first..first + size`, allocated to one broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    /// The broker the block belongs to.
    pub broker_id: i32,
    /// The first id of the block.
    pub first: i64,
    /// How many ids it holds.
    pub size: i64,
}

impl ProducerIdBlock {
    /// One past the last id of the block.
    pub fn end(&self) -> i64 {
        self.first + self.size
    }
}

/// The state of one partition after a command changed (or confirmed) it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub topic_id: Uuid,
    pub partition: i32,
    /// Broker id of the leader, or [`NO_LEADER`](super::image::NO_LEADER).
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// What an accepted command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutcome {
    /// The cluster id is recorded.
    Bootstrapped,
    /// The broker is registered under this epoch (the one every later request must carry).
    BrokerRegistered { broker_epoch: i64 },
    /// A fence, unfence or controlled shutdown was applied; `partitions_changed` partitions got a
    /// new leader or ISR as a result.
    BrokerStateChanged { partitions_changed: usize },
    /// The topic exists now.
    TopicCreated { topic_id: Uuid },
    /// Partitions `first..first + count` were added.
    PartitionsCreated { first: i32, count: i32 },
    /// The topic is gone.
    TopicDeleted,
    /// The topic's config overrides were changed.
    ConfigsAltered,
    /// The partition as it is now (AlterPartition, ElectLeader).
    Partition(PartitionState),
    /// A block of producer ids for the requesting broker.
    ProducerIdsAllocated(ProducerIdBlock),
    /// The user's SCRAM credentials were changed.
    ScramCredentialsAltered,
    /// The ACLs were changed; per filter of `remove_matching`, the bindings it removed.
    AclsAltered { removed: Vec<Vec<AclBinding>> },
}

/// A rejected command, named after the Kafka error code the caller answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ControllerError {
    /// STALE_BROKER_EPOCH (KIP-903): the broker is not registered, or under another epoch.
    #[error("broker {broker_id}: broker epoch {got} is stale (current: {current:?})")]
    StaleBrokerEpoch {
        broker_id: i32,
        got: i64,
        current: Option<i64>,
    },
    /// INCONSISTENT_CLUSTER_ID: the request is meant for another cluster.
    #[error("cluster id {got:?} does not match this cluster's ({expected:?})")]
    InconsistentClusterId {
        expected: Option<String>,
        got: String,
    },
    /// FENCED_LEADER_EPOCH: the leader epoch in the request is not the current one.
    #[error("leader epoch {got} is not the current leader epoch {current}")]
    FencedLeaderEpoch { current: i32, got: i32 },
    /// INVALID_UPDATE_VERSION: the partition changed since the requester last saw it.
    #[error("partition epoch {got} is not the current partition epoch {current}")]
    InvalidUpdateVersion { current: i32, got: i32 },
    /// NOT_LEADER_OR_FOLLOWER: the requester does not lead the partition.
    #[error("broker {broker_id} is not the leader (leader: {leader})")]
    NotLeaderOrFollower { broker_id: i32, leader: i32 },
    /// INELIGIBLE_REPLICA: a proposed ISR member is fenced, shutting down or not registered.
    #[error("broker {broker_id} is not eligible for the ISR")]
    IneligibleReplica { broker_id: i32 },
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("unknown topic or partition {topic}-{partition}")]
    UnknownTopicOrPartition { topic: String, partition: i32 },
    /// UNKNOWN_TOPIC_ID.
    #[error("unknown topic id {0}")]
    UnknownTopicId(Uuid),
    /// TOPIC_ALREADY_EXISTS.
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    /// INVALID_REPLICA_ASSIGNMENT.
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    /// INVALID_PARTITIONS.
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    /// ELECTION_NOT_NEEDED: the requested leader already leads (or the partition has a leader).
    #[error("election not needed")]
    ElectionNotNeeded,
    /// PREFERRED_LEADER_NOT_AVAILABLE: the first replica is not in the ISR or not eligible.
    #[error("preferred leader {0} is not available")]
    PreferredLeaderNotAvailable(i32),
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE: no replica can lead.
    #[error("no eligible leader is available")]
    EligibleLeadersNotAvailable,
    /// RESOURCE_NOT_FOUND: a deleted SCRAM credential does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// UNACCEPTABLE_CREDENTIAL: a SCRAM user name or credential Kafka would refuse.
    #[error("{0}")]
    UnacceptableCredential(String),
    /// INVALID_REQUEST: malformed beyond the cases above (e.g. an ISR without its leader).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// The outcome of one applied request.
pub type CommandResult = Result<CommandOutcome, ControllerError>;

/// The state machine's answer for one log entry (openraft's `R`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerResponse {
    /// A blank or membership entry: no command was applied.
    NoCommand,
    /// The result of the entry's command (the first one, for a retried request id).
    Applied(CommandResult),
}
