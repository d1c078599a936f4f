//! Data-driven cases (issue 18): each `tests/doctor/*.toml` gives a deployment's facts (a
//! policy, a gateway config, sockets, probes, file modes, the gateway's own audit) and the
//! findings `clawguard doctor` must report for it, exactly, with the grade.

use clawguard_doctor::{audit, Facts, Gathered, Severity};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the case shows.
    about: String,
    /// clawguard's policy (TOML); absent: the embedded default.
    policy: Option<String>,
    /// The gateway's config (JSON5); absent: not gathered.
    gateway_config: Option<String>,
    /// The rest of the facts.
    #[serde(default)]
    facts: Facts,
    /// Every check id reported (accepted ones included), in any order.
    expect: Vec<String>,
    /// Check ids reported as accepted.
    #[serde(default)]
    accepted: Vec<String>,
    /// The grade.
    grade: String,
    /// Whether `--fail-on high` fails.
    fails_on_high: Option<bool>,
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/doctor")
}

/// The facts of a case, its policy and gateway config parsed as the binary parses them.
fn facts_of(case_path: &Path) -> (Case, Facts) {
    let text = std::fs::read_to_string(case_path).unwrap();
    let case: Case = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", case_path.display()));
    let mut facts = case.facts.clone();
    let policy_text = case.policy.clone().unwrap_or_else(|| clawguard_policies::EMBEDDED_POLICY.to_string());
    match clawguard_policies::LoadedPolicy::parse("policy.toml", &policy_text) {
        Ok(loaded) => facts.policy = Some(loaded.policy),
        Err(e) => facts.policy_error = Some(e.to_string()),
    }
    facts.policy_path.get_or_insert_with(|| "policy.toml".into());
    if let Some(config) = &case.gateway_config {
        facts.gateway_config = Gathered::Found(json5::from_str(config).unwrap_or_else(|e| panic!("{}: gateway_config: {e}", case_path.display())));
        facts.gateway_config_path.get_or_insert_with(|| "/home/openclaw/.openclaw/openclaw.json".into());
    }
    (case, facts)
}

#[test]
fn issue18_every_fixture_reports_exactly_its_findings() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(cases_dir()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
    paths.sort();
    assert!(paths.len() >= 10, "expected the doctor fixtures in {}", cases_dir().display());
    let mut failures = Vec::new();
    for path in &paths {
        let (case, facts) = facts_of(path);
        let report = audit(&facts);
        let mut got: Vec<String> = report.findings.iter().map(|f| f.check.clone()).collect();
        got.sort();
        got.dedup();
        let mut want = case.expect.clone();
        want.sort();
        let mut got_accepted: Vec<String> = report.findings.iter().filter(|f| f.accepted.is_some()).map(|f| f.check.clone()).collect();
        got_accepted.sort();
        got_accepted.dedup();
        let mut want_accepted = case.accepted.clone();
        want_accepted.sort();
        let name = path.file_name().unwrap().to_string_lossy();
        if got != want {
            failures.push(format!("{name} ({}): findings {got:?}, expected {want:?}\n{}", case.about, report.to_table()));
        }
        if got_accepted != want_accepted {
            failures.push(format!("{name}: accepted {got_accepted:?}, expected {want_accepted:?}"));
        }
        if report.grade.to_string() != case.grade {
            failures.push(format!("{name}: grade {} (score {}), expected {}", report.grade, report.score, case.grade));
        }
        if let Some(fails) = case.fails_on_high {
            if report.fails(Severity::High) != fails {
                failures.push(format!("{name}: --fail-on high {}, expected {fails}", report.fails(Severity::High)));
            }
        }
        for f in &report.findings {
            for (what, text) in [("title", &f.title), ("found", &f.found), ("why", &f.why), ("fix", &f.fix)] {
                if text.trim().is_empty() {
                    failures.push(format!("{name}: {} has an empty {what}", f.check));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn issue18_sarif_of_every_fixture_validates_against_the_sarif_2_1_0_schema() {
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(cases_dir().join("sarif-schema-2.1.0.json")).unwrap()).unwrap();
    let validator = jsonschema::draft4::new(&schema).expect("the SARIF schema compiles");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(cases_dir()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
    paths.sort();
    for path in &paths {
        let (_, facts) = facts_of(path);
        let sarif = audit(&facts).to_sarif("0.1.0");
        let errors: Vec<String> = validator.iter_errors(&sarif).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        assert!(errors.is_empty(), "{}: SARIF does not validate:\n{}", path.display(), errors.join("\n"));
        assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), audit(&facts).findings.len());
    }
    // The validator is not vacuous: a result without its message is refused.
    let (_, facts) = facts_of(&paths[0]);
    let mut broken = audit(&facts).to_sarif("0.1.0");
    broken["runs"][0]["results"] = serde_json::json!([{ "ruleId": "x", "level": "fatal" }]);
    assert!(!validator.is_valid(&broken));
}

#[test]
fn issue18_json_report_has_its_stable_schema() {
    let (_, facts) = facts_of(&cases_dir().join("good-sidecar.toml"));
    let json = audit(&facts).to_json();
    assert_eq!(json["schema"], clawguard_doctor::SCHEMA);
    for key in ["score", "grade", "counts", "accepted", "findings"] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    for f in json["findings"].as_array().unwrap() {
        for key in ["check", "severity", "title", "found", "why", "fix", "source"] {
            assert!(f.get(key).is_some(), "{key} missing from {f}");
        }
    }
}
