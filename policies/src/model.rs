//! The typed policy: one struct per section, every field with a default.

use crate::{Glob, PolicyError, PolicySource};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use toml::Spanned;

/// A whole policy document.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// `enforce` refusals, or only record them (`dry-run`); identities may override it.
    #[serde(default)]
    pub mode: Mode,
    /// Listeners, worker threads and shutdown.
    #[serde(default)]
    pub server: Server,
    /// The gateway clawguard protects.
    #[serde(default)]
    pub upstream: Upstream,
    /// TLS and mTLS termination.
    #[serde(default)]
    pub tls: Tls,
    /// Which peers count as local to the gateway.
    #[serde(default)]
    pub attribution: Attribution,
    /// WebSocket limits and timers.
    #[serde(default)]
    pub websocket: WebSocket,
    /// The admin listener (metrics, health, policy).
    #[serde(default)]
    pub admin: Admin,
    /// Log format and level.
    #[serde(default)]
    pub logging: Logging,
    /// Rules applied to every gateway frame, whoever sends it.
    #[serde(default, rename = "frame_rule")]
    pub frame_rules: Vec<FrameRule>,
    /// The gateway this policy targets.
    #[serde(default)]
    pub gateway: Gateway,
    /// Config paths that may not be changed through the proxy, even by an admin.
    #[serde(default)]
    pub config_guard: ConfigGuardSection,
    /// Node command-set pinning.
    #[serde(default)]
    pub nodes: Nodes,
    /// Session ownership: quotas and send serialisation.
    #[serde(default)]
    pub sessions: Sessions,
    /// The exec policy: which commands may run on nodes and in the `exec` tool.
    #[serde(default)]
    pub exec: Exec,
    /// Rate limits (the default profile, and named profiles for identities).
    #[serde(default)]
    pub limits: Limits,
    /// Who the clients are and what each may do. None: the built-in `local` and `default`.
    #[serde(default, rename = "identity")]
    pub identities: Vec<Identity>,
    /// The HTTP surface: routes, bodies, origins and response headers.
    #[serde(default)]
    pub http: Http,
    /// The audit log: what is recorded, where, how it is signed, redacted and kept.
    #[serde(default)]
    pub audit: Audit,
    /// `clawguard doctor`: findings the operator has accepted, each with a reason.
    #[serde(default)]
    pub doctor: Doctor,
    /// Spend budgets: the cost circuit breaker on run-starting requests.
    #[serde(default)]
    pub spend: Spend,
    /// Where the state shared by replicas lives: this process, or Redis.
    #[serde(default)]
    pub state: State,
}

/// `[state]`: the replay memory, auth-failure lockouts, keyed rate limits and spend figures,
/// in this process (`memory`) or shared by every clawguard using the same Redis (`redis`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct State {
    /// `memory` or `redis`.
    pub backend: StateBackend,
    /// The Redis URL (`redis://` or `rediss://` for TLS, user and password in it) as a secret
    /// reference (`env:NAME` or `file:PATH`).
    pub url: Option<String>,
    /// The longest a request waits for Redis (milliseconds) before the kind's failure rule
    /// applies (replay and lockout refuse, rate limits fall back to this replica's own).
    pub timeout_ms: u64,
    /// The prefix of every key clawguard writes.
    pub prefix: String,
    /// The name of the gateway behind this clawguard: replicas in front of one gateway use the
    /// same name, so its usage is counted once (default: the upstream address).
    pub gateway: Option<String>,
}

impl Default for State {
    fn default() -> Self {
        State { backend: StateBackend::Memory, url: None, timeout_ms: 50, prefix: "clawguard".into(), gateway: None }
    }
}

/// Where shared state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackend {
    /// In this process only.
    #[default]
    Memory,
    /// In Redis, shared by every clawguard using it.
    Redis,
}

/// `[spend]`: budgets on what model runs cost, per hour or per day, globally or per identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Spend {
    /// The fraction of a budget at which a warning is recorded (0 < warn_at <= 1).
    pub warn_at: f64,
    /// Measure spend by asking the gateway (`sessions.usage` for the current UTC day, over
    /// clawguard's own connection); budgets need it.
    pub poll: bool,
    /// The gateway credential of that connection (a secret reference, `env:NAME` or
    /// `file:PATH`); it asks for `operator.read` only.
    pub poll_token: Option<String>,
    /// Seconds between two usage reports.
    pub poll_interval_seconds: u64,
    /// A usage report older than this (seconds) leaves spend unknown: run-starting requests are
    /// refused until a fresh report arrives (fail closed).
    pub max_report_age_seconds: u64,
    /// When an enforced budget trips, also stop the runs in flight that clawguard saw start
    /// (`chat.send` on a WebSocket that is still open) with `chat.abort`, on the connection
    /// that started them; otherwise they run to their end and only new runs are refused.
    pub abort_running: bool,
    /// The budgets (none: spend is counted and shown, nothing is refused).
    #[serde(rename = "budget")]
    pub budgets: Vec<Budget>,
}

impl Default for Spend {
    fn default() -> Self {
        Spend { warn_at: 0.8, poll: false, poll_token: None, poll_interval_seconds: 10, max_report_age_seconds: 120, abort_running: false, budgets: Vec::new() }
    }
}

/// `[[spend.budget]]`: one budget. Past `usd` or `tokens` in the current window, new
/// run-starting requests of the identities it covers are refused until the window resets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// The budget's name (in refusals, metrics and the audit log).
    pub name: Spanned<String>,
    /// The window: the current UTC hour or UTC day.
    pub period: BudgetPeriod,
    /// The identity it covers (none: every request through this clawguard, the global budget).
    #[serde(default)]
    pub identity: Option<Spanned<String>>,
    /// The most money (in the gateway's currency, USD) a window may cost.
    #[serde(default)]
    pub usd: Option<f64>,
    /// The most model tokens a window may use (for providers the gateway reports no price for).
    #[serde(default)]
    pub tokens: Option<u64>,
    /// Counted and recorded, not enforced.
    #[serde(default)]
    pub shadow: bool,
}

/// The window a budget is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetPeriod {
    /// The current UTC hour.
    Hour,
    /// The current UTC day.
    Day,
}

impl BudgetPeriod {
    /// The window's length in milliseconds.
    pub fn millis(self) -> u64 {
        match self {
            BudgetPeriod::Hour => 3_600_000,
            BudgetPeriod::Day => 86_400_000,
        }
    }

    /// The policy word for it.
    pub fn label(self) -> &'static str {
        match self {
            BudgetPeriod::Hour => "hour",
            BudgetPeriod::Day => "day",
        }
    }
}

/// `[doctor]`: how `clawguard doctor` treats this deployment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Doctor {
    /// Findings accepted by the operator: still shown, marked accepted with the reason, and
    /// left out of the score and of `--fail-on`.
    #[serde(default)]
    pub accept: Vec<DoctorAccept>,
}

/// One accepted `clawguard doctor` finding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoctorAccept {
    /// The finding's check id (as `clawguard doctor --json` shows it), e.g. `gateway.exec.no_approvals`.
    pub check: Spanned<String>,
    /// Why it is accepted (required, shown with the finding).
    pub reason: String,
}

/// Whether refusals are enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Refuse.
    #[default]
    Enforce,
    /// Forward, and record what would have been refused.
    DryRun,
}

