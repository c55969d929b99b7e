//! A raw-socket MQTT client over [`super::wire`]: it sends exactly the packets a test builds and
//! reports exactly what the broker sent back, acknowledging (or not) as the test says.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::wire::{frame, string, Connect, Message, Props, Reader};
use super::WAIT;

/// A packet from the broker, decoded as far as the tests look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// An application message.
    Publish(Message),
    /// PUBACK, PUBREC, PUBREL or PUBCOMP: type nibble, packet id, reason code.
    Ack(u8, u16, u8),
    /// SUBACK: packet id and one code per filter.
    SubAck(u16, Vec<u8>),
    /// UNSUBACK: packet id and (MQTT 5) one code per filter.
    UnsubAck(u16, Vec<u8>),
    /// DISCONNECT (MQTT 5): reason code.
    Disconnect(u8),
    /// Anything else: first header byte and body.
    Other(u8, Vec<u8>),
}

/// The broker's CONNACK.
#[derive(Debug, Clone)]
pub struct ConnAck {
    /// Session present flag.
    pub session_present: bool,
    /// Return code (3.1.1) or reason code (5).
    pub code: u8,
    /// CONNACK properties (MQTT 5).
    pub props: Props,
}

/// A connected raw client.
pub struct Raw {
    stream: TcpStream,
    version: u8,
    next_id: u16,
    /// Publishes read while waiting for something else, in arrival order.
    queued: VecDeque<Message>,
    /// Bytes read, not yet a whole packet.
    input: Vec<u8>,
    /// Packets decoded, not yet returned.
    inbox: VecDeque<Packet>,
    /// Acknowledgements decided, not yet written.
    outbox: Vec<u8>,
    /// Answer QoS 1 and 2 publishes (PUBACK, PUBREC/PUBCOMP) as they are read.
    pub auto_ack: bool,
}

/// Takes one whole packet (first byte, body) off the front of `input`, if it holds one.
fn split_packet(input: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    let mut remaining = 0usize;
    let mut header = 1;
    loop {
        let byte = *input.get(header)?;
        remaining |= usize::from(byte & 0x7f) << (7 * (header - 1));
        header += 1;
        if byte & 0x80 == 0 || header == 5 {
            break;
        }
    }
    if input.len() < header + remaining {
        return None;
    }
    let first = input[0];
    let body = input[header..header + remaining].to_vec();
    input.drain(..header + remaining);
    Some((first, body))
}

impl Raw {
    /// Connects and returns the client with the broker's CONNACK (whatever its code).
    pub async fn connect(addr: SocketAddr, connect: &Connect) -> (Raw, ConnAck) {
        let stream = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("TCP connect timed out")
            .expect("TCP connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut raw = Raw {
            stream,
            version: connect.version,
            next_id: 0,
            queued: VecDeque::new(),
            input: Vec::new(),
            inbox: VecDeque::new(),
            outbox: Vec::new(),
            auto_ack: true,
        };
        raw.send(&connect.encode()).await;
        let packet = timeout(WAIT, raw.next_packet())
            .await
            .expect("CONNACK timed out")
            .unwrap_or_else(|| panic!("closed before CONNACK ({:?})", connect.client_id));
        let Packet::Other(0x20, body) = packet else {
            panic!("expected CONNACK, got {packet:?}");
        };
        let mut reader = Reader(&body);
        let session_present = reader.byte() & 1 == 1;
        let code = reader.byte();
        let props = if connect.version == 5 && !reader.0.is_empty() {
            Props::decode(&mut reader)
        } else {
            Props::new()
        };
        let ack = ConnAck {
            session_present,
            code,
            props,
        };
        (raw, ack)
    }

    /// Connects with `connect` and asserts the broker accepted it.
    pub async fn open(addr: SocketAddr, connect: &Connect) -> (Raw, ConnAck) {
        let (raw, ack) = Raw::connect(addr, connect).await;
        assert_eq!(ack.code, 0, "CONNACK refused {:?}", connect.client_id);
        (raw, ack)
    }

