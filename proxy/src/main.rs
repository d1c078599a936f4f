//! `clawguard`: a security sidecar proxy for the OpenClaw gateway.
//!
//! `clawguard run [--policy FILE]` serves the proxy; `clawguard check FILE`
//! validates a policy. The binary is a thin shell: the decisions live in the
//! sans-IO crates `clawguard-filters` and `clawguard-policies`.
#![forbid(unsafe_code)]

mod admin;
mod audit;
mod audit_cli;
mod config;
mod decide;
mod doctor_cli;
mod exec_cli;
mod inject_cli;
mod logging;
mod metrics;
mod nodes_cli;
mod pin_file;
mod pin_keeper;
mod proxy;
mod readiness;
mod reload;
mod reload_cli;
mod secrets;
mod redis_store;
mod respond;
mod server;
mod shared;
mod spend_poll;
mod tls;
mod webhook;
mod listeners;
mod websocket;

use clap::{Parser, Subcommand};

/// mimalloc: the proxy allocates per request and per message; glibc malloc showed up at ~7%
/// of the HTTP profile (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "clawguard", version, about = "Security sidecar proxy for the OpenClaw gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (on the embedded default policy unless --policy is given).
    Run {
        /// Policy file (TOML).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Listen here instead of the policy's `server.listen` (the deployment's address).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// The gateway's address instead of the policy's `upstream.address`.
        #[arg(long, value_name = "HOST:PORT")]
        upstream: Option<std::net::SocketAddr>,
        /// The admin listener's address instead of the policy's `admin.listen`.
        #[arg(long, value_name = "HOST:PORT")]
        admin: Option<std::net::SocketAddr>,
    },
    /// Validate a policy file, including the TLS files it names; exit 1 on error.
    Check {
        /// Policy file (TOML).
        file: PathBuf,
    },
    /// Print what clawguard would do with a client frame, as JSON; exit 0 allow, 1 deny, 2 error.
    Decide(decide::Args),
    /// The node pin store: list, pending, show, approve, revoke.
    Nodes(nodes_cli::Args),
    /// The exec policy: `exec check -- ARGV…` or `exec check --shell 'SCRIPT'`.
    Exec(exec_cli::Args),
    /// The audit log: verify, search, export, tail, key, hash.
    Audit(audit_cli::Args),
    /// Ask a running clawguard to reload its policy file; exit 0 applied, 1 rejected, 2 unreachable.
    Reload(reload_cli::Args),
    /// Inject clawguard as a sidecar into Kubernetes workloads (YAML from files or stdin to stdout).
    Inject(inject_cli::InjectArgs),
    /// Remove an injected clawguard sidecar, restoring the workloads exactly.
    Uninject(inject_cli::UninjectArgs),
    /// Serve the mutating admission webhook that injects clawguard into pods (HTTPS).
    Webhook(webhook::Args),
    /// Audit the whole deployment, the gateway behind clawguard included (read-only); exit 1
    /// when a finding at or above --fail-on is open.
    Doctor(doctor_cli::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file } => match config::load(Some(&file)) {
            Ok(cfg) => {
                let _ = writeln!(std::io::stdout(), "{}: ok (version {})", file.display(), cfg.policy.version);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Decide(args) => decide::run(args),
        Command::Exec(args) => exec_cli::run(args),
        Command::Audit(args) => audit_cli::run(args),
        Command::Reload(args) => reload_cli::run(args),
        Command::Inject(args) => inject_cli::inject(args),
        Command::Uninject(args) => inject_cli::uninject(args),
        Command::Webhook(args) => webhook::run(args),
        Command::Doctor(args) => doctor_cli::run(args),
        Command::Nodes(args) => match nodes_cli::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("clawguard nodes: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run { policy, listen, upstream, admin } => {
            config::set_addresses(config::Addresses { listen, upstream, admin });
            let cfg = match config::load(policy.as_deref()) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Err(e) = logging::init(&cfg.policy.policy.logging) {
                eprintln!("clawguard: {e:#}");
                return ExitCode::FAILURE;
            }
            match server::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("clawguard failed: {e:#}");
                    eprintln!("clawguard: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
