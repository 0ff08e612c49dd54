//! The node's Prometheus metrics (served by [`crate::admin_http`] at `/metrics`): one registry,
//! Prometheus naming and units (`_seconds`, `_bytes`, `_total`).
//!
//! This module holds the registry, the `[metrics]` settings, the Kafka request metrics (counted in
//! one place, [`crate::kafka::connection`], with error codes read off every response by
//! [`crate::kafka::response_errors`]) and the per-topic produce / fetch throughput. Families
//! computed at scrape time live next to what they read: [`crate::storage_metrics`] (fsyncs,
//! partitions, disk), [`crate::group_metrics`] (consumer lag), [`crate::process_metrics`]
//! (process and build info), [`crate::mqtt::metrics`] and [`crate::bridge_metrics`].
//! `docs/metrics.md` lists every family.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rill_core::broker::Broker;
use serde::Deserialize;

/// Latency buckets (seconds), shared by every `_seconds` histogram: 100 µs (a page-cache fsync on
/// NVMe, a Metadata answer) up to 30 s (a Fetch long poll or an SD-card fsync stall), roughly
/// 2.5x apart, so both an edge board and a central server land in the middle of the range.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Size buckets (bytes) of request and response histograms: 64 B (a heartbeat) to 64 MiB (a
/// large Fetch), powers of four.
pub const SIZE_BUCKETS: &[f64] = &[
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// Count buckets (batches per group commit): powers of two up to 1024.
pub const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// A histogram with `buckets`.
pub fn histogram(buckets: &'static [f64]) -> Histogram {
    Histogram::new(buckets.iter().copied())
}

fn latency_histogram() -> Histogram {
    histogram(LATENCY_BUCKETS)
}

fn size_histogram() -> Histogram {
    histogram(SIZE_BUCKETS)
}

/// The `[metrics]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Record and serve metrics (default true). With false nothing is counted and `/metrics`
    /// answers 404; the cost benchmark compares the two.
    pub enabled: bool,
    /// Also export produce / fetch throughput and consumer lag per partition (default false, so
    /// a central node with many partitions keeps its series count bounded; per-partition log
    /// offsets and sizes are always exported).
    pub per_partition: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            per_partition: false,
        }
    }
}

/// Label of a per-API counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    /// API name, e.g. `Produce`.
    pub api: &'static str,
}

/// Label of a per-error-code counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// Kafka error code.
    pub code: i16,
}

/// Label of an authorization denial counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabel {
    /// Kafka's operation name, e.g. `WRITE`.
    pub operation: &'static str,
    /// Kafka's resource type name, e.g. `TOPIC`.
    pub resource_type: &'static str,
}

/// Labels of an error returned by an API.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiCodeLabels {
    /// API name.
    pub api: &'static str,
    /// Kafka error code (never 0).
    pub code: i16,
}

/// Label of a per-topic series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    /// Topic name.
    pub topic: String,
}

/// Labels of a per-partition series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Where the time of one Kafka request went (Kafka's RequestMetrics split).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestTimes {
    /// Frame read off the socket until its handler starts (decoding, the SASL check).
    pub queue: Duration,
    /// The handler's own work (appends, reads, group changes).
    pub local: Duration,
    /// Waiting on something else: the flush (group commit) of a Produce, a Fetch long poll, a
    /// JoinGroup rebalance (replicas, once the cluster lands).
    pub remote: Duration,
    /// Frame read until the response is written to the socket (includes waiting behind earlier
    /// responses of the same connection, which are written in request order).
    pub total: Duration,
}

/// Per-topic (and optionally per-partition) throughput counters.
struct Throughput {
    bytes: Family<TopicLabel, Counter>,
    records: Family<TopicLabel, Counter>,
    partition_bytes: Family<PartitionLabels, Counter>,
    partition_records: Family<PartitionLabels, Counter>,
}

impl Throughput {
    fn new() -> Throughput {
        Throughput {
            bytes: Family::default(),
            records: Family::default(),
            partition_bytes: Family::default(),
            partition_records: Family::default(),
        }
    }

    fn register(&self, r: &mut Registry, what: &str, verb: &str) {
        r.register(
            format!("topic_{what}_bytes"),
            format!("Record batch bytes {verb}, by topic"),
            self.bytes.clone(),
        );
        r.register(
            format!("topic_{what}_records"),
            format!("Records {verb}, by topic"),
            self.records.clone(),
        );
    }

