//! The NetworkPolicy of an injected workload: ingress only to clawguard's ports, so that nothing
//! in the cluster reaches another port of the pod (the gateway itself is on loopback already).

use crate::pod::CONTAINER;
use crate::Error;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A NetworkPolicy selecting the injected template's pods by their labels and admitting ingress
/// only to the clawguard container's ports.
pub fn ingress_only_to_clawguard(template: &PodTemplateSpec, workload: &ObjectMeta, name: &str) -> Result<NetworkPolicy, Error> {
    let refuse = |reason: &str| Error::Refused { workload: name.to_string(), reason: reason.to_string() };
    let labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).filter(|l| !l.is_empty()).ok_or_else(|| refuse("--network-policy needs labels on the pod template to select its pods"))?;
    let spec = template.spec.as_ref().ok_or_else(|| refuse("no pod spec"))?;
    let sidecar = spec.init_containers.iter().flatten().chain(&spec.containers).find(|c| c.name == CONTAINER).ok_or_else(|| refuse("no clawguard container"))?;
    let ports = sidecar
        .ports
        .iter()
        .flatten()
        .map(|p| NetworkPolicyPort { port: Some(IntOrString::Int(p.container_port)), protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())), ..NetworkPolicyPort::default() })
        .collect();
    Ok(NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(format!("{}-clawguard", workload.name.as_deref().unwrap_or("workload"))),
            namespace: workload.namespace.clone(),
            labels: Some([("app.kubernetes.io/managed-by".to_string(), "clawguard-inject".to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(labels), ..LabelSelector::default() }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule { ports: Some(ports), ..NetworkPolicyIngressRule::default() }]),
            ..NetworkPolicySpec::default()
        }),
    })
}
