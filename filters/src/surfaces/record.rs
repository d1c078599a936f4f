//! What each surface's decisions say in the audit log: WebSocket verdicts, connection outcomes,
//! pin changes, allowed requests, HTTP refusals, policy loads, turned into
//! `state::audit::record::Event`s (the proxy adds nothing but the time).

use crate::state::audit::record::{Actor, Category, Event, Outcome, Severity, Target};
use crate::surfaces::access::Notice;
use crate::surfaces::engine::{Decided, Direction, Verdict};
use crate::surfaces::http::HttpRefusal;
use serde_json::Value;
use std::sync::Arc;

/// The connection an event happened on (its texts shared by all of its records: stamping a
/// record copies pointers, not strings).
#[derive(Debug, Clone)]
pub struct Connection {
    /// clawguard's id for the connection.
    pub id: Arc<str>,
    /// The client's address.
    pub peer: Arc<str>,
    /// The identity's name.
    pub identity: Arc<str>,
    /// The role, once the handshake said.
    pub role: Option<Arc<str>>,
}

impl Connection {
    fn actor(&self) -> Actor {
        Actor { identity: Some(self.identity.clone()), role: self.role.clone(), ..Actor::default() }
    }

    fn stamp(&self, mut e: Event) -> Event {
        e.conn = Some(self.id.clone());
        e.peer = Some(self.peer.clone());
        if e.actor.identity.is_none() {
            e.actor = self.actor();
        }
        e
    }
}

/// The category of a verdict by its rule and the method it was on.
fn category_of(rule: &str, method: Option<&str>) -> Category {
    let base = rule.split(':').next().unwrap_or(rule);
    if base.starts_with("exec") {
        return Category::Exec;
    }
    match base {
        "node-pin" => return Category::Node,
        "session-owner" | "sessions" | "session-quota" => return Category::Session,
        "rate-limit" | "limits" | "lockout" | "connections" | "body-limit" | "spend" => return Category::Limit,
        "config-guard" | "policy-reload" => return Category::Config,
        "grants" | "chat-command" => return Category::Approval,
        "handshake" | "replay" | "identity" | "auth" => return Category::Auth,
        _ => {}
    }
    match method {
        Some("connect") => Category::Auth,
        Some("tools.invoke") => Category::Tool,
        Some(m) if m.starts_with("config.") => Category::Config,
        Some(m) if m.contains("pair") || m.contains("approv") || m.starts_with("device.token") => Category::Approval,
        Some(m) if m.starts_with("sessions.") || m.starts_with("chat.") => Category::Session,
        Some(m) if m.starts_with("node.") => Category::Node,
        _ => Category::Method,
    }
}

/// A refusal of something dangerous ranks high.
fn severity_of(category: Category, enforced: bool) -> Severity {
    if !enforced {
        return Severity::Low;
    }
    match category {
        Category::Exec | Category::Config | Category::Approval | Category::Node => Severity::High,
        _ => Severity::Medium,
    }
}

/// A WebSocket verdict other than a plain forward.
pub fn ws_decision(conn: &Connection, d: &Decided) -> Event {
    let category = category_of(&d.rule, d.target.as_deref());
    let (outcome, decision) = match d.verdict {
        Verdict::WouldDeny => (Outcome::Denied, "would_refuse"),
        Verdict::Reply => (Outcome::Denied, "refuse"),
        Verdict::Drop => (Outcome::Denied, "drop"),
        Verdict::Close => (Outcome::Denied, "close"),
        Verdict::Rewrite => (Outcome::Success, "rewrite"),
        Verdict::Forward => (Outcome::Success, "allow"),
        Verdict::Abort => (Outcome::Denied, "abort"),
    };
    let kind = if d.direction == Direction::ClientToGateway { "method" } else { "event" };
    // A message whose method or event cannot be read is recorded with an empty target name
    // (the verdict, rule and reason say what happened to it).
    let mut e = Event::new(category, match d.verdict {
        Verdict::Close => "ws.close",
        Verdict::Abort => "run.abort",
        _ => "ws.message",
    }, outcome, Target::new(kind, d.target.clone().unwrap_or_default()));
    e.decision = decision;
    e.enforced = d.verdict != Verdict::WouldDeny;
    e.severity = if d.verdict == Verdict::Rewrite { Severity::Low } else { severity_of(category, e.enforced) };
    e.rule = Some(d.rule.clone());
    e.reason = Some(d.reason.clone());
    e.details.insert("direction".into(), Value::from(d.direction.label()));
    conn.stamp(e)
}

