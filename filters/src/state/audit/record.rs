//! What an audit record says: one security event in the vocabulary of the gateway's own
//! `security.event` (category, action, outcome, severity, actor, target, policy, control), plus
//! clawguard's connection id, peer, rule and reason, so a SIEM can join both.

use serde_json::{Map, Value};
use std::sync::Arc;

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
    /// The clawguard identity (shared with the connection's other records).
    pub identity: Option<Arc<str>>,
    /// `operator` or `node`.
    pub role: Option<Arc<str>>,
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
    pub action: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// How much it matters.
    pub severity: Severity,
    /// Who.
    pub actor: Actor,
    /// On what.
    pub target: Target,
    /// The decision: `allow`, `refuse`, `would_refuse`, `close`, `drop`, `reply`, `rewrite`.
    pub decision: &'static str,
    /// The rule responsible, if any.
    pub rule: Option<String>,
    /// Why, in words.
    pub reason: Option<String>,
    /// Whether the decision was carried out (`false`: dry-run or a shadow limit).
    pub enforced: bool,
    /// The connection id.
    pub conn: Option<Arc<str>>,
    /// The client's address.
    pub peer: Option<Arc<str>>,
    /// More fields (`requested`/`granted` scopes, exec `segments`, `status`, `excerpt`, …).
    pub details: Map<String, Value>,
}

impl Event {
    /// An event with the given category, action and outcome, nothing else yet.
    pub fn new(category: Category, action: &'static str, outcome: Outcome, target: Target) -> Self {
        Event {
            category,
            action,
            severity: if outcome == Outcome::Success { Severity::Info } else { Severity::Medium },
            outcome,
            actor: Actor::default(),
            target,
            decision: if outcome == Outcome::Success { "allow" } else { "refuse" },
            rule: None,
            reason: None,
            enforced: true,
            conn: None,
            peer: None,
            details: Map::new(),
        }
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

/// RFC 3339 times for a stream of records: the date and time of day are computed again only
/// when the second changes.
#[derive(Debug, Default)]
pub struct Clock {
    second: Option<u128>,
    text: String,
}

impl Clock {
    /// `ns` (nanoseconds since the epoch) as [`rfc3339`] writes it.
    pub fn format(&mut self, ns: u128) -> &str {
        let second = ns / 1_000_000_000;
        if self.second != Some(second) || self.text.len() != 30 {
            self.text = rfc3339(ns);
            self.second = Some(second);
        } else {
            let frac = (ns % 1_000_000_000) as u32;
            self.text.truncate(20);
            for p in [100_000_000, 10_000_000, 1_000_000, 100_000, 10_000, 1000, 100, 10, 1] {
                self.text.push(char::from(b'0' + (frac / p % 10) as u8));
            }
            self.text.push('Z');
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue14_times_are_rfc3339_utc_with_nanoseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_796_169_600_123_456_789), "2026-12-02T00:00:00.123456789Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000000000Z");
        let mut clock = Clock::default();
        for ns in [0u128, 5, 999_999_999, 1_000_000_000, 1_796_169_600_123_456_789, 1_796_169_600_000_000_001, 1_796_169_599_999_999_999, 1_796_169_599_000_000_000] {
            assert_eq!(clock.format(ns), rfc3339(ns), "{ns}");
        }
    }
}
