//! The HTTP surface: a request becomes one model, judged on the path the gateway routes to, by
//! the same identities, ceilings, method and tool lists, exec policy, session ownership, limits
//! and dry-run as a WebSocket request (`Access::judge_operator_request`), so one rule means one
//! thing on both surfaces. The proxy only drives it: [`admit`] when the request head is read,
//! [`judge_body`] when a body the route needs is whole, [`HeaderRules::plan`] on the answer.
//!
//! What it uses from the layers below: the canonical path (`codec::url_path`, the WHATWG URL
//! pathname as Node parses it), the gateway's route table (`protocol::routes`), and the checks
//! of browser origins (`checks::origin`), URL ingestion (`checks::ingest`) and response headers
//! (`checks::headers`), compiled from `[http]` in `checks::http_policy`.

use crate::surfaces::access::{Action, Judgement};
use crate::checks::context::Env;
use crate::checks::identity::{credential_sha256, CompiledIdentity, Evidence, Resolution};
use crate::protocol::peer::Peer;
use crate::protocol::sessions::SessionDefaults;
use crate::codec::url_path;
pub use crate::checks::headers::{HeaderOp, HeaderRules, Known, NoHeaders, UpstreamHeaders};
pub use crate::checks::http_policy::HttpPolicy;
use crate::protocol::routes::{NoRoute, Route, RouteClass};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The tools the gateway refuses on `POST /tools/invoke` unless `gateway.tools.allow` names them
/// (`DEFAULT_GATEWAY_HTTP_TOOL_DENY`, `src/security/dangerous-tools.ts`, 2026.9.6). clawguard
/// refuses them whatever the gateway's configuration, so a release or a config that lets one
/// through (GHSA-943q-mwmv-hhvh) does not; `http.reenable_tools` names exceptions.
pub const GATEWAY_HTTP_TOOL_DENY: &[&str] = &[
    "exec", "spawn", "shell", "fs_write", "fs_delete", "fs_move", "apply_patch", "terminal", "portal", "sessions_spawn", "sessions_send", "conversations_list",
    "conversations_send", "conversations_turn", "automations", "gateway", "plugins", "nodes", "computer", "mobile_ui", "openclaw",
];

/// Request headers that must appear at most once: clawguard and the gateway could read two
/// differently (Node keeps the first `Authorization`, joins two custom headers with `, `).
const SINGLE_HEADERS: &[&str] = &["authorization", "origin", "host", "content-length", "x-openclaw-token", "x-openclaw-session-key", "x-openclaw-agent-id", "x-openclaw-agent", "x-openclaw-model"];

/// Request headers, as the proxy has them.
pub trait Headers {
    /// The first value of header `name` (lowercase).
    fn first(&self, name: &str) -> Option<&str>;
    /// How many times header `name` appears.
    fn count(&self, name: &str) -> usize;
    /// Whether any header name appears more than once (a cheap screen before [`Headers::count`]).
    fn any_repeated(&self) -> bool;
}

impl Headers for Vec<(String, String)> {
    fn first(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn count(&self, name: &str) -> usize {
        self.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).count()
    }

    fn any_repeated(&self) -> bool {
        self.iter().enumerate().any(|(i, (k, _))| self[..i].iter().any(|(j, _)| j.eq_ignore_ascii_case(k)))
    }
}

/// One HTTP request head.
pub struct HttpRequest<'a> {
    /// The method (`GET`, `POST`, …).
    pub method: &'a str,
    /// The path as sent (before canonicalisation).
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The headers.
    pub headers: &'a dyn Headers,
    /// Whether it asks for a WebSocket upgrade.
    pub upgrade: bool,
}

impl HttpRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.first(name)
    }
}

/// clawguard's refusal of an HTTP request, in the gateway's error shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRefusal {
    /// The status.
    pub status: u16,
    /// `error.type`.
    pub kind: &'static str,
    /// The rule responsible.
    pub rule: String,
    /// Why, in words.
    pub reason: String,
    /// `error.details` (`code`, the rule's specifics).
    pub details: Value,
    /// Enforced, or only recorded (dry-run).
    pub enforce: bool,
    /// `Retry-After`, seconds (rate limits).
    pub retry_after_seconds: Option<u64>,
}

