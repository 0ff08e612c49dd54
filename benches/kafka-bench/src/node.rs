//! A real `rill serve` process on free loopback ports, for the benchmarks.
//!
//! The node is started with `--kafka-listen 127.0.0.1:0` (and the same for HTTP and MQTT); the
//! addresses it bound are read from its `listening kafka=ADDR http=ADDR mqtt=ADDR ...` log line on
//! stderr. Its whole stderr is copied to `node.log` next to the data directory.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

/// A running node; SIGTERM then SIGKILL on drop.
pub struct RillNode {
    child: Child,
    /// The Kafka listener address it bound.
    pub kafka: String,
    /// The MQTT listener address it bound.
    pub mqtt: String,
    /// The admin HTTP listener address it bound (`/metrics`).
    pub http: String,
    /// Its data directory.
    pub data_dir: PathBuf,
}

/// The value of `key=VALUE` in a log line (values end at whitespace).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|tok| tok.strip_prefix(key)?.strip_prefix('='))
}

/// The release `rill` binary of the repository this crate lives in: `$CARGO_TARGET_DIR/release/rill`
/// when that variable is set, else `<repo>/target/release/rill`.
pub fn default_rill_bin() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t).join("release/rill"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/rill"),
    }
}

impl RillNode {
    /// Start `bin serve` with its data in `dir/data` and its key in `dir/k.key`, and wait (at most
    /// 60 s) for its listening line. `extra` are further `serve` arguments.
    pub fn start(bin: &Path, dir: &Path, extra: &[&str]) -> anyhow::Result<RillNode> {
        let data_dir = dir.join("data");
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--kafka-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(["--mqtt-listen", "127.0.0.1:0"])
            .arg("--key-file")
            .arg(dir.join("k.key"))
            .args(extra)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe"))?;
        let mut log = std::fs::File::create(dir.join("node.log")).context("creating node.log")?;
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if line.contains("listening") && field(&line, "kafka").is_some() {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                bail!(
                    "the node did not log its listening line within 60 s; see {}",
                    dir.join("node.log").display()
                );
            }
        };
        let kafka = field(&line, "kafka").unwrap_or_default().to_string();
        let mqtt = field(&line, "mqtt").unwrap_or_default().to_string();
        let http = field(&line, "http").unwrap_or_default().to_string();
        Ok(RillNode {
            child,
            kafka,
            mqtt,
            http,
            data_dir,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system, seconds) the node used so far, from `/proc/<pid>/stat`.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        // USER_HZ is 100 on Linux.
        Some(ticks as f64 / 100.0)
    }
}

impl Drop for RillNode {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_the_listening_line() {
        let line = "2026-11-25T22:00:00Z  INFO rill_gateway::serve: listening kafka=127.0.0.1:40001 http=127.0.0.1:40002 mqtt=127.0.0.1:40003 node_id=0";
        assert_eq!(field(line, "kafka"), Some("127.0.0.1:40001"));
        assert_eq!(field(line, "mqtt"), Some("127.0.0.1:40003"));
        assert_eq!(field(line, "kafka_tls"), None);
    }
}
