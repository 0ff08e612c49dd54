//! Time, in the two kinds Rill uses.
//!
//! - **Wall-clock milliseconds** ([`now_ms`]) for what is stored or compared with stored values:
//!   record timestamps, retention by time, offset-commit and expiry times. Kafka uses wall time
//!   for these too; a clock jump is handled where it matters (retention's clock-jump policy).
//! - **Monotonic instants** through a [`Clock`] for every timeout and lease (session timeouts,
//!   rebalance deadlines, leases). Code that waits takes a `Clock`, so tests move time
//!   deterministically with a [`ManualClock`] instead of sleeping.
//!
//! A `Clock` also tells wall time ([`Clock::wall_ms`], which is [`now_ms`] unless a test clock
//! overrides it), for code that both times out and stamps stored values (the group coordinator:
//! session timeouts and commit timestamps), so a `ManualClock` moves both together, like Kafka's
//! `MockTime`.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::sync::LockExt;

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A source of monotonic time for timeouts and leases.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;

    /// Wall-clock milliseconds since the Unix epoch: [`now_ms`], except for test clocks.
    fn wall_ms(&self) -> i64 {
        now_ms()
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The real monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The real clock as a shared handle.
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    base_wall_ms: i64,
    elapsed: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at the instant (and wall time) it was made.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            base_wall_ms: now_ms(),
            elapsed: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.elapsed.lock_unpoisoned() += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + *self.elapsed.lock_unpoisoned()
    }

    fn wall_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.elapsed.lock_unpoisoned().as_millis()).unwrap_or(i64::MAX);
        self.base_wall_ms.saturating_add(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = ManualClock::new();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.now() - t0, Duration::from_millis(1500));
        let w0 = c.wall_ms();
        c.advance(Duration::from_millis(250));
        assert_eq!(c.wall_ms() - w0, 250);
    }

    #[test]
    fn wall_clock_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
