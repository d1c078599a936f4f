//! `clawguard-load`: the load harness's two halves.
//!
//! - `upstream`: a lean stand-in for the gateway on one port: keep-alive HTTP answering
//!   every request with a 13-byte body, and WebSocket with the gateway's handshake
//!   (challenge, connect → hello-ok) answering every `req` with a `res`.
//! - `ws`: N connections, each doing request/response round trips for a fixed time, one
//!   request at a time or `--depth` pipelined; prints answers per second and p50/p99/p99.9
//!   latency as JSON. Every answer must be the upstream's; with `--admin` (clawguard's admin
//!   listener) the run also fails unless clawguard's own metrics show every message forwarded
//!   and no other verdict: a point that measured refusals is no point.
//!
//! - `reload`: N connections held open through clawguard while its policy is reloaded: how
//!   long the reload takes with them open, that none is dropped, and how long until every one
//!   of them is closed by a reload that no longer allows them (`benches/reload.sh`).
//!
//! HTTP load is generated with `wrk` (see `benches/run.sh`).
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and WebSocket on ADDR.
    Upstream {
        /// Listen address.
        #[arg(long)]
        listen: String,
    },
    /// WebSocket round trips against URL.
    Ws {
        /// ws:// URL.
        #[arg(long)]
        url: String,
        /// Concurrent connections.
        #[arg(long, default_value_t = 1)]
        conns: usize,
        /// Seconds of measurement (after a 1 s warm-up).
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Requests in flight per connection: 1 is sequential round trips, more is pipelined
        /// (a new request sent as each answer arrives).
        #[arg(long, default_value_t = 1)]
        depth: usize,
        /// The request: `chat.history` (judged; touches no shared state) or `chat.send` (also
        /// counted by the per-session inference limit, which is shared state with Redis).
        #[arg(long, default_value = "chat.history")]
        method: String,
        /// clawguard's admin listener (HOST:PORT): its metrics must show every request, answer
        /// and handshake message forwarded and nothing decided otherwise, or the run fails.
        #[arg(long)]
        admin: Option<String>,
    },
    /// Policy reloads of the clawguard at URL with N connections open.
    Reload {
        /// ws:// URL of clawguard.
        #[arg(long)]
        url: String,
        /// clawguard's admin listener (HOST:PORT).
        #[arg(long)]
        admin: String,
        /// The policy file clawguard runs.
        #[arg(long)]
        policy: std::path::PathBuf,
        /// Text of the policy that, replaced by `--tighten-to`, no longer allows the connections.
        #[arg(long)]
        tighten_from: String,
        /// Its replacement.
        #[arg(long)]
        tighten_to: String,
        /// Connections held open.
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        /// Rounds.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Upstream { .. } => 1,
        Command::Ws { .. } => 1,
        Command::Reload { .. } => 2,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    rt.block_on(async {
        match cli.command {
            Command::Upstream { listen } => upstream(&listen).await,
            Command::Ws { url, conns, seconds, depth, method, admin } => ws_load(&url, conns, seconds, depth.max(1), &method, admin.as_deref()).await,
            Command::Reload { url, admin, policy, tighten_from, tighten_to, conns, rounds } => {
                for round in 0..rounds {
                    println!("{}", reload_round(&url, &admin, &policy, (&tighten_from, &tighten_to), conns, round).await?);
                }
                Ok(())
            }
        }
    })
}

async fn upstream(listen: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = serve(stream).await;
        });
    }
}

async fn serve(mut stream: TcpStream) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        let (len, upgrade_key, body_len) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(len) = req.parse(&buf)? {
                let is_ws = req.headers.iter().any(|h| h.name.eq_ignore_ascii_case("upgrade"));
                let key = req.headers.iter().find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key")).map(|h| h.value.to_vec());
                // A request body (Content-Length) is read and discarded before the answer.
                let body_len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (len, if is_ws { key } else { None }, body_len);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        while buf.len() < len + body_len {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..len + body_len);
        if let Some(key) = upgrade_key {
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(&key)
            );
            stream.write_all(head.as_bytes()).await?;
            let ws = WebSocketStream::from_partially_read(stream, buf, Role::Server, None).await;
            return ws_echo(ws).await;
        }
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n").await?;
    }
}

