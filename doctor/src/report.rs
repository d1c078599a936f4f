//! The report: every check run over the facts, the operator's accepted findings marked, a
//! score and grade (formula in docs/doctor.md), and its three forms (table, JSON, SARIF).

use crate::checks::{bypass, deployment, gateway_config, openclaw_audit};
use crate::facts::{Facts, Gathered};
use crate::finding::{Finding, Severity, Source};
use serde_json::{json, Value};

/// The JSON report's schema name; a change that is not additive changes it.
pub const SCHEMA: &str = "clawguard-doctor/1";

/// A finished audit.
#[derive(Debug, Clone)]
pub struct Report {
    /// Every finding, worst first (accepted ones included, marked).
    pub findings: Vec<Finding>,
    /// 100 minus the penalties of the findings not accepted (at least 0).
    pub score: u32,
    /// A to F.
    pub grade: char,
}

/// Runs every check over `facts`.
pub fn audit(facts: &Facts) -> Report {
    let mut findings = Vec::new();
    deployment::check(facts, &mut findings);
    bypass::check(facts, &mut findings);
    match &facts.gateway_config {
        Gathered::Found(config) => gateway_config::check(facts, config, &mut findings),
        Gathered::Unavailable(why) => findings.push(
            Finding::new(
                "gateway.config.unreadable",
                Severity::High,
                "The gateway's config could not be read",
                why.clone(),
                "whether the gateway trusts clawguard alone (bind, trustedProxies, auth, exec) is unknown",
                "clawguard doctor --gateway-config ~/.openclaw/openclaw.json   (run it as the gateway's user)",
            )
            .in_file(facts.gateway_config_path.as_deref()),
        ),
        Gathered::Absent => findings.push(Finding::new(
            "gateway.config.not_checked",
            Severity::Medium,
            "The gateway's config was not checked",
            "no --gateway-config was given and none was found at $OPENCLAW_CONFIG_PATH or ~/.openclaw/openclaw.json",
            "whether the gateway trusts clawguard alone (bind, trustedProxies, auth, exec) is unknown",
            "clawguard doctor --gateway-config PATH",
        )),
    }
    openclaw_audit::findings(&facts.openclaw_audit, &mut findings);
    openclaw_audit::dedupe(&mut findings);
    let accepted = facts.policy.as_ref().map(|p| p.doctor.accept.clone()).unwrap_or_default();
    for a in &accepted {
        let check = a.check.get_ref();
        let mut used = false;
        for f in findings.iter_mut().filter(|f| &f.check == check) {
            f.accepted = Some(a.reason.trim().to_string());
            used = true;
        }
        if !used {
            findings.push(
                Finding::new(
                    "doctor.accept.unused",
                    Severity::Info,
                    "An accepted check found nothing",
                    format!("[doctor] accept names {check:?}, which reported nothing"),
                    "a stale acceptance would silence the finding if it came back without anyone looking at it again",
                    format!("remove {{ check = {check:?}, … }} from [doctor] accept"),
                )
                .in_file(facts.policy_path.as_deref()),
            );
        }
    }
    findings.sort_by(|a, b| a.severity.cmp(&b.severity).then_with(|| a.check.cmp(&b.check)).then_with(|| a.found.cmp(&b.found)));
    findings.dedup();
    let open = || findings.iter().filter(|f| f.accepted.is_none());
    let score = 100u32.saturating_sub(open().map(|f| f.severity.penalty()).sum());
    let grade = if open().any(|f| f.severity == Severity::Critical) {
        'F'
    } else {
        match score {
            90.. => 'A',
            80..=89 => 'B',
            70..=79 => 'C',
            60..=69 => 'D',
            _ => 'F',
        }
    };
    Report { findings, score, grade }
}

impl Report {
    /// Whether a finding not accepted is at least as severe as `threshold` (`--fail-on`).
    pub fn fails(&self, threshold: Severity) -> bool {
        self.findings.iter().any(|f| f.accepted.is_none() && f.severity <= threshold)
    }

    /// How many findings not accepted there are of each severity.
    pub fn counts(&self) -> Vec<(Severity, usize)> {
        Severity::ALL.iter().map(|s| (*s, self.findings.iter().filter(|f| f.accepted.is_none() && f.severity == *s).count())).collect()
    }

