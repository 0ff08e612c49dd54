//! One segment of a partition log: the files `N.log`, `N.index`, `N.timeindex` and (when
//! encrypted) `N.key`, where `N` is the 20-digit base offset.
//!
//! Layout (full description in `docs/on-disk-format.md`):
//! - every segment file starts with a 48-byte [`FileHeader`] (magic `RILL`, file kind, format
//!   version, cipher id, topic id, partition, base offset, creation time, CRC32C);
//! - `N.log` then holds stored batches back to back. A stored batch is the 61-byte v2 header in
//!   clear followed by the records section sealed with the segment's data key (same length) and
//!   a 16-byte tag; with encryption off it is the plain Kafka batch. The AEAD nonce is derived
//!   from the batch's file position, the AAD is the clear header + topic id + partition;
//! - `N.key` holds the segment's data key wrapped under the master key (see [`KeyFile`]).
//!
//! Invariants a writer of a new segment (e.g. the compaction cleaner) must keep:
//! - a data key seals exactly one file, appended once per position: create a NEW segment with
//!   [`Segment::create`] (fresh key) rather than rewriting a file in place;
//! - batches are appended in offset order, offsets strictly increasing (gaps allowed);
//! - durability order on creation: key sidecar (tmp + fsync + rename + dir fsync) before the log
//!   file; data fsynced before it is acknowledged; the directory fsynced after files are created,
//!   renamed or removed.
//!
//! Concurrency: one writer (the log's append path) at a time; readers use positional reads and
//! only look at bytes below the published `size`, so they never see a half-written batch.
//!
//! Submodules: [`file_header`] (the 48-byte header codec), [`key_file`] (the `N.key` sidecar),
//! `recovery` (what [`Segment::open`] checks and repairs, by [`OpenMode`]).

pub mod file_header;
pub mod key_file;
mod recovery;

pub use file_header::{
    FileHeader, FileHeaderError, FileKind, FILE_HEADER_LEN, FILE_MAGIC, FORMAT_VERSION,
};
pub use key_file::{KeyFile, KEY_FILE_LEN, KEY_MAGIC, KEY_VERSION};
pub use recovery::Recovery;
use recovery::ScanError;

use crate::sync::RwLockExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use bytes::BytesMut;
use uuid::Uuid;

use crate::batch::{self, BatchError, BatchHeader, HEADER_LEN};
use crate::crypto::{CipherKind, CryptoError, DataKey, Encryption, TAG_LEN};
use crate::index::{OffsetIndex, TimeIndex};
use crate::io::{Storage, StorageFile};

/// Errors of a segment. The partition log turns each into the [`crate::log::SegmentError`] variant
/// of the same name (a bad file header becomes `Corrupt` at position 0).
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The log file's header is unusable (truncated, bad magic or CRC, wrong kind or version).
    #[error("corrupt data in {file} at position 0: {source}")]
    BadFileHeader {
        file: PathBuf,
        #[source]
        source: FileHeaderError,
    },
    /// Stored data failed verification (CRC or AEAD tag, or inconsistent framing).
    #[error("corrupt data in {file} at position {position}: {reason}")]
    Corrupt {
        file: PathBuf,
        position: u64,
        reason: String,
    },
    /// Encryption / key errors (key sidecar unreadable, wrong master key, ...).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A batch handed to the segment is malformed.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The disk failed or is full.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The partition a segment belongs to (part of every header and of the AAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionIdent {
    pub topic_id: Uuid,
    pub partition: i32,
}

/// File name of a segment file: 20-digit zero-padded base offset + extension.
pub fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Parse `NNNNNNNNNNNNNNNNNNNN.ext` into (base offset, ext).
pub fn parse_file_name(name: &str) -> Option<(i64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

/// A range of a segment file that failed verification and is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRegion {
    /// The log file.
    pub file: PathBuf,
    /// First byte of the bad region.
    pub start: u64,
    /// End of the bad region (next valid batch, or the end of the data).
    pub end: u64,
    /// First offset that may be inside the region.
    pub first_offset: i64,
    /// First offset after the region (the next valid batch's base, or the segment's end).
    pub next_offset: i64,
    /// What failed.
    pub reason: String,
}

