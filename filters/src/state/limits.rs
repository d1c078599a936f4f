//! Keyed rate limits (GCRA, governor) with bounded memory, retry hints computed from the
//! limiter, shadow mode, and an auth-failure lockout. The clock is a parameter: the binary
//! uses governor's monotonic clock, tests its fake clock, so every limit is deterministic to
//! test.
//!
//! Memory: each limit's keys are pruned with `retain_recent` (keys whose state has fully
//! refilled carry no information), and each limit holds at most `max_keys` keys in a
//! [`BoundedStore`]: past the cap, the most idle keys (the earliest theoretical arrival
//! times, i.e. the most refilled) are evicted first, so a flood of new keys cannot grow memory
//! without bound. The lockout table is capped the same way.

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

/// A rate: `per` events per `period`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events replenished per period.
    pub per: u32,
    /// The period.
    pub period: Duration,
    /// The largest burst.
    pub burst: u32,
}

impl Rate {
    /// `n` per minute, burst `n`.
    pub fn per_minute(n: u32) -> Rate {
        Rate { per: n, period: Duration::from_secs(60), burst: n }
    }

    /// `n` per second, burst `burst`.
    pub fn per_second(n: u32, burst: u32) -> Rate {
        Rate { per: n, period: Duration::from_secs(1), burst }
    }

    /// How long a full burst takes to refill.
    fn full_refill(self) -> Duration {
        self.period.checked_div(self.per.max(1)).unwrap_or_default().saturating_mul(self.burst.max(1))
    }

    fn quota(self) -> Option<Quota> {
        let per = NonZeroU32::new(self.per)?;
        let burst = NonZeroU32::new(self.burst.max(1))?;
        let interval = self.period.checked_div(per.get())?;
        Quota::with_period(interval).map(|q| q.allow_burst(burst))
    }
}

/// A refusal by a limit: which, and when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// The limit's name (`session-inference`, `node-invoke`, …).
    pub limit: &'static str,
    /// How long until the key may try again, from the limiter's own state (at least 1 ms).
    pub retry_after: Duration,
    /// Shadow mode: counted, not enforced.
    pub shadow: bool,
}

/// A keyed GCRA state store with a hard cap on its keys.
///
/// Each key holds its theoretical arrival time (TAT). When a new key arrives at the cap, the
/// eighth of the keys with the earliest TATs goes: those have been idle longest relative to
/// their rate, and forgetting them at most grants them the burst they had nearly earned back.
/// Evicting in batches keeps the cost amortised O(1) per new key under a flood.
#[derive(Debug)]
pub struct BoundedStore<K: Hash + Eq + Clone> {
    tats: Mutex<HashMap<K, Nanos, foldhash::fast::RandomState>>,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> BoundedStore<K> {
    /// A store of at most `max_keys` keys (at least 1).
    pub fn new(max_keys: usize) -> Self {
        BoundedStore { tats: Mutex::new(HashMap::default()), max_keys: max_keys.max(1) }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<K, Nanos, foldhash::fast::RandomState>> {
        // A panic while holding the lock cannot leave a half-written TAT: keep going.
        self.tats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes the eighth of `map`'s entries with the earliest values (at least one).
fn evict_most_idle<K: Hash + Eq + Clone, S>(map: &mut HashMap<K, Nanos, S>) {
    let n = (map.len() / 8).max(1);
    let mut tats: Vec<u64> = map.values().map(|t| t.as_u64()).collect();
    let cut = n.min(tats.len()) - 1;
    let (_, nth, _) = tats.select_nth_unstable(cut);
    let threshold = *nth;
    let mut removed = 0;
    map.retain(|_, t| {
        if removed < n && t.as_u64() <= threshold {
            removed += 1;
            false
        } else {
            true
        }
    });
}

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut map = self.map();
        let old = map.get(key).copied();
        let (outcome, tat) = f(old)?;
        if old.is_none() && map.len() >= self.max_keys {
            evict_most_idle(&mut map);
        }
        map.insert(key.clone(), tat);
        Ok(outcome)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for BoundedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.map().retain(|_, tat| *tat > drop_below);
    }

    fn shrink_to_fit(&self) {
        self.map().shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.map().len()
    }

    fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

/// governor's keyed limiter on clock `C`, over a [`BoundedStore`].
type Keyed<K, C> = RateLimiter<K, BoundedStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The default cap on keys per limit (about 100 bytes each).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// One keyed limit.
pub struct KeyedLimit<K: Hash + Eq + Clone, C: Clock + Clone> {
    name: &'static str,
    /// Shared with the same limit of the next policy version when its rate and key cap are
    /// unchanged ([`KeyedLimit::carry_from`]).
    limiter: Option<std::sync::Arc<Keyed<K, C>>>,
    rate: Rate,
    max_keys: usize,
    clock: C,
    shadow: bool,
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> std::fmt::Debug for KeyedLimit<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedLimit").field("name", &self.name).field("shadow", &self.shadow).finish()
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyedLimit<K, C> {
    /// A limit of `rate` per key (a rate of 0 disables it), on `clock`, holding at most
    /// `max_keys` keys.
    pub fn new(name: &'static str, rate: Rate, shadow: bool, max_keys: usize, clock: &C) -> Self {
        let limiter = rate.quota().map(|q| std::sync::Arc::new(RateLimiter::new(q, BoundedStore::new(max_keys), clock.clone())));
        KeyedLimit { name, limiter, rate, max_keys, clock: clock.clone(), shadow }
    }

    /// Takes over the state of the same limit of the previous policy version when its rate and
    /// key cap are unchanged (a reload keeps what each key has used); otherwise starts afresh.
    pub fn carry_from(&mut self, old: &Self) {
        if self.name == old.name && self.rate == old.rate && self.max_keys == old.max_keys {
            self.limiter = old.limiter.clone();
        }
    }

    /// The limit's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Counts one event for `key`: `Ok` when within the limit (or disabled), else the refusal.
    pub fn check(&self, key: &K) -> Result<(), Limited> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        match limiter.check_key(key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now()).max(Duration::from_millis(1));
                Err(Limited { limit: self.name, retry_after: wait, shadow: self.shadow })
            }
        }
    }

    /// Counts one event for `key` in the shared store under `shared_key` (every replica's
    /// events count); when the store does not answer, in this replica's own limit (fail open to
    /// the local limit; the store counts its errors).
    pub fn check_shared(&self, store: Option<&dyn crate::state::shared::SharedStore>, shared_key: impl FnOnce() -> String, key: &K) -> Result<(), Limited> {
        let (Some(store), Some(_)) = (store, &self.limiter) else { return self.check(key) };
        let interval = crate::state::shared::emission_interval_ms(self.rate.per, u64::try_from(self.rate.period.as_millis()).unwrap_or(u64::MAX));
        match store.rate(&shared_key(), interval, self.rate.burst.max(1)) {
            Ok(None) => Ok(()),
            Ok(Some(ms)) => Err(Limited { limit: self.name, retry_after: Duration::from_millis(ms.max(1)), shadow: self.shadow }),
            Err(_) => self.check(key),
        }
    }

    /// Drops the state of keys that have fully refilled (they carry no information); returns
    /// how many keys remain.
    pub fn prune(&self) -> usize {
        let Some(limiter) = &self.limiter else { return 0 };
        limiter.retain_recent();
        limiter.shrink_to_fit();
        limiter.len()
    }

    /// Keys currently tracked by the limiter.
    pub fn len(&self) -> usize {
        self.limiter.as_ref().map(|l| l.len()).unwrap_or(0)
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A rate limit on the WebSocket request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Inference requests per session key.
    SessionInference,
    /// `node.invoke` per node.
    NodeInvoke,
    /// `node.invoke` per identity.
    IdentityNodeInvoke,
    /// `system.run` per node.
    SystemRun,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Limit; 4] = [Limit::SessionInference, Limit::NodeInvoke, Limit::IdentityNodeInvoke, Limit::SystemRun];

    /// The limit's name, as in `limits.shadow` and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Limit::SessionInference => "session-inference",
            Limit::NodeInvoke => "node-invoke",
            Limit::IdentityNodeInvoke => "identity-node-invoke",
            Limit::SystemRun => "system-run",
        }
    }

    fn per_minute(self, limits: &clawguard_policies::Limits, profile: Option<&clawguard_policies::LimitProfile>) -> u32 {
        let (default, over) = match self {
            Limit::SessionInference => (limits.session_inference_per_minute, profile.and_then(|p| p.session_inference_per_minute)),
            Limit::NodeInvoke => (limits.node_invoke_per_minute, profile.and_then(|p| p.node_invoke_per_minute)),
            Limit::IdentityNodeInvoke => (limits.identity_node_invoke_per_minute, profile.and_then(|p| p.identity_node_invoke_per_minute)),
            Limit::SystemRun => (limits.system_run_per_minute, profile.and_then(|p| p.system_run_per_minute)),
        };
        over.unwrap_or(default)
    }
}

