//! Issue 15: secret references (`env:NAME`, `file:PATH`) in the real binary. A reference that
//! cannot be read fails `check` (and so start and reload) at its key without the value; a token
//! file rotated under a running clawguard applies without a restart, and the connection that
//! used the old token is closed; no resolved value is logged or served.

use clawguard_tests::client::*;
use clawguard_tests::fake_gateway::FakeGateway;
use clawguard_tests::harness::{clawguard_bin, Clawguard};
use futures_util::SinkExt;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clawguard-secrets-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An identity `ops` (admin) recognised by `token`, and a default with nothing.
fn identities(token: &str) -> String {
    format!("[[identity]]\nname = \"ops\"\nroles = [\"operator\"]\nscopes = [\"operator.admin\"]\n[identity.match]\ntoken = [{token:?}]\n\n[[identity]]\nname = \"default\"\nscopes = []\n")
}

fn check(policy: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let out = std::process::Command::new(clawguard_bin()).arg("check").arg(policy).env_remove("CG_TEST_OPS_TOKEN").env_remove("CG_TEST_SIGNING_KEY").envs(env.iter().copied()).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn issue15_an_unreadable_secret_reference_fails_the_load_at_its_key_without_the_value() {
    let dir = temp_dir("check");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, format!("[audit]\nenabled = false\n\n{}", identities("env:CG_TEST_OPS_TOKEN"))).unwrap();
    let (ok, out) = check(&policy, &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("policy.toml:9:") && out.contains("match.token") && out.contains("CG_TEST_OPS_TOKEN is not set"), "located, and says what is missing: {out}");
    let (ok, out) = check(&policy, &[("CG_TEST_OPS_TOKEN", "s3cret-value-never-printed")]);
    assert!(ok, "{out}");
    assert!(!out.contains("s3cret-value-never-printed"), "{out}");

    std::fs::write(&policy, format!("[audit]\nenabled = false\n\n{}", identities("file:ops.token"))).unwrap();
    let (ok, out) = check(&policy, &[]);
    assert!(!ok && out.contains("ops.token") && out.contains("cannot read"), "{out}");
    std::fs::write(dir.join("ops.token"), "\n").unwrap();
    let (ok, out) = check(&policy, &[]);
    assert!(!ok && out.contains("empty"), "an empty secret is an error, not a match for an empty token: {out}");

    // The audit keys: an env reference that is not set, and a key file others can read.
    std::fs::write(&policy, "[audit]\nsigning_key = \"env:CG_TEST_SIGNING_KEY\"\n").unwrap();
    let (ok, out) = check(&policy, &[]);
    assert!(!ok && out.contains("policy.toml:2:") && out.contains("audit.signing_key") && out.contains("CG_TEST_SIGNING_KEY"), "{out}");
    let key = "42".repeat(32);
    let (ok, out) = check(&policy, &[("CG_TEST_SIGNING_KEY", &key)]);
    assert!(ok && !out.contains(&key), "{out}");
    std::fs::write(dir.join("enc.key"), &key).unwrap();
    std::fs::write(&policy, "[audit]\nsigning_key = \"env:CG_TEST_SIGNING_KEY\"\nencrypt_fields = [\"command\"]\nencryption_key = \"file:enc.key\"\n").unwrap();
    let (ok, out) = check(&policy, &[("CG_TEST_SIGNING_KEY", &key)]);
    assert!(!ok && out.contains("audit.encryption_key") && out.contains("readable by others") && !out.contains(&key), "{out}");
}

/// Opens a WebSocket and sends `connect` with `token`; the connection after `hello-ok`.
async fn connect_with_token(addr: std::net::SocketAddr, token: &str) -> Ws {
    let mut ws = open(addr).await;
    assert_eq!(next_json(&mut ws).await["event"], "connect.challenge");
    let connect = json!({"type":"req","id":"1","method":"connect","params":{"minProtocol":4,"maxProtocol":4,"scopes":["operator.admin"],"auth":{"token":token}}});
    ws.send(Message::text(connect.to_string())).await.unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["payload"]["type"], "hello-ok", "{hello}");
    ws
}

#[tokio::test(flavor = "multi_thread")]
async fn issue15_a_rotated_token_file_applies_live_and_closes_the_old_tokens_connection() {
    let dir = temp_dir("rotate");
    let token_file = dir.join("ops.token");
    std::fs::write(&token_file, "first-token-aaaa\n").unwrap();
    let gw = FakeGateway::start().await;
    let cg = Clawguard::start(gw.addr, &identities(&format!("file:{}", token_file.display())));
    let mut old = connect_with_token(cg.addr, "first-token-aaaa").await;
    send_req(&mut old, "2", "echo", json!({"n": 1})).await;
    assert_eq!(next_json(&mut old).await["payload"]["n"], 1, "the token makes it ops (admin)");

    // Rotated the way a Kubernetes Secret or an operator does it: a new file renamed into place.
    let tmp = dir.join("ops.token.new");
    std::fs::write(&tmp, "second-token-bbbb").unwrap();
    std::fs::rename(&tmp, &token_file).unwrap();
    let rotated = Instant::now();
    let (code, reason) = expect_close(&mut old).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("policy changed") && reason.contains("no longer identify"), "{reason}");
    assert!(rotated.elapsed() < Duration::from_secs(4), "the watcher saw the token file within its poll: {:?}", rotated.elapsed());

    let mut new = connect_with_token(cg.addr, "second-token-bbbb").await;
    send_req(&mut new, "2", "echo", json!({"n": 2})).await;
    assert_eq!(next_json(&mut new).await["payload"]["n"], 2, "the new token is ops");
    let mut stale = connect_with_token(cg.addr, "first-token-aaaa").await;
    send_req(&mut stale, "2", "echo", json!({"n": 3})).await;
    let refused = next_json(&mut stale).await;
    assert_eq!(refused["ok"], false, "the old token is only the default identity now: {refused}");

    let (_, shown) = http_get(cg.admin, "/policy").unwrap();
    let (_, metrics) = http_get(cg.admin, "/metrics").unwrap();
    for secret in ["first-token-aaaa", "second-token-bbbb"] {
        assert!(!cg.log().contains(secret) && !shown.contains(secret) && !metrics.contains(secret), "{secret} is never logged or served");
    }
    assert!(metrics.contains("clawguard_policy_reloads_total{result=\"applied\"} 1"), "{metrics}");
}
