//! Idempotent producer state: per-partition sequence tracking and producer id allocation.
//!
//! As in Kafka, each partition keeps, for every producer id seen, its epoch and the metadata of
//! its last [`MAX_CACHED_BATCHES`] batches (first/last sequence, first/last offset). An append of
//! an idempotent batch (producer id >= 0) is checked against it: a retried batch that is one of
//! the cached ones is a duplicate and answered with its original offsets without appending; a
//! gap in sequence numbers is [`ProducerError::OutOfOrderSequence`]; an older epoch is
//! [`ProducerError::InvalidEpoch`]. A producer without state starts at any sequence (Kafka 2.5+,
//! since retention or compaction may have removed its batches).
//!
//! The state is rebuilt at open from the batch headers in the log, starting at the latest
//! snapshot: a small versioned file `<offset>.snapshot` in the partition directory, written
//! atomically (temp file + rename) when a segment rolls and when the log closes. No metadata write
//! happens per append.
//!
//! [`ProducerIdAllocator`] hands out producer ids for InitProducerId, unique across restarts: it
//! persists a high-water mark in its own redb table, reserving ids in blocks.

use crate::sync::LockExt;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::batch::BatchHeader;

/// How many batches per producer are remembered for duplicate detection (Kafka's value).
pub const MAX_CACHED_BATCHES: usize = 5;
/// File extension of producer state snapshots.
pub const SNAPSHOT_EXT: &str = "snapshot";
const SNAPSHOT_VERSION: u16 = 1;

/// Why an idempotent batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// The batch's sequence does not follow the last one appended for this producer and epoch.
    #[error("out of order sequence for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    /// The batch's epoch is older than the producer's current epoch (a fenced producer).
    #[error("producer {producer_id} epoch {got} is older than current epoch {current}")]
    InvalidEpoch {
        producer_id: i64,
        current: i16,
        got: i16,
    },
    /// The producer id has no state here and the batch does not start a sequence (not raised
    /// by this node, which accepts such batches as Kafka 2.5+ does; kept for the error mapping).
    #[error("unknown producer id {producer_id} with sequence {sequence}")]
    UnknownProducer { producer_id: i64, sequence: i32 },
    /// A request with several batches contained a retried one (not produced by real clients).
    #[error("duplicate sequence for producer {producer_id} inside a multi-batch append")]
    DuplicateInMultiBatch { producer_id: i64 },
}

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    /// First sequence number of the batch.
    pub first_seq: i32,
    /// Last sequence number of the batch.
    pub last_seq: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
}

/// State of one producer id in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerEntry {
    /// Current epoch.
    pub epoch: i16,
    /// The last batches appended with that epoch, oldest first.
    pub batches: VecDeque<BatchMeta>,
}

/// The verdict on an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it (the sequence follows).
    Append,
    /// Already appended at these offsets: do not append again.
    Duplicate(BatchMeta),
}

fn last_seq_of(h: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX as in Kafka.
    let n = h.last_offset_delta.max(0) as i64;
    ((h.base_sequence as i64 + n) % (i32::MAX as i64 + 1)) as i32
}

