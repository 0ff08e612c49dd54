//! The bridge's own writes to a target cluster, beside the mirrored records: creating its
//! internal topics (`heartbeats`, `{node}.checkpoints.internal`), producing small records to them,
//! and committing translated consumer group offsets. One lazily opened connection, dropped on any
//! error and reopened on the next call.

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use rill_client::{Client, ConnectOptions, PartitionFetch};

use crate::mirror::{MirrorError, REQUEST_TIMEOUT};
use crate::security::TargetSecurity;

/// A small producer and group-offset client for one target cluster.
pub struct TargetClient {
    bootstrap: String,
    opts: ConnectOptions,
    client: Option<Client>,
}

impl TargetClient {
    /// A client for `bootstrap` (comma separated host:port) with the mirror's TLS/SASL
    /// settings; nothing is opened yet.
    pub fn new(bootstrap: &str, security: TargetSecurity) -> TargetClient {
        TargetClient {
            bootstrap: bootstrap.to_string(),
            opts: ConnectOptions::default()
                .with_security(security)
                .with_client_id("rill-bridge")
                .with_timeout(REQUEST_TIMEOUT),
            client: None,
        }
    }

    /// The client, made if needed.
    fn client(&mut self) -> Result<&mut Client, MirrorError> {
        if self.client.is_none() {
            self.client = Some(Client::new(&self.bootstrap, self.opts.clone())?);
        }
        self.client
            .as_mut()
            .ok_or_else(|| MirrorError::Target("no client".into()))
    }

    /// Forget the connections (after an error).
    pub fn reset(&mut self) {
        self.client = None;
    }

    /// Reset after a failed call, then pass its result on.
    fn keep<T>(&mut self, r: Result<T, MirrorError>) -> Result<T, MirrorError> {
        if matches!(&r, Err(MirrorError::Client(e)) if e.is_connection_error()) {
            self.reset();
        }
        r
    }

    /// Create `topic` with `partitions` and `configs` unless it exists; wait until it has
    /// partitions in the metadata.
    pub async fn ensure_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> Result<(), MirrorError> {
        let r = async {
            self.client()?
                .create_topic_if_missing(topic, partitions, -1, configs)
                .await?;
            Ok(())
        }
        .await;
        self.keep(r)
    }

    /// Produce `(key, value, timestamp)` records to partition 0 of `topic` (acks=all).
    pub async fn produce(
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
        let r = async {
            let results = self
                .client()?
                .produce(topic, &[(0, records)], -1, 30_000, false)
                .await?;
            for (_, r) in results {
                r?;
            }
            Ok(())
        }
        .await;
        self.keep(r)
    }

    /// The log start offset of `topic[partition]`.
    pub async fn earliest(&mut self, topic: &str, partition: i32) -> Result<i64, MirrorError> {
        let r = async { Ok(self.client()?.list_offset(topic, partition, -2, 0).await?) }.await;
        self.keep(r)
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
        let r = async { Ok(self.client()?.fetch(&fetch).await?) }.await;
        let p = self.keep(r)?;
        if let Some(code) = p.error {
            return Err(rill_client::ClientError::Kafka {
                context: format!("fetch {topic}[{partition}]"),
                code,
                message: None,
            }
            .into());
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

    /// Commit `offsets` ((topic, partition) -> offset) for `group` as an admin commit
    /// (generation -1, no member), but only where they move the group's committed offset
    /// forward. Returns how many partitions were committed. Fails (e.g. UNKNOWN_MEMBER_ID) when
    /// the group has active members on the target.
    pub async fn commit_forward(
        &mut self,
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<usize, MirrorError> {
        let r = async {
            let client = self.client()?;
            let partitions: Vec<(String, i32)> =
                offsets.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
            let committed = client.offset_fetch(group, &partitions).await?;
            let forward: rill_client::group::Offsets = offsets
                .iter()
                .filter(|(t, p, o)| *o > committed.get(&(t.clone(), *p)).copied().unwrap_or(-1))
                .map(|(t, p, o)| ((t.clone(), *p), *o))
                .collect();
            if forward.is_empty() {
                return Ok(0);
            }
            client.offset_commit(group, &forward).await?;
            Ok(forward.len())
        }
        .await;
        self.keep(r)
    }
}
