//! `rill consume TOPIC`: fetch records from chosen partitions and print them with a format string
//! or as JSON lines, starting at the beginning, the end, an offset or a time, and stopping after a
//! count or at the end of the partitions.
//!
//! No consumer group is involved: the command assigns partitions to itself and keeps its positions
//! in memory, like `kcat -C`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use kafka_protocol::messages::{
    fetch_request::{FetchPartition, FetchTopic},
    BrokerId, FetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_core::batch::{decode_records, ControlRecords};

use super::format::{record_json, Format, RecordView};
use super::timestamp::parse_time_ms;
use super::ConnectArgs;
use rill_client::{check, Client, TopicInfo};

/// Fetch limits.
const FETCH_MAX_BYTES: i32 = 50 * 1024 * 1024;
const PARTITION_MAX_BYTES: i32 = 1024 * 1024;
const MAX_WAIT_MS: i32 = 500;

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Beginning,
    /// The high watermark: only records produced from now on.
    End,
    /// An absolute offset.
    Absolute(i64),
    /// N records before the end (`-o -N`, as in kcat).
    FromEnd(i64),
}

/// Parses `-o`: `beginning`, `end`, `N` or `-N`.
pub fn parse_offset(s: &str) -> Result<OffsetSpec, String> {
    match s {
        "beginning" | "earliest" | "start" => Ok(OffsetSpec::Beginning),
        "end" | "latest" => Ok(OffsetSpec::End),
        _ => match s.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(OffsetSpec::Absolute(n)),
            Ok(n) => Ok(OffsetSpec::FromEnd(n.checked_neg().unwrap_or(i64::MAX))),
            Err(_) => Err(format!("offset must be beginning, end, N or -N, not {s:?}")),
        },
    }
}

fn parse_format(s: &str) -> Result<String, String> {
    Format::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn parse_time(s: &str) -> Result<i64, String> {
    parse_time_ms(s).map_err(|e| e.to_string())
}

/// `rill consume`
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// Topic to read.
    pub topic: String,
    /// Start at the beginning of each partition (default: the end, only new records).
    #[arg(long, conflicts_with_all = ["offset", "from_time"])]
    pub from_beginning: bool,
    /// Start offset: beginning, end, N, or -N (N before the end).
    #[arg(short = 'o', long, value_parser = parse_offset, allow_hyphen_values = true, conflicts_with = "from_time")]
    pub offset: Option<OffsetSpec>,
    /// Start at the first record with a timestamp at or after this time (RFC 3339 or epoch ms).
    #[arg(long, value_parser = parse_time)]
    pub from_time: Option<i64>,
    /// Read only this partition (repeatable; default: all).
    #[arg(short = 'p', long = "partition")]
    pub partitions: Vec<i32>,
    /// Exit after this many records.
    #[arg(short = 'c', long)]
    pub count: Option<u64>,
    /// Exit once every partition has been read to its end.
    #[arg(short = 'e', long)]
    pub exit_at_end: bool,
    /// Output format (kcat style): %t %p %o %k %s %K %S %T %h %%, \n \t. Default "%s\n".
    #[arg(short = 'f', long, value_parser = parse_format)]
    pub format: Option<String>,
}

/// Reading state of one partition.
#[derive(Debug, Clone)]
struct Position {
    next: i64,
    high_watermark: i64,
    done: bool,
}

/// Runs `rill consume`.
pub async fn run(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.conn.client().await?;
    let result = consume(&mut client, &args).await;
    client.close().await;
    result
}

async fn start_offsets(
    client: &mut Client,
    info: &TopicInfo,
    parts: &[i32],
    args: &ConsumeArgs,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let spec = if args.from_beginning {
        Some(OffsetSpec::Beginning)
    } else {
        args.offset
    };
    if let Some(t) = args.from_time {
        let by_time = client.list_offsets(info, parts, t).await?;
        let end = client.list_offsets(info, parts, -1).await?;
        return Ok(by_time
            .into_iter()
            .map(|(p, o)| {
                (
                    p,
                    if o < 0 {
                        end.get(&p).copied().unwrap_or(0)
                    } else {
                        o
                    },
                )
            })
            .collect());
    }
    Ok(match spec.unwrap_or(OffsetSpec::End) {
        OffsetSpec::Beginning => client.list_offsets(info, parts, -2).await?,
        OffsetSpec::End => client.list_offsets(info, parts, -1).await?,
        OffsetSpec::Absolute(n) => parts.iter().map(|p| (*p, n)).collect(),
        OffsetSpec::FromEnd(n) => {
            let start = client.list_offsets(info, parts, -2).await?;
            let end = client.list_offsets(info, parts, -1).await?;
            end.into_iter()
                .map(|(p, e)| {
                    (
                        p,
                        e.saturating_sub(n).max(start.get(&p).copied().unwrap_or(0)),
                    )
                })
                .collect()
        }
    })
}

