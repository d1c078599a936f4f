//! Whether the gateway can be reached other than through clawguard: every socket listening
//! on the gateway's port, and whether that port answers on the host's own non-loopback
//! addresses.

use crate::facts::{is_loopback, Facts, Gathered};
use crate::finding::{Finding, Severity};

/// The findings on what listens on the gateway's port.
pub fn check(facts: &Facts, out: &mut Vec<Finding>) {
    let upstream = facts.policy.as_ref().map(|p| p.upstream.address).unwrap_or_else(|| ([127, 0, 0, 1], 18789).into());
    let port = upstream.port();
    match &facts.listeners {
        Gathered::Found(listeners) => {
            let exposed: Vec<_> = listeners.iter().filter(|l| l.address.port() == port && !is_loopback(l.address.ip())).collect();
            for l in &exposed {
                let who = match (&l.process, l.pid) {
                    (Some(p), Some(pid)) => format!(" by {p} (pid {pid})"),
                    (Some(p), None) => format!(" by {p}"),
                    _ => String::new(),
                };
                let wildcard = l.address.ip().is_unspecified();
                out.push(Finding::new(
                    "bypass.gateway_listens_beyond_loopback",
                    Severity::Critical,
                    "The gateway's port listens beyond loopback",
                    format!("{} is listening{who}{}; clawguard forwards to {upstream}", l.address, if wildcard { " (every address of the host)" } else { "" }),
                    "a client that connects to this address reaches the gateway directly: every clawguard protection is bypassed",
                    "openclaw config set gateway.bind loopback && openclaw gateway restart   (or start it with --bind loopback)",
                ));
            }
            if !listeners.iter().any(|l| l.address.port() == port) {
                out.push(Finding::new(
                    "bypass.gateway_not_listening",
                    Severity::Info,
                    "Nothing listens on the gateway's port",
                    format!("no socket listens on port {port} (clawguard's upstream is {upstream})"),
                    "the gateway is down, or listens elsewhere than the policy's upstream.address",
                    "start the gateway, or set upstream.address in the policy to where it listens",
                ));
            }
        }
        Gathered::Unavailable(why) => out.push(Finding::new(
            "bypass.sockets_unreadable",
            Severity::Medium,
            "The host's listening sockets could not be read",
            why.clone(),
            "whether the gateway can be reached around clawguard is unknown",
            "run clawguard doctor on the gateway's host (in its network namespace, e.g. the pod), with access to /proc/net/tcp",
        )),
        Gathered::Absent => {}
    }
    for probe in facts.probes.iter().filter(|p| p.open) {
        // A listener already reported for the same address says the same thing.
        let reported = facts.listeners.found().is_some_and(|ls| ls.iter().any(|l| l.address.port() == probe.address.port() && !is_loopback(l.address.ip()) && (l.address.ip() == probe.address.ip() || l.address.ip().is_unspecified())));
        if !reported {
            out.push(Finding::new(
                "bypass.gateway_port_answers",
                Severity::Critical,
                "The gateway's port answers on a non-loopback address",
                format!("a TCP connection to {} was accepted", probe.address),
                "something reachable from the network accepts connections on the gateway's port: a client there skips clawguard",
                "openclaw config set gateway.bind loopback && openclaw gateway restart   (and check port forwards or proxies on that port)",
            ));
        }
    }
}
