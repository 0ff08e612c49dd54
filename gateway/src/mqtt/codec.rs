//! Packet framing for both protocol levels on one socket.
//!
//! The first packet must be CONNECT; its protocol level (4 = MQTT 3.1.1, 5 = MQTT 5) fixes the
//! codec of the connection. rumqttc's `mqttbytes::v4` and `v5::mqttbytes::v5` do the byte work;
//! MQTT 3.1.1 packets are lifted into the v5 types (a superset) so the session layer is written
//! once, and lowered again on the way out.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes as m4;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes as m5;
use rumqttc::v5::mqttbytes::v5;

/// Protocol level of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    V4,
    V5,
}

/// Decoding failures. Each closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("first packet is not CONNECT")]
    NotConnect,
    #[error("unsupported protocol level {0}")]
    UnsupportedLevel(u8),
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("packet cannot be encoded: {0}")]
    Encode(String),
}

fn qos45(q: m4::QoS) -> m5::QoS {
    match q {
        m4::QoS::AtMostOnce => m5::QoS::AtMostOnce,
        m4::QoS::AtLeastOnce => m5::QoS::AtLeastOnce,
        m4::QoS::ExactlyOnce => m5::QoS::ExactlyOnce,
    }
}

fn qos54(q: m5::QoS) -> m4::QoS {
    match q {
        m5::QoS::AtMostOnce => m4::QoS::AtMostOnce,
        m5::QoS::AtLeastOnce => m4::QoS::AtLeastOnce,
        m5::QoS::ExactlyOnce => m4::QoS::ExactlyOnce,
    }
}

/// Reads the remaining length of a fixed header: `Ok(None)` when more bytes are needed.
fn fixed_header(buf: &[u8]) -> Result<Option<(usize, usize)>, CodecError> {
    let mut len = 0usize;
    for i in 0..4 {
        let Some(b) = buf.get(1 + i) else {
            return Ok(None);
        };
        len |= ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((2 + i, len)));
        }
    }
    Err(CodecError::Malformed(
        "remaining length longer than 4 bytes".into(),
    ))
}

/// The reason code of an AUTH packet (§3.15.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthCode {
    /// 0x00: authentication succeeded.
    Success,
    /// 0x18: continue the exchange.
    Continue,
    /// 0x19: the client starts re-authentication.
    ReAuthenticate,
}

/// An AUTH packet (MQTT 5 §3.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPacket {
    /// The reason code.
    pub code: AuthCode,
    /// Authentication Method (0x15).
    pub method: Option<String>,
    /// Authentication Data (0x16).
    pub data: Option<Bytes>,
    /// Reason String (0x1F).
    pub reason: Option<String>,
    /// User Properties (0x26).
    pub user_properties: Vec<(String, String)>,
}

impl AuthPacket {
    /// An AUTH of `code` for `method` carrying `data`.
    pub fn new(code: AuthCode, method: &str, data: Vec<u8>) -> AuthPacket {
        AuthPacket {
            code,
            method: Some(method.to_string()),
            data: Some(Bytes::from(data)),
            reason: None,
            user_properties: Vec::new(),
        }
    }
}

/// A decoded packet: one of rumqttc's, or an AUTH (coded here, see [`Framer::decode_inbound`]).
// Unboxed like `decode`'s own `v5::Packet`: each packet is moved once, straight to its handler.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Any packet but AUTH.
    Packet(v5::Packet),
    /// An AUTH packet.
    Auth(AuthPacket),
}

/// Frames packets of one connection.
#[derive(Debug)]
pub struct Framer {
    level: Option<Level>,
    max_incoming: usize,
    /// Maximum packet size the client accepts (MQTT 5 CONNECT property).
    pub max_outgoing: Option<usize>,
}

impl Framer {
    /// A framer refusing incoming packets larger than `max_incoming` bytes.
    pub fn new(max_incoming: usize) -> Framer {
        Framer {
            level: None,
            max_incoming,
            max_outgoing: None,
        }
    }

    /// Protocol level, once CONNECT has been read.
    pub fn level(&self) -> Option<Level> {
        self.level
    }