/// Mutable state of a segment, guarded by one lock.
#[derive(Debug)]
pub struct SegState {
    /// End of the valid data in the log file (bytes); readers never look beyond it.
    pub size: u64,
    /// Offset after the last batch.
    pub next_offset: i64,
    /// Largest batch max timestamp (-1 if none).
    pub max_timestamp: i64,
    /// Offset where `max_timestamp` was reached (-1 if none).
    pub offset_of_max_ts: i64,
    /// Number of batches.
    pub batches: u64,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Bytes appended since the last offset index entry.
    pub bytes_since_index: u64,
    /// Current lengths of the index files.
    pub index_file_len: u64,
    pub time_file_len: u64,
    /// Regions that failed verification (reported, not served).
    pub bad: Vec<BadRegion>,
}

/// Stored size and position of a batch written by [`Segment::append_stored`].
#[derive(Debug, Clone, Copy)]
pub struct StoredBatch {
    pub header: BatchHeader,
    /// Offset of the record with the batch's max timestamp ([`batch::offset_of_max_timestamp`]).
    pub max_ts_offset: i64,
    pub position: u64,
    pub stored_len: u64,
}

/// How much checking [`Segment::open`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Closed segment: check the file and index headers and index sanity, rebuild indexes from
    /// the clear batch headers if needed, scan headers after the last index entry.
    Quick,
    /// Segment that was active at an unclean shutdown: verify every batch (framing, AEAD tag, CRC),
    /// truncate a torn tail, report corruption followed by valid data, rebuild the indexes.
    Full,
}

