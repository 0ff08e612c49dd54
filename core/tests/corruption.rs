//! Corruption tests: flipped bytes in segment and index files are recovered (indexes rebuilt,
//! torn tails truncated) or reported (corrupt batches are never served); nothing panics.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use rill_core::io::OsStorage;
use rill_core::log::{LogError, PartitionLog};
use rill_core::segment::FILE_HEADER_LEN;

fn build(dir: &Path, clean: bool) -> Vec<Vec<u8>> {
    let mut cfg = config();
    cfg.segment_bytes = 3000;
    cfg.index_interval_bytes = 200;
    let log = open(dir, opts(Arc::new(OsStorage), encrypted(4), cfg));
    let mut values = Vec::new();
    for i in 0..120u32 {
        let v = format!("value-{i:04}-{}", "p".repeat((i % 7) as usize * 10)).into_bytes();
        log.append(&batch(&[&v], 1000 + i as i64)).unwrap();
        values.push(v);
    }
    log.flush().unwrap();
    if clean {
        log.close().unwrap();
    }
    values
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, pos: u64) {
    let mut data = std::fs::read(path).unwrap();
    if (pos as usize) < data.len() {
        data[pos as usize] ^= 0x5a;
        std::fs::write(path, data).unwrap();
    }
}

/// Read every offset one by one: each read returns correct data or a Corrupt error.
fn check_served(log: &PartitionLog, values: &[Vec<u8>]) -> (usize, usize) {
    log.set_cache_capacity(0);
    let (mut ok, mut corrupt) = (0, 0);
    for o in log.log_start_offset()..log.high_watermark() {
        match log.read(o, 1) {
            Ok(rr) => {
                let recs = decode(&rr.records);
                assert!(!recs.is_empty());
                for (off, _, v) in recs {
                    assert_eq!(&v, &values[off as usize], "wrong data served at {off}");
                }
                ok += 1;
            }
            Err(LogError::Corrupt { .. }) => corrupt += 1,
            Err(e) => panic!("unexpected error at {o}: {e}"),
        }
    }
    (ok, corrupt)
}

#[test]
fn random_flips_in_any_file_are_recovered_or_reported() {
    let mut rng = Rng(7);
    for round in 0..24 {
        let d = fast_tempdir();
        let dir = d.path().join("t-0");
        let clean = round % 2 == 0;
        let values = build(&dir, clean);
        let ext = ["log", "index", "timeindex", "log"][round % 4];
        let fs = files(&dir, ext);
        let f = &fs[rng.below(fs.len() as u64) as usize];
        let len = std::fs::metadata(f).unwrap().len();
        for _ in 0..=rng.below(3) {
            flip(f, rng.below(len));
        }
        match PartitionLog::open(
            dir.clone(),
            opts(Arc::new(OsStorage), encrypted(4), config()),
        ) {
            Ok(log) => {
                let (ok, corrupt) = check_served(&log, &values);
                assert!(ok > 0, "round {round}: nothing served");
                if ext != "log" {
                    assert_eq!(corrupt, 0, "round {round}: index damage must be repaired");
                }
            }
            // A damaged segment header is refused with a typed error, not a panic.
            Err(LogError::Corrupt { .. }) | Err(LogError::Crypto(_)) => {}
            Err(e) => panic!("round {round}: unexpected error {e}"),
        }
    }
}

#[test]
fn corrupt_batch_in_the_middle_is_reported_and_the_rest_served() {
    let d = fast_tempdir();
    let dir = d.path().join("t-0");
    let values = build(&dir, false);
    // Damage the ciphertext of a batch in the middle of the LAST segment (fully scanned on an
    // unclean open): it must be reported, not treated as a torn tail.
    let logs = files(&dir, "log");
    let last = logs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    assert!(len > FILE_HEADER_LEN + 500);
    let pos = FILE_HEADER_LEN + (len - FILE_HEADER_LEN) / 2;
    flip(last, pos);
    let log = open(&dir, opts(Arc::new(OsStorage), encrypted(4), config()));
    let bad = log.corruption();
    assert_eq!(bad.len(), 1, "corruption reported");
    assert_eq!(&bad[0].file, last);
    assert!(bad[0].start <= pos && pos < bad[0].end);
    assert_eq!(
        log.log_end_offset(),
        120,
        "valid data after the damage is kept"
    );
    let (ok, corrupt) = check_served(&log, &values);
    assert_eq!(corrupt, 1);
    assert_eq!(ok, 119);
    // Appends continue after the old end.
    let a = log.append(&batch(&[b"more"], 5)).unwrap();
    assert_eq!(a.base_offset, 120);
}

#[test]
fn torn_tail_is_truncated() {
    let d = fast_tempdir();
    let dir = d.path().join("t-0");
    let values = build(&dir, false);
    let logs = files(&dir, "log");
    let last = logs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    // Cut the last batch in half and append garbage.
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(len - 10).unwrap();
    drop(f);
    let log = open(&dir, opts(Arc::new(OsStorage), encrypted(4), config()));
    assert!(log.corruption().is_empty());
    assert_eq!(log.log_end_offset(), 119);
    let (ok, corrupt) = check_served(&log, &values);
    assert_eq!((ok, corrupt), (119, 0));
    assert_eq!(log.append(&batch(&[b"x"], 1)).unwrap().base_offset, 119);
}

#[test]
fn missing_index_files_are_rebuilt() {
    let d = fast_tempdir();
    let dir = d.path().join("t-0");
    let values = build(&dir, true);
    for p in files(&dir, "index")
        .into_iter()
        .chain(files(&dir, "timeindex"))
    {
        std::fs::remove_file(p).unwrap();
    }
    let log = open(&dir, opts(Arc::new(OsStorage), encrypted(4), config()));
    let (ok, corrupt) = check_served(&log, &values);
    assert_eq!((ok, corrupt), (120, 0));
    assert_eq!(log.offset_for_timestamp(1050).unwrap(), Some((50, 1050)));
    assert_eq!(log.max_timestamp_offset(), Some((119, 1119)));
}

#[test]
fn damaged_header_or_key_of_a_middle_segment_is_reported_and_the_rest_served() {
    for target in ["log", "key"] {
        let d = fast_tempdir();
        let dir = d.path().join("t-0");
        let values = build(&dir, true);
        let fs = files(&dir, target);
        assert!(fs.len() > 3);
        let victim = &fs[1];
        flip(victim, 10); // inside the file header / the key file's master key id area
        let log = open(&dir, opts(Arc::new(OsStorage), encrypted(4), config()));
        let bad = log.corruption();
        assert_eq!(bad.len(), 1, "{target}: {bad:?}");
        let (lo, hi) = (bad[0].first_offset, bad[0].next_offset);
        assert!(lo < hi);
        log.set_cache_capacity(0);
        for o in 0..120 {
            match log.read(o, 1) {
                Ok(rr) => {
                    assert!(o < lo || o >= hi, "{target}: served lost offset {o}");
                    let recs = decode(&rr.records);
                    assert_eq!(recs[0].2, values[recs[0].0 as usize]);
                }
                Err(LogError::Corrupt { .. }) => assert!(o >= lo && o < hi),
                Err(e) => panic!("{target}: {e}"),
            }
        }
    }
}
