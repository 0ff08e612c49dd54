//! The leader epoch cache (Kafka's `LeaderEpochFileCache`, KIP-101/279): for every leader epoch
//! that wrote to this log, the offset of its first batch. Replication uses it to find where a
//! follower's log diverges from the leader's (OffsetForLeaderEpoch, then truncation), consumers to
//! detect truncation after a leader change.
//!
//! Entries are `(epoch, start_offset)`, strictly increasing in both. [`LeaderEpochFileCache::assign`]
//! keeps that true as Kafka does: an entry for the latest epoch at or after its start is a no-op;
//! any other entry first removes the entries it conflicts with (epoch or start offset not below
//! its own), so a lower epoch or an earlier start rewrites the end of the cache.
//!
//! Persisted as [`CHECKPOINT_FILE`] in the partition directory in Kafka's text format (a version
//! line `0`, a count line, then one `epoch start_offset` line per entry), replaced atomically through
//! [`Storage::write_file_atomic`] whenever the entries change, so the file never misses an entry
//! the log's durable data needs. On open (`LeaderEpochFileCache::load`) a missing or unreadable
//! file is rebuilt from the segments' clear batch headers (a stored epoch of -1 counts as 0) and
//! rewritten; entries starting past the log end (their data did not survive a crash) are removed
//! and the first is moved up to the log start. An entry starting at the log end stays: it is a new
//! leader's epoch, recorded before its first append (see `PartitionLog::assign_epoch_start`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::LogError;
use crate::io::Storage;
use crate::segment::Segment;

/// File name of the checkpoint in the partition directory (Kafka's name).
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Version line of the checkpoint format.
pub const CHECKPOINT_VERSION: i32 = 0;
/// Epoch answered for an epoch the cache cannot place (Kafka's `UNDEFINED_EPOCH`).
pub const UNDEFINED_EPOCH: i32 = -1;
/// End offset answered with [`UNDEFINED_EPOCH`] (Kafka's `UNDEFINED_EPOCH_OFFSET`).
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// One entry: the first offset written under a leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// Offset of the first batch of that epoch.
    pub start_offset: i64,
}

/// Why a checkpoint file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read (or does not exist).
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file does not follow the format.
    #[error("malformed {path} at line {line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Encode entries in Kafka's checkpoint text format.
pub fn encode_checkpoint(entries: &[EpochEntry]) -> Vec<u8> {
    let mut s = format!("{CHECKPOINT_VERSION}\n{}\n", entries.len());
    for e in entries {
        s.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
    }
    s.into_bytes()
}

