//! clawguard's own deployment: its listeners and TLS, identities and ceilings, modes that
//! stop enforcing, file modes, the audit log, and the gateway version the policy targets.

use crate::facts::{is_loopback, Facts, FileFacts, FileRole, Gathered};
use crate::finding::{Finding, Severity};
use clawguard_policies::{Mode, Policy};

/// The findings on clawguard's own deployment.
pub fn check(facts: &Facts, out: &mut Vec<Finding>) {
    let file = facts.policy_path.as_deref();
    if let Some(error) = &facts.policy_error {
        out.push(
            Finding::new(
                "clawguard.policy.invalid",
                Severity::Critical,
                "clawguard's policy does not load",
                error.clone(),
                "clawguard refuses to start (or keeps the previous version on reload) with this policy",
                format!("clawguard check {}   (and fix what it names)", file.unwrap_or("POLICY")),
            )
            .in_file(file),
        );
    }
    if let Some(policy) = &facts.policy {
        listeners(policy, file, out);
        identities(policy, file, out);
        modes(policy, file, out);
        audit(facts, policy, file, out);
        version(facts, policy, file, out);
    }
    for f in &facts.files {
        file_mode(f, out);
    }
}

fn listeners(policy: &Policy, file: Option<&str>, out: &mut Vec<Finding>) {
    for addr in policy.server.listen.iter().filter(|a| !is_loopback(a.ip())) {
        let (severity, why) = if policy.tls.require_for_remote {
            (Severity::Low, "remote clients that use it are refused (tls.require_for_remote): it serves no one but loopback clients, which bind to 127.0.0.1 anyway")
        } else {
            (Severity::High, "with tls.require_for_remote = false, remote clients send the gateway's token and every message in clear")
        };
        out.push(Finding::new("clawguard.listener.plaintext_remote", severity, "A plaintext listener beyond loopback", format!("server.listen includes {addr}"), why, "serve remote clients on tls.listen, and keep server.listen on 127.0.0.1").in_file(file));
    }
    if !is_loopback(policy.admin.listen.ip()) {
        out.push(Finding::new(
            "clawguard.admin.beyond_loopback",
            Severity::High,
            "The admin listener is reachable beyond loopback",
            format!("admin.listen = {}", policy.admin.listen),
            "POST /reload, the policy view and the metrics (identities, refusals) answer anyone who reaches it, without authentication",
            "admin.listen = \"127.0.0.1:15020\"   (scrape through a port-forward or the pod network only)",
        ).in_file(file));
    }
    let cert_identities: Vec<&str> = policy.identities.iter().filter(|i| !i.matcher.cert_sha256.is_empty() || !i.matcher.cert_organization.is_empty()).map(|i| i.name.as_str()).collect();
    if !cert_identities.is_empty() && policy.tls.client_ca.is_none() {
        out.push(Finding::new(
            "clawguard.mtls.identities_without_client_ca",
            Severity::High,
            "Identities match client certificates, but no client certificate is asked for",
            format!("identities {cert_identities:?} match by certificate; tls.client_ca is not set"),
            "those identities never match: their clients fall to `default` or to an address identity",
            "tls.client_ca = \"ca.pem\" and tls.client_auth = \"optional\" (or \"required\")",
        ).in_file(file));
    }
    if !policy.tls.listen.is_empty() && policy.tls.client_ca.is_none() {
        out.push(Finding::new(
            "clawguard.mtls.off",
            Severity::Info,
            "TLS without client certificates",
            "tls.listen is set and tls.client_ca is not",
            "remote clients are identified by token or address only; a client certificate (mTLS) ties an identity to a key the client holds",
            "tls.client_ca = \"ca.pem\" and [[identity]] match.cert_sha256 / cert_organization",
        ).in_file(file));
    }
}

fn has_scope(scopes: &[String], wanted: &str) -> bool {
    scopes.iter().any(|s| s == wanted)
}

