//! The Kafka protocol server: framing, request decoding, one module per API, error mapping.
//!
//! A request travels [`server`] (accept, TLS) -> [`connection`] (length-prefixed frames, ordered
//! responses, pipelining) -> [`request`] (header and body decoding with the kafka-protocol crate,
//! against the table of [`api_support`]) -> [`dispatch`] -> the API's module, which gets the
//! node's [`Context`], talks to [`rill_core::broker::Broker`], maps errors with [`error_codes`]
//! and answers with a [`reply::Reply`]. When the listener requires SASL, [`auth`] gates every
//! request until the connection has authenticated, and [`authorization`] checks each resource
//! against the ACLs when the authorizer is on. Imports point down that path only: the shared
//! pieces (`api_support`, `context`, `reply`, `error_codes`) sit below the per-API modules, and
//! `dispatch`, `connection` and `server` above them (the layers in `docs/architecture.md`).
//!
//! To add an API: write `kafka/<api>.rs` with a `handle` function, add a row to
//! [`api_support::SUPPORTED_APIS`] and an arm to [`dispatch::dispatch`]; ApiVersions advertises
//! the table, so it never claims an API that is not handled, and `/metrics` counts it under the
//! row's name.

pub mod alter_configs;
pub mod alter_user_scram_credentials;
pub mod api_support;
pub mod api_versions;
pub mod auth;
pub mod authorization;
pub mod cluster_view;
pub mod connection;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod context;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_quorum;
pub mod describe_user_scram_credentials;
pub mod dispatch;
pub mod elect_leaders;
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
pub mod producer_id_manager;
pub mod reply;
pub mod request;
pub mod response_errors;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod server;
pub mod ssl_principal_mapper;
pub mod sync_group;

pub use context::Context;
