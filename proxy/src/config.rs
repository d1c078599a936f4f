//! Loading a policy for the binary: read the file, parse it, and validate the
//! files it names (TLS), so that nothing reaches pingora that would make it panic.

use crate::tls::{self, TlsMaterial};
use clawguard_policies::{LoadedPolicy, PolicyError};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A policy ready to run.
pub struct Config {
    /// The parsed policy.
    pub policy: LoadedPolicy,
    /// The file it came from (`None`: embedded default).
    pub path: Option<PathBuf>,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Validated TLS material, when TLS listeners are configured.
    pub tls: Option<TlsMaterial>,
}

/// Loads `path`, or the embedded default policy.
pub fn load(path: Option<&Path>) -> Result<Config, PolicyError> {
    let policy = match path {
        None => LoadedPolicy::embedded(),
        Some(p) => {
            let origin = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|source| PolicyError::Read { origin: origin.clone(), source })?;
            LoadedPolicy::parse(&origin, &text)?
        }
    };
    let base = path.and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    // Every exec rule's match / not_match examples must hold, or the policy is invalid.
    if let Err(e) = clawguard_filters::exec::ExecPolicy::new(&policy.policy) {
        return Err(policy.source.error_at(Some(e.span.clone()), e.to_string()));
    }
    let tls = tls::load(&policy, &base)?;
    Ok(Config { policy, path: path.map(Path::to_path_buf), loaded_at: SystemTime::now(), tls })
}