/// Decode Kafka's checkpoint text format (version 0; exactly as many entry lines as the count
/// line says; entries with a negative epoch or offset are refused). `path` names the file in
/// errors.
pub fn decode_checkpoint(bytes: &[u8], path: &Path) -> Result<Vec<EpochEntry>, CheckpointError> {
    let bad = |line: usize, reason: String| CheckpointError::Malformed {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| bad(1, format!("not UTF-8: {e}")))?;
    let mut lines = text.lines();
    let version = lines.next().ok_or_else(|| bad(1, "empty file".into()))?;
    match version.trim().parse::<i32>() {
        Ok(CHECKPOINT_VERSION) => {}
        Ok(v) => return Err(bad(1, format!("unsupported version {v}"))),
        Err(e) => return Err(bad(1, format!("version {version:?}: {e}"))),
    }
    let count = lines
        .next()
        .ok_or_else(|| bad(2, "no entry count".into()))?;
    let count: usize = count
        .trim()
        .parse()
        .map_err(|e| bad(2, format!("entry count {count:?}: {e}")))?;
    let mut entries = Vec::with_capacity(count.min(1 << 16));
    for i in 0..count {
        let n = i + 3;
        let line = lines
            .next()
            .ok_or_else(|| bad(n, format!("expected {count} entries, found {i}")))?;
        let mut parts = line.split_whitespace();
        let (Some(epoch), Some(offset), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(
                n,
                format!("expected `epoch start_offset`, got {line:?}"),
            ));
        };
        let epoch: i32 = epoch
            .parse()
            .map_err(|e| bad(n, format!("epoch {epoch:?}: {e}")))?;
        let start_offset: i64 = offset
            .parse()
            .map_err(|e| bad(n, format!("offset {offset:?}: {e}")))?;
        if epoch < 0 || start_offset < 0 {
            return Err(bad(n, format!("negative entry {epoch} {start_offset}")));
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    if let Some((i, extra)) = lines.enumerate().find(|(_, l)| !l.trim().is_empty()) {
        return Err(bad(
            count + 3 + i,
            format!("more lines than the {count} entries announced: {extra:?}"),
        ));
    }
    Ok(entries)
}

/// Remove the entries starting at or after `end_offset` from the checkpoint file of `dir`
/// (a log truncation completed by the loader). A missing or unreadable file is left alone: the
/// log rebuilds it from its segments when it opens.
pub(super) fn truncate_checkpoint(
    storage: &dyn Storage,
    dir: &Path,
    end_offset: i64,
) -> Result<(), LogError> {
    let Ok(entries) = LeaderEpochFileCache::read_checkpoint(storage, dir) else {
        return Ok(());
    };
    let kept: Vec<EpochEntry> = entries
        .iter()
        .copied()
        .filter(|e| e.start_offset < end_offset)
        .collect();
    if kept.len() == entries.len() {
        return Ok(());
    }
    let path = dir.join(CHECKPOINT_FILE);
    storage
        .write_file_atomic(&path, &encode_checkpoint(&kept))
        .map_err(|source| LogError::Io { path, source })
}

/// The leader epoch cache of one partition log, backed by its checkpoint file.
pub struct LeaderEpochFileCache {
    storage: Arc<dyn Storage>,
    path: PathBuf,
    /// epoch -> start offset; both strictly increasing.
    epochs: BTreeMap<i32, i64>,
}

impl std::fmt::Debug for LeaderEpochFileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderEpochFileCache")
            .field("path", &self.path)
            .field("epochs", &self.epochs)
            .finish()
    }
}

impl LeaderEpochFileCache {
    /// An empty cache for the partition directory `dir` (nothing written yet).
    pub fn new(storage: Arc<dyn Storage>, dir: &Path) -> LeaderEpochFileCache {
        LeaderEpochFileCache {
            storage,
            path: dir.join(CHECKPOINT_FILE),
            epochs: BTreeMap::new(),
        }
    }

    /// Read the checkpoint file of `dir`.
    pub fn read_checkpoint(
        storage: &dyn Storage,
        dir: &Path,
    ) -> Result<Vec<EpochEntry>, CheckpointError> {
        let path = dir.join(CHECKPOINT_FILE);
        let bytes = storage
            .read_file(&path)
            .map_err(|source| CheckpointError::Io {
                path: path.clone(),
                source,
            })?;
        decode_checkpoint(&bytes, &path)
    }

    /// The cache of a log being opened: from the checkpoint file, or, if it is missing or
    /// unreadable (a warning), rebuilt from the clear batch headers of `segments`; then entries
    /// starting past `log_end` are removed, the first moved to `log_start` if it starts before,
    /// and the file written back if that changed anything (always after a rebuild).
    pub(super) fn load(
        storage: Arc<dyn Storage>,
        dir: &Path,
        segments: &BTreeMap<i64, Arc<Segment>>,
        log_start: i64,
        log_end: i64,
    ) -> Result<LeaderEpochFileCache, LogError> {
        let mut cache = LeaderEpochFileCache::new(storage.clone(), dir);
        let rebuilt = match Self::read_checkpoint(&*storage, dir) {
            Ok(entries) => {
                for e in entries {
                    cache.assign_in_memory(e);
                }
                false
            }
            Err(e) => {
                if !matches!(&e, CheckpointError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound)
                {
                    tracing::warn!(error = %e, "unreadable leader epoch checkpoint; rebuilding it from the segments");
                }
                cache.rebuild(segments);
                true
            }
        };
        let before = cache.epochs.clone();
        // Entries past the log end lost their data to a crash; one at the log end is a leader's
        // epoch start written before its first append, and stays.
        cache.truncate_end_in_memory(log_end.saturating_add(1));
        cache.truncate_start_in_memory(log_start);
        if rebuilt || cache.epochs != before {
            cache.write()?;
        }
        Ok(cache)
    }

