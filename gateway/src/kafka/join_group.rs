//! JoinGroup (key 11), v0-9: a member joins (or rejoins) a group; the response comes when the
//! rebalance completes, so it is a [`Reply::Later`]. v4+ new members first get MEMBER_ID_REQUIRED;
//! v5+ carry `group.instance.id` (static membership); v9 may tell a static leader to skip
//! assignment.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::FutureExt;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader, ResponseKind};
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::group::{GroupError, JoinRequest, JoinResponse};

use super::authorization::Caller;
use super::groups::{client_host, ms, opt, s};
use super::reply::Reply;
use super::Context;

/// Start the join; the reply waits for the rebalance.
pub fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    version: i16,
    header: &RequestHeader,
    peer: SocketAddr,
    req: JoinGroupRequest,
) -> Reply {
    if !ctx.authorize(
        caller,
        AclOperation::Read,
        ResourceType::Group,
        &req.group_id,
    ) {
        return Reply::Now(ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(
                    kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code(),
                )
                .with_generation_id(-1)
                .with_member_id(req.member_id),
        ));
    }
    let session = ms(req.session_timeout_ms);
    let rebalance = if version >= 1 && req.rebalance_timeout_ms >= 0 {
        ms(req.rebalance_timeout_ms)
    } else {
        session
    };
    let request = JoinRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|i| i.to_string()),
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: client_host(peer),
        session_timeout_ms: session,
        rebalance_timeout_ms: rebalance,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let member_id = request.member_id.clone();
    let rx = match ctx.coordinator(&request.group_id) {
        Ok(groups) => groups.join_group(request),
        Err(e) => {
            // NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS: the client finds the coordinator.
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(JoinResponse {
                error: Some(e),
                generation_id: -1,
                protocol_type: None,
                protocol_name: None,
                leader: String::new(),
                skip_assignment: false,
                member_id: member_id.clone(),
                members: Vec::new(),
            });
            rx
        }
    };
    Reply::Later(
        async move {
            // The coordinator drops a waiter only when the same member joins again meanwhile.
            let resp = rx.await.unwrap_or_else(|_| JoinResponse {
                error: Some(GroupError::RebalanceInProgress),
                generation_id: -1,
                protocol_type: None,
                protocol_name: None,
                leader: String::new(),
                skip_assignment: false,
                member_id,
                members: Vec::new(),
            });
            ResponseKind::JoinGroup(encode(version, resp))
        }
        .boxed(),
    )
}

fn encode(version: i16, r: JoinResponse) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(s(m.member_id))
                .with_group_instance_id(if version >= 5 {
                    opt(m.group_instance_id)
                } else {
                    None
                })
                .with_metadata(m.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(r.error.as_ref().map_or(0, GroupError::code))
        .with_generation_id(r.generation_id)
        .with_protocol_type(opt(r.protocol_type))
        .with_protocol_name(opt(r.protocol_name))
        .with_leader(s(r.leader))
        .with_skip_assignment(version >= 9 && r.skip_assignment)
        .with_member_id(s(r.member_id))
        .with_members(members)
}
