//! CreateAcls (key 30, v1-3): store ACL bindings. Needs ALTER on the cluster. Each creation is
//! answered alone: a malformed binding gets INVALID_REQUEST with the reason and is not stored; the
//! valid ones are stored together (durably, in the metadata database) and take effect on every
//! open connection at once. In a cluster they are one command through the controller and take
//! effect at every member as it applies it (`crate::cluster::controller_acl_store`).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse, ResponseKind};
use rill_core::authorizer::acl::{
    AccessControlEntry, AclBinding, AclOperation, AclPermissionType, PatternType, ResourcePattern,
    ResourceType,
};

use super::authorization::{acl_api_refusal, Caller};
use super::{error_codes, Context};

fn result(code: i16, message: Option<String>) -> AclCreationResult {
    AclCreationResult::default()
        .with_error_code(code)
        .with_error_message(message.and_then(error_codes::message))
}

/// Answer CreateAcls.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    _version: i16,
    req: CreateAclsRequest,
) -> ResponseKind {
    let respond =
        |results| ResponseKind::CreateAcls(CreateAclsResponse::default().with_results(results));
    let refusal = acl_api_refusal(ctx.authorization.as_deref(), caller, AclOperation::Alter);
    let (Some(authorization), None) = (ctx.authorization.clone(), refusal.clone()) else {
        let (code, msg) =
            refusal.unwrap_or((ResponseError::SecurityDisabled.code(), String::new()));
        return respond(
            req.creations
                .iter()
                .map(|_| result(code, Some(msg.clone())))
                .collect(),
        );
    };
    let bindings: Vec<AclBinding> = req
        .creations
        .iter()
        .map(|c| AclBinding {
            pattern: ResourcePattern {
                resource_type: ResourceType::from_code(c.resource_type),
                name: c.resource_name.to_string(),
                pattern_type: PatternType::from_code(c.resource_pattern_type),
            },
            entry: AccessControlEntry {
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: AclOperation::from_code(c.operation),
                permission: AclPermissionType::from_code(c.permission_type),
            },
        })
        .collect();
    let count = bindings.len();
    let who = caller.principal.clone();
    let outcome =
        tokio::task::spawn_blocking(move || authorization.authorizer().create(bindings)).await;
    let results = match outcome {
        Ok(Ok(results)) => results
            .into_iter()
            .map(|r| match r {
                Ok(()) => result(error_codes::NONE, None),
                Err(e) => result(ResponseError::InvalidRequest.code(), Some(e.to_string())),
            })
            .collect(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "storing ACLs failed");
            (0..count)
                .map(|_| result(error_codes::acl_store_error_code(&e), Some(e.to_string())))
                .collect()
        }
        Err(join) => (0..count)
            .map(|_| {
                result(
                    ResponseError::UnknownServerError.code(),
                    Some(join.to_string()),
                )
            })
            .collect(),
    };
    tracing::info!(principal = %who, count, "CreateAcls");
    respond(results)
}