    /// Next whole packet in `buf`, AUTH included (MQTT 5 only), or `Ok(None)` when more bytes
    /// are needed.
    pub fn decode_inbound(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, CodecError> {
        if self.level == Some(Level::V5) && buf.first() == Some(&0xF0) {
            let Some((header_len, remaining)) = fixed_header(buf)? else {
                return Ok(None);
            };
            let size = header_len + remaining;
            if size > self.max_incoming {
                return Err(CodecError::TooLarge {
                    size,
                    max: self.max_incoming,
                });
            }
            if buf.len() < size {
                return Ok(None);
            }
            let packet = buf.split_to(size).freeze();
            return decode_auth(packet.slice(header_len..)).map(|a| Some(Inbound::Auth(a)));
        }
        Ok(self.decode(buf)?.map(Inbound::Packet))
    }

    /// Appends an AUTH packet (MQTT 5 connections only).
    pub fn encode_auth(&self, auth: &AuthPacket, out: &mut BytesMut) {
        if self.level == Some(Level::V5) {
            encode_auth(auth, out);
        }
    }

    /// Next whole packet in `buf` (AUTH is refused: see [`Framer::decode_inbound`]), or
    /// `Ok(None)` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<v5::Packet>, CodecError> {
        let Some((header_len, remaining)) = fixed_header(buf)? else {
            return Ok(None);
        };
        let size = header_len + remaining;
        if size > self.max_incoming {
            return Err(CodecError::TooLarge {
                size,
                max: self.max_incoming,
            });
        }
        if buf.len() < size {
            buf.reserve(size - buf.len());
            return Ok(None);
        }
        let level = match self.level {
            Some(level) => level,
            None => {
                if buf[0] >> 4 != 1 {
                    return Err(CodecError::NotConnect);
                }
                let level = connect_level(&buf[header_len..size])?;
                self.level = Some(level);
                level
            }
        };
        let malformed = |e: &dyn std::fmt::Display| CodecError::Malformed(e.to_string());
        match level {
            Level::V5 => {
                // rumqttc refuses a DISCONNECT with no reason code, which MQTT 5 allows.
                if buf[0] == 0xE0 && remaining == 0 {
                    let _ = buf.split_to(size);
                    return Ok(Some(v5::Packet::Disconnect(v5::Disconnect::new(
                        v5::DisconnectReasonCode::NormalDisconnection,
                    ))));
                }
                if buf[0] == 0xF0 {
                    return Err(CodecError::Malformed("AUTH outside an exchange".into()));
                }
                let packet = v5::Packet::read(buf, None).map_err(|e| malformed(&e))?;
                Ok(Some(packet))
            }
            Level::V4 => {
                let packet = v4::Packet::read(buf, self.max_incoming).map_err(|e| malformed(&e))?;
                Ok(Some(lift(packet)?))
            }
        }
    }

    /// Appends `packet` to `out` in the connection's protocol level. Packets that a 3.1.1
    /// client has no form for (server DISCONNECT, AUTH) are dropped.
    pub fn encode(&self, packet: v5::Packet, out: &mut BytesMut) -> Result<(), CodecError> {
        let enc = |e: &dyn std::fmt::Display| CodecError::Encode(e.to_string());
        match self.level.unwrap_or(Level::V4) {
            Level::V5 => {
                // rumqttc writes a property length byte that its remaining length leaves out;
                // a reason code alone is a complete DISCONNECT.
                if let v5::Packet::Disconnect(v5::Disconnect {
                    reason_code,
                    properties: None,
                }) = &packet
                {
                    out.extend_from_slice(&[0xE0, 0x01, *reason_code as u8]);
                    return Ok(());
                }
                // §3.1.2.11.4: nothing larger than the client's Maximum Packet Size is sent;
                // reason strings and user properties are left out first where that is enough
                // (MQTT-3.2.2-19, -3.4.2-2 and the like). PUBLISH sizes are checked by delivery.
                if let Some(max) = self.max_outgoing {
                    if packet.size() > max {
                        let bare = without_diagnostics(packet);
                        if bare.size() > max {
                            return Err(CodecError::Encode(format!(
                                "{} bytes exceed the client's maximum packet size of {max}",
                                bare.size()
                            )));
                        }
                        bare.write(out, None).map_err(|e| enc(&e))?;
                        return Ok(());
                    }
                }
                packet.write(out, None).map_err(|e| enc(&e))?;
            }
            Level::V4 => {
                if let Some(p) = lower(packet) {
                    p.write(out, usize::MAX).map_err(|e| enc(&e))?;
                }
            }
        }
        Ok(())
    }
}

