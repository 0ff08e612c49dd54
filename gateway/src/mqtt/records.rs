//! MQTT messages as Kafka v2 records, both ways.
//!
//! A publish becomes one record: key from the mapping rule, value = payload, and headers:
//! `mqtt.topic` (always), `mqtt.qos`, `mqtt.retain` (when set), `mqtt.expiry` (absolute expiry
//! time in Unix ms, from the MQTT 5 message expiry interval), `mqtt.content_type`,
//! `mqtt.response_topic`, `mqtt.correlation_data`, `mqtt.payload_format`; each MQTT 5 user
//! property becomes a header of its own name, in order, a repeated name as repeated headers
//! (MQTT 5 §3.3.2.3.7 allows a name more than once, and Kafka headers are a list that may repeat
//! a key, KIP-82; names starting with `mqtt.` are reserved and dropped).
//! Publishes from a connected client also carry `mqtt.client_id` (the MQTT 5 No Local
//! subscription option skips them for that client; Kafka consumers see who published).
//! QoS 2 publishes also carry `mqtt.packet_id` (decimal), so a resent PUBLISH can be recognised
//! as stored after a node restart without a metadata write per message.
//! Reading back, headers that do not start with `mqtt.` become user properties, in order and
//! repeated names included, so records produced by Kafka clients carry their headers to MQTT 5
//! subscribers. Of a reserved header that a Kafka producer repeated, the last counts (as Kafka's
//! `Headers.lastHeader`); records written before repeated names were kept hold one header per
//! name and read the same.

use bytes::Bytes;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, TimestampType};
use rill_core::batch::{self, BatchBuilder, BatchError, ControlRecords, Headers};

/// Header carrying the MQTT topic name of a record.
pub const HEADER_TOPIC: &str = "mqtt.topic";
const HEADER_QOS: &str = "mqtt.qos";
const HEADER_RETAIN: &str = "mqtt.retain";
const HEADER_EXPIRY: &str = "mqtt.expiry";
const HEADER_CONTENT_TYPE: &str = "mqtt.content_type";
const HEADER_RESPONSE_TOPIC: &str = "mqtt.response_topic";
const HEADER_CORRELATION: &str = "mqtt.correlation_data";
const HEADER_PAYLOAD_FORMAT: &str = "mqtt.payload_format";
const HEADER_CLIENT_ID: &str = "mqtt.client_id";
const HEADER_PACKET_ID: &str = "mqtt.packet_id";
const RESERVED_PREFIX: &str = "mqtt.";

/// MQTT 5 publish properties that travel with a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProps {
    pub payload_format: Option<u8>,
    /// Absolute expiry time (Unix ms).
    pub expires_at_ms: Option<i64>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
}

/// An MQTT application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub props: MessageProps,
}

/// A record read back from the log.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// In record order; a name may repeat.
    pub headers: Headers,
}

/// Errors building or reading records.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record batch encoding failed")]
    Encode(#[source] BatchError),
    #[error("record batch decoding failed")]
    Decode(#[source] BatchError),
}

fn header(name: &'static str, value: impl Into<Bytes>) -> (StrBytes, Option<Bytes>) {
    (StrBytes::from_static_str(name), Some(value.into()))
}

/// The record for `msg` with `key` (headers as described in the module doc).
pub fn to_record(msg: &Message, key: Option<Bytes>, timestamp: i64) -> Record {
    let mut headers = Headers::new();
    let mut put = |h: (StrBytes, Option<Bytes>)| headers.push(h);
    put(header(
        HEADER_TOPIC,
        Bytes::copy_from_slice(msg.topic.as_bytes()),
    ));
    put(header(HEADER_QOS, Bytes::from(vec![b'0' + msg.qos.min(2)])));
    if msg.retain {
        put(header(HEADER_RETAIN, Bytes::from_static(b"1")));
    }
    let p = &msg.props;
    if let Some(at) = p.expires_at_ms {
        put(header(HEADER_EXPIRY, at.to_string()));
    }
    if let Some(ct) = &p.content_type {
        put(header(HEADER_CONTENT_TYPE, ct.clone()));
    }
    if let Some(rt) = &p.response_topic {
        put(header(HEADER_RESPONSE_TOPIC, rt.clone()));
    }
    if let Some(cd) = &p.correlation_data {
        put(header(HEADER_CORRELATION, cd.clone()));
    }
    if let Some(pf) = p.payload_format {
        put(header(HEADER_PAYLOAD_FORMAT, pf.to_string()));
    }
    // §3.3.2.3.7: every user property, in order, a repeated name included.
    for (k, v) in &p.user_properties {
        if !k.starts_with(RESERVED_PREFIX) {
            headers.push((
                StrBytes::from_string(k.clone()),
                Some(Bytes::from(v.clone())),
            ));
        }
    }
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key,
        value: Some(msg.payload.clone()),
        headers,
    }
}

