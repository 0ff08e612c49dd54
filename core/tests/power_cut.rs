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

/// What a reopened log holds: every record (offset, value) read batch by batch from the log
/// start, with offsets checked to strictly increase across reads (no offset served twice).
fn contents(log: &rill_core::log::PartitionLog) -> Vec<(i64, Vec<u8>)> {
    log.set_cache_capacity(0);
    let mut out: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.high_watermark() {
        let rr = log.read(next, 300).expect("read");
        let recs = decode(&rr.records);
        assert!(
            !recs.is_empty(),
            "empty read at {next} below the high watermark"
        );
        for (o, _, v) in recs {
            if let Some((last, _)) = out.last() {
                assert!(o > *last, "offset {o} served after {last}");
            }
            assert!(o < log.log_end_offset(), "offset {o} past the log end");
            next = o + 1;
            out.push((o, v));
        }
    }
    out
}

fn epochs(log: &rill_core::log::PartitionLog) -> Vec<(i32, i64)> {
    log.epoch_entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

/// A power cut at every storage step of a truncation leaves, after reopening, either the log as
/// it was or the truncated log: data, log end offset, leader epochs and producer state; never
/// a mix, a duplicated offset or data past the log end. Appends after it are readable after
/// another reopen (new data is sealed under a fresh key).
#[test]
fn power_cut_at_every_step_of_a_truncation() {
    use rill_core::io::CrashingStorage;
    let dir = PathBuf::from("/data/trunc-0");
    let mut cfg = config();
    cfg.segment_bytes = 600;
    cfg.index_interval_bytes = 64;
    let mut steps = 0;
    let (mut as_old, mut as_truncated) = (0, 0);
    for n in 0.. {
        let disk = CrashingStorage::new(SimStorage::new());
        let log = open(
            &dir,
            opts(Arc::new(disk.clone()), encrypted(4), cfg.clone()),
        );
        for i in 0..24i64 {
            if i % 8 == 0 && i > 0 {
                log.assign_epoch_start((i / 8) as i32 * 2).unwrap();
            }
            let v = format!("value-{i}-{}", "p".repeat(i as usize * 3));
            let mut b = rill_core::batch::BatchBuilder::new().producer(4, 0, i as i32);
            b.push(None, Some(bytes::Bytes::from(v.into_bytes())), 1000 + i);
            log.append(&b.build().unwrap()).unwrap();
        }
        log.flush().unwrap();
        // Cut inside a segment (not at its base): the segment is cut, later ones removed.
        let bases = log.segment_base_offsets();
        assert!(bases.len() > 4, "{bases:?}");
        let target = bases[2] + 1;
        assert!(target < bases[3] && target > 8 && target < 16, "{bases:?}");
        let old = contents(&log);
        let old_epochs = epochs(&log);
        assert_eq!(old_epochs, vec![(0, 0), (2, 8), (4, 16)]);
        let cut: Vec<(i64, Vec<u8>)> = old.iter().filter(|(o, _)| *o < target).cloned().collect();
        let cut_epochs = vec![(0, 0), (2, 8)];

        disk.arm(n);
        let res = log.truncate_to(target);
        let done = !disk.crashed();
        if done {
            res.unwrap();
            assert_eq!(contents(&log), cut);
            steps = n;
        } else {
            assert!(res.is_err(), "step {n}: a cut must surface as an error");
            assert!(
                matches!(log.read(0, 1), Err(rill_core::log::LogError::Closed)),
                "step {n}: a failed truncation closes the log"
            );
        }
        drop(log);
        let sim = disk.sim().clone();
        let log = open(&dir, opts(Arc::new(sim.clone()), encrypted(4), cfg.clone()));
        let got = contents(&log);
        let truncated = if got == old {
            assert_eq!(log.log_end_offset(), 24, "step {n}");
            assert_eq!(epochs(&log), old_epochs, "step {n}");
            false
        } else {
            assert_eq!(got, cut, "step {n}: neither the old nor the truncated log");
            assert_eq!(log.log_end_offset(), target, "step {n}");
            assert_eq!(epochs(&log), cut_epochs, "step {n}");
            true
        };
        assert!(!done || truncated, "a completed truncation survives");
        if !done {
            if truncated {
                as_truncated += 1;
            } else {
                as_old += 1;
            }
        }
        assert!(log.read(log.log_end_offset() + 1, 100).is_err());
        assert_eq!(
            log.offset_for_timestamp(1023).unwrap().is_some(),
            !truncated,
            "step {n}: the time index serves nothing truncated"
        );
        let producer = log.producer_state();
        let last = producer.entry(4).unwrap().batches.back().copied().unwrap();
        assert_eq!(last.last_offset, log.log_end_offset() - 1, "step {n}");
        // Finish the job if the cut came first, then write again under the new epoch.
        log.truncate_to(target).unwrap();
        log.assign_epoch_start(6).unwrap();
        let mut b = rill_core::batch::BatchBuilder::new().producer(4, 0, target as i32);
        b.push(None, Some(bytes::Bytes::from_static(b"after")), 5000);
        let info = log.append(&b.build().unwrap()).unwrap();
        assert_eq!(info.base_offset, target, "step {n}");
        log.flush().unwrap();
        drop(log);
        sim.power_cut();
        let log = open(&dir, opts(Arc::new(sim), encrypted(4), cfg.clone()));
        let mut want = cut.clone();
        want.push((target, b"after".to_vec()));
        assert_eq!(contents(&log), want, "step {n}");
        assert_eq!(epochs(&log), vec![(0, 0), (2, 8), (6, target)], "step {n}");
        if done {
            break;
        }
    }
    assert!(steps > 10, "only {steps} storage steps exercised");
    assert!(
        as_old > 0 && as_truncated > 0,
        "cuts before ({as_old}) and after ({as_truncated}) the commit point"
    );
    eprintln!("{steps} steps: {as_old} cuts left the old log, {as_truncated} the truncated one");
}
