//! CreatePartitions (key 37): grow a topic to a new total partition count.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, ResponseKind};
use rill_core::authorizer::acl::{AclOperation, ResourceType};

use super::authorization::Caller;
use super::{error_codes, Context};

/// Answer CreatePartitions.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    _version: i16,
    req: CreatePartitionsRequest,
) -> ResponseKind {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if !ctx.authorize(caller, AclOperation::Alter, ResourceType::Topic, &t.name) {
            results.push(result.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
            continue;
        }
        if let Some(assignments) = &t.assignments {
            let ok = assignments
                .iter()
                .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == ctx.node_id);
            if !ok {
                results.push(
                    result
                        .with_error_code(ResponseError::InvalidReplicaAssignment.code())
                        .with_error_message(error_codes::message(format!(
                            "new partitions must be assigned to this node ({}) alone",
                            ctx.node_id
                        ))),
                );
                continue;
            }
        }
        let broker = ctx.broker.clone();
        let name = t.name.0.to_string();
        let (count, validate_only) = (t.count, req.validate_only);
        let outcome = tokio::task::spawn_blocking(move || {
            broker.create_partitions(&name, count, validate_only)
        })
        .await;
        results.push(match error_codes::blocking_broker_result(outcome) {
            Ok(()) => {
                if !validate_only {
                    tracing::info!(topic = %t.name.0, partitions = count, "grew topic");
                }
                result
            }
            Err((code, msg)) => result.with_error_code(code).with_error_message(msg),
        });
    }
    ResponseKind::CreatePartitions(CreatePartitionsResponse::default().with_results(results))
}
