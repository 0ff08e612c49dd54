//! CreateTopics (key 19): topic configs, `validate_only`, per-topic errors with messages.
//!
//! A node alone takes replication factor -1 or 1 (it has no replicas) and creates the partition
//! logs itself. In a cluster the topic is created by the controller: this node validates the
//! request against its metadata image (name, partition count, replication factor or explicit
//! replica assignments, configs with the topic config rules), places replicas over the usable
//! brokers with Kafka's rack-aware round robin from a random start ([`plan_create`]) and submits
//! `Command::CreateTopic` through the cluster view, which forwards it to the active controller.
//! The partition logs are created on each replica when its node applies the new image, not here.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclOperation, ResourceType, CLUSTER_NAME};
use rill_core::broker::{TopicMeta, MAX_PARTITIONS};
use rill_core::controller::placement::{assign_replicas, PlacementBroker, PlacementStart};
use rill_core::controller::{Command, CommandOutcome, MetadataImage};
use rill_core::topic_config::TopicConfig;
use rill_core::topic_registry::{names_collide, validate_topic_name};
use uuid::Uuid;

use super::authorization::Caller;
use super::cluster_view::ClusterView;
use super::{describe_configs, error_codes, Context};

/// `(error code, message)` of a refused topic or partition.
pub type Refusal = (i16, Option<StrBytes>);

fn refuse(code: ResponseError, msg: impl Into<String>) -> Refusal {
    (code.code(), error_codes::message(msg))
}

/// Answer CreateTopics.
/// TOPIC_AUTHORIZATION_FAILED for `name` unless the caller may CREATE on the cluster
/// (`cluster_create`) or on the topic; the function that fills a result with it.
fn create_denied(
    ctx: &Context,
    caller: &Caller,
    cluster_create: bool,
    name: &str,
) -> Option<impl FnOnce(CreatableTopicResult) -> CreatableTopicResult> {
    if cluster_create || ctx.authorize(caller, AclOperation::Create, ResourceType::Topic, name) {
        return None;
    }
    let message = format!("{} may not CREATE topic {name}", caller.principal);
    Some(move |result: CreatableTopicResult| {
        result
            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
            .with_error_message(error_codes::message(message))
    })
}

pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    version: i16,
    req: CreateTopicsRequest,
) -> ResponseKind {
    // Kafka: CREATE on the cluster, or else on each topic.
    let cluster_create = ctx.authorize_quietly(
        caller,
        AclOperation::Create,
        ResourceType::Cluster,
        CLUSTER_NAME,
    );
    if let Some(cluster) = &ctx.cluster {
        let mut results = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let result = CreatableTopicResult::default().with_name(t.name.clone());
            if let Some(denied) = create_denied(ctx, caller, cluster_create, &t.name.0) {
                results.push(denied(result));
                continue;
            }
            let spec = match TopicSpec::from_request(&t) {
                Ok(spec) => spec,
                Err((code, msg)) => {
                    results.push(result.with_error_code(code).with_error_message(msg));
                    continue;
                }
            };
            results.push(
                match create_in_cluster(ctx, cluster, spec, req.validate_only).await {
                    Ok(created) => {
                        if !req.validate_only {
                            tracing::info!(topic = %t.name.0, topic_id = %created.topic_id, partitions = created.partitions, replication_factor = created.replication_factor, "created topic");
                        }
                        success(
                            version,
                            result,
                            created.topic_id,
                            created.partitions,
                            created.replication_factor,
                            &created.config,
                            &created.overrides,
                        )
                    }
                    Err((code, msg)) => result.with_error_code(code).with_error_message(msg),
                },
            );
        }
        return ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(results));
    }
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        if let Some(denied) = create_denied(ctx, caller, cluster_create, &name) {
            results.push(denied(result));
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
                local_success(version, result, &meta)
            }
            Err((code, msg)) => result.with_error_code(code).with_error_message(msg),
        };
        results.push(result);
    }
    ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(results))
}

