//! The authorizer: Kafka's `StandardAuthorizer` decision over ACLs kept in memory and written
//! through an [`AclStore`](store::AclStore).
//!
//! - [`acl`]: the model (`AclBinding`, `ResourcePattern`, `AccessControlEntry`, filters, the enums
//!   with Kafka's codes),
//! - [`store`]: the `AclStore` trait and its redb backend in the node's metadata database.
//!
//! The decision, as Kafka's: a super user may do everything; otherwise the ACLs whose pattern
//! covers the resource (LITERAL name or `*`, PREFIXED prefix) and whose entry names the principal
//! (or `User:*`) and host (or `*`) decide. A matching DENY of the operation (or ALL) wins over
//! everything; else a matching ALLOW of the operation, of ALL, or of an operation that implies it
//! (READ/WRITE/DELETE/ALTER imply DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS) allows. When
//! no ACL at all covers the resource, `allow_everyone_if_no_acl_found` decides (default false).
//! Every request reads the current ACLs, so a change takes effect on open connections at once.

pub mod acl;
pub mod store;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};

use crate::sync::{LockExt, RwLockExt};
use acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, InvalidAcl, PatternType,
    ResourceType, WILDCARD, WILDCARD_PRINCIPAL,
};
use store::{AclStore, AclStoreError};

/// Settings of the authorizer (`[kafka] super_users`, `allow_everyone_if_no_acl_found`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Principals (`User:admin`) that may do everything.
    pub super_users: Vec<String>,
    /// Allow an action on a resource no ACL covers (Kafka's `allow.everyone.if.no.acl.found`).
    pub allow_everyone_if_no_acl_found: bool,
}

/// Kafka's `StandardAuthorizer`: ACLs in memory, written through to a store.
pub struct StandardAuthorizer {
    store: Box<dyn AclStore>,
    acls: RwLock<Arc<BTreeSet<AclBinding>>>,
    /// Serializes changes (read, write through, publish).
    changes: Mutex<()>,
    super_users: BTreeSet<String>,
    allow_everyone_if_no_acl_found: bool,
    /// The ACLs are known: at open for a node's own store, at the first
    /// [`mirror`](Self::mirror) for a cluster member's. Until then only super users are allowed
    /// (Kafka's authorizer is not ready before its initial load), whatever
    /// `allow_everyone_if_no_acl_found` says.
    loaded: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for StandardAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandardAuthorizer")
            .field("super_users", &self.super_users)
            .field("acls", &self.acls.read_unpoisoned().len())
            .finish_non_exhaustive()
    }
}

impl StandardAuthorizer {
    /// Load every ACL of `store`.
    pub fn open(
        store: Box<dyn AclStore>,
        config: AuthorizerConfig,
    ) -> Result<StandardAuthorizer, AclStoreError> {
        let acls = store.load()?.into_iter().collect();
        let loaded = std::sync::atomic::AtomicBool::new(!store.is_mirrored());
        Ok(StandardAuthorizer {
            loaded,
            store,
            acls: RwLock::new(Arc::new(acls)),
            changes: Mutex::new(()),
            super_users: config.super_users.into_iter().collect(),
            allow_everyone_if_no_acl_found: config.allow_everyone_if_no_acl_found,
        })
    }

    fn snapshot(&self) -> Arc<BTreeSet<AclBinding>> {
        self.acls.read_unpoisoned().clone()
    }

    /// Whether `principal` is a super user.
    pub fn is_super_user(&self, principal: &str) -> bool {
        self.super_users.contains(principal)
    }

    /// May `principal`, connected from `host`, do `operation` on the resource `(resource_type,
    /// name)`?
    pub fn authorize(
        &self,
        principal: &str,
        host: &str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if self.is_super_user(principal) {
            return true;
        }
        if !self.is_loaded() {
            return false;
        }
        let acls = self.snapshot();
        let mut found = false;
        let mut allowed = false;
        for b in acls
            .iter()
            .filter(|b| b.pattern.covers(resource_type, name))
        {
            found = true;
            let e = &b.entry;
            if !(e.principal == principal || e.principal == WILDCARD_PRINCIPAL)
                || !(e.host == host || e.host == WILDCARD)
            {
                continue;
            }
            match e.permission {
                AclPermissionType::Deny
                    if e.operation == operation || e.operation == AclOperation::All =>
                {
                    return false;
                }
                AclPermissionType::Allow if e.operation.allow_implies(operation) => {
                    allowed = true;
                }
                _ => {}
            }
        }
        allowed || (!found && self.allow_everyone_if_no_acl_found)
    }

