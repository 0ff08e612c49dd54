//! The file-system seam: every byte the log writes goes through [`Storage`], so tests can swap in
//! a simulated disk ([`SimStorage`]) that throws away whatever was not fsynced when the "power" is
//! cut.
//!
//! The model is deliberately small: files are opened as [`StorageFile`] handles that support
//! positional reads and writes (`pread`/`pwrite`), `fdatasync`, truncation and length; the
//! directory operations are create-dir, list, rename, remove and directory fsync. A file creation,
//! rename or removal is only durable after [`Storage::sync_dir`] of its parent, and file contents
//! only after [`StorageFile::sync`] — the POSIX rules the log engine must follow, which
//! [`SimStorage::power_cut`] enforces literally.

use crate::sync::LockExt;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// An open file. Positional I/O only, so concurrent readers never disturb the writer.
pub trait StorageFile: Send + Sync {
    /// Read exactly `buf.len()` bytes at `pos`; `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
    /// Write all of `data` at `pos` (extending the file if needed).
    fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()>;
    /// Make the contents durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
    /// Cut (or extend with zeros) the file to `len` bytes. Not durable until [`StorageFile::sync`].
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// File-system operations the log engine needs.
pub trait Storage: Send + Sync {
    /// Create `dir` and its parents (durably: parents are fsynced).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Open an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    /// Create a new empty file (truncating one that exists). The creation is durable only after
    /// [`Storage::sync_dir`] of the parent.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    /// Names (not paths) of the regular files in `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Atomically rename `from` to `to` (replacing `to`). Durable after `sync_dir`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file. Durable after `sync_dir`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Remove a directory and everything in it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Make creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// Read a whole (small) file.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open(path)?;
        let len = usize::try_from(f.len()?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
    /// Durably replace `path` with `data`: write `path.tmp`, fsync, rename, fsync the directory.
    fn write_file_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let f = self.create(&tmp)?;
        f.write_all_at(data, 0)?;
        f.sync()?;
        drop(f);
        self.rename(&tmp, path)?;
        self.sync_dir(parent_of(path))
    }
}

/// Parent directory of `path` (`.` for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsStorage;

struct OsFile(File);

impl StorageFile for OsFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, pos)
    }
    fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(data, pos)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl Storage for OsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        // Make every new directory entry durable, walking up to the first that existed.
        let mut cur = Some(dir);
        while let Some(d) = cur {
            let parent = parent_of(d);
            self.sync_dir(parent)?;
            if parent == d || parent == Path::new(".") || parent == Path::new("/") {
                break;
            }
            cur = Some(parent);
            if parent.parent().is_none() {
                break;
            }
        }
        Ok(())
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(OsFile(f)))
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Arc::new(OsFile(f)))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(n) = entry.file_name().to_str() {
                    names.push(n.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// Contents of one simulated file: what the page cache holds and what reached the "platter".
#[derive(Default)]
struct SimData {
    /// Current contents (page cache view).
    data: Vec<u8>,
    /// Contents as of the last `sync`.
    durable: Vec<u8>,
    /// Lowest position changed since the last sync.
    dirty_from: usize,
}

#[derive(Default)]
struct SimFileCell {
    inner: Mutex<SimData>,
}

impl SimFileCell {
    fn lock(&self) -> MutexGuard<'_, SimData> {
        self.inner.lock_unpoisoned()
    }
}

struct SimHandle {
    cell: Arc<SimFileCell>,
    storage: Arc<SimShared>,
    generation: u64,
}

impl SimHandle {
    fn check(&self) -> io::Result<()> {
        if self.storage.lock().generation != self.generation {
            return Err(io::Error::other("stale handle after power cut"));
        }
        Ok(())
    }
}

impl StorageFile for SimHandle {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let d = self.cell.lock();
        let pos = usize::try_from(pos).map_err(|_| io::Error::other("position"))?;
        let end = pos
            .checked_add(buf.len())
            .ok_or_else(|| io::Error::other("overflow"))?;
        if end > d.data.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
        }
        buf.copy_from_slice(&d.data[pos..end]);
        Ok(())
    }
    fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        self.check()?;
        let mut d = self.cell.lock();
        let pos = usize::try_from(pos).map_err(|_| io::Error::other("position"))?;
        let end = pos + data.len();
        if d.data.len() < end {
            d.data.resize(end, 0);
        }
        d.data[pos..end].copy_from_slice(data);
        d.dirty_from = d.dirty_from.min(pos);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        self.check()?;
        let mut d = self.cell.lock();
        let keep = d.dirty_from.min(d.data.len()).min(d.durable.len());
        let SimData { data, durable, .. } = &mut *d;
        durable.truncate(keep);
        durable.extend_from_slice(&data[keep..]);
        d.dirty_from = usize::MAX;
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        let mut d = self.cell.lock();
        let len = usize::try_from(len).map_err(|_| io::Error::other("length"))?;
        d.data.resize(len, 0);
        d.dirty_from = d.dirty_from.min(len);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.cell.lock().data.len() as u64)
    }
}

