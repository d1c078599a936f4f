//! A finding: what was found, why it matters, and the exact fix.

use serde::Serialize;

/// How bad a finding is, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A protection is bypassed or absent: fix before exposing the gateway.
    Critical,
    /// An attacker with ordinary access gains what the deployment means to deny.
    High,
    /// Weakens a protection, or needs another mistake to be exploited.
    Medium,
    /// Hardening.
    Low,
    /// Worth knowing; no risk by itself.
    Info,
}

impl Severity {
    /// Every severity, worst first.
    pub const ALL: [Severity; 5] = [Severity::Critical, Severity::High, Severity::Medium, Severity::Low, Severity::Info];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }

    /// Parses a name (as `--fail-on` takes it).
    pub fn parse(name: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Points taken off the score of 100 for one such finding (docs/doctor.md).
    pub fn penalty(self) -> u32 {
        match self {
            Severity::Critical => 40,
            Severity::High => 20,
            Severity::Medium => 8,
            Severity::Low => 2,
            Severity::Info => 0,
        }
    }
}

/// Who reported a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// clawguard's own checks.
    Clawguard,
    /// `openclaw security audit --json` (the gateway's own view).
    OpenclawAudit,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable id (`area.what`), as `[doctor] accept` names it.
    pub check: String,
    /// Severity.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// What was found (file, field, address; never a secret's value).
    pub found: String,
    /// Why it matters.
    pub why: String,
    /// The exact fix: a config line or a command.
    pub fix: String,
    /// Who reported it.
    pub source: Source,
    /// Where, when it is a file (for SARIF locations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The operator's reason, when `[doctor] accept` lists this check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<String>,
    /// The `openclaw security audit` check that reported the same thing, when both did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub also_reported_as: Option<String>,
}

impl Finding {
    /// A clawguard finding.
    pub fn new(check: &str, severity: Severity, title: impl Into<String>, found: impl Into<String>, why: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check: check.to_string(),
            severity,
            title: title.into(),
            found: found.into(),
            why: why.into(),
            fix: fix.into(),
            source: Source::Clawguard,
            file: None,
            accepted: None,
            also_reported_as: None,
        }
    }

    /// The same, located in `file`.
    pub fn in_file(mut self, file: Option<&str>) -> Finding {
        self.file = file.map(str::to_string);
        self
    }
}
