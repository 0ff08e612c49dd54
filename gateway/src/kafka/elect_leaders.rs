//! ElectLeaders (key 43): preferred (move leadership back to the first replica) and unclean
//! (elect a leader for a partition without one, from outside the ISR if need be) elections.
//!
//! In a cluster each partition is one `Command::ElectLeader` through the controller, answered
//! with Kafka's per-partition codes: ELECTION_NOT_NEEDED (the preferred replica already leads,
//! or the partition has a leader), PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE,
//! UNKNOWN_TOPIC_OR_PARTITION. A request for all partitions (null) answers only for the
//! partitions whose election was attempted, as Kafka does. A node alone leads every partition
//! it has: every election is ELECTION_NOT_NEEDED.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    ElectLeadersRequest, ElectLeadersResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_core::controller::image::NO_LEADER;
use rill_core::controller::{Command, ElectionType, MetadataImage};

use super::{error_codes, Context};

/// Kafka's `ElectionType` codes.
fn election_type(code: i8) -> Option<ElectionType> {
    match code {
        0 => Some(ElectionType::Preferred),
        1 => Some(ElectionType::Unclean),
        _ => None,
    }
}

/// One partition to elect a leader for, or the code it is answered with without an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Submit an election for it.
    Elect,
    /// Answer with this code (UNKNOWN_TOPIC_OR_PARTITION).
    Answer(i16),
}

/// The partitions a request names, by topic, with what to do for each, against `image`. `None`
/// (all partitions) takes every partition whose election the image says is needed: a leader that
/// is not the preferred replica (PREFERRED), no leader (UNCLEAN).
pub fn targets(
    image: &MetadataImage,
    election: ElectionType,
    wanted: Option<&[(String, Vec<i32>)]>,
) -> BTreeMap<String, BTreeMap<i32, Target>> {
    let mut out: BTreeMap<String, BTreeMap<i32, Target>> = BTreeMap::new();
    match wanted {
        None => {
            for t in image.topics().values() {
                for (&p, reg) in &t.partitions {
                    let needed = match election {
                        ElectionType::Preferred => reg.replicas.first() != Some(&reg.leader),
                        ElectionType::Unclean => reg.leader == NO_LEADER,
                    };
                    if needed {
                        out.entry(t.name.clone())
                            .or_default()
                            .insert(p, Target::Elect);
                    }
                }
            }
        }
        Some(wanted) => {
            for (topic, partitions) in wanted {
                let known = image.topic(topic);
                let entry = out.entry(topic.clone()).or_default();
                for &p in partitions {
                    let target = if known.is_some_and(|t| t.partitions.contains_key(&p)) {
                        Target::Elect
                    } else {
                        Target::Answer(ResponseError::UnknownTopicOrPartition.code())
                    };
                    entry.insert(p, target);
                }
            }
        }
    }
    out
}

fn result(topic: String, partitions: Vec<(i32, i16, Option<StrBytes>)>) -> ReplicaElectionResult {
    ReplicaElectionResult::default()
        .with_topic(TopicName(StrBytes::from_string(topic)))
        .with_partition_result(
            partitions
                .into_iter()
                .map(|(p, code, msg)| {
                    PartitionResult::default()
                        .with_partition_id(p)
                        .with_error_code(code)
                        .with_error_message(msg)
                })
                .collect(),
        )
}

