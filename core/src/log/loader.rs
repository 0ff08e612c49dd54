//! Loading a partition log from disk (Kafka's `LogLoader`): what [`PartitionLog::open`] does
//! before the log serves anything.
//!
//! 1. Finish or roll back a compaction swap a crash interrupted ([`super::swap`]).
//! 2. Scan the directory: remove `*.tmp` leftovers and the files of segments whose log file never
//!    made it to disk; collect segment bases and producer-state snapshots.
//! 3. Open every segment: the last one with full verification unless the previous shutdown was
//!    clean (marker [`CLEAN_SHUTDOWN_FILE`]), the others quickly ([`OpenMode`]). A last segment
//!    whose header never became durable is removed (it held no acknowledged data); a closed
//!    segment whose file header or key file is unusable is reported and its offsets (up to the
//!    next segment) are not served.
//! 4. A closed segment whose unreadable tail hides its end offsets ends where the next begins;
//!    a log truncation or a restart of the log at a new offset that a crash interrupted (its
//!    marker exists) is completed ([`super::truncation`]).
//! 5. An empty last segment is dropped; the log start offset comes from its checkpoint
//!    ([`LOG_START_FILE`], DeleteRecords) or the first segment; a new active segment (fresh data
//!    key) starts at the log end offset.
//! 6. The idempotent producer state is rebuilt from the newest usable snapshot plus the batch
//!    headers after it ([`PartitionLog::rebuild_producer_state`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::{swap, truncation, LogError, PartitionLog, CLEAN_SHUTDOWN_FILE, LOG_START_FILE};
use crate::batch::BatchHeader;
use crate::clock::now_ms;
use crate::crypto::{CryptoError, Encryption};
use crate::io::Storage;
use crate::producer_state::{self, ProducerStateManager};
use crate::segment::{
    self, BadRegion, OpenMode, PartitionIdent, Segment, SegmentError, FILE_HEADER_LEN,
};
use crate::sync::LockExt;

/// What loading found: the segments (the last is the new active segment), offsets and damage.
pub(super) struct LoadedLog {
    pub segments: BTreeMap<i64, Arc<Segment>>,
    pub log_start: i64,
    pub log_end: i64,
    /// Corrupt regions found by recovery (reported, not served).
    pub bad: Vec<BadRegion>,
    /// Closed segments that could not be opened at all.
    pub lost: Vec<BadRegion>,
    /// Offsets of the producer-state snapshots in the directory.
    pub snapshots: Vec<i64>,
}

/// The files of a partition directory, sorted out.
struct DirListing {
    clean_shutdown: bool,
    /// Base offsets of the segments with a log file, ascending.
    log_bases: Vec<i64>,
    snapshots: Vec<i64>,
    /// Whether files were removed (the directory then needs an fsync).
    removed: bool,
}

