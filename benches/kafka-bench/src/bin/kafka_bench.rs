//! `kafka-bench`: produce and consume N records with librdkafka (the `rdkafka` crate) against a
//! Rill node (started here from the release binary, or `--bootstrap`) and optionally a peer
//! Kafka-compatible broker (`--peer-bootstrap`), acks=all; prints records/s, MB/s, p50/p99 produce
//! latency (delivery callback time minus send time) and consume rates as a table (what, ours, peer,
//! ratio), plus the disk's `dd ... conv=fdatasync` bandwidth measured in the same run.
//!
//! `--metrics-off-peer`: the peer is a second Rill node started here with `[metrics] enabled =
//! false` (the cost of metrics: ours has them on). `--scrape-partitions N --scrape-groups G`:
//! afterwards, N partitions with records and G consumer groups with commits are made on our node
//! and `GET /metrics` is timed.
//!
//! `--authorizer-peer`: two Rill nodes started here with the same SASL/SCRAM listener and users,
//! ours with `[kafka] authorizer = true` and 100 PREFIXED ACLs (`rill_kafka_bench::authorizer`),
//! the peer without the authorizer; every client authenticates as the (non-super) user `bench`
//! (the cost of the authorizer).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use rill_kafka_bench::authorizer;
use rill_kafka_bench::disk::dd_fdatasync_mb_per_s;
use rill_kafka_bench::latency::Latencies;
use rill_kafka_bench::node::{default_rill_bin, RillNode};
use rill_kafka_bench::report::{Better, Table};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Kafka produce/consume benchmark of a Rill node with librdkafka")]
struct Args {
    /// Records per record size.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Record value sizes in bytes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1024")]
    sizes: Vec<usize>,
    /// Use a running Rill node at this address instead of starting one.
    #[arg(long)]
    bootstrap: Option<String>,
    /// A peer Kafka-compatible broker to run the same load against.
    #[arg(long)]
    peer_bootstrap: Option<String>,
    /// Name of the peer in the table.
    #[arg(long, default_value = "peer")]
    peer_name: String,
    /// The `rill` binary to start (default: the release build of this repository).
    #[arg(long)]
    rill_bin: Option<PathBuf>,
    /// Directory for the node's data directory and the dd file (default: the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Partitions of each benchmark topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// librdkafka `linger.ms`.
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// MiB written by the dd measurement (0 skips it).
    #[arg(long, default_value_t = 1024)]
    dd_mib: u64,
    /// Start a second node with `[metrics] enabled = false` as the peer.
    #[arg(long)]
    metrics_off_peer: bool,
    /// Partitions (10 per topic) to create before timing `/metrics` (0: no scrape measurement).
    #[arg(long, default_value_t = 0)]
    scrape_partitions: i32,
    /// Consumer groups committing offsets before timing `/metrics`.
    #[arg(long, default_value_t = 0)]
    scrape_groups: usize,
    /// Start both nodes with SASL/SCRAM, ours with the authorizer and 100 PREFIXED ACLs, the
    /// peer with the authorizer off; clients authenticate as the user `bench`.
    #[arg(long, conflicts_with_all = ["bootstrap", "peer_bootstrap", "metrics_off_peer"])]
    authorizer_peer: bool,
    /// Passes per record size on each broker, alternating ours and the peer's (the peer first in
    /// every second round); the table shows the median of each row over the passes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
}

/// The median of `values` (NaN-free; the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Delivery callback state: one latency sample per acknowledged record.
struct Deliveries {
    latencies: Mutex<Latencies>,
    delivered: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        let elapsed = sent.elapsed();
        match result {
            Ok(_) => {
                if let Ok(mut l) = self.latencies.lock() {
                    l.record(elapsed);
                }
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(e.to_string());
                }
            }
        }
    }
}

