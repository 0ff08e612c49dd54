//! The MQTT front end's metrics: connections open / accepted by protocol version, publishes in
//! and out by QoS, PUBACK latency (publish read to durable ack), dropped publishes and refused
//! connections / subscriptions by reason, live subscriptions, in-flight outgoing messages (the
//! sessions' queue depth) and, at scrape time, the retained message count. Owned by
//! [`super::MqttServer`]; [`crate::metrics::Metrics`] registers it.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rumqttc::v5::mqttbytes::QoS;

use super::codec::Level;
use super::retained::RetainedStore;
use crate::metrics::{histogram, LATENCY_BUCKETS};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    /// `3.1.1` or `5`.
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QosLabel {
    qos: u8,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Why a publish was dropped or a connection / subscription refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Bad user name or password, or no credentials where they are required.
    Auth,
    /// Denied by an ACL (publish, subscribe or will topic).
    Acl,
    /// A packet over `max_packet_size`.
    Oversize,
    /// A CONNECT with a protocol level this node does not speak.
    ProtocolVersion,
    /// Any other CONNECT refusal (client id, will topic, session store).
    Connect,
    /// A publish that could not be stored (the log refused it).
    NotStored,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Auth => "auth",
            Refusal::Acl => "acl",
            Refusal::Oversize => "oversize",
            Refusal::ProtocolVersion => "protocol_version",
            Refusal::Connect => "connect",
            Refusal::NotStored => "not_stored",
        }
    }
}

fn protocol(level: Level) -> ProtocolLabel {
    ProtocolLabel {
        protocol: match level {
            Level::V4 => "3.1.1",
            Level::V5 => "5",
        },
    }
}

fn qos(q: QoS) -> QosLabel {
    QosLabel { qos: q as u8 }
}

/// Counters, gauges and histograms of the MQTT front end (cheap to clone: shared handles).
#[derive(Debug, Clone)]
pub struct MqttMetrics {
    enabled: bool,
    connections: Family<ProtocolLabel, Counter>,
    open: Family<ProtocolLabel, Gauge>,
    publishes_in: Family<QosLabel, Counter>,
    publishes_out: Family<QosLabel, Counter>,
    puback: Histogram,
    dropped: Family<ReasonLabel, Counter>,
    refused: Family<ReasonLabel, Counter>,
    subscriptions: Gauge,
    inflight: Gauge,
}

