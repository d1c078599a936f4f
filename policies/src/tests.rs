use super::*;

fn invalid(text: &str) -> (Location, String) {
    match LoadedPolicy::parse("p.toml", text) {
        Err(PolicyError::Invalid { location, message }) => (location, message),
        other => panic!("expected an invalid policy, got {other:?}"),
    }
}

#[test]
fn embedded_policy_parses_and_has_the_documented_defaults() {
    let p = LoadedPolicy::embedded();
    assert_eq!(p.policy.server.listen, vec!["127.0.0.1:18790".parse().unwrap()]);
    assert_eq!(p.policy.upstream.address, "127.0.0.1:18789".parse().unwrap());
    assert_eq!(p.policy.admin.listen, "127.0.0.1:15020".parse().unwrap());
    assert!(p.policy.tls.require_for_remote);
    assert!(p.policy.frame_rules.is_empty(), "the default policy forwards everything");
    assert_eq!(p.version, policy_version(EMBEDDED_POLICY.as_bytes()));
    assert_eq!(p.version.len(), 64);
}

#[test]
fn empty_document_is_the_defaults() {
    let p = LoadedPolicy::parse("p.toml", "").unwrap();
    assert_eq!(p.policy.websocket.max_message_bytes, 25 * 1024 * 1024);
    assert_eq!(p.policy.websocket.max_handshake_message_bytes, 65536);
}

#[test]
fn misspelled_key_names_line_column_and_key() {
    let (loc, msg) = invalid("[server]\nthreads = 2\nlisen = [\"127.0.0.1:1\"]\n");
    assert_eq!((loc.line, loc.column), (3, 1));
    assert_eq!(loc.key.as_deref(), Some("server.lisen"));
    assert!(msg.contains("unknown field `lisen`") && msg.contains("listen"), "{msg}");
}

#[test]
fn wrong_type_names_line_column_and_key() {
    let (loc, msg) = invalid("[server]\nthreads = \"two\"\n");
    assert_eq!((loc.line, loc.column), (2, 11));
    assert_eq!(loc.key.as_deref(), Some("server.threads"));
    assert!(msg.contains("invalid type") && msg.contains("expected"), "{msg}");
}

#[test]
fn bad_address_and_cidr_are_located() {
    let (loc, msg) = invalid("[upstream]\naddress = \"localhost\"\n");
    assert_eq!(loc.line, 2);
    assert!(msg.contains("address"), "{msg}");
    let (loc, _) = invalid("[attribution]\nlocal_cidrs = [\"10.0.0.0/40\"]\n");
    assert_eq!(loc.key.as_deref(), Some("attribution.local_cidrs"));
}

#[test]
fn tls_listener_requires_cert_and_key() {
    let (_, msg) = invalid("[tls]\nlisten = [\"127.0.0.1:8443\"]\n");
    assert!(msg.contains("tls.cert is missing"), "{msg}");
}

#[test]
fn frame_rules_parse_and_validate() {
    let ok = "[[frame_rule]]\nname = \"r\"\ndirection = \"client\"\nmatch = [\"config.*\"]\naction = \"deny\"\n";
    let p = LoadedPolicy::parse("p.toml", ok).unwrap();
    assert!(p.policy.frame_rules[0].matches.get_ref()[0].matches("config.patch"));
    let (loc, msg) = invalid("[[frame_rule]]\nname = \"r\"\ndirection = \"gateway\"\nmatch = [\"tick\"]\naction = \"deny\"\n");
    assert_eq!(loc.line, 5);
    assert!(msg.contains("only applies to direction \"client\""), "{msg}");
    let (loc, msg) = invalid("[[frame_rule]]\nname = \"r\"\ndirection = \"sideways\"\nmatch = [\"x\"]\naction = \"drop\"\n");
    assert_eq!(loc.line, 3);
    assert!(msg.contains("unknown variant `sideways`"), "{msg}");
}

#[test]
fn version_changes_with_any_byte() {
    assert_ne!(policy_version(b"a"), policy_version(b"a "));
}

#[test]
fn globs_match_as_documented() {
    let g = Glob::new("config.*").unwrap();
    assert!(g.matches("config.get") && g.matches("config.") && !g.matches("configx"));
    assert!(Glob::new("*").unwrap().matches("anything"));
    assert!(Glob::new("a*b*c").unwrap().matches("aXXbYYc"));
    assert!(!Glob::new("a*b*c").unwrap().matches("aXXbYY"));
    assert!(!Glob::new("ab*ba").unwrap().matches("aba"));
    assert!(Glob::new("health").unwrap().is_exact());
    assert!(Glob::new("").is_err());
}

#[test]
fn attribution_treats_mapped_ipv4_as_ipv4() {
    let a = Attribution::default();
    assert!(a.is_local("::ffff:127.0.0.1".parse().unwrap()));
    assert!(a.is_local("::1".parse().unwrap()));
    assert!(!a.is_local("192.0.2.1".parse().unwrap()));
}

#[test]
fn duplicate_section_is_refused() {
    let (loc, msg) = invalid("[server]\nthreads = 1\n[server]\nthreads = 2\n");
    assert_eq!(loc.line, 3);
    assert!(msg.contains("duplicate") || msg.contains("redefin"), "{msg}");
}

const IDENTITIES: &str = r#"
[[identity]]
name = "ops"
roles = ["operator"]
scopes = ["operator.read", "operator.admin"]
deny_methods = ["config.*"]
[identity.match]
cidr = ["10.0.0.0/8"]
token_sha256 = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]

[[identity]]
name = "default"
scopes = []
"#;

