//! TLS material: read and check the certificate, key and client CA named by the
//! policy, and build the rustls `ServerConfig` clawguard's TLS listeners serve
//! (pingora's `TlsSettings::build()` panics on bad files and cannot set the
//! server's cipher preference, so clawguard builds the config itself).

use clawguard_policies::{ClientAuth, LoadedPolicy, PolicyError};
use pingora::tls::{version, CertificateDer, PrivateKeyDer, RootCertStore, ServerConfig, WebPkiClientVerifier};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

/// The checked TLS configuration of every TLS listener.
pub struct TlsMaterial {
    /// The rustls server configuration: TLS 1.2 and 1.3, the server's cipher
    /// preference (`ignore_client_order`), ALPN h2 and http/1.1, and the mTLS
    /// verifier when `client_ca` is set.
    pub server_config: Arc<ServerConfig>,
    /// SHA-256 of the certificate, key and client CA files' bytes: a reload installs new
    /// material only when it changed.
    pub version: String,
}

/// The version of the TLS files a policy names (`None`: no TLS listener): what
/// [`TlsMaterial::version`] would be, without parsing them (the file watcher's view).
pub fn files_version(policy: &clawguard_policies::Policy, base: &Path) -> Option<String> {
    let tls = &policy.tls;
    if tls.listen.is_empty() {
        return None;
    }
    let files = [tls.cert.as_ref(), tls.key.as_ref(), tls.client_ca.as_ref()];
    let mut h = Sha256::new();
    for f in files.into_iter().flatten() {
        // An unreadable file hashes as its error: a change either way is a change.
        match std::fs::read(resolve(base, field_path(f))) {
            Ok(bytes) => h.update(&bytes),
            Err(e) => h.update(e.to_string().as_bytes()),
        }
        h.update([0u8]);
    }
    Some(hex::encode(h.finalize()))
}

/// Validates the policy's TLS files; `None` when no TLS listener is configured.
pub fn load(policy: &LoadedPolicy, base: &Path) -> Result<Option<TlsMaterial>, PolicyError> {
    let tls = &policy.policy.tls;
    if tls.listen.is_empty() {
        return Ok(None);
    }
    pingora::tls::install_default_crypto_provider();
    let src = &policy.source;
    let (Some(cert_field), Some(key_field)) = (&tls.cert, &tls.key) else {
        return Err(src.error_at(None, "tls.cert and tls.key are required with tls.listen"));
    };
    let fail = |field: &Spanned<PathBuf>, msg: String| src.error_at(Some(field.span()), msg);

    // The version is over the bytes read here, in the order files_version reads them.
    let mut version = Sha256::new();
    let cert_path = resolve(base, field_path(cert_field));
    let certs = read_pem(&cert_path, cert_field, &fail)?;
    version.update(&certs);
    version.update([0u8]);
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &certs[..])
        .collect::<Result<_, _>>()
        .map_err(|e| fail(cert_field, format!("{}: not valid PEM: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(fail(cert_field, format!("{}: no certificate found: expected a PEM \"CERTIFICATE\" block", cert_path.display())));
    }
    let key_path = resolve(base, field_path(key_field));
    let key_pem = read_pem(&key_path, key_field, &fail)?;
    version.update(&key_pem);
    version.update([0u8]);
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| fail(key_field, format!("{}: not valid PEM: {e}", key_path.display())))?
        .ok_or_else(|| fail(key_field, format!("{}: no private key found: expected a PEM PKCS#8, PKCS#1 or SEC1 key", key_path.display())))?;
    let client_verifier = match &tls.client_ca {
        None => None,
        Some(ca_field) => {
            let ca_path = resolve(base, field_path(ca_field));
            let pem = read_pem(&ca_path, ca_field, &fail)?;
            version.update(&pem);
            version.update([0u8]);
            let mut roots = RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                let cert = cert.map_err(|e| fail(ca_field, format!("{}: not valid PEM: {e}", ca_path.display())))?;
                roots.add(cert).map_err(|e| fail(ca_field, format!("{}: unusable CA certificate: {e}", ca_path.display())))?;
            }
            if roots.is_empty() {
                return Err(fail(ca_field, format!("{}: no certificate found: expected PEM CA certificates", ca_path.display())));
            }
            let builder = WebPkiClientVerifier::builder(Arc::new(roots));
            let builder = if tls.client_auth == ClientAuth::Optional { builder.allow_unauthenticated() } else { builder };
            Some(builder.build().map_err(|e| fail(ca_field, format!("{}: {e}", ca_path.display())))?)
        }
    };
    let builder = ServerConfig::builder_with_protocol_versions(&[&version::TLS12, &version::TLS13]);
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| fail(key_field, format!("{} does not fit the certificate {}: {e}", key_path.display(), cert_path.display())))?;
    // The server's order of cipher suites applies (a TLS scan's "server cipher order"): the
    // provider lists AES-256-GCM and AES-128-GCM before ChaCha20, all with forward secrecy.
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsMaterial { server_config: Arc::new(config), version: hex::encode(version.finalize()) }))
}

fn field_path(field: &Spanned<PathBuf>) -> &Path {
    field.get_ref()
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

fn read_pem(path: &Path, field: &Spanned<PathBuf>, fail: &dyn Fn(&Spanned<PathBuf>, String) -> PolicyError) -> Result<Vec<u8>, PolicyError> {
    std::fs::read(path).map_err(|e| fail(field, format!("{}: cannot read: {e}: expected a readable PEM file", path.display())))
}

/// A server configuration for one certificate chain and key (PEM), TLS 1.2 and 1.3, no client
/// certificates: the admission webhook's.
pub fn single_cert_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<_, _>>().map_err(|e| format!("the certificate is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate found: expected a PEM \"CERTIFICATE\" block".into());
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| format!("the key is not valid PEM: {e}"))?
        .ok_or("no private key found: expected a PEM PKCS#8, PKCS#1 or SEC1 key")?;
    let mut config = ServerConfig::builder_with_protocol_versions(&[&version::TLS12, &version::TLS13])
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
