//! Kafka's ACL model: [`AclBinding`] = [`ResourcePattern`] + [`AccessControlEntry`], the filters
//! that select bindings ([`AclBindingFilter`], used by DescribeAcls and DeleteAcls), and the enums
//! with Kafka's wire codes ([`ResourceType`], [`PatternType`], [`AclOperation`],
//! [`AclPermissionType`]).
//!
//! The names, codes and matching rules are those of `org.apache.kafka.common.acl` and
//! `org.apache.kafka.common.resource`.

use std::fmt;

/// The only resource name of the CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The wildcard resource name (LITERAL `*` matches every resource of its type) and host.
pub const WILDCARD: &str = "*";
/// The wildcard principal: `User:*` matches every user.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

macro_rules! kafka_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:expr, $text:expr;)* }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize,
            serde::Deserialize,
        )]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL_VALUES: &'static [$name] = &[$($name::$variant),*];

            /// Kafka's wire code.
            pub fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code,)*
                }
            }

            /// The value of a wire code; codes this build does not know are `Unknown`.
            pub fn from_code(code: i8) -> $name {
                match code {
                    $($code => $name::$variant,)*
                    _ => $name::Unknown,
                }
            }

            /// Kafka's name (`TOPIC`, `PREFIXED`, `DESCRIBE_CONFIGS`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// Parse Kafka's name, case-insensitively, with `-` or `_` between words.
            pub fn parse(s: &str) -> Option<$name> {
                let norm = s.trim().replace('-', "_").to_ascii_uppercase();
                Self::ALL_VALUES.iter().copied().find(|v| v.name() == norm)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

kafka_enum! {
    /// The kind of resource an ACL protects (`org.apache.kafka.common.resource.ResourceType`).
    ResourceType {
        /// A code this build does not know.
        Unknown = 0, "UNKNOWN";
        /// Filters only: any type.
        Any = 1, "ANY";
        /// A topic.
        Topic = 2, "TOPIC";
        /// A consumer group.
        Group = 3, "GROUP";
        /// The cluster (one resource, named `kafka-cluster`).
        Cluster = 4, "CLUSTER";
        /// A transactional id.
        TransactionalId = 5, "TRANSACTIONAL_ID";
        /// A delegation token.
        DelegationToken = 6, "DELEGATION_TOKEN";
        /// A user (delegation tokens on behalf of).
        User = 7, "USER";
    }
}

kafka_enum! {
    /// How a resource name is matched (`org.apache.kafka.common.resource.PatternType`).
    PatternType {
        /// A code this build does not know.
        Unknown = 0, "UNKNOWN";
        /// Filters only: any pattern type, names compared exactly.
        Any = 1, "ANY";
        /// Filters only: every pattern that would match the named resource.
        Match = 2, "MATCH";
        /// The name is the resource's name (or `*`, every resource).
        Literal = 3, "LITERAL";
        /// The name is a prefix of the resources' names.
        Prefixed = 4, "PREFIXED";
    }
}

kafka_enum! {
    /// An operation on a resource (`org.apache.kafka.common.acl.AclOperation`).
    AclOperation {
        /// A code this build does not know.
        Unknown = 0, "UNKNOWN";
        /// Filters only: any operation.
        Any = 1, "ANY";
        /// Every operation.
        All = 2, "ALL";
        /// Read (fetch, join a group, commit offsets).
        Read = 3, "READ";
        /// Write (produce).
        Write = 4, "WRITE";
        /// Create (topics).
        Create = 5, "CREATE";
        /// Delete (topics, records, groups).
        Delete = 6, "DELETE";
        /// Alter (partitions, ACLs, users).
        Alter = 7, "ALTER";
        /// Describe (metadata, offsets, groups, ACLs).
        Describe = 8, "DESCRIBE";
        /// Broker-to-broker actions.
        ClusterAction = 9, "CLUSTER_ACTION";
        /// DescribeConfigs.
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        /// AlterConfigs, IncrementalAlterConfigs.
        AlterConfigs = 11, "ALTER_CONFIGS";
        /// InitProducerId of an idempotent producer.
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        /// Create delegation tokens.
        CreateTokens = 13, "CREATE_TOKENS";
        /// Describe delegation tokens.
        DescribeTokens = 14, "DESCRIBE_TOKENS";
    }
}

kafka_enum! {
    /// Whether an entry allows or denies (`org.apache.kafka.common.acl.AclPermissionType`).
    AclPermissionType {
        /// A code this build does not know.
        Unknown = 0, "UNKNOWN";
        /// Filters only: either.
        Any = 1, "ANY";
        /// Deny (wins over every ALLOW).
        Deny = 2, "DENY";
        /// Allow.
        Allow = 3, "ALLOW";
    }
}

impl AclOperation {
    /// The operations an ALLOW of `self` also allows (Kafka: READ, WRITE, DELETE and ALTER imply
    /// DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS). DENY entries imply nothing.
    pub fn allow_implies(self, requested: AclOperation) -> bool {
        self == requested
            || self == AclOperation::All
            || (requested == AclOperation::Describe
                && matches!(
                    self,
                    AclOperation::Read
                        | AclOperation::Write
                        | AclOperation::Delete
                        | AclOperation::Alter
                ))
            || (requested == AclOperation::DescribeConfigs && self == AclOperation::AlterConfigs)
    }

    /// The operations Kafka reports as "authorized operations" of a resource type (KIP-430), in
    /// bit order.
    pub fn of_resource(resource: ResourceType) -> &'static [AclOperation] {
        use AclOperation::*;
        match resource {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            _ => &[],
        }
    }
}