/// AUTH (MQTT 5 §3.15) is coded here: rumqttc 0.25 miscounts its property lengths (string
/// and binary properties without their 2-byte length), so it can neither read nor write an
/// AUTH that carries an authentication method. `body` follows the fixed header.
fn decode_auth(mut body: Bytes) -> Result<AuthPacket, CodecError> {
    use bytes::Buf;
    let bad = |what: &str| CodecError::Malformed(format!("AUTH: {what}"));
    // §3.15.2.1: no variable header at all means Success without properties.
    let mut out = AuthPacket {
        code: AuthCode::Success,
        method: None,
        data: None,
        reason: None,
        user_properties: Vec::new(),
    };
    if body.is_empty() {
        return Ok(out);
    }
    out.code = match body.get_u8() {
        0x00 => AuthCode::Success,
        0x18 => AuthCode::Continue,
        0x19 => AuthCode::ReAuthenticate,
        other => return Err(bad(&format!("reason code {other:#04x}"))),
    };
    if body.is_empty() {
        return Ok(out);
    }
    let (len_len, len) = varint(&body).ok_or_else(|| bad("property length"))?;
    body.advance(len_len);
    if body.len() != len {
        return Err(bad("property length differs from the packet"));
    }
    fn two(body: &mut Bytes) -> Option<Bytes> {
        if body.len() < 2 {
            return None;
        }
        let n = body.get_u16() as usize;
        (body.len() >= n).then(|| body.split_to(n))
    }
    let string = |b: Bytes| String::from_utf8(b.to_vec()).map_err(|_| bad("string is not UTF-8"));
    let props = &mut out;
    while !body.is_empty() {
        let id = body.get_u8();
        let value = two(&mut body).ok_or_else(|| bad("truncated property"))?;
        match id {
            0x15 if props.method.is_none() => props.method = Some(string(value)?),
            0x16 if props.data.is_none() => props.data = Some(value),
            0x1F if props.reason.is_none() => props.reason = Some(string(value)?),
            0x26 => {
                let v = two(&mut body).ok_or_else(|| bad("truncated user property"))?;
                props.user_properties.push((string(value)?, string(v)?));
            }
            other => {
                return Err(bad(&format!(
                    "property {other:#04x} not allowed or repeated"
                )))
            }
        }
    }
    Ok(out)
}

/// The remaining-length style variable byte integer at the start of `b`: (bytes, value).
fn varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for i in 0..4 {
        let byte = *b.get(i)?;
        v |= ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((i + 1, v));
        }
    }
    None
}

fn put_varint(out: &mut BytesMut, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.extend_from_slice(&[b]);
        if n == 0 {
            break;
        }
    }
}

fn encode_auth(p: &AuthPacket, out: &mut BytesMut) {
    let mut props = BytesMut::new();
    let put = |id: u8, v: &[u8], props: &mut BytesMut| {
        props.extend_from_slice(&[id]);
        props.extend_from_slice(&(v.len() as u16).to_be_bytes());
        props.extend_from_slice(v);
    };
    if let Some(m) = &p.method {
        put(0x15, m.as_bytes(), &mut props);
    }
    if let Some(d) = &p.data {
        put(0x16, d, &mut props);
    }
    if let Some(r) = &p.reason {
        put(0x1F, r.as_bytes(), &mut props);
    }
    for (k, v) in &p.user_properties {
        put(0x26, k.as_bytes(), &mut props);
        props.extend_from_slice(&(v.len() as u16).to_be_bytes());
        props.extend_from_slice(v.as_bytes());
    }
    let code = match p.code {
        AuthCode::Success => 0x00,
        AuthCode::Continue => 0x18,
        AuthCode::ReAuthenticate => 0x19,
    };
    let mut body = BytesMut::new();
    body.extend_from_slice(&[code]);
    put_varint(&mut body, props.len());
    body.extend_from_slice(&props);
    out.extend_from_slice(&[0xF0]);
    put_varint(out, body.len());
    out.extend_from_slice(&body);
}

