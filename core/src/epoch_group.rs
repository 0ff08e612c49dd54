//! A consumer group of the KIP-848 protocol ("group.protocol=consumer"): the coordinator computes
//! the assignment ([`crate::server_assignor`]) and every member converges to it through its
//! heartbeats, advancing its member epoch.
//!
//! Epochs: the group epoch moves whenever membership, subscriptions or the subscribed topics'
//! partitions change; the target assignment is recomputed for that epoch. A member whose epoch is
//! behind first gives up (revokes) partitions it must lose, then moves to the target epoch, and
//! gets the partitions it gains once their previous owner has released them. A partition is
//! therefore never owned by two members at once.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::server_assignor::{assign, AssignableTopic, Assignment, ASSIGNORS};

/// Where a KIP-848 group is (ConsumerGroupDescribe's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochGroupState {
    Empty,
    /// The target assignment is older than the group epoch.
    Assigning,
    /// Members are converging to the target assignment.
    Reconciling,
    Stable,
}

impl EpochGroupState {
    /// Kafka's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            EpochGroupState::Empty => "Empty",
            EpochGroupState::Assigning => "Assigning",
            EpochGroupState::Reconciling => "Reconciling",
            EpochGroupState::Stable => "Stable",
        }
    }
}

/// One member.
#[derive(Debug, Clone)]
pub(crate) struct EpochMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: u64,
    pub subscribed: BTreeSet<String>,
    pub server_assignor: Option<String>,
    pub epoch: i32,
    pub previous_epoch: i32,
    /// What the member owns as far as the coordinator is concerned.
    pub assigned: Assignment,
    /// Partitions the member was told to give up and has not confirmed yet.
    pub pending_revocation: Assignment,
    pub revocation_deadline_ms: Option<u64>,
    pub last_heartbeat_ms: u64,
    /// The assignment last sent to the client.
    pub last_sent: Option<Assignment>,
}

impl EpochMember {
    pub fn new(member_id: &str, now_ms: u64) -> EpochMember {
        EpochMember {
            member_id: member_id.to_string(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: 300_000,
            subscribed: BTreeSet::new(),
            server_assignor: None,
            epoch: 0,
            previous_epoch: -1,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            revocation_deadline_ms: None,
            last_heartbeat_ms: now_ms,
            last_sent: None,
        }
    }

    fn holds(&self, topic: &Uuid, p: i32) -> bool {
        self.assigned.get(topic).is_some_and(|s| s.contains(&p))
            || self
                .pending_revocation
                .get(topic)
                .is_some_and(|s| s.contains(&p))
    }
}

/// A KIP-848 group.
#[derive(Debug, Clone)]
pub(crate) struct EpochGroup {
    pub group_id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, EpochMember>,
    pub target: BTreeMap<String, Assignment>,
    /// The subscribed topics as of the group epoch (name -> id, partitions).
    pub topics: BTreeMap<String, (Uuid, i32)>,
    pub assignor: String,
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = match b.get(t) {
            Some(other) => ps.difference(other).copied().collect(),
            None => ps.clone(),
        };
        if !rest.is_empty() {
            out.insert(*t, rest);
        }
    }
    out
}

fn overlaps(a: &Assignment, b: &Assignment) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|o| !ps.is_disjoint(o)))
}

impl EpochGroup {
    pub fn new(group_id: &str) -> EpochGroup {
        EpochGroup {
            group_id: group_id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            topics: BTreeMap::new(),
            assignor: ASSIGNORS[0].to_string(),
        }
    }

    pub fn state(&self) -> EpochGroupState {
        if self.members.is_empty() {
            EpochGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            EpochGroupState::Assigning
        } else if self.members.values().any(|m| {
            m.epoch != self.assignment_epoch
                || !m.pending_revocation.is_empty()
                || m.assigned != self.target.get(&m.member_id).cloned().unwrap_or_default()
        }) {
            EpochGroupState::Reconciling
        } else {
            EpochGroupState::Stable
        }
    }

    /// Refresh the subscribed topics' metadata; a change bumps the group epoch.
    pub fn refresh_topics(&mut self, resolve: &dyn Fn(&str) -> Option<(Uuid, i32)>) {
        let wanted: BTreeSet<String> = self
            .members
            .values()
            .flat_map(|m| m.subscribed.iter().cloned())
            .collect();
        let now: BTreeMap<String, (Uuid, i32)> = wanted
            .into_iter()
            .filter_map(|t| resolve(&t).map(|meta| (t, meta)))
            .collect();
        if now != self.topics {
            self.topics = now;
            // One new epoch covers this change and any membership change not yet assigned.
            if self.group_epoch <= self.assignment_epoch {
                self.group_epoch += 1;
            }
        }
    }