/// `[[identity]]`: a kind of client, how it is recognised, and its ceiling.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The identity's name (`default` is the one for clients that match nothing).
    pub name: String,
    /// How it is recognised; every criterion given must match. `default` has none.
    #[serde(default, rename = "match")]
    pub matcher: IdentityMatch,
    /// Roles it may connect with (`operator`, `node`).
    #[serde(default = "default_roles")]
    pub roles: Vec<RoleName>,
    /// The scope ceiling: the most it may be granted (required; `[]` for none).
    /// `operator.admin` only where named.
    pub scopes: Spanned<Vec<String>>,
    /// Method globs it may call (empty: every method its scopes allow).
    #[serde(default)]
    pub allow_methods: Vec<Glob>,
    /// Method globs it may never call.
    #[serde(default)]
    pub deny_methods: Vec<Glob>,
    /// The limits profile (used by rate limits).
    #[serde(default)]
    pub limits: Option<String>,
    /// Overrides the global `mode` for this identity.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Session-key patterns this identity may name and see (`*`: any run of characters
    /// other than `:`; `**`: any run; `{identity}`: the identity's name). Default: `["**"]` for
    /// an identity whose ceiling has `operator.admin`, otherwise only its own keys,
    /// `["agent:*:{identity}", "agent:*:{identity}:**"]`.
    #[serde(default)]
    pub sessions: Option<Spanned<Vec<String>>>,
    /// Tool globs it may run through `tools.invoke` (WebSocket) and `POST /tools/invoke`
    /// (HTTP). Default: every tool, except for `default`, which may run none.
    #[serde(default)]
    pub allow_tools: Option<Vec<Glob>>,
    /// Tool globs it may never run.
    #[serde(default)]
    pub deny_tools: Vec<Glob>,
    /// Hosts (globs, `*.example.com`) whose URLs it may have the gateway fetch in
    /// `/v1/responses` and `/v1/chat/completions` bodies (default: none).
    #[serde(default)]
    pub allow_hosts: Vec<Glob>,
    /// Whether it may choose the session of an HTTP inference request with
    /// `x-openclaw-session-key` (the key must still be its own). Default: only an identity whose
    /// sessions are unrestricted (`["**"]`); for others the header is removed.
    #[serde(default)]
    pub session_key_header: Option<bool>,
}

fn default_roles() -> Vec<RoleName> {
    vec![RoleName::Operator]
}

/// A connection role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    /// Control-plane client.
    Operator,
    /// Capability host.
    Node,
}

/// How an identity is recognised. Within a list any entry matches; across kinds, all given must.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityMatch {
    /// SHA-256 fingerprints (hex) of the mTLS client certificate.
    #[serde(default)]
    pub cert_sha256: Vec<String>,
    /// The client certificate subject's organization (O).
    #[serde(default)]
    pub cert_organization: Vec<String>,
    /// `connect.device.id` values.
    #[serde(default)]
    pub device_id: Vec<String>,
    /// SHA-256 (hex) of the bearer credential: `auth.token`, `auth.deviceToken`, or an HTTP
    /// bearer; an entry may also be a secret reference (`env:NAME`, `file:PATH`) to the hex.
    #[serde(default)]
    pub token_sha256: Vec<String>,
    /// The bearer credential itself, as secret references only (`env:NAME`, `file:PATH`):
    /// resolved at load, kept as its SHA-256, never written into the policy.
    #[serde(default)]
    pub token: Vec<String>,
    /// What the `token` and `token_sha256` references resolved to (hex SHA-256 values), set by
    /// the loader that read them; `None`: not read. Never part of the file.
    #[serde(skip)]
    pub resolved_token_sha256: Option<Vec<String>>,
    /// Source address ranges.
    #[serde(default)]
    pub cidr: Vec<IpNet>,
}

impl IdentityMatch {
    /// Whether no criterion is given.
    pub fn is_empty(&self) -> bool {
        self.cert_sha256.is_empty() && self.cert_organization.is_empty() && self.device_id.is_empty() && self.token_sha256.is_empty() && self.token.is_empty() && self.cidr.is_empty()
    }

    /// Whether a credential criterion is still a secret reference: such an identity matches no
    /// one until the references are resolved (fail closed).
    pub fn has_unresolved_secrets(&self) -> bool {
        self.resolved_token_sha256.is_none() && self.secret_references().next().is_some()
    }

    /// The credential criteria given by reference: `("token", ref)` and `("token_sha256", ref)`.
    pub fn secret_references(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let hashes = self.token_sha256.iter().filter(|h| !is_sha256_hex(h)).map(|r| ("token_sha256", r.as_str()));
        self.token.iter().map(|r| ("token", r.as_str())).chain(hashes)
    }

    /// Every credential hash to compare (hex, as written or resolved).
    pub fn token_hashes(&self) -> impl Iterator<Item = &str> {
        let written = self.token_sha256.iter().filter(|h| is_sha256_hex(h));
        written.chain(self.resolved_token_sha256.iter().flatten()).map(String::as_str)
    }
}

/// Whether `text` is a SHA-256 in hex (64 hex digits).
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every operator scope except `operator.admin`.
pub const NON_ADMIN_SCOPES: &[&str] = &[
    "operator.read",
    "operator.write",
    "operator.sessions.read",
    "operator.sessions.write",
    "operator.approvals",
    "operator.questions",
    "operator.pairing",
    "operator.talk",
    "operator.talk.secrets",
];

/// All operator scope names.
pub const ALL_SCOPES: &[&str] = &[
    "operator.admin",
    "operator.read",
    "operator.write",
    "operator.sessions.read",
    "operator.sessions.write",
    "operator.approvals",
    "operator.questions",
    "operator.pairing",
    "operator.talk",
    "operator.talk.secrets",
];

impl Policy {
    /// The identities in force: the policy's, or the built-in `local` (loopback peers: every
    /// operator scope but admin, roles operator and node) and `default` (read only).
    pub fn effective_identities(&self) -> Vec<Identity> {
        if !self.identities.is_empty() {
            return self.identities.clone();
        }
        let scopes = |names: &[&str]| Spanned::new(0..0, names.iter().map(|s| s.to_string()).collect());
        vec![
            Identity {
                name: "local".into(),
                matcher: IdentityMatch { cidr: Attribution::default().local_cidrs, ..IdentityMatch::default() },
                roles: vec![RoleName::Operator, RoleName::Node],
                scopes: scopes(NON_ADMIN_SCOPES),
                allow_methods: vec![],
                deny_methods: vec![],
                limits: None,
                mode: None,
                sessions: None,
                allow_tools: None,
                deny_tools: vec![],
                allow_hosts: vec![],
                session_key_header: None,
            },
            Identity {
                name: "default".into(),
                matcher: IdentityMatch::default(),
                roles: vec![RoleName::Operator],
                scopes: scopes(&["operator.read"]),
                allow_methods: vec![],
                deny_methods: vec![],
                limits: None,
                mode: None,
                sessions: None,
                allow_tools: None,
                deny_tools: vec![],
                allow_hosts: vec![],
                session_key_header: None,
            },
        ]
    }
}

/// `[server]`: the proxy's plaintext listeners and process settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Plaintext listen addresses.
    pub listen: Vec<SocketAddr>,
    /// Worker threads; 0 means one per CPU core.
    pub threads: usize,
    /// Seconds given to open connections to finish on SIGTERM.
    pub shutdown_grace_seconds: u64,
    /// Client connections (HTTP and WebSocket, plaintext and TLS) open at once per address
    /// (0: no cap).
    pub max_connections_per_ip: usize,
    /// Client connections open at once from all addresses (0: no cap).
    pub max_connections: usize,
    /// A request head (TLS handshake included, for a new connection) must arrive whole within
    /// this many seconds of the connection opening or the previous answer.
    pub header_timeout_seconds: u64,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: vec![([127, 0, 0, 1], 18790).into()],
            threads: 0,
            shutdown_grace_seconds: 5,
            max_connections_per_ip: 256,
            max_connections: 16_384,
            header_timeout_seconds: 10,
        }
    }
}

/// `[upstream]`: the OpenClaw gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    /// The gateway's address.
    pub address: SocketAddr,
    /// TCP connect timeout, milliseconds.
    pub connect_timeout_ms: u64,
    /// How long the gateway may take to answer a WebSocket upgrade, milliseconds.
    pub handshake_timeout_ms: u64,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream { address: ([127, 0, 0, 1], 18789).into(), connect_timeout_ms: 3_000, handshake_timeout_ms: 10_000 }
    }
}

