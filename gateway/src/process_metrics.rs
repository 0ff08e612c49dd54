//! Process metrics under their standard names (those of the Prometheus client libraries), read
//! from `/proc/self` at scrape time: `process_resident_memory_bytes`, `process_cpu_seconds_total`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`; and
//! `rill_build_info{version,commit,cipher}` (always 1). Off Linux the `/proc` families are
//! left out rather than reported as 0.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux
/// architecture Rill is built for).
const USER_HZ: f64 = 100.0;

/// The process numbers read from `/proc`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size (bytes).
    pub resident_bytes: Option<u64>,
    /// User plus system CPU time (seconds).
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// Soft limit of open file descriptors.
    pub max_fds: Option<u64>,
    /// Start time (Unix seconds).
    pub start_time_seconds: Option<f64>,
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// (utime + stime in seconds, start time in ticks since boot) of a `/proc/<pid>/stat` line.
fn parse_stat(stat: &str) -> Option<(f64, u64)> {
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15, starttime 22.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let start: u64 = fields.get(19)?.parse().ok()?;
    Some(((utime + stime) as f64 / USER_HZ, start))
}

/// The soft "Max open files" limit of a `/proc/<pid>/limits` text.
fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `btime` (boot time, Unix seconds) of a `/proc/stat` text.
fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

impl ProcessStats {
    /// Read this process's numbers (fields that cannot be read stay `None`).
    pub fn read() -> ProcessStats {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let stat = read("/proc/self/stat").and_then(|s| parse_stat(&s));
        let btime = read("/proc/stat").and_then(|s| parse_btime(&s));
        ProcessStats {
            resident_bytes: read("/proc/self/status").and_then(|s| parse_rss(&s)),
            cpu_seconds: stat.map(|(cpu, _)| cpu),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            max_fds: read("/proc/self/limits").and_then(|s| parse_max_fds(&s)),
            start_time_seconds: match (stat, btime) {
                (Some((_, ticks)), Some(boot)) => Some(boot as f64 + ticks as f64 / USER_HZ),
                _ => None,
            },
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
    cipher: &'static str,
}

/// The git commit the binary was built from (`build.rs`), or `unknown`.
pub const GIT_COMMIT: &str = env!("RILL_GIT_COMMIT");

/// Exports the `process_*` families (register with no prefix).
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = ProcessStats::read();
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                s.max_fds.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                s.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        if let Some(cpu) = s.cpu_seconds {
            let c = ConstCounter::new(cpu);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// Exports `rill_build_info{version,commit,cipher}` (register under the `rill` prefix).
#[derive(Debug)]
pub struct BuildInfoCollector {
    /// The cipher new segments are sealed with (`aes-256-gcm`, `chacha20-poly1305` or `off`).
    pub cipher: &'static str,
}

impl Collector for BuildInfoCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let labels = BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            commit: GIT_COMMIT,
            cipher: self.cipher,
        };
        let mut f = encoder.encode_descriptor(
            "build_info",
            "Always 1; the labels say which build runs and which cipher seals new segments",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        ConstGauge::new(1).encode(f.encode_family(&labels)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_rss("Name:\trill\nVmRSS:\t   12345 kB\n"),
            Some(12345 * 1024)
        );
        let stat = "4242 (rill (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 777 1000 200";
        assert_eq!(parse_stat(stat), Some((3.0, 777)));
        assert_eq!(
            parse_max_fds(
                "Limit Soft Limit Hard Limit Units\nMax open files            1024                 524288               files\n"
            ),
            Some(1024)
        );
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn reads_this_process() {
        let s = ProcessStats::read();
        assert!(s.resident_bytes.unwrap() > 0);
        assert!(s.open_fds.unwrap() > 0);
        assert!(s.cpu_seconds.is_some());
        assert!(s.start_time_seconds.unwrap() > 1_600_000_000.0);
    }
}
