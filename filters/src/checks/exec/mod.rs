//! The exec policy: every command that would run is parsed (argv, or shell through
//! [`shell`]), wrappers are peeled to a bounded depth, and every resulting segment is judged
//! on its own by prefix rules; the strictest decision wins, and anything that cannot be
//! shown safe is denied with the reason.
//!
//! - [`hygiene`]: characters refused anywhere (controls, bidi, invisible, look-alikes).
//! - [`shell`]: the accepted shell subset (a subset reader checked against brush-parser's tokenizer).
//! - [`judge`]: wrappers, rule classes (inline code, command runners) and prefix rules.

pub mod hygiene;
mod judge;
pub mod shell;

pub use judge::{ExecPolicy, ExecPolicyError, Segment, Verdict};

use serde_json::Value;

/// A command in one of the shapes the protocol carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An argv array (`system.run` `command`, `commandArgv`, `systemRunPlan.argv`).
    Argv(Vec<String>),
    /// A shell string (`rawCommand`, the `exec` tool's `command`, `exec.approval.request` `command`).
    Shell(String),
}

/// Reads an argv array; `None` when the value is not an array of strings.
pub fn argv_of(value: &Value) -> Option<Vec<String>> {
    value.as_array()?.iter().map(|v| v.as_str().map(str::to_string)).collect()
}

/// The commands a `system.run` / `system.run.prepare` params object carries: `command`
/// (argv), `rawCommand` (shell text) and `systemRunPlan.argv`. An error when the fields
/// that are present have the wrong shape (the command cannot be evaluated).
pub fn system_run_commands(params: &Value) -> Result<Vec<Command>, String> {
    let mut out = Vec::new();
    for (field, value) in [("command", &params["command"]), ("systemRunPlan.argv", &params["systemRunPlan"]["argv"])] {
        match value {
            Value::Null => {}
            v => out.push(Command::Argv(argv_of(v).ok_or_else(|| format!("{field} is not an array of strings"))?)),
        }
    }
    match &params["rawCommand"] {
        Value::Null => {}
        Value::String(s) => out.push(Command::Shell(s.clone())),
        _ => return Err("rawCommand is not a string".into()),
    }
    if out.is_empty() {
        return Err("no command (expected command, rawCommand or systemRunPlan.argv)".into());
    }
    Ok(out)
}

/// Whether `system.run` params ask the gateway to treat the command as approved: `approved`,
/// `approvalDecision` or `approvalSource` present (the gateway reads `approved === true`, a
/// normalised decision, or any source; clawguard counts every non-null value). From an
/// operator such a claim must be bound to an approval clawguard saw (`exec_guard`).
pub fn claims_approval(params: &Value) -> bool {
    let present = |k: &str| !params[k].is_null() && params[k] != Value::Bool(false);
    present("approved") || present("approvalDecision") || present("approvalSource")
}

/// Whether an invocation the gateway sends a node carries the gateway's approval: `approved: true` or an
/// `approvalDecision`, bound to a `runId`. The gateway verifies the record behind it
/// (`openclaw-protocol.md` §4.3); an `ask` decision passes only with one.
pub fn carries_approval(params: &Value) -> bool {
    let claims = params["approved"] == Value::Bool(true) || params["approvalDecision"].is_string();
    claims && params["runId"].as_str().is_some_and(|s| !s.is_empty())
}
