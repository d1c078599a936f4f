//! The admin listener: `/metrics`, `/livez`, `/readyz`, `/policy`, `POST /reload`.

use crate::shared::Shared;
use crate::readiness::Readiness;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora_prometheus::PrometheusHttpApp;
use std::sync::{Arc, Mutex};

/// The admin HTTP app.
pub struct AdminApp {
    /// Shared proxy state.
    pub shared: Arc<Shared>,
    /// Readiness details.
    pub readiness: Arc<Mutex<Readiness>>,
}

fn json(status: u16, value: serde_json::Value) -> Response<Vec<u8>> {
    let body = serde_json::to_vec_pretty(&value).expect("a JSON value always serialises");
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .expect("static response parts are valid")
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/metrics" => {
                crate::spend_poll::export_status(&self.shared.live());
                PrometheusHttpApp.response(session).await
            }
            "/livez" => json(200, serde_json::json!({ "live": true })),
            "/readyz" => {
                let ready = self.shared.is_ready();
                let mut failing = self.readiness.lock().map(|r| r.failing.clone()).unwrap_or_default();
                if *self.shared.shutdown.borrow() {
                    failing.push("shutting down".to_string());
                }
                json(if ready { 200 } else { 503 }, serde_json::json!({ "ready": ready, "failing": failing }))
            }
            "/policy" => {
                let live = self.shared.live();
                let loaded_at = humantime::format_rfc3339_seconds(live.loaded_at).to_string();
                let path = self.shared.path.as_ref().map(|p| p.display().to_string());
                // A reload that panicked mid-way left the state as it was: still worth showing.
                let reloads = self.shared.reloads.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let rejected = reloads.rejected.as_ref().map(|r| serde_json::json!({ "version": r.version, "error": r.error, "at": humantime::format_rfc3339_seconds(r.at).to_string() }));
                json(200, serde_json::json!({
                    "version": live.policy.version,
                    "path": path,
                    "source": path.as_deref().unwrap_or("embedded"),
                    "loaded_at": loaded_at,
                    "reloads_applied": reloads.applied,
                    "last_reload_ms": reloads.last_applied_ms,
                    "needs_restart": reloads.needs_restart,
                    "last_rejected": rejected,
                }))
            }
            "/reload" if session.req_header().method == http::Method::POST => {
                let shared = self.shared.clone();
                let started = std::time::Instant::now();
                // Validation reads files (the policy, TLS material): off the async workers.
                let outcome = tokio::task::spawn_blocking(move || crate::reload::reload(&shared, "admin")).await;
                // Read, validated, compiled and in force (connections re-judge themselves next).
                let took_ms = started.elapsed().as_secs_f64() * 1000.0;
                let with_time = |o: &crate::reload::Outcome| {
                    let mut v = o.to_json();
                    v["took_ms"] = serde_json::json!(took_ms);
                    v
                };
                match outcome {
                    Ok(o @ crate::reload::Outcome::Rejected { .. }) => json(422, with_time(&o)),
                    Ok(o) => json(200, with_time(&o)),
                    Err(e) => json(500, serde_json::json!({ "result": "error", "error": e.to_string() })),
                }
            }
            "/reload" => json(405, serde_json::json!({ "error": "POST /reload reloads the policy file" })),
            _ => json(404, serde_json::json!({ "error": "not found", "paths": ["/metrics", "/livez", "/readyz", "/policy", "POST /reload"] })),
        }
    }
}