/// `[tls]`: TLS termination with rustls, optional mTLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// TLS listen addresses (empty: no TLS listener).
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain (paths are relative to the policy file).
    pub cert: Option<Spanned<PathBuf>>,
    /// PEM private key.
    pub key: Option<Spanned<PathBuf>>,
    /// PEM CA bundle for client certificates; setting it enables mTLS.
    pub client_ca: Option<Spanned<PathBuf>>,
    /// With `client_ca`: whether a client certificate is `required` or `optional`.
    pub client_auth: ClientAuth,
    /// Refuse plaintext connections from non-loopback peers.
    pub require_for_remote: bool,
}

impl Default for Tls {
    fn default() -> Self {
        Tls { listen: vec![], cert: None, key: None, client_ca: None, client_auth: ClientAuth::Required, require_for_remote: true }
    }
}

/// Whether mTLS client certificates are mandatory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A connection without a valid client certificate fails the TLS handshake.
    Required,
    /// A client certificate is verified when presented, but may be absent.
    Optional,
}

/// `[attribution]`: how the gateway learns who the client is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Attribution {
    /// Peers in these ranges reach the gateway as local (no forwarding headers);
    /// every other peer is named in `X-Forwarded-For`, `X-Real-IP` and `Forwarded`.
    pub local_cidrs: Vec<IpNet>,
}

impl Default for Attribution {
    fn default() -> Self {
        Attribution { local_cidrs: vec!["127.0.0.0/8".parse().expect("cidr"), "::1/128".parse().expect("cidr")] }
    }
}

impl Attribution {
    /// Whether `ip` is local (IPv4-mapped IPv6 addresses are judged as IPv4).
    pub fn is_local(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.local_cidrs.iter().any(|net| net.contains(&ip))
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`; every other address unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// `[gateway]`: what clawguard expects to stand in front of.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gateway {
    /// The gateway version the policy targets; a `hello-ok` from another version is logged and counted.
    pub version: String,
    /// What a `hello-ok` from another version does besides the log and the metric: `log`
    /// (default) or `unready` (`/readyz` answers 503 until a reload names the version).
    pub on_version_mismatch: OnVersionMismatch,
    /// More requests than this within a minute for methods the method table does not have
    /// count as drift, like a `hello-ok` of another version (0: never).
    pub unknown_methods_per_minute: u32,
}

/// `gateway.on_version_mismatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnVersionMismatch {
    /// Logged and counted (`clawguard_gateway_version_mismatch_total`); still ready. The
    /// default: methods the method table does not know need `operator.admin`, so a newer
    /// gateway's new methods stay closed to everyone else, and a gateway upgraded ahead of its
    /// policy is not taken out of service.
    #[default]
    Log,
    /// Also not ready, until a reload names the gateway's version.
    Unready,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway { version: "2026.9.6".into(), on_version_mismatch: OnVersionMismatch::Log, unknown_methods_per_minute: 10 }
    }
}

/// `[audit]`: the hash-chained, signed, redacted audit log (docs/audit.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    /// Whether clawguard writes the log (the embedded policy, having no directory, never does).
    pub enabled: bool,
    /// The directory of the log files (relative paths: to the policy file's directory).
    pub dir: PathBuf,
    /// Which allowed requests are recorded besides every refusal and security event:
    /// `none`, `sensitive` (methods and routes that write, grant or run) or `all`.
    pub record_allowed: RecordAllowed,
    /// When the file is flushed to disk: at every `checkpoint`, after `always` every batch,
    /// or `never` (the operating system decides).
    pub fsync: Fsync,
    /// When a record cannot be written (queue full, disk full, I/O error): `block` refuses what
    /// must be recorded and turns readiness false; `continue` counts the loss and goes on.
    pub on_failure: OnFailure,
    /// Records the queue to the writer holds.
    pub queue: usize,
    /// A signed checkpoint after this many records…
    pub checkpoint_every: u64,
    /// …or after this many seconds with records since the last one.
    pub checkpoint_interval_seconds: u64,
    /// The Ed25519 signing key (32-byte seed, hex or raw): `file:PATH` (relative: to the
    /// policy's directory; created 0600 if missing) or `env:NAME`.
    pub signing_key: String,
    /// A new file once the current one reaches this many bytes.
    pub rotate_bytes: u64,
    /// A new file at each UTC day.
    pub rotate_daily: bool,
    /// Rotated files kept (0: all).
    pub retain_files: usize,
    /// Rotated files older than this many days removed (0: kept).
    pub retain_days: u64,
    /// More patterns (regular expressions) whose matches in any string are replaced by their
    /// keyed hash, besides the built-in secret shapes.
    pub redact_patterns: Vec<String>,
    /// Fields encrypted with AES-256-GCM (`command`, `session`, `excerpt`); empty: none.
    pub encrypt_fields: Vec<EncryptedField>,
    /// The AES-256 key (32 bytes, hex): `file:PATH` or `env:NAME`; required with `encrypt_fields`.
    pub encryption_key: Option<String>,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            enabled: true,
            dir: "audit".into(),
            record_allowed: RecordAllowed::Sensitive,
            fsync: Fsync::Checkpoint,
            on_failure: OnFailure::Block,
            queue: 65_536,
            checkpoint_every: 1000,
            checkpoint_interval_seconds: 60,
            signing_key: "file:audit/signing.key".into(),
            rotate_bytes: 128 * 1024 * 1024,
            rotate_daily: true,
            retain_files: 0,
            retain_days: 0,
            redact_patterns: Vec::new(),
            encrypt_fields: Vec::new(),
            encryption_key: None,
        }
    }
}

/// Where a secret comes from: a file or an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `file:PATH` (a relative path is relative to the policy's directory).
    File(PathBuf),
    /// `env:NAME`.
    Env(String),
}

impl SecretRef {
    /// Reads `file:PATH` or `env:NAME`.
    pub fn parse(text: &str) -> Result<SecretRef, String> {
        match text.split_once(':') {
            Some(("file", path)) if !path.is_empty() => Ok(SecretRef::File(path.into())),
            Some(("env", name)) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => Ok(SecretRef::Env(name.into())),
            // Not echoed: a value that is not a reference may be the secret itself.
            _ => Err("not a secret reference: expected file:PATH or env:NAME (NAME of letters, digits and _)".to_string()),
        }
    }
}

/// Which allowed requests the audit log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordAllowed {
    /// Only refusals and security events.
    None,
    /// Also allowed requests that write, grant or run.
    Sensitive,
    /// Every request.
    All,
}

/// When the audit file is flushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// At every checkpoint and at the seal.
    Checkpoint,
    /// After every batch: a record is on disk before the request it records goes on.
    Always,
    /// Never explicitly.
    Never,
}

/// What happens when the audit log cannot take a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Refuse what must be recorded; readiness false until the log writes again.
    Block,
    /// Count the lost record and go on.
    Continue,
}

/// A record field the audit log can encrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncryptedField {
    /// Exec commands (`target.command`).
    Command,
    /// Session keys (`target.session`).
    Session,
    /// Message excerpts (`details.excerpt`).
    Excerpt,
}

/// `[nodes]`: node command-set pinning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Nodes {
    /// The pin store file (relative paths: to the policy file's directory).
    pub store: std::path::PathBuf,
    /// An unknown node's first connect: `pending` (nothing invocable until approved) or `trust`.
    pub first_connect: FirstConnectMode,
    /// Update pins from `node.pair.approve` answers that pass through clawguard.
    pub follow_gateway_approvals: bool,
    /// Commands no node may have, whatever it declares or an operator approves.
    pub deny_commands: Vec<Glob>,
    /// When non-empty, the only commands a node may have (deny still wins).
    pub allow_commands: Vec<Glob>,
}

/// How an unknown node's first connect is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirstConnectMode {
    /// Nothing is invocable until an operator approves.
    Pending,
    /// Pin what it declares (trust on first use).
    Trust,
}

