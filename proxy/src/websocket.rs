//! The WebSocket "upgrade takeover" (pingora-notes §2.5): clawguard relays the
//! upgrade handshake to the gateway itself, writes the 101 through pingora, takes
//! the client's stream out of pingora's session, and then pumps frames in both
//! directions through the sans-IO engine.
//!
//! The pump is four futures joined in one task: the main loop (client reads,
//! engine, client writes, timers), an upstream writer and an upstream reader,
//! linked by bounded channels, and a watcher of what happens without traffic
//! (pin store, spend trips, reloads, shutdown) that wakes the main loop. The
//! client is only read while the channel to the gateway has room, and the gateway
//! is only read while the channel to the main loop has room, so a slow peer on
//! either side back-pressures the other; no buffer grows without bound, and an
//! idle connection holds no read buffer on either side.

use crate::audit::AuditLog;
use crate::metrics;
use crate::respond::respond_error;
use crate::shared::{Live, Shared};
use bytes::{Bytes, BytesMut};
use clawguard_filters::attribution::{forwarding_headers, CLIENT_HEADERS_REMOVED};
use clawguard_filters::conn_limits::{Caps, LimitExceeded};
use clawguard_filters::engine::{coalesce, Direction, Limits, Output, Verdict, WsEngine};
use clawguard_filters::peer::Peer;
use clawguard_filters::access::Notice;
use clawguard_filters::surfaces::record::{self, Connection};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use pingora::{ErrorType, OrErr};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{timeout, Instant};

/// Largest gateway response head accepted on the upgrade.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Largest non-101 gateway body relayed to the client.
const MAX_REFUSAL_BODY: usize = 1024 * 1024;
/// Chunks in flight per direction (each at most 64 KiB).
const CHANNEL_CHUNKS: usize = 16;
/// Bytes read from the gateway at a time.
const READ_CHUNK: usize = 64 * 1024;
/// A client that accepts no bytes for this long is dropped.
const CLIENT_WRITE_STALL: Duration = Duration::from_secs(60);