    fn register_partitions(&self, r: &mut Registry, what: &str, verb: &str) {
        r.register(
            format!("partition_{what}_bytes"),
            format!("Record batch bytes {verb}, by partition ([metrics] per_partition)"),
            self.partition_bytes.clone(),
        );
        r.register(
            format!("partition_{what}_records"),
            format!("Records {verb}, by partition ([metrics] per_partition)"),
            self.partition_records.clone(),
        );
    }

    fn add(&self, per_partition: bool, topic: &str, partition: i32, bytes: u64, records: u64) {
        let t = TopicLabel {
            topic: topic.to_string(),
        };
        self.bytes.get_or_create(&t).inc_by(bytes);
        self.records.get_or_create(&t).inc_by(records);
        if per_partition {
            let p = PartitionLabels {
                topic: t.topic,
                partition,
            };
            self.partition_bytes.get_or_create(&p).inc_by(bytes);
            self.partition_records.get_or_create(&p).inc_by(records);
        }
    }
}

/// Counters, gauges and histograms of one node.
pub struct Metrics {
    config: MetricsConfig,
    registry: Registry,
    requests: Family<ApiLabel, Counter>,
    errors: Family<CodeLabel, Counter>,
    request_errors: Family<ApiCodeLabels, Counter>,
    queue_time: HistogramFamily<ApiLabel>,
    local_time: HistogramFamily<ApiLabel>,
    remote_time: HistogramFamily<ApiLabel>,
    total_time: HistogramFamily<ApiLabel>,
    request_size: HistogramFamily<ApiLabel>,
    response_size: HistogramFamily<ApiLabel>,
    protocol_errors: Counter,
    produce_bytes: Counter,
    produce_records: Counter,
    fetch_bytes: Counter,
    fetch_records: Counter,
    produced: Throughput,
    fetched: Throughput,
    connections: Counter,
    open_connections: Gauge,
    authorization_denials: Family<DenialLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(&MetricsConfig::default())
    }
}

