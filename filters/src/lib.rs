//! clawguard's engine, free of I/O: it is handed bytes and returns bytes and verdicts.
//!
//! - [`ws`]: an incremental RFC 6455 frame parser, message assembler and encoder.
//! - [`gateway`]: the OpenClaw gateway's frame model (`req` / `res` / `event`) and
//!   synthetic frames in the gateway's own shapes.
//! - [`rules`]: the policy compiled into per-frame decisions.
//! - [`scope_model`]: operator scopes, scope sets, requirements and roles; [`scopes`]: the
//!   gateway's authorization rules over them, with the generated [`method_table`].
//! - [`context`]: the policy compiled for decisions ([`context::Guard`]) and the state every
//!   decision shares ([`context::Env`]).
//! - [`access`]: the handshake state machine, identities and the judgement of every message,
//!   from either surface.
//! - [`engine`]: one WebSocket connection's state machine, driving all of the above.
//! - [`attribution`]: which forwarding headers the gateway must see for a peer.
//! - [`nodes`]: node command-set pins (the store, with its integrity check); [`node_guard`]:
//!   the pins applied to connects, invocations and pairing answers.
//! - [`sessions`]: session-key patterns, canonical keys and the session ledger;
//!   [`session_guard`]: session ownership on one connection.
//! - [`exec`]: the exec policy: commands parsed as shell, wrappers peeled, segments judged.
//! - [`limits`]: keyed GCRA rate limits (governor) with retry hints, and the auth lockout.
//! - [`js`]: how the gateway's JavaScript reads input (JSON.parse, trim, `??` aliases);
//!   what cannot be read that way is refused.
//! - [`grants`]: methods that grant, mint, approve or rotate, judged by what they grant;
//!   [`chat_commands`]: slash commands in chat messages, held to their methods' scopes.
//! - [`http`]: the HTTP surface: canonical paths, the gateway's route table, origins, URL
//!   ingestion, response headers, and each request judged by the WebSocket's checks.
//! - [`peer`]: what is known of a client before its first frame (address, TLS, certificate).
//!
//! Nothing here knows about sockets, pingora or tokio, so every piece is unit-tested
//! and fuzzable on its own.
#![forbid(unsafe_code)]

pub mod access;
pub mod attribution;
pub mod chat_commands;
pub mod config_guard;
pub mod context;
pub mod conn_limits;
pub mod decide;
pub mod engine;
pub mod exec;
pub mod exec_guard;
pub mod gateway;
pub mod grants;
pub mod http;
pub mod identity;
pub mod js;
pub mod limits;
pub mod method_table;
pub mod node_guard;
pub mod nodes;
pub mod peer;
pub mod replay;
pub mod rules;
pub mod scope_model;
pub mod scopes;
pub mod session_guard;
pub mod sessions;
pub mod ws;
