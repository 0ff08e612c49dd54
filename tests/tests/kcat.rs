//! kcat against a real node: `-L` metadata, `-P` produce (keyed, with headers, compressed) and `-C`
//! consume with a format string. Skipped with a note when kcat is not installed.

use std::process::Command;

use rill_tests::{has_kcat, kcat, run_with_timeout, Node};

fn kcat_run(node: &Node, args: &[&str], stdin: &[u8]) -> String {
    let bin = kcat().expect("kcat installed");
    let mut cmd = Command::new(bin);
    cmd.arg("-b").arg(node.kafka_addr()).args(args);
    let out = run_with_timeout(cmd, stdin, std::time::Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("kcat {}: {e}\nnode log:\n{}", args.join(" "), node.log()));
    assert!(
        out.status.success(),
        "kcat {} failed ({}):\nstdout:\n{}\nstderr:\n{}\nnode log:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn kcat_lists_produces_and_consumes() {
    if !has_kcat() {
        return;
    }
    let node = Node::start();
    node.cli_ok(&["topic", "create", "kc", "-p", "2"], b"");
    let meta = kcat_run(&node, &["-L", "-t", "kc"], b"");
    assert!(
        meta.contains("topic \"kc\" with 2 partitions"),
        "kcat -L output:\n{meta}"
    );
    assert!(meta.contains("1 brokers:"), "kcat -L output:\n{meta}");

    let lines: Vec<String> = (0..50).map(|i| format!("key{}:value-{i}", i % 4)).collect();
    let input = lines.join("\n") + "\n";
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        kcat_run(
            &node,
            &["-P", "-t", "kc", "-K:", "-H", "src=kcat", "-z", codec],
            input.as_bytes(),
        );
    }
    let out = kcat_run(
        &node,
        &[
            "-C",
            "-t",
            "kc",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%p %o %k=%s %h\\n",
        ],
        b"",
    );
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 250, "kcat -C read {} records:\n{out}", got.len());
    let mut values: Vec<String> = got
        .iter()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let (_p, _o, kv, h) = (
                parts.next(),
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next(),
            );
            assert_eq!(h, Some("src=kcat"), "headers of {l:?}");
            kv.replace('=', ":")
        })
        .collect();
    values.sort();
    let mut want: Vec<String> = lines
        .iter()
        .flat_map(|l| std::iter::repeat_n(l.clone(), 5))
        .collect();
    want.sort();
    assert_eq!(values, want);
    // Offsets are dense per partition.
    for p in ["0", "1"] {
        let offsets: Vec<i64> = got
            .iter()
            .filter(|l| l.split(' ').next() == Some(p))
            .map(|l| {
                l.split(' ')
                    .nth(1)
                    .and_then(|o| o.parse().ok())
                    .expect("offset")
            })
            .collect();
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "partition {p} offsets"
        );
    }
    // The same keys landed in the same partitions (kcat's default partitioner is consistent).
    let mut key_partition = std::collections::HashMap::new();
    for l in &got {
        let mut parts = l.split(' ');
        let p = parts.next().unwrap_or("");
        let key = parts
            .nth(1)
            .and_then(|kv| kv.split('=').next())
            .unwrap_or("");
        let prev = key_partition.insert(key.to_string(), p.to_string());
        assert!(
            prev.is_none() || prev.as_deref() == Some(p),
            "key {key} in two partitions"
        );
    }
}
