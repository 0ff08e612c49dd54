//! Producer idempotence with real clients and the bridge (edge -> central mirroring) across
//! several `rill` processes on loopback.

use rill_tests::{free_port, random_ms, recent_ts, start_central, Node};

#[test]
fn idempotent_producers_survive_restart() {
    let mut node = Node::start();
    let topic = "idem";
    node.cli_ok(&["topic", "create", topic, "-p", "1"], b"");
    let py = |node: &Node, args: &[&str]| {
        let mut all = vec!["--topic", topic];
        all.extend_from_slice(args);
        node.python("bridge_idempotent.py", &all)
    };
    py(
        &node,
        &[
            "--phase",
            "produce",
            "--client",
            "confluent",
            "--prefix",
            "c",
            "--count",
            "200",
        ],
    );
    py(
        &node,
        &[
            "--phase",
            "produce",
            "--client",
            "kafka-python",
            "--prefix",
            "k",
            "--count",
            "50",
        ],
    );
    node.restart();
    py(
        &node,
        &[
            "--phase",
            "produce",
            "--client",
            "confluent",
            "--prefix",
            "c",
            "--start",
            "200",
            "--count",
            "100",
        ],
    );
    py(
        &node,
        &[
            "--phase",
            "produce",
            "--client",
            "kafka-python",
            "--prefix",
            "k",
            "--start",
            "50",
            "--count",
            "50",
        ],
    );
    let out = py(
        &node,
        &[
            "--phase",
            "verify",
            "--expect",
            "c:0:200,k:0:50,c:200:100,k:50:50",
        ],
    );
    assert!(out.contains("OK"), "{out}");
}

fn start_edge(name: &str, central_port: u16, extra: &[&str]) -> Node {
    let target = format!("127.0.0.1:{central_port}");
    let mut args = vec!["--node-name", name, "--mirror-to", &target];
    if extra.first() == Some(&"--bridge-config") {
        args = vec!["--node-name", name];
    }
    args.extend_from_slice(extra);
    Node::start_with(&args)
}

#[test]
fn edge_buffers_while_central_is_down_then_delivers_exactly_once() {
    let port = free_port();
    let edge = start_edge("edge1", port, &[]);
    edge.python(
        "bridge_produce.py",
        &["--topic", "sensors", "--partitions", "3", "--count", "3000"],
    );
    // The edge keeps working and buffers; now central comes up on the agreed port.
    let central = start_central(port);
    let out = central.python(
        "bridge_verify.py",
        &[
            "--topic",
            "edge1.sensors",
            "--count",
            "3000",
            "--node",
            "edge1",
            "--source",
            "sensors",
        ],
    );
    assert!(out.contains("OK"), "{out}\nedge log:\n{}", edge.log());
}

/// MQTT devices at the edge while central is down: every acknowledged message reaches central
/// once, in order, also after the edge is SIGKILLed right after the last PUBACK.
#[test]
fn mqtt_publishes_buffered_at_the_edge_reach_central_exactly_once() {
    let port = free_port();
    let mut edge = start_edge("edge6", port, &[]);
    let mqtt = edge.mqtt_addr();
    edge.python(
        "bridge_mqtt.py",
        &["publish", "--mqtt", &mqtt, "--count", "300"],
    );
    edge.kill();
    edge.restart();
    let central = start_central(port);
    let out = central.python(
        "bridge_mqtt.py",
        &[
            "verify",
            "--topic",
            "edge6.mqtt",
            "--node",
            "edge6",
            "--count",
            "300",
        ],
    );
    assert!(out.contains("OK"), "{out}\nedge log:\n{}", edge.log());
}

#[test]
fn sigkill_edge_and_central_during_mirroring_is_still_exactly_once() {
    let ts = recent_ts();
    let port = free_port();
    // A bandwidth cap stretches the drain over a few seconds, so the kills land mid-transfer.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mirror]]\nall_topics = true\ntarget = \"127.0.0.1:{port}\"\n\
             bandwidth_bytes_per_sec = 150000\n"
        ),
    )
    .expect("write config");
    let cfg_s = cfg.to_string_lossy().to_string();
    let mut edge = start_edge("edge2", port, &["--bridge-config", &cfg_s]);
    edge.python(
        "bridge_produce.py",
        &[
            "--base-ts",
            &ts,
            "--topic",
            "metrics",
            "--partitions",
            "2",
            "--count",
            "40000",
        ],
    );
    let mut central = start_central(port);
    for round in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(150 + random_ms(600)));
        if round % 2 == 0 {
            central.kill();
            std::thread::sleep(std::time::Duration::from_millis(random_ms(300)));
            central.restart();
        } else {
            edge.restart();
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(random_ms(400)));
    edge.restart();
    let out = central.python(
        "bridge_verify.py",
        &[
            "--base-ts",
            &ts,
            "--topic",
            "edge2.metrics",
            "--count",
            "40000",
            "--node",
            "edge2",
            "--source",
            "metrics",
        ],
    );
    assert!(out.contains("OK"), "{out}\nedge log:\n{}", edge.log());
    assert!(
        edge.log().contains("mirror session failed"),
        "no kill interrupted the transfer:\n{}",
        edge.log()
    );
}

