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

use crate::sync::RwLockExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use bytes::BytesMut;
use uuid::Uuid;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::crypto::{CipherKind, CryptoError, DataKey, Encryption, MasterKey, KEY_ID_LEN, TAG_LEN};
use crate::index::{OffsetIndex, TimeIndex};
use crate::io::{Storage, StorageFile};
use crate::log::LogError;

/// Size of the header at the start of every segment file.
pub const FILE_HEADER_LEN: u64 = 48;
/// Segment file format version written by this code.
pub const FORMAT_VERSION: u8 = 1;
/// Magic at the start of every segment file.
pub const FILE_MAGIC: [u8; 4] = *b"RILL";
/// Magic of a key sidecar.
pub const KEY_MAGIC: [u8; 4] = *b"RKEY";
/// Key sidecar format version.
pub const KEY_VERSION: u8 = 1;
/// Size of a key sidecar.
pub const KEY_FILE_LEN: usize = 108;

/// Which file of a segment a header belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Log,
    Index,
    TimeIndex,
}

impl FileKind {
    fn byte(self) -> u8 {
        match self {
            FileKind::Log => b'L',
            FileKind::Index => b'I',
            FileKind::TimeIndex => b'T',
        }
    }
    fn ext(self) -> &'static str {
        match self {
            FileKind::Log => "log",
            FileKind::Index => "index",
            FileKind::TimeIndex => "timeindex",
        }
    }
}

/// The partition a segment belongs to (part of every header and of the AAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionIdent {
    pub topic_id: Uuid,
    pub partition: i32,
}

/// The 48-byte header at the start of `N.log`, `N.index` and `N.timeindex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub kind: FileKind,
    pub version: u8,
    /// 0 = plaintext, else [`CipherKind::id`].
    pub cipher_id: u8,
    pub ident: PartitionIdent,
    pub base_offset: i64,
    /// Wall-clock ms when the segment was created (may be bogus on boards without RTC).
    pub created_ms: i64,
}

impl FileHeader {
    /// Serialize (magic, kind, version, cipher, flags, topic id, partition, base, created, crc).
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN as usize] {
        let mut b = [0u8; FILE_HEADER_LEN as usize];
        b[0..4].copy_from_slice(&FILE_MAGIC);
        b[4] = self.kind.byte();
        b[5] = self.version;
        b[6] = self.cipher_id;
        b[7] = 0;
        b[8..24].copy_from_slice(self.ident.topic_id.as_bytes());
        b[24..28].copy_from_slice(&self.ident.partition.to_be_bytes());
        b[28..36].copy_from_slice(&self.base_offset.to_be_bytes());
        b[36..44].copy_from_slice(&self.created_ms.to_be_bytes());
        let crc = crc32c::crc32c(&b[..44]);
        b[44..48].copy_from_slice(&crc.to_be_bytes());
        b
    }
    /// Parse and check magic, kind, version and CRC.
    pub fn decode(b: &[u8], kind: FileKind) -> Result<FileHeader, String> {
        if b.len() < FILE_HEADER_LEN as usize {
            return Err(format!("file header truncated ({} bytes)", b.len()));
        }
        if b[0..4] != FILE_MAGIC {
            return Err("bad magic".into());
        }
        let crc = u32::from_be_bytes([b[44], b[45], b[46], b[47]]);
        if crc32c::crc32c(&b[..44]) != crc {
            return Err("file header CRC mismatch".into());
        }
        if b[4] != kind.byte() {
            return Err(format!(
                "file kind {:?} where {:?} expected",
                b[4] as char, kind
            ));
        }
        if b[5] != FORMAT_VERSION {
            return Err(format!("unsupported segment format version {}", b[5]));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[8..24]);
        Ok(FileHeader {
            kind,
            version: b[5],
            cipher_id: b[6],
            ident: PartitionIdent {
                topic_id: Uuid::from_bytes(id),
                partition: i32::from_be_bytes([b[24], b[25], b[26], b[27]]),
            },
            base_offset: i64::from_be_bytes(b[28..36].try_into().unwrap_or([0; 8])),
            created_ms: i64::from_be_bytes(b[36..44].try_into().unwrap_or([0; 8])),
        })
    }
}

/// The key sidecar `N.key`: magic, version, cipher id, master key id, segment identity, the
/// wrapped data key (nonce 12 + ciphertext 32 + tag 16) and a CRC32C. The bytes before the
/// wrapped key are the AAD of the wrap, binding the key to this segment.
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub cipher: CipherKind,
    pub master_key_id: [u8; KEY_ID_LEN],
    pub ident: PartitionIdent,
    pub base_offset: i64,
    pub wrapped: [u8; 60],
}

