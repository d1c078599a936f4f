//! The HTTP case corpus (`tests/cases/http/*.toml`): a request in, a verdict and the forwarded
//! request out, through the same decision function the proxy and `clawguard decide --http` use.
//! A case names a policy (`embedded`, or a file in `tests/cases/policies/`), the peer, the
//! request line, headers and body, and what must come out.

use clawguard_filters::access::{Guard, InMemory};
use clawguard_filters::http::{decide, HttpRequest};
use clawguard_filters::peer::Peer;
use clawguard_tests::corpus::{cases_dir, load_policy};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    policy: String,
    #[serde(default = "loopback")]
    peer: String,
    #[serde(default)]
    tls: bool,
    /// `METHOD target`, e.g. `POST /tools/invoke` or `GET /sessions/x/history?limit=5`.
    request: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Headers sent twice (the name, then each value).
    #[serde(default)]
    repeated: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    body: String,
    #[serde(default)]
    upgrade: bool,
    /// Requests judged before this one (same state: rate limits, ledger).
    #[serde(default)]
    repeat: usize,
    expect: Expect,
}

fn loopback() -> String {
    "127.0.0.1".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: String,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    reason_contains: Option<String>,
    #[serde(default)]
    removed_headers: Option<Vec<String>>,
}

fn run_case(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let case: Case = toml::from_str(&text).map_err(|e| format!("bad case file: {e}"))?;
    if case.description.trim().is_empty() {
        return Err("a case needs a description".into());
    }
    let policy = load_policy(&case.policy)?;
    let guard = Guard::new(&policy.policy);
    let state = InMemory::default();
    let env = state.env(&guard, 1_795_264_737_000);
    let peer = Peer { ip: case.peer.parse().map_err(|e| format!("peer: {e}"))?, tls: case.tls, client_cert: None };
    let (method, target) = case.request.split_once(' ').ok_or("request: expected \"METHOD target\"")?;
    let (path_part, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut headers: Vec<(String, String)> = case.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
    for (name, values) in &case.repeated {
        headers.extend(values.iter().map(|v| (name.to_ascii_lowercase(), v.clone())));
    }
    if !case.body.is_empty() && !headers.iter().any(|(k, _)| k == "content-length" || k == "transfer-encoding") {
        headers.push(("content-length".into(), case.body.len().to_string()));
    }
    let req = HttpRequest { method, path: path_part, query, headers: &headers, upgrade: case.upgrade };
    for _ in 0..case.repeat {
        decide(&env, &peer, &req, case.body.as_bytes());
    }
    let d = decide(&env, &peer, &req, case.body.as_bytes());
    let shown = serde_json::to_string_pretty(&d).unwrap_or_default();
    let e = &case.expect;
    let mut problems = Vec::new();
    if d.decision != e.decision {
        problems.push(format!("decision {:?}, expected {:?}", d.decision, e.decision));
    }
    let refusal = d.refusal.as_ref();
    if let Some(status) = e.status {
        if refusal.map(|r| r.status) != Some(status) {
            problems.push(format!("status {:?}, expected {status}", refusal.map(|r| r.status)));
        }
    }
    if let Some(rule) = &e.rule {
        if refusal.map(|r| r.rule.as_str()) != Some(rule.as_str()) {
            problems.push(format!("rule {:?}, expected {rule:?}", refusal.map(|r| &r.rule)));
        }
    }
    if let Some(code) = &e.code {
        if refusal.and_then(|r| r.details["code"].as_str()) != Some(code.as_str()) {
            problems.push(format!("code {:?}, expected {code:?}", refusal.map(|r| &r.details["code"])));
        }
    }
    if let Some(route) = &e.route {
        if d.route != Some(route.as_str()) {
            problems.push(format!("route {:?}, expected {route:?}", d.route));
        }
    }
    if let Some(identity) = &e.identity {
        if d.identity.as_deref() != Some(identity.as_str()) {
            problems.push(format!("identity {:?}, expected {identity:?}", d.identity));
        }
    }
    if let Some(p) = &e.path {
        if d.path.as_deref() != Some(p.as_str()) {
            problems.push(format!("path {:?}, expected {p:?}", d.path));
        }
    }
    if let Some(needle) = &e.reason_contains {
        if !refusal.is_some_and(|r| r.reason.contains(needle.as_str())) {
            problems.push(format!("reason does not contain {needle:?}"));
        }
    }
    if let Some(removed) = &e.removed_headers {
        if d.removed_headers != removed.iter().map(String::as_str).collect::<Vec<_>>() {
            problems.push(format!("removed headers {:?}, expected {removed:?}", d.removed_headers));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{shown}", problems.join("; ")))
    }
}

#[test]
fn http_case_corpus() {
    let dir = cases_dir().join("http");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir).expect("tests/cases/http").filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    paths.sort();
    assert!(paths.len() >= 30, "the HTTP corpus has {} cases", paths.len());
    let failures: Vec<String> = paths.iter().filter_map(|p| run_case(p).err().map(|e| format!("{}: {e}", p.file_name().unwrap().to_string_lossy()))).collect();
    assert!(failures.is_empty(), "{} of {} HTTP cases failed:\n{}", failures.len(), paths.len(), failures.join("\n\n"));
}
