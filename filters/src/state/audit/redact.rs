//! Secrets never land in the audit log: before a record is chained, every string in it is
//! searched for secret shapes (one `regex-automata` set) and every match replaced by its keyed
//! hash (`hmac-sha256:<key id>:<hex>`, so an operator can still find a known value with
//! `clawguard audit hash`), and the values of fields named like secrets are replaced whole.

use crate::state::audit::keys::AuditKeys;
use regex_automata::meta::Regex;
use serde_json::Value;

/// The built-in secret shapes.
pub const BUILT_IN_PATTERNS: &[&str] = &[
    // PEM private keys, whole (or to the end when the END line is missing).
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
    // Authorization schemes with a credential.
    r"(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}",
    // Provider API keys: OpenAI/Anthropic `sk-…`, GitHub, Slack, Google, Stripe-like.
    r"\bsk-[A-Za-z0-9_-]{16,}",
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})",
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    r"\bAIza[0-9A-Za-z_-]{30,}",
    r"\b(?:rk|pk|sk)_(?:live|test)_[A-Za-z0-9]{16,}",
    // AWS access key ids and secret keys given as assignments.
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b",
    r"(?i:aws_secret_access_key|secret_access_key)\s*[=:]\s*[A-Za-z0-9/+=]{40}",
    // JSON Web Tokens.
    r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    // `password=…`, `token: …` and the like inside text.
    r#"(?i:password|passwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)\s*[=:]\s*[^\s"',;&]{4,}"#,
];

/// Field names (compared in lowercase, without `_` and `-`) whose values are secrets whatever
/// they look like.
const SECRET_FIELDS: &[&str] = &[
    "token", "devicetoken", "bootstraptoken", "password", "secret", "signature", "authorization", "apikey", "privatekey",
    "accesstoken", "refreshtoken", "sharedsecret", "cookie", "setcookie", "xopenclawtoken",
];

/// A pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("audit.redact_patterns: {pattern:?} is not a regular expression: {reason}")]
pub struct PatternError {
    /// The pattern.
    pub pattern: String,
    /// What the compiler said.
    pub reason: String,
}

/// The compiled patterns.
#[derive(Debug)]
pub struct Redactor {
    set: Regex,
}

impl Redactor {
    /// The built-in patterns plus `extra` (from the policy).
    pub fn new(extra: &[String]) -> Result<Self, PatternError> {
        for p in extra {
            Regex::new(p).map_err(|e| PatternError { pattern: p.clone(), reason: e.to_string() })?;
        }
        let all: Vec<&str> = BUILT_IN_PATTERNS.iter().copied().chain(extra.iter().map(String::as_str)).collect();
        let set = Regex::new_many(&all).map_err(|e| PatternError { pattern: all.join(" | "), reason: e.to_string() })?;
        Ok(Redactor { set })
    }

    /// `text` with every secret replaced by its keyed hash (`None`: nothing found).
    pub fn redact_str(&self, text: &str, keys: &AuditKeys) -> Option<String> {
        let mut out = String::new();
        let mut at = 0;
        for m in self.set.find_iter(text) {
            out.push_str(&text[at..m.start()]);
            out.push_str(&keys.hmac(&text[m.start()..m.end()]));
            at = m.end();
        }
        if at == 0 && out.is_empty() {
            return None;
        }
        out.push_str(&text[at..]);
        Some(out)
    }

    /// Redacts every string of `value` in place.
    pub fn redact(&self, value: &mut Value, keys: &AuditKeys) {
        match value {
            Value::String(s) => {
                if let Some(r) = self.redact_str(s, keys) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact(v, keys)),
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if is_secret_field(k) && !v.is_null() {
                        let text = match &*v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        *v = Value::String(keys.hmac(&text));
                    } else {
                        self.redact(v, keys);
                    }
                }
            }
            _ => {}
        }
    }
}

fn is_secret_field(name: &str) -> bool {
    let folded: String = name.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect();
    SECRET_FIELDS.contains(&folded.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn issue14_every_built_in_shape_is_replaced_by_its_keyed_hash() {
        let keys = AuditKeys::from_seed([3; 32]);
        let r = Redactor::new(&[]).unwrap();
        let secrets = [
            "Bearer 0123456789abcdef0123456789abcdef",
            "sk-proj-abcdefghijklmnopqrstuvwx",
            "sk-ant-api03-abcdefghijklmnopqrstuvwx",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
            "xoxb-1234567890-abcdefghij",
            "AKIAIOSFODNN7EXAMPLE",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
            "password=hunter2hunter2",
        ];
        for secret in secrets {
            let text = format!("before {secret} after");
            let out = r.redact_str(&text, &keys).unwrap_or_else(|| panic!("{secret:?} was not found"));
            assert!(!out.contains(secret), "{secret:?} survived: {out}");
            assert!(out.starts_with("before ") && out.ends_with(" after"), "{out}");
            assert!(out.contains(&keys.hmac(secret)) || out.contains("hmac-sha256:"), "{out}");
        }
        assert_eq!(r.redact_str("nothing to hide: config.apply needs operator.admin", &keys), None);
    }

    #[test]
    fn issue14_secret_fields_are_hashed_whole_at_any_depth_and_extra_patterns_apply() {
        let keys = AuditKeys::from_seed([3; 32]);
        let r = Redactor::new(&["internal-[0-9]{6}".into()]).unwrap();
        let mut v = json!({"auth": {"token": "gw-shared-token", "deviceToken": "dt-1"}, "list": ["id internal-123456 end"], "Set-Cookie": "a=b", "n": 1});
        r.redact(&mut v, &keys);
        assert_eq!(v["auth"]["token"], keys.hmac("gw-shared-token"));
        assert_eq!(v["auth"]["deviceToken"], keys.hmac("dt-1"));
        assert_eq!(v["Set-Cookie"], keys.hmac("a=b"));
        assert_eq!(v["list"][0], format!("id {} end", keys.hmac("internal-123456")));
        assert_eq!(v["n"], 1);
        assert!(Redactor::new(&["(".into()]).unwrap_err().to_string().contains("\"(\""));
    }
}
