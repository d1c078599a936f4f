//! The config guard: config paths that may not be changed through the proxy, whoever asks
//! (`config.set`, `config.patch`, `config.apply`). Paths are dot-separated; `*` matches one
//! segment; a path covers everything below it.
//!
//! - `config.patch` carries a merge patch: a protected path is touched when the patch sets
//!   it, something below it, or an ancestor (replacing the subtree), or names it in
//!   `replacePaths`.
//! - `config.set` / `config.apply` carry the whole config: a protected path is touched when
//!   its value differs from the `config.get` snapshot seen on the same connection (secrets
//!   come back redacted in both). Without a snapshot the change cannot be judged: refused.

use serde_json::Value;

/// Compiled protected paths.
#[derive(Debug, Clone, Default)]
pub struct ConfigGuard {
    patterns: Vec<Vec<String>>,
}

/// A protected path touched by a config change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    /// The protected pattern.
    pub protected: String,
    /// The concrete path that touches it.
    pub path: String,
}

/// Why a config change cannot be judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// `raw` is missing or is not JSON5.
    #[error("config raw cannot be parsed: {0}")]
    Unparseable(String),
    /// A whole-config write with no `config.get` seen on the connection.
    #[error("{0} replaces the whole config and no config.get was seen on this connection to compare it with: call config.get first")]
    NoSnapshot(String),
}

fn segments(path: &str) -> Vec<String> {
    path.split('.').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Whether setting `set` (a concrete path) touches `pattern`: one is a prefix of the other,
/// segment by segment, with `*` matching any segment.
fn touches(set: &[String], pattern: &[String]) -> bool {
    set.iter().zip(pattern).all(|(s, p)| p == "*" || p == s)
}

impl ConfigGuard {
    /// Compiles the protected paths.
    pub fn new(paths: &[String]) -> Self {
        ConfigGuard { patterns: paths.iter().map(|p| segments(p)).collect() }
    }

    /// Whether nothing is protected.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    fn first_touched(&self, set: &[String]) -> Option<Touched> {
        self.patterns.iter().find(|p| touches(set, p)).map(|p| Touched { protected: p.join("."), path: set.join(".") })
    }

    /// Judges a request's params for `method` (`config.set`, `config.patch`, `config.apply`);
    /// `snapshot` is the last `config.get` `parsed` value seen on the connection.
    pub fn check(&self, method: &str, params: &Value, snapshot: Option<&Value>) -> Result<Option<Touched>, GuardError> {
        if self.is_empty() {
            return Ok(None);
        }
        let raw = params.get("raw").and_then(Value::as_str).ok_or_else(|| GuardError::Unparseable("no \"raw\" string".into()))?;
        let doc: Value = json5::from_str(raw).map_err(|e| GuardError::Unparseable(e.to_string()))?;
        if method == "config.patch" {
            for path in params.get("replacePaths").and_then(Value::as_array).into_iter().flatten() {
                if let Some(t) = path.as_str().and_then(|p| self.first_touched(&segments(p))) {
                    return Ok(Some(t));
                }
            }
            let mut found = None;
            self.walk_patch(&doc, &mut Vec::new(), &mut found);
            return Ok(found);
        }
        let current = snapshot.ok_or_else(|| GuardError::NoSnapshot(method.to_string()))?;
        for pattern in &self.patterns {
            let mut paths = Vec::new();
            expand(current, pattern, &mut Vec::new(), &mut paths);
            expand(&doc, pattern, &mut Vec::new(), &mut paths);
            for path in paths {
                if lookup(current, &path) != lookup(&doc, &path) {
                    return Ok(Some(Touched { protected: pattern.join("."), path: path.join(".") }));
                }
            }
        }
        Ok(None)
    }

    fn walk_patch(&self, value: &Value, path: &mut Vec<String>, found: &mut Option<Touched>) {
        if found.is_some() {
            return;
        }
        match value {
            // A merge patch recurses into objects; a pattern below this object may be untouched.
            Value::Object(map) if !map.is_empty() || path.is_empty() => {
                for (k, v) in map {
                    path.push(k.clone());
                    self.walk_patch(v, path, found);
                    path.pop();
                }
            }
            // Any other value (null deletes) sets the path and everything below it.
            _ => *found = self.first_touched(path),
        }
    }
}