async fn ws_echo(mut ws: WebSocketStream<TcpStream>) -> anyhow::Result<()> {
    ws.send(Message::text(r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"bench","ts":1}}"#)).await?;
    while let Some(msg) = ws.next().await {
        let Message::Text(text) = msg? else { continue };
        let frame: serde_json::Value = serde_json::from_str(&text)?;
        let reply = if frame["method"] == "connect" {
            // Grants what the (narrowed) connect asks for, as the gateway does for its owner.
            let scopes = frame["params"]["scopes"].clone();
            serde_json::json!({"type":"res","id":frame["id"],"ok":true,"payload":{"type":"hello-ok","protocol":4,"auth":{"role":"operator","scopes":scopes}}})
        } else {
            serde_json::json!({"type":"res","id":frame["id"],"ok":true,"payload":{"ok":true,"ts":1795268067476u64}})
        };
        ws.send(Message::text(reply.to_string())).await?;
    }
    Ok(())
}

/// What clawguard's metrics say it did with WebSocket messages.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counted {
    /// Client messages forwarded unchanged.
    c2s: u64,
    /// Gateway messages forwarded unchanged.
    s2c: u64,
    /// Every other verdict (refusals, drops, closes, rewrites, would-refusals).
    decisions: u64,
}

impl Counted {
    fn since(self, before: Counted) -> Counted {
        Counted { c2s: self.c2s - before.c2s, s2c: self.s2c - before.s2c, decisions: self.decisions - before.decisions }
    }
}

/// Reads clawguard's `/metrics` (Prometheus text) for the WebSocket verdict counters.
async fn counted(admin: &str) -> anyhow::Result<Counted> {
    let text = admin_text(admin, "GET /metrics").await?;
    let mut out = Counted::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let value: f64 = value.parse().map_err(|e| anyhow::anyhow!("metrics line {line:?}: {e}"))?;
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let label = |key: &str| labels.split(',').find_map(|kv| kv.strip_prefix(key)?.strip_prefix("=\"")?.split('"').next());
        match name {
            "clawguard_ws_messages_total" if label("verdict") == Some("forward") => match label("direction") {
                Some("c2s") => out.c2s += value as u64,
                Some("s2c") => out.s2c += value as u64,
                _ => {}
            },
            "clawguard_decisions_total" => out.decisions += value as u64,
            _ => {}
        }
    }
    Ok(out)
}

