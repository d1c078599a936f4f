//! Session ownership on one operator connection: requests naming a session outside the
//! identity's patterns are refused, events about foreign sessions are not delivered, roster
//! answers lose foreign entries, and the cross-connection ledger enforces the session quota
//! and (optionally) one `chat.send` run per session at a time.

use crate::access::Env;
use crate::sessions::{creates_sessions, event_session, filter_roster, is_roster, named_keys, LedgerRefusal, SessionDefaults, SessionScope};
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
    rosters: Vec<String>,
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
            self.rosters.push(id.to_string());
        }
        Ok(())
    }

    /// Forgets request `id` (refused after its session checks passed): its run is not in flight.
    pub fn forget(&mut self, env: &Env<'_>, id: &str) {
        if let Some(i) = self.sends.iter().position(|(s, _)| s == id) {
            let (_, key) = self.sends.swap_remove(i);
            env.ledger.end_run(&key);
        }
        self.rosters.retain(|r| r != id);
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
        let Some(i) = self.rosters.iter().position(|r| r == id) else { return Answer::Deliver };
        self.rosters.swap_remove(i);
        let Some(payload) = payload else { return Answer::Deliver };
        let Some(mut payload) = crate::js::read_json_lossy(payload) else { return Answer::Unreadable };
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
