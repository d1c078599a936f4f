//! The audit log's keys: the Ed25519 key that signs checkpoints and seals, its key id, the
//! HMAC key derived from it for redaction, and the exact bytes a checkpoint signs.

use crate::state::audit::chain::canonical;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A key that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Neither 32 raw bytes nor 64 hex digits.
    #[error("expected a 32-byte key: 32 raw bytes or 64 hex digits (found {0} bytes)")]
    Length(usize),
    /// A public key or signature that is not valid hex of the right length or curve point.
    #[error("{0}")]
    Malformed(String),
}

/// Reads a 32-byte secret as stored in a key file or variable: 64 hex digits (white space around
/// them ignored) or exactly 32 raw bytes.
pub fn parse_secret(bytes: &[u8]) -> Result<[u8; 32], KeyError> {
    // Not UTF-8 is not hex: then only the raw 32-byte form can be right, checked below.
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    if let Some(t) = text.filter(|t| t.len() == 64) {
        if let Some(key) = hex::decode(t).ok().and_then(|v| <[u8; 32]>::try_from(v).ok()) {
            return Ok(key);
        }
    }
    bytes.try_into().map_err(|_| KeyError::Length(bytes.len()))
}

/// The key id of a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(public: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(public.as_bytes()))[..16].to_string()
}

/// The bytes a checkpoint (`kind` = `checkpoint`) or seal (`seal`) signs: a domain line, then
/// the canonical JSON of the head it covers, `{"head","key_id","seq","ts"}`.
pub fn signed_message(kind: &str, seq: u64, head: &str, ts: &str, key_id: &str) -> Vec<u8> {
    let mut msg = format!("clawguard-audit-{kind}/1\n").into_bytes();
    msg.extend_from_slice(canonical(&json!({ "head": head, "key_id": key_id, "seq": seq, "ts": ts })).as_bytes());
    msg
}

/// Checks a hex signature of `msg` by the hex public key.
pub fn verify_signature(public_hex: &str, msg: &[u8], signature_hex: &str) -> Result<(), KeyError> {
    let public = parse_public(public_hex)?;
    let sig: [u8; 64] = hex::decode(signature_hex).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| KeyError::Malformed("the signature is not 64 bytes of hex".into()))?;
    public.verify(msg, &Signature::from_bytes(&sig)).map_err(|_| KeyError::Malformed("the signature does not verify".into()))
}

/// Reads a hex Ed25519 public key.
pub fn parse_public(public_hex: &str) -> Result<VerifyingKey, KeyError> {
    let bytes: [u8; 32] = hex::decode(public_hex.trim()).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| KeyError::Malformed(format!("{public_hex:?} is not a public key: expected 64 hex digits")))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Malformed(format!("{public_hex:?} is not an Ed25519 public key")))
}

/// The signing key and what is derived from it.
pub struct AuditKeys {
    signing: SigningKey,
    id: String,
    hmac_key: [u8; 32],
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys").field("key_id", &self.id).finish_non_exhaustive()
    }
}

impl AuditKeys {
    /// The keys of a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let id = key_id(&signing.verifying_key());
        // The HMAC key is a one-way derivation: knowing it reveals nothing of the signing key.
        let mut h = Sha256::new();
        h.update(b"clawguard-audit-hmac/1\n");
        h.update(seed);
        AuditKeys { signing, id, hmac_key: h.finalize().into() }
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// The public key, hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().as_bytes())
    }

    /// A hex signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> String {
        hex::encode(self.signing.sign(msg).to_bytes())
    }

    /// The keyed hash that stands for a secret in the log: `hmac-sha256:<key id>:<hex>`.
    pub fn hmac(&self, value: &str) -> String {
        // HMAC takes a key of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.hmac_key).expect("HMAC accepts any key length");
        mac.update(value.as_bytes());
        format!("hmac-sha256:{}:{}", self.id, hex::encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue14_a_key_reads_as_hex_or_raw_and_signs_what_verifies() {
        let hex_seed = "11".repeat(32);
        assert_eq!(parse_secret(format!(" {hex_seed}\n").as_bytes()).unwrap(), [0x11; 32]);
        assert_eq!(parse_secret(&[7u8; 32]).unwrap(), [7; 32]);
        assert_eq!(parse_secret(b"short"), Err(KeyError::Length(5)));
        let keys = AuditKeys::from_seed([0x11; 32]);
        assert_eq!(keys.key_id().len(), 16);
        let msg = signed_message("checkpoint", 9, &"ab".repeat(32), "2026-12-01T00:00:00.000000000Z", keys.key_id());
        assert!(msg.starts_with(b"clawguard-audit-checkpoint/1\n{\"head\":"));
        let sig = keys.sign(&msg);
        verify_signature(&keys.public_hex(), &msg, &sig).unwrap();
        let mut other = msg.clone();
        other[40] ^= 1;
        assert!(verify_signature(&keys.public_hex(), &other, &sig).is_err());
        let h = keys.hmac("secret");
        assert!(h.starts_with(&format!("hmac-sha256:{}:", keys.key_id())));
        assert_eq!(h, AuditKeys::from_seed([0x11; 32]).hmac("secret"));
        assert_ne!(h, AuditKeys::from_seed([0x12; 32]).hmac("secret"));
    }
}
