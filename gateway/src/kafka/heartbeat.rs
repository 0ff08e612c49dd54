//! Heartbeat (key 12), v0-4: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to
//! rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse, ResponseKind};
use rill_core::group::{GroupError, HeartbeatRequest as Beat};

use super::Context;

/// Answer Heartbeat.
pub fn handle(ctx: &Context, _version: i16, req: HeartbeatRequest) -> ResponseKind {
    let beat = Beat {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|i| i.to_string()),
    };
    let code = match ctx.groups.heartbeat(&beat) {
        Ok(()) => 0,
        Err(e) => GroupError::code(&e),
    };
    ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
}
