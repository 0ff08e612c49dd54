//! Log engine benchmark (not a test): prints a table of append and read throughput and, in the same
//! run, the disk's own `dd ... conv=fdatasync` bandwidth.
//!
//! Run: `cargo bench -p rill-core --bench log_bench` (release). Environment:
//! - `RILL_BENCH_DIR`: directory on the disk to measure (default: `./target/rill-bench`),
//! - `RILL_BENCH_SECS`: seconds per append case (default 2),
//! - `RILL_BENCH_DD_MB`: size of the dd run in MiB (default 1024).
//!
//! Cases: record size 100 B and 1 KiB; batches of 1 record and of 64 KiB; encryption on (the
//! CPU's automatic cipher) and off; `Always` with one producer (an fsync per append), `Always`
//! with 8 concurrent producers (group commit), the same with 4 appends in flight per producer
//! (as a Kafka producer with `max.in.flight.requests.per.connection` > 1), and `Interval`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_core::batch::BatchBuilder;
use rill_core::crypto::{CipherKind, Encryption, MasterKey};
use rill_core::io::OsStorage;
use rill_core::log::{FlushPolicy, LogOptions, PartitionLog};
use rill_core::topic_config::TopicConfig;
use uuid::Uuid;

fn make_batch(record_size: usize, records: usize) -> Vec<u8> {
    let value = Bytes::from(vec![0x42u8; record_size]);
    let mut b = BatchBuilder::new();
    for i in 0..records {
        b.push(None, Some(value.clone()), 1_764_000_000_000 + i as i64);
    }
    b.build().expect("encode").to_vec()
}

fn options(encrypt: bool, flush: FlushPolicy) -> LogOptions {
    let config = TopicConfig {
        max_message_bytes: 8 << 20,
        ..TopicConfig::default()
    };
    LogOptions {
        topic_id: Uuid::from_u128(7),
        topic: "bench".into(),
        partition: 0,
        config,
        flush,
        encryption: if encrypt {
            Encryption::On {
                cipher: CipherKind::auto(),
                master: Arc::new(MasterKey::from_bytes([1u8; 32])),
            }
        } else {
            Encryption::Off
        },
        storage: Arc::new(OsStorage),
        observer: rill_core::storage_observer::none(),
    }
}

struct Row {
    case: String,
    records_per_s: f64,
    mb_per_s: f64,
}

