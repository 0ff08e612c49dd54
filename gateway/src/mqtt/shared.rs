//! Shared subscriptions (`$share/{group}/{filter}`): the members of a group split the matching
//! messages, each message going to one member. The group reads the log with one set of
//! cursors; a member's unacknowledged QoS 1/2 messages go back to the group when it leaves and
//! are handed to another member. The group's durable cursors are kept in the session store.

use rill_core::sync::LockExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use super::records::StoredRecord;
use super::session_store::Cursor;
use super::source::Source;
use super::MqttServer;

/// A message claimed by a member.
pub struct Claim {
    pub source: usize,
    pub record: StoredRecord,
}

struct GroupState {
    sources: Vec<Source>,
    /// Offsets claimed by members: (source, offset) -> member.
    claimed: BTreeMap<(usize, i64), u64>,
    /// Offsets to hand out again (their member left before acknowledging).
    redeliver: BTreeSet<(usize, i64)>,
    members: HashMap<u64, Arc<Notify>>,
    dirty: bool,
}

/// One shared subscription group.
pub struct SharedGroup {
    /// `group/filter`, the store key.
    pub key: String,
    /// The topic filter.
    pub filter: String,
    state: Mutex<GroupState>,
}

/// All groups of the node.
#[derive(Default)]
pub struct SharedGroups {
    groups: Mutex<HashMap<String, Weak<SharedGroup>>>,
}

impl SharedGroups {
    /// The group for `group` + `filter`, created (with its stored cursors) if needed.
    pub fn join(
        &self,
        server: &MqttServer,
        group: &str,
        filter: &str,
        member: u64,
        notify: Arc<Notify>,
    ) -> Arc<SharedGroup> {
        let key = format!("{group}/{filter}");
        let mut groups = self.groups.lock_unpoisoned();
        let g = match groups.get(&key).and_then(Weak::upgrade) {
            Some(g) => g,
            None => {
                let g = Arc::new(SharedGroup {
                    key: key.clone(),
                    filter: filter.to_string(),
                    state: Mutex::new(GroupState {
                        sources: Vec::new(),
                        claimed: BTreeMap::new(),
                        redeliver: BTreeSet::new(),
                        members: HashMap::new(),
                        dirty: false,
                    }),
                });
                let stored = server.sessions.load_shared(&key).unwrap_or_else(|e| {
                    tracing::warn!(group = %key, error = %e, "shared subscription cursors unreadable");
                    Vec::new()
                });
                g.refresh(server, Some(&stored));
                groups.insert(key, Arc::downgrade(&g));
                g
            }
        };
        g.lock().members.insert(member, notify);
        g
    }
}

impl SharedGroup {
    fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock_unpoisoned()
    }

    /// Picks up log partitions created since the last call. With `stored` (first call) sources
    /// start at their stored cursor, else at the log end; later discoveries start at the log
    /// start.
    pub fn refresh(&self, server: &MqttServer, stored: Option<&[Cursor]>) {
        let mut st = self.lock();
        let found = server.discover(&self.filter);
        for (topic, partition, log) in found {
            if st
                .sources
                .iter()
                .any(|s| s.topic == topic && s.partition == partition)
            {
                continue;
            }
            let start = match stored {
                Some(cursors) => cursors
                    .iter()
                    .find(|c| c.topic == topic && c.partition == partition)
                    .map(|c| c.next)
                    .unwrap_or_else(|| log.log_end_offset()),
                None => log.log_start_offset(),
            };
            st.sources.push(Source::new(topic, partition, log, start));
            st.dirty = true;
        }
    }

    /// Watch receivers of the group's partitions (members wake on them).
    pub fn logs(&self) -> Vec<(String, i32, Arc<rill_core::log::PartitionLog>)> {
        self.lock()
            .sources
            .iter()
            .map(|s| (s.topic.clone(), s.partition, s.log.clone()))
            .collect()
    }

    /// Claims up to `max` records for `member`: redeliveries first, then new records.
    pub fn claim(&self, member: u64, max: usize) -> Vec<Claim> {
        let mut st = self.lock();
        let mut out = Vec::new();
        while out.len() < max {
            let Some((src, offset)) = st.redeliver.pop_first() else {
                break;
            };
            let source = &mut st.sources[src];
            let saved = source.next_read;
            source.next_read = offset;
            let rec = source
                .fetch()
                .ok()
                .and_then(|rs| rs.into_iter().find(|r| r.offset == offset));
            source.next_read = saved;
            if let Some(record) = rec {
                st.claimed.insert((src, offset), member);
                out.push(Claim {
                    source: src,
                    record,
                });
            }
        }
        for src in 0..st.sources.len() {
            while out.len() < max && st.sources[src].has_more() {
                let recs = match st.sources[src].fetch() {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(group = %self.key, error = %e, "shared subscription read failed");
                        break;
                    }
                };
                if recs.is_empty() {
                    break;
                }
                for record in recs {
                    if out.len() >= max {
                        break;
                    }
                    st.sources[src].next_read = record.offset + 1;
                    st.claimed.insert((src, record.offset), member);
                    out.push(Claim {
                        source: src,
                        record,
                    });
                }
            }
        }
        if !out.is_empty() {
            st.dirty = true;
        }
        out
    }

    /// The member acknowledged (or will never be sent) this record.
    pub fn ack(&self, src: usize, offset: i64) {
        let mut st = self.lock();
        st.claimed.remove(&(src, offset));
        st.dirty = true;
    }

    /// A member left: its claims go back to the group and the others are woken.
    pub fn leave(&self, member: u64) {
        let mut st = self.lock();
        st.members.remove(&member);
        let mine: Vec<(usize, i64)> = st
            .claimed
            .iter()
            .filter(|(_, m)| **m == member)
            .map(|(k, _)| *k)
            .collect();
        for k in mine {
            st.claimed.remove(&k);
            st.redeliver.insert(k);
        }
        st.dirty = true;
        for n in st.members.values() {
            n.notify_one();
        }
    }

    /// Durable cursors if they changed since the last call.
    pub fn take_cursors(&self) -> Option<Vec<Cursor>> {
        let mut st = self.lock();
        if !st.dirty {
            return None;
        }
        st.dirty = false;
        let mut out = Vec::new();
        for (i, s) in st.sources.iter().enumerate() {
            let mut next = s.next_read;
            let lowest_claim = st.claimed.range((i, i64::MIN)..=(i, i64::MAX)).next();
            if let Some(((_, o), _)) = lowest_claim {
                next = next.min(*o);
            }
            if let Some((_, o)) = st.redeliver.range((i, i64::MIN)..=(i, i64::MAX)).next() {
                next = next.min(*o);
            }
            out.push(Cursor {
                topic: s.topic.clone(),
                partition: s.partition,
                next,
            });
        }
        Some(out)
    }

    /// Whether any partition has records not yet handed out.
    pub fn has_work(&self) -> bool {
        let st = self.lock();
        !st.redeliver.is_empty() || st.sources.iter().any(|s| s.has_more())
    }
}
