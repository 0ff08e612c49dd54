//! rill-bridge: exactly-once, MirrorMaker-style mirroring from an edge node to a central cluster
//! (and, with pull mirrors, from central to the edge) over the Kafka protocol (see
//! `docs/bridge.md`).
//!
//! The edge dials out with `rill-client` (TLS and SASL settings of a target: [`security`]).
//!
//! - [`config`]: TOML `[[mirror]]` entries,
//! - [`origin`]: the `rill.origin` header and the resume scan of push and pull mirrors,
//! - [`supervisor`]: the one retry-with-backoff (jitter) of sessions,
//! - [`mirror`]: a compiled mirror (selection, filters, partition mapping, target client),
//! - [`engine`]: the bridge inside a node (one task per mirrored partition),
//! - [`push`]: a push session (in-process source, idempotent producer to the target),
//! - [`floor`]: retention floors holding unmirrored records (the slowest mirror decides),
//! - [`downstream`]: pull mirrors (remote topic discovery, one pull task per partition),
//! - [`pull`]: a pull session (fetch from the remote leader, append locally),
//! - [`priority`]: the scheduler that lets higher-priority mirrors send first,
//! - [`standalone`]: `rill bridge --config FILE`,
//! - [`status`]: per-task state and lag (`GET /bridge/status`, `rill bridge status`),
//! - [`offset_sync`]: source -> target offsets of mirrored records,
//! - [`checkpoint`]: consumer group checkpoints and offset translation,
//! - [`heartbeats`]: the once-a-second `heartbeats` records,
//! - [`mm2`]: MirrorMaker 2's heartbeat and checkpoint record formats,
//! - [`control_topics`]: the bridge's own topics and group commits on a target.

pub mod checkpoint;
pub mod config;
pub mod control_topics;
pub mod downstream;
pub mod engine;
pub mod floor;
pub mod heartbeats;
pub mod mirror;
pub mod mm2;
pub mod offset_sync;
pub mod origin;
pub mod priority;
pub mod pull;
pub mod push;
pub mod standalone;
pub mod status;
pub mod supervisor;

/// TLS and SASL settings of a target (`rill-client`'s, which [`config`] fills in).
pub use rill_client::security;

pub use config::{BridgeConfig, MirrorConfig};
pub use engine::Bridge;
pub use mirror::Mirror;
pub use origin::ORIGIN_HEADER;
pub use status::{BridgeStatus, StatusReport};
