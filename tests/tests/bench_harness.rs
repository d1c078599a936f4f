//! Issue 17: the load harness proves what it measured. `clawguard-load ws --admin` fails a run
//! in which clawguard did anything but forward (a refusal, or a would-refusal in dry-run that
//! the client cannot see in its answers), and passes one where every message was forwarded.

use clawguard_tests::harness::{clawguard_bin, free_port, Clawguard};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The benchmark's identity and lifted budgets, as `benches/run.sh` runs clawguard.
const BENCH_POLICY: &str = "[limits]\nconnection_messages_per_second = 1000000000\nconnection_messages_burst = 1000000000\n\
connection_bytes_per_second = 1000000000\nconnection_bytes_burst = 1000000000\n\
[[identity]]\nname = \"bench\"\nroles = [\"operator\"]\nscopes = [\"operator.read\", \"operator.write\"]\nsessions = [\"**\"]\n\
[identity.match]\ncidr = [\"127.0.0.0/8\"]\n[[identity]]\nname = \"default\"\nscopes = []\n";

fn load_bin() -> std::path::PathBuf {
    let bin = clawguard_bin().with_file_name("clawguard-load");
    assert!(bin.exists(), "{} is missing: run `cargo build --workspace --bins` first", bin.display());
    bin
}

/// The harness's stand-in gateway, killed when dropped.
struct Upstream(Child, SocketAddr);

impl Upstream {
    fn start() -> Upstream {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = Command::new(load_bin()).args(["upstream", "--listen", &addr.to_string()]).stdout(Stdio::null()).spawn().expect("spawn clawguard-load upstream");
        let up = Upstream(child, addr);
        let start = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "the stand-in upstream did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        up
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One second of pipelined load through `cg` on two connections, checked against its metrics.
fn load(cg: &Clawguard) -> Output {
    Command::new(load_bin())
        .args(["ws", "--url", &format!("ws://{}/", cg.addr), "--conns", "2", "--seconds", "1", "--depth", "4", "--admin", &cg.admin.to_string()])
        .output()
        .expect("run clawguard-load ws")
}

#[test]
fn issue17_the_load_harness_passes_a_forwarded_run_and_fails_one_clawguard_refused_or_only_recorded() {
    let up = Upstream::start();
    let cg = Clawguard::start(up.1, BENCH_POLICY);
    let ok = load(&cg);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "a run of forwarded requests passes: {stdout} {}", String::from_utf8_lossy(&ok.stderr));
    let figures: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the load client prints JSON");
    let requests = figures["requests"].as_u64().unwrap();
    assert!(requests > 10, "{figures}");
    assert_eq!(figures["forwarded"], serde_json::json!({ "c2s": requests + 2, "s2c": requests + 4, "decisions": 0 }), "{figures}");

    // clawguard refuses every request itself: the client sees answers that are not the upstream's.
    let deny = "[[frame_rule]]\nname = \"no-history\"\ndirection = \"client\"\nmatch = [\"chat.history\"]\naction = \"deny\"\n";
    let refusing = Clawguard::start(up.1, &format!("{BENCH_POLICY}{deny}"));
    let refused = load(&refusing);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("not the upstream's"), "a run clawguard refused fails: {stderr}");

    // The same rule in dry-run: every answer is the upstream's, yet clawguard recorded a
    // would-refusal for each request; only its metrics show it, and the run fails on them.
    let recording = Clawguard::start(up.1, &format!("{BENCH_POLICY}{deny}mode = \"dry-run\"\n"));
    let recorded = load(&recording);
    let stderr = String::from_utf8_lossy(&recorded.stderr);
    assert!(!recorded.status.success() && stderr.contains("did not forward exactly what was sent"), "a run with other verdicts fails: {stderr}");
}