    /// May `principal` do `operation` on at least one resource of `resource_type` (KIP-679's
    /// `authorizeByResourceType`: an ALLOW not fully covered by a DENY)?
    pub fn authorize_by_resource_type(
        &self,
        principal: &str,
        host: &str,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        if self.is_super_user(principal) {
            return true;
        }
        let acls = self.snapshot();
        let mut any_of_type = false;
        let mut deny_literal = BTreeSet::new();
        let mut deny_prefix = Vec::new();
        let mut allow = Vec::new();
        for b in acls
            .iter()
            .filter(|b| b.pattern.resource_type == resource_type)
        {
            any_of_type = true;
            let e = &b.entry;
            if !(e.principal == principal || e.principal == WILDCARD_PRINCIPAL)
                || !(e.host == host || e.host == WILDCARD)
                || !(e.operation == operation || e.operation == AclOperation::All)
            {
                continue;
            }
            match (e.permission, b.pattern.pattern_type) {
                (AclPermissionType::Deny, PatternType::Literal) => {
                    deny_literal.insert(b.pattern.name.as_str());
                }
                (AclPermissionType::Deny, _) => deny_prefix.push(b.pattern.name.as_str()),
                (AclPermissionType::Allow, pt) => allow.push((pt, b.pattern.name.as_str())),
                _ => {}
            }
        }
        if deny_literal.contains(WILDCARD) {
            return false;
        }
        let prefix_denied = |name: &str| deny_prefix.iter().any(|p| name.starts_with(p));
        for (pt, name) in allow {
            if pt == PatternType::Literal && name == WILDCARD {
                return true;
            }
            if pt == PatternType::Literal && deny_literal.contains(name) {
                continue;
            }
            if !prefix_denied(name) {
                return true;
            }
        }
        !any_of_type && self.allow_everyone_if_no_acl_found && self.is_loaded()
    }

    /// The operations of `resource_type` that `principal` may do on `name`, as KIP-430's bit
    /// field (bit `code` set per operation).
    pub fn authorized_operations(
        &self,
        principal: &str,
        host: &str,
        resource_type: ResourceType,
        name: &str,
    ) -> i32 {
        AclOperation::of_resource(resource_type)
            .iter()
            .filter(|op| self.authorize(principal, host, **op, resource_type, name))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }

