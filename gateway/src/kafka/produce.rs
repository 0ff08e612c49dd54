//! Produce (key 0): append record batches as sent (compressed batches stay compressed), then wait
//! for the flush policy before acknowledging (acks 1 and all are the same on a node without
//! replicas); acks 0 sends no response and closes the connection if an append failed.
//!
//! Backlog pause (`rill_core::backlog`): while a topic's producers are held back, the request
//! waits (the connection is not read meanwhile) until the pressure clears or its `timeout_ms`
//! expires; the held-back topics are then answered `REQUEST_TIMED_OUT` (retriable) and nothing
//! is appended for them.
//!
//! In a cluster (the context has a replica manager) every partition goes through
//! [`ReplicaManager::append_to_leader`](rill_core::replica::ReplicaManager::append_to_leader):
//! NOT_LEADER_OR_FOLLOWER where this node does not lead, NOT_ENOUGH_REPLICAS for acks=all below
//! `min.insync.replicas`, and acks=all waits for the high watermark (REQUEST_TIMED_OUT after
//! `timeout_ms`, NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER if leadership moves).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestHeader, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::log::{AppendInfo, PartitionLog};
use rill_core::replica::{PendingAppend, RequiredAcks};
use tracing::{Instrument, Span};

use super::authorization::Caller;
use super::reply::Reply;
use super::{error_codes, Context};
use crate::telemetry::PRODUCE_TARGET;

/// One partition of a Produce after its append: index, outcome and its `produce` span.
type PartitionAppend = (i32, Appended, Span);

/// Outcome of one partition's append.
enum Appended {
    Ok(Arc<PartitionLog>, AppendInfo),
    /// Appended on this leader of a replicated partition; acknowledged as the acks say.
    Replicated(PendingAppend),
    Err(i16, String),
}

fn append_one(
    ctx: &Context,
    topic: &str,
    partition: i32,
    records: Option<&Bytes>,
    acks: i16,
) -> Appended {
    if let Some(replicas) = &ctx.replicas {
        let Some(records) = records else {
            return Appended::Err(
                ResponseError::CorruptMessage.code(),
                "null record set".to_string(),
            );
        };
        let Some(acks) = RequiredAcks::from_kafka(acks) else {
            return Appended::Err(
                ResponseError::InvalidRequiredAcks.code(),
                format!("acks must be -1, 0 or 1, not {acks}"),
            );
        };
        return match replicas.append_to_leader(topic, partition, records, acks) {
            Ok(pending) => {
                ctx.metrics.produced(
                    topic,
                    partition,
                    records.len() as u64,
                    u64::from(pending.info().record_count),
                );
                Appended::Replicated(pending)
            }
            Err(e) => Appended::Err(error_codes::replica_error_code(&e), e.to_string()),
        };
    }
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
    // The log validates framing, CRC, magic and max.message.bytes (error_codes maps each).
    match log.append(records) {
        Ok(info) => {
            ctx.metrics.produced(
                topic,
                partition,
                records.len() as u64,
                u64::from(info.record_count),
            );
            Appended::Ok(log, info)
        }
        Err(e) => Appended::Err(error_codes::log_error_code(&e), e.to_string()),
    }
}

