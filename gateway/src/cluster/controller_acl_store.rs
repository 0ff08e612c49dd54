//! ACLs of a cluster member (Kafka's `AclControlManager` on the controller side, the broker's
//! `AclPublisher` on this one): CreateAcls and DeleteAcls at any member become one
//! [`Command::AlterAcls`] through the controller (DeleteAcls' filters are matched there, against
//! the image, not against this member's copy, which may lag), and every member's authorizer mirrors the
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

use rill_core::authorizer::acl::{AclBinding, AclBindingFilter};
use rill_core::authorizer::store::{AclStore, AclStoreError};
use rill_core::controller::{Command, CommandOutcome};

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

impl ControllerAclStore {
    /// One `AlterAcls` through the controller; per filter, what it removed.
    fn submit(
        &self,
        add: Vec<AclBinding>,
        remove: Vec<AclBinding>,
        remove_matching: Vec<AclBindingFilter>,
    ) -> Result<Vec<Vec<AclBinding>>, AclStoreError> {
        let command = Command::AlterAcls {
            add,
            remove,
            remove_matching,
        };
        match self.runtime.block_on(self.cluster.submit(command)) {
            Ok(CommandOutcome::AclsAltered { removed }) => Ok(removed),
            Ok(other) => Err(AclStoreError::Storage(
                format!("unexpected controller outcome {other:?}").into(),
            )),
            Err(SubmitError::Rejected(rejected)) => Err(AclStoreError::Storage(
                format!("rejected by the controller: {rejected}").into(),
            )),
            Err(e @ (SubmitError::ControllerUnavailable(_) | SubmitError::Timeout(_))) => {
                Err(AclStoreError::Unavailable(e.to_string()))
            }
        }
    }
}

impl AclStore for ControllerAclStore {
    fn load(&self) -> Result<Vec<AclBinding>, AclStoreError> {
        Ok(Vec::new())
    }

    fn apply(&self, add: &[AclBinding], remove: &[AclBinding]) -> Result<(), AclStoreError> {
        self.submit(add.to_vec(), remove.to_vec(), Vec::new())
            .map(|_| ())
    }

    fn remove_matching(
        &self,
        filters: &[AclBindingFilter],
    ) -> Result<Vec<Vec<AclBinding>>, AclStoreError> {
        self.submit(Vec::new(), Vec::new(), filters.to_vec())
    }

    fn is_mirrored(&self) -> bool {
        true
    }
}
