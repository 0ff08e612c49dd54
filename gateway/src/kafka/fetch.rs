//! Fetch (key 1, v4+): whole batches from each requested partition, bounded by `max_bytes` and
//! `partition_max_bytes`; a long poll waits on the partitions' high watermarks until `min_bytes`
//! are available or `max_wait_ms` passes. Sessionless: the response's session id is always 0, so
//! clients send full requests (KIP-227 allows this). Last stable offset = high watermark.
//!
//! A Fetch carrying a replica id (v15+: `ReplicaState.replica_id` / `replica_epoch`; older:
//! `replica_id`) is a follower's: it is answered only on the cluster listener, by the replica
//! manager (reads up to the log end, records the follower's position, KIP-320 diverging epochs),
//! and long-polls on the partitions' appends. On a client listener, or on a node alone, every
//! partition is answered TOPIC_AUTHORIZATION_FAILED, as Kafka answers a follower fetch from a
//! principal without ClusterAction.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::batch::Batches;
use rill_core::log::{LogError, PartitionLog};
use rill_core::replica::{Partition, ReplicaError, ReplicaManager};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::authorization::Caller;
use super::context::ListenerKind;
use super::reply::Reply;
use super::{error_codes, Context};

/// One requested partition, resolved once per request.
struct PartitionPlan {
    index: i32,
    fetch_offset: i64,
    max_bytes: usize,
    log: Result<Arc<PartitionLog>, i16>,
}

/// One requested topic.
struct TopicPlan {
    /// Name to echo (pre-v13) and to look up.
    name: StrBytes,
    /// Id to echo (v13+).
    id: Uuid,
    partitions: Vec<PartitionPlan>,
}

/// The resolved request.
struct Plan {
    topics: Vec<TopicPlan>,
    max_bytes: usize,
}

/// Count the records of the whole v2 batches in `records` (their headers' record counts).
pub fn count_records(records: &[u8]) -> u64 {
    Batches::new(records)
        .map_while(Result::ok)
        .map(|b| u64::try_from(b.header.records_count).unwrap_or(0))
        .sum()
}

fn resolve(ctx: &Context, caller: &Caller, version: i16, req: &FetchRequest) -> Plan {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let meta = if version >= 13 {
                ctx.broker.topic_by_id(t.topic_id)
            } else {
                ctx.broker.topic(&t.topic)
            };
            let missing = if version >= 13 {
                ResponseError::UnknownTopicId.code()
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            };
            let name = meta
                .as_ref()
                .map_or(t.topic.0.as_str(), |m| m.name.as_str());
            let authorized = (version >= 13 && meta.is_none())
                || ctx.authorize(caller, AclOperation::Read, ResourceType::Topic, name);
            let partitions = t
                .partitions
                .iter()
                .map(|p| PartitionPlan {
                    index: p.partition,
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    log: match &meta {
                        _ if !authorized => Err(ResponseError::TopicAuthorizationFailed.code()),
                        Some(m) => ctx
                            .check_client_read(&m.name, p.partition, p.current_leader_epoch)
                            .and_then(|()| {
                                ctx.broker
                                    .partition(&m.name, p.partition)
                                    .map_err(|e| error_codes::broker_error_code(&e))
                            }),
                        None => Err(missing),
                    },
                })
                .collect();
            TopicPlan {
                name: meta
                    .as_ref()
                    .map(|m| StrBytes::from_string(m.name.clone()))
                    .unwrap_or_else(|| t.topic.0.clone()),
                id: t.topic_id,
                partitions,
            }
        })
        .collect();
    Plan {
        topics,
        max_bytes: req.max_bytes.max(1) as usize,
    }
}

/// What one pass over the partitions found.
struct Gathered {
    topics: Vec<FetchableTopicResponse>,
    bytes: usize,
    errors: bool,
}

