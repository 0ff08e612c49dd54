//! Delivery of log records to one connection's subscriptions.
//!
//! Each subscription reads the log partitions its filter maps to, from its cursor, in log
//! order; a record reaches the client when its MQTT topic (the `mqtt.topic` header, or the
//! rule's pattern filled from the key) matches the filter, with QoS = min(published,
//! subscribed). QoS 1/2 deliveries stay in flight (bounded by the client's Receive Maximum and
//! the node's limit) until PUBACK / PUBREC; the durable cursor of a partition is its lowest
//! unacknowledged offset.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5;
use rumqttc::v5::mqttbytes::QoS;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::records::{Message, StoredRecord};
use super::session_store::{Cursor, StoredSubscription};
use super::shared::SharedGroup;
use super::source::Source;
use super::sys_topics::SysValues;
use super::topic::{self, SubscriptionFilter};
use super::MqttServer;

/// QoS from its number (values above 2 count as 2).
pub fn qos_of(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// A `$SYS` value as a message (QoS 0, no properties).
fn sys_message(name: &str, payload: &Bytes) -> Message {
    Message {
        topic: name.to_string(),
        payload: payload.clone(),
        qos: 0,
        retain: false,
        props: Default::default(),
    }
}

/// A log partition, as the key of per-partition state.
type PartitionKey = (String, i32);

/// Where an in-flight message came from.
#[derive(Clone)]
enum Origin {
    /// A retained message (not from the log).
    Retained,
    /// A record of a log partition, delivered once for the subscriptions (raw filters) it
    /// matched.
    Log {
        partition: PartitionKey,
        offset: i64,
        filters: Vec<String>,
    },
    /// A record claimed from a shared group.
    Shared {
        group: Arc<SharedGroup>,
        source: usize,
        offset: i64,
    },
}

/// Outgoing topic aliases of one connection (§3.3.2.3.4): the first `max` topics sent get an
/// alias each (sent with the topic name once, then with an empty name); further topics take
/// over aliases in turn. The mapping lives only as long as the network connection.
struct OutgoingAliases {
    /// The client's Topic Alias Maximum (0: no aliases).
    max: u16,
    by_topic: HashMap<Bytes, u16>,
    /// Topic of alias `i + 1`.
    topics: Vec<Bytes>,
    /// Next alias to take over once all are in use.
    next_reuse: u16,
}

impl OutgoingAliases {
    fn new(max: u16) -> OutgoingAliases {
        OutgoingAliases {
            max,
            by_topic: HashMap::new(),
            topics: Vec::new(),
            next_reuse: 1,
        }
    }

    /// The alias `topic` would be sent with, and whether the name must go along (new mapping).
    fn plan(&self, topic: &Bytes) -> Option<(u16, bool)> {
        if self.max == 0 || topic.is_empty() {
            return None;
        }
        if let Some(a) = self.by_topic.get(topic) {
            return Some((*a, false));
        }
        if self.topics.len() < self.max as usize {
            return Some((self.topics.len() as u16 + 1, true));
        }
        Some((self.next_reuse, true))
    }

    /// `publish` in the form it is sent with `plan`.
    fn shaped(publish: &v5::Publish, plan: Option<(u16, bool)>) -> v5::Publish {
        let mut p = publish.clone();
        if let Some((alias, with_name)) = plan {
            p.properties
                .get_or_insert_with(Default::default)
                .topic_alias = Some(alias);
            if !with_name {
                p.topic = Bytes::new();
            }
        }
        p
    }

    /// How `publish` is sent: `plan`, except that a QoS 2 message always carries its topic
    /// name beside the alias. MQTT 5 allows the alias alone for any QoS, but MQTT.js (5.x)
    /// emits a QoS 2 message delivered that way under an empty topic (it resolves the alias
    /// only for the copy it handles at once, not for the one it keeps until PUBREL).
    fn sent_form(publish: &v5::Publish, plan: Option<(u16, bool)>) -> Option<(u16, bool)> {
        plan.map(|(alias, name)| (alias, name || publish.qos == QoS::ExactlyOnce))
    }

    /// Rewrites `publish` to use an alias, recording a new mapping.
    fn apply(&mut self, publish: &mut v5::Publish) {
        let plan = self.plan(&publish.topic);
        if let Some((alias, true)) = plan {
            let i = alias as usize - 1;
            if i < self.topics.len() {
                let old = std::mem::replace(&mut self.topics[i], publish.topic.clone());
                self.by_topic.remove(&old);
                self.next_reuse = if alias >= self.max { 1 } else { alias + 1 };
            } else {
                self.topics.push(publish.topic.clone());
            }
            self.by_topic.insert(publish.topic.clone(), alias);
        }
        *publish = OutgoingAliases::shaped(publish, OutgoingAliases::sent_form(publish, plan));
    }
}

struct ActiveSub {
    stored: StoredSubscription,
    parsed: SubscriptionFilter,
    /// Per log partition (non-shared): the first offset this subscription takes.
    starts: BTreeMap<PartitionKey, i64>,
    /// Per log partition: offsets delivered for this subscription, not yet acknowledged.
    pending: BTreeMap<PartitionKey, BTreeSet<i64>>,
    shared: Option<Arc<SharedGroup>>,
}

impl ActiveSub {
    /// The durable cursor of this subscription on `src`: its lowest unacknowledged offset, or
    /// where reading goes on for it.
    fn cursor(&self, src: &Source, start: i64) -> i64 {
        let key = (src.topic.clone(), src.partition);
        let read = start.max(src.next_read);
        self.pending
            .get(&key)
            .and_then(|p| p.first().copied())
            .map_or(read, |p| p.min(read))
    }
}

/// The subscriptions and outgoing in-flight window of one connection.
///
/// Non-shared subscriptions read each log partition once, together: a record goes to the
/// client once however many of them match, at the highest QoS they were granted, with every
/// matching subscription identifier (MQTT 5 §3.3.4, MQTT 3.1.1 §4.7.1.2's recommendation).
/// Shared subscriptions deliver on their own (§4.8.2: a copy per shared subscription).
pub struct Deliverer {
    server: Arc<MqttServer>,
    member_id: u64,
    client_id: String,
    subs: Vec<ActiveSub>,
    /// The log partitions the non-shared subscriptions read, each once.
    sources: Vec<Source>,
    inflight: HashMap<u16, Origin>,
    /// Packet ids that got PUBREC and wait for PUBCOMP.
    awaiting_comp: HashSet<u16>,
    next_pkid: u16,
    limit: usize,
    /// Woken when a watched partition's high watermark moves.
    pub notify: Arc<Notify>,
    watchers: HashMap<PartitionKey, AbortHandle>,
    /// Cursors changed since the last save.
    pub dirty: bool,
    v5: bool,
    max_packet: Option<usize>,
    aliases: OutgoingAliases,
    /// The `$SYS` values last sent to this client (later intervals send what changed).
    sys_sent: HashMap<String, Bytes>,
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        let m = &self.server.metrics;
        m.subscriptions_changed(-(self.subs.len() as i64));
        m.inflight_changed(-(self.inflight.len() as i64));
        for w in self.watchers.values() {
            w.abort();
        }
        for s in &self.subs {
            if let Some(g) = &s.shared {
                g.leave(self.member_id);
            }
        }
    }
}

