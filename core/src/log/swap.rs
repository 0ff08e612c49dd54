//! The compaction swap protocol (Kafka's `LocalLog.replaceSegments` with its `.swap` files): how a
//! cleaned copy of a closed segment replaces the original on disk so that a crash at any step
//! leaves either the old or the new segment, never a mix.
//!
//! The cleaner writes the new segment into the staging directory [`STAGING_DIR`] of the
//! partition, then [`commit_swap`] writes the marker [`SWAP_MARKER`] atomically (the commit
//! point), renames the staged files over the originals (key, index, time index, log: the log
//! last), fsyncs the partition directory and removes the marker. [`recover_swap`], run by the
//! loader before it looks at segments, completes a swap whose marker exists and otherwise
//! discards whatever is staged.

use std::path::Path;

use super::LogError;
use crate::io::Storage;
use crate::segment;

/// Staging directory (inside the partition directory) where cleaned segments are written.
pub const STAGING_DIR: &str = "cleaner";
/// Commit marker of a swap, inside [`STAGING_DIR`].
pub const SWAP_MARKER: &str = "swap";
const MARKER_MAGIC: [u8; 4] = *b"RCSW";
/// Extensions of a segment's files, in the order a swap renames them (the log last).
const SWAP_ORDER: [&str; 4] = ["key", "index", "timeindex", "log"];

const FORMAT_VERSION: u8 = 1;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Complete (commit marker present) or roll back (absent) a swap interrupted by a crash, and
/// empty the staging directory. Called by the loader before it looks at segments, and by the cleaner before a pass.
pub(crate) fn recover_swap(storage: &dyn Storage, dir: &Path) -> Result<(), LogError> {
    let staging = dir.join(STAGING_DIR);
    let names = match storage.list(&staging) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&staging)(e)),
    };
    if names.is_empty() {
        return Ok(());
    }
    if let Some(base) = read_marker(storage, &staging) {
        tracing::info!(dir = %dir.display(), base, "completing an interrupted compaction swap");
        complete_swap(storage, dir, base)?;
    }
    discard_staging(storage, dir)
}

pub(crate) fn discard_staging(storage: &dyn Storage, dir: &Path) -> Result<(), LogError> {
    let staging = dir.join(STAGING_DIR);
    let names = match storage.list(&staging) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&staging)(e)),
    };
    if names.is_empty() {
        return Ok(());
    }
    // The marker goes last: while it exists, the staged files are a committed swap.
    for n in names.iter().filter(|n| n.as_str() != SWAP_MARKER) {
        let p = staging.join(n);
        match storage.remove(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p)(e)),
        }
    }
    storage.sync_dir(&staging).map_err(io_err(&staging))?;
    let marker = staging.join(SWAP_MARKER);
    if names.iter().any(|n| n == SWAP_MARKER) {
        storage.remove(&marker).map_err(io_err(&marker))?;
        storage.sync_dir(&staging).map_err(io_err(&staging))?;
    }
    Ok(())
}

/// Commit the swap of the staged segment `base`: write the marker (the commit point), rename
/// the staged files over the originals, drop the marker. The caller holds the log's writer lock.
pub(crate) fn commit_swap(storage: &dyn Storage, dir: &Path, base: i64) -> Result<(), LogError> {
    let marker = dir.join(STAGING_DIR).join(SWAP_MARKER);
    storage
        .write_file_atomic(&marker, &encode_marker(base))
        .map_err(io_err(&marker))?;
    complete_swap(storage, dir, base)
}

fn encode_marker(base: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(17);
    b.extend_from_slice(&MARKER_MAGIC);
    b.push(FORMAT_VERSION);
    b.extend_from_slice(&base.to_be_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

fn read_marker(storage: &dyn Storage, staging: &Path) -> Option<i64> {
    let b = storage.read_file(&staging.join(SWAP_MARKER)).ok()?;
    if b.len() != 17 || b[..4] != MARKER_MAGIC || b[4] != FORMAT_VERSION {
        return None;
    }
    let crc = u32::from_be_bytes(b[13..17].try_into().ok()?);
    if crc32c::crc32c(&b[..13]) != crc {
        return None;
    }
    Some(i64::from_be_bytes(b[5..13].try_into().ok()?))
}

/// Rename the staged files of segment `base` over the originals (those still staged), fsync the
/// partition directory, then drop the marker. Idempotent.
fn complete_swap(storage: &dyn Storage, dir: &Path, base: i64) -> Result<(), LogError> {
    let staging = dir.join(STAGING_DIR);
    for ext in SWAP_ORDER {
        let from = staging.join(segment::file_name(base, ext));
        if storage.exists(&from) {
            let to = dir.join(segment::file_name(base, ext));
            storage.rename(&from, &to).map_err(io_err(&to))?;
        }
    }
    storage.sync_dir(dir).map_err(io_err(dir))?;
    let marker = staging.join(SWAP_MARKER);
    match storage.remove(&marker) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&marker)(e)),
    }
    storage.sync_dir(&staging).map_err(io_err(&staging))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::SimStorage;

    fn staged(s: &SimStorage, dir: &Path) {
        let staging = dir.join(STAGING_DIR);
        s.create_dir_all(&staging).unwrap();
        for ext in SWAP_ORDER {
            s.write_file_atomic(&dir.join(segment::file_name(0, ext)), b"old")
                .unwrap();
            s.write_file_atomic(&staging.join(segment::file_name(0, ext)), b"new")
                .unwrap();
        }
    }

    #[test]
    fn without_a_marker_the_staged_files_are_discarded() {
        let s = SimStorage::new();
        let dir = Path::new("/p");
        staged(&s, dir);
        recover_swap(&s, dir).unwrap();
        for ext in SWAP_ORDER {
            assert_eq!(
                s.read_file(&dir.join(segment::file_name(0, ext))).unwrap(),
                b"old"
            );
        }
        assert!(s.list(&dir.join(STAGING_DIR)).unwrap().is_empty());
    }

    #[test]
    fn with_a_marker_the_swap_is_completed() {
        let s = SimStorage::new();
        let dir = Path::new("/p");
        staged(&s, dir);
        let marker = dir.join(STAGING_DIR).join(SWAP_MARKER);
        s.write_file_atomic(&marker, &encode_marker(0)).unwrap();
        // A crash after the first rename: recovery finishes the others.
        let key = segment::file_name(0, "key");
        s.rename(&dir.join(STAGING_DIR).join(&key), &dir.join(&key))
            .unwrap();
        recover_swap(&s, dir).unwrap();
        for ext in SWAP_ORDER {
            assert_eq!(
                s.read_file(&dir.join(segment::file_name(0, ext))).unwrap(),
                b"new"
            );
        }
        assert!(s.list(&dir.join(STAGING_DIR)).unwrap().is_empty());
        // A damaged marker is not a commit.
        staged(&s, dir);
        s.write_file_atomic(&marker, b"RCSW garbage").unwrap();
        recover_swap(&s, dir).unwrap();
        assert_eq!(
            s.read_file(&dir.join(segment::file_name(0, "log")))
                .unwrap(),
            b"old"
        );
    }

    #[test]
    fn commit_swap_replaces_the_files() {
        let s = SimStorage::new();
        let dir = Path::new("/p");
        staged(&s, dir);
        commit_swap(&s, dir, 0).unwrap();
        assert_eq!(
            s.read_file(&dir.join(segment::file_name(0, "log")))
                .unwrap(),
            b"new"
        );
        assert!(s.list(&dir.join(STAGING_DIR)).unwrap().is_empty());
    }
}
