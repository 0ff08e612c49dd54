//! The fleet: one task per device with its own rumqttc connection, publishing at the configured
//! rate, counting acknowledgements (PUBACK for QoS 1, PUBCOMP for QoS 2) and publish-to-ack
//! latency, and a summary at the end; with `--acked-file`, which messages were acknowledged.

use rill_core::clock::now_ms;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, Transport};

use crate::payload;
use crate::Args;

/// The sequence numbers of one device's acknowledged messages, in acknowledgement order.
type AckedSeqs = Arc<Mutex<Vec<u64>>>;

/// Counters shared by the devices.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    connected: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    /// Per device, the sequence numbers of its acknowledged messages (with `--acked-file`).
    acked_seqs: Mutex<Vec<(String, AckedSeqs)>>,
}

/// What a run achieved.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub devices: usize,
    pub connected: u64,
    pub qos: u8,
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    pub seconds: f64,
    pub rate: f64,
    pub ack_p50_ms: Option<f64>,
    pub ack_p99_ms: Option<f64>,
}

impl Summary {
    /// Prints it (one line, or JSON).
    pub fn print(&self) {
        if std::env::args().any(|a| a == "--json") {
            match serde_json::to_string(self) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("rill-devices: {e}"),
            }
            return;
        }
        let lat = match (self.ack_p50_ms, self.ack_p99_ms) {
            (Some(a), Some(b)) => format!(", ack latency p50 {a:.2} ms p99 {b:.2} ms"),
            _ => String::new(),
        };
        println!(
            "{} devices ({} connected), QoS {}: sent {}, acked {}, errors {} in {:.2} s = {:.1} msg/s{}",
            self.devices, self.connected, self.qos, self.sent, self.acked, self.errors, self.seconds, self.rate, lat
        );
    }

    /// Whether something went wrong (a device never connected, errors, missing acks).
    pub fn failed(&self) -> bool {
        self.connected < self.devices as u64
            || self.errors > 0
            || (self.qos > 0 && self.acked < self.sent)
    }
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).map(|us| *us as f64 / 1000.0)
}

