//! The console's JSON API (`/api/v1/...`), shared by the page and scripts; every answer is read
//! from the node's own components when asked (the history excepted, see [`super::history`]).
//! Keys and values of records travel base64-encoded (`key_b64`, `value_b64`), so binary data
//! survives; the page decodes them for its text, JSON and hex views.
//!
//! Groups: a node alone reads its own coordinator (it coordinates every group); in cluster mode
//! the group calls go through the Kafka client to every group's coordinator
//! ([`super::kafka_groups`]), so every node shows every group. Node-local: MQTT clients are
//! those connected to this node, bridge mirrors those it runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use rill_core::batch::{decode_records, BatchBuilder, ControlRecords};
use rill_core::clock::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::Console;
use crate::group_metrics::partition_lag;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Most records one messages call returns.
pub const MAX_MESSAGES: usize = 500;

/// Why an API call failed (answered as `{"error": "..."}` with the status).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such topic, partition or group.
    #[error("{0}")]
    NotFound(String),
    /// A write while `[admin] console_writes` is off.
    #[error("{0}")]
    Forbidden(String),
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// Not available in this mode (cluster mode).
    #[error("{0}")]
    Conflict(String),
    /// The node failed to read or write.
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

type Shared = State<Arc<Console>>;

/// Run `f` off the async workers (it reads logs and databases).
async fn blocking<T: Send + 'static>(
    console: &Arc<Console>,
    f: impl FnOnce(&Console) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let c = console.clone();
    tokio::task::spawn_blocking(move || f(&c))
        .await
        .map_err(|e| ApiError::Internal(format!("task failed: {e}")))?
}

/// `GET /api/v1/overview`: the node, uptime, disk budget, totals and the throughput history.
pub async fn overview(State(c): Shared) -> Result<Json<Value>, ApiError> {
    let cluster_groups = match &c.kafka {
        Some(client) => Some(
            client
                .lock()
                .await
                .list_groups()
                .await
                .map_err(|e| ApiError::Internal(format!("listing groups: {e}")))?
                .len(),
        ),
        None => None,
    };
    blocking(&c, move |c| {
        let logs = c.broker.all_logs();
        let used: u64 = logs.iter().map(|(_, _, l)| l.size_bytes()).sum();
        let budget = c.broker.config().disk_budget_bytes;
        let topics = c.broker.topics();
        let throughput: Vec<Value> = c
            .history
            .samples()
            .iter()
            .map(|s| json!({ "at_ms": s.at_ms, "records_per_second": s.records_per_second }))
            .collect();
        Ok(Json(json!({
            "node": c.identity,
            "cluster_mode": c.cluster.is_some(),
            "uptime_seconds": c.started.elapsed().as_secs(),
            "topics": topics.iter().filter(|t| !t.internal).count(),
            "partitions": topics.iter().filter(|t| !t.internal).map(|t| i64::from(t.partitions)).sum::<i64>(),
            "groups": cluster_groups.unwrap_or_else(|| c.groups.list_groups(&[]).len()),
            "mqtt_clients": c.mqtt.clients().len(),
            "disk": {
                "used_bytes": used,
                "budget_bytes": budget,
                "free_bytes": budget.map(|b| b.saturating_sub(used)),
            },
            "console_writes": c.writes,
            "throughput": throughput,
        })))
    })
    .await
}

/// One partition's offsets and size.
#[derive(Debug, Serialize)]
struct PartitionRow {
    partition: i32,
    log_start_offset: i64,
    high_watermark: i64,
    log_end_offset: i64,
    size_bytes: u64,
    segments: usize,
}

fn partition_rows(c: &Console, topic: &str, partitions: i32) -> Vec<PartitionRow> {
    (0..partitions)
        .filter_map(|p| {
            let log = c.broker.partition(topic, p).ok()?;
            Some(PartitionRow {
                partition: p,
                log_start_offset: log.log_start_offset(),
                high_watermark: log.high_watermark(),
                log_end_offset: log.log_end_offset(),
                size_bytes: log.size_bytes(),
                segments: log.segment_count(),
            })
        })
        .collect()
}

/// `GET /api/v1/topics`: every topic with its partition count, records held and size.
pub async fn topics(State(c): Shared) -> Result<Json<Value>, ApiError> {
    blocking(&c, |c| {
        let rows: Vec<Value> = c
            .broker
            .topics()
            .into_iter()
            .map(|t| {
                let parts = partition_rows(c, &t.name, t.partitions);
                json!({
                    "name": t.name,
                    "internal": t.internal,
                    "partitions": t.partitions,
                    "records": parts.iter().map(|p| p.high_watermark - p.log_start_offset).sum::<i64>(),
                    "size_bytes": parts.iter().map(|p| p.size_bytes).sum::<u64>(),
                })
            })
            .collect();
        Ok(Json(json!({ "topics": rows })))
    })
    .await
}

