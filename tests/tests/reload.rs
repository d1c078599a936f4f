//! Issue 15: policy hot reload of the real binary in front of the fake gateway. A valid edit
//! applies to the next message of an open connection; a bad one keeps the running policy and is
//! reported with its location; the file is watched (edits in place and the Kubernetes ConfigMap
//! `..data` swap); SIGHUP, `POST /reload` and `clawguard reload` trigger it; a connection the
//! new policy no longer allows is closed with 1008 within a second, with no traffic.

use clawguard_tests::client::*;
use clawguard_tests::fake_gateway::FakeGateway;
use clawguard_tests::harness::{clawguard_bin, raise_fd_limit, Clawguard};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// Two loopback identities: `ops` (127.0.0.1, admin) and `watcher` (127.0.0.2, read).
fn identities(ops_extra: &str) -> String {
    format!(
        "[[identity]]\nname = \"ops\"\nroles = [\"operator\"]\nscopes = [\"operator.admin\"]\n{ops_extra}\n[identity.match]\ncidr = [\"127.0.0.1/32\"]\n\n\
         [[identity]]\nname = \"watcher\"\nroles = [\"operator\"]\nscopes = [\"operator.read\"]\n[identity.match]\ncidr = [\"127.0.0.2/32\"]\n\n\
         [[identity]]\nname = \"default\"\nscopes = []\n"
    )
}

/// The running policy file with the identities section replaced.
fn rewrite(cg: &Clawguard, new_identities: &str) -> String {
    let text = std::fs::read_to_string(&cg.policy_path).unwrap();
    let head = &text[..text.find("[[identity]]").expect("the test policy has identities")];
    format!("{head}{new_identities}")
}

/// `clawguard reload --admin …`: its exit code and JSON.
fn reload(cg: &Clawguard) -> (i32, Value) {
    let out = std::process::Command::new(clawguard_bin()).args(["reload", "--admin", &cg.admin.to_string()]).output().expect("run clawguard reload");
    let text = String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), serde_json::from_str(&text).unwrap_or_else(|_| panic!("reload printed {text:?} / {}", String::from_utf8_lossy(&out.stderr))))
}

/// Writes `text` as the policy (renamed into place) and asks for a reload: the file watcher may
/// have applied it first, so the answer is `applied` or `unchanged`, and the version in force is
/// the file's either way.
fn reload_to(cg: &Clawguard, text: &str) -> Value {
    write_atomically(&cg.policy_path, text);
    let (code, out) = reload(cg);
    assert_eq!(code, 0, "{out}");
    assert!(matches!(out["result"].as_str(), Some("applied" | "unchanged")), "{out}");
    assert_eq!(policy(cg)["version"].as_str(), Some(clawguard_policies::policy_version(text.as_bytes()).as_str()));
    out
}

