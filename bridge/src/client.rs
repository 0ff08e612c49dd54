//! A small Kafka-protocol client for the bridge: one TCP connection to one broker, typed
//! requests with fixed versions that Kafka 2.8+ and Rill both accept.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Errors talking to a target cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or I/O failed.
    #[error("connection to {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The peer did not answer in time.
    #[error("request to {0} timed out")]
    Timeout(String),
    /// Encoding or decoding failed.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker answered with an error code.
    #[error("{what}: error code {code}")]
    Kafka { what: String, code: i16 },
}

/// Largest response accepted.
const MAX_FRAME: usize = 256 << 20;

/// One connection to a broker.
pub struct Connection {
    addr: String,
    stream: TcpStream,
    correlation: i32,
    timeout: Duration,
}

impl Connection {
    /// Connect to `addr` (host:port) within `timeout`.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Connection, ClientError> {
        let io = |source| ClientError::Io {
            addr: addr.to_string(),
            source,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(addr.to_string()))?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        Ok(Connection {
            addr: addr.to_string(),
            stream,
            correlation: 0,
            timeout,
        })
    }

    /// The address this connection talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Send `req` at `version` and wait for its response.
    pub async fn call<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("rill-bridge")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        req.encode(&mut body, version)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        let addr = self.addr.clone();
        let io = |source| ClientError::Io {
            addr: addr.clone(),
            source,
        };
        let work = async {
            self.stream.write_all(&frame).await.map_err(io)?;
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await.map_err(io)?;
            let len = i32::from_be_bytes(len);
            if len < 0 || len as usize > MAX_FRAME {
                return Err(ClientError::Protocol(format!("bad frame length {len}")));
            }
            let mut buf = vec![0u8; len as usize];
            self.stream.read_exact(&mut buf).await.map_err(io)?;
            Ok(Bytes::from(buf))
        };
        let mut buf = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ClientError::Timeout(self.addr.clone()))??;
        let rh = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if rh.correlation_id != self.correlation {
            return Err(ClientError::Protocol(format!(
                "correlation id {} != {}",
                rh.correlation_id, self.correlation
            )));
        }
        let resp = R::Response::decode(&mut buf, version)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if buf.has_remaining() {
            tracing::debug!(left = buf.remaining(), "trailing bytes in response");
        }
        Ok(resp)
    }
}
