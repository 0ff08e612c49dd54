//! FindCoordinator (key 10), v0-6; v4+ batches several keys in one request.
//!
//! A node alone coordinates every consumer group and every transactional id. In a cluster the
//! coordinator of group G is the leader of partition `abs(hashCode(G)) % N` of
//! `__consumer_offsets` (Kafka's rule, so Kafka's tools agree), answered with that broker's
//! advertised Kafka endpoint; COORDINATOR_NOT_AVAILABLE while the partition has no leader. The
//! first group lookup creates `__consumer_offsets` through the controller
//! (`[cluster] offsets_topic_num_partitions` partitions, compacted, replication factor
//! min(`default_replication_factor`, usable brokers)) and answers COORDINATOR_NOT_AVAILABLE until
//! it exists, as Kafka does; clients ask again. Transactional ids stay with the node asked (no
//! transaction coordinator is built).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, ResponseKind,
};
use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::group::{partition_for, OFFSETS_TOPIC};

use super::authorization::Caller;
use super::cluster_view::{listener_endpoint, ClusterView};
use super::create_topics::{create_in_cluster, TopicSpec};
use super::Context;

/// Where a key's coordinator is: node id, host, port; or an error code and message.
type Located = Result<(i32, StrBytes, i32), (i16, String)>;

/// Key type of a consumer group.
pub const KEY_TYPE_GROUP: i8 = 0;
/// Key type of a transactional id.
pub const KEY_TYPE_TRANSACTION: i8 = 1;

/// Why a key cannot be coordinated here, if it cannot.
fn check(ctx: &Context, caller: &Caller, key_type: i8, key: &StrBytes) -> Option<(i16, String)> {
    let denied = |resource_type, code: ResponseError| {
        (!ctx.authorize(caller, AclOperation::Describe, resource_type, key)).then(|| {
            (
                code.code(),
                format!(
                    "{} may not DESCRIBE {resource_type} {key}",
                    caller.principal
                ),
            )
        })
    };
    match key_type {
        KEY_TYPE_GROUP => denied(ResourceType::Group, ResponseError::GroupAuthorizationFailed),
        KEY_TYPE_TRANSACTION if key.is_empty() => Some((
            ResponseError::InvalidRequest.code(),
            "empty transactional id".into(),
        )),
        KEY_TYPE_TRANSACTION => denied(
            ResourceType::TransactionalId,
            ResponseError::TransactionalIdAuthorizationFailed,
        ),
        other => Some((
            ResponseError::InvalidRequest.code(),
            format!("unsupported coordinator key type {other}"),
        )),
    }
}

/// `__consumer_offsets` does not exist yet: create it through the controller (see the module
/// doc). Concurrent creations by other lookups or nodes end in TOPIC_ALREADY_EXISTS, which is
/// fine.
async fn create_offsets_topic(ctx: &Context, cluster: &Arc<dyn ClusterView>, partitions: i32) {
    let usable = cluster.image().usable_brokers().count();
    let replication_factor = cluster
        .default_replication_factor()
        .min(i16::try_from(usable).unwrap_or(i16::MAX))
        .max(1);
    let spec = TopicSpec {
        name: OFFSETS_TOPIC.to_string(),
        num_partitions: partitions,
        replication_factor,
        assignments: BTreeMap::new(),
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
    };
    match create_in_cluster(ctx, cluster, spec, false).await {
        Ok(created) => tracing::info!(
            topic = OFFSETS_TOPIC,
            partitions = created.partitions,
            replication_factor = created.replication_factor,
            "created the group coordinators' internal topic"
        ),
        Err((code, msg)) => {
            tracing::debug!(topic = OFFSETS_TOPIC, code, message = ?msg, "creating the offsets topic failed")
        }
    }
}

/// The coordinator of group `key` in a cluster: the leader of its `__consumer_offsets`
/// partition.
async fn locate_group(ctx: &Context, cluster: &Arc<dyn ClusterView>, key: &str) -> Located {
    let not_available = |why: String| Err((ResponseError::CoordinatorNotAvailable.code(), why));
    let image = cluster.image();
    let Some(topic) = image.topic(OFFSETS_TOPIC) else {
        let partitions = ctx
            .coordinators
            .as_ref()
            .map_or(1, |c| c.offsets_topic_num_partitions());
        create_offsets_topic(ctx, cluster, partitions).await;
        return not_available(format!("{OFFSETS_TOPIC} is being created"));
    };
    let n = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    let partition = partition_for(key, n);
    let leader = topic.partitions.get(&partition).map_or(-1, |p| p.leader);
    let endpoint = image
        .broker(leader)
        .and_then(|b| listener_endpoint(b, &ctx.listener_name));
    match endpoint {
        Some(e) => Ok((
            leader,
            StrBytes::from_string(e.host.clone()),
            i32::from(e.port),
        )),
        None => not_available(format!(
            "{OFFSETS_TOPIC}-{partition} has no leader with a Kafka endpoint"
        )),
    }
}

/// Where the coordinator of `key` is, or why it cannot be found.
async fn locate(ctx: &Context, caller: &Caller, key_type: i8, key: &StrBytes) -> Located {
    if let Some((code, msg)) = check(ctx, caller, key_type, key) {
        return Err((code, msg));
    }
    match &ctx.cluster {
        Some(cluster) if key_type == KEY_TYPE_GROUP => locate_group(ctx, cluster, key).await,
        _ => Ok((ctx.node_id, ctx.host(), i32::from(ctx.advertised_port))),
    }
}

/// Answer FindCoordinator.
pub async fn handle(
    ctx: &Context,
    caller: &Caller,
    version: i16,
    req: FindCoordinatorRequest,
) -> ResponseKind {
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for key in req.coordinator_keys {
            let c = Coordinator::default().with_key(key.clone());
            coordinators.push(match locate(ctx, caller, req.key_type, &key).await {
                Ok((node, host, port)) => c
                    .with_node_id(BrokerId(node))
                    .with_host(host)
                    .with_port(port),
                Err((code, msg)) => c
                    .with_node_id(BrokerId(-1))
                    .with_host(StrBytes::default())
                    .with_port(-1)
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(msg))),
            });
        }
        return ResponseKind::FindCoordinator(
            FindCoordinatorResponse::default().with_coordinators(coordinators),
        );
    }
    let key_type = if version >= 1 {
        req.key_type
    } else {
        KEY_TYPE_GROUP
    };
    let resp = match locate(ctx, caller, key_type, &req.key).await {
        Ok((node, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node))
            .with_host(host)
            .with_port(port),
        Err((code, msg)) => FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_error_message((version >= 1).then(|| StrBytes::from_string(msg)))
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    };
    ResponseKind::FindCoordinator(resp)
}
