//! ListGroups (key 16), v0-5: every group this node coordinates, optionally filtered by state
//! (v4+) and group type (v5+: "classic" or "consumer" for KIP-848 groups).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::group::ClassicGroupStateName;

use super::authorization::Caller;
use super::groups::s;
use super::Context;

/// Answer ListGroups.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    version: i16,
    req: ListGroupsRequest,
) -> ResponseKind {
    // Kafka: DESCRIBE on the cluster lists every group, else those the caller may DESCRIBE.
    let all = ctx.authorize_quietly(
        caller,
        AclOperation::Describe,
        ResourceType::Cluster,
        rill_core::authorizer::acl::CLUSTER_NAME,
    );
    let states_filter = if version >= 4 {
        req.states_filter
    } else {
        Vec::new()
    };
    let types_filter = if version >= 5 {
        req.types_filter
    } else {
        Vec::new()
    };
    let states: Vec<ClassicGroupStateName> = states_filter
        .iter()
        .filter_map(|st| ClassicGroupStateName::parse(st))
        .collect();
    let nothing_matches = !states_filter.is_empty() && states.is_empty();
    let groups = if nothing_matches {
        Vec::new()
    } else {
        ctx.all_coordinators()
            .iter()
            .flat_map(|c| c.list_groups(&states))
            .filter(|g| {
                all || ctx.authorize_quietly(
                    caller,
                    AclOperation::Describe,
                    ResourceType::Group,
                    &g.group_id,
                )
            })
            .filter(|g| {
                types_filter.is_empty()
                    || types_filter
                        .iter()
                        .any(|t| t.eq_ignore_ascii_case(g.group_type))
            })
            .map(|g| {
                let listed = ListedGroup::default()
                    .with_group_id(GroupId(s(g.group_id)))
                    .with_protocol_type(s(g.protocol_type));
                let listed = if version >= 4 {
                    listed.with_group_state(s(g.state))
                } else {
                    listed
                };
                if version >= 5 {
                    listed.with_group_type(StrBytes::from_static_str(g.group_type))
                } else {
                    listed
                }
            })
            .collect()
    };
    ResponseKind::ListGroups(ListGroupsResponse::default().with_groups(groups))
}
