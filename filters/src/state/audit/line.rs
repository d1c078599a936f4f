//! An event written straight to its line: the record's fields in canonical order, every string
//! that can carry input redacted on the way, the chosen fields encrypted, then chained. This is
//! the writer's path for every event (the canonical form of `chain`, byte for byte, without
//! building a JSON map first: issue 14's cost per record).

use crate::state::audit::chain::{write_canonical, Chain};
use crate::state::audit::encrypt::FieldCipher;
use crate::state::audit::keys::AuditKeys;
use crate::state::audit::record::{control_family, Event};
use crate::state::audit::redact::{is_secret_field, Redactor};
use clawguard_policies::EncryptedField;
use serde_json::{Map, Value};
use std::io::Write as _;

/// What writing a line needs besides the event.
pub struct LineContext<'a> {
    /// Finds the secrets in strings.
    pub redactor: &'a Redactor,
    /// Keys the hashes that replace secrets and device ids.
    pub keys: &'a AuditKeys,
    /// The cipher and the fields it seals, if any.
    pub cipher: Option<(&'a FieldCipher, &'a [EncryptedField])>,
    /// A fresh nonce for each sealed field.
    pub nonce: &'a mut dyn FnMut() -> [u8; 12],
    /// The policy's version as a JSON string (quoted and escaped once, when it is set).
    pub policy_version_json: &'a [u8],
}

impl<'a> LineContext<'a> {
    fn sealed(&self, field: EncryptedField) -> Option<&'a FieldCipher> {
        self.cipher.and_then(|(c, which)| which.contains(&field).then_some(c))
    }

    /// A string that can carry input: redacted.
    fn text(&self, out: &mut Vec<u8>, s: &str) {
        match self.redactor.redact_str(s, self.keys) {
            Some(r) => write_str(out, &r),
            None => write_str(out, s),
        }
    }

    /// A string that can carry input, sealed when the policy encrypts its field.
    fn text_sealed(&mut self, out: &mut Vec<u8>, s: &str, field: EncryptedField, path: &str) {
        let Some(cipher) = self.sealed(field) else { return self.text(out, s) };
        let redacted = self.redactor.redact_str(s, self.keys);
        let sealed = cipher.seal(path, redacted.as_deref().unwrap_or(s), (self.nonce)());
        write_canonical(out, &sealed);
    }

    /// Any JSON value from a record's details: strings redacted, secret-named fields hashed
    /// whole, `excerpt` at the top of the details sealed when the policy says so.
    fn value(&mut self, out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::String(s) => self.text(out, s),
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.value(out, item);
                }
                out.push(b']');
            }
            Value::Object(map) => self.object(out, map, false),
            scalar => write_canonical(out, scalar),
        }
    }

    fn object(&mut self, out: &mut Vec<u8>, map: &Map<String, Value>, details: bool) {
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.push(b'{');
        for (i, (k, v)) in entries.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, k);
            out.push(b':');
            if is_secret_field(k) && !v.is_null() {
                let hashed = match v {
                    Value::String(s) => self.keys.hmac(s),
                    other => self.keys.hmac(&other.to_string()),
                };
                write_str(out, &hashed);
            } else if let (true, "excerpt", Value::String(s)) = (details, k.as_str(), v) {
                self.text_sealed(out, s, EncryptedField::Excerpt, "details.excerpt");
            } else {
                self.value(out, v);
            }
        }
        out.push(b'}');
    }
}

