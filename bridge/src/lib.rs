//! rill-bridge: exactly-once, MirrorMaker-style mirroring from an edge node to a central cluster
//! (and, with pull mirrors, from central to the edge) over the Kafka protocol (see
//! `docs/bridge.md`).
//!
//! - [`config`]: TOML `[[mirror]]` entries,
//! - [`client`]: a small Kafka-protocol client (the edge dials out),
//! - [`security`]: TLS and SASL settings of a target,
//! - [`mirror`]: the engine (in-process source, resume from the target's `rill.origin` headers,
//!   idempotent producer, reconnect with backoff and jitter),
//! - [`floor`]: retention floors holding unmirrored records (the slowest mirror decides),
//! - [`downstream`]: pull mirrors (remote topics into local ones, resume from the local log's
//!   `rill.origin` headers),
//! - [`priority`]: the scheduler that lets higher-priority mirrors send first,
//! - [`standalone`]: `rill bridge --config FILE`,
//! - [`status`]: per-task state and lag (`GET /bridge/status`, `rill bridge status`),
//! - [`checkpoint`]: offset syncs, consumer group checkpoints and offset translation,
//! - [`heartbeats`]: the once-a-second `heartbeats` records,
//! - [`mm2`]: MirrorMaker 2's heartbeat and checkpoint record formats,
//! - [`control_topics`]: the bridge's own topics and group commits on a target.

pub mod checkpoint;
pub mod client;
pub mod config;
pub mod control_topics;
pub mod downstream;
pub mod floor;
pub mod heartbeats;
pub mod mirror;
pub mod mm2;
pub mod priority;
pub mod security;
pub mod standalone;
pub mod status;

pub use config::{BridgeConfig, MirrorConfig};
pub use mirror::{Bridge, Mirror, ORIGIN_HEADER};
pub use status::{BridgeStatus, StatusReport};
