//! Node command-set pinning: per node (its device id), the command surface an operator
//! approved, and what it has declared beyond it. A node that reconnects declaring more keeps
//! only its pin until the upgrade is approved.
//!
//! The store is a value with an integrity check: [`PinStore::encode`] writes it with a
//! SHA-256 of its canonical body, and [`PinStore::decode`] refuses a file whose body does not
//! match (a hand edit or corruption is an error, never an empty store). Reading and writing
//! the file is the binary's business; this module does no I/O.

use clawguard_policies::Glob;
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
    /// When an operator last revoked the pin (cleared by an approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<u64>,
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

/// The `[nodes]` policy, compiled.
#[derive(Debug, Clone)]
pub struct NodePolicy {
    /// An unknown node's first connect.
    pub first_connect: FirstConnect,
    /// Pins follow `node.pair.approve` answers that pass through clawguard; an unknown node's
    /// declaration is then shown to the gateway, so that its pairing request says what to approve.
    pub follow_gateway_approvals: bool,
    /// Commands no node may ever have.
    pub deny_commands: Vec<Glob>,
    /// When non-empty, the only commands a node may have.
    pub allow_commands: Vec<Glob>,
}

impl NodePolicy {
    /// Compiles the policy's `[nodes]` section.
    pub fn new(nodes: &clawguard_policies::Nodes) -> Self {
        NodePolicy {
            first_connect: match nodes.first_connect {
                clawguard_policies::FirstConnectMode::Pending => FirstConnect::Pending,
                clawguard_policies::FirstConnectMode::Trust => FirstConnect::Trust,
            },
            follow_gateway_approvals: nodes.follow_gateway_approvals,
            deny_commands: nodes.deny_commands.clone(),
            allow_commands: nodes.allow_commands.clone(),
        }
    }

    /// Why the policy refuses `command` to every node, if it does: a `deny_commands` glob
    /// matches it, or `allow_commands` is set and none matches.
    pub fn denies(&self, command: &str) -> Option<String> {
        if let Some(g) = self.deny_commands.iter().find(|g| g.matches(command)) {
            return Some(format!("nodes.deny_commands {:?}", g.as_str()));
        }
        (!self.allow_commands.is_empty() && !self.allow_commands.iter().any(|g| g.matches(command))).then(|| "not in nodes.allow_commands".to_string())
    }

    fn permitted(&self, declared: &Surface) -> Surface {
        Surface { commands: declared.commands.iter().filter(|c| self.denies(c).is_none()).cloned().collect(), ..declared.clone() }
    }
}

/// What pinning did to one `connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// The surface the connection keeps (what the gateway is shown).
    pub allowed: Surface,
    /// What was removed from the declaration.
    pub removed: Surface,
    /// What the node declared beyond its pin (recorded as pending; empty when none).
    pub upgrade: Surface,
    /// Whether the store changed (to be saved).
    pub changed: bool,
}