/// A JSON string as `serde_json` writes it (only `"`, `\` and control characters escaped).
fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// A string clawguard chose from a closed vocabulary, or hex digits, or a time: nothing in it
/// needs escaping, so it is copied as is.
fn write_plain(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'), "{s:?} needs escaping");
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Writes `"key":` after a comma unless it is the object's first entry.
fn key(out: &mut Vec<u8>, first: &mut bool, name: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Appends the chained line of `event` (and a newline) to `out`, stamped `ts` (RFC 3339 text).
/// The keys are written in the canonical (sorted) order; `tests` compare the result with the
/// canonical form of the same record built as a JSON value.
pub fn write_event(out: &mut Vec<u8>, chain: &mut Chain, event: &Event, ts: &str, ctx: &mut LineContext<'_>) {
    let start = out.len();
    let seq = chain.next_seq();
    let mut first = true;
    out.push(b'{');
    key(out, &mut first, "action");
    write_plain(out, event.action);
    key(out, &mut first, "actor");
    {
        let a = &event.actor;
        let mut first = true;
        out.push(b'{');
        if let Some(c) = &a.client {
            key(out, &mut first, "client");
            ctx.text(out, c);
        }
        if let Some(d) = &a.device_id {
            key(out, &mut first, "deviceIdHash");
            write_plain(out, &ctx.keys.hmac(d));
        }
        if let Some(id) = &a.identity {
            key(out, &mut first, "id");
            ctx.text(out, id);
        }
        key(out, &mut first, "kind");
        write_plain(out, if a.identity.is_some() { "identity" } else { "anonymous" });
        if let Some(r) = &a.role {
            key(out, &mut first, "role");
            ctx.text(out, r);
        }
        if !a.scopes.is_empty() {
            key(out, &mut first, "scopes");
            out.push(b'[');
            for (i, s) in a.scopes.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                ctx.text(out, s);
            }
            out.push(b']');
        }
        out.push(b'}');
    }
    key(out, &mut first, "category");
    write_plain(out, event.category.name());
    if let Some(c) = &event.conn {
        key(out, &mut first, "conn");
        ctx.text(out, c);
    }
    if let Some(rule) = &event.rule {
        key(out, &mut first, "control");
        out.extend_from_slice(b"{\"family\":");
        write_plain(out, control_family(rule));
        out.extend_from_slice(b",\"id\":");
        ctx.text(out, rule);
        out.push(b'}');
    }
    if !event.details.is_empty() {
        key(out, &mut first, "details");
        ctx.object(out, &event.details, true);
    }
    key(out, &mut first, "enforced");
    out.extend_from_slice(if event.enforced { b"true" } else { b"false" });
    // `hash` sorts here: after `enforced`, before `outcome` (whose comma comes next).
    let hash_at = out.len();
    key(out, &mut first, "outcome");
    write_plain(out, event.outcome.name());
    if let Some(p) = &event.peer {
        key(out, &mut first, "peer");
        ctx.text(out, p);
    }
    key(out, &mut first, "policy");
    {
        let mut first = true;
        out.push(b'{');
        key(out, &mut first, "decision");
        write_plain(out, event.decision);
        if let Some(rule) = &event.rule {
            key(out, &mut first, "id");
            ctx.text(out, rule);
        }
        if let Some(reason) = &event.reason {
            key(out, &mut first, "reason");
            ctx.text(out, reason);
        }
        out.push(b'}');
    }
    key(out, &mut first, "policy_version");
    out.extend_from_slice(ctx.policy_version_json);
    key(out, &mut first, "prev");
    write_plain(out, chain.head());
    if let Some(reason) = &event.reason {
        key(out, &mut first, "reason");
        ctx.text(out, reason);
    }
    if let Some(rule) = &event.rule {
        key(out, &mut first, "rule");
        ctx.text(out, rule);
    }
    key(out, &mut first, "seq");
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{seq}");
    key(out, &mut first, "severity");
    write_plain(out, event.severity.name());
    key(out, &mut first, "target");
    {
        let t = &event.target;
        let mut first = true;
        out.push(b'{');
        if let Some(c) = &t.command {
            key(out, &mut first, "command");
            ctx.text_sealed(out, c, EncryptedField::Command, "target.command");
        }
        key(out, &mut first, "kind");
        write_plain(out, t.kind);
        key(out, &mut first, "name");
        ctx.text(out, &t.name);
        if let Some(s) = &t.session {
            key(out, &mut first, "session");
            ctx.text_sealed(out, s, EncryptedField::Session, "target.session");
        }
        out.push(b'}');
    }
    key(out, &mut first, "ts");
    write_plain(out, ts);
    key(out, &mut first, "type");
    out.extend_from_slice(b"\"event\"}");
    chain.link(out, start, hash_at);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::audit::chain::canonical;
    use crate::state::audit::record::{Actor, Category, Outcome, Severity, Target};
    use serde_json::json;

    fn events() -> Vec<Event> {
        let mut all = Vec::new();
        all.push(Event::new(Category::Method, "ws.request", Outcome::Success, Target::new("method", "chat.send")));
        let mut e = Event::new(Category::Config, "ws.message", Outcome::Denied, Target::new("method", "config.apply"));
        e.actor = Actor { identity: Some("local".into()), role: Some("operator".into()), scopes: vec!["operator.read".into(), "x\"y".into()], device_id: Some("dev-1".into()), client: Some("cli/cli".into()) };
        e.rule = Some("scope".into());
        e.reason = Some("config.apply needs operator.admin; token=abcdefgh1234 here".into());
        e.conn = Some("ws-7".into());
        e.peer = Some("10.0.0.1".into());
        e.severity = Severity::High;
        e.enforced = false;
        e.decision = "would_refuse";
        e.details.insert("direction".into(), json!("c2s"));
        e.details.insert("requested".into(), json!(["operator.admin", "sk-abcdefghijklmnopqrstuvwxyz"]));
        e.details.insert("token".into(), json!("plain"));
        e.details.insert("nested".into(), json!({"z": [1, 2.5, null, true], "apiKey": {"a": 1}, "a\nb": "\u{2028}\u{0007}", "password": null}));
        e.details.insert("excerpt".into(), json!("say Bearer abcdefghijklmnop please"));
        all.push(e);
        let mut e = Event::new(Category::Exec, "ws.message", Outcome::Denied, Target::new("method", "node.invoke"));
        e.target.command = Some("curl -H 'Authorization: Bearer abcdefghijklmnop1234' x".into());
        e.target.session = Some("agent:main:main".into());
        e.rule = Some("exec-policy".into());
        all.push(e);
        all
    }

    /// The same record built as a JSON value and written in canonical form: the oracle.
    fn oracle(e: &Event, ts: &str, version: &str, seq: u64, prev: &str, ctx: &LineContext<'_>) -> Value {
        let text = |s: &str| Value::from(ctx.redactor.redact_str(s, ctx.keys).unwrap_or_else(|| s.to_string()));
        let mut actor = json!({"kind": if e.actor.identity.is_some() { "identity" } else { "anonymous" }});
        if let Some(c) = &e.actor.client {
            actor["client"] = text(c);
        }
        if let Some(d) = &e.actor.device_id {
            actor["deviceIdHash"] = Value::from(ctx.keys.hmac(d));
        }
        if let Some(i) = &e.actor.identity {
            actor["id"] = text(i);
        }
        if let Some(r) = &e.actor.role {
            actor["role"] = text(r);
        }
        if !e.actor.scopes.is_empty() {
            actor["scopes"] = Value::Array(e.actor.scopes.iter().map(|s| text(s)).collect());
        }
        let mut target = json!({"kind": e.target.kind, "name": text(&e.target.name)});
        if let Some(c) = &e.target.command {
            target["command"] = text(c);
        }
        if let Some(s) = &e.target.session {
            target["session"] = text(s);
        }
        let mut policy = json!({"decision": e.decision});
        let mut r = json!({"type": "event", "ts": ts, "category": e.category.name(), "action": e.action, "outcome": e.outcome.name(), "severity": e.severity.name(), "actor": actor, "target": target, "policy_version": version, "enforced": e.enforced, "seq": seq, "prev": prev});
        if let Some(rule) = &e.rule {
            policy["id"] = text(rule);
            r["rule"] = text(rule);
            r["control"] = json!({"family": control_family(rule), "id": text(rule)});
        }
        if let Some(reason) = &e.reason {
            policy["reason"] = text(reason);
            r["reason"] = text(reason);
        }
        r["policy"] = policy;
        if let Some(c) = &e.conn {
            r["conn"] = text(c);
        }
        if let Some(p) = &e.peer {
            r["peer"] = text(p);
        }
        if !e.details.is_empty() {
            let mut d = Value::Object(e.details.clone());
            ctx.redactor.redact(&mut d, ctx.keys);
            r["details"] = d;
        }
        r
    }

    #[test]
    fn issue14_an_event_line_is_the_canonical_form_of_its_redacted_record() {
        let keys = AuditKeys::from_seed([4; 32]);
        let redactor = Redactor::new(&[]).unwrap();
        let mut nonce = || [1u8; 12];
        let mut ctx = LineContext { redactor: &redactor, keys: &keys, cipher: None, nonce: &mut nonce, policy_version_json: br#""v9""# };
        let mut chain = Chain::default();
        for e in events() {
            let (seq, prev) = (chain.next_seq(), chain.head().to_string());
            let mut out = b"earlier\n".to_vec();
            write_event(&mut out, &mut chain, &e, "2026-12-01T00:00:00.000000001Z", &mut ctx);
            let line = std::str::from_utf8(&out[8..]).unwrap().strip_suffix('\n').unwrap();
            let parsed: Value = serde_json::from_str(line).unwrap();
            let mut expected = oracle(&e, "2026-12-01T00:00:00.000000001Z", "v9", seq, &prev, &ctx);
            expected["hash"] = parsed["hash"].clone();
            assert_eq!(line, canonical(&expected), "the line is the canonical text of the record");
            let Value::Object(m) = &parsed else { unreachable!() };
            assert_eq!(crate::state::audit::chain::record_hash(m, &prev), m["hash"]);
            assert_eq!(chain.head(), m["hash"]);
            assert!(!line.contains("abcdefghijklmnop") && !line.contains("\"plain\""), "{line}");
            if e.target.name == "config.apply" {
                // As the gateway's `security.event` reads.
                assert_eq!((parsed["category"].as_str(), parsed["outcome"].as_str(), parsed["severity"].as_str()), (Some("config"), Some("denied"), Some("high")));
                assert!(parsed["actor"]["deviceIdHash"].as_str().unwrap().starts_with("hmac-sha256:"));
                assert_eq!(parsed["control"], json!({"family": "access", "id": "scope"}));
                assert_eq!(parsed["policy"]["decision"], "would_refuse");
                assert_eq!(parsed["enforced"], false);
            }
        }
    }

    #[test]
    fn issue14_an_event_line_seals_the_fields_the_policy_encrypts() {
        let keys = AuditKeys::from_seed([4; 32]);
        let redactor = Redactor::new(&[]).unwrap();
        let cipher = FieldCipher::new([6; 32]);
        let which = [EncryptedField::Command, EncryptedField::Session, EncryptedField::Excerpt];
        let mut n = 0u8;
        let mut nonce = move || {
            n += 1;
            [n; 12]
        };
        let mut ctx = LineContext { redactor: &redactor, keys: &keys, cipher: Some((&cipher, &which)), nonce: &mut nonce, policy_version_json: br#""v9""# };
        let mut chain = Chain::default();
        let mut out = Vec::new();
        for e in events() {
            write_event(&mut out, &mut chain, &e, "2026-12-01T00:00:00.000000001Z", &mut ctx);
        }
        let lines: Vec<Value> = std::str::from_utf8(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(lines[1]["details"]["excerpt"]["enc"] == "aes-256-gcm");
        let excerpt = cipher.open("details.excerpt", &lines[1]["details"]["excerpt"]).unwrap();
        assert!(excerpt.starts_with("say hmac-sha256:"), "redacted before sealing: {excerpt}");
        assert_eq!(cipher.open("target.session", &lines[2]["target"]["session"]).unwrap(), "agent:main:main");
        let command = cipher.open("target.command", &lines[2]["target"]["command"]).unwrap();
        assert!(command.starts_with("curl -H 'Authorization: hmac-sha256:"), "{command}");
        assert!(!std::str::from_utf8(&out).unwrap().contains("curl"));
    }
}