impl Default for Nodes {
    fn default() -> Self {
        let deny = [
            "camera.snap", "camera.clip", "camera.ptz.control", "screen.record", "contacts.add", "calendar.add", "reminders.add",
            "sms.send", "sms.search", "health.summary", "worker.*",
        ];
        Nodes {
            store: "node-pins.json".into(),
            first_connect: FirstConnectMode::Pending,
            follow_gateway_approvals: true,
            deny_commands: deny.iter().map(|g| Glob::new(g).expect("built-in globs are valid")).collect(),
            allow_commands: Vec::new(),
        }
    }
}

/// `[sessions]`: session ownership beyond the per-identity key patterns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sessions {
    /// Distinct sessions an identity may create (through `sessions.create`, `chat.send`,
    /// `agent`, `sessions.send`, `send`), counted while clawguard runs; 0 for no limit.
    pub max_per_identity: usize,
    /// A second `chat.send` to a session whose run has not finished gets a retryable
    /// `UNAVAILABLE` "session busy" instead of interleaving.
    pub serialize_sends: bool,
    /// A run with no end seen frees its session after this long.
    pub busy_timeout_seconds: u64,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions { max_per_identity: 50, serialize_sends: false, busy_timeout_seconds: 600 }
    }
}

/// `[limits]`: rate limits. The keys here are the default profile; an identity with
/// `limits = "NAME"` uses `[limits.profile.NAME]`, whose unset keys fall back to these.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Limits counted but not enforced (`session-inference`, `node-invoke`, …).
    pub shadow: Vec<String>,
    /// How often refilled keys are pruned.
    pub prune_interval_seconds: u64,
    /// The most keys one limit holds; past it the most idle keys are evicted first.
    pub max_keys: usize,
    /// New WebSocket connections per second per source IP (`ip-connections`).
    pub ip_connections_per_second: u32,
    /// The burst of new connections per source IP.
    pub ip_connections_burst: u32,
    /// Connections per source IP that have not completed the handshake (`hello-ok`) yet.
    pub ip_pending_handshakes: usize,
    /// Connections from all addresses that have not completed the handshake yet (0: no cap).
    pub pending_handshakes_total: usize,
    /// `connect` requests per minute per source IP (`ip-handshakes`).
    pub ip_handshakes_per_minute: u32,
    /// Failed connects (`AUTH_*`, `DEVICE_AUTH_*`, `PAIRING_REQUIRED`) per source IP and per
    /// claimed device id within `auth_failure_window_seconds` that lock it out
    /// (`auth-lockout`): the N-th failure in any such window locks (0: no lockout).
    pub auth_failures: u32,
    /// The sliding window the failures are counted in.
    pub auth_failure_window_seconds: u64,
    /// How long a lockout lasts.
    pub auth_lockout_seconds: u64,
    /// Client messages per second per connection (`connection-messages`).
    pub connection_messages_per_second: u32,
    /// The burst of client messages per connection.
    pub connection_messages_burst: u32,
    /// Client bytes per second per connection (`connection-bytes`).
    pub connection_bytes_per_second: u32,
    /// The burst of client bytes per connection.
    pub connection_bytes_burst: u32,
    /// Gateway messages per second per connection (`gateway-messages`).
    pub gateway_messages_per_second: u32,
    /// Gateway bytes per second per connection (`gateway-bytes`).
    pub gateway_bytes_per_second: u32,
    /// Messages over a per-connection limit tolerated in a row before close 1008 "rate limit".
    pub connection_grace: u32,
    /// HTTP `POST /tools/invoke` per minute per identity (`http-tools-invoke`).
    pub http_tools_invoke_per_minute: u32,
    /// HTTP `/v1/*` (OpenAI-compatible inference) per minute per identity (`http-inference`).
    pub http_inference_per_minute: u32,
    /// HTTP hooks (`/hooks/*`) per minute per source IP (`http-hooks`).
    pub http_hooks_per_minute: u32,
    /// Methods counted as inference (globs).
    pub inference_methods: Vec<Glob>,
    /// Inference requests per minute per session key.
    pub session_inference_per_minute: u32,
    /// `node.invoke` per minute per node.
    pub node_invoke_per_minute: u32,
    /// `node.invoke` per minute per identity.
    pub identity_node_invoke_per_minute: u32,
    /// `system.run` / `system.run.prepare` per minute per node.
    pub system_run_per_minute: u32,
    /// Named profiles.
    pub profile: std::collections::BTreeMap<String, LimitProfile>,
}

/// The names of the rate limits.
pub const LIMIT_NAMES: &[&str] = &[
    "session-inference",
    "node-invoke",
    "identity-node-invoke",
    "system-run",
    "ip-connections",
    "ip-pending-handshakes",
    "ip-handshakes",
    "auth-lockout",
    "connection-messages",
    "connection-bytes",
    "gateway-messages",
    "gateway-bytes",
    "http-tools-invoke",
    "http-inference",
    "http-hooks",
];

impl Default for Limits {
    fn default() -> Self {
        let inference = ["chat.send", "agent", "sessions.send", "sessions.steer", "sessions.dispatch", "talk.session.create", "talk.client.create", "talk.speak", "tts.convert", "tts.speak"];
        Limits {
            shadow: Vec::new(),
            prune_interval_seconds: 60,
            max_keys: 100_000,
            ip_connections_per_second: 10,
            ip_connections_burst: 40,
            ip_pending_handshakes: 32,
            pending_handshakes_total: 4096,
            ip_handshakes_per_minute: 120,
            auth_failures: 10,
            auth_failure_window_seconds: 300,
            auth_lockout_seconds: 300,
            connection_messages_per_second: 100,
            connection_messages_burst: 400,
            connection_bytes_per_second: 4 * 1024 * 1024,
            connection_bytes_burst: 64 * 1024 * 1024,
            gateway_messages_per_second: 2_000,
            gateway_bytes_per_second: 64 * 1024 * 1024,
            connection_grace: 20,
            http_tools_invoke_per_minute: 60,
            http_inference_per_minute: 30,
            http_hooks_per_minute: 120,
            inference_methods: inference.iter().map(|g| Glob::new(g).expect("built-in globs are valid")).collect(),
            session_inference_per_minute: 30,
            node_invoke_per_minute: 60,
            identity_node_invoke_per_minute: 120,
            system_run_per_minute: 20,
            profile: Default::default(),
        }
    }
}

/// `[limits.profile.NAME]`: overrides of the default profile (0 disables a limit).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitProfile {
    /// Inference requests per minute per session key.
    #[serde(default)]
    pub session_inference_per_minute: Option<u32>,
    /// `node.invoke` per minute per node.
    #[serde(default)]
    pub node_invoke_per_minute: Option<u32>,
    /// `node.invoke` per minute per identity.
    #[serde(default)]
    pub identity_node_invoke_per_minute: Option<u32>,
    /// `system.run` per minute per node.
    #[serde(default)]
    pub system_run_per_minute: Option<u32>,
}

/// `[exec]`: every command that would run is parsed as shell and judged segment by segment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Exec {
    /// Overrides the global `mode` for exec decisions.
    pub mode: Option<Mode>,
    /// The decision for a command no rule matches.
    pub default: ExecDecision,
    /// List and pipeline operators a script may use (`&&`, `||`, `;`, `|`).
    pub operators: Vec<String>,
    /// How many wrappers (`env`, `nice`, `sh -c`, …) are peeled before giving up (deny).
    pub max_wrapper_depth: usize,
    /// The longest command (argv joined, or script) judged; longer is refused.
    pub max_command_bytes: usize,
    /// Prefix rules; the strictest decision of all matching rules wins.
    #[serde(rename = "rule")]
    pub rules: Vec<ExecRule>,
}

impl Default for Exec {
    fn default() -> Self {
        Exec {
            mode: None,
            default: ExecDecision::Deny,
            operators: ["&&", "||", ";", "|"].iter().map(|s| s.to_string()).collect(),
            max_wrapper_depth: 4,
            max_command_bytes: 16 * 1024,
            rules: Vec::new(),
        }
    }
}

