//! Master key rotation on a stopped node (`rill key rotate`, `rill key retire`) and the completion
//! of an interrupted rotation when a data directory is opened.
//!
//! The master key only wraps data keys: every segment's key sidecar (`N.key`, see
//! `docs/on-disk-format.md`) and the metadata data key (`rill_keys` row `meta_data_key`, see
//! [`crate::metadata_cipher`]). A rotation from `old` to `new` re-wraps them and never touches
//! the data:
//!
//! 1. **Journal**: the `rill_keys` row `key_rotation` is committed: `new` wrapped under `old` and
//!    `old` wrapped under `new` (two [`KeyLink`]s). From here on either key yields both.
//! 2. **Sidecars**, one after the other (sorted by path): each `N.key` under `old` is replaced
//!    atomically (`N.key.tmp`, fsync, rename, directory fsync) by the same data key under `new`;
//!    one under `new` already is left alone.
//! 3. **Commit**, one redb transaction: the metadata data key re-wrapped under `new`,
//!    `master_key_id` = `new`, the row `previous_master_key` (`new` wrapped under `old`) written
//!    and the journal removed.
//!
//! An interrupted rotation (crash, SIGKILL, power cut at any point) is **always completed, never
//! rolled back**: the next open of the data directory with `old` or `new` (`rill serve`, `rill
//! key rotate` again, `rill key retire`) finds the journal, unwraps the other key from it and
//! redoes steps 2-3 (idempotent). Afterwards the directory is under `new`, and `old` still opens
//! it through `previous_master_key` until `rill key retire --key-file old` removes that row. A
//! second rotation is refused while a previous key is not retired.
//!
//! Failpoint `key_rotate_crash_after=N` (failpoint builds) exits the process right after step N
//! (step 1 the journal, then one step per sidecar re-wrapped, the last one the commit);
//! `key_rotate_without_journal` skips the journal (broken on purpose, for the fault test).

use std::path::{Path, PathBuf};

use crate::crypto::MasterKey;
use crate::io::{OsStorage, Storage};
use crate::keyring::{self, KeyError, KeyLink, KEY_PREVIOUS_MASTER_KEY};
use crate::metadata::{MetaError, MetaStore, KEY_META_DATA_KEY};
use crate::metadata_cipher::{self, MetadataCipher};
use crate::segment::KeyFile;

/// `rill_keys` row of a rotation in progress (the journal).
pub const KEY_ROTATION_JOURNAL: &str = "key_rotation";
const FORWARD: &str = "key_rotation.forward";
const BACKWARD: &str = "key_rotation.backward";

/// Errors of a rotation. Messages name key ids, never keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyRotationError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Metadata(#[from] MetaError),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key sidecar {path}: {reason}")]
    Sidecar { path: PathBuf, reason: String },
    #[error("the old and the new key are the same key ({0})")]
    SameKey(String),
    #[error("{0} was never opened with encryption on: there is no master key to rotate")]
    NotEncrypted(PathBuf),
    #[error(
        "master key {previous} (the previous key of the last rotation) still opens {data_dir}; \
         retire it first: rill key retire --data-dir {data_dir} --key-file <that key>"
    )]
    PreviousNotRetired { data_dir: PathBuf, previous: String },
    #[error(
        "master key {key} is the current key of {data_dir}; only a previous key can be retired"
    )]
    RetireCurrent { data_dir: PathBuf, key: String },
    #[error("master key {key} is not the previous key of {data_dir}: nothing to retire")]
    NothingToRetire { data_dir: PathBuf, key: String },
}

/// What `rotate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// Rotated (or completed an interrupted rotation to the same key): sidecars re-wrapped, and
    /// damaged sidecars left as they are (they were unreadable before too).
    Rotated { rewrapped: usize, damaged: usize },
    /// The directory already was under `new` with `old` as its previous key.
    AlreadyRotated,
}

/// Step counter of the `key_rotate_crash_after` failpoint.
struct Steps(u64);

