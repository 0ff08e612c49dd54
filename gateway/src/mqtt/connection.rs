//! One MQTT connection: CONNECT handling (protocol level, client id, auth, session takeover,
//! clean start / session expiry), then the packet loop.
//!
//! Publishes are pipelined: each read burst of PUBLISH packets is appended to the log at once,
//! and one future per burst waits for the group commit (`flush_to` on a blocking thread) and
//! then yields the burst's PUBACK / PUBREC packets, so acks leave in order, only after the
//! records are durable, while the connection keeps reading. Bad input closes this connection
//! only (with a DISCONNECT reason code on MQTT 5).

use rill_core::sync::LockExt;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::FuturesOrdered;
use futures::{Future, StreamExt};
use rill_core::log::{LogError, PartitionLog};
use rumqttc::v5::mqttbytes::v5::{self, DisconnectReasonCode as Reason};
use rumqttc::v5::mqttbytes::QoS;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::auth::Acl;
use super::codec::{AuthCode, AuthPacket, CodecError, Framer, Inbound, Level};
use super::delivery::Deliverer;
use super::enhanced_auth::{self, AuthFailure, Exchange};
use super::ingest::{IngestError, Prepared};
use super::metrics::Refusal;
use super::records::{Message, MessageProps};
use super::session_store::{StoredSession, StoredSubscription, StoredWill};
use super::sys_topics::{SysCounters, SysValues};
use super::topic;
use super::will::{self, Will};
use super::{ClientInfo, LiveClient, MqttServer};
use crate::memory_budget::{Reservation, READ_ALLOWANCE};

type AckFuture = Pin<Box<dyn Future<Output = Result<Vec<v5::Packet>, End>> + Send>>;

/// Why the packet loop ends.
#[derive(Debug)]
enum End {
    /// DISCONNECT from the client; `true` asks for the will to be published.
    Disconnect { will: bool },
    /// The peer went away or the network failed.
    Lost,
    /// We close the connection with this reason code and reason string (MQTT 5 DISCONNECT).
    Close(Reason, String),
}

/// An ack slot of a burst, in packet order.
enum Slot {
    /// A packet that only has to wait for the ones before it.
    Ready(Box<v5::Packet>),
    /// The PUBACK / PUBREC of `publishes[i]`, decided when the burst is appended.
    Publish(usize),
}

/// A publish of the burst, routed and waiting to be appended.
struct PendingPublish {
    prep: Prepared,
    pkid: u16,
    qos: QoS,
    /// The message, when it must also become the retained message.
    retain: Option<Message>,
}

/// What one connection is counted for in the memory budget while it lives, besides its read
/// buffer: its task, state, session, codec and write buffers (an estimate from the RSS of 1,000
/// idle connections of a debug build, 27 KiB each; docs/benchmarks.md).
const CONNECTION_BYTES: usize = 24 << 10;

/// A read buffer grown beyond this by a large packet is replaced by a small one once empty.
const MAX_IDLE_READ_BUFFER: usize = 64 << 10;

/// What one burst of publishes waiting for its fsync is counted for in the memory budget
/// besides its bytes on the wire: its future, its fsync wait on the blocking pool, its vectors.
const PENDING_BURST_BYTES: usize = 2 << 10;

/// What each acknowledgement of a waiting burst is counted for (its packet and slot).
const PENDING_ACK_BYTES: usize = 384;

/// The acks of one burst of publishes, released together after their logs are durable. The
/// burst's publishes are appended as one batch per partition log.
#[derive(Default)]
struct AckGroup {
    /// When the burst's packets were read (PUBACK latency starts here).
    started: Option<Instant>,
    flushes: Vec<(Arc<PartitionLog>, i64)>,
    slots: Vec<Slot>,
    publishes: Vec<PendingPublish>,
    packets: Vec<v5::Packet>,
    retained: Vec<Message>,
    /// The burst's bytes in the memory budget, given back when its acks are sent.
    memory: Option<Reservation>,
}

impl AckGroup {
    fn add_flush(&mut self, log: Arc<PartitionLog>, offset: i64) {
        match self.flushes.iter_mut().find(|(l, _)| Arc::ptr_eq(l, &log)) {
            Some((_, o)) => *o = (*o).max(offset),
            None => self.flushes.push((log, offset)),
        }
    }

    fn into_future(self, server: Arc<MqttServer>) -> AckFuture {
        Box::pin(async move {
            for (log, offset) in self.flushes {
                if let Err(e) = super::ingest::Ingest::flush(log, offset).await {
                    tracing::error!(error = %e, "MQTT publish not durable; closing connection");
                    return Err(close(
                        Reason::ImplementationSpecificError,
                        format!("publish not durable: {e}"),
                    ));
                }
            }
            if !self.retained.is_empty() {
                let store = server.retained.clone();
                let msgs = self.retained;
                let res =
                    tokio::task::spawn_blocking(move || msgs.iter().try_for_each(|m| store.set(m)))
                        .await;
                if !matches!(res, Ok(Ok(()))) {
                    tracing::error!("retained message store failed");
                    return Err(close(
                        Reason::ImplementationSpecificError,
                        "retained message store failed",
                    ));
                }
            }
            if let Some(started) = self.started {
                let acks = self
                    .packets
                    .iter()
                    .filter(|p| match p {
                        v5::Packet::PubAck(a) => a.reason == v5::PubAckReason::Success,
                        v5::Packet::PubRec(r) => r.reason == v5::PubRecReason::Success,
                        _ => false,
                    })
                    .count();
                server.metrics.acked(acks, started.elapsed());
            }
            drop(self.memory);
            Ok(self.packets)
        })
    }
}

/// Serves one connection until it ends.
pub async fn handle<S>(
    server: Arc<MqttServer>,
    stream: S,
    peer: SocketAddr,
    cert_name: Option<String>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The memory budget (issue 16): a connection is not read until its share fits with room
    // to spare for one maximum-size packet, so connections alone never spend the budget and
    // stall every read (the client waits in CONNECT meanwhile).
    let memory = server.memory().clone();
    let headroom = server.config.max_packet_size + READ_ALLOWANCE;
    let _connection = match memory.reserve(CONNECTION_BYTES + headroom).await {
        Ok(mut r) => {
            r.shrink_to(CONNECTION_BYTES);
            r
        }
        Err(e) => {
            tracing::error!(%peer, error = %e, "MQTT connection not served");
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut framer = Framer::new(server.config.max_packet_size);
    let mut inbuf = BytesMut::with_capacity(4096);
    let timeout = Duration::from_secs(server.config.connect_timeout_secs.max(1));
    let counters = &server.sys.counters;
    let first = tokio::time::timeout(timeout, async {
        loop {
            match framer.decode(&mut inbuf) {
                Ok(Some(p)) => {
                    counters.packet_in(false);
                    return Ok(Some(p));
                }
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            match rd.read_buf(&mut inbuf).await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => counters.bytes_in(n),
            }
        }
    })
    .await;
    let (connect, will, login) = match first {
        Ok(Ok(Some(v5::Packet::Connect(c, w, l)))) => (c, w, l),
        Ok(Err(CodecError::UnsupportedLevel(level))) => {
            tracing::info!(%peer, level, "MQTT CONNECT with unsupported protocol level refused");
            server.metrics.refused(Refusal::ProtocolVersion);
            // CONNACK "unacceptable protocol version" in the 3.1.1 form.
            let _ = wr.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            return;
        }
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "MQTT connection closed before CONNECT");
            return;
        }
        Ok(Ok(_)) | Err(_) => return,
    };
    let Some(level) = framer.level() else {
        return;
    };
    // §4.12: enhanced authentication runs before CONNACK.
    let props = connect.properties.as_ref();
    let enhanced = match props.and_then(|p| p.authentication_method.clone()) {
        Some(method) if level == Level::V5 => {
            let data = props
                .and_then(|p| p.authentication_data.clone())
                .unwrap_or_default();
            let exchange = enhanced_connect(
                &server,
                &mut framer,
                &mut rd,
                &mut wr,
                &mut inbuf,
                method,
                data,
            );
            match exchange.await {
                Some(a) => Some(a),
                None => return,
            }
        }
        _ => None,
    };
    let mut conn = match Conn::accept(
        server, framer, level, peer, connect, will, login, cert_name, enhanced, &mut wr,
    )
    .await
    {
        Some(c) => c,
        None => return,
    };
    let metrics = conn.server.metrics.clone();
    metrics.connected(level);
    let end = conn.run(&mut rd, &mut wr, inbuf).await;
    conn.finish(end, &mut wr).await;
    metrics.disconnected(level);
}

