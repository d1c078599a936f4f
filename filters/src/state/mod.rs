//! Layer 3, shared state: what outlives one request and is shared by every connection.
//!
//! - [`audit`]: the audit log: records, redaction, encryption, the hash chain, signed
//!   checkpoints and verification (the writer's file I/O is the proxy's).
//! - [`replay`]: the replay memory of signed connects.
//! - [`nodes`]: node command-set pins (the store, with its integrity check).
//! - [`limits`]: keyed GCRA rate limits (governor) with retry hints, and the auth lockout.
//! - [`conn_limits`]: connection counts per peer and identity.
//! - [`drift`]: requests for methods the method table does not have, per minute.
//! - [`spend`]: spend budgets per UTC hour and day, globally and per identity.
//! - [`shared`]: the questions asked of a store shared by replicas (Redis), and what a
//!   failed answer means per kind.

pub mod audit;
pub mod conn_limits;
pub mod drift;
pub mod limits;
pub mod nodes;
pub mod replay;
pub mod shared;
pub mod spend;
