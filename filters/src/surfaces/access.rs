//! Access control for one WebSocket connection: the gateway handshake as a state machine
//! (challenge → `connect` → `hello-ok`), who the client is, and a judgement on every message.
//!
//! - At `connect`: the role must be one the identity may use; requested scopes above the
//!   identity's ceiling are removed from an unsigned connect (entries only; nothing is added)
//!   and refused on a device-signed one (the signature covers them); the device proof must
//!   answer this connection's challenge, be fresh (±120 s) and not be a replay.
//! - After `hello-ok`: effective scopes = granted ∩ ceiling; every request is checked against
//!   the identity's method lists and the gateway's own method table (`scopes::authorize`).
//! - Refusals are synthetic `res` frames in the gateway's error shape; handshake refusals
//!   also close with 1008.

use crate::protocol::gateway::{encode_json, error_response, parse_frame, retryable_error_response, GatewayFrame};
use crate::checks::node_guard::{declared_surface, invocation_refusal, pair_outcome, strip_connect, NodeSide, PairDecision};
use crate::state::nodes::Surface;
use crate::checks::session_guard::{Answer, SessionSide};
pub use crate::checks::context::{Env, Guard, InMemory, ReplayCheck};
use crate::checks::identity::{credential_sha256, Evidence, Resolution};
use crate::protocol::peer::Peer;
use crate::checks::rules::Decision;
use crate::protocol::scopes::{authorize, Refusal, Role, Scope, ScopeSet};
use bytes::Bytes;
use clawguard_policies::{Mode, RuleAction};
use serde::Deserialize;
use serde_json::{json, Value};

/// A device signature may be this far from clawguard's clock (the gateway's own skew).
pub const SIGNATURE_SKEW_MS: u64 = 120_000;

/// The target of a `node.invoke`: which node, which command, trimmed as the gateway trims
/// them (empty when absent or not a string).
#[derive(Default)]
struct InvokeTarget<'a> {
    node_id: &'a str,
    command: &'a str,
}

impl<'a> InvokeTarget<'a> {
    /// Empty fields are safe: `node_invoke` refuses a target without a node and a command.
    fn of(params: &'a Value) -> Self {
        InvokeTarget { node_id: crate::codec::js::string_field(params, &["nodeId"]).unwrap_or(""), command: crate::codec::js::string_field(params, &["command"]).unwrap_or("") }
    }

    /// `system.run` and `system.run.prepare` run a shell command on the node.
    fn runs_a_command(&self) -> bool {
        matches!(self.command, "system.run" | "system.run.prepare")
    }
}

/// The gateway queues at most this many frames after `connect` before `hello-ok`.
pub const MAX_PENDING_HANDSHAKE_FRAMES: u32 = 15;

/// Whether a JSON text nests deeper than `max`. Counting opening brackets (a vectorised
/// scan) settles almost every message; only a text with more brackets than `max` is walked.
pub fn too_deep(text: &[u8], max: usize) -> bool {
    let brackets = text.iter().filter(|&&b| b == b'{' || b == b'[').count();
    brackets > max && json_depth(text) > max
}

