//! Crash test: a child process (this test binary re-executed with an environment variable)
//! appends under load with the `Always` flush policy and prints every acknowledged record; it is
//! SIGKILLed at random moments, several times. After each kill the log is reopened (recovery runs)
//! and every acknowledged record must be present and readable, and every batch served must verify.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rill_core::io::OsStorage;

const CHILD_DIR: &str = "RILL_CRASH_CHILD_DIR";
const CHILD_ROUND: &str = "RILL_CRASH_CHILD_ROUND";

fn crash_config() -> rill_core::topic_config::TopicConfig {
    let mut c = config();
    c.segment_bytes = 64 * 1024; // rolls happen during the run too
    c.index_interval_bytes = 1024;
    c
}

/// The child: does nothing in a normal test run.
#[test]
fn crash_child_appender() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let round = std::env::var(CHILD_ROUND).unwrap_or_default();
    let log = Arc::new(open(
        &PathBuf::from(dir),
        opts(Arc::new(OsStorage), encrypted(6), crash_config()),
    ));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            let round = round.clone();
            std::thread::spawn(move || {
                for seq in 0u64.. {
                    let n = (seq % 3 + 1) as usize;
                    let vals: Vec<Vec<u8>> = (0..n)
                        .map(|j| {
                            format!(
                                "r{round}-t{t}-s{seq}-{j}-{}",
                                "d".repeat(seq as usize % 300)
                            )
                            .into_bytes()
                        })
                        .collect();
                    let ts: Vec<i64> = (0..n as i64).map(|j| seq as i64 + j).collect();
                    let info = log.append(&batch_with_ts(&vals, &ts)).unwrap();
                    log.flush_to(info.last_offset).unwrap();
                    let mut line = String::new();
                    for (j, v) in vals.iter().enumerate() {
                        line.push_str(&format!(
                            "ACK {} {}\n",
                            info.base_offset + j as i64,
                            String::from_utf8_lossy(v)
                        ));
                    }
                    print!("{line}");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("crash-0");
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut rng = Rng(started.elapsed().as_nanos() as u64 | 1 ^ std::process::id() as u64);
    let mut acked: Vec<(i64, String)> = Vec::new();
    let mut rounds = 0;
    while rounds < 8 && started.elapsed() < Duration::from_secs(12) {
        rounds += 1;
        let mut child = Command::new(&exe)
            .args([
                "crash_child_appender",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, &dir)
            .env(CHILD_ROUND, rounds.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("ACK ") && tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the first acknowledgements, then kill at a random moment.
        let first = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("child acknowledges");
        let mut lines = vec![first];
        let kill_after = Duration::from_millis(rng.below(250));
        let t0 = Instant::now();
        while t0.elapsed() < kill_after {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(5)) {
                lines.push(l);
            }
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        for l in lines {
            let mut parts = l.splitn(3, ' ');
            let _ = parts.next();
            let off: i64 = parts.next().unwrap().parse().unwrap();
            acked.push((off, parts.next().unwrap().to_string()));
        }
        // Recover and verify everything acknowledged so far, across all rounds.
        let log = open(
            &dir,
            opts(Arc::new(OsStorage), encrypted(6), crash_config()),
        );
        assert!(log.corruption().is_empty(), "{:?}", log.corruption());
        let all = read_all(&log);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.0, i as i64, "offsets contiguous");
        }
        for (off, val) in &acked {
            let got = all
                .get(*off as usize)
                .map(|r| String::from_utf8_lossy(&r.2).to_string());
            assert_eq!(
                got.as_deref(),
                Some(val.as_str()),
                "round {rounds}: acked offset {off}"
            );
        }
        drop(log);
    }
    eprintln!(
        "crash test: {rounds} kills, {} acknowledged records verified",
        acked.len()
    );
    assert!(rounds >= 3, "only {rounds} rounds");
    assert!(acked.len() >= 20, "only {} acknowledgements", acked.len());
}
