//! The per-fingerprint rate limit: at most so many snapshots of one failure a minute, so an
//! error in a hot loop does not fill the store (the rest are counted, not stored).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The window the limit counts over.
const WINDOW: Duration = Duration::from_secs(60);
/// Past this many fingerprints, expired windows are dropped (memory stays bounded).
const PRUNE_OVER: usize = 10_000;

/// For each fingerprint, when its window started and how many snapshots it allowed.
#[derive(Default)]
pub struct RateLimiter {
    windows: HashMap<String, (Instant, u32)>,
}

impl RateLimiter {
    /// Whether one more snapshot of `key` may be stored at `now`, `limit` per minute (0: no
    /// limit); counts it when it may.
    pub fn allow(&mut self, key: &str, limit: u32, now: Instant) -> bool {
        if limit == 0 {
            return true;
        }
        if self.windows.len() > PRUNE_OVER {
            self.windows
                .retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = self.windows.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= limit {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// Fingerprints remembered now.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_fingerprint_per_minute() {
        let mut r = RateLimiter::default();
        let t0 = Instant::now();
        assert!(r.allow("a", 2, t0));
        assert!(r.allow("a", 2, t0 + Duration::from_secs(1)));
        assert!(!r.allow("a", 2, t0 + Duration::from_secs(2)));
        assert!(
            r.allow("b", 2, t0 + Duration::from_secs(2)),
            "per fingerprint"
        );
        assert!(!r.allow("a", 2, t0 + Duration::from_secs(59)));
        assert!(r.allow("a", 2, t0 + WINDOW), "a new window");
        assert!(r.allow("a", 2, t0 + WINDOW));
        assert!(!r.allow("a", 2, t0 + WINDOW));
    }

    #[test]
    fn zero_is_no_limit_and_remembers_nothing() {
        let mut r = RateLimiter::default();
        let t0 = Instant::now();
        assert!((0..100).all(|_| r.allow("a", 0, t0)));
        assert!(r.is_empty());
    }

    #[test]
    fn expired_fingerprints_are_dropped_past_the_bound() {
        let mut r = RateLimiter::default();
        let t0 = Instant::now();
        for i in 0..=PRUNE_OVER {
            assert!(r.allow(&format!("k{i}"), 1, t0));
        }
        assert_eq!(r.len(), PRUNE_OVER + 1);
        // Still within the minute: nothing can go.
        assert!(r.allow("late", 1, t0 + Duration::from_secs(30)));
        assert_eq!(r.len(), PRUNE_OVER + 2);
        // A minute on, the next check drops every expired window.
        assert!(r.allow("later", 1, t0 + WINDOW + Duration::from_secs(1)));
        assert_eq!(r.len(), 2, "only `late` and `later` are left");
    }
}
