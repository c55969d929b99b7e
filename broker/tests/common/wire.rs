//! MQTT 3.1.1 and 5 packets as bytes, with MQTT 5 properties, for tests that must control (or
//! see) exactly what goes over the wire: no client library sends a wildcard topic name, a topic
//! alias of 0, or leaves a QoS 1 message unacknowledged on purpose.

use super::varint;

/// MQTT 5 property identifiers used by the tests (MQTT 5.0 §2.2.2.2).
pub mod prop {
    /// Payload format indicator (byte).
    pub const PAYLOAD_FORMAT: u8 = 0x01;
    /// Message expiry interval, seconds (u32).
    pub const MESSAGE_EXPIRY: u8 = 0x02;
    /// Content type (string).
    pub const CONTENT_TYPE: u8 = 0x03;
    /// Response topic (string).
    pub const RESPONSE_TOPIC: u8 = 0x08;
    /// Correlation data (binary).
    pub const CORRELATION_DATA: u8 = 0x09;
    /// Subscription identifier (varint).
    pub const SUBSCRIPTION_ID: u8 = 0x0b;
    /// Session expiry interval, seconds (u32).
    pub const SESSION_EXPIRY: u8 = 0x11;
    /// Assigned client identifier (string).
    pub const ASSIGNED_CLIENT_ID: u8 = 0x12;
    /// Server keep alive (u16).
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    /// Will delay interval, seconds (u32).
    pub const WILL_DELAY: u8 = 0x18;
    /// Reason string (string).
    pub const REASON_STRING: u8 = 0x1f;
    /// Receive maximum (u16).
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    /// Topic alias maximum (u16).
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    /// Topic alias (u16).
    pub const TOPIC_ALIAS: u8 = 0x23;
    /// User property (string pair).
    pub const USER: u8 = 0x26;
    /// Maximum packet size (u32).
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
}

/// One property value; its wire type follows from the identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A byte.
    Byte(u8),
    /// A two-byte integer.
    U16(u16),
    /// A four-byte integer.
    U32(u32),
    /// A variable byte integer.
    Var(u32),
    /// A UTF-8 string.
    Str(String),
    /// Binary data.
    Bin(Vec<u8>),
    /// A string pair (user property).
    Pair(String, String),
}

/// An ordered list of MQTT 5 properties, as sent or received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props(pub Vec<(u8, Value)>);

impl Props {
    /// No properties.
    pub fn new() -> Props {
        Props::default()
    }

    /// Adds a property of the identifier's own type (from a number or text).
    pub fn with(mut self, id: u8, value: Value) -> Props {
        self.0.push((id, value));
        self
    }

    /// Adds a four-byte integer property.
    pub fn u32(self, id: u8, value: u32) -> Props {
        self.with(id, Value::U32(value))
    }

    /// Adds a two-byte integer property.
    pub fn u16(self, id: u8, value: u16) -> Props {
        self.with(id, Value::U16(value))
    }

    /// Adds a string property.
    pub fn str(self, id: u8, value: &str) -> Props {
        self.with(id, Value::Str(value.into()))
    }

    /// Adds a user property.
    pub fn user(self, key: &str, value: &str) -> Props {
        self.with(prop::USER, Value::Pair(key.into(), value.into()))
    }

    /// The first value of `id`.
    pub fn get(&self, id: u8) -> Option<&Value> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }

    /// The first integer value of `id` (any integer width).
    pub fn int(&self, id: u8) -> Option<u32> {
        match self.get(id)? {
            Value::Byte(b) => Some(u32::from(*b)),
            Value::U16(v) => Some(u32::from(*v)),
            Value::U32(v) | Value::Var(v) => Some(*v),
            _ => None,
        }
    }

    /// Every user property, in order.
    pub fn users(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(_, v)| match v {
                Value::Pair(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// Encodes the property length and the properties.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        for (id, value) in &self.0 {
            body.push(*id);
            match value {
                Value::Byte(b) => body.push(*b),
                Value::U16(v) => body.extend_from_slice(&v.to_be_bytes()),
                Value::U32(v) => body.extend_from_slice(&v.to_be_bytes()),
                Value::Var(v) => varint(*v as usize, &mut body),
                Value::Str(s) => string(s.as_bytes(), &mut body),
                Value::Bin(b) => string(b, &mut body),
                Value::Pair(k, v) => {
                    string(k.as_bytes(), &mut body);
                    string(v.as_bytes(), &mut body);
                }
            }
        }
        varint(body.len(), out);
        out.extend_from_slice(&body);
    }

    /// Decodes a property length and the properties from `reader`.
    pub fn decode(reader: &mut Reader<'_>) -> Props {
        let len = reader.varint() as usize;
        let mut inner = Reader(reader.take(len));
        let mut props = Props::new();
        while !inner.0.is_empty() {
            let id = inner.byte();
            let value = match id {
                0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2a => Value::Byte(inner.byte()),
                0x13 | 0x21 | 0x22 | 0x23 => Value::U16(inner.u16()),
                0x02 | 0x11 | 0x18 | 0x27 => Value::U32(inner.u32()),
                0x0b => Value::Var(inner.varint()),
                0x09 | 0x16 => Value::Bin(inner.binary().to_vec()),
                0x26 => Value::Pair(inner.string(), inner.string()),
                _ => Value::Str(inner.string()),
            };
            props.0.push((id, value));
        }
        props
    }
}

