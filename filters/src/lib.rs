//! clawguard's engine, free of I/O: it is handed bytes and returns bytes and verdicts.
//!
//! The folders are the layers of the data path (docs/architecture.md), from the bottom:
//!
//! 1. [`codec`]: WebSocket frames, and input read as the gateway's JavaScript reads it.
//! 2. [`protocol`]: the gateway's frames, scopes, method table, session fields, the peer.
//! 3. [`state`]: what connections share (replay memory, node pins, rate limits, connection
//!    counts, the audit log's chain, records, keys and verification).
//! 4. [`checks`]: one module per concern (identity and ceiling, rules, grants, chat commands,
//!    config guard, exec, node pins, session ownership, attribution), over the compiled
//!    policy in [`checks::context`].
//! 5. [`surfaces`]: the WebSocket engine and the HTTP surface, which turn what arrives into
//!    one request model and run it through [`surfaces::access`]'s ordered checks.
//!
//! Inside the crate every path names its layer (`crate::checks::exec`); the re-exports below
//! are the public names other crates use. Nothing here knows about sockets, pingora or tokio,
//! so every piece is unit-tested and fuzzable on its own.
#![forbid(unsafe_code)]

pub mod checks;
pub mod codec;
pub mod protocol;
pub mod state;
pub mod surfaces;

pub use checks::{attribution, chat_commands, config_guard, context, exec, exec_guard, grants, identity, node_guard, rules, session_guard};
pub use codec::{js, ws};
pub use protocol::{gateway, method_table, peer, scope_model, scopes, sessions};
pub use state::{audit, conn_limits, drift, limits, nodes, replay};
pub use surfaces::{access, decide, engine, http};
