//! Moves what a member kept on its own into the cluster (issue 12's upgrade path): before SCRAM
//! users and ACLs lived in the metadata image, each node of a cluster (or a node alone, before it
//! was formatted into one) kept them in its own `meta.redb` tables, and a member's store now
//! mirrors the image only. So once a member has caught up with the metadata log, the users of its
//! own table that the cluster does not have are submitted to the controller (one
//! `AlterScramCredentials` per user; a user the cluster has keeps the cluster's credentials),
//! the same for ACLs (one `AlterAcls`), and the member's tables are emptied: this happens once
//! per member, so a user or ACL the cluster deletes later does not come back from a member's old
//! table when it restarts. (One that is deleted before a member that was down meanwhile made its
//! import does.)

use std::sync::Arc;

use rill_core::authorizer::store::{AclStore, MetaAclStore};
use rill_core::controller::{Command, MetadataImage};
use rill_core::credentials::CredentialStore;
use rill_core::metadata::MetaStore;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::kafka::cluster_view::ClusterView;

/// Waits for this process's registration in the image (caught up), then imports once.
pub async fn run(
    cluster: Arc<dyn ClusterView>,
    mut images: watch::Receiver<Arc<MetadataImage>>,
    incarnation: Uuid,
    credentials: Arc<CredentialStore>,
    meta: Arc<MetaStore>,
    shutdown: CancellationToken,
) {
    let image = loop {
        let image = images.borrow_and_update().clone();
        if image
            .broker(cluster.node_id())
            .is_some_and(|b| b.incarnation_id == incarnation)
        {
            break image;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = images.changed() => if r.is_err() { return },
        }
    };
    import_users(cluster.as_ref(), &image, &credentials).await;
    import_acls(cluster.as_ref(), &image, meta).await;
}

async fn import_users(
    cluster: &dyn ClusterView,
    image: &MetadataImage,
    store: &Arc<CredentialStore>,
) {
    let local = {
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.local_table()).await {
            Ok(Ok(local)) => local,
            Ok(Err(e)) => return tracing::error!(error = %e, "cannot read this node's own users"),
            Err(e) => return tracing::error!(error = %e, "cannot read this node's own users"),
        }
    };
    if local.is_empty() {
        return;
    }
    let mut imported = 0;
    for (user, mechanisms) in &local {
        if image.scram_credentials().contains_key(user) {
            continue;
        }
        let command = Command::AlterScramCredentials {
            user: user.clone(),
            upsertions: mechanisms.iter().map(|(m, c)| (*m, c.clone())).collect(),
            deletions: Vec::new(),
        };
        if let Err(e) = cluster.submit(command).await {
            return tracing::error!(%user, error = %e, "importing this node's own SCRAM users into the cluster failed; retried at the next start");
        }
        imported += 1;
    }
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.clear_local_table()).await {
        Ok(Ok(())) => tracing::info!(
            users = local.len(),
            imported,
            "imported this node's own SCRAM users into the cluster (those it lacked)"
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "users imported; emptying this node's own table failed")
        }
        Err(e) => {
            tracing::error!(error = %e, "users imported; emptying this node's own table failed")
        }
    }
}

async fn import_acls(cluster: &dyn ClusterView, image: &MetadataImage, meta: Arc<MetaStore>) {
    let loaded = tokio::task::spawn_blocking(move || {
        let store = MetaAclStore::open(meta)?;
        let acls = store.load()?;
        Ok::<_, rill_core::authorizer::store::AclStoreError>((store, acls))
    })
    .await;
    let (store, acls) = match loaded {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(e)) => return tracing::error!(error = %e, "cannot read this node's own ACLs"),
        Err(e) => return tracing::error!(error = %e, "cannot read this node's own ACLs"),
    };
    if acls.is_empty() {
        return;
    }
    let missing: Vec<_> = acls
        .iter()
        .filter(|b| !image.acls().contains(*b))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let command = Command::AlterAcls {
            add: missing,
            remove: Vec::new(),
            remove_matching: Vec::new(),
        };
        if let Err(e) = cluster.submit(command).await {
            return tracing::error!(error = %e, "importing this node's own ACLs into the cluster failed; retried at the next start");
        }
    }
    let count = acls.len();
    match tokio::task::spawn_blocking(move || store.apply(&[], &acls)).await {
        Ok(Ok(())) => tracing::info!(
            acls = count,
            "imported this node's own ACLs into the cluster"
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "ACLs imported; emptying this node's own table failed")
        }
        Err(e) => {
            tracing::error!(error = %e, "ACLs imported; emptying this node's own table failed")
        }
    }
}
