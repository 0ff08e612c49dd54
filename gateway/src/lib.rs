//! rill-gateway: everything network-facing of a Rill node, and the `rill` command line.
//!
//! - [`serve`]: `rill serve`, starting a node (listeners, background tasks, shutdown),
//! - [`systemd`]: sd_notify readiness and the watchdog for `Type=notify` units,
//! - [`config`]: the node's TOML configuration and `rill config validate`,
//! - [`kafka`]: the Kafka protocol server, one module per API,
//! - [`cluster`]: cluster mode (cluster listener, controller, broker registration; cargo
//!   feature `cluster`),
//! - [`mqtt`]: the MQTT 3.1.1 / 5 front end,
//! - [`tls`]: rustls (ring) server configuration for the Kafka and admin HTTP listeners, and
//!   [`x500`]: the subject of a client certificate as Kafka's principal mapping reads it,
//! - [`admin_http`]: `/health`, `/metrics`, `/bridge/status` and the web console (its page
//!   and `/api/v1/`; cargo feature `console`), behind [`admin_tokens`] (bearer tokens of
//!   `[admin] tokens_file`),
//! - [`metrics`]: the node's Prometheus registry, `[metrics]` settings and Kafka request metrics,
//!   with [`storage_metrics`] (fsyncs, partitions, disk), [`group_metrics`] (consumer lag),
//!   [`process_metrics`] (process, build info), [`bridge_metrics`] (the bridge's lag) and
//!   [`replication_metrics`] (ISR, leaders, the active controller; cluster mode),
//! - [`memory_budget`]: `[node] memory_budget_bytes`, the byte budget that stops reading sockets,
//! - [`cli`]: the Kafka-protocol client commands for people (`rill topic|produce|consume`).
//!
//! Cargo features (docs/architecture.md, "Build features"): `cluster` and `console` are on by
//! default; the edge build (`--no-default-features --features edge`) has neither.

pub mod admin_http;
pub mod admin_tokens;
pub mod bridge_metrics;
pub mod cli;
pub mod cluster;
pub mod config;
#[cfg(feature = "console")]
pub mod console;
pub mod group_metrics;
pub mod kafka;
pub mod memory_budget;
pub mod metrics;
pub mod mqtt;
pub mod process_metrics;
pub mod replication_metrics;
pub mod serve;
pub mod storage_metrics;
pub mod systemd;
pub mod telemetry;
pub mod tls;
pub mod x500;
