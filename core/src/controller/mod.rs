//! The cluster controller (issue 11): the replicated metadata log of a Rill cluster, KRaft-like
//! (KIP-500/595/631). `rill serve` runs it in cluster mode (`rill_gateway::cluster`).
//!
//! - [`command`]: what may change ([`ControllerRequest`] = request id + [`Command`]) and the
//!   typed outcomes and errors,
//! - [`image`]: the metadata image the commands change (brokers, topics, partitions, epochs),
//!   with [`election`] (leader election, ISR changes) and [`placement`] (Kafka's rack-aware
//!   round-robin replica assignment),
//! - [`log_store`] and [`state_machine`] (feature `raft`): openraft's (`storage-v2`) log store in redb, durable
//!   before acknowledging, and the state machine applying commands to the image, with CBOR
//!   snapshots; the Raft types below: [`ControllerTypes`] and [`VoterNode`],
//! - [`meta_properties`]: the `meta.properties` file `rill cluster format` writes,
//! - [`bootstrap_metadata`]: the first SCRAM users `rill cluster format --add-scram` writes,
//! - [`local_replica_changes`]: what an image change means for one broker's own replicas.
//!
//! This module imports no other core module except `sync`, `clock`, `topic_config`, `scram` and
//! `credentials` (user names): it is a
//! low layer that the replica manager and the gateway build on.

pub mod command;
mod election;
pub mod image;
pub mod local_replica_changes;
pub mod placement;

pub use command::{
    Command, CommandOutcome, CommandResult, ControllerError, ControllerRequest, ControllerResponse,
    ElectionType, PartitionState, ProducerIdBlock, ScramCredentialEntry, PRODUCER_ID_BLOCK_SIZE,
};
pub use image::{BrokerRegistration, Endpoint, MetadataImage, PartitionRegistration, TopicImage};

pub mod bootstrap_metadata;
#[cfg(feature = "raft")]
pub mod log_store;
pub mod meta_properties;
#[cfg(feature = "raft")]
pub mod state_machine;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What the Raft membership knows of a voter or learner: a voter is a (node id, directory id)
/// pair, so a wiped and re-formatted node (new directory id) is not the voter it replaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterNode {
    /// `host:port` of the node's cluster listener.
    pub cluster_address: String,
    /// The random id `rill cluster format` wrote into the node's data directory.
    pub directory_id: Uuid,
}

#[cfg(feature = "raft")]
openraft::declare_raft_types!(
    /// openraft's type configuration of the controller: log entries carry a
    /// [`ControllerRequest`], applying one yields a [`ControllerResponse`], node ids are Kafka
    /// node ids (non-negative, as `u64`), snapshots are CBOR bytes.
    pub ControllerTypes:
        D = ControllerRequest,
        R = ControllerResponse,
        NodeId = u64,
        Node = VoterNode,
        Entry = openraft::Entry<ControllerTypes>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry of the controller.
#[cfg(feature = "raft")]
pub type ControllerEntry = openraft::Entry<ControllerTypes>;
/// A log id (term, leader, index) of the controller's log.
#[cfg(feature = "raft")]
pub type ControllerLogId = openraft::LogId<u64>;
/// The storage error type openraft expects from the stores.
#[cfg(feature = "raft")]
pub type ControllerStorageError = openraft::StorageError<u64>;