/// Handles a WebSocket upgrade request end to end.
pub async fn take_over(shared: &Arc<Shared>, session: &mut Session, peer: &Peer) -> Result<()> {
    // The policy version in force for the upgrade; once the connection is open every message
    // reads the version in force then, and a reload re-judges the connection. Subscribed
    // first, so a reload between here and the pump is not missed.
    let policy_changed = shared.policy_changes();
    let live = shared.live_arc();
    let policy = &live.policy.policy;
    let ws = &policy.websocket;
    let limits = Limits { handshake_message: ws.max_handshake_message_bytes, message: ws.max_message_bytes, fragments: ws.max_fragments_per_message };
    // Boxed: moved from here into the pump and its main loop, it would take its size (about
    // 2 KiB) in each of their futures.
    let engine = Box::new(WsEngine::new(&shared.env(&live), peer.clone(), limits, rand::random()));
    let identity = engine.access().resolution().identity.name.clone();
    if let Err(limited) = live.guard.clients.new_connection(peer.ip) {
        if limited.shadow {
            metrics::RATE_LIMIT_SHADOW.with_label_values(&[limited.limit]).inc();
        } else {
            metrics::RATE_LIMITED.with_label_values(&[limited.limit]).inc();
            let why = match limited.limit {
                "auth-lockout" => "too many failed connects from this address: locked out".to_string(),
                limit => format!("rate limit {limit} exceeded for {}", peer.ip),
            };
            tracing::warn!(peer = %peer.ip, limit = limited.limit, "websocket upgrade rate limited");
            let message = format!("clawguard: {why}: retry in {} ms", limited.retry_after.as_millis().max(1));
            if let Some(audit) = &shared.audit {
                audit.record(record::refused_early(&peer.ip.to_string(), "GET", session.req_header().uri.path(), &format!("rate-limit:{}", limited.limit), &why, 429)).await;
            }
            return crate::respond::respond_rate_limited(session, &limited, &message).await;
        }
    }
    let slot = match Slot::take(shared, &live, peer.ip, &identity) {
        Ok(slot) => slot,
        Err(limit) => {
            metrics::REFUSALS.with_label_values(&["too_many_connections"]).inc();
            match limit {
                LimitExceeded::PendingPerIp { .. } => metrics::RATE_LIMITED.with_label_values(&["ip-pending-handshakes"]).inc(),
                LimitExceeded::PendingTotal { .. } => metrics::RATE_LIMITED.with_label_values(&["pending-handshakes-total"]).inc(),
                _ => {}
            }
            tracing::warn!(peer = %peer.ip, %identity, reason = %limit, "websocket upgrade refused");
            // A cap of the whole proxy is an overload (503), one of the client's own a 429.
            let status = if matches!(limit, LimitExceeded::PendingTotal { .. }) { 503 } else { 429 };
            if let Some(audit) = &shared.audit {
                audit.record(record::refused_early(&peer.ip.to_string(), "GET", session.req_header().uri.path(), "connections", &limit.to_string(), status)).await;
            }
            return respond_error(session, status, "too_many_connections", &format!("clawguard: {limit}")).await;
        }
    };
    let head = upstream_request_head(session, peer, &live);
    let up = &policy.upstream;
    let connect = timeout(Duration::from_millis(up.connect_timeout_ms), TcpStream::connect(up.address)).await;
    let mut upstream = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return gateway_failure(session, "connect", &format!("cannot connect to the gateway at {}: {e}", up.address)).await,
        Err(_) => return gateway_failure(session, "connect", &format!("connecting to the gateway at {} timed out", up.address)).await,
    };
    let _ = upstream.set_nodelay(true);
    let handshake = timeout(Duration::from_millis(up.handshake_timeout_ms), async {
        upstream.write_all(&head).await?;
        read_response_head(&mut upstream).await
    })
    .await;
    let (resp, mut rest) = match handshake {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return gateway_failure(session, "io", &format!("gateway upgrade failed: {e}")).await,
        Err(_) => return gateway_failure(session, "timeout", "the gateway did not answer the upgrade in time").await,
    };
    if resp.status != 101 {
        metrics::WS_CONNECTIONS.with_label_values(&["refused_by_gateway"]).inc();
        let body = match timeout(Duration::from_millis(up.handshake_timeout_ms), read_body(&mut upstream, &resp, &mut rest)).await {
            Ok(Ok(b)) => b,
            _ => Bytes::new(),
        };
        return relay_refusal(session, &resp, body).await;
    }
    if resp.header("sec-websocket-extensions").is_some() {
        // Compressed frames could not be inspected; never proxy them.
        return gateway_failure(session, "protocol", "the gateway negotiated a WebSocket extension clawguard did not offer").await;
    }
    let mut switching = ResponseHeader::build(101, Some(resp.headers.len()))?;
    for (name, value) in &resp.headers {
        switching.append_header(name.clone(), value.as_slice())?;
    }
    let (mut client, early_client) = take_client(session, switching).await?;
    metrics::WS_CONNECTIONS.with_label_values(&["opened"]).inc();
    let active = Active::count();
    tracing::debug!(peer = %peer.ip, identity = %engine.access().resolution().why, "websocket connection opened");
    let timers = Timers {
        idle: (ws.idle_timeout_seconds > 0).then(|| Duration::from_secs(ws.idle_timeout_seconds)),
        close_grace: Duration::from_millis(ws.close_grace_ms),
        handshake: Duration::from_secs(ws.handshake_timeout_seconds),
    };
    let conn = Connection { id: format!("ws-{}", NEXT_CONNECTION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)).into(), peer: peer.ip.to_string().into(), identity: identity.as_str().into(), role: None };
    drop(live);
    let early = Early { gateway: rest.freeze(), client: early_client };
    let (shared, ip) = (shared.clone(), peer.ip);
    let run = async move {
        let end = pump(&shared, &mut client, upstream, early, engine, timers, &slot, conn, policy_changed).await;
        client.close().await;
        drop((slot, active));
        tracing::debug!(peer = %ip, end, "websocket connection finished");
    };
    // Run by the connection's own task once pingora's request futures have finished (they
    // would otherwise be held, some 30 KiB of them, for as long as the connection is open), or
    // here when no listener of clawguard's serves this connection.
    if let Some(run) = crate::listeners::hand_over(Box::pin(run)) {
        run.await;
    }
    Ok(())
}

