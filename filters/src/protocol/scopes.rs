//! Operator scopes and the gateway's own authorization rules (`openclaw-protocol.md` §2):
//! scope names and implications, session scopes, the generated method table, and the
//! params-dependent rules of dynamic methods. [`authorize`] answers, for one request, what
//! the gateway would answer, so that clawguard can refuse before the gateway sees it.

use crate::protocol::method_table::METHODS;
pub use crate::protocol::scope_model::{satisfies, Required, Role, Scope, ScopeSet};
use serde_json::Value;

/// The method table by name (looked up for every request, several times).
static BY_NAME: std::sync::LazyLock<std::collections::HashMap<&'static str, Required, foldhash::fast::RandomState>> =
    std::sync::LazyLock::new(|| METHODS.iter().copied().collect());

/// The method table's entry for `method` (`None`: not a core method).
pub fn lookup(method: &str) -> Option<Required> {
    BY_NAME.get(method).copied()
}

/// Whether a method writes, grants or runs (what `audit.record_allowed = "sensitive"` records):
/// everything but the table's read-only methods and node-role events. An unknown method counts.
pub fn is_sensitive(method: &str) -> bool {
    !matches!(lookup(method), Some(Required::Scope(Scope::Read | Scope::SessionsRead)) | Some(Required::NodeRole)) && method != "connect"
}

/// Methods that `operator.sessions.read` allows although the table says `operator.read`.
const SESSION_READ: &[&str] = &[
    "chat.history", "chat.message.get", "chat.metadata", "chat.startup", "session.members.list", "session.members.listEvidence",
    "sessions.branches.list", "sessions.describe", "sessions.files.get", "sessions.files.list", "sessions.get", "sessions.list",
    "sessions.messages.subscribe", "sessions.messages.unsubscribe", "sessions.preview", "sessions.resolve", "sessions.search",
    "sessions.setInvolvement", "sessions.subscribe", "sessions.viewers.set",
];

/// Methods that `operator.sessions.write` allows although the table says `operator.write`
/// (or dynamic, when the params-dependent requirement is not admin).
const SESSION_WRITE: &[&str] = &[
    "chat.abort", "chat.send", "question.get", "question.list", "question.request", "question.resolve", "question.waitAnswer",
    "sessions.abort", "sessions.create", "sessions.delete", "sessions.fork", "sessions.goal.clear", "sessions.goal.update",
    "sessions.patch", "sessions.patchMany", "sessions.recover", "sessions.send", "sessions.steer",
];

/// Node commands that only an admin may invoke through `node.invoke`.
const ADMIN_NODE_COMMANDS: &[&str] = &["browser.proxy", "browser.proxy.upload.v1", "fs.listDir", "terminal.upload"];

/// `sessions.patch` fields a writer may change; anything else needs admin.
const SESSION_PATCH_WRITE_FIELDS: &[&str] = &[
    "label", "autoLabel", "icon", "color", "category", "boardFace", "boardPresentation", "pinned", "archived", "unread", "model",
    "agentRuntime", "thinkingLevel", "fastMode", "permissionMode", "key", "agentId", "expectedSessionId", "expectedRevision",
];