/// Text keys (session keys, node ids, identities) as 64-bit digests under a per-process
/// random seed: a limiter keeps and compares 8 bytes instead of the text, and no client can
/// choose a key that collides with another's without knowing the seed.
#[derive(Debug, Clone, Default)]
pub struct KeyDigest(foldhash::quality::RandomState);

impl KeyDigest {
    /// The digest of `key`.
    pub fn of(&self, key: &str) -> u64 {
        use std::hash::BuildHasher;
        self.0.hash_one(key)
    }
}

/// The four request-path limits of one profile, indexed by [`Limit`].
type ProfileLimits<C> = [KeyedLimit<u64, C>; 4];

/// Every request-path limit of a policy, per profile, on clock `C`.
pub struct RateLimits<C: Clock + Clone> {
    default: ProfileLimits<C>,
    profiles: HashMap<String, ProfileLimits<C>>,
    digest: KeyDigest,
}

impl<C: Clock + Clone> std::fmt::Debug for RateLimits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").field("profiles", &self.profiles.len()).finish()
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// The limits `[limits]` describes: the default profile and each named one.
    pub fn new(policy: &clawguard_policies::Limits, clock: &C) -> Self {
        let build = |profile: Option<&clawguard_policies::LimitProfile>| {
            Limit::ALL.map(|limit| {
                let shadow = policy.shadow.iter().any(|s| s == limit.name());
                let rate = Rate::per_minute(limit.per_minute(policy, profile));
                KeyedLimit::new(limit.name(), rate, shadow, policy.max_keys, clock)
            })
        };
        let profiles = policy.profile.iter().map(|(name, p)| (name.clone(), build(Some(p)))).collect();
        RateLimits { default: build(None), profiles, digest: KeyDigest::default() }
    }

    /// Counts one event of `limit` for `key` under the identity's `profile` (an unknown
    /// profile uses the default one).
    pub fn check(&self, limit: Limit, profile: Option<&str>, key: &str) -> Result<(), Limited> {
        let limits = profile.and_then(|p| self.profiles.get(p)).unwrap_or(&self.default);
        limits[limit as usize].check(&self.digest.of(key))
    }

    /// [`RateLimits::check`], counted in the shared store when there is one (every replica's
    /// events count; this replica's own limit when the store does not answer).
    pub fn check_shared(&self, store: Option<&dyn crate::state::shared::SharedStore>, limit: Limit, profile: Option<&str>, key: &str) -> Result<(), Limited> {
        let known = profile.filter(|p| self.profiles.contains_key(*p));
        let limits = known.and_then(|p| self.profiles.get(p)).unwrap_or(&self.default);
        limits[limit as usize].check_shared(store, || crate::state::shared::rate_key(limit.name(), known, key), &self.digest.of(key))
    }

    /// Prunes every limit; returns the keys left.
    pub fn prune(&self) -> usize {
        self.default.iter().chain(self.profiles.values().flatten()).map(KeyedLimit::prune).sum()
    }

    /// Takes over the previous policy version's state of every limit whose profile, rate and
    /// key cap are unchanged.
    pub fn carry_from(&mut self, old: &Self) {
        // The same keys digest the same way only under the same seed.
        self.digest = old.digest.clone();
        carry_profile(&mut self.default, &old.default);
        for (name, limits) in &mut self.profiles {
            if let Some(previous) = old.profiles.get(name) {
                carry_profile(limits, previous);
            }
        }
    }
}

