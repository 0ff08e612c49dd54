//! CreatePartitions (key 37): grow a topic to a new total partition count.
//!
//! In a cluster the new partitions are placed (or taken from the request's assignments) against
//! the metadata image with the topic's replication factor, continuing Kafka's round robin
//! ([`plan_partitions`]), and added by the controller (`Command::CreatePartitions`).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, ResponseKind};
use rill_core::broker::MAX_PARTITIONS;
use rill_core::controller::placement::{assign_replicas, PlacementStart};
use rill_core::controller::{Command, MetadataImage};

use super::cluster_view::ClusterView;
use super::create_topics::{check_assignments, placement_brokers, Refusal};
use rill_core::authorizer::acl::{AclOperation, ResourceType};

use super::authorization::Caller;
use super::{error_codes, Context};

/// The replica lists of the partitions to add so that `topic` has `count` in all, against
/// `image`: `assignments` when the request names them, else placed over the usable brokers with
/// the topic's replication factor (`start`: where the round robin starts).
pub fn plan_partitions(
    image: &MetadataImage,
    topic: &str,
    count: i32,
    assignments: Option<Vec<Vec<i32>>>,
    start: PlacementStart,
) -> Result<Vec<Vec<i32>>, Refusal> {
    let refuse = |code: ResponseError, m: String| (code.code(), error_codes::message(m));
    let t = image.topic(topic).ok_or_else(|| {
        refuse(
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{topic}' does not exist"),
        )
    })?;
    let current = t.partitions.len() as i32;
    if count <= current {
        return Err(refuse(
            ResponseError::InvalidPartitions,
            format!("topic '{topic}' has {current} partitions, which is not fewer than the requested {count}"),
        ));
    }
    if count > MAX_PARTITIONS {
        return Err(refuse(
            ResponseError::InvalidPartitions,
            format!("{count} partitions are more than {MAX_PARTITIONS}"),
        ));
    }
    let rf = t.partitions.values().next().map_or(1, |p| p.replicas.len());
    match assignments {
        Some(lists) => {
            if lists.len() as i32 != count - current {
                return Err(refuse(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "{} assignments for {} new partitions",
                        lists.len(),
                        count - current
                    ),
                ));
            }
            check_assignments(image, &lists, Some(rf))?;
            Ok(lists)
        }
        None => assign_replicas(
            &placement_brokers(image),
            count - current,
            rf as i32,
            current,
            start,
        )
        .map_err(|e| error_codes::placement_error(&e)),
    }
}

/// Grows one topic through the controller (or checks that it could be, for `validate_only`).
async fn grow_in_cluster(
    cluster: &Arc<dyn ClusterView>,
    t: &CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), Refusal> {
    let topic = t.name.0.to_string();
    let assignments = t.assignments.as_ref().map(|a| {
        a.iter()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect()
    });
    let lists = plan_partitions(
        &cluster.image(),
        &topic,
        t.count,
        assignments,
        PlacementStart::random(),
    )?;
    if validate_only {
        return Ok(());
    }
    cluster
        .submit(Command::CreatePartitions {
            topic,
            assignments: lists,
        })
        .await
        .map(|_| ())
        .map_err(|e| error_codes::submit_error(&e))
}

/// Answer CreatePartitions.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    _version: i16,
    req: CreatePartitionsRequest,
) -> ResponseKind {
    if let Some(cluster) = &ctx.cluster {
        let mut results = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            if !ctx.authorize(caller, AclOperation::Alter, ResourceType::Topic, &t.name) {
                results
                    .push(result.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            results.push(match grow_in_cluster(cluster, t, req.validate_only).await {
                Ok(()) => {
                    if !req.validate_only {
                        tracing::info!(topic = %t.name.0, partitions = t.count, "grew topic");
                    }
                    result
                }
                Err((code, msg)) => result.with_error_code(code).with_error_message(msg),
            });
        }
        return ResponseKind::CreatePartitions(
            CreatePartitionsResponse::default().with_results(results),
        );
    }
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if !ctx.authorize(caller, AclOperation::Alter, ResourceType::Topic, &t.name) {
            results.push(result.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
            continue;
        }
        if let Some(assignments) = &t.assignments {
            let ok = assignments
                .iter()
                .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == ctx.node_id);
            if !ok {
                results.push(
                    result
                        .with_error_code(ResponseError::InvalidReplicaAssignment.code())
                        .with_error_message(error_codes::message(format!(
                            "new partitions must be assigned to this node ({}) alone",
                            ctx.node_id
                        ))),
                );
                continue;
            }
        }
        let broker = ctx.broker.clone();
        let name = t.name.0.to_string();
        let (count, validate_only) = (t.count, req.validate_only);
        let outcome = tokio::task::spawn_blocking(move || {
            broker.create_partitions(&name, count, validate_only)
        })
        .await;
        results.push(match error_codes::blocking_broker_result(outcome) {
            Ok(()) => {
                if !validate_only {
                    tracing::info!(topic = %t.name.0, partitions = count, "grew topic");
                }
                result
            }
            Err((code, msg)) => result.with_error_code(code).with_error_message(msg),
        });
    }
    ResponseKind::CreatePartitions(CreatePartitionsResponse::default().with_results(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::create_topics::tests::TestCluster;

    #[test]
    fn new_partitions_keep_the_replication_factor_and_continue_the_round_robin() {
        let mut c = TestCluster::plain(3);
        c.create("t", 3, 2, 0);
        let lists = plan_partitions(&c.image, "t", 6, None, PlacementStart::fixed(0)).unwrap();
        assert_eq!(lists.len(), 3);
        assert!(lists.iter().all(|r| r.len() == 2 && r[0] != r[1]));
        // Leaders continue the rotation of partitions 0..3 (first replica (p + start) % n).
        let leaders: Vec<i32> = lists.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3]);
        c.ok(Command::CreatePartitions {
            topic: "t".into(),
            assignments: lists,
        });
        assert_eq!(c.image.topic("t").unwrap().partitions.len(), 6);
    }

    #[test]
    fn counts_and_assignments_are_checked() {
        let mut c = TestCluster::plain(3);
        c.create("t", 3, 2, 0);
        let code = |count: i32, a: Option<Vec<Vec<i32>>>| {
            plan_partitions(&c.image, "t", count, a, PlacementStart::fixed(0)).map_err(|e| e.0)
        };
        assert_eq!(code(3, None), Err(ResponseError::InvalidPartitions.code()));
        assert_eq!(code(2, None), Err(ResponseError::InvalidPartitions.code()));
        assert_eq!(
            code(5, Some(vec![vec![1, 2]])),
            Err(ResponseError::InvalidReplicaAssignment.code())
        );
        assert_eq!(
            code(4, Some(vec![vec![1]])),
            Err(ResponseError::InvalidReplicaAssignment.code())
        );
        assert_eq!(code(4, Some(vec![vec![3, 1]])), Ok(vec![vec![3, 1]]));
        assert_eq!(
            plan_partitions(&c.image, "nope", 4, None, PlacementStart::fixed(0)).map_err(|e| e.0),
            Err(ResponseError::UnknownTopicOrPartition.code())
        );
    }
}
