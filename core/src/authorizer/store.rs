//! Where ACLs are kept: the [`AclStore`] trait and its backend in the node's metadata database
//! ([`MetaAclStore`], table `acls`).
//!
//! The authorizer holds every ACL in memory and writes through this trait. A node alone keeps its
//! ACLs here; a cluster member's store writes through the controller (the gateway's
//! `cluster::controller_acl_store`), and every member's authorizer mirrors the metadata image's
//! ACLs ([`StandardAuthorizer::mirror`](super::StandardAuthorizer::mirror)).

use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::acl::{
    AccessControlEntry, AclBinding, AclBindingFilter, AclOperation, AclPermissionType, PatternType,
    ResourcePattern, ResourceType,
};
use crate::metadata::MetaStore;

/// `(resource type, name, pattern type, principal, host, operation, permission) -> ()`, codes as
/// Kafka's wire codes.
const ACLS: TableDefinition<AclKey, ()> = TableDefinition::new("acls");
type AclKey = (i8, &'static str, i8, &'static str, &'static str, i8, i8);

/// Errors of an ACL store.
#[derive(Debug, thiserror::Error)]
pub enum AclStoreError {
    /// The metadata database failed.
    #[error("ACL store: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A cluster member's change was not committed by the controller (none reachable, or no
    /// answer in time): REQUEST_TIMED_OUT, which clients retry.
    #[error("ACL change not committed by the controller: {0}")]
    Unavailable(String),
    /// A row with a code this build does not know (written by a newer Rill).
    #[error("ACL store: row with unknown codes {0:?}")]
    UnknownCode(String),
}

fn storage(e: impl Into<redb::Error>) -> AclStoreError {
    AclStoreError::Storage(Box::new(e.into()))
}

/// Durable home of the ACLs.
pub trait AclStore: Send + Sync {
    /// Every stored binding.
    fn load(&self) -> Result<Vec<AclBinding>, AclStoreError>;
    /// Add `add` and remove `remove` in one durable transaction.
    fn apply(&self, add: &[AclBinding], remove: &[AclBinding]) -> Result<(), AclStoreError>;
    /// Whether the authorizer's ACLs come from elsewhere ([`StandardAuthorizer::mirror`]) rather
    /// than from what it applied here: a store writing through the controller, whose changes
    /// reach this node's authorizer when the metadata image does.
    ///
    /// [`StandardAuthorizer::mirror`]: super::StandardAuthorizer::mirror
    fn is_mirrored(&self) -> bool {
        false
    }
    /// A mirrored store's DeleteAcls: remove what `filters` match where the ACLs live (the
    /// controller's image, not this node's copy, which may lag); per filter, what it removed.
    /// Stores that are not mirrored do not implement it (the authorizer matches locally).
    fn remove_matching(
        &self,
        _filters: &[AclBindingFilter],
    ) -> Result<Vec<Vec<AclBinding>>, AclStoreError> {
        Err(AclStoreError::Storage(
            "this ACL store removes only the bindings it is given".into(),
        ))
    }
}

/// ACLs in the node's redb metadata database.
pub struct MetaAclStore {
    meta: Arc<MetaStore>,
}

impl std::fmt::Debug for MetaAclStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaAclStore")
            .field("path", &self.meta.path())
            .finish()
    }
}

impl MetaAclStore {
    /// The store in `meta`, creating its table.
    pub fn open(meta: Arc<MetaStore>) -> Result<MetaAclStore, AclStoreError> {
        let txn = meta.db().begin_write().map_err(storage)?;
        txn.open_table(ACLS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(MetaAclStore { meta })
    }
}

fn key(b: &AclBinding) -> (i8, &str, i8, &str, &str, i8, i8) {
    (
        b.pattern.resource_type.code(),
        b.pattern.name.as_str(),
        b.pattern.pattern_type.code(),
        b.entry.principal.as_str(),
        b.entry.host.as_str(),
        b.entry.operation.code(),
        b.entry.permission.code(),
    )
}

impl AclStore for MetaAclStore {
    fn load(&self) -> Result<Vec<AclBinding>, AclStoreError> {
        let txn = self.meta.db().begin_read().map_err(storage)?;
        let table = txn.open_table(ACLS).map_err(storage)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(storage)? {
            let (k, _) = row.map_err(storage)?;
            let (rt, name, pt, principal, host, op, perm) = k.value();
            let binding = AclBinding {
                pattern: ResourcePattern {
                    resource_type: ResourceType::from_code(rt),
                    name: name.to_string(),
                    pattern_type: PatternType::from_code(pt),
                },
                entry: AccessControlEntry {
                    principal: principal.to_string(),
                    host: host.to_string(),
                    operation: AclOperation::from_code(op),
                    permission: AclPermissionType::from_code(perm),
                },
            };
            if binding.validate().is_err() {
                return Err(AclStoreError::UnknownCode(format!(
                    "{:?}",
                    (rt, name, pt, principal, host, op, perm)
                )));
            }
            out.push(binding);
        }
        Ok(out)
    }

    fn apply(&self, add: &[AclBinding], remove: &[AclBinding]) -> Result<(), AclStoreError> {
        let txn = self.meta.db().begin_write().map_err(storage)?;
        {
            let mut table = txn.open_table(ACLS).map_err(storage)?;
            for b in remove {
                table.remove(key(b)).map_err(storage)?;
            }
            for b in add {
                table.insert(key(b), ()).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_survive_reopen_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let b = AclBinding {
            pattern: ResourcePattern {
                resource_type: ResourceType::Topic,
                name: "sensors.".into(),
                pattern_type: PatternType::Prefixed,
            },
            entry: AccessControlEntry {
                principal: "User:alice".into(),
                host: "*".into(),
                operation: AclOperation::Write,
                permission: AclPermissionType::Allow,
            },
        };
        {
            let meta = Arc::new(MetaStore::open(dir.path()).unwrap());
            let s = MetaAclStore::open(meta).unwrap();
            s.apply(std::slice::from_ref(&b), &[]).unwrap();
        }
        let meta = Arc::new(MetaStore::open(dir.path()).unwrap());
        let s = MetaAclStore::open(meta).unwrap();
        assert_eq!(s.load().unwrap(), vec![b.clone()]);
        s.apply(&[], &[b]).unwrap();
        assert!(s.load().unwrap().is_empty());
    }
}
