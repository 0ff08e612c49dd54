//! Bridge priorities across real processes: when a high-priority backlog (`alarms`) and a
//! low-priority one (`bulk`) drain at the same time, the alarms go first.
//!
//! The assertion is on order, not on timing: the target topics on central are LogAppendTime
//! topics, so each batch carries the time central appended it. Without the scheduler both drains
//! run side by side and most of `bulk` (fewer, larger records that drain faster) is appended
//! before the last alarm; with it, `bulk` waits while the alarms' lane is busy and at most a batch
//! or two slip in before the alarms' task has started.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rill_bridge::origin::parse_origin;
use rill_client::{ConnectOptions, Connection};
use rill_tests::Node;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Many small alarm records: their drain costs per-record work and takes a while.
const ALARMS: usize = 100_000;
const ALARM_BYTES: usize = 100;
/// Fewer, larger bulk records (16 MiB): without priorities they drain faster than the alarms.
const BULK: usize = 4_000;
const BULK_BYTES: usize = 4096;
/// Bulk records allowed before the last alarm: what the bulk task may send before the alarm
/// task has finished connecting (its first batches; a batch is ~256 of these records).
const BULK_ALLOWANCE: usize = BULK / 4;

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn records(first: usize, n: usize, size: usize) -> Bytes {
    // Current timestamps: the edge's retention (7 days) must not delete the backlog.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let recs: Vec<Record> = (first..first + n)
        .map(|i| {
            let mut v = format!("{i:08}-").into_bytes();
            v.resize(size, b'a' + (i % 26) as u8);
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: (i - first) as i64,
                sequence: -1,
                timestamp: now_ms,
                key: None,
                value: Some(Bytes::from(v)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf.freeze()
}

/// Produce `total` records of `size` bytes to partition 0 of `topic`, `per_batch` per request.
async fn produce(addr: &str, topic: &str, total: usize, size: usize, per_batch: usize) {
    let mut c = Connection::connect(addr, &ConnectOptions::default().with_timeout(TIMEOUT))
        .await
        .expect("connect");
    let mut sent = 0;
    while sent < total {
        let n = per_batch.min(total - sent);
        let req = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(str_bytes(topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records(sent, n, size)))])]);
        let r = c.send_with_version(&req, 9).await.expect("produce");
        let code = r.responses[0].partition_responses[0].error_code;
        assert_eq!(code, 0, "produce to {topic}: error {code}");
        sent += n;
    }
}

async fn end_offset(c: &mut Connection, topic: &str) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(str_bytes(topic)))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let r = c.send_with_version(&req, 5).await.expect("list offsets");
    r.topics[0].partitions[0].offset
}

/// One stored batch: records in it and its `maxTimestamp` (the append time on a LogAppendTime
/// topic).
struct BatchInfo {
    records: i64,
    append_ms: i64,
}

/// Batch headers of a fetched record set (magic 2 layout: baseOffset 0, batchLength 8,
/// lastOffsetDelta 23, maxTimestamp 35).
fn batch_infos(mut b: &[u8]) -> Vec<BatchInfo> {
    let be = |s: &[u8]| -> i64 { s.iter().fold(0i64, |a, x| (a << 8) | i64::from(*x)) };
    let mut out = Vec::new();
    while b.len() >= 43 {
        let len = be(&b[8..12]) as usize;
        let delta = be(&b[23..27]);
        out.push(BatchInfo {
            records: delta + 1,
            append_ms: be(&b[35..43]),
        });
        b = &b[(12 + len).min(b.len())..];
    }
    out
}

/// Every record of partition 0 of `topic` in offset order, and its batches.
async fn fetch_all(c: &mut Connection, topic: &str, end: i64) -> (Vec<Record>, Vec<BatchInfo>) {
    let mut out = Vec::new();
    let mut batches = Vec::new();
    let mut pos = 0i64;
    while pos < end {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(16 << 20)
            .with_isolation_level(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(str_bytes(topic)))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(pos)
                    .with_partition_max_bytes(16 << 20)])]);
        let r = c.send_with_version(&req, 11).await.expect("fetch");
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch error");
        let mut buf = p.records.clone().unwrap_or_default();
        batches.extend(batch_infos(&buf));
        let before = pos;
        for set in RecordBatchDecoder::decode_all(&mut buf).expect("decode") {
            for r in set.records {
                if r.offset >= pos {
                    pos = r.offset + 1;
                    out.push(r);
                }
            }
        }
        assert!(pos > before, "fetch at {pos} made no progress");
    }
    (out, batches)
}

/// Checks that `recs` are records `0..n` of `edge6/source/0`, exactly once and in order.
fn check_exactly_once(recs: &[Record], source: &str, n: usize) {
    assert_eq!(recs.len(), n, "{source}: record count");
    for (i, r) in recs.iter().enumerate() {
        let origin = r
            .headers
            .iter()
            .find(|(k, _)| k.as_str() == rill_bridge::ORIGIN_HEADER)
            .and_then(|(_, v)| v.clone())
            .expect("origin header");
        let got = parse_origin(&origin).expect("origin");
        assert_eq!(got, ("edge6", source, 0, i as i64), "{source} record {i}");
    }
}

