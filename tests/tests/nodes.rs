//! Node pinning through the running proxy (issue 4): the pin store on disk, edited by
//! `clawguard nodes` while clawguard runs, corrupt stores, and revocation of live nodes.

use clawguard_filters::nodes::PinStore;
use clawguard_tests::client::{expect_close, next_json, open, send_req, Ws};
use clawguard_tests::fake_gateway::FakeGateway;
use clawguard_tests::harness::{clawguard_bin, free_port, Clawguard};
use futures_util::SinkExt;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clawguard-nodes-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Loopback clients may be operators (admin) and nodes; the store is `store`.
fn policy(store: &Path) -> String {
    format!(
        "[nodes]\nstore = \"{}\"\n[[identity]]\nname = \"root\"\nroles = [\"operator\", \"node\"]\nscopes = [\"operator.admin\"]\n[identity.match]\ncidr = [\"127.0.0.0/8\"]\n[[identity]]\nname = \"default\"\nscopes = []\n",
        store.display()
    )
}

fn nodes_cli(store: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(clawguard_bin()).arg("nodes").args(args).arg("--store").arg(store).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("panicked"), "{text}");
    (out.status.success(), text)
}

fn read_store(store: &Path) -> PinStore {
    PinStore::decode(&std::fs::read(store).expect("the store exists")).expect("the store is never corrupt")
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

static SIGNATURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A node connecting through clawguard declaring `commands`, once the handshake is done.
async fn node(addr: std::net::SocketAddr, device: &str, commands: &[&str]) -> Ws {
    let mut ws = open(addr).await;
    let challenge = next_json(&mut ws).await;
    let nonce = challenge["payload"]["nonce"].as_str().unwrap().to_string();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let sig = format!("sig-{}", SIGNATURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let params = json!({"minProtocol":4,"maxProtocol":4,"client":{"id":"node-host","mode":"node","platform":"linux","displayName":"test-node"},
        "role":"node","scopes":[],"caps":["system"],"commands":commands,
        "device":{"id":device,"publicKey":"k","signature":sig,"signedAt":now,"nonce":nonce}});
    send_req(&mut ws, "1", "connect", params).await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["payload"]["type"], "hello-ok", "{hello}");
    ws
}

async fn operator(addr: std::net::SocketAddr) -> Ws {
    clawguard_tests::client::connect(addr).await
}

async fn invoke(ws: &mut Ws, id: &str, device: &str, command: &str) -> serde_json::Value {
    send_req(ws, id, "node.invoke", json!({"nodeId":device,"command":command,"params":{},"idempotencyKey":id})).await;
    next_json(ws).await
}

#[test]
fn issue4_a_corrupt_pin_store_stops_startup_with_a_clear_error() {
    let dir = temp_dir("corrupt");
    let store = dir.join("pins.json");
    let mut bytes = PinStore::default().encode();
    let in_hash = String::from_utf8_lossy(&bytes).find("sha256:").unwrap() + 10;
    bytes[in_hash] ^= 0x01;
    for (name, content) in [("flipped", bytes.clone()), ("truncated", bytes[..bytes.len() / 2].to_vec())] {
        std::fs::write(&store, &content).unwrap();
        let p = dir.join(format!("{name}.toml"));
        std::fs::write(&p, format!("[server]\nlisten = [\"127.0.0.1:{}\"]\n[admin]\nlisten = \"127.0.0.1:{}\"\n{}", free_port(), free_port(), policy(&store))).unwrap();
        let out = Command::new(clawguard_bin()).args(["run", "--policy"]).arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: a corrupt store must stop clawguard");
        assert!(err.contains(&store.display().to_string()) && err.contains("pin store"), "{name}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue4_a_running_proxy_follows_concurrent_cli_edits_and_revokes_live_nodes() {
    let gw = FakeGateway::start().await;
    let dir = temp_dir("live");
    let store = dir.join("pins.json");
    let cg = Clawguard::start(gw.addr, &policy(&store));

    // An unknown node: pending; nothing invocable.
    let node_ws = node(cg.addr, "dev-1", &["system.which", "system.run"]).await;
    wait_for("the pending request on disk", || std::fs::read(&store).ok().and_then(|b| PinStore::decode(&b).ok()).is_some_and(|s| s.nodes.get("dev-1").is_some_and(|r| r.pending.is_some())));
    let mut op = operator(cg.addr).await;
    let r = invoke(&mut op, "i1", "dev-1", "system.which").await;
    assert_eq!(r["error"]["details"]["rule"], "node-pin", "{r}");
    drop(node_ws);

    // Operators approve with the CLI while nodes keep reconnecting through the proxy (each
    // connect is a write by the proxy): no edit is lost, the file is never corrupt.
    let addr = cg.addr;
    let churn = tokio::spawn(async move {
        for i in 0..15 {
            let ws = node(addr, &format!("churn-{i}"), &["system.which"]).await;
            drop(ws);
        }
    });
    for i in 0..15 {
        let commands = format!("system.which,extra.{i}");
        let store = store.clone();
        let (ok, text) = tokio::task::spawn_blocking(move || nodes_cli(&store, &["approve", "dev-1", "--commands", &commands])).await.unwrap();
        assert!(ok, "{text}");
    }
    churn.await.unwrap();
    let on_disk = read_store(&store);
    assert_eq!(on_disk.pin("dev-1").unwrap().commands.iter().cloned().collect::<Vec<_>>(), ["extra.14", "system.which"], "the last CLI approval stands");
    wait_for("every churned node recorded", || read_store(&store).nodes.keys().filter(|k| k.starts_with("churn-")).count() == 15);

    // The running proxy follows the file: system.which passes, system.run stays refused.
    let start = Instant::now();
    loop {
        let r = invoke(&mut op, &format!("w{}", start.elapsed().as_millis()), "dev-1", "system.which").await;
        if r["ok"] == true {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the proxy never picked up the approval: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = invoke(&mut op, "i2", "dev-1", "system.run").await;
    assert_eq!(r["error"]["code"], "FORBIDDEN", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("outside node dev-1's approved command set"), "{r}");

    // A connected node whose pin is revoked is closed with 1008 within a second.
    let mut node_ws = node(cg.addr, "dev-1", &["system.which"]).await;
    let (ok, text) = nodes_cli(&store, &["revoke", "dev-1"]);
    assert!(ok, "{text}");
    let revoked_at = Instant::now();
    let (code, reason) = expect_close(&mut node_ws).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("revoked"), "{reason}");
    assert!(revoked_at.elapsed() < Duration::from_secs(1), "closed after {:?}", revoked_at.elapsed());
    let _ = node_ws.send(Message::Close(None)).await;
    let r = invoke(&mut op, "i3", "dev-1", "system.which").await;
    assert_eq!(r["error"]["details"]["rule"], "node-pin", "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn issue13_kill_9_loses_no_acknowledged_approval_and_learned_records_within_the_stated_window() {
    let gw = FakeGateway::start().await;
    let dir = temp_dir("kill9");
    let store = dir.join("pins.json");
    let mut cg = Clawguard::start(gw.addr, &policy(&store));
    // dev-1 pending, so the CLI can approve it.
    drop(node(cg.addr, "dev-1", &["system.which", "system.run"]).await);
    wait_for("the pending request on disk", || std::fs::read(&store).ok().and_then(|b| PinStore::decode(&b).ok()).is_some_and(|s| s.nodes.contains_key("dev-1")));

    // Nodes keep connecting (the proxy learns a record per node) while operators approve.
    let addr = cg.addr;
    let learned = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, Instant)>::new()));
    let churn = {
        let learned = learned.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let name = format!("learn-{i}");
                let Ok(Ok(ws)) = tokio::time::timeout(Duration::from_secs(2), tokio::spawn(async move { node(addr, &format!("learn-{i}"), &["system.which"]).await })).await else { break };
                learned.lock().unwrap().push((name, Instant::now()));
                drop(ws);
            }
        })
    };
    let mut approved = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let commands = format!("system.which,extra.{}", approved.len());
        let (s, c) = (store.clone(), commands.clone());
        let (ok, _) = tokio::task::spawn_blocking(move || nodes_cli(&s, &["approve", "dev-1", "--commands", &c])).await.unwrap();
        if ok {
            approved.push(commands);
        }
    }
    // kill -9 while both keep writing.
    let _ = Command::new("kill").args(["-KILL", &cg.pid().to_string()]).status();
    let killed_at = Instant::now();
    cg.wait(Duration::from_secs(5)).expect("killed");
    churn.abort();

    let on_disk = read_store(&store);
    let last = approved.last().expect("approvals were acknowledged");
    let pinned: Vec<String> = on_disk.pin("dev-1").unwrap().commands.iter().cloned().collect();
    assert_eq!(pinned, vec![format!("extra.{}", approved.len() - 1), "system.which".to_string()], "the last acknowledged approval ({last}) stands");
    // Every record learned more than the stated window (1 s) before the kill is on disk.
    let learned = learned.lock().unwrap().clone();
    assert!(learned.len() > 3, "nodes connected during the run ({})", learned.len());
    let lost: Vec<&String> = learned.iter().filter(|(_, at)| killed_at.duration_since(*at) > Duration::from_secs(1)).map(|(n, _)| n).filter(|n| !on_disk.nodes.contains_key(n.as_str())).collect();
    assert!(lost.is_empty(), "learned records lost beyond the window: {lost:?}");

    // A restart removes what a killed writer left and reads the store.
    let leftovers = std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).count();
    let cg2 = Clawguard::start(gw.addr, &policy(&store));
    let after = std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).count();
    assert_eq!(after, 0, "{leftovers} temporary files before the restart, {after} after");
    drop(cg2);
}
