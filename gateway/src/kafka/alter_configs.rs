//! AlterConfigs (key 33): replace a topic's overrides with the given set. Broker settings come
//! from the node's TOML file and are read-only here.
//!
//! In a cluster the new overrides are computed from the metadata image's and validated with the
//! topic config rules ([`Broker::plan_topic_config`](rill_core::broker::Broker::plan_topic_config)),
//! then the difference is submitted to the controller (`Command::AlterTopicConfigs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, ResponseKind};
use rill_core::authorizer::acl::AclOperation;
use rill_core::broker::ConfigOp;
use rill_core::controller::Command;

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
    if let Some(cluster) = &ctx.cluster {
        let Some(current) = cluster.image().topic(&topic).map(|t| t.configs.clone()) else {
            return (
                ResponseError::UnknownTopicOrPartition.code(),
                error_codes::message(format!("topic '{topic}' does not exist")),
            );
        };
        let next = match ctx
            .broker
            .plan_topic_config(&topic, &current, &ops, incremental)
        {
            Ok((next, _)) => next,
            Err(e) => return error_codes::broker_error(&e),
        };
        if validate_only {
            return (error_codes::NONE, None);
        }
        let (set, delete) = config_change(&current, &next);
        return match cluster
            .submit(Command::AlterTopicConfigs {
                topic: topic.clone(),
                set,
                delete,
            })
            .await
        {
            Ok(_) => {
                tracing::info!(topic = %topic, incremental, "altered topic config");
                (error_codes::NONE, None)
            }
            Err(e) => error_codes::submit_error(&e),
        };
    }
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

/// The overrides to set and to remove to go from `current` to `next`.
pub fn config_change(
    current: &BTreeMap<String, String>,
    next: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let set = next
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete = current
        .keys()
        .filter(|k| !next.contains_key(*k))
        .cloned()
        .collect();
    (set, delete)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_change_sets_what_differs_and_removes_what_is_gone() {
        let m = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let current = m(&[("retention.ms", "1000"), ("cleanup.policy", "delete")]);
        let next = m(&[("retention.ms", "1000"), ("segment.bytes", "1048576")]);
        let (set, delete) = config_change(&current, &next);
        assert_eq!(set, m(&[("segment.bytes", "1048576")]));
        assert_eq!(delete, BTreeSet::from(["cleanup.policy".to_string()]));
        assert_eq!(
            config_change(&next, &next),
            (BTreeMap::new(), BTreeSet::new())
        );
    }
}
