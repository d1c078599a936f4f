//! Node command-set pinning: per node (its device id), the command surface an operator
//! approved, and what it has declared beyond it. A node that reconnects declaring more keeps
//! only its pin until the upgrade is approved.
//!
//! The store is a value with an integrity check: [`PinStore::encode`] writes it with a
//! SHA-256 of its canonical body, and [`PinStore::decode`] refuses a file whose body does not
//! match (a hand edit or corruption is an error, never an empty store). Reading and writing
//! the file is the binary's business; this module does no I/O.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The file format's name and version.
pub const FORMAT: &str = "clawguard-node-pins/1";

/// A command surface: commands, capability categories and permission toggles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Surface {
    /// `connect.params.commands`.
    #[serde(default)]
    pub commands: BTreeSet<String>,
    /// `connect.params.caps`.
    #[serde(default)]
    pub caps: BTreeSet<String>,
    /// `connect.params.permissions` (names only; the values are the node's toggles).
    #[serde(default)]
    pub permissions: BTreeSet<String>,
}

impl Surface {
    /// What `self` declares beyond `pin`.
    pub fn beyond(&self, pin: &Surface) -> Surface {
        Surface {
            commands: self.commands.difference(&pin.commands).cloned().collect(),
            caps: self.caps.difference(&pin.caps).cloned().collect(),
            permissions: self.permissions.difference(&pin.permissions).cloned().collect(),
        }
    }

    /// Whether nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty() && self.caps.is_empty() && self.permissions.is_empty()
    }
}

/// An approved surface and who approved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// The approved surface.
    pub surface: Surface,
    /// Who approved it (`clawguard nodes approve`, an identity through the gateway, `trust-on-first-use`).
    pub approved_by: String,
    /// When, ms since the epoch.
    pub approved_at_ms: u64,
}

/// A declared surface beyond the pin, waiting for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// The whole surface the node declared.
    pub declared: Surface,
    /// First seen, ms since the epoch.
    pub first_seen_ms: u64,
    /// Last seen.
    pub last_seen_ms: u64,
}

/// One node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    /// The node's display name, as last declared.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Its platform, as last declared.
    #[serde(default)]
    pub platform: Option<String>,
    /// The approved surface (`None`: nothing approved yet).
    #[serde(default)]
    pub pin: Option<Pin>,
    /// A declared surface beyond the pin.
    #[serde(default)]
    pub pending: Option<Pending>,
}

/// Every node's pin, by device id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinStore {
    /// Nodes by device id.
    pub nodes: BTreeMap<String, NodeRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    integrity: String,
    nodes: BTreeMap<String, NodeRecord>,
}

/// Why a pin store cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Not the store's JSON shape (truncated, not JSON, unknown fields).
    #[error("not a clawguard node pin store: {0}")]
    Malformed(String),
    /// Another format or version.
    #[error("unsupported pin store format {found:?}: expected {FORMAT:?}")]
    Format {
        /// What the file says.
        found: String,
    },
    /// The body does not match its integrity hash: edited by hand, or corrupted.
    #[error("pin store integrity check failed: the file was edited by hand or corrupted (expected {expected}, found {found}); restore it from a backup, or remove it to start with no pins")]
    Integrity {
        /// The hash of the body.
        expected: String,
        /// The hash the file records.
        found: String,
    },
}

fn integrity(nodes: &BTreeMap<String, NodeRecord>) -> String {
    // BTreeMaps and BTreeSets serialise in order, so the body's bytes are canonical.
    let body = serde_json::to_vec(nodes).expect("a pin store always serialises");
    format!("sha256:{}", hex::encode(Sha256::digest(&body)))
}

/// How a node's first connect is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstConnect {
    /// Nothing is invocable until an operator approves (the default).
    Pending,
    /// Pin what it declares, recorded as trust on first use.
    Trust,
}

/// What pinning did to one `connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// The surface the connection keeps.
    pub allowed: Surface,
    /// What was removed from the declaration.
    pub removed: Surface,
    /// Whether the store changed (to be saved).
    pub changed: bool,
}

