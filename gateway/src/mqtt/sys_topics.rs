//! `$SYS` topics, as Mosquitto publishes them: the node's MQTT counters (`$SYS/broker/...`),
//! sent to subscribers every `[mqtt] sys_interval_s` seconds (Mosquitto's default 10; 0
//! disables them).
//!
//! The values are made from in-memory counters and the session and retained stores; they are
//! never appended to the log (no flash wear, never mirrored). A client cannot publish to them
//! (MQTT 5 §4.7.2: `$` topics are the server's). Filters starting with a wildcard do not
//! match them (§4.7.2, MQTT-4.7.2-1; see [`super::topic::matches`]): a client subscribes to
//! `$SYS/#` or a part of it. As in Mosquitto, a new subscription gets the current values at
//! once (as retained messages), and later intervals send the values that changed, at QoS 0.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_core::sync::LockExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::MqttServer;

/// The first level of the server's topics.
pub const PREFIX: &str = "$SYS";

/// Counters the connections update (relaxed atomics: statistics, not synchronisation).
#[derive(Debug, Default)]
pub struct SysCounters {
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    messages_received: AtomicU64,
    messages_sent: AtomicU64,
    publish_received: AtomicU64,
    publish_sent: AtomicU64,
    connections: AtomicU64,
    clients_maximum: AtomicU64,
}

