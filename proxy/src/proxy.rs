//! The pingora `ProxyHttp` implementation: plain HTTP is proxied by pingora with
//! attribution headers rewritten; WebSocket upgrades are taken over in
//! `request_filter` and pumped through the engine (see `websocket.rs`).

use crate::config::Config;
use crate::metrics;
use crate::websocket;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use clawguard_filters::attribution::{forwarding_headers, plaintext_allowed, CLIENT_HEADERS_REMOVED};
use clawguard_filters::identity::{credential_sha256, Evidence, Resolution};
use clawguard_filters::limits::{HttpRoute, Limited};
use clawguard_filters::peer::{ClientCert, Peer};
use clawguard_filters::access::Guard;
use clawguard_filters::conn_limits::ConnectionCounts;
use clawguard_filters::nodes::NodePolicy;
use clawguard_filters::replay::ReplayCache;
use clawguard_filters::exec_guard::ApprovalMemory;
use clawguard_filters::sessions::SessionLedger;
use crate::pin_keeper::PersistentPins;
use clawguard_policies::LoadedPolicy;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// A device signature is accepted once in this window.
const REPLAY_WINDOW_MS: u64 = 10 * 60 * 1000;
/// At most this many recent signatures are remembered.
const REPLAY_CAPACITY: usize = 100_000;

/// State shared by every connection.
pub struct Shared {
    /// The policy in force.
    pub policy: LoadedPolicy,
    /// The policy compiled for decisions (identities, rules, mode).
    pub guard: Arc<Guard>,
    /// Device signatures seen in the last 10 minutes, across connections.
    pub replay: Mutex<ReplayCache>,
    /// Open WebSocket connections per address and identity.
    pub connections: Mutex<ConnectionCounts>,
    /// The policy file (`None`: embedded).
    pub path: Option<PathBuf>,
    /// When the policy was loaded.
    pub loaded_at: SystemTime,
    /// Becomes `true` when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Whether the listeners and the gateway answer (see `readiness.rs`).
    pub ready: AtomicBool,
    /// The node pin store (persisted, shared with `clawguard nodes`).
    pub pins: Arc<PersistentPins>,
    /// Sessions created per identity and runs in flight.
    pub ledger: SessionLedger,
    /// Approval ids seen and the exec policy's verdict on their commands.
    pub approvals: ApprovalMemory,
}

impl Shared {
    /// Shared state for a loaded configuration; loads the node pin store (a corrupt one is
    /// an error).
    pub fn new(cfg: &Config, shutdown: watch::Receiver<bool>) -> anyhow::Result<Self> {
        let policy = &cfg.policy.policy;
        let base = cfg.path.as_deref().and_then(std::path::Path::parent).map(PathBuf::from).unwrap_or_default();
        let store = crate::pin_file::store_path(&base, &policy.nodes.store);
        let pins = PersistentPins::start(store, NodePolicy::new(&policy.nodes))?;
        Ok(Shared {
            pins,
            ledger: SessionLedger::default(),
            approvals: ApprovalMemory::default(),
            guard: Arc::new(Guard::new(&cfg.policy.policy)),
            replay: Mutex::new(ReplayCache::new(REPLAY_WINDOW_MS, REPLAY_CAPACITY)),
            connections: Mutex::new(ConnectionCounts::default()),
            policy: cfg.policy.clone(),
            path: cfg.path.clone(),
            loaded_at: cfg.loaded_at,
            shutdown,
            ready: AtomicBool::new(false),
        })
    }

    /// Whether `/readyz` should say ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !*self.shutdown.borrow()
    }
}

/// The proxy.
pub struct Clawguard {
    shared: Arc<Shared>,
}

impl Clawguard {
    /// A proxy over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Clawguard { shared }
    }
}

