//! The node's memory budget (`[node] memory_budget_bytes`, issue 16): one process-wide count of
//! the bytes the node holds for its clients, checked before a socket is read.
//!
//! What is counted: the resident memory the node had once it was up (code, runtime, open logs:
//! [`MemoryBudget::charge`]d at start), a fixed estimate per connection, every MQTT read buffer
//! (the bytes about to be read and those buffered), every MQTT burst of publishes until its
//! acknowledgements are sent (appended, waiting for the fsync) and every Kafka request frame
//! until its response is written. A connection asks for [`READ_ALLOWANCE`] bytes before it reads
//! ([`MemoryBudget::reserve`]); when the budget is spent it waits, which stops reading its socket
//! (TCP backpressure: the client's writes block, nothing is dropped or closed), and goes on as
//! soon as acknowledged bursts and written responses give bytes back.
//!
//! Memory a connection already holds is charged without waiting ([`MemoryBudget::charge`]): a
//! partly read packet must be finished to be freed, so waiting there could deadlock. The count
//! may therefore pass the limit by the partial packets of the connections being read; it is an
//! accounting of the node's memory, not a measurement of it (docs/operations.md says what the
//! estimates are).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// What a connection reserves before it reads its socket (and at most reads at once).
pub const READ_ALLOWANCE: usize = 4096;

/// The budget without a cgroup limit and without `[node] memory_budget_bytes`: 256 MiB, a
/// quarter of a 1 GiB board, with room for the page cache (docs/operations.md).
pub const DEFAULT_BUDGET_BYTES: u64 = 256 << 20;

/// The smallest budget that can be configured: the node's own footprint needs a few MiB.
pub const MIN_BUDGET_BYTES: u64 = 4 << 20;

/// A reservation bigger than the whole budget: it could never be granted.
#[derive(Debug, thiserror::Error)]
#[error("{wanted} bytes exceed the whole memory budget of {limit} bytes")]
pub struct BudgetExceeded {
    /// The bytes asked for.
    pub wanted: usize,
    /// The budget.
    pub limit: usize,
}

/// The budget: a limit, the bytes counted against it and the connections waiting for room.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    /// Reservations waiting for room.
    waiting: AtomicUsize,
    freed: Notify,
    /// How often a reservation had to wait (a socket stopped being read).
    pauses: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
            pauses: AtomicU64::new(0),
        })
    }

    /// A budget that never makes anyone wait (tests, and the `memory_budget_off` failpoint).
    pub fn unlimited() -> Arc<MemoryBudget> {
        Self::new(usize::MAX >> 1)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The bytes counted now (may pass the limit, see the module documentation).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// How often a reservation had to wait for room.
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::Relaxed)
    }

    /// Counts `bytes` the caller already holds, without waiting (the count may pass the limit).
    pub fn charge(self: &Arc<Self>, bytes: usize) -> Reservation {
        self.used.fetch_add(bytes, Ordering::AcqRel);
        Reservation {
            budget: self.clone(),
            bytes,
        }
    }

    /// A reservation of `bytes` if they fit now.
    pub fn try_reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        let mut cur = self.used.load(Ordering::Acquire);
        loop {
            let next = cur.checked_add(bytes).filter(|n| *n <= self.limit)?;
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Some(Reservation {
                        budget: self.clone(),
                        bytes,
                    })
                }
                Err(seen) => cur = seen,
            }
        }
    }

    /// Reserves `bytes`, waiting until they fit. Cancel-safe (a dropped wait holds nothing).
    /// More than the whole budget is refused at once.
    pub async fn reserve(self: &Arc<Self>, bytes: usize) -> Result<Reservation, BudgetExceeded> {
        if bytes > self.limit {
            return Err(BudgetExceeded {
                wanted: bytes,
                limit: self.limit,
            });
        }
        if let Some(r) = self.try_reserve(bytes) {
            return Ok(r);
        }
        self.pauses.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting::new(&self.waiting);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(r) = self.try_reserve(bytes) {
                return Ok(r);
            }
            freed.await;
        }
    }

    fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        // Every waiter looks again: waking only the first would stall the others whenever the
        // first needs more than was freed while a smaller one behind it would fit.
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.freed.notify_waiters();
        }
    }
}

