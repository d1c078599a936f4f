//! The real clawguard binary in front of the fake gateway: WebSocket behaviour.

use clawguard_tests::client::*;
use clawguard_tests::fake_gateway::FakeGateway;
use clawguard_tests::harness::{raise_fd_limit, Clawguard};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::Message;

const DENY_CONFIG: &str = r#"
[[frame_rule]]
name = "no-cron-writes"
direction = "client"
match = ["cron.add", "cron.update", "cron.remove"]
action = "deny"
reason = "cron changes are disabled by policy"

[[frame_rule]]
name = "quiet-secrets"
direction = "gateway"
match = ["secret.*"]
action = "drop"

[[frame_rule]]
name = "no-wizards"
direction = "client"
match = ["wizard.*"]
action = "close"
reason = "wizards are not allowed here"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn forwards_handshake_and_out_of_order_responses() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "");
    let mut ws = connect(cg.addr).await;
    send_req(&mut ws, "2", "slow", json!({"ms": 300})).await;
    send_req(&mut ws, "3", "echo", json!({"hello": "world", "n": [1, 2, 3]})).await;
    let first = next_json(&mut ws).await;
    assert_eq!(first["id"], "3", "the fast answer overtakes the slow one");
    assert_eq!(first["payload"], json!({"hello": "world", "n": [1, 2, 3]}));
    assert_eq!(next_json(&mut ws).await["id"], "2");
    assert_eq!(gw.methods(), vec!["connect", "slow", "echo"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_events_reach_a_silent_client() {
    let gw = FakeGateway::start_with(Some(50)).await;
    let cg = Clawguard::start(gw.addr, "");
    let mut ws = connect(cg.addr).await;
    for seq in 1..=3 {
        let tick = next_json(&mut ws).await;
        assert_eq!((tick["event"].as_str(), tick["seq"].as_u64()), (Some("tick"), Some(seq)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_rule_replies_and_the_gateway_never_sees_the_request() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, DENY_CONFIG);
    let mut ws = connect(cg.addr).await;
    send_req(&mut ws, "7:abc", "cron.add", json!({"schedule": "* * * * *"})).await;
    let refusal = next_json(&mut ws).await;
    assert_eq!(refusal["type"], "res");
    assert_eq!(refusal["id"], "7:abc");
    assert_eq!(refusal["ok"], false);
    assert_eq!(refusal["error"]["code"], "FORBIDDEN");
    assert_eq!(refusal["error"]["message"], "cron changes are disabled by policy");
    assert_eq!(refusal["error"]["details"]["source"], "clawguard");
    assert_eq!(refusal["error"]["details"]["rule"], "no-cron-writes");
    // The connection stays open and usable.
    send_req(&mut ws, "8", "echo", json!({"still": "open"})).await;
    assert_eq!(next_json(&mut ws).await["id"], "8");
    assert!(!gw.methods().contains(&"cron.add".to_string()), "{:?}", gw.methods());
    let (_, metrics) = http_get(cg.admin, "/metrics").unwrap();
    assert!(metrics.contains(r#"clawguard_decisions_total{direction="c2s",mode="enforce",rule="no-cron-writes",verdict="reply"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_rule_removes_gateway_events() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, DENY_CONFIG);
    let mut ws = connect(cg.addr).await;
    send_req(&mut ws, "2", "events", json!({"name": "secret.leak", "count": 3})).await;
    send_req(&mut ws, "3", "events", json!({"name": "visible", "count": 1})).await;
    // The three secret events are dropped; the first thing seen is the answer to 2.
    assert_eq!(next_json(&mut ws).await["id"], "2");
    assert_eq!(next_json(&mut ws).await["event"], "visible");
    assert_eq!(next_json(&mut ws).await["id"], "3");
}

#[tokio::test(flavor = "multi_thread")]
async fn close_rule_closes_with_1008_and_reason() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, DENY_CONFIG);
    let mut ws = connect(cg.addr).await;
    send_req(&mut ws, "2", "wizard.start", json!({})).await;
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "wizards are not allowed here"));
    assert!(!gw.methods().contains(&"wizard.start".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_close_codes_reach_the_client() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "");
    let mut ws = connect(cg.addr).await;
    send_req(&mut ws, "2", "close", json!({"code": 1012, "reason": "service restart"})).await;
    assert_eq!(expect_close(&mut ws).await, (1012, "service restart".to_string()));
    // A first request that is not connect: the gateway's own refusal passes through.
    let mut ws = open(cg.addr).await;
    next_json(&mut ws).await;
    send_req(&mut ws, "1", "health", json!({})).await;
    assert_eq!(next_json(&mut ws).await["error"]["code"], "INVALID_REQUEST");
    assert_eq!(expect_close(&mut ws).await.0, 1008);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_message_before_hello_is_closed_1009() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "");
    let mut ws = open(cg.addr).await;
    next_json(&mut ws).await;
    let big = json!({"type":"req","id":"1","method":"connect","params":{"pad":"x".repeat(70_000)}}).to_string();
    ws.send(Message::text(big)).await.unwrap();
    assert_eq!(expect_close(&mut ws).await.0, 1009);
    assert!(gw.methods().is_empty(), "the oversized connect never reached the gateway");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_messages_after_hello_pass_both_ways() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "");
    let mut ws = connect(cg.addr).await;
    let pad = "y".repeat(3 * 1024 * 1024);
    send_req(&mut ws, "2", "echo", json!({"pad": pad})).await;
    let back = next_json(&mut ws).await;
    assert_eq!(back["payload"]["pad"].as_str().map(str::len), Some(pad.len()));
}

#[tokio::test(flavor = "multi_thread")]
async fn fragmented_message_with_ping_and_byte_by_byte_writes() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, DENY_CONFIG);
    // A raw client, so every frame and every TCP write is under the test's control.
    let mut s = tokio::net::TcpStream::connect(cg.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(s.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("sec-websocket-extensions"));
    assert!(!gw.seen.lock().unwrap().upgrades[0].contains_key("sec-websocket-extensions"), "the extension offer is stripped");
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(s, tokio_tungstenite::tungstenite::protocol::Role::Client, None).await;
    next_json_raw(&mut ws).await;
    ws.send(Message::text(json!({"type":"req","id":"1","method":"connect","params":{}}).to_string())).await.unwrap();
    next_json_raw(&mut ws).await;
    let mut inner = ws.into_inner();
    // A denied request split in three fragments with a ping in between, written one byte at a time.
    let text = json!({"type":"req","id":"2","method":"cron.update","params":{}}).to_string();
    let (a, rest) = text.split_at(10);
    let (b, c) = rest.split_at(10);
    let mut wire = Vec::new();
    for (fin, op, part) in [(false, OpCode::Data(Data::Text), a.as_bytes()), (true, OpCode::Control(tokio_tungstenite::tungstenite::protocol::frame::coding::Control::Ping), b"p".as_slice()), (false, OpCode::Data(Data::Continue), b.as_bytes()), (true, OpCode::Data(Data::Continue), c.as_bytes())] {
        let header = FrameHeader { is_final: fin, opcode: op, mask: Some([9, 8, 7, 6]), ..FrameHeader::default() };
        Frame::from_payload(header, part.to_vec().into()).format(&mut wire).unwrap();
    }
    for byte in wire {
        inner.write_all(&[byte]).await.unwrap();
    }
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(inner, tokio_tungstenite::tungstenite::protocol::Role::Client, None).await;
    let refusal = next_json_raw(&mut ws).await;
    assert_eq!((refusal["id"].as_str(), refusal["error"]["code"].as_str()), (Some("2"), Some("FORBIDDEN")));
    assert!(!gw.methods().contains(&"cron.update".to_string()));
}

