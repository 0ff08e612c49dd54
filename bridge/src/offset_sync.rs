//! Offset syncs (MirrorMaker 2's OffsetSync): which target offset each mirrored source record
//! got, kept in memory as runs of consecutive offsets, bounded, and the translation of a
//! committed source offset to the target (see [`crate::checkpoint`]).

use std::collections::VecDeque;

/// Most runs kept per source partition (the oldest are forgotten first).
pub const MAX_RUNS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    source: i64,
    target: i64,
    len: i64,
}

impl Run {
    fn last_source(&self) -> i64 {
        self.source + self.len - 1
    }
    fn last_target(&self) -> i64 {
        self.target + self.len - 1
    }
}

/// Source offset -> target offset of the mirrored records of one source partition whose target
/// partition receives only that source partition, as runs of consecutive offsets.
#[derive(Debug, Default, Clone)]
pub struct OffsetSyncs {
    runs: VecDeque<Run>,
    /// The next source offset the mirror will process: everything below it is either in the
    /// target or was skipped (filters, cycles).
    processed: Option<i64>,
}

impl OffsetSyncs {
    /// Source record `source` is at `target` in the target partition. Offsets must grow; an
    /// out-of-order sync (the target was replaced) forgets the older ones.
    pub fn record(&mut self, source: i64, target: i64) {
        if let Some(last) = self.runs.back_mut() {
            let (ls, lt) = (last.last_source(), last.last_target());
            if source == ls + 1 && target == lt + 1 {
                last.len += 1;
                return;
            }
            if source == ls && target == lt {
                return;
            }
            if source <= ls || target <= lt {
                self.runs.clear();
            }
        }
        self.runs.push_back(Run {
            source,
            target,
            len: 1,
        });
        while self.runs.len() > MAX_RUNS {
            self.runs.pop_front();
        }
    }

    /// The oldest known (source, target) pair.
    pub fn first(&self) -> Option<(i64, i64)> {
        self.runs.front().map(|r| (r.source, r.target))
    }

    /// The mirror will next process source offset `next`.
    pub fn set_processed(&mut self, next: i64) {
        self.processed = Some(next);
    }

    /// The target offset for a group whose committed source offset (the next record it would
    /// read) is `committed`: the target offset of the first mirrored record at or after it; when
    /// every record before `committed` is processed but none at or after it is mirrored yet, the
    /// target's next offset. None when `committed` is before the first known sync or ahead of
    /// what is mirrored.
    pub fn translate(&self, committed: i64) -> Option<i64> {
        let first = self.runs.front()?;
        if committed < first.source {
            return None;
        }
        let i = self.runs.partition_point(|r| r.last_source() < committed);
        if let Some(r) = self.runs.get(i) {
            return Some(if committed >= r.source {
                r.target + (committed - r.source)
            } else {
                // Records between the previous run and this one were skipped.
                r.target
            });
        }
        let last = self.runs.back()?;
        match self.processed {
            Some(p) if p >= committed => Some(last.last_target() + 1),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_runs_translate_exactly() {
        let mut s = OffsetSyncs::default();
        assert_eq!(s.translate(0), None);
        for i in 0..100 {
            s.record(i, 1000 + i);
        }
        s.set_processed(100);
        assert_eq!(s.runs.len(), 1);
        assert_eq!(s.translate(0), Some(1000));
        assert_eq!(s.translate(42), Some(1042));
        assert_eq!(s.translate(99), Some(1099));
        // Everything before 100 is mirrored, nothing at or after it yet.
        assert_eq!(s.translate(100), Some(1100));
        // Ahead of what is mirrored.
        assert_eq!(s.translate(101), None);
        s.set_processed(150);
        assert_eq!(s.translate(150), Some(1100));
        assert_eq!(s.translate(151), None);
    }

    #[test]
    fn filtered_gaps_map_to_the_next_mirrored_record() {
        let mut s = OffsetSyncs::default();
        // Source 10..=12 mirrored, 13..=19 filtered, 20..=21 mirrored.
        for (src, tgt) in [(10, 0), (11, 1), (12, 2), (20, 3), (21, 4)] {
            s.record(src, tgt);
        }
        s.set_processed(30);
        assert_eq!(s.runs.len(), 2);
        assert_eq!(s.translate(9), None, "before the first sync: unknown");
        assert_eq!(s.translate(12), Some(2));
        assert_eq!(s.translate(13), Some(3));
        assert_eq!(s.translate(19), Some(3));
        assert_eq!(s.translate(20), Some(3));
        assert_eq!(s.translate(21), Some(4));
        // 22..29 processed (filtered): next target offset.
        assert_eq!(s.translate(25), Some(5));
        assert_eq!(s.translate(30), Some(5));
        assert_eq!(s.translate(31), None);
    }

    #[test]
    fn seed_then_continue_and_replacement() {
        let mut s = OffsetSyncs::default();
        s.record(499, 77);
        s.record(499, 77);
        s.set_processed(500);
        assert_eq!(s.translate(499), Some(77));
        assert_eq!(s.translate(500), Some(78));
        assert_eq!(s.translate(498), None);
        s.record(500, 78);
        assert_eq!(s.runs.len(), 1);
        // The target was replaced: older syncs are forgotten.
        s.record(501, 5);
        assert_eq!(s.runs.len(), 1);
        assert_eq!(s.translate(500), None);
        assert_eq!(s.translate(501), Some(5));
    }

    #[test]
    fn bounded() {
        let mut s = OffsetSyncs::default();
        for i in 0..(MAX_RUNS as i64 + 10) {
            s.record(i * 2, i);
        }
        assert_eq!(s.runs.len(), MAX_RUNS);
        assert_eq!(s.translate(0), None);
        assert_eq!(s.translate(20), Some(10));
        assert_eq!(s.translate(21), Some(11));
    }
}
