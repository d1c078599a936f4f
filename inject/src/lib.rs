//! Kubernetes sidecar injection for clawguard, free of I/O: YAML text in, YAML text and a
//! report out (`clawguard inject` / `uninject`), or one typed pod in and its injected form out
//! (the admission webhook).
//!
//! A sidecar is a boundary only if the gateway cannot be reached around it, so injecting
//! clawguard into a workload (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob,
//! or a `List` of them):
//! - finds the OpenClaw gateway container ([`gateway`]);
//! - makes the gateway listen on loopback only, on another port, and gives its port (and the
//!   port's name) to clawguard, so Services and `targetPort`s stay valid;
//! - adds clawguard as a native sidecar (an init container with `restartPolicy: Always`) or,
//!   classic, as a regular container, with the policy mounted from a ConfigMap as a directory
//!   (so edits hot-reload), a state volume, probes, a restrictive security context;
//! - moves probes that pointed at the gateway's port to clawguard's admin port;
//! - records the reverse change, so `uninject` restores the workload exactly, and marks the
//!   pod injected, so injecting twice changes nothing;
//! - refuses, with the reason, what it cannot make safe.
//!
//! Layers: [`documents`] (YAML and typed workloads, unknown fields detected), [`gateway`]
//! (the gateway's container and command line), [`pod`] (the pod template transformation),
//! [`network`] (the NetworkPolicy that admits traffic only to clawguard), [`admission`] (the
//! webhook's `AdmissionReview` answers).
#![forbid(unsafe_code)]

pub mod admission;
pub mod documents;
pub mod gateway;
pub mod network;
pub mod pod;

pub use documents::{inject_documents, uninject_documents, Documents};
pub use pod::{inject_template, uninject_template};

/// Annotations that steer injection (on the pod template, or on the workload).
pub mod annotations {
    /// `enabled` or `disabled` (opt out of a namespace-wide injection).
    pub const INJECT: &str = "clawguard.io/inject";
    /// `injected` once clawguard is in the pod.
    pub const STATUS: &str = "clawguard.io/status";
    /// The reverse JSON Patch of the injection (what `uninject` applies).
    pub const UNINJECT: &str = "clawguard.io/uninject";
    /// The name of the gateway's container, when it cannot be told from its command.
    pub const GATEWAY_CONTAINER: &str = "clawguard.io/gateway-container";
    /// The loopback port the gateway moves to (default: its port + 10000, or − 10000).
    pub const GATEWAY_PORT: &str = "clawguard.io/gateway-port";
    /// The ConfigMap holding `policy.toml`.
    pub const POLICY_CONFIGMAP: &str = "clawguard.io/policy-configmap";
    /// A PersistentVolumeClaim for the pin store and the audit log (default: an `emptyDir`).
    pub const STATE_PVC: &str = "clawguard.io/state-pvc";
    /// clawguard's image.
    pub const IMAGE: &str = "clawguard.io/image";
    /// clawguard's admin port (`/metrics`, `/livez`, `/readyz`).
    pub const ADMIN_PORT: &str = "clawguard.io/admin-port";
    /// `admin` (default: the gateway's HTTP and TCP probes move to clawguard's admin port) or
    /// `passthrough` (they stay on the port, which clawguard now serves and forwards).
    pub const PROBES: &str = "clawguard.io/probes";
    /// Resource requests and limits of the clawguard container.
    pub const CPU_REQUEST: &str = "clawguard.io/cpu-request";
    /// See [`CPU_REQUEST`].
    pub const MEMORY_REQUEST: &str = "clawguard.io/memory-request";
    /// See [`CPU_REQUEST`].
    pub const CPU_LIMIT: &str = "clawguard.io/cpu-limit";
    /// See [`CPU_REQUEST`].
    pub const MEMORY_LIMIT: &str = "clawguard.io/memory-limit";
}

/// Injection settings (flags of `clawguard inject`; annotations override them per workload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// clawguard's image.
    pub image: String,
    /// A regular container instead of a native sidecar (clusters before Kubernetes 1.29).
    pub classic: bool,
    /// The admin port.
    pub admin_port: u16,
    /// The ConfigMap holding `policy.toml`.
    pub policy_configmap: String,
    /// Also emit, per injected workload, a NetworkPolicy admitting ingress only to clawguard's ports.
    pub network_policy: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { image: "ghcr.io/clawguard/clawguard:0.1.0".into(), classic: false, admin_port: 15020, policy_configmap: "clawguard-policy".into(), network_policy: false }
    }
}

/// What injection did to one workload, or why it did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `Kind/name` (`Deployment/openclaw`).
    pub workload: String,
    /// What happened.
    pub outcome: Outcome,
}

/// The outcome for one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Changed; each line says what and why.
    Changed(Vec<String>),
    /// Left as it was (already injected, opted out, not a workload, no clawguard in it).
    Unchanged(String),
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Outcome::Changed(lines) => {
                write!(f, "{}: injected", self.workload)?;
                for line in lines {
                    write!(f, "\n  - {line}")?;
                }
                Ok(())
            }
            Outcome::Unchanged(why) => write!(f, "{}: unchanged ({why})", self.workload),
        }
    }
}

/// Why a workload cannot be injected or uninjected, or the input cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The workload cannot be made safe by injection.
    #[error("{workload}: refused: {reason}")]
    Refused {
        /// `Kind/name`.
        workload: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A document is not YAML, not a Kubernetes object of a known kind, or has fields the
    /// Kubernetes API does not know (which injection would silently drop).
    #[error("document {index}: {message}")]
    Unreadable {
        /// The document's position in the input (1-based).
        index: usize,
        /// What is wrong.
        message: String,
    },
}