/// `GET /api/v1/topics/{topic}`: partitions with offsets, and the effective configs.
pub async fn topic(State(c): Shared, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    blocking(&c, move |c| {
        let t = c
            .broker
            .topic(&name)
            .ok_or_else(|| ApiError::NotFound(format!("no topic {name:?}")))?;
        let configs: Vec<Value> = c
            .broker
            .describe_topic_config(&name)
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .into_iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "value": if e.sensitive { None } else { Some(e.value) },
                    "source": format!("{:?}", e.source),
                    "read_only": e.read_only,
                })
            })
            .collect();
        Ok(Json(json!({
            "name": t.name,
            "id": t.id.to_string(),
            "internal": t.internal,
            "partitions": partition_rows(c, &t.name, t.partitions),
            "configs": configs,
        })))
    })
    .await
}

/// Query of the messages call.
#[derive(Debug, Deserialize)]
pub struct MessagesQuery {
    /// First offset (default: the last `limit` records).
    pub offset: Option<i64>,
    /// Records wanted (default 20, at most [`MAX_MESSAGES`]).
    pub limit: Option<usize>,
}

/// `GET /api/v1/topics/{topic}/partitions/{partition}/messages?offset=&limit=`: records below
/// the high watermark, with key, value and headers base64-encoded.
pub async fn messages(
    State(c): Shared,
    Path((topic, partition)): Path<(String, i32)>,
    Query(q): Query<MessagesQuery>,
) -> Result<Json<Value>, ApiError> {
    blocking(&c, move |c| {
        let log = c
            .broker
            .partition(&topic, partition)
            .map_err(|e| ApiError::NotFound(e.to_string()))?;
        let limit = q.limit.unwrap_or(20).clamp(1, MAX_MESSAGES);
        let start = log.log_start_offset();
        let hw = log.high_watermark();
        let from = q
            .offset
            .unwrap_or_else(|| hw - limit as i64)
            .max(start);
        let mut out = Vec::new();
        let mut next = from;
        while out.len() < limit && next < hw {
            let read = log
                .read(next, 1 << 20)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            if read.records.is_empty() {
                break;
            }
            let records = decode_records(&read.records, ControlRecords::Skip)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let before = next;
            for r in records {
                if r.offset < next || r.offset >= hw || out.len() >= limit {
                    continue;
                }
                next = r.offset + 1;
                let headers: Vec<Value> = r
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        json!({ "key": k.to_string(), "value_b64": v.as_ref().map(|v| B64.encode(v)) })
                    })
                    .collect();
                out.push(json!({
                    "offset": r.offset,
                    "timestamp": r.timestamp,
                    "key_b64": r.key.as_ref().map(|k| B64.encode(k)),
                    "value_b64": r.value.as_ref().map(|v| B64.encode(v)),
                    "headers": headers,
                }));
            }
            if next == before {
                // A batch of control records only (or nothing new): step past it.
                let last = rill_core::batch::Batches::new(&read.records)
                    .filter_map(Result::ok)
                    .map(|b| b.header.last_offset())
                    .last();
                match last {
                    Some(l) if l >= next => next = l + 1,
                    _ => break,
                }
            }
        }
        Ok(Json(json!({
            "topic": topic,
            "partition": partition,
            "log_start_offset": start,
            "high_watermark": hw,
            "messages": out,
        })))
    })
    .await
}

/// One header of a test message.
#[derive(Debug, Deserialize)]
pub struct HeaderIn {
    /// Header key.
    pub key: String,
    /// Header value (UTF-8 text).
    pub value: String,
}

/// Body of `POST /api/v1/topics/{topic}/messages`.
#[derive(Debug, Deserialize)]
pub struct ProduceIn {
    /// The partition (default 0).
    pub partition: Option<i32>,
    /// The key (UTF-8 text), none by default.
    pub key: Option<String>,
    /// The value (UTF-8 text).
    pub value: String,
    /// Headers.
    #[serde(default)]
    pub headers: Vec<HeaderIn>,
}

