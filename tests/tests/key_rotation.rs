//! Master key rotation and the external key source, from outside: `rill key rotate` on a stopped
//! node with a few segments and a SASL user, crashed after every step (failpoint build,
//! `key_rotate_crash_after=N`) and SIGKILLed at random points (20 rounds); after each, `rill serve`
//! with the old or the new key completes it and every record (Kafka consume) and the credential
//! (SCRAM login) is readable; `rill key retire` makes the old key useless. A rotation without its
//! journal (failpoint `key_rotate_without_journal`, broken on purpose) is shown to lose data, so
//! the test can fail. `[node] key_command` with small scripts: the key, a failing helper, bad
//! output and a timeout.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rill_tests::{marker, random_ms, rill_bin, rill_failpoints_bin, run_with_timeout, Node};

const USER: &str = "rotor";
const PASSWORD: &str = "rotation-pw";
const TOPIC: &str = "rotated";
const RECORDS: usize = 60;

fn sasl() -> Vec<String> {
    [
        "security.protocol=SASL_PLAINTEXT",
        "sasl.mechanism=SCRAM-SHA-256",
        &format!("sasl.username={USER}"),
        &format!("sasl.password={PASSWORD}"),
    ]
    .iter()
    .flat_map(|x| ["-X".to_string(), x.to_string()])
    .collect()
}

fn run(bin: &Path, args: &[&str], failpoints: Option<&str>) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env_remove("RILL_MASTER_KEY");
    match failpoints {
        Some(spec) => cmd.env("RILL_FAILPOINTS", spec),
        None => cmd.env_remove("RILL_FAILPOINTS"),
    };
    run_with_timeout(cmd, b"", Duration::from_secs(60)).expect("rill ran")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn new_key(path: &Path) {
    std::fs::write(path, format!("{}\n", marker(64))).expect("write key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// A stopped node with SASL on, user `rotor`, topic `rotated` in several small segments.
/// Returns the node, the lines produced, and a pristine copy of its data directory.
fn setup() -> (Node, Vec<String>, PathBuf) {
    let mut node = Node::start_with(&["--kafka-sasl", "SCRAM-SHA-256"]);
    node.terminate();
    let data = node.data_dir();
    let data_s = data.to_str().expect("utf-8");
    let out = run(
        &rill_bin(),
        &[
            "user",
            "add",
            USER,
            "--data-dir",
            data_s,
            "--password",
            PASSWORD,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    node.restart();
    let mut args = vec![
        "topic",
        "create",
        TOPIC,
        "-p",
        "1",
        "-c",
        "segment.bytes=1500",
    ];
    let sasl = sasl();
    args.extend(sasl.iter().map(String::as_str));
    node.cli_ok(&args, b"");
    let lines: Vec<String> = (0..RECORDS)
        .map(|i| format!("record-{i:03}-{}", "x".repeat(60)))
        .collect();
    let mut args = vec!["produce", TOPIC];
    args.extend(sasl.iter().map(String::as_str));
    for chunk in lines.chunks(6) {
        node.cli_ok(&args, format!("{}\n", chunk.join("\n")).as_bytes());
    }
    node.terminate();
    let keys = std::fs::read_dir(data.join(format!("{TOPIC}-0")))
        .expect("partition dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "key"))
        })
        .count();
    assert!(
        keys >= 4,
        "only {keys} segments: the rotation would have little to do"
    );
    let pristine = node.scratch().join("pristine");
    copy_dir(&data, &pristine);
    (node, lines, pristine)
}

/// Start the node with `key` and check every record comes back through a SCRAM login; stop it.
fn check_readable(node: &mut Node, key: &Path, lines: &[String]) {
    assert!(
        try_readable(node, key, lines),
        "the node did not start with {}; log:\n{}",
        key.display(),
        node.log()
    );
}

/// Like [`check_readable`], but `false` when the node refuses to start with `key`.
fn try_readable(node: &mut Node, key: &Path, lines: &[String]) -> bool {
    std::fs::copy(key, node.key_file()).expect("install key");
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.restart())).is_err() {
        return false;
    }
    let mut args = vec!["consume", TOPIC, "--from-beginning", "-e"];
    let sasl = sasl();
    args.extend(sasl.iter().map(String::as_str));
    let got = node.cli_ok(&args, b"");
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(
        got,
        lines,
        "records after the rotation; log:\n{}",
        node.log()
    );
    node.terminate();
    true
}

/// Whether `rill serve` starts with `key` (it refuses data it cannot read before listening).
fn starts_with(node: &mut Node, key: &Path) -> bool {
    std::fs::copy(key, node.key_file()).expect("install key");
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.restart())).is_ok();
    if started {
        node.terminate();
    }
    started
}

