//! ARM builds under emulation: the cross-built `rill` (scripts/cross-build.sh, profile
//! `ci-cross`) runs under qemu-user; real clients produce and consume over Kafka (every codec, so
//! the cross-compiled zstd/lz4 C code runs too) and publish over MQTT with QoS 1; the node is
//! stopped, started again on the same data, and everything is read back. On aarch64 both ciphers
//! run (AES-256-GCM, and ChaCha20-Poly1305: what boards without AES instructions use); the segment
//! headers on disk show which one sealed the data.
//!
//! The binary is the edge feature set (scripts/cross-build.sh builds `--no-default-features
//! --features edge` for the `ci-cross` and `edge` profiles): what boards run. The test checks
//! that it is: the admin port answers the console's page with 404 ("no web console"), and a
//! `--cluster-listen` flag is refused ("this build has no cluster support").
//!
//! Binaries: `$RILL_ARM_BIN` / `$RILL_ARMV7_BIN`, else `<target>/<triple>/ci-cross/rill`.
//! qemu: `qemu-aarch64-static` / `qemu-arm-static` (Debian `qemu-user-static`) or the
//! non-static names. Without them the tests skip with a note; with `CI=true` they fail for the
//! targets in `$RILL_ARM_TARGETS` (space separated; scripts/test.sh sets it to the targets it
//! cross-built, aarch64 by default) or, when it is unset, for every target.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use rill_tests::{http_get, random_ms, repo_root, run_with_timeout, Launch, Node};

/// Records per codec, and MQTT messages, per run.
const COUNT: usize = 20;
/// Codecs the script produces with (rilltest.CODECS).
const CODECS: usize = 5;

/// An emulated target.
struct Arch {
    triple: &'static str,
    /// Variable naming the binary instead of the cross script's output.
    bin_var: &'static str,
    qemu: [&'static str; 2],
    /// Where Debian's cross libc lives (qemu's `-L`).
    sysroot: &'static str,
    /// ELF `e_machine` of the target.
    elf_machine: u16,
}

const AARCH64: Arch = Arch {
    triple: "aarch64-unknown-linux-gnu",
    bin_var: "RILL_ARM_BIN",
    qemu: ["qemu-aarch64-static", "qemu-aarch64"],
    sysroot: "/usr/aarch64-linux-gnu",
    elf_machine: 183,
};

const ARMV7: Arch = Arch {
    triple: "armv7-unknown-linux-gnueabihf",
    bin_var: "RILL_ARMV7_BIN",
    qemu: ["qemu-arm-static", "qemu-arm"],
    sysroot: "/usr/arm-linux-gnueabihf",
    elf_machine: 40,
};

/// Whether a missing binary or qemu for `arch` fails the test instead of skipping it.
fn required(arch: &Arch) -> bool {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    in_ci
        && std::env::var("RILL_ARM_TARGETS")
            .map(|list| list.split_whitespace().any(|t| t == arch.triple))
            .unwrap_or(true)
}

/// The target directory this test was built into (`<target>/debug/deps/arm_smoke-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo_root().join("target"))
}

fn find_in_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// The ELF machine of `bin` (bytes 18..20, little endian), if it is a little-endian ELF file.
fn elf_machine(bin: &Path) -> Option<u16> {
    use std::io::Read;
    let mut head = [0u8; 20];
    std::fs::File::open(bin).ok()?.read_exact(&mut head).ok()?;
    (head[..4] == *b"\x7fELF" && head[5] == 1).then(|| u16::from_le_bytes([head[18], head[19]]))
}

/// How to run `arch`'s binary under qemu, or `None` (skip) when the binary or qemu is missing.
/// A missing piece fails the test when it is [`required`].
fn emulated(arch: &Arch) -> Option<Launch> {
    let bin = std::env::var_os(arch.bin_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join(arch.triple).join("ci-cross/rill"));
    let qemu = find_in_path(&arch.qemu);
    let missing = match (&qemu, bin.is_file()) {
        (_, false) => Some(format!(
            "{} does not exist (build it with scripts/cross-build.sh --profile ci-cross --target {}, or set {})",
            bin.display(),
            arch.triple,
            arch.bin_var
        )),
        (None, _) => Some(format!(
            "{} not found (Debian package qemu-user-static)",
            arch.qemu.join(" / ")
        )),
        _ => None,
    };
    if let Some(why) = missing {
        assert!(!required(arch), "CI=true: {why}");
        eprintln!("note: skipping the {} smoke test: {why}", arch.triple);
        return None;
    }
    assert_eq!(
        elf_machine(&bin),
        Some(arch.elf_machine),
        "{} is not an ELF binary for {}",
        bin.display(),
        arch.triple
    );
    let qemu = qemu?;
    Some(Launch {
        program: Some(qemu),
        args: vec![OsString::from("-L"), arch.sysroot.into(), bin.into()],
        env: Vec::new(),
    })
}

/// Cipher ids in the segment headers (byte 6 of every `.log` file) under `data_dir`.
fn segment_ciphers(data_dir: &Path) -> Vec<(PathBuf, u8)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(data_dir)
        .expect("read data dir")
        .flatten()
    {
        if !dir.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(dir.path())
            .expect("read partition dir")
            .flatten()
        {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "log") {
                let head = std::fs::read(&p).expect("read segment");
                assert_eq!(&head[..5], b"RILLL", "{} has no log header", p.display());
                out.push((p, head[6]));
            }
        }
    }
    out
}

