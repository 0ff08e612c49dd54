//! DescribeAcls (key 29, v1-3): the ACL bindings a filter matches, grouped by resource pattern.
//! Needs DESCRIBE on the cluster. A filter with an unknown field gets INVALID_REQUEST.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclOperation, ResourcePattern};

use super::authorization::{acl_api_refusal, wire_filter, Caller};
use super::{error_codes, Context};

/// Answer DescribeAcls.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    _version: i16,
    req: DescribeAclsRequest,
) -> ResponseKind {
    let error = |code: i16, msg: String| {
        ResponseKind::DescribeAcls(
            DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(error_codes::message(msg)),
        )
    };
    if let Some((code, msg)) =
        acl_api_refusal(ctx.authorization.as_deref(), caller, AclOperation::Describe)
    {
        return error(code, msg);
    }
    let Some(authorization) = &ctx.authorization else {
        return error(ResponseError::SecurityDisabled.code(), String::new());
    };
    let filter = wire_filter(
        req.resource_type_filter,
        req.resource_name_filter.as_deref(),
        req.pattern_type_filter,
        req.principal_filter.as_deref(),
        req.host_filter.as_deref(),
        req.operation,
        req.permission_type,
    );
    let bindings = match authorization.authorizer().describe(&filter) {
        Ok(b) => b,
        Err(e) => return error(ResponseError::InvalidRequest.code(), e.to_string()),
    };
    let mut by_pattern: BTreeMap<ResourcePattern, Vec<AclDescription>> = BTreeMap::new();
    for b in bindings {
        by_pattern.entry(b.pattern).or_default().push(
            AclDescription::default()
                .with_principal(StrBytes::from_string(b.entry.principal))
                .with_host(StrBytes::from_string(b.entry.host))
                .with_operation(b.entry.operation.code())
                .with_permission_type(b.entry.permission.code()),
        );
    }
    let resources = by_pattern
        .into_iter()
        .map(|(p, acls)| {
            DescribeAclsResource::default()
                .with_resource_type(p.resource_type.code())
                .with_resource_name(StrBytes::from_string(p.name))
                .with_pattern_type(p.pattern_type.code())
                .with_acls(acls)
        })
        .collect();
    ResponseKind::DescribeAcls(
        DescribeAclsResponse::default()
            .with_error_message(None)
            .with_resources(resources),
    )
}