fn next_seq(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

/// Producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    /// Empty state.
    pub fn new() -> ProducerStateManager {
        ProducerStateManager::default()
    }

    /// Number of producers tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// True when no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The state of a producer id.
    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Check an incoming batch (header as sent by the client) of an idempotent producer.
    pub fn check(&self, h: &BatchHeader) -> Result<Check, ProducerError> {
        let pid = h.producer_id;
        let first = h.base_sequence;
        let last = last_seq_of(h);
        let Some(e) = self.producers.get(&pid) else {
            // As Kafka 2.5+ (KIP-360): a producer without state here (new, or its batches
            // removed by retention or compaction) may start at any sequence.
            return Ok(Check::Append);
        };
        if h.producer_epoch < e.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id: pid,
                current: e.epoch,
                got: h.producer_epoch,
            });
        }
        if h.producer_epoch > e.epoch {
            // A new epoch starts its sequence again.
            return if first == 0 {
                Ok(Check::Append)
            } else {
                Err(ProducerError::OutOfOrderSequence {
                    producer_id: pid,
                    expected: 0,
                    got: first,
                })
            };
        }
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(Check::Duplicate(*b));
        }
        match e.batches.back() {
            Some(b) if next_seq(b.last_seq) != first => Err(ProducerError::OutOfOrderSequence {
                producer_id: pid,
                expected: next_seq(b.last_seq),
                got: first,
            }),
            None if first != 0 => Err(ProducerError::OutOfOrderSequence {
                producer_id: pid,
                expected: 0,
                got: first,
            }),
            _ => Ok(Check::Append),
        }
    }

    /// Record an appended batch (header with its assigned offsets). Batches without a producer
    /// id are ignored.
    pub fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 {
            return;
        }
        let e = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != e.epoch {
            e.batches.clear();
            e.epoch = h.producer_epoch;
        }
        e.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_seq_of(h),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        while e.batches.len() > MAX_CACHED_BATCHES {
            e.batches.pop_front();
        }
    }

    /// Serialize (versioned, CRC32C-protected).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(8 + self.producers.len() * 64);
        body.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.producers[id];
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(body.len() + 6);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parse a snapshot written by [`ProducerStateManager::encode`]; `None` if damaged or of an
    /// unknown version.
    pub fn decode(buf: &[u8]) -> Option<ProducerStateManager> {
        let version = u16::from_be_bytes(buf.get(..2)?.try_into().ok()?);
        if version != SNAPSHOT_VERSION {
            return None;
        }
        let crc = u32::from_be_bytes(buf.get(2..6)?.try_into().ok()?);
        let body = buf.get(6..)?;
        if crc32c::crc32c(body) != crc {
            return None;
        }
        let mut r = Reader(body);
        let n = r.u32()?;
        let mut producers = HashMap::new();
        for _ in 0..n {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let nb = r.u8()?;
            let mut batches = VecDeque::with_capacity(usize::from(nb));
            for _ in 0..nb {
                batches.push_back(BatchMeta {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            producers.insert(id, ProducerEntry { epoch, batches });
        }
        if !r.0.is_empty() {
            return None;
        }
        Some(ProducerStateManager { producers })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        a.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take()?))
    }
}

/// File name of the snapshot covering every batch below `offset`.
pub fn snapshot_file_name(offset: i64) -> String {
    format!("{offset:020}.{SNAPSHOT_EXT}")
}

const PRODUCER_IDS: TableDefinition<&str, i64> = TableDefinition::new("rill_producer_ids");
const NEXT_BLOCK_KEY: &str = "next_block_start";
/// How many producer ids one metadata write reserves.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// Errors of producer id allocation.
#[derive(Debug, thiserror::Error)]
#[error("producer id store: {0}")]
pub struct AllocError(String);

/// Hands out producer ids unique across restarts of the node.
pub struct ProducerIdAllocator {
    db: std::sync::Arc<crate::metadata::MetaStore>,
    /// (next id to hand out, end of the reserved block).
    state: Mutex<(i64, i64)>,
}

impl ProducerIdAllocator {
    /// An allocator over the node's metadata store. Nothing is reserved until the first id.
    pub fn new(db: std::sync::Arc<crate::metadata::MetaStore>) -> ProducerIdAllocator {
        ProducerIdAllocator {
            db,
            state: Mutex::new((0, 0)),
        }
    }

    /// A fresh producer id.
    pub fn allocate(&self) -> Result<i64, AllocError> {
        let mut st = self.state.lock_unpoisoned();
        if st.0 >= st.1 {
            let start = self.reserve_block()?;
            *st = (start, start + PRODUCER_ID_BLOCK);
        }
        let id = st.0;
        st.0 += 1;
        Ok(id)
    }

    /// One past the highest id this allocator may ever have handed out (the end of its last
    /// reserved block; 0 if it never reserved one). A node that joins a cluster asks the
    /// controller for ids from here on, so ids it handed out alone are never reused.
    pub fn reserved_end(&self) -> Result<i64, AllocError> {
        let err = |e: &dyn std::fmt::Display| AllocError(e.to_string());
        let txn = self.db.db().begin_read().map_err(|e| err(&e))?;
        let t = match txn.open_table(PRODUCER_IDS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(err(&e)),
        };
        Ok(t.get(NEXT_BLOCK_KEY)
            .map_err(|e| err(&e))?
            .map(|v| v.value())
            .unwrap_or(0)
            .max(0))
    }