/// What an exec rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecDecision {
    /// Runs.
    Allow,
    /// Runs only with a gateway approval (`approved` / `runId` on the invocation).
    Ask,
    /// Never runs, approval or not.
    Deny,
}

impl ExecDecision {
    /// `allow`, `ask` or `deny`.
    pub fn name(self) -> &'static str {
        match self {
            ExecDecision::Allow => "allow",
            ExecDecision::Ask => "ask",
            ExecDecision::Deny => "deny",
        }
    }
}

/// One token of a prefix pattern: a word, or any of several.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PatternToken {
    /// Exactly this word.
    One(String),
    /// Any of these words.
    Any(Vec<String>),
}

impl PatternToken {
    /// Whether `word` matches.
    pub fn matches(&self, word: &str) -> bool {
        match self {
            PatternToken::One(w) => w == word,
            PatternToken::Any(ws) => ws.iter().any(|w| w == word),
        }
    }
}

/// An example command: an argv array or a shell string.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ExecExample {
    /// `["git", "status"]`.
    Argv(Vec<String>),
    /// `"git status"` (parsed as shell).
    Shell(String),
}

/// `[[exec.rule]]`: a prefix rule on argv.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRule {
    /// A unique name, shown in decisions.
    pub name: String,
    /// The argv prefix: the program (matched by basename) then words or word alternatives.
    pub pattern: Spanned<Vec<PatternToken>>,
    /// The decision when the pattern matches.
    pub decision: ExecDecision,
    /// Absolute paths the program may be invoked by (otherwise only its bare name matches).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Why, shown in decisions.
    #[serde(default)]
    pub justification: Option<String>,
    /// Example commands the pattern must match (checked when the policy loads).
    #[serde(default, rename = "match")]
    pub match_examples: Vec<ExecExample>,
    /// Example commands the pattern must not match.
    #[serde(default)]
    pub not_match: Vec<ExecExample>,
    /// Overrides the exec mode for this rule.
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// Checks a session-key pattern: placeholders are `{identity}` only.
pub fn check_session_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("an empty session pattern matches nothing: expected a key pattern such as \"agent:*:{identity}\"".into());
    }
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        if !after.starts_with("{identity}") {
            return Err(format!("session pattern {pattern:?}: unknown placeholder at {after:?}: expected only {{identity}}"));
        }
        rest = &after["{identity}".len()..];
    }
    if rest.contains('}') || pattern.contains("***") {
        return Err(format!("session pattern {pattern:?}: expected `*`, `**` and {{identity}} only"));
    }
    Ok(())
}

/// `[config_guard]`: config paths no client may change through clawguard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigGuardSection {
    /// Dot-separated paths; `*` matches one segment; a path covers everything below it.
    pub protected: Vec<String>,
}

impl Default for ConfigGuardSection {
    fn default() -> Self {
        ConfigGuardSection {
            protected: [
                "gateway.controlUi.allowInsecureAuth",
                "gateway.controlUi.dangerouslyDisableDeviceAuth",
                "gateway.auth.*",
                "gateway.trustedProxies",
                "gateway.bind",
                "gateway.tools.allow",
                "plugins.entries.*.enabled",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// `[websocket]`: message size caps and timers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocket {
    /// Largest client message before `hello-ok`, bytes (the gateway's own pre-auth cap).
    pub max_handshake_message_bytes: usize,
    /// Largest message in either direction after `hello-ok`, bytes.
    pub max_message_bytes: usize,
    /// Most fragments of one message, either direction (a larger count closes with 1008).
    pub max_fragments_per_message: u32,
    /// Close a connection that carried no frame either way for this long, seconds (0: never).
    pub idle_timeout_seconds: u64,
    /// After clawguard sends a close frame, how long to wait for the peers' closes, milliseconds.
    pub close_grace_ms: u64,
    /// A connection that has not completed the gateway handshake by then is closed, seconds.
    pub handshake_timeout_seconds: u64,
    /// Deepest nesting of objects and arrays accepted in a client message.
    pub max_json_depth: usize,
    /// Open WebSocket connections allowed per client address (0: unlimited).
    pub max_connections_per_ip: usize,
    /// Open WebSocket connections allowed per identity, as known at the upgrade (0: unlimited).
    pub max_connections_per_identity: usize,
    /// Largest request per method glob, bytes; the most specific glob wins (exact, then longest).
    pub max_request_bytes: std::collections::BTreeMap<String, usize>,
}

/// 25 MiB for content-carrying methods; 1 MiB for control-plane methods.
fn default_request_limits() -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    m.insert("*".to_string(), 25 * 1024 * 1024);
    for control in ["config.*", "device.*", "node.pair.*", "exec.approvals.*", "plugins.*", "update.*", "wizard.*", "health", "status"] {
        m.insert(control.to_string(), 1024 * 1024);
    }
    m
}

impl Default for WebSocket {
    fn default() -> Self {
        WebSocket {
            max_handshake_message_bytes: 64 * 1024,
            max_message_bytes: 25 * 1024 * 1024,
            max_fragments_per_message: 4096,
            idle_timeout_seconds: 300,
            close_grace_ms: 2_000,
            handshake_timeout_seconds: 15,
            max_json_depth: 64,
            max_connections_per_ip: 64,
            max_connections_per_identity: 1024,
            max_request_bytes: default_request_limits(),
        }
    }
}

/// `[http]`: the HTTP surface. Every request is judged on the path the gateway routes to, by
/// the gateway's own route table; see docs/policy.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Paths forwarded although no route of the gateway's table matches them (globs over the
    /// canonical path, `*` matching any run of characters): plugin webhooks registered outside
    /// `/plugins/<id>/`, endpoints of a newer gateway. Nothing is checked on them but limits.
    pub allow_paths: Vec<Glob>,
    /// Serve the Control UI: a GET or HEAD no other route matches goes to the gateway's Control
    /// UI (its single-page app answers every such path). `false`: such paths get 404.
    pub control_ui: bool,
    /// The gateway's `hooks.path`.
    pub hooks_path: String,
    /// Origins (`scheme://host[:port]`) allowed on WebSocket upgrades and state-changing
    /// requests besides clawguard's own listeners' (`Host` of the request).
    pub allowed_origins: Vec<String>,
    /// Largest request body per route class, bytes; a larger one is answered 413.
    pub max_body_bytes: BodyLimits,
    /// `Strict-Transport-Security: max-age` on TLS listeners, seconds (0: no HSTS).
    pub hsts_max_age_seconds: u64,
    /// Tools of the gateway's HTTP deny list (`DEFAULT_GATEWAY_HTTP_TOOL_DENY`) that the gateway
    /// itself was told to allow (`gateway.tools.allow`) and clawguard should allow too (exact
    /// names). Identities' `allow_tools` still apply.
    pub reenable_tools: Vec<String>,
    /// Largest `data:` URL in an inference body, bytes.
    pub max_data_url_bytes: usize,
    /// Response header rules by path prefix, applied in order after the built-in ones.
    #[serde(rename = "header")]
    pub headers: Vec<HeaderRule>,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            allow_paths: Vec::new(),
            control_ui: true,
            hooks_path: "/hooks".into(),
            allowed_origins: Vec::new(),
            max_body_bytes: BodyLimits::default(),
            hsts_max_age_seconds: 31_536_000,
            reenable_tools: Vec::new(),
            max_data_url_bytes: 10 * 1024 * 1024,
            headers: Vec::new(),
        }
    }
}

/// `[http.max_body_bytes]`: body limits by route class (the gateway's own by default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BodyLimits {
    /// `POST /tools/invoke`.
    pub tools_invoke: usize,
    /// `/v1/chat/completions` and `/v1/responses`.
    pub inference: usize,
    /// `/v1/embeddings`.
    pub embeddings: usize,
    /// Hooks.
    pub hooks: usize,
    /// Every other route.
    pub other: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits { tools_invoke: 2 * 1024 * 1024, inference: 20 * 1024 * 1024, embeddings: 5 * 1024 * 1024, hooks: 256 * 1024, other: 20 * 1024 * 1024 }
    }
}

