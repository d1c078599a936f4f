//! Layer 4, the checks: each judges one concern of a request, reading the compiled policy and
//! the shared state; `surfaces::access` runs them in order.
//!
//! - [`context`]: the policy compiled for decisions ([`context::Guard`]) and the state every
//!   decision shares ([`context::Env`]).
//! - [`identity`]: identities, their matching and ceilings; [`rules`]: the policy's per-frame
//!   rules; [`grants`]: methods that grant, mint, approve or rotate, judged by what they grant;
//!   [`chat_commands`]: slash commands in chat messages, held to their methods' scopes.
//! - [`config_guard`]: protected config paths.
//! - [`exec`]: the exec policy (commands parsed as shell, wrappers peeled, segments judged);
//!   [`exec_guard`]: it applied to every entry point, and approvals bound to what was approved.
//! - [`node_guard`]: node command-set pins applied to connects, invocations and pairing.
//! - [`session_guard`]: session ownership on one connection; [`spend_abort`]: its runs in
//!   flight, stopped when a spend budget trips (`spend.abort_running`).
//! - [`attribution`]: which forwarding headers the gateway must see for a peer.

pub mod attribution;
pub mod chat_commands;
pub mod config_guard;
pub mod context;
pub mod exec;
pub mod exec_guard;
pub mod grants;
pub mod headers;
pub mod http_policy;
pub mod identity;
pub mod ingest;
pub mod node_guard;
pub mod origin;
pub mod rules;
pub mod session_guard;
pub mod spend_abort;
