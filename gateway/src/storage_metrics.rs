//! Storage metrics: [`StorageMetrics`] is the core's [`StorageObserver`] (fsync / group-commit
//! latency and batches per commit, bytes written, retention deletions, cleaner passes), and
//! [`LogCollector`] reads every partition log at scrape time (log end / start offset, high
//! watermark, size, segment count, corrupt regions) and the node's disk budget.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use rill_core::broker::Broker;
use rill_core::storage_observer::StorageObserver;

use crate::metrics::{histogram, PartitionLabels, COUNT_BUCKETS, LATENCY_BUCKETS};

/// Counters and histograms fed by the storage engine as it works.
#[derive(Debug, Clone)]
pub struct StorageMetrics {
    flush_time: Histogram,
    flush_batches: Histogram,
    written: Counter,
    retention_segments: Counter,
    retention_bytes: Counter,
    cleaner_runs: Counter,
    cleaner_reclaimed: Counter,
}

impl Default for StorageMetrics {
    fn default() -> Self {
        StorageMetrics {
            flush_time: histogram(LATENCY_BUCKETS),
            flush_batches: histogram(COUNT_BUCKETS),
            written: Counter::default(),
            retention_segments: Counter::default(),
            retention_bytes: Counter::default(),
            cleaner_runs: Counter::default(),
            cleaner_reclaimed: Counter::default(),
        }
    }
}

impl StorageMetrics {
    /// Register the families in `r` (the `rill_` registry).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "log_flush_seconds",
            "Time of one fsync of a partition's active segment (a group commit under flush = always)",
            self.flush_time.clone(),
        );
        r.register(
            "log_flush_batches",
            "Record batches made durable by one fsync (group commit size)",
            self.flush_batches.clone(),
        );
        r.register(
            "log_written_bytes",
            "Bytes written to segment files by appends (stored size, after encryption)",
            self.written.clone(),
        );
        r.register(
            "log_retention_deleted_segments",
            "Segments deleted by retention.ms, retention.bytes or the disk budget",
            self.retention_segments.clone(),
        );
        r.register(
            "log_retention_deleted_bytes",
            "Bytes freed by retention.ms, retention.bytes or the disk budget",
            self.retention_bytes.clone(),
        );
        r.register(
            "log_cleaner_runs",
            "Log cleaner (compaction) passes over a partition of a compacted topic",
            self.cleaner_runs.clone(),
        );
        r.register(
            "log_cleaner_reclaimed_bytes",
            "Bytes the log cleaner reclaimed (segment bytes before minus after)",
            self.cleaner_reclaimed.clone(),
        );
    }
}

impl StorageObserver for StorageMetrics {
    fn flushed(&self, _topic: &str, _partition: i32, elapsed: Duration, batches: u64) {
        self.flush_time.observe(elapsed.as_secs_f64());
        self.flush_batches.observe(batches as f64);
    }

    fn written(&self, bytes: u64) {
        self.written.inc_by(bytes);
    }

    fn retention_deleted(&self, segments: u64, bytes: u64) {
        self.retention_segments.inc_by(segments);
        self.retention_bytes.inc_by(bytes);
    }

    fn cleaned(&self, bytes_reclaimed: u64) {
        self.cleaner_runs.inc();
        self.cleaner_reclaimed.inc_by(bytes_reclaimed);
    }
}

/// Reads every partition log and the disk budget at scrape time.
#[derive(Debug)]
pub struct LogCollector(pub Arc<Broker>);

/// One partition's numbers, read once per scrape.
struct LogRow {
    labels: PartitionLabels,
    log_end: i64,
    log_start: i64,
    high_watermark: i64,
    size: u64,
    segments: usize,
    corrupt: usize,
}