#[test]
fn rename_and_filter_rules_from_a_bridge_config() {
    let port = free_port();
    let central = start_central(port);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mirror]]\ntopics_regex = \"al.*\"\ntarget = \"127.0.0.1:{port}\"\n\
             rename = \"{{topic}}\"\nfilter_header = \"class=alarm\"\ncompression = \"none\"\n\
             bandwidth_bytes_per_sec = 10000000\n"
        ),
    )
    .expect("write config");
    let cfg_s = cfg.to_string_lossy().to_string();
    let edge = start_edge("edge3", port, &["--bridge-config", &cfg_s]);
    edge.python(
        "bridge_produce.py",
        &["--topic", "alarms", "--partitions", "1", "--count", "300"],
    );
    edge.python(
        "bridge_produce.py",
        &["--topic", "other", "--partitions", "1", "--count", "10"],
    );
    let out = central.python(
        "bridge_verify.py",
        &[
            "--topic",
            "alarms",
            "--count",
            "100",
            "--node",
            "edge3",
            "--source",
            "alarms",
            "--only-alarms",
        ],
    );
    assert!(out.contains("OK"), "{out}\nedge log:\n{}", edge.log());
    let topics = central.cli_ok(&["topic", "list"], b"");
    assert!(
        !topics.contains("other"),
        "unselected topic mirrored: {topics}"
    );
}

mod wire {
    //! Idempotent produce at the protocol level, with the bridge's client.

    use bytes::BytesMut;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        BrokerId, InitProducerIdRequest, ListOffsetsRequest, ProduceRequest, ProducerId, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use rill_client::{ConnectOptions, Connection};
    use std::time::Duration;

    fn batch(pid: i64, seq: i32, n: usize) -> bytes::Bytes {
        let recs: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: seq + i as i32,
                timestamp: 1,
                key: None,
                value: Some(bytes::Bytes::from(format!("s{}", seq + i as i32))),
                headers: Default::default(),
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

    async fn produce(c: &mut Connection, pid: i64, seq: i32, n: usize) -> (i16, i64) {
        let req = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("wire")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(pid, seq, n)))])]);
        let r = c.send_with_version(&req, 9).await.expect("produce");
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    async fn init(c: &mut Connection) -> i64 {
        let r = c
            .send_with_version(
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
                4,
            )
            .await
            .expect("init");
        assert_eq!(r.error_code, 0);
        assert_eq!(r.producer_epoch, 0);
        r.producer_id.0
    }

    async fn end_offset(c: &mut Connection) -> i64 {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("wire")))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]);
        let r = c.send_with_version(&req, 5).await.expect("list offsets");
        r.topics[0].partitions[0].offset
    }

    #[test]
    fn retried_batches_are_deduplicated_also_after_restart() {
        let mut node = super::Node::start();
        node.cli_ok(&["topic", "create", "wire", "-p", "1"], b"");
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let t = Duration::from_secs(10);
        let pid = rt.block_on(async {
            let mut c = Connection::connect(
                node.kafka_addr(),
                &ConnectOptions::default().with_timeout(t),
            )
            .await
            .expect("connect");
            let pid = init(&mut c).await;
            assert_eq!(produce(&mut c, pid, 0, 3).await, (0, 0));
            // The retry is answered with the original offset and not appended.
            assert_eq!(produce(&mut c, pid, 0, 3).await, (0, 0));
            assert_eq!(end_offset(&mut c).await, 3);
            // A gap: OUT_OF_ORDER_SEQUENCE_NUMBER (45).
            assert_eq!(produce(&mut c, pid, 7, 1).await.0, 45);
            assert_eq!(produce(&mut c, pid, 3, 2).await, (0, 3));
            pid
        });
        node.restart();
        rt.block_on(async {
            let mut c = Connection::connect(
                node.kafka_addr(),
                &ConnectOptions::default().with_timeout(t),
            )
            .await
            .expect("connect");
            assert_eq!(produce(&mut c, pid, 3, 2).await, (0, 3));
            assert_eq!(end_offset(&mut c).await, 5);
            assert_eq!(produce(&mut c, pid, 5, 1).await, (0, 5));
            // A producer without state may start at any sequence (Kafka 2.5+), then is checked.
            assert_eq!(produce(&mut c, pid + 100_000, 4, 1).await, (0, 6));
            assert_eq!(produce(&mut c, pid + 100_000, 9, 1).await.0, 45);
            let pid2 = init(&mut c).await;
            assert_ne!(pid2, pid, "producer ids are unique across restarts");
        });
    }
}

