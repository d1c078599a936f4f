//! Issue 17: what an idle connection costs clawguard. 2,000 connections through clawguard to the
//! fake gateway, each quiet after its handshake (a WebSocket) or after one answered request (an
//! HTTP keep-alive connection), and clawguard's resident memory measured before and after.
//! Bounded in time, loopback only; the 10,000-connection figure is a benchmark
//! (docs/benchmarks.md).
//!
//! The issue's bound, 16 KiB per idle WebSocket (nginx: 18 KiB), holds for the debug build the
//! test suite runs (12-14 KiB measured) as for the release build (12.5-13.3 KiB).
//!
//! Not met, and so not asserted (docs/benchmarks.md has the figures): an idle HTTP keep-alive
//! connection costs more than 16 KiB (pingora's futures for the next request are held while it
//! waits for the head), guarded here at its measured size; and memory freed when connections
//! close stays with the allocator.

use clawguard_tests::client::{connect, Ws};
use clawguard_tests::fake_gateway::FakeGateway;
use clawguard_tests::harness::{raise_fd_limit, Clawguard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections held (`CLAWGUARD_IDLE_CONNECTIONS` overrides it: the 10,000-connection figure of
/// docs/benchmarks.md is this test with 9000, the most a 20,000-descriptor limit allows, against
/// the release binary).
fn connections() -> usize {
    std::env::var("CLAWGUARD_IDLE_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}
/// The most an idle WebSocket may cost, in KiB of clawguard's RSS (the issue's target).
const WEBSOCKET_KIB: f64 = 16.0;
/// An idle HTTP keep-alive connection: not the issue's 16 KiB but what it costs now (28-31 KiB
/// measured), so that it does not grow unseen.
const KEEP_ALIVE_KIB: f64 = 36.0;

/// No connection or handshake limit gets in the way of 2,000 connections from one address.
const LIFTED: &str = "[websocket]\nmax_connections_per_ip = 0\nmax_connections_per_identity = 0\n[limits]\nip_connections_per_second = 0\nip_pending_handshakes = 0\nip_handshakes_per_minute = 0\n";

async fn open_ws(addr: std::net::SocketAddr, n: usize) -> Vec<Ws> {
    let mut all = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let tasks: Vec<_> = chunk.iter().map(|_| tokio::spawn(connect(addr))).collect();
        for t in tasks {
            all.push(t.await.expect("connect task"));
        }
    }
    all
}

/// A keep-alive connection that has had one request answered (the upstream's 200, read whole).
async fn http_once(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET /status/200 HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.expect("write request");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The fake gateway answers `status` (6 bytes) with a Content-Length.
    while !(seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.ends_with(b"status")) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("answer in time").expect("read answer");
        assert!(n > 0, "clawguard closed a keep-alive connection: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200"), "not the upstream's 200: {}", String::from_utf8_lossy(&seen));
    s
}

async fn open_http(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut all = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let tasks: Vec<_> = chunk.iter().map(|_| tokio::spawn(http_once(addr))).collect();
        for t in tasks {
            all.push(t.await.expect("request task"));
        }
    }
    all
}

/// Per idle connection in KiB, from readings before and after `connections()` were opened.
fn per_connection(before: u64, after: u64) -> f64 {
    after.saturating_sub(before) as f64 / connections() as f64
}

#[tokio::test(flavor = "multi_thread")]
async fn issue17_an_idle_websocket_costs_at_most_16_kib() {
    raise_fd_limit();
    let bound = WEBSOCKET_KIB;
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start_with(gw.addr, LIFTED, "max_connections_per_ip = 0\n");
    // A first wave opened and closed, so that the allocator's and the runtime's pools exist
    // before the baseline is taken (they are not the idle connections' cost).
    drop(open_ws(cg.addr, 200).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cg.rss_kib();
    let held = open_ws(cg.addr, connections()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = cg.rss_kib();
    assert_eq!(held.len(), connections());
    let per = per_connection(before, after);
    eprintln!("{} idle WebSocket connections: {before} -> {after} KiB, {per:.1} KiB each", connections());
    assert!(per <= bound, "{} idle WebSocket connections took clawguard from {before} KiB to {after} KiB: {per:.1} KiB each, over {bound} KiB", connections());
    drop(held);
}

#[tokio::test(flavor = "multi_thread")]
async fn issue17_an_idle_http_keep_alive_connection_stays_within_its_measured_cost() {
    raise_fd_limit();
    let bound = KEEP_ALIVE_KIB;
    let gw = FakeGateway::start().await;
    // Connections waiting for their next request head are closed after header_timeout_seconds
    // (10 by default): lifted here, so that every one is still open when memory is read.
    let cg = Clawguard::start_with(gw.addr, LIFTED, "max_connections_per_ip = 0\nheader_timeout_seconds = 600\n");
    drop(open_http(cg.addr, 200).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cg.rss_kib();
    let held = open_http(cg.addr, connections()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = cg.rss_kib();
    assert_eq!(held.len(), connections());
    let per = per_connection(before, after);
    eprintln!("{} idle keep-alive connections: {before} -> {after} KiB, {per:.1} KiB each", connections());
    assert!(per <= bound, "{} idle keep-alive connections took clawguard from {before} KiB to {after} KiB: {per:.1} KiB each, over {bound} KiB", connections());
    drop(held);
}
