//! The wire format of the cluster listener's private APIs: Kafka framing (4-byte length prefix,
//! a request header v1 with the API key, version and correlation id; a response header v0 with
//! the correlation id), CBOR bodies.
//!
//! The private API keys are the range [`PRIVATE_API_KEYS`] (32000-32015, far above Kafka's own
//! keys); ApiVersions advertises the ones in use only on the cluster listener:
//!
//! | key | name | request | response |
//! | --- | --- | --- | --- |
//! | 32000 | `ClusterHello` | [`Hello`] | `Result<`[`HelloAccepted`]`, `[`Refusal`]`>` |
//! | 32001 | `ClusterProof` | [`Proof`] | `Result<(), Refusal>` |
//! | 32002 | `RaftAppendEntries` | [`Envelope`] of openraft's `AppendEntriesRequest` | `Result<Result<AppendEntriesResponse, RaftError>, Refusal>` |
//! | 32003 | `RaftVote` | [`Envelope`] of `VoteRequest` | `Result<Result<VoteResponse, RaftError>, Refusal>` |
//! | 32004 | `RaftInstallSnapshot` | [`Envelope`] of `InstallSnapshotRequest` | `Result<Result<InstallSnapshotResponse, RaftError<InstallSnapshotError>>, Refusal>` |
//! | 32005 | `ControllerForward` | [`Envelope`] of a `ControllerRequest` | `Result<CommandResult, Refusal>` |
//!
//! Every RPC after the handshake carries the sender's cluster id, node id and incarnation
//! ([`Envelope`]); the receiver refuses another cluster's and a retired incarnation's.

use std::ops::RangeInclusive;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The API keys reserved for Rill's inter-node RPCs.
pub const PRIVATE_API_KEYS: RangeInclusive<i16> = 32000..=32015;
/// Authentication step 1: who the connecting node is, and its challenge.
pub const CLUSTER_HELLO: i16 = 32000;
/// Authentication step 2: the connecting node's answer to the listener's challenge.
pub const CLUSTER_PROOF: i16 = 32001;
/// openraft AppendEntries.
pub const RAFT_APPEND_ENTRIES: i16 = 32002;
/// openraft Vote.
pub const RAFT_VOTE: i16 = 32003;
/// openraft InstallSnapshot.
pub const RAFT_INSTALL_SNAPSHOT: i16 = 32004;
/// A controller command forwarded to the active controller (KIP-590).
pub const CONTROLLER_FORWARD: i16 = 32005;

/// The private APIs in use (all at version 0), as ApiVersions lists them.
pub const PRIVATE_APIS: [i16; 6] = [
    CLUSTER_HELLO,
    CLUSTER_PROOF,
    RAFT_APPEND_ENTRIES,
    RAFT_VOTE,
    RAFT_INSTALL_SNAPSHOT,
    CONTROLLER_FORWARD,
];

/// Errors encoding or decoding a private RPC frame.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Shorter than its header.
    #[error("frame of {0} bytes is too short")]
    TooShort(usize),
    /// The CBOR body does not decode.
    #[error("undecodable CBOR body: {0}")]
    Decode(#[from] ciborium::de::Error<std::io::Error>),
    /// The body could not be encoded.
    #[error("cannot encode CBOR body: {0}")]
    Encode(#[from] ciborium::ser::Error<std::io::Error>),
}

/// The sender of an RPC, on every RPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The sender's cluster id.
    pub cluster_id: String,
    /// The sender's node id.
    pub node_id: i32,
    /// The sender's incarnation (random per process start).
    pub incarnation: Uuid,
    /// The RPC.
    pub body: T,
}

/// Step 1 of the handshake, from the connecting node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// The cluster the connecting node belongs to.
    pub cluster_id: String,
    /// Its node id.
    pub node_id: i32,
    /// Its incarnation.
    pub incarnation: Uuid,
    /// Its directory id (from `meta.properties`).
    pub directory_id: Uuid,
    /// Random challenge for the listener.
    pub nonce: Vec<u8>,
    /// Whether the connecting node has a cluster secret (and will prove it).
    pub with_secret: bool,
}