impl KeyFile {
    fn identity(
        cipher: CipherKind,
        master_key_id: &[u8; KEY_ID_LEN],
        ident: PartitionIdent,
        base: i64,
    ) -> [u8; 44] {
        let mut b = [0u8; 44];
        b[0..4].copy_from_slice(&KEY_MAGIC);
        b[4] = KEY_VERSION;
        b[5] = cipher.id();
        b[8..16].copy_from_slice(master_key_id);
        b[16..32].copy_from_slice(ident.topic_id.as_bytes());
        b[32..36].copy_from_slice(&ident.partition.to_be_bytes());
        b[36..44].copy_from_slice(&base.to_be_bytes());
        b
    }

    /// Generate a data key for a new segment and wrap it.
    pub fn generate(
        cipher: CipherKind,
        master: &MasterKey,
        ident: PartitionIdent,
        base_offset: i64,
    ) -> Result<(KeyFile, DataKey), CryptoError> {
        let raw = crate::crypto::generate_data_key()?;
        let aad = KeyFile::identity(cipher, &master.id(), ident, base_offset);
        let wrapped = master.wrap(&raw, &aad)?;
        Ok((
            KeyFile {
                cipher,
                master_key_id: master.id(),
                ident,
                base_offset,
                wrapped,
            },
            DataKey::new(cipher, &raw),
        ))
    }

    /// Serialize.
    pub fn encode(&self) -> [u8; KEY_FILE_LEN] {
        let mut b = [0u8; KEY_FILE_LEN];
        b[..44].copy_from_slice(&KeyFile::identity(
            self.cipher,
            &self.master_key_id,
            self.ident,
            self.base_offset,
        ));
        b[44..104].copy_from_slice(&self.wrapped);
        let crc = crc32c::crc32c(&b[..104]);
        b[104..108].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Parse and check magic, version and CRC.
    pub fn decode(b: &[u8]) -> Result<KeyFile, CryptoError> {
        if b.len() != KEY_FILE_LEN {
            return Err(CryptoError::Malformed(format!(
                "key file has {} bytes, expected {KEY_FILE_LEN}",
                b.len()
            )));
        }
        if b[0..4] != KEY_MAGIC {
            return Err(CryptoError::Malformed("key file magic".into()));
        }
        if b[4] != KEY_VERSION {
            return Err(CryptoError::Malformed(format!("key file version {}", b[4])));
        }
        let crc = u32::from_be_bytes([b[104], b[105], b[106], b[107]]);
        if crc32c::crc32c(&b[..104]) != crc {
            return Err(CryptoError::Malformed("key file CRC mismatch".into()));
        }
        let cipher = CipherKind::from_id(b[5])?
            .ok_or_else(|| CryptoError::Malformed("key file without cipher".into()))?;
        let mut mk = [0u8; KEY_ID_LEN];
        mk.copy_from_slice(&b[8..16]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[16..32]);
        let mut wrapped = [0u8; 60];
        wrapped.copy_from_slice(&b[44..104]);
        Ok(KeyFile {
            cipher,
            master_key_id: mk,
            ident: PartitionIdent {
                topic_id: Uuid::from_bytes(id),
                partition: i32::from_be_bytes([b[32], b[33], b[34], b[35]]),
            },
            base_offset: i64::from_be_bytes(b[36..44].try_into().unwrap_or([0; 8])),
            wrapped,
        })
    }

    /// Unwrap the data key with `master`, refusing a key wrapped under another master key.
    pub fn unwrap(&self, master: &MasterKey) -> Result<DataKey, CryptoError> {
        Ok(DataKey::new(self.cipher, &self.unwrap_raw(master)?))
    }

    /// The raw data key bytes (tests use them to prove keys are never reused).
    pub fn unwrap_raw(&self, master: &MasterKey) -> Result<[u8; 32], CryptoError> {
        if self.master_key_id != master.id() {
            return Err(CryptoError::WrongMasterKey {
                expected: master.id_hex(),
                found: crate::crypto::hex(&self.master_key_id),
            });
        }
        let aad = KeyFile::identity(
            self.cipher,
            &self.master_key_id,
            self.ident,
            self.base_offset,
        );
        master.unwrap_key(&self.wrapped, &aad)
    }
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

/// What recovery found in a segment.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    /// Bytes cut from a torn tail.
    pub truncated_bytes: u64,
    /// Whether the index files were rebuilt.
    pub rebuilt_index: bool,
    /// Regions reported as corrupt.
    pub bad: Vec<BadRegion>,
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

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Problems found at a position while scanning.
enum ScanError {
    /// Not enough bytes left for a header or the batch (torn, or the end of a truncated file).
    Short(String),
    /// Header or contents invalid; `len` is the framed stored length if the header parsed.
    Bad { reason: String, len: Option<u64> },
}

impl ScanError {
    fn reason(&self) -> String {
        match self {
            ScanError::Short(r) => r.clone(),
            ScanError::Bad { reason, .. } => reason.clone(),
        }
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
    ) -> Result<Segment, LogError> {
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
        let mut files = Vec::with_capacity(3);
        for (kind, path) in [
            (FileKind::Index, &paths.index),
            (FileKind::TimeIndex, &paths.time),
            (FileKind::Log, &paths.log),
        ] {
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
            files.push(f);
        }
        storage.sync_dir(dir).map_err(io_err(dir))?;
        let log = files.pop().ok_or(LogError::Closed)?;
        let time_file = files.pop().ok_or(LogError::Closed)?;
        let index_file = files.pop().ok_or(LogError::Closed)?;
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
            state: RwLock::new(SegState {
                size: FILE_HEADER_LEN,
                next_offset: base_offset,
                max_timestamp: -1,
                offset_of_max_ts: -1,
                batches: 0,
                index: OffsetIndex::default(),
                time_index: TimeIndex::default(),
                bytes_since_index: u64::MAX,
                index_file_len: FILE_HEADER_LEN,
                time_file_len: FILE_HEADER_LEN,
                bad: Vec::new(),
            }),
        })
    }

