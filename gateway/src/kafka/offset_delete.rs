//! OffsetDelete (key 47), v0: delete committed offsets of partitions a group no longer consumes
//! (GROUP_SUBSCRIBED_TO_TOPIC for topics its members subscribe to).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, ResponseKind};
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::group::GroupError;

use super::authorization::Caller;
use super::Context;

/// Answer OffsetDelete.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    _version: i16,
    req: OffsetDeleteRequest,
) -> ResponseKind {
    // Kafka: DELETE on the group, READ on each topic.
    if !ctx.authorize(
        caller,
        AclOperation::Delete,
        ResourceType::Group,
        &req.group_id,
    ) {
        return ResponseKind::OffsetDelete(
            OffsetDeleteResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        );
    }
    let mut wanted = Vec::new();
    let mut pre: Vec<Vec<Option<i16>>> = Vec::new();
    for t in &req.topics {
        let n = ctx.broker.topic(&t.name.0).map(|m| m.partitions);
        let topic_ok = ctx.authorize(caller, AclOperation::Read, ResourceType::Topic, &t.name);
        pre.push(
            t.partitions
                .iter()
                .map(|p| {
                    if !topic_ok {
                        Some(ResponseError::TopicAuthorizationFailed.code())
                    } else if n.is_some_and(|n| p.partition_index >= 0 && p.partition_index < n) {
                        wanted.push((t.name.0.to_string(), p.partition_index));
                        None
                    } else {
                        Some(ResponseError::UnknownTopicOrPartition.code())
                    }
                })
                .collect(),
        );
    }
    let group_id = req.group_id.0.to_string();
    let outcome = match ctx.coordinator(&group_id) {
        Ok(groups) => {
            tokio::task::spawn_blocking(move || groups.delete_offsets(&group_id, &wanted))
                .await
                .unwrap_or(Err(GroupError::CoordinatorNotAvailable))
        }
        Err(e) => Err(e),
    };
    let results = match outcome {
        Err(e) => {
            return ResponseKind::OffsetDelete(
                OffsetDeleteResponse::default().with_error_code(e.code()),
            )
        }
        Ok(r) => r,
    };
    let mut results = results.into_iter();
    let topics = req
        .topics
        .into_iter()
        .zip(pre)
        .map(|(t, row)| {
            let partitions = t
                .partitions
                .iter()
                .zip(row)
                .map(|(p, pre)| {
                    let code = pre.unwrap_or_else(|| {
                        results.next().and_then(|r| r.err()).map_or(0, |e| e.code())
                    });
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_topics(topics))
}
