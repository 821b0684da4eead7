//! Sliding-window counts per key, bounded: each key keeps at most `threshold` timestamps, a key
//! unseen for a whole window is forgotten, and past `max_keys` the least recently used keys go first, so
//! a flood of distinct addresses costs a fixed amount of memory. Only the monitor's one task
//! touches it, so the per-key lock is never contended.

use std::collections::VecDeque;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// Events per key over the last `window`.
pub struct SlidingWindow<K> {
    threshold: usize,
    window: Duration,
    keys: Cache<K, Arc<Mutex<VecDeque<Instant>>>>,
}

impl<K: Hash + Eq + Send + Sync + 'static> SlidingWindow<K> {
    /// Counts per key, firing at `threshold` events within `window`, for at most `max_keys` keys.
    pub fn new(threshold: u32, window: Duration, max_keys: u64) -> Self {
        Self {
            threshold: usize::try_from(threshold).unwrap_or(usize::MAX).max(1),
            window,
            keys: super::keyed_cache(max_keys).time_to_idle(window).build(),
        }
    }

    /// Counts one event for `key` at `now`; true when this event reaches the threshold. The
    /// key's count then starts again, so a steady offender fires once per `threshold` events
    /// rather than on every event after it.
    pub fn hit(&self, key: K, now: Instant) -> bool {
        let events = self.keys.get_with(key, Arc::default);
        let mut events = events.lock().unwrap_or_else(PoisonError::into_inner);
        while events
            .front()
            .is_some_and(|first| now.saturating_duration_since(*first) >= self.window)
        {
            events.pop_front();
        }
        events.push_back(now);
        if events.len() >= self.threshold {
            events.clear();
            return true;
        }
        false
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Events within the window that fire.
    pub fn threshold(&self) -> u32 {
        u32::try_from(self.threshold).unwrap_or(u32::MAX)
    }

    /// Keys tracked (after moka's pending evictions), for tests.
    #[cfg(test)]
    fn len(&self) -> u64 {
        self.keys.run_pending_tasks();
        self.keys.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    /// Feeds one key events at the given offsets (seconds) and checks which fire.
    #[track_caller]
    fn check(threshold: u32, offsets: &[u64], expected: &[bool]) {
        let window = SlidingWindow::new(threshold, WINDOW, 10);
        let start = Instant::now();
        let fired: Vec<bool> = offsets
            .iter()
            .map(|s| window.hit("k", start + Duration::from_secs(*s)))
            .collect();
        assert_eq!(
            fired, expected,
            "threshold {threshold}, offsets {offsets:?}"
        );
    }

    #[test]
    fn fires_at_the_threshold_within_the_window() {
        check(3, &[0, 1, 2], &[false, false, true]);
        // The first event slid out before the third arrived.
        check(3, &[0, 30, 60], &[false, false, false]);
        check(3, &[0, 30, 60, 61], &[false, false, false, true]);
        // Firing starts the count again.
        check(2, &[0, 1, 2, 3], &[false, true, false, true]);
        check(1, &[0, 0], &[true, true]);
    }

    #[test]
    fn keys_are_counted_apart() {
        let window = SlidingWindow::new(2, WINDOW, 10);
        let now = Instant::now();
        assert!(!window.hit("a", now));
        assert!(!window.hit("b", now));
        assert!(window.hit("a", now));
    }

    #[test]
    fn distinct_keys_never_grow_past_the_bound() {
        let window = SlidingWindow::new(5, WINDOW, 50);
        let now = Instant::now();
        for key in 0..5_000u32 {
            window.hit(key, now);
        }
        assert!(window.len() <= 50, "{} keys", window.len());
    }

    /// While the window is full of other keys, a new key's events still count: the newest
    /// offender reaches its threshold however many distinct keys came before it.
    #[test]
    fn a_full_window_still_counts_a_new_key() {
        let window = SlidingWindow::new(2, WINDOW, 50);
        let now = Instant::now();
        for key in 0..2_000u32 {
            assert!(!window.hit(key, now), "{key}");
            window.keys.run_pending_tasks();
            assert!(window.hit(key, now), "{key}: its second event fires");
        }
        assert!(window.len() <= 50);
    }
}
