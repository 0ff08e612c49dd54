//! `rill bridge`: `rill bridge --config FILE` runs mirrors against a stopped node's data
//! directory (see the binary; FILE is a bridge file or the node's own TOML file, see
//! [`load_config`]); `rill bridge status [--admin HOST:PORT]` asks a running node's
//! admin HTTP API (`GET /bridge/status`) for each mirror task's state and lag and prints a table
//! (or the JSON with `--json`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use rill_bridge::status::StatusReport;
use rill_bridge::BridgeConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::table;

/// `rill bridge`: the standalone bridge, or a subcommand.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BridgeArgs {
    /// Bridge configuration (TOML, see docs/bridge.md), or the node's own TOML file: run its
    /// `[[mirror]]` entries against a stopped node's data directory.
    #[arg(long, value_name = "FILE", required = true)]
    pub config: Option<PathBuf>,
    /// A subcommand instead.
    #[command(subcommand)]
    pub command: Option<BridgeCommand>,
}

/// Subcommands of `rill bridge`.
#[derive(clap::Subcommand, Debug)]
pub enum BridgeCommand {
    /// Show each mirror's state and lag (records, bytes, seconds) from a running node.
    Status(StatusArgs),
}

/// Flags of `rill bridge status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// How to reach the admin API.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Print the JSON report instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// How a CLI command reaches a node's admin HTTP API (every command that speaks it takes these).
#[derive(clap::Args, Debug, Clone)]
pub struct AdminArgs {
    /// The node's admin HTTP address: HOST:PORT, http://HOST:PORT or https://HOST:PORT (the
    /// node's `[listeners] http_tls`).
    #[arg(
        long,
        value_name = "URL",
        env = "RILL_ADMIN",
        default_value = "127.0.0.1:9644"
    )]
    pub admin: String,
    /// Name of the environment variable holding the admin API's bearer token (sent when the
    /// variable is set; needed when the node has `[admin] tokens_file`).
    #[arg(long, value_name = "VAR", default_value = "RILL_ADMIN_TOKEN")]
    pub admin_token_env: String,
    /// https: the CA certificates (PEM) the node's certificate must chain to (default: the
    /// system's roots).
    #[arg(long, value_name = "FILE")]
    pub admin_ca_file: Option<PathBuf>,
    /// https: the client certificate (PEM) to present when the node requires one
    /// (`http_tls.client_ca`).
    #[arg(long, value_name = "FILE", requires = "admin_key_file")]
    pub admin_cert_file: Option<PathBuf>,
    /// https: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "admin_cert_file")]
    pub admin_key_file: Option<PathBuf>,
}

impl AdminArgs {
    /// The bearer token from the environment variable, when it is set and not empty.
    pub fn token(&self) -> Option<String> {
        std::env::var(&self.admin_token_env)
            .ok()
            .filter(|t| !t.is_empty())
    }

    /// The TLS client configuration for an https address (None for http).
    pub fn tls(&self) -> anyhow::Result<Option<std::sync::Arc<rustls::ClientConfig>>> {
        if !self.admin.starts_with("https://") {
            return Ok(None);
        }
        let identity = self
            .admin_cert_file
            .as_deref()
            .zip(self.admin_key_file.as_deref())
            .map(|(cert_file, key_file)| rill_client::security::Identity {
                cert_file,
                key_file,
            });
        Ok(Some(rill_client::security::client_config_with_identity(
            self.admin_ca_file.as_deref(),
            identity,
        )?))
    }
}

/// The sections of a node's TOML file: a file with any of them is read as one.
const NODE_SECTIONS: [&str; 7] = [
    "node",
    "listeners",
    "storage",
    "kafka",
    "topic_defaults",
    "groups",
    "mqtt",
];

