//! The lifecycle background service: turns pingora's shutdown signal into
//! clawguard's (so WebSocket pumps send 1001), and keeps the readiness state
//! current by checking that every listener accepts and the gateway's own
//! `/readyz` answers 200.

use crate::shared::Shared;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness details for `/readyz`.
#[derive(Default)]
pub struct Readiness {
    /// What failed in the last check (empty when ready).
    pub failing: Vec<String>,
}

/// The lifecycle service.
pub struct Lifecycle {
    /// Shared state (its `ready` flag is set here).
    pub shared: Arc<Shared>,
    /// The last check's failures.
    pub detail: Arc<Mutex<Readiness>>,
    /// Tells connections that the server is shutting down.
    pub shutdown_tx: watch::Sender<bool>,
    /// Every proxy listener to check.
    pub listeners: Vec<SocketAddr>,
}

#[async_trait]
impl BackgroundService for Lifecycle {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let failing = self.check().await;
            let ready = failing.is_empty();
            crate::metrics::READY.set(i64::from(ready));
            if ready != self.shared.ready.swap(ready, Ordering::Relaxed) {
                if ready {
                    tracing::info!("ready: listeners accept and the gateway is ready");
                } else {
                    tracing::warn!(?failing, "not ready");
                }
            }
            if let Ok(mut d) = self.detail.lock() {
                d.failing = failing;
            }
            let pause = if ready { Duration::from_secs(2) } else { Duration::from_millis(250) };
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        self.shared.ready.store(false, Ordering::Relaxed);
        crate::metrics::READY.set(0);
        tracing::info!("shutting down: closing WebSocket connections with 1001");
        let _ = self.shutdown_tx.send(true);
    }
}

impl Lifecycle {
    async fn check(&self) -> Vec<String> {
        let mut failing = Vec::new();
        for addr in &self.listeners {
            let target = reachable(*addr);
            if !matches!(timeout(CHECK_TIMEOUT, TcpStream::connect(target)).await, Ok(Ok(_))) {
                failing.push(format!("listener {addr} does not accept connections"));
            }
        }
        let (upstream, gateway) = {
            let live = self.shared.live();
            (live.policy.policy.upstream.address, live.policy.policy.gateway.clone())
        };
        if let Err(why) = gateway_ready(upstream).await {
            failing.push(format!("gateway {upstream}: {why}"));
        }
        // A gateway of another version may speak a protocol the method table does not describe.
        if gateway.on_version_mismatch == clawguard_policies::OnVersionMismatch::Unready {
            if let Some(reason) = self.shared.drift.lock().unwrap_or_else(|e| e.into_inner()).reason.clone() {
                failing.push(format!("{reason} (gateway.on_version_mismatch = \"unready\"): update the policy and reload"));
            }
        }
        // With `on_failure = "block"` a log that cannot write refuses what it must record: not
        // ready (as Vault stops answering when no audit device writes).
        if let Some(audit) = self.shared.audit.as_ref().filter(|a| a.down()) {
            failing.push(format!("the audit log in {} cannot write", audit.dir.display()));
        }
        failing
    }
}

/// A wildcard listen address is checked through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(v6) if v6.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

/// `GET /readyz` on the gateway; `Ok` on a 200.
async fn gateway_ready(addr: SocketAddr) -> Result<(), String> {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| format!("unreachable: {e}"))?;
        let req = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: clawguard-readiness\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| format!("write failed: {e}"))?;
        let mut head = vec![0u8; 32];
        let n = s.read(&mut head).await.map_err(|e| format!("read failed: {e}"))?;
        let line = String::from_utf8_lossy(&head[..n]).to_string();
        match line.split_whitespace().nth(1) {
            Some("200") => Ok(()),
            Some(code) => Err(format!("/readyz answered {code}")),
            None => Err("/readyz gave no HTTP answer".to_string()),
        }
    };
    timeout(CHECK_TIMEOUT, attempt).await.unwrap_or_else(|_| Err("/readyz timed out".to_string()))
}
