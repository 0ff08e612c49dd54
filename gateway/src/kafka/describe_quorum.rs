//! DescribeQuorum (key 55, what `kafka-metadata-quorum.sh` uses): the controller quorum of the
//! cluster's metadata log, `__cluster_metadata` partition 0, as this node's cluster view reports
//! it ([`answer`]): the active controller and its epoch, the high watermark (committed index),
//! voters and observers with their log end offsets and when they last fetched and caught up, and
//! (v2) their nodes with their registered listeners.
//!
//! A node alone has no quorum: it answers INVALID_REQUEST.

use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_core::controller::MetadataImage;

use super::cluster_view::{QuorumInfo, QuorumMember};
use super::{error_codes, Context};

/// The name of the controller's metadata log, as Kafka calls it.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

fn metadata_topic(partition: PartitionData) -> TopicData {
    TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![partition])
}

/// Whether the request asks for exactly `__cluster_metadata` partition 0.
fn asks_for_metadata_log(req: &DescribeQuorumRequest) -> bool {
    matches!(req.topics.as_slice(), [t] if t.topic_name.0.as_str() == METADATA_TOPIC
        && matches!(t.partitions.as_slice(), [p] if p.partition_index == 0))
}

fn replica(m: &QuorumMember, now_ms: i64, version: i16) -> ReplicaState {
    let at = |ago: Option<u64>| ago.map_or(-1, |ago| now_ms - i64::try_from(ago).unwrap_or(now_ms));
    let r = ReplicaState::default()
        .with_replica_id(BrokerId(m.node_id))
        .with_log_end_offset(m.log_end_offset);
    // Timestamps from v1, directory ids from v2.
    let r = if version >= 1 {
        r.with_last_fetch_timestamp(at(m.last_fetch_ago_ms))
            .with_last_caught_up_timestamp(at(m.last_caught_up_ago_ms))
    } else {
        r
    };
    if version >= 2 {
        r.with_replica_directory_id(m.directory_id)
    } else {
        r
    }
}

/// The answer (of request version `version`) from the quorum as this node sees it; `now_ms`
/// (wall clock) turns "ago" into the timestamps Kafka reports (v1+); `image` gives the voters'
/// and observers' listeners (v2 `nodes`).
pub fn answer(
    quorum: &QuorumInfo,
    image: &MetadataImage,
    now_ms: i64,
    version: i16,
    req: &DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let partition = PartitionData::default().with_partition_index(0);
    if !asks_for_metadata_log(req) {
        return DescribeQuorumResponse::default().with_topics(vec![metadata_topic(
            partition.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
        )]);
    }
    let Some(leader) = quorum.leader_id else {
        // Kafka's answer from a node that is not the leader; the client retries.
        let partition = partition.with_error_code(ResponseError::NotLeaderOrFollower.code());
        let partition = if version >= 2 {
            partition.with_error_message(error_codes::message("no active controller is known"))
        } else {
            partition
        };
        return DescribeQuorumResponse::default().with_topics(vec![metadata_topic(partition)]);
    };
    let partition = partition
        .with_leader_id(BrokerId(leader))
        .with_leader_epoch(quorum.leader_epoch)
        .with_high_watermark(quorum.high_watermark)
        .with_current_voters(
            quorum
                .voters
                .iter()
                .map(|m| replica(m, now_ms, version))
                .collect(),
        )
        .with_observers(
            quorum
                .observers
                .iter()
                .map(|m| replica(m, now_ms, version))
                .collect(),
        );
    if version < 2 {
        return DescribeQuorumResponse::default().with_topics(vec![metadata_topic(partition)]);
    }
    let nodes = quorum
        .voters
        .iter()
        .chain(&quorum.observers)
        .map(|m| {
            let listeners = image
                .broker(m.node_id)
                .map(|b| {
                    b.listeners
                        .iter()
                        .map(|l| {
                            Listener::default()
                                .with_name(StrBytes::from_string(l.name.clone()))
                                .with_host(StrBytes::from_string(l.host.clone()))
                                .with_port(l.port)
                        })
                        .collect()
                })
                .unwrap_or_default();
            Node::default()
                .with_node_id(BrokerId(m.node_id))
                .with_listeners(listeners)
        })
        .collect();
    DescribeQuorumResponse::default()
        .with_topics(vec![metadata_topic(partition)])
        .with_nodes(nodes)
}

