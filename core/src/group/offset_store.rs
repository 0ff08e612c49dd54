//! Committed offsets of consumer groups behind the [`OffsetStore`] trait, and its backend in the
//! node's redb metadata database ([`RedbOffsetStore`]); a replicated backend (an internal
//! compacted topic, as Kafka's `__consumer_offsets`) can implement the same trait.
//!
//! In the redb backend every commit is durable in a redb write transaction when it returns, so an acknowledged
//! OffsetCommit survives a crash; commits that arrive while one is being written share the next
//! transaction (group commit, one fsync for the batch). All offsets are also cached in memory: OffsetFetch, lag and the
//! retention sweep never touch the disk. The protocol type of each group is kept too, so that
//! ListGroups/DescribeGroups show it for groups that only exist through their offsets after a
//! restart. See `docs/consumer-groups.md` for why redb and not an internal compacted topic.
//!
//! The client's metadata string of a commit is sealed with the node's metadata data key
//! ([`MetaStore::seal`]); a table written by an older build (`group_offsets`, metadata in clear)
//! is migrated, sealing its metadata, the first time the store opens.

use super::coordinator_record::GroupMetadata;
use crate::metadata::MetaStore;
use crate::sync::LockExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// Offsets: (group, topic, partition) -> (offset, leader epoch, commit time ms, expire time ms or
/// -1, metadata: empty, or sealed, or with encryption off 0x00 followed by the UTF-8 string).
const OFFSETS_TABLE: &str = "group_committed_offsets";
const OFFSETS: TableDefinition<OffsetKey, OffsetValue> = TableDefinition::new(OFFSETS_TABLE);
type OffsetKey = (&'static str, &'static str, i32);
type OffsetValue = (i64, i32, u64, i64, &'static [u8]);
/// The table of schema version 1 (metadata in clear), migrated at open.
const LEGACY_OFFSETS: TableDefinition<OffsetKey, LegacyOffsetValue> =
    TableDefinition::new("group_offsets");
type LegacyOffsetValue = (i64, i32, u64, i64, &'static str);
/// Group protocol types: group -> protocol type.
const PROTOCOL_TYPES: TableDefinition<&str, &str> = TableDefinition::new("group_protocol_types");

/// Errors of the offset store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OffsetStoreError {
    /// The metadata database failed (I/O, corruption). Shared, because one failed group commit
    /// is the answer to every commit of its batch.
    #[error("offset store: {0}")]
    Storage(#[source] Arc<redb::Error>),
    /// A replicated store's partition is no longer led by this node under the epoch it was
    /// loaded in (NOT_COORDINATOR: the client finds the new coordinator).
    #[error("not the coordinator any more: {0}")]
    NotCoordinator(String),
    /// A replicated write was not committed (not enough in-sync replicas, a timeout, a disk
    /// error); COORDINATOR_NOT_AVAILABLE, which clients retry.
    #[error("offset write not replicated: {0}")]
    Replication(String),
}

/// Two errors are equal when they are the same failure (the same batch's).
impl PartialEq for OffsetStoreError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (OffsetStoreError::Storage(a), OffsetStoreError::Storage(b)) => Arc::ptr_eq(a, b),
            (OffsetStoreError::NotCoordinator(a), OffsetStoreError::NotCoordinator(b))
            | (OffsetStoreError::Replication(a), OffsetStoreError::Replication(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for OffsetStoreError {}

fn storage(e: impl Into<redb::Error>) -> OffsetStoreError {
    OffsetStoreError::Storage(Arc::new(e.into()))
}

fn sealing(e: crate::metadata::MetaError) -> OffsetStoreError {
    OffsetStoreError::Storage(Arc::new(redb::Error::Corrupted(e.to_string())))
}

/// The row key bound into a sealed metadata string.
fn row_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut k = Vec::with_capacity(group.len() + topic.len() + 8);
    for s in [group, topic] {
        k.extend_from_slice(&u16::try_from(s.len()).unwrap_or(u16::MAX).to_be_bytes());
        k.extend_from_slice(s.as_bytes());
    }
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// The stored form of a commit's metadata string.
fn seal_metadata(
    db: &MetaStore,
    group: &str,
    topic: &str,
    partition: i32,
    metadata: &str,
) -> Result<Vec<u8>, OffsetStoreError> {
    if metadata.is_empty() {
        return Ok(Vec::new());
    }
    let key = row_key(group, topic, partition);
    Ok(
        match db
            .seal(OFFSETS_TABLE, &key, metadata.as_bytes())
            .map_err(sealing)?
        {
            Some(sealed) => sealed,
            None => {
                let mut clear = Vec::with_capacity(metadata.len() + 1);
                clear.push(0);
                clear.extend_from_slice(metadata.as_bytes());
                clear
            }
        },
    )
}

/// A commit's metadata string from its stored form.
fn open_metadata(
    db: &MetaStore,
    group: &str,
    topic: &str,
    partition: i32,
    stored: &[u8],
) -> Result<String, OffsetStoreError> {
    let plain = match stored.first() {
        None => return Ok(String::new()),
        Some(0) => stored[1..].to_vec(),
        Some(_) => db
            .unseal(OFFSETS_TABLE, &row_key(group, topic, partition), stored)
            .map_err(sealing)?,
    };
    String::from_utf8(plain).map_err(|_| {
        sealing(crate::metadata::MetaError::Db {
            path: db.path().to_path_buf(),
            message: format!("offset metadata of {group}/{topic}-{partition} is not UTF-8"),
        })
    })
}

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// Client metadata string, returned as committed.
    pub metadata: String,
    /// When the commit happened (wall-clock ms since the epoch).
    pub commit_timestamp_ms: i64,
    /// Explicit expiry (wall-clock ms) from an old (v1-v4) commit's retention time, if any.
    pub expire_timestamp_ms: Option<i64>,
}

/// (topic, partition)
pub type TopicPartition = (String, i32);

type GroupOffsets = BTreeMap<TopicPartition, CommittedOffset>;

/// Where the committed offsets of every group are kept. Reads are served from memory; writes are
/// durable when they return.
pub trait OffsetStore: Send + Sync {
    /// Store offsets of one group atomically and durably.
    fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, CommittedOffset)],
    ) -> Result<(), OffsetStoreError>;

    /// Every committed offset of a group.
    fn group_offsets(&self, group: &str) -> BTreeMap<TopicPartition, CommittedOffset>;

    /// Does the group have any committed offset?
    fn has_offsets(&self, group: &str) -> bool;

    /// Groups that have committed offsets or a recorded protocol type, sorted.
    fn groups(&self) -> Vec<String>;

    /// The recorded protocol type of a group.
    fn protocol_type(&self, group: &str) -> Option<String>;

    /// Record the protocol type of a group.
    fn set_protocol_type(&self, group: &str, protocol_type: &str) -> Result<(), OffsetStoreError>;

    /// Delete some offsets of a group.
    fn delete_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<(), OffsetStoreError>;

    /// Delete a group: its offsets and protocol type.
    fn delete_group(&self, group: &str) -> Result<(), OffsetStoreError>;

    /// Delete the offsets of a deleted topic from every group (Kafka does this on topic
    /// deletion, so a re-created topic does not inherit stale positions).
    fn delete_topic(&self, topic: &str) -> Result<(), OffsetStoreError>;

    /// Record a classic group's metadata (written when a generation completes and when the
    /// group becomes empty). Stores that do not keep it (the redb store of a node alone: members
    /// rejoin after a restart) ignore it.
    fn store_group(&self, _group: &str, _metadata: &GroupMetadata) -> Result<(), OffsetStoreError> {
        Ok(())
    }

    /// The recorded metadata of a group, if the store keeps it.
    fn group_metadata(&self, _group: &str) -> Option<GroupMetadata> {
        None
    }

    /// The committed offset of one partition.
    fn get(&self, group: &str, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.group_offsets(group)
            .remove(&(topic.to_string(), partition))
    }
}

