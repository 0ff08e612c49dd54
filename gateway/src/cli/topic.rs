//! `rill topic create|list|describe|alter|delete|add-partitions`: topic administration through
//! CreateTopics, Metadata, ListOffsets, DescribeConfigs, IncrementalAlterConfigs, DeleteTopics and
//! CreatePartitions.

use std::process::ExitCode;

use anyhow::Context as _;
use kafka_protocol::messages::{
    create_partitions_request::CreatePartitionsTopic,
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    delete_topics_request::DeleteTopicState,
    describe_configs_request::DescribeConfigsResource,
    incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{parse_key_value, table, ConnectArgs};
use rill_client::{check, Client, TopicInfo};

/// Config resource type of a topic in DescribeConfigs/IncrementalAlterConfigs.
const RESOURCE_TOPIC: i8 = 2;
/// Admin request timeout sent to the broker.
const ADMIN_TIMEOUT_MS: i32 = 30_000;
/// How long `topic describe` waits for the partition leaders' log offsets.
const DESCRIBE_OFFSETS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `rill topic ...`
#[derive(clap::Args, Debug)]
pub struct TopicArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    #[command(subcommand)]
    pub command: TopicCommand,
}

/// The topic subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topics.
    List,
    /// Show a topic's partitions (leader, replicas, ISR, offline replicas), offsets and configs.
    Describe(NameArg),
    /// Change a topic's configs (IncrementalAlterConfigs).
    Alter(AlterArgs),
    /// Delete a topic.
    Delete(NameArg),
    /// Raise a topic's partition count.
    AddPartitions(AddPartitionsArgs),
}

/// A topic name argument.
#[derive(clap::Args, Debug)]
pub struct NameArg {
    /// Topic name.
    pub name: String,
}

/// `rill topic create`
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Topic name.
    pub name: String,
    /// Number of partitions (default: the broker's default).
    #[arg(short = 'p', long = "partitions")]
    pub partitions: Option<i32>,
    /// Replication factor (default: the broker's default).
    #[arg(short = 'r', long = "replication")]
    pub replication: Option<i16>,
    /// A topic config, key=value (repeatable).
    #[arg(short = 'c', long = "config", value_parser = parse_key_value)]
    pub configs: Vec<(String, String)>,
}

/// `rill topic alter`
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["configs", "delete_configs"])))]
pub struct AlterArgs {
    /// Topic name.
    pub name: String,
    /// Set a config, key=value (repeatable).
    #[arg(short = 'c', long = "config", value_parser = parse_key_value)]
    pub configs: Vec<(String, String)>,
    /// Remove a config override, going back to the default (repeatable).
    #[arg(long = "delete-config")]
    pub delete_configs: Vec<String>,
}

/// `rill topic add-partitions`
#[derive(clap::Args, Debug)]
pub struct AddPartitionsArgs {
    /// Topic name.
    pub name: String,
    /// The new total number of partitions.
    #[arg(long)]
    pub total: i32,
}

/// Runs a topic subcommand.
pub async fn run(args: TopicArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.conn.client().await?;
    let json = args.conn.json;
    let result = match args.command {
        TopicCommand::Create(a) => create(&mut client, a, json).await,
        TopicCommand::List => list(&mut client, json).await,
        TopicCommand::Describe(a) => describe(&mut client, &a.name, json).await,
        TopicCommand::Alter(a) => alter(&mut client, a, json).await,
        TopicCommand::Delete(a) => delete(&mut client, &a.name, json).await,
        TopicCommand::AddPartitions(a) => add_partitions(&mut client, a, json).await,
    };
    client.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

async fn create(client: &mut Client, a: CreateArgs, json: bool) -> anyhow::Result<()> {
    let conn = client.controller().await?;
    let version = conn.version::<CreateTopicsRequest>()?;
    // CreateTopics v4+ accepts -1 for "broker default"; older brokers need explicit values.
    let default = if version >= 4 { -1 } else { 1 };
    let topic = CreatableTopic::default()
        .with_name(name(&a.name))
        .with_num_partitions(a.partitions.unwrap_or(default))
        .with_replication_factor(a.replication.unwrap_or(default as i16))
        .with_configs(
            a.configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_value(Some(StrBytes::from_string(v.clone())))
                })
                .collect(),
        );
    let req = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(ADMIN_TIMEOUT_MS);
    let resp = conn.send(&req).await?;
    let result = resp
        .topics
        .into_iter()
        .find(|t| t.name.0.as_str() == a.name)
        .context("the broker's CreateTopics response does not mention the topic")?;
    check(result.error_code, result.error_message.as_ref(), || {
        format!("create topic {}", a.name)
    })?;
    if json {
        print_json(&serde_json::json!({
            "topic": a.name,
            "topic_id": result.topic_id.to_string(),
            "partitions": result.num_partitions,
            "replication_factor": result.replication_factor,
        }));
    } else {
        let parts = if result.num_partitions > 0 {
            format!(" with {} partition(s)", result.num_partitions)
        } else {
            String::new()
        };
        println!("created topic {}{parts}", a.name);
    }
    Ok(())
}

