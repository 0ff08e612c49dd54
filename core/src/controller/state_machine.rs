//! The controller's state machine (openraft's [`RaftStateMachine`]): the [`MetadataImage`] in
//! memory, the last applied log id and membership, and CBOR snapshots of the image.
//!
//! The image itself is not written on every apply; it is rebuilt from the last snapshot plus the
//! log. Because openraft purges log entries only up to a snapshot, a snapshot must be durable
//! before it is reported: [`RaftSnapshotBuilder::build_snapshot`] and
//! [`RaftStateMachine::install_snapshot`] write `snapshot.cbor` in the state machine's directory
//! atomically (temporary file, fsync, rename, fsync of the directory) and only then return.
//!
//! Snapshot data, as sent to other nodes, is the CBOR encoding of the image; the file holds a
//! [`SnapshotFile`] (format version, snapshot meta, image).

use std::fs::{self, File};
use std::io::{self, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{
    ControllerEntry, ControllerLogId, ControllerResponse, ControllerStorageError, ControllerTypes,
    MetadataImage, VoterNode,
};
use crate::sync::LockExt;

/// Version of the snapshot file layout this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u64 = 1;

/// File name of the snapshot inside the state machine's directory.
pub const SNAPSHOT_FILE: &str = "snapshot.cbor";

/// Errors of the state machine's snapshot handling.
#[derive(Debug, thiserror::Error)]
pub enum StateMachineError {
    /// Reading or writing a snapshot file failed.
    #[error("controller snapshot {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A snapshot (a file, or data received from the leader) does not decode.
    #[error("controller snapshot {path}: undecodable: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: ciborium::de::Error<io::Error>,
    },
    /// The image could not be encoded (never expected).
    #[error("controller snapshot {path}: cannot encode: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: ciborium::ser::Error<io::Error>,
    },
    /// The snapshot file was written by a newer build.
    #[error("controller snapshot {path} has format {found}, this build reads up to {SNAPSHOT_FORMAT_VERSION}")]
    NewerFormat { path: PathBuf, found: u64 },
    /// The blocking task writing the snapshot panicked or was cancelled.
    #[error("controller snapshot {path}: I/O task failed: {source}")]
    Task {
        path: PathBuf,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// The snapshot file: what a restarted node rebuilds its state machine from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub format: u64,
    pub meta: SnapshotMeta<u64, VoterNode>,
    pub image: MetadataImage,
}

#[derive(Debug, Default)]
struct Applied {
    last_applied: Option<ControllerLogId>,
    last_membership: StoredMembership<u64, VoterNode>,
    image: MetadataImage,
    /// The last snapshot built or installed (also on disk).
    snapshot: Option<SnapshotFile>,
    /// Counter making snapshot ids unique within this process.
    snapshots_built: u64,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    applied: Mutex<Applied>,
    /// The image after the last applied batch, for readers that must not hold the lock.
    published: watch::Sender<Arc<MetadataImage>>,
}

/// The controller's state machine; cheap to clone (clones share one image).
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    shared: Arc<Shared>,
}

fn encode_image(path: &Path, image: &MetadataImage) -> Result<Vec<u8>, StateMachineError> {
    let mut out = Vec::new();
    ciborium::into_writer(image, &mut out).map_err(|source| StateMachineError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(out)
}

/// Writes `file` to `dir/snapshot.cbor` atomically and durably.
fn write_snapshot_file(dir: &Path, file: &SnapshotFile) -> Result<(), StateMachineError> {
    let path = dir.join(SNAPSHOT_FILE);
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let io_err = |source| StateMachineError::Io {
        path: path.clone(),
        source,
    };
    let mut bytes = Vec::new();
    ciborium::into_writer(file, &mut bytes).map_err(|source| StateMachineError::Encode {
        path: path.clone(),
        source,
    })?;
    let mut f = File::create(&tmp).map_err(io_err)?;
    f.write_all(&bytes).map_err(io_err)?;
    f.sync_all().map_err(io_err)?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io_err)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
    Ok(())
}