/// Runs the fleet to completion.
pub async fn run(args: Args) -> anyhow::Result<Summary> {
    let (host, port) = args
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h.to_string(), p)))
        .context("--broker must be HOST:PORT")?;
    let transport = if args.tls {
        let ca = args.ca.as_deref().context("--tls needs --ca")?;
        let client = args.client_cert.as_deref().zip(args.client_key.as_deref());
        Some(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(crate::tls::client_config(ca, client)?),
        ))
    } else {
        None
    };
    let duration = match (args.duration, args.messages) {
        (Some(d), _) => Some(Duration::from_secs_f64(d)),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..args.devices {
        let id = format!("{}{n}", args.id_prefix);
        let mut opts = MqttOptions::new(id.clone(), host.clone(), port);
        opts.set_keep_alive(Duration::from_secs(args.keepalive.max(5)));
        opts.set_inflight(args.inflight.max(1));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        if let Some(u) = &args.username {
            opts.set_credentials(
                u.replace("{device}", &id),
                args.password
                    .clone()
                    .unwrap_or_default()
                    .replace("{device}", &id),
            );
        }
        if let Some(t) = &transport {
            opts.set_transport(t.clone());
        }
        tasks.push(tokio::spawn(device(
            id,
            opts,
            args.clone(),
            duration,
            counters.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    if let Some(path) = &args.acked_file {
        write_acked(path, &counters)?;
    }
    let mut lat = counters
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    lat.sort_unstable();
    let sent = counters.sent.load(Ordering::Relaxed);
    let acked = counters.acked.load(Ordering::Relaxed);
    let counted = if args.qos == 0 { sent } else { acked };
    Ok(Summary {
        devices: args.devices,
        connected: counters.connected.load(Ordering::Relaxed),
        qos: args.qos,
        sent,
        acked,
        errors: counters.errors.load(Ordering::Relaxed),
        seconds,
        rate: counted as f64 / seconds.max(1e-9),
        ack_p50_ms: percentile(&lat, 0.50),
        ack_p99_ms: percentile(&lat, 0.99),
    })
}

/// Writes `DEVICE_ID SEQ` for every acknowledged message.
fn write_acked(path: &std::path::Path, counters: &Counters) -> anyhow::Result<()> {
    use std::io::Write;
    let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let devices = counters
        .acked_seqs
        .lock()
        .map_err(|_| anyhow::anyhow!("acknowledgement list poisoned"))?;
    for (id, seqs) in devices.iter() {
        let seqs = seqs
            .lock()
            .map_err(|_| anyhow::anyhow!("acknowledgement list poisoned"))?;
        for seq in seqs.iter() {
            writeln!(out, "{id} {seq}")?;
        }
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

async fn device(
    id: String,
    opts: MqttOptions,
    args: Args,
    duration: Option<Duration>,
    counters: Arc<Counters>,
) {
    let (client, mut eventloop) = AsyncClient::new(opts, args.inflight as usize * 2 + 10);
    eventloop
        .network_options
        .set_connection_timeout(args.connect_timeout.max(1));
    // Sequence numbers of publishes handed to the client, not yet sent: rumqttc sends them in
    // order, so each `Outgoing::Publish` takes the oldest (with `--acked-file`).
    let track = args.acked_file.is_some() && qos(args.qos) != QoS::AtMostOnce;
    let queued: Arc<Mutex<VecDeque<u64>>> = Arc::default();
    let topic = args.topic.replace("{device}", &id);
    let want_qos = qos(args.qos);
    let my_acks = Arc::new(AtomicU64::new(0));
    // The event loop: connection, acks and latency.
    let c = counters.clone();
    let mine = my_acks.clone();
    let queue = queued.clone();
    let acked_seqs: AckedSeqs = Arc::default();
    if track {
        if let Ok(mut all) = counters.acked_seqs.lock() {
            all.push((id.clone(), acked_seqs.clone()));
        }
    }
    let acker = tokio::spawn(async move {
        let mut sent_at: HashMap<u16, Instant> = HashMap::new();
        let mut seq_of: HashMap<u16, u64> = HashMap::new();
        let acked = |pkid: u16, seq_of: &mut HashMap<u16, u64>| {
            if let Some(seq) = seq_of.remove(&pkid) {
                if let Ok(mut l) = acked_seqs.lock() {
                    l.push(seq);
                }
            }
        };
        let mut connected = false;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if ack.code != rumqttc::ConnectReturnCode::Success {
                        eprintln!("rill-devices: CONNECT refused: {:?}", ack.code);
                        c.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    if !connected {
                        connected = true;
                        c.connected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    c.sent.fetch_add(1, Ordering::Relaxed);
                    if pkid != 0 {
                        sent_at.insert(pkid, Instant::now());
                    }
                    if track {
                        if let Some(seq) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
                            seq_of.insert(pkid, seq);
                        }
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(a))) if want_qos == QoS::AtLeastOnce => {
                    ack(&c, &mut sent_at, a.pkid);
                    acked(a.pkid, &mut seq_of);
                    mine.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Incoming(Packet::PubComp(a))) if want_qos == QoS::ExactlyOnce => {
                    ack(&c, &mut sent_at, a.pkid);
                    acked(a.pkid, &mut seq_of);
                    mine.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    eprintln!("rill-devices: connection error: {e}");
                    c.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    });
    if args.start_together {
        let deadline = Instant::now() + Duration::from_secs(args.connect_timeout.max(1));
        while counters.connected.load(Ordering::Relaxed) < args.devices as u64
            && Instant::now() < deadline
            && !acker.is_finished()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let start = Instant::now();
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let mut next = tokio::time::Instant::now();
    let mut seq = 0u64;
    loop {
        if args.messages.is_some_and(|m| seq >= m) || duration.is_some_and(|d| start.elapsed() >= d)
        {
            break;
        }
        if acker.is_finished() {
            break;
        }
        let body = match payload::build(args.format, &id, seq, now_ms(), args.payload_bytes) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("rill-devices: {e}");
                counters.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        if track {
            if let Ok(mut q) = queued.lock() {
                q.push_back(seq);
            }
        }
        if client.publish(&topic, want_qos, false, body).await.is_err() {
            break;
        }
        seq += 1;
        if let Some(iv) = interval {
            next += iv;
            tokio::time::sleep_until(next).await;
        }
    }
    // Wait until every publish of this device is acknowledged (bounded), then disconnect.
    let deadline = Instant::now() + Duration::from_secs(30);
    while want_qos != QoS::AtMostOnce
        && Instant::now() < deadline
        && !acker.is_finished()
        && my_acks.load(Ordering::Relaxed) < seq
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = client.disconnect().await;
    // Stopped, not left running, so no acknowledgement is counted after the summary.
    let abort = acker.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), acker)
        .await
        .is_err()
    {
        abort.abort();
    }
}

fn ack(c: &Counters, sent_at: &mut HashMap<u16, Instant>, pkid: u16) {
    c.acked.fetch_add(1, Ordering::Relaxed);
    if let Some(t) = sent_at.remove(&pkid) {
        if let Ok(mut l) = c.latencies_us.lock() {
            l.push(t.elapsed().as_micros() as u64);
        }
    }
}