    /// Persist the end of a new block and return its start.
    fn reserve_block(&self) -> Result<i64, AllocError> {
        let err = |e: &dyn std::fmt::Display| AllocError(e.to_string());
        let txn = self.db.db().begin_write().map_err(|e| err(&e))?;
        let start;
        {
            let mut t = txn.open_table(PRODUCER_IDS).map_err(|e| err(&e))?;
            start = t
                .get(NEXT_BLOCK_KEY)
                .map_err(|e| err(&e))?
                .map(|v| v.value())
                .unwrap_or(0)
                .max(0);
            t.insert(NEXT_BLOCK_KEY, start + PRODUCER_ID_BLOCK)
                .map_err(|e| err(&e))?;
        }
        txn.commit().map_err(|e| err(&e))?;
        Ok(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(pid: i64, epoch: i16, seq: i32, n: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: n,
        }
    }

    #[test]
    fn sequences_duplicates_gaps_and_epochs() {
        let mut s = ProducerStateManager::new();
        assert_eq!(s.check(&hdr(7, 0, 0, 3, 0)), Ok(Check::Append));
        s.record(&hdr(7, 0, 0, 3, 10));
        assert_eq!(s.check(&hdr(7, 0, 3, 2, 0)), Ok(Check::Append));
        s.record(&hdr(7, 0, 3, 2, 13));
        // Retry of the first batch: its original offsets.
        assert_eq!(
            s.check(&hdr(7, 0, 0, 3, 0)),
            Ok(Check::Duplicate(BatchMeta {
                first_seq: 0,
                last_seq: 2,
                first_offset: 10,
                last_offset: 12
            }))
        );
        assert!(matches!(
            s.check(&hdr(7, 0, 9, 1, 0)),
            Err(ProducerError::OutOfOrderSequence { expected: 5, .. })
        ));
        // Unknown producers start anywhere (Kafka 2.5+); from then on they are checked.
        assert_eq!(s.check(&hdr(8, 0, 4, 1, 0)), Ok(Check::Append));
        // A new epoch restarts at 0; the old epoch is then fenced.
        assert!(s.check(&hdr(7, 1, 5, 1, 0)).is_err());
        s.record(&hdr(7, 1, 0, 1, 15));
        assert!(matches!(
            s.check(&hdr(7, 0, 5, 1, 0)),
            Err(ProducerError::InvalidEpoch { .. })
        ));
    }

    #[test]
    fn only_last_five_batches_are_remembered() {
        let mut s = ProducerStateManager::new();
        for i in 0..7 {
            s.record(&hdr(1, 0, i, 1, i64::from(i)));
        }
        assert_eq!(
            s.entry(1).map(|e| e.batches.len()),
            Some(MAX_CACHED_BATCHES)
        );
        assert!(matches!(
            s.check(&hdr(1, 0, 6, 1, 0)),
            Ok(Check::Duplicate(_))
        ));
        // Too old to be recognized: out of order.
        assert!(s.check(&hdr(1, 0, 0, 1, 0)).is_err());
    }

    #[test]
    fn sequence_wraps() {
        let mut s = ProducerStateManager::new();
        s.record(&hdr(1, 0, 0, 1, 0));
        if let Some(b) = s.producers.get_mut(&1).and_then(|e| e.batches.back_mut()) {
            b.last_seq = i32::MAX;
        }
        assert_eq!(s.check(&hdr(1, 0, 0, 2, 0)), Ok(Check::Append));
    }

    #[test]
    fn snapshot_roundtrip_and_damage() {
        let mut s = ProducerStateManager::new();
        s.record(&hdr(3, 2, 0, 4, 100));
        s.record(&hdr(9, 0, 0, 1, 104));
        let b = s.encode();
        assert_eq!(ProducerStateManager::decode(&b), Some(s));
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(ProducerStateManager::decode(&bad), None);
        assert_eq!(ProducerStateManager::decode(&b[..b.len() - 1]), None);
    }

    #[test]
    fn producer_ids_are_unique_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2 {
            let meta = std::sync::Arc::new(crate::metadata::MetaStore::open(dir.path()).unwrap());
            let a = ProducerIdAllocator::new(meta);
            for _ in 0..3 {
                assert!(seen.insert(a.allocate().unwrap()));
            }
        }
        assert_eq!(seen.len(), 6);
        let meta = std::sync::Arc::new(crate::metadata::MetaStore::open(dir.path()).unwrap());
        let a = ProducerIdAllocator::new(meta);
        let end = a.reserved_end().unwrap();
        assert!(seen.iter().all(|id| *id < end), "{seen:?} below {end}");
        assert_eq!(end, 2 * PRODUCER_ID_BLOCK);
    }

