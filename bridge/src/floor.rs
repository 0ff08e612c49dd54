//! Retention floors for unmirrored data: every mirror task registers the next source offset it
//! still has to mirror, and the partition's retention floor
//! ([`rill_core::broker::Broker::set_retention_floor`]) is the smallest of them, so retention and
//! the disk budget never delete a record some mirror still needs (the node's backlog policy,
//! `rill_core::backlog`, decides what happens when that data grows too large).
//!
//! A task registers as soon as it exists, at the log start (it does not know its resume
//! position before it has reached the target, so everything is held, also while the target was
//! never reachable), moves its position to the resume offset once connected and forward after
//! every acknowledged produce, and its [`FloorGuard`] lifts its share when dropped.
//!
//! While a task sends records (from the read to the acknowledgement) it also holds the
//! partition's in-flight floor ([`FloorGuard::sending`], the smallest such position:
//! `rill_core::log::PartitionLog::set_in_flight_floor`), which the backlog policy `drop_oldest`
//! does not drop past, so every record is either mirrored or counted as dropped, never both.

use rill_core::sync::LockExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use rill_core::broker::Broker;

/// The floors of every mirrored partition of one node.
#[derive(Debug)]
pub struct FloorRegistry {
    broker: Arc<Broker>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// (topic, partition) -> registration id -> next offset to mirror.
    parts: HashMap<(String, i32), BTreeMap<u64, Position>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    /// The next offset to mirror.
    next: i64,
    /// Records from `next` on are being sent.
    sending: bool,
}

/// One mirror task's share of a partition's floor; dropping it unregisters.
#[derive(Debug)]
pub struct FloorGuard {
    registry: Arc<FloorRegistry>,
    topic: String,
    partition: i32,
    id: u64,
}

impl FloorRegistry {
    /// A registry over the node's broker.
    pub fn new(broker: Arc<Broker>) -> Arc<FloorRegistry> {
        Arc::new(FloorRegistry {
            broker,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock_unpoisoned()
    }

    /// Register a mirror task of `topic`/`partition`, holding everything from the log start.
    pub fn register(self: &Arc<Self>, topic: &str, partition: i32) -> FloorGuard {
        let start = self
            .broker
            .partition(topic, partition)
            .map(|log| log.log_start_offset())
            .unwrap_or(0);
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let key = (topic.to_string(), partition);
        inner.parts.entry(key.clone()).or_default().insert(
            id,
            Position {
                next: start,
                sending: false,
            },
        );
        self.apply(&inner, &key);
        FloorGuard {
            registry: Arc::clone(self),
            topic: topic.to_string(),
            partition,
            id,
        }
    }

    /// The current floor of a partition (the smallest registered position), if any.
    pub fn floor(&self, topic: &str, partition: i32) -> Option<i64> {
        let inner = self.lock();
        Self::min(&inner, &(topic.to_string(), partition))
    }

    fn min(inner: &Inner, key: &(String, i32)) -> Option<i64> {
        inner
            .parts
            .get(key)
            .and_then(|m| m.values().map(|p| p.next).min())
    }

    fn min_sending(inner: &Inner, key: &(String, i32)) -> Option<i64> {
        inner
            .parts
            .get(key)
            .and_then(|m| m.values().filter(|p| p.sending).map(|p| p.next).min())
    }

    /// Hand the partition's floors to the broker (under the registry lock, so updates are
    /// applied in order).
    fn apply(&self, inner: &Inner, key: &(String, i32)) {
        let floor = Self::min(inner, key);
        if let Ok(log) = self.broker.partition(&key.0, key.1) {
            log.set_in_flight_floor(Self::min_sending(inner, key));
        }
        if let Err(e) = self.broker.set_retention_floor(&key.0, key.1, floor) {
            tracing::debug!(topic = %key.0, partition = key.1, error = %e, "cannot set retention floor");
        }
    }

    fn set(&self, topic: &str, partition: i32, id: u64, pos: Option<Position>) {
        let mut inner = self.lock();
        let key = (topic.to_string(), partition);
        let Some(m) = inner.parts.get_mut(&key) else {
            return;
        };
        let changed = match pos {
            Some(p) => m.insert(id, p) != Some(p),
            None => m.remove(&id).is_some(),
        };
        if m.is_empty() {
            inner.parts.remove(&key);
        }
        if changed {
            self.apply(&inner, &key);
        }
    }
}

impl FloorGuard {
    /// Everything below `next` is mirrored (or filtered out): the next offset this task needs.
    /// Ends a send ([`Self::sending`]).
    pub fn set(&self, next: i64) {
        self.registry.set(
            &self.topic,
            self.partition,
            self.id,
            Some(Position {
                next,
                sending: false,
            }),
        );
    }

    /// The task is about to read and send records from `from` (its next offset) on: they are
    /// held from `drop_oldest` until [`Self::set`] or until the returned guard is dropped
    /// (a failed or cancelled send), which ends the send at `from`.
    pub fn sending(&self, from: i64) -> Sending<'_> {
        self.registry.set(
            &self.topic,
            self.partition,
            self.id,
            Some(Position {
                next: from,
                sending: true,
            }),
        );
        Sending { guard: self, from }
    }
}

/// A send in progress (see [`FloorGuard::sending`]).
#[derive(Debug)]
pub struct Sending<'a> {
    guard: &'a FloorGuard,
    from: i64,
}

