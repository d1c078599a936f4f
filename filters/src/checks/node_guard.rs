//! Node pins on the data path (`nodes` holds the store): a node's `connect` cut to its pin,
//! operators' `node.invoke` checked against the target's pin, gateway → node invocations
//! outside the pin answered on the node's behalf, pins following gateway approvals, and
//! revocation of live connections.

use crate::checks::exec::ExecPolicy;
use crate::checks::exec_guard::system_run_refusal;
use crate::protocol::gateway::encode_json;
use crate::state::nodes::{NodePolicy, PinOp, Pins, Surface};
use bytes::Bytes;
use serde_json::{json, Value};

/// Reads the surface a node declares in its `connect` params.
pub fn declared_surface(params: &Value) -> Surface {
    let names = |v: &Value| v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default();
    Surface {
        commands: names(&params["commands"]),
        caps: names(&params["caps"]),
        permissions: params["permissions"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default(),
    }
}

/// Removes `removed`'s entries from a connect frame's `params.commands`, `params.caps` and
/// `params.permissions` (removal only: the gateway's schema is closed and the fields are
/// not signed).
pub fn strip_connect(frame: &mut Value, removed: &Surface) {
    let Some(params) = frame.get_mut("params") else { return };
    if let Some(Value::Array(list)) = params.get_mut("commands") {
        list.retain(|c| !c.as_str().is_some_and(|c| removed.commands.contains(c)));
    }
    if let Some(Value::Array(list)) = params.get_mut("caps") {
        list.retain(|c| !c.as_str().is_some_and(|c| removed.caps.contains(c)));
    }
    if let Some(Value::Object(map)) = params.get_mut("permissions") {
        map.retain(|name, _| !removed.permissions.contains(name));
    }
}

fn list(set: &std::collections::BTreeSet<String>) -> String {
    if set.is_empty() {
        "nothing".into()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Why `command` may not run on `node_id`: `(rule, reason)`; `None` when it may.
pub fn invocation_refusal(pins: &dyn Pins, policy: &NodePolicy, node_id: &str, command: &str) -> Option<(&'static str, String)> {
    if let Some(why) = policy.denies(command) {
        return Some(("node-policy", format!("command {command} is denied to every node by the policy ({why})")));
    }
    match pins.pin_allows(node_id, command) {
        Some(true) => None,
        None => Some(("node-pin", format!("node {node_id} has no approved command set in clawguard's pin store: approve it (clawguard nodes approve) before invoking {command}"))),
        Some(false) => {
            let approved = pins.pin_of(node_id).map(|p| list(&p.commands)).unwrap_or_else(|| "nothing".into());
            Some(("node-pin", format!("command {command} is outside node {node_id}'s approved command set ({approved}): approve the upgrade with clawguard nodes approve")))
        }
    }
}

/// A node connection, as far as pinning goes.
#[derive(Debug)]
pub struct NodeSide {
    /// The node id (its device id).
    pub device_id: String,
    declared: Surface,
    meta: (Option<String>, Option<String>),
    had_pin: bool,
    swallow: Vec<String>,
    seq: u64,
}

impl NodeSide {
    /// A node connecting with `declared`.
    pub fn new(device_id: String, declared: Surface, meta: (Option<String>, Option<String>), had_pin: bool) -> Self {
        NodeSide { device_id, declared, meta, had_pin, swallow: Vec::new(), seq: 0 }
    }

    /// The gateway accepted the connect: record it in the store. Returns what the node
    /// declared beyond its pin (empty when nothing).
    pub fn on_hello(&mut self, pins: &dyn Pins, policy: &NodePolicy, now_ms: u64) -> Surface {
        let op = PinOp::Connect { device_id: self.device_id.clone(), declared: self.declared.clone(), meta: self.meta.clone(), at_ms: now_ms };
        pins.apply(op, policy);
        self.had_pin = pins.pin_of(&self.device_id).is_some();
        pins.preview(&self.device_id, &self.declared, policy).upgrade
    }

    /// A `node.invoke.request` event from the gateway: `None` to deliver it; otherwise the
    /// `node.invoke.result` clawguard sends the gateway in the node's name, and why.
    pub fn on_invoke_request(&mut self, pins: &dyn Pins, policy: &NodePolicy, exec: Result<&ExecPolicy, &str>, payload: &Value) -> Option<(Bytes, &'static str, String)> {
        let command = payload["command"].as_str().unwrap_or("");
        let invoke_id = payload["id"].as_str().unwrap_or("");
        let exec_refusal = || {
            if !matches!(command, "system.run" | "system.run.prepare") {
                return None;
            }
            let params = match payload["paramsJSON"].as_str().map(|p| crate::codec::js::read_json("paramsJSON", p)) {
                Some(Ok(params)) => params,
                Some(Err(e)) => return Some(("exec-policy", e.to_string())),
                None => Value::Null,
            };
            system_run_refusal(exec, &params, command, crate::checks::exec::carries_approval(&params)).filter(|r| r.enforce).map(|r| ("exec-policy", r.reason))
        };
        let (rule, reason) = if command.is_empty() || invoke_id.is_empty() {
            ("node-pin", "node.invoke.request without an id and a command cannot be evaluated".to_string())
        } else {
            invocation_refusal(pins, policy, &self.device_id, command).or_else(exec_refusal)?
        };
        self.seq += 1;
        let id = format!("clawguard-refusal-{}", self.seq);
        let frame = json!({
            "type": "req",
            "id": id,
            "method": "node.invoke.result",
            "params": {
                "id": invoke_id,
                "nodeId": self.device_id,
                "ok": false,
                "error": { "code": "FORBIDDEN", "message": format!("clawguard: {reason}") },
            },
        });
        self.swallow.push(id);
        Some((encode_json(&frame), rule, reason))
    }

    /// Whether a gateway `res` answers one of clawguard's own results (never delivered).
    pub fn swallows(&mut self, id: &str) -> bool {
        let before = self.swallow.len();
        self.swallow.retain(|s| s != id);
        before != self.swallow.len()
    }

    /// Whether the answer to request `id` is one to swallow.
    pub fn follows(&self, id: &str) -> bool {
        self.swallow.iter().any(|s| s == id)
    }

    /// Whether requests are outstanding whose answers must be swallowed.
    pub fn awaits_answers(&self) -> bool {
        !self.swallow.is_empty()
    }

    /// Whether the node had a pin when it connected and has none now (revoked).
    pub fn revoked(&self, pins: &dyn Pins) -> bool {
        self.had_pin && pins.pin_of(&self.device_id).is_none()
    }
}

/// A pairing decision an operator sent through clawguard, awaiting the gateway's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairDecision {
    /// `node.pair.approve`: the answer's `node` record becomes the pin.
    Approve,
    /// `node.pair.reject`: the answer's node loses its pending request.
    Reject,
}

/// The store change a successful pairing answer makes.
pub fn pair_outcome(decision: &PairDecision, payload: &Value, by: &str, now_ms: u64) -> Option<PinOp> {
    match decision {
        PairDecision::Approve => {
            let node = &payload["node"];
            let device_id = node["nodeId"].as_str().filter(|s| !s.is_empty())?.to_string();
            Some(PinOp::Approve { device_id, surface: declared_surface(node), by: by.to_string(), at_ms: now_ms })
        }
        PairDecision::Reject => {
            let device_id = payload["nodeId"].as_str().filter(|s| !s.is_empty())?.to_string();
            Some(PinOp::Reject { device_id })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::nodes::{FirstConnect, PinStore};
    use std::sync::Mutex;

    fn policy() -> NodePolicy {
        NodePolicy { first_connect: FirstConnect::Pending, follow_gateway_approvals: true, deny_commands: vec![clawguard_policies::Glob::new("camera.snap").unwrap()], allow_commands: vec![] }
    }

    #[test]
    fn strip_removes_entries_only() {
        let mut frame = json!({"params": {"commands": ["a", "b"], "caps": ["x"], "permissions": {"p": true, "q": false}, "role": "node"}});
        let removed = Surface { commands: ["b".to_string()].into(), caps: ["x".to_string()].into(), permissions: ["q".to_string()].into() };
        strip_connect(&mut frame, &removed);
        assert_eq!(frame, json!({"params": {"commands": ["a"], "caps": [], "permissions": {"p": true}, "role": "node"}}));
        assert_eq!(declared_surface(&frame["params"]).commands, ["a".to_string()].into());
    }

    #[test]
    fn invocations_need_a_pin_and_no_deny() {
        let pins = Mutex::new(PinStore::default());
        let p = policy();
        assert_eq!(invocation_refusal(&pins, &p, "n", "system.which").unwrap().0, "node-pin");
        pins.apply(PinOp::Approve { device_id: "n".into(), surface: Surface { commands: ["system.which".to_string()].into(), ..Default::default() }, by: "t".into(), at_ms: 1 }, &p);
        assert!(invocation_refusal(&pins, &p, "n", "system.which").is_none());
        assert!(invocation_refusal(&pins, &p, "n", "system.run").unwrap().1.contains("outside node n's approved command set (system.which)"));
        assert_eq!(invocation_refusal(&pins, &p, "n", "camera.snap").unwrap().0, "node-policy");
    }

    #[test]
    fn refused_invocations_are_answered_in_the_nodes_name_and_the_answer_swallowed() {
        let pins = Mutex::new(PinStore::default());
        let p = policy();
        let mut side = NodeSide::new("n".into(), Surface::default(), (None, None), false);
        let (frame, rule, _) = side.on_invoke_request(&pins, &p, Err("no exec policy"), &json!({"id": "inv-1", "nodeId": "n", "command": "system.run"})).unwrap();
        assert_eq!(rule, "node-pin");
        let sent: Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(sent["method"], "node.invoke.result");
        assert_eq!(sent["params"]["id"], "inv-1");
        assert_eq!(sent["params"]["ok"], false);
        assert!(side.awaits_answers());
        assert!(side.swallows(sent["id"].as_str().unwrap()));
        assert!(!side.swallows(sent["id"].as_str().unwrap()), "each answer is swallowed once");
    }

    #[test]
    fn pairing_answers_become_store_changes() {
        let approve = json!({"requestId": "r", "node": {"nodeId": "n", "commands": ["system.which"], "caps": ["system"]}});
        match pair_outcome(&PairDecision::Approve, &approve, "ops", 5).unwrap() {
            PinOp::Approve { device_id, surface, .. } => assert_eq!((device_id.as_str(), surface.commands.len(), surface.caps.len()), ("n", 1, 1)),
            other => panic!("{other:?}"),
        }
        assert_eq!(pair_outcome(&PairDecision::Reject, &json!({"nodeId": "n"}), "ops", 5), Some(PinOp::Reject { device_id: "n".into() }));
        assert_eq!(pair_outcome(&PairDecision::Approve, &json!({"requestId": "r"}), "ops", 5), None);
    }
}
