//! The topic registry: every topic's name, UUID topic id (assigned once, at creation), partition
//! count, config overrides and creation time, persisted in the metadata store (redb table
//! `rill_topics`, one JSON record per topic keyed by name) and cached in memory.
//!
//! Topic names follow Kafka's rules: 1 to 249 characters from `[a-zA-Z0-9._-]`, not `.` or `..`.

use crate::sync::RwLockExt;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::metadata::MetaStore;

const TOPICS: TableDefinition<&str, &[u8]> = TableDefinition::new("rill_topics");

/// Version of the JSON topic record.
const RECORD_VERSION: u32 = 1;

/// Longest topic name Kafka allows.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// A persisted topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// Version of this record's layout.
    pub version: u32,
    pub name: String,
    /// Topic id, assigned at creation and never changed.
    pub id: Uuid,
    pub partitions: i32,
    /// Per-topic config overrides (Kafka names, normalised values).
    pub overrides: BTreeMap<String, String>,
    /// Creation time, milliseconds since the Unix epoch (wall clock at creation).
    pub created_ms: i64,
}

/// Registry errors.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("topic '{0}' already exists")]
    AlreadyExists(String),
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidName { name: String, reason: String },
    #[error("topic registry storage error: {0}")]
    Storage(String),
    #[error("topic record '{name}' is unreadable: {reason}")]
    CorruptRecord { name: String, reason: String },
}

/// Check a topic name against Kafka's rules; the error is the reason.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'".into());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(format!(
            "topic name is {} characters long, the limit is {MAX_TOPIC_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "character {c:?} is not allowed; use ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Whether two names collide in Kafka's metric names ('.' and '_' are the same there). Kafka
/// refuses to create a topic that collides with an existing one.
pub fn names_collide(a: &str, b: &str) -> bool {
    a != b && a.replace('.', "_") == b.replace('.', "_")
}

/// Persistent registry of topics.
pub struct TopicRegistry {
    store: Arc<MetaStore>,
    cache: RwLock<BTreeMap<String, TopicRecord>>,
}

fn storage(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Storage(e.to_string())
}

impl TopicRegistry {
    /// Load every topic from the store.
    pub fn open(store: Arc<MetaStore>) -> Result<TopicRegistry, RegistryError> {
        let db = store.db();
        // Create the table on first use so read transactions can open it.
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(TOPICS).map_err(storage)?;
        txn.commit().map_err(storage)?;

        let mut cache = BTreeMap::new();
        let txn = db.begin_read().map_err(storage)?;
        let table = txn.open_table(TOPICS).map_err(storage)?;
        for row in table.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            let name = k.value().to_string();
            let rec: TopicRecord =
                serde_json::from_slice(v.value()).map_err(|e| RegistryError::CorruptRecord {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
            if rec.version > RECORD_VERSION || rec.name != name {
                return Err(RegistryError::CorruptRecord {
                    name,
                    reason: format!(
                        "record version {} / name '{}' not understood",
                        rec.version, rec.name
                    ),
                });
            }
            cache.insert(name, rec);
        }
        Ok(TopicRegistry {
            store,
            cache: RwLock::new(cache),
        })
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, TopicRecord>> {
        self.cache.read_unpoisoned()
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, TopicRecord>> {
        self.cache.write_unpoisoned()
    }

    fn persist(&self, rec: &TopicRecord) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec(rec).map_err(storage)?;
        let txn = self.store.db().begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(TOPICS).map_err(storage)?;
            table
                .insert(rec.name.as_str(), bytes.as_slice())
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// Check that `name` is valid and free (no existing topic, no metric-name collision).
    pub fn check_new(&self, name: &str) -> Result<(), RegistryError> {
        validate_topic_name(name).map_err(|reason| RegistryError::InvalidName {
            name: name.to_string(),
            reason,
        })?;
        let cache = self.read_cache();
        if cache.contains_key(name) {
            return Err(RegistryError::AlreadyExists(name.to_string()));
        }
        if let Some(other) = cache.keys().find(|k| names_collide(k, name)) {
            return Err(RegistryError::InvalidName {
                name: name.to_string(),
                reason: format!("collides with existing topic '{other}' ('.' and '_' collide)"),
            });
        }
        Ok(())
    }

    /// Create and persist a topic with a fresh UUID v4 id. The caller validated `overrides`.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        created_ms: i64,
    ) -> Result<TopicRecord, RegistryError> {
        self.insert(name, None, partitions, overrides, created_ms)
    }

    /// Create and persist a topic under an id chosen elsewhere (the cluster's metadata image).
    /// The caller validated `overrides`.
    pub fn create_with_id(
        &self,
        name: &str,
        id: Uuid,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        created_ms: i64,
    ) -> Result<TopicRecord, RegistryError> {
        self.insert(name, Some(id), partitions, overrides, created_ms)
    }

    fn insert(
        &self,
        name: &str,
        id: Option<Uuid>,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        created_ms: i64,
    ) -> Result<TopicRecord, RegistryError> {
        self.check_new(name)?;
        let mut cache = self.write_cache();
        if cache.contains_key(name) {
            return Err(RegistryError::AlreadyExists(name.to_string()));
        }
        let rec = TopicRecord {
            version: RECORD_VERSION,
            name: name.to_string(),
            id: id.unwrap_or_else(|| new_topic_id(&cache)),
            partitions,
            overrides,
            created_ms,
        };
        self.persist(&rec)?;
        cache.insert(rec.name.clone(), rec.clone());
        Ok(rec)
    }

    /// Remove a topic (durably) and return its record.
    pub fn delete(&self, name: &str) -> Result<TopicRecord, RegistryError> {
        let mut cache = self.write_cache();
        let rec = cache
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError::UnknownTopic(name.to_string()))?;
        let txn = self.store.db().begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(TOPICS).map_err(storage)?;
            table.remove(name).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        cache.remove(name);
        Ok(rec)
    }

    /// Apply `change` to a topic's record and persist it.
    fn update(
        &self,
        name: &str,
        change: impl FnOnce(&mut TopicRecord),
    ) -> Result<TopicRecord, RegistryError> {
        let mut cache = self.write_cache();
        let mut rec = cache
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError::UnknownTopic(name.to_string()))?;
        change(&mut rec);
        self.persist(&rec)?;
        cache.insert(name.to_string(), rec.clone());
        Ok(rec)
    }