/// `p` without its reason string and user properties (what may be dropped to fit the client's
/// Maximum Packet Size).
fn without_diagnostics(p: v5::Packet) -> v5::Packet {
    use v5::Packet as P;
    match p {
        P::ConnAck(mut c) => {
            if let Some(props) = &mut c.properties {
                props.reason_string = None;
                props.user_properties.clear();
            }
            P::ConnAck(c)
        }
        P::PubAck(mut a) => {
            a.properties = None;
            P::PubAck(a)
        }
        P::PubRec(mut a) => {
            a.properties = None;
            P::PubRec(a)
        }
        P::PubRel(mut a) => {
            a.properties = None;
            P::PubRel(a)
        }
        P::PubComp(mut a) => {
            a.properties = None;
            P::PubComp(a)
        }
        P::SubAck(mut a) => {
            a.properties = None;
            P::SubAck(a)
        }
        P::UnsubAck(mut a) => {
            a.properties = None;
            P::UnsubAck(a)
        }
        P::Disconnect(mut d) => {
            if let Some(props) = &mut d.properties {
                props.reason_string = None;
                props.user_properties.clear();
            }
            P::Disconnect(d)
        }
        other => other,
    }
}

/// The protocol level of a CONNECT body (variable header onwards).
fn connect_level(body: &[u8]) -> Result<Level, CodecError> {
    if body.len() < 7 {
        return Err(CodecError::Malformed("CONNECT too short".into()));
    }
    let name_len = u16::from_be_bytes([body[0], body[1]]) as usize;
    let name = body
        .get(2..2 + name_len)
        .ok_or_else(|| CodecError::Malformed("CONNECT protocol name".into()))?;
    let level = *body
        .get(2 + name_len)
        .ok_or_else(|| CodecError::Malformed("CONNECT protocol level".into()))?;
    match (name, level) {
        (b"MQTT", 4) => Ok(Level::V4),
        (b"MQTT", 5) => Ok(Level::V5),
        (_, level) => Err(CodecError::UnsupportedLevel(level)),
    }
}

/// A 3.1.1 packet as the equivalent v5 packet.
fn lift(p: v4::Packet) -> Result<v5::Packet, CodecError> {
    Ok(match p {
        v4::Packet::Connect(c) => {
            let will = c.last_will.map(|w| v5::LastWill {
                topic: Bytes::from(w.topic.into_bytes()),
                message: w.message,
                qos: qos45(w.qos),
                retain: w.retain,
                properties: None,
            });
            let login = c.login.map(|l| v5::Login {
                username: l.username,
                password: l.password,
            });
            v5::Packet::Connect(
                v5::Connect {
                    keep_alive: c.keep_alive,
                    client_id: c.client_id,
                    clean_start: c.clean_session,
                    properties: None,
                },
                will,
                login,
            )
        }
        v4::Packet::Publish(p) => v5::Packet::Publish(v5::Publish {
            dup: p.dup,
            qos: qos45(p.qos),
            retain: p.retain,
            topic: Bytes::from(p.topic.into_bytes()),
            pkid: p.pkid,
            payload: p.payload,
            properties: None,
        }),
        v4::Packet::PubAck(a) => v5::Packet::PubAck(v5::PubAck::new(a.pkid, None)),
        v4::Packet::PubRec(a) => v5::Packet::PubRec(v5::PubRec::new(a.pkid, None)),
        v4::Packet::PubRel(a) => v5::Packet::PubRel(v5::PubRel::new(a.pkid, None)),
        v4::Packet::PubComp(a) => v5::Packet::PubComp(v5::PubComp::new(a.pkid, None)),
        v4::Packet::Subscribe(s) => v5::Packet::Subscribe(v5::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| v5::Filter::new(f.path, qos45(f.qos)))
                .collect(),
            properties: None,
        }),
        v4::Packet::Unsubscribe(u) => v5::Packet::Unsubscribe(v5::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
            properties: None,
        }),
        v4::Packet::PingReq => v5::Packet::PingReq(v5::PingReq),
        v4::Packet::Disconnect => v5::Packet::Disconnect(v5::Disconnect::new(
            v5::DisconnectReasonCode::NormalDisconnection,
        )),
        other => {
            return Err(CodecError::Malformed(format!(
                "a client may not send {other:?}"
            )))
        }
    })
}

