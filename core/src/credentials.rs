//! SASL users of the Kafka listener: SCRAM credentials in Kafka's form (salt, iterations,
//! StoredKey, ServerKey per user and mechanism), durable in the node's redb metadata database.
//!
//! Table `scram_credentials` (`(user, mechanism name) -> (iterations, salt, stored_key,
//! server_key)`), described in `docs/security.md`. Passwords are never stored: SASL/PLAIN is
//! checked by deriving the SCRAM credential from the offered password (see
//! [`ScramCredential::verify_password`]). Every credential is also cached in memory, so
//! authentication never reads the disk. `rill user add|list|delete` writes the table of a stopped
//! node (redb allows one process per database).

use crate::sync::RwLockExt;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::metadata::MetaStore;
use crate::scram::{ScramCredential, ScramMechanism};

/// `(user, mechanism name) -> (iterations, salt, stored_key, server_key)`.
const SCRAM: TableDefinition<CredentialKey, CredentialValue> =
    TableDefinition::new("scram_credentials");
type CredentialKey = (&'static str, &'static str);
type CredentialValue = (u32, &'static [u8], &'static [u8], &'static [u8]);

/// Errors of the credential store.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The metadata database failed.
    #[error("credential store: {0}")]
    Storage(String),
    /// A user name Kafka clients cannot send.
    #[error("invalid user name {0:?} (non-empty, at most 255 bytes, no control characters)")]
    BadUserName(String),
    /// The node is a cluster member: its users are the cluster's, changed through the
    /// controller (AlterUserScramCredentials, or `rill cluster format --add-scram`).
    #[error("this node's users are the cluster's: change them with AlterUserScramCredentials (e.g. kafka-configs.sh --alter --entity-type users) or create the first ones with `rill cluster format --add-scram`")]
    ManagedByController,
    /// A mechanism stored under an unknown name (a newer Rill wrote it).
    #[error("unknown SCRAM mechanism {0:?} in the credential table")]
    UnknownMechanism(String),
}

fn storage(e: impl std::fmt::Display) -> CredentialError {
    CredentialError::Storage(e.to_string())
}

/// Check a user name.
pub fn check_user_name(name: &str) -> Result<(), CredentialError> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(CredentialError::BadUserName(name.to_string()));
    }
    Ok(())
}

/// Credentials by user and mechanism.
pub type Credentials = BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>;
type Cache = Credentials;

/// The users and their SCRAM credentials.
pub struct CredentialStore {
    meta: Arc<MetaStore>,
    cache: RwLock<Cache>,
    /// A cluster member's store: a copy of the metadata image's users ([`Self::mirror`]).
    mirrored: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialStore")
            .field("path", &self.meta.path())
            .finish_non_exhaustive()
    }
}

/// Every credential of the table in `meta`.
fn read_table(meta: &MetaStore) -> Result<Credentials, CredentialError> {
    let txn = meta.db().begin_read().map_err(storage)?;
    let table = txn.open_table(SCRAM).map_err(storage)?;
    let mut out = Credentials::new();
    for row in table.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        let (user, mech) = k.value();
        let mechanism = ScramMechanism::from_name(mech)
            .ok_or_else(|| CredentialError::UnknownMechanism(mech.to_string()))?;
        let (iterations, salt, stored_key, server_key) = v.value();
        out.entry(user.to_string()).or_default().insert(
            mechanism,
            ScramCredential {
                salt: salt.to_vec(),
                iterations,
                stored_key: stored_key.to_vec(),
                server_key: server_key.to_vec(),
            },
        );
    }
    Ok(out)
}

