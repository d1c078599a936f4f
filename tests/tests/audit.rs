//! Issue 14: the audit log written by the binary, read back by `clawguard audit` and by an
//! independent verifier (tests/audit/verify_audit.py); tampering, `kill -9`, a full disk and a
//! corpus of secrets driven through real requests.

use clawguard_tests::client::http_get;
use clawguard_tests::fake_gateway::FakeGateway;
use clawguard_tests::harness::{clawguard_bin, free_port, FAKE_GATEWAY_PATHS};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A clawguard whose directory outlives restarts.
struct Run {
    dir: PathBuf,
    policy: PathBuf,
    addr: SocketAddr,
    admin: SocketAddr,
    child: Option<Child>,
}

impl Run {
    fn new(name: &str, upstream: SocketAddr, audit: &str) -> Run {
        let dir = std::env::temp_dir().join(format!("clawguard-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (port, admin) = (free_port(), free_port());
        let policy = dir.join("policy.toml");
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nshutdown_grace_seconds = 1\n[upstream]\naddress = \"{upstream}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[logging]\nlevel = \"warn\"\n[limits]\nhttp_tools_invoke_per_minute = 100000\n{FAKE_GATEWAY_PATHS}\n[audit]\n{audit}\n"
        );
        std::fs::write(&policy, text).unwrap();
        Run { dir, policy, addr: ([127, 0, 0, 1], port).into(), admin: ([127, 0, 0, 1], admin).into(), child: None }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("clawguard.log")).unwrap();
        let child = Command::new(clawguard_bin()).args(["run", "--policy"]).arg(&self.policy).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while !matches!(http_get(self.admin, "/readyz"), Ok((200, _))) {
            assert!(start.elapsed() < Duration::from_secs(20), "clawguard did not become ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("clawguard.log")).unwrap_or_default()
    }

    fn stop(&mut self, signal: &str) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status();
        let start = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            assert!(start.elapsed() < Duration::from_secs(20), "clawguard did not stop on {signal}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn audit_dir(&self) -> PathBuf {
        self.dir.join("audit")
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut f: Vec<PathBuf> = std::fs::read_dir(self.audit_dir()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "jsonl")).collect();
        f.sort();
        f
    }

    fn text(&self) -> String {
        self.files().iter().map(|f| std::fs::read_to_string(f).unwrap()).collect()
    }

    fn metric(&self, name: &str) -> f64 {
        let (_, body) = http_get(self.admin, "/metrics").unwrap();
        body.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One HTTP request on its own connection; the status (0 when no answer came).
fn request(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else { return 0 };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}", body.len());
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// `clawguard audit verify --json`: exit code and report.
fn verify(paths: &[&Path], key: Option<&str>) -> (i32, Value) {
    let mut cmd = Command::new(clawguard_bin());
    cmd.args(["audit", "verify", "--json"]);
    if let Some(k) = key {
        cmd.args(["--key", k]);
    }
    let out = cmd.args(paths).output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("verify printed no JSON: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), report)
}

/// The independent verifier's exit code and report.
fn verify_python(paths: &[PathBuf]) -> (i32, Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("audit/verify_audit.py");
    let out = Command::new("python3").arg(script).args(paths).output().expect("python3");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("the Python verifier failed: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), report)
}

fn public_key(run: &Run) -> String {
    let out = Command::new(clawguard_bin()).args(["audit", "key", "--policy"]).arg(&run.policy).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().find_map(|l| l.strip_prefix("public_key ")).unwrap_or_else(|| panic!("no key printed: {text}")).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn issue14_a_log_written_by_the_binary_verifies_in_both_verifiers_and_is_searchable() {
    let gw = FakeGateway::start().await;
    let mut run = Run::new("verify", gw.addr, "checkpoint_every = 5\nrecord_allowed = \"all\"");
    run.start();
    for i in 0..12 {
        assert_eq!(request(run.addr, "POST", &format!("/nowhere/{i}"), "", ""), 404);
    }
    assert_eq!(request(run.addr, "POST", "/tools/invoke", "Content-Type: application/json\r\n", r#"{"tool":"exec","args":{"command":"id"}}"#), 403);
    // Refused before any identity is judged: an upgrade that is not a GET WebSocket.
    assert_eq!(request(run.addr, "POST", "/", "Upgrade: websocket\r\nConnection: Upgrade\r\n", ""), 400);
    run.stop("TERM");
    let files = run.files();
    let (code, report) = verify(&[&run.audit_dir()], Some(&public_key(&run)));
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["key_pinned"], true);
    assert_eq!(report["last_checkpoint"]["kind"], "seal");
    let (py, py_report) = verify_python(&files);
    assert_eq!((py, py_report["verdict"].clone()), (0, Value::from("clean")), "{py_report}");
    assert_eq!(py_report["records"], report["records"]);
    // Search by outcome, rule, text and the keyed hash of a value; export as CSV.
    let search = |args: &[&str]| -> Vec<Value> {
        let out = Command::new(clawguard_bin()).args(["audit", "search"]).args(args).arg(run.audit_dir()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    assert_eq!(search(&["--rule", "http-route", "--outcome", "denied"]).len(), 12);
    let tool = search(&["--text", "/tools/invoke"]);
    assert_eq!(tool.len(), 1);
    assert_eq!((tool[0]["category"].as_str(), tool[0]["details"]["tool"].as_str()), (Some("tool"), Some("exec")));
    assert_eq!(search(&["--category", "config", "--text", "policy.load"]).len(), 1);
    assert_eq!(search(&["--rule", "bad-upgrade", "--outcome", "denied"]).len(), 1);
    let out = Command::new(clawguard_bin()).args(["audit", "export", "--format", "csv"]).arg(run.audit_dir()).output().unwrap();
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.starts_with("seq,ts,type,category"), "{csv:.200}");
    assert_eq!(csv.lines().count() as u64, report["records"].as_u64().unwrap() + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn issue14_every_kind_of_tampering_with_a_written_log_is_classified_at_its_seq() {
    let gw = FakeGateway::start().await;
    let mut run = Run::new("tamper", gw.addr, "checkpoint_every = 4");
    run.start();
    for i in 0..10 {
        assert_eq!(request(run.addr, "POST", &format!("/nowhere/{i}"), "", ""), 404);
    }
    run.stop("TERM");
    let key = public_key(&run);
    let original = run.text();
    let lines: Vec<String> = original.lines().map(str::to_string).collect();
    let seq_of = |l: &str| serde_json::from_str::<Value>(l).unwrap()["seq"].as_u64().unwrap();
    let event = lines.iter().position(|l| l.contains("/nowhere/3")).unwrap();
    let tampered = run.dir.join("tampered.jsonl");
    let check = |lines: &[String], class: &str, seq: Option<u64>, code: i32| {
        std::fs::write(&tampered, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        let (got, report) = verify(&[&tampered], Some(&key));
        assert_eq!(got, code, "{class}: {report:#}");
        let found = if code == 1 { &report["problem"] } else { &report["incomplete"] };
        assert_eq!(found["class"], class, "{report:#}");
        if let Some(seq) = seq {
            assert_eq!(found["seq"], seq, "{class}: {report:#}");
        }
        // The independent verifier agrees that it is not clean.
        let (py, _) = verify_python(std::slice::from_ref(&tampered));
        assert_eq!(py, code, "the Python verifier on {class}");
    };
    let mut edited = lines.clone();
    edited[event] = edited[event].replace("\"denied\"", "\"success\"");
    check(&edited, "hash-mismatch", Some(seq_of(&lines[event])), 1);
    let mut deleted = lines.clone();
    deleted.remove(event);
    check(&deleted, "gap", Some(seq_of(&lines[event + 1])), 1);
    let mut swapped = lines.clone();
    swapped.swap(event, event + 1);
    check(&swapped, "reorder", Some(seq_of(&lines[event + 1])), 1);
    let mut duplicated = lines.clone();
    duplicated.insert(event + 1, lines[event].clone());
    check(&duplicated, "duplicate", Some(seq_of(&lines[event])), 1);
    // A forged line between two records, chained properly to the one before it.
    let mut forged = lines.clone();
    let mut rec: serde_json::Map<String, Value> = serde_json::from_str(&lines[event]).unwrap();
    let prev = rec["hash"].clone();
    rec.insert("prev".into(), prev.clone());
    rec.insert("seq".into(), Value::from(seq_of(&lines[event]) + 1));
    rec.insert("outcome".into(), Value::from("success"));
    rec.remove("hash");
    let hash = clawguard_filters::audit::chain::record_hash(&rec, prev.as_str().unwrap());
    rec.insert("hash".into(), Value::from(hash));
    forged.insert(event + 1, clawguard_filters::audit::chain::canonical(&Value::Object(rec.clone())));
    // Two successors of one record: the original next record still chains to it.
    check(&forged, "fork", Some(seq_of(&lines[event + 1])), 1);
    // A record replaced by the forged one: the next record's link breaks.
    let mut replaced = lines.clone();
    replaced[event + 1] = clawguard_filters::audit::chain::canonical(&Value::Object(rec));
    check(&replaced, "broken-link", Some(seq_of(&lines[event + 2])), 1);
    // Truncated: the seal (and more) cut off is incomplete; a partial last line likewise.
    check(&lines[..lines.len() - 2], "missing-seal", None, 2);
    std::fs::write(&tampered, &original[..original.len() - 30]).unwrap();
    assert_eq!(verify(&[&tampered], Some(&key)).1["incomplete"]["class"], "truncated-tail");
    // Re-chained from the edit on, without the key: the next checkpoint gives it away.
    let mut chain = clawguard_filters::audit::chain::Chain::default();
    let rechained: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut r: serde_json::Map<String, Value> = serde_json::from_str(l).unwrap();
            if i == event {
                r.insert("outcome".into(), Value::from("success"));
            }
            for k in ["seq", "prev", "hash"] {
                r.remove(k);
            }
            chain.append(r)
        })
        .collect();
    let checkpoint = lines.iter().enumerate().skip(event).find(|(_, l)| l.contains("\"type\":\"checkpoint\"")).map(|(i, _)| i).unwrap();
    check(&rechained, "signed-head-mismatch", Some(seq_of(&lines[checkpoint])), 1);
    // The untouched log still verifies.
    assert_eq!(verify(&[&run.audit_dir()], Some(&key)).0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn issue14_kill_9_under_load_twenty_times_leaves_crash_markers_and_loses_nothing_acknowledged() {
    let gw = FakeGateway::start().await;
    let mut run = Run::new("crash", gw.addr, "fsync = \"always\"\ncheckpoint_every = 50");
    let mut acknowledged = Vec::new();
    let mut n = 0u64;
    for round in 0..20 {
        run.start();
        // Load from four threads; the kill lands while requests are in flight.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (addr, stop) = (run.addr, stop.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut i = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let id = format!("r{round}w{w}n{i}");
                        if request(addr, "POST", &format!("/nowhere/{id}"), "", "") == 404 {
                            seen.push(id);
                        }
                        i += 1;
                    }
                    seen
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150 + (round * 37) % 200));
        run.stop("KILL");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in workers {
            let seen = w.join().unwrap();
            n += seen.len() as u64;
            acknowledged.extend(seen);
        }
    }
    run.start();
    run.stop("TERM");
    let (code, report) = verify(&[&run.audit_dir()], None);
    assert_eq!(code, 0, "after 20 crashes and a clean stop the log is intact and sealed: {report:#}");
    assert_eq!(report["crashes"].as_array().map(Vec::len), Some(20), "{report:#}");
    let text = run.text();
    let missing: Vec<&String> = acknowledged.iter().filter(|id| !text.contains(&format!("/nowhere/{id}\""))).collect();
    assert!(n > 100, "the load made only {n} requests");
    assert!(missing.is_empty(), "{} of {n} acknowledged refusals are not in the log, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    let (py, py_report) = verify_python(&run.files());
    assert_eq!((py, py_report["crashes"].as_u64()), (0, Some(20)), "{py_report}");
}

/// A small tmpfs, unmounted however the test ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(name: &str, size: &str) -> Tmpfs {
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&dir).status().unwrap().success(), "mount a tmpfs");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().nth(1).map(|u| u == "0")).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn issue14_a_full_disk_blocks_what_must_be_recorded_and_recovers_and_continue_counts_drops() {
    if !is_root() {
        // CI runs as root; a developer's unprivileged run cannot mount the small disk.
        eprintln!("SKIPPED issue14 full-disk test: mounting a tmpfs needs root");
        return;
    }
    let gw = FakeGateway::start().await;
    for mode in ["block", "continue"] {
        let tmpfs = Tmpfs::mount(&format!("clawguard-audit-tmpfs-{mode}-{}", std::process::id()), "48k");
        let disk = tmpfs.0.clone();
        let audit = format!("dir = \"{}\"\non_failure = \"{mode}\"\nrecord_allowed = \"all\"\nsigning_key = \"file:signing.key\"", disk.display());
        let mut run = Run::new(&format!("disk-{mode}"), gw.addr, &audit);
        run.start();
        // Refusals (each record about 1 KiB) until the disk is full.
        let start = Instant::now();
        while run.metric("clawguard_audit_healthy") == 1.0 {
            assert!(start.elapsed() < Duration::from_secs(30), "the log never filled the disk:\n{}", run.log());
            for i in 0..10 {
                request(run.addr, "POST", &format!("/nowhere/fill{i}"), "", "");
            }
        }
        let allowed = request(run.addr, "GET", "/status/200", "", "");
        if mode == "block" {
            assert_eq!(allowed, 503, "an allowed request that must be recorded is refused while the log cannot write");
            let start = Instant::now();
            while matches!(http_get(run.admin, "/readyz"), Ok((200, _))) {
                assert!(start.elapsed() < Duration::from_secs(6), "still ready while the log cannot write");
                std::thread::sleep(Duration::from_millis(100));
            }
        } else {
            assert_eq!(allowed, 200, "continue: requests go on");
            // The writer drains its queue every 10 ms: the drop is counted then.
            let start = Instant::now();
            while run.metric("clawguard_audit_dropped_total") < 1.0 {
                assert!(start.elapsed() < Duration::from_secs(5), "drops are counted");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        assert!(run.metric("clawguard_audit_write_errors_total") >= 1.0);
        // More room: the writer finishes what was pending and the log writes again.
        assert!(Command::new("mount").args(["-o", "remount,size=4m"]).arg(&disk).status().unwrap().success());
        let start = Instant::now();
        while run.metric("clawguard_audit_healthy") != 1.0 {
            assert!(start.elapsed() < Duration::from_secs(10), "the log did not recover:\n{}", run.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(request(run.addr, "GET", "/status/200", "", ""), 200, "{mode}: allowed again once the log writes");
        run.stop("TERM");
        let (code, report) = verify(&[&disk], None);
        assert_eq!(code, 0, "{mode}: the chain is whole and sealed after the disk filled: {report:#}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn issue14_secrets_in_real_requests_never_reach_the_log_files() {
    use clawguard_tests::client::{next_json, open, send_req};
    let gw = FakeGateway::start().await;
    let mut run = Run::new("redact", gw.addr, "record_allowed = \"all\"");
    run.start();
    // Secrets with a recognisable shape may appear anywhere, even in a path or a command.
    let shaped = [
        "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "AKIAIOSFODNN7EXAMPLE",
        "xoxb-1234567890-abcdefghijklmn",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ];
    // Secrets without one appear where clients send them: auth headers, token fields, query.
    let token = "gw-shared-token-0123456789abcdef";
    let device_token = "device-token-9f8e7d6c5b4a3f2e1d";
    let signature = "sig-5e6f7a8b9c0d1e2f3a4b5c6d";
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAprivatekeymaterial\n-----END RSA PRIVATE KEY-----";
    for s in shaped {
        request(run.addr, "POST", &format!("/nowhere/{s}"), &format!("Authorization: Bearer {s}\r\n"), "");
        let body = serde_json::json!({"tool": "exec", "args": {"command": format!("curl -H 'Authorization: Bearer {s}' https://x {s}")}}).to_string();
        request(run.addr, "POST", "/tools/invoke", "Content-Type: application/json\r\n", &body);
    }
    request(run.addr, "GET", "/status/200", &format!("Authorization: Bearer {token}\r\nX-OpenClaw-Token: {token}\r\n"), "");
    request(run.addr, "POST", &format!("/hooks/agent?token={token}"), "Content-Type: application/json\r\n", r#"{"message":"hi"}"#);
    let body = serde_json::json!({"tool": "sessions_spawn", "args": {"password": token, "key": pem}}).to_string();
    request(run.addr, "POST", "/tools/invoke", &format!("Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"), &body);
    // Over the WebSocket: a connect with the token, a device token and a signature, then
    // requests that are refused with secrets in their params.
    let mut ws = open(run.addr).await;
    let challenge = next_json(&mut ws).await;
    let nonce = challenge["payload"]["nonce"].clone();
    send_req(&mut ws, "c", "connect", serde_json::json!({"minProtocol": 4, "maxProtocol": 4, "scopes": ["operator.read"], "auth": {"token": token, "deviceToken": device_token}, "device": {"id": "dev-1", "publicKey": "pk", "signature": signature, "signedAt": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64, "nonce": nonce}})).await;
    let _hello = next_json(&mut ws).await;
    send_req(&mut ws, "r1", "config.apply", serde_json::json!({"raw": format!("{{\"gateway\":{{\"auth\":{{\"token\":\"{token}\"}}}}}}")})).await;
    let _ = next_json(&mut ws).await;
    send_req(&mut ws, "r2", "device.token.rotate", serde_json::json!({"deviceId": "dev-1", "role": "operator", "scopes": ["operator.admin"], "token": device_token})).await;
    let _ = next_json(&mut ws).await;
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.stop("TERM");
    let mut bytes = Vec::new();
    for f in run.files() {
        bytes.extend(std::fs::read(f).unwrap());
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("/nowhere/") && text.contains("config.apply") && text.contains("ws.connect"), "the requests were recorded:\n{text:.2000}");
    let mut needles: Vec<&str> = shaped.to_vec();
    needles.extend([token, device_token, signature, "MIIEowIBAAKCAQEAprivatekeymaterial"]);
    for s in needles {
        // No distinctive part of any secret is anywhere in the bytes.
        let core = &s[s.len() / 4..s.len() * 3 / 4];
        assert!(!text.contains(core), "{core:?} (from {s:?}) is in the audit log");
    }
    assert_eq!(verify(&[&run.audit_dir()], None).0, 0);
}