/// A client request forwarded that the policy records as allowed (its method's name moves into
/// the record).
pub fn ws_allowed(conn: &Connection, method: String) -> Event {
    let category = category_of("", Some(&method));
    let mut e = Event::new(category, "ws.request", Outcome::Success, Target::new("method", method));
    e.decision = "allow";
    conn.stamp(e)
}

/// A notice from the engine (handshake done, node pin changes, version mismatch).
pub fn ws_notice(conn: &Connection, n: &Notice) -> Event {
    match n {
        Notice::Established { identity, why, client, device, role, requested, scopes } => {
            let mut e = Event::new(Category::Auth, "ws.connect", Outcome::Success, Target::new("connection", conn.id.to_string()));
            e.actor = Actor {
                identity: Some(identity.as_str().into()),
                role: Some((*role).into()),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                device_id: (!device.is_empty()).then(|| device.clone()),
                client: (!client.is_empty()).then(|| client.clone()),
            };
            e.reason = Some(format!("identity {identity:?} ({why}) connected as {role}"));
            e.details.insert("requested".into(), serde_json::json!(requested));
            e.details.insert("granted".into(), serde_json::json!(scopes));
            conn.stamp(e)
        }
        Notice::NodeUpgrade { device, beyond } => {
            let mut e = Event::new(Category::Node, "node.pin.pending", Outcome::Denied, Target::new("node", device.clone()));
            e.severity = Severity::High;
            e.decision = "hold";
            e.rule = Some("node-pin".into());
            e.reason = Some("the node declared more than its pin: held to its pin, the rest pending approval".into());
            e.details.insert("beyond".into(), serde_json::json!({ "commands": beyond.commands, "caps": beyond.caps, "permissions": beyond.permissions }));
            conn.stamp(e)
        }
        Notice::PinFollowed { device, decision, by } => {
            let mut e = Event::new(Category::Node, "node.pin.follow", Outcome::Success, Target::new("node", device.clone()));
            e.decision = decision;
            e.rule = Some("node-pin".into());
            e.reason = Some(format!("the pin follows a gateway pairing decision ({decision}) by {by:?}"));
            conn.stamp(e)
        }
        Notice::VersionMismatch { gateway, expected } => {
            let mut e = Event::new(Category::Config, "gateway.version", Outcome::Failure, Target::new("gateway", gateway.clone()));
            e.severity = Severity::Low;
            e.decision = "note";
            e.reason = Some(format!("the gateway is {gateway}; clawguard's method table describes {expected}"));
            conn.stamp(e)
        }
        Notice::UnknownMethod { method } => {
            let mut e = Event::new(Category::Config, "gateway.unknown_method", Outcome::Failure, Target::new("method", method.clone()));
            e.severity = Severity::Low;
            e.decision = "note";
            e.reason = Some(format!("{method} is not in clawguard's method table (it needs operator.admin)"));
            conn.stamp(e)
        }
        Notice::Spend(event) => {
            // The budget's record, noting the connection whose answer was read.
            let mut e = spend_event(event);
            e.details.insert("source".into(), Value::from("client-answer"));
            e.details.insert("conn".into(), Value::from(conn.id.to_string()));
            e
        }
        Notice::SpendUnread { reason } => {
            let mut e = Event::new(Category::Limit, "spend.unread", Outcome::Failure, Target::new("method", "sessions.usage"));
            e.severity = Severity::Low;
            e.decision = "note";
            e.reason = Some(reason.clone());
            conn.stamp(e)
        }
    }
}

/// An HTTP request as the audit log sees it.
#[derive(Debug, Clone)]
pub struct HttpSeen<'a> {
    /// The client's address.
    pub peer: String,
    /// The identity, when resolved.
    pub identity: Option<&'a str>,
    /// The method.
    pub method: &'a str,
    /// The path (canonical when it read).
    pub path: &'a str,
    /// The route class's label.
    pub route: &'a str,
}

