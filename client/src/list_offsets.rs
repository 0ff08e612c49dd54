//! ListOffsets: the offset of a partition at a timestamp (-2 earliest, -1 latest, otherwise ms
//! since the epoch), asked of the partition's leader.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ListOffsetsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{retry_backoff, Client, Route, ATTEMPTS};
use crate::error::{check, ClientError};
use crate::metadata::TopicInfo;

/// The earliest offset (log start).
pub const EARLIEST: i64 = -2;
/// The latest offset (log end, or the last stable offset with read_committed).
pub const LATEST: i64 = -1;

fn request(topic: &str, partitions: &[i32], timestamp: i64, isolation: i8) -> ListOffsetsRequest {
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    req.isolation_level = isolation;
    req.timeout_ms = 30_000;
    req.topics = vec![ListOffsetsTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partitions(
            partitions
                .iter()
                .map(|&p| {
                    ListOffsetsPartition::default()
                        .with_partition_index(p)
                        .with_current_leader_epoch(-1)
                        .with_timestamp(timestamp)
                })
                .collect(),
        )];
    req
}

impl Client {
    /// The offset of `topic[partition]` at `timestamp` ([`EARLIEST`], [`LATEST`] or ms since
    /// the epoch: the earliest offset whose timestamp is at least that, -1 when none), with
    /// `isolation` 0 (read_uncommitted) or 1 (read_committed). Retriable errors are retried
    /// after a metadata refresh.
    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        isolation: i8,
    ) -> Result<i64, ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .list_offset_once(topic, partition, timestamp, isolation)
                .await
            {
                Err(e) if e.is_stale_routing() && attempt < ATTEMPTS => {
                    self.recover(&e, Route::Topic(topic));
                    tokio::time::sleep(retry_backoff(attempt)).await;
                }
                r => return r,
            }
        }
    }

    async fn list_offset_once(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        isolation: i8,
    ) -> Result<i64, ClientError> {
        let req = request(topic, &[partition], timestamp, isolation);
        let resp: ListOffsetsResponse = self.leader(topic, partition).await?.send(&req).await?;
        let p = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| {
                ClientError::Usage(format!("broker sent no offset for {topic}/{partition}"))
            })?;
        check(p.error_code, None, || {
            format!("list offsets of {topic}/{partition}")
        })?;
        Ok(p.offset)
    }

    /// ListOffsets for `partitions` of `topic` at `timestamp` (see [`Client::list_offset`]),
    /// one request per leader.
    pub async fn list_offsets(
        &mut self,
        topic: &TopicInfo,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, i64>, ClientError> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &p in partitions {
            let info = topic.partition(p).ok_or_else(|| {
                ClientError::Usage(format!("topic {} has no partition {p}", topic.name))
            })?;
            by_leader.entry(info.leader).or_default().push(p);
        }
        let mut out = BTreeMap::new();
        for (leader, parts) in by_leader {
            let req = request(&topic.name, &parts, timestamp, 0);
            let conn = self.broker(leader).await?;
            let resp: ListOffsetsResponse = conn.send(&req).await?;
            for t in resp.topics {
                for p in t.partitions {
                    check(p.error_code, None, || {
                        format!("list offsets of {}/{}", topic.name, p.partition_index)
                    })?;
                    out.insert(p.partition_index, p.offset);
                }
            }
        }
        for p in partitions {
            if !out.contains_key(p) {
                return Err(ClientError::Usage(format!(
                    "broker sent no offset for {}/{p}",
                    topic.name
                )));
            }
        }
        Ok(out)
    }
}
