//! Power-cut test: with SimStorage, everything not fsynced is lost at a "power cut". Every batch
//! acknowledged (flush_to returned) must survive the cut and a reopen, and nothing else may be
//! half-visible.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use rill_core::io::SimStorage;

#[test]
fn acknowledged_batches_survive_power_cuts() {
    let sim = SimStorage::new();
    let dir = PathBuf::from("/data/test-0");
    let mut cfg = config();
    cfg.segment_bytes = 4096; // many rolls
    cfg.index_interval_bytes = 256;
    let mut rng = Rng(0x5eed);
    // offset -> value of every acknowledged record
    let mut acked: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    for round in 0..30 {
        let log = open(&dir, opts(Arc::new(sim.clone()), encrypted(1), cfg.clone()));
        // Everything acknowledged before is still there, in order, with its value.
        let all = read_all(&log);
        let got: BTreeMap<i64, Vec<u8>> = all.iter().map(|(o, _, v)| (*o, v.clone())).collect();
        for (o, v) in &acked {
            assert_eq!(
                got.get(o),
                Some(v),
                "round {round}: acknowledged offset {o} lost"
            );
        }
        // Offsets are contiguous from the log start.
        for (i, (o, _, _)) in all.iter().enumerate() {
            assert_eq!(*o, log.log_start_offset() + i as i64);
        }
        assert!(log.log_end_offset() >= acked.keys().next_back().map_or(0, |o| o + 1));
        // Append a random number of batches; flush some of them.
        let n = rng.below(40) + 1;
        for i in 0..n {
            let recs = rng.below(5) + 1;
            let vals: Vec<Vec<u8>> = (0..recs)
                .map(|j| {
                    format!("r{round}-b{i}-{j}-{}", "x".repeat(rng.below(200) as usize))
                        .into_bytes()
                })
                .collect();
            let ts: Vec<i64> = (0..recs as i64).map(|j| 1_000 + j).collect();
            let info = log.append(&batch_with_ts(&vals, &ts)).unwrap();
            if rng.below(3) == 0 {
                log.flush_to(info.last_offset).unwrap();
                for (j, v) in vals.into_iter().enumerate() {
                    acked.insert(info.base_offset + j as i64, v);
                }
                // Earlier unacknowledged appends are covered too now.
            }
        }
        // Flushes may have covered earlier unflushed appends: those are durable but we only
        // require the acknowledged ones. Cut the power without closing.
        drop(log);
        sim.power_cut();
    }
}

#[test]
fn clean_close_then_power_cut_keeps_everything() {
    let sim = SimStorage::new();
    let dir = PathBuf::from("/data/t-1");
    let log = open(&dir, opts(Arc::new(sim.clone()), encrypted(2), config()));
    for i in 0..100u32 {
        log.append(&batch(&[format!("v{i}").as_bytes()], i as i64))
            .unwrap();
    }
    log.close().unwrap();
    sim.power_cut();
    let log = open(&dir, opts(Arc::new(sim.clone()), encrypted(2), config()));
    let all = read_all(&log);
    assert_eq!(all.len(), 100);
    assert_eq!(all[99].2, b"v99");
}

#[test]
fn unflushed_appends_are_not_visible_and_lost_cleanly() {
    let sim = SimStorage::new();
    let dir = PathBuf::from("/data/t-2");
    let log = open(&dir, opts(Arc::new(sim.clone()), encrypted(3), config()));
    let a = log.append(&batch(&[b"durable"], 1)).unwrap();
    log.flush_to(a.last_offset).unwrap();
    log.append(&batch(&[b"volatile"], 2)).unwrap();
    assert_eq!(log.high_watermark(), 1, "unflushed data is not exposed");
    drop(log);
    sim.power_cut();
    let log = open(&dir, opts(Arc::new(sim.clone()), encrypted(3), config()));
    assert_eq!(log.log_end_offset(), 1);
    let all = read_all(&log);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].2, b"durable");
}
