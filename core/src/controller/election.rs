//! Leader election and ISR changes of one partition, as pure functions over a
//! [`PartitionRegistration`] and a test of which brokers are eligible (registered, unfenced, not
//! shutting down).
//!
//! Kafka's rules: a leader comes from the ISR (a "clean" election); only when no ISR member is
//! eligible and the topic allows `unclean.leader.election.enable` may any eligible replica lead,
//! with an ISR of itself alone. A broker leaves the ISR when it is fenced, except the last member,
//! which stays so that the partition can be led again, cleanly, when that broker returns. Every
//! change bumps the partition epoch; a leader change also bumps the leader epoch. Epochs never
//! decrease.

use super::command::{ControllerError, ElectionType};
use super::image::{PartitionRegistration, NO_LEADER};

impl PartitionRegistration {
    /// This partition with another leader and ISR, its epochs bumped as Kafka does.
    fn changed(&self, leader: i32, isr: Vec<i32>) -> PartitionRegistration {
        let leader_epoch = if leader != self.leader {
            self.leader_epoch.saturating_add(1)
        } else {
            self.leader_epoch
        };
        PartitionRegistration {
            replicas: self.replicas.clone(),
            isr,
            leader,
            leader_epoch,
            partition_epoch: self.partition_epoch.saturating_add(1),
        }
    }

    /// The first eligible ISR member, in replica order (the preferred replica first).
    fn clean_candidate(&self, eligible: &impl Fn(i32) -> bool) -> Option<i32> {
        self.replicas
            .iter()
            .copied()
            .find(|r| self.isr.contains(r) && eligible(*r))
    }

    /// The first eligible replica, in or out of the ISR.
    fn unclean_candidate(&self, eligible: &impl Fn(i32) -> bool) -> Option<i32> {
        self.replicas.iter().copied().find(|r| eligible(*r))
    }
}

/// `broker` is no longer eligible (fenced, re-registered, shutting down): it leaves the ISR
/// (unless it is the last member) and, if it led, a new leader is elected. `None` if the
/// partition does not change.
pub(crate) fn remove_broker(
    p: &PartitionRegistration,
    broker: i32,
    eligible: impl Fn(i32) -> bool,
    unclean_allowed: bool,
) -> Option<PartitionRegistration> {
    if !p.replicas.contains(&broker) {
        return None;
    }
    let mut isr: Vec<i32> = p.isr.iter().copied().filter(|r| *r != broker).collect();
    if isr.is_empty() {
        isr = p.isr.clone();
    }
    if p.leader != broker {
        return (isr != p.isr).then(|| p.changed(p.leader, isr));
    }
    let shrunk = PartitionRegistration { isr, ..p.clone() };
    let eligible = |r: i32| r != broker && eligible(r);
    if let Some(leader) = shrunk.clean_candidate(&eligible) {
        return Some(p.changed(leader, shrunk.isr));
    }
    if unclean_allowed {
        if let Some(leader) = shrunk.unclean_candidate(&eligible) {
            return Some(p.changed(leader, vec![leader]));
        }
    }
    Some(p.changed(NO_LEADER, shrunk.isr))
}

/// A leaderless partition gets a leader if one is eligible now (after a broker was unfenced).
/// `None` if it already has a leader or still none can lead.
pub(crate) fn elect_if_leaderless(
    p: &PartitionRegistration,
    eligible: impl Fn(i32) -> bool,
    unclean_allowed: bool,
) -> Option<PartitionRegistration> {
    if p.leader != NO_LEADER {
        return None;
    }
    if let Some(leader) = p.clean_candidate(&eligible) {
        return Some(p.changed(leader, p.isr.clone()));
    }
    if unclean_allowed {
        if let Some(leader) = p.unclean_candidate(&eligible) {
            return Some(p.changed(leader, vec![leader]));
        }
    }
    None
}

