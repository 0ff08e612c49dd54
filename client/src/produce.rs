//! Produce: record batches to partition leaders (one request per leader), retrying stale
//! routing with KIP-951 leader hints or a metadata refresh; InitProducerId for idempotence.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    InitProducerIdRequest, ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{retry_backoff, Client, Route, ATTEMPTS};
use crate::error::{check, needs_metadata_refresh, ClientError};
use crate::metadata::BrokerInfo;

/// The outcome of a produce per partition: the base offset written, or the partition's error.
pub type Produced = BTreeMap<i32, Result<i64, ClientError>>;

impl Client {
    /// InitProducerId without a transactional id: a producer id and epoch for idempotence.
    pub async fn init_producer_id(&mut self) -> Result<(i64, i16), ClientError> {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let resp = self.any().await?.send(&req).await?;
        check(resp.error_code, None, || "InitProducerId".into())?;
        Ok((resp.producer_id.0, resp.producer_epoch))
    }

    /// Produce `batches` ((partition, record batches)) to `topic` with `acks` (1 or -1; acks=0
    /// gets no answer, see [`crate::connection::Connection::send_no_response`]). With `retry`
    /// (safe for an idempotent producer, whose resent batches the broker drops as duplicates),
    /// partitions failing with a retriable error or a broken connection are sent again, the same
    /// bytes, to the new leader. Errors of single partitions are returned per partition.
    pub async fn produce(
        &mut self,
        topic: &str,
        batches: &[(i32, Bytes)],
        acks: i16,
        timeout_ms: i32,
        retry: bool,
    ) -> Result<Produced, ClientError> {
        let mut out = Produced::new();
        let mut todo: Vec<(i32, Bytes)> = batches.to_vec();
        let mut attempt = 0;
        while !todo.is_empty() {
            attempt += 1;
            let last = !retry || attempt >= ATTEMPTS;
            let mut by_leader: BTreeMap<i32, Vec<(i32, Bytes)>> = BTreeMap::new();
            let mut again = Vec::new();
            let mut broken = None;
            let mut hinted = false;
            for (p, b) in todo.drain(..) {
                match self.leader_id(topic, p).await {
                    Ok(id) => by_leader.entry(id).or_default().push((p, b)),
                    Err(e) if e.is_stale_routing() && !last => {
                        broken = Some(e);
                        again.push((p, b));
                    }
                    Err(e) => {
                        out.insert(p, Err(e));
                    }
                }
            }
            for (leader, parts) in by_leader {
                match self
                    .produce_to(leader, topic, &parts, acks, timeout_ms)
                    .await
                {
                    Ok((results, hint)) => {
                        hinted |= hint;
                        for (p, r) in results {
                            match r {
                                Err(e) if e.is_stale_routing() && !last => {
                                    broken.get_or_insert(e);
                                    if let Some(b) = parts.iter().find(|(q, _)| *q == p) {
                                        again.push(b.clone());
                                    }
                                }
                                r => {
                                    out.insert(p, r);
                                }
                            }
                        }
                    }
                    Err(e) if e.is_stale_routing() && !last => {
                        self.recover(&e, Route::Topic(topic));
                        broken.get_or_insert(e);
                        again.extend(parts);
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some(e) = broken {
                if !hinted {
                    self.recover(&e, Route::Topic(topic));
                    tokio::time::sleep(retry_backoff(attempt)).await;
                }
            }
            todo = again;
        }
        Ok(out)
    }

    /// One Produce to broker `leader`: the per-partition results, and whether a leader hint
    /// moved a partition (then a retry needs no metadata refresh).
    async fn produce_to(
        &mut self,
        leader: i32,
        topic: &str,
        parts: &[(i32, Bytes)],
        acks: i16,
        timeout_ms: i32,
    ) -> Result<(Vec<(i32, Result<i64, ClientError>)>, bool), ClientError> {
        let req = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(acks)
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(
                    parts
                        .iter()
                        .map(|(p, b)| {
                            PartitionProduceData::default()
                                .with_index(*p)
                                .with_records(Some(b.clone()))
                        })
                        .collect(),
                )]);
        let resp: ProduceResponse = self.broker(leader).await?.send(&req).await?;
        let mut out = Vec::new();
        let mut hinted = false;
        for t in &resp.responses {
            for p in &t.partition_responses {
                let r = check(p.error_code, p.error_message.as_ref(), || {
                    format!("produce to {topic}[{}]", p.index)
                });
                if let Some(code) = ResponseError::try_from_code(p.error_code) {
                    if needs_metadata_refresh(code) {
                        // KIP-951: the response names the new leader (and its endpoint).
                        let id = p.current_leader.leader_id.0;
                        let endpoint =
                            resp.node_endpoints
                                .iter()
                                .find(|n| n.node_id.0 == id)
                                .map(|n| BrokerInfo {
                                    node_id: id,
                                    host: n.host.to_string(),
                                    port: n.port,
                                });
                        hinted |= self.apply_leader_hint(
                            topic,
                            p.index,
                            id,
                            p.current_leader.leader_epoch,
                            endpoint,
                        );
                    }
                }
                out.push((p.index, r.map(|()| p.base_offset)));
            }
        }
        for (p, _) in parts {
            if !out.iter().any(|(q, _)| q == p) {
                return Err(ClientError::Usage(format!(
                    "broker sent no produce result for {topic}[{p}]"
                )));
            }
        }
        Ok((out, hinted))
    }
}
