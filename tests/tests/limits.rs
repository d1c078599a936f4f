//! Issue 6 load tests (bounded in time and count, loopback only) against a running clawguard
//! and the fake gateway: an inference flood on one session, a wrong-token flood that locks
//! out its address (not another), and a flood of distinct device ids that must not grow
//! clawguard's memory without bound.

use clawguard_tests::client::{connect, next_json, send_req, Ws};
use clawguard_tests::fake_gateway::FakeGateway;
use clawguard_tests::harness::Clawguard;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::MaybeTlsStream;

/// Opens a WebSocket to `addr` from the local address `from`; the HTTP status and body of a
/// refused upgrade otherwise.
async fn open_from(addr: SocketAddr, from: IpAddr) -> Result<Ws, (u16, String)> {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind a loopback source address");
    let stream = socket.connect(addr).await.expect("tcp connect");
    match tokio_tungstenite::client_async(format!("ws://{addr}/"), MaybeTlsStream::Plain(stream)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_ref().map(|b| String::from_utf8_lossy(b).to_string()).unwrap_or_default();
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

/// Sends a connect with `token` and returns the answer (after the challenge).
async fn connect_answer(ws: &mut Ws, token: &str, device: Option<&str>) -> Value {
    let challenge = next_json(ws).await;
    assert_eq!(challenge["event"], "connect.challenge");
    let mut params = json!({"minProtocol":4,"maxProtocol":4,"scopes":["operator.read"],"auth":{"token":token}});
    if let Some(id) = device {
        params["device"] = json!({"id": id, "publicKey": "k", "signature": "s", "signedAt": 0, "nonce": "not-the-challenge"});
    }
    send_req(ws, "c", "connect", params).await;
    next_json(ws).await
}

#[tokio::test(flavor = "multi_thread")]
async fn issue6_load_a_thousand_chat_sends_on_one_session() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(
        gw.addr,
        "[limits]\nsession_inference_per_minute = 30\nconnection_messages_per_second = 100000\nconnection_messages_burst = 100000\n",
    );
    let mut ws = connect(cg.addr).await;
    let started = Instant::now();
    for i in 0..1000 {
        let frame = json!({"type":"req","id":format!("s{i}"),"method":"chat.send","params":{"sessionKey":"agent:main:main","message":"hi","idempotencyKey":format!("k{i}")}});
        ws.feed(Message::text(frame.to_string())).await.expect("send");
    }
    ws.flush().await.expect("flush");
    let (mut passed, mut limited) = (0u32, 0u32);
    for _ in 0..1000 {
        let answer = next_json(&mut ws).await;
        if answer["ok"] == true {
            passed += 1;
            continue;
        }
        let error = &answer["error"];
        assert_eq!(error["details"]["code"], "RATE_LIMITED", "{answer}");
        assert_eq!(error["details"]["limit"], "session-inference");
        assert_eq!(error["retryable"], true);
        let retry = error["retryAfterMs"].as_u64().expect("retryAfterMs");
        // 30 a minute: one every 2 s, so the wait is never more than 2 s.
        assert!((1..=2000).contains(&retry), "implausible retryAfterMs {retry}");
        limited += 1;
    }
    let elapsed = started.elapsed();
    // Exactly the burst passes, plus one per 2 s the flood took to go through.
    let refilled = (elapsed.as_millis() / 2000) as u32;
    assert!(passed >= 30 && passed <= 30 + refilled, "{passed} passed in {elapsed:?}");
    assert_eq!(passed + limited, 1000);
    let chat_sends = gw.methods().iter().filter(|m| *m == "chat.send").count() as u32;
    assert_eq!(chat_sends, passed, "only what passed reached the gateway");
}

#[tokio::test(flavor = "multi_thread")]
async fn issue6_load_wrong_token_connects_lock_out_the_address_not_others() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "[limits]\nauth_failures = 11\nauth_failure_window_seconds = 300\nauth_lockout_seconds = 300\nip_connections_per_second = 1000\nip_connections_burst = 1000\n");
    let attacker: IpAddr = "127.0.0.1".parse().unwrap();
    let (mut refused_at_upgrade, mut refused_at_connect, mut reached_gateway) = (0, 0, 0);
    for _ in 0..100 {
        match open_from(cg.addr, attacker).await {
            Err((status, body)) => {
                assert_eq!(status, 429, "{body}");
                assert!(body.contains("rate_limited") && body.contains("locked out"), "{body}");
                refused_at_upgrade += 1;
            }
            Ok(mut ws) => {
                let answer = connect_answer(&mut ws, "wrong", None).await;
                match answer["error"]["details"]["code"].as_str() {
                    Some("AUTH_TOKEN_MISMATCH") => reached_gateway += 1,
                    Some("RATE_LIMITED") => {
                        assert_eq!(answer["error"]["details"]["limit"], "auth-lockout");
                        refused_at_connect += 1;
                    }
                    other => panic!("unexpected answer {other:?}: {answer}"),
                }
            }
        }
    }
    // Ten failures a minute are tolerated; the eleventh locks the address out.
    assert_eq!(reached_gateway, 11, "refused at upgrade {refused_at_upgrade}, at connect {refused_at_connect}");
    assert_eq!(refused_at_upgrade + refused_at_connect, 89);
    let seen = gw.methods().iter().filter(|m| *m == "connect").count();
    assert_eq!(seen, 11, "no connect after the lockout reached the gateway");
    // A correct client from another address is unaffected.
    let mut other = open_from(cg.addr, "127.0.0.2".parse().unwrap()).await.expect("another address may connect");
    let hello = connect_answer(&mut other, "right", None).await;
    assert_eq!(hello["payload"]["type"], "hello-ok", "{hello}");
    let (_, metrics) = clawguard_tests::client::http_get(cg.admin, "/metrics").unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("clawguard_rate_limited_total{limit=\"auth-lockout\"}")), "the lockout is counted");
}