impl SysCounters {
    /// `bytes` read from a client.
    pub fn bytes_in(&self, bytes: usize) {
        self.bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A packet received; `publish` when it is a PUBLISH.
    pub fn packet_in(&self, publish: bool) {
        self.messages_received.fetch_add(1, Ordering::Relaxed);
        if publish {
            self.publish_received.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `packets` sent (`publishes` of them PUBLISH), `bytes` long together.
    pub fn sent(&self, packets: u64, publishes: u64, bytes: usize) {
        self.messages_sent.fetch_add(packets, Ordering::Relaxed);
        self.publish_sent.fetch_add(publishes, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A client connected; `connected` clients are connected now.
    pub fn connected(&self, connected: usize) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.clients_maximum
            .fetch_max(connected as u64, Ordering::Relaxed);
    }

    /// The counters the load averages are made of, in [`LOADS`] order.
    fn load_sources(&self) -> [u64; 7] {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            get(&self.messages_received),
            get(&self.messages_sent),
            get(&self.publish_received),
            get(&self.publish_sent),
            get(&self.bytes_received),
            get(&self.bytes_sent),
            get(&self.connections),
        ]
    }
}

/// The `$SYS/broker/load/...` averages, named as Mosquitto names them.
const LOADS: [&str; 7] = [
    "messages/received",
    "messages/sent",
    "publish/received",
    "publish/sent",
    "bytes/received",
    "bytes/sent",
    "connections",
];

/// The periods of the load averages, in minutes, and their topic suffixes.
const LOAD_PERIODS: [(f64, &str); 3] = [(1.0, "1min"), (5.0, "5min"), (15.0, "15min")];

/// Exponentially weighted per-minute rates of the counters (Mosquitto's `calc_load`: at each
/// interval, `load = rate + e^(-elapsed/period) * (load - rate)`, with `rate` the counter's
/// growth per minute over the interval).
#[derive(Debug, Default)]
struct Load {
    last: Option<(Instant, [u64; 7])>,
    averages: [[f64; 3]; 7],
}

impl Load {
    fn update(&mut self, now: Instant, counters: [u64; 7]) {
        if let Some((at, before)) = self.last {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                for (i, avg) in self.averages.iter_mut().enumerate() {
                    let rate = counters[i].saturating_sub(before[i]) as f64 * 60.0 / secs;
                    for (j, (minutes, _)) in LOAD_PERIODS.iter().enumerate() {
                        let e = (-secs / (60.0 * minutes)).exp();
                        avg[j] = rate + e * (avg[j] - rate);
                    }
                }
            }
        }
        self.last = Some((now, counters));
    }
}

/// One set of `$SYS` values: (topic, payload), sorted by topic.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SysValues(pub Vec<(String, Bytes)>);

/// The node's `$SYS` topics: counters, and the latest values for the connections.
pub struct SysTopics {
    /// Updated by the connections.
    pub counters: SysCounters,
    interval: Option<Duration>,
    started: Instant,
    values: watch::Sender<Arc<SysValues>>,
}

impl SysTopics {
    /// `$SYS` topics published every `interval_secs` (0: none).
    pub fn new(interval_secs: u64) -> SysTopics {
        SysTopics {
            counters: SysCounters::default(),
            interval: (interval_secs > 0).then(|| Duration::from_secs(interval_secs)),
            started: Instant::now(),
            values: watch::Sender::new(Arc::new(SysValues::default())),
        }
    }

    /// Whether `$SYS` topics are published at all.
    pub fn enabled(&self) -> bool {
        self.interval.is_some()
    }

    /// A receiver that sees each new set of values.
    pub fn watch(&self) -> watch::Receiver<Arc<SysValues>> {
        self.values.subscribe()
    }

    /// The latest values (empty when disabled).
    pub fn current(&self) -> Arc<SysValues> {
        self.values.borrow().clone()
    }
}

/// Mosquitto's number format for load averages.
fn two_places(v: f64) -> String {
    format!("{v:.2}")
}

/// Computes the values now.
fn values(server: &MqttServer, load: &Load) -> SysValues {
    let sys = &server.sys;
    let c = &sys.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
    let live: HashSet<String> = server.live.lock_unpoisoned().keys().cloned().collect();
    let connected = live.len() as u64;
    // Persistent sessions whose client is not connected.
    let disconnected = match server.sessions.client_ids() {
        Ok(ids) => ids.iter().filter(|id| !live.contains(*id)).count() as u64,
        Err(e) => {
            tracing::warn!(error = %e, "MQTT sessions unreadable for $SYS");
            0
        }
    };
    let retained = server.retained.count().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "retained messages unreadable for $SYS");
        0
    });
    let mut out: Vec<(String, String)> = vec![
        ("bytes/received".into(), get(&c.bytes_received)),
        ("bytes/sent".into(), get(&c.bytes_sent)),
        ("clients/connected".into(), connected.to_string()),
        ("clients/disconnected".into(), disconnected.to_string()),
        (
            "clients/maximum".into(),
            c.clients_maximum
                .load(Ordering::Relaxed)
                .max(connected)
                .to_string(),
        ),
        (
            "clients/total".into(),
            (connected + disconnected).to_string(),
        ),
        ("messages/received".into(), get(&c.messages_received)),
        ("messages/sent".into(), get(&c.messages_sent)),
        ("publish/messages/received".into(), get(&c.publish_received)),
        ("publish/messages/sent".into(), get(&c.publish_sent)),
        ("retained messages/count".into(), retained.to_string()),
        (
            "uptime".into(),
            format!("{} seconds", sys.started.elapsed().as_secs()),
        ),
        (
            "version".into(),
            format!("rill version {}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    for (i, name) in LOADS.iter().enumerate() {
        for (j, (_, suffix)) in LOAD_PERIODS.iter().enumerate() {
            out.push((
                format!("load/{name}/{suffix}"),
                two_places(load.averages[i][j]),
            ));
        }
    }
    let mut values: Vec<(String, Bytes)> = out
        .into_iter()
        .map(|(k, v)| (format!("{PREFIX}/broker/{k}"), Bytes::from(v)))
        .collect();
    values.sort_by(|a, b| a.0.cmp(&b.0));
    SysValues(values)
}

/// Publishes the values at start and every interval until `shutdown`; returns at once when
/// `$SYS` topics are disabled.
pub async fn run(server: Arc<MqttServer>, shutdown: CancellationToken) {
    let Some(every) = server.sys.interval else {
        return;
    };
    let mut load = Load::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        load.update(Instant::now(), server.sys.counters.load_sources());
        let srv = server.clone();
        // The stores are read on a blocking thread (redb).
        let computed = tokio::task::spawn_blocking(move || {
            let v = values(&srv, &load);
            (v, load)
        })
        .await;
        match computed {
            Ok((v, l)) => {
                load = l;
                server.sys.values.send_replace(Arc::new(v));
            }
            Err(e) => {
                tracing::warn!(error = %e, "$SYS values not computed");
                load = Load::default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_is_a_per_minute_moving_average() {
        let mut load = Load::default();
        let t0 = Instant::now();
        load.update(t0, [0; 7]);
        // 60 messages received in 60 s: 60/min; the 1 min average moves 1 - 1/e of the way.
        let mut c = [0; 7];
        c[0] = 60;
        load.update(t0 + Duration::from_secs(60), c);
        let one = load.averages[0][0];
        assert!((one - 60.0 * (1.0 - (-1.0f64).exp())).abs() < 1e-9, "{one}");
        assert!(load.averages[0][2] < one, "15 min average moves slower");
        assert_eq!(load.averages[1], [0.0; 3]);
    }
}
