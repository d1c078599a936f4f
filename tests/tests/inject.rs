//! Issue 16: the binary's `inject` / `uninject` commands, and `run --listen/--upstream/--admin`,
//! the addresses the injected sidecar is started with.

use clawguard_tests::client::*;
use clawguard_tests::fake_gateway::FakeGateway;
use clawguard_tests::harness::{clawguard_bin, free_port};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cases() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/inject")
}

fn clawguard(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(clawguard_bin()).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn issue16_inject_reads_files_directories_and_stdin_and_uninject_restores() {
    let dir = std::env::temp_dir().join(format!("clawguard-inject-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for case in ["deployment-gateway-run", "statefulset-env-port"] {
        std::fs::copy(cases().join(format!("{case}.yaml")), dir.join(format!("{case}.yaml"))).unwrap();
    }
    let (code, out, err) = clawguard(&["inject", dir.to_str().unwrap()], "");
    assert_eq!(code, 0, "{err}");
    let golden: Vec<String> = ["deployment-gateway-run", "statefulset-env-port"].iter().map(|c| std::fs::read_to_string(cases().join(format!("{c}.injected.yaml"))).unwrap()).collect();
    assert_eq!(out, golden.join("---\n"), "a directory's files in name order, as the golden files say");
    assert!(err.contains("Deployment/openclaw: injected") && err.contains("StatefulSet/openclaw: injected"), "{err}");
    // stdin, through uninject: the input back.
    let (code, back, _) = clawguard(&["uninject"], &out);
    assert_eq!(code, 0);
    let (_, normalised, _) = clawguard(&["uninject", dir.to_str().unwrap()], "");
    assert_eq!(back, normalised, "uninject restores what inject changed");
    // A refusal: exit 1, the reason, nothing on stdout.
    let (code, out, err) = clawguard(&["inject", cases().join("refused-host-network.yaml").to_str().unwrap()], "");
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains("hostNetwork"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn issue16_run_takes_the_deployment_addresses_from_its_command_line() {
    let gw = FakeGateway::start().await;
    let dir = std::env::temp_dir().join(format!("clawguard-run-addresses-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The policy names other addresses (and a gateway that is not there): the flags win.
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, "[server]\nlisten = [\"127.0.0.1:1\"]\n[upstream]\naddress = \"127.0.0.1:2\"\n[admin]\nlisten = \"127.0.0.1:3\"\n[[identity]]\nname = \"ops\"\nscopes = [\"operator.admin\"]\n[identity.match]\ncidr = [\"127.0.0.0/8\"]\n[[identity]]\nname = \"default\"\nscopes = []\n").unwrap();
    let (port, admin) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{port}");
    let admin_addr = format!("127.0.0.1:{admin}");
    let upstream = gw.addr.to_string();
    let mut child = Command::new(clawguard_bin())
        .args(["run", "--policy", policy.to_str().unwrap(), "--listen", &listen, "--upstream", &upstream, "--admin", &admin_addr])
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .unwrap();
    let admin_sock: std::net::SocketAddr = admin_addr.parse().unwrap();
    let start = Instant::now();
    while !matches!(http_get(admin_sock, "/readyz"), Ok((200, _))) {
        assert!(start.elapsed() < Duration::from_secs(20), "not ready: {}", std::fs::read_to_string(dir.join("log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut ws = connect(listen.parse().unwrap()).await;
    send_req(&mut ws, "2", "echo", json!({"through": "flags"})).await;
    assert_eq!(next_json(&mut ws).await["payload"]["through"], "flags");
    // A reload keeps them: the edited file still names the other addresses, and nothing needs a restart.
    let text = std::fs::read_to_string(&policy).unwrap().replace("[[identity]]\nname = \"default\"", "[[identity]]\nname = \"default\"\nmode = \"enforce\"");
    std::fs::write(&policy, text).unwrap();
    let (code, out, _) = clawguard(&["reload", "--admin", &admin_addr], "");
    assert_eq!(code, 0, "{out}");
    let (_, shown) = http_get(admin_sock, "/policy").unwrap();
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["needs_restart"], json!([]), "{shown}");
    send_req(&mut ws, "3", "echo", json!({"n": 3})).await;
    assert_eq!(next_json(&mut ws).await["payload"]["n"], 3);
    // Flags that collide are refused at start, naming them.
    let out = Command::new(clawguard_bin()).args(["run", "--policy", policy.to_str().unwrap(), "--listen", &listen, "--admin", &listen]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = child.kill();
    let _ = child.wait();
}
