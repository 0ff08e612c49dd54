//! `rill acl add|list|remove`: Kafka ACLs through CreateAcls, DescribeAcls and DeleteAcls (like
//! `kafka-acls.sh --bootstrap-server`), so changes reach a running node and take effect on its
//! open connections at once. Needs a principal with ALTER (add, remove) or DESCRIBE (list) on the
//! cluster, or a super user.

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;
use rill_client::check;
use rill_core::authorizer::acl::{
    AclOperation, AclPermissionType, PatternType, ResourceType, CLUSTER_NAME, WILDCARD,
};

use super::{table, ConnectArgs};

/// `rill acl ...`
#[derive(clap::Args, Debug)]
pub struct AclArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    #[command(subcommand)]
    pub command: AclCommand,
}

/// The ACL subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum AclCommand {
    /// Add ACLs: one per --operation for the principal on the resource.
    Add(AddArgs),
    /// List the ACLs matching a filter (all of them without one).
    List(FilterArgs),
    /// Remove every ACL matching a filter (a resource or --principal is required).
    Remove(FilterArgs),
}

/// The resource an ACL protects (exactly one for `add`, at most one for a filter).
#[derive(clap::Args, Debug, Default)]
pub struct ResourceArgs {
    /// A topic (or prefix with --pattern prefixed; `*` for every topic).
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// A consumer group.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// A transactional id.
    #[arg(long, value_name = "ID")]
    pub transactional_id: Option<String>,
    /// The cluster.
    #[arg(long)]
    pub cluster: bool,
}

impl ResourceArgs {
    fn chosen(&self) -> anyhow::Result<Option<(ResourceType, String)>> {
        let mut out = Vec::new();
        if let Some(t) = &self.topic {
            out.push((ResourceType::Topic, t.clone()));
        }
        if let Some(g) = &self.group {
            out.push((ResourceType::Group, g.clone()));
        }
        if let Some(t) = &self.transactional_id {
            out.push((ResourceType::TransactionalId, t.clone()));
        }
        if self.cluster {
            out.push((ResourceType::Cluster, CLUSTER_NAME.to_string()));
        }
        if out.len() > 1 {
            bail!("name one resource: --topic, --group, --transactional-id or --cluster");
        }
        Ok(out.pop())
    }
}

/// `rill acl add`
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    pub resource: ResourceArgs,
    /// Who: `User:name` (or `User:*` for everyone).
    #[arg(long, value_name = "PRINCIPAL")]
    pub principal: String,
    /// The operation(s): READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION,
    /// DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE or ALL (repeatable, comma separated).
    #[arg(long = "operation", value_name = "OP", value_delimiter = ',', required = true,
        value_parser = parse_operation)]
    pub operations: Vec<AclOperation>,
    /// How the resource name matches: literal or prefixed.
    #[arg(long, value_name = "TYPE", default_value = "literal", value_parser = parse_pattern)]
    pub pattern: PatternType,
    /// Deny instead of allow (a DENY wins over every ALLOW).
    #[arg(long)]
    pub deny: bool,
    /// The client address the ACL applies to.
    #[arg(long, value_name = "IP", default_value = WILDCARD)]
    pub host: String,
}

/// A filter for `list` and `remove`: unset fields match everything.
#[derive(clap::Args, Debug)]
pub struct FilterArgs {
    #[command(flatten)]
    pub resource: ResourceArgs,
    /// Only this principal's ACLs.
    #[arg(long, value_name = "PRINCIPAL")]
    pub principal: Option<String>,
    /// Only this operation.
    #[arg(long, value_name = "OP", value_parser = parse_operation)]
    pub operation: Option<AclOperation>,
    /// How the resource name is compared: any (exact name, any pattern type; the default),
    /// match (every ACL that applies to the named resource), literal or prefixed.
    #[arg(long, value_name = "TYPE", default_value = "any", value_parser = parse_pattern)]
    pub pattern: PatternType,
    /// Only DENY (`deny`) or only ALLOW (`allow`) ACLs.
    #[arg(long, value_name = "allow|deny", value_parser = parse_permission)]
    pub permission: Option<AclPermissionType>,
    /// Only ACLs for this host.
    #[arg(long, value_name = "IP")]
    pub host: Option<String>,
}

