//! `clawguard exec check [--policy P] [--json] -- ARGV…` and `clawguard exec check --shell
//! 'SCRIPT'`: the decision the proxy makes on a command, with the matched rules, the parsed
//! segments and the reason (the same `ExecPolicy` the data path uses).

use crate::config;
use clawguard_filters::exec::{ExecPolicy, Verdict};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `clawguard exec`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Judge a command: exit 0 allow, 1 deny, 3 ask (needs an approval), 2 error.
    Check {
        /// Policy file (default: the embedded policy).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// A shell script (as `rawCommand` or the `exec` tool carry it) instead of an argv.
        #[arg(long, conflicts_with = "argv")]
        shell: Option<String>,
        /// The argv, after `--`.
        #[arg(last = true)]
        argv: Vec<String>,
    },
}

fn print(verdict: &Verdict, json: bool) {
    let mut out = std::io::stdout();
    if json {
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(verdict).expect("a verdict serialises"));
        return;
    }
    let mode = if verdict.enforce { "" } else { " (dry-run: recorded, not enforced)" };
    let _ = writeln!(out, "decision: {}{mode}", verdict.decision);
    let _ = writeln!(out, "reason: {}", verdict.reason);
    if !verdict.matched_rules.is_empty() {
        let _ = writeln!(out, "matched rules: {}", verdict.matched_rules.join(", "));
    }
    for (i, s) in verdict.segments.iter().enumerate() {
        let via = if s.wrappers.is_empty() { String::new() } else { format!(" (via {})", s.wrappers.join(" > ")) };
        let _ = writeln!(out, "segment {}: {:?}{via}: {} ({})", i + 1, s.argv, s.decision, s.reason);
    }
}

/// Runs the command.
pub fn run(args: Args) -> ExitCode {
    let Action::Check { policy, json, shell, argv } = args.action;
    let cfg = match config::load(policy.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("clawguard exec check: {e}");
            return ExitCode::from(2);
        }
    };
    let exec = match ExecPolicy::new(&cfg.policy.policy) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("clawguard exec check: {e}");
            return ExitCode::from(2);
        }
    };
    let verdict = match (shell, argv.is_empty()) {
        (Some(script), _) => exec.check_shell(&script),
        (None, false) => exec.check_argv(&argv),
        (None, true) => {
            eprintln!("clawguard exec check: give a command after `--`, or --shell 'SCRIPT'");
            return ExitCode::from(2);
        }
    };
    print(&verdict, json);
    match verdict.decision {
        "allow" => ExitCode::SUCCESS,
        "ask" => ExitCode::from(3),
        _ => ExitCode::from(1),
    }
}
