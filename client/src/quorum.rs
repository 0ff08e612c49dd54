//! The controller quorum (DescribeQuorum, what `kafka-metadata-quorum.sh` asks): the active
//! controller, its epoch, the metadata log's high watermark, and every voter and observer with
//! its log end offset and when it last fetched and caught up.

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::ReplicaState;
use kafka_protocol::messages::{DescribeQuorumRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::Client;
use crate::error::{check, ClientError};

/// The name of the controller's metadata log (Kafka's).
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// One voter or observer of the quorum.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuorumReplica {
    /// Node id.
    pub node_id: i32,
    /// The directory id it was formatted with (all zeros before DescribeQuorum v2).
    pub directory_id: String,
    /// Its log end offset as the leader last saw it (-1 unknown).
    pub log_end_offset: i64,
    /// Wall-clock ms of its last fetch (-1 unknown).
    pub last_fetch_timestamp: i64,
    /// Wall-clock ms when it was last caught up with the leader (-1 unknown).
    pub last_caught_up_timestamp: i64,
}

impl QuorumReplica {
    fn from_state(r: &ReplicaState) -> QuorumReplica {
        QuorumReplica {
            node_id: r.replica_id.0,
            directory_id: r.replica_directory_id.to_string(),
            log_end_offset: r.log_end_offset,
            last_fetch_timestamp: r.last_fetch_timestamp,
            last_caught_up_timestamp: r.last_caught_up_timestamp,
        }
    }
}

/// The quorum as DescribeQuorum describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuorumStatus {
    /// The active controller.
    pub leader_id: i32,
    /// Its epoch (term).
    pub leader_epoch: i32,
    /// The metadata log's high watermark (committed offset).
    pub high_watermark: i64,
    /// The voters.
    pub voters: Vec<QuorumReplica>,
    /// The observers (learners).
    pub observers: Vec<QuorumReplica>,
}

impl QuorumStatus {
    /// How far `r` is behind the leader's log end offset (`None` when unknown).
    pub fn lag(&self, r: &QuorumReplica) -> Option<i64> {
        let leader = self.voters.iter().find(|v| v.node_id == self.leader_id)?;
        (leader.log_end_offset >= 0 && r.log_end_offset >= 0)
            .then(|| (leader.log_end_offset - r.log_end_offset).max(0))
    }
}

impl Client {
    /// DescribeQuorum of the metadata log, asked of the controller (the node that knows how far
    /// every voter and observer has replicated), or any broker when none is known.
    pub async fn describe_quorum(&mut self) -> Result<QuorumStatus, ClientError> {
        let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
        let resp = self.controller().await?.send(&req).await?;
        let context = || "describe the controller quorum".to_string();
        check(resp.error_code, resp.error_message.as_ref(), context)?;
        let p = resp
            .topics
            .iter()
            .find(|t| t.topic_name.0.as_str() == METADATA_TOPIC)
            .and_then(|t| t.partitions.iter().find(|p| p.partition_index == 0))
            .ok_or_else(|| {
                ClientError::Usage("DescribeQuorum answered without the metadata log".into())
            })?;
        check(p.error_code, p.error_message.as_ref(), context)?;
        Ok(QuorumStatus {
            leader_id: p.leader_id.0,
            leader_epoch: p.leader_epoch,
            high_watermark: p.high_watermark,
            voters: p
                .current_voters
                .iter()
                .map(QuorumReplica::from_state)
                .collect(),
            observers: p.observers.iter().map(QuorumReplica::from_state).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(node_id: i32, log_end_offset: i64) -> QuorumReplica {
        QuorumReplica {
            node_id,
            directory_id: String::new(),
            log_end_offset,
            last_fetch_timestamp: -1,
            last_caught_up_timestamp: -1,
        }
    }

    #[test]
    fn lag_is_behind_the_leaders_log_end() {
        let q = QuorumStatus {
            leader_id: 2,
            leader_epoch: 1,
            high_watermark: 10,
            voters: vec![r(1, 7), r(2, 10), r(3, -1)],
            observers: vec![],
        };
        assert_eq!(q.lag(&q.voters[0]), Some(3));
        assert_eq!(q.lag(&q.voters[1]), Some(0));
        assert_eq!(q.lag(&q.voters[2]), None);
    }
}