async fn ws_load(url: &str, conns: usize, seconds: u64, depth: usize, method: &str, admin: Option<&str>) -> anyhow::Result<()> {
    anyhow::ensure!(matches!(method, "chat.history" | "chat.send"), "--method {method:?}: expected chat.history or chat.send");
    let before = match admin {
        Some(a) => Some(counted(a).await?),
        None => None,
    };
    let warmup = Duration::from_secs(1);
    let measure = Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let url = url.to_string();
        let method = method.to_string();
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await?;
            ws.next().await; // challenge
            // A connect the benchmark policy grants, so that every request below is judged and
            // forwarded (not refused by clawguard): docs/benchmarks.md.
            ws.send(Message::text(r#"{"type":"req","id":"1","method":"connect","params":{"minProtocol":4,"maxProtocol":4,"role":"operator","scopes":["operator.read","operator.write"],"client":{"id":"cli","mode":"cli","version":"bench","platform":"linux"}}}"#)).await?;
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"hello-ok\"") => {}
                other => anyhow::bail!("the connect was not answered with hello-ok: {other:?}"),
            }
            let start = Instant::now();
            let mut latencies = Vec::with_capacity(100_000);
            let mut i = 2u64;
            // A typical ~300-byte request frame.
            let pad = "x".repeat(180);
            // When each request in flight was sent, oldest first (answers come in order).
            let mut in_flight = std::collections::VecDeque::with_capacity(depth);
            loop {
                let running = start.elapsed() < warmup + measure;
                if !running && in_flight.is_empty() {
                    break;
                }
                if running && in_flight.len() < depth {
                    while in_flight.len() < depth {
                        let req = if method == "chat.send" {
                            format!(r#"{{"type":"req","id":"{c}:{i}","method":"chat.send","params":{{"sessionKey":"agent:main:main","message":"{pad}","idempotencyKey":"{c}:{i}"}}}}"#)
                        } else {
                            format!(r#"{{"type":"req","id":"{c}:{i}","method":"chat.history","params":{{"sessionKey":"agent:main:main","limit":50,"pad":"{pad}"}}}}"#)
                        };
                        ws.feed(Message::text(req)).await?;
                        in_flight.push_back(Instant::now());
                        i += 1;
                    }
                    ws.flush().await?;
                }
                match ws.next().await {
                    // Only the upstream's answer counts: its payload carries its timestamp.
                    Some(Ok(Message::Text(t))) if t.contains("\"ok\":true") && t.contains("1795268067476") => {}
                    Some(Ok(Message::Text(t))) => anyhow::bail!("an answer that is not the upstream's: {t:.300}"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(anyhow::Error::from(e)),
                    None => anyhow::bail!("connection closed"),
                }
                let sent = in_flight.pop_front().ok_or_else(|| anyhow::anyhow!("an answer to no request"))?;
                let at = start.elapsed();
                if at > warmup && at <= warmup + measure {
                    latencies.push(sent.elapsed().as_nanos() as u64);
                }
            }
            let _ = ws.close(None).await;
            Ok::<_, anyhow::Error>((latencies, i - 2))
        }));
    }
    let mut all = Vec::new();
    let mut requests = 0;
    for t in tasks {
        let (latencies, sent) = t.await??;
        all.extend(latencies);
        requests += sent;
    }
    // Each connection: its connect, then every request, forwarded; the challenge, the
    // hello-ok and every answer forwarded back (all of them are the upstream's, checked above).
    let expected = Counted { c2s: requests + conns as u64, s2c: requests + 2 * conns as u64, decisions: 0 };
    let forwarded = match (admin, before) {
        (Some(a), Some(before)) => {
            // The counters move as clawguard writes; the last answers may be counted a moment
            // after the client read them.
            let mut seen = counted(a).await?.since(before);
            for _ in 0..20 {
                if seen.c2s >= expected.c2s && seen.s2c >= expected.s2c {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                seen = counted(a).await?.since(before);
            }
            anyhow::ensure!(
                seen == expected,
                "clawguard did not forward exactly what was sent: its metrics show {} client and {} gateway messages forwarded and {} other verdicts; the run sent {} and received {} (expected {expected:?}): the point did not measure the forwarding path",
                seen.c2s, seen.s2c, seen.decisions, expected.c2s, expected.s2c
            );
            Some(seen)
        }
        _ => None,
    };
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1000.0;
    let out = serde_json::json!({
        "round_trips": all.len(),
        "per_second": all.len() as f64 / measure.as_secs_f64(),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "requests": requests,
        "forwarded": forwarded.map(|f| serde_json::json!({ "c2s": f.c2s, "s2c": f.s2c, "decisions": f.decisions })),
    });
    println!("{out}");
    Ok(())
}

type Client = WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Opens a connection and completes the gateway handshake with the scopes the bench policy's
/// identity has.
async fn open_connection(url: &str) -> anyhow::Result<Client> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.next().await; // challenge
    ws.send(Message::text(r#"{"type":"req","id":"1","method":"connect","params":{"minProtocol":4,"maxProtocol":4,"role":"operator","scopes":["operator.read","operator.write"],"client":{"id":"cli","mode":"cli","version":"bench","platform":"linux"}}}"#)).await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.contains("\"hello-ok\"") => Ok(ws),
        other => anyhow::bail!("the connect was not answered with hello-ok: {other:?}"),
    }
}

/// A request on an open connection, answered by the upstream.
async fn round_trip(ws: &mut Client, id: usize) -> anyhow::Result<()> {
    ws.send(Message::text(format!(r#"{{"type":"req","id":"r{id}","method":"chat.history","params":{{"sessionKey":"agent:main:main","limit":1}}}}"#))).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("1795268067476") => return Ok(()),
            Some(Ok(Message::Text(t))) => anyhow::bail!("an answer that is not the upstream's: {t:.300}"),
            Some(Ok(_)) => continue,
            other => anyhow::bail!("the connection ended: {other:?}"),
        }
    }
}

/// `POST /reload` on the admin listener: the answer's JSON.
async fn post_reload(admin: &str) -> anyhow::Result<serde_json::Value> {
    admin_request(admin, "POST /reload").await
}

async fn admin_request(admin: &str, line: &str) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(&admin_text(admin, line).await?)?)
}

