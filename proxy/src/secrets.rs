//! Secret references in a policy (`env:NAME`, `file:PATH`): read when the policy loads, so a
//! reference that cannot be read fails the load (`check`, start and reload alike) at its key.
//! A token is kept only as its SHA-256; no resolved value is logged, served or put in an error.

use clawguard_filters::audit::keys::parse_secret;
use clawguard_filters::identity::credential_sha256;
use clawguard_policies::{is_sha256_hex, LoadedPolicy, Policy, PolicyError, SecretRef};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where a `file:` reference points: relative paths are relative to the policy's directory.
pub fn path_of(path: &Path, base: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// The text a reference holds, without surrounding whitespace (a file written by `echo` ends
/// in a newline). The error names the reference, never what it held.
pub fn read_text(reference: &str, base: &Path) -> Result<String, String> {
    let text = match SecretRef::parse(reference)? {
        SecretRef::Env(name) => match std::env::var(&name) {
            Ok(v) => v,
            Err(std::env::VarError::NotPresent) => return Err(format!("{reference}: the environment variable {name} is not set")),
            Err(std::env::VarError::NotUnicode(_)) => return Err(format!("{reference}: the environment variable {name} is not UTF-8")),
        },
        SecretRef::File(path) => {
            let path = path_of(&path, base);
            let bytes = std::fs::read(&path).map_err(|e| format!("{reference}: cannot read {}: {e}", path.display()))?;
            String::from_utf8(bytes).map_err(|_| format!("{reference}: {} is not UTF-8 text", path.display()))?
        }
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{reference}: it is empty"));
    }
    Ok(text.to_string())
}

/// What one identity's credential references resolve to: hex SHA-256 values.
fn identity_hashes(references: Vec<(&'static str, &str)>, base: &Path) -> Result<Vec<String>, (&'static str, String)> {
    let mut hashes = Vec::new();
    for (field, reference) in references {
        let text = read_text(reference, base).map_err(|e| (field, e))?;
        let hash = match field {
            "token" => credential_sha256(&text),
            _ if is_sha256_hex(&text) => text.to_ascii_lowercase(),
            _ => return Err((field, format!("{reference}: does not hold a SHA-256: expected 64 hex digits"))),
        };
        hashes.push(hash);
    }
    Ok(hashes)
}

/// Reads every identity's credential references into the policy, and checks that the audit
/// keys' references can be read. Returns the secrets' version: a hash of what the references
/// resolved to, so that a reload sees a rotated token although the policy's bytes are the same.
pub fn resolve(policy: &mut LoadedPolicy, base: &Path) -> Result<String, PolicyError> {
    let mut version = Sha256::new();
    for (index, id) in policy.policy.identities.iter_mut().enumerate() {
        let references: Vec<_> = id.matcher.secret_references().collect();
        if references.is_empty() {
            continue;
        }
        match identity_hashes(references, base) {
            Ok(hashes) => {
                for h in &hashes {
                    version.update(h.as_bytes());
                }
                version.update([0]);
                id.matcher.resolved_token_sha256 = Some(hashes);
            }
            Err((field, e)) => {
                let message = format!("identity {:?}: match.{field}: {e}", id.name);
                return Err(policy.source.error_at_key(&["identity", &index.to_string(), "match", field], message));
            }
        }
    }
    check_audit_keys(&policy.policy, base).map_err(|(key, e)| policy.source.error_at_key(&["audit", key], format!("audit.{key}: {e}")))?;
    Ok(hex::encode(version.finalize()))
}

/// The secrets' version [`resolve`] would return for `policy` now, without changing it (the
/// file watcher's view); a reference that cannot be read counts by its error.
pub fn version(policy: &Policy, base: &Path) -> String {
    let mut copy = LoadedPolicy { policy: policy.clone(), version: String::new(), source: clawguard_policies::PolicySource::new("", "") };
    match resolve(&mut copy, base) {
        Ok(v) => v,
        Err(e) => hex::encode(Sha256::digest(e.to_string().as_bytes())),
    }
}

/// A 32-byte key from a reference; `None` for a `file:` key that does not exist yet (the
/// signing key is created at start). A key file must not be readable by others.
pub fn read_key(reference: &str, base: &Path) -> Result<Option<[u8; 32]>, String> {
    match SecretRef::parse(reference)? {
        SecretRef::Env(name) => {
            let v = std::env::var(&name).map_err(|_| format!("{reference}: the environment variable {name} is not set"))?;
            parse_secret(v.as_bytes()).map(Some).map_err(|e| format!("{reference}: {e}"))
        }
        SecretRef::File(path) => {
            let path = path_of(&path, base);
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(format!("{reference}: cannot read {}: {e}", path.display())),
            };
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(format!("{reference}: {} is readable by others (mode {:o}): expected 0600", path.display(), mode & 0o777));
            }
            let bytes = std::fs::read(&path).map_err(|e| format!("{reference}: cannot read {}: {e}", path.display()))?;
            parse_secret(&bytes).map(Some).map_err(|e| format!("{reference}: {e}"))
        }
    }
}

/// The audit keys' references can be read (a missing signing key file is made at start).
fn check_audit_keys(policy: &Policy, base: &Path) -> Result<(), (&'static str, String)> {
    let audit = &policy.audit;
    if !audit.enabled {
        return Ok(());
    }
    read_key(&audit.signing_key, base).map_err(|e| ("signing_key", e))?;
    if let Some(reference) = &audit.encryption_key {
        match read_key(reference, base) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(("encryption_key", format!("{reference}: the file does not exist: expected a 32-byte key (64 hex digits); clawguard makes only the signing key"))),
            Err(e) => return Err(("encryption_key", e)),
        }
    }
    Ok(())
}