/// The segments opened from disk.
struct OpenedSegments {
    map: BTreeMap<i64, Arc<Segment>>,
    bad: Vec<BadRegion>,
    lost: Vec<BadRegion>,
    removed: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Load (recovering the tail) or create the log in `dir` and start a new active segment.
pub(super) fn load(
    storage: &dyn Storage,
    dir: &Path,
    ident: PartitionIdent,
    encryption: &Encryption,
    index_interval: u64,
) -> Result<LoadedLog, LogError> {
    storage.create_dir_all(dir).map_err(io_err(dir))?;
    swap::recover_swap(storage, dir)?;
    let listing = list_dir(storage, dir)?;
    let mut opened = open_segments(storage, dir, ident, encryption, index_interval, &listing)?;
    extend_unreadable_tails(&opened.map, &mut opened.bad);
    truncation::recover_truncation(
        storage,
        dir,
        &mut opened.map,
        &mut opened.bad,
        &mut opened.lost,
    )?;
    let restarted = truncation::recover_restart(storage, dir, &mut opened.map)?;
    if restarted.is_some() {
        opened.bad.clear();
        opened.lost.clear();
        opened.removed = true;
    }
    // An empty last segment is dropped; the new active segment takes its base offset.
    let mut dropped_base = None;
    if let Some((&base, seg)) = opened.map.iter().next_back() {
        if seg.is_empty() && seg.state().bad.is_empty() {
            seg.delete_files(storage)?;
            opened.map.remove(&base);
            opened.removed = true;
            dropped_base = Some(base);
        }
    }
    let start_ckpt = read_log_start(storage, dir);
    let log_end = match (opened.map.values().next_back(), dropped_base) {
        (Some(s), d) => s.next_offset().max(d.unwrap_or(i64::MIN)),
        (None, Some(d)) => d,
        (None, None) => start_ckpt.unwrap_or(0).max(0),
    };
    let first_base = opened
        .map
        .keys()
        .next()
        .copied()
        .unwrap_or(log_end)
        .min(opened.lost.first().map_or(i64::MAX, |l| l.first_offset));
    let log_start = start_ckpt.unwrap_or(first_base).clamp(first_base, log_end);
    let mut removed = listing.removed || opened.removed;
    if listing.clean_shutdown {
        storage
            .remove(&dir.join(CLEAN_SHUTDOWN_FILE))
            .map_err(io_err(dir))?;
        removed = true;
    }
    if removed {
        storage.sync_dir(dir).map_err(io_err(dir))?;
    }
    let active = Segment::create(
        storage,
        dir,
        ident,
        log_end,
        encryption,
        now_ms(),
        index_interval,
    )?;
    opened.map.insert(log_end, Arc::new(active));
    Ok(LoadedLog {
        segments: opened.map,
        log_start,
        log_end,
        bad: opened.bad,
        lost: opened.lost,
        // A restart removed the snapshots with the segments.
        snapshots: if restarted.is_some() {
            Vec::new()
        } else {
            listing.snapshots
        },
    })
}

fn list_dir(storage: &dyn Storage, dir: &Path) -> Result<DirListing, LogError> {
    let names = storage.list(dir).map_err(io_err(dir))?;
    let clean_shutdown = names.iter().any(|n| n == CLEAN_SHUTDOWN_FILE);
    let mut log_bases = Vec::new();
    let mut other = Vec::new();
    let mut snapshots = Vec::new();
    for n in &names {
        if n.ends_with(".tmp") {
            let _ = storage.remove(&dir.join(n));
            continue;
        }
        if let Some((base, ext)) = segment::parse_file_name(n) {
            if ext == "log" {
                log_bases.push(base);
            } else if ext == producer_state::SNAPSHOT_EXT {
                snapshots.push(base);
            } else {
                other.push((base, n.clone()));
            }
        }
    }
    log_bases.sort_unstable();
    // Files of segments whose log never made it to disk (crash during creation).
    let mut removed = false;
    for (base, n) in other {
        if log_bases.binary_search(&base).is_err() {
            storage
                .remove(&dir.join(&n))
                .map_err(io_err(&dir.join(&n)))?;
            removed = true;
        }
    }
    Ok(DirListing {
        clean_shutdown,
        log_bases,
        snapshots,
        removed,
    })
}

fn open_segments(
    storage: &dyn Storage,
    dir: &Path,
    ident: PartitionIdent,
    encryption: &Encryption,
    index_interval: u64,
    listing: &DirListing,
) -> Result<OpenedSegments, LogError> {
    let mut out = OpenedSegments {
        map: BTreeMap::new(),
        bad: Vec::new(),
        lost: Vec::new(),
        removed: false,
    };
    let bases = &listing.log_bases;
    for (i, base) in bases.iter().copied().enumerate() {
        let last = i + 1 == bases.len();
        let mode = if last && !listing.clean_shutdown {
            OpenMode::Full
        } else {
            OpenMode::Quick
        };
        let opened = Segment::open(storage, dir, ident, base, encryption, mode, index_interval);
        let (seg, rec) = match opened {
            Ok(x) => x,
            Err(SegmentError::Corrupt { .. } | SegmentError::BadFileHeader { .. })
                if last && torn_creation(storage, dir, base) =>
            {
                // A segment whose header never became durable holds no acknowledged data.
                tracing::warn!(base, "removing segment left half-created by a crash");
                for ext in ["log", "index", "timeindex", "key"] {
                    let _ = storage.remove(&dir.join(segment::file_name(base, ext)));
                }
                out.removed = true;
                continue;
            }
            Err(
                e @ (SegmentError::Corrupt { .. }
                | SegmentError::BadFileHeader { .. }
                | SegmentError::Crypto(CryptoError::Malformed(_))),
            ) if !last => {
                // A closed segment whose file header or key file is unusable: report it and
                // serve the rest of the log; its offsets (up to the next segment) are lost.
                let next = bases.get(i + 1).copied().unwrap_or(base);
                let region = BadRegion {
                    file: dir.join(segment::file_name(base, "log")),
                    start: 0,
                    end: 0,
                    first_offset: base,
                    next_offset: next,
                    reason: LogError::from(e).to_string(),
                };
                tracing::error!(file = %region.file.display(), reason = %region.reason,
                    "unusable segment; its offsets are not served");
                out.bad.push(region.clone());
                out.lost.push(region);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        out.bad.extend(rec.bad);
        out.map.insert(base, Arc::new(seg));
    }
    Ok(out)
}

/// A closed segment whose unreadable tail hides its end offsets ends where the next begins.
fn extend_unreadable_tails(map: &BTreeMap<i64, Arc<Segment>>, bad: &mut [BadRegion]) {
    let bases: Vec<i64> = map.keys().copied().collect();
    for w in bases.windows(2) {
        if let Some(seg) = map.get(&w[0]) {
            let mut st = seg.state_mut();
            let size = st.size;
            for b in st.bad.iter_mut() {
                if b.next_offset < w[1] && b.end >= size {
                    b.next_offset = w[1];
                }
            }
            for b in bad.iter_mut().filter(|b| b.file == seg.log_path) {
                if b.next_offset < w[1] && b.end >= size {
                    b.next_offset = w[1];
                }
            }
            if st.next_offset < w[1] && !st.bad.is_empty() {
                st.next_offset = w[1];
            }
        }
    }
}

/// Whether the log file of segment `base` holds no more than its header (a creation torn by a
/// crash).
fn torn_creation(storage: &dyn Storage, dir: &Path, base: i64) -> bool {
    let p = dir.join(segment::file_name(base, "log"));
    match storage.open(&p).and_then(|f| f.len()) {
        Ok(len) => len <= FILE_HEADER_LEN,
        Err(_) => false,
    }
}

/// The log start offset checkpoint: 8 bytes big-endian and their CRC32C; `None` if missing or
/// damaged.
fn read_log_start(storage: &dyn Storage, dir: &Path) -> Option<i64> {
    let b = storage.read_file(&dir.join(LOG_START_FILE)).ok()?;
    if b.len() != 12 {
        return None;
    }
    let crc = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
    if crc32c::crc32c(&b[..8]) != crc {
        return None;
    }
    Some(i64::from_be_bytes(b[..8].try_into().ok()?))
}

/// Write the log start offset checkpoint of `dir` (atomically, durable when it returns).
pub(super) fn write_log_start_file(
    storage: &dyn Storage,
    dir: &Path,
    offset: i64,
) -> Result<(), LogError> {
    let p = dir.join(LOG_START_FILE);
    storage
        .write_file_atomic(&p, &encode_log_start(offset))
        .map_err(|source| LogError::Io { path: p, source })
}

/// The log start offset checkpoint's bytes (see [`read_log_start`]).
pub(super) fn encode_log_start(offset: i64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&offset.to_be_bytes());
    let crc = crc32c::crc32c(&b[..8]);
    b[8..].copy_from_slice(&crc.to_be_bytes());
    b
}

impl PartitionLog {
    /// Load the newest usable producer state snapshot and replay batch headers after it (or,
    /// without a snapshot, from the second-to-last segment, as Kafka does).
    pub(super) fn rebuild_producer_state(&self, mut snapshots: Vec<i64>) {
        let leo = self.log_end_offset();
        let log_start = self.log_start_offset();
        snapshots.sort_unstable();
        let mut state = None;
        for &off in snapshots.iter().rev() {
            let path = self.dir.join(producer_state::snapshot_file_name(off));
            if off > leo {
                // Covers data that did not survive: useless.
                let _ = self.storage.remove(&path);
                continue;
            }
            match self.storage.read_file(&path) {
                Ok(b) => match ProducerStateManager::decode(&b) {
                    Some(s) => {
                        state = Some((off, s));
                        break;
                    }
                    None => {
                        tracing::warn!(file = %path.display(), "ignoring damaged producer snapshot")
                    }
                },
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot read producer snapshot")
                }
            }
        }
        let (mut from, mut st) = match state {
            Some(x) => x,
            None => {
                let bases = self.segment_base_offsets();
                let from = if bases.len() >= 3 {
                    bases[bases.len() - 3]
                } else {
                    0
                };
                (from, ProducerStateManager::new())
            }
        };
        from = from.max(log_start);
        while from < leo {
            let res = match self.read_up_to(from, 1 << 20, super::ReadLimit::LogEnd) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(partition = self.ident.partition, topic = %self.topic, offset = from, error = %e,
                        "producer state rebuild stopped early");
                    break;
                }
            };
            let mut buf: &[u8] = &res.records;
            let start = from;
            while let Ok(h) = BatchHeader::parse(buf) {
                if h.base_offset >= start {
                    st.record(&h);
                }
                from = from.max(h.last_offset() + 1);
                match buf.get(h.total_len()..) {
                    Some(rest) => buf = rest,
                    None => break,
                }
            }
            if from == start {
                break;
            }
        }
        *self.producers.lock_unpoisoned() = st;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::SimStorage;
    use uuid::Uuid;

