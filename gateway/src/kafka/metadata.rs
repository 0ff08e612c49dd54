//! Metadata (key 3): brokers, cluster id, controller, topics with their partitions, and topic
//! auto-creation.
//!
//! A node alone names itself as the only broker, the controller, and the leader and only replica
//! of every partition (leader epoch 0). In a cluster the answer comes from the metadata image
//! ([`answer_from_image`]): every unfenced broker with its Kafka endpoint and rack, each
//! partition's leader, leader epoch, replicas, ISR and offline replicas (LEADER_NOT_AVAILABLE
//! while it has none), and the active controller; auto-creation goes through the controller.
//!
//! With the authorizer on, as Kafka (on a node alone and in a cluster): a listing of all topics
//! shows only those the caller may DESCRIBE; a named topic it may not DESCRIBE is answered
//! TOPIC_AUTHORIZATION_FAILED (whether or not it exists); auto-creation needs CREATE on the
//! cluster or the topic; authorized operations (KIP-430) are the caller's.

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
use rill_core::controller::image::NO_LEADER;
use rill_core::controller::{MetadataImage, TopicImage};
use uuid::Uuid;

use super::authorization::Caller;
use super::cluster_view::{kafka_endpoint, listener_endpoint, ClusterView, KAFKA_LISTENER};
use super::{create_topics, error_codes, Context};

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

/// Which topics a request asks for: all (`None`) or these, by name or (no name) by id.
fn requested(version: i16, req: &MetadataRequest) -> Option<Vec<(Option<String>, Uuid)>> {
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    match &req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.iter()
                .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
                .collect(),
        ),
    }
}

/// Answer Metadata.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    version: i16,
    req: MetadataRequest,
) -> ResponseKind {
    if let Some(cluster) = &ctx.cluster {
        return ResponseKind::Metadata(
            handle_in_cluster(ctx, caller, cluster, version, &req).await,
        );
    }
    let allow_auto_create = version < 4 || req.allow_auto_topic_creation;
    let mut topics = Vec::new();
    match requested(version, &req) {
        None => {
            for meta in ctx.broker.topics() {
                if may_describe(ctx, caller, &meta.name, true) {
                    topics.push(topic_entry(ctx, &meta));
                }
            }
        }
        Some(wanted) => {
            for (name, id) in wanted {
                match name {
                    Some(name) => {
                        topics.push(lookup_or_create(ctx, caller, name, allow_auto_create).await)
                    }
                    None => match ctx.broker.topic_by_id(id) {
                        Some(meta) if !may_describe(ctx, caller, &meta.name, false) => topics.push(
                            error_topic(None, id, ResponseError::TopicAuthorizationFailed.code()),
                        ),
                        Some(meta) => topics.push(topic_entry(ctx, &meta)),
                        None => {
                            topics.push(error_topic(None, id, ResponseError::UnknownTopicId.code()))
                        }
                    },
                }
            }
        }
    }
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(ctx.node_id))
        .with_host(ctx.host())
        .with_port(i32::from(ctx.advertised_port))
        .with_rack(None);
    ResponseKind::Metadata(finish(
        ctx,
        caller,
        version,
        &req,
        MetadataResponse::default()
            .with_brokers(vec![broker])
            .with_cluster_id(Some(StrBytes::from_string(ctx.cluster_id.clone())))
            .with_controller_id(BrokerId(ctx.node_id))
            .with_topics(topics),
    ))
}

/// Whether the caller may DESCRIBE `topic` (a listing checks quietly: hidden topics are not
/// denials worth a log line).
fn may_describe(ctx: &Context, caller: &Caller, topic: &str, listing: bool) -> bool {
    if listing {
        ctx.authorize_quietly(caller, AclOperation::Describe, ResourceType::Topic, topic)
    } else {
        ctx.authorize(caller, AclOperation::Describe, ResourceType::Topic, topic)
    }
}

