//! Liveness of long-running loops (the maintenance thread, the listeners' accept loops), for a
//! service manager's watchdog: each loop marks a [`Liveness`] every time round, also while idle
//! (at least every [`MARK_EVERY`]), and the watchdog reads how long ago the last mark was. A loop
//! that is blocked (a stuck disk, a deadlock, a starved runtime) stops marking.
//!
//! Time is monotonic ([`Instant`]), kept as milliseconds since the value was created so a mark is
//! one atomic store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest an idle loop waits between marks. A watchdog should allow several of these.
pub const MARK_EVERY: Duration = Duration::from_millis(500);

/// A loop's last sign of life; clones share it.
#[derive(Debug, Clone)]
pub struct Liveness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    origin: Instant,
    /// Milliseconds from `origin` to the last mark.
    last_ms: AtomicU64,
}

impl Liveness {
    /// A liveness marked now.
    pub fn new() -> Liveness {
        Liveness {
            inner: Arc::new(Inner {
                origin: Instant::now(),
                last_ms: AtomicU64::new(0),
            }),
        }
    }

    /// The loop made progress now.
    pub fn mark(&self) {
        let ms = u64::try_from(self.inner.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long ago the last mark was, as seen at `now`.
    pub fn since_last_mark(&self, now: Instant) -> Duration {
        let last =
            self.inner.origin + Duration::from_millis(self.inner.last_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_resets_the_age_and_clones_share_it() {
        let l = Liveness::new();
        let created = Instant::now();
        let later = created + Duration::from_secs(5);
        assert!(l.since_last_mark(later) >= Duration::from_secs(5));
        let clone = l.clone();
        let before = Instant::now();
        clone.mark();
        let now = Instant::now();
        // Marks are kept in whole milliseconds (rounded down).
        assert!(l.since_last_mark(now) <= now - before + Duration::from_millis(1));
        let much_later = now + Duration::from_secs(2);
        assert!(l.since_last_mark(much_later) >= Duration::from_secs(2));
    }

    #[test]
    fn age_before_the_last_mark_is_zero() {
        let l = Liveness::new();
        l.mark();
        let earlier = Instant::now().checked_sub(Duration::from_secs(1));
        if let Some(earlier) = earlier {
            assert_eq!(l.since_last_mark(earlier), Duration::ZERO);
        }
    }
}
