//! The spend poll (`[spend] poll = true`): every `spend.poll_interval_seconds`, clawguard opens
//! its own operator connection to the gateway (the token from `spend.poll_token`, scope
//! `operator.read`), asks for the current UTC day's usage of every session (`sessions.usage`,
//! see `protocol::usage`), and hands the report to the spend ledger of the policy in force,
//! which charges what is new. Warnings and trips are counted and recorded. A failed poll is
//! counted and retried with backoff; the ledger itself refuses runs once its last report is
//! older than `spend.max_report_age_seconds`.
//!
//! Every report read, the poll's or a client's answer on a WebSocket, is charged through the
//! one path of `surfaces::spend`; what it crossed is published here ([`publish`]): counted,
//! logged, recorded, and an enforced trip wakes every connection to stop its identity's runs in
//! flight (`spend.abort_running`).

use crate::shared::{now_ms, Shared};
use clawguard_filters::protocol::usage::{report_params, UsageReport};
use clawguard_filters::state::spend::SpendEvent;
use clawguard_filters::surfaces::spend::charge_report;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// The longest wait between two failed polls.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts the poll on its own thread (a current-thread runtime: one request every few seconds).
pub fn start(shared: Weak<Shared>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("clawguard-spend".into()).spawn(move || rt.block_on(run(shared)))?;
    Ok(())
}

async fn run(shared: Weak<Shared>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let Some(s) = shared.upgrade() else { return };
        let live = s.live_arc();
        let spend = &live.policy.policy.spend;
        let interval = Duration::from_secs(spend.poll_interval_seconds.max(1));
        if !spend.poll {
            drop((s, live));
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let outcome = poll_once(&s, &live).await;
        drop(live);
        let wait = match outcome {
            Ok(()) => {
                crate::metrics::SPEND_POLLS.with_label_values(&["ok"]).inc();
                backoff = Duration::from_secs(1);
                interval
            }
            Err(e) => {
                crate::metrics::SPEND_POLLS.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, retry_in = ?backoff, "spend poll failed: spend is not measured until a poll succeeds");
                let wait = backoff.min(interval);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        drop(s);
        tokio::time::sleep(wait).await;
    }
}

/// One report: connect, ask, read, charge.
async fn poll_once(s: &Arc<Shared>, live: &crate::shared::Live) -> Result<(), String> {
    let spend = &live.policy.policy.spend;
    let base = s.path.as_deref().and_then(std::path::Path::parent).map(std::path::PathBuf::from).unwrap_or_default();
    let reference = spend.poll_token.as_deref().ok_or("spend.poll_token is not set")?;
    let token = crate::secrets::read_text(reference, &base).map_err(|e| format!("spend.poll_token {reference}: {e}"))?;
    let upstream = &live.policy.policy.upstream;
    let timeout = Duration::from_millis(upstream.handshake_timeout_ms.max(1000));
    let day = clawguard_filters::state::spend::reset_time(now_ms())[..10].to_string();
    let payload = tokio::time::timeout(timeout, ask(upstream.address, token.trim(), &day)).await.map_err(|_| format!("the gateway did not answer within {timeout:?}"))??;
    let report = UsageReport::from_payload(&payload)?;
    tracing::debug!(sessions = report.sessions.len(), usd = report.usd, tokens = report.tokens, "spend poll: usage report read");
    // Replicas share the figures: each session's growth is charged once, whoever reads it.
    let events = charge_report(&s.env(live), &report).map_err(|e| format!("the shared spend counters: {e}"))?;
    for event in &events {
        if let Some(audit) = &s.audit {
            audit.record_now(clawguard_filters::surfaces::record::spend_event(event));
        }
    }
    publish(s, &events);
    export_status(live);
    Ok(())
}

/// Counts and logs the thresholds a report crossed (the caller records them), and wakes every
/// connection after an enforced trip, to stop the runs in flight of the identities it covers.
pub fn publish(s: &Shared, events: &[SpendEvent]) {
    for event in events {
        let (kind, e) = match event {
            SpendEvent::Warning(e) => ("warning", e),
            SpendEvent::Tripped(e) => ("trip", e),
        };
        crate::metrics::SPEND_EVENTS.with_label_values(&[&e.budget, kind]).inc();
        tracing::warn!(budget = %e.budget, kind, spent = e.spent, limit = e.limit, shadow = e.shadow, "spend budget {kind}");
    }
    if events.iter().any(|e| matches!(e, SpendEvent::Tripped(e) if !e.shadow)) {
        s.spend_trips.send_modify(|n| *n += 1);
    }
}

/// Sets the spend gauges from the ledger of the policy in force (after a report, and when
/// `/metrics` is read).
pub fn export_status(live: &crate::shared::Live) {
    for b in live.guard.spend().status(now_ms()) {
        crate::metrics::SPEND_USD.with_label_values(&[&b.budget]).set(b.usd);
        crate::metrics::SPEND_TOKENS.with_label_values(&[&b.budget]).set(i64::try_from(b.tokens).unwrap_or(i64::MAX));
        crate::metrics::SPEND_USED.with_label_values(&[&b.budget]).set(b.used);
    }
}

/// The gateway handshake as an `operator.read` client, then `sessions.usage` for `day`.
async fn ask(addr: std::net::SocketAddr, token: &str, day: &str) -> Result<Value, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await.map_err(|e| format!("cannot connect to the gateway at {addr}: {e}"))?;
    let connect = json!({
        "type": "req", "id": "connect", "method": "connect",
        "params": {
            "minProtocol": 4, "maxProtocol": 4,
            "client": { "id": "cli", "version": env!("CARGO_PKG_VERSION"), "platform": "linux", "mode": "cli" },
            "caps": [], "auth": { "token": token }, "role": "operator", "scopes": ["operator.read"],
        },
    });
    let usage = json!({ "type": "req", "id": "usage", "method": "sessions.usage", "params": report_params(day) });
    while let Some(message) = ws.next().await {
        let text = match message.map_err(|e| format!("the gateway connection failed: {e}"))? {
            Message::Text(t) => t,
            Message::Close(c) => return Err(format!("the gateway closed the connection: {c:?}")),
            _ => continue,
        };
        let frame: Value = serde_json::from_str(&text).map_err(|e| format!("the gateway sent a frame that is not JSON: {e}"))?;
        match (frame["type"].as_str(), frame["event"].as_str(), frame["id"].as_str()) {
            (Some("event"), Some("connect.challenge"), _) => ws.send(Message::text(connect.to_string())).await.map_err(|e| e.to_string())?,
            (Some("res"), _, Some("connect")) if frame["ok"] == true => ws.send(Message::text(usage.to_string())).await.map_err(|e| e.to_string())?,
            (Some("res"), _, Some("connect")) => return Err(format!("the gateway refused the poll's connect: {}", frame["error"])),
            (Some("res"), _, Some("usage")) if frame["ok"] == true => {
                let _ = ws.close(None).await;
                return Ok(frame["payload"].clone());
            }
            (Some("res"), _, Some("usage")) => return Err(format!("the gateway refused sessions.usage: {}", frame["error"])),
            _ => {}
        }
    }
    Err("the gateway closed the connection before answering".into())
}
