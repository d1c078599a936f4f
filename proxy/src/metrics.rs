//! Prometheus metrics, registered in the default registry of the `prometheus`
//! version that `pingora-prometheus` re-exports (so `/metrics` serves them).
//! Labels are low-cardinality: directions, verdicts, rule names from the policy.

use pingora_prometheus::prometheus::{
    register_gauge_vec, register_histogram_vec, register_int_counter_vec, register_int_gauge, register_int_gauge_vec, GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};
use std::sync::LazyLock;

/// HTTP requests by kind (`http`, `websocket`) and verdict (`forward`, `refuse`, `error`).
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_requests_total", "HTTP requests (including WebSocket upgrades) by kind and verdict", &["kind", "verdict"])
        .expect("metric registers once")
});

/// Refusals by reason (`tls_required`, `bad_upgrade`, `gateway_unreachable`, …).
pub static REFUSALS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_refusals_total", "Requests and connections refused by clawguard, by reason", &["reason"])
        .expect("metric registers once")
});

/// WebSocket messages by direction (`c2s`, `s2c`) and verdict (`forward`, `drop`, `reply`, `close`).
pub static WS_MESSAGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_ws_messages_total", "WebSocket messages by direction and verdict", &["direction", "verdict"])
        .expect("metric registers once")
});

/// Every non-forward decision by direction, verdict and rule.
pub static DECISIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_decisions_total", "WebSocket messages not forwarded unchanged (or that would not be, in dry-run), by direction, verdict, rule and mode", &["direction", "verdict", "rule", "mode"])
        .expect("metric registers once")
});

/// WebSocket connections by outcome (`opened`, `refused`, `upstream_error`).
pub static WS_CONNECTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_ws_connections_total", "WebSocket upgrade attempts by outcome", &["outcome"])
        .expect("metric registers once")
});

/// Open WebSocket connections the gateway left without a close frame, by the close code
/// clawguard sent the client (1012: the gateway closed the connection, 1011: it failed).
pub static WS_UPSTREAM_LOST: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_ws_upstream_lost_total", "WebSocket connections the gateway left without a close frame, by the code sent to the client", &["code"])
        .expect("metric registers once")
});

/// Open WebSocket connections.
pub static WS_ACTIVE: LazyLock<IntGauge> =
    LazyLock::new(|| register_int_gauge!("clawguard_ws_connections_active", "Open proxied WebSocket connections").expect("metric registers once"));

/// Handshakes whose `hello-ok.server.version` differs from the method table's gateway version.
pub static VERSION_MISMATCH: LazyLock<IntCounter> = LazyLock::new(|| {
    pingora_prometheus::prometheus::register_int_counter!(
        "clawguard_gateway_version_mismatch_total",
        "Handshakes with a gateway version other than the one the method table describes"
    )
    .expect("metric registers once")
});

/// Node connects that declared more than their pin (the rest is pending approval).
pub static NODE_PIN_UPGRADES: LazyLock<IntCounter> = LazyLock::new(|| {
    pingora_prometheus::prometheus::register_int_counter!(
        "clawguard_node_pin_upgrades_total",
        "Node connects that declared commands, caps or permissions beyond their pin (held pending approval)"
    )
    .expect("metric registers once")
});

/// Pin changes that followed a gateway pairing decision, by decision.
pub static PIN_FOLLOWED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_node_pins_followed_total", "Node pins changed by node.pair.approve / reject answers through clawguard", &["decision"])
        .expect("metric registers once")
});

/// Times the pin store file could not be read or written while running.
pub static PIN_STORE_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    pingora_prometheus::prometheus::register_int_counter!("clawguard_pin_store_errors_total", "Failures to read or write the node pin store while running")
        .expect("metric registers once")
});

/// HTTP requests clawguard refused (or, in dry-run, would have), by route class, verdict
/// (`refuse`, `would_refuse`) and rule.
pub static HTTP_DECISIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_http_decisions_total", "HTTP requests refused or (dry-run) recorded, by route, verdict, rule and mode", &["route", "verdict", "rule", "mode"])
        .expect("metric registers once")
});

/// Messages, requests and connections refused by a rate limit, by limit name.
pub static RATE_LIMITED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_rate_limited_total", "Messages, requests and connections refused by a rate limit, by limit", &["limit"]).expect("metric registers once")
});

/// Keys held by all rate limits after the last prune (each limit is capped at `limits.max_keys`).
pub static RATE_LIMIT_KEYS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("clawguard_rate_limit_keys", "Keys held by all rate limits after the last prune").expect("metric registers once")
});

