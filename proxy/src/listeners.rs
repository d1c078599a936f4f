//! clawguard's client listeners, plaintext and TLS: an accept loop that admits each
//! connection (per-address and total caps), completes the TLS handshake with clawguard's own
//! rustls `ServerConfig` (see `tls.rs`), holds every connection to a deadline for its request
//! heads, and hands it to the pingora HTTP proxy.
//!
//! pingora's own listener builds its `ServerConfig` inside `TlsSettings::build()` (no server
//! cipher preference), has no cap on connections and only a per-read timeout for request
//! heads (a byte every few seconds keeps a connection forever). Its docs show this shape
//! (`http_proxy` + a custom accept loop). The connection gets the same socket digest
//! pingora's listener gives it (peer address), and a TLS stream the same TLS digest (ALPN,
//! client certificate), so the proxy cannot tell the difference.

use crate::metrics;
use crate::shared::Shared;
use async_trait::async_trait;
use clawguard_filters::conn_limits::ClientLimit;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use arc_swap::ArcSwap;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::Instant;

/// The write buffer of a client connection (pingora's `DEFAULT_L4_WRITE_BUFFER_SIZE`).
const WRITE_BUFFER: usize = 1460;

/// A client TCP stream with a write buffer, as pingora's own listener gives it
/// (`L4Stream::set_buffer` is private to pingora, and a stream made `From<TcpStream>` has none:
/// every write would go out as its own segment); pingora flushes where it must. There is no
/// read buffer: pingora reads request heads and bodies into buffers of its own, and the 64 KiB
/// its listener adds would be held, zeroed, by every idle connection (issue 17).
#[derive(Debug)]
pub struct Buffered(tokio::io::BufWriter<L4Stream>);

impl Buffered {
    fn new(l4: L4Stream) -> Self {
        Buffered(tokio::io::BufWriter::with_capacity(WRITE_BUFFER, l4))
    }
}

/// A flushed plaintext client stream without its write buffer, for a connection whose writes
/// are whole answers already (an upgraded WebSocket: the pump coalesces frames itself), so that
/// an idle one holds no buffer; any other stream as it is.
pub fn unbuffered(stream: Stream) -> Stream {
    if !stream.as_any().is::<Buffered>() {
        return stream;
    }
    match stream.into_any().downcast::<Buffered>() {
        Ok(buffered) => Box::new(buffered.0.into_inner()),
        Err(_) => unreachable!("checked to be Buffered above"),
    }
}

impl tokio::io::AsyncRead for Buffered {
    fn poll_read(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Buffered {
    fn poll_write(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[async_trait]
impl pingora::protocols::Shutdown for Buffered {
    async fn shutdown(&mut self) {
        let _ = self.0.flush().await;
        pingora::protocols::Shutdown::shutdown(self.0.get_mut()).await;
    }
}

impl pingora::protocols::UniqueID for Buffered {
    fn id(&self) -> pingora::protocols::UniqueIDType {
        self.0.get_ref().id()
    }
}

impl pingora::protocols::Ssl for Buffered {}

impl pingora::protocols::GetTimingDigest for Buffered {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.0.get_ref().get_timing_digest()
    }
}

impl pingora::protocols::GetProxyDigest for Buffered {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.0.get_ref().get_proxy_digest()
    }
}

impl GetSocketDigest for Buffered {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.0.get_ref().get_socket_digest()
    }
}

#[async_trait]
impl pingora::protocols::Peek for Buffered {}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a request head (or the TLS handshake), which must be whole by then.
    AwaitingHead(Instant),
    /// A request is being served (a WebSocket for as long as it is open).
    InRequest,
}

/// The request phase of every open connection, keyed by its socket digest, which pingora
/// hands to every request of the connection, with the requests in flight on it (several on
/// an HTTP/2 connection: the deadline only runs while none is).
#[derive(Default)]
pub struct Heads(Mutex<HashMap<usize, (watch::Sender<Phase>, usize)>>);

/// The key of a connection: the address of its socket digest, unique while it is open.
pub fn connection_key(digest: &Arc<SocketDigest>) -> usize {
    Arc::as_ptr(digest) as usize
}

