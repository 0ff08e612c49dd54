//! The backlog policy: what happens when data held by a retention floor (records the bridge has
//! not mirrored yet, see [`crate::log::PartitionLog::set_retention_floor`]) nears the topic's
//! retention or the node's disk budget.
//!
//! A partition is *over* when the floor keeps at least one closed segment from deletion and
//! - the bytes from the floor on (the unmirrored backlog, active segment included, counted as
//!   `retention.bytes` counts them) exceed `retention.bytes × high_water`, or
//! - the oldest held segment is older than `retention.ms × high_water` (under retention's clock
//!   policy, [`crate::retention::time_expired`]).
//!
//! The node is over when floors hold closed segments somewhere and the bytes that neither
//! retention nor the disk budget may free (held closed segments and every active segment)
//! exceed `disk_budget_bytes × high_water`.
//!
//! Then the configured [`BacklogPolicy`] applies, in the maintenance pass right after retention
//! and the disk budget:
//! - [`BacklogPolicy::Pause`]: producers to the topic (every topic when the node is over) are
//!   held back ([`Backlog::blocks`], [`Backlog::wait_writable`]): Kafka Produce waits up to its
//!   `timeout_ms` and then answers `REQUEST_TIMED_OUT`, MQTT stops reading the connection. The
//!   pressure is re-evaluated when a floor moves ([`crate::broker::Broker::set_retention_floor`]
//!   wakes the maintenance thread while anything is paused).
//! - [`BacklogPolicy::DropOldest`]: the oldest closed segments are deleted although the floor
//!   holds them, until the partition (or the node) is back under the limit; the unmirrored
//!   records lost are counted ([`Backlog::dropped_records`]) and logged with topic, partition and
//!   offsets. The bridge then continues from the new log start.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::log::{LogError, PartitionLog};
use crate::topic_config::{CleanupPolicy, TopicConfig};

/// Default [`BacklogConfig::high_water`].
pub const DEFAULT_HIGH_WATER: f64 = 0.9;

/// What to do when unmirrored data nears the retention or disk limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BacklogPolicy {
    /// Hold producers back (Kafka and MQTT backpressure) until the bridge catches up. Default.
    #[default]
    Pause,
    /// Delete the oldest data although it is not mirrored yet, with a metric and a log line.
    DropOldest,
}

impl BacklogPolicy {
    /// The configuration name: `pause` or `drop_oldest`.
    pub fn name(self) -> &'static str {
        match self {
            BacklogPolicy::Pause => "pause",
            BacklogPolicy::DropOldest => "drop_oldest",
        }
    }
}

impl FromStr for BacklogPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pause" => Ok(BacklogPolicy::Pause),
            "drop_oldest" => Ok(BacklogPolicy::DropOldest),
            other => Err(format!(
                "unknown backlog policy '{other}', expected \"pause\" or \"drop_oldest\""
            )),
        }
    }
}

/// The node's backlog settings (`[storage] backlog_policy`, `backlog_high_water`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BacklogConfig {
    /// The policy.
    pub policy: BacklogPolicy,
    /// Fraction of a limit (retention.bytes, retention.ms, disk budget) at which it applies.
    pub high_water: f64,
}

impl Default for BacklogConfig {
    fn default() -> Self {
        BacklogConfig {
            policy: BacklogPolicy::Pause,
            high_water: DEFAULT_HIGH_WATER,
        }
    }
}

/// Whether `high_water` is a usable fraction: in (0, 1].
pub fn valid_high_water(high_water: f64) -> bool {
    high_water > 0.0 && high_water <= 1.0
}

/// `limit × high_water`, rounded down.
pub fn scaled(limit: u64, high_water: f64) -> u64 {
    (limit as f64 * high_water).floor() as u64
}

