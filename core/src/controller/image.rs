//! The metadata image (KIP-631): the cluster's metadata as the controller's state machine holds it
//! after applying its log. Broker registrations, topics with their ids and config overrides, and
//! partition registrations (replicas, ISR, leader, leader epoch, partition epoch).
//!
//! Liveness is not part of the image: heartbeats and session timers live in the active controller
//! (with `Instant`s) and reach the image only as commands ([`Command::FenceBroker`], ...), so every
//! replica of the image is a pure function of the log. [`MetadataImage::apply`] is the only way to
//! change it; it validates each command as a compare-and-set on epochs and remembers the outcome
//! of the last [`REQUEST_LOG_CAPACITY`] request ids to answer retries with the first outcome.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::command::{
    Command, CommandOutcome, CommandResult, ControllerError, ControllerRequest, ElectionType,
    PartitionState, ProducerIdBlock, ScramCredentialEntry, PRODUCER_ID_BLOCK_SIZE,
};
use super::election;
use crate::authorizer::acl::{AclBinding, AclBindingFilter};
use crate::scram::{ScramCredential, ScramMechanism};
use crate::topic_config;

/// The leader of a partition that has none (Kafka's `NO_LEADER`).
pub const NO_LEADER: i32 = -1;

/// How many request ids the image remembers for deduplication (oldest forgotten first).
pub const REQUEST_LOG_CAPACITY: usize = 10_000;

const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// A listener a broker advertises (Kafka's `BrokerEndpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Listener name, e.g. `CLUSTER` (inter-node traffic) or `KAFKA` (clients).
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Kafka's security protocol name (`PLAINTEXT`, `SSL`, `SASL_SSL`, ...).
    pub security_protocol: String,
}

/// A registered broker (Kafka's `BrokerRegistration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    /// Random per process start; a new one means the broker restarted.
    pub incarnation_id: Uuid,
    /// The log index of the registration: every request of the broker carries it, and one from
    /// an older registration is rejected (KIP-903).
    pub broker_epoch: i64,
    pub listeners: Vec<Endpoint>,
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is in no ISR (except as a last member).
    pub fenced: bool,
    /// Shutting down on request: leads nothing and joins no ISR, but is still registered.
    pub in_controlled_shutdown: bool,
}

impl BrokerRegistration {
    /// May lead a partition and join an ISR.
    pub fn is_eligible(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// One partition's replication state (Kafka's `PartitionRegistration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    /// Broker ids holding a replica; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// The in-sync replicas, a subset of `replicas` that includes the leader.
    pub isr: Vec<i32>,
    /// Broker id of the leader, or [`NO_LEADER`].
    pub leader: i32,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
    /// Bumped on every change of this registration.
    pub partition_epoch: i32,
}

/// A topic: its id, config overrides and partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    /// Config overrides only (defaults are not stored).
    pub configs: BTreeMap<String, String>,
    /// Partition id to registration; ids are `0..len`.
    pub partitions: BTreeMap<i32, PartitionRegistration>,
}

impl TopicImage {
    fn unclean_leader_election(&self) -> bool {
        self.configs
            .get(UNCLEAN_LEADER_ELECTION)
            .map(String::as_str)
            .or_else(|| topic_config::default_value(UNCLEAN_LEADER_ELECTION))
            == Some("true")
    }

    fn partition_state(&self, partition: i32) -> Option<PartitionState> {
        self.partitions.get(&partition).map(|p| PartitionState {
            topic_id: self.topic_id,
            partition,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: p.isr.clone(),
        })
    }
}

/// A SCRAM user name the image accepts (what Kafka clients can send).
fn check_scram_user(user: &str) -> Result<(), ControllerError> {
    crate::credentials::check_user_name(user)
        .map_err(|e| ControllerError::UnacceptableCredential(e.to_string()))
}

/// The outcomes of recent requests, by request id, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct RequestLog {
    order: VecDeque<Uuid>,
    outcomes: BTreeMap<Uuid, CommandResult>,
}

impl RequestLog {
    fn get(&self, id: &Uuid) -> Option<&CommandResult> {
        self.outcomes.get(id)
    }

    fn insert(&mut self, id: Uuid, result: CommandResult) {
        if self.outcomes.insert(id, result).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > REQUEST_LOG_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
    }
}

/// The cluster's metadata (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    cluster_id: Option<String>,
    brokers: BTreeMap<i32, BrokerRegistration>,
    topics: BTreeMap<String, TopicImage>,
    requests: RequestLog,
    /// The first producer id no broker has been given yet (Kafka's `ProducerIdsRecord`);
    /// absent from snapshots written before producer ids were allocated here, hence 0.
    #[serde(default)]
    next_producer_id: i64,
    /// SCRAM credentials by user and mechanism (Kafka's `UserScramCredentialRecord`s): salted
    /// and iterated verifiers, never passwords.
    #[serde(default)]
    scram_credentials: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
    /// Every ACL binding (what the authorizer of every member decides with).
    #[serde(default)]
    acls: BTreeSet<AclBinding>,
}

impl MetadataImage {
    /// The cluster id, once bootstrapped.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    /// Every registered broker, by id.
    pub fn brokers(&self) -> &BTreeMap<i32, BrokerRegistration> {
        &self.brokers
    }

    /// One broker's registration.
    pub fn broker(&self, broker_id: i32) -> Option<&BrokerRegistration> {
        self.brokers.get(&broker_id)
    }

    /// Every topic, by name.
    pub fn topics(&self) -> &BTreeMap<String, TopicImage> {
        &self.topics
    }

    /// One topic by name.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    /// Every user's SCRAM credentials, by user name and mechanism.
    pub fn scram_credentials(
        &self,
    ) -> &BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>> {
        &self.scram_credentials
    }

    /// Every ACL binding.
    pub fn acls(&self) -> &BTreeSet<AclBinding> {
        &self.acls
    }