    /// Assign every batch's epoch (stored -1 counts as 0) at its base offset, oldest first.
    fn rebuild(&mut self, segments: &BTreeMap<i64, Arc<Segment>>) {
        self.epochs.clear();
        for seg in segments.values() {
            let mut epochs = Vec::new();
            let scanned = seg.for_each_header(|h| {
                epochs.push(EpochEntry {
                    epoch: h.partition_leader_epoch.max(0),
                    start_offset: h.base_offset,
                })
            });
            for e in epochs {
                self.assign_in_memory(e);
            }
            if let Err(e) = scanned {
                tracing::warn!(file = %seg.log_path.display(), error = %e,
                    "leader epoch rebuild skipped the rest of an unreadable segment");
            }
        }
    }

    fn latest(&self) -> Option<EpochEntry> {
        self.epochs
            .iter()
            .next_back()
            .map(|(&epoch, &start_offset)| EpochEntry {
                epoch,
                start_offset,
            })
    }

    /// Whether `e` changes the cache (Kafka's `isUpdateNeeded`).
    fn update_needed(&self, e: EpochEntry) -> bool {
        self.latest()
            .is_none_or(|l| e.epoch != l.epoch || e.start_offset < l.start_offset)
    }

    /// Kafka's `assign` without the write: drop the entries `e` conflicts with, then add it.
    fn assign_in_memory(&mut self, e: EpochEntry) -> bool {
        if !self.update_needed(e) {
            return false;
        }
        let mut removed = Vec::new();
        while let Some(l) = self.latest() {
            if l.epoch >= e.epoch || l.start_offset >= e.start_offset {
                self.epochs.remove(&l.epoch);
                removed.push(l);
            } else {
                break;
            }
        }
        if removed.len() > 1
            || removed
                .first()
                .is_some_and(|r| r.start_offset != e.start_offset)
        {
            tracing::warn!(path = %self.path.display(), new = ?e, removed = ?removed,
                "new leader epoch entry truncated conflicting entries");
        }
        self.epochs.insert(e.epoch, e.start_offset);
        true
    }