async fn next_json_raw(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> serde_json::Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn non_101_gateway_answer_is_relayed_with_its_body() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "");
    let err = tokio_tungstenite::connect_async(format!("ws://{}/reject", cg.addr)).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 403);
            let body = String::from_utf8(resp.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("rejected by the fake gateway"), "{body}");
        }
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_gateway_is_a_502_with_a_reason_and_not_ready() {
    let dead: std::net::SocketAddr = ([127, 0, 0, 1], clawguard_tests::harness::free_port()).into();
    let cg = Clawguard::start_live(dead, "");
    match tokio_tungstenite::connect_async(format!("ws://{}/", cg.addr)).await.unwrap_err() {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 502);
            let body = String::from_utf8(resp.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("cannot connect to the gateway") && body.contains(&dead.to_string()), "{body}");
        }
        other => panic!("expected a 502, got {other:?}"),
    }
    let (status, body) = http_get(cg.admin, "/readyz").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains(&format!("gateway {dead}")), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_sends_1001_to_open_connections() {
    let gw = FakeGateway::start().await;
    let mut cg = Clawguard::start(gw.addr, "");
    let mut ws = connect(cg.addr).await;
    cg.terminate();
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 1001);
    assert_eq!(reason, "clawguard is shutting down");
    let status = cg.wait(Duration::from_secs(15)).expect("clawguard exits after the grace period");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connection_is_closed_1001() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "[websocket]\nidle_timeout_seconds = 1\n");
    let mut ws = connect(cg.addr).await;
    assert_eq!(expect_close(&mut ws).await, (1001, "idle timeout".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_client_and_fast_gateway_do_not_buffer_without_bound() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "");
    let mut ws = connect(cg.addr).await;
    let baseline = cg.rss_kib();
    // 200 events of 1 MiB: 200 MiB the client does not read for a while.
    send_req(&mut ws, "2", "events", json!({"name": "bulk", "count": 200, "size": 1024 * 1024})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let grown = cg.rss_kib().saturating_sub(baseline);
    assert!(grown < 64 * 1024, "clawguard grew by {grown} KiB while the client was not reading");
    // Nothing was lost: every event arrives, then the answer.
    for i in 0..200 {
        let ev = next_json(&mut ws).await;
        assert_eq!(ev["payload"]["i"], i);
    }
    assert_eq!(next_json(&mut ws).await["id"], "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_connections() {
    raise_fd_limit();
    let gw = FakeGateway::start().await;
    // All from one address: lift the per-address caps (connections, new connections per
    // second, pending handshakes) for this load test.
    let cg = Clawguard::start_with(gw.addr, "[websocket]\nmax_connections_per_ip = 0\nmax_connections_per_identity = 0\n[limits]\nip_connections_per_second = 0\nip_pending_handshakes = 0\nip_handshakes_per_minute = 0\n", "max_connections_per_ip = 0\n");
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let addr = cg.addr;
        tasks.push(tokio::spawn(async move {
            let mut ws = connect(addr).await;
            send_req(&mut ws, "2", "echo", json!({"conn": i})).await;
            let back = next_json(&mut ws).await;
            assert_eq!(back["payload"]["conn"], i);
            ws
        }));
    }
    let mut open = Vec::new();
    for t in tasks {
        open.push(t.await.expect("connection task"));
    }
    // All 1,000 are open at once.
    let (_, metrics) = http_get(cg.admin, "/metrics").unwrap();
    assert!(metrics.contains("clawguard_ws_connections_active 1000"), "{}", metrics.lines().filter(|l| l.contains("active")).collect::<Vec<_>>().join("\n"));
    for mut ws in open {
        send_req(&mut ws, "3", "echo", json!({})).await;
        assert_eq!(next_json(&mut ws).await["id"], "3");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_per_address_are_capped_with_429() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "[websocket]\nmax_connections_per_ip = 2\n");
    let first = connect(cg.addr).await;
    let _second = connect(cg.addr).await;
    match tokio_tungstenite::connect_async(format!("ws://{}/", cg.addr)).await.unwrap_err() {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 429);
            let body = String::from_utf8(resp.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("max_connections_per_ip"), "{body}");
        }
        other => panic!("expected 429, got {other:?}"),
    }
    // Closing one frees its slot.
    drop(first);
    let mut freed = false;
    for _ in 0..50 {
        if tokio_tungstenite::connect_async(format!("ws://{}/", cg.addr)).await.is_ok() {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "a closed connection's slot was never released");
}