/// What a retention floor holds back in one log (computed by
/// [`PartitionLog::backlog_view`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BacklogView {
    /// The retention floor, if set.
    pub floor: Option<i64>,
    /// Log bytes (as `retention.bytes` counts them) of the segments holding offsets >= floor,
    /// the active segment included; 0 without a floor.
    pub backlog_bytes: u64,
    /// Closed segments the floor keeps from deletion.
    pub held_segments: usize,
    /// Whether the oldest held closed segment is past `retention.ms × high_water`.
    pub oldest_held_expired: bool,
    /// Reference time of the oldest held closed segment (for a node-wide oldest-first choice).
    pub oldest_held_time: Option<i64>,
    /// Disk bytes neither retention nor the disk budget may free: the held closed segments and
    /// the active segment (data and index files).
    pub pinned_disk_bytes: u64,
}

/// Whether one partition's held backlog is over its limits (see the module doc).
pub fn partition_over(view: &BacklogView, cfg: &TopicConfig, high_water: f64) -> bool {
    if view.floor.is_none() || view.held_segments == 0 {
        return false;
    }
    if cfg.cleanup_policy == CleanupPolicy::Compact {
        return false; // retention does not delete from a compact-only topic anyway.
    }
    let over_size = cfg.retention_bytes >= 0
        && view.backlog_bytes > scaled(cfg.retention_bytes as u64, high_water);
    over_size || view.oldest_held_expired
}

/// Whether the node is over its disk budget's high water because of held data.
pub fn node_over(
    pinned_disk_bytes: u64,
    held_segments: usize,
    budget: u64,
    high_water: f64,
) -> bool {
    held_segments > 0 && pinned_disk_bytes > scaled(budget, high_water)
}

/// A closed segment deleted by [`BacklogPolicy::DropOldest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DroppedSegment {
    /// Bytes freed on disk.
    pub freed_bytes: u64,
    /// Unmirrored offsets lost, `[first, end)`; empty when the segment lay below the floor.
    pub first: i64,
    /// End (exclusive) of the unmirrored offsets lost.
    pub end: i64,
}

impl DroppedSegment {
    /// Number of unmirrored records (offsets) lost.
    pub fn records(&self) -> u64 {
        u64::try_from(self.end - self.first).unwrap_or(0)
    }
}

/// Which topics producers are held back from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pressure {
    /// Every topic (the node's disk budget is near).
    pub node: bool,
    /// Topics with a partition over its retention high water.
    pub topics: BTreeSet<String>,
}

impl Pressure {
    /// Whether producing to `topic` is held back.
    pub fn blocks(&self, topic: &str) -> bool {
        self.node || self.topics.contains(topic)
    }

    /// Whether anything is held back.
    pub fn any(&self) -> bool {
        self.node || !self.topics.is_empty()
    }
}

/// The node's backlog state: configuration, current pressure (an event producers wait on) and
/// the dropped-records counter.
#[derive(Debug)]
pub struct Backlog {
    config: BacklogConfig,
    pressure: tokio::sync::watch::Sender<Pressure>,
    dropped_records: AtomicU64,
}

impl Backlog {
    /// Fresh state: nothing paused, nothing dropped.
    pub fn new(config: BacklogConfig) -> Backlog {
        Backlog {
            config,
            pressure: tokio::sync::watch::channel(Pressure::default()).0,
            dropped_records: AtomicU64::new(0),
        }
    }

    /// The settings.
    pub fn config(&self) -> BacklogConfig {
        self.config
    }

    /// The current pressure.
    pub fn pressure(&self) -> Pressure {
        self.pressure.borrow().clone()
    }

    /// Whether producing to `topic` is held back now.
    pub fn blocks(&self, topic: &str) -> bool {
        self.pressure.borrow().blocks(topic)
    }