    #[test]
    fn a_fresh_store_has_reserved_no_producer_ids() {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::sync::Arc::new(crate::metadata::MetaStore::open(dir.path()).unwrap());
        assert_eq!(ProducerIdAllocator::new(meta).reserved_end().unwrap(), 0);
    }

    /// A test batch of `n` records stamped with a producer id, epoch and base sequence.
    fn idem_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
        let vals: Vec<Vec<u8>> = (0..n).map(|i| format!("v{seq}-{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = vals.iter().map(|v| v.as_slice()).collect();
        let mut b = crate::batch::test_util::batch(&refs, 1000);
        b[43..51].copy_from_slice(&pid.to_be_bytes());
        b[51..53].copy_from_slice(&epoch.to_be_bytes());
        b[53..57].copy_from_slice(&seq.to_be_bytes());
        let crc = crate::batch::compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn log_dedups_retries_and_survives_reopen_and_roll() {
        use crate::log::{LogError, PartitionLog};
        let dir = tempfile::tempdir().unwrap();
        let storage: std::sync::Arc<dyn crate::io::Storage> =
            std::sync::Arc::new(crate::io::OsStorage);
        let path = dir.path().join("t-0");
        let opts = crate::log::tests::opts(storage, false);
        let log = PartitionLog::open(path.clone(), opts.clone()).unwrap();
        log.append(&crate::batch::test_util::batch(&[b"plain"], 1))
            .unwrap();
        let a = log.append(&idem_batch(5, 0, 0, 3)).unwrap();
        assert_eq!((a.base_offset, a.last_offset), (1, 3));
        let dup = log.append(&idem_batch(5, 0, 0, 3)).unwrap();
        assert_eq!((dup.base_offset, dup.last_offset), (1, 3));
        assert_eq!(log.log_end_offset(), 4);
        assert!(matches!(
            log.append(&idem_batch(5, 0, 7, 1)),
            Err(LogError::Producer(ProducerError::OutOfOrderSequence { .. }))
        ));
        // Unclean reopen (no close): state rebuilt from batch headers.
        drop(log);
        let log = PartitionLog::open(path.clone(), opts.clone()).unwrap();
        let dup = log.append(&idem_batch(5, 0, 0, 3)).unwrap();
        assert_eq!(dup.base_offset, 1);
        let b = log.append(&idem_batch(5, 0, 3, 2)).unwrap();
        assert_eq!(b.base_offset, 4);
        // Roll (snapshot), more appends, clean close, reopen: snapshot plus replay.
        log.roll().unwrap();
        let c = log.append(&idem_batch(5, 0, 5, 1)).unwrap();
        log.close().unwrap();
        assert!(std::fs::read_dir(&path).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".snapshot")));
        let log = PartitionLog::open(path.clone(), opts).unwrap();
        let dup = log.append(&idem_batch(5, 0, 5, 1)).unwrap();
        assert_eq!(dup.base_offset, c.base_offset);
        let dup = log.append(&idem_batch(5, 0, 3, 2)).unwrap();
        assert_eq!(dup.base_offset, 4);
        assert_eq!(log.log_end_offset(), 7);
        assert!(matches!(
            log.append(&idem_batch(5, 0, 9, 1)),
            Err(LogError::Producer(_))
        ));
    }
}
