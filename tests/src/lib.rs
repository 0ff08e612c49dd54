//! Harness for black-box tests: starting real `rill` nodes on free loopback ports, running the
//! `rill` CLI, and running the real-client Python scripts of `tests/py/` in the repo's venv.
//!
//! A node's readiness contract: it logs (to stderr) an INFO line whose message is `listening` with
//! the fields `kafka=ADDR http=ADDR`, giving the addresses it actually bound.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub mod cluster;

/// How long a node may take to log its `listening` line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one Python script may run.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);

/// The repository root (the parent of the `tests/` crate).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The `rill` binary under test: `$RILL_BIN`, or `rill` beside the test executable's directory
/// (`target/debug/deps/../rill`).
pub fn rill_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RILL_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("test executable has a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("rill{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build --workspace --bins` (scripts/test.sh does), or set RILL_BIN",
        bin.display()
    );
    bin
}

/// The `rill` binary built with the `failpoints` feature (`rill-failpoints` beside [`rill_bin`];
/// scripts/test.sh builds it: `cargo build -p rill-gateway --bin rill --features failpoints`,
/// then copies `target/debug/rill` to `target/debug/rill-failpoints`), or `$RILL_FAILPOINTS_BIN`.
pub fn rill_failpoints_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RILL_FAILPOINTS_BIN") {
        return PathBuf::from(p);
    }
    let bin = rill_bin().with_file_name(format!("rill-failpoints{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} does not exist: scripts/test.sh builds it (cargo build -p rill-gateway --bin rill --features failpoints, copied to rill-failpoints)",
        bin.display()
    );
    bin
}

/// The `rill` binary built with the `otlp` feature (`rill-otlp` beside [`rill_bin`]; scripts/test.sh
/// builds it: `cargo build -p rill-gateway --bin rill --features otlp`, copied to `rill-otlp`),
/// or `$RILL_OTLP_BIN`; `None` when it is missing, which fails the caller with `CI=true`.
pub fn rill_otlp_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RILL_OTLP_BIN") {
        return Some(PathBuf::from(p));
    }
    let bin = rill_bin().with_file_name(format!("rill-otlp{}", std::env::consts::EXE_SUFFIX));
    if bin.exists() {
        return Some(bin);
    }
    let why = format!(
        "{} does not exist: scripts/test.sh builds it (cargo build -p rill-gateway --bin rill --features otlp, copied to rill-otlp)",
        bin.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("SKIPPED (not in CI): {why}");
    None
}

/// Removes ANSI colour escapes (in case the node colours its log).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The value of `name=VALUE` in a log line (quotes removed).
fn field(line: &str, name: &str) -> Option<String> {
    let key = format!("{name}=");
    line.split_whitespace()
        .find_map(|tok| tok.strip_prefix(key.as_str()))
        .map(|v| v.trim_matches('"').trim_end_matches(',').to_string())
}

/// Parses the readiness line: `(kafka, http)` when `line` is the node's `listening` INFO line.
pub fn parse_listening(line: &str) -> Option<(String, String)> {
    let line = strip_ansi(line);
    if !line.contains("INFO")
        || !line
            .split_whitespace()
            .any(|t| t == "listening" || t == "listening:")
    {
        return None;
    }
    Some((field(&line, "kafka")?, field(&line, "http")?))
}

/// How a node's process is started: by default `rill_bin()` directly; an emulator runs another
/// architecture's binary (`program` = qemu, `args` = its flags and the binary), and `env` adds
/// variables (`NOTIFY_SOCKET`, ...).
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// The program to run instead of [`rill_bin`].
    pub program: Option<PathBuf>,
    /// Arguments before `serve`.
    pub args: Vec<OsString>,
    /// Extra environment variables of the node.
    pub env: Vec<(OsString, OsString)>,
}

/// A running (or stopped) `rill serve` process with its own data directory and key file.
pub struct Node {
    child: Option<Child>,
    dir: tempfile::TempDir,
    launch: Launch,
    extra_args: Vec<String>,
    kafka: String,
    http: String,
    log: Arc<Mutex<String>>,
}

impl Node {
    /// Starts a node with the default flags and waits until it listens.
    pub fn start() -> Node {
        Node::start_with(&[])
    }

    /// Starts a node with extra `serve` flags and waits until it listens.
    pub fn start_with(extra_args: &[&str]) -> Node {
        Node::start_launched(Launch::default(), extra_args)
    }

    /// Starts a node through `launch` with extra `serve` flags and waits until it listens.
    pub fn start_launched(launch: Launch, extra_args: &[&str]) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("rill-node-")
            .tempdir()
            .expect("tempdir");
        let mut node = Node {
            child: None,
            dir,
            launch,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            kafka: String::new(),
            http: String::new(),
            log: Arc::new(Mutex::new(String::new())),
        };
        node.spawn();
        node
    }

    /// The data directory (`<tempdir>/data`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The master key file (`<tempdir>/k.key`, outside the data directory).
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("k.key")
    }

    /// A scratch directory belonging to this node's test (removed with the node).
    pub fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("scratch");
        std::fs::create_dir_all(&p).expect("scratch dir");
        p
    }

    /// The Kafka listener address, `HOST:PORT`.
    pub fn kafka_addr(&self) -> &str {
        &self.kafka
    }

    /// The admin HTTP listener address, `HOST:PORT`.
    pub fn http_addr(&self) -> &str {
        &self.http
    }

    /// The MQTT listener address, `HOST:PORT`, from the node's latest `listening` line (the
    /// port changes across restarts when it was 0).
    pub fn mqtt_addr(&self) -> String {
        self.listening_field("mqtt")
    }

    /// Field `name` (`mqtt`, `mqtt_ws`, ...) of the node's latest `listening` line.
    pub fn listening_field(&self, name: &str) -> String {
        let log = self.log();
        let key = format!("{name}=");
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("listening") && l.contains(&key))
            .unwrap_or_else(|| panic!("no `listening ... {key}` line in the node log:\n{log}"));
        field(&strip_ansi(line), name).unwrap_or_else(|| panic!("no {key} field in {line}"))
    }

    /// The `addr=` of the node's first log line containing `message` (listeners that log
    /// their own line, e.g. `MQTT TLS listener`).
    pub fn logged_addr(&self, message: &str) -> String {
        let log = self.log();
        log.lines()
            .find(|l| l.contains(message))
            .and_then(|l| field(&strip_ansi(l), "addr"))
            .unwrap_or_else(|| panic!("no `{message} addr=` line in the node log:\n{log}"))
    }

    /// Everything the node (all its runs) logged so far.
    /// Waits (up to `within`) until a line of the node's log satisfies `matches`; the log.
    /// Log lines of an event (a refused handshake) may be written just after the client saw it.
    pub fn wait_log_line(
        &self,
        within: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| matches(l)) {
                return Some(line.to_string());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The process id of the running node.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        let data = self.data_dir();
        let key = self.key_file();
        let program = self.launch.program.clone().unwrap_or_else(rill_bin);
        let mut cmd = Command::new(&program);
        cmd.args(&self.launch.args)
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--kafka-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--mqtt-listen",
                "127.0.0.1:0",
            ])
            .arg("--key-file")
            .arg(&key)
            .args(&self.extra_args)
            .env("NO_COLOR", "1")
            .env_remove("RILL_MASTER_KEY")
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if std::env::var_os("RUST_LOG").is_none()
            && !self.launch.env.iter().any(|(k, _)| k == "RUST_LOG")
        {
            cmd.env("RUST_LOG", "info");
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let (tx, rx) = mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            let log = Arc::clone(&self.log);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut sent = false;
                let mut raw = Vec::new();
                loop {
                    raw.clear();
                    match reader.read_until(b'\n', &mut raw) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let line = String::from_utf8_lossy(&raw).into_owned();
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                    }
                    if !sent {
                        if let Some(addrs) = parse_listening(&line) {
                            sent = tx.send(addrs).is_ok();
                        }
                    }
                }
            });
        }
        if let Some(mut stdout) = child.stdout.take() {
            let log = Arc::clone(&self.log);
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = stdout.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        self.child = Some(child);
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok((kafka, http)) => {
                self.kafka = kafka;
                self.http = http;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.kill();
                panic!("node did not log `listening kafka=.. http=..` within {READY_TIMEOUT:?}; log:\n{}", self.log());
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.child.as_mut().and_then(|c| c.wait().ok());
                self.child = None;
                panic!(
                    "node exited before listening ({status:?}); log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// SIGKILLs the node and reaps it (no-op when not running).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERMs the node and waits for it to exit (SIGKILL after [`TERMINATE_TIMEOUT`]).
    /// Returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("node is not running");
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(
            matches!(sent, Ok(s) if s.success()),
            "kill -TERM {pid} failed: {sent:?}"
        );
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            (child, status)
        });
        if rx.recv_timeout(TERMINATE_TIMEOUT).is_err() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            let _ = waiter.join();
            panic!(
                "node did not exit within {TERMINATE_TIMEOUT:?} of SIGTERM; log:\n{}",
                self.log()
            );
        }
        let (_, status) = waiter.join().expect("waiter thread");
        status.expect("wait for node")
    }

    /// Starts later runs ([`Node::restart`]) through `launch` instead (another binary, other
    /// environment variables).
    pub fn set_launch(&mut self, launch: Launch) {
        self.launch = launch;
    }

    /// Waits up to `timeout` for the node to exit by itself and returns its status (`None` if it
    /// still runs; it is left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the node again on the same data directory and key file (new ports).
    pub fn restart(&mut self) {
        self.kill();
        if let Ok(mut l) = self.log.lock() {
            l.push_str("----- restart -----\n");
        }
        self.spawn();
    }

    /// Runs the `rill` CLI against this node (`-b` set), with `stdin` as standard input.
    pub fn cli(&self, args: &[&str], stdin: &[u8]) -> Output {
        rill_cli(self.kafka_addr(), args, stdin)
    }

    /// Like [`Node::cli`], but fails the test (with the node's log) unless it exits 0; returns
    /// stdout.
    pub fn cli_ok(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.cli(args, stdin);
        assert!(
            out.status.success(),
            "rill {} failed ({}):\nstdout:\n{}\nstderr:\n{}\nnode log:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `tests/py/<script>` with `--bootstrap <kafka addr>` and `args`; fails the test with
    /// the script's output and the node's log unless it exits 0. Returns stdout.
    pub fn python(&self, script: &str, args: &[&str]) -> String {
        let mut full = vec!["--bootstrap", self.kafka_addr()];
        full.extend_from_slice(args);
        match run_python(script, &full) {
            Ok(out) => out,
            Err(report) => panic!("{report}\nnode log:\n{}", self.log()),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "===== rill node log ({}) =====\n{}",
                self.dir.path().display(),
                self.log()
            );
        }
    }
}

/// Runs the `rill` CLI with `-b brokers` and `stdin`, with a timeout.
pub fn rill_cli(brokers: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(rill_bin());
    cmd.args(args)
        .env("RILL_BROKERS", brokers)
        .env("NO_COLOR", "1");
    run_with_timeout(cmd, stdin, SCRIPT_TIMEOUT)
        .unwrap_or_else(|e| panic!("rill {}: {e}", args.join(" ")))
}

/// Runs `cmd` feeding `stdin`, collecting its output; kills it after `timeout`.
pub fn run_with_timeout(
    mut cmd: Command,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Output, String> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let pid = child.id().to_string();
    let mut input = child.stdin.take();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        if let Some(i) = input.as_mut() {
            use std::io::Write;
            let _ = i.write_all(&data);
        }
        drop(input);
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let result = match rx.recv_timeout(timeout) {
        Ok(out) => out.map_err(|e| format!("waiting for {cmd:?}: {e}")),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            let partial = rx.recv().ok().and_then(Result::ok);
            Err(format!(
                "{cmd:?} did not finish within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                partial
                    .as_ref()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default(),
                partial
                    .as_ref()
                    .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default()
            ))
        }
    };
    let _ = feeder.join();
    result
}

/// The venv's Python: `$RILL_TEST_PYTHON`, else `<repo>/.venv/bin/python`.
pub fn venv_python() -> PathBuf {
    if let Some(p) = std::env::var_os("RILL_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = repo_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} does not exist: run scripts/test.sh once (it creates the venv from tests/requirements.txt)",
        p.display()
    );
    p
}

/// Runs `tests/py/<script> args...` with the venv's Python. `Ok(stdout)` when it exits 0,
/// otherwise `Err` with a report holding its stdout and stderr.
pub fn run_python(script: &str, args: &[&str]) -> Result<String, String> {
    let path = repo_root().join("tests/py").join(script);
    let mut cmd = Command::new(venv_python());
    cmd.arg(&path)
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run_with_timeout(cmd, b"", SCRIPT_TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "python {script} {} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The kcat binary (`kcat` or its old name `kafkacat`) when installed.
pub fn kcat() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["kcat", "kafkacat"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Produces `records` (one per line, acks=all) to `topic` at `addr` with `kcat`, consumes the
/// topic from the beginning to its end and asserts the same records came back, in order
/// (`log` names the node's log for failure messages).
pub fn kcat_round_trip(
    kcat: &Path,
    addr: &str,
    topic: &str,
    records: &[String],
    log: impl Fn() -> String,
) {
    let mut produce = Command::new(kcat);
    produce.args(["-b", addr, "-t", topic, "-P", "-X", "acks=all"]);
    let input = records.join("\n") + "\n";
    let out = run_with_timeout(produce, input.as_bytes(), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("kcat produce: {e}\nnode log:\n{}", log()));
    assert!(
        out.status.success(),
        "kcat produce failed: {}\nnode log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    let mut consume = Command::new(kcat);
    consume.args(["-b", addr, "-t", topic, "-C", "-o", "beginning", "-e", "-q"]);
    let out = run_with_timeout(consume, b"", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("kcat consume: {e}\nnode log:\n{}", log()));
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(got, records, "consumed records\nnode log:\n{}", log());
}

/// Whether kcat is installed; prints a note when it is not (kcat tests then skip).
pub fn has_kcat() -> bool {
    let found = kcat().is_some();
    if !found {
        eprintln!("note: kcat is not installed; skipping this kcat test");
    }
    found
}

/// A random lowercase hex marker of `len` characters, unique per call.
pub fn marker(len: usize) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    while out.len() < len {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(out.len());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(len);
    out
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                if let Ok(bytes) = std::fs::read(&p) {
                    if !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle) {
                        hits.push(p);
                    }
                }
            }
        }
    }
    hits
}

/// Total size and count of the files under `dir`.
pub fn dir_usage(dir: &Path) -> (u64, usize) {
    let mut total = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(ft) if ft.is_dir() => stack.push(e.path()),
                Ok(ft) if ft.is_file() => {
                    total.0 += e.metadata().map(|m| m.len()).unwrap_or(0);
                    total.1 += 1;
                }
                _ => {}
            }
        }
    }
    total
}

/// The current time in Unix ms as text, for `bridge_produce.py --base-ts`: records stamped in the
/// past would be removed by time retention as soon as a restart closes their segment.
pub fn recent_ts() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string()
}

/// A free loopback port (for a node that must come back on the same port after a restart, like
/// a bridge's central target).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A pseudo-random number below `max` from the clock (enough to vary kill points).
pub fn random_ms(max: u64) -> u64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(7);
    (n.wrapping_mul(6364136223846793005) >> 20) % max.max(1)
}

/// `GET path` on `addr` (`HOST:PORT`) over plain HTTP/1.0: `(status code, body)`. For the
/// node's admin listener and a test's Prometheus server.
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no header end in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path}: bad status line {head:?}"))?;
    Ok((status, body.to_string()))
}

/// A central node (`--node-name central`) with Kafka on `127.0.0.1:port`, the bridge's target.
pub fn start_central(port: u16) -> Node {
    let listen = format!("127.0.0.1:{port}");
    Node::start_with(&["--node-name", "central", "--kafka-listen", &listen])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_line() {
        let plain = "2026-11-25T21:00:00.000Z  INFO rill_gateway::serve: listening kafka=127.0.0.1:40001 http=127.0.0.1:40002 mqtt=127.0.0.1:40003";
        assert_eq!(
            parse_listening(plain),
            Some(("127.0.0.1:40001".into(), "127.0.0.1:40002".into()))
        );
        let coloured = "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[2mrill\u{1b}[0m: listening \u{1b}[3mkafka\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:1 \u{1b}[3mhttp\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:2";
        assert_eq!(
            parse_listening(coloured),
            Some(("127.0.0.1:1".into(), "127.0.0.1:2".into()))
        );
        let quoted = "INFO serve: listening kafka=\"127.0.0.1:1\" http=\"127.0.0.1:2\"";
        assert_eq!(
            parse_listening(quoted),
            Some(("127.0.0.1:1".into(), "127.0.0.1:2".into()))
        );
        assert_eq!(
            parse_listening("INFO serve: opened kafka=127.0.0.1:1 http=127.0.0.1:2"),
            None
        );
        assert_eq!(parse_listening("WARN listening kafka=1 http=2"), None);
    }

    #[test]
    fn finds_markers_in_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x"), b"....secret-123....").unwrap();
        std::fs::write(dir.path().join("y"), b"nothing").unwrap();
        assert_eq!(
            files_containing(dir.path(), b"secret-123"),
            vec![dir.path().join("a/b/x")]
        );
        assert!(files_containing(dir.path(), b"absent").is_empty());
        assert_eq!(dir_usage(dir.path()), (25, 2));
    }

    #[test]
    fn markers_are_unique_hex() {
        let (a, b) = (marker(24), marker(24));
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
