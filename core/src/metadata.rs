//! The node's metadata store: one redb database (`meta.redb` in the data directory) with a schema
//! version. Topics, master key id, committed offsets and checkpoints live here; appends never do.
//!
//! Tables owned by this module (the layout is written down in `docs/metadata-format.md`):
//! - `rill_schema` (`&str -> u64`): `version`, the schema version of the whole database. A node
//!   refuses to open a database written by a newer schema.
//! - `rill_node` (`&str -> &str`): node-wide facts, e.g. the master key id (`master_key_id`) and
//!   whether data is encrypted (`encryption`: `on`/`off`).
//!
//! - `rill_keys` (`&str -> &[u8]`): key records: `meta_data_key` (the metadata data key wrapped
//!   under the master key, [`crate::metadata_cipher`]), `previous_master_key` and `key_rotation`
//!   (see `crate::key_rotation`).
//!
//! Other modules open their own tables through [`MetaStore::db`]. Values that hold what a client
//! sent are sealed with [`MetaStore::seal_value`] and read with [`MetaStore::open_value`], once
//! the node installed its metadata data key ([`MetaStore::install_cipher`]).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::crypto::MasterKey;
use crate::metadata_cipher::{self, MetadataCipher};

/// Schema version this build writes and reads. Version 2: client data sealed (retained MQTT
/// messages, sessions, offset-commit metadata; `group_offsets` became `group_committed_offsets`)
/// and the `rill_keys` table. A version 1 database is upgraded in place when opened.
pub const SCHEMA_VERSION: u64 = 2;

/// File name of the database inside the data directory.
pub const META_FILE: &str = "meta.redb";

const SCHEMA: TableDefinition<&str, u64> = TableDefinition::new("rill_schema");
const NODE: TableDefinition<&str, &str> = TableDefinition::new("rill_node");
/// Key records (`rill_keys`).
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("rill_keys");

/// `rill_keys` row of the metadata data key, wrapped under the master key.
pub const KEY_META_DATA_KEY: &str = "meta_data_key";

/// `rill_node` key holding the hex id of the master key the data was written under.
pub const KEY_MASTER_KEY_ID: &str = "master_key_id";
/// `rill_node` key holding `on` or `off`: whether the node writes encrypted segments.
pub const KEY_ENCRYPTION: &str = "encryption";
/// `rill_node` key holding the cluster id (set once, when the store is created).
pub const KEY_CLUSTER_ID: &str = "cluster_id";

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The database was written by a newer Rill.
    #[error(
        "{path} has metadata schema version {found}, but this build supports up to {supported}; \
         upgrade Rill to open this data directory"
    )]
    NewerSchema {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    /// redb failed (I/O, corruption, lock held by another process, ...).
    #[error("metadata database {path}: {message}")]
    Db { path: PathBuf, message: String },
    /// A sealed value or key record could not be opened (wrong key, tampering), or a value is
    /// sealed but the node has no metadata data key (encryption off).
    #[error("metadata database {path}: sealed value in {table}: {message}")]
    Sealed {
        path: PathBuf,
        table: String,
        message: String,
    },
}

/// Handle to the metadata database.
pub struct MetaStore {
    db: Database,
    path: PathBuf,
    /// The metadata data key, once installed (never with encryption off).
    cipher: OnceLock<MetadataCipher>,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore")
            .field("path", &self.path)
            .finish()
    }
}