    /// The JSON form (schema [`SCHEMA`], docs/doctor.md).
    pub fn to_json(&self) -> Value {
        let counts: serde_json::Map<String, Value> = self.counts().into_iter().map(|(s, n)| (s.name().to_string(), json!(n))).collect();
        json!({
            "schema": SCHEMA,
            "score": self.score,
            "grade": self.grade.to_string(),
            "counts": counts,
            "accepted": self.findings.iter().filter(|f| f.accepted.is_some()).count(),
            "findings": self.findings,
        })
    }

    /// The SARIF 2.1.0 form: one run, one rule per check, one result per finding; accepted
    /// findings carry an external suppression with the operator's reason.
    pub fn to_sarif(&self, version: &str) -> Value {
        let mut rules: Vec<&Finding> = Vec::new();
        for f in &self.findings {
            if !rules.iter().any(|r| r.check == f.check) {
                rules.push(f);
            }
        }
        let rule_json: Vec<Value> = rules
            .iter()
            .map(|f| {
                json!({
                    "id": f.check,
                    "shortDescription": { "text": f.title },
                    "fullDescription": { "text": f.why },
                    "help": { "text": f.fix },
                    "defaultConfiguration": { "level": level(f.severity) },
                    "properties": { "security-severity": security_severity(f.severity), "tags": ["security", source_name(f.source)] },
                })
            })
            .collect();
        let results: Vec<Value> = self
            .findings
            .iter()
            .map(|f| {
                let index = rules.iter().position(|r| r.check == f.check).unwrap_or(0);
                let mut r = json!({
                    "ruleId": f.check,
                    "ruleIndex": index,
                    "level": level(f.severity),
                    "message": { "text": format!("{}: {}. Fix: {}", f.title, f.found, f.fix) },
                    "properties": { "severity": f.severity.name(), "source": source_name(f.source) },
                });
                if let Some(file) = &f.file {
                    r["locations"] = json!([{ "physicalLocation": { "artifactLocation": { "uri": file_uri(file) } } }]);
                }
                if let Some(reason) = &f.accepted {
                    r["suppressions"] = json!([{ "kind": "external", "status": "accepted", "justification": reason }]);
                }
                r
            })
            .collect();
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": { "driver": {
                    "name": "clawguard doctor",
                    "semanticVersion": version,
                    "informationUri": "https://github.com/clawguard/clawguard/blob/main/docs/doctor.md",
                    "rules": rule_json,
                } },
                "results": results,
                "properties": { "score": self.score, "grade": self.grade.to_string() },
            }],
        })
    }

    /// The human form: findings grouped by severity, then the score.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        for severity in Severity::ALL {
            let group: Vec<&Finding> = self.findings.iter().filter(|f| f.severity == severity).collect();
            if group.is_empty() {
                continue;
            }
            out.push_str(&format!("{} ({})\n", severity.name().to_uppercase(), group.len()));
            for f in group {
                let by = if f.source == Source::OpenclawAudit { " [openclaw security audit]" } else { "" };
                out.push_str(&format!("  {} {}{by}\n", f.check, f.title));
                out.push_str(&format!("      found: {}\n", f.found.trim().replace('\n', "\n             ")));
                out.push_str(&format!("      why:   {}\n", f.why));
                out.push_str(&format!("      fix:   {}\n", f.fix));
                if let Some(also) = &f.also_reported_as {
                    out.push_str(&format!("      also:  openclaw security audit {also}\n"));
                }
                if let Some(reason) = &f.accepted {
                    out.push_str(&format!("      accepted: {reason}\n"));
                }
            }
            out.push('\n');
        }
        let counts: Vec<String> = self.counts().into_iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{n} {}", s.name())).collect();
        out.push_str(&format!("score {} / 100, grade {}{}\n", self.score, self.grade, if counts.is_empty() { String::new() } else { format!(" ({})", counts.join(", ")) }));
        out
    }
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub's code-scanning severity scale (0.0 to 10.0).
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Clawguard => "clawguard",
        Source::OpenclawAudit => "openclaw-audit",
    }
}

/// An absolute path as a `file://` URI (RFC 8089; bytes outside the unreserved set escaped),
/// a relative one as a relative reference.
fn file_uri(path: &str) -> String {
    let escaped: String = path
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    if path.starts_with('/') { format!("file://{escaped}") } else { escaped }
}
