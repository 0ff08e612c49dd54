//! Poison-tolerant locking.
//!
//! A panic while a lock is held poisons it. Rill's shared state stays consistent across a panic in
//! a critical section (every mutation is a single assignment or is rebuilt from disk), so a
//! poisoned lock is taken over rather than propagated: one failed request must not take every
//! later caller down with it. This is the one place that decision is made.

use std::sync::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// Locking that ignores poisoning (see the module doc).
pub trait LockExt<T: ?Sized> {
    /// Locks, taking over a poisoned lock.
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Read/write locking that ignores poisoning (see the module doc).
pub trait RwLockExt<T: ?Sized> {
    /// Takes a shared read lock, taking over a poisoned lock.
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T>;
    /// Takes the exclusive write lock, taking over a poisoned lock.
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockExt<T> for RwLock<T> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The value inside a mutex owned exclusively, taking over a poisoned one.
pub fn get_mut_unpoisoned<T: ?Sized>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut().unwrap_or_else(|p| p.into_inner())
}

/// Waits on a condition variable for at most `timeout`, taking over a poisoned lock.
pub fn wait_timeout_unpoisoned<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> MutexGuard<'a, T> {
    match cv.wait_timeout(guard, timeout) {
        Ok((g, _)) => g,
        Err(p) => p.into_inner().0,
    }
}

/// Waits on a condition variable, taking over a poisoned lock.
pub fn wait_unpoisoned<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn poisoned_mutex_is_taken_over() {
        let m = Arc::new(Mutex::new(1));
        let m2 = Arc::clone(&m);
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *m.lock_unpoisoned() += 1;
        assert_eq!(*m.lock_unpoisoned(), 2);
    }

    #[test]
    fn poisoned_rwlock_is_taken_over() {
        let l = Arc::new(RwLock::new(1));
        let l2 = Arc::clone(&l);
        let _ = std::thread::spawn(move || {
            let _g = l2.write().unwrap();
            panic!("poison it");
        })
        .join();
        *l.write_unpoisoned() += 1;
        assert_eq!(*l.read_unpoisoned(), 2);
    }
}
