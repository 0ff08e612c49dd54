//! Sparse per-segment indexes: the offset index (`N.index`: relative offset u32 → file position
//! u32) and the time index (`N.timeindex`: running max timestamp i64 → relative offset u32).
//!
//! Both live in memory as sorted vectors (8 and 12 bytes per entry, one entry per
//! `index.interval.bytes` of log) and are appended to their files after the segment file header.
//! Entries not yet written are kept in `pending` and written by [`OffsetIndex::take_pending`]
//! at flush time, so an append stays a single write. Index files are never trusted blindly:
//! [`OffsetIndex::decode`] / [`TimeIndex::decode`] check their shape and monotonicity and the
//! segment rebuilds them from the log's clear batch headers when a check fails.

/// Size of one offset index entry on disk.
pub const OFFSET_ENTRY_LEN: usize = 8;
/// Size of one time index entry on disk.
pub const TIME_ENTRY_LEN: usize = 12;

/// One offset index entry: the batch whose base offset is `base + rel_offset` starts at
/// `position` in the log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub rel_offset: u32,
    pub position: u32,
}

/// One time index entry: every batch up to and including relative offset `rel_offset` has a max
/// timestamp <= `timestamp`, and `timestamp` is reached at `rel_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub rel_offset: u32,
}

/// Why an index file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index file invalid: {0}")]
pub struct IndexInvalid(pub String);

/// In-memory sparse offset index of one segment.
#[derive(Debug, Default, Clone)]
pub struct OffsetIndex {
    entries: Vec<OffsetEntry>,
    pending: Vec<u8>,
}

impl OffsetIndex {
    /// Add an entry (must be above the last one; ignored otherwise).
    pub fn push(&mut self, rel_offset: u32, position: u32) {
        if let Some(last) = self.entries.last() {
            if rel_offset <= last.rel_offset || position <= last.position {
                return;
            }
        }
        self.entries.push(OffsetEntry {
            rel_offset,
            position,
        });
        self.pending.extend_from_slice(&rel_offset.to_be_bytes());
        self.pending.extend_from_slice(&position.to_be_bytes());
    }
    /// Last entry whose relative offset is <= `rel_offset`.
    pub fn floor(&self, rel_offset: u32) -> Option<OffsetEntry> {
        let i = self.entries.partition_point(|e| e.rel_offset <= rel_offset);
        if i == 0 {
            None
        } else {
            Some(self.entries[i - 1])
        }
    }
    /// All entries.
    pub fn entries(&self) -> &[OffsetEntry] {
        &self.entries
    }
    /// Bytes not yet written to the index file (cleared).
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
    /// Serialized form of every entry (for rewriting the whole file).
    pub fn encode_all(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_LEN);
        for e in &self.entries {
            v.extend_from_slice(&e.rel_offset.to_be_bytes());
            v.extend_from_slice(&e.position.to_be_bytes());
        }
        v
    }
    /// Forget unwritten bytes (after the whole file was rewritten from `encode_all`).
    pub fn clear_pending(&mut self) {
        self.pending.clear();
    }
    /// Parse and check index file entries (the part after the file header): strictly increasing
    /// offsets and positions, positions within `[min_pos, log_len)`.
    pub fn decode(bytes: &[u8], min_pos: u64, log_len: u64) -> Result<OffsetIndex, IndexInvalid> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_LEN) {
            return Err(IndexInvalid(format!(
                "length {} is not a multiple of {OFFSET_ENTRY_LEN}",
                bytes.len()
            )));
        }
        let mut idx = OffsetIndex::default();
        for chunk in bytes.chunks_exact(OFFSET_ENTRY_LEN) {
            let rel = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let pos = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if (pos as u64) < min_pos || pos as u64 >= log_len {
                return Err(IndexInvalid(format!("position {pos} outside the log")));
            }
            if let Some(last) = idx.entries.last() {
                if rel <= last.rel_offset || pos <= last.position {
                    return Err(IndexInvalid("entries not increasing".into()));
                }
            }
            idx.entries.push(OffsetEntry {
                rel_offset: rel,
                position: pos,
            });
        }
        Ok(idx)
    }
}

/// In-memory sparse time index of one segment.
#[derive(Debug, Default, Clone)]
pub struct TimeIndex {
    entries: Vec<TimeEntry>,
    pending: Vec<u8>,
}

