//! This node's [`AlterPartitionManager`] (Kafka's `DefaultAlterPartitionManager`): a partition
//! leader's ISR change goes to the active controller as a `Command::AlterPartition`, through the
//! node's [`ClusterView::submit`] (forwarded over the cluster listener when the active controller
//! is another node), and the committed partition state comes back to the leader.

use std::sync::Arc;

use rill_core::controller::CommandOutcome;
use rill_core::replica::{
    AlterPartitionError, AlterPartitionFuture, AlterPartitionManager, AlterPartitionRequest,
};

use crate::kafka::cluster_view::{ClusterView, SubmitError};

/// Submits ISR changes through a [`ClusterView`].
pub struct ControllerAlterPartitionManager {
    cluster: Arc<dyn ClusterView>,
}

impl ControllerAlterPartitionManager {
    /// ISR changes go to `cluster`'s active controller.
    pub fn new(cluster: Arc<dyn ClusterView>) -> Self {
        ControllerAlterPartitionManager { cluster }
    }
}

impl AlterPartitionManager for ControllerAlterPartitionManager {
    fn submit(&self, request: AlterPartitionRequest) -> AlterPartitionFuture {
        let submitted = self.cluster.submit(request.command());
        Box::pin(async move {
            match submitted.await {
                Ok(CommandOutcome::Partition(state)) => Ok(state),
                Ok(other) => Err(AlterPartitionError::Unavailable(format!(
                    "the controller answered an AlterPartition with {other:?}"
                ))),
                Err(SubmitError::Rejected(e)) => Err(AlterPartitionError::Rejected(e)),
                Err(e @ (SubmitError::ControllerUnavailable(_) | SubmitError::Timeout(_))) => {
                    Err(AlterPartitionError::Unavailable(e.to_string()))
                }
            }
        })
    }
}