    /// Set the partition count (the caller checked it only grows).
    pub fn set_partitions(&self, name: &str, total: i32) -> Result<TopicRecord, RegistryError> {
        self.update(name, |r| r.partitions = total)
    }

    /// Replace a topic's overrides (the caller validated them).
    pub fn set_overrides(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
    ) -> Result<TopicRecord, RegistryError> {
        self.update(name, |r| r.overrides = overrides)
    }

    /// A topic by name.
    pub fn get(&self, name: &str) -> Option<TopicRecord> {
        self.read_cache().get(name).cloned()
    }

    /// A topic by id.
    pub fn get_by_id(&self, id: Uuid) -> Option<TopicRecord> {
        self.read_cache().values().find(|r| r.id == id).cloned()
    }

    /// Every topic, sorted by name.
    pub fn list(&self) -> Vec<TopicRecord> {
        self.read_cache().values().cloned().collect()
    }
}

/// A random v4 id that is not nil, not the reserved Kafka "metadata topic" id (all zero but the
/// last bit) and not already used.
fn new_topic_id(existing: &BTreeMap<String, TopicRecord>) -> Uuid {
    loop {
        let id = Uuid::new_v4();
        if id.as_u128() > 1 && !existing.values().any(|r| r.id == id) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(dir: &std::path::Path) -> TopicRegistry {
        TopicRegistry::open(Arc::new(MetaStore::open(dir).unwrap())).unwrap()
    }

    #[test]
    fn names_follow_kafka_rules() {
        for ok in [
            "a",
            "orders",
            "Orders.v1_x-2",
            &"x".repeat(249),
            "__consumer_offsets",
        ] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            &"x".repeat(250),
            "a b",
            "a/b",
            "é",
            "a:b",
            "a*",
        ] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
        assert!(names_collide("a.b", "a_b"));
        assert!(!names_collide("a.b", "a.b"));
        assert!(!names_collide("ab", "a_b"));
    }

    #[test]
    fn persists_across_reopen_with_stable_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (id_a, id_b);
        {
            let r = registry(dir.path());
            let mut o = BTreeMap::new();
            o.insert("retention.ms".to_string(), "1000".to_string());
            let a = r.create("alpha", 3, o.clone(), 42).unwrap();
            let b = r.create("beta", 1, BTreeMap::new(), 43).unwrap();
            assert_ne!(a.id, b.id);
            assert_eq!(a.id.get_version_num(), 4);
            id_a = a.id;
            id_b = b.id;
            r.set_partitions("beta", 5).unwrap();
        }
        let r = registry(dir.path());
        let a = r.get("alpha").unwrap();
        assert_eq!(a.id, id_a);
        assert_eq!(a.partitions, 3);
        assert_eq!(
            a.overrides.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        assert_eq!(a.created_ms, 42);
        assert_eq!(r.get("beta").unwrap().partitions, 5);
        assert_eq!(r.get_by_id(id_b).unwrap().name, "beta");
        assert_eq!(
            r.list().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["alpha", "beta"]
        );
    }

    #[test]
    fn duplicate_invalid_and_colliding_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path());
        r.create("a.b", 1, BTreeMap::new(), 0).unwrap();
        assert!(matches!(
            r.create("a.b", 1, BTreeMap::new(), 0),
            Err(RegistryError::AlreadyExists(n)) if n == "a.b"
        ));
        assert!(matches!(
            r.create("a_b", 1, BTreeMap::new(), 0),
            Err(RegistryError::InvalidName { .. })
        ));
        assert!(matches!(
            r.create("..", 1, BTreeMap::new(), 0),
            Err(RegistryError::InvalidName { .. })
        ));
    }

    #[test]
    fn delete_is_durable_and_recreate_gets_new_id() {
        let dir = tempfile::tempdir().unwrap();
        let old_id;
        {
            let r = registry(dir.path());
            old_id = r.create("t", 2, BTreeMap::new(), 0).unwrap().id;
            assert_eq!(r.delete("t").unwrap().id, old_id);
            assert!(matches!(r.delete("t"), Err(RegistryError::UnknownTopic(_))));
            assert!(r.get("t").is_none());
            assert!(r.get_by_id(old_id).is_none());
        }
        let r = registry(dir.path());
        assert!(r.get("t").is_none());
        let new = r.create("t", 1, BTreeMap::new(), 0).unwrap();
        assert_ne!(new.id, old_id);
    }

    #[test]
    fn overrides_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        {
            let r = registry(dir.path());
            let mut o = BTreeMap::new();
            o.insert("retention.ms".to_string(), "1".to_string());
            r.create("t", 1, o, 0).unwrap();
            let mut o = BTreeMap::new();
            o.insert("segment.ms".to_string(), "2".to_string());
            r.set_overrides("t", o).unwrap();
            assert!(matches!(
                r.set_overrides("missing", BTreeMap::new()),
                Err(RegistryError::UnknownTopic(_))
            ));
        }
        let r = registry(dir.path());
        let t = r.get("t").unwrap();
        assert_eq!(t.overrides.len(), 1);
        assert_eq!(t.overrides.get("segment.ms").map(String::as_str), Some("2"));
    }
}
