//! Segment recovery (the per-segment half of Kafka's `LogSegment.recover`; the partition-wide
//! half is [`crate::log`]'s loader): what [`Segment::open`] does to a segment according to its
//! [`OpenMode`].
//!
//! - [`OpenMode::Full`], the segment that was active at an unclean shutdown: every batch is
//!   verified (framing, AEAD tag, CRC32C); a torn tail is truncated; a bad batch followed by a
//!   valid one is not a torn tail, so it is reported as a [`BadRegion`] (not served) and the scan
//!   goes on; the indexes are rebuilt from the verified batches.
//! - [`OpenMode::Quick`], a closed segment: the index files are loaded if their headers name this
//!   segment and they are sane, then only the clear batch headers after the last index entry are
//!   scanned (no decryption). An index that does not match the log is rebuilt from the headers;
//!   unreadable data at the end of a closed segment is reported, not truncated.

use std::sync::Arc;

use super::file_header::{FileHeader, FileHeaderError, FileKind, FILE_HEADER_LEN};
use super::{io_err, rewrite_index, BadRegion, SegState, Segment, SegmentError, StoredBatch};
use crate::batch::{self, BatchHeader};
use crate::index::{IndexInvalid, OffsetIndex, TimeIndex};
use crate::io::StorageFile;

#[cfg(doc)]
use super::OpenMode;

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

/// Problems found at a position while scanning.
pub(super) enum ScanError {
    /// Not enough bytes left for a header or the batch (torn, or the end of a truncated file).
    Short(String),
    /// Header or contents invalid; `len` is the framed stored length if the header parsed.
    Bad { reason: String, len: Option<u64> },
}

impl ScanError {
    pub(super) fn reason(&self) -> String {
        match self {
            ScanError::Short(r) => r.clone(),
            ScanError::Bad { reason, .. } => reason.clone(),
        }
    }
}

