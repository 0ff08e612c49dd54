//! The cluster listener: one port for all inter-node traffic, Kafka-framed.
//!
//! A connection authenticates before its first RPC ([`super::auth`]: [`rpc::CLUSTER_HELLO`],
//! then [`rpc::CLUSTER_PROOF`]); anything else first closes it. Then every frame is one of:
//! - a private RPC ([`super::rpc`]): openraft's AppendEntries / Vote / InstallSnapshot, or a
//!   forwarded controller command; each carries the sender's cluster id, node id and
//!   incarnation, checked against the handshake and the retired incarnations,
//! - Kafka's BrokerRegistration (62) and BrokerHeartbeat (63), answered by the active
//!   controller,
//! - ApiVersions, answered with the Kafka table plus the APIs above,
//! - any other Kafka request, handled by the Kafka layer with a session marked
//!   [`Listener::Cluster`](crate::kafka::auth::Listener::Cluster) (the replica Fetch path checks
//!   it).
//!
//! Requests on one connection are handled one at a time, in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, BrokerHeartbeatRequest, BrokerRegistrationRequest, RequestHeader, ResponseHeader,
    ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use rill_core::controller::meta_properties::kafka_uuid_string;
use rill_core::controller::ControllerRequest;
use rill_core::sync::LockExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::auth;
use super::controller::Controller;
use super::peer::{BoxedIo, MAX_FRAME};
use super::rpc::{self, Envelope, Hello, HelloAccepted, Proof, Refusal};
use crate::kafka::auth::Session;
use crate::kafka::request::{self, Decoded};
use crate::kafka::{api_versions, connection, Context};

/// How long a connecting node may take to authenticate.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Kafka APIs this listener answers itself (beyond the Kafka layer's table).
const CONTROLLER_APIS: [(ApiKey, i16, i16); 2] = [
    (ApiKey::BrokerRegistration, 0, 4),
    (ApiKey::BrokerHeartbeat, 0, 1),
];

/// The authenticated peer of a connection.
#[derive(Debug, Clone, Copy)]
struct PeerIdentity {
    node_id: i32,
    incarnation: Uuid,
    directory_id: Uuid,
}

/// Accepts inter-node connections until `shutdown`.
pub async fn run(
    listener: TcpListener,
    controller: Arc<Controller>,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cluster listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (controller, ctx, shutdown) = (controller.clone(), ctx.clone(), shutdown.clone());
        tracker.spawn(async move {
            serve(stream, peer, controller, ctx, shutdown).await;
        });
    }
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

async fn read_frame(framed: &mut Framed<BoxedIo, LengthDelimitedCodec>) -> Option<Bytes> {
    match framed.next().await {
        Some(Ok(f)) => Some(f.freeze()),
        _ => None,
    }
}