/// A topic to create in a cluster, as CreateTopics or auto-creation asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count; `-1`: the node's `default_partitions`.
    pub num_partitions: i32,
    /// Replication factor; `-1`: the cluster's default.
    pub replication_factor: i16,
    /// Explicit replica lists by partition index (empty: placed by [`plan_create`]).
    pub assignments: BTreeMap<i32, Vec<i32>>,
    /// Config overrides as requested (validated by [`create_in_cluster`]).
    pub configs: BTreeMap<String, String>,
}

impl TopicSpec {
    /// A topic with the defaults (auto-creation).
    pub fn defaults(name: String) -> TopicSpec {
        TopicSpec {
            name,
            num_partitions: -1,
            replication_factor: -1,
            assignments: BTreeMap::new(),
            configs: BTreeMap::new(),
        }
    }

    /// The spec of one CreateTopics entry (INVALID_REQUEST for a partition assigned twice).
    pub fn from_request(t: &CreatableTopic) -> Result<TopicSpec, Refusal> {
        let mut assignments = BTreeMap::new();
        for a in &t.assignments {
            let replicas = a.broker_ids.iter().map(|b| b.0).collect();
            if assignments.insert(a.partition_index, replicas).is_some() {
                return Err(refuse(
                    ResponseError::InvalidRequest,
                    format!("partition {} is assigned twice", a.partition_index),
                ));
            }
        }
        let configs = t
            .configs
            .iter()
            .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
            .collect();
        Ok(TopicSpec {
            name: t.name.0.to_string(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments,
            configs,
        })
    }
}

/// A topic the controller created (or would create, for `validate_only`).
#[derive(Debug, Clone)]
pub struct Created {
    /// The new topic's id (nil for `validate_only`).
    pub topic_id: Uuid,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i16,
    /// The normalised overrides.
    pub overrides: BTreeMap<String, String>,
    /// The effective config (node defaults + overrides).
    pub config: TopicConfig,
}

/// The brokers new replicas may be placed on (registered, unfenced, not shutting down).
pub fn placement_brokers(image: &MetadataImage) -> Vec<PlacementBroker> {
    image
        .usable_brokers()
        .map(|b| PlacementBroker {
            broker_id: b.broker_id,
            rack: b.rack.clone(),
        })
        .collect()
}

/// Checks that explicit replica lists are usable: non-empty, one replication factor, no broker
/// twice in a list, every broker registered (Kafka's manual assignment rules).
pub fn check_assignments(
    image: &MetadataImage,
    lists: &[Vec<i32>],
    replication_factor: Option<usize>,
) -> Result<(), Refusal> {
    let invalid = |m: String| Err(refuse(ResponseError::InvalidReplicaAssignment, m));
    let Some(rf) = replication_factor.or_else(|| lists.first().map(Vec::len)) else {
        return Err(refuse(
            ResponseError::InvalidPartitions,
            "no partitions are assigned",
        ));
    };
    for (i, replicas) in lists.iter().enumerate() {
        if replicas.is_empty() {
            return invalid(format!("assignment {i} has no replicas"));
        }
        if replicas.len() != rf {
            return invalid(format!(
                "assignment {i} has {} replicas; the replication factor is {rf}",
                replicas.len()
            ));
        }
        if replicas
            .iter()
            .enumerate()
            .any(|(j, b)| replicas[..j].contains(b))
        {
            return invalid(format!("assignment {i} names a broker twice: {replicas:?}"));
        }
        if let Some(b) = replicas.iter().find(|b| image.broker(**b).is_none()) {
            return invalid(format!("assignment {i}: broker {b} is not registered"));
        }
    }
    Ok(())
}

/// The replica lists (one per partition, preferred leader first) of `Command::CreateTopic` for
/// `spec` against `image`, partitions and replication factor already resolved from their
/// defaults (positive unless the spec assigns replicas explicitly). `start` is where the
/// placement round robin starts ([`PlacementStart::random`] in service, as Kafka).
pub fn plan_create(
    image: &MetadataImage,
    spec: &TopicSpec,
    start: PlacementStart,
) -> Result<Vec<Vec<i32>>, Refusal> {
    validate_topic_name(&spec.name)
        .map_err(|reason| refuse(ResponseError::InvalidTopicException, reason))?;
    if image.topic(&spec.name).is_some() {
        return Err(refuse(
            ResponseError::TopicAlreadyExists,
            format!("topic '{}' already exists", spec.name),
        ));
    }
    if let Some(other) = image.topics().keys().find(|k| names_collide(k, &spec.name)) {
        return Err(refuse(
            ResponseError::InvalidTopicException,
            format!(
                "topic '{}' collides with existing topic '{other}' ('.' and '_' collide)",
                spec.name
            ),
        ));
    }
    if spec.assignments.is_empty() {
        if !(1..=MAX_PARTITIONS).contains(&spec.num_partitions) {
            return Err(refuse(
                ResponseError::InvalidPartitions,
                format!(
                    "partition count {} is invalid (1..={MAX_PARTITIONS}, or -1 for the default)",
                    spec.num_partitions
                ),
            ));
        }
        assign_replicas(
            &placement_brokers(image),
            spec.num_partitions,
            i32::from(spec.replication_factor),
            0,
            start,
        )
        .map_err(|e| error_codes::placement_error(&e))
    } else {
        if spec.num_partitions != -1 || spec.replication_factor != -1 {
            return Err(refuse(
                ResponseError::InvalidRequest,
                "with replica assignments, the partition count and replication factor must be -1",
            ));
        }
        let count = spec.assignments.len();
        if count > MAX_PARTITIONS as usize {
            return Err(refuse(
                ResponseError::InvalidPartitions,
                format!("{count} partitions are more than {MAX_PARTITIONS}"),
            ));
        }
        if spec.assignments.keys().copied().ne(0..count as i32) {
            return Err(refuse(
                ResponseError::InvalidReplicaAssignment,
                "assigned partitions must be numbered 0, 1, 2, ... without gaps",
            ));
        }
        let lists: Vec<Vec<i32>> = spec.assignments.values().cloned().collect();
        check_assignments(image, &lists, None)?;
        Ok(lists)
    }
}

/// Creates a topic through the controller (or, with `validate_only`, checks that it could be
/// created). Configs are validated with the node's topic config rules.
pub async fn create_in_cluster(
    ctx: &Context,
    cluster: &Arc<dyn ClusterView>,
    mut spec: TopicSpec,
    validate_only: bool,
) -> Result<Created, Refusal> {
    if spec.num_partitions == 0 || spec.num_partitions < -1 {
        return Err(refuse(
            ResponseError::InvalidPartitions,
            format!("partition count {} is invalid", spec.num_partitions),
        ));
    }
    if spec.replication_factor == 0 || spec.replication_factor < -1 {
        return Err(refuse(
            ResponseError::InvalidReplicationFactor,
            format!("replication factor {} is invalid", spec.replication_factor),
        ));
    }
    if spec.assignments.is_empty() {
        if spec.num_partitions == -1 {
            spec.num_partitions = ctx.broker.config().default_partitions;
        }
        if spec.replication_factor == -1 {
            // As in Kafka, a default above the usable brokers fails (INVALID_REPLICATION_FACTOR).
            spec.replication_factor = cluster.default_replication_factor();
        }
    }
    let (overrides, config) = ctx
        .broker
        .validate_overrides(&spec.configs)
        .map_err(|e| error_codes::broker_error(&e))?;
    let image = cluster.image();
    let assignments = plan_create(&image, &spec, PlacementStart::random())?;
    let mut created = Created {
        topic_id: Uuid::nil(),
        partitions: assignments.len() as i32,
        replication_factor: assignments.first().map_or(0, |a| a.len() as i16),
        overrides: overrides.clone(),
        config,
    };
    if validate_only {
        return Ok(created);
    }
    let command = Command::CreateTopic {
        name: spec.name,
        topic_id: Uuid::new_v4(),
        configs: overrides,
        assignments,
    };
    match cluster.submit(command).await {
        Ok(CommandOutcome::TopicCreated { topic_id }) => {
            created.topic_id = topic_id;
            Ok(created)
        }
        Ok(other) => Err(refuse(
            ResponseError::UnknownServerError,
            format!("the controller answered CreateTopic with {other:?}"),
        )),
        Err(e) => Err(error_codes::submit_error(&e)),
    }
}

fn local_success(
    version: i16,
    result: CreatableTopicResult,
    meta: &TopicMeta,
) -> CreatableTopicResult {
    success(
        version,
        result,
        meta.id,
        meta.partitions,
        1,
        &meta.config,
        &meta.overrides,
    )
}

fn success(
    version: i16,
    result: CreatableTopicResult,
    topic_id: Uuid,
    partitions: i32,
    replication_factor: i16,
    config: &TopicConfig,
    overrides: &BTreeMap<String, String>,
) -> CreatableTopicResult {
    let result = result
        .with_topic_id(topic_id)
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor);
    if version < 5 {
        return result;
    }
    let configs = config
        .describe(overrides)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rill_core::controller::{
        CommandResult, ControllerRequest, Endpoint, PartitionRegistration,
    };
    use std::collections::BTreeSet;

