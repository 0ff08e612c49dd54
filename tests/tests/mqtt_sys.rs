//! `$SYS` topics with real clients: paho-mqtt (values at once and on the interval, wildcards do
//! not match them, read-only, never in the log) and `mosquitto_sub -t '$SYS/#'`, and
//! `[mqtt] sys_interval_s = 0` turning them off.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rill_tests::Node;

const RULES: &str = r#"
[[mqtt.rules]]
pattern = "devices/{device}/telemetry"
topic = "telemetry"
key = "device"
"#;

fn start(mqtt: &str) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("rill.toml");
    std::fs::write(&path, format!("[mqtt]\n{mqtt}\n{RULES}")).expect("write config");
    let node = Node::start_with(&["--config", path.to_str().expect("utf-8 path")]);
    (node, dir)
}

/// The `RESULT <name> <json>` lines of a script's output, by name.
fn results(out: &str) -> std::collections::HashMap<String, serde_json::Value> {
    out.lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|r| r.split_once(' '))
        .map(|(name, json)| {
            let v = serde_json::from_str(json).unwrap_or_else(|e| panic!("bad RESULT {json}: {e}"));
            (name.to_string(), v)
        })
        .collect()
}

#[test]
fn mqtt_sys_topics_with_paho() {
    let (node, _cfg) = start("sys_interval_s = 1");
    let out = node.python("mqtt_sys.py", &["--mqtt", &node.mqtt_addr()]);
    let r = results(&out);
    let first = &r["first"];
    assert_eq!(
        first["version"],
        format!("rill version {}", env!("CARGO_PKG_VERSION"))
    );
    // The current values come at once, as retained messages, with the subscription id.
    assert_eq!(first["retained"], true, "{first}");
    assert_eq!(first["ids"], serde_json::json!([5]), "{first}");
    assert_eq!(first["granted"], serde_json::json!([1]));
    let later = &r["later"];
    // Live updates from the node's counters: not retained.
    assert!(later["connected"].as_i64() >= Some(4), "{later}");
    assert!(later["received"].as_i64() >= Some(5), "{later}");
    assert!(later["bytes_received"].as_i64() > Some(0), "{later}");
    assert_eq!(later["retained"], false, "{later}");
    assert_eq!(later["ids"], serde_json::json!([5]), "{later}");
    assert!(
        later["uptime"]
            .as_str()
            .is_some_and(|u| u.ends_with(" seconds")),
        "{later}"
    );
    assert_eq!(later["hacked"], serde_json::json!([]), "{later}");
    // MQTT 4.7.2: `#` and `+/...` do not match `$SYS` topics.
    let wild = &r["wildcards"]["topics"];
    assert!(
        wild.as_array().is_some_and(|t| !t.is_empty()
            && t.iter()
                .all(|t| t.as_str().is_some_and(|t| t.starts_with("devices/")))),
        "{wild}"
    );
    let ro = &r["read_only"];
    assert_eq!(ro["v5_reason"], 0x87, "{ro}");
    assert_eq!(ro["v311_acked"], true, "{ro}");
    assert_eq!(ro["v311_qos2_done"], true, "{ro}");
    // The device's three messages are in the log; nothing of `$SYS` is.
    assert_eq!(r["log"]["total"], 3, "{}", r["log"]);
    assert_eq!(r["log"]["sys_records"], 0, "{}", r["log"]);
}

/// `mosquitto_sub`, or None (skip) when it is not installed outside CI.
fn mosquitto_sub() -> Option<&'static str> {
    let found = Command::new("mosquitto_sub")
        .arg("--help")
        .output()
        .is_ok_and(|o| !o.stdout.is_empty() || !o.stderr.is_empty());
    if !found {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "mosquitto_sub is required (CI=true): apt-get install mosquitto-clients"
        );
        eprintln!("skipping: mosquitto_sub is not installed");
        return None;
    }
    Some("mosquitto_sub")
}

/// Runs `mosquitto_sub -h H -p P args` (at most 20 s); returns stdout.
fn sub(node: &Node, args: &[&str]) -> (bool, String) {
    let addr = node.mqtt_addr();
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args(["-h", host, "-p", port]).args(args);
    let out =
        rill_tests::run_with_timeout(cmd, b"", Duration::from_secs(20)).expect("mosquitto_sub");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn mqtt_sys_topics_with_mosquitto_sub() {
    if mosquitto_sub().is_none() {
        return;
    }
    let (node, _cfg) = start("sys_interval_s = 1");
    // The values at once: the whole tree (34 topics), one line per topic.
    let (ok, out) = sub(&node, &["-t", "$SYS/#", "-v", "-C", "34", "-W", "10"]);
    assert!(ok, "{out}");
    let topics: Vec<&str> = out.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(topics.len(), 34, "{out}");
    for want in [
        "$SYS/broker/bytes/received",
        "$SYS/broker/clients/connected",
        "$SYS/broker/clients/total",
        "$SYS/broker/load/bytes/received/15min",
        "$SYS/broker/messages/received",
        "$SYS/broker/publish/messages/sent",
        "$SYS/broker/uptime",
        "$SYS/broker/version",
    ] {
        assert!(topics.contains(&want), "{want} not in {out}");
    }
    let (ok, out) = sub(&node, &["-t", "$SYS/broker/version", "-C", "1", "-W", "10"]);
    assert!(ok, "{out}");
    assert_eq!(
        out.trim(),
        format!("rill version {}", env!("CARGO_PKG_VERSION"))
    );
    // Uptime moves on the interval: the current value, then a later one.
    let (ok, out) = sub(&node, &["-t", "$SYS/broker/uptime", "-C", "2", "-W", "10"]);
    assert!(ok, "{out}");
    let secs: Vec<u64> = out
        .lines()
        .map(|l| {
            l.strip_suffix(" seconds")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("uptime {l:?}"))
        })
        .collect();
    assert!(secs.len() == 2 && secs[1] > secs[0], "{out}");
    // `#` does not see them (-W: exits non-zero after 3 s without a message).
    let (ok, out) = sub(&node, &["-t", "#", "-v", "-W", "3"]);
    assert!(!ok && out.is_empty(), "`#` received {out}");
}

#[test]
fn mqtt_sys_topics_off_with_interval_zero() {
    if mosquitto_sub().is_none() {
        return;
    }
    let (node, _cfg) = start("sys_interval_s = 0");
    let (ok, out) = sub(&node, &["-t", "$SYS/#", "-v", "-W", "3"]);
    assert!(!ok && out.is_empty(), "$SYS values while off: {out}");
}