fn rotate_args<'a>(data: &'a str, old: &'a str, new: &'a str) -> Vec<&'a str> {
    vec![
        "key",
        "rotate",
        "--data-dir",
        data,
        "--key-file",
        old,
        "--new-key-file",
        new,
    ]
}

#[test]
fn key_rotation_crashed_after_every_step_completes_with_either_key() {
    let (mut node, lines, pristine) = setup();
    let data = node.data_dir();
    let data_s = data.to_str().expect("utf-8").to_string();
    let old = node.scratch().join("old.key");
    std::fs::copy(node.key_file(), &old).expect("old key");
    let new = node.scratch().join("new.key");
    new_key(&new);
    let (old_s, new_s) = (old.to_str().unwrap(), new.to_str().unwrap());
    let fp = rill_failpoints_bin();

    // Broken on purpose: without the journal, a crash after the first re-wrapped sidecar leaves
    // the data under two keys and neither opens it.
    copy_dir(&pristine, &data);
    let out = run(
        &fp,
        &rotate_args(&data_s, old_s, new_s),
        Some("key_rotate_without_journal,key_rotate_crash_after=2"),
    );
    assert_eq!(out.status.code(), Some(86), "{}", text(&out));
    assert!(
        !starts_with(&mut node, &old) && !starts_with(&mut node, &new),
        "a rotation without its journal, interrupted, still opened: the test could not fail"
    );

    let mut crashes = 0;
    for n in 1.. {
        copy_dir(&pristine, &data);
        let spec = format!("key_rotate_crash_after={n}");
        let out = run(&fp, &rotate_args(&data_s, old_s, new_s), Some(&spec));
        if out.status.success() {
            assert!(
                text(&out).contains("rotated from master key"),
                "{}",
                text(&out)
            );
            break;
        }
        assert_eq!(out.status.code(), Some(86), "step {n}: {}", text(&out));
        crashes += 1;
        // Odd steps: the old key completes it; even: the new one.
        let key = if n % 2 == 1 { &old } else { &new };
        check_readable(&mut node, key, &lines);
        // One consistent state: rotated to the new key, the old one its previous key.
        let again = run(&rill_bin(), &rotate_args(&data_s, old_s, new_s), None);
        assert!(
            again.status.success() && text(&again).contains("already rotated"),
            "step {n}: {}",
            text(&again)
        );
        assert!(n < 50, "the rotation never finished");
    }
    assert!(
        crashes >= 6,
        "only {crashes} crash points (journal, sidecars, commit)"
    );

    // Completed: both keys open the data until the old one is retired; then only the new one.
    check_readable(&mut node, &old, &lines);
    let retire = ["key", "retire", "--data-dir", &data_s, "--key-file", old_s];
    let out = run(&rill_bin(), &retire, None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !starts_with(&mut node, &old),
        "the retired key still opens the data"
    );
    assert!(
        node.log().contains("was written under master key"),
        "{}",
        node.log()
    );
    check_readable(&mut node, &new, &lines);
    let out = run(&rill_bin(), &retire, None);
    assert!(!out.status.success(), "retired twice: {}", text(&out));
}