/// `[[http.header]]`: response headers for paths under `prefix`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRule {
    /// The canonical path prefix (`/` for every path).
    pub prefix: String,
    /// Headers set when the gateway did not send them (with `replace`: always).
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, String>,
    /// Headers appended (another value beside the gateway's).
    #[serde(default)]
    pub add: std::collections::BTreeMap<String, String>,
    /// Headers removed from the gateway's answer.
    #[serde(default)]
    pub remove: Vec<String>,
    /// `set` replaces the gateway's own value (default: a header the gateway sent is kept, so a
    /// stricter upstream value is never weakened).
    #[serde(default)]
    pub replace: bool,
}

/// `[admin]`: the admin listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Address of `/metrics`, `/livez`, `/readyz` and `/policy`; keep it on loopback.
    pub listen: SocketAddr,
}

impl Default for Admin {
    fn default() -> Self {
        Admin { listen: ([127, 0, 0, 1], 15020).into() }
    }
}

/// `[logging]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    /// `human` or `json` (one JSON object a line).
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `clawguard=debug,pingora=warn`.
    pub level: String,
}

impl Default for Logging {
    fn default() -> Self {
        Logging { format: LogFormat::Human, level: "info".into() }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// JSON lines.
    Json,
}

/// `[[frame_rule]]`: a rule for gateway frames by name, applied to every connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameRule {
    /// The rule's name, reported in refusals, logs and metrics.
    pub name: String,
    /// Which frames: `client` requests (matched on `method`) or `gateway` events (matched on `event`).
    pub direction: RuleDirection,
    /// Name globs (`config.*`).
    #[serde(rename = "match")]
    pub matches: Spanned<Vec<Glob>>,
    /// What to do with a matching frame.
    pub action: Spanned<RuleAction>,
    /// The reason given to the client.
    #[serde(default)]
    pub reason: Option<String>,
    /// Overrides the global `mode` for this rule.
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// Which direction a frame rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleDirection {
    /// Requests from the client (`req` frames).
    Client,
    /// Events from the gateway (`event` frames).
    Gateway,
}

/// What a frame rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Answer a client request with a `FORBIDDEN` error; the gateway never sees it.
    Deny,
    /// Drop the frame silently.
    Drop,
    /// Close the connection with 1008 (policy violation).
    Close,
}

/// The largest message cap accepted, bytes (1 GiB): far above any real message, and far from
/// any arithmetic overflow.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// The longest duration setting accepted, seconds (one year): `Instant + Duration` cannot
/// overflow on it.
pub const MAX_SECONDS: u64 = 365 * 24 * 3600;

