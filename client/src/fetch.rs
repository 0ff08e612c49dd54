//! Fetch of one partition from its leader, with retries on stale leaders (KIP-951 leader hints
//! first, then a metadata refresh).

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::AbortedTransaction;
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{retry_backoff, Client, Route, ATTEMPTS};
use crate::error::{check, needs_metadata_refresh, ClientError};
use crate::metadata::BrokerInfo;

/// One partition to fetch (see [`Client::fetch`]).
#[derive(Debug, Clone)]
pub struct PartitionFetch<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Partition index.
    pub partition: i32,
    /// First offset wanted.
    pub offset: i64,
    /// Most bytes of this partition.
    pub max_bytes: i32,
    /// How long the broker may wait for `min_bytes`.
    pub max_wait_ms: i32,
    /// Bytes to wait for (0: answer at once).
    pub min_bytes: i32,
    /// 0 read_uncommitted, 1 read_committed.
    pub isolation_level: i8,
}

/// One partition of a Fetch response. A partition error that routing cannot fix is left to the
/// caller in `error` (OFFSET_OUT_OF_RANGE means different things to different callers).
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    /// The partition's error (None: none).
    pub error: Option<ResponseError>,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset (-1 when the broker does not say).
    pub last_stable_offset: i64,
    /// The record batches, as sent (the last one may be partial).
    pub records: Bytes,
    /// Aborted transactions in the range (read_committed), if the broker listed them.
    pub aborted_transactions: Option<Vec<AbortedTransaction>>,
}

impl Client {
    /// Fetch `f` from the partition's leader. Stale routing (NOT_LEADER_OR_FOLLOWER,
    /// FENCED_LEADER_EPOCH, ..., a broken connection) is retried, at once when the response
    /// carried a usable leader hint, else after a metadata refresh.
    pub async fn fetch(&mut self, f: &PartitionFetch<'_>) -> Result<FetchedPartition, ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.fetch_once(f).await {
                Ok(Ok(p)) => return Ok(p),
                Ok(Err((code, hinted))) => {
                    let e = ClientError::Kafka {
                        context: format!("fetch {}[{}]", f.topic, f.partition),
                        code,
                        message: None,
                    };
                    if hinted && attempt < ATTEMPTS {
                        continue;
                    }
                    e
                }
                Err(e) => e,
            };
            if !err.is_stale_routing() || attempt >= ATTEMPTS {
                self.recover(&err, Route::Topic(f.topic));
                return Err(err);
            }
            self.recover(&err, Route::Topic(f.topic));
            tokio::time::sleep(retry_backoff(attempt)).await;
        }
    }

    /// One attempt: the partition, or its routing error and whether a leader hint was applied.
    async fn fetch_once(
        &mut self,
        f: &PartitionFetch<'_>,
    ) -> Result<Result<FetchedPartition, (ResponseError, bool)>, ClientError> {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(f.max_wait_ms)
            .with_min_bytes(f.min_bytes)
            .with_max_bytes(f.max_bytes)
            .with_isolation_level(f.isolation_level)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(f.topic.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(f.partition)
                    .with_current_leader_epoch(-1)
                    .with_fetch_offset(f.offset)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(f.max_bytes)])]);
        let resp: FetchResponse = self.leader(f.topic, f.partition).await?.send(&req).await?;
        check(resp.error_code, None, || {
            format!("fetch {}[{}]", f.topic, f.partition)
        })?;
        let p = resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == f.partition)
            .ok_or_else(|| ClientError::Usage(format!("empty Fetch response for {}", f.topic)))?;
        let error = ResponseError::try_from_code(p.error_code);
        if let Some(code) = error.filter(|c| needs_metadata_refresh(*c)) {
            let leader = p.current_leader.leader_id.0;
            let endpoint = resp
                .node_endpoints
                .iter()
                .find(|n| n.node_id.0 == leader)
                .map(|n| BrokerInfo {
                    node_id: leader,
                    host: n.host.to_string(),
                    port: n.port,
                });
            let hinted = self.apply_leader_hint(
                f.topic,
                f.partition,
                leader,
                p.current_leader.leader_epoch,
                endpoint,
            );
            return Ok(Err((code, hinted)));
        }
        Ok(Ok(FetchedPartition {
            error,
            high_watermark: p.high_watermark,
            last_stable_offset: p.last_stable_offset,
            records: p.records.clone().unwrap_or_default(),
            aborted_transactions: p.aborted_transactions.clone(),
        }))
    }
}
