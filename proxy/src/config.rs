//! Loading a policy for the binary: read the file, parse it, and validate the
//! files it names (TLS), so that nothing reaches pingora that would make it panic.

use crate::tls::{self, TlsMaterial};
use clawguard_policies::{LoadedPolicy, PolicyError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

/// Addresses given on `clawguard run`'s command line. They belong to the deployment (the
/// Kubernetes injector sets them from the pod's ports), the rest to the policy: they replace
/// the policy's `server.listen`, `upstream.address` and `admin.listen`, at start and on every
/// reload.
#[derive(Debug, Clone, Default)]
pub struct Addresses {
    /// `--listen`: the plaintext listener.
    pub listen: Option<SocketAddr>,
    /// `--upstream`: the gateway.
    pub upstream: Option<SocketAddr>,
    /// `--admin`: the admin listener.
    pub admin: Option<SocketAddr>,
}

static ADDRESSES: OnceLock<Addresses> = OnceLock::new();

/// Sets the command line's addresses for every later [`load`] (once, before the first).
pub fn set_addresses(addresses: Addresses) {
    let _ = ADDRESSES.set(addresses);
}

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
    /// What the policy's secret references resolved to, as a hash (see [`crate::secrets`]).
    pub secrets_version: String,
}

/// Loads `path`, or the embedded default policy.
pub fn load(path: Option<&Path>) -> Result<Config, PolicyError> {
    let mut policy = match path {
        None => LoadedPolicy::embedded(),
        Some(p) => {
            let origin = p.display().to_string();
            let bytes = std::fs::read(p).map_err(|source| PolicyError::Read { origin: origin.clone(), source })?;
            let text = String::from_utf8(bytes).map_err(|e| {
                // Located at the first byte that is not UTF-8.
                let at = e.utf8_error().valid_up_to();
                let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                let at = lossy.char_indices().nth(String::from_utf8_lossy(&e.as_bytes()[..at]).chars().count()).map_or(lossy.len(), |(i, _)| i);
                clawguard_policies::PolicySource::new(&origin, &lossy).error_at(Some(at..at + 1), "the policy is not UTF-8 text: expected a UTF-8 TOML file")
            })?;
            LoadedPolicy::parse(&origin, &text)?
        }
    };
    if let Some(a) = ADDRESSES.get() {
        let p = &mut policy.policy;
        if let Some(listen) = a.listen {
            p.server.listen = vec![listen];
        }
        if let Some(upstream) = a.upstream {
            p.upstream.address = upstream;
        }
        if let Some(admin) = a.admin {
            p.admin.listen = admin;
        }
        if let Err(e) = p.validate(&policy.source) {
            let message = format!("with the command line's addresses (--listen {:?}, --upstream {:?}, --admin {:?}): {e}", a.listen, a.upstream, a.admin);
            return Err(policy.source.error_at(None, message));
        }
    }
    // `run` installs this filter; `check` must refuse what `run` would.
    let level = &policy.policy.logging.level;
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
        return Err(policy.source.error_at_key(&["logging", "level"], format!("logging.level {level:?}: {e}: expected a level such as \"info\" or directives such as \"warn,clawguard=debug\"")));
    }
    let base = path.and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    // Every exec rule's match / not_match examples must hold, or the policy is invalid.
    if let Err(e) = clawguard_filters::exec::ExecPolicy::new(&policy.policy) {
        return Err(policy.source.error_at(Some(e.span.clone()), e.to_string()));
    }
    if let Err(e) = clawguard_filters::audit::redact::Redactor::new(&policy.policy.audit.redact_patterns) {
        return Err(policy.source.error_at_key(&["audit", "redact_patterns"], e.to_string()));
    }
    let tls = tls::load(&policy, &base)?;
    let secrets_version = crate::secrets::resolve(&mut policy, &base)?;
    Ok(Config { policy, path: path.map(Path::to_path_buf), loaded_at: SystemTime::now(), tls, secrets_version })
}
