//! The console's in-memory history: one [`Sample`] every [`INTERVAL`] kept for [`CAPACITY`]
//! samples (1 h at 10 s), for the throughput sparkline, the lag-over-time plot of every group and
//! the bridge's lag plot. Nothing is stored on disk: a restart starts an empty history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use rill_core::sync::LockExt;
use serde::Serialize;

/// Time between two samples.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Samples kept: one hour at [`INTERVAL`].
pub const CAPACITY: usize = 360;

/// What the node looked like at one moment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    /// Wall-clock time of the sample (Unix ms).
    pub at_ms: i64,
    /// Sum of the log end offsets of every non-internal partition.
    pub log_end_total: i64,
    /// Records appended per second since the previous sample (0 for the first).
    pub records_per_second: f64,
    /// Lag in records of every group with committed offsets (summed over its partitions).
    pub group_lag: BTreeMap<String, i64>,
    /// Records not yet mirrored, summed over every bridge partition.
    pub bridge_lag: i64,
}

/// The ring of samples.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    /// Add a sample (its `records_per_second` is computed here from the previous one), dropping
    /// the oldest beyond [`CAPACITY`].
    pub fn push(&self, mut sample: Sample) {
        let mut samples = self.samples.lock_unpoisoned();
        if let Some(prev) = samples.back() {
            let secs = (sample.at_ms - prev.at_ms) as f64 / 1000.0;
            if secs > 0.0 {
                sample.records_per_second =
                    (sample.log_end_total - prev.log_end_total).max(0) as f64 / secs;
            }
        }
        samples.push_back(sample);
        while samples.len() > CAPACITY {
            samples.pop_front();
        }
    }

    /// Every sample, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock_unpoisoned().iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, log_end_total: i64) -> Sample {
        Sample {
            at_ms,
            log_end_total,
            records_per_second: 0.0,
            group_lag: BTreeMap::new(),
            bridge_lag: 0,
        }
    }

    #[test]
    fn rate_from_the_previous_sample_and_bounded_length() {
        let h = History::default();
        h.push(sample(0, 100));
        h.push(sample(10_000, 600));
        let s = h.samples();
        assert_eq!(s[0].records_per_second, 0.0);
        assert_eq!(s[1].records_per_second, 50.0);
        for i in 2..(CAPACITY as i64 + 10) {
            h.push(sample(i * 10_000, 600));
        }
        let s = h.samples();
        assert_eq!(s.len(), CAPACITY);
        assert_eq!(s[0].at_ms, 10 * 10_000, "the oldest samples were dropped");
    }
}
