//! `bridge-bench`: drain a backlog (default 1 GiB) from an edge node to a central node on
//! loopback while a live high-priority topic is mirrored, both nodes started here from the release
//! `rill` binary with temporary data directories.
//!
//! 1. `dd ... conv=fdatasync` in the work directory, for context.
//! 2. Starts central, and the edge without mirrors; fills the edge's `bulk` topic (librdkafka,
//!    acks=all) with the backlog.
//! 3. Restarts the edge with a bridge configuration (`bulk` priority 0 with zstd, `alarms`
//!    priority 10 uncompressed, both to central). From that moment a producer sends `--alarm-rate` records/s to the
//!    edge's `alarms` (each value carries its send time) and a consumer on central's
//!    `edge-01.alarms` (a LogAppendTime topic) measures each alarm's mirror latency: central's
//!    append time minus the send time (ms resolution).
//! 4. The drain ends when central's end offsets of `edge-01.bulk` reach the backlog's record
//!    count; time and MB/s (values, 10^6 bytes) are printed with the alarm latency percentiles
//!    and the CPU time each node used during the drain, as a table (what, ours, target, ratio).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use rill_kafka_bench::disk::dd_fdatasync_mb_per_s;
use rill_kafka_bench::latency::Latencies;
use rill_kafka_bench::node::{default_rill_bin, RillNode};
use rill_kafka_bench::report::{Better, Table};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Bridge drain benchmark: edge backlog to central with a live priority topic")]
struct Args {
    /// Backlog size in MiB of record values.
    #[arg(long, default_value_t = 1024)]
    backlog_mib: u64,
    /// Value bytes per backlog record.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Partitions of the `bulk` topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Alarms per second produced at the edge during the drain.
    #[arg(long, default_value_t = 200)]
    alarm_rate: u32,
    /// Priority of the alarms mirror (bulk has 0; 0 here turns the scheduler's preference off, to
    /// compare).
    #[arg(long, default_value_t = 10)]
    alarm_priority: i32,
    /// Transfer compression of the bulk mirror (`zstd` or `none`; alarms: always `none`, tiny
    /// batches gain nothing from it, and this librdkafka is built without zstd).
    #[arg(long, default_value = "zstd")]
    compression: String,
    /// The `rill` binary to start (default: the release build of this repository).
    #[arg(long)]
    rill_bin: Option<PathBuf>,
    /// Directory for the nodes' data directories and the dd file (default: the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// MiB written by the dd measurement (0 skips it).
    #[arg(long, default_value_t = 1024)]
    dd_mib: u64,
    /// Give up when the drain takes longer than this many seconds.
    #[arg(long, default_value_t = 900)]
    max_drain_secs: u64,
}

const NODE: &str = "edge-01";
const TARGET_SECS_PER_GIB: f64 = 30.0;
const TARGET_P99_MS: f64 = 100.0;

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// CPU seconds (user + system) a process used so far, from `/proc/PID/stat`.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    create_topic_with(bootstrap, topic, partitions, &[])
}

fn create_topic_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating the admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let results =
        futures_executor::block_on(admin.create_topics([&new], &opts)).context("CreateTopics")?;
    for r in results {
        if let Err((name, code)) = r {
            bail!("creating topic {name}: {code}");
        }
    }
    Ok(())
}

fn producer(
    bootstrap: &str,
    linger_ms: u32,
) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("compression.type", "none")
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", "1000000")
        .create()
        .context("creating a producer")
}

/// A telemetry-like value: JSON-ish text, compressible as real sensor data is, different for
/// every record.
fn telemetry_value(i: u64, size: usize) -> Vec<u8> {
    let mut v = format!(
        "{{\"device\":\"dev-{:04}\",\"seq\":{i},\"temp\":{}.{},\"status\":\"ok\",\"samples\":[",
        i % 1000,
        15 + i % 17,
        i % 10
    )
    .into_bytes();
    let mut x = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    while v.len() + 8 < size {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.extend_from_slice(format!("{},", (x >> 33) % 4096).as_bytes());
    }
    v.resize(size.saturating_sub(2), b' ');
    v.extend_from_slice(b"]}");
    v.truncate(size);
    v
}