impl MetaStore {
    /// Open (or create) `<data_dir>/meta.redb`, checking and recording the schema version.
    pub fn open(data_dir: &Path) -> Result<MetaStore, MetaError> {
        let path = data_dir.join(META_FILE);
        let db = Database::create(&path).map_err(|e| MetaError::Db {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let store = MetaStore {
            db,
            path,
            cipher: OnceLock::new(),
        };
        store.check_schema()?;
        Ok(store)
    }

    /// A metadata store held in memory only (tests and tools that need no file).
    pub fn in_memory() -> Result<MetaStore, MetaError> {
        let path = PathBuf::from("<memory>");
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| MetaError::Db {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let store = MetaStore {
            db,
            path,
            cipher: OnceLock::new(),
        };
        store.check_schema()?;
        Ok(store)
    }

    fn err(&self, e: impl std::fmt::Display) -> MetaError {
        MetaError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn check_schema(&self) -> Result<(), MetaError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(SCHEMA).map_err(|e| self.err(e))?;
            let found = table
                .get("version")
                .map_err(|e| self.err(e))?
                .map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(MetaError::NewerSchema {
                        path: self.path.clone(),
                        found: v,
                        supported: SCHEMA_VERSION,
                    });
                }
                Some(v) if v == SCHEMA_VERSION => {}
                // Older: upgraded in place (tables migrate when their owner opens them).
                Some(_) | None => {
                    table
                        .insert("version", SCHEMA_VERSION)
                        .map_err(|e| self.err(e))?;
                }
            }
            // Make sure the node and key tables exist so readers can open them.
            txn.open_table(NODE).map_err(|e| self.err(e))?;
            txn.open_table(KEYS).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The underlying database, for modules that own their own tables (e.g. committed offsets).
    pub fn db(&self) -> &redb::Database {
        &self.db
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<u64, MetaError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(SCHEMA).map_err(|e| self.err(e))?;
        let v = table.get("version").map_err(|e| self.err(e))?;
        Ok(v.map(|v| v.value()).unwrap_or(0))
    }

    /// A value of the node table.
    pub fn node_value(&self, key: &str) -> Result<Option<String>, MetaError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(NODE).map_err(|e| self.err(e))?;
        let v = table.get(key).map_err(|e| self.err(e))?;
        Ok(v.map(|v| v.value().to_string()))
    }

    /// Set a value of the node table (durably committed).
    pub fn set_node_value(&self, key: &str, value: &str) -> Result<(), MetaError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(NODE).map_err(|e| self.err(e))?;
            table.insert(key, value).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// The id of the master key the data was written under, if recorded.
    pub fn master_key_id(&self) -> Result<Option<String>, MetaError> {
        self.node_value(KEY_MASTER_KEY_ID)
    }

    /// Record the master key id.
    pub fn set_master_key_id(&self, id: &str) -> Result<(), MetaError> {
        self.set_node_value(KEY_MASTER_KEY_ID, id)
    }

    /// A row of `rill_keys`.
    pub fn key_record(&self, name: &str) -> Result<Option<Vec<u8>>, MetaError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = txn.open_table(KEYS).map_err(|e| self.err(e))?;
        let v = table.get(name).map_err(|e| self.err(e))?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    /// One durable transaction over the key records: set the rows `set`, remove the rows
    /// `remove`, and record `master_key_id` when given (the commit point of a key rotation).
    pub fn commit_key_records(
        &self,
        set: &[(&str, &[u8])],
        remove: &[&str],
        master_key_id: Option<&str>,
    ) -> Result<(), MetaError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut keys = txn.open_table(KEYS).map_err(|e| self.err(e))?;
            for (name, value) in set {
                keys.insert(*name, *value).map_err(|e| self.err(e))?;
            }
            for name in remove {
                keys.remove(*name).map_err(|e| self.err(e))?;
            }
            if let Some(id) = master_key_id {
                let mut node = txn.open_table(NODE).map_err(|e| self.err(e))?;
                node.insert(KEY_MASTER_KEY_ID, id)
                    .map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }

    fn sealed_err(&self, table: &str, e: impl std::fmt::Display) -> MetaError {
        MetaError::Sealed {
            path: self.path.clone(),
            table: table.to_string(),
            message: e.to_string(),
        }
    }

    /// Load the metadata data key wrapped under `master` (generating and recording one on the
    /// first encrypted start), so values are sealed from now on. `master` must be the data
    /// directory's current master key (checked by the keyring before).
    pub fn install_cipher(&self, master: &MasterKey) -> Result<(), MetaError> {
        if self.cipher.get().is_some() {
            return Ok(());
        }
        let cipher = match self.key_record(KEY_META_DATA_KEY)? {
            Some(rec) => {
                MetadataCipher::unwrap(&rec, master).map_err(|e| self.sealed_err("rill_keys", e))?
            }
            None => {
                let c = MetadataCipher::generate(1).map_err(|e| self.sealed_err("rill_keys", e))?;
                let rec = c
                    .wrap(master)
                    .map_err(|e| self.sealed_err("rill_keys", e))?;
                self.commit_key_records(&[(KEY_META_DATA_KEY, &rec)], &[], None)?;
                c
            }
        };
        let _ = self.cipher.set(cipher);
        Ok(())
    }

    /// Whether values are sealed (a metadata data key is installed).
    pub fn seals(&self) -> bool {
        self.cipher.get().is_some()
    }

    /// `plain` sealed as the value of row `key` of `table`, or `None` when the node has no
    /// metadata data key (encryption off): the caller then stores its clear form.
    pub fn seal(
        &self,
        table: &str,
        key: &[u8],
        plain: &[u8],
    ) -> Result<Option<Vec<u8>>, MetaError> {
        match self.cipher.get() {
            None => Ok(None),
            Some(c) => c
                .seal(table, key, plain)
                .map(Some)
                .map_err(|e| self.sealed_err(table, e)),
        }
    }

    /// `plain` sealed (or as it is with encryption off): for values whose clear form never
    /// starts with [`metadata_cipher::SEALED_VERSION`] (JSON, Kafka batches).
    pub fn seal_value<'a>(
        &self,
        table: &str,
        key: &[u8],
        plain: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, MetaError> {
        Ok(match self.seal(table, key, plain)? {
            Some(sealed) => Cow::Owned(sealed),
            None => Cow::Borrowed(plain),
        })
    }

    /// Open a sealed value of row `key` of `table`.
    pub fn unseal(&self, table: &str, key: &[u8], stored: &[u8]) -> Result<Vec<u8>, MetaError> {
        let Some(c) = self.cipher.get() else {
            return Err(self.sealed_err(
                table,
                "the value is sealed, but the node runs without encryption (no master key)",
            ));
        };
        c.open(table, key, stored)
            .map_err(|e| self.sealed_err(table, e))
    }

    /// The clear form of a value written by [`MetaStore::seal_value`]; a value written in clear
    /// (by a build before sealing, or with encryption off) is returned as it is.
    pub fn open_value<'a>(
        &self,
        table: &str,
        key: &[u8],
        stored: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, MetaError> {
        if metadata_cipher::is_sealed(stored) {
            self.unseal(table, key, stored).map(Cow::Owned)
        } else {
            Ok(Cow::Borrowed(stored))
        }
    }

    /// The cluster id: a random UUID v4 in Kafka's form (16 bytes, URL-safe base64 without
    /// padding, 22 characters), created and recorded on first call, fixed afterwards.
    pub fn cluster_id(&self) -> Result<String, MetaError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let id = {
            let mut table = txn.open_table(NODE).map_err(|e| self.err(e))?;
            let existing = table
                .get(KEY_CLUSTER_ID)
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_string());
            match existing {
                Some(id) => id,
                None => {
                    let id = base64url(uuid::Uuid::new_v4().as_bytes());
                    table
                        .insert(KEY_CLUSTER_ID, id.as_str())
                        .map_err(|e| self.err(e))?;
                    id
                }
            }
        };
        txn.commit().map_err(|e| self.err(e))?;
        Ok(id)
    }

    /// Set the schema version (tests of the newer-schema refusal; future migrations).
    #[cfg(test)]
    fn force_schema_version(&self, v: u64) -> Result<(), MetaError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(SCHEMA).map_err(|e| self.err(e))?;
            table.insert("version", v).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }
}

