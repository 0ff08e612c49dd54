//! Retention: which closed segments of a partition log to delete by `retention.ms` /
//! `retention.bytes` ([`PartitionLog::apply_retention`]) and by the node's disk budget
//! ([`PartitionLog::delete_oldest_segment`]), under a clock policy that survives boards booting in
//! 1970. (Rolling by `segment.ms` is the log's own decision, [`crate::log::segments`].)
//!
//! Clock policy (also in `docs/on-disk-format.md`):
//! - Time retention is skipped entirely while the wall clock is not *sane* (before
//!   [`SANE_CLOCK_FLOOR_MS`], 2020-01-01): a board that booted without RTC cannot judge age.
//! - A segment's reference time is its largest batch timestamp, but only if that timestamp is sane,
//!   not more than [`FUTURE_SLACK_MS`] ahead of now, and the segment was created with a sane clock.
//!   Otherwise (written in "1970", or producer clocks far in the future) the reference time is the
//!   first sane wall-clock time at which retention looked at the segment: it is then kept for a full
//!   `retention.ms` after the clock became trustworthy.
//! - A segment created by this process is additionally kept until it is `retention.ms` old on the
//!   monotonic clock, so a forward clock jump cannot delete fresh data.
//! - `retention.bytes` deletes oldest segments while the log minus the oldest segment is still at
//!   least `retention.bytes`; it does not depend on clocks.
//! - Never the active segment, never a segment holding offsets >= the retention floor, and only
//!   for `cleanup.policy` `delete` or `compact,delete`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::log::{LogError, PartitionLog};
use crate::segment::Segment;
use crate::topic_config::{CleanupPolicy, TopicConfig};

/// Wall-clock times before this (2020-01-01T00:00:00Z) are treated as "clock not set".
pub const SANE_CLOCK_FLOOR_MS: i64 = 1_577_836_800_000;
/// Timestamps further than this ahead of now are not trusted for retention.
pub const FUTURE_SLACK_MS: i64 = 24 * 3600 * 1000;

/// What a retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub deleted_segments: u32,
    pub freed_bytes: u64,
}

/// Whether `seg` is past `retention_ms` at wall-clock `now_ms` under the clock policy.
pub fn time_expired(seg: &Segment, now_ms: i64, retention_ms: i64) -> bool {
    if retention_ms < 0 || now_ms < SANE_CLOCK_FLOOR_MS {
        return false;
    }
    let first_seen = match seg.first_seen_sane_ms.compare_exchange(
        -1,
        now_ms,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => now_ms,
        Err(v) => v,
    };
    let max_ts = seg.state().max_timestamp;
    let trusted = max_ts >= SANE_CLOCK_FLOOR_MS
        && seg.created_ms >= SANE_CLOCK_FLOOR_MS
        && max_ts <= now_ms.saturating_add(FUTURE_SLACK_MS);
    let reference = if trusted { max_ts } else { first_seen };
    if now_ms.saturating_sub(reference) < retention_ms {
        return false;
    }
    if let Some(at) = seg.created_at {
        if at.elapsed().as_millis() < retention_ms as u128 {
            return false;
        }
    }
    true
}

/// The oldest segment if it must go by time or size retention. `segs` are oldest first, the last
/// is the active segment; `total_bytes` is the log's size.
pub fn pick_victim<'a>(
    segs: &[&'a Arc<Segment>],
    cfg: &TopicConfig,
    now_ms: i64,
    total_bytes: u64,
    floor: Option<i64>,
) -> Option<&'a Arc<Segment>> {
    if cfg.cleanup_policy == CleanupPolicy::Compact || segs.len() < 2 {
        return None;
    }
    let oldest = segs[0];
    if floor.is_some_and(|f| oldest.next_offset() > f) {
        return None;
    }
    if cfg.retention_bytes >= 0
        && total_bytes.saturating_sub(oldest.size()) >= cfg.retention_bytes as u64
    {
        return Some(oldest);
    }
    if time_expired(oldest, now_ms, cfg.retention_ms) {
        return Some(oldest);
    }
    None
}

impl PartitionLog {
    /// Delete closed segments past `retention.ms` / `retention.bytes` (see the module doc for the
    /// clock policy). Called by the broker's maintenance thread.
    pub fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome, LogError> {
        self.with_writer(|| {
            let cfg = self.cfg();
            let floor = self.retention_floor();
            let mut outcome = RetentionOutcome::default();
            loop {
                let victim = {
                    let s = self.segs();
                    let total: u64 = s.map.values().map(|x| x.size()).sum();
                    let segs: Vec<&Arc<Segment>> = s.map.values().collect();
                    pick_victim(&segs, &cfg, now_ms, total, floor).cloned()
                };
                match victim {
                    Some(seg) => {
                        outcome.freed_bytes += self.remove_segment(&seg)?;
                        outcome.deleted_segments += 1;
                    }
                    None => break,
                }
            }
            if outcome.deleted_segments > 0 {
                self.observer()
                    .retention_deleted(u64::from(outcome.deleted_segments), outcome.freed_bytes);
            }
            Ok(outcome)
        })
    }

    /// Delete the oldest closed segment (node-wide disk budget), respecting the retention floor.
    /// Returns the bytes freed, or `None` if nothing can be deleted.
    pub fn delete_oldest_segment(&self) -> Result<Option<u64>, LogError> {
        self.with_writer(|| {
            let floor = self.retention_floor();
            let victim = match self.segs().oldest_closed() {
                Some(seg) if floor.is_none_or(|f| seg.next_offset() <= f) => seg.clone(),
                _ => return Ok(None),
            };
            let freed = self.remove_segment(&victim)?;
            self.observer().retention_deleted(1, freed);
            Ok(Some(freed))
        })
    }

    /// Wall-clock max timestamp of the oldest closed segment (for a node-wide oldest-first
    /// choice), or `None` if there is no closed segment.
    pub fn oldest_segment_timestamp(&self) -> Option<i64> {
        self.segs()
            .oldest_closed()
            .map(|seg| seg.state().max_timestamp.max(seg.created_ms))
    }
}
