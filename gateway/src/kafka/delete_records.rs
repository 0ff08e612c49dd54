//! DeleteRecords (key 21): advance a partition's log start offset (`-1` means the high watermark).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, ResponseKind};
use rill_core::authorizer::acl::{AclOperation, ResourceType};

use super::authorization::Caller;
use super::{error_codes, Context};

/// Answer DeleteRecords.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    _version: i16,
    req: DeleteRecordsRequest,
) -> ResponseKind {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        let authorized = ctx.authorize(caller, AclOperation::Delete, ResourceType::Topic, &t.name);
        for p in &t.partitions {
            let resp = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            if !authorized {
                partitions
                    .push(resp.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let log = match ctx.broker.partition(&t.name, p.partition_index) {
                Ok(log) => log,
                Err(e) => {
                    partitions.push(resp.with_error_code(error_codes::broker_error_code(&e)));
                    continue;
                }
            };
            let hw = log.high_watermark();
            let target = if p.offset == -1 { hw } else { p.offset };
            if target < 0 || target > hw {
                partitions.push(resp.with_error_code(ResponseError::OffsetOutOfRange.code()));
                continue;
            }
            let outcome =
                tokio::task::spawn_blocking(move || log.delete_records_before(target)).await;
            partitions.push(match outcome {
                Ok(Ok(low)) => resp.with_low_watermark(low),
                Ok(Err(e)) => resp.with_error_code(error_codes::log_error_code(&e)),
                Err(_) => resp.with_error_code(ResponseError::UnknownServerError.code()),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics))
}