/// One request to the admin listener: the answer's body (chunked or not).
async fn admin_text(admin: &str, line: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(admin).await?;
    s.write_all(format!("{line} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("{line}: no HTTP answer"))?;
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Ok(body.to_string());
    }
    let (mut rest, mut decoded) = (body, String::new());
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or_else(|| anyhow::anyhow!("{line}: a chunk without its size"))?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(decoded);
        }
        decoded.push_str(after.get(..size).ok_or_else(|| anyhow::anyhow!("{line}: a chunk shorter than its size"))?);
        rest = after[size..].trim_start_matches("\r\n");
    }
}

fn write_atomically(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("bench-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// One round: N connections opened; a reload that keeps them (timed, then every one answers);
/// a reload that no longer allows them (timed until the last is closed); the policy restored.
async fn reload_round(url: &str, admin: &str, policy: &std::path::Path, tighten: (&str, &str), conns: usize, round: usize) -> anyhow::Result<serde_json::Value> {
    let original = std::fs::read_to_string(policy)?;
    anyhow::ensure!(original.contains(tighten.0), "the policy does not contain {:?}", tighten.0);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move { open_connection(&url).await }));
    }
    let mut open = Vec::with_capacity(conns);
    for t in tasks {
        open.push(t.await??);
    }
    // 1. A new version that allows them all (one more rule none of them breaks).
    write_atomically(policy, &format!("{original}\n# bench round {round}\n"))?;
    let asked = Instant::now();
    let kept = post_reload(admin).await?;
    let kept_wall_ms = asked.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(matches!(kept["result"].as_str(), Some("applied" | "unchanged")), "the reload failed: {kept}");
    let server_ms = admin_request(admin, "GET /policy").await?["last_reload_ms"].as_f64().unwrap_or(f64::NAN);
    let mut answered = 0;
    let mut tasks = Vec::new();
    for (i, mut ws) in open.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move { round_trip(&mut ws, i).await.map(|()| ws) }));
    }
    let mut open = Vec::with_capacity(conns);
    for t in tasks {
        if let Ok(Ok(ws)) = t.await {
            answered += 1;
            open.push(ws);
        }
    }
    anyhow::ensure!(answered == conns, "{} of {conns} connections were dropped by a reload that allows them", conns - answered);
    // 2. A version that no longer allows them: every one is closed, with no traffic on it.
    write_atomically(policy, &original.replace(tighten.0, tighten.1))?;
    let asked = Instant::now();
    let tightened = post_reload(admin).await?;
    let tightened_wall_ms = asked.elapsed().as_secs_f64() * 1000.0;
    let mut tasks = Vec::new();
    for mut ws in open {
        tasks.push(tokio::spawn(async move {
            loop {
                match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                    Ok(Some(Ok(Message::Close(Some(f))))) => return (u16::from(f.code), f.reason.to_string()),
                    Ok(Some(Ok(_))) => continue,
                    other => return (0, format!("{other:?}")),
                }
            }
        }));
    }
    let mut closed = 0;
    for t in tasks {
        let (code, reason) = t.await?;
        if code == 1008 && reason.starts_with("policy changed") {
            closed += 1;
        }
    }
    let all_closed_ms = asked.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(closed == conns, "{closed} of {conns} connections were closed with 1008 \"policy changed\"");
    write_atomically(policy, &original)?;
    post_reload(admin).await?;
    Ok(serde_json::json!({
        "round": round,
        "connections": conns,
        "kept": answered,
        "reload_wall_ms": kept_wall_ms,
        "reload_server_ms": server_ms,
        "reload_result": kept["result"],
        "tightened_wall_ms": tightened_wall_ms,
        "tightened_result": tightened["result"],
        "all_closed_ms": all_closed_ms,
    }))
}