    /// A clean MQTT 3.1.1 session.
    pub async fn v4(addr: SocketAddr, id: &str) -> Raw {
        Raw::open(addr, &Connect::new(4, id)).await.0
    }

    /// A clean MQTT 5 session.
    pub async fn v5(addr: SocketAddr, id: &str) -> Raw {
        Raw::open(addr, &Connect::new(5, id)).await.0
    }

    /// The protocol version of this connection.
    pub fn version(&self) -> u8 {
        self.version
    }

    fn id(&mut self) -> u16 {
        self.next_id = self.next_id % u16::MAX + 1;
        self.next_id
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.outbox.extend_from_slice(bytes);
        self.flush().await.expect("write to broker");
    }

    /// Writes the outbox; cancel-safe (progress is kept in the outbox).
    async fn flush(&mut self) -> std::io::Result<()> {
        while !self.outbox.is_empty() {
            let n = self.stream.write(&self.outbox).await?;
            self.outbox.drain(..n);
        }
        Ok(())
    }

    /// The next packet, `None` once the broker closed the connection. Cancel-safe: every
    /// await is one read or write whose progress is kept in `self`, so a timeout or a
    /// `select!` never loses or splits a packet.
    async fn next_packet(&mut self) -> Option<Packet> {
        loop {
            if self.flush().await.is_err() {
                return None;
            }
            if let Some(packet) = self.inbox.pop_front() {
                return Some(packet);
            }
            if let Some((first, body)) = split_packet(&mut self.input) {
                let packet = self.decode(first, body);
                self.inbox.push_back(packet);
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next packet, bounded by `wait`; `None` if the broker closed the connection.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Packet> {
        self.try_recv(wait)
            .await
            .expect("no packet from the broker in time")
    }

    /// Publishes already read, then every publish arriving within `wait` of each other: for
    /// asserting an absence after a later marker has been seen elsewhere.
    pub async fn quiet(&mut self, wait: Duration) -> Vec<Message> {
        let mut seen: Vec<Message> = self.queued.drain(..).collect();
        while let Ok(packet) = self.try_recv(wait).await {
            match packet.expect("broker closed the connection") {
                Packet::Publish(message) => seen.push(message),
                Packet::Disconnect(code) => panic!("broker sent DISCONNECT {code:#04x}"),
                _ => {}
            }
        }
        seen
    }

    /// One packet within `wait` (`Err` on timeout, `Ok(None)` when closed).
    async fn try_recv(
        &mut self,
        wait: Duration,
    ) -> Result<Option<Packet>, tokio::time::error::Elapsed> {
        timeout(wait, self.next_packet()).await
    }

    /// Decodes a packet, queueing the acknowledgements `auto_ack` asks for.
    fn decode(&mut self, first: u8, body: Vec<u8>) -> Packet {
        let kind = first >> 4;
        let packet = match kind {
            3 => {
                let message = Message::decode(first, &body, self.version);
                if self.auto_ack && message.qos > 0 {
                    let ack = if message.qos == 1 { 0x40 } else { 0x50 };
                    self.outbox
                        .extend_from_slice(&frame(ack, &message.id.to_be_bytes()));
                }
                Packet::Publish(message)
            }
            4..=7 => {
                let mut reader = Reader(&body);
                let id = reader.u16();
                let code = if reader.0.is_empty() {
                    0
                } else {
                    reader.byte()
                };
                if kind == 6 && self.auto_ack {
                    self.outbox
                        .extend_from_slice(&frame(0x70, &id.to_be_bytes()));
                }
                Packet::Ack(kind, id, code)
            }
            9 | 11 => {
                let mut reader = Reader(&body);
                let id = reader.u16();
                if self.version == 5 {
                    Props::decode(&mut reader);
                }
                let codes = reader.rest().to_vec();
                if kind == 9 {
                    Packet::SubAck(id, codes)
                } else {
                    Packet::UnsubAck(id, codes)
                }
            }
            14 => Packet::Disconnect(body.first().copied().unwrap_or(0)),
            _ => Packet::Other(first, body),
        };
        packet
    }

    /// The next packet (bounded); the broker closing fails the test.
    pub async fn recv(&mut self) -> Packet {
        self.recv_within(WAIT)
            .await
            .expect("broker closed the connection")
    }

    /// Reads until `pick` returns something, queueing publishes read meanwhile.
    async fn until<T>(&mut self, pick: impl FnMut(&Packet) -> Option<T>) -> T {
        self.until_within(WAIT, pick)
            .await
            .expect("no packet from the broker in time")
    }

    /// [`Raw::until`], `None` when no packet arrives within `wait` of the previous one.
    async fn until_within<T>(
        &mut self,
        wait: Duration,
        mut pick: impl FnMut(&Packet) -> Option<T>,
    ) -> Option<T> {
        loop {
            let packet = self
                .try_recv(wait)
                .await
                .ok()?
                .expect("broker closed the connection");
            if let Some(found) = pick(&packet) {
                return Some(found);
            }
            match packet {
                Packet::Publish(message) => self.queued.push_back(message),
                Packet::Disconnect(code) => panic!("broker sent DISCONNECT {code:#04x}"),
                _ => {}
            }
        }
    }

    /// Subscribes `filter` with `options` (the QoS for 3.1.1, the options byte for 5) and
    /// `props`; returns the SUBACK codes.
    pub async fn subscribe_with(&mut self, filter: &str, options: u8, props: Props) -> Vec<u8> {
        let id = self.id();
        let mut body = id.to_be_bytes().to_vec();
        if self.version == 5 {
            props.encode(&mut body);
        }
        string(filter.as_bytes(), &mut body);
        body.push(options);
        self.send(&frame(0x82, &body)).await;
        self.until(|p| match p {
            Packet::SubAck(got, codes) if *got == id => Some(codes.clone()),
            _ => None,
        })
        .await
    }

    /// Subscribes at `qos` and asserts it was granted.
    pub async fn subscribe(&mut self, filter: &str, qos: u8) {
        let codes = self.subscribe_with(filter, qos, Props::new()).await;
        assert_eq!(codes, vec![qos], "SUBACK for {filter:?}");
    }

    /// Unsubscribes `filters`; returns the UNSUBACK's codes (empty for 3.1.1).
    pub async fn unsubscribe(&mut self, filters: &[&str]) -> Vec<u8> {
        let id = self.id();
        let mut body = id.to_be_bytes().to_vec();
        if self.version == 5 {
            Props::new().encode(&mut body);
        }
        for filter in filters {
            string(filter.as_bytes(), &mut body);
        }
        self.send(&frame(0xa2, &body)).await;
        self.until(|p| match p {
            Packet::UnsubAck(got, codes) if *got == id => Some(codes.clone()),
            _ => None,
        })
        .await
    }

    /// Publishes `message` (a packet id is assigned for QoS > 0) and completes its QoS flow:
    /// PUBACK for 1, PUBREC/PUBREL/PUBCOMP for 2. Returns the PUBACK/PUBREC reason code.
    pub async fn publish(&mut self, mut message: Message) -> u8 {
        if message.qos > 0 {
            message.id = self.id();
        }
        self.send(&message.encode(self.version)).await;
        self.complete(message.qos, message.id).await
    }

    /// Waits for the acknowledgements of an outgoing publish of `qos` with packet `id`.
    pub async fn complete(&mut self, qos: u8, id: u16) -> u8 {
        match qos {
            0 => 0,
            1 => self.ack(4, id).await,
            _ => {
                let code = self.ack(5, id).await;
                if code < 0x80 {
                    self.send(&frame(0x62, &id.to_be_bytes())).await;
                    self.ack(7, id).await;
                }
                code
            }
        }
    }

    /// Waits for the acknowledgement of `kind` (4 PUBACK, 5 PUBREC, 7 PUBCOMP) for `id`.
    pub async fn ack(&mut self, kind: u8, id: u16) -> u8 {
        self.until(|p| match p {
            Packet::Ack(k, got, code) if *k == kind && *got == id => Some(*code),
            _ => None,
        })
        .await
    }

    /// Publishes a QoS 0 message without properties.
    pub async fn publish0(&mut self, topic: &str, payload: &[u8]) {
        self.publish(Message::new(topic, payload, 0)).await;
    }

    /// Publishes a QoS 1 message and waits for its PUBACK.
    pub async fn publish1(&mut self, topic: &str, payload: &[u8]) {
        let code = self.publish(Message::new(topic, payload, 1)).await;
        assert!(code < 0x80, "PUBACK refused {topic:?}: {code:#04x}");
    }

    /// The next application message (bounded).
    pub async fn next(&mut self) -> Message {
        self.next_within(WAIT)
            .await
            .expect("no packet from the broker in time")
    }

    /// The next application message, `None` if none arrives within `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Message> {
        if let Some(message) = self.queued.pop_front() {
            return Some(message);
        }
        self.until_within(wait, |p| match p {
            Packet::Publish(message) => Some(message.clone()),
            _ => None,
        })
        .await
    }

    /// Every message received before the one with payload `marker` (which is consumed).
    pub async fn until_marker(&mut self, marker: &[u8]) -> Vec<Message> {
        let mut before: Vec<Message> = Vec::new();
        loop {
            let Some(message) = self.next_within(WAIT).await else {
                // Says what did arrive, so a rare miss on a loaded CI machine can be told
                // from a lost message.
                let seen: Vec<_> = before
                    .iter()
                    .map(|m| (&m.topic, String::from_utf8_lossy(&m.payload), m.retain))
                    .collect();
                panic!(
                    "marker {:?} not received within {WAIT:?}; before it: {seen:?}",
                    String::from_utf8_lossy(marker)
                );
            };
            if message.payload == marker {
                return before;
            }
            before.push(message);
        }
    }

    /// Every message before the one with payload `marker`, and any arriving within `linger`
    /// after it: for absences where the broker may send from another task (rmqtt's retainer
    /// sends retained messages after later live ones).
    pub async fn around_marker(&mut self, marker: &[u8], linger: Duration) -> Vec<Message> {
        let mut seen = self.until_marker(marker).await;
        seen.extend(self.quiet(linger).await);
        seen
    }

    /// Sends a PUBACK for `id`.
    pub async fn puback(&mut self, id: u16) {
        self.send(&frame(0x40, &id.to_be_bytes())).await;
    }

    /// Sends DISCONNECT (reason 0, or `reason` for MQTT 5) and waits for the close.
    pub async fn disconnect_with(mut self, reason: u8, props: Props) {
        let packet = if self.version == 5 {
            let mut body = vec![reason];
            props.encode(&mut body);
            frame(0xe0, &body)
        } else {
            vec![0xe0, 0]
        };
        self.send(&packet).await;
        // The broker only SHOULD close after a DISCONNECT; closing our side makes it close
        // its own, and reading to the end proves it processed what came before.
        let _ = self.stream.shutdown().await;
        let mut rest = Vec::new();
        let _ = timeout(WAIT, self.stream.read_to_end(&mut rest)).await;
    }

    /// Sends a normal DISCONNECT and waits for the close.
    pub async fn disconnect(self) {
        self.disconnect_with(0, Props::new()).await;
    }

    /// Drops the connection without DISCONNECT (a network failure, for wills).
    pub fn drop_connection(self) {
        drop(self.stream);
    }

    /// Reads until the broker closes the connection (bounded) and returns the DISCONNECT
    /// reason code it sent first, if any; publishes read meanwhile are returned too.
    pub async fn closed(mut self) -> (Option<u8>, Vec<Message>) {
        let mut reason = None;
        let mut seen = Vec::new();
        while let Some(packet) = self.recv_within(WAIT).await {
            match packet {
                Packet::Disconnect(code) => reason = Some(code),
                Packet::Publish(message) => seen.push(message),
                _ => {}
            }
        }
        (reason, seen)
    }
}
