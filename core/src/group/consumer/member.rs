//! One member of a KIP-848 consumer group: its subscription, member epoch, what it owns, what it
//! must still revoke, and its session.

use std::collections::BTreeSet;
use std::time::Instant;

use uuid::Uuid;

use super::assignor::Assignment;

/// One member of a consumer group (Kafka's `ConsumerGroupMember`).
#[derive(Debug, Clone)]
pub(crate) struct ConsumerGroupMember {
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
    /// When the member is removed unless it has confirmed the revocation.
    pub revocation_deadline: Option<Instant>,
    pub last_heartbeat: Instant,
    /// The assignment last sent to the client.
    pub last_sent: Option<Assignment>,
}

impl ConsumerGroupMember {
    /// A member joining at `now` (epoch 0, nothing assigned).
    pub fn new(member_id: &str, now: Instant) -> ConsumerGroupMember {
        ConsumerGroupMember {
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
            revocation_deadline: None,
            last_heartbeat: now,
            last_sent: None,
        }
    }

    /// Does the member hold (or still release) this partition?
    pub fn holds(&self, topic: &Uuid, p: i32) -> bool {
        self.assigned.get(topic).is_some_and(|s| s.contains(&p))
            || self
                .pending_revocation
                .get(topic)
                .is_some_and(|s| s.contains(&p))
    }
}