/// One segment.
pub struct Segment {
    pub base_offset: i64,
    pub ident: PartitionIdent,
    pub log_path: PathBuf,
    pub index_path: PathBuf,
    pub time_path: PathBuf,
    pub key_path: PathBuf,
    pub log: Arc<dyn StorageFile>,
    pub index_file: Arc<dyn StorageFile>,
    pub time_file: Arc<dyn StorageFile>,
    /// The data key (None for plaintext segments).
    pub key: Option<DataKey>,
    /// Wall-clock creation time from the header.
    pub created_ms: i64,
    /// Monotonic creation time if created by this process.
    pub created_at: Option<Instant>,
    /// First sane wall-clock time (ms) at which retention looked at this segment (-1 = not yet).
    pub first_seen_sane_ms: AtomicI64,
    /// Bytes between offset index entries used when rebuilding indexes.
    pub index_interval: u64,
    state: RwLock<SegState>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Segment({})", self.log_path.display())
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SegmentError + '_ {
    move |source| SegmentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Segment {
    /// Create a new, empty segment at `base_offset` with a fresh data key (when encrypted).
    /// Everything is durable (files and directory entries) when this returns.
    pub fn create(
        storage: &dyn Storage,
        dir: &Path,
        ident: PartitionIdent,
        base_offset: i64,
        encryption: &Encryption,
        now_ms: i64,
        index_interval: u64,
    ) -> Result<Segment, SegmentError> {
        let paths = SegPaths::new(dir, base_offset);
        let (cipher_id, key) = match encryption {
            Encryption::Off => (0u8, None),
            Encryption::On { cipher, master } => {
                let (kf, dk) = KeyFile::generate(*cipher, master, ident, base_offset)?;
                storage
                    .write_file_atomic(&paths.key, &kf.encode())
                    .map_err(io_err(&paths.key))?;
                (cipher.id(), Some(dk))
            }
        };
        let create_file =
            |kind: FileKind, path: &Path| -> Result<Arc<dyn StorageFile>, SegmentError> {
                let f = storage.create(path).map_err(io_err(path))?;
                let h = FileHeader {
                    kind,
                    version: FORMAT_VERSION,
                    cipher_id,
                    ident,
                    base_offset,
                    created_ms: now_ms,
                };
                f.write_all_at(&h.encode(), 0).map_err(io_err(path))?;
                f.sync().map_err(io_err(path))?;
                Ok(f)
            };
        let index_file = create_file(FileKind::Index, &paths.index)?;
        let time_file = create_file(FileKind::TimeIndex, &paths.time)?;
        let log = create_file(FileKind::Log, &paths.log)?;
        storage.sync_dir(dir).map_err(io_err(dir))?;
        Ok(Segment {
            base_offset,
            ident,
            log_path: paths.log,
            index_path: paths.index,
            time_path: paths.time,
            key_path: paths.key,
            log,
            index_file,
            time_file,
            key,
            created_ms: now_ms,
            created_at: Some(Instant::now()),
            first_seen_sane_ms: AtomicI64::new(-1),
            index_interval,
            state: RwLock::new(SegState::empty(base_offset)),
        })
    }

    /// Open an existing segment and recover it according to `mode`.
    ///
    /// Errors: [`CryptoError::WrongMasterKey`] (never a truncation) if the data key was wrapped
    /// under another master key; [`SegmentError::BadFileHeader`] if the log file header is unusable, [`SegmentError::Corrupt`] if it names another segment.
    pub fn open(
        storage: &dyn Storage,
        dir: &Path,
        ident: PartitionIdent,
        base_offset: i64,
        encryption: &Encryption,
        mode: OpenMode,
        index_interval: u64,
    ) -> Result<(Segment, Recovery), SegmentError> {
        let paths = SegPaths::new(dir, base_offset);
        let log = storage.open(&paths.log).map_err(io_err(&paths.log))?;
        let log_len = log.len().map_err(io_err(&paths.log))?;
        let mut hb = vec![0u8; log_len.min(FILE_HEADER_LEN) as usize];
        log.read_exact_at(&mut hb, 0).map_err(io_err(&paths.log))?;
        let header = FileHeader::decode(&hb, FileKind::Log).map_err(|source| {
            SegmentError::BadFileHeader {
                file: paths.log.clone(),
                source,
            }
        })?;
        if header.ident != ident || header.base_offset != base_offset {
            return Err(SegmentError::Corrupt {
                file: paths.log.clone(),
                position: 0,
                reason: format!(
                    "segment header names {}-{} base {}, expected {}-{} base {}",
                    header.ident.topic_id,
                    header.ident.partition,
                    header.base_offset,
                    ident.topic_id,
                    ident.partition,
                    base_offset
                ),
            });
        }
        let key = match CipherKind::from_id(header.cipher_id)? {
            None => None,
            Some(cipher) => {
                let master = match encryption {
                    Encryption::On { master, .. } => master,
                    Encryption::Off => {
                        return Err(CryptoError::Malformed(format!(
                            "{} is encrypted but encryption is off on this node",
                            paths.log.display()
                        ))
                        .into())
                    }
                };
                let bytes = storage.read_file(&paths.key).map_err(|e| {
                    SegmentError::Crypto(CryptoError::Malformed(format!(
                        "cannot read data key {}: {e}",
                        paths.key.display()
                    )))
                })?;
                let kf = KeyFile::decode(&bytes)?;
                if kf.cipher != cipher || kf.ident != ident || kf.base_offset != base_offset {
                    return Err(CryptoError::Malformed(format!(
                        "{} does not belong to {}",
                        paths.key.display(),
                        paths.log.display()
                    ))
                    .into());
                }
                Some(kf.unwrap(master)?)
            }
        };
        let index_file = open_or_create(storage, &paths.index)?;
        let time_file = open_or_create(storage, &paths.time)?;
        let seg = Segment {
            base_offset,
            ident,
            log_path: paths.log,
            index_path: paths.index,
            time_path: paths.time,
            key_path: paths.key,
            log,
            index_file,
            time_file,
            key,
            created_ms: header.created_ms,
            created_at: None,
            first_seen_sane_ms: AtomicI64::new(-1),
            index_interval,
            state: RwLock::new(SegState {
                size: log_len,
                ..SegState::empty(base_offset)
            }),
        };
        let rec = match mode {
            OpenMode::Full => seg.recover_full(log_len, header)?,
            OpenMode::Quick => seg.recover_quick(log_len, header, false)?,
        };
        Ok((seg, rec))
    }

    /// Read lock on the state.
    pub fn state(&self) -> RwLockReadGuard<'_, SegState> {
        self.state.read_unpoisoned()
    }
    /// Write lock on the state (recovery and the append path).
    pub(crate) fn state_mut(&self) -> RwLockWriteGuard<'_, SegState> {
        self.state.write_unpoisoned()
    }

    /// Bytes of valid data including the file header.
    pub fn size(&self) -> u64 {
        self.state().size
    }
    /// Offset after the last batch.
    pub fn next_offset(&self) -> i64 {
        self.state().next_offset
    }
    /// Whether the segment holds no batch.
    pub fn is_empty(&self) -> bool {
        self.state().batches == 0
    }
    /// Tag bytes added to each stored batch.
    pub fn overhead(&self) -> u64 {
        if self.key.is_some() {
            TAG_LEN as u64
        } else {
            0
        }
    }

    fn aad(&self, header: &[u8]) -> [u8; HEADER_LEN + 20] {
        let mut aad = [0u8; HEADER_LEN + 20];
        aad[..HEADER_LEN].copy_from_slice(&header[..HEADER_LEN]);
        aad[HEADER_LEN..HEADER_LEN + 16].copy_from_slice(self.ident.topic_id.as_bytes());
        aad[HEADER_LEN + 16..].copy_from_slice(&self.ident.partition.to_be_bytes());
        aad
    }

    /// Append the stored form of the plaintext batch `plain` (header already rewritten) for file
    /// position `position` to `out`: sealed with the data key, or as is when plaintext.
    pub fn seal_into(
        &self,
        plain: &[u8],
        position: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), SegmentError> {
        match &self.key {
            None => out.extend_from_slice(plain),
            Some(key) => {
                if plain.len() < HEADER_LEN {
                    return Err(BatchError::Malformed("batch shorter than header".into()).into());
                }
                let aad = self.aad(plain);
                out.extend_from_slice(&plain[..HEADER_LEN]);
                let body = out.len();
                out.resize(body + plain.len() - HEADER_LEN, 0);
                let tag = key.seal_to(position, &aad, &plain[HEADER_LEN..], &mut out[body..])?;
                out.extend_from_slice(&tag);
            }
        }
        Ok(())
    }

    /// Verify and decrypt in place one stored batch read from `position`; returns the plaintext
    /// length (the batch is `stored[..len]` afterwards).
    pub fn open_in_place(&self, position: u64, stored: &mut [u8]) -> Result<usize, String> {
        let plain_len = match &self.key {
            Some(key) => {
                if stored.len() < HEADER_LEN + TAG_LEN {
                    return Err("stored batch shorter than header and tag".into());
                }
                let aad = self.aad(stored);
                let body_len = stored.len() - HEADER_LEN - TAG_LEN;
                let (body, tag) = stored[HEADER_LEN..].split_at_mut(body_len);
                key.open(position, &aad, body, tag).map_err(|_| {
                    "authentication tag mismatch (modified data or wrong key)".to_string()
                })?;
                stored.len() - TAG_LEN
            }
            None => stored.len(),
        };
        batch::verify_crc(&stored[..plain_len]).map_err(|e| e.to_string())?;
        Ok(plain_len)
    }

    /// Write stored batches (the output of [`Segment::seal_into`], starting at the current size)
    /// in one write and publish them to readers. Index entries are added in memory and written by
    /// [`Segment::write_indexes`].
    pub fn append_stored(
        &self,
        data: &[u8],
        batches: &[StoredBatch],
        index_interval: u64,
    ) -> Result<(), SegmentError> {
        let pos = self.state().size;
        self.log
            .write_all_at(data, pos)
            .map_err(io_err(&self.log_path))?;
        let mut st = self.state_mut();
        for b in batches {
            st.register(self.base_offset, b, index_interval);
        }
        st.size = pos + data.len() as u64;
        Ok(())
    }

    /// Write index entries added since the last call (no fsync: indexes are rebuilt on recovery).
    pub fn write_indexes(&self) -> Result<(), SegmentError> {
        let mut st = self.state_mut();
        let ib = st.index.take_pending();
        if !ib.is_empty() {
            self.index_file
                .write_all_at(&ib, st.index_file_len)
                .map_err(io_err(&self.index_path))?;
            st.index_file_len += ib.len() as u64;
        }
        let tb = st.time_index.take_pending();
        if !tb.is_empty() {
            self.time_file
                .write_all_at(&tb, st.time_file_len)
                .map_err(io_err(&self.time_path))?;
            st.time_file_len += tb.len() as u64;
        }
        Ok(())
    }

    /// fsync the log file.
    pub fn sync_log(&self) -> Result<(), SegmentError> {
        self.log.sync().map_err(io_err(&self.log_path))
    }

    /// Seal the segment for good (roll or close): final time index entry, write and fsync indexes
    /// and log.
    pub fn finish(&self) -> Result<(), SegmentError> {
        self.state_mut().seal_time_index(self.base_offset);
        self.write_indexes()?;
        self.sync_log()?;
        self.index_file.sync().map_err(io_err(&self.index_path))?;
        self.time_file.sync().map_err(io_err(&self.time_path))?;
        Ok(())
    }

    /// Remove the segment's files (the caller fsyncs the directory).
    pub fn delete_files(&self, storage: &dyn Storage) -> Result<(), SegmentError> {
        for p in [
            &self.log_path,
            &self.index_path,
            &self.time_path,
            &self.key_path,
        ] {
            match storage.remove(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(p)(e)),
            }
        }
        Ok(())
    }

    fn stored_len(&self, h: &BatchHeader) -> u64 {
        h.total_len() as u64 + self.overhead()
    }

    /// Read and parse the clear header at `pos`, checking that the batch fits before `end`.
    fn header_at(&self, pos: u64, end: u64) -> Result<(BatchHeader, u64), ScanError> {
        if end.saturating_sub(pos) < HEADER_LEN as u64 {
            return Err(ScanError::Short(format!(
                "{} bytes at the end do not hold a batch header",
                end.saturating_sub(pos)
            )));
        }
        let mut hb = [0u8; HEADER_LEN];
        self.log
            .read_exact_at(&mut hb, pos)
            .map_err(|e| ScanError::Short(e.to_string()))?;
        let h = BatchHeader::parse(&hb).map_err(|e| ScanError::Bad {
            reason: e.to_string(),
            len: None,
        })?;
        let len = self.stored_len(&h);
        if pos + len > end {
            return Err(ScanError::Short(format!(
                "batch of {len} bytes runs past the end of the data"
            )));
        }
        Ok((h, len))
    }

    /// Read whole plaintext batches starting with the one containing `from` into `out`, stopping
    /// at `max_bytes` (at least one batch when `out` is empty) or at a batch with base offset at
    /// or above `limit` (the high watermark). Returns `Ok(true)` if the end of the segment's data was
    /// reached (the caller may continue with the next segment).
    pub fn read_into(
        &self,
        from: i64,
        max_bytes: usize,
        limit: i64,
        out: &mut BytesMut,
    ) -> Result<bool, SegmentError> {
        let (size, mut pos, bad, seg_next, mut expect_base) = {
            let st = self.state();
            let rel = (from - self.base_offset).clamp(0, u32::MAX as i64) as u32;
            let (pos, expect) = match st.index.floor(rel) {
                Some(e) => (
                    e.position as u64,
                    Some(self.base_offset + e.rel_offset as i64),
                ),
                None => (FILE_HEADER_LEN, None),
            };
            (st.size, pos, st.bad.clone(), st.next_offset, expect)
        };
        // Clear headers are only authenticated when a batch is decrypted, so a batch that is
        // skipped must at least be consistent: the indexed batch has the indexed base offset,
        // offsets strictly increase, and nothing ends past the segment's end offset.
        let mut prev_last = self.base_offset - 1;
        let read_ahead = (max_bytes.saturating_add(4096)).clamp(16 * 1024, 1 << 20) as u64;
        let mut chunk: Vec<u8> = Vec::new();
        let mut chunk_pos = 0u64;
        let corrupt = |position: u64, reason: String| SegmentError::Corrupt {
            file: self.log_path.clone(),
            position,
            reason,
        };
        while pos < size {
            if let Some(b) = bad.iter().find(|b| b.start == pos) {
                if !out.is_empty() {
                    return Ok(false);
                }
                if from < b.next_offset {
                    return Err(corrupt(b.start, b.reason.clone()));
                }
                pos = b.end;
                continue;
            }
            // Make sure the header is in the chunk.
            if pos < chunk_pos || pos + HEADER_LEN as u64 > chunk_pos + chunk.len() as u64 {
                let n = (size - pos).min(read_ahead);
                chunk.resize(n as usize, 0);
                self.log
                    .read_exact_at(&mut chunk, pos)
                    .map_err(io_err(&self.log_path))?;
                chunk_pos = pos;
            }
            let off = (pos - chunk_pos) as usize;
            let h = match BatchHeader::parse(&chunk[off..]) {
                Ok(h) => h,
                Err(e) if out.is_empty() => return Err(corrupt(pos, e.to_string())),
                Err(_) => return Ok(false),
            };
            let len = self.stored_len(&h);
            let consistent = expect_base.is_none_or(|e| e == h.base_offset)
                && h.base_offset > prev_last
                && h.last_offset() < seg_next;
            if pos + len > size || !consistent {
                if out.is_empty() {
                    return Err(corrupt(
                        pos,
                        "batch header inconsistent with the log".into(),
                    ));
                }
                return Ok(false);
            }
            expect_base = None;
            prev_last = h.last_offset();
            if h.base_offset >= limit {
                return Ok(false);
            }
            if h.last_offset() < from {
                pos += len;
                continue;
            }
            let plain_len = h.total_len();
            if !out.is_empty() && out.len() + plain_len > max_bytes {
                return Ok(false);
            }
            if pos + len > chunk_pos + chunk.len() as u64 {
                let n = (size - pos).min(read_ahead.max(len));
                chunk.resize(n as usize, 0);
                self.log
                    .read_exact_at(&mut chunk, pos)
                    .map_err(io_err(&self.log_path))?;
                chunk_pos = pos;
            }
            let off = (pos - chunk_pos) as usize;
            let start = out.len();
            out.extend_from_slice(&chunk[off..off + len as usize]);
            match self.open_in_place(pos, &mut out[start..]) {
                Ok(n) => out.truncate(start + n),
                Err(reason) => {
                    out.truncate(start);
                    if out.is_empty() {
                        return Err(corrupt(pos, reason));
                    }
                    return Ok(false);
                }
            }
            pos += len;
            if out.len() >= max_bytes {
                return Ok(pos >= size);
            }
        }
        Ok(true)
    }

    /// Call `f` with the clear header of every batch, in file order (no decryption; regions
    /// reported as corrupt are skipped). Used to rebuild the leader epoch cache.
    pub fn for_each_header(&self, mut f: impl FnMut(&BatchHeader)) -> Result<(), SegmentError> {
        let (size, bad) = {
            let st = self.state();
            (st.size, st.bad.clone())
        };
        let mut pos = FILE_HEADER_LEN;
        while pos < size {
            if let Some(b) = bad.iter().find(|b| b.start == pos) {
                pos = b.end;
                continue;
            }
            let (h, len) = self
                .header_at(pos, size)
                .map_err(|e| SegmentError::Corrupt {
                    file: self.log_path.clone(),
                    position: pos,
                    reason: e.reason(),
                })?;
            f(&h);
            pos += len;
        }
        Ok(())
    }

    /// Where a truncation to `offset` cuts this segment: the file position and clear header of
    /// the first batch whose last offset is >= `offset`, or `None` if every batch ends below it.
    pub fn truncation_point(
        &self,
        offset: i64,
    ) -> Result<Option<(u64, BatchHeader)>, SegmentError> {
        let (size, mut pos, bad) = {
            let st = self.state();
            let rel = (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32;
            let pos = st
                .index
                .floor(rel)
                .map_or(FILE_HEADER_LEN, |e| e.position as u64);
            (st.size, pos, st.bad.clone())
        };
        while pos < size {
            if let Some(b) = bad.iter().find(|b| b.start == pos) {
                if offset < b.next_offset {
                    // The cut falls into damaged data: cut before it.
                    return Err(SegmentError::Corrupt {
                        file: self.log_path.clone(),
                        position: b.start,
                        reason: b.reason.clone(),
                    });
                }
                pos = b.end;
                continue;
            }
            let (h, len) = self
                .header_at(pos, size)
                .map_err(|e| SegmentError::Corrupt {
                    file: self.log_path.clone(),
                    position: pos,
                    reason: e.reason(),
                })?;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += len;
        }
        Ok(None)
    }

    /// Cut the log file at `position` (a batch boundary from [`Segment::truncation_point`]),
    /// fsync it, and rebuild the segment's state and both index files from the clear headers
    /// that remain (Kafka's `LogSegment.truncateTo`). The data key is never used again for the
    /// cut positions: the caller starts a new segment for later appends.
    pub fn truncate_at(&self, position: u64) -> Result<(), SegmentError> {
        let position = position.max(FILE_HEADER_LEN);
        // Readers never look past the published size: shrink it before the file.
        self.state_mut().size = position.min(self.size());
        self.log.set_len(position).map_err(io_err(&self.log_path))?;
        self.log.sync().map_err(io_err(&self.log_path))?;
        let mut hb = vec![0u8; FILE_HEADER_LEN as usize];
        self.log
            .read_exact_at(&mut hb, 0)
            .map_err(io_err(&self.log_path))?;
        let header = FileHeader::decode(&hb, FileKind::Log).map_err(|source| {
            SegmentError::BadFileHeader {
                file: self.log_path.clone(),
                source,
            }
        })?;
        *self.state_mut() = SegState::empty(self.base_offset);
        self.recover_quick(position, header, true)?;
        Ok(())
    }

    /// The clear header of the batch holding `offset`, found through the offset index and a
    /// walk over the headers after the indexed entry (nothing is decrypted). `None` when no
    /// batch of this segment holds it; bad regions end the walk.
    pub fn batch_header_containing(
        &self,
        offset: i64,
    ) -> Result<Option<BatchHeader>, SegmentError> {
        let (size, mut pos, bad) = {
            let st = self.state();
            if offset < self.base_offset || offset >= st.next_offset {
                return Ok(None);
            }
            let rel = (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32;
            let pos = st
                .index
                .floor(rel)
                .map(|e| e.position as u64)
                .unwrap_or(FILE_HEADER_LEN);
            let bad: Vec<(u64, u64)> = st.bad.iter().map(|b| (b.start, b.end)).collect();
            (st.size, pos, bad)
        };
        while pos < size {
            if let Some(&(_, end)) = bad.iter().find(|(s, _)| *s == pos) {
                pos = end;
                continue;
            }
            let (h, len) = match self.header_at(pos, size) {
                Ok(x) => x,
                Err(_) => return Ok(None),
            };
            if h.base_offset > offset {
                return Ok(None);
            }
            if offset <= h.base_offset + i64::from(h.last_offset_delta) {
                return Ok(Some(h));
            }
            pos += len;
        }
        Ok(None)
    }

    /// The first batch (below `limit`) whose max timestamp is >= `timestamp`, as
    /// (offset, timestamp): the exact first record for uncompressed batches, else the batch's base
    /// offset and max timestamp.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
        limit: i64,
    ) -> Result<Option<(i64, i64)>, SegmentError> {
        let (size, mut pos, skip_to) = {
            let st = self.state();
            if st.max_timestamp < timestamp {
                return Ok(None);
            }
            let after = st.time_index.last_below(timestamp).map(|e| e.rel_offset);
            let pos = match after {
                Some(rel) => st
                    .index
                    .floor(rel)
                    .map(|e| e.position as u64)
                    .unwrap_or(FILE_HEADER_LEN),
                None => FILE_HEADER_LEN,
            };
            let bad_starts: Vec<(u64, u64)> = st.bad.iter().map(|b| (b.start, b.end)).collect();
            (st.size, pos, bad_starts)
        };
        while pos < size {
            if let Some(&(_, end)) = skip_to.iter().find(|(s, _)| *s == pos) {
                pos = end;
                continue;
            }
            let (h, len) = match self.header_at(pos, size) {
                Ok(x) => x,
                Err(_) => return Ok(None),
            };
            if h.base_offset >= limit {
                return Ok(None);
            }
            if h.max_timestamp >= timestamp {
                let mut buf = vec![0u8; len as usize];
                self.log
                    .read_exact_at(&mut buf, pos)
                    .map_err(io_err(&self.log_path))?;
                let n =
                    self.open_in_place(pos, &mut buf)
                        .map_err(|reason| SegmentError::Corrupt {
                            file: self.log_path.clone(),
                            position: pos,
                            reason,
                        })?;
                if let Some(recs) = batch::record_timestamps(&buf[..n]) {
                    if let Some(&(o, t)) = recs.iter().find(|(_, t)| *t >= timestamp) {
                        return Ok(Some((o, t)));
                    }
                }
                return Ok(Some((h.base_offset, h.max_timestamp)));
            }
            pos += len;
        }
        Ok(None)
    }
}

