//! Reassembles fragmented messages; control frames pass through at once.
//!
//! What a message in progress holds is its payload, once, in one buffer: the fragments' own
//! frames are not kept (a message sent in 1-byte fragments would otherwise cost a frame and a
//! list entry per byte). An unfragmented message keeps its one frame, so it is forwarded byte
//! for byte; a fragmented one is forwarded as one frame encoded from the payload
//! ([`Message::into_frames`]).

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

/// How a message crossed the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// In one frame: its exact bytes (header and masked payload).
    Frame(Bytes),
    /// In this many fragments, which were not kept.
    Fragments(u32),
}

/// A whole text or binary message.
#[derive(Debug)]
pub struct Message {
    /// `Text` or `Binary`.
    pub opcode: OpCode,
    /// The unmasked, reassembled payload (UTF-8 checked for text).
    pub payload: Bytes,
    /// How it arrived.
    pub wire: Wire,
}

impl Message {
    /// The frames that forward the message: its own frame unchanged, or, for a fragmented
    /// message, one frame encoded from the payload (masked with `mask` toward a server). The
    /// payload is not copied unless it must be masked while something else still shares it.
    pub fn into_frames(self, mask: Option<[u8; 4]>) -> Vec<Bytes> {
        match self.wire {
            Wire::Frame(raw) => vec![raw],
            Wire::Fragments(_) => {
                let header = super::frame::encode_header(true, self.opcode, self.payload.len(), mask).freeze();
                let payload = match mask {
                    None => self.payload,
                    Some(key) => match self.payload.try_into_mut() {
                        Ok(mut own) => {
                            super::parser::unmask(&mut own, key);
                            own.freeze()
                        }
                        Err(shared) => {
                            let mut copy = BytesMut::from(&shared[..]);
                            super::parser::unmask(&mut copy, key);
                            copy.freeze()
                        }
                    },
                };
                vec![header, payload]
            }
        }
    }
}

/// Reassembles one direction's messages, enforcing a message size cap and a cap on the
/// fragments of one message.
#[derive(Debug)]
pub struct Assembler {
    max_message: u64,
    max_fragments: u32,
    partial: Option<Partial>,
}

#[derive(Debug)]
struct Partial {
    opcode: OpCode,
    payload: BytesMut,
    fragments: u32,
}

impl Assembler {
    /// An assembler refusing messages over `max_message` bytes or `max_fragments` fragments.
    pub fn new(max_message: usize, max_fragments: u32) -> Self {
        Assembler { max_message: max_message as u64, max_fragments: max_fragments.max(1), partial: None }
    }

    /// Changes the message cap.
    pub fn set_max_message(&mut self, max_message: usize) {
        self.max_message = max_message as u64;
    }

    /// Whether a fragmented message is in progress.
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// The bytes a message in progress holds (its buffer's capacity, not only its length).
    pub fn held(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.payload.capacity())
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
                    self.partial = None;
                    return Err(WsError::TooBig { size, limit: self.max_message });
                }
                p.fragments += 1;
                if p.fragments > self.max_fragments {
                    self.partial = None;
                    return Err(WsError::TooManyFragments { limit: self.max_fragments });
                }
                // Grow by doubling, but never past the cap: what is held stays within 2× the
                // payload and within the cap.
                // (`BytesMut::reserve` would double past the cap, so the buffer is grown here.)
                if p.payload.capacity() - p.payload.len() < frame.payload.len() {
                    let want = (p.payload.len() + frame.payload.len()).max(p.payload.capacity() * 2).min(self.max_message as usize);
                    let mut grown = BytesMut::with_capacity(want);
                    grown.extend_from_slice(&p.payload);
                    p.payload = grown;
                }
                p.payload.extend_from_slice(&frame.payload);
                if !frame.fin {
                    return Ok(None);
                }
                let p = self.partial.take().expect("partial message present");
                finish(p.opcode, p.payload.freeze(), Wire::Fragments(p.fragments)).map(Some)
            }
            (_, Some(_)) => Err(WsError::ExpectedContinuation),
            (opcode, None) => {
                if frame.payload.len() as u64 > self.max_message {
                    return Err(WsError::TooBig { size: frame.payload.len() as u64, limit: self.max_message });
                }
                if frame.fin {
                    return finish(opcode, frame.payload, Wire::Frame(frame.raw)).map(Some);
                }
                self.partial = Some(Partial { opcode, payload: BytesMut::from(&frame.payload[..]), fragments: 1 });
                Ok(None)
            }
        }
    }
}

fn finish(opcode: OpCode, payload: Bytes, wire: Wire) -> Result<Item, WsError> {
    if opcode == OpCode::Text && std::str::from_utf8(&payload).is_err() {
        return Err(WsError::InvalidUtf8);
    }
    Ok(Item::Message(Message { opcode, payload, wire }))
}