/// A resource pattern of a stored ACL: type, name and how the name matches.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ResourcePattern {
    /// TOPIC, GROUP, CLUSTER or TRANSACTIONAL_ID (never ANY or UNKNOWN).
    pub resource_type: ResourceType,
    /// The name, prefix, or `*`.
    pub name: String,
    /// LITERAL or PREFIXED (never ANY, MATCH or UNKNOWN).
    pub pattern_type: PatternType,
}

impl ResourcePattern {
    /// Whether this pattern covers the resource `(resource_type, name)`.
    pub fn covers(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => self.name == name || self.name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&self.name),
                _ => false,
            }
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.resource_type, self.pattern_type, self.name
        )
    }
}

/// Who may (or may not) do what from where.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct AccessControlEntry {
    /// `Type:name`, e.g. `User:alice`, or `User:*`.
    pub principal: String,
    /// The client's IP address as text, or `*`.
    pub host: String,
    /// The operation (never ANY or UNKNOWN).
    pub operation: AclOperation,
    /// ALLOW or DENY.
    pub permission: AclPermissionType,
}

/// One stored ACL.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct AclBinding {
    /// What it protects.
    pub pattern: ResourcePattern,
    /// Who, where, what, allow or deny.
    pub entry: AccessControlEntry,
}

impl fmt::Display for AclBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} from {}",
            self.pattern,
            self.entry.permission,
            self.entry.principal,
            self.entry.operation,
            self.entry.host
        )
    }
}

/// Why an ACL or filter is refused (answered as INVALID_REQUEST with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAcl {
    /// A resource type a binding may not have (UNKNOWN, ANY, or not supported here).
    #[error("invalid resource type {0}")]
    ResourceType(ResourceType),
    /// A pattern type a binding may not have.
    #[error("invalid pattern type {0} (LITERAL or PREFIXED)")]
    PatternType(PatternType),
    /// An operation a binding may not have.
    #[error("invalid operation {0}")]
    Operation(AclOperation),
    /// A permission type a binding may not have.
    #[error("invalid permission type {0} (ALLOW or DENY)")]
    Permission(AclPermissionType),
    /// Empty resource name.
    #[error("resource name must not be empty")]
    EmptyName,
    /// The CLUSTER resource has one name.
    #[error("the only valid name for the CLUSTER resource is {CLUSTER_NAME}, not {0:?}")]
    ClusterName(String),
    /// A principal not of the form `Type:name`.
    #[error("could not parse principal {0:?} (expected Type:name, e.g. User:alice)")]
    Principal(String),
    /// Empty host.
    #[error("host must not be empty (use * for every host)")]
    EmptyHost,
    /// A filter with an UNKNOWN field.
    #[error("the filter has an unknown {0}")]
    UnknownFilterField(&'static str),
}