/// URL-safe base64 without padding (Kafka's encoding of UUIDs in cluster ids).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_schema_and_node_values_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = MetaStore::open(dir.path()).unwrap();
            assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
            assert_eq!(s.master_key_id().unwrap(), None);
            s.set_master_key_id("abcd").unwrap();
        }
        let s = MetaStore::open(dir.path()).unwrap();
        assert_eq!(s.master_key_id().unwrap().as_deref(), Some("abcd"));
        assert!(dir.path().join(META_FILE).exists());
    }

    #[test]
    fn base64url_matches_known_values() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(&[0u8; 16]).len(), 22);
    }

    #[test]
    fn cluster_id_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let id = MetaStore::open(dir.path()).unwrap().cluster_id().unwrap();
        assert_eq!(id.len(), 22);
        assert_eq!(
            MetaStore::open(dir.path()).unwrap().cluster_id().unwrap(),
            id
        );
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = MetaStore::open(dir.path()).unwrap();
            s.force_schema_version(SCHEMA_VERSION + 1).unwrap();
        }
        let err = MetaStore::open(dir.path()).unwrap_err();
        match &err {
            MetaError::NewerSchema {
                found, supported, ..
            } => {
                assert_eq!(*found, SCHEMA_VERSION + 1);
                assert_eq!(*supported, SCHEMA_VERSION);
            }
            other => panic!("expected NewerSchema, got {other:?}"),
        }
        assert!(err.to_string().contains("upgrade Rill"));
    }

    #[test]
    fn garbage_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(META_FILE),
            b"this is not a redb file at all",
        )
        .unwrap();
        assert!(matches!(
            MetaStore::open(dir.path()),
            Err(MetaError::Db { .. })
        ));
    }
}
