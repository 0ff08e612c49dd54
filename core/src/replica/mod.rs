//! Replication's data plane (issue 11), Kafka's pull replication: the leader of a partition
//! serves followers' fetches, tracks how far each follower holds the log durably, moves the high
//! watermark, and asks the controller to shrink or expand the ISR; a follower appends what it
//! fetched. Kafka's names:
//!
//! - [`partition`]: [`Partition`] (Kafka's `Partition`): the role (leader or follower), the
//!   replication state of every remote replica, the ISR with its in-flight change (KIP-497), the
//!   high watermark, `min.insync.replicas`,
//! - [`replica_manager`]: [`ReplicaManager`] (Kafka's `ReplicaManager`): the partitions this node
//!   hosts, leader and follower transitions from the controller's partition registrations, the
//!   leader's append path (acks, waiting for the high watermark) and the follower fetch path,
//! - [`alter_partition`]: [`AlterPartitionManager`], how an ISR change reaches the controller.
//!
//! ISR changes are never applied locally: a leader proposes one and it takes effect when the
//! controller's committed partition state comes back ([`ReplicaManager::apply_partition_state`]
//! or a new registration through [`ReplicaManager::become_leader`]).
//!
//! Imports: `log`, `controller`, `clock` and `sync`, all below it in the layer list.

pub mod alter_partition;
pub mod partition;
pub mod replica_manager;

use std::time::Duration;

pub use alter_partition::{
    AlterPartitionError, AlterPartitionFuture, AlterPartitionManager, AlterPartitionRequest,
};
pub use partition::{EpochEndOffset, Partition, ReplicaSnapshot};
pub use replica_manager::{
    FetchPosition, FollowerFetch, IsrChangeCounts, PendingAppend, ReplicaManager,
    ReplicaManagerConfig, RequiredAcks,
};

use crate::log::LogError;

/// Errors of the replica layer. The gateway maps each to the Kafka error code its doc names.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// UNKNOWN_TOPIC_OR_PARTITION: this node hosts no replica of the partition.
    #[error("this node hosts no replica of {topic}-{partition}")]
    UnknownTopicOrPartition { topic: String, partition: i32 },
    /// NOT_LEADER_OR_FOLLOWER: this node does not lead the partition. `leader` and
    /// `leader_epoch` are the current leader as this node knows it (KIP-951 hint; `-1` unknown).
    #[error("not the leader of {topic}-{partition} (leader: {leader}, epoch {leader_epoch})")]
    NotLeaderOrFollower {
        topic: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
    },
    /// FENCED_LEADER_EPOCH: the request's leader epoch is older than this replica's.
    #[error("leader epoch {got} is older than the current {current}")]
    FencedLeaderEpoch { current: i32, got: i32 },
    /// UNKNOWN_LEADER_EPOCH: the request's leader epoch is newer than this replica knows.
    #[error("leader epoch {got} is newer than the current {current}")]
    UnknownLeaderEpoch { current: i32, got: i32 },
    /// NOT_LEADER_OR_FOLLOWER (as Kafka answers): the fetching broker is not a replica of the
    /// partition.
    #[error("broker {replica_id} is not a replica of {topic}-{partition}")]
    UnknownReplica {
        topic: String,
        partition: i32,
        replica_id: i32,
    },
    /// NOT_LEADER_OR_FOLLOWER (as Kafka answers, KIP-903): the fetch carries an older broker
    /// epoch than an earlier fetch of the same replica (a fetch of a previous incarnation).
    #[error("fetch from replica {replica_id} with stale broker epoch {got} (seen: {current})")]
    StaleBrokerEpoch {
        replica_id: i32,
        got: i64,
        current: i64,
    },
    /// NOT_ENOUGH_REPLICAS: an acks=all write while the committed ISR is smaller than
    /// `min.insync.replicas`; nothing was appended.
    #[error("the ISR has {isr} members, min.insync.replicas is {min_isr}")]
    NotEnoughReplicas { isr: usize, min_isr: usize },
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND: the records were appended, but the committed ISR shrank
    /// below `min.insync.replicas` before they were committed.
    #[error("appended, but the ISR shrank to {isr} members (min.insync.replicas {min_isr})")]
    NotEnoughReplicasAfterAppend { isr: usize, min_isr: usize },
    /// REQUEST_TIMED_OUT: an acks=all write was not committed within the request's timeout (it
    /// may still be later).
    #[error("not replicated to the ISR within {0:?}")]
    RequestTimedOut(Duration),
    /// The log failed (the gateway maps [`LogError`] as for a node alone).
    #[error(transparent)]
    Log(#[from] LogError),
    /// A blocking log task panicked or was cancelled (UNKNOWN_SERVER_ERROR).
    #[error("log task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
