//! The controller's Raft log in redb (openraft's [`RaftLogStorage`]): the vote, the log entries,
//! the last purged log id and the committed log id.
//!
//! **Durability before acknowledgement**: every write that Raft's safety depends on (the vote,
//! appended entries, truncation, purging) is one redb write transaction committed with
//! [`Durability::Immediate`], and [`RaftLogStorage::append`] reports the entries flushed to
//! openraft only after that commit returned, i.e. after redb's fsync. (openraft's example stores
//! acknowledge before syncing; a controller built on them can lose a committed entry in a power
//! cut.) Only the committed log id is written without fsync: losing it merely makes a restarted
//! node re-learn it from the leader.
//!
//! redb's I/O blocks, so each operation runs on tokio's blocking pool.
//!
//! Tables (one file, e.g. `<data dir>/controller/raft-log.redb`):
//! - `raft_log` (`u64` index → CBOR of the [`ControllerEntry`]),
//! - `raft_state` (`&str` → CBOR): `format` (u64, [`FORMAT_VERSION`]), `vote`, `committed`,
//!   `last_purged`.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, RaftLogId, RaftLogReader, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{ControllerEntry, ControllerLogId, ControllerStorageError, ControllerTypes};

/// Version of the table layout this build writes and reads.
pub const FORMAT_VERSION: u64 = 1;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_state");

