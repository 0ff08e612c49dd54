//! sd_notify without systemd: the test owns the `NOTIFY_SOCKET` datagram socket (as systemd does
//! for a `Type=notify` unit, deploy/systemd/), starts the real node with `WATCHDOG_USEC`, and
//! receives READY=1 once the node listens, then periodic WATCHDOG=1 pings, then STOPPING=1 on
//! SIGTERM. With the failpoint `stall_maintenance_while=FILE` (target/debug/rill-failpoints), the
//! storage maintenance loop is stuck while FILE exists: the pings must stop, while a plain node
//! started beside it keeps pinging, and resume when the file goes.

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_tests::{rill_failpoints_bin, Launch, Node};

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

/// Notifications of one node as they arrive, with their arrival time.
type Received = Arc<Mutex<Vec<(Instant, String)>>>;

/// Binds a notify socket in `dir` and collects what arrives on it in a thread.
fn collector(dir: &Path, name: &str) -> (std::path::PathBuf, Received) {
    let path = dir.join(name);
    let socket = UnixDatagram::bind(&path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let received: Received = Arc::default();
    let sink = Arc::clone(&received);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => {
                    let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let stop = m == "STOPPING=1";
                    if let Ok(mut r) = sink.lock() {
                        r.push((Instant::now(), m));
                    }
                    if stop {
                        return;
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    // Ends with the test process, or on STOPPING=1.
                }
                Err(_) => return,
            }
        }
    });
    (path, received)
}

/// The times of the WATCHDOG=1 pings received in `[from, to)`.
fn pings_between(r: &Received, from: Instant, to: Instant) -> Vec<Instant> {
    r.lock()
        .map(|v| {
            v.iter()
                .filter(|(t, m)| m == "WATCHDOG=1" && *t >= from && *t < to)
                .map(|(t, _)| *t)
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `r` holds READY=1 and then at least `n` pings, or panics after `timeout`.
fn wait_for_pings(r: &Received, n: usize, timeout: Duration, node: &Node, what: &str) {
    let deadline = Instant::now() + timeout;
    loop {
        let (ready, pings) = r
            .lock()
            .map(|v| {
                let ready = v
                    .iter()
                    .position(|(_, m)| m.lines().any(|l| l == "READY=1"));
                let pings = ready.map_or(0, |i| {
                    v[i..].iter().filter(|(_, m)| m == "WATCHDOG=1").count()
                });
                (ready.is_some(), pings)
            })
            .unwrap_or((false, 0));
        if ready && pings >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: READY={ready}, {pings} of {n} pings within {timeout:?}\nnode log:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// When the stall begins, how long the pings may still go on: the thread notices the file within
/// its 100 ms poll or 500 ms idle wait, the watchdog gives a loop half the 2 s interval, and pings
/// every 500 ms. Generous for a loaded CI machine.
const STALL_NOTICED: Duration = Duration::from_secs(3);
/// How long the stalled node must then stay silent (2.5 watchdog intervals).
const SILENCE: Duration = Duration::from_secs(5);

#[test]
fn a_stalled_maintenance_loop_stops_the_pings_while_a_plain_node_keeps_pinging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stall = dir.path().join("stall-maintenance");
    let (broken_sock, broken_rx) = collector(dir.path(), "broken.sock");
    let (plain_sock, plain_rx) = collector(dir.path(), "plain.sock");
    let watchdog = |sock: &Path| {
        vec![
            (OsString::from("NOTIFY_SOCKET"), sock.as_os_str().to_owned()),
            ("WATCHDOG_USEC".into(), WATCHDOG_USEC.into()),
        ]
    };
    let mut broken_env = watchdog(&broken_sock);
    broken_env.push((
        "RILL_FAILPOINTS".into(),
        format!("stall_maintenance_while={}", stall.display()).into(),
    ));
    let mut broken = Node::start_launched(
        Launch {
            program: Some(rill_failpoints_bin()),
            env: broken_env,
            ..Launch::default()
        },
        &[],
    );
    let mut plain = Node::start_launched(
        Launch {
            env: watchdog(&plain_sock),
            ..Launch::default()
        },
        &[],
    );

    // Healthy, the failpoint binary pings like the plain one.
    wait_for_pings(
        &broken_rx,
        3,
        Duration::from_secs(30),
        &broken,
        "failpoint node",
    );
    wait_for_pings(&plain_rx, 3, Duration::from_secs(30), &plain, "plain node");

    // Stall its maintenance loop: after STALL_NOTICED, no ping for SILENCE.
    std::fs::write(&stall, b"stalled by the test\n").expect("create stall file");
    let stalled_at = Instant::now();
    std::thread::sleep(STALL_NOTICED + SILENCE);
    let window = (
        stalled_at + STALL_NOTICED,
        stalled_at + STALL_NOTICED + SILENCE,
    );
    let broken_pings = pings_between(&broken_rx, window.0, window.1);
    assert!(
        broken_pings.is_empty(),
        "{} pings from the stalled node between {:?} and {:?} after the stall\nnode log:\n{}",
        broken_pings.len(),
        STALL_NOTICED,
        STALL_NOTICED + SILENCE,
        broken.log()
    );
    let plain_pings = pings_between(&plain_rx, window.0, window.1);
    assert!(
        plain_pings.len() >= 4,
        "the plain node sent only {} pings in {SILENCE:?} (one every 500 ms expected)\nnode log:\n{}",
        plain_pings.len(),
        plain.log()
    );
    let log = broken.log();
    assert!(
        log.contains("watchdog pings stop") && log.contains("storage maintenance ("),
        "the node does not log which loop stalled:\n{log}"
    );
    // Only the watchdog's view changed: the node still accepts Kafka connections.
    std::net::TcpStream::connect(broken.kafka_addr()).expect("Kafka listener of the stalled node");

    // Unstuck, the pings come back.
    std::fs::remove_file(&stall).expect("remove stall file");
    let resumed_at = Instant::now();
    let deadline = resumed_at + Duration::from_secs(10);
    while pings_between(&broken_rx, resumed_at, deadline).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no ping within 10 s after the stall ended\nnode log:\n{}",
            broken.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(broken.log().contains("watchdog pings resume"));

    for node in [&mut broken, &mut plain] {
        let status = node.terminate();
        assert!(
            status.success(),
            "exit status {status}\nnode log:\n{}",
            node.log()
        );
    }
}