impl TimeIndex {
    /// Add an entry if `timestamp` is above the last entry's.
    pub fn push(&mut self, timestamp: i64, rel_offset: u32) {
        if let Some(last) = self.entries.last() {
            if timestamp <= last.timestamp || rel_offset < last.rel_offset {
                return;
            }
        }
        self.entries.push(TimeEntry {
            timestamp,
            rel_offset,
        });
        self.pending.extend_from_slice(&timestamp.to_be_bytes());
        self.pending.extend_from_slice(&rel_offset.to_be_bytes());
    }
    /// Last entry.
    pub fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }
    /// Last entry whose timestamp is < `timestamp`: every batch up to its offset is older than
    /// `timestamp`, so a search for the first batch with max timestamp >= `timestamp` can start
    /// after it.
    pub fn last_below(&self, timestamp: i64) -> Option<TimeEntry> {
        let i = self.entries.partition_point(|e| e.timestamp < timestamp);
        if i == 0 {
            None
        } else {
            Some(self.entries[i - 1])
        }
    }
    /// All entries.
    pub fn entries(&self) -> &[TimeEntry] {
        &self.entries
    }
    /// Bytes not yet written to the file (cleared).
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
    /// Serialized form of every entry.
    pub fn encode_all(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.entries.len() * TIME_ENTRY_LEN);
        for e in &self.entries {
            v.extend_from_slice(&e.timestamp.to_be_bytes());
            v.extend_from_slice(&e.rel_offset.to_be_bytes());
        }
        v
    }
    /// Forget unwritten bytes.
    pub fn clear_pending(&mut self) {
        self.pending.clear();
    }
    /// Parse and check time index entries: strictly increasing timestamps, non-decreasing offsets
    /// not beyond `max_rel_offset`.
    pub fn decode(bytes: &[u8], max_rel_offset: u32) -> Result<TimeIndex, IndexInvalid> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_LEN) {
            return Err(IndexInvalid(format!(
                "length {} is not a multiple of {TIME_ENTRY_LEN}",
                bytes.len()
            )));
        }
        let mut idx = TimeIndex::default();
        for c in bytes.chunks_exact(TIME_ENTRY_LEN) {
            let ts = i64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            let rel = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
            if rel > max_rel_offset {
                return Err(IndexInvalid(format!("offset {rel} beyond the segment")));
            }
            if let Some(last) = idx.entries.last() {
                if ts <= last.timestamp || rel < last.rel_offset {
                    return Err(IndexInvalid("entries not increasing".into()));
                }
            }
            idx.entries.push(TimeEntry {
                timestamp: ts,
                rel_offset: rel,
            });
        }
        Ok(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_floor_and_roundtrip() {
        let mut i = OffsetIndex::default();
        i.push(0, 48);
        i.push(10, 4200);
        i.push(5, 9000); // not increasing: ignored
        i.push(20, 8400);
        assert_eq!(i.floor(0).unwrap().position, 48);
        assert_eq!(i.floor(15).unwrap().position, 4200);
        assert_eq!(i.floor(99).unwrap().position, 8400);
        let bytes = i.take_pending();
        assert_eq!(bytes, i.encode_all());
        let back = OffsetIndex::decode(&bytes, 48, 9000).unwrap();
        assert_eq!(back.entries(), i.entries());
        assert!(OffsetIndex::decode(&bytes, 48, 8000).is_err());
        assert!(OffsetIndex::decode(&bytes[..7], 48, 9000).is_err());
        let mut swapped = bytes.clone();
        swapped[..8].copy_from_slice(&bytes[8..16]);
        assert!(OffsetIndex::decode(&swapped, 48, 9000).is_err());
    }

    #[test]
    fn time_index_last_below() {
        let mut t = TimeIndex::default();
        t.push(100, 0);
        t.push(100, 3); // not growing: ignored
        t.push(200, 5);
        t.push(300, 9);
        assert_eq!(t.last_below(100), None);
        assert_eq!(t.last_below(150).unwrap().rel_offset, 0);
        assert_eq!(t.last_below(301).unwrap().rel_offset, 9);
        let back = TimeIndex::decode(&t.encode_all(), 9).unwrap();
        assert_eq!(back.entries(), t.entries());
        assert!(TimeIndex::decode(&t.encode_all(), 8).is_err());
    }
}