/// A client authenticated by enhanced authentication.
struct Authenticated {
    method: String,
    username: String,
    /// The server-final message, sent in CONNACK.
    server_final: Vec<u8>,
}

/// The CONNECT half of enhanced authentication: AUTH 0x18 with the server-first message, the
/// client's AUTH 0x18 with its final message, checked. `None` when refused (the CONNACK with
/// the reason was sent).
async fn enhanced_connect<R, W>(
    server: &Arc<MqttServer>,
    framer: &mut Framer,
    rd: &mut R,
    wr: &mut W,
    inbuf: &mut BytesMut,
    method: String,
    data: Bytes,
) -> Option<Authenticated>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use v5::ConnectReturnCode as Code;
    let counters = &server.sys.counters;
    let refuse = |code: Code, text: String| {
        vec![v5::Packet::ConnAck(v5::ConnAck {
            session_present: false,
            code,
            properties: Some(v5::ConnAckProperties {
                reason_string: Some(text),
                ..no_connack_props()
            }),
        })]
    };
    let failure = |e: AuthFailure| match e {
        AuthFailure::UnknownMethod(_) => (Code::BadAuthenticationMethod, e.to_string()),
        AuthFailure::Refused(_) => (Code::NotAuthorized, e.to_string()),
    };
    let srv = server.clone();
    let m = method.clone();
    let begun =
        tokio::task::spawn_blocking(move || enhanced_auth::begin(&srv.credentials, &m, &data))
            .await
            .ok()?;
    let (exchange, server_first) = match begun {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(method, error = %e, "MQTT enhanced authentication refused");
            let (code, text) = failure(e);
            send(counters, framer, wr, refuse(code, text)).await;
            return None;
        }
    };
    let mut buf = BytesMut::new();
    framer.encode_auth(
        &AuthPacket::new(AuthCode::Continue, &method, server_first),
        &mut buf,
    );
    counters.sent(1, 0, buf.len());
    if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
        return None;
    }
    let timeout = Duration::from_secs(server.config.connect_timeout_secs.max(1));
    let next = tokio::time::timeout(timeout, async {
        loop {
            match framer.decode_inbound(inbuf) {
                Ok(Some(p)) => {
                    counters.packet_in(false);
                    return Some(p);
                }
                Ok(None) => {}
                Err(_) => return None,
            }
            match rd.read_buf(inbuf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => counters.bytes_in(n),
            }
        }
    })
    .await;
    let client_final = match next {
        Ok(Some(Inbound::Auth(a)))
            if a.code == AuthCode::Continue && a.method.as_deref() == Some(method.as_str()) =>
        {
            a.data.unwrap_or_default()
        }
        Ok(Some(_)) => {
            // §4.12: only AUTH (or DISCONNECT) may follow until CONNACK.
            let text = "expected AUTH with the same method during authentication".to_string();
            send(counters, framer, wr, refuse(Code::ProtocolError, text)).await;
            return None;
        }
        _ => return None,
    };
    match exchange.finish(&client_final) {
        Ok((username, server_final)) => Some(Authenticated {
            method,
            username,
            server_final,
        }),
        Err(e) => {
            tracing::warn!(method, error = %e, "MQTT enhanced authentication failed");
            let (code, text) = failure(e);
            send(counters, framer, wr, refuse(code, text)).await;
            None
        }
    }
}

/// Copy the deliverer's subscriptions to what the web console shows.
fn show_subscriptions(info: &ClientInfo, deliverer: &Deliverer) {
    *info.subscriptions.lock_unpoisoned() = deliverer
        .stored()
        .into_iter()
        .map(|s| (s.raw_filter, s.qos))
        .collect();
}

struct Conn {
    server: Arc<MqttServer>,
    framer: Framer,
    level: Level,
    peer: SocketAddr,
    conn_id: u64,
    client_id: String,
    acl: Option<Acl>,
    keep_alive: Option<Duration>,
    expiry_secs: u32,
    will: Option<Will>,
    /// The will waiting out its delay once this connection was lost: saved with the session.
    pending_will: Option<StoredWill>,
    aliases: HashMap<u16, String>,
    /// Packet ids of QoS 1/2 publishes received on this connection whose PUBACK, PUBCOMP or
    /// failing PUBREC has not been sent: the client's send quota in use (§4.9).
    unacked_in: HashSet<u16>,
    /// Request Problem Information (§3.1.2.11.7): reason strings on acks only when true.
    problem_info: bool,
    /// Set when the session was resumed after a node restart: QoS 2 ids it had awaiting
    /// PUBREL are looked for in log records from this time (Unix ms) on.
    qos2_recovery: Option<i64>,
    deliverer: Deliverer,
    /// What the web console shows of this connection.
    info: Arc<ClientInfo>,
    kick: tokio::sync::mpsc::Receiver<()>,
    finished: tokio::sync::watch::Sender<bool>,
    last_save: Instant,
    /// New `$SYS` values (None: `$SYS` topics are off).
    sys: Option<tokio::sync::watch::Receiver<Arc<SysValues>>>,
    /// The enhanced authentication method of CONNECT (re-authentication must use it).
    auth_method: Option<String>,
    /// A re-authentication in progress (§4.12.1).
    reauth: Option<Exchange>,
    /// AUTH packets to send (rumqttc's packet type cannot carry them, see `codec`).
    auth_out: Vec<AuthPacket>,
}

/// How far before a session's last save a QoS 2 publish of it may have been stored: the session
/// is saved at least every [`LAST_SEEN_REFRESH`] while connected, and a publish whose PUBREC was
/// lost in a crash was stored moments before it.
const QOS2_RECOVERY_SLACK_MS: i64 = 2 * 60 * 1000;

/// How often a connected persistent session's last-seen time is saved.
const LAST_SEEN_REFRESH: Duration = Duration::from_secs(60);

/// The will's message properties, its Will Delay Interval and its Message Expiry Interval.
fn v5_props_of_will(w: &v5::LastWill) -> (MessageProps, u32, Option<u32>) {
    let Some(p) = &w.properties else {
        return (MessageProps::default(), 0, None);
    };
    let props = MessageProps {
        payload_format: p.payload_format_indicator,
        expires_at_ms: None,
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
    };
    (
        props,
        p.delay_interval.unwrap_or(0),
        p.message_expiry_interval,
    )
}

