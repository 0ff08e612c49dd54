//! MQTT over WebSocket (MQTT 5 §6, MQTT 3.1.1 §6): the HTTP upgrade with subprotocol
//! negotiation, and [`WsStream`], which turns the binary frames of a WebSocket into the byte
//! stream the session layer ([`super::connection`]) reads and writes, so WebSocket clients get
//! exactly the same sessions as TCP ones.
//!
//! - Any request path is accepted (browsers and gateways use `/mqtt`, `/`, `/ws`, ...).
//! - Subprotocols `mqtt` (MQTT 5 §6.0, MQTT-6.0.0-4) and `mqttv3.1` (older clients): the one
//!   the client offers is echoed; a request offering others only is refused with 400; one
//!   offering none is accepted without the header (Mosquitto does the same).
//! - Frames and packets are independent (§6.0: "a single WebSocket data frame can contain
//!   multiple or partial MQTT Control Packets"): the session layer frames packets itself.
//! - Only binary frames carry MQTT (MQTT-6.0.0-1): a text frame closes the connection with a
//!   close frame (1003, unsupported data).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// The subprotocols MQTT clients offer, in order of preference.
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Why a WebSocket upgrade failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The HTTP upgrade or the WebSocket handshake failed (bad request, refused subprotocol,
    /// connection closed).
    #[error("WebSocket handshake: {0}")]
    WebSocket(#[from] WsError),
    /// The client did not finish the upgrade in time.
    #[error("WebSocket handshake not finished in time")]
    Timeout,
}

/// The subprotocol to answer a `Sec-WebSocket-Protocol` request header with: `Ok(None)` when
/// the client offered none, `Err` when it offered only ones MQTT does not define.
pub fn choose_subprotocol<'a>(
    offered: impl Iterator<Item = &'a str>,
) -> Result<Option<&'static str>, String> {
    let offered: Vec<&str> = offered
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    SUBPROTOCOLS
        .iter()
        .find(|ours| offered.iter().any(|o| o.eq_ignore_ascii_case(ours)))
        .map(|p| Some(*p))
        .ok_or_else(|| {
            format!(
                "none of the offered WebSocket subprotocols ({}) is MQTT's (mqtt, mqttv3.1)",
                offered.join(", ")
            )
        })
}

/// Answers the HTTP upgrade request on `stream` (any path) and returns the WebSocket as a byte
/// stream. `max_packet_size` bounds a frame and a message (a frame holds a packet or a few).
pub async fn accept<S>(
    stream: S,
    max_packet_size: usize,
    timeout: std::time::Duration,
) -> Result<WsStream<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The error type is tungstenite's `Callback` contract (an HTTP response), not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let offered = req
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok());
        match choose_subprotocol(offered) {
            Ok(Some(p)) => {
                resp.headers_mut()
                    .insert("sec-websocket-protocol", HeaderValue::from_static(p));
                Ok(resp)
            }
            Ok(None) => Ok(resp),
            Err(why) => {
                let mut refused = ErrorResponse::new(Some(why));
                *refused.status_mut() = StatusCode::BAD_REQUEST;
                Err(refused)
            }
        }
    };
    let limit = max_packet_size.saturating_add(64 * 1024).max(1 << 20);
    let config = WebSocketConfig::default()
        .max_frame_size(Some(limit))
        .max_message_size(Some(limit));
    let ws = tokio::time::timeout(
        timeout,
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)),
    )
    .await
    .map_err(|_| HandshakeError::Timeout)??;
    Ok(WsStream {
        ws,
        pending: Bytes::new(),
        refusing: None,
    })
}

/// Closing because of a text frame: the close frame still has to be queued, then flushed.
enum Refusing {
    Queue,
    Flush,
}

/// A WebSocket as a byte stream: reads yield the payloads of binary frames in order, each
/// write is sent as one binary frame, shutdown sends a close frame.
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last binary frame.
    pending: Bytes,
    refusing: Option<Refusing>,
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Sends the close frame for a text frame; ready when it is flushed (or cannot be).
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.refusing {
                None => return Poll::Ready(()),
                Some(Refusing::Queue) => {
                    if ready!(Pin::new(&mut self.ws).poll_ready(cx)).is_err() {
                        self.refusing = None;
                        continue;
                    }
                    let frame = CloseFrame {
                        code: CloseCode::Unsupported,
                        reason: "MQTT is carried in binary frames only".into(),
                    };
                    self.refusing =
                        match Pin::new(&mut self.ws).start_send(Message::Close(Some(frame))) {
                            Ok(()) => Some(Refusing::Flush),
                            Err(_) => None,
                        };
                }
                Some(Refusing::Flush) => {
                    let _ = ready!(Pin::new(&mut self.ws).poll_flush(cx));
                    self.refusing = None;
                    return Poll::Ready(());
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.refusing.is_some() {
                ready!(this.poll_refuse(cx));
                // End of stream for the session layer: the client is gone for it.
                return Poll::Ready(Ok(()));
            }
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                Some(Ok(Message::Binary(data))) => this.pending = data,
                Some(Ok(Message::Text(_))) => {
                    tracing::info!("MQTT WebSocket client sent a text frame; closing");
                    this.refusing = Some(Refusing::Queue);
                }
                // Pings are answered by tungstenite itself; a close frame is answered by it
                // and ends the stream on the next read.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_))) => {}
                Some(Ok(Message::Frame(_))) => {}
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_error)?;
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.get_mut().ws).poll_close(cx)) {
            Ok(()) | Err(WsError::AlreadyClosed | WsError::ConnectionClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subprotocol_echoes_the_offered_mqtt_one() {
        assert_eq!(choose_subprotocol(["mqtt"].into_iter()), Ok(Some("mqtt")));
        assert_eq!(
            choose_subprotocol(["mqttv3.1"].into_iter()),
            Ok(Some("mqttv3.1"))
        );
        assert_eq!(
            choose_subprotocol(["foo, mqttv3.1", "MQTT"].into_iter()),
            Ok(Some("mqtt"))
        );
        assert_eq!(choose_subprotocol(std::iter::empty()), Ok(None));
        assert!(choose_subprotocol(["wamp"].into_iter()).is_err());
    }

    #[tokio::test]
    async fn binary_frames_are_a_byte_stream_and_text_closes() {
        use futures::SinkExt;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio_tungstenite::tungstenite::protocol::Role;

        let (client_io, server_io) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move {
            let ws = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
            let mut s = WsStream {
                ws,
                pending: Bytes::new(),
                refusing: None,
            };
            let mut got = Vec::new();
            let mut buf = [0u8; 3];
            loop {
                let n = s.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if got.len() == 7 {
                    s.write_all(b"ok").await.expect("write");
                    s.flush().await.expect("flush");
                }
            }
            got
        });
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        client
            .send(Message::Binary(Bytes::from_static(b"abcd")))
            .await
            .unwrap();
        client
            .send(Message::Binary(Bytes::from_static(b"efg")))
            .await
            .unwrap();
        use futures::StreamExt;
        let reply = client.next().await.unwrap().unwrap();
        assert_eq!(reply, Message::Binary(Bytes::from_static(b"ok")));
        client.send(Message::Text("hello".into())).await.unwrap();
        let close = client.next().await.unwrap().unwrap();
        match close {
            Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Unsupported),
            other => panic!("expected a close frame, got {other:?}"),
        }
        assert_eq!(server.await.unwrap(), b"abcdefg");
    }
}
