//! Protocol drift seen from client requests: requests for methods the method table does not
//! have, counted over the last minute. Past a threshold the gateway or its clients speak a
//! protocol newer than the table (an upgrade ahead of the policy), which is worth an alarm.

use std::collections::VecDeque;

/// The window requests are counted over.
pub const WINDOW_MS: u64 = 60_000;

/// Requests for unknown methods in the last minute, and whether they passed the threshold.
#[derive(Debug, Clone)]
pub struct UnknownMethods {
    threshold: u32,
    seen: VecDeque<u64>,
    tripped: bool,
}

impl UnknownMethods {
    /// Trips when more than `threshold` requests arrive within a minute (0: never).
    pub fn new(threshold: u32) -> Self {
        UnknownMethods { threshold, seen: VecDeque::new(), tripped: false }
    }

    /// Counts a request for `method` at `now_ms`; the reason the first time the threshold is
    /// passed (then it stays tripped until a new window is made, on reload).
    pub fn record(&mut self, now_ms: u64, method: &str) -> Option<String> {
        if self.threshold == 0 || self.tripped {
            return None;
        }
        while self.seen.front().is_some_and(|&t| now_ms.saturating_sub(t) >= WINDOW_MS) {
            self.seen.pop_front();
        }
        self.seen.push_back(now_ms);
        if self.seen.len() <= self.threshold as usize {
            return None;
        }
        self.tripped = true;
        self.seen.clear();
        Some(format!(
            "more than {} requests for methods the method table does not have within a minute (the last: {method:?}; gateway.unknown_methods_per_minute = {})",
            self.threshold, self.threshold
        ))
    }

    /// Whether the threshold was passed.
    pub fn tripped(&self) -> bool {
        self.tripped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue15_trips_once_past_the_threshold_within_a_minute_and_never_when_off() {
        let mut u = UnknownMethods::new(3);
        // Spread out: never more than 3 in any minute.
        for i in 0..10 {
            assert_eq!(u.record(i * 25_000, "future.method"), None);
        }
        assert!(!u.tripped());
        let t = 1_000_000;
        for i in 0..3 {
            assert_eq!(u.record(t + i, "future.method"), None);
        }
        let reason = u.record(t + 3, "future.other").expect("the fourth within a minute trips");
        assert!(reason.contains("more than 3") && reason.contains("future.other"), "{reason}");
        assert!(u.tripped());
        assert_eq!(u.record(t + 4, "future.other"), None, "reported once");
        let mut off = UnknownMethods::new(0);
        assert!((0..1000).all(|i| off.record(i, "x").is_none()) && !off.tripped());
    }
}
