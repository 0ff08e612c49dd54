//! DeleteGroups (key 42), v0-2: delete empty groups and their committed offsets
//! (NON_EMPTY_GROUP while members remain, GROUP_ID_NOT_FOUND for unknown groups).

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, ResponseKind};
use rill_core::group::GroupError;

use super::Context;

/// Answer DeleteGroups (the deletes are redb writes, done on the blocking pool).
pub async fn handle(ctx: &Arc<Context>, _version: i16, req: DeleteGroupsRequest) -> ResponseKind {
    let ids: Vec<String> = req.groups_names.iter().map(|g| g.0.to_string()).collect();
    let groups = ctx.groups.clone();
    let results = tokio::task::spawn_blocking(move || groups.delete_groups(&ids))
        .await
        .unwrap_or_else(|_| {
            req.groups_names
                .iter()
                .map(|_| Err(GroupError::CoordinatorNotAvailable))
                .collect()
        });
    let results = req
        .groups_names
        .into_iter()
        .zip(results)
        .map(|(id, r)| {
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(r.err().map_or(0, |e| e.code()))
        })
        .collect();
    ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results))
}