fn identities(policy: &Policy, file: Option<&str>, out: &mut Vec<Finding>) {
    for id in policy.effective_identities() {
        let scopes = id.scopes.get_ref();
        let m = &id.matcher;
        let credential = !m.token.is_empty() || !m.token_sha256.is_empty() || !m.cert_sha256.is_empty() || !m.cert_organization.is_empty() || !m.device_id.is_empty();
        if id.name == "default" {
            let wide: Vec<&String> = scopes.iter().filter(|s| s.as_str() != "operator.read").collect();
            if !wide.is_empty() {
                let severity = if has_scope(scopes, "operator.admin") || has_scope(scopes, "operator.write") { Severity::High } else { Severity::Medium };
                out.push(Finding::new(
                    "clawguard.identity.default_wide",
                    severity,
                    "The `default` identity holds more than operator.read",
                    format!("identity \"default\" scopes = {scopes:?}"),
                    "`default` is every client no other identity matches: anyone who reaches clawguard with the gateway's token gets these scopes",
                    "[[identity]] name = \"default\" … scopes = [\"operator.read\"]   (grant more to named identities)",
                ).in_file(file));
            }
            continue;
        }
        if has_scope(scopes, "operator.admin") {
            let (severity, how) = if credential { (Severity::Info, "matched by a credential") } else { (Severity::High, "matched by address alone") };
            out.push(Finding::new(
                if credential { "clawguard.identity.admin" } else { "clawguard.identity.admin_by_address" },
                severity,
                format!("Identity {:?} is granted operator.admin", id.name),
                format!("identity {:?} has operator.admin, {how}", id.name),
                if credential { "admin is the gateway's whole authority (config, pairing, tokens); keep it to one named identity" } else { "every process that connects from those addresses is the gateway's admin: a compromised local process, or a client whose address is attributed as local" },
                format!("[[identity]] name = {:?} … match.token = [\"file:/run/secrets/admin-token\"]   (or drop operator.admin from its scopes)", id.name),
            ).in_file(file));
        }
    }
}

fn modes(policy: &Policy, file: Option<&str>, out: &mut Vec<Finding>) {
    if policy.mode == Mode::DryRun {
        out.push(Finding::new(
            "clawguard.mode.dry_run",
            Severity::High,
            "clawguard is in dry-run: it refuses nothing",
            "mode = \"dry-run\"",
            "every refusal is only recorded; the gateway receives every request",
            "mode = \"enforce\"   (per identity: [[identity]] mode = \"dry-run\" while you tune one)",
        ).in_file(file));
    }
    let dry: Vec<&str> = policy.identities.iter().filter(|i| i.mode == Some(Mode::DryRun)).map(|i| i.name.as_str()).collect();
    if !dry.is_empty() && policy.mode != Mode::DryRun {
        out.push(Finding::new("clawguard.mode.identity_dry_run", Severity::Medium, "Identities in dry-run", format!("identities {dry:?} have mode = \"dry-run\""), "their refusals are only recorded", "remove mode = \"dry-run\" from those identities").in_file(file));
    }
    if !policy.limits.shadow.is_empty() {
        out.push(Finding::new(
            "clawguard.limits.shadow",
            Severity::Medium,
            "Rate limits in shadow mode",
            format!("limits.shadow = {:?}", policy.limits.shadow),
            "these limits count and alert but refuse nothing",
            "limits.shadow = []",
        ).in_file(file));
    }
}

