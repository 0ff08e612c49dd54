//! `rill cluster status [-b BOOTSTRAP] [--json]`: the health of a cluster through the Kafka
//! protocol, with the CLI's connection options. DescribeQuorum (the active controller, voters and
//! observers with their lag, as `kafka-metadata-quorum.sh describe --replication` shows them),
//! DescribeCluster (the live brokers) and Metadata (under-replicated and offline partitions).
//!
//! The cluster is healthy when a controller is active, every voter is a live broker and caught up
//! (within [`CAUGHT_UP_WITHIN_MS`] when the controller reports when, else no more than
//! [`CAUGHT_UP_MAX_LAG`] entries behind), and no partition is under-replicated or offline;
//! otherwise the problems are listed. The exit code is 0 whenever the cluster could be asked.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use rill_client::admin::ClusterDescription;
use rill_client::quorum::{QuorumReplica, QuorumStatus};
use rill_client::{Client, ClusterMetadata};

use super::{table, ConnectArgs};

/// A voter that last caught up longer ago than this is reported as lagging (Kafka's
/// `replica.lag.time.max.ms` default).
pub const CAUGHT_UP_WITHIN_MS: i64 = 30_000;

/// A voter whose catch-up time is unknown counts as caught up this close to the leader's log end
/// (metadata entries arrive in small bursts; a voter that stopped falls behind at the next one).
pub const CAUGHT_UP_MAX_LAG: i64 = 10;

/// `rill cluster status`
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
}

/// A partition whose ISR is smaller than its replica set, or that has no leader.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionProblem {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
}

/// One voter or observer with its role and lag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuorumRow {
    pub node_id: i32,
    /// `Leader`, `Follower` or `Observer` (kafka-metadata-quorum's names).
    pub status: &'static str,
    pub directory_id: String,
    pub log_end_offset: i64,
    /// Behind the leader's log end offset (`None`: unknown).
    pub lag: Option<i64>,
    /// Milliseconds since its last fetch (`None`: unknown).
    pub last_fetch_ms_ago: Option<i64>,
    /// Milliseconds since it was last caught up (`None`: unknown).
    pub last_caught_up_ms_ago: Option<i64>,
}

/// A node the cluster knows of and whether it is a live broker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BrokerRow {
    pub node_id: i32,
    /// `host:port` of its Kafka listener (`None` when it is not live).
    pub address: Option<String>,
    pub rack: Option<String>,
    /// `running`, or `not live` (a voter, observer or replica holder that is not a live broker:
    /// stopped, fenced or not registered).
    pub state: &'static str,
}

/// The whole status, as `--json` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub controller_id: i32,
    pub controller_epoch: i32,
    pub metadata_high_watermark: i64,
    pub voters: Vec<QuorumRow>,
    pub observers: Vec<QuorumRow>,
    pub brokers: Vec<BrokerRow>,
    pub under_replicated_partitions: Vec<PartitionProblem>,
    pub offline_partitions: Vec<PartitionProblem>,
    pub healthy: bool,
    pub problems: Vec<String>,
}

fn rows(
    q: &QuorumStatus,
    members: &[QuorumReplica],
    observer: bool,
    now_ms: i64,
) -> Vec<QuorumRow> {
    let ago = |ts: i64| (ts >= 0).then(|| (now_ms - ts).max(0));
    members
        .iter()
        .map(|r| QuorumRow {
            node_id: r.node_id,
            status: if observer {
                "Observer"
            } else if r.node_id == q.leader_id {
                "Leader"
            } else {
                "Follower"
            },
            directory_id: r.directory_id.clone(),
            log_end_offset: r.log_end_offset,
            lag: q.lag(r),
            last_fetch_ms_ago: ago(r.last_fetch_timestamp),
            last_caught_up_ms_ago: ago(r.last_caught_up_timestamp),
        })
        .collect()
}

