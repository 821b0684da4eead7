//! Distinct values per key within a window — the patients or resources one token, client or
//! subject touched. A key's window opens at its first value; reaching `threshold` distinct
//! values within it fires and empties the key, and its next value opens a new window (as the
//! shared count in Redis does). A key holds fewer than `threshold` values, and at most
//! `max_keys` keys are held, so memory is bounded whatever the traffic.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// One key's window: when it opened (none until the next value after a firing), and its values.
#[derive(Debug, Default)]
struct Seen {
    opened: Option<Instant>,
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
            // A key idle for a whole window has no window left open to remember.
            keys: super::keyed_cache(max_keys).time_to_idle(window).build(),
        }
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Distinct values within the window that fire.
    pub fn threshold(&self) -> u32 {
        u32::try_from(self.threshold).unwrap_or(u32::MAX)
    }

    /// Notes that `key` touched `value` at `now`; true when that reaches the threshold.
    pub fn hit(&self, key: K, value: &str, now: Instant) -> bool {
        let seen = self.keys.get_with(key, Arc::default);
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen
            .opened
            .is_none_or(|opened| now.saturating_duration_since(opened) >= self.window)
        {
            seen.opened = Some(now);
            seen.values.clear();
        }
        seen.values.insert(value.to_owned());
        if seen.values.len() >= self.threshold {
            *seen = Seen::default();
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
        // After a firing, the next value opens the new window: c and d fall in one.
        check(
            2,
            &[(0, "a"), (1, "b"), (50, "c"), (100, "d")],
            &[false, true, false, true],
        );
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
