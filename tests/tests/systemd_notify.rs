//! sd_notify without systemd: the test owns the `NOTIFY_SOCKET` datagram socket (as systemd does
//! for a `Type=notify` unit, deploy/systemd/), starts the real node with `WATCHDOG_USEC`, and
//! receives READY=1 once the node listens, then periodic WATCHDOG=1 pings, then STOPPING=1 on
//! SIGTERM.

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use rill_tests::{Launch, Node};

/// The shortest watchdog interval the node honours (gateway `systemd::MIN_WATCHDOG_INTERVAL`).
const WATCHDOG_USEC: &str = "2000000";
/// Pings to wait for (one every quarter interval).
const PINGS: usize = 4;

fn recv(socket: &UnixDatagram, node: &Node, what: &str) -> String {
    let mut buf = [0u8; 4096];
    match socket.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => panic!("no {what} notification: {e}\nnode log:\n{}", node.log()),
    }
}

#[test]
fn ready_then_watchdog_pings_then_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let launch = Launch {
        env: vec![
            (OsString::from("NOTIFY_SOCKET"), path.clone().into()),
            ("WATCHDOG_USEC".into(), WATCHDOG_USEC.into()),
        ],
        ..Launch::default()
    };
    let mut node = Node::start_launched(launch, &[]);

    let first = recv(&socket, &node, "READY=1");
    let lines: Vec<&str> = first.lines().collect();
    assert!(lines.contains(&"READY=1"), "first notification {first:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("STATUS=listening") && l.contains(node.kafka_addr())),
        "READY=1 carries the listening status: {first:?}"
    );
    for i in 0..PINGS {
        let ping = recv(&socket, &node, "WATCHDOG=1");
        assert_eq!(ping, "WATCHDOG=1", "notification {} after READY=1", i + 1);
    }
    assert!(node.log().contains("systemd watchdog enabled"));

    let status = node.terminate();
    assert!(status.success(), "exit status {status}");
    // Pings already queued may come first; STOPPING=1 must follow.
    loop {
        let m = recv(&socket, &node, "STOPPING=1");
        if m == "STOPPING=1" {
            break;
        }
        assert_eq!(m, "WATCHDOG=1", "unexpected notification while stopping");
    }
}