fn carry_profile<C: Clock + Clone>(new: &mut ProfileLimits<C>, old: &ProfileLimits<C>) {
    for (n, o) in new.iter_mut().zip(old) {
        n.carry_from(o);
    }
}

/// A direction of a WebSocket connection, for the per-connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Client to gateway.
    Client,
    /// Gateway to client.
    Gateway,
}

/// The limits that are not per profile: per source IP (new connections, handshakes, auth
/// lockout), per connection (messages and bytes each way) and on the HTTP routes.
pub struct ClientLimits<C: Clock + Clone> {
    ip_connections: KeyedLimit<std::net::IpAddr, C>,
    ip_handshakes: KeyedLimit<std::net::IpAddr, C>,
    lockout: Lockout<String, C>,
    lockout_shadow: bool,
    /// Per-connection rates and shadow flags: messages client, gateway; bytes client, gateway.
    flows: [(&'static str, Rate, bool); 4],
    clock: C,
    http_tools_invoke: KeyedLimit<u64, C>,
    http_inference: KeyedLimit<u64, C>,
    http_hooks: KeyedLimit<std::net::IpAddr, C>,
    /// Digests of the identity names that key the HTTP limits.
    digest: KeyDigest,
    /// Over-limit messages in a row a connection may send before it is closed.
    pub grace: u32,
    /// Connections per source IP still in their handshake.
    pub pending_handshakes: usize,
    /// Connections from all addresses still in their handshake.
    pub pending_handshakes_total: usize,
    /// Whether the pending-handshake cap only counts.
    pub pending_shadow: bool,
}

impl<C: Clock + Clone> std::fmt::Debug for ClientLimits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLimits").field("grace", &self.grace).finish()
    }
}

/// An HTTP route with a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRoute {
    /// `POST /tools/invoke`, per identity.
    ToolsInvoke,
    /// `/v1/*` (OpenAI-compatible inference), per identity.
    Inference,
    /// `/hooks/*`, per source IP.
    Hooks,
}

impl HttpRoute {
    /// The route a request path belongs to, if it is limited.
    pub fn of(path: &str) -> Option<HttpRoute> {
        if path == "/tools/invoke" || path.starts_with("/tools/invoke/") {
            Some(HttpRoute::ToolsInvoke)
        } else if path.starts_with("/v1/") {
            Some(HttpRoute::Inference)
        } else if path == "/hooks" || path.starts_with("/hooks/") {
            Some(HttpRoute::Hooks)
        } else {
            None
        }
    }
}

/// The first enforced refusal of `results`, else the first shadow one (counted, not
/// enforced), else `Ok`: a limit in shadow mode never hides an enforced one.
fn strictest<const N: usize>(results: [Result<(), Limited>; N]) -> Result<(), Limited> {
    let mut shadow = None;
    for result in results {
        match result {
            Err(l) if !l.shadow => return Err(l),
            Err(l) => shadow = shadow.or(Some(l)),
            Ok(()) => {}
        }
    }
    shadow.map_or(Ok(()), Err)
}

/// The keys an auth failure counts against: the source IP and the claimed device id.
pub fn lockout_keys(ip: std::net::IpAddr, device: Option<&str>) -> impl Iterator<Item = String> {
    std::iter::once(format!("ip:{ip}")).chain(device.filter(|d| !d.is_empty()).map(|d| format!("device:{d}")))
}

/// Whether a connect error's `details.code` is an authentication failure that counts
/// towards the lockout.
pub fn is_auth_failure(code: &str) -> bool {
    (code.starts_with("AUTH_") && code != "AUTH_RATE_LIMITED") || code.starts_with("DEVICE_AUTH_") || code == "PAIRING_REQUIRED"
}

impl<C: Clock + Clone> ClientLimits<C> {
    /// The limits `[limits]` describes, on `clock`.
    pub fn new(policy: &clawguard_policies::Limits, clock: &C) -> Self {
        let shadow = |name: &str| policy.shadow.iter().any(|s| s == name);
        let keys = policy.max_keys;
        let per_second = |n: u32, burst: u32| Rate::per_second(n, burst.max(n));
        ClientLimits {
            ip_connections: KeyedLimit::new("ip-connections", per_second(policy.ip_connections_per_second, policy.ip_connections_burst), shadow("ip-connections"), keys, clock),
            ip_handshakes: KeyedLimit::new("ip-handshakes", Rate::per_minute(policy.ip_handshakes_per_minute), shadow("ip-handshakes"), keys, clock),
            lockout: Lockout::new(policy.auth_failures, Duration::from_secs(policy.auth_failure_window_seconds), Duration::from_secs(policy.auth_lockout_seconds), keys, clock),
            lockout_shadow: shadow("auth-lockout"),
            flows: [
                ("connection-messages", per_second(policy.connection_messages_per_second, policy.connection_messages_burst), shadow("connection-messages")),
                ("gateway-messages", per_second(policy.gateway_messages_per_second, policy.gateway_messages_per_second.saturating_mul(2)), shadow("gateway-messages")),
                ("connection-bytes", per_second(policy.connection_bytes_per_second, policy.connection_bytes_burst), shadow("connection-bytes")),
                (
                    "gateway-bytes",
                    per_second(policy.gateway_bytes_per_second, policy.gateway_bytes_per_second.saturating_mul(2).max(policy.connection_bytes_burst)),
                    shadow("gateway-bytes"),
                ),
            ],
            clock: clock.clone(),
            digest: KeyDigest::default(),
            http_tools_invoke: KeyedLimit::new("http-tools-invoke", Rate::per_minute(policy.http_tools_invoke_per_minute), shadow("http-tools-invoke"), keys, clock),
            http_inference: KeyedLimit::new("http-inference", Rate::per_minute(policy.http_inference_per_minute), shadow("http-inference"), keys, clock),
            http_hooks: KeyedLimit::new("http-hooks", Rate::per_minute(policy.http_hooks_per_minute), shadow("http-hooks"), keys, clock),
            grace: policy.connection_grace,
            pending_handshakes: policy.ip_pending_handshakes,
            pending_handshakes_total: policy.pending_handshakes_total,
            pending_shadow: shadow("ip-pending-handshakes"),
        }
    }

