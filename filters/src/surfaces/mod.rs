//! Layer 5, the surfaces: each turns what arrives on it into the one request model, runs it
//! through the ordered checks, and turns the verdict back into bytes.
//!
//! - [`access`]: the handshake state machine and the ordered checks of every request, from
//!   either surface.
//! - [`engine`]: the WebSocket surface: one connection's state machine.
//! - [`http`]: the HTTP surface: canonical paths, the gateway's route table, origins, URL
//!   ingestion, response headers.
//! - [`decide`]: either surface replayed for `clawguard decide`.
//! - [`spend`]: a usage report (the spend poll's, or a client's answer read on the way)
//!   charged to the budgets; [`record`]: verdicts as audit records.

pub mod access;
pub mod decide;
pub mod engine;
pub mod http;
pub mod record;
pub mod spend;
