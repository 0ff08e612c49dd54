//! Timing `GET /metrics` of a node (plain HTTP/1.0 over loopback): how long a scrape takes and
//! how big the exposition is.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// One scrape: (seconds from connect to the last byte, body bytes).
pub fn scrape(http: &str) -> anyhow::Result<(f64, usize)> {
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(http).with_context(|| format!("connect {http}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {http}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let secs = start.elapsed().as_secs_f64();
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no HTTP header end in the /metrics answer");
    };
    if !raw.starts_with(b"HTTP/1.0 200") && !raw.starts_with(b"HTTP/1.1 200") {
        bail!(
            "/metrics answered {}",
            String::from_utf8_lossy(&raw[..end.min(40)])
        );
    }
    Ok((secs, raw.len() - end - 4))
}

/// `n` scrapes: (mean seconds, max seconds, body bytes of the last).
pub fn scrape_n(http: &str, n: usize) -> anyhow::Result<(f64, f64, usize)> {
    let mut total = 0.0;
    let mut max = 0.0f64;
    let mut size = 0;
    for _ in 0..n.max(1) {
        let (secs, bytes) = scrape(http)?;
        total += secs;
        max = max.max(secs);
        size = bytes;
    }
    Ok((total / n.max(1) as f64, max, size))
}