/// Counts a waiting reservation while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::AcqRel);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bytes counted against a [`MemoryBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Reservation {
    /// An empty reservation on `budget`.
    pub fn none(budget: &Arc<MemoryBudget>) -> Reservation {
        Reservation {
            budget: budget.clone(),
            bytes: 0,
        }
    }

    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Moves `bytes` (at most all) of this reservation into a new one.
    pub fn split_off(&mut self, bytes: usize) -> Reservation {
        let moved = bytes.min(self.bytes);
        self.bytes -= moved;
        Reservation {
            budget: self.budget.clone(),
            bytes: moved,
        }
    }

    /// Gives back what is held beyond `bytes`.
    pub fn shrink_to(&mut self, bytes: usize) {
        if self.bytes > bytes {
            self.budget.release(self.bytes - bytes);
            self.bytes = bytes;
        }
    }

    /// Adds `other`'s bytes to this reservation.
    pub fn absorb(&mut self, mut other: Reservation) {
        self.bytes += std::mem::take(&mut other.bytes);
    }

    /// Counts `bytes` more without waiting (memory already held, see [`MemoryBudget::charge`]).
    pub fn grow(&mut self, bytes: usize) {
        self.budget.used.fetch_add(bytes, Ordering::AcqRel);
        self.bytes += bytes;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// The budget when `[node] memory_budget_bytes` is not set: 3/4 of the cgroup v2 `memory.max`
/// of this process when it has one, else [`DEFAULT_BUDGET_BYTES`]. Also says where it came from.
pub fn default_budget() -> (u64, &'static str) {
    match cgroup_memory_max() {
        Some(max) => (max / 4 * 3, "3/4 of the cgroup memory.max"),
        None => (DEFAULT_BUDGET_BYTES, "default (no cgroup memory limit)"),
    }
}

/// The cgroup v2 `memory.max` of this process (None: no cgroup v2, or `max`).
pub fn cgroup_memory_max() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup_v2_path(&cgroup)?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    parse_memory_max(&std::fs::read_to_string(dir.join("memory.max")).ok()?)
}

/// The cgroup v2 path (the `0::PATH` line) of a `/proc/self/cgroup` text.
fn cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// A `memory.max` value: bytes, or None for `max` (unlimited) and anything unreadable.
fn parse_memory_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Exports the budget at scrape time (register under the `rill` prefix):
/// `rill_memory_budget_bytes`, `rill_memory_budget_used_bytes` and
/// `rill_memory_budget_read_pauses_total`.
#[derive(Debug)]
pub struct BudgetCollector(pub Arc<MemoryBudget>);

impl prometheus_client::collector::Collector for BudgetCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let gauges = [
            (
                "memory_budget_bytes",
                "The memory budget: the node stops reading sockets when it has counted this much",
                self.0.limit() as i64,
            ),
            (
                "memory_budget_used_bytes",
                "Bytes counted against the memory budget (start-up footprint, connections, buffers, unacknowledged appends)",
                self.0.used() as i64,
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let c = ConstCounter::new(self.0.pauses());
        c.encode(encoder.encode_descriptor(
            "memory_budget_read_pauses",
            "Times a connection stopped reading its socket because the memory budget was spent",
            None,
            c.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reservation_waits_for_room_and_goes_on_when_bytes_are_given_back() {
        let budget = MemoryBudget::new(10_000);
        let held = budget.reserve(8_000).await.unwrap();
        assert!(budget.try_reserve(4_096).is_none());
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(4_096).await.map(|r| r.bytes()) }
        });
        while budget.pauses() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        drop(held);
        assert_eq!(waiter.await.unwrap().unwrap(), 4_096);
        assert_eq!(budget.used(), 0, "the waiter's reservation was dropped");
        assert_eq!(budget.pauses(), 1);
    }

    #[tokio::test]
    async fn a_small_waiter_behind_a_big_one_gets_the_room_that_fits_it() {
        let budget = MemoryBudget::new(10_000);
        let a = budget.reserve(7_000).await.unwrap();
        let b = budget.reserve(2_000).await.unwrap();
        let big = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(8_000).await.map(|r| r.bytes()) }
        });
        while budget.pauses() < 1 {
            tokio::task::yield_now().await;
        }
        let small = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(2_000).await.map(|r| r.bytes()) }
        });
        while budget.pauses() < 2 {
            tokio::task::yield_now().await;
        }
        // 2,000 bytes come back: room for the small waiter (7,000 + 2,000), not for the big one
        // in front of it (7,000 + 8,000). The small one must not sleep behind the big one.
        drop(b);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), small)
            .await
            .expect("the small waiter was never woken")
            .unwrap()
            .unwrap();
        assert_eq!(got, 2_000);
        assert!(!big.is_finished());
        drop(a);
        assert_eq!(big.await.unwrap().unwrap(), 8_000);
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_is_refused_not_awaited() {
        let budget = MemoryBudget::new(1_000);
        let err = budget.reserve(1_001).await.unwrap_err();
        assert_eq!((err.wanted, err.limit), (1_001, 1_000));
    }

    #[test]
    fn charges_pass_the_limit_and_splits_keep_the_count() {
        let budget = MemoryBudget::new(100);
        let mut r = budget.charge(150);
        assert_eq!(budget.used(), 150);
        let part = r.split_off(100);
        r.shrink_to(20);
        assert_eq!((r.bytes(), part.bytes(), budget.used()), (20, 100, 120));
        r.absorb(part);
        r.grow(5);
        assert_eq!((r.bytes(), budget.used()), (125, 125));
        drop(r);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn cgroup_files_parse() {
        assert_eq!(
            cgroup_v2_path("0::/system.slice/rill.service\n"),
            Some("/system.slice/rill.service")
        );
        assert_eq!(cgroup_v2_path("1:name=systemd:/x\n"), None);
        assert_eq!(parse_memory_max("536870912\n"), Some(536_870_912));
        assert_eq!(parse_memory_max("max\n"), None);
    }
}
