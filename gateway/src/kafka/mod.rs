//! The Kafka protocol server: framing, request decoding, one module per API, error mapping.
//!
//! A request travels [`server`] (accept, TLS) -> [`connection`] (length-prefixed frames, ordered
//! responses, pipelining) -> [`request`] (header and body decoding with the kafka-protocol crate)
//! -> [`dispatch`] (the table of supported APIs, shared with [`api_versions`]) -> the API's module,
//! which talks to [`rill_core::broker::Broker`] and maps errors with [`error_codes`]. When the
//! listener requires SASL, [`auth`] gates every request until the connection has authenticated.
//!
//! To add an API: write `kafka/<api>.rs` with a `handle` function, add a row to
//! [`dispatch::SUPPORTED_APIS`] and an arm to [`dispatch::dispatch`]; ApiVersions advertises the
//! table, so it never claims an API that is not handled.

pub mod alter_configs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod auth;
pub mod connection;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_user_scram_credentials;
pub mod dispatch;
pub mod error_codes;
pub mod fetch;
pub mod find_coordinator;
pub mod groups;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod request;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod server;
pub mod sync_group;

use std::sync::Arc;

use kafka_protocol::protocol::StrBytes;
use rill_core::broker::Broker;
use rill_core::group::GroupCoordinator;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Everything a request handler may use; one per node, shared by every connection.
pub struct Context {
    /// The node's storage.
    pub broker: Arc<Broker>,
    /// The consumer group coordinator (every group is coordinated by this node).
    pub groups: Arc<GroupCoordinator>,
    /// Kafka broker id of this node.
    pub node_id: i32,
    /// Host advertised to clients in Metadata / DescribeCluster.
    pub advertised_host: String,
    /// Port advertised to clients.
    pub advertised_port: u16,
    /// The cluster id (fixed when the data directory was created).
    pub cluster_id: String,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// The node's settings as DescribeConfigs shows them for the BROKER resource.
    pub broker_configs: Vec<(String, String)>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the node shuts down (long polls return early).
    pub shutdown: CancellationToken,
    /// Producer ids for InitProducerId (idempotent producers).
    pub producer_ids: Arc<rill_core::producer_state::ProducerIdAllocator>,
    /// SASL settings and users when the listener requires SASL (None: no authentication).
    pub sasl: Option<Arc<auth::Authenticator>>,
    /// The SASL users (SCRAM credentials), also when the listener does not require SASL.
    pub credentials: Arc<rill_core::credentials::CredentialStore>,
}

impl Context {
    /// The advertised host as a protocol string.
    pub fn host(&self) -> StrBytes {
        StrBytes::from_string(self.advertised_host.clone())
    }
}