fn gauge_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[LogRow],
    value: impl Fn(&LogRow) -> i64,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for row in rows {
        ConstGauge::new(value(row)).encode(family.encode_family(&row.labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for LogCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows: Vec<LogRow> = self
            .0
            .all_logs()
            .into_iter()
            .map(|(topic, partition, log)| LogRow {
                labels: PartitionLabels { topic, partition },
                log_end: log.log_end_offset(),
                log_start: log.log_start_offset(),
                high_watermark: log.high_watermark(),
                size: log.size_bytes(),
                segments: log.segment_count(),
                corrupt: log.corruption().len(),
            })
            .collect();
        let e = &mut encoder;
        gauge_family(
            e,
            "log_end_offset",
            "Offset after the last record appended to the partition",
            &rows,
            |r| r.log_end,
        )?;
        gauge_family(
            e,
            "log_start_offset",
            "First offset still held by the partition (retention and DeleteRecords move it)",
            &rows,
            |r| r.log_start,
        )?;
        gauge_family(
            e,
            "log_high_watermark",
            "Offset below which records are durable and visible to consumers",
            &rows,
            |r| r.high_watermark,
        )?;
        gauge_family(
            e,
            "log_size_bytes",
            "Bytes on disk of the partition's segments",
            &rows,
            |r| i64::try_from(r.size).unwrap_or(i64::MAX),
        )?;
        gauge_family(
            e,
            "log_segments",
            "Segments of the partition (closed and active)",
            &rows,
            |r| r.segments as i64,
        )?;
        let used: u64 = rows.iter().map(|r| r.size).sum();
        let corrupt: usize = rows.iter().map(|r| r.corrupt).sum();
        gauge(
            e,
            "log_corrupt_regions",
            "Regions of segment files that failed verification (not served; alert when above 0)",
            corrupt as i64,
        )?;
        gauge(
            e,
            "disk_used_bytes",
            "Bytes on disk of every partition log (what the disk budget counts)",
            i64::try_from(used).unwrap_or(i64::MAX),
        )?;
        if let Some(budget) = self.0.config().disk_budget_bytes {
            gauge(
                e,
                "disk_budget_bytes",
                "The node's disk budget ([storage] disk_budget_bytes)",
                i64::try_from(budget).unwrap_or(i64::MAX),
            )?;
            gauge(
                e,
                "disk_budget_free_bytes",
                "Disk budget not used by partition logs (0 when at or over the budget)",
                i64::try_from(budget.saturating_sub(used)).unwrap_or(i64::MAX),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_core::broker::{BrokerConfig, KeySource};

    #[test]
    fn observer_and_partition_families() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = StorageMetrics::default();
        let mut cfg = BrokerConfig::new(tmp.path().join("data"), KeySource::Env("44".repeat(32)));
        cfg.observer = Arc::new(storage.clone());
        cfg.disk_budget_bytes = Some(1 << 30);
        let broker = Broker::open(cfg).unwrap();
        broker
            .create_topic("orders", 2, &Default::default(), false)
            .unwrap();
        let log = broker.partition("orders", 1).unwrap();
        let mut b = rill_core::batch::BatchBuilder::new();
        b.push(None, Some(bytes::Bytes::from_static(b"v")), 1);
        let info = log.append(&b.build().unwrap()).unwrap();
        log.flush_to(info.last_offset).unwrap();
        let mut registry = Registry::with_prefix("rill");
        storage.register(&mut registry);
        registry.register_collector(Box::new(LogCollector(broker.clone())));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "rill_log_end_offset{topic=\"orders\",partition=\"1\"} 1",
            "rill_log_end_offset{topic=\"orders\",partition=\"0\"} 0",
            "rill_log_segments{topic=\"orders\",partition=\"1\"} 1",
            "rill_log_flush_batches_bucket{le=\"1.0\"} 1",
            "rill_log_corrupt_regions 0",
            "rill_disk_budget_bytes 1073741824",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        assert!(!text.contains("rill_log_written_bytes_total 0\n"), "{text}");
        broker.shutdown().unwrap();
    }
}
