//! Authorization of Kafka requests (Kafka's `AuthHelper`): who is asking ([`Caller`]: the
//! principal and client address of the connection) and the node's [`Authorization`], the core
//! [`StandardAuthorizer`] plus denial logging (rate-limited) and counting (every denial).
//!
//! Handlers call [`Context::authorize`](super::Context::authorize) once per resource with the
//! operation Kafka's `KafkaApis` requires for that API and answer
//! TOPIC_AUTHORIZATION_FAILED / GROUP_AUTHORIZATION_FAILED / CLUSTER_AUTHORIZATION_FAILED for that
//! resource. With the authorizer off every action is allowed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use rill_core::authorizer::acl::{
    AclBindingFilter, AclOperation, AclPermissionType, PatternType, ResourceType, CLUSTER_NAME,
};
use rill_core::authorizer::StandardAuthorizer;
use rill_core::sync::LockExt;

use crate::metrics::Metrics;

/// The principal of a connection without SASL (Kafka's `User:ANONYMOUS`).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// At most this many denial log lines per [`DENIAL_LOG_WINDOW`]; the counters count every denial.
pub const DENIAL_LOG_BURST: u32 = 10;
/// The window of [`DENIAL_LOG_BURST`].
pub const DENIAL_LOG_WINDOW: Duration = Duration::from_secs(10);

/// Who sends a request: `User:<SASL name>` on a SASL listener, `User:<mapped certificate name>`
/// on an SSL listener with client certificates, `User:ANONYMOUS` otherwise, and the client's IP
/// address (matched against ACL hosts). A node of the cluster, on the cluster listener, is an
/// implicit super user (Kafka's inter-broker principal is one by configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `User:name`.
    pub principal: String,
    /// The client's IP address as text.
    pub host: String,
    /// An authenticated node of the cluster (the cluster listener): every action is allowed.
    pub cluster_peer: bool,
}

impl Caller {
    /// The caller of a connection authenticated as `user` (None: anonymous) from `peer`.
    pub fn new(user: Option<&str>, peer: SocketAddr) -> Caller {
        Caller {
            principal: match user {
                Some(u) => format!("User:{u}"),
                None => ANONYMOUS.to_string(),
            },
            host: peer.ip().to_string(),
            cluster_peer: false,
        }
    }

    /// A node of the cluster on the cluster listener, from `peer`.
    pub fn cluster_peer(peer: SocketAddr) -> Caller {
        Caller {
            cluster_peer: true,
            ..Caller::new(None, peer)
        }
    }
}

/// Log lines allowed in the current window, and denials not logged since the last line.
#[derive(Debug)]
struct DenialLog {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

/// The node's authorizer as request handlers use it.
pub struct Authorization {
    authorizer: StandardAuthorizer,
    metrics: Arc<Metrics>,
    log: Mutex<DenialLog>,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field("authorizer", &self.authorizer)
            .finish_non_exhaustive()
    }
}