/// Per-request context.
#[derive(Default)]
pub struct Ctx {
    /// The client, once `request_filter` has looked (`None`: not an inet peer).
    peer: Option<Peer>,
    /// Set when clawguard answered the request itself.
    answered: bool,
    /// A `POST /tools/invoke` body, held until it is whole and judged by the exec policy.
    tool_body: Option<BytesMut>,
    /// clawguard's own refusal of the request (status, kind, message), for `fail_to_proxy`.
    refusal: Option<(u16, &'static str, String)>,
    /// The scope ceiling of a plain HTTP request's identity, resolved once in `request_filter`.
    http_ceiling: Option<String>,
}

/// The largest `/tools/invoke` body clawguard holds for judging (the gateway's own limit).
const MAX_TOOL_BODY: usize = 2 * 1024 * 1024;

/// The exec policy's refusal of a `/tools/invoke` body, if it runs the `exec` tool with a
/// command the policy does not allow.
fn tool_invoke_refusal(shared: &Shared, body: &[u8]) -> Option<String> {
    // The gateway strips a UTF-8 BOM and parses with JSON.parse; what clawguard cannot read is
    // refused, naming where.
    let Ok(text) = std::str::from_utf8(body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body)) else {
        return Some("the /tools/invoke body is not UTF-8 text, so clawguard cannot judge it".into());
    };
    let value = match clawguard_filters::js::read_json("the /tools/invoke body", text) {
        Ok(v) => v,
        Err(e) => return Some(e.to_string()),
    };
    if clawguard_filters::js::string_field(&value, &["name", "tool"]) != Some("exec") {
        return None;
    }
    let r = clawguard_filters::exec_guard::shell_refusal(shared.guard.exec(), value["args"]["command"].as_str(), false, "the exec tool")?;
    r.enforce.then_some(r.reason)
}

/// What the session tells about the client: address, TLS, and the verified client certificate.
fn peer_of(session: &Session) -> Option<Peer> {
    let ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())?;
    let ssl = session.digest().and_then(|d| d.ssl_digest.as_ref());
    let client_cert = ssl.filter(|d| !d.cert_digest.is_empty()).map(|d| ClientCert {
        sha256: d.cert_digest.iter().map(|b| format!("{b:02x}")).collect(),
        organization: d.organization.clone(),
        serial: d.serial_number.clone(),
    });
    Some(Peer { ip, tls: ssl.is_some(), client_cert })
}

/// The kind of upgrade a request asks for.
enum Upgrade {
    None,
    WebSocket,
    Other,
}

fn upgrade_kind(req: &RequestHeader) -> Upgrade {
    let Some(value) = req.headers.get(http::header::UPGRADE) else { return Upgrade::None };
    let is_ws = value.to_str().map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("websocket"))).unwrap_or(false);
    // An upgrade request with a body could smuggle bytes past the handshake: refuse it.
    let has_body = req.headers.contains_key(http::header::TRANSFER_ENCODING)
        || req.headers.get(http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
    if is_ws && req.method == http::Method::GET && !has_body { Upgrade::WebSocket } else { Upgrade::Other }
}

/// Answers a request with a JSON error in the gateway's HTTP error shape.
pub async fn respond_error(session: &mut Session, status: u16, kind: &str, message: &str) -> Result<()> {
    respond_error_with(session, status, kind, message, None).await
}

/// A 429 in the gateway's error shape (`rate_limited`) with `Retry-After` in whole seconds
/// (rounded up) from the limiter's own hint.
pub async fn respond_rate_limited(session: &mut Session, limited: &Limited, message: &str) -> Result<()> {
    let seconds = limited.retry_after.as_millis().div_ceil(1000).max(1);
    respond_error_with(session, 429, "rate_limited", message, Some(seconds.to_string())).await
}

async fn respond_error_with(session: &mut Session, status: u16, kind: &str, message: &str, retry_after: Option<String>) -> Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({ "error": { "message": message, "type": kind, "source": "clawguard" } }))
        .expect("a JSON value always serialises");
    let mut resp = ResponseHeader::build(status, Some(4))?;
    if let Some(seconds) = retry_after {
        resp.insert_header(http::header::RETRY_AFTER, seconds)?;
    }
    resp.insert_header(http::header::CONTENT_TYPE, "application/json; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::CONNECTION, "close")?;
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(Bytes::from(body)), true).await
}