const KEY_FORMAT: &str = "format";
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// Errors of the log store.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// redb failed (I/O, corruption, the file locked by another process, ...).
    #[error("controller log {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    /// A stored value does not decode (corruption, or written by another build).
    #[error("controller log {path}: undecodable {what}: {source}")]
    Decode {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: ciborium::de::Error<io::Error>,
    },
    /// A value could not be encoded (never expected for these types).
    #[error("controller log {path}: cannot encode {what}: {source}")]
    Encode {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: ciborium::ser::Error<io::Error>,
    },
    /// The file was written with a newer layout.
    #[error("controller log {path} has format {found}, this build reads up to {FORMAT_VERSION}")]
    NewerFormat { path: PathBuf, found: u64 },
    /// The blocking task running the I/O panicked or was cancelled.
    #[error("controller log {path}: I/O task failed: {source}")]
    Task {
        path: PathBuf,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// The controller's log store; cheap to clone (clones share one database).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Inner {
    fn db_err(&self, e: impl Into<redb::Error>) -> LogStoreError {
        LogStoreError::Db {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    fn encode<T: Serialize>(&self, what: &'static str, v: &T) -> Result<Vec<u8>, LogStoreError> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).map_err(|source| LogStoreError::Encode {
            path: self.path.clone(),
            what,
            source,
        })?;
        Ok(out)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        what: &'static str,
        b: &[u8],
    ) -> Result<T, LogStoreError> {
        ciborium::from_reader(b).map_err(|source| LogStoreError::Decode {
            path: self.path.clone(),
            what,
            source,
        })
    }

    /// Creates the tables and checks (or records) the format version.
    fn init(&self) -> Result<(), LogStoreError> {
        let mut tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        tx.set_durability(Durability::Immediate)
            .map_err(|e| self.db_err(e))?;
        {
            tx.open_table(LOG).map_err(|e| self.db_err(e))?;
            let mut state = tx.open_table(STATE).map_err(|e| self.db_err(e))?;
            let found = match state.get(KEY_FORMAT).map_err(|e| self.db_err(e))? {
                Some(v) => Some(self.decode::<u64>("format", v.value())?),
                None => None,
            };
            match found {
                Some(found) if found > FORMAT_VERSION => {
                    return Err(LogStoreError::NewerFormat {
                        path: self.path.clone(),
                        found,
                    })
                }
                Some(_) => {}
                None => {
                    let v = self.encode("format", &FORMAT_VERSION)?;
                    state
                        .insert(KEY_FORMAT, v.as_slice())
                        .map_err(|e| self.db_err(e))?;
                }
            }
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    fn read_state<T: DeserializeOwned>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, LogStoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = tx.open_table(STATE).map_err(|e| self.db_err(e))?;
        match table.get(key).map_err(|e| self.db_err(e))? {
            Some(v) => Ok(Some(self.decode(key, v.value())?)),
            None => Ok(None),
        }
    }

    fn write_state<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), LogStoreError> {
        let bytes = self.encode(key, value)?;
        let mut tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        tx.set_durability(durability).map_err(|e| self.db_err(e))?;
        {
            let mut table = tx.open_table(STATE).map_err(|e| self.db_err(e))?;
            table
                .insert(key, bytes.as_slice())
                .map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<ControllerEntry>, LogStoreError> {
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = tx.open_table(LOG).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for item in table.range(range).map_err(|e| self.db_err(e))? {
            let (_, v) = item.map_err(|e| self.db_err(e))?;
            out.push(self.decode("log entry", v.value())?);
        }
        Ok(out)
    }

    fn log_state(&self) -> Result<LogState<ControllerTypes>, LogStoreError> {
        let last_purged: Option<ControllerLogId> = self.read_state(KEY_LAST_PURGED)?;
        let tx = self.db.begin_read().map_err(|e| self.db_err(e))?;
        let table = tx.open_table(LOG).map_err(|e| self.db_err(e))?;
        let last = match table.last().map_err(|e| self.db_err(e))? {
            Some((_, v)) => {
                let entry: ControllerEntry = self.decode("log entry", v.value())?;
                Some(*entry.get_log_id())
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    /// Writes `entries` in one transaction; with [`Durability::Immediate`] they are on disk when
    /// this returns.
    fn append(
        &self,
        entries: &[ControllerEntry],
        durability: Durability,
    ) -> Result<(), LogStoreError> {
        let mut tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        tx.set_durability(durability).map_err(|e| self.db_err(e))?;
        {
            let mut table = tx.open_table(LOG).map_err(|e| self.db_err(e))?;
            for entry in entries {
                let bytes = self.encode("log entry", entry)?;
                table
                    .insert(entry.get_log_id().index, bytes.as_slice())
                    .map_err(|e| self.db_err(e))?;
            }
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// Deletes the entries in `range`, and records `last_purged` if given, durably.
    fn delete(
        &self,
        range: impl RangeBounds<u64>,
        last_purged: Option<&ControllerLogId>,
    ) -> Result<(), LogStoreError> {
        let purged = last_purged
            .map(|id| self.encode(KEY_LAST_PURGED, id))
            .transpose()?;
        let mut tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        tx.set_durability(Durability::Immediate)
            .map_err(|e| self.db_err(e))?;
        {
            let mut table = tx.open_table(LOG).map_err(|e| self.db_err(e))?;
            table
                .retain_in(range, |_, _| false)
                .map_err(|e| self.db_err(e))?;
            if let Some(bytes) = purged {
                let mut state = tx.open_table(STATE).map_err(|e| self.db_err(e))?;
                state
                    .insert(KEY_LAST_PURGED, bytes.as_slice())
                    .map_err(|e| self.db_err(e))?;
            }
        }
        tx.commit().map_err(|e| self.db_err(e))
    }
}

impl LogStore {
    /// Opens (or creates) the log at `path`.
    pub fn open(path: &Path) -> Result<LogStore, LogStoreError> {
        let db = Database::create(path).map_err(|e| LogStoreError::Db {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        Self::from_db(db, path.to_path_buf())
    }

    /// Opens (or creates) the log on a redb storage backend (tests: in memory, simulated disks).
    pub fn with_backend(
        backend: impl redb::StorageBackend,
        name: &str,
    ) -> Result<LogStore, LogStoreError> {
        let path = PathBuf::from(name);
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(|e| LogStoreError::Db {
                path: path.clone(),
                source: e.into(),
            })?;
        Self::from_db(db, path)
    }

    fn from_db(db: Database, path: PathBuf) -> Result<LogStore, LogStoreError> {
        let inner = Inner { db, path };
        inner.init()?;
        Ok(LogStore {
            inner: Arc::new(inner),
        })
    }

    /// Runs `f` on tokio's blocking pool.
    async fn blocking<T, F>(&self, f: F) -> Result<T, LogStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, LogStoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|source| LogStoreError::Task {
                path: self.inner.path.clone(),
                source,
            })?
    }
}

/// The error as openraft's storage error on `subject`, keeping the cause chain.
fn storage_error(
    e: &LogStoreError,
    make: fn(AnyError) -> StorageIOError<u64>,
) -> ControllerStorageError {
    make(AnyError::new(e)).into()
}

impl RaftLogReader<ControllerTypes> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<ControllerEntry>, ControllerStorageError> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        self.blocking(move |inner| inner.entries(range))
            .await
            .map_err(|e| storage_error(&e, StorageIOError::read_logs))
    }
}

impl RaftLogStorage<ControllerTypes> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<ControllerTypes>, ControllerStorageError> {
        self.blocking(|inner| inner.log_state())
            .await
            .map_err(|e| storage_error(&e, StorageIOError::read_logs))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), ControllerStorageError> {
        let vote = *vote;
        self.blocking(move |inner| inner.write_state(KEY_VOTE, &vote, Durability::Immediate))
            .await
            .map_err(|e| storage_error(&e, StorageIOError::write_vote))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, ControllerStorageError> {
        self.blocking(|inner| inner.read_state(KEY_VOTE))
            .await
            .map_err(|e| storage_error(&e, StorageIOError::read_vote))
    }

    async fn save_committed(
        &mut self,
        committed: Option<ControllerLogId>,
    ) -> Result<(), ControllerStorageError> {
        // Not fsynced (see the module doc); the next durable commit carries it to disk.
        self.blocking(move |inner| inner.write_state(KEY_COMMITTED, &committed, Durability::None))
            .await
            .map_err(|e| storage_error(&e, StorageIOError::write_logs))
    }

    async fn read_committed(&mut self) -> Result<Option<ControllerLogId>, ControllerStorageError> {
        self.blocking(|inner| inner.read_state::<Option<ControllerLogId>>(KEY_COMMITTED))
            .await
            .map(Option::flatten)
            .map_err(|e| storage_error(&e, StorageIOError::read_logs))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<ControllerTypes>,
    ) -> Result<(), ControllerStorageError>
    where
        I: IntoIterator<Item = ControllerEntry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<ControllerEntry> = entries.into_iter().collect();
        let written = self
            .blocking(move |inner| inner.append(&entries, Durability::Immediate))
            .await;
        match written {
            Ok(()) => {
                // The commit returned: the entries are durable. Only now may openraft count
                // them (for a vote, a commit index or a follower's acknowledgement).
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let error = storage_error(&e, StorageIOError::write_logs);
                callback.log_io_completed(Err(io::Error::other(e)));
                Err(error)
            }
        }
    }

    async fn truncate(&mut self, log_id: ControllerLogId) -> Result<(), ControllerStorageError> {
        self.blocking(move |inner| inner.delete(log_id.index.., None))
            .await
            .map_err(|e| storage_error(&e, StorageIOError::write_logs))
    }

    async fn purge(&mut self, log_id: ControllerLogId) -> Result<(), ControllerStorageError> {
        self.blocking(move |inner| inner.delete(..=log_id.index, Some(&log_id)))
            .await
            .map_err(|e| storage_error(&e, StorageIOError::write_logs))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    use tempfile::TempDir;

    use super::*;
    use crate::controller::state_machine::StateMachineStore;
    use crate::controller::{Command, ControllerRequest};
    use crate::sync::LockExt;

    struct DirBuilder;

    impl StoreBuilder<ControllerTypes, LogStore, StateMachineStore, TempDir> for DirBuilder {
        async fn build(
            &self,
        ) -> Result<(TempDir, LogStore, StateMachineStore), ControllerStorageError> {
            let dir = TempDir::new().expect("temp dir");
            let log = LogStore::open(&dir.path().join("raft-log.redb")).expect("open log");
            let sm = StateMachineStore::open(&dir.path().join("state")).expect("open sm");
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(DirBuilder).expect("openraft's storage suite");
    }

    /// A redb backend in memory that keeps, besides the current bytes, the bytes as of the last
    /// `sync_data`: what a power cut leaves behind.
    #[derive(Debug)]
    struct PowerCutDisk {
        current: Mutex<Vec<u8>>,
        synced: Arc<Mutex<Vec<u8>>>,
    }

    impl PowerCutDisk {
        fn new(synced: Arc<Mutex<Vec<u8>>>) -> Self {
            let current = synced.lock_unpoisoned().clone();
            Self {
                current: Mutex::new(current),
                synced,
            }
        }
    }

    impl redb::StorageBackend for PowerCutDisk {
        fn len(&self) -> Result<u64, io::Error> {
            Ok(self.current.lock_unpoisoned().len() as u64)
        }

        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
            let data = self.current.lock_unpoisoned();
            let start = offset as usize;
            let src = data
                .get(start..start + out.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            out.copy_from_slice(src);
            Ok(())
        }

        fn set_len(&self, len: u64) -> Result<(), io::Error> {
            self.current.lock_unpoisoned().resize(len as usize, 0);
            Ok(())
        }

        fn sync_data(&self) -> Result<(), io::Error> {
            *self.synced.lock_unpoisoned() = self.current.lock_unpoisoned().clone();
            Ok(())
        }

        fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
            let mut cur = self.current.lock_unpoisoned();
            let start = offset as usize;
            if cur.len() < start + data.len() {
                cur.resize(start + data.len(), 0);
            }
            cur[start..start + data.len()].copy_from_slice(data);
            Ok(())
        }
    }

    fn entries(from: u64, to: u64) -> Vec<ControllerEntry> {
        (from..=to)
            .map(|index| ControllerEntry {
                log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
                payload: EntryPayload::Normal(ControllerRequest::new(Command::Bootstrap {
                    cluster_id: format!("c{index}"),
                    scram_credentials: vec![],
                })),
            })
            .collect()
    }

    /// Appends with `durability`, cuts the power, and returns how many entries survived.
    fn survivors_of_power_cut(durability: Durability) -> usize {
        let synced = Arc::new(Mutex::new(Vec::new()));
        let store = LogStore::with_backend(PowerCutDisk::new(Arc::clone(&synced)), "sim").unwrap();
        store.inner.append(&entries(1, 5), durability).unwrap();
        // The power goes now, while the store is open (dropping it would shut redb down
        // cleanly, which syncs): only what was synced is left.
        let left = Arc::new(Mutex::new(synced.lock_unpoisoned().clone()));
        let after = LogStore::with_backend(PowerCutDisk::new(left), "sim").unwrap();
        let survivors = after.inner.entries(..).unwrap().len();
        drop(store);
        survivors
    }

    #[test]
    fn appended_entries_survive_a_power_cut_once_append_returns() {
        // What RaftLogStorage::append runs before it calls the flush callback.
        assert_eq!(survivors_of_power_cut(Durability::Immediate), 5);
        // The control: without fsync the same writes are lost, so the check above can fail.
        assert_eq!(survivors_of_power_cut(Durability::None), 0);
    }

    #[test]
    fn state_survives_reopening_and_a_newer_format_is_refused() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("raft-log.redb");
        let store = LogStore::open(&path).unwrap();
        store
            .inner
            .append(&entries(1, 10), Durability::Immediate)
            .unwrap();
        let purged = LogId::new(CommittedLeaderId::new(1, 0), 3);
        store.inner.delete(..=3, Some(&purged)).unwrap();
        store.inner.delete(9.., None).unwrap();
        drop(store);
        let store = LogStore::open(&path).unwrap();
        let state = store.inner.log_state().unwrap();
        assert_eq!(state.last_purged_log_id, Some(purged));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(8));
        let got: Vec<u64> = store
            .inner
            .entries(..)
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(got, vec![4, 5, 6, 7, 8]);
        store
            .inner
            .write_state(KEY_FORMAT, &(FORMAT_VERSION + 1), Durability::Immediate)
            .unwrap();
        drop(store);
        assert!(matches!(
            LogStore::open(&path),
            Err(LogStoreError::NewerFormat { .. })
        ));
    }
}
