//! `rill group list|describe|delete|reset-offsets`: consumer group administration through
//! FindCoordinator, ListGroups, DescribeGroups, OffsetFetch, ListOffsets, DeleteGroups and
//! OffsetCommit, in the spirit of `kafka-consumer-groups.sh`. `describe` shows members, their
//! assignment and the lag of every partition (committed offset vs high watermark);
//! `reset-offsets` only touches an empty group, prints its plan, and commits it with `--execute`.
//!
//! Request versions are fixed (all supported by Rill and by Kafka 2.4+), since the client's
//! generic negotiation does not cover the group APIs.

use std::collections::BTreeMap;
use std::process::ExitCode;

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_core::group::{decode_assignment, CONSUMER_PROTOCOL_TYPE};

use super::client::{check, Client, ClientError, Connection};
use super::timestamp::parse_time_ms;
use super::{table, ConnectArgs};

const FIND_COORDINATOR_VERSION: i16 = 3;
const LIST_GROUPS_VERSION: i16 = 4;
const DESCRIBE_GROUPS_VERSION: i16 = 5;
const OFFSET_FETCH_VERSION: i16 = 7;
const OFFSET_COMMIT_VERSION: i16 = 8;
const DELETE_GROUPS_VERSION: i16 = 2;

/// `rill group ...`
#[derive(clap::Args, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    #[command(subcommand)]
    pub command: GroupCommand,
}

/// The group subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer groups and their states.
    List(ListArgs),
    /// Show a group's state, members, assignment and lag per partition.
    Describe(GroupName),
    /// Delete an empty group and its committed offsets.
    Delete(GroupName),
    /// Move an empty group's committed offsets (dry run unless --execute).
    ResetOffsets(ResetArgs),
}

/// `rill group list`
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only groups in this state (Empty, Stable, PreparingRebalance, CompletingRebalance, Dead);
    /// repeatable.
    #[arg(long = "state")]
    pub states: Vec<String>,
}

/// A group id argument.
#[derive(clap::Args, Debug)]
pub struct GroupName {
    /// Group id.
    pub group: String,
}

/// `rill group reset-offsets`
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime"])))]
pub struct ResetArgs {
    /// Group id.
    pub group: String,
    /// Topic, optionally with partitions: `orders` or `orders:0,2`.
    #[arg(long, required = true)]
    pub topic: String,
    /// To the log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// To the high watermark (skip everything).
    #[arg(long)]
    pub to_latest: bool,
    /// To this offset (clamped to the partition's range, as Kafka does).
    #[arg(long)]
    pub to_offset: Option<i64>,
    /// To the first offset at or after this time (RFC 3339 or epoch ms).
    #[arg(long)]
    pub to_datetime: Option<String>,
    /// Commit the new offsets; without it only the plan is shown.
    #[arg(long)]
    pub execute: bool,
}

/// Runs a group subcommand.
pub async fn run(args: GroupArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(&args.conn.brokers).await?;
    let json = args.conn.json;
    let result = match args.command {
        GroupCommand::List(a) => list(&mut client, &a.states, json).await,
        GroupCommand::Describe(g) => describe(&mut client, &g.group, json).await,
        GroupCommand::Delete(g) => delete(&mut client, &g.group, json).await,
        GroupCommand::ResetOffsets(a) => reset(&mut client, a, json).await,
    };
    client.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The connection to the group's coordinator.
async fn coordinator<'a>(
    client: &'a mut Client,
    group: &str,
) -> Result<&'a mut Connection, ClientError> {
    client.metadata(Some(&[]), false).await?;
    let req = FindCoordinatorRequest::default()
        .with_key(s(group))
        .with_key_type(0);
    let resp: FindCoordinatorResponse = client
        .any()
        .await?
        .send_with_version(&req, FIND_COORDINATOR_VERSION)
        .await?;
    check(resp.error_code, resp.error_message.as_ref(), || {
        format!("find coordinator of group {group}")
    })?;
    client.broker(resp.node_id.0).await
}