impl Authorization {
    /// Wrap `authorizer`, counting denials in `metrics`.
    pub fn new(authorizer: StandardAuthorizer, metrics: Arc<Metrics>) -> Authorization {
        Authorization {
            authorizer,
            metrics,
            log: Mutex::new(DenialLog {
                window_start: Instant::now(),
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// The ACLs and the decision.
    pub fn authorizer(&self) -> &StandardAuthorizer {
        &self.authorizer
    }

    /// Whether `caller` may do `operation` on `(resource_type, name)`; a denial is counted and
    /// logged (rate-limited).
    pub fn allows(
        &self,
        caller: &Caller,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if caller.cluster_peer {
            return true;
        }
        let allowed = self.authorizer.authorize(
            &caller.principal,
            &caller.host,
            operation,
            resource_type,
            name,
        );
        if !allowed {
            self.denied(caller, operation, resource_type, name);
        }
        allowed
    }

    /// Like [`allows`](Self::allows) but neither counted nor logged (Kafka's `logIfDenied =
    /// false`: filtering a listing, computing authorized operations).
    pub fn allows_quietly(
        &self,
        caller: &Caller,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        caller.cluster_peer
            || self.authorizer.authorize(
                &caller.principal,
                &caller.host,
                operation,
                resource_type,
                name,
            )
    }

    /// Whether `caller` may do `operation` on some resource of `resource_type` (KIP-679).
    pub fn allows_any(
        &self,
        caller: &Caller,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        caller.cluster_peer
            || self.authorizer.authorize_by_resource_type(
                &caller.principal,
                &caller.host,
                operation,
                resource_type,
            )
    }

    /// KIP-430's authorized operations of `caller` on `(resource_type, name)`.
    pub fn authorized_operations(
        &self,
        caller: &Caller,
        resource_type: ResourceType,
        name: &str,
    ) -> i32 {
        if caller.cluster_peer {
            return AclOperation::of_resource(resource_type)
                .iter()
                .fold(0, |bits, op| bits | (1 << op.code()));
        }
        self.authorizer
            .authorized_operations(&caller.principal, &caller.host, resource_type, name)
    }

    /// Count and (rate-limited) log a denial.
    pub fn denied(
        &self,
        caller: &Caller,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) {
        self.metrics
            .authorization_denied(operation.name(), resource_type.name());
        let suppressed = {
            let mut log = self.log.lock_unpoisoned();
            if log.window_start.elapsed() >= DENIAL_LOG_WINDOW {
                log.window_start = Instant::now();
                log.logged = 0;
            }
            if log.logged >= DENIAL_LOG_BURST {
                log.suppressed += 1;
                return;
            }
            log.logged += 1;
            std::mem::take(&mut log.suppressed)
        };
        tracing::info!(
            principal = %caller.principal,
            host = %caller.host,
            operation = operation.name(),
            resource_type = resource_type.name(),
            resource = name,
            suppressed_since_last = suppressed,
            "authorization denied"
        );
    }
}

/// The filter of a DescribeAcls request or DeleteAcls filter (codes as sent; unknown codes
/// become UNKNOWN, which [`AclBindingFilter::validate`] refuses).
pub fn wire_filter(
    resource_type: i8,
    name: Option<&str>,
    pattern_type: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission: i8,
) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: ResourceType::from_code(resource_type),
        name: name.map(str::to_string),
        pattern_type: PatternType::from_code(pattern_type),
        principal: principal.map(str::to_string),
        host: host.map(str::to_string),
        operation: AclOperation::from_code(operation),
        permission: AclPermissionType::from_code(permission),
    }
}

/// The error code and message of a DescribeAcls/CreateAcls/DeleteAcls request that cannot be
/// served: SECURITY_DISABLED with the authorizer off, CLUSTER_AUTHORIZATION_FAILED without
/// `operation` on the cluster. `None`: serve it.
pub fn acl_api_refusal(
    authorization: Option<&Authorization>,
    caller: &Caller,
    operation: AclOperation,
) -> Option<(i16, String)> {
    let Some(a) = authorization else {
        return Some((
            ResponseError::SecurityDisabled.code(),
            "no authorizer is configured on this node ([kafka] authorizer = true)".to_string(),
        ));
    };
    if !a.allows(caller, operation, ResourceType::Cluster, CLUSTER_NAME) {
        return Some((
            ResponseError::ClusterAuthorizationFailed.code(),
            format!(
                "{} may not {operation} the cluster's ACLs",
                caller.principal
            ),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_core::authorizer::store::MetaAclStore;
    use rill_core::authorizer::AuthorizerConfig;
    use rill_core::metadata::MetaStore;

    #[test]
    fn every_denial_is_counted_though_few_are_logged() {
        let meta = Arc::new(MetaStore::in_memory().unwrap());
        let authorizer = StandardAuthorizer::open(
            Box::new(MetaAclStore::open(meta).unwrap()),
            AuthorizerConfig::default(),
        )
        .unwrap();
        let metrics = Arc::new(Metrics::new(&crate::metrics::MetricsConfig::default()));
        let a = Authorization::new(authorizer, metrics.clone());
        let caller = Caller::new(Some("bob"), "10.1.2.3:5000".parse().unwrap());
        assert_eq!(caller.principal, "User:bob");
        assert_eq!(caller.host, "10.1.2.3");
        for _ in 0..(DENIAL_LOG_BURST + 15) {
            assert!(!a.allows(&caller, AclOperation::Write, ResourceType::Topic, "t"));
        }
        assert_eq!(a.log.lock_unpoisoned().suppressed, 15);
        let text = metrics.encode().expect("metrics are on");
        assert!(
            text.contains(
                "rill_kafka_authorization_denials_total{operation=\"WRITE\",resource_type=\"TOPIC\"} 25"
            ),
            "{text}"
        );
    }

    #[test]
    fn cluster_peers_are_implicit_super_users() {
        let meta = Arc::new(MetaStore::in_memory().unwrap());
        let authorizer = StandardAuthorizer::open(
            Box::new(MetaAclStore::open(meta).unwrap()),
            AuthorizerConfig::default(),
        )
        .unwrap();
        let metrics = Arc::new(Metrics::new(&crate::metrics::MetricsConfig::default()));
        let a = Authorization::new(authorizer, metrics);
        let peer: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let node = Caller::cluster_peer(peer);
        let anonymous = Caller::new(None, peer);
        assert_eq!(node.principal, anonymous.principal);
        for op in [AclOperation::Read, AclOperation::ClusterAction] {
            assert!(a.allows(&node, op, ResourceType::Topic, "t"));
            assert!(!a.allows(&anonymous, op, ResourceType::Topic, "t"));
        }
        assert!(a.allows_any(&node, AclOperation::IdempotentWrite, ResourceType::Cluster));
        assert!(a.allows_quietly(&node, AclOperation::Alter, ResourceType::Group, "g"));
        assert_ne!(a.authorized_operations(&node, ResourceType::Topic, "t"), 0);
        assert_eq!(
            a.authorized_operations(&anonymous, ResourceType::Topic, "t"),
            0
        );
    }
}