/// `POST /api/v1/topics/{topic}/messages`: append one test message and wait until it is
/// durable; only with `[admin] console_writes = true` (and an admin token when tokens are on).
pub async fn produce(
    State(c): Shared,
    Path(topic): Path<String>,
    Json(body): Json<ProduceIn>,
) -> Result<Json<Value>, ApiError> {
    if !c.writes {
        return Err(ApiError::Forbidden(
            "console writes are off: set [admin] console_writes = true".to_string(),
        ));
    }
    if c.cluster.is_some() {
        return Err(ApiError::Conflict(
            "producing from the console is not available in cluster mode yet".to_string(),
        ));
    }
    blocking(&c, move |c| {
        let partition = body.partition.unwrap_or(0);
        let log = c
            .broker
            .partition(&topic, partition)
            .map_err(|e| ApiError::NotFound(e.to_string()))?;
        let headers: rill_core::batch::Headers = body
            .headers
            .into_iter()
            .map(|h| {
                (
                    kafka_protocol::protocol::StrBytes::from_string(h.key),
                    Some(Bytes::from(h.value)),
                )
            })
            .collect();
        let mut b = BatchBuilder::new();
        b.push_with_headers(
            body.key.map(Bytes::from),
            Some(Bytes::from(body.value)),
            now_ms(),
            headers,
        );
        let batch = b.build().map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let info = log
            .append(&batch)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        log.flush_to(info.last_offset)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        tracing::info!(
            topic,
            partition,
            offset = info.base_offset,
            "console produced a test message"
        );
        Ok(Json(json!({
            "topic": topic,
            "partition": partition,
            "offset": info.base_offset,
        })))
    })
    .await
}

/// Lag of one committed partition of a group.
#[derive(Debug, Clone, Serialize)]
pub struct OffsetRow {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset (the next to consume).
    pub committed: i64,
    /// The partition's high watermark.
    pub high_watermark: i64,
    /// High watermark minus committed, at least 0.
    pub lag_records: i64,
    /// Age of the record at the committed offset (0 when caught up).
    pub lag_seconds: f64,
}

/// The total lag in records of every group this node coordinates, as the metrics compute it
/// (a node alone: every group).
pub fn group_lag_totals(c: &Console) -> BTreeMap<String, i64> {
    let now = now_ms();
    c.groups
        .list_groups(&[])
        .into_iter()
        .map(|g| {
            let lag = offsets_of(c, &g.group_id, now)
                .iter()
                .map(|o| o.lag_records)
                .sum();
            (g.group_id, lag)
        })
        .collect()
}

fn offsets_of(c: &Console, group: &str, now: i64) -> Vec<OffsetRow> {
    let Ok(offsets) = c.groups.fetch_offsets(group, None) else {
        return Vec::new();
    };
    let mut rows: Vec<OffsetRow> = offsets
        .into_iter()
        .filter_map(|((topic, partition), committed)| {
            let committed = committed?;
            let log = c.broker.partition(&topic, partition).ok()?;
            let lag = partition_lag(&log, committed.offset, now);
            Some(OffsetRow {
                topic,
                partition,
                committed: committed.offset,
                high_watermark: log.high_watermark(),
                lag_records: lag.records,
                lag_seconds: lag.seconds,
            })
        })
        .collect();
    rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    rows
}

/// `GET /api/v1/groups`: every group with its state, members and total lag (in cluster mode
/// every group of the cluster, read through the Kafka client: [`super::kafka_groups`]).
pub async fn groups(State(c): Shared) -> Result<Json<Value>, ApiError> {
    if let Some(client) = &c.kafka {
        let rows = super::kafka_groups::list(client).await?;
        return Ok(Json(json!({ "groups": rows })));
    }
    blocking(&c, |c| {
        let now = now_ms();
        let rows: Vec<Value> = c
            .groups
            .list_groups(&[])
            .into_iter()
            .map(|g| {
                let members = c
                    .groups
                    .describe_group(&g.group_id)
                    .map_or(0, |d| d.members.len());
                let offsets = offsets_of(c, &g.group_id, now);
                json!({
                    "group": g.group_id,
                    "state": g.state,
                    "type": g.group_type,
                    "protocol_type": g.protocol_type,
                    "members": members,
                    "lag_records": offsets.iter().map(|o| o.lag_records).sum::<i64>(),
                })
            })
            .collect();
        Ok(Json(json!({ "groups": rows })))
    })
    .await
}

