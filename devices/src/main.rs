//! rill-devices: an MQTT device fleet simulator (rumqttc). N devices publish telemetry at a rate
//! per device (JSON, CBOR or raw payloads) with QoS 0, 1 or 2, over TCP or TLS, with
//! credentials; at the end it prints the achieved rate, the acknowledgements and the
//! publish-to-ack latency.

mod fleet;
mod payload;
mod tls;

use std::process::ExitCode;

use clap::Parser;

/// Command-line options.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "rill-devices",
    version,
    about = "MQTT device fleet simulator for Rill"
)]
pub struct Args {
    /// Broker address HOST:PORT.
    #[arg(short, long, default_value = "127.0.0.1:1883")]
    pub broker: String,
    /// Number of devices (one MQTT connection each).
    #[arg(short = 'n', long, default_value_t = 10)]
    pub devices: usize,
    /// Messages per second per device (0: as fast as the in-flight window allows).
    #[arg(short, long, default_value_t = 1.0)]
    pub rate: f64,
    /// Messages per device (default: until --duration ends).
    #[arg(short, long)]
    pub messages: Option<u64>,
    /// Seconds to run (default 10 unless --messages is given).
    #[arg(short, long)]
    pub duration: Option<f64>,
    /// QoS of the publishes.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload format.
    #[arg(short, long, value_enum, default_value_t = payload::Format::Json)]
    pub format: payload::Format,
    /// Minimum payload size in bytes (padding; exact size for raw).
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// Topic template; `{device}` is replaced by the device id.
    #[arg(short, long, default_value = "devices/{device}/telemetry")]
    pub topic: String,
    /// Device id prefix; ids are PREFIX0, PREFIX1, ...
    #[arg(long, default_value = "sim-")]
    pub id_prefix: String,
    /// Username template (`{device}` is replaced).
    #[arg(long)]
    pub username: Option<String>,
    /// Password template (`{device}` is replaced).
    #[arg(long, env = "RILL_DEVICES_PASSWORD")]
    pub password: Option<String>,
    /// Publishes in flight per connection.
    #[arg(long, default_value_t = 100)]
    pub inflight: u16,
    /// Keepalive in seconds.
    #[arg(long, default_value_t = 30)]
    pub keepalive: u64,
    /// Connect with TLS.
    #[arg(long)]
    pub tls: bool,
    /// CA certificate (PEM) to verify the broker with (required with --tls).
    #[arg(long)]
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<std::path::PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<std::path::PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Seconds a device waits for its connection (TCP, TLS and CONNACK) before it gives up.
    #[arg(long, default_value_t = 5)]
    pub connect_timeout: u64,
    /// Devices start publishing only once all are connected (or `--connect-timeout` passed),
    /// so the load starts on every connection at once.
    #[arg(long)]
    pub start_together: bool,
    /// Write every acknowledged message to this file, one `DEVICE_ID SEQ` a line (SEQ as in
    /// the payload), to check later which acknowledged messages the node kept.
    #[arg(long)]
    pub acked_file: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rill-devices: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fleet::run(args)) {
        Ok(summary) => {
            summary.print();
            if summary.failed() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("rill-devices: {e:#}");
            ExitCode::FAILURE
        }
    }
}
