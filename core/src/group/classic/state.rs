//! Where a classic group is in the rebalance protocol (Kafka's `ClassicGroupState`): an enum whose
//! variants carry the data that exists only in that state (the join deadline and the initial-delay
//! window of PreparingRebalance, the sync deadline of CompletingRebalance), and each state's valid
//! previous states, which [`super::group::ClassicGroup::transition_to`] checks.

use std::fmt;
use std::time::Instant;

/// Kafka's names of the classic group states (shown by ListGroups and DescribeGroups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClassicGroupStateName {
    /// No members; the group may still hold committed offsets.
    Empty,
    /// Waiting for members to (re)join before a new generation is formed.
    PreparingRebalance,
    /// The generation is formed; waiting for the leader's assignment in SyncGroup.
    CompletingRebalance,
    /// Every member has its assignment; heartbeats keep it alive.
    Stable,
    /// The group is being deleted (removed from the coordinator right after).
    Dead,
}

impl ClassicGroupStateName {
    const ALL: [ClassicGroupStateName; 5] = [
        ClassicGroupStateName::Empty,
        ClassicGroupStateName::PreparingRebalance,
        ClassicGroupStateName::CompletingRebalance,
        ClassicGroupStateName::Stable,
        ClassicGroupStateName::Dead,
    ];

    /// Kafka's spelling of the state.
    pub fn as_str(&self) -> &'static str {
        match self {
            ClassicGroupStateName::Empty => "Empty",
            ClassicGroupStateName::PreparingRebalance => "PreparingRebalance",
            ClassicGroupStateName::CompletingRebalance => "CompletingRebalance",
            ClassicGroupStateName::Stable => "Stable",
            ClassicGroupStateName::Dead => "Dead",
        }
    }

    /// Parse Kafka's spelling (case-insensitive, as ListGroups' states filter is).
    pub fn parse(s: &str) -> Option<ClassicGroupStateName> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// The states a group may enter this state from (Kafka's `validPreviousStates`).
    pub fn valid_previous_states(&self) -> &'static [ClassicGroupStateName] {
        use ClassicGroupStateName::*;
        match self {
            Empty => &[PreparingRebalance],
            PreparingRebalance => &[Stable, CompletingRebalance, Empty],
            CompletingRebalance => &[PreparingRebalance],
            Stable => &[CompletingRebalance],
            Dead => &[Stable, PreparingRebalance, CompletingRebalance, Empty, Dead],
        }
    }
}

impl fmt::Display for ClassicGroupStateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classic group's state, with the data of that state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClassicGroupState {
    Empty,
    PreparingRebalance(PreparingRebalance),
    CompletingRebalance {
        /// When members that have not sent SyncGroup are removed (Kafka's pending-sync timeout:
        /// the rebalance timeout).
        sync_deadline: Instant,
    },
    Stable,
    Dead,
}

impl ClassicGroupState {
    /// Kafka's name of the state.
    pub fn name(&self) -> ClassicGroupStateName {
        match self {
            ClassicGroupState::Empty => ClassicGroupStateName::Empty,
            ClassicGroupState::PreparingRebalance(_) => ClassicGroupStateName::PreparingRebalance,
            ClassicGroupState::CompletingRebalance { .. } => {
                ClassicGroupStateName::CompletingRebalance
            }
            ClassicGroupState::Stable => ClassicGroupStateName::Stable,
            ClassicGroupState::Dead => ClassicGroupStateName::Dead,
        }
    }
}

/// The data of PreparingRebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreparingRebalance {
    /// When the join phase stops waiting for members that did not rejoin (or, during the initial
    /// delay, when the delay window ends).
    pub join_deadline: Instant,
    /// For a group formed from Empty: the running `group.initial.rebalance.delay.ms` window.
    pub initial_delay: Option<InitialDelay>,
}

/// The running `group.initial.rebalance.delay.ms` window of a group formed from Empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InitialDelay {
    /// The length of the current window.
    pub delay_ms: u64,
    /// How much of the rebalance timeout remains for further extensions.
    pub remaining_ms: u64,
    /// A member joined during the current window (extends it once more).
    pub new_member_added: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_previous_states_are_kafkas() {
        use ClassicGroupStateName::*;
        let allowed = |to: ClassicGroupStateName, from| to.valid_previous_states().contains(&from);
        assert!(allowed(PreparingRebalance, Empty));
        assert!(allowed(CompletingRebalance, PreparingRebalance));
        assert!(allowed(Stable, CompletingRebalance));
        assert!(allowed(Empty, PreparingRebalance));
        assert!(!allowed(Stable, PreparingRebalance));
        assert!(!allowed(CompletingRebalance, Stable));
        assert!(!allowed(Empty, Stable));
        assert!(!allowed(PreparingRebalance, PreparingRebalance));
        assert!(ClassicGroupStateName::ALL.iter().all(|s| allowed(Dead, *s)));
        assert_eq!(ClassicGroupStateName::parse("stable"), Some(Stable));
        assert_eq!(ClassicGroupStateName::parse("Assigning"), None);
    }
}
