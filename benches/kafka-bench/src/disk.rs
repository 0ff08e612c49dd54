//! The disk's durable write bandwidth, measured the way the benchmark targets are stated:
//! `dd if=/dev/zero of=F bs=1M count=N conv=fdatasync` in a given directory.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};

/// Write `mib` MiB of zeros to a file in `dir` with `dd ... conv=fdatasync` and return the
/// bandwidth in MB/s (10^6 bytes per second), timed around the whole `dd` run. The file is removed.
pub fn dd_fdatasync_mb_per_s(dir: &Path, mib: u64) -> anyhow::Result<f64> {
    let file = dir.join("rill-bench-dd.tmp");
    let start = Instant::now();
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .arg("bs=1M")
        .arg(format!("count={mib}"))
        .arg("conv=fdatasync")
        .output()
        .context("running dd")?;
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        bail!("dd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((mib * 1024 * 1024) as f64 / secs / 1e6)
}
