//! Admin calls the bridge and tools need beyond the CLI's own: create a topic unless it exists
//! and wait until its partitions have leaders.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{retry_backoff, Client, Route, ATTEMPTS};
use crate::error::{check, ClientError};
use crate::metadata::TopicInfo;

/// How long [`Client::create_topic_if_missing`] waits for the leaders of a new topic.
const LEADERS_TIMEOUT: Duration = Duration::from_secs(30);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Client {
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
