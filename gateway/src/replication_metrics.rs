//! Replication and controller metrics of a cluster member (Kafka's `ReplicaManager` and
//! `KafkaController` gauges), computed at each scrape from the replica manager and the metadata
//! image:
//!
//! - `rill_replica_partitions` (Kafka's `PartitionCount`): partitions hosted here as replicas.
//! - `rill_replica_leader_partitions` (`LeaderCount`): partitions this node leads.
//! - `rill_replica_under_replicated_partitions` (`UnderReplicatedPartitions`): led here with an
//!   ISR smaller than the replica set.
//! - `rill_replica_under_min_isr_partitions` (`UnderMinIsrPartitionCount`): led here with an ISR
//!   smaller than `min.insync.replicas` (acks=all produce fails with NOT_ENOUGH_REPLICAS).
//! - `rill_replica_isr_shrinks_total` / `rill_replica_isr_expands_total` (`IsrShrinksPerSec` /
//!   `IsrExpandsPerSec` as totals): committed ISR changes of partitions led here.
//! - `rill_controller_active` (`ActiveControllerCount`): 1 on the active controller, else 0.
//! - `rill_controller_offline_partitions` (`OfflinePartitionsCount`): partitions without a
//!   leader, exported by the active controller only (so a sum over nodes counts each once).
//! - `rill_controller_fenced_brokers` (`FencedBrokerCount`): registered brokers that are fenced,
//!   active controller only.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use rill_core::controller::image::NO_LEADER;
use rill_core::replica::ReplicaManager;

use crate::kafka::cluster_view::ClusterView;

/// The collector (registered by `rill serve` in cluster mode).
pub struct ReplicationCollector {
    /// The replicas this node hosts.
    pub replicas: Arc<ReplicaManager>,
    /// The cluster (image and quorum).
    pub cluster: Arc<dyn ClusterView>,
}

impl std::fmt::Debug for ReplicationCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplicationCollector")
    }
}

fn one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    value: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, kind)?;
    value.encode(metric)
}

impl Collector for ReplicationCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = MetricType::Gauge;
        let partitions = self.replicas.partitions();
        let (mut leaders, mut under, mut under_min) = (0i64, 0i64, 0i64);
        for p in partitions.iter().filter(|p| p.is_leader()) {
            leaders += 1;
            let isr = p.isr().len();
            if isr < p.replicas().len() {
                under += 1;
            }
            if isr < p.min_insync_replicas() {
                under_min += 1;
            }
        }
        let e = &mut encoder;
        one(
            e,
            "replica_partitions",
            "Partitions hosted here as replicas",
            g,
            ConstGauge::new(partitions.len() as i64),
        )?;
        one(
            e,
            "replica_leader_partitions",
            "Partitions this node leads",
            g,
            ConstGauge::new(leaders),
        )?;
        one(
            e,
            "replica_under_replicated_partitions",
            "Partitions led here whose ISR is smaller than their replica set",
            g,
            ConstGauge::new(under),
        )?;
        one(
            e,
            "replica_under_min_isr_partitions",
            "Partitions led here whose ISR is smaller than min.insync.replicas",
            g,
            ConstGauge::new(under_min),
        )?;
        let changes = self.replicas.isr_changes();
        one(
            e,
            "replica_isr_shrinks",
            "Committed ISR shrinks of partitions led here",
            MetricType::Counter,
            ConstCounter::new(changes.shrinks()),
        )?;
        one(
            e,
            "replica_isr_expands",
            "Committed ISR expands of partitions led here",
            MetricType::Counter,
            ConstCounter::new(changes.expands()),
        )?;
        let active = self.cluster.quorum().leader_id == Some(self.cluster.node_id());
        one(
            e,
            "controller_active",
            "1 on the active controller, else 0",
            g,
            ConstGauge::new(i64::from(active)),
        )?;
        if active {
            let image = self.cluster.image();
            let offline = image
                .topics()
                .values()
                .flat_map(|t| t.partitions.values())
                .filter(|p| p.leader == NO_LEADER)
                .count();
            let fenced = image.brokers().values().filter(|b| b.fenced).count();
            one(
                e,
                "controller_offline_partitions",
                "Partitions without a leader (active controller only)",
                g,
                ConstGauge::new(offline as i64),
            )?;
            one(
                e,
                "controller_fenced_brokers",
                "Registered brokers that are fenced (active controller only)",
                g,
                ConstGauge::new(fenced as i64),
            )?;
        }
        Ok(())
    }
}
