//! Encryption at rest: no plaintext on disk, wrong master key refuses to open (and never
//! truncates), and no (data key, nonce) pair is ever used twice across reopen and power cuts.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use rill_core::crypto::{CryptoError, Encryption, MasterKey};
use rill_core::io::{OsStorage, SimStorage, Storage};
use rill_core::log::LogError;
use rill_core::segment::{parse_file_name, KeyFile, FILE_HEADER_LEN};

const SECRET: &[u8] = b"TOP-SECRET-TELEMETRY-PAYLOAD-4711";

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        if data.windows(needle.len()).any(|w| w == needle) {
            hits.push(p.display().to_string());
        }
    }
    hits
}

fn write_secrets(dir: &Path, enc: Encryption) {
    let mut cfg = config();
    cfg.segment_bytes = 2048;
    let log = open(dir, opts(Arc::new(OsStorage), enc, cfg));
    for i in 0..50 {
        let v = [SECRET, format!("-{i}").as_bytes()].concat();
        let a = log.append(&batch(&[&v, SECRET], 1000 + i)).unwrap();
        log.flush_to(a.last_offset).unwrap();
    }
    // Half of the data directory comes from a closed log, the rest from an unclean stop.
    log.close().unwrap();
    let log = open(dir, opts(Arc::new(OsStorage), encrypted(9), config()));
    let a = log.append(&batch(&[SECRET], 5000)).unwrap();
    log.flush_to(a.last_offset).unwrap();
}

#[test]
fn no_plaintext_payload_on_disk() {
    let d = fast_tempdir();
    let dir = d.path().join("test-0");
    write_secrets(&dir, encrypted(9));
    assert!(
        files_contain(&dir, SECRET).is_empty(),
        "plaintext found on disk"
    );
    // The data is still readable through the log.
    let log = open(&dir, opts(Arc::new(OsStorage), encrypted(9), config()));
    let all = read_all(&log);
    assert_eq!(all.len(), 101);
    assert!(all.iter().all(|(_, _, v)| v.starts_with(SECRET)));
}

#[test]
fn plaintext_search_would_find_unencrypted_data() {
    // The search above is meaningful: with encryption off it does find the payload.
    let d = fast_tempdir();
    let dir = d.path().join("test-0");
    let log = open(&dir, opts(Arc::new(OsStorage), Encryption::Off, config()));
    let a = log.append(&batch(&[SECRET], 1)).unwrap();
    log.flush_to(a.last_offset).unwrap();
    assert!(!files_contain(&dir, SECRET).is_empty());
}

fn dir_sizes(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                e.metadata().unwrap().len(),
            )
        })
        .collect()
}

#[test]
fn wrong_master_key_refuses_to_open_and_changes_nothing() {
    let d = fast_tempdir();
    let dir = d.path().join("test-0");
    let log = open(&dir, opts(Arc::new(OsStorage), encrypted(1), config()));
    for i in 0..10 {
        log.append(&batch(&[b"abc"], i)).unwrap();
    }
    log.flush().unwrap();
    drop(log); // unclean: the tail segment would be fully scanned on open
    let before = dir_sizes(&dir);
    match rill_core::log::PartitionLog::open(
        dir.clone(),
        opts(Arc::new(OsStorage), encrypted(2), config()),
    ) {
        Err(LogError::Crypto(CryptoError::WrongMasterKey { expected, found })) => {
            assert_eq!(expected, MasterKey::from_bytes([2; 32]).id_hex());
            assert_eq!(found, MasterKey::from_bytes([1; 32]).id_hex());
        }
        Err(e) => panic!("expected WrongMasterKey, got {e}"),
        Ok(_) => panic!("opened with the wrong master key"),
    }
    assert_eq!(dir_sizes(&dir), before, "nothing truncated or created");
    // Encryption switched off cannot read encrypted data either, and does not destroy it.
    assert!(rill_core::log::PartitionLog::open(
        dir.clone(),
        opts(Arc::new(OsStorage), Encryption::Off, config())
    )
    .is_err());
    assert_eq!(dir_sizes(&dir), before);
    let log = open(&dir, opts(Arc::new(OsStorage), encrypted(1), config()));
    assert_eq!(read_all(&log).len(), 10);
}

/// Raw data keys of every segment and the log lengths, from the simulated disk.
fn keys_and_lengths(sim: &SimStorage, dir: &Path) -> (BTreeMap<i64, [u8; 32]>, BTreeMap<i64, u64>) {
    let m = MasterKey::from_bytes([7; 32]);
    let mut keys = BTreeMap::new();
    let mut lens = BTreeMap::new();
    for name in sim.list(dir).unwrap() {
        let Some((base, ext)) = parse_file_name(&name) else {
            continue;
        };
        let data = sim.read_file(&dir.join(&name)).unwrap();
        match ext {
            "key" => {
                let kf = KeyFile::decode(&data).unwrap();
                keys.insert(base, kf.unwrap_raw(&m).unwrap());
            }
            "log" => {
                lens.insert(base, data.len() as u64);
            }
            _ => {}
        }
    }
    (keys, lens)
}

#[test]
fn reopen_never_reuses_key_and_nonce() {
    // Nonces are file positions, so (key, nonce) is unique iff every data key is fresh and a
    // segment file only ever grows within the process that created it.
    let sim = SimStorage::new();
    let dir = PathBuf::from("/d/t-0");
    let mut seen_keys: HashSet<[u8; 32]> = HashSet::new();
    let mut rng = Rng(42);
    for round in 0..12 {
        let log = open(&dir, opts(Arc::new(sim.clone()), encrypted(7), config()));
        let (keys, lens_at_open) = keys_and_lengths(&sim, &dir);
        let active = *log.segment_base_offsets().last().unwrap();
        assert_eq!(
            lens_at_open[&active], FILE_HEADER_LEN,
            "new active segment is empty"
        );
        let new_key = keys[&active];
        assert!(seen_keys.insert(new_key), "round {round}: data key reused");
        for i in 0..rng.below(20) + 1 {
            let a = log
                .append(&batch(&[format!("{round}-{i}").as_bytes()], i as i64))
                .unwrap();
            if rng.below(2) == 0 {
                log.flush_to(a.last_offset).unwrap();
            }
        }
        // Segments from earlier opens were never written again.
        let (_, lens_now) = keys_and_lengths(&sim, &dir);
        for (base, len) in &lens_at_open {
            if *base != active {
                assert_eq!(
                    lens_now.get(base),
                    Some(len),
                    "old segment {base} was written"
                );
            }
        }
        drop(log);
        match round % 3 {
            0 => sim.power_cut(), // torn tail truncated on the next open
            1 => {}
            _ => {
                let log = open(&dir, opts(Arc::new(sim.clone()), encrypted(7), config()));
                let (k, _) = keys_and_lengths(&sim, &dir);
                let act = *log.segment_base_offsets().last().unwrap();
                assert!(seen_keys.insert(k[&act]));
                log.close().unwrap();
            }
        }
    }
}
