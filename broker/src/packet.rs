//! The MQTT packets the front door reads or writes whole: CONNECT (parsed, then spliced with a
//! rewritten client id), and the CONNACK / DISCONNECT packets it sends itself.

use std::ops::Range;

use crate::framing::{fixed_header, FixedHeader};

/// MQTT protocol level carried in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5 (protocol level 5).
    V5,
}

/// Why a byte sequence is not an acceptable first packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The first packet is not a CONNECT (type byte shown).
    #[error("first packet is not CONNECT (fixed header byte {0:#04x})")]
    NotConnect(u8),
    /// The remaining-length field uses more than four bytes.
    #[error("malformed remaining length")]
    MalformedLength,
    /// The packet is larger than the configured limit.
    #[error("packet of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Total packet size announced by the fixed header.
        size: usize,
        /// The configured `max_packet_size`.
        limit: usize,
    },
    /// The CONNECT body ends early or a field is inconsistent.
    #[error("malformed CONNECT: {0}")]
    MalformedConnect(&'static str),
    /// The protocol level is not 4 or 5 (3 is MQTT 3.1).
    #[error("unsupported protocol level {0}")]
    UnsupportedLevel(u8),
    /// The client id is not valid UTF-8.
    #[error("client id is not UTF-8")]
    ClientIdNotUtf8,
    /// A packet type a client never sends after CONNECT (fixed header byte shown).
    #[error("packet type {kind} is not one a client may send (fixed header byte {0:#04x})", kind = .0 >> 4)]
    NotFromClient(u8),
}

/// Encodes an MQTT variable byte integer.
pub(crate) fn push_varint(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            break;
        }
    }
}

/// The parts of a CONNECT the front door decides on, with byte ranges into the packet so the
/// client id and keep-alive can be spliced without re-encoding anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol version requested.
    pub version: ProtocolVersion,
    /// Client identifier as sent.
    pub client_id: String,
    /// Clean session (v4) / clean start (v5) flag.
    pub clean_session: bool,
    /// Keep-alive in seconds.
    pub keep_alive: u16,
    /// Username, if the username flag is set.
    pub username: Option<String>,
    /// Password bytes, if the password flag is set.
    pub password: Option<Vec<u8>>,
    /// The will topic, if the will flag is set (a will is a publish too).
    pub will_topic: Option<String>,
    keep_alive_at: usize,
    client_id_field: Range<usize>,
}

/// A cursor over a CONNECT body.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PacketError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or(PacketError::MalformedConnect(what))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, PacketError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, PacketError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn binary(&mut self, what: &'static str) -> Result<&'a [u8], PacketError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    fn varint(&mut self, what: &'static str) -> Result<usize, PacketError> {
        let mut value = 0usize;
        for i in 0..4 {
            let byte = self.u8(what)?;
            value |= usize::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(PacketError::MalformedConnect(what))
    }

    fn properties(&mut self, what: &'static str) -> Result<(), PacketError> {
        let len = self.varint(what)?;
        self.take(len, what).map(|_| ())
    }
}

impl Connect {
    /// Parses a whole CONNECT packet (fixed header included).
    pub fn parse(packet: &[u8]) -> Result<Connect, PacketError> {
        let first = *packet
            .first()
            .ok_or(PacketError::MalformedConnect("empty"))?;
        if first != 0x10 {
            return Err(PacketError::NotConnect(first));
        }
        let FixedHeader::Complete { header_len, .. } = fixed_header(packet)? else {
            return Err(PacketError::MalformedConnect("fixed header"));
        };
        let mut r = Reader {
            buf: packet,
            pos: header_len,
        };
        let name = r.binary("protocol name")?;
        let level = r.u8("protocol level")?;
        let version = match (name, level) {
            (b"MQTT", 4) => ProtocolVersion::V4,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (_, level) => return Err(PacketError::UnsupportedLevel(level)),
        };
        let flags = r.u8("connect flags")?;
        let keep_alive_at = r.pos;
        let keep_alive = r.u16("keep alive")?;
        if version == ProtocolVersion::V5 {
            r.properties("connect properties")?;
        }
        let id_start = r.pos;
        let id = r.binary("client id")?;
        let client_id_field = id_start..r.pos;
        let client_id = std::str::from_utf8(id)
            .map_err(|_| PacketError::ClientIdNotUtf8)?
            .to_owned();
        let will_topic = if flags & 0x04 != 0 {
            if version == ProtocolVersion::V5 {
                r.properties("will properties")?;
            }
            let topic = r.binary("will topic")?;
            r.binary("will payload")?;
            let topic = std::str::from_utf8(topic)
                .map_err(|_| PacketError::MalformedConnect("will topic is not UTF-8"))?;
            Some(topic.to_owned())
        } else {
            None
        };
        let username = if flags & 0x80 != 0 {
            Some(String::from_utf8_lossy(r.binary("username")?).into_owned())
        } else {
            None
        };
        let password = if flags & 0x40 != 0 {
            Some(r.binary("password")?.to_vec())
        } else {
            None
        };
        Ok(Connect {
            version,
            client_id,
            clean_session: flags & 0x02 != 0,
            keep_alive,
            username,
            password,
            will_topic,
            keep_alive_at,
            client_id_field,
        })
    }

