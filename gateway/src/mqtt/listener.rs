//! Accept loops: plain TCP and MQTT over TLS (rustls with the ring provider; optional client
//! certificates, whose common name can stand in for the username).

use std::net::SocketAddr;
use std::sync::Arc;

use rill_core::liveness::{self, Liveness};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::config::TlsConfig;
use super::{connection, MqttError, MqttServer};

/// Binds the plain MQTT listener.
pub async fn bind(addr: &str) -> Result<TcpListener, MqttError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MqttError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Warns when devices could connect from other hosts without authentication.
pub fn warn_if_open(server: &MqttServer, addr: SocketAddr) {
    if !addr.ip().is_loopback() && !server.config().auth.enabled {
        tracing::warn!(%addr, "MQTT listener accepts unauthenticated devices on a non-loopback address; set [mqtt.auth] enabled = true");
    }
}

/// Serves plain TCP connections until `shutdown` is cancelled; marks `alive` at every accept and
/// while idle.
pub async fn serve_tcp(
    server: Arc<MqttServer>,
    listener: TcpListener,
    shutdown: CancellationToken,
    alive: Liveness,
) {
    let mut idle = tokio::time::interval(liveness::MARK_EVERY);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
            _ = idle.tick() => {
                alive.mark();
                continue;
            }
        };
        alive.mark();
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection::handle(server.clone(), stream, peer, None));
            }
            Err(e) => {
                tracing::warn!(error = %e, "MQTT accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// The TLS acceptor for `[mqtt.tls]`.
pub fn tls_acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, MqttError> {
    let tls = |what: &str, e: &dyn std::fmt::Display| MqttError::Tls(format!("{what}: {e}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| tls(&cfg.cert.display().to_string(), &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls(&cfg.cert.display().to_string(), &e))?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key)
        .map_err(|e| tls(&cfg.key.display().to_string(), &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("protocol versions", &e))?;
    let config = match &cfg.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in
                CertificateDer::pem_file_iter(ca).map_err(|e| tls(&ca.display().to_string(), &e))?
            {
                let c = c.map_err(|e| tls(&ca.display().to_string(), &e))?;
                roots.add(c).map_err(|e| tls("client CA", &e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| tls("client verifier", &e))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)
        }
        None => builder.with_no_client_auth().with_single_cert(certs, key),
    }
    .map_err(|e| tls("certificate", &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The common name of a DER certificate's subject, if it has one (a small DER walk: the
/// subject is the 6th element of TBSCertificate; CN is OID 2.5.4.3).
fn common_name(der: &[u8]) -> Option<String> {
    const CN_OID: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
    // Search the subject for the CN attribute; the issuer comes first, so take the last CN.
    let mut found = None;
    let mut i = 0;
    while let Some(pos) = der[i..].windows(CN_OID.len()).position(|w| w == CN_OID) {
        let start = i + pos + CN_OID.len();
        let tag = *der.get(start)?;
        let len = *der.get(start + 1)? as usize;
        if matches!(tag, 0x0c | 0x13 | 0x16) && len < 0x80 {
            if let Some(v) = der.get(start + 2..start + 2 + len) {
                found = std::str::from_utf8(v).ok().map(str::to_string);
            }
        }
        i = start;
    }
    found
}

/// Serves TLS connections until `shutdown` is cancelled; marks `alive` at every accept and while
/// idle.
pub async fn serve_tls(
    server: Arc<MqttServer>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shutdown: CancellationToken,
    alive: Liveness,
) {
    let mut idle = tokio::time::interval(liveness::MARK_EVERY);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
            _ = idle.tick() => {
                alive.mark();
                continue;
            }
        };
        alive.mark();
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "MQTT TLS accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(stream),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "MQTT TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let cn = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| common_name(c.as_ref()));
            connection::handle(server, tls, peer, cn).await;
        });
    }
}

/// Starts the MQTT listeners of a node: plain TCP on `listen`, and TLS when configured; both
/// accept loops mark `alive`. Returns the bound plain address and the accept tasks.
pub async fn start(
    server: Arc<MqttServer>,
    listen: &str,
    shutdown: CancellationToken,
    alive: Liveness,
) -> Result<(SocketAddr, Vec<tokio::task::JoinHandle<()>>), MqttError> {
    let listener = bind(listen).await?;
    let addr = listener.local_addr().map_err(|source| MqttError::Bind {
        addr: listen.to_string(),
        source,
    })?;
    warn_if_open(&server, addr);
    let mut tasks = vec![tokio::spawn(serve_tcp(
        server.clone(),
        listener,
        shutdown.clone(),
        alive.clone(),
    ))];
    if let Some(tls) = server.config().tls.clone() {
        let acceptor = tls_acceptor(&tls)?;
        let l = bind(&tls.listen).await?;
        if let Ok(a) = l.local_addr() {
            tracing::info!(addr = %a, "MQTT TLS listener");
            warn_if_open(&server, a);
        }
        tasks.push(tokio::spawn(serve_tls(
            server, l, acceptor, shutdown, alive,
        )));
    }
    Ok((addr, tasks))
}
