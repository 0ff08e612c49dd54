//! The Kafka server in-process on port 0: protocol round trips, and bad input that must close only
//! the offending connection while every other client keeps working.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{batch, connect, start};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn produce_req(name: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(name))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

fn fetch_req(name: &str, offset: i64, min_bytes: i32, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(name))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

async fn create_topic(addr: std::net::SocketAddr, name: &str, partitions: i32) {
    let mut c = connect(addr).await;
    let resp: CreateTopicsResponse = c
        .send_with_version(
            &CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic(name))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)]),
            7,
        )
        .await
        .unwrap();
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
}

/// ApiVersions at every version, and the v0 fallback for a version from the future.
#[tokio::test]
async fn api_versions_negotiation() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let mut c = connect(node.kafka_addr).await;
    for v in 0..=4 {
        let resp: ApiVersionsResponse = c
            .send_with_version(&ApiVersionsRequest::default(), v)
            .await
            .unwrap();
        assert_eq!(resp.error_code, 0);
        let produce = resp.api_keys.iter().find(|k| k.api_key == 0).unwrap();
        assert_eq!((produce.min_version, produce.max_version), (0, 12));
        let init_pid = resp.api_keys.iter().find(|k| k.api_key == 22);
        assert!(
            init_pid.is_some_and(|k| (k.min_version, k.max_version) == (0, 5)),
            "InitProducerId v0-5 is advertised: {init_pid:?}"
        );
    }
    // A client newer than us: v0-format answer with UNSUPPORTED_VERSION and our table.
    let mut raw = BytesMut::new();
    raw.put_i16(18);
    raw.put_i16(77);
    raw.put_i32(5);
    raw.put_slice(b"\x00\x01\x02");
    c.send_frame(&raw).await.unwrap();
    let resp: ApiVersionsResponse = c.read_response::<ApiVersionsRequest>(0, 5).await.unwrap();
    assert_eq!(resp.error_code, 35);
    assert!(!resp.api_keys.is_empty());
    node.shutdown().await.unwrap();
}

/// Metadata auto-creates, produce (acks 1) then fetch and list offsets return what was written.
#[tokio::test]
async fn produce_fetch_list_offsets_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let mut c = connect(node.kafka_addr).await;
    let md: MetadataResponse = c
        .send_with_version(
            &MetadataRequest::default()
                .with_allow_auto_topic_creation(true)
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(topic("auto")))
                ])),
            12,
        )
        .await
        .unwrap();
    assert_eq!(md.topics[0].error_code, 0);
    assert_eq!(md.topics[0].partitions.len(), 1);
    assert_eq!(md.brokers[0].port, i32::from(node.kafka_addr.port()));
    assert!(!md.topics[0].topic_id.is_nil());

    for (i, codec) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let resp: ProduceResponse = c
            .send_with_version(&produce_req("auto", 0, batch(&["a", "b"], codec), 1), 9)
            .await
            .unwrap();
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "{p:?}");
        assert_eq!(p.base_offset, 2 * i as i64);
    }
    let resp: FetchResponse = c
        .send_with_version(&fetch_req("auto", 0, 1, 100), 12)
        .await
        .unwrap();
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 10);
    let mut records = p.records.clone().unwrap();
    let sets = RecordBatchDecoder::decode_all(&mut records).unwrap();
    let values: Vec<_> = sets
        .iter()
        .flat_map(|s| s.records.iter())
        .map(|r| (r.offset, r.value.clone().unwrap()))
        .collect();
    assert_eq!(values.len(), 10);
    assert_eq!(values[9], (9, Bytes::from_static(b"b")));

    // Fetching past the end is OFFSET_OUT_OF_RANGE.
    let resp: FetchResponse = c
        .send_with_version(&fetch_req("auto", 99, 1, 0), 12)
        .await
        .unwrap();
    assert_eq!(resp.responses[0].partitions[0].error_code, 1);

    let lo: ListOffsetsResponse = c
        .send_with_version(
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic("auto"))
                    .with_partitions(vec![
                        ListOffsetsPartition::default().with_timestamp(-2),
                        ListOffsetsPartition::default().with_timestamp(-1),
                        ListOffsetsPartition::default().with_timestamp(1_700_000_000_001),
                    ])]),
            7,
        )
        .await
        .unwrap();
    let offsets: Vec<i64> = lo.topics[0].partitions.iter().map(|p| p.offset).collect();
    assert_eq!(offsets[0], 0);
    assert_eq!(offsets[1], 10);
    assert_eq!(offsets[2], 1, "first record with timestamp >= the query");
    node.shutdown().await.unwrap();
}