/// Encodes records into one uncompressed v2 batch (offsets 0..n; the log assigns real ones)
/// with [`BatchBuilder`]: keys, values, timestamps and headers are taken from `records`.
pub fn encode_batch(records: &[Record]) -> Result<Bytes, RecordError> {
    let mut b = BatchBuilder::new();
    for r in records {
        b.push_with_headers(
            r.key.clone(),
            r.value.clone(),
            r.timestamp,
            r.headers.clone(),
        );
    }
    b.build().map_err(RecordError::Encode)
}

/// Decodes the whole v2 batches of `data` (as returned by a log read; a partial last batch is
/// left out), skipping control records.
pub fn decode_batches(data: Bytes) -> Result<Vec<StoredRecord>, RecordError> {
    let records =
        batch::decode_records(&data, ControlRecords::Skip).map_err(RecordError::Decode)?;
    Ok(records
        .into_iter()
        .map(|r| StoredRecord {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r.headers,
        })
        .collect())
}

/// Sets the reserved header `name` of `record` to `value` (replacing it if present).
fn set_reserved(record: &mut Record, name: &'static str, value: Bytes) {
    record.headers.retain(|(k, _)| k.as_str() != name);
    record.headers.push(header(name, value));
}

/// Marks `record` as published by the client `client_id` (the `mqtt.client_id` header).
pub fn set_publisher(record: &mut Record, client_id: &str) {
    set_reserved(
        record,
        HEADER_CLIENT_ID,
        Bytes::copy_from_slice(client_id.as_bytes()),
    );
}

/// Marks `record` with the MQTT packet id it was published with (QoS 2).
pub fn set_packet_id(record: &mut Record, pkid: u16) {
    set_reserved(record, HEADER_PACKET_ID, Bytes::from(pkid.to_string()));
}

impl StoredRecord {
    /// The packet id of a QoS 2 publish (`mqtt.packet_id`).
    pub fn packet_id(&self) -> Option<u16> {
        self.header_str(HEADER_PACKET_ID)?.parse().ok()
    }

    /// Whether the client `client_id` published this record (MQTT 5 No Local).
    pub fn published_by(&self, client_id: &str) -> bool {
        self.header(HEADER_CLIENT_ID).map(|b| b.as_ref()) == Some(client_id.as_bytes())
    }

