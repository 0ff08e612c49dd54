//! OffsetFetch (key 9), v1-9: committed offsets (with leader epoch and metadata) of a group's
//! partitions, or of all its partitions when no topics are given (v2+). v8+ asks for several
//! groups at once. Partitions without a commit answer offset -1.
//!
//! With the authorizer on: DESCRIBE on the group (else GROUP_AUTHORIZATION_FAILED) and on each
//! topic: a named topic without it is answered TOPIC_AUTHORIZATION_FAILED, and a fetch of all
//! the group's offsets leaves such topics out, as Kafka.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::group::{CommittedOffset, GroupError, TopicPartition};

use super::authorization::Caller;
use super::Context;

/// One partition's answer.
struct Row {
    partition: i32,
    offset: i64,
    epoch: i32,
    metadata: String,
    error: i16,
}

/// Offsets of one group by topic (in request order when topics were named), or a group error.
fn fetch(
    ctx: &Context,
    caller: &Caller,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<(String, Vec<Row>)>, i16> {
    if !ctx.authorize(
        caller,
        AclOperation::Describe,
        ResourceType::Group,
        group_id,
    ) {
        return Err(ResponseError::GroupAuthorizationFailed.code());
    }
    let named = topics.is_some();
    let groups = ctx
        .coordinator(group_id)
        .map_err(|e| GroupError::code(&e))?;
    let wanted: Option<Vec<TopicPartition>> = topics.as_ref().map(|ts| {
        ts.iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .collect()
    });
    let found = groups
        .fetch_offsets(group_id, wanted.as_deref())
        .map_err(|e| GroupError::code(&e))?;
    let mut out: Vec<(String, Vec<Row>)> = Vec::new();
    let mut last_checked: Option<(String, bool)> = None;
    for ((topic, partition), c) in found {
        let allowed = match &last_checked {
            Some((t, ok)) if *t == topic => *ok,
            _ => {
                let ok = if named {
                    ctx.authorize(caller, AclOperation::Describe, ResourceType::Topic, &topic)
                } else {
                    ctx.authorize_quietly(
                        caller,
                        AclOperation::Describe,
                        ResourceType::Topic,
                        &topic,
                    )
                };
                last_checked = Some((topic.clone(), ok));
                ok
            }
        };
        if !allowed && !named {
            continue;
        }
        let row = match c {
            _ if !allowed => Row {
                partition,
                offset: -1,
                epoch: -1,
                metadata: String::new(),
                error: ResponseError::TopicAuthorizationFailed.code(),
            },
            Some(CommittedOffset {
                offset,
                leader_epoch,
                metadata,
                ..
            }) => Row {
                partition,
                offset,
                epoch: leader_epoch,
                metadata,
                error: 0,
            },
            None => Row {
                partition,
                offset: -1,
                epoch: -1,
                metadata: String::new(),
                error: 0,
            },
        };
        match out.last_mut() {
            Some((t, rows)) if *t == topic => rows.push(row),
            _ => out.push((topic, vec![row])),
        }
    }
    Ok(out)
}

/// Answer OffsetFetch.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    version: i16,
    req: OffsetFetchRequest,
) -> ResponseKind {
    let epoch = |e: i32| if version >= 5 { e } else { -1 };
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let resp = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match fetch(ctx, caller, &g.group_id.0, topics) {
                    Err(code) => resp.with_error_code(code),
                    Ok(found) => resp.with_topics(
                        found
                            .into_iter()
                            .map(|(t, rows)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(StrBytes::from_string(t)))
                                    .with_partitions(
                                        rows.into_iter()
                                            .map(|r| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(r.partition)
                                                    .with_committed_offset(r.offset)
                                                    .with_committed_leader_epoch(epoch(r.epoch))
                                                    .with_metadata(Some(StrBytes::from_string(
                                                        r.metadata,
                                                    )))
                                                    .with_error_code(r.error)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                }
            })
            .collect();
        return ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_groups(groups));
    }
    let requested: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let partition = |r: Row| {
        OffsetFetchResponsePartition::default()
            .with_partition_index(r.partition)
            .with_committed_offset(r.offset)
            .with_committed_leader_epoch(epoch(r.epoch))
            .with_metadata(Some(StrBytes::from_string(r.metadata)))
            .with_error_code(r.error)
    };
    let resp = match fetch(ctx, caller, &req.group_id.0, requested.clone()) {
        Ok(found) => OffsetFetchResponse::default().with_topics(
            found
                .into_iter()
                .map(|(t, rows)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t)))
                        .with_partitions(rows.into_iter().map(partition).collect())
                })
                .collect(),
        ),
        Err(code) => {
            // v2+ carry a top-level error; v1 only has per-partition errors.
            let topics = requested
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t)))
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    partition(Row {
                                        partition: p,
                                        offset: -1,
                                        epoch: -1,
                                        metadata: String::new(),
                                        error: code,
                                    })
                                })
                                .collect(),
                        )
                })
                .collect();
            let resp = OffsetFetchResponse::default().with_topics(topics);
            if version >= 2 {
                resp.with_error_code(code)
            } else {
                resp
            }
        }
    };
    ResponseKind::OffsetFetch(resp)
}
