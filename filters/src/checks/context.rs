//! What every decision reads: one policy version compiled for decisions ([`Guard`]), and the
//! state all connections and requests share ([`Env`]: the clock, replay memory, node pins, the
//! session ledger, the approval memory), with an in-memory implementation ([`InMemory`]) for
//! tests and `clawguard decide`. Every surface (the WebSocket engine, HTTP) and every check
//! reads these; nothing here reads a surface.

use crate::checks::config_guard::ConfigGuard;
use crate::checks::identity::Identities;
use crate::state::nodes::{NodePolicy, Pins};
use crate::state::replay::ReplayCache;
use crate::checks::rules::Rules;
use crate::protocol::sessions::SessionLedger;
use clawguard_policies::{Glob, Mode, Policy, WebSocket};
use std::sync::Mutex;

/// One policy version, compiled for decisions.
#[derive(Debug)]
pub struct Guard {
    /// Frame rules.
    pub rules: Rules,
    /// Identities.
    pub identities: Identities,
    /// The global mode.
    pub mode: Mode,
    /// Protected config paths.
    pub config_guard: ConfigGuard,
    /// The gateway version the policy targets.
    pub gateway_version: String,
    /// Deepest nesting accepted in a client message.
    pub max_json_depth: usize,
    /// Request size limits by method glob, most specific first.
    request_limits: Vec<(Glob, usize)>,
    /// The limit for methods no glob matches.
    default_request_limit: usize,
    /// Node command-set pinning.
    pub nodes: NodePolicy,
    /// Session quotas and send serialisation.
    pub sessions: clawguard_policies::Sessions,
    /// The exec policy (an invalid one refuses every command, saying why).
    pub exec: Result<crate::checks::exec::ExecPolicy, String>,
    /// Request-path rate limits (their state lives as long as this policy version).
    pub limits: crate::state::limits::RateLimits<governor::clock::DefaultClock>,
    /// Per source IP, per connection and HTTP limits (state as long as this policy version).
    pub clients: crate::state::limits::ClientLimits<governor::clock::DefaultClock>,
    /// Methods counted as inference.
    inference_methods: Vec<Glob>,
    /// What the policy says of each method of the gateway's table, worked out once (the globs
    /// above are matched for a method not in it).
    method_facts: std::collections::HashMap<&'static str, MethodFacts, foldhash::fast::RandomState>,
    /// The HTTP surface's routes, origins and headers.
    pub http: crate::checks::http_policy::HttpPolicy,
    /// Which allowed requests the audit log records (`audit.record_allowed`; `None` when the
    /// audit log is off).
    pub record_allowed: Option<clawguard_policies::RecordAllowed>,
    /// Spend budgets and what the current windows have cost (state as long as this policy
    /// version, carried over by a reload).
    pub spend: Mutex<crate::state::spend::Ledger>,
    /// `spend.abort_running`: runs in flight of an identity past an enforced budget are stopped.
    pub abort_running: bool,
    /// The name this gateway's shared spend counters are kept under (`state.gateway`, else the
    /// upstream address).
    pub spend_gateway: String,
}

impl Guard {
    /// Compiles a policy.
    pub fn new(policy: &Policy) -> Self {
        let mut guard = Guard {
            rules: Rules::new(policy),
            identities: Identities::new(policy),
            mode: policy.mode,
            config_guard: ConfigGuard::new(&policy.config_guard.protected),
            gateway_version: policy.gateway.version.clone(),
            max_json_depth: policy.websocket.max_json_depth,
            request_limits: compile_request_limits(&policy.websocket),
            default_request_limit: policy.websocket.max_message_bytes,
            nodes: NodePolicy::new(&policy.nodes),
            sessions: policy.sessions.clone(),
            exec: crate::checks::exec::ExecPolicy::new(policy).map_err(|e| e.to_string()),
            limits: crate::state::limits::RateLimits::new(&policy.limits, &governor::clock::DefaultClock::default()),
            clients: crate::state::limits::ClientLimits::new(&policy.limits, &governor::clock::DefaultClock::default()),
            inference_methods: policy.limits.inference_methods.clone(),
            http: crate::checks::http_policy::HttpPolicy::new(policy),
            record_allowed: policy.audit.enabled.then_some(policy.audit.record_allowed),
            spend: Mutex::new(crate::state::spend::Ledger::new(&policy.spend)),
            abort_running: policy.spend.abort_running,
            spend_gateway: policy.state.gateway.clone().unwrap_or_else(|| policy.upstream.address.to_string()),
            method_facts: Default::default(),
        };
        guard.method_facts = crate::protocol::method_table::METHODS.iter().map(|(method, _)| (*method, guard.work_out(method))).collect();
        guard
    }

    /// The policy's size limit and inference flag for `method`, from its globs.
    fn work_out(&self, method: &str) -> MethodFacts {
        MethodFacts {
            request_limit: self.request_limits.iter().find(|(g, _)| g.matches(method)).map(|(_, n)| *n).unwrap_or(self.default_request_limit),
            inference: self.inference_methods.iter().any(|g| g.matches(method)),
        }
    }

