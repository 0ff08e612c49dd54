//! The cluster as Metadata describes it: brokers, controller, topics and their partition
//! leaders (with leader epochs, for KIP-951 leader hints and fenced-epoch checks).

use std::collections::BTreeMap;

use kafka_protocol::messages::MetadataResponse;

/// A partition as the cluster metadata describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id (-1 when there is none).
    pub leader: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
    /// Replicas whose broker is not live.
    pub offline_replicas: Vec<i32>,
    /// Leader epoch (-1 when the broker does not send one).
    #[serde(skip)]
    pub leader_epoch: i32,
    /// Error code of the partition in the metadata (0 when fine).
    #[serde(skip)]
    pub error_code: i16,
}

/// A topic as the cluster metadata describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id (all zeros when the broker does not send one).
    pub topic_id: String,
    /// Whether the topic is internal.
    pub internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// The partition `p`, if the topic has it.
    pub fn partition(&self, p: i32) -> Option<&PartitionInfo> {
        self.partitions.iter().find(|i| i.partition == p)
    }

    /// Whether every partition has a leader (a topic just created may not have them yet).
    pub fn has_leaders(&self) -> bool {
        !self.partitions.is_empty() && self.partitions.iter().all(|p| p.leader >= 0)
    }

    /// `partitions` grouped by the broker id of their leader (-1 for a partition without a
    /// leader or missing from the metadata), in the given order within each group.
    pub fn by_leader(&self, partitions: impl IntoIterator<Item = i32>) -> BTreeMap<i32, Vec<i32>> {
        let mut groups: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in partitions {
            let leader = self
                .partitions
                .iter()
                .find(|i| i.partition == p)
                .map_or(-1, |i| i.leader);
            groups.entry(leader).or_default().push(p);
        }
        groups
    }
}

/// A broker as the cluster metadata describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BrokerInfo {
    /// Broker id.
    pub node_id: i32,
    /// Host.
    pub host: String,
    /// Port.
    pub port: i32,
}

impl BrokerInfo {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The cluster metadata: brokers, controller and topics.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetadata {
    /// Cluster id, when the broker sends one.
    pub cluster_id: Option<String>,
    /// Controller broker id (-1 unknown).
    pub controller_id: i32,
    /// Brokers by id.
    pub brokers: BTreeMap<i32, BrokerInfo>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicInfo>,
    /// Error codes of topics the broker reported an error for, by name.
    pub topic_errors: BTreeMap<String, i16>,
}

impl ClusterMetadata {
    /// The metadata of a Metadata response.
    pub fn from_response(resp: MetadataResponse) -> ClusterMetadata {
        let mut md = ClusterMetadata {
            cluster_id: resp.cluster_id.map(|s| s.to_string()),
            controller_id: resp.controller_id.0,
            ..Default::default()
        };
        for b in resp.brokers {
            md.brokers.insert(
                b.node_id.0,
                BrokerInfo {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                },
            );
        }
        for t in resp.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else {
                continue;
            };
            if t.error_code != 0 {
                md.topic_errors.insert(name.clone(), t.error_code);
                if t.partitions.is_empty() {
                    continue;
                }
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .into_iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            md.topics.insert(
                name.clone(),
                TopicInfo {
                    name,
                    topic_id: t.topic_id.to_string(),
                    internal: t.is_internal,
                    partitions,
                },
            );
        }
        md
    }
}
