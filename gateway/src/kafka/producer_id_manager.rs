//! Producer ids for InitProducerId (Kafka's `ProducerIdManager`).
//!
//! A node alone reserves blocks of ids in its own metadata store
//! ([`ProducerIdAllocator`]). A cluster member must never hand out an id another member also
//! hands out: two idempotent producers with one id would share sequence numbers, and a
//! partition leader would take one producer's batches for the other's duplicates. So in a
//! cluster the ids come from the controller in blocks of
//! [`PRODUCER_ID_BLOCK_SIZE`](rill_core::controller::PRODUCER_ID_BLOCK_SIZE)
//! ([`Command::AllocateProducerIds`], Kafka's AllocateProducerIds of KIP-730), committed in the
//! metadata log before the first id of a block is used. The first block starts above every id
//! the node reserved on its own before it joined a cluster (its local allocator's
//! [`reserved_end`](ProducerIdAllocator::reserved_end)), so a data directory upgraded into a
//! cluster never reuses one.
//!
//! As in Kafka's `RPCProducerIdManager`, a member that cannot get a block (no active controller
//! reachable, or its registration is not in the image yet), or is fetching one for another
//! request, answers COORDINATOR_LOAD_IN_PROGRESS, which clients retry. Not built: Kafka's
//! prefetch of the next block when 90 % of the current one is used.

use std::sync::Arc;

use rill_core::controller::{Command, CommandOutcome, ProducerIdBlock};
use rill_core::producer_state::{AllocError, ProducerIdAllocator};
use rill_core::sync::LockExt;
use tokio::sync::{Mutex, OnceCell};

use super::cluster_view::{ClusterView, SubmitError};

/// Why no producer id could be handed out.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    /// The node's own store failed (UNKNOWN_SERVER_ERROR).
    #[error(transparent)]
    Store(#[from] AllocError),
    /// The blocking task reading the store did not finish (UNKNOWN_SERVER_ERROR).
    #[error("producer id task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// No block from the controller right now (COORDINATOR_LOAD_IN_PROGRESS: retriable).
    #[error("no producer id block from the controller: {0}")]
    BlockUnavailable(String),
}

/// Hands out producer ids: from the node's store alone, from controller blocks in a cluster.
pub struct ProducerIdManager {
    local: Arc<ProducerIdAllocator>,
    /// The ids left in the current controller block: `next..end`.
    block: std::sync::Mutex<(i64, i64)>,
    /// Held by the one request fetching the next block.
    fetching: Mutex<()>,
    /// The local allocator's reserved end, read once (it never moves in a cluster).
    floor: OnceCell<i64>,
}

impl ProducerIdManager {
    /// A manager over the node's own allocator (the only source of a node alone, and the floor
    /// of a cluster member's first block).
    pub fn new(local: Arc<ProducerIdAllocator>) -> ProducerIdManager {
        ProducerIdManager {
            local,
            block: std::sync::Mutex::new((0, 0)),
            fetching: Mutex::new(()),
            floor: OnceCell::new(),
        }
    }

    /// A fresh producer id: from the controller when `cluster` is set, else from the store.
    pub async fn generate(
        &self,
        cluster: Option<&Arc<dyn ClusterView>>,
    ) -> Result<i64, ProducerIdError> {
        let Some(cluster) = cluster else {
            let local = self.local.clone();
            return Ok(tokio::task::spawn_blocking(move || local.allocate()).await??);
        };
        if let Some(id) = self.take() {
            return Ok(id);
        }
        // One request fetches the next block; the others answer at once (retriable) instead
        // of queueing behind a controller that may take its whole submit timeout.
        let Ok(_fetching) = self.fetching.try_lock() else {
            return Err(ProducerIdError::BlockUnavailable(
                "the next block is being fetched from the controller".into(),
            ));
        };
        if let Some(id) = self.take() {
            return Ok(id);
        }
        let b = self.allocate_block(cluster.as_ref()).await?;
        *self.block.lock_unpoisoned() = (b.first + 1, b.end());
        Ok(b.first)
    }

    /// The next id of the current block, if it has one left.
    fn take(&self) -> Option<i64> {
        let mut block = self.block.lock_unpoisoned();
        (block.0 < block.1).then(|| {
            block.0 += 1;
            block.0 - 1
        })
    }

    async fn allocate_block(
        &self,
        cluster: &dyn ClusterView,
    ) -> Result<ProducerIdBlock, ProducerIdError> {
        let local = self.local.clone();
        let floor = *self
            .floor
            .get_or_try_init(|| async move {
                Ok::<_, ProducerIdError>(
                    tokio::task::spawn_blocking(move || local.reserved_end()).await??,
                )
            })
            .await?;
        let broker_id = cluster.node_id();
        let Some(broker_epoch) = cluster.image().broker(broker_id).map(|b| b.broker_epoch) else {
            return Err(ProducerIdError::BlockUnavailable(format!(
                "broker {broker_id} is not registered yet"
            )));
        };
        match cluster
            .submit(Command::AllocateProducerIds {
                broker_id,
                broker_epoch,
                floor,
            })
            .await
        {
            Ok(CommandOutcome::ProducerIdsAllocated(block)) => {
                tracing::info!(
                    first = block.first,
                    size = block.size,
                    "producer id block allocated by the controller"
                );
                Ok(block)
            }
            Ok(other) => Err(ProducerIdError::BlockUnavailable(format!(
                "unexpected controller outcome {other:?}"
            ))),
            Err(
                e @ (SubmitError::Rejected(_)
                | SubmitError::ControllerUnavailable(_)
                | SubmitError::Timeout(_)),
            ) => Err(ProducerIdError::BlockUnavailable(e.to_string())),
        }
    }
}
