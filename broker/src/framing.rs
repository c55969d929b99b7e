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
}

impl Framer {
    /// A framer that rejects packets whose total size exceeds `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Framer {
            header: [0; 5],
            header_len: 0,
            body_left: 0,
            limit,
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
    fn framer_tracks_boundaries() {
        let mut framer = Framer::new(usize::MAX);
        assert!(framer.at_boundary());
        framer.feed(&[0x40, 0x02, 0x00]).expect("frames");
        assert!(!framer.at_boundary());
        framer.feed(&[0x01]).expect("frames");
        assert!(framer.at_boundary());
    }
}