fn read_snapshot_file(dir: &Path) -> Result<Option<SnapshotFile>, StateMachineError> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateMachineError::Io { path, source }),
    };
    let file: SnapshotFile =
        ciborium::from_reader(bytes.as_slice()).map_err(|source| StateMachineError::Decode {
            path: path.clone(),
            source,
        })?;
    if file.format > SNAPSHOT_FORMAT_VERSION {
        return Err(StateMachineError::NewerFormat {
            path,
            found: file.format,
        });
    }
    Ok(Some(file))
}

impl StateMachineStore {
    /// Opens the state machine kept in `dir` (created if missing), starting from the snapshot
    /// there if any.
    pub fn open(dir: &Path) -> Result<StateMachineStore, StateMachineError> {
        fs::create_dir_all(dir).map_err(|source| StateMachineError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut applied = Applied::default();
        if let Some(file) = read_snapshot_file(dir)? {
            applied.last_applied = file.meta.last_log_id;
            applied.last_membership = file.meta.last_membership.clone();
            applied.image = file.image.clone();
            applied.snapshot = Some(file);
        }
        let (published, _) = watch::channel(Arc::new(applied.image.clone()));
        Ok(StateMachineStore {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                applied: Mutex::new(applied),
                published,
            }),
        })
    }

    /// The image as of the last applied batch of entries (or installed snapshot), updated after
    /// each: a reader gets an `Arc` without taking the state machine's lock.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.shared.published.subscribe()
    }

    /// Reads the current image.
    pub fn with_image<R>(&self, f: impl FnOnce(&MetadataImage) -> R) -> R {
        f(&self.shared.applied.lock_unpoisoned().image)
    }

    /// The log id of the last applied entry.
    pub fn last_applied(&self) -> Option<ControllerLogId> {
        self.shared.applied.lock_unpoisoned().last_applied
    }

    fn snapshot_path(&self) -> PathBuf {
        self.shared.dir.join(SNAPSHOT_FILE)
    }

    /// Persists `file` on the blocking pool, then makes it the current snapshot.
    async fn store_snapshot(&self, file: SnapshotFile) -> Result<(), StateMachineError> {
        let dir = self.shared.dir.clone();
        let written = file.clone();
        tokio::task::spawn_blocking(move || write_snapshot_file(&dir, &written))
            .await
            .map_err(|source| StateMachineError::Task {
                path: self.snapshot_path(),
                source,
            })??;
        self.shared.applied.lock_unpoisoned().snapshot = Some(file);
        Ok(())
    }

    fn snapshot_of(
        &self,
        file: &SnapshotFile,
    ) -> Result<Snapshot<ControllerTypes>, StateMachineError> {
        let data = encode_image(&self.snapshot_path(), &file.image)?;
        Ok(Snapshot {
            meta: file.meta.clone(),
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

fn snapshot_error(
    e: &StateMachineError,
    make: fn(Option<openraft::storage::SnapshotSignature<u64>>, AnyError) -> StorageIOError<u64>,
    meta: Option<&SnapshotMeta<u64, VoterNode>>,
) -> ControllerStorageError {
    make(meta.map(SnapshotMeta::signature), AnyError::new(e)).into()
}

impl RaftSnapshotBuilder<ControllerTypes> for StateMachineStore {
    async fn build_snapshot(
        &mut self,
    ) -> Result<Snapshot<ControllerTypes>, ControllerStorageError> {
        let file = {
            let mut a = self.shared.applied.lock_unpoisoned();
            a.snapshots_built += 1;
            let snapshot_id = match a.last_applied {
                Some(id) => format!("{}-{}-{}", id.leader_id, id.index, a.snapshots_built),
                None => format!("--{}", a.snapshots_built),
            };
            SnapshotFile {
                format: SNAPSHOT_FORMAT_VERSION,
                meta: SnapshotMeta {
                    last_log_id: a.last_applied,
                    last_membership: a.last_membership.clone(),
                    snapshot_id,
                },
                image: a.image.clone(),
            }
        };
        let meta = file.meta.clone();
        let fail =
            |e: StateMachineError| snapshot_error(&e, StorageIOError::write_snapshot, Some(&meta));
        let snapshot = self.snapshot_of(&file).map_err(fail)?;
        self.store_snapshot(file).await.map_err(fail)?;
        Ok(snapshot)
    }
}

impl RaftStateMachine<ControllerTypes> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<ControllerLogId>, StoredMembership<u64, VoterNode>), ControllerStorageError>
    {
        let a = self.shared.applied.lock_unpoisoned();
        Ok((a.last_applied, a.last_membership.clone()))
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> Result<Vec<ControllerResponse>, ControllerStorageError>
    where
        I: IntoIterator<Item = ControllerEntry> + Send,
        I::IntoIter: Send,
    {
        let mut a = self.shared.applied.lock_unpoisoned();
        let mut out = Vec::new();
        let mut changed = false;
        for entry in entries {
            a.last_applied = Some(entry.log_id);
            out.push(match entry.payload {
                EntryPayload::Blank => ControllerResponse::NoCommand,
                EntryPayload::Normal(request) => {
                    changed = true;
                    ControllerResponse::Applied(a.image.apply(entry.log_id.index, &request))
                }
                EntryPayload::Membership(m) => {
                    a.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    ControllerResponse::NoCommand
                }
            });
        }
        if changed {
            self.shared
                .published
                .send_replace(Arc::new(a.image.clone()));
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, ControllerStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, VoterNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), ControllerStorageError> {
        let fail =
            |e: StateMachineError| snapshot_error(&e, StorageIOError::read_snapshot, Some(meta));
        let image: MetadataImage = ciborium::from_reader(snapshot.get_ref().as_slice())
            .map_err(|source| StateMachineError::Decode {
                path: self.snapshot_path(),
                source,
            })
            .map_err(fail)?;
        let file = SnapshotFile {
            format: SNAPSHOT_FORMAT_VERSION,
            meta: meta.clone(),
            image,
        };
        // Durable first: once the state machine moves past its log, the log may be purged.
        self.store_snapshot(file.clone()).await.map_err(fail)?;
        let mut a = self.shared.applied.lock_unpoisoned();
        a.last_applied = meta.last_log_id;
        a.last_membership = meta.last_membership.clone();
        a.image = file.image;
        self.shared
            .published
            .send_replace(Arc::new(a.image.clone()));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<ControllerTypes>>, ControllerStorageError> {
        let file = self.shared.applied.lock_unpoisoned().snapshot.clone();
        match file {
            Some(file) => {
                let meta = file.meta.clone();
                self.snapshot_of(&file)
                    .map(Some)
                    .map_err(|e| snapshot_error(&e, StorageIOError::read_snapshot, Some(&meta)))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::{CommittedLeaderId, Entry, LogId, Membership};
    use tempfile::TempDir;
    use uuid::Uuid;

    use super::*;
    use crate::controller::{Command, CommandOutcome, ControllerRequest};

    fn entry(index: u64, payload: EntryPayload<ControllerTypes>) -> ControllerEntry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload,
        }
    }

    fn normal(index: u64, command: Command) -> ControllerEntry {
        entry(index, EntryPayload::Normal(ControllerRequest::new(command)))
    }

    /// Applies a membership, a bootstrap, a registration and a topic; returns the responses.
    async fn apply_some(sm: &mut StateMachineStore) -> Vec<ControllerResponse> {
        let voters = BTreeMap::from([(1u64, VoterNode::default())]);
        sm.apply([
            entry(1, EntryPayload::Blank),
            entry(2, EntryPayload::Membership(Membership::from(voters))),
            normal(
                3,
                Command::Bootstrap {
                    cluster_id: "c".into(),
                    scram_credentials: vec![],
                },
            ),
            normal(
                4,
                Command::RegisterBroker {
                    broker_id: 1,
                    incarnation_id: Uuid::new_v4(),
                    cluster_id: "c".into(),
                    listeners: vec![],
                    rack: Some("r1".into()),
                },
            ),
            normal(
                5,
                Command::UnfenceBroker {
                    broker_id: 1,
                    broker_epoch: 4,
                },
            ),
            normal(
                6,
                Command::CreateTopic {
                    name: "t".into(),
                    topic_id: Uuid::new_v4(),
                    configs: BTreeMap::new(),
                    assignments: vec![vec![1], vec![1]],
                },
            ),
        ])
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn apply_answers_each_entry_and_the_broker_epoch_is_the_log_index() {
        let dir = TempDir::new().unwrap();
        let mut sm = StateMachineStore::open(dir.path()).unwrap();
        let out = apply_some(&mut sm).await;
        assert_eq!(out.len(), 6);
        assert_eq!(out[0], ControllerResponse::NoCommand);
        assert_eq!(out[1], ControllerResponse::NoCommand);
        assert_eq!(
            out[3],
            ControllerResponse::Applied(Ok(CommandOutcome::BrokerRegistered { broker_epoch: 4 }))
        );
        assert!(matches!(
            out[5],
            ControllerResponse::Applied(Ok(CommandOutcome::TopicCreated { .. }))
        ));
        let (applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(6));
        assert_eq!(membership.log_id().map(|l| l.index), Some(2));
        assert_eq!(sm.with_image(|i| i.topic("t").unwrap().partitions.len()), 2);
    }

    #[tokio::test]
    async fn a_snapshot_is_on_disk_when_built_and_a_reopened_machine_starts_from_it() {
        let dir = TempDir::new().unwrap();
        let mut sm = StateMachineStore::open(dir.path()).unwrap();
        apply_some(&mut sm).await;
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(6));
        let image = sm.with_image(MetadataImage::clone);
        drop(sm);

        let mut reopened = StateMachineStore::open(dir.path()).unwrap();
        assert_eq!(reopened.with_image(MetadataImage::clone), image);
        let (applied, membership) = reopened.applied_state().await.unwrap();
        assert_eq!(applied, snapshot.meta.last_log_id);
        assert_eq!(&membership, &snapshot.meta.last_membership);
        let current = reopened.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snapshot.meta);
        assert_eq!(current.snapshot.get_ref(), snapshot.snapshot.get_ref());
    }

    #[tokio::test]
    async fn an_installed_snapshot_replaces_the_image_durably() {
        let leader_dir = TempDir::new().unwrap();
        let mut leader = StateMachineStore::open(leader_dir.path()).unwrap();
        apply_some(&mut leader).await;
        let snapshot = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();

        let follower_dir = TempDir::new().unwrap();
        let mut follower = StateMachineStore::open(follower_dir.path()).unwrap();
        let mut data = follower.begin_receiving_snapshot().await.unwrap();
        data.get_mut()
            .extend_from_slice(snapshot.snapshot.get_ref());
        follower
            .install_snapshot(&snapshot.meta, data)
            .await
            .unwrap();
        let image = leader.with_image(MetadataImage::clone);
        assert_eq!(follower.with_image(MetadataImage::clone), image);
        drop(follower);
        let reopened = StateMachineStore::open(follower_dir.path()).unwrap();
        assert_eq!(reopened.with_image(MetadataImage::clone), image);
        assert_eq!(reopened.last_applied(), snapshot.meta.last_log_id);
    }

    #[tokio::test]
    async fn undecodable_snapshots_are_errors_not_empty_images() {
        let dir = TempDir::new().unwrap();
        let mut sm = StateMachineStore::open(dir.path()).unwrap();
        let meta = SnapshotMeta::default();
        let garbage = Box::new(Cursor::new(vec![0xff, 0x00, 0x13]));
        assert!(sm.install_snapshot(&meta, garbage).await.is_err());
        fs::write(dir.path().join(SNAPSHOT_FILE), b"not cbor").unwrap();
        assert!(matches!(
            StateMachineStore::open(dir.path()),
            Err(StateMachineError::Decode { .. })
        ));
    }
}
