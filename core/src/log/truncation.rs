//! Log truncation (Kafka's `UnifiedLog.truncateTo` / `LocalLog.truncateTo`, KIP-101/279): a
//! follower whose log diverged from its leader's (found through OffsetForLeaderEpoch) cuts it
//! back to a batch boundary, rolling back segments, indexes, producer state and the leader epoch
//! cache together.
//!
//! Crash safety: [`PartitionLog::truncate_to`] first writes the marker [`TRUNCATION_MARKER`]
//! (the target offset, atomically: the commit point), then removes the segments at or above the
//! target, cuts the segment holding it and rebuilds its indexes, removes the producer snapshots
//! above it, rewrites the epoch checkpoint, starts a new active segment and finally removes the
//! marker. The loader (`recover_truncation`) completes a truncation whose marker it finds before
//! anything else reads the segments, so after a power cut the log is either as it was or
//! truncated, never in between.
//!
//! Encryption: nonces are derived from file positions, so bytes cut from a segment must never be
//! followed by new bytes sealed under the same data key at the same positions. The truncation
//! itself starts a new active segment (a fresh data key) at the target offset; the cut segment
//! is never written again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::leader_epoch_cache;
use super::loader::write_log_start_file;
use super::{lock, LogError, PartitionLog};
use crate::clock::now_ms;
use crate::io::Storage;
use crate::producer_state;
use crate::segment::{self, BadRegion, Segment, SegmentError, FILE_HEADER_LEN};
use crate::sync::RwLockExt;