impl Steps {
    fn done(&mut self, what: &str) {
        self.0 += 1;
        if crate::failpoints::value(crate::failpoints::KEY_ROTATE_CRASH_AFTER) == Some(self.0) {
            eprintln!(
                "failpoint {}={}: crash after step {} ({what})",
                crate::failpoints::KEY_ROTATE_CRASH_AFTER,
                self.0,
                self.0
            );
            std::process::exit(crate::failpoints::POWER_CUT_EXIT_CODE);
        }
    }
}

/// The journal: `new` under `old` (forward) and `old` under `new` (backward).
struct Journal {
    forward: KeyLink,
    backward: KeyLink,
}

impl Journal {
    fn new(old: &MasterKey, new: &MasterKey) -> Result<Journal, KeyError> {
        Ok(Journal {
            forward: KeyLink::new(FORWARD, old, new)?,
            backward: KeyLink::new(BACKWARD, new, old)?,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = self.forward.bytes().to_vec();
        v.extend_from_slice(self.backward.bytes());
        v
    }

    fn decode(bytes: &[u8]) -> Result<Journal, KeyError> {
        if bytes.len() != 2 * KeyLink::LEN {
            return Err(KeyError::BadKeyRecord {
                name: KEY_ROTATION_JOURNAL.into(),
                reason: format!("{} bytes, expected {}", bytes.len(), 2 * KeyLink::LEN),
            });
        }
        Ok(Journal {
            forward: KeyLink::decode(FORWARD, &bytes[..KeyLink::LEN])?,
            backward: KeyLink::decode(BACKWARD, &bytes[KeyLink::LEN..])?,
        })
    }

    /// `(old, new)` from either of them.
    fn keys(&self, given: &MasterKey, data_dir: &Path) -> Result<(MasterKey, MasterKey), KeyError> {
        if given.id() == self.forward.wrapping_id() {
            Ok((given.clone(), self.forward.open(FORWARD, given)?))
        } else if given.id() == self.backward.wrapping_id() {
            Ok((self.backward.open(BACKWARD, given)?, given.clone()))
        } else {
            Err(KeyError::WrongMasterKey {
                data_dir: data_dir.to_path_buf(),
                expected: given.id_hex(),
                found: format!(
                    "{} (being rotated to {})",
                    crate::crypto::hex(&self.forward.wrapping_id()),
                    crate::crypto::hex(&self.forward.wrapped_id())
                ),
            })
        }
    }
}

/// The data directory's current master key for a node started with `given`: completes an
/// interrupted rotation first, then checks the key id ([`keyring::check_key_id`]: the current
/// key, or the previous one of a rotation not yet retired). Call before any partition log opens.
pub fn open_master(
    meta: &MetaStore,
    data_dir: &Path,
    given: &MasterKey,
) -> Result<MasterKey, KeyRotationError> {
    if let Some(rec) = meta.key_record(KEY_ROTATION_JOURNAL)? {
        let journal = Journal::decode(&rec)?;
        let (old, new) = journal.keys(given, data_dir)?;
        tracing::warn!(
            from = %old.id_hex(),
            to = %new.id_hex(),
            "completing an interrupted master key rotation"
        );
        complete(meta, data_dir, &old, &new, &mut Steps(1))?;
    }
    Ok(keyring::check_key_id(meta, given, data_dir)?)
}

/// Rotate the stopped node's data directory from `old` to `new` (see the module docs).
pub fn rotate(
    data_dir: &Path,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<RotateOutcome, KeyRotationError> {
    let meta = MetaStore::open(data_dir)?;
    let mut steps = Steps(0);
    if let Some(rec) = meta.key_record(KEY_ROTATION_JOURNAL)? {
        let journal = Journal::decode(&rec)?;
        let (j_old, j_new) = journal
            .keys(old, data_dir)
            .or_else(|_| journal.keys(new, data_dir))?;
        tracing::warn!(from = %j_old.id_hex(), to = %j_new.id_hex(), "completing an interrupted master key rotation");
        steps.done("journal found");
        complete(&meta, data_dir, &j_old, &j_new, &mut steps)?;
    }
    let recorded = meta
        .master_key_id()?
        .ok_or_else(|| KeyRotationError::NotEncrypted(data_dir.to_path_buf()))?;
    let previous = meta
        .key_record(KEY_PREVIOUS_MASTER_KEY)?
        .map(|r| KeyLink::decode(KEY_PREVIOUS_MASTER_KEY, &r))
        .transpose()?;
    if recorded == new.id_hex()
        && previous
            .as_ref()
            .is_some_and(|p| p.wrapping_id() == old.id())
    {
        return Ok(RotateOutcome::AlreadyRotated);
    }
    if old.id() == new.id() {
        return Err(KeyRotationError::SameKey(old.id_hex()));
    }
    if recorded != old.id_hex() {
        return Err(KeyError::WrongMasterKey {
            data_dir: data_dir.to_path_buf(),
            expected: old.id_hex(),
            found: recorded,
        }
        .into());
    }
    if let Some(p) = previous {
        return Err(KeyRotationError::PreviousNotRetired {
            data_dir: data_dir.to_path_buf(),
            previous: crate::crypto::hex(&p.wrapping_id()),
        });
    }
    let journal = Journal::new(old, new)?;
    if !crate::failpoints::is_set(crate::failpoints::KEY_ROTATE_WITHOUT_JOURNAL) {
        meta.commit_key_records(&[(KEY_ROTATION_JOURNAL, &journal.encode())], &[], None)?;
    }
    steps.done("journal written");
    complete(&meta, data_dir, old, new, &mut steps)
}

/// Retire `old`, the previous key of the last rotation: afterwards it no longer opens the data
/// directory. Completes an interrupted rotation first.
pub fn retire(data_dir: &Path, old: &MasterKey) -> Result<(), KeyRotationError> {
    let meta = MetaStore::open(data_dir)?;
    if let Some(rec) = meta.key_record(KEY_ROTATION_JOURNAL)? {
        let journal = Journal::decode(&rec)?;
        let (j_old, j_new) = journal.keys(old, data_dir)?;
        complete(&meta, data_dir, &j_old, &j_new, &mut Steps(1))?;
    }
    let recorded = meta
        .master_key_id()?
        .ok_or_else(|| KeyRotationError::NotEncrypted(data_dir.to_path_buf()))?;
    if recorded == old.id_hex() {
        return Err(KeyRotationError::RetireCurrent {
            data_dir: data_dir.to_path_buf(),
            key: old.id_hex(),
        });
    }
    let previous = meta
        .key_record(KEY_PREVIOUS_MASTER_KEY)?
        .map(|r| KeyLink::decode(KEY_PREVIOUS_MASTER_KEY, &r))
        .transpose()?;
    match previous {
        Some(p) if p.wrapping_id() == old.id() => {
            meta.commit_key_records(&[], &[KEY_PREVIOUS_MASTER_KEY], None)?;
            Ok(())
        }
        _ => Err(KeyRotationError::NothingToRetire {
            data_dir: data_dir.to_path_buf(),
            key: old.id_hex(),
        }),
    }
}

/// Steps 2-3 of a rotation (idempotent).
fn complete(
    meta: &MetaStore,
    data_dir: &Path,
    old: &MasterKey,
    new: &MasterKey,
    steps: &mut Steps,
) -> Result<RotateOutcome, KeyRotationError> {
    let storage = OsStorage;
    let mut rewrapped = 0;
    let mut damaged = 0;
    for path in sidecars(data_dir)? {
        let io = |source| KeyRotationError::Io {
            path: path.clone(),
            source,
        };
        let bytes = std::fs::read(&path).map_err(io)?;
        let kf = match KeyFile::decode(&bytes) {
            Ok(kf) => kf,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "damaged key sidecar left as it is");
                damaged += 1;
                continue;
            }
        };
        if kf.master_key_id == new.id() {
            continue;
        }
        let moved = kf.rewrap(old, new).map_err(|e| KeyRotationError::Sidecar {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        storage
            .write_file_atomic(&path, &moved.encode())
            .map_err(io)?;
        rewrapped += 1;
        steps.done(&path.display().to_string());
    }
    let mut set: Vec<(&str, Vec<u8>)> = Vec::new();
    if let Some(rec) = meta.key_record(KEY_META_DATA_KEY)? {
        let (under, _) =
            metadata_cipher::record_header(&rec).map_err(|e| KeyError::BadKeyRecord {
                name: KEY_META_DATA_KEY.into(),
                reason: e.to_string(),
            })?;
        if under != new.id() {
            let bad = |e: crate::crypto::CryptoError| KeyError::BadKeyRecord {
                name: KEY_META_DATA_KEY.into(),
                reason: e.to_string(),
            };
            let cipher = MetadataCipher::unwrap(&rec, old).map_err(bad)?;
            set.push((KEY_META_DATA_KEY, cipher.wrap(new).map_err(bad)?.to_vec()));
        }
    }
    let previous = KeyLink::new(KEY_PREVIOUS_MASTER_KEY, old, new)?;
    set.push((KEY_PREVIOUS_MASTER_KEY, previous.bytes().to_vec()));
    let set_refs: Vec<(&str, &[u8])> = set.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    meta.commit_key_records(&set_refs, &[KEY_ROTATION_JOURNAL], Some(&new.id_hex()))?;
    steps.done("committed");
    tracing::info!(from = %old.id_hex(), to = %new.id_hex(), rewrapped, damaged, "master key rotated");
    Ok(RotateOutcome::Rotated { rewrapped, damaged })
}

/// Every key sidecar of the data directory: `<partition dir>/N.key` and the compaction staging
/// `<partition dir>/cleaner/N.key`, sorted; directories being deleted (`*-delete`) are left out.
fn sidecars(data_dir: &Path) -> Result<Vec<PathBuf>, KeyRotationError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyRotationError::Io { path, source }
    };
    let mut out = Vec::new();
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(data_dir).map_err(io(data_dir))? {
        let entry = entry.map_err(io(data_dir))?;
        let name = entry.file_name();
        if entry.file_type().map_err(io(data_dir))?.is_dir()
            && !name.to_string_lossy().ends_with("-delete")
        {
            dirs.push(entry.path());
            let cleaner = entry.path().join("cleaner");
            if cleaner.is_dir() {
                dirs.push(cleaner);
            }
        }
    }
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "key")
                && entry.file_type().is_ok_and(|t| t.is_file())
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::CipherKind;
    use crate::segment::PartitionIdent;

