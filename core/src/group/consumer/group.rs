//! A consumer group of the KIP-848 protocol ("group.protocol=consumer"), Kafka's `ConsumerGroup`:
//! the coordinator computes the assignment ([`super::assignor`]) and every member converges to it through its
//! heartbeats, advancing its member epoch.
//!
//! Epochs: the group epoch moves whenever membership, subscriptions or the subscribed topics'
//! partitions change; the target assignment is recomputed for that epoch. A member whose epoch is
//! behind first gives up (revokes) partitions it must lose, then moves to the target epoch, and
//! gets the partitions it gains once their previous owner has released them. A partition is
//! therefore never owned by two members at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use uuid::Uuid;

use super::assignor::{assign, AssignableTopic, Assignment, ASSIGNORS};
use super::member::ConsumerGroupMember;
use super::{
    ConsumerGroupDescription, ConsumerHeartbeatRequest, ConsumerHeartbeatResponse,
    ConsumerMemberDescription,
};
use crate::group::context::{ms, OpContext};
use crate::group::error::GroupError;

/// Where a consumer group is (Kafka's `ConsumerGroupState`, as ConsumerGroupDescribe names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    /// The target assignment is older than the group epoch.
    Assigning,
    /// Members are converging to the target assignment.
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    /// Kafka's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// A KIP-848 consumer group.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerGroup {
    pub group_id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerGroupMember>,
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

