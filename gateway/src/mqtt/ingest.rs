//! Publishes into the log: mapping rule -> log topic, key -> partition (Kafka's murmur2
//! partitioner, so a device's messages stay in one partition, the same one a Kafka producer
//! would pick for that key), payload transform, append. Durability is awaited separately
//! ([`Ingest::flush`]) so a connection can keep reading while a group commit is in progress.

use rill_core::sync::LockExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rill_core::broker::{Broker, BrokerError};
use rill_core::log::{LogError, PartitionLog};
use rill_core::partitioner::partition_for_key;

use super::mapping::{Mapping, PayloadTransform};
use super::records::{self, Message};

/// Why a publish could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Record(#[from] records::RecordError),
    #[error("payload is not valid CBOR: {0}")]
    BadCbor(String),
    #[error("durability wait failed: {0}")]
    Join(String),
}

/// CBOR -> JSON for rules with `payload = "cbor-to-json"`.
pub fn cbor_to_json(payload: &[u8]) -> Result<Vec<u8>, IngestError> {
    let value: ciborium::Value =
        ciborium::from_reader(payload).map_err(|e| IngestError::BadCbor(e.to_string()))?;
    let json: serde_json::Value = value
        .deserialized()
        .map_err(|e| IngestError::BadCbor(e.to_string()))?;
    serde_json::to_vec(&json).map_err(|e| IngestError::BadCbor(e.to_string()))
}

/// A publish routed to its partition log, ready to append.
pub struct Prepared {
    pub log_topic: String,
    pub log: Arc<PartitionLog>,
    pub record: kafka_protocol::records::Record,
}

/// Where an appended message landed.
#[derive(Clone)]
pub struct Appended {
    pub log: Arc<PartitionLog>,
    pub last_offset: i64,
}

/// The ingest path shared by all connections.
pub struct Ingest {
    broker: Arc<Broker>,
    mapping: Arc<Mapping>,
    /// Topic -> its partition logs.
    logs: Mutex<HashMap<String, Vec<Arc<PartitionLog>>>>,
    /// Serializes topic creation, so concurrent first publishes see a fully created topic.
    creating: Mutex<()>,
}

impl Ingest {
    /// The ingest path over `broker` with `mapping`.
    pub fn new(broker: Arc<Broker>, mapping: Arc<Mapping>) -> Ingest {
        Ingest {
            broker,
            mapping,
            logs: Mutex::new(HashMap::new()),
            creating: Mutex::new(()),
        }
    }

