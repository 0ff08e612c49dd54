//! What one group operation runs with: the settings, the offset store (where a classic group
//! records its protocol type), and the time it happens at, read once from the coordinator's
//! [`crate::clock::Clock`] so that every deadline of the operation uses the same instant.

use std::time::{Duration, Instant};

use super::config::GroupConfig;
use super::offset_store::OffsetStore;

/// The context of one operation.
pub(crate) struct OpContext<'a> {
    pub config: &'a GroupConfig,
    pub store: &'a dyn OffsetStore,
    /// Monotonic time, for timeouts and deadlines.
    pub now: Instant,
    /// Wall-clock ms, for stored values (commit times, when a group became empty).
    pub wall_ms: i64,
}

/// A millisecond setting as a duration.
pub(crate) fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}
