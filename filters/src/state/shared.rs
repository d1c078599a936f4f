//! State shared by every clawguard using one store (`[state] backend = "redis"`): the questions
//! the core asks of it, as a trait the proxy implements over Redis. What a failed answer means
//! is decided here, per kind, not by the store:
//!
//! - replay memory and auth-failure lockouts **fail closed**: a connect that cannot be checked
//!   is refused, naming the store;
//! - keyed rate limits **fall back** to this replica's own limit (the store counts the error);
//! - spend figures **go stale**: the ledger's `max_report_age_seconds` refuses runs once no
//!   fresh figure has been read.
//!
//! Every call is bounded by the store's own timeout (`state.timeout_ms`).

use crate::protocol::usage::UsageReport;
use crate::state::spend::WindowTotals;
use sha2::{Digest, Sha256};

/// The store could not answer (unreachable, timed out, or an error reply), and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// A store shared by replicas. Implementations bound every call by their timeout.
pub trait SharedStore: Send + Sync {
    /// Claims `key` for `ttl_ms`: `true` the first time within the ttl, `false` when any
    /// replica claimed it already (Redis `SET NX PX`).
    fn claim_once(&self, key: &str, ttl_ms: u64) -> Result<bool, Unavailable>;

    /// The longest lockout left on any of `keys`, in milliseconds.
    fn lockout_left_ms(&self, keys: &[String]) -> Result<Option<u64>, Unavailable>;

    /// Records one failed connect for each of `keys`: the `limit`-th failure of a key within
    /// `window_ms` locks it out for `lockout_ms`. Returns whether any key is locked out now.
    fn auth_failure(&self, keys: &[String], limit: u32, window_ms: u64, lockout_ms: u64) -> Result<bool, Unavailable>;

    /// One event of the GCRA limit `key` (one event per `interval_ms`, bursts of `burst`):
    /// `None` allowed, `Some(ms)` refused, retry in `ms`.
    fn rate(&self, key: &str, interval_ms: u64, burst: u32) -> Result<Option<u64>, Unavailable>;

    /// Notes that `identity` started a run on session `key`, so whichever replica reads the
    /// session's usage charges it to that identity.
    fn note_runner(&self, key: &str, identity: &str) -> Result<(), Unavailable>;

    /// Charges what `report` (the usage of gateway `gateway` today) adds to what any replica
    /// charged for it before, per session to the identity that ran it (the noted runner, else
    /// `runner_of`) and in total to the global figures; returns the current windows' totals.
    fn spend(&self, gateway: &str, report: &UsageReport, runner_of: &dyn Fn(&str) -> Option<String>, now_ms: u64) -> Result<WindowTotals, Unavailable>;
}

/// The replay key of a signed connect: the device and a digest of its signature (signatures
/// are long; the digest is as unique).
pub fn replay_key(device_id: &str, signature: &str) -> String {
    let digest = Sha256::digest(signature.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("replay:{device_id}:{hex}")
}

/// The key of a keyed rate limit: its name, the identity's limit profile, and the limited key.
pub fn rate_key(limit: &str, profile: Option<&str>, key: &str) -> String {
    format!("rate:{limit}:{}:{key}", profile.unwrap_or("-"))
}

/// The GCRA parameters of `per` events per `period_ms` with bursts of `burst`: the emission
/// interval in milliseconds (at least 1).
pub fn emission_interval_ms(per: u32, period_ms: u64) -> u64 {
    (period_ms / u64::from(per.max(1))).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keys_differ_by_device_and_signature_and_stay_short() {
        let a = replay_key("dev1", &"s".repeat(400));
        assert_eq!(a.len(), "replay:dev1:".len() + 32);
        assert_ne!(a, replay_key("dev2", &"s".repeat(400)));
        assert_ne!(a, replay_key("dev1", &"t".repeat(400)));
    }

    #[test]
    fn emission_interval_of_a_per_minute_limit() {
        assert_eq!(emission_interval_ms(30, 60_000), 2_000);
        assert_eq!(emission_interval_ms(0, 60_000), 60_000, "a zero rate is never asked for; it does not divide by zero");
        assert_eq!(emission_interval_ms(100_000, 1_000), 1);
    }
}
