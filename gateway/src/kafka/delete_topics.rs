//! DeleteTopics (key 20): by name, or by topic id (v6+). In a cluster the topic is looked up in
//! the metadata image and deleted by the controller (`Command::DeleteTopic`); each replica
//! removes its partition logs when it applies the new image.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    DeleteTopicsRequest, DeleteTopicsResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use uuid::Uuid;

use rill_core::controller::Command;

use super::authorization::Caller;
use super::{error_codes, Context};

/// The answer for a topic that does not exist, asked for by name or (`by_name` false) by id.
fn unknown_topic(result: DeletableTopicResult, by_name: bool) -> DeletableTopicResult {
    let code = if by_name {
        ResponseError::UnknownTopicOrPartition.code()
    } else {
        ResponseError::UnknownTopicId.code()
    };
    result
        .with_error_code(code)
        .with_error_message(error_codes::message("topic does not exist"))
}

/// Answer DeleteTopics.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    version: i16,
    req: DeleteTopicsRequest,
) -> ResponseKind {
    // v0-5 carry names in `topic_names`; v6+ carry `topics` with a name or an id.
    let wanted: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        if let Some(cluster) = &ctx.cluster {
            let image = cluster.image();
            let topic = match &name {
                Some(n) => image.topic(n),
                None => image.topic_by_id(&id),
            };
            let result = DeletableTopicResult::default()
                .with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))))
                .with_topic_id(id);
            let Some(topic) = topic else {
                responses.push(unknown_topic(result, name.is_some()));
                continue;
            };
            let (topic_name, topic_id) = (topic.name.clone(), topic.topic_id);
            if !ctx.authorize(
                caller,
                AclOperation::Delete,
                ResourceType::Topic,
                &topic_name,
            ) {
                responses.push(
                    result
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        .with_error_message(error_codes::message(format!(
                            "{} may not DELETE topic {topic_name}",
                            caller.principal
                        ))),
                );
                continue;
            }
            let result = result
                .with_name(Some(TopicName(StrBytes::from_string(topic_name.clone()))))
                .with_topic_id(topic_id);
            responses.push(
                match cluster.submit(Command::DeleteTopic { topic_id }).await {
                    Ok(_) => {
                        tracing::info!(topic = %topic_name, %topic_id, "deleted topic");
                        drop_committed_offsets(ctx, topic_name).await;
                        result
                    }
                    Err(e) => {
                        let (code, msg) = error_codes::submit_error(&e);
                        // Deleted by id meanwhile: by name, the topic is unknown now.
                        let code = if name.is_some() && code == ResponseError::UnknownTopicId.code()
                        {
                            ResponseError::UnknownTopicOrPartition.code()
                        } else {
                            code
                        };
                        result.with_error_code(code).with_error_message(msg)
                    }
                },
            );
            continue;
        }
        let meta = match &name {
            Some(n) => ctx.broker.topic(n),
            None => ctx.broker.topic_by_id(id),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))))
            .with_topic_id(id);
        let checked = name.as_deref().or(meta.as_ref().map(|m| m.name.as_str()));
        if let Some(n) = checked {
            if !ctx.authorize(caller, AclOperation::Delete, ResourceType::Topic, n) {
                responses.push(
                    result
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        .with_error_message(error_codes::message(format!(
                            "{} may not DELETE topic {n}",
                            caller.principal
                        ))),
                );
                continue;
            }
        }
        let Some(meta) = meta else {
            responses.push(unknown_topic(result, name.is_some()));
            continue;
        };
        let broker = ctx.broker.clone();
        let topic = meta.name.clone();
        let groups = ctx.groups.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            broker.delete_topic(&topic)?;
            // Committed offsets go with the topic (as in Kafka): a re-created topic starts fresh.
            if let Err(e) = groups.offsets().delete_topic(&topic) {
                tracing::warn!(%topic, error = %e, "could not drop committed offsets of deleted topic");
            }
            Ok(())
        })
        .await;
        let result = result
            .with_name(Some(TopicName(StrBytes::from_string(meta.name.clone()))))
            .with_topic_id(meta.id);
        responses.push(match error_codes::blocking_broker_result(outcome) {
            Ok(()) => {
                tracing::info!(topic = %meta.name, "deleted topic");
                result
            }
            Err((code, msg)) => result.with_error_code(code).with_error_message(msg),
        });
    }
    ResponseKind::DeleteTopics(DeleteTopicsResponse::default().with_responses(responses))
}

/// Committed offsets go with the topic (as in Kafka): a re-created topic starts fresh. The groups
/// this node coordinates are the ones whose offsets it holds.
async fn drop_committed_offsets(ctx: &Arc<Context>, topic: String) {
    let coordinators = ctx.all_coordinators();
    let outcome = tokio::task::spawn_blocking(move || {
        for groups in coordinators {
            if let Err(e) = groups.offsets().delete_topic(&topic) {
                tracing::warn!(%topic, error = %e, "could not drop committed offsets of deleted topic");
            }
        }
    })
    .await;
    if let Err(join) = outcome {
        tracing::error!(error = %join, "dropping committed offsets failed");
    }
}
