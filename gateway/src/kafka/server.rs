//! The Kafka listener: accepts TCP (optionally TLS) connections and runs each on its own task.
//!
//! On an SSL listener that requires client certificates (and not SASL), the certificate's
//! subject (RFC 2253, [`crate::x500`]) is mapped to the connection's principal by
//! `ssl.principal.mapping.rules` ([`SslPrincipalMapper`]); a certificate no rule applies to
//! closes the connection, as in Kafka. A certificate that does not chain to the listener's
//! `client_ca`, or has expired, fails the TLS handshake.

use std::sync::Arc;
use std::time::Duration;

use rill_core::liveness::{self, Liveness};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ssl_principal_mapper::SslPrincipalMapper;
use super::{connection, Context};

/// TLS of a Kafka listener.
#[derive(Clone)]
pub struct ListenerTls {
    /// The rustls acceptor (with a client certificate verifier when `client_ca` is set).
    pub acceptor: TlsAcceptor,
    /// Map client certificates to principals with these rules; `None` when the principal does
    /// not come from the certificate (no `client_ca`, or the listener requires SASL).
    pub principal_mapper: Option<Arc<SslPrincipalMapper>>,
}

/// The user name of a TLS connection's client certificate, or why the client is refused.
fn ssl_user(
    mapper: &SslPrincipalMapper,
    chain: Option<&[rustls_pki_types::CertificateDer<'static>]>,
) -> Result<Option<String>, String> {
    let Some(leaf) = chain.and_then(<[_]>::first) else {
        return Ok(None);
    };
    let dn = crate::x500::subject_dn(leaf).map_err(|e| e.to_string())?;
    mapper.name(&dn).map(Some).map_err(|e| e.to_string())
}

/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept connections until `shutdown` fires. Connection tasks are spawned on `tracker`, so the
/// caller can wait for in-flight requests to finish. Marks `alive` at every accept and while idle.
pub async fn run(
    ctx: Arc<Context>,
    listener: TcpListener,
    tls: Option<ListenerTls>,
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
                tracker.spawn(connection::serve(ctx, stream, peer, shutdown, None));
            }
            Some(tls) => {
                let tls = tls.clone();
                tracker.spawn(async move {
                    let accept = tls.acceptor.accept(stream);
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await {
                        Ok(Ok(tls_stream)) => {
                            let user = match &tls.principal_mapper {
                                None => Ok(None),
                                Some(m) => ssl_user(m, tls_stream.get_ref().1.peer_certificates()),
                            };
                            match user {
                                Ok(user) => {
                                    connection::serve(ctx, tls_stream, peer, shutdown, user).await
                                }
                                Err(reason) => {
                                    tracing::warn!(%peer, %reason, "client certificate refused");
                                }
                            }
                        }
                        Ok(Err(e)) => {
                            let error = crate::tls::handshake_error(&e);
                            tracing::warn!(%peer, %error, "TLS handshake failed");
                        }
                        Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}