    fn key(b: u8) -> MasterKey {
        MasterKey::from_bytes([b; 32])
    }

    /// A data directory with `n` sidecars under `master`, a metadata data key and a sealed value.
    fn setup(dir: &Path, master: &MasterKey, n: i64) -> (Vec<[u8; 32]>, Vec<u8>) {
        let meta = MetaStore::open(dir).unwrap();
        keyring::check_key_id(&meta, master, dir).unwrap();
        meta.install_cipher(master).unwrap();
        let sealed = meta.seal("t", b"k", b"client secret").unwrap().unwrap();
        let part = dir.join("t-0");
        std::fs::create_dir_all(part.join("cleaner")).unwrap();
        let ident = PartitionIdent {
            topic_id: uuid::Uuid::from_u128(5),
            partition: 0,
        };
        let mut raws = Vec::new();
        for i in 0..n {
            let (kf, _) =
                KeyFile::generate(CipherKind::ChaCha20Poly1305, master, ident, i * 10).unwrap();
            raws.push(kf.unwrap_raw(master).unwrap());
            let p = if i == n - 1 {
                part.join("cleaner").join(format!("{:020}.key", i * 10))
            } else {
                part.join(format!("{:020}.key", i * 10))
            };
            std::fs::write(p, kf.encode()).unwrap();
        }
        (raws, sealed)
    }