    /// A metadata image built the way a cluster builds it: by applying controller commands.
    pub(crate) struct TestCluster {
        pub image: MetadataImage,
        index: u64,
    }

    impl TestCluster {
        /// Brokers `(id, rack)` registered with a Kafka listener on 127.0.0.1:9000+id (and,
        /// but broker 3, an extra listener `LAN` on lan-<id>:29000+id) and unfenced.
        pub fn new(brokers: &[(i32, Option<&str>)]) -> TestCluster {
            let mut c = TestCluster {
                image: MetadataImage::default(),
                index: 0,
            };
            c.ok(Command::Bootstrap {
                cluster_id: "test-cluster".into(),
                scram_credentials: vec![],
            });
            for &(broker_id, rack) in brokers {
                let out = c.ok(Command::RegisterBroker {
                    broker_id,
                    incarnation_id: Uuid::new_v4(),
                    cluster_id: "test-cluster".into(),
                    listeners: [
                        Endpoint {
                            name: "CLUSTER".into(),
                            host: "127.0.0.1".into(),
                            port: 19000 + broker_id as u16,
                            security_protocol: "PLAINTEXT".into(),
                        },
                        Endpoint {
                            name: super::super::cluster_view::KAFKA_LISTENER.into(),
                            host: "127.0.0.1".into(),
                            port: 9000 + broker_id as u16,
                            security_protocol: "PLAINTEXT".into(),
                        },
                    ]
                    .into_iter()
                    // An extra listener on every broker but 3.
                    .chain((broker_id != 3).then(|| Endpoint {
                        name: "LAN".into(),
                        host: format!("lan-{broker_id}"),
                        port: 29000 + broker_id as u16,
                        security_protocol: "SASL_SSL".into(),
                    }))
                    .collect(),
                    rack: rack.map(str::to_string),
                });
                let CommandOutcome::BrokerRegistered { broker_epoch } = out else {
                    panic!("{out:?}")
                };
                c.ok(Command::UnfenceBroker {
                    broker_id,
                    broker_epoch,
                });
            }
            c
        }

