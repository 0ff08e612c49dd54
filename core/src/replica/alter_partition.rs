//! How a partition leader's ISR change reaches the controller (Kafka's `AlterPartitionManager`):
//! the leader builds an [`AlterPartitionRequest`] (a compare-and-set on its broker epoch, its
//! leader epoch and the partition epoch it last saw) and an [`AlterPartitionManager`] submits it
//! as [`Command::AlterPartition`] to the active controller. The future resolves with the
//! partition state the controller committed, which the leader then applies; the leader never
//! changes its ISR on its own.
//!
//! The gateway's cluster module implements the trait (over the cluster listener, or the local
//! controller); tests implement it on a real [`MetadataImage`](crate::controller::MetadataImage).

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use crate::controller::{Command, ControllerError, PartitionState};

/// One proposed ISR change of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionRequest {
    /// The leader proposing it (this node).
    pub broker_id: i32,
    /// The leader's broker epoch (its current registration).
    pub broker_epoch: i64,
    pub topic_id: Uuid,
    pub partition: i32,
    /// The leader epoch the leader serves under.
    pub leader_epoch: i32,
    /// The partition epoch of the last committed state the leader applied.
    pub partition_epoch: i32,
    /// The proposed ISR (always contains the leader).
    pub new_isr: Vec<i32>,
}

impl AlterPartitionRequest {
    /// The controller command this request is.
    pub fn command(&self) -> Command {
        Command::AlterPartition {
            broker_id: self.broker_id,
            broker_epoch: self.broker_epoch,
            topic_id: self.topic_id,
            partition: self.partition,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr: self.new_isr.clone(),
        }
    }
}

/// Why a proposed ISR change has no committed outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlterPartitionError {
    /// The controller applied the command and rejected it (stale epochs, ineligible replica...).
    #[error(transparent)]
    Rejected(#[from] ControllerError),
    /// No controller answered (not reachable, no active controller, timed out): the change may or
    /// may not be committed; the next image tells.
    #[error("no answer from the controller: {0}")]
    Unavailable(String),
}

/// What submitting a request yields: the partition state as committed by the controller.
pub type AlterPartitionFuture =
    Pin<Box<dyn Future<Output = Result<PartitionState, AlterPartitionError>> + Send>>;

/// Submits ISR changes to the controller.
pub trait AlterPartitionManager: Send + Sync + 'static {
    /// Submit `request`; the future resolves once the controller committed and applied it.
    fn submit(&self, request: AlterPartitionRequest) -> AlterPartitionFuture;
}
