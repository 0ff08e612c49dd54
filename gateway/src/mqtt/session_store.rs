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
//!
//! The one message a session holds itself is its will while it waits out its Will Delay
//! Interval ([`StoredWill`], see `will`): written with the session's save at disconnect (no
//! write of its own), as a one-record Kafka v2 batch inside the sealed session value.

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

/// A will message waiting out its Will Delay Interval (MQTT 5 §3.1.3.2.2), kept with its
/// session so that a node restart does not drop it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWill {
    /// When it is to be published (Unix ms): the delay, or the session's expiry if sooner.
    pub due_ms: i64,
    /// Its Message Expiry Interval in seconds (§3.1.3.2.4), counted from publication.
    #[serde(default)]
    pub message_expiry_secs: Option<u32>,
    /// The message as a one-record Kafka v2 batch (the log's record encoding), base64.
    pub record: String,
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
    /// The will the client left when its connection was lost, if it waits out its delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_will: Option<StoredWill>,
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

    /// The wills waiting out their delay, by client id (expired sessions included: their
    /// will is due).
    pub fn pending_wills(&self) -> Result<Vec<(String, StoredWill)>, StoreError> {
        let txn = self.db.db().begin_read().map_err(db_err)?;
        let t = txn.open_table(SESSIONS).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            match self.decode::<StoredSession>(SESSIONS, k.value(), v.value()) {
                Ok(StoredSession {
                    pending_will: Some(w),
                    ..
                }) => out.push((k.value().to_string(), w)),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(client_id = k.value(), error = %e, "unreadable MQTT session")
                }
            }
        }
        Ok(out)
    }

    /// Removes the pending will due at `due_ms` from the session of `client_id` once it has
    /// been published (in one transaction, so a session saved meanwhile is kept, and a newer
    /// will too); a session that has expired meanwhile is deleted.
    pub fn clear_pending_will(
        &self,
        client_id: &str,
        due_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let txn = self.db.db().begin_write().map_err(db_err)?;
        {
            let mut t = txn.open_table(SESSIONS).map_err(db_err)?;
            let session = match t.get(client_id).map_err(db_err)? {
                Some(v) => self
                    .decode::<StoredSession>(SESSIONS, client_id, v.value())
                    .ok(),
                None => None,
            };
            if let Some(mut s) = session {
                if s.pending_will.as_ref().is_some_and(|w| w.due_ms == due_ms) {
                    s.pending_will = None;
                    if s.expired(now_ms) {
                        t.remove(client_id).map_err(db_err)?;
                    } else {
                        let bytes =
                            serde_json::to_vec(&s).map_err(|e| StoreError::Db(e.to_string()))?;
                        let stored = self
                            .db
                            .seal_value(SESSIONS.name(), client_id.as_bytes(), &bytes)
                            .map_err(|e| StoreError::Db(e.to_string()))?;
                        t.insert(client_id, stored.as_ref()).map_err(db_err)?;
                    }
                }
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(())
    }

    /// Deletes sessions that expired at `now_ms`; returns how many. A session whose will still
    /// waits is kept until the will is published ([`Self::clear_pending_will`]).
    pub fn purge_expired(&self, now_ms: i64) -> Result<usize, StoreError> {
        let expired: Vec<String> = {
            let txn = self.db.db().begin_read().map_err(db_err)?;
            let t = txn.open_table(SESSIONS).map_err(db_err)?;
            let mut out = Vec::new();
            for entry in t.iter().map_err(db_err)? {
                let (k, v) = entry.map_err(db_err)?;
                let gone = self
                    .decode::<StoredSession>(SESSIONS, k.value(), v.value())
                    .map(|s| s.expired(now_ms) && s.pending_will.is_none())
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
            pending_will: None,
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

    #[test]
    fn a_pending_will_outlives_its_session_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let db = rill_core::metadata::MetaStore::open(dir.path()).unwrap();
        let store = SessionStore::open(Arc::new(db)).unwrap();
        let will = StoredWill {
            due_ms: 3_000,
            message_expiry_secs: Some(5),
            record: "AAAA".into(),
        };
        let s = StoredSession {
            expiry_secs: 10,
            disconnected_at_ms: Some(1_000),
            awaiting_pubcomp: Vec::new(),
            subscriptions: Vec::new(),
            pending_will: Some(will.clone()),
        };
        store.save("w", &s).unwrap();
        // Sessions written before wills were kept read as having none.
        store
            .put_json(
                SESSIONS,
                "old",
                Some(
                    &serde_json::json!({"expiry_secs": 10, "disconnected_at_ms": 1000,
                    "subscriptions": []}),
                ),
            )
            .unwrap();
        assert_eq!(store.load("old").unwrap().unwrap().pending_will, None);
        assert_eq!(store.pending_wills().unwrap(), vec![("w".into(), will)]);
        // Expired, but its will has not gone out: kept (the other one is purged).
        assert_eq!(store.purge_expired(20_000).unwrap(), 1);
        // Another will (a later disconnect) is not cleared by the first one's publication.
        store.clear_pending_will("w", 9_999, 2_000).unwrap();
        assert!(store.load("w").unwrap().unwrap().pending_will.is_some());
        store.clear_pending_will("w", 3_000, 2_000).unwrap();
        let left = store.load("w").unwrap().unwrap();
        assert_eq!(left.pending_will, None);
        assert_eq!(left.subscriptions, s.subscriptions);
        store.save("w", &s).unwrap();
        // Published after the session expired: the session goes with it.
        store.clear_pending_will("w", 3_000, 20_000).unwrap();
        assert_eq!(store.load("w").unwrap(), None);
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