/// Fills in the authorized operations the request asked for.
fn finish(
    ctx: &Context,
    caller: &Caller,
    version: i16,
    req: &MetadataRequest,
    mut resp: MetadataResponse,
) -> MetadataResponse {
    let topic_ops = version >= 8 && req.include_topic_authorized_operations;
    for t in &mut resp.topics {
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
    resp.with_cluster_authorized_operations(cluster_ops)
}

/// Metadata in a cluster: the image's answer, with topics that do not exist yet auto-created
/// through the controller when allowed (answered LEADER_NOT_AVAILABLE until this node's image has
/// them, as Kafka answers for a topic it is creating; the client asks again).
async fn handle_in_cluster(
    ctx: &Arc<Context>,
    caller: &Caller,
    cluster: &Arc<dyn ClusterView>,
    version: i16,
    req: &MetadataRequest,
) -> MetadataResponse {
    let image = cluster.image();
    let quorum = cluster.quorum();
    let mut resp = answer_from_image(&image, quorum.leader_id, cluster.node_id(), version, req);
    if ctx.listener_name != KAFKA_LISTENER {
        // A client of an extra listener is told each broker's endpoint of that listener.
        resp.brokers = cluster_brokers_on(&image, &ctx.listener_name);
    }
    let listing = requested(version, req).is_none();
    resp.topics.retain(|t| {
        !listing
            || t.name
                .as_ref()
                .is_none_or(|n| may_describe(ctx, caller, &n.0, true))
    });
    for t in resp.topics.iter_mut().filter(|_| !listing) {
        if let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) {
            if !may_describe(ctx, caller, &name, false) {
                *t = error_topic(
                    Some(name),
                    Uuid::nil(),
                    ResponseError::TopicAuthorizationFailed.code(),
                );
            }
        }
    }
    let allow_auto_create =
        (version < 4 || req.allow_auto_topic_creation) && ctx.broker.config().auto_create_topics;
    if allow_auto_create {
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        for t in resp.topics.iter_mut().filter(|t| t.error_code == unknown) {
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            if !ctx.authorize_quietly(
                caller,
                AclOperation::Create,
                ResourceType::Cluster,
                CLUSTER_NAME,
            ) && !ctx.authorize(caller, AclOperation::Create, ResourceType::Topic, &name)
            {
                *t = error_topic(
                    Some(name),
                    Uuid::nil(),
                    ResponseError::TopicAuthorizationFailed.code(),
                );
                continue;
            }
            let spec = create_topics::TopicSpec::defaults(name.clone());
            *t = match create_topics::create_in_cluster(ctx, cluster, spec, false).await {
                Ok(created) => {
                    tracing::info!(topic = %name, partitions = created.partitions, replication_factor = created.replication_factor, "auto-created topic");
                    match cluster.image().topic(&name) {
                        Some(topic) => cluster_topic_entry(&cluster.image(), topic),
                        None => error_topic(
                            Some(name),
                            created.topic_id,
                            ResponseError::LeaderNotAvailable.code(),
                        ),
                    }
                }
                // Created concurrently by another client or node.
                Err((code, _)) if code == ResponseError::TopicAlreadyExists.code() => error_topic(
                    Some(name),
                    Uuid::nil(),
                    ResponseError::LeaderNotAvailable.code(),
                ),
                Err((code, msg)) => {
                    tracing::debug!(topic = %name, code, message = ?msg, "auto-create failed");
                    error_topic(Some(name), Uuid::nil(), code)
                }
            };
        }
    }
    finish(ctx, caller, version, req, resp)
}

/// The answer to a Metadata request from the cluster's metadata image (no auto-creation: topics
/// it does not have are UNKNOWN_TOPIC_OR_PARTITION, ids UNKNOWN_TOPIC_ID). `controller` is the
/// active controller if known; `node_id` this node (named as the controller when the active one
/// is not a live broker, since every broker forwards admin requests to the controller).
pub fn answer_from_image(
    image: &MetadataImage,
    controller: Option<i32>,
    node_id: i32,
    version: i16,
    req: &MetadataRequest,
) -> MetadataResponse {
    let topics = match requested(version, req) {
        None => image
            .topics()
            .values()
            .map(|t| cluster_topic_entry(image, t))
            .collect(),
        Some(wanted) => wanted
            .into_iter()
            .map(|(name, id)| match name {
                Some(name) => match image.topic(&name) {
                    Some(t) => cluster_topic_entry(image, t),
                    None => error_topic(
                        Some(name),
                        Uuid::nil(),
                        ResponseError::UnknownTopicOrPartition.code(),
                    ),
                },
                None => match image.topic_by_id(&id) {
                    Some(t) => cluster_topic_entry(image, t),
                    None => error_topic(None, id, ResponseError::UnknownTopicId.code()),
                },
            })
            .collect(),
    };
    let brokers = cluster_brokers(image);
    let listed = |id: i32| brokers.iter().any(|b| b.node_id.0 == id);
    let controller_id = match controller {
        Some(id) if listed(id) => id,
        _ if listed(node_id) => node_id,
        _ => brokers.first().map_or(-1, |b| b.node_id.0),
    };
    MetadataResponse::default()
        .with_cluster_id(
            image
                .cluster_id()
                .map(|c| StrBytes::from_string(c.to_string())),
        )
        .with_controller_id(BrokerId(controller_id))
        .with_brokers(brokers)
        .with_topics(topics)
}