/// An HTTP refusal (or would-refusal in dry-run).
pub fn http_refusal(req: &HttpSeen<'_>, r: &HttpRefusal) -> Event {
    let method = if req.route == "tools_invoke" { Some("tools.invoke") } else { None };
    let category = match category_of(&r.rule, method) {
        Category::Method => Category::Http,
        c => c,
    };
    let mut e = Event::new(category, "http.request", Outcome::Denied, Target::new("route", format!("{} {}", req.method, req.path)));
    e.enforced = r.enforce;
    e.decision = if r.enforce { "refuse" } else { "would_refuse" };
    e.severity = severity_of(category, r.enforce);
    e.rule = Some(r.rule.clone());
    e.reason = Some(r.reason.clone());
    e.details.insert("status".into(), Value::from(r.status));
    e.details.insert("route".into(), Value::from(req.route));
    if let Some(tool) = r.details.get("tool") {
        e.details.insert("tool".into(), tool.clone());
    }
    e.actor = Actor { identity: req.identity.map(Arc::from), ..Actor::default() };
    e.peer = Some(req.peer.as_str().into());
    e
}

/// A request or upgrade refused before any identity was judged (TLS required, a malformed
/// upgrade, an address over its connection rate or caps, a lockout).
pub fn refused_early(peer: &str, method: &str, path: &str, rule: &str, reason: &str, status: u16) -> Event {
    let category = match category_of(rule, None) {
        Category::Method => Category::Http,
        c => c,
    };
    let mut e = Event::new(category, "http.request", Outcome::Denied, Target::new("route", format!("{method} {path}")));
    e.rule = Some(rule.to_string());
    e.reason = Some(reason.to_string());
    e.details.insert("status".into(), Value::from(status));
    e.peer = Some(peer.into());
    e
}

/// An HTTP request allowed, when the policy records it.
pub fn http_allowed(req: &HttpSeen<'_>) -> Event {
    let mut e = Event::new(Category::Http, "http.request", Outcome::Success, Target::new("route", format!("{} {}", req.method, req.path)));
    e.details.insert("route".into(), Value::from(req.route));
    e.actor = Actor { identity: req.identity.map(Arc::from), ..Actor::default() };
    e.peer = Some(req.peer.as_str().into());
    e
}

/// A policy loaded (at start or reload).
pub fn policy_load(version: &str, source: &str) -> Event {
    let mut e = Event::new(Category::Config, "policy.load", Outcome::Success, Target::new("policy", source));
    e.reason = Some(format!("policy {version} in force"));
    e.details.insert("version".into(), Value::from(version));
    e
}

/// A policy version installed by a reload (`trigger`: `file`, `sighup`, `admin`), naming the
/// settings it changed that need a restart.
pub fn policy_reload(version: &str, previous: &str, source: &str, trigger: &str, needs_restart: &[String]) -> Event {
    let mut e = Event::new(Category::Config, "policy.reload", Outcome::Success, Target::new("policy", source));
    e.reason = Some(format!("policy {version} in force (was {previous}), reloaded on {trigger}"));
    e.details.insert("version".into(), Value::from(version));
    e.details.insert("previous".into(), Value::from(previous));
    e.details.insert("trigger".into(), Value::from(trigger));
    if !needs_restart.is_empty() {
        e.details.insert("needs_restart".into(), Value::from(needs_restart.to_vec()));
    }
    e
}

/// A policy file a reload rejected (the running version stays).
pub fn policy_rejected(version: Option<&str>, source: &str, trigger: &str, error: &str) -> Event {
    let mut e = Event::new(Category::Config, "policy.reload", Outcome::Failure, Target::new("policy", source));
    e.decision = "keep";
    e.severity = Severity::High;
    e.reason = Some(error.to_string());
    if let Some(v) = version {
        e.details.insert("version".into(), Value::from(v));
    }
    e.details.insert("trigger".into(), Value::from(trigger));
    e
}

/// A change to the node pin store seen on disk (`clawguard nodes approve|revoke`).
pub fn pin_store_change(device: &str, change: &'static str) -> Event {
    let mut e = Event::new(Category::Node, "node.pin.change", Outcome::Success, Target::new("node", device));
    e.decision = change;
    e.severity = Severity::Medium;
    e.reason = Some(format!("node {device}: {change} in the pin store"));
    e
}

