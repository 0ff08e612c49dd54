//! DeleteAcls (key 31, v1-3): remove every ACL binding each filter matches and answer, per
//! filter, the bindings it removed. Needs ALTER on the cluster. A filter with an unknown field
//! gets INVALID_REQUEST and removes nothing; the other filters are applied together, durably.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclBindingFilter, AclOperation};

use super::authorization::{acl_api_refusal, wire_filter, Caller};
use super::{error_codes, Context};

fn failed(code: i16, msg: String) -> DeleteAclsFilterResult {
    DeleteAclsFilterResult::default()
        .with_error_code(code)
        .with_error_message(error_codes::message(msg))
}

/// Answer DeleteAcls.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    _version: i16,
    req: DeleteAclsRequest,
) -> ResponseKind {
    let respond = |results| {
        ResponseKind::DeleteAcls(DeleteAclsResponse::default().with_filter_results(results))
    };
    let refusal = acl_api_refusal(ctx.authorization.as_deref(), caller, AclOperation::Alter);
    let (Some(authorization), None) = (ctx.authorization.clone(), refusal.clone()) else {
        let (code, msg) =
            refusal.unwrap_or((ResponseError::SecurityDisabled.code(), String::new()));
        return respond(
            req.filters
                .iter()
                .map(|_| failed(code, msg.clone()))
                .collect(),
        );
    };
    let filters: Vec<AclBindingFilter> = req
        .filters
        .iter()
        .map(|f| {
            wire_filter(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let count = filters.len();
    let who = caller.principal.clone();
    let outcome =
        tokio::task::spawn_blocking(move || authorization.authorizer().delete(&filters)).await;
    let results = match outcome {
        Ok(Ok(per_filter)) => per_filter
            .into_iter()
            .map(|r| match r {
                Ok(removed) => DeleteAclsFilterResult::default()
                    .with_error_message(None)
                    .with_matching_acls(
                        removed
                            .into_iter()
                            .map(|b| {
                                DeleteAclsMatchingAcl::default()
                                    .with_error_message(None)
                                    .with_resource_type(b.pattern.resource_type.code())
                                    .with_resource_name(StrBytes::from_string(b.pattern.name))
                                    .with_pattern_type(b.pattern.pattern_type.code())
                                    .with_principal(StrBytes::from_string(b.entry.principal))
                                    .with_host(StrBytes::from_string(b.entry.host))
                                    .with_operation(b.entry.operation.code())
                                    .with_permission_type(b.entry.permission.code())
                            })
                            .collect(),
                    ),
                Err(e) => failed(ResponseError::InvalidRequest.code(), e.to_string()),
            })
            .collect(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "removing ACLs failed");
            (0..count)
                .map(|_| failed(error_codes::acl_store_error_code(&e), e.to_string()))
                .collect()
        }
        Err(join) => (0..count)
            .map(|_| failed(ResponseError::UnknownServerError.code(), join.to_string()))
            .collect(),
    };
    tracing::info!(principal = %who, filters = count, "DeleteAcls");
    respond(results)
}
