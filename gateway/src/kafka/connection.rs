//! One client connection: 4-byte length-prefixed frames, requests handled in order, deferred
//! responses (flush waits, long polls) pipelined and written back in request order; finished
//! responses are written also while a later request is still being handled (a Produce held back
//! by the backlog policy).
//!
//! Memory budget (issue 16): before each frame is read the connection reserves a read
//! allowance from the node's [`crate::memory_budget::MemoryBudget`], waiting (not reading its
//! socket) while the budget is spent; the frame is then counted until its response is written.
//! A frame bigger than the whole budget closes the connection.
//!
//! A frame over `socket.request.max.bytes`, a malformed request, an unknown API key or an
//! unsupported version closes this connection only, with a log line. So does a request other
//! than ApiVersions/SaslHandshake/SaslAuthenticate before SASL authentication, when the listener
//! requires it ([`auth::Session`]); a failed authentication closes after its response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::future::{self, BoxFuture};
use futures::stream::FuturesOrdered;
use futures::{FutureExt, SinkExt, StreamExt};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::auth::Session;
use super::reply::Reply;
use super::request::{self, Decoded};
use super::{api_support, api_versions, dispatch, response_errors, Context};
use crate::memory_budget::{Reservation, READ_ALLOWANCE};
use crate::metrics::RequestTimes;
use crate::telemetry::PRODUCE_TARGET;

/// Requests whose responses may be outstanding at once on one connection (Kafka clients pipeline
/// up to 5 by default); reading pauses beyond this.
pub const MAX_IN_FLIGHT: usize = 64;

/// An encoded response frame, or nothing (acks=0), or a failure to encode (closes).
type Outgoing = BoxFuture<'static, Option<Response>>;

/// A finished response and what `/metrics` records once it is written.
struct Response {
    frame: Result<Bytes, String>,
    /// The request's API (None: a raw SASL token) and its times so far.
    timing: Option<Timing>,
    /// The request frame's bytes in the memory budget, given back once this is written.
    memory: Option<Reservation>,
}

/// Times of one request, completed when its response is written.
struct Timing {
    api: &'static str,
    received: Instant,
    request_bytes: usize,
    times: RequestTimes,
}

impl Response {
    fn untimed(frame: Result<Bytes, String>) -> Response {
        Response {
            frame,
            timing: None,
            memory: None,
        }
    }
}

fn codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max_frame)
        .new_codec()
}