/// A spend budget crossing its warning threshold or its limit (`spend.warning`, `spend.trip`).
pub fn spend_event(event: &crate::state::spend::SpendEvent) -> Event {
    use crate::state::spend::SpendEvent;
    let (action, e) = match event {
        SpendEvent::Warning(e) => ("spend.warning", e),
        SpendEvent::Tripped(e) => ("spend.trip", e),
    };
    let tripped = matches!(event, SpendEvent::Tripped(_));
    let mut r = Event::new(Category::Limit, action, if tripped { Outcome::Denied } else { Outcome::Success }, Target::new("budget", &e.budget));
    r.decision = match (tripped, e.shadow) {
        (true, false) => "refuse",
        (true, true) => "would-refuse",
        (false, _) => "warn",
    };
    r.enforced = !e.shadow;
    r.severity = if tripped && !e.shadow { Severity::High } else { Severity::Medium };
    r.rule = Some(format!("spend:{}", e.budget));
    r.reason = Some(if tripped { e.reason() } else { format!("spend budget {:?} is at {:.0} % of its limit", e.budget, 100.0 * e.spent / e.limit) });
    if let Some(identity) = &e.identity {
        r.actor.identity = Some(identity.as_str().into());
    }
    r.details.insert("period".into(), Value::from(e.period.label()));
    r.details.insert("unit".into(), Value::from(e.unit.label()));
    // Records hold integers only (their canonical JSON must be the same in every language):
    // money as a decimal string to the micro-dollar, tokens as an integer.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // token figures are whole and >= 0
    let figure = |v: f64| match e.unit {
        crate::state::spend::Unit::Usd => Value::from(format!("{v:.6}")),
        crate::state::spend::Unit::Tokens => Value::from(v.max(0.0).round() as u64),
    };
    r.details.insert("spent".into(), figure(e.spent));
    r.details.insert("limit".into(), figure(e.limit));
    r.details.insert("resets_at".into(), Value::from(crate::state::spend::reset_time(e.resets_at_ms)));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue14_a_refused_admin_call_is_an_access_denial_on_its_method_and_connection() {
        let conn = Connection { id: "c1".into(), peer: "127.0.0.1".into(), identity: "local".into(), role: Some("operator".into()) };
        let d = Decided { direction: Direction::ClientToGateway, verdict: Verdict::Reply, rule: "scope".into(), reason: "missing scope: operator.admin".into(), target: Some("config.apply".into()) };
        let e = ws_decision(&conn, &d);
        assert_eq!((e.category, e.outcome, e.decision, e.enforced), (Category::Config, Outcome::Denied, "refuse", true));
        assert_eq!(e.target.name, "config.apply");
        assert_eq!(e.actor.identity.as_deref(), Some("local"));
        assert_eq!(e.conn.as_deref(), Some("c1"));
        let would = Decided { verdict: Verdict::WouldDeny, rule: "exec".into(), target: Some("node.invoke".into()), ..d };
        let e = ws_decision(&conn, &would);
        assert_eq!((e.category, e.decision, e.enforced, e.severity), (Category::Exec, "would_refuse", false, Severity::Low));
        let limit = ws_decision(&conn, &Decided { verdict: Verdict::Reply, rule: "rate-limit:ws-messages".into(), ..would });
        assert_eq!(limit.category, Category::Limit);
    }

    #[test]
    fn issue19_spend_records_hold_no_floating_point_numbers_and_an_abort_is_its_own_action() {
        use crate::state::spend::{Exceeded, SpendEvent, Unit};
        let exceeded = Exceeded { budget: "day".into(), period: clawguard_policies::BudgetPeriod::Day, identity: None, unit: Unit::Usd, spent: 1e-7, limit: 0.05, resets_at_ms: 0, shadow: false };
        let e = spend_event(&SpendEvent::Tripped(exceeded.clone()));
        // A float such as 1e-7 is written differently by serde_json and Python's json.dumps.
        assert_eq!((&e.details["spent"], &e.details["limit"]), (&Value::from("0.000000"), &Value::from("0.050000")));
        let tokens = spend_event(&SpendEvent::Warning(Exceeded { unit: Unit::Tokens, spent: 800.0, limit: 1000.0, ..exceeded }));
        assert_eq!((&tokens.details["spent"], &tokens.details["limit"]), (&Value::from(800), &Value::from(1000)));
        let conn = Connection { id: "c1".into(), peer: "127.0.0.1".into(), identity: "alice".into(), role: Some("operator".into()) };
        let d = Decided { direction: Direction::ClientToGateway, verdict: Verdict::Abort, rule: "spend:day".into(), reason: "stopped run".into(), target: Some("chat.abort".into()) };
        let e = ws_decision(&conn, &d);
        assert_eq!((e.action, e.decision, e.outcome, e.enforced), ("run.abort", "abort", Outcome::Denied, true));
    }
}
