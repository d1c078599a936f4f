//! `clawguard doctor`: gathers what the deployment audit reads (the policy as `clawguard
//! check` loads it, the gateway's config, this network namespace's listening sockets, probes
//! of the gateway's port on the host's own addresses, file modes, the audit log's verify,
//! `openclaw security audit --json`) and prints the report of `clawguard_doctor`. Read-only:
//! it opens TCP connections to the gateway's port and runs the openclaw CLI, nothing else.

use clawguard_doctor::{FileFacts, FileRole, Gathered, Listener, Probe, Severity};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

/// `clawguard doctor` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// clawguard's policy (default: the embedded policy).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The gateway's config (default: $OPENCLAW_CONFIG_PATH, else $OPENCLAW_STATE_DIR/openclaw.json, else ~/.openclaw/openclaw.json).
    #[arg(long)]
    gateway_config: Option<PathBuf>,
    /// Print the report as JSON (schema clawguard-doctor/1).
    #[arg(long, conflicts_with = "sarif")]
    json: bool,
    /// Print the report as SARIF 2.1.0.
    #[arg(long)]
    sarif: bool,
    /// Exit 1 when a finding not accepted is at least this severe (critical, high, medium, low, info).
    #[arg(long, default_value = "critical", value_parser = parse_severity)]
    fail_on: Severity,
    /// The openclaw CLI to run `openclaw security audit --json` with (default: `openclaw` on PATH).
    #[arg(long)]
    openclaw: Option<PathBuf>,
    /// Do not run `openclaw security audit`.
    #[arg(long, conflicts_with = "openclaw")]
    no_openclaw: bool,
    /// The gateway version that answers clawguard, when known (compared with gateway.version).
    #[arg(long)]
    gateway_version: Option<String>,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s).ok_or_else(|| format!("{s:?}: expected one of critical, high, medium, low, info"))
}

