//! The audit log without its file (issue 14; the format is specified in docs/audit.md).
//!
//! - [`record`]: an event in the vocabulary of the gateway's `security.event`.
//! - [`redact`]: secret shapes and secret fields replaced by their keyed hash.
//! - [`encrypt`]: AES-256-GCM of chosen fields.
//! - [`chain`]: the canonical form and the hash chain.
//! - [`line`]: an event written straight to its redacted, encrypted, chained line.
//! - [`keys`]: the Ed25519 key, its id, the derived HMAC key, the bytes a checkpoint signs.
//! - [`recorder`]: events in, lines out (genesis, checkpoints, seal, crash markers, rotation).
//! - [`verify`]: files in, a classified report out.

pub mod chain;
pub mod encrypt;
pub mod keys;
pub mod line;
pub mod record;
pub mod recorder;
pub mod redact;
pub mod verify;
