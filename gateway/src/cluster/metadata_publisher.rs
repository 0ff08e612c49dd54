//! Applies the metadata image to this node's replicas (Kafka's `BrokerMetadataPublisher` and
//! `ReplicaManager.applyDelta`): after every image this node's state machine applies, the
//! difference to the image it acted on last ([`local_changes`]) says which local topic copies to
//! drop, which topics to reconcile (the partitions hosted here, their configs), and which hosted
//! partitions now lead or follow. The broker's storage and the [`ReplicaManager`] follow; the
//! replica fetchers follow the replica manager, and the group coordinator shards follow this
//! node's leaderships of `__consumer_offsets` partitions ([`CoordinatorRuntime`]).
//!
//! The image's SCRAM users and ACLs replace this node's ([`CredentialStore::mirror`],
//! `StandardAuthorizer::mirror`), so a user or an ACL altered through any member counts at every
//! member.
//!
//! A failure to apply one topic (a disk error creating a replica) is logged and retried with the
//! next image; the other topics go on.
//!
//! **Initial catch-up** (Kafka's broker waits for it before publishing): nothing is applied until
//! the image holds this process's own registration (its incarnation id). Before that the image
//! is what this node replayed from its own copy of the metadata log, possibly far behind the
//! controller's: acting on it, a restarted node would take up leaderships that moved long ago
//! and append as a leader of an old epoch.

use std::collections::BTreeSet;
use std::sync::Arc;

use rill_core::broker::Broker;
use rill_core::controller::local_replica_changes::{local_changes, LocalReplicaChanges};
use rill_core::controller::MetadataImage;
use rill_core::credentials::CredentialStore;
use rill_core::group::OFFSETS_TOPIC;
use rill_core::replica::ReplicaManager;

use super::coordinator_runtime::CoordinatorRuntime;
use crate::kafka::authorization::Authorization;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What each image is applied to.
pub struct Subscribers {
    /// The node's storage (local topic copies).
    pub broker: Arc<Broker>,
    /// Leader and follower roles of the hosted partitions.
    pub replicas: Arc<ReplicaManager>,
    /// The group coordinator shards of `__consumer_offsets` partitions led here.
    pub coordinators: Arc<CoordinatorRuntime>,
    /// The SCRAM users (a copy of the image's).
    pub credentials: Arc<CredentialStore>,
    /// The authorizer, when on (its ACLs are a copy of the image's).
    pub authorization: Option<Arc<Authorization>>,
}

/// Applies every new image until `shutdown`, from the first that holds this process's
/// registration (`incarnation`) on.
pub async fn run(
    mut images: watch::Receiver<Arc<MetadataImage>>,
    incarnation: Uuid,
    subscribers: Subscribers,
    shutdown: CancellationToken,
) {
    let Subscribers {
        broker,
        replicas,
        coordinators,
        credentials,
        authorization,
    } = subscribers;
    let mut applied: Option<Arc<MetadataImage>> = None;
    let mut caught_up = false;
    loop {
        let next = images.borrow_and_update().clone();
        if !caught_up {
            caught_up = next
                .broker(replicas.broker_id())
                .is_some_and(|b| b.incarnation_id == incarnation);
            if caught_up {
                tracing::info!("caught up with the metadata log; applying the image");
            }
        }
        if !caught_up {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = images.changed() => if r.is_err() { return },
            }
            continue;
        }
        let changes = local_changes(applied.as_deref(), &next, replicas.broker_id());
        replicas.update_image(next.clone());
        coordinators.update_image(&next);
        credentials.mirror(next.scram_credentials());
        if let Some(a) = &authorization {
            a.authorizer().mirror(next.acls());
        }
        let all_applied = if changes.is_empty() {
            true
        } else {
            let (broker, replicas, coordinators) =
                (broker.clone(), replicas.clone(), coordinators.clone());
            tokio::task::spawn_blocking(move || apply(&broker, &replicas, &coordinators, &changes))
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "applying the metadata image failed");
                    false
                })
        };
        // A topic that failed is compared against the image it failed on again next time.
        if all_applied {
            applied = Some(next);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = images.changed() => if r.is_err() { return },
        }
    }
}

/// Applies `changes`; `false` if some topic could not be applied.
fn apply(
    broker: &Broker,
    replicas: &ReplicaManager,
    coordinators: &Arc<CoordinatorRuntime>,
    changes: &LocalReplicaChanges,
) -> bool {
    let mut ok = true;
    let stop = |topic: &str, partition: i32| {
        if topic == OFFSETS_TOPIC {
            coordinators.on_resign(partition);
        }
        replicas.stop_replica(topic, partition);
    };
    for d in &changes.deletes {
        for p in replicas.partitions() {
            if p.topic() == d.name && p.topic_id() == d.topic_id {
                stop(&d.name, p.index());
            }
        }
        match broker.delete_topic(&d.name) {
            Ok(()) => tracing::info!(topic = %d.name, "removed the local copy of a deleted topic"),
            Err(e) if broker.topic(&d.name).is_none() => {
                tracing::debug!(topic = %d.name, error = %e, "deleted topic had no local copy")
            }
            Err(e) => {
                ok = false;
                tracing::error!(topic = %d.name, error = %e, "cannot remove the local copy of a deleted topic");
            }
        }
    }
    let mut failed: BTreeSet<&str> = BTreeSet::new();
    for t in &changes.topics {
        for p in replicas.partitions() {
            if p.topic() == t.name && !t.hosted.contains(&p.index()) {
                stop(&t.name, p.index());
            }
        }
        if let Err(e) = broker.reconcile_topic(
            &t.name,
            t.topic_id,
            t.partition_count,
            &t.configs,
            &t.hosted,
        ) {
            ok = false;
            failed.insert(&t.name);
            tracing::error!(topic = %t.name, error = %e, "cannot create this node's replicas of a topic");
        }
    }
    for (change, leader) in changes
        .leaders
        .iter()
        .map(|c| (c, true))
        .chain(changes.followers.iter().map(|c| (c, false)))
    {
        if failed.contains(change.topic.as_str()) {
            continue;
        }
        let log = match broker.partition(&change.topic, change.partition) {
            Ok(log) => log,
            Err(e) => {
                ok = false;
                tracing::error!(topic = %change.topic, partition = change.partition, error = %e, "hosted replica has no log");
                continue;
            }
        };
        let offsets = change.topic == OFFSETS_TOPIC;
        if leader {
            match replicas.become_leader(
                &change.topic,
                change.topic_id,
                change.partition,
                log,
                &change.registration,
            ) {
                Ok(p) if offsets => coordinators.on_become_leader(p),
                Ok(_) => {}
                Err(e) => {
                    ok = false;
                    if offsets {
                        coordinators.on_resign(change.partition);
                    }
                    tracing::error!(topic = %change.topic, partition = change.partition, error = %e, "cannot lead the partition");
                }
            }
        } else {
            if offsets {
                coordinators.on_resign(change.partition);
            }
            replicas.become_follower(
                &change.topic,
                change.topic_id,
                change.partition,
                log,
                &change.registration,
            );
        }
    }
    ok
}