/// Runs `clawguard doctor`: 0 when nothing at or above `--fail-on` is open, 1 otherwise, 2 when
/// the report cannot be printed.
pub fn run(args: Args) -> ExitCode {
    let facts = gather(&args);
    let report = clawguard_doctor::audit(&facts);
    let text = if args.json {
        serde_json::to_string_pretty(&report.to_json()).map(|s| s + "\n")
    } else if args.sarif {
        serde_json::to_string_pretty(&report.to_sarif(env!("CARGO_PKG_VERSION"))).map(|s| s + "\n")
    } else {
        Ok(report.to_table())
    };
    let written = text.map_err(std::io::Error::other).and_then(|t| std::io::stdout().lock().write_all(t.as_bytes()));
    if let Err(e) = written {
        let _ = writeln!(std::io::stderr(), "clawguard doctor: cannot print the report: {e}");
        return ExitCode::from(2);
    }
    if report.fails(args.fail_on) { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

fn gather(args: &Args) -> clawguard_doctor::Facts {
    let mut facts = clawguard_doctor::Facts { policy_path: Some(args.policy.as_ref().map_or_else(|| "<embedded>".to_string(), |p| p.display().to_string())), ..Default::default() };
    // Without /proc/self the owner comparison is skipped (and only world-writable counts as
    // writable): fewer findings, never a finding that is not there.
    let running_uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    // Relative policy paths resolve against the policy's directory, or the working directory
    // for the embedded policy: as `config::load` resolves them.
    let base = args.policy.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    let mut file = |role: FileRole, path: &Path| {
        // A file that is absent (or not ours to stat) has no mode to judge; the policy and the
        // gateway config are read below, and an unreadable one is a finding there.
        let meta = std::fs::metadata(path).ok();
        facts.files.push(FileFacts { role, path: path.display().to_string(), mode: meta.as_ref().map(|m| m.permissions().mode() & 0o7777), uid: meta.as_ref().map(|m| m.uid()), running_uid });
    };
    let loaded = crate::config::load(args.policy.as_deref());
    if let Some(p) = &args.policy {
        file(FileRole::Policy, p);
    }
    let mut policy = None;
    match loaded {
        Ok(cfg) => {
            let p = cfg.policy.policy;
            file(FileRole::PinStore, &crate::pin_file::store_path(&base, &p.nodes.store));
            if p.audit.enabled {
                let dir = if p.audit.dir.is_absolute() { p.audit.dir.clone() } else { base.join(&p.audit.dir) };
                file(FileRole::AuditDir, &dir);
                if let Some(key) = p.audit.signing_key.strip_prefix("file:") {
                    let key = Path::new(key);
                    file(FileRole::SigningKey, &if key.is_absolute() { key.to_path_buf() } else { base.join(key) });
                }
                policy = Some((p, dir));
            } else {
                policy = Some((p, PathBuf::new()));
            }
        }
        Err(e) => facts.policy_error = Some(e.to_string()),
    }
    let config_path = args.gateway_config.clone().or_else(default_gateway_config);
    if let Some(path) = &config_path {
        file(FileRole::GatewayConfig, path);
    }
    if let Some((p, dir)) = policy {
        if p.audit.enabled {
            facts.audit_writable = Some(writable(&dir, running_uid));
            facts.audit_verify = verify_audit(&dir);
        }
        facts.probes = probe(p.upstream.address.port());
        facts.policy = Some(p);
    } else {
        facts.probes = probe(18789);
    }
    if let Some(path) = config_path {
        facts.gateway_config_path = Some(path.display().to_string());
        facts.gateway_config = match std::fs::read_to_string(&path) {
            Ok(text) => match json5::from_str::<serde_json::Value>(text.strip_prefix('\u{feff}').unwrap_or(&text)) {
                Ok(v) => Gathered::Found(v),
                Err(e) => Gathered::Unavailable(format!("{}: not JSON5: {e}", path.display())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.gateway_config.is_none() => Gathered::Absent,
            Err(e) => Gathered::Unavailable(format!("{}: {e}", path.display())),
        };
    }
    facts.listeners = listeners();
    facts.gateway_version_answering = args.gateway_version.clone();
    if !args.no_openclaw {
        facts.openclaw_audit = openclaw_audit(args.openclaw.as_deref(), args.gateway_config.as_deref());
    }
    facts
}

/// Where the gateway keeps its config, as the CLI finds it.
fn default_gateway_config() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OPENCLAW_CONFIG_PATH") {
        return Some(PathBuf::from(p));
    }
    if let Some(dir) = std::env::var_os("OPENCLAW_STATE_DIR") {
        return Some(Path::new(&dir).join("openclaw.json"));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".openclaw/openclaw.json"))
}

/// Whether this process may create files in `dir` (by its mode bits; nothing is written).
fn writable(dir: &Path, uid: Option<u32>) -> bool {
    let Ok(meta) = std::fs::metadata(dir) else {
        // clawguard creates it at start; then its parent must be writable.
        // A relative directory with no parent is under the working directory.
        return match dir.parent() {
            Some(p) if p.as_os_str().is_empty() => writable(Path::new("."), uid),
            Some(p) => writable(p, uid),
            None => false,
        };
    };
    let mode = meta.permissions().mode();
    meta.is_dir() && (uid == Some(0) || (uid == Some(meta.uid()) && mode & 0o200 != 0) || mode & 0o002 != 0)
}

fn verify_audit(dir: &Path) -> Gathered<String> {
    if !dir.exists() {
        return Gathered::Absent;
    }
    match crate::audit_cli::verify_dir(dir) {
        Ok((1, summary)) => Gathered::Unavailable(summary),
        Ok((_, summary)) => Gathered::Found(summary),
        Err(e) => Gathered::Unavailable(format!("{}: {e:#}", dir.display())),
    }
}

/// Every socket listening in this network namespace, with its process where /proc shows it.
fn listeners() -> Gathered<Vec<Listener>> {
    let mut found = Vec::new();
    let mut read_any = false;
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Gathered::Unavailable(format!("{file}: {e}")),
        };
        read_any = true;
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9)) else { continue };
            if *state != "0A" {
                continue;
            }
            let Some(address) = parse_proc_address(local, v6) else {
                return Gathered::Unavailable(format!("{file}: cannot read the address {local:?}"));
            };
            found.push((address, inode.to_string()));
        }
    }
    if !read_any {
        return Gathered::Unavailable("neither /proc/net/tcp nor /proc/net/tcp6 exists (not Linux?)".into());
    }
    let owners = socket_owners();
    Gathered::Found(
        found
            .into_iter()
            .map(|(address, inode)| {
                let owner = owners.iter().find(|(i, _, _)| *i == inode);
                Listener { address, process: owner.map(|(_, _, name)| name.clone()).filter(|n| !n.is_empty()), pid: owner.map(|(_, pid, _)| *pid) }
            })
            .collect(),
    )
}