/// Serve one connection until the client closes it, it misbehaves, or `shutdown` fires (then
/// in-flight requests finish and their responses are written first). `ssl_user`: the user name
/// mapped from the client's certificate, if the listener takes it as the principal.
pub async fn serve<S>(
    ctx: Arc<Context>,
    stream: S,
    peer: SocketAddr,
    shutdown: CancellationToken,
    ssl_user: Option<String>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    ctx.metrics.connection_opened();
    let (r, w) = tokio::io::split(stream);
    let mut reader = FramedRead::new(r, codec(ctx.socket_request_max_bytes));
    let mut writer = FramedWrite::new(w, codec(usize::MAX >> 1));
    let mut pending: FuturesOrdered<Outgoing> = FuturesOrdered::new();
    let mut reading = true;
    let mut session = Session::new(ctx.sasl.clone()).with_ssl_user(ssl_user);
    // The memory budget allowance of the next frame (see the module documentation).
    let mut room: Option<Reservation> = None;
    loop {
        if !reading && pending.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            Some(out) = pending.next(), if !pending.is_empty() => {
                if !write_out(&ctx, &mut writer, out, peer).await {
                    break;
                }
            }
            _ = shutdown.cancelled(), if reading => {
                reading = false;
            }
            r = ctx.memory.reserve(READ_ALLOWANCE), if reading && room.is_none() && pending.len() < MAX_IN_FLIGHT => {
                match r {
                    Ok(r) => room = Some(r),
                    Err(e) => {
                        tracing::error!(%peer, error = %e, "closing Kafka connection");
                        break;
                    }
                }
            }
            frame = reader.next(), if reading && room.is_some() && pending.len() < MAX_IN_FLIGHT => {
                match frame {
                    None => reading = false,
                    Some(Err(e)) => {
                        ctx.metrics.protocol_error();
                        tracing::warn!(%peer, error = %e, "closing Kafka connection: bad frame");
                        break;
                    }
                    Some(Ok(frame)) => {
                        let received = Instant::now();
                        let mut held = room.take().unwrap_or_else(|| Reservation::none(&ctx.memory));
                        if frame.len() > ctx.memory.limit() {
                            ctx.metrics.protocol_error();
                            tracing::warn!(%peer, bytes = frame.len(), budget = ctx.memory.limit(), "closing Kafka connection: request bigger than the whole memory budget");
                            break;
                        }
                        if frame.len() > held.bytes() {
                            held.grow(frame.len() - held.bytes());
                        } else {
                            held.shrink_to(frame.len());
                        }
                        // Earlier responses keep flowing while this request is handled (a
                        // Produce held back by the backlog policy may wait for seconds).
                        let handled = if session.expects_raw_token() {
                            Some(raw_token(&mut session, frame.freeze(), peer))
                        } else {
                            let handling =
                                handle_frame(&ctx, frame.freeze(), received, peer, &mut session);
                            tokio::pin!(handling);
                            loop {
                                tokio::select! {
                                    biased;
                                    r = &mut handling => break Some(r),
                                    Some(out) = pending.next(), if !pending.is_empty() => {
                                        if !write_out(&ctx, &mut writer, out, peer).await {
                                            break None;
                                        }
                                    }
                                }
                            }
                        };
                        match handled {
                            None => break,
                            Some(Ok(Some(out))) => pending.push_back(
                                out.map(move |resp| {
                                    resp.map(|r| Response {
                                        memory: Some(held),
                                        ..r
                                    })
                                })
                                .boxed(),
                            ),
                            Some(Ok(None)) => {}
                            Some(Err(reason)) => {
                                ctx.metrics.protocol_error();
                                tracing::warn!(%peer, %reason, "closing Kafka connection");
                                break;
                            }
                        }
                        if session.must_close() {
                            // Write the refusal, then close (as Kafka does).
                            reading = false;
                        }
                    }
                }
            }
        }
    }
    ctx.metrics.connection_closed();
    tracing::debug!(%peer, "connection closed");
}

/// Handle one Kafka request frame of an already authenticated inter-node connection (the
/// cluster listener, `session` from [`Session::cluster_peer`]) to its response frame, `None`
/// when it has none (acks=0); `Err` closes the connection.
pub async fn handle_cluster_frame(
    ctx: &Arc<Context>,
    frame: Bytes,
    peer: SocketAddr,
    session: &mut Session,
) -> Result<Option<Bytes>, String> {
    match handle_frame(ctx, frame, Instant::now(), peer, session).await? {
        None => Ok(None),
        Some(out) => match out.await {
            None => Ok(None),
            Some(response) => {
                let len = response.frame.as_ref().map_or(0, Bytes::len);
                if let Some(mut t) = response.timing {
                    t.times.total = t.received.elapsed();
                    ctx.metrics
                        .request_done(t.api, t.times, t.request_bytes, Some(len));
                }
                response.frame.map(Some)
            }
        },
    }
}

/// A raw SASL token after SaslHandshake v0: the answer is a raw token too; a failure closes the
/// connection without one (Kafka's legacy flow).
fn raw_token(
    session: &mut Session,
    frame: Bytes,
    peer: SocketAddr,
) -> Result<Option<Outgoing>, String> {
    match session.authenticate(&frame) {
        Ok(token) => Ok(Some(
            future::ready(Some(Response::untimed(Ok(Bytes::from(token))))).boxed(),
        )),
        Err(failure) => {
            tracing::debug!(%peer, code = failure.code, "raw SASL token refused");
            Err(failure.message)
        }
    }
}