/// The committed offsets of every group in redb.
pub struct RedbOffsetStore {
    db: Arc<MetaStore>,
    cache: Mutex<Cache>,
    /// Group commit: concurrent commits share one durable transaction.
    queue: Mutex<CommitQueue>,
    queue_changed: Condvar,
}

/// One queued commit: (ticket, group, offsets).
type QueuedCommit = (u64, String, Vec<(TopicPartition, CommittedOffset)>);

/// Commits waiting for the next durable transaction, and the outcomes of written ones.
#[derive(Default)]
struct CommitQueue {
    next_id: u64,
    waiting: Vec<QueuedCommit>,
    /// A thread is writing a batch.
    writing: bool,
    done: HashMap<u64, Result<(), OffsetStoreError>>,
}

#[derive(Default)]
struct Cache {
    offsets: BTreeMap<String, GroupOffsets>,
    protocol_types: BTreeMap<String, String>,
}

impl RedbOffsetStore {
    /// Open (creating the tables) and load every committed offset.
    pub fn open(db: Arc<MetaStore>) -> Result<RedbOffsetStore, OffsetStoreError> {
        use redb::TableHandle;
        let txn = db.db().begin_write().map_err(storage)?;
        let legacy = txn
            .list_tables()
            .map_err(storage)?
            .any(|t| t.name() == LEGACY_OFFSETS.name());
        {
            let mut table = txn.open_table(OFFSETS).map_err(storage)?;
            txn.open_table(PROTOCOL_TYPES).map_err(storage)?;
            if legacy {
                // Schema version 1: the same rows with the metadata string in clear.
                let old = txn.open_table(LEGACY_OFFSETS).map_err(storage)?;
                let mut moved = 0usize;
                for row in old.iter().map_err(storage)? {
                    let (k, v) = row.map_err(storage)?;
                    let (group, topic, partition) = k.value();
                    let (offset, epoch, commit_ts, expire_ts, metadata) = v.value();
                    let md = seal_metadata(&db, group, topic, partition, metadata)?;
                    table
                        .insert(
                            (group, topic, partition),
                            (offset, epoch, commit_ts, expire_ts, md.as_slice()),
                        )
                        .map_err(storage)?;
                    moved += 1;
                }
                drop(old);
                txn.delete_table(LEGACY_OFFSETS).map_err(storage)?;
                tracing::info!(
                    offsets = moved,
                    sealed = db.seals(),
                    "committed offsets migrated to the table of metadata schema version 2"
                );
            }
        }
        txn.commit().map_err(storage)?;

        let mut cache = Cache::default();
        let read = db.db().begin_read().map_err(storage)?;
        let offsets = read.open_table(OFFSETS).map_err(storage)?;
        for row in offsets.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            let (group, topic, partition) = k.value();
            let (offset, leader_epoch, commit_ts, expire_ts, metadata) = v.value();
            let metadata = open_metadata(&db, group, topic, partition, metadata)?;
            cache.offsets.entry(group.to_string()).or_default().insert(
                (topic.to_string(), partition),
                CommittedOffset {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_timestamp_ms: i64::try_from(commit_ts).unwrap_or(i64::MAX),
                    expire_timestamp_ms: (expire_ts >= 0).then_some(expire_ts),
                },
            );
        }
        let types = read.open_table(PROTOCOL_TYPES).map_err(storage)?;
        for row in types.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            cache
                .protocol_types
                .insert(k.value().to_string(), v.value().to_string());
        }
        Ok(RedbOffsetStore {
            db,
            cache: Mutex::new(cache),
            queue: Mutex::new(CommitQueue::default()),
            queue_changed: Condvar::new(),
        })
    }

    fn queue(&self) -> MutexGuard<'_, CommitQueue> {
        self.queue.lock_unpoisoned()
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock_unpoisoned()
    }

    /// One durable transaction for a batch of commits; the cache follows in commit order.
    fn write_batch(&self, batch: &[QueuedCommit]) -> Result<(), OffsetStoreError> {
        let mut cache = self.cache();
        let txn = self.db.db().begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(OFFSETS).map_err(storage)?;
            for (_, group, offsets) in batch {
                for ((topic, partition), c) in offsets {
                    let expire = c.expire_timestamp_ms.map_or(-1, |t| t.max(0));
                    let md = seal_metadata(&self.db, group, topic, *partition, &c.metadata)?;
                    table
                        .insert(
                            (group.as_str(), topic.as_str(), *partition),
                            (
                                c.offset,
                                c.leader_epoch,
                                u64::try_from(c.commit_timestamp_ms).unwrap_or(0),
                                expire,
                                md.as_slice(),
                            ),
                        )
                        .map_err(storage)?;
                }
            }
        }
        txn.commit().map_err(storage)?;
        for (_, group, offsets) in batch {
            let entry = cache.offsets.entry(group.clone()).or_default();
            for (tp, c) in offsets {
                entry.insert(tp.clone(), c.clone());
            }
        }
        Ok(())
    }
}

