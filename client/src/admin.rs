//! Admin calls the bridge and tools need beyond the CLI's own: create a topic unless it exists
//! and wait until its partitions have leaders; DescribeCluster; ElectLeaders.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    CreateTopicsRequest, DescribeClusterRequest, ElectLeadersRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{retry_backoff, Client, Route, ATTEMPTS};
use crate::error::{check, ClientError};
use crate::metadata::TopicInfo;

/// How long [`Client::create_topic_if_missing`] waits for the leaders of a new topic.
const LEADERS_TIMEOUT: Duration = Duration::from_secs(30);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A broker as DescribeCluster describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterBroker {
    /// Broker id.
    pub node_id: i32,
    /// Host.
    pub host: String,
    /// Port.
    pub port: i32,
    /// Rack, if it has one.
    pub rack: Option<String>,
}

/// The cluster as DescribeCluster describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterDescription {
    /// Cluster id.
    pub cluster_id: String,
    /// The controller (-1 unknown).
    pub controller_id: i32,
    /// The live brokers, by id.
    pub brokers: Vec<ClusterBroker>,
}

/// Kafka's election types for [`Client::elect_leaders`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// Move leadership back to the first replica.
    Preferred = 0,
    /// Elect a leader for a leaderless partition, from outside the ISR if need be.
    Unclean = 1,
}

impl Client {
    /// DescribeCluster, asked of any broker.
    pub async fn describe_cluster(&mut self) -> Result<ClusterDescription, ClientError> {
        let req = DescribeClusterRequest::default().with_endpoint_type(1);
        let resp = self.any().await?.send(&req).await?;
        check(resp.error_code, resp.error_message.as_ref(), || {
            "describe the cluster".to_string()
        })?;
        let mut brokers: Vec<ClusterBroker> = resp
            .brokers
            .iter()
            .map(|b| ClusterBroker {
                node_id: b.broker_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        brokers.sort_by_key(|b| b.node_id);
        Ok(ClusterDescription {
            cluster_id: resp.cluster_id.to_string(),
            controller_id: resp.controller_id.0,
            brokers,
        })
    }

    /// ElectLeaders for `partitions` of `topic`s (`None`: every partition that needs one), sent to
    /// the controller; the error code of each partition the broker answered for (0: elected).
    pub async fn elect_leaders(
        &mut self,
        election: Election,
        partitions: Option<&[(&str, Vec<i32>)]>,
    ) -> Result<Vec<(String, i32, i16)>, ClientError> {
        let req = ElectLeadersRequest::default()
            .with_election_type(election as i8)
            .with_timeout_ms(30_000)
            .with_topic_partitions(partitions.map(|ps| {
                ps.iter()
                    .map(|(t, p)| {
                        TopicPartitions::default()
                            .with_topic(TopicName(s(t)))
                            .with_partitions(p.clone())
                    })
                    .collect()
            }));
        let resp = self.controller().await?.send(&req).await?;
        check(resp.error_code, None, || "elect leaders".to_string())?;
        Ok(resp
            .replica_election_results
            .iter()
            .flat_map(|t| {
                t.partition_result
                    .iter()
                    .map(|p| (t.topic.0.to_string(), p.partition_id, p.error_code))
            })
            .collect())
    }

    /// The topic `name`, created first with `partitions`, `replication` (-1: the broker's
    /// default) and `configs` when it does not exist (TOPIC_ALREADY_EXISTS from a concurrent
    /// creator is fine); waits until every partition has a leader.
    pub async fn create_topic_if_missing(
        &mut self,
        name: &str,
        partitions: i32,
        replication: i16,
        configs: &[(&str, &str)],
    ) -> Result<TopicInfo, ClientError> {
        let md = self.metadata(Some(&[name]), false).await?;
        if let Some(t) = md.topics.get(name).filter(|t| t.has_leaders()) {
            return Ok(t.clone());
        }
        if !md.topics.contains_key(name) {
            self.create_topic(name, partitions, replication, configs)
                .await?;
        }
        let deadline = tokio::time::Instant::now() + LEADERS_TIMEOUT;
        let mut delay = Duration::from_millis(50);
        loop {
            let md = self.metadata(Some(&[name]), false).await?;
            if let Some(t) = md.topics.get(name).filter(|t| t.has_leaders()) {
                return Ok(t.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Kafka {
                    context: format!("topic {name} did not get partition leaders"),
                    code: ResponseError::LeaderNotAvailable,
                    message: None,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    /// CreateTopics of one topic at the controller; TOPIC_ALREADY_EXISTS is not an error.
    async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication: i16,
        configs: &[(&str, &str)],
    ) -> Result<(), ClientError> {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(s(name)))
                .with_num_partitions(partitions)
                .with_replication_factor(replication)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(s(k))
                                .with_value(Some(s(v)))
                        })
                        .collect(),
                )]);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r: Result<_, ClientError> = async {
                let resp = self.controller().await?.send(&req).await?;
                match resp.topics.first() {
                    Some(t) if t.error_code == ResponseError::TopicAlreadyExists.code() => Ok(()),
                    Some(t) => check(t.error_code, t.error_message.as_ref(), || {
                        format!("create topic {name}")
                    }),
                    None => Err(ClientError::Usage(format!(
                        "broker sent no CreateTopics result for {name}"
                    ))),
                }
            }
            .await;
            match r {
                Err(e) if e.is_stale_routing() && attempt < ATTEMPTS => {
                    self.recover(&e, Route::Any);
                    tokio::time::sleep(retry_backoff(attempt)).await;
                }
                r => return r,
            }
        }
    }
}