/// The deepest nesting of objects and arrays in a JSON text (strings skipped).
pub fn json_depth(text: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Forward the original bytes.
    Forward,
    /// Forward this text instead (a narrowed `connect`, a filtered roster).
    Rewrite {
        /// The new message text.
        text: Bytes,
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
    /// Do not deliver a gateway message; send the gateway `reply` instead (clawguard
    /// answering in a node's name).
    Answer {
        /// The frame for the gateway.
        reply: Bytes,
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
    /// Answer the client with `reply`; with `close`, then close the connection.
    Refuse {
        /// The synthetic `res`.
        reply: Bytes,
        /// Close code and reason after the reply.
        close: Option<(u16, String)>,
        /// The rule.
        rule: String,
        /// Why, in words.
        reason: String,
    },
    /// Discard silently.
    Drop {
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
    /// Close the connection.
    Close {
        /// Close code.
        code: u16,
        /// The rule.
        rule: String,
        /// Why (also the close reason).
        reason: String,
    },
}

/// A decision and whether it is enforced (`false`: dry-run, record only).
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// The action.
    pub action: Action,
    /// Enforced, or only recorded.
    pub enforce: bool,
}

/// Something worth logging that is not a verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A client's `sessions.usage` answer, read on the way, crossed a spend threshold.
    Spend(crate::state::spend::SpendEvent),
    /// A client's `sessions.usage` answer that asked for today's figures could not be counted
    /// (it is delivered as it is; the spend poll counts that spend).
    SpendUnread {
        /// Why.
        reason: String,
    },
    /// A client asked for a method the method table does not have (a sign of a gateway or
    /// client newer than the table; such a method needs `operator.admin`).
    UnknownMethod {
        /// The method.
        method: String,
    },
    /// `hello-ok.server.version` differs from the version the policy targets.
    VersionMismatch {
        /// What the gateway said.
        gateway: String,
        /// What the policy targets.
        expected: String,
    },
    /// A node declared more than its pin; the rest is pending an operator's approval.
    NodeUpgrade {
        /// The node's device id.
        device: String,
        /// What it declared beyond its pin.
        beyond: Surface,
    },
    /// A pairing answer through clawguard changed a node's pin (or cleared its request).
    PinFollowed {
        /// The node's device id.
        device: String,
        /// `approve` or `reject`.
        decision: &'static str,
        /// The identity that decided.
        by: String,
    },
    /// The handshake finished.
    Established {
        /// The identity.
        identity: String,
        /// How the identity was chosen.
        why: String,
        /// `client.id/mode`, or empty.
        client: String,
        /// The device id, or empty.
        device: String,
        /// The role.
        role: &'static str,
        /// Scopes the connect asked for (after narrowing to the ceiling).
        requested: Vec<&'static str>,
        /// Effective scopes.
        scopes: Vec<&'static str>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    AwaitingConnect,
    Connecting { connect_id: String },
    Established,
}

/// The access state of one connection.
#[derive(Debug)]
pub struct Access {
    peer: Peer,
    resolution: Resolution,
    phase: Phase,
    challenge_nonce: Option<String>,
    role: Role,
    /// Requested scopes after narrowing (an upper bound until `hello-ok`).
    requested: ScopeSet,
    granted: ScopeSet,
    pending: u32,
    /// The identity was chosen by the caller, not resolved from evidence.
    pinned: bool,
    /// `connect.params.client.id` / `.mode`, once seen.
    client: Option<(String, String)>,
    /// `connect.params.device.id`, once seen.
    device_id: Option<String>,
    /// The SHA-256 of the connect's credential, once seen (to resolve again after a reload).
    token_sha256: Option<String>,
    /// Ids of `config.get` requests not answered yet.
    pending_config_gets: Vec<String>,
    /// The `parsed` config of the last `config.get` answer on this connection.
    config_snapshot: Option<Value>,
    /// A node connection's pin state.
    node: Option<NodeSide>,
    /// Pairing decisions awaiting the gateway's answer, by request id.
    pair_decisions: Vec<(String, PairDecision)>,
    /// Session ownership state.
    sessions: SessionSide,
    /// `exec.approval.request`s awaiting their answer (which carries the approval id).
    approval_requests: Vec<(String, Value)>,
    /// Pending node pairing requests seen (their declared commands decide who may approve).
    pair_requests: crate::checks::grants::PendingRequests,
    /// Ids of `node.pair.list` requests not answered yet.
    pending_pair_lists: Vec<String>,
    /// Approval decisions forwarded and not answered yet: request id, approval id, decision.
    resolutions: Vec<(String, String, String)>,
    /// What the request being judged needs from its answer, kept if it is forwarded.
    staged: Option<Staged>,
    /// The method of the request just judged, when the audit log records it if allowed.
    audit_method: Option<String>,
    /// The method of the last request, when the method table does not have it (taken by the
    /// engine, which reports it).
    unknown_method: Option<String>,
    /// `chat.send` runs in flight on this connection (`spend.abort_running`).
    runs: crate::checks::spend_abort::RunTracker,
    /// `sessions.usage` requests whose answers are read for spend: request id, UTC day.
    usage_requests: Vec<(String, String)>,
}

/// The most `sessions.usage` answers one connection awaits for spend; past it the oldest is
/// not read (the poll still counts that spend).
const MAX_USAGE_REQUESTS: usize = 16;

/// What a request's answer must be read for, noted while it is judged.
#[derive(Debug)]
enum Staged {
    /// An approval request (its record) or lookup (`Null`): the answer carries approval ids.
    Approval(Value),
    /// An approval decision: approval id and decision, granted when the gateway accepts it.
    Resolution(String, String),
}

#[derive(Deserialize)]
struct ConnectParams {
    #[serde(default)]
    client: Option<ClientInfo>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    device: Option<DeviceProof>,
    #[serde(default)]
    auth: Option<ConnectAuth>,
}

#[derive(Deserialize)]
struct ClientInfo {
    #[serde(default)]
    id: String,
    #[serde(default)]
    mode: String,
    #[serde(default, rename = "displayName")]
    display_name: Option<String>,
    #[serde(default)]
    platform: Option<String>,
}

#[derive(Deserialize)]
struct DeviceProof {
    id: String,
    signature: String,
    #[serde(rename = "signedAt")]
    signed_at: u64,
    #[serde(default)]
    nonce: Option<String>,
}

#[derive(Deserialize)]
struct ConnectAuth {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "deviceToken")]
    device_token: Option<String>,
    #[serde(default, rename = "bootstrapToken")]
    bootstrap_token: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
struct HelloOk {
    #[serde(default)]
    server: Option<ServerInfo>,
    #[serde(default)]
    auth: Option<HelloAuth>,
}

#[derive(Deserialize)]
struct ServerInfo {
    #[serde(default)]
    version: Option<String>,
}

#[derive(Deserialize)]
struct HelloAuth {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

fn scope_set(names: &[String]) -> ScopeSet {
    names.iter().filter_map(|n| Scope::parse(n)).collect()
}

fn reply(id: &str, code: &str, message: &str, details: Value) -> Bytes {
    error_response(id, code, message, details)
}

impl Access {
    /// A new connection from `peer`, identified as far as the transport allows.
    pub fn new(env: &Env<'_>, peer: Peer) -> Self {
        let resolution = env.guard.identities.resolve(Evidence { peer: &peer, device_id: None, token_sha256: None });
        Access::with_resolution(peer, resolution)
    }

    fn with_resolution(peer: Peer, resolution: Resolution) -> Self {
        Access {
            peer,
            resolution,
            phase: Phase::AwaitingConnect,
            challenge_nonce: None,
            role: Role::Operator,
            requested: ScopeSet::EMPTY,
            granted: ScopeSet::EMPTY,
            pending: 0,
            pinned: false,
            client: None,
            device_id: None,
            token_sha256: None,
            pending_config_gets: Vec::new(),
            config_snapshot: None,
            node: None,
            pair_decisions: Vec::new(),
            sessions: SessionSide::default(),
            approval_requests: Vec::new(),
            pair_requests: Default::default(),
            pending_pair_lists: Vec::new(),
            resolutions: Vec::new(),
            staged: None,
            audit_method: None,
            unknown_method: None,
            runs: Default::default(),
            usage_requests: Vec::new(),
        }
    }

    /// The method of the last request forwarded, if the audit log records it as allowed
    /// (taken: the engine reports it once).
    pub fn take_audit_method(&mut self) -> Option<String> {
        self.audit_method.take()
    }

    /// The method of the last request if the method table does not have it (taken: reported once).
    pub fn take_unknown_method(&mut self) -> Option<String> {
        self.unknown_method.take()
    }

    /// Pins the identity (for `clawguard decide --identity`): later evidence does not change it.
    pub fn pin_identity(&mut self, resolution: Resolution) {
        self.resolution = resolution;
        self.pinned = true;
    }

    /// The identity as currently resolved.
    pub fn resolution(&self) -> &Resolution {
        &self.resolution
    }

    /// The role of the connection (as connected, or as `hello-ok` said).
    pub fn role(&self) -> Role {
        self.role
    }

    /// `connect.params.device.id`, once seen.
    pub fn device_id(&self) -> Option<&str> {
        self.device_id.as_deref()
    }

    /// `connect.params.client` id and mode, once seen.
    pub fn client(&self) -> Option<(&str, &str)> {
        self.client.as_ref().map(|(i, m)| (i.as_str(), m.as_str()))
    }

    /// Whether `hello-ok` has been seen.
    pub fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }

    /// The scopes requests are judged against: granted ∩ ceiling after `hello-ok`,
    /// requested ∩ ceiling before.
    pub fn effective_scopes(&self) -> ScopeSet {
        let base = if self.is_established() { self.granted } else { self.requested };
        base.intersect(self.resolution.identity.ceiling)
    }

    fn enforce(&self, env: &Env<'_>, rule_mode: Option<Mode>) -> bool {
        rule_mode.or(self.resolution.identity.mode).unwrap_or(env.guard.mode) == Mode::Enforce
    }

    fn judge(&self, env: &Env<'_>, action: Action) -> Judgement {
        Judgement { enforce: self.enforce(env, None), action }
    }

    /// The gateway refused this connection's `connect`: an authentication failure counts
    /// against the source IP and the claimed device id (`limits.auth_failures` within `limits.auth_failure_window_seconds`).
    fn count_connect_failure(&self, env: &Env<'_>, text: &[u8]) {
        #[derive(Deserialize)]
        struct Failed {
            error: Option<FailedError>,
        }
        #[derive(Deserialize)]
        struct FailedError {
            details: Option<FailedDetails>,
        }
        #[derive(Deserialize)]
        struct FailedDetails {
            code: Option<String>,
        }
        let code = serde_json::from_slice::<Failed>(text).ok().and_then(|f| f.error?.details?.code);
        if code.as_deref().is_some_and(crate::state::limits::is_auth_failure) {
            self.count_auth_failure(env);
        }
    }

    /// One failed connect of this peer (and its device), here and in the shared store (a
    /// failure the store cannot record is counted by the store; the local count still holds).
    fn count_auth_failure(&self, env: &Env<'_>) {
        env.guard.clients.auth_failure(self.peer.ip, self.device_id.as_deref());
        if let Some(store) = env.shared {
            let keys: Vec<String> = crate::state::limits::lockout_keys(self.peer.ip, self.device_id.as_deref()).collect();
            let (limit, window_ms, lockout_ms) = env.guard.clients.lockout_settings();
            if limit > 0 {
                let _ = store.auth_failure(&keys, limit, window_ms, lockout_ms);
            }
        }
    }

    /// A connect refused by a handshake limit or a lockout: the rate-limited reply, close 1008.
    fn limited_handshake(&self, env: &Env<'_>, id: &str, limited: &crate::state::limits::Limited) -> Judgement {
        let retry_ms = u64::try_from(limited.retry_after.as_millis()).unwrap_or(u64::MAX).max(1);
        let reason = match limited.limit {
            "auth-lockout" => format!("too many failed connects from this address or device: locked out for {retry_ms} ms"),
            limit => format!("rate limit {limit} exceeded for {}: retry in {retry_ms} ms", self.peer.ip),
        };
        let reply = crate::protocol::gateway::rate_limited_response(id, limited.limit, retry_ms, &format!("clawguard: {reason}"));
        let action = Action::Refuse { reply, close: Some((1008, "rate limit".into())), rule: format!("rate-limit:{}", limited.limit), reason };
        Judgement { action, enforce: !limited.shadow && self.enforce(env, None) }
    }

    /// A connect that cannot be checked because the shared store did not answer (`what`: the
    /// check): refused as retryable, close 1013 (fail closed).
    fn shared_unavailable(&self, env: &Env<'_>, id: &str, what: &str, e: &crate::state::shared::Unavailable) -> Judgement {
        let reason = format!("the shared {what} (state.backend = \"redis\") cannot be read, so this connect cannot be checked: {e}");
        let details = json!({ "code": "STATE_UNAVAILABLE", "source": "clawguard", "rule": "state:unavailable" });
        let reply = crate::protocol::gateway::retryable_error_response(id, "UNAVAILABLE", &format!("clawguard: {reason}"), details);
        let action = Action::Refuse { reply, close: Some((1013, "shared state unavailable".into())), rule: "state:unavailable".into(), reason };
        Judgement { action, enforce: self.enforce(env, None) }
    }

    /// A handshake refusal: the reply, then close 1008.
    fn refuse_handshake(&self, env: &Env<'_>, id: &str, code: &str, detail: &str, rule: &str, reason: String) -> Judgement {
        if crate::state::limits::is_auth_failure(detail) {
            self.count_auth_failure(env);
        }
        let details = json!({ "code": detail, "source": "clawguard", "rule": rule, "identity": self.resolution.identity.name });
        let close_reason = reason.clone();
        self.judge(env, Action::Refuse { reply: reply(id, code, &reason, details), close: Some((1008, close_reason)), rule: rule.into(), reason })
    }

    /// Judges one text message from the client.
    pub fn client_text(&mut self, env: &Env<'_>, text: &[u8]) -> Judgement {
        let max_depth = env.guard.max_json_depth;
        if too_deep(text, max_depth) {
            let reason = format!("message nesting is deeper than {max_depth} levels");
            let details = json!({ "code": "TOO_DEEP", "source": "clawguard", "rule": "limits" });
            let close = (self.phase == Phase::AwaitingConnect).then(|| (1008, reason.clone()));
            return self.judge(env, Action::Refuse { reply: reply("invalid", "INVALID_REQUEST", &reason, details), close, rule: "limits".into(), reason });
        }
        if self.phase == Phase::AwaitingConnect {
            return match parse_frame(text) {
                Ok(GatewayFrame::Req { id, method, params }) if method == "connect" => {
                    let id = id.to_string();
                    self.connect(env, &id, text, params.map(|p| p.get()))
                }
                Ok(GatewayFrame::Req { id, .. }) => {
                    let id = id.to_string();
                    self.refuse_handshake(env, &id, "INVALID_REQUEST", "INVALID_HANDSHAKE", "handshake", "invalid handshake: first request must be connect".into())
                }
                _ => self.refuse_handshake(env, "invalid", "INVALID_REQUEST", "INVALID_HANDSHAKE", "handshake", "invalid handshake: first request must be connect".into()),
            };
        }
        if matches!(self.phase, Phase::Connecting { .. }) {
            self.pending += 1;
            if self.pending > MAX_PENDING_HANDSHAKE_FRAMES {
                return self.judge(env, Action::Close { code: 1008, rule: "handshake".into(), reason: "too many pending handshake frames".into() });
            }
        }
        // The one model of the request: its envelope and params, the params read as the gateway
        // reads them. In one pass when the frame reads cleanly; otherwise the frame and then its
        // params are read on their own, which says what the frame is or what cannot be read.
        let (id, method, params) = match crate::protocol::gateway::read_request(text) {
            Some((id, method, params)) => {
                if let Some(refusal) = self.over_limit(env, &id, &method, text.len()) {
                    return refusal;
                }
                (id, method, params)
            }
            None => match parse_frame(text) {
                Ok(GatewayFrame::Req { id, method, params }) => {
                    if let Some(refusal) = self.over_limit(env, &id, &method, text.len()) {
                        return refusal;
                    }
                    match params.map(|p| crate::codec::js::read_json(&method, p.get())).transpose() {
                        // No params at all is what the gateway sees as `undefined`: checks that
                        // need a field find none and refuse (node.invoke, exec, grants) or need
                        // the most.
                        Ok(p) => (id, method, p.unwrap_or(Value::Null)),
                        Err(e) => return self.unreadable(env, &id, &method, e),
                    }
                }
                // Clients send only requests; anything else the gateway answers itself.
                Ok(_) => return self.judge(env, Action::Forward),
                Err(e) => {
                    let reason = format!("clawguard cannot evaluate this frame: {e}");
                    let details = json!({ "code": "UNPARSEABLE_FRAME", "source": "clawguard", "rule": "frame-syntax" });
                    return self.judge(env, Action::Refuse { reply: reply("invalid", "INVALID_REQUEST", &reason, details), close: None, rule: "frame-syntax".into(), reason });
                }
            },
        };
        let judgement = self.request(env, &id, &method, &params);
        if crate::protocol::scopes::lookup(&method).is_none() {
            self.unknown_method = Some(method.to_string());
        }
        self.audit_method = (judgement.action == Action::Forward && env.guard.records_method(&method)).then(|| method.to_string());
        // What the answer must be read for is kept only for a request that reaches the
        // gateway: a refused request's id could be reused by a later one.
        let staged = std::mem::take(&mut self.staged);
        if judgement.action == Action::Forward || !judgement.enforce {
            match staged {
                Some(Staged::Approval(request)) => self.approval_requests.push((id.to_string(), request)),
                Some(Staged::Resolution(approval, decision)) => self.resolutions.push((id.to_string(), approval, decision)),
                None => {}
            }
            self.note_spend_request(env, &id, &method, &params);
            if method == "config.get" {
                self.pending_config_gets.push(id.into_owned());
            } else if method == "node.pair.list" {
                self.pending_pair_lists.push(id.into_owned());
            }
        }
        judgement
    }

    /// A request over its method's size limit (`websocket.max_request_bytes`), refused.
    fn over_limit(&self, env: &Env<'_>, id: &str, method: &str, len: usize) -> Option<Judgement> {
        let limit = env.guard.request_limit(method);
        if len <= limit {
            return None;
        }
        let reason = format!("a {method} request of {len} bytes exceeds its limit of {limit} bytes");
        let details = json!({ "code": "TOO_LARGE", "limit": limit, "source": "clawguard", "rule": "limits" });
        Some(self.judge(env, Action::Refuse { reply: reply(id, "INVALID_REQUEST", &reason, details), close: None, rule: "limits".into(), reason }))
    }

    /// Notes what a forwarded request means for spend: a `chat.send` run to follow (to stop it
    /// when a budget trips, `spend.abort_running`), a `sessions.usage` answer to read.
    fn note_spend_request(&mut self, env: &Env<'_>, id: &str, method: &str, params: &Value) {
        match method {
            "chat.send" if env.guard.abort_running && self.role == Role::Operator => {
                if let Some(key) = params.get("sessionKey").and_then(Value::as_str) {
                    self.runs.on_send(id, key);
                }
            }
            "sessions.usage" if env.guard.spend().has_budgets() => {
                let today = &crate::state::spend::reset_time(env.now_ms)[..10];
                if let Some(day) = crate::protocol::usage::passive_report_day(params, today) {
                    // A client that never gets its answers cannot grow this list without bound.
                    if self.usage_requests.len() >= MAX_USAGE_REQUESTS {
                        self.usage_requests.remove(0);
                    }
                    self.usage_requests.push((id.to_string(), day.to_string()));
                }
            }
            _ => {}
        }
    }

    /// Whether this connection's verdicts are enforced (not dry-run).
    pub fn enforces(&self, env: &Env<'_>) -> bool {
        self.enforce(env, None)
    }

    /// The runs in flight this connection started (`spend.abort_running`).
    pub fn runs_mut(&mut self) -> &mut crate::checks::spend_abort::RunTracker {
        &mut self.runs
    }

    /// A client's `sessions.usage` answer that was asked for today's per-session figures:
    /// charged to the budgets like a poll's report (only its sessions count).
    fn usage_answer(&mut self, env: &Env<'_>, id: &str, ok: bool, payload: Option<&str>) -> Vec<Notice> {
        let Some(i) = self.usage_requests.iter().position(|(r, _)| r == id) else { return Vec::new() };
        let (_, day) = self.usage_requests.swap_remove(i);
        if !ok {
            return Vec::new();
        }
        // Unreadable: `Null`, which `from_client_answer` refuses, naming what it lacks.
        let value = payload.and_then(crate::codec::js::read_json_lossy).unwrap_or(Value::Null);
        let report = match crate::protocol::usage::UsageReport::from_client_answer(&value, &day) {
            Ok(report) => report,
            Err(e) => return vec![Notice::SpendUnread { reason: format!("a client's sessions.usage answer cannot be read for spend: {e}") }],
        };
        match crate::surfaces::spend::charge_report(env, &report) {
            Ok(events) => events.into_iter().map(Notice::Spend).collect(),
            Err(e) => vec![Notice::SpendUnread { reason: format!("a client's sessions.usage answer was not counted: the shared spend counters: {e}") }],
        }
    }

    /// A request whose params clawguard cannot read: refused, naming where and why.
    fn unreadable(&self, env: &Env<'_>, id: &str, method: &str, e: crate::codec::js::Unreadable) -> Judgement {
        let reason = format!("clawguard refuses a {method} request it cannot read: params.{} is unreadable: {}", e.path.trim_start_matches("(top)"), e.why).replace("params.:", "params:");
        let details = json!({ "code": "UNREADABLE_PARAMS", "path": format!("params.{}", e.path), "method": method, "source": "clawguard", "rule": "unreadable-input" });
        self.judge(env, Action::Refuse { reply: reply(id, "INVALID_REQUEST", &reason, details), close: None, rule: "unreadable-input".into(), reason })
    }

    /// Judges a binary message from the client (the gateway protocol is JSON text).
    pub fn client_binary(&mut self, env: &Env<'_>) -> Judgement {
        if self.phase == Phase::AwaitingConnect {
            return self.refuse_handshake(env, "invalid", "INVALID_REQUEST", "INVALID_HANDSHAKE", "handshake", "invalid handshake: first request must be connect".into());
        }
        let reason = "binary message: the gateway protocol is JSON text".to_string();
        let details = json!({ "code": "UNPARSEABLE_FRAME", "source": "clawguard", "rule": "frame-syntax" });
        self.judge(env, Action::Refuse { reply: reply("invalid", "INVALID_REQUEST", &reason, details), close: None, rule: "frame-syntax".into(), reason })
    }

    fn connect(&mut self, env: &Env<'_>, id: &str, text: &[u8], params_text: Option<&str>) -> Judgement {
        // Tracked even when refused, so that a dry-run keeps following the connection.
        self.phase = Phase::Connecting { connect_id: id.to_string() };
        let Some(nonce) = self.challenge_nonce.clone() else {
            return self.refuse_handshake(env, id, "INVALID_REQUEST", "CHALLENGE_MISSING", "handshake", "connect before connect.challenge".into());
        };
        let params: ConnectParams = match serde_json::from_str(params_text.unwrap_or("null")) {
            Ok(p) => p,
            Err(e) => return self.refuse_handshake(env, id, "INVALID_REQUEST", "INVALID_CONNECT_PARAMS", "handshake", format!("invalid connect params: {e}")),
        };
        let role_name = params.role.as_deref().unwrap_or("operator");
        let Some(role) = Role::parse(role_name) else {
            return self.refuse_handshake(env, id, "INVALID_REQUEST", "INVALID_ROLE", "handshake", "invalid role".into());
        };
        let credential = params.auth.as_ref().and_then(|a| {
            [&a.token, &a.device_token, &a.bootstrap_token, &a.password].into_iter().flatten().find(|t| !t.is_empty()).cloned()
        });
        let token_sha256 = credential.as_deref().map(credential_sha256);
        let device_id = params.device.as_ref().map(|d| d.id.as_str());
        self.device_id = device_id.map(str::to_string);
        if let Err(limited) = env.guard.clients.handshake(self.peer.ip, device_id) {
            return self.limited_handshake(env, id, &limited);
        }
        // A lockout earned through another replica holds here too (no lookup when the lockout
        // is off: `limits.auth_failures = 0`).
        if let Some(store) = env.shared.filter(|_| env.guard.clients.lockout_settings().0 > 0) {
            let keys: Vec<String> = crate::state::limits::lockout_keys(self.peer.ip, device_id).collect();
            match store.lockout_left_ms(&keys) {
                Ok(None) => {}
                Ok(Some(ms)) => {
                    let limited = crate::state::limits::Limited { limit: "auth-lockout", retry_after: std::time::Duration::from_millis(ms.max(1)), shadow: env.guard.clients.lockout_shadow() };
                    return self.limited_handshake(env, id, &limited);
                }
                Err(e) => return self.shared_unavailable(env, id, "auth-failure lockout", &e),
            }
        }
        self.client = params.client.as_ref().map(|c| (c.id.clone(), c.mode.clone()));
        self.token_sha256.clone_from(&token_sha256);
        if !self.pinned {
            self.resolution = env.guard.identities.resolve(Evidence { peer: &self.peer, device_id, token_sha256: token_sha256.as_deref() });
        }
        let identity = self.resolution.identity.clone();
        if !identity.allows_role(role) {
            let reason = format!("{} may not connect with role {}", self.resolution.why, role.name());
            return self.refuse_handshake(env, id, "FORBIDDEN", "ROLE_NOT_ALLOWED", "identity-role", reason);
        }
        if let Some(device) = &params.device {
            if device.nonce.as_deref() != Some(nonce.as_str()) {
                return self.refuse_handshake(env, id, "INVALID_REQUEST", "DEVICE_AUTH_NONCE_MISMATCH", "replay", "device nonce mismatch: the connect does not answer this connection's challenge".into());
            }
            if device.signed_at.abs_diff(env.now_ms) > SIGNATURE_SKEW_MS {
                return self.refuse_handshake(env, id, "INVALID_REQUEST", "DEVICE_AUTH_SIGNATURE_EXPIRED", "replay", "device signature expired: signedAt is more than 120 s from now".into());
            }
            let replayed = "device signature already used: a connect is accepted once";
            if !env.replay.fresh(&device.id, &device.signature, env.now_ms) {
                return self.refuse_handshake(env, id, "INVALID_REQUEST", "DEVICE_AUTH_REPLAYED", "replay", replayed.into());
            }
            // Once across every replica: the first to claim the signature lets it through.
            if let Some(store) = env.shared {
                match store.claim_once(&crate::state::shared::replay_key(&device.id, &device.signature), crate::state::replay::WINDOW_MS) {
                    Ok(true) => {}
                    Ok(false) => return self.refuse_handshake(env, id, "INVALID_REQUEST", "DEVICE_AUTH_REPLAYED", "replay", format!("{replayed} (seen by another replica)")),
                    Err(e) => return self.shared_unavailable(env, id, "replay memory", &e),
                }
            }
        }
        let requested_names = params.scopes.unwrap_or_default();
        let ceiling = identity.ceiling;
        let kept: Vec<&String> = requested_names.iter().filter(|n| Scope::parse(n).is_some_and(|s| ceiling.contains(s))).collect();
        self.role = role;
        self.requested = scope_set(&requested_names).intersect(ceiling);
        let refused: Vec<&str> = requested_names.iter().filter(|n| !kept.contains(n)).map(String::as_str).collect();
        if !refused.is_empty() && params.device.is_some() {
            // The device signature covers the scopes: they cannot be narrowed, only refused.
            let reason = format!("{} may not request {}: ask for at most {}", self.resolution.why, refused.join(", "), ceiling.names().join(", "));
            return self.refuse_handshake(env, id, "FORBIDDEN", "SCOPES_NOT_ALLOWED", "scope-ceiling", reason);
        }
        let mut removed = Surface::default();
        if role == Role::Node {
            // The node id is its device id (the gateway falls back to client.id).
            let node_id = device_id.map(str::to_string).or_else(|| params.client.as_ref().map(|c| c.id.clone())).unwrap_or_default();
            let raw = match params_text.map(|p| crate::codec::js::read_json("connect", p)).transpose() {
                // Unreachable in practice (ConnectParams did not parse without params); a node
                // declaring nothing is pinned to nothing.
                Ok(raw) => raw.unwrap_or(Value::Null),
                Err(e) => return self.refuse_handshake(env, id, "INVALID_REQUEST", "INVALID_CONNECT_PARAMS", "unreadable-input", e.to_string()),
            };
            let declared = declared_surface(&raw);
            let pinned = env.pins.preview(&node_id, &declared, &env.guard.nodes);
            let meta = params.client.as_ref().map(|c| (c.display_name.clone(), c.platform.clone())).unwrap_or_default();
            let had_pin = env.pins.pin_of(&node_id).is_some();
            self.node = Some(NodeSide::new(node_id, declared, meta, had_pin));
            removed = pinned.removed;
        }
        if refused.is_empty() && removed.is_empty() {
            return self.judge(env, Action::Forward);
        }
        let Ok(mut frame) = serde_json::from_slice::<Value>(text) else {
            return self.refuse_handshake(env, id, "INVALID_REQUEST", "INVALID_CONNECT_PARAMS", "handshake", "invalid connect frame".into());
        };
        let mut why = Vec::new();
        if !refused.is_empty() {
            frame["params"]["scopes"] = Value::Array(kept.iter().map(|s| Value::String((*s).clone())).collect());
            why.push(format!("removed {} from the connect of {}", refused.join(", "), self.resolution.why));
        }
        if !removed.is_empty() {
            strip_connect(&mut frame, &removed);
            let node = self.node.as_ref().map(|n| n.device_id.as_str()).unwrap_or("");
            let parts: Vec<String> = [("commands", &removed.commands), ("caps", &removed.caps), ("permissions", &removed.permissions)]
                .into_iter()
                .filter(|(_, set)| !set.is_empty())
                .map(|(what, set)| format!("{what} {}", set.iter().cloned().collect::<Vec<_>>().join(", ")))
                .collect();
            why.push(format!("pinned node {node}: removed {} beyond its approved surface", parts.join("; ")));
        }
        let rule = if refused.is_empty() { "node-pin" } else { "scope-ceiling" };
        self.judge(env, Action::Rewrite { text: encode_json(&frame), rule: rule.into(), reason: why.join("; ") })
    }

    fn request(&mut self, env: &Env<'_>, id: &str, method: &str, params: &Value) -> Judgement {
        if method == "connect" {
            let details = json!({ "code": "INVALID_HANDSHAKE", "source": "clawguard", "rule": "handshake" });
            let reason = "connect is only valid as the first request".to_string();
            return self.judge(env, Action::Refuse { reply: reply(id, "INVALID_REQUEST", &reason, details), close: None, rule: "handshake".into(), reason });
        }
        if env.audit_down && env.guard.records_method(method) {
            let reason = format!("the audit log cannot record now (audit.on_failure = \"block\") and an allowed {method} request must be recorded: refused until the log writes again");
            let details = json!({ "code": "AUDIT_UNAVAILABLE", "source": "clawguard", "rule": "audit" });
            return self.judge(env, Action::Refuse { reply: reply(id, "UNAVAILABLE", &reason, details), close: None, rule: "audit".into(), reason });
        }
        let identity = self.resolution.identity.clone();
        if let Some(why) = identity.method_refusal(method) {
            let reason = format!("method {method} is not allowed for identity {:?} ({why})", identity.name);
            let details = json!({ "code": "METHOD_NOT_ALLOWED", "method": method, "source": "clawguard", "rule": "identity-methods", "identity": identity.name });
            return self.judge(env, Action::Refuse { reply: reply(id, "FORBIDDEN", &reason, details), close: None, rule: "identity-methods".into(), reason });
        }
        if method == "tools.invoke" {
            // The handler reads `name ?? tool`, trimmed; without one it runs nothing.
            let tool = crate::codec::js::string_field(params, &["name", "tool"]).unwrap_or("");
            if let Some(why) = identity.tool_refusal(tool) {
                let reason = format!("tool {tool:?} is not allowed for identity {:?} ({why})", identity.name);
                let details = json!({ "code": "TOOL_NOT_ALLOWED", "tool": tool, "source": "clawguard", "rule": "identity-tools", "identity": identity.name });
                return self.judge(env, Action::Refuse { reply: reply(id, "FORBIDDEN", &reason, details), close: None, rule: "identity-tools".into(), reason });
            }
        }
        if let Err(refusal) = authorize(method, params, self.role, self.effective_scopes()) {
            let (reason, details) = match refusal {
                Refusal::Role { role } => (
                    format!("unauthorized role: {}", role.name()),
                    json!({ "code": "ROLE_NOT_ALLOWED", "source": "clawguard", "rule": "scope", "identity": identity.name }),
                ),
                Refusal::MissingScope { missing, required } => (
                    format!("missing scope: {missing}"),
                    json!({
                        "code": "MISSING_SCOPE",
                        "missingScope": missing.name(),
                        "requiredScopes": required.iter().map(|s| s.name()).collect::<Vec<_>>(),
                        "source": "clawguard",
                        "rule": "scope",
                        "identity": identity.name,
                    }),
                ),
            };
            return self.judge(env, Action::Refuse { reply: reply(id, "FORBIDDEN", &reason, details), close: None, rule: "scope".into(), reason });
        }
        if let Some(refusal) = self.grant_check(env, id, method, params) {
            return refusal;
        }
        if matches!(method, "config.set" | "config.patch" | "config.apply") {
            if let Some(refusal) = self.config_guard(env, id, method, params) {
                return refusal;
            }
        }
        // The target of a node.invoke, read once for the pin, exec and rate-limit checks.
        let invoke: Option<InvokeTarget<'_>> = (method == "node.invoke").then(|| InvokeTarget::of(params));
        if let (Some(target), Role::Operator) = (&invoke, self.role) {
            if let Some(refusal) = self.node_invoke(env, id, target) {
                return refusal;
            }
        }
        if let Some(refusal) = self.exec_check(env, id, method, params, invoke.as_ref()) {
            return refusal;
        }
        match env.guard.rules.for_request(method) {
            Decision::Forward => self.forward_request(env, id, method, params, invoke.as_ref()),
            Decision::Act { action, rule, reason, mode } => {
                let enforce = self.enforce(env, mode);
                let action = match action {
                    RuleAction::Drop => Action::Drop { rule, reason },
                    RuleAction::Close => Action::Close { code: 1008, rule, reason },
                    RuleAction::Deny => {
                        let details = json!({ "code": "POLICY_DENIED", "source": "clawguard", "rule": rule });
                        Action::Refuse { reply: reply(id, "FORBIDDEN", &reason, details), close: None, rule, reason }
                    }
                };
                Judgement { action, enforce }
            }
        }
    }

    /// A request that grants, mints, approves or rotates (`grants`), or a chat message that runs
    /// a command (`chat_commands`): refused when it would grant what the caller does not hold.
    fn grant_check(&mut self, env: &Env<'_>, id: &str, method: &str, params: &Value) -> Option<Judgement> {
        let caller = self.effective_scopes();
        let identity = &self.resolution.identity.name;
        let refuse = |code: &str, reason: String, details: Value| Some(self.judge(env, Action::Refuse { reply: reply(id, code, &reason, details), close: None, rule: "grant".into(), reason }));
        if let Some(why) = crate::checks::grants::refusal(method, params, caller, &self.pair_requests) {
            return refuse("FORBIDDEN", why, json!({ "code": "GRANT_EXCEEDS_CALLER", "method": method, "source": "clawguard", "rule": "grant", "identity": identity }));
        }
        let (shown, requirement, command) = match crate::checks::chat_commands::requirement_of(method, params) {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(why) => return refuse("INVALID_REQUEST", why, json!({ "code": "UNREADABLE_PARAMS", "path": "params.message", "source": "clawguard", "rule": "grant" })),
        };
        if let Some(missing) = requirement.scopes.iter().find(|s| !crate::protocol::scopes::satisfies(caller, **s)) {
            let reason = format!("the chat command {shown} is {} and needs {}, which {identity:?} does not hold", requirement.like, missing.name());
            return refuse("FORBIDDEN", reason, json!({ "code": "MISSING_SCOPE", "missingScope": missing.name(), "command": shown, "source": "clawguard", "rule": "grant", "identity": identity }));
        }
        let command = command?;
        match command.name.as_str() {
            "approve" => {
                // No decision is not a deny: the approval memory still judges it.
                let (approval, decision) = (command.args.first()?, command.args.get(1).map(|d| d.to_lowercase()).unwrap_or_default());
                if decision.starts_with("deny") || decision == "reject" {
                    return None;
                }
                let why = env.approvals.resolve_refusal(approval, env.now_ms)?;
                refuse("FORBIDDEN", format!("the chat command /approve: {why}"), json!({ "code": "EXEC_APPROVAL_DENIED", "id": approval, "source": "clawguard", "rule": "grant" }))
            }
            "bash" => {
                let r = crate::checks::exec_guard::shell_refusal(env.guard.exec(), Some(&command.rest), false, "the chat command /bash")?;
                let reason = r.reason;
                Some(Judgement { action: Action::Refuse { reply: reply(id, "FORBIDDEN", &reason, r.details), close: None, rule: "exec-policy".into(), reason }, enforce: r.enforce && self.enforce(env, None) })
            }
            _ => None,
        }
    }

    /// An operator's `node.invoke`: the command must be within the target node's pin and not
    /// denied by policy.
    fn node_invoke(&self, env: &Env<'_>, id: &str, target: &InvokeTarget<'_>) -> Option<Judgement> {
        let (node_id, command) = (target.node_id, target.command);
        let (rule, reason) = if node_id.is_empty() || command.is_empty() {
            ("node-pin", "node.invoke without a nodeId and a command cannot be evaluated".to_string())
        } else {
            invocation_refusal(env.pins, &env.guard.nodes, node_id, command)?
        };
        let details = json!({ "code": "NODE_COMMAND_NOT_APPROVED", "nodeId": node_id, "command": command, "source": "clawguard", "rule": rule });
        Some(self.judge(env, Action::Refuse { reply: reply(id, "FORBIDDEN", &reason, details), close: None, rule: rule.into(), reason }))
    }

    /// The exec policy's refusal of a request that would run a command, or approve one.
    fn exec_check(&mut self, env: &Env<'_>, id: &str, method: &str, value: &Value, invoke: Option<&InvokeTarget<'_>>) -> Option<Judgement> {
        use crate::checks::exec_guard::{approvals_document_refusals, shell_refusal, system_run_refusal};
        if matches!(method, "exec.approval.get" | "exec.approval.list" | "approval.get") {
            // Their answers carry approval records made before this connection saw them.
            self.staged = Some(Staged::Approval(Value::Null));
            return None;
        }
        let relevant = matches!(method, "node.invoke" | "tools.invoke" | "exec.approval.request" | "exec.approval.resolve" | "approval.resolve" | "exec.approvals.set" | "exec.approvals.node.set");
        if !relevant {
            return None;
        }
        if invoke.is_some_and(|t| !t.runs_a_command()) {
            // Most invocations are not commands: no need for the whole params.
            return None;
        }
        let refuse = |reason: String, details: Value, enforce: bool| {
            let judgement = Judgement { action: Action::Refuse { reply: reply(id, "FORBIDDEN", &reason, details), close: None, rule: "exec-policy".into(), reason }, enforce: enforce && self.enforce(env, None) };
            Some(judgement)
        };
        let exec = env.guard.exec();
        match method {
            "node.invoke" => {
                // `invoke` is always set for node.invoke (and holds system.run* here); empty names
                // bind no approval and judge no command, so they are refused below.
                let (node, command) = invoke.map(|t| (t.node_id, t.command)).unwrap_or_default();
                let run = &value["params"];
                // Approval fields from a client count only when they are bound to an approval
                // clawguard saw granted for exactly this node, argv, cwd and env.
                let approved = crate::checks::exec::claims_approval(run);
                if approved {
                    if let Err(why) = env.approvals.bind(crate::codec::js::string_field(run, &["runId"]), node, run, env.now_ms) {
                        let reason = format!("{command} claims an approval clawguard cannot bind: {why}");
                        return refuse(reason, json!({ "code": "EXEC_APPROVAL_UNBOUND", "source": "clawguard", "rule": "exec-policy" }), true);
                    }
                }
                let r = system_run_refusal(exec, run, command, approved)?;
                refuse(r.reason, r.details, r.enforce)
            }
            "tools.invoke" => {
                // The handler reads `name` (HTTP: `name ?? tool`), trimmed.
                if crate::codec::js::string_field(value, &["name", "tool"]) != Some("exec") {
                    return None;
                }
                let r = shell_refusal(exec, value["args"]["command"].as_str(), false, "the exec tool")?;
                refuse(r.reason, r.details, r.enforce)
            }
            "exec.approval.request" => {
                if let Some(r) = crate::checks::exec_guard::approval_request_refusal(exec, value) {
                    return refuse(r.reason, r.details, r.enforce);
                }
                // Remembered when the gateway accepts it, under the id it answers with: a
                // client-chosen id must not overwrite another approval's record.
                self.staged = Some(Staged::Approval(value.clone()));
                None
            }
            "exec.approval.resolve" | "approval.resolve" => {
                // Anything but an explicit deny may approve; without a kind the id may be an
                // exec approval's.
                // An absent or unreadable decision is not a deny, and an absent id is an approval
                // clawguard has not seen: both are refused by the approval memory.
                let decision = crate::codec::js::string_field(value, &["decision"]).unwrap_or("").to_ascii_lowercase();
                let exec_kind = method == "exec.approval.resolve" || crate::codec::js::string_field(value, &["kind"]).is_none_or(|k| k == "exec");
                if !exec_kind {
                    return None;
                }
                let approval = crate::codec::js::string_field(value, &["id"]).unwrap_or("");
                if decision != "deny" {
                    if let Some(reason) = env.approvals.resolve_refusal(approval, env.now_ms) {
                        return refuse(reason, json!({ "code": "EXEC_APPROVAL_DENIED", "id": approval, "source": "clawguard", "rule": "exec-policy" }), true);
                    }
                }
                // The decision binds once the gateway accepts it.
                self.staged = Some(Staged::Resolution(approval.to_string(), decision));
                None
            }
            _ => {
                let reasons = approvals_document_refusals(value);
                if reasons.is_empty() {
                    return None;
                }
                let reason = format!("{method} would approve everything: {}", reasons.join("; "));
                refuse(reason, json!({ "code": "EXEC_APPROVALS_TOO_BROAD", "entries": reasons, "source": "clawguard", "rule": "exec-policy" }), true)
            }
        }
    }

    /// A request every other check let through: session ownership, then bookkeeping for the
    /// answer (pairing decisions to follow).
    fn forward_request(&mut self, env: &Env<'_>, id: &str, method: &str, params: &Value, invoke: Option<&InvokeTarget<'_>>) -> Judgement {
        let identity = self.resolution.identity.clone();
        let scope = &identity.sessions;
        let session_checked = self.role == Role::Operator && (!scope.is_unrestricted() || env.guard.sessions.serialize_sends || crate::protocol::sessions::creates_sessions(method));
        if session_checked && (!crate::protocol::sessions::session_fields(method).is_empty() || crate::protocol::sessions::is_roster(method)) {
            if let Err(r) = self.sessions.check_request(env, &identity.name, scope, id, method, params) {
                let reply = if r.retryable { retryable_error_response(id, r.code, &r.reason, r.details) } else { reply(id, r.code, &r.reason, r.details) };
                return self.judge(env, Action::Refuse { reply, close: None, rule: r.rule.into(), reason: r.reason });
            }
        }
        if let Some(limited) = self.rate_limit(env, id, method, params, invoke).or_else(|| self.spend_limit(env, id, method)) {
            if matches!(limited.action, Action::Refuse { .. }) && limited.enforce {
                self.sessions.forget(env, id);
            }
            return limited;
        }
        if env.guard.nodes.follow_gateway_approvals {
            let scopes = self.effective_scopes().closure();
            let decision = match method {
                "node.pair.approve" if scopes.contains(Scope::Pairing) && scopes.contains(Scope::Admin) => Some(PairDecision::Approve),
                "node.pair.reject" => Some(PairDecision::Reject),
                _ => None,
            };
            if let Some(d) = decision {
                self.pair_decisions.push((id.to_string(), d));
            }
        }
        self.judge(env, Action::Forward)
    }

    /// The rate limits that apply to a request: inference per session, `node.invoke` per node
    /// and per identity, `system.run` per node.
    fn rate_limit(&self, env: &Env<'_>, id: &str, method: &str, params: &Value, invoke: Option<&InvokeTarget<'_>>) -> Option<Judgement> {
        use crate::state::limits::Limit;
        let identity = &self.resolution.identity;
        let profile = identity.limits.as_deref();
        let mut checks: Vec<(Limit, std::borrow::Cow<'_, str>)> = Vec::new();
        if env.guard.is_inference(method) {
            // Unreadable session fields were refused by the ownership check or, for an
            // unrestricted identity, are counted against the identity.
            let (keys, agent) = crate::protocol::sessions::named_keys(method, params).unwrap_or_default();
            let key = keys.first().map(|k| self.sessions.defaults().canonical(k, agent.as_deref())).unwrap_or_else(|| format!("identity:{}", identity.name));
            checks.push((Limit::SessionInference, key.into()));
        }
        if let Some(target) = invoke {
            checks.push((Limit::NodeInvoke, target.node_id.into()));
            checks.push((Limit::IdentityNodeInvoke, identity.name.as_str().into()));
            if target.runs_a_command() {
                checks.push((Limit::SystemRun, target.node_id.into()));
            }
        }
        for (limit, key) in checks {
            if let Err(limited) = env.guard.limits.check_shared(env.shared, limit, profile, &key) {
                let retry_ms = u64::try_from(limited.retry_after.as_millis()).unwrap_or(u64::MAX).max(1);
                let reason = format!("rate limit {} exceeded for {key}: retry in {retry_ms} ms", limited.limit);
                let reply = crate::protocol::gateway::rate_limited_response(id, limited.limit, retry_ms, &format!("clawguard: {reason}"));
                let action = Action::Refuse { reply, close: None, rule: format!("rate-limit:{}", limited.limit), reason };
                return Some(Judgement { action, enforce: !limited.shadow && self.enforce(env, None) });
            }
        }
        None
    }

    /// Spend budgets (`[spend]`): a run-starting request (`limits.inference_methods`) of an
    /// identity past a budget that covers it is refused with `BUDGET_EXCEEDED` until the
    /// budget's window resets; past only a shadow budget it is recorded as would-refuse. While
    /// spend is unknown (no fresh usage report), it is refused with `SPEND_UNKNOWN`.
    fn spend_limit(&self, env: &Env<'_>, id: &str, method: &str) -> Option<Judgement> {
        if !env.guard.is_inference(method) {
            return None;
        }
        let check = env.guard.spend().check(&self.resolution.identity.name, env.now_ms);
        if let Some(reason) = check.unmeasured {
            let details = serde_json::json!({ "code": "SPEND_UNKNOWN", "source": "clawguard", "rule": "spend:unmeasured" });
            let reply = crate::protocol::gateway::retryable_error_response(id, "UNAVAILABLE", &format!("clawguard: {reason}"), details);
            let action = Action::Refuse { reply, close: None, rule: "spend:unmeasured".into(), reason };
            return Some(Judgement { action, enforce: self.enforce(env, None) });
        }
        let (exceeded, enforce) = match (check.refused, check.shadowed.into_iter().next()) {
            (Some(e), _) => (e, self.enforce(env, None)),
            (None, Some(e)) => (e, false),
            (None, None) => return None,
        };
        let reason = exceeded.reason();
        let retry_ms = exceeded.resets_at_ms.saturating_sub(env.now_ms).max(1);
        let reply = crate::protocol::gateway::budget_exceeded_response(id, &exceeded.budget, &crate::state::spend::reset_time(exceeded.resets_at_ms), retry_ms, &format!("clawguard: {reason}"));
        let action = Action::Refuse { reply, close: None, rule: format!("spend:{}", exceeded.budget), reason };
        Some(Judgement { action, enforce })
    }

    /// An operator request arriving on another surface (HTTP): judged by the same checks as a
    /// WebSocket request, for a connection holding the identity's whole ceiling (the gateway
    /// gives a shared-secret bearer every operator scope, so the ceiling is all that bounds it).
    /// Its session defaults are the gateway's (agent `main`, main key `main`). The `bool` says
    /// whether the request lists sessions, an answer that would have to be filtered for the identity.
    pub fn judge_operator_request(env: &Env<'_>, peer: Peer, resolution: Resolution, method: &str, params: &Value) -> (Judgement, bool) {
        let ceiling = resolution.identity.ceiling;
        let mut access = Access::with_resolution(peer, resolution);
        access.pinned = true;
        access.phase = Phase::Established;
        access.role = Role::Operator;
        access.requested = ceiling;
        access.granted = ceiling;
        let judgement = access.request(env, "http", method, params);
        let roster = access.sessions.awaits_roster();
        // A run started for serialisation has no answer to end it on HTTP: it ends now.
        access.sessions.forget(env, "http");
        (judgement, roster)
    }

    /// Re-judges the connection under a new policy version (a reload): the identity of the same
    /// name takes over, so its lists, ceiling and limits apply from the next message. A
    /// connection whose identity is gone, whose role that identity no longer allows, or whose
    /// granted scopes exceed its new ceiling is closed with 1008 ("policy changed").
    pub fn rebind(&mut self, env: &Env<'_>) -> Option<Judgement> {
        let name = self.resolution.identity.name.clone();
        // The same evidence resolved under the new policy: a rotated token or a narrowed match
        // makes an open connection someone else (or no one), and a connection is not re-labelled.
        let now = (!self.pinned).then(|| env.guard.identities.resolve(Evidence { peer: &self.peer, device_id: self.device_id.as_deref(), token_sha256: self.token_sha256.as_deref() }));
        let reason = match env.guard.identities.by_name(&name) {
            None => format!("policy changed: identity {name:?} is no longer in the policy"),
            Some(_) if self.is_established() && now.as_ref().is_some_and(|r| r.identity.name != name) => {
                let other = now.as_ref().map(|r| r.identity.name.as_str()).unwrap_or_default();
                format!("policy changed: this connection's credentials no longer identify it as {name:?} (now {other:?})")
            }
            Some(id) if !self.is_established() => {
                // Before `connect` only the address is known; the handshake resolves again.
                self.resolution = now.unwrap_or(Resolution { identity: id, why: self.resolution.why.clone() });
                return None;
            }
            Some(id) if self.is_established() && !id.allows_role(self.role) => format!("policy changed: identity {name:?} may no longer connect as {}", self.role.name()),
            Some(id) if self.is_established() && !self.granted.minus(id.ceiling).is_empty() => {
                format!("policy changed: this connection holds {} beyond identity {name:?}'s ceiling", self.granted.minus(id.ceiling).names().join(", "))
            }
            Some(id) => {
                self.resolution.identity = id;
                return None;
            }
        };
        Some(self.judge(env, Action::Close { code: 1008, rule: "policy-reload".into(), reason }))
    }

    /// Closes a node's connection whose pin was revoked since it connected (call when the
    /// store changes).
    pub fn recheck(&self, env: &Env<'_>) -> Option<Judgement> {
        let node = self.node.as_ref().filter(|_| self.is_established())?;
        let reason = format!("node {} was revoked by an operator", node.device_id);
        node.revoked(env.pins).then(|| self.judge(env, Action::Close { code: 1008, rule: "node-pin".into(), reason }))
    }

    /// The config guard's refusal of a config write, if it touches a protected path or
    /// cannot be judged. Applies to every identity, admin included.
    fn config_guard(&self, env: &Env<'_>, id: &str, method: &str, params: &Value) -> Option<Judgement> {
        let (reason, details) = match env.guard.config_guard.check(method, params, self.config_snapshot.as_ref()) {
            Ok(None) => return None,
            Ok(Some(t)) => (
                format!("{method} changes {}, which is protected ({}) and cannot be changed through clawguard", t.path, t.protected),
                json!({ "code": "CONFIG_PATH_PROTECTED", "path": t.path, "protected": t.protected, "source": "clawguard", "rule": "config-guard" }),
            ),
            Err(e) => (e.to_string(), json!({ "code": "CONFIG_UNJUDGEABLE", "source": "clawguard", "rule": "config-guard" })),
        };
        Some(self.judge(env, Action::Refuse { reply: reply(id, "FORBIDDEN", &reason, details), close: None, rule: "config-guard".into(), reason }))
    }

    /// Judges one text message from the gateway, and notes what it tells about the connection.
    pub fn gateway_text(&mut self, env: &Env<'_>, text: &[u8]) -> (Judgement, Vec<Notice>) {
        let forward = Judgement { action: Action::Forward, enforce: true };
        let operator_sessions = self.role == Role::Operator && (!self.resolution.identity.sessions.is_unrestricted() || env.guard.sessions.serialize_sends);
        let needs_parse = !self.is_established()
            || env.guard.rules.inspects_gateway()
            || !self.pending_config_gets.is_empty()
            || self.node.is_some()
            || !self.pair_decisions.is_empty()
            || operator_sessions
            || self.sessions.awaits_answers()
            || !self.approval_requests.is_empty()
            || !self.pending_pair_lists.is_empty()
            || !self.resolutions.is_empty()
            || self.runs.awaits_answers()
            || self.runs.has_runs()
            || !self.usage_requests.is_empty()
            || (self.role == Role::Operator && self.effective_scopes().closure().contains(Scope::Approvals))
            || (self.role == Role::Operator && self.effective_scopes().contains(Scope::Pairing));
        if !needs_parse {
            return (forward, Vec::new());
        }
        // Most of the gateway's messages answer requests nothing here follows: such an answer is
        // forwarded with only its id read (no frame rule reads answers; an established
        // connection has no handshake answer to wait for).
        if self.is_established() && !env.guard.rules.inspects_gateway() {
            if let Some(id) = crate::protocol::gateway::answer_id(text) {
                if !self.follows_answer(id) {
                    return (forward, Vec::new());
                }
            }
        }
        match parse_frame(text) {
            Ok(GatewayFrame::Event { event, payload }) if event == "connect.challenge" && self.phase == Phase::AwaitingConnect => {
                #[derive(Deserialize)]
                struct Challenge {
                    nonce: String,
                }
                self.challenge_nonce = payload.and_then(|p| serde_json::from_str::<Challenge>(p.get()).ok()).map(|c| c.nonce);
                (forward, Vec::new())
            }
            Ok(GatewayFrame::Event { event, payload }) => match env.guard.rules.for_event(&event) {
                Decision::Forward => (self.gateway_event(env, &event, payload.map(|p| p.get())), Vec::new()),
                Decision::Act { action, rule, reason, mode } => {
                    let enforce = self.enforce(env, mode);
                    let action = match action {
                        RuleAction::Close => Action::Close { code: 1008, rule, reason },
                        _ => Action::Drop { rule, reason },
                    };
                    (Judgement { action, enforce }, Vec::new())
                }
            },
            Ok(GatewayFrame::Res { id, ok, payload }) => {
                if !ok && matches!(&self.phase, Phase::Connecting { connect_id } if *connect_id == id) {
                    self.count_connect_failure(env, text);
                }
                let payload = payload.map(|p| p.get());
                let spent = self.usage_answer(env, &id, ok, payload);
                let (judgement, mut notices) = self.gateway_answer(env, &id, ok, payload);
                notices.extend(spent);
                (judgement, notices)
            }
            Ok(GatewayFrame::Req { .. }) => (forward, Vec::new()),
            Err(_) if env.guard.rules.inspects_gateway() => (
                Judgement { action: Action::Drop { rule: "frame-syntax".into(), reason: "gateway message is not a gateway frame and cannot be evaluated".into() }, enforce: true },
                Vec::new(),
            ),
            Err(_) => (forward, Vec::new()),
        }
    }

    /// Whether anything on this connection reads the answer to request `id` (every list below
    /// is one that [`Access::gateway_answer`] or [`Access::usage_answer`] looks the id up in).
    fn follows_answer(&self, id: &str) -> bool {
        self.node.as_ref().is_some_and(|n| n.follows(id))
            || self.runs.follows(id)
            || self.sessions.follows(id)
            || self.usage_requests.iter().any(|(r, _)| r == id)
            || self.resolutions.iter().any(|(r, _, _)| r == id)
            || self.pending_pair_lists.iter().any(|r| r == id)
            || self.approval_requests.iter().any(|(r, _)| r == id)
            || self.pair_decisions.iter().any(|(p, _)| p == id)
            || self.pending_config_gets.iter().any(|p| p == id)
    }

    /// An event the frame rules let through: node invocations outside the pin are answered
    /// in the node's name; events about foreign sessions are not delivered.
    fn gateway_event(&mut self, env: &Env<'_>, event: &str, payload: Option<&str>) -> Judgement {
        let forward = Judgement { action: Action::Forward, enforce: true };
        if let Some(node) = self.node.as_mut() {
            if event != "node.invoke.request" {
                return forward;
            }
            // Unreadable: no id or command, which is refused in the node's name.
            let payload: Value = payload.and_then(crate::codec::js::read_json_lossy).unwrap_or(Value::Null);
            return match node.on_invoke_request(env.pins, &env.guard.nodes, env.guard.exec(), &payload) {
                // In dry-run the request is delivered and recorded as would-deny.
                Some((reply, rule, reason)) => Judgement { action: Action::Answer { reply, rule: rule.into(), reason }, enforce: self.enforce(env, None) },
                None => forward,
            };
        }
        if self.role != Role::Operator || crate::protocol::sessions::is_sessionless(event) {
            return forward;
        }
        let Some(text) = payload else { return forward };
        let restricted = !self.resolution.identity.sessions.is_unrestricted();
        let Some(value) = crate::codec::js::read_json_lossy(text) else {
            if !restricted {
                return forward;
            }
            let reason = format!("{event} event payload cannot be read: it cannot be shown to concern a session of this identity");
            return self.judge(env, Action::Drop { rule: "session-owner".into(), reason });
        };
        if event == "node.pair.requested" {
            self.pair_requests.learn(&value);
        }
        if event == "chat" && self.runs.has_runs() {
            self.runs.on_chat_event(&value);
        }
        if event == "exec.approval.requested" {
            if let Some(approval) = value["id"].as_str() {
                env.approvals.remember(approval, env.guard.exec(), &value["request"], env.now_ms);
            }
        }
        if event == "exec.approval.resolved" {
            if let (Some(approval), Some(decision)) = (value["id"].as_str(), value["decision"].as_str()) {
                env.approvals.resolved(approval, decision);
            }
        }
        let identity = self.resolution.identity.clone();
        match self.sessions.on_event(env, &identity.sessions, event, &value) {
            Some(reason) => self.judge(env, Action::Drop { rule: "session-owner".into(), reason }),
            None => forward,
        }
    }

    /// An answer from the gateway: clawguard's own node results are swallowed, pairing
    /// answers update pins, rosters are filtered, and the handshake completes.
    fn gateway_answer(&mut self, env: &Env<'_>, id: &str, ok: bool, payload: Option<&str>) -> (Judgement, Vec<Notice>) {
        let forward = Judgement { action: Action::Forward, enforce: true };
        if let Some(node) = self.node.as_mut() {
            if node.swallows(id) {
                let reason = "the gateway's answer to clawguard's own node.invoke.result".to_string();
                return (Judgement { action: Action::Drop { rule: "node-pin".into(), reason }, enforce: true }, Vec::new());
            }
        }
        if self.runs.awaits_answers() {
            // Unreadable: `Null` (see `RunTracker::on_answer`: no run followed, none stopped).
            let value = payload.and_then(crate::codec::js::read_json_lossy).unwrap_or(Value::Null);
            if let crate::checks::spend_abort::Answered::OwnAbort { run, aborted } = self.runs.on_answer(id, ok, &value) {
                let outcome = if aborted { "the run was stopped" } else { "no run was stopped (it had ended)" };
                let reason = format!("the gateway's answer to clawguard's chat.abort of run {:?} on session {:?}: {outcome}", run.run_id, run.session_key);
                return (Judgement { action: Action::Drop { rule: "spend-abort".into(), reason }, enforce: true }, Vec::new());
            }
        }
        if let Some(i) = self.resolutions.iter().position(|(r, _, _)| r == id) {
            let (_, approval, decision) = self.resolutions.swap_remove(i);
            if ok {
                env.approvals.resolved(&approval, &decision);
            }
            return (forward, Vec::new());
        }
        if let Some(i) = self.pending_pair_lists.iter().position(|r| r == id) {
            self.pending_pair_lists.swap_remove(i);
            if let Some(value) = payload.filter(|_| ok).and_then(crate::codec::js::read_json_lossy) {
                self.pair_requests.learn(&value);
            }
        }
        if let Some(i) = self.approval_requests.iter().position(|(r, _)| r == id) {
            let (_, request) = self.approval_requests.swap_remove(i);
            // An unreadable answer remembers nothing: approving those ids is then refused.
            let answered: Value = payload.filter(|_| ok).and_then(crate::codec::js::read_json_lossy).unwrap_or(Value::Null);
            if request.is_null() {
                crate::checks::exec_guard::remember_records(env.approvals, env.guard.exec(), &answered, env.now_ms);
            } else if let Some(approval) = answered["id"].as_str() {
                env.approvals.remember(approval, env.guard.exec(), &request, env.now_ms);
            }
            return (forward, Vec::new());
        }
        if let Some(i) = self.pair_decisions.iter().position(|(p, _)| p == id) {
            let (_, decision) = self.pair_decisions.swap_remove(i);
            // An unreadable pairing answer changes no pin.
            let value: Value = payload.filter(|_| ok).and_then(crate::codec::js::read_json_lossy).unwrap_or(Value::Null);
            let by = format!("{} via node.pair.{}", self.resolution.identity.name, if decision == PairDecision::Approve { "approve" } else { "reject" });
            let mut notices = Vec::new();
            if let Some(op) = pair_outcome(&decision, &value, &by, env.now_ms) {
                let device = match &op {
                    crate::state::nodes::PinOp::Approve { device_id, .. }
                    | crate::state::nodes::PinOp::Reject { device_id }
                    | crate::state::nodes::PinOp::Revoke { device_id, .. }
                    | crate::state::nodes::PinOp::Connect { device_id, .. } => device_id.clone(),
                };
                if env.pins.apply(op, &env.guard.nodes) {
                    let decision = if decision == PairDecision::Approve { "approve" } else { "reject" };
                    notices.push(Notice::PinFollowed { device, decision, by: self.resolution.identity.name.clone() });
                }
            }
            return (forward, notices);
        }
        if self.sessions.awaits_answers() {
            let identity = self.resolution.identity.clone();
            match self.sessions.on_answer(env, &identity.sessions, id, ok, payload) {
                Answer::Deliver => {}
                Answer::Filtered(payload, removed) => {
                    let frame = json!({ "type": "res", "id": id, "ok": ok, "payload": payload });
                    let reason = format!("removed {removed} sessions of other identities from the answer");
                    return (self.judge(env, Action::Rewrite { text: encode_json(&frame), rule: "session-owner".into(), reason }), Vec::new());
                }
                Answer::Unreadable => {
                    let reason = "the gateway's roster answer is not JSON, so clawguard cannot remove other identities' sessions from it".to_string();
                    let details = json!({ "code": "UNREADABLE_ANSWER", "source": "clawguard", "rule": "session-owner" });
                    let text = error_response(id, "UNAVAILABLE", &reason, details);
                    return (self.judge(env, Action::Rewrite { text, rule: "session-owner".into(), reason }), Vec::new());
                }
            }
        }
        if self.pending_config_gets.iter().any(|p| p == id) {
            self.pending_config_gets.retain(|p| p != id);
            if ok {
                #[derive(Deserialize)]
                struct ConfigGet {
                    parsed: Value,
                }
                self.config_snapshot = payload.and_then(|p| serde_json::from_str::<ConfigGet>(p).ok()).map(|c| c.parsed);
            }
            return (forward, Vec::new());
        }
        let Phase::Connecting { connect_id } = &self.phase else { return (forward, Vec::new()) };
        if connect_id != id {
            return (forward, Vec::new());
        }
        // An unreadable answer is not a hello-ok: the handshake is treated as refused.
        let hello_value: Value = payload.filter(|_| ok).and_then(crate::codec::js::read_json_lossy).unwrap_or(Value::Null);
        if hello_value["type"] != "hello-ok" {
            // The gateway refused the connect; it closes the connection itself.
            self.phase = Phase::AwaitingConnect;
            self.node = None;
            return (forward, Vec::new());
        }
        let hello: Option<HelloOk> = serde_json::from_value(hello_value.clone()).ok();
        let auth = hello.as_ref().and_then(|h| h.auth.as_ref());
        self.granted = auth.map(|a| scope_set(&a.scopes)).unwrap_or_default();
        if let Some(role) = auth.and_then(|a| a.role.as_deref()).and_then(Role::parse) {
            self.role = role;
        }
        self.phase = Phase::Established;
        self.sessions.set_defaults(&hello_value);
        let mut notices = Vec::new();
        if let Some(node) = self.node.as_mut() {
            let beyond = node.on_hello(env.pins, &env.guard.nodes, env.now_ms);
            if !beyond.is_empty() {
                notices.push(Notice::NodeUpgrade { device: node.device_id.clone(), beyond });
            }
        }
        let version = hello.and_then(|h| h.server).and_then(|s| s.version);
        let expected = &env.guard.gateway_version;
        if let Some(v) = version.filter(|v| v != expected) {
            notices.push(Notice::VersionMismatch { gateway: v, expected: expected.clone() });
        }
        // Whatever the version, the connection is established (and is recorded as such).
        notices.push(Notice::Established {
            identity: self.resolution.identity.name.clone(),
            why: self.resolution.why.to_string(),
            client: self.client.as_ref().map(|(i, m)| format!("{i}/{m}")).unwrap_or_default(),
            device: self.device_id.clone().unwrap_or_default(),
            role: self.role.name(),
            requested: self.requested.names(),
            scopes: self.effective_scopes().names(),
        });
        (forward, notices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawguard_policies::LoadedPolicy;

    #[test]
    fn request_limits_pick_the_most_specific_glob() {
        let policy = LoadedPolicy::parse("p.toml", "[websocket.max_request_bytes]\n\"*\" = 1000\n\"chat.*\" = 500\n\"chat.send\" = 200\n").unwrap().policy;
        let guard = Guard::new(&policy);
        assert_eq!(guard.request_limit("chat.send"), 200);
        assert_eq!(guard.request_limit("chat.history"), 500);
        assert_eq!(guard.request_limit("status"), 1000);
        // A method outside the gateway's table (worked out per request) reads the same globs.
        assert_eq!(guard.request_limit("chat.unknown"), 500);
        assert_eq!(guard.request_limit("no.such.method"), 1000);
        let inference = Guard::new(&LoadedPolicy::parse("p.toml", "[limits]\ninference_methods = [\"chat.send\", \"agent*\"]\n").unwrap().policy);
        assert!(inference.is_inference("chat.send") && inference.is_inference("agent") && inference.is_inference("agents.unknown"));
        assert!(!inference.is_inference("chat.history") && !inference.is_inference("no.such.method"));
        let defaults = Guard::new(&LoadedPolicy::parse("p.toml", "").unwrap().policy);
        assert_eq!(defaults.request_limit("chat.send"), 25 * 1024 * 1024);
        assert_eq!(defaults.request_limit("config.apply"), 1024 * 1024);
    }
}
