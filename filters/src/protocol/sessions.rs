//! Session ownership: which session keys an identity may name and see, how keys are
//! canonicalised (`main`, keys without the `agent:` prefix), which request parameters name a
//! session (from the generated method table), and the cross-connection ledger of sessions
//! created and runs in flight.

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// The default patterns of an identity without `operator.admin`: only its own keys.
pub const OWN_KEYS: &[&str] = &["agent:*:{identity}", "agent:*:{identity}:**"];

/// One session-key pattern: `*` matches a run of characters other than `:`, `**` any run;
/// `{identity}` was replaced by the identity's name. Keys and patterns compare without case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPattern(String);

impl KeyPattern {
    /// The pattern for `identity` (its `{identity}` placeholders filled in).
    pub fn new(pattern: &str, identity: &str) -> Self {
        KeyPattern(pattern.replace("{identity}", identity).to_ascii_lowercase())
    }

    /// The pattern as written (placeholders filled in).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `key` (already canonical) matches.
    pub fn matches(&self, key: &str) -> bool {
        glob_match(self.0.as_bytes(), key.to_ascii_lowercase().as_bytes())
    }
}

fn glob_match(p: &[u8], k: &[u8]) -> bool {
    match p {
        [] => k.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=k.len()).any(|i| glob_match(rest, &k[i..])),
        [b'*', rest @ ..] => {
            let segment = k.iter().position(|&b| b == b':').unwrap_or(k.len());
            (0..=segment).any(|i| glob_match(rest, &k[i..]))
        }
        [c, rest @ ..] => k.first() == Some(c) && glob_match(rest, &k[1..]),
    }
}

/// An identity's session patterns, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionScope {
    patterns: Vec<KeyPattern>,
    unrestricted: bool,
}

impl SessionScope {
    /// Compiles `patterns` for `identity`.
    pub fn new(patterns: &[String], identity: &str) -> Self {
        let patterns: Vec<KeyPattern> = patterns.iter().map(|p| KeyPattern::new(p, identity)).collect();
        let unrestricted = patterns.iter().any(|p| p.0 == "**");
        SessionScope { patterns, unrestricted }
    }

    /// The default scope: every key with `operator.admin`, otherwise [`OWN_KEYS`].
    pub fn default_for(identity: &str, admin: bool) -> Self {
        let patterns: Vec<String> = if admin { vec!["**".into()] } else { OWN_KEYS.iter().map(|p| p.to_string()).collect() };
        SessionScope::new(&patterns, identity)
    }

    /// Whether every key matches (nothing to check or filter).
    pub fn is_unrestricted(&self) -> bool {
        self.unrestricted
    }

    /// Whether the canonical `key` is within the scope.
    pub fn allows(&self, key: &str) -> bool {
        self.unrestricted || self.patterns.iter().any(|p| p.matches(key))
    }

    /// The patterns, for explanations.
    pub fn describe(&self) -> String {
        self.patterns.iter().map(KeyPattern::as_str).collect::<Vec<_>>().join(", ")
    }
}

/// `hello-ok.snapshot.sessionDefaults`: how the gateway resolves `main` and bare keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDefaults {
    /// `defaultAgentId`.
    pub default_agent_id: String,
    /// `mainSessionKey`.
    pub main_session_key: String,
}

impl Default for SessionDefaults {
    fn default() -> Self {
        SessionDefaults { default_agent_id: "main".into(), main_session_key: "agent:main:main".into() }
    }
}

impl SessionDefaults {
    /// Reads the defaults from a `hello-ok` payload (the gateway's own defaults when absent).
    pub fn from_hello(hello: &Value) -> Self {
        let d = &hello["snapshot"]["sessionDefaults"];
        let fallback = SessionDefaults::default();
        let agent = d["defaultAgentId"].as_str().filter(|s| !s.is_empty()).unwrap_or(&fallback.default_agent_id).to_string();
        let main = d["mainSessionKey"].as_str().filter(|s| !s.is_empty()).map(str::to_string).unwrap_or_else(|| format!("agent:{agent}:main"));
        SessionDefaults { default_agent_id: agent, main_session_key: main }
    }

