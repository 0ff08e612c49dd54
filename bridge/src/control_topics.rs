//! The bridge's own writes to a target cluster, beside the mirrored records: creating its
//! internal topics (`heartbeats`, `{node}.checkpoints.internal`), producing small records to them,
//! and committing translated consumer group offsets. One lazily opened connection, dropped on any
//! error and reopened on the next call.

use std::time::Duration;

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, FindCoordinatorRequest, GroupId, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};

use crate::client::{ClientError, Connection, PartitionFetch};
use crate::mirror::MirrorError;
use crate::security::TargetSecurity;

const TIMEOUT: Duration = Duration::from_secs(30);
const ERR_TOPIC_EXISTS: i16 = 36;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A small producer and group-offset client for one target cluster.
pub struct TargetClient {
    bootstrap: String,
    security: TargetSecurity,
    conn: Option<Connection>,
}

impl TargetClient {
    /// A client for `bootstrap` (comma separated host:port) with the mirror's TLS/SASL
    /// settings; nothing is opened yet.
    pub fn new(bootstrap: &str, security: TargetSecurity) -> TargetClient {
        TargetClient {
            bootstrap: bootstrap.to_string(),
            security,
            conn: None,
        }
    }

    async fn connect(
        bootstrap: &str,
        security: &TargetSecurity,
    ) -> Result<Connection, MirrorError> {
        let mut last: Option<ClientError> = None;
        for addr in bootstrap.split(',') {
            match Connection::connect_with(addr.trim(), security, TIMEOUT).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .map(MirrorError::from)
            .unwrap_or_else(|| MirrorError::Target("no bootstrap address".into())))
    }

