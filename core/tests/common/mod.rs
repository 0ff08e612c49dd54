//! Shared helpers for rill-core integration tests: batch building with kafka-protocol, options,
//! decoding read results.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use rill_core::batch::BatchBuilder;
use rill_core::crypto::{CipherKind, Encryption, MasterKey};
use rill_core::io::Storage;
use rill_core::log::{FlushPolicy, LogOptions, PartitionLog};
use rill_core::topic_config::{CleanupPolicy, TimestampType as TsType, TopicConfig};
use uuid::Uuid;

/// Encode one v2 batch; record i gets key `k`, value `values[i]` and timestamp `ts[i]`.
pub fn batch_with_ts(values: &[Vec<u8>], ts: &[i64]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for (v, t) in values.iter().zip(ts) {
        b.push(
            Some(Bytes::from_static(b"k")),
            Some(Bytes::copy_from_slice(v)),
            *t,
        );
    }
    b.build().expect("encode").to_vec()
}

/// One batch of `values` with timestamps ts0, ts0+1, ...
pub fn batch(values: &[&[u8]], ts0: i64) -> Vec<u8> {
    let v: Vec<Vec<u8>> = values.iter().map(|x| x.to_vec()).collect();
    let ts: Vec<i64> = (0..v.len() as i64).map(|i| ts0 + i).collect();
    batch_with_ts(&v, &ts)
}

/// Decode read bytes into (offset, timestamp, value).
pub fn decode(records: &Bytes) -> Vec<(i64, i64, Vec<u8>)> {
    let mut buf = records.clone();
    let sets = RecordBatchDecoder::decode_all(&mut buf).expect("decode");
    sets.into_iter()
        .flat_map(|s| s.records)
        .map(|r| {
            (
                r.offset,
                r.timestamp,
                r.value.map(|v| v.to_vec()).unwrap_or_default(),
            )
        })
        .collect()
}

pub fn config() -> TopicConfig {
    TopicConfig {
        retention_ms: 7 * 24 * 3600 * 1000,
        retention_bytes: -1,
        segment_bytes: 1 << 30,
        segment_ms: 7 * 24 * 3600 * 1000,
        cleanup_policy: CleanupPolicy::Delete,
        max_message_bytes: 1 << 20,
        delete_retention_ms: 24 * 3600 * 1000,
        min_cleanable_dirty_ratio: 0.5,
        min_compaction_lag_ms: 0,
        message_timestamp_type: TsType::CreateTime,
        index_interval_bytes: 4096,
        ..TopicConfig::default()
    }
}

pub fn master(byte: u8) -> Arc<MasterKey> {
    Arc::new(MasterKey::from_bytes([byte; 32]))
}

pub fn encrypted(byte: u8) -> Encryption {
    Encryption::On {
        cipher: CipherKind::auto(),
        master: master(byte),
    }
}

pub fn topic_id() -> Uuid {
    Uuid::from_u128(0xfeed_beef)
}

pub fn opts(storage: Arc<dyn Storage>, encryption: Encryption, config: TopicConfig) -> LogOptions {
    LogOptions {
        topic_id: topic_id(),
        topic: "test".into(),
        partition: 0,
        config,
        flush: FlushPolicy::Always,
        encryption,
        storage,
        observer: rill_core::storage_observer::none(),
    }
}

pub fn open(dir: &Path, o: LogOptions) -> PartitionLog {
    PartitionLog::open(dir.to_path_buf(), o).expect("open log")
}

/// Read every record from the log start to the high watermark, one read at a time (no cache).
pub fn read_all(log: &PartitionLog) -> Vec<(i64, i64, Vec<u8>)> {
    log.set_cache_capacity(0);
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.high_watermark() {
        let rr = log.read(next, 64 * 1024).expect("read");
        let recs = decode(&rr.records);
        assert!(!recs.is_empty(), "empty read at {next} below hw");
        for r in recs {
            if r.0 >= next {
                next = r.0 + 1;
                out.push(r);
            }
        }
    }
    out
}

/// Tiny deterministic PRNG (xorshift64*) so tests need no extra crates.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A temporary directory, on tmpfs when available (for tests that do not test durability and
/// would otherwise spend their time in fsync).
pub fn fast_tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("tempdir")
}