fn gather(plan: &Plan) -> Gathered {
    let mut remaining = plan.max_bytes;
    let mut bytes = 0usize;
    let mut errors = false;
    let mut topics = Vec::with_capacity(plan.topics.len());
    for t in &plan.topics {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let mut data = PartitionData::default()
                .with_partition_index(p.index)
                .with_records(Some(Bytes::new()));
            match &p.log {
                Err(code) => {
                    errors = true;
                    data = data
                        .with_error_code(*code)
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1);
                }
                Ok(log) => {
                    let limit = p.max_bytes.min(remaining);
                    if limit == 0 && bytes > 0 {
                        let hw = log.high_watermark();
                        data = data
                            .with_high_watermark(hw)
                            .with_last_stable_offset(hw)
                            .with_log_start_offset(log.log_start_offset());
                    } else {
                        match log.read(p.fetch_offset, limit.max(1)) {
                            Ok(r) => {
                                remaining = remaining.saturating_sub(r.records.len());
                                bytes += r.records.len();
                                data = data
                                    .with_high_watermark(r.high_watermark)
                                    .with_last_stable_offset(r.last_stable_offset)
                                    .with_log_start_offset(r.log_start_offset)
                                    .with_records(Some(r.records));
                            }
                            Err(e) => {
                                errors = true;
                                if !matches!(e, LogError::OffsetOutOfRange { .. }) {
                                    tracing::warn!(partition = p.index, error = %e, "fetch read failed");
                                }
                                data = data
                                    .with_error_code(error_codes::log_error_code(&e))
                                    .with_high_watermark(log.high_watermark())
                                    .with_last_stable_offset(log.high_watermark())
                                    .with_log_start_offset(log.log_start_offset());
                            }
                        }
                    }
                }
            }
            parts.push(data);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(t.name.clone()))
                .with_topic_id(t.id)
                .with_partitions(parts),
        );
    }
    Gathered {
        topics,
        bytes,
        errors,
    }
}

/// The fetching replica and its broker epoch (`-1` before v15), if a follower sent `req`.
fn replica_of(version: i16, req: &FetchRequest) -> Option<(i32, i64)> {
    let (id, epoch) = if version >= 15 {
        (
            req.replica_state.replica_id.0,
            req.replica_state.replica_epoch,
        )
    } else {
        (req.replica_id.0, -1)
    };
    (id >= 0).then_some((id, epoch))
}

/// Handle Fetch; the whole answer is deferred (it may long-poll).
pub fn handle(ctx: &Arc<Context>, caller: &Caller, version: i16, req: FetchRequest) -> Reply {
    let ctx = ctx.clone();
    let caller = caller.clone();
    if req.session_id != 0 {
        // This node never hands out session ids, so an incremental fetch cannot refer to one.
        let resp = FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code())
            .with_session_id(0);
        return Reply::Now(ResponseKind::Fetch(resp));
    }
    if let Some((replica_id, replica_epoch)) = replica_of(version, &req) {
        return match ctx.replicas.clone() {
            Some(replicas) if ctx.listener == ListenerKind::Cluster => {
                handle_replica(ctx, replicas, version, req, replica_id, replica_epoch)
            }
            _ => {
                tracing::warn!(
                    replica_id,
                    listener = ?ctx.listener,
                    "refusing a replica fetch outside the cluster listener"
                );
                Reply::Now(ResponseKind::Fetch(refuse_replica_fetch(&req)))
            }
        };
    }
    Reply::Later(Box::pin(async move {
        let plan = Arc::new(resolve(&ctx, &caller, version, &req));
        let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
        let min_bytes = req.min_bytes.max(0) as usize;
        let mut watches: Vec<watch::Receiver<i64>> = plan
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.log.as_ref().ok().map(|l| l.watch_high_watermark()))
            .collect();
        loop {
            for w in &mut watches {
                w.borrow_and_update();
            }
            let p = plan.clone();
            let gathered = match tokio::task::spawn_blocking(move || gather(&p)).await {
                Ok(g) => g,
                Err(join) => {
                    tracing::error!(error = %join, "fetch task failed");
                    return ResponseKind::Fetch(
                        FetchResponse::default()
                            .with_error_code(ResponseError::UnknownServerError.code()),
                    );
                }
            };
            let done = gathered.bytes >= min_bytes.max(1)
                || gathered.errors
                || min_bytes == 0
                || Instant::now() >= deadline
                || ctx.shutdown.is_cancelled();
            if done {
                if ctx.metrics.enabled() {
                    for t in &gathered.topics {
                        for p in &t.partitions {
                            if let Some(records) = p.records.as_ref().filter(|r| !r.is_empty()) {
                                ctx.metrics.fetched(
                                    t.topic.0.as_str(),
                                    p.partition_index,
                                    records.len() as u64,
                                    count_records(records),
                                );
                            }
                        }
                    }
                }
                return ResponseKind::Fetch(
                    FetchResponse::default()
                        .with_session_id(0)
                        .with_responses(gathered.topics),
                );
            }
            let mut closed = false;
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = ctx.shutdown.cancelled() => {}
                res = async {
                    if watches.is_empty() {
                        std::future::pending::<Result<(), watch::error::RecvError>>().await
                    } else {
                        select_all(watches.iter_mut().map(|w| Box::pin(w.changed()))).await.0
                    }
                } => { closed = res.is_err(); }
            }
            if closed {
                // A log went away (topic deleted): answer now; the next read reports it.
                watches.retain(|w| w.has_changed().is_ok());
            }
        }
    }))
}