fn parse_operation(s: &str) -> Result<AclOperation, String> {
    AclOperation::parse(s)
        .filter(|o| !matches!(o, AclOperation::Unknown | AclOperation::Any))
        .ok_or_else(|| format!("unknown operation {s:?}"))
}

fn parse_pattern(s: &str) -> Result<PatternType, String> {
    PatternType::parse(s)
        .filter(|p| *p != PatternType::Unknown)
        .ok_or_else(|| format!("unknown pattern type {s:?} (literal, prefixed, match, any)"))
}

fn parse_permission(s: &str) -> Result<AclPermissionType, String> {
    AclPermissionType::parse(s)
        .filter(|p| matches!(p, AclPermissionType::Allow | AclPermissionType::Deny))
        .ok_or_else(|| format!("unknown permission {s:?} (allow, deny)"))
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Runs an ACL subcommand.
pub async fn run(args: AclArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.conn.client().await?;
    let json = args.conn.json;
    let result = match args.command {
        AclCommand::Add(a) => add(&mut client, a, json).await,
        AclCommand::List(f) => list(&mut client, f, json).await,
        AclCommand::Remove(f) => remove(&mut client, f, json).await,
    };
    client.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn add(client: &mut rill_client::Client, a: AddArgs, json: bool) -> anyhow::Result<()> {
    let Some((resource_type, name)) = a.resource.chosen()? else {
        bail!("name the resource: --topic, --group, --transactional-id or --cluster");
    };
    if !matches!(a.pattern, PatternType::Literal | PatternType::Prefixed) {
        bail!("--pattern must be literal or prefixed for add");
    }
    let permission = if a.deny {
        AclPermissionType::Deny
    } else {
        AclPermissionType::Allow
    };
    let creations: Vec<AclCreation> = a
        .operations
        .iter()
        .map(|op| {
            AclCreation::default()
                .with_resource_type(resource_type.code())
                .with_resource_name(text(&name))
                .with_resource_pattern_type(a.pattern.code())
                .with_principal(text(&a.principal))
                .with_host(text(&a.host))
                .with_operation(op.code())
                .with_permission_type(permission.code())
        })
        .collect();
    let conn = client.any().await?;
    let resp = conn
        .send(&CreateAclsRequest::default().with_creations(creations))
        .await?;
    for (op, r) in a.operations.iter().zip(&resp.results) {
        check(r.error_code, r.error_message.as_ref(), || {
            format!(
                "add {permission} {op} for {} on {resource_type} {name}",
                a.principal
            )
        })?;
    }
    let rows: Vec<Vec<String>> = a
        .operations
        .iter()
        .map(|op| {
            row(
                resource_type,
                &name,
                a.pattern,
                &a.principal,
                &a.host,
                *op,
                permission,
            )
        })
        .collect();
    print_rows(&rows, json, "added");
    Ok(())
}

fn filter_parts(
    f: &FilterArgs,
) -> anyhow::Result<(ResourceType, Option<String>, PatternType, Option<String>)> {
    let (resource_type, name) = match f.resource.chosen()? {
        Some((t, n)) => (t, Some(n)),
        None => (ResourceType::Any, None),
    };
    Ok((resource_type, name, f.pattern, f.principal.clone()))
}

async fn list(client: &mut rill_client::Client, f: FilterArgs, json: bool) -> anyhow::Result<()> {
    let (resource_type, name, pattern, principal) = filter_parts(&f)?;
    let req = DescribeAclsRequest::default()
        .with_resource_type_filter(resource_type.code())
        .with_resource_name_filter(name.as_deref().map(text))
        .with_pattern_type_filter(pattern.code())
        .with_principal_filter(principal.as_deref().map(text))
        .with_host_filter(f.host.as_deref().map(text))
        .with_operation(f.operation.unwrap_or(AclOperation::Any).code())
        .with_permission_type(f.permission.unwrap_or(AclPermissionType::Any).code());
    let conn = client.any().await?;
    let resp = conn.send(&req).await?;
    check(resp.error_code, resp.error_message.as_ref(), || {
        "list ACLs".to_string()
    })?;
    let mut rows = Vec::new();
    for r in &resp.resources {
        for acl in &r.acls {
            rows.push(row(
                ResourceType::from_code(r.resource_type),
                &r.resource_name,
                PatternType::from_code(r.pattern_type),
                &acl.principal,
                &acl.host,
                AclOperation::from_code(acl.operation),
                AclPermissionType::from_code(acl.permission_type),
            ));
        }
    }
    print_rows(&rows, json, "");
    Ok(())
}

async fn remove(client: &mut rill_client::Client, f: FilterArgs, json: bool) -> anyhow::Result<()> {
    let (resource_type, name, pattern, principal) = filter_parts(&f)?;
    if name.is_none() && principal.is_none() {
        bail!("name a resource (--topic, --group, --transactional-id, --cluster) or --principal");
    }
    let filter = DeleteAclsFilter::default()
        .with_resource_type_filter(resource_type.code())
        .with_resource_name_filter(name.as_deref().map(text))
        .with_pattern_type_filter(pattern.code())
        .with_principal_filter(principal.as_deref().map(text))
        .with_host_filter(f.host.as_deref().map(text))
        .with_operation(f.operation.unwrap_or(AclOperation::Any).code())
        .with_permission_type(f.permission.unwrap_or(AclPermissionType::Any).code());
    let conn = client.any().await?;
    let resp = conn
        .send(&DeleteAclsRequest::default().with_filters(vec![filter]))
        .await?;
    let result = resp
        .filter_results
        .first()
        .context("the broker's DeleteAcls response has no result")?;
    check(result.error_code, result.error_message.as_ref(), || {
        "remove ACLs".to_string()
    })?;
    let rows: Vec<Vec<String>> = result
        .matching_acls
        .iter()
        .map(|m| {
            row(
                ResourceType::from_code(m.resource_type),
                &m.resource_name,
                PatternType::from_code(m.pattern_type),
                &m.principal,
                &m.host,
                AclOperation::from_code(m.operation),
                AclPermissionType::from_code(m.permission_type),
            )
        })
        .collect();
    print_rows(&rows, json, "removed");
    Ok(())
}

const HEADERS: [&str; 7] = [
    "RESOURCE_TYPE",
    "NAME",
    "PATTERN",
    "PRINCIPAL",
    "HOST",
    "OPERATION",
    "PERMISSION",
];

fn row(
    resource_type: ResourceType,
    name: &str,
    pattern: PatternType,
    principal: &str,
    host: &str,
    operation: AclOperation,
    permission: AclPermissionType,
) -> Vec<String> {
    vec![
        resource_type.to_string(),
        name.to_string(),
        pattern.to_string(),
        principal.to_string(),
        host.to_string(),
        operation.to_string(),
        permission.to_string(),
    ]
}

fn print_rows(rows: &[Vec<String>], json: bool, verb: &str) {
    if json {
        let keys = [
            "resource_type",
            "name",
            "pattern_type",
            "principal",
            "host",
            "operation",
            "permission",
        ];
        for r in rows {
            let obj: serde_json::Map<String, serde_json::Value> = keys
                .iter()
                .zip(r)
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
                .collect();
            println!("{}", serde_json::Value::Object(obj));
        }
        return;
    }
    if !verb.is_empty() {
        println!("{verb} {} ACL(s)", rows.len());
    }
    if !rows.is_empty() {
        print!("{}", table::render(&HEADERS, rows));
    }
}