/// A table row: its label, how to read it from a pass, and which direction is better.
type RowSpec = (&'static str, fn(&PassResult) -> f64, Better);

/// What one produce + consume pass measured.
struct PassResult {
    produce_records_per_s: f64,
    produce_mb_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    consume_records_per_s: f64,
    consume_mb_per_s: f64,
    /// CPU-seconds the node spent per GB produced (when the node runs here).
    produce_cpu_s_per_gb: f64,
}

/// The client settings every client of a pass starts from: the bootstrap address, and SASL as
/// the user `bench` when `sasl`.
fn client_base(bootstrap: &str, sasl: bool) -> ClientConfig {
    use rill_kafka_bench::authorizer::{BENCH_USER, MECHANISM, PASSWORD};
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    if sasl {
        c.set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", MECHANISM)
            .set("sasl.username", BENCH_USER)
            .set("sasl.password", PASSWORD);
    }
    c
}

fn create_topic(base: &ClientConfig, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        base.clone().create().context("creating the admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results =
        futures_executor::block_on(admin.create_topics([&new], &opts)).context("CreateTopics")?;
    for r in results {
        if let Err((name, code)) = r {
            bail!("creating topic {name}: {code}");
        }
    }
    Ok(())
}

fn produce(
    base: &ClientConfig,
    topic: &str,
    records: u64,
    size: usize,
    linger_ms: u32,
) -> anyhow::Result<(f64, Latencies)> {
    let ctx = Deliveries {
        latencies: Mutex::new(Latencies::with_capacity(records as usize)),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        last_error: Mutex::new(None),
    };
    let producer: ThreadedProducer<Deliveries> = base
        .clone()
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("compression.type", "none")
        .set("linger.ms", linger_ms.to_string())
        .create_with_context(ctx)
        .context("creating the producer")?;
    // Not all zeros and not all equal, without per-record work in the timed loop.
    let payload: Vec<u8> = (0..size).map(|i| (i * 131 % 251) as u8).collect();
    let start = Instant::now();
    for _ in 0..records {
        loop {
            let record = BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(
                topic,
                Box::new(Instant::now()),
            )
            .payload(&payload[..]);
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((e, _)) => bail!("produce: {e}"),
            }
        }
    }
    producer
        .flush(Duration::from_secs(600))
        .context("flushing the producer")?;
    let secs = start.elapsed().as_secs_f64();
    let ctx = producer.context();
    let failed = ctx.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let last = ctx.last_error.lock().ok().and_then(|l| l.clone());
        bail!("{failed} deliveries failed; last error: {last:?}");
    }
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    if delivered != records {
        bail!("{delivered} of {records} records delivered");
    }
    let latencies = std::mem::take(
        &mut *ctx
            .latencies
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?,
    );
    Ok((secs, latencies))
}