    /// Recompute the target assignment if the group epoch moved.
    pub fn maybe_assign(&mut self) {
        if self.group_epoch <= self.assignment_epoch {
            return;
        }
        // The assignor most members ask for (ties: the default order).
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max().unwrap_or(0);
        self.assignor = ASSIGNORS
            .iter()
            .find(|a| best > 0 && votes.get(**a) == Some(&best))
            .unwrap_or(&ASSIGNORS[0])
            .to_string();
        let subs: BTreeMap<String, BTreeSet<String>> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.subscribed.clone()))
            .collect();
        let topics: Vec<AssignableTopic> = self
            .topics
            .iter()
            .map(|(name, (id, n))| AssignableTopic {
                name: name.clone(),
                id: *id,
                partitions: *n,
            })
            .collect();
        self.target = assign(&self.assignor, &subs, &topics, &self.target);
        self.assignment_epoch = self.group_epoch;
    }

    /// Move one member towards its target; `owned` is what the client reported owning.
    pub fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now_ms: u64) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let assignment_epoch = self.assignment_epoch;
        let others_hold: Vec<(Uuid, i32)> = {
            let Some(m) = self.members.get(member_id) else {
                return;
            };
            minus(&target, &m.assigned)
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
                .filter(|(t, p)| {
                    self.members
                        .values()
                        .any(|o| o.member_id != member_id && o.holds(t, *p))
                })
                .collect()
        };
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        if !m.pending_revocation.is_empty() {
            match owned {
                Some(owned) if !overlaps(owned, &m.pending_revocation) => {
                    m.pending_revocation.clear();
                    m.revocation_deadline_ms = None;
                }
                _ => return,
            }
        }
        if m.epoch != assignment_epoch {
            let revoke = minus(&m.assigned, &target);
            if !revoke.is_empty() {
                m.assigned = minus(&m.assigned, &revoke);
                m.pending_revocation = revoke;
                m.revocation_deadline_ms = Some(now_ms + m.rebalance_timeout_ms);
                return;
            }
            m.previous_epoch = m.epoch;
            m.epoch = assignment_epoch;
        }
        for (t, ps) in minus(&target, &m.assigned) {
            for p in ps {
                if !others_hold.contains(&(t, p)) {
                    m.assigned.entry(t).or_default().insert(p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid() -> Uuid {
        Uuid::from_u128(7)
    }

    fn resolve(name: &str) -> Option<(Uuid, i32)> {
        (name == "t").then_some((tid(), 4))
    }

    fn join(g: &mut EpochGroup, id: &str) {
        let mut m = EpochMember::new(id, 0);
        m.subscribed = ["t".to_string()].into();
        g.members.insert(id.into(), m);
        g.group_epoch += 1;
    }

    fn owned(g: &EpochGroup, id: &str) -> Assignment {
        g.members[id].assigned.clone()
    }

    #[test]
    fn partitions_move_only_after_revocation() {
        let mut g = EpochGroup::new("g");
        join(&mut g, "a");
        g.refresh_topics(&resolve);
        g.maybe_assign();
        g.reconcile("a", None, 0);
        assert_eq!(owned(&g, "a")[&tid()].len(), 4);
        assert_eq!(g.members["a"].epoch, g.assignment_epoch);
        assert_eq!(g.state(), EpochGroupState::Stable);

        join(&mut g, "b");
        g.refresh_topics(&resolve);
        g.maybe_assign();
        // b is at the new epoch but gets nothing a still holds.
        g.reconcile("b", None, 0);
        assert_eq!(g.members["b"].epoch, g.assignment_epoch);
        assert!(owned(&g, "b").is_empty());
        // a must revoke two partitions first; its epoch stays behind.
        g.reconcile("a", Some(&owned(&g, "a")), 0);
        let a_now = owned(&g, "a");
        assert_eq!(a_now[&tid()].len(), 2);
        assert_ne!(g.members["a"].epoch, g.assignment_epoch);
        assert_eq!(g.state(), EpochGroupState::Reconciling);
        // b still cannot take them: a has not confirmed.
        g.reconcile("b", Some(&Assignment::new()), 0);
        assert!(owned(&g, "b").is_empty());
        // a confirms (owns only what it kept) and moves to the new epoch; then b gets the rest.
        g.reconcile("a", Some(&a_now), 0);
        assert_eq!(g.members["a"].epoch, g.assignment_epoch);
        g.reconcile("b", Some(&Assignment::new()), 0);
        assert_eq!(owned(&g, "b")[&tid()].len(), 2);
        assert!(!overlaps(&owned(&g, "a"), &owned(&g, "b")));
        assert_eq!(g.state(), EpochGroupState::Stable);
    }
}
