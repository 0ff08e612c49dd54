//! Background maintenance (Kafka's `LogManager` scheduler): one `std::thread` that
//! - flushes every log every `ms` under [`FlushPolicy::Interval`],
//! - applies retention (time, size, retention floor) every `retention_check_interval_ms`,
//! - enforces the node-wide disk budget by deleting the oldest closed segments across all topics,
//! - then applies the backlog policy ([`crate::backlog`]); [`Maintenance::wake`] runs this pass
//!   at once (a retention floor moved while producers are held back),
//! - runs the log cleaner (compaction, [`crate::cleaner`]) every `cleaner_interval_ms`.
//!
//! Scheduling uses the monotonic clock ([`Instant`]), so a wall-clock jump (a board without RTC
//! syncing its time) neither stalls nor bursts the schedule; the wall clock is only handed to the
//! log's retention, whose clock-jump policy is the log engine's (see `docs/on-disk-format.md`).
//!
//! The thread works on a [`MaintenanceTasks`] (the broker implements it and starts the thread),
//! holds only a [`Weak`] reference to it and is stopped by [`Maintenance::stop`] (called from
//! `Broker::shutdown` and on drop). The per-log passes ([`flush_all`], [`apply_retention`],
//! [`clean_logs`], [`enforce_disk_budget`]) work on the logs they are given.
//!
//! The thread marks a [`Liveness`] each time round and while idle (at least every
//! [`crate::liveness::MARK_EVERY`]), so a watchdog sees when it is stuck in a pass.

use crate::clock::now_ms;
use crate::sync::LockExt;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::liveness::{self, Liveness};
use crate::log::{FlushPolicy, LogError, PartitionLog};

/// Default retention check interval (`BrokerConfig::retention_check_interval_ms`).
pub const DEFAULT_RETENTION_CHECK_INTERVAL_MS: u64 = 5000;
/// Default log cleaner interval (`BrokerConfig::cleaner_interval_ms`).
pub const DEFAULT_CLEANER_INTERVAL_MS: u64 = 15_000;
/// How often a thread stalled by the `stall_maintenance_while` failpoint looks at its file.
const STALL_POLL: Duration = Duration::from_millis(100);

/// The logs of a node: (topic, partition, log).
pub(crate) type Logs = [(String, i32, Arc<PartitionLog>)];

/// What the maintenance thread runs, in this order when retention is due (implemented by
/// [`crate::broker::Broker`]).
pub(crate) trait MaintenanceTasks: Send + Sync + 'static {
    /// fsync every log (the `Interval` flush policy).
    fn flush_all(&self);
    /// Apply retention to every log.
    fn run_retention(&self, now_ms: i64);
    /// Enforce the node-wide disk budget; the bytes freed.
    fn enforce_disk_budget(&self) -> u64;
    /// Apply the backlog policy.
    fn run_backlog_check(&self, now_ms: i64);
    /// Run the log cleaner over the compacted topics.
    fn run_cleaner(&self, now_ms: i64);
}

/// What the maintenance thread does, and how often.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// Interval flush period, when the flush policy is `Interval`.
    pub flush_every: Option<Duration>,
    /// Retention and disk-budget check period.
    pub retention_every: Duration,
    /// Log cleaner (compaction) period.
    pub clean_every: Duration,
}

impl Schedule {
    /// The schedule for a flush policy and a retention check interval in milliseconds.
    pub fn new(flush: FlushPolicy, retention_check_interval_ms: u64) -> Schedule {
        Schedule {
            flush_every: match flush {
                FlushPolicy::Always => None,
                FlushPolicy::Interval { ms } => Some(Duration::from_millis(ms.max(1))),
            },
            retention_every: Duration::from_millis(retention_check_interval_ms.max(1)),
            clean_every: Duration::from_millis(DEFAULT_CLEANER_INTERVAL_MS),
        }
    }

    /// The same schedule with the cleaner run every `ms` milliseconds.
    pub fn with_cleaner(mut self, ms: u64) -> Schedule {
        self.clean_every = Duration::from_millis(ms.max(1));
        self
    }
}

/// What the thread is asked to do between its scheduled runs.
#[derive(Debug, Default)]
struct Signal {
    stop: bool,
    /// Run the retention pass now.
    wake: bool,
}

