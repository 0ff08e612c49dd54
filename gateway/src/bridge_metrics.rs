//! The bridge's Prometheus metrics, computed from its status registry at each scrape:
//! `rill_bridge_lag_records`, `rill_bridge_lag_bytes`, `rill_bridge_lag_seconds`,
//! `rill_bridge_connected` (1 while mirroring or caught up) and `rill_bridge_mirrored_records_total`,
//! labelled `{topic, partition, target}` (source topic and partition, target bootstrap servers).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use rill_bridge::status::{MirrorState, PartitionReport};
use rill_bridge::BridgeStatus;

/// Labels of one mirrored source partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabels {
    topic: String,
    partition: i32,
    target: String,
}

/// A collector over the bridge's status registry.
pub struct BridgeCollector(pub Arc<BridgeStatus>);

impl std::fmt::Debug for BridgeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BridgeCollector")
    }
}

fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    parts: &[PartitionReport],
    value: impl Fn(&PartitionReport) -> M,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for p in parts {
        let labels = MirrorLabels {
            topic: p.topic.clone(),
            partition: p.partition,
            target: p.target.clone(),
        };
        value(p).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for BridgeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let parts = self.0.report().partitions;
        if parts.is_empty() {
            return Ok(());
        }
        let g = MetricType::Gauge;
        family(
            &mut encoder,
            "bridge_lag_records",
            "Source records not mirrored yet",
            g,
            &parts,
            |p| ConstGauge::new(p.lag_records),
        )?;
        family(
            &mut encoder,
            "bridge_lag_bytes",
            "Estimated stored bytes of the records not mirrored yet",
            g,
            &parts,
            |p| ConstGauge::new(p.lag_bytes as i64),
        )?;
        family(
            &mut encoder,
            "bridge_lag_seconds",
            "Age of the oldest record not mirrored yet (0 when caught up)",
            g,
            &parts,
            |p| ConstGauge::new(p.lag_seconds),
        )?;
        family(
            &mut encoder,
            "bridge_connected",
            "1 while the mirror task is mirroring or caught up, else 0",
            g,
            &parts,
            |p| {
                ConstGauge::new(i64::from(matches!(
                    p.state,
                    MirrorState::Mirroring | MirrorState::CaughtUp
                )))
            },
        )?;
        family(
            &mut encoder,
            "bridge_mirrored_records",
            "Records acknowledged by the target since the node started",
            MetricType::Counter,
            &parts,
            |p| ConstCounter::new(p.records_mirrored),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_with_labels() {
        let status = BridgeStatus::new();
        let e = status.register(0, "c:9092", "orders", 1, "edge.orders", None);
        e.set_state(MirrorState::CaughtUp);
        let mut registry = prometheus_client::registry::Registry::with_prefix("rill");
        registry.register_collector(Box::new(BridgeCollector(status)));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        let labels = r#"{topic="orders",partition="1",target="c:9092"}"#;
        for line in [
            format!("rill_bridge_lag_records{labels} 0"),
            format!("rill_bridge_lag_bytes{labels} 0"),
            format!("rill_bridge_lag_seconds{labels} 0.0"),
            format!("rill_bridge_connected{labels} 1"),
            format!("rill_bridge_mirrored_records_total{labels} 0"),
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in:\n{out}");
        }
    }
}