impl OffsetStore for RedbOffsetStore {
    /// Commits arriving while another is being written are batched into the next transaction (one
    /// fsync for all of them).
    fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, CommittedOffset)],
    ) -> Result<(), OffsetStoreError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut q = self.queue();
        let id = q.next_id;
        q.next_id += 1;
        q.waiting.push((id, group.to_string(), offsets.to_vec()));
        loop {
            if let Some(result) = q.done.remove(&id) {
                return result;
            }
            if !q.writing {
                // Become the writer for everything queued so far (including our own commit).
                q.writing = true;
                let batch = std::mem::take(&mut q.waiting);
                drop(q);
                let result = self.write_batch(&batch);
                q = self.queue();
                for (job, _, _) in &batch {
                    q.done.insert(*job, result.clone());
                }
                q.writing = false;
                self.queue_changed.notify_all();
                continue;
            }
            q = crate::sync::wait_unpoisoned(&self.queue_changed, q);
        }
    }

    /// Every committed offset of a group.
    fn group_offsets(&self, group: &str) -> BTreeMap<TopicPartition, CommittedOffset> {
        self.cache().offsets.get(group).cloned().unwrap_or_default()
    }

    /// Does the group have any committed offset?
    fn has_offsets(&self, group: &str) -> bool {
        self.cache()
            .offsets
            .get(group)
            .is_some_and(|g| !g.is_empty())
    }

    /// Groups that have committed offsets or a recorded protocol type.
    fn groups(&self) -> Vec<String> {
        let cache = self.cache();
        let mut out: Vec<String> = cache.offsets.keys().cloned().collect();
        for g in cache.protocol_types.keys() {
            if !cache.offsets.contains_key(g) {
                out.push(g.clone());
            }
        }
        out.sort();
        out
    }

    /// The recorded protocol type of a group.
    fn protocol_type(&self, group: &str) -> Option<String> {
        self.cache().protocol_types.get(group).cloned()
    }

    /// Record the protocol type of a group (written only when it changes).
    fn set_protocol_type(&self, group: &str, protocol_type: &str) -> Result<(), OffsetStoreError> {
        let mut cache = self.cache();
        if cache.protocol_types.get(group).map(String::as_str) == Some(protocol_type) {
            return Ok(());
        }
        let txn = self.db.db().begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(PROTOCOL_TYPES).map_err(storage)?;
            table.insert(group, protocol_type).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        cache
            .protocol_types
            .insert(group.to_string(), protocol_type.to_string());
        Ok(())
    }

    /// Delete some offsets of a group.
    fn delete_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<(), OffsetStoreError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut cache = self.cache();
        let txn = self.db.db().begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(OFFSETS).map_err(storage)?;
            for (topic, partition) in partitions {
                table
                    .remove((group, topic.as_str(), *partition))
                    .map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)?;
        if let Some(g) = cache.offsets.get_mut(group) {
            for tp in partitions {
                g.remove(tp);
            }
            if g.is_empty() {
                cache.offsets.remove(group);
            }
        }
        Ok(())
    }

    /// Delete a group: its offsets and protocol type.
    fn delete_group(&self, group: &str) -> Result<(), OffsetStoreError> {
        let mut cache = self.cache();
        let keys: Vec<TopicPartition> = cache
            .offsets
            .get(group)
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default();
        let txn = self.db.db().begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(OFFSETS).map_err(storage)?;
            for (topic, partition) in &keys {
                table
                    .remove((group, topic.as_str(), *partition))
                    .map_err(storage)?;
            }
            let mut types = txn.open_table(PROTOCOL_TYPES).map_err(storage)?;
            types.remove(group).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        cache.offsets.remove(group);
        cache.protocol_types.remove(group);
        Ok(())
    }

    /// Delete the offsets of a deleted topic from every group (Kafka does this on topic
    /// deletion, so a re-created topic does not inherit stale positions).
    fn delete_topic(&self, topic: &str) -> Result<(), OffsetStoreError> {
        let mut cache = self.cache();
        let mut doomed: Vec<(String, TopicPartition)> = Vec::new();
        for (group, offsets) in &cache.offsets {
            for tp in offsets.keys().filter(|(t, _)| t == topic) {
                doomed.push((group.clone(), tp.clone()));
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        let txn = self.db.db().begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(OFFSETS).map_err(storage)?;
            for (group, (t, p)) in &doomed {
                table
                    .remove((group.as_str(), t.as_str(), *p))
                    .map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)?;
        for (group, tp) in doomed {
            if let Some(g) = cache.offsets.get_mut(&group) {
                g.remove(&tp);
                if g.is_empty() {
                    cache.offsets.remove(&group);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> RedbOffsetStore {
        RedbOffsetStore::open(Arc::new(MetaStore::open(dir).unwrap())).unwrap()
    }

    fn off(offset: i64, md: &str) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: 3,
            metadata: md.into(),
            commit_timestamp_ms: 1000,
            expire_timestamp_ms: None,
        }
    }

    #[test]
    fn concurrent_commits_are_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        {
            let s = Arc::new(open(&path));
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        for i in 0..25 {
                            s.commit(
                                &format!("g{t}"),
                                &[(("t".into(), i), off(i64::from(i), "m"))],
                            )
                            .unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }
        let s = open(&path);
        for t in 0..8 {
            assert_eq!(s.group_offsets(&format!("g{t}")).len(), 25);
        }
    }

    #[test]
    fn offsets_survive_reopen_and_deletes_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        {
            let s = open(&path);
            s.commit(
                "g1",
                &[
                    (("t".into(), 0), off(5, "m0")),
                    (("t".into(), 1), off(7, "")),
                ],
            )
            .unwrap();
            s.commit("g2", &[(("u".into(), 0), off(9, "x"))]).unwrap();
            s.commit("g1", &[(("t".into(), 0), off(6, "m1"))]).unwrap();
            s.set_protocol_type("g1", "consumer").unwrap();
            s.delete_offsets("g1", &[("t".into(), 1)]).unwrap();
        }
        let s = open(&path);
        assert_eq!(s.get("g1", "t", 0), Some(off(6, "m1")));
        assert_eq!(s.get("g1", "t", 1), None);
        assert_eq!(s.get("g2", "u", 0), Some(off(9, "x")));
        assert_eq!(s.protocol_type("g1").as_deref(), Some("consumer"));
        assert_eq!(s.groups(), vec!["g1".to_string(), "g2".to_string()]);
        s.delete_group("g1").unwrap();
        s.delete_topic("u").unwrap();
        drop(s);
        let s = open(&path);
        assert!(s.groups().is_empty());
        assert!(!s.has_offsets("g2"));
    }

    /// A table written by schema version 1 (metadata in clear) is migrated at open: every row is
    /// kept, the metadata sealed, the old table gone; new commits are sealed too.
    #[test]
    fn legacy_table_is_migrated_and_metadata_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(MetaStore::open(dir.path()).unwrap());
        {
            let txn = db.db().begin_write().unwrap();
            let mut t = txn.open_table(LEGACY_OFFSETS).unwrap();
            t.insert(("g", "t", 0), (5, 2, 1000, -1, "legacy-metadata"))
                .unwrap();
            t.insert(("g", "t", 1), (6, 2, 1000, -1, "")).unwrap();
            drop(t);
            txn.commit().unwrap();
        }
        db.install_cipher(&crate::crypto::MasterKey::from_bytes([3u8; 32]))
            .unwrap();
        let s = RedbOffsetStore::open(db.clone()).unwrap();
        assert_eq!(s.get("g", "t", 0).unwrap().metadata, "legacy-metadata");
        assert_eq!(s.get("g", "t", 1).unwrap().offset, 6);
        s.commit("g", &[(("t".into(), 2), off(9, "fresh-metadata"))])
            .unwrap();
        let raw: Vec<Vec<u8>> = {
            let txn = db.db().begin_read().unwrap();
            assert!(txn.open_table(LEGACY_OFFSETS).is_err(), "old table left");
            let t = txn.open_table(OFFSETS).unwrap();
            t.iter()
                .unwrap()
                .map(|r| r.unwrap().1.value().4.to_vec())
                .collect()
        };
        assert_eq!(raw.len(), 3);
        for v in &raw {
            assert!(
                !v.windows(8).any(|w| w == b"metadata"),
                "clear metadata: {v:?}"
            );
        }
        drop(s);
        let s = RedbOffsetStore::open(db).unwrap();
        assert_eq!(s.get("g", "t", 2), Some(off(9, "fresh-metadata")));
        assert_eq!(s.get("g", "t", 0).unwrap().metadata, "legacy-metadata");
    }

    #[test]
    fn clear_metadata_with_encryption_off() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.commit("g", &[(("t".into(), 0), off(1, "\u{1}starts-with-one"))])
            .unwrap();
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.get("g", "t", 0).unwrap().metadata, "\u{1}starts-with-one");
    }
}
