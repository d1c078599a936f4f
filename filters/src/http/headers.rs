//! Response security headers per route class, then the policy's rules per path prefix.
//!
//! Built in, for every answer: `Server` and `X-Powered-By` removed; `X-Content-Type-Options:
//! nosniff` and `Referrer-Policy: no-referrer` when absent; on TLS listeners
//! `Strict-Transport-Security` (`http.hsts_max_age_seconds`) when absent. JSON API answers
//! (and clawguard's own refusals) also get `Cache-Control: no-store` (replacing a weaker one),
//! `Cross-Origin-Resource-Policy: same-origin`, `X-Frame-Options: DENY` and
//! `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'` when absent. Control UI
//! HTML keeps the gateway's CSP, or gets the gateway's own 2026.9.6 policy when it sent none,
//! so it is never weaker; node-capability pages (canvas, A2UI, `/__openclaw__/cap/`) get nothing
//! that would stop them being framed.
//!
//! A header the gateway sent is kept unless a rule says `replace`: a stricter upstream value is
//! never weakened.

use super::routes::RouteClass;
use clawguard_policies::HeaderRule;
use std::borrow::Cow;

/// A header name or value: the built-in ones are static, the policy's owned.
pub type Text = Cow<'static, str>;

/// A change to a response's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// Set (replace) the header.
    Set(Text, Text),
    /// Append a value.
    Append(Text, Text),
    /// Remove every value.
    Remove(Text),
}

/// The Control UI CSP of the gateway 2026.9.6 (`buildControlUiCspHeader`, without inline-script
/// hashes): used when the gateway sent none.
pub const CONTROL_UI_CSP: &str = "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; frame-src 'self' http: https:; script-src 'self'; style-src 'self' 'unsafe-inline' https://fonts.googleapis.com; img-src 'self' data: blob: https:; media-src 'self' data: blob:; font-src 'self' https://fonts.gstatic.com; worker-src 'self'; connect-src 'self' ws: wss: data: https://api.openai.com https://tweakcn.com";

/// The CSP of JSON answers: nothing loads, nothing frames.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// The compiled header rules.
#[derive(Debug, Clone)]
pub struct HeaderRules {
    hsts: Option<String>,
    rules: Vec<HeaderRule>,
}

impl HeaderRules {
    /// The rules of `[http]`.
    pub fn new(http: &clawguard_policies::Http) -> Self {
        let hsts = (http.hsts_max_age_seconds > 0).then(|| format!("max-age={}", http.hsts_max_age_seconds));
        // Names lowercased once, here.
        let rules = http
            .headers
            .iter()
            .map(|r| HeaderRule {
                prefix: r.prefix.clone(),
                set: r.set.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(),
                add: r.add.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(),
                remove: r.remove.iter().map(|k| k.to_ascii_lowercase()).collect(),
                replace: r.replace,
            })
            .collect();
        HeaderRules { hsts, rules }
    }

    /// The changes to make to an answer for `path` (route `class`; `None`: clawguard's own
    /// answer). `upstream` tells a header's value as the gateway sent it (lowercase names).
    pub fn plan<'a>(&self, class: Option<RouteClass>, path: &str, tls: bool, upstream: impl Fn(&str) -> Option<&'a str>) -> Vec<HeaderOp> {
        let mut ops = Vec::with_capacity(12);
        ops.push(HeaderOp::Remove("server".into()));
        ops.push(HeaderOp::Remove("x-powered-by".into()));
        let set_absent = |ops: &mut Vec<HeaderOp>, name: &'static str, value: Text| {
            if upstream(name).is_none() {
                ops.push(HeaderOp::Set(name.into(), value));
            }
        };
        set_absent(&mut ops, "x-content-type-options", "nosniff".into());
        set_absent(&mut ops, "referrer-policy", "no-referrer".into());
        if tls {
            if let Some(hsts) = &self.hsts {
                set_absent(&mut ops, "strict-transport-security", hsts.clone().into());
            }
        }
        let html = upstream("content-type").is_some_and(|t| t.get(..9).is_some_and(|p| p.eq_ignore_ascii_case("text/html")));
        match class {
            None => api_headers(&mut ops, &upstream),
            Some(c) if c.is_api() => api_headers(&mut ops, &upstream),
            Some(RouteClass::ControlUi | RouteClass::Internal) => {
                set_absent(&mut ops, "cross-origin-resource-policy", "same-origin".into());
                if html {
                    set_absent(&mut ops, "x-frame-options", "DENY".into());
                    set_absent(&mut ops, "content-security-policy", CONTROL_UI_CSP.into());
                    set_absent(&mut ops, "cross-origin-opener-policy", "same-origin".into());
                }
            }
            Some(_) => {}
        }
        for rule in self.rules.iter().filter(|r| path_under(path, &r.prefix)) {
            for name in &rule.remove {
                ops.push(HeaderOp::Remove(name.clone().into()));
            }
            for (name, value) in &rule.set {
                // A value the gateway sent stays unless the rule replaces it; an earlier rule's
                // value is replaced by a later rule's.
                if rule.replace || upstream(name).is_none() {
                    ops.retain(|op| !matches!(op, HeaderOp::Set(n, _) if n == name));
                    ops.push(HeaderOp::Set(name.clone().into(), value.clone().into()));
                }
            }
            for (name, value) in &rule.add {
                ops.push(HeaderOp::Append(name.clone().into(), value.clone().into()));
            }
        }
        ops
    }
}

