//! Durable MQTT state in the node's metadata database (redb), in tables of this module:
//! persistent sessions (their subscriptions and a durable cursor per subscription and log
//! partition) and the last-acknowledged positions of shared subscription groups.
//!
//! A session's queued messages are not copied anywhere: they are the log records between its
//! cursors and the log end, so a session survives node restarts for free. Cursors are written
//! in batches (after acks, at most every few hundred ms, and at disconnect); after a crash a
//! client may get a QoS 1/2 message again, never lose one.
//!
//! Values are JSON, sealed with the node's metadata data key ([`MetaStore::seal_value`]; in clear
//! only with encryption off); values written in clear by older builds are still read.

use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use rill_core::metadata::MetaStore;
use serde::{Deserialize, Serialize};

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("mqtt_sessions");
const SHARED: TableDefinition<&str, &[u8]> = TableDefinition::new("mqtt_shared_cursors");

/// Errors of the session store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("MQTT session store: {0}")]
    Db(String),
    #[error("MQTT session store: corrupt entry for '{key}': {reason}")]
    Corrupt { key: String, reason: String },
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(e.into().to_string())
}

/// Next offset to deliver from one log partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub topic: String,
    pub partition: i32,
    pub next: i64,
}

/// One subscription of a persistent session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSubscription {
    /// The filter as subscribed (with `$share/...` for shared subscriptions).
    pub raw_filter: String,
    pub qos: u8,
    #[serde(default)]
    pub no_local: bool,
    #[serde(default)]
    pub retain_as_published: bool,
    #[serde(default)]
    pub subscription_id: Option<usize>,
    /// Cursors of a non-shared subscription.
    #[serde(default)]
    pub cursors: Vec<Cursor>,
}

/// A persistent session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    /// Session expiry interval in seconds (`u32::MAX`: never).
    pub expiry_secs: u32,
    /// When the client disconnected, or while connected the last time the session was saved
    /// (Unix ms). None: never expires by time.
    pub disconnected_at_ms: Option<i64>,
    /// Outgoing QoS 2 packet ids that got PUBREC and wait for PUBCOMP: on resume the server
    /// sends PUBREL for them, not the message again (MQTT 5 §4.4).
    #[serde(default)]
    pub awaiting_pubcomp: Vec<u16>,
    pub subscriptions: Vec<StoredSubscription>,
}

impl StoredSession {
    /// Whether the session has expired at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        match self.disconnected_at_ms {
            None => false,
            Some(_) if self.expiry_secs == u32::MAX => false,
            Some(at) => now_ms >= at.saturating_add(self.expiry_secs as i64 * 1000),
        }
    }
}

/// The durable store.
#[derive(Clone)]
pub struct SessionStore {
    db: Arc<MetaStore>,
}

impl SessionStore {
    /// Opens the store, creating its tables.
    pub fn open(db: Arc<MetaStore>) -> Result<SessionStore, StoreError> {
        let txn = db.db().begin_write().map_err(db_err)?;
        {
            txn.open_table(SESSIONS).map_err(db_err)?;
            txn.open_table(SHARED).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(SessionStore { db })
    }

    fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.db().begin_read().map_err(db_err)?;
        let t = txn.open_table(table).map_err(db_err)?;
        let Some(v) = t.get(key).map_err(db_err)? else {
            return Ok(None);
        };
        self.decode(table, key, v.value()).map(Some)
    }