fn consume(
    base: &ClientConfig,
    topic: &str,
    partitions: i32,
    records: u64,
    size: usize,
) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = base
        .clone()
        .set("group.id", format!("rill-bench-{topic}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .context("assignment")?;
    }
    consumer.assign(&tpl).context("assign")?;
    let start = Instant::now();
    let mut got = 0u64;
    let mut idle_since = Instant::now();
    while got < records {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let len = m.payload().map_or(0, <[u8]>::len);
                if len != size {
                    bail!("record of {len} bytes, expected {size}");
                }
                got += 1;
                idle_since = Instant::now();
            }
            Some(Err(e)) => bail!("consume: {e}"),
            None => {
                if idle_since.elapsed() > Duration::from_secs(60) {
                    bail!("consumed {got} of {records}, then nothing for 60 s");
                }
            }
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

fn run_pass(
    base: &ClientConfig,
    node: Option<&RillNode>,
    args: &Args,
    size: usize,
    tag: &str,
) -> anyhow::Result<PassResult> {
    let topic = format!(
        "bench-{tag}-{size}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    create_topic(base, &topic, args.partitions)?;
    let n = args.records;
    let bytes = n as f64 * size as f64;
    let bootstrap = base.get("bootstrap.servers").unwrap_or("?");
    eprintln!("[{tag}] producing {n} x {size} B to {topic} at {bootstrap} ...");
    let cpu_before = node.and_then(RillNode::cpu_seconds);
    let (secs, mut lat) = produce(base, &topic, n, size, args.linger_ms)?;
    let cpu = match (cpu_before, node.and_then(RillNode::cpu_seconds)) {
        (Some(a), Some(b)) => (b - a) / (bytes / 1e9),
        _ => f64::NAN,
    };
    let p50 = lat.percentile_ms(50.0).unwrap_or(f64::NAN);
    let p99 = lat.percentile_ms(99.0).unwrap_or(f64::NAN);
    eprintln!(
        "[{tag}]   {:.0} records/s, {:.1} MB/s, p50 {p50:.1} ms, p99 {p99:.1} ms ({secs:.1} s)",
        n as f64 / secs,
        bytes / secs / 1e6
    );
    eprintln!("[{tag}] consuming ...");
    let csecs = consume(base, &topic, args.partitions, n, size)?;
    eprintln!(
        "[{tag}]   {:.0} records/s, {:.1} MB/s ({csecs:.1} s)",
        n as f64 / csecs,
        bytes / csecs / 1e6
    );
    Ok(PassResult {
        produce_records_per_s: n as f64 / secs,
        produce_mb_per_s: bytes / secs / 1e6,
        p50_ms: p50,
        p99_ms: p99,
        consume_records_per_s: n as f64 / csecs,
        consume_mb_per_s: bytes / csecs / 1e6,
        produce_cpu_s_per_gb: cpu,
    })
}

/// Check that the authorizer node really authorizes `bench`: Metadata of a topic no ACL covers
/// answers TOPIC_AUTHORIZATION_FAILED (else the comparison would measure nothing).
fn refused_outside_acls(base: &ClientConfig) -> anyhow::Result<()> {
    let producer: rdkafka::producer::BaseProducer =
        base.clone().create().context("creating the producer")?;
    let topic = "not-covered-by-any-acl";
    let md = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(20))
        .context("metadata")?;
    let err = md
        .topics()
        .first()
        .and_then(|t| t.error())
        .map(RDKafkaErrorCode::from);
    if err != Some(RDKafkaErrorCode::TopicAuthorizationFailed) {
        bail!("the authorizer node did not refuse {topic} to the bench user: {err:?}");
    }
    eprintln!("the authorizer node refuses {topic} to the bench user (TOPIC_AUTHORIZATION_FAILED)");
    Ok(())
}

/// Make `partitions` partitions (topics of 10) with 10 records each and `groups` groups that
/// committed offset 5 on every partition of one topic (so every group lags), on `bootstrap`.
fn scrape_fixture(bootstrap: &str, partitions: i32, groups: usize) -> anyhow::Result<()> {
    let topics = (partitions / 10).max(1);
    for t in 0..topics {
        create_topic(&client_base(bootstrap, false), &format!("scrape-{t}"), 10)?;
    }
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .create()
        .context("creating the producer")?;
    for t in 0..topics {
        let topic = format!("scrape-{t}");
        for p in 0..10 {
            for _ in 0..10 {
                let rec = BaseRecord::<(), [u8]>::to(&topic)
                    .partition(p)
                    .payload(b"x");
                producer
                    .send(rec)
                    .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
                producer.poll(Duration::ZERO);
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .context("flushing the fixture")?;
    for g in 0..groups {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("scrape-group-{g}"))
            .set("enable.auto.commit", "false")
            .create()
            .context("creating a consumer")?;
        let topic = format!("scrape-{}", g as i32 % topics);
        let mut tpl = TopicPartitionList::new();
        for p in 0..10 {
            tpl.add_partition_offset(&topic, p, Offset::Offset(5))
                .context("offsets")?;
        }
        consumer
            .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
            .with_context(|| format!("commit of group {g}"))?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work_parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("rill-kafka-bench-")
        .tempdir_in(&work_parent)
        .with_context(|| format!("creating a directory in {}", work_parent.display()))?;

    let dd = if args.dd_mib > 0 {
        eprintln!(
            "dd {} MiB conv=fdatasync in {} ...",
            args.dd_mib,
            work.path().display()
        );
        let v = dd_fdatasync_mb_per_s(work.path(), args.dd_mib)?;
        eprintln!("  {v:.1} MB/s");
        Some(v)
    } else {
        None
    };

    let bin = args.rill_bin.clone().unwrap_or_else(default_rill_bin);
    let node = match &args.bootstrap {
        Some(_) => None,
        None if args.authorizer_peer => {
            let node = authorizer::start_node(&bin, &work.path().join("authorizer-on"), true)?;
            let acls = authorizer::add_acls(&bin, &node)?;
            if acls != authorizer::ACL_COUNT {
                bail!(
                    "the authorizer node lists {acls} PREFIXED ACLs, not {}",
                    authorizer::ACL_COUNT
                );
            }
            eprintln!(
                "started {} with the authorizer and {acls} PREFIXED ACLs (pid {}) kafka={}",
                bin.display(),
                node.pid(),
                node.kafka
            );
            Some(node)
        }
        None => {
            let node = RillNode::start(&bin, work.path(), &[])?;
            eprintln!(
                "started {} (pid {}) kafka={}",
                bin.display(),
                node.pid(),
                node.kafka
            );
            Some(node)
        }
    };
    let peer_node = if args.metrics_off_peer {
        let dir = work.path().join("metrics-off");
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("node.toml");
        std::fs::write(&conf, "[metrics]\nenabled = false\n")?;
        let conf = conf.display().to_string();
        let n = RillNode::start(&bin, &dir, &["--config", &conf])?;
        eprintln!(
            "started the metrics-off peer (pid {}) kafka={}",
            n.pid(),
            n.kafka
        );
        Some(n)
    } else if args.authorizer_peer {
        let n = authorizer::start_node(&bin, &work.path().join("authorizer-off"), false)?;
        eprintln!(
            "started the authorizer-off peer (pid {}) kafka={}",
            n.pid(),
            n.kafka
        );
        Some(n)
    } else {
        None
    };
    let peer_base = peer_node
        .as_ref()
        .map(|n| n.kafka.clone())
        .or_else(|| args.peer_bootstrap.clone())
        .map(|b| client_base(&b, args.authorizer_peer));
    let peer_name = if args.metrics_off_peer {
        "metrics off".to_string()
    } else if args.authorizer_peer {
        "authorizer off".to_string()
    } else {
        args.peer_name.clone()
    };
    let ours_addr = match (&args.bootstrap, &node) {
        (Some(b), _) => b.clone(),
        (None, Some(n)) => n.kafka.clone(),
        (None, None) => bail!("no broker"),
    };
    let ours_base = client_base(&ours_addr, args.authorizer_peer);
    if args.authorizer_peer {
        refused_outside_acls(&ours_base)?;
    }

    let mut table = Table::default();
    if let Some(dd) = dd {
        table.push(
            format!("dd bs=1M count={} conv=fdatasync, MB/s", args.dd_mib),
            Some(dd),
            None,
            Better::Higher,
        );
    }
    let mut durable_share = Vec::new();
    for &size in &args.sizes {
        let mut ours = Vec::new();
        let mut peer = Vec::new();
        for round in 0..args.rounds {
            if args.rounds > 1 {
                eprintln!("round {} of {}", round + 1, args.rounds);
            }
            // Odd rounds run the peer first, so neither broker always follows the other.
            let peer_first = round % 2 == 1;
            if !peer_first {
                ours.push(run_pass(&ours_base, node.as_ref(), &args, size, "rill")?);
            }
            if let Some(p) = &peer_base {
                // The tag names the pass's topic: no spaces.
                let tag = peer_name.replace(' ', "-");
                peer.push(run_pass(p, peer_node.as_ref(), &args, size, &tag)?);
            }
            if peer_first {
                ours.push(run_pass(&ours_base, node.as_ref(), &args, size, "rill")?);
            }
        }
        let rows: [RowSpec; 7] = [
            (
                "produce records/s",
                |r| r.produce_records_per_s,
                Better::Higher,
            ),
            ("produce MB/s", |r| r.produce_mb_per_s, Better::Higher),
            ("produce latency p50 ms", |r| r.p50_ms, Better::Lower),
            ("produce latency p99 ms", |r| r.p99_ms, Better::Lower),
            (
                "consume records/s",
                |r| r.consume_records_per_s,
                Better::Higher,
            ),
            ("consume MB/s", |r| r.consume_mb_per_s, Better::Higher),
            (
                "node CPU-seconds per GB produced",
                |r| r.produce_cpu_s_per_gb,
                Better::Lower,
            ),
        ];
        let of = |passes: &[PassResult], get: fn(&PassResult) -> f64| {
            (!passes.is_empty()).then(|| median(passes.iter().map(get).collect()))
        };
        for (what, get, better) in rows {
            table.push(
                format!("{size} B records, {what}"),
                of(&ours, get),
                of(&peer, get),
                better,
            );
        }
        if let (Some(dd), Some(mb)) = (dd, of(&ours, |r| r.produce_mb_per_s)) {
            durable_share.push((size, 100.0 * mb / dd));
        }
    }
    if args.scrape_partitions > 0 {
        let Some(n) = &node else {
            bail!("--scrape-partitions needs the node started here (no --bootstrap)");
        };
        if args.authorizer_peer {
            bail!("--scrape-partitions does not go with --authorizer-peer");
        }
        eprintln!(
            "scrape fixture: {} partitions, {} groups ...",
            args.scrape_partitions, args.scrape_groups
        );
        scrape_fixture(&ours_addr, args.scrape_partitions, args.scrape_groups)?;
        let (mean, max, size) = rill_kafka_bench::scrape::scrape_n(&n.http, 20)?;
        let what = format!(
            "{} partitions, {} groups: GET /metrics",
            args.scrape_partitions, args.scrape_groups
        );
        table.push(
            format!("{what} ms (mean of 20)"),
            Some(mean * 1e3),
            None,
            Better::Lower,
        );
        table.push(
            format!("{what} ms (max of 20)"),
            Some(max * 1e3),
            None,
            Better::Lower,
        );
        table.push(
            format!("{what} KB"),
            Some(size as f64 / 1e3),
            None,
            Better::Lower,
        );
    }
    drop(node);
    drop(peer_node);

    println!(
        "\n{} records per size, {} partitions, acks=all, linger.ms={}, no compression{}\n",
        args.records,
        args.partitions,
        args.linger_ms,
        if args.rounds > 1 {
            format!(", median of {} alternating passes per broker", args.rounds)
        } else {
            String::new()
        }
    );
    if args.authorizer_peer {
        println!(
            "both nodes: SASL_PLAINTEXT {} as User:{} (not a super user); ours: authorizer on, {} PREFIXED ACLs; peer: authorizer off\n",
            authorizer::MECHANISM,
            authorizer::BENCH_USER,
            authorizer::ACL_COUNT
        );
    }
    println!("{}", table.markdown(&peer_name));
    for (size, pct) in durable_share {
        println!("durable produce of {size} B records: {pct:.0} % of the dd fdatasync bandwidth");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }
}