/// Answer ElectLeaders.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &super::authorization::Caller,
    version: i16,
    req: ElectLeadersRequest,
) -> ResponseKind {
    // Kafka: ALTER on the cluster.
    if !ctx.authorize_cluster(caller, rill_core::authorizer::acl::AclOperation::Alter) {
        return ResponseKind::ElectLeaders(
            ElectLeadersResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    // v0 has no election type: preferred.
    let code = if version >= 1 { req.election_type } else { 0 };
    let Some(election) = election_type(code) else {
        return ResponseKind::ElectLeaders(
            ElectLeadersResponse::default().with_error_code(ResponseError::InvalidRequest.code()),
        );
    };
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
            .collect()
    });
    let mut results = Vec::new();
    let Some(cluster) = &ctx.cluster else {
        // This node leads every partition it has: nothing to elect.
        for (topic, partitions) in wanted.unwrap_or_default() {
            let known = ctx.broker.topic(&topic);
            let rows = partitions
                .into_iter()
                .map(|p| {
                    let code = if known
                        .as_ref()
                        .is_some_and(|t| (0..t.partitions).contains(&p))
                    {
                        ResponseError::ElectionNotNeeded.code()
                    } else {
                        ResponseError::UnknownTopicOrPartition.code()
                    };
                    (p, code, None)
                })
                .collect();
            results.push(result(topic, rows));
        }
        return ResponseKind::ElectLeaders(
            ElectLeadersResponse::default().with_replica_election_results(results),
        );
    };
    let all = wanted.is_none();
    for (topic, partitions) in targets(&cluster.image(), election, wanted.as_deref()) {
        let rows = join_all(partitions.into_iter().map(|(p, target)| {
            let cluster = cluster.clone();
            let topic = topic.clone();
            async move {
                match target {
                    Target::Answer(code) => (p, code, None),
                    Target::Elect => match cluster
                        .submit(Command::ElectLeader {
                            topic: topic.clone(),
                            partition: p,
                            election,
                        })
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(%topic, partition = p, ?election, "elected leader");
                            (p, error_codes::NONE, None)
                        }
                        Err(e) => {
                            let (code, msg) = error_codes::submit_error(&e);
                            (p, code, msg)
                        }
                    },
                }
            }
        }))
        .await;
        // For all partitions, Kafka leaves out those that needed no election after all.
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|(_, code, _)| !(all && *code == ResponseError::ElectionNotNeeded.code()))
            .collect();
        if !rows.is_empty() {
            results.push(result(topic, rows));
        }
    }
    ResponseKind::ElectLeaders(
        ElectLeadersResponse::default().with_replica_election_results(results),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::create_topics::tests::TestCluster;
    use rill_core::controller::{CommandOutcome, ControllerError};

    #[test]
    fn all_partitions_means_those_whose_election_is_needed() {
        let mut c = TestCluster::plain(3);
        c.create("t", 3, 3, 0);
        assert!(targets(&c.image, ElectionType::Preferred, None).is_empty());
        // Broker 1 fails and returns: partition 0 (preferred leader 1) is led by another.
        c.fence(1);
        c.unfence(1);
        let got = targets(&c.image, ElectionType::Preferred, None);
        assert_eq!(got.len(), 1);
        let t = &got["t"];
        let moved: Vec<i32> = t.keys().copied().collect();
        let want: Vec<i32> = (0..3)
            .filter(|p| c.partition("t", *p).replicas[0] == 1)
            .collect();
        assert_eq!(moved, want);
        assert!(targets(&c.image, ElectionType::Unclean, None).is_empty());
    }

    #[test]
    fn named_partitions_are_elected_or_unknown_and_the_controller_answers_kafkas_codes() {
        let mut c = TestCluster::plain(2);
        c.create("t", 2, 2, 0);
        let wanted = vec![("t".to_string(), vec![0, 7]), ("nope".to_string(), vec![0])];
        let got = targets(&c.image, ElectionType::Preferred, Some(&wanted));
        assert_eq!(got["t"][&0], Target::Elect);
        let unknown = Target::Answer(ResponseError::UnknownTopicOrPartition.code());
        assert_eq!(got["t"][&7], unknown);
        assert_eq!(got["nope"][&0], unknown);
        // The preferred replica already leads: the controller says ELECTION_NOT_NEEDED (84).
        let err = c
            .run(Command::ElectLeader {
                topic: "t".into(),
                partition: 0,
                election: ElectionType::Preferred,
            })
            .unwrap_err();
        assert_eq!(err, ControllerError::ElectionNotNeeded);
        assert_eq!(error_codes::controller_error_code(&err), 84);
        // After a failover and the preferred replica's return to the ISR, it moves back.
        let leader0 = c.partition("t", 0).replicas[0];
        c.fence(leader0);
        c.unfence(leader0);
        let p = c.partition("t", 0);
        let broker_epoch = c.image.broker(p.leader).unwrap().broker_epoch;
        let topic_id = c.image.topic("t").unwrap().topic_id;
        c.ok(Command::AlterPartition {
            broker_id: p.leader,
            broker_epoch,
            topic_id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: p.replicas.clone(),
        });
        let out = c.ok(Command::ElectLeader {
            topic: "t".into(),
            partition: 0,
            election: ElectionType::Preferred,
        });
        let CommandOutcome::Partition(state) = out else {
            panic!("{out:?}")
        };
        assert_eq!(state.leader, leader0);
    }

    #[test]
    fn election_types_are_kafkas() {
        assert_eq!(election_type(0), Some(ElectionType::Preferred));
        assert_eq!(election_type(1), Some(ElectionType::Unclean));
        assert_eq!(election_type(2), None);
    }
}