/// The configuration of `rill bridge --config FILE`: a bridge file (`node_name`, `data_dir`,
/// `key_file`, `[[mirror]]`), or a node's TOML file, whose `[node]` name (default: the host
/// name, as `rill serve` uses), data directory and key file and whose `[[mirror]]` entries are
/// used. Either way every error of the file is reported at once.
pub fn load_config(path: &Path) -> anyhow::Result<BridgeConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let is_node_file = toml::from_str::<toml::Table>(&text)
        .is_ok_and(|t| t.keys().any(|k| NODE_SECTIONS.contains(&k.as_str())));
    if !is_node_file {
        return Ok(BridgeConfig::parse_file(&text, path)?);
    }
    let file = crate::config::FileConfig::parse(&text, path)?;
    Ok(BridgeConfig {
        node_name: Some(file.node.name.unwrap_or_else(crate::config::host_name)),
        data_dir: file.node.data_dir,
        key_file: file.node.key_file,
        mirror: file.mirror,
    })
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// The body of `GET path` on `admin` (`HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT`
/// with `tls`; plain HTTP/1.0, so no chunked encoding), with `Authorization: Bearer <token>`
/// when `token` is given; fails unless the status is 200.
pub async fn http_get(
    admin: &str,
    path: &str,
    token: Option<&str>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> anyhow::Result<String> {
    let (addr, tls) = match (admin.strip_prefix("https://"), tls) {
        (Some(addr), Some(tls)) => (addr, Some(tls)),
        (Some(_), None) => bail!("--admin {admin}: https needs a TLS configuration"),
        (None, _) => (admin.strip_prefix("http://").unwrap_or(admin), None),
    };
    let addr = addr.trim_end_matches('/');
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let work = async {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to the admin API at {addr}"))?;
        let req = format!(
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n{auth}\r\n"
        );
        let mut buf = Vec::new();
        match tls {
            None => exchange(stream, req.as_bytes(), &mut buf).await?,
            Some(config) => {
                let name = rill_client::security::server_name(addr, None)?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, stream)
                    .await
                    .with_context(|| format!("TLS handshake with the admin API at {addr}"))?;
                // TLS 1.3: a refused client certificate shows up as an alert on the first read.
                exchange(stream, req.as_bytes(), &mut buf)
                    .await
                    .with_context(|| format!("TLS session with the admin API at {addr}"))?
            }
        }
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(TIMEOUT, work)
        .await
        .with_context(|| format!("no answer from {addr} within {TIMEOUT:?}"))??;
    let text = String::from_utf8(buf).context("the admin API answered with non-UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if status != "200" {
        bail!("GET {path} on {addr}: HTTP {status}: {}", body.trim());
    }
    Ok(body.to_string())
}

/// Send `req` and read the whole answer into `buf` (HTTP/1.0: the server closes).
async fn exchange<S>(mut stream: S, req: &[u8], buf: &mut Vec<u8>) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(req).await?;
    match stream.read_to_end(buf).await {
        Ok(_) => Ok(()),
        // A TLS server that closes without close_notify after a complete answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The table `rill bridge status` prints.
pub fn render(report: &StatusReport) -> String {
    let rows: Vec<Vec<String>> = report
        .partitions
        .iter()
        .map(|p| {
            vec![
                format!("{} {}", p.mirror, p.target),
                format!("{}[{}]", p.topic, p.partition),
                p.target_topic.clone(),
                p.state.name().to_string(),
                p.lag_records.to_string(),
                p.lag_bytes.to_string(),
                format!("{:.1}", p.lag_seconds),
                p.records_mirrored.to_string(),
            ]
        })
        .collect();
    let mut out = table::render(
        &[
            "MIRROR",
            "SOURCE",
            "TARGET TOPIC",
            "STATE",
            "LAG RECORDS",
            "LAG BYTES",
            "LAG SECONDS",
            "MIRRORED",
        ],
        &rows,
    );
    for p in &report.partitions {
        if let Some(e) = &p.last_error {
            out.push_str(&format!("{}[{}]: last error: {e}\n", p.topic, p.partition));
        }
    }
    out
}

/// Runs `rill bridge status`.
pub fn run_status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let token = args.admin.token();
    let tls = args.admin.tls()?;
    let body = runtime.block_on(http_get(
        &args.admin.admin,
        "/bridge/status",
        token.as_deref(),
        tls,
    ))?;
    let report: StatusReport =
        serde_json::from_str(&body).context("unexpected /bridge/status response")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.partitions.is_empty() {
        println!("no mirrors on node {:?}", report.node);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rill_bridge::status::{MirrorState, PartitionReport};

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        bridge: BridgeArgs,
    }

    #[test]
    fn config_flag_and_status_subcommand() {
        let c = Cli::try_parse_from(["bridge", "--config", "b.toml"]).unwrap();
        assert_eq!(c.bridge.config, Some(PathBuf::from("b.toml")));
        assert!(c.bridge.command.is_none());
        let c = Cli::try_parse_from(["bridge", "status", "--admin", "h:1", "--json"]).unwrap();
        let Some(BridgeCommand::Status(s)) = c.bridge.command else {
            panic!("not status")
        };
        assert_eq!((s.admin.admin.as_str(), s.json), ("h:1", true));
        let c = Cli::try_parse_from(["bridge", "status"]).unwrap();
        let Some(BridgeCommand::Status(s)) = c.bridge.command else {
            panic!("not status")
        };
        assert_eq!(s.admin.admin, "127.0.0.1:9644");
        assert_eq!(s.admin.admin_token_env, "RILL_ADMIN_TOKEN");
        assert!(s.admin.tls().unwrap().is_none());
        // A client certificate needs its key.
        assert!(Cli::try_parse_from([
            "bridge",
            "status",
            "--admin",
            "https://h:1",
            "--admin-cert-file",
            "c.pem"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["bridge"]).is_err());
        assert!(Cli::try_parse_from(["bridge", "--config", "b.toml", "status"]).is_err());
    }

    #[test]
    fn config_is_a_bridge_file_or_a_node_file() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let bridge = write(
            "b.toml",
            "node_name = \"e1\"\ndata_dir = \"/d\"\n[[mirror]]\ntopics = [\"a\"]\ntarget = \"c:1\"\n",
        );
        let c = load_config(&bridge).unwrap();
        assert_eq!(c.node_name.as_deref(), Some("e1"));
        assert_eq!(c.mirror.len(), 1);
        let node = write(
            "n.toml",
            "[node]\nname = \"e2\"\ndata_dir = \"/n\"\nkey_file = \"/k\"\n\
             [[mirror]]\ntopics = [\"a\"]\ntarget = \"c:1\"\n",
        );
        let c = load_config(&node).unwrap();
        assert_eq!(c.node_name.as_deref(), Some("e2"));
        assert_eq!(c.data_dir, Some(PathBuf::from("/n")));
        assert_eq!(c.key_file, Some(PathBuf::from("/k")));
        assert_eq!(c.mirror[0].target, "c:1");
        // Node-file keys are errors in a bridge file and the other way round, with their lines.
        let bad = write("x.toml", "[node]\nname = \"e\"\nnode_name = \"e\"\n");
        let err = load_config(&bad).unwrap_err().to_string();
        assert!(
            err.ends_with("x.toml:3:1: unknown key 'node.node_name'"),
            "{err}"
        );
    }

    #[test]
    fn table_has_lag_columns_and_errors() {
        let report = StatusReport {
            node: "edge-01".into(),
            partitions: vec![PartitionReport {
                mirror: 0,
                target: "c:9092".into(),
                topic: "orders".into(),
                partition: 2,
                target_topic: "edge-01.orders".into(),
                state: MirrorState::Backoff,
                next_offset: None,
                high_watermark: 7,
                lag_records: 7,
                lag_bytes: 700,
                lag_seconds: 1.25,
                records_mirrored: 0,
                bytes_mirrored: 0,
                last_error: Some("connection refused".into()),
            }],
        };
        let t = render(&report);
        let mut lines = t.lines();
        assert!(lines.next().unwrap().starts_with("MIRROR"));
        let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            row,
            [
                "0",
                "c:9092",
                "orders[2]",
                "edge-01.orders",
                "backoff",
                "7",
                "700",
                "1.2",
                "0"
            ]
        );
        assert_eq!(
            lines.next(),
            Some("orders[2]: last error: connection refused")
        );
    }
}
