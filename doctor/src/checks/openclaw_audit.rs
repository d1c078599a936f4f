//! `openclaw security audit --json`: the gateway's own findings, marked as such, mapped onto
//! clawguard's severities, and left out where clawguard reports the same thing.

use crate::facts::Gathered;
use crate::finding::{Finding, Severity, Source};
use serde_json::Value;

/// The gateway's checks that say what one of clawguard's says (openclaw check id, clawguard's).
pub const SAME_AS: &[(&str, &str)] = &[
    ("gateway.trusted_proxies_missing", "gateway.trusted_proxies.missing"),
    ("gateway.bind_no_auth", "gateway.bind.beyond_loopback"),
    ("config.insecure_or_dangerous_flags", "gateway.control_ui.allow_insecure_auth"),
    ("config.insecure_or_dangerous_flags", "gateway.control_ui.device_auth_disabled"),
    ("gateway.http.session_key_override_enabled", "gateway.http.session_key_override"),
    ("hooks.request_session_key_enabled", "gateway.hooks.request_session_key"),
    ("hooks.request_session_key_prefixes_missing", "gateway.hooks.request_session_key"),
    ("hooks.token_reuse_gateway_token", "gateway.hooks.token_reuse"),
    ("gateway.token_too_short", "gateway.auth.token_weak"),
    ("gateway.password_too_short", "gateway.auth.password_weak"),
    ("security.trust_model.multi_user_heuristic", "gateway.session.dm_scope_main"),
    ("plugins.extensions_no_allowlist", "gateway.plugins.no_allowlist"),
    ("fs.config.perms_world_readable", "fs.gateway_config.readable"),
    ("fs.config.perms_group_readable", "fs.gateway_config.readable"),
    ("fs.config.perms_writable", "fs.gateway_config.world_writable"),
    ("gateway.trusted_proxy_auth", "gateway.auth.trusted_proxy"),
    ("gateway.loopback_no_auth", "gateway.auth.none"),
    ("config.secrets.gateway_password_in_config", "gateway.secrets.plaintext"),
];

/// The gateway's findings from its audit's JSON (`{"findings": [...]}` or a list), each as a
/// finding of source `openclaw-audit`; an answer that cannot be read is itself a finding.
pub fn findings(audit: &Gathered<Value>, out: &mut Vec<Finding>) {
    let report = match audit {
        Gathered::Found(v) => v,
        Gathered::Absent => return,
        Gathered::Unavailable(why) => {
            out.push(Finding::new(
                "openclaw.audit.unavailable",
                Severity::Low,
                "`openclaw security audit` could not be run",
                why.clone(),
                "the gateway's own 126 checks (channels, plugins, skills, sandbox, file modes) are not part of this report",
                "install the openclaw CLI where clawguard doctor runs, or pass --openclaw PATH",
            ));
            return;
        }
    };
    let list = match report {
        Value::Array(items) => items,
        other => match other["findings"].as_array() {
            Some(items) => items,
            None => {
                out.push(Finding::new("openclaw.audit.unreadable", Severity::Medium, "`openclaw security audit --json` answered something clawguard cannot read", format!("expected an object with a \"findings\" list, got {}", kind(other)), "the gateway's own findings are not part of this report", "run `openclaw security audit --json` by hand and report the format"));
                return;
            }
        },
    };
    for (i, item) in list.iter().enumerate() {
        let Some(check) = item["checkId"].as_str() else {
            out.push(Finding::new("openclaw.audit.unreadable", Severity::Medium, "A finding of `openclaw security audit` has no checkId", format!("findings[{i}] is {}", kind(item)), "it cannot be named, accepted or deduplicated", "run `openclaw security audit --json` by hand"));
            continue;
        };
        let severity = match item["severity"].as_str().unwrap_or("") {
            "critical" => Severity::Critical,
            "warn" | "warning" => Severity::Medium,
            "info" => Severity::Info,
            other => {
                out.push(Finding::new("openclaw.audit.unreadable", Severity::Medium, "A finding of `openclaw security audit` has an unknown severity", format!("{check}: severity {other:?}"), "it is reported as medium", "run `openclaw security audit --json` by hand"));
                Severity::Medium
            }
        };
        let text = |k: &str| item[k].as_str().unwrap_or("").trim().to_string();
        let mut f = Finding::new(&format!("openclaw.{check}"), severity, text("title"), text("detail"), "reported by the gateway's own audit (openclaw security audit)", {
            let fix = text("remediation");
            if fix.is_empty() { format!("openclaw security audit --json   (see docs/gateway/security/audit-checks.md for {check})") } else { fix }
        });
        f.source = Source::OpenclawAudit;
        out.push(f);
    }
}

/// Removes the gateway's findings that clawguard reports too, noting them on clawguard's.
pub fn dedupe(findings: &mut Vec<Finding>) {
    let mut dropped = vec![false; findings.len()];
    for i in 0..findings.len() {
        if findings[i].source != Source::OpenclawAudit {
            continue;
        }
        let theirs = findings[i].check.trim_start_matches("openclaw.").to_string();
        for &(oc, ours) in SAME_AS.iter().filter(|(oc, _)| *oc == theirs) {
            if let Some(j) = findings.iter().position(|f| f.source == Source::Clawguard && f.check == ours) {
                findings[j].also_reported_as.get_or_insert_with(|| oc.to_string());
                dropped[i] = true;
            }
        }
    }
    let mut keep = dropped.into_iter().map(|d| !d);
    findings.retain(|_| keep.next().unwrap_or(true));
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
