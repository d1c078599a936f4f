//! Layer 2, the gateway's protocol and the tables generated from its package.
//!
//! - [`gateway`]: the frame model (`req` / `res` / `event`) and synthetic frames in the
//!   gateway's own shapes.
//! - [`scope_model`]: operator scopes, scope sets, requirements and roles; [`scopes`]: the
//!   gateway's authorization rules over them, with the generated [`method_table`].
//! - [`sessions`]: session-key patterns, canonical keys, the per-method session fields read
//!   from the handlers, and the session ledger.
//! - [`usage`]: the usage report the spend poll asks for, and how its answer is read.
//! - [`peer`]: what is known of a client before its first frame (address, TLS, certificate).

pub mod gateway;
pub mod method_table;
pub mod peer;
pub mod routes;
pub mod scope_model;
pub mod scopes;
pub mod sessions;
pub mod usage;
