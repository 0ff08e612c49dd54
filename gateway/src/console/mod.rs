//! The web console: a small single-page app served by the node on its admin HTTP port, and the
//! JSON API under `/api/v1/` that the page and scripts share (documented in docs/console.md).
//!
//! - the page (`/`, `/console.js`, `/console.css`): plain HTML, CSS and JavaScript embedded in
//!   the binary with `include_str!`, no build step and no fetch beyond this node. The assets
//!   carry no data, so they are served without a token; the page asks for one and sends it in
//!   an `Authorization` header with every API call (no cookies, so no CSRF),
//! - [`api`]: the `/api/v1/` handlers, reading the node's own broker, group coordinator, MQTT
//!   front end, bridge status and (in cluster mode) metadata image,
//! - [`history`]: the in-memory ring behind the throughput sparkline and the lag plots, filled
//!   by [`run_sampler`].
//!
//! Access is the admin API's ([`crate::admin_http::Access`]): GET needs a `read` token, POST an
//! `admin` token when `[admin] tokens_file` is set; writes (produce a test message) are refused
//! unless `[admin] console_writes = true`.

pub mod api;
pub mod history;
pub mod kafka_groups;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use rill_bridge::BridgeStatus;
use rill_core::broker::Broker;
use rill_core::group::GroupCoordinator;
use tokio_util::sync::CancellationToken;

use crate::kafka::cluster_view::ClusterView;
use crate::mqtt::MqttServer;
use history::{History, Sample};

/// What the node tells about itself on the overview page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeIdentity {
    /// Kafka broker id.
    pub node_id: i32,
    /// Readable node name.
    pub node_name: String,
    /// Kafka cluster id.
    pub cluster_id: String,
    /// The binary's version.
    pub version: &'static str,
    /// The Kafka listener's address.
    pub kafka_listen: String,
    /// The MQTT listener's address.
    pub mqtt_listen: String,
}

/// The connection options of the console's Kafka client (client id `rill-console`, 10 s
/// timeouts: a page waits no longer for an unreachable broker).
pub fn kafka_options() -> rill_client::ConnectOptions {
    rill_client::ConnectOptions::default()
        .with_client_id("rill-console")
        .with_timeout(std::time::Duration::from_secs(10))
}

/// Everything the console reads, shared by its handlers.
pub struct Console {
    pub(crate) broker: Arc<Broker>,
    pub(crate) groups: Arc<GroupCoordinator>,
    pub(crate) mqtt: Arc<MqttServer>,
    pub(crate) bridge: Arc<BridgeStatus>,
    pub(crate) cluster: Option<Arc<dyn ClusterView>>,
    pub(crate) identity: NodeIdentity,
    pub(crate) history: History,
    pub(crate) started: Instant,
    pub(crate) writes: bool,
    /// In cluster mode, the Kafka client the group pages and the lag sampler read through
    /// ([`kafka_groups`]): it connects to the brokers' cluster listeners as a peer of the
    /// cluster (`ClusterNode::kafka_client`), so it needs no Kafka credentials whatever the
    /// Kafka listeners require.
    pub(crate) kafka: Option<tokio::sync::Mutex<rill_client::Client>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("identity", &self.identity)
            .field("writes", &self.writes)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// The console of a node (`writes`: `[admin] console_writes`). `kafka`: in cluster mode,
    /// the client the group pages read every group of the cluster through (with
    /// [`kafka_options`], connecting as a cluster peer); without one they show this node's own
    /// groups.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        broker: Arc<Broker>,
        groups: Arc<GroupCoordinator>,
        mqtt: Arc<MqttServer>,
        bridge: Arc<BridgeStatus>,
        cluster: Option<Arc<dyn ClusterView>>,
        kafka: Option<rill_client::Client>,
        identity: NodeIdentity,
        writes: bool,
    ) -> Arc<Console> {
        Arc::new(Console {
            kafka: kafka.map(tokio::sync::Mutex::new),
            broker,
            groups,
            mqtt,
            bridge,
            cluster,
            identity,
            history: History::default(),
            started: Instant::now(),
            writes,
        })
    }

    /// Take one history sample now (reads every log end offset and bridge partition);
    /// `group_lag` is each group's total lag in records (see [`run_sampler`]).
    pub fn sample(&self, group_lag: BTreeMap<String, i64>) {
        let log_end_total = self
            .broker
            .all_logs()
            .iter()
            .filter(|(topic, _, _)| !topic.starts_with("__"))
            .map(|(_, _, log)| log.log_end_offset())
            .sum();
        let bridge_lag = self
            .bridge
            .report()
            .partitions
            .iter()
            .map(|p| p.lag_records)
            .sum();
        self.history.push(Sample {
            at_ms: rill_core::clock::now_ms(),
            log_end_total,
            records_per_second: 0.0,
            group_lag,
            bridge_lag,
        });
    }
}

/// Sample the history every [`history::INTERVAL`] (the first at once) until `shutdown`.
pub async fn run_sampler(console: Arc<Console>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(history::INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let group_lag = match &console.kafka {
            Some(client) => match kafka_groups::lags(client).await {
                Ok(lags) => lags,
                Err(e) => {
                    tracing::debug!(error = %e, "console history: group lag not read");
                    BTreeMap::new()
                }
            },
            None => {
                let c = console.clone();
                tokio::task::spawn_blocking(move || api::group_lag_totals(&c))
                    .await
                    .unwrap_or_default()
            }
        };
        let c = console.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || c.sample(group_lag)).await {
            tracing::warn!(error = %e, "console history sample failed");
        }
    }
}

const INDEX_HTML: &str = include_str!("assets/index.html");
/// The page's Content-Security-Policy: scripts, styles and API calls from this node only.
const PAGE_POLICY: &str =
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const CONSOLE_JS: &str = include_str!("assets/console.js");
const CONSOLE_CSS: &str = include_str!("assets/console.css");

/// Whether `path` is one of the page's assets (served without a token: they carry no data).
pub fn is_asset(path: &str) -> bool {
    matches!(path, "/" | "/console.js" | "/console.css")
}

/// The page and the `/api/v1/` routes.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        // Nothing but this node: the browser refuses any other fetch, and no
                        // other site may frame the page.
                        (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
                        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    ],
                    INDEX_HTML,
                )
                    .into_response()
            }),
        )
        .route(
            "/console.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    CONSOLE_JS,
                )
                    .into_response()
            }),
        )
        .route(
            "/console.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    CONSOLE_CSS,
                )
                    .into_response()
            }),
        )
        .route("/api/v1/overview", get(api::overview))
        .route("/api/v1/topics", get(api::topics))
        .route("/api/v1/topics/{topic}", get(api::topic))
        .route(
            "/api/v1/topics/{topic}/partitions/{partition}/messages",
            get(api::messages),
        )
        .route("/api/v1/topics/{topic}/messages", post(api::produce))
        .route("/api/v1/groups", get(api::groups))
        .route("/api/v1/groups/{group}", get(api::group))
        .route("/api/v1/bridge", get(api::bridge))
        .route("/api/v1/mqtt", get(api::mqtt))
        .route("/api/v1/cluster", get(api::cluster))
        .with_state(console)
}
