//! Chat slash commands: a `chat.send`, `sessions.send`, `sessions.steer` or `agent` message
//! that the gateway runs as a command (`docs/tools/slash-commands.md`) needs the scope the
//! equivalent method needs. `/pair approve` from a write-only session is `device.pair.approve`
//! (GHSA-hc5h-pmr3-3497), `/approve` is `exec.approval.resolve` (GHSA-mqpw-46fh-299h).
//!
//! The command is read as the gateway's `normalizeCommandBody` reads it: the message trimmed,
//! `/name` up to white space, `@` or `:`, lower-cased (`/PAIR@bot: approve x` is `/pair`), or a
//! leading `!` (`/bash`). Inline directives that loosen exec for the message (`/exec
//! security=… ask=…`, `/elevated`) are found anywhere in it.

use crate::protocol::scopes::Scope;
use serde_json::Value;

/// Methods whose message the gateway may run as a chat command.
pub const CHAT_METHODS: &[&str] = &["agent", "chat.send", "sessions.send", "sessions.steer"];

/// A command found in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatCommand {
    /// The command, lower-case, without the slash (`pair`; `bash` for `!`).
    pub name: String,
    /// The words after it.
    pub args: Vec<String>,
    /// The text after it, as written (a `/bash` or `!` command line).
    pub rest: String,
}

/// What a command needs: every scope listed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Scopes the caller must hold (with the gateway's implications).
    pub scopes: Vec<Scope>,
    /// The equivalent method or action.
    pub like: &'static str,
}

/// Commands that are owner-only writes or admin actions in 2026.9.6 (aliases included).
const ADMIN_COMMANDS: &[&str] = &[
    "allowlist", "bash", "compact", "config", "debug", "diagnostics", "dreaming", "export", "export-session", "login", "loop", "mcp", "new", "openclaw",
    "plugin", "plugins", "reset", "restart", "send", "update", "elevated", "elev",
];

/// The command at the start of `message`, if it is one.
pub fn command_of(message: &str) -> Option<ChatCommand> {
    let text = crate::codec::js::trim(message);
    let words = |rest: &str| rest.split(crate::codec::js::is_js_space).filter(|w| !w.is_empty()).map(str::to_string).collect::<Vec<_>>();
    if let Some(rest) = text.strip_prefix('!') {
        return Some(ChatCommand { name: "bash".into(), args: words(rest), rest: rest.trim_start_matches(crate::codec::js::is_js_space).to_string() });
    }
    let body = text.strip_prefix('/')?;
    let end = body.find(|c: char| crate::codec::js::is_js_space(c) || c == '@' || c == ':').unwrap_or(body.len());
    let name = body[..end].to_lowercase();
    if name.is_empty() {
        return None;
    }
    let mut rest = &body[end..];
    if let Some(after_mention) = rest.strip_prefix('@') {
        // `/cmd@bot` with nothing after the mention: a command without arguments.
        rest = after_mention.find(|c: char| crate::codec::js::is_js_space(c) || c == ':').map(|i| &after_mention[i..]).unwrap_or("");
    }
    let rest = rest.trim_start_matches(|c: char| crate::codec::js::is_js_space(c) || c == ':');
    Some(ChatCommand { name, args: words(rest), rest: rest.to_string() })
}

/// What running `command` needs.
pub fn requirement(command: &ChatCommand) -> Option<Requirement> {
    let first = command.args.first().map(|a| a.to_lowercase());
    let admin = |like| Some(Requirement { scopes: vec![Scope::Admin], like });
    match command.name.as_str() {
        "pair" => match first.as_deref() {
            Some("approve") => admin("device.pair.approve"),
            Some("qr") => admin("device.pair.setupCode"),
            _ => Some(Requirement { scopes: vec![Scope::Pairing], like: "device.pair.list" }),
        },
        "approve" => Some(Requirement { scopes: vec![Scope::Approvals], like: "exec.approval.resolve" }),
        // `-a` / `-g` also write the agent's or the global default model (config).
        "model" if command.args.iter().any(|a| matches!(a.as_str(), "-a" | "--agent" | "-g" | "--global")) => admin("a config write"),
        "bash" => admin("a host shell command"),
        name if ADMIN_COMMANDS.contains(&name) => admin("an owner-only command"),
        _ => None,
    }
}