/// Handle to the maintenance thread.
pub(crate) struct Maintenance {
    stop: Arc<(Mutex<Signal>, Condvar)>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Maintenance {
    /// Start the thread for `broker` (it ends when `broker` is dropped or on [`Self::stop`]); it
    /// marks `liveness` while it runs.
    pub fn start<T: MaintenanceTasks>(
        broker: Weak<T>,
        schedule: Schedule,
        liveness: Liveness,
    ) -> std::io::Result<Maintenance> {
        let stop = Arc::new((Mutex::new(Signal::default()), Condvar::new()));
        let thread_stop = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("rill-maintenance".into())
            .spawn(move || run(broker, schedule, thread_stop, liveness))?;
        Ok(Maintenance {
            stop,
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Ask the thread to stop and wait for it (unless called from the thread itself).
    pub fn stop(&self) {
        {
            let (flag, cvar) = &*self.stop;
            flag.lock_unpoisoned().stop = true;
            cvar.notify_all();
        }
        let handle = self.handle.lock_unpoisoned().take();
        if let Some(h) = handle {
            if h.thread().id() == std::thread::current().id() {
                return; // dropped from inside the thread: it exits on its own.
            }
            if h.join().is_err() {
                tracing::error!("maintenance thread panicked");
            }
        }
    }
}

impl Maintenance {
    /// Run the retention, disk budget and backlog pass now (coalesced: several wakes before the
    /// thread gets to it make one pass).
    pub fn wake(&self) {
        let (flag, cvar) = &*self.stop;
        flag.lock_unpoisoned().wake = true;
        cvar.notify_all();
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run<T: MaintenanceTasks>(
    broker: Weak<T>,
    schedule: Schedule,
    stop: Arc<(Mutex<Signal>, Condvar)>,
    liveness: Liveness,
) {
    let start = Instant::now();
    let mut next_flush = schedule.flush_every.map(|d| start + d);
    let mut next_retention = start + schedule.retention_every;
    let mut next_clean = start + schedule.clean_every;
    let (flag, cvar) = &*stop;
    loop {
        if crate::failpoints::maintenance_stalled() {
            // Failpoint `stall_maintenance_while`: stuck without marking, as on a hung disk.
            tracing::warn!("failpoint: storage maintenance stalled");
            let mut signal = flag.lock_unpoisoned();
            while crate::failpoints::maintenance_stalled() {
                if signal.stop {
                    return;
                }
                signal = crate::sync::wait_timeout_unpoisoned(cvar, signal, STALL_POLL);
            }
            tracing::warn!("failpoint: storage maintenance resumes");
            continue;
        }
        let due = next_flush
            .map_or(next_retention, |f| f.min(next_retention))
            .min(next_clean);
        let woken = {
            let mut signal = flag.lock_unpoisoned();
            loop {
                liveness.mark();
                if signal.stop {
                    return;
                }
                if std::mem::take(&mut signal.wake) {
                    break true;
                }
                let now = Instant::now();
                if now >= due || crate::failpoints::maintenance_stalled() {
                    break false;
                }
                let wait = (due - now).min(liveness::MARK_EVERY);
                signal = crate::sync::wait_timeout_unpoisoned(cvar, signal, wait);
            }
        };
        let Some(broker) = broker.upgrade() else {
            return;
        };
        let now = Instant::now();
        if let (Some(at), Some(every)) = (next_flush, schedule.flush_every) {
            if now >= at {
                broker.flush_all();
                next_flush = Some(Instant::now() + every);
            }
        }
        if woken || now >= next_retention {
            broker.run_retention(now_ms());
            broker.enforce_disk_budget();
            broker.run_backlog_check(now_ms());
            next_retention = Instant::now() + schedule.retention_every;
        }
        if now >= next_clean {
            broker.run_cleaner(now_ms());
            next_clean = Instant::now() + schedule.clean_every;
        }
    }
}

/// Run the log cleaner over `logs` (it does nothing for logs of topics that do not compact).
pub(crate) fn clean_logs(logs: &Logs, now_ms: i64) {
    for (topic, partition, log) in logs {
        match crate::cleaner::clean(log, now_ms) {
            Ok(_) | Err(LogError::Closed) => {}
            Err(e) => tracing::warn!(%topic, partition, error = %e, "compaction failed"),
        }
    }
}

/// fsync every log of `logs`.
pub(crate) fn flush_all(logs: &Logs) {
    for (topic, partition, log) in logs {
        match log.flush() {
            Ok(()) | Err(LogError::Closed) => {}
            Err(e) => tracing::warn!(%topic, partition, error = %e, "interval flush failed"),
        }
    }
}

/// Apply retention to every log of `logs`.
pub(crate) fn apply_retention(logs: &Logs, now_ms: i64) {
    for (topic, partition, log) in logs {
        match log.apply_retention(now_ms) {
            Ok(_) | Err(LogError::Closed) => {}
            Err(e) => tracing::warn!(%topic, partition, error = %e, "retention failed"),
        }
    }
}

/// The retention operations of a log the disk budget needs (implemented by [`PartitionLog`];
/// a trait so the selection policy can be tested on its own).
pub(crate) trait BudgetTarget {
    /// Bytes on disk.
    fn size_bytes(&self) -> u64;
    /// Time of the oldest closed (non-active) segment, if there is one.
    fn oldest_closed_segment_time(&self) -> Option<i64>;
    /// Delete the oldest closed segment; the bytes freed, or `None` if there was none.
    fn delete_oldest_segment(&self) -> Result<Option<u64>, LogError>;
}

impl BudgetTarget for PartitionLog {
    fn size_bytes(&self) -> u64 {
        PartitionLog::size_bytes(self)
    }
    fn oldest_closed_segment_time(&self) -> Option<i64> {
        PartitionLog::oldest_segment_timestamp(self)
    }
    fn delete_oldest_segment(&self) -> Result<Option<u64>, LogError> {
        PartitionLog::delete_oldest_segment(self)
    }
}

/// Delete oldest closed segments across `logs` (oldest segment time first) until their total
/// size is at most `budget`, or nothing but active segments is left. Returns the bytes freed.
pub(crate) fn enforce_disk_budget<L: BudgetTarget>(
    logs: &[(String, i32, Arc<L>)],
    budget: u64,
) -> u64 {
    let mut total: u64 = logs.iter().map(|(_, _, l)| l.size_bytes()).sum();
    if total <= budget {
        return 0;
    }
    tracing::warn!(
        total_bytes = total,
        budget_bytes = budget,
        "disk budget exceeded: deleting the oldest segments across topics"
    );
    let mut freed_total = 0u64;
    // Logs that failed to delete are skipped for the rest of this round.
    let mut skip = vec![false; logs.len()];
    while total > budget {
        let oldest = logs
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip[*i])
            .filter_map(|(i, (_, _, l))| l.oldest_closed_segment_time().map(|t| (t, i)))
            .min();
        let Some((time, i)) = oldest else {
            tracing::warn!(
                total_bytes = total,
                budget_bytes = budget,
                "disk budget still exceeded, but only active segments are left"
            );
            break;
        };
        let (topic, partition, log) = &logs[i];
        match log.delete_oldest_segment() {
            Ok(Some(freed)) => {
                tracing::warn!(%topic, partition, segment_time = time, freed_bytes = freed, "disk budget: deleted oldest segment");
                freed_total += freed;
                total = total.saturating_sub(freed);
            }
            Ok(None) => skip[i] = true,
            Err(e) => {
                tracing::warn!(%topic, partition, error = %e, "disk budget: could not delete segment");
                skip[i] = true;
            }
        }
    }
    freed_total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log made of segments (time, bytes); the last one is active.
    struct FakeLog(Mutex<Vec<(i64, u64)>>);

    impl FakeLog {
        fn new(segments: &[(i64, u64)]) -> Arc<FakeLog> {
            Arc::new(FakeLog(Mutex::new(segments.to_vec())))
        }
        fn segments(&self) -> Vec<(i64, u64)> {
            self.0.lock().unwrap().clone()
        }
    }

    impl BudgetTarget for FakeLog {
        fn size_bytes(&self) -> u64 {
            self.0.lock().unwrap().iter().map(|s| s.1).sum()
        }
        fn oldest_closed_segment_time(&self) -> Option<i64> {
            let s = self.0.lock().unwrap();
            (s.len() > 1).then(|| s[0].0)
        }
        fn delete_oldest_segment(&self) -> Result<Option<u64>, LogError> {
            let mut s = self.0.lock().unwrap();
            if s.len() > 1 {
                Ok(Some(s.remove(0).1))
            } else {
                Ok(None)
            }
        }
    }

    #[test]
    fn deletes_oldest_first_across_logs_until_under_budget() {
        let a = FakeLog::new(&[(10, 100), (30, 100), (50, 100)]);
        let b = FakeLog::new(&[(20, 100), (40, 100), (60, 100)]);
        let logs = vec![
            ("a".to_string(), 0, Arc::clone(&a)),
            ("b".to_string(), 0, Arc::clone(&b)),
        ];
        // 600 bytes, budget 350: delete a@10, b@20, a@30 (300 bytes).
        let freed = enforce_disk_budget(&logs, 350);
        assert_eq!(freed, 300);
        assert_eq!(a.segments(), vec![(50, 100)]);
        assert_eq!(b.segments(), vec![(40, 100), (60, 100)]);
        // Under budget: nothing happens.
        assert_eq!(enforce_disk_budget(&logs, 1000), 0);
    }

    #[test]
    fn never_deletes_active_segments() {
        let a = FakeLog::new(&[(10, 100), (20, 500)]);
        let logs = vec![("a".to_string(), 0, Arc::clone(&a))];
        assert_eq!(enforce_disk_budget(&logs, 10), 100);
        assert_eq!(a.segments(), vec![(20, 500)]);
    }

    #[test]
    fn schedule_from_policy() {
        let s = Schedule::new(FlushPolicy::Always, 5000);
        assert_eq!(s.flush_every, None);
        assert_eq!(s.retention_every, Duration::from_secs(5));
        assert_eq!(
            s.clean_every,
            Duration::from_millis(crate::broker::DEFAULT_CLEANER_INTERVAL_MS)
        );
        assert_eq!(s.with_cleaner(200).clean_every, Duration::from_millis(200));
        let s = Schedule::new(FlushPolicy::Interval { ms: 0 }, 0);
        assert_eq!(s.flush_every, Some(Duration::from_millis(1)));
        assert_eq!(s.retention_every, Duration::from_millis(1));
    }
}