    /// The key the gateway stores `key` under: `main` is the main session, a key without the
    /// `agent:` prefix belongs to `agent_id` (the request's `agentId`) or the default agent.
    pub fn canonical(&self, key: &str, agent_id: Option<&str>) -> String {
        let key = key.trim();
        let lower = key.to_ascii_lowercase();
        if lower == "main" {
            return match agent_id {
                Some(a) if !a.is_empty() && a != self.default_agent_id => format!("agent:{a}:main"),
                _ => self.main_session_key.to_ascii_lowercase(),
            };
        }
        if lower.starts_with("agent:") {
            return lower;
        }
        format!("agent:{}:{lower}", agent_id.filter(|a| !a.is_empty()).unwrap_or(&self.default_agent_id).to_ascii_lowercase())
    }
}

/// One row of the session table: which parameters of a method name a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The method.
    pub method: &'static str,
    /// The fields that name a session; each is a `??` chain of aliases (`["key", "sessionKey"]`:
    /// the first present one is read, as the handler reads `p.key ?? p.sessionKey`).
    pub fields: Vec<Vec<&'static str>>,
    /// Where it was read (`dist/<file>`, `schema`).
    pub source: &'static str,
    /// Why (for `none` rows: why the method names no session).
    pub reason: &'static str,
}

/// The session table of openclaw 2026.9.6: every method of the method table, read from the
/// handlers of the installed package by `filters/method-table/extract-session-fields.py`.
const SESSION_TABLE: &str = include_str!("../../method-table/openclaw-2026.9.6-sessions.tsv");

/// Parses the committed table (a malformed row is a build defect; the test below reads it).
pub fn session_table() -> &'static [SessionRow] {
    static TABLE: std::sync::OnceLock<Vec<SessionRow>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut rows: Vec<SessionRow> = SESSION_TABLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|line| {
                let mut cols = line.split('\t');
                let (method, fields, source, reason) = (cols.next()?, cols.next()?, cols.next()?, cols.next()?);
                let fields = if fields == "none" { Vec::new() } else { fields.split(',').map(|f| f.split('|').collect()).collect() };
                Some(SessionRow { method, fields, source, reason })
            })
            .collect();
        rows.sort_by(|a, b| a.method.cmp(b.method));
        rows
    })
}

/// The parameter fields of `method` that name a session (each a `??` chain of aliases).
pub fn session_fields(method: &str) -> &'static [Vec<&'static str>] {
    let table = session_table();
    table.binary_search_by(|r| r.method.cmp(method)).map(|i| table[i].fields.as_slice()).unwrap_or(&[])
}

/// Arguments of a tool called through `tools.invoke` that name a session (the session tools'
/// `sessionKey`, `sessionKeys`, `targetSessionKey`, `childSessionKey`, `parentSessionKey`, and
/// the `sessions` tool's `targets[].sessionKey`), for every tool.
pub const TOOL_SESSION_ARGS: &[&str] = &["sessionKey", "sessionKeys", "targetSessionKey", "childSessionKey", "parentSessionKey"];

/// Tools whose results list sessions: filtered like rosters.
pub fn is_roster_tool(tool: &str) -> bool {
    matches!(tool, "sessions_list" | "sessions_search")
}