    fn check(dir: &Path, given: &MasterKey, current: &MasterKey, raws: &[[u8; 32]], sealed: &[u8]) {
        let meta = MetaStore::open(dir).unwrap();
        let got = open_master(&meta, dir, given).unwrap();
        assert_eq!(got.id(), current.id());
        meta.install_cipher(&got).unwrap();
        assert_eq!(meta.unseal("t", b"k", sealed).unwrap(), b"client secret");
        let files = sidecars(dir).unwrap();
        assert_eq!(files.len(), raws.len());
        for (p, raw) in files.iter().zip(raws) {
            let kf = KeyFile::decode(&std::fs::read(p).unwrap()).unwrap();
            assert_eq!(kf.master_key_id, current.id(), "{}", p.display());
            assert_eq!(&kf.unwrap_raw(current).unwrap(), raw);
        }
        assert!(meta.key_record(KEY_ROTATION_JOURNAL).unwrap().is_none());
    }

    #[test]
    fn rotate_then_both_keys_open_until_retired() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (a, b, c) = (key(1), key(2), key(3));
        let (raws, sealed) = setup(dir, &a, 3);
        assert_eq!(
            rotate(dir, &a, &b).unwrap(),
            RotateOutcome::Rotated {
                rewrapped: 3,
                damaged: 0
            }
        );
        assert_eq!(rotate(dir, &a, &b).unwrap(), RotateOutcome::AlreadyRotated);
        check(dir, &a, &b, &raws, &sealed);
        check(dir, &b, &b, &raws, &sealed);
        // Not again before the previous key is retired; not with a stranger or the same key.
        assert!(matches!(
            rotate(dir, &b, &c),
            Err(KeyRotationError::PreviousNotRetired { .. })
        ));
        assert!(matches!(
            retire(dir, &b),
            Err(KeyRotationError::RetireCurrent { .. })
        ));
        assert!(matches!(
            retire(dir, &c),
            Err(KeyRotationError::NothingToRetire { .. })
        ));
        retire(dir, &a).unwrap();
        {
            let meta = MetaStore::open(dir).unwrap();
            assert!(matches!(
                open_master(&meta, dir, &a),
                Err(KeyRotationError::Key(KeyError::WrongMasterKey { .. }))
            ));
        }
        assert!(matches!(
            rotate(dir, &b, &b),
            Err(KeyRotationError::SameKey(_))
        ));
        assert!(matches!(
            rotate(dir, &a, &c),
            Err(KeyRotationError::Key(KeyError::WrongMasterKey { .. }))
        ));
        rotate(dir, &b, &c).unwrap();
        check(dir, &c, &c, &raws, &sealed);
    }

    /// An interrupted rotation: the journal and some sidecars re-wrapped, nothing else. Either
    /// key completes it at the next open and the state is the rotated one.
    #[test]
    fn interrupted_rotation_completes_with_either_key() {
        for (given_old, done) in [
            (true, 0usize),
            (false, 0),
            (true, 1),
            (false, 2),
            (false, 3),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            let (a, b) = (key(1), key(2));
            let (raws, sealed) = setup(dir, &a, 3);
            {
                let meta = MetaStore::open(dir).unwrap();
                let j = Journal::new(&a, &b).unwrap();
                meta.commit_key_records(&[(KEY_ROTATION_JOURNAL, &j.encode())], &[], None)
                    .unwrap();
            }
            for p in sidecars(dir).unwrap().into_iter().take(done) {
                let kf = KeyFile::decode(&std::fs::read(&p).unwrap()).unwrap();
                std::fs::write(&p, kf.rewrap(&a, &b).unwrap().encode()).unwrap();
            }
            let given = if given_old { &a } else { &b };
            check(dir, given, &b, &raws, &sealed);
            check(dir, &a, &b, &raws, &sealed);
            let meta = MetaStore::open(dir).unwrap();
            assert!(open_master(&meta, dir, &key(9)).is_err());
        }
    }

    #[test]
    fn a_stranger_cannot_complete_a_journal() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (a, b) = (key(1), key(2));
        setup(dir, &a, 1);
        let meta = MetaStore::open(dir).unwrap();
        let j = Journal::new(&a, &b).unwrap();
        meta.commit_key_records(&[(KEY_ROTATION_JOURNAL, &j.encode())], &[], None)
            .unwrap();
        let err = open_master(&meta, dir, &key(7)).unwrap_err();
        assert!(err.to_string().contains("being rotated to"), "{err}");
        assert!(meta.key_record(KEY_ROTATION_JOURNAL).unwrap().is_some());
    }
}
