//! rill-client: the one Kafka-protocol client of Rill, used by the CLI (`rill topic|produce|
//! consume|group`), the bridge (push and pull mirrors, control topics) and the tests that speak
//! raw Kafka. Every message goes through the kafka-protocol crate.
//!
//! Layers, bottom first (see `docs/architecture.md`):
//! - [`error`]: [`ClientError`], Kafka error codes as `ResponseError` with Kafka's names,
//! - [`security`]: TLS (rustls with ring, CA file or system roots, client certificate) and SASL
//!   credentials; [`properties`]: the same from librdkafka property names (`-X`, `-F`),
//! - [`sasl`]: the client side of PLAIN and SCRAM as a token exchange,
//! - [`connection`]: one broker: framing, correlation, ApiVersions negotiation and pinning,
//!   SASL, raw frames for hostile-input tests,
//! - [`metadata`]: brokers, topics, partition leaders,
//! - [`connector`]: how the client opens its connections ([`TcpConnector`] by default, or a
//!   caller's own [`Connector`]),
//! - [`client`]: a cluster: bootstrap, metadata refresh, leader and coordinator lookup, recovery
//!   from stale routing (KIP-951 leader hints),
//! - the operations: [`produce`], [`fetch`], [`list_offsets`], [`admin`], [`group`],
//!   [`quorum`].

pub mod admin;
pub mod client;
pub mod connection;
pub mod connector;
pub mod error;
pub mod fetch;
pub mod group;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod properties;
pub mod quorum;
pub mod sasl;
pub mod security;

pub use client::{Client, Route};
pub use connection::{ConnectOptions, Connection};
pub use connector::{Connector, Target, TcpConnector};
pub use error::{check, error_name, ClientError};
pub use fetch::{FetchedPartition, PartitionFetch};
pub use metadata::{BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo};
pub use security::{SaslCredentials, SaslMechanism, TargetSecurity, TlsSettings};