/// An election asked for by an operator (ElectLeaders).
pub(crate) fn elect(
    p: &PartitionRegistration,
    election: ElectionType,
    eligible: impl Fn(i32) -> bool,
) -> Result<PartitionRegistration, ControllerError> {
    match election {
        ElectionType::Preferred => {
            let preferred = *p
                .replicas
                .first()
                .ok_or(ControllerError::EligibleLeadersNotAvailable)?;
            if p.leader == preferred {
                return Err(ControllerError::ElectionNotNeeded);
            }
            if p.isr.contains(&preferred) && eligible(preferred) {
                Ok(p.changed(preferred, p.isr.clone()))
            } else {
                Err(ControllerError::PreferredLeaderNotAvailable(preferred))
            }
        }
        ElectionType::Unclean => {
            if p.leader != NO_LEADER {
                return Err(ControllerError::ElectionNotNeeded);
            }
            elect_if_leaderless(p, eligible, true)
                .ok_or(ControllerError::EligibleLeadersNotAvailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionRegistration {
        PartitionRegistration {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 5,
            partition_epoch: 9,
        }
    }

    #[test]
    fn fencing_the_leader_elects_the_next_isr_member_and_bumps_both_epochs() {
        let p = part(&[1, 2, 3], &[1, 2, 3], 1);
        let q = remove_broker(&p, 1, |_| true, false).unwrap();
        assert_eq!((q.leader, q.isr.as_slice()), (2, &[2, 3][..]));
        assert_eq!((q.leader_epoch, q.partition_epoch), (6, 10));
    }

    #[test]
    fn a_follower_leaving_the_isr_bumps_only_the_partition_epoch() {
        let p = part(&[1, 2, 3], &[1, 2, 3], 1);
        let q = remove_broker(&p, 3, |_| true, false).unwrap();
        assert_eq!((q.leader, q.isr.as_slice()), (1, &[1, 2][..]));
        assert_eq!((q.leader_epoch, q.partition_epoch), (5, 10));
        // Not in the ISR and not leading: nothing changes.
        assert_eq!(remove_broker(&q, 3, |_| true, false), None);
        // Not a replica at all.
        assert_eq!(remove_broker(&p, 7, |_| true, false), None);
    }

    #[test]
    fn the_last_isr_member_stays_and_the_partition_goes_leaderless_without_unclean_election() {
        let p = part(&[1, 2, 3], &[1], 1);
        let q = remove_broker(&p, 1, |_| true, false).unwrap();
        assert_eq!((q.leader, q.isr.as_slice()), (NO_LEADER, &[1][..]));
        assert_eq!(q.leader_epoch, 6);
        // When 1 comes back it leads again, cleanly.
        let r = elect_if_leaderless(&q, |_| true, false).unwrap();
        assert_eq!((r.leader, r.leader_epoch, r.partition_epoch), (1, 7, 11));
        // While only 2 and 3 are eligible, nothing is elected without unclean election.
        assert_eq!(elect_if_leaderless(&q, |b| b != 1, false), None);
    }

    #[test]
    fn unclean_election_picks_an_out_of_sync_replica_with_an_isr_of_itself() {
        let p = part(&[1, 2, 3], &[1], 1);
        let q = remove_broker(&p, 1, |b| b != 1, true).unwrap();
        assert_eq!((q.leader, q.isr.as_slice()), (2, &[2][..]));
        let leaderless = part(&[1, 2, 3], &[1], NO_LEADER);
        let r = elect(&leaderless, ElectionType::Unclean, |b| b == 3).unwrap();
        assert_eq!((r.leader, r.isr.as_slice()), (3, &[3][..]));
        assert_eq!(
            elect(&leaderless, ElectionType::Unclean, |_| false),
            Err(ControllerError::EligibleLeadersNotAvailable)
        );
        assert_eq!(
            elect(&p, ElectionType::Unclean, |_| true),
            Err(ControllerError::ElectionNotNeeded)
        );
    }

    #[test]
    fn preferred_election_needs_the_first_replica_in_the_isr() {
        let p = part(&[1, 2, 3], &[1, 2, 3], 2);
        let q = elect(&p, ElectionType::Preferred, |_| true).unwrap();
        assert_eq!((q.leader, q.leader_epoch), (1, 6));
        assert_eq!(
            elect(&q, ElectionType::Preferred, |_| true),
            Err(ControllerError::ElectionNotNeeded)
        );
        let out = part(&[1, 2, 3], &[2, 3], 2);
        assert_eq!(
            elect(&out, ElectionType::Preferred, |_| true),
            Err(ControllerError::PreferredLeaderNotAvailable(1))
        );
        assert_eq!(
            elect(&p, ElectionType::Preferred, |b| b != 1),
            Err(ControllerError::PreferredLeaderNotAvailable(1))
        );
    }
}