/// The status from the three answers (`now_ms`: this machine's wall clock, to turn the quorum's
/// timestamps into ages).
pub fn status(
    quorum: &QuorumStatus,
    cluster: &ClusterDescription,
    md: &ClusterMetadata,
    now_ms: i64,
) -> ClusterStatus {
    let voters = rows(quorum, &quorum.voters, false, now_ms);
    let observers = rows(quorum, &quorum.observers, true, now_ms);
    let mut problems = Vec::new();
    if quorum.leader_id < 0 {
        problems.push("no active controller".to_string());
    }
    let mut known: BTreeSet<i32> = voters.iter().chain(&observers).map(|r| r.node_id).collect();
    let mut under = Vec::new();
    let mut offline = Vec::new();
    for t in md.topics.values() {
        for p in &t.partitions {
            known.extend(&p.replicas);
            let problem = || PartitionProblem {
                topic: t.name.clone(),
                partition: p.partition,
                leader: p.leader,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                offline_replicas: p.offline_replicas.clone(),
            };
            if p.leader < 0 {
                offline.push(problem());
            } else if p.isr.len() < p.replicas.len() {
                under.push(problem());
            }
        }
    }
    let mut brokers: Vec<BrokerRow> = cluster
        .brokers
        .iter()
        .map(|b| BrokerRow {
            node_id: b.node_id,
            address: Some(format!("{}:{}", b.host, b.port)),
            rack: b.rack.clone(),
            state: "running",
        })
        .collect();
    for id in known {
        if !brokers.iter().any(|b| b.node_id == id) {
            problems.push(format!("node {id} is not a live broker"));
            brokers.push(BrokerRow {
                node_id: id,
                address: None,
                rack: None,
                state: "not live",
            });
        }
    }
    brokers.sort_by_key(|b| b.node_id);
    for v in &voters {
        let caught_up = v.status == "Leader"
            || match v.last_caught_up_ms_ago {
                Some(ago) => ago <= CAUGHT_UP_WITHIN_MS,
                None => v.lag.is_some_and(|lag| lag <= CAUGHT_UP_MAX_LAG),
            };
        if !caught_up {
            problems.push(format!(
                "voter {} has not caught up with the controller log{}",
                v.node_id,
                v.lag.map(|l| format!(" (lag {l})")).unwrap_or_default()
            ));
        }
    }
    if !under.is_empty() {
        problems.push(format!("{} under-replicated partition(s)", under.len()));
    }
    if !offline.is_empty() {
        problems.push(format!("{} offline partition(s)", offline.len()));
    }
    ClusterStatus {
        cluster_id: cluster.cluster_id.clone(),
        controller_id: quorum.leader_id,
        controller_epoch: quorum.leader_epoch,
        metadata_high_watermark: quorum.high_watermark,
        voters,
        observers,
        brokers,
        under_replicated_partitions: under,
        offline_partitions: offline,
        healthy: problems.is_empty(),
        problems,
    }
}