/// Produce the backlog: `records` values of `size` bytes round robin over the partitions.
fn fill(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    records: u64,
    size: usize,
) -> anyhow::Result<f64> {
    let p = producer(bootstrap, 20)?;
    let start = Instant::now();
    for i in 0..records {
        let value = telemetry_value(i, size);
        let key = format!("dev-{:04}", i % 1000);
        let part = (i % partitions as u64) as i32;
        loop {
            let r = BaseRecord::<[u8], [u8]>::to(topic)
                .partition(part)
                .key(key.as_bytes())
                .payload(&value[..]);
            match p.send(r) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_micros(500));
                }
                Err((e, _)) => bail!("produce: {e}"),
            }
        }
    }
    p.flush(Duration::from_secs(600))
        .context("flushing the backlog")?;
    Ok(start.elapsed().as_secs_f64())
}

/// Sum of the end offsets (high watermarks) of a topic's partitions.
fn end_offsets(c: &BaseConsumer, topic: &str, partitions: i32) -> anyhow::Result<i64> {
    let mut n = 0;
    for p in 0..partitions {
        let (_, hi) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .with_context(|| format!("watermarks of {topic}[{p}]"))?;
        n += hi;
    }
    Ok(n)
}

fn consumer(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "rill-bridge-bench")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.min.bytes", "1")
        .create()
        .context("creating a consumer")
}

/// Paced alarm producer: `rate` records/s, each value its send time in µs since the epoch.
fn alarm_producer(
    bootstrap: String,
    rate: u32,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    std::thread::spawn(move || {
        let p = producer(&bootstrap, 0)?;
        // Connect and learn the leader first: the samples measure the mirror, not client start.
        p.client()
            .fetch_metadata(Some("alarms"), Duration::from_secs(10))
            .context("alarm producer metadata")?;
        let start = Instant::now();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let value = micros_now().to_be_bytes();
            let r = BaseRecord::<[u8], [u8]>::to("alarms")
                .key(b"alarm")
                .payload(&value[..]);
            if let Err((e, _)) = p.send(r) {
                bail!("alarm produce: {e}");
            }
            i += 1;
            sent.store(i, Ordering::Relaxed);
        }
        p.flush(Duration::from_secs(60))
            .context("flushing alarms")?;
        Ok(())
    })
}

/// Consumes mirrored alarms at central; one latency sample per alarm: central's append time
/// (LogAppendTime, ms) minus the send time in the value, so the consumer's own fetch delay is
/// not counted.
fn alarm_consumer(
    bootstrap: String,
    topic: String,
    stop: Arc<AtomicBool>,
    lat: Arc<Mutex<Latencies>>,
) -> std::thread::JoinHandle<anyhow::Result<Vec<(u64, u64)>>> {
    std::thread::spawn(move || {
        let c = consumer(&bootstrap)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .context("assignment")?;
        c.assign(&tpl).context("assign")?;
        // (send time, latency) in µs of every alarm, for the slowest ones in the report.
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let appended_ms = match m.timestamp() {
                        Timestamp::LogAppendTime(ms) => ms,
                        other => bail!("alarm at central without LogAppendTime: {other:?}"),
                    };
                    let now = u64::try_from(appended_ms).unwrap_or(0) * 1000;
                    let sent = m
                        .payload()
                        .and_then(|p| <[u8; 8]>::try_from(p).ok())
                        .map(u64::from_be_bytes)
                        .context("alarm without a send time")?;
                    let us = now.saturating_sub(sent);
                    if let Ok(mut l) = lat.lock() {
                        l.record(Duration::from_micros(us));
                    }
                    samples.push((sent, us));
                }
                Some(Err(e)) => bail!("alarm consume: {e}"),
                None => {}
            }
        }
        Ok(samples)
    })
}

