//! Reassembles fragmented messages; control frames pass through at once.

use super::{Frame, OpCode, WsError};
use bytes::{Bytes, BytesMut};

/// What the assembler produces.
#[derive(Debug)]
pub enum Item {
    /// A control frame (close, ping, pong), possibly from inside a fragmented message.
    Control(Frame),
    /// A whole data message.
    Message(Message),
}

/// A whole text or binary message.
#[derive(Debug)]
pub struct Message {
    /// `Text` or `Binary`.
    pub opcode: OpCode,
    /// The unmasked, reassembled payload (UTF-8 checked for text).
    pub payload: Bytes,
    /// The message's frames exactly as received, for forwarding unchanged.
    pub frames: Vec<Bytes>,
}

/// Reassembles one direction's messages, enforcing a message size cap.
#[derive(Debug)]
pub struct Assembler {
    max_message: u64,
    partial: Option<Partial>,
}

#[derive(Debug)]
struct Partial {
    opcode: OpCode,
    payload: BytesMut,
    frames: Vec<Bytes>,
}

impl Assembler {
    /// An assembler refusing messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Assembler { max_message: max_message as u64, partial: None }
    }

    /// Changes the message cap.
    pub fn set_max_message(&mut self, max_message: usize) {
        self.max_message = max_message as u64;
    }

    /// Whether a fragmented message is in progress.
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Takes one frame; returns an item when one is complete.
    pub fn push(&mut self, frame: Frame) -> Result<Option<Item>, WsError> {
        if frame.opcode.is_control() {
            return Ok(Some(Item::Control(frame)));
        }
        match (frame.opcode, self.partial.as_mut()) {
            (OpCode::Continuation, None) => Err(WsError::UnexpectedContinuation),
            (OpCode::Continuation, Some(p)) => {
                let size = (p.payload.len() + frame.payload.len()) as u64;
                if size > self.max_message {
                    return Err(WsError::TooBig { size, limit: self.max_message });
                }
                p.payload.extend_from_slice(&frame.payload);
                p.frames.push(frame.raw);
                if !frame.fin {
                    return Ok(None);
                }
                let p = self.partial.take().expect("partial message present");
                finish(p.opcode, p.payload.freeze(), p.frames).map(Some)
            }
            (_, Some(_)) => Err(WsError::ExpectedContinuation),
            (opcode, None) => {
                if frame.payload.len() as u64 > self.max_message {
                    return Err(WsError::TooBig { size: frame.payload.len() as u64, limit: self.max_message });
                }
                if frame.fin {
                    return finish(opcode, frame.payload, vec![frame.raw]).map(Some);
                }
                self.partial = Some(Partial { opcode, payload: BytesMut::from(&frame.payload[..]), frames: vec![frame.raw] });
                Ok(None)
            }
        }
    }
}

fn finish(opcode: OpCode, payload: Bytes, frames: Vec<Bytes>) -> Result<Item, WsError> {
    if opcode == OpCode::Text && std::str::from_utf8(&payload).is_err() {
        return Err(WsError::InvalidUtf8);
    }
    Ok(Item::Message(Message { opcode, payload, frames }))
}