async fn list(client: &mut Client, json: bool) -> anyhow::Result<()> {
    let md = client.metadata(None, false).await?;
    if json {
        let topics: Vec<_> = md
            .topics
            .values()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "topic_id": t.topic_id,
                    "partitions": t.partitions.len(),
                    "replication_factor": replication(t),
                    "internal": t.internal,
                })
            })
            .collect();
        print_json(&serde_json::Value::Array(topics));
    } else {
        let rows: Vec<Vec<String>> = md
            .topics
            .values()
            .map(|t| {
                vec![
                    t.name.clone(),
                    t.partitions.len().to_string(),
                    replication(t).to_string(),
                    t.topic_id.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(&["NAME", "PARTITIONS", "REPLICAS", "TOPIC-ID"], &rows)
        );
    }
    Ok(())
}

fn replication(t: &TopicInfo) -> usize {
    t.partitions.first().map(|p| p.replicas.len()).unwrap_or(0)
}

/// One config entry of DescribeConfigs.
#[derive(Debug, serde::Serialize)]
struct ConfigEntry {
    name: String,
    value: Option<String>,
    source: &'static str,
    read_only: bool,
    sensitive: bool,
}

fn config_source(s: i8) -> &'static str {
    match s {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

async fn describe_configs(client: &mut Client, topic: &str) -> anyhow::Result<Vec<ConfigEntry>> {
    let conn = client.any().await?;
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configuration_keys(None)]);
    let resp = conn.send(&req).await?;
    let result = resp
        .results
        .into_iter()
        .find(|r| r.resource_name.as_str() == topic)
        .context("the broker's DescribeConfigs response does not mention the topic")?;
    check(result.error_code, result.error_message.as_ref(), || {
        format!("describe configs of {topic}")
    })?;
    let mut entries: Vec<ConfigEntry> = result
        .configs
        .into_iter()
        .map(|c| ConfigEntry {
            name: c.name.to_string(),
            value: c.value.map(|v| v.to_string()),
            source: config_source(c.config_source),
            read_only: c.read_only,
            sensitive: c.is_sensitive,
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

async fn describe(client: &mut Client, topic: &str, json: bool) -> anyhow::Result<()> {
    let info = client.topic(topic, false).await?;
    // Offsets come from the leaders: a partition without one (offline) has none, and a leader
    // that cannot answer leaves the offsets out rather than hiding the replication state.
    let led: Vec<i32> = info
        .partitions
        .iter()
        .filter(|p| p.leader >= 0)
        .map(|p| p.partition)
        .collect();
    // A leader that is alive to TCP but does not answer (a stopped process, a hung node) would
    // hold the describe for the client's request timeout (60 s): the offsets get a bounded
    // wait, after which they are left out. (The configs below go through the bootstrap
    // connection, never one of the leaders' connections the wait may have abandoned.)
    let lookup = async {
        let start = client.list_offsets(&info, &led, -2).await?;
        let end = client.list_offsets(&info, &led, -1).await?;
        Ok::<_, rill_client::ClientError>((start, end))
    };
    let (start, end) = match tokio::time::timeout(DESCRIBE_OFFSETS_TIMEOUT, lookup).await {
        Ok(Ok(offsets)) => offsets,
        Ok(Err(e)) => {
            eprintln!("rill: offsets of {topic} unavailable: {e}");
            Default::default()
        }
        Err(_) => {
            eprintln!(
                "rill: offsets of {topic} unavailable: a leader did not answer within {:?}",
                DESCRIBE_OFFSETS_TIMEOUT
            );
            Default::default()
        }
    };
    let configs = describe_configs(client, topic).await?;
    if json {
        let partitions: Vec<_> = info
            .partitions
            .iter()
            .map(|p| {
                serde_json::json!({
                    "partition": p.partition,
                    "leader": p.leader,
                    "replicas": p.replicas,
                    "isr": p.isr,
                    "offline_replicas": p.offline_replicas,
                    "log_start_offset": start.get(&p.partition),
                    "high_watermark": end.get(&p.partition),
                })
            })
            .collect();
        let config_map: serde_json::Map<String, serde_json::Value> = configs
            .iter()
            .map(|c| (c.name.clone(), serde_json::json!(c.value)))
            .collect();
        print_json(&serde_json::json!({
            "name": info.name,
            "topic_id": info.topic_id,
            "internal": info.internal,
            "partitions": partitions,
            "configs": config_map,
            "config_details": serde_json::to_value(&configs)?,
        }));
        return Ok(());
    }
    println!("NAME        {}", info.name);
    println!("TOPIC-ID    {}", info.topic_id);
    println!("PARTITIONS  {}", info.partitions.len());
    println!("REPLICAS    {}", replication(&info));
    println!();
    let rows: Vec<Vec<String>> = configs
        .iter()
        .map(|c| {
            let value = if c.sensitive {
                "<hidden>".to_string()
            } else {
                c.value.clone().unwrap_or_else(|| "-".into())
            };
            vec![c.name.clone(), value, c.source.to_string()]
        })
        .collect();
    print!("{}", table::render(&["CONFIG", "VALUE", "SOURCE"], &rows));
    println!();
    let list = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let rows: Vec<Vec<String>> = info
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.leader.to_string(),
                list(&p.replicas),
                list(&p.isr),
                list(&p.offline_replicas),
                start
                    .get(&p.partition)
                    .map(i64::to_string)
                    .unwrap_or_default(),
                end.get(&p.partition)
                    .map(i64::to_string)
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "PARTITION",
                "LEADER",
                "REPLICAS",
                "ISR",
                "OFFLINE",
                "LOG-START-OFFSET",
                "HIGH-WATERMARK"
            ],
            &rows
        )
    );
    Ok(())
}