/// The handshake; the peer's identity, or `None` (closed, with a log line).
async fn authenticate(
    framed: &mut Framed<BoxedIo, LengthDelimitedCodec>,
    peer: SocketAddr,
    controller: &Controller,
) -> Option<PeerIdentity> {
    let id = &controller.identity;
    let frame = read_frame(framed).await?;
    let (key, correlation, body) = match rpc::parse_request(frame) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cluster listener: bad first frame; closing");
            return None;
        }
    };
    if key != rpc::CLUSTER_HELLO {
        tracing::warn!(%peer, api_key = key, "cluster listener: request before authentication; closing");
        return None;
    }
    let hello: Hello = match rpc::from_cbor(&body) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cluster listener: bad hello; closing");
            return None;
        }
    };
    let verdict: Result<(), Refusal> = if hello.cluster_id != id.cluster_id {
        Err(Refusal::WrongCluster {
            expected: id.cluster_id.clone(),
            got: hello.cluster_id.clone(),
        })
    } else if controller
        .incarnations
        .lock_unpoisoned()
        .is_retired(hello.node_id, &hello.incarnation)
    {
        Err(Refusal::StaleIncarnation {
            node_id: hello.node_id,
            incarnation: hello.incarnation,
        })
    } else if id.secret.is_some() && !hello.with_secret {
        Err(Refusal::Authentication(
            "this node requires the cluster secret ([cluster] secret_file)".into(),
        ))
    } else if id.secret.is_none() && hello.with_secret {
        Err(Refusal::Authentication(
            "this node has no cluster secret while the connecting node has one ([cluster] \
             secret_file must be set on every node)"
                .into(),
        ))
    } else {
        Ok(())
    };
    if let Err(refusal) = verdict {
        tracing::warn!(%peer, node_id = hello.node_id, %refusal, "cluster connection refused");
        let out: Result<HelloAccepted, Refusal> = Err(refusal);
        if let Ok(f) = rpc::response_frame(correlation, &out) {
            let _ = framed.send(f).await;
        }
        return None;
    }
    let server_nonce = auth::nonce();
    let accepted = HelloAccepted {
        node_id: id.node_id,
        incarnation: id.incarnation,
        directory_id: id.directory_id,
        nonce: server_nonce.clone(),
        proof: id
            .secret
            .as_ref()
            .map(|s| s.listener_proof(&id.cluster_id, &hello.nonce, &server_nonce)),
    };
    let out: Result<HelloAccepted, Refusal> = Ok(accepted);
    let frame = rpc::response_frame(correlation, &out).ok()?;
    framed.send(frame).await.ok()?;
    let frame = read_frame(framed).await?;
    let (key, correlation, body) = rpc::parse_request(frame).ok()?;
    let proof: Option<Proof> = (key == rpc::CLUSTER_PROOF)
        .then(|| rpc::from_cbor(&body).ok())
        .flatten();
    let verdict = match (&id.secret, proof) {
        (_, None) => Err(Refusal::BadRequest("expected ClusterProof".into())),
        (Some(_), Some(Proof {
            listener_rejected: true,
            ..
        })) => Err(Refusal::Authentication(
            "wrong cluster secret: the connecting node says this node could not prove it knows              its cluster secret"
                .into(),
        )),
        (None, Some(_)) => Ok(()),
        (Some(secret), Some(Proof { proof: Some(p), .. }))
            if secret.verify_node(
                &id.cluster_id,
                hello.node_id,
                &hello.nonce,
                &server_nonce,
                &p,
            ) =>
        {
            Ok(())
        }
        (Some(_), Some(_)) => Err(Refusal::Authentication(
            "wrong cluster secret: the connecting node could not prove it knows this node's \
             cluster secret"
                .into(),
        )),
    };
    let failed = verdict.is_err();
    if let Err(refusal) = &verdict {
        tracing::warn!(%peer, node_id = hello.node_id, %refusal, "cluster connection refused");
    }
    let frame = rpc::response_frame(correlation, &verdict).ok()?;
    framed.send(frame).await.ok()?;
    if failed {
        return None;
    }
    controller
        .peers
        .saw_directory(hello.node_id, hello.directory_id);
    tracing::debug!(%peer, node_id = hello.node_id, directory_id = %kafka_uuid_string(&hello.directory_id), "cluster connection authenticated");
    Some(PeerIdentity {
        node_id: hello.node_id,
        incarnation: hello.incarnation,
        directory_id: hello.directory_id,
    })
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    controller: Arc<Controller>,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) {
    let stream: BoxedIo = match &controller.identity.tls {
        None => Box::new(stream),
        Some(tls) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "cluster connection refused: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "cluster connection refused: TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let mut framed = Framed::new(stream, codec());
    let who = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        authenticate(&mut framed, peer, &controller),
    )
    .await
    {
        Ok(Some(who)) => who,
        Ok(None) => return,
        Err(_) => {
            tracing::warn!(%peer, "cluster listener: handshake timed out; closing");
            return;
        }
    };
    let mut session = Session::cluster_peer();
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => return,
            f = read_frame(&mut framed) => match f {
                Some(f) => f,
                None => return,
            },
        };
        let out = handle(&controller, &ctx, who, frame, peer, &mut session).await;
        match out {
            Ok(Some(frame)) => {
                if framed.send(frame).await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(%peer, node_id = who.node_id, %reason, "closing cluster connection");
                return;
            }
        }
    }
}

fn check_envelope<T>(
    controller: &Controller,
    who: PeerIdentity,
    env: &Envelope<T>,
) -> Result<(), Refusal> {
    if env.cluster_id != controller.identity.cluster_id {
        return Err(Refusal::WrongCluster {
            expected: controller.identity.cluster_id.clone(),
            got: env.cluster_id.clone(),
        });
    }
    if env.node_id != who.node_id || env.incarnation != who.incarnation {
        return Err(Refusal::BadRequest(format!(
            "RPC from node {} incarnation {} on the connection of node {} incarnation {}",
            env.node_id, env.incarnation, who.node_id, who.incarnation
        )));
    }
    if controller
        .incarnations
        .lock_unpoisoned()
        .is_retired(env.node_id, &env.incarnation)
    {
        return Err(Refusal::StaleIncarnation {
            node_id: env.node_id,
            incarnation: env.incarnation,
        });
    }
    Ok(())
}

/// Decodes an enveloped private RPC, checks its sender, and runs `f` on its body.
async fn private<Req, Resp, F, Fut>(
    controller: &Controller,
    who: PeerIdentity,
    correlation: i32,
    body: &[u8],
    raft_rpc: bool,
    f: F,
) -> Result<Option<Bytes>, String>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    let env: Envelope<Req> = rpc::from_cbor(body).map_err(|e| e.to_string())?;
    let checked = check_envelope(controller, who, &env).and_then(|()| {
        if raft_rpc {
            controller.check_voter(who.node_id, who.directory_id)
        } else {
            Ok(())
        }
    });
    let out: Result<Resp, Refusal> = match checked {
        Ok(()) => Ok(f(env.body).await),
        Err(refusal) => {
            tracing::debug!(node_id = who.node_id, %refusal, "RPC refused");
            Err(refusal)
        }
    };
    rpc::response_frame(correlation, &out)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn kafka_response<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation: i32,
    body: &T,
) -> Result<Option<Bytes>, String> {
    let header = ResponseHeader::default().with_correlation_id(correlation);
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api.response_header_version(version))
        .map_err(|e| e.to_string())?;
    body.encode(&mut buf, version).map_err(|e| e.to_string())?;
    Ok(Some(buf.freeze()))
}

