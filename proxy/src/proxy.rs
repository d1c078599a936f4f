//! The pingora `ProxyHttp` implementation: plain HTTP is proxied by pingora with
//! attribution headers rewritten; WebSocket upgrades are taken over in
//! `request_filter` and pumped through the engine (see `websocket.rs`).

use crate::metrics;
use crate::respond::{apply_header_ops, respond_error, respond_refusal, ResponseView};
use crate::shared::{Live, Shared};
use crate::websocket;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use clawguard_filters::attribution::{forwarding_headers, plaintext_allowed, CLIENT_HEADERS_REMOVED};
use clawguard_filters::http::{Admitted, BodyPlan, HttpRefusal, HttpRequest};
use clawguard_filters::surfaces::record::{self, HttpSeen};
use clawguard_filters::peer::{ClientCert, Peer};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};
use http::HeaderValue;
use std::sync::Arc;
use std::time::Duration;

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
    /// The admitted request: route, identity, body plan.
    admitted: Option<Admitted>,
    /// A body held until it is whole and judged (`BodyPlan::Judge`).
    held: Option<BytesMut>,
    /// Body bytes seen so far (`BodyPlan::Stream`).
    body_seen: usize,
    /// clawguard's own refusal of the request, for `fail_to_proxy`.
    refusal: Option<Box<HttpRefusal>>,
    /// The policy version this request is judged by, from its first hook to its last (a
    /// reload in between applies to the next request).
    live: Option<Arc<Live>>,
}

impl Ctx {
    /// The request's policy version (taken from `shared` the first time).
    fn live(&mut self, shared: &Shared) -> Arc<Live> {
        self.live.get_or_insert_with(|| shared.live_arc()).clone()
    }
}

/// Request headers as the sans-IO core reads them; a value that is not visible ASCII reads as
/// U+FFFD, which matches no credential and no origin (so it resolves to `default` or is refused).
struct HeadView<'a>(&'a RequestHeader);

impl clawguard_filters::http::Headers for HeadView<'_> {
    fn first(&self, name: &str) -> Option<&str> {
        // The names the core asks for on every request, without parsing them each time.
        let value = match name {
            "authorization" => self.0.headers.get(http::header::AUTHORIZATION),
            "origin" => self.0.headers.get(http::header::ORIGIN),
            "content-length" => self.0.headers.get(http::header::CONTENT_LENGTH),
            _ => self.0.headers.get(name),
        };
        value.map(|v| v.to_str().unwrap_or("\u{fffd}"))
    }

    fn count(&self, name: &str) -> usize {
        self.0.headers.get_all(name).iter().count()
    }

    fn any_repeated(&self) -> bool {
        self.0.headers.len() != self.0.headers.keys_len()
    }
}

/// The sans-IO model of a request head.
fn http_request<'a>(req: &'a RequestHeader, headers: &'a HeadView<'a>, upgrade: bool) -> HttpRequest<'a> {
    HttpRequest { method: req.method.as_str(), path: req.uri.path(), query: req.uri.query(), headers, upgrade }
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

/// What went wrong with the gateway, in words (not pingora's error names).
/// The `kind` label of `clawguard_upstream_errors_total` for a failure of the gateway.
fn upstream_error_kind(kind: &ErrorType) -> &'static str {
    match kind {
        ErrorType::ConnectTimedout | ErrorType::ConnectRefused | ErrorType::ConnectNoRoute | ErrorType::ConnectError | ErrorType::BindError | ErrorType::SocketError => "connect",
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
        ErrorType::ConnectionClosed => "closed",
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error | ErrorType::H2Error | ErrorType::InvalidH2 => "protocol",
        _ => "io",
    }
}