#[derive(Default)]
struct SimState {
    /// Directory entries as the running system sees them.
    files: BTreeMap<PathBuf, Arc<SimFileCell>>,
    /// Directory entries as of the last `sync_dir` of each parent.
    durable: BTreeMap<PathBuf, Arc<SimFileCell>>,
    /// Incremented by every power cut; handles from an older generation are stale.
    generation: u64,
    /// Number of fsync-like calls (file and directory), for tests.
    syncs: u64,
}

#[derive(Default)]
struct SimShared {
    state: Mutex<SimState>,
}

impl SimShared {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock_unpoisoned()
    }
}

/// An in-memory disk for tests. [`SimStorage::power_cut`] discards every byte not fsynced and
/// every file creation, rename or removal not followed by a directory fsync. Directories are
/// implicit (they exist as soon as a file is in them) and always durable.
#[derive(Clone, Default)]
pub struct SimStorage {
    shared: Arc<SimShared>,
}

impl SimStorage {
    /// A new empty simulated disk.
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    /// Simulate a power failure: the namespace reverts to the last directory fsyncs and every file
    /// to its last fsynced contents. Handles opened before the cut fail with an error afterwards.
    pub fn power_cut(&self) {
        let mut st = self.shared.lock();
        let mut fresh = BTreeMap::new();
        let durable = st.durable.clone();
        for (path, cell) in durable.iter() {
            let d = cell.lock();
            let copy = SimFileCell {
                inner: Mutex::new(SimData {
                    data: d.durable.clone(),
                    durable: d.durable.clone(),
                    dirty_from: usize::MAX,
                }),
            };
            fresh.insert(path.clone(), Arc::new(copy));
        }
        st.generation += 1;
        st.durable = fresh.clone();
        st.files = fresh;
    }

    /// Number of file and directory fsyncs so far.
    pub fn sync_count(&self) -> u64 {
        self.shared.lock().syncs
    }

    /// Current (page cache) contents of every file, for tests that inspect the "disk".
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let st = self.shared.lock();
        st.files
            .iter()
            .map(|(p, c)| (p.clone(), c.lock().data.clone()))
            .collect()
    }

    fn handle(&self, cell: Arc<SimFileCell>, generation: u64) -> Arc<dyn StorageFile> {
        Arc::new(SimHandle {
            cell,
            storage: self.shared.clone(),
            generation,
        })
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}", path.display()))
}

struct CountingHandle {
    inner: Arc<dyn StorageFile>,
    shared: Arc<SimShared>,
}