/// Appends a two-byte length and the bytes.
pub fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// Frames a packet body behind its first header byte.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut packet = vec![first];
    varint(body.len(), &mut packet);
    packet.extend_from_slice(body);
    packet
}

/// A cursor over a received packet body; malformed input fails the test.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "packet shorter than its fields");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    /// One byte.
    pub fn byte(&mut self) -> u8 {
        self.take(1)[0]
    }

    /// A two-byte integer.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take(2).try_into().expect("2 bytes"))
    }

    /// A four-byte integer.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().expect("4 bytes"))
    }

    /// A variable byte integer.
    pub fn varint(&mut self) -> u32 {
        let mut value = 0u32;
        for shift in (0..4).map(|i| 7 * i) {
            let byte = self.byte();
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        value
    }

    /// Length-prefixed bytes.
    pub fn binary(&mut self) -> &'a [u8] {
        let len = self.u16() as usize;
        self.take(len)
    }

    /// A length-prefixed UTF-8 string.
    pub fn string(&mut self) -> String {
        String::from_utf8(self.binary().to_vec()).expect("UTF-8 string from the broker")
    }

    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.0.len())
    }
}

/// A will message in a CONNECT.
#[derive(Debug, Clone, Default)]
pub struct Will {
    /// Will topic.
    pub topic: String,
    /// Will payload.
    pub payload: Vec<u8>,
    /// Will QoS.
    pub qos: u8,
    /// Will retain flag.
    pub retain: bool,
    /// Will properties (MQTT 5 only).
    pub props: Props,
}

/// A CONNECT with everything the tests vary.
#[derive(Debug, Clone)]
pub struct Connect {
    /// 4 (MQTT 3.1.1) or 5.
    pub version: u8,
    /// Client identifier.
    pub client_id: String,
    /// Clean session (3.1.1) / clean start (5).
    pub clean: bool,
    /// Keep alive, seconds.
    pub keep_alive: u16,
    /// CONNECT properties (MQTT 5 only).
    pub props: Props,
    /// Optional will.
    pub will: Option<Will>,
    /// Optional username and password.
    pub login: Option<(String, String)>,
}

impl Connect {
    /// A clean-session CONNECT of `version` for `client_id`, keep-alive 30 s.
    pub fn new(version: u8, client_id: &str) -> Connect {
        Connect {
            version,
            client_id: client_id.into(),
            clean: true,
            keep_alive: 30,
            props: Props::new(),
            will: None,
            login: None,
        }
    }

    /// The packet's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let v5 = self.version == 5;
        let mut body = Vec::new();
        string(b"MQTT", &mut body);
        body.push(self.version);
        let mut flags = if self.clean { 0x02 } else { 0 };
        if let Some(will) = &self.will {
            flags |= 0x04 | (will.qos << 3) | if will.retain { 0x20 } else { 0 };
        }
        if self.login.is_some() {
            flags |= 0xc0;
        }
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        if v5 {
            self.props.encode(&mut body);
        }
        string(self.client_id.as_bytes(), &mut body);
        if let Some(will) = &self.will {
            if v5 {
                will.props.encode(&mut body);
            }
            string(will.topic.as_bytes(), &mut body);
            string(&will.payload, &mut body);
        }
        if let Some((user, pass)) = &self.login {
            string(user.as_bytes(), &mut body);
            string(pass.as_bytes(), &mut body);
        }
        frame(0x10, &body)
    }
}

/// An application message, as published or as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Topic name (empty when only a topic alias was sent).
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// QoS 0, 1 or 2.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// DUP flag.
    pub dup: bool,
    /// Packet identifier (QoS > 0).
    pub id: u16,
    /// Properties (MQTT 5).
    pub props: Props,
}

impl Message {
    /// A message of `qos` on `topic`.
    pub fn new(topic: &str, payload: &[u8], qos: u8) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.to_vec(),
            qos,
            ..Message::default()
        }
    }

    /// The PUBLISH bytes for protocol `version`.
    pub fn encode(&self, version: u8) -> Vec<u8> {
        let mut body = Vec::new();
        string(self.topic.as_bytes(), &mut body);
        if self.qos > 0 {
            body.extend_from_slice(&self.id.to_be_bytes());
        }
        if version == 5 {
            self.props.encode(&mut body);
        }
        body.extend_from_slice(&self.payload);
        let first = 0x30 | (self.qos << 1) | u8::from(self.retain) | (u8::from(self.dup) << 3);
        frame(first, &body)
    }

    /// Decodes a received PUBLISH (first header byte and body).
    pub fn decode(first: u8, body: &[u8], version: u8) -> Message {
        let mut reader = Reader(body);
        let qos = (first >> 1) & 3;
        let topic = reader.string();
        let id = if qos > 0 { reader.u16() } else { 0 };
        let props = if version == 5 {
            Props::decode(&mut reader)
        } else {
            Props::new()
        };
        Message {
            topic,
            payload: reader.rest().to_vec(),
            qos,
            retain: first & 1 == 1,
            dup: first & 0x08 != 0,
            id,
            props,
        }
    }
}

/// MQTT 5 subscription options byte: QoS, no-local, retain-as-published, retain handling.
pub fn sub_options(qos: u8, no_local: bool, rap: bool, retain_handling: u8) -> u8 {
    qos | (u8::from(no_local) << 2) | (u8::from(rap) << 3) | (retain_handling << 4)
}
