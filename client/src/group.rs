//! Consumer groups as admin tools see them: ListGroups at every broker, DescribeGroups and the
//! committed offsets (OffsetFetch) at the group's coordinator, and an admin-style OffsetCommit
//! (no member); calls at the coordinator are retried on NOT_COORDINATOR /
//! COORDINATOR_LOAD_IN_PROGRESS.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{retry_backoff, Client, Route, ATTEMPTS};
use crate::error::{check, ClientError};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// (topic, partition) -> offset.
pub type Offsets = BTreeMap<(String, i32), i64>;

/// A group as ListGroups lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type (`consumer` for Kafka consumers).
    pub protocol_type: String,
    /// State (`Stable`, `Empty`, ...) as the coordinator names it.
    pub state: String,
    /// Group type (`classic`, `consumer`), empty when the broker does not say.
    pub group_type: String,
    /// The broker that listed it (the group's coordinator).
    pub coordinator: i32,
}

/// A member as DescribeGroups describes it.
#[derive(Debug, Clone)]
pub struct GroupMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id, if any.
    pub group_instance_id: Option<String>,
    /// The member's client id.
    pub client_id: String,
    /// The member's host.
    pub client_host: String,
    /// The member's assignment, as the group's protocol encodes it.
    pub assignment: bytes::Bytes,
}

/// A group as DescribeGroups describes it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State, e.g. `Stable`.
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// The chosen protocol (assignor), empty when none.
    pub protocol: String,
    /// The members.
    pub members: Vec<GroupMember>,
}

impl Client {
    /// Every group of the cluster: ListGroups at each broker of the metadata (each lists the
    /// groups it coordinates), sorted by id.
    pub async fn list_groups(&mut self) -> Result<Vec<GroupListing>, ClientError> {
        let md = self.metadata(Some(&[]), false).await?;
        let mut out = Vec::new();
        for id in md.brokers.keys() {
            let resp = self
                .broker(*id)
                .await?
                .send(&ListGroupsRequest::default())
                .await?;
            check(resp.error_code, None, || {
                format!("list groups at broker {id}")
            })?;
            out.extend(resp.groups.iter().map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
                group_type: g.group_type.to_string(),
                coordinator: *id,
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// DescribeGroups of `group` at its coordinator; a group the coordinator does not know is
    /// described in state `Dead`, as Kafka does.
    pub async fn describe_group(&mut self, group: &str) -> Result<GroupDescription, ClientError> {
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r: Result<_, ClientError> = async {
                let resp = self.coordinator(group).await?.send(&req).await?;
                let g = resp.groups.first().ok_or_else(|| {
                    ClientError::Usage(format!("broker sent no description of group {group}"))
                })?;
                check(g.error_code, None, || format!("describe group {group}"))?;
                Ok(GroupDescription {
                    group_id: g.group_id.0.to_string(),
                    state: g.group_state.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    protocol: g.protocol_data.to_string(),
                    members: g
                        .members
                        .iter()
                        .map(|m| GroupMember {
                            member_id: m.member_id.to_string(),
                            group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                            client_id: m.client_id.to_string(),
                            client_host: m.client_host.to_string(),
                            assignment: m.member_assignment.clone(),
                        })
                        .collect(),
                })
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

    /// Every committed offset of `group` (OffsetFetch of all topics at its coordinator).
    pub async fn committed_offsets(&mut self, group: &str) -> Result<Offsets, ClientError> {
        self.offset_fetch_topics(group, None).await
    }

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
        let topics = by_topic
            .iter()
            .map(|(t, ps)| {
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s(t)))
                    .with_partition_indexes(ps.clone())
            })
            .collect();
        self.offset_fetch_topics(group, Some(topics)).await
    }

    /// OffsetFetch of `topics` (None: every topic the group committed) at the coordinator.
    async fn offset_fetch_topics(
        &mut self,
        group: &str,
        topics: Option<Vec<OffsetFetchRequestTopic>>,
    ) -> Result<Offsets, ClientError> {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(topics);
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