fn check_principal(p: &str) -> Result<(), InvalidAcl> {
    match p.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(()),
        _ => Err(InvalidAcl::Principal(p.to_string())),
    }
}

impl AclBinding {
    /// Check a binding as Kafka's controller does before storing it.
    pub fn validate(&self) -> Result<(), InvalidAcl> {
        let p = &self.pattern;
        match p.resource_type {
            ResourceType::Topic
            | ResourceType::Group
            | ResourceType::Cluster
            | ResourceType::TransactionalId => {}
            other => return Err(InvalidAcl::ResourceType(other)),
        }
        if !matches!(p.pattern_type, PatternType::Literal | PatternType::Prefixed) {
            return Err(InvalidAcl::PatternType(p.pattern_type));
        }
        if p.name.is_empty() {
            return Err(InvalidAcl::EmptyName);
        }
        if p.resource_type == ResourceType::Cluster && p.name != CLUSTER_NAME {
            return Err(InvalidAcl::ClusterName(p.name.clone()));
        }
        let e = &self.entry;
        if matches!(e.operation, AclOperation::Any | AclOperation::Unknown) {
            return Err(InvalidAcl::Operation(e.operation));
        }
        if !matches!(
            e.permission,
            AclPermissionType::Allow | AclPermissionType::Deny
        ) {
            return Err(InvalidAcl::Permission(e.permission));
        }
        check_principal(&e.principal)?;
        if e.host.is_empty() {
            return Err(InvalidAcl::EmptyHost);
        }
        Ok(())
    }
}

/// Selects bindings (DescribeAcls, DeleteAcls): `None` fields and ANY match everything.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AclBindingFilter {
    /// A type, or ANY.
    pub resource_type: ResourceType,
    /// A name, or `None` for every name.
    pub name: Option<String>,
    /// LITERAL, PREFIXED, ANY, or MATCH (every pattern that covers `name`).
    pub pattern_type: PatternType,
    /// A principal, or `None`.
    pub principal: Option<String>,
    /// A host, or `None`.
    pub host: Option<String>,
    /// An operation, or ANY.
    pub operation: AclOperation,
    /// A permission, or ANY.
    pub permission: AclPermissionType,
}

impl AclBindingFilter {
    /// The filter that matches every binding.
    pub fn any() -> AclBindingFilter {
        AclBindingFilter {
            resource_type: ResourceType::Any,
            name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission: AclPermissionType::Any,
        }
    }

    /// Refuse filters with an UNKNOWN field (Kafka: "Unknown patternFilter/entryFilter").
    pub fn validate(&self) -> Result<(), InvalidAcl> {
        if self.resource_type == ResourceType::Unknown {
            return Err(InvalidAcl::UnknownFilterField("resource type"));
        }
        if self.pattern_type == PatternType::Unknown {
            return Err(InvalidAcl::UnknownFilterField("pattern type"));
        }
        if self.operation == AclOperation::Unknown {
            return Err(InvalidAcl::UnknownFilterField("operation"));
        }
        if self.permission == AclPermissionType::Unknown {
            return Err(InvalidAcl::UnknownFilterField("permission type"));
        }
        Ok(())
    }