impl Heads {
    fn register(&self, key: usize, phase: Phase) -> watch::Receiver<Phase> {
        let (tx, rx) = watch::channel(phase);
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (tx, 0));
        rx
    }

    fn unregister(&self, key: usize) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    }

    /// A request head arrived whole on the connection `key`.
    pub fn request_started(&self, key: usize) {
        if let Some((tx, in_flight)) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&key) {
            *in_flight += 1;
            tx.send_replace(Phase::InRequest);
        }
    }

    /// An answer is done: once none is in flight, the next head must arrive within `timeout`.
    pub fn request_finished(&self, key: usize, timeout: Duration) {
        if let Some((tx, in_flight)) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&key) {
            *in_flight = in_flight.saturating_sub(1);
            if *in_flight == 0 {
                tx.send_replace(deadline(timeout));
            }
        }
    }
}

fn deadline(timeout: Duration) -> Phase {
    // The policy caps the timeout at a year, so this cannot overflow; if it did, no deadline.
    Phase::AwaitingHead(Instant::now().checked_add(timeout).unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600)))
}

/// Resolves when the connection has waited past its head deadline.
async fn head_overdue(mut phase: watch::Receiver<Phase>) {
    loop {
        let current = *phase.borrow_and_update();
        match current {
            Phase::AwaitingHead(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => return,
                    changed = phase.changed() => if changed.is_err() { return std::future::pending().await },
                }
            }
            Phase::InRequest => {
                if phase.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// A service accepting client connections on plaintext and TLS addresses, served by `app`.
pub struct ClientListeners<A> {
    name: String,
    plain: Vec<SocketAddr>,
    tls: Vec<SocketAddr>,
    /// The TLS acceptor in force (a reload of the certificates swaps it; handshakes in
    /// progress and open connections keep the one they started with).
    acceptor: Option<Arc<ArcSwap<Acceptor>>>,
    app: Arc<A>,
    shared: Arc<Shared>,
}

impl<A: ServerApp + Send + Sync + 'static> ClientListeners<A> {
    /// Listeners on `plain` and, with `acceptor`, on `tls`.
    pub fn new(name: &str, plain: Vec<SocketAddr>, tls: Vec<SocketAddr>, acceptor: Option<Arc<ArcSwap<Acceptor>>>, app: A, shared: Arc<Shared>) -> Self {
        ClientListeners { name: name.to_string(), plain, tls, acceptor, app: Arc::new(app), shared }
    }

    async fn accept_loop(listener: tokio::net::TcpListener, acceptor: Option<Arc<ArcSwap<Acceptor>>>, app: Arc<A>, shared: Arc<Shared>, mut shutdown: ShutdownWatch) {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() { return }
                    continue;
                }
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::error!(error = %e, "accept failed");
                    // Out of descriptors: accept() would fail again at once; let others close first.
                    if e.raw_os_error() == Some(24) {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            };
            let live = shared.live();
            let server = &live.policy.policy.server;
            let admitted = shared.clients.lock().unwrap_or_else(|e| e.into_inner()).try_open(peer.ip(), server.max_connections_per_ip, server.max_connections);
            if let Err(limit) = admitted {
                tokio::spawn(refuse(tcp, limit, acceptor.is_none()));
                continue;
            }
            // The certificates in force now.
            let (acceptor, app, shared, shutdown) = (acceptor.as_ref().map(|a| a.load_full()), app.clone(), shared.clone(), shutdown.clone());
            tokio::spawn(async move {
                serve(tcp, peer, acceptor, app, &shared, shutdown).await;
                shared.clients.lock().unwrap_or_else(|e| e.into_inner()).close(peer.ip());
            });
        }
    }
}

/// Serves one admitted connection until it ends or misses a head deadline.
async fn serve<A: ServerApp + Send + Sync + 'static>(tcp: tokio::net::TcpStream, peer: SocketAddr, acceptor: Option<Arc<Acceptor>>, app: Arc<A>, shared: &Shared, shutdown: ShutdownWatch) {
    // Small writes (a WebSocket answer, a head and its body) go out at once rather than waiting
    // for the peer's ACK of the last one (Nagle), as nginx's `tcp_nodelay on` does.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY on a client connection");
    }
    let mut l4 = L4Stream::from(tcp);
    let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
    let _ = digest.peer_addr.set(Some(peer.into()));
    l4.set_socket_digest(digest);
    let Some(key) = l4.get_socket_digest().map(|d| connection_key(&d)) else { return };
    let timeout = Duration::from_secs(shared.live().policy.policy.server.header_timeout_seconds);
    let phase = shared.heads.register(key, deadline(timeout));
    // Boxed, so that what the requests needed (pingora's futures) is freed when they end rather
    // than held by the task of an upgraded connection for its lifetime.
    let requests = Box::pin(UPGRADED.scope(RefCell::new(None), async {
        let stream: Stream = match &acceptor {
            None => Box::new(Buffered::new(l4)),
            // Boxed: the handshake's state is large and needed only until it completes.
            Some(acceptor) => match Box::pin(acceptor.tls_handshake(Buffered::new(l4))).await {
                Ok(tls) => Box::new(tls),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return None;
                }
            },
        };
        let mut next = Some(stream);
        while let Some(stream) = next {
            next = app.process_new(stream, &shutdown).await;
        }
        UPGRADED.with(RefCell::take)
    }));
    let upgraded = tokio::select! {
        upgraded = requests => upgraded,
        () = head_overdue(phase) => {
            metrics::REFUSALS.with_label_values(&["header_timeout"]).inc();
            tracing::debug!(%peer, seconds = timeout.as_secs(), "connection closed: no whole request head in time");
            None
        }
    };
    shared.heads.unregister(key);
    if let Some(upgraded) = upgraded {
        upgraded.await;
    }
}