impl HttpRefusal {
    fn new(status: u16, kind: &'static str, rule: &str, reason: String, details: Value) -> Self {
        HttpRefusal { status, kind, rule: rule.into(), reason, details, enforce: true, retry_after_seconds: None }
    }

    /// The answer body: `{"error":{"message","type","details","source":"clawguard"}}`.
    pub fn body(&self) -> Vec<u8> {
        let v = json!({ "error": { "message": format!("clawguard: {}", self.reason), "type": self.kind, "details": self.details, "rule": self.rule, "source": "clawguard" } });
        serde_json::to_vec(&v).expect("a JSON value always serialises")
    }
}

/// What the proxy does with a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "plan", rename_all = "snake_case")]
pub enum BodyPlan {
    /// Forward it as it comes, refusing it (413) past `limit` bytes.
    Stream {
        /// Bytes.
        limit: usize,
    },
    /// Hold it whole (at most `limit` bytes, else 413) and call [`judge_body`].
    Judge {
        /// Bytes.
        limit: usize,
    },
}

/// A request head clawguard admits.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The route.
    pub route: Route,
    /// The canonical path.
    pub path: String,
    /// The identity and how it was chosen.
    pub resolution: Resolution,
    /// What to do with the body.
    pub body: BodyPlan,
    /// Request headers to remove before forwarding (an override the identity may not set).
    pub remove: Vec<&'static str>,
    /// Refusals recorded but not enforced (dry-run).
    pub recorded: Vec<HttpRefusal>,
    /// Whether the audit log records this request as allowed (`audit.record_allowed`).
    pub audited: bool,
}

impl Admitted {
    /// The identity.
    pub fn identity(&self) -> &Arc<CompiledIdentity> {
        &self.resolution.identity
    }