impl StorageFile for CountingHandle {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, pos)
    }
    fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(data, pos)
    }
    fn sync(&self) -> io::Result<()> {
        self.shared.lock().syncs += 1;
        self.inner.sync()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let (cell, generation) = {
            let st = self.shared.lock();
            let cell = st.files.get(path).cloned().ok_or_else(|| not_found(path))?;
            (cell, st.generation)
        };
        Ok(Arc::new(CountingHandle {
            inner: self.handle(cell, generation),
            shared: self.shared.clone(),
        }))
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let cell = Arc::new(SimFileCell::default());
        let generation = {
            let mut st = self.shared.lock();
            st.files.insert(path.to_path_buf(), cell.clone());
            st.generation
        };
        Ok(Arc::new(CountingHandle {
            inner: self.handle(cell, generation),
            shared: self.shared.clone(),
        }))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.shared.lock();
        let mut names: Vec<String> = st
            .files
            .keys()
            .filter(|p| parent_of(p) == dir)
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.shared.lock();
        let cell = st.files.remove(from).ok_or_else(|| not_found(from))?;
        st.files.insert(to.to_path_buf(), cell);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.shared.lock();
        st.files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.shared.lock();
        st.files.retain(|p, _| !p.starts_with(dir));
        st.durable.retain(|p, _| !p.starts_with(dir));
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.shared.lock();
        st.syncs += 1;
        st.durable.retain(|p, _| parent_of(p) != dir);
        let entries: Vec<(PathBuf, Arc<SimFileCell>)> = st
            .files
            .iter()
            .filter(|(p, _)| parent_of(p) == dir)
            .map(|(p, c)| (p.clone(), c.clone()))
            .collect();
        st.durable.extend(entries);
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        self.shared.lock().files.contains_key(path)
    }
}

/// A [`SimStorage`] that loses power at the `n`-th mutating operation (create, write, truncate,
/// fsync, rename, remove, directory fsync) after [`CrashingStorage::arm`]: that operation and
/// every later one fail, and the disk reverts to what was durable. Crash tests run an operation
/// with the cut at step 0, 1, 2, ... until it completes, reopening the log after each cut.
#[derive(Clone)]
pub struct CrashingStorage {
    sim: SimStorage,
    left: Arc<AtomicI64>,
    crashed: Arc<AtomicBool>,
}

impl CrashingStorage {
    /// Wrap `sim`, disarmed.
    pub fn new(sim: SimStorage) -> CrashingStorage {
        CrashingStorage {
            sim,
            left: Arc::new(AtomicI64::new(-1)),
            crashed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Cut the power at the `n`-th mutating operation from now (0: the next one).
    pub fn arm(&self, n: i64) {
        self.left.store(n, Ordering::Release);
    }

    /// Whether the power was cut.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::Acquire)
    }

    /// The simulated disk underneath (after a cut: what survived).
    pub fn sim(&self) -> &SimStorage {
        &self.sim
    }

    fn step(&self) -> io::Result<()> {
        if self.crashed() {
            return Err(io::Error::other("crashed"));
        }
        let left = self.left.load(Ordering::Acquire);
        if left < 0 {
            return Ok(());
        }
        if left == 0 {
            self.crashed.store(true, Ordering::Release);
            self.sim.power_cut();
            return Err(io::Error::other("power cut"));
        }
        self.left.store(left - 1, Ordering::Release);
        Ok(())
    }
}

struct CrashingFile {
    inner: Arc<dyn StorageFile>,
    disk: CrashingStorage,
}

impl StorageFile for CrashingFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, pos)
    }
    fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        self.disk.step()?;
        self.inner.write_all_at(data, pos)
    }
    fn sync(&self) -> io::Result<()> {
        self.disk.step()?;
        self.inner.sync()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.disk.step()?;
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

impl Storage for CrashingStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.sim.create_dir_all(dir)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let inner = self.sim.open(path)?;
        Ok(Arc::new(CrashingFile {
            inner,
            disk: self.clone(),
        }))
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        self.step()?;
        let inner = self.sim.create(path)?;
        Ok(Arc::new(CrashingFile {
            inner,
            disk: self.clone(),
        }))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.sim.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step()?;
        self.sim.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        self.sim.remove(path)
    }
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.step()?;
        self.sim.remove_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.step()?;
        self.sim.sync_dir(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.sim.exists(path)
    }
}

