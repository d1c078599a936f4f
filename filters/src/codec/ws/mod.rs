//! RFC 6455 WebSocket framing: parse incrementally, assemble messages, encode.

mod assembler;
mod frame;
mod parser;

pub use assembler::{Assembler, Item, Message, Wire};
pub use frame::{close_payload, encode_frame, parse_close_payload, Frame, OpCode};
pub use parser::{FrameParser, Sender};

/// A WebSocket protocol violation, with the close code it calls for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// RSV1-3 set although no extension was negotiated.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// Opcodes 3-7 and 11-15 are reserved.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// Client frames must be masked.
    #[error("client frame is not masked")]
    UnmaskedClientFrame,
    /// Server frames must not be masked.
    #[error("server frame is masked")]
    MaskedServerFrame,
    /// A length that fits a shorter encoding.
    #[error("payload length is not minimally encoded")]
    NonMinimalLength,
    /// The most significant bit of a 64-bit length is set.
    #[error("64-bit payload length has its most significant bit set")]
    LengthMsbSet,
    /// Control frames carry at most 125 bytes.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(u64),
    /// Control frames may not be fragmented.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A continuation frame with no message in progress.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new data frame while a fragmented message is in progress.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// A frame or message over the configured cap.
    #[error("message of at least {size} bytes exceeds the limit of {limit} bytes")]
    TooBig {
        /// The size seen so far.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// A fragmented message with more fragments than the cap.
    #[error("message has more than {limit} fragments")]
    TooManyFragments {
        /// The cap.
        limit: u32,
    },
    /// A text message that is not UTF-8.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A close frame whose payload is malformed.
    #[error("malformed close frame: {0}")]
    InvalidClose(&'static str),
}

impl WsError {
    /// The close code to send for this violation.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TooBig { .. } => 1009,
            WsError::TooManyFragments { .. } => 1008,
            WsError::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }
}

#[cfg(test)]
mod tests;
