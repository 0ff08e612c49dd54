//! rill-core: the log engine and broker state of a Rill node.
//!
//! No sockets live here, so everything can be tested and benchmarked alone. The layers, bottom up:
//! - [`io`]: the file-system seam (real files, and a simulated disk that loses unsynced data on a
//!   "power cut" for tests),
//! - [`batch`]: Kafka v2 record batch headers (the fixed 61-byte layout), CRC32C, offset rewriting,
//! - [`crypto`] and [`keyring`]: encryption at rest (AES-256-GCM / ChaCha20-Poly1305), master key,
//!   per-segment data keys,
//! - [`index`], [`segment`], [`log`], [`retention`]: the segmented partition log and its
//!   retention policy, and [`cleaner`] (compaction: the latest record per key); [`backlog`]:
//!   what happens when data held by a retention floor (not yet mirrored) nears the limits,
//! - [`topic_config`], [`metadata`], [`topic_registry`]: topics, their ids and configs in redb,
//! - [`broker`]: the node's storage facade used by the gateway, with [`maintenance`] (interval
//!   flush, retention, disk budget) in a background thread, marking a [`liveness`] for the
//!   service watchdog,
//! - [`producer_state`]: idempotent producers (sequence checks, snapshots, producer ids),
//! - [`group`]: the group coordinator along Kafka's lines (one map of classic and KIP-848
//!   consumer groups, the classic rebalance protocol, server-side assignors, committed offsets
//!   behind the `OffsetStore` trait with a redb backend),
//! - [`scram`] and [`credentials`]: SASL users of the Kafka listener (SCRAM credentials in redb),
//! - [`authorizer`]: Kafka ACLs and the `StandardAuthorizer` decision (ACLs in redb),
//! - [`controller`]: the cluster controller's metadata image, commands and Raft storage
//!   (issue 11; not yet used by the node).

pub mod authorizer;
pub mod backlog;
pub mod batch;
pub mod broker;
pub mod cleaner;
pub mod clock;
pub mod controller;
pub mod credentials;
pub mod crypto;
pub mod failpoints;
pub mod group;
pub mod index;
pub mod io;
pub mod key_rotation;
pub mod keyring;
pub mod liveness;
pub mod log;
pub mod maintenance;
pub mod metadata;
pub mod metadata_cipher;
pub mod partitioner;
pub mod producer_state;
pub mod replica;
pub mod retention;
pub mod scram;
pub mod segment;
pub mod storage_observer;
pub mod sync;
pub mod topic_config;
pub mod topic_registry;