#[test]
fn key_rotation_survives_sigkill_at_random_points() {
    let (mut node, lines, _) = setup();
    let data = node.data_dir();
    let data_s = data.to_str().expect("utf-8").to_string();
    let dir = node.scratch();
    let mut old = dir.join("key-0");
    std::fs::copy(node.key_file(), &old).expect("key 0");
    let mut interrupted = 0;
    for round in 1..=20 {
        let new = dir.join(format!("key-{round}"));
        new_key(&new);
        let (old_s, new_s) = (old.to_str().unwrap(), new.to_str().unwrap());
        let mut child = Command::new(rill_bin())
            .args(rotate_args(&data_s, old_s, new_s))
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rotate");
        std::thread::sleep(Duration::from_millis(random_ms(60)));
        let _ = child.kill();
        let status = child.wait().expect("wait");
        if !status.success() {
            interrupted += 1;
        }
        // Complete it: by running the rotation again, or by starting the node with either key
        // (the new key cannot open a rotation killed before its journal was written); one
        // start per round checks every record and the SCRAM login.
        let again = |node: &Node| {
            let out = run(&rill_bin(), &rotate_args(&data_s, old_s, new_s), None);
            assert!(
                out.status.success(),
                "round {round}: {}\n{}",
                text(&out),
                node.log()
            );
        };
        match round % 3 {
            0 => {
                again(&node);
                check_readable(&mut node, &new, &lines);
            }
            1 => {
                check_readable(&mut node, &old, &lines);
                again(&node);
            }
            _ => {
                if !try_readable(&mut node, &new, &lines) {
                    assert!(
                        node.log().contains("was written under master key"),
                        "round {round}: {}",
                        node.log()
                    );
                    again(&node);
                    check_readable(&mut node, &new, &lines);
                }
            }
        }
        let out = run(
            &rill_bin(),
            &["key", "retire", "--data-dir", &data_s, "--key-file", old_s],
            None,
        );
        assert!(out.status.success(), "round {round}: {}", text(&out));
        old = new;
    }
    eprintln!("{interrupted} of 20 rotations were killed before they finished");
    assert!(
        interrupted > 0,
        "no rotation was interrupted: the kills came too late"
    );
}

/// `[node] key_command`: the helper's key opens the data; a failing helper, bad output and a
/// timeout stop the node with a clear message that never contains the helper's output.
#[test]
fn key_command_supplies_the_master_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = marker(64);
    let script = |name: &str, body: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        p
    };
    let good = script(
        "get-key",
        &format!("[ \"$1\" = vault-path ] || exit 9\necho {key}"),
    );
    let failing = script(
        "failing",
        &format!("echo {key}\necho 'vault is sealed' >&2\nexit 2"),
    );
    let garbage = script("garbage", "echo not-a-key-but-a-secret");
    let slow = script("slow", "sleep 30");
    let data = tmp.path().join("data");
    let serve = |helper: &Path, arg: &str| {
        let cfg = tmp.path().join("rill.toml");
        std::fs::write(
            &cfg,
            format!(
                "[node]\ndata_dir = {:?}\nkey_command = [{:?}, {arg:?}]\nkey_command_timeout_ms = 1000\n\
                 [listeners]\nkafka = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nmqtt = \"127.0.0.1:0\"\n",
                data, helper
            ),
        )
        .expect("config");
        let mut cmd = Command::new(rill_bin());
        cmd.args(["serve", "--config", cfg.to_str().unwrap()])
            .env("NO_COLOR", "1")
            .env_remove("RILL_MASTER_KEY");
        cmd
    };
    for (helper, want) in [
        (&failing, "exited with"),
        (&garbage, "expected 64 hex characters"),
        (&slow, "did not finish within 1000 ms"),
    ] {
        let out = run_with_timeout(serve(helper, "vault-path"), b"", Duration::from_secs(20))
            .expect("serve ran");
        let all = text(&out);
        assert!(!out.status.success(), "{all}");
        assert!(all.contains("key_command") && all.contains(want), "{all}");
        assert!(
            !all.contains(&key) && !all.contains("not-a-key"),
            "output echoed: {all}"
        );
    }
    assert!(
        text(&run_with_timeout(serve(&failing, "x"), b"", Duration::from_secs(20)).unwrap())
            .contains("vault is sealed")
    );
    // The good helper: the node starts and records the id of the helper's key.
    let mut child = serve(&good, "vault-path")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            log.push_str(&line);
            log.push('\n');
            if line.contains("listening") {
                let _ = tx.send(Ok(log.clone()));
            }
        }
        let _ = tx.send(Err(log));
    });
    let result = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    match result {
        Ok(Ok(log)) => assert!(!log.contains(&key), "the key was logged"),
        other => panic!("the node did not start with key_command: {other:?}"),
    }
    // The key the helper printed is the data's key: the same key from a file opens it.
    let file = tmp.path().join("same.key");
    std::fs::write(&file, &key).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let wrong = tmp.path().join("wrong.key");
    new_key(&wrong);
    let ok = run(
        &rill_bin(),
        &[
            "key",
            "rotate",
            "--data-dir",
            data.to_str().unwrap(),
            "--key-file",
            file.to_str().unwrap(),
            "--new-key-file",
            wrong.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok.status.success(), "{}", text(&ok));
}
