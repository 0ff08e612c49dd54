//! The [`OffsetStore`] of a cluster's group coordinator: one partition of the internal topic
//! `__consumer_offsets` (Kafka's coordinator shard over its partition). Every change is a record
//! in Kafka's layout ([`super::coordinator_record`]) appended to the partition through the leader
//! append path; the state is the log replayed, cached in memory.
//!
//! - **Loading** ([`PartitionOffsetStore::load`], Kafka's `CoordinatorLoader`): a node that
//!   becomes the partition's leader replays it from the log start to the high watermark (the
//!   caller waits until that covers everything the previous leaders wrote) before serving.
//! - **Offset commits** wait until the partition's high watermark passed the records (acks=all:
//!   replicated to the ISR, `min.insync.replicas` honoured), then become visible; only then is
//!   OffsetCommit acknowledged.
//! - **Group metadata and deletions** (written from inside the coordinator lock, also on async
//!   threads) are appended at once and become visible at once; their replication is waited for in
//!   the background. A coordinator change right after such a write may lose it (members then
//!   rejoin), never an acknowledged commit.
//! - **Fencing**: the [`CoordinatorPartitionWriter`] appends only under the leader epoch the store
//!   was loaded in; a newer epoch (another leader, or this node leading again) answers
//!   [`OffsetStoreError::NotCoordinator`].
//!
//! Writes to one key are applied to the cache in log order (each key remembers the offset of the
//! record it shows), so a commit whose replication wait ends after a later write to the same key
//! does not overwrite it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::coordinator_record::{self, CoordinatorRecord, GroupMetadata};
use super::offset_store::{CommittedOffset, OffsetStore, OffsetStoreError, TopicPartition};
use crate::batch::{decode_records, BatchBuilder, ControlRecords};
use crate::log::{PartitionLog, ReadLimit};
use crate::sync::LockExt;

/// The internal topic of group coordinators.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How a [`PartitionOffsetStore`] writes to its partition.
pub trait CoordinatorPartitionWriter: Send + Sync {
    /// Append `batch` (one record batch) as the partition's leader, under the leader epoch the
    /// store was loaded in; returns the batch's base offset. With `wait`, block until the
    /// records are committed (the high watermark passed them); otherwise their replication is
    /// waited for in the background. Blocking: with `wait`, call from a blocking context.
    fn append(&self, batch: Bytes, wait: bool) -> Result<i64, OffsetStoreError>;
}

/// A key of the cache: `(group, Some((topic, partition)))` for an offset, `(group, None)` for the
/// group's metadata.
type RecordKey = (String, Option<TopicPartition>);

#[derive(Default)]
struct Cache {
    offsets: BTreeMap<String, BTreeMap<TopicPartition, CommittedOffset>>,
    groups: BTreeMap<String, GroupMetadata>,
    /// The log offset of the record each key shows (tombstones included).
    applied_at: BTreeMap<RecordKey, i64>,
}

impl Cache {
    /// Apply `record` written at `offset`, unless the key already shows a later record.
    fn apply(&mut self, offset: i64, record: CoordinatorRecord) {
        let key: RecordKey = match &record {
            CoordinatorRecord::OffsetCommit {
                group,
                topic,
                partition,
                ..
            } => (group.clone(), Some((topic.clone(), *partition))),
            CoordinatorRecord::GroupMetadata { group, .. } => (group.clone(), None),
        };
        if self.applied_at.get(&key).is_some_and(|at| *at > offset) {
            return;
        }
        self.applied_at.insert(key, offset);
        match record {
            CoordinatorRecord::OffsetCommit {
                group,
                topic,
                partition,
                value: Some(c),
            } => {
                self.offsets
                    .entry(group)
                    .or_default()
                    .insert((topic, partition), c);
            }
            CoordinatorRecord::OffsetCommit {
                group,
                topic,
                partition,
                value: None,
            } => {
                if let Some(g) = self.offsets.get_mut(&group) {
                    g.remove(&(topic, partition));
                    if g.is_empty() {
                        self.offsets.remove(&group);
                    }
                }
            }
            CoordinatorRecord::GroupMetadata {
                group,
                value: Some(m),
            } => {
                self.groups.insert(group, m);
            }
            CoordinatorRecord::GroupMetadata { group, value: None } => {
                self.groups.remove(&group);
            }
        }
    }
}