/// The session keys a request's parameters name, as written, and its `agentId`. A field that
/// names a session but is neither a string nor an array of strings (or params that are not a
/// JSON object) cannot be judged: an error, and the request is refused.
pub fn named_keys(method: &str, params: &Value) -> Result<(Vec<String>, Option<String>), String> {
    let fields = session_fields(method);
    let mut keys = Vec::new();
    if fields.is_empty() || params.is_null() {
        return Ok((keys, None));
    }
    if !params.is_object() {
        return Err(format!("{method} params are not an object, so the sessions they name cannot be read"));
    }
    // The field's name is only spelled out (allocated) when it cannot be read.
    let read = |keys: &mut Vec<String>, v: &Value, field: &dyn Fn() -> String| -> Result<(), String> {
        match v {
            Value::Null => {}
            Value::String(s) => keys.push(crate::codec::js::trim(s).to_string()),
            Value::Array(items) if items.iter().all(Value::is_string) => keys.extend(items.iter().filter_map(Value::as_str).map(|s| crate::codec::js::trim(s).to_string())),
            _ => return Err(format!("{method}: {} is neither a session key nor a list of them", field())),
        }
        Ok(())
    };
    for aliases in fields {
        if let Some((field, v)) = crate::codec::js::coalesce(params, aliases) {
            read(&mut keys, v, &|| field.to_string())?;
        }
    }
    // A tool runs in `sessionKey`, or the main session when there is none; an agent turn
    // without one is routed by the gateway (`to`, `sessionId`, the main session), which
    // clawguard cannot show to be the caller's own: both are judged as the main session.
    if matches!(method, "tools.invoke" | "agent") && crate::codec::js::string_field(params, &["sessionKey"]).is_none() {
        keys.push("main".into());
    }
    if method == "tools.invoke" {
        let args = &params["args"];
        if args.is_object() {
            for field in TOOL_SESSION_ARGS {
                read(&mut keys, &args[*field], &|| format!("args.{field}"))?;
            }
            match &args["targets"] {
                Value::Null => {}
                Value::Array(targets) => {
                    for (i, t) in targets.iter().enumerate() {
                        read(&mut keys, &t["sessionKey"], &|| format!("args.targets[{i}].sessionKey"))?;
                    }
                }
                _ => return Err(format!("{method}: args.targets is not a list of sessions")),
            }
        }
    }
    keys.retain(|k| !k.is_empty());
    let agent_id = crate::codec::js::string_field(params, &["agentId"]).map(str::to_string);
    Ok((keys, agent_id))
}

/// Methods that create a session when they name one it has not seen.
pub fn creates_sessions(method: &str) -> bool {
    matches!(method, "sessions.create" | "chat.send" | "agent" | "sessions.send" | "send")
}

/// Roster reads: their answers list sessions, and foreign entries are removed.
pub fn is_roster(method: &str) -> bool {
    matches!(method, "sessions.list" | "sessions.search" | "sessions.preview")
}

/// Events that never name a session and arrive often: not parsed for ownership.
pub fn is_sessionless(event: &str) -> bool {
    matches!(event, "tick" | "health" | "heartbeat" | "presence" | "shutdown" | "node.presence" | "node.hostStats")
}

/// What ownership needs from an event payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventSession {
    /// The session key it carries: `payload.sessionKey`, `payload.request.sessionKey`
    /// (approval requests), or `payload.key` (`chat`, `agent` and `session*` events).
    pub key: Option<String>,
    /// `payload.state` (`final`, `error`, `aborted` end a `chat` run).
    pub state: Option<String>,
}

/// Reads an event payload for ownership (parsed with [`crate::codec::js::read_json_lossy`]). A
/// payload that is not an object carries no key; a key field that is present but not a string
/// cannot be judged (`Err`, and the event is not delivered).
pub fn event_session(event: &str, payload: &Value) -> Result<EventSession, String> {
    let text = |v: &Value, field: &str| -> Result<Option<String>, String> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(crate::codec::js::trim(s).to_string())),
            _ => Err(format!("{event} event: {field} is not a session key")),
        }
    };
    let keyed = event.starts_with("session") || event == "chat" || event == "agent";
    let mut key = text(&payload["sessionKey"], "sessionKey")?;
    if key.is_none() {
        key = text(&payload["request"]["sessionKey"], "request.sessionKey")?;
    }
    if key.is_none() && keyed {
        key = text(&payload["key"], "key")?;
    }
    let state = payload["state"].as_str().map(str::to_string);
    Ok(EventSession { key, state })
}