    /// Takes over the previous policy version's state of every limit whose rate and key cap
    /// are unchanged (the per-connection limits belong to their connections).
    pub fn carry_from(&mut self, old: &Self) {
        self.digest = old.digest.clone();
        self.ip_connections.carry_from(&old.ip_connections);
        self.ip_handshakes.carry_from(&old.ip_handshakes);
        self.lockout.carry_from(&old.lockout);
        self.http_tools_invoke.carry_from(&old.http_tools_invoke);
        self.http_inference.carry_from(&old.http_inference);
        self.http_hooks.carry_from(&old.http_hooks);
    }

    /// A new connection from `ip`: its rate, then whether `ip` is locked out.
    pub fn new_connection(&self, ip: std::net::IpAddr) -> Result<(), Limited> {
        strictest([self.locked_out(ip, None), self.ip_connections.check(&ip)])
    }

    /// A `connect` request from `ip` claiming `device`: locked out, or over the handshake rate.
    pub fn handshake(&self, ip: std::net::IpAddr, device: Option<&str>) -> Result<(), Limited> {
        strictest([self.locked_out(ip, device), self.ip_handshakes.check(&ip)])
    }

    /// Whether `ip` or `device` is locked out after failed connects, and for how long.
    pub fn locked_out(&self, ip: std::net::IpAddr, device: Option<&str>) -> Result<(), Limited> {
        let longest = lockout_keys(ip, device).filter_map(|k| self.lockout.is_locked(&k)).max();
        match longest {
            Some(left) => Err(Limited { limit: "auth-lockout", retry_after: left.max(Duration::from_millis(1)), shadow: self.lockout_shadow }),
            None => Ok(()),
        }
    }

    /// A failed connect from `ip` claiming `device`; returns whether a key is now locked out.
    pub fn auth_failure(&self, ip: std::net::IpAddr, device: Option<&str>) -> bool {
        let mut locked = false;
        for key in lockout_keys(ip, device) {
            locked |= self.lockout.failure(&key);
        }
        locked
    }

    /// The lockout's settings for a shared store: failures that lock, their window and the
    /// lockout, in milliseconds.
    pub fn lockout_settings(&self) -> (u32, u64, u64) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        (self.lockout.limit, ms(self.lockout.window), ms(self.lockout.lockout))
    }

    /// Whether the lockout only counts (`limits.shadow` names `auth-lockout`).
    pub fn lockout_shadow(&self) -> bool {
        self.lockout_shadow
    }

    /// [`ClientLimits::http`], counted in the shared store when there is one.
    pub fn http_shared(&self, store: Option<&dyn crate::state::shared::SharedStore>, route: HttpRoute, identity: &str, ip: std::net::IpAddr) -> Result<(), Limited> {
        let (limit, key) = match route {
            HttpRoute::ToolsInvoke => (&self.http_tools_invoke, identity.to_string()),
            HttpRoute::Inference => (&self.http_inference, identity.to_string()),
            HttpRoute::Hooks => return self.http_hooks.check_shared(store, || crate::state::shared::rate_key(self.http_hooks.name, None, &ip.to_string()), &ip),
        };
        limit.check_shared(store, || crate::state::shared::rate_key(limit.name, None, &key), &self.digest.of(identity))
    }

    /// The per-connection limits of a new connection (owned by it: no shared state).
    pub fn connection(&self) -> ConnectionLimits<C> {
        ConnectionLimits { limits: self.flows.map(|(name, rate, shadow)| DirectLimit::new(name, rate, shadow, &self.clock)) }
    }

    /// One HTTP request to `route`, keyed by identity (tools, inference) or source IP (hooks).
    pub fn http(&self, route: HttpRoute, identity: &str, ip: std::net::IpAddr) -> Result<(), Limited> {
        match route {
            HttpRoute::ToolsInvoke => self.http_tools_invoke.check(&self.digest.of(identity)),
            HttpRoute::Inference => self.http_inference.check(&self.digest.of(identity)),
            HttpRoute::Hooks => self.http_hooks.check(&ip),
        }
    }

    /// Prunes every limit; returns the keys left.
    pub fn prune(&self) -> usize {
        let keyed = [&self.http_tools_invoke, &self.http_inference].iter().map(|l| l.prune()).sum::<usize>();
        let by_ip = [&self.ip_connections, &self.ip_handshakes, &self.http_hooks].iter().map(|l| l.prune()).sum::<usize>();
        keyed + by_ip + self.lockout.prune()
    }
}

/// governor's direct (unkeyed) limiter on clock `C`.
type Direct<C> = RateLimiter<governor::state::NotKeyed, governor::state::InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One unkeyed limit (a connection's own).
struct DirectLimit<C: Clock + Clone> {
    name: &'static str,
    limiter: Option<Direct<C>>,
    clock: C,
    shadow: bool,
    refill: Duration,
}

impl<C: Clock + Clone> DirectLimit<C> {
    fn new(name: &'static str, rate: Rate, shadow: bool, clock: &C) -> Self {
        let limiter = rate.quota().map(|q| RateLimiter::direct_with_clock(q, clock.clone()));
        DirectLimit { name, limiter, clock: clock.clone(), shadow, refill: rate.full_refill() }
    }

    fn check_n(&self, n: usize) -> Result<(), Limited> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        let refused = |retry_after| Err(Limited { limit: self.name, retry_after, shadow: self.shadow });
        let Some(cells) = u32::try_from(n.max(1)).ok().and_then(NonZeroU32::new) else { return refused(self.refill) };
        match limiter.check_n(cells) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => refused(not_until.wait_time_from(self.clock.now()).max(Duration::from_millis(1))),
            Err(_) => refused(self.refill),
        }
    }
}

