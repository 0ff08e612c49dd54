//! A simulated power cut of a real node right after it acknowledged records (the `failpoints`
//! binary, `RILL_FAILPOINTS=power_cut_after_acks=N`): every log file goes back to its last synced
//! state and the process exits, as if the power had gone. Under `flush = "always"` every
//! acknowledged record must be there after the restart. The control run under
//! `flush = { interval_ms }` (acks before fsync) must lose acknowledged records: it proves the
//! failpoint really discards unsynced data, so the first test can fail.

use std::ffi::OsString;
use std::time::Duration;

use rill_tests::{marker, rill_failpoints_bin, Launch, Node};

const ACKS_BEFORE_CUT: &str = "150";

/// Starts the failpoint binary with `flush`, produces one record at a time until the power cut,
/// restarts the normal binary on the same data, and returns crash_verify.py's output.
fn produce_through_power_cut(flush: &str, report_missing: bool) -> String {
    let conf_dir = tempfile::tempdir().expect("tempdir");
    let conf = conf_dir.path().join("rill.toml");
    std::fs::write(&conf, format!("[storage]\nflush = {flush}\n")).expect("write config");
    let conf = conf.to_str().expect("utf-8 path").to_string();
    let launch = Launch {
        program: Some(rill_failpoints_bin()),
        env: vec![(
            OsString::from("RILL_FAILPOINTS"),
            OsString::from(format!("power_cut_after_acks={ACKS_BEFORE_CUT}")),
        )],
        ..Launch::default()
    };
    let mut node = Node::start_launched(launch, &["--config", &conf]);
    let mark = marker(24);
    let acked = node.scratch().join("acked.json");
    let acked_s = acked.to_str().expect("utf-8 path").to_string();
    let out = node.python(
        "crash_produce.py",
        &[
            "--topic",
            "cut",
            "--count",
            "1000",
            "--marker",
            &mark,
            "--out",
            &acked_s,
            "--until-dead",
        ],
    );
    let status = node
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the failpoint did not stop the node; log:\n{}", node.log()));
    assert_eq!(
        status.code(),
        Some(86),
        "exit status of the power cut; log:\n{}",
        node.log()
    );
    assert!(
        node.log().contains("power cut"),
        "the node did not report the power cut; log:\n{}",
        node.log()
    );
    let acked_count: usize = out
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected producer output: {out}"));
    assert!(
        acked_count >= ACKS_BEFORE_CUT.parse::<usize>().unwrap(),
        "only {acked_count} records were acknowledged before the cut: {out}"
    );
    node.set_launch(Launch::default());
    node.restart();
    let mut args = vec!["--topic", "cut", "--acked", &acked_s];
    if report_missing {
        args.push("--report-missing");
    }
    node.python("crash_verify.py", &args)
}

#[test]
fn acknowledged_records_survive_a_power_cut_under_flush_always() {
    let out = produce_through_power_cut("\"always\"", false);
    assert!(out.contains("acknowledged records present"), "{out}");
}

#[test]
fn control_interval_flush_loses_acknowledged_records_in_a_power_cut() {
    // Acknowledged before fsync, with no background flush during the test: the cut must take
    // records back, or the failpoint does not cut anything.
    let out = produce_through_power_cut("{ interval_ms = 600000 }", true);
    let missing: usize = out
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected verifier output: {out}"));
    assert!(
        missing > 0,
        "a power cut under interval flushing lost nothing: the failpoint did not revert unsynced data ({out})"
    );
}
