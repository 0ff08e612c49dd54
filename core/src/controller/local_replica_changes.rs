//! What a change of the metadata image means for one broker's own replicas (Kafka's
//! `TopicsDelta.localChanges` / `LocalReplicaChanges`, which `ReplicaManager.applyDelta` acts on).
//!
//! Every node applies the committed metadata log to its image; after each change the node compares
//! the image it acted on last with the new one and gets, for itself:
//! - **deletes**: local topic copies to drop (the topic is gone, or its name now belongs to a
//!   topic with another id),
//! - **topics**: topics it hosts replicas of whose local copy must be reconciled (partition count,
//!   configs or the set of partitions assigned to it changed) with the partitions it hosts,
//! - **leaders** and **followers**: hosted partitions whose registration changed, split by the role
//!   the new registration gives this node (a partition without a leader makes it a follower of
//!   nobody, which stops fetching).
//!
//! The comparison is a pure function of the two images, so a restarted node (no previous image)
//! gets every hosted partition as a change, and replaying the same image twice yields nothing.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::image::{MetadataImage, PartitionRegistration, TopicImage};

/// A topic whose local copy must go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTopicDelete {
    /// The topic name of the local copy.
    pub name: String,
    /// The id the local copy belonged to.
    pub topic_id: Uuid,
}

/// A topic this broker hosts replicas of, as the image now has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedTopic {
    pub name: String,
    pub topic_id: Uuid,
    /// The topic's partition count (all partitions, hosted here or not).
    pub partition_count: i32,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
    /// The partitions whose replica lists include this broker.
    pub hosted: BTreeSet<i32>,
}

/// A hosted partition whose registration changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPartitionChange {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    /// The registration as it is now.
    pub registration: PartitionRegistration,
}

/// The changes one broker must make to its replicas (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalReplicaChanges {
    pub deletes: Vec<LocalTopicDelete>,
    pub topics: Vec<HostedTopic>,
    pub leaders: Vec<LocalPartitionChange>,
    pub followers: Vec<LocalPartitionChange>,
}

impl LocalReplicaChanges {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty()
            && self.topics.is_empty()
            && self.leaders.is_empty()
            && self.followers.is_empty()
    }
}

fn hosted_partitions(topic: &TopicImage, broker_id: i32) -> BTreeSet<i32> {
    topic
        .partitions
        .iter()
        .filter(|(_, r)| r.replicas.contains(&broker_id))
        .map(|(p, _)| *p)
        .collect()
}

