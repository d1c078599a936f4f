//! Issue 16: golden files of injection. Each `tests/inject/<case>.yaml` is injected (with the
//! settings its `# settings:` line names, e.g. `classic`); the result must equal
//! `<case>.injected.yaml` and the report `<case>.report`, or, for a case that must be refused,
//! the error `<case>.refused`. `CLAWGUARD_BLESS=1 cargo test -p clawguard-inject --test golden`
//! rewrites the expected files (review the diff).
//!
//! Every case also checks the properties: injecting the output changes nothing, uninjecting
//! it gives back the input (as typed objects), and every output document reads back into its
//! `k8s-openapi` type with no unknown field.

use clawguard_inject::{inject_documents, uninject_documents, Error, Outcome, Settings};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/inject");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.to_string_lossy().ends_with(".injected.yaml"))
        .collect();
    cases.sort();
    // The Kubernetes example (docs/kubernetes.md) is a case too, recorded beside the others.
    cases.push(dir.join("../../deploy/kubernetes/example/deployment.yaml"));
    cases
}

/// Where a case's expected files are: beside it, or for the example in `tests/inject/`.
fn stem_of(case: &Path) -> PathBuf {
    if case.to_string_lossy().contains("deploy/kubernetes/example") {
        return Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/inject/example-deployment");
    }
    case.with_extension("")
}

fn settings_of(text: &str) -> Settings {
    let mut settings = Settings::default();
    for line in text.lines().filter_map(|l| l.strip_prefix("# settings:")) {
        for word in line.split_whitespace() {
            match word {
                "classic" => settings.classic = true,
                "network-policy" => settings.network_policy = true,
                other => panic!("unknown setting {other:?}"),
            }
        }
    }
    settings
}

/// The documents of a YAML text, without the NetworkPolicies injection added.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null() && v["metadata"]["labels"]["app.kubernetes.io/managed-by"] != "clawguard-inject")
        .collect()
}

fn report_text(reports: &[clawguard_inject::Report]) -> String {
    reports.iter().map(|r| format!("{r}\n")).collect()
}

/// Compares with the expected file, or writes it when blessing.
fn expect(path: &Path, got: &str, failures: &mut Vec<String>) {
    if std::env::var_os("CLAWGUARD_BLESS").is_some() {
        std::fs::write(path, got).unwrap();
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(want) if want == got => {}
        Ok(want) => failures.push(format!("{}: differs\n--- expected\n{want}\n--- got\n{got}", path.display())),
        Err(_) => failures.push(format!("{}: missing (CLAWGUARD_BLESS=1 writes it)\n--- got\n{got}", path.display())),
    }
}

#[test]
fn issue16_every_golden_case_injects_as_recorded_and_round_trips() {
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 15, "the cases were read: {all:?}");
    for case in &all {
        let text = std::fs::read_to_string(case).unwrap();
        let settings = settings_of(&text);
        let stem = stem_of(case);
        match inject_documents(&text, &settings) {
            Ok(out) => {
                expect(&stem.with_extension("injected.yaml"), &out.yaml, &mut failures);
                expect(&stem.with_extension("report"), &report_text(&out.reports), &mut failures);
                // inject ∘ inject = inject.
                let again = inject_documents(&out.yaml, &settings).unwrap_or_else(|e| panic!("{}: injecting the output: {e}", case.display()));
                if again.yaml != out.yaml || again.reports.iter().any(|r| matches!(r.outcome, Outcome::Changed(_))) {
                    failures.push(format!("{}: injecting the injected workload changed it", case.display()));
                }
                // uninject ∘ inject = identity (the input as its typed objects write it).
                let back = uninject_documents(&out.yaml).unwrap_or_else(|e| panic!("{}: uninject: {e}", case.display()));
                let normalised = uninject_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
                if documents(&back.yaml) != documents(&normalised.yaml) {
                    failures.push(format!("{}: uninject did not restore the input\n--- input\n{}\n--- uninjected\n{}", case.display(), normalised.yaml, back.yaml));
                }
                // Every output document is a known object with no unknown field.
                if let Err(e) = uninject_documents(&out.yaml).and_then(|_| inject_documents(&out.yaml, &settings)) {
                    failures.push(format!("{}: the output does not read back: {e}", case.display()));
                }
            }
            Err(e) => {
                let name = case.file_name().unwrap().to_string_lossy();
                if !(name.starts_with("refused-") || name.starts_with("unreadable-")) {
                    failures.push(format!("{}: refused: {e}", case.display()));
                }
                match &e {
                    Error::Refused { .. } if name.starts_with("refused-") => {}
                    Error::Unreadable { .. } if name.starts_with("unreadable-") => {}
                    other => failures.push(format!("{}: the wrong kind of error: {other:?}", case.display())),
                }
                expect(&stem.with_extension("refused"), &format!("{e}\n"), &mut failures);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