    /// Re-encodes `packet` (the bytes this was parsed from) with another client id and
    /// keep-alive; every other byte is copied unchanged.
    pub fn splice(&self, packet: &[u8], client_id: &str, keep_alive: u16) -> Vec<u8> {
        let id = client_id.as_bytes();
        let mut body = Vec::with_capacity(packet.len() + id.len());
        let header_len = match fixed_header(packet) {
            Ok(FixedHeader::Complete { header_len, .. }) => header_len,
            _ => 2,
        };
        body.extend_from_slice(&packet[header_len..self.keep_alive_at]);
        body.extend_from_slice(&keep_alive.to_be_bytes());
        body.extend_from_slice(&packet[self.keep_alive_at + 2..self.client_id_field.start]);
        // Callers bound the id length (client_id::MAX_ENCODED_LEN), so it fits a u16.
        let id_len = u16::try_from(id.len()).unwrap_or(u16::MAX);
        body.extend_from_slice(&id_len.to_be_bytes());
        body.extend_from_slice(&id[..usize::from(id_len)]);
        body.extend_from_slice(&packet[self.client_id_field.end..]);
        let mut out = Vec::with_capacity(body.len() + 5);
        out.push(0x10);
        push_varint(&mut out, body.len());
        out.extend_from_slice(&body);
        out
    }
}

/// CONNACK reasons the front door sends itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Protocol level not supported (MQTT 3.1 and unknown levels).
    UnsupportedProtocol,
    /// The client id cannot be accepted (not UTF-8, too long).
    ClientIdRejected,
    /// The connection limit is reached.
    ServerBusy,
    /// Users are configured and CONNECT carries no username.
    NotAuthorized,
    /// Unknown username or wrong password.
    BadCredentials,
}

/// Encodes a CONNACK refusing the connection with `refusal`, for `version`.
pub fn connack_refusal(version: ProtocolVersion, refusal: Refusal) -> Vec<u8> {
    match version {
        ProtocolVersion::V4 => {
            let code = match refusal {
                Refusal::UnsupportedProtocol => 0x01,
                Refusal::ClientIdRejected => 0x02,
                Refusal::ServerBusy => 0x03,
                Refusal::BadCredentials => 0x04,
                Refusal::NotAuthorized => 0x05,
            };
            vec![0x20, 0x02, 0x00, code]
        }
        ProtocolVersion::V5 => {
            let reason = match refusal {
                Refusal::UnsupportedProtocol => 0x84,
                Refusal::ClientIdRejected => 0x85,
                Refusal::ServerBusy => 0x97,
                Refusal::BadCredentials => 0x86,
                Refusal::NotAuthorized => 0x87,
            };
            // Session-present 0, reason, empty property list.
            vec![0x20, 0x03, 0x00, reason, 0x00]
        }
    }
}

/// MQTT 5 DISCONNECT with reason 0x95 "packet too large".
pub const DISCONNECT_PACKET_TOO_LARGE: [u8; 4] = [0xe0, 0x02, 0x95, 0x00];

/// MQTT 5 DISCONNECT with reason 0x8E "session taken over".
pub const DISCONNECT_SESSION_TAKEN_OVER: [u8; 4] = [0xe0, 0x02, 0x8e, 0x00];

/// MQTT 5 DISCONNECT with reason 0x87 "not authorized".
pub const DISCONNECT_NOT_AUTHORIZED: [u8; 4] = [0xe0, 0x02, 0x87, 0x00];

/// MQTT 5 DISCONNECT with reason 0x94 "topic alias invalid".
pub const DISCONNECT_TOPIC_ALIAS_INVALID: [u8; 4] = [0xe0, 0x02, 0x94, 0x00];

/// MQTT 5 DISCONNECT with reason 0x81 "malformed packet".
pub const DISCONNECT_MALFORMED: [u8; 4] = [0xe0, 0x02, 0x81, 0x00];

/// MQTT 5 DISCONNECT with reason 0x8B "server shutting down".
pub const DISCONNECT_SHUTTING_DOWN: [u8; 4] = [0xe0, 0x02, 0x8b, 0x00];

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_connect(id: &str, user: Option<(&str, &str)>) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4];
        let mut flags = 0x02;
        if user.is_some() {
            flags |= 0xc0;
        }
        body.push(flags);
        body.extend_from_slice(&60u16.to_be_bytes());
        body.extend_from_slice(&(id.len() as u16).to_be_bytes());
        body.extend_from_slice(id.as_bytes());
        if let Some((u, p)) = user {
            for s in [u, p] {
                body.extend_from_slice(&(s.len() as u16).to_be_bytes());
                body.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = vec![0x10];
        push_varint(&mut out, body.len());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn connect_parse_reads_id_and_credentials() {
        let packet = v4_connect("dev/1", Some(("alice", "s3cret")));
        let connect = Connect::parse(&packet).expect("valid connect");
        assert_eq!(connect.version, ProtocolVersion::V4);
        assert_eq!(connect.client_id, "dev/1");
        assert_eq!(connect.username.as_deref(), Some("alice"));
        assert_eq!(connect.password.as_deref(), Some(&b"s3cret"[..]));
    }

    #[test]
    fn splice_replaces_only_id_and_keep_alive() {
        let packet = v4_connect("a/b", Some(("u", "p")));
        let connect = Connect::parse(&packet).expect("valid connect");
        let spliced = connect.splice(&packet, "a%2Fb-longer", 30);
        let again = Connect::parse(&spliced).expect("spliced connect parses");
        assert_eq!(again.client_id, "a%2Fb-longer");
        assert_eq!(again.keep_alive, 30);
        assert_eq!(again.username.as_deref(), Some("u"));
        assert_eq!(again.password.as_deref(), Some(&b"p"[..]));
    }
}