/// Handle Produce. Appends happen before this returns (so pipelined requests stay ordered);
/// the flush wait is the deferred part.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    header: &RequestHeader,
    req: ProduceRequest,
) -> Reply {
    let version = header.request_api_version;
    let client_id = header.client_id.as_deref().unwrap_or("");
    if req.transactional_id.is_some() {
        // Transactions are not implemented; InitProducerId refuses transactional ids, so a
        // well-behaved client never sends this.
        if req.acks == 0 {
            return Reply::Close("transactional produce is not supported".to_string());
        }
    }
    wait_for_backlog(ctx, &req).await;
    let backlog = ctx.broker.backlog();
    let mut results: Vec<(String, Vec<PartitionAppend>)> = Vec::new();
    let mut failed = false;
    for topic in &req.topic_data {
        let name = topic.name.0.to_string();
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        let authorized = ctx.authorize(caller, AclOperation::Write, ResourceType::Topic, &name);
        for p in &topic.partition_data {
            let span = tracing::info_span!(
                target: PRODUCE_TARGET,
                "produce",
                topic = %name,
                partition = p.index,
                client_id,
                acks = req.acks,
                bytes = p.records.as_ref().map_or(0, |r| r.len()),
            );
            let entered = span.enter();
            let outcome = if !authorized {
                Appended::Err(
                    ResponseError::TopicAuthorizationFailed.code(),
                    format!("{} may not WRITE topic {name}", caller.principal),
                )
            } else if req.transactional_id.is_some() {
                Appended::Err(
                    ResponseError::TransactionalIdAuthorizationFailed.code(),
                    "transactions are not supported by this node".to_string(),
                )
            } else if backlog.blocks(&name) {
                Appended::Err(
                    ResponseError::RequestTimedOut.code(),
                    "producers paused: unmirrored backlog near the topic's retention or the disk budget"
                        .to_string(),
                )
            } else {
                append_one(ctx, &name, p.index, p.records.as_ref(), req.acks)
            };
            if let Appended::Err(code, msg) = &outcome {
                failed = true;
                tracing::debug!(topic = %name, partition = p.index, code, error = %msg, "produce rejected");
            }
            drop(entered);
            parts.push((p.index, outcome, span));
        }
        results.push((name, parts));
    }
    if req.acks == 0 {
        // Nobody waits, but the records only become visible (high watermark) once durable under
        // the flush policy, so flush in the background.
        for (_, parts) in results {
            for (_, outcome, _) in parts {
                if let Appended::Replicated(pending) = outcome {
                    tokio::spawn(pending.wait(Duration::ZERO));
                } else if let Appended::Ok(log, info) = outcome {
                    let (log, last) = (log.clone(), info.last_offset);
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = log.flush_to(last) {
                            tracing::error!(error = %e, "background flush after acks=0 failed");
                        }
                    });
                }
            }
        }
        return if failed {
            Reply::Close("a produce with acks=0 failed".to_string())
        } else {
            Reply::Nothing
        };
    }
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0));
    Reply::Later(Box::pin(async move {
        let topics = join_all(results.into_iter().map(|(name, parts)| async move {
            let partition_responses = join_all(parts.into_iter().map(|(index, outcome, span)| {
                partition_response(version, index, outcome, timeout).instrument(span)
            }))
            .await;
            TopicProduceResponse::default()
                .with_name(kafka_protocol::messages::TopicName(StrBytes::from_string(
                    name,
                )))
                .with_partition_responses(partition_responses)
        }))
        .await;
        let acknowledged = topics
            .iter()
            .flat_map(|t| &t.partition_responses)
            .any(|p| p.error_code == 0);
        if acknowledged {
            rill_core::failpoints::acknowledged();
        }
        ResponseKind::Produce(ProduceResponse::default().with_responses(topics))
    }))
}

/// While producers of a topic in `req` are held back by the backlog policy, wait until they
/// may go on, at most the request's `timeout_ms` (or until the node shuts down).
async fn wait_for_backlog(ctx: &Context, req: &ProduceRequest) {
    let backlog = ctx.broker.backlog();
    let topics: Vec<&str> = req.topic_data.iter().map(|t| t.name.0.as_str()).collect();
    if !backlog.blocks_any(topics.iter().copied()) {
        return;
    }
    let wait = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0));
    tracing::debug!(
        ?topics,
        timeout_ms = req.timeout_ms,
        "produce held back by the backlog policy"
    );
    tokio::select! {
        _ = tokio::time::timeout(wait, backlog.wait_writable(&topics)) => {}
        _ = ctx.shutdown.cancelled() => {}
    }
}

/// Wait for durability of one partition's append and build its response.
async fn partition_response(
    version: i16,
    index: i32,
    outcome: Appended,
    timeout: Duration,
) -> PartitionProduceResponse {
    let resp = PartitionProduceResponse::default().with_index(index);
    let (code, msg) = match outcome {
        Appended::Replicated(pending) => match pending.wait(timeout).await {
            Ok(info) => {
                return resp
                    .with_base_offset(info.base_offset)
                    .with_log_append_time_ms(info.log_append_time)
                    .with_log_start_offset(info.log_start_offset);
            }
            Err(e) => (error_codes::replica_error_code(&e), e.to_string()),
        },
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
