//! The gateway's HTTP route table (2026.9.6: `createGatewayHttpServer` in `server-http.ts` and the
//! handlers in the package's `dist/`): which handler a canonical path reaches, and so which
//! operator method it is authorised as and what clawguard must read of it.
//!
//! A path no route matches is refused with 404 unless the policy lists it (`http.allow_paths`),
//! or it is a GET/HEAD and the Control UI is served (its single-page app answers every such
//! path). Plugin routes are forwarded only under their namespaces, `/plugins/<id>/` and
//! `/api/channels/`.

use crate::protocol::scopes::Scope;
use clawguard_policies::Glob;

/// What a route is, for decisions and response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// `/health`, `/healthz`, `/ready`, `/readyz`, `/startup`, `/startupz`.
    Probe,
    /// `POST /tools/invoke`.
    ToolsInvoke,
    /// `GET /sessions/<key>/history`.
    SessionHistory,
    /// `POST /sessions/<key>/kill`.
    SessionKill,
    /// `GET /v1/models`, `/v1/models/<id>`.
    Models,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/responses`.
    Responses,
    /// The hooks base path and below (hook token auth).
    Hooks,
    /// Node-capability pages: canvas, A2UI, `/__openclaw__/cap/` (framed by the apps).
    NodeCapability,
    /// `/mcp`: the gateway's MCP server, a tool surface clawguard cannot read yet.
    Mcp,
    /// `/plugins/<id>/…`.
    Plugin,
    /// `/api/channels/…` (always gateway auth).
    Channels,
    /// The gateway's own resources: `/__openclaw__/*`, artifacts, media, avatars, board.
    Internal,
    /// The Control UI single-page app and its assets.
    ControlUi,
    /// A path the policy allows (`http.allow_paths`).
    Allowed,
}

impl RouteClass {
    /// The label in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            RouteClass::Probe => "probe",
            RouteClass::ToolsInvoke => "tools_invoke",
            RouteClass::SessionHistory => "session_history",
            RouteClass::SessionKill => "session_kill",
            RouteClass::Models => "models",
            RouteClass::Embeddings => "embeddings",
            RouteClass::ChatCompletions => "chat_completions",
            RouteClass::Responses => "responses",
            RouteClass::Hooks => "hooks",
            RouteClass::NodeCapability => "node_capability",
            RouteClass::Mcp => "mcp",
            RouteClass::Plugin => "plugin",
            RouteClass::Channels => "channels",
            RouteClass::Internal => "internal",
            RouteClass::ControlUi => "control_ui",
            RouteClass::Allowed => "allowed",
        }
    }

    /// The HTTP methods the handler serves (others: 405 from clawguard).
    pub fn methods(self) -> &'static [&'static str] {
        match self {
            RouteClass::Probe | RouteClass::Models | RouteClass::ControlUi => &["GET", "HEAD"],
            RouteClass::SessionHistory => &["GET"],
            RouteClass::ToolsInvoke | RouteClass::SessionKill | RouteClass::Embeddings | RouteClass::ChatCompletions | RouteClass::Responses | RouteClass::Hooks => &["POST"],
            RouteClass::NodeCapability | RouteClass::Mcp | RouteClass::Plugin | RouteClass::Channels | RouteClass::Internal | RouteClass::Allowed => &[],
        }
    }

    /// The gateway method whose authority the route needs (its `operatorMethod`), which also
    /// names it in identities' method lists: one rule means one thing on both surfaces.
    pub fn operator_method(self) -> Option<&'static str> {
        match self {
            RouteClass::ToolsInvoke => Some("tools.invoke"),
            RouteClass::SessionHistory => Some("chat.history"),
            RouteClass::SessionKill => Some("sessions.abort"),
            RouteClass::Models => Some("models.list"),
            RouteClass::Embeddings | RouteClass::ChatCompletions | RouteClass::Responses => Some("chat.send"),
            _ => None,
        }
    }

    /// A scope the gateway's handler requires beyond its method's (kill: admin; plugin routes
    /// with gateway auth run with `operator.write`).
    pub fn extra_scope(self) -> Option<Scope> {
        match self {
            RouteClass::SessionKill => Some(Scope::Admin),
            RouteClass::Plugin | RouteClass::Channels => Some(Scope::Write),
            _ => None,
        }
    }

    /// Whether the route answers JSON (API response headers apply).
    pub fn is_api(self) -> bool {
        !matches!(self, RouteClass::ControlUi | RouteClass::NodeCapability | RouteClass::Internal | RouteClass::Plugin | RouteClass::Allowed)
    }
}

/// A request's route, with the session key its path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The class.
    pub class: RouteClass,
    /// `/sessions/<key>/…`: the key segment as sent (still percent-encoded).
    pub session_segment: Option<String>,
}

/// The route table of one policy.
#[derive(Debug, Clone)]
pub struct RouteTable {
    hooks_path: String,
    allow_paths: Vec<Glob>,
    control_ui: bool,
}

/// Why a path has no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// No route of the gateway's matches, and the policy does not allow it.
    Unlisted,
    /// The route exists, for other methods.
    Method(&'static [&'static str]),
}

const PROBES: &[&str] = &["/health", "/healthz", "/ready", "/readyz", "/startup", "/startupz"];
const NODE_CAPABILITY: &[&str] = &["/__openclaw__/canvas", "/__openclaw__/a2ui", "/__openclaw__/cap"];
const INTERNAL_PREFIXES: &[&str] = &["/__openclaw__", "/api/artifacts/download", "/api/nodes/watch", "/api/chat/media", "/api/users", "/avatar"];

/// Whether `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl RouteTable {
    /// The table for `[http]`.
    pub fn new(http: &clawguard_policies::Http) -> Self {
        RouteTable { hooks_path: http.hooks_path.clone(), allow_paths: http.allow_paths.clone(), control_ui: http.control_ui }
    }

    /// The route of a request for the canonical `path`.
    pub fn route(&self, method: &str, path: &str) -> Result<Route, NoRoute> {
        let class = self.class_of(path)?;
        let mut session_segment = None;
        if matches!(class, RouteClass::SessionHistory | RouteClass::SessionKill) {
            session_segment = path.split('/').nth(2).map(str::to_string);
        }
        let methods = class.methods();
        if class == RouteClass::ControlUi && !methods.contains(&method) {
            // The Control UI is only what GET and HEAD reach; anything else is unlisted.
            return Err(NoRoute::Unlisted);
        }
        // HEAD is served wherever GET is (Node answers it with the GET handler).
        if !methods.is_empty() && !methods.contains(&method) {
            return Err(NoRoute::Method(methods));
        }
        Ok(Route { class, session_segment })
    }

    fn class_of(&self, path: &str) -> Result<RouteClass, NoRoute> {
        // The gateway's own routes first: the policy cannot exempt them from their checks.
        if PROBES.contains(&path) {
            return Ok(RouteClass::Probe);
        }
        if under(path, &self.hooks_path) {
            return Ok(RouteClass::Hooks);
        }
        if path == "/tools/invoke" {
            return Ok(RouteClass::ToolsInvoke);
        }
        if let Some(rest) = path.strip_prefix("/sessions/") {
            // `{key}` is exactly one non-empty segment.
            match rest.split_once('/') {
                Some((key, "history")) if !key.is_empty() => return Ok(RouteClass::SessionHistory),
                Some((key, "kill")) if !key.is_empty() => return Ok(RouteClass::SessionKill),
                _ => {}
            }
        }
        if path == "/v1/models" || path.strip_prefix("/v1/models/").is_some_and(|id| !id.is_empty() && !id.contains('/')) {
            return Ok(RouteClass::Models);
        }
        match path {
            "/v1/embeddings" => return Ok(RouteClass::Embeddings),
            "/v1/chat/completions" => return Ok(RouteClass::ChatCompletions),
            "/v1/responses" => return Ok(RouteClass::Responses),
            _ => {}
        }
        if NODE_CAPABILITY.iter().any(|p| under(path, p)) {
            return Ok(RouteClass::NodeCapability);
        }
        if self.allow_paths.iter().any(|g| g.matches(path)) {
            return Ok(RouteClass::Allowed);
        }
        if path == "/mcp" || path.starts_with("/mcp/") {
            return Ok(RouteClass::Mcp);
        }
        if path.strip_prefix("/plugins/").is_some_and(|rest| rest.split('/').next().is_some_and(|id| !id.is_empty())) {
            return Ok(RouteClass::Plugin);
        }
        if under(path, "/api/channels") {
            return Ok(RouteClass::Channels);
        }
        if INTERNAL_PREFIXES.iter().any(|p| under(path, p)) {
            return Ok(RouteClass::Internal);
        }
        if self.control_ui {
            return Ok(RouteClass::ControlUi);
        }
        Err(NoRoute::Unlisted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(allow: &[&str]) -> RouteTable {
        let http = clawguard_policies::Http { allow_paths: allow.iter().map(|g| Glob::new(g).unwrap()).collect(), ..Default::default() };
        RouteTable::new(&http)
    }

    #[test]
    fn every_route_class_of_the_gateway() {
        let t = table(&[]);
        for (method, path, class) in [
            ("GET", "/healthz", RouteClass::Probe),
            ("HEAD", "/readyz", RouteClass::Probe),
            ("POST", "/tools/invoke", RouteClass::ToolsInvoke),
            ("GET", "/sessions/agent%3Amain%3Amain/history", RouteClass::SessionHistory),
            ("POST", "/sessions/main/kill", RouteClass::SessionKill),
            ("GET", "/v1/models", RouteClass::Models),
            ("GET", "/v1/models/openclaw", RouteClass::Models),
            ("POST", "/v1/embeddings", RouteClass::Embeddings),
            ("POST", "/v1/chat/completions", RouteClass::ChatCompletions),
            ("POST", "/v1/responses", RouteClass::Responses),
            ("POST", "/hooks", RouteClass::Hooks),
            ("POST", "/hooks/agent", RouteClass::Hooks),
            ("GET", "/__openclaw__/canvas/index.html", RouteClass::NodeCapability),
            ("GET", "/__openclaw__/a2ui", RouteClass::NodeCapability),
            ("GET", "/__openclaw__/cap/x/y", RouteClass::NodeCapability),
            ("POST", "/mcp", RouteClass::Mcp),
            ("POST", "/plugins/voice/calls", RouteClass::Plugin),
            ("POST", "/api/channels/telegram/webhook", RouteClass::Channels),
            ("GET", "/__openclaw__/assistant-media/x", RouteClass::Internal),
            ("GET", "/", RouteClass::ControlUi),
            ("GET", "/assets/index-abc.js", RouteClass::ControlUi),
            ("GET", "/chat", RouteClass::ControlUi),
        ] {
            assert_eq!(t.route(method, path).map(|r| r.class), Ok(class), "{method} {path}");
        }
        assert_eq!(t.route("GET", "/sessions/agent%3Amain%3Amain/history").unwrap().session_segment.as_deref(), Some("agent%3Amain%3Amain"));
    }

    #[test]
    fn unlisted_paths_and_methods_have_no_route() {
        let t = table(&[]);
        assert_eq!(t.route("POST", "/anything"), Err(NoRoute::Unlisted), "a POST no route serves");
        assert_eq!(t.route("PUT", "/"), Err(NoRoute::Unlisted));
        assert_eq!(t.route("GET", "/tools/invoke"), Err(NoRoute::Method(&["POST"])));
        assert_eq!(t.route("POST", "/sessions/main/history"), Err(NoRoute::Method(&["GET"])));
        assert_eq!(t.route("POST", "/sessions//kill"), Err(NoRoute::Unlisted), "an empty key is no session route");
        assert_eq!(t.route("POST", "/hooksx"), Err(NoRoute::Unlisted), "only the hooks path and below");
        assert_eq!(t.route("POST", "/plugins/"), Err(NoRoute::Unlisted), "a plugin route needs its id");
        let no_ui = RouteTable::new(&clawguard_policies::Http { control_ui: false, ..Default::default() });
        assert_eq!(no_ui.route("GET", "/chat"), Err(NoRoute::Unlisted));
    }

    #[test]
    fn the_policy_allows_extra_paths_but_never_exempts_a_gateway_route() {
        let t = table(&["/webhooks/*", "/tools/*", "/mcp"]);
        assert_eq!(t.route("POST", "/webhooks/github").map(|r| r.class), Ok(RouteClass::Allowed));
        assert_eq!(t.route("POST", "/mcp").map(|r| r.class), Ok(RouteClass::Allowed), "an explicit opt-in");
        assert_eq!(t.route("POST", "/tools/invoke").map(|r| r.class), Ok(RouteClass::ToolsInvoke), "still judged");
    }
}