/// Every partition of `req` answered TOPIC_AUTHORIZATION_FAILED.
fn refuse_replica_fetch(req: &FetchRequest) -> FetchResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                                .with_records(Some(Bytes::new()))
                        })
                        .collect(),
                )
        })
        .collect();
    FetchResponse::default()
        .with_session_id(0)
        .with_responses(topics)
}

/// One partition of a follower's fetch.
struct ReplicaPartitionPlan {
    index: i32,
    fetch_offset: i64,
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
    max_bytes: usize,
    partition: Option<Arc<Partition>>,
}

/// A follower's fetch, resolved against the hosted partitions.
struct ReplicaPlan {
    replica_id: i32,
    replica_epoch: i64,
    max_bytes: usize,
    /// The code of a partition this node does not host (by topic id from v13).
    missing: i16,
    /// (name or id to echo, partitions)
    topics: Vec<(TopicName, Uuid, Vec<ReplicaPartitionPlan>)>,
}

fn resolve_replica(
    replicas: &ReplicaManager,
    version: i16,
    req: &FetchRequest,
    replica_id: i32,
    replica_epoch: i64,
) -> ReplicaPlan {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| ReplicaPartitionPlan {
                    index: p.partition,
                    fetch_offset: p.fetch_offset,
                    current_leader_epoch: p.current_leader_epoch,
                    last_fetched_epoch: p.last_fetched_epoch,
                    max_bytes: p.partition_max_bytes.max(0) as usize,
                    partition: if version >= 13 {
                        replicas.partition_by_topic_id(t.topic_id, p.partition)
                    } else {
                        replicas.partition(&t.topic, p.partition)
                    },
                })
                .collect();
            (t.topic.clone(), t.topic_id, partitions)
        })
        .collect();
    ReplicaPlan {
        replica_id,
        replica_epoch,
        max_bytes: req.max_bytes.max(1) as usize,
        missing: if version >= 13 {
            ResponseError::UnknownTopicId.code()
        } else {
            ResponseError::UnknownTopicOrPartition.code()
        },
        topics,
    }
}