/// A long-polling fetch returns when another connection produces.
#[tokio::test]
async fn fetch_long_poll_wakes_on_produce() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    create_topic(node.kafka_addr, "poll", 1).await;
    let mut consumer = connect(node.kafka_addr).await;
    let id = consumer
        .write_request(&fetch_req("poll", 0, 1, 60_000), 12)
        .await
        .unwrap();
    let mut producer = connect(node.kafka_addr).await;
    let resp: ProduceResponse = producer
        .send_with_version(
            &produce_req("poll", 0, batch(&["wake"], Compression::None), -1),
            9,
        )
        .await
        .unwrap();
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    let resp: FetchResponse = consumer
        .read_response::<FetchRequest>(12, id)
        .await
        .unwrap();
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 1);
    assert!(!p.records.as_ref().unwrap().is_empty());
    node.shutdown().await.unwrap();
}

/// Produce errors are per partition and keep the connection open.
#[tokio::test]
async fn produce_errors_are_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    create_topic(node.kafka_addr, "t", 1).await;
    let mut c = connect(node.kafka_addr).await;
    // Unknown partition.
    let resp: ProduceResponse = c
        .send_with_version(&produce_req("t", 5, batch(&["x"], Compression::None), 1), 9)
        .await
        .unwrap();
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 3);
    // Truncated batch.
    let whole = batch(&["x", "y"], Compression::None);
    let resp: ProduceResponse = c
        .send_with_version(&produce_req("t", 0, whole.slice(..whole.len() - 3), 1), 9)
        .await
        .unwrap();
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 2);
    // Bad CRC.
    let mut bad = BytesMut::from(&whole[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let resp: ProduceResponse = c
        .send_with_version(&produce_req("t", 0, bad.freeze(), 1), 9)
        .await
        .unwrap();
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 2);
    // Over the topic's max.message.bytes.
    let mut admin = connect(node.kafka_addr).await;
    let created: CreateTopicsResponse = admin
        .send_with_version(
            &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                .with_name(topic("small"))
                .with_num_partitions(1)
                .with_replication_factor(-1)
                .with_configs(vec![
                    kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default(
                    )
                    .with_name(StrBytes::from_static_str("max.message.bytes"))
                    .with_value(Some(StrBytes::from_static_str("100"))),
                ])]),
            7,
        )
        .await
        .unwrap();
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0]);
    let big = "x".repeat(500);
    let resp: ProduceResponse = c
        .send_with_version(
            &produce_req("small", 0, batch(&[big.as_str()], Compression::None), 1),
            9,
        )
        .await
        .unwrap();
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 10);
    // Still fine afterwards.
    let resp: ProduceResponse = c
        .send_with_version(&produce_req("t", 0, whole, 1), 9)
        .await
        .unwrap();
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(resp.responses[0].partition_responses[0].base_offset, 0);
    node.shutdown().await.unwrap();
}

