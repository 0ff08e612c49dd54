//! Consumer group metrics, computed at scrape time from the group coordinator and the logs (as
//! Burrow and kafka-lag-exporter do, but inside the node): lag in records and in seconds per
//! group and topic (per partition behind `[metrics] per_partition`), group state, members and
//! rebalances. This node coordinates every group it knows (a node alone); in a cluster each node
//! exports the groups it coordinates.
//!
//! Lag in records is the high watermark minus the committed offset (0 when caught up). Lag in
//! seconds is now minus the timestamp of the record at the committed offset, read from the clear
//! batch header ([`rill_core::log::PartitionLog::batch_timestamp_at`], nothing is decrypted; the
//! batch's base timestamp, so batch granularity), 0 when caught up. Everything is read once per
//! scrape.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cluster::coordinator_runtime::CoordinatorRuntime;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use rill_core::broker::Broker;
use rill_core::clock::now_ms;
use rill_core::group::GroupCoordinator;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupStateLabels {
    group: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupTopicLabels {
    group: String,
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    group: String,
    topic: String,
    partition: i32,
}

/// Lag of one committed partition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionLag {
    /// High watermark minus the committed offset, at least 0.
    pub records: i64,
    /// Now minus the timestamp of the record at the committed offset; 0 when caught up.
    pub seconds: f64,
}

/// One group's numbers, read once per scrape.
struct GroupRow {
    group: String,
    state: String,
    members: usize,
    generation: i32,
    /// Per (topic, partition).
    lag: BTreeMap<(String, i32), PartitionLag>,
}

/// Reads every group's state, members and committed offsets at scrape time.
pub struct GroupCollector {
    /// The coordinator of a node alone.
    pub groups: Arc<GroupCoordinator>,
    /// In a cluster: the coordinator shards serving here (each group is exported by the node
    /// coordinating it).
    pub coordinators: Option<Arc<CoordinatorRuntime>>,
    /// The logs (high watermarks, batch timestamps).
    pub broker: Arc<Broker>,
    /// `[metrics] per_partition`.
    pub per_partition: bool,
}

impl std::fmt::Debug for GroupCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCollector")
    }
}

/// Lag of a consumer at `committed` on the partition `log`, at wall-clock `now_ms`.
pub fn partition_lag(
    log: &rill_core::log::PartitionLog,
    committed: i64,
    now_ms: i64,
) -> PartitionLag {
    let hw = log.high_watermark();
    let records = (hw - committed).max(0);
    if records == 0 {
        return PartitionLag {
            records,
            seconds: 0.0,
        };
    }
    let at = committed.max(log.log_start_offset());
    let seconds = log
        .batch_timestamp_at(at)
        .map_or(0.0, |ts| (now_ms - ts).max(0) as f64 / 1000.0);
    PartitionLag { records, seconds }
}

impl GroupCollector {
    fn rows(&self) -> Vec<GroupRow> {
        let now = now_ms();
        let mut rows = Vec::new();
        let coordinators = match &self.coordinators {
            None => vec![self.groups.clone()],
            Some(runtime) => runtime.coordinators(),
        };
        for (listing, groups) in coordinators
            .iter()
            .flat_map(|c| c.list_groups(&[]).into_iter().map(move |l| (l, c)))
        {
            let (members, generation) = match groups.describe_group(&listing.group_id) {
                Ok(d) => (d.members.len(), d.generation_id),
                Err(_) => (0, 0),
            };
            let mut lag = BTreeMap::new();
            if let Ok(offsets) = groups.fetch_offsets(&listing.group_id, None) {
                for ((topic, partition), committed) in offsets {
                    let Some(committed) = committed else {
                        continue;
                    };
                    let Ok(log) = self.broker.partition(&topic, partition) else {
                        continue;
                    };
                    lag.insert(
                        (topic, partition),
                        partition_lag(&log, committed.offset, now),
                    );
                }
            }
            rows.push(GroupRow {
                group: listing.group_id,
                state: listing.state,
                members,
                generation,
                lag,
            });
        }
        rows
    }
}

