//! The mutating admission webhook's decision: an `AdmissionReview` (admission.k8s.io/v1) in, the
//! review's response out, with the JSON Patch that injects clawguard into the pod, computed by
//! the same transformer as `clawguard inject`.
//!
//! A pod that asks for injection but cannot be made safe is refused (`allowed: false`, with the
//! reason): the gateway is not admitted unprotected. A review that cannot be read is answered
//! with an error the API server shows; with `failurePolicy: Fail` the pod is not created.

use crate::documents::typed;
use crate::pod::inject_template;
use crate::{Error, Outcome, Settings};
use base64::Engine as _;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use serde_json::{json, Value};

/// What the webhook needs besides the injection settings.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Namespaces whose pods are never injected (the webhook's own, so that it can restart).
    pub excluded_namespaces: Vec<String>,
}

/// The response to one `AdmissionReview`.
pub fn review(body: &[u8], settings: &Settings, scope: &Scope) -> Value {
    let review: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return answer("", false, None, Some(format!("clawguard: the AdmissionReview is not JSON: {e}"))),
    };
    let request = &review["request"];
    let uid = request["uid"].as_str().unwrap_or_default();
    if review["apiVersion"] != "admission.k8s.io/v1" || review["kind"] != "AdmissionReview" || uid.is_empty() {
        return answer(uid, false, None, Some("clawguard: expected an admission.k8s.io/v1 AdmissionReview with request.uid".into()));
    }
    if request["kind"]["kind"] != "Pod" || request["operation"] != "CREATE" {
        return answer(uid, true, None, None);
    }
    let namespace = request["namespace"].as_str().unwrap_or_default();
    if scope.excluded_namespaces.iter().any(|n| n == namespace) {
        return answer(uid, true, None, None);
    }
    match inject_pod(&request["object"], namespace, settings) {
        Ok(Some(patch)) => answer(uid, true, Some(patch), None),
        Ok(None) => answer(uid, true, None, None),
        Err(e) => answer(uid, false, None, Some(format!("clawguard: {e}"))),
    }
}

/// The JSON Patch that injects clawguard into a pod (`None`: nothing to do).
pub fn inject_pod(object: &Value, namespace: &str, settings: &Settings) -> Result<Option<Value>, Error> {
    let mut pod: Pod = typed(object, 1)?;
    // The patch is computed between the pod as its type reads it and the injected pod, so it
    // touches only what injection changed.
    let before = serde_json::to_value(&pod).map_err(|e| Error::Unreadable { index: 1, message: e.to_string() })?;
    let name = format!("Pod/{}/{}", namespace, pod.metadata.name.as_deref().or(pod.metadata.generate_name.as_deref()).unwrap_or("<unnamed>"));
    let mut template = PodTemplateSpec { metadata: Some(pod.metadata.clone()), spec: pod.spec.take() };
    match inject_template(&mut template, &Default::default(), settings, &name)? {
        Outcome::Unchanged(_) => Ok(None),
        Outcome::Changed(_) => {
            pod.metadata = template.metadata.unwrap_or_default();
            pod.spec = template.spec;
            let after = serde_json::to_value(&pod).map_err(|e| Error::Unreadable { index: 1, message: e.to_string() })?;
            Ok(Some(serde_json::to_value(json_patch::diff(&before, &after)).map_err(|e| Error::Unreadable { index: 1, message: e.to_string() })?))
        }
    }
}

fn answer(uid: &str, allowed: bool, patch: Option<Value>, refusal: Option<String>) -> Value {
    let mut response = json!({ "uid": uid, "allowed": allowed });
    if let Some(patch) = patch {
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
    }
    if let Some(message) = refusal {
        response["status"] = json!({ "code": 403, "message": message });
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response })
}