impl ConsumerGroup {
    pub fn new(group_id: &str) -> ConsumerGroup {
        ConsumerGroup {
            group_id: group_id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            topics: BTreeMap::new(),
            assignor: ASSIGNORS[0].to_string(),
        }
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self.members.values().any(|m| {
            m.epoch != self.assignment_epoch
                || !m.pending_revocation.is_empty()
                || m.assigned != self.target.get(&m.member_id).cloned().unwrap_or_default()
        }) {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
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
    pub fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: Instant) {
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
                    m.revocation_deadline = None;
                }
                _ => return,
            }
        }
        if m.epoch != assignment_epoch {
            let revoke = minus(&m.assigned, &target);
            if !revoke.is_empty() {
                m.assigned = minus(&m.assigned, &revoke);
                m.pending_revocation = revoke;
                m.revocation_deadline = Some(now + ms(m.rebalance_timeout_ms));
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

impl ConsumerGroup {
    /// ConsumerGroupHeartbeat of a member with epoch >= 0: join (epoch 0), heartbeat or
    /// acknowledge; moves the member towards its target assignment.
    pub fn heartbeat(
        &mut self,
        ctx: &OpContext,
        req: &ConsumerHeartbeatRequest,
        resolve: &dyn Fn(&str) -> Option<(Uuid, i32)>,
    ) -> Result<ConsumerHeartbeatResponse, GroupError> {
        let interval = i32::try_from(ctx.config.consumer_heartbeat_interval_ms).unwrap_or(i32::MAX);
        let member_id = if req.member_id.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            req.member_id.clone()
        };
        if req.member_epoch == 0 {
            let subs = req.subscribed_topic_names.as_ref().ok_or_else(|| {
                GroupError::InvalidRequest("a joining member must send its subscription".into())
            })?;
            // A rejoin (after being fenced) starts over: its old partitions are released.
            self.members.remove(&member_id);
            let mut m = ConsumerGroupMember::new(&member_id, ctx.now);
            m.subscribed = subs.iter().cloned().collect();
            m.server_assignor = req.server_assignor.clone();
            m.instance_id = req.instance_id.clone();
            m.rack_id = req.rack_id.clone();
            m.client_id = req.client_id.clone();
            m.client_host = req.client_host.clone();
            if req.rebalance_timeout_ms >= 0 {
                m.rebalance_timeout_ms = req.rebalance_timeout_ms as u64;
            }
            self.members.insert(member_id.clone(), m);
            self.group_epoch += 1;
        } else {
            let m = self
                .members
                .get_mut(&member_id)
                .ok_or(GroupError::UnknownMemberId)?;
            if req.member_epoch != m.epoch {
                // Tolerate a member that missed our last response (it still has the previous
                // epoch and what it owned then); anything else is a zombie.
                let lost_response = req.member_epoch == m.previous_epoch
                    && req.owned.as_ref().is_none_or(|o| *o == m.assigned);
                if !lost_response {
                    return Err(GroupError::FencedMemberEpoch);
                }
            }
            m.last_heartbeat = ctx.now;
            let mut bump = false;
            if let Some(subs) = &req.subscribed_topic_names {
                let set: BTreeSet<String> = subs.iter().cloned().collect();
                if set != m.subscribed {
                    m.subscribed = set;
                    bump = true;
                }
            }
            if req.server_assignor.is_some() && req.server_assignor != m.server_assignor {
                m.server_assignor = req.server_assignor.clone();
                bump = true;
            }
            if req.rebalance_timeout_ms >= 0 {
                m.rebalance_timeout_ms = req.rebalance_timeout_ms as u64;
            }
            if bump {
                self.group_epoch += 1;
            }
        }
        self.refresh_topics(resolve);
        self.maybe_assign();
        self.reconcile(&member_id, req.owned.as_ref(), ctx.now);
        let m = self
            .members
            .get_mut(&member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let changed = req.member_epoch == 0
            || m.last_sent.as_ref() != Some(&m.assigned)
            || req.owned.as_ref().is_some_and(|o| *o != m.assigned);
        let assignment = if changed {
            m.last_sent = Some(m.assigned.clone());
            Some(m.assigned.clone())
        } else {
            None
        };
        Ok(ConsumerHeartbeatResponse {
            member_id,
            member_epoch: m.epoch,
            heartbeat_interval_ms: interval,
            assignment,
        })
    }

    /// A member leaves (epoch -1 or -2).
    pub fn leave(&mut self, member_id: &str) -> Result<(), GroupError> {
        self.members
            .remove(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        self.group_epoch += 1;
        Ok(())
    }

    /// Remove members whose session ended or who did not revoke in time.
    pub fn expire_members(&mut self, ctx: &OpContext) {
        let session = ms(ctx.config.consumer_session_timeout_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.last_heartbeat + session <= ctx.now
                    || m.revocation_deadline.is_some_and(|d| d <= ctx.now)
            })
            .map(|m| m.member_id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(group = %self.group_id, member = %id, "consumer group member expired");
                self.members.remove(id);
            }
            self.group_epoch += 1;
        }
    }

    /// A commit from a member must carry its current member epoch (Kafka's
    /// `validateOffsetCommit` of a consumer group).
    pub fn validate_offset_commit(
        &mut self,
        ctx: &OpContext,
        member_epoch: i32,
        member_id: &str,
    ) -> Result<(), GroupError> {
        let m = self
            .members
            .get_mut(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        if member_epoch != m.epoch {
            return Err(GroupError::StaleMemberEpoch);
        }
        m.last_heartbeat = ctx.now;
        Ok(())
    }

    /// ConsumerGroupDescribe's view of the group.
    pub fn describe(&self) -> ConsumerGroupDescription {
        ConsumerGroupDescription {
            group_id: self.group_id.clone(),
            state: self.state().as_str(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor.clone(),
            members: self
                .members
                .values()
                .map(|m| ConsumerMemberDescription {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.subscribed.iter().cloned().collect(),
                    assignment: m.assigned.clone(),
                    target_assignment: self.target.get(&m.member_id).cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn tid() -> Uuid {
        Uuid::from_u128(7)
    }

    fn resolve(name: &str) -> Option<(Uuid, i32)> {
        (name == "t").then_some((tid(), 4))
    }

    fn join(g: &mut ConsumerGroup, id: &str) {
        let mut m = ConsumerGroupMember::new(id, ManualClock::new().now());
        m.subscribed = ["t".to_string()].into();
        g.members.insert(id.into(), m);
        g.group_epoch += 1;
    }

    fn owned(g: &ConsumerGroup, id: &str) -> Assignment {
        g.members[id].assigned.clone()
    }

    #[test]
    fn partitions_move_only_after_revocation() {
        let now = ManualClock::new().now();
        let mut g = ConsumerGroup::new("g");
        join(&mut g, "a");
        g.refresh_topics(&resolve);
        g.maybe_assign();
        g.reconcile("a", None, now);
        assert_eq!(owned(&g, "a")[&tid()].len(), 4);
        assert_eq!(g.members["a"].epoch, g.assignment_epoch);
        assert_eq!(g.state(), ConsumerGroupState::Stable);

        join(&mut g, "b");
        g.refresh_topics(&resolve);
        g.maybe_assign();
        // b is at the new epoch but gets nothing a still holds.
        g.reconcile("b", None, now);
        assert_eq!(g.members["b"].epoch, g.assignment_epoch);
        assert!(owned(&g, "b").is_empty());
        // a must revoke two partitions first; its epoch stays behind.
        g.reconcile("a", Some(&owned(&g, "a")), now);
        let a_now = owned(&g, "a");
        assert_eq!(a_now[&tid()].len(), 2);
        assert_ne!(g.members["a"].epoch, g.assignment_epoch);
        assert_eq!(g.state(), ConsumerGroupState::Reconciling);
        // b still cannot take them: a has not confirmed.
        g.reconcile("b", Some(&Assignment::new()), now);
        assert!(owned(&g, "b").is_empty());
        // a confirms (owns only what it kept) and moves to the new epoch; then b gets the rest.
        g.reconcile("a", Some(&a_now), now);
        assert_eq!(g.members["a"].epoch, g.assignment_epoch);
        g.reconcile("b", Some(&Assignment::new()), now);
        assert_eq!(owned(&g, "b")[&tid()].len(), 2);
        assert!(!overlaps(&owned(&g, "a"), &owned(&g, "b")));
        assert_eq!(g.state(), ConsumerGroupState::Stable);
    }
}
