//! Request rates per key against an absolute ceiling and against the key's own baseline: an
//! exponentially weighted moving average (EWMA) of its requests per interval. A key fires when
//! its current interval passes the ceiling, or passes `factor` times its baseline once the
//! baseline has seen `WARMUP` intervals; at most once per interval. State is one small record
//! per key, bounded by `max_keys` and forgotten after ten idle intervals.

use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// Weight of the newest interval in the baseline.
const ALPHA: f64 = 0.3;
/// Intervals a baseline must have seen before it is trusted.
const WARMUP: u32 = 6;

/// A key's current interval and baseline.
#[derive(Debug)]
struct Rate {
    started: Instant,
    count: u64,
    baseline: f64,
    intervals: u32,
    fired: bool,
}

impl Rate {
    /// Closes every interval that ended before `now`; empty ones pull the baseline down.
    fn roll(&mut self, now: Instant, interval: Duration) {
        let elapsed = now.saturating_duration_since(self.started);
        let ended = elapsed.as_nanos() / interval.as_nanos().max(1);
        if ended == 0 {
            return;
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "request counts stay far below 2^52"
        )]
        let count = self.count as f64;
        self.baseline = if self.intervals == 0 {
            count
        } else {
            ALPHA * count + (1.0 - ALPHA) * self.baseline
        };
        let empty = i32::try_from(ended - 1).unwrap_or(i32::MAX);
        self.baseline *= (1.0 - ALPHA).powi(empty);
        self.intervals = self
            .intervals
            .saturating_add(u32::try_from(ended).unwrap_or(u32::MAX));
        self.started += interval * u32::try_from(ended).unwrap_or(u32::MAX);
        self.count = 0;
        self.fired = false;
    }
}

/// Rates per key.
pub struct RateWatch<K> {
    interval: Duration,
    ceiling: u64,
    factor: f64,
    keys: Cache<K, Arc<Mutex<Rate>>>,
}

impl<K: Hash + Eq + Send + Sync + 'static> RateWatch<K> {
    /// Rates per `interval`, firing above `ceiling` or `factor` times the baseline.
    pub fn new(interval: Duration, ceiling: u64, factor: u32, max_keys: u64) -> Self {
        Self {
            interval,
            ceiling,
            factor: f64::from(factor),
            keys: Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(interval.saturating_mul(10))
                .build(),
        }
    }

    /// Counts one request for `key` at `now`; true when the key's rate just became too high.
    pub fn hit(&self, key: K, now: Instant) -> bool {
        let rate = self.keys.get_with(key, || {
            Arc::new(Mutex::new(Rate {
                started: now,
                count: 0,
                baseline: 0.0,
                intervals: 0,
                fired: false,
            }))
        });
        let mut rate = rate.lock().unwrap_or_else(PoisonError::into_inner);
        rate.roll(now, self.interval);
        rate.count += 1;
        #[expect(
            clippy::cast_precision_loss,
            reason = "request counts stay far below 2^52"
        )]
        let count = rate.count as f64;
        // A baseline under one request per interval would make any traffic a spike.
        let spike = rate.intervals >= WARMUP && count > self.factor * rate.baseline.max(1.0);
        if rate.fired || !(rate.count > self.ceiling || spike) {
            return false;
        }
        rate.fired = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Feeds `per_interval[i]` requests in interval `i` and returns the intervals that fired.
    #[track_caller]
    fn check(ceiling: u64, factor: u32, per_interval: &[u64], expected: &[usize]) {
        let watch = RateWatch::new(SECOND, ceiling, factor, 10);
        let start = Instant::now();
        let mut fired = Vec::new();
        for (i, requests) in per_interval.iter().enumerate() {
            let at = start + SECOND * u32::try_from(i).unwrap() + Duration::from_millis(1);
            for _ in 0..*requests {
                if watch.hit("k", at) {
                    fired.push(i);
                }
            }
        }
        assert_eq!(fired, expected, "{per_interval:?}");
    }

    #[test]
    fn fires_above_the_ceiling_or_far_above_the_baseline_once_per_interval() {
        check(5, 10, &[6], &[0]);
        check(5, 10, &[5, 5, 5], &[]);
        check(100, 3, &[4, 4, 4, 4, 4, 4, 4], &[]);
        // After warm-up, 13 is more than 3 × a baseline of 4.
        check(100, 3, &[4, 4, 4, 4, 4, 4, 13], &[6]);
        // Before warm-up the baseline is not trusted.
        check(100, 3, &[4, 13], &[]);
        // Idle intervals lower the baseline, but never below one request per interval.
        check(100, 3, &[4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 3], &[]);
        check(
            100,
            3,
            &[4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 4],
            &[14],
        );
        check(8, 100, &[20, 20], &[0, 1]);
    }

    #[test]
    fn distinct_keys_never_grow_past_the_bound() {
        let watch = RateWatch::new(SECOND, 10, 10, 50);
        let now = Instant::now();
        for key in 0..5_000u32 {
            watch.hit(key, now);
        }
        watch.keys.run_pending_tasks();
        assert!(watch.keys.entry_count() <= 50);
    }
}