/// Every live broker (registered and not fenced; one in controlled shutdown is still live) that
/// registered a Kafka endpoint, with its rack.
pub fn cluster_brokers(image: &MetadataImage) -> Vec<MetadataResponseBroker> {
    cluster_brokers_on(image, KAFKA_LISTENER)
}

/// Every live broker that registered an endpoint for `listener`, with that endpoint.
pub fn cluster_brokers_on(image: &MetadataImage, listener: &str) -> Vec<MetadataResponseBroker> {
    image
        .brokers()
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let endpoint = listener_endpoint(b, listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.broker_id))
                    .with_host(StrBytes::from_string(endpoint.host.clone()))
                    .with_port(i32::from(endpoint.port))
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect()
}

/// A replica is offline when its broker is not registered, fenced, or has no Kafka endpoint
/// (Kafka's `getOfflineReplicas`).
fn is_offline(image: &MetadataImage, broker_id: i32) -> bool {
    image
        .broker(broker_id)
        .is_none_or(|b| b.fenced || kafka_endpoint(b).is_none())
}

/// One topic of the image as Metadata describes it.
pub fn cluster_topic_entry(image: &MetadataImage, topic: &TopicImage) -> MetadataResponseTopic {
    let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let partitions = topic
        .partitions
        .iter()
        .map(|(&index, p)| {
            let offline: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|&r| is_offline(image, r))
                .collect();
            let leaderless = p.leader == NO_LEADER || is_offline(image, p.leader);
            MetadataResponsePartition::default()
                .with_error_code(if leaderless {
                    ResponseError::LeaderNotAvailable.code()
                } else {
                    error_codes::NONE
                })
                .with_partition_index(index)
                .with_leader_id(BrokerId(if leaderless { NO_LEADER } else { p.leader }))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(ids(&offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.topic_id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::create_topics::tests::TestCluster;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;

    fn all() -> MetadataRequest {
        MetadataRequest::default().with_topics(None)
    }

    fn named(names: &[&str]) -> MetadataRequest {
        MetadataRequest::default().with_topics(Some(
            names
                .iter()
                .map(|n| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(n.to_string()))))
                })
                .collect(),
        ))
    }

    fn ids(v: &[BrokerId]) -> Vec<i32> {
        v.iter().map(|b| b.0).collect()
    }

    #[test]
    fn an_extra_listener_gets_each_brokers_endpoint_of_that_listener() {
        let c = TestCluster::plain(3);
        let on = |listener: &str| -> Vec<(i32, String, i32)> {
            cluster_brokers_on(&c.image, listener)
                .iter()
                .map(|b| (b.node_id.0, b.host.to_string(), b.port))
                .collect()
        };
        assert_eq!(
            on("LAN"),
            vec![
                (1, "lan-1".to_string(), 29001),
                (2, "lan-2".to_string(), 29002)
            ],
            "broker 3 registered no LAN listener"
        );
        assert_eq!(on(KAFKA_LISTENER).len(), 3);
        assert!(on("NONE").is_empty());
    }

    #[test]
    fn every_live_broker_and_every_partitions_replication_state_is_listed() {
        let mut c = TestCluster::new(&[(1, Some("r1")), (2, Some("r2")), (3, Some("r3"))]);
        let topic_id = c.create("t", 6, 3, 1);
        let resp = answer_from_image(&c.image, Some(2), 1, 12, &all());
        assert_eq!(resp.cluster_id.as_deref(), Some("test-cluster"));
        assert_eq!(resp.controller_id.0, 2, "the active controller");
        let brokers: Vec<(i32, String, i32, Option<String>)> = resp
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id.0,
                    b.host.to_string(),
                    b.port,
                    b.rack.as_ref().map(|r| r.to_string()),
                )
            })
            .collect();
        assert_eq!(
            brokers,
            (1..=3)
                .map(|b| (b, "127.0.0.1".to_string(), 9000 + b, Some(format!("r{b}"))))
                .collect::<Vec<_>>(),
            "the Kafka endpoint, not the cluster listener"
        );
        let [t] = resp.topics.as_slice() else {
            panic!("{:?}", resp.topics)
        };
        assert_eq!((t.error_code, t.topic_id), (0, topic_id));
        assert_eq!(t.partitions.len(), 6);
        let mut leaders = BTreeMap::new();
        for p in &t.partitions {
            let reg = c.partition("t", p.partition_index);
            assert_eq!(p.error_code, 0);
            assert_eq!(p.leader_id.0, reg.leader);
            assert_eq!(p.leader_epoch, 0);
            assert_eq!(ids(&p.replica_nodes), reg.replicas);
            assert_eq!(ids(&p.isr_nodes), reg.replicas);
            assert!(p.offline_replicas.is_empty());
            *leaders.entry(p.leader_id.0).or_insert(0) += 1;
        }
        assert_eq!(leaders, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
    }

    #[test]
    fn a_fenced_broker_is_gone_offline_and_out_of_the_isr_and_leaderless_partitions_say_so() {
        let mut c = TestCluster::plain(3);
        c.create("t", 3, 3, 0);
        c.create("single", 1, 1, 0); // on broker 1 alone
        c.fence(1);
        let resp = answer_from_image(&c.image, Some(1), 2, 12, &all());
        assert_eq!(
            resp.brokers.iter().map(|b| b.node_id.0).collect::<Vec<_>>(),
            vec![2, 3]
        );
        // The controller that is not a live broker is not named: this node is (it forwards).
        assert_eq!(resp.controller_id.0, 2);
        let t = resp
            .topics
            .iter()
            .find(|t| t.name.as_ref().unwrap().0.as_str() == "t")
            .unwrap();
        for p in &t.partitions {
            assert_eq!(ids(&p.offline_replicas), vec![1]);
            assert!(!ids(&p.isr_nodes).contains(&1));
            assert_ne!(p.leader_id.0, 1);
            if c.partition("t", p.partition_index).replicas[0] == 1 {
                assert_eq!(p.leader_epoch, 1, "a new leader bumps the epoch");
            }
        }
        let single = resp
            .topics
            .iter()
            .find(|t| t.name.as_ref().unwrap().0.as_str() == "single")
            .unwrap();
        let p = &single.partitions[0];
        assert_eq!(p.error_code, ResponseError::LeaderNotAvailable.code());
        assert_eq!(p.leader_id.0, -1);
        assert_eq!(ids(&p.isr_nodes), vec![1], "the last ISR member stays");
        assert_eq!(ids(&p.offline_replicas), vec![1]);
        // Broker 1 returns and leads its partition again, under a higher epoch.
        c.unfence(1);
        let resp = answer_from_image(&c.image, Some(1), 2, 12, &named(&["single"]));
        let p = &resp.topics[0].partitions[0];
        assert_eq!((p.error_code, p.leader_id.0, p.leader_epoch), (0, 1, 2));
        assert_eq!(resp.controller_id.0, 1);
        // The answer encodes at every version (racks, offline replicas, epochs and topic ids
        // are dropped where a version has no field for them).
        c.fence(2);
        for v in 0..=12 {
            // As `finish` leaves a response whose request asked for no authorized operations.
            let mut resp = answer_from_image(&c.image, Some(1), 2, v, &all())
                .with_cluster_authorized_operations(OPS_NOT_REQUESTED);
            for t in &mut resp.topics {
                t.topic_authorized_operations = OPS_NOT_REQUESTED;
            }
            let mut buf = bytes::BytesMut::new();
            kafka_protocol::protocol::Encodable::encode(&resp, &mut buf, v)
                .unwrap_or_else(|e| panic!("v{v}: {e}"));
        }
    }

    #[test]
    fn unknown_names_and_ids_and_the_v1_empty_list() {
        let mut c = TestCluster::plain(1);
        let id = c.create("t", 1, 1, 0);
        let resp = answer_from_image(&c.image, None, 1, 12, &named(&["t", "missing"]));
        assert_eq!(
            resp.topics.iter().map(|t| t.error_code).collect::<Vec<_>>(),
            vec![0, ResponseError::UnknownTopicOrPartition.code()]
        );
        let by_id = |id| {
            MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(None)
                .with_topic_id(id)]))
        };
        let resp = answer_from_image(&c.image, None, 1, 12, &by_id(id));
        assert_eq!(resp.topics[0].name.as_ref().unwrap().0.as_str(), "t");
        let resp = answer_from_image(&c.image, None, 1, 12, &by_id(Uuid::new_v4()));
        assert_eq!(
            resp.topics[0].error_code,
            ResponseError::UnknownTopicId.code()
        );
        // v1+: an empty list asks for no topics; v0: for all.
        let empty = MetadataRequest::default().with_topics(Some(vec![]));
        assert!(answer_from_image(&c.image, None, 1, 1, &empty)
            .topics
            .is_empty());
        assert_eq!(
            answer_from_image(&c.image, None, 1, 0, &empty).topics.len(),
            1
        );
    }
}