    fn partitions(&self, topic: &str) -> Result<Vec<Arc<PartitionLog>>, IngestError> {
        if let Some(logs) = self.logs.lock_unpoisoned().get(topic) {
            return Ok(logs.clone());
        }
        let _creating = self.creating.lock_unpoisoned();
        let meta = match self.broker.topic(topic) {
            Some(meta) => meta,
            None => {
                let partitions = self.broker.config().default_partitions.max(1);
                match self
                    .broker
                    .create_topic(topic, partitions, &BTreeMap::new(), false)
                {
                    Ok(meta) => {
                        tracing::info!(topic, partitions, "created log topic for MQTT publishes");
                        meta
                    }
                    Err(BrokerError::TopicAlreadyExists(_)) => self
                        .broker
                        .topic(topic)
                        .ok_or_else(|| BrokerError::UnknownTopicOrPartition {
                            topic: topic.to_string(),
                            partition: 0,
                        })?,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let logs = (0..meta.partitions)
            .map(|p| self.broker.partition(topic, p))
            .collect::<Result<Vec<_>, _>>()?;
        self.logs
            .lock_unpoisoned()
            .insert(topic.to_string(), logs.clone());
        Ok(logs)
    }

    fn forget(&self, topic: &str) {
        self.logs.lock_unpoisoned().remove(topic);
    }

    /// Whether publishes to any of these log topics are held back by the backlog policy
    /// (unmirrored data near retention or the disk budget, `rill_core::backlog`).
    pub fn held_back(&self, log_topics: &[&str]) -> bool {
        self.broker.backlog().blocks_any(log_topics.iter().copied())
    }

    /// Resolves once publishes to none of these log topics are held back.
    pub async fn wait_for_room(&self, log_topics: &[&str]) {
        self.broker.backlog().wait_writable(log_topics).await
    }

    /// Routes `msg`, published by the client `publisher`, to its partition log and builds its
    /// record, without appending.
    pub fn prepare(&self, msg: &Message, publisher: &str) -> Result<Prepared, IngestError> {
        let route = self.mapping.route(&msg.topic);
        let transformed;
        let msg = match route.payload {
            PayloadTransform::None => msg,
            PayloadTransform::CborToJson => {
                let mut m = msg.clone();
                m.payload = Bytes::from(cbor_to_json(&msg.payload)?);
                m.props.content_type = Some("application/json".into());
                transformed = m;
                &transformed
            }
        };
        let logs = self.partitions(&route.log_topic)?;
        let p = partition_for_key(&route.key, logs.len() as i32) as usize;
        let log = logs.get(p).cloned().ok_or_else(|| {
            self.forget(&route.log_topic);
            BrokerError::UnknownTopicOrPartition {
                topic: route.log_topic.clone(),
                partition: p as i32,
            }
        })?;
        let mut record = records::to_record(
            msg,
            Some(Bytes::from(route.key)),
            rill_core::clock::now_ms(),
        );
        records::set_publisher(&mut record, publisher);
        Ok(Prepared {
            log_topic: route.log_topic,
            log,
            record,
        })
    }

    /// Appends prepared records that all go to the same log as one batch (not yet durable).
    pub fn append_prepared(&self, batch: &[&Prepared]) -> Result<Appended, IngestError> {
        let Some(first) = batch.first() else {
            return Err(IngestError::Record(records::RecordError::Encode(
                rill_core::batch::BatchError::Empty,
            )));
        };
        let recs: Vec<_> = batch.iter().map(|p| p.record.clone()).collect();
        let bytes = records::encode_batch(&recs)?;
        match first.log.append(&bytes) {
            Ok(info) => Ok(Appended {
                log: first.log.clone(),
                last_offset: info.last_offset,
            }),
            Err(e) => {
                // The topic may have been deleted or grown: look it up again next time.
                self.forget(&first.log_topic);
                Err(e.into())
            }
        }
    }

    /// Appends `msg`, published by (or, for a will message, on behalf of) the client
    /// `publisher` (not yet durable: await [`Ingest::flush`] before acknowledging).
    pub fn append(&self, msg: &Message, publisher: &str) -> Result<Appended, IngestError> {
        let route = self.mapping.route(&msg.topic);
        let transformed;
        let msg = match route.payload {
            PayloadTransform::None => msg,
            PayloadTransform::CborToJson => {
                let mut m = msg.clone();
                m.payload = Bytes::from(cbor_to_json(&msg.payload)?);
                m.props.content_type = Some("application/json".into());
                transformed = m;
                &transformed
            }
        };
        let mut record = records::to_record(
            msg,
            Some(Bytes::from(route.key.clone())),
            rill_core::clock::now_ms(),
        );
        // A will is published on behalf of its client: No Local (§3.8.3.1) skips it for that
        // client's subscriptions like its own publishes.
        records::set_publisher(&mut record, publisher);
        let batch = records::encode_batch(std::slice::from_ref(&record))?;
        for attempt in 0..2 {
            let logs = self.partitions(&route.log_topic)?;
            let p = partition_for_key(&route.key, logs.len() as i32) as usize;
            let Some(log) = logs.get(p).cloned() else {
                self.forget(&route.log_topic);
                continue;
            };
            match log.append(&batch) {
                Ok(info) => {
                    return Ok(Appended {
                        log,
                        last_offset: info.last_offset,
                    })
                }
                // The topic was deleted or grown since we cached it: look it up again.
                Err(LogError::Closed) if attempt == 0 => self.forget(&route.log_topic),
                Err(e) => return Err(e.into()),
            }
        }
        Err(IngestError::Log(LogError::Closed))
    }

    /// Waits until everything up to `offset` of `log` is durable (group commit), off the async
    /// threads.
    pub async fn flush(log: Arc<PartitionLog>, offset: i64) -> Result<(), IngestError> {
        tokio::task::spawn_blocking(move || log.flush_to(offset))
            .await
            .map_err(|e| IngestError::Join(e.to_string()))??;
        Ok(())
    }

    /// Whether `log` holds, at or after `since_ms` (record timestamps), a QoS 2 publish of
    /// `client_id` with packet id `pkid` and this value: the resent PUBLISH of a message
    /// stored before the node restarted (its PUBREC was lost). Reads the log tail; only used
    /// for DUP publishes whose packet id the node does not remember.
    pub fn stored_qos2(
        log: &PartitionLog,
        since_ms: i64,
        client_id: &str,
        pkid: u16,
        value: Option<&Bytes>,
    ) -> Result<bool, IngestError> {
        let Some((mut offset, _)) = log.offset_for_timestamp(since_ms)? else {
            return Ok(false);
        };
        while offset < log.high_watermark() {
            let read = log.read(offset, 1024 * 1024)?;
            let recs = records::decode_batches(read.records)?;
            let Some(last) = recs.last().map(|r| r.offset) else {
                break;
            };
            if recs.iter().any(|r| {
                r.offset >= offset
                    && r.packet_id() == Some(pkid)
                    && r.published_by(client_id)
                    && r.value.as_ref() == value
            }) {
                return Ok(true);
            }
            offset = last + 1;
        }
        Ok(false)
    }

    /// Appends (see [`Ingest::append`]) and waits for durability.
    pub async fn store(&self, msg: &Message, publisher: &str) -> Result<(), IngestError> {
        let a = self.append(msg, publisher)?;
        Ingest::flush(a.log, a.last_offset).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbor_payloads_become_json() {
        let mut buf = Vec::new();
        ciborium::into_writer(&serde_json::json!({"t": 21.5, "id": "d1"}), &mut buf).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&cbor_to_json(&buf).unwrap()).unwrap();
        assert_eq!(json["id"], "d1");
        assert!(cbor_to_json(b"\xff\xff").is_err());
    }
}
