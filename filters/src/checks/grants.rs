//! Methods that grant, mint, approve or rotate scopes, roles or commands, judged by what they
//! grant and not by their scope alone: a caller can never grant what it does not hold.
//!
//! [`GRANTING_METHODS`] is the table (every such method of the 2026.9.6 package, with the rule
//! each gets); [`refusal`] applies it. Pending node pairing requests' commands are learned
//! from the gateway's `node.pair.requested` events and `node.pair.list` answers
//! ([`PendingRequests`]); an approval of a request clawguard has not seen needs admin.
//! Chat slash commands that reach the same actions are in [`crate::checks::chat_commands`].

use crate::protocol::scopes::{satisfies, Scope, ScopeSet};
use serde_json::Value;
use std::collections::BTreeSet;

/// What a granting method must satisfy beyond its method-table scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantRule {
    /// `device.token.rotate`: the requested `scopes` are a subset of the caller's; a role
    /// other than `operator`, or no `scopes` (the token keeps scopes clawguard cannot see),
    /// needs admin.
    TokenScopesWithinCaller,
    /// `device.token.revoke`: a role other than `operator` needs admin.
    NonOperatorRoleNeedsAdmin,
    /// Only an admin, by name, may call it (device approvals, setup codes, roles).
    AdminOnly,
    /// `node.pair.approve`: the commands the pending request declares decide (pairing + write,
    /// or pairing + admin for exec-class commands); an unseen request needs admin.
    NodeCommandsWithinCaller,
    /// Approves exec approvals: the method table's `operator.approvals`, and the exec policy's
    /// approval memory (`exec_guard`) refuses approving a denied or unseen command.
    ExecApprovalMemory,
    /// Writes the exec approvals document: admin (reserved prefix), and entries that approve
    /// everything are refused (`exec_guard::approvals_document_refusals`).
    ApprovalsDocument,
    /// The method table's rule is the whole rule (nothing beyond it is granted).
    MethodTable,
}

/// Every method of 2026.9.6 that grants, mints, approves or rotates scopes, roles, commands
/// or approvals, with its rule and why.
pub const GRANTING_METHODS: &[(&str, GrantRule, &str)] = &[
    ("attach.grant", GrantRule::AdminOnly, "grants attachment access"),
    ("board.widget.grant", GrantRule::MethodTable, "grants a board widget within a session (operator.approvals; session ownership applies)"),
    ("channels.pairing.approve", GrantRule::MethodTable, "approves a channel sender (pairing; bootstrapCommandOwner needs admin, the table's dynamic rule)"),
    ("device.pair.approve", GrantRule::AdminOnly, "approves a device with the scopes it asks for: no identity below admin approves devices"),
    ("device.pair.setupCode", GrantRule::AdminOnly, "mints a bootstrap token"),
    ("device.scopes.requestUpgrade", GrantRule::MethodTable, "only asks; the upgrade is granted by device.pair.approve (admin)"),
    ("device.token.revoke", GrantRule::NonOperatorRoleNeedsAdmin, "revokes a device token"),
    ("device.token.rotate", GrantRule::TokenScopesWithinCaller, "mints a device token with the scopes asked for"),
    ("exec.approval.resolve", GrantRule::ExecApprovalMemory, "approves a command to run"),
    ("approval.resolve", GrantRule::ExecApprovalMemory, "approves a command (kind exec) or a plugin action"),
    ("plugin.approval.resolve", GrantRule::MethodTable, "approves a plugin action (operator.approvals)"),
    ("exec.approvals.set", GrantRule::ApprovalsDocument, "writes the gateway host's exec allowlist"),
    ("exec.approvals.node.set", GrantRule::ApprovalsDocument, "writes a node's exec allowlist"),
    ("node.pair.approve", GrantRule::NodeCommandsWithinCaller, "approves the commands a node declared"),
    ("sessions.assignOwner", GrantRule::MethodTable, "hands a session to an owner (session ownership applies to its key)"),
    ("session.members.add", GrantRule::MethodTable, "adds a member to a session (session ownership applies to its key)"),
    ("users.setRole", GrantRule::AdminOnly, "sets a user's role"),
];