impl Collector for GroupCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.rows();
        let gauge = MetricType::Gauge;
        let mut f = encoder.encode_descriptor(
            "consumer_group_state",
            "1 for the group's current state (Empty, PreparingRebalance, CompletingRebalance, Stable; KIP-848 groups: Empty, Assigning, Reconciling, Stable)",
            None,
            gauge,
        )?;
        for r in &rows {
            let labels = GroupStateLabels {
                group: r.group.clone(),
                state: r.state.clone(),
            };
            ConstGauge::new(1).encode(f.encode_family(&labels)?)?;
        }
        let mut f = encoder.encode_descriptor(
            "consumer_group_members",
            "Members of the group",
            None,
            gauge,
        )?;
        for r in &rows {
            let labels = GroupLabel {
                group: r.group.clone(),
            };
            ConstGauge::new(r.members as i64).encode(f.encode_family(&labels)?)?;
        }
        let mut f = encoder.encode_descriptor(
            "consumer_group_rebalances",
            "Rebalances the group completed: its generation (classic) or group epoch (KIP-848)",
            None,
            MetricType::Counter,
        )?;
        for r in &rows {
            let labels = GroupLabel {
                group: r.group.clone(),
            };
            ConstCounter::new(u64::try_from(r.generation).unwrap_or(0))
                .encode(f.encode_family(&labels)?)?;
        }
        // Per group and topic: the sum of the partitions' record lag, the largest seconds lag.
        let mut per_topic: BTreeMap<(String, String), PartitionLag> = BTreeMap::new();
        for r in &rows {
            for ((topic, _), l) in &r.lag {
                let e = per_topic
                    .entry((r.group.clone(), topic.clone()))
                    .or_insert(PartitionLag {
                        records: 0,
                        seconds: 0.0,
                    });
                e.records += l.records;
                e.seconds = e.seconds.max(l.seconds);
            }
        }
        let mut f = encoder.encode_descriptor(
            "consumer_group_lag_records",
            "Records between the group's committed offsets and the high watermarks, summed over the topic's partitions",
            None,
            gauge,
        )?;
        for ((group, topic), l) in &per_topic {
            let labels = GroupTopicLabels {
                group: group.clone(),
                topic: topic.clone(),
            };
            ConstGauge::new(l.records).encode(f.encode_family(&labels)?)?;
        }
        let mut f = encoder.encode_descriptor(
            "consumer_group_lag_seconds",
            "Age of the oldest unconsumed record (now minus the timestamp at the committed offset), largest over the topic's partitions; 0 when caught up",
            None,
            gauge,
        )?;
        for ((group, topic), l) in &per_topic {
            let labels = GroupTopicLabels {
                group: group.clone(),
                topic: topic.clone(),
            };
            ConstGauge::new(l.seconds).encode(f.encode_family(&labels)?)?;
        }
        if self.per_partition {
            let mut f = encoder.encode_descriptor(
                "consumer_group_partition_lag_records",
                "Records between the group's committed offset and the high watermark of one partition ([metrics] per_partition)",
                None,
                gauge,
            )?;
            for r in &rows {
                for ((topic, partition), l) in &r.lag {
                    let labels = GroupPartitionLabels {
                        group: r.group.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                    };
                    ConstGauge::new(l.records).encode(f.encode_family(&labels)?)?;
                }
            }
            let mut f = encoder.encode_descriptor(
                "consumer_group_partition_lag_seconds",
                "Age of the oldest unconsumed record of one partition ([metrics] per_partition)",
                None,
                gauge,
            )?;
            for r in &rows {
                for ((topic, partition), l) in &r.lag {
                    let labels = GroupPartitionLabels {
                        group: r.group.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                    };
                    ConstGauge::new(l.seconds).encode(f.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_core::broker::{BrokerConfig, KeySource};

    #[test]
    fn lag_in_records_and_seconds() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = BrokerConfig::new(tmp.path().join("data"), KeySource::Env("55".repeat(32)));
        let broker = Broker::open(cfg).unwrap();
        broker
            .create_topic("t", 1, &Default::default(), false)
            .unwrap();
        let log = broker.partition("t", 0).unwrap();
        for (i, ts) in [1_000_000i64, 1_005_000, 1_009_000].iter().enumerate() {
            let mut b = rill_core::batch::BatchBuilder::new();
            b.push(None, Some(bytes::Bytes::from(format!("v{i}"))), *ts);
            b.push(None, Some(bytes::Bytes::from(format!("w{i}"))), *ts + 1);
            let info = log.append(&b.build().unwrap()).unwrap();
            log.flush_to(info.last_offset).unwrap();
        }
        let now = 1_010_000;
        assert_eq!(
            partition_lag(&log, 2, now),
            PartitionLag {
                records: 4,
                seconds: 5.0
            }
        );
        assert_eq!(
            partition_lag(&log, 6, now),
            PartitionLag {
                records: 0,
                seconds: 0.0
            }
        );
        broker.shutdown().unwrap();
    }
}
