//! The segment map of a partition log and segment rolling (Kafka's `LogSegments` and the
//! segment half of `LocalLog`): which segment holds which offsets, when the active segment is
//! rolled (`segment.bytes`, `segment.ms`, the relative-offset range of the indexes), and how a
//! closed segment leaves the log (retention, DeleteRecords, the disk budget, the backlog policy).
//!
//! `segment.ms` is measured on the monotonic clock from the segment's creation in this process,
//! so a wall-clock jump never rolls segments (segments loaded from disk are never active).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{lock, LogError, PartitionLog};
use crate::clock::now_ms;
use crate::segment::{Segment, FILE_HEADER_LEN};
use crate::topic_config::TopicConfig;

/// The segments of a log by base offset (the last is the active segment) and the log start
/// offset, guarded together by the log's segment lock.
pub(crate) struct LogSegments {
    pub(crate) map: BTreeMap<i64, Arc<Segment>>,
    pub(crate) log_start: i64,
}

impl LogSegments {
    /// The active segment (the newest).
    pub(crate) fn active(&self) -> Option<&Arc<Segment>> {
        self.map.values().next_back()
    }

    /// The oldest closed segment, if there is one besides the active segment.
    pub(crate) fn oldest_closed(&self) -> Option<&Arc<Segment>> {
        if self.map.len() < 2 {
            return None;
        }
        self.map.values().next()
    }
}

/// Whether the active segment is older than `segment.ms` on the monotonic clock.
pub fn segment_ms_elapsed(active: &Segment, segment_ms: i64) -> bool {
    if segment_ms <= 0 {
        return false;
    }
    active
        .created_at
        .is_some_and(|at| at.elapsed().as_millis() >= segment_ms as u128)
}

impl PartitionLog {
    /// Whether an append of `incoming` stored bytes ending before `next_offset` must go to a new
    /// segment: never from an empty one; past `segment.bytes`, past the 32-bit relative offset
    /// range of the indexes, or when the active segment is older than `segment.ms`.
    pub(super) fn should_roll(
        &self,
        active: &Segment,
        cfg: &TopicConfig,
        incoming: u64,
        next_offset: i64,
    ) -> bool {
        if active.is_empty() {
            return false;
        }
        let max_size = cfg
            .segment_bytes
            .clamp(FILE_HEADER_LEN + 1, u32::MAX as u64 - (1 << 20));
        if active.size() + incoming > max_size {
            return true;
        }
        if next_offset - active.base_offset >= i32::MAX as i64 {
            return true;
        }
        segment_ms_elapsed(active, cfg.segment_ms)
    }

    /// Close the active segment (fsync) and start a new one at `leo`. Caller holds the writer.
    pub(super) fn roll_locked(
        &self,
        leo: i64,
        cfg: &TopicConfig,
    ) -> Result<Arc<Segment>, LogError> {
        let old = self.active()?;
        old.finish()?;
        self.write_producer_snapshot(leo);
        let seg = Arc::new(Segment::create(
            &*self.storage,
            &self.dir,
            self.ident,
            leo,
            &self.encryption,
            now_ms(),
            u64::from(cfg.index_interval_bytes.max(1)),
        )?);
        // After a failed write the old segment may be empty with the same base offset: it is
        // replaced by the new file (new data key), never written again.
        self.segs_mut().map.insert(leo, seg.clone());
        Ok(seg)
    }

    /// Force a roll to a new segment (used by tests and by the cleaner to close the active one).
    pub fn roll(&self) -> Result<(), LogError> {
        self.check_open()?;
        let _w = lock(&self.writer);
        let active = self.active()?;
        if active.is_empty() {
            return Ok(());
        }
        let cfg = self.cfg();
        self.roll_locked(self.leo.load(Ordering::Acquire), &cfg)?;
        Ok(())
    }

    /// Remove a closed segment from the map and delete its files. Caller holds the writer.
    pub(crate) fn remove_segment(&self, seg: &Arc<Segment>) -> Result<u64, LogError> {
        let size = seg.size();
        let log_start = {
            let mut s = self.segs_mut();
            s.map.remove(&seg.base_offset);
            let next = s
                .map
                .keys()
                .next()
                .copied()
                .unwrap_or_else(|| self.leo.load(Ordering::Acquire));
            if s.log_start < next {
                s.log_start = next;
            }
            s.log_start
        };
        seg.delete_files(&*self.storage)?;
        self.storage
            .sync_dir(&self.dir)
            .map_err(|source| LogError::Io {
                path: self.dir.clone(),
                source,
            })?;
        lock(&self.epochs).truncate_from_start(log_start)?;
        tracing::info!(topic = %self.topic, partition = self.ident.partition,
            base = seg.base_offset, "deleted segment");
        Ok(size)
    }
}
