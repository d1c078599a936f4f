//! `clawguard inject` / `clawguard uninject`: Kubernetes YAML from files, directories or stdin,
//! through `clawguard-inject`'s transformer, to stdout; a report per workload on stderr.

use clap::{Args, Parser};
use clawguard_inject::{inject_documents, uninject_documents, Settings};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// `clawguard inject` arguments.
#[derive(Parser)]
pub struct InjectArgs {
    /// YAML files or directories (every `*.yaml` / `*.yml` in them, by name); none or `-`: stdin.
    paths: Vec<PathBuf>,
    #[command(flatten)]
    sidecar: SidecarArgs,
    /// Also emit a NetworkPolicy per workload that admits ingress only to clawguard's ports.
    #[arg(long)]
    network_policy: bool,
}

/// How the sidecar is injected: the flags `clawguard inject` and `clawguard webhook` share.
#[derive(Args)]
pub struct SidecarArgs {
    /// clawguard's image in injected pods.
    #[arg(long, default_value_t = Settings::default().image)]
    image: String,
    /// A regular container instead of a native sidecar (clusters before Kubernetes 1.29).
    #[arg(long)]
    classic: bool,
    /// clawguard's admin port in injected pods (`/metrics`, `/livez`, `/readyz`).
    #[arg(long, default_value_t = Settings::default().admin_port)]
    admin_port: u16,
    /// The ConfigMap holding `policy.toml`, unless a pod names another.
    #[arg(long, default_value_t = Settings::default().policy_configmap)]
    policy_configmap: String,
}

impl SidecarArgs {
    /// The transformer's settings, with or without a NetworkPolicy per workload.
    pub fn settings(self, network_policy: bool) -> Settings {
        Settings { image: self.image, classic: self.classic, admin_port: self.admin_port, policy_configmap: self.policy_configmap, network_policy }
    }
}

/// `clawguard uninject` arguments.
#[derive(Parser)]
pub struct UninjectArgs {
    /// YAML files or directories; none or `-`: stdin.
    paths: Vec<PathBuf>,
}

/// The input: every named file (directories expanded, sorted), or stdin.
fn read_input(paths: &[PathBuf]) -> Result<String, String> {
    if paths.is_empty() || paths.iter().any(|p| p.as_os_str() == "-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(text);
    }
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        docs.push(text);
    }
    // Each file's documents stay whole: join at document boundaries.
    Ok(docs.iter().map(|d| d.trim_end_matches('\n')).collect::<Vec<_>>().join("\n---\n"))
}

fn finish(result: Result<clawguard_inject::Documents, clawguard_inject::Error>, what: &str) -> ExitCode {
    match result {
        Ok(docs) => {
            for r in &docs.reports {
                eprintln!("{r}");
            }
            if std::io::stdout().write_all(docs.yaml.as_bytes()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("clawguard {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `clawguard inject`: exit 0 when every document was read (injected or left as it
/// was), 1 when one was refused or unreadable (nothing is written then).
pub fn inject(args: InjectArgs) -> ExitCode {
    let text = match read_input(&args.paths) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("clawguard inject: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settings = args.sidecar.settings(args.network_policy);
    finish(inject_documents(&text, &settings), "inject")
}

/// Runs `clawguard uninject`.
pub fn uninject(args: UninjectArgs) -> ExitCode {
    match read_input(&args.paths) {
        Ok(text) => finish(uninject_documents(&text), "uninject"),
        Err(e) => {
            eprintln!("clawguard uninject: {e}");
            ExitCode::FAILURE
        }
    }
}

