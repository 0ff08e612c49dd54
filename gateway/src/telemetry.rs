//! The node's `tracing` subscriber: log lines on stderr (filtered by `RUST_LOG`) and, in a
//! build with the cargo feature `otlp`, OpenTelemetry traces of the produce path sent over
//! OTLP/HTTP (protobuf) to `[tracing] otlp_endpoint`.
//!
//! Spans carry Kafka's names: `kafka.request` (api, version, correlation id, client id) around
//! every Kafka request, `produce` (topic, partition, client id, acks) around each partition's
//! append and durability wait, `mqtt.publish` (topic, client id, QoS) around an MQTT publish.
//! The produce-path spans use the target [`PRODUCE_TARGET`]; only those are exported over OTLP,
//! so a node with an exporter ships its produce path and not every Fetch poll.

use serde::Deserialize;

/// The `tracing` target of the produce-path spans (Kafka Produce, MQTT publish), the ones
/// exported over OTLP.
pub const PRODUCE_TARGET: &str = "rill::produce";

/// `[tracing]`: where to send OpenTelemetry traces.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TracingConfig {
    /// Base URL of an OTLP/HTTP receiver, e.g. `http://127.0.0.1:4318` (spans are POSTed to
    /// `<otlp_endpoint>/v1/traces` as protobuf). Only a build with the `otlp` feature accepts it.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans (default `rill`).
    pub service_name: Option<String>,
}

impl TracingConfig {
    /// Why this config cannot run on this build, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let Some(endpoint) = &self.otlp_endpoint else {
            return Ok(());
        };
        if !cfg!(feature = "otlp") {
            return Err(
                "this rill was built without OTLP export: rebuild with `cargo build -p rill-gateway --features otlp`, or remove [tracing] otlp_endpoint"
                    .to_string(),
            );
        }
        if !endpoint.starts_with("http://") {
            return Err(format!(
                "{endpoint:?} is not an http:// URL (OTLP/HTTP without TLS; send to a local collector)"
            ));
        }
        Ok(())
    }
}

/// Why the subscriber could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (a bad endpoint).
    #[cfg(feature = "otlp")]
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The config asks for OTLP on a build without it.
    #[error("[tracing] otlp_endpoint: {0}")]
    Unsupported(String),
}

/// Keeps the OTLP exporter running; dropping it flushes the spans not yet sent.
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("OTLP exporter shutdown: {e}");
            }
        }
    }
}

fn log_filter() -> tracing_subscriber::EnvFilter {
    // openraft narrates every election and vote at INFO; its warnings and errors stay.
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"))
}

/// Install the global subscriber for `rill serve`. With an OTLP endpoint this must run inside
/// the node's tokio runtime: the span exporter is a task on it (no thread or runtime of its own).
pub fn init(config: &TracingConfig) -> Result<TelemetryGuard, TelemetryError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    config.check().map_err(TelemetryError::Unsupported)?;
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_filter(log_filter());
    let registry = tracing_subscriber::registry().with(logs);
    #[cfg(feature = "otlp")]
    if let Some(endpoint) = &config.otlp_endpoint {
        let (layer, provider) = otlp::layer(endpoint, config.service_name.as_deref())?;
        let _ = registry.with(layer).try_init();
        tracing::info!(endpoint, "exporting produce-path traces over OTLP/HTTP");
        return Ok(TelemetryGuard {
            provider: Some(provider),
        });
    }
    let _ = registry.try_init();
    Ok(TelemetryGuard::default())
}

#[cfg(feature = "otlp")]
mod otlp {
    //! The OTLP/HTTP span exporter: a batch processor on the node's tokio runtime, hyper as
    //! the HTTP client (no TLS: `http://` endpoints only).

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::Layer;

    use super::{TelemetryError, PRODUCE_TARGET};

    /// The layer that turns produce-path spans into OpenTelemetry spans, and its provider.
    pub fn layer<S>(
        endpoint: &str,
        service_name: Option<&str>,
    ) -> Result<(impl Layer<S>, SdkTracerProvider), TelemetryError>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .build()?;
        let processor =
            BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name.unwrap_or("rill").to_string())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("rill");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(Targets::new().with_target(PRODUCE_TARGET, tracing::Level::INFO));
        Ok((layer, provider))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_needs_the_feature_and_http() {
        let none = TracingConfig::default();
        assert!(none.check().is_ok());
        let cfg = TracingConfig {
            otlp_endpoint: Some("http://127.0.0.1:4318".to_string()),
            service_name: None,
        };
        assert_eq!(cfg.check().is_ok(), cfg!(feature = "otlp"));
        let https = TracingConfig {
            otlp_endpoint: Some("https://collector:4318".to_string()),
            service_name: None,
        };
        assert!(https.check().is_err());
    }
}
