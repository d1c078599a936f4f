//! The OpenClaw gateway's container in a pod, and its command line: which container runs
//! `openclaw gateway`, on which port, and how to make it listen on another loopback port.
//!
//! The gateway resolves its port as `--port` > `OPENCLAW_GATEWAY_PORT` > `gateway.port` >
//! 18789, and its bind as the CLI > `gateway.bind` > `loopback` (`auto` in containers), so
//! `--port P --bind loopback` on its command line always wins (the gateway's docs,
//! `docs/gateway/index.md`, "Port and bind precedence").

use k8s_openapi::api::core::v1::{Container, PodSpec};

/// The gateway's default port.
pub const DEFAULT_PORT: u16 = 18789;

/// Shells whose `-c` string injection cannot rewrite.
const SHELLS: &[&str] = &["sh", "bash", "ash", "dash", "zsh"];

fn basename(token: &str) -> &str {
    token.rsplit('/').next().unwrap_or(token)
}

/// The container's command line: `command` then `args`.
pub fn tokens(c: &Container) -> Vec<&str> {
    c.command.iter().flatten().chain(c.args.iter().flatten()).map(String::as_str).collect()
}

/// Whether the tokens start the gateway: `openclaw gateway …`, `node …/index.js gateway …`,
/// `openclaw.mjs gateway …`.
fn starts_gateway(tokens: &[&str]) -> bool {
    tokens.windows(2).any(|w| matches!(basename(w[0]), "openclaw" | "openclaw.mjs" | "openclaw.js" | "index.js") && w[1] == "gateway")
}

/// The `-c` string when the container runs its command through a shell.
pub fn shell_string(c: &Container) -> Option<&str> {
    let t = tokens(c);
    let shell = t.first().is_some_and(|first| SHELLS.contains(&basename(first)));
    let at = t.iter().position(|x| *x == "-c")?;
    shell.then(|| t.get(at + 1).copied()).flatten()
}

/// Whether the container runs the gateway (directly or inside a shell string).
pub fn runs_gateway(c: &Container) -> bool {
    if starts_gateway(&tokens(c)) {
        return true;
    }
    shell_string(c).is_some_and(|s| starts_gateway(&s.split_whitespace().collect::<Vec<_>>()))
}

/// The index of the gateway's container: the one named by the annotation, else the only one
/// running `openclaw gateway`.
pub fn find(spec: &PodSpec, named: Option<&str>) -> Result<usize, String> {
    if let Some(name) = named {
        return spec.containers.iter().position(|c| c.name == name).ok_or_else(|| {
            let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
            format!("the annotation clawguard.io/gateway-container names {name:?}, but the pod's containers are {names:?}")
        });
    }
    let found: Vec<usize> = spec.containers.iter().enumerate().filter(|(_, c)| runs_gateway(c)).map(|(i, _)| i).collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err("no container runs `openclaw gateway`: name the gateway's container with the annotation clawguard.io/gateway-container".into()),
        several => {
            let names: Vec<&str> = several.iter().map(|&i| spec.containers[i].name.as_str()).collect();
            Err(format!("several containers run `openclaw gateway` ({names:?}): name the one clawguard fronts with clawguard.io/gateway-container"))
        }
    }
}

/// The value of `--name V` or `--name=V` in the tokens (the last one, as a CLI parser keeps).
pub fn flag(tokens: &[&str], name: &str) -> Option<String> {
    let long = format!("--{name}");
    let with_eq = format!("--{name}=");
    let mut value = None;
    for (i, t) in tokens.iter().enumerate() {
        if *t == long {
            value = tokens.get(i + 1).map(|v| v.to_string());
        } else if let Some(v) = t.strip_prefix(&with_eq) {
            value = Some(v.to_string());
        }
    }
    value
}

/// Removes every `--name V` and `--name=V` from a list; whether any was there.
pub fn strip_flag(list: &mut Vec<String>, name: &str) -> bool {
    let long = format!("--{name}");
    let with_eq = format!("--{name}=");
    let before = list.len();
    let mut out = Vec::with_capacity(list.len());
    let mut skip = false;
    for t in list.drain(..) {
        if skip {
            skip = false;
            continue;
        }
        if t == long {
            skip = true;
        } else if !t.starts_with(&with_eq) {
            out.push(t);
        }
    }
    *list = out;
    list.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(command: &[&str], args: &[&str]) -> Container {
        let list = |v: &[&str]| (!v.is_empty()).then(|| v.iter().map(|s| s.to_string()).collect());
        Container { name: "c".into(), command: list(command), args: list(args), ..Container::default() }
    }

    #[test]
    fn issue16_the_gateway_is_told_by_its_command_line() {
        assert!(runs_gateway(&container(&["node", "/app/dist/index.js", "gateway", "run"], &[])));
        assert!(runs_gateway(&container(&["openclaw"], &["gateway", "--port", "18789"])));
        assert!(runs_gateway(&container(&["sh", "-c", "exec openclaw gateway run --bind lan"], &[])));
        assert!(!runs_gateway(&container(&["openclaw"], &["node", "run"])));
        assert!(!runs_gateway(&container(&["nginx"], &[])));
        assert_eq!(shell_string(&container(&["/bin/sh", "-c", "openclaw gateway"], &[])), Some("openclaw gateway"));
        assert_eq!(shell_string(&container(&["openclaw"], &["gateway"])), None);
    }

    #[test]
    fn issue16_flags_are_read_and_removed_in_both_spellings() {
        let t = ["openclaw", "gateway", "--port", "1", "--bind=lan", "--port=2"];
        assert_eq!(flag(&t, "port").as_deref(), Some("2"));
        assert_eq!(flag(&t, "bind").as_deref(), Some("lan"));
        let mut list: Vec<String> = t.iter().map(|s| s.to_string()).collect();
        assert!(strip_flag(&mut list, "port"));
        assert_eq!(list, ["openclaw", "gateway", "--bind=lan"]);
        assert!(!strip_flag(&mut list, "port"));
    }
}
