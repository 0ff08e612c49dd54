//! SyncGroup (key 14), v0-5: the leader brings the assignment; followers wait for it, so the
//! reply is a [`Reply::Later`]. Assignments are opaque bytes.

use std::sync::Arc;

use futures::FutureExt;
use kafka_protocol::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::group::{GroupError, SyncRequest, SyncResponse};

use super::authorization::Caller;
use super::groups::opt;
use super::reply::Reply;
use super::Context;

/// Deliver (leader) or await (follower) the assignment.
pub fn handle(ctx: &Arc<Context>, caller: &Caller, version: i16, req: SyncGroupRequest) -> Reply {
    if !ctx.authorize(
        caller,
        AclOperation::Read,
        ResourceType::Group,
        &req.group_id,
    ) {
        return Reply::Now(ResponseKind::SyncGroup(
            SyncGroupResponse::default().with_error_code(
                kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code(),
            ),
        ));
    }
    let request = SyncRequest {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|i| i.to_string()),
        protocol_type: if version >= 5 {
            req.protocol_type.map(|p| p.to_string())
        } else {
            None
        },
        protocol_name: if version >= 5 {
            req.protocol_name.map(|p| p.to_string())
        } else {
            None
        },
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let rx = match ctx.coordinator(&request.group_id) {
        Ok(groups) => groups.sync_group(request),
        Err(e) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(SyncResponse::error(e));
            rx
        }
    };
    Reply::Later(
        async move {
            let r = rx.await.unwrap_or(SyncResponse {
                error: Some(GroupError::RebalanceInProgress),
                protocol_type: None,
                protocol_name: None,
                assignment: Default::default(),
            });
            ResponseKind::SyncGroup(
                SyncGroupResponse::default()
                    .with_error_code(r.error.as_ref().map_or(0, GroupError::code))
                    .with_protocol_type(opt(r.protocol_type))
                    .with_protocol_name(opt(r.protocol_name))
                    .with_assignment(r.assignment),
            )
        }
        .boxed(),
    )
}
