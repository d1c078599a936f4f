//! The exec corpora (issue 5), under the example policy: every bypass case in
//! `tests/exec/bypass/` (one attack per file, its class named) is denied, and every everyday
//! command in `tests/exec/benign.txt` is allowed.

use clawguard_filters::exec::{ExecPolicy, Verdict};
use clawguard_policies::LoadedPolicy;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bypass {
    class: String,
    description: String,
    #[serde(default)]
    shell: Option<String>,
    #[serde(default)]
    argv: Option<Vec<String>>,
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("exec")
}

fn example_policy() -> ExecPolicy {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policy.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    ExecPolicy::new(&LoadedPolicy::parse("policy.example.toml", &text).unwrap().policy).unwrap()
}

fn judge(policy: &ExecPolicy, case: &Bypass) -> Verdict {
    match (&case.shell, &case.argv) {
        (Some(s), None) => policy.check_shell(s),
        (None, Some(a)) => policy.check_argv(a),
        _ => panic!("case {}: give exactly one of shell or argv", case.class),
    }
}

#[test]
fn issue5_bypass_corpus_is_denied() {
    let policy = example_policy();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus_dir().join("bypass")).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    assert!(paths.len() >= 60, "the bypass corpus has {} cases", paths.len());
    let mut failures = Vec::new();
    for path in &paths {
        let case: Bypass = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        assert_eq!(name, case.class, "{}: the file is named after its class", path.display());
        let v = judge(&policy, &case);
        if v.decision != "deny" || !v.enforce {
            failures.push(format!("{} ({}): {} — {}", case.class, case.description, v.decision, v.reason));
        } else {
            println!("denied - {}: {}", case.class, v.reason);
        }
    }
    assert!(failures.is_empty(), "{} bypasses got through:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn issue5_benign_corpus_is_allowed() {
    let policy = example_policy();
    let text = std::fs::read_to_string(corpus_dir().join("benign.txt")).unwrap();
    let commands: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).collect();
    assert!(commands.len() >= 100, "the benign corpus has {} commands", commands.len());
    let failures: Vec<String> = commands
        .iter()
        .filter_map(|c| {
            let v = policy.check_shell(c);
            (v.decision != "allow").then(|| format!("{c:?}: {} — {}", v.decision, v.reason))
        })
        .collect();
    assert!(failures.is_empty(), "{} everyday commands were not allowed:\n{}", failures.len(), failures.join("\n"));
}
