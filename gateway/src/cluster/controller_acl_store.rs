//! ACLs of a cluster member (Kafka's `AclControlManager` on the controller side, the broker's
//! `AclPublisher` on this one): CreateAcls and DeleteAcls at any member become one
//! [`Command::AlterAcls`] through the controller, and every member's authorizer mirrors the
//! metadata image's ACLs ([`StandardAuthorizer::mirror`], called by the metadata publisher after
//! every image). So an ACL created at one member decides at every member, and survives the loss
//! of the member that created it.
//!
//! The authorizer starts with no ACL (before the member caught up with the metadata log, only
//! super users and cluster peers are allowed, unless `allow_everyone_if_no_acl_found`), and its
//! own changes are not applied locally: they arrive with the image, as everyone else's do.
//!
//! [`StandardAuthorizer::mirror`]: rill_core::authorizer::StandardAuthorizer::mirror

use std::sync::Arc;

use rill_core::authorizer::acl::AclBinding;
use rill_core::authorizer::store::{AclStore, AclStoreError};
use rill_core::controller::Command;

use crate::kafka::cluster_view::{ClusterView, SubmitError};

/// Writes ACL changes through the controller.
pub struct ControllerAclStore {
    cluster: Arc<dyn ClusterView>,
    runtime: tokio::runtime::Handle,
}

impl ControllerAclStore {
    /// A store submitting through `cluster` on `runtime`. Its [`AclStore::apply`] blocks until
    /// the controller answered, so it runs on a blocking thread (as the ACL handlers call it).
    pub fn new(cluster: Arc<dyn ClusterView>, runtime: tokio::runtime::Handle) -> Self {
        ControllerAclStore { cluster, runtime }
    }
}

impl AclStore for ControllerAclStore {
    fn load(&self) -> Result<Vec<AclBinding>, AclStoreError> {
        Ok(Vec::new())
    }

    fn apply(&self, add: &[AclBinding], remove: &[AclBinding]) -> Result<(), AclStoreError> {
        let command = Command::AlterAcls {
            add: add.to_vec(),
            remove: remove.to_vec(),
        };
        self.runtime
            .block_on(self.cluster.submit(command))
            .map(|_| ())
            .map_err(|e| match e {
                SubmitError::Rejected(rejected) => {
                    AclStoreError::Storage(format!("rejected by the controller: {rejected}").into())
                }
                SubmitError::ControllerUnavailable(_) | SubmitError::Timeout(_) => {
                    AclStoreError::Unavailable(e.to_string())
                }
            })
    }

    fn is_mirrored(&self) -> bool {
        true
    }
}
