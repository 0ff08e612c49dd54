//! Retention: retention.bytes, retention.ms under the clock policy (boards booting in 1970,
//! clock jumps, future timestamps), the retention floor, the disk-budget hook, DeleteRecords and
//! segment.ms rolling.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use rill_core::clock::now_ms;
use rill_core::io::SimStorage;
use rill_core::log::{LogError, PartitionLog};
use rill_core::retention::SANE_CLOCK_FLOOR_MS;
use rill_core::topic_config::{CleanupPolicy, TopicConfig};

const DAY: i64 = 24 * 3600 * 1000;

fn small_segments() -> TopicConfig {
    let mut c = config();
    c.segment_bytes = 1024;
    c.retention_ms = 7 * DAY;
    c
}

/// Write `n` batches of ~200 bytes with timestamps from `ts`, then reopen (so segments count as
/// loaded from disk, as after a reboot). Returns the reopened log.
fn write_and_reopen(
    sim: &SimStorage,
    cfg: &TopicConfig,
    n: usize,
    ts: impl Fn(usize) -> i64,
) -> PartitionLog {
    let dir = PathBuf::from("/r/t-0");
    let log = open(&dir, opts(Arc::new(sim.clone()), encrypted(1), cfg.clone()));
    for i in 0..n {
        let v = vec![b'a'; 200];
        let a = log.append(&batch(&[&v], ts(i))).unwrap();
        log.flush_to(a.last_offset).unwrap();
    }
    log.close().unwrap();
    open(&dir, opts(Arc::new(sim.clone()), encrypted(1), cfg.clone()))
}

