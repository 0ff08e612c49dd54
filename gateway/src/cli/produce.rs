//! `rill produce TOPIC`: one record per line of standard input, batched into Kafka v2 record
//! batches (rill-core's `BatchBuilder`, with the chosen compression) and sent to each
//! partition's leader.
//!
//! Lines are read on a blocking thread; the sender takes every line that is ready, lingers a few
//! milliseconds for more, and sends a batch per partition. Interactive typing therefore goes out
//! line by line, while a pipe is sent in large batches.

use rill_core::clock::now_ms;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    produce_request::{PartitionProduceData, TopicProduceData},
    ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rill_core::batch::{BatchBuilder, Compression, Headers};
use tokio::sync::mpsc;

use super::partitioner::Partitioner;
use super::{parse_key_value, ConnectArgs};
use rill_client::{check, Client, ClientError, TopicInfo};

/// A batch is sent once it holds this many bytes of keys and values...
const MAX_BATCH_BYTES: usize = 512 * 1024;
/// ...or this many records.
const MAX_BATCH_RECORDS: usize = 10_000;
/// How long to wait for more lines once one arrived.
const LINGER: Duration = Duration::from_millis(5);
/// Produce request timeout sent to the broker.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// Attempts for retriable errors (leader moved, not available yet).
const ATTEMPTS: u32 = 5;

/// `--compression`
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionArg {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy (Kafka's framing).
    Snappy,
    /// LZ4 frames.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(c: CompressionArg) -> Compression {
        match c {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

/// Parses `--acks`: `0`, `1`, `all` or `-1`.
pub fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        _ => Err(format!("acks must be 0, 1 or all, not {s:?}")),
    }
}

/// `rill produce`
#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// Topic to produce to (created by the broker when it auto-creates topics).
    pub topic: String,
    /// Split each line at the first SEP into key and value (lines without it have no key).
    #[arg(short = 'k', long = "key-separator", value_name = "SEP")]
    pub key_separator: Option<String>,
    /// A header for every record, key=value (repeatable).
    #[arg(short = 'H', long = "header", value_parser = parse_key_value)]
    pub headers: Vec<(String, String)>,
    /// Send every record to this partition (default: murmur2 of the key, else sticky round robin).
    #[arg(short = 'p', long = "partition")]
    pub partition: Option<i32>,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: i16,
    /// Compression codec of the record batches.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
}

/// A line turned into a record, before its partition is chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Key (None when no separator was given or found).
    pub key: Option<Bytes>,
    /// Value.
    pub value: Bytes,
}

/// Splits one input line (without its newline) into key and value.
pub fn split_line(line: &[u8], separator: Option<&[u8]>) -> Line {
    if let Some(sep) = separator.filter(|s| !s.is_empty()) {
        if let Some(pos) = line.windows(sep.len()).position(|w| w == sep) {
            return Line {
                key: Some(Bytes::copy_from_slice(&line[..pos])),
                value: Bytes::copy_from_slice(&line[pos + sep.len()..]),
            };
        }
    }
    Line {
        key: None,
        value: Bytes::copy_from_slice(line),
    }
}

/// Encodes records as one v2 record batch with `compression` (no producer id, so the base
/// sequence is -1).
pub fn encode_batch(
    lines: &[Line],
    headers: &Headers,
    timestamp: i64,
    compression: Compression,
) -> Result<Bytes, anyhow::Error> {
    let mut b = BatchBuilder::new().compression(compression);
    for l in lines {
        b.push_with_headers(
            l.key.clone(),
            Some(l.value.clone()),
            timestamp,
            headers.clone(),
        );
    }
    b.build().context("encoding record batch")
}

/// Reads stdin lines on a blocking thread into a channel.
fn spawn_stdin_reader() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(MAX_BATCH_RECORDS);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if tx.blocking_send(Ok(line)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    rx
}