/// A change to the store, as the data path or an operator makes it. Changes are values so
/// that the binary can replay them on the file's latest contents (another process may have
/// edited it in between).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinOp {
    /// A node connected declaring `declared` (display name, platform).
    Connect {
        /// The node's device id.
        device_id: String,
        /// Its declaration.
        declared: Surface,
        /// `client.displayName`, `client.platform`.
        meta: (Option<String>, Option<String>),
        /// When.
        at_ms: u64,
    },
    /// An approval: the pin becomes `surface`.
    Approve {
        /// The node's device id.
        device_id: String,
        /// The approved surface.
        surface: Surface,
        /// Who approved.
        by: String,
        /// When.
        at_ms: u64,
    },
    /// An operator revoked the pin.
    Revoke {
        /// The node's device id.
        device_id: String,
        /// When.
        at_ms: u64,
    },
    /// A rejected request: the pending declaration is dropped, the pin stays.
    Reject {
        /// The node's device id.
        device_id: String,
    },
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

    /// What a node's `connect` may show the gateway, without recording anything. With a pin:
    /// the declaration cut to the pin. Without one: under trust on first use (an unknown node),
    /// its declaration; when approvals are followed and the node was never revoked, its
    /// declaration too (nothing is invocable through clawguard until a pin exists, and the
    /// gateway's pairing request then lists what the node asks for); otherwise nothing.
    /// Policy-denied commands are always removed.
    pub fn preview(&self, device_id: &str, declared: &Surface, policy: &NodePolicy) -> Pinned {
        let record = self.nodes.get(device_id);
        let permitted = policy.permitted(declared);
        let pin = record.and_then(|r| r.pin.as_ref()).map(|p| p.surface.clone());
        let allowed = match &pin {
            Some(pin) => Surface {
                commands: permitted.commands.intersection(&pin.commands).cloned().collect(),
                caps: permitted.caps.intersection(&pin.caps).cloned().collect(),
                permissions: permitted.permissions.intersection(&pin.permissions).cloned().collect(),
            },
            None if record.is_none() && policy.first_connect == FirstConnect::Trust => permitted.clone(),
            None if policy.follow_gateway_approvals && record.is_none_or(|r| r.revoked_at_ms.is_none()) => permitted.clone(),
            None => Surface::default(),
        };
        let upgrade = match (&pin, record.is_none() && policy.first_connect == FirstConnect::Trust) {
            (None, true) => Surface::default(),
            _ => permitted.beyond(&pin.unwrap_or_default()),
        };
        Pinned { removed: declared.beyond(&allowed), allowed, upgrade, changed: false }
    }

    /// Records a node's `connect`: its name and platform, a trust-on-first-use pin, and what it
    /// declared beyond its pin as pending (cleared when it declares nothing more).
    pub fn on_connect(&mut self, device_id: &str, declared: &Surface, meta: (Option<&str>, Option<&str>), policy: &NodePolicy, now_ms: u64) -> Pinned {
        let mut pinned = self.preview(device_id, declared, policy);
        let before = self.nodes.get(device_id).cloned();
        let record = self.nodes.entry(device_id.to_string()).or_default();
        record.display_name = meta.0.map(str::to_string).or(record.display_name.take());
        record.platform = meta.1.map(str::to_string).or(record.platform.take());
        if before.is_none() && policy.first_connect == FirstConnect::Trust {
            record.pin = Some(Pin { surface: policy.permitted(declared), approved_by: "trust-on-first-use".into(), approved_at_ms: now_ms });
        }
        if pinned.upgrade.is_empty() {
            record.pending = None;
        } else {
            let permitted = policy.permitted(declared);
            let first_seen_ms = record.pending.as_ref().filter(|p| p.declared == permitted).map(|p| p.first_seen_ms).unwrap_or(now_ms);
            record.pending = Some(Pending { declared: permitted, first_seen_ms, last_seen_ms: now_ms });
        }
        pinned.changed = before.as_ref() != self.nodes.get(device_id);
        pinned
    }

    /// Approves a node: its pending declaration (or `surface`, when given) becomes its pin.
    pub fn approve(&mut self, device_id: &str, surface: Option<Surface>, by: &str, now_ms: u64) -> Result<&Pin, String> {
        let record = self.nodes.get_mut(device_id).ok_or_else(|| format!("no node {device_id:?} in the pin store"))?;
        let surface = match surface {
            Some(s) => s,
            None => record.pending.as_ref().map(|p| p.declared.clone()).ok_or_else(|| format!("node {device_id:?} has no pending request: name the commands to approve"))?,
        };
        record.pending = None;
        record.revoked_at_ms = None;
        record.pin = Some(Pin { surface, approved_by: by.to_string(), approved_at_ms: now_ms });
        Ok(record.pin.as_ref().expect("just set"))
    }

    /// Revokes a node's pin: nothing is invocable on it until it is approved again, and its
    /// connects show the gateway nothing.
    pub fn revoke(&mut self, device_id: &str, now_ms: u64) -> Result<(), String> {
        let record = self.nodes.get_mut(device_id).ok_or_else(|| format!("no node {device_id:?} in the pin store"))?;
        record.pin = None;
        record.revoked_at_ms = Some(now_ms);
        Ok(())
    }

    /// Applies a change; returns whether the store changed.
    pub fn apply(&mut self, op: &PinOp, policy: &NodePolicy) -> bool {
        match op {
            PinOp::Connect { device_id, declared, meta, at_ms } => self.on_connect(device_id, declared, (meta.0.as_deref(), meta.1.as_deref()), policy, *at_ms).changed,
            PinOp::Approve { device_id, surface, by, at_ms } => {
                let before = self.nodes.get(device_id).cloned();
                let surface = policy.permitted(surface);
                let record = self.nodes.entry(device_id.clone()).or_default();
                record.pending = record.pending.take().filter(|p| !p.declared.beyond(&surface).is_empty());
                record.revoked_at_ms = None;
                record.pin = Some(Pin { surface, approved_by: by.clone(), approved_at_ms: *at_ms });
                before.as_ref() != self.nodes.get(device_id)
            }
            PinOp::Revoke { device_id, at_ms } => self.nodes.get(device_id).is_some_and(|r| r.pin.is_some()) && self.revoke(device_id, *at_ms).is_ok(),
            PinOp::Reject { device_id } => self.nodes.get_mut(device_id).is_some_and(|r| r.pending.take().is_some()),
        }
    }

    /// How many nodes are in each state: `[pinned, pending, revoked]` (a pinned node with a
    /// request beyond its pin counts as both pinned and pending; revoked: revoked, no pin since).
    pub fn counts(&self) -> [usize; 3] {
        let mut counts = [0; 3];
        for r in self.nodes.values() {
            counts[0] += usize::from(r.pin.is_some());
            counts[1] += usize::from(r.pending.is_some());
            counts[2] += usize::from(r.pin.is_none() && r.revoked_at_ms.is_some());
        }
        counts
    }

    /// The node's pin, if it has one.
    pub fn pin(&self, device_id: &str) -> Option<&Surface> {
        self.nodes.get(device_id).and_then(|r| r.pin.as_ref()).map(|p| &p.surface)
    }

    /// Whether `command` is within the node's pin.
    pub fn allows(&self, device_id: &str, command: &str) -> bool {
        self.pin(device_id).is_some_and(|p| p.commands.contains(command))
    }
}