/// Removes roster entries outside `scope` from a `sessions.list` / `sessions.search` /
/// `sessions.preview` answer; returns how many were removed. Entries name their session as
/// `key` or `sessionKey`; an entry without either is removed too (it cannot be shown to be the
/// client's own). `count` and `totalCount` drop by the number removed from this page.
pub fn filter_roster(payload: &mut Value, defaults: &SessionDefaults, scope: &SessionScope) -> usize {
    let mut removed = 0;
    for list in ["sessions", "results", "previews"] {
        if let Some(Value::Array(items)) = payload.get_mut(list) {
            let before = items.len();
            items.retain(|item| {
                let key = item.get("key").or_else(|| item.get("sessionKey")).and_then(Value::as_str);
                key.is_some_and(|k| scope.allows(&defaults.canonical(k, None)))
            });
            removed += before - items.len();
        }
    }
    if removed > 0 {
        for total in ["count", "totalCount"] {
            if let Some(n) = payload.get(total).and_then(Value::as_u64) {
                payload[total] = Value::from(n.saturating_sub(removed as u64));
            }
        }
    }
    removed
}

/// Why a session could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerRefusal {
    /// The identity has created its quota of distinct sessions.
    #[error("identity {identity:?} has created {limit} distinct sessions, its quota: reuse one or ask an operator to raise sessions.max_per_identity")]
    Quota {
        /// The identity.
        identity: String,
        /// The quota.
        limit: usize,
    },
    /// A run is in flight on the session.
    #[error("session {key} is busy: a chat.send run has not finished; retry when it has")]
    Busy {
        /// The canonical key.
        key: String,
    },
}

#[derive(Debug, Default)]
struct LedgerState {
    created: HashMap<String, HashSet<String>>,
    busy: HashMap<String, u64>,
    runners: HashMap<String, String>,
}

/// The most sessions whose runner is remembered; past it the memory starts over (their new
/// spend then counts against global budgets only).
const MAX_RUNNERS: usize = 100_000;

/// Sessions created per identity and runs in flight per session, shared by every connection
/// while clawguard runs (not persisted).
#[derive(Debug, Default)]
pub struct SessionLedger {
    state: Mutex<LedgerState>,
}

