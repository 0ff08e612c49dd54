//! Will messages (MQTT 5 §3.1.2.5, §3.1.3.2): a connection that ends without a normal
//! DISCONNECT (network loss, keep alive expiry, protocol error, takeover) has its will
//! published through the same durable path as a publish, marked as published by its client
//! (`mqtt.client_id`: the will is sent on the client's behalf, so No Local, §3.8.3.1, skips it
//! for that client's own subscriptions).
//!
//! A will with a Will Delay Interval waits (§3.1.3.2.2) until the delay has passed or the
//! session ends, whichever comes first; resuming the session in time cancels it, a Clean Start
//! reconnect ends the session and sends it at once (see `connection`). A waiting will is kept in
//! memory (its timer, [`DelayedWills`]) and with its persistent session in redb
//! ([`StoredWill`], written with the session's save at disconnect, no write of its own), so after
//! a node restart [`resume`] publishes it when it is due, or at once if it fell due while the
//! node was down. Its session is then updated in one transaction (`clear_pending_will`); a crash
//! between the will's durable append and that update sends it once more after the restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use rill_core::sync::LockExt;

use super::records::{self, Message, RecordError};
use super::session_store::StoredWill;
use super::MqttServer;

/// A client's will as its CONNECT set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// The message (its expiry is set when it is published).
    pub message: Message,
    /// Will Delay Interval in seconds (§3.1.3.2.2; 0 for 3.1.1 clients).
    pub delay_secs: u32,
    /// Message Expiry Interval in seconds (§3.1.3.2.4), counted from publication.
    pub message_expiry_secs: Option<u32>,
}

/// Errors turning a stored will back into a message.
#[derive(Debug, thiserror::Error)]
pub enum WillError {
    #[error("stored will is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("stored will holds no record with an MQTT topic")]
    Empty,
}

impl Will {
    /// The form kept with the session, due at `due_ms`.
    pub fn to_stored(&self, due_ms: i64) -> Result<StoredWill, RecordError> {
        let rec = records::to_record(&self.message, None, rill_core::clock::now_ms());
        let batch = records::encode_batch(&[rec])?;
        Ok(StoredWill {
            due_ms,
            message_expiry_secs: self.message_expiry_secs,
            record: base64::engine::general_purpose::STANDARD.encode(&batch),
        })
    }

    /// The will a session kept ([`Self::to_stored`]); its delay is over or runs from `due_ms`.
    pub fn from_stored(stored: &StoredWill) -> Result<Will, WillError> {
        let batch = base64::engine::general_purpose::STANDARD.decode(&stored.record)?;
        let rec = records::decode_batches(Bytes::from(batch))?
            .into_iter()
            .next()
            .ok_or(WillError::Empty)?;
        let topic = rec
            .mqtt_topic_header()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .ok_or(WillError::Empty)?;
        Ok(Will {
            message: rec.to_message(topic),
            delay_secs: 0,
            message_expiry_secs: stored.message_expiry_secs,
        })
    }
}

/// A will waiting out its delay: the connection that left it and when it is due.
struct Waiting {
    conn_id: u64,
    due_ms: i64,
    will: Will,
}

/// The wills waiting out their Will Delay Interval, by client id.
#[derive(Default)]
pub struct DelayedWills {
    waiting: Mutex<HashMap<String, Waiting>>,
}

impl DelayedWills {
    /// Takes the waiting will of `client_id` away from its timer: the session was resumed in
    /// time (the will is dropped) or ended by a Clean Start (the caller publishes it now).
    pub fn take(&self, client_id: &str) -> Option<Will> {
        self.waiting
            .lock_unpoisoned()
            .remove(client_id)
            .map(|w| w.will)
    }
}

/// Makes `will`, left by the connection `conn_id` of `client_id`, wait until `due_ms` (Unix
/// ms), then publishes it unless it was taken ([`DelayedWills::take`]) or replaced meanwhile.
pub fn schedule(server: &Arc<MqttServer>, client_id: &str, conn_id: u64, due_ms: i64, will: Will) {
    server.delayed_wills.waiting.lock_unpoisoned().insert(
        client_id.to_string(),
        Waiting {
            conn_id,
            due_ms,
            will,
        },
    );
    let server = server.clone();
    let client_id = client_id.to_string();
    tokio::spawn(async move {
        let wait = due_ms.saturating_sub(rill_core::clock::now_ms()).max(0) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let due = {
            let mut waiting = server.delayed_wills.waiting.lock_unpoisoned();
            match waiting.get(&client_id) {
                Some(w) if w.conn_id == conn_id && w.due_ms == due_ms => waiting.remove(&client_id),
                _ => None,
            }
        };
        let Some(w) = due else {
            return;
        };
        if publish(&server, &client_id, w.will).await {
            let srv = server.clone();
            let id = client_id.clone();
            let cleared = tokio::task::spawn_blocking(move || {
                srv.sessions
                    .clear_pending_will(&id, due_ms, rill_core::clock::now_ms())
            })
            .await;
            if !matches!(cleared, Ok(Ok(()))) {
                tracing::error!(
                    client_id,
                    "published MQTT will not removed from its session"
                );
            }
        }
    });
}

/// Publishes `will` of `client_id` now (durable when this returns `true`), and sets it as the
/// retained message of its topic when it has the retain flag.
pub async fn publish(server: &Arc<MqttServer>, client_id: &str, will: Will) -> bool {
    let mut msg = will.message;
    msg.props.expires_at_ms = will
        .message_expiry_secs
        .map(|s| rill_core::clock::now_ms().saturating_add(s as i64 * 1000));
    match server.ingest.store(&msg, client_id).await {
        Ok(()) => {
            tracing::info!(client_id, topic = msg.topic, "MQTT will message published");
            if msg.retain {
                let store = server.retained.clone();
                let _ = tokio::task::spawn_blocking(move || store.set(&msg)).await;
            }
            true
        }
        Err(e) => {
            tracing::error!(client_id, error = %e, "MQTT will message not stored");
            false
        }
    }
}

/// After a node start: the wills that persistent sessions kept (their clients' connections were
/// lost before the node stopped) wait again for the rest of their delay; those already due are
/// published at once.
pub fn resume(server: &Arc<MqttServer>) {
    let pending = match server.sessions.pending_wills() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "MQTT wills waiting out their delay not read");
            return;
        }
    };
    if pending.is_empty() {
        return;
    }
    tracing::info!(
        count = pending.len(),
        "MQTT wills waiting out their delay resumed"
    );
    for (client_id, stored) in pending {
        match Will::from_stored(&stored) {
            // Connection id 0 is never a live connection's (they count from 1).
            Ok(will) => schedule(server, &client_id, 0, stored.due_ms, will),
            Err(e) => tracing::error!(client_id, error = %e, "unreadable MQTT will dropped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::records::MessageProps;

    #[test]
    fn a_stored_will_reads_back() {
        let will = Will {
            message: Message {
                topic: "status/d1".into(),
                payload: Bytes::from_static(b"gone"),
                qos: 1,
                retain: true,
                props: MessageProps {
                    content_type: Some("text/plain".into()),
                    user_properties: vec![("k".into(), "a".into()), ("k".into(), "b".into())],
                    ..MessageProps::default()
                },
            },
            delay_secs: 0,
            message_expiry_secs: Some(30),
        };
        let stored = will.to_stored(1234).unwrap();
        assert_eq!(stored.due_ms, 1234);
        assert_eq!(Will::from_stored(&stored).unwrap(), will);
        let bad = StoredWill {
            record: "not base64!".into(),
            ..stored
        };
        assert!(Will::from_stored(&bad).is_err());
    }
}