#[tokio::test(flavor = "multi_thread")]
async fn issue6_load_ten_thousand_device_ids_keep_memory_bounded() {
    let gw = FakeGateway::start().await;
    // Every connect claims a new device id with a signature for the wrong nonce: clawguard
    // refuses it itself (DEVICE_AUTH_NONCE_MISMATCH) and counts a failure per address and per
    // device, so each one is a new key. The address limits are lifted so that only the
    // per-device state grows; its keys are capped at 2,000 per limit.
    let cg = Clawguard::start(
        gw.addr,
        "[limits]\nmax_keys = 2000\nauth_failures = 1000000\nip_connections_per_second = 0\nip_handshakes_per_minute = 0\nip_pending_handshakes = 0\n",
    );
    let before = cg.rss_kib();
    let addr = cg.addr;
    let tasks: Vec<_> = (0..8)
        .map(|worker| {
            tokio::spawn(async move {
                for i in 0..1250 {
                    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await.expect("upgrade");
                    let answer = connect_answer(&mut ws, "t", Some(&format!("flood-device-{worker}-{i}"))).await;
                    assert_eq!(answer["error"]["details"]["code"], "DEVICE_AUTH_NONCE_MISMATCH", "{answer}");
                    let _ = ws.close(None).await;
                    while let Some(Ok(_)) = ws.next().await {}
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("flood task");
    }
    let after = cg.rss_kib();
    assert!(before > 0 && after > 0, "RSS readable");
    // The stated bound (docs/policy.md, max_keys): 10,000 device ids add at most 32 MiB to
    // clawguard's resident memory (measured: a few MiB).
    let grown = after.saturating_sub(before);
    println!("RSS before {before} KiB, after 10,000 device ids {after} KiB (+{grown} KiB)");
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
    assert_eq!(gw.methods().iter().filter(|m| *m == "connect").count(), 0, "none of them reached the gateway");
}

/// A blocking HTTP request; status, headers (lower-cased names) and body.
fn http(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_lowercase(), body.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn issue6_http_routes_get_429_with_retry_after_and_the_gateway_error_shape() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "[limits]\nhttp_inference_per_minute = 2\nhttp_hooks_per_minute = 1\nhttp_tools_invoke_per_minute = 1\n");
    let addr = cg.addr;
    tokio::task::spawn_blocking(move || {
        let json = "Content-Type: application/json\r\n";
        for _ in 0..2 {
            assert_eq!(http(addr, "POST", "/v1/chat/completions", json, "{}").0, 200);
        }
        let (status, head, body) = http(addr, "POST", "/v1/chat/completions", json, "{}");
        assert_eq!(status, 429, "{body}");
        let retry: u64 = head.lines().find_map(|l| l.strip_prefix("retry-after:")).expect("Retry-After").trim().parse().expect("seconds");
        // Two a minute: the next one in at most 30 s.
        assert!((1..=30).contains(&retry), "Retry-After {retry}");
        let error: Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(error["error"]["type"], "rate_limited");
        assert!(error["error"]["message"].as_str().unwrap().contains("http-inference"), "{body}");
        // Hooks have their own budget, per source address.
        assert_eq!(http(addr, "POST", "/hooks/wake", json, "{}").0, 200);
        assert_eq!(http(addr, "POST", "/hooks/wake", json, "{}").0, 429);
        assert_eq!(http(addr, "GET", "/readyz", "", "").0, 200, "other routes are not limited");
    })
    .await
    .unwrap();
    let (_, metrics) = clawguard_tests::client::http_get(cg.admin, "/metrics").unwrap();
    assert!(metrics.contains("clawguard_rate_limited_total{limit=\"http-inference\"} 1"), "counted by limit");
    assert!(metrics.contains("clawguard_rate_limited_total{limit=\"http-hooks\"} 1"));
}
