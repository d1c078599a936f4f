//! clawguard's policy model.
//!
//! A policy is one TOML document. This crate parses it into typed sections
//! ([`Policy`]), validates what can be validated without touching the file
//! system, and reports every error with the file, line, column and key
//! ([`PolicyError`]). It does no I/O: the caller hands in the text.
//!
//! The document is a set of independent top-level sections. Each later feature
//! adds its own section (`[[identity]]`, `[scopes]`, `[nodes]`, `[exec]`,
//! `[limits]`, `[http]`, `[audit]`) without reshaping the existing ones; every
//! section has defaults, so an empty file is a valid policy.
#![forbid(unsafe_code)]

mod error;
mod glob;
mod model;
mod source;

pub use error::{PolicyError, Location};
pub use glob::Glob;
pub use model::*;
pub use source::PolicySource;

use sha2::{Digest, Sha256};

/// The embedded default policy: byte-for-byte the repository's `policy.example.toml`.
pub const EMBEDDED_POLICY: &str = include_str!("../../policy.example.toml");

/// A parsed, validated policy together with where it came from and its version.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The typed policy.
    pub policy: Policy,
    /// Hex SHA-256 of the policy's bytes: the policy version.
    pub version: String,
    /// The document the policy was parsed from (used to locate later errors).
    pub source: PolicySource,
}

impl LoadedPolicy {
    /// Parses and validates `text`; `origin` names it in errors (a path, or `<embedded>`).
    pub fn parse(origin: &str, text: &str) -> Result<Self, PolicyError> {
        let source = PolicySource::new(origin, text);
        let policy: Policy = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
        policy.validate(&source)?;
        Ok(LoadedPolicy { policy, version: policy_version(text.as_bytes()), source })
    }

    /// The embedded default policy.
    pub fn embedded() -> Self {
        // The embedded policy is tested to parse (`embedded_policy_parses`), so this
        // cannot fail in a released binary.
        Self::parse("<embedded>", EMBEDDED_POLICY).expect("embedded policy is valid")
    }
}

/// The policy version: the lowercase hex SHA-256 of the policy's bytes.
pub fn policy_version(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests;
