//! rill-gateway: everything network-facing of a Rill node, and the `rill` command line.
//!
//! - [`serve`]: `rill serve`, starting a node (listeners, background tasks, shutdown),
//! - [`systemd`]: sd_notify readiness and the watchdog for `Type=notify` units,
//! - [`config`]: the node's TOML configuration and `rill config validate`,
//! - [`kafka`]: the Kafka protocol server, one module per API,
//! - [`cluster`]: cluster mode (cluster listener, controller, broker registration),
//! - [`mqtt`]: the MQTT 3.1.1 / 5 front end,
//! - [`tls`]: rustls (ring) server configuration for the Kafka listener,
//! - [`admin_http`]: `/health`, `/metrics` and `/bridge/status`, behind [`admin_tokens`]
//!   (bearer tokens of `[admin] tokens_file`),
//! - [`metrics`]: the node's Prometheus counters,
//! - [`bridge_metrics`]: the bridge's lag as Prometheus gauges,
//! - [`cli`]: the Kafka-protocol client commands for people (`rill topic|produce|consume`).
//! - [`cluster`]: the node in a cluster (replica fetchers).

pub mod admin_http;
pub mod admin_tokens;
pub mod bridge_metrics;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod kafka;
pub mod metrics;
pub mod mqtt;
pub mod serve;
pub mod systemd;
pub mod tls;