impl CredentialStore {
    /// Open the store in `meta` (creating its table) and load every credential.
    pub fn open(meta: Arc<MetaStore>) -> Result<CredentialStore, CredentialError> {
        let txn = meta.db().begin_write().map_err(storage)?;
        txn.open_table(SCRAM).map_err(storage)?;
        txn.commit().map_err(storage)?;
        let cache = read_table(&meta)?;
        Ok(CredentialStore {
            meta,
            cache: RwLock::new(cache),
            mirrored: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Make this store a copy of the cluster's users (a cluster member's users live in the
    /// metadata image): every credential becomes `users`, in memory only, and
    /// [`Self::upsert`] / [`Self::delete`] refuse from now on. Called with an empty map at start
    /// (no user authenticates on a stale local copy) and with every image once caught up.
    pub fn mirror(&self, users: &Credentials) {
        self.mirrored
            .store(true, std::sync::atomic::Ordering::Release);
        if *self.read() != *users {
            *self.write() = users.clone();
        }
    }

    /// Whether this store copies the cluster's users ([`Self::mirror`]).
    pub fn is_mirrored(&self) -> bool {
        self.mirrored.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The users of this node's own table (on a cluster member: what it kept before its users
    /// were the cluster's), read from disk whatever [`Self::mirror`] holds.
    pub fn local_table(&self) -> Result<Credentials, CredentialError> {
        read_table(&self.meta)
    }

    /// Empties this node's own table (a cluster member, once its users moved into the
    /// cluster), whatever [`Self::mirror`] holds.
    pub fn clear_local_table(&self) -> Result<(), CredentialError> {
        let txn = self.meta.db().begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(SCRAM).map_err(storage)?;
            table.retain(|_, _| false).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    fn check_local(&self) -> Result<(), CredentialError> {
        if self.is_mirrored() {
            return Err(CredentialError::ManagedByController);
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read_unpoisoned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write_unpoisoned()
    }

    /// The credential of `user` for `mechanism`.
    pub fn get(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.read().get(user)?.get(&mechanism).cloned()
    }

    /// Every credential of `user` (for SASL/PLAIN).
    pub fn all_of(&self, user: &str) -> Vec<(ScramMechanism, ScramCredential)> {
        self.read()
            .get(user)
            .map(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }

    /// Users with their mechanisms and iteration counts, sorted by name.
    pub fn list(&self) -> Vec<(String, Vec<(ScramMechanism, u32)>)> {
        self.read()
            .iter()
            .map(|(u, m)| {
                (
                    u.clone(),
                    m.iter().map(|(k, v)| (*k, v.iterations)).collect(),
                )
            })
            .collect()
    }

    /// Whether there is no user at all.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Create or replace the credential of `user` for `mechanism` (durable on return).
    pub fn upsert(
        &self,
        user: &str,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    ) -> Result<(), CredentialError> {
        self.check_local()?;
        check_user_name(user)?;
        let txn = self.meta.db().begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(SCRAM).map_err(storage)?;
            table
                .insert(
                    (user, mechanism.name()),
                    (
                        credential.iterations,
                        credential.salt.as_slice(),
                        credential.stored_key.as_slice(),
                        credential.server_key.as_slice(),
                    ),
                )
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        self.write()
            .entry(user.to_string())
            .or_default()
            .insert(mechanism, credential);
        Ok(())
    }

    /// Delete the credentials of `user` (of `mechanism` only, when given). Returns how many were
    /// deleted.
    pub fn delete(
        &self,
        user: &str,
        mechanism: Option<ScramMechanism>,
    ) -> Result<usize, CredentialError> {
        self.check_local()?;
        let mechanisms: Vec<ScramMechanism> = match mechanism {
            Some(m) => vec![m],
            None => ScramMechanism::ALL.to_vec(),
        };
        let txn = self.meta.db().begin_write().map_err(storage)?;
        let mut removed = 0;
        {
            let mut table = txn.open_table(SCRAM).map_err(storage)?;
            for m in &mechanisms {
                if table.remove((user, m.name())).map_err(storage)?.is_some() {
                    removed += 1;
                }
            }
        }
        txn.commit().map_err(storage)?;
        let mut cache = self.write();
        if let Some(entry) = cache.get_mut(user) {
            for m in &mechanisms {
                entry.remove(m);
            }
            if entry.is_empty() {
                cache.remove(user);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_survive_reopen_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        {
            let meta = Arc::new(MetaStore::open(dir.path()).unwrap());
            let store = CredentialStore::open(meta).unwrap();
            assert!(store.is_empty());
            for m in ScramMechanism::ALL {
                let c = ScramCredential::generate(m, b"pw", 4096).unwrap();
                store.upsert("alice", m, c).unwrap();
            }
            let c = ScramCredential::generate(ScramMechanism::Sha256, b"x", 8192).unwrap();
            store.upsert("bob", ScramMechanism::Sha256, c).unwrap();
            assert!(store
                .upsert(
                    "",
                    ScramMechanism::Sha256,
                    store.get("bob", ScramMechanism::Sha256).unwrap()
                )
                .is_err());
        }
        let meta = Arc::new(MetaStore::open(dir.path()).unwrap());
        let store = CredentialStore::open(meta).unwrap();
        let list = store.list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].0, "alice");
        assert_eq!(list[0].1.len(), 2);
        assert_eq!(list[1].1, vec![(ScramMechanism::Sha256, 8192)]);
        let c = store.get("alice", ScramMechanism::Sha512).unwrap();
        assert!(c.verify_password(ScramMechanism::Sha512, b"pw"));
        assert!(!c.verify_password(ScramMechanism::Sha512, b"pW"));
        assert_eq!(
            store.delete("alice", Some(ScramMechanism::Sha256)).unwrap(),
            1
        );
        assert_eq!(store.all_of("alice").len(), 1);
        assert_eq!(store.delete("alice", None).unwrap(), 1);
        assert_eq!(store.delete("nobody", None).unwrap(), 0);
        assert!(store.get("alice", ScramMechanism::Sha512).is_none());
        drop(store);
        let store = CredentialStore::open(Arc::new(MetaStore::open(dir.path()).unwrap())).unwrap();
        assert_eq!(store.list().len(), 1);
    }

    #[test]
    fn a_mirrored_store_holds_the_clusters_users_only_and_refuses_local_changes() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(MetaStore::open(dir.path()).unwrap());
        let store = CredentialStore::open(meta).unwrap();
        let local = ScramCredential::generate(ScramMechanism::Sha256, b"old", 4096).unwrap();
        store
            .upsert("local", ScramMechanism::Sha256, local)
            .unwrap();
        store.mirror(&Credentials::new());
        assert!(store.is_empty(), "the local user is not the cluster's");
        let c = ScramCredential::generate(ScramMechanism::Sha512, b"pw", 4096).unwrap();
        let users = Credentials::from([(
            "admin".to_string(),
            BTreeMap::from([(ScramMechanism::Sha512, c.clone())]),
        )]);
        store.mirror(&users);
        assert_eq!(store.get("admin", ScramMechanism::Sha512), Some(c.clone()));
        assert!(matches!(
            store.upsert("x", ScramMechanism::Sha512, c),
            Err(CredentialError::ManagedByController)
        ));
        assert!(matches!(
            store.delete("admin", None),
            Err(CredentialError::ManagedByController)
        ));
        // Nothing of the mirror reached the disk; the node's own table is still readable.
        assert_eq!(
            store.local_table().unwrap().keys().collect::<Vec<_>>(),
            vec!["local"]
        );
        drop(store);
        let store = CredentialStore::open(Arc::new(MetaStore::open(dir.path()).unwrap())).unwrap();
        assert_eq!(store.list().len(), 1);
        assert_eq!(store.list()[0].0, "local");
        store.clear_local_table().unwrap();
        assert!(store.local_table().unwrap().is_empty());
    }
}
