//! DescribeConfigs (key 32): topic resources (every known key, with its source) and the broker
//! resource (this node's settings, under Kafka's names where one exists). In a cluster a topic's
//! overrides come from the metadata image, over this node's defaults.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::broker::BrokerError;
use rill_core::topic_config::{ConfigEntry, ConfigSource, TopicConfig};

use super::authorization::Caller;
use super::{error_codes, Context};

/// Resource type TOPIC.
pub const RESOURCE_TOPIC: i8 = 2;
/// Resource type BROKER.
pub const RESOURCE_BROKER: i8 = 4;

/// The error code when `caller` may not do `operation` (DESCRIBE_CONFIGS or ALTER_CONFIGS) on a
/// config resource, as Kafka: a topic's configs are the topic's, a broker's are the cluster's.
pub fn config_resource_denied(
    ctx: &Context,
    caller: &Caller,
    operation: AclOperation,
    resource_type: i8,
    name: &str,
) -> Option<i16> {
    let (allowed, code) = match resource_type {
        RESOURCE_TOPIC => (
            ctx.authorize(caller, operation, ResourceType::Topic, name),
            ResponseError::TopicAuthorizationFailed,
        ),
        _ => (
            ctx.authorize_cluster(caller, operation),
            ResponseError::ClusterAuthorizationFailed,
        ),
    };
    (!allowed).then(|| code.code())
}

/// DescribeConfigs `config_source` code of a source.
pub fn source_code(source: ConfigSource) -> i8 {
    match source {
        ConfigSource::TopicOverride => 1, // TOPIC_CONFIG
        ConfigSource::NodeDefault => 4,   // STATIC_BROKER_CONFIG
        ConfigSource::Default => 5,       // DEFAULT_CONFIG
    }
}

fn entry(e: ConfigEntry) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(e.name))
        .with_value(if e.sensitive {
            None
        } else {
            Some(StrBytes::from_string(e.value))
        })
        .with_read_only(e.read_only)
        .with_is_sensitive(e.sensitive)
        .with_config_source(source_code(e.source))
}

fn keep(keys: &Option<Vec<StrBytes>>, name: &str) -> bool {
    keys.as_ref()
        .is_none_or(|k| k.is_empty() || k.iter().any(|k| k.as_str() == name))
}

/// A topic's config entries: from the cluster's metadata image in a cluster, else from the
/// node's registry.
fn topic_entries(ctx: &Context, topic: &str) -> Result<Vec<ConfigEntry>, BrokerError> {
    let Some(cluster) = &ctx.cluster else {
        return ctx.broker.describe_topic_config(topic);
    };
    let image = cluster.image();
    let t = image
        .topic(topic)
        .ok_or_else(|| BrokerError::UnknownTopicOrPartition {
            topic: topic.to_string(),
            partition: -1,
        })?;
    let config =
        TopicConfig::with_overrides(&ctx.broker.config().default_topic_config, &t.configs)?;
    Ok(config.describe(&t.configs))
}

/// Answer DescribeConfigs.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    _version: i16,
    req: DescribeConfigsRequest,
) -> ResponseKind {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            if let Some(code) = config_resource_denied(
                ctx,
                caller,
                AclOperation::DescribeConfigs,
                r.resource_type,
                &r.resource_name,
            ) {
                return result.with_error_code(code);
            }
            match r.resource_type {
                RESOURCE_TOPIC => match topic_entries(ctx, &r.resource_name) {
                    Ok(entries) => result.with_configs(
                        entries
                            .into_iter()
                            .filter(|e| keep(&r.configuration_keys, &e.name))
                            .map(entry)
                            .collect(),
                    ),
                    Err(e) => {
                        let (code, msg) = error_codes::broker_error(&e);
                        result.with_error_code(code).with_error_message(msg)
                    }
                },
                RESOURCE_BROKER
                    if r.resource_name.is_empty()
                        || r.resource_name.as_str() == ctx.node_id.to_string() =>
                {
                    result.with_configs(
                        ctx.broker_configs
                            .iter()
                            .filter(|(k, _)| keep(&r.configuration_keys, k))
                            .map(|(k, v)| {
                                DescribeConfigsResourceResult::default()
                                    .with_name(StrBytes::from_string(k.clone()))
                                    .with_value(Some(StrBytes::from_string(v.clone())))
                                    .with_read_only(true)
                                    .with_config_source(4)
                            })
                            .collect(),
                    )
                }
                RESOURCE_BROKER => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(error_codes::message(format!(
                        "this node is broker {}, not '{}'",
                        ctx.node_id, r.resource_name
                    ))),
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(error_codes::message(format!(
                        "resource type {other} is not supported"
                    ))),
            }
        })
        .collect();
    ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(results))
}