    /// The connection, opened if needed.
    async fn conn(&mut self) -> Result<&mut Connection, MirrorError> {
        if self.conn.is_none() {
            self.conn = Some(Self::connect(&self.bootstrap, &self.security).await?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| MirrorError::Target("no connection".into()))
    }

    /// Forget the connection (after an error).
    pub fn reset(&mut self) {
        self.conn = None;
    }

    /// Create `topic` with `partitions` and `configs` unless it exists; wait until it has
    /// partitions in the metadata.
    pub async fn ensure_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<(), MirrorError> {
        let r = self.ensure_topic_inner(topic, partitions, configs).await;
        if r.is_err() {
            self.reset();
        }
        r
    }

    async fn ensure_topic_inner(
        &mut self,
        topic: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<(), MirrorError> {
        let conn = self.conn().await?;
        for attempt in 0..50 {
            let md = conn
                .call(
                    &MetadataRequest::default()
                        .with_topics(Some(vec![
                            MetadataRequestTopic::default().with_name(Some(TopicName(s(topic))))
                        ]))
                        .with_allow_auto_topic_creation(false),
                    9,
                )
                .await?;
            let ok = md
                .topics
                .first()
                .is_some_and(|t| t.error_code == 0 && !t.partitions.is_empty());
            if ok {
                return Ok(());
            }
            if attempt == 0 {
                let cfgs = configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(s(k))
                            .with_value(Some(s(v)))
                    })
                    .collect();
                let r = conn
                    .call(
                        &CreateTopicsRequest::default()
                            .with_topics(vec![CreatableTopic::default()
                                .with_name(TopicName(s(topic)))
                                .with_num_partitions(partitions)
                                .with_replication_factor(-1)
                                .with_configs(cfgs)])
                            .with_timeout_ms(30_000),
                        5,
                    )
                    .await?;
                if let Some(ct) = r.topics.first() {
                    if ct.error_code != 0 && ct.error_code != ERR_TOPIC_EXISTS {
                        return Err(MirrorError::Target(format!(
                            "create topic {topic}: error {}",
                            ct.error_code
                        )));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(MirrorError::Target(format!("topic {topic} did not appear")))
    }

    /// Produce `(key, value, timestamp)` records to partition 0 of `topic` (acks=all).
    pub async fn produce(
        &mut self,
        topic: &str,
        records: Vec<(Bytes, Bytes, i64)>,
    ) -> Result<(), MirrorError> {
        let r = self.produce_inner(topic, records).await;
        if r.is_err() {
            self.reset();
        }
        r
    }

    async fn produce_inner(
        &mut self,
        topic: &str,
        records: Vec<(Bytes, Bytes, i64)>,
    ) -> Result<(), MirrorError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = rill_core::batch::BatchBuilder::new();
        for (k, v, ts) in records {
            batch.push(Some(k), Some(v), ts);
        }
        let records = batch
            .build()
            .map_err(|e| MirrorError::Source(format!("encode: {e}")))?;
        let req = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(s(topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])]);
        let resp = self.conn().await?.call(&req, 8).await?;
        for t in &resp.responses {
            for p in &t.partition_responses {
                if p.error_code != 0 {
                    return Err(MirrorError::Target(format!(
                        "produce to {topic}: error {}",
                        p.error_code
                    )));
                }
            }
        }
        Ok(())
    }

    /// The log start offset of `topic[partition]`.
    pub async fn earliest(&mut self, topic: &str, partition: i32) -> Result<i64, MirrorError> {
        match self
            .conn()
            .await?
            .list_offset(topic, partition, -2, 0)
            .await
        {
            Ok(o) => Ok(o),
            Err(e @ ClientError::Kafka { .. }) => Err(e.into()),
            Err(e) => {
                self.reset();
                Err(e.into())
            }
        }
    }

    /// The first record of `topic[partition]` at or after `offset` (None past the end).
    pub async fn record_at(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Option<Record>, MirrorError> {
        let fetch = PartitionFetch {
            topic,
            partition,
            offset,
            max_bytes: 64 << 10,
            max_wait_ms: 0,
            min_bytes: 0,
            isolation_level: 0,
        };
        let p = match self.conn().await?.fetch_partition(&fetch).await {
            Ok(p) => p,
            Err(e) => {
                self.reset();
                return Err(e.into());
            }
        };
        if p.error_code != 0 {
            return Err(MirrorError::Target(format!(
                "Fetch {topic}[{partition}]: error {}",
                p.error_code
            )));
        }
        let mut buf = p.records;
        if buf.is_empty() {
            return Ok(None);
        }
        let sets = RecordBatchDecoder::decode_all(&mut buf)
            .map_err(|e| MirrorError::Target(format!("decode target records: {e}")))?;
        Ok(sets
            .into_iter()
            .flat_map(|s| s.records)
            .find(|r| r.offset >= offset && !r.control))
    }

    /// A connection to the group coordinator of `group` (the bootstrap connection when it is
    /// the coordinator).
    async fn coordinator(&mut self, group: &str) -> Result<Option<Connection>, MirrorError> {
        let conn = self.conn().await?;
        let r = conn
            .call(
                &FindCoordinatorRequest::default()
                    .with_key(s(group))
                    .with_key_type(0),
                2,
            )
            .await?;
        if r.error_code != 0 {
            return Err(MirrorError::Target(format!(
                "FindCoordinator {group}: error {}",
                r.error_code
            )));
        }
        let addr = format!("{}:{}", r.host, r.port);
        if addr == conn.addr() || self.bootstrap.split(',').any(|b| b.trim() == addr) {
            return Ok(None);
        }
        Ok(Some(
            Connection::connect_with(&addr, &self.security, TIMEOUT).await?,
        ))
    }

    /// Commit `offsets` ((topic, partition) -> offset) for `group` as an admin commit
    /// (generation -1, no member), but only where they move the group's committed offset
    /// forward. Returns how many partitions were committed. Fails (e.g. UNKNOWN_MEMBER_ID) when
    /// the group has active members on the target.
    pub async fn commit_forward(
        &mut self,
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<usize, MirrorError> {
        let r = self.commit_forward_inner(group, offsets).await;
        if matches!(r, Err(MirrorError::Client(_))) {
            self.reset();
        }
        r
    }

    async fn commit_forward_inner(
        &mut self,
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<usize, MirrorError> {
        let mut own = self.coordinator(group).await?;
        let conn = match own.as_mut() {
            Some(c) => c,
            None => self.conn().await?,
        };
        let mut by_topic: IndexMap<&str, Vec<i32>> = IndexMap::new();
        for (t, p, _) in offsets {
            by_topic.entry(t.as_str()).or_default().push(*p);
        }
        let fetch = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(Some(
                by_topic
                    .iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partition_indexes(ps.clone())
                    })
                    .collect(),
            ));
        let current = conn.call(&fetch, 5).await?;
        if current.error_code != 0 {
            return Err(MirrorError::Target(format!(
                "OffsetFetch {group}: error {}",
                current.error_code
            )));
        }
        let committed = |topic: &str, partition: i32| -> i64 {
            current
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == partition && p.error_code == 0)
                .map(|p| p.committed_offset)
                .unwrap_or(-1)
        };
        let mut topics: IndexMap<&str, Vec<OffsetCommitRequestPartition>> = IndexMap::new();
        for (t, p, o) in offsets {
            if *o > committed(t, *p) {
                topics.entry(t.as_str()).or_default().push(
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(*o)
                        .with_committed_leader_epoch(-1)
                        .with_committed_metadata(Some(s(""))),
                );
            }
        }
        if topics.is_empty() {
            return Ok(0);
        }
        let n = topics.values().map(Vec::len).sum();
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(s(""))
            .with_group_instance_id(None)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let r = conn.call(&req, 5).await?;
        for t in &r.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Err(MirrorError::Target(format!(
                        "OffsetCommit {group}: error {}",
                        p.error_code
                    )));
                }
            }
        }
        Ok(n)
    }
}