/// The real file system, remembering each file's last synced state so that
/// [`SyncTrackingStorage::power_cut`] can put every file back to it: the fault tests' simulated
/// power cut of a real process (`failpoints` builds only, see [`crate::failpoints`]).
///
/// Tracked: file contents and lengths (bytes written over synced data are saved before they are
/// overwritten; unsynced growth is cut off). Not tracked: directory entries (a rename or a file
/// creation counts as durable at once), which [`SimStorage`]'s unit tests cover instead.
#[cfg(feature = "failpoints")]
pub struct SyncTrackingStorage {
    shared: Arc<TrackingShared>,
}

#[cfg(feature = "failpoints")]
#[derive(Default)]
struct TrackingShared {
    files: Mutex<BTreeMap<PathBuf, Arc<Mutex<TrackedState>>>>,
    /// Set by the power cut: every later write or sync fails.
    dead: std::sync::atomic::AtomicBool,
}

/// A file's state as of its last sync.
#[cfg(feature = "failpoints")]
#[derive(Default)]
struct TrackedState {
    synced_len: u64,
    /// Synced bytes overwritten or cut off since, as (position, old bytes), oldest first.
    undo: Vec<(u64, Vec<u8>)>,
}

#[cfg(feature = "failpoints")]
struct TrackedFile {
    file: File,
    state: Arc<Mutex<TrackedState>>,
    shared: Arc<TrackingShared>,
}

#[cfg(feature = "failpoints")]
impl TrackedFile {
    fn check(&self) -> io::Result<()> {
        if self.shared.dead.load(std::sync::atomic::Ordering::Acquire) {
            return Err(io::Error::other("power cut (failpoint)"));
        }
        Ok(())
    }

    /// Save the synced bytes in `[from, to)` before they change.
    fn save(&self, st: &mut TrackedState, from: u64, to: u64) -> io::Result<()> {
        let to = to.min(st.synced_len).min(self.file.metadata()?.len());
        if from >= to {
            return Ok(());
        }
        let mut old = vec![0u8; (to - from) as usize];
        self.file.read_exact_at(&mut old, from)?;
        st.undo.push((from, old));
        Ok(())
    }
}

#[cfg(feature = "failpoints")]
impl StorageFile for TrackedFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, pos)
    }
    fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        self.check()?;
        let mut st = self.state.lock_unpoisoned();
        self.save(&mut st, pos, pos + data.len() as u64)?;
        self.file.write_all_at(data, pos)
    }
    fn sync(&self) -> io::Result<()> {
        self.check()?;
        let mut st = self.state.lock_unpoisoned();
        self.file.sync_data()?;
        st.undo.clear();
        st.synced_len = self.file.metadata()?.len();
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        let mut st = self.state.lock_unpoisoned();
        self.save(&mut st, len, u64::MAX)?;
        self.file.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

#[cfg(feature = "failpoints")]
impl Default for SyncTrackingStorage {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "failpoints")]
impl SyncTrackingStorage {
    /// Track every file opened or created through this storage from now on.
    pub fn new() -> SyncTrackingStorage {
        SyncTrackingStorage {
            shared: Arc::new(TrackingShared::default()),
        }
    }

    fn track(&self, path: &Path, file: File, synced_len: u64) -> Arc<dyn StorageFile> {
        let state = self
            .shared
            .files
            .lock_unpoisoned()
            .entry(path.to_path_buf())
            .or_insert_with(|| {
                Arc::new(Mutex::new(TrackedState {
                    synced_len,
                    undo: Vec::new(),
                }))
            })
            .clone();
        Arc::new(TrackedFile {
            file,
            state,
            shared: self.shared.clone(),
        })
    }

    /// Put every tracked file back to its last synced contents and length, and make every later
    /// write or sync through this storage fail. Returns how many files changed.
    pub fn power_cut(&self) -> usize {
        self.shared
            .dead
            .store(true, std::sync::atomic::Ordering::Release);
        let files = self.shared.files.lock_unpoisoned();
        let mut changed = 0;
        for (path, state) in files.iter() {
            let mut st = state.lock_unpoisoned();
            let Ok(f) = OpenOptions::new().write(true).open(path) else {
                continue;
            };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if st.undo.is_empty() && len == st.synced_len {
                continue;
            }
            for (pos, old) in st.undo.iter().rev() {
                let _ = f.write_all_at(old, *pos);
            }
            let _ = f.set_len(st.synced_len);
            let _ = f.sync_all();
            st.undo.clear();
            changed += 1;
        }
        changed
    }
}

