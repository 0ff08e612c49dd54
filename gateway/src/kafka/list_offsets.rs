//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3), earliest local (-4, same as
//! earliest: there is no remote tier), and the first offset at or after a timestamp.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, ResponseKind};
use kafka_protocol::records::TimestampType;
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::batch::{decode_records, ControlRecords};
use rill_core::log::PartitionLog;

use super::authorization::Caller;
use super::{error_codes, Context};

/// Latest offset.
pub const LATEST: i64 = -1;
/// Earliest offset.
pub const EARLIEST: i64 = -2;
/// Offset of the record with the largest timestamp (KIP-734).
pub const MAX_TIMESTAMP: i64 = -3;
/// Earliest offset on local storage (KIP-405).
pub const EARLIEST_LOCAL: i64 = -4;

/// `(offset, timestamp)` for one query, or a Kafka error code.
pub fn lookup(log: &PartitionLog, timestamp: i64) -> Result<(i64, i64), i16> {
    match timestamp {
        LATEST => Ok((log.high_watermark(), -1)),
        EARLIEST | EARLIEST_LOCAL => Ok((log.log_start_offset(), -1)),
        MAX_TIMESTAMP => Ok(log.max_timestamp_offset().unwrap_or((-1, -1))),
        t if t >= 0 => match log.offset_for_timestamp(t) {
            Ok(Some(found)) => Ok(exact_record(log, t, found)),
            Ok(None) => Ok((-1, -1)),
            Err(e) => Err(error_codes::log_error_code(&e)),
        },
        _ => Err(ResponseError::InvalidRequest.code()),
    }
}

/// The leader epoch returned with an answer (v4+, KIP-320; a consumer validates its position
/// with it): for the latest offset the newest epoch, else the epoch that wrote `offset`; on a
/// log whose leaders never recorded an epoch (a node alone), its leader epoch.
fn answer_epoch(log: &PartitionLog, timestamp: i64, offset: i64) -> i32 {
    let epoch = if timestamp == LATEST {
        log.latest_epoch()
    } else {
        log.epoch_for_offset(offset)
    };
    epoch.unwrap_or_else(|| log.leader_epoch())
}

/// The log finds the first *batch* whose max timestamp is >= `target`; inside a compressed batch
/// it cannot see records. Kafka answers with the exact record, so decode (decompressing) that batch
/// and pick the first record at or after `found.0` with timestamp >= `target`. LogAppendTime
/// batches keep the log's answer (every record carries the batch timestamp).
fn exact_record(log: &PartitionLog, target: i64, found: (i64, i64)) -> (i64, i64) {
    let Ok(read) = log.read(found.0, 1) else {
        return found;
    };
    let Ok(records) = decode_records(&read.records, ControlRecords::Skip) else {
        return found;
    };
    records
        .iter()
        .find(|r| {
            r.timestamp_type == TimestampType::Creation
                && r.offset >= found.0
                && r.timestamp >= target
        })
        .map(|r| (r.offset, r.timestamp))
        .unwrap_or(found)
}

/// In a cluster, whether this node leads `topic`-`partition` under an epoch whose start its high
/// watermark has not reached yet.
fn hw_behind_epoch_start(ctx: &Context, topic: &str, partition: i32) -> bool {
    ctx.replicas
        .as_ref()
        .and_then(|r| r.partition(topic, partition))
        .is_some_and(|p| p.hw_behind_epoch_start())
}

/// Answer ListOffsets.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    version: i16,
    req: ListOffsetsRequest,
) -> ResponseKind {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let authorized =
                ctx.authorize(caller, AclOperation::Describe, ResourceType::Topic, &t.name);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let result = authorized
                        .then_some(())
                        .ok_or(ResponseError::TopicAuthorizationFailed.code())
                        .and_then(|()| {
                            ctx.check_client_read(
                                &t.name,
                                p.partition_index,
                                p.current_leader_epoch,
                            )
                        })
                        .and_then(|()| {
                            ctx.broker
                                .partition(&t.name, p.partition_index)
                                .map_err(|e| error_codes::broker_error_code(&e))
                        })
                        .and_then(|log| {
                            if p.timestamp == LATEST
                                && hw_behind_epoch_start(ctx, &t.name, p.partition_index)
                            {
                                // A new leader that cannot tell yet which records are committed.
                                return Err(ResponseError::OffsetNotAvailable.code());
                            }
                            lookup(&log, p.timestamp).map(|(offset, ts)| {
                                (offset, ts, answer_epoch(&log, p.timestamp, offset))
                            })
                        });
                    match result {
                        Ok((offset, timestamp, epoch)) => {
                            let resp = resp.with_offset(offset).with_timestamp(timestamp);
                            if version >= 4 {
                                resp.with_leader_epoch(if offset < 0 { -1 } else { epoch })
                            } else {
                                resp
                            }
                        }
                        Err(code) => resp
                            .with_error_code(code)
                            .with_offset(-1)
                            .with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
}
