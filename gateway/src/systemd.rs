//! systemd service notifications for `Type=notify` units (see `deploy/`): `READY=1` once the
//! node listens, `STOPPING=1` when it starts shutting down, and `WATCHDOG=1` while the node's
//! long-running loops are alive.
//!
//! The sd_notify protocol is small enough to write by hand (no crate): each message is one
//! datagram of `KEY=VALUE` lines sent to the unix socket named by `NOTIFY_SOCKET` (a path, or
//! `@name` for the Linux abstract namespace). Without `NOTIFY_SOCKET` (not under systemd) nothing
//! is sent. The watchdog runs when `WATCHDOG_USEC` is set (and `WATCHDOG_PID`, when set, is this
//! process): every quarter of the interval it pings, but only if every watched loop marked its
//! [`Liveness`] within half the interval; a stuck loop stops the pings and systemd restarts the
//! node after the interval.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_core::liveness::Liveness;

/// The shortest watchdog interval honoured; shorter values are raised to it (a loop marks its
/// liveness at most every [`rill_core::liveness::MARK_EVERY`] while idle).
pub const MIN_WATCHDOG_INTERVAL: Duration = Duration::from_secs(2);

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier of `NOTIFY_SOCKET`, or `None` when the variable is unset or empty.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(name) if !name.is_empty() => Notifier::connect(Path::new(&name)).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier sending to `name` (a socket path, or `@name` for an abstract socket).
    pub fn connect(name: &Path) -> io::Result<Notifier> {
        let addr = socket_addr(name)?;
        let socket = UnixDatagram::unbound()?;
        // A full receive queue must never stall the node: a lost ping is retried next period.
        socket.set_nonblocking(true)?;
        Ok(Notifier { socket, addr })
    }

    /// Sends one message (`KEY=VALUE` lines).
    pub fn send(&self, message: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(message.as_bytes(), &self.addr)
            .map(|_| ())
    }
}

#[cfg(target_os = "linux")]
fn socket_addr(name: &Path) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    match name.as_os_str().as_bytes().strip_prefix(b"@") {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name),
        None => SocketAddr::from_pathname(name),
    }
}

#[cfg(not(target_os = "linux"))]
fn socket_addr(name: &Path) -> io::Result<SocketAddr> {
    SocketAddr::from_pathname(name)
}

/// The watchdog interval systemd asks for (`WATCHDOG_USEC`), if it is meant for this process
/// (`WATCHDOG_PID` unset or equal to our pid); at least [`MIN_WATCHDOG_INTERVAL`].
pub fn watchdog_interval_from_env() -> Option<Duration> {
    watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// The watchdog interval of `WATCHDOG_USEC` = `usec` and `WATCHDOG_PID` = `pid` for process `me`.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    Some(Duration::from_micros(usec).max(MIN_WATCHDOG_INTERVAL))
}

/// A loop the watchdog requires to be alive, with a name for the log.
#[derive(Debug, Clone)]
pub struct Watched {
    /// What the loop is ("storage maintenance", "Kafka accept", ...).
    pub name: &'static str,
    /// What it marks.
    pub liveness: Liveness,
}

/// The loops among `watched` that have not marked within `limit` of `now`, with their ages.
pub fn stalled(
    watched: &[Watched],
    now: Instant,
    limit: Duration,
) -> Vec<(&'static str, Duration)> {
    watched
        .iter()
        .map(|w| (w.name, w.liveness.since_last_mark(now)))
        .filter(|(_, age)| *age >= limit)
        .collect()
}

/// Pings the watchdog every quarter of `interval` while every loop of `watched` has marked within
/// half of it; runs until the task is dropped or aborted. A stall is logged once when it starts
/// and once when it ends.
pub async fn run_watchdog(notifier: Arc<Notifier>, interval: Duration, watched: Vec<Watched>) {
    let limit = interval / 2;
    let mut ticks = tokio::time::interval(interval / 4);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_stalled = false;
    loop {
        ticks.tick().await;
        let stuck = stalled(&watched, Instant::now(), limit);
        if stuck.is_empty() {
            if was_stalled {
                tracing::info!("all watched loops alive again; watchdog pings resume");
                was_stalled = false;
            }
            if let Err(e) = notifier.send("WATCHDOG=1") {
                tracing::debug!(error = %e, "watchdog ping not sent");
            }
        } else if !was_stalled {
            was_stalled = true;
            let which: Vec<String> = stuck
                .iter()
                .map(|(name, age)| format!("{name} ({} ms)", age.as_millis()))
                .collect();
            tracing::error!(
                stalled = %which.join(", "),
                limit_ms = limit.as_millis() as u64,
                "loops made no progress within half the watchdog interval; watchdog pings stop"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_names_only_the_loops_past_the_limit() {
        let fresh = Liveness::new();
        let old = Liveness::new();
        let watched = vec![
            Watched {
                name: "fresh",
                liveness: fresh.clone(),
            },
            Watched {
                name: "old",
                liveness: old,
            },
        ];
        let later = Instant::now() + Duration::from_secs(10);
        assert_eq!(stalled(&watched, later, Duration::from_secs(5)).len(), 2);
        fresh.mark();
        let now = Instant::now();
        assert!(stalled(&watched, now, Duration::from_secs(5)).is_empty());
        let stuck = stalled(
            &watched,
            now + Duration::from_secs(6),
            Duration::from_secs(5),
        );
        assert_eq!(stuck.len(), 2);
    }

    #[test]
    fn watchdog_interval_follows_systemd_variables() {
        let s = |secs| Some(Duration::from_secs(secs));
        assert_eq!(watchdog_interval(Some("30000000"), None, 7), s(30));
        assert_eq!(watchdog_interval(Some("30000000"), Some("7"), 7), s(30));
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("1000"), None, 7), s(2));
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn notifier_sends_datagrams_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::connect(&path).unwrap();
        n.send("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let len = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn notifier_sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("rill-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::connect(Path::new(&format!("@{name}"))).unwrap();
        n.send("WATCHDOG=1").unwrap();
        let mut buf = [0u8; 64];
        let len = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }
}