async fn list(client: &mut Client, states: &[String], json: bool) -> anyhow::Result<()> {
    let req =
        ListGroupsRequest::default().with_states_filter(states.iter().map(|st| s(st)).collect());
    let resp: ListGroupsResponse = client
        .any()
        .await?
        .send_with_version(&req, LIST_GROUPS_VERSION)
        .await?;
    check(resp.error_code, None, || "list groups".into())?;
    let mut groups: Vec<_> = resp.groups;
    groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    if json {
        let v: Vec<_> = groups
            .iter()
            .map(|g| {
                serde_json::json!({
                    "group": g.group_id.0.as_str(),
                    "state": g.group_state.as_str(),
                    "protocol_type": g.protocol_type.as_str(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|g| {
                vec![
                    g.group_id.0.to_string(),
                    g.group_state.to_string(),
                    g.protocol_type.to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows)
        );
    }
    Ok(())
}

async fn describe_one(client: &mut Client, group: &str) -> anyhow::Result<DescribedGroup> {
    let conn = coordinator(client, group).await?;
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let resp: DescribeGroupsResponse = conn
        .send_with_version(&req, DESCRIBE_GROUPS_VERSION)
        .await?;
    let g = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the broker described no group"))?;
    check(g.error_code, g.error_message.as_ref(), || {
        format!("describe group {group}")
    })?;
    Ok(g)
}

/// Committed offsets of a group: (topic, partition) -> (offset, metadata).
async fn committed(
    client: &mut Client,
    group: &str,
) -> anyhow::Result<BTreeMap<(String, i32), (i64, String)>> {
    let conn = coordinator(client, group).await?;
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(None);
    let resp: OffsetFetchResponse = conn.send_with_version(&req, OFFSET_FETCH_VERSION).await?;
    check(resp.error_code, None, || {
        format!("fetch offsets of group {group}")
    })?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            check(p.error_code, None, || {
                format!("offset of {}/{}", t.name.0, p.partition_index)
            })?;
            if p.committed_offset >= 0 {
                let md = p.metadata.map(|m| m.to_string()).unwrap_or_default();
                out.insert(
                    (t.name.0.to_string(), p.partition_index),
                    (p.committed_offset, md),
                );
            }
        }
    }
    Ok(out)
}

/// One row of `describe`.
#[derive(Debug, Clone, serde::Serialize)]
struct LagRow {
    topic: String,
    partition: i32,
    /// Committed offset, if any.
    current_offset: Option<i64>,
    /// High watermark, if the topic still exists.
    log_end_offset: Option<i64>,
    lag: Option<i64>,
    consumer_id: Option<String>,
    host: Option<String>,
    client_id: Option<String>,
}

/// Topic -> partitions.
type Parts = BTreeMap<String, Vec<i32>>;

/// The members' assignments of a KIP-848 group (ConsumerGroupDescribe), or `None` for a classic
/// group or a broker without the API.
async fn kip848_assignments(client: &mut Client, group: &str) -> Option<BTreeMap<String, Parts>> {
    let conn = coordinator(client, group).await.ok()?;
    let version = conn.version::<ConsumerGroupDescribeRequest>().ok()?;
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]);
    let resp: ConsumerGroupDescribeResponse = conn.send_with_version(&req, version).await.ok()?;
    let g = resp.groups.into_iter().next()?;
    if g.error_code != 0 {
        return None;
    }
    Some(
        g.members
            .into_iter()
            .map(|m| {
                let parts = m
                    .assignment
                    .topic_partitions
                    .into_iter()
                    .map(|tp| (tp.topic_name.0.to_string(), tp.partitions))
                    .collect();
                (m.member_id.to_string(), parts)
            })
            .collect(),
    )
}

async fn describe(client: &mut Client, group: &str, json: bool) -> anyhow::Result<()> {
    let g = describe_one(client, group).await?;
    let offsets = committed(client, group).await?;
    // Each member's assignment: from ConsumerGroupDescribe for KIP-848 groups, else decoded from
    // the classic consumer-protocol bytes.
    let kip848 = kip848_assignments(client, group).await;
    let assignments: BTreeMap<String, Parts> = match &kip848 {
        Some(a) => a.clone(),
        None if g.protocol_type.as_str() == CONSUMER_PROTOCOL_TYPE => g
            .members
            .iter()
            .map(|m| {
                let parts = decode_assignment(&m.member_assignment).unwrap_or_default();
                (m.member_id.to_string(), parts)
            })
            .collect(),
        None => BTreeMap::new(),
    };
    let assigned = |m: &str| assignments.get(m).cloned().unwrap_or_default();
    // Owner of each assigned partition.
    let mut owners: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    {
        for m in &g.members {
            for (topic, parts) in assigned(m.member_id.as_str()) {
                for p in parts {
                    owners.insert(
                        (topic.clone(), p),
                        (
                            m.member_id.to_string(),
                            m.client_host.to_string(),
                            m.client_id.to_string(),
                        ),
                    );
                }
            }
        }
    }
    let mut keys: Vec<(String, i32)> = offsets.keys().cloned().collect();
    keys.extend(owners.keys().cloned());
    keys.sort();
    keys.dedup();
    let mut hw: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in &keys {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    for (topic, parts) in by_topic {
        let Ok(info) = client.topic(&topic, false).await else {
            continue; // deleted topic: no high watermark
        };
        let parts: Vec<i32> = parts
            .into_iter()
            .filter(|p| info.partitions.iter().any(|i| i.partition == *p))
            .collect();
        for (p, off) in client.list_offsets(&info, &parts, -1).await? {
            hw.insert((topic.clone(), p), off);
        }
    }
    let rows: Vec<LagRow> = keys
        .into_iter()
        .map(|k| {
            let current = offsets.get(&k).map(|(o, _)| *o);
            let end = hw.get(&k).copied();
            let owner = owners.get(&k);
            LagRow {
                topic: k.0.clone(),
                partition: k.1,
                current_offset: current,
                log_end_offset: end,
                lag: match (current, end) {
                    (Some(c), Some(e)) => Some((e - c).max(0)),
                    (None, Some(e)) => Some(e),
                    _ => None,
                },
                consumer_id: owner.map(|o| o.0.clone()),
                host: owner.map(|o| o.1.clone()),
                client_id: owner.map(|o| o.2.clone()),
            }
        })
        .collect();
    if json {
        let members: Vec<_> = g
            .members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "member_id": m.member_id.as_str(),
                    "group_instance_id": m.group_instance_id.as_ref().map(|i| i.as_str()),
                    "client_id": m.client_id.as_str(),
                    "host": m.client_host.as_str(),
                    "assignment": assigned(m.member_id.as_str()),
                })
            })
            .collect();
        let v = serde_json::json!({
            "group": group,
            "group_protocol": if kip848.is_some() { "consumer" } else { "classic" },
            "state": g.group_state.as_str(),
            "protocol_type": g.protocol_type.as_str(),
            "protocol": g.protocol_data.as_str(),
            "members": members,
            "partitions": rows,
            "total_lag": rows.iter().filter_map(|r| r.lag).sum::<i64>(),
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "GROUP {group}  STATE {}  PROTOCOL {}/{}  MEMBERS {}",
        g.group_state.as_str(),
        g.protocol_type.as_str(),
        if g.protocol_data.is_empty() {
            "-"
        } else {
            g.protocol_data.as_str()
        },
        g.members.len()
    );
    let dash = || "-".to_string();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.topic.clone(),
                r.partition.to_string(),
                r.current_offset.map_or_else(dash, |o| o.to_string()),
                r.log_end_offset.map_or_else(dash, |o| o.to_string()),
                r.lag.map_or_else(dash, |o| o.to_string()),
                r.consumer_id.clone().unwrap_or_else(dash),
                r.host.clone().unwrap_or_else(dash),
                r.client_id.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST",
                "CLIENT-ID"
            ],
            &cells
        )
    );
    if g.protocol_type.as_str() == CONSUMER_PROTOCOL_TYPE {
        let members: Vec<Vec<String>> = g
            .members
            .iter()
            .map(|m| {
                let assigned = assigned(m.member_id.as_str())
                    .into_iter()
                    .map(|(t, ps)| {
                        let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
                        format!("{t}:{}", ps.join(","))
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                vec![
                    m.member_id.to_string(),
                    m.client_host.to_string(),
                    m.client_id.to_string(),
                    if assigned.is_empty() {
                        "-".into()
                    } else {
                        assigned
                    },
                ]
            })
            .collect();
        if !members.is_empty() {
            println!();
            print!(
                "{}",
                table::render(
                    &["CONSUMER-ID", "HOST", "CLIENT-ID", "ASSIGNMENT"],
                    &members
                )
            );
        }
    }
    Ok(())
}

async fn delete(client: &mut Client, group: &str, json: bool) -> anyhow::Result<()> {
    let conn = coordinator(client, group).await?;
    let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
    let resp: DeleteGroupsResponse = conn.send_with_version(&req, DELETE_GROUPS_VERSION).await?;
    for r in &resp.results {
        check(r.error_code, None, || {
            format!("delete group {}", r.group_id.0)
        })?;
    }
    if json {
        println!("{}", serde_json::json!({ "deleted": group }));
    } else {
        println!("Deleted group {group}");
    }
    Ok(())
}

/// `orders` or `orders:0,2`.
fn parse_topic_spec(spec: &str) -> anyhow::Result<(String, Option<Vec<i32>>)> {
    match spec.split_once(':') {
        None => Ok((spec.to_string(), None)),
        Some((t, ps)) => {
            let parts = ps
                .split(',')
                .map(|p| p.trim().parse::<i32>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| anyhow::anyhow!("bad partition list in --topic {spec:?}"))?;
            Ok((t.to_string(), Some(parts)))
        }
    }
}

async fn reset(client: &mut Client, a: ResetArgs, json: bool) -> anyhow::Result<()> {
    let (topic, wanted) = parse_topic_spec(&a.topic)?;
    // Like Kafka: only a group without active members may have its offsets moved.
    match describe_one(client, &a.group).await {
        Ok(g) => {
            let state = g.group_state.as_str();
            if state != "Empty" && state != "Dead" {
                anyhow::bail!(
                    "group {} is {state} with {} member(s): offsets can only be reset while it is \
                     empty (stop its consumers first)",
                    a.group,
                    g.members.len()
                );
            }
        }
        Err(e)
            if e.downcast_ref::<ClientError>()
                .and_then(ClientError::kafka_code)
                == Some(kafka_protocol::error::ResponseError::GroupIdNotFound) => {}
        Err(e) => return Err(e),
    }
    let info = client.topic(&topic, false).await?;
    let parts: Vec<i32> = match wanted {
        Some(p) => p,
        None => info.partitions.iter().map(|p| p.partition).collect(),
    };
    let earliest = client.list_offsets(&info, &parts, -2).await?;
    let latest = client.list_offsets(&info, &parts, -1).await?;
    let current = committed(client, &a.group).await?;
    let mut plan: Vec<(i32, Option<i64>, i64)> = Vec::new();
    let by_time = match &a.to_datetime {
        Some(t) => Some(
            client
                .list_offsets(&info, &parts, parse_time_ms(t)?)
                .await?,
        ),
        None => None,
    };
    for p in &parts {
        let (lo, hi) = (earliest[p], latest[p]);
        let target = if a.to_earliest {
            lo
        } else if a.to_latest {
            hi
        } else if let Some(o) = a.to_offset {
            o.clamp(lo, hi)
        } else if let Some(found) = &by_time {
            // No record at or after the time: the end of the partition.
            match found.get(p) {
                Some(&o) if o >= 0 => o,
                _ => hi,
            }
        } else {
            anyhow::bail!("no reset target given");
        };
        let cur = current.get(&(topic.clone(), *p)).map(|(o, _)| *o);
        plan.push((*p, cur, target));
    }
    if a.execute {
        let conn = coordinator(client, &a.group).await?;
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(&a.group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::default())
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(&topic)))
                .with_partitions(
                    plan.iter()
                        .map(|(p, _, target)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*target)
                                .with_committed_leader_epoch(-1)
                                .with_committed_metadata(Some(StrBytes::default()))
                        })
                        .collect(),
                )]);
        let resp: OffsetCommitResponse =
            conn.send_with_version(&req, OFFSET_COMMIT_VERSION).await?;
        for t in &resp.topics {
            for p in &t.partitions {
                check(p.error_code, None, || {
                    format!(
                        "commit offset of {}/{} for group {}",
                        t.name.0, p.partition_index, a.group
                    )
                })?;
            }
        }
    }
    if json {
        let v: Vec<_> = plan
            .iter()
            .map(|(p, cur, target)| {
                serde_json::json!({"topic": topic, "partition": p, "current_offset": cur, "new_offset": target})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"group": a.group, "executed": a.execute, "partitions": v})
        );
    } else {
        let rows: Vec<Vec<String>> = plan
            .iter()
            .map(|(p, cur, target)| {
                vec![
                    topic.clone(),
                    p.to_string(),
                    cur.map_or_else(|| "-".to_string(), |c| c.to_string()),
                    target.to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(
                &["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
                &rows
            )
        );
        if !a.execute {
            println!("Dry run: nothing committed (add --execute to apply).");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_specs() {
        assert_eq!(parse_topic_spec("t").unwrap(), ("t".to_string(), None));
        assert_eq!(
            parse_topic_spec("t:0, 2").unwrap(),
            ("t".to_string(), Some(vec![0, 2]))
        );
        assert!(parse_topic_spec("t:x").is_err());
    }
}
