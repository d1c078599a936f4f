//! The case corpus (`tests/cases/*.toml`): frames in, decision out, through the same decision
//! function the proxy and `clawguard decide` use. A case names a policy (`embedded`, or a file
//! in `tests/cases/policies/`), the peer or a pinned identity, the frames before, the frame,
//! and what must come out.

use clawguard_filters::access::Guard;
use clawguard_filters::decide::{decide, Decision, Origin, Scenario};
use clawguard_filters::peer::Peer;
use clawguard_filters::replay::ReplayCache;
use clawguard_policies::LoadedPolicy;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    frame: String,
    expect: Expect,
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
}

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cases")
}

fn load_policy(name: &str) -> Result<LoadedPolicy, String> {
    if name == "embedded" {
        return Ok(LoadedPolicy::embedded());
    }
    let path = cases_dir().join("policies").join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    LoadedPolicy::parse(&path.display().to_string(), &text).map_err(|e| e.to_string())
}

fn run_case(path: &Path) -> Result<Decision, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let case: Case = toml::from_str(&text).map_err(|e| format!("bad case file: {e}"))?;
    let policy = load_policy(&case.policy)?;
    let guard = Guard::new(&policy.policy);
    let replay = Mutex::new(ReplayCache::new(600_000, 1000));
    for (device, signature) in &case.seen_signatures {
        assert!(replay.lock().unwrap().fresh(device, signature, NOW_MS - 1_000));
    }
    let ip = case.peer.as_deref().unwrap_or("127.0.0.1").parse().map_err(|e| format!("peer: {e}"))?;
    let after = case.after.map(|a| a.into_iter().map(|p| (p.from, p.frame)).collect());
    let scenario = Scenario::new(&guard, Peer { ip, tls: false, client_cert: None }, case.identity, after, case.frame).map_err(|e| e.to_string())?;
    let d = decide(&guard, &replay, NOW_MS, &scenario).map_err(|e| e.to_string())?;
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