/// Why the index files of a closed segment are not used as they are (they are then rebuilt).
#[derive(Debug, thiserror::Error)]
enum StaleIndex {
    #[error("cannot read index file: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Header(#[from] FileHeaderError),
    #[error(transparent)]
    Invalid(#[from] IndexInvalid),
    #[error("{0}")]
    Mismatch(&'static str),
}

impl Segment {
    /// Fully verify the batch at `pos` (framing, tag, CRC) using `buf` as scratch.
    pub(super) fn verify_at(
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

    pub(super) fn recover_full(
        &self,
        log_len: u64,
        _header: FileHeader,
    ) -> Result<Recovery, SegmentError> {
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
    fn rewrite_indexes(&self, st: &mut SegState) -> Result<(), SegmentError> {
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

    pub(super) fn recover_quick(
        &self,
        log_len: u64,
        header: FileHeader,
        force_rebuild: bool,
    ) -> Result<Recovery, SegmentError> {
        let mut rec = Recovery::default();
        let loaded = if force_rebuild {
            Err(StaleIndex::Mismatch("index does not match the log"))
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

    fn rebuild_quick(&self, log_len: u64, header: FileHeader) -> Result<Recovery, SegmentError> {
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
    ) -> Result<(OffsetIndex, TimeIndex), StaleIndex> {
        let read_body = |f: &Arc<dyn StorageFile>, kind: FileKind| -> Result<Vec<u8>, StaleIndex> {
            let len = f.len()?;
            if len < FILE_HEADER_LEN {
                return Err(StaleIndex::Mismatch("index file shorter than its header"));
            }
            let mut all = vec![0u8; len as usize];
            f.read_exact_at(&mut all, 0)?;
            let h = FileHeader::decode(&all, kind)?;
            if h.ident != header.ident || h.base_offset != header.base_offset {
                return Err(StaleIndex::Mismatch("index header names another segment"));
            }
            Ok(all.split_off(FILE_HEADER_LEN as usize))
        };
        let ib = read_body(&self.index_file, FileKind::Index)?;
        let index = OffsetIndex::decode(&ib, FILE_HEADER_LEN, log_len)?;
        let max_rel = index.entries().last().map(|e| e.rel_offset).unwrap_or(0);
        let tb = read_body(&self.time_file, FileKind::TimeIndex)?;
        // Time entries may point past the last offset index entry (into the last batches).
        let time = TimeIndex::decode(&tb, u32::MAX)?;
        if log_len > FILE_HEADER_LEN && index.entries().is_empty() {
            return Err(StaleIndex::Mismatch(
                "offset index is empty but the log is not",
            ));
        }
        if let Some(first) = index.entries().first() {
            if first.position as u64 != FILE_HEADER_LEN || first.rel_offset > max_rel {
                return Err(StaleIndex::Mismatch(
                    "first index entry is not the first batch",
                ));
            }
        }
        Ok((index, time))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use uuid::Uuid;

    use super::super::{file_name, OpenMode, PartitionIdent, Segment, SegmentError, StoredBatch};
    use super::FILE_HEADER_LEN;
    use crate::batch::{self, test_util::batch, BatchHeader};
    use crate::crypto::{CipherKind, Encryption, MasterKey};
    use crate::io::{SimStorage, Storage};

    const DIR: &str = "/p";

    fn ident() -> PartitionIdent {
        PartitionIdent {
            topic_id: Uuid::from_u128(0xabc),
            partition: 0,
        }
    }

    fn enc() -> Encryption {
        Encryption::On {
            cipher: CipherKind::ChaCha20Poly1305,
            master: Arc::new(MasterKey::from_bytes([3u8; 32])),
        }
    }

    /// A segment at base 0 holding `n` one-record batches (offsets 0..n), indexed every batch;
    /// returns the file positions of the batches.
    fn write_segment(s: &SimStorage, n: i64, finish: bool) -> Vec<u64> {
        s.create_dir_all(Path::new(DIR)).unwrap();
        let seg = Segment::create(s, Path::new(DIR), ident(), 0, &enc(), 1, 1).unwrap();
        let mut positions = Vec::new();
        for i in 0..n {
            let mut plain = batch(&[format!("v{i}").as_bytes()], 100 + i);
            batch::set_base_offset(&mut plain, i);
            let position = seg.size();
            let mut sealed = Vec::new();
            seg.seal_into(&plain, position, &mut sealed).unwrap();
            let sb = StoredBatch {
                header: BatchHeader::parse(&plain).unwrap(),
                max_ts_offset: i,
                position,
                stored_len: sealed.len() as u64,
            };
            seg.append_stored(&sealed, &[sb], 1).unwrap();
            positions.push(position);
        }
        seg.write_indexes().unwrap();
        seg.sync_log().unwrap();
        if finish {
            seg.finish().unwrap();
        }
        positions
    }

    fn open(s: &SimStorage, mode: OpenMode) -> Result<(Segment, super::Recovery), SegmentError> {
        Segment::open(s, Path::new(DIR), ident(), 0, &enc(), mode, 1)
    }

    fn log_file(s: &SimStorage) -> Arc<dyn crate::io::StorageFile> {
        s.open(&Path::new(DIR).join(file_name(0, "log"))).unwrap()
    }

    #[test]
    fn full_recovery_truncates_a_torn_tail() {
        let s = SimStorage::new();
        let pos = write_segment(&s, 3, false);
        let f = log_file(&s);
        let len = f.len().unwrap();
        f.set_len(len - 5).unwrap(); // the last batch lost its end
        let (seg, rec) = open(&s, OpenMode::Full).unwrap();
        assert_eq!(rec.truncated_bytes, len - 5 - pos[2]);
        assert!(rec.rebuilt_index && rec.bad.is_empty());
        assert_eq!(seg.next_offset(), 2);
        assert_eq!(seg.size(), pos[2]);
        assert_eq!(
            f.len().unwrap(),
            pos[2],
            "the torn bytes are cut from the file"
        );
    }

    #[test]
    fn full_recovery_reports_corruption_followed_by_valid_data() {
        let s = SimStorage::new();
        let pos = write_segment(&s, 3, false);
        let f = log_file(&s);
        // Flip a byte in the sealed body of the middle batch: its tag no longer verifies.
        let at = pos[1] + batch::HEADER_LEN as u64 + 2;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0xff], at).unwrap();
        let (seg, rec) = open(&s, OpenMode::Full).unwrap();
        assert_eq!(rec.truncated_bytes, 0, "not a torn tail");
        assert_eq!(rec.bad.len(), 1);
        let region = &rec.bad[0];
        assert_eq!((region.start, region.end), (pos[1], pos[2]));
        assert_eq!((region.first_offset, region.next_offset), (1, 2));
        assert_eq!(seg.next_offset(), 3, "the batch after the damage is kept");
    }

    #[test]
    fn quick_open_uses_the_index_and_rebuilds_a_stale_one() {
        let s = SimStorage::new();
        write_segment(&s, 4, true);
        let (seg, rec) = open(&s, OpenMode::Quick).unwrap();
        assert!(!rec.rebuilt_index);
        assert_eq!(seg.next_offset(), 4);
        assert_eq!(seg.state().max_timestamp, 103);
        drop(seg);
        // An index file whose header names another segment is rebuilt from the batch headers.
        let idx = s.open(&Path::new(DIR).join(file_name(0, "index"))).unwrap();
        idx.write_all_at(b"XXXX", 0).unwrap();
        let (seg, rec) = open(&s, OpenMode::Quick).unwrap();
        assert!(rec.rebuilt_index);
        assert_eq!(seg.next_offset(), 4);
        assert_eq!(seg.state().index.entries().len(), 4);
    }

    #[test]
    fn unusable_headers_are_typed_errors() {
        let s = SimStorage::new();
        write_segment(&s, 1, true);
        // A segment opened under another identity: its header names another partition.
        let other = PartitionIdent {
            partition: 1,
            ..ident()
        };
        let e = Segment::open(&s, Path::new(DIR), other, 0, &enc(), OpenMode::Quick, 1);
        assert!(matches!(e, Err(SegmentError::Corrupt { position: 0, .. })));
        log_file(&s).write_all_at(b"JUNK", 0).unwrap();
        match open(&s, OpenMode::Full) {
            Err(SegmentError::BadFileHeader { source, .. }) => {
                assert_eq!(source, super::FileHeaderError::BadMagic)
            }
            other => panic!("expected a bad file header, got {:?}", other.map(|_| ())),
        }
        log_file(&s).set_len(FILE_HEADER_LEN - 8).unwrap();
        assert!(matches!(
            open(&s, OpenMode::Full),
            Err(SegmentError::BadFileHeader {
                source: super::FileHeaderError::Truncated(40),
                ..
            })
        ));
    }
}
