//! Produce (key 0): append record batches as sent (compressed batches stay compressed), then wait
//! for the flush policy before acknowledging (acks 1 and all are the same on a node without
//! replicas); acks 0 sends no response and closes the connection if an append failed.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use rill_core::log::{AppendInfo, PartitionLog};

use super::dispatch::Reply;
use super::{error_codes, Context};

/// Size of the v2 batch prefix that carries the length: baseOffset (8) + batchLength (4).
const LENGTH_PREFIX: usize = 12;

/// Check the framing of a record set and the size of each batch against `max_message_bytes`.
/// Returns the number of batches.
pub fn check_batches(records: &[u8], max_message_bytes: usize) -> Result<usize, (i16, String)> {
    let mut pos = 0usize;
    let mut count = 0usize;
    if records.is_empty() {
        return Err((
            ResponseError::CorruptMessage.code(),
            "empty record set".to_string(),
        ));
    }
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < LENGTH_PREFIX {
            return Err((
                ResponseError::CorruptMessage.code(),
                format!("truncated batch header at byte {pos}"),
            ));
        }
        let len = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if len < 0 {
            return Err((
                ResponseError::CorruptMessage.code(),
                format!("negative batch length {len} at byte {pos}"),
            ));
        }
        let size = LENGTH_PREFIX + len as usize;
        if size > max_message_bytes {
            return Err((
                ResponseError::MessageTooLarge.code(),
                format!("batch of {size} bytes exceeds max.message.bytes {max_message_bytes}"),
            ));
        }
        if size > rest.len() {
            return Err((
                ResponseError::CorruptMessage.code(),
                format!(
                    "truncated batch at byte {pos}: {size} bytes declared, {} present",
                    rest.len()
                ),
            ));
        }
        pos += size;
        count += 1;
    }
    Ok(count)
}

/// Outcome of one partition's append.
enum Appended {
    Ok(Arc<PartitionLog>, AppendInfo),
    Err(i16, String),
}

fn append_one(ctx: &Context, topic: &str, partition: i32, records: Option<&Bytes>) -> Appended {
    let log = match ctx.broker.partition(topic, partition) {
        Ok(log) => log,
        Err(e) => {
            let (code, _) = error_codes::broker_error(&e);
            return Appended::Err(code, e.to_string());
        }
    };
    let Some(records) = records else {
        return Appended::Err(
            ResponseError::CorruptMessage.code(),
            "null record set".to_string(),
        );
    };
    let max = ctx
        .broker
        .topic(topic)
        .map(|t| t.config.max_message_bytes)
        .unwrap_or(usize::MAX);
    if let Err((code, msg)) = check_batches(records, max) {
        return Appended::Err(code, msg);
    }
    match log.append(records, 0) {
        Ok(info) => {
            ctx.metrics
                .produced(records.len() as u64, u64::from(info.record_count));
            Appended::Ok(log, info)
        }
        Err(e) => Appended::Err(error_codes::log_error_code(&e), e.to_string()),
    }
}

/// Handle Produce. Appends happen before this returns (so pipelined requests stay ordered);
/// the flush wait is the deferred part.
pub async fn handle(ctx: &Arc<Context>, version: i16, req: ProduceRequest) -> Reply {
    if req.transactional_id.is_some() {
        // Transactions are not implemented; InitProducerId is not advertised, so a
        // well-behaved client never sends this.
        if req.acks == 0 {
            return Reply::Close("transactional produce is not supported".to_string());
        }
    }
    let mut results: Vec<(String, Vec<(i32, Appended)>)> = Vec::new();
    let mut failed = false;
    for topic in &req.topic_data {
        let name = topic.name.0.to_string();
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        for p in &topic.partition_data {
            let outcome = if req.transactional_id.is_some() {
                Appended::Err(
                    ResponseError::TransactionalIdAuthorizationFailed.code(),
                    "transactions are not supported by this node".to_string(),
                )
            } else {
                append_one(ctx, &name, p.index, p.records.as_ref())
            };
            if let Appended::Err(code, msg) = &outcome {
                failed = true;
                ctx.metrics.error(*code);
                tracing::debug!(topic = %name, partition = p.index, code, error = %msg, "produce rejected");
            }
            parts.push((p.index, outcome));
        }
        results.push((name, parts));
    }
    if req.acks == 0 {
        return if failed {
            Reply::Close("a produce with acks=0 failed".to_string())
        } else {
            Reply::Nothing
        };
    }
    Reply::Later(Box::pin(async move {
        let topics = join_all(results.into_iter().map(|(name, parts)| async move {
            let partition_responses =
                join_all(parts.into_iter().map(|(index, outcome)| async move {
                    partition_response(version, index, outcome).await
                }))
                .await;
            TopicProduceResponse::default()
                .with_name(kafka_protocol::messages::TopicName(StrBytes::from_string(
                    name,
                )))
                .with_partition_responses(partition_responses)
        }))
        .await;
        ResponseKind::Produce(ProduceResponse::default().with_responses(topics))
    }))
}

/// Wait for durability of one partition's append and build its response.
async fn partition_response(
    version: i16,
    index: i32,
    outcome: Appended,
) -> PartitionProduceResponse {
    let resp = PartitionProduceResponse::default().with_index(index);
    let (code, msg) = match outcome {
        Appended::Ok(log, info) => {
            let last = info.last_offset;
            let flushed = tokio::task::spawn_blocking(move || log.flush_to(last)).await;
            match flushed {
                Ok(Ok(())) => {
                    return resp
                        .with_base_offset(info.base_offset)
                        .with_log_append_time_ms(info.log_append_time)
                        .with_log_start_offset(info.log_start_offset);
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "flush failed; produce not acknowledged");
                    (error_codes::log_error_code(&e), e.to_string())
                }
                Err(join) => (ResponseError::UnknownServerError.code(), join.to_string()),
            }
        }
        Appended::Err(code, msg) => (code, msg),
    };
    let resp = resp.with_error_code(code).with_base_offset(-1);
    if version >= 8 {
        resp.with_error_message(error_codes::message(msg))
    } else {
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(len: i32, total: usize) -> Vec<u8> {
        let mut b = vec![0u8; total];
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b
    }

    #[test]
    fn batch_framing_checks() {
        assert_eq!(check_batches(&batch(49, 61), 1000), Ok(1));
        let mut two = batch(49, 61);
        two.extend(batch(59, 71));
        assert_eq!(check_batches(&two, 1000), Ok(2));
        assert_eq!(check_batches(&batch(100, 61), 1000).unwrap_err().0, 2);
        assert_eq!(check_batches(&batch(-1, 61), 1000).unwrap_err().0, 2);
        assert_eq!(check_batches(&[0u8; 5], 1000).unwrap_err().0, 2);
        assert_eq!(check_batches(&[], 1000).unwrap_err().0, 2);
        assert_eq!(check_batches(&batch(49, 61), 60).unwrap_err().0, 10);
    }
}
