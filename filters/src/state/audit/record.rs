//! What an audit record says: one security event in the vocabulary of the gateway's own
//! `security.event` (category, action, outcome, severity, actor, target, policy, control), plus
//! clawguard's connection id, peer, rule and reason, so a SIEM can join both.

use serde_json::{json, Map, Value};

/// The kind of event (the gateway's categories, plus clawguard's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Connections, identities, handshakes.
    Auth,
    /// Exec approvals and pairing decisions.
    Approval,
    /// Tool calls (`tools.invoke`, `/tools/invoke`).
    Tool,
    /// Configuration writes and policy loads.
    Config,
    /// Session ownership.
    Session,
    /// Node pins.
    Node,
    /// Commands judged by the exec policy.
    Exec,
    /// Rate limits, lockouts, size limits.
    Limit,
    /// HTTP requests.
    Http,
    /// Other gateway methods.
    Method,
    /// The audit log itself.
    Audit,
}

impl Category {
    /// The name in records.
    pub fn name(self) -> &'static str {
        match self {
            Category::Auth => "auth",
            Category::Approval => "approval",
            Category::Tool => "tool",
            Category::Config => "config",
            Category::Session => "session",
            Category::Node => "node",
            Category::Exec => "exec",
            Category::Limit => "limit",
            Category::Http => "http",
            Category::Method => "method",
            Category::Audit => "audit",
        }
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed or done.
    Success,
    /// Refused by policy (or would have been, in dry-run).
    Denied,
    /// Failed for another reason (the gateway refused, a connection was lost).
    Failure,
    /// clawguard could not decide or record.
    Error,
}

impl Outcome {
    /// The name in records.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
            Outcome::Error => "error",
        }
    }
}

/// How much it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Routine.
    Info,
    /// Worth a look.
    Low,
    /// A refusal.
    Medium,
    /// A refusal of something dangerous (exec, config, grants, pins).
    High,
    /// The audit log itself failing.
    Critical,
}

impl Severity {
    /// The name in records.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Who acted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// The clawguard identity.
    pub identity: Option<String>,
    /// `operator` or `node`.
    pub role: Option<String>,
    /// Scopes (granted, or held).
    pub scopes: Vec<String>,
    /// The device id (recorded as its keyed hash).
    pub device_id: Option<String>,
    /// `client.id/mode` from the handshake.
    pub client: Option<String>,
}

/// What was acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `method`, `event`, `route`, `tool`, `node`, `policy`, `connection`.
    pub kind: &'static str,
    /// Its name (a method, a path, a tool, a device id, a file).
    pub name: String,
    /// The command line judged, for exec events (encryptable).
    pub command: Option<String>,
    /// The session key, for session events (encryptable).
    pub session: Option<String>,
}

impl Target {
    /// A target with a kind and a name only.
    pub fn new(kind: &'static str, name: impl Into<String>) -> Self {
        Target { kind, name: name.into(), command: None, session: None }
    }
}

/// One event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its category.
    pub category: Category,
    /// What happened: `ws.request`, `ws.connect`, `ws.close`, `http.request`, `node.pin`,
    /// `policy.load`, …
    pub action: String,
    /// How it ended.
    pub outcome: Outcome,
    /// How much it matters.
    pub severity: Severity,
    /// Who.
    pub actor: Actor,
    /// On what.
    pub target: Target,
    /// The decision: `allow`, `refuse`, `would_refuse`, `close`, `drop`, `reply`, `rewrite`.
    pub decision: String,
    /// The rule responsible, if any.
    pub rule: Option<String>,
    /// Why, in words.
    pub reason: Option<String>,
    /// Whether the decision was carried out (`false`: dry-run or a shadow limit).
    pub enforced: bool,
    /// The connection id.
    pub conn: Option<String>,
    /// The client's address.
    pub peer: Option<String>,
    /// More fields (`requested`/`granted` scopes, exec `segments`, `status`, `excerpt`, …).
    pub details: Map<String, Value>,
}

impl Event {
    /// An event with the given category, action and outcome, nothing else yet.
    pub fn new(category: Category, action: &str, outcome: Outcome, target: Target) -> Self {
        Event {
            category,
            action: action.to_string(),
            severity: if outcome == Outcome::Success { Severity::Info } else { Severity::Medium },
            outcome,
            actor: Actor::default(),
            target,
            decision: if outcome == Outcome::Success { "allow".into() } else { "refuse".into() },
            rule: None,
            reason: None,
            enforced: true,
            conn: None,
            peer: None,
            details: Map::new(),
        }
    }