impl Conn {
    #[allow(clippy::too_many_arguments)]
    async fn accept<W: AsyncWrite + Unpin>(
        server: Arc<MqttServer>,
        mut framer: Framer,
        level: Level,
        peer: SocketAddr,
        connect: v5::Connect,
        will: Option<v5::LastWill>,
        login: Option<v5::Login>,
        cert_name: Option<String>,
        enhanced: Option<Authenticated>,
        wr: &mut W,
    ) -> Option<Conn> {
        use v5::ConnectReturnCode as Code;
        let props = connect.properties.clone().unwrap_or_default();
        framer.max_outgoing = props.max_packet_size.map(|m| m as usize);
        // A refusal carries a reason string (allowed whatever Request Problem Information says,
        // §3.1.2.11.7); 3.1.1 clients get only the return code.
        let refuse = |code: Code, text: &str| {
            server.metrics.refused(match code {
                Code::BadUserNamePassword | Code::NotAuthorized => Refusal::Auth,
                _ => Refusal::Connect,
            });
            v5::Packet::ConnAck(v5::ConnAck {
                session_present: false,
                code,
                properties: Some(v5::ConnAckProperties {
                    reason_string: Some(text.to_string()),
                    ..no_connack_props()
                }),
            })
        };
        // §4.11: redirection, where configured, before anything else is looked at.
        if let Some(reference) = &server.config.server_reference {
            let (code, text) = if server.config.server_moved {
                (Code::ServerMoved, "this server has moved")
            } else {
                (Code::UseAnotherServer, "use another server")
            };
            tracing::info!(%peer, reference, "MQTT client redirected");
            let redirect = v5::Packet::ConnAck(v5::ConnAck {
                session_present: false,
                code,
                properties: Some(v5::ConnAckProperties {
                    reason_string: Some(text.to_string()),
                    server_reference: Some(reference.clone()),
                    ..no_connack_props()
                }),
            });
            send(&server.sys.counters, &framer, wr, vec![redirect]).await;
            return None;
        }
        let mut client_id = connect.client_id.clone();
        let mut assigned = None;
        if client_id.is_empty() {
            if level == Level::V4 && !connect.clean_start {
                send(
                    &server.sys.counters,
                    &framer,
                    wr,
                    vec![refuse(
                        Code::ClientIdentifierNotValid,
                        "an empty client id needs a clean session",
                    )],
                )
                .await;
                return None;
            }
            client_id = format!("rill-{}", uuid::Uuid::new_v4().simple());
            assigned = Some(client_id.clone());
        }
        // Authentication.
        let username = match &enhanced {
            Some(a) => Some(a.username.clone()),
            None => login
                .as_ref()
                .map(|l| l.username.clone())
                .or(cert_name.clone()),
        };
        let acl = if server.config.auth.enabled {
            let ok = match (&login, &cert_name) {
                _ if enhanced.is_some() => true,
                (Some(l), _) => {
                    let srv = server.clone();
                    let (u, p) = (l.username.clone(), l.password.clone());
                    tokio::task::spawn_blocking(move || srv.credentials.verify(&u, p.as_bytes()))
                        .await
                        .ok()
                        .and_then(|r| {
                            r.map_err(|e| tracing::error!(error = %e, "credential store"))
                                .ok()
                        })
                        .unwrap_or(false)
                }
                (None, Some(_)) => true,
                (None, None) => false,
            };
            if !ok {
                tracing::warn!(%peer, client_id, user = ?username, "MQTT authentication failed");
                send(
                    &server.sys.counters,
                    &framer,
                    wr,
                    vec![refuse(
                        Code::BadUserNamePassword,
                        "bad user name or password",
                    )],
                )
                .await;
                return None;
            }
            Some(Acl::for_device(
                &server.config.auth,
                &client_id,
                username.as_deref().unwrap_or(""),
            ))
        } else {
            None
        };
        // Will message.
        let will = match will {
            Some(w) => {
                let Ok(topic_name) = String::from_utf8(w.topic.to_vec()) else {
                    send(
                        &server.sys.counters,
                        &framer,
                        wr,
                        vec![refuse(Code::TopicNameInvalid, "will topic is not UTF-8")],
                    )
                    .await;
                    return None;
                };
                if let Err(e) = topic::validate_name(&topic_name) {
                    let text = format!("invalid will topic: {e}");
                    send(
                        &server.sys.counters,
                        &framer,
                        wr,
                        vec![refuse(Code::TopicNameInvalid, &text)],
                    )
                    .await;
                    return None;
                }
                if topic::is_sys(&topic_name)
                    || acl.as_ref().is_some_and(|a| !a.may_publish(&topic_name))
                {
                    tracing::warn!(%peer, client_id, topic = topic_name, "will topic denied by ACL");
                    send(
                        &server.sys.counters,
                        &framer,
                        wr,
                        vec![refuse(Code::NotAuthorized, "will topic denied")],
                    )
                    .await;
                    return None;
                }
                let (props, delay_secs, message_expiry_secs) = v5_props_of_will(&w);
                Some(Will {
                    message: Message {
                        topic: topic_name,
                        payload: w.message.clone(),
                        qos: w.qos as u8,
                        retain: w.retain,
                        props,
                    },
                    delay_secs,
                    message_expiry_secs,
                })
            }
            None => None,
        };
        let expiry_secs = match level {
            Level::V4 if connect.clean_start => 0,
            Level::V4 => u32::MAX,
            Level::V5 => props
                .session_expiry_interval
                .unwrap_or(0)
                .min(server.config.max_session_expiry_secs),
        };
        // Take over an existing connection with the same client id.
        let conn_id = server.next_conn_id();
        let (kick_tx, kick_rx) = tokio::sync::mpsc::channel(1);
        let (fin_tx, fin_rx) = tokio::sync::watch::channel(false);
        let info = Arc::new(ClientInfo {
            peer,
            protocol: match level {
                Level::V4 => "3.1.1",
                Level::V5 => "5",
            },
            connected_at_ms: rill_core::clock::now_ms(),
            subscriptions: std::sync::Mutex::new(Vec::new()),
        });
        let previous = {
            let mut live = server.live.lock_unpoisoned();
            live.insert(
                client_id.clone(),
                LiveClient {
                    conn_id,
                    kick: kick_tx,
                    finished: fin_rx,
                    info: info.clone(),
                },
            )
        };
        let connected = server.live.lock_unpoisoned().len();
        server.sys.counters.connected(connected);
        if let Some(prev) = previous {
            let _ = prev.kick.try_send(());
            let mut fin = prev.finished;
            let _ = tokio::time::timeout(Duration::from_secs(5), fin.wait_for(|f| *f)).await;
        }
        // §3.1.3.2.2: a will waiting out its delay (also that of a connection just taken
        // over, or one kept across a node restart) is not sent when the session is resumed in
        // time; a Clean Start ends that session, so its will goes out now (durable before the
        // session, which holds it too, is deleted).
        let mut delayed_will = server.delayed_wills.take(&client_id);
        if connect.clean_start {
            if let Some(w) = delayed_will.take() {
                will::publish(&server, &client_id, w).await;
            }
        }
        // Session state.
        let stored = {
            let srv = server.clone();
            let id = client_id.clone();
            let clean = connect.clean_start;
            tokio::task::spawn_blocking(move || {
                if clean {
                    srv.sessions.delete(&id).map(|_| None)
                } else {
                    srv.sessions
                        .load(&id)
                        .map(|s| s.filter(|s| !s.expired(rill_core::clock::now_ms())))
                }
            })
            .await
        };
        let mut stored = match stored {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::error!(client_id, error = %e, "MQTT session store failed");
                send(
                    &server.sys.counters,
                    &framer,
                    wr,
                    vec![refuse(Code::ServerUnavailable, "session store failed")],
                )
                .await;
                return None;
            }
            Err(_) => return None,
        };
        match stored.as_mut() {
            // Resumed: the session's waiting will is cancelled, durably before CONNACK so a
            // crash cannot send it after all.
            Some(s) if s.pending_will.is_some() => {
                s.pending_will = None;
                let srv = server.clone();
                let id = client_id.clone();
                let session = s.clone();
                let saved =
                    tokio::task::spawn_blocking(move || srv.sessions.save(&id, &session)).await;
                if !matches!(saved, Ok(Ok(()))) {
                    tracing::error!(client_id, "MQTT session store failed");
                    send(
                        &server.sys.counters,
                        &framer,
                        wr,
                        vec![refuse(Code::ServerUnavailable, "session store failed")],
                    )
                    .await;
                    return None;
                }
            }
            Some(_) => {}
            // No session to resume after all (it ended just now): its will is due.
            None => {
                if let Some(w) = delayed_will.take() {
                    will::publish(&server, &client_id, w).await;
                }
            }
        }
        // Incoming QoS 2 packet ids awaiting PUBREL live in memory. A resumed session this node
        // has no entry for was left before a restart: its ids are then recovered lazily, from
        // the `mqtt.packet_id` of records in the log tail (see `Conn::stored_before_restart`).
        let qos2_recovery = {
            let mut map = server.qos2_incoming.lock_unpoisoned();
            if connect.clean_start {
                map.remove(&client_id);
            }
            let known = map.contains_key(&client_id);
            if expiry_secs > 0 {
                map.entry(client_id.clone()).or_default();
            }
            match &stored {
                Some(s) if !known => Some(
                    s.disconnected_at_ms
                        .unwrap_or(0)
                        .saturating_sub(QOS2_RECOVERY_SLACK_MS),
                ),
                _ => None,
            }
        };
        let client_recv_max = props.receive_maximum.unwrap_or(u16::MAX) as usize;
        let limit = client_recv_max.min(server.config.max_inflight as usize);
        let mut deliverer = Deliverer::new(
            server.clone(),
            conn_id,
            client_id.clone(),
            limit,
            level == Level::V5,
            framer.max_outgoing,
            props.topic_alias_max.unwrap_or(0),
        );
        let session_present = stored.is_some();
        let mut awaiting_pubcomp = Vec::new();
        if let Some(s) = stored {
            for sub in s.subscriptions {
                deliverer.subscribe(sub, true);
            }
            awaiting_pubcomp = s.awaiting_pubcomp;
        }
        show_subscriptions(&info, &deliverer);
        // §3.2.2.3.14: a Server Keep Alive in CONNACK replaces the client's keep alive.
        let server_keep_alive = server
            .config
            .server_keep_alive_secs
            .filter(|_| level == Level::V5);
        let keep_alive_secs = server_keep_alive.unwrap_or(connect.keep_alive);
        // §3.1.2.10: the server disconnects after 1.5 keep alive periods without a packet.
        let keep_alive =
            (keep_alive_secs > 0).then(|| Duration::from_millis(keep_alive_secs as u64 * 1500));
        let ack_props = (level == Level::V5).then(|| v5::ConnAckProperties {
            session_expiry_interval: (props.session_expiry_interval.is_some()
                && props.session_expiry_interval != Some(expiry_secs))
            .then_some(expiry_secs),
            receive_max: Some(server.config.receive_maximum),
            retain_available: Some(1),
            max_packet_size: Some(server.config.max_packet_size.min(u32::MAX as usize) as u32),
            assigned_client_identifier: assigned,
            topic_alias_max: Some(server.config.topic_alias_maximum),
            wildcard_subscription_available: Some(1),
            subscription_identifiers_available: Some(1),
            shared_subscription_available: Some(1),
            server_keep_alive,
            authentication_method: enhanced.as_ref().map(|a| a.method.clone()),
            authentication_data: enhanced
                .as_ref()
                .map(|a| Bytes::from(a.server_final.clone())),
            ..no_connack_props()
        });
        let connack = v5::Packet::ConnAck(v5::ConnAck {
            session_present,
            code: Code::Success,
            properties: ack_props,
        });
        let mut out = vec![connack];
        deliverer.resume_awaiting_pubcomp(&awaiting_pubcomp, &mut out);
        deliverer.pump(&mut out);
        if !send(&server.sys.counters, &framer, wr, out).await {
            return None;
        }
        tracing::debug!(%peer, client_id, ?level, session_present, "MQTT client connected");
        Some(Conn {
            framer,
            level,
            peer,
            conn_id,
            client_id,
            acl,
            keep_alive,
            expiry_secs,
            will,
            pending_will: None,
            aliases: HashMap::new(),
            unacked_in: HashSet::new(),
            problem_info: props.request_problem_info != Some(0),
            qos2_recovery,
            deliverer,
            info,
            kick: kick_rx,
            finished: fin_tx,
            last_save: Instant::now(),
            sys: server.sys.enabled().then(|| server.sys.watch()),
            auth_method: enhanced.map(|a| a.method),
            reauth: None,
            auth_out: Vec::new(),
            server,
        })
    }

    async fn run<R, W>(&mut self, rd: &mut R, wr: &mut W, mut inbuf: BytesMut) -> End
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut acks: FuturesOrdered<AckFuture> = FuturesOrdered::new();
        let recv_max = self.server.config.receive_maximum.max(1) as usize;
        let mut deadline = self.keep_alive.map(|k| Instant::now() + k);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let notify = self.deliverer.notify.clone();
        // The memory budget (issue 16): `held` counts what `inbuf` holds plus, once `armed`,
        // the allowance of the next read. Reading waits for that
        // allowance, so a spent budget stops reading the socket.
        let memory = self.server.memory().clone();
        let mut held = memory.charge(inbuf.len());
        let mut armed = false;
        // Packets that arrived together with CONNECT.
        let mut pending_input = !inbuf.is_empty();
        loop {
            let mut out = Vec::new();
            // A packet bigger than a read allowance is being read: finish it without waiting
            // (its bytes are held already; waiting could deadlock, see `memory_budget`).
            if !armed && inbuf.len() > READ_ALLOWANCE {
                held.grow(READ_ALLOWANCE);
                armed = true;
            }
            if armed {
                inbuf.reserve(READ_ALLOWANCE);
            }
            // Not reading while Receive Maximum publishes await their durable append: the keep
            // alive counts from when reading resumes (the client is not the one that is silent).
            if acks.len() >= recv_max {
                deadline = self.keep_alive.map(|k| Instant::now() + k);
            }
            if pending_input {
                pending_input = false;
                if let Err(end) = self
                    .process(&mut inbuf, &mut held, &mut acks, &mut out)
                    .await
                {
                    send(&self.server.sys.counters, &self.framer, wr, out).await;
                    return end;
                }
            } else {
                tokio::select! {
                    _ = self.kick.recv() => {
                        tracing::info!(client_id = %self.client_id, "MQTT session taken over by a new connection");
                        return close(Reason::SessionTakenOver, "session taken over by a new connection");
                    }
                    Some(res) = acks.next(), if !acks.is_empty() => match res {
                        Ok(packets) => {
                            self.release_quota(&packets);
                            out.extend(packets);
                        }
                        Err(end) => return end,
                    },
                    r = memory.reserve(READ_ALLOWANCE), if !armed && acks.len() < recv_max => match r {
                        Ok(r) => {
                            held.absorb(r);
                            armed = true;
                            // The keep alive counts from when we read again: while the budget
                            // was spent the client's packets (PINGREQ too) waited unread.
                            deadline = self.keep_alive.map(|k| Instant::now() + k);
                        }
                        Err(e) => return close(Reason::ImplementationSpecificError, e.to_string()),
                    },
                    r = rd.read_buf(&mut inbuf), if armed && acks.len() < recv_max => match r {
                        Ok(0) | Err(_) => return End::Lost,
                        Ok(n) => {
                            armed = false;
                            // The buffer may have had room for more than the allowance.
                            if inbuf.len() > held.bytes() {
                                held.grow(inbuf.len() - held.bytes());
                            }
                            self.server.sys.counters.bytes_in(n);
                            deadline = self.keep_alive.map(|k| Instant::now() + k);
                            if let Err(end) = self.process(&mut inbuf, &mut held, &mut acks, &mut out).await {
                                send(&self.server.sys.counters, &self.framer, wr, out).await;
                                return end;
                            }
                        }
                    },
                    _ = notify.notified() => {}
                    _ = sys_changed(&mut self.sys) => {
                        if let Some(values) = self.sys.as_mut().map(|r| r.borrow_and_update().clone()) {
                            if self.deliverer.has_sys_subscription() {
                                self.deliverer.sys_update(&values, &mut out);
                            }
                        }
                    }
                    _ = sleep_until_opt(deadline), if armed && acks.len() < recv_max => {
                        tracing::info!(client_id = %self.client_id, "MQTT keepalive expired");
                        return close(Reason::KeepAliveTimeout, "no packet within 1.5 times the keep alive");
                    }
                    _ = tick.tick() => {
                        ticks += 1;
                        if ticks.is_multiple_of(2) {
                            self.deliverer.refresh();
                        }
                        self.save_progress().await;
                    }
                }
            }
            // A large packet grew the read buffer: give the memory back once it is handled, so
            // an idle connection keeps a small buffer.
            if inbuf.is_empty() && inbuf.capacity() > MAX_IDLE_READ_BUFFER {
                inbuf = BytesMut::with_capacity(READ_ALLOWANCE);
            }
            if !self.auth_out.is_empty() && !self.send_auth(wr).await {
                return End::Lost;
            }
            self.deliverer.pump(&mut out);
            if !out.is_empty() && !send(&self.server.sys.counters, &self.framer, wr, out).await {
                return End::Lost;
            }
        }
    }

    /// Writes the queued AUTH packets; false when the connection is gone.
    async fn send_auth<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> bool {
        let mut buf = BytesMut::new();
        let n = self.auth_out.len() as u64;
        for a in self.auth_out.drain(..) {
            self.framer.encode_auth(&a, &mut buf);
        }
        self.server.sys.counters.sent(n, 0, buf.len());
        wr.write_all(&buf).await.is_ok() && wr.flush().await.is_ok()
    }

    /// Handles every whole packet in `inbuf`. The bytes they took move from `held` (what the
    /// connection holds of the memory budget) to the burst's acks; `held` keeps what is left
    /// in `inbuf`.
    async fn process(
        &mut self,
        inbuf: &mut BytesMut,
        held: &mut Reservation,
        acks: &mut FuturesOrdered<AckFuture>,
        out: &mut Vec<v5::Packet>,
    ) -> Result<(), End> {
        let mut group = AckGroup {
            started: Some(Instant::now()),
            ..AckGroup::default()
        };
        let before = inbuf.len();
        let result = loop {
            let packet = match self.framer.decode_inbound(inbuf) {
                Ok(Some(Inbound::Auth(a))) => {
                    self.server.sys.counters.packet_in(false);
                    match self.on_auth(a).await {
                        Ok(()) => continue,
                        Err(end) => break Err(end),
                    }
                }
                Ok(Some(Inbound::Packet(p))) => {
                    self.server
                        .sys
                        .counters
                        .packet_in(matches!(p, v5::Packet::Publish(_)));
                    p
                }
                Ok(None) => break Ok(()),
                Err(e) => {
                    tracing::info!(peer = %self.peer, client_id = %self.client_id, error = %e, "bad MQTT packet; closing connection");
                    let reason = match e {
                        CodecError::TooLarge { .. } => {
                            self.server.metrics.refused(Refusal::Oversize);
                            Reason::PacketTooLarge
                        }
                        _ => Reason::MalformedPacket,
                    };
                    break Err(close(reason, e.to_string()));
                }
            };
            if let Err(end) = self.on_packet(packet, &mut group, out).await {
                break Err(end);
            }
        };
        let mut taken = held.split_off(before.saturating_sub(inbuf.len()));
        held.shrink_to(inbuf.len());
        let result = match self.wait_for_room(&group).await {
            Ok(()) => result.and(self.commit(&mut group)),
            Err(end) => Err(end),
        };
        if result.is_ok() && (!group.packets.is_empty() || !group.flushes.is_empty()) {
            taken.grow(PENDING_BURST_BYTES + group.packets.len() * PENDING_ACK_BYTES);
            group.memory = Some(taken);
            acks.push_back(group.into_future(self.server.clone()));
        }
        result
    }

    async fn on_packet(
        &mut self,
        packet: v5::Packet,
        group: &mut AckGroup,
        out: &mut Vec<v5::Packet>,
    ) -> Result<(), End> {
        match packet {
            v5::Packet::Publish(p) => self.on_publish(p, group),
            v5::Packet::PubAck(a) => {
                self.deliverer.puback(a.pkid);
                Ok(())
            }
            v5::Packet::PubRec(a) => {
                let mut rel = v5::PubRel::new(a.pkid, None);
                if !self.deliverer.pubrec(a.pkid) {
                    rel.reason = v5::PubRelReason::PacketIdentifierNotFound;
                }
                out.push(v5::Packet::PubRel(rel));
                Ok(())
            }
            v5::Packet::PubComp(a) => {
                self.deliverer.pubcomp(a.pkid);
                Ok(())
            }
            v5::Packet::PubRel(r) => {
                let known = self
                    .server
                    .qos2_incoming
                    .lock_unpoisoned()
                    .get_mut(&self.client_id)
                    .is_some_and(|s| s.remove(&r.pkid));
                let mut comp = v5::PubComp::new(r.pkid, None);
                // After a restart, an unknown id is the release of a message stored before it:
                // a client sends PUBREL only after our PUBREC, which follows the durable append.
                if !known && self.qos2_recovery.is_none() {
                    comp.reason = v5::PubCompReason::PacketIdentifierNotFound;
                }
                group
                    .slots
                    .push(Slot::Ready(Box::new(v5::Packet::PubComp(comp))));
                Ok(())
            }
            v5::Packet::Subscribe(s) => self.on_subscribe(s, out).await,
            v5::Packet::Unsubscribe(u) => {
                let reasons = u
                    .filters
                    .iter()
                    .map(|f| {
                        if self.deliverer.unsubscribe(f) {
                            v5::UnsubAckReason::Success
                        } else {
                            v5::UnsubAckReason::NoSubscriptionExisted
                        }
                    })
                    .collect();
                self.persist_subscriptions().await;
                out.push(v5::Packet::UnsubAck(v5::UnsubAck {
                    pkid: u.pkid,
                    reasons,
                    properties: None,
                }));
                Ok(())
            }
            v5::Packet::PingReq(_) => {
                out.push(v5::Packet::PingResp(v5::PingResp));
                Ok(())
            }
            v5::Packet::Disconnect(d) => {
                if let Some(secs) = d.properties.and_then(|p| p.session_expiry_interval) {
                    if self.expiry_secs == 0 && secs != 0 {
                        // §3.14.2.2.2: a session that expires at disconnect cannot be revived.
                        return Err(close(
                            Reason::ProtocolError,
                            "session expiry set on DISCONNECT after CONNECT had none",
                        ));
                    }
                    self.expiry_secs = secs.min(self.server.config.max_session_expiry_secs);
                }
                Err(End::Disconnect {
                    will: d.reason_code == Reason::DisconnectWithWillMessage,
                })
            }
            other => {
                tracing::info!(client_id = %self.client_id, packet = ?other, "unexpected MQTT packet; closing connection");
                Err(close(
                    Reason::ProtocolError,
                    format!("unexpected {} packet", packet_name(&other)),
                ))
            }
        }
    }

    /// Re-authentication (§4.12.1): AUTH 0x19 with the CONNECT's method starts it, AUTH 0x18
    /// continues it; success is AUTH 0x00 with the server-final message, failure DISCONNECT
    /// 0x87. AUTH on a connection that did not use enhanced authentication, or with another
    /// method, is a Protocol Error (MQTT-4.12.0-7, MQTT-4.12.1-1).
    async fn on_auth(&mut self, a: AuthPacket) -> Result<(), End> {
        let Some(method) = self.auth_method.clone() else {
            return Err(close(
                Reason::ProtocolError,
                "AUTH without enhanced authentication at CONNECT",
            ));
        };
        if a.method.as_deref() != Some(method.as_str()) {
            return Err(close(
                Reason::ProtocolError,
                "re-authentication must use the CONNECT's authentication method",
            ));
        }
        let data = a.data.unwrap_or_default();
        match (a.code, self.reauth.take()) {
            (AuthCode::ReAuthenticate, None) => {
                let srv = self.server.clone();
                let m = method.clone();
                let begun = tokio::task::spawn_blocking(move || {
                    enhanced_auth::begin(&srv.credentials, &m, &data)
                })
                .await
                .map_err(|_| close(Reason::ImplementationSpecificError, "authentication task"))?;
                match begun {
                    Ok((exchange, server_first)) => {
                        self.reauth = Some(exchange);
                        self.auth_out.push(AuthPacket::new(
                            AuthCode::Continue,
                            &method,
                            server_first,
                        ));
                        Ok(())
                    }
                    Err(e) => {
                        tracing::warn!(client_id = %self.client_id, error = %e, "MQTT re-authentication refused");
                        Err(close(Reason::NotAuthorized, e.to_string()))
                    }
                }
            }
            (AuthCode::Continue, Some(exchange)) => match exchange.finish(&data) {
                Ok((_, server_final)) => {
                    tracing::debug!(client_id = %self.client_id, "MQTT client re-authenticated");
                    self.auth_out
                        .push(AuthPacket::new(AuthCode::Success, &method, server_final));
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(client_id = %self.client_id, error = %e, "MQTT re-authentication failed");
                    Err(close(Reason::NotAuthorized, e.to_string()))
                }
            },
            _ => Err(close(
                Reason::ProtocolError,
                "AUTH out of order in re-authentication",
            )),
        }
    }

    /// Frees the client's send quota of the publishes these outgoing packets finish (§4.9: a
    /// PUBACK, a PUBCOMP, or a PUBREC with a failure code).
    fn release_quota(&mut self, packets: &[v5::Packet]) {
        for p in packets {
            let done = match p {
                v5::Packet::PubAck(a) => Some(a.pkid),
                v5::Packet::PubComp(a) => Some(a.pkid),
                v5::Packet::PubRec(a) if (a.reason as u8) >= 0x80 => Some(a.pkid),
                _ => None,
            };
            if let Some(pkid) = done {
                self.unacked_in.remove(&pkid);
            }
        }
    }

    /// Whether a resent (DUP) QoS 2 PUBLISH was stored before a node restart: its PUBREC may
    /// have been lost with the node (§4.3.3: it must not be stored twice). Only for sessions
    /// resumed after a restart; looks for the record (same client, packet id and value) in
    /// the tail of the partition the publish maps to, which is where the first copy went.
    fn stored_before_restart(&self, pkid: u16, prep: &Prepared) -> bool {
        let Some(since) = self.qos2_recovery else {
            return false;
        };
        match super::ingest::Ingest::stored_qos2(
            &prep.log,
            since,
            &self.client_id,
            pkid,
            prep.record.value.as_ref(),
        ) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(client_id = %self.client_id, error = %e, "log tail unreadable; QoS 2 publish stored");
                false
            }
        }
    }

    /// A reason string for an ack, when the client asked for problem information.
    fn diagnostic(&self, text: impl Into<String>) -> Option<String> {
        self.problem_info.then(|| text.into())
    }

    fn on_publish(&mut self, p: v5::Publish, group: &mut AckGroup) -> Result<(), End> {
        // §3.3.4 / §4.9: a client may have at most our Receive Maximum QoS 1/2 publishes
        // unfinished; one more is answered with DISCONNECT 0x93 (MQTT-3.3.4-8). 3.1.1 has no
        // such limit: there the connection is simply not read while acks are pending.
        if self.level == Level::V5 && p.qos != QoS::AtMostOnce && !self.unacked_in.contains(&p.pkid)
        {
            let max = self.server.config.receive_maximum;
            if self.unacked_in.len() >= max as usize {
                tracing::info!(client_id = %self.client_id, receive_maximum = max, "MQTT Receive Maximum exceeded; closing connection");
                return Err(close(
                    Reason::ReceiveMaximumExceeded,
                    format!("more than {max} QoS 1/2 publishes unacknowledged"),
                ));
            }
            self.unacked_in.insert(p.pkid);
        }
        self.server.metrics.publish_received(p.qos);
        let props = p.properties.unwrap_or_default();
        // Topic and topic alias.
        let mut topic_name = match String::from_utf8(p.topic.to_vec()) {
            Ok(t) => t,
            Err(_) => {
                tracing::info!(client_id = %self.client_id, "publish topic is not UTF-8; closing connection");
                return Err(close(Reason::TopicNameInvalid, "topic name is not UTF-8"));
            }
        };
        if let Some(alias) = props.topic_alias {
            // §3.3.2.3.4: 0 or above our Topic Alias Maximum is 0x94; an alias never set is a
            // Protocol Error (§4.13).
            if alias == 0 || alias > self.server.config.topic_alias_maximum {
                return Err(close(
                    Reason::TopicAliasInvalid,
                    format!(
                        "topic alias {alias} outside 1..={}",
                        self.server.config.topic_alias_maximum
                    ),
                ));
            }
            if topic_name.is_empty() {
                match self.aliases.get(&alias) {
                    Some(t) => topic_name = t.clone(),
                    None => {
                        return Err(close(
                            Reason::ProtocolError,
                            format!("topic alias {alias} was never set"),
                        ))
                    }
                }
            } else {
                self.aliases.insert(alias, topic_name.clone());
            }
        }
        if let Err(e) = topic::validate_name(&topic_name) {
            tracing::info!(client_id = %self.client_id, topic = topic_name, error = %e, "invalid publish topic; closing connection");
            return Err(close(
                Reason::TopicNameInvalid,
                format!("invalid topic name: {e}"),
            ));
        }
        let v5 = self.level == Level::V5;
        let text = self.diagnostic(format!("publish to {topic_name} denied"));
        let nack = |group: &mut AckGroup,
                    pkid: u16,
                    qos: QoS,
                    puback: v5::PubAckReason,
                    pubrec: v5::PubRecReason| {
            match qos {
                QoS::AtLeastOnce => {
                    let mut a = v5::PubAck::new(pkid, ack_props(text.clone()));
                    a.reason = puback;
                    group
                        .slots
                        .push(Slot::Ready(Box::new(v5::Packet::PubAck(a))));
                }
                QoS::ExactlyOnce => {
                    let mut a = v5::PubRec::new(pkid, rec_props(text.clone()));
                    a.reason = pubrec;
                    group
                        .slots
                        .push(Slot::Ready(Box::new(v5::Packet::PubRec(a))));
                }
                QoS::AtMostOnce => {}
            }
        };
        if topic::is_sys(&topic_name) {
            // §4.7.2: `$` topics are the server's; `$SYS` values are made by the node. MQTT 5
            // gets 0x87; a 3.1.1 client (no negative acks) gets its ack, and the message is
            // dropped, as Mosquitto does.
            tracing::info!(client_id = %self.client_id, topic = topic_name, "publish to a $SYS topic dropped");
            let text = self.diagnostic(format!("{topic_name} is a $SYS topic, read-only"));
            let pkid = p.pkid;
            match p.qos {
                QoS::AtLeastOnce => {
                    let mut a = v5::PubAck::new(pkid, ack_props(text));
                    a.reason = v5::PubAckReason::NotAuthorized;
                    group
                        .slots
                        .push(Slot::Ready(Box::new(v5::Packet::PubAck(a))));
                }
                QoS::ExactlyOnce => {
                    let mut a = v5::PubRec::new(pkid, rec_props(text));
                    if v5 {
                        a.reason = v5::PubRecReason::NotAuthorized;
                    } else {
                        // 3.1.1: the PUBREL that follows gets its PUBCOMP.
                        self.server
                            .qos2_incoming
                            .lock_unpoisoned()
                            .entry(self.client_id.clone())
                            .or_default()
                            .insert(pkid);
                    }
                    group
                        .slots
                        .push(Slot::Ready(Box::new(v5::Packet::PubRec(a))));
                }
                QoS::AtMostOnce => {}
            }
            return Ok(());
        }
        if self
            .acl
            .as_ref()
            .is_some_and(|a| !a.may_publish(&topic_name))
        {
            tracing::warn!(client_id = %self.client_id, topic = topic_name, "MQTT publish denied by ACL");
            self.server.metrics.dropped(Refusal::Acl);
            if !v5 {
                return Err(close(Reason::NotAuthorized, "publish denied"));
            }
            nack(
                group,
                p.pkid,
                p.qos,
                v5::PubAckReason::NotAuthorized,
                v5::PubRecReason::NotAuthorized,
            );
            return Ok(());
        }
        if p.qos == QoS::ExactlyOnce {
            let mut map = self.server.qos2_incoming.lock_unpoisoned();
            let set = map.entry(self.client_id.clone()).or_default();
            if !set.insert(p.pkid) {
                // Already stored; the PUBREC (again) follows the earlier one.
                group
                    .slots
                    .push(Slot::Ready(Box::new(v5::Packet::PubRec(v5::PubRec::new(
                        p.pkid, None,
                    )))));
                return Ok(());
            }
        }
        let msg = Message {
            topic: topic_name,
            payload: p.payload,
            qos: p.qos as u8,
            retain: p.retain,
            props: MessageProps {
                payload_format: props.payload_format_indicator,
                expires_at_ms: props
                    .message_expiry_interval
                    .map(|s| rill_core::clock::now_ms() + s as i64 * 1000),
                content_type: props.content_type,
                response_topic: props.response_topic,
                correlation_data: props.correlation_data,
                user_properties: props.user_properties,
            },
        };
        let span = tracing::info_span!(
            target: crate::telemetry::PRODUCE_TARGET,
            "mqtt.publish",
            topic = %msg.topic,
            client_id = %self.client_id,
            qos = msg.qos,
            log_topic = tracing::field::Empty,
            partition = tracing::field::Empty,
        );
        let prepared = span.in_scope(|| {
            let prepared = self.server.ingest.prepare(&msg, &self.client_id);
            if let Ok(prep) = &prepared {
                span.record("log_topic", prep.log_topic.as_str());
                span.record("partition", prep.log.partition());
            }
            prepared
        });
        match prepared {
            Ok(mut prep) => {
                if p.qos == QoS::ExactlyOnce {
                    super::records::set_packet_id(&mut prep.record, p.pkid);
                    if p.dup && self.stored_before_restart(p.pkid, &prep) {
                        tracing::info!(client_id = %self.client_id, pkid = p.pkid, "QoS 2 publish stored before the restart; not stored again");
                        group.slots.push(Slot::Ready(Box::new(v5::Packet::PubRec(
                            v5::PubRec::new(p.pkid, None),
                        ))));
                        return Ok(());
                    }
                }
                let idx = group.publishes.len();
                group.publishes.push(PendingPublish {
                    prep,
                    pkid: p.pkid,
                    qos: p.qos,
                    retain: msg.retain.then_some(msg),
                });
                if p.qos != QoS::AtMostOnce {
                    group.slots.push(Slot::Publish(idx));
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(client_id = %self.client_id, topic = msg.topic, error = %e, "MQTT publish not stored");
                self.server.metrics.dropped(Refusal::NotStored);
                match self.failed_ack(p.pkid, p.qos, &e) {
                    Some(Some(nack)) => {
                        group.slots.push(Slot::Ready(Box::new(nack)));
                        Ok(())
                    }
                    Some(None) => Ok(()),
                    None => Err(close(
                        Reason::ImplementationSpecificError,
                        format!("publish not stored: {e}"),
                    )),
                }
            }
        }
    }

    /// Backlog pause: while publishes of this burst would go to a topic whose producers are held
    /// back, wait before appending (the connection is not read meanwhile: TCP backpressure, and
    /// no PUBACK/PUBREC until appended).
    async fn wait_for_room(&mut self, group: &AckGroup) -> Result<(), End> {
        let topics: Vec<&str> = group
            .publishes
            .iter()
            .map(|p| p.prep.log_topic.as_str())
            .collect();
        if !self.server.ingest.held_back(&topics) {
            return Ok(());
        }
        tracing::info!(client_id = %self.client_id, ?topics, "MQTT publishes held back by the backlog policy");
        tokio::select! {
            _ = self.server.ingest.wait_for_room(&topics) => Ok(()),
            _ = self.kick.recv() => Err(close(Reason::SessionTakenOver, "session taken over by a new connection")),
        }
    }

    /// The negative ack of a publish that could not be stored: `Some(Some(packet))` on MQTT 5,
    /// `Some(None)` for QoS 0, `None` when the (3.1.1) connection must be closed instead.
    fn failed_ack(&self, pkid: u16, qos: QoS, e: &IngestError) -> Option<Option<v5::Packet>> {
        if qos == QoS::ExactlyOnce {
            if let Some(s) = self
                .server
                .qos2_incoming
                .lock_unpoisoned()
                .get_mut(&self.client_id)
            {
                s.remove(&pkid);
            }
        }
        if qos == QoS::AtMostOnce {
            return Some(None);
        }
        if self.level != Level::V5 {
            return None;
        }
        let bad_cbor = matches!(e, IngestError::BadCbor(_));
        // Issue 11: a partition led by another cluster node is not written here (0x97, until
        // publishes are forwarded to the leader).
        let led_elsewhere = matches!(e, IngestError::Log(LogError::NotLeader { .. }));
        let text = self.diagnostic(format!("not stored: {e}"));
        Some(Some(match qos {
            QoS::AtLeastOnce => {
                let mut a = v5::PubAck::new(pkid, ack_props(text));
                a.reason = if bad_cbor {
                    v5::PubAckReason::PayloadFormatInvalid
                } else if led_elsewhere {
                    v5::PubAckReason::QuotaExceeded
                } else {
                    v5::PubAckReason::ImplementationSpecificError
                };
                v5::Packet::PubAck(a)
            }
            _ => {
                let mut a = v5::PubRec::new(pkid, rec_props(text));
                a.reason = if bad_cbor {
                    v5::PubRecReason::PayloadFormatInvalid
                } else if led_elsewhere {
                    v5::PubRecReason::QuotaExceeded
                } else {
                    v5::PubRecReason::ImplementationSpecificError
                };
                v5::Packet::PubRec(a)
            }
        }))
    }

    /// Appends the burst's publishes (one batch per partition log, in order) and turns the ack
    /// slots into packets.
    fn commit(&mut self, group: &mut AckGroup) -> Result<(), End> {
        let publishes = std::mem::take(&mut group.publishes);
        let mut by_log: Vec<(Arc<PartitionLog>, Vec<usize>)> = Vec::new();
        for (i, p) in publishes.iter().enumerate() {
            match by_log.iter_mut().find(|(l, _)| Arc::ptr_eq(l, &p.prep.log)) {
                Some((_, v)) => v.push(i),
                None => by_log.push((p.prep.log.clone(), vec![i])),
            }
        }
        let mut failed: HashMap<usize, IngestError> = HashMap::new();
        for (_, idxs) in by_log {
            let batch: Vec<&Prepared> = idxs.iter().map(|i| &publishes[*i].prep).collect();
            match self.server.ingest.append_prepared(&batch) {
                Ok(a) => group.add_flush(a.log, a.last_offset),
                Err(e) => {
                    tracing::error!(client_id = %self.client_id, error = %e, count = idxs.len(), "MQTT publishes not stored");
                    for _ in &idxs {
                        self.server.metrics.dropped(Refusal::NotStored);
                    }
                    let kind = e.to_string();
                    // Kept typed where the negative ack depends on it (a partition led elsewhere).
                    let led_elsewhere = match &e {
                        IngestError::Log(LogError::NotLeader { topic, partition }) => {
                            Some((topic.clone(), *partition))
                        }
                        _ => None,
                    };
                    for i in idxs {
                        let err = match &led_elsewhere {
                            Some((topic, partition)) => IngestError::Log(LogError::NotLeader {
                                topic: topic.clone(),
                                partition: *partition,
                            }),
                            None => IngestError::Join(kind.clone()),
                        };
                        failed.insert(i, err);
                    }
                }
            }
        }
        for (i, p) in publishes.iter().enumerate() {
            if failed.contains_key(&i) {
                continue;
            }
            if let Some(msg) = &p.retain {
                if p.qos == QoS::AtMostOnce {
                    let store = self.server.retained.clone();
                    let msg = msg.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = store.set(&msg) {
                            tracing::error!(error = %e, "retained message store failed");
                        }
                    });
                } else {
                    group.retained.push(msg.clone());
                }
            }
        }
        for slot in std::mem::take(&mut group.slots) {
            match slot {
                Slot::Ready(p) => group.packets.push(*p),
                Slot::Publish(i) => {
                    let p = &publishes[i];
                    if let Some(e) = failed.get(&i) {
                        match self.failed_ack(p.pkid, p.qos, e) {
                            Some(Some(nack)) => group.packets.push(nack),
                            Some(None) => {}
                            None => {
                                return Err(close(
                                    Reason::ImplementationSpecificError,
                                    format!("publish not stored: {e}"),
                                ))
                            }
                        }
                        continue;
                    }
                    group.packets.push(match p.qos {
                        QoS::AtLeastOnce => v5::Packet::PubAck(v5::PubAck::new(p.pkid, None)),
                        _ => v5::Packet::PubRec(v5::PubRec::new(p.pkid, None)),
                    });
                }
            }
        }
        Ok(())
    }

    async fn on_subscribe(
        &mut self,
        s: v5::Subscribe,
        out: &mut Vec<v5::Packet>,
    ) -> Result<(), End> {
        let sub_id = s.properties.as_ref().and_then(|p| p.id);
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut retained_for = Vec::new();
        let mut problems = Vec::new();
        for f in &s.filters {
            let parsed = match topic::parse_subscription(&f.path) {
                Ok(p) => p,
                Err(e) => {
                    tracing::info!(client_id = %self.client_id, filter = f.path, error = %e, "invalid subscription");
                    codes.push(v5::SubscribeReasonCode::TopicFilterInvalid);
                    problems.push(format!("{}: {e}", f.path));
                    continue;
                }
            };
            if f.nolocal && parsed.share_group.is_some() {
                // MQTT-3.8.3-4: No Local on a shared subscription is a Protocol Error.
                tracing::info!(client_id = %self.client_id, filter = f.path, "No Local on a shared subscription");
                return Err(close(
                    Reason::ProtocolError,
                    "No Local on a shared subscription",
                ));
            }
            if self
                .acl
                .as_ref()
                .is_some_and(|a| !a.may_subscribe(&parsed.filter))
            {
                tracing::warn!(client_id = %self.client_id, filter = f.path, "MQTT subscription denied by ACL");
                self.server.metrics.refused(Refusal::Acl);
                codes.push(v5::SubscribeReasonCode::NotAuthorized);
                problems.push(format!("{}: not authorized", f.path));
                continue;
            }
            let stored = StoredSubscription {
                raw_filter: f.path.clone(),
                qos: f.qos as u8,
                no_local: f.nolocal,
                retain_as_published: f.preserve_retain,
                subscription_id: sub_id,
                cursors: Vec::new(),
            };
            let existed = self.deliverer.subscribe(stored, false);
            let send_retained = match f.retain_forward_rule {
                v5::RetainForwardRule::OnEverySubscribe => true,
                v5::RetainForwardRule::OnNewSubscribe => !existed,
                v5::RetainForwardRule::Never => false,
            };
            if send_retained && parsed.share_group.is_none() {
                retained_for.push(f.path.clone());
            }
            codes.push(v5::SubscribeReasonCode::Success(f.qos));
        }
        self.persist_subscriptions().await;
        let properties = (!problems.is_empty())
            .then(|| self.diagnostic(problems.join("; ")))
            .flatten()
            .map(|r| v5::SubAckProperties {
                reason_string: Some(r),
                user_properties: Vec::new(),
            });
        out.push(v5::Packet::SubAck(v5::SubAck {
            pkid: s.pkid,
            return_codes: codes,
            properties,
        }));
        for f in retained_for {
            self.deliverer.retained(&f, out);
        }
        Ok(())
    }

    /// The session as stored. While connected, `disconnected_at_ms` is the time of this save
    /// (refreshed at least every [`LAST_SEEN_REFRESH`]), so a session whose node crashed while the
    /// client was connected still expires.
    fn session_record(&self) -> StoredSession {
        StoredSession {
            expiry_secs: self.expiry_secs,
            disconnected_at_ms: Some(rill_core::clock::now_ms()),
            subscriptions: self.deliverer.stored(),
            awaiting_pubcomp: self.deliverer.awaiting_pubcomp(),
            pending_will: self.pending_will.clone(),
        }
    }

    /// Writes the session (subscriptions and cursors) now, for persistent sessions.
    async fn persist_subscriptions(&mut self) {
        show_subscriptions(&self.info, &self.deliverer);
        if self.expiry_secs == 0 {
            return;
        }
        self.write_session().await;
    }

    async fn write_session(&mut self) {
        let record = self.session_record();
        let shared = self.deliverer.shared_cursors();
        self.deliverer.dirty = false;
        self.last_save = Instant::now();
        if self.expiry_secs == 0 && shared.is_empty() {
            return;
        }
        let srv = self.server.clone();
        let id = self.client_id.clone();
        let persistent = self.expiry_secs > 0;
        let res = tokio::task::spawn_blocking(move || {
            for (key, cursors) in &shared {
                srv.sessions.save_shared(key, cursors)?;
            }
            if persistent {
                srv.sessions.save(&id, &record)
            } else {
                Ok(())
            }
        })
        .await;
        if !matches!(res, Ok(Ok(()))) {
            tracing::error!(client_id = %self.client_id, "MQTT session state not saved");
        }
    }

    /// Saves changed cursors (called periodically).
    async fn save_progress(&mut self) {
        let stale = self.expiry_secs > 0 && self.last_save.elapsed() >= LAST_SEEN_REFRESH;
        if self.deliverer.dirty || stale {
            self.write_session().await;
        }
    }

    async fn finish<W: AsyncWrite + Unpin>(mut self, end: End, wr: &mut W) {
        let publish_will = match &end {
            End::Disconnect { will } => *will,
            End::Lost | End::Close(..) => true,
        };
        if let End::Close(reason, text) = &end {
            if self.level == Level::V5 && *reason != Reason::NormalDisconnection {
                let disconnect = v5::Disconnect {
                    reason_code: *reason,
                    // A reason string also makes clients that only read the reason code when
                    // properties follow (paho) see it. Sent even without Request Problem
                    // Information (§3.1.2.11.7 allows it on DISCONNECT).
                    properties: Some(v5::DisconnectProperties {
                        session_expiry_interval: None,
                        reason_string: Some(if text.is_empty() {
                            format!("{reason:?}")
                        } else {
                            text.clone()
                        }),
                        user_properties: Vec::new(),
                        server_reference: None,
                    }),
                };
                send(
                    &self.server.sys.counters,
                    &self.framer,
                    wr,
                    vec![v5::Packet::Disconnect(disconnect)],
                )
                .await;
            }
        }
        let _ = wr.shutdown().await;
        // §3.1.3.2.2: the will is sent when the Will Delay Interval has passed or the session
        // ends (its expiry), whichever comes first, unless the session is resumed before (see
        // `accept`). A waiting will is saved with the session below (its save at disconnect).
        let will = if publish_will { self.will.take() } else { None };
        let (will_now, will_later) = match will {
            Some(w) if w.delay_secs.min(self.expiry_secs) > 0 => {
                let delay = w.delay_secs.min(self.expiry_secs);
                let due_ms = rill_core::clock::now_ms().saturating_add(delay as i64 * 1000);
                if !rill_core::failpoints::is_set(rill_core::failpoints::MQTT_WILL_IN_MEMORY_ONLY) {
                    match w.to_stored(due_ms) {
                        Ok(stored) => self.pending_will = Some(stored),
                        Err(e) => {
                            tracing::error!(client_id = %self.client_id, error = %e, "MQTT will not saved with its session")
                        }
                    }
                }
                (None, Some((due_ms, w)))
            }
            other => (other, None),
        };
        // Session state.
        if self.expiry_secs > 0 {
            self.write_session().await;
        } else {
            self.write_session().await; // shared group cursors only
            let srv = self.server.clone();
            let id = self.client_id.clone();
            let _ = tokio::task::spawn_blocking(move || srv.sessions.delete(&id)).await;
            self.server
                .qos2_incoming
                .lock_unpoisoned()
                .remove(&self.client_id);
        }
        // The waiting will is in place before a connection taking this session over (it waits
        // for `finished`) looks for it.
        if let Some((due_ms, w)) = will_later {
            will::schedule(&self.server, &self.client_id, self.conn_id, due_ms, w);
        }
        {
            let mut live = self.server.live.lock_unpoisoned();
            if live
                .get(&self.client_id)
                .is_some_and(|l| l.conn_id == self.conn_id)
            {
                live.remove(&self.client_id);
            }
        }
        let _ = self.finished.send(true);
        tracing::debug!(peer = %self.peer, client_id = %self.client_id, ?end, "MQTT client disconnected");
        if let Some(w) = will_now {
            let server = self.server.clone();
            let client_id = self.client_id.clone();
            tokio::spawn(async move {
                will::publish(&server, &client_id, w).await;
            });
        }
    }
}

