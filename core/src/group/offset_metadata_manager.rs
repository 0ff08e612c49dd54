//! Committed offsets (Kafka's `OffsetMetadataManager`): which offsets of an OffsetCommit are
//! stored, OffsetFetch, OffsetDelete (refused for topics a consumer-protocol group subscribes to)
//! and the expiry of old offsets, over an [`OffsetStore`]. Whether a commit may happen at all
//! (membership, generation, member epoch) is the group's rule, checked by
//! [`super::group_metadata_manager::GroupMetadataManager::validate_offset_commit`] first.
//!
//! Times here are wall-clock milliseconds: they are stored with the offsets (commit time, an
//! explicit expiry) or compared with stored ones.

use std::sync::Arc;

use super::classic::state::ClassicGroupStateName;
use super::config::GroupConfig;
use super::consumer_protocol::CONSUMER_PROTOCOL_TYPE;
use super::error::{validate_group_id, GroupError};
use super::group_metadata_manager::GroupMetadataManager;
use super::offset_store::{CommittedOffset, OffsetStore, TopicPartition};

/// One partition of an OffsetCommit request.
#[derive(Debug, Clone)]
pub struct OffsetCommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// An OffsetCommit request.
#[derive(Debug, Clone)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    /// -1 for commits from outside group management (admin tools, simple consumers).
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v2-v4 `retention_time_ms` when not -1.
    pub retention_ms: Option<u64>,
    pub offsets: Vec<OffsetCommitEntry>,
}

/// Per-partition outcomes of a commit and the offsets to store.
pub(crate) type PreparedCommit = (
    Vec<Result<(), GroupError>>,
    Vec<(TopicPartition, CommittedOffset)>,
);

/// The committed offsets of every group.
pub(crate) struct OffsetMetadataManager {
    store: Arc<dyn OffsetStore>,
}

impl OffsetMetadataManager {
    /// Offsets kept in `store`.
    pub fn new(store: Arc<dyn OffsetStore>) -> OffsetMetadataManager {
        OffsetMetadataManager { store }
    }

    /// The store.
    pub fn store(&self) -> &dyn OffsetStore {
        self.store.as_ref()
    }

    /// Per-partition checks of a commit at `wall_ms`, and the offsets to store.
    pub fn prepare_commit(
        &self,
        config: &GroupConfig,
        req: &OffsetCommitRequest,
        wall_ms: i64,
    ) -> PreparedCommit {
        let expire = req
            .retention_ms
            .map(|r| wall_ms.saturating_add(i64::try_from(r).unwrap_or(i64::MAX)));
        let mut results = Vec::with_capacity(req.offsets.len());
        let mut accepted = Vec::new();
        for e in &req.offsets {
            let metadata = e.metadata.clone().unwrap_or_default();
            if metadata.len() > config.offset_metadata_max_bytes {
                results.push(Err(GroupError::OffsetMetadataTooLarge));
                continue;
            }
            results.push(Ok(()));
            accepted.push((
                (e.topic.clone(), e.partition),
                CommittedOffset {
                    offset: e.offset,
                    leader_epoch: e.leader_epoch,
                    metadata,
                    commit_timestamp_ms: wall_ms,
                    expire_timestamp_ms: expire,
                },
            ));
        }
        (results, accepted)
    }

    /// Store accepted offsets durably (waits for the disk; call without the coordinator lock).
    pub fn commit(
        &self,
        group_id: &str,
        accepted: &[(TopicPartition, CommittedOffset)],
    ) -> Result<(), GroupError> {
        Ok(self.store.commit(group_id, accepted)?)
    }

