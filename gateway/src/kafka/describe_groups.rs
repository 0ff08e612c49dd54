//! DescribeGroups (key 15), v0-6: state, protocol and members (with metadata and assignment while
//! Stable) of groups. An unknown group is "Dead" (v0-5) or GROUP_ID_NOT_FOUND (v6+), as Kafka.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::group::{ClassicGroupStateName, GroupError};

use super::authorization::Caller;
use super::groups::{opt, s};
use super::Context;

/// ACL operations a group supports (READ, DELETE, DESCRIBE), reported when asked for and the
/// authorizer is off.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// "Not requested" marker of `authorized_operations`.
const NOT_REQUESTED: i32 = i32::MIN;

/// Answer DescribeGroups.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    version: i16,
    req: DescribeGroupsRequest,
) -> ResponseKind {
    let want_ops = version >= 3 && req.include_authorized_operations;
    let groups =
        req.groups
            .into_iter()
            .map(|id| {
                let ops = if want_ops {
                    ctx.authorized_operations(caller, ResourceType::Group, &id.0)
                        .unwrap_or(GROUP_OPERATIONS)
                } else {
                    NOT_REQUESTED
                };
                let base = DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_authorized_operations(ops);
                if !ctx.authorize(caller, AclOperation::Describe, ResourceType::Group, &id.0) {
                    return base
                        .with_authorized_operations(NOT_REQUESTED)
                        .with_error_code(
                            kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code(),
                        )
                        .with_group_state(StrBytes::from_static_str(""));
                }
                match ctx
                    .coordinator(&id.0)
                    .and_then(|groups| groups.describe_group(&id.0))
                {
                    Ok(d) => base
                        .with_group_state(StrBytes::from_static_str(d.state.as_str()))
                        .with_protocol_type(s(d.protocol_type))
                        .with_protocol_data(s(d.protocol))
                        .with_members(
                            d.members
                                .into_iter()
                                .map(|m| {
                                    DescribedGroupMember::default()
                                        .with_member_id(s(m.member_id))
                                        .with_group_instance_id(if version >= 4 {
                                            opt(m.group_instance_id)
                                        } else {
                                            None
                                        })
                                        .with_client_id(s(m.client_id))
                                        .with_client_host(s(m.client_host))
                                        .with_member_metadata(m.metadata)
                                        .with_member_assignment(m.assignment)
                                })
                                .collect(),
                        ),
                    Err(GroupError::GroupIdNotFound) if version < 6 => base.with_group_state(
                        StrBytes::from_static_str(ClassicGroupStateName::Dead.as_str()),
                    ),
                    Err(e) => {
                        let base = base.with_error_code(e.code()).with_group_state(
                            StrBytes::from_static_str(ClassicGroupStateName::Dead.as_str()),
                        );
                        if version >= 6 {
                            base.with_error_message(Some(s(format!("group {}: {e}", id.0))))
                        } else {
                            base
                        }
                    }
                }
            })
            .collect();
    ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups))
}
