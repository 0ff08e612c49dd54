//! Committed offsets of consumer groups at their coordinator: OffsetFetch and an admin-style
//! OffsetCommit (no member), retried on NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{retry_backoff, Client, Route, ATTEMPTS};
use crate::error::{check, ClientError};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// (topic, partition) -> offset.
pub type Offsets = BTreeMap<(String, i32), i64>;

impl Client {
    /// The committed offsets of `group` for `partitions` ((topic, partition)); partitions
    /// without a committed offset are missing from the answer.
    pub async fn offset_fetch(
        &mut self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<Offsets, ClientError> {
        let mut by_topic: IndexMap<&str, Vec<i32>> = IndexMap::new();
        for (t, p) in partitions {
            by_topic.entry(t.as_str()).or_default().push(*p);
        }
        let req = OffsetFetchRequest::default()
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
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r: Result<_, ClientError> = async {
                let resp = self.coordinator(group).await?.send(&req).await?;
                check(resp.error_code, None, || {
                    format!("offset fetch of group {group}")
                })?;
                let mut out = Offsets::new();
                for t in &resp.topics {
                    for p in &t.partitions {
                        check(p.error_code, None, || {
                            format!(
                                "offset fetch of group {group} {}[{}]",
                                t.name.0, p.partition_index
                            )
                        })?;
                        if p.committed_offset >= 0 {
                            out.insert(
                                (t.name.0.to_string(), p.partition_index),
                                p.committed_offset,
                            );
                        }
                    }
                }
                Ok(out)
            }
            .await;
            match r {
                Err(e) if e.is_stale_routing() && attempt < ATTEMPTS => {
                    self.recover(&e, Route::Group(group));
                    tokio::time::sleep(retry_backoff(attempt)).await;
                }
                r => return r,
            }
        }
    }

    /// Commit `offsets` for `group` as an admin commit (generation -1, no member): fails (e.g.
    /// UNKNOWN_MEMBER_ID) when the group has active members.
    pub async fn offset_commit(
        &mut self,
        group: &str,
        offsets: &Offsets,
    ) -> Result<(), ClientError> {
        let mut topics: IndexMap<&str, Vec<OffsetCommitRequestPartition>> = IndexMap::new();
        for ((t, p), o) in offsets {
            topics.entry(t.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(s(""))),
            );
        }
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
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r: Result<_, ClientError> = async {
                let resp = self.coordinator(group).await?.send(&req).await?;
                for t in &resp.topics {
                    for p in &t.partitions {
                        check(p.error_code, None, || {
                            format!(
                                "offset commit of group {group} {}[{}]",
                                t.name.0, p.partition_index
                            )
                        })?;
                    }
                }
                Ok(())
            }
            .await;
            match r {
                Err(e) if e.is_stale_routing() && attempt < ATTEMPTS => {
                    self.recover(&e, Route::Group(group));
                    tokio::time::sleep(retry_backoff(attempt)).await;
                }
                r => return r,
            }
        }
    }
}