/// The rule of `method`, when it grants something.
pub fn rule_of(method: &str) -> Option<GrantRule> {
    GRANTING_METHODS.iter().find(|(m, _, _)| *m == method).map(|(_, r, _)| *r)
}

/// Node commands whose approval needs `operator.admin` (the gateway's `node-pairing-authz`):
/// they run code, read files or drive a browser on the node.
pub fn command_needs_admin(command: &str) -> bool {
    command.starts_with("system.run")
        || command.starts_with("system.execApprovals.")
        || command.starts_with("browser.proxy")
        || matches!(command, "system.which" | "fs.listDir" | "terminal.upload")
}

/// Pending node pairing requests seen on this connection: request id → declared commands.
#[derive(Debug, Default)]
pub struct PendingRequests {
    requests: Vec<(String, BTreeSet<String>)>,
}

/// At most this many pending requests are remembered per connection.
const MAX_PENDING: usize = 1024;

impl PendingRequests {
    /// Learns every request record (`requestId` and `commands`) in a `node.pair.requested`
    /// payload or a `node.pair.list` answer.
    pub fn learn(&mut self, value: &Value) {
        let records: Vec<&Value> = match value {
            Value::Object(o) if o.contains_key("requestId") => vec![value],
            Value::Object(o) => ["pending", "requests"].iter().filter_map(|k| o.get(*k)?.as_array()).flatten().collect(),
            _ => Vec::new(),
        };
        for record in records {
            let Some(id) = record["requestId"].as_str() else { continue };
            let Some(commands) = record["commands"].as_array() else { continue };
            let Some(commands) = commands.iter().map(|c| c.as_str().map(|c| crate::codec::js::trim(c).to_string())).collect::<Option<BTreeSet<_>>>() else { continue };
            self.requests.retain(|(r, _)| r != id);
            if self.requests.len() >= MAX_PENDING {
                self.requests.remove(0);
            }
            self.requests.push((id.to_string(), commands));
        }
    }

    /// The commands request `id` declares, if it was seen.
    pub fn commands(&self, id: &str) -> Option<&BTreeSet<String>> {
        self.requests.iter().find(|(r, _)| r == id).map(|(_, c)| c)
    }
}

