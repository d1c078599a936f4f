//! `clawguard decide`: the proxy's own decision function on one frame or one HTTP request,
//! printed as JSON.

use crate::config;
use clawguard_filters::access::{Guard, InMemory};
use clawguard_filters::decide::{decide, Origin, Scenario};
use clawguard_filters::peer::Peer;
use serde_json::Value;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `clawguard decide`.
#[derive(clap::Args)]
pub struct Args {
    /// Policy file (default: the embedded policy).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Judge the client as this identity (default: the identity its address and frames resolve to).
    #[arg(long)]
    identity: Option<String>,
    /// The client's address.
    #[arg(long, default_value = "127.0.0.1")]
    peer: IpAddr,
    /// The client frame to judge (JSON).
    #[arg(long, required_unless_present = "http", conflicts_with = "http")]
    frame: Option<String>,
    /// An HTTP request to judge instead: `METHOD target`, e.g. `"POST /tools/invoke"`.
    #[arg(long)]
    http: Option<String>,
    /// A request header for `--http`, `name: value` (repeatable).
    #[arg(long = "header", requires = "http")]
    headers: Vec<String>,
    /// The request body for `--http`.
    #[arg(long, requires = "http", default_value = "")]
    body: String,
    /// `--http` arrives over TLS.
    #[arg(long, requires = "http")]
    tls: bool,
    /// `--http` asks for a WebSocket upgrade.
    #[arg(long, requires = "http")]
    upgrade: bool,
    /// Frames before it: JSON lines `{"from":"gateway"|"client","frame":{…}}`. Without it, a
    /// completed handshake granting the identity's whole ceiling is assumed (for a `connect`
    /// frame: only the gateway's challenge, with the connect's own device nonce).
    #[arg(long)]
    after: Option<PathBuf>,
    /// The time, in ms since the epoch (default: now); signature freshness is judged against it.
    #[arg(long)]
    now_ms: Option<u64>,
}

fn fail(msg: String) -> ExitCode {
    eprintln!("clawguard decide: {msg}");
    ExitCode::from(2)
}

/// Reads the `--after` file.
fn read_after(path: &PathBuf) -> Result<Vec<(Origin, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{at}: not JSON: {e}"))?;
        let from: Origin = serde_json::from_value(v["from"].clone()).map_err(|_| format!("{at}: \"from\" must be \"gateway\" or \"client\""))?;
        if !v["frame"].is_object() {
            return Err(format!("{at}: expected a \"frame\" object"));
        }
        out.push((from, v["frame"].to_string()));
    }
    Ok(out)
}

/// Runs the command.
pub fn run(args: Args) -> ExitCode {
    let cfg = match config::load(args.policy.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let guard = Guard::new(&cfg.policy.policy);
    if let Some(line) = &args.http {
        return decide_http(&guard, &args, line);
    }
    let frame = args.frame.clone().unwrap_or_default();
    let peer = Peer { ip: args.peer, tls: false, client_cert: None };
    let after = match &args.after {
        Some(path) => match read_after(path) {
            Ok(a) => Some(a),
            Err(e) => return fail(e),
        },
        None => None,
    };
    if let Err(e) = serde_json::from_str::<Value>(&frame) {
        return fail(format!("--frame is not JSON: {e}"));
    }
    let scenario = match Scenario::new(&guard, peer, args.identity.clone(), after, frame) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let now_ms = args.now_ms.unwrap_or_else(crate::shared::now_ms);
    // The node pins the proxy would judge with (read only: decide changes no file).
    let base = args.policy.as_deref().and_then(|p| p.parent()).map(PathBuf::from).unwrap_or_default();
    let store = crate::pin_file::store_path(&base, &cfg.policy.policy.nodes.store);
    let state = InMemory::default();
    match crate::pin_file::load(&store) {
        Ok(pins) => *state.pins.lock().unwrap_or_else(|e| e.into_inner()) = pins,
        Err(e) => return fail(format!("{e:#}")),
    }
    match decide(&state.env(&guard, now_ms), &scenario) {
        Ok(d) => {
            // A closed stdout (`| head`) is not an error of the decision.
            let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&d).expect("a decision serialises"));
            if d.allowed() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => fail(e.to_string()),
    }
}

/// `--http`: one HTTP request through the HTTP decision (`filters::http::decide`).
fn decide_http(guard: &Guard, args: &Args, line: &str) -> ExitCode {
    let Some((method, target)) = line.trim().split_once(' ') else {
        return fail(format!("--http {line:?}: expected \"METHOD target\", such as \"POST /tools/invoke\""));
    };
    if args.identity.is_some() || args.after.is_some() {
        return fail("--identity and --after apply to --frame; an HTTP request's identity comes from its peer and headers".into());
    }
    let mut headers = Vec::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            return fail(format!("--header {h:?}: expected \"name: value\""));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    if !args.body.is_empty() && !headers.iter().any(|(k, _)| k == "content-length" || k == "transfer-encoding") {
        headers.push(("content-length".into(), args.body.len().to_string()));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let req = clawguard_filters::http::HttpRequest { method, path, query, headers: &headers, upgrade: args.upgrade };
    let peer = Peer { ip: args.peer, tls: args.tls, client_cert: None };
    let state = InMemory::default();
    let now_ms = args.now_ms.unwrap_or_else(crate::shared::now_ms);
    let d = clawguard_filters::http::decide(&state.env(guard, now_ms), &peer, &req, args.body.as_bytes());
    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&d).expect("a decision serialises"));
    if d.decision == "deny" { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
