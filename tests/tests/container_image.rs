//! The container image (deploy/Containerfile, `FROM scratch`): `scripts/build-container.sh`
//! builds it with buildah (`--isolation chroot --storage-driver vfs`) from the static musl
//! binary and writes an OCI archive; this test reads that archive as a registry or runtime would
//! (index → manifest → config and layer, each checked against its digest) and checks the config
//! (numeric non-root user, the `/var/lib/rill` volume, entrypoint and command) and the one layer
//! (exactly the binary, byte for byte, and the volume directory owned by that user). The binary
//! taken out of the layer is then started as a node (it is static, so it runs here without the
//! image) and kcat produces and consumes through it. The image itself is not run: no container
//! runtime is installed here (deploy/README.md).
//!
//! Binary: `$RILL_MUSL_BIN`, else `<target>/x86_64-unknown-linux-musl/{debug,ci-cross,edge}/rill`
//! (scripts/cross-build.sh --target x86_64-unknown-linux-musl; scripts/test.sh builds the `dev`
//! profile, the cheapest build, to stay within CI's time budget).
//! Without the binary, buildah or kcat the test skips with a note; with `CI=true` it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rill_tests::{kcat, kcat_round_trip, repo_root, run_with_timeout, Launch, Node};

/// The image's user and group (deploy/Containerfile `USER`).
const UID: &str = "10001";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips (returns false) or, with CI=true, fails.
fn require(found: bool, what: &str) -> bool {
    if !found {
        assert!(
            !in_ci(),
            "{what} is missing (scripts/test.sh provides it in CI)"
        );
        eprintln!("note: {what} is missing; skipping the container image test");
    }
    found
}

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo_root().join("target"))
}

fn musl_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RILL_MUSL_BIN") {
        return Some(PathBuf::from(p));
    }
    ["debug", "ci-cross", "edge"]
        .iter()
        .map(|p| {
            target_dir()
                .join("x86_64-unknown-linux-musl")
                .join(p)
                .join("rill")
        })
        .find(|p| p.is_file())
}

fn in_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(name).is_file()))
}

