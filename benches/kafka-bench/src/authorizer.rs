//! The two nodes of `kafka-bench --authorizer-peer`: the same SASL/SCRAM listener and users on
//! both, `[kafka] authorizer = true` and [`ACL_COUNT`] PREFIXED ACLs on one of them only, so the
//! authorizer is the one difference.
//!
//! Users are added offline with `rill user add` (a node that requires SASL takes its first user
//! that way): each node is started once to make its data directory, stopped, given the users and
//! started again. The ACLs are added with `rill acl add` as the super user `admin` and counted
//! back with `rill acl list --json`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context};

use crate::node::RillNode;

/// The SASL mechanism of both nodes and of the benchmark's clients.
pub const MECHANISM: &str = "SCRAM-SHA-512";
/// The user the benchmark produces and consumes as (not a super user).
pub const BENCH_USER: &str = "bench";
/// The super user that adds the ACLs.
pub const ADMIN_USER: &str = "admin";
/// The password of both users (a local benchmark).
pub const PASSWORD: &str = "bench-s3cret";
/// ACLs on the authorizer node, all PREFIXED.
pub const ACL_COUNT: usize = 100;
/// The prefix of the benchmark's topics (`bench-<tag>-...`, `kafka-bench`'s `run_pass`).
pub const TOPIC_PREFIX: &str = "bench-";
/// The prefix of the benchmark's consumer groups.
pub const GROUP_PREFIX: &str = "rill-bench-";

/// The node configuration: SCRAM on the Kafka listener, and the authorizer when `authorizer`.
pub fn node_config(authorizer: bool) -> String {
    let mut s = format!("[kafka]\nsasl_mechanisms = [\"{MECHANISM}\"]\n");
    if authorizer {
        s.push_str(&format!(
            "authorizer = true\nsuper_users = [\"User:{ADMIN_USER}\"]\n"
        ));
    }
    s
}

fn run(bin: &Path, args: &[&str], stdin: &[u8]) -> anyhow::Result<Output> {
    let mut child = Command::new(bin)
        .args(args)
        .env("RILL_BENCH_PASSWORD", PASSWORD)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} {}", bin.display(), args.join(" ")))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin).context("writing stdin")?;
    }
    let out = child.wait_with_output().context("waiting for the CLI")?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}): {}",
            bin.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Start a node in `dir` with [`node_config`] and the users [`BENCH_USER`] and [`ADMIN_USER`].
pub fn start_node(bin: &Path, dir: &Path, authorizer: bool) -> anyhow::Result<RillNode> {
    std::fs::create_dir_all(dir)?;
    let conf = dir.join("node.toml");
    std::fs::write(&conf, node_config(authorizer))?;
    let conf = conf.display().to_string();
    let first = RillNode::start(bin, dir, &["--config", &conf])?;
    let data_dir = first.data_dir.display().to_string();
    drop(first);
    for user in [BENCH_USER, ADMIN_USER] {
        let args = [
            "user",
            "add",
            user,
            "--data-dir",
            &data_dir,
            "--password-stdin",
            "--mechanism",
            MECHANISM,
        ];
        run(bin, &args, format!("{PASSWORD}\n").as_bytes())?;
    }
    RillNode::start(bin, dir, &["--config", &conf])
}

/// `rill acl ...` against `node` as [`ADMIN_USER`].
fn acl(bin: &Path, node: &RillNode, args: &[&str]) -> anyhow::Result<Output> {
    let mut full = vec![
        "acl",
        "--brokers",
        &node.kafka,
        "--sasl-mechanism",
        MECHANISM,
        "--sasl-username",
        ADMIN_USER,
        "--sasl-password-env",
        "RILL_BENCH_PASSWORD",
    ];
    full.extend_from_slice(args);
    run(bin, &full, b"")
}

/// Add [`ACL_COUNT`] PREFIXED ACLs to `node`: the five that let [`BENCH_USER`] create, write,
/// describe and read the benchmark topics ([`TOPIC_PREFIX`]) and read its groups
/// ([`GROUP_PREFIX`]), and others for other principals (and for [`BENCH_USER`] and `User:*`)
/// on prefixes no benchmark topic has. Returns how many PREFIXED ACLs the node then lists.
pub fn add_acls(bin: &Path, node: &RillNode) -> anyhow::Result<usize> {
    let bench = format!("User:{BENCH_USER}");
    acl(
        bin,
        node,
        &[
            "add",
            "--principal",
            &bench,
            "--operation",
            "CREATE,WRITE,DESCRIBE,READ",
            "--topic",
            TOPIC_PREFIX,
            "--pattern",
            "prefixed",
        ],
    )?;
    acl(
        bin,
        node,
        &[
            "add",
            "--principal",
            &bench,
            "--operation",
            "READ",
            "--group",
            GROUP_PREFIX,
            "--pattern",
            "prefixed",
        ],
    )?;
    let mut added = 5;
    let mut i = 0;
    while added < ACL_COUNT {
        let principal = match i % 10 {
            0 => bench.clone(),
            1 => "User:*".to_string(),
            n => format!("User:device-{n}"),
        };
        let ops = if ACL_COUNT - added >= 2 {
            "WRITE,DESCRIBE"
        } else {
            "WRITE"
        };
        let (kind, name) = if i % 4 == 3 {
            ("--group", format!("app-{i:02}-"))
        } else {
            ("--topic", format!("site-{i:02}."))
        };
        let ops = if kind == "--group" { "READ" } else { ops };
        acl(
            bin,
            node,
            &[
                "add",
                "--principal",
                &principal,
                "--operation",
                ops,
                kind,
                &name,
                "--pattern",
                "prefixed",
            ],
        )?;
        added += ops.split(',').count();
        i += 1;
    }
    let out = acl(bin, node, &["--json", "list"])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"pattern_type\":\"PREFIXED\""))
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_authorizer_differs_between_the_configs() {
        let (on, off) = (node_config(true), node_config(false));
        for c in [&on, &off] {
            assert!(c.contains("sasl_mechanisms = [\"SCRAM-SHA-512\"]"), "{c}");
        }
        assert!(
            on.contains("authorizer = true") && on.contains("\"User:admin\""),
            "{on}"
        );
        assert!(!off.contains("authorizer"), "{off}");
        assert!(on.starts_with(&off), "{on} vs {off}");
    }
}