impl Sending<'_> {
    /// The send was acknowledged (or nothing was sent): everything below `next` is mirrored.
    pub fn done(self, next: i64) {
        self.guard.set(next);
        std::mem::forget(self);
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.guard.set(self.from);
    }
}

impl Drop for FloorGuard {
    fn drop(&mut self) {
        self.registry
            .set(&self.topic, self.partition, self.id, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_core::broker::{BrokerConfig, KeySource};
    use std::collections::BTreeMap;

    #[test]
    fn floor_is_the_smallest_position_and_unregistering_lifts_it() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = BrokerConfig::new(tmp.path().join("data"), KeySource::Env("22".repeat(32)));
        let broker = Broker::open(cfg).unwrap();
        broker
            .create_topic("t", 2, &BTreeMap::new(), false)
            .unwrap();
        let log = broker.partition("t", 0).unwrap();
        let reg = FloorRegistry::new(broker.clone());

        let a = reg.register("t", 0);
        assert_eq!(log.retention_floor(), Some(0), "held from the log start");
        a.set(10);
        assert_eq!(log.retention_floor(), Some(10));
        let b = reg.register("t", 0);
        assert_eq!(
            log.retention_floor(),
            Some(0),
            "a second mirror not yet connected"
        );
        b.set(4);
        assert_eq!(reg.floor("t", 0), Some(4));
        a.set(20);
        assert_eq!(log.retention_floor(), Some(4), "the slower mirror decides");
        b.set(30);
        assert_eq!(log.retention_floor(), Some(20));
        drop(a);
        assert_eq!(log.retention_floor(), Some(30));
        assert_eq!(broker.partition("t", 1).unwrap().retention_floor(), None);
        drop(b);
        assert_eq!(log.retention_floor(), None, "no mirror: no floor");
        assert_eq!(reg.floor("t", 0), None);
        // A partition that does not exist is ignored.
        let c = reg.register("missing", 0);
        c.set(5);
        drop(c);
        broker.shutdown().unwrap();
    }

    #[test]
    fn a_send_holds_the_in_flight_floor_until_acknowledged_or_abandoned() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = BrokerConfig::new(tmp.path().join("data"), KeySource::Env("22".repeat(32)));
        let broker = Broker::open(cfg).unwrap();
        broker
            .create_topic("t", 1, &BTreeMap::new(), false)
            .unwrap();
        let log = broker.partition("t", 0).unwrap();
        let reg = FloorRegistry::new(broker.clone());
        let a = reg.register("t", 0);
        let b = reg.register("t", 0);
        a.set(10);
        b.set(20);
        assert_eq!(log.in_flight_floor(), None, "nothing sent yet");
        let sb = b.sending(20);
        assert_eq!(log.in_flight_floor(), Some(20));
        let sa = a.sending(10);
        assert_eq!(log.in_flight_floor(), Some(10), "the lowest send decides");
        sa.done(15);
        assert_eq!(log.in_flight_floor(), Some(20));
        assert_eq!(log.retention_floor(), Some(15));
        // A failed send (the guard dropped) ends the send where it started.
        drop(sb);
        assert_eq!(log.in_flight_floor(), None);
        assert_eq!(log.retention_floor(), Some(15));
        assert_eq!(reg.floor("t", 0), Some(15));
        let sa = a.sending(15);
        drop(sa);
        drop(a);
        drop(b);
        assert_eq!(log.in_flight_floor(), None);
        broker.shutdown().unwrap();
    }
}
