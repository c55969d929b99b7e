//! The permission gate on an authenticated client's packets to rumqttd: PUBLISH topics and
//! SUBSCRIBE filters are checked against the user's [`Permissions`]; everything else passes.
//!
//! Used only when users are configured, so an open broker pays no parsing cost. The gate holds
//! at most one incomplete packet (bounded by `max_packet_size`).
//!
//! A forbidden PUBLISH never reaches rumqttd. MQTT 5 lets the broker say so: QoS 1 gets PUBACK
//! 0x87 "not authorized", QoS 2 PUBREC 0x87, QoS 0 is dropped; the connection stays up.
//! MQTT 3.1.1 has no way to refuse a publish, so the connection is closed. A SUBSCRIBE with any
//! forbidden filter is answered by the front door with a SUBACK failing every filter (3.1.1
//! 0x80, 5 0x87) and never reaches rumqttd.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tracing::warn;

use crate::acl::Permissions;
use crate::framing::{client_may_send, fixed_header, FixedHeader};
use crate::packet::{push_varint, PacketError, ProtocolVersion};

/// MQTT 5 reason code "not authorized".
const NOT_AUTHORIZED: u8 = 0x87;

/// 3.1.1 SUBACK return code "failure".
const SUBACK_FAILURE_V4: u8 = 0x80;

/// Why the gate closes a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GateError {
    /// Framing broke or a packet exceeds the size limit.
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// A PUBLISH or SUBSCRIBE body is not well formed.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// An MQTT 3.1.1 client published where it may not (3.1.1 cannot refuse a publish).
    #[error("publish on {0:?} not authorized")]
    Forbidden(String),
    /// An MQTT 5 PUBLISH used a topic alias this connection never set.
    #[error("unknown topic alias {0}")]
    UnknownTopicAlias(u16),
}

/// Checks one authenticated connection's client→broker packets.
pub(crate) struct Gate {
    permissions: Arc<Permissions>,
    version: ProtocolVersion,
    limit: usize,
    peer: SocketAddr,
    username: String,
    /// Bytes of a packet not yet complete.
    pending: Vec<u8>,
    /// MQTT 5 topic aliases this client set on publishes that were allowed.
    aliases: HashMap<u16, String>,
}

/// What to do with one whole packet.
enum Decision {
    Forward,
    Drop,
    Reply(Vec<u8>),
}

impl Gate {
    /// A gate for `username`'s connection from `peer`, refusing packets over `limit` bytes.
    pub(crate) fn new(
        permissions: Arc<Permissions>,
        version: ProtocolVersion,
        limit: usize,
        peer: SocketAddr,
        username: String,
    ) -> Gate {
        Gate {
            permissions,
            version,
            limit,
            peer,
            username,
            pending: Vec::new(),
            aliases: HashMap::new(),
        }
    }

    /// Feeds bytes from the client: appends the packets rumqttd may see to `forward` and the
    /// front door's own answers to `reply`. On error, `forward` still holds the allowed
    /// packets before the offending one.
    pub(crate) fn feed(
        &mut self,
        chunk: &[u8],
        forward: &mut Vec<u8>,
        reply: &mut Vec<u8>,
    ) -> Result<(), GateError> {
        // Taken out while packets are judged, which needs `self` mutably (topic aliases).
        let mut pending = std::mem::take(&mut self.pending);
        let result = if pending.is_empty() {
            // The common case: judge straight from the read buffer, keep only a partial tail.
            let (used, result) = self.judge_whole(chunk, forward, reply);
            pending.extend_from_slice(&chunk[used..]);
            result
        } else {
            pending.extend_from_slice(chunk);
            let (used, result) = self.judge_whole(&pending, forward, reply);
            pending.drain(..used);
            result
        };
        self.pending = pending;
        result
    }

    /// Judges the whole packets at the start of `data`; returns the bytes used and whether
    /// the connection may go on.
    fn judge_whole(
        &mut self,
        data: &[u8],
        forward: &mut Vec<u8>,
        reply: &mut Vec<u8>,
    ) -> (usize, Result<(), GateError>) {
        let mut start = 0;
        let result = loop {
            let rest = &data[start..];
            if rest.is_empty() {
                break Ok(());
            }
            let (header_len, size) = match fixed_header(rest) {
                Ok(FixedHeader::Complete {
                    header_len,
                    remaining,
                }) => (header_len, header_len + remaining),
                Ok(FixedHeader::Incomplete) => break Ok(()),
                Err(err) => break Err(err.into()),
            };
            if size > self.limit {
                break Err(PacketError::TooLarge {
                    size,
                    limit: self.limit,
                }
                .into());
            }
            if rest.len() < size {
                break Ok(());
            }
            let packet = &rest[..size];
            match self.judge(packet[0], &packet[header_len..]) {
                Ok(Decision::Forward) => forward.extend_from_slice(packet),
                Ok(Decision::Drop) => {}
                Ok(Decision::Reply(bytes)) => reply.extend_from_slice(&bytes),
                Err(err) => break Err(err),
            }
            start += size;
        };
        (start, result)
    }