fn api_headers<'a>(ops: &mut Vec<HeaderOp>, upstream: &impl Fn(&str) -> Option<&'a str>) {
    let stored = upstream("cache-control").is_some_and(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-store")));
    if !stored {
        ops.push(HeaderOp::Set("cache-control".into(), "no-store".into()));
    }
    for (name, value) in [("cross-origin-resource-policy", "same-origin"), ("x-frame-options", "DENY"), ("content-security-policy", API_CSP)] {
        if upstream(name).is_none() {
            ops.push(HeaderOp::Set(name.into(), value.into()));
        }
    }
}

/// Whether `path` is under `prefix` (`/` covers everything; `/a` covers `/a` and `/a/…`; a
/// prefix ending in `/` covers what starts with it).
fn path_under(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn apply(ops: &[HeaderOp], mut headers: Vec<(String, String)>) -> Vec<(String, String)> {
        for op in ops {
            match op {
                HeaderOp::Set(n, v) => {
                    headers.retain(|(k, _)| k != n);
                    headers.push((n.to_string(), v.to_string()));
                }
                HeaderOp::Append(n, v) => headers.push((n.to_string(), v.to_string())),
                HeaderOp::Remove(n) => headers.retain(|(k, _)| k != n),
            }
        }
        headers
    }

    fn get<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn run(rules: &HeaderRules, class: Option<RouteClass>, path: &str, tls: bool, upstream: &[(&str, &str)]) -> Vec<(String, String)> {
        let up: Vec<(String, String)> = upstream.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let ops = rules.plan(class, path, tls, |n| get(&up, n));
        apply(&ops, up.clone())
    }

    #[test]
    fn api_answers_are_locked_down_and_server_names_removed() {
        let rules = HeaderRules::new(&Default::default());
        let h = run(&rules, Some(RouteClass::ToolsInvoke), "/tools/invoke", true, &[("content-type", "application/json"), ("cache-control", "no-cache"), ("server", "node"), ("x-powered-by", "Express")]);
        assert_eq!(get(&h, "cache-control"), Some("no-store"), "no-cache is weaker than no-store");
        assert_eq!(get(&h, "x-content-type-options"), Some("nosniff"));
        assert_eq!(get(&h, "cross-origin-resource-policy"), Some("same-origin"));
        assert_eq!(get(&h, "strict-transport-security"), Some("max-age=31536000"));
        assert_eq!(get(&h, "content-security-policy"), Some(API_CSP));
        assert_eq!((get(&h, "server"), get(&h, "x-powered-by")), (None, None));
        let plain = run(&rules, Some(RouteClass::ToolsInvoke), "/tools/invoke", false, &[]);
        assert_eq!(get(&plain, "strict-transport-security"), None, "HSTS only on TLS listeners");
    }

    #[test]
    fn control_ui_csp_is_never_weakened_and_canvas_stays_frameable() {
        let rules = HeaderRules::new(&Default::default());
        let gateway_csp = "default-src 'self'; frame-ancestors 'none'; script-src 'self' 'sha256-abc'";
        let h = run(&rules, Some(RouteClass::ControlUi), "/", true, &[("content-type", "text/html; charset=utf-8"), ("content-security-policy", gateway_csp), ("x-frame-options", "DENY")]);
        assert_eq!(get(&h, "content-security-policy"), Some(gateway_csp), "the gateway's own CSP (with its script hashes) is kept");
        let h = run(&rules, Some(RouteClass::ControlUi), "/", false, &[("content-type", "text/html")]);
        assert_eq!(get(&h, "content-security-policy"), Some(CONTROL_UI_CSP), "an HTML answer without CSP gets the gateway's own policy");
        assert_eq!(get(&h, "x-frame-options"), Some("DENY"));
        let h = run(&rules, Some(RouteClass::NodeCapability), "/__openclaw__/canvas/", true, &[("content-type", "text/html")]);
        assert_eq!((get(&h, "x-frame-options"), get(&h, "content-security-policy")), (None, None), "canvas stays frameable");
    }

    #[test]
    fn policy_rules_set_add_and_remove_by_prefix() {
        let rule = |prefix: &str, set: &[(&str, &str)], replace: bool| HeaderRule {
            prefix: prefix.into(),
            set: set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            add: BTreeMap::from([("X-Extra".to_string(), "1".to_string())]),
            remove: vec!["X-Debug".into()],
            replace,
        };
        let http = clawguard_policies::Http {
            headers: vec![rule("/api", &[("Permissions-Policy", "camera=()")], false), rule("/", &[("X-Frame-Options", "SAMEORIGIN")], true)],
            ..Default::default()
        };
        let rules = HeaderRules::new(&http);
        let h = run(&rules, Some(RouteClass::Channels), "/api/channels/x", false, &[("permissions-policy", "camera=(self)"), ("x-debug", "1"), ("x-frame-options", "DENY")]);
        assert_eq!(get(&h, "permissions-policy"), Some("camera=(self)"), "the gateway's value is kept without replace");
        assert_eq!(get(&h, "x-frame-options"), Some("SAMEORIGIN"), "replace = true replaces");
        assert_eq!(get(&h, "x-debug"), None);
        assert_eq!(h.iter().filter(|(k, _)| k == "x-extra").count(), 2, "both rules add");
        let h = run(&rules, Some(RouteClass::ControlUi), "/apis", false, &[]);
        assert_eq!(get(&h, "permissions-policy"), None, "/api does not cover /apis");
    }
}
