//! Failure injection for the fault tests (issue 11), compiled in only with the cargo feature
//! `failpoints`, which is refused in release builds (a `compile_error!` below), so a shipped binary
//! can never break itself on purpose.
//!
//! A failpoint binary behaves exactly like a normal one until the environment variable
//! `RILL_FAILPOINTS` names failpoints, comma-separated, each `name` or `name=value`:
//! - `power_cut_after_acks=N`: the storage layer remembers each log file's last synced state
//!   ([`crate::io::SyncTrackingStorage`]); shortly after the node has acknowledged `N` produce
//!   requests every file is reverted to that state and the process exits at once with
//!   [`POWER_CUT_EXIT_CODE`], as if the power had been cut (dropping the page cache cannot
//!   simulate this: it never discards dirty pages).
//! - `power_cut_on_sigusr1`: the same power cut, when the process receives SIGUSR1 (a test
//!   cuts the power of chosen nodes at a chosen moment).
//! - `skip_follower_fsync`: followers do not fsync what they fetched (breaks the durability
//!   contract on purpose; the fault suite must catch it).
//! - `leader_local_isr_shrink`: a leader shrinks its ISR by itself instead of through the
//!   controller (breaks the ISR contract on purpose; the fault suite must catch it).
//! - `stall_maintenance_while=PATH`: while the file `PATH` exists, the storage maintenance thread
//!   is stuck (it runs no pass and stops marking its liveness, as on a disk that hangs), so the
//!   systemd watchdog pings must stop; it carries on when the file is removed.
//! - `offset_commit_acks_leader`: a cluster's group coordinator acknowledges an offset commit
//!   before it is replicated (breaks the acks=all contract of commits on purpose).
//! - `skip_offsets_load`: a node that becomes a group coordinator does not replay
//!   `__consumer_offsets` (loses every committed offset on failover, on purpose).
//! - `mqtt_will_in_memory_only`: an MQTT will waiting out its Will Delay Interval is not saved
//!   with its session (a restart drops it, on purpose; the will fault test must catch it).
//! - `key_rotate_crash_after=N`: a master key rotation exits the process (with
//!   [`POWER_CUT_EXIT_CODE`]) right after its step N (`crate::key_rotation`).
//! - `key_rotate_without_journal`: a master key rotation writes no journal (breaks crash safety
//!   on purpose: an interrupted rotation leaves data under two keys; the fault test must see it).
//! - `slow_fsync_ms=N`: every fsync of a log file takes N ms longer ([`crate::io::SlowSyncStorage`]:
//!   a slow disk; appends pile up waiting for durability, the memory budget test's load).
//! - `memory_budget_off`: the gateway's memory budget is unlimited whatever the configuration says
//!   (breaks the budget on purpose; the memory budget test must see the RSS grow).
//! - `tls_ignore_crls`: client certificate verifiers are built without the `crl_files` (revoked
//!   certificates are accepted, on purpose; the mTLS test must catch it).
//!
//! Without the feature every query answers "not set" and the code around it is dead.

#[cfg(all(feature = "failpoints", not(debug_assertions)))]
compile_error!(
    "the `failpoints` feature breaks durability on purpose and is for debug test builds only"
);

/// The environment variable naming the active failpoints.
pub const ENV: &str = "RILL_FAILPOINTS";
/// Exit code of a simulated power cut.
pub const POWER_CUT_EXIT_CODE: i32 = 86;
/// Revert to synced state and exit after this many acknowledged produce requests.
pub const POWER_CUT_AFTER_ACKS: &str = "power_cut_after_acks";
/// Revert to synced state and exit on SIGUSR1.
pub const POWER_CUT_ON_SIGUSR1: &str = "power_cut_on_sigusr1";
/// Followers skip the fsync before their next fetch.
pub const SKIP_FOLLOWER_FSYNC: &str = "skip_follower_fsync";
/// Leaders shrink their ISR locally, without the controller.
pub const LEADER_LOCAL_ISR_SHRINK: &str = "leader_local_isr_shrink";
/// The maintenance thread is stuck while the file named by the value exists.
pub const STALL_MAINTENANCE_WHILE: &str = "stall_maintenance_while";
/// A cluster's group coordinator acknowledges offset commits once durable on the leader, before
/// replication (acks=1 instead of acks=all).
pub const OFFSET_COMMIT_ACKS_LEADER: &str = "offset_commit_acks_leader";
/// A new group coordinator does not replay its `__consumer_offsets` partition (starts empty).
pub const SKIP_OFFSETS_LOAD: &str = "skip_offsets_load";
/// MQTT wills waiting out their delay are kept in memory only, not with their session.
pub const MQTT_WILL_IN_MEMORY_ONLY: &str = "mqtt_will_in_memory_only";
/// A master key rotation exits right after step N.
pub const KEY_ROTATE_CRASH_AFTER: &str = "key_rotate_crash_after";
/// A master key rotation skips its journal.
pub const KEY_ROTATE_WITHOUT_JOURNAL: &str = "key_rotate_without_journal";
/// Every fsync of a log file is delayed by this many milliseconds.
pub const SLOW_FSYNC_MS: &str = "slow_fsync_ms";
/// The gateway's memory budget is unlimited.
pub const MEMORY_BUDGET_OFF: &str = "memory_budget_off";
/// Client certificate verifiers ignore the configured certificate revocation lists.
pub const TLS_IGNORE_CRLS: &str = "tls_ignore_crls";

