//! Shared pieces of Rill's client benchmarks: starting a real `rill serve` node, measuring the
//! disk with `dd`, latency percentiles, the result table (what, ours, peer, ratio) and the
//! SASL + ACL fixture of the authorizer's cost.
//!
//! The binaries (`kafka-bench`, `mqtt-bench`) drive a node with real client libraries; see
//! `docs/benchmarks.md` for the commands and results.

pub mod authorizer;
pub mod disk;
pub mod latency;
pub mod node;
pub mod report;
pub mod scrape;