/// Answer DescribeQuorum.
pub fn handle(
    ctx: &Context,
    caller: &super::authorization::Caller,
    version: i16,
    req: DescribeQuorumRequest,
) -> ResponseKind {
    // Kafka: DESCRIBE on the cluster.
    if !ctx.authorize_cluster(caller, rill_core::authorizer::acl::AclOperation::Describe) {
        return ResponseKind::DescribeQuorum(
            DescribeQuorumResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    let Some(cluster) = &ctx.cluster else {
        let resp =
            DescribeQuorumResponse::default().with_error_code(ResponseError::InvalidRequest.code());
        return ResponseKind::DescribeQuorum(if version >= 2 {
            resp.with_error_message(error_codes::message(
                "this node runs alone (not formatted with rill cluster format): it has no controller quorum",
            ))
        } else {
            resp
        });
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    ResponseKind::DescribeQuorum(answer(
        &cluster.quorum(),
        &cluster.image(),
        now_ms,
        version,
        &req,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::create_topics::tests::TestCluster;
    use kafka_protocol::messages::describe_quorum_request;
    use uuid::Uuid;

    fn request(topic: &str, partition: i32) -> DescribeQuorumRequest {
        DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![describe_quorum_request::PartitionData::default()
                    .with_partition_index(partition)]),
        ])
    }

    fn member(node_id: i32, leo: i64, ago: Option<u64>) -> QuorumMember {
        QuorumMember {
            node_id,
            directory_id: Uuid::new_v4(),
            log_end_offset: leo,
            last_fetch_ago_ms: ago,
            last_caught_up_ago_ms: ago,
        }
    }

    #[test]
    fn the_quorum_as_kafka_describes_it() {
        let c = TestCluster::plain(3);
        let quorum = QuorumInfo {
            leader_id: Some(2),
            leader_epoch: 4,
            high_watermark: 120,
            voters: vec![
                member(1, 120, Some(10)),
                member(2, 121, Some(0)),
                member(3, 90, None),
            ],
            observers: vec![member(4, 100, Some(500))],
        };
        let resp = answer(&quorum, &c.image, 1_000_000, 2, &request(METADATA_TOPIC, 0));
        assert_eq!(resp.error_code, 0);
        let p = &resp.topics[0].partitions[0];
        assert_eq!(
            (
                p.error_code,
                p.leader_id.0,
                p.leader_epoch,
                p.high_watermark
            ),
            (0, 2, 4, 120)
        );
        let voters: Vec<(i32, i64, i64)> = p
            .current_voters
            .iter()
            .map(|v| (v.replica_id.0, v.log_end_offset, v.last_fetch_timestamp))
            .collect();
        assert_eq!(
            voters,
            vec![(1, 120, 999_990), (2, 121, 1_000_000), (3, 90, -1)]
        );
        assert_eq!(
            p.current_voters[0].replica_directory_id,
            quorum.voters[0].directory_id
        );
        assert_eq!(p.observers[0].replica_id.0, 4);
        // Nodes with their registered listeners (CLUSTER, KAFKA and LAN; broker 3 has no LAN,
        // broker 4 is not registered: none).
        assert_eq!(resp.nodes.len(), 4);
        assert_eq!(resp.nodes[0].listeners.len(), 3);
        assert_eq!(resp.nodes[2].listeners.len(), 2);
        assert!(resp.nodes[3].listeners.is_empty());
        // Every version encodes (v0 has no timestamps, v0-1 no directory ids or nodes).
        for v in 0..=2 {
            let resp = answer(&quorum, &c.image, 1_000_000, v, &request(METADATA_TOPIC, 0));
            let mut buf = bytes::BytesMut::new();
            kafka_protocol::protocol::Encodable::encode(&resp, &mut buf, v)
                .unwrap_or_else(|e| panic!("v{v}: {e}"));
            let none = answer(
                &QuorumInfo::default(),
                &c.image,
                0,
                v,
                &request(METADATA_TOPIC, 0),
            );
            kafka_protocol::protocol::Encodable::encode(&none, &mut buf, v)
                .unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }

    #[test]
    fn other_partitions_and_an_unknown_leader_are_errors() {
        let c = TestCluster::plain(1);
        let quorum = QuorumInfo::default();
        let code = |req| answer(&quorum, &c.image, 0, 2, &req).topics[0].partitions[0].error_code;
        assert_eq!(
            code(request("other", 0)),
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert_eq!(
            code(request(METADATA_TOPIC, 1)),
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert_eq!(
            code(request(METADATA_TOPIC, 0)),
            ResponseError::NotLeaderOrFollower.code()
        );
    }
}
