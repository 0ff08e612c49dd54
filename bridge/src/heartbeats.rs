//! Heartbeats, as MirrorMaker 2's MirrorHeartbeatConnector emits them: once a second, per target
//! cluster, one [`Heartbeat`] record (source alias = the node name, target alias = the mirror's
//! `target_alias`) to the target's `heartbeats` topic (created with one partition if missing).
//! Consumers on central can tell from it that the edge is alive and measure the replication
//! delay end to end.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Direction;
use crate::control_topics::TargetClient;
use crate::mirror::Mirror;
use crate::mm2::Heartbeat;
use rill_core::clock::now_ms;

/// The heartbeats topic on the target (MM2's name).
pub const HEARTBEATS_TOPIC: &str = "heartbeats";

/// How often a heartbeat is sent.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Start one heartbeat task per distinct target of the push mirrors that emit heartbeats.
pub fn start(
    tasks: &TaskTracker,
    mirrors: &[Arc<Mirror>],
    node: &str,
    shutdown: &CancellationToken,
) {
    let mut seen = HashSet::new();
    for m in mirrors {
        if m.config.direction != Direction::Push
            || !m.config.emit_heartbeats
            || !seen.insert(m.config.target.clone())
        {
            continue;
        }
        tasks.spawn(run(
            TargetClient::new(&m.config.target, m.security.clone()),
            m.config.target.clone(),
            node.to_string(),
            m.config.target_alias.clone(),
            shutdown.clone(),
        ));
    }
}

async fn run(
    mut client: TargetClient,
    target: String,
    node: String,
    alias: String,
    shutdown: CancellationToken,
) {
    let mut ready = false;
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !ready {
            match client.ensure_topic(HEARTBEATS_TOPIC, 1, &[]).await {
                Ok(()) => ready = true,
                Err(e) => {
                    tracing::debug!(%target, error = %e, "heartbeats topic not ready");
                    continue;
                }
            }
        }
        let h = Heartbeat {
            source_cluster_alias: node.clone(),
            target_cluster_alias: alias.clone(),
            timestamp: now_ms(),
        };
        if let Err(e) = client
            .produce(HEARTBEATS_TOPIC, vec![(h.key(), h.value(), h.timestamp)])
            .await
        {
            tracing::debug!(%target, error = %e, "heartbeat not sent");
            ready = false;
        }
    }
}