    /// The first producer id not yet allocated to any broker.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// One topic by id.
    pub fn topic_by_id(&self, topic_id: &Uuid) -> Option<&TopicImage> {
        self.topics.values().find(|t| t.topic_id == *topic_id)
    }

    /// Applies the request of the log entry at `index` (its index is the broker epoch of a
    /// registration it creates). A request id seen before returns its first result, unchanged.
    pub fn apply(&mut self, index: u64, request: &ControllerRequest) -> CommandResult {
        if let Some(first) = self.requests.get(&request.request_id) {
            return first.clone();
        }
        let result = self.apply_command(index, &request.command);
        self.requests.insert(request.request_id, result.clone());
        result
    }

    fn apply_command(&mut self, index: u64, command: &Command) -> CommandResult {
        match command {
            Command::Bootstrap {
                cluster_id,
                scram_credentials,
            } => self.bootstrap(cluster_id, scram_credentials),
            Command::RegisterBroker {
                broker_id,
                incarnation_id,
                cluster_id,
                listeners,
                rack,
            } => self.register_broker(
                index,
                *broker_id,
                *incarnation_id,
                cluster_id,
                listeners,
                rack,
            ),
            Command::UnfenceBroker {
                broker_id,
                broker_epoch,
            } => self.unfence_broker(*broker_id, *broker_epoch),
            Command::FenceBroker {
                broker_id,
                broker_epoch,
            } => self.fence_broker(*broker_id, *broker_epoch, false),
            Command::ControlledShutdown {
                broker_id,
                broker_epoch,
            } => self.fence_broker(*broker_id, *broker_epoch, true),
            Command::CreateTopic {
                name,
                topic_id,
                configs,
                assignments,
            } => self.create_topic(name, *topic_id, configs, assignments),
            Command::CreatePartitions { topic, assignments } => {
                self.create_partitions(topic, assignments)
            }
            Command::DeleteTopic { topic_id } => self.delete_topic(topic_id),
            Command::AlterTopicConfigs { topic, set, delete } => {
                self.alter_topic_configs(topic, set, delete)
            }
            Command::AlterPartition {
                broker_id,
                broker_epoch,
                topic_id,
                partition,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => self.alter_partition(
                *broker_id,
                *broker_epoch,
                topic_id,
                *partition,
                *leader_epoch,
                *partition_epoch,
                new_isr,
            ),
            Command::ElectLeader {
                topic,
                partition,
                election,
            } => self.elect_leader(topic, *partition, *election),
            Command::AllocateProducerIds {
                broker_id,
                broker_epoch,
                floor,
            } => self.allocate_producer_ids(*broker_id, *broker_epoch, *floor),
            Command::AlterScramCredentials {
                user,
                upsertions,
                deletions,
            } => self.alter_scram_credentials(user, upsertions, deletions),
            Command::AlterAcls {
                add,
                remove,
                remove_matching,
            } => self.alter_acls(add, remove, remove_matching),
        }
    }

    fn allocate_producer_ids(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
        floor: i64,
    ) -> CommandResult {
        self.check_broker_epoch(broker_id, broker_epoch)?;
        let first = self.next_producer_id.max(floor).max(0);
        let end = first
            .checked_add(PRODUCER_ID_BLOCK_SIZE)
            .ok_or_else(|| ControllerError::InvalidRequest("producer ids exhausted".into()))?;
        self.next_producer_id = end;
        Ok(CommandOutcome::ProducerIdsAllocated(ProducerIdBlock {
            broker_id,
            first,
            size: PRODUCER_ID_BLOCK_SIZE,
        }))
    }

    fn bootstrap(&mut self, cluster_id: &str, users: &[ScramCredentialEntry]) -> CommandResult {
        match &self.cluster_id {
            Some(id) if id != cluster_id => Err(ControllerError::InconsistentClusterId {
                expected: Some(id.clone()),
                got: cluster_id.to_string(),
            }),
            // Bootstrapped already: the first bootstrap's users stay.
            Some(_) => Ok(CommandOutcome::Bootstrapped),
            None => {
                for u in users {
                    check_scram_user(&u.user)?;
                }
                self.cluster_id = Some(cluster_id.to_string());
                for u in users {
                    self.scram_credentials
                        .entry(u.user.clone())
                        .or_default()
                        .insert(u.mechanism, u.credential.clone());
                }
                Ok(CommandOutcome::Bootstrapped)
            }
        }
    }

    fn alter_acls(
        &mut self,
        add: &[AclBinding],
        remove: &[AclBinding],
        remove_matching: &[AclBindingFilter],
    ) -> CommandResult {
        if let Some((b, e)) = add.iter().find_map(|b| b.validate().err().map(|e| (b, e))) {
            return Err(ControllerError::InvalidRequest(format!("ACL {b}: {e}")));
        }
        if let Some(e) = remove_matching.iter().find_map(|f| f.validate().err()) {
            return Err(ControllerError::InvalidRequest(format!("ACL filter: {e}")));
        }
        let removed: Vec<Vec<AclBinding>> = remove_matching
            .iter()
            .map(|f| self.acls.iter().filter(|b| f.matches(b)).cloned().collect())
            .collect();
        for b in remove.iter().chain(removed.iter().flatten()) {
            self.acls.remove(b);
        }
        self.acls.extend(add.iter().cloned());
        Ok(CommandOutcome::AclsAltered { removed })
    }

    fn alter_scram_credentials(
        &mut self,
        user: &str,
        upsertions: &[(ScramMechanism, ScramCredential)],
        deletions: &[ScramMechanism],
    ) -> CommandResult {
        check_scram_user(user)?;
        let existing = self.scram_credentials.get(user);
        if let Some(m) = deletions
            .iter()
            .find(|m| !existing.is_some_and(|e| e.contains_key(m)))
        {
            return Err(ControllerError::ResourceNotFound(format!(
                "user {user:?} has no {} credential to delete",
                m.name()
            )));
        }
        let entry = self.scram_credentials.entry(user.to_string()).or_default();
        for m in deletions {
            entry.remove(m);
        }
        for (m, c) in upsertions {
            entry.insert(*m, c.clone());
        }
        if entry.is_empty() {
            self.scram_credentials.remove(user);
        }
        Ok(CommandOutcome::ScramCredentialsAltered)
    }

    fn register_broker(
        &mut self,
        index: u64,
        broker_id: i32,
        incarnation_id: Uuid,
        cluster_id: &str,
        listeners: &[Endpoint],
        rack: &Option<String>,
    ) -> CommandResult {
        if self.cluster_id.as_deref() != Some(cluster_id) {
            return Err(ControllerError::InconsistentClusterId {
                expected: self.cluster_id.clone(),
                got: cluster_id.to_string(),
            });
        }
        if broker_id < 0 {
            return Err(ControllerError::InvalidRequest(format!(
                "broker id {broker_id} is negative"
            )));
        }
        if let Some(existing) = self.brokers.get(&broker_id) {
            if existing.incarnation_id == incarnation_id {
                return Ok(CommandOutcome::BrokerRegistered {
                    broker_epoch: existing.broker_epoch,
                });
            }
        }
        let broker_epoch = i64::try_from(index).unwrap_or(i64::MAX);
        let restarted = self.brokers.contains_key(&broker_id);
        self.brokers.insert(
            broker_id,
            BrokerRegistration {
                broker_id,
                incarnation_id,
                broker_epoch,
                listeners: listeners.to_vec(),
                rack: rack.clone(),
                fenced: true,
                in_controlled_shutdown: false,
            },
        );
        if restarted {
            self.move_away_from(broker_id);
        }
        Ok(CommandOutcome::BrokerRegistered { broker_epoch })
    }

    /// The registration of `broker_id` if `broker_epoch` is its current epoch.
    fn check_broker_epoch(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Result<&mut BrokerRegistration, ControllerError> {
        match self.brokers.get_mut(&broker_id) {
            Some(b) if b.broker_epoch == broker_epoch => Ok(b),
            other => Err(ControllerError::StaleBrokerEpoch {
                broker_id,
                got: broker_epoch,
                current: other.map(|b| b.broker_epoch),
            }),
        }
    }

    fn unfence_broker(&mut self, broker_id: i32, broker_epoch: i64) -> CommandResult {
        let broker = self.check_broker_epoch(broker_id, broker_epoch)?;
        broker.fenced = false;
        broker.in_controlled_shutdown = false;
        let brokers = &self.brokers;
        let eligible = |b: i32| brokers.get(&b).is_some_and(BrokerRegistration::is_eligible);
        let mut changed = 0;
        for topic in self.topics.values_mut() {
            let unclean = topic.unclean_leader_election();
            for p in topic.partitions.values_mut() {
                if !p.replicas.contains(&broker_id) {
                    continue;
                }
                if let Some(q) = election::elect_if_leaderless(p, eligible, unclean) {
                    *p = q;
                    changed += 1;
                }
            }
        }
        Ok(CommandOutcome::BrokerStateChanged {
            partitions_changed: changed,
        })
    }

    fn fence_broker(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
        controlled_shutdown: bool,
    ) -> CommandResult {
        let broker = self.check_broker_epoch(broker_id, broker_epoch)?;
        if controlled_shutdown {
            broker.in_controlled_shutdown = true;
        } else {
            broker.fenced = true;
        }
        let changed = self.move_away_from(broker_id);
        Ok(CommandOutcome::BrokerStateChanged {
            partitions_changed: changed,
        })
    }

    /// `broker_id` is no longer eligible: every partition it leads gets a new leader and it leaves
    /// every ISR it can leave. Returns how many partitions changed.
    fn move_away_from(&mut self, broker_id: i32) -> usize {
        let brokers = &self.brokers;
        let eligible = |b: i32| brokers.get(&b).is_some_and(BrokerRegistration::is_eligible);
        let mut changed = 0;
        for topic in self.topics.values_mut() {
            let unclean = topic.unclean_leader_election();
            for p in topic.partitions.values_mut() {
                if let Some(q) = election::remove_broker(p, broker_id, eligible, unclean) {
                    *p = q;
                    changed += 1;
                }
            }
        }
        changed
    }

    /// New partitions for `assignments`, validated like Kafka's manual assignment.
    fn new_partitions(
        &self,
        assignments: &[Vec<i32>],
        replication_factor: Option<usize>,
    ) -> Result<Vec<PartitionRegistration>, ControllerError> {
        let invalid = |m: String| Err(ControllerError::InvalidReplicaAssignment(m));
        if assignments.is_empty() {
            return Err(ControllerError::InvalidPartitions(
                "at least one partition is needed".into(),
            ));
        }
        let rf = replication_factor.unwrap_or(assignments[0].len());
        let mut out = Vec::with_capacity(assignments.len());
        for (i, replicas) in assignments.iter().enumerate() {
            if replicas.is_empty() {
                return invalid(format!("partition {i} has no replicas"));
            }
            if replicas.len() != rf {
                return invalid(format!(
                    "partition {i} has {} replicas, the others {rf}",
                    replicas.len()
                ));
            }
            if replicas.iter().collect::<BTreeSet<_>>().len() != replicas.len() {
                return invalid(format!("partition {i} names a broker twice"));
            }
            if let Some(b) = replicas.iter().find(|b| !self.brokers.contains_key(b)) {
                return invalid(format!("partition {i}: broker {b} is not registered"));
            }
            let isr: Vec<i32> = replicas
                .iter()
                .copied()
                .filter(|b| {
                    self.brokers
                        .get(b)
                        .is_some_and(BrokerRegistration::is_eligible)
                })
                .collect();
            let Some(&leader) = isr.first() else {
                return invalid(format!(
                    "every broker of partition {i} is fenced or shutting down"
                ));
            };
            out.push(PartitionRegistration {
                replicas: replicas.clone(),
                isr,
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
            });
        }
        Ok(out)
    }

    fn create_topic(
        &mut self,
        name: &str,
        topic_id: Uuid,
        configs: &BTreeMap<String, String>,
        assignments: &[Vec<i32>],
    ) -> CommandResult {
        if name.is_empty() {
            return Err(ControllerError::InvalidRequest("empty topic name".into()));
        }
        if self.topics.contains_key(name) {
            return Err(ControllerError::TopicAlreadyExists(name.to_string()));
        }
        if topic_id.is_nil() || self.topic_by_id(&topic_id).is_some() {
            return Err(ControllerError::InvalidRequest(format!(
                "topic id {topic_id} is nil or taken"
            )));
        }
        let partitions = self.new_partitions(assignments, None)?;
        self.topics.insert(
            name.to_string(),
            TopicImage {
                name: name.to_string(),
                topic_id,
                configs: configs.clone(),
                partitions: (0..).zip(partitions).collect(),
            },
        );
        Ok(CommandOutcome::TopicCreated { topic_id })
    }

    fn create_partitions(&mut self, topic: &str, assignments: &[Vec<i32>]) -> CommandResult {
        let unknown = || ControllerError::UnknownTopicOrPartition {
            topic: topic.to_string(),
            partition: -1,
        };
        let t = self.topics.get(topic).ok_or_else(unknown)?;
        let rf = t.partitions.values().next().map(|p| p.replicas.len());
        let first = i32::try_from(t.partitions.len())
            .map_err(|_| ControllerError::InvalidPartitions("too many partitions".into()))?;
        let added = self.new_partitions(assignments, rf)?;
        let count = i32::try_from(added.len())
            .map_err(|_| ControllerError::InvalidPartitions("too many partitions".into()))?;
        let t = self.topics.get_mut(topic).ok_or_else(unknown)?;
        t.partitions.extend((first..).zip(added));
        Ok(CommandOutcome::PartitionsCreated { first, count })
    }

    fn delete_topic(&mut self, topic_id: &Uuid) -> CommandResult {
        let name = self
            .topic_by_id(topic_id)
            .map(|t| t.name.clone())
            .ok_or(ControllerError::UnknownTopicId(*topic_id))?;
        self.topics.remove(&name);
        Ok(CommandOutcome::TopicDeleted)
    }

    fn alter_topic_configs(
        &mut self,
        topic: &str,
        set: &BTreeMap<String, String>,
        delete: &BTreeSet<String>,
    ) -> CommandResult {
        let t =
            self.topics
                .get_mut(topic)
                .ok_or_else(|| ControllerError::UnknownTopicOrPartition {
                    topic: topic.to_string(),
                    partition: -1,
                })?;
        for key in delete {
            t.configs.remove(key);
        }
        t.configs
            .extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(CommandOutcome::ConfigsAltered)
    }

    #[allow(clippy::too_many_arguments)]
    fn alter_partition(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
        topic_id: &Uuid,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: &[i32],
    ) -> CommandResult {
        self.check_broker_epoch(broker_id, broker_epoch)?;
        let brokers = &self.brokers;
        let topic = self
            .topics
            .values_mut()
            .find(|t| t.topic_id == *topic_id)
            .ok_or(ControllerError::UnknownTopicId(*topic_id))?;
        let p = topic.partitions.get_mut(&partition).ok_or_else(|| {
            ControllerError::UnknownTopicOrPartition {
                topic: topic.name.clone(),
                partition,
            }
        })?;
        if p.leader != broker_id {
            return Err(ControllerError::NotLeaderOrFollower {
                broker_id,
                leader: p.leader,
            });
        }
        if leader_epoch != p.leader_epoch {
            return Err(ControllerError::FencedLeaderEpoch {
                current: p.leader_epoch,
                got: leader_epoch,
            });
        }
        if partition_epoch != p.partition_epoch {
            return Err(ControllerError::InvalidUpdateVersion {
                current: p.partition_epoch,
                got: partition_epoch,
            });
        }
        if !new_isr.contains(&broker_id) {
            return Err(ControllerError::InvalidRequest(
                "the new ISR does not contain the leader".into(),
            ));
        }
        if new_isr.iter().collect::<BTreeSet<_>>().len() != new_isr.len() {
            return Err(ControllerError::InvalidRequest(
                "the new ISR names a broker twice".into(),
            ));
        }
        if let Some(b) = new_isr.iter().find(|b| !p.replicas.contains(b)) {
            return Err(ControllerError::InvalidRequest(format!(
                "broker {b} in the new ISR is not a replica"
            )));
        }
        // As Kafka: every member of the new ISR must be eligible, not only the added ones.
        if let Some(&b) = new_isr
            .iter()
            .find(|b| !brokers.get(b).is_some_and(BrokerRegistration::is_eligible))
        {
            return Err(ControllerError::IneligibleReplica { broker_id: b });
        }
        let mut isr = new_isr.to_vec();
        isr.sort_by_key(|b| p.replicas.iter().position(|r| r == b));
        if isr != p.isr {
            p.isr = isr;
            p.partition_epoch = p.partition_epoch.saturating_add(1);
        }
        let state = topic
            .partition_state(partition)
            .ok_or(ControllerError::UnknownTopicId(*topic_id))?;
        Ok(CommandOutcome::Partition(state))
    }

    fn elect_leader(
        &mut self,
        topic: &str,
        partition: i32,
        election: ElectionType,
    ) -> CommandResult {
        let brokers = &self.brokers;
        let eligible = |b: i32| brokers.get(&b).is_some_and(BrokerRegistration::is_eligible);
        let unknown = || ControllerError::UnknownTopicOrPartition {
            topic: topic.to_string(),
            partition,
        };
        let t = self.topics.get_mut(topic).ok_or_else(unknown)?;
        let p = t.partitions.get_mut(&partition).ok_or_else(unknown)?;
        *p = election::elect(p, election, eligible)?;
        let state = t.partition_state(partition).ok_or_else(unknown)?;
        Ok(CommandOutcome::Partition(state))
    }

    /// The brokers new replicas may be placed on: registered, unfenced, not shutting down.
    pub fn usable_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| b.is_eligible())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "test-cluster";

    /// An image with brokers 1..=n registered and unfenced, and the next free log index.
    struct Fixture {
        image: MetadataImage,
        index: u64,
    }

    impl Fixture {
        fn new(n: i32) -> Self {
            let mut f = Fixture {
                image: MetadataImage::default(),
                index: 1,
            };
            f.ok(Command::Bootstrap {
                cluster_id: CLUSTER.into(),
                scram_credentials: vec![],
            });
            for b in 1..=n {
                let epoch = f.register(b, Uuid::new_v4());
                f.ok(Command::UnfenceBroker {
                    broker_id: b,
                    broker_epoch: epoch,
                });
            }
            f
        }

        fn run(&mut self, command: Command) -> CommandResult {
            self.index += 1;
            self.image
                .apply(self.index, &ControllerRequest::new(command))
        }

        fn ok(&mut self, command: Command) -> CommandOutcome {
            let c = format!("{command:?}");
            self.run(command)
                .unwrap_or_else(|e| panic!("{c} was rejected: {e}"))
        }

        fn register(&mut self, broker_id: i32, incarnation_id: Uuid) -> i64 {
            match self.ok(Command::RegisterBroker {
                broker_id,
                incarnation_id,
                cluster_id: CLUSTER.into(),
                listeners: vec![Endpoint {
                    name: "CLUSTER".into(),
                    host: "127.0.0.1".into(),
                    port: 9093,
                    security_protocol: "PLAINTEXT".into(),
                }],
                rack: None,
            }) {
                CommandOutcome::BrokerRegistered { broker_epoch } => broker_epoch,
                other => panic!("{other:?}"),
            }
        }

        fn epoch(&self, broker_id: i32) -> i64 {
            self.image.broker(broker_id).unwrap().broker_epoch
        }

        fn create(&mut self, name: &str, assignments: Vec<Vec<i32>>) -> Uuid {
            let topic_id = Uuid::new_v4();
            self.ok(Command::CreateTopic {
                name: name.into(),
                topic_id,
                configs: BTreeMap::new(),
                assignments,
            });
            topic_id
        }

        fn partition(&self, topic: &str, p: i32) -> PartitionRegistration {
            self.image.topic(topic).unwrap().partitions[&p].clone()
        }
    }

    #[test]
    fn create_topic_leads_on_the_first_replica_with_every_replica_in_sync() {
        let mut f = Fixture::new(3);
        let id = f.create("t", vec![vec![2, 3, 1], vec![3, 1, 2]]);
        let t = f.image.topic("t").unwrap();
        assert_eq!(t.topic_id, id);
        assert_eq!(f.image.topic_by_id(&id).unwrap().name, "t");
        let p0 = f.partition("t", 0);
        assert_eq!((p0.leader, p0.leader_epoch, p0.partition_epoch), (2, 0, 0));
        assert_eq!(p0.isr, vec![2, 3, 1]);
        assert_eq!(f.partition("t", 1).leader, 3);
    }

    #[test]
    fn create_topic_validates_names_ids_and_assignments() {
        let mut f = Fixture::new(3);
        let id = f.create("t", vec![vec![1, 2]]);
        let mut again = |name: &str, topic_id: Uuid, a: Vec<Vec<i32>>| {
            f.run(Command::CreateTopic {
                name: name.into(),
                topic_id,
                configs: BTreeMap::new(),
                assignments: a,
            })
        };
        assert_eq!(
            again("t", Uuid::new_v4(), vec![vec![1]]),
            Err(ControllerError::TopicAlreadyExists("t".into()))
        );
        assert!(matches!(
            again("u", id, vec![vec![1]]),
            Err(ControllerError::InvalidRequest(_))
        ));
        for bad in [
            vec![vec![1, 1]],
            vec![vec![1, 9]],
            vec![vec![1, 2], vec![3]],
            vec![vec![]],
        ] {
            assert!(
                matches!(
                    again("u", Uuid::new_v4(), bad.clone()),
                    Err(ControllerError::InvalidReplicaAssignment(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            again("u", Uuid::new_v4(), vec![]),
            Err(ControllerError::InvalidPartitions(_))
        ));
        assert!(
            f.image.topic("u").is_none(),
            "a rejected command changes nothing"
        );
    }

    #[test]
    fn alter_partition_is_a_compare_and_set_on_broker_leader_and_partition_epochs() {
        let mut f = Fixture::new(3);
        let id = f.create("t", vec![vec![1, 2, 3]]);
        let e1 = f.epoch(1);
        let alter = |broker_id, broker_epoch, leader_epoch, partition_epoch, isr: &[i32]| {
            Command::AlterPartition {
                broker_id,
                broker_epoch,
                topic_id: id,
                partition: 0,
                leader_epoch,
                partition_epoch,
                new_isr: isr.to_vec(),
            }
        };
        // The leader shrinks the ISR: partition epoch 0 -> 1.
        let out = f.ok(alter(1, e1, 0, 0, &[1, 2]));
        let CommandOutcome::Partition(state) = out else {
            panic!("{out:?}")
        };
        assert_eq!((state.isr.clone(), state.partition_epoch), (vec![1, 2], 1));
        // The same change with the old partition epoch is stale.
        assert_eq!(
            f.run(alter(1, e1, 0, 0, &[1])),
            Err(ControllerError::InvalidUpdateVersion { current: 1, got: 0 })
        );
        // A wrong leader epoch is fenced.
        assert_eq!(
            f.run(alter(1, e1, 3, 1, &[1])),
            Err(ControllerError::FencedLeaderEpoch { current: 0, got: 3 })
        );
        // A wrong broker epoch is stale.
        assert_eq!(
            f.run(alter(1, e1 + 100, 0, 1, &[1])),
            Err(ControllerError::StaleBrokerEpoch {
                broker_id: 1,
                got: e1 + 100,
                current: Some(e1)
            })
        );
        // Only the leader may alter it.
        let e2 = f.epoch(2);
        assert_eq!(
            f.run(alter(2, e2, 0, 1, &[2])),
            Err(ControllerError::NotLeaderOrFollower {
                broker_id: 2,
                leader: 1
            })
        );
        // The ISR must keep the leader and name only replicas.
        assert!(matches!(
            f.run(alter(1, e1, 0, 1, &[2])),
            Err(ControllerError::InvalidRequest(_))
        ));
        assert!(matches!(
            f.run(alter(1, e1, 0, 1, &[1, 7])),
            Err(ControllerError::InvalidRequest(_))
        ));
        // A fenced broker may not join the ISR.
        let e3 = f.epoch(3);
        f.ok(Command::FenceBroker {
            broker_id: 3,
            broker_epoch: e3,
        });
        assert_eq!(
            f.run(alter(1, e1, 0, 1, &[1, 2, 3])),
            Err(ControllerError::IneligibleReplica { broker_id: 3 })
        );
        // Expanding again with the current epochs works; order follows the replica list.
        f.ok(Command::UnfenceBroker {
            broker_id: 3,
            broker_epoch: e3,
        });
        f.ok(alter(1, e1, 0, 1, &[3, 1, 2]));
        let p = f.partition("t", 0);
        assert_eq!(
            (p.isr, p.partition_epoch, p.leader_epoch),
            (vec![1, 2, 3], 2, 0)
        );
    }

    #[test]
    fn a_retried_request_returns_the_first_outcome_and_is_not_applied_twice() {
        let mut f = Fixture::new(2);
        let id = f.create("t", vec![vec![1, 2]]);
        let request = ControllerRequest::new(Command::AlterPartition {
            broker_id: 1,
            broker_epoch: f.epoch(1),
            topic_id: id,
            partition: 0,
            leader_epoch: 0,
            partition_epoch: 0,
            new_isr: vec![1],
        });
        let first = f.image.apply(100, &request);
        assert!(first.is_ok());
        // Applied again (a proposer retrying after a lost answer): same outcome, not
        // INVALID_UPDATE_VERSION, and the partition epoch moved once.
        assert_eq!(f.image.apply(101, &request), first);
        assert_eq!(f.partition("t", 0).partition_epoch, 1);
        // The same command under a new request id is a new attempt and is stale now.
        let retry = ControllerRequest::new(request.command.clone());
        assert!(matches!(
            f.image.apply(102, &retry),
            Err(ControllerError::InvalidUpdateVersion { .. })
        ));
    }

    #[test]
    fn the_request_log_forgets_the_oldest_ids_beyond_its_capacity() {
        let mut log = RequestLog::default();
        let ids: Vec<Uuid> = (0..REQUEST_LOG_CAPACITY + 2)
            .map(|_| Uuid::new_v4())
            .collect();
        for id in &ids {
            log.insert(*id, Ok(CommandOutcome::ConfigsAltered));
        }
        assert_eq!(log.order.len(), REQUEST_LOG_CAPACITY);
        assert_eq!(log.outcomes.len(), REQUEST_LOG_CAPACITY);
        assert!(log.get(&ids[0]).is_none() && log.get(&ids[1]).is_none());
        assert!(log.get(&ids[2]).is_some() && log.get(ids.last().unwrap()).is_some());
    }

    #[test]
    fn fencing_a_leader_elects_from_the_isr_and_unfencing_restores_a_leaderless_partition() {
        let mut f = Fixture::new(3);
        f.create("t", vec![vec![1, 2, 3], vec![2, 3, 1]]);
        let e1 = f.epoch(1);
        let out = f.ok(Command::FenceBroker {
            broker_id: 1,
            broker_epoch: e1,
        });
        assert_eq!(
            out,
            CommandOutcome::BrokerStateChanged {
                partitions_changed: 2
            }
        );
        let p0 = f.partition("t", 0);
        assert_eq!(
            (p0.leader, p0.leader_epoch, p0.isr.clone()),
            (2, 1, vec![2, 3])
        );
        let p1 = f.partition("t", 1);
        assert_eq!(
            (p1.leader, p1.leader_epoch, p1.isr.clone()),
            (2, 0, vec![2, 3])
        );
        // Fence 2 and 3 too: partition 0 ends leaderless with its last ISR member kept.
        for b in [2, 3] {
            let e = f.epoch(b);
            f.ok(Command::FenceBroker {
                broker_id: b,
                broker_epoch: e,
            });
        }
        let p0 = f.partition("t", 0);
        assert_eq!((p0.leader, p0.isr.clone()), (NO_LEADER, vec![3]));
        // Broker 1 returns: it is not in the ISR, and unclean election is off.
        f.ok(Command::UnfenceBroker {
            broker_id: 1,
            broker_epoch: e1,
        });
        assert_eq!(f.partition("t", 0).leader, NO_LEADER);
        // Broker 3, the last in-sync replica, returns and leads again.
        let e3 = f.epoch(3);
        f.ok(Command::UnfenceBroker {
            broker_id: 3,
            broker_epoch: e3,
        });
        let p0_after = f.partition("t", 0);
        assert_eq!(p0_after.leader, 3);
        assert!(p0_after.leader_epoch > p0.leader_epoch);
        assert!(p0_after.partition_epoch > p0.partition_epoch);
    }

    #[test]
    fn unclean_election_follows_the_topic_config() {
        let mut f = Fixture::new(2);
        f.ok(Command::CreateTopic {
            name: "t".into(),
            topic_id: Uuid::new_v4(),
            configs: [(UNCLEAN_LEADER_ELECTION.to_string(), "true".to_string())].into(),
            assignments: vec![vec![1, 2]],
        });
        let id = f.image.topic("t").unwrap().topic_id;
        let e1 = f.epoch(1);
        f.ok(Command::AlterPartition {
            broker_id: 1,
            broker_epoch: e1,
            topic_id: id,
            partition: 0,
            leader_epoch: 0,
            partition_epoch: 0,
            new_isr: vec![1],
        });
        f.ok(Command::FenceBroker {
            broker_id: 1,
            broker_epoch: e1,
        });
        let p = f.partition("t", 0);
        assert_eq!((p.leader, p.isr), (2, vec![2]));
    }

    #[test]
    fn stale_broker_epochs_are_rejected_after_a_restart() {
        let mut f = Fixture::new(2);
        f.create("t", vec![vec![1, 2]]);
        let old = f.epoch(1);
        let incarnation = f.image.broker(1).unwrap().incarnation_id;
        // The same incarnation registering again (a retried registration) keeps its epoch.
        assert_eq!(f.register(1, incarnation), old);
        // A restart: new incarnation, new epoch, fenced, and it lost leadership.
        let new = f.register(1, Uuid::new_v4());
        assert!(new > old);
        assert!(f.image.broker(1).unwrap().fenced);
        let p = f.partition("t", 0);
        assert_eq!((p.leader, p.isr), (2, vec![2]));
        // The old incarnation's fencing timer fires late: rejected, KIP-903.
        assert_eq!(
            f.run(Command::UnfenceBroker {
                broker_id: 1,
                broker_epoch: old
            }),
            Err(ControllerError::StaleBrokerEpoch {
                broker_id: 1,
                got: old,
                current: Some(new)
            })
        );
        assert!(matches!(
            f.run(Command::FenceBroker {
                broker_id: 9,
                broker_epoch: 1
            }),
            Err(ControllerError::StaleBrokerEpoch { current: None, .. })
        ));
    }

    #[test]
    fn registration_needs_this_clusters_id() {
        let mut f = Fixture::new(0);
        assert!(matches!(
            f.run(Command::RegisterBroker {
                broker_id: 1,
                incarnation_id: Uuid::new_v4(),
                cluster_id: "other".into(),
                listeners: vec![],
                rack: None,
            }),
            Err(ControllerError::InconsistentClusterId { .. })
        ));
        assert!(matches!(
            f.run(Command::Bootstrap {
                cluster_id: "other".into(),
                scram_credentials: vec![],
            }),
            Err(ControllerError::InconsistentClusterId { .. })
        ));
        assert_eq!(
            f.run(Command::Bootstrap {
                cluster_id: CLUSTER.into(),
                scram_credentials: vec![],
            }),
            Ok(CommandOutcome::Bootstrapped)
        );
    }

    #[test]
    fn controlled_shutdown_moves_leadership_away_and_blocks_new_leadership() {
        let mut f = Fixture::new(3);
        f.create("t", vec![vec![1, 2, 3]]);
        let e1 = f.epoch(1);
        f.ok(Command::ControlledShutdown {
            broker_id: 1,
            broker_epoch: e1,
        });
        let p = f.partition("t", 0);
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2, 3]));
        assert_eq!(
            f.run(Command::ElectLeader {
                topic: "t".into(),
                partition: 0,
                election: ElectionType::Preferred
            }),
            Err(ControllerError::PreferredLeaderNotAvailable(1))
        );
        // New topics are not placed on a broker that is shutting down.
        assert!(f.image.usable_brokers().all(|b| b.broker_id != 1));
    }

    #[test]
    fn partitions_configs_and_deletion() {
        let mut f = Fixture::new(3);
        let id = f.create("t", vec![vec![1, 2]]);
        assert_eq!(
            f.ok(Command::CreatePartitions {
                topic: "t".into(),
                assignments: vec![vec![2, 3], vec![3, 1]]
            }),
            CommandOutcome::PartitionsCreated { first: 1, count: 2 }
        );
        assert_eq!(f.partition("t", 2).leader, 3);
        // New partitions keep the topic's replication factor.
        assert!(matches!(
            f.run(Command::CreatePartitions {
                topic: "t".into(),
                assignments: vec![vec![1]]
            }),
            Err(ControllerError::InvalidReplicaAssignment(_))
        ));
        f.ok(Command::AlterTopicConfigs {
            topic: "t".into(),
            set: [("retention.ms".to_string(), "1000".to_string())].into(),
            delete: BTreeSet::new(),
        });
        assert_eq!(f.image.topic("t").unwrap().configs["retention.ms"], "1000");
        f.ok(Command::AlterTopicConfigs {
            topic: "t".into(),
            set: BTreeMap::new(),
            delete: ["retention.ms".to_string()].into(),
        });
        assert!(f.image.topic("t").unwrap().configs.is_empty());
        f.ok(Command::DeleteTopic { topic_id: id });
        assert!(f.image.topic("t").is_none());
        assert_eq!(
            f.run(Command::DeleteTopic { topic_id: id }),
            Err(ControllerError::UnknownTopicId(id))
        );
    }

    #[test]
    fn preferred_election_moves_leadership_back() {
        let mut f = Fixture::new(2);
        f.create("t", vec![vec![1, 2]]);
        let e1 = f.epoch(1);
        f.ok(Command::FenceBroker {
            broker_id: 1,
            broker_epoch: e1,
        });
        f.ok(Command::UnfenceBroker {
            broker_id: 1,
            broker_epoch: e1,
        });
        // 1 is back but out of the ISR until the leader adds it.
        assert!(f
            .run(Command::ElectLeader {
                topic: "t".into(),
                partition: 0,
                election: ElectionType::Preferred
            })
            .is_err());
        let p = f.partition("t", 0);
        let id = f.image.topic("t").unwrap().topic_id;
        let e2 = f.epoch(2);
        f.ok(Command::AlterPartition {
            broker_id: 2,
            broker_epoch: e2,
            topic_id: id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: vec![2, 1],
        });
        let out = f.ok(Command::ElectLeader {
            topic: "t".into(),
            partition: 0,
            election: ElectionType::Preferred,
        });
        let CommandOutcome::Partition(state) = out else {
            panic!("{out:?}")
        };
        assert_eq!((state.leader, state.isr), (1, vec![1, 2]));
        assert!(state.leader_epoch > p.leader_epoch);
    }

    fn allocate(f: &mut Fixture, broker_id: i32, floor: i64) -> CommandResult {
        let broker_epoch = f.epoch(broker_id);
        f.run(Command::AllocateProducerIds {
            broker_id,
            broker_epoch,
            floor,
        })
    }

    #[test]
    fn producer_id_blocks_never_overlap_and_respect_the_floor() {
        let mut f = Fixture::new(2);
        let block = |r: CommandResult| match r {
            Ok(CommandOutcome::ProducerIdsAllocated(b)) => b,
            other => panic!("{other:?}"),
        };
        let a = block(allocate(&mut f, 1, 0));
        let b = block(allocate(&mut f, 2, 0));
        assert_eq!(
            (a.broker_id, a.first, a.size),
            (1, 0, PRODUCER_ID_BLOCK_SIZE)
        );
        assert_eq!(b.first, a.end());
        // A node that handed out ids on its own (before it was formatted into the cluster)
        // gets a block above them; later blocks follow that one.
        let c = block(allocate(&mut f, 1, 5_500));
        assert_eq!(c.first, 5_500);
        let d = block(allocate(&mut f, 2, 10));
        assert_eq!(d.first, c.end());
        assert_eq!(f.image.next_producer_id(), d.end());
    }

    #[test]
    fn producer_ids_need_the_current_broker_epoch_and_a_retry_gets_the_same_block() {
        let mut f = Fixture::new(1);
        let stale = f.epoch(1) - 1;
        assert!(matches!(
            f.run(Command::AllocateProducerIds {
                broker_id: 1,
                broker_epoch: stale,
                floor: 0
            }),
            Err(ControllerError::StaleBrokerEpoch { .. })
        ));
        assert!(matches!(
            f.run(Command::AllocateProducerIds {
                broker_id: 7,
                broker_epoch: 1,
                floor: 0
            }),
            Err(ControllerError::StaleBrokerEpoch { current: None, .. })
        ));
        assert_eq!(
            f.image.next_producer_id(),
            0,
            "a refused request allocates nothing"
        );
        let request = ControllerRequest::new(Command::AllocateProducerIds {
            broker_id: 1,
            broker_epoch: f.epoch(1),
            floor: 0,
        });
        let first = f.image.apply(100, &request);
        let retried = f.image.apply(101, &request);
        assert_eq!(first, retried);
        assert_eq!(f.image.next_producer_id(), PRODUCER_ID_BLOCK_SIZE);
    }

    #[test]
    fn producer_id_allocation_survives_a_snapshot_and_old_snapshots_start_at_zero() {
        let mut f = Fixture::new(1);
        allocate(&mut f, 1, 0).unwrap();
        let mut buf = Vec::new();
        ciborium::into_writer(&f.image, &mut buf).unwrap();
        let back: MetadataImage = ciborium::from_reader(&buf[..]).unwrap();
        assert_eq!(back.next_producer_id(), PRODUCER_ID_BLOCK_SIZE);
        // A snapshot of a version without the field.
        let mut value: ciborium::Value = ciborium::from_reader(&buf[..]).unwrap();
        let ciborium::Value::Map(fields) = &mut value else {
            panic!("{value:?}")
        };
        let before = fields.len();
        fields.retain(|(k, _)| k.as_text() != Some("next_producer_id"));
        assert_eq!(fields.len(), before - 1);
        let old: MetadataImage = value.deserialized().unwrap();
        assert_eq!(old.next_producer_id(), 0);
        assert_eq!(old.brokers(), f.image.brokers());
    }

    fn credential(password: &str) -> ScramCredential {
        ScramCredential::derive(ScramMechanism::Sha256, password.as_bytes(), b"salt", 4096)
    }

    #[test]
    fn scram_credentials_come_with_the_bootstrap_and_change_all_or_nothing() {
        let mut image = MetadataImage::default();
        let admin = ScramCredentialEntry {
            user: "admin".into(),
            mechanism: ScramMechanism::Sha512,
            credential: credential("a"),
        };
        let bootstrap = |users: Vec<ScramCredentialEntry>| {
            ControllerRequest::new(Command::Bootstrap {
                cluster_id: CLUSTER.into(),
                scram_credentials: users,
            })
        };
        image.apply(1, &bootstrap(vec![admin.clone()])).unwrap();
        // A second bootstrap (another voter's, with other users) changes nothing.
        let mut other = admin.clone();
        other.credential = credential("b");
        image.apply(2, &bootstrap(vec![other])).unwrap();
        assert_eq!(
            image.scram_credentials()["admin"][&ScramMechanism::Sha512],
            admin.credential
        );
        let alter = |user: &str, up: Vec<(ScramMechanism, ScramCredential)>, del| {
            ControllerRequest::new(Command::AlterScramCredentials {
                user: user.into(),
                upsertions: up,
                deletions: del,
            })
        };
        let sha256 = ScramMechanism::Sha256;
        image
            .apply(3, &alter("alice", vec![(sha256, credential("x"))], vec![]))
            .unwrap();
        // Deleting what does not exist rejects the whole request: the upsert is not applied.
        assert!(matches!(
            image.apply(
                4,
                &alter(
                    "alice",
                    vec![(sha256, credential("y"))],
                    vec![ScramMechanism::Sha512]
                )
            ),
            Err(ControllerError::ResourceNotFound(_))
        ));
        assert_eq!(image.scram_credentials()["alice"][&sha256], credential("x"));
        assert!(matches!(
            image.apply(5, &alter("", vec![(sha256, credential("y"))], vec![])),
            Err(ControllerError::UnacceptableCredential(_))
        ));
        image
            .apply(6, &alter("alice", vec![], vec![sha256]))
            .unwrap();
        assert!(!image.scram_credentials().contains_key("alice"));
        assert!(image.scram_credentials().contains_key("admin"));
    }
}
