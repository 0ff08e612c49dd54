//! Producer idempotence with real clients and the bridge (edge -> central mirroring) across
//! several `rill` processes on loopback.

use rill_tests::Node;

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