impl Policy {
    /// `[spend]`: a usable threshold, and budgets that name a limit, once each, for identities
    /// that exist.
    fn validate_spend(&self, src: &PolicySource) -> Result<(), PolicyError> {
        let spend = &self.spend;
        if !(spend.warn_at > 0.0 && spend.warn_at <= 1.0) {
            return Err(src.error_at_key(&["spend", "warn_at"], format!("spend.warn_at = {}: expected a fraction above 0 and at most 1 (0.8 warns at 80 %)", spend.warn_at)));
        }
        if !spend.budgets.is_empty() && !spend.poll {
            return Err(src.error_at_key(&["spend", "poll"], "spend.budget is set but spend.poll is false: expected poll = true (clawguard measures spend by asking the gateway for its usage) and poll_token"));
        }
        if spend.poll {
            match spend.poll_token.as_deref().map(SecretRef::parse) {
                None => return Err(src.error_at_key(&["spend", "poll"], "spend.poll = true without spend.poll_token: expected a secret reference (env:NAME or file:PATH) to a gateway token")),
                Some(Err(e)) => return Err(src.error_at_key(&["spend", "poll_token"], format!("spend.poll_token: {e}"))),
                Some(Ok(_)) => {}
            }
            if !(1..=3600).contains(&spend.poll_interval_seconds) {
                return Err(src.error_at_key(&["spend", "poll_interval_seconds"], format!("spend.poll_interval_seconds = {}: expected 1 to 3600", spend.poll_interval_seconds)));
            }
            if spend.max_report_age_seconds < spend.poll_interval_seconds.saturating_mul(2) || spend.max_report_age_seconds > MAX_SECONDS {
                return Err(src.error_at_key(&["spend", "max_report_age_seconds"], format!("spend.max_report_age_seconds = {}: expected at least twice poll_interval_seconds ({}) and at most a year", spend.max_report_age_seconds, spend.poll_interval_seconds)));
            }
        }
        let mut names = std::collections::HashSet::new();
        for budget in &spend.budgets {
            let name = budget.name.get_ref();
            let at = Some(budget.name.span());
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                return Err(src.error_at(at, format!("spend.budget: name {name:?} is empty or has control characters: expected a short name")));
            }
            if !names.insert(name.as_str()) {
                return Err(src.error_at(at, format!("spend.budget {name:?} is defined twice: expected unique names")));
            }
            if budget.usd.is_none() && budget.tokens.is_none() {
                return Err(src.error_at(at, format!("spend.budget {name:?} sets neither usd nor tokens: expected at least one limit")));
            }
            if let Some(usd) = budget.usd.filter(|u| !(u.is_finite() && *u > 0.0)) {
                return Err(src.error_at(at, format!("spend.budget {name:?}: usd = {usd}: expected an amount above 0")));
            }
            if budget.tokens == Some(0) {
                return Err(src.error_at(at, format!("spend.budget {name:?}: tokens = 0: expected a count above 0")));
            }
            if let Some(identity) = &budget.identity {
                let known = self.identities.iter().any(|i| i.name == *identity.get_ref()) || (self.identities.is_empty() && matches!(identity.get_ref().as_str(), "local" | "default"));
                if !known {
                    return Err(src.error_at(Some(identity.span()), format!("spend.budget {name:?}: identity {:?} is not defined: expected the name of an [[identity]]", identity.get_ref())));
                }
            }
        }
        Ok(())
    }

    /// `[state]`: Redis needs a URL given as a secret reference; a usable timeout and prefix.
    fn validate_state(&self, src: &PolicySource) -> Result<(), PolicyError> {
        let state = &self.state;
        match (state.backend, state.url.as_deref().map(SecretRef::parse)) {
            (StateBackend::Redis, None) => return Err(src.error_at_key(&["state", "backend"], "state.backend = \"redis\" without state.url: expected a secret reference (env:NAME or file:PATH) holding redis://… or rediss://…")),
            (_, Some(Err(e))) => return Err(src.error_at_key(&["state", "url"], format!("state.url: {e} (the URL carries the Redis password)"))),
            (StateBackend::Memory, Some(Ok(_))) => return Err(src.error_at_key(&["state", "url"], "state.url is set but state.backend is \"memory\": expected backend = \"redis\" or no url")),
            _ => {}
        }
        if !(1..=1000).contains(&state.timeout_ms) {
            return Err(src.error_at_key(&["state", "timeout_ms"], format!("state.timeout_ms = {}: expected 1 to 1000 (a request waits at most this long for Redis)", state.timeout_ms)));
        }
        let key_text = |t: &str| !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if !key_text(&state.prefix) {
            return Err(src.error_at_key(&["state", "prefix"], format!("state.prefix {:?}: expected 1 to 64 letters, digits, '-', '_', '.' or ':'", state.prefix)));
        }
        if let Some(gateway) = state.gateway.as_deref().filter(|g| !key_text(g)) {
            return Err(src.error_at_key(&["state", "gateway"], format!("state.gateway {gateway:?}: expected 1 to 64 letters, digits, '-', '_', '.' or ':'")));
        }
        Ok(())
    }

    /// Checks the rules that serde's types cannot express.
    pub fn validate(&self, src: &PolicySource) -> Result<(), PolicyError> {
        let at = |path: &[&str], msg: String| src.error_at_key(path, msg);
        for accepted in &self.doctor.accept {
            let check = accepted.check.get_ref();
            if check.is_empty() || !check.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'$')) {
                return Err(src.error_at(Some(accepted.check.span()), format!("doctor.accept: check {check:?} is not a check id: expected one as `clawguard doctor --json` shows it (e.g. \"gateway.exec.no_approvals\")")));
            }
            if accepted.reason.trim().is_empty() {
                return Err(src.error_at(Some(accepted.check.span()), format!("doctor.accept: check {check:?} has an empty reason: expected why the finding is accepted")));
            }
        }
        self.validate_spend(src)?;
        self.validate_state(src)?;
        if self.server.listen.is_empty() && self.tls.listen.is_empty() {
            return Err(at(&["server", "listen"], "server.listen and tls.listen are both empty: expected at least one listener".into()));
        }
        // Every address once: two listeners on one port would split connections between them.
        let mut seen = std::collections::HashMap::new();
        let listeners = self.server.listen.iter().map(|a| ("server", a)).chain(self.tls.listen.iter().map(|a| ("tls", a))).chain(std::iter::once(("admin", &self.admin.listen)));
        for (section, addr) in listeners {
            if let Some(first) = seen.insert(*addr, section) {
                return Err(at(&[section, "listen"], format!("{section}.listen: {addr} is already the address of a {first} listener: expected every listener address once")));
            }
            // 0.0.0.0:P and 127.0.0.1:P cannot both be bound either.
            // A wildcard covers its family; `[::]` covers IPv4 too (Linux binds it dual-stack).
            let covers = |wild: &SocketAddr, other: &SocketAddr| wild.ip().is_unspecified() && (wild.is_ipv4() == other.is_ipv4() || wild.is_ipv6());
            let same_port = seen.keys().find(|other| *other != addr && other.port() == addr.port() && addr.port() != 0 && (covers(other, addr) || covers(addr, other)));
            if let Some(other) = same_port {
                return Err(at(&[section, "listen"], format!("{section}.listen: {addr} overlaps the listener on {other}: expected distinct ports")));
            }
        }
        if !self.tls.listen.is_empty() {
            for (name, field) in [("cert", &self.tls.cert), ("key", &self.tls.key)] {
                if field.is_none() {
                    return Err(at(&["tls", "listen"], format!("tls.{name} is missing: expected a PEM file path because tls.listen is set")));
                }
            }
        }
        if let Some(ca) = &self.tls.client_ca {
            if self.tls.listen.is_empty() {
                return Err(src.error_at(Some(ca.span()), "tls.client_ca is set but tls.listen is empty: expected a TLS listener for mTLS"));
            }
        }
        let ws = &self.websocket;
        for (key, value) in [("max_handshake_message_bytes", ws.max_handshake_message_bytes), ("max_message_bytes", ws.max_message_bytes)] {
            if value == 0 || value > MAX_MESSAGE_BYTES {
                return Err(at(&["websocket", key], format!("websocket.{key} = {value}: expected 1 to {MAX_MESSAGE_BYTES} bytes")));
            }
        }
        if ws.max_fragments_per_message == 0 {
            return Err(at(&["websocket", "max_fragments_per_message"], "websocket.max_fragments_per_message must be greater than 0".into()));
        }
        if ws.max_handshake_message_bytes > ws.max_message_bytes {
            return Err(at(
                &["websocket", "max_handshake_message_bytes"],
                format!(
                    "websocket.max_handshake_message_bytes ({}) exceeds websocket.max_message_bytes ({}): expected it to be at most that",
                    ws.max_handshake_message_bytes, ws.max_message_bytes
                ),
            ));
        }
        let limits = &self.limits;
        if limits.connection_bytes_per_second > 0 && (limits.connection_bytes_burst as usize) < ws.max_message_bytes {
            return Err(at(
                &["limits", "connection_bytes_burst"],
                format!(
                    "limits.connection_bytes_burst ({}) is below websocket.max_message_bytes ({}): a message of the allowed size could never pass; expected at least that",
                    limits.connection_bytes_burst, ws.max_message_bytes
                ),
            ));
        }
        if limits.max_keys == 0 {
            return Err(at(&["limits", "max_keys"], "limits.max_keys must be greater than 0".into()));
        }
        for glob in ws.max_request_bytes.keys() {
            Glob::new(glob).map_err(|e| at(&["websocket", "max_request_bytes", glob], format!("websocket.max_request_bytes: {e}")))?;
        }
        if ws.handshake_timeout_seconds == 0 {
            return Err(at(&["websocket", "handshake_timeout_seconds"], "websocket.handshake_timeout_seconds must be greater than 0".into()));
        }
        if ws.max_json_depth == 0 {
            return Err(at(&["websocket", "max_json_depth"], "websocket.max_json_depth must be greater than 0".into()));
        }
        if self.upstream.connect_timeout_ms == 0 || self.upstream.handshake_timeout_ms == 0 {
            let key = if self.upstream.connect_timeout_ms == 0 { "connect_timeout_ms" } else { "handshake_timeout_ms" };
            return Err(at(&["upstream", key], format!("upstream.{key} must be greater than 0 ms")));
        }
        // Durations: bounded so that no deadline computed from them can overflow.
        if self.server.header_timeout_seconds == 0 {
            return Err(at(&["server", "header_timeout_seconds"], "server.header_timeout_seconds must be greater than 0".into()));
        }
        let seconds = [
            ("server", "header_timeout_seconds", self.server.header_timeout_seconds),
            ("websocket", "idle_timeout_seconds", ws.idle_timeout_seconds),
            ("websocket", "handshake_timeout_seconds", ws.handshake_timeout_seconds),
            ("server", "shutdown_grace_seconds", self.server.shutdown_grace_seconds),
            ("limits", "prune_interval_seconds", limits.prune_interval_seconds),
        ];
        for (section, key, value) in seconds {
            if value > MAX_SECONDS {
                return Err(at(&[section, key], format!("{section}.{key} = {value}: expected at most {MAX_SECONDS} (one year)")));
            }
        }
        let millis = [
            ("websocket", "close_grace_ms", ws.close_grace_ms),
            ("upstream", "connect_timeout_ms", self.upstream.connect_timeout_ms),
            ("upstream", "handshake_timeout_ms", self.upstream.handshake_timeout_ms),
        ];
        for (section, key, value) in millis {
            if value > MAX_SECONDS * 1000 {
                return Err(at(&[section, key], format!("{section}.{key} = {value}: expected at most {} (one year)", MAX_SECONDS * 1000)));
            }
        }
        let mut names = std::collections::HashSet::new();
        for rule in &self.frame_rules {
            if !names.insert(rule.name.as_str()) {
                return Err(src.error_at(Some(rule.matches.span()), format!("frame_rule name {:?} is used twice: expected unique names", rule.name)));
            }
            if rule.matches.get_ref().is_empty() {
                return Err(src.error_at(Some(rule.matches.span()), format!("frame_rule {:?}: match is empty: expected at least one name pattern", rule.name)));
            }
            if rule.direction == RuleDirection::Gateway && *rule.action.get_ref() == RuleAction::Deny {
                return Err(src.error_at(
                    Some(rule.action.span()),
                    format!("frame_rule {:?}: action \"deny\" answers a request, so it only applies to direction \"client\"; expected \"drop\" or \"close\"", rule.name),
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (index, id) in self.identities.iter().enumerate() {
            let at = Some(id.scopes.span());
            let index = index.to_string();
            if !names.insert(id.name.as_str()) {
                return Err(src.error_at(at, format!("identity name {:?} is used twice: expected unique names", id.name)));
            }
            if id.name == "default" && !id.matcher.is_empty() {
                return Err(src.error_at(at, "identity \"default\" is for clients that match nothing: expected no [identity.match]"));
            }
            if id.name != "default" && id.matcher.is_empty() {
                return Err(src.error_at(at, format!("identity {:?} has no [identity.match]: expected at least one criterion (only \"default\" has none)", id.name)));
            }
            for scope in id.scopes.get_ref() {
                if !ALL_SCOPES.contains(&scope.as_str()) {
                    return Err(src.error_at(at, format!("identity {:?}: unknown scope {scope:?}: expected one of {}", id.name, ALL_SCOPES.join(", "))));
                }
            }
            for hash in &id.matcher.cert_sha256 {
                if !is_sha256_hex(hash) {
                    return Err(src.error_at(at, format!("identity {:?}: {hash:?} is not a SHA-256: expected 64 hex digits", id.name)));
                }
            }
            for hash in &id.matcher.token_sha256 {
                if !is_sha256_hex(hash) && SecretRef::parse(hash).is_err() {
                    return Err(src.error_at_key(&["identity", &index, "match", "token_sha256"], format!("identity {:?}: {hash:?} is not a SHA-256: expected 64 hex digits or a secret reference (env:NAME, file:PATH)", id.name)));
                }
            }
            for token in &id.matcher.token {
                // Never echo it: a value that is not a reference may be the token itself.
                if SecretRef::parse(token).is_err() {
                    return Err(src.error_at_key(&["identity", &index, "match", "token"], format!("identity {:?}: match.token takes secret references only: expected env:NAME or file:PATH (a token is never written into the policy; token_sha256 takes its hash)", id.name)));
                }
            }
            if let Some(profile) = id.limits.as_deref() {
                if !self.limits.profile.contains_key(profile) {
                    return Err(src.error_at(at, format!("identity {:?}: limits profile {profile:?} is not defined: expected a [limits.profile.{profile}] section", id.name)));
                }
            }
            if let Some(patterns) = &id.sessions {
                for pattern in patterns.get_ref() {
                    check_session_pattern(pattern).map_err(|e| src.error_at(Some(patterns.span()), format!("identity {:?}: {e}", id.name)))?;
                }
            }
            if id.roles.is_empty() {
                return Err(src.error_at(at, format!("identity {:?}: roles is empty: expected \"operator\" and/or \"node\"", id.name)));
            }
        }
        let mut rule_names = std::collections::HashSet::new();
        for rule in &self.exec.rules {
            let at = Some(rule.pattern.span());
            if !rule_names.insert(rule.name.as_str()) {
                return Err(src.error_at(at, format!("exec rule name {:?} is used twice: expected unique names", rule.name)));
            }
            match rule.pattern.get_ref().first() {
                None => return Err(src.error_at(at, format!("exec rule {:?}: pattern is empty: expected at least the program", rule.name))),
                Some(PatternToken::Any(list)) if list.is_empty() => return Err(src.error_at(at, format!("exec rule {:?}: an empty alternative matches nothing", rule.name))),
                _ => {}
            }
            if let Some(p) = rule.paths.iter().find(|p| !p.starts_with('/')) {
                return Err(src.error_at(at, format!("exec rule {:?}: path {p:?} is not absolute: expected a path such as \"/usr/bin/git\"", rule.name)));
            }
        }
        for name in &self.limits.shadow {
            if !LIMIT_NAMES.contains(&name.as_str()) {
                return Err(at(&["limits", "shadow"], format!("limits.shadow: unknown limit {name:?}: expected one of {}", LIMIT_NAMES.join(", "))));
            }
        }
        for op in &self.exec.operators {
            if !["&&", "||", ";", "|"].contains(&op.as_str()) {
                return Err(at(&["exec", "operators"], format!("exec.operators: unknown operator {op:?}: expected some of \"&&\", \"||\", \";\", \"|\"")));
            }
        }
        if self.exec.max_command_bytes == 0 {
            return Err(at(&["exec", "max_command_bytes"], "exec.max_command_bytes must be greater than 0".into()));
        }
        let http = &self.http;
        if !http.hooks_path.starts_with('/') || http.hooks_path == "/" || http.hooks_path.ends_with('/') {
            return Err(at(&["http", "hooks_path"], format!("http.hooks_path {:?}: expected an absolute path other than / without a trailing slash, as the gateway's hooks.path", http.hooks_path)));
        }
        for origin in &http.allowed_origins {
            let ok = origin.split_once("://").is_some_and(|(scheme, host)| matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains('/'));
            if !ok {
                return Err(at(&["http", "allowed_origins"], format!("http.allowed_origins: {origin:?} is not an origin: expected scheme://host[:port], such as \"https://ops.example.com\"")));
            }
        }
        for (i, rule) in http.headers.iter().enumerate() {
            let index = i.to_string();
            if !rule.prefix.starts_with('/') {
                return Err(at(&["http", "header", &index, "prefix"], format!("http.header prefix {:?}: expected a path starting with /", rule.prefix)));
            }
            for (kind, name) in rule.set.keys().map(|n| ("set", n)).chain(rule.add.keys().map(|n| ("add", n))).chain(rule.remove.iter().map(|n| ("remove", n))) {
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
                    return Err(at(&["http", "header", &index, kind, name], format!("http.header {:?}: {name:?} is not a header name", rule.prefix)));
                }
            }
            for (kind, name, value) in rule.set.iter().map(|(n, v)| ("set", n, v)).chain(rule.add.iter().map(|(n, v)| ("add", n, v))) {
                if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                    return Err(at(&["http", "header", &index, kind, name], format!("http.header {:?}: the value of {name:?} contains control characters", rule.prefix)));
                }
            }
        }
        if http.max_data_url_bytes == 0 {
            return Err(at(&["http", "max_data_url_bytes"], "http.max_data_url_bytes must be greater than 0".into()));
        }
        let bodies = &http.max_body_bytes;
        for (key, value) in [("tools_invoke", bodies.tools_invoke), ("inference", bodies.inference), ("embeddings", bodies.embeddings), ("hooks", bodies.hooks), ("other", bodies.other)] {
            if value == 0 {
                return Err(at(&["http", "max_body_bytes", key], format!("http.max_body_bytes.{key} must be greater than 0")));
            }
        }
        let audit = &self.audit;
        if audit.queue == 0 || audit.queue > 16 * 1024 * 1024 {
            return Err(at(&["audit", "queue"], format!("audit.queue = {}: expected 1 to {} records", audit.queue, 16 * 1024 * 1024)));
        }
        if audit.checkpoint_every == 0 {
            return Err(at(&["audit", "checkpoint_every"], "audit.checkpoint_every must be greater than 0".into()));
        }
        if audit.checkpoint_interval_seconds == 0 || audit.checkpoint_interval_seconds > MAX_SECONDS {
            return Err(at(&["audit", "checkpoint_interval_seconds"], format!("audit.checkpoint_interval_seconds = {}: expected 1 to {MAX_SECONDS}", audit.checkpoint_interval_seconds)));
        }
        if audit.rotate_bytes < 4096 {
            return Err(at(&["audit", "rotate_bytes"], format!("audit.rotate_bytes = {}: expected at least 4096", audit.rotate_bytes)));
        }
        if audit.retain_days > 365 * 100 {
            return Err(at(&["audit", "retain_days"], format!("audit.retain_days = {}: expected at most 36500", audit.retain_days)));
        }
        for (key, value) in [("signing_key", Some(&audit.signing_key)), ("encryption_key", audit.encryption_key.as_ref())] {
            if let Some(v) = value {
                if let Err(e) = SecretRef::parse(v) {
                    return Err(at(&["audit", key], format!("audit.{key}: {e}")));
                }
            }
        }
        if !audit.encrypt_fields.is_empty() && audit.encryption_key.is_none() {
            return Err(at(&["audit", "encrypt_fields"], "audit.encrypt_fields is set but audit.encryption_key is not: expected a file: or env: reference to a 32-byte key".into()));
        }
        if !self.identities.is_empty() && !names.contains("default") {
            return Err(src.error_at(None, "the policy defines identities but no identity \"default\": expected one for clients that match nothing"));
        }
        Ok(())
    }
}
