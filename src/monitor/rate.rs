//! Request rates per key against an absolute ceiling and against the key's own baseline: an
//! exponentially weighted moving average (EWMA) of its requests per interval. A key fires when
//! its current interval passes the ceiling, or passes `factor` times its baseline once the
//! baseline has seen `WARMUP` intervals; at most once per interval. The arithmetic ([`Baseline`],
//! [`SpikeLimit`]) is pure and shared by both ways of counting: [`RateWatch`] in this process
//! (one small record per key, bounded by `max_keys` and forgotten after [`HISTORY`] idle
//! intervals), and the shared interval buckets in Redis, whose last [`HISTORY`] closed counts
//! give every replica the same baseline.

use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// Weight of the newest interval in the baseline.
const ALPHA: f64 = 0.3;
/// Intervals a baseline must have seen before it is trusted.
const WARMUP: u32 = 6;
/// Closed intervals a baseline remembers: a key idle for this many starts again.
pub const HISTORY: u32 = 10;

/// A key's EWMA of requests per closed interval, and how many intervals it has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Baseline {
    mean: f64,
    intervals: u32,
}

impl Baseline {
    /// The baseline after closed interval counts, oldest first (`None`: no request then). The
    /// key's history starts at its first request, so empty intervals before it do not count.
    pub fn from_buckets(buckets: &[Option<u64>]) -> Self {
        buckets
            .iter()
            .skip_while(|count| count.is_none())
            .fold(Self::default(), |baseline, count| {
                baseline.close(count.unwrap_or(0))
            })
    }

    /// The baseline after one more interval with `count` requests.
    fn close(self, count: u64) -> Self {
        #[expect(
            clippy::cast_precision_loss,
            reason = "request counts stay far below 2^52"
        )]
        let count = count as f64;
        Self {
            mean: if self.intervals == 0 {
                count
            } else {
                ALPHA * count + (1.0 - ALPHA) * self.mean
            },
            intervals: self.intervals.saturating_add(1),
        }
    }

    /// The baseline after `intervals` more intervals without a request (as many `close(0)`s).
    fn idle(self, intervals: u32) -> Self {
        Self {
            mean: self.mean * (1.0 - ALPHA).powi(i32::try_from(intervals).unwrap_or(i32::MAX)),
            intervals: self.intervals.saturating_add(intervals),
        }
    }
}

/// When an interval's count is a spike.
#[derive(Debug, Clone, Copy)]
pub struct SpikeLimit {
    ceiling: u64,
    factor: f64,
}

impl SpikeLimit {
    /// Above `ceiling` requests, or above `factor` times a trusted baseline.
    pub fn new(ceiling: u64, factor: u32) -> Self {
        Self {
            ceiling,
            factor: f64::from(factor),
        }
    }

    /// Whether `count` requests in the current interval are a spike over `baseline`.
    fn exceeded(self, baseline: Baseline, count: u64) -> bool {
        #[expect(
            clippy::cast_precision_loss,
            reason = "request counts stay far below 2^52"
        )]
        let requests = count as f64;
        // A baseline under one request per interval would make any traffic a spike.
        let spike = baseline.intervals >= WARMUP && requests > self.factor * baseline.mean.max(1.0);
        count > self.ceiling || spike
    }

    /// Whether the request that made the interval's count `count` is the one that first made
    /// it a spike: counts only grow within an interval, so exactly one request per interval
    /// crosses, whichever process counted it.
    pub fn crossed(self, baseline: Baseline, count: u64) -> bool {
        count > 0 && self.exceeded(baseline, count) && !self.exceeded(baseline, count - 1)
    }
}

/// A key's current interval and baseline.
#[derive(Debug)]
struct Rate {
    started: Instant,
    count: u64,
    baseline: Baseline,
}

impl Rate {
    /// Closes every interval that ended before `now`; empty ones pull the baseline down.
    fn roll(&mut self, now: Instant, interval: Duration) {
        let elapsed = now.saturating_duration_since(self.started);
        let ended = elapsed.as_nanos() / interval.as_nanos().max(1);
        let Some(empty) = ended.checked_sub(1) else {
            return;
        };
        let empty = u32::try_from(empty).unwrap_or(u32::MAX);
        self.baseline = self.baseline.close(self.count).idle(empty);
        self.started += interval * empty.saturating_add(1);
        self.count = 0;
    }
}

