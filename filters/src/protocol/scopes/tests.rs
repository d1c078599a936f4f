//! The gateway's authorization rules, case by case.

use super::*;
use serde_json::json;

fn set(names: &[Scope]) -> ScopeSet {
    names.iter().copied().collect()
}

fn missing(method: &str, params: Value, scopes: &[Scope]) -> Option<Scope> {
    match authorize(method, &params, Role::Operator, set(scopes)) {
        Ok(()) => None,
        Err(Refusal::MissingScope { missing, .. }) => Some(missing),
        Err(other) => panic!("unexpected {other:?}"),
    }
}

#[test]
fn table_is_sorted_unique_and_complete() {
    assert!(METHODS.windows(2).all(|w| w[0].0 < w[1].0), "binary search needs a sorted table");
    assert!(METHODS.len() >= 482, "{}", METHODS.len());
    assert_eq!(crate::protocol::method_table::GATEWAY_VERSION, "2026.9.6");
    for (name, scope) in [
        ("config.get", Required::Scope(Scope::Read)),
        ("config.apply", Required::Scope(Scope::Admin)),
        ("node.invoke", Required::Dynamic),
        ("node.invoke.result", Required::NodeRole),
        ("device.pair.approve", Required::Scope(Scope::Pairing)),
        // 2026.9.6 overrides the 2026.9.1 schema for these three.
        ("users.self", Required::Scope(Scope::Read)),
        ("environments.list", Required::Dynamic),
        ("sessions.github.publish", Required::Scope(Scope::SessionsWrite)),
    ] {
        assert_eq!(lookup(name), Some(scope), "{name}");
    }
    assert_eq!(lookup("no.such.method"), None);
}

#[test]
fn implication_rules() {
    use Scope::*;
    for s in Scope::ALL {
        assert!(satisfies(set(&[Admin]), s), "admin satisfies {s}");
        assert!(satisfies(set(&[s]), s), "{s} satisfies itself");
    }
    assert!(satisfies(set(&[Write]), Read));
    assert!(satisfies(set(&[Write]), Talk));
    assert!(satisfies(set(&[Write]), SessionsWrite));
    assert!(satisfies(set(&[Write]), SessionsRead));
    assert!(satisfies(set(&[Read]), SessionsRead));
    assert!(satisfies(set(&[SessionsWrite]), SessionsRead));
    assert!(!satisfies(set(&[Read]), Write));
    assert!(!satisfies(set(&[SessionsRead]), Read));
    for only_self in [TalkSecrets, Approvals, Pairing, Questions] {
        assert!(!satisfies(set(&[Write, Read, SessionsWrite, Talk]), only_self), "{only_self}");
    }
    assert!(!satisfies(set(&[Read]), Admin));
}

#[test]
fn static_methods() {
    use Scope::*;
    assert_eq!(missing("status", json!({}), &[Read]), None);
    assert_eq!(missing("status", json!({}), &[Write]), None, "write satisfies read");
    assert_eq!(missing("config.apply", json!({}), &[Read, Write]), Some(Admin));
    assert_eq!(missing("node.pair.approve", json!({}), &[Write]), Some(Pairing));
    assert_eq!(missing("exec.approval.resolve", json!({}), &[Write]), Some(Approvals));
    assert_eq!(missing("talk.speak", json!({}), &[Write]), None, "write satisfies talk");
    assert_eq!(missing("anything.unknown", json!({}), &[Read, Write]), Some(Admin), "unknown methods need admin");
    assert_eq!(missing("anything.unknown", json!({}), &[Admin]), None);
    assert_eq!(missing("connect", json!({}), &[Read, Write]), Some(Admin), "a second connect needs admin");
}

#[test]
fn health_and_scope_upgrade_need_nothing() {
    assert_eq!(missing("health", json!({}), &[]), None);
    assert_eq!(missing("device.scopes.requestUpgrade", json!({}), &[]), None);
    assert_eq!(missing("device.scopes.waitUpgrade", json!({}), &[]), None);
    assert_eq!(authorize("health", &Value::Null, Role::Node, ScopeSet::EMPTY), Ok(()));
}

#[test]
fn session_scopes() {
    use Scope::*;
    assert_eq!(missing("sessions.list", json!({}), &[SessionsRead]), None);
    assert_eq!(missing("chat.history", json!({}), &[SessionsRead]), None);
    assert_eq!(missing("status", json!({}), &[SessionsRead]), Some(Read), "not a session-read method");
    assert_eq!(missing("chat.send", json!({}), &[SessionsWrite]), None);
    assert_eq!(missing("sessions.patch", json!({"key": "k", "label": "x"}), &[SessionsWrite]), None);
    assert_eq!(missing("sessions.patch", json!({"key": "k", "sandboxMode": "off"}), &[SessionsWrite]), Some(Admin));
    assert_eq!(missing("send", json!({}), &[SessionsWrite]), Some(Write), "not a session-write method");
    assert_eq!(missing("question.list", json!({}), &[Questions]), None);
}