fn print_human(s: &ClusterStatus) {
    let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let list = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    println!("CLUSTER-ID  {}", s.cluster_id);
    println!(
        "CONTROLLER  {} (epoch {}, metadata high watermark {})",
        s.controller_id, s.controller_epoch, s.metadata_high_watermark
    );
    if s.healthy {
        println!("STATUS      healthy");
    } else {
        println!("STATUS      degraded: {}", s.problems.join("; "));
    }
    println!();
    let quorum: Vec<Vec<String>> = s
        .voters
        .iter()
        .chain(&s.observers)
        .map(|r| {
            vec![
                r.node_id.to_string(),
                r.status.to_string(),
                r.log_end_offset.to_string(),
                opt(r.lag),
                opt(r.last_fetch_ms_ago),
                opt(r.last_caught_up_ms_ago),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "NODE",
                "STATUS",
                "LOG-END-OFFSET",
                "LAG",
                "LAST-FETCH-MS-AGO",
                "LAST-CAUGHT-UP-MS-AGO"
            ],
            &quorum
        )
    );
    println!();
    let brokers: Vec<Vec<String>> = s
        .brokers
        .iter()
        .map(|b| {
            vec![
                b.node_id.to_string(),
                b.address.clone().unwrap_or_else(|| "-".into()),
                b.rack.clone().unwrap_or_else(|| "-".into()),
                b.state.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(&["BROKER", "ADDRESS", "RACK", "STATE"], &brokers)
    );
    for (title, parts) in [
        (
            "UNDER-REPLICATED PARTITIONS",
            &s.under_replicated_partitions,
        ),
        ("OFFLINE PARTITIONS", &s.offline_partitions),
    ] {
        println!();
        if parts.is_empty() {
            println!("{title}: none");
            continue;
        }
        println!("{title}:");
        let rows: Vec<Vec<String>> = parts
            .iter()
            .map(|p| {
                vec![
                    p.topic.clone(),
                    p.partition.to_string(),
                    p.leader.to_string(),
                    list(&p.replicas),
                    list(&p.isr),
                    list(&p.offline_replicas),
                ]
            })
            .collect();
        print!(
            "{}",
            table::render(
                &["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR", "OFFLINE"],
                &rows
            )
        );
    }
}

async fn gather(client: &mut Client) -> anyhow::Result<ClusterStatus> {
    let quorum = client.describe_quorum().await?;
    let cluster = client.describe_cluster().await?;
    let md = client.metadata(None, false).await?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Ok(status(&quorum, &cluster, &md, now_ms))
}

/// Runs `rill cluster status`.
pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.conn.client().await?;
    let result = gather(&mut client).await;
    client.close().await;
    let s = result?;
    if args.conn.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        print_human(&s);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_client::admin::ClusterBroker;
    use rill_client::{PartitionInfo, TopicInfo};

    fn replica(node_id: i32, leo: i64, caught_up: i64) -> QuorumReplica {
        QuorumReplica {
            node_id,
            directory_id: String::new(),
            log_end_offset: leo,
            last_fetch_timestamp: caught_up,
            last_caught_up_timestamp: caught_up,
        }
    }

    fn cluster(ids: &[i32]) -> ClusterDescription {
        ClusterDescription {
            cluster_id: "c".into(),
            controller_id: 1,
            brokers: ids
                .iter()
                .map(|&node_id| ClusterBroker {
                    node_id,
                    host: "127.0.0.1".into(),
                    port: 9000 + node_id,
                    rack: None,
                })
                .collect(),
        }
    }

    fn md(parts: &[(i32, &[i32], &[i32])]) -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        md.topics.insert(
            "t".into(),
            TopicInfo {
                name: "t".into(),
                topic_id: String::new(),
                internal: false,
                partitions: parts
                    .iter()
                    .enumerate()
                    .map(|(i, (leader, replicas, isr))| PartitionInfo {
                        partition: i as i32,
                        leader: *leader,
                        replicas: replicas.to_vec(),
                        isr: isr.to_vec(),
                        offline_replicas: vec![],
                        leader_epoch: 0,
                        error_code: 0,
                    })
                    .collect(),
            },
        );
        md
    }

    #[test]
    fn a_healthy_cluster_and_a_degraded_one() {
        let now = 100_000;
        let quorum = QuorumStatus {
            leader_id: 1,
            leader_epoch: 3,
            high_watermark: 50,
            voters: vec![
                replica(1, 50, now),
                replica(2, 50, now - 5),
                replica(3, 49, now - 10),
            ],
            observers: vec![],
        };
        let all = [1, 2, 3];
        let s = status(
            &quorum,
            &cluster(&all),
            &md(&[(1, &all, &all), (2, &all, &all)]),
            now,
        );
        assert!(s.healthy, "{:?}", s.problems);
        // Without catch-up times (this controller reports none), a small lag is caught up.
        let no_times = |mut r: QuorumReplica| {
            r.last_caught_up_timestamp = -1;
            r
        };
        let lagging = QuorumStatus {
            voters: vec![
                no_times(replica(1, 50, now)),
                no_times(replica(2, 45, now)),
                no_times(replica(3, 39, now)),
            ],
            ..quorum.clone()
        };
        let s2 = status(&lagging, &cluster(&all), &md(&[]), now);
        assert_eq!(
            s2.problems,
            vec!["voter 3 has not caught up with the controller log (lag 11)"]
        );
        assert_eq!(s.voters[0].status, "Leader");
        assert_eq!(
            (s.voters[2].lag, s.voters[2].last_caught_up_ms_ago),
            (Some(1), Some(10))
        );
        assert_eq!(s.brokers.iter().filter(|b| b.state == "running").count(), 3);
        // Node 3 stops: it is no live broker, its voter lags, one partition lost its ISR member
        // and one (led only by 3) its leader.
        let quorum = QuorumStatus {
            voters: vec![
                replica(1, 80, now),
                replica(2, 80, now),
                replica(3, 50, now - 60_000),
            ],
            ..quorum
        };
        let s = status(
            &quorum,
            &cluster(&[1, 2]),
            &md(&[(1, &all, &[1, 2]), (-1, &[3], &[3])]),
            now,
        );
        assert!(!s.healthy);
        assert_eq!(s.under_replicated_partitions.len(), 1);
        assert_eq!(s.offline_partitions.len(), 1);
        assert_eq!(s.brokers[2].state, "not live");
        assert_eq!(
            s.problems,
            vec![
                "node 3 is not a live broker".to_string(),
                "voter 3 has not caught up with the controller log (lag 30)".to_string(),
                "1 under-replicated partition(s)".to_string(),
                "1 offline partition(s)".to_string(),
            ]
        );
    }
}
