//! Multi-document YAML in and out, each document read into its `k8s-openapi` type. A field the
//! Kubernetes API does not know is an error, not dropped: injection re-serialises the typed
//! object, so an ignored field would silently disappear from the workload.

use crate::pod::{inject_template, uninject_template};
use crate::{Error, Outcome, Report, Settings};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, PodTemplateSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The output of `inject` or `uninject`: the documents as YAML, and one report per workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Documents {
    /// Every input document, in order, changed or not.
    pub yaml: String,
    /// One per workload (and per item of a `List`).
    pub reports: Vec<Report>,
}

/// What is done to each pod template, given the workload's metadata and `Kind/name`.
type Step<'a> = dyn FnMut(&mut PodTemplateSpec, &ObjectMeta, &str) -> Result<Outcome, Error> + 'a;

/// Injects clawguard into every workload of a multi-document YAML text; with
/// `network_policy`, a NetworkPolicy per injected workload follows the documents.
pub fn inject_documents(text: &str, settings: &Settings) -> Result<Documents, Error> {
    let mut policies = Vec::new();
    let mut docs = run(text, &mut |t, meta, name| {
        let outcome = inject_template(t, &outer(meta), settings, name)?;
        if settings.network_policy && matches!(outcome, Outcome::Changed(_)) {
            policies.push(crate::network::ingress_only_to_clawguard(t, meta, name)?);
        }
        Ok(outcome)
    })?;
    for policy in policies {
        let yaml = serde_yaml_ng::to_string(&policy).map_err(|e| Error::Unreadable { index: 0, message: format!("cannot write YAML: {e}") })?;
        docs.yaml = if docs.yaml.is_empty() { yaml } else { format!("{}---\n{yaml}", docs.yaml) };
    }
    Ok(docs)
}

/// Removes clawguard from every workload injected by [`inject_documents`].
pub fn uninject_documents(text: &str) -> Result<Documents, Error> {
    run(text, &mut |t, _, name| uninject_template(t, name))
}

fn run(text: &str, step: &mut Step<'_>) -> Result<Documents, Error> {
    let mut out = Vec::new();
    let mut reports = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value = Value::deserialize(doc).map_err(|e| Error::Unreadable { index, message: format!("not YAML: {e}") })?;
        if value.is_null() {
            continue;
        }
        let value = transform(value, index, step, &mut reports)?;
        out.push(serde_yaml_ng::to_string(&value).map_err(|e| Error::Unreadable { index, message: format!("cannot write YAML: {e}") })?);
    }
    Ok(Documents { yaml: out.join("---\n"), reports })
}

/// Reads `value` as `T`, refusing fields `T` does not have (each named by its path).
pub fn typed<T: DeserializeOwned>(value: &Value, index: usize) -> Result<T, Error> {
    let mut unknown = Vec::new();
    // serde_ignored writes `?` for each optional level: `spec.?.template` is `spec.template`.
    let t = serde_ignored::deserialize(value.clone(), |path| unknown.push(path.to_string().replace(".?", ""))).map_err(|e| Error::Unreadable { index, message: e.to_string() })?;
    if !unknown.is_empty() {
        return Err(Error::Unreadable { index, message: format!("fields the Kubernetes API does not have (misspelled or from another version): {}", unknown.join(", ")) });
    }
    Ok(t)
}

fn to_value<T: Serialize>(t: &T, index: usize) -> Result<Value, Error> {
    serde_json::to_value(t).map_err(|e| Error::Unreadable { index, message: e.to_string() })
}

fn name_of(kind: &str, meta: &ObjectMeta) -> String {
    format!("{kind}/{}", meta.name.as_deref().or(meta.generate_name.as_deref()).unwrap_or("<unnamed>"))
}

fn outer(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.annotations.clone().unwrap_or_default()
}

/// Runs `step` on the pod template of a workload document; other documents pass unchanged.
fn transform(value: Value, index: usize, step: &mut Step<'_>, reports: &mut Vec<Report>) -> Result<Value, Error> {
    let api = value["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = value["kind"].as_str().unwrap_or_default().to_string();
    let mut report = |workload: String, outcome: Outcome| reports.push(Report { workload, outcome });
    macro_rules! template_of {
        ($ty:ty, $w:ident => $template:expr) => {{
            let mut workload: $ty = typed(&value, index)?;
            let name = name_of(&kind, &workload.metadata);
            let meta = workload.metadata.clone();
            let $w = &mut workload;
            let template: &mut PodTemplateSpec = $template.ok_or_else(|| Error::Refused { workload: name.clone(), reason: "it has no pod template".into() })?;
            let outcome = step(template, &meta, &name)?;
            report(name, outcome);
            to_value(&workload, index)
        }};
    }
    match (api.as_str(), kind.as_str()) {
        ("v1", "Pod") => {
            let mut pod: Pod = typed(&value, index)?;
            let name = name_of(&kind, &pod.metadata);
            let mut template = PodTemplateSpec { metadata: Some(pod.metadata.clone()), spec: pod.spec.take() };
            // A pod's own annotations are its template's: none come from outside.
            let meta = ObjectMeta { annotations: None, ..pod.metadata.clone() };
            let outcome = step(&mut template, &meta, &name)?;
            pod.metadata = template.metadata.unwrap_or_default();
            pod.spec = template.spec;
            report(name, outcome);
            to_value(&pod, index)
        }
        ("apps/v1", "Deployment") => template_of!(Deployment, w => w.spec.as_mut().map(|s| &mut s.template)),
        ("apps/v1", "StatefulSet") => template_of!(StatefulSet, w => w.spec.as_mut().map(|s| &mut s.template)),
        ("apps/v1", "DaemonSet") => template_of!(DaemonSet, w => w.spec.as_mut().map(|s| &mut s.template)),
        ("apps/v1", "ReplicaSet") => template_of!(ReplicaSet, w => w.spec.as_mut().and_then(|s| s.template.as_mut())),
        ("batch/v1", "Job") => template_of!(Job, w => w.spec.as_mut().map(|s| &mut s.template)),
        ("batch/v1", "CronJob") => template_of!(CronJob, w => w.spec.as_mut().and_then(|s| s.job_template.spec.as_mut()).map(|s| &mut s.template)),
        ("v1", "List") => {
            let mut list = value;
            let items = list.get_mut("items").and_then(Value::as_array_mut).map(std::mem::take).unwrap_or_default();
            let mut done = Vec::with_capacity(items.len());
            for item in items {
                done.push(transform(item, index, step, reports)?);
            }
            list["items"] = Value::Array(done);
            Ok(list)
        }
        // Passed through, but read as their type first: an unknown field is an error here too.
        (api, kind) => {
            match (api, kind) {
                ("v1", "Service") => drop(typed::<Service>(&value, index)?),
                ("v1", "ConfigMap") => drop(typed::<ConfigMap>(&value, index)?),
                ("v1", "Secret") => drop(typed::<Secret>(&value, index)?),
                ("v1", "ServiceAccount") => drop(typed::<ServiceAccount>(&value, index)?),
                ("v1", "Namespace") => drop(typed::<Namespace>(&value, index)?),
                ("networking.k8s.io/v1", "NetworkPolicy") => drop(typed::<NetworkPolicy>(&value, index)?),
                _ => {}
            }
            reports.push(Report { workload: format!("{kind}/{}", value["metadata"]["name"].as_str().unwrap_or("<unnamed>")), outcome: Outcome::Unchanged("not a workload".into()) });
            Ok(value)
        }
    }
}