    /// Whether `binding` is selected (Kafka's `AclBindingFilter.matches`).
    pub fn matches(&self, binding: &AclBinding) -> bool {
        let p = &binding.pattern;
        if self.resource_type != ResourceType::Any && self.resource_type != p.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.pattern_type != p.pattern_type
        {
            return false;
        }
        if let Some(name) = &self.name {
            let name_ok = if self.pattern_type == PatternType::Match {
                match p.pattern_type {
                    PatternType::Literal => *name == p.name || p.name == WILDCARD,
                    PatternType::Prefixed => name.starts_with(&p.name),
                    _ => false,
                }
            } else {
                *name == p.name
            };
            if !name_ok {
                return false;
            }
        }
        let e = &binding.entry;
        self.principal.as_ref().is_none_or(|x| *x == e.principal)
            && self.host.as_ref().is_none_or(|x| *x == e.host)
            && (self.operation == AclOperation::Any || self.operation == e.operation)
            && (self.permission == AclPermissionType::Any || self.permission == e.permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(rt: ResourceType, name: &str, pt: PatternType, op: AclOperation) -> AclBinding {
        AclBinding {
            pattern: ResourcePattern {
                resource_type: rt,
                name: name.to_string(),
                pattern_type: pt,
            },
            entry: AccessControlEntry {
                principal: "User:alice".to_string(),
                host: "*".to_string(),
                operation: op,
                permission: AclPermissionType::Allow,
            },
        }
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_are_unknown() {
        for op in AclOperation::ALL_VALUES {
            assert_eq!(AclOperation::from_code(op.code()), *op);
        }
        assert_eq!(AclOperation::from_code(99), AclOperation::Unknown);
        assert_eq!(ResourceType::from_code(-3), ResourceType::Unknown);
        assert_eq!(
            AclOperation::parse("describe-configs"),
            Some(AclOperation::DescribeConfigs)
        );
        assert_eq!(PatternType::parse("prefixed"), Some(PatternType::Prefixed));
        assert_eq!(ResourceType::parse("nope"), None);
    }

    #[test]
    fn implied_operations_follow_kafka() {
        use AclOperation::*;
        for op in [Read, Write, Delete, Alter] {
            assert!(op.allow_implies(Describe));
        }
        assert!(!Create.allow_implies(Describe));
        assert!(AlterConfigs.allow_implies(DescribeConfigs));
        assert!(!DescribeConfigs.allow_implies(AlterConfigs));
        assert!(All.allow_implies(IdempotentWrite));
        assert!(!Describe.allow_implies(Read));
    }

    #[test]
    fn validation_refuses_what_kafka_refuses() {
        use AclOperation::*;
        use PatternType::*;
        use ResourceType::*;
        assert!(binding(Topic, "t", Literal, Read).validate().is_ok());
        assert!(binding(Cluster, CLUSTER_NAME, Literal, Alter)
            .validate()
            .is_ok());
        assert_eq!(
            binding(Cluster, "other", Literal, Alter).validate(),
            Err(InvalidAcl::ClusterName("other".into()))
        );
        assert!(binding(ResourceType::Any, "t", Literal, Read)
            .validate()
            .is_err());
        assert!(binding(Topic, "t", Match, Read).validate().is_err());
        assert!(binding(Topic, "t", Literal, AclOperation::Any)
            .validate()
            .is_err());
        assert!(binding(Topic, "", Literal, Read).validate().is_err());
        let mut b = binding(Topic, "t", Literal, Read);
        b.entry.principal = "alice".into();
        assert!(b.validate().is_err());
        b.entry.principal = "User:alice".into();
        b.entry.permission = AclPermissionType::Any;
        assert!(b.validate().is_err());
    }

    #[test]
    fn filters_match_like_kafka() {
        use AclOperation::*;
        use PatternType::*;
        use ResourceType::*;
        let lit = binding(Topic, "sensors.a", Literal, Read);
        let wild = binding(Topic, "*", Literal, Read);
        let pre = binding(Topic, "sensors.", Prefixed, Write);
        let group = binding(Group, "sensors.a", Literal, Read);
        let mut f = AclBindingFilter::any();
        assert!([&lit, &wild, &pre, &group].iter().all(|b| f.matches(b)));
        f.resource_type = Topic;
        assert!(!f.matches(&group));
        f.name = Some("sensors.a".into());
        assert!(f.matches(&lit) && !f.matches(&wild) && !f.matches(&pre));
        f.pattern_type = Match;
        assert!(f.matches(&lit) && f.matches(&wild) && f.matches(&pre));
        f.pattern_type = Prefixed;
        assert!(!f.matches(&pre));
        f.name = Some("sensors.".into());
        assert!(f.matches(&pre));
        f.operation = Read;
        assert!(!f.matches(&pre));
        let mut bad = AclBindingFilter::any();
        bad.pattern_type = PatternType::Unknown;
        assert!(bad.validate().is_err());
        assert!(AclBindingFilter::any().validate().is_ok());
    }
}