#[tokio::test(flavor = "multi_thread")]
async fn handshake_must_complete_in_time() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "[websocket]\nhandshake_timeout_seconds = 1\n");
    let mut ws = open(cg.addr).await;
    assert_eq!(next_json(&mut ws).await["event"], "connect.challenge");
    assert_eq!(expect_close(&mut ws).await, (1000, "handshake timeout".to_string()));
    // A completed handshake is not subject to it.
    let mut ws = connect(cg.addr).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send_req(&mut ws, "2", "echo", json!({"still": "here"})).await;
    assert_eq!(next_json(&mut ws).await["id"], "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn issue13_a_gateway_that_vanishes_gets_every_client_a_1012_close() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "");
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(connect(cg.addr).await);
    }
    // Each connection's gateway side ends with no close frame, as when the process is killed.
    for ws in &mut clients {
        send_req(ws, "2", "vanish", json!({})).await;
    }
    for ws in &mut clients {
        let (code, reason) = expect_close(ws).await;
        assert_eq!(code, 1012, "{reason}");
        assert!(reason.contains("gateway"), "{reason}");
    }
    let (_, metrics) = http_get(cg.admin, "/metrics").unwrap();
    assert!(metrics.contains("clawguard_ws_upstream_lost_total{code=\"1012\"} 20"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn issue13_a_protocol_error_sends_the_close_and_keeps_the_connection_for_the_grace() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "[websocket]\nclose_grace_ms = 1500\n");
    let ws = connect(cg.addr).await;
    let mut s = ws.into_inner();
    // An unmasked client frame is a protocol error (1002); the client goes on sending.
    s.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let started = std::time::Instant::now();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(b"garbage the client is still sending").await.expect("the connection is still open while the close grace runs");
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed within the grace") {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let waited = started.elapsed();
    // The close frame arrived (server frames are unmasked: 0x88, length, code 1002).
    let at = got.windows(2).position(|w| w[0] == 0x88).expect("a close frame");
    assert_eq!(&got[at + 2..at + 4], &1002u16.to_be_bytes());
    assert!(waited >= Duration::from_millis(1200), "the TCP close came after {waited:?}, before the grace");
}