/// Why a granting request is refused: what it would grant that `caller` does not hold.
/// `caller` is the connection's effective scopes (granted ∩ ceiling).
pub fn refusal(method: &str, params: &Value, caller: ScopeSet, pending: &PendingRequests) -> Option<String> {
    let rule = rule_of(method)?;
    let admin = caller.contains(Scope::Admin);
    if admin {
        return None;
    }
    match rule {
        GrantRule::AdminOnly => Some(format!("{method} needs operator.admin: only an identity named admin may do this")),
        GrantRule::NonOperatorRoleNeedsAdmin => {
            // No role reads as "", which is not "operator": held to admin (fails closed).
            let role = crate::codec::js::string_field(params, &["role"]).unwrap_or("");
            (role != "operator").then(|| format!("{method} of a {role:?} token needs operator.admin"))
        }
        GrantRule::TokenScopesWithinCaller => {
            // No role reads as "", which is not "operator": held to admin (fails closed).
            let role = crate::codec::js::string_field(params, &["role"]).unwrap_or("");
            if role != "operator" {
                return Some(format!("{method} of a {role:?} token needs operator.admin"));
            }
            let Some(asked) = params["scopes"].as_array() else {
                return Some(format!("{method} without scopes keeps scopes clawguard cannot see: name the scopes (at most the caller's own), or rotate as an admin"));
            };
            let beyond: Vec<String> = asked
                .iter()
                .map(|s| s.as_str().map(crate::codec::js::trim))
                .filter_map(|s| match s.and_then(Scope::parse) {
                    Some(scope) if satisfies(caller, scope) => None,
                    _ => Some(s.unwrap_or("(not a string)").to_string()),
                })
                .collect();
            (!beyond.is_empty()).then(|| format!("{method} asks for {} which the caller does not hold: a caller cannot mint more than it has", beyond.join(", ")))
        }
        GrantRule::NodeCommandsWithinCaller => {
            // No request id names no pending request: held to admin below (fails closed).
            let id = crate::codec::js::string_field(params, &["requestId"]).unwrap_or("");
            let Some(commands) = pending.commands(id) else {
                return Some(format!("{method} of request {id:?}, whose commands clawguard has not seen (list them with node.pair.list first), needs operator.admin"));
            };
            let needs_admin: Vec<&str> = commands.iter().map(String::as_str).filter(|c| command_needs_admin(c)).collect();
            if !needs_admin.is_empty() {
                return Some(format!("{method} would approve {} on a node, which needs operator.admin", needs_admin.join(", ")));
            }
            (!commands.is_empty() && !satisfies(caller, Scope::Write)).then(|| format!("{method} would approve node commands, which needs operator.write"))
        }
        GrantRule::ExecApprovalMemory | GrantRule::ApprovalsDocument | GrantRule::MethodTable => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scopes(names: &[Scope]) -> ScopeSet {
        names.iter().copied().collect()
    }

    #[test]
    fn every_granting_method_is_a_gateway_method() {
        for (method, _, why) in GRANTING_METHODS {
            assert!(crate::protocol::scopes::lookup(method).is_some(), "{method} ({why}) is not in the method table");
        }
    }

    #[test]
    fn issue11_token_rotation_cannot_mint_more_than_the_caller_holds() {
        let pairing = scopes(&[Scope::Pairing]);
        let none = PendingRequests::default();
        let r = refusal("device.token.rotate", &json!({"deviceId": "d", "role": "operator", "scopes": ["operator.admin"]}), pairing, &none).unwrap();
        assert!(r.contains("operator.admin"), "{r}");
        assert!(refusal("device.token.rotate", &json!({"deviceId": "d", "role": "operator", "scopes": ["operator.pairing"]}), pairing, &none).is_none());
        assert!(refusal("device.token.rotate", &json!({"deviceId": "d", "role": "operator", "scopes": [" operator.read"]}), scopes(&[Scope::Pairing, Scope::Write]), &none).is_none(), "write implies read");
        assert!(refusal("device.token.rotate", &json!({"deviceId": "d", "role": "operator", "scopes": ["operator.read", 7]}), pairing, &none).is_some());
        assert!(refusal("device.token.rotate", &json!({"deviceId": "d", "role": "operator"}), pairing, &none).is_some(), "unknown scopes: admin");
        assert!(refusal("device.token.rotate", &json!({"deviceId": "d", "role": " node", "scopes": []}), pairing, &none).is_some());
        assert!(refusal("device.token.rotate", &json!({"deviceId": "d", "role": "operator", "scopes": ["operator.admin"]}), scopes(&[Scope::Admin]), &none).is_none());
    }

    #[test]
    fn issue11_device_approval_is_for_admins_only() {
        let all_but_admin = ScopeSet::all().minus(scopes(&[Scope::Admin]));
        assert!(refusal("device.pair.approve", &json!({"requestId": "r"}), all_but_admin, &PendingRequests::default()).is_some());
        assert!(refusal("device.pair.approve", &json!({"requestId": "r"}), scopes(&[Scope::Admin]), &PendingRequests::default()).is_none());
    }

    #[test]
    fn issue11_node_approval_follows_the_declared_commands() {
        let mut pending = PendingRequests::default();
        pending.learn(&json!({"pending": [{"requestId": "r1", "commands": ["system.run", "system.which"]}, {"requestId": "r2", "commands": ["camera.list"]}]}));
        pending.learn(&json!({"requestId": "r3", "nodeId": "n", "commands": []}));
        let pw = scopes(&[Scope::Pairing, Scope::Write]);
        assert!(refusal("node.pair.approve", &json!({"requestId": "r1"}), pw, &pending).unwrap().contains("system.run"));
        assert!(refusal("node.pair.approve", &json!({"requestId": "r2"}), pw, &pending).is_none());
        assert!(refusal("node.pair.approve", &json!({"requestId": "r2"}), scopes(&[Scope::Pairing]), &pending).is_some());
        assert!(refusal("node.pair.approve", &json!({"requestId": "r3"}), scopes(&[Scope::Pairing]), &pending).is_none());
        assert!(refusal("node.pair.approve", &json!({"requestId": "unseen"}), pw, &pending).unwrap().contains("has not seen"));
    }
}