fn start_bridge(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("bridge log");
    Command::new(rill_tests::rill_bin())
        .arg("bridge")
        .arg("--config")
        .arg(config)
        .env_remove("RILL_MASTER_KEY")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start rill bridge")
}

#[test]
fn a_high_priority_backlog_drains_before_a_competing_low_priority_one() {
    let central = Node::start_with(&["--node-name", "central"]);
    // Central stamps every batch with its append time.
    for t in ["edge6.alarms", "edge6.bulk"] {
        central.cli_ok(
            &[
                "topic",
                "create",
                t,
                "-p",
                "1",
                "-c",
                "message.timestamp.type=LogAppendTime",
            ],
            b"",
        );
    }
    let mut edge = Node::start_with(&["--node-name", "edge6"]);
    edge.cli_ok(&["topic", "create", "alarms", "-p", "1"], b"");
    edge.cli_ok(&["topic", "create", "bulk", "-p", "1"], b"");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        produce(edge.kafka_addr(), "alarms", ALARMS, ALARM_BYTES, 2000).await;
        produce(edge.kafka_addr(), "bulk", BULK, BULK_BYTES, 100).await;
    });
    edge.terminate();

    // The standalone bridge starts both mirrors at once, with central already up (no reconnect
    // backoff that could favour one of them).
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bridge.toml");
    let target = central.kafka_addr();
    std::fs::write(
        &cfg,
        format!(
            "node_name = \"edge6\"\ndata_dir = {:?}\nkey_file = {:?}\n\
             [[mirror]]\ntopics = [\"bulk\"]\ntarget = \"{target}\"\n\
             priority = 0\ncompression = \"none\"\n\
             [[mirror]]\ntopics = [\"alarms\"]\ntarget = \"{target}\"\n\
             priority = 10\ncompression = \"none\"\n",
            edge.data_dir().to_string_lossy(),
            edge.key_file().to_string_lossy()
        ),
    )
    .expect("write config");
    let bridge_log = dir.path().join("bridge.log");
    let mut bridge = start_bridge(&cfg, &bridge_log);
    let got = rt.block_on(async {
        let mut c = Connection::connect(
            central.kafka_addr(),
            &ConnectOptions::default().with_timeout(TIMEOUT),
        )
        .await
        .expect("connect");
        // Give up when nothing moved for a minute (or the bridge exited).
        let mut last = (-1, -1);
        let mut moved = Instant::now();
        loop {
            let alarms = end_offset(&mut c, "edge6.alarms").await;
            let bulk = end_offset(&mut c, "edge6.bulk").await;
            if (alarms, bulk) != last {
                last = (alarms, bulk);
                moved = Instant::now();
            }
            let exited = bridge.try_wait().ok().flatten().is_some();
            if last == (ALARMS as i64, BULK as i64)
                || exited
                || moved.elapsed() > Duration::from_secs(60)
            {
                break last;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let _ = bridge.kill();
    let _ = bridge.wait();
    let log = std::fs::read_to_string(&bridge_log).unwrap_or_default();
    assert_eq!(
        got,
        (ALARMS as i64, BULK as i64),
        "central's (alarms, bulk) counts; bridge log:\n{log}"
    );

    let ((alarms, alarm_batches), (bulk, bulk_batches)) = rt.block_on(async {
        let mut c = Connection::connect(
            central.kafka_addr(),
            &ConnectOptions::default().with_timeout(TIMEOUT),
        )
        .await
        .expect("connect");
        (
            fetch_all(&mut c, "edge6.alarms", ALARMS as i64).await,
            fetch_all(&mut c, "edge6.bulk", BULK as i64).await,
        )
    });
    check_exactly_once(&alarms, "alarms", ALARMS);
    check_exactly_once(&bulk, "bulk", BULK);
    let last_alarm_ms = alarm_batches
        .iter()
        .map(|b| b.append_ms)
        .max()
        .expect("alarm batches");
    let first_alarm_ms = alarm_batches
        .iter()
        .map(|b| b.append_ms)
        .min()
        .expect("alarm batches");
    let bulk_before_last_alarm: i64 = bulk_batches
        .iter()
        .filter(|b| b.append_ms < last_alarm_ms)
        .map(|b| b.records)
        .sum();
    eprintln!(
        "alarms appended over {} ms; bulk records before the last alarm: \
         {bulk_before_last_alarm} of {BULK}",
        last_alarm_ms - first_alarm_ms
    );
    assert!(
        bulk_before_last_alarm <= BULK_ALLOWANCE as i64,
        "{bulk_before_last_alarm} of {BULK} bulk records were appended before the last alarm \
         (allowed {BULK_ALLOWANCE}); bridge log:\n{log}"
    );
}
