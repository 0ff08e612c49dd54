//! The admin HTTP endpoint (axum): `GET /health`, `GET /metrics` (Prometheus text format) and
//! `GET /bridge/status` (the bridge's per-partition state and lag as JSON, read by
//! `rill bridge status`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use rill_bridge::BridgeStatus;

use crate::metrics::Metrics;

/// What the admin handlers read.
#[derive(Clone)]
struct Admin {
    metrics: Arc<Metrics>,
    bridge: Arc<BridgeStatus>,
}

/// The admin routes.
pub fn router(metrics: Arc<Metrics>, bridge: Arc<BridgeStatus>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/bridge/status", get(bridge_status))
        .with_state(Admin { metrics, bridge })
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