    /// The last header named `name` (Rill writes each reserved header once).
    fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .rfind(|(k, _)| k.as_str() == name)
            .and_then(|(_, v)| v.as_ref())
    }

    fn header_str(&self, name: &str) -> Option<String> {
        self.header(name)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_string)
    }

    /// The `mqtt.topic` header, if any.
    pub fn mqtt_topic_header(&self) -> Option<&[u8]> {
        self.header(HEADER_TOPIC).map(|b| b.as_ref())
    }

    /// The QoS it was published with (records from Kafka clients count as QoS 1: they are
    /// durable).
    pub fn published_qos(&self) -> u8 {
        match self.header(HEADER_QOS).map(|b| b.as_ref()) {
            Some(b"0") => 0,
            Some(b"2") => 2,
            _ => 1,
        }
    }

    /// Rebuilds the message under `topic`.
    pub fn to_message(&self, topic: String) -> Message {
        let mut props = MessageProps {
            payload_format: self
                .header_str(HEADER_PAYLOAD_FORMAT)
                .and_then(|s| s.parse().ok()),
            expires_at_ms: self.header_str(HEADER_EXPIRY).and_then(|s| s.parse().ok()),
            content_type: self.header_str(HEADER_CONTENT_TYPE),
            response_topic: self.header_str(HEADER_RESPONSE_TOPIC),
            correlation_data: self.header(HEADER_CORRELATION).cloned(),
            user_properties: Vec::new(),
        };
        for (k, v) in &self.headers {
            if k.starts_with(RESERVED_PREFIX) {
                continue;
            }
            let value = v
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            props.user_properties.push((k.to_string(), value));
        }
        Message {
            topic,
            payload: self.value.clone().unwrap_or_default(),
            qos: self.published_qos(),
            retain: self.header(HEADER_RETAIN).is_some(),
            props,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip() {
        let msg = Message {
            topic: "devices/d1/telemetry".into(),
            payload: Bytes::from_static(b"{\"t\":1}"),
            qos: 2,
            retain: true,
            props: MessageProps {
                payload_format: Some(1),
                expires_at_ms: Some(1234),
                content_type: Some("application/json".into()),
                response_topic: Some("r/1".into()),
                correlation_data: Some(Bytes::from_static(b"c")),
                user_properties: vec![
                    ("site".into(), "north".into()),
                    ("k".into(), "a".into()),
                    ("site".into(), "south".into()),
                    ("k".into(), "b".into()),
                    ("mqtt.topic".into(), "hijack".into()),
                ],
            },
        };
        let rec = to_record(&msg, Some(Bytes::from_static(b"d1")), 99);
        let batch = encode_batch(&[rec]).unwrap();
        let back = decode_batches(batch).unwrap();
        assert_eq!(back.len(), 1);
        let many = encode_batch(&[
            to_record(&msg, None, 1),
            to_record(&msg, None, 2),
            to_record(&msg, None, 3),
        ])
        .unwrap();
        let offsets: Vec<i64> = decode_batches(many)
            .unwrap()
            .iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, vec![0, 1, 2]);
        assert_eq!(back[0].key.as_deref(), Some(&b"d1"[..]));
        assert_eq!(
            back[0].mqtt_topic_header(),
            Some(&b"devices/d1/telemetry"[..])
        );
        // Every user property comes back in order, repeated names included (§3.3.2.3.7);
        // the reserved name is dropped.
        let mut expected = msg.clone();
        expected.props.user_properties.truncate(4);
        assert_eq!(back[0].to_message(msg.topic.clone()), expected);
        let names: Vec<&str> = back[0].headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names.iter().filter(|n| **n == "k").count(), 2);
    }

    #[test]
    fn records_from_kafka_clients_keep_repeated_headers() {
        // As a Kafka producer may write them: repeated user headers, a repeated reserved one.
        let h = |k: &'static str, v: &'static str| {
            (
                StrBytes::from_static_str(k),
                Some(Bytes::from_static(v.as_bytes())),
            )
        };
        let mut b = BatchBuilder::new();
        b.push_with_headers(
            None,
            Some(Bytes::from_static(b"v")),
            5,
            vec![
                h("mqtt.topic", "old"),
                h("tag", "1"),
                h("tag", "2"),
                h("mqtt.topic", "cmd/d1"),
            ],
        );
        let back = decode_batches(b.build().unwrap()).unwrap();
        assert_eq!(back[0].mqtt_topic_header(), Some(&b"cmd/d1"[..]));
        let msg = back[0].to_message("cmd/d1".into());
        assert_eq!(
            msg.props.user_properties,
            vec![("tag".into(), "1".into()), ("tag".into(), "2".into())]
        );
    }

    #[test]
    fn publisher_and_packet_id_are_set_once() {
        let msg = Message {
            topic: "t".into(),
            payload: Bytes::from_static(b"p"),
            qos: 2,
            retain: false,
            props: MessageProps::default(),
        };
        let mut rec = to_record(&msg, None, 1);
        set_publisher(&mut rec, "c1");
        set_publisher(&mut rec, "c2");
        set_packet_id(&mut rec, 7);
        let back = decode_batches(encode_batch(&[rec]).unwrap()).unwrap();
        let ids = back[0]
            .headers
            .iter()
            .filter(|(k, _)| k.as_str() == HEADER_CLIENT_ID)
            .count();
        assert_eq!(ids, 1);
        assert!(back[0].published_by("c2"));
        assert_eq!(back[0].packet_id(), Some(7));
    }
}
