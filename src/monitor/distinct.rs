//! Distinct values per key within a window — the patients or resources one token, client or
//! subject touched. A key's window starts at its first value; reaching `threshold` distinct
//! values within it fires and starts a new window. A key holds at most `threshold` values, and
//! at most `max_keys` keys are held, so memory is bounded whatever the traffic.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// One key's window.
#[derive(Debug)]
struct Seen {
    started: Instant,
    values: HashSet<String>,
}

/// Distinct values per key.
pub struct DistinctWatch<K> {
    threshold: usize,
    window: Duration,
    keys: Cache<K, Arc<Mutex<Seen>>>,
}

impl<K: Hash + Eq + Send + Sync + 'static> DistinctWatch<K> {
    /// Fires at `threshold` distinct values within `window`, for at most `max_keys` keys.
    pub fn new(threshold: u32, window: Duration, max_keys: u64) -> Self {
        Self {
            threshold: usize::try_from(threshold).unwrap_or(usize::MAX).max(1),
            window,
            keys: Cache::builder()
                .max_capacity(max_keys)
                .time_to_live(window)
                .build(),
        }
    }

    /// Notes that `key` touched `value` at `now`; true when that reaches the threshold.
    pub fn hit(&self, key: K, value: &str, now: Instant) -> bool {
        let seen = self.keys.get_with(key, || {
            Arc::new(Mutex::new(Seen {
                started: now,
                values: HashSet::new(),
            }))
        });
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(seen.started) >= self.window {
            seen.started = now;
            seen.values.clear();
        }
        seen.values.insert(value.to_owned());
        if seen.values.len() >= self.threshold {
            seen.started = now;
            seen.values.clear();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    /// Feeds one key (second, value) pairs and checks which fire.
    #[track_caller]
    fn check(threshold: u32, touches: &[(u64, &str)], expected: &[bool]) {
        let watch = DistinctWatch::new(threshold, WINDOW, 10);
        let start = Instant::now();
        let fired: Vec<bool> = touches
            .iter()
            .map(|(s, v)| watch.hit("k", v, start + Duration::from_secs(*s)))
            .collect();
        assert_eq!(fired, expected, "{touches:?}");
    }

    #[test]
    fn fires_at_the_threshold_of_distinct_values_within_the_window() {
        check(3, &[(0, "a"), (1, "b"), (2, "c")], &[false, false, true]);
        // Repeats are not distinct.
        check(3, &[(0, "a"), (1, "a"), (2, "b"), (3, "a")], &[false; 4]);
        // A new window forgets the old values.
        check(3, &[(0, "a"), (1, "b"), (60, "c")], &[false, false, false]);
    }

    #[test]
    fn distinct_keys_never_grow_past_the_bound() {
        let watch = DistinctWatch::new(5, WINDOW, 50);
        let now = Instant::now();
        for key in 0..5_000u32 {
            watch.hit(key, "a", now);
        }
        watch.keys.run_pending_tasks();
        assert!(watch.keys.entry_count() <= 50);
    }
}
