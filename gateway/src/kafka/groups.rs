//! Wiring of the group coordinator into the Kafka server: opening it over the broker's metadata
//! database with the system clock, and the background task that calls
//! [`GroupCoordinator::tick`] every 100 ms (session and rebalance timeouts, offset expiry).
//! The group APIs themselves live in one module each (`join_group.rs`, `offset_commit.rs`, ...).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::protocol::StrBytes;
use rill_core::broker::Broker;
use rill_core::clock::system_clock;
use rill_core::group::{GroupConfig, GroupCoordinator, OffsetStoreError, RedbOffsetStore};
use tokio_util::sync::CancellationToken;

/// How often the coordinator acts on passed deadlines.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);

/// Open the coordinator over the broker's metadata store (loads committed offsets).
pub fn open(
    broker: Arc<Broker>,
    config: GroupConfig,
) -> Result<Arc<GroupCoordinator>, OffsetStoreError> {
    let store = RedbOffsetStore::open(broker.metadata_handle())?;
    Ok(Arc::new(GroupCoordinator::new(
        config,
        Arc::new(store),
        system_clock(),
    )))
}

/// Tick the coordinator until shutdown. Ticks run on the blocking pool because offset
/// expiry writes to redb.
pub async fn run_ticker(groups: Arc<GroupCoordinator>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(TICK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {
                let g = groups.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || g.tick()).await {
                    tracing::error!(error = %e, "group coordinator tick failed");
                }
            }
        }
    }
}

/// The client host as Kafka shows it in DescribeGroups (`/127.0.0.1`).
pub fn client_host(peer: SocketAddr) -> String {
    format!("/{}", peer.ip())
}

/// A protocol string from an owned string.
pub fn s(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// An optional protocol string.
pub fn opt(value: Option<String>) -> Option<StrBytes> {
    value.map(StrBytes::from_string)
}

/// A non-negative millisecond setting from a request field.
pub fn ms(value: i32) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
