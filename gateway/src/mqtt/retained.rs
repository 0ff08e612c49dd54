//! Retained messages: the last retained publish per MQTT topic, kept in the metadata database
//! (table `mqtt_retained`) so they survive restarts, and served to new subscribers.
//!
//! Entries are stored as one-record Kafka v2 batches (the same encoding as the log), sealed with
//! the node's metadata data key ([`MetaStore::seal_value`]; in clear only with encryption off,
//! and entries written in clear by older builds are still read), and written only after the
//! publish itself is durable in the log.

use std::sync::Arc;

use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::records::{self, Message};
use super::session_store::StoreError;
use super::topic;
use rill_core::metadata::MetaStore;

/// Table name (also bound into each sealed value).
const RETAINED_TABLE: &str = "mqtt_retained";
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new(RETAINED_TABLE);

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(e.into().to_string())
}

/// The retained message store.
#[derive(Clone)]
pub struct RetainedStore {
    db: Arc<MetaStore>,
}

impl RetainedStore {
    /// Opens the store, creating its table.
    pub fn open(db: Arc<MetaStore>) -> Result<RetainedStore, StoreError> {
        let txn = db.db().begin_write().map_err(db_err)?;
        txn.open_table(RETAINED).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(RetainedStore { db })
    }

    /// Number of retained messages stored (expired ones included until replaced).
    pub fn count(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        let txn = self.db.db().begin_read().map_err(db_err)?;
        let t = txn.open_table(RETAINED).map_err(db_err)?;
        t.len().map_err(db_err)
    }

    /// Stores `msg` as the retained message of its topic; an empty payload deletes it.
    pub fn set(&self, msg: &Message) -> Result<(), StoreError> {
        let txn = self.db.db().begin_write().map_err(db_err)?;
        {
            let mut t = txn.open_table(RETAINED).map_err(db_err)?;
            if msg.payload.is_empty() {
                t.remove(msg.topic.as_str()).map_err(db_err)?;
            } else {
                let rec = records::to_record(msg, None, rill_core::clock::now_ms());
                let bytes =
                    records::encode_batch(&[rec]).map_err(|e| StoreError::Db(e.to_string()))?;
                let stored = self
                    .db
                    .seal_value(RETAINED_TABLE, msg.topic.as_bytes(), &bytes)
                    .map_err(|e| StoreError::Db(e.to_string()))?;
                t.insert(msg.topic.as_str(), stored.as_ref())
                    .map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(())
    }

    /// Retained messages whose topic matches `filter` (expired ones are skipped).
    pub fn matching(&self, filter: &str) -> Result<Vec<Message>, StoreError> {
        let txn = self.db.db().begin_read().map_err(db_err)?;
        let t = txn.open_table(RETAINED).map_err(db_err)?;
        let now = rill_core::clock::now_ms();
        let mut out = Vec::new();
        for entry in t.iter().map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            let name = k.value();
            if !topic::matches(filter, name) {
                continue;
            }
            let corrupt = |reason: String| StoreError::Corrupt {
                key: name.to_string(),
                reason,
            };
            let plain = self
                .db
                .open_value(RETAINED_TABLE, name.as_bytes(), v.value())
                .map_err(|e| corrupt(e.to_string()))?;
            let recs = records::decode_batches(Bytes::copy_from_slice(&plain))
                .map_err(|e| corrupt(e.to_string()))?;
            for r in recs {
                let mut msg = r.to_message(name.to_string());
                if msg.props.expires_at_ms.is_some_and(|at| at <= now) {
                    continue;
                }
                msg.retain = true;
                out.push(msg);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::records::MessageProps;

    fn msg(topic: &str, payload: &'static [u8]) -> Message {
        Message {
            topic: topic.into(),
            payload: Bytes::from_static(payload),
            qos: 1,
            retain: true,
            props: MessageProps::default(),
        }
    }

    #[test]
    fn set_match_clear() {
        let dir = tempfile::tempdir().unwrap();
        let db = rill_core::metadata::MetaStore::open(dir.path()).unwrap();
        let store = RetainedStore::open(Arc::new(db)).unwrap();
        store.set(&msg("a/b", b"1")).unwrap();
        store.set(&msg("a/c", b"2")).unwrap();
        store.set(&msg("a/b", b"3")).unwrap();
        let got = store.matching("a/+").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0].payload[..], b"3");
        store.set(&msg("a/b", b"")).unwrap();
        assert_eq!(store.matching("#").unwrap().len(), 1);
    }

    /// With a metadata data key the payload is sealed; entries an older build wrote in clear
    /// (the same table, a plain batch) are still served, and a sealed entry moved to another
    /// topic's row is refused.
    #[test]
    fn sealed_entries_and_clear_entries_of_older_builds() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(rill_core::metadata::MetaStore::open(dir.path()).unwrap());
        // What today's format wrote: a clear batch.
        let legacy = records::encode_batch(&[records::to_record(
            &msg("old/t", b"legacy-payload"),
            None,
            1,
        )])
        .unwrap();
        {
            let txn = db.db().begin_write().unwrap();
            txn.open_table(RETAINED)
                .unwrap()
                .insert("old/t", legacy.as_ref())
                .unwrap();
            txn.commit().unwrap();
        }
        db.install_cipher(&rill_core::crypto::MasterKey::from_bytes([4u8; 32]))
            .unwrap();
        let store = RetainedStore::open(db.clone()).unwrap();
        store.set(&msg("new/t", b"sealed-payload")).unwrap();
        let raw = |k: &str| {
            let txn = db.db().begin_read().unwrap();
            let t = txn.open_table(RETAINED).unwrap();
            t.get(k).unwrap().unwrap().value().to_vec()
        };
        let sealed = raw("new/t");
        assert!(!sealed.windows(14).any(|w| w == b"sealed-payload"));
        let got = store.matching("#").unwrap();
        let payloads: Vec<&[u8]> = got.iter().map(|m| &m.payload[..]).collect();
        assert!(payloads.contains(&&b"legacy-payload"[..]), "{payloads:?}");
        assert!(payloads.contains(&&b"sealed-payload"[..]), "{payloads:?}");
        // Swap the sealed value into another row: refused, not served.
        {
            let txn = db.db().begin_write().unwrap();
            txn.open_table(RETAINED)
                .unwrap()
                .insert("old/t", sealed.as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        assert!(matches!(
            store.matching("old/#"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