/// Rates per key, counted in this process.
pub struct RateWatch<K> {
    interval: Duration,
    limit: SpikeLimit,
    keys: Cache<K, Arc<Mutex<Rate>>>,
}

impl<K: Hash + Eq + Send + Sync + 'static> RateWatch<K> {
    /// Rates per `interval`, firing past `limit`, for at most `max_keys` keys.
    pub fn new(interval: Duration, limit: SpikeLimit, max_keys: u64) -> Self {
        Self {
            interval,
            limit,
            keys: super::keyed_cache(max_keys)
                .time_to_idle(interval.saturating_mul(HISTORY))
                .build(),
        }
    }

    /// The counting interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// When a count is a spike.
    pub fn limit(&self) -> SpikeLimit {
        self.limit
    }

    /// Counts one request for `key` at `now`; true when the key's rate just became too high.
    pub fn hit(&self, key: K, now: Instant) -> bool {
        let rate = self.keys.get_with(key, || {
            Arc::new(Mutex::new(Rate {
                started: now,
                count: 0,
                baseline: Baseline::default(),
            }))
        });
        let mut rate = rate.lock().unwrap_or_else(PoisonError::into_inner);
        rate.roll(now, self.interval);
        rate.count += 1;
        self.limit.crossed(rate.baseline, rate.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Feeds `per_interval[i]` requests in interval `i`, counted both in this process and as
    /// shared buckets would be, and checks that both fire in the `expected` intervals.
    #[track_caller]
    fn check(ceiling: u64, factor: u32, per_interval: &[u64], expected: &[usize]) {
        let limit = SpikeLimit::new(ceiling, factor);
        let watch = RateWatch::new(SECOND, limit, 10);
        let start = Instant::now();
        let (mut local, mut shared) = (Vec::new(), Vec::new());
        for (i, requests) in per_interval.iter().enumerate() {
            let at = start + SECOND * u32::try_from(i).unwrap() + Duration::from_millis(1);
            // Redis holds no bucket for an interval without requests.
            let buckets: Vec<Option<u64>> = (0..HISTORY as usize)
                .rev()
                .map(|back| i.checked_sub(back + 1).map(|j| per_interval[j]))
                .map(|count| count.filter(|c| *c > 0))
                .collect();
            let baseline = Baseline::from_buckets(&buckets);
            for count in 1..=*requests {
                if watch.hit("k", at) {
                    local.push(i);
                }
                if limit.crossed(baseline, count) {
                    shared.push(i);
                }
            }
        }
        assert_eq!(local, expected, "local, {per_interval:?}");
        assert_eq!(shared, expected, "shared, {per_interval:?}");
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
        // The history starts at the key's first request, not at the first interval.
        check(100, 3, &[0, 0, 0, 4, 4, 4, 4, 13], &[]);
        check(100, 3, &[0, 0, 4, 4, 4, 4, 4, 4, 13], &[8]);
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
    fn a_baseline_is_the_ewma_of_the_buckets_since_the_first_request() {
        let baseline = Baseline::from_buckets(&[None, Some(10), None, Some(4)]);
        assert_eq!(baseline.intervals, 3);
        // 10, then 0.7 × 10 = 7, then 0.3 × 4 + 0.7 × 7 = 6.1.
        assert!((baseline.mean - 6.1).abs() < 1e-9, "{baseline:?}");
        assert_eq!(Baseline::from_buckets(&[None, None]), Baseline::default());
        let (closed, idle) = (
            Baseline::from_buckets(&[Some(5), None, None]),
            Baseline::from_buckets(&[Some(5)]).idle(2),
        );
        assert_eq!(closed.intervals, idle.intervals);
        assert!(
            (closed.mean - idle.mean).abs() < 1e-9,
            "{closed:?} {idle:?}"
        );
    }

    #[test]
    fn distinct_keys_never_grow_past_the_bound() {
        let watch = RateWatch::new(SECOND, SpikeLimit::new(10, 10), 50);
        let now = Instant::now();
        for key in 0..5_000u32 {
            watch.hit(key, now);
        }
        watch.keys.run_pending_tasks();
        assert!(watch.keys.entry_count() <= 50);
    }
}