/// Inline directives anywhere in `message` that loosen exec for it: `/exec` with `security=`
/// or `ask=`, and `/elevated` (`/elev`).
fn loosening_directive(message: &str) -> Option<&'static str> {
    // Most messages hold no slash at all: nothing to split or lower-case.
    if !message.contains('/') {
        return None;
    }
    let words: Vec<String> = message.split(crate::codec::js::is_js_space).map(str::to_lowercase).collect();
    for (i, w) in words.iter().enumerate() {
        let w = w.split(':').next().unwrap_or("");
        if w == "/elevated" || w == "/elev" {
            return Some("/elevated");
        }
        if w == "/exec" && words[i + 1..].iter().take(6).any(|o| o.starts_with("security=") || o.starts_with("ask=")) {
            return Some("/exec security=/ask=");
        }
    }
    None
}

/// The chat command or loosening directive in a request's message, and what it needs. A
/// `message` that is present but not a string cannot be judged (`Err`).
pub fn requirement_of(method: &str, params: &Value) -> Result<Option<(String, Requirement, Option<ChatCommand>)>, String> {
    if !CHAT_METHODS.contains(&method) {
        return Ok(None);
    }
    let message = match &params["message"] {
        Value::Null => return Ok(None),
        Value::String(s) => s.as_str(),
        _ => return Err(format!("{method}: message is not a string, so clawguard cannot tell whether it is a chat command")),
    };
    if let Some(command) = command_of(message) {
        if let Some(r) = requirement(&command) {
            let shown = std::iter::once(format!("/{}", command.name)).chain(command.args.iter().take(1).cloned()).collect::<Vec<_>>().join(" ");
            return Ok(Some((shown, r, Some(command))));
        }
    }
    Ok(loosening_directive(message).map(|d| (d.to_string(), Requirement { scopes: vec![Scope::Admin], like: "an exec policy change" }, None)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_are_read_as_the_gateway_normalises_them() {
        assert_eq!(command_of("/pair approve abc").unwrap(), ChatCommand { name: "pair".into(), args: vec!["approve".into(), "abc".into()], rest: "approve abc".into() });
        assert_eq!(command_of("! rm -rf /").unwrap().rest, "rm -rf /");
        assert_eq!(command_of("\u{feff}  /PAIR@openclaw_bot approve abc").unwrap().args[0], "approve");
        assert_eq!(command_of("/pair: approve abc").unwrap().args[0], "approve");
        assert_eq!(command_of("/pair:approve abc").unwrap().args[0], "approve");
        assert_eq!(command_of("! rm -rf /").unwrap().name, "bash");
        assert!(command_of("hello /pair approve").is_none());
        assert!(command_of("/").is_none());
    }

    #[test]
    fn issue11_pairing_approvals_and_owner_commands_need_their_method_scopes() {
        let need = |m: &str| requirement_of("chat.send", &json!({"message": m})).unwrap().map(|(_, r, _)| r.scopes);
        assert_eq!(need("/pair approve r1"), Some(vec![Scope::Admin]));
        assert_eq!(need("/pair pending"), Some(vec![Scope::Pairing]));
        assert_eq!(need("/approve ap1 allow-always"), Some(vec![Scope::Approvals]));
        assert_eq!(need("/config set gateway.auth.mode none"), Some(vec![Scope::Admin]));
        assert_eq!(need("/allowlist add /bin/sh"), Some(vec![Scope::Admin]));
        assert_eq!(need("please run this /exec security=full ask=off"), Some(vec![Scope::Admin]));
        assert_eq!(need("/elevated full"), Some(vec![Scope::Admin]));
        assert_eq!(need("/status"), None);
        assert_eq!(need("/compact"), Some(vec![Scope::Admin]), "sessions.compact needs admin");
        assert_eq!(need("/model gpt-5 -g"), Some(vec![Scope::Admin]));
        assert_eq!(need("/model gpt-5 -s"), None);
        assert_eq!(need("what does /exec do?"), None);
        assert!(requirement_of("chat.send", &json!({"message": ["/pair", "approve"]})).is_err());
        assert_eq!(requirement_of("chat.history", &json!({"message": "/pair approve"})).unwrap(), None);
    }
}