    fn judge(&mut self, first: u8, body: &[u8]) -> Result<Decision, GateError> {
        // The same refusal as the unauthenticated path's framer: these panic rumqttd.
        if !client_may_send(first) {
            return Err(PacketError::NotFromClient(first).into());
        }
        match first >> 4 {
            3 => self.judge_publish(first, body),
            8 => self.judge_subscribe(body),
            _ => Ok(Decision::Forward),
        }
    }

    fn judge_publish(&mut self, first: u8, body: &[u8]) -> Result<Decision, GateError> {
        let malformed = || GateError::Malformed("PUBLISH");
        let qos = (first >> 1) & 0x03;
        let mut r = Cursor { buf: body, pos: 0 };
        let topic = r.binary().ok_or_else(malformed)?;
        let topic = std::str::from_utf8(topic).map_err(|_| malformed())?;
        let packet_id = match qos {
            0 => 0,
            1 | 2 => r.u16().ok_or_else(malformed)?,
            _ => return Err(malformed()),
        };
        let alias = match self.version {
            ProtocolVersion::V4 => None,
            ProtocolVersion::V5 => publish_topic_alias(&mut r).ok_or_else(malformed)?,
        };
        // Borrowed in the common case: no allocation per allowed PUBLISH.
        let topic: Cow<'_, str> = match (topic.is_empty(), alias) {
            (false, _) => Cow::Borrowed(topic),
            (true, Some(alias)) => Cow::Owned(
                self.aliases
                    .get(&alias)
                    .cloned()
                    .ok_or(GateError::UnknownTopicAlias(alias))?,
            ),
            (true, None) => return Err(malformed()),
        };
        if self.permissions.may_publish(&topic) {
            if let Some(alias) = alias {
                self.aliases.insert(alias, topic.into_owned());
            }
            return Ok(Decision::Forward);
        }
        warn!(peer = %self.peer, user = %self.username, %topic, qos, "refusing publish: not authorized");
        let id = packet_id.to_be_bytes();
        match (self.version, qos) {
            (ProtocolVersion::V4, _) => Err(GateError::Forbidden(topic.into_owned())),
            (ProtocolVersion::V5, 0) => Ok(Decision::Drop),
            // PUBACK / PUBREC with a reason and no properties.
            (ProtocolVersion::V5, 1) => {
                Ok(Decision::Reply(vec![0x40, 3, id[0], id[1], NOT_AUTHORIZED]))
            }
            (ProtocolVersion::V5, _) => {
                Ok(Decision::Reply(vec![0x50, 3, id[0], id[1], NOT_AUTHORIZED]))
            }
        }
    }

    fn judge_subscribe(&mut self, body: &[u8]) -> Result<Decision, GateError> {
        let malformed = || GateError::Malformed("SUBSCRIBE");
        let mut r = Cursor { buf: body, pos: 0 };
        let packet_id = r.u16().ok_or_else(malformed)?;
        if self.version == ProtocolVersion::V5 {
            let len = r.varint().ok_or_else(malformed)?;
            r.take(len).ok_or_else(malformed)?;
        }
        let mut filters = 0usize;
        let mut forbidden = Vec::new();
        while r.pos < body.len() {
            let filter = r.binary().ok_or_else(malformed)?;
            r.take(1).ok_or_else(malformed)?;
            let filter = std::str::from_utf8(filter).map_err(|_| malformed())?;
            if !self.permissions.may_subscribe(filter) {
                forbidden.push(filter.to_owned());
            }
            filters += 1;
        }
        if forbidden.is_empty() {
            return Ok(Decision::Forward);
        }
        warn!(peer = %self.peer, user = %self.username, filters = ?forbidden, "refusing subscribe: not authorized");
        let (code, properties): (u8, &[u8]) = match self.version {
            ProtocolVersion::V4 => (SUBACK_FAILURE_V4, &[]),
            ProtocolVersion::V5 => (NOT_AUTHORIZED, &[0]),
        };
        let mut suback = vec![0x90];
        push_varint(&mut suback, 2 + properties.len() + filters);
        suback.extend_from_slice(&packet_id.to_be_bytes());
        suback.extend_from_slice(properties);
        suback.resize(suback.len() + filters, code);
        Ok(Decision::Reply(suback))
    }
}

/// Walks an MQTT 5 PUBLISH's properties and returns its topic alias (`Some(None)` if none);
/// `None` when the properties are malformed or not allowed on PUBLISH.
fn publish_topic_alias(r: &mut Cursor<'_>) -> Option<Option<u16>> {
    let len = r.varint()?;
    let mut props = Cursor {
        buf: r.take(len)?,
        pos: 0,
    };
    let mut alias = None;
    while props.pos < props.buf.len() {
        match props.varint()? {
            0x01 => {
                props.take(1)?;
            }
            0x02 => {
                props.take(4)?;
            }
            0x03 | 0x08 | 0x09 => {
                props.binary()?;
            }
            0x0b => {
                props.varint()?;
            }
            0x23 => alias = Some(props.u16()?),
            0x26 => {
                props.binary()?;
                props.binary()?;
            }
            _ => return None,
        }
    }
    Some(alias)
}

/// A cursor over a packet body; every read is bounds-checked.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Some(bytes)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn binary(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    fn varint(&mut self) -> Option<usize> {
        let mut value = 0usize;
        for i in 0..4 {
            let byte = self.take(1)?[0];
            value |= usize::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