impl Metrics {
    /// A fresh registry with every metric registered, under `config`.
    pub fn new(config: &MetricsConfig) -> Metrics {
        let mut registry = Registry::default();
        let latency = || HistogramFamily::<ApiLabel>::new_with_constructor(latency_histogram);
        let size = || HistogramFamily::<ApiLabel>::new_with_constructor(size_histogram);
        let m = Metrics {
            config: config.clone(),
            registry: Registry::default(),
            requests: Family::default(),
            errors: Family::default(),
            request_errors: Family::default(),
            queue_time: latency(),
            local_time: latency(),
            remote_time: latency(),
            total_time: latency(),
            request_size: size(),
            response_size: size(),
            protocol_errors: Counter::default(),
            produce_bytes: Counter::default(),
            produce_records: Counter::default(),
            fetch_bytes: Counter::default(),
            fetch_records: Counter::default(),
            produced: Throughput::new(),
            fetched: Throughput::new(),
            connections: Counter::default(),
            open_connections: Gauge::default(),
            authorization_denials: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("rill");
        r.register(
            "kafka_authorization_denials",
            "Kafka actions the authorizer denied, by operation and resource type",
            m.authorization_denials.clone(),
        );
        r.register(
            "kafka_requests",
            "Kafka requests handled, by API",
            m.requests.clone(),
        );
        r.register(
            "kafka_errors",
            "Kafka error codes returned (every non-zero code in every response), by code",
            m.errors.clone(),
        );
        r.register(
            "kafka_request_errors",
            "Kafka error codes returned (every non-zero code in every response), by API and code",
            m.request_errors.clone(),
        );
        r.register(
            "kafka_request_queue_time_seconds",
            "Time from a request's frame being read until its handler starts, by API",
            m.queue_time.clone(),
        );
        r.register(
            "kafka_request_local_time_seconds",
            "Time a request's handler worked on it, by API",
            m.local_time.clone(),
        );
        r.register(
            "kafka_request_remote_time_seconds",
            "Time a request waited on flushes (group commit), long polls or rebalances, by API",
            m.remote_time.clone(),
        );
        r.register(
            "kafka_request_total_time_seconds",
            "Time from a request's frame being read until its response is written, by API",
            m.total_time.clone(),
        );
        r.register(
            "kafka_request_size_bytes",
            "Size of request frames, by API",
            m.request_size.clone(),
        );
        r.register(
            "kafka_response_size_bytes",
            "Size of response frames, by API",
            m.response_size.clone(),
        );
        r.register(
            "kafka_protocol_errors",
            "Connections closed for malformed, oversized or unsupported requests",
            m.protocol_errors.clone(),
        );
        r.register(
            "produce_bytes",
            "Record batch bytes appended by Produce",
            m.produce_bytes.clone(),
        );
        r.register(
            "produce_records",
            "Records appended by Produce",
            m.produce_records.clone(),
        );
        r.register(
            "fetch_bytes",
            "Record batch bytes returned by Fetch",
            m.fetch_bytes.clone(),
        );
        r.register(
            "fetch_records",
            "Records returned by Fetch",
            m.fetch_records.clone(),
        );
        m.produced.register(r, "produce", "appended by Produce");
        m.fetched.register(r, "fetch", "returned by Fetch");
        if config.per_partition {
            m.produced
                .register_partitions(r, "produce", "appended by Produce");
            m.fetched
                .register_partitions(r, "fetch", "returned by Fetch");
        }
        r.register(
            "kafka_connections",
            "Kafka connections accepted",
            m.connections.clone(),
        );
        r.register(
            "kafka_open_connections",
            "Kafka connections open now",
            m.open_connections.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The `[metrics]` settings in force.
    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    /// Whether metrics are recorded at all (`[metrics] enabled`).
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Count one request of `api`.
    pub fn request(&self, api: &'static str) {
        if self.enabled() {
            self.requests.get_or_create(&ApiLabel { api }).inc();
        }
    }

    /// Record the error codes of one response of `api` (zeros are skipped).
    pub fn response_errors(&self, api: &'static str, codes: &[i16]) {
        if !self.enabled() {
            return;
        }
        for &code in codes.iter().filter(|c| **c != 0) {
            self.errors.get_or_create(&CodeLabel { code }).inc();
            self.request_errors
                .get_or_create(&ApiCodeLabels { api, code })
                .inc();
        }
    }

    /// Record where the time of one request of `api` went and its frame sizes.
    pub fn request_done(
        &self,
        api: &'static str,
        times: RequestTimes,
        request_bytes: usize,
        response_bytes: Option<usize>,
    ) {
        if !self.enabled() {
            return;
        }
        let l = ApiLabel { api };
        self.queue_time
            .get_or_create(&l)
            .observe(times.queue.as_secs_f64());
        self.local_time
            .get_or_create(&l)
            .observe(times.local.as_secs_f64());
        self.remote_time
            .get_or_create(&l)
            .observe(times.remote.as_secs_f64());
        self.total_time
            .get_or_create(&l)
            .observe(times.total.as_secs_f64());
        self.request_size
            .get_or_create(&l)
            .observe(request_bytes as f64);
        if let Some(n) = response_bytes {
            self.response_size.get_or_create(&l).observe(n as f64);
        }
    }

    /// Count one authorization denial.
    pub fn authorization_denied(&self, operation: &'static str, resource_type: &'static str) {
        self.authorization_denials
            .get_or_create(&DenialLabel {
                operation,
                resource_type,
            })
            .inc();
    }

    /// Count a connection closed for a protocol violation.
    pub fn protocol_error(&self) {
        if self.enabled() {
            self.protocol_errors.inc();
        }
    }

    /// Count bytes and records appended to `topic`/`partition` by Produce.
    pub fn produced(&self, topic: &str, partition: i32, bytes: u64, records: u64) {
        if !self.enabled() {
            return;
        }
        self.produce_bytes.inc_by(bytes);
        self.produce_records.inc_by(records);
        self.produced
            .add(self.config.per_partition, topic, partition, bytes, records);
    }

    /// Count bytes and records of `topic`/`partition` returned by Fetch.
    pub fn fetched(&self, topic: &str, partition: i32, bytes: u64, records: u64) {
        if !self.enabled() {
            return;
        }
        self.fetch_bytes.inc_by(bytes);
        self.fetch_records.inc_by(records);
        self.fetched
            .add(self.config.per_partition, topic, partition, bytes, records);
    }

    /// A connection opened.
    pub fn connection_opened(&self) {
        if self.enabled() {
            self.connections.inc();
            self.open_connections.inc();
        }
    }

    /// A connection closed.
    pub fn connection_closed(&self) {
        if self.enabled() {
            self.open_connections.dec();
        }
    }

    /// The registry for families named `rill_*` (a sub-registry with that prefix).
    pub fn rill_registry(&mut self) -> &mut Registry {
        self.registry.sub_registry_with_prefix("rill")
    }

    /// Add a collector computed at each scrape whose families are named `rill_*` (e.g. the
    /// bridge's lag).
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.rill_registry().register_collector(collector);
    }

    /// Add a collector whose families carry their own full names (the standard `process_*`).
    pub fn register_unprefixed_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// Export the broker's backlog policy state (`rill_core::backlog`, which has no Prometheus
    /// dependency) at every scrape: `rill_bridge_backlog_dropped_records_total` and
    /// `rill_bridge_backlog_paused`.
    pub fn export_backlog(&mut self, broker: Arc<Broker>) {
        self.register_collector(Box::new(BacklogCollector(broker)));
    }

    /// Prometheus text exposition (OpenMetrics), or `None` when metrics are disabled.
    pub fn encode(&self) -> Option<String> {
        if !self.enabled() {
            return None;
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        Some(out)
    }
}

/// Reads the backlog counters from the broker on each scrape.
#[derive(Debug)]
struct BacklogCollector(Arc<Broker>);

impl Collector for BacklogCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let backlog = self.0.backlog();
        let dropped = ConstCounter::new(backlog.dropped_records());
        dropped.encode(encoder.encode_descriptor(
            "bridge_backlog_dropped_records",
            "Unmirrored records deleted by backlog_policy = drop_oldest",
            None,
            dropped.metric_type(),
        )?)?;
        let pressure = backlog.pressure();
        let paused = ConstGauge::new(i64::from(pressure.any()));
        paused.encode(encoder.encode_descriptor(
            "bridge_backlog_paused",
            "1 while producers are held back by backlog_policy = pause",
            None,
            paused.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_counters() {
        let m = Metrics::default();
        m.request("Produce");
        m.produced("orders", 0, 100, 3);
        m.response_errors("Produce", &[0, 3, 0]);
        m.connection_opened();
        m.request_done(
            "Produce",
            RequestTimes {
                remote: Duration::from_millis(3),
                ..RequestTimes::default()
            },
            120,
            Some(60),
        );
        let text = m.encode().unwrap();
        for line in [
            "rill_kafka_requests_total{api=\"Produce\"} 1",
            "rill_produce_records_total 3",
            "rill_topic_produce_records_total{topic=\"orders\"} 3",
            "rill_topic_produce_bytes_total{topic=\"orders\"} 100",
            "rill_kafka_errors_total{code=\"3\"} 1",
            "rill_kafka_request_errors_total{api=\"Produce\",code=\"3\"} 1",
            "rill_kafka_open_connections 1",
            "rill_kafka_request_remote_time_seconds_bucket{le=\"0.005\",api=\"Produce\"} 1",
            "rill_kafka_request_remote_time_seconds_bucket{le=\"0.0025\",api=\"Produce\"} 0",
            "rill_kafka_request_size_bytes_sum{api=\"Produce\"} 120.0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        assert!(
            !text.contains("rill_partition_produce"),
            "per-partition series are off by default"
        );
    }

    #[test]
    fn per_partition_and_disabled_switches() {
        let m = Metrics::new(&MetricsConfig {
            enabled: true,
            per_partition: true,
        });
        m.produced("orders", 2, 10, 1);
        let text = m.encode().unwrap();
        assert!(
            text.contains(
                "rill_partition_produce_records_total{topic=\"orders\",partition=\"2\"} 1"
            ),
            "{text}"
        );
        let off = Metrics::new(&MetricsConfig {
            enabled: false,
            per_partition: false,
        });
        off.request("Produce");
        assert!(off.encode().is_none());
    }

    #[test]
    fn exposition_has_backlog_counters() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = rill_core::broker::BrokerConfig::new(
            tmp.path().join("data"),
            rill_core::broker::KeySource::Env("33".repeat(32)),
        );
        let broker = Broker::open(cfg).unwrap();
        let mut m = Metrics::default();
        m.export_backlog(broker.clone());
        let text = m.encode().unwrap();
        assert!(
            text.contains("rill_bridge_backlog_dropped_records_total 0"),
            "{text}"
        );
        assert!(text.contains("rill_bridge_backlog_paused 0"), "{text}");
        broker.shutdown().unwrap();
    }
}