/// `GET /api/v1/groups/{group}`: members with their assignment, lag per partition and the
/// lag-over-time history.
pub async fn group(State(c): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if let Some(client) = &c.kafka {
        let mut d = super::kafka_groups::describe(client, &id).await?;
        d["lag_history"] = Value::Array(lag_history(&c, &id));
        return Ok(Json(d));
    }
    blocking(&c, move |c| {
        let d = c
            .groups
            .describe_group(&id)
            .map_err(|e| ApiError::NotFound(format!("group {id:?}: {e}")))?;
        let kip848 = c.groups.consumer_group_describe(&id).ok();
        let members: Vec<Value> = d
            .members
            .iter()
            .map(|m| {
                let assignment: BTreeMap<String, Vec<i32>> = match &kip848 {
                    Some(g) => g
                        .members
                        .iter()
                        .find(|x| x.member_id == m.member_id)
                        .map(|x| {
                            x.assignment
                                .iter()
                                .map(|(id, parts)| {
                                    let name = c
                                        .broker
                                        .topic_by_id(*id)
                                        .map_or_else(|| id.to_string(), |t| t.name);
                                    (name, parts.iter().copied().collect())
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    None => rill_core::group::decode_assignment(&m.assignment).unwrap_or_default(),
                };
                json!({
                    "member_id": m.member_id,
                    "group_instance_id": m.group_instance_id,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "assignment": assignment,
                })
            })
            .collect();
        let history = lag_history(c, &id);
        Ok(Json(json!({
            "group": d.group_id,
            "state": format!("{:?}", d.state),
            "protocol_type": d.protocol_type,
            "protocol": d.protocol,
            "generation": d.generation_id,
            "leader": d.leader,
            "members": members,
            "offsets": offsets_of(c, &id, now_ms()),
            "lag_history": history,
        })))
    })
    .await
}

/// The history's samples of the total lag of group `id`.
fn lag_history(c: &Console, id: &str) -> Vec<Value> {
    c.history
        .samples()
        .iter()
        .filter_map(|s| {
            s.group_lag
                .get(id)
                .map(|lag| json!({ "at_ms": s.at_ms, "lag_records": lag }))
        })
        .collect()
}

/// `GET /api/v1/bridge`: every mirrored partition's state and lag (as `/bridge/status`), and
/// the total lag over time.
pub async fn bridge(State(c): Shared) -> Result<Json<Value>, ApiError> {
    blocking(&c, |c| {
        let report = c.bridge.report();
        let history: Vec<Value> = c
            .history
            .samples()
            .iter()
            .map(|s| json!({ "at_ms": s.at_ms, "lag_records": s.bridge_lag }))
            .collect();
        Ok(Json(json!({
            "node": report.node,
            "partitions": report.partitions,
            "lag_history": history,
        })))
    })
    .await
}

/// `GET /api/v1/mqtt`: connected clients with their subscriptions, retained topics.
pub async fn mqtt(State(c): Shared) -> Result<Json<Value>, ApiError> {
    blocking(&c, |c| {
        let retained: Vec<Value> = c
            .mqtt
            .retained_topics()
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .into_iter()
            .map(|(topic, bytes)| json!({ "topic": topic, "payload_bytes": bytes }))
            .collect();
        Ok(Json(json!({
            "clients": c.mqtt.clients(),
            "retained": retained,
        })))
    })
    .await
}

/// `GET /api/v1/cluster`: in cluster mode the brokers of the metadata image and every
/// partition's leader, replicas and ISR; a node alone answers `{"cluster_mode": false}`.
pub async fn cluster(State(c): Shared) -> Result<Json<Value>, ApiError> {
    let Some(cluster) = &c.cluster else {
        return Ok(Json(json!({ "cluster_mode": false })));
    };
    let image = cluster.image();
    let quorum = cluster.quorum();
    let brokers: Vec<Value> = image
        .brokers()
        .values()
        .map(|b| {
            let kafka = crate::kafka::cluster_view::kafka_endpoint(b)
                .map(|e| format!("{}:{}", e.host, e.port));
            json!({
                "broker_id": b.broker_id,
                "kafka": kafka,
                "rack": b.rack,
                "fenced": b.fenced,
                "in_controlled_shutdown": b.in_controlled_shutdown,
            })
        })
        .collect();
    let mut partitions = Vec::new();
    for (name, t) in image.topics() {
        for (p, r) in &t.partitions {
            partitions.push(json!({
                "topic": name,
                "partition": p,
                "leader": r.leader,
                "leader_epoch": r.leader_epoch,
                "replicas": r.replicas,
                "isr": r.isr,
                "under_replicated": r.isr.len() < r.replicas.len(),
            }));
        }
    }
    Ok(Json(json!({
        "cluster_mode": true,
        "node_id": cluster.node_id(),
        "controller_id": quorum.leader_id,
        "brokers": brokers,
        "partitions": partitions,
    })))
}
