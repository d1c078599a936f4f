//! The pod template transformation: clawguard in front of the gateway inside one pod, and back.

use crate::annotations as ann;
use crate::gateway::{self, DEFAULT_PORT};
use crate::{Error, Outcome, Settings};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// The sidecar's container name.
pub const CONTAINER: &str = "clawguard";
/// Where the policy ConfigMap is mounted (a directory, so that edits reach the file).
pub const POLICY_DIR: &str = "/etc/clawguard";
/// Where the pin store and the audit log live.
pub const STATE_DIR: &str = "/var/lib/clawguard";
const POLICY_VOLUME: &str = "clawguard-policy";
const STATE_VOLUME: &str = "clawguard-state";
const ADMIN_PORT_NAME: &str = "cg-admin";
/// The user clawguard runs as (non-root).
pub const RUN_AS: i64 = 65532;

/// Injects clawguard into a pod template. `workload` names it (`Kind/name`) in the report and
/// errors; `outer` are the workload's own annotations (the template's win).
pub fn inject_template(template: &mut PodTemplateSpec, outer: &BTreeMap<String, String>, settings: &Settings, workload: &str) -> Result<Outcome, Error> {
    let refuse = |reason: String| Error::Refused { workload: workload.to_string(), reason };
    let mut annotations = outer.clone();
    annotations.extend(template.metadata.as_ref().and_then(|m| m.annotations.clone()).unwrap_or_default());
    if annotations.get(ann::STATUS).is_some_and(|s| s == "injected") {
        return Ok(Outcome::Unchanged("already injected".into()));
    }
    if annotations.get(ann::INJECT).is_some_and(|s| s == "disabled") {
        return Ok(Outcome::Unchanged(format!("opted out ({} = disabled)", ann::INJECT)));
    }
    let before = serde_json::to_value(&*template).map_err(|e| refuse(format!("cannot read the pod template: {e}")))?;
    let spec = template.spec.get_or_insert_with(PodSpec::default);
    if spec.host_network == Some(true) {
        return Err(refuse("hostNetwork: true: the gateway's loopback is the node's, and every pod and process on the node could reach it around clawguard".into()));
    }
    let g = gateway::find(spec, annotations.get(ann::GATEWAY_CONTAINER).map(String::as_str)).map_err(refuse)?;
    let mut changes = Vec::new();

    // The gateway's port and how it is set.
    let (port, internal, admin) = {
        let gw = &spec.containers[g];
        if let Some(script) = gateway::shell_string(gw) {
            return Err(refuse(format!("container {:?} starts the gateway inside a shell string ({script:?}), which injection cannot rewrite: run it as command/args (`openclaw gateway run …`)", gw.name)));
        }
        let tokens = gateway::tokens(gw);
        if tokens.is_empty() {
            return Err(refuse(format!("container {:?} has no command or args: its image's entrypoint starts the gateway, and injection cannot add `--port`/`--bind` to it without knowing it; set command or args", gw.name)));
        }
        let env_port = gw.env.iter().flatten().find(|e| e.name == "OPENCLAW_GATEWAY_PORT").and_then(|e| e.value.clone());
        let declared: Vec<&ContainerPort> = gw.ports.iter().flatten().collect();
        let (port, from) = if let Some(v) = gateway::flag(&tokens, "port") {
            (parse_port(&v).map_err(|e| refuse(format!("the gateway's --port {v:?}: {e}")))?, "its --port")
        } else if let Some(v) = env_port {
            (parse_port(&v).map_err(|e| refuse(format!("the gateway's OPENCLAW_GATEWAY_PORT {v:?}: {e}")))?, "OPENCLAW_GATEWAY_PORT")
        } else if let [only] = declared.as_slice() {
            (u16::try_from(only.container_port).map_err(|_| refuse(format!("container port {} is not a port", only.container_port)))?, "its only containerPort")
        } else {
            (DEFAULT_PORT, "the gateway's default")
        };
        let internal = match annotations.get(ann::GATEWAY_PORT) {
            Some(v) => parse_port(v).map_err(|e| refuse(format!("{} {v:?}: {e}", ann::GATEWAY_PORT)))?,
            None => port.checked_add(10_000).unwrap_or_else(|| port - 10_000),
        };
        let admin = match annotations.get(ann::ADMIN_PORT) {
            Some(v) => parse_port(v).map_err(|e| refuse(format!("{} {v:?}: {e}", ann::ADMIN_PORT)))?,
            None => settings.admin_port,
        };
        if internal == port || admin == port || admin == internal {
            return Err(refuse(format!("the gateway's port {port}, its new loopback port {internal} and clawguard's admin port {admin} must differ")));
        }
        // Every container of a pod shares its network namespace.
        for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            for p in c.ports.iter().flatten() {
                let n = p.container_port;
                if (n == i32::from(internal) || n == i32::from(admin)) && !(c.name == gw.name && n == i32::from(port)) {
                    return Err(refuse(format!("container {:?} uses port {n}, which injection needs (the gateway's loopback port {internal}, clawguard's admin port {admin}): choose others with {} / {}", c.name, ann::GATEWAY_PORT, ann::ADMIN_PORT)));
                }
            }
        }
        changes.push(format!("gateway container {:?} (port {port}, from {from}) now listens on 127.0.0.1:{internal} only (--port {internal} --bind loopback); clawguard takes port {port}", gw.name));
        if let Some(bind) = gateway::flag(&tokens, "bind").filter(|b| b != "loopback") {
            changes.push(format!("the gateway's --bind {bind} is replaced by loopback"));
        }
        (port, internal, admin)
    };
    if spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|c| c.name == CONTAINER) {
        return Err(refuse(format!("the pod already has a container named {CONTAINER:?} but is not marked injected ({} missing): remove it, or uninject the workload it came from", ann::STATUS)));
    }
    for name in [POLICY_VOLUME, STATE_VOLUME] {
        if spec.volumes.iter().flatten().any(|v| v.name == name) {
            return Err(refuse(format!("the pod already has a volume named {name:?}")));
        }
    }

    // The gateway: another port, loopback only; its port (and the port's name) moves to clawguard.
    let gw = &mut spec.containers[g];
    for list in [gw.command.as_mut(), gw.args.as_mut()].into_iter().flatten() {
        gateway::strip_flag(list, "port");
        gateway::strip_flag(list, "bind");
    }
    gw.args.get_or_insert_with(Vec::new).extend(["--port".to_string(), internal.to_string(), "--bind".to_string(), "loopback".to_string()]);
    for e in gw.env.iter_mut().flatten().filter(|e| e.name == "OPENCLAW_GATEWAY_PORT" && e.value.is_some()) {
        e.value = Some(internal.to_string());
    }
    let mut moved: Vec<ContainerPort> = Vec::new();
    if let Some(ports) = gw.ports.as_mut() {
        let (take, keep): (Vec<_>, Vec<_>) = ports.drain(..).partition(|p| p.container_port == i32::from(port));
        moved = take;
        *ports = keep;
    }
    if gw.ports.as_ref().is_some_and(Vec::is_empty) {
        gw.ports = None;
    }
    if moved.is_empty() {
        moved.push(ContainerPort { container_port: i32::from(port), protocol: Some("TCP".into()), ..ContainerPort::default() });
    } else if let Some(names) = Some(moved.iter().filter_map(|p| p.name.clone()).collect::<Vec<_>>()).filter(|n| !n.is_empty()) {
        changes.push(format!("the named port {names:?} moves from the gateway to clawguard: Services and targetPorts stay valid"));
    }
    let moved_names: Vec<String> = moved.iter().filter_map(|p| p.name.clone()).collect();
    let passthrough = annotations.get(ann::PROBES).is_some_and(|m| m == "passthrough");
    for (kind, probe, path) in [("liveness", gw.liveness_probe.as_mut(), "/livez"), ("readiness", gw.readiness_probe.as_mut(), "/readyz"), ("startup", gw.startup_probe.as_mut(), "/readyz")] {
        let Some(probe) = probe else { continue };
        if probe.exec.as_ref().is_some_and(|e| e.command.iter().flatten().any(|t| t.contains(&format!(":{port}/")) || t.contains(&format!(":{port}'")))) {
            changes.push(format!("the gateway's {kind} exec probe calls port {port} on loopback inside the pod: it now reaches clawguard, which forwards it to the gateway"));
            continue;
        }
        let targets = |p: &IntOrString| match p {
            IntOrString::Int(n) => *n == i32::from(port),
            IntOrString::String(name) => moved_names.contains(name),
        };
        let aimed = probe.http_get.as_ref().is_some_and(|h| targets(&h.port)) || probe.tcp_socket.as_ref().is_some_and(|t| targets(&t.port)) || probe.grpc.as_ref().is_some_and(|g| g.port == i32::from(port));
        if !aimed {
            continue;
        }
        if passthrough {
            changes.push(format!("the gateway's {kind} probe stays on port {port}, now clawguard's, which forwards it ({} = passthrough)", ann::PROBES));
            continue;
        }
        probe.http_get = Some(HTTPGetAction { path: Some(path.into()), port: IntOrString::Int(i32::from(admin)), ..HTTPGetAction::default() });
        probe.tcp_socket = None;
        probe.grpc = None;
        changes.push(format!("the gateway's {kind} probe on port {port} (unreachable from the kubelet once the gateway is on loopback) moves to clawguard's admin port {admin}, {path}"));
    }

    // clawguard.
    let image = annotations.get(ann::IMAGE).cloned().unwrap_or_else(|| settings.image.clone());
    let configmap = annotations.get(ann::POLICY_CONFIGMAP).cloned().unwrap_or_else(|| settings.policy_configmap.clone());
    let admin_probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction { path: Some(path.into()), port: IntOrString::Int(i32::from(admin)), ..HTTPGetAction::default() }),
        period_seconds: Some(period),
        ..Probe::default()
    };
    let mut ports = moved;
    ports.push(ContainerPort { name: Some(ADMIN_PORT_NAME.into()), container_port: i32::from(admin), protocol: Some("TCP".into()), ..ContainerPort::default() });
    let sidecar = Container {
        name: CONTAINER.into(),
        image: Some(image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(vec![
            "run".into(),
            "--policy".into(),
            format!("{POLICY_DIR}/policy.toml"),
            "--listen".into(),
            format!("0.0.0.0:{port}"),
            "--upstream".into(),
            format!("127.0.0.1:{internal}"),
            "--admin".into(),
            format!("0.0.0.0:{admin}"),
        ]),
        ports: Some(ports),
        // Startup waits only for clawguard itself: its readiness includes the gateway's, which
        // starts after it.
        startup_probe: Some(Probe { failure_threshold: Some(30), ..admin_probe("/livez", 1) }),
        liveness_probe: Some(admin_probe("/livez", 10)),
        readiness_probe: Some(admin_probe("/readyz", 5)),
        resources: Some(resources(&annotations).map_err(refuse)?),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..SeccompProfile::default() }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount { name: POLICY_VOLUME.into(), mount_path: POLICY_DIR.into(), read_only: Some(true), ..VolumeMount::default() },
            VolumeMount { name: STATE_VOLUME.into(), mount_path: STATE_DIR.into(), ..VolumeMount::default() },
        ]),
        restart_policy: (!settings.classic).then(|| "Always".to_string()),
        ..Container::default()
    };
    if settings.classic {
        spec.containers.push(sidecar);
        changes.push(format!("clawguard ({image}) added as a regular container (classic mode: it may start after the gateway)"));
    } else {
        spec.init_containers.get_or_insert_with(Vec::new).push(sidecar);
        changes.push(format!("clawguard ({image}) added as a native sidecar (init container, restartPolicy: Always): it starts before the gateway and stops after it"));
    }
    let state = match annotations.get(ann::STATE_PVC) {
        Some(claim) => Volume { name: STATE_VOLUME.into(), persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: claim.clone(), ..Default::default() }), ..Volume::default() },
        None => Volume { name: STATE_VOLUME.into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() },
    };
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.push(Volume { name: POLICY_VOLUME.into(), config_map: Some(ConfigMapVolumeSource { name: configmap.clone(), ..Default::default() }), ..Volume::default() });
    volumes.push(state);
    changes.push(format!("policy from ConfigMap {configmap:?} mounted as the directory {POLICY_DIR} (edits hot-reload); pins and audit log in {STATE_DIR} ({})", annotations.get(ann::STATE_PVC).map_or("emptyDir".to_string(), |c| format!("PVC {c:?}"))));

    // Marked, with the way back.
    template.metadata.get_or_insert_with(Default::default).annotations.get_or_insert_with(BTreeMap::new).insert(ann::STATUS.into(), "injected".into());
    let after = serde_json::to_value(&*template).map_err(|e| refuse(format!("cannot write the pod template: {e}")))?;
    let reverse = json_patch::diff(&after, &before);
    let reverse = serde_json::to_string(&reverse).map_err(|e| refuse(format!("cannot record the reverse patch: {e}")))?;
    template.metadata.get_or_insert_with(Default::default).annotations.get_or_insert_with(BTreeMap::new).insert(ann::UNINJECT.into(), reverse);
    Ok(Outcome::Changed(changes))
}