/// Writes the 101 and takes the client's stream out of pingora's session, with what the client
/// sent right behind its upgrade request. pingora's body reader keeps a 64 KiB buffer reserved
/// for every read of an upgraded connection, held by an idle one for as long as it is open; out
/// of the session the pump reads only when bytes are ready (issue 17). The session left in its
/// place is a placeholder holding the same request head and 101 (as pingora's own subrequests
/// replay a head from its raw bytes), so pingora's clean-up and clawguard's request logging read
/// what happened, and it ends with the request: it has no stream and no keep-alive.
async fn take_client(session: &mut Session, switching: ResponseHeader) -> Result<(ClientSide, Bytes)> {
    if !matches!(session.as_downstream(), ServerSession::H1(_)) {
        return Err(Error::explain(ErrorType::InternalError, "a WebSocket upgrade is an HTTP/1.1 request"));
    }
    let mut placeholder = ServerSession::new_http1(Box::new(std::io::Cursor::new(session.as_downstream().to_h1_raw().to_vec())));
    if !placeholder.read_request().await? {
        return Err(Error::explain(ErrorType::InternalError, "the upgrade request's head cannot be read again"));
    }
    placeholder.write_response_header(Box::new(switching.clone())).await?;
    placeholder.set_keepalive(None);
    let ds = session.as_downstream_mut();
    ds.write_response_header(Box::new(switching)).await?;
    let early = read_now(ds).await?;
    let ServerSession::H1(upgraded) = std::mem::replace(ds, placeholder) else {
        unreachable!("checked to be HTTP/1.1 above")
    };
    let mut stream = upgraded.into_inner();
    // pingora does not flush the 101 it wrote before giving the stream up.
    stream.flush().await.or_err(ErrorType::WriteError, "writing the 101 to the client")?;
    Ok((ClientSide { stream: crate::listeners::unbuffered(stream) }, early))
}

/// What pingora read of an upgraded connection together with its head: the first body read
/// hands it out without waiting; when it holds nothing, the read is abandoned (nothing was read
/// from the socket, and the socket is read by the pump from then on).
async fn read_now(ds: &mut ServerSession) -> Result<Bytes> {
    let mut read = std::pin::pin!(ds.read_request_body());
    match std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await {
        Poll::Ready(Ok(Some(bytes))) => Ok(bytes),
        Poll::Ready(Ok(None)) | Poll::Pending => Ok(Bytes::new()),
        Poll::Ready(Err(e)) => Err(e),
    }
}

/// Bytes read from the client at a time, into a buffer on the stack of the read (an idle
/// connection holds none) and copied out at their size.
const CLIENT_READ: usize = 32 * 1024;

/// The client's side of an upgraded connection, out of pingora's session.
struct ClientSide {
    stream: Stream,
}

impl ClientSide {
    /// Waits for bytes from the client; `None` when it closed its side. Cancel-safe: a read
    /// either returns what it read or reads nothing.
    async fn read(&mut self) -> std::io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| {
            let mut space = [std::mem::MaybeUninit::<u8>::uninit(); CLIENT_READ];
            let mut buf = ReadBuf::uninit(&mut space);
            match std::pin::Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Ok(None)),
                Poll::Ready(Ok(())) => Poll::Ready(Ok(Some(Bytes::copy_from_slice(buf.filled())))),
            }
        })
        .await
    }

    /// Writes `chunks` and flushes them; a client that accepts no bytes for
    /// [`CLIENT_WRITE_STALL`] fails the write.
    async fn write(&mut self, chunks: impl IntoIterator<Item = Bytes>) -> Result<()> {
        let stalled = || Error::explain(ErrorType::WriteTimedout, "the client accepted no bytes in time");
        for chunk in chunks {
            timeout(CLIENT_WRITE_STALL, self.stream.write_all(&chunk)).await.map_err(|_| stalled())?.or_err(ErrorType::WriteError, "writing to the client")?;
        }
        timeout(CLIENT_WRITE_STALL, self.stream.flush()).await.map_err(|_| stalled())?.or_err(ErrorType::WriteError, "writing to the client")
    }

    /// Ends the connection: what is buffered goes out, then the stream's own shutdown (a TLS
    /// close_notify, a TCP FIN), given a second before the stream is dropped anyway.
    async fn close(&mut self) {
        let _ = timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }
}

/// What the upgrade read past the heads: the gateway's first bytes behind its 101, the client's
/// behind its request.
struct Early {
    gateway: Bytes,
    client: Bytes,
}

/// The upgrade request as sent to the gateway: the client's head, less the
/// headers a client may not set and `Sec-WebSocket-Extensions`, plus clawguard's
/// attribution headers.
fn upstream_request_head(session: &Session, peer: &Peer, live: &Live) -> Vec<u8> {
    let req = session.req_header();
    let target = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(req.method.as_str().as_bytes());
    head.extend_from_slice(b" ");
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &req.headers {
        let n = name.as_str();
        if CLIENT_HEADERS_REMOVED.contains(&n) || n == "sec-websocket-extensions" {
            continue;
        }
        push_header(&mut head, n, value.as_bytes());
    }
    for (name, value) in forwarding_headers(peer.ip, peer.tls, &live.policy.policy.attribution) {
        push_header(&mut head, name, value.as_bytes());
    }
    // The gateway intersects what it grants with this list, so it never grants more than
    // any identity this client can still turn out to be.
    let ceiling = live.guard.identities.upgrade_ceiling(peer).names().join(",");
    push_header(&mut head, "x-openclaw-scopes", ceiling.as_bytes());
    head.extend_from_slice(b"\r\n");
    head
}