async fn handle(
    controller: &Arc<Controller>,
    ctx: &Arc<Context>,
    who: PeerIdentity,
    frame: Bytes,
    peer: SocketAddr,
    session: &mut Session,
) -> Result<Option<Bytes>, String> {
    if frame.len() < 8 {
        return Err(format!("frame of {} bytes", frame.len()));
    }
    let key = (&frame[..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    if rpc::PRIVATE_API_KEYS.contains(&key) {
        let (key, correlation, body) = rpc::parse_request(frame).map_err(|e| e.to_string())?;
        let raft = &controller.raft;
        return match key {
            rpc::RAFT_APPEND_ENTRIES => {
                private(controller, who, correlation, &body, true, |r| {
                    raft.append_entries(r)
                })
                .await
            }
            rpc::RAFT_VOTE => {
                private(controller, who, correlation, &body, true, |r| raft.vote(r)).await
            }
            rpc::RAFT_INSTALL_SNAPSHOT => {
                private(controller, who, correlation, &body, true, |r| {
                    raft.install_snapshot(r)
                })
                .await
            }
            rpc::CONTROLLER_FORWARD => {
                let env: Envelope<ControllerRequest> =
                    rpc::from_cbor(&body).map_err(|e| e.to_string())?;
                let out = match check_envelope(controller, who, &env) {
                    Ok(()) => controller.write_local(env.body).await,
                    Err(r) => Err(r),
                };
                rpc::response_frame(correlation, &out)
                    .map(Some)
                    .map_err(|e| e.to_string())
            }
            other => Err(format!("unknown private API key {other}")),
        };
    }
    for (api, min, max) in CONTROLLER_APIS {
        if key != api as i16 {
            continue;
        }
        if version < min || version > max {
            return Err(format!("unsupported version {version} of {api:?}"));
        }
        let mut buf = frame;
        let header = RequestHeader::decode(&mut buf, api.request_header_version(version))
            .map_err(|e| e.to_string())?;
        let correlation = header.correlation_id;
        return match api {
            ApiKey::BrokerRegistration => {
                let req = BrokerRegistrationRequest::decode(&mut buf, version)
                    .map_err(|e| e.to_string())?;
                if req.broker_id.0 != who.node_id || req.incarnation_id != who.incarnation {
                    return Err(format!(
                        "BrokerRegistration for broker {} incarnation {} from node {} \
                         incarnation {}",
                        req.broker_id.0, req.incarnation_id, who.node_id, who.incarnation
                    ));
                }
                let resp = controller.handle_registration(req).await;
                kafka_response(api, version, correlation, &resp)
            }
            _ => {
                let req =
                    BrokerHeartbeatRequest::decode(&mut buf, version).map_err(|e| e.to_string())?;
                if req.broker_id.0 != who.node_id {
                    return Err(format!(
                        "BrokerHeartbeat for broker {} from node {}",
                        req.broker_id.0, who.node_id
                    ));
                }
                let resp = controller.handle_heartbeat(req).await;
                kafka_response(api, version, correlation, &resp)
            }
        };
    }
    if key == ApiKey::ApiVersions as i16 {
        if let Ok(Decoded::Request(req)) = request::decode_request(frame.clone()) {
            if let kafka_protocol::messages::RequestKind::ApiVersions(body) = req.body {
                let v = req.header.request_api_version;
                let ResponseKind::ApiVersions(mut resp) = api_versions::handle(ctx, v, body) else {
                    return Err("ApiVersions answered with another response".into());
                };
                for k in rpc::PRIVATE_APIS {
                    resp.api_keys.push(
                        ApiVersion::default()
                            .with_api_key(k)
                            .with_min_version(0)
                            .with_max_version(0),
                    );
                }
                for (api, min, max) in CONTROLLER_APIS {
                    resp.api_keys.push(
                        ApiVersion::default()
                            .with_api_key(api as i16)
                            .with_min_version(min)
                            .with_max_version(max),
                    );
                }
                return request::encode_response(
                    ApiKey::ApiVersions,
                    v,
                    req.header.correlation_id,
                    &ResponseKind::ApiVersions(resp),
                )
                .map(Some)
                .map_err(|e| e.to_string());
            }
        }
    }
    connection::handle_cluster_frame(ctx, frame, peer, session).await
}
