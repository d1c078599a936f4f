//! A small fake of the OpenClaw gateway: HTTP and WebSocket on one port.
//!
//! WebSocket: sends `connect.challenge` on open, answers `connect` with
//! `hello-ok` (a connect with `auth.token` `"wrong"` gets `AUTH_TOKEN_MISMATCH` and close 1008;
//! a first request that is not `connect` is refused with the
//! gateway's error and close 1008), then answers requests:
//! - `echo`: `res` with the params as payload;
//! - `slow` `{"ms"}`: answers after a delay (so answers come out of order);
//! - `events` `{"name","count","size"}`: pushes that many events, then answers;
//! - `close` `{"code","reason"}`: closes the connection;
//! - anything else: `res` `{"method": …}`.
//!
//! Optional `tick` events every `tick_ms`. Every request method received is recorded,
//! and so is every upgrade request's headers.
//!
//! HTTP: `/readyz` (200), `/headers` (the request headers as JSON), `/status/N`,
//! `/sse?n=N` (chunked server-sent events, one per `sse_gate` permit), `POST /sha256`
//! (length and SHA-256 of the body), `/bytes?n=N`, and a WebSocket upgrade on `/reject`
//! is refused with 403 and a JSON body.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// What the fake gateway saw.
#[derive(Default)]
pub struct Seen {
    /// Methods of every `req` received, in order.
    pub methods: Vec<String>,
    /// Headers of every WebSocket upgrade request (lower-case names).
    pub upgrades: Vec<HashMap<String, String>>,
    /// Headers of every plain HTTP request, with its path under `:path`.
    pub http: Vec<HashMap<String, String>>,
}

/// A running fake gateway.
pub struct FakeGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub seen: Arc<Mutex<Seen>>,
    /// Each permit lets `/sse` send one more event.
    pub sse_gate: Arc<Semaphore>,
}

#[derive(Clone)]
struct Ctx {
    seen: Arc<Mutex<Seen>>,
    sse_gate: Arc<Semaphore>,
    tick_ms: Option<u64>,
    /// `hello-ok.server.version`, when it reports one.
    server_version: Option<String>,
}

impl FakeGateway {
    /// Starts on an ephemeral loopback port.
    pub async fn start() -> FakeGateway {
        Self::start_with(None).await
    }

    /// Starts with `tick` events every `tick_ms`.
    pub async fn start_with(tick_ms: Option<u64>) -> FakeGateway {
        Self::spawn(tick_ms, None).await
    }

    /// Starts as a gateway whose `hello-ok` says it is `version`.
    pub async fn start_reporting_version(version: &str) -> FakeGateway {
        Self::spawn(None, Some(version.to_string())).await
    }

    async fn spawn(tick_ms: Option<u64>, server_version: Option<String>) -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake gateway");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sse_gate = Arc::new(Semaphore::new(0));
        let ctx = Ctx { seen: seen.clone(), sse_gate: sse_gate.clone(), tick_ms, server_version };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, ctx).await;
                });
            }
        });
        FakeGateway { addr, seen, sse_gate }
    }

    /// Methods received so far.
    pub fn methods(&self) -> Vec<String> {
        self.seen.lock().unwrap().methods.clone()
    }
}

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<Option<Request>> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(len) = req.parse(buf)? {
            let mut map = HashMap::new();
            for h in req.headers.iter() {
                map.insert(h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).to_string());
            }
            let (method, path) = (req.method.unwrap_or("").to_string(), req.path.unwrap_or("/").to_string());
            buf.drain(..len);
            let mut body = Vec::new();
            if let Some(n) = map.get("content-length").and_then(|v| v.parse::<usize>().ok()) {
                while buf.len() < n {
                    if read_more(stream, buf).await? == 0 {
                        anyhow::bail!("eof in body");
                    }
                }
                body = buf.drain(..n).collect();
            } else if map.get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
                loop {
                    let line_end = loop {
                        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                            break i;
                        }
                        if read_more(stream, buf).await? == 0 {
                            anyhow::bail!("eof in chunked body");
                        }
                    };
                    let size = usize::from_str_radix(std::str::from_utf8(&buf[..line_end])?.split(';').next().unwrap().trim(), 16)?;
                    while buf.len() < line_end + 2 + size + 2 {
                        if read_more(stream, buf).await? == 0 {
                            anyhow::bail!("eof in chunk");
                        }
                    }
                    body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
                    buf.drain(..line_end + 2 + size + 2);
                    if size == 0 {
                        break;
                    }
                }
            }
            return Ok(Some(Request { method, path, headers: map, body }));
        }
        if read_more(stream, buf).await? == 0 {
            return Ok(None);
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 16384];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