    /// Whether producing to any of `topics` is held back now.
    pub fn blocks_any<'a>(&self, mut topics: impl Iterator<Item = &'a str>) -> bool {
        let p = self.pressure.borrow();
        p.any() && topics.any(|t| p.blocks(t))
    }

    /// Resolves once none of `topics` is held back (immediately if none is). Callers bound it
    /// with their own timeout.
    pub async fn wait_writable(&self, topics: &[&str]) {
        let mut rx = self.pressure.subscribe();
        // The sender lives as long as `self`, so `wait_for` only ends when the condition holds.
        let _ = rx.wait_for(|p| !topics.iter().any(|t| p.blocks(t))).await;
    }

    /// Unmirrored records deleted by the drop-oldest policy since the node started.
    pub fn dropped_records(&self) -> u64 {
        self.dropped_records.load(Ordering::Relaxed)
    }

    /// Publish a new pressure state; logs transitions. Returns whether it changed.
    fn publish(&self, new: Pressure) -> bool {
        self.pressure.send_if_modified(|cur| {
            if *cur == new {
                return false;
            }
            if new.node != cur.node {
                if new.node {
                    tracing::warn!("backlog: unmirrored data near the disk budget; pausing producers of every topic");
                } else {
                    tracing::info!("backlog: disk budget pressure cleared; producers resume");
                }
            }
            for t in new.topics.difference(&cur.topics) {
                tracing::warn!(topic = %t, "backlog: unmirrored data near the topic's retention; pausing its producers");
            }
            for t in cur.topics.difference(&new.topics) {
                tracing::info!(topic = %t, "backlog: retention pressure cleared; producers resume");
            }
            *cur = new;
            true
        })
    }

    fn count_drop(&self, topic: &str, partition: i32, d: &DroppedSegment, why: &str) {
        if d.records() == 0 {
            return;
        }
        self.dropped_records
            .fetch_add(d.records(), Ordering::Relaxed);
        tracing::warn!(
            %topic,
            partition,
            first_offset = d.first,
            last_offset = d.end - 1,
            records = d.records(),
            reason = why,
            "backlog: dropped unmirrored records (backlog_policy = drop_oldest)"
        );
    }
}

impl PartitionLog {
    /// What the retention floor holds back (see [`crate::backlog`]): the backlog from the floor
    /// on, the closed segments it keeps, and whether the oldest of them is past
    /// `retention.ms × high_water`.
    pub fn backlog_view(&self, now_ms: i64, high_water: f64) -> Result<BacklogView, LogError> {
        self.check_open()?;
        let floor = self.retention_floor();
        let cfg = self.cfg();
        let s = self.segs();
        let n = s.map.len();
        let mut view = BacklogView {
            floor,
            ..BacklogView::default()
        };
        for (i, seg) in s.map.values().enumerate() {
            let st = seg.state();
            let disk = st.size + st.index_file_len + st.time_file_len;
            let active = i + 1 == n;
            let held = floor.is_some_and(|f| st.next_offset > f);
            drop(st);
            if held {
                view.backlog_bytes += seg.size();
            }
            if active {
                view.pinned_disk_bytes += disk;
            } else if held {
                view.pinned_disk_bytes += disk;
                if view.held_segments == 0 {
                    view.oldest_held_time = Some(seg.state().max_timestamp.max(seg.created_ms));
                    view.oldest_held_expired = cfg.retention_ms >= 0
                        && crate::retention::time_expired(
                            seg,
                            now_ms,
                            (cfg.retention_ms as f64 * high_water) as i64,
                        );
                }
                view.held_segments += 1;
            }
        }
        Ok(view)
    }

    /// Delete the oldest closed segment even though the retention floor holds it (the backlog
    /// policy `drop_oldest`). Returns what was lost, or `None` if there is no closed segment or
    /// a mirror is sending records of it right now (the in-flight floor: it is dropped, if still
    /// needed, once that send ended).
    pub fn drop_oldest_segment(&self) -> Result<Option<DroppedSegment>, LogError> {
        self.with_writer(|| {
            let floor = self.retention_floor();
            let (victim, log_start) = {
                let s = self.segs();
                match s.oldest_closed() {
                    Some(seg) => (seg.clone(), s.log_start),
                    None => return Ok(None),
                }
            };
            let end = victim.next_offset();
            if self.in_flight_floor().is_some_and(|f| end > f) {
                return Ok(None);
            }
            let first = floor.map_or(end, |f| f.max(log_start).max(victim.base_offset).min(end));
            let freed_bytes = self.remove_segment(&victim)?;
            Ok(Some(DroppedSegment {
                freed_bytes,
                first,
                end,
            }))
        })
    }
}

