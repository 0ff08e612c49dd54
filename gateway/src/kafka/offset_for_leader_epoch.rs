//! OffsetForLeaderEpoch (key 23): every partition has had one leader epoch, 0, which ends at the
//! log end offset. Consumers use this to detect truncation after a leader change; here there is
//! none.

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
                    let resp = EpochEndOffset::default().with_partition(p.partition);
                    if !authorized {
                        return resp
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let log = match ctx.broker.partition(&t.topic, p.partition) {
                        Ok(log) => log,
                        Err(e) => return resp.with_error_code(error_codes::broker_error_code(&e)),
                    };
                    if p.current_leader_epoch > 0 {
                        return resp.with_error_code(ResponseError::UnknownLeaderEpoch.code());
                    }
                    if p.leader_epoch == 0 {
                        resp.with_leader_epoch(0)
                            .with_end_offset(log.log_end_offset())
                    } else {
                        // Unknown epoch: UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET.
                        resp.with_leader_epoch(-1).with_end_offset(-1)
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics))
}