/// What a limit in shadow mode would have refused, by limit name.
pub static RATE_LIMIT_SHADOW: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_rate_limit_shadow_total", "Messages, requests and connections a shadow-mode limit would have refused, by limit", &["limit"])
        .expect("metric registers once")
});

/// The loaded policy's version, as a label on a constant 1.
pub static POLICY_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("clawguard_policy_info", "The loaded policy (value 1), labelled with its SHA-256 version", &["version"])
        .expect("metric registers once")
});

/// Policy reloads by result (`applied`, `unchanged`, `rejected`).
pub static POLICY_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_policy_reloads_total", "Policy reloads by result: applied, unchanged, rejected (the running policy stays)", &["result"])
        .expect("metric registers once")
});

/// 1 while the policy file on disk is one that did not load (the running version is older).
pub static POLICY_RELOAD_FAILING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("clawguard_policy_reload_failing", "1 while the policy file's current contents were rejected and an older version is in force")
        .expect("metric registers once")
});

/// TLS material (certificate, key, client CA) put in force by a reload.
pub static TLS_RELOADS: LazyLock<IntCounter> = LazyLock::new(|| {
    pingora_prometheus::prometheus::register_int_counter!("clawguard_tls_reloads_total", "TLS certificates, keys or client CAs put in force by a reload (new handshakes use them)").expect("metric registers once")
});

/// 1 once a handshake showed a gateway version other than `gateway.version` (until a reload).
pub static GATEWAY_DRIFT: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("clawguard_gateway_version_drift", "1 once a hello-ok showed a gateway version other than gateway.version, or requests for unknown methods passed gateway.unknown_methods_per_minute (until a reload)").expect("metric registers once")
});

/// This build (value 1), labelled with clawguard's version.
pub static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("clawguard_build_info", "clawguard's build (value 1), labelled with its version", &["version"]).expect("metric registers once")
});

/// 1 while `/readyz` says ready.
pub static READY: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("clawguard_ready", "1 while /readyz answers 200 (listeners accept, the gateway is ready, the audit log writes)").expect("metric registers once")
});

/// HTTP answers by route class and status class (WebSocket upgrades under `websocket`).
pub static HTTP_RESPONSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_http_responses_total", "HTTP answers by route class and status class (1xx..5xx, or none when no answer was sent)", &["route", "status_class"])
        .expect("metric registers once")
});

/// How long clawguard's decision took: an HTTP request head (and its body when the route
/// judges one), or one read of client bytes on a WebSocket (every message in it).
pub static DECISION_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "clawguard_decision_duration_seconds",
        "Time clawguard spent deciding: per HTTP request (head, and body when judged), per read of WebSocket client bytes",
        &["surface"],
        vec![0.000_001, 0.000_002_5, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.001, 0.01]
    )
    .expect("metric registers once")
});

/// The decision histograms, resolved once.
pub static DECISION_HTTP: LazyLock<Histogram> = LazyLock::new(|| DECISION_SECONDS.with_label_values(&["http"]));
/// The WebSocket decision histogram.
pub static DECISION_WS: LazyLock<Histogram> = LazyLock::new(|| DECISION_SECONDS.with_label_values(&["websocket"]));

/// Pre-resolved handles for the per-message hot path.
pub struct HotCounters {
    /// Forwarded client → gateway messages.
    pub forward_c2s: IntCounter,
    /// Forwarded gateway → client messages.
    pub forward_s2c: IntCounter,
}

/// The hot-path counters.
pub static HOT: LazyLock<HotCounters> = LazyLock::new(|| HotCounters {
    forward_c2s: WS_MESSAGES.with_label_values(&["c2s", "forward"]),
    forward_s2c: WS_MESSAGES.with_label_values(&["s2c", "forward"]),
});

/// Audit records written, by category.
pub static AUDIT_RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_audit_records_total", "Audit records written, by category", &["category"]).expect("metric registers once")
});

/// Audit events not recorded, by category and reason (`queue_full`, `write_failed`).
pub static AUDIT_DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_audit_dropped_total", "Audit events that could not be recorded, by category and reason", &["category", "reason"]).expect("metric registers once")
});

/// Failed writes or flushes of the audit log.
pub static AUDIT_WRITE_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    pingora_prometheus::prometheus::register_int_counter!("clawguard_audit_write_errors_total", "Failed writes or flushes of the audit log").expect("metric registers once")
});

/// Events queued for the audit writer.
pub static AUDIT_QUEUE: LazyLock<IntGauge> =
    LazyLock::new(|| register_int_gauge!("clawguard_audit_queue_depth", "Audit events queued for the writer").expect("metric registers once"));

