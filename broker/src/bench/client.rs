//! A minimal MQTT 3.1.1 client on a bare socket for the memory bench: it keeps nothing in
//! memory, so the growth the bench measures is the broker's.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::BrokerError;

/// Bound on one handshake step (CONNACK, SUBACK).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads and drops everything until stopped or closed.
pub(super) async fn discard(mut stream: TcpStream, stop: CancellationToken) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

/// Opens an MQTT 3.1.1 clean session and waits for a successful CONNACK.
pub(super) async fn connect(addr: SocketAddr, client_id: &str) -> Result<TcpStream, BrokerError> {
    let fail = |what: String| BrokerError::Bench(format!("{client_id}: {what}"));
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| fail(format!("connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    push_string(&mut body, client_id.as_bytes());
    stream
        .write_all(&frame(0x10, &body))
        .await
        .map_err(|e| fail(format!("CONNECT: {e}")))?;
    let mut ack = [0u8; 4];
    tokio::time::timeout(STEP_TIMEOUT, stream.read_exact(&mut ack))
        .await
        .map_err(|_| fail("no CONNACK".into()))?
        .map_err(|e| fail(format!("CONNACK: {e}")))?;
    if ack != [0x20, 0x02, 0x00, 0x00] {
        return Err(fail(format!("refused: {ack:02x?}")));
    }
    Ok(stream)
}

/// Subscribes to `filter` at QoS 0 and waits for the SUBACK.
pub(super) async fn subscribe(stream: &mut TcpStream, filter: &str) -> Result<(), BrokerError> {
    let fail = |what: String| BrokerError::Bench(format!("subscribe {filter}: {what}"));
    let mut body = vec![0, 1];
    push_string(&mut body, filter.as_bytes());
    body.push(0);
    stream
        .write_all(&frame(0x82, &body))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut ack = [0u8; 5];
    tokio::time::timeout(STEP_TIMEOUT, stream.read_exact(&mut ack))
        .await
        .map_err(|_| fail("no SUBACK".into()))?
        .map_err(|e| fail(e.to_string()))?;
    if ack != [0x90, 0x03, 0x00, 0x01, 0x00] {
        return Err(fail(format!("refused: {ack:02x?}")));
    }
    Ok(())
}

/// A QoS 0 PUBLISH.
pub(super) fn publish_packet(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(2 + topic.len() + payload.len());
    push_string(&mut body, topic.as_bytes());
    body.extend_from_slice(payload);
    frame(0x30, &body)
}

/// A packet: first byte, remaining length, body.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(body.len() + 5);
    packet.push(first);
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        packet.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(body);
    packet
}

/// Appends an MQTT length-prefixed string (callers keep it under 64 KiB).
fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_encodes_multi_byte_remaining_lengths() {
        let packet = frame(0x30, &[0; 321]);
        assert_eq!(&packet[..3], &[0x30, 0xc1, 0x02]);
        assert_eq!(packet.len(), 3 + 321);
    }
}
