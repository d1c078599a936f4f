//! Replay protection for device-signed `connect`s: a (device id, signature) pair is accepted
//! once per window. Time is passed in, so the cache is deterministic under test.

use std::collections::HashMap;

/// How long a (device id, signature) pair is remembered: ten minutes, well past the gateway's
/// 120 s signature skew, so a signature is accepted at most once.
pub const WINDOW_MS: u64 = 10 * 60 * 1000;

/// Remembers recent (device id, signature) pairs.
#[derive(Debug)]
pub struct ReplayCache {
    window_ms: u64,
    capacity: usize,
    seen: HashMap<(String, String), u64>,
}

impl ReplayCache {
    /// A cache refusing repeats within `window_ms`, holding at most `capacity` pairs (the
    /// oldest are forgotten first when full).
    pub fn new(window_ms: u64, capacity: usize) -> Self {
        ReplayCache { window_ms, capacity: capacity.max(1), seen: HashMap::new() }
    }

    /// Records the pair; `false` if it was already seen within the window (a replay).
    pub fn fresh(&mut self, device_id: &str, signature: &str, now_ms: u64) -> bool {
        let key = (device_id.to_string(), signature.to_string());
        if let Some(&at) = self.seen.get(&key) {
            if now_ms.saturating_sub(at) < self.window_ms {
                return false;
            }
        }
        if self.seen.len() >= self.capacity {
            let window = self.window_ms;
            self.seen.retain(|_, at| now_ms.saturating_sub(*at) < window);
            while self.seen.len() >= self.capacity {
                let oldest = self.seen.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => self.seen.remove(&k),
                    None => break,
                };
            }
        }
        self.seen.insert(key, now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_accepted_once_per_window() {
        let mut c = ReplayCache::new(600_000, 100);
        assert!(c.fresh("d", "s", 1_000));
        assert!(!c.fresh("d", "s", 2_000));
        assert!(!c.fresh("d", "s", 600_999));
        assert!(c.fresh("d", "s", 601_000), "after the window it is a new connect");
        assert!(c.fresh("d", "other", 601_001));
        assert!(c.fresh("e", "s", 601_002));
    }

    #[test]
    fn capacity_is_bounded() {
        let mut c = ReplayCache::new(600_000, 3);
        for i in 0..10 {
            assert!(c.fresh("d", &i.to_string(), i));
        }
        assert!(c.seen.len() <= 3);
        assert!(!c.fresh("d", "9", 20), "the newest pairs are kept");
    }
}
