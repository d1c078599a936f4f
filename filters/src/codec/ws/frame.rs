//! A parsed frame, opcodes, and the encoder.

use super::WsError;
use bytes::{BufMut, Bytes, BytesMut};

/// Frame opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0
    Continuation,
    /// 0x1
    Text,
    /// 0x2
    Binary,
    /// 0x8
    Close,
    /// 0x9
    Ping,
    /// 0xA
    Pong,
}

impl OpCode {
    /// Decodes the low nibble of the first header byte.
    pub fn from_u8(op: u8) -> Result<Self, WsError> {
        Ok(match op {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(WsError::ReservedOpcode(other)),
        })
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// One frame as it crossed the wire.
#[derive(Debug, Clone)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, for client frames.
    pub mask: Option<[u8; 4]>,
    /// The payload, unmasked.
    pub payload: Bytes,
    /// The exact bytes of the frame on the wire (header and masked payload), for
    /// forwarding unchanged.
    pub raw: Bytes,
}

/// The header of one frame of `len` payload bytes (with the masking key when `mask` is set).
pub fn encode_header(fin: bool, opcode: OpCode, len: usize, mask: Option<[u8; 4]>) -> BytesMut {
    let mut out = BytesMut::with_capacity(14);
    out.put_u8(if fin { 0x80 } else { 0 } | opcode.as_u8());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.put_u8(mask_bit | len as u8);
    } else if len <= u16::MAX as usize {
        out.put_u8(mask_bit | 126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(mask_bit | 127);
        out.put_u64(len as u64);
    }
    if let Some(key) = mask {
        out.put_slice(&key);
    }
    out
}

/// Encodes one frame. With `mask`, the payload is masked with it (client → server).
pub fn encode_frame(fin: bool, opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) -> Bytes {
    let mut out = encode_header(fin, opcode, payload.len(), mask);
    out.reserve(payload.len());
    match mask {
        Some(key) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3])),
        None => out.put_slice(payload),
    }
    out.freeze()
}

/// The payload of a close frame: the code, then the reason cut to fit 125 bytes
/// on a character boundary.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

/// Validates a close payload; returns the code and reason (`None` for an empty payload, 1005).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, WsError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(WsError::InvalidClose("one-byte payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(WsError::InvalidClose("close code is reserved or out of range"));
            }
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| WsError::InvalidClose("reason is not UTF-8"))?;
            Ok(Some((code, reason)))
        }
    }
}