/// One pass over a follower's partitions. `done` when an answer must go out now (an error, a
/// diverging epoch).
fn gather_replica(replicas: &ReplicaManager, plan: &ReplicaPlan) -> (Gathered, bool) {
    let mut remaining = plan.max_bytes;
    let mut bytes = 0usize;
    let mut urgent = false;
    let mut topics = Vec::with_capacity(plan.topics.len());
    for (name, id, partitions) in &plan.topics {
        let mut parts = Vec::with_capacity(partitions.len());
        for p in partitions {
            let data = PartitionData::default()
                .with_partition_index(p.index)
                .with_records(Some(Bytes::new()));
            let result = match &p.partition {
                None => Err((plan.missing, None, -1)),
                Some(part) => replicas
                    .fetch_for_follower(
                        plan.replica_id,
                        plan.replica_epoch,
                        part.topic(),
                        p.index,
                        p.fetch_offset,
                        p.current_leader_epoch,
                        p.last_fetched_epoch,
                        p.max_bytes.min(remaining).max(1),
                    )
                    .map_err(|e| {
                        if !matches!(
                            e,
                            ReplicaError::Log(LogError::OffsetOutOfRange { .. })
                                | ReplicaError::NotLeaderOrFollower { .. }
                                | ReplicaError::FencedLeaderEpoch { .. }
                                | ReplicaError::UnknownLeaderEpoch { .. }
                        ) {
                            tracing::warn!(
                                topic = part.topic(),
                                partition = p.index,
                                replica = plan.replica_id,
                                error = %e,
                                "follower fetch refused"
                            );
                        }
                        let hint = match e {
                            ReplicaError::NotLeaderOrFollower {
                                leader,
                                leader_epoch,
                                ..
                            } => Some((leader, leader_epoch)),
                            _ => None,
                        };
                        // Out of range: the follower learns this log's start from the answer
                        // (Kafka sends -1 and its followers ask ListOffsets); below it, the
                        // follower starts over there.
                        let log_start = match e {
                            ReplicaError::Log(LogError::OffsetOutOfRange { log_start, .. }) => {
                                log_start
                            }
                            _ => -1,
                        };
                        (error_codes::replica_error_code(&e), hint, log_start)
                    }),
            };
            let data = match result {
                Ok(f) => {
                    remaining = remaining.saturating_sub(f.records.len());
                    bytes += f.records.len();
                    let mut data = data
                        .with_high_watermark(f.high_watermark)
                        .with_last_stable_offset(f.high_watermark)
                        .with_log_start_offset(f.log_start_offset)
                        .with_records(Some(f.records));
                    if let Some(d) = f.diverging_epoch {
                        urgent = true;
                        data = data.with_diverging_epoch(
                            EpochEndOffset::default()
                                .with_epoch(d.leader_epoch)
                                .with_end_offset(d.end_offset),
                        );
                    }
                    data
                }
                Err((code, hint, log_start)) => {
                    urgent = true;
                    let mut data = data
                        .with_error_code(code)
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(log_start);
                    if let Some((leader, leader_epoch)) = hint {
                        data = data.with_current_leader(
                            LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(leader))
                                .with_leader_epoch(leader_epoch),
                        );
                    }
                    data
                }
            };
            parts.push(data);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(name.clone())
                .with_topic_id(*id)
                .with_partitions(parts),
        );
    }
    let gathered = Gathered {
        topics,
        bytes,
        errors: urgent,
    };
    (gathered, urgent)
}

/// A follower's fetch on the cluster listener: answered by the replica manager; waits for
/// appends until `min_bytes` are there or `max_wait_ms` passed.
fn handle_replica(
    ctx: Arc<Context>,
    replicas: Arc<ReplicaManager>,
    version: i16,
    req: FetchRequest,
    replica_id: i32,
    replica_epoch: i64,
) -> Reply {
    Reply::Later(Box::pin(async move {
        let plan = Arc::new(resolve_replica(
            &replicas,
            version,
            &req,
            replica_id,
            replica_epoch,
        ));
        let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
        let min_bytes = req.min_bytes.max(0) as usize;
        let mut appends: Vec<watch::Receiver<i64>> = plan
            .topics
            .iter()
            .flat_map(|(_, _, ps)| ps.iter())
            .filter_map(|p| p.partition.as_ref().map(|p| p.watch_appends()))
            .collect();
        loop {
            for w in &mut appends {
                w.borrow_and_update();
            }
            let (p, r) = (plan.clone(), replicas.clone());
            let (gathered, urgent) =
                match tokio::task::spawn_blocking(move || gather_replica(&r, &p)).await {
                    Ok(g) => g,
                    Err(join) => {
                        tracing::error!(error = %join, "follower fetch task failed");
                        return ResponseKind::Fetch(
                            FetchResponse::default()
                                .with_error_code(ResponseError::UnknownServerError.code()),
                        );
                    }
                };
            let done = urgent
                || min_bytes == 0
                || gathered.bytes >= min_bytes.max(1)
                || Instant::now() >= deadline
                || ctx.shutdown.is_cancelled();
            if done {
                return ResponseKind::Fetch(
                    FetchResponse::default()
                        .with_session_id(0)
                        .with_responses(gathered.topics),
                );
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = ctx.shutdown.cancelled() => {}
                _ = async {
                    if appends.is_empty() {
                        std::future::pending::<()>().await
                    } else {
                        let _ = select_all(appends.iter_mut().map(|w| Box::pin(w.changed()))).await;
                    }
                } => {}
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_records_in_batches() {
        let mut b = rill_core::batch::BatchBuilder::new();
        for v in ["a", "b", "c"] {
            b.push(None, Some(bytes::Bytes::from(v)), 0);
        }
        let one = b.build().unwrap().to_vec();
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert_eq!(count_records(&one), 3);
        assert_eq!(count_records(&two), 6);
        assert_eq!(count_records(&one[..30]), 0);
    }
}
