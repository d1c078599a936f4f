//! Issue 16: webhook round trips. Each `tests/inject/admission/<case>.request.json` is an
//! `AdmissionReview` the API server would send; the answer must equal `<case>.response.json`
//! (`CLAWGUARD_BLESS=1` rewrites it), and a patch, applied to the request's object with a JSON
//! Patch implementation, must give the pod `clawguard inject` gives for the same object.

use base64::Engine as _;
use clawguard_inject::admission::{review, Scope};
use clawguard_inject::{inject_documents, Settings};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

#[test]
fn issue16_admission_reviews_are_answered_as_recorded_and_patch_as_the_cli_injects() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/inject/admission");
    let mut requests: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().ends_with(".request.json")).collect();
    requests.sort();
    assert!(requests.len() >= 7, "{requests:?}");
    let settings = Settings::default();
    let scope = Scope { excluded_namespaces: vec!["clawguard-system".into()] };
    let mut failures = Vec::new();
    let mut patched = 0;
    for path in &requests {
        let body = std::fs::read(path).unwrap();
        let answer = review(&body, &settings, &scope);
        let text = serde_json::to_string_pretty(&answer).unwrap() + "\n";
        let expected = path.to_string_lossy().replace(".request.json", ".response.json");
        if std::env::var_os("CLAWGUARD_BLESS").is_some() {
            std::fs::write(&expected, &text).unwrap();
        } else if std::fs::read_to_string(&expected).ok().as_deref() != Some(text.as_str()) {
            failures.push(format!("{}: the answer differs from {expected}:\n{text}", path.display()));
        }
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if answer["response"]["uid"] != request["request"]["uid"] && request["request"]["uid"].is_string() {
            failures.push(format!("{}: the answer's uid is not the request's", path.display()));
        }
        if let Some(patch) = answer["response"]["patch"].as_str() {
            patched += 1;
            let patch: json_patch::Patch = serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(patch).unwrap()).unwrap();
            let mut object = request["request"]["object"].clone();
            json_patch::patch(&mut object, &patch).unwrap();
            let cli = inject_documents(&serde_json::to_string(&request["request"]["object"]).unwrap(), &settings).unwrap();
            let cli: Value = Value::deserialize(serde_yaml_ng::Deserializer::from_str(&cli.yaml).next().unwrap()).unwrap();
            if object != cli {
                failures.push(format!("{}: the patched object is not what `clawguard inject` gives:\n{}\n---\n{}", path.display(), object, cli));
            }
        }
    }
    assert!(patched >= 1, "a case was patched");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
