//! Property tests: for random sequences of appends (random batch sizes, timestamps, record
//! counts), flushes, rolls, reopens and power cuts, the log agrees with a simple model: offsets are
//! contiguous, reads return the batch containing the requested offset and the right records,
//! timestamp lookups return the earliest record with timestamp >= t, and max timestamp matches.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use rill_core::io::SimStorage;
use rill_core::log::{LogError, PartitionLog};

#[derive(Debug, Clone)]
enum Op {
    /// Records as (value length, timestamp).
    Append(Vec<(usize, i64)>),
    Flush,
    Roll,
    Reopen,
    PowerCut,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0usize..300, 0i64..10_000), 1..6).prop_map(Op::Append),
        2 => Just(Op::Flush),
        1 => Just(Op::Roll),
        1 => Just(Op::Reopen),
        1 => Just(Op::PowerCut),
    ]
}

struct Model {
    /// (offset, timestamp, value) of durable-or-volatile records in order.
    records: Vec<(i64, i64, Vec<u8>)>,
    /// Number of records known durable.
    durable: usize,
}

fn check(log: &PartitionLog, m: &Model, probes: &[i64]) {
    let hw = log.high_watermark();
    assert_eq!(log.log_end_offset(), m.records.len() as i64);
    let visible: Vec<_> = m.records.iter().filter(|r| r.0 < hw).cloned().collect();
    assert_eq!(read_all(log), visible);
    // Reads at every offset start with the batch containing it.
    for o in 0..hw {
        let rr = log.read(o, 1).unwrap();
        let recs = decode(&rr.records);
        assert!(recs.first().unwrap().0 <= o && recs.iter().any(|r| r.0 == o));
    }
    // (Reading at the high watermark while data is unflushed would trigger a flush, which the
    // model's power cuts must not get for free; that path has its own unit test.)
    if hw == log.log_end_offset() {
        assert!(log.read(hw, 1000).unwrap().records.is_empty());
    }
    assert!(matches!(
        log.read(log.log_end_offset() + 1, 10),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    for &t in probes {
        let want = visible.iter().find(|r| r.1 >= t).map(|r| (r.0, r.1));
        assert_eq!(log.offset_for_timestamp(t).unwrap(), want, "timestamp {t}");
    }
    let max = m.records.iter().map(|r| r.1).max();
    match (log.max_timestamp_offset(), max) {
        (Some((o, t)), Some(mt)) => {
            assert_eq!(t, mt);
            assert_eq!(m.records.iter().find(|r| r.1 == mt).map(|r| r.0), Some(o));
        }
        (None, None) => {}
        (got, want) => panic!("max timestamp {got:?} vs {want:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..40),
                         probes in prop::collection::vec(-5i64..10_100, 4),
                         seg_bytes in 300u64..4000, interval in 1u32..600, enc in any::<bool>()) {
        let sim = SimStorage::new();
        let dir = PathBuf::from("/p/t-0");
        let mut cfg = config();
        cfg.segment_bytes = seg_bytes;
        cfg.index_interval_bytes = interval;
        let encryption = if enc { encrypted(3) } else { rill_core::crypto::Encryption::Off };
        let o = || opts(Arc::new(sim.clone()), encryption.clone(), cfg.clone());
        let mut log = open(&dir, o());
        let mut m = Model { records: Vec::new(), durable: 0 };
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Append(recs) => {
                    let vals: Vec<Vec<u8>> = recs.iter().enumerate()
                        .map(|(i, (len, _))| format!("{n}-{i}-{}", "v".repeat(*len)).into_bytes())
                        .collect();
                    let ts: Vec<i64> = recs.iter().map(|r| r.1).collect();
                    let info = log.append(&batch_with_ts(&vals, &ts)).unwrap();
                    prop_assert_eq!(info.base_offset, m.records.len() as i64);
                    prop_assert_eq!(info.record_count as usize, vals.len());
                    prop_assert_eq!(info.max_timestamp, *ts.iter().max().unwrap());
                    for (i, v) in vals.into_iter().enumerate() {
                        m.records.push((info.base_offset + i as i64, ts[i], v));
                    }
                }
                Op::Flush => {
                    log.flush_to(m.records.len() as i64 - 1).unwrap();
                    m.durable = m.records.len();
                }
                Op::Roll => log.roll().unwrap(),
                Op::Reopen => {
                    log.close().unwrap();
                    log = open(&dir, o());
                    m.durable = m.records.len();
                }
                Op::PowerCut => {
                    drop(log);
                    sim.power_cut();
                    log = open(&dir, o());
                    // Whatever was not flushed may or may not have survived (a later flush
                    // covers earlier appends); it must be a prefix extending the durable part.
                    let leo = log.log_end_offset() as usize;
                    prop_assert!(leo >= m.durable && leo <= m.records.len());
                    m.records.truncate(leo);
                    m.durable = leo;
                }
            }
            check(&log, &m, &probes);
        }
    }
}