/// The pin store as the data path sees it: shared by every connection, read on node connects
/// and invocations, changed through [`PinOp`]s. The binary's implementation also persists
/// each change; an in-memory store is a `Mutex<PinStore>`.
pub trait Pins: Send + Sync {
    /// Runs `f` on the current store.
    fn read(&self, f: &mut dyn FnMut(&PinStore));
    /// Applies a change; returns whether the store changed.
    fn apply(&self, op: PinOp, policy: &NodePolicy) -> bool;
}

impl Pins for std::sync::Mutex<PinStore> {
    fn read(&self, f: &mut dyn FnMut(&PinStore)) {
        // A poisoned lock still holds the last complete store (every change is one call).
        let store = self.lock().unwrap_or_else(|e| e.into_inner());
        f(&store);
    }

    fn apply(&self, op: PinOp, policy: &NodePolicy) -> bool {
        self.lock().unwrap_or_else(|e| e.into_inner()).apply(&op, policy)
    }
}

impl dyn Pins + '_ {
    /// The node's current pin (a copy).
    pub fn pin_of(&self, device_id: &str) -> Option<Surface> {
        let mut out = None;
        self.read(&mut |s| out = s.pin(device_id).cloned());
        out
    }

    /// Whether the node has a pin, and whether `command` is in it (`None`: no pin). Copies
    /// nothing: this is on every `node.invoke`.
    pub fn pin_allows(&self, device_id: &str, command: &str) -> Option<bool> {
        let mut out = None;
        self.read(&mut |s| out = s.pin(device_id).map(|p| p.commands.contains(command)));
        out
    }

    /// What a connect may show the gateway (see [`PinStore::preview`]).
    pub fn preview(&self, device_id: &str, declared: &Surface, policy: &NodePolicy) -> Pinned {
        let mut out = None;
        self.read(&mut |s| out = Some(s.preview(device_id, declared, policy)));
        out.expect("read calls back once")
    }
}

#[cfg(test)]
mod tests;
