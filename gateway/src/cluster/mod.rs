//! Cluster mode (issue 11): what makes several `rill serve` processes one cluster.
//!
//! A data directory formatted by `rill cluster format` (it holds `meta.properties`) starts the
//! node in cluster mode; a plain data directory keeps the node alone, exactly as before.
//!
//! - [`rpc`]: the wire format of the private inter-node APIs (Kafka framing, CBOR bodies),
//! - [`auth`]: the shared-secret HMAC handshake before the first RPC,
//! - [`peer`]: outgoing connections (bound to this node's cluster address),
//! - [`listener`]: the cluster listener, serving the private APIs, BrokerRegistration /
//!   BrokerHeartbeat and, for other nodes, the Kafka APIs (replica Fetch),
//! - [`controller`]: openraft on the controller stores, its network, the active controller's
//!   duties and command forwarding,
//! - [`broker_lifecycle`]: registration, heartbeats and controlled shutdown of this broker,
//! - [`local_state_import`]: SCRAM users and ACLs a member kept on its own (before they lived in
//!   the cluster) move into the cluster once, when the cluster has none,
//! - [`metadata_publisher`]: applies each new metadata image to this node's replicas (storage
//!   and [`rill_core::replica::ReplicaManager`] roles),
//! - [`controller_acl_store`]: CreateAcls / DeleteAcls through the controller (every member's
//!   authorizer mirrors the image's ACLs),
//! - [`alter_partition`]: ISR changes of partitions led here go to the active controller,
//! - [`replica_fetcher`]: the follower side of partition replication (Kafka's
//!   `ReplicaFetcherManager` / `ReplicaFetcherThread`): one task per leader broker fetching the
//!   partitions this node follows, through [`rill_core::replica::ReplicaManager`].
//!
//! `ClusterNode` (module `node`) ties them together and is the
//! [`ClusterView`](crate::kafka::cluster_view::ClusterView) the Kafka handlers use.
//!
//! All of this but [`coordinator_runtime`] (group coordination over `__consumer_offsets`
//! replicas, which needs no Raft) is built with the `cluster` cargo feature only (on by default,
//! off in the edge build); without it [`NO_CLUSTER_SUPPORT`] is what a node says when a config,
//! a flag or a formatted data directory asks for cluster mode.

#[cfg(feature = "cluster")]
pub mod alter_partition;
#[cfg(feature = "cluster")]
pub mod auth;
#[cfg(feature = "cluster")]
pub mod broker_lifecycle;
#[cfg(feature = "cluster")]
pub mod controller;
#[cfg(feature = "cluster")]
pub mod controller_acl_store;
pub mod coordinator_runtime;
#[cfg(feature = "cluster")]
pub mod listener;
#[cfg(feature = "cluster")]
pub mod local_state_import;
#[cfg(feature = "cluster")]
pub mod metadata_publisher;
#[cfg(feature = "cluster")]
mod node;
#[cfg(feature = "cluster")]
pub mod peer;
#[cfg(feature = "cluster")]
pub mod replica_fetcher;
#[cfg(feature = "cluster")]
pub mod rpc;

#[cfg(feature = "cluster")]
pub use node::{check_settings, formatted, ClusterError, ClusterNode, StartedCluster};

pub use crate::kafka::cluster_view::{
    CLUSTER_LISTENER as CLUSTER_LISTENER_NAME, KAFKA_LISTENER as KAFKA_LISTENER_NAME,
};

/// What a node built without the `cluster` feature says when asked to run in cluster mode.
pub const NO_CLUSTER_SUPPORT: &str = "this build has no cluster support (rill was built without \
     the `cluster` feature, e.g. the edge build); use a build with default features for a \
     cluster member";
