//! Optional field encryption: chosen fields (commands, session keys, message excerpts) are
//! sealed with AES-256-GCM under a random 96-bit nonce before the record is chained, so the
//! hash covers the ciphertext and `verify` needs no key. The field's path is the associated
//! data: a ciphertext moved to another field does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A field that cannot be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// Not an `{"enc":"aes-256-gcm",…}` object.
    #[error("{0} is not an encrypted field")]
    NotEncrypted(String),
    /// Sealed under another key.
    #[error("{field} was encrypted with key {found}, not {expected}")]
    OtherKey {
        /// The field.
        field: String,
        /// Its key id.
        found: String,
        /// This key's id.
        expected: String,
    },
    /// The tag does not verify (wrong key, edited, or moved from another field).
    #[error("{0} does not decrypt: edited, moved, or another key")]
    Corrupt(String),
}

/// An AES-256-GCM key and its id.
pub struct FieldCipher {
    cipher: Aes256Gcm,
    id: String,
}

impl std::fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldCipher").field("key_id", &self.id).finish_non_exhaustive()
    }
}

impl FieldCipher {
    /// The cipher of a 32-byte key; its id is the first 16 hex digits of SHA-256(key).
    pub fn new(key: [u8; 32]) -> Self {
        let id = hex::encode(Sha256::digest(key))[..16].to_string();
        FieldCipher { cipher: Aes256Gcm::new(&key.into()), id }
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// `plaintext` of the field at `path` (such as `target.command`) sealed under `nonce`.
    pub fn seal(&self, path: &str, plaintext: &str, nonce: [u8; 12]) -> Value {
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext.as_bytes(), aad: path.as_bytes() })
            // AES-GCM fails only past 64 GiB of plaintext.
            .unwrap_or_default();
        json!({ "enc": "aes-256-gcm", "kid": self.id, "nonce": B64.encode(nonce), "ct": B64.encode(ct) })
    }

    /// The plaintext of a sealed field.
    pub fn open(&self, path: &str, sealed: &Value) -> Result<String, OpenError> {
        let not = || OpenError::NotEncrypted(path.to_string());
        if sealed.get("enc").and_then(Value::as_str) != Some("aes-256-gcm") {
            return Err(not());
        }
        let kid = sealed.get("kid").and_then(Value::as_str).ok_or_else(not)?;
        if kid != self.id {
            return Err(OpenError::OtherKey { field: path.to_string(), found: kid.to_string(), expected: self.id.clone() });
        }
        let nonce = sealed.get("nonce").and_then(Value::as_str).and_then(|n| B64.decode(n).ok()).filter(|n| n.len() == 12).ok_or_else(not)?;
        let ct = sealed.get("ct").and_then(Value::as_str).and_then(|c| B64.decode(c).ok()).ok_or_else(not)?;
        let plain = self.cipher.decrypt(Nonce::from_slice(&nonce), Payload { msg: &ct, aad: path.as_bytes() }).map_err(|_| OpenError::Corrupt(path.to_string()))?;
        String::from_utf8(plain).map_err(|_| OpenError::Corrupt(path.to_string()))
    }
}

/// Whether a value is a sealed field.
pub fn is_sealed(value: &Value) -> bool {
    value.get("enc").and_then(Value::as_str) == Some("aes-256-gcm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue14_a_sealed_field_opens_only_with_its_key_and_at_its_path() {
        let c = FieldCipher::new([9; 32]);
        let sealed = c.seal("target.command", "rm -rf /", [1; 12]);
        assert!(is_sealed(&sealed));
        assert!(!sealed.to_string().contains("rm -rf"));
        assert_eq!(c.open("target.command", &sealed).unwrap(), "rm -rf /");
        assert_eq!(c.open("target.session", &sealed), Err(OpenError::Corrupt("target.session".into())));
        let other = FieldCipher::new([8; 32]);
        assert!(matches!(other.open("target.command", &sealed), Err(OpenError::OtherKey { .. })));
        let mut edited = sealed.clone();
        edited["ct"] = Value::from(B64.encode(b"0123456789abcdef0123"));
        assert!(c.open("target.command", &edited).is_err());
        assert_ne!(c.seal("target.command", "x", [1; 12]), c.seal("target.command", "x", [2; 12]));
    }
}