impl Deliverer {
    /// A deliverer for one connection: at most `limit` QoS 1/2 messages in flight, PUBLISH
    /// packets no larger than `max_packet`, topic aliases up to `topic_alias_max` (MQTT 5).
    pub fn new(
        server: Arc<MqttServer>,
        member_id: u64,
        client_id: String,
        limit: usize,
        v5: bool,
        max_packet: Option<usize>,
        topic_alias_max: u16,
    ) -> Deliverer {
        Deliverer {
            server,
            member_id,
            client_id,
            subs: Vec::new(),
            sources: Vec::new(),
            inflight: HashMap::new(),
            awaiting_comp: HashSet::new(),
            next_pkid: 1,
            limit: limit.max(1),
            notify: Arc::new(Notify::new()),
            watchers: HashMap::new(),
            dirty: false,
            v5,
            max_packet,
            aliases: OutgoingAliases::new(if v5 { topic_alias_max } else { 0 }),
            sys_sent: HashMap::new(),
        }
    }

    fn watch(&mut self, topic: &str, partition: i32, log: &Arc<rill_core::log::PartitionLog>) {
        let key = (topic.to_string(), partition);
        if self.watchers.contains_key(&key) {
            return;
        }
        let mut rx = log.watch_high_watermark();
        let notify = self.notify.clone();
        let handle = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                notify.notify_one();
            }
        });
        self.watchers.insert(key, handle.abort_handle());
    }

    /// Adds (or replaces) a subscription. Non-shared subscriptions start at the log end
    /// unless `stored` cursors say otherwise (`restore`: at the log start where they have
    /// none). Returns whether it replaced an existing one; a replaced non-shared subscription
    /// keeps its place in the log (§3.8.4: no message is lost by replacing it).
    pub fn subscribe(&mut self, stored: StoredSubscription, restore: bool) -> bool {
        self.counting_subscriptions(|d| d.add_subscription(stored, restore))
    }

    /// Run `f`, then tell the metrics how the subscription count changed.
    fn counting_subscriptions<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let before = self.subs.len() as i64;
        let out = f(self);
        self.server
            .metrics
            .subscriptions_changed(self.subs.len() as i64 - before);
        out
    }

    fn add_subscription(&mut self, mut stored: StoredSubscription, restore: bool) -> bool {
        let Ok(parsed) = topic::parse_subscription(&stored.raw_filter) else {
            return false;
        };
        if parsed.share_group.is_none() {
            if let Some(sub) = self
                .subs
                .iter_mut()
                .find(|s| s.stored.raw_filter == stored.raw_filter && s.shared.is_none())
            {
                stored.cursors = Vec::new();
                sub.stored = stored;
                self.dirty = true;
                return true;
            }
        }
        let existed = self.unsubscribe_inner(&stored.raw_filter, false);
        let shared = parsed.share_group.as_ref().map(|g| {
            self.server.shared.join(
                &self.server,
                g,
                &parsed.filter,
                self.member_id,
                self.notify.clone(),
            )
        });
        let cursors = std::mem::take(&mut stored.cursors);
        let mut sub = ActiveSub {
            stored,
            parsed,
            starts: BTreeMap::new(),
            pending: BTreeMap::new(),
            shared,
        };
        if sub.shared.is_none() {
            for (t, p, log) in self.server.discover(&sub.parsed.filter) {
                let start = cursors
                    .iter()
                    .find(|c| c.topic == t && c.partition == p)
                    .map(|c| c.next)
                    .unwrap_or_else(|| {
                        if restore {
                            log.log_start_offset()
                        } else {
                            log.log_end_offset()
                        }
                    });
                self.read_from(&t, p, &log, start);
                sub.starts.insert((t, p), start);
            }
        }
        self.subs.push(sub);
        self.rewatch();
        self.dirty = true;
        self.notify.notify_one();
        existed
    }

    /// Makes sure partition `t`/`p` is read from `start` on. When it is already read past
    /// `start` (a restored cursor further back, or a partition found again later), reading
    /// goes back; the other subscriptions have had everything before the old position, so
    /// their starts move up to it.
    fn read_from(&mut self, t: &str, p: i32, log: &Arc<rill_core::log::PartitionLog>, start: i64) {
        let key = (t.to_string(), p);
        let Some(src) = self
            .sources
            .iter_mut()
            .find(|s| s.topic == t && s.partition == p)
        else {
            self.sources
                .push(Source::new(t.to_string(), p, log.clone(), start));
            return;
        };
        if src.next_read <= start {
            return;
        }
        let seen = std::mem::replace(&mut src.next_read, start);
        for sub in &mut self.subs {
            if let Some(s) = sub.starts.get_mut(&key) {
                *s = (*s).max(seen);
            }
        }
    }

    fn rewatch(&mut self) {
        let mut logs = Vec::new();
        for src in &self.sources {
            logs.push((src.topic.clone(), src.partition, src.log.clone()));
        }
        for s in &self.subs {
            if let Some(g) = &s.shared {
                logs.extend(g.logs());
            }
        }
        for (t, p, log) in logs {
            self.watch(&t, p, &log);
        }
    }

    /// Picks up log topics and partitions created since the subscriptions were made.
    pub fn refresh(&mut self) {
        let server = self.server.clone();
        let mut found = Vec::new();
        for (si, sub) in self.subs.iter().enumerate() {
            if let Some(g) = &sub.shared {
                g.refresh(&server, None);
                continue;
            }
            for (t, p, log) in server.discover(&sub.parsed.filter) {
                if !sub.starts.contains_key(&(t.clone(), p)) {
                    found.push((si, t, p, log));
                }
            }
        }
        for (si, t, p, log) in found {
            let start = log.log_start_offset();
            self.read_from(&t, p, &log, start);
            self.subs[si].starts.insert((t, p), start);
        }
        self.rewatch();
        self.notify.notify_one();
    }

    fn unsubscribe_inner(&mut self, raw_filter: &str, mark: bool) -> bool {
        let Some(i) = self
            .subs
            .iter()
            .position(|s| s.stored.raw_filter == raw_filter)
        else {
            return false;
        };
        let sub = self.subs.remove(i);
        if let Some(g) = &sub.shared {
            g.leave(self.member_id);
        }
        // Partitions no subscription reads any more are dropped (their in-flight messages
        // still settle: settling a gone subscription is a no-op).
        let subs = &self.subs;
        self.sources.retain(|src| {
            let key = (src.topic.clone(), src.partition);
            subs.iter().any(|s| s.starts.contains_key(&key))
        });
        if mark {
            self.dirty = true;
        }
        true
    }

    /// Removes a subscription; returns whether it existed.
    pub fn unsubscribe(&mut self, raw_filter: &str) -> bool {
        self.counting_subscriptions(|d| d.unsubscribe_inner(raw_filter, true))
    }

    /// The subscriptions with their durable cursors, for the session store.
    pub fn stored(&self) -> Vec<StoredSubscription> {
        self.subs
            .iter()
            .map(|s| {
                let mut st = s.stored.clone();
                st.cursors = s
                    .starts
                    .iter()
                    .filter_map(|((t, p), start)| {
                        let src = self
                            .sources
                            .iter()
                            .find(|x| &x.topic == t && x.partition == *p)?;
                        Some(Cursor {
                            topic: t.clone(),
                            partition: *p,
                            next: s.cursor(src, *start),
                        })
                    })
                    .collect();
                st
            })
            .collect()
    }

    /// Shared groups whose cursors changed: (store key, cursors).
    pub fn shared_cursors(&self) -> Vec<(String, Vec<Cursor>)> {
        self.subs
            .iter()
            .filter_map(|s| s.shared.as_ref())
            .filter_map(|g| g.take_cursors().map(|c| (g.key.clone(), c)))
            .collect()
    }

    fn alloc_pkid(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            let id = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&id) && !self.awaiting_comp.contains(&id) {
                return Some(id);
            }
        }
        None
    }

    fn room(&self) -> usize {
        self.limit
            .saturating_sub(self.inflight.len() + self.awaiting_comp.len())
    }

    /// Builds the outgoing PUBLISH for `msg` at `qos`, or None when it cannot be sent (too
    /// large for the client, expired).
    fn publish(
        &mut self,
        msg: &Message,
        qos: QoS,
        retain: bool,
        sub_ids: Vec<usize>,
    ) -> Option<v5::Publish> {
        let now = rill_core::clock::now_ms();
        let mut props = None;
        if self.v5 {
            let p = &msg.props;
            let expiry = match p.expires_at_ms {
                Some(at) if at <= now => return None,
                Some(at) => Some(((at - now + 999) / 1000).clamp(1, u32::MAX as i64) as u32),
                None => None,
            };
            let pp = v5::PublishProperties {
                payload_format_indicator: p.payload_format,
                message_expiry_interval: expiry,
                topic_alias: None,
                response_topic: p.response_topic.clone(),
                correlation_data: p.correlation_data.clone(),
                user_properties: p.user_properties.clone(),
                subscription_identifiers: sub_ids,
                content_type: p.content_type.clone(),
            };
            if pp != v5::PublishProperties::default() {
                props = Some(pp);
            }
        } else if msg.props.expires_at_ms.is_some_and(|at| at <= now) {
            return None;
        }
        let publish = v5::Publish {
            dup: false,
            qos,
            retain,
            topic: Bytes::copy_from_slice(msg.topic.as_bytes()),
            pkid: 0,
            payload: msg.payload.clone(),
            properties: props,
        };
        if let Some(max) = self.max_packet {
            // §3.1.2.11.4 (MQTT-3.1.2-25): a message too large for the client is dropped and
            // counts as delivered. Measured as sent: with its packet id and topic alias.
            let plan = OutgoingAliases::sent_form(&publish, self.aliases.plan(&publish.topic));
            let mut sized = OutgoingAliases::shaped(&publish, plan);
            sized.pkid = 1;
            if sized.size() > max {
                tracing::debug!(client = %self.client_id, size = sized.size(), max, "message larger than the client's maximum packet size skipped");
                return None;
            }
        }
        Some(publish)
    }

    fn emit(
        &mut self,
        mut publish: v5::Publish,
        origin: Origin,
        out: &mut Vec<v5::Packet>,
    ) -> bool {
        if publish.qos != QoS::AtMostOnce {
            let Some(pkid) = self.alloc_pkid() else {
                return false;
            };
            publish.pkid = pkid;
            if self.inflight.insert(pkid, origin).is_none() {
                self.server.metrics.inflight_changed(1);
            }
        } else {
            self.settle(origin);
        }
        self.server.metrics.publish_sent(publish.qos);
        self.aliases.apply(&mut publish);
        out.push(v5::Packet::Publish(publish));
        true
    }

    /// A delivery is finished (acknowledged, QoS 0, or not deliverable).
    fn settle(&mut self, origin: Origin) {
        match origin {
            Origin::Retained => {}
            Origin::Log {
                partition,
                offset,
                filters,
            } => {
                for sub in self
                    .subs
                    .iter_mut()
                    .filter(|s| s.shared.is_none() && filters.contains(&s.stored.raw_filter))
                {
                    if let Some(p) = sub.pending.get_mut(&partition) {
                        p.remove(&offset);
                    }
                }
                self.dirty = true;
            }
            Origin::Shared {
                group,
                source,
                offset,
            } => group.ack(source, offset),
        }
    }

    /// Retained messages for a new subscription (QoS = min(message, subscription)).
    pub fn retained(&mut self, raw_filter: &str, out: &mut Vec<v5::Packet>) {
        let Some(sub) = self.subs.iter().find(|s| s.stored.raw_filter == raw_filter) else {
            return;
        };
        if sub.shared.is_some() {
            return; // no retained messages for shared subscriptions
        }
        let filter = sub.parsed.filter.clone();
        let sub_qos = sub.stored.qos;
        let sub_ids: Vec<usize> = sub.stored.subscription_id.into_iter().collect();
        if topic::is_sys(&filter) {
            // The current `$SYS` values stand in for retained messages (as in Mosquitto).
            let values = self.server.sys.current();
            for (name, payload) in values.0.iter().filter(|(n, _)| topic::matches(&filter, n)) {
                let msg = sys_message(name, payload);
                self.sys_sent.insert(name.clone(), payload.clone());
                if let Some(p) = self.publish(&msg, QoS::AtMostOnce, true, sub_ids.clone()) {
                    self.emit(p, Origin::Retained, out);
                }
            }
            return;
        }
        let msgs = match self.server.retained.matching(&filter) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "retained messages unreadable");
                return;
            }
        };
        for msg in msgs {
            let qos = qos_of(msg.qos.min(sub_qos));
            if let Some(p) = self.publish(&msg, qos, true, sub_ids.clone()) {
                self.emit(p, Origin::Retained, out);
            }
        }
    }

    /// Whether a non-shared subscription is for `$SYS` topics.
    pub fn has_sys_subscription(&self) -> bool {
        self.subs
            .iter()
            .any(|s| s.shared.is_none() && topic::is_sys(&s.parsed.filter))
    }

    /// Sends the `$SYS` values that changed since they were last sent and match a subscription
    /// (QoS 0, not retained: live updates), with every matching subscription identifier.
    pub fn sys_update(&mut self, values: &SysValues, out: &mut Vec<v5::Packet>) {
        for (name, payload) in &values.0 {
            if self.sys_sent.get(name) == Some(payload) {
                continue;
            }
            let mut matched = false;
            let mut sub_ids = Vec::new();
            for s in self.subs.iter().filter(|s| s.shared.is_none()) {
                if topic::matches(&s.parsed.filter, name) {
                    matched = true;
                    sub_ids.extend(s.stored.subscription_id);
                }
            }
            if !matched {
                continue;
            }
            self.sys_sent.insert(name.clone(), payload.clone());
            let msg = sys_message(name, payload);
            if let Some(p) = self.publish(&msg, QoS::AtMostOnce, false, sub_ids) {
                self.emit(p, Origin::Retained, out);
            }
        }
    }

    /// The MQTT message of a record if it is for `filter`.
    fn message_for(&self, topic: &str, rec: &StoredRecord, filter: &str) -> Option<Message> {
        let name = self.server.mapping.mqtt_topic_for_record(
            topic,
            rec.key.as_deref(),
            rec.mqtt_topic_header(),
        )?;
        if !topic::matches(filter, &name) {
            return None;
        }
        Some(rec.to_message(name))
    }

    /// Sends what the subscriptions have, within the in-flight window.
    pub fn pump(&mut self, out: &mut Vec<v5::Packet>) {
        for si in 0..self.subs.len() {
            if let Some(group) = self.subs[si].shared.clone() {
                self.pump_shared(si, &group, out);
            }
        }
        for xi in 0..self.sources.len() {
            loop {
                if self.room() == 0 {
                    return;
                }
                let recs = match self.sources[xi].fetch() {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(client = %self.client_id, error = %e, "subscription read failed");
                        break;
                    }
                };
                if recs.is_empty() {
                    break;
                }
                for rec in recs {
                    if self.room() == 0 {
                        return;
                    }
                    self.sources[xi].next_read = rec.offset + 1;
                    self.dirty = true;
                    let key = (self.sources[xi].topic.clone(), self.sources[xi].partition);
                    self.deliver_record(key, &rec, out);
                }
            }
        }
    }

    /// Delivers one log record once for all the non-shared subscriptions it matches (§3.3.4:
    /// the highest granted QoS, every matching subscription identifier; Retain As Published
    /// keeps the retain flag when any matching subscription asked for it).
    fn deliver_record(&mut self, key: PartitionKey, rec: &StoredRecord, out: &mut Vec<v5::Packet>) {
        let Some(name) = self.server.mapping.mqtt_topic_for_record(
            &key.0,
            rec.key.as_deref(),
            rec.mqtt_topic_header(),
        ) else {
            return;
        };
        let matched: Vec<usize> = self
            .subs
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.shared.is_none()
                    && s.starts.get(&key).is_some_and(|start| rec.offset >= *start)
                    && !(s.stored.no_local && rec.published_by(&self.client_id))
                    && topic::matches(&s.parsed.filter, &name)
            })
            .map(|(i, _)| i)
            .collect();
        if matched.is_empty() {
            return;
        }
        let msg = rec.to_message(name);
        let subs: Vec<&ActiveSub> = matched.iter().map(|i| &self.subs[*i]).collect();
        let sub_qos = subs.iter().map(|s| s.stored.qos).max().unwrap_or(0);
        let qos = qos_of(msg.qos.min(sub_qos));
        let retain = msg.retain && subs.iter().any(|s| s.stored.retain_as_published);
        let mut sub_ids: Vec<usize> = subs
            .iter()
            .filter_map(|s| s.stored.subscription_id)
            .collect();
        sub_ids.sort_unstable();
        sub_ids.dedup();
        let filters: Vec<String> = subs.iter().map(|s| s.stored.raw_filter.clone()).collect();
        let Some(p) = self.publish(&msg, qos, retain, sub_ids) else {
            return;
        };
        if qos != QoS::AtMostOnce {
            for i in &matched {
                self.subs[*i]
                    .pending
                    .entry(key.clone())
                    .or_default()
                    .insert(rec.offset);
            }
        }
        let origin = Origin::Log {
            partition: key,
            offset: rec.offset,
            filters,
        };
        self.emit(p, origin, out);
    }

    fn pump_shared(&mut self, si: usize, group: &Arc<SharedGroup>, out: &mut Vec<v5::Packet>) {
        loop {
            let room = self.room();
            if room == 0 {
                return;
            }
            let claims = group.claim(self.member_id, room);
            if claims.is_empty() {
                return;
            }
            for c in claims {
                let topic = group
                    .logs()
                    .get(c.source)
                    .map(|l| l.0.clone())
                    .unwrap_or_default();
                let sub_qos = self.subs[si].stored.qos;
                let sub_ids: Vec<usize> =
                    self.subs[si].stored.subscription_id.into_iter().collect();
                let origin = Origin::Shared {
                    group: group.clone(),
                    source: c.source,
                    offset: c.record.offset,
                };
                let Some(msg) = self.message_for(&topic, &c.record, &group.filter) else {
                    self.settle(origin);
                    continue;
                };
                let qos = qos_of(msg.qos.min(sub_qos));
                match self.publish(&msg, qos, false, sub_ids) {
                    Some(p) => {
                        self.emit(p, origin, out);
                    }
                    None => self.settle(origin),
                }
            }
        }
    }

    /// PUBACK from the client.
    pub fn puback(&mut self, pkid: u16) {
        if let Some(origin) = self.inflight.remove(&pkid) {
            self.server.metrics.inflight_changed(-1);
            self.settle(origin);
        }
    }

    /// PUBREC from the client: the message is delivered; answer with PUBREL.
    pub fn pubrec(&mut self, pkid: u16) -> bool {
        match self.inflight.remove(&pkid) {
            Some(origin) => {
                self.server.metrics.inflight_changed(-1);
                self.settle(origin);
                self.awaiting_comp.insert(pkid);
                self.dirty = true;
                true
            }
            None => self.awaiting_comp.contains(&pkid),
        }
    }

    /// PUBCOMP from the client.
    pub fn pubcomp(&mut self, pkid: u16) {
        if self.awaiting_comp.remove(&pkid) {
            self.dirty = true;
        }
    }

    /// Packet ids waiting for PUBCOMP, for the session store.
    pub fn awaiting_pubcomp(&self) -> Vec<u16> {
        let mut ids: Vec<u16> = self.awaiting_comp.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// A resumed session's packet ids waiting for PUBCOMP: PUBREL goes out for each again
    /// (MQTT 5 §4.4, MQTT-4.4.0-1), and they are not reused until PUBCOMP.
    pub fn resume_awaiting_pubcomp(&mut self, ids: &[u16], out: &mut Vec<v5::Packet>) {
        for id in ids {
            if *id != 0 && self.awaiting_comp.insert(*id) {
                out.push(v5::Packet::PubRel(v5::PubRel::new(*id, None)));
            }
        }
    }

    /// Whether any subscription has records not yet looked at.
    pub fn has_work(&self) -> bool {
        self.sources.iter().any(|x| x.has_more())
            || self
                .subs
                .iter()
                .filter_map(|s| s.shared.as_ref())
                .any(|g| g.has_work())
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(topic: &'static str) -> v5::Publish {
        v5::Publish::new(topic, QoS::AtLeastOnce, b"x".to_vec(), None)
    }

    #[test]
    fn outgoing_aliases_name_once_then_empty_and_take_over_in_turn() {
        let mut a = OutgoingAliases::new(2);
        let mut sent = Vec::new();
        for t in ["a", "b", "a", "c", "b", "c"] {
            let mut p = publish(t);
            a.apply(&mut p);
            let alias = p.properties.as_ref().and_then(|p| p.topic_alias);
            sent.push((String::from_utf8(p.topic.to_vec()).unwrap(), alias));
        }
        let want = [
            ("a", Some(1)),
            ("b", Some(2)),
            ("", Some(1)),
            ("c", Some(1)), // takes over alias 1 from "a"
            ("", Some(2)),
            ("", Some(1)),
        ];
        let want: Vec<(String, Option<u16>)> =
            want.iter().map(|(t, a)| (t.to_string(), *a)).collect();
        assert_eq!(sent, want);
        let mut off = OutgoingAliases::new(0);
        let mut p = publish("a");
        off.apply(&mut p);
        assert_eq!(p, publish("a"));
        // QoS 2 keeps the name beside an alias already set (MQTT.js interop).
        let mut q2 = v5::Publish::new("b", QoS::ExactlyOnce, b"x".to_vec(), None);
        a.apply(&mut q2);
        assert_eq!(&q2.topic[..], b"b");
        assert_eq!(q2.properties.and_then(|p| p.topic_alias), Some(2));
    }
}