/// `0100007F:4A65` (IPv4, the address as a little-endian word) or 32 hex digits of four
/// little-endian words (IPv6), then the port in hex.
fn parse_proc_address(text: &str, v6: bool) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8).map(|i| u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()).collect::<Option<_>>()?;
    let ip = match (v6, words.as_slice()) {
        (false, [w]) => IpAddr::V4(Ipv4Addr::from(w.to_le_bytes())),
        (true, [a, b, c, d]) => {
            let bytes: Vec<u8> = [a, b, c, d].iter().flat_map(|w| w.to_le_bytes()).collect();
            let octets: [u8; 16] = bytes.try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// (socket inode, pid, process name) of every socket this user may see in /proc.
fn socket_owners() -> Vec<(String, u32, String)> {
    let mut owners = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return owners };
    for entry in procs.flatten() {
        // Entries of /proc that are not numbers are not processes.
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        // The name only labels a finding; a process that exited meanwhile has none.
        let name = std::fs::read_to_string(entry.path().join("comm")).map(|s| s.trim().to_string()).unwrap_or_default();
        for fd in fds.flatten() {
            // A descriptor closed since the listing, or not a socket, names no listener.
            if let Some(inode) = std::fs::read_link(fd.path()).ok().and_then(|l| l.to_str().and_then(|s| s.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))) {
                owners.push((inode, pid, name.clone()));
            }
        }
    }
    owners
}

/// The host's own non-loopback addresses (this network namespace): IPv4 from
/// /proc/net/fib_trie's local routes, IPv6 from /proc/net/if_inet6 (link-local left out).
fn host_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        let mut last: Option<Ipv4Addr> = None;
        for line in trie.lines() {
            let t = line.trim_start_matches([' ', '|', '+', '-']).trim();
            if let Ok(ip) = t.parse::<Ipv4Addr>() {
                last = Some(ip);
            } else if t.contains("/32 host LOCAL") {
                if let Some(ip) = last.filter(|ip| !ip.is_loopback()) {
                    out.push(IpAddr::V4(ip));
                }
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in text.lines() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(hex), Some(scope)) = (cols.first(), cols.get(3)) else { continue };
            let Ok(n) = u128::from_str_radix(hex, 16) else { continue };
            let ip = Ipv6Addr::from(n);
            if !ip.is_loopback() && *scope == "00" {
                out.push(IpAddr::V6(ip));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A TCP connection attempt to `port` on each of the host's own non-loopback addresses.
fn probe(port: u16) -> Vec<Probe> {
    host_addresses()
        .into_iter()
        .map(|ip| {
            let address = SocketAddr::new(ip, port);
            Probe { address, open: TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok() }
        })
        .collect()
}

/// `openclaw security audit --json`, with a deadline. With `--gateway-config`, the CLI audits
/// that same file (`OPENCLAW_CONFIG_PATH`), not whatever its environment points at.
fn openclaw_audit(cli: Option<&Path>, config: Option<&Path>) -> Gathered<serde_json::Value> {
    let program = cli.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("openclaw"));
    let mut command = Command::new(&program);
    command.args(["security", "audit", "--json"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(config) = config {
        command.env("OPENCLAW_CONFIG_PATH", config);
    }
    let child = command.spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && cli.is_none() => return Gathered::Unavailable("openclaw is not on PATH (pass --openclaw PATH, or --no-openclaw)".into()),
        Err(e) => return Gathered::Unavailable(format!("{}: {e}", program.display())),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let id = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Gathered::Unavailable(format!("{}: {e}", program.display())),
        Err(_) => {
            let _ = Command::new("kill").arg(id.to_string()).status();
            return Gathered::Unavailable(format!("{} security audit --json did not finish within 120 s", program.display()));
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The report is the JSON document on stdout; the CLI may log lines before it.
    let start = stdout.find(['{', '[']).unwrap_or(0);
    match serde_json::from_str(&stdout[start..]) {
        Ok(v) => Gathered::Found(v),
        Err(e) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Gathered::Unavailable(format!("{} security audit --json exited with {} and printed no JSON report ({e}): {}", program.display(), output.status, stderr.trim().lines().last().unwrap_or("")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_addresses_read_as_the_kernel_writes_them() {
        assert_eq!(parse_proc_address("0100007F:4A65", false), Some("127.0.0.1:19045".parse().unwrap()));
        assert_eq!(parse_proc_address("00000000:4A65", false), Some("0.0.0.0:19045".parse().unwrap()));
        assert_eq!(parse_proc_address("00000000000000000000000001000000:0050", true), Some("[::1]:80".parse().unwrap()));
        assert_eq!(parse_proc_address("0000000000000000FFFF00000100007F:0050", true), Some("[::ffff:127.0.0.1]:80".parse().unwrap()));
        assert_eq!(parse_proc_address("0100007F", false), None);
        assert_eq!(parse_proc_address("zz00007F:0050", false), None);
    }

    #[test]
    fn this_process_sees_its_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let Gathered::Found(all) = listeners() else { panic!("no /proc/net/tcp") };
        let mine = all.iter().find(|x| x.address == addr).expect("own listener");
        assert_eq!(mine.pid, Some(std::process::id()));
    }
}