/// One record to write: its key and value (`None`: a tombstone), and what it means.
struct Write {
    key: Bytes,
    value: Option<Bytes>,
    record: CoordinatorRecord,
}

fn offset_write(group: &str, tp: &TopicPartition, value: Option<&CommittedOffset>) -> Write {
    Write {
        key: coordinator_record::offset_commit_key(group, &tp.0, tp.1),
        value: value.map(coordinator_record::offset_commit_value),
        record: CoordinatorRecord::OffsetCommit {
            group: group.to_string(),
            topic: tp.0.clone(),
            partition: tp.1,
            value: value.cloned(),
        },
    }
}

fn group_write(group: &str, value: Option<&GroupMetadata>) -> Write {
    Write {
        key: coordinator_record::group_metadata_key(group),
        value: value.map(coordinator_record::group_metadata_value),
        record: CoordinatorRecord::GroupMetadata {
            group: group.to_string(),
            value: value.cloned(),
        },
    }
}

/// Committed offsets and group metadata of the groups of one `__consumer_offsets` partition.
pub struct PartitionOffsetStore {
    writer: Arc<dyn CoordinatorPartitionWriter>,
    cache: Mutex<Cache>,
}

impl PartitionOffsetStore {
    /// Replay `log` from its start up to `up_to` (exclusive; at most its high watermark) into a
    /// store that writes through `writer`. Records that do not decode are skipped with a warning
    /// (as Kafka's loader does for unknown record types).
    pub fn load(
        writer: Arc<dyn CoordinatorPartitionWriter>,
        log: &PartitionLog,
        up_to: i64,
    ) -> Result<PartitionOffsetStore, OffsetStoreError> {
        let mut cache = Cache::default();
        let mut next = log.log_start_offset();
        let end = up_to.min(log.high_watermark());
        while next < end {
            let read = log
                .read_up_to(next, 1 << 20, ReadLimit::HighWatermark)
                .map_err(|e| OffsetStoreError::Replication(format!("loading: {e}")))?;
            if read.records.is_empty() {
                break;
            }
            let records = decode_records(&read.records, ControlRecords::Skip)
                .map_err(|e| OffsetStoreError::Replication(format!("loading: {e}")))?;
            let mut last = next;
            for r in records {
                last = last.max(r.offset);
                if r.offset < next || r.offset >= end {
                    continue;
                }
                let Some(key) = r.key.as_deref() else {
                    continue;
                };
                match coordinator_record::decode(key, r.value.as_deref()) {
                    Ok(Some(record)) => cache.apply(r.offset, record),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(offset = r.offset, error = %e, "skipping an undecodable __consumer_offsets record")
                    }
                }
            }
            // Batches are whole: continue after the last batch read.
            let next_batch = crate::batch::Batches::new(&read.records)
                .filter_map(Result::ok)
                .map(|b| b.header.last_offset() + 1)
                .last()
                .unwrap_or(last + 1);
            next = next_batch.max(next + 1);
        }
        Ok(PartitionOffsetStore {
            writer,
            cache: Mutex::new(cache),
        })
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock_unpoisoned()
    }

    /// Append `writes` as one batch; apply them to the cache once written (with `wait`: once
    /// committed).
    fn write(&self, writes: Vec<Write>, wait: bool) -> Result<(), OffsetStoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut batch = BatchBuilder::new();
        let now = crate::clock::now_ms();
        for w in &writes {
            batch.push(Some(w.key.clone()), w.value.clone(), now);
        }
        let batch = batch
            .build()
            .map_err(|e| OffsetStoreError::Replication(e.to_string()))?;
        let base = self.writer.append(batch, wait)?;
        let mut cache = self.cache();
        for (i, w) in writes.into_iter().enumerate() {
            cache.apply(base + i as i64, w.record);
        }
        Ok(())
    }
}