fn policy(cg: &Clawguard) -> Value {
    let (status, body) = http_get(cg.admin, "/policy").unwrap();
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

fn metric(cg: &Clawguard, name: &str) -> f64 {
    let (_, body) = http_get(cg.admin, "/metrics").unwrap();
    body.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn issue15_a_valid_edit_applies_to_the_next_message_of_an_open_connection() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, &identities(""));
    let mut ws = connect(cg.addr).await;
    send_req(&mut ws, "2", "echo", json!({"n": 1})).await;
    assert_eq!(next_json(&mut ws).await["payload"]["n"], 1);
    let before = policy(&cg)["version"].clone();
    reload_to(&cg, &rewrite(&cg, &identities("deny_methods = [\"echo\"]")));
    assert_ne!(policy(&cg)["version"], before);
    send_req(&mut ws, "3", "echo", json!({"n": 2})).await;
    let refused = next_json(&mut ws).await;
    assert_eq!(refused["ok"], false, "the new deny_methods applies to the open connection's next message: {refused}");
    assert!(refused["error"]["message"].as_str().unwrap_or("").contains("echo"), "{refused}");
    // Reloading the same file again changes nothing.
    let (code, out) = reload(&cg);
    assert_eq!((code, out["result"].as_str()), (0, Some("unchanged")), "{out}");
    assert!(metric(&cg, "clawguard_policy_reloads_total{result=\"applied\"}") >= 1.0);
    assert!(cg.log().contains("policy reloaded"), "{}", cg.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn issue15_a_bad_edit_keeps_the_running_policy_and_says_where() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, &identities(""));
    let mut ws = connect(cg.addr).await;
    let running = policy(&cg)["version"].clone();
    let good = std::fs::read_to_string(&cg.policy_path).unwrap();
    let line = good.lines().count() + 2;
    std::fs::write(&cg.policy_path, format!("{good}\nmode = \"sometimes\"\n")).unwrap();
    let (code, out) = reload(&cg);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["result"], "rejected");
    let error = out["error"].as_str().unwrap();
    assert!(error.contains(&format!("policy.toml:{line}:")), "the error is located at line {line}: {error}");
    let shown = policy(&cg);
    assert_eq!(shown["version"], running, "the running policy stays");
    assert_eq!(shown["last_rejected"]["error"], error);
    assert_eq!(shown["last_rejected"]["version"].as_str().map(str::len), Some(64), "{shown}");
    assert_eq!(metric(&cg, "clawguard_policy_reload_failing"), 1.0);
    send_req(&mut ws, "2", "echo", json!({"still": "works"})).await;
    assert_eq!(next_json(&mut ws).await["payload"]["still"], "works");
    // Fixing the file clears the failure.
    std::fs::write(&cg.policy_path, &good).unwrap();
    assert_eq!(reload(&cg).1["result"], "unchanged");
    assert_eq!(metric(&cg, "clawguard_policy_reload_failing"), 0.0);
    assert!(policy(&cg)["last_rejected"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn issue15_a_connection_the_new_policy_no_longer_allows_is_closed_within_a_second() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, &identities(""));
    let mut ops = connect(cg.addr).await;
    let mut other = connect_from(cg.addr, "127.0.0.2", &["operator.read"]).await;
    // ops's ceiling drops below what its connection was granted (operator.admin): closed, with
    // no traffic on it; watcher's connection is untouched.
    let asked = Instant::now();
    reload_to(&cg, &rewrite(&cg, &identities("").replace("scopes = [\"operator.admin\"]", "scopes = [\"operator.read\"]")));
    let (code, reason) = expect_close(&mut ops).await;
    assert!(asked.elapsed() < Duration::from_secs(1), "closed {:?} after the reload", asked.elapsed());
    assert_eq!(code, 1008);
    assert!(reason.starts_with("policy changed"), "{reason}");
    // A read method of the gateway's table (watcher holds operator.read): answered.
    send_req(&mut other, "2", "health", json!({})).await;
    assert_eq!(next_json(&mut other).await["payload"]["method"], "health", "the other connection goes on untouched");
    // An identity that is gone: its connection too.
    let mut ops = connect_with(cg.addr, &["operator.read"]).await;
    reload_to(&cg, &rewrite(&cg, "[[identity]]\nname = \"watcher\"\nroles = [\"operator\"]\nscopes = [\"operator.read\"]\n[identity.match]\ncidr = [\"127.0.0.2/32\"]\n\n[[identity]]\nname = \"default\"\nscopes = []\n"));
    let (code, reason) = expect_close(&mut ops).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("policy changed"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn issue15_the_file_is_watched_through_a_configmap_swap_and_sighup_reloads() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, &identities(""));
    let dir = cg.policy_path.parent().unwrap().to_path_buf();
    let original = std::fs::read_to_string(&cg.policy_path).unwrap();
    // The layout the kubelet gives a ConfigMap volume: policy.toml -> ..data/policy.toml,
    // ..data -> ..<timestamp>. Same contents first: nothing to reload.
    std::fs::create_dir(dir.join("..2026_12_01_10_00_00.000000001")).unwrap();
    std::fs::write(dir.join("..2026_12_01_10_00_00.000000001/policy.toml"), &original).unwrap();
    std::os::unix::fs::symlink("..2026_12_01_10_00_00.000000001", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/policy.toml", dir.join("policy.toml.link")).unwrap();
    std::fs::rename(dir.join("policy.toml.link"), &cg.policy_path).unwrap();
    let version = policy(&cg)["version"].clone();
    // The kubelet's update: a new timestamped directory, a new ..data_tmp link, renamed over ..data.
    let edited = rewrite(&cg, &identities("deny_methods = [\"echo\"]"));
    std::fs::create_dir(dir.join("..2026_12_01_10_05_00.000000002")).unwrap();
    std::fs::write(dir.join("..2026_12_01_10_05_00.000000002/policy.toml"), &edited).unwrap();
    std::os::unix::fs::symlink("..2026_12_01_10_05_00.000000002", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_12_01_10_00_00.000000001")).unwrap();
    let start = Instant::now();
    while policy(&cg)["version"] == version {
        assert!(start.elapsed() < Duration::from_secs(5), "the ConfigMap swap was not picked up; log:\n{}", cg.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(policy(&cg)["version"].as_str(), Some(clawguard_policies::policy_version(edited.as_bytes()).as_str()));
    assert!(cg.log().contains("trigger=\"file\"") || cg.log().contains("trigger=file"), "{}", cg.log());
    // SIGHUP: reloads (here, back to the first contents, written through the same layout).
    std::fs::write(dir.join("..2026_12_01_10_05_00.000000002/policy.toml"), &original).unwrap();
    cg.signal("HUP");
    let start = Instant::now();
    while policy(&cg)["version"] != version {
        assert!(start.elapsed() < Duration::from_secs(5), "SIGHUP did not reload; log:\n{}", cg.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Whichever came first, SIGHUP asked for a reload (applied, or unchanged if the watcher
    // had already seen the file).
    while !cg.log().contains("sighup") {
        assert!(start.elapsed() < Duration::from_secs(5), "no reload on SIGHUP; log:\n{}", cg.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ws = connect(cg.addr).await;
    send_req(&mut ws, "2", "echo", json!({"back": true})).await;
    assert_eq!(next_json(&mut ws).await["payload"]["back"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn issue15_a_reload_under_a_thousand_open_connections_drops_none_still_allowed() {
    raise_fd_limit();
    let gw = FakeGateway::start().await;
    let lifted = "[websocket]\nmax_connections_per_ip = 0\nmax_connections_per_identity = 0\n[limits]\nip_connections_per_second = 0\nip_pending_handshakes = 0\nip_handshakes_per_minute = 0\n";
    let cg = Clawguard::start_with(gw.addr, &format!("{lifted}{}", identities("")), "max_connections_per_ip = 0\n");
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let addr = cg.addr;
        tasks.push(tokio::spawn(async move { connect(addr).await }));
    }
    let mut open = Vec::new();
    for t in tasks {
        open.push(t.await.expect("connection task"));
    }
    // The policy changes under all of them (a rule none of them breaks).
    reload_to(&cg, &rewrite(&cg, &identities("deny_methods = [\"cron.*\"]")));
    eprintln!("reload under 1,000 open connections: {} ms (read, validated, compiled, in force)", policy(&cg)["last_reload_ms"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, metrics) = http_get(cg.admin, "/metrics").unwrap();
    assert!(metrics.contains("clawguard_ws_connections_active 1000"), "a connection was dropped: {}", metrics.lines().filter(|l| l.contains("active")).collect::<Vec<_>>().join("\n"));
    for (i, ws) in open.iter_mut().enumerate() {
        send_req(ws, "2", "echo", json!({"conn": i})).await;
        assert_eq!(next_json(ws).await["payload"]["conn"], i);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn issue15_a_gateway_of_another_version_turns_readiness_off_when_the_policy_says_so() {
    let gw = FakeGateway::start_reporting_version("2099.1.1").await;
    // The default (log): counted, still ready.
    let logged = Clawguard::start(gw.addr, "");
    let _ws = connect(logged.addr).await;
    assert!(metric(&logged, "clawguard_gateway_version_mismatch_total") >= 1.0);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(http_get(logged.admin, "/readyz").unwrap().0, 200, "on_version_mismatch = \"log\" stays ready");
    // "unready": not ready from the next check on, until a reload names the version.
    let cg = Clawguard::start(gw.addr, "[gateway]\non_version_mismatch = \"unready\"\n");
    let _ws = connect(cg.addr).await;
    let start = Instant::now();
    let body = loop {
        let (status, body) = http_get(cg.admin, "/readyz").unwrap();
        if status == 503 {
            break body;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "still ready after a gateway of another version; log:\n{}", cg.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("2099.1.1") && body.contains("gateway.version"), "{body}");
    assert_eq!(metric(&cg, "clawguard_gateway_version_drift"), 1.0);
    let text = std::fs::read_to_string(&cg.policy_path).unwrap().replace("[gateway]\n", "[gateway]\nversion = \"2099.1.1\"\n");
    reload_to(&cg, &text);
    let start = Instant::now();
    while http_get(cg.admin, "/readyz").unwrap().0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(5), "not ready again after the reload; log:\n{}", cg.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&cg, "clawguard_gateway_version_drift"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn issue15_requests_for_unknown_methods_past_the_threshold_are_drift() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "[gateway]\non_version_mismatch = \"unready\"\nunknown_methods_per_minute = 3\n");
    let mut ws = connect(cg.addr).await;
    for i in 0..3 {
        send_req(&mut ws, &format!("u{i}"), "future.method", json!({})).await;
        next_json(&mut ws).await;
    }
    assert_eq!(metric(&cg, "clawguard_unknown_method_requests_total"), 3.0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(http_get(cg.admin, "/readyz").unwrap().0, 200, "three in a minute is within the threshold");
    send_req(&mut ws, "u3", "future.other", json!({})).await;
    next_json(&mut ws).await;
    let start = Instant::now();
    let body = loop {
        let (status, body) = http_get(cg.admin, "/readyz").unwrap();
        if status == 503 {
            break body;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "still ready past the threshold; log:\n{}", cg.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("future.other") && body.contains("unknown_methods_per_minute"), "{body}");
    assert_eq!(metric(&cg, "clawguard_gateway_version_drift"), 1.0);
    // A reload (the policy reviewed) starts a fresh window.
    let text = std::fs::read_to_string(&cg.policy_path).unwrap().replace("unknown_methods_per_minute = 3", "unknown_methods_per_minute = 30");
    reload_to(&cg, &text);
    let start = Instant::now();
    while http_get(cg.admin, "/readyz").unwrap().0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(5), "not ready again after the reload; log:\n{}", cg.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn issue15_build_readiness_answers_and_decision_time_are_metrics() {
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, "");
    let mut ws = connect(cg.addr).await;
    send_req(&mut ws, "2", "echo", json!({})).await;
    next_json(&mut ws).await;
    let _ = http_get(cg.addr, "/status/200");
    // POST to a path no route serves: refused by clawguard with 404.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(cg.addr).unwrap();
        s.write_all(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    }
    let start = Instant::now();
    while metric(&cg, "clawguard_ready ") != 1.0 {
        assert!(start.elapsed() < Duration::from_secs(5), "clawguard_ready never 1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The answer's count lands when pingora finishes the request, just after the client read it.
    while metric(&cg, "clawguard_http_responses_total{route=\"none\"") < 1.0 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, body) = http_get(cg.admin, "/metrics").unwrap();
    assert!(body.contains(&format!("clawguard_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))), "no build_info");
    assert!(metric(&cg, "clawguard_http_responses_total{route=\"allowed\",status_class=\"2xx\"}") >= 1.0, "{}", body.lines().filter(|l| l.contains("http_responses")).collect::<Vec<_>>().join("\n"));
    assert!(metric(&cg, "clawguard_http_responses_total{route=\"none\",status_class=\"4xx\"}") >= 1.0, "the unlisted path's 404: {}", body.lines().filter(|l| l.contains("http_responses")).collect::<Vec<_>>().join("\n"));
    assert!(metric(&cg, "clawguard_decision_duration_seconds_count{surface=\"http\"}") >= 2.0);
    assert!(metric(&cg, "clawguard_decision_duration_seconds_count{surface=\"websocket\"}") >= 2.0, "the connect and the echo were judged");
}