/// Undoes [`inject_template`] exactly, with the reverse patch it recorded.
pub fn uninject_template(template: &mut PodTemplateSpec, workload: &str) -> Result<Outcome, Error> {
    let refuse = |reason: String| Error::Refused { workload: workload.to_string(), reason };
    let annotations = template.metadata.as_ref().and_then(|m| m.annotations.as_ref());
    if annotations.and_then(|a| a.get(ann::STATUS)).is_none_or(|s| s != "injected") {
        return Ok(Outcome::Unchanged("not injected".into()));
    }
    let Some(reverse) = annotations.and_then(|a| a.get(ann::UNINJECT)).cloned() else {
        return Err(refuse(format!("marked injected but without {}: it was not injected by `clawguard inject` (the webhook injects pods, which are recreated rather than uninjected)", ann::UNINJECT)));
    };
    let reverse: json_patch::Patch = serde_json::from_str(&reverse).map_err(|e| refuse(format!("{} is not a JSON Patch: {e}", ann::UNINJECT)))?;
    if let Some(a) = template.metadata.as_mut().and_then(|m| m.annotations.as_mut()) {
        a.remove(ann::UNINJECT);
    }
    let mut value = serde_json::to_value(&*template).map_err(|e| refuse(format!("cannot read the pod template: {e}")))?;
    json_patch::patch(&mut value, &reverse).map_err(|e| refuse(format!("the pod template changed since injection where the reverse patch applies ({e}): edit it back by hand")))?;
    *template = serde_json::from_value(value).map_err(|e| refuse(format!("the reverse patch gives no pod template: {e}")))?;
    Ok(Outcome::Changed(vec!["clawguard removed; the gateway's command line, ports, probes and volumes are as they were".into()]))
}

