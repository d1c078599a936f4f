//! `clawguard reload`: asks a running clawguard to reload its policy file, through `POST
//! /reload` on its admin listener, and prints the outcome.

use clap::Parser;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// `clawguard reload` arguments.
#[derive(Parser)]
pub struct Args {
    /// The admin listener of the running clawguard (default: the one `--policy` names).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// The running clawguard's policy file, to find its admin listener.
    #[arg(long)]
    policy: Option<std::path::PathBuf>,
}

/// Runs it: exit 0 when the new version is in force (or the file is unchanged), 1 when the
/// file was rejected (the running policy stays), 2 when clawguard could not be asked.
pub fn run(args: Args) -> ExitCode {
    let admin = match (args.admin, &args.policy) {
        (Some(a), _) => a,
        (None, Some(path)) => match admin_of(path) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("clawguard reload: {e}; pass --admin HOST:PORT");
                return ExitCode::from(2);
            }
        },
        (None, None) => clawguard_policies::LoadedPolicy::embedded().policy.admin.listen,
    };
    match post_reload(admin) {
        Ok((status, body)) => {
            let _ = writeln!(std::io::stdout(), "{}", body.trim_end());
            match status {
                200 => ExitCode::SUCCESS,
                422 => ExitCode::FAILURE,
                _ => ExitCode::from(2),
            }
        }
        Err(e) => {
            eprintln!("clawguard reload: cannot reach the admin listener at {admin}: {e}");
            ExitCode::from(2)
        }
    }
}

/// The admin address a policy file names (read as text: the file being reloaded may be one
/// that does not validate, and its admin listener is still the running one's).
fn admin_of(path: &std::path::Path) -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: toml::Table = toml::from_str(&text).map_err(|e| format!("{} is not TOML: {}", path.display(), e.message()))?;
    match value.get("admin").and_then(|a| a.get("listen")) {
        Some(toml::Value::String(s)) => s.parse().map_err(|_| format!("admin.listen {s:?} in {} is not HOST:PORT", path.display())),
        Some(_) => Err(format!("admin.listen in {} is not a string", path.display())),
        None => Ok(clawguard_policies::LoadedPolicy::embedded().policy.admin.listen),
    }
}

fn post_reload(admin: SocketAddr) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(5))?;
    // Validation reads the policy and its TLS files; a slow disk gets time.
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "POST /reload HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other("the answer has no head"))?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other("the answer has no status"))?;
    Ok((status, body.to_string()))
}
