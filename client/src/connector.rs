//! How a [`Client`](crate::Client) opens its connections. The client asks its [`Connector`]
//! for one connection per [`Target`]: a bootstrap address, or a broker by id (with the address
//! the last Metadata or FindCoordinator answer gave for it). [`TcpConnector`], the default,
//! dials that address with the client's [`ConnectOptions`] (TCP or TLS, then ApiVersions and
//! SASL). Another connector may reach the broker some other way, for example over a transport
//! it has authenticated itself, and then hands the stream to [`Connection::over`].

use std::future::Future;
use std::pin::Pin;

use crate::connection::{ConnectOptions, Connection};
use crate::error::ClientError;

/// What a [`Client`](crate::Client) wants a connection to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// One of the bootstrap addresses, as the caller gave it.
    Bootstrap(&'a str),
    /// Broker `id`, which the cluster's metadata advertises at `addr`.
    Broker {
        /// The broker id.
        id: i32,
        /// Its advertised `host:port`.
        addr: &'a str,
    },
}

impl Target<'_> {
    /// The address the target was named with.
    pub fn addr(&self) -> &str {
        match self {
            Target::Bootstrap(addr) | Target::Broker { addr, .. } => addr,
        }
    }
}

/// What [`Connector::connect`] yields.
pub type ConnectFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Connection, ClientError>> + Send + 'a>>;

/// Opens the connections of a [`Client`](crate::Client), ready for requests (ApiVersions
/// negotiated, authenticated as the broker requires).
pub trait Connector: Send + Sync {
    /// A connection to `target`, opened with `opts`.
    fn connect<'a>(&'a self, target: Target<'a>, opts: &'a ConnectOptions) -> ConnectFuture<'a>;
}

/// The default [`Connector`]: [`Connection::connect`] to the target's address.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn connect<'a>(&'a self, target: Target<'a>, opts: &'a ConnectOptions) -> ConnectFuture<'a> {
        Box::pin(async move { Connection::connect(target.addr(), opts).await })
    }
}