/// Every concrete path in `doc` matching `pattern` (or its longest existing prefix).
fn expand(doc: &Value, pattern: &[String], prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let Some((first, rest)) = pattern.split_first() else {
        out.push(prefix.clone());
        return;
    };
    let Some(map) = doc.as_object() else {
        out.push(prefix.clone());
        return;
    };
    let keys: Vec<&String> = if first == "*" { map.keys().collect() } else { vec![first] };
    for key in keys {
        prefix.push(key.clone());
        match map.get(key) {
            Some(child) => expand(child, rest, prefix, out),
            None => out.push(prefix.clone()),
        }
        prefix.pop();
    }
}

fn lookup<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, k| v.get(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn guard() -> ConfigGuard {
        ConfigGuard::new(&[
            "gateway.controlUi.allowInsecureAuth".into(),
            "gateway.auth.*".into(),
            "gateway.trustedProxies".into(),
            "plugins.entries.*.enabled".into(),
        ])
    }

    fn patch(raw: &str) -> Result<Option<Touched>, GuardError> {
        guard().check("config.patch", &json!({ "raw": raw }), None)
    }

    #[test]
    fn merge_patches() {
        assert_eq!(patch(r#"{gateway: {controlUi: {allowInsecureAuth: true}}}"#).unwrap().unwrap().protected, "gateway.controlUi.allowInsecureAuth");
        assert_eq!(patch(r#"{"gateway": {"auth": {"token": "x"}}}"#).unwrap().unwrap().path, "gateway.auth.token");
        assert!(patch(r#"{"gateway": {"auth": null}}"#).unwrap().is_some(), "deleting an ancestor touches it");
        assert!(patch(r#"{"gateway": null}"#).unwrap().is_some());
        assert!(patch(r#"{"plugins": {"entries": {"slack": {"enabled": true}}}}"#).unwrap().is_some());
        assert!(patch(r#"{"plugins": {"entries": {"slack": {"config": {}}}}}"#).unwrap().is_none());
        assert!(patch(r#"{"gateway": {"controlUi": {"basePath": "/ui"}}, agents: {defaults: {}}}"#).unwrap().is_none());
        assert!(patch(r#"{"gateway": {"trustedProxies": []}}"#).unwrap().is_some());
        let replace = guard().check("config.patch", &json!({ "raw": "{}", "replacePaths": ["gateway.auth"] }), None).unwrap();
        assert_eq!(replace.unwrap().protected, "gateway.auth.*");
        assert!(matches!(patch("{not json5"), Err(GuardError::Unparseable(_))));
    }

    #[test]
    fn whole_config_writes_compare_with_the_snapshot() {
        let current = json!({"gateway": {"bind": "loopback", "auth": {"mode": "token", "token": "__OPENCLAW_REDACTED__"}}, "agents": {}});
        let same_guarded = r#"{"gateway": {"bind": "loopback", "auth": {"mode": "token", "token": "__OPENCLAW_REDACTED__"}}, "agents": {"defaults": {}}}"#;
        assert_eq!(guard().check("config.apply", &json!({ "raw": same_guarded }), Some(&current)), Ok(None));
        let changed = r#"{"gateway": {"bind": "loopback", "auth": {"mode": "none"}}}"#;
        let t = guard().check("config.set", &json!({ "raw": changed }), Some(&current)).unwrap().unwrap();
        assert_eq!(t.protected, "gateway.auth.*");
        let added = r#"{"gateway": {"bind": "loopback", "auth": {"mode": "token", "token": "__OPENCLAW_REDACTED__"}, "trustedProxies": ["0.0.0.0/0"]}}"#;
        assert_eq!(guard().check("config.apply", &json!({ "raw": added }), Some(&current)).unwrap().unwrap().protected, "gateway.trustedProxies");
        assert!(matches!(guard().check("config.apply", &json!({ "raw": same_guarded }), None), Err(GuardError::NoSnapshot(_))));
    }
}