fn parse_port(v: &str) -> Result<u16, String> {
    match v.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err("expected a port number from 1 to 65535".into()),
    }
}

/// Requests and limits from the annotations, with defaults for a small proxy.
fn resources(annotations: &BTreeMap<String, String>) -> Result<ResourceRequirements, String> {
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    for (key, is_limit, name, default) in [
        (ann::CPU_REQUEST, false, "cpu", Some("50m")),
        (ann::MEMORY_REQUEST, false, "memory", Some("64Mi")),
        (ann::CPU_LIMIT, true, "cpu", None),
        (ann::MEMORY_LIMIT, true, "memory", Some("256Mi")),
    ] {
        let map = if is_limit { &mut limits } else { &mut requests };
        let value = match annotations.get(key) {
            Some(v) if is_quantity(v) => v.clone(),
            Some(v) => return Err(format!("{key} {v:?} is not a Kubernetes quantity (such as 100m, 0.5, 128Mi)")),
            None => match default {
                Some(d) => d.to_string(),
                None => continue,
            },
        };
        map.insert(name.to_string(), Quantity(value));
    }
    Ok(ResourceRequirements { requests: Some(requests), limits: (!limits.is_empty()).then_some(limits), ..ResourceRequirements::default() })
}

/// A decimal number with an optional suffix of the quantity grammar.
fn is_quantity(v: &str) -> bool {
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &v[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.chars().filter(|&c| c == '.').count() <= 1
        && ["", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].contains(&suffix)
}
