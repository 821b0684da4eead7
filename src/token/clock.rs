//! An issuer's clock offset, estimated from the tokens it issues: `iat − now` on each token
//! verified from its signature (a cache hit says nothing new). A token first presented some time
//! after it was issued only lowers its sample, so the estimate is the largest sample of the
//! current and the previous minute: the freshest tokens speak for the issuer's clock. Positive
//! means the issuer's clock is ahead of ours. It only informs operators (R-C01); no decision
//! reads it, and it never holds anything of a token but two numbers.

use std::sync::Mutex;
use std::time::Instant;

/// The length of one sampling window, in seconds.
const WINDOW_SECS: u64 = 60;

/// The running estimate of one issuer's clock offset.
pub struct ClockOffset {
    started: Instant,
    windows: Mutex<Windows>,
}

/// The largest sample of the current window and of the one before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Windows {
    index: u64,
    current: Option<i64>,
    previous: Option<i64>,
}

impl Windows {
    /// Takes one sample seen in window `index`; returns the estimate after it.
    fn observe(&mut self, index: u64, sample: i64) -> i64 {
        if index != self.index {
            // The window just ended becomes the previous one; an older one says nothing now.
            self.previous = self
                .current
                .filter(|_| index == self.index.saturating_add(1));
            self.current = None;
            self.index = index;
        }
        let current = self.current.map_or(sample, |held| held.max(sample));
        self.current = Some(current);
        self.previous
            .map_or(current, |previous| previous.max(current))
    }
}

impl ClockOffset {
    /// An estimate with no samples yet.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            windows: Mutex::new(Windows::default()),
        }
    }

    /// Takes `iat − now` (seconds) of a token just verified; returns the offset estimate.
    pub fn observe(&self, issued_at: i64, now: i64) -> i64 {
        let index = self.started.elapsed().as_secs() / WINDOW_SECS;
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .observe(index, issued_at.saturating_sub(now))
    }
}

impl Default for ClockOffset {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `(window, sample)` pairs in order and checks the estimate after each.
    #[track_caller]
    fn check(samples: &[(u64, i64)], expected: &[i64]) {
        let mut windows = Windows::default();
        let estimates: Vec<i64> = samples
            .iter()
            .map(|&(index, sample)| windows.observe(index, sample))
            .collect();
        assert_eq!(estimates, expected, "{samples:?}");
    }

    #[test]
    fn the_freshest_token_of_two_windows_is_the_estimate() {
        // Tokens used late lower their samples; the largest stands.
        check(&[(0, 2), (0, -40), (0, 1)], &[2, 2, 2]);
        // The previous window still counts...
        check(&[(0, 2), (1, -40)], &[2, 2]);
        // ...but not one two windows back.
        check(&[(0, 2), (1, -40), (2, -30)], &[2, 2, -30]);
        check(&[(0, 2), (5, -3)], &[2, -3]);
        // An issuer behind us reads negative.
        check(&[(3, -90), (3, -95)], &[-90, -90]);
    }

    #[test]
    fn a_sample_is_iat_minus_now() {
        let offset = ClockOffset::new();
        assert_eq!(offset.observe(1_000_010, 1_000_000), 10);
        assert_eq!(offset.observe(i64::MIN, i64::MAX), 10);
    }
}