fn append_case(
    dir: &Path,
    record_size: usize,
    batch_records: usize,
    encrypt: bool,
    mode: &str,
    secs: f64,
) -> Row {
    let _ = std::fs::remove_dir_all(dir);
    let (flush, threads, in_flight) = match mode {
        "fsync/append" => (FlushPolicy::Always, 1, 1),
        "group commit 8 producers" => (FlushPolicy::Always, 8, 1),
        "group commit 8 producers x 4 in flight" => (FlushPolicy::Always, 8, 4),
        _ => (FlushPolicy::Interval { ms: 1000 }, 1, 1),
    };
    let log =
        Arc::new(PartitionLog::open(dir.to_path_buf(), options(encrypt, flush)).expect("open"));
    log.set_cache_capacity(0);
    let batch = Arc::new(make_batch(record_size, batch_records));
    let records = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (log, batch, records, stop) =
                (log.clone(), batch.clone(), records.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Like a producer with `in_flight` outstanding requests: append them, then
                    // wait for the last one to be durable.
                    let mut last = 0;
                    let mut n = 0u64;
                    for _ in 0..in_flight {
                        let info = log.append(&batch).expect("append");
                        last = info.last_offset;
                        n += info.record_count as u64;
                    }
                    log.flush_to(last).expect("flush");
                    records.fetch_add(n, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("producer");
    }
    log.flush().expect("flush");
    let elapsed = start.elapsed().as_secs_f64();
    let n = records.load(Ordering::Relaxed) as f64;
    let row = Row {
        case: format!(
            "append {} B records, {} batch, enc {}, {}",
            record_size,
            if batch_records == 1 {
                "1-rec".to_string()
            } else {
                format!("{}KiB", batch.len() / 1024)
            },
            if encrypt { "on" } else { "off" },
            mode
        ),
        records_per_s: n / elapsed,
        mb_per_s: n * record_size as f64 / elapsed / 1e6,
    };
    drop(log);
    let _ = std::fs::remove_dir_all(dir);
    row
}

fn read_case(dir: &Path, encrypt: bool, total_mb: usize) -> Row {
    let _ = std::fs::remove_dir_all(dir);
    let log = PartitionLog::open(
        dir.to_path_buf(),
        options(encrypt, FlushPolicy::Interval { ms: 1000 }),
    )
    .expect("open");
    log.set_cache_capacity(0);
    let batch = make_batch(1024, 60);
    let batches = total_mb * 1024 * 1024 / batch.len();
    for _ in 0..batches {
        log.append(&batch).expect("append");
    }
    log.flush().expect("flush");
    let start = Instant::now();
    let mut next = 0;
    let mut bytes = 0usize;
    while next < log.high_watermark() {
        let rr = log.read(next, 1 << 20).expect("read");
        bytes += rr.records.len();
        // Advance past the last batch returned.
        let mut pos = 0;
        while pos < rr.records.len() {
            let h = rill_core::batch::BatchHeader::parse(&rr.records[pos..]).expect("header");
            next = h.last_offset() + 1;
            pos += h.total_len();
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let row = Row {
        case: format!(
            "read 1 KiB records, 1 MiB fetches, enc {:<3} (page cache warm)",
            if encrypt { "on" } else { "off" }
        ),
        records_per_s: next as f64 / elapsed,
        mb_per_s: bytes as f64 / elapsed / 1e6,
    };
    drop(log);
    let _ = std::fs::remove_dir_all(dir);
    row
}

/// CPU-only sealing speed of a cipher on 64 KiB buffers (context for the encryption rows).
fn cipher_case(kind: CipherKind) -> Row {
    let key = rill_core::crypto::DataKey::new(kind, &[9u8; 32]);
    let input = vec![0x5au8; 64 * 1024];
    let mut output = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(500) {
        key.seal_to(n, b"aad", &input, &mut output).expect("seal");
        n += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Row {
        case: format!("{} seal, 64 KiB buffers, CPU only", kind.name()),
        records_per_s: 0.0,
        mb_per_s: n as f64 * input.len() as f64 / elapsed / 1e6,
    }
}

fn dd(dir: &Path, mb: usize) -> Option<f64> {
    let f = dir.join("dd.bin");
    let start = Instant::now();
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", f.display()))
        .arg("bs=1M")
        .arg(format!("count={mb}"))
        .arg("conv=fdatasync")
        .output()
        .ok()?;
    let elapsed = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&f);
    if !out.status.success() {
        return None;
    }
    eprintln!(
        "dd: {}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("")
    );
    Some(mb as f64 * 1024.0 * 1024.0 / elapsed / 1e6)
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let base = std::env::var("RILL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/rill-bench"));
    let secs: f64 = std::env::var("RILL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let dd_mb: usize = std::env::var("RILL_BENCH_DD_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    std::fs::create_dir_all(&base).expect("bench dir");
    let dir = base.join("bench-0");
    println!(
        "cipher (auto): {}, dir: {}, {secs} s per append case",
        CipherKind::auto().name(),
        base.display()
    );
    let mut rows = Vec::new();
    if let Some(bw) = dd(&base, dd_mb) {
        rows.push(Row {
            case: format!("dd bs=1M count={dd_mb} conv=fdatasync"),
            records_per_s: 0.0,
            mb_per_s: bw,
        });
    }
    rows.push(cipher_case(CipherKind::Aes256Gcm));
    rows.push(cipher_case(CipherKind::ChaCha20Poly1305));
    for &record_size in &[100usize, 1024] {
        for &batch_kib in &[0usize, 64] {
            let batch_records = if batch_kib == 0 {
                1
            } else {
                // Records of this size that fill ~64 KiB (record overhead ~ 10 bytes).
                (64 * 1024 - 61) / (record_size + 10)
            };
            for &encrypt in &[true, false] {
                for mode in [
                    "fsync/append",
                    "group commit 8 producers",
                    "group commit 8 producers x 4 in flight",
                    "interval",
                ] {
                    let row = append_case(&dir, record_size, batch_records, encrypt, mode, secs);
                    eprintln!(
                        "{:<70} {:>12.0} rec/s {:>9.1} MB/s",
                        row.case, row.records_per_s, row.mb_per_s
                    );
                    rows.push(row);
                }
            }
        }
    }
    for &encrypt in &[true, false] {
        rows.push(read_case(&dir, encrypt, 256));
    }
    println!();
    println!("| case | records/s | MB/s (payload) |");
    println!("|---|---:|---:|");
    for r in rows {
        let rps = if r.records_per_s > 0.0 {
            format!("{:.0}", r.records_per_s)
        } else {
            "-".into()
        };
        println!("| {} | {} | {:.1} |", r.case, rps, r.mb_per_s);
    }
}