    /// An enforced refusal ends the request; a dry-run one is recorded.
    fn check(&mut self, r: Option<HttpRefusal>) -> Result<(), Box<HttpRefusal>> {
        match r {
            Some(r) if r.enforce => Err(Box::new(r)),
            Some(r) => {
                self.recorded.push(r);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// The identity an HTTP request's evidence resolves to: certificate, address, and the bearer
/// credential (`Authorization: Bearer`, or the hooks' `X-OpenClaw-Token`).
pub fn resolve(env: &Env<'_>, peer: &Peer, req: &HttpRequest<'_>) -> Resolution {
    let bearer = req.header("authorization").and_then(|v| v.strip_prefix("Bearer ")).or_else(|| req.header("x-openclaw-token"));
    let token_sha256 = bearer.map(|t| credential_sha256(t.trim()));
    env.guard.identities.resolve(Evidence { peer, device_id: None, token_sha256: token_sha256.as_deref() })
}

fn bad_request(rule: &str, reason: String, code: &str) -> Box<HttpRefusal> {
    Box::new(HttpRefusal::new(400, "invalid_request", rule, reason, json!({ "code": code })))
}

/// Whether the query names `token` (as `URLSearchParams` decodes names).
fn query_has_token(query: &str) -> bool {
    query.split('&').any(|pair| {
        // `split` always yields a first piece; the default is never taken.
        let name = pair.split('=').next().unwrap_or("");
        // A malformed escape stays as it is, as URLSearchParams leaves it.
        let decoded = name.replace('+', " ");
        percent_decode(&decoded).unwrap_or(decoded) == "token"
    })
}

/// Percent-decodes `s` as `decodeURIComponent` does (`None`: a malformed escape or not UTF-8).
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The checks of a request head, in order: path, duplicate headers, identity, route, origin,
/// query credentials, rate limit, declared body size, and the operator checks of routes whose
/// decision needs no body.
pub fn admit(env: &Env<'_>, peer: &Peer, req: &HttpRequest<'_>) -> Result<Admitted, Box<HttpRefusal>> {
    let path = url_path::canonical_path(req.path).map_err(|e| bad_request("bad-path", e.to_string(), "BAD_PATH"))?;
    if req.headers.any_repeated() {
        if let Some(name) = SINGLE_HEADERS.iter().find(|n| req.headers.count(n) > 1) {
            return Err(bad_request("unreadable-input", format!("the request carries {name} more than once, which clawguard and the gateway could read differently"), "DUPLICATE_HEADER"));
        }
    }
    let http = &env.guard.http;
    let resolution = resolve(env, peer, req);
    // From here on every refusal follows the identity's mode: in dry-run it is recorded and the
    // request forwarded, as on the WebSocket.
    let enforce = resolution.identity.mode.unwrap_or(env.guard.mode) == clawguard_policies::Mode::Enforce;
    let mut recorded = Vec::new();
    let mut check = |mut r: HttpRefusal| -> Result<(), Box<HttpRefusal>> {
        r.enforce = enforce;
        if enforce {
            return Err(Box::new(r));
        }
        recorded.push(r);
        Ok(())
    };
    if let Some(origin) = req.header("origin") {
        let state_changing = !matches!(req.method, "GET" | "HEAD" | "OPTIONS");
        if req.upgrade || state_changing {
            if let Some(why) = http.origins.refusal(origin) {
                check(HttpRefusal::new(403, "forbidden", "origin", why, json!({ "code": "ORIGIN_NOT_ALLOWED", "origin": origin })))?;
            }
        }
    }
    let route = match http.routes.route(req.method, &path) {
        Ok(r) => r,
        Err(no_route) => {
            let refusal = match no_route {
                NoRoute::Unlisted => {
                    let reason = format!("no route of the gateway's serves {} {path}, and http.allow_paths does not list it", req.method);
                    HttpRefusal::new(404, "not_found", "http-route", reason, json!({ "code": "ROUTE_NOT_LISTED", "path": path }))
                }
                NoRoute::Method(methods) => {
                    let reason = format!("{path} is served for {} only", methods.join(", "));
                    HttpRefusal::new(405, "method_not_allowed", "http-route", reason, json!({ "code": "METHOD_NOT_ALLOWED", "allow": methods }))
                }
            };
            check(refusal)?;
            // Dry-run: forwarded as a path the policy allows, nothing more checked.
            Route { class: RouteClass::Allowed, session_segment: None }
        }
    };
    let class = route.class;
    if class == RouteClass::Hooks && req.query.is_some_and(query_has_token) {
        let reason = "a hook token in the query string is refused (it ends up in logs and history): send Authorization: Bearer or X-OpenClaw-Token".to_string();
        check(HttpRefusal::new(400, "invalid_request", "hooks-token", reason, json!({ "code": "QUERY_TOKEN" })))?;
    }
    let limit = http.body_limit(class);
    if let Some(declared) = req.header("content-length") {
        match declared.trim().parse::<u64>() {
            Ok(n) if n > limit as u64 => check(*too_large(&path, limit))?,
            Ok(_) => {}
            Err(_) => return Err(bad_request("unreadable-input", format!("Content-Length {declared:?} is not a number"), "BAD_CONTENT_LENGTH")),
        }
    }
    let audited = match env.guard.record_allowed {
        None | Some(clawguard_policies::RecordAllowed::None) => false,
        Some(clawguard_policies::RecordAllowed::All) => true,
        Some(clawguard_policies::RecordAllowed::Sensitive) => !matches!(req.method, "GET" | "HEAD" | "OPTIONS"),
    };
    if env.audit_down && audited {
        let mut r = *audit_unavailable(req.method, &path);
        r.enforce = enforce;
        check(r)?;
    }
    let mut admitted = Admitted { route, path, resolution, body: BodyPlan::Stream { limit }, remove: Vec::new(), recorded, audited };
    if let Some(r) = crate::state::limits::HttpRoute::of(&admitted.path) {
        if let Err(limited) = env.guard.clients.http_shared(env.shared, r, &admitted.identity().name, peer.ip) {
            let key = if r == crate::state::limits::HttpRoute::Hooks { peer.ip.to_string() } else { format!("identity {:?}", admitted.identity().name) };
            let retry_ms = limited.retry_after.as_millis().max(1);
            let reason = format!("rate limit {} exceeded for {key}: retry in {retry_ms} ms", limited.limit);
            let mut refusal = HttpRefusal::new(429, "rate_limited", &format!("rate-limit:{}", limited.limit), reason, json!({ "code": "RATE_LIMITED", "limit": limited.limit }));
            refusal.retry_after_seconds = Some(u64::try_from(retry_ms.div_ceil(1000)).unwrap_or(u64::MAX).max(1));
            refusal.enforce = !limited.shadow && enforce;
            admitted.check(Some(refusal))?;
        }
    }
    let operator = |admitted: &Admitted, method: &str, params: &Value| operator_check(env, peer, admitted, method, params, enforce);
    match class {
        RouteClass::ToolsInvoke | RouteClass::ChatCompletions | RouteClass::Responses | RouteClass::Hooks => {
            admitted.body = BodyPlan::Judge { limit };
            if matches!(class, RouteClass::ChatCompletions | RouteClass::Responses) && req.header("x-openclaw-session-key").is_some() && !admitted.identity().session_key_header {
                admitted.remove.push("x-openclaw-session-key");
            }
        }
        RouteClass::SessionHistory | RouteClass::SessionKill => {
            // Session routes always carry their (non-empty) key segment; an absent one decodes to
            // an empty key, refused below.
            let segment = admitted.route.session_segment.clone().unwrap_or_default();
            let Some(key) = percent_decode(&segment).filter(|k| !crate::codec::js::trim(k).is_empty()) else {
                let mut r = *bad_request("unreadable-input", format!("the session key {segment:?} is not a non-empty, percent-encoded UTF-8 key"), "UNREADABLE_SESSION_KEY");
                r.enforce = enforce;
                return admitted.check(Some(r)).map(|()| admitted);
            };
            let (method, field) = if class == RouteClass::SessionHistory { ("chat.history", "sessionKey") } else { ("sessions.abort", "key") };
            let r = operator(&admitted, method, &json!({ field: crate::codec::js::trim(&key) }));
            admitted.check(r)?;
        }
        RouteClass::Models | RouteClass::Embeddings => {
            let method = class.operator_method().unwrap_or("models.list");
            let r = operator(&admitted, method, &json!({}));
            admitted.check(r)?;
        }
        RouteClass::Mcp => {
            let reason = "/mcp is a tool surface clawguard cannot judge yet (its tool calls are not checked against allow_tools, the exec policy or session ownership): use /tools/invoke, or list /mcp in http.allow_paths".to_string();
            let mut r = HttpRefusal::new(403, "forbidden", "http-route", reason, json!({ "code": "ROUTE_NOT_JUDGEABLE", "path": admitted.path }));
            r.enforce = enforce;
            admitted.check(Some(r))?;
        }
        _ => {}
    }
    if let Some(scope) = class.extra_scope() {
        if !crate::protocol::scopes::satisfies(admitted.identity().ceiling, scope) {
            let reason = format!("{} needs {}, which identity {:?} does not hold", admitted.path, scope.name(), admitted.identity().name);
            let mut r = HttpRefusal::new(403, "forbidden", "scope", reason, json!({ "code": "MISSING_SCOPE", "missingScope": scope.name(), "identity": admitted.identity().name }));
            r.enforce = enforce;
            admitted.check(Some(r))?;
        }
    }
    Ok(admitted)
}

/// A WebSocket upgrade's checks before the engine takes over: the path and the origin.
pub fn admit_upgrade(env: &Env<'_>, req: &HttpRequest<'_>) -> Result<(), Box<HttpRefusal>> {
    url_path::canonical_path(req.path).map_err(|e| bad_request("bad-path", e.to_string(), "BAD_PATH"))?;
    if req.headers.count("origin") > 1 {
        return Err(bad_request("unreadable-input", "the upgrade carries Origin more than once".into(), "DUPLICATE_HEADER"));
    }
    match req.header("origin").and_then(|o| env.guard.http.origins.refusal(o).map(|why| (o, why))) {
        Some((origin, why)) => Err(Box::new(HttpRefusal::new(403, "forbidden", "origin", why, json!({ "code": "ORIGIN_NOT_ALLOWED", "origin": origin })))),
        None => Ok(()),
    }
}

/// A request refused because the audit log cannot record it (`audit.on_failure = "block"`).
pub fn audit_unavailable(method: &str, path: &str) -> Box<HttpRefusal> {
    let reason = format!("the audit log cannot record now (audit.on_failure = \"block\") and an allowed {method} {path} must be recorded: refused until the log writes again");
    Box::new(HttpRefusal::new(503, "unavailable", "audit", reason, json!({ "code": "AUDIT_UNAVAILABLE" })))
}

/// A body over the route's limit.
pub fn too_large(path: &str, limit: usize) -> Box<HttpRefusal> {
    Box::new(HttpRefusal::new(413, "payload_too_large", "body-limit", format!("the body of {path} is over {limit} bytes"), json!({ "code": "PAYLOAD_TOO_LARGE", "limit": limit })))
}

/// The operator checks of a WebSocket request, applied to the method the route is authorised as.
fn operator_check(env: &Env<'_>, peer: &Peer, admitted: &Admitted, method: &str, params: &Value, enforce: bool) -> Option<HttpRefusal> {
    let (judgement, lists_sessions) = crate::surfaces::access::Access::judge_operator_request(env, peer.clone(), admitted.resolution.clone(), method, params);
    if let Some(r) = refusal_of(&judgement) {
        return Some(r);
    }
    if lists_sessions {
        let reason = format!("identity {:?} sees only its own sessions, and a session listing over HTTP cannot be filtered: list sessions over the WebSocket", admitted.identity().name);
        let mut r = HttpRefusal::new(403, "forbidden", "session-owner", reason, json!({ "code": "SESSION_LISTING_UNFILTERABLE", "identity": admitted.identity().name }));
        r.enforce = enforce;
        return Some(r);
    }
    None
}

/// A hook past a spend budget of its identity: the WebSocket's `BUDGET_EXCEEDED` refusal of a
/// run-starting request (hooks carry hook tokens, not operator scopes, so the rest of the
/// operator check does not apply to them).
fn spend_refusal(env: &Env<'_>, admitted: &Admitted, enforce: bool) -> Option<HttpRefusal> {
    let check = env.guard.spend().check(&admitted.identity().name, env.now_ms);
    if let Some(reason) = check.unmeasured {
        let details = json!({ "code": "SPEND_UNKNOWN", "source": "clawguard", "rule": "spend:unmeasured" });
        let mut r = HttpRefusal::new(503, "unavailable", "spend:unmeasured", reason, details);
        r.enforce = enforce;
        return Some(r);
    }
    let (exceeded, enforce) = match (check.refused, check.shadowed.into_iter().next()) {
        (Some(e), _) => (e, enforce),
        (None, Some(e)) => (e, false),
        (None, None) => return None,
    };
    let retry_ms = exceeded.resets_at_ms.saturating_sub(env.now_ms).max(1);
    let resets_at = crate::state::spend::reset_time(exceeded.resets_at_ms);
    let details = json!({ "code": "BUDGET_EXCEEDED", "budget": exceeded.budget, "resetsAt": resets_at, "source": "clawguard", "rule": format!("spend:{}", exceeded.budget) });
    let mut r = HttpRefusal::new(429, "budget_exceeded", &format!("spend:{}", exceeded.budget), exceeded.reason(), details);
    r.enforce = enforce;
    r.retry_after_seconds = Some(retry_ms.div_ceil(1000).max(1));
    Some(r)
}

/// An HTTP refusal for a WebSocket judgement that refuses, with the same rule and reason.
fn refusal_of(j: &Judgement) -> Option<HttpRefusal> {
    let (reply, rule, reason) = match &j.action {
        Action::Forward | Action::Rewrite { .. } | Action::Answer { .. } => return None,
        Action::Refuse { reply, rule, reason, .. } => (Some(reply), rule, reason),
        Action::Drop { rule, reason } | Action::Close { rule, reason, .. } => (None, rule, reason),
    };
    // The reply is clawguard's own frame; without one (drop, close) the refusal is a 403 with a
    // generic code: still a refusal.
    let error = reply.and_then(|r| serde_json::from_slice::<Value>(r).ok()).map(|v| v["error"].clone()).unwrap_or(Value::Null);
    let details = error.get("details").cloned().unwrap_or_else(|| json!({ "code": "POLICY_DENIED" }));
    let (status, kind) = match error["code"].as_str() {
        Some("INVALID_REQUEST") => (400, "invalid_request"),
        Some("UNAVAILABLE") if details["code"] == "RATE_LIMITED" => (429, "rate_limited"),
        Some("UNAVAILABLE") if details["code"] == "BUDGET_EXCEEDED" => (429, "budget_exceeded"),
        Some("UNAVAILABLE") => (503, "unavailable"),
        _ => (403, "forbidden"),
    };
    let mut r = HttpRefusal::new(status, kind, rule, reason.clone(), details);
    r.enforce = j.enforce;
    r.retry_after_seconds = error["retryAfterMs"].as_u64().map(|ms| ms.div_ceil(1000).max(1));
    Some(r)
}

/// Reads a body as the gateway does: a UTF-8 BOM stripped, then `JSON.parse`.
fn read_body(path: &str, body: &[u8]) -> Result<Value, Box<HttpRefusal>> {
    let text = std::str::from_utf8(body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body))
        .map_err(|_| bad_request("unreadable-input", format!("the body of {path} is not UTF-8 text, so clawguard cannot judge it"), "UNREADABLE_BODY"))?;
    if text.trim().is_empty() {
        // The handlers read an empty body as `{}`.
        return Ok(json!({}));
    }
    crate::codec::js::read_json(&format!("the body of {path}"), text).map_err(|e| bad_request("unreadable-input", e.to_string(), "UNREADABLE_BODY"))
}

/// The agent an OpenAI-compatible request addresses: the agent header, else the `model`
/// (`openclaw/<id>`, `openclaw:<id>`, `agent:<id>`); `None`: the default agent.
fn compat_agent(req: &HttpRequest<'_>, body: &Value) -> Option<String> {
    let header = req.header("x-openclaw-agent-id").or_else(|| req.header("x-openclaw-agent")).map(crate::codec::js::trim).filter(|a| !a.is_empty());
    if let Some(a) = header {
        return Some(a.to_ascii_lowercase());
    }
    let model = crate::codec::js::trim(body["model"].as_str().unwrap_or("")).to_ascii_lowercase();
    ["openclaw/", "openclaw:", "agent:"].iter().find_map(|p| model.strip_prefix(p)).filter(|id| *id != "default" && !id.is_empty()).map(str::to_string)
}

/// The text of the last user turn of an OpenAI-compatible body (`messages[].content` of chat
/// completions, `input` of responses: a string, or the text parts joined); `None` when there is
/// no user turn with text (then no chat command can be in it).
fn compat_turn_text(class: RouteClass, body: &Value) -> Option<String> {
    let text_of = |content: &Value| -> Option<String> {
        match content {
            Value::String(s) => Some(s.clone()),
            Value::Array(parts) => {
                let texts: Vec<&str> = parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
                (!texts.is_empty()).then(|| texts.join("\n"))
            }
            _ => None,
        }
    };
    let turns = match class {
        RouteClass::ChatCompletions => body.get("messages")?,
        _ => match body.get("input")? {
            Value::String(s) => return Some(s.clone()),
            items => items,
        },
    };
    turns.as_array()?.iter().rev().find(|t| t.get("role").and_then(Value::as_str) == Some("user")).and_then(|t| text_of(t.get("content")?))
}

/// The checks of a whole body the route needs ([`BodyPlan::Judge`]).
pub fn judge_body(env: &Env<'_>, peer: &Peer, admitted: &mut Admitted, req: &HttpRequest<'_>, body: &[u8]) -> Result<(), Box<HttpRefusal>> {
    let class = admitted.route.class;
    let enforce = admitted.identity().mode.unwrap_or(env.guard.mode) == clawguard_policies::Mode::Enforce;
    let path = &admitted.path;
    let read = read_body(path, body).and_then(|v| if v.is_object() { Ok(v) } else { Err(bad_request("unreadable-input", format!("the body of {path} is not a JSON object"), "UNREADABLE_BODY")) });
    let value = match read {
        Ok(v) => v,
        Err(mut r) => {
            // Dry-run: recorded, and forwarded unjudged (nothing else can be read of it).
            r.enforce = enforce;
            return admitted.check(Some(*r));
        }
    };
    let http = &env.guard.http;
    match class {
        RouteClass::ToolsInvoke => {
            let tool = crate::codec::js::string_field(&value, &["name", "tool"]).unwrap_or("");
            if GATEWAY_HTTP_TOOL_DENY.contains(&tool) && !http.reenable_tools.iter().any(|t| t == tool) {
                let reason = format!("tool {tool:?} is on the gateway's HTTP deny list, which clawguard always applies (http.reenable_tools does not name it)");
                return Err(Box::new(HttpRefusal::new(403, "forbidden", "http-tool-deny", reason, json!({ "code": "TOOL_DENIED_ON_HTTP", "tool": tool }))));
            }
            let r = operator_check(env, peer, admitted, "tools.invoke", &value, enforce);
            admitted.check(r)
        }
        RouteClass::ChatCompletions | RouteClass::Responses => {
            let identity = admitted.identity().clone();
            for fetch in crate::checks::ingest::urls(&value) {
                if let Some(reason) = crate::checks::ingest::refusal(&fetch, http.max_data_url_bytes, |h| identity.may_fetch(h)) {
                    let mut r = HttpRefusal::new(403, "forbidden", "url-ingestion", reason, json!({ "code": "URL_NOT_ALLOWED", "path": fetch.path, "identity": identity.name }));
                    r.enforce = enforce;
                    admitted.check(Some(r))?;
                }
            }
            let agent = compat_agent(req, &value);
            let header = req.header("x-openclaw-session-key").filter(|_| !admitted.remove.contains(&"x-openclaw-session-key")).map(crate::codec::js::trim).filter(|k| !k.is_empty());
            let prefix = if class == RouteClass::ChatCompletions { "openai" } else { "openresponses" };
            let user = value["user"].as_str().map(crate::codec::js::trim).filter(|u| !u.is_empty());
            let agent_name = agent.clone().unwrap_or_else(|| SessionDefaults::default().default_agent_id);
            // Without a key or a user the gateway starts a fresh session of its own (a random id).
            let key = header.map(str::to_string).or_else(|| user.map(|u| format!("agent:{agent_name}:{prefix}-user:{u}")));
            let mut params = json!({});
            if let Some(k) = key {
                params["sessionKey"] = Value::String(k);
            }
            // The turn's text is what the gateway may run as a chat command (`/pair`, `/config`,
            // `/bash`): it is judged as a chat.send message is.
            if let Some(text) = compat_turn_text(class, &value) {
                params["message"] = Value::String(text);
            }
            if let Some(a) = agent {
                params["agentId"] = Value::String(a);
            }
            let r = operator_check(env, peer, admitted, "chat.send", &params, enforce);
            admitted.check(r)
        }
        RouteClass::Hooks => {
            // A hook starts an agent run: spend budgets apply as to chat.send.
            if let Some(r) = spend_refusal(env, admitted, enforce) {
                admitted.check(Some(r))?;
            }
            let Some(key) = crate::codec::js::string_field(&value, &["sessionKey"]) else { return Ok(()) };
            let agent = crate::codec::js::string_field(&value, &["agentId"]);
            let identity = admitted.identity().clone();
            let canonical = SessionDefaults::default().canonical(key, agent);
            if identity.sessions.allows(&canonical) {
                return Ok(());
            }
            let reason = format!("session {key:?} ({canonical}) belongs to another identity: {:?} may only use sessions matching {}", identity.name, identity.sessions.describe());
            let mut r = HttpRefusal::new(403, "forbidden", "session-owner", reason, json!({ "code": "SESSION_NOT_OWNED", "sessionKey": canonical, "identity": identity.name }));
            r.enforce = enforce;
            admitted.check(Some(r))
        }
        _ => Ok(()),
    }
}

/// A whole HTTP decision, for `clawguard decide` and the case corpus.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpDecision {
    /// `allow`, `would-deny` (dry-run) or `deny`.
    pub decision: &'static str,
    /// The canonical path, when it could be read.
    pub path: Option<String>,
    /// The route class.
    pub route: Option<&'static str>,
    /// The identity.
    pub identity: Option<String>,
    /// How it was chosen.
    pub identity_reason: Option<String>,
    /// The refusal (enforced, or the first recorded one).
    pub refusal: Option<Box<HttpRefusal>>,
    /// Request headers removed before forwarding.
    pub removed_headers: Vec<&'static str>,
    /// What would happen with the body.
    pub body: Option<BodyPlan>,
}

/// Judges a request and its body, as the proxy would.
pub fn decide(env: &Env<'_>, peer: &Peer, req: &HttpRequest<'_>, body: &[u8]) -> HttpDecision {
    if req.upgrade {
        let refusal = admit_upgrade(env, req).err();
        return HttpDecision { decision: if refusal.is_some() { "deny" } else { "allow" }, path: url_path::canonical_path(req.path).ok(), route: Some("websocket"), identity: None, identity_reason: None, refusal, removed_headers: vec![], body: None };
    }
    let mut admitted = match admit(env, peer, req) {
        Ok(a) => a,
        Err(refusal) => {
            let resolution = resolve(env, peer, req);
            return HttpDecision {
                decision: "deny",
                path: url_path::canonical_path(req.path).ok(),
                route: None,
                identity: Some(resolution.identity.name.clone()),
                identity_reason: Some(resolution.why.to_string()),
                refusal: Some(refusal),
                removed_headers: vec![],
                body: None,
            };
        }
    };
    let mut refusal = None;
    match admitted.body {
        BodyPlan::Judge { limit } | BodyPlan::Stream { limit } if body.len() > limit => refusal = Some(too_large(&admitted.path, limit)),
        BodyPlan::Judge { .. } => refusal = judge_body(env, peer, &mut admitted, req, body).err(),
        BodyPlan::Stream { .. } => {}
    }
    let decision = match (&refusal, admitted.recorded.is_empty()) {
        (Some(_), _) => "deny",
        (None, false) => "would-deny",
        (None, true) => "allow",
    };
    HttpDecision {
        decision,
        path: Some(admitted.path.clone()),
        route: Some(admitted.route.class.label()),
        identity: Some(admitted.identity().name.clone()),
        identity_reason: Some(admitted.resolution.why.to_string()),
        refusal: refusal.or_else(|| admitted.recorded.first().cloned().map(Box::new)),
        removed_headers: admitted.remove.clone(),
        body: Some(admitted.body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_are_found_however_they_are_spelled() {
        for q in ["token=abc", "a=1&token=abc", "%74oken=abc", "token"] {
            assert!(query_has_token(q), "{q}");
        }
        for q in ["tokens=1", "a=token", "xtoken=1", ""] {
            assert!(!query_has_token(q), "{q}");
        }
    }

    #[test]
    fn percent_decoding_as_decode_uri_component() {
        assert_eq!(percent_decode("agent%3Amain%3amain").as_deref(), Some("agent:main:main"));
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
        assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"), "+ is not a space in a path");
    }
}