fn push_header(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// A parsed gateway response head.
struct ResponseHead {
    status: u16,
    reason: String,
    headers: Vec<(http::HeaderName, Vec<u8>)>,
}

impl ResponseHead {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.as_str().eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }
}

fn io_error(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// Reads the gateway's response head; returns it and any bytes read past it.
async fn read_response_head<S: AsyncRead + Unpin>(up: &mut S) -> std::io::Result<(ResponseHead, BytesMut)> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if up.read_buf(&mut buf).await? == 0 {
            return Err(io_error("the gateway closed the connection before answering the upgrade"));
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = parsed.code.unwrap_or(0);
                let reason = parsed.reason.unwrap_or("").to_string();
                let mut out = Vec::with_capacity(parsed.headers.len());
                for h in parsed.headers.iter() {
                    let name = http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| io_error(format!("bad header name from the gateway: {e}")))?;
                    out.push((name, h.value.to_vec()));
                }
                let rest = buf.split_off(len);
                return Ok((ResponseHead { status, reason, headers: out }, rest));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => continue,
            Ok(httparse::Status::Partial) => return Err(io_error("the gateway's response head exceeds 64 KiB")),
            Err(e) => return Err(io_error(format!("malformed response from the gateway: {e}"))),
        }
    }
}

/// Reads a non-101 response body (Content-Length, chunked, or until close), capped.
async fn read_body<S: AsyncRead + Unpin>(up: &mut S, head: &ResponseHead, buf: &mut BytesMut) -> std::io::Result<Bytes> {
    let chunked = head.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case(b"chunked"));
    let length = head.header("content-length").and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
    if !chunked {
        let want = length.unwrap_or(MAX_REFUSAL_BODY).min(MAX_REFUSAL_BODY);
        while buf.len() < want {
            if up.read_buf(buf).await? == 0 {
                break;
            }
        }
        buf.truncate(want.min(buf.len()));
        return Ok(buf.split().freeze());
    }
    let mut body = BytesMut::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if buf.len() > 1024 || up.read_buf(buf).await? == 0 {
                return Err(io_error("malformed chunked body from the gateway"));
            }
        };
        let size_text = std::str::from_utf8(&buf[..line_end]).map_err(|_| io_error("bad chunk size"))?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).map_err(|_| io_error("bad chunk size"))?;
        if size == 0 || body.len() + size > MAX_REFUSAL_BODY {
            return Ok(body.freeze());
        }
        while buf.len() < line_end + 2 + size + 2 {
            if up.read_buf(buf).await? == 0 {
                return Err(io_error("truncated chunked body from the gateway"));
            }
        }
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        let _ = buf.split_to(line_end + 2 + size + 2);
    }
}

