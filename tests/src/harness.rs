//! A real `clawguard` process on ephemeral ports, with its own policy file.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `clawguard` binary built next to the test executable
/// (`cargo build --bins` first), or `$CLAWGUARD_BIN`.
pub fn clawguard_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CLAWGUARD_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target profile directory");
    let bin = dir.join("clawguard");
    assert!(bin.exists(), "{} is missing: run `cargo build --bins` before the integration tests", bin.display());
    bin
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("ephemeral port").port()
}

/// Raises this process's open-file limit (1,000 connections need ~2,000 descriptors here).
pub fn raise_fd_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

/// Identities giving loopback clients every scope (admin by name).
pub const LOOPBACK_ADMIN: &str = "[[identity]]\nname = \"loopback-admin\"\nroles = [\"operator\", \"node\"]\nscopes = [\"operator.admin\"]\n[identity.match]\ncidr = [\"127.0.0.0/8\"]\n\n[[identity]]\nname = \"default\"\nscopes = []\n";

/// The fake gateway's own test endpoints, which are no routes of the real gateway's: allowed
/// unless a test brings its own `[http]` section.
pub const FAKE_GATEWAY_PATHS: &str = "[http]\nallow_paths = [\"/status/*\", \"/headers\", \"/sha256\", \"/bytes\", \"/sse\"]\n";

/// A running clawguard.
pub struct Clawguard {
    /// The plaintext listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The policy file.
    pub policy_path: PathBuf,
    child: Child,
    dir: PathBuf,
}

impl Clawguard {
    /// Starts clawguard in front of `upstream`. `extra` is appended to the policy
    /// (sections other than `[server]`, `[upstream]` and `[admin]`).
    pub fn start(upstream: SocketAddr, extra: &str) -> Clawguard {
        Self::start_with(upstream, extra, "")
    }

    /// As [`Clawguard::start`], with extra keys for the `[server]` section.
    pub fn start_with(upstream: SocketAddr, extra: &str, server_extra: &str) -> Clawguard {
        let cg = Self::spawn(upstream, extra, server_extra);
        cg.wait_for("/readyz");
        cg
    }

    /// Starts clawguard and waits only until it is live (for an upstream that is down).
    pub fn start_live(upstream: SocketAddr, extra: &str) -> Clawguard {
        let cg = Self::spawn(upstream, extra, "");
        cg.wait_for("/livez");
        // The admin service starts before the proxy listener: wait for that too.
        let start = Instant::now();
        while std::net::TcpStream::connect(cg.addr).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "the proxy listener never came up; log:\n{}", cg.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        cg
    }

    fn spawn(upstream: SocketAddr, extra: &str, server_extra: &str) -> Clawguard {
        let port = free_port();
        let admin_port = free_port();
        let dir = std::env::temp_dir().join(format!("clawguard-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // Transport tests want plain forwarding: loopback clients get every scope, unless the
        // test brings its own identities.
        let identities = if extra.contains("[[identity]]") { "" } else { LOOPBACK_ADMIN };
        let http = if extra.contains("[http]") { "" } else { FAKE_GATEWAY_PATHS };
        let policy = format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nshutdown_grace_seconds = 3\n{server_extra}\n[upstream]\naddress = \"{upstream}\"\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n[logging]\nlevel = \"warn,clawguard=debug\"\n{extra}\n{http}\n{identities}\n"
        );
        let policy_path = dir.join("policy.toml");
        std::fs::File::create(&policy_path).and_then(|mut f| f.write_all(policy.as_bytes())).expect("write policy");
        let log = std::fs::File::create(dir.join("clawguard.log")).expect("log file");
        let child = Command::new(clawguard_bin())
            .args(["run", "--policy"])
            .arg(&policy_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn clawguard");
        Clawguard { addr: ([127, 0, 0, 1], port).into(), admin: ([127, 0, 0, 1], admin_port).into(), policy_path, child, dir }
    }

    /// Waits until the admin `path` answers 200 (`/readyz`: listeners up and the upstream ready).
    fn wait_for(&self, path: &str) {
        let start = Instant::now();
        // Generous: on a loaded two-core CI machine a start-up has taken over 20 s.
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok((200, _)) = crate::client::http_get(self.admin, path) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("clawguard did not answer 200 on {path}; log:\n{}", self.log());
    }

    /// clawguard's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("clawguard.log")).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process, KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
    }

    /// Sends a signal by name (`HUP`, `TERM`, …).
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).status();
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
    }

    /// Waits for the process to exit; its exit status.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Clawguard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
