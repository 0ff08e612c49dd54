//! The node as a member of a cluster (issue 11): inter-node traffic and replication.
//!
//! - [`replica_fetcher`]: the follower side of partition replication (Kafka's
//!   `ReplicaFetcherManager` / `ReplicaFetcherThread`): one task per leader broker fetching the
//!   partitions this node follows, through [`rill_core::replica::ReplicaManager`].

pub mod replica_fetcher;
