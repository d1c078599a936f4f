//! What `clawguard doctor` looked at, as plain data: the binary gathers it (sockets, files,
//! the gateway's config, the CLI's own audit) and the checks only read it. Fixtures write the
//! same structure by hand.

use serde::Deserialize;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};

/// Everything the checks read. A part that could not be gathered is `Unavailable` with why,
/// and the checks say what they could not check instead of passing it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Facts {
    /// clawguard's policy, parsed (the binary loads it as `clawguard check` does).
    #[serde(skip)]
    pub policy: Option<clawguard_policies::Policy>,
    /// Where the policy came from (`<embedded>` when none was given).
    pub policy_path: Option<String>,
    /// Why the policy does not load (`clawguard check`'s error), when it does not.
    pub policy_error: Option<String>,
    /// The gateway's config (`openclaw.json`, JSON5), parsed.
    pub gateway_config: Gathered<Value>,
    /// Where the gateway's config was read from.
    pub gateway_config_path: Option<String>,
    /// Every listening TCP socket of the host (this network namespace).
    pub listeners: Gathered<Vec<Listener>>,
    /// Connection attempts to the gateway's port on the host's own non-loopback addresses.
    pub probes: Vec<Probe>,
    /// Modes and owners of the files the deployment depends on.
    pub files: Vec<FileFacts>,
    /// `openclaw security audit --json`, when the CLI was run.
    pub openclaw_audit: Gathered<Value>,
    /// The gateway version that answers clawguard (its last `hello-ok`), when known.
    pub gateway_version_answering: Option<String>,
    /// The last `clawguard audit verify` of the audit log: `Ok(summary)` or why it failed.
    pub audit_verify: Gathered<String>,
    /// Whether the audit directory can be written by this process.
    pub audit_writable: Option<bool>,
}

/// A part of the facts: gathered, deliberately not gathered, or not gatherable (with why).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gathered<T> {
    /// Gathered.
    Found(T),
    /// Not asked for (no file given and none at the default place, CLI not installed, …).
    #[default]
    Absent,
    /// Asked for and could not be read: why.
    Unavailable(String),
}

impl<T> Gathered<T> {
    /// The value, when gathered.
    pub fn found(&self) -> Option<&T> {
        match self {
            Gathered::Found(v) => Some(v),
            _ => None,
        }
    }
}

/// A listening TCP socket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// The local address it listens on.
    pub address: SocketAddr,
    /// The process that holds it (`node`, `clawguard`, …), when it could be read.
    #[serde(default)]
    pub process: Option<String>,
    /// Its process id, when it could be read.
    #[serde(default)]
    pub pid: Option<u32>,
}

/// A TCP connection attempt to the gateway's port on one of the host's own addresses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// The address tried.
    pub address: SocketAddr,
    /// Whether it accepted the connection.
    pub open: bool,
}

/// A file (or directory) the deployment depends on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFacts {
    /// What it is.
    pub role: FileRole,
    /// Its path.
    pub path: String,
    /// Unix permission bits (`None`: it does not exist).
    pub mode: Option<u32>,
    /// Owner uid.
    #[serde(default)]
    pub uid: Option<u32>,
    /// The uid clawguard runs as (the doctor's own), to compare with the owner.
    #[serde(default)]
    pub running_uid: Option<u32>,
}

/// The files `clawguard doctor` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileRole {
    /// clawguard's policy file.
    Policy,
    /// The node pin store.
    PinStore,
    /// The audit log directory.
    AuditDir,
    /// The audit signing key file.
    SigningKey,
    /// The gateway's config file.
    GatewayConfig,
}

impl FileRole {
    /// How findings name it.
    pub fn label(self) -> &'static str {
        match self {
            FileRole::Policy => "policy file",
            FileRole::PinStore => "node pin store",
            FileRole::AuditDir => "audit log directory",
            FileRole::SigningKey => "audit signing key",
            FileRole::GatewayConfig => "gateway config file",
        }
    }

    /// The id part of its findings.
    pub fn id(self) -> &'static str {
        match self {
            FileRole::Policy => "policy",
            FileRole::PinStore => "pin_store",
            FileRole::AuditDir => "audit_dir",
            FileRole::SigningKey => "signing_key",
            FileRole::GatewayConfig => "gateway_config",
        }
    }
}

/// Whether `ip` is reachable only from this host.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}
