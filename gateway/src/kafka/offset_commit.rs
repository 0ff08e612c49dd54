//! OffsetCommit (key 8), v2-9: store the committed offset, leader epoch and metadata of
//! partitions for a group. Group members must pass their member id and generation; commits with
//! generation -1 and no member id (admin tools) are accepted for empty groups only. Each commit is
//! one durable redb transaction, done on the blocking pool.
//!
//! With the authorizer on: READ on the group (else every partition is answered
//! GROUP_AUTHORIZATION_FAILED) and READ on each topic (TOPIC_AUTHORIZATION_FAILED), as Kafka.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, ResponseKind};
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::group::{GroupError, OffsetCommitEntry, OffsetCommitRequest as Commit};

use super::authorization::Caller;
use super::Context;

/// Answer OffsetCommit.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    version: i16,
    req: OffsetCommitRequest,
) -> ResponseKind {
    let group_ok = ctx.authorize(
        caller,
        AclOperation::Read,
        ResourceType::Group,
        &req.group_id,
    );
    // Partitions of unknown topics are refused one by one; the rest go to the coordinator.
    let mut codes: Vec<Vec<Option<i16>>> = Vec::with_capacity(req.topics.len());
    let mut entries = Vec::new();
    for t in &req.topics {
        let topic_ok =
            group_ok && ctx.authorize(caller, AclOperation::Read, ResourceType::Topic, &t.name);
        let partitions = ctx.broker.topic(&t.name.0).map(|m| m.partitions);
        let mut row = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let known = partitions.is_some_and(|n| p.partition_index >= 0 && p.partition_index < n);
            if !group_ok {
                row.push(Some(ResponseError::GroupAuthorizationFailed.code()));
            } else if !topic_ok {
                row.push(Some(ResponseError::TopicAuthorizationFailed.code()));
            } else if known {
                row.push(None);
                entries.push(OffsetCommitEntry {
                    topic: t.name.0.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            } else {
                row.push(Some(ResponseError::UnknownTopicOrPartition.code()));
            }
        }
        codes.push(row);
    }
    let commit = Commit {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id_or_member_epoch,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        retention_ms: if version <= 4 && req.retention_time_ms >= 0 {
            u64::try_from(req.retention_time_ms).ok()
        } else {
            None
        },
        offsets: entries,
    };
    let outcome = match ctx.coordinator(&commit.group_id) {
        Ok(groups) => tokio::task::spawn_blocking(move || groups.commit_offsets(&commit))
            .await
            .unwrap_or(Err(GroupError::CoordinatorNotAvailable)),
        Err(e) => Err(e),
    };
    let mut results = match &outcome {
        Ok(r) => r
            .iter()
            .map(|r| r.as_ref().err().map_or(0, GroupError::code))
            .collect(),
        Err(_) => Vec::new(),
    }
    .into_iter();
    let group_error = outcome.as_ref().err().map(GroupError::code);
    let topics = req
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, row)| {
            let partitions = t
                .partitions
                .iter()
                .zip(row)
                .map(|(p, pre)| {
                    let code = match (pre, group_error) {
                        (Some(c), _) => c,
                        (None, Some(c)) => c,
                        (None, None) => results.next().unwrap_or(0),
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics))
}
