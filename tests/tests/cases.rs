//! The case corpus (`tests/cases/*.toml`): frames in, decision out, through the same decision
//! function the proxy and `clawguard decide` use. A case names a policy (`embedded`, or a file
//! in `tests/cases/policies/`), the peer or a pinned identity, the frames before, the frame,
//! and what must come out.

use clawguard_filters::access::{Guard, InMemory};
use clawguard_filters::nodes::{PinOp, Pins, Surface};
use clawguard_filters::decide::{decide, Decision, Origin, Scenario};
use clawguard_filters::peer::Peer;
use clawguard_tests::corpus::{cases_dir, load_policy};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The clock of every case: just after the captured frames' `signedAt`.
const NOW_MS: u64 = 1_795_264_737_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    policy: String,
    #[serde(default)]
    peer: Option<String>,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    seen_signatures: Vec<(String, String)>,
    #[serde(default)]
    after: Option<Vec<Prior>>,
    /// Node pins in the store before the first frame.
    #[serde(default)]
    pins: Vec<PinSeed>,
    /// A node an operator revokes after `after`, before `frame`.
    #[serde(default)]
    revoke: Option<String>,
    /// Who sends `frame` (default: the client).
    #[serde(default)]
    from: Option<Origin>,
    #[serde(default)]
    frame: Option<String>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinSeed {
    node: String,
    #[serde(default)]
    commands: Vec<String>,
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    permissions: Vec<String>,
    /// Commands the node has since declared beyond the pin (a pending request).
    #[serde(default)]
    pending: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Prior {
    from: Origin,
    frame: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: String,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    missing_scope: Option<String>,
    #[serde(default)]
    required_scopes: Option<Vec<String>>,
    #[serde(default)]
    close: Option<u16>,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    reason_contains: Option<String>,
    #[serde(default)]
    forwarded_scopes: Option<Vec<String>>,
    /// `params.commands` / `caps` of the forwarded (rewritten) connect.
    #[serde(default)]
    forwarded_commands: Option<Vec<String>>,
    #[serde(default)]
    forwarded_caps: Option<Vec<String>>,
    /// Names in `params.permissions` of the forwarded connect.
    #[serde(default)]
    forwarded_permissions: Option<Vec<String>>,
    /// Text the rewritten frame must contain / must not contain.
    #[serde(default)]
    forwarded_contains: Vec<String>,
    #[serde(default)]
    forwarded_lacks: Vec<String>,
    /// Text clawguard's own frames to the gateway must contain.
    #[serde(default)]
    answer_contains: Vec<String>,
    /// The store afterwards: `{ node = "...", commands = [...] }` (`commands` absent: no pin).
    #[serde(default)]
    pin: Option<PinExpect>,
    /// The node's pending commands afterwards (empty: no pending request).
    #[serde(default)]
    pending: Option<PinExpect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinExpect {
    node: String,
    #[serde(default)]
    commands: Option<Vec<String>>,
}

fn run_case(path: &Path) -> Result<Decision, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let case: Case = toml::from_str(&text).map_err(|e| format!("bad case file: {e}"))?;
    let policy = load_policy(&case.policy)?;
    let guard = Guard::new(&policy.policy);
    let state = InMemory::default();
    for (device, signature) in &case.seen_signatures {
        assert!(state.replay.lock().unwrap().fresh(device, signature, NOW_MS - 1_000));
    }
    for seed in &case.pins {
        let set = |v: &Vec<String>| v.iter().cloned().collect();
        let surface = Surface { commands: set(&seed.commands), caps: set(&seed.caps), permissions: set(&seed.permissions) };
        let mut declared = surface.clone();
        declared.commands.extend(seed.pending.iter().cloned());
        state.pins.apply(PinOp::Approve { device_id: seed.node.clone(), surface, by: "case".into(), at_ms: NOW_MS - 10_000 }, &guard.nodes);
        if !seed.pending.is_empty() {
            state.pins.apply(PinOp::Connect { device_id: seed.node.clone(), declared, meta: (None, None), at_ms: NOW_MS - 5_000 }, &guard.nodes);
        }
    }
    let ip = case.peer.as_deref().unwrap_or("127.0.0.1").parse().map_err(|e| format!("peer: {e}"))?;
    let after = case.after.map(|a| a.into_iter().map(|p| (p.from, p.frame)).collect());
    let frame = case.frame.clone().unwrap_or_default();
    let mut scenario = Scenario::new(&guard, Peer { ip, tls: false, client_cert: None }, case.identity, after, frame).map_err(|e| e.to_string())?;
    scenario.frame = case.frame;
    scenario.from = case.from.unwrap_or(Origin::Client);
    scenario.revoke = case.revoke;
    let d = decide(&state.env(&guard, NOW_MS), &scenario).map_err(|e| e.to_string())?;
    let e = &case.expect;
    let mut wrong = Vec::new();
    let mut check = |what: &str, expected: &Option<String>, actual: Option<String>| {
        if let Some(x) = expected {
            if actual.as_deref() != Some(x.as_str()) {
                wrong.push(format!("{what}: expected {x:?}, got {actual:?}"));
            }
        }
    };
    check("decision", &Some(e.decision.clone()), Some(d.decision.to_string()));
    check("rule", &e.rule, d.rule.clone());
    check("identity", &e.identity, Some(d.identity.clone()));
    let error = d.reply.as_ref().map(|r| r["error"].clone()).unwrap_or_default();
    check("reply error.code", &e.code, error["code"].as_str().map(String::from));
    check("reply error.details.code", &e.detail, error["details"]["code"].as_str().map(String::from));
    check("missingScope", &e.missing_scope, error["details"]["missingScope"].as_str().map(String::from));
    if let Some(required) = &e.required_scopes {
        let actual: Vec<String> = error["details"]["requiredScopes"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
        if &actual != required {
            wrong.push(format!("requiredScopes: expected {required:?}, got {actual:?}"));
        }
    }
    if let Some(code) = e.close {
        let actual = d.close.as_ref().and_then(|c| c["code"].as_u64());
        if actual != Some(code as u64) {
            wrong.push(format!("close: expected {code}, got {actual:?}"));
        }
    }
    if let Some(part) = &e.reason_contains {
        if !d.reason.as_deref().unwrap_or("").contains(part.as_str()) {
            wrong.push(format!("reason: expected it to contain {part:?}, got {:?}", d.reason));
        }
    }
    if let Some(scopes) = &e.forwarded_scopes {
        let actual: Vec<String> = d.forwarded.as_ref().and_then(|f| f["params"]["scopes"].as_array()).map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
        if &actual != scopes {
            wrong.push(format!("forwarded scopes: expected {scopes:?}, got {actual:?}"));
        }
    }
    let strings = |v: &serde_json::Value| -> Vec<String> {
        match v {
            serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
            serde_json::Value::Object(m) => m.keys().cloned().collect(),
            _ => Vec::new(),
        }
    };
    let forwarded = d.forwarded.clone().unwrap_or_default();
    for (what, expected, field) in [("commands", &e.forwarded_commands, "commands"), ("caps", &e.forwarded_caps, "caps"), ("permissions", &e.forwarded_permissions, "permissions")] {
        if let Some(x) = expected {
            let actual = strings(&forwarded["params"][field]);
            if &actual != x {
                wrong.push(format!("forwarded {what}: expected {x:?}, got {actual:?}"));
            }
        }
    }
    let forwarded_text = d.forwarded.as_ref().map(|f| f.to_string()).unwrap_or_default();
    for part in &e.forwarded_contains {
        if !forwarded_text.contains(part.as_str()) {
            wrong.push(format!("forwarded frame: expected it to contain {part:?}, got {forwarded_text}"));
        }
    }
    for part in &e.forwarded_lacks {
        if d.forwarded.is_none() || forwarded_text.contains(part.as_str()) {
            wrong.push(format!("forwarded frame: expected a rewrite without {part:?}, got {forwarded_text:?}"));
        }
    }
    let answers: String = d.to_gateway.iter().map(|f| f.to_string()).collect();
    for part in &e.answer_contains {
        if !answers.contains(part.as_str()) {
            wrong.push(format!("clawguard's frames to the gateway: expected {part:?}, got {answers:?}"));
        }
    }
    let store = state.pins.lock().unwrap().clone();
    if let Some(p) = &e.pin {
        let actual = store.pin(&p.node).map(|s| s.commands.iter().cloned().collect::<Vec<_>>());
        if actual != p.commands {
            wrong.push(format!("pin of {}: expected {:?}, got {actual:?}", p.node, p.commands));
        }
    }
    if let Some(p) = &e.pending {
        let actual = store.nodes.get(&p.node).and_then(|r| r.pending.as_ref()).map(|q| q.declared.commands.iter().cloned().collect::<Vec<_>>());
        if actual != p.commands {
            wrong.push(format!("pending of {}: expected {:?}, got {actual:?}", p.node, p.commands));
        }
    }
    if d.decision == "deny" && d.reply.as_ref().is_some_and(|r| r["error"]["details"]["source"] != "clawguard") {
        wrong.push("a clawguard refusal must say source: clawguard".into());
    }
    if wrong.is_empty() {
        Ok(d)
    } else {
        Err(format!("{}\n    {}\n    decision: {}", case.description, wrong.join("\n    "), serde_json::to_string(&d).unwrap_or_default()))
    }
}

#[test]
fn case_corpus() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(cases_dir()).unwrap().filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    paths.sort();
    assert!(paths.len() >= 80, "the corpus has {} cases; issue 3 asks for at least 80", paths.len());
    let mut failures = Vec::new();
    for path in &paths {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        match run_case(path) {
            Ok(_) => println!("ok - {name}"),
            Err(why) => {
                println!("not ok - {name}");
                failures.push(format!("{name}: {why}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), paths.len(), failures.join("\n"));
}
