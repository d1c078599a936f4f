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

use crate::protocol::routes::RouteClass;
use clawguard_policies::HeaderRule;
use std::borrow::Cow;

/// A header name or value: the built-in ones are static, the policy's owned.
pub type Text = Cow<'static, str>;

/// A response header clawguard itself looks at, sets or removes. Its name is known up front,
/// so a proxy can look it up and write it without parsing a name per answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// `server`
    Server,
    /// `x-powered-by`
    PoweredBy,
    /// `content-type`
    ContentType,
    /// `cache-control`
    CacheControl,
    /// `x-content-type-options`
    ContentTypeOptions,
    /// `referrer-policy`
    ReferrerPolicy,
    /// `strict-transport-security`
    StrictTransportSecurity,
    /// `cross-origin-resource-policy`
    CrossOriginResourcePolicy,
    /// `x-frame-options`
    FrameOptions,
    /// `content-security-policy`
    ContentSecurityPolicy,
    /// `cross-origin-opener-policy`
    CrossOriginOpenerPolicy,
}

impl Known {
    /// Every known header, in the order of their discriminants.
    pub const ALL: [Known; 11] = [
        Known::Server,
        Known::PoweredBy,
        Known::ContentType,
        Known::CacheControl,
        Known::ContentTypeOptions,
        Known::ReferrerPolicy,
        Known::StrictTransportSecurity,
        Known::CrossOriginResourcePolicy,
        Known::FrameOptions,
        Known::ContentSecurityPolicy,
        Known::CrossOriginOpenerPolicy,
    ];

    /// The header's name, lowercase.
    pub const fn name(self) -> &'static str {
        match self {
            Known::Server => "server",
            Known::PoweredBy => "x-powered-by",
            Known::ContentType => "content-type",
            Known::CacheControl => "cache-control",
            Known::ContentTypeOptions => "x-content-type-options",
            Known::ReferrerPolicy => "referrer-policy",
            Known::StrictTransportSecurity => "strict-transport-security",
            Known::CrossOriginResourcePolicy => "cross-origin-resource-policy",
            Known::FrameOptions => "x-frame-options",
            Known::ContentSecurityPolicy => "content-security-policy",
            Known::CrossOriginOpenerPolicy => "cross-origin-opener-policy",
        }
    }

    /// The known header of a lowercase `name`.
    pub fn of(name: &str) -> Option<Known> {
        Known::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The headers of the gateway's answer, as a plan reads them.
pub trait UpstreamHeaders {
    /// The first value of a known header.
    fn known(&self, header: Known) -> Option<&str>;
    /// The first value of the header `name` (lowercase), for the policy's rules.
    fn named(&self, name: &str) -> Option<&str>;
}

/// No headers: clawguard's own answers.
pub struct NoHeaders;

impl UpstreamHeaders for NoHeaders {
    fn known(&self, _: Known) -> Option<&str> {
        None
    }
    fn named(&self, _: &str) -> Option<&str> {
        None
    }
}

/// A change to a response's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// Set (replace) a built-in header.
    SetKnown(Known, Text),
    /// Set a built-in header unless the answer already carries it (the gateway's own value
    /// stays): one lookup where it is applied, none in the plan.
    DefaultKnown(Known, Text),
    /// Remove every value of a built-in header.
    RemoveKnown(Known),
    /// Set (replace) the header named by the policy.
    Set(Text, Text),
    /// Append a value.
    Append(Text, Text),
    /// Remove every value.
    Remove(Text),
}

impl HeaderOp {
    /// The lowercase name of the header the change sets, if it sets one.
    pub fn sets(&self) -> Option<&str> {
        match self {
            HeaderOp::SetKnown(k, _) | HeaderOp::DefaultKnown(k, _) => Some(k.name()),
            HeaderOp::Set(n, _) => Some(n),
            _ => None,
        }
    }
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
    /// answer). `upstream` tells a header's value as the gateway sent it.
    pub fn plan(&self, class: Option<RouteClass>, path: &str, tls: bool, upstream: &impl UpstreamHeaders) -> Vec<HeaderOp> {
        let mut ops = Vec::with_capacity(12);
        ops.push(HeaderOp::RemoveKnown(Known::Server));
        ops.push(HeaderOp::RemoveKnown(Known::PoweredBy));
        let set_absent = |ops: &mut Vec<HeaderOp>, header: Known, value: Text| ops.push(HeaderOp::DefaultKnown(header, value));
        set_absent(&mut ops, Known::ContentTypeOptions, "nosniff".into());
        set_absent(&mut ops, Known::ReferrerPolicy, "no-referrer".into());
        if tls {
            if let Some(hsts) = &self.hsts {
                set_absent(&mut ops, Known::StrictTransportSecurity, hsts.clone().into());
            }
        }
        match class {
            None => api_headers(&mut ops, upstream),
            Some(c) if c.is_api() => api_headers(&mut ops, upstream),
            Some(RouteClass::ControlUi | RouteClass::Internal) => {
                set_absent(&mut ops, Known::CrossOriginResourcePolicy, "same-origin".into());
                let html = upstream.known(Known::ContentType).is_some_and(|t| t.get(..9).is_some_and(|p| p.eq_ignore_ascii_case("text/html")));
                if html {
                    set_absent(&mut ops, Known::FrameOptions, "DENY".into());
                    set_absent(&mut ops, Known::ContentSecurityPolicy, CONTROL_UI_CSP.into());
                    set_absent(&mut ops, Known::CrossOriginOpenerPolicy, "same-origin".into());
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
                if rule.replace || upstream.named(name).is_none() {
                    ops.retain(|op| op.sets() != Some(name.as_str()));
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

fn api_headers(ops: &mut Vec<HeaderOp>, upstream: &impl UpstreamHeaders) {
    let stored = upstream.known(Known::CacheControl).is_some_and(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case("no-store")));
    if !stored {
        ops.push(HeaderOp::SetKnown(Known::CacheControl, "no-store".into()));
    }
    for (header, value) in [(Known::CrossOriginResourcePolicy, "same-origin"), (Known::FrameOptions, "DENY"), (Known::ContentSecurityPolicy, API_CSP)] {
        ops.push(HeaderOp::DefaultKnown(header, value.into()));
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
                HeaderOp::SetKnown(k, v) => {
                    headers.retain(|(h, _)| h != k.name());
                    headers.push((k.name().to_string(), v.to_string()));
                }
                HeaderOp::DefaultKnown(k, v) => {
                    if !headers.iter().any(|(h, _)| h == k.name()) {
                        headers.push((k.name().to_string(), v.to_string()));
                    }
                }
                HeaderOp::RemoveKnown(k) => headers.retain(|(h, _)| h != k.name()),
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

    struct Listed(Vec<(String, String)>);

    impl UpstreamHeaders for Listed {
        fn known(&self, header: Known) -> Option<&str> {
            get(&self.0, header.name())
        }
        fn named(&self, name: &str) -> Option<&str> {
            get(&self.0, name)
        }
    }

    fn run(rules: &HeaderRules, class: Option<RouteClass>, path: &str, tls: bool, upstream: &[(&str, &str)]) -> Vec<(String, String)> {
        let up = Listed(upstream.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let ops = rules.plan(class, path, tls, &up);
        apply(&ops, up.0)
    }

    #[test]
    fn every_known_header_is_named_once_and_found_by_its_name() {
        for (i, k) in Known::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i, "ALL is in discriminant order");
            assert_eq!(Known::of(k.name()), Some(k));
            assert_eq!(k.name(), k.name().to_ascii_lowercase());
        }
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