/// The changes `broker_id` must make to go from `previous` (the image it last acted on; `None`
/// after a start) to `next`.
pub fn local_changes(
    previous: Option<&MetadataImage>,
    next: &MetadataImage,
    broker_id: i32,
) -> LocalReplicaChanges {
    let mut out = LocalReplicaChanges::default();
    if let Some(prev) = previous {
        for (name, old) in prev.topics() {
            let gone = match next.topic(name) {
                None => true,
                Some(new) => new.topic_id != old.topic_id,
            };
            if gone && !hosted_partitions(old, broker_id).is_empty() {
                out.deletes.push(LocalTopicDelete {
                    name: name.clone(),
                    topic_id: old.topic_id,
                });
            }
        }
    }
    for (name, topic) in next.topics() {
        let old = previous
            .and_then(|p| p.topic(name))
            .filter(|o| o.topic_id == topic.topic_id);
        let hosted = hosted_partitions(topic, broker_id);
        let old_hosted = old.map(|o| hosted_partitions(o, broker_id));
        let reconcile = match old {
            // A topic this broker never hosted and still does not host needs nothing.
            None => !hosted.is_empty(),
            Some(o) => {
                old_hosted.as_ref() != Some(&hosted)
                    || (!hosted.is_empty()
                        && (o.configs != topic.configs
                            || o.partitions.len() != topic.partitions.len()))
            }
        };
        if reconcile {
            out.topics.push(HostedTopic {
                name: name.clone(),
                topic_id: topic.topic_id,
                partition_count: topic.partitions.len() as i32,
                configs: topic.configs.clone(),
                hosted: hosted.clone(),
            });
        }
        for p in &hosted {
            let registration = &topic.partitions[p];
            if old.and_then(|o| o.partitions.get(p)) == Some(registration) {
                continue;
            }
            let change = LocalPartitionChange {
                topic: name.clone(),
                topic_id: topic.topic_id,
                partition: *p,
                registration: registration.clone(),
            };
            if registration.leader == broker_id {
                out.leaders.push(change);
            } else {
                out.followers.push(change);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::command::{Command, ControllerRequest};
    use crate::controller::image::{Endpoint, NO_LEADER};

    struct Cluster {
        image: MetadataImage,
        index: u64,
        epochs: BTreeMap<i32, i64>,
    }

    impl Cluster {
        fn new(brokers: i32) -> Self {
            let mut c = Cluster {
                image: MetadataImage::default(),
                index: 0,
                epochs: BTreeMap::new(),
            };
            c.run(Command::Bootstrap {
                cluster_id: "c".into(),
                scram_credentials: vec![],
            });
            for b in 1..=brokers {
                c.run(Command::RegisterBroker {
                    broker_id: b,
                    incarnation_id: Uuid::new_v4(),
                    cluster_id: "c".into(),
                    listeners: vec![Endpoint {
                        name: "CLUSTER".into(),
                        host: "127.0.0.1".into(),
                        port: 9093,
                        security_protocol: "PLAINTEXT".into(),
                    }],
                    rack: None,
                });
                let epoch = c.image.broker(b).unwrap().broker_epoch;
                c.epochs.insert(b, epoch);
                c.run(Command::UnfenceBroker {
                    broker_id: b,
                    broker_epoch: epoch,
                });
            }
            c
        }

        fn run(&mut self, command: Command) {
            self.index += 1;
            let c = format!("{command:?}");
            self.image
                .apply(self.index, &ControllerRequest::new(command))
                .unwrap_or_else(|e| panic!("{c}: {e}"));
        }
    }

    fn names(changes: &[LocalPartitionChange]) -> Vec<(String, i32)> {
        changes
            .iter()
            .map(|c| (c.topic.clone(), c.partition))
            .collect()
    }

    #[test]
    fn a_start_sees_every_hosted_partition_once() {
        let mut c = Cluster::new(3);
        let id = Uuid::new_v4();
        c.run(Command::CreateTopic {
            name: "t".into(),
            topic_id: id,
            configs: BTreeMap::new(),
            assignments: vec![vec![1, 2], vec![2, 3], vec![3, 1]],
        });
        let ch = local_changes(None, &c.image, 1);
        assert_eq!(ch.deletes, vec![]);
        assert_eq!(ch.topics.len(), 1);
        assert_eq!(ch.topics[0].hosted, BTreeSet::from([0, 2]));
        assert_eq!(ch.topics[0].partition_count, 3);
        assert_eq!(names(&ch.leaders), vec![("t".to_string(), 0)]);
        assert_eq!(names(&ch.followers), vec![("t".to_string(), 2)]);
        // Broker 2 hosts 0 and 1, leads 1.
        let ch2 = local_changes(None, &c.image, 2);
        assert_eq!(names(&ch2.leaders), vec![("t".to_string(), 1)]);
        assert_eq!(names(&ch2.followers), vec![("t".to_string(), 0)]);
        // The same image again: nothing.
        assert!(local_changes(Some(&c.image), &c.image, 1).is_empty());
    }

    #[test]
    fn leader_moves_configs_and_deletes_are_seen_by_the_right_broker() {
        let mut c = Cluster::new(3);
        let id = Uuid::new_v4();
        c.run(Command::CreateTopic {
            name: "t".into(),
            topic_id: id,
            configs: BTreeMap::new(),
            assignments: vec![vec![1, 2]],
        });
        c.run(Command::CreateTopic {
            name: "elsewhere".into(),
            topic_id: Uuid::new_v4(),
            configs: BTreeMap::new(),
            assignments: vec![vec![3]],
        });
        let before = c.image.clone();
        // Broker 1 is fenced: broker 2 leads partition 0, broker 1 leaves the ISR.
        c.run(Command::FenceBroker {
            broker_id: 1,
            broker_epoch: c.epochs[&1],
        });
        let ch2 = local_changes(Some(&before), &c.image, 2);
        assert_eq!(names(&ch2.leaders), vec![("t".to_string(), 0)]);
        assert_eq!(ch2.leaders[0].registration.leader_epoch, 1);
        assert!(ch2.topics.is_empty(), "hosting did not change");
        let ch1 = local_changes(Some(&before), &c.image, 1);
        assert_eq!(names(&ch1.followers), vec![("t".to_string(), 0)]);
        // Broker 3 hosts nothing of "t": no change at all.
        assert!(local_changes(Some(&before), &c.image, 3).is_empty());

        let before = c.image.clone();
        c.run(Command::AlterTopicConfigs {
            topic: "t".into(),
            set: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
            delete: BTreeSet::new(),
        });
        let ch = local_changes(Some(&before), &c.image, 2);
        assert_eq!(ch.topics.len(), 1);
        assert_eq!(ch.topics[0].configs["retention.ms"], "1000");
        assert!(ch.leaders.is_empty() && ch.followers.is_empty());

        let before = c.image.clone();
        c.run(Command::DeleteTopic { topic_id: id });
        let ch = local_changes(Some(&before), &c.image, 2);
        assert_eq!(
            ch.deletes,
            vec![LocalTopicDelete {
                name: "t".into(),
                topic_id: id
            }]
        );
        assert!(local_changes(Some(&before), &c.image, 3).deletes.is_empty());
    }

    #[test]
    fn a_name_reused_by_a_new_topic_deletes_and_recreates() {
        let mut c = Cluster::new(1);
        let old = Uuid::new_v4();
        c.run(Command::CreateTopic {
            name: "t".into(),
            topic_id: old,
            configs: BTreeMap::new(),
            assignments: vec![vec![1]],
        });
        let before = c.image.clone();
        c.run(Command::DeleteTopic { topic_id: old });
        let new = Uuid::new_v4();
        c.run(Command::CreateTopic {
            name: "t".into(),
            topic_id: new,
            configs: BTreeMap::new(),
            assignments: vec![vec![1], vec![1]],
        });
        let ch = local_changes(Some(&before), &c.image, 1);
        assert_eq!(ch.deletes.len(), 1);
        assert_eq!(ch.deletes[0].topic_id, old);
        assert_eq!(ch.topics[0].topic_id, new);
        assert_eq!(ch.topics[0].hosted, BTreeSet::from([0, 1]));
        assert_eq!(ch.leaders.len(), 2);
    }

    #[test]
    fn a_leaderless_partition_makes_its_replicas_followers_of_nobody() {
        let mut c = Cluster::new(1);
        c.run(Command::CreateTopic {
            name: "t".into(),
            topic_id: Uuid::new_v4(),
            configs: BTreeMap::new(),
            assignments: vec![vec![1]],
        });
        let before = c.image.clone();
        c.run(Command::FenceBroker {
            broker_id: 1,
            broker_epoch: c.epochs[&1],
        });
        let ch = local_changes(Some(&before), &c.image, 1);
        assert_eq!(ch.followers.len(), 1);
        assert_eq!(ch.followers[0].registration.leader, NO_LEADER);
    }
}
