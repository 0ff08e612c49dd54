//! ConsumerGroupDescribe (key 69), v0-1: KIP-848 groups with their epochs, assignor and members
//! (subscriptions, current and target assignments). Classic groups are GROUP_ID_NOT_FOUND, as in
//! Kafka.

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::group::Assignment as Parts;

use super::authorization::Caller;
use super::groups::{opt, s};
use super::Context;

/// READ, DELETE, DESCRIBE (reported with the authorizer off).
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

fn assignment(ctx: &Context, parts: Parts) -> Assignment {
    Assignment::default().with_topic_partitions(
        parts
            .into_iter()
            .map(|(id, ps)| {
                let name = ctx
                    .broker
                    .topic_by_id(id)
                    .map(|t| t.name)
                    .unwrap_or_default();
                TopicPartitions::default()
                    .with_topic_id(id)
                    .with_topic_name(TopicName(s(name)))
                    .with_partitions(ps.into_iter().collect())
            })
            .collect(),
    )
}

/// Answer ConsumerGroupDescribe.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    _version: i16,
    req: ConsumerGroupDescribeRequest,
) -> ResponseKind {
    let want_ops = req.include_authorized_operations;
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            let ops = if want_ops {
                ctx.authorized_operations(caller, ResourceType::Group, &id.0)
                    .unwrap_or(GROUP_OPERATIONS)
            } else {
                i32::MIN
            };
            let base = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(ops);
            if !ctx.authorize(caller, AclOperation::Describe, ResourceType::Group, &id.0) {
                return base.with_error_code(
                    kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code(),
                );
            }
            match ctx
                .coordinator(&id.0)
                .and_then(|groups| groups.consumer_group_describe(&id.0))
            {
                Err(e) => base
                    .with_error_code(e.code())
                    .with_error_message(Some(s(format!("group {}: {e}", id.0)))),
                Ok(d) => base
                    .with_group_state(StrBytes::from_static_str(d.state))
                    .with_group_epoch(d.group_epoch)
                    .with_assignment_epoch(d.assignment_epoch)
                    .with_assignor_name(s(d.assignor))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                Member::default()
                                    .with_member_id(s(m.member_id))
                                    .with_instance_id(opt(m.instance_id))
                                    .with_rack_id(opt(m.rack_id))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(s(m.client_id))
                                    .with_client_host(s(m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed_topic_names
                                            .into_iter()
                                            .map(|t| TopicName(s(t)))
                                            .collect(),
                                    )
                                    .with_assignment(assignment(ctx, m.assignment))
                                    .with_target_assignment(assignment(ctx, m.target_assignment))
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    ResponseKind::ConsumerGroupDescribe(
        ConsumerGroupDescribeResponse::default().with_groups(groups),
    )
}