        /// `n` brokers 1..=n without racks.
        pub fn plain(n: i32) -> TestCluster {
            let ids: Vec<(i32, Option<&str>)> = (1..=n).map(|b| (b, None)).collect();
            TestCluster::new(&ids)
        }

        pub fn run(&mut self, command: Command) -> CommandResult {
            self.index += 1;
            self.image
                .apply(self.index, &ControllerRequest::new(command))
        }

        pub fn ok(&mut self, command: Command) -> CommandOutcome {
            let c = format!("{command:?}");
            self.run(command)
                .unwrap_or_else(|e| panic!("{c} was rejected: {e}"))
        }

        pub fn fence(&mut self, broker_id: i32) {
            let broker_epoch = self.image.broker(broker_id).unwrap().broker_epoch;
            self.ok(Command::FenceBroker {
                broker_id,
                broker_epoch,
            });
        }

        pub fn unfence(&mut self, broker_id: i32) {
            let broker_epoch = self.image.broker(broker_id).unwrap().broker_epoch;
            self.ok(Command::UnfenceBroker {
                broker_id,
                broker_epoch,
            });
        }

        /// Creates `name` as CreateTopics would, with placement from a fixed start.
        pub fn create(&mut self, name: &str, partitions: i32, rf: i16, start: usize) -> Uuid {
            let spec = TopicSpec {
                num_partitions: partitions,
                replication_factor: rf,
                ..TopicSpec::defaults(name.to_string())
            };
            let assignments = plan_create(&self.image, &spec, PlacementStart::fixed(start))
                .unwrap_or_else(|e| panic!("{e:?}"));
            let topic_id = Uuid::new_v4();
            self.ok(Command::CreateTopic {
                name: name.into(),
                topic_id,
                configs: BTreeMap::new(),
                assignments,
            });
            topic_id
        }

