//! The consumer groups of a cluster as the console shows them, read through the shared Kafka
//! client ([`rill_client`]) like any admin tool: ListGroups at every broker, DescribeGroups and
//! OffsetFetch at each group's coordinator (FindCoordinator), and for lag one Fetch at each
//! committed offset from the partition's leader (its high watermark, and the base timestamp of
//! the batch holding the committed offset, as `rill_consumer_group_lag_seconds` computes it).
//! So any node of a cluster shows every group, whichever node coordinates it.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use rill_client::list_offsets::{EARLIEST, LATEST};
use rill_client::{Client, ClientError, PartitionFetch};
use rill_core::batch::BatchHeader;
use rill_core::clock::now_ms;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::api::{ApiError, OffsetRow};

fn unavailable(e: ClientError) -> ApiError {
    ApiError::Internal(format!("reading groups through the Kafka protocol: {e}"))
}

/// Every group of the cluster with its coordinator, state, members and total lag.
pub async fn list(client: &Mutex<Client>) -> Result<Vec<Value>, ApiError> {
    let mut client = client.lock().await;
    let listings = client.list_groups().await.map_err(unavailable)?;
    let now = now_ms();
    let mut rows = Vec::with_capacity(listings.len());
    for g in listings {
        let members = match client.describe_group(&g.group_id).await {
            Ok(d) => d.members.len(),
            Err(e) => {
                tracing::debug!(group = g.group_id, error = %e, "describe group failed");
                0
            }
        };
        let offsets = offsets(&mut client, &g.group_id, now)
            .await
            .map_err(unavailable)?;
        rows.push(json!({
            "group": g.group_id,
            "state": g.state,
            "type": g.group_type,
            "protocol_type": g.protocol_type,
            "coordinator": g.coordinator,
            "members": members,
            "lag_records": offsets.iter().map(|o| o.lag_records).sum::<i64>(),
        }));
    }
    Ok(rows)
}

/// One group: members with their assignment, and lag per partition (the caller adds the
/// history). A group no broker knows is NOT_FOUND.
pub async fn describe(client: &Mutex<Client>, id: &str) -> Result<Value, ApiError> {
    let mut client = client.lock().await;
    let d = client.describe_group(id).await.map_err(unavailable)?;
    if d.state == "Dead" {
        return Err(ApiError::NotFound(format!("group {id:?}: no such group")));
    }
    let members: Vec<Value> = d
        .members
        .iter()
        .map(|m| {
            let assignment: BTreeMap<String, Vec<i32>> = if d.protocol_type == "consumer" {
                rill_core::group::decode_assignment(&m.assignment).unwrap_or_default()
            } else {
                BTreeMap::new()
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
    let offsets = offsets(&mut client, id, now_ms())
        .await
        .map_err(unavailable)?;
    Ok(json!({
        "group": d.group_id,
        "state": d.state,
        "protocol_type": d.protocol_type,
        "protocol": d.protocol,
        "members": members,
        "offsets": offsets,
    }))
}

/// Total lag in records of every group (the history's sample).
pub async fn lags(client: &Mutex<Client>) -> Result<BTreeMap<String, i64>, ClientError> {
    let mut client = client.lock().await;
    let now = now_ms();
    let mut out = BTreeMap::new();
    for g in client.list_groups().await? {
        let rows = offsets(&mut client, &g.group_id, now).await?;
        out.insert(g.group_id, rows.iter().map(|o| o.lag_records).sum());
    }
    Ok(out)
}

/// The committed offsets of `group` with their lag, sorted by topic and partition.
async fn offsets(
    client: &mut Client,
    group: &str,
    now: i64,
) -> Result<Vec<OffsetRow>, ClientError> {
    let committed = client.committed_offsets(group).await?;
    let mut rows = Vec::with_capacity(committed.len());
    for ((topic, partition), offset) in committed {
        let (high_watermark, base_timestamp) = position(client, &topic, partition, offset).await?;
        let lag_records = (high_watermark - offset).max(0);
        let lag_seconds = match base_timestamp {
            Some(ts) if lag_records > 0 => (now - ts).max(0) as f64 / 1000.0,
            _ => 0.0,
        };
        rows.push(OffsetRow {
            topic,
            partition,
            committed: offset,
            high_watermark,
            lag_records,
            lag_seconds,
        });
    }
    Ok(rows)
}

/// The high watermark of `topic[partition]` and the base timestamp of the batch holding
/// `offset` (of the first batch when `offset` is below the log start), from the leader.
async fn position(
    client: &mut Client,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(i64, Option<i64>), ClientError> {
    let fetch = |offset| PartitionFetch {
        topic,
        partition,
        offset,
        // The broker answers with at least the first batch (KIP-74); its header is enough.
        max_bytes: 1,
        max_wait_ms: 0,
        min_bytes: 0,
        isolation_level: 0,
    };
    let mut fetched = client.fetch(&fetch(offset)).await?;
    if fetched.error == Some(ResponseError::OffsetOutOfRange) {
        let start = client.list_offset(topic, partition, EARLIEST, 0).await?;
        if offset > start {
            // Past the end: nothing to consume there.
            let end = client.list_offset(topic, partition, LATEST, 0).await?;
            return Ok((end, None));
        }
        fetched = client.fetch(&fetch(start)).await?;
    }
    if let Some(code) = fetched.error {
        return Err(ClientError::Kafka {
            context: format!("fetch {topic}[{partition}] at {offset}"),
            code,
            message: None,
        });
    }
    let base_timestamp = BatchHeader::parse(&fetched.records)
        .ok()
        .map(|h| h.base_timestamp);
    Ok((fetched.high_watermark, base_timestamp))
}
