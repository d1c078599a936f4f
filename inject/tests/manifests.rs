//! Issue 16: every Kubernetes object under `deploy/kubernetes/` reads into its `k8s-openapi`
//! type (Kubernetes 1.34) with no unknown field; each kustomization lists exactly the files
//! beside it; the example's clawguard policy is a valid policy; the example Deployment injects.

use clawguard_inject::documents::typed;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text).map(|d| Value::deserialize(d).unwrap()).filter(|v| !v.is_null()).collect()
}

#[test]
fn issue16_every_deploy_manifest_is_a_known_kubernetes_object() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut failures = Vec::new();
    let mut objects = 0;
    for path in files(&root) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for doc in documents(&path) {
            let kind = (doc["apiVersion"].as_str().unwrap_or(""), doc["kind"].as_str().unwrap_or(""));
            let checked = match kind {
                ("kustomize.config.k8s.io/v1beta1", "Kustomization") => {
                    // Exactly the files beside it, each once.
                    let mut listed: Vec<String> = doc["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
                    listed.sort();
                    let mut present: Vec<String> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml").collect();
                    present.sort();
                    if listed != present {
                        failures.push(format!("{}: resources {listed:?}, files {present:?}", path.display()));
                    }
                    Ok(())
                }
                ("v1", "Namespace") => typed::<Namespace>(&doc, 1).map(drop),
                ("v1", "ServiceAccount") => typed::<ServiceAccount>(&doc, 1).map(drop),
                ("v1", "Service") => typed::<Service>(&doc, 1).map(drop),
                ("v1", "ConfigMap") => typed::<ConfigMap>(&doc, 1).map(drop),
                ("apps/v1", "Deployment") => typed::<Deployment>(&doc, 1).map(drop),
                ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => typed::<MutatingWebhookConfiguration>(&doc, 1).map(|w| {
                    for hook in w.webhooks.iter().flatten() {
                        let ok = hook.failure_policy.as_deref() == Some("Fail") && hook.side_effects == "None" && hook.reinvocation_policy.as_deref() == Some("IfNeeded");
                        let excluded = hook.namespace_selector.as_ref().and_then(|s| s.match_expressions.as_ref()).is_some_and(|e| {
                            e.iter().any(|r| r.key == "kubernetes.io/metadata.name" && r.operator == "NotIn" && r.values.iter().flatten().any(|v| v == "clawguard-system"))
                        });
                        if !ok || !excluded {
                            failures.push(format!("{}: webhook {} must fail closed, have no side effects, reinvoke if needed and exclude clawguard-system", path.display(), hook.name));
                        }
                    }
                }),
                // cert-manager's resources are CRDs, not in k8s-openapi: their shape is checked.
                ("cert-manager.io/v1", "Issuer" | "Certificate") => {
                    if doc["metadata"]["name"].is_string() && doc["spec"].is_object() {
                        Ok(())
                    } else {
                        Err(clawguard_inject::Error::Unreadable { index: 1, message: "metadata.name and spec expected".into() })
                    }
                }
                other => {
                    failures.push(format!("{name}: a kind this test does not check: {other:?}"));
                    Ok(())
                }
            };
            if let Err(e) = checked {
                failures.push(format!("{}: {e}", path.display()));
            }
            objects += 1;
        }
    }
    assert!(objects >= 14, "{objects} objects read");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn issue16_the_examples_clawguard_policy_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/example/configmap-clawguard.yaml");
    let doc = &documents(&path)[0];
    let policy = doc["data"]["policy.toml"].as_str().expect("policy.toml in the ConfigMap");
    let loaded = clawguard_policies::LoadedPolicy::parse("configmap-clawguard.yaml", policy).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.policy.audit.dir.starts_with("/var/lib/clawguard"), "what clawguard writes is on its state volume");
}

#[test]
fn issue16_the_example_in_the_docs_is_the_file_the_tests_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let docs = std::fs::read_to_string(root.join("docs/kubernetes.md")).unwrap();
    let example = std::fs::read_to_string(root.join("deploy/kubernetes/example/deployment.yaml")).unwrap();
    assert!(docs.contains(&format!("```yaml\n{example}```")), "docs/kubernetes.md shows deploy/kubernetes/example/deployment.yaml exactly");
}