/// Write one finished response (then record its times); `false` when the connection must close.
async fn write_out<W: AsyncWrite + Unpin>(
    ctx: &Context,
    writer: &mut FramedWrite<W, LengthDelimitedCodec>,
    out: Option<Response>,
    peer: SocketAddr,
) -> bool {
    let Some(out) = out else {
        return true;
    };
    // The request's bytes are given back once its response is written (or the write failed).
    let _memory = out.memory;
    match out.frame {
        Ok(frame) => {
            let len = frame.len();
            match writer.send(frame).await {
                Ok(()) => {
                    if let Some(mut t) = out.timing {
                        t.times.total = t.received.elapsed();
                        ctx.metrics
                            .request_done(t.api, t.times, t.request_bytes, Some(len));
                    }
                    true
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "write failed; closing");
                    false
                }
            }
        }
        Err(reason) => {
            tracing::error!(%peer, %reason, "cannot encode response; closing connection");
            false
        }
    }
}

/// Decode and dispatch one frame (`received`: when it was read off the socket). `Ok(None)`: no
/// response (acks=0). `Err`: close the connection.
async fn handle_frame(
    ctx: &Arc<Context>,
    frame: Bytes,
    received: Instant,
    peer: SocketAddr,
    session: &mut Session,
) -> Result<Option<Outgoing>, String> {
    let request_bytes = frame.len();
    match request::decode_request(frame) {
        Err(e) => Err(e.to_string()),
        Ok(Decoded::UnsupportedApiVersions {
            correlation_id,
            version,
        }) => {
            tracing::debug!(%peer, version, "ApiVersions version too new; answering in v0");
            let frame =
                api_versions::unsupported_version_frame(correlation_id).map_err(|e| e.to_string());
            Ok(Some(future::ready(Some(Response::untimed(frame))).boxed()))
        }
        Ok(Decoded::Request(req)) => {
            let api = req.api_key;
            let api_name = api_support::api_name(api);
            let version = req.header.request_api_version;
            let correlation_id = req.header.correlation_id;
            ctx.metrics.request(api_name);
            tracing::trace!(%peer, ?api, version, correlation_id, "request");
            if !session.admits(api) {
                return Err(format!("{api:?} before SASL authentication"));
            }
            let metrics = ctx.metrics.clone();
            let encode = move |body: ResponseKind, times: RequestTimes| {
                if metrics.enabled() {
                    metrics.response_errors(api_name, &response_errors::error_codes(&body));
                }
                let frame = request::encode_response(api, version, correlation_id, &body)
                    .map_err(|e| format!("{api:?} v{version}: {e:#}"));
                Response {
                    frame,
                    timing: Some(Timing {
                        api: api_name,
                        received,
                        request_bytes,
                        times,
                    }),
                    memory: None,
                }
            };
            let client_id = req.header.client_id.as_deref().unwrap_or("");
            let span = if api == ApiKey::Produce {
                tracing::info_span!(target: PRODUCE_TARGET, "kafka.request", api = api_name, version, correlation_id, client_id, %peer)
            } else {
                tracing::info_span!("kafka.request", api = api_name, version, correlation_id, client_id, %peer)
            };
            let started = Instant::now();
            let reply = dispatch::dispatch(ctx, &req.header, req.body, peer, session)
                .instrument(span.clone())
                .await;
            let handled = Instant::now();
            let times = RequestTimes {
                queue: started - received,
                local: handled - started,
                ..RequestTimes::default()
            };
            match reply {
                Reply::Now(body) => Ok(Some(future::ready(Some(encode(body, times))).boxed())),
                Reply::Later(fut) => Ok(Some(
                    fut.instrument(span)
                        .map(move |body| {
                            let times = RequestTimes {
                                remote: handled.elapsed(),
                                ..times
                            };
                            Some(encode(body, times))
                        })
                        .boxed(),
                )),
                Reply::Nothing => {
                    // acks=0: no response frame; the request's times end here.
                    ctx.metrics.request_done(
                        api_name,
                        RequestTimes {
                            total: received.elapsed(),
                            ..times
                        },
                        request_bytes,
                        None,
                    );
                    Ok(None)
                }
                Reply::Close(reason) => Err(reason),
            }
        }
    }
}
