//! DeleteGroups (key 42), v0-2: delete empty groups and their committed offsets
//! (NON_EMPTY_GROUP while members remain, GROUP_ID_NOT_FOUND for unknown groups).

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, ResponseKind};
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::group::GroupError;

use super::authorization::Caller;
use super::Context;

/// Answer DeleteGroups (the deletes are redb writes, done on the blocking pool).
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    _version: i16,
    req: DeleteGroupsRequest,
) -> ResponseKind {
    // Groups the caller may not DELETE are answered GROUP_AUTHORIZATION_FAILED, the rest deleted.
    let allowed: Vec<bool> = req
        .groups_names
        .iter()
        .map(|g| ctx.authorize(caller, AclOperation::Delete, ResourceType::Group, g))
        .collect();
    let ids: Vec<String> = req
        .groups_names
        .iter()
        .zip(&allowed)
        .filter(|(_, ok)| **ok)
        .map(|(g, _)| g.0.to_string())
        .collect();
    let wanted = ids.len();
    let routed: Vec<_> = ids.iter().map(|id| ctx.coordinator(id)).collect();
    let results = tokio::task::spawn_blocking(move || {
        // Each group on its own coordinator (one shard per __consumer_offsets partition).
        ids.iter()
            .zip(routed)
            .map(|(id, c)| match c {
                Ok(c) => c
                    .delete_groups(std::slice::from_ref(id))
                    .pop()
                    .unwrap_or(Err(GroupError::CoordinatorNotAvailable)),
                Err(e) => Err(e),
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_else(|_| {
        (0..wanted)
            .map(|_| Err(GroupError::CoordinatorNotAvailable))
            .collect()
    });
    let mut results = results.into_iter();
    let results = req
        .groups_names
        .into_iter()
        .zip(allowed)
        .map(|(id, ok)| {
            let code = if ok {
                results.next().and_then(|r| r.err()).map_or(0, |e| e.code())
            } else {
                kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code()
            };
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code)
        })
        .collect();
    ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results))
}
