//! Secrets never land in the audit log: before a record is chained, every string in it is
//! searched for secret shapes (`regex-automata`, one regex a shape) and every match replaced by its keyed
//! hash (`hmac-sha256:<key id>:<hex>`, so an operator can still find a known value with
//! `clawguard audit hash`), and the values of fields named like secrets are replaced whole.

use crate::state::audit::keys::AuditKeys;
use regex_automata::meta::Regex;
use serde_json::Value;

/// The built-in secret shapes. Word boundaries are ASCII (`(?-u:\b)`): a Unicode boundary
/// would keep the set off its DFA engines, which made a record cost 200 µs.
pub const BUILT_IN_PATTERNS: &[&str] = &[
    // PEM private keys, whole (or to the end when the END line is missing).
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
    // Authorization schemes with a credential.
    r"(?i:bearer|basic)[ \t\r\n]+[A-Za-z0-9._~+/=-]{8,}",
    // Provider API keys: OpenAI/Anthropic `sk-…`, GitHub, Slack, Google, Stripe-like.
    r"(?-u:\b)sk-[A-Za-z0-9_-]{16,}",
    r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})",
    r"(?-u:\b)xox[abposr]-[A-Za-z0-9-]{10,}",
    r"(?-u:\b)AIza[0-9A-Za-z_-]{30,}",
    r"(?-u:\b)(?:rk|pk|sk)_(?:live|test)_[A-Za-z0-9]{16,}",
    // AWS access key ids and secret keys given as assignments.
    r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}(?-u:\b)",
    r"(?i:aws_secret_access_key|secret_access_key)[ \t\r\n]*[=:][ \t\r\n]*[A-Za-z0-9/+=]{40}",
    // JSON Web Tokens.
    r"(?-u:\b)eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    // `password=…`, `token: …` and the like inside text.
    r#"(?i:password|passwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)[ \t\r\n]*[=:][ \t\r\n]*[^ \t\r\n"',;&]{4,}"#,
];

/// Literals one of which every built-in shape contains (ASCII case-insensitive): one
/// Aho-Corasick search for them decides whether the built-in shapes need searching at all.
const TRIGGERS: &[&str] = &[
    "-----begin", "bearer", "basic", "sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "aiza", "_live_", "_test_", "akia", "asia", "agpa",
    "aida", "aroa", "secret", "eyj", "passw", "api_key", "api-key", "apikey", "token",
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

/// The compiled patterns: one regex each, so that each keeps its literal prefilter (one
/// `new_many` set of the same patterns searched 500 times slower, on the PikeVM).
#[derive(Debug)]
pub struct Redactor {
    trigger: aho_corasick::AhoCorasick,
    patterns: Vec<Regex>,
}

impl Redactor {
    /// The built-in patterns plus `extra` (from the policy).
    pub fn new(extra: &[String]) -> Result<Self, PatternError> {
        let patterns = BUILT_IN_PATTERNS
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
            .map(|p| Regex::new(p).map_err(|e| PatternError { pattern: p.to_string(), reason: e.to_string() }))
            .collect::<Result<_, _>>()?;
        let trigger = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(TRIGGERS)
            .map_err(|e| PatternError { pattern: TRIGGERS.join("|"), reason: e.to_string() })?;
        Ok(Redactor { trigger, patterns })
    }

    /// `text` with every secret replaced by its keyed hash (`None`: nothing found).
    pub fn redact_str(&self, text: &str, keys: &AuditKeys) -> Option<String> {
        // The shortest built-in shape is 12 bytes long.
        let built_in = text.len() >= 12 && self.trigger.is_match(text);
        let skip = if built_in { 0 } else { BUILT_IN_PATTERNS.len() };
        if skip == self.patterns.len() {
            // No shape can match and the policy added none.
            return None;
        }
        let mut spans: Vec<(usize, usize)> = self.patterns[skip..].iter().flat_map(|r| r.find_iter(text).map(|m| (m.start(), m.end()))).collect();
        if spans.is_empty() {
            return None;
        }
        spans.sort_unstable();
        // Overlapping matches of different shapes are one secret.
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            match merged.last_mut() {
                Some(last) if start < last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        let mut out = String::with_capacity(text.len() + 64 * merged.len());
        let mut at = 0;
        for (start, end) in merged {
            out.push_str(&text[at..start]);
            out.push_str(&keys.hmac(&text[start..end]));
            at = end;
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

pub(crate) fn is_secret_field(name: &str) -> bool {
    // Compared without case, `_` and `-`, and without allocating.
    let folded = || name.bytes().filter(|b| *b != b'_' && *b != b'-').map(|b| b.to_ascii_lowercase());
    SECRET_FIELDS.iter().any(|f| f.bytes().eq(folded()))
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
        // The trigger literals cover every shape: a secret the trigger missed would be kept.
        let trigger = &r.trigger;
        for secret in secrets {
            assert!(trigger.is_match(secret), "{secret:?} does not trigger the built-in shapes");
        }
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
        // Two shapes over one secret (a bearer credential that is also an `sk-` key): one hash.
        let text = "Authorization: Bearer sk-abcdefghijklmnopqrstuvwxyz";
        let out = r.redact_str(text, &keys).unwrap();
        assert_eq!(out.matches("hmac-sha256:").count(), 1, "{out}");
        assert!(!out.contains("abcdefghijklmnop"), "{out}");
    }
}