#[test]
fn retention_bytes_deletes_oldest_closed_segments() {
    let sim = SimStorage::new();
    let mut cfg = small_segments();
    cfg.retention_ms = -1;
    cfg.retention_bytes = 3000;
    let log = write_and_reopen(&sim, &cfg, 60, |_| now_ms());
    let before = log.segment_base_offsets().len();
    assert!(before > 6);
    let out = log.apply_retention(now_ms()).unwrap();
    assert!(out.deleted_segments > 0);
    assert!(
        log.size_bytes() < 3000 + 2048 + 1024,
        "size {}",
        log.size_bytes()
    );
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    assert!(matches!(
        log.read(0, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log).len() as i64, 60 - log.log_start_offset());
    // The active segment always stays, even with retention.bytes 0.
    let mut c = cfg.clone();
    c.retention_bytes = 0;
    log.set_config(c);
    log.apply_retention(now_ms()).unwrap();
    assert_eq!(log.segment_base_offsets().len(), 1);
    assert_eq!(log.log_start_offset(), 60);
}

#[test]
fn retention_ms_uses_max_timestamp_of_segments() {
    let sim = SimStorage::new();
    let now = now_ms();
    // First 30 batches are 10 days old, the rest are fresh.
    let log = write_and_reopen(&sim, &small_segments(), 60, |i| {
        if i < 30 {
            now - 10 * DAY
        } else {
            now
        }
    });
    log.apply_retention(now).unwrap();
    let start = log.log_start_offset();
    assert!(
        start > 0 && start <= 30,
        "old segments deleted, start {start}"
    );
    assert_eq!(read_all(&log).len() as i64, 60 - start);
    // Nothing fresh is deleted even a day later.
    log.apply_retention(now + DAY).unwrap();
    assert_eq!(log.log_start_offset(), start);
    // Compact-only topics never delete by retention.
    let mut c = small_segments();
    c.cleanup_policy = CleanupPolicy::Compact;
    log.set_config(c);
    assert_eq!(
        log.apply_retention(now + 30 * DAY)
            .unwrap()
            .deleted_segments,
        0
    );
}

#[test]
fn clock_not_set_never_deletes_by_time() {
    let sim = SimStorage::new();
    let mut cfg = small_segments();
    cfg.retention_ms = 1;
    let log = write_and_reopen(&sim, &cfg, 30, |i| 1000 + i as i64);
    // The board booted in 1970: no time-based deletion at all.
    assert_eq!(log.apply_retention(5_000).unwrap().deleted_segments, 0);
    assert_eq!(log.log_start_offset(), 0);
}

#[test]
fn data_written_in_1970_survives_the_clock_jump_for_a_full_retention_period() {
    let sim = SimStorage::new();
    let cfg = small_segments();
    // Written while the clock said 1970.
    let log = write_and_reopen(&sim, &cfg, 30, |i| 10_000 + i as i64);
    let synced = SANE_CLOCK_FLOOR_MS + 200 * DAY; // NTP sets the clock
    assert_eq!(log.apply_retention(synced).unwrap().deleted_segments, 0);
    assert_eq!(
        log.apply_retention(synced + 7 * DAY - 1)
            .unwrap()
            .deleted_segments,
        0
    );
    assert!(
        log.apply_retention(synced + 7 * DAY)
            .unwrap()
            .deleted_segments
            > 0
    );
}

#[test]
fn far_future_timestamps_do_not_pin_or_delete_early() {
    let sim = SimStorage::new();
    let now = now_ms();
    let log = write_and_reopen(&sim, &small_segments(), 30, |_| now + 365 * DAY);
    assert_eq!(log.apply_retention(now).unwrap().deleted_segments, 0);
    // Judged from when retention first saw them, not from the bogus timestamp.
    assert!(log.apply_retention(now + 7 * DAY).unwrap().deleted_segments > 0);
}

#[test]
fn fresh_segments_are_protected_by_the_monotonic_clock() {
    // Segments created by this process with old producer timestamps (e.g. replayed data, or a
    // wall clock that jumped forward) are kept until they are retention.ms old on the
    // monotonic clock.
    let sim = SimStorage::new();
    let dir = PathBuf::from("/r/t-1");
    let log = open(
        &dir,
        opts(Arc::new(sim.clone()), encrypted(1), small_segments()),
    );
    let now = now_ms();
    for _ in 0..30 {
        let a = log.append(&batch(&[&[b'z'; 200]], now - 30 * DAY)).unwrap();
        log.flush_to(a.last_offset).unwrap();
    }
    assert!(log.segment_base_offsets().len() > 3);
    assert_eq!(
        log.apply_retention(now + 365 * DAY)
            .unwrap()
            .deleted_segments,
        0
    );
}

#[test]
fn retention_floor_holds_back_deletion() {
    let sim = SimStorage::new();
    let mut cfg = small_segments();
    cfg.retention_bytes = 0;
    let log = write_and_reopen(&sim, &cfg, 40, |_| now_ms());
    log.set_retention_floor(Some(12));
    log.apply_retention(now_ms()).unwrap();
    // Every remaining segment before the floor's segment is gone; the floor's segment stays.
    let start = log.log_start_offset();
    assert!(start <= 12, "start {start}");
    assert!(log.segment_base_offsets().len() > 2);
    assert!(log.delete_oldest_segment().unwrap().is_none());
    log.set_retention_floor(None);
    log.apply_retention(now_ms()).unwrap();
    assert_eq!(log.segment_base_offsets().len(), 1);
}

#[test]
fn disk_budget_hook_deletes_oldest_first_never_active() {
    let sim = SimStorage::new();
    let mut cfg = small_segments();
    cfg.retention_ms = -1;
    let log = write_and_reopen(&sim, &cfg, 30, |_| now_ms());
    let n = log.segment_base_offsets().len();
    let first = log.segment_base_offsets()[0];
    let freed = log.delete_oldest_segment().unwrap().unwrap();
    assert!(freed > 0);
    assert_eq!(log.segment_base_offsets().len(), n - 1);
    assert!(log.log_start_offset() > first);
    while log.delete_oldest_segment().unwrap().is_some() {}
    assert_eq!(log.segment_base_offsets().len(), 1);
}

#[test]
fn delete_records_before_persists_log_start() {
    let sim = SimStorage::new();
    let dir = PathBuf::from("/r/t-0");
    let log = write_and_reopen(&sim, &small_segments(), 40, |_| now_ms());
    assert!(matches!(
        log.delete_records_before(41),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.delete_records_before(17).unwrap(), 17);
    assert_eq!(log.log_start_offset(), 17);
    assert!(log.segment_base_offsets()[0] <= 17);
    let all = read_all(&log);
    assert_eq!(all[0].0, 17);
    drop(log);
    sim.power_cut();
    let log = open(
        &dir,
        opts(Arc::new(sim.clone()), encrypted(1), small_segments()),
    );
    assert_eq!(log.log_start_offset(), 17);
    assert_eq!(log.delete_records_before(-1).unwrap(), 40);
}

#[test]
fn segment_ms_rolls_by_monotonic_age() {
    let sim = SimStorage::new();
    let mut cfg = config();
    cfg.segment_ms = 1;
    let log = open(
        &PathBuf::from("/r/t-2"),
        opts(Arc::new(sim), encrypted(1), cfg),
    );
    log.append(&batch(&[b"a"], 1)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3));
    log.append(&batch(&[b"b"], 2)).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 1]);
}