impl SegState {
    /// A segment with no batches yet: empty indexes, the next offset at `base`.
    fn empty(base: i64) -> SegState {
        SegState {
            size: FILE_HEADER_LEN,
            next_offset: base,
            max_timestamp: -1,
            offset_of_max_ts: -1,
            batches: 0,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: u64::MAX,
            index_file_len: FILE_HEADER_LEN,
            time_file_len: FILE_HEADER_LEN,
            bad: Vec::new(),
        }
    }

    /// Add the final time index entry (the segment's max timestamp and where it is reached), so
    /// a quick open of the closed segment knows both exactly.
    fn seal_time_index(&mut self, base: i64) {
        if self.offset_of_max_ts >= 0 {
            let rel = (self.offset_of_max_ts - base).clamp(0, u32::MAX as i64) as u32;
            let ts = self.max_timestamp;
            self.time_index.push(ts, rel);
        }
    }

    /// Track offsets and timestamps of a batch (no index entries).
    fn track(&mut self, b: &StoredBatch) {
        let h = &b.header;
        self.next_offset = h.last_offset() + 1;
        self.batches += 1;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_ts = if b.max_ts_offset >= h.base_offset {
                b.max_ts_offset
            } else {
                h.last_offset()
            };
        }
    }

    /// Track a batch and add index entries every `index_interval` bytes.
    fn register(&mut self, base: i64, b: &StoredBatch, index_interval: u64) {
        self.track(b);
        if self.bytes_since_index >= index_interval {
            let rel = (b.header.base_offset - base).clamp(0, u32::MAX as i64) as u32;
            self.index.push(rel, b.position as u32);
            self.bytes_since_index = 0;
            if self.max_timestamp >= 0 {
                let trel = (self.offset_of_max_ts - base).clamp(0, u32::MAX as i64) as u32;
                self.time_index.push(self.max_timestamp, trel);
            }
        }
        self.bytes_since_index = self.bytes_since_index.saturating_add(b.stored_len);
    }
}

