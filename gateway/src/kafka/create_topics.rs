//! CreateTopics (key 19): replication factor -1 or 1 (this node has no replicas), topic configs,
//! `validate_only`, per-topic errors with messages.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclOperation, ResourceType, CLUSTER_NAME};
use rill_core::broker::TopicMeta;

use super::authorization::Caller;
use super::{describe_configs, error_codes, Context};

/// Answer CreateTopics.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    version: i16,
    req: CreateTopicsRequest,
) -> ResponseKind {
    let mut results = Vec::with_capacity(req.topics.len());
    // Kafka: CREATE on the cluster, or else on each topic.
    let cluster_create = ctx.authorize_quietly(
        caller,
        AclOperation::Create,
        ResourceType::Cluster,
        CLUSTER_NAME,
    );
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        if !cluster_create
            && !ctx.authorize(caller, AclOperation::Create, ResourceType::Topic, &name)
        {
            results.push(
                result
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_error_message(error_codes::message(format!(
                        "{} may not CREATE topic {name}",
                        caller.principal
                    ))),
            );
            continue;
        }
        if t.replication_factor != -1 && t.replication_factor != 1 {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidReplicationFactor.code())
                    .with_error_message(error_codes::message(format!(
                        "replication factor {} is not possible: this node has no replicas (use 1 or -1)",
                        t.replication_factor
                    ))),
            );
            continue;
        }
        if !t.assignments.is_empty() {
            let ok = t
                .assignments
                .iter()
                .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == ctx.node_id);
            if !ok {
                results.push(
                    result
                        .with_error_code(ResponseError::InvalidReplicaAssignment.code())
                        .with_error_message(error_codes::message(format!(
                            "every partition must be assigned to this node ({}) alone",
                            ctx.node_id
                        ))),
                );
                continue;
            }
        }
        let partitions = if !t.assignments.is_empty() {
            t.assignments.len() as i32
        } else if t.num_partitions == -1 {
            ctx.broker.config().default_partitions
        } else {
            t.num_partitions
        };
        let mut overrides = BTreeMap::new();
        for c in &t.configs {
            if let Some(v) = &c.value {
                overrides.insert(c.name.to_string(), v.to_string());
            }
        }
        let broker = ctx.broker.clone();
        let validate_only = req.validate_only;
        let outcome = tokio::task::spawn_blocking(move || {
            broker.create_topic(&name, partitions, &overrides, validate_only)
        })
        .await;
        let result = match error_codes::blocking_broker_result(outcome) {
            Ok(meta) => {
                if !validate_only {
                    tracing::info!(topic = %meta.name, partitions = meta.partitions, "created topic");
                }
                success(version, result, &meta)
            }
            Err((code, msg)) => result.with_error_code(code).with_error_message(msg),
        };
        results.push(result);
    }
    ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(results))
}

fn success(version: i16, result: CreatableTopicResult, meta: &TopicMeta) -> CreatableTopicResult {
    let result = result
        .with_topic_id(meta.id)
        .with_num_partitions(meta.partitions)
        .with_replication_factor(1);
    if version < 5 {
        return result;
    }
    let configs = meta
        .config
        .describe(&meta.overrides)
        .into_iter()
        .map(|e| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_string(e.name))
                .with_value(Some(StrBytes::from_string(e.value)))
                .with_read_only(e.read_only)
                .with_is_sensitive(e.sensitive)
                .with_config_source(describe_configs::source_code(e.source))
        })
        .collect();
    result.with_configs(Some(configs))
}