    /// The record's fields (before redaction, encryption and chaining), with the device id
    /// turned into its keyed hash by `hash`.
    pub fn fields(&self, ts: &str, policy_version: &str, hash: impl Fn(&str) -> String) -> Map<String, Value> {
        let mut actor = Map::new();
        actor.insert("kind".into(), Value::from(if self.actor.identity.is_some() { "identity" } else { "anonymous" }));
        put(&mut actor, "id", self.actor.identity.clone());
        put(&mut actor, "role", self.actor.role.clone());
        if !self.actor.scopes.is_empty() {
            actor.insert("scopes".into(), json!(self.actor.scopes));
        }
        put(&mut actor, "deviceIdHash", self.actor.device_id.as_deref().map(&hash));
        put(&mut actor, "client", self.actor.client.clone());
        let mut target = Map::new();
        target.insert("kind".into(), Value::from(self.target.kind));
        target.insert("name".into(), Value::from(self.target.name.clone()));
        put(&mut target, "command", self.target.command.clone());
        put(&mut target, "session", self.target.session.clone());
        let mut policy = Map::new();
        put(&mut policy, "id", self.rule.clone());
        policy.insert("decision".into(), Value::from(self.decision.clone()));
        put(&mut policy, "reason", self.reason.clone());
        policy.insert("version".into(), Value::from(policy_version));
        let mut r = Map::new();
        r.insert("type".into(), Value::from("event"));
        r.insert("ts".into(), Value::from(ts));
        r.insert("category".into(), Value::from(self.category.name()));
        r.insert("action".into(), Value::from(self.action.clone()));
        r.insert("outcome".into(), Value::from(self.outcome.name()));
        r.insert("severity".into(), Value::from(self.severity.name()));
        r.insert("actor".into(), Value::Object(actor));
        r.insert("target".into(), Value::Object(target));
        r.insert("policy".into(), Value::Object(policy));
        if let Some(rule) = &self.rule {
            r.insert("control".into(), json!({ "id": rule, "family": control_family(rule) }));
        }
        r.insert("policy_version".into(), Value::from(policy_version));
        put(&mut r, "conn", self.conn.clone());
        put(&mut r, "peer", self.peer.clone());
        put(&mut r, "rule", self.rule.clone());
        put(&mut r, "reason", self.reason.clone());
        r.insert("enforced".into(), Value::from(self.enforced));
        if !self.details.is_empty() {
            r.insert("details".into(), Value::Object(self.details.clone()));
        }
        r
    }
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<String>) {
    if let Some(v) = value {
        map.insert(key.into(), Value::from(v));
    }
}

/// The family of protections a rule belongs to (`control.family`).
pub fn control_family(rule: &str) -> &'static str {
    let base = rule.split(':').next().unwrap_or(rule);
    if base.starts_with("identity-") || base.starts_with("http-tool") || base == "scope-ceiling" {
        return "access";
    }
    if base.starts_with("exec") {
        return "exec";
    }
    match base {
        "scope" | "identity" | "methods" | "method" | "tools" | "tool" | "grants" | "grant" | "chat-command" | "admin" | "role" => "access",
        "exec" | "exec-approval" => "exec",
        "node-pin" | "nodes" | "node" => "nodes",
        "session-owner" | "sessions" | "session-quota" => "sessions",
        "rate-limit" | "limits" | "lockout" | "connections" | "body-limit" => "limits",
        "config-guard" => "config",
        "origin" | "http-route" | "hooks-token" | "ssrf" | "url-ingest" | "bad-path" | "tls" => "http",
        "handshake" | "websocket-protocol" | "replay" | "unreadable-input" => "protocol",
        _ => "policy",
    }
}

/// Nanoseconds since the Unix epoch as RFC 3339 in UTC with nine fractional digits.
pub fn rfc3339(ns: u128) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let frac = (ns % 1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:09}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The UTC day (`YYYY-MM-DD`) of a time in nanoseconds since the epoch.
pub fn utc_day(ns: u128) -> String {
    rfc3339(ns)[..10].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue14_times_are_rfc3339_utc_with_nanoseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_796_169_600_123_456_789), "2026-12-02T00:00:00.123456789Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(utc_day(1_796_169_600_123_456_789), "2026-12-02");
    }

    #[test]
    fn issue14_an_event_reads_as_a_security_event() {
        let mut e = Event::new(Category::Config, "ws.request", Outcome::Denied, Target::new("method", "config.apply"));
        e.actor = Actor { identity: Some("local".into()), role: Some("operator".into()), scopes: vec!["operator.read".into()], device_id: Some("dev-1".into()), client: None };
        e.rule = Some("scope".into());
        e.reason = Some("config.apply needs operator.admin".into());
        e.conn = Some("c7".into());
        let f = Value::Object(e.fields("2026-12-01T00:00:00.000000000Z", "v1", |d| format!("h({d})")));
        assert_eq!(f["category"], "config");
        assert_eq!(f["outcome"], "denied");
        assert_eq!(f["severity"], "medium");
        assert_eq!(f["actor"], json!({"kind": "identity", "id": "local", "role": "operator", "scopes": ["operator.read"], "deviceIdHash": "h(dev-1)"}));
        assert_eq!(f["target"], json!({"kind": "method", "name": "config.apply"}));
        assert_eq!(f["policy"], json!({"id": "scope", "decision": "refuse", "reason": "config.apply needs operator.admin", "version": "v1"}));
        assert_eq!(f["control"], json!({"id": "scope", "family": "access"}));
        assert_eq!(f["rule"], "scope");
        assert_eq!(f["conn"], "c7");
        assert!(f.get("peer").is_none());
        assert_eq!(control_family("rate-limit:ws-messages"), "limits");
    }
}
