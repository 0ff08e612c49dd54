//! Node-level group settings (Kafka's names in the node config) and the limits every group
//! operation checks.

/// Longest accepted group id, in bytes (Kafka has no limit of its own; ids are keys on disk and
/// in logs, so Rill caps them like topic names are capped).
pub const MAX_GROUP_ID_LEN: usize = 255;

/// How long a new member that is waiting in JoinGroup is kept when it stops talking (Kafka's
/// `NewMemberJoinTimeoutMs`).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: u64 = 300_000;

/// Node-level group settings (Kafka names in the node config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: u64,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: u64,
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: u64,
    /// `offsets.retention.minutes`, in milliseconds.
    pub offsets_retention_ms: u64,
    /// `offsets.retention.check.interval.ms`
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups)
    pub consumer_session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups)
    pub consumer_heartbeat_interval_ms: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
        }
    }
}