async fn alter(client: &mut Client, a: AlterArgs, json: bool) -> anyhow::Result<()> {
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    let mut configs: Vec<AlterableConfig> = a
        .configs
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(SET)
                .with_value(Some(StrBytes::from_string(v.clone())))
        })
        .collect();
    configs.extend(a.delete_configs.iter().map(|k| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(k.clone()))
            .with_config_operation(DELETE)
            .with_value(None)
    }));
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(a.name.clone()))
            .with_configs(configs),
    ]);
    let conn = client.controller().await?;
    let resp = conn.send(&req).await?;
    let result = resp
        .responses
        .into_iter()
        .find(|r| r.resource_name.as_str() == a.name)
        .context("the broker's IncrementalAlterConfigs response does not mention the topic")?;
    check(result.error_code, result.error_message.as_ref(), || {
        format!("alter configs of {}", a.name)
    })?;
    if json {
        print_json(&serde_json::json!({
            "topic": a.name,
            "set": a.configs.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            "deleted": a.delete_configs,
        }));
    } else {
        println!("altered configs of topic {}", a.name);
    }
    Ok(())
}

async fn delete(client: &mut Client, topic: &str, json: bool) -> anyhow::Result<()> {
    let conn = client.controller().await?;
    let version = conn.version::<DeleteTopicsRequest>()?;
    let mut req = DeleteTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS);
    if version >= 6 {
        req.topics = vec![DeleteTopicState::default().with_name(Some(name(topic)))];
    } else {
        req.topic_names = vec![name(topic)];
    }
    let resp = conn.send(&req).await?;
    let result = resp
        .responses
        .into_iter()
        .find(|r| r.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
        .context("the broker's DeleteTopics response does not mention the topic")?;
    check(result.error_code, result.error_message.as_ref(), || {
        format!("delete topic {topic}")
    })?;
    if json {
        print_json(&serde_json::json!({ "topic": topic, "deleted": true }));
    } else {
        println!("deleted topic {topic}");
    }
    Ok(())
}

async fn add_partitions(
    client: &mut Client,
    a: AddPartitionsArgs,
    json: bool,
) -> anyhow::Result<()> {
    let req = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name(&a.name))
            .with_count(a.total)
            .with_assignments(None)])
        .with_timeout_ms(ADMIN_TIMEOUT_MS);
    let conn = client.controller().await?;
    let resp = conn.send(&req).await?;
    let result = resp
        .results
        .into_iter()
        .find(|r| r.name.0.as_str() == a.name)
        .context("the broker's CreatePartitions response does not mention the topic")?;
    check(result.error_code, result.error_message.as_ref(), || {
        format!("add partitions to {} (total {})", a.name, a.total)
    })?;
    if json {
        print_json(&serde_json::json!({ "topic": a.name, "partitions": a.total }));
    } else {
        println!("topic {} now has {} partitions", a.name, a.total);
    }
    Ok(())
}
