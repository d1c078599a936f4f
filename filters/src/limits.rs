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
    tats: Mutex<HashMap<K, Nanos>>,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> BoundedStore<K> {
    /// A store of at most `max_keys` keys (at least 1).
    pub fn new(max_keys: usize) -> Self {
        BoundedStore { tats: Mutex::new(HashMap::new()), max_keys: max_keys.max(1) }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<K, Nanos>> {
        // A panic while holding the lock cannot leave a half-written TAT: keep going.
        self.tats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes the eighth of `map`'s entries with the earliest values (at least one).
fn evict_most_idle<K: Hash + Eq + Clone>(map: &mut HashMap<K, Nanos>) {
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
    limiter: Option<Keyed<K, C>>,
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
        let limiter = rate.quota().map(|q| RateLimiter::new(q, BoundedStore::new(max_keys), clock.clone()));
        KeyedLimit { name, limiter, clock: clock.clone(), shadow }
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

/// Every request-path limit of a policy, per profile, on clock `C`.
pub struct RateLimits<C: Clock + Clone> {
    limits: HashMap<(Limit, Option<String>), KeyedLimit<String, C>>,
}

impl<C: Clock + Clone> std::fmt::Debug for RateLimits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").field("limits", &self.limits.len()).finish()
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// The limits `[limits]` describes: the default profile and each named one.
    pub fn new(policy: &clawguard_policies::Limits, clock: &C) -> Self {
        let mut limits = HashMap::new();
        let profiles = std::iter::once((None, None)).chain(policy.profile.iter().map(|(n, p)| (Some(n.clone()), Some(p))));
        for (name, profile) in profiles {
            for limit in Limit::ALL {
                let shadow = policy.shadow.iter().any(|s| s == limit.name());
                let rate = Rate::per_minute(limit.per_minute(policy, profile));
                limits.insert((limit, name.clone()), KeyedLimit::new(limit.name(), rate, shadow, policy.max_keys, clock));
            }
        }
        RateLimits { limits }
    }

    /// Counts one event of `limit` for `key` under the identity's `profile`.
    pub fn check(&self, limit: Limit, profile: Option<&str>, key: &str) -> Result<(), Limited> {
        let entry = self.limits.get(&(limit, profile.map(str::to_string))).or_else(|| self.limits.get(&(limit, None)));
        entry.map(|l| l.check(&key.to_string())).unwrap_or(Ok(()))
    }

    /// Prunes every limit; returns the keys left.
    pub fn prune(&self) -> usize {
        self.limits.values().map(KeyedLimit::prune).sum()
    }
}

/// Auth-failure lockout: failures per key in a window; past the limit, the key is locked out
/// until the lockout ends. Successes do not count.
pub struct Lockout<K: Hash + Eq + Clone, C: Clock + Clone> {
    failures: KeyedLimit<K, C>,
    locked: Mutex<HashMap<K, C::Instant>>,
    lockout: Duration,
    clock: C,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> Lockout<K, C> {
    /// `limit` failures per minute per key, then a lockout of `lockout`.
    pub fn new(limit: u32, lockout: Duration, max_keys: usize, clock: &C) -> Self {
        Lockout {
            failures: KeyedLimit::new("auth-failures", Rate::per_minute(limit), false, max_keys, clock),
            locked: Mutex::new(HashMap::new()),
            lockout,
            clock: clock.clone(),
            max_keys: max_keys.max(1),
        }
    }

    /// Records a failed connect for `key`; returns whether it is now locked out.
    pub fn failure(&self, key: &K) -> bool {
        if self.failures.check(key).is_ok() {
            return self.is_locked(key).is_some();
        }
        let mut locked = self.locked.lock().unwrap_or_else(|e| e.into_inner());
        if locked.len() >= self.max_keys && !locked.contains_key(key) {
            let now = self.clock.now();
            locked.retain(|_, until| *until > now);
        }
        if locked.len() < self.max_keys || locked.contains_key(key) {
            locked.insert(key.clone(), self.clock.now() + self.lockout.into());
        }
        true
    }

    /// How long `key` stays locked out, if it is.
    pub fn is_locked(&self, key: &K) -> Option<Duration> {
        let now = self.clock.now();
        let mut locked = self.locked.lock().unwrap_or_else(|e| e.into_inner());
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
    fn lockout_engages_past_the_limit_and_expires() {
        let clock = FakeRelativeClock::default();
        let lockout: Lockout<String, _> = Lockout::new(10, Duration::from_secs(300), 100, &clock);
        let ip = "198.51.100.7".to_string();
        for _ in 0..10 {
            assert!(!lockout.failure(&ip), "ten failures a minute are tolerated");
        }
        assert!(lockout.failure(&ip), "the eleventh locks the key out");
        let left = lockout.is_locked(&ip).unwrap();
        assert!(left <= Duration::from_secs(300) && left > Duration::from_secs(299));
        assert!(lockout.is_locked(&"203.0.113.1".to_string()).is_none(), "another key is unaffected");
        clock.advance(Duration::from_secs(301));
        assert!(lockout.is_locked(&ip).is_none(), "the lockout ends");
    }
}
