//! The Kafka listener: accepts TCP (optionally TLS) connections and runs each on its own task.

use std::sync::Arc;
use std::time::Duration;

use rill_core::liveness::{self, Liveness};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{connection, Context};

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept connections until `shutdown` fires. Connection tasks are spawned on `tracker`, so the
/// caller can wait for in-flight requests to finish. Marks `alive` at every accept and while idle.
pub async fn run(
    ctx: Arc<Context>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    alive: Liveness,
) {
    let mut idle = tokio::time::interval(liveness::MARK_EVERY);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
            _ = idle.tick() => {
                alive.mark();
                continue;
            }
        };
        alive.mark();
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "set_nodelay failed");
        }
        tracing::debug!(%peer, "Kafka connection accepted");
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        match &tls {
            None => {
                tracker.spawn(connection::serve(ctx, stream, peer, shutdown));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tracker.spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => {
                            connection::serve(ctx, tls_stream, peer, shutdown).await
                        }
                        Ok(Err(e)) => tracing::warn!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}