async fn consume(client: &mut Client, args: &ConsumeArgs) -> anyhow::Result<ExitCode> {
    let info = client.topic(&args.topic, false).await?;
    let all: BTreeSet<i32> = info.partitions.iter().map(|p| p.partition).collect();
    let parts: Vec<i32> = if args.partitions.is_empty() {
        all.iter().copied().collect()
    } else {
        for p in &args.partitions {
            if !all.contains(p) {
                bail!(
                    "topic {} has {} partition(s); there is no partition {p}",
                    args.topic,
                    all.len()
                );
            }
        }
        args.partitions
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let starts = start_offsets(client, &info, &parts, args).await?;
    let mut positions: BTreeMap<i32, Position> = BTreeMap::new();
    let ends = if args.exit_at_end {
        Some(client.list_offsets(&info, &parts, -1).await?)
    } else {
        None
    };
    for p in &parts {
        let next = starts.get(p).copied().context("no start offset")?;
        let high_watermark = ends.as_ref().and_then(|e| e.get(p).copied()).unwrap_or(-1);
        positions.insert(
            *p,
            Position {
                next,
                high_watermark,
                done: args.exit_at_end && next >= high_watermark,
            },
        );
    }
    let format = Format::parse(args.format.as_deref().unwrap_or("%s\\n"))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut buf = Vec::new();
    let limit_reached = |n: u64| args.count.is_some_and(|c| n >= c);
    while !limit_reached(printed) && positions.values().any(|p| !p.done) {
        let by_leader = info.by_leader(
            positions
                .iter()
                .filter(|(_, pos)| !pos.done)
                .map(|(p, _)| *p),
        );
        let max_wait = if by_leader.len() > 1 {
            100
        } else {
            MAX_WAIT_MS
        };
        for (leader, ps) in by_leader {
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(max_wait)
                .with_min_bytes(1)
                .with_max_bytes(FETCH_MAX_BYTES)
                .with_isolation_level(0)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(args.topic.clone())))
                    .with_partitions(
                        ps.iter()
                            .map(|p| {
                                FetchPartition::default()
                                    .with_partition(*p)
                                    .with_current_leader_epoch(-1)
                                    .with_fetch_offset(positions[p].next)
                                    .with_last_fetched_epoch(-1)
                                    .with_log_start_offset(-1)
                                    .with_partition_max_bytes(PARTITION_MAX_BYTES)
                            })
                            .collect(),
                    )]);
            let conn = client.broker(leader).await?;
            let resp = tokio::time::timeout(Duration::from_secs(60), conn.send(&req))
                .await
                .context("fetch timed out")??;
            check(resp.error_code, None, || {
                format!("fetch from {}", args.topic)
            })?;
            for t in resp.responses {
                for pd in t.partitions {
                    let p = pd.partition_index;
                    check(pd.error_code, None, || {
                        let at = positions.get(&p).map(|x| x.next).unwrap_or(-1);
                        format!("fetch {}/{p} at offset {at}", args.topic)
                    })?;
                    let Some(pos) = positions.get_mut(&p) else {
                        continue;
                    };
                    pos.high_watermark = pd.high_watermark;
                    if let Some(records) = pd.records {
                        // Control records are kept so that the position steps over them.
                        let records =
                            decode_records(&records, ControlRecords::Keep).with_context(|| {
                                format!("cannot decode records of {}/{p}", args.topic)
                            })?;
                        for r in records {
                            if r.offset < pos.next {
                                continue;
                            }
                            pos.next = r.offset + 1;
                            if r.control || limit_reached(printed) {
                                continue;
                            }
                            let headers: Vec<(&str, Option<&[u8]>)> = r
                                .headers
                                .iter()
                                .map(|(k, v)| (k.as_str(), v.as_deref()))
                                .collect();
                            let view = RecordView {
                                topic: &args.topic,
                                partition: p,
                                offset: r.offset,
                                timestamp: r.timestamp,
                                key: r.key.as_deref(),
                                value: r.value.as_deref(),
                                headers,
                            };
                            buf.clear();
                            if args.conn.json {
                                buf.extend_from_slice(record_json(&view).to_string().as_bytes());
                                buf.push(b'\n');
                            } else {
                                format.render(&view, &mut buf);
                            }
                            if write_out(&mut out, &buf)? {
                                return Ok(ExitCode::SUCCESS);
                            }
                            printed += 1;
                        }
                    }
                    if args.exit_at_end && pos.next >= pos.high_watermark {
                        pos.done = true;
                    }
                }
            }
            if flush_out(&mut out)? {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    flush_out(&mut out)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; `Ok(true)` when the reader went away (`| head`), which ends the command.
fn write_out(out: &mut impl Write, buf: &[u8]) -> anyhow::Result<bool> {
    match out.write_all(buf) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e).context("writing to standard output"),
    }
}

fn flush_out(out: &mut impl Write) -> anyhow::Result<bool> {
    match out.flush() {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e).context("writing to standard output"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("beginning"), Ok(OffsetSpec::Beginning));
        assert_eq!(parse_offset("end"), Ok(OffsetSpec::End));
        assert_eq!(parse_offset("17"), Ok(OffsetSpec::Absolute(17)));
        assert_eq!(parse_offset("-3"), Ok(OffsetSpec::FromEnd(3)));
        assert!(parse_offset("later").is_err());
    }
}