impl MqttMetrics {
    /// Fresh metrics; with `enabled` false nothing is recorded. Every label value exists from
    /// the start (at 0), so dashboards and alerts see the series before the first event.
    pub fn new(enabled: bool) -> MqttMetrics {
        let m = MqttMetrics {
            enabled,
            connections: Family::default(),
            open: Family::default(),
            publishes_in: Family::default(),
            publishes_out: Family::default(),
            puback: histogram(LATENCY_BUCKETS),
            dropped: Family::default(),
            refused: Family::default(),
            subscriptions: Gauge::default(),
            inflight: Gauge::default(),
        };
        for level in [Level::V4, Level::V5] {
            m.connections.get_or_create_owned(&protocol(level));
            m.open.get_or_create_owned(&protocol(level));
        }
        for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            m.publishes_in.get_or_create_owned(&qos(q));
            m.publishes_out.get_or_create_owned(&qos(q));
        }
        for r in [Refusal::Acl, Refusal::NotStored] {
            m.dropped
                .get_or_create_owned(&ReasonLabel { reason: r.label() });
        }
        for r in [
            Refusal::Auth,
            Refusal::Acl,
            Refusal::Oversize,
            Refusal::ProtocolVersion,
            Refusal::Connect,
        ] {
            m.refused
                .get_or_create_owned(&ReasonLabel { reason: r.label() });
        }
        m
    }

    /// Register the families in `r` (the `rill_` registry), with `retained` counted at scrape.
    pub fn register(&self, r: &mut Registry, retained: RetainedStore) {
        r.register(
            "mqtt_connections",
            "MQTT connections accepted (CONNACK success), by protocol version",
            self.connections.clone(),
        );
        r.register(
            "mqtt_open_connections",
            "MQTT connections open now, by protocol version",
            self.open.clone(),
        );
        r.register(
            "mqtt_publishes_received",
            "PUBLISH packets received from clients, by QoS",
            self.publishes_in.clone(),
        );
        r.register(
            "mqtt_publishes_sent",
            "PUBLISH packets sent to subscribers, by QoS",
            self.publishes_out.clone(),
        );
        r.register(
            "mqtt_puback_latency_seconds",
            "Time from reading a QoS 1/2 PUBLISH to its PUBACK / PUBREC being ready (the message durable)",
            self.puback.clone(),
        );
        r.register(
            "mqtt_publishes_dropped",
            "Publishes not stored, by reason (acl, not_stored)",
            self.dropped.clone(),
        );
        r.register(
            "mqtt_refused",
            "Connections and subscriptions refused, by reason (auth, acl, oversize, protocol_version, connect)",
            self.refused.clone(),
        );
        r.register(
            "mqtt_subscriptions",
            "Subscriptions of the connected sessions",
            self.subscriptions.clone(),
        );
        r.register(
            "mqtt_session_queue_depth",
            "QoS 1/2 messages sent to connected sessions and not yet acknowledged (the in-flight window in use)",
            self.inflight.clone(),
        );
        r.register_collector(Box::new(RetainedCollector(Arc::new(retained))));
    }

    /// A session connected.
    pub fn connected(&self, level: Level) {
        if self.enabled {
            self.connections.get_or_create(&protocol(level)).inc();
            self.open.get_or_create(&protocol(level)).inc();
        }
    }

    /// A connected session ended.
    pub fn disconnected(&self, level: Level) {
        if self.enabled {
            self.open.get_or_create(&protocol(level)).dec();
        }
    }

    /// A PUBLISH arrived.
    pub fn publish_received(&self, q: QoS) {
        if self.enabled {
            self.publishes_in.get_or_create(&qos(q)).inc();
        }
    }

    /// A PUBLISH went out to a subscriber.
    pub fn publish_sent(&self, q: QoS) {
        if self.enabled {
            self.publishes_out.get_or_create(&qos(q)).inc();
        }
    }

    /// `n` publishes became durable and are acknowledged, `elapsed` after they were read.
    pub fn acked(&self, n: usize, elapsed: Duration) {
        if self.enabled {
            for _ in 0..n {
                self.puback.observe(elapsed.as_secs_f64());
            }
        }
    }

    /// A publish was dropped.
    pub fn dropped(&self, why: Refusal) {
        if self.enabled {
            self.dropped
                .get_or_create(&ReasonLabel {
                    reason: why.label(),
                })
                .inc();
        }
    }

    /// A connection or subscription was refused.
    pub fn refused(&self, why: Refusal) {
        if self.enabled {
            self.refused
                .get_or_create(&ReasonLabel {
                    reason: why.label(),
                })
                .inc();
        }
    }

    /// Subscriptions of connected sessions went up (positive) or down.
    pub fn subscriptions_changed(&self, by: i64) {
        if self.enabled && by != 0 {
            self.subscriptions.inc_by(by);
        }
    }

    /// Unacknowledged outgoing QoS 1/2 messages went up (positive) or down.
    pub fn inflight_changed(&self, by: i64) {
        if self.enabled && by != 0 {
            self.inflight.inc_by(by);
        }
    }
}

/// Counts the retained messages at scrape time.
struct RetainedCollector(Arc<RetainedStore>);

impl std::fmt::Debug for RetainedCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetainedCollector")
    }
}

impl Collector for RetainedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(n) = self.0.count() else {
            return Ok(());
        };
        let g = ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
        g.encode(encoder.encode_descriptor(
            "mqtt_retained_messages",
            "Retained messages stored",
            None,
            g.metric_type(),
        )?)
    }
}
