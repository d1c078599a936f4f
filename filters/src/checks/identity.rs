//! Identities: who a client is, from what is known of it (certificate, address, device id,
//! credential), and what it may do. The most specific matching identity wins:
//! certificate > device id > credential > address (longest prefix first), then policy order.

use crate::protocol::peer::Peer;
use crate::protocol::scopes::{Role, Scope, ScopeSet};
use crate::protocol::sessions::SessionScope;
use clawguard_policies::{canonical_ip, Glob, Identity, IdentityMatch, Mode, Policy, RoleName};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// An identity ready for decisions.
#[derive(Debug)]
pub struct CompiledIdentity {
    /// Its name.
    pub name: String,
    /// Its scope ceiling, with everything the named scopes imply (admin: every scope).
    pub ceiling: ScopeSet,
    /// The ceiling as the gateway's `x-openclaw-scopes` header value (comma-separated names),
    /// built once so a request only shares it.
    pub ceiling_header: bytes::Bytes,
    /// Why a request resolved to it when it alone matched, built once (see [`Resolution::why`]).
    matched_why: Arc<str>,
    /// Whether it overrides the global mode.
    pub mode: Option<Mode>,
    /// The limits profile.
    pub limits: Option<String>,
    /// The session keys it may name and see.
    pub sessions: SessionScope,
    /// Whether it may choose an HTTP inference session with `x-openclaw-session-key`.
    pub session_key_header: bool,
    /// Hosts whose URLs it may have the gateway fetch.
    pub allow_hosts: Vec<Glob>,
    /// Tools it may run (`None`: every tool).
    allow_tools: Option<Vec<Glob>>,
    deny_tools: Vec<Glob>,
    operator: bool,
    node: bool,
    allow: Vec<Glob>,
    deny: Vec<Glob>,
    matcher: IdentityMatch,
    /// Every credential hash that matches (lowercase hex).
    token_sha256: Vec<String>,
    /// Whether a credential criterion is a reference not read: then it matches no one.
    unresolved: bool,
}

impl CompiledIdentity {
    fn new(id: &Identity) -> Self {
        let mut matcher = id.matcher.clone();
        let unresolved = matcher.has_unresolved_secrets();
        let token_sha256 = matcher.token_hashes().map(str::to_ascii_lowercase).collect();
        matcher.cert_sha256.iter_mut().for_each(|h| *h = h.to_ascii_lowercase());
        let ceiling = id.scopes.get_ref().iter().filter_map(|s| Scope::parse(s)).collect::<ScopeSet>().closure();
        let sessions = match &id.sessions {
            Some(patterns) => SessionScope::new(patterns.get_ref(), &id.name),
            None => SessionScope::default_for(&id.name, ceiling.contains(Scope::Admin)),
        };
        let allow_tools = match &id.allow_tools {
            Some(list) => Some(list.clone()),
            None if id.name == "default" => Some(Vec::new()),
            None => None,
        };
        CompiledIdentity {
            name: id.name.clone(),
            ceiling_header: ceiling.names().join(",").into(),
            matched_why: if id.name == "default" { DEFAULT_WHY.into() } else { format!("identity {:?}", id.name).into() },
            ceiling,
            session_key_header: id.session_key_header.unwrap_or(sessions.is_unrestricted()),
            sessions,
            allow_hosts: id.allow_hosts.clone(),
            allow_tools,
            deny_tools: id.deny_tools.clone(),
            mode: id.mode,
            limits: id.limits.clone(),
            operator: id.roles.contains(&RoleName::Operator),
            node: id.roles.contains(&RoleName::Node),
            allow: id.allow_methods.clone(),
            deny: id.deny_methods.clone(),
            unresolved,
            token_sha256,
            matcher,
        }
    }

    /// Whether it may connect with `role`.
    pub fn allows_role(&self, role: Role) -> bool {
        match role {
            Role::Operator => self.operator,
            Role::Node => self.node,
        }
    }