impl SessionLedger {
    /// Counts `key` as created by `identity`, unless that would exceed `limit` distinct keys
    /// (0: no limit). A key already counted is always accepted.
    pub fn note_created(&self, identity: &str, key: &str, limit: usize) -> Result<(), LedgerRefusal> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let keys = state.created.entry(identity.to_string()).or_default();
        if keys.contains(key) {
            return Ok(());
        }
        if limit > 0 && keys.len() >= limit {
            return Err(LedgerRefusal::Quota { identity: identity.to_string(), limit });
        }
        keys.insert(key.to_string());
        Ok(())
    }

    /// Marks a run started on `key` until `until_ms`, unless one is already in flight.
    pub fn start_run(&self, key: &str, now_ms: u64, until_ms: u64) -> Result<(), LedgerRefusal> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.busy.get(key) {
            Some(&until) if until > now_ms => Err(LedgerRefusal::Busy { key: key.to_string() }),
            _ => {
                state.busy.insert(key.to_string(), until_ms);
                Ok(())
            }
        }
    }

    /// Notes that `identity` started a run on `key`: the session's new spend is charged to it.
    pub fn note_runner(&self, key: &str, identity: &str) {
        let key = key.to_ascii_lowercase();
        let key = key.as_str();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.runners.get(key).is_some_and(|i| i == identity) {
            return;
        }
        if state.runners.len() >= MAX_RUNNERS {
            state.runners.clear();
        }
        state.runners.insert(key.to_string(), identity.to_string());
    }

    /// The identity that last started a run on `key` through clawguard (keys compare without
    /// case, as the gateway's do).
    pub fn runner_of(&self, key: &str) -> Option<String> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).runners.get(&key.to_ascii_lowercase()).cloned()
    }

    /// The run on `key` ended (final, error or aborted), or its `chat.send` failed.
    pub fn end_run(&self, key: &str) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).busy.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn star_stays_within_a_segment_and_double_star_crosses() {
        let own = SessionScope::default_for("alice", false);
        assert!(own.allows("agent:main:alice"));
        assert!(own.allows("agent:work:alice:thread:7"));
        assert!(own.allows("AGENT:main:Alice"), "keys compare without case");
        assert!(!own.allows("agent:main:main"));
        assert!(!own.allows("agent:main:bob"));
        assert!(!own.allows("agent:main:bob:alice:x"), "`*` does not cross `:`, so a key cannot smuggle the name later");
        assert!(!own.allows("agent:main:alicex"));
        assert!(SessionScope::default_for("root", true).allows("anything:at:all"));
        let custom = SessionScope::new(&["agent:*:shared-*".into(), "hook:**".into()], "x");
        assert!(custom.allows("agent:main:shared-board") && custom.allows("hook:a:b") && !custom.allows("agent:main:shared:x"));
    }

    #[test]
    fn canonicalisation_follows_the_gateway_defaults() {
        let d = SessionDefaults::from_hello(&json!({"snapshot":{"sessionDefaults":{"defaultAgentId":"ops","mainSessionKey":"agent:ops:primary"}}}));
        assert_eq!(d.canonical("main", None), "agent:ops:primary");
        assert_eq!(d.canonical("alice", None), "agent:ops:alice");
        assert_eq!(d.canonical("alice", Some("work")), "agent:work:alice");
        assert_eq!(d.canonical("main", Some("work")), "agent:work:main");
        assert_eq!(d.canonical("agent:x:y", Some("work")), "agent:x:y");
        assert_eq!(SessionDefaults::from_hello(&json!({})), SessionDefaults::default());
    }

    #[test]
    fn request_fields_come_from_the_generated_table() {
        assert_eq!(session_fields("chat.history"), &[vec!["sessionKey"]]);
        assert_eq!(session_fields("sessions.create"), &[vec!["parentSessionKey"], vec!["key"]]);
        assert_eq!(session_fields("sessions.preview"), &[vec!["keys"]]);
        assert_eq!(session_fields("sessions.get"), &[vec!["key", "sessionKey"]], "the handler reads key ?? sessionKey");
        assert_eq!(named_keys("sessions.get", &json!({"sessionKey": "agent:main:bob"})).unwrap().0, vec!["agent:main:bob".to_string()]);
        assert_eq!(named_keys("sessions.get", &json!({"key": null, "sessionKey": "b"})).unwrap().0, vec!["b".to_string()]);
        let (keys, _) = named_keys("tools.invoke", &json!({"name": "sessions_history", "args": {"sessionKey": "agent:main:bob"}})).unwrap();
        assert_eq!(keys, vec!["main".to_string(), "agent:main:bob".to_string()], "no sessionKey is the main session; args name sessions too");
        let (keys, _) = named_keys("tools.invoke", &json!({"name": "sessions", "sessionKey": "agent:main:a", "args": {"targets": [{"sessionKey": "x"}]}})).unwrap();
        assert_eq!(keys, vec!["agent:main:a".to_string(), "x".to_string()]);
        assert!(named_keys("tools.invoke", &json!({"name": "sessions", "sessionKey": "a", "args": {"targets": [{"sessionKey": 1}]}})).is_err());
        assert!(session_fields("push.web.subscribe").is_empty(), "Web Push keys are not session keys");
        assert_eq!(named_keys("agent", &json!({"message": "hi", "to": "+1555"})).unwrap().0, vec!["main".to_string()], "an agent turn without a session key is judged as the main session");
        assert_eq!(named_keys("agent", &json!({"message": "hi", "sessionKey": "agent:main:a"})).unwrap().0, vec!["agent:main:a".to_string()]);
        assert!(session_fields("health").is_empty());
        let (keys, agent) = named_keys("sessions.preview", &json!({"keys": ["a", " b"], "agentId": "w"})).unwrap();
        assert_eq!((keys, agent.as_deref()), (vec!["a".to_string(), "b".to_string()], Some("w")), "keys are trimmed as the gateway trims them");
        assert!(named_keys("sessions.preview", &json!({"keys": ["a", 3]})).is_err(), "an unreadable key is not skipped");
        assert!(named_keys("chat.history", &json!({"sessionKey": {"x": 1}})).is_err());
        assert!(named_keys("chat.history", &json!([1])).is_err(), "params that are not an object are not read as naming nothing");
        assert_eq!(named_keys("tools.invoke", &json!({"sessionKey": "s", "key": {"not": "a session"}})).unwrap().0, vec!["s".to_string()], "key only names a session on sessions.*");
    }

    #[test]
    fn issue11_every_method_of_the_method_table_has_a_session_row() {
        let rows = session_table();
        for (method, _) in crate::protocol::method_table::METHODS {
            let row = rows.iter().find(|r| r.method == *method);
            assert!(row.is_some(), "{method} has no row in openclaw-2026.9.6-sessions.tsv (regenerate it with extract-session-fields.py)");
            let row = row.unwrap();
            assert!(!row.reason.is_empty() && !row.source.is_empty(), "{method}: a row needs where it was read and why");
        }
        for row in rows {
            assert!(crate::protocol::scopes::lookup(row.method).is_some(), "{} is in the session table but not in the method table", row.method);
            for aliases in &row.fields {
                assert!(aliases.iter().all(|f| !f.is_empty()), "{}: an empty field name", row.method);
            }
        }
    }

    #[test]
    fn event_keys_are_found_where_the_gateway_puts_them() {
        assert_eq!(event_session("chat", &json!({"sessionKey":"a","state":"final"})).unwrap(), EventSession { key: Some("a".into()), state: Some("final".into()) });
        assert_eq!(event_session("exec.approval.requested", &json!({"request":{"command":"ls","sessionKey":"b"}})).unwrap().key.as_deref(), Some("b"));
        assert_eq!(event_session("sessions.changed", &json!({"key":"c"})).unwrap().key.as_deref(), Some("c"));
        assert_eq!(event_session("cron", &json!({"key":"not a session"})).unwrap().key, None, "key names a session only on chat/agent/session events");
        assert_eq!(event_session("chat", &json!([1,2])).unwrap().key, None);
        assert!(event_session("chat", &json!({"sessionKey": ["agent:main:bob"]})).is_err(), "a key that is not a string is not read as no key");
        assert!(is_sessionless("tick") && !is_sessionless("chat"));
    }

    #[test]
    fn rosters_lose_foreign_entries() {
        let scope = SessionScope::default_for("alice", false);
        let d = SessionDefaults::default();
        let mut list = json!({"count": 3, "totalCount": 3, "sessions": [{"key": "agent:main:alice"}, {"key": "agent:main:main"}, {"key": "bob"}]});
        assert_eq!(filter_roster(&mut list, &d, &scope), 2);
        assert_eq!(list, json!({"count": 1, "totalCount": 1, "sessions": [{"key": "agent:main:alice"}]}));
        let mut search = json!({"results": [{"sessionKey": "alice"}, {"snippet": "no key"}]});
        assert_eq!(filter_roster(&mut search, &d, &scope), 1);
        assert_eq!(search["results"][0]["sessionKey"], "alice");
    }

    #[test]
    fn quota_and_busy_runs() {
        let ledger = SessionLedger::default();
        assert!(ledger.note_created("a", "k1", 2).is_ok());
        assert!(ledger.note_created("a", "k2", 2).is_ok());
        assert!(ledger.note_created("a", "k1", 2).is_ok(), "an existing session is not new");
        assert!(matches!(ledger.note_created("a", "k3", 2), Err(LedgerRefusal::Quota { limit: 2, .. })));
        assert!(ledger.note_created("b", "k3", 2).is_ok(), "quotas are per identity");
        assert!(ledger.note_created("a", "k9", 0).is_ok(), "0 means no limit");
        assert!(ledger.start_run("s", 0, 100).is_ok());
        assert!(matches!(ledger.start_run("s", 50, 150), Err(LedgerRefusal::Busy { .. })));
        assert!(ledger.start_run("s", 100, 200).is_ok(), "a run whose end was never seen expires");
        ledger.end_run("s");
        assert!(ledger.start_run("s", 101, 300).is_ok());
    }
}
