//! Reconnection delays for long-lived Redis sessions (the revocation subscription, the shared
//! block list): exponential from 250 ms to 8 s while sessions keep failing, and back to the
//! first delay once a session connects — so one outage does not leave every later hiccup
//! waiting the longest delay.

use std::time::Duration;

/// The first delay.
const FIRST: Duration = Duration::from_millis(250);
/// Doublings before the delay stops growing (250 ms × 2⁵ = 8 s).
const MAX_DOUBLINGS: u32 = 5;

/// Consecutive failed sessions.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// A session connected: the next failure starts from the first delay again.
    pub fn connected(&mut self) {
        self.failures = 0;
    }

    /// The delay before the next attempt after a session ended, counting it as a failure.
    pub fn next_delay(&mut self) -> Duration {
        let delay = FIRST * (1u32 << self.failures.min(MAX_DOUBLINGS));
        self.failures = self.failures.saturating_add(1);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_a_cap_and_start_over_after_a_connection() {
        let mut backoff = Backoff::default();
        let delays: Vec<u128> = (0..8).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [250, 500, 1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
        backoff.connected();
        assert_eq!(backoff.next_delay(), FIRST);
    }
}
