//! Layer 1, the codec: bytes to values, as the gateway reads them.
//!
//! - [`ws`]: an incremental RFC 6455 frame parser, message assembler and encoder.
//! - [`js`]: how the gateway's JavaScript reads input (`JSON.parse`, `trim`, `??` aliases);
//!   what cannot be read that way is refused.

pub mod js;
pub mod url_path;
pub mod ws;