    /// The value of row `key` of `table` as stored (sealed, or clear from an older build).
    fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        stored: &[u8],
    ) -> Result<T, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.to_string(),
            reason,
        };
        let plain = self
            .db
            .open_value(table.name(), key.as_bytes(), stored)
            .map_err(|e| corrupt(e.to_string()))?;
        serde_json::from_slice(&plain).map_err(|e| corrupt(e.to_string()))
    }

    fn put_json<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: Option<&T>,
    ) -> Result<(), StoreError> {
        let txn = self.db.db().begin_write().map_err(db_err)?;
        {
            let mut t = txn.open_table(table).map_err(db_err)?;
            match value {
                Some(v) => {
                    let bytes = serde_json::to_vec(v).map_err(|e| StoreError::Db(e.to_string()))?;
                    let stored = self
                        .db
                        .seal_value(table.name(), key.as_bytes(), &bytes)
                        .map_err(|e| StoreError::Db(e.to_string()))?;
                    t.insert(key, stored.as_ref()).map_err(db_err)?;
                }
                None => {
                    t.remove(key).map_err(db_err)?;
                }
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(())
    }

    /// The stored session of `client_id`.
    pub fn load(&self, client_id: &str) -> Result<Option<StoredSession>, StoreError> {
        self.get_json(SESSIONS, client_id)
    }

    /// Saves (or replaces) a session.
    pub fn save(&self, client_id: &str, session: &StoredSession) -> Result<(), StoreError> {
        self.put_json(SESSIONS, client_id, Some(session))
    }

    /// Deletes a session.
    pub fn delete(&self, client_id: &str) -> Result<(), StoreError> {
        self.put_json::<StoredSession>(SESSIONS, client_id, None)
    }

    /// The client ids of every stored (persistent) session.
    pub fn client_ids(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db.db().begin_read().map_err(db_err)?;
        let t = txn.open_table(SESSIONS).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(db_err)? {
            let (k, _) = entry.map_err(db_err)?;
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    /// Deletes sessions that expired at `now_ms`; returns how many.
    pub fn purge_expired(&self, now_ms: i64) -> Result<usize, StoreError> {
        let expired: Vec<String> = {
            let txn = self.db.db().begin_read().map_err(db_err)?;
            let t = txn.open_table(SESSIONS).map_err(db_err)?;
            let mut out = Vec::new();
            for entry in t.iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                let gone = self
                    .decode::<StoredSession>(SESSIONS, k.value(), v.value())
                    .map(|s| s.expired(now_ms))
                    .unwrap_or(true);
                if gone {
                    out.push(k.value().to_string());
                }
            }
            out
        };
        for k in &expired {
            self.delete(k)?;
        }
        Ok(expired.len())
    }

    /// Cursors of a shared subscription group (`group` + filter).
    pub fn load_shared(&self, key: &str) -> Result<Vec<Cursor>, StoreError> {
        Ok(self.get_json(SHARED, key)?.unwrap_or_default())
    }

    /// Saves the cursors of a shared subscription group.
    pub fn save_shared(&self, key: &str, cursors: &[Cursor]) -> Result<(), StoreError> {
        self.put_json(SHARED, key, Some(&cursors.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_round_trip_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let db = rill_core::metadata::MetaStore::open(dir.path()).unwrap();
        let store = SessionStore::open(Arc::new(db)).unwrap();
        let s = StoredSession {
            expiry_secs: 10,
            disconnected_at_ms: Some(1_000),
            awaiting_pubcomp: vec![3],
            subscriptions: vec![StoredSubscription {
                raw_filter: "commands/d1/#".into(),
                qos: 1,
                no_local: false,
                retain_as_published: false,
                subscription_id: None,
                cursors: vec![Cursor {
                    topic: "commands".into(),
                    partition: 0,
                    next: 42,
                }],
            }],
        };
        store.save("c1", &s).unwrap();
        assert_eq!(store.load("c1").unwrap(), Some(s.clone()));
        assert_eq!(store.purge_expired(5_000).unwrap(), 0);
        assert_eq!(store.purge_expired(11_000).unwrap(), 1);
        assert_eq!(store.load("c1").unwrap(), None);
        store
            .save_shared("g/f", &s.subscriptions[0].cursors)
            .unwrap();
        assert_eq!(store.load_shared("g/f").unwrap().len(), 1);
    }

    /// With a metadata data key sessions are sealed; a session an older build wrote in clear
    /// JSON is still loaded.
    #[test]
    fn sealed_sessions_and_clear_sessions_of_older_builds() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(rill_core::metadata::MetaStore::open(dir.path()).unwrap());
        let legacy = br#"{"expiry_secs":60,"disconnected_at_ms":null,"subscriptions":[{"raw_filter":"legacy/filter","qos":1}]}"#;
        {
            let txn = db.db().begin_write().unwrap();
            txn.open_table(SESSIONS)
                .unwrap()
                .insert("old-client", &legacy[..])
                .unwrap();
            txn.commit().unwrap();
        }
        db.install_cipher(&rill_core::crypto::MasterKey::from_bytes([4u8; 32]))
            .unwrap();
        let store = SessionStore::open(db.clone()).unwrap();
        let old = store.load("old-client").unwrap().unwrap();
        assert_eq!(old.subscriptions[0].raw_filter, "legacy/filter");
        store.save("new-client", &old).unwrap();
        let txn = db.db().begin_read().unwrap();
        let t = txn.open_table(SESSIONS).unwrap();
        let raw = t.get("new-client").unwrap().unwrap().value().to_vec();
        assert!(rill_core::metadata_cipher::is_sealed(&raw));
        assert!(!raw.windows(13).any(|w| w == b"legacy/filter"));
        assert_eq!(store.load("new-client").unwrap(), Some(old));
        assert_eq!(store.purge_expired(0).unwrap(), 0);
    }
}