#[test]
fn standalone_bridge_drains_a_stopped_nodes_log() {
    let port = free_port();
    let central = start_central(port);
    let mut edge = Node::start_with(&["--node-name", "edge4"]);
    edge.python(
        "bridge_produce.py",
        &["--topic", "backlog", "--partitions", "2", "--count", "500"],
    );
    edge.terminate();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "node_name = \"edge4\"\ndata_dir = {:?}\nkey_file = {:?}\n[[mirror]]\n\
             topics = [\"backlog\"]\ntarget = \"127.0.0.1:{port}\"\n",
            edge.data_dir().to_string_lossy(),
            edge.key_file().to_string_lossy()
        ),
    )
    .expect("write config");
    let mut bridge = std::process::Command::new(rill_tests::rill_bin())
        .arg("bridge")
        .arg("--config")
        .arg(&cfg)
        .env_remove("RILL_MASTER_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start rill bridge");
    let out = rill_tests::run_python(
        "bridge_verify.py",
        &[
            "--bootstrap",
            central.kafka_addr(),
            "--topic",
            "edge4.backlog",
            "--count",
            "500",
            "--node",
            "edge4",
            "--source",
            "backlog",
        ],
    );
    let _ = bridge.kill();
    let _ = bridge.wait();
    let out = out.unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn fewer_target_partitions_use_key_hash_and_resume_exactly() {
    let ts = recent_ts();
    let port = free_port();
    let mut central = start_central(port);
    // The target topic exists with one partition: three source partitions share it.
    central.cli_ok(&["topic", "create", "edge5.fan", "-p", "1"], b"");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[mirror]]\ntopics = [\"fan\"]\ntarget = \"127.0.0.1:{port}\"\n\
             bandwidth_bytes_per_sec = 100000\n"
        ),
    )
    .expect("write config");
    let cfg_s = cfg.to_string_lossy().to_string();
    let edge = start_edge("edge5", port, &["--bridge-config", &cfg_s]);
    edge.python(
        "bridge_produce.py",
        &[
            "--base-ts",
            &ts,
            "--topic",
            "fan",
            "--partitions",
            "3",
            "--count",
            "20000",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(300 + random_ms(700)));
    central.kill();
    central.restart();
    let out = central.python(
        "bridge_verify.py",
        &[
            "--base-ts",
            &ts,
            "--topic",
            "edge5.fan",
            "--count",
            "20000",
            "--node",
            "edge5",
            "--source",
            "fan",
        ],
    );
    assert!(out.contains("OK"), "{out}\nedge log:\n{}", edge.log());
}

#[test]
fn two_nodes_mirroring_to_each_other_with_identity_names_do_not_cycle() {
    let (pa, pb) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, target: u16| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!(
                "[[mirror]]\ntopics = [\"shared\"]\ntarget = \"127.0.0.1:{target}\"\n\
                 rename = \"{{topic}}\"\n"
            ),
        )
        .expect("write config");
        p.to_string_lossy().to_string()
    };
    let (ca, cb) = (write("a.toml", pb), write("b.toml", pa));
    let a_listen = format!("127.0.0.1:{pa}");
    let b_listen = format!("127.0.0.1:{pb}");
    let a = Node::start_with(&[
        "--node-name",
        "a",
        "--kafka-listen",
        &a_listen,
        "--bridge-config",
        &ca,
    ]);
    let b = Node::start_with(&[
        "--node-name",
        "b",
        "--kafka-listen",
        &b_listen,
        "--bridge-config",
        &cb,
    ]);
    a.python(
        "bridge_produce.py",
        &[
            "--topic",
            "shared",
            "--partitions",
            "1",
            "--count",
            "100",
            "--prefix",
            "a",
        ],
    );
    b.python(
        "bridge_produce.py",
        &[
            "--topic",
            "shared",
            "--partitions",
            "1",
            "--count",
            "50",
            "--prefix",
            "b",
        ],
    );
    a.python("bridge_count.py", &["--topic", "shared", "--count", "150"]);
    b.python("bridge_count.py", &["--topic", "shared", "--count", "150"]);
}
