//! Incremental frame parser: feed it bytes in any chunking, take whole frames out.

use super::{Frame, OpCode, WsError};
use bytes::{Buf, BytesMut};

/// An empty buffer with more capacity than this is released.
const IDLE_BUFFER: usize = 4096;

/// Which peer sends the bytes a parser reads; decides the masking rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// The WebSocket client: every frame must be masked.
    Client,
    /// The server (the gateway): no frame may be masked.
    Server,
}

/// Parses a byte stream into frames. Checks masking, RSV bits, opcodes, minimal
/// length encoding, control-frame rules and a payload cap, and rejects an
/// oversized frame as soon as its header is read (nothing over the cap is buffered).
#[derive(Debug)]
pub struct FrameParser {
    sender: Sender,
    max_payload: u64,
    buf: BytesMut,
}

impl FrameParser {
    /// A parser for frames from `sender`, refusing payloads over `max_payload` bytes.
    pub fn new(sender: Sender, max_payload: usize) -> Self {
        FrameParser { sender, max_payload: max_payload as u64, buf: BytesMut::new() }
    }

    /// Changes the payload cap (the gateway's cap rises after `hello-ok`).
    pub fn set_max_payload(&mut self, max_payload: usize) {
        self.max_payload = max_payload as u64;
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet part of a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the parser's buffer holds (its capacity).
    pub fn held(&self) -> usize {
        self.buf.capacity()
    }

    /// The next whole frame; `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WsError> {
        if self.buf.is_empty() && self.buf.capacity() > IDLE_BUFFER {
            // Everything read was parsed: give the read buffer back rather than hold it
            // while the connection idles (frames split from it keep what they need).
            self.buf = BytesMut::new();
        }
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        if b[0] & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        let opcode = OpCode::from_u8(b[0] & 0x0F)?;
        let masked = b[1] & 0x80 != 0;
        match (self.sender, masked) {
            (Sender::Client, false) => return Err(WsError::UnmaskedClientFrame),
            (Sender::Server, true) => return Err(WsError::MaskedServerFrame),
            _ => {}
        }
        let (len, mut header) = match b[1] & 0x7F {
            126 => {
                if b.len() < 4 {
                    return Ok(None);
                }
                let len = u16::from_be_bytes([b[2], b[3]]) as u64;
                if len < 126 {
                    return Err(WsError::NonMinimalLength);
                }
                (len, 4)
            }
            127 => {
                if b.len() < 10 {
                    return Ok(None);
                }
                let len = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(WsError::LengthMsbSet);
                }
                if len <= u16::MAX as u64 {
                    return Err(WsError::NonMinimalLength);
                }
                (len, 10)
            }
            short => (short as u64, 2),
        };
        if opcode.is_control() {
            if len > 125 {
                return Err(WsError::ControlTooLong(len));
            }
            if !fin {
                return Err(WsError::FragmentedControl);
            }
        }
        if len > self.max_payload {
            return Err(WsError::TooBig { size: len, limit: self.max_payload });
        }
        let mask = if masked {
            if b.len() < header + 4 {
                return Ok(None);
            }
            let key = [b[header], b[header + 1], b[header + 2], b[header + 3]];
            header += 4;
            Some(key)
        } else {
            None
        };
        let total = header + len as usize;
        if b.len() < total {
            // Reserve once for the whole frame so a large frame is not regrown chunk by chunk.
            self.buf.reserve(total - b.len());
            return Ok(None);
        }
        let raw = self.buf.split_to(total).freeze();
        let payload = match mask {
            Some(key) => {
                let mut p = BytesMut::from(&raw[header..]);
                unmask(&mut p, key);
                p.freeze()
            }
            None => {
                let mut r = raw.clone();
                r.advance(header);
                r
            }
        };
        Ok(Some(Frame { fin, opcode, mask, payload, raw }))
    }
}

/// XORs `data` with the repeating 4-byte `key`.
pub(super) fn unmask(data: &mut [u8], key: [u8; 4]) {
    let word = u32::from_ne_bytes(key);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i];
    }
}