/// When the last signed checkpoint was written (Unix seconds).
pub static AUDIT_LAST_CHECKPOINT: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("clawguard_audit_last_checkpoint_timestamp_seconds", "When the audit log's last signed checkpoint was written").expect("metric registers once")
});

/// The `mode` label of a decision: `enforce`, `dry-run`, or `shadow` (a rate limit listed in
/// `limits.shadow`, counted but not applied).
pub fn decision_mode(enforced: bool, rule: &str) -> &'static str {
    match (enforced, rule.starts_with("rate-limit:")) {
        (true, _) => "enforce",
        (false, true) => "shadow",
        (false, false) => "dry-run",
    }
}

/// Client requests and messages refused (or, in dry-run, that would be), by surface and the
/// policy's identity name (a bounded set: the policy's names, `none` before one is known).
pub static REFUSED_BY_IDENTITY: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_refusals_by_identity_total", "Client requests and messages refused (or that would be, in dry-run), by surface and policy identity name", &["surface", "identity"])
        .expect("metric registers once")
});

/// Failures talking to the gateway, by surface and kind.
pub static UPSTREAM_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "clawguard_upstream_errors_total",
        "Failures talking to the gateway, by surface (http, websocket) and kind (connect, timeout, closed, io, protocol)",
        &["surface", "kind"]
    )
    .expect("metric registers once")
});

/// Nodes in the pin store by state.
pub static NODE_PINS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("clawguard_node_pins", "Nodes in the pin store by state: pinned (an approved surface), pending (a request beyond the pin awaits approval), revoked", &["state"])
        .expect("metric registers once")
});

/// Client requests for methods the method table does not have.
pub static UNKNOWN_METHODS: LazyLock<IntCounter> = LazyLock::new(|| {
    pingora_prometheus::prometheus::register_int_counter!("clawguard_unknown_method_requests_total", "Client requests for methods clawguard's method table does not have (they need operator.admin)")
        .expect("metric registers once")
});

/// 1 while the audit log writes, 0 while it cannot.
pub static AUDIT_HEALTHY: LazyLock<IntGauge> =
    LazyLock::new(|| register_int_gauge!("clawguard_audit_healthy", "1 while the audit log writes, 0 while it cannot").expect("metric registers once"));

/// Crash markers written at start (the previous run did not seal the log).
pub static AUDIT_CRASH_MARKERS: LazyLock<IntCounter> = LazyLock::new(|| {
    pingora_prometheus::prometheus::register_int_counter!("clawguard_audit_crash_markers_total", "Crash markers written at start").expect("metric registers once")
});

/// The result of the verification of the audit log at start: 0 clean, 1 tampered, 2 incomplete.
pub static AUDIT_VERIFY: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("clawguard_audit_last_verify_result", "The audit log verified at start: 0 clean, 1 tampered, 2 incomplete (a running or crashed log)").expect("metric registers once")
});

/// Spend polls by outcome (`ok`, `error`).
pub static SPEND_POLLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_spend_polls_total", "Usage reports asked of the gateway by the spend poll, by outcome (ok, error)", &["outcome"]).expect("metric registers once")
});

/// Money spent in each budget's current window.
pub static SPEND_USD: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!("clawguard_spend_usd", "Money (USD, as the gateway prices it) spent in each budget's current window", &["budget"]).expect("metric registers once")
});

/// Tokens used in each budget's current window.
pub static SPEND_TOKENS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("clawguard_spend_tokens", "Model tokens used in each budget's current window", &["budget"]).expect("metric registers once")
});

/// Each budget's most used unit as a fraction of its limit (1 and above: exhausted).
pub static SPEND_USED: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!("clawguard_spend_used_ratio", "Each budget's most used unit as a fraction of its limit (1 and above: new runs are refused)", &["budget"]).expect("metric registers once")
});

/// Budget warnings and trips, by budget and kind (`warning`, `trip`).
pub static SPEND_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_spend_events_total", "Spend budgets crossing their warning threshold or their limit, by budget and kind (warning, trip)", &["budget", "kind"]).expect("metric registers once")
});

/// Calls to the shared store by kind (`replay`, `lockout`, `rate`, `spend`, `ping`) and
/// outcome (`ok`, `error`, `skipped` while the store is down).
pub static STATE_CALLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("clawguard_state_calls_total", "Calls to the shared state store (Redis) by kind (replay, lockout, rate, spend, ping) and outcome (ok, error, skipped while it is down)", &["kind", "outcome"]).expect("metric registers once")
});

/// Whether the shared store answered its last call.
pub static STATE_UP: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("clawguard_state_up", "1 when the shared state store (Redis) answered its last call, 0 while it does not (only with [state] backend = \"redis\")").expect("metric registers once")
});