#[tokio::test(flavor = "multi_thread")]
async fn issue13_sighup_is_logged_and_does_not_kill() {
    let gw = FakeGateway::start().await;
    let mut cg = Clawguard::start(gw.addr, "");
    let mut ws = connect(cg.addr).await;
    cg.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cg.wait(Duration::from_millis(100)).is_none(), "clawguard exited on SIGHUP");
    send_req(&mut ws, "2", "echo", json!({"after": "hup"})).await;
    assert_eq!(next_json(&mut ws).await["payload"]["after"], "hup", "the open connection still works");
    // SIGHUP asks for a policy reload (issue 15): the file is unchanged, so nothing changes.
    assert!(cg.log().contains("policy unchanged") && cg.log().contains("sighup"), "{}", cg.log());
    // SIGTERM still shuts down gracefully.
    cg.terminate();
    assert_eq!(expect_close(&mut ws).await.0, 1001);
}

#[tokio::test(flavor = "multi_thread")]
async fn issue13_the_longest_timeouts_do_not_panic_a_connection() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "[websocket]\nidle_timeout_seconds = 31536000\nhandshake_timeout_seconds = 31536000\nclose_grace_ms = 31536000000\n");
    let mut ws = connect(cg.addr).await;
    send_req(&mut ws, "2", "echo", json!({"long": true})).await;
    assert_eq!(next_json(&mut ws).await["payload"]["long"], true);
    send_req(&mut ws, "3", "close", json!({"code": 1000})).await;
    assert_eq!(expect_close(&mut ws).await.0, 1000);
    assert!(!cg.log().contains("panicked"), "{}", cg.log());
    drop(ws);
    // The connection is over, so the gauge is back to zero.
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = http_get(cg.admin, "/metrics").unwrap().1;
        if metrics.contains("clawguard_ws_connections_active 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics.contains("clawguard_ws_connections_active 0"), "{metrics}");
}

/// A WebSocket opened from the loopback address `source` (Linux routes all of 127/8 locally).
async fn open_from(source: [u8; 4], addr: std::net::SocketAddr) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((std::net::Ipv4Addr::from(source), 0).into()).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp).await.expect("websocket upgrade");
    assert_eq!(resp.status(), 101);
    ws
}

#[tokio::test(flavor = "multi_thread")]
async fn issue13_pending_handshakes_from_40_addresses_do_not_lock_out_a_new_address() {
    let gw = FakeGateway::start().await;
    // Every client here is one identity, as every unknown remote client is `default`.
    let cg = Clawguard::start(gw.addr, "[websocket]\nmax_connections_per_identity = 32\n");
    let mut pending = Vec::new();
    for i in 0..40u8 {
        let mut ws = open_from([127, 0, 1, 10 + i], cg.addr).await;
        next_json_raw(&mut ws).await; // the challenge; no connect follows
        pending.push(ws);
    }
    let mut newcomer = open_from([127, 0, 2, 1], cg.addr).await;
    next_json_raw(&mut newcomer).await;
    newcomer.send(Message::text(json!({"type":"req","id":"1","method":"connect","params":{}}).to_string())).await.unwrap();
    assert_eq!(next_json_raw(&mut newcomer).await["payload"]["type"], "hello-ok");
    drop(pending);
}