/// Passes the gateway's refusal of an upgrade (403, 503, …) to the client.
async fn relay_refusal(session: &mut Session, head: &ResponseHead, body: Bytes) -> Result<()> {
    let mut resp = ResponseHeader::build(head.status, Some(head.headers.len() + 1))?;
    if !head.reason.is_empty() {
        let _ = resp.set_reason_phrase(Some(&head.reason));
    }
    for (name, value) in &head.headers {
        if matches!(name.as_str(), "transfer-encoding" | "content-length" | "connection" | "keep-alive") {
            continue;
        }
        resp.append_header(name.clone(), value.as_slice())?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::CONNECTION, "close")?;
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

async fn gateway_failure(session: &mut Session, kind: &'static str, message: &str) -> Result<()> {
    tracing::warn!(%message, "websocket upgrade failed");
    metrics::UPSTREAM_ERRORS.with_label_values(&["websocket", kind]).inc();
    metrics::WS_CONNECTIONS.with_label_values(&["upstream_error"]).inc();
    metrics::REFUSALS.with_label_values(&["gateway_unreachable"]).inc();
    respond_error(session, 502, "bad_gateway", &format!("clawguard: {message}")).await
}

/// One counted connection (and, until its handshake completes, one of its address's pending
/// handshakes); uncounted when dropped, however the connection ends.
struct Slot {
    shared: Arc<Shared>,
    ip: IpAddr,
    identity: String,
    pending: std::sync::atomic::AtomicBool,
}

impl Slot {
    fn take(shared: &Arc<Shared>, live: &Live, ip: IpAddr, identity: &str) -> std::result::Result<Self, LimitExceeded> {
        let ws = &live.policy.policy.websocket;
        let clients = &live.guard.clients;
        let caps = Caps {
            per_ip: ws.max_connections_per_ip,
            per_identity: ws.max_connections_per_identity,
            pending_per_ip: clients.pending_handshakes,
            pending_total: clients.pending_handshakes_total,
            pending_shadow: clients.pending_shadow,
        };
        let mut counts = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
        if caps.pending_shadow && caps.pending_per_ip > 0 && counts.pending(ip) >= caps.pending_per_ip {
            metrics::RATE_LIMIT_SHADOW.with_label_values(&["ip-pending-handshakes"]).inc();
        }
        counts.try_open(ip, identity, caps)?;
        Ok(Slot { shared: shared.clone(), ip, identity: identity.to_string(), pending: std::sync::atomic::AtomicBool::new(true) })
    }

    /// The handshake completed: no longer one of the address's pending handshakes.
    fn established(&self) {
        if self.pending.swap(false, std::sync::atomic::Ordering::Relaxed) {
            self.shared.connections.lock().unwrap_or_else(|e| e.into_inner()).established(self.ip, &self.identity);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.shared.connections.lock().unwrap_or_else(|e| e.into_inner());
        counts.close(self.ip, &self.identity, self.pending.load(std::sync::atomic::Ordering::Relaxed));
    }
}

/// One open connection in `clawguard_ws_connections_active`, however the connection ends.
struct Active;

impl Active {
    fn count() -> Self {
        metrics::WS_ACTIVE.inc();
        Active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        metrics::WS_ACTIVE.dec();
    }
}

struct Timers {
    idle: Option<Duration>,
    close_grace: Duration,
    handshake: Duration,
}

/// Numbers the connections of this process for the audit log (`ws-<n>`).
static NEXT_CONNECTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What `deliver` records in the audit log, and for which connection.
struct Recording<'a> {
    audit: Option<&'a AuditLog>,
    conn: Connection,
    /// Where signs of protocol drift are noted (readiness reads them).
    drift: &'a std::sync::Mutex<crate::shared::Drift>,
    /// Where spend thresholds crossed by a report read on this connection are published.
    shared: &'a Shared,
}

/// Runs the connection until it ends; returns how it ended.
#[allow(clippy::too_many_arguments)]
async fn pump(shared: &Shared, client: &mut ClientSide, upstream: TcpStream, early: Early, mut engine: Box<WsEngine>, timers: Timers, slot: &Slot, conn: Connection, policy_changed: watch::Receiver<u64>) -> &'static str {
    let (up_read, mut up_write) = upstream.into_split();
    let (c2s_tx, mut c2s_rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let (s2c_tx, mut s2c_rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    // How the gateway's side ended: `None` while it is open, `Some(error)` once it closed.
    let (gone_tx, mut gone_rx) = oneshot::channel::<Option<String>>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // What can happen to a connection without traffic (a pin revoked, a budget tripped, a
    // reload, shutdown) is watched by a future of its own that wakes the main loop only when it
    // happens, so a message costs no registration with those four watches.
    let (control_tx, mut control_rx) = mpsc::channel::<Control>(4);
    let (control_stop_tx, control_stop_rx) = oneshot::channel::<()>();
    // Shutdown as of now is handled by the main loop; a later one reaches it as `Control`.
    let shutdown_seen = *shared.shutdown.borrow();
    let control = watch_control(shared, shutdown_seen, policy_changed, control_tx, control_stop_rx);

    let writer = async move {
        while let Some(chunk) = c2s_rx.recv().await {
            if up_write.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = up_write.shutdown().await;
    };
    let reader = async move {
        let read_loop = async {
            // A quiet gateway costs no buffer: one is taken when bytes are ready and goes with
            // the chunk read into it (the engine copies what it keeps).
            loop {
                if let Err(e) = up_read.readable().await {
                    return Some(e.to_string());
                }
                let mut buf = BytesMut::with_capacity(READ_CHUNK);
                match up_read.try_read_buf(&mut buf) {
                    Ok(0) => return None,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Some(e.to_string()),
                    Ok(_) => {
                        if s2c_tx.send(buf.freeze()).await.is_err() {
                            return None;
                        }
                    }
                }
            }
        };
        tokio::select! {
            ended = read_loop => { let _ = gone_tx.send(ended); }
            _ = stop_rx => {}
        }
    };
    let main = async move {
        let mut rec = Recording { audit: shared.audit.as_deref(), conn, drift: &shared.drift, shared };
        let mut upstream_open = true;
        let mut last_activity = Instant::now();
        // Checked: a deadline past what `Instant` holds is no deadline.
        let after = |from: Instant, d: Duration| from.checked_add(d);
        let handshake_deadline = after(Instant::now(), timers.handshake);
        let mut close_deadline: Option<Instant> = None;
        let mut end = "client closed";
        // One timer for the idle, handshake and close deadlines, set again only when the
        // deadline comes earlier than it is set for; activity moves the idle deadline later,
        // and a timer that fires before the deadline in force is set again for it.
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        if shutdown_seen {
            let out = engine.close(1001, "clawguard is shutting down");
            let _ = deliver(client, &c2s_tx, out, &mut rec).await;
        } else {
            // Taken apart and dropped once read: the gateway's early bytes share the 4 KiB
            // buffer its response head was read into, held otherwise for the connection's life.
            let Early { gateway: early_gateway, client: early_client } = early;
            if !early_gateway.is_empty() {
                let out = engine.on_gateway_bytes(&shared.env(&shared.live()), &early_gateway);
                if deliver(client, &c2s_tx, out, &mut rec).await.is_err() {
                    end = "client write failed";
                }
            }
            drop(early_gateway);
            if !early_client.is_empty() && end == "client closed" {
                let out = engine.on_client_bytes(&shared.env(&shared.live()), &early_client);
                drop(early_client);
                if deliver(client, &c2s_tx, out, &mut rec).await.is_err() {
                    end = "client write failed";
                }
            }
        }
        while !engine.is_done() && end == "client closed" {
            if engine.access().is_established() {
                slot.established();
            }
            if engine.is_closing() && close_deadline.is_none() {
                close_deadline = Some(after(Instant::now(), timers.close_grace).unwrap_or_else(Instant::now));
            }
            let idle_deadline = timers.idle.and_then(|d| after(last_activity, d));
            let handshake_pending = !engine.access().is_established();
            let deadline = close_deadline.or_else(|| match (handshake_pending, idle_deadline, handshake_deadline) {
                (true, Some(idle), Some(handshake)) => Some(idle.min(handshake)),
                (true, idle, handshake) => idle.or(handshake),
                (false, idle, _) => idle,
            });
            match (deadline, armed) {
                (Some(d), Some(a)) if d >= a => {}
                (Some(d), _) => {
                    timer.as_mut().reset(d);
                    armed = Some(d);
                }
                (None, _) => armed = None,
            }
            let can_read_client = c2s_tx.capacity() > 0;
            tokio::select! {
                read = client.read(), if can_read_client => match read {
                    Ok(Some(data)) => {
                        last_activity = Instant::now();
                        let out = {
                            let _timer = metrics::DECISION_WS.start_timer();
                            engine.on_client_bytes(&shared.env(&shared.live()), &data)
                        };
                        if deliver(client, &c2s_tx, out, &mut rec).await.is_err() { end = "client write failed"; }
                    }
                    Ok(None) => break,
                    Err(_) => { end = "client read failed"; }
                },
                _ = c2s_tx.reserve(), if !can_read_client => {}
                chunk = s2c_rx.recv(), if upstream_open => match chunk {
                    Some(data) => {
                        last_activity = Instant::now();
                        let out = engine.on_gateway_bytes(&shared.env(&shared.live()), &data);
                        if deliver(client, &c2s_tx, out, &mut rec).await.is_err() { end = "client write failed"; }
                    }
                    None => {
                        upstream_open = false;
                        if !engine.is_closing() {
                            // The gateway went away without a close frame: the client is told,
                            // 1012 when the gateway closed the connection (a restart), 1011 when
                            // the connection failed, so it can tell either from a network fault.
                            let failure = gone_rx.try_recv().ok().flatten();
                            let (code, reason) = match &failure {
                                None => (1012, "the gateway closed the connection"),
                                Some(_) => (1011, "the connection to the gateway failed"),
                            };
                            tracing::warn!(code, error = ?failure, "the gateway closed a websocket without a close frame");
                            metrics::WS_UPSTREAM_LOST.with_label_values(&[if code == 1012 { "1012" } else { "1011" }]).inc();
                            metrics::UPSTREAM_ERRORS.with_label_values(&["websocket", if code == 1012 { "closed" } else { "io" }]).inc();
                            let out = engine.close(code, reason);
                            if deliver(client, &c2s_tx, out, &mut rec).await.is_err() { end = "client write failed"; }
                        }
                    }
                },
                Some(control) = control_rx.recv() => {
                    let out = {
                        let live = shared.live();
                        let env = shared.env(&live);
                        match control {
                            Control::PinsChanged => engine.recheck(&env),
                            // A budget tripped: this connection's runs in flight stop if it covers them.
                            Control::SpendTripped => engine.abort_runs(&env),
                            // A reload: the connection is judged again by the version now in force.
                            Control::PolicyChanged => engine.rebind(&env),
                            Control::Shutdown => engine.close(1001, "clawguard is shutting down"),
                        }
                    };
                    if deliver(client, &c2s_tx, out, &mut rec).await.is_err() { end = "client write failed"; }
                },
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    if deadline.is_some_and(|d| Instant::now() < d) {
                        // Set for an earlier deadline that activity has since moved.
                        continue;
                    }
                    if engine.is_closing() {
                        end = "close grace expired";
                    } else if !engine.access().is_established() && handshake_deadline.is_some_and(|d| Instant::now() >= d) {
                        // As the gateway does when no handshake completes in time.
                        let out = engine.close(1000, "handshake timeout");
                        if deliver(client, &c2s_tx, out, &mut rec).await.is_err() { end = "client write failed"; }
                    } else {
                        let out = engine.close(1001, "idle timeout");
                        if deliver(client, &c2s_tx, out, &mut rec).await.is_err() { end = "client write failed"; }
                    }
                },
            }
        }
        if engine.is_done() {
            end = "closed by clawguard";
        }
        drop(c2s_tx);
        let _ = stop_tx.send(());
        let _ = control_stop_tx.send(());
        end
    };
    let (end, (), (), ()) = tokio::join!(main, writer, reader, control);
    end
}

/// Something that happened to the connection without traffic.
#[derive(Debug, Clone, Copy)]
enum Control {
    /// The pin store changed: a node's pin may be revoked.
    PinsChanged,
    /// A spend budget tripped: runs in flight may have to stop.
    SpendTripped,
    /// A policy reload: the connection is judged again.
    PolicyChanged,
    /// clawguard is shutting down.
    Shutdown,
}

/// Watches the pin store, spend trips, reloads and shutdown for one connection until `stop`,
/// telling the main loop of each change (shutdown once).
async fn watch_control(shared: &Shared, mut shutdown_seen: bool, mut policy_changed: watch::Receiver<u64>, to_main: mpsc::Sender<Control>, stop: oneshot::Receiver<()>) {
    let mut shutdown = shared.shutdown.clone();
    let mut pins_changed = shared.pins.subscribe();
    let mut spend_tripped = shared.spend_trips.subscribe();
    let watching = async {
        loop {
            let control = tokio::select! {
                Ok(()) = pins_changed.changed() => Control::PinsChanged,
                Ok(()) = spend_tripped.changed() => Control::SpendTripped,
                Ok(()) = policy_changed.changed() => Control::PolicyChanged,
                changed = shutdown.changed(), if !shutdown_seen => {
                    if changed.is_ok() && !*shutdown.borrow() {
                        continue;
                    }
                    shutdown_seen = true;
                    Control::Shutdown
                },
                else => return,
            };
            if to_main.send(control).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = watching => {}
        _ = stop => {}
    }
}

/// Writes an engine output: frames to the gateway through the channel, frames
/// to the client directly; counts verdicts.
async fn deliver(client: &mut ClientSide, to_gateway: &mpsc::Sender<Bytes>, out: Output, rec: &mut Recording<'_>) -> Result<()> {
    let Output { to_gateway: up, to_client, forwarded, decided, notices, allowed } = out;
    // Recorded before anything is written: with `audit.fsync = "always"` a client never sees an
    // answer whose record is not on disk.
    // The handshake's identity first: the other notices of the same answer (a node's upgrade)
    // and its decisions are that identity's.
    for notice in &notices {
        if let Notice::Established { identity, role, .. } = notice {
            rec.conn.identity = identity.as_str().into();
            rec.conn.role = Some((*role).into());
        }
    }
    if let Some(audit) = rec.audit {
        for notice in &notices {
            if !matches!(notice, Notice::VersionMismatch { .. } | Notice::UnknownMethod { .. }) {
                audit.record(record::ws_notice(&rec.conn, notice)).await;
            }
        }
        for d in &decided {
            audit.record(record::ws_decision(&rec.conn, d)).await;
        }
        let mut unrecorded = 0;
        for method in allowed {
            if !audit.record(record::ws_allowed(&rec.conn, method)).await {
                unrecorded += 1;
            }
        }
        if unrecorded > 0 && audit.blocks() {
            // Nothing the log must record goes through unrecorded: the requests are not
            // forwarded and the connection ends.
            tracing::error!(conn = %rec.conn.id, unrecorded, "the audit log did not take an allowed request's record (audit.on_failure = \"block\"): closing the connection");
            return Err(Error::explain(ErrorType::InternalError, "the audit log cannot record"));
        }
    }
    for notice in notices {
        match notice {
            Notice::VersionMismatch { gateway, expected } => {
                metrics::VERSION_MISMATCH.inc();
                metrics::GATEWAY_DRIFT.set(1);
                tracing::warn!(%gateway, %expected, "the gateway's version differs from the one clawguard's method table describes");
                rec.drift.lock().unwrap_or_else(|e| e.into_inner()).reason = Some(format!("the gateway is version {gateway}, not gateway.version {expected}"));
            }
            Notice::UnknownMethod { method } => {
                metrics::UNKNOWN_METHODS.inc();
                let mut drift = rec.drift.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(reason) = drift.unknown.record(crate::shared::now_ms(), &method) {
                    metrics::GATEWAY_DRIFT.set(1);
                    tracing::warn!(%reason, "clients ask for methods the method table does not have: the gateway may be newer than the policy");
                    drift.reason.get_or_insert(reason);
                }
            }
            Notice::NodeUpgrade { device, beyond } => {
                metrics::NODE_PIN_UPGRADES.inc();
                tracing::warn!(node = %device, commands = ?beyond.commands, caps = ?beyond.caps, permissions = ?beyond.permissions,
                    "node declared more than its pin (or has none yet): held to its pin, request pending approval (clawguard nodes pending)");
            }
            Notice::PinFollowed { device, decision, by } => {
                metrics::PIN_FOLLOWED.with_label_values(&[decision]).inc();
                tracing::info!(node = %device, decision, identity = %by, "node pin follows a gateway pairing decision");
            }
            Notice::Established { identity, client, device, role, scopes, .. } => {
                tracing::debug!(%identity, %client, %device, role, ?scopes, "gateway handshake complete")
            }
            Notice::Spend(event) => crate::spend_poll::publish(rec.shared, std::slice::from_ref(&event)),
            Notice::SpendUnread { reason } => tracing::warn!(conn = %rec.conn.id, %reason, "spend: a usage report was not counted"),
        }
    }
    if forwarded[0] > 0 {
        metrics::HOT.forward_c2s.inc_by(forwarded[0] as u64);
    }
    if forwarded[1] > 0 {
        metrics::HOT.forward_s2c.inc_by(forwarded[1] as u64);
    }
    for d in &decided {
        let dir = d.direction.label();
        metrics::WS_MESSAGES.with_label_values(&[dir, d.verdict.label()]).inc();
        metrics::DECISIONS.with_label_values(&[dir, d.verdict.label(), &d.rule, metrics::decision_mode(d.verdict != Verdict::WouldDeny, &d.rule)]).inc();
        if d.direction == Direction::ClientToGateway {
            metrics::REFUSED_BY_IDENTITY.with_label_values(&["websocket", &rec.conn.identity]).inc();
        }
        if let Some(limit) = d.rule.strip_prefix("rate-limit:") {
            let counter = if d.verdict == Verdict::WouldDeny { &metrics::RATE_LIMIT_SHADOW } else { &metrics::RATE_LIMITED };
            counter.with_label_values(&[limit]).inc();
        }
        let level_is_warn = d.direction == Direction::ClientToGateway;
        if d.verdict == Verdict::Abort {
            tracing::warn!(verdict = d.verdict.label(), rule = %d.rule, reason = %d.reason, "run in flight stopped");
        } else if level_is_warn {
            tracing::warn!(direction = dir, verdict = d.verdict.label(), rule = %d.rule, reason = %d.reason, "websocket message blocked");
        } else {
            tracing::info!(direction = dir, verdict = d.verdict.label(), rule = %d.rule, reason = %d.reason, "websocket message blocked");
        }
    }
    for bytes in coalesce(up) {
        // The gateway side may already be gone; the client side decides the outcome.
        if to_gateway.send(bytes).await.is_err() {
            break;
        }
    }
    if !to_client.is_empty() {
        client.write(coalesce(to_client)).await?;
    }
    Ok(())
}
