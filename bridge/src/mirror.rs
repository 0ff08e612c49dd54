//! A compiled `[[mirror]]`: which topics it selects, which records pass its filters, where a
//! record goes in the target topic, and how to connect to its target cluster.

use std::time::Duration;

use kafka_protocol::records::Record;
use rill_client::{ClientError, ConnectOptions};
use rill_core::partitioner::partition_for_key;

use crate::config::MirrorConfig;
use crate::origin::header;

/// How long the bridge waits for a connection or a response of its target.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Target partition of a record from `source_partition` when the target has `n` partitions:
/// the same partition if it exists, else the key's murmur2 hash (Kafka's), else round robin.
pub fn target_partition(source_partition: i32, n: i32, key: Option<&[u8]>) -> i32 {
    if source_partition < n {
        return source_partition;
    }
    match key {
        Some(k) => partition_for_key(k, n),
        None => source_partition % n.max(1),
    }
}

/// Errors of a mirror session (the session is restarted after a backoff).
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// Talking to the target failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The mirror's target settings are unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Reading the local log failed.
    #[error("source: {0}")]
    Source(String),
    /// The target refused something.
    #[error("target: {0}")]
    Target(String),
}

/// A compiled mirror.
pub struct Mirror {
    /// Its configuration.
    pub config: MirrorConfig,
    pub(crate) security: crate::security::TargetSecurity,
    regex: Option<regex_automata::meta::Regex>,
    header_filter: Option<(String, Option<Vec<u8>>)>,
}

impl Mirror {
    /// Compile a validated mirror configuration.
    pub fn new(config: MirrorConfig) -> Result<Mirror, crate::config::ConfigError> {
        config.validate()?;
        let regex = match &config.topics_regex {
            Some(r) => Some(
                regex_automata::meta::Regex::new(&format!("^(?:{r})$")).map_err(|e| {
                    crate::config::ConfigError::Invalid(format!("topics_regex: {e}"))
                })?,
            ),
            None => None,
        };
        let header_filter = config
            .filter_header
            .as_ref()
            .map(|f| match f.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.as_bytes().to_vec())),
                None => (f.clone(), None),
            });
        Ok(Mirror {
            security: config.security()?,
            config,
            regex,
            header_filter,
        })
    }

    /// How to connect to the target: its TLS and SASL settings, the bridge's client id.
    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions::default()
            .with_security(self.security.clone())
            .with_client_id("rill-bridge")
            .with_timeout(REQUEST_TIMEOUT)
    }

    /// A client of the target cluster (nothing is opened yet).
    pub fn client(&self) -> Result<rill_client::Client, ClientError> {
        rill_client::Client::new(&self.config.target, self.connect_options())
    }

    /// Whether a source topic is mirrored. Internal topics never are; with `all_topics`, names
    /// with a dot are remote topics (MirrorMaker 2's convention) and are not sent on.
    pub fn selects(&self, topic: &str) -> bool {
        if topic.starts_with("__") {
            return false;
        }
        if self.config.topics.iter().any(|t| t == topic) {
            return true;
        }
        if let Some(r) = &self.regex {
            if r.is_match(topic) {
                return true;
            }
        }
        self.config.all_topics && !topic.contains('.')
    }

    /// Whether a record passes the filters.
    pub fn passes(&self, r: &Record) -> bool {
        if let Some(p) = &self.config.filter_key_prefix {
            match &r.key {
                Some(k) if k.starts_with(p.as_bytes()) => {}
                _ => return false,
            }
        }
        if let Some((k, v)) = &self.header_filter {
            match header(r, k) {
                Some(got) => {
                    if let Some(v) = v {
                        if got.as_deref() != Some(v.as_slice()) {
                            return false;
                        }
                    }
                }
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::TimestampType;

    #[test]
    fn partition_mapping_and_selection() {
        assert_eq!(target_partition(2, 4, Some(b"k")), 2);
        let p = target_partition(5, 4, Some(b"k"));
        assert!((0..4).contains(&p));
        assert_eq!(p, target_partition(7, 4, Some(b"k")));
        let m = Mirror::new(MirrorConfig::all_to("x:1")).unwrap();
        assert!(m.selects("orders"));
        assert!(!m.selects("__consumer_offsets"));
        assert!(!m.selects("edge.orders"));
        let mut c = MirrorConfig::all_to("x:1");
        c.all_topics = false;
        c.topics_regex = Some("sens.*".into());
        c.filter_header = Some("class=alarm".into());
        let m = Mirror::new(c).unwrap();
        assert!(m.selects("sensors") && !m.selects("xsensors"));
        let mut r = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 0,
            key: None,
            value: None,
            headers: Vec::new(),
        };
        assert!(!m.passes(&r));
        r.headers.push((
            StrBytes::from_static_str("class"),
            Some(Bytes::from_static(b"alarm")),
        ));
        assert!(m.passes(&r));
    }
}
