//! Metadata (key 3): brokers (this node), cluster id, controller (this node), topics with their
//! partitions (this node leads every partition, epoch 0), and topic auto-creation.
//!
//! With the authorizer on, as Kafka: a listing of all topics shows only those the caller may
//! DESCRIBE; a named topic it may not DESCRIBE is answered TOPIC_AUTHORIZATION_FAILED (whether or
//! not it exists); auto-creation needs CREATE on the cluster or the topic; authorized operations
//! (KIP-430) are the caller's.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclOperation, ResourceType, CLUSTER_NAME};
use rill_core::broker::{BrokerError, TopicMeta};
use uuid::Uuid;

use super::authorization::Caller;
use super::{error_codes, Context};

/// "Not requested" for authorized-operations fields.
const OPS_NOT_REQUESTED: i32 = i32::MIN;

/// Authorized operations on a topic with no authorizer: every topic operation (READ 3, WRITE 4,
/// CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11).
pub const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// Authorized operations on the cluster with no authorizer (Kafka's supported cluster operations):
/// CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11,
/// IDEMPOTENT_WRITE 12.
pub const CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/// The response entry of an existing topic.
pub fn topic_entry(ctx: &Context, meta: &TopicMeta) -> MetadataResponseTopic {
    let node = BrokerId(ctx.node_id);
    let partitions = (0..meta.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
                .with_offline_replicas(vec![])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(meta.name.clone()))))
        .with_topic_id(meta.id)
        .with_is_internal(meta.internal)
        .with_partitions(partitions)
}

fn error_topic(name: Option<String>, id: Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
        .with_topic_id(id)
}

/// Look a topic up, creating it when auto-creation is on and the client allows it.
async fn lookup_or_create(
    ctx: &Arc<Context>,
    caller: &Caller,
    name: String,
    allow_auto_create: bool,
) -> MetadataResponseTopic {
    let denied = || {
        error_topic(
            Some(name.clone()),
            Uuid::nil(),
            ResponseError::TopicAuthorizationFailed.code(),
        )
    };
    if !ctx.authorize(caller, AclOperation::Describe, ResourceType::Topic, &name) {
        return denied();
    }
    if let Some(meta) = ctx.broker.topic(&name) {
        return topic_entry(ctx, &meta);
    }
    let config = ctx.broker.config();
    if !(allow_auto_create && config.auto_create_topics) {
        return error_topic(
            Some(name),
            Uuid::nil(),
            ResponseError::UnknownTopicOrPartition.code(),
        );
    }
    if !ctx.authorize_quietly(
        caller,
        AclOperation::Create,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) && !ctx.authorize(caller, AclOperation::Create, ResourceType::Topic, &name)
    {
        return denied();
    }
    let partitions = config.default_partitions;
    let broker = ctx.broker.clone();
    let topic = name.clone();
    let created = tokio::task::spawn_blocking(move || {
        match broker.create_topic(&topic, partitions, &BTreeMap::new(), false) {
            Err(BrokerError::TopicAlreadyExists(_)) => broker
                .topic(&topic)
                .ok_or(BrokerError::TopicAlreadyExists(topic)),
            other => other,
        }
    })
    .await;
    match created {
        Ok(Ok(meta)) => {
            tracing::info!(topic = %meta.name, partitions = meta.partitions, "auto-created topic");
            topic_entry(ctx, &meta)
        }
        Ok(Err(err)) => {
            tracing::debug!(topic = %name, error = %err, "auto-create failed");
            error_topic(
                Some(name),
                Uuid::nil(),
                error_codes::broker_error_code(&err),
            )
        }
        Err(join) => {
            tracing::error!(topic = %name, error = %join, "auto-create task failed");
            error_topic(
                Some(name),
                Uuid::nil(),
                ResponseError::UnknownServerError.code(),
            )
        }
    }
}

/// Answer Metadata.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    version: i16,
    req: MetadataRequest,
) -> ResponseKind {
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let allow_auto_create = version < 4 || req.allow_auto_topic_creation;
    let mut topics = Vec::new();
    if all {
        for meta in ctx.broker.topics() {
            if ctx.authorize_quietly(
                caller,
                AclOperation::Describe,
                ResourceType::Topic,
                &meta.name,
            ) {
                topics.push(topic_entry(ctx, &meta));
            }
        }
    } else {
        for t in req.topics.unwrap_or_default() {
            match t.name {
                Some(name) => {
                    let name = name.0.to_string();
                    topics.push(lookup_or_create(ctx, caller, name, allow_auto_create).await)
                }
                None => match ctx.broker.topic_by_id(t.topic_id) {
                    Some(meta)
                        if !ctx.authorize(
                            caller,
                            AclOperation::Describe,
                            ResourceType::Topic,
                            &meta.name,
                        ) =>
                    {
                        topics.push(error_topic(
                            None,
                            t.topic_id,
                            ResponseError::TopicAuthorizationFailed.code(),
                        ))
                    }
                    Some(meta) => topics.push(topic_entry(ctx, &meta)),
                    None => topics.push(error_topic(
                        None,
                        t.topic_id,
                        ResponseError::UnknownTopicId.code(),
                    )),
                },
            }
        }
    }
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(ctx.node_id))
        .with_host(ctx.host())
        .with_port(i32::from(ctx.advertised_port))
        .with_rack(None);
    let topic_ops = version >= 8 && req.include_topic_authorized_operations;
    for t in &mut topics {
        if t.error_code == 0 {
            t.topic_authorized_operations = match (topic_ops, &t.name) {
                (false, _) => OPS_NOT_REQUESTED,
                (true, Some(name)) => ctx
                    .authorized_operations(caller, ResourceType::Topic, name)
                    .unwrap_or(TOPIC_OPERATIONS),
                (true, None) => TOPIC_OPERATIONS,
            };
        }
    }
    let cluster_ops = if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        ctx.authorized_operations(caller, ResourceType::Cluster, CLUSTER_NAME)
            .unwrap_or(CLUSTER_OPERATIONS)
    } else {
        OPS_NOT_REQUESTED
    };
    ResponseKind::Metadata(
        MetadataResponse::default()
            .with_cluster_authorized_operations(cluster_ops)
            .with_brokers(vec![broker])
            .with_cluster_id(Some(StrBytes::from_string(ctx.cluster_id.clone())))
            .with_controller_id(BrokerId(ctx.node_id))
            .with_topics(topics),
    )
}