        pub fn partition(&self, topic: &str, p: i32) -> PartitionRegistration {
            self.image.topic(topic).unwrap().partitions[&p].clone()
        }
    }

    fn spec(name: &str, partitions: i32, rf: i16) -> TopicSpec {
        TopicSpec {
            num_partitions: partitions,
            replication_factor: rf,
            ..TopicSpec::defaults(name.to_string())
        }
    }

    #[test]
    fn replicas_and_leaders_spread_over_every_broker() {
        let mut c = TestCluster::plain(3);
        for start in 0..3 {
            let name = format!("t{start}");
            c.create(&name, 6, 3, start);
            let t = c.image.topic(&name).unwrap();
            let mut leaders = BTreeMap::new();
            for p in t.partitions.values() {
                assert_eq!(p.replicas.iter().collect::<BTreeSet<_>>().len(), 3);
                assert_eq!(
                    p.isr, p.replicas,
                    "a new partition has every replica in sync"
                );
                assert_eq!(p.leader, p.replicas[0]);
                *leaders.entry(p.leader).or_insert(0) += 1;
            }
            assert_eq!(leaders, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
        }
    }

    #[test]
    fn placement_is_rack_aware() {
        let c = TestCluster::new(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
            (6, Some("c")),
        ]);
        let rack = |b: i32| c.image.broker(b).unwrap().rack.clone().unwrap();
        let lists = plan_create(&c.image, &spec("t", 12, 3), PlacementStart::fixed(4)).unwrap();
        assert_eq!(lists.len(), 12);
        for r in &lists {
            let racks: BTreeSet<String> = r.iter().map(|b| rack(*b)).collect();
            assert_eq!(racks.len(), 3, "replicas {r:?} share a rack");
        }
    }

    #[test]
    fn fenced_brokers_get_no_new_replicas_and_rf_above_the_usable_brokers_is_refused() {
        let mut c = TestCluster::plain(3);
        c.fence(3);
        let lists = plan_create(&c.image, &spec("t", 4, 2), PlacementStart::fixed(0)).unwrap();
        assert!(lists.iter().flatten().all(|b| *b != 3), "{lists:?}");
        let (code, msg) =
            plan_create(&c.image, &spec("t", 4, 3), PlacementStart::fixed(0)).unwrap_err();
        assert_eq!(code, ResponseError::InvalidReplicationFactor.code());
        assert!(msg.unwrap().contains("2 usable broker"));
    }