#[test]
fn roles() {
    assert_eq!(authorize("node.invoke.result", &Value::Null, Role::Operator, ScopeSet::all()), Err(Refusal::Role { role: Role::Operator }));
    assert_eq!(authorize("status", &Value::Null, Role::Node, ScopeSet::EMPTY), Err(Refusal::Role { role: Role::Node }));
    assert_eq!(authorize("node.event", &Value::Null, Role::Node, ScopeSet::EMPTY), Ok(()), "nodes are not scope-checked");
    assert_eq!(Role::parse("worker"), None);
}

#[test]
fn dynamic_rules() {
    use Scope::*;
    let w = &[Write, Read, Pairing];
    assert_eq!(missing("agent", json!({"message": "hello"}), w), None);
    assert_eq!(missing("agent", json!({"message": "/new"}), w), Some(Admin));
    assert_eq!(missing("agent", json!({"message": "  /reset now"}), w), Some(Admin));
    assert_eq!(missing("node.invoke", json!({"command": "system.which"}), w), None);
    assert_eq!(missing("node.invoke", json!({"command": "browser.proxy"}), w), Some(Admin));
    assert_eq!(missing("node.invoke", json!({"command": "terminal.upload"}), w), Some(Admin));
    assert_eq!(missing("node.invoke", json!({}), w), Some(Admin), "no command: fail closed");
    assert_eq!(missing("talk.config", json!({}), &[Read]), None);
    assert_eq!(missing("talk.config", json!({"includeSecrets": true}), &[Read]), Some(TalkSecrets));
    assert_eq!(missing("environments.list", json!({}), &[Read]), None);
    assert_eq!(missing("environments.list", json!({"runtimeId": "r"}), &[Read]), Some(Write));
    assert_eq!(missing("channels.pairing.approve", json!({}), &[Pairing]), None);
    assert_eq!(missing("channels.pairing.approve", json!({"bootstrapCommandOwner": true}), &[Pairing]), Some(Admin));
    assert_eq!(missing("fs.listDir", json!({"path": "/"}), w), None);
    assert_eq!(missing("fs.listDir", json!({"nodeId": "n"}), w), Some(Admin));
    assert_eq!(missing("sessions.create", json!({"agentId": "main"}), w), None);
    for admin in [json!({"incognito": true}), json!({"execNode": "n"}), json!({"toolOverrides": {}}), json!({"permissionMode": "full"})] {
        assert_eq!(missing("sessions.create", admin.clone(), w), Some(Admin), "{admin}");
    }
    assert_eq!(missing("sessions.patch", json!({"key": "k", "pinned": true}), w), None);
    assert_eq!(missing("sessions.patch", json!({"key": "k", "permissionMode": "full"}), w), Some(Admin));
    assert_eq!(missing("sessions.patch", json!({"key": "k", "workspace": "/"}), w), Some(Admin));
    assert_eq!(missing("sessions.patchMany", json!({"patches": [{"key": "a", "pinned": true}]}), w), None);
    assert_eq!(missing("sessions.patchMany", json!({"patches": [{"key": "a", "sandboxMode": "x"}]}), w), Some(Admin));
    assert_eq!(missing("sessions.delete", json!({"key": "k", "archivedOnly": true}), w), None);
    assert_eq!(missing("sessions.delete", json!({"key": "k"}), w), Some(Admin));
    assert_eq!(missing("sessions.delete", json!({"key": "k", "archivedOnly": true, "force": true}), w), Some(Admin));
    assert_eq!(missing("sessions.dispatch", json!({"deviceId": "d"}), w), None);
    assert_eq!(missing("sessions.dispatch", json!({}), w), Some(Admin));
    assert_eq!(missing("sessions.move", json!({"target": {"kind": "group"}}), w), None);
    assert_eq!(missing("sessions.move", json!({"target": {"kind": "profile"}}), w), Some(Admin));
    assert_eq!(missing("plugins.sessionAction", json!({}), w), None);
}

#[test]
fn refusal_lists_every_required_scope() {
    match authorize("talk.config", &json!({"includeSecrets": true}), Role::Operator, ScopeSet::EMPTY) {
        Err(Refusal::MissingScope { missing, required }) => {
            assert_eq!(missing, Scope::Read);
            assert_eq!(required, vec![Scope::Read, Scope::TalkSecrets]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn closure_follows_the_implications() {
    use Scope::*;
    assert_eq!(set(&[Admin]).closure(), ScopeSet::all());
    let w = set(&[Write]).closure();
    assert!(w.contains(Read) && w.contains(Talk) && w.contains(SessionsWrite) && w.contains(SessionsRead));
    assert!(!w.contains(Pairing) && !w.contains(Admin));
    assert_eq!(set(&[Read]).closure(), set(&[Read, SessionsRead]));
    assert_eq!(ScopeSet::EMPTY.closure(), ScopeSet::EMPTY);
}

#[test]
fn every_method_of_the_table_is_looked_up_with_its_requirement() {
    for w in METHODS.windows(2) {
        assert!(w[0].0 < w[1].0, "the table is sorted and has {} once", w[1].0);
    }
    for (method, required) in METHODS {
        assert_eq!(lookup(method), Some(*required), "{method}");
    }
    assert_eq!(lookup("no.such.method"), None);
    assert_eq!(lookup(""), None);
}
