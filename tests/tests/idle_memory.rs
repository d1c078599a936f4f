//! Issue 17: what an idle WebSocket connection costs clawguard. 2,000 connections through
//! clawguard to the fake gateway, handshake done, then quiet, and clawguard's resident memory
//! measured. Bounded in time, loopback only; the 10,000-connection figure is a benchmark
//! (docs/benchmarks.md).
//!
//! The issue's target is 16 KiB per connection (nginx: 18 KiB). Measured here: 236 KiB before
//! clawguard stopped holding two 64 KiB read buffers per connection (its own for the gateway's
//! side, the client stream's read buffer), 110-117 KiB after. Most of the rest is pingora's body
//! reader, which keeps a 64 KiB buffer reserved for every read of the client's side of an
//! upgraded connection and has no setting for it. This test holds what was gained: a
//! connection that held either buffer again would be over the bound.

use clawguard_tests::client::{connect, Ws};
use clawguard_tests::fake_gateway::FakeGateway;
use clawguard_tests::harness::{raise_fd_limit, Clawguard};
use std::time::Duration;

const CONNECTIONS: usize = 2000;
/// The most one idle connection may cost, in KiB of clawguard's RSS (the target of 16 KiB is
/// not met yet: see above).
const PER_CONNECTION_KIB: u64 = 144;

async fn open(addr: std::net::SocketAddr, n: usize) -> Vec<Ws> {
    let mut all = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let tasks: Vec<_> = chunk.iter().map(|_| tokio::spawn(connect(addr))).collect();
        for t in tasks {
            all.push(t.await.expect("connect task"));
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn issue17_idle_websocket_connections_hold_no_read_buffers_of_their_own() {
    raise_fd_limit();
    let gw = FakeGateway::start().await;
    let lifted = "[websocket]\nmax_connections_per_ip = 0\nmax_connections_per_identity = 0\n[limits]\nip_connections_per_second = 0\nip_pending_handshakes = 0\nip_handshakes_per_minute = 0\n";
    let cg = Clawguard::start_with(gw.addr, lifted, "max_connections_per_ip = 0\n");
    // A first wave opened and closed, so that the allocator's and the runtime's pools exist
    // before the baseline is taken (they are not the idle connections' cost).
    drop(open(cg.addr, 200).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cg.rss_kib();
    let held = open(cg.addr, CONNECTIONS).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = cg.rss_kib();
    let per = after.saturating_sub(before) / CONNECTIONS as u64;
    assert_eq!(held.len(), CONNECTIONS);
    assert!(per <= PER_CONNECTION_KIB, "{CONNECTIONS} idle connections took clawguard from {before} KiB to {after} KiB: {per} KiB each, over {PER_CONNECTION_KIB} KiB");
    drop(held);
}
