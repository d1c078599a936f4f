//! Session ownership on one operator connection: requests naming a session outside the
//! identity's patterns are refused, events about foreign sessions are not delivered, roster
//! answers lose foreign entries, and the cross-connection ledger enforces the session quota
//! and (optionally) one `chat.send` run per session at a time.

use crate::checks::context::Env;
use crate::protocol::sessions::{creates_sessions, event_session, filter_roster, is_roster, is_roster_tool, named_keys, LedgerRefusal, SessionDefaults, SessionScope};

/// Filters a `tools.invoke` answer of a session-listing tool: `output.details` (the tool's
/// payload) like a roster, and each `output.content[].text` that is the same payload as JSON
/// text is rewritten from the filtered one. `None` when a text part cannot be shown to hold no
/// foreign session (it is not JSON): the answer is withheld. A failed call is delivered.
fn filter_tool_roster(payload: &mut Value, defaults: &SessionDefaults, scope: &SessionScope) -> Option<usize> {
    let Some(output) = payload.get_mut("output").filter(|o| o.is_object()) else {
        // A failed call (`ok: false`, an `error`) lists no sessions.
        return Some(0);
    };
    let mut removed = 0;
    if let Some(details) = output.get_mut("details").filter(|d| d.is_object()) {
        removed += filter_roster(details, defaults, scope);
    }
    if let Some(Value::Array(parts)) = output.get_mut("content") {
        for part in parts.iter_mut() {
            let Some(text) = part.get("text").and_then(Value::as_str) else { continue };
            let mut inner = crate::codec::js::read_json_lossy(text)?;
            if !inner.is_object() {
                return None;
            }
            let n = filter_roster(&mut inner, defaults, scope);
            if n > 0 {
                removed = removed.max(n);
                part["text"] = Value::String(serde_json::to_string_pretty(&inner).ok()?);
            }
        }
    }
    Some(removed)
}
use serde_json::{json, Value};

/// A refused request: the error code, the rule, why, the details, and whether to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRefusal {
    /// The gateway error code (`FORBIDDEN`, `UNAVAILABLE`).
    pub code: &'static str,
    /// The rule (`session-owner`, `session-quota`, `session-busy`).
    pub rule: &'static str,
    /// Why, in words.
    pub reason: String,
    /// `error.details`.
    pub details: Value,
    /// Whether the client may retry (busy sessions).
    pub retryable: bool,
}

/// What became of a gateway answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Deliver as is.
    Deliver,
    /// Deliver this payload instead (a roster without foreign entries): the new frame text,
    /// and how many entries were removed.
    Filtered(Value, usize),
    /// The answer must be filtered but cannot be read: withhold it.
    Unreadable,
}

/// The session state of one connection.
#[derive(Debug, Default)]
pub struct SessionSide {
    defaults: SessionDefaults,
    /// Roster requests awaiting their answer: id, and whether it is a session tool's result.
    rosters: Vec<(String, bool)>,
    sends: Vec<(String, String)>,
}

impl SessionSide {
    /// Takes the gateway's session defaults from `hello-ok`.
    pub fn set_defaults(&mut self, hello: &Value) {
        self.defaults = SessionDefaults::from_hello(hello);
    }

    /// The gateway's session defaults as known on this connection.
    pub fn defaults(&self) -> &SessionDefaults {
        &self.defaults
    }

    /// Whether answers to this connection's requests are awaited (they must be parsed).
    pub fn awaits_answers(&self) -> bool {
        !self.rosters.is_empty() || !self.sends.is_empty()
    }

    /// Whether the answer to request `id` is awaited (a roster to filter, a send to follow).
    pub fn follows(&self, id: &str) -> bool {
        self.rosters.iter().any(|(r, _)| r == id) || self.sends.iter().any(|(s, _)| s == id)
    }