/// A connection's message and byte limits, each way. Owned by the connection, so checking
/// them touches no shared state.
pub struct ConnectionLimits<C: Clock + Clone> {
    /// Messages client, gateway; bytes client, gateway.
    limits: [DirectLimit<C>; 4],
}

impl<C: Clock + Clone> std::fmt::Debug for ConnectionLimits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLimits").finish()
    }
}

impl<C: Clock + Clone> ConnectionLimits<C> {
    /// One message of `len` bytes in direction `flow`: its message count, then its bytes.
    pub fn message(&self, flow: Flow, len: usize) -> Result<(), Limited> {
        let i = match flow {
            Flow::Client => 0,
            Flow::Gateway => 1,
        };
        self.limits[i].check_n(1)?;
        self.limits[i + 2].check_n(len)
    }
}

/// A lockout's memory: the recent failures and the keys locked out.
struct LockoutState<K: Hash + Eq + Clone, C: Clock + Clone> {
    failures: Mutex<HashMap<K, std::collections::VecDeque<C::Instant>>>,
    locked: Mutex<HashMap<K, C::Instant>>,
}

/// Auth-failure lockout: the `limit`-th failure of a key within a sliding `window` locks the
/// key out for `lockout`. Each key keeps the times of its last `limit` failures (so a client
/// that paces its guesses is counted exactly, unlike a refilling bucket); successes do not
/// count. At most `max_keys` keys are tracked; past that, the key whose last failure is the
/// oldest is forgotten first.
pub struct Lockout<K: Hash + Eq + Clone, C: Clock + Clone> {
    /// Failures and lockouts (shared with the next policy version when its settings are
    /// unchanged).
    state: std::sync::Arc<LockoutState<K, C>>,
    limit: u32,
    window: Duration,
    lockout: Duration,
    clock: C,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> Lockout<K, C> {
    /// Takes over the previous policy version's failures and lockouts when its settings are
    /// unchanged.
    pub fn carry_from(&mut self, old: &Self) {
        if (self.limit, self.window, self.lockout, self.max_keys) == (old.limit, old.window, old.lockout, old.max_keys) {
            self.state = old.state.clone();
        }
    }

    /// `limit` failures within `window` per key lock it out for `lockout` (`limit` 0: never).
    pub fn new(limit: u32, window: Duration, lockout: Duration, max_keys: usize, clock: &C) -> Self {
        Lockout {
            state: std::sync::Arc::new(LockoutState { failures: Mutex::new(HashMap::new()), locked: Mutex::new(HashMap::new()) }),
            limit,
            window,
            lockout,
            clock: clock.clone(),
            max_keys: max_keys.max(1),
        }
    }

    fn within(&self, now: C::Instant, at: C::Instant) -> bool {
        Duration::from(now.duration_since(at)) < self.window
    }

    /// Records a failed connect for `key`; returns whether it is now locked out.
    pub fn failure(&self, key: &K) -> bool {
        if self.limit == 0 {
            return false;
        }
        let now = self.clock.now();
        let reached = {
            let mut failures = self.state.failures.lock().unwrap_or_else(|e| e.into_inner());
            if failures.len() >= self.max_keys && !failures.contains_key(key) {
                failures.retain(|_, times| times.back().is_some_and(|t| self.within(now, *t)));
                if failures.len() >= self.max_keys {
                    if let Some(oldest) = failures.iter().min_by_key(|(_, times)| times.back().copied()).map(|(k, _)| k.clone()) {
                        failures.remove(&oldest);
                    }
                }
            }
            let times = failures.entry(key.clone()).or_default();
            times.retain(|t| self.within(now, *t));
            times.push_back(now);
            let reached = times.len() >= self.limit as usize;
            if reached {
                failures.remove(key);
            }
            reached
        };
        if !reached {
            return self.is_locked(key).is_some();
        }
        let mut locked = self.state.locked.lock().unwrap_or_else(|e| e.into_inner());
        if locked.len() >= self.max_keys && !locked.contains_key(key) {
            locked.retain(|_, until| *until > now);
        }
        if locked.len() < self.max_keys || locked.contains_key(key) {
            locked.insert(key.clone(), now + self.lockout.into());
        }
        true
    }

    /// Forgets expired lockouts and failures older than the window; returns the keys left.
    pub fn prune(&self) -> usize {
        let now = self.clock.now();
        let mut locked = self.state.locked.lock().unwrap_or_else(|e| e.into_inner());
        locked.retain(|_, until| *until > now);
        let mut failures = self.state.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.retain(|_, times| times.back().is_some_and(|t| self.within(now, *t)));
        locked.len() + failures.len()
    }

    /// How long `key` stays locked out, if it is.
    pub fn is_locked(&self, key: &K) -> Option<Duration> {
        let now = self.clock.now();
        let mut locked = self.state.locked.lock().unwrap_or_else(|e| e.into_inner());
        match locked.get(key) {
            Some(until) if *until > now => Some(until.duration_since(now).into()),
            Some(_) => {
                locked.remove(key);
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn burst_then_refill_with_an_honest_retry_hint() {
        let clock = FakeRelativeClock::default();
        let limit: KeyedLimit<String, _> = KeyedLimit::new("session-inference", Rate::per_minute(30), false, DEFAULT_MAX_KEYS, &clock);
        let key = "agent:main:alice".to_string();
        for i in 0..30 {
            assert!(limit.check(&key).is_ok(), "event {i} is within the burst");
        }
        let refused = limit.check(&key).unwrap_err();
        assert_eq!(refused.limit, "session-inference");
        // 30 per minute: one cell every 2 s.
        assert!(refused.retry_after <= Duration::from_secs(2) && refused.retry_after >= Duration::from_millis(1900), "{:?}", refused.retry_after);
        assert!(limit.check(&"agent:main:bob".to_string()).is_ok(), "keys are independent");
        clock.advance(Duration::from_secs(2));
        assert!(limit.check(&key).is_ok(), "one cell refilled");
        assert!(limit.check(&key).is_err());
        clock.advance(Duration::from_secs(60));
        for _ in 0..30 {
            assert!(limit.check(&key).is_ok(), "a full minute refills the burst");
        }
    }

    #[test]
    fn a_zero_rate_disables_the_limit() {
        let clock = FakeRelativeClock::default();
        let limit: KeyedLimit<u32, _> = KeyedLimit::new("off", Rate::per_minute(0), false, DEFAULT_MAX_KEYS, &clock);
        assert!((0..1000).all(|_| limit.check(&1).is_ok()));
    }

    #[test]
    fn shadow_limits_say_so() {
        let clock = FakeRelativeClock::default();
        let limit: KeyedLimit<u32, _> = KeyedLimit::new("node-invoke", Rate::per_minute(1), true, DEFAULT_MAX_KEYS, &clock);
        assert!(limit.check(&1).is_ok());
        assert!(limit.check(&1).unwrap_err().shadow);
    }

    #[test]
    fn pruning_drops_refilled_keys() {
        let clock = FakeRelativeClock::default();
        let limit: KeyedLimit<u32, _> = KeyedLimit::new("per-ip", Rate::per_second(10, 10), false, DEFAULT_MAX_KEYS, &clock);
        for k in 0..500 {
            limit.check(&k).unwrap();
        }
        assert_eq!(limit.len(), 500);
        clock.advance(Duration::from_millis(50));
        assert_eq!(limit.prune(), 500, "keys still refilling are kept");
        clock.advance(Duration::from_secs(5));
        assert_eq!(limit.prune(), 0, "every key has refilled");
    }

    #[test]
    fn the_key_cap_holds_and_evicts_the_most_idle_first() {
        let clock = FakeRelativeClock::default();
        let limit: KeyedLimit<u32, _> = KeyedLimit::new("per-device", Rate::per_minute(3), false, 1_000, &clock);
        // A busy key, at its limit: it must survive any flood of new keys.
        for _ in 0..3 {
            limit.check(&0).unwrap();
        }
        assert!(limit.check(&0).is_err());
        clock.advance(Duration::from_secs(1));
        for k in 1..=10_000u32 {
            clock.advance(Duration::from_millis(1));
            let _ = limit.check(&k);
            assert!(limit.len() <= 1_000, "{} keys after {k} new ones", limit.len());
        }
        assert!(limit.check(&0).is_err(), "the busy key kept its state: evicting it would have reset its budget");
        // Eviction goes by idleness: an early key was forgotten (a fresh budget of three),
        // the most recent one was kept (two left of three).
        assert!((0..3).all(|_| limit.check(&1).is_ok()), "key 1 was evicted");
        assert!(limit.check(&9_999).is_ok() && limit.check(&9_999).is_ok());
        assert!(limit.check(&9_999).is_err(), "key 9999 was kept with its state");
    }

    #[test]
    fn profiles_override_the_default_and_shadow_is_per_limit() {
        let policy = clawguard_policies::LoadedPolicy::parse(
            "t.toml",
            "[limits]\nshadow = [\"node-invoke\"]\nsystem_run_per_minute = 2\n[limits.profile.ci]\nsystem_run_per_minute = 5\n",
        )
        .unwrap()
        .policy;
        let clock = FakeRelativeClock::default();
        let limits = RateLimits::new(&policy.limits, &clock);
        assert!((0..2).all(|_| limits.check(Limit::SystemRun, None, "n").is_ok()));
        let refused = limits.check(Limit::SystemRun, None, "n").unwrap_err();
        assert!(!refused.shadow && refused.retry_after > Duration::from_secs(29), "{refused:?}");
        assert!((0..5).all(|_| limits.check(Limit::SystemRun, Some("ci"), "n").is_ok()), "the profile has its own, larger budget");
        assert!(limits.check(Limit::SystemRun, Some("ci"), "n").is_err());
        assert!(limits.check(Limit::SystemRun, Some("unknown"), "m").is_ok(), "an unknown profile falls back to the default");
        for _ in 0..60 {
            let _ = limits.check(Limit::NodeInvoke, None, "n");
        }
        assert!(limits.check(Limit::NodeInvoke, None, "n").unwrap_err().shadow);
    }

    #[test]
    fn issue15_a_reload_keeps_the_state_of_unchanged_limits_and_resets_changed_ones() {
        let clock = FakeRelativeClock::default();
        let parse = |t: &str| clawguard_policies::LoadedPolicy::parse("t.toml", t).unwrap().policy.limits;
        let before = parse("[limits]\nsystem_run_per_minute = 2\nnode_invoke_per_minute = 3\nauth_failures = 2\n[limits.profile.ci]\nsystem_run_per_minute = 5\n");
        let old = RateLimits::new(&before, &clock);
        let old_clients = ClientLimits::new(&before, &clock);
        for _ in 0..2 {
            old.check(Limit::SystemRun, None, "n").unwrap();
            old.check(Limit::SystemRun, Some("ci"), "n").unwrap();
            old.check(Limit::NodeInvoke, None, "n").unwrap();
        }
        let ip: std::net::IpAddr = "192.0.2.9".parse().unwrap();
        old_clients.auth_failure(ip, None);
        old_clients.auth_failure(ip, None);
        assert!(old_clients.new_connection(ip).is_err(), "locked out before the reload");
        // The reload changes node-invoke's rate only.
        let after = parse("[limits]\nsystem_run_per_minute = 2\nnode_invoke_per_minute = 4\nauth_failures = 2\n[limits.profile.ci]\nsystem_run_per_minute = 5\n");
        let mut new = RateLimits::new(&after, &clock);
        let mut new_clients = ClientLimits::new(&after, &clock);
        new.carry_from(&old);
        new_clients.carry_from(&old_clients);
        assert!(new.check(Limit::SystemRun, None, "n").is_err(), "unchanged: the two used stay used");
        assert!((0..3).all(|_| new.check(Limit::SystemRun, Some("ci"), "n").is_ok()) && new.check(Limit::SystemRun, Some("ci"), "n").is_err(), "the profile's limit kept its state too");
        assert!((0..4).all(|_| new.check(Limit::NodeInvoke, None, "n").is_ok()), "a changed rate starts afresh");
        assert!(new_clients.new_connection(ip).is_err(), "the lockout survives the reload");
        // Without carrying, the same limits would hand out a fresh budget.
        let fresh = RateLimits::new(&after, &clock);
        assert!(fresh.check(Limit::SystemRun, None, "n").is_ok());
    }

    fn client_limits(toml: &str, clock: &FakeRelativeClock) -> ClientLimits<FakeRelativeClock> {
        let policy = clawguard_policies::LoadedPolicy::parse("t.toml", toml).unwrap().policy;
        ClientLimits::new(&policy.limits, clock)
    }

    #[test]
    fn issue6_new_connections_per_address_burst_then_refill() {
        let clock = FakeRelativeClock::default();
        let limits = client_limits("[limits]\nip_connections_per_second = 2\nip_connections_burst = 5\n", &clock);
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..5).all(|_| limits.new_connection(a).is_ok()), "the burst passes");
        let refused = limits.new_connection(a).unwrap_err();
        assert_eq!(refused.limit, "ip-connections");
        assert!(refused.retry_after <= Duration::from_millis(500) && refused.retry_after > Duration::from_millis(400), "{:?}", refused.retry_after);
        assert!(limits.new_connection("192.0.2.2".parse().unwrap()).is_ok(), "another address has its own budget");
        clock.advance(Duration::from_millis(500));
        assert!(limits.new_connection(a).is_ok(), "one connection refilled in 500 ms");
        assert!(limits.new_connection(a).is_err());
    }

    #[test]
    fn issue6_auth_failures_lock_out_the_address_and_the_device_until_it_expires() {
        let clock = FakeRelativeClock::default();
        let limits = client_limits("[limits]\nauth_failures = 10\nauth_failure_window_seconds = 300\nauth_lockout_seconds = 300\n", &clock);
        let attacker: std::net::IpAddr = "198.51.100.7".parse().unwrap();
        let other: std::net::IpAddr = "203.0.113.9".parse().unwrap();
        for i in 1..10 {
            assert!(!limits.auth_failure(attacker, Some("dev-1")), "failure {i} is tolerated");
            assert!(limits.handshake(attacker, Some("dev-1")).is_ok());
        }
        assert!(limits.auth_failure(attacker, Some("dev-1")), "the tenth failure locks out");
        let refused = limits.handshake(attacker, None).unwrap_err();
        assert_eq!(refused.limit, "auth-lockout");
        assert!(refused.retry_after > Duration::from_secs(299));
        assert!(limits.new_connection(attacker).is_err(), "new connections from the address are refused too");
        assert_eq!(limits.handshake(other, Some("dev-1")).unwrap_err().limit, "auth-lockout", "the device is locked out from any address");
        assert!(limits.handshake(other, Some("dev-2")).is_ok(), "another client from another address is unaffected");
        clock.advance(Duration::from_secs(301));
        assert!(limits.handshake(attacker, Some("dev-1")).is_ok(), "the lockout ends");
    }

    #[test]
    fn issue11_a_paced_attacker_is_locked_out_within_the_window() {
        // The gateway answers each failed auth after about 3 s; a client guessing once every
        // 6 s never emptied the old 10-a-minute bucket. The window counts every failure.
        let clock = FakeRelativeClock::default();
        let limits = client_limits("[limits]\nauth_failures = 10\nauth_failure_window_seconds = 300\nauth_lockout_seconds = 300\n", &clock);
        let attacker: std::net::IpAddr = "198.51.100.7".parse().unwrap();
        for i in 1..10 {
            assert!(!limits.auth_failure(attacker, None), "failure {i} is tolerated");
            clock.advance(Duration::from_secs(29));
        }
        assert!(limits.auth_failure(attacker, None), "the tenth failure within 5 minutes locks out, however paced");
        assert!(limits.handshake(attacker, None).is_err());
        clock.advance(Duration::from_secs(301));
        assert!(limits.handshake(attacker, None).is_ok(), "the lockout ends");
        // Slower than 10 per window (one every 34 s): never locked.
        for _ in 0..30 {
            assert!(!limits.auth_failure(attacker, None));
            clock.advance(Duration::from_secs(34));
        }
        let off = client_limits("[limits]\nauth_failures = 0\n", &clock);
        assert!((0..100).all(|_| !off.auth_failure(attacker, None)), "0 disables the lockout");
    }

    #[test]
    fn issue6_handshakes_per_address_per_minute() {
        let clock = FakeRelativeClock::default();
        let limits = client_limits("[limits]\nip_handshakes_per_minute = 6\n", &clock);
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..6).all(|_| limits.handshake(a, None).is_ok()));
        let refused = limits.handshake(a, Some("any-device")).unwrap_err();
        assert_eq!(refused.limit, "ip-handshakes");
        assert!(refused.retry_after > Duration::from_secs(9) && refused.retry_after <= Duration::from_secs(10), "6 a minute: one every 10 s ({:?})", refused.retry_after);
        assert!(limits.handshake("192.0.2.2".parse().unwrap(), None).is_ok());
        clock.advance(Duration::from_secs(10));
        assert!(limits.handshake(a, None).is_ok());
    }

