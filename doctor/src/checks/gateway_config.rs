//! The gateway's own config (`openclaw.json`) as seen from clawguard's side of the boundary:
//! whether it trusts clawguard and nothing else, and which of its own protections are off.
//! Field names and defaults are those of openclaw 2026.9.6 (`docs/gateway/configuration*.md`
//! and the handlers in `dist/`).

use crate::facts::{is_loopback, Facts};
use crate::finding::{Finding, Severity};
use serde_json::Value;
use std::net::IpAddr;

/// The findings on the gateway's config (`None`: there is no config to check).
pub fn check(facts: &Facts, config: &Value, out: &mut Vec<Finding>) {
    let file = facts.gateway_config_path.as_deref();
    let at = |path: &str| -> &Value { path.split('.').fold(config, |v, k| &v[k]) };
    let text = |path: &str| at(path).as_str().map(str::trim);
    let flag = |path: &str| at(path).as_bool();
    let push = |out: &mut Vec<Finding>, f: Finding| out.push(f.in_file(file));

    // Where the gateway listens: anything beyond loopback can be reached around clawguard.
    let bind = text("gateway.bind").unwrap_or("loopback");
    let custom = text("gateway.customBindHost");
    let beyond_loopback = match bind {
        "loopback" => false,
        "custom" => !custom.and_then(|h| h.parse::<IpAddr>().ok()).is_some_and(is_loopback),
        _ => true,
    };
    if beyond_loopback {
        let shown = if bind == "custom" { format!("gateway.bind = \"custom\", customBindHost = {:?}", custom.unwrap_or("")) } else { format!("gateway.bind = {bind:?}") };
        push(out, Finding::new(
            "gateway.bind.beyond_loopback",
            Severity::Critical,
            "The gateway is configured to listen beyond loopback",
            shown,
            "clients that reach the gateway's port directly skip every clawguard protection (identities, scope ceilings, exec policy, limits, audit)",
            "openclaw config set gateway.bind loopback   (clawguard is the only listener clients reach)",
        ));
    }

    // trustedProxies: exactly clawguard's own address(es).
    let clawguard_from = clawguard_source_addresses(facts);
    match at("gateway.trustedProxies") {
        Value::Array(entries) if !entries.is_empty() => {
            let listed: Vec<String> = entries.iter().filter_map(Value::as_str).map(|s| s.trim().to_string()).collect();
            let too_wide: Vec<&String> = listed.iter().filter(|e| !covers_only(e, &clawguard_from)).collect();
            if !too_wide.is_empty() {
                push(out, Finding::new(
                    "gateway.trusted_proxies.too_wide",
                    Severity::High,
                    "gateway.trustedProxies trusts more than clawguard",
                    format!("gateway.trustedProxies = {listed:?}; clawguard reaches the gateway from {}", join_ips(&clawguard_from)),
                    format!("{} may set X-Forwarded-For and be believed: a client there claims any address (loopback included, which the gateway auto-approves for pairing)", too_wide.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
                    format!("openclaw config set gateway.trustedProxies '{}'", serde_json::to_string(&clawguard_from.iter().map(|i| i.to_string()).collect::<Vec<_>>()).unwrap_or_default()),
                ));
            }
            if !clawguard_from.iter().all(|ip| listed.iter().any(|e| covers(e, *ip))) {
                push(out, Finding::new(
                    "gateway.trusted_proxies.missing_clawguard",
                    Severity::High,
                    "gateway.trustedProxies does not list clawguard",
                    format!("gateway.trustedProxies = {listed:?}; clawguard reaches the gateway from {}", join_ips(&clawguard_from)),
                    "the gateway refuses clawguard's attributed requests (403 proxy_attribution_required), or treats every client as local",
                    format!("openclaw config set gateway.trustedProxies '{}'", serde_json::to_string(&clawguard_from.iter().map(|i| i.to_string()).collect::<Vec<_>>()).unwrap_or_default()),
                ));
            }
        }
        _ => push(out, Finding::new(
            "gateway.trusted_proxies.missing",
            Severity::High,
            "gateway.trustedProxies is not set",
            "gateway.trustedProxies is absent or empty",
            "clawguard overwrites X-Forwarded-For with the real client; without trustedProxies the gateway refuses those requests (403 proxy_attribution_required) or, with the header dropped, sees every client as loopback and auto-approves its pairing",
            format!("openclaw config set gateway.trustedProxies '{}'", serde_json::to_string(&clawguard_from.iter().map(|i| i.to_string()).collect::<Vec<_>>()).unwrap_or_default()),
        )),
    }

    // Auth mode and credential strength.
    let mode = text("gateway.auth.mode").unwrap_or("token");
    match mode {
        "none" => push(out, Finding::new(
            "gateway.auth.none",
            Severity::High,
            "The gateway has no authentication",
            "gateway.auth.mode = \"none\"",
            "anything on the host that reaches the gateway's port is its owner; clawguard's identities can only narrow, never authenticate, what reaches the gateway",
            "openclaw config set gateway.auth.mode token   (and set gateway.auth.token to a secret reference)",
        )),
        "trusted-proxy" => push(out, Finding::new(
            "gateway.auth.trusted_proxy",
            Severity::Medium,
            "The gateway authenticates by a proxy's user header",
            "gateway.auth.mode = \"trusted-proxy\"",
            "whoever can send to the gateway from a trusted proxy address can name any user: only safe when clawguard is the only such proxy and sets the header itself",
            "prefer gateway.auth.mode = \"token\" behind clawguard, or keep gateway.trustedProxies to clawguard's address exactly",
        )),
        _ => {}
    }
    for (field, label) in [("gateway.auth.token", "token"), ("gateway.auth.password", "password")] {
        if let Some(secret) = at(field).as_str() {
            if (mode == "token" && label == "token" || mode == "password" && label == "password") && secret.trim().chars().count() < 24 {
                push(out, Finding::new(
                    &format!("gateway.auth.{label}_weak"),
                    Severity::High,
                    format!("The gateway's {label} is short"),
                    format!("{field} has {} characters", secret.trim().chars().count()),
                    "a short shared secret can be guessed; every holder of it is the gateway's owner",
                    format!("openssl rand -hex 32   (and set {field} to it, as a secret reference)"),
                ));
            }
        }
    }

    // The Control UI's insecure flags.
    for (field, check, why) in [
        ("gateway.controlUi.allowInsecureAuth", "gateway.control_ui.allow_insecure_auth", "the Control UI accepts token-only auth over plain HTTP, without a device identity: a stolen token is enough, from any browser"),
        ("gateway.controlUi.dangerouslyDisableDeviceAuth", "gateway.control_ui.device_auth_disabled", "the Control UI skips device identity and pairing entirely: the shared token alone grants the operator's scopes"),
    ] {
        if flag(field) == Some(true) {
            push(out, Finding::new(check, Severity::High, format!("{field} is on"), format!("{field} = true"), why, format!("openclaw config set {field} false")));
        }
    }

    // Exec on the gateway host (2026.9.6: `tools.exec.host` defaults to `auto`, which is the
    // gateway unless a sandbox runs; `tools.exec.mode` is the policy and defaults to `full` on
    // the gateway; the legacy `security` + `ask` pair still reads as before the migration).
    let host = text("tools.exec.host").unwrap_or("auto");
    let sandbox = text("agents.defaults.sandbox.mode").unwrap_or("off");
    let runs_on_gateway = host == "gateway" || (host == "auto" && sandbox == "off");
    let mode = text("tools.exec.mode");
    let legacy_full = text("tools.exec.security").is_none_or(|s| s == "full") && text("tools.exec.ask").is_none_or(|a| a == "off");
    let no_approvals = match mode {
        Some(m) => m == "full",
        None => legacy_full,
    };
    if runs_on_gateway && no_approvals {
        push(out, Finding::new(
            "gateway.exec.no_approvals",
            Severity::High,
            "Exec runs on the gateway host with no approvals",
            format!("tools.exec.host = {host:?}, agents.defaults.sandbox.mode = {sandbox:?}, tools.exec.mode = {:?}", mode.unwrap_or("(default: full)")),
            "any prompt that reaches a tool call runs shell commands as the gateway's user; clawguard's exec policy sees only commands sent through it, not those an agent decides to run",
            "openclaw config set tools.exec.mode ask   (or agents.defaults.sandbox.mode = \"all\")",
        ));
    } else if runs_on_gateway && sandbox == "off" {
        push(out, Finding::new(
            "gateway.sandbox.off",
            Severity::Low,
            "Agents run unsandboxed on the gateway host",
            format!("agents.defaults.sandbox.mode = {sandbox:?}, tools.exec.host = {host:?}"),
            "a command that passes approval runs with the gateway's own files and credentials",
            "openclaw config set agents.defaults.sandbox.mode all",
        ));
    }

    // The OpenAI-compatible endpoints and their URL fetching.
    if flag("gateway.http.endpoints.responses.enabled") == Some(true) {
        for kind in ["files", "images"] {
            let field = format!("gateway.http.endpoints.responses.{kind}.allowUrl");
            if flag(&field) != Some(false) {
                push(out, Finding::new(
                    &format!("gateway.responses.{kind}_allow_url"),
                    Severity::Medium,
                    format!("/v1/responses fetches {kind} from URLs"),
                    format!("gateway.http.endpoints.responses.enabled = true and {field} is {} (default true)", if flag(&field) == Some(true) { "true" } else { "unset" }),
                    "a request makes the gateway fetch a URL of the caller's choosing (SSRF); clawguard checks URLs per identity (allow_hosts) but the gateway's own fetcher follows redirects it cannot see",
                    format!("openclaw config set {field} false   (or list hosts in urlAllowlist)"),
                ));
            }
        }
    }
    if flag("gateway.http.endpoints.chatCompletions.enabled") == Some(true) && flag("gateway.http.endpoints.chatCompletions.images.allowUrl") == Some(true) {
        push(out, Finding::new(
            "gateway.chat_completions.images_allow_url",
            Severity::Medium,
            "/v1/chat/completions fetches images from URLs",
            "gateway.http.endpoints.chatCompletions.images.allowUrl = true",
            "a request makes the gateway fetch a URL of the caller's choosing (SSRF)",
            "openclaw config set gateway.http.endpoints.chatCompletions.images.allowUrl false",
        ));
    }
    // 2026.9.6 accepts `x-openclaw-session-key` on both endpoints whenever one is enabled
    // (its own audit: `collectGatewayHttpSessionKeyOverrideFindings`); no setting turns it off.
    let endpoints: Vec<&str> = [("chatCompletions", "/v1/chat/completions"), ("responses", "/v1/responses")]
        .into_iter()
        .filter(|(k, _)| flag(&format!("gateway.http.endpoints.{k}.enabled")) == Some(true))
        .map(|(_, path)| path)
        .collect();
    if !endpoints.is_empty() {
        push(out, Finding::new(
            "gateway.http.session_key_override",
            Severity::Low,
            "HTTP callers may choose their session (x-openclaw-session-key)",
            format!("{} enabled: the gateway accepts x-openclaw-session-key on them", endpoints.join(" and ")),
            "a caller names the session its request writes into; clawguard removes the header for identities without session_key_header, so only direct callers (around clawguard) keep it",
            "keep the gateway on loopback behind clawguard, and disable the endpoints you do not use: openclaw config set gateway.http.endpoints.responses.enabled false",
        ));
    }

    // Hooks.
    if flag("hooks.enabled") == Some(true) {
        if flag("hooks.allowRequestSessionKey") == Some(true) && at("hooks.allowedSessionKeyPrefixes").as_array().is_none_or(|p| p.is_empty()) {
            push(out, Finding::new(
                "gateway.hooks.request_session_key",
                Severity::Medium,
                "Hook payloads may choose their session",
                "hooks.allowRequestSessionKey = true",
                "a hook caller (one shared token) can append to any session",
                "openclaw config set hooks.allowRequestSessionKey false   (or set hooks.allowedSessionKeyPrefixes)",
            ));
        }
        if let Some(token) = at("hooks.token").as_str() {
            if at("gateway.auth.token").as_str().is_some_and(|g| g.trim() == token.trim()) {
                push(out, Finding::new(
                    "gateway.hooks.token_reuse",
                    Severity::High,
                    "The hooks token is the gateway's token",
                    "hooks.token equals gateway.auth.token",
                    "every service that posts hooks holds the gateway's owner credential",
                    "openssl rand -hex 32   (and set hooks.token to it)",
                ));
            }
        }
    }

    // TLS: with clawguard terminating TLS, the gateway's own TLS is optional on loopback.
    if flag("gateway.tls.enabled") != Some(true) && beyond_loopback {
        push(out, Finding::new(
            "gateway.tls.off_beyond_loopback",
            Severity::High,
            "The gateway listens beyond loopback without TLS",
            format!("gateway.bind = {bind:?}, gateway.tls.enabled is not true"),
            "its shared token travels in clear on the network",
            "openclaw config set gateway.bind loopback   (clawguard terminates TLS)",
        ));
    }

    // Pairing: silent approval of local devices.
    if flag("gateway.nodes.pairing.autoApproveLocal") != Some(false) {
        push(out, Finding::new(
            "gateway.pairing.auto_approve_local",
            Severity::Low,
            "The gateway approves same-host devices silently",
            "gateway.nodes.pairing.autoApproveLocal is not false (default true)",
            "any process on the gateway's host pairs a device (node or operator) without an operator: with clawguard in front, only clawguard's attribution keeps remote clients from looking local",
            "openclaw config set gateway.nodes.pairing.autoApproveLocal false",
        ));
    }

    // Sessions of several users.
    let identities = facts.policy.as_ref().map(|p| p.identities.iter().filter(|i| i.name != "default").count()).unwrap_or(0);
    if text("session.dmScope").unwrap_or("main") == "main" && identities > 1 {
        push(out, Finding::new(
            "gateway.session.dm_scope_main",
            Severity::Medium,
            "Direct messages of every user share one session",
            format!("session.dmScope = \"main\" (default) and the policy has {identities} identities"),
            "on a gateway several people use, every DM lands in agent:<id>:main: each user reads the others' conversation",
            "openclaw config set session.dmScope per-channel-peer",
        ));
    }

    // Plugins.
    if let Some(entries) = at("plugins.entries").as_object() {
        let enabled: Vec<&String> = entries.iter().filter(|(_, v)| v["enabled"].as_bool() != Some(false)).map(|(k, _)| k).collect();
        if !enabled.is_empty() && !at("plugins.allow").is_array() {
            push(out, Finding::new(
                "gateway.plugins.no_allowlist",
                Severity::Medium,
                "Plugins are enabled without plugins.allow",
                format!("plugins.entries enables {}", enabled.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
                "a plugin runs inside the gateway with its full authority; without an allowlist a newly installed one is loaded too",
                format!("openclaw config set plugins.allow '{}'", serde_json::to_string(&enabled).unwrap_or_default()),
            ));
        }
    }

    // Credentials in plaintext where a SecretRef would do.
    let mut plain = Vec::new();
    plaintext_credentials(config, String::new(), &mut plain);
    if !plain.is_empty() {
        push(out, Finding::new(
            "gateway.secrets.plaintext",
            Severity::Medium,
            "Credentials are stored in plaintext in the gateway's config",
            format!("{} (values not shown)", plain.join(", ")),
            "the config file is read by backups, support bundles and every process of its user; the gateway supports secret references for every credential",
            "replace each with a SecretRef, e.g. { \"source\": \"env\", \"provider\": \"default\", \"id\": \"OPENCLAW_GATEWAY_TOKEN\" }   (openclaw secrets configure)",
        ));
    }
}

/// Field names that hold a credential.
fn is_credential_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["token", "password", "apikey", "api_key", "secret", "bottoken", "apptoken", "signingsecret", "privatekey", "clientsecret"].iter().any(|n| lower == *n || lower.ends_with(n))
        && !["maxtokens", "tokens", "tokenfile", "passwordfile", "keyfile"].iter().any(|n| lower.ends_with(n))
}

/// The paths of string values under credential-named keys (a SecretRef object is fine;
/// `${ENV}` substitutions are references too).
fn plaintext_credentials(v: &Value, path: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match child {
                    Value::String(s) if is_credential_name(k) && !s.trim().is_empty() && !(s.trim().starts_with("${") && s.trim().ends_with('}')) => out.push(here),
                    _ => plaintext_credentials(child, here, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                plaintext_credentials(item, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The addresses clawguard's connections to the gateway come from: loopback when the
/// upstream is on loopback (the sidecar layout), else unknown beyond that address's family.
pub fn clawguard_source_addresses(facts: &Facts) -> Vec<IpAddr> {
    let upstream = facts.policy.as_ref().map(|p| p.upstream.address.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
    if is_loopback(upstream) {
        vec![if upstream.is_ipv4() { IpAddr::from([127, 0, 0, 1]) } else { upstream }]
    } else {
        vec![upstream]
    }
}

fn join_ips(ips: &[IpAddr]) -> String {
    ips.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ")
}

/// A trustedProxies entry (an address or a CIDR) as the gateway reads it.
fn parse_entry(entry: &str) -> Option<ipnet::IpNet> {
    entry.parse::<ipnet::IpNet>().ok().or_else(|| entry.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

fn covers(entry: &str, ip: IpAddr) -> bool {
    parse_entry(entry).is_some_and(|net| net.contains(&ip) || matches!(ip, IpAddr::V4(v4) if net.contains(&IpAddr::V6(v4.to_ipv6_mapped()))))
}

/// Whether the entry names only clawguard's addresses (a /32 or /128 of one of them).
fn covers_only(entry: &str, clawguard: &[IpAddr]) -> bool {
    match parse_entry(entry) {
        Some(net) => net.prefix_len() == net.max_prefix_len() && clawguard.iter().any(|ip| covers(entry, *ip)),
        None => false,
    }
}
