//! LeaveGroup (key 13), v0-5: members leave (v3+ several at once, also by `group.instance.id`).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse, ResponseKind};
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::group::{GroupError, LeavingMember};

use super::authorization::Caller;
use super::Context;

fn code(r: &Result<(), GroupError>) -> i16 {
    r.as_ref().err().map_or(0, GroupError::code)
}

/// Answer LeaveGroup.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    version: i16,
    req: LeaveGroupRequest,
) -> ResponseKind {
    let group_id = req.group_id.0.to_string();
    if !ctx.authorize(caller, AclOperation::Read, ResourceType::Group, &group_id) {
        return ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(
            kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code(),
        ));
    }
    let leaving: Vec<LeavingMember> = if version >= 3 {
        req.members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let resp = match ctx
        .coordinator(&group_id)
        .and_then(|groups| groups.leave_group(&group_id, &leaving))
    {
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
        Ok(results) if version >= 3 => {
            let members = req
                .members
                .into_iter()
                .zip(results.iter())
                .map(|(m, r)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(code(r))
                })
                .collect();
            LeaveGroupResponse::default().with_members(members)
        }
        Ok(results) => {
            LeaveGroupResponse::default().with_error_code(results.first().map_or(0, code))
        }
    };
    ResponseKind::LeaveGroup(resp)
}
