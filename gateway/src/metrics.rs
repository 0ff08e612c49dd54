//! The node's Prometheus metrics (served by [`crate::admin_http`] at `/metrics`).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use rill_core::broker::Broker;

/// Label of a per-API counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    /// API name, e.g. `Produce`.
    pub api: String,
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

/// Counters and gauges of one node.
pub struct Metrics {
    registry: Registry,
    requests: Family<ApiLabel, Counter>,
    errors: Family<CodeLabel, Counter>,
    protocol_errors: Counter,
    produce_bytes: Counter,
    produce_records: Counter,
    fetch_bytes: Counter,
    fetch_records: Counter,
    connections: Counter,
    open_connections: Gauge,
    authorization_denials: Family<DenialLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rill");
        let requests = Family::<ApiLabel, Counter>::default();
        let errors = Family::<CodeLabel, Counter>::default();
        let protocol_errors = Counter::default();
        let produce_bytes = Counter::default();
        let produce_records = Counter::default();
        let fetch_bytes = Counter::default();
        let fetch_records = Counter::default();
        let connections = Counter::default();
        let open_connections = Gauge::default();
        let authorization_denials = Family::<DenialLabel, Counter>::default();
        registry.register(
            "kafka_authorization_denials",
            "Kafka actions the authorizer denied, by operation and resource type",
            authorization_denials.clone(),
        );
        registry.register(
            "kafka_requests",
            "Kafka requests handled, by API",
            requests.clone(),
        );
        registry.register(
            "kafka_errors",
            "Per-partition or per-resource Kafka error codes returned",
            errors.clone(),
        );
        registry.register(
            "kafka_protocol_errors",
            "Connections closed for malformed, oversized or unsupported requests",
            protocol_errors.clone(),
        );
        registry.register(
            "produce_bytes",
            "Record batch bytes appended by Produce",
            produce_bytes.clone(),
        );
        registry.register(
            "produce_records",
            "Records appended by Produce",
            produce_records.clone(),
        );
        registry.register(
            "fetch_bytes",
            "Record batch bytes returned by Fetch",
            fetch_bytes.clone(),
        );
        registry.register(
            "fetch_records",
            "Records returned by Fetch",
            fetch_records.clone(),
        );
        registry.register(
            "kafka_connections",
            "Kafka connections accepted",
            connections.clone(),
        );
        registry.register(
            "kafka_open_connections",
            "Kafka connections open now",
            open_connections.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
            protocol_errors,
            produce_bytes,
            produce_records,
            fetch_bytes,
            fetch_records,
            connections,
            open_connections,
            authorization_denials,
        }
    }

    /// Count one request of `api`.
    pub fn request(&self, api: &str) {
        self.requests
            .get_or_create(&ApiLabel {
                api: api.to_string(),
            })
            .inc();
    }

    /// Count one error code returned.
    pub fn error(&self, code: i16) {
        self.errors.get_or_create(&CodeLabel { code }).inc();
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
        self.protocol_errors.inc();
    }

    /// Count appended bytes and records.
    pub fn produced(&self, bytes: u64, records: u64) {
        self.produce_bytes.inc_by(bytes);
        self.produce_records.inc_by(records);
    }

    /// Count fetched bytes and records.
    pub fn fetched(&self, bytes: u64, records: u64) {
        self.fetch_bytes.inc_by(bytes);
        self.fetch_records.inc_by(records);
    }

    /// A connection opened.
    pub fn connection_opened(&self) {
        self.connections.inc();
        self.open_connections.inc();
    }

    /// A connection closed.
    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    /// Add a collector computed at each scrape (e.g. the bridge's lag).
    pub fn register_collector(
        &mut self,
        collector: Box<dyn prometheus_client::collector::Collector>,
    ) {
        self.registry.register_collector(collector);
    }

    /// Export the broker's backlog policy state (`rill_core::backlog`, which has no Prometheus
    /// dependency) at every scrape: `rill_bridge_backlog_dropped_records_total` and
    /// `rill_bridge_backlog_paused`.
    pub fn export_backlog(&mut self, broker: Arc<Broker>) {
        self.registry
            .register_collector(Box::new(BacklogCollector(broker)));
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
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
        let m = Metrics::new();
        m.request("Produce");
        m.produced(100, 3);
        m.error(3);
        m.connection_opened();
        let text = m.encode();
        assert!(
            text.contains("rill_kafka_requests_total{api=\"Produce\"} 1"),
            "{text}"
        );
        assert!(text.contains("rill_produce_records_total 3"), "{text}");
        assert!(
            text.contains("rill_kafka_errors_total{code=\"3\"} 1"),
            "{text}"
        );
        assert!(text.contains("rill_kafka_open_connections 1"), "{text}");
    }

    #[test]
    fn exposition_has_backlog_counters() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = rill_core::broker::BrokerConfig::new(
            tmp.path().join("data"),
            rill_core::broker::KeySource::Env("33".repeat(32)),
        );
        let broker = Broker::open(cfg).unwrap();
        let mut m = Metrics::new();
        m.export_backlog(broker.clone());
        let text = m.encode();
        assert!(
            text.contains("rill_bridge_backlog_dropped_records_total 0"),
            "{text}"
        );
        assert!(text.contains("rill_bridge_backlog_paused 0"), "{text}");
        broker.shutdown().unwrap();
    }
}