fn run_ok(program: &str, args: &[&str]) -> Vec<u8> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let out = run_with_timeout(cmd, b"", Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{program} {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{program} {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn sha256_hex(path: &Path) -> String {
    let out = run_ok("sha256sum", &[&path.to_string_lossy()]);
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The blob of `digest` ("sha256:HEX") in the OCI layout at `dir`, checked against its digest.
fn blob(dir: &Path, digest: &str) -> PathBuf {
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("digest {digest}"));
    let p = dir.join("blobs/sha256").join(hex);
    assert_eq!(
        sha256_hex(&p),
        hex,
        "blob {digest} does not match its digest"
    );
    p
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn scratch_image_holds_the_static_binary_and_a_user_owned_volume() {
    let Some(bin) = musl_bin() else {
        require(
            false,
            "the static musl binary (scripts/cross-build.sh --target x86_64-unknown-linux-musl)",
        );
        return;
    };
    if !require(in_path("buildah"), "buildah") {
        return;
    }
    let Some(kcat) = kcat() else {
        require(false, "kcat");
        return;
    };

    // 1. Build the image into an OCI archive.
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("rill.oci.tar");
    let script = repo_root().join("scripts/build-container.sh");
    let built = run_ok(
        "bash",
        &[
            &script.to_string_lossy(),
            "--binary",
            &bin.to_string_lossy(),
            "--out",
            &archive.to_string_lossy(),
            "--tag",
            "localhost/rill:test",
        ],
    );
    eprintln!("{}", String::from_utf8_lossy(&built));
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).expect("mkdir");
    run_ok(
        "tar",
        &[
            "-xf",
            &archive.to_string_lossy(),
            "-C",
            &layout.to_string_lossy(),
        ],
    );

    // 2. index → manifest → config.
    let index = json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "one image in the archive: {index}");
    let manifest = json(&blob(
        &layout,
        manifests[0]["digest"].as_str().expect("digest"),
    ));
    let config = json(&blob(
        &layout,
        manifest["config"]["digest"].as_str().expect("config"),
    ));
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    let c = &config["config"];
    let user = c["User"].as_str().expect("User");
    let (u, g) = user.split_once(':').unwrap_or((user, user));
    assert!(
        u.parse::<u32>().is_ok_and(|u| u != 0) && g.parse::<u32>().is_ok_and(|g| g != 0),
        "USER must be numeric and not root: {user}"
    );
    assert_eq!(user, format!("{UID}:{UID}"));
    assert!(
        c["Volumes"]
            .as_object()
            .is_some_and(|v| v.contains_key("/var/lib/rill")),
        "VOLUME /var/lib/rill: {c}"
    );
    assert_eq!(strs(&c["Entrypoint"]), ["/usr/bin/rill"]);
    let cmd = strs(&c["Cmd"]);
    assert_eq!(
        cmd.first().map(String::as_str),
        Some("serve"),
        "CMD {cmd:?}"
    );
    assert!(
        cmd.windows(2).any(|w| w == ["--data-dir", "/var/lib/rill"]),
        "CMD keeps its data in the volume: {cmd:?}"
    );
    for port in ["9092/tcp", "1883/tcp", "9644/tcp"] {
        assert!(c["ExposedPorts"].get(port).is_some(), "EXPOSE {port}: {c}");
    }

    // 3. The one layer: its uncompressed digest is the config's diff_id, and it holds exactly
    //    the binary and the volume directory.
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(
        layers.len(),
        1,
        "FROM scratch + COPY: one layer: {manifest}"
    );
    let layer = blob(&layout, layers[0]["digest"].as_str().expect("layer digest"));
    let plain = dir.path().join("layer.tar");
    let media = layers[0]["mediaType"].as_str().unwrap_or_default();
    if media.ends_with("+gzip") {
        let out = run_ok("gzip", &["-dc", &layer.to_string_lossy()]);
        std::fs::write(&plain, out).expect("write layer");
    } else {
        std::fs::copy(&layer, &plain).expect("copy layer");
    }
    assert_eq!(
        strs(&config["rootfs"]["diff_ids"]),
        [format!("sha256:{}", sha256_hex(&plain))],
        "diff_id of the layer"
    );
    let listing = String::from_utf8(run_ok(
        "tar",
        &["--numeric-owner", "-tvf", &plain.to_string_lossy()],
    ))
    .expect("utf-8 listing");
    let entries: Vec<(String, String, String)> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 6, "tar listing line {l:?}");
            (
                f[0].to_string(),
                f[1].to_string(),
                f[f.len() - 1].to_string(),
            )
        })
        .collect();
    let names: Vec<&str> = entries.iter().map(|(_, _, n)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "usr/",
            "usr/bin/",
            "usr/bin/rill",
            "var/",
            "var/lib/",
            "var/lib/rill/"
        ],
        "layer contents:\n{listing}"
    );
    let entry = |name: &str| entries.iter().find(|e| e.2 == name).expect("entry");
    assert_eq!(entry("usr/bin/rill").0, "-rwxr-xr-x");
    assert_eq!(entry("usr/bin/rill").1, "0/0");
    assert!(entry("var/lib/rill/").0.starts_with('d'));
    assert_eq!(
        entry("var/lib/rill/").1,
        format!("{UID}/{UID}"),
        "volume owner"
    );
    assert_eq!(entry("var/lib/").1, "0/0");

    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("mkdir");
    run_ok(
        "tar",
        &[
            "-xf",
            &plain.to_string_lossy(),
            "-C",
            &rootfs.to_string_lossy(),
        ],
    );
    let extracted = rootfs.join("usr/bin/rill");
    assert!(
        std::fs::read(&extracted).expect("binary") == std::fs::read(&bin).expect("input"),
        "the layer's /usr/bin/rill differs from {}",
        bin.display()
    );
    let headers =
        String::from_utf8_lossy(&run_ok("readelf", &["-lW", &extracted.to_string_lossy()]))
            .into_owned();
    assert!(
        !headers.contains("INTERP"),
        "the image's binary has an ELF interpreter (not static):\n{headers}"
    );

    // 4. The image's binary serves: produce and consume with kcat.
    let mut node = Node::start_launched(
        Launch {
            program: Some(extracted.clone()),
            ..Launch::default()
        },
        &[],
    );
    let addr = node.kafka_addr().to_string();
    let records: Vec<String> = (0..20).map(|i| format!("image-record-{i}")).collect();
    kcat_round_trip(Path::new(&kcat), &addr, "image-smoke", &records, || {
        node.log()
    });
    let status = node.terminate();
    assert!(status.success(), "exit {status}\n{}", node.log());
}