/// The maintenance pass over `logs` (topic, partition, log: every log of the node) and a node
/// with `disk_budget_bytes`: apply the policy to every log and to the node, then publish the new
/// pressure. Runs after retention and the disk budget.
pub(crate) fn apply(
    backlog: &Backlog,
    logs: Vec<(String, i32, Arc<PartitionLog>)>,
    disk_budget_bytes: Option<u64>,
    now_ms: i64,
) {
    let cfg = backlog.config();
    let hw = cfg.high_water;
    let mut pressure = Pressure::default();
    let mut views: Vec<(String, i32, Arc<PartitionLog>, BacklogView)> = Vec::new();
    for (topic, partition, log) in logs {
        let topic_cfg = log.config();
        let Ok(mut view) = log.backlog_view(now_ms, hw) else {
            continue; // closed
        };
        if partition_over(&view, &topic_cfg, hw) {
            match cfg.policy {
                BacklogPolicy::Pause => {
                    pressure.topics.insert(topic.clone());
                }
                BacklogPolicy::DropOldest => {
                    while partition_over(&view, &topic_cfg, hw) {
                        match drop_one(backlog, &topic, partition, &log, "retention") {
                            Some(()) => {}
                            None => break,
                        }
                        match log.backlog_view(now_ms, hw) {
                            Ok(v) => view = v,
                            Err(_) => break,
                        }
                    }
                }
            }
        }
        views.push((topic, partition, log, view));
    }
    if let Some(budget) = disk_budget_bytes {
        let totals = |views: &[(String, i32, Arc<PartitionLog>, BacklogView)]| {
            views.iter().fold((0u64, 0usize), |(b, n), (_, _, _, v)| {
                (b + v.pinned_disk_bytes, n + v.held_segments)
            })
        };
        let (pinned, held) = totals(&views);
        if node_over(pinned, held, budget, hw) {
            match cfg.policy {
                BacklogPolicy::Pause => pressure.node = true,
                BacklogPolicy::DropOldest => loop {
                    let (pinned, held) = totals(&views);
                    if !node_over(pinned, held, budget, hw) {
                        break;
                    }
                    let oldest = views
                        .iter()
                        .enumerate()
                        .filter_map(|(i, (_, _, _, v))| v.oldest_held_time.map(|t| (t, i)))
                        .min();
                    let Some((_, i)) = oldest else { break };
                    let (topic, partition, log, view) = &mut views[i];
                    let dropped = drop_one(backlog, topic, *partition, log, "disk budget");
                    match (dropped, log.backlog_view(now_ms, hw)) {
                        (Some(()), Ok(v)) => *view = v,
                        // Nothing more to take from this log in this pass.
                        _ => *view = BacklogView::default(),
                    }
                },
            }
        }
    }
    backlog.publish(pressure);
}