#[test]
fn identities_parse_and_default_to_the_builtin_pair() {
    let p = LoadedPolicy::parse("p.toml", IDENTITIES).unwrap();
    let ids = p.policy.effective_identities();
    assert_eq!(ids.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), vec!["ops", "default"]);
    assert_eq!(ids[0].matcher.cidr.len(), 1);
    let builtin = LoadedPolicy::parse("p.toml", "").unwrap().policy.effective_identities();
    assert_eq!(builtin.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), vec!["local", "default"]);
    assert!(!builtin[0].scopes.get_ref().iter().any(|s| s == "operator.admin"), "admin is never assumed");
    assert_eq!(builtin[1].scopes.get_ref(), &vec!["operator.read".to_string()]);
}

#[test]
fn identity_mistakes_are_located() {
    let (loc, msg) = invalid("[[identity]]\nname = \"x\"\nscopes = [\"operator.root\"]\n[identity.match]\ncidr = [\"10.0.0.0/8\"]\n[[identity]]\nname = \"default\"\nscopes = []\n");
    assert_eq!(loc.line, 3);
    assert!(msg.contains("unknown scope \"operator.root\""), "{msg}");
    let (_, msg) = invalid("[[identity]]\nname = \"x\"\nscopes = []\n");
    assert!(msg.contains("no [identity.match]"), "{msg}");
    let (_, msg) = invalid("[[identity]]\nname = \"x\"\nscopes = []\n[identity.match]\ncidr = [\"10.0.0.0/8\"]\n");
    assert!(msg.contains("no identity \"default\""), "{msg}");
    let (_, msg) = invalid("[[identity]]\nname = \"default\"\nscopes = []\n[identity.match]\ndevice_id = [\"d\"]\n");
    assert!(msg.contains("expected no [identity.match]"), "{msg}");
    let (_, msg) = invalid("[[identity]]\nname = \"x\"\nscopes = []\n[identity.match]\ntoken_sha256 = [\"abc\"]\n[[identity]]\nname = \"default\"\nscopes = []\n");
    assert!(msg.contains("not a SHA-256"), "{msg}");
    let (loc, msg) = invalid("[[identity]]\nname = \"default\"\nscopes = []\nroles = [\"worker\"]\n");
    assert_eq!(loc.line, 4);
    assert!(msg.contains("unknown variant `worker`"), "{msg}");
    let (_, msg) = invalid("mode = \"audit\"\n");
    assert!(msg.contains("unknown variant `audit`"), "{msg}");
}

#[test]
fn config_guard_defaults_cover_the_auth_bypass_flags() {
    let p = LoadedPolicy::embedded().policy;
    for path in ["gateway.controlUi.allowInsecureAuth", "gateway.controlUi.dangerouslyDisableDeviceAuth", "gateway.auth.*", "gateway.trustedProxies"] {
        assert!(p.config_guard.protected.iter().any(|x| x == path), "{path}");
    }
    assert_eq!(p.gateway.version, "2026.9.6");
}

#[test]
fn session_patterns_are_checked_where_they_are_written() {
    let (loc, msg) = invalid("[[identity]]\nname = \"a\"\nscopes = []\nsessions = [\"agent:*:{user}\"]\n[identity.match]\ncidr = [\"10.0.0.0/8\"]\n[[identity]]\nname = \"default\"\nscopes = []\n");
    assert_eq!(loc.line, 4);
    assert!(msg.contains("unknown placeholder") && msg.contains("{identity}"), "{msg}");
    let (_, msg) = invalid("[[identity]]\nname = \"a\"\nscopes = []\nsessions = [\"\"]\n[identity.match]\ncidr = [\"10.0.0.0/8\"]\n[[identity]]\nname = \"default\"\nscopes = []\n");
    assert!(msg.contains("empty session pattern"), "{msg}");
    let (loc, msg) = invalid("[sessions]\nmax_per_identity = \"many\"\n");
    assert_eq!(loc.line, 2);
    assert!(msg.contains("expected usize"), "{msg}");
    let p = LoadedPolicy::embedded().policy;
    assert_eq!((p.sessions.max_per_identity, p.sessions.serialize_sends), (50, false));
    assert!(p.nodes.follow_gateway_approvals);
}

#[test]
fn issue15_a_token_is_taken_only_by_reference_and_never_echoed() {
    let policy = |m: &str| format!("[[identity]]\nname = \"ops\"\nscopes = [\"operator.read\"]\n[identity.match]\n{m}\n[[identity]]\nname = \"default\"\nscopes = []\n");
    let ok = LoadedPolicy::parse("p.toml", &policy("token = [\"env:OPS_TOKEN\", \"file:secrets/ops\"]\ntoken_sha256 = [\"file:ops.sha256\"]")).unwrap();
    let m = &ok.policy.identities[0].matcher;
    assert!(!m.is_empty() && m.has_unresolved_secrets());
    let (loc, msg) = invalid(&policy("token = [\"hunter2-the-real-token\"]"));
    assert_eq!((loc.line, loc.key.as_deref()), (5, Some("identity.match.token")), "{msg}");
    assert!(msg.contains("secret references only") && !msg.contains("hunter2"), "{msg}");
    let (_, msg) = invalid(&policy("token = [\"env:OPS-TOKEN\"]"));
    assert!(msg.contains("secret references only"), "{msg}");
    let (_, msg) = invalid(&policy("token_sha256 = [\"abc\"]"));
    assert!(msg.contains("64 hex digits or a secret reference"), "{msg}");
    let (loc, msg) = invalid("[audit]\nsigning_key = \"0011223344556677889900112233445566778899001122334455667788990011\"\n");
    assert_eq!((loc.line, loc.key.as_deref()), (2, Some("audit.signing_key")), "{msg}");
    assert!(!msg.contains("00112233"), "the key itself is never echoed: {msg}");
}