    /// Judges the session parameters of a request that is otherwise going to the gateway;
    /// on success, notes what the answer needs (roster filtering, run tracking).
    pub fn check_request(&mut self, env: &Env<'_>, identity: &str, scope: &SessionScope, id: &str, method: &str, params: &Value) -> Result<(), Box<SessionRefusal>> {
        let (named, agent_id) = named_keys(method, params).map_err(|reason| {
            let details = json!({ "code": "SESSION_UNJUDGEABLE", "source": "clawguard", "rule": "session-owner", "identity": identity });
            Box::new(SessionRefusal { code: "INVALID_REQUEST", rule: "session-owner", reason, details, retryable: false })
        })?;
        let keys: Vec<(String, String)> = named.into_iter().map(|k| (self.defaults.canonical(&k, agent_id.as_deref()), k)).collect();
        if let Some((canonical, given)) = keys.iter().find(|(c, _)| !scope.allows(c)) {
            let reason = format!("session {given:?} ({canonical}) belongs to another identity: {identity:?} may only use sessions matching {}", scope.describe());
            let details = json!({ "code": "SESSION_NOT_OWNED", "sessionKey": canonical, "source": "clawguard", "rule": "session-owner", "identity": identity });
            return Err(Box::new(SessionRefusal { code: "FORBIDDEN", rule: "session-owner", reason, details, retryable: false }));
        }
        let cfg = &env.guard.sessions;
        if creates_sessions(method) {
            for (canonical, _) in &keys {
                if let Err(e) = env.ledger.note_created(identity, canonical, cfg.max_per_identity) {
                    let details = json!({ "code": "SESSION_QUOTA", "limit": cfg.max_per_identity, "source": "clawguard", "rule": "session-quota", "identity": identity });
                    return Err(Box::new(SessionRefusal { code: "FORBIDDEN", rule: "session-quota", reason: e.to_string(), details, retryable: false }));
                }
            }
        }
        if env.guard.is_inference(method) {
            // Replicas share who runs what, so the one that reads a session's usage charges it
            // to the identity that ran it (a note the store misses leaves that run global-only).
            let shared = env.shared.filter(|_| env.guard.spend().has_budgets());
            for (canonical, _) in &keys {
                env.ledger.note_runner(canonical, identity);
                if let Some(store) = shared {
                    let _ = store.note_runner(&canonical.to_lowercase(), identity);
                }
            }
        }
        if cfg.serialize_sends && method == "chat.send" {
            if let Some((canonical, _)) = keys.first() {
                let until = env.now_ms.saturating_add(cfg.busy_timeout_seconds.saturating_mul(1000));
                if let Err(e @ LedgerRefusal::Busy { .. }) = env.ledger.start_run(canonical, env.now_ms, until) {
                    let details = json!({ "code": "SESSION_BUSY", "sessionKey": canonical, "source": "clawguard", "rule": "session-busy" });
                    return Err(Box::new(SessionRefusal { code: "UNAVAILABLE", rule: "session-busy", reason: e.to_string(), details, retryable: true }));
                }
                self.sends.push((id.to_string(), canonical.clone()));
            }
        }
        if is_roster(method) && !scope.is_unrestricted() {
            self.rosters.push((id.to_string(), false));
        }
        if method == "tools.invoke" && !scope.is_unrestricted() && crate::codec::js::string_field(params, &["name", "tool"]).is_some_and(is_roster_tool) {
            self.rosters.push((id.to_string(), true));
        }
        Ok(())
    }

    /// Whether a session listing awaits its answer, to be filtered.
    pub fn awaits_roster(&self) -> bool {
        !self.rosters.is_empty()
    }

    /// Forgets request `id` (refused after its session checks passed): its run is not in flight.
    pub fn forget(&mut self, env: &Env<'_>, id: &str) {
        if let Some(i) = self.sends.iter().position(|(s, _)| s == id) {
            let (_, key) = self.sends.swap_remove(i);
            env.ledger.end_run(&key);
        }
        self.rosters.retain(|(r, _)| r != id);
    }

    /// A gateway answer to request `id`. A roster answer that cannot be read is withheld:
    /// it cannot be shown to list only the identity's own sessions.
    pub fn on_answer(&mut self, env: &Env<'_>, scope: &SessionScope, id: &str, ok: bool, payload: Option<&str>) -> Answer {
        if let Some(i) = self.sends.iter().position(|(s, _)| s == id) {
            let (_, key) = self.sends.swap_remove(i);
            if !ok {
                env.ledger.end_run(&key);
            }
        }
        let Some(i) = self.rosters.iter().position(|(r, _)| r == id) else { return Answer::Deliver };
        let (_, tool) = self.rosters.swap_remove(i);
        let Some(payload) = payload else { return Answer::Deliver };
        let Some(mut payload) = crate::codec::js::read_json_lossy(payload) else { return Answer::Unreadable };
        if tool {
            return match filter_tool_roster(&mut payload, &self.defaults, scope) {
                Some(0) => Answer::Deliver,
                Some(n) => Answer::Filtered(payload, n),
                None => Answer::Unreadable,
            };
        }
        match filter_roster(&mut payload, &self.defaults, scope) {
            0 => Answer::Deliver,
            n => Answer::Filtered(payload, n),
        }
    }

    /// An event for this connection: `Some(reason)` when it concerns a session outside the
    /// scope and is not delivered. A `chat` event that ends a run frees its session.
    pub fn on_event(&self, env: &Env<'_>, scope: &SessionScope, event: &str, payload: &Value) -> Option<String> {
        let found = match event_session(event, payload) {
            Ok(found) => found,
            Err(why) => return Some(format!("{why}: it cannot be shown to concern a session of this identity")),
        };
        let canonical = self.defaults.canonical(&found.key?, None);
        if event == "chat" && env.guard.sessions.serialize_sends && matches!(found.state.as_deref(), Some("final" | "error" | "aborted")) {
            env.ledger.end_run(&canonical);
        }
        (!scope.allows(&canonical)).then(|| format!("{event} event for session {canonical}, outside {}", scope.describe()))
    }
}