#[cfg(feature = "failpoints")]
mod active {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, OnceLock};

    use crate::io::SyncTrackingStorage;

    fn parse(spec: &str) -> BTreeMap<String, Option<String>> {
        spec.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
                None => (s.to_string(), None),
            })
            .collect()
    }

    pub(super) fn points() -> &'static BTreeMap<String, Option<String>> {
        static POINTS: OnceLock<BTreeMap<String, Option<String>>> = OnceLock::new();
        POINTS.get_or_init(|| {
            let spec = std::env::var(super::ENV).unwrap_or_default();
            let points = parse(&spec);
            if !points.is_empty() {
                tracing::warn!(failpoints = %spec, "FAILPOINTS ACTIVE: this process breaks itself on purpose");
            }
            points
        })
    }

    pub(super) fn tracker() -> &'static OnceLock<Arc<SyncTrackingStorage>> {
        static TRACKER: OnceLock<Arc<SyncTrackingStorage>> = OnceLock::new();
        &TRACKER
    }

    pub(super) static ACKS: AtomicU64 = AtomicU64::new(0);

    pub(super) fn count_ack() -> u64 {
        ACKS.fetch_add(1, Ordering::AcqRel) + 1
    }

    #[cfg(test)]
    pub(super) fn parse_for_test(spec: &str) -> BTreeMap<String, Option<String>> {
        parse(spec)
    }
}

/// Whether the failpoint `name` is active.
pub fn is_set(name: &str) -> bool {
    #[cfg(feature = "failpoints")]
    {
        active::points().contains_key(name)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        false
    }
}

/// The numeric value of the failpoint `name` (`name=N`), if it is active with one.
pub fn value(name: &str) -> Option<u64> {
    #[cfg(feature = "failpoints")]
    {
        active::points()
            .get(name)
            .and_then(|v| v.as_deref())
            .and_then(|v| v.parse().ok())
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        None
    }
}

/// The text value of the failpoint `name` (`name=TEXT`), if it is active with one.
pub fn text(name: &str) -> Option<String> {
    #[cfg(feature = "failpoints")]
    {
        active::points().get(name).and_then(Clone::clone)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        None
    }
}

/// Whether the storage maintenance thread must be stuck now: under
/// `stall_maintenance_while=PATH`, while the file `PATH` exists. The thread then waits without
/// marking its liveness until this turns false or the node stops.
pub fn maintenance_stalled() -> bool {
    #[cfg(feature = "failpoints")]
    {
        if let Some(path) = text(STALL_MAINTENANCE_WHILE) {
            return std::path::Path::new(&path).exists();
        }
    }
    false
}

/// The storage the node's logs use: the real file system, or under `power_cut_after_acks` the
/// same file system through a [`crate::io::SyncTrackingStorage`] that can revert it; under
/// `slow_fsync_ms=N` either one with every file fsync N ms slower.
pub fn log_storage() -> std::sync::Arc<dyn crate::io::Storage> {
    #[cfg(feature = "failpoints")]
    {
        let base: std::sync::Arc<dyn crate::io::Storage> =
            if value(POWER_CUT_AFTER_ACKS).is_some() || is_set(POWER_CUT_ON_SIGUSR1) {
                active::tracker()
                    .get_or_init(|| std::sync::Arc::new(crate::io::SyncTrackingStorage::new()))
                    .clone()
            } else {
                std::sync::Arc::new(crate::io::OsStorage)
            };
        match value(SLOW_FSYNC_MS) {
            Some(ms) => std::sync::Arc::new(crate::io::SlowSyncStorage::new(
                base,
                std::time::Duration::from_millis(ms),
            )),
            None => base,
        }
    }
    #[cfg(not(feature = "failpoints"))]
    {
        std::sync::Arc::new(crate::io::OsStorage)
    }
}

/// How long after the N-th acknowledgement the power is cut: long enough for that response to
/// reach the client, and every acknowledgement sent meanwhile must be durable too.
pub const POWER_CUT_DELAY_MS: u64 = 100;

/// The node is about to send a produce response acknowledging records. Under
/// `power_cut_after_acks=N`, the N-th call schedules the power cut: [`POWER_CUT_DELAY_MS`] later
/// every tracked file is reverted to its last synced state and the process exits with
/// [`POWER_CUT_EXIT_CODE`].
pub fn acknowledged() {
    #[cfg(feature = "failpoints")]
    {
        let Some(limit) = value(POWER_CUT_AFTER_ACKS) else {
            return;
        };
        if active::count_ack() != limit {
            return;
        }
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(POWER_CUT_DELAY_MS));
            power_cut(&format!("{POWER_CUT_AFTER_ACKS}={limit}"));
        });
    }
}

/// Cut the power now (failpoint builds; `why` names the trigger in the message): revert every
/// tracked file to its last synced state and exit with [`POWER_CUT_EXIT_CODE`]. Without the
/// feature it does nothing.
pub fn power_cut(why: &str) {
    #[cfg(feature = "failpoints")]
    {
        let reverted = active::tracker().get().map_or(0, |t| t.power_cut());
        eprintln!("failpoint {why}: power cut, {reverted} files reverted to their synced state");
        std::process::exit(POWER_CUT_EXIT_CODE);
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = why;
    }
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    #[test]
    fn specs_parse() {
        let p = super::active::parse_for_test(
            " power_cut_after_acks=5, skip_follower_fsync ,stall_maintenance_while=/tmp/x",
        );
        assert_eq!(p["power_cut_after_acks"].as_deref(), Some("5"));
        assert_eq!(p["skip_follower_fsync"], None);
        assert_eq!(p["stall_maintenance_while"].as_deref(), Some("/tmp/x"));
        assert_eq!(p.len(), 3);
    }
}