#[cfg(feature = "failpoints")]
impl Storage for SyncTrackingStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsStorage.create_dir_all(dir)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        let len = f.metadata()?.len();
        Ok(self.track(path, f, len))
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        // Creating truncates: what an existing file held counts as synced and is restored by a
        // power cut.
        if let Some(old) = self.shared.files.lock_unpoisoned().remove(path) {
            drop(old);
        }
        let old = std::fs::read(path).ok();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let handle = self.track(path, f, old.as_ref().map_or(0, |o| o.len() as u64));
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            if let Some(state) = self.shared.files.lock_unpoisoned().get(path) {
                state.lock_unpoisoned().undo.push((0, old));
            }
        }
        Ok(handle)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        OsStorage.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)?;
        let mut files = self.shared.files.lock_unpoisoned();
        files.remove(to);
        if let Some(state) = files.remove(from) {
            files.insert(to.to_path_buf(), state);
        }
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)?;
        self.shared.files.lock_unpoisoned().remove(path);
        Ok(())
    }
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsStorage.remove_dir_all(dir)?;
        self.shared
            .files
            .lock_unpoisoned()
            .retain(|p, _| !p.starts_with(dir));
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsStorage.sync_dir(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// Another storage whose file fsyncs each take `delay` longer (a slow disk: an SD card, a worn
/// eMMC). Everything else passes through. The fault tests' `slow_fsync_ms` failpoint
/// ([`crate::failpoints`]; `failpoints` builds only).
#[cfg(feature = "failpoints")]
pub struct SlowSyncStorage {
    inner: Arc<dyn Storage>,
    delay: std::time::Duration,
}

#[cfg(feature = "failpoints")]
impl SlowSyncStorage {
    /// `inner` with every [`StorageFile::sync`] delayed by `delay` first.
    pub fn new(inner: Arc<dyn Storage>, delay: std::time::Duration) -> SlowSyncStorage {
        SlowSyncStorage { inner, delay }
    }

    fn wrap(&self, file: Arc<dyn StorageFile>) -> Arc<dyn StorageFile> {
        Arc::new(SlowSyncFile {
            inner: file,
            delay: self.delay,
        })
    }
}

#[cfg(feature = "failpoints")]
struct SlowSyncFile {
    inner: Arc<dyn StorageFile>,
    delay: std::time::Duration,
}

#[cfg(feature = "failpoints")]
impl StorageFile for SlowSyncFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, pos)
    }
    fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(data, pos)
    }
    fn sync(&self) -> io::Result<()> {
        std::thread::sleep(self.delay);
        self.inner.sync()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

#[cfg(feature = "failpoints")]
impl Storage for SlowSyncStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        Ok(self.wrap(self.inner.open(path)?))
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        Ok(self.wrap(self.inner.create(path)?))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_cut_drops_unsynced_bytes_and_entries() {
        let s = SimStorage::new();
        let dir = Path::new("/d");
        let a = s.create(&dir.join("a")).unwrap();
        a.write_all_at(b"hello", 0).unwrap();
        a.sync().unwrap();
        s.sync_dir(dir).unwrap();
        a.write_all_at(b" world", 5).unwrap();
        let b = s.create(&dir.join("b")).unwrap();
        b.write_all_at(b"x", 0).unwrap();
        b.sync().unwrap(); // contents synced, but the entry is not
        s.power_cut();
        assert!(a.write_all_at(b"z", 0).is_err(), "stale handle must fail");
        assert_eq!(s.list(dir).unwrap(), vec!["a".to_string()]);
        assert_eq!(s.read_file(&dir.join("a")).unwrap(), b"hello");
    }

    #[test]
    fn power_cut_reverts_unsynced_truncate_and_rename() {
        let s = SimStorage::new();
        let dir = Path::new("/d");
        let a = s.create(&dir.join("a")).unwrap();
        a.write_all_at(b"0123456789", 0).unwrap();
        a.sync().unwrap();
        s.sync_dir(dir).unwrap();
        a.set_len(3).unwrap();
        a.write_all_at(b"ab", 3).unwrap();
        s.rename(&dir.join("a"), &dir.join("c")).unwrap();
        s.power_cut();
        assert_eq!(s.read_file(&dir.join("a")).unwrap(), b"0123456789");
        assert!(!s.exists(&dir.join("c")));
    }

    #[test]
    fn sync_after_partial_overwrite_is_exact() {
        let s = SimStorage::new();
        let dir = Path::new("/d");
        let a = s.create(&dir.join("a")).unwrap();
        s.sync_dir(dir).unwrap();
        a.write_all_at(b"0123456789", 0).unwrap();
        a.sync().unwrap();
        a.set_len(4).unwrap();
        a.write_all_at(b"xy", 4).unwrap();
        a.sync().unwrap();
        a.write_all_at(b"zz", 6).unwrap();
        s.power_cut();
        assert_eq!(s.read_file(&dir.join("a")).unwrap(), b"0123xy");
    }

    #[test]
    fn os_storage_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let s = OsStorage;
        let p = d.path().join("sub/x");
        s.create_dir_all(parent_of(&p)).unwrap();
        s.write_file_atomic(&p, b"abc").unwrap();
        assert_eq!(s.read_file(&p).unwrap(), b"abc");
        assert_eq!(s.list(parent_of(&p)).unwrap(), vec!["x".to_string()]);
        let f = s.open(&p).unwrap();
        let mut b = [0u8; 2];
        f.read_exact_at(&mut b, 1).unwrap();
        assert_eq!(&b, b"bc");
        assert!(f.read_exact_at(&mut b, 2).is_err());
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn sync_tracking_storage_reverts_to_the_last_synced_state() {
        let tmp = tempfile::tempdir().unwrap();
        let st = SyncTrackingStorage::new();
        let a = tmp.path().join("a");
        let f = st.create(&a).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync().unwrap();
        f.write_all_at(b"HE", 0).unwrap(); // overwrites synced bytes
        f.write_all_at(b" world", 5).unwrap(); // unsynced growth
        let b = tmp.path().join("b");
        std::fs::write(&b, b"synced before").unwrap();
        let g = st.open(&b).unwrap();
        g.set_len(3).unwrap(); // cuts off synced bytes
        let c = tmp.path().join("c");
        st.create(&c)
            .unwrap()
            .write_all_at(b"never synced", 0)
            .unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"HEllo world");
        assert_eq!(st.power_cut(), 3);
        assert_eq!(std::fs::read(&a).unwrap(), b"hello");
        assert_eq!(std::fs::read(&b).unwrap(), b"synced before");
        assert_eq!(std::fs::read(&c).unwrap(), b"");
        assert!(f.write_all_at(b"x", 0).is_err(), "dead after the cut");
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn sync_tracking_storage_follows_renames_and_restores_recreated_files() {
        let tmp = tempfile::tempdir().unwrap();
        let st = SyncTrackingStorage::new();
        let tmp_name = tmp.path().join("x.tmp");
        let f = st.create(&tmp_name).unwrap();
        f.write_all_at(b"v1", 0).unwrap();
        f.sync().unwrap();
        let x = tmp.path().join("x");
        st.rename(&tmp_name, &x).unwrap();
        f.write_all_at(b"-more", 2).unwrap();
        // Re-created (truncated) without a sync: the old contents come back.
        let y = tmp.path().join("y");
        std::fs::write(&y, b"old").unwrap();
        st.create(&y).unwrap().write_all_at(b"n", 0).unwrap();
        st.power_cut();
        assert_eq!(std::fs::read(&x).unwrap(), b"v1");
        assert_eq!(std::fs::read(&y).unwrap(), b"old");
    }
}