/// `kafka=N mqtt=M` from the script's output.
fn counts(out: &str) -> (usize, usize) {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("kafka="))
        .unwrap_or_else(|| panic!("no `kafka=N mqtt=M` line in:\n{out}"));
    let mut nums = line
        .split_whitespace()
        .filter_map(|t| t.split_once('=').and_then(|(_, v)| v.parse().ok()));
    match (nums.next(), nums.next()) {
        (Some(k), Some(m)) => (k, m),
        _ => panic!("bad counts line {line:?}"),
    }
}

/// Start the emulated node with `encryption`, write over Kafka and MQTT, stop it, start it again
/// and read everything back; every segment must carry `cipher_id`.
fn smoke(arch: &Arch, encryption: &str, cipher_id: u8) {
    let Some(launch) = emulated(arch) else {
        return;
    };
    let conf_dir = tempfile::tempdir().expect("tempdir");
    let conf = conf_dir.path().join("node.toml");
    std::fs::write(&conf, format!("[storage]\nencryption = \"{encryption}\"\n")).expect("config");
    let conf = conf.to_str().expect("utf-8 path").to_string();
    let mut node = Node::start_launched(launch, &["--config", &conf]);
    let tag = format!("{}-{encryption}-{}", arch.triple, random_ms(1_000_000));
    let topic = format!("arm-{tag}");
    let count = COUNT.to_string();
    let mqtt = node.mqtt_addr();
    let common: [&str; 6] = ["--topic", &topic, "--tag", &tag, "--count", &count];
    let mut write: Vec<&str> = vec!["write", "--mqtt", &mqtt];
    write.extend_from_slice(&common);
    let written = counts(&node.python("arm_smoke.py", &write));
    assert_eq!(
        written,
        (COUNT * CODECS, COUNT),
        "records written and read back"
    );

    // The edge feature set: no web console.
    let (status, body) = http_get(node.http_addr(), "/").expect("GET / on the admin port");
    assert_eq!(status, 404, "GET / of an edge build: {body}");
    assert!(
        body.contains("this build has no web console"),
        "GET / of an edge build: {body}"
    );

    let status = node.terminate();
    assert!(status.success(), "node exited with {status} after SIGTERM");
    node.restart();
    let mut verify: Vec<&str> = vec!["verify"];
    verify.extend_from_slice(&common);
    let read = counts(&node.python("arm_smoke.py", &verify));
    assert_eq!(read, written, "records read back after the restart");

    let ciphers = segment_ciphers(&node.data_dir());
    assert!(
        !ciphers.is_empty(),
        "no segments under {}",
        node.data_dir().display()
    );
    for (path, id) in &ciphers {
        assert_eq!(*id, cipher_id, "cipher id of {}", path.display());
    }
    assert!(
        node.log().contains("encrypted=true"),
        "the node did not open encrypted storage:\n{}",
        node.log()
    );
}

/// The edge feature set has no cluster mode: `--cluster-listen`, a `[cluster]` section and a
/// data directory `rill cluster format` wrote are each refused before anything is opened, with
/// the reason.
#[test]
fn aarch64_edge_build_refuses_cluster_mode() {
    let Some(launch) = emulated(&AARCH64) else {
        return;
    };
    let run = |args: &[&std::ffi::OsStr]| {
        let mut cmd = std::process::Command::new(launch.program.clone().expect("qemu"));
        cmd.args(&launch.args).args(args);
        let out = run_with_timeout(cmd, b"", std::time::Duration::from_secs(60)).expect("rill");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let refused = |what: &str, (ok, stderr): (bool, String)| {
        assert!(!ok, "{what} succeeded on an edge build");
        assert!(
            stderr.contains("this build has no cluster support"),
            "{what} on an edge build: {stderr}"
        );
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let os = std::ffi::OsStr::new;
    refused(
        "serve --cluster-listen",
        run(&[
            os("serve"),
            os("--data-dir"),
            data.as_os_str(),
            os("--cluster-listen"),
            os("127.0.0.1:0"),
        ]),
    );
    let conf = dir.path().join("node.toml");
    std::fs::write(
        &conf,
        "[cluster]\nsecret_file = \"/etc/rill/cluster.secret\"\n",
    )
    .unwrap();
    let validate = run(&[os("config"), os("validate"), conf.as_os_str()]);
    assert!(
        validate.1.contains("node.toml:1:"),
        "config validate names the line: {}",
        validate.1
    );
    refused("config validate of a [cluster] section", validate);
    let formatted = run(&[
        os("cluster"),
        os("format"),
        os("--data-dir"),
        data.as_os_str(),
        os("--node-id"),
        os("1"),
        os("--cluster-id"),
        os("edge-refusal-test"),
        os("--voters"),
        os("1@127.0.0.1:19093"),
    ]);
    assert!(formatted.0, "cluster format: {}", formatted.1);
    refused(
        "serve on a formatted data directory",
        run(&[
            os("serve"),
            os("--data-dir"),
            data.as_os_str(),
            os("--node-id"),
            os("1"),
        ]),
    );
}

#[test]
fn aarch64_aes_256_gcm() {
    smoke(&AARCH64, "aes-256-gcm", 1);
}

#[test]
fn aarch64_chacha20_poly1305() {
    smoke(&AARCH64, "chacha20-poly1305", 2);
}

/// armv7 has no AES instructions the node uses: `auto` picks ChaCha20-Poly1305.
#[test]
fn armv7_auto_is_chacha20_poly1305() {
    smoke(&ARMV7, "auto", 2);
}
