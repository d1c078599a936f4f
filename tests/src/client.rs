//! Client helpers: a blocking HTTP GET for readiness, and WebSocket helpers
//! that speak the gateway handshake.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A blocking `GET path` with `Connection: close`; status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Opens a WebSocket to `addr` (no handshake frames yet).
pub async fn open(addr: SocketAddr) -> Ws {
    let (ws, resp) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await.expect("websocket upgrade");
    assert_eq!(resp.status(), 101);
    ws
}

/// The next text message as JSON, skipping pings; panics after 10 s.
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a message within 10 s").expect("stream open").expect("valid message");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON text"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Sends a `req`.
pub async fn send_req(ws: &mut Ws, id: &str, method: &str, params: Value) {
    ws.send(Message::text(json!({"type":"req","id":id,"method":method,"params":params}).to_string())).await.expect("send");
}

/// Opens a WebSocket and completes the gateway handshake (challenge, connect, hello-ok),
/// asking for `operator.admin`.
pub async fn connect(addr: SocketAddr) -> Ws {
    connect_with(addr, &["operator.admin"]).await
}

/// Opens a WebSocket and completes the gateway handshake asking for `scopes`.
pub async fn connect_with(addr: SocketAddr, scopes: &[&str]) -> Ws {
    let mut ws = open(addr).await;
    let challenge = next_json(&mut ws).await;
    assert_eq!(challenge["event"], "connect.challenge");
    send_req(&mut ws, "1", "connect", json!({"minProtocol":4,"maxProtocol":4,"scopes":scopes})).await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["payload"]["type"], "hello-ok", "{hello}");
    ws
}

/// As [`connect_with`], from the loopback address `source` (such as 127.0.0.2), so that
/// identities matched by address can be told apart.
pub async fn connect_from(addr: SocketAddr, source: &str, scopes: &[&str]) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source.parse().expect("a source address"), 0)).expect("bind the source address");
    let tcp = socket.connect(addr).await.expect("connect");
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{addr}/"), MaybeTlsStream::Plain(tcp)).await.expect("websocket upgrade");
    assert_eq!(resp.status(), 101);
    let challenge = next_json(&mut ws).await;
    assert_eq!(challenge["event"], "connect.challenge");
    send_req(&mut ws, "1", "connect", json!({"minProtocol":4,"maxProtocol":4,"scopes":scopes})).await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["payload"]["type"], "hello-ok", "{hello}");
    ws
}

/// Waits for the close frame; its code and reason.
pub async fn expect_close(ws: &mut Ws) -> (u16, String) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a close within 10 s");
        match msg {
            Some(Ok(Message::Close(Some(f)))) => return (f.code.into(), f.reason.to_string()),
            Some(Ok(Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}
