//! Packet boundaries in a relayed byte stream, from fixed headers alone.
//!
//! Bodies are never parsed: the front door only needs boundaries to enforce the size limit and
//! to avoid interleaving its own packets with relayed ones.

use crate::packet::PacketError;

/// Result of decoding a fixed header from the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixedHeader {
    /// More bytes are needed to know the packet length.
    Incomplete,
    /// Header decoded: bytes used by the fixed header and the remaining length.
    Complete {
        /// Fixed header length (type byte + 1..=4 length bytes).
        header_len: usize,
        /// The remaining length (variable header + payload).
        remaining: usize,
    },
}

/// Decodes the fixed header at the start of `buf`.
pub fn fixed_header(buf: &[u8]) -> Result<FixedHeader, PacketError> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(FixedHeader::Incomplete);
        };
        remaining |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(FixedHeader::Complete {
                header_len: 2 + i,
                remaining,
            });
        }
    }
    Err(PacketError::MalformedLength)
}

/// Tracks packet boundaries in one direction of a relayed byte stream without copying it.
#[derive(Debug)]
pub struct Framer {
    header: [u8; 5],
    header_len: usize,
    body_left: usize,
    limit: usize,
    /// Refuse packet types a client never sends (the client → broker direction).
    from_client: bool,
}

impl Framer {
    /// A framer that rejects packets whose total size exceeds `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Framer {
            header: [0; 5],
            header_len: 0,
            body_left: 0,
            limit,
            from_client: false,
        }
    }

    /// A framer for the client → broker direction: also refuses packet types a client never
    /// sends after CONNECT (reserved 0, CONNECT again, CONNACK, SUBACK, UNSUBACK, PINGRESP,
    /// AUTH). rumqttd 0.20's v5 decoder reaches `unreachable!()` on a CONNACK or AUTH with a
    /// body, panicking the connection's task, so these never get past the front door.
    pub fn from_client(limit: usize) -> Self {
        Framer {
            from_client: true,
            ..Framer::new(limit)
        }
    }

    /// True when the bytes fed so far end exactly on a packet boundary.
    pub fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.body_left == 0
    }

    /// Bytes still needed to finish the current packet's body (0 at a boundary or mid-header).
    pub fn body_left(&self) -> usize {
        self.body_left
    }

    /// Feeds a chunk; on a limit or framing violation returns the error and the offset in
    /// `chunk` where the offending packet started (bytes before it are whole packets).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), (usize, PacketError)> {
        let mut i = 0;
        while i < chunk.len() {
            if self.body_left > 0 {
                let take = self.body_left.min(chunk.len() - i);
                self.body_left -= take;
                i += take;
                continue;
            }
            let start = i.saturating_sub(self.header_len);
            self.header[self.header_len] = chunk[i];
            self.header_len += 1;
            i += 1;
            match fixed_header(&self.header[..self.header_len]) {
                Ok(FixedHeader::Incomplete) => {}
                Ok(FixedHeader::Complete {
                    header_len,
                    remaining,
                }) => {
                    let size = header_len + remaining;
                    if self.from_client && !client_may_send(self.header[0]) {
                        return Err((start, PacketError::NotFromClient(self.header[0])));
                    }
                    if size > self.limit {
                        return Err((
                            start,
                            PacketError::TooLarge {
                                size,
                                limit: self.limit,
                            },
                        ));
                    }
                    self.header_len = 0;
                    self.body_left = remaining;
                }
                Err(err) => return Err((start, err)),
            }
        }
        Ok(())
    }
}

/// Whether a client may send this packet type after CONNECT (MQTT 3.1.1 and 5, minus AUTH,
/// which rumqttd does not implement).
pub(crate) fn client_may_send(first_byte: u8) -> bool {
    matches!(first_byte >> 4, 3..=8 | 10 | 12 | 14)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_reports_oversized_packet_start_across_chunks() {
        let mut framer = Framer::new(100);
        // A 10-byte packet, then the first byte of a header announcing 200 bytes.
        let mut chunk = vec![0x30, 8];
        chunk.extend_from_slice(&[0; 8]);
        chunk.push(0x30);
        assert_eq!(framer.feed(&chunk), Ok(()));
        let err = framer.feed(&[0xc8, 0x01]).expect_err("oversized");
        assert_eq!(err.0, 0);
        assert!(matches!(err.1, PacketError::TooLarge { size: 203, .. }));
    }

    #[test]
    fn client_framer_refuses_packet_types_only_a_server_sends() {
        for first in [0x00, 0x10, 0x20, 0x90, 0xb0, 0xd0, 0xf0] {
            let err = Framer::from_client(100).feed(&[first, 1, 0]);
            assert_eq!(err, Err((0, PacketError::NotFromClient(first))));
        }
        let mut framer = Framer::from_client(100);
        // PUBLISH, SUBSCRIBE, PINGREQ, DISCONNECT pass.
        assert_eq!(
            framer.feed(&[0x30, 1, 0, 0x82, 1, 0, 0xc0, 0, 0xe0, 0]),
            Ok(())
        );
    }

    #[test]
    fn framer_tracks_boundaries() {
        let mut framer = Framer::new(usize::MAX);
        assert!(framer.at_boundary());
        framer.feed(&[0x40, 0x02, 0x00]).expect("frames");
        assert!(!framer.at_boundary());
        framer.feed(&[0x01]).expect("frames");
        assert!(framer.at_boundary());
    }
}
