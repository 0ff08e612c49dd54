//! FindCoordinator (key 10), v0-6: this node coordinates every consumer group and every
//! transactional id. v4+ batches several keys in one request.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclOperation, ResourceType};

use super::authorization::Caller;
use super::Context;

/// Key type of a consumer group.
pub const KEY_TYPE_GROUP: i8 = 0;
/// Key type of a transactional id.
pub const KEY_TYPE_TRANSACTION: i8 = 1;

/// Why a key cannot be coordinated here, if it cannot.
fn check(ctx: &Context, caller: &Caller, key_type: i8, key: &StrBytes) -> Option<(i16, String)> {
    let denied = |resource_type, code: ResponseError| {
        (!ctx.authorize(caller, AclOperation::Describe, resource_type, key)).then(|| {
            (
                code.code(),
                format!(
                    "{} may not DESCRIBE {resource_type} {key}",
                    caller.principal
                ),
            )
        })
    };
    match key_type {
        KEY_TYPE_GROUP => denied(ResourceType::Group, ResponseError::GroupAuthorizationFailed),
        KEY_TYPE_TRANSACTION if key.is_empty() => Some((
            ResponseError::InvalidRequest.code(),
            "empty transactional id".into(),
        )),
        KEY_TYPE_TRANSACTION => denied(
            ResourceType::TransactionalId,
            ResponseError::TransactionalIdAuthorizationFailed,
        ),
        other => Some((
            ResponseError::InvalidRequest.code(),
            format!("unsupported coordinator key type {other}"),
        )),
    }
}

/// Answer FindCoordinator.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    version: i16,
    req: FindCoordinatorRequest,
) -> ResponseKind {
    let port = i32::from(ctx.advertised_port);
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match check(ctx, caller, req.key_type, &key) {
                    None => c
                        .with_node_id(BrokerId(ctx.node_id))
                        .with_host(ctx.host())
                        .with_port(port),
                    Some((code, msg)) => c
                        .with_node_id(BrokerId(-1))
                        .with_host(StrBytes::default())
                        .with_port(-1)
                        .with_error_code(code)
                        .with_error_message(Some(StrBytes::from_string(msg))),
                }
            })
            .collect();
        return ResponseKind::FindCoordinator(
            FindCoordinatorResponse::default().with_coordinators(coordinators),
        );
    }
    let key_type = if version >= 1 {
        req.key_type
    } else {
        KEY_TYPE_GROUP
    };
    let resp = match check(ctx, caller, key_type, &req.key) {
        None => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(ctx.node_id))
            .with_host(ctx.host())
            .with_port(port),
        Some((code, msg)) => FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_error_message((version >= 1).then(|| StrBytes::from_string(msg)))
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    };
    ResponseKind::FindCoordinator(resp)
}