fn audit(facts: &Facts, policy: &Policy, file: Option<&str>, out: &mut Vec<Finding>) {
    if !policy.audit.enabled {
        out.push(Finding::new(
            "clawguard.audit.off",
            Severity::Medium,
            "The audit log is off",
            "audit.enabled = false",
            "refusals, pairing and exec decisions leave no tamper-evident record; the gateway's own ledger never sees what clawguard refused",
            "[audit] enabled = true",
        ).in_file(file));
        return;
    }
    if facts.audit_writable == Some(false) {
        let severity = if matches!(policy.audit.on_failure, clawguard_policies::OnFailure::Block) { Severity::Critical } else { Severity::High };
        out.push(Finding::new(
            "clawguard.audit.not_writable",
            severity,
            "The audit log directory cannot be written",
            format!("audit.dir = {}", policy.audit.dir.display()),
            "with on_failure = \"block\" every request that must be recorded is refused; with \"continue\" records are lost",
            format!("mkdir -p {0} && chown $(id -u):$(id -g) {0} && chmod 700 {0}", policy.audit.dir.display()),
        ).in_file(file));
    }
    match &facts.audit_verify {
        Gathered::Unavailable(why) => out.push(Finding::new(
            "clawguard.audit.verify_failed",
            Severity::High,
            "The audit log does not verify",
            why.clone(),
            "a chain that does not verify is no evidence: records were changed, removed or written by something else",
            format!("clawguard audit verify --dir {}   (keep the failing files for investigation; a new log starts a new chain)", policy.audit.dir.display()),
        ).in_file(file)),
        Gathered::Found(summary) => out.push(Finding::new("clawguard.audit.verified", Severity::Info, "The audit log verifies", summary.clone(), "its chain and signed checkpoints are intact", "nothing to do").in_file(file)),
        Gathered::Absent => {}
    }
}

fn version(facts: &Facts, policy: &Policy, file: Option<&str>, out: &mut Vec<Finding>) {
    if let Some(answering) = &facts.gateway_version_answering {
        if answering != &policy.gateway.version {
            out.push(Finding::new(
                "clawguard.gateway.version_mismatch",
                Severity::Medium,
                "The gateway is not the version the policy targets",
                format!("gateway.version = {:?}; the gateway answering is {answering:?}", policy.gateway.version),
                "clawguard's method table, scopes and handler readings are those of the targeted release; methods a newer gateway added are unknown to it",
                format!("gateway.version = {answering:?}   (after reviewing the release's changes), or run the targeted release"),
            ).in_file(file));
        }
    }
}

fn file_mode(f: &FileFacts, out: &mut Vec<Finding>) {
    let Some(mode) = f.mode else { return };
    let label = f.role.label();
    let id = f.role.id();
    let at = Some(f.path.as_str());
    let dir = matches!(f.role, FileRole::AuditDir);
    if mode & 0o002 != 0 {
        out.push(Finding::new(&format!("fs.{id}.world_writable"), Severity::Critical, format!("The {label} is writable by everyone"), format!("{} has mode {:o}", f.path, mode & 0o7777), "any local user can change what clawguard enforces or records", format!("chmod o-w {}", f.path)).in_file(at));
    } else if mode & 0o020 != 0 {
        out.push(Finding::new(&format!("fs.{id}.group_writable"), Severity::High, format!("The {label} is writable by its group"), format!("{} has mode {:o}", f.path, mode & 0o7777), "members of its group can change what clawguard enforces or records", format!("chmod g-w {}", f.path)).in_file(at));
    }
    let secret = matches!(f.role, FileRole::SigningKey | FileRole::GatewayConfig);
    if secret && mode & 0o044 != 0 {
        out.push(Finding::new(&format!("fs.{id}.readable"), Severity::High, format!("The {label} is readable by others"), format!("{} has mode {:o}", f.path, mode & 0o7777), "it holds a secret (a signing key, the gateway's credentials): whoever reads it can forge or impersonate", format!("chmod 600 {}", f.path)).in_file(at));
    } else if dir && mode & 0o005 != 0 {
        out.push(Finding::new(&format!("fs.{id}.readable"), Severity::Low, format!("The {label} is readable by everyone"), format!("{} has mode {:o}", f.path, mode & 0o7777), "records are redacted but still name identities, methods and peers", format!("chmod 700 {}", f.path)).in_file(at));
    }
    if let (Some(uid), Some(running)) = (f.uid, f.running_uid) {
        if uid != running && uid != 0 {
            out.push(Finding::new(&format!("fs.{id}.foreign_owner"), Severity::Medium, format!("The {label} belongs to another user"), format!("{} is owned by uid {uid}; clawguard runs as uid {running}", f.path), "that user can change it without clawguard's own account", format!("chown {running} {}", f.path)).in_file(at));
        }
    }
}
