//! The Debian package for real, on this machine: `scripts/build-deb.sh` packages the `rill` under
//! test, `dpkg -i` installs it (its postinst creates user `rill`, /var/lib/rill 0750 and
//! /etc/rill/master.key 0600), `systemd-analyze verify` and `security --offline=true` check the
//! installed units, the edge unit's `ExecStart` (parsed from the installed unit file) runs as the
//! unit's `User=` with its `Environment=`, kcat produces and consumes through it, and `dpkg
//! --purge` must leave nothing behind (CI's machine is reused).
//!
//! Root only (dpkg). Not root: the test skips with a note; with `CI=true` it fails, and so does a
//! missing dpkg, setpriv, kcat or systemd-analyze.
//!
//! The only change to the unit's command line: loopback listeners on free ports are appended
//! (`--kafka-listen` etc. override the configuration, `rill serve --help`), so the test neither
//! binds 0.0.0.0 nor collides with a real node on 9092. A `rill` package already installed that
//! this test did not install makes it fail instead of replacing it; one left by an interrupted run
//! of this test (marker file below) is purged first.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use rill_tests::{
    free_port, kcat, kcat_round_trip, parse_listening, repo_root, rill_bin, run_with_timeout,
};

/// Exists while this test has the package installed.
const MARKER: &str = "/var/tmp/rill-deb-package-test.installed";
/// The installed edge unit.
const EDGE_UNIT: &str = "/lib/systemd/system/rill-edge.service";
/// The installed central unit.
const CENTRAL_UNIT: &str = "/lib/systemd/system/rill-central.service";
/// Highest acceptable `systemd-analyze security` exposure (docs record the measured value).
const MAX_EXPOSURE: f64 = 2.0;
/// Records produced and consumed through the installed node.
const RECORDS: usize = 50;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs `program args`, returning (success, stdout + stderr).
fn run(program: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let out = run_with_timeout(cmd, b"", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{program} {}: {e}", args.join(" ")));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let (ok, text) = run(program, args);
    assert!(ok, "{program} {} failed:\n{text}", args.join(" "));
    text
}

/// Whether dpkg has package `rill` installed (any state but not-installed / config-files).
fn package_installed() -> bool {
    let (ok, status) = run("dpkg-query", &["-W", "-f=${Status}", "rill"]);
    ok && status.contains(" installed")
}

fn getent(db: &str, name: &str) -> bool {
    run("getent", &[db, name]).0
}

/// A unit file's `[Service]` settings: key -> values in file order.
fn service_settings(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_service = false;
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.entry(k.trim().to_string())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    out
}

/// Purges the package (and the marker) when the test ends, also after a failed assertion.
struct Installed;

impl Installed {
    fn purge(&self) -> String {
        let text = run_ok("dpkg", &["--purge", "rill"]);
        let _ = std::fs::remove_file(MARKER);
        text
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if Path::new(MARKER).exists() {
            let (ok, text) = run("dpkg", &["--purge", "rill"]);
            if ok {
                let _ = std::fs::remove_file(MARKER);
            } else {
                eprintln!("cleanup: dpkg --purge rill failed:\n{text}");
            }
        }
    }
}

/// The node started from the unit's command line; killed if the test fails first.
struct Service {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Service {
    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mode(path: &str) -> (u32, u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.permissions().mode() & 0o7777, m.uid(), m.gid())
}

fn id_of(flag: &str, name: &str) -> u32 {
    run_ok("id", &[flag, name])
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("id {flag} {name}: {e}"))
}

/// Every file and directory under `dir` with an owner other than `uid`.
fn not_owned_by(dir: &Path, uid: u32) -> Vec<PathBuf> {
    let mut bad = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.uid() != uid {
                bad.push(p.clone());
            }
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    bad
}

#[test]
fn deb_installs_runs_the_unit_as_rill_and_purges_cleanly() {
    let root = run_ok("id", &["-u"]).trim() == "0";
    if !root {
        assert!(
            !in_ci(),
            "the .deb test needs root (dpkg -i); CI runs as root"
        );
        eprintln!("note: not root; skipping the .deb install test");
        return;
    }
    for tool in ["dpkg", "dpkg-deb", "setpriv", "systemd-analyze"] {
        if find_in_path(tool).is_none() {
            assert!(!in_ci(), "{tool} is missing (scripts/test.sh installs it)");
            eprintln!("note: {tool} is missing; skipping the .deb install test");
            return;
        }
    }
    let Some(kcat) = kcat() else {
        assert!(!in_ci(), "kcat is missing (scripts/test.sh installs it)");
        eprintln!("note: kcat is missing; skipping the .deb install test");
        return;
    };
    let kcat = kcat.to_string_lossy().into_owned();

    // A package from an interrupted run of this test is purged; anyone else's is left alone.
    if package_installed() {
        assert!(
            Path::new(MARKER).exists(),
            "a `rill` package this test did not install is on this machine; the test would \
             replace and purge it (dpkg --purge rill first, if that is intended)"
        );
        run_ok("dpkg", &["--purge", "rill"]);
    }
    let _ = std::fs::remove_file(MARKER);

    // 1. Build the package of the binary under test.
    let out = tempfile::tempdir().expect("tempdir");
    let script = repo_root().join("scripts/build-deb.sh");
    let built = run_ok(
        "bash",
        &[
            &script.to_string_lossy(),
            "--binary",
            &rill_bin().to_string_lossy(),
            "--out",
            &out.path().to_string_lossy(),
            "--fast",
        ],
    );
    eprintln!("{built}");
    let deb = std::fs::read_dir(out.path())
        .expect("read out dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| panic!("no .deb written:\n{built}"));
    let info = run_ok(
        "dpkg-deb",
        &["--field", &deb.to_string_lossy(), "Package", "Architecture"],
    );
    assert!(info.contains("Package: rill"), "{info}");

    // 2. Install it.
    std::fs::write(
        MARKER,
        b"scripts/build-deb.sh package installed by tests/tests/deb_package.rs\n",
    )
    .expect("write marker");
    let installed = Installed;
    let dpkg_out = run_ok("dpkg", &["-i", &deb.to_string_lossy()]);
    assert!(
        package_installed(),
        "dpkg -i did not install rill:\n{dpkg_out}"
    );

    // What postinst made, and what the package ships.
    assert!(
        getent("passwd", "rill") && getent("group", "rill"),
        "user/group rill"
    );
    let rill_uid = id_of("-u", "rill");
    let rill_gid = id_of("-g", "rill");
    assert_ne!(rill_uid, 0);
    assert_eq!(
        mode("/var/lib/rill"),
        (0o750, rill_uid, rill_gid),
        "/var/lib/rill"
    );
    assert_eq!(mode("/etc/rill"), (0o750, 0, rill_gid), "/etc/rill");
    assert_eq!(
        mode("/etc/rill/master.key"),
        (0o600, rill_uid, rill_gid),
        "/etc/rill/master.key"
    );
    let key = std::fs::read_to_string("/etc/rill/master.key").expect("read key");
    assert!(
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "master.key is not 64 hex characters: {} bytes",
        key.len()
    );
    for conf in ["/etc/rill/edge.toml", "/etc/rill/central.toml"] {
        assert_eq!(mode(conf), (0o640, 0, rill_gid), "{conf}");
    }
    assert_eq!(mode("/usr/bin/rill").0, 0o755);
    for (installed_unit, source) in [
        (EDGE_UNIT, "deploy/systemd/rill-edge.service"),
        (CENTRAL_UNIT, "deploy/systemd/rill-central.service"),
    ] {
        assert_eq!(
            std::fs::read_to_string(installed_unit).expect("installed unit"),
            std::fs::read_to_string(repo_root().join(source)).expect("unit in repo"),
            "{installed_unit} differs from {source}"
        );
    }
    let listed = run_ok("dpkg", &["-L", "rill"]);
    for path in [
        "/usr/bin/rill",
        EDGE_UNIT,
        CENTRAL_UNIT,
        "/etc/rill/edge.toml",
    ] {
        assert!(
            listed.lines().any(|l| l == path),
            "dpkg -L rill lacks {path}"
        );
    }
    // A reinstall keeps the key (postinst creates it only if absent).
    run_ok("dpkg", &["-i", &deb.to_string_lossy()]);
    assert_eq!(
        std::fs::read_to_string("/etc/rill/master.key").expect("key"),
        key,
        "reinstall replaced the master key"
    );

    // 3. The installed units, checked by systemd's own tools (with /usr/bin/rill present).
    let verify = run("systemd-analyze", &["verify", EDGE_UNIT, CENTRAL_UNIT]);
    assert!(verify.0, "systemd-analyze verify:\n{}", verify.1);
    for unit in [EDGE_UNIT, CENTRAL_UNIT] {
        let text = run_ok("systemd-analyze", &["security", "--offline=true", unit]);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
        eprintln!("systemd-analyze security --offline=true {unit}: {score}");
        assert!(
            score <= MAX_EXPOSURE,
            "{unit} exposure {score} > {MAX_EXPOSURE}"
        );
    }

    // 4. The edge unit's ExecStart as its User=, with its Environment= (systemd's cwd is /).
    let unit = std::fs::read_to_string(EDGE_UNIT).expect("edge unit");
    let settings = service_settings(&unit);
    let exec = settings
        .get("ExecStart")
        .and_then(|v| v.last())
        .expect("ExecStart in the edge unit");
    assert!(
        !exec.starts_with(['-', '@', '+', '!', ':']) && !exec.contains(['"', '\'', '$', '%']),
        "ExecStart uses syntax this test does not parse: {exec}"
    );
    let argv: Vec<&str> = exec.split_whitespace().collect();
    let user = settings
        .get("User")
        .and_then(|v| v.last())
        .expect("User= in the edge unit");
    assert_eq!(user, "rill");
    let kafka_port = free_port();
    let kafka_addr = format!("127.0.0.1:{kafka_port}");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
        .args(&argv)
        .args([
            "--kafka-listen",
            &kafka_addr,
            "--advertised-kafka",
            &kafka_addr,
        ])
        .args([
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("NO_COLOR", "1")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for env in settings.get("Environment").into_iter().flatten() {
        for assignment in env.split_whitespace() {
            if let Some((k, v)) = assignment.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    let mut child = cmd.spawn().expect("start the unit's ExecStart");
    let stderr = child.stderr.take().expect("stderr");
    let service = Service {
        child,
        log: Arc::new(Mutex::new(String::new())),
    };
    let (tx, rx) = mpsc::channel();
    let log = Arc::clone(&service.log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if parse_listening(&line).is_some() {
                let _ = tx.send(());
            }
            if let Ok(mut l) = log.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
    rx.recv_timeout(rill_tests::READY_TIMEOUT)
        .unwrap_or_else(|_| panic!("the unit's ExecStart did not listen:\n{}", service.log()));
    let pid = service.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line");
    assert!(
        uids.split_whitespace().all(|u| u == rill_uid.to_string()),
        "the node does not run as rill: Uid:{uids}"
    );

    // 5. Produce and consume with a real client.
    let topic = "deb-smoke";
    let records: Vec<String> = (0..RECORDS).map(|i| format!("deb-record-{i}")).collect();
    kcat_round_trip(Path::new(&kcat), &kafka_addr, topic, &records, || {
        service.log()
    });
    let stray = not_owned_by(Path::new("/var/lib/rill"), rill_uid);
    assert!(
        stray.is_empty(),
        "files in /var/lib/rill not owned by rill: {stray:?}"
    );
    assert!(
        std::fs::read_dir("/var/lib/rill")
            .expect("data dir")
            .count()
            > 0,
        "the node wrote nothing into /var/lib/rill"
    );

    // 6. Graceful stop (SIGTERM, as systemd's stop).
    let mut service = service;
    run_ok("kill", &["-TERM", &pid.to_string()]);
    let mut exited = None;
    for _ in 0..300 {
        if let Some(s) = service.child.try_wait().expect("try_wait") {
            exited = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let exited = exited.unwrap_or_else(|| panic!("no exit after SIGTERM:\n{}", service.log()));
    assert!(exited.success(), "exit {exited}:\n{}", service.log());
    drop(service);

    // 7. Purge: nothing of the package, its user or its data is left.
    let purged = installed.purge();
    assert!(
        !package_installed(),
        "still installed after purge:\n{purged}"
    );
    for path in [
        "/usr/bin/rill",
        EDGE_UNIT,
        CENTRAL_UNIT,
        "/etc/rill",
        "/var/lib/rill",
        "/usr/share/doc/rill",
    ] {
        assert!(
            !Path::new(path).exists(),
            "{path} is left after dpkg --purge"
        );
    }
    assert!(!getent("passwd", "rill"), "user rill is left after purge");
    assert!(!getent("group", "rill"), "group rill is left after purge");
    let (ok, status) = run("dpkg-query", &["-W", "-f=${Status}", "rill"]);
    assert!(
        !ok || status.contains("not-installed"),
        "dpkg still knows rill after purge: {status}"
    );
    drop(installed);
}