    /// Open an existing segment and recover it according to `mode`.
    ///
    /// Errors: [`CryptoError::WrongMasterKey`] (never a truncation) if the data key was wrapped
    /// under another master key; [`LogError::Corrupt`] if the log file header is unusable.
    pub fn open(
        storage: &dyn Storage,
        dir: &Path,
        ident: PartitionIdent,
        base_offset: i64,
        encryption: &Encryption,
        mode: OpenMode,
        index_interval: u64,
    ) -> Result<(Segment, Recovery), LogError> {
        let paths = SegPaths::new(dir, base_offset);
        let log = storage.open(&paths.log).map_err(io_err(&paths.log))?;
        let log_len = log.len().map_err(io_err(&paths.log))?;
        let mut hb = [0u8; FILE_HEADER_LEN as usize];
        let header = if log_len >= FILE_HEADER_LEN {
            log.read_exact_at(&mut hb, 0).map_err(io_err(&paths.log))?;
            FileHeader::decode(&hb, FileKind::Log)
        } else {
            Err(format!("log file has only {log_len} bytes"))
        };
        let header = header.map_err(|reason| LogError::Corrupt {
            file: paths.log.clone(),
            position: 0,
            reason,
        })?;
        if header.ident != ident || header.base_offset != base_offset {
            return Err(LogError::Corrupt {
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
                    LogError::Crypto(CryptoError::Malformed(format!(
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
                next_offset: base_offset,
                max_timestamp: -1,
                offset_of_max_ts: -1,
                batches: 0,
                index: OffsetIndex::default(),
                time_index: TimeIndex::default(),
                bytes_since_index: u64::MAX,
                index_file_len: FILE_HEADER_LEN,
                time_file_len: FILE_HEADER_LEN,
                bad: Vec::new(),
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
    ) -> Result<(), LogError> {
        match &self.key {
            None => out.extend_from_slice(plain),
            Some(key) => {
                if plain.len() < HEADER_LEN {
                    return Err(crate::batch::BatchError::Malformed(
                        "batch shorter than header".into(),
                    )
                    .into());
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
    ) -> Result<(), LogError> {
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
    pub fn write_indexes(&self) -> Result<(), LogError> {
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
    pub fn sync_log(&self) -> Result<(), LogError> {
        self.log.sync().map_err(io_err(&self.log_path))
    }

    /// Seal the segment for good (roll or close): final time index entry, write and fsync indexes
    /// and log.
    pub fn finish(&self) -> Result<(), LogError> {
        self.state_mut().seal_time_index(self.base_offset);
        self.write_indexes()?;
        self.sync_log()?;
        self.index_file.sync().map_err(io_err(&self.index_path))?;
        self.time_file.sync().map_err(io_err(&self.time_path))?;
        Ok(())
    }

    /// Remove the segment's files (the caller fsyncs the directory).
    pub fn delete_files(&self, storage: &dyn Storage) -> Result<(), LogError> {
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

    /// Fully verify the batch at `pos` (framing, tag, CRC) using `buf` as scratch.
    fn verify_at(
        &self,
        pos: u64,
        end: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(BatchHeader, u64), ScanError> {
        let (h, len) = self.header_at(pos, end)?;
        buf.resize(len as usize, 0);
        self.log
            .read_exact_at(buf, pos)
            .map_err(|e| ScanError::Short(e.to_string()))?;
        self.open_in_place(pos, buf)
            .map_err(|reason| ScanError::Bad {
                reason,
                len: Some(len),
            })?;
        Ok((h, len))
    }

    fn recover_full(&self, log_len: u64, _header: FileHeader) -> Result<Recovery, LogError> {
        let mut rec = Recovery {
            rebuilt_index: true,
            ..Recovery::default()
        };
        let mut st = self.state_mut();
        st.size = FILE_HEADER_LEN;
        let mut pos = FILE_HEADER_LEN;
        let mut buf = Vec::new();
        while pos < log_len {
            match self.verify_at(pos, log_len, &mut buf) {
                Ok((h, len)) => {
                    let max_ts_offset = batch::offset_of_max_timestamp(&buf);
                    st.register(
                        self.base_offset,
                        &StoredBatch {
                            header: h,
                            max_ts_offset,
                            position: pos,
                            stored_len: len,
                        },
                        self.index_interval,
                    );
                    pos += len;
                    st.size = pos;
                }
                Err(e) => {
                    // Corruption followed by a valid batch is not a torn tail: report it and go on.
                    let next = match &e {
                        ScanError::Bad { len: Some(l), .. } => Some(pos + l),
                        _ => None,
                    };
                    if let Some(n) = next {
                        if n < log_len {
                            if let Ok((h2, _)) = self.verify_at(n, log_len, &mut buf) {
                                let region = BadRegion {
                                    file: self.log_path.clone(),
                                    start: pos,
                                    end: n,
                                    first_offset: st.next_offset,
                                    next_offset: h2.base_offset,
                                    reason: e.reason(),
                                };
                                tracing::error!(file = %self.log_path.display(), position = pos,
                                    reason = %region.reason, "corrupt batch in the middle of the log; not served");
                                st.bad.push(region.clone());
                                rec.bad.push(region);
                                st.next_offset = h2.base_offset;
                                pos = n;
                                st.size = pos;
                                continue;
                            }
                        }
                    }
                    tracing::warn!(file = %self.log_path.display(), position = pos,
                        reason = %e.reason(), "truncating torn tail");
                    rec.truncated_bytes = log_len - pos;
                    break;
                }
            }
        }
        if rec.truncated_bytes > 0 {
            self.log.set_len(pos).map_err(io_err(&self.log_path))?;
            self.log.sync().map_err(io_err(&self.log_path))?;
        }
        self.rewrite_indexes(&mut st)?;
        Ok(rec)
    }

    /// Seal the time index and rewrite both index files whole from the in-memory indexes (after
    /// a recovery rebuilt them).
    fn rewrite_indexes(&self, st: &mut SegState) -> Result<(), LogError> {
        st.seal_time_index(self.base_offset);
        let idx = st.index.encode_all();
        let tix = st.time_index.encode_all();
        st.index.clear_pending();
        st.time_index.clear_pending();
        rewrite_index(
            &*self.index_file,
            &self.index_path,
            self,
            FileKind::Index,
            &idx,
        )?;
        rewrite_index(
            &*self.time_file,
            &self.time_path,
            self,
            FileKind::TimeIndex,
            &tix,
        )?;
        st.index_file_len = FILE_HEADER_LEN + idx.len() as u64;
        st.time_file_len = FILE_HEADER_LEN + tix.len() as u64;
        Ok(())
    }

    fn recover_quick(
        &self,
        log_len: u64,
        header: FileHeader,
        force_rebuild: bool,
    ) -> Result<Recovery, LogError> {
        let mut rec = Recovery::default();
        let loaded = if force_rebuild {
            Err("index does not match the log".to_string())
        } else {
            self.load_indexes(log_len, header)
        };
        let mut st = self.state_mut();
        let mut pos = FILE_HEADER_LEN;
        match loaded {
            Ok((index, time_index)) => {
                if let Some(last) = index.entries().last() {
                    pos = last.position as u64;
                    st.next_offset = self.base_offset + last.rel_offset as i64;
                }
                if let Some(t) = time_index.last() {
                    st.max_timestamp = t.timestamp;
                    st.offset_of_max_ts = self.base_offset + t.rel_offset as i64;
                }
                st.index_file_len = FILE_HEADER_LEN + (index.entries().len() * 8) as u64;
                st.time_file_len = FILE_HEADER_LEN + (time_index.entries().len() * 12) as u64;
                st.index = index;
                st.time_index = time_index;
            }
            Err(reason) => {
                tracing::warn!(file = %self.index_path.display(), %reason, "rebuilding index");
                rec.rebuilt_index = true;
            }
        }
        // Scan the clear headers from `pos` to the end (framing only, no decryption).
        let had_index = !rec.rebuilt_index;
        st.size = pos;
        let mut first = true;
        while pos < log_len {
            match self.header_at(pos, log_len) {
                Ok((h, len)) => {
                    if had_index && first {
                        // The indexed batch must be where the index says.
                        if h.base_offset != st.next_offset {
                            drop(st);
                            return self.rebuild_quick(log_len, header);
                        }
                    }
                    first = false;
                    let sb = StoredBatch {
                        header: h,
                        max_ts_offset: -1,
                        position: pos,
                        stored_len: len,
                    };
                    if had_index {
                        st.track(&sb);
                    } else {
                        st.register(self.base_offset, &sb, self.index_interval);
                    }
                    pos += len;
                    st.size = pos;
                }
                Err(e) => {
                    if had_index && first {
                        drop(st);
                        return self.rebuild_quick(log_len, header);
                    }
                    let region = BadRegion {
                        file: self.log_path.clone(),
                        start: pos,
                        end: log_len,
                        first_offset: st.next_offset,
                        next_offset: st.next_offset,
                        reason: e.reason(),
                    };
                    tracing::error!(file = %self.log_path.display(), position = pos,
                        reason = %region.reason, "unreadable data in a closed segment; not served");
                    st.bad.push(region.clone());
                    rec.bad.push(region);
                    break;
                }
            }
        }
        if rec.rebuilt_index {
            self.rewrite_indexes(&mut st)?;
        }
        Ok(rec)
    }

    fn rebuild_quick(&self, log_len: u64, header: FileHeader) -> Result<Recovery, LogError> {
        {
            let mut st = self.state_mut();
            *st = SegState::empty(self.base_offset);
        }
        self.recover_quick(log_len, header, true)
    }

    fn load_indexes(
        &self,
        log_len: u64,
        header: FileHeader,
    ) -> Result<(OffsetIndex, TimeIndex), String> {
        let read_body = |f: &Arc<dyn StorageFile>, kind: FileKind| -> Result<Vec<u8>, String> {
            let len = f.len().map_err(|e| e.to_string())?;
            if len < FILE_HEADER_LEN {
                return Err("index file shorter than its header".into());
            }
            let mut all = vec![0u8; len as usize];
            f.read_exact_at(&mut all, 0).map_err(|e| e.to_string())?;
            let h = FileHeader::decode(&all, kind)?;
            if h.ident != header.ident || h.base_offset != header.base_offset {
                return Err("index header names another segment".into());
            }
            Ok(all.split_off(FILE_HEADER_LEN as usize))
        };
        let ib = read_body(&self.index_file, FileKind::Index)?;
        let index =
            OffsetIndex::decode(&ib, FILE_HEADER_LEN, log_len).map_err(|e| e.to_string())?;
        let max_rel = index.entries().last().map(|e| e.rel_offset).unwrap_or(0);
        let tb = read_body(&self.time_file, FileKind::TimeIndex)?;
        // Time entries may point past the last offset index entry (into the last batches).
        let time = TimeIndex::decode(&tb, u32::MAX).map_err(|e| e.to_string())?;
        if log_len > FILE_HEADER_LEN && index.entries().is_empty() {
            return Err("offset index is empty but the log is not".into());
        }
        if let Some(first) = index.entries().first() {
            if first.position as u64 != FILE_HEADER_LEN || first.rel_offset > max_rel {
                return Err("first index entry is not the first batch".into());
            }
        }
        Ok((index, time))
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
    ) -> Result<bool, LogError> {
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
        let corrupt = |position: u64, reason: String| LogError::Corrupt {
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

    /// The first batch (below `limit`) whose max timestamp is >= `timestamp`, as
    /// (offset, timestamp): the exact first record for uncompressed batches, else the batch's base
    /// offset and max timestamp.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
        limit: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
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
                let n = self
                    .open_in_place(pos, &mut buf)
                    .map_err(|reason| LogError::Corrupt {
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

fn open_or_create(storage: &dyn Storage, path: &Path) -> Result<Arc<dyn StorageFile>, LogError> {
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
) -> Result<(), LogError> {
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