/// The scopes a dynamic method needs for these params (all of them), per §2.5.
/// Params that cannot be read are judged as the most demanding case (admin): fail closed.
pub fn dynamic_requirement(method: &str, params: &Value) -> Vec<Scope> {
    let field = |k: &str| params.get(k);
    let truthy = |k: &str| field(k).and_then(Value::as_bool).unwrap_or(false);
    let admin_or = |admin: bool, otherwise: Scope| vec![if admin { Scope::Admin } else { otherwise }];
    match method {
        "agent" => {
            let msg = crate::codec::js::string_field(params, &["message"]).unwrap_or("");
            let first = msg.split(crate::codec::js::is_js_space).next().unwrap_or("").to_ascii_lowercase();
            admin_or(first == "/new" || first == "/reset", Scope::Write)
        }
        "node.invoke" => {
            // The gateway trims the command before it compares it.
            let command = crate::codec::js::string_field(params, &["command"]);
            admin_or(command.is_none_or(|c| ADMIN_NODE_COMMANDS.contains(&c)), Scope::Write)
        }
        "talk.config" => {
            if truthy("includeSecrets") { vec![Scope::Read, Scope::TalkSecrets] } else { vec![Scope::Read] }
        }
        "environments.list" => vec![if field("runtimeId").is_some() { Scope::Write } else { Scope::Read }],
        "channels.pairing.approve" => {
            if truthy("bootstrapCommandOwner") { vec![Scope::Pairing, Scope::Admin] } else { vec![Scope::Pairing] }
        }
        "fs.listDir" => admin_or(field("nodeId").is_some(), Scope::Write),
        "sessions.create" => admin_or(
            truthy("incognito") || field("execNode").is_some() || field("toolOverrides").is_some() || field("permissionMode").and_then(Value::as_str) == Some("full"),
            Scope::Write,
        ),
        "sessions.patch" => admin_or(!session_patch_is_write(params), Scope::Write),
        "sessions.patchMany" => {
            let patches = field("patches").or_else(|| field("items")).and_then(Value::as_array);
            let all_write = match patches {
                Some(list) => list.iter().all(|p| session_patch_is_write(p.get("patch").unwrap_or(p))),
                None => session_patch_is_write(field("patch").unwrap_or(&Value::Null)),
            };
            admin_or(!all_write, Scope::Write)
        }
        "sessions.delete" => {
            let allowed = ["key", "agentId", "deleteTranscript", "expectedSessionId", "archivedOnly"];
            let only_allowed = params.as_object().is_some_and(|o| o.keys().all(|k| allowed.contains(&k.as_str())));
            admin_or(!(truthy("archivedOnly") && only_allowed), Scope::Write)
        }
        "sessions.dispatch" => admin_or(!(field("deviceId").is_some() || truthy("autoDevice")), Scope::Write),
        "sessions.move" => admin_or(params.pointer("/target/kind").and_then(Value::as_str) == Some("profile"), Scope::Write),
        // The scope a plugin registered for the action is not visible to a proxy: the default.
        "plugins.sessionAction" => vec![Scope::Write],
        // A dynamic method this table does not know: admin, as the gateway does for the unknown.
        _ => vec![Scope::Admin],
    }
}

fn session_patch_is_write(patch: &Value) -> bool {
    let Some(obj) = patch.as_object() else { return false };
    if obj.get("permissionMode").and_then(Value::as_str) == Some("full") || obj.contains_key("sandboxMode") {
        return false;
    }
    obj.keys().all(|k| SESSION_PATCH_WRITE_FIELDS.contains(&k.as_str()))
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The role may not call the method (`unauthorized role: …`).
    Role {
        /// The caller's role.
        role: Role,
    },
    /// A scope is missing.
    MissingScope {
        /// The first missing scope.
        missing: Scope,
        /// Every scope the request needs.
        required: Vec<Scope>,
    },
}

/// The gateway's authorization of one request (`authorizeGatewayMethod`, §2.3), against
/// `scopes` (already capped by clawguard's ceiling). `params` (the request's params, read once
/// by [`crate::codec::js::read_json`]; `Null` when absent) are only read for dynamic methods.
pub fn authorize(method: &str, params: &Value, role: Role, scopes: ScopeSet) -> Result<(), Refusal> {
    if method == "health" {
        return Ok(());
    }
    let entry = lookup(method);
    let node_method = entry == Some(Required::NodeRole);
    match (role, node_method) {
        (Role::Node, false) | (Role::Operator, true) => return Err(Refusal::Role { role }),
        (Role::Node, true) => return Ok(()),
        (Role::Operator, false) => {}
    }
    if method == "device.scopes.requestUpgrade" || method == "device.scopes.waitUpgrade" || scopes.contains(Scope::Admin) {
        return Ok(());
    }
    let single;
    let dynamic;
    let required: &[Scope] = match entry {
        Some(Required::Scope(s)) => {
            single = [s];
            &single
        }
        Some(Required::Dynamic) => {
            dynamic = dynamic_requirement(method, params);
            &dynamic
        }
        Some(Required::NodeRole) => unreachable!("handled above"),
        None => &[Scope::Admin],
    };
    let session_alternative = |s: Scope| {
        (s == Scope::Read && SESSION_READ.contains(&method) && scopes.contains(Scope::SessionsRead))
            || (s == Scope::Write && SESSION_WRITE.contains(&method) && scopes.contains(Scope::SessionsWrite))
            || (s == Scope::Write && method.starts_with("question.") && scopes.contains(Scope::Questions))
    };
    match required.iter().find(|s| !satisfies(scopes, **s) && !session_alternative(**s)) {
        None => Ok(()),
        Some(missing) => Err(Refusal::MissingScope { missing: *missing, required: required.to_vec() }),
    }
}

#[cfg(test)]
mod tests;