/// An upgraded connection from the upgrade on: the WebSocket pump, which owns the client's
/// stream.
pub type Upgraded = Pin<Box<dyn Future<Output = ()> + Send>>;

tokio::task_local! {
    /// Where the request that upgraded a connection leaves its pump for the connection's task.
    static UPGRADED: RefCell<Option<Upgraded>>;
}

/// Hands an upgraded connection to the task serving it, which runs it once pingora is done
/// with the request, so that pingora's futures for the request are not held as long as the
/// connection is open. Gives it back when the connection is not served by these listeners.
pub fn hand_over(upgraded: Upgraded) -> Option<Upgraded> {
    let mut upgraded = Some(upgraded);
    let taken = UPGRADED.try_with(|slot| *slot.borrow_mut() = upgraded.take());
    match taken {
        Ok(()) => None,
        Err(_) => upgraded,
    }
}

/// Turns away a connection over a cap: a JSON 429 (503 for the total cap) on plaintext, a
/// close on TLS (no handshake is spent on it).
async fn refuse(mut tcp: tokio::net::TcpStream, limit: ClientLimit, plaintext: bool) {
    let (status, reason) = match limit {
        ClientLimit::PerIp { .. } => (429, "Too Many Requests"),
        ClientLimit::Total { .. } => (503, "Service Unavailable"),
    };
    metrics::REFUSALS.with_label_values(&["too_many_connections"]).inc();
    tracing::debug!(error = %limit, "connection refused");
    if plaintext {
        let body = serde_json::json!({ "error": { "message": format!("clawguard: {limit}"), "type": "too_many_connections", "source": "clawguard" } }).to_string();
        let head = format!("HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\n\r\n", body.len());
        let answer = format!("{head}{body}");
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = tcp.write_all(answer.as_bytes()).await;
            let _ = tcp.shutdown().await;
        })
        .await;
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> Service for ClientListeners<A> {
    async fn start_service(&mut self, _fds: Option<ListenFds>, shutdown: ShutdownWatch, _listeners_per_fd: usize) {
        let mut loops = Vec::new();
        let addrs = self.plain.iter().map(|a| (*a, None)).chain(self.tls.iter().map(|a| (*a, self.acceptor.clone())));
        for (addr, acceptor) in addrs {
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => listener,
                Err(e) => {
                    // server.rs binds every listener once before start-up, so this is a race
                    // with another process; say which address rather than exit silently.
                    tracing::error!(%addr, error = %e, "cannot listen");
                    continue;
                }
            };
            loops.push(tokio::spawn(Self::accept_loop(listener, acceptor, self.app.clone(), self.shared.clone(), shutdown.clone())));
        }
        for accept_loop in loops {
            let _ = accept_loop.await;
        }
        self.app.cleanup().await;
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue13_the_head_deadline_runs_only_while_no_request_is_in_flight() {
        let heads = Heads::default();
        let rx = heads.register(7, deadline(Duration::from_secs(10)));
        assert!(matches!(*rx.borrow(), Phase::AwaitingHead(_)));
        // Two HTTP/2 streams on one connection.
        heads.request_started(7);
        heads.request_started(7);
        heads.request_finished(7, Duration::from_secs(10));
        assert_eq!(*rx.borrow(), Phase::InRequest, "one stream still in flight");
        heads.request_finished(7, Duration::from_secs(10));
        assert!(matches!(*rx.borrow(), Phase::AwaitingHead(_)));
        heads.unregister(7);
        heads.request_started(7);
        assert!(matches!(*rx.borrow(), Phase::AwaitingHead(_)), "an unregistered connection is left alone");
    }
}