async fn serve(mut stream: TcpStream, ctx: Ctx) -> anyhow::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut stream, &mut buf).await? {
        let upgrade = req.headers.get("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if upgrade {
            ctx.seen.lock().unwrap().upgrades.push(req.headers.clone());
            if req.path.starts_with("/reject") {
                let body = br#"{"error":{"message":"rejected by the fake gateway","type":"forbidden"}}"#;
                let head = format!("HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(body).await?;
                return Ok(());
            }
            let key = req.headers.get("sec-websocket-key").cloned().unwrap_or_default();
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            stream.write_all(head.as_bytes()).await?;
            let ws = WebSocketStream::from_partially_read(stream, buf, Role::Server, None).await;
            return websocket(ws, ctx).await;
        }
        let mut seen = req.headers.clone();
        seen.insert(":path".into(), req.path.clone());
        ctx.seen.lock().unwrap().http.push(seen);
        http(&mut stream, &req, &ctx).await?;
        if req.headers.get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            return Ok(());
        }
    }
    Ok(())
}

async fn respond(stream: &mut TcpStream, status: u16, content_type: &str, extra: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\r\n", body.len());
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await
}

fn query(path: &str, key: &str) -> Option<usize> {
    path.split_once('?')?.1.split('&').find_map(|kv| kv.strip_prefix(&format!("{key}="))?.parse().ok())
}

async fn http(stream: &mut TcpStream, req: &Request, ctx: &Ctx) -> anyhow::Result<()> {
    let path = req.path.split('?').next().unwrap_or("/");
    match path {
        "/readyz" => respond(stream, 200, "application/json", "", br#"{"ready":true}"#).await?,
        "/headers" => {
            let body = serde_json::to_vec(&json!({ "method": req.method, "headers": req.headers }))?;
            respond(stream, 200, "application/json", "X-Fake-Gateway: yes\r\n", &body).await?
        }
        "/sha256" | "/tools/invoke" => {
            let body = serde_json::to_vec(&json!({ "length": req.body.len(), "sha256": hex::encode(Sha256::digest(&req.body)) }))?;
            respond(stream, 200, "application/json", "", &body).await?
        }
        "/bytes" => {
            let n = query(&req.path, "n").unwrap_or(0);
            let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            respond(stream, 200, "application/octet-stream", "", &body).await?
        }
        "/sse" => {
            let n = query(&req.path, "n").unwrap_or(3);
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n").await?;
            for i in 0..n {
                ctx.sse_gate.acquire().await?.forget();
                let event = format!("data: {{\"n\":{i}}}\n\n");
                stream.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes()).await?;
            }
            stream.write_all(b"0\r\n\r\n").await?;
        }
        _ if path.starts_with("/status/") => {
            let code: u16 = path["/status/".len()..].parse().unwrap_or(500);
            respond(stream, code, "text/plain", "X-Custom: kept\r\n", b"status").await?
        }
        _ => respond(stream, 200, "text/html", "Server: fake-node\r\nX-Powered-By: Express\r\n", b"<html>fake control ui</html>").await?,
    }
    Ok(())
}

fn res(id: &Value, payload: Value) -> Message {
    Message::text(json!({"type":"res","id":id,"ok":true,"payload":payload}).to_string())
}