    /// Record that `epoch` starts at `start_offset` (Kafka's `assign`): a no-op for the latest
    /// epoch at or after its recorded start; otherwise conflicting entries (epoch or start offset
    /// not below the new one's) are removed, the entry added and the checkpoint rewritten.
    /// Returns whether the cache changed. A negative epoch or offset is refused.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool, LogError> {
        if epoch < 0 || start_offset < 0 {
            return Err(LogError::InvalidLeaderEpoch {
                epoch,
                start_offset,
            });
        }
        let changed = self.assign_in_memory(EpochEntry {
            epoch,
            start_offset,
        });
        if changed {
            self.write()?;
        }
        Ok(changed)
    }

    /// The newest epoch in the cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.latest().map(|e| e.epoch)
    }

    /// Kafka's `epochForOffset`: the epoch of the record at `offset` (the largest epoch starting
    /// at or before it), `None` before the earliest entry.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.epochs
            .iter()
            .rev()
            .find(|(_, &start)| start <= offset)
            .map(|(&epoch, _)| epoch)
    }

    /// The oldest entry.
    pub fn earliest_entry(&self) -> Option<EpochEntry> {
        self.epochs
            .iter()
            .next()
            .map(|(&epoch, &start_offset)| EpochEntry {
                epoch,
                start_offset,
            })
    }

    /// Kafka's `endOffsetFor`: the largest epoch <= `requested` and where it ends, i.e. the start
    /// offset of the next higher epoch, or `log_end_offset` when `requested` is the latest epoch.
    /// A requested epoch below the earliest entry answers `(requested, earliest start offset)` (the
    /// data before it is gone; Kafka's behaviour); `UNDEFINED_EPOCH` and epochs above the
    /// latest answer `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if requested == UNDEFINED_EPOCH {
            return undefined;
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let Some((_, &higher_start)) = self
            .epochs
            .range((
                std::ops::Bound::Excluded(requested),
                std::ops::Bound::Unbounded,
            ))
            .next()
        else {
            return undefined;
        };
        match self.epochs.range(..=requested).next_back() {
            Some((&floor, _)) => (floor, higher_start),
            None => (requested, higher_start),
        }
    }

    fn truncate_end_in_memory(&mut self, end_offset: i64) -> bool {
        let mut changed = false;
        if end_offset < 0 {
            return false;
        }
        while let Some(l) = self.latest() {
            if l.start_offset >= end_offset {
                self.epochs.remove(&l.epoch);
                changed = true;
            } else {
                break;
            }
        }
        changed
    }

    fn truncate_start_in_memory(&mut self, start_offset: i64) {
        let mut last_removed = None;
        while let Some(first) = self.earliest_entry() {
            if first.start_offset <= start_offset {
                self.epochs.remove(&first.epoch);
                last_removed = Some(first);
            } else {
                break;
            }
        }
        if let Some(r) = last_removed {
            self.epochs.insert(r.epoch, start_offset);
        }
    }

    /// Remove every entry starting at or after `end_offset` (Kafka's `truncateFromEnd`, after a
    /// log truncation); rewrites the checkpoint if anything was removed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Result<(), LogError> {
        if self.truncate_end_in_memory(end_offset) {
            self.write()?;
        }
        Ok(())
    }

    /// Drop the entries wholly before `start_offset` and move the last of them to start there
    /// (Kafka's `truncateFromStart`, exclusive: an entry at `start_offset` stays), after the log
    /// start moved; rewrites the checkpoint if anything changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> Result<(), LogError> {
        let before = self.epochs.clone();
        self.truncate_start_in_memory(start_offset);
        if self.epochs != before {
            self.write()?;
        }
        Ok(())
    }

    /// Remove every entry (Kafka's `clearAndFlush`, when the log restarts at a new offset with
    /// none of its records); rewrites the checkpoint if there were any.
    pub fn clear(&mut self) -> Result<(), LogError> {
        if !self.epochs.is_empty() {
            self.epochs.clear();
            self.write()?;
        }
        Ok(())
    }

    /// All entries, oldest first.
    pub fn entries(&self) -> Vec<EpochEntry> {
        self.epochs
            .iter()
            .map(|(&epoch, &start_offset)| EpochEntry {
                epoch,
                start_offset,
            })
            .collect()
    }

    /// Replace the checkpoint file with the current entries (atomically, durably).
    fn write(&self) -> Result<(), LogError> {
        self.storage
            .write_file_atomic(&self.path, &encode_checkpoint(&self.entries()))
            .map_err(|source| LogError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::SimStorage;

    fn cache(entries: &[(i32, i64)]) -> (SimStorage, LeaderEpochFileCache) {
        let s = SimStorage::new();
        let mut c = LeaderEpochFileCache::new(Arc::new(s.clone()), Path::new("/p"));
        for &(e, o) in entries {
            c.assign(e, o).unwrap();
        }
        (s, c)
    }

    fn pairs(c: &LeaderEpochFileCache) -> Vec<(i32, i64)> {
        c.entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    fn on_disk(s: &SimStorage) -> Vec<(i32, i64)> {
        LeaderEpochFileCache::read_checkpoint(s, Path::new("/p"))
            .unwrap()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn checkpoint_text_format_round_trips_and_rejects_damage() {
        let entries = vec![
            EpochEntry {
                epoch: 0,
                start_offset: 0,
            },
            EpochEntry {
                epoch: 3,
                start_offset: 150,
            },
        ];
        let b = encode_checkpoint(&entries);
        assert_eq!(b, b"0\n2\n0 0\n3 150\n");
        let p = Path::new("x");
        assert_eq!(decode_checkpoint(&b, p).unwrap(), entries);
        assert_eq!(decode_checkpoint(b"0\n0\n", p).unwrap(), vec![]);
        for bad in [
            &b""[..],
            b"1\n0\n",
            b"0\n2\n0 0\n",
            b"0\n1\n0 0\n4 9\n",
            b"0\n1\n0\n",
            b"0\n1\n0 0 0\n",
            b"0\n1\n-1 0\n",
            b"0\n1\nx 0\n",
            b"zero\n0\n",
        ] {
            assert!(
                matches!(
                    decode_checkpoint(bad, p),
                    Err(CheckpointError::Malformed { .. })
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn assign_follows_kafka() {
        let (s, mut c) = cache(&[(0, 0), (2, 10)]);
        assert_eq!(on_disk(&s), vec![(0, 0), (2, 10)]);
        // The latest epoch again, later: nothing to do, nothing written.
        let syncs = s.sync_count();
        assert!(!c.assign(2, 15).unwrap());
        assert_eq!(s.sync_count(), syncs);
        // A new epoch.
        assert!(c.assign(4, 20).unwrap());
        assert_eq!(pairs(&c), vec![(0, 0), (2, 10), (4, 20)]);
        // The latest epoch at an earlier offset: moved back.
        assert!(c.assign(4, 18).unwrap());
        assert_eq!(pairs(&c), vec![(0, 0), (2, 10), (4, 18)]);
        // A lower epoch at a later offset removes the conflicting higher epochs.
        assert!(c.assign(3, 30).unwrap());
        assert_eq!(pairs(&c), vec![(0, 0), (2, 10), (3, 30)]);
        // A higher epoch at an earlier offset removes the entries starting at or after it.
        assert!(c.assign(5, 10).unwrap());
        assert_eq!(pairs(&c), vec![(0, 0), (5, 10)]);
        assert_eq!(on_disk(&s), vec![(0, 0), (5, 10)]);
        assert!(matches!(
            c.assign(-1, 3),
            Err(LogError::InvalidLeaderEpoch { .. })
        ));
        assert!(matches!(
            c.assign(6, -1),
            Err(LogError::InvalidLeaderEpoch { .. })
        ));
        assert_eq!(c.latest_epoch(), Some(5));
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let (_, c) = cache(&[(1, 5), (3, 20), (6, 40)]);
        let leo = 55;
        assert_eq!(c.end_offset_for(6, leo), (6, 55), "latest: the log end");
        assert_eq!(c.end_offset_for(3, leo), (3, 40), "next epoch's start");
        assert_eq!(
            c.end_offset_for(4, leo),
            (3, 40),
            "largest epoch <= requested"
        );
        assert_eq!(c.end_offset_for(5, leo), (3, 40));
        assert_eq!(c.end_offset_for(1, leo), (1, 20));
        assert_eq!(c.end_offset_for(2, leo), (1, 20));
        assert_eq!(
            c.end_offset_for(0, leo),
            (0, 5),
            "below the earliest: the earliest start"
        );
        assert_eq!(c.end_offset_for(7, leo), (-1, -1), "above the latest");
        assert_eq!(c.end_offset_for(-1, leo), (-1, -1));
        let (_, empty) = cache(&[]);
        assert_eq!(empty.end_offset_for(0, 10), (-1, -1));
        assert_eq!(empty.latest_epoch(), None);
    }

    #[test]
    fn epoch_for_offset_is_the_epoch_that_wrote_it() {
        let (_, c) = cache(&[(1, 5), (3, 20), (6, 40)]);
        assert_eq!(c.epoch_for_offset(4), None, "before the earliest entry");
        assert_eq!(c.epoch_for_offset(5), Some(1));
        assert_eq!(c.epoch_for_offset(19), Some(1));
        assert_eq!(c.epoch_for_offset(20), Some(3));
        assert_eq!(c.epoch_for_offset(1000), Some(6));
        let (_, empty) = cache(&[]);
        assert_eq!(empty.epoch_for_offset(0), None);
    }

    #[test]
    fn truncation_from_either_end() {
        let (s, mut c) = cache(&[(0, 0), (1, 6), (3, 20)]);
        c.truncate_from_end(21).unwrap();
        assert_eq!(pairs(&c), vec![(0, 0), (1, 6), (3, 20)]);
        c.truncate_from_end(20).unwrap();
        assert_eq!(pairs(&c), vec![(0, 0), (1, 6)]);
        assert_eq!(on_disk(&s), vec![(0, 0), (1, 6)]);
        // Exclusive: an entry at the new start stays.
        c.truncate_from_start(6).unwrap();
        assert_eq!(pairs(&c), vec![(1, 6)]);
        c.truncate_from_start(9).unwrap();
        assert_eq!(pairs(&c), vec![(1, 9)]);
        assert_eq!(on_disk(&s), vec![(1, 9)]);
        let syncs = s.sync_count();
        c.truncate_from_start(9).unwrap();
        c.truncate_from_start(3).unwrap();
        assert_eq!(s.sync_count(), syncs, "nothing changed, nothing written");
        c.truncate_from_end(0).unwrap();
        assert!(pairs(&c).is_empty());
        assert_eq!(on_disk(&s), vec![]);
    }
}
