//! Issue 16: properties of injection over generated pods (proptest): whatever the pod, injection
//! either refuses it or gives a pod in which the gateway listens only on loopback and clawguard
//! holds its port; injecting again changes nothing; uninjecting gives the pod back exactly.

use clawguard_inject::{inject_template, uninject_template, Outcome, Settings};
use k8s_openapi::api::core::v1::{Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn port_ref() -> impl Strategy<Value = IntOrString> {
    prop_oneof![(1000i32..1010).prop_map(IntOrString::Int), Just(IntOrString::Int(18789)), prop_oneof![Just("gateway"), Just("http"), Just("metrics")].prop_map(|s| IntOrString::String(s.into()))]
}

fn probe() -> impl Strategy<Value = Option<Probe>> {
    prop_oneof![
        Just(None),
        (port_ref(), "/[a-z]{1,8}").prop_map(|(port, path)| Some(Probe { http_get: Some(HTTPGetAction { path: Some(path), port, ..Default::default() }), period_seconds: Some(10), ..Default::default() })),
        port_ref().prop_map(|port| Some(Probe { tcp_socket: Some(TCPSocketAction { port, ..Default::default() }), ..Default::default() })),
    ]
}

fn ports() -> impl Strategy<Value = Option<Vec<ContainerPort>>> {
    prop::option::of(prop::collection::vec((prop::option::of(prop_oneof![Just("gateway"), Just("http"), Just("metrics")]), prop_oneof![Just(18789), 1000i32..1010, Just(15020)]), 0..3).prop_map(|v| {
        v.into_iter().map(|(name, port)| ContainerPort { name: name.map(String::from), container_port: port, ..Default::default() }).collect()
    }))
}

fn gateway() -> impl Strategy<Value = Container> {
    let flags = prop::collection::vec(prop_oneof![
        Just(vec!["--port".to_string(), "18789".to_string()]),
        Just(vec!["--port=3000".to_string()]),
        Just(vec!["--bind".to_string(), "lan".to_string()]),
        Just(vec!["--bind=custom".to_string()]),
        Just(vec!["--auth".to_string(), "token".to_string()]),
        Just(vec!["--verbose".to_string()]),
    ], 0..4);
    (flags, any::<bool>(), prop::option::of(prop_oneof![Just("18789"), Just("4000")]), ports(), probe(), probe()).prop_map(|(flags, in_command, env_port, ports, readiness, liveness)| {
        let flags: Vec<String> = flags.into_iter().flatten().collect();
        let (command, args) = if in_command {
            (Some([vec!["openclaw".to_string(), "gateway".to_string(), "run".to_string()], flags].concat()), None)
        } else {
            (Some(vec!["openclaw".to_string()]), Some([vec!["gateway".to_string(), "run".to_string()], flags].concat()))
        };
        Container {
            name: "gateway".into(),
            image: Some("ghcr.io/openclaw/openclaw:2026.9.6".into()),
            command,
            args,
            env: env_port.map(|v| vec![EnvVar { name: "OPENCLAW_GATEWAY_PORT".into(), value: Some(v.into()), ..Default::default() }]),
            ports,
            readiness_probe: readiness,
            liveness_probe: liveness,
            ..Default::default()
        }
    })
}

fn other() -> impl Strategy<Value = Container> {
    (ports(), probe()).prop_map(|(ports, readiness_probe)| Container { name: "sidecar-app".into(), image: Some("example.com/app:1".into()), ports, readiness_probe, ..Default::default() })
}

fn template() -> impl Strategy<Value = PodTemplateSpec> {
    (gateway(), prop::option::of(other()), any::<bool>(), prop::option::of(Just(true))).prop_map(|(gw, other, other_first, host_network)| {
        let mut containers = vec![gw];
        if let Some(o) = other {
            if other_first {
                containers.insert(0, o);
            } else {
                containers.push(o);
            }
        }
        PodTemplateSpec { metadata: None, spec: Some(PodSpec { containers, host_network, ..Default::default() }) }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn issue16_injection_is_safe_idempotent_and_reversible(original in template(), classic in any::<bool>()) {
        let settings = Settings { classic, ..Settings::default() };
        let mut t = original.clone();
        let outcome = match inject_template(&mut t, &BTreeMap::new(), &settings, "Pod/p") {
            Ok(o) => o,
            // Only what cannot be made safe is refused: the node's network, or a port taken.
            Err(e) => {
                let why = e.to_string();
                prop_assert!(why.contains("hostNetwork") || why.contains("uses port") || why.contains("must differ"), "{}", why);
                return Ok(());
            }
        };
        prop_assert!(matches!(outcome, Outcome::Changed(_)));
        let spec = t.spec.as_ref().unwrap();
        let gw = spec.containers.iter().find(|c| c.name == "gateway").unwrap();
        let line: Vec<&str> = gw.command.iter().flatten().chain(gw.args.iter().flatten()).map(String::as_str).collect();
        // The gateway listens on loopback only, once, on a port nothing else in the pod has.
        prop_assert_eq!(line.iter().filter(|t| t.starts_with("--bind")).count(), 1);
        prop_assert_eq!(line.iter().filter(|t| t.starts_with("--port")).count(), 1);
        let at = line.iter().position(|t| *t == "--bind").unwrap();
        prop_assert_eq!(line[at + 1], "loopback");
        let internal: i32 = line[line.iter().position(|t| *t == "--port").unwrap() + 1].parse().unwrap();
        let sidecar = spec.init_containers.iter().flatten().chain(&spec.containers).find(|c| c.name == "clawguard").unwrap();
        prop_assert_eq!(sidecar.restart_policy.is_some(), !classic);
        for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
            prop_assert!(c.ports.iter().flatten().all(|p| p.container_port != internal), "port {} is the gateway's loopback port", internal);
        }
        // The gateway declares none of clawguard's ports any more.
        for p in sidecar.ports.iter().flatten() {
            prop_assert!(gw.ports.iter().flatten().all(|g| g.container_port != p.container_port));
        }
        // Idempotent.
        let mut again = t.clone();
        let second = inject_template(&mut again, &BTreeMap::new(), &settings, "Pod/p").unwrap();
        prop_assert!(matches!(second, Outcome::Unchanged(_)));
        prop_assert_eq!(&again, &t);
        // Reversible, exactly.
        let mut back = t.clone();
        uninject_template(&mut back, "Pod/p").unwrap();
        prop_assert_eq!(back, original);
    }
}