    /// OffsetFetch: the committed offsets of the given partitions (`None`: all the group has).
    /// Partitions without a commit come back as `None`.
    pub fn fetch(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<(TopicPartition, Option<CommittedOffset>)>, GroupError> {
        validate_group_id(group_id)?;
        let all = self.store.group_offsets(group_id);
        Ok(match partitions {
            None => all.into_iter().map(|(tp, c)| (tp, Some(c))).collect(),
            Some(list) => list
                .iter()
                .map(|tp| (tp.clone(), all.get(tp).cloned()))
                .collect(),
        })
    }

    /// OffsetDelete: delete committed offsets of partitions the group does not consume.
    pub fn delete(
        &self,
        groups: &GroupMetadataManager,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        validate_group_id(group_id)?;
        let group = groups
            .classic(group_id)
            .ok_or(GroupError::GroupIdNotFound)?;
        let subscribed = match group.state_name() {
            ClassicGroupStateName::Empty => None,
            ClassicGroupStateName::Dead => return Err(GroupError::GroupIdNotFound),
            _ if group.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE) => {
                // Unknown subscriptions protect every topic.
                Some(group.subscribed_topics())
            }
            _ => return Err(GroupError::NonEmptyGroup),
        };
        let mut results = Vec::with_capacity(partitions.len());
        let mut doomed = Vec::new();
        for tp in partitions {
            let protected = match &subscribed {
                None => false,
                Some(None) => true,
                Some(Some(topics)) => topics.contains(&tp.0),
            };
            if protected {
                results.push(Err(GroupError::GroupSubscribedToTopic));
            } else {
                results.push(Ok(()));
                doomed.push(tp.clone());
            }
        }
        self.store.delete_offsets(group_id, &doomed)?;
        Ok(results)
    }

    /// Expire old offsets at `wall_ms`: an Empty group's offsets `offsets.retention.minutes` after
    /// the later of the commit and the moment the group became empty; a Stable consumer-protocol
    /// group's offsets of topics it no longer subscribes to. Empty groups left without offsets
    /// are removed.
    pub fn expire(&self, config: &GroupConfig, groups: &mut GroupMetadataManager, wall_ms: i64) {
        let retention = i64::try_from(config.offsets_retention_ms).unwrap_or(i64::MAX);
        let expired = |base: i64, c: &CommittedOffset| match c.expire_timestamp_ms {
            Some(t) => wall_ms >= t,
            None => wall_ms.saturating_sub(base) >= retention,
        };
        let mut dead = Vec::new();
        for group in groups.classic_groups() {
            let offsets = self.store.group_offsets(&group.group_id);
            let doomed: Vec<TopicPartition> = match group.state_name() {
                ClassicGroupStateName::Empty => {
                    let since = group.state_since_ms.unwrap_or(0);
                    offsets
                        .iter()
                        .filter(|(_, c)| expired(since.max(c.commit_timestamp_ms), c))
                        .map(|(tp, _)| tp.clone())
                        .collect()
                }
                ClassicGroupStateName::Stable => match group.subscribed_topics() {
                    Some(topics) => offsets
                        .iter()
                        .filter(|((t, _), c)| {
                            !topics.contains(t) && expired(c.commit_timestamp_ms, c)
                        })
                        .map(|(tp, _)| tp.clone())
                        .collect(),
                    None => Vec::new(),
                },
                _ => Vec::new(),
            };
            if !doomed.is_empty() {
                tracing::info!(group = %group.group_id, count = doomed.len(), "expiring committed offsets");
                if let Err(e) = self.store.delete_offsets(&group.group_id, &doomed) {
                    tracing::warn!(group = %group.group_id, error = %e, "offset expiry failed");
                    continue;
                }
            }
            if group.is_in(ClassicGroupStateName::Empty)
                && group.pending_members.is_empty()
                && !self.store.has_offsets(&group.group_id)
            {
                dead.push(group.group_id.clone());
            }
        }
        for id in dead {
            if let Err(e) = self.store.delete_group(&id) {
                tracing::warn!(group = %id, error = %e, "could not remove group record");
                continue;
            }
            groups.remove(&id, wall_ms);
        }
    }
}
