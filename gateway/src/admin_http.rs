//! The admin HTTP endpoint (axum): `GET /health`, `GET /metrics` (Prometheus text format) and
//! `GET /bridge/status` (the bridge's per-partition state and lag as JSON, read by
//! `rill bridge status`), and the web console: its page at `/` and its JSON API under
//! `/api/v1/` ([`crate::console`]).
//!
//! Access ([`Access`]): with `[admin] tokens_file` every endpoint but `/health` needs
//! `Authorization: Bearer <token>` of a sufficient scope ([`crate::admin_tokens`]): 401 without a
//! token or with an unknown one, 403 with a `read` token on an endpoint that needs `admin` (every
//! method but GET and HEAD). The console's page assets carry no data and are served like
//! `/health`; the page sends the token with each API call.
//! Without tokens on a loopback address everything is open (as before); bound beyond loopback
//! without tokens only `/health` and `/metrics` are served (403 otherwise), so a shipped example
//! still starts and is scraped, but nothing else is exposed.
//!
//! With `[listeners] http_tls = { cert, key }` the API speaks HTTPS ([`TlsListener`]); with its
//! `client_ca` too every client must present a certificate chaining to that CA (the TLS
//! handshake fails otherwise), and such a client is let in without a token unless
//! `[admin] tokens_file` is set, in which case the token decides as above.
//!
//! A build without the `console` feature (the edge build) has no console: its page and
//! `/api/v1/` paths answer 404 with [`NO_CONSOLE`], to anyone (the answer carries no data).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rill_bridge::BridgeStatus;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::admin_tokens::{AdminTokens, Scope};
use crate::metrics::Metrics;

/// Who may call the admin API.
#[derive(Debug, Clone)]
pub enum Access {
    /// Everyone who reaches the API: a loopback address without `[admin] tokens_file`, or
    /// clients with a certificate of `http_tls.client_ca` (checked in the TLS handshake).
    Open,
    /// Bearer tokens of `[admin] tokens_file`.
    Tokens(Arc<AdminTokens>),
    /// Bound beyond loopback without tokens: only `/health` and `/metrics`.
    HealthAndMetricsOnly,
}

impl Access {
    /// The access of a listener on `addr` with `tokens` (`client_certificates`: the TLS
    /// handshake requires a client certificate of `http_tls.client_ca`), warning loudly when
    /// the API is bound beyond loopback with neither.
    pub fn for_listener(
        addr: std::net::SocketAddr,
        tokens: Option<AdminTokens>,
        client_certificates: bool,
    ) -> Access {
        match tokens {
            Some(t) => Access::Tokens(Arc::new(t)),
            None if client_certificates || addr.ip().is_loopback() => Access::Open,
            None => {
                tracing::warn!(
                    %addr,
                    "!!! the admin HTTP API is bound beyond loopback without authentication: \
                     serving ONLY /health and /metrics; set [admin] tokens_file or \
                     [listeners] http_tls with client_ca (docs/security.md) to serve the rest !!!"
                );
                Access::HealthAndMetricsOnly
            }
        }
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut resp = (status, format!("{message}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"rill-admin\""),
        );
    }
    resp
}

/// The access check in front of every route.
async fn guard(State(access): State<Access>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    #[cfg(feature = "console")]
    let open = crate::console::is_asset(path);
    #[cfg(not(feature = "console"))]
    let open = is_console_path(path);
    if path == "/health" || open {
        return next.run(req).await;
    }
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    match &access {
        Access::Open => next.run(req).await,
        Access::HealthAndMetricsOnly if path == "/metrics" && read_only => next.run(req).await,
        Access::HealthAndMetricsOnly => refuse(
            StatusCode::FORBIDDEN,
            "the admin API is bound beyond loopback without [admin] tokens_file or client \
             certificates: only /health and /metrics are served",
        ),
        Access::Tokens(tokens) => {
            let token = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            let Some(token) = token else {
                return refuse(StatusCode::UNAUTHORIZED, "missing bearer token");
            };
            let needed = if read_only { Scope::Read } else { Scope::Admin };
            match tokens.scope_of(token) {
                None => {
                    tracing::warn!(path, "admin HTTP request with an unknown token refused");
                    refuse(StatusCode::UNAUTHORIZED, "invalid bearer token")
                }
                Some(scope) if !scope.covers(needed) => refuse(
                    StatusCode::FORBIDDEN,
                    &format!("a {} token may not call this endpoint", scope.name()),
                ),
                Some(_) => next.run(req).await,
            }
        }
    }
}