/// PUBACK properties carrying `reason_string`, if any.
fn ack_props(reason_string: Option<String>) -> Option<v5::PubAckProperties> {
    reason_string.map(|r| v5::PubAckProperties {
        reason_string: Some(r),
        user_properties: Vec::new(),
    })
}

/// PUBREC properties carrying `reason_string`, if any.
fn rec_props(reason_string: Option<String>) -> Option<v5::PubRecProperties> {
    reason_string.map(|r| v5::PubRecProperties {
        reason_string: Some(r),
        user_properties: Vec::new(),
    })
}

/// CONNACK properties with nothing set.
fn no_connack_props() -> v5::ConnAckProperties {
    v5::ConnAckProperties {
        session_expiry_interval: None,
        receive_max: None,
        max_qos: None,
        retain_available: None,
        max_packet_size: None,
        assigned_client_identifier: None,
        topic_alias_max: None,
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: None,
        subscription_identifiers_available: None,
        shared_subscription_available: None,
        server_keep_alive: None,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    }
}

/// Ends the connection with `reason` and a reason string.
fn close(reason: Reason, text: impl Into<String>) -> End {
    End::Close(reason, text.into())
}

/// The name of a packet type, for reason strings.
fn packet_name(p: &v5::Packet) -> &'static str {
    use v5::Packet as P;
    match p {
        P::Connect(..) => "CONNECT",
        P::ConnAck(_) => "CONNACK",
        P::Publish(_) => "PUBLISH",
        P::PubAck(_) => "PUBACK",
        P::PubRec(_) => "PUBREC",
        P::PubRel(_) => "PUBREL",
        P::PubComp(_) => "PUBCOMP",
        P::Subscribe(_) => "SUBSCRIBE",
        P::SubAck(_) => "SUBACK",
        P::Unsubscribe(_) => "UNSUBSCRIBE",
        P::UnsubAck(_) => "UNSUBACK",
        P::PingReq(_) => "PINGREQ",
        P::PingResp(_) => "PINGRESP",
        P::Disconnect(_) => "DISCONNECT",
        P::Auth(_) => "AUTH",
    }
}

/// Waits for new `$SYS` values (forever when they are off).
async fn sys_changed(rx: &mut Option<tokio::sync::watch::Receiver<Arc<SysValues>>>) {
    if let Some(r) = rx {
        if r.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Encodes and writes packets (counted for `$SYS`); false when the connection is gone.
async fn send<W: AsyncWrite + Unpin>(
    counters: &SysCounters,
    framer: &Framer,
    wr: &mut W,
    packets: Vec<v5::Packet>,
) -> bool {
    let mut buf = BytesMut::new();
    let (mut count, mut publishes) = (0, 0);
    for p in packets {
        let publish = matches!(p, v5::Packet::Publish(_));
        match framer.encode(p, &mut buf) {
            Ok(()) => {
                count += 1;
                publishes += u64::from(publish);
            }
            Err(e) => tracing::debug!(error = %e, "MQTT packet not sent"),
        }
    }
    if buf.is_empty() {
        return true;
    }
    counters.sent(count, publishes, buf.len());
    let data: Bytes = buf.freeze();
    wr.write_all(&data).await.is_ok() && wr.flush().await.is_ok()
}