    /// The glob that forbids `method` for this identity, if any (deny list, or not on a
    /// non-empty allow list).
    pub fn method_refusal(&self, method: &str) -> Option<String> {
        if let Some(g) = self.deny.iter().find(|g| g.matches(method)) {
            return Some(format!("deny_methods {:?}", g.as_str()));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|g| g.matches(method)) {
            return Some("not in allow_methods".to_string());
        }
        None
    }

    /// Why `tool` is not one this identity may run through `tools.invoke`, if it is not.
    pub fn tool_refusal(&self, tool: &str) -> Option<String> {
        if let Some(g) = self.deny_tools.iter().find(|g| g.matches(tool)) {
            return Some(format!("deny_tools {:?}", g.as_str()));
        }
        match &self.allow_tools {
            Some(list) if list.is_empty() => Some("it may run no tools (no allow_tools)".into()),
            Some(list) if !list.iter().any(|g| g.matches(tool)) => Some("not in allow_tools".into()),
            _ => None,
        }
    }

    /// Whether it may have the gateway fetch a URL on `host` (lowercase, no port).
    pub fn may_fetch(&self, host: &str) -> bool {
        self.allow_hosts.iter().any(|g| g.matches(host))
    }

    fn has_connect_criteria(&self) -> bool {
        !self.matcher.device_id.is_empty() || !self.token_sha256.is_empty() || self.unresolved
    }

    /// Transport-level criteria (certificate, address): `Some(score)` when all given match.
    fn transport_match(&self, peer: &Peer) -> Option<(u32, u8)> {
        let m = &self.matcher;
        let cert = peer.client_cert.as_ref();
        let mut score = 0;
        if !m.cert_sha256.is_empty() {
            cert.filter(|c| m.cert_sha256.contains(&c.sha256))?;
            score += 8;
        }
        if !m.cert_organization.is_empty() {
            cert.and_then(|c| c.organization.as_ref()).filter(|o| m.cert_organization.contains(o))?;
            score += 8;
        }
        let mut prefix = 0;
        if !m.cidr.is_empty() {
            let ip = canonical_ip(peer.ip);
            prefix = m.cidr.iter().filter(|n| n.contains(&ip)).map(|n| n.prefix_len()).max()?;
            score += 1;
        }
        Some((score, prefix))
    }

    fn connect_match(&self, device_id: Option<&str>, token_sha256: Option<&str>) -> Option<u32> {
        let m = &self.matcher;
        // A credential still named by reference cannot be compared: the identity matches no one.
        if self.unresolved {
            return None;
        }
        let mut score = 0;
        if !m.device_id.is_empty() {
            device_id.filter(|d| m.device_id.iter().any(|x| x == d))?;
            score += 4;
        }
        if !self.token_sha256.is_empty() {
            token_sha256.filter(|t| self.token_sha256.iter().any(|x| x == t))?;
            score += 2;
        }
        Some(score)
    }
}

/// The policy's identities.
#[derive(Debug)]
pub struct Identities {
    list: Vec<Arc<CompiledIdentity>>,
    default: Arc<CompiledIdentity>,
}

/// What is known of a client when its identity is resolved.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// The transport peer.
    pub peer: &'a Peer,
    /// `connect.device.id`, once known.
    pub device_id: Option<&'a str>,
    /// SHA-256 (hex) of the bearer credential, once known.
    pub token_sha256: Option<&'a str>,
}

/// Why a request resolved to `default`.
const DEFAULT_WHY: &str = "identity \"default\": no other identity matches";

/// A resolved identity and why it was chosen.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The identity.
    pub identity: Arc<CompiledIdentity>,
    /// How it was chosen, for refusals and logs (shared: built once per identity unless
    /// several identities matched).
    pub why: Arc<str>,
}

