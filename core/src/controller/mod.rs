//! The cluster controller (issue 11): the replicated metadata log of a Rill cluster, KRaft-like
//! (KIP-500/595/631). Not yet wired into the node.
//!
//! - [`command`]: what may change ([`ControllerRequest`] = request id + [`Command`]) and the
//!   typed outcomes and errors,
//! - [`image`]: the metadata image the commands change (brokers, topics, partitions, epochs),
//!   with [`election`] (leader election, ISR changes) and [`placement`] (Kafka's rack-aware
//!   round-robin replica assignment),
//! - the Raft types of openraft (`storage-v2`) below: [`ControllerTypes`] and [`VoterNode`].
//!
//! This module imports no other core module except `sync`, `clock` and `topic_config`: it is a
//! low layer that the replica manager and the gateway build on.

pub mod command;
mod election;
pub mod image;
pub mod placement;

pub use command::{
    Command, CommandOutcome, CommandResult, ControllerError, ControllerRequest, ControllerResponse,
    ElectionType, PartitionState,
};
pub use image::{BrokerRegistration, Endpoint, MetadataImage, PartitionRegistration, TopicImage};