    fn ident() -> PartitionIdent {
        PartitionIdent {
            topic_id: Uuid::from_u128(1),
            partition: 0,
        }
    }

    #[test]
    fn log_start_checkpoint_round_trips_and_damage_is_ignored() {
        let s = SimStorage::new();
        let dir = Path::new("/p");
        s.create_dir_all(dir).unwrap();
        assert_eq!(read_log_start(&s, dir), None);
        s.write_file_atomic(&dir.join(LOG_START_FILE), &encode_log_start(42))
            .unwrap();
        assert_eq!(read_log_start(&s, dir), Some(42));
        let mut b = encode_log_start(42);
        b[3] ^= 1;
        s.write_file_atomic(&dir.join(LOG_START_FILE), &b).unwrap();
        assert_eq!(read_log_start(&s, dir), None);
    }

    #[test]
    fn an_empty_directory_loads_as_an_empty_log_with_one_active_segment() {
        let s = SimStorage::new();
        let dir = Path::new("/p");
        let loaded = load(&s, dir, ident(), &Encryption::Off, 4096).unwrap();
        assert_eq!((loaded.log_start, loaded.log_end), (0, 0));
        assert_eq!(loaded.segments.keys().copied().collect::<Vec<_>>(), vec![0]);
        assert!(loaded.bad.is_empty() && loaded.lost.is_empty());
    }

    #[test]
    fn leftovers_of_crashed_creations_are_removed() {
        let s = SimStorage::new();
        let dir = Path::new("/p");
        s.create_dir_all(dir).unwrap();
        // An index without a log, a temp file, and a log file torn before its header was whole.
        s.write_file_atomic(&dir.join(segment::file_name(5, "index")), b"x")
            .unwrap();
        s.write_file_atomic(&dir.join("00000000000000000005.key.tmp"), b"x")
            .unwrap();
        s.write_file_atomic(&dir.join(segment::file_name(9, "log")), b"RILL")
            .unwrap();
        let loaded = load(&s, dir, ident(), &Encryption::Off, 4096).unwrap();
        assert_eq!(loaded.log_end, 0);
        let names = s.list(dir).unwrap();
        assert!(
            !names
                .iter()
                .any(|n| n.contains("05") || n.contains("09") || n.ends_with(".tmp")),
            "left: {names:?}"
        );
    }
}