/// Lowercase hex SHA-256 of a credential.
pub fn credential_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Identities {
    /// Compiles the policy's identities (or the built-in pair).
    pub fn new(policy: &Policy) -> Self {
        let mut list = Vec::new();
        let mut default = None;
        for id in policy.effective_identities() {
            let compiled = Arc::new(CompiledIdentity::new(&id));
            if id.name == "default" {
                default = Some(compiled);
            } else {
                list.push(compiled);
            }
        }
        // A validated policy always has a default; an absent one denies everything.
        let default = default.unwrap_or_else(|| {
            Arc::new(CompiledIdentity::new(&Identity {
                name: "default".into(),
                matcher: IdentityMatch::default(),
                roles: vec![],
                scopes: toml::Spanned::new(0..0, vec![]),
                allow_methods: vec![],
                deny_methods: vec![],
                limits: None,
                mode: None,
                sessions: None,
                allow_tools: Some(vec![]),
                deny_tools: vec![],
                allow_hosts: vec![],
                session_key_header: Some(false),
            }))
        });
        Identities { list, default }
    }

    /// The identity by name.
    pub fn by_name(&self, name: &str) -> Option<Arc<CompiledIdentity>> {
        self.list.iter().chain(std::iter::once(&self.default)).find(|i| i.name == name).cloned()
    }

    /// The most specific identity matching the evidence: the highest match score, then the
    /// longest address prefix, then the first listed.
    pub fn resolve(&self, ev: Evidence<'_>) -> Resolution {
        let mut best: Option<(u32, u8, usize)> = None;
        let mut matched = 0;
        for (i, id) in self.list.iter().enumerate() {
            let Some((t, prefix)) = id.transport_match(ev.peer) else { continue };
            let Some(c) = id.connect_match(ev.device_id, ev.token_sha256) else { continue };
            matched += 1;
            if best.is_none_or(|(score, p, _)| (t + c, prefix) > (score, p)) {
                best = Some((t + c, prefix, i));
            }
        }
        let Some((_, _, best)) = best else {
            return Resolution { why: self.default.matched_why.clone(), identity: self.default.clone() };
        };
        let identity = self.list[best].clone();
        let why = if matched == 1 {
            identity.matched_why.clone()
        } else {
            // Rare (overlapping identities): name the others, most specific first.
            let mut others: Vec<(u32, u8, usize)> = self
                .list
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != best)
                .filter_map(|(i, id)| {
                    let (t, prefix) = id.transport_match(ev.peer)?;
                    Some((t + id.connect_match(ev.device_id, ev.token_sha256)?, prefix, i))
                })
                .collect();
            others.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
            let others: Vec<String> = others.iter().map(|m| format!("{:?}", self.list[m.2].name)).collect();
            format!("identity {:?} (most specific of {:?}, {})", identity.name, identity.name, others.join(", ")).into()
        };
        Resolution { identity, why }
    }

    /// The widest ceiling the client can still end up with once its `connect` is read: the
    /// union over every identity whose certificate and address criteria match (plus `default`
    /// when each of those still needs a device id or credential). Sent to the gateway as
    /// `x-openclaw-scopes` on the upgrade, so the gateway itself never grants more.
    pub fn upgrade_ceiling(&self, peer: &Peer) -> ScopeSet {
        let candidates: Vec<&Arc<CompiledIdentity>> = self.list.iter().filter(|id| id.transport_match(peer).is_some()).collect();
        let default_possible = candidates.iter().all(|id| id.has_connect_criteria());
        let mut union = ScopeSet::EMPTY;
        for id in candidates {
            union = union.union(id.ceiling);
        }
        if default_possible {
            union = union.union(self.default.ceiling);
        }
        union
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::peer::ClientCert;
    use clawguard_policies::LoadedPolicy;

    const POLICY: &str = r#"
[[identity]]
name = "lan"
scopes = ["operator.read"]
[identity.match]
cidr = ["10.0.0.0/8"]

[[identity]]
name = "lan-ops"
scopes = ["operator.read", "operator.write"]
[identity.match]
cidr = ["10.1.0.0/16"]

[[identity]]
name = "admin-token"
scopes = ["operator.admin"]
deny_methods = ["config.*"]
[identity.match]
token_sha256 = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]

[[identity]]
name = "laptop"
roles = ["operator", "node"]
scopes = ["operator.read", "operator.pairing"]
[identity.match]
cert_sha256 = ["AA00000000000000000000000000000000000000000000000000000000000000"]