/// Delete the oldest closed segment of `log` regardless of its floor; `None` if there is none
/// (or it failed, which is logged).
fn drop_one(
    backlog: &Backlog,
    topic: &str,
    partition: i32,
    log: &PartitionLog,
    why: &str,
) -> Option<()> {
    match log.drop_oldest_segment() {
        Ok(Some(d)) => {
            backlog.count_drop(topic, partition, &d, why);
            Some(())
        }
        Ok(None) | Err(LogError::Closed) => None,
        Err(e) => {
            tracing::warn!(%topic, partition, error = %e, "backlog: could not drop the oldest segment");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(backlog_bytes: u64, held: usize, expired: bool) -> BacklogView {
        BacklogView {
            floor: Some(10),
            backlog_bytes,
            held_segments: held,
            oldest_held_expired: expired,
            oldest_held_time: None,
            pinned_disk_bytes: 0,
        }
    }

    fn topic_cfg(retention_bytes: i64) -> TopicConfig {
        TopicConfig {
            retention_bytes,
            ..TopicConfig::default()
        }
    }

    #[test]
    fn high_water_math() {
        assert_eq!(scaled(1000, 0.9), 900);
        assert_eq!(scaled(1000, 1.0), 1000);
        assert_eq!(scaled(7, 0.5), 3);
        assert!(valid_high_water(0.9) && valid_high_water(1.0));
        assert!(!valid_high_water(0.0) && !valid_high_water(1.5) && !valid_high_water(f64::NAN));
        assert_eq!("pause".parse(), Ok(BacklogPolicy::Pause));
        assert_eq!("drop_oldest".parse(), Ok(BacklogPolicy::DropOldest));
        assert!("drop".parse::<BacklogPolicy>().is_err());
        assert_eq!(BacklogConfig::default().policy, BacklogPolicy::Pause);
    }

    #[test]
    fn partition_is_over_only_when_the_floor_holds_segments_past_high_water() {
        let cfg = topic_cfg(1000);
        assert!(
            !partition_over(&view(900, 3, false), &cfg, 0.9),
            "at the mark"
        );
        assert!(partition_over(&view(901, 3, false), &cfg, 0.9), "past it");
        assert!(
            !partition_over(&view(5000, 0, false), &cfg, 0.9),
            "nothing held"
        );
        let mut no_floor = view(5000, 3, true);
        no_floor.floor = None;
        assert!(!partition_over(&no_floor, &cfg, 0.9), "no floor");
        assert!(partition_over(&view(10, 1, true), &cfg, 0.9), "too old");
        assert!(
            !partition_over(&view(5000, 3, false), &topic_cfg(-1), 0.9),
            "no size limit"
        );
        let compact = TopicConfig {
            cleanup_policy: CleanupPolicy::Compact,
            ..topic_cfg(10)
        };
        assert!(!partition_over(&view(5000, 3, true), &compact, 0.9));
    }

    #[test]
    fn node_is_over_only_with_held_data() {
        assert!(node_over(901, 1, 1000, 0.9));
        assert!(!node_over(900, 1, 1000, 0.9));
        assert!(
            !node_over(5000, 0, 1000, 0.9),
            "active segments alone never pause"
        );
    }

    #[test]
    fn pressure_blocks_topics_and_wakes_waiters() {
        let b = Backlog::new(BacklogConfig::default());
        assert!(!b.blocks("a"));
        let mut p = Pressure::default();
        p.topics.insert("a".into());
        assert!(b.publish(p.clone()));
        assert!(!b.publish(p), "unchanged");
        assert!(b.blocks("a") && !b.blocks("b"));
        assert!(b.blocks_any(["b", "a"].into_iter()));
        assert!(!b.blocks_any(["b"].into_iter()));
        // Already writable: resolves at once.
        assert!(poll_once(b.wait_writable(&["b"])));
        let mut wait = Box::pin(b.wait_writable(&["a"]));
        assert!(!poll_once(wait.as_mut()), "held back");
        b.publish(Pressure::default());
        assert!(
            poll_once(wait.as_mut()),
            "released when the pressure clears"
        );
        b.publish(Pressure {
            node: true,
            topics: BTreeSet::new(),
        });
        assert!(b.blocks("anything"));
    }

    mod with_broker {
        use std::collections::BTreeMap;

        use crate::backlog::BacklogPolicy;
        use crate::broker::{Broker, BrokerConfig, KeySource};
        use crate::clock::now_ms;
        use crate::log::{FlushPolicy, PartitionLog};

        fn open(
            dir: &std::path::Path,
            policy: BacklogPolicy,
            budget: Option<u64>,
        ) -> std::sync::Arc<Broker> {
            let mut c = BrokerConfig::new(dir.join("data"), KeySource::Env("11".repeat(32)));
            c.flush = FlushPolicy::Interval { ms: 50 };
            c.retention_check_interval_ms = 3_600_000;
            c.backlog.policy = policy;
            c.disk_budget_bytes = budget;
            Broker::open(c).unwrap()
        }

        /// A topic whose every batch is a segment of its own, with `retention.bytes` = 1 (only
        /// the active segment would be kept without a floor).
        fn topic(b: &Broker, name: &str, retention_bytes: &str) -> std::sync::Arc<PartitionLog> {
            let cfg: BTreeMap<String, String> = [
                ("segment.bytes".to_string(), "14".to_string()),
                ("retention.bytes".to_string(), retention_bytes.to_string()),
            ]
            .into();
            b.create_topic(name, 1, &cfg, false).unwrap();
            b.partition(name, 0).unwrap()
        }

        fn append(log: &PartitionLog, n: usize) {
            for _ in 0..n {
                let batch = crate::batch::test_util::batch(&[b"value"], 1_000);
                log.append(&batch).unwrap();
            }
        }

        fn pass(b: &Broker) {
            b.run_retention(now_ms());
            b.enforce_disk_budget();
            b.run_backlog_check(now_ms());
        }

        #[test]
        fn floor_holds_unmirrored_data_and_pause_clears_when_it_moves() {
            let tmp = tempfile::tempdir().unwrap();
            let b = open(tmp.path(), BacklogPolicy::Pause, None);
            let log = topic(&b, "t", "1");
            b.set_retention_floor("t", 0, Some(0)).unwrap();
            append(&log, 5);
            pass(&b);
            assert_eq!(
                log.log_start_offset(),
                0,
                "the floor keeps unmirrored segments"
            );
            assert!(
                b.backlog().blocks("t"),
                "over retention.bytes: producers paused"
            );
            assert!(!b.backlog().blocks("other"));
            assert_eq!(b.backlog().dropped_records(), 0, "pause never drops");
            // The bridge mirrors up to offset 3: the segments below it go, one is still held.
            b.set_retention_floor("t", 0, Some(3)).unwrap();
            pass(&b);
            assert_eq!(log.log_start_offset(), 3);
            assert!(b.backlog().blocks("t"));
            // Everything mirrored: retention deletes again and the pressure clears.
            b.set_retention_floor("t", 0, Some(log.log_end_offset()))
                .unwrap();
            pass(&b);
            assert_eq!(log.log_start_offset(), 4, "only the active segment is left");
            assert!(!b.backlog().blocks("t"));
            // Lifting the floor: plain retention.
            b.set_retention_floor("t", 0, None).unwrap();
            append(&log, 2);
            pass(&b);
            assert_eq!(log.log_start_offset(), 6);
            assert!(!b.backlog().blocks("t"));
            b.shutdown().unwrap();
        }

        #[test]
        fn held_data_nearing_retention_ms_pauses() {
            let tmp = tempfile::tempdir().unwrap();
            let b = open(tmp.path(), BacklogPolicy::Pause, None);
            let cfg: BTreeMap<String, String> = [
                ("segment.bytes".to_string(), "14".to_string()),
                ("retention.ms".to_string(), "60".to_string()),
            ]
            .into();
            b.create_topic("t", 1, &cfg, false).unwrap();
            let log = b.partition("t", 0).unwrap();
            b.set_retention_floor("t", 0, Some(0)).unwrap();
            let ts = now_ms() - 1_000;
            for _ in 0..3 {
                let batch = crate::batch::test_util::batch(&[b"value"], ts);
                log.append(&batch).unwrap();
            }
            // Segments created by this process are also kept until retention.ms old on the
            // monotonic clock: poll until that has passed.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !b.backlog().blocks("t") {
                assert!(std::time::Instant::now() < deadline, "never paused");
                std::thread::sleep(std::time::Duration::from_millis(20));
                pass(&b);
            }
            assert_eq!(log.log_start_offset(), 0, "held, not deleted");
            b.set_retention_floor("t", 0, Some(3)).unwrap();
            pass(&b);
            assert!(!b.backlog().blocks("t"), "nothing held: cleared");
            // Expired and mirrored: retention deletes (each segment once its monotonic age is
            // past retention.ms).
            while log.log_start_offset() < 2 {
                assert!(std::time::Instant::now() < deadline, "never deleted");
                std::thread::sleep(std::time::Duration::from_millis(20));
                pass(&b);
            }
            b.shutdown().unwrap();
        }

        #[test]
        fn below_high_water_nothing_happens() {
            let tmp = tempfile::tempdir().unwrap();
            let b = open(tmp.path(), BacklogPolicy::DropOldest, None);
            let log = topic(&b, "t", "1000000");
            b.set_retention_floor("t", 0, Some(0)).unwrap();
            append(&log, 5);
            pass(&b);
            assert_eq!(log.log_start_offset(), 0);
            assert!(!b.backlog().blocks("t"));
            assert_eq!(b.backlog().dropped_records(), 0);
            b.shutdown().unwrap();
        }

        #[test]
        fn drop_oldest_deletes_held_segments_and_counts_records() {
            let tmp = tempfile::tempdir().unwrap();
            let b = open(tmp.path(), BacklogPolicy::DropOldest, None);
            let log = topic(&b, "t", "1");
            b.set_retention_floor("t", 0, Some(1)).unwrap();
            append(&log, 5);
            pass(&b);
            // Offset 0 was mirrored (below the floor): retention deleted it, not counted. Offsets
            // 1..=3 were held and are dropped; 4 is in the active segment.
            assert_eq!(log.log_start_offset(), 4);
            assert_eq!(b.backlog().dropped_records(), 3);
            assert!(!b.backlog().blocks("t"), "drop_oldest never pauses");
            b.shutdown().unwrap();
        }

        #[test]
        fn drop_oldest_leaves_a_segment_a_mirror_is_sending() {
            let tmp = tempfile::tempdir().unwrap();
            let b = open(tmp.path(), BacklogPolicy::DropOldest, None);
            let log = topic(&b, "t", "1");
            b.set_retention_floor("t", 0, Some(1)).unwrap();
            log.set_in_flight_floor(Some(1));
            append(&log, 5);
            pass(&b);
            // Offset 0 is mirrored and deleted; the segment holding offset 1, which a mirror is
            // sending, stays, and so does everything after it (segments go from the front).
            assert_eq!(log.log_start_offset(), 1);
            assert_eq!(b.backlog().dropped_records(), 0);
            // The send was acknowledged: offset 1 is mirrored, 2..=3 are dropped and counted.
            b.set_retention_floor("t", 0, Some(2)).unwrap();
            log.set_in_flight_floor(None);
            pass(&b);
            assert_eq!(log.log_start_offset(), 4);
            assert_eq!(b.backlog().dropped_records(), 2);
            b.shutdown().unwrap();
        }

        #[test]
        fn disk_budget_pauses_every_topic_or_drops_oldest_across_topics() {
            let tmp = tempfile::tempdir().unwrap();
            let b = open(tmp.path(), BacklogPolicy::Pause, Some(1));
            let log = topic(&b, "a", "-1");
            b.set_retention_floor("a", 0, Some(0)).unwrap();
            append(&log, 3);
            pass(&b);
            assert_eq!(log.log_start_offset(), 0, "the budget respects the floor");
            assert!(
                b.backlog().blocks("a") && b.backlog().blocks("any"),
                "node-wide pause"
            );
            b.set_retention_floor("a", 0, Some(3)).unwrap();
            pass(&b);
            assert_eq!(log.log_start_offset(), 2, "budget deleted what is mirrored");
            assert!(
                !b.backlog().blocks("any"),
                "only active segments are left: cleared"
            );
            b.shutdown().unwrap();
            drop(b);

            let tmp = tempfile::tempdir().unwrap();
            let b = open(tmp.path(), BacklogPolicy::DropOldest, Some(1));
            let a = topic(&b, "a", "-1");
            let c = topic(&b, "c", "-1");
            b.set_retention_floor("a", 0, Some(0)).unwrap();
            b.set_retention_floor("c", 0, Some(0)).unwrap();
            append(&a, 3);
            append(&c, 4);
            pass(&b);
            assert_eq!((a.log_start_offset(), c.log_start_offset()), (2, 3));
            assert_eq!(b.backlog().dropped_records(), 5);
            assert!(!b.backlog().blocks("a"));
            b.shutdown().unwrap();
        }
    }

    /// Polls a future once with a no-op waker: whether it completed.
    fn poll_once<F: std::future::Future>(f: F) -> bool {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        f.as_mut().poll(&mut cx).is_ready()
    }
}