impl OffsetStore for PartitionOffsetStore {
    /// Acknowledged once replicated (see the module doc).
    fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, CommittedOffset)],
    ) -> Result<(), OffsetStoreError> {
        let writes = offsets
            .iter()
            .map(|(tp, c)| offset_write(group, tp, Some(c)))
            .collect();
        self.write(writes, true)
    }

    fn group_offsets(&self, group: &str) -> BTreeMap<TopicPartition, CommittedOffset> {
        self.cache().offsets.get(group).cloned().unwrap_or_default()
    }

    fn has_offsets(&self, group: &str) -> bool {
        self.cache()
            .offsets
            .get(group)
            .is_some_and(|g| !g.is_empty())
    }

    fn groups(&self) -> Vec<String> {
        let cache = self.cache();
        let mut out: Vec<String> = cache.offsets.keys().cloned().collect();
        out.extend(
            cache
                .groups
                .keys()
                .filter(|g| !cache.offsets.contains_key(*g))
                .cloned(),
        );
        out.sort();
        out
    }

    fn protocol_type(&self, group: &str) -> Option<String> {
        self.cache()
            .groups
            .get(group)
            .map(|g| g.protocol_type.clone())
            .filter(|t| !t.is_empty())
    }

    /// The protocol type is part of the group's metadata record, written with the generation
    /// ([`OffsetStore::store_group`]); a group without one yet gets an empty generation 0 record.
    fn set_protocol_type(&self, group: &str, protocol_type: &str) -> Result<(), OffsetStoreError> {
        let existing = self.cache().groups.get(group).cloned();
        if existing
            .as_ref()
            .is_some_and(|g| g.protocol_type == protocol_type)
        {
            return Ok(());
        }
        let metadata = match existing {
            Some(g) => GroupMetadata {
                protocol_type: protocol_type.to_string(),
                ..g
            },
            None => GroupMetadata {
                protocol_type: protocol_type.to_string(),
                generation: 0,
                protocol: None,
                leader: None,
                current_state_timestamp_ms: crate::clock::now_ms(),
                members: Vec::new(),
            },
        };
        self.write(vec![group_write(group, Some(&metadata))], false)
    }

    fn delete_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<(), OffsetStoreError> {
        let writes = partitions
            .iter()
            .map(|tp| offset_write(group, tp, None))
            .collect();
        self.write(writes, false)
    }

    fn delete_group(&self, group: &str) -> Result<(), OffsetStoreError> {
        let mut writes: Vec<Write> = self
            .group_offsets(group)
            .keys()
            .map(|tp| offset_write(group, tp, None))
            .collect();
        writes.push(group_write(group, None));
        self.write(writes, false)
    }

    fn delete_topic(&self, topic: &str) -> Result<(), OffsetStoreError> {
        let doomed: Vec<(String, TopicPartition)> = {
            let cache = self.cache();
            cache
                .offsets
                .iter()
                .flat_map(|(g, offsets)| {
                    offsets
                        .keys()
                        .filter(|(t, _)| t == topic)
                        .map(|tp| (g.clone(), tp.clone()))
                })
                .collect()
        };
        let writes = doomed
            .iter()
            .map(|(g, tp)| offset_write(g, tp, None))
            .collect();
        self.write(writes, false)
    }

    fn store_group(&self, group: &str, metadata: &GroupMetadata) -> Result<(), OffsetStoreError> {
        self.write(vec![group_write(group, Some(metadata))], false)
    }

    fn group_metadata(&self, group: &str) -> Option<GroupMetadata> {
        self.cache().groups.get(group).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::SimStorage;
    use crate::log::tests::opts;
    use std::sync::Mutex as StdMutex;

    /// Appends to a local log (flush always: the high watermark follows), refusing once
    /// `fenced`; the base offsets it handed out, in order.
    struct LogWriter {
        log: Arc<PartitionLog>,
        fenced: StdMutex<bool>,
    }

    impl CoordinatorPartitionWriter for LogWriter {
        fn append(&self, batch: Bytes, _wait: bool) -> Result<i64, OffsetStoreError> {
            if *self.fenced.lock().unwrap() {
                return Err(OffsetStoreError::NotCoordinator("fenced".into()));
            }
            let info = self
                .log
                .append(&batch)
                .map_err(|e| OffsetStoreError::Replication(e.to_string()))?;
            self.log
                .flush_to(info.last_offset)
                .map_err(|e| OffsetStoreError::Replication(e.to_string()))?;
            Ok(info.base_offset)
        }
    }

    fn off(offset: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: 1,
            metadata: format!("m{offset}"),
            commit_timestamp_ms: 1000 + offset,
            expire_timestamp_ms: None,
        }
    }

    fn tp(t: &str, p: i32) -> TopicPartition {
        (t.to_string(), p)
    }

    #[test]
    fn a_new_leader_loads_what_the_old_one_wrote() {
        let s = SimStorage::new();
        let log = Arc::new(PartitionLog::open("/p".into(), opts(Arc::new(s), true)).unwrap());
        let writer = Arc::new(LogWriter {
            log: log.clone(),
            fenced: StdMutex::new(false),
        });
        let old = PartitionOffsetStore::load(writer.clone(), &log, 0).unwrap();
        old.commit("g1", &[(tp("t", 0), off(5)), (tp("t", 1), off(7))])
            .unwrap();
        old.commit("g1", &[(tp("t", 0), off(9))]).unwrap();
        old.commit("g2", &[(tp("u", 0), off(3))]).unwrap();
        old.delete_offsets("g1", &[tp("t", 1)]).unwrap();
        old.commit("g3", &[(tp("t", 0), off(1))]).unwrap();
        old.delete_group("g3").unwrap();
        let meta = GroupMetadata {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            current_state_timestamp_ms: 5,
            members: Vec::new(),
        };
        old.store_group("g2", &meta).unwrap();
        old.delete_topic("u").unwrap();

        let new = PartitionOffsetStore::load(writer.clone(), &log, log.high_watermark()).unwrap();
        for store in [&old, &new] {
            assert_eq!(
                store.group_offsets("g1"),
                BTreeMap::from([(tp("t", 0), off(9))])
            );
            assert!(!store.has_offsets("g2"));
            assert_eq!(store.group_metadata("g2"), Some(meta.clone()));
            assert_eq!(store.protocol_type("g2").as_deref(), Some("consumer"));
            assert_eq!(store.groups(), vec!["g1".to_string(), "g2".to_string()]);
        }
        // Loading only a prefix (what the high watermark covered) gives that prefix's state.
        let first = PartitionOffsetStore::load(writer.clone(), &log, 1).unwrap();
        assert_eq!(
            first.group_offsets("g1"),
            BTreeMap::from([(tp("t", 0), off(5))])
        );
        // A fenced writer fails the commit, and the cache does not change.
        *writer.fenced.lock().unwrap() = true;
        assert!(matches!(
            new.commit("g1", &[(tp("t", 0), off(11))]),
            Err(OffsetStoreError::NotCoordinator(_))
        ));
        assert_eq!(new.get("g1", "t", 0), Some(off(9)));
    }

    #[test]
    fn a_late_write_does_not_hide_a_later_one() {
        let mut cache = Cache::default();
        let rec = |v: Option<CommittedOffset>| CoordinatorRecord::OffsetCommit {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: v,
        };
        cache.apply(10, rec(Some(off(4))));
        cache.apply(12, rec(None));
        // The commit at 11 finished its replication wait after the deletion at 12.
        cache.apply(11, rec(Some(off(6))));
        assert!(!cache.offsets.contains_key("g"));
        cache.apply(13, rec(Some(off(8))));
        assert_eq!(cache.offsets["g"][&tp("t", 0)], off(8));
    }
}