    #[test]
    fn issue6_a_byte_burst_below_the_largest_message_is_refused_at_load() {
        let err = clawguard_policies::LoadedPolicy::parse("t.toml", "[limits]\nconnection_bytes_burst = 1024\n").map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("connection_bytes_burst") && err.contains("max_message_bytes"), "{err}");
    }

    #[test]
    fn issue6_a_shadow_lockout_never_hides_an_enforced_limit() {
        let clock = FakeRelativeClock::default();
        let limits = client_limits("[limits]\nauth_failures = 1\nip_handshakes_per_minute = 2\nshadow = [\"auth-lockout\"]\n", &clock);
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        limits.auth_failure(a, None);
        limits.auth_failure(a, None);
        let first = limits.handshake(a, None).unwrap_err();
        assert!(first.shadow && first.limit == "auth-lockout", "{first:?}");
        assert!(limits.handshake(a, None).unwrap_err().shadow);
        let third = limits.handshake(a, None).unwrap_err();
        assert_eq!((third.limit, third.shadow), ("ip-handshakes", false), "the enforced handshake limit still applies");
    }

    #[test]
    fn issue6_default_inference_methods_are_methods_of_the_gateway() {
        // The default list is drawn from the generated method table: every entry must name a
        // method the gateway has, or a gateway upgrade that renamed one would leave it unlimited.
        for glob in clawguard_policies::Limits::default().inference_methods {
            assert!(crate::protocol::method_table::METHODS.iter().any(|(m, _)| glob.matches(m)), "{} is not a gateway method", glob.as_str());
        }
    }

    #[test]
    fn issue6_only_authentication_failures_count() {
        for code in ["AUTH_TOKEN_MISMATCH", "AUTH_TOKEN_MISSING", "AUTH_PASSWORD_MISMATCH", "DEVICE_AUTH_SIGNATURE_INVALID", "DEVICE_AUTH_NONCE_MISMATCH", "PAIRING_REQUIRED"] {
            assert!(is_auth_failure(code), "{code}");
        }
        for code in ["AUTH_RATE_LIMITED", "PROTOCOL_MISMATCH", "CLIENT_VERSION_MISMATCH", "INVALID_HANDSHAKE", ""] {
            assert!(!is_auth_failure(code), "{code}");
        }
    }

    #[test]
    fn issue6_per_connection_messages_and_bytes_each_way() {
        let clock = FakeRelativeClock::default();
        let limits = client_limits(
            "[websocket]\nmax_message_bytes = 1000\nmax_handshake_message_bytes = 1000\n[limits]\nconnection_messages_per_second = 10\nconnection_messages_burst = 10\nconnection_bytes_per_second = 1000\nconnection_bytes_burst = 2000\ngateway_messages_per_second = 100\n",
            &clock,
        );
        let (one, two, three) = (limits.connection(), limits.connection(), limits.connection());
        assert!((0..10).all(|_| one.message(Flow::Client, 10).is_ok()));
        assert_eq!(one.message(Flow::Client, 10).unwrap_err().limit, "connection-messages");
        assert!(two.message(Flow::Client, 10).is_ok(), "connections are independent");
        assert!(one.message(Flow::Gateway, 10).is_ok(), "directions are independent");
        assert!(three.message(Flow::Client, 1500).is_ok());
        let refused = three.message(Flow::Client, 1000).unwrap_err();
        assert_eq!(refused.limit, "connection-bytes");
        assert!(refused.retry_after >= Duration::from_millis(400) && refused.retry_after <= Duration::from_millis(500), "{:?}", refused.retry_after);
        assert_eq!(three.message(Flow::Client, 5000).unwrap_err().retry_after, Duration::from_secs(2), "more than the burst: the time a full burst takes");
        clock.advance(Duration::from_secs(1));
        assert!(one.message(Flow::Client, 10).is_ok(), "refilled");
    }

    #[test]
    fn issue6_http_routes_and_their_keys() {
        assert_eq!(HttpRoute::of("/tools/invoke"), Some(HttpRoute::ToolsInvoke));
        assert_eq!(HttpRoute::of("/v1/chat/completions"), Some(HttpRoute::Inference));
        assert_eq!(HttpRoute::of("/hooks/wake"), Some(HttpRoute::Hooks));
        assert_eq!(HttpRoute::of("/readyz"), None);
        assert_eq!(HttpRoute::of("/v1"), None);
        let clock = FakeRelativeClock::default();
        let limits = client_limits("[limits]\nhttp_inference_per_minute = 2\nhttp_hooks_per_minute = 1\nshadow = [\"http-hooks\"]\n", &clock);
        let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limits.http(HttpRoute::Inference, "alice", ip).is_ok() && limits.http(HttpRoute::Inference, "alice", ip).is_ok());
        let refused = limits.http(HttpRoute::Inference, "alice", ip).unwrap_err();
        assert!(!refused.shadow && refused.retry_after > Duration::from_secs(29), "{refused:?}");
        assert!(limits.http(HttpRoute::Inference, "bob", ip).is_ok(), "keyed by identity");
        assert!(limits.http(HttpRoute::Hooks, "", ip).is_ok());
        assert!(limits.http(HttpRoute::Hooks, "", ip).unwrap_err().shadow, "shadow mode: counted, flagged, not enforced by the caller");
    }

    #[test]
    fn lockout_engages_past_the_limit_and_expires() {
        let clock = FakeRelativeClock::default();
        let lockout: Lockout<String, _> = Lockout::new(10, Duration::from_secs(300), Duration::from_secs(300), 100, &clock);
        let ip = "198.51.100.7".to_string();
        for _ in 0..9 {
            assert!(!lockout.failure(&ip), "nine failures in the window are tolerated");
        }
        assert!(lockout.failure(&ip), "the tenth locks the key out");
        let left = lockout.is_locked(&ip).unwrap();
        assert!(left <= Duration::from_secs(300) && left > Duration::from_secs(299));
        assert!(lockout.is_locked(&"203.0.113.1".to_string()).is_none(), "another key is unaffected");
        clock.advance(Duration::from_secs(301));
        assert!(lockout.is_locked(&ip).is_none(), "the lockout ends");
        assert_eq!(lockout.prune(), 0, "nothing is left once the lockout ended");
    }

    #[test]
    fn the_lockout_table_is_bounded() {
        let clock = FakeRelativeClock::default();
        let lockout: Lockout<String, _> = Lockout::new(3, Duration::from_secs(300), Duration::from_secs(300), 100, &clock);
        for i in 0..1000 {
            lockout.failure(&format!("k{i}"));
        }
        assert!(lockout.prune() <= 100, "at most max_keys keys are tracked");
    }
}
