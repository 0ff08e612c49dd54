//! Accept loops: plain TCP, MQTT over TLS (rustls with the ring provider; optional client
//! certificates, whose common name can stand in for the username), and MQTT over WebSocket,
//! plain or on the same TLS settings ([`super::websocket`]). Every transport ends in the same
//! session layer, [`connection::handle`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rill_core::liveness::{self, Liveness};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::config::TlsConfig;
use super::{connection, websocket, MqttError, MqttServer};

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

/// How the connections of one listener reach the session layer.
#[derive(Clone)]
pub enum Transport {
    /// MQTT on plain TCP.
    Tcp,
    /// MQTT over TLS.
    Tls(TlsAcceptor),
    /// MQTT over WebSocket (§6).
    WebSocket,
    /// MQTT over WebSocket over TLS.
    SecureWebSocket(TlsAcceptor),
}

impl Transport {
    fn name(&self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Tls(_) => "TLS",
            Transport::WebSocket => "WebSocket",
            Transport::SecureWebSocket(_) => "secure WebSocket",
        }
    }
}

/// Serves the connections of `listener` over `transport` until `shutdown` is cancelled; marks
/// `alive` at every accept and while idle.
pub async fn serve(
    server: Arc<MqttServer>,
    listener: TcpListener,
    transport: Transport,
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
                tokio::spawn(serve_connection(
                    server.clone(),
                    stream,
                    peer,
                    transport.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, transport = transport.name(), "MQTT accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// The handshakes of `transport` (TLS, the WebSocket upgrade), then the session.
async fn serve_connection(
    server: Arc<MqttServer>,
    stream: TcpStream,
    peer: SocketAddr,
    transport: Transport,
) {
    let handshake_timeout = Duration::from_secs(server.config().connect_timeout_secs.max(1));
    let max_packet = server.config().max_packet_size;
    match transport {
        Transport::Tcp => connection::handle(server, stream, peer, None).await,
        Transport::Tls(acceptor) => {
            if let Some((s, cn)) = tls_handshake(acceptor, stream, peer).await {
                connection::handle(server, s, peer, cn).await;
            }
        }
        Transport::WebSocket => {
            match websocket::accept(stream, max_packet, handshake_timeout).await {
                Ok(ws) => connection::handle(server, ws, peer, None).await,
                Err(e) => tracing::info!(%peer, error = %e, "MQTT WebSocket upgrade failed"),
            }
        }
        Transport::SecureWebSocket(acceptor) => {
            let Some((s, cn)) = tls_handshake(acceptor, stream, peer).await else {
                return;
            };
            match websocket::accept(s, max_packet, handshake_timeout).await {
                Ok(ws) => connection::handle(server, ws, peer, cn).await,
                Err(e) => tracing::info!(%peer, error = %e, "MQTT WebSocket upgrade failed"),
            }
        }
    }
}

/// The TLS handshake, and the common name of the client certificate if one was presented.
async fn tls_handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(TlsStream<TcpStream>, Option<String>)> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => {
            let cn = s
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| common_name(c.as_ref()));
            Some((s, cn))
        }
        Ok(Err(e)) => {
            let error = crate::tls::handshake_error(&e);
            tracing::info!(%peer, %error, "MQTT TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
            let verifier = crate::tls::client_verifier(ca, &cfg.crl_files, true, provider)?;
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

/// The bound addresses and accept tasks of a node's MQTT listeners.
pub struct Started {
    /// The plain TCP listener.
    pub mqtt: SocketAddr,
    /// The WebSocket listener, when configured.
    pub mqtt_ws: Option<SocketAddr>,
    /// The accept loops.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds `addr` and spawns the accept loop of `transport` on it.
async fn start_one(
    server: &Arc<MqttServer>,
    addr: &str,
    transport: Transport,
    shutdown: &CancellationToken,
    alive: &Liveness,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MqttError> {
    let listener = bind(addr).await?;
    let bound = listener.local_addr().map_err(|source| MqttError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    warn_if_open(server, bound);
    let task = tokio::spawn(serve(
        server.clone(),
        listener,
        transport,
        shutdown.clone(),
        alive.clone(),
    ));
    Ok((bound, task))
}

/// Starts the MQTT listeners of a node: plain TCP on `listen`, WebSocket on `ws_listen` when
/// set, and TLS / secure WebSocket when `[mqtt.tls]` sets them; every accept loop marks
/// `alive`.
pub async fn start(
    server: Arc<MqttServer>,
    listen: &str,
    ws_listen: Option<&str>,
    shutdown: CancellationToken,
    alive: Liveness,
) -> Result<Started, MqttError> {
    let (mqtt, task) = start_one(&server, listen, Transport::Tcp, &shutdown, &alive).await?;
    // Wills that persistent sessions kept across a restart wait again (or go out now).
    super::will::resume(&server);
    let mut tasks = vec![
        task,
        tokio::spawn(super::sys_topics::run(server.clone(), shutdown.clone())),
    ];
    let mut mqtt_ws = None;
    if let Some(ws) = ws_listen {
        let (addr, task) = start_one(&server, ws, Transport::WebSocket, &shutdown, &alive).await?;
        mqtt_ws = Some(addr);
        tasks.push(task);
    }
    if let Some(tls) = server.config().tls.clone() {
        let acceptor = tls_acceptor(&tls)?;
        let (addr, task) = start_one(
            &server,
            &tls.listen,
            Transport::Tls(acceptor.clone()),
            &shutdown,
            &alive,
        )
        .await?;
        tracing::info!(%addr, "MQTT TLS listener");
        tasks.push(task);
        if let Some(ws) = &tls.ws_listen {
            let (addr, task) = start_one(
                &server,
                ws,
                Transport::SecureWebSocket(acceptor),
                &shutdown,
                &alive,
            )
            .await?;
            tracing::info!(%addr, "MQTT secure WebSocket listener");
            tasks.push(task);
        }
    }
    Ok(Started {
        mqtt,
        mqtt_ws,
        tasks,
    })
}
