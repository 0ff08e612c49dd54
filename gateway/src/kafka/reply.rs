//! What a request handler hands back to the connection: a response now, one later (flush
//! waits, long polls), none (acks=0), or an order to close.

use futures::future::BoxFuture;
use kafka_protocol::messages::ResponseKind;

/// What a handler produced.
#[allow(clippy::large_enum_variant)] // built once per request and moved at once; boxing buys nothing
pub enum Reply {
    /// The response, ready now.
    Now(ResponseKind),
    /// The response after waiting (flush, long poll). Later requests on the connection are read
    /// meanwhile; responses are still written in request order.
    Later(BoxFuture<'static, ResponseKind>),
    /// No response at all (Produce with acks=0).
    Nothing,
    /// Close the connection (Produce acks=0 that failed, as Kafka does), with the reason logged.
    Close(String),
}