[[identity]]
name = "default"
scopes = []
"#;

    fn ids() -> Identities {
        Identities::new(&LoadedPolicy::parse("p.toml", POLICY).unwrap().policy)
    }

    fn peer(ip: &str, cert: Option<&str>) -> Peer {
        Peer { ip: ip.parse().unwrap(), tls: cert.is_some(), client_cert: cert.map(|c| ClientCert { sha256: c.into(), organization: None, serial: None }) }
    }

    fn name(ids: &Identities, p: &Peer, token: Option<&str>) -> String {
        ids.resolve(Evidence { peer: p, device_id: None, token_sha256: token.map(credential_sha256).as_deref() }).identity.name.clone()
    }

    #[test]
    fn most_specific_wins_and_is_explained() {
        let ids = ids();
        assert_eq!(name(&ids, &peer("10.2.0.1", None), None), "lan");
        assert_eq!(name(&ids, &peer("10.1.0.1", None), None), "lan-ops", "longer prefix");
        assert_eq!(name(&ids, &peer("10.1.0.1", None), Some("test")), "admin-token", "credential beats address");
        assert_eq!(name(&ids, &peer("10.1.0.1", Some("aa")), None), "lan-ops");
        let cert = format!("aa{}", "0".repeat(62));
        assert_eq!(name(&ids, &peer("10.1.0.1", Some(&cert)), Some("test")), "laptop", "certificate beats everything");
        assert_eq!(name(&ids, &peer("192.0.2.1", None), None), "default");
        let r = ids.resolve(Evidence { peer: &peer("10.1.0.1", None), device_id: None, token_sha256: None });
        assert!(r.why.contains("\"lan-ops\"") && r.why.contains("\"lan\""), "{}", r.why);
    }

    #[test]
    fn method_lists_and_roles() {
        let ids = ids();
        let admin = ids.by_name("admin-token").unwrap();
        assert!(admin.method_refusal("config.get").is_some());
        assert!(admin.method_refusal("status").is_none());
        assert!(admin.allows_role(Role::Operator) && !admin.allows_role(Role::Node));
        assert!(ids.by_name("laptop").unwrap().allows_role(Role::Node));
    }

    #[test]
    fn upgrade_ceiling_covers_every_possible_final_identity() {
        let ids = ids();
        // From 10.1/16 the client is lan-ops, or admin-token once its credential is seen.
        let c = ids.upgrade_ceiling(&peer("10.1.0.1", None));
        assert!(c.contains(Scope::Admin) && c.contains(Scope::Write));
        // From elsewhere: default (nothing) or admin-token, whose admin implies every scope; the
        // gateway intersects literally, so every implied scope is listed.
        let c = ids.upgrade_ceiling(&peer("192.0.2.1", None));
        assert_eq!(c, ScopeSet::all());
        let builtin = Identities::new(&LoadedPolicy::parse("p.toml", "").unwrap().policy);
        let local = builtin.upgrade_ceiling(&peer("127.0.0.1", None));
        assert!(!local.contains(Scope::Admin) && local.contains(Scope::Pairing));
        assert_eq!(builtin.upgrade_ceiling(&peer("192.0.2.1", None)).names(), vec!["operator.read", "operator.sessions.read"]);
    }

    #[test]
    fn issue15_an_identity_whose_token_is_still_a_reference_matches_no_one() {
        let text = POLICY.replace(
            r#"token_sha256 = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]"#,
            r#"token = ["env:CLAWGUARD_TEST_UNRESOLVED"]"#,
        );
        let ids = Identities::new(&LoadedPolicy::parse("p.toml", &text).unwrap().policy);
        // Not resolved (only the binary reads references): no credential reaches admin-token.
        assert_eq!(name(&ids, &peer("10.1.0.1", None), Some("test")), "lan-ops");
        assert_eq!(name(&ids, &peer("192.0.2.1", None), Some("env:CLAWGUARD_TEST_UNRESOLVED")), "default");
        let text = POLICY.replace("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "file:admin.sha256");
        let ids = Identities::new(&LoadedPolicy::parse("p.toml", &text).unwrap().policy);
        assert_eq!(name(&ids, &peer("10.1.0.1", None), Some("test")), "lan-ops");
    }
}