fn bridge_config(
    dir: &Path,
    central: &str,
    compression: &str,
    alarm_priority: i32,
) -> anyhow::Result<PathBuf> {
    let path = dir.join("bridge.toml");
    std::fs::write(
        &path,
        format!(
            "[[mirror]]\ntopics = [\"alarms\"]\ntarget = \"{central}\"\npriority = {alarm_priority}\n\
             compression = \"none\"\n\n\
             [[mirror]]\ntopics = [\"bulk\"]\ntarget = \"{central}\"\npriority = 0\n\
             compression = \"{compression}\"\n"
        ),
    )
    .context("writing the bridge configuration")?;
    Ok(path)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work_parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("rill-bridge-bench-")
        .tempdir_in(&work_parent)
        .with_context(|| format!("creating a directory in {}", work_parent.display()))?;
    let bin = args.rill_bin.clone().unwrap_or_else(default_rill_bin);
    let (central_dir, edge_dir) = (work.path().join("central"), work.path().join("edge"));
    std::fs::create_dir_all(&central_dir)?;
    std::fs::create_dir_all(&edge_dir)?;

    let mut table = Table::default();
    if args.dd_mib > 0 {
        eprintln!(
            "dd {} MiB conv=fdatasync in {} ...",
            args.dd_mib,
            work.path().display()
        );
        let v = dd_fdatasync_mb_per_s(work.path(), args.dd_mib)?;
        eprintln!("  {v:.1} MB/s");
        table.push(
            format!("dd bs=1M count={} conv=fdatasync, MB/s", args.dd_mib),
            Some(v),
            None,
            Better::Higher,
        );
    }

    let central = RillNode::start(&bin, &central_dir, &["--node-name", "central"])?;
    eprintln!("central (pid {}) kafka={}", central.pid(), central.kafka);
    let bulk_target = format!("{NODE}.bulk");
    let alarms_target = format!("{NODE}.alarms");
    create_topic(&central.kafka, &bulk_target, args.partitions)?;
    // Central stamps the alarms with their append time: latency = append time - send time.
    create_topic_with(
        &central.kafka,
        &alarms_target,
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    )?;

    let records = args.backlog_mib * 1024 * 1024 / args.record_bytes as u64;
    let backlog_bytes = records as f64 * args.record_bytes as f64;
    {
        let edge = RillNode::start(&bin, &edge_dir, &["--node-name", NODE])?;
        eprintln!(
            "edge without mirrors (pid {}) kafka={}",
            edge.pid(),
            edge.kafka
        );
        create_topic(&edge.kafka, "bulk", args.partitions)?;
        create_topic(&edge.kafka, "alarms", 1)?;
        eprintln!(
            "filling the backlog: {records} x {} B on {} partitions ...",
            args.record_bytes, args.partitions
        );
        let secs = fill(
            &edge.kafka,
            "bulk",
            args.partitions,
            records,
            args.record_bytes,
        )?;
        eprintln!("  {:.1} s, {:.1} MB/s", secs, backlog_bytes / secs / 1e6);
        table.push(
            "backlog fill at the edge (acks=all), MB/s",
            Some(backlog_bytes / secs / 1e6),
            None,
            Better::Higher,
        );
    } // SIGTERM: the edge stops.

    // The consumer at central is assigned and fetching before the mirror starts.
    let stop_consumer = Arc::new(AtomicBool::new(false));
    let lat = Arc::new(Mutex::new(Latencies::default()));
    let consumer_thread = alarm_consumer(
        central.kafka.clone(),
        alarms_target.clone(),
        stop_consumer.clone(),
        lat.clone(),
    );
    let cfg = bridge_config(
        work.path(),
        &central.kafka,
        &args.compression,
        args.alarm_priority,
    )?;
    let cfg_s = cfg.to_string_lossy().to_string();
    let central_cpu0 = cpu_secs(central.pid());
    let t0 = Instant::now();
    let t0_us = micros_now();
    let edge = RillNode::start(
        &bin,
        &edge_dir,
        &["--node-name", NODE, "--bridge-config", &cfg_s],
    )?;
    let started = t0.elapsed().as_secs_f64();
    eprintln!(
        "edge with the bridge (pid {}) listening after {started:.2} s; draining ...",
        edge.pid()
    );

    let stop_alarms = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let producer_thread = alarm_producer(
        edge.kafka.clone(),
        args.alarm_rate,
        stop_alarms.clone(),
        sent.clone(),
    );

    let watcher = consumer(&central.kafka)?;
    let deadline = t0 + Duration::from_secs(args.max_drain_secs);
    let mut last_report = Instant::now();
    let drain_secs = loop {
        let n = end_offsets(&watcher, &bulk_target, args.partitions)?;
        if n >= records as i64 {
            break t0.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            bail!(
                "drain incomplete after {} s: {n} of {records}",
                args.max_drain_secs
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  {:.0} s: {n} of {records} records",
                t0.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let edge_cpu = cpu_secs(edge.pid());
    let central_cpu = match (central_cpu0, cpu_secs(central.pid())) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    eprintln!("  drained in {drain_secs:.1} s");
    let alarms_during_drain = sent.load(Ordering::Relaxed);
    stop_alarms.store(true, Ordering::Relaxed);
    let alarm_result = producer_thread.join();
    let alarms_sent = sent.load(Ordering::Relaxed);
    // Wait until every alarm arrived (or 30 s).
    let wait_until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < wait_until {
        let n = lat.lock().map(|l| l.len()).unwrap_or(0) as u64;
        if n >= alarms_sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_consumer.store(true, Ordering::Relaxed);
    let mut samples = match consumer_thread.join() {
        Ok(r) => r?,
        Err(_) => bail!("the alarm consumer panicked"),
    };
    let received = samples.len() as u64;
    samples.sort_by_key(|&(_, us)| std::cmp::Reverse(us));
    for (sent, us) in samples.iter().take(5) {
        eprintln!(
            "  slow alarm: sent {:.2} s after the edge's restart, {:.1} ms",
            sent.saturating_sub(t0_us) as f64 / 1e6,
            *us as f64 / 1e3
        );
    }
    match alarm_result {
        Ok(r) => r?,
        Err(_) => bail!("the alarm producer panicked"),
    }
    drop(edge);
    drop(central);

    let mut lat = std::mem::take(&mut *lat.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let gib = backlog_bytes / (1u64 << 30) as f64;
    table.push(
        format!("drain {:.2} GiB, s (from the edge's restart)", gib),
        Some(drain_secs),
        Some(TARGET_SECS_PER_GIB * gib),
        Better::Lower,
    );
    table.push(
        "drain MB/s",
        Some(backlog_bytes / drain_secs / 1e6),
        Some(backlog_bytes / (TARGET_SECS_PER_GIB * gib) / 1e6),
        Better::Higher,
    );
    table.push(
        format!("alarm mirror latency p50 ms ({} alarms/s)", args.alarm_rate),
        lat.percentile_ms(50.0),
        None,
        Better::Lower,
    );
    table.push(
        "alarm mirror latency p99 ms",
        lat.percentile_ms(99.0),
        Some(TARGET_P99_MS),
        Better::Lower,
    );
    table.push(
        "alarm mirror latency max ms",
        lat.percentile_ms(100.0),
        None,
        Better::Lower,
    );
    table.push(
        "edge CPU s during the drain (incl. start)",
        edge_cpu,
        None,
        Better::Lower,
    );
    table.push(
        "central CPU s during the drain",
        central_cpu,
        None,
        Better::Lower,
    );

    println!(
        "\nbridge drain: {records} records x {} B on {} partitions, compression {}, \
         alarms priority {}, {alarms_during_drain} alarms during the drain ({alarms_sent} sent, \
         {received} received)\n",
        args.record_bytes, args.partitions, args.compression, args.alarm_priority
    );
    println!("{}", table.markdown("target"));
    if received != alarms_sent {
        bail!("{received} of {alarms_sent} alarms arrived at central");
    }
    Ok(())
}