/// What the admin handlers read.
#[derive(Clone)]
struct Admin {
    metrics: Arc<Metrics>,
    bridge: Arc<BridgeStatus>,
}

/// The admin routes and the web console behind `access`.
pub fn router(
    metrics: Arc<Metrics>,
    bridge: Arc<BridgeStatus>,
    #[cfg(feature = "console")] console: Arc<crate::console::Console>,
    access: Access,
) -> Router {
    let router = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/bridge/status", get(bridge_status))
        .with_state(Admin { metrics, bridge });
    #[cfg(feature = "console")]
    let router = router.merge(crate::console::router(console));
    #[cfg(not(feature = "console"))]
    let router = router
        .route("/", get(no_console))
        .route("/console.js", get(no_console))
        .route("/console.css", get(no_console))
        .route("/api/v1", axum::routing::any(no_console))
        .route("/api/v1/{*rest}", axum::routing::any(no_console));
    router.layer(middleware::from_fn_with_state(access, guard))
}

/// What a build without the `console` feature answers on the console's paths.
#[cfg(not(feature = "console"))]
pub const NO_CONSOLE: &str = "this build has no web console (rill was built without the \
     `console` feature, e.g. the edge build): the page and /api/v1/ are not served; /health, \
     /metrics and /bridge/status are";

/// The console's page and API paths (a build without the console answers them with 404).
#[cfg(not(feature = "console"))]
fn is_console_path(path: &str) -> bool {
    matches!(path, "/" | "/console.js" | "/console.css" | "/api/v1") || path.starts_with("/api/v1/")
}

#[cfg(not(feature = "console"))]
async fn no_console() -> Response {
    (StatusCode::NOT_FOUND, format!("{NO_CONSOLE}\n")).into_response()
}

async fn health() -> &'static str {
    "ok"
}

async fn metrics_text(State(admin): State<Admin>) -> axum::response::Response {
    // Scrape-time collectors read every log and group (a few ms with thousands of partitions):
    // off the async workers.
    let metrics = admin.metrics.clone();
    let text = tokio::task::spawn_blocking(move || metrics.encode())
        .await
        .unwrap_or_default();
    match text {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            "metrics are disabled ([metrics] enabled = false)\n",
        )
            .into_response(),
    }
}

async fn bridge_status(State(admin): State<Admin>) -> impl IntoResponse {
    // The report reads the logs (one batch per lagging partition): off the async workers.
    let bridge = admin.bridge.clone();
    let report = tokio::task::spawn_blocking(move || bridge.report())
        .await
        .unwrap_or_default();
    let body = serde_json::to_string(&report).unwrap_or_else(|_| "{}".to_string());
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// How long an HTTPS client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin API's listener over TLS (`[listeners] http_tls`): TCP connections are accepted and
/// their handshakes run on their own tasks, so a slow or failing client delays no other; a
/// failed handshake (no client certificate, one of another CA, an expired one) is logged and
/// the connection dropped before any HTTP is read.
pub struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    /// Serve TLS on `tcp` with `acceptor` until `shutdown`.
    pub fn new(
        tcp: TcpListener,
        acceptor: TlsAcceptor,
        shutdown: CancellationToken,
    ) -> std::io::Result<TlsListener> {
        let addr = tcp.local_addr()?;
        let (tx, handshaken) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    a = tcp.accept() => match a {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "admin HTTPS accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            let error = crate::tls::handshake_error(&e);
                            tracing::warn!(%peer, %error, "admin HTTPS handshake failed")
                        }
                        Err(_) => tracing::warn!(%peer, "admin HTTPS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { handshaken, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(c) => c,
            // The accept loop ended (shutdown): nothing more to serve.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