/// The commit marker of a truncation in the partition directory (holds the target offset).
pub const TRUNCATION_MARKER: &str = "truncate-to";
/// The commit marker of a restart of the log at a new offset
/// ([`PartitionLog::truncate_fully_and_start_at`]; holds that offset, encoded as
/// [`TRUNCATION_MARKER`] is).
pub const RESTART_MARKER: &str = "restart-at";
const MARKER_MAGIC: [u8; 4] = *b"RTRC";
const MARKER_VERSION: u8 = 1;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn encode_marker(offset: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(17);
    b.extend_from_slice(&MARKER_MAGIC);
    b.push(MARKER_VERSION);
    b.extend_from_slice(&offset.to_be_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

/// The target offset of the marker in `dir`; `None` if there is none. A marker that exists but
/// does not decode is an error: it was written atomically, so it is damage, not a torn write.
fn read_marker(storage: &dyn Storage, dir: &Path, name: &str) -> Result<Option<i64>, LogError> {
    let path = dir.join(name);
    let b = match storage.read_file(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let valid = b.len() == 17
        && b[..4] == MARKER_MAGIC
        && b[4] == MARKER_VERSION
        && b[13..17] == crc32c::crc32c(&b[..13]).to_be_bytes();
    if !valid {
        return Err(LogError::Corrupt {
            file: path,
            position: 0,
            reason: "truncation marker does not decode".into(),
        });
    }
    let mut off = [0u8; 8];
    off.copy_from_slice(&b[5..13]);
    Ok(Some(i64::from_be_bytes(off)))
}

fn remove_marker(storage: &dyn Storage, dir: &Path, name: &str) -> Result<(), LogError> {
    let path = dir.join(name);
    match storage.remove(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&path)(e)),
    }
    storage.sync_dir(dir).map_err(io_err(dir))
}

/// The on-disk half of a truncation to `offset`, shared by [`PartitionLog::truncate_to`] and
/// the loader: removes every segment at or above it (from `map` and the directory, including
/// files of segments that could not be opened), cuts the segment holding it before the first
/// batch ending at or after it (a segment left empty is removed), removes the producer
/// snapshots above it and fsyncs the directory. Idempotent.
pub(super) fn truncate_files(
    storage: &dyn Storage,
    dir: &Path,
    map: &mut BTreeMap<i64, Arc<Segment>>,
    offset: i64,
) -> Result<(), LogError> {
    let above: Vec<i64> = map.range(offset..).map(|(b, _)| *b).collect();
    for base in above.into_iter().rev() {
        if let Some(seg) = map.remove(&base) {
            seg.delete_files(storage)?;
        }
    }
    if let Some((&base, seg)) = map.range(..offset).next_back() {
        let cut = match seg.truncation_point(offset) {
            Ok(p) => p.map(|(pos, _)| pos),
            // The cut falls into unreadable data: it goes too.
            Err(SegmentError::Corrupt { position, .. }) => Some(position),
            Err(e) => return Err(e.into()),
        };
        match cut {
            Some(pos) if pos <= FILE_HEADER_LEN => {
                seg.delete_files(storage)?;
                map.remove(&base);
            }
            Some(pos) => seg.truncate_at(pos)?,
            None => {}
        }
    }
    let names = storage.list(dir).map_err(io_err(dir))?;
    for n in names {
        let Some((base, ext)) = segment::parse_file_name(&n) else {
            continue;
        };
        let stale = if ext == producer_state::SNAPSHOT_EXT {
            base > offset
        } else {
            base >= offset && !map.contains_key(&base)
        };
        if stale {
            let p = dir.join(&n);
            match storage.remove(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
    }
    storage.sync_dir(dir).map_err(io_err(dir))
}

/// Loader step: complete a truncation a crash interrupted (its marker exists) on the segments
/// just opened, cut the epoch checkpoint to match, and drop the marker. Reported damage above
/// the target goes with the data. Returns the target offset if there was one.
pub(super) fn recover_truncation(
    storage: &dyn Storage,
    dir: &Path,
    map: &mut BTreeMap<i64, Arc<Segment>>,
    bad: &mut Vec<BadRegion>,
    lost: &mut Vec<BadRegion>,
) -> Result<Option<i64>, LogError> {
    let Some(offset) = read_marker(storage, dir, TRUNCATION_MARKER)? else {
        return Ok(None);
    };
    tracing::info!(dir = %dir.display(), offset, "completing an interrupted log truncation");
    truncate_files(storage, dir, map, offset)?;
    for regions in [bad, lost] {
        regions.retain(|r| r.first_offset < offset);
        for r in regions.iter_mut() {
            r.next_offset = r.next_offset.min(offset);
        }
    }
    leader_epoch_cache::truncate_checkpoint(storage, dir, offset)?;
    remove_marker(storage, dir, TRUNCATION_MARKER)?;
    Ok(Some(offset))
}

/// Loader step: complete a restart of the log at a new offset that a crash interrupted (its
/// marker exists): remove every segment and producer snapshot, empty the epoch checkpoint,
/// write the log start checkpoint and drop the marker. Returns the offset the log starts at
/// if there was one (the caller then has no segment and starts the log there).
pub(super) fn recover_restart(
    storage: &dyn Storage,
    dir: &Path,
    map: &mut BTreeMap<i64, Arc<Segment>>,
) -> Result<Option<i64>, LogError> {
    let Some(offset) = read_marker(storage, dir, RESTART_MARKER)? else {
        return Ok(None);
    };
    tracing::info!(dir = %dir.display(), offset, "completing an interrupted log restart");
    remove_all_files(storage, dir, map)?;
    leader_epoch_cache::truncate_checkpoint(storage, dir, i64::MIN)?;
    write_log_start_file(storage, dir, offset)?;
    remove_marker(storage, dir, RESTART_MARKER)?;
    Ok(Some(offset))
}

/// Removes every segment (from `map` and the directory, with files of segments that could not
/// be opened) and every producer snapshot, then fsyncs the directory.
fn remove_all_files(
    storage: &dyn Storage,
    dir: &Path,
    map: &mut BTreeMap<i64, Arc<Segment>>,
) -> Result<(), LogError> {
    for (_, seg) in std::mem::take(map) {
        seg.delete_files(storage)?;
    }
    for n in storage.list(dir).map_err(io_err(dir))? {
        if segment::parse_file_name(&n).is_none() {
            continue;
        }
        let p = dir.join(&n);
        match storage.remove(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p)(e)),
        }
    }
    storage.sync_dir(dir).map_err(io_err(dir))
}

impl PartitionLog {
    /// Throw every record away and start the log, empty, at `offset` (Kafka's
    /// `truncateFullyAndStartAt`): a follower whose log end is below its leader's log start
    /// (the leader's retention or DeleteRecords removed what it would fetch next) cannot catch
    /// up by fetching and must start where the leader's log starts. Segments, indexes, producer
    /// state and the leader epoch cache go; the log start, log end, flushed offset and high
    /// watermark all become `offset`.
    ///
    /// Crash-safe: the commit point is the marker [`RESTART_MARKER`] (the offset, written
    /// atomically first); the loader completes a restart whose marker it finds
    /// ([`recover_restart`]). An I/O error after it closes the log (later calls return
    /// [`LogError::Closed`]); reopening it completes the restart.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), LogError> {
        self.check_open()?;
        let mut w = lock(&self.writer);
        self.check_open()?;
        let _flush = lock(&self.flush_lock);
        let leo = self.leo.load(Ordering::Acquire);
        if offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset(),
                log_end: leo,
            });
        }
        tracing::info!(topic = %self.topic, partition = self.ident.partition,
            log_start = self.log_start_offset(), log_end = leo, new_start = offset,
            "truncating the log fully and starting it at a new offset");
        let res = self.restart_committed(&mut w, offset);
        if let Err(e) = &res {
            self.closed.store(true, Ordering::Release);
            tracing::error!(topic = %self.topic, partition = self.ident.partition, error = %e,
                "log restart failed; the log is closed, reopening it completes the restart");
        }
        res
    }

    /// The steps of [`Self::truncate_fully_and_start_at`] (writer and flush locks held).
    fn restart_committed(&self, w: &mut super::Writer, offset: i64) -> Result<(), LogError> {
        self.write_marker(RESTART_MARKER, offset)?;
        // Readers see the empty log before any file goes.
        self.leo.store(offset, Ordering::Release);
        self.flushed.store(offset, Ordering::Release);
        self.hw.store(offset, Ordering::Release);
        self.hw_tx.send_if_modified(|v| {
            let changed = *v != offset;
            *v = offset;
            changed
        });
        lock(&self.cache).clear();
        self.lost.write_unpoisoned().clear();
        lock(&self.corruption).clear();
        lock(&self.epochs).clear()?;
        {
            let mut segs = self.segs_mut();
            segs.log_start = offset;
            remove_all_files(&*self.storage, &self.dir, &mut segs.map)?;
        }
        write_log_start_file(&*self.storage, &self.dir, offset)?;
        self.start_active_segment(w, offset)?;
        self.rebuild_producer_state(Vec::new());
        remove_marker(&*self.storage, &self.dir, RESTART_MARKER)
    }

    /// Cut the log back to `offset` (Kafka's `truncateTo`, used by a follower whose log diverged
    /// from its leader's, KIP-101/279): everything at or above `offset` goes: whole segments, the
    /// tail of the segment holding it with its offset and time index entries, tail-cache
    /// entries, producer state (rebuilt from the newest snapshot at or below `offset` plus the
    /// batches after it; snapshots above are deleted) and leader epoch cache entries
    /// (`truncate_from_end`). The log end offset becomes `offset`; the flushed offset and the
    /// high watermark are capped at it. Durable and crash-safe when it returns (see the module
    /// doc); later appends go to a new segment with a fresh data key.
    ///
    /// `offset` must be a batch boundary (no batch may hold both `offset - 1` and `offset`), else
    /// [`LogError::TruncationInsideBatch`] and nothing changes; below the log start it is
    /// [`LogError::OffsetOutOfRange`]; at or above the log end offset no record goes, only epoch
    /// cache entries starting at the log end (an epoch with no records; as in Kafka). An I/O error from the commit marker on closes the log (later calls return
    /// [`LogError::Closed`]); reopening it completes the truncation.
    pub fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        self.check_open()?;
        let mut w = lock(&self.writer);
        self.check_open()?;
        // No group commit may publish a flushed offset from before the cut meanwhile.
        let _flush = lock(&self.flush_lock);
        let leo = self.leo.load(Ordering::Acquire);
        if offset >= leo {
            // No record goes, but an epoch entry at the log end goes (as in Kafka): this replica
            // led an epoch and appended nothing in it before another leader was elected; kept,
            // it would claim records the leader never had, and its next fetch would name that
            // epoch as its last fetched one again and again.
            lock(&self.epochs).truncate_from_end(leo)?;
            return Ok(());
        }
        let log_start = self.log_start_offset();
        if offset < log_start {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                log_end: leo,
            });
        }
        let holder = self
            .segs()
            .map
            .range(..offset)
            .next_back()
            .map(|(_, s)| s.clone());
        if let Some(seg) = holder {
            if let Some((_, h)) = seg.truncation_point(offset)? {
                if h.base_offset < offset {
                    return Err(LogError::TruncationInsideBatch {
                        offset,
                        batch_base: h.base_offset,
                        batch_last: h.last_offset(),
                    });
                }
            }
        }
        tracing::info!(topic = %self.topic, partition = self.ident.partition, from = leo, to = offset,
            "truncating log");
        let res = self.truncate_committed(&mut w, offset);
        if let Err(e) = &res {
            // The marker may be on disk: appending on would let the next open cut new data.
            self.closed.store(true, Ordering::Release);
            tracing::error!(topic = %self.topic, partition = self.ident.partition, error = %e,
                "log truncation failed; the log is closed, reopening it completes the truncation");
        }
        res
    }

    /// The steps of [`Self::truncate_to`] from the commit marker on (writer and flush locks held).
    fn truncate_committed(&self, w: &mut super::Writer, offset: i64) -> Result<(), LogError> {
        self.write_marker(TRUNCATION_MARKER, offset)?;
        // Readers stop at the new end before any byte goes.
        self.leo.store(offset, Ordering::Release);
        self.flushed.fetch_min(offset, Ordering::AcqRel);
        self.lower_hw(offset);
        lock(&self.cache).clear();
        // Damage above the cut goes with the data (new appends must not read as damaged).
        for regions in [
            &mut *self.lost.write_unpoisoned(),
            &mut *lock(&self.corruption),
        ] {
            regions.retain(|r| r.first_offset < offset);
            for r in regions.iter_mut() {
                r.next_offset = r.next_offset.min(offset);
            }
        }
        {
            let mut segs = self.segs_mut();
            truncate_files(&*self.storage, &self.dir, &mut segs.map, offset)?;
        }
        lock(&self.epochs).truncate_from_end(offset)?;
        self.start_active_segment(w, offset)?;
        let snapshots = self
            .storage
            .list(&self.dir)
            .map_err(io_err(&self.dir))?
            .iter()
            .filter_map(|n| segment::parse_file_name(n))
            .filter(|(_, ext)| *ext == producer_state::SNAPSHOT_EXT)
            .map(|(b, _)| b)
            .collect();
        self.rebuild_producer_state(snapshots);
        remove_marker(&*self.storage, &self.dir, TRUNCATION_MARKER)?;
        Ok(())
    }

    /// Write the commit marker `name` holding `offset` (atomically: the commit point).
    fn write_marker(&self, name: &str, offset: i64) -> Result<(), LogError> {
        let marker = self.dir.join(name);
        self.storage
            .write_file_atomic(&marker, &encode_marker(offset))
            .map_err(io_err(&marker))
    }

    /// Create the new active segment (a fresh data key) at `offset`, the log end after a
    /// truncation or restart.
    fn start_active_segment(&self, w: &mut super::Writer, offset: i64) -> Result<(), LogError> {
        let cfg = self.cfg();
        let seg = Arc::new(Segment::create(
            &*self.storage,
            &self.dir,
            self.ident,
            offset,
            &self.encryption,
            now_ms(),
            u64::from(cfg.index_interval_bytes.max(1)),
        )?);
        self.segs_mut().map.insert(offset, seg);
        w.force_roll = false;
        Ok(())
    }

    /// Move the high watermark down to `offset` if it is above (truncation, and a log becoming a
    /// replica).
    pub(super) fn lower_hw(&self, offset: i64) {
        let prev = self.hw.fetch_min(offset, Ordering::AcqRel);
        if prev > offset {
            self.hw_tx.send_if_modified(|v| {
                if *v > offset {
                    *v = offset;
                    true
                } else {
                    false
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{test_util::batch, BatchBuilder, BatchHeader};
    use crate::io::SimStorage;
    use crate::log::tests::opts;
    use crate::log::ReadLimit;
    use bytes::Bytes;

    fn idempotent(seq: i32, value: &str, ts: i64) -> Vec<u8> {
        let mut b = BatchBuilder::new().producer(9, 0, seq);
        b.push(None, Some(Bytes::copy_from_slice(value.as_bytes())), ts);
        b.build().unwrap().to_vec()
    }

    /// (base offset, epoch) of every batch up to the log end, and the values.
    fn batches(log: &PartitionLog) -> Vec<(i64, i32)> {
        let mut out = Vec::new();
        let mut from = log.log_start_offset();
        while from < log.log_end_offset() {
            let rr = log.read_up_to(from, 1 << 20, ReadLimit::LogEnd).unwrap();
            if rr.records.is_empty() {
                break;
            }
            for b in crate::batch::Batches::new(&rr.records) {
                let b = b.unwrap();
                crate::batch::verify_crc(b.bytes).unwrap();
                out.push((b.header.base_offset, b.header.partition_leader_epoch));
                from = b.header.last_offset() + 1;
            }
        }
        out
    }

    /// A log of 12 one-record batches over several segments: offsets 0-3 epoch 0, 4-7 epoch 2,
    /// 8-11 epoch 5; producer 9 wrote sequences 0.. at every even offset.
    fn filled(s: &SimStorage) -> PartitionLog {
        let mut o = opts(Arc::new(s.clone()), true);
        o.config.segment_bytes = 250;
        o.config.index_interval_bytes = 1;
        let log = PartitionLog::open("/p".into(), o).unwrap();
        for i in 0..12i64 {
            if i == 4 {
                log.assign_epoch_start(2).unwrap();
            }
            if i == 8 {
                log.assign_epoch_start(5).unwrap();
            }
            let b = if i % 2 == 0 {
                idempotent((i / 2) as i32, &format!("v{i}"), 100 + i)
            } else {
                batch(&[format!("v{i}").as_bytes()], 100 + i)
            };
            log.append(&b).unwrap();
        }
        log.flush().unwrap();
        log
    }

    #[test]
    fn truncation_rolls_back_segments_indexes_producers_and_epochs() {
        let s = SimStorage::new();
        let log = filled(&s);
        assert!(log.segment_base_offsets().len() > 3);
        let entries = |log: &PartitionLog| -> Vec<(i32, i64)> {
            log.epoch_entries()
                .iter()
                .map(|e| (e.epoch, e.start_offset))
                .collect()
        };
        assert_eq!(entries(&log), vec![(0, 0), (2, 4), (5, 8)]);
        // Inside a batch: refused, nothing changes.
        let two = [batch(&[b"a", b"b"], 200)].concat();
        log.append(&two).unwrap(); // offsets 12-13
        assert!(matches!(
            log.truncate_to(13),
            Err(LogError::TruncationInsideBatch {
                offset: 13,
                batch_base: 12,
                batch_last: 13
            })
        ));
        assert_eq!(log.log_end_offset(), 14);
        // Above the end: a no-op; below the start: out of range.
        log.truncate_to(99).unwrap();
        assert_eq!(log.log_end_offset(), 14);
        log.flush().unwrap();
        assert_eq!(log.high_watermark(), 14);

        log.truncate_to(6).unwrap();
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(log.high_watermark(), 6);
        assert_eq!(log.flushed_offset(), 6);
        assert_eq!(
            batches(&log),
            (0..6)
                .map(|o| (o, if o < 4 { 0 } else { 2 }))
                .collect::<Vec<_>>()
        );
        assert!(log.segment_base_offsets().iter().all(|b| *b <= 6));
        assert_eq!(
            *log.segment_base_offsets().last().unwrap(),
            6,
            "a new active segment"
        );
        assert_eq!(entries(&log), vec![(0, 0), (2, 4)]);
        assert_eq!(log.end_offset_for_epoch(2), (2, 6));
        assert_eq!(log.end_offset_for_epoch(5), (-1, -1));
        assert_eq!(log.offset_for_timestamp(105).unwrap(), Some((5, 105)));
        assert_eq!(log.offset_for_timestamp(106).unwrap(), None);
        assert!(!s
            .list(Path::new("/p"))
            .unwrap()
            .iter()
            .filter_map(|n| segment::parse_file_name(n))
            .any(|(b, _)| b > 6));
        // Producer 9 is back at sequence 2 (offset 4): sequence 3 (offset 6) is new again.
        let st = log.producer_state();
        let last = *st.entry(9).unwrap().batches.back().unwrap();
        assert_eq!((last.last_seq, last.last_offset), (2, 4));
        let info = log.append(&idempotent(3, "again", 300)).unwrap();
        assert_eq!((info.base_offset, info.record_count), (6, 1));
        assert!(matches!(
            log.append(&idempotent(5, "gap", 301)),
            Err(LogError::Producer(_))
        ));
        log.flush().unwrap();
        // The new data went to the new segment, sealed under a new data key.
        let key = |base: i64| s.read_file(&Path::new("/p").join(segment::file_name(base, "key")));
        let holder = *log
            .segment_base_offsets()
            .iter()
            .rev()
            .find(|b| **b < 6)
            .unwrap();
        assert_ne!(key(6).unwrap(), key(holder).unwrap());
        drop(log);
        // Reopen (unclean): the same log.
        let mut o = opts(Arc::new(s.clone()), true);
        o.config.segment_bytes = 250;
        let log = PartitionLog::open("/p".into(), o).unwrap();
        assert_eq!(log.log_end_offset(), 7);
        let mut want: Vec<(i64, i32)> = (0..6).map(|o| (o, if o < 4 { 0 } else { 2 })).collect();
        // The stamped epoch never goes back: the leader-path append carried epoch 5.
        want.push((6, 5));
        log.set_cache_capacity(0);
        assert_eq!(batches(&log), want);
        let rr = log.read(6, 1 << 20).unwrap();
        let h = BatchHeader::parse(&rr.records).unwrap();
        assert_eq!(h.base_offset, 6);
        assert_eq!(entries(&log), vec![(0, 0), (2, 4), (5, 6)]);
        assert_eq!(log.leader_epoch(), 5);
    }

    #[test]
    fn truncation_to_the_log_start_empties_the_log() {
        let s = SimStorage::new();
        let log = filled(&s);
        log.delete_records_before(2).unwrap();
        assert!(matches!(
            log.truncate_to(1),
            Err(LogError::OffsetOutOfRange { offset: 1, .. })
        ));
        log.truncate_to(2).unwrap();
        assert_eq!(log.log_end_offset(), 2);
        assert!(batches(&log).is_empty());
        assert!(log.epoch_entries().is_empty());
        assert!(log.producer_state().is_empty());
        let a = log.append(&batch(&[b"x"], 1)).unwrap();
        assert_eq!(a.base_offset, 2);
        log.flush().unwrap();
        drop(log);
        let log = PartitionLog::open("/p".into(), opts(Arc::new(s), true)).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (2, 3));
        assert_eq!(batches(&log), vec![(2, 5)]);
    }

    #[test]
    fn damage_above_the_cut_goes_with_it() {
        let s = SimStorage::new();
        let log = filled(&s);
        let bases = log.segment_base_offsets();
        assert!(bases.len() > 4, "{bases:?}");
        let (cut, damaged) = (bases[1], bases[2]);
        drop(log);
        // A closed segment above the cut whose file header is unusable: its offsets are lost.
        let f = s
            .open(&Path::new("/p").join(segment::file_name(damaged, "log")))
            .unwrap();
        f.write_all_at(b"JUNK", 0).unwrap();
        f.sync().unwrap();
        let mut o = opts(Arc::new(s.clone()), true);
        o.config.segment_bytes = 250;
        let log = PartitionLog::open("/p".into(), o).unwrap();
        assert!(matches!(
            log.read_up_to(damaged, 100, ReadLimit::LogEnd),
            Err(LogError::Corrupt { .. })
        ));
        log.truncate_to(cut).unwrap();
        assert!(log.corruption().is_empty());
        assert!(!s.exists(&Path::new("/p").join(segment::file_name(damaged, "log"))));
        for i in cut..bases[3] + 2 {
            log.append(&batch(&[format!("new{i}").as_bytes()], 500 + i))
                .unwrap();
        }
        log.flush().unwrap();
        log.set_cache_capacity(0);
        let got = batches(&log);
        assert_eq!(
            got.len() as i64,
            bases[3] + 2,
            "every offset readable again"
        );
    }

    #[test]
    fn a_full_truncation_restarts_the_log_at_the_new_offset() {
        let s = SimStorage::new();
        let log = filled(&s);
        let mut hw = log.watch_high_watermark();
        hw.mark_unchanged();
        log.truncate_fully_and_start_at(50).unwrap();
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.flushed_offset(),
                log.high_watermark()
            ),
            (50, 50, 50, 50)
        );
        assert!(
            hw.has_changed().unwrap(),
            "high watermark watchers are told"
        );
        assert!(batches(&log).is_empty());
        assert!(log.epoch_entries().is_empty());
        assert!(log.producer_state().is_empty());
        assert_eq!(log.segment_base_offsets(), vec![50]);
        let files: Vec<String> = s.list(Path::new("/p")).unwrap();
        assert!(
            !files
                .iter()
                .filter_map(|n| segment::parse_file_name(n))
                .any(|(b, _)| b < 50),
            "old segment and snapshot files are gone: {files:?}"
        );
        assert!(matches!(
            log.read(3, 1 << 20),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        // Records fetched from the leader go on from there.
        log.assign_epoch_start(7).unwrap();
        let a = log.append(&batch(&[b"x"], 1)).unwrap();
        assert_eq!(a.base_offset, 50);
        log.flush().unwrap();
        drop(log);
        let log = PartitionLog::open("/p".into(), opts(Arc::new(s), true)).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 51));
        assert_eq!(batches(&log), vec![(50, 7)]);
        assert_eq!(
            log.epoch_entries()
                .iter()
                .map(|e| (e.epoch, e.start_offset))
                .collect::<Vec<_>>(),
            vec![(7, 50)]
        );
    }

    #[test]
    fn a_power_cut_at_every_step_of_a_full_truncation_leaves_either_log() {
        use crate::io::CrashingStorage;
        let mut steps = 0;
        for n in 0.. {
            let disk = CrashingStorage::new(SimStorage::new());
            let mut o = opts(Arc::new(disk.clone()), true);
            o.config.segment_bytes = 250;
            let log = PartitionLog::open("/p".into(), o).unwrap();
            for i in 0..12i64 {
                if i == 4 {
                    log.assign_epoch_start(2).unwrap();
                }
                log.append(&idempotent(i as i32, &format!("v{i}"), 100 + i))
                    .unwrap();
            }
            log.flush().unwrap();
            let before = batches(&log);
            disk.arm(n);
            let res = log.truncate_fully_and_start_at(40);
            if !disk.crashed() {
                res.unwrap();
                steps = n;
                break;
            }
            assert!(res.is_err(), "crash at step {n}");
            drop(log);
            let sim: Arc<dyn Storage> = Arc::new(disk.sim().clone());
            let log = PartitionLog::open("/p".into(), opts(sim.clone(), true)).unwrap();
            let state = (log.log_start_offset(), log.log_end_offset());
            if state == (0, 12) {
                assert_eq!(batches(&log), before, "crash at step {n}: rolled back");
                assert_eq!(log.epoch_entries().len(), 2, "crash at step {n}");
            } else {
                assert_eq!(state, (40, 40), "crash at step {n}: restarted");
                assert!(batches(&log).is_empty(), "crash at step {n}");
                assert!(log.epoch_entries().is_empty(), "crash at step {n}");
                assert!(log.producer_state().is_empty(), "crash at step {n}");
                assert!(
                    !sim.list(Path::new("/p"))
                        .unwrap()
                        .iter()
                        .filter_map(|f| segment::parse_file_name(f))
                        .any(|(b, _)| b < 40),
                    "crash at step {n}: old files left"
                );
                assert_eq!(log.append(&batch(&[b"y"], 1)).unwrap().base_offset, 40);
            }
        }
        assert!(steps > 5, "only {steps} crash points exercised");
    }

    #[test]
    fn an_interrupted_truncation_is_completed_by_the_loader() {
        let s = SimStorage::new();
        let log = filled(&s);
        drop(log);
        // The marker alone (a crash right after the commit point).
        s.write_file_atomic(&Path::new("/p").join(TRUNCATION_MARKER), &encode_marker(5))
            .unwrap();
        let log = PartitionLog::open("/p".into(), opts(Arc::new(s.clone()), true)).unwrap();
        assert_eq!(log.log_end_offset(), 5);
        assert_eq!(batches(&log).len(), 5);
        assert_eq!(
            log.epoch_entries()
                .iter()
                .map(|e| (e.epoch, e.start_offset))
                .collect::<Vec<_>>(),
            vec![(0, 0), (2, 4)]
        );
        assert!(!s.exists(&Path::new("/p").join(TRUNCATION_MARKER)));
        // A damaged marker is an error, not a silent truncation or none.
        drop(log);
        s.write_file_atomic(&Path::new("/p").join(TRUNCATION_MARKER), b"junk")
            .unwrap();
        assert!(matches!(
            PartitionLog::open("/p".into(), opts(Arc::new(s), true)),
            Err(LogError::Corrupt { .. })
        ));
    }
}