    #[test]
    fn names_partitions_and_assignments_are_validated_like_kafka() {
        let mut c = TestCluster::plain(3);
        c.create("a.b", 1, 1, 0);
        let code =
            |s: &TopicSpec| plan_create(&c.image, s, PlacementStart::fixed(0)).map_err(|e| e.0);
        assert_eq!(
            code(&spec("a.b", 1, 1)),
            Err(ResponseError::TopicAlreadyExists.code())
        );
        assert_eq!(
            code(&spec("a_b", 1, 1)),
            Err(ResponseError::InvalidTopicException.code())
        );
        assert_eq!(
            code(&spec("bad name", 1, 1)),
            Err(ResponseError::InvalidTopicException.code())
        );
        assert_eq!(
            code(&spec("t", MAX_PARTITIONS + 1, 1)),
            Err(ResponseError::InvalidPartitions.code())
        );
        let assigned = |lists: &[(i32, &[i32])], partitions: i32, rf: i16| TopicSpec {
            assignments: lists.iter().map(|(p, r)| (*p, r.to_vec())).collect(),
            ..spec("t", partitions, rf)
        };
        assert_eq!(
            code(&assigned(&[(0, &[1, 2]), (1, &[2, 3])], -1, -1)),
            Ok(vec![vec![1, 2], vec![2, 3]])
        );
        for (bad, want) in [
            (
                assigned(&[(0, &[1, 2])], 1, -1),
                ResponseError::InvalidRequest,
            ),
            (
                assigned(&[(0, &[1, 2])], -1, 2),
                ResponseError::InvalidRequest,
            ),
            (
                assigned(&[(0, &[1, 2]), (2, &[2, 3])], -1, -1),
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                assigned(&[(0, &[1, 1])], -1, -1),
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                assigned(&[(0, &[1, 9])], -1, -1),
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                assigned(&[(0, &[1, 2]), (1, &[3])], -1, -1),
                ResponseError::InvalidReplicaAssignment,
            ),
        ] {
            assert_eq!(code(&bad), Err(want.code()), "{bad:?}");
        }
    }

    #[test]
    fn request_entries_become_specs() {
        use kafka_protocol::messages::create_topics_request::{
            CreatableReplicaAssignment, CreatableTopicConfig,
        };
        use kafka_protocol::messages::{BrokerId, TopicName};
        let assign = |p: i32, b: &[i32]| {
            CreatableReplicaAssignment::default()
                .with_partition_index(p)
                .with_broker_ids(b.iter().copied().map(BrokerId).collect())
        };
        let t = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(vec![assign(1, &[2, 3]), assign(0, &[1, 2])])
            .with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str("1000"))),
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("segment.bytes"))
                    .with_value(None),
            ]);
        let spec = TopicSpec::from_request(&t).unwrap();
        assert_eq!(
            spec.assignments,
            BTreeMap::from([(0, vec![1, 2]), (1, vec![2, 3])])
        );
        assert_eq!(
            spec.configs,
            BTreeMap::from([("retention.ms".to_string(), "1000".to_string())])
        );
        let twice = t.with_assignments(vec![assign(0, &[1]), assign(0, &[2])]);
        assert_eq!(
            TopicSpec::from_request(&twice).map_err(|e| e.0),
            Err(ResponseError::InvalidRequest.code())
        );
    }

    #[test]
    fn a_planned_topic_is_accepted_by_the_controller() {
        let mut c = TestCluster::plain(3);
        let lists = plan_create(&c.image, &spec("t", 3, 2), PlacementStart::random()).unwrap();
        let topic_id = Uuid::new_v4();
        assert_eq!(
            c.ok(Command::CreateTopic {
                name: "t".into(),
                topic_id,
                configs: BTreeMap::new(),
                assignments: lists.clone(),
            }),
            CommandOutcome::TopicCreated { topic_id }
        );
        for (p, replicas) in lists.iter().enumerate() {
            assert_eq!(&c.partition("t", p as i32).replicas, replicas);
        }
    }
}