/// Garbage, oversized frames, unknown API keys, unsupported versions and undecodable bodies close
/// that connection only.
#[tokio::test]
async fn bad_input_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let mut bystander = connect(node.kafka_addr).await;
    let _: ApiVersionsResponse = bystander
        .send_with_version(&ApiVersionsRequest::default(), 3)
        .await
        .unwrap();

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    cases.push((
        "garbage",
        b"\xde\xad\xbe\xef\x00\x01\x02\x03\x04\x05\x06\x07garbage".to_vec(),
    ));
    cases.push(("short", b"\x00\x03".to_vec()));
    let mut unknown = BytesMut::new();
    unknown.put_i16(999);
    unknown.put_i16(0);
    unknown.put_i32(1);
    unknown.put_i16(-1);
    cases.push(("unknown api key", unknown.to_vec()));
    let mut produce_v2 = BytesMut::new();
    produce_v2.put_i16(0);
    produce_v2.put_i16(2);
    produce_v2.put_i32(1);
    produce_v2.put_i16(-1);
    cases.push(("produce v2", produce_v2.to_vec()));
    let mut fetch_v3 = BytesMut::new();
    fetch_v3.put_i16(1);
    fetch_v3.put_i16(3);
    fetch_v3.put_i32(1);
    fetch_v3.put_i16(-1);
    cases.push(("fetch v3", fetch_v3.to_vec()));
    let mut truncated = BytesMut::new();
    truncated.put_i16(3);
    truncated.put_i16(9);
    truncated.put_i32(1);
    truncated.put_i16(1000); // claims a 1000-byte client id that is not there
    cases.push(("truncated header", truncated.to_vec()));
    let mut huge_array = BytesMut::new();
    huge_array.put_i16(3);
    huge_array.put_i16(1);
    huge_array.put_i32(1);
    huge_array.put_i16(-1);
    huge_array.put_i32(7); // 7 topics promised, none present
    cases.push(("truncated body", huge_array.to_vec()));

    for (what, payload) in cases {
        let mut c = connect(node.kafka_addr).await;
        c.send_frame(&payload).await.unwrap();
        assert!(
            c.is_closed(common::CLOSE_WAIT).await,
            "{what}: connection not closed"
        );
    }

    // A frame over socket.request.max.bytes (1 MiB in tests): closed without reading it all.
    let mut c = connect(node.kafka_addr).await;
    c.write_bytes(&(64i32 << 20).to_be_bytes()).await.unwrap();
    c.write_bytes(&[0u8; 1024]).await.unwrap();
    assert!(c.is_closed(common::CLOSE_WAIT).await, "oversized frame");
    // A negative length.
    let mut c = connect(node.kafka_addr).await;
    c.write_bytes(&(-5i32).to_be_bytes()).await.unwrap();
    assert!(c.is_closed(common::CLOSE_WAIT).await, "negative length");

    // The bystander and new clients still work.
    let resp: ApiVersionsResponse = bystander
        .send_with_version(&ApiVersionsRequest::default(), 3)
        .await
        .unwrap();
    assert_eq!(resp.error_code, 0);
    let mut fresh = connect(node.kafka_addr).await;
    let md: MetadataResponse = fresh
        .send_with_version(&MetadataRequest::default().with_topics(None), 12)
        .await
        .unwrap();
    assert_eq!(md.brokers.len(), 1);
    let metrics = node.metrics.encode().expect("metrics are enabled");
    assert!(
        metrics.contains("rill_kafka_protocol_errors_total 9"),
        "{metrics}"
    );
    node.shutdown().await.unwrap();
}

/// acks=0 gets no response; the next request's response comes back in order.
#[tokio::test]
async fn acks_zero_has_no_response() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    create_topic(node.kafka_addr, "fire", 1).await;
    let mut c = connect(node.kafka_addr).await;
    c.write_request(
        &produce_req("fire", 0, batch(&["x"], Compression::None), 0),
        9,
    )
    .await
    .unwrap();
    let md: MetadataResponse = c
        .send_with_version(&MetadataRequest::default().with_topics(None), 12)
        .await
        .unwrap();
    assert_eq!(md.topics.len(), 1);
    // The record becomes visible without anyone waiting for it (long poll until it does).
    let resp: FetchResponse = c
        .send_with_version(&fetch_req("fire", 0, 1, 30_000), 12)
        .await
        .unwrap();
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 1);
    // An acks=0 produce to a missing partition closes the connection (as Kafka does).
    c.write_request(
        &produce_req("fire", 3, batch(&["x"], Compression::None), 0),
        9,
    )
    .await
    .unwrap();
    assert!(c.is_closed(common::CLOSE_WAIT).await);
    node.shutdown().await.unwrap();
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The admin endpoint: health, and Prometheus counters that move with traffic.
#[tokio::test]
async fn admin_http_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let health = http_get(node.http_addr, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok"), "{health}");
    create_topic(node.kafka_addr, "m", 1).await;
    let mut c = connect(node.kafka_addr).await;
    let _: ProduceResponse = c
        .send_with_version(
            &produce_req("m", 0, batch(&["a", "b", "c"], Compression::None), 1),
            9,
        )
        .await
        .unwrap();
    // A KIP-848 API is counted under its Kafka name (the name comes from SUPPORTED_APIS); an
    // unknown group id is answered with an error, which is enough here.
    let _: ConsumerGroupHeartbeatResponse = c
        .send_with_version(
            &ConsumerGroupHeartbeatRequest::default()
                .with_group_id(StrBytes::from_static_str("metrics-g").into())
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![topic("m")])),
            0,
        )
        .await
        .unwrap();
    let metrics = http_get(node.http_addr, "/metrics").await;
    assert!(
        metrics.contains("rill_kafka_requests_total{api=\"ConsumerGroupHeartbeat\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("api=\"Other\""), "{metrics}");
    assert!(
        metrics.contains("rill_kafka_requests_total{api=\"Produce\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rill_kafka_requests_total{api=\"CreateTopics\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rill_produce_records_total 3"),
        "{metrics}"
    );
    assert!(metrics.contains("rill_kafka_open_connections"), "{metrics}");
    node.shutdown().await.unwrap();
}