/// The identity of an HTTP request: certificate, address, bearer token.
fn http_resolution(shared: &Shared, peer: &Peer, req: &RequestHeader) -> Resolution {
    let bearer = req.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let token_sha256 = bearer.map(|t| credential_sha256(t.trim()));
    shared.guard.identities.resolve(Evidence { peer, device_id: None, token_sha256: token_sha256.as_deref() })
}

#[async_trait]
impl ProxyHttp for Clawguard {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.peer = peer_of(session);
        let policy = &self.shared.policy.policy;
        let (ip, tls) = (ctx.peer.as_ref().map(|p| p.ip), ctx.peer.as_ref().is_some_and(|p| p.tls));
        if let Some(cert) = ctx.peer.as_ref().and_then(|p| p.client_cert.as_ref()) {
            tracing::debug!(sha256 = %cert.sha256, organization = ?cert.organization, "client certificate");
        }
        if !plaintext_allowed(ip, tls, policy.tls.require_for_remote) {
            ctx.answered = true;
            metrics::REFUSALS.with_label_values(&["tls_required"]).inc();
            tracing::warn!(peer = ?ip, path = %session.req_header().uri.path(), "refused plaintext request from a non-loopback peer");
            respond_error(session, 403, "tls_required", "clawguard: plaintext is only accepted from loopback; connect with TLS").await?;
            return Ok(true);
        }
        // Every HTTP decision is taken on the path the gateway routes to (WHATWG URL pathname);
        // a path whose meaning could differ is refused.
        let path = match clawguard_filters::http_path::canonical_path(session.req_header().uri.path()) {
            Ok(p) => p,
            Err(e) => {
                ctx.answered = true;
                metrics::REFUSALS.with_label_values(&["bad_path"]).inc();
                tracing::warn!(peer = ?ip, %e, "refused an ambiguous request path");
                respond_error(session, 400, "bad_path", &format!("clawguard: {e}")).await?;
                return Ok(true);
            }
        };
        match upgrade_kind(session.req_header()) {
            Upgrade::None => {
                if let Some(peer) = &ctx.peer {
                    // The identity of an HTTP request is known at once (certificate, address,
                    // bearer): its ceiling goes to the gateway, its name keys the route's limit.
                    let resolution = http_resolution(&self.shared, peer, session.req_header());
                    let (ip, identity) = (peer.ip, resolution.identity.name.clone());
                    ctx.http_ceiling = Some(resolution.identity.ceiling.names().join(","));
                    let route = HttpRoute::of(&path);
                    if let Some(Err(limited)) = route.map(|r| self.shared.guard.clients.http(r, &identity, ip)) {
                        if limited.shadow {
                            metrics::RATE_LIMIT_SHADOW.with_label_values(&[limited.limit]).inc();
                        } else {
                            ctx.answered = true;
                            metrics::RATE_LIMITED.with_label_values(&[limited.limit]).inc();
                            let key = if route == Some(HttpRoute::Hooks) { ip.to_string() } else { format!("identity {identity:?}") };
                            let message = format!("clawguard: rate limit {} exceeded for {key}: retry in {} ms", limited.limit, limited.retry_after.as_millis().max(1));
                            tracing::warn!(peer = %ip, path = %session.req_header().uri.path(), limit = limited.limit, "http request rate limited");
                            respond_rate_limited(session, &limited, &message).await?;
                            return Ok(true);
                        }
                    }
                }
                let req = session.req_header();
                if req.method == http::Method::POST && path == "/tools/invoke" {
                    ctx.tool_body = Some(BytesMut::new());
                }
                Ok(false)
            }
            Upgrade::Other => {
                ctx.answered = true;
                metrics::REFUSALS.with_label_values(&["bad_upgrade"]).inc();
                respond_error(session, 400, "bad_upgrade", "clawguard: only WebSocket upgrades (GET, no body) are proxied").await?;
                Ok(true)
            }
            Upgrade::WebSocket => {
                ctx.answered = true;
                let Some(peer) = ctx.peer.clone() else {
                    respond_error(session, 400, "bad_peer", "clawguard: the peer has no IP address").await?;
                    return Ok(true);
                };
                websocket::take_over(&self.shared, session, &peer).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(&self, _session: &mut Session, body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut Ctx) -> Result<()> {
        let Some(held) = ctx.tool_body.as_mut() else { return Ok(()) };
        if let Some(chunk) = body.take() {
            held.extend_from_slice(&chunk);
        }
        if held.len() > MAX_TOOL_BODY {
            ctx.tool_body = None;
            ctx.refusal = Some((413, "too_large", format!("clawguard: a /tools/invoke body over {MAX_TOOL_BODY} bytes cannot be judged")));
            return Err(Error::explain(ErrorType::HTTPStatus(413), "tools/invoke body too large to judge"));
        }
        if !end_of_stream {
            return Ok(());
        }
        let whole = held.split().freeze();
        ctx.tool_body = None;
        if let Some(reason) = tool_invoke_refusal(&self.shared, &whole) {
            metrics::REFUSALS.with_label_values(&["exec_policy"]).inc();
            tracing::warn!(path = "/tools/invoke", %reason, "exec tool refused");
            ctx.refusal = Some((403, "exec_denied", format!("clawguard: {reason}")));
            return Err(Error::explain(ErrorType::HTTPStatus(403), "exec tool refused by the exec policy"));
        }
        *body = Some(whole);
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let up = &self.shared.policy.policy.upstream;
        let mut peer = HttpPeer::new(up.address, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_millis(up.connect_timeout_ms));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(&self, _session: &mut Session, req: &mut RequestHeader, ctx: &mut Ctx) -> Result<()> {
        for name in CLIENT_HEADERS_REMOVED {
            req.remove_header(*name);
        }
        if let Some(peer) = &ctx.peer {
            for (name, value) in forwarding_headers(peer.ip, peer.tls, &self.shared.policy.policy.attribution) {
                req.insert_header(name, value)?;
            }
            // The gateway honours the identity's ceiling where its auth mode allows.
            if let Some(ceiling) = &ctx.http_ceiling {
                req.insert_header("x-openclaw-scopes", ceiling.clone())?;
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        if let Some((code, kind, message)) = ctx.refusal.take() {
            if session.as_downstream().response_written().is_none() {
                if let Err(write) = respond_error(session, code, kind, &message).await {
                    tracing::debug!(error = %write, "cannot send the refusal");
                }
            }
            return FailToProxy { error_code: code, can_reuse_downstream: false };
        }
        let (code, kind) = match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(code), _) => (*code, "error"),
            (_, ErrorSource::Upstream) => (502, "bad_gateway"),
            // The client is gone: nothing to answer.
            (ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed, ErrorSource::Downstream) => (0, ""),
            (_, ErrorSource::Downstream) => (400, "bad_request"),
            _ => (500, "internal_error"),
        };
        if code > 0 && session.as_downstream().response_written().is_none() {
            let upstream = self.shared.policy.policy.upstream.address;
            let message = match e.esource() {
                ErrorSource::Upstream => format!("clawguard: the gateway at {upstream} failed: {}", e.etype().as_str()),
                _ => format!("clawguard: {}", e.etype().as_str()),
            };
            if let Err(write) = respond_error(session, code, kind, &message).await {
                tracing::debug!(error = %write, "cannot send the error response");
            }
        }
        FailToProxy { error_code: code, can_reuse_downstream: false }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, e: &Error) -> bool {
        // A client that hangs up mid-request is routine, not an error of the proxy.
        e.esource() == &ErrorSource::Downstream && matches!(e.etype(), ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let kind = if matches!(upgrade_kind(session.req_header()), Upgrade::WebSocket) { "websocket" } else { "http" };
        let verdict = match (e, ctx.answered) {
            (Some(_), _) => "error",
            (None, true) if kind == "http" => "refuse",
            _ => "forward",
        };
        metrics::REQUESTS.with_label_values(&[kind, verdict]).inc();
        if let Some(e) = e {
            tracing::debug!(error = %e, path = %session.req_header().uri.path(), "request failed");
        }
    }
}
