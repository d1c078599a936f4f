//! `clawguard doctor`: a read-only audit of a whole deployment, the gateway behind clawguard
//! included. Sans-IO: the binary gathers [`Facts`] (listening sockets, the gateway's config,
//! clawguard's policy, file modes, `openclaw security audit --json`) and [`audit`] turns them
//! into findings with fixes, a score and a grade, as a table, JSON or SARIF 2.1.0.
#![forbid(unsafe_code)]

pub mod checks;
pub mod facts;
pub mod finding;
pub mod report;

pub use facts::{Facts, FileFacts, FileRole, Gathered, Listener, Probe};
pub use finding::{Finding, Severity, Source};
pub use report::{audit, Report, SCHEMA};
