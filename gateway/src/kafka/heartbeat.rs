//! Heartbeat (key 12), v0-4: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to
//! rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse, ResponseKind};
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::group::{GroupError, HeartbeatRequest as Beat};

use super::authorization::Caller;
use super::Context;

/// Answer Heartbeat.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    _version: i16,
    req: HeartbeatRequest,
) -> ResponseKind {
    if !ctx.authorize(
        caller,
        AclOperation::Read,
        ResourceType::Group,
        &req.group_id,
    ) {
        return ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(
            kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code(),
        ));
    }
    let beat = Beat {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|i| i.to_string()),
    };
    let code = match ctx
        .coordinator(&beat.group_id)
        .and_then(|groups| groups.heartbeat(&beat))
    {
        Ok(()) => 0,
        Err(e) => GroupError::code(&e),
    };
    ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
}
