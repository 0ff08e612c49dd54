//! AlterConfigs (key 33): replace a topic's overrides with the given set. Broker settings come
//! from the node's TOML file and are read-only here.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ResponseKind};
use rill_core::authorizer::acl::AclOperation;
use rill_core::broker::ConfigOp;

use super::authorization::Caller;
use super::describe_configs::{config_resource_denied, RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{error_codes, Context};

/// Apply `ops` to a topic off the async threads; `(code, message)`.
pub async fn alter_topic(
    ctx: &Arc<Context>,
    topic: String,
    ops: Vec<ConfigOp>,
    incremental: bool,
    validate_only: bool,
) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    let broker = ctx.broker.clone();
    let name = topic.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        broker.alter_topic_config(&name, &ops, incremental, validate_only)
    })
    .await;
    match outcome {
        Ok(Ok(())) => {
            if !validate_only {
                tracing::info!(topic = %topic, incremental, "altered topic config");
            }
            (error_codes::NONE, None)
        }
        Ok(Err(e)) => error_codes::broker_error(&e),
        Err(join) => (
            ResponseError::UnknownServerError.code(),
            error_codes::message(join.to_string()),
        ),
    }
}

/// The answer for a resource type this node cannot alter.
pub fn unsupported_resource(
    resource_type: i8,
) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    if resource_type == RESOURCE_BROKER {
        (
            ResponseError::InvalidRequest.code(),
            error_codes::message(
                "broker settings come from the node's TOML file and are read-only",
            ),
        )
    } else {
        (
            ResponseError::InvalidRequest.code(),
            error_codes::message(format!("resource type {resource_type} is not supported")),
        )
    }
}

/// Answer AlterConfigs.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    _version: i16,
    req: AlterConfigsRequest,
) -> ResponseKind {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let denied = config_resource_denied(
            ctx,
            caller,
            AclOperation::AlterConfigs,
            r.resource_type,
            &r.resource_name,
        );
        let (code, msg) = if let Some(code) = denied {
            (code, None)
        } else if r.resource_type == RESOURCE_TOPIC {
            let ops = r
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| ConfigOp::Set(c.name.to_string(), v.to_string()))
                })
                .collect();
            alter_topic(
                ctx,
                r.resource_name.to_string(),
                ops,
                false,
                req.validate_only,
            )
            .await
        } else {
            unsupported_resource(r.resource_type)
        };
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(responses))
}