    fn facts(&self, method: &str) -> MethodFacts {
        self.method_facts.get(method).copied().unwrap_or_else(|| self.work_out(method))
    }

    /// Takes over the rate-limit state of the policy version this one replaces, for every
    /// limit whose key and rate are unchanged (a reload does not hand out fresh budgets).
    pub fn carry_state_from(&mut self, old: &Guard) {
        self.limits.carry_from(&old.limits);
        self.clients.carry_from(&old.clients);
        let old_spend = old.spend();
        self.spend().carry_from(&old_spend);
    }

    /// The spend ledger (a poisoned lock still holds consistent figures: every update is a
    /// few additions).
    pub fn spend(&self) -> std::sync::MutexGuard<'_, crate::state::spend::Ledger> {
        self.spend.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether an allowed request for `method` is recorded in the audit log.
    pub fn records_method(&self, method: &str) -> bool {
        match self.record_allowed {
            None | Some(clawguard_policies::RecordAllowed::None) => false,
            Some(clawguard_policies::RecordAllowed::All) => true,
            Some(clawguard_policies::RecordAllowed::Sensitive) => crate::protocol::scopes::is_sensitive(method),
        }
    }

    /// The exec policy, or why it is unusable.
    pub fn exec(&self) -> Result<&crate::checks::exec::ExecPolicy, &str> {
        self.exec.as_ref().map_err(String::as_str)
    }

    /// Whether `method` counts as inference (`limits.inference_methods`).
    pub fn is_inference(&self, method: &str) -> bool {
        self.facts(method).inference
    }

    /// The request size limit for `method` (the most specific glob: exact, then longest).
    pub fn request_limit(&self, method: &str) -> usize {
        self.facts(method).request_limit
    }
}

/// What the policy says of one method, for every request of it.
#[derive(Debug, Clone, Copy)]
struct MethodFacts {
    /// `websocket.max_request_bytes` (the most specific glob), else the message limit.
    request_limit: usize,
    /// Whether `limits.inference_methods` names it.
    inference: bool,
}

fn compile_request_limits(ws: &WebSocket) -> Vec<(Glob, usize)> {
    // Globs were validated with the policy; an invalid one cannot match anything.
    let mut limits: Vec<(Glob, usize)> = ws.max_request_bytes.iter().filter_map(|(g, n)| Glob::new(g).ok().map(|g| (g, *n))).collect();
    limits.sort_by_key(|(g, _)| (std::cmp::Reverse(g.is_exact()), std::cmp::Reverse(g.as_str().len())));
    limits
}

/// Remembers device signatures across connections.
pub trait ReplayCheck {
    /// `true` if this (device id, signature) pair has not been seen within the window.
    fn fresh(&self, device_id: &str, signature: &str, now_ms: u64) -> bool;
}

impl ReplayCheck for Mutex<ReplayCache> {
    fn fresh(&self, device_id: &str, signature: &str, now_ms: u64) -> bool {
        // A poisoned lock cannot vouch for freshness: refuse (fail closed).
        self.lock().map(|mut c| c.fresh(device_id, signature, now_ms)).unwrap_or(false)
    }
}

/// What a decision needs from outside: the policy, the time, and the state every connection
/// shares (replay memory, node pins, session ledger).
pub struct Env<'a> {
    /// The compiled policy.
    pub guard: &'a Guard,
    /// Milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Replay memory shared by every connection.
    pub replay: &'a dyn ReplayCheck,
    /// The node pin store.
    pub pins: &'a dyn Pins,
    /// Sessions created and runs in flight.
    pub ledger: &'a SessionLedger,
    /// Approval ids seen and the exec policy's verdict on their commands.
    pub approvals: &'a crate::checks::exec_guard::ApprovalMemory,
    /// The audit log cannot record now and its policy is `on_failure = "block"`: requests that
    /// must be recorded are refused.
    pub audit_down: bool,
    /// The store shared with other replicas (`[state] backend = "redis"`), if any.
    pub shared: Option<&'a dyn crate::state::shared::SharedStore>,
}

/// Shared state held in memory only (tests, `clawguard decide`): replay memory, a pin store
/// and a session ledger.
pub struct InMemory {
    /// Replay memory.
    pub replay: Mutex<ReplayCache>,
    /// Node pins.
    pub pins: Mutex<crate::state::nodes::PinStore>,
    /// Session ledger.
    pub ledger: SessionLedger,
    /// Approval memory.
    pub approvals: crate::checks::exec_guard::ApprovalMemory,
}

impl Default for InMemory {
    fn default() -> Self {
        InMemory { replay: Mutex::new(ReplayCache::new(600_000, 10_000)), pins: Mutex::default(), ledger: SessionLedger::default(), approvals: Default::default() }
    }
}

impl InMemory {
    /// The decision environment over this state.
    pub fn env<'a>(&'a self, guard: &'a Guard, now_ms: u64) -> Env<'a> {
        Env { guard, now_ms, replay: &self.replay, pins: &self.pins, ledger: &self.ledger, approvals: &self.approvals, audit_down: false, shared: None }
    }
}