fn gateway_failure(kind: &ErrorType) -> &'static str {
    match kind {
        ErrorType::ConnectTimedout => "did not accept the connection in time",
        ErrorType::ConnectRefused => "refused the connection (is it running?)",
        ErrorType::ConnectNoRoute | ErrorType::ConnectError | ErrorType::BindError | ErrorType::SocketError => "cannot be reached",
        ErrorType::ReadTimedout => "did not answer in time",
        ErrorType::WriteTimedout => "did not read the request in time",
        ErrorType::ConnectionClosed => "closed the connection before answering",
        ErrorType::ReadError | ErrorType::WriteError => "dropped the connection while the request was in flight",
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error | ErrorType::H2Error | ErrorType::InvalidH2 => "sent an answer that is not valid HTTP",
        _ => "failed to answer",
    }
}

/// What was wrong with the client's request, in words.
fn request_failure(kind: &ErrorType) -> &'static str {
    match kind {
        ErrorType::ReadTimedout => "the request was not received in time",
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error => "the request is not valid HTTP/1.1",
        ErrorType::H2Error | ErrorType::InvalidH2 | ErrorType::H2Downgrade => "the request is not valid HTTP/2",
        _ => "the request could not be read",
    }
}

/// The connection a request came on (the key of its head deadline).
fn connection_of(session: &Session) -> Option<usize> {
    session.digest().and_then(|d| d.socket_digest.as_ref()).map(crate::listeners::connection_key)
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

/// Counts, logs and records in the audit log a refusal; a dry-run one only recorded.
async fn note_refusal(shared: &Shared, req: &RequestHeader, route: &str, refusal: &HttpRefusal, peer: Option<std::net::IpAddr>, path: &str, identity: Option<&str>) {
    let verdict = if refusal.enforce { "refuse" } else { "would_refuse" };
    metrics::HTTP_DECISIONS.with_label_values(&[route, verdict, &refusal.rule, metrics::decision_mode(refusal.enforce, &refusal.rule)]).inc();
    metrics::REFUSED_BY_IDENTITY.with_label_values(&["http", identity.unwrap_or("none")]).inc();
    if refusal.rule.starts_with("rate-limit:") {
        let limit = &refusal.rule["rate-limit:".len()..];
        if refusal.enforce {
            metrics::RATE_LIMITED.with_label_values(&[limit]).inc();
        } else {
            metrics::RATE_LIMIT_SHADOW.with_label_values(&[limit]).inc();
        }
    }
    if refusal.enforce {
        tracing::warn!(peer = ?peer, %path, route, rule = %refusal.rule, status = refusal.status, reason = %refusal.reason, "http request refused");
    } else {
        tracing::warn!(peer = ?peer, %path, route, rule = %refusal.rule, reason = %refusal.reason, "http request would be refused (dry-run)");
    }
    if let Some(audit) = &shared.audit {
        let seen = HttpSeen { peer: peer.map(|p| p.to_string()).unwrap_or_default(), identity, method: req.method.as_str(), path, route };
        audit.record(record::http_refusal(&seen, refusal)).await;
    }
}

/// Records an allowed request when the policy records it (`audit.record_allowed`); the refusal
/// to send when the record was not taken and the log blocks (`audit.on_failure = "block"`).
async fn note_allowed(shared: &Shared, req: &RequestHeader, admitted: &Admitted, peer: Option<std::net::IpAddr>) -> Option<Box<HttpRefusal>> {
    let audit = shared.audit.as_ref().filter(|_| admitted.audited)?;
    let seen = HttpSeen { peer: peer.map(|p| p.to_string()).unwrap_or_default(), identity: Some(&admitted.identity().name), method: req.method.as_str(), path: &admitted.path, route: admitted.route.class.label() };
    if audit.record(record::http_allowed(&seen)).await || !audit.blocks() {
        return None;
    }
    metrics::HTTP_DECISIONS.with_label_values(&[admitted.route.class.label(), "refuse", "audit", "enforce"]).inc();
    Some(clawguard_filters::http::audit_unavailable(req.method.as_str(), &admitted.path))
}

#[async_trait]
impl ProxyHttp for Clawguard {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // The head is whole: the connection's head deadline stops until the answer is done.
        if let Some(key) = connection_of(session) {
            self.shared.heads.request_started(key);
        }
        ctx.peer = peer_of(session);
        let live = ctx.live(&self.shared);
        let policy = &live.policy.policy;
        let (ip, tls) = (ctx.peer.as_ref().map(|p| p.ip), ctx.peer.as_ref().is_some_and(|p| p.tls));
        if let Some(cert) = ctx.peer.as_ref().and_then(|p| p.client_cert.as_ref()) {
            tracing::debug!(sha256 = %cert.sha256, organization = ?cert.organization, "client certificate");
        }
        if !plaintext_allowed(ip, tls, policy.tls.require_for_remote) {
            ctx.answered = true;
            metrics::REFUSALS.with_label_values(&["tls_required"]).inc();
            tracing::warn!(peer = ?ip, path = %session.req_header().uri.path(), "refused plaintext request from a non-loopback peer");
            if let Some(audit) = &self.shared.audit {
                let req = session.req_header();
                let peer = ip.map(|p| p.to_string()).unwrap_or_default();
                audit.record(record::refused_early(&peer, req.method.as_str(), req.uri.path(), "tls", "plaintext is only accepted from loopback", 403)).await;
            }
            respond_error(session, 403, "tls_required", "clawguard: plaintext is only accepted from loopback; connect with TLS").await?;
            return Ok(true);
        }
        let upgrade = upgrade_kind(session.req_header());
        if matches!(upgrade, Upgrade::Other) {
            ctx.answered = true;
            metrics::REFUSALS.with_label_values(&["bad_upgrade"]).inc();
            if let Some(audit) = &self.shared.audit {
                let req = session.req_header();
                let peer = ip.map(|p| p.to_string()).unwrap_or_default();
                audit.record(record::refused_early(&peer, req.method.as_str(), req.uri.path(), "bad-upgrade", "only WebSocket upgrades (GET, no body) are proxied", 400)).await;
            }
            respond_error(session, 400, "bad_upgrade", "clawguard: only WebSocket upgrades (GET, no body) are proxied").await?;
            return Ok(true);
        }
        let Some(peer) = ctx.peer.clone() else {
            ctx.answered = true;
            respond_error(session, 400, "bad_peer", "clawguard: the peer has no IP address").await?;
            return Ok(true);
        };
        if matches!(upgrade, Upgrade::WebSocket) {
            // The path must be readable and a browser's origin one of clawguard's own or listed.
            let checked = {
                let view = HeadView(session.req_header());
                clawguard_filters::http::admit_upgrade(&self.shared.env(&live), &http_request(session.req_header(), &view, true))
            };
            ctx.answered = true;
            if let Err(refusal) = checked {
                note_refusal(&self.shared, session.req_header(), "websocket", &refusal, ip, session.req_header().uri.path(), None).await;
                respond_refusal(session, &self.shared, &refusal).await?;
                return Ok(true);
            }
            websocket::take_over(&self.shared, session, &peer).await?;
            return Ok(true);
        }
        // Pipelined requests are served one after another, in order, each judged on its own
        // (without this pingora serves the first and drops the rest with the connection).
        session.as_downstream_mut().set_pipelining_enabled(true);
        if !self.shared.http_decisions {
            return Ok(false);
        }
        // Every HTTP decision is taken on the path the gateway routes to (WHATWG URL pathname),
        // by the route table, with the WebSocket's checks.
        let admitted = {
            let view = HeadView(session.req_header());
            let _timer = metrics::DECISION_HTTP.start_timer();
            clawguard_filters::http::admit(&self.shared.env(&live), &peer, &http_request(session.req_header(), &view, false))
        };
        match admitted {
            Ok(admitted) => {
                for recorded in &admitted.recorded {
                    note_refusal(&self.shared, session.req_header(), admitted.route.class.label(), recorded, ip, &admitted.path, Some(&admitted.identity().name)).await;
                }
                if matches!(admitted.body, BodyPlan::Judge { .. }) {
                    ctx.held = Some(BytesMut::new());
                } else if let Some(refusal) = note_allowed(&self.shared, session.req_header(), &admitted, ip).await {
                    ctx.answered = true;
                    respond_refusal(session, &self.shared, &refusal).await?;
                    return Ok(true);
                }
                ctx.admitted = Some(admitted);
                Ok(false)
            }
            Err(refusal) => {
                ctx.answered = true;
                note_refusal(&self.shared, session.req_header(), "none", &refusal, ip, session.req_header().uri.path(), None).await;
                respond_refusal(session, &self.shared, &refusal).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(&self, session: &mut Session, body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut Ctx) -> Result<()> {
        let live = ctx.live(&self.shared);
        let Some(admitted) = ctx.admitted.as_mut() else { return Ok(()) };
        let limit = match admitted.body {
            BodyPlan::Judge { limit } | BodyPlan::Stream { limit } => limit,
        };
        let Some(held) = ctx.held.as_mut() else {
            ctx.body_seen += body.as_ref().map_or(0, Bytes::len);
            if ctx.body_seen > limit {
                let refusal = clawguard_filters::http::too_large(&admitted.path, limit);
                note_refusal(&self.shared, session.req_header(), admitted.route.class.label(), &refusal, ctx.peer.as_ref().map(|p| p.ip), &admitted.path, Some(&admitted.identity().name)).await;
                ctx.refusal = Some(refusal);
                return Err(Error::explain(ErrorType::HTTPStatus(413), "request body over the route's limit"));
            }
            return Ok(());
        };
        if let Some(chunk) = body.take() {
            held.extend_from_slice(&chunk);
        }
        if held.len() > limit {
            ctx.held = None;
            let refusal = clawguard_filters::http::too_large(&admitted.path, limit);
            note_refusal(&self.shared, session.req_header(), admitted.route.class.label(), &refusal, ctx.peer.as_ref().map(|p| p.ip), &admitted.path, Some(&admitted.identity().name)).await;
            ctx.refusal = Some(refusal);
            return Err(Error::explain(ErrorType::HTTPStatus(413), "request body too large to judge"));
        }
        if !end_of_stream {
            // Nothing goes upstream until the body is judged; an empty chunk is not written (a
            // `None` here would tell pingora the body has ended).
            *body = Some(Bytes::new());
            return Ok(());
        }
        let whole = held.split().freeze();
        ctx.held = None;
        let Some(peer) = ctx.peer.clone() else { return Ok(()) };
        let judged = {
            let view = HeadView(session.req_header());
            let _timer = metrics::DECISION_HTTP.start_timer();
            clawguard_filters::http::judge_body(&self.shared.env(&live), &peer, admitted, &http_request(session.req_header(), &view, false), &whole)
        };
        if let Err(refusal) = judged {
            note_refusal(&self.shared, session.req_header(), admitted.route.class.label(), &refusal, Some(peer.ip), &admitted.path, Some(&admitted.identity().name)).await;
            ctx.refusal = Some(refusal);
            return Err(Error::explain(ErrorType::HTTPStatus(403), "request refused by clawguard"));
        }
        for recorded in std::mem::take(&mut admitted.recorded) {
            note_refusal(&self.shared, session.req_header(), admitted.route.class.label(), &recorded, Some(peer.ip), &admitted.path, Some(&admitted.identity().name)).await;
        }
        if let Some(refusal) = note_allowed(&self.shared, session.req_header(), admitted, Some(peer.ip)).await {
            ctx.refusal = Some(refusal);
            return Err(Error::explain(ErrorType::HTTPStatus(503), "the audit log cannot record"));
        }
        *body = Some(whole);
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let live = ctx.live(&self.shared);
        let up = &live.policy.policy.upstream;
        let mut peer = HttpPeer::new(up.address, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_millis(up.connect_timeout_ms));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(&self, _session: &mut Session, req: &mut RequestHeader, ctx: &mut Ctx) -> Result<()> {
        for name in CLIENT_HEADERS_REMOVED {
            req.remove_header(*name);
        }
        for name in ctx.admitted.as_ref().map(|a| a.remove.as_slice()).unwrap_or_default() {
            req.remove_header(*name);
        }
        if let Some(peer) = &ctx.peer {
            let live = ctx.live.clone().unwrap_or_else(|| self.shared.live_arc());
            for (name, value) in forwarding_headers(peer.ip, peer.tls, &live.policy.policy.attribution) {
                req.insert_header(name, value)?;
            }
            // The gateway honours the identity's ceiling where its auth mode allows.
            if let Some(admitted) = &ctx.admitted {
                // Shared with the identity, not copied (validated as a header value, no allocation).
                let value = HeaderValue::from_maybe_shared(admitted.identity().ceiling_header.clone()).or_err(InvalidHTTPHeader, "the identity's scope header")?;
                req.insert_header("x-openclaw-scopes", value)?;
            }
        }
        Ok(())
    }

    async fn response_filter(&self, _session: &mut Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        if !self.shared.http_decisions {
            return Ok(());
        }
        let (class, path) = match &ctx.admitted {
            Some(a) => (Some(a.route.class), a.path.as_str()),
            None => (None, "/"),
        };
        let tls = ctx.peer.as_ref().is_some_and(|p| p.tls);
        let live = ctx.live.clone().unwrap_or_else(|| self.shared.live_arc());
        let ops = live.guard.http.headers.plan(class, path, tls, &ResponseView(resp));
        apply_header_ops(resp, ops)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        if let Some(refusal) = ctx.refusal.take() {
            if session.as_downstream().response_written().is_none() {
                if let Err(write) = respond_refusal(session, &self.shared, &refusal).await {
                    tracing::debug!(error = %write, "cannot send the refusal");
                }
            }
            return FailToProxy { error_code: refusal.status, can_reuse_downstream: false };
        }
        let (code, kind) = match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(code), _) => (*code, "error"),
            (_, ErrorSource::Upstream) => (502, "bad_gateway"),
            // The client is gone: nothing to answer.
            (ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed, ErrorSource::Downstream) => (0, ""),
            (_, ErrorSource::Downstream) => (400, "bad_request"),
            _ => (500, "internal_error"),
        };
        if e.esource() == &ErrorSource::Upstream {
            metrics::UPSTREAM_ERRORS.with_label_values(&["http", upstream_error_kind(e.etype())]).inc();
        }
        if code > 0 && session.as_downstream().response_written().is_none() {
            let upstream = self.shared.live().policy.policy.upstream.address;
            let message = match e.esource() {
                ErrorSource::Upstream => format!("clawguard: the gateway at {upstream} {}", gateway_failure(e.etype())),
                _ => format!("clawguard: {}", request_failure(e.etype())),
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
        if let Some(key) = connection_of(session) {
            let timeout = Duration::from_secs(self.shared.live().policy.policy.server.header_timeout_seconds);
            self.shared.heads.request_finished(key, timeout);
        }
        let kind = if matches!(upgrade_kind(session.req_header()), Upgrade::WebSocket) { "websocket" } else { "http" };
        let verdict = match (e, ctx.answered) {
            (Some(_), _) => "error",
            (None, true) if kind == "http" => "refuse",
            _ => "forward",
        };
        metrics::REQUESTS.with_label_values(&[kind, verdict]).inc();
        let route = match (&ctx.admitted, kind) {
            (_, "websocket") => "websocket",
            (Some(a), _) => a.route.class.label(),
            (None, _) => "none",
        };
        let status_class = match session.as_downstream().response_written().map(|r| r.status.as_u16() / 100) {
            Some(1) => "1xx",
            Some(2) => "2xx",
            Some(3) => "3xx",
            Some(4) => "4xx",
            Some(5) => "5xx",
            _ => "none",
        };
        metrics::HTTP_RESPONSES.with_label_values(&[route, status_class]).inc();
        if let Some(e) = e {
            tracing::debug!(error = %e, path = %session.req_header().uri.path(), "request failed");
        }
    }
}