async fn websocket(ws: WebSocketStream<TcpStream>, ctx: Ctx) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(64);
    let (mut sink, mut stream) = ws.split();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let closing = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || closing {
                break;
            }
        }
        // Answers a client's close (or sends ours) and flushes it.
        let _ = sink.close().await;
    });
    tx.send(Message::text(json!({"type":"event","event":"connect.challenge","payload":{"nonce":"fake-nonce","ts":1}}).to_string())).await?;
    if let Some(ms) = ctx.tick_ms {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut seq = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                seq += 1;
                if tx.send(Message::text(json!({"type":"event","event":"tick","payload":{"ts":seq},"seq":seq}).to_string())).await.is_err() {
                    break;
                }
            }
        });
    }
    let mut connected = false;
    while let Some(msg) = stream.next().await {
        let msg = match msg {
            Ok(m) => m,
            Err(_) => break,
        };
        let text = match msg {
            Message::Text(t) => t.to_string(),
            Message::Close(_) => break,
            _ => continue,
        };
        let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let (id, method, params) = (frame["id"].clone(), frame["method"].as_str().unwrap_or("").to_string(), frame["params"].clone());
        ctx.seen.lock().unwrap().methods.push(method.clone());
        if !connected {
            if method != "connect" {
                let err = json!({"type":"res","id":id,"ok":false,"error":{"code":"INVALID_REQUEST","message":"invalid handshake: first request must be connect"}});
                tx.send(Message::text(err.to_string())).await?;
                tx.send(Message::Close(Some(CloseFrame { code: CloseCode::Policy, reason: "invalid handshake: first request must be connect".into() }))).await?;
                break;
            }
            if params["auth"]["token"] == "wrong" {
                // As the real gateway answers a token mismatch (openclaw-runtime.md §7).
                let err = json!({"type":"res","id":id,"ok":false,"error":{"code":"INVALID_REQUEST","message":"unauthorized: gateway token mismatch","details":{"code":"AUTH_TOKEN_MISMATCH"}}});
                tx.send(Message::text(err.to_string())).await?;
                tx.send(Message::Close(Some(CloseFrame { code: CloseCode::Policy, reason: "unauthorized: gateway token mismatch".into() }))).await?;
                break;
            }
            connected = true;
            let role = params["role"].as_str().unwrap_or("operator").to_string();
            let mut hello = json!({"type":"hello-ok","protocol":4,"auth":{"role":role,"scopes":params["scopes"].clone()}});
            if let Some(v) = &ctx.server_version {
                hello["server"] = json!({ "version": v });
            }
            tx.send(res(&id, hello)).await?;
            continue;
        }
        match method.as_str() {
            "echo" => tx.send(res(&id, params)).await?,
            "slow" => {
                let tx = tx.clone();
                let ms = params["ms"].as_u64().unwrap_or(100);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let _ = tx.send(res(&id, json!({"slept": ms}))).await;
                });
            }
            "events" => {
                let name = params["name"].as_str().unwrap_or("ev").to_string();
                let pad = "x".repeat(params["size"].as_u64().unwrap_or(10) as usize);
                for i in 0..params["count"].as_u64().unwrap_or(1) {
                    tx.send(Message::text(json!({"type":"event","event":name,"payload":{"i":i,"pad":pad}}).to_string())).await?;
                }
                tx.send(res(&id, json!({"sent": true}))).await?;
            }
            "vanish" => {
                // The process goes away: the TCP connection ends with no close frame.
                writer.abort();
                return Ok(());
            }
            "close" => {
                let code = params["code"].as_u64().unwrap_or(1000) as u16;
                let reason = params["reason"].as_str().unwrap_or("").to_string();
                tx.send(Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))).await?;
            }
            other => tx.send(res(&id, json!({"method": other}))).await?,
        }
    }
    drop(tx);
    let _ = writer.await;
    Ok(())
}