    /// Make the ACLs exactly `acls` (a cluster member's authorizer copies the metadata image's
    /// ACLs after every image; its store writes through the controller). Not written to the
    /// store.
    pub fn mirror(&self, acls: &BTreeSet<AclBinding>) {
        if **self.acls.read_unpoisoned() != *acls {
            *self.acls.write_unpoisoned() = Arc::new(acls.clone());
        }
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether the ACLs are known (see the `loaded` field): before, only super users are
    /// allowed.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Store each binding; one result per binding, in order (a binding already stored
    /// succeeds). Malformed bindings are refused alone; the valid ones are stored together, or,
    /// when the store fails, none is.
    pub fn create(
        &self,
        bindings: Vec<AclBinding>,
    ) -> Result<Vec<Result<(), InvalidAcl>>, AclStoreError> {
        let _guard = self.changes.lock_unpoisoned();
        let current = self.snapshot();
        let mut results = Vec::with_capacity(bindings.len());
        let mut add = Vec::new();
        // A mirrored store sends every valid binding: this node's copy may lag the controller's
        // (a binding it still holds may be gone there).
        let mirrored = self.store.is_mirrored();
        for b in bindings {
            let r = b.validate();
            if r.is_ok() && (mirrored || !current.contains(&b)) && !add.contains(&b) {
                add.push(b);
            }
            results.push(r);
        }
        if !add.is_empty() {
            self.store.apply(&add, &[])?;
            if self.store.is_mirrored() {
                return Ok(results);
            }
            let mut next = (*current).clone();
            next.extend(add);
            *self.acls.write_unpoisoned() = Arc::new(next);
        }
        Ok(results)
    }

    /// Remove every binding each filter matches; per filter, the bindings it removed (or why the
    /// filter was refused). Refused filters remove nothing; the others are applied together.
    pub fn delete(
        &self,
        filters: &[AclBindingFilter],
    ) -> Result<Vec<Result<Vec<AclBinding>, InvalidAcl>>, AclStoreError> {
        let _guard = self.changes.lock_unpoisoned();
        if self.store.is_mirrored() {
            // Matched where the ACLs live (the controller's image), not in this node's copy.
            let valid: Vec<AclBindingFilter> = filters
                .iter()
                .filter(|f| f.validate().is_ok())
                .cloned()
                .collect();
            let mut removed = if valid.is_empty() {
                Vec::new()
            } else {
                self.store.remove_matching(&valid)?
            }
            .into_iter();
            return Ok(filters
                .iter()
                .map(|f| f.validate().map(|()| removed.next().unwrap_or_default()))
                .collect());
        }
        let current = self.snapshot();
        let mut results = Vec::with_capacity(filters.len());
        let mut remove = BTreeSet::new();
        for f in filters {
            match f.validate() {
                Ok(()) => {
                    let matched: Vec<AclBinding> =
                        current.iter().filter(|b| f.matches(b)).cloned().collect();
                    remove.extend(matched.iter().cloned());
                    results.push(Ok(matched));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if !remove.is_empty() {
            let remove: Vec<AclBinding> = remove.into_iter().collect();
            self.store.apply(&[], &remove)?;
            if self.store.is_mirrored() {
                return Ok(results);
            }
            let mut next = (*current).clone();
            for b in &remove {
                next.remove(b);
            }
            *self.acls.write_unpoisoned() = Arc::new(next);
        }
        Ok(results)
    }

    /// The bindings `filter` matches, sorted.
    pub fn describe(&self, filter: &AclBindingFilter) -> Result<Vec<AclBinding>, InvalidAcl> {
        filter.validate()?;
        Ok(self
            .snapshot()
            .iter()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::acl::{AccessControlEntry, ResourcePattern, CLUSTER_NAME};
    use super::store::MetaAclStore;
    use super::*;
    use crate::metadata::MetaStore;
    use AclOperation::*;
    use AclPermissionType::*;
    use PatternType::*;
    use ResourceType::*;

    fn acl(
        rt: ResourceType,
        name: &str,
        pt: PatternType,
        principal: &str,
        op: AclOperation,
        perm: AclPermissionType,
    ) -> AclBinding {
        AclBinding {
            pattern: ResourcePattern {
                resource_type: rt,
                name: name.into(),
                pattern_type: pt,
            },
            entry: AccessControlEntry {
                principal: principal.into(),
                host: "*".into(),
                operation: op,
                permission: perm,
            },
        }
    }

    fn authorizer(acls: Vec<AclBinding>) -> StandardAuthorizer {
        let meta = Arc::new(MetaStore::in_memory().unwrap());
        let a = StandardAuthorizer::open(
            Box::new(MetaAclStore::open(meta).unwrap()),
            AuthorizerConfig {
                super_users: vec!["User:admin".into()],
                allow_everyone_if_no_acl_found: false,
            },
        )
        .unwrap();
        assert!(a.create(acls).unwrap().iter().all(Result::is_ok));
        a
    }

    const ALICE: &str = "User:alice";

    #[test]
    fn prefixed_allow_and_default_deny() {
        let a = authorizer(vec![acl(Topic, "sensors.", Prefixed, ALICE, Write, Allow)]);
        assert!(a.authorize(ALICE, "10.0.0.1", Write, Topic, "sensors.t1"));
        assert!(!a.authorize(ALICE, "10.0.0.1", Write, Topic, "other"));
        assert!(!a.authorize(ALICE, "10.0.0.1", Read, Topic, "sensors.t1"));
        assert!(a.authorize(ALICE, "10.0.0.1", Describe, Topic, "sensors.t1"));
        assert!(!a.authorize("User:bob", "10.0.0.1", Write, Topic, "sensors.t1"));
        assert!(a.authorize("User:admin", "10.0.0.1", Delete, Cluster, CLUSTER_NAME));
    }

    #[test]
    fn deny_wins_and_implies_nothing() {
        let a = authorizer(vec![
            acl(Topic, "*", Literal, "User:*", All, Allow),
            acl(Topic, "secret", Literal, ALICE, Read, Deny),
        ]);
        assert!(!a.authorize(ALICE, "h", Read, Topic, "secret"));
        assert!(a.authorize(ALICE, "h", Describe, Topic, "secret"));
        assert!(a.authorize("User:bob", "h", Read, Topic, "secret"));
        assert!(a.authorize(ALICE, "h", Read, Topic, "public"));
    }

    #[test]
    fn hosts_must_match() {
        let mut b = acl(Group, "g", Literal, ALICE, Read, Allow);
        b.entry.host = "10.0.0.1".into();
        let a = authorizer(vec![b]);
        assert!(a.authorize(ALICE, "10.0.0.1", Read, Group, "g"));
        assert!(!a.authorize(ALICE, "10.0.0.2", Read, Group, "g"));
    }

    #[test]
    fn allow_everyone_only_where_no_acl_covers() {
        let meta = Arc::new(MetaStore::in_memory().unwrap());
        let a = StandardAuthorizer::open(
            Box::new(MetaAclStore::open(meta).unwrap()),
            AuthorizerConfig {
                super_users: vec![],
                allow_everyone_if_no_acl_found: true,
            },
        )
        .unwrap();
        a.create(vec![acl(Topic, "t", Literal, ALICE, Read, Allow)])
            .unwrap();
        assert!(a.authorize("User:bob", "h", Write, Topic, "free"));
        assert!(!a.authorize("User:bob", "h", Read, Topic, "t"));
    }

    #[test]
    fn by_resource_type_follows_kip_679() {
        let a = authorizer(vec![acl(Topic, "sensors.", Prefixed, ALICE, Write, Allow)]);
        assert!(a.authorize_by_resource_type(ALICE, "h", Write, Topic));
        assert!(!a.authorize_by_resource_type(ALICE, "h", Read, Topic));
        assert!(!a.authorize_by_resource_type("User:bob", "h", Write, Topic));
        a.create(vec![acl(Topic, "sensors", Prefixed, ALICE, Write, Deny)])
            .unwrap();
        assert!(!a.authorize_by_resource_type(ALICE, "h", Write, Topic));
        let b = authorizer(vec![
            acl(Topic, "t", Literal, ALICE, Write, Allow),
            acl(Topic, "*", Literal, ALICE, Write, Deny),
        ]);
        assert!(!b.authorize_by_resource_type(ALICE, "h", Write, Topic));
    }

    #[test]
    fn authorized_operations_bits() {
        let a = authorizer(vec![acl(Topic, "t", Literal, ALICE, Read, Allow)]);
        let bits = a.authorized_operations(ALICE, "h", Topic, "t");
        assert_eq!(bits, (1 << Read.code()) | (1 << Describe.code()));
        assert_eq!(a.authorized_operations(ALICE, "h", Topic, "u"), 0);
    }

    #[test]
    fn create_describe_delete() {
        let a = authorizer(vec![]);
        let good = acl(Topic, "t", Literal, ALICE, Read, Allow);
        let bad = acl(Topic, "t", Match, ALICE, Read, Allow);
        let r = a.create(vec![good.clone(), bad]).unwrap();
        assert!(r[0].is_ok());
        assert!(matches!(r[1], Err(InvalidAcl::PatternType(_))));
        assert_eq!(
            a.describe(&AclBindingFilter::any()).unwrap(),
            vec![good.clone()]
        );
        let mut unknown = AclBindingFilter::any();
        unknown.operation = AclOperation::Unknown;
        let r = a.delete(&[unknown, AclBindingFilter::any()]).unwrap();
        assert!(r[0].is_err());
        assert_eq!(r[1].as_ref().unwrap(), &vec![good]);
        assert!(a.describe(&AclBindingFilter::any()).unwrap().is_empty());
    }

    /// A store like a cluster member's: what it is asked to apply goes to `image` (the
    /// controller's copy); the authorizer's ACLs come only from [`StandardAuthorizer::mirror`].
    #[derive(Default)]
    struct Forwarding {
        image: Mutex<BTreeSet<AclBinding>>,
        applied: Mutex<usize>,
    }

    impl AclStore for Arc<Forwarding> {
        fn load(&self) -> Result<Vec<AclBinding>, AclStoreError> {
            Ok(Vec::new())
        }
        fn apply(&self, add: &[AclBinding], remove: &[AclBinding]) -> Result<(), AclStoreError> {
            *self.applied.lock_unpoisoned() += 1;
            let mut image = self.image.lock_unpoisoned();
            for b in remove {
                image.remove(b);
            }
            image.extend(add.iter().cloned());
            Ok(())
        }
        fn is_mirrored(&self) -> bool {
            true
        }
        fn remove_matching(
            &self,
            filters: &[AclBindingFilter],
        ) -> Result<Vec<Vec<AclBinding>>, AclStoreError> {
            let mut image = self.image.lock_unpoisoned();
            let removed: Vec<Vec<AclBinding>> = filters
                .iter()
                .map(|f| image.iter().filter(|b| f.matches(b)).cloned().collect())
                .collect();
            for b in removed.iter().flatten() {
                image.remove(b);
            }
            Ok(removed)
        }
    }

    #[test]
    fn a_mirrored_authorizer_decides_with_the_mirror_only() {
        let store = Arc::new(Forwarding::default());
        let a = StandardAuthorizer::open(
            Box::new(store.clone()),
            AuthorizerConfig {
                super_users: vec!["User:admin".into()],
                allow_everyone_if_no_acl_found: true,
            },
        )
        .unwrap();
        // Before the first mirror nothing is known: only super users, whatever
        // allow_everyone_if_no_acl_found says.
        assert!(!a.authorize(ALICE, "1.2.3.4", Read, Topic, "other"));
        assert!(!a.authorize_by_resource_type(ALICE, "1.2.3.4", Read, Topic));
        assert!(a.authorize("User:admin", "1.2.3.4", Read, Topic, "other"));
        let read = acl(Topic, "t", Literal, ALICE, Read, Allow);
        assert!(a.create(vec![read.clone()]).unwrap()[0].is_ok());
        assert_eq!(
            *store.image.lock_unpoisoned(),
            BTreeSet::from([read.clone()])
        );
        assert!(
            !a.authorize(ALICE, "1.2.3.4", Read, Topic, "t"),
            "not decided before the image brings it"
        );
        a.mirror(&BTreeSet::from([read.clone()]));
        assert!(a.authorize(ALICE, "1.2.3.4", Read, Topic, "t"));
        assert!(
            a.authorize(ALICE, "1.2.3.4", Read, Topic, "other"),
            "no ACL covers it"
        );
        // A binding this member still holds but the controller no longer has is sent again.
        store.image.lock_unpoisoned().clear();
        assert!(a.create(vec![read.clone()]).unwrap()[0].is_ok());
        assert_eq!(*store.applied.lock_unpoisoned(), 2);
        // DeleteAcls is matched where the ACLs live, also when this member's copy lags (here:
        // it has none at all).
        a.mirror(&BTreeSet::new());
        let removed = a.delete(&[AclBindingFilter::any()]).unwrap();
        assert_eq!(removed[0].as_ref().unwrap(), &vec![read.clone()]);
        assert!(store.image.lock_unpoisoned().is_empty());
        a.mirror(&BTreeSet::from([acl(
            Topic, "t", Literal, ALICE, Read, Deny,
        )]));
        assert!(!a.authorize(ALICE, "1.2.3.4", Read, Topic, "t"));
    }
}