struct SegPaths {
    log: PathBuf,
    index: PathBuf,
    time: PathBuf,
    key: PathBuf,
}

impl SegPaths {
    fn new(dir: &Path, base: i64) -> SegPaths {
        SegPaths {
            log: dir.join(file_name(base, FileKind::Log.ext())),
            index: dir.join(file_name(base, FileKind::Index.ext())),
            time: dir.join(file_name(base, FileKind::TimeIndex.ext())),
            key: dir.join(file_name(base, "key")),
        }
    }
}

fn open_or_create(
    storage: &dyn Storage,
    path: &Path,
) -> Result<Arc<dyn StorageFile>, SegmentError> {
    match storage.open(path) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            storage.create(path).map_err(io_err(path))
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

fn rewrite_index(
    f: &dyn StorageFile,
    path: &Path,
    seg: &Segment,
    kind: FileKind,
    body: &[u8],
) -> Result<(), SegmentError> {
    let h = FileHeader {
        kind,
        version: FORMAT_VERSION,
        cipher_id: seg.key.as_ref().map(|k| k.kind().id()).unwrap_or(0),
        ident: seg.ident,
        base_offset: seg.base_offset,
        created_ms: seg.created_ms,
    };
    let mut all = Vec::with_capacity(FILE_HEADER_LEN as usize + body.len());
    all.extend_from_slice(&h.encode());
    all.extend_from_slice(body);
    f.set_len(0)
        .and_then(|_| f.write_all_at(&all, 0))
        .and_then(|_| f.sync())
        .map_err(io_err(path))
}
