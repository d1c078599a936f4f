//! clawguard's TLS listeners: an accept loop that completes the TLS handshake
//! with clawguard's own rustls `ServerConfig` (see `tls.rs`) and hands each
//! connection to the same pingora HTTP proxy the plaintext listeners use.
//!
//! pingora's listener builds its `ServerConfig` inside `TlsSettings::build()`
//! and offers no way to set the server's cipher preference; its own docs show
//! this shape (`http_proxy` + a custom accept loop) for a server that
//! terminates TLS itself. The connection gets the same socket digest pingora's
//! listener gives it (peer address), and the TLS stream the same TLS digest
//! (ALPN, client certificate), so the proxy cannot tell the difference.

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take to complete the TLS handshake (pingora's own bound).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// A service that accepts TLS connections on `addrs` and serves them with `app`.
pub struct TlsListeners<A> {
    name: String,
    addrs: Vec<SocketAddr>,
    acceptor: Arc<Acceptor>,
    app: Arc<A>,
}

impl<A: ServerApp + Send + Sync + 'static> TlsListeners<A> {
    /// A TLS service for `addrs`, completing handshakes with `acceptor`.
    pub fn new(name: &str, addrs: Vec<SocketAddr>, acceptor: Acceptor, app: A) -> Self {
        TlsListeners { name: name.to_string(), addrs, acceptor: Arc::new(acceptor), app: Arc::new(app) }
    }

    async fn accept_loop(listener: tokio::net::TcpListener, acceptor: Arc<Acceptor>, app: Arc<A>, mut shutdown: ShutdownWatch) {
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
                    tracing::error!(error = %e, "TLS listener accept failed");
                    // Out of descriptors: accept() would fail again at once; let others close first.
                    if e.raw_os_error() == Some(24) {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, app, shutdown) = (acceptor.clone(), app.clone(), shutdown.clone());
            tokio::spawn(async move {
                let mut l4 = L4Stream::from(tcp);
                let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
                let _ = digest.peer_addr.set(Some(peer.into()));
                l4.set_socket_digest(digest);
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.tls_handshake(l4)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let mut next: Option<Stream> = Some(Box::new(tls));
                while let Some(stream) = next {
                    next = app.process_new(stream, &shutdown).await;
                }
            });
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> Service for TlsListeners<A> {
    async fn start_service(&mut self, _fds: Option<ListenFds>, shutdown: ShutdownWatch, _listeners_per_fd: usize) {
        let mut loops = Vec::new();
        for addr in &self.addrs {
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => listener,
                Err(e) => {
                    // server.rs binds every listener once before start-up, so this is a race
                    // with another process; say which address rather than exit silently.
                    tracing::error!(%addr, error = %e, "cannot listen for TLS");
                    continue;
                }
            };
            loops.push(tokio::spawn(Self::accept_loop(listener, self.acceptor.clone(), self.app.clone(), shutdown.clone())));
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