impl PinStore {
    /// Decodes a store file, checking its format and integrity.
    pub fn decode(bytes: &[u8]) -> Result<PinStore, StoreError> {
        let file: File = serde_json::from_slice(bytes).map_err(|e| StoreError::Malformed(e.to_string()))?;
        if file.format != FORMAT {
            return Err(StoreError::Format { found: file.format });
        }
        let expected = integrity(&file.nodes);
        if expected != file.integrity {
            return Err(StoreError::Integrity { expected, found: file.integrity });
        }
        Ok(PinStore { nodes: file.nodes })
    }

    /// Encodes the store with its integrity hash.
    pub fn encode(&self) -> Vec<u8> {
        let file = File { format: FORMAT.to_string(), integrity: integrity(&self.nodes), nodes: self.nodes.clone() };
        let mut out = serde_json::to_vec_pretty(&file).expect("a pin store always serialises");
        out.push(b'\n');
        out
    }

    /// Pins a node's `connect`: the declaration is cut to the approved surface (for an unknown
    /// node: nothing, or all of it under trust on first use), and anything beyond it is recorded
    /// as pending. `denied` are policy globs no node may ever have.
    pub fn on_connect(&mut self, device_id: &str, declared: &Surface, meta: (Option<&str>, Option<&str>), first: FirstConnect, denied: &dyn Fn(&str) -> bool, now_ms: u64) -> Pinned {
        let before = self.nodes.get(device_id).cloned();
        let record = self.nodes.entry(device_id.to_string()).or_default();
        record.display_name = meta.0.map(str::to_string).or(record.display_name.take());
        record.platform = meta.1.map(str::to_string).or(record.platform.take());
        let policy_allowed = Surface {
            commands: declared.commands.iter().filter(|c| !denied(c)).cloned().collect(),
            caps: declared.caps.clone(),
            permissions: declared.permissions.clone(),
        };
        if record.pin.is_none() && before.is_none() && first == FirstConnect::Trust {
            record.pin = Some(Pin { surface: policy_allowed.clone(), approved_by: "trust-on-first-use".into(), approved_at_ms: now_ms });
        }
        let pin = record.pin.as_ref().map(|p| p.surface.clone()).unwrap_or_default();
        let allowed = Surface {
            commands: policy_allowed.commands.intersection(&pin.commands).cloned().collect(),
            caps: declared.caps.intersection(&pin.caps).cloned().collect(),
            permissions: declared.permissions.intersection(&pin.permissions).cloned().collect(),
        };
        let removed = declared.beyond(&allowed);
        let upgrade = policy_allowed.beyond(&pin);
        if upgrade.is_empty() {
            record.pending = None;
        } else {
            let first_seen_ms = record.pending.as_ref().filter(|p| p.declared == policy_allowed).map(|p| p.first_seen_ms).unwrap_or(now_ms);
            record.pending = Some(Pending { declared: policy_allowed, first_seen_ms, last_seen_ms: now_ms });
        }
        let changed = before.as_ref() != self.nodes.get(device_id);
        Pinned { allowed, removed, changed }
    }

    /// Approves a node: its pending declaration (or `surface`, when given) becomes its pin.
    pub fn approve(&mut self, device_id: &str, surface: Option<Surface>, by: &str, now_ms: u64) -> Result<&Pin, String> {
        let record = self.nodes.get_mut(device_id).ok_or_else(|| format!("no node {device_id:?} in the pin store"))?;
        let surface = match surface {
            Some(s) => s,
            None => record.pending.as_ref().map(|p| p.declared.clone()).ok_or_else(|| format!("node {device_id:?} has no pending request: name the commands to approve"))?,
        };
        record.pending = None;
        record.pin = Some(Pin { surface, approved_by: by.to_string(), approved_at_ms: now_ms });
        Ok(record.pin.as_ref().expect("just set"))
    }

    /// Revokes a node's pin: nothing is invocable on it until it is approved again.
    pub fn revoke(&mut self, device_id: &str) -> Result<(), String> {
        let record = self.nodes.get_mut(device_id).ok_or_else(|| format!("no node {device_id:?} in the pin store"))?;
        record.pin = None;
        Ok(())
    }

    /// Whether `command` is within the node's pin.
    pub fn allows(&self, device_id: &str, command: &str) -> bool {
        self.nodes.get(device_id).and_then(|r| r.pin.as_ref()).is_some_and(|p| p.surface.commands.contains(command))
    }
}

#[cfg(test)]
mod tests;
