//! One member of a classic group (Kafka's `ClassicGroupMember`): its protocols, its assignment,
//! its session, and the JoinGroup/SyncGroup responses it is waiting for.

use std::collections::BTreeSet;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{JoinResponse, SyncResponse};
use crate::group::config::NEW_MEMBER_JOIN_TIMEOUT_MS;
use crate::group::context::ms;

/// One member of a classic group.
#[derive(Debug)]
pub(crate) struct ClassicGroupMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: u64,
    pub session_timeout_ms: u64,
    pub protocol_type: String,
    /// Supported protocols in preference order, each with its opaque metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// The assignment of the current generation (opaque bytes from the leader).
    pub assignment: Bytes,
    /// Pending JoinGroup response, while the member waits for the rebalance to complete.
    pub join_waiter: Option<oneshot::Sender<JoinResponse>>,
    /// Pending SyncGroup response, while the member waits for the leader's assignment.
    pub sync_waiter: Option<oneshot::Sender<SyncResponse>>,
    /// Time of the last heartbeat (or join/sync), for session expiry.
    pub last_heartbeat: Instant,
    /// Joined but not yet part of a completed generation.
    pub is_new: bool,
    /// The member's JoinGroup version supports `skip_assignment` (v9+).
    pub supports_skip_assignment: bool,
}

impl ClassicGroupMember {
    /// The member is waiting in JoinGroup.
    pub fn awaiting_join(&self) -> bool {
        self.join_waiter.is_some()
    }

    /// The metadata this member sent for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m)
    }

    /// Same protocols and metadata as before (a rejoin that changes nothing).
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// This member's first choice among `candidates`.
    pub fn vote<'a>(&'a self, candidates: &BTreeSet<&str>) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| candidates.contains(name))
    }

    /// Is the member's session still alive at `now`?
    pub fn keep_alive(&self, now: Instant) -> bool {
        if self.awaiting_join() {
            // Waiting in JoinGroup counts as alive; a brand-new member gets a generous bound.
            !self.is_new || self.last_heartbeat + ms(NEW_MEMBER_JOIN_TIMEOUT_MS) > now
        } else {
            self.last_heartbeat + ms(self.session_timeout_ms) > now
        }
    }
}