/// A v5 packet as the 3.1.1 packet a client understands, if it has one.
fn lower(p: v5::Packet) -> Option<v4::Packet> {
    Some(match p {
        v5::Packet::ConnAck(c) => {
            use v4::ConnectReturnCode as R4;
            use v5::ConnectReturnCode as R5;
            let code = match c.code {
                R5::Success => R4::Success,
                R5::UnsupportedProtocolVersion | R5::RefusedProtocolVersion => {
                    R4::RefusedProtocolVersion
                }
                R5::ClientIdentifierNotValid | R5::BadClientId => R4::BadClientId,
                R5::BadUserNamePassword => R4::BadUserNamePassword,
                R5::NotAuthorized => R4::NotAuthorized,
                _ => R4::ServiceUnavailable,
            };
            v4::Packet::ConnAck(v4::ConnAck::new(code, c.session_present))
        }
        v5::Packet::Publish(p) => v4::Packet::Publish(v4::Publish {
            dup: p.dup,
            qos: qos54(p.qos),
            retain: p.retain,
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            pkid: p.pkid,
            payload: p.payload,
        }),
        v5::Packet::PubAck(a) => v4::Packet::PubAck(v4::PubAck::new(a.pkid)),
        v5::Packet::PubRec(a) => v4::Packet::PubRec(v4::PubRec::new(a.pkid)),
        v5::Packet::PubRel(a) => v4::Packet::PubRel(v4::PubRel::new(a.pkid)),
        v5::Packet::PubComp(a) => v4::Packet::PubComp(v4::PubComp::new(a.pkid)),
        v5::Packet::SubAck(s) => v4::Packet::SubAck(v4::SubAck::new(
            s.pkid,
            s.return_codes
                .into_iter()
                .map(|c| match c {
                    v5::SubscribeReasonCode::Success(q) => {
                        v4::SubscribeReasonCode::Success(qos54(q))
                    }
                    _ => v4::SubscribeReasonCode::Failure,
                })
                .collect(),
        )),
        v5::Packet::UnsubAck(u) => v4::Packet::UnsubAck(v4::UnsubAck::new(u.pkid)),
        v5::Packet::PingResp(_) => v4::Packet::PingResp,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode4(p: v4::Packet) -> BytesMut {
        let mut b = BytesMut::new();
        p.write(&mut b, usize::MAX).unwrap();
        b
    }

    #[test]
    fn auth_packets_round_trip() {
        let mut f = Framer::new(1 << 20);
        let connect = v5::Connect {
            keep_alive: 30,
            client_id: "c".into(),
            clean_start: true,
            properties: None,
        };
        let mut buf = BytesMut::new();
        v5::Packet::Connect(connect, None, None)
            .write(&mut buf, None)
            .unwrap();
        f.decode(&mut buf).unwrap().unwrap();
        let mut auth = AuthPacket::new(
            AuthCode::Continue,
            "SCRAM-SHA-256",
            b"r=abc,i=4096".to_vec(),
        );
        auth.reason = Some("go on".into());
        auth.user_properties = vec![("k".into(), "v".into())];
        let mut out = BytesMut::new();
        f.encode_auth(&auth, &mut out);
        // reason code, property length, then the properties with their 2-byte lengths
        let n = out.len() as u8;
        assert_eq!(&out[..4], &[0xF0, n - 2, 0x18, n - 4]);
        assert_eq!(
            f.decode_inbound(&mut out).unwrap(),
            Some(Inbound::Auth(auth))
        );
        let mut bare = BytesMut::from(&[0xF0u8, 0x00][..]);
        assert!(matches!(
            f.decode_inbound(&mut bare).unwrap(),
            Some(Inbound::Auth(AuthPacket {
                code: AuthCode::Success,
                method: None,
                ..
            }))
        ));
        let mut bad = BytesMut::from(&[0xF0u8, 0x01, 0x42][..]);
        assert!(f.decode_inbound(&mut bad).is_err());
    }

    #[test]
    fn detects_v4_and_lifts_publish() {
        let mut f = Framer::new(1 << 20);
        let mut buf = encode4(v4::Packet::Connect(v4::Connect::new("c1")));
        let mut publish = v4::Publish::new("a/b", m4::QoS::AtLeastOnce, b"x".to_vec());
        publish.pkid = 7;
        buf.extend_from_slice(&encode4(v4::Packet::Publish(publish)));
        match f.decode(&mut buf).unwrap() {
            Some(v5::Packet::Connect(c, None, None)) => assert_eq!(c.client_id, "c1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.level(), Some(Level::V4));
        match f.decode(&mut buf).unwrap() {
            Some(v5::Packet::Publish(p)) => {
                assert_eq!(&p.topic[..], b"a/b");
                assert_eq!(p.pkid, 7);
            }
            other => panic!("{other:?}"),
        }
        assert!(buf.is_empty());
        let mut out = BytesMut::new();
        f.encode(v5::Packet::PubAck(v5::PubAck::new(7, None)), &mut out)
            .unwrap();
        assert_eq!(&out[..], &[0x40, 2, 0, 7]);
    }

    #[test]
    fn detects_v5_and_bare_disconnect() {
        let mut f = Framer::new(1 << 20);
        let mut buf = BytesMut::new();
        v5::Packet::Connect(
            v5::Connect {
                keep_alive: 30,
                client_id: "c5".into(),
                clean_start: true,
                properties: None,
            },
            None,
            None,
        )
        .write(&mut buf, None)
        .unwrap();
        buf.extend_from_slice(&[0xE0, 0]);
        assert!(matches!(
            f.decode(&mut buf),
            Ok(Some(v5::Packet::Connect(..)))
        ));
        assert_eq!(f.level(), Some(Level::V5));
        assert!(matches!(
            f.decode(&mut buf),
            Ok(Some(v5::Packet::Disconnect(_)))
        ));
    }

    #[test]
    fn reason_strings_are_dropped_to_fit_the_clients_maximum_packet_size() {
        let mut f = Framer::new(1 << 20);
        let mut buf = BytesMut::new();
        v5::Packet::Connect(
            v5::Connect {
                keep_alive: 30,
                client_id: "c5".into(),
                clean_start: true,
                properties: None,
            },
            None,
            None,
        )
        .write(&mut buf, None)
        .unwrap();
        f.decode(&mut buf).unwrap();
        f.max_outgoing = Some(16);
        let mut ack = v5::PubAck::new(3, None);
        ack.reason = v5::PubAckReason::NotAuthorized;
        ack.properties = Some(v5::PubAckProperties {
            reason_string: Some("a reason string far longer than sixteen bytes".into()),
            user_properties: Vec::new(),
        });
        let mut out = BytesMut::new();
        f.encode(v5::Packet::PubAck(ack), &mut out).unwrap();
        assert_eq!(&out[..], &[0x40, 4, 0, 3, 0x87, 0]);
        let big = v5::Publish::new("t", m5::QoS::AtMostOnce, vec![0u8; 64], None);
        assert!(f.encode(v5::Packet::Publish(big), &mut out).is_err());
    }

    #[test]
    fn refuses_bad_first_packets_and_oversize() {
        let mut f = Framer::new(1 << 20);
        let mut buf = BytesMut::from(&[0xC0u8, 0][..]);
        assert!(matches!(f.decode(&mut buf), Err(CodecError::NotConnect)));
        let mut f = Framer::new(16);
        let mut buf = BytesMut::from(&[0x10u8, 0x7f][..]);
        assert!(matches!(
            f.decode(&mut buf),
            Err(CodecError::TooLarge { .. })
        ));
        let mut f = Framer::new(1 << 20);
        let mut buf = BytesMut::from(&[0x10u8, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert!(f.decode(&mut buf).is_err());
        // partial packet: wait for more
        let mut f = Framer::new(1 << 20);
        let mut buf = BytesMut::from(&[0x10u8, 0x10, 0, 4][..]);
        assert!(matches!(f.decode(&mut buf), Ok(None)));
    }
}