/// The listener's answer to [`Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloAccepted {
    /// The listener's node id.
    pub node_id: i32,
    /// Its incarnation.
    pub incarnation: Uuid,
    /// Its directory id.
    pub directory_id: Uuid,
    /// Random challenge for the connecting node.
    pub nonce: Vec<u8>,
    /// The listener's proof that it knows the secret (`None` without one).
    pub proof: Option<Vec<u8>>,
}

/// Step 2 of the handshake.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proof {
    /// The connecting node's proof (`None` without a secret, or when it rejected the
    /// listener's).
    pub proof: Option<Vec<u8>>,
    /// The listener's proof did not verify: the connecting node says so (both sides log the
    /// mismatch) and closes.
    pub listener_rejected: bool,
}

/// Why a node refused an RPC or a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// Meant for another cluster.
    #[error("cluster id {got:?} is not this cluster's ({expected:?})")]
    WrongCluster {
        /// The receiver's cluster id.
        expected: String,
        /// The sender's.
        got: String,
    },
    /// The sender's incarnation was replaced by a newer registration of the same node.
    #[error("node {node_id}: incarnation {incarnation} is retired (the node restarted since)")]
    StaleIncarnation {
        /// The sender.
        node_id: i32,
        /// Its retired incarnation.
        incarnation: Uuid,
    },
    /// The shared-secret handshake failed.
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// The sender claims a voter's node id but not its directory id (wiped and re-formatted).
    #[error(
        "node {node_id} with directory id {got} is not a voter: the voter {node_id} has \
         directory id {expected}"
    )]
    NotAVoter {
        /// The node id.
        node_id: i32,
        /// The voter's directory id.
        expected: String,
        /// The sender's.
        got: String,
    },
    /// This node is not the active controller.
    #[error("not the active controller (leader: {leader:?})")]
    NotController {
        /// The active controller, if known.
        leader: Option<i32>,
    },
    /// The RPC cannot be served right now (the controller is shutting down, ...).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The RPC is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// CBOR-encodes `value`.
pub fn to_cbor<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out)?;
    Ok(out)
}

/// CBOR-decodes `bytes`.
pub fn from_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    Ok(ciborium::from_reader(bytes)?)
}

/// A private request frame (without the length prefix): request header v1 (client id null),
/// then the CBOR body.
pub fn request_frame<T: Serialize>(
    api_key: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, WireError> {
    let cbor = to_cbor(body)?;
    let mut buf = BytesMut::with_capacity(10 + cbor.len());
    buf.put_i16(api_key);
    buf.put_i16(0);
    buf.put_i32(correlation_id);
    buf.put_i16(-1);
    buf.put_slice(&cbor);
    Ok(buf.freeze())
}

/// A private request's API key, correlation id and body.
pub fn parse_request(mut frame: Bytes) -> Result<(i16, i32, Bytes), WireError> {
    if frame.len() < 10 {
        return Err(WireError::TooShort(frame.len()));
    }
    let key = frame.get_i16();
    let _version = frame.get_i16();
    let correlation_id = frame.get_i32();
    let client_id_len = frame.get_i16();
    if client_id_len > 0 {
        let len = client_id_len as usize;
        if frame.len() < len {
            return Err(WireError::TooShort(frame.len()));
        }
        frame.advance(len);
    }
    Ok((key, correlation_id, frame))
}

/// A private response frame: response header v0, then the CBOR body.
pub fn response_frame<T: Serialize>(correlation_id: i32, body: &T) -> Result<Bytes, WireError> {
    let cbor = to_cbor(body)?;
    let mut buf = BytesMut::with_capacity(4 + cbor.len());
    buf.put_i32(correlation_id);
    buf.put_slice(&cbor);
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let body = Envelope {
            cluster_id: "c".into(),
            node_id: 2,
            incarnation: Uuid::new_v4(),
            body: vec![1u8, 2, 3],
        };
        let frame = request_frame(RAFT_VOTE, 7, &body).unwrap();
        let (key, corr, rest) = parse_request(frame).unwrap();
        assert_eq!((key, corr), (RAFT_VOTE, 7));
        let back: Envelope<Vec<u8>> = from_cbor(&rest).unwrap();
        assert_eq!(back, body);
        assert!(parse_request(Bytes::from_static(&[0, 1])).is_err());
        assert!(from_cbor::<Envelope<Vec<u8>>>(&[0xff, 0x00]).is_err());
    }
}
