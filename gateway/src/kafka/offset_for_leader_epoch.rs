//! OffsetForLeaderEpoch (key 23), answered from the partition's leader epoch cache (Kafka's
//! `Partition.lastOffsetForLeaderEpoch`): consumers (librdkafka >= 2.1 after every leader change)
//! and followers (KIP-279) ask where an epoch they saw ends, to detect a truncated log.
//!
//! Per partition: a `current_leader_epoch` >= 0 is checked against the log's leader epoch first
//! (older: FENCED_LEADER_EPOCH, newer: UNKNOWN_LEADER_EPOCH); then the answer is the largest epoch
//! <= the requested one and its end offset (the log end offset for the latest epoch), or
//! UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET (-1 / -1) with no error when the cache cannot place it.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ResponseKind,
};
use rill_core::authorizer::acl::{AclOperation, ResourceType};

use super::authorization::Caller;
use super::{error_codes, Context};

/// Answer OffsetForLeaderEpoch.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    _version: i16,
    req: OffsetForLeaderEpochRequest,
) -> ResponseKind {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let authorized = ctx.authorize(
                caller,
                AclOperation::Describe,
                ResourceType::Topic,
                &t.topic,
            );
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let resp = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if !authorized {
                        return resp
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let log = match ctx.broker.partition(&t.topic, p.partition) {
                        Ok(log) => log,
                        Err(e) => return resp.with_error_code(error_codes::broker_error_code(&e)),
                    };
                    let epoch = log.leader_epoch();
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch < epoch {
                        return resp.with_error_code(ResponseError::FencedLeaderEpoch.code());
                    }
                    if p.current_leader_epoch > epoch {
                        return resp.with_error_code(ResponseError::UnknownLeaderEpoch.code());
                    }
                    let (leader_epoch, end_offset) = log.end_offset_for_epoch(p.leader_epoch);
                    resp.with_leader_epoch(leader_epoch)
                        .with_end_offset(end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics))
}
