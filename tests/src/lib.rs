//! Test support for clawguard's integration suites: a fast fake OpenClaw
//! gateway ([`fake_gateway`]), a handle on a real `clawguard` process on
//! ephemeral ports ([`harness`]) and WebSocket client helpers ([`client`]).
//!
//! The fake gateway speaks only the basics of the gateway protocol; it exists
//! for fast tests. The end-to-end suite (`tests/e2e/`) runs against the real one.
#![forbid(unsafe_code)]

pub mod client;
pub mod corpus;
pub mod fake_gateway;
pub mod harness;
