//! `mqtt-bench`: QoS 1 ingest of a Rill node (durable, encrypted: the defaults) against Mosquitto,
//! both started here (or given by address), in the same run: N connections (rumqttc) each publish
//! M messages of a fixed payload with the same in-flight window; prints messages/s and
//! publish-to-PUBACK latency (time of the PUBACK minus the time the PUBLISH left the client).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use rill_kafka_bench::latency::Latencies;
use rill_kafka_bench::node::{default_rill_bin, RillNode};
use rill_kafka_bench::report::{Better, Table};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Outgoing, Packet, QoS};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "MQTT QoS 1 ingest benchmark: Rill against Mosquitto")]
struct Args {
    /// Concurrent connections.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// QoS 1 messages published by each connection.
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    /// Unacknowledged publishes allowed per connection (the same for every broker).
    #[arg(long, default_value_t = 10)]
    inflight: u16,
    /// Payload bytes.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Use a running Rill node's MQTT listener instead of starting one.
    #[arg(long)]
    rill_mqtt: Option<SocketAddr>,
    /// The `rill` binary to start (default: the release build of this repository).
    #[arg(long)]
    rill_bin: Option<PathBuf>,
    /// Use a running peer broker at this address instead of starting Mosquitto.
    #[arg(long)]
    peer: Option<SocketAddr>,
    /// Name of the peer in the table.
    #[arg(long, default_value = "mosquitto")]
    peer_name: String,
    /// The Mosquitto binary to start when `--peer` is not given.
    #[arg(long, default_value = "mosquitto")]
    mosquitto_bin: PathBuf,
    /// Run against Rill only.
    #[arg(long)]
    no_peer: bool,
    /// After the load, open this many idle MQTT connections to the node it started and report
    /// its RSS before and after (needs `ulimit -n` above this number).
    #[arg(long, default_value_t = 0)]
    idle_connections: usize,
    /// Directory for the node's data (default: the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// A Mosquitto process with its default configuration on a free loopback port.
struct Mosquitto {
    child: Child,
    addr: SocketAddr,
}

impl Mosquitto {
    fn start(bin: &PathBuf) -> anyhow::Result<Mosquitto> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(bin)
            .args(["-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let m = Mosquitto { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("mosquitto did not listen on {addr} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(m)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The outcome of one load run against one broker.
struct LoadResult {
    messages_per_s: f64,
    latencies: Latencies,
}

/// One connection: connect, wait for the start signal, publish `messages` QoS 1 messages through
/// rumqttc's in-flight window, and time each PUBLISH to its PUBACK. Returns the latencies and the
/// time of the last PUBACK.
async fn connection(
    addr: SocketAddr,
    id: String,
    args: Arc<Args>,
    ready: Arc<tokio::sync::Barrier>,
) -> anyhow::Result<(Latencies, Instant)> {
    let mut opts = MqttOptions::new(id.clone(), addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(60));
    opts.set_clean_session(true);
    opts.set_inflight(args.inflight);
    let (client, mut eventloop) = AsyncClient::new(opts, usize::from(args.inflight) + 1);
    loop {
        match eventloop.poll().await.context("connecting")? {
            Event::Incoming(Packet::ConnAck(ack)) => {
                if ack.code != ConnectReturnCode::Success {
                    bail!("CONNECT refused: {:?}", ack.code);
                }
                break;
            }
            _ => continue,
        }
    }
    ready.wait().await;
    let topic = format!("devices/{id}/telemetry");
    let payload = Bytes::from(
        (0..args.payload)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let n = args.messages;
    let publisher = {
        let client = client.clone();
        tokio::spawn(async move {
            for _ in 0..n {
                client
                    .publish_bytes(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
                    .await?;
            }
            Ok::<(), rumqttc::ClientError>(())
        })
    };
    let mut sent_at: HashMap<u16, Instant> = HashMap::new();
    let mut latencies = Latencies::with_capacity(n);
    let mut acked = 0;
    while acked < n {
        match eventloop.poll().await.context("publishing")? {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                sent_at.insert(pkid, Instant::now());
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(t) = sent_at.remove(&ack.pkid) {
                    latencies.record(t.elapsed());
                }
                acked += 1;
            }
            _ => {}
        }
    }
    let done = Instant::now();
    publisher.await.context("publisher task")??;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    Ok((latencies, done))
}

async fn load(addr: SocketAddr, args: Arc<Args>, tag: &str) -> anyhow::Result<LoadResult> {
    let ready = Arc::new(tokio::sync::Barrier::new(args.connections + 1));
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        tasks.push(tokio::spawn(connection(
            addr,
            format!("bench-{tag}-{i}"),
            args.clone(),
            ready.clone(),
        )));
    }
    // Every connection has its CONNACK; connection errors before that would leave the barrier
    // waiting, so bound the wait.
    tokio::time::timeout(Duration::from_secs(60), ready.wait())
        .await
        .context("connections did not all connect within 60 s")?;
    let start = Instant::now();
    let mut all = Latencies::with_capacity(args.connections * args.messages);
    let mut last = start;
    for t in tasks {
        let (lat, done) = t.await.context("connection task")??;
        all.extend(lat);
        last = last.max(done);
    }
    let total = (args.connections * args.messages) as f64;
    Ok(LoadResult {
        messages_per_s: total / (last - start).as_secs_f64(),
        latencies: all,
    })
}

/// The resident set size of a process in KiB, from `/proc/PID/status`.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Open `n` MQTT 3.1.1 connections (CONNECT with keep-alive 0, i.e. none, clean session), wait
/// for each CONNACK, and return the open sockets.
fn idle_connections(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<TcpStream>> {
    use std::io::{Read, Write};
    let mut socks = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("idle-{i}");
        let mut pkt = vec![
            0x10,
            (12 + id.len()) as u8,
            0,
            4,
            b'M',
            b'Q',
            b'T',
            b'T',
            4,
            2,
            0,
            0,
        ];
        pkt.extend_from_slice(&(id.len() as u16).to_be_bytes());
        pkt.extend_from_slice(id.as_bytes());
        let mut s = TcpStream::connect(addr).with_context(|| format!("connection {i}"))?;
        s.write_all(&pkt)?;
        let mut ack = [0u8; 4];
        s.read_exact(&mut ack)
            .with_context(|| format!("CONNACK {i}"))?;
        if ack != [0x20, 2, 0, 0] {
            bail!("connection {i}: unexpected CONNACK {ack:?}");
        }
        socks.push(s);
    }
    Ok(socks)
}

fn report(tag: &str, r: &mut LoadResult) -> (f64, f64, f64) {
    let p50 = r.latencies.percentile_ms(50.0).unwrap_or(f64::NAN);
    let p99 = r.latencies.percentile_ms(99.0).unwrap_or(f64::NAN);
    eprintln!(
        "[{tag}]   {:.0} msg/s, PUBACK latency p50 {p50:.1} ms, p99 {p99:.1} ms",
        r.messages_per_s
    );
    (r.messages_per_s, p50, p99)
}

fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let work_parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("rill-mqtt-bench-")
        .tempdir_in(&work_parent)
        .with_context(|| format!("creating a directory in {}", work_parent.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;

    let node = match args.rill_mqtt {
        Some(_) => None,
        None => {
            let bin = args.rill_bin.clone().unwrap_or_else(default_rill_bin);
            let node = RillNode::start(&bin, work.path(), &[])?;
            eprintln!(
                "started {} (pid {}) mqtt={}",
                bin.display(),
                node.pid(),
                node.mqtt
            );
            Some(node)
        }
    };
    let rill_addr: SocketAddr = match (args.rill_mqtt, &node) {
        (Some(a), _) => a,
        (None, Some(n)) => n.mqtt.parse().context("the node's mqtt= address")?,
        (None, None) => bail!("no Rill node"),
    };
    eprintln!(
        "[rill] {} connections x {} QoS 1 messages of {} B, in-flight window {} ...",
        args.connections, args.messages, args.payload, args.inflight
    );
    let mut ours = runtime.block_on(load(rill_addr, args.clone(), "rill"))?;
    let ours = report("rill", &mut ours);
    let mut idle_row = None;
    if let (Some(n), true) = (&node, args.idle_connections > 0) {
        let before = rss_kib(n.pid())?;
        let start = Instant::now();
        let socks = idle_connections(rill_addr, args.idle_connections)?;
        std::thread::sleep(Duration::from_secs(1));
        let after = rss_kib(n.pid())?;
        eprintln!(
            "[rill] {} idle connections in {:.1} s: RSS {} -> {} KiB",
            socks.len(),
            start.elapsed().as_secs_f64(),
            before,
            after
        );
        idle_row = Some((socks.len(), before, after));
        drop(socks);
    }
    drop(node);

    let peer = if args.no_peer {
        None
    } else {
        let started = match args.peer {
            Some(_) => None,
            None => Some(Mosquitto::start(&args.mosquitto_bin)?),
        };
        let addr = match (args.peer, &started) {
            (Some(a), _) => a,
            (None, Some(m)) => m.addr,
            (None, None) => bail!("no peer"),
        };
        eprintln!("[{}] same load at {addr} ...", args.peer_name);
        let mut r = runtime.block_on(load(addr, args.clone(), &args.peer_name))?;
        Some(report(&args.peer_name, &mut r))
    };

    let mut table = Table::default();
    table.push(
        "QoS 1 messages/s",
        Some(ours.0),
        peer.map(|p| p.0),
        Better::Higher,
    );
    table.push(
        "publish-to-PUBACK p50 ms",
        Some(ours.1),
        peer.map(|p| p.1),
        Better::Lower,
    );
    table.push(
        "publish-to-PUBACK p99 ms",
        Some(ours.2),
        peer.map(|p| p.2),
        Better::Lower,
    );
    println!(
        "\n{} connections x {} messages of {} B, QoS 1, in-flight window {} per connection\n",
        args.connections, args.messages, args.payload, args.inflight
    );
    println!("{}", table.markdown(&args.peer_name));
    if let Some((n, before, after)) = idle_row {
        println!(
            "node RSS with {n} idle MQTT connections: {:.1} MiB (before opening them: {:.1} MiB; {:.1} KiB per connection)",
            after as f64 / 1024.0,
            before as f64 / 1024.0,
            (after.saturating_sub(before)) as f64 / n as f64
        );
    }
    Ok(())
}
