//! OffsetForLeaderEpoch against the real `rill` binary, answered from the partition's leader
//! epoch cache and its `leader-epoch-checkpoint` file: records produced with rill-client, then
//! typed OffsetForLeaderEpoch requests (epoch 0, an epoch the cache does not know, fenced and
//! unknown current epochs), and restarts (the checkpoint survives and gives the same answers; a
//! checkpoint recording a later leadership moves the partition's epoch).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::EpochEndOffset;
use kafka_protocol::messages::{BrokerId, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rill_client::{Client, ConnectOptions, Connection};
use rill_core::batch::BatchBuilder;
use rill_tests::Node;

const TIMEOUT: Duration = Duration::from_secs(10);
const TOPIC: &str = "epochs";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn records(n: usize, tag: &str) -> Bytes {
    let mut b = BatchBuilder::new();
    for i in 0..n {
        b.push(
            None,
            Some(Bytes::from(format!("{tag}-{i}"))),
            1_000 + i as i64,
        );
    }
    b.build().expect("batch")
}

/// Create the topic (2 partitions) and produce `batches` batches of 3 records to partition 0
/// with acks=all; returns the log end offset.
fn produce(node: &Node, batches: usize, tag: &str) -> i64 {
    rt().block_on(async {
        let opts = ConnectOptions::default().with_timeout(TIMEOUT);
        let mut client = Client::connect(node.kafka_addr(), opts)
            .await
            .expect("connect");
        client
            .create_topic_if_missing(TOPIC, 2, -1, &[])
            .await
            .expect("create topic");
        let mut end = 0;
        for i in 0..batches {
            let done = client
                .produce(
                    TOPIC,
                    &[(0, records(3, &format!("{tag}{i}")))],
                    -1,
                    5_000,
                    false,
                )
                .await
                .expect("produce");
            let base = done[&0].as_ref().expect("partition 0 produce").to_owned();
            end = base + 3;
        }
        client.close().await;
        end
    })
}

/// OffsetForLeaderEpoch requests at `version` for partition 0 of the topic, one per
/// (current leader epoch, requested epoch) pair.
fn ask(node: &Node, version: i16, queries: &[(i32, i32)]) -> Vec<EpochEndOffset> {
    rt().block_on(async {
        let opts = ConnectOptions::default().with_timeout(TIMEOUT);
        let mut c = Connection::connect(node.kafka_addr(), &opts)
            .await
            .expect("connect");
        let mut out = Vec::new();
        for &(current, epoch) in queries {
            let req = OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(
                    [OffsetForLeaderTopic::default()
                        .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                        .with_partitions(vec![OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(epoch)])]
                    .into_iter()
                    .collect(),
                );
            let resp = c
                .send_with_version(&req, version)
                .await
                .expect("OffsetForLeaderEpoch");
            assert_eq!(resp.topics.len(), 1);
            assert_eq!(resp.topics[0].partitions.len(), 1);
            out.push(resp.topics[0].partitions[0].clone());
        }
        out
    })
}

fn answer(e: &EpochEndOffset) -> (i16, i32, i64) {
    (e.error_code, e.leader_epoch, e.end_offset)
}

fn checkpoint(node: &Node) -> String {
    let p = node
        .data_dir()
        .join(format!("{TOPIC}-0"))
        .join("leader-epoch-checkpoint");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const FENCED: i16 = ResponseError::FencedLeaderEpoch.code();
const UNKNOWN_EPOCH: i16 = ResponseError::UnknownLeaderEpoch.code();

#[test]
fn offset_for_leader_epoch_answers_from_the_epoch_cache() {
    let node = Node::start();
    let end = produce(&node, 4, "a");
    assert_eq!(end, 12);
    for version in [2, 4] {
        let got = ask(
            &node,
            version,
            &[(-1, 0), (0, 0), (-1, 5), (1, 0), (-1, -1)],
        );
        let got: Vec<_> = got.iter().map(answer).collect();
        assert_eq!(
            got,
            vec![
                (0, 0, 12),              // epoch 0 is the latest: it ends at the log end
                (0, 0, 12),              // current epoch 0 is the log's epoch
                (0, -1, -1),             // an epoch the cache does not know: UNDEFINED, no error
                (UNKNOWN_EPOCH, -1, -1), // a current epoch newer than the log's
                (0, -1, -1),             // UNDEFINED_EPOCH asked
            ],
            "v{version}"
        );
    }
    assert_eq!(checkpoint(&node), "0\n1\n0 0\n");
}

#[test]
fn the_checkpoint_survives_restarts_and_a_later_leadership_fences_older_epochs() {
    let mut node = Node::start();
    assert_eq!(produce(&node, 2, "a"), 6);
    let before: Vec<_> = ask(&node, 4, &[(-1, 0), (0, 0)])
        .iter()
        .map(answer)
        .collect();
    // SIGKILL and restart: same file, same answers.
    node.restart();
    assert_eq!(checkpoint(&node), "0\n1\n0 0\n");
    let after: Vec<_> = ask(&node, 4, &[(-1, 0), (0, 0)])
        .iter()
        .map(answer)
        .collect();
    assert_eq!(after, before);
    assert_eq!(after[0], (0, 0, 6));

    // A checkpoint recording that epoch 3 started at offset 6 (as a replica that became leader
    // in epoch 3 leaves it): after a restart the partition is in epoch 3.
    assert!(node.terminate().success());
    let p = node
        .data_dir()
        .join(format!("{TOPIC}-0"))
        .join("leader-epoch-checkpoint");
    std::fs::write(&p, "0\n2\n0 0\n3 6\n").expect("write checkpoint");
    node.restart();
    assert_eq!(produce(&node, 1, "b"), 9, "appends continue at the log end");
    let got: Vec<_> = ask(
        &node,
        4,
        &[(-1, 0), (-1, 2), (-1, 3), (0, 3), (3, 3), (4, 3)],
    )
    .iter()
    .map(answer)
    .collect();
    assert_eq!(
        got,
        vec![
            (0, 0, 6),               // epoch 0 ends where epoch 3 starts
            (0, 0, 6),               // epoch 2 never wrote: the largest epoch below it, 0
            (0, 3, 9),               // the latest epoch ends at the log end
            (FENCED, -1, -1),        // a client still in epoch 0 is fenced
            (0, 3, 9),               // current epoch 3 is the partition's epoch
            (UNKNOWN_EPOCH, -1, -1), // a client ahead of the partition
        ]
    );
    // The checkpoint is unchanged by the appends of epoch 3 (already recorded), and a missing
    // one is rebuilt from the batch headers on the next start.
    assert_eq!(checkpoint(&node), "0\n2\n0 0\n3 6\n");
    assert!(node.terminate().success());
    std::fs::remove_file(&p).expect("remove checkpoint");
    node.restart();
    assert_eq!(
        checkpoint(&node),
        "0\n2\n0 0\n3 6\n",
        "rebuilt from the stored batches' epochs"
    );
    let got: Vec<_> = ask(&node, 4, &[(-1, 0), (3, 3)])
        .iter()
        .map(answer)
        .collect();
    assert_eq!(got, vec![(0, 0, 6), (0, 3, 9)]);
}