/// Runs `rill produce`.
pub async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.conn.client().await?;
    let mut topic = client.topic(&args.topic, true).await?;
    let partitions = topic.partitions.len() as i32;
    if let Some(p) = args.partition {
        if p < 0 || p >= partitions {
            bail!(
                "topic {} has {partitions} partition(s); there is no partition {p}",
                args.topic
            );
        }
    }
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut partitioner = Partitioner::new(partitions, args.partition, start);
    let headers: Headers = args
        .headers
        .iter()
        .map(|(k, v)| {
            (
                StrBytes::from_string(k.clone()),
                Some(Bytes::copy_from_slice(v.as_bytes())),
            )
        })
        .collect();
    let separator = args.key_separator.as_ref().map(|s| s.as_bytes().to_vec());
    let mut rx = spawn_stdin_reader();
    let mut total = 0u64;
    let mut per_partition: BTreeMap<i32, u64> = BTreeMap::new();
    'outer: loop {
        // Wait for the first line of a batch, then take whatever follows within the linger time.
        let Some(first) = rx.recv().await else { break };
        let mut pending: BTreeMap<i32, Vec<Line>> = BTreeMap::new();
        let mut bytes = 0usize;
        let mut count = 0usize;
        let mut eof = false;
        let mut unkeyed = false;
        let mut next = Some(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while let Some(item) = next.take() {
            let line = split_line(
                &item.context("reading standard input")?,
                separator.as_deref(),
            );
            bytes += line.value.len() + line.key.as_ref().map_or(0, |k| k.len());
            count += 1;
            unkeyed |= line.key.is_none();
            let p = partitioner.partition(line.key.as_deref());
            pending.entry(p).or_default().push(line);
            if bytes >= MAX_BATCH_BYTES || count >= MAX_BATCH_RECORDS {
                break;
            }
            next = match rx.try_recv() {
                Ok(item) => Some(item),
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    eof = true;
                    None
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(item)) => Some(item),
                        Ok(None) => {
                            eof = true;
                            None
                        }
                        Err(_) => None,
                    }
                }
            };
        }
        let acked = send(&mut client, &mut topic, &args, &headers, &pending).await?;
        for (p, n) in &acked {
            *per_partition.entry(*p).or_default() += n.count;
            total += n.count;
            if args.conn.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "topic": args.topic,
                        "partition": p,
                        "base_offset": n.base_offset,
                        "count": n.count,
                    })
                );
            }
        }
        if unkeyed {
            partitioner.batch_done();
        }
        if eof {
            break 'outer;
        }
    }
    client.close().await;
    if !args.conn.json {
        let parts: Vec<String> = per_partition
            .iter()
            .map(|(p, n)| format!("{p}:{n}"))
            .collect();
        eprintln!(
            "produced {total} record(s) to {} (partition:count {})",
            args.topic,
            if parts.is_empty() {
                "-".to_string()
            } else {
                parts.join(" ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What the broker acknowledged for one partition's batch.
#[derive(Debug, Clone, Copy)]
struct Acked {
    base_offset: i64,
    count: u64,
}

/// Sends one batch per partition, grouped into one Produce request per leader; retries retriable
/// errors after refreshing metadata.
async fn send(
    client: &mut Client,
    topic: &mut TopicInfo,
    args: &ProduceArgs,
    headers: &Headers,
    pending: &BTreeMap<i32, Vec<Line>>,
) -> anyhow::Result<BTreeMap<i32, Acked>> {
    let timestamp = now_ms();
    let mut batches: BTreeMap<i32, (Bytes, u64)> = BTreeMap::new();
    for (p, lines) in pending {
        batches.insert(
            *p,
            (
                encode_batch(lines, headers, timestamp, args.compression.into())?,
                lines.len() as u64,
            ),
        );
    }
    let mut acked = BTreeMap::new();
    let mut attempt = 0;
    while !batches.is_empty() {
        attempt += 1;
        let by_leader = topic.by_leader(batches.keys().copied());
        let mut retry: Option<ClientError> = None;
        for (leader, parts) in by_leader {
            let req = ProduceRequest::default()
                .with_acks(args.acks)
                .with_timeout_ms(PRODUCE_TIMEOUT_MS)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(args.topic.clone())))
                    .with_partition_data(
                        parts
                            .iter()
                            .filter_map(|p| batches.get(p).map(|(b, _)| (p, b)))
                            .map(|(p, b)| {
                                PartitionProduceData::default()
                                    .with_index(*p)
                                    .with_records(Some(b.clone()))
                            })
                            .collect(),
                    )]);
            let conn = client.broker(leader).await?;
            if args.acks == 0 {
                conn.send_no_response(&req).await?;
                for p in parts {
                    if let Some((_, n)) = batches.remove(&p) {
                        acked.insert(
                            p,
                            Acked {
                                base_offset: -1,
                                count: n,
                            },
                        );
                    }
                }
                continue;
            }
            let resp = conn.send(&req).await?;
            for t in resp.responses {
                for pr in t.partition_responses {
                    let result = check(pr.error_code, pr.error_message.as_ref(), || {
                        format!("produce to {}/{}", args.topic, pr.index)
                    });
                    match result {
                        Ok(()) => {
                            if let Some((_, n)) = batches.remove(&pr.index) {
                                acked.insert(
                                    pr.index,
                                    Acked {
                                        base_offset: pr.base_offset,
                                        count: n,
                                    },
                                );
                            }
                        }
                        Err(e) if retriable(&e) && attempt < ATTEMPTS => retry = Some(e),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        if let Some(e) = retry {
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            *topic = client.topic(&args.topic, false).await.map_err(|_| e)?;
        } else if !batches.is_empty() {
            let missing: Vec<String> = batches.keys().map(i32::to_string).collect();
            bail!(
                "the broker did not answer for partition(s) {}",
                missing.join(",")
            );
        }
    }
    Ok(acked)
}

fn retriable(e: &ClientError) -> bool {
    matches!(
        e.kafka_code(),
        Some(
            ResponseError::NotLeaderOrFollower
                | ResponseError::LeaderNotAvailable
                | ResponseError::UnknownTopicOrPartition
                | ResponseError::RequestTimedOut
                | ResponseError::NotEnoughReplicas
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn split_lines() {
        assert_eq!(
            split_line(b"k:v:w", Some(b":")),
            Line {
                key: Some(Bytes::from("k")),
                value: Bytes::from("v:w")
            }
        );
        assert_eq!(
            split_line(b"kv", Some(b":")),
            Line {
                key: None,
                value: Bytes::from("kv")
            }
        );
        assert_eq!(
            split_line(b"a::b", Some(b"::")),
            Line {
                key: Some(Bytes::from("a")),
                value: Bytes::from("b")
            }
        );
        assert_eq!(
            split_line(b":v", Some(b":")),
            Line {
                key: Some(Bytes::new()),
                value: Bytes::from("v")
            }
        );
        assert_eq!(
            split_line(b"k:v", None),
            Line {
                key: None,
                value: Bytes::from("k:v")
            }
        );
    }

    #[test]
    fn acks() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("-1"), Ok(-1));
        assert_eq!(parse_acks("1"), Ok(1));
        assert!(parse_acks("2").is_err());
    }

    #[test]
    fn batches_round_trip_with_every_codec() {
        let lines = vec![
            Line {
                key: Some(Bytes::from("k1")),
                value: Bytes::from("v1"),
            },
            Line {
                key: None,
                value: Bytes::from("v2".repeat(100)),
            },
        ];
        let headers: Headers = vec![
            (StrBytes::from_static_str("h"), Some(Bytes::from("x"))),
            (StrBytes::from_static_str("h"), Some(Bytes::from("y"))),
        ];
        for c in [
            CompressionArg::None,
            CompressionArg::Gzip,
            CompressionArg::Snappy,
            CompressionArg::Lz4,
            CompressionArg::Zstd,
        ] {
            let mut batch = encode_batch(&lines, &headers, 1234, c.into()).unwrap();
            let info = RecordBatchDecoder::decode_batch_info(&mut batch.clone()).unwrap();
            assert_eq!(info.len(), 1, "{c:?}: one batch");
            assert_eq!(
                (
                    info[0].base_sequence,
                    info[0].producer_id,
                    info[0].record_count
                ),
                (-1, -1, 2)
            );
            let sets = RecordBatchDecoder::decode_all(&mut batch).unwrap();
            assert_eq!(sets.len(), 1, "{c:?}");
            assert_eq!(Compression::from(sets[0].compression), Compression::from(c));
            let recs = &sets[0].records;
            assert_eq!(recs.len(), 2);
            assert_eq!(recs[0].key.as_deref(), Some(&b"k1"[..]));
            assert_eq!(recs[0].value.as_deref(), Some(&b"v1"[..]));
            assert_eq!(recs[1].key, None);
            assert_eq!(recs[1].offset, 1);
            assert_eq!(recs[1].timestamp, 1234);
            // Repeated header names are kept, in order (KIP-82).
            assert_eq!(recs[1].headers, headers);
        }
    }
}
