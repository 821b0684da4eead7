//! A circuit breaker for a dependency the decision chain calls while a request waits (the
//! introspection endpoint, the shared DPoP replay store). After `THRESHOLD` consecutive
//! failures it opens: calls are refused at once — the request still fails closed, with the same
//! 503 — for a cool-down that doubles while the dependency keeps failing (up to `MAX_COOLDOWN`).
//! Then one call probes it (half-open); a success closes the breaker. An outage so costs each
//! request nothing instead of the whole timeout, and a recovering dependency is not hammered.
//! Written here rather than taken from a crate: the state is three fields, and the crates
//! available bring their own futures and clocks that the rest of phigate does not use.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

/// Consecutive failures that open the breaker.
pub const THRESHOLD: u32 = 5;
/// The first cool-down.
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(1);
/// The longest cool-down.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    cooldown: Duration,
    probing: bool,
}

/// One dependency's breaker; `open` reads 1 while calls are refused.
#[derive(Debug)]
pub struct Breaker {
    dependency: &'static str,
    state: Mutex<State>,
    open: Gauge,
}

/// Leave to make one call; a call dropped without an outcome (its request went away) counts
/// as a failure, so a probe can never hold the breaker half-open for good.
#[must_use]
pub struct Pass<'a> {
    breaker: &'a Breaker,
    settled: bool,
}

impl Pass<'_> {
    /// Records the call's outcome: `true` when the dependency answered.
    pub fn settle(mut self, answered: bool) {
        self.settled = true;
        self.breaker.outcome(answered, Instant::now());
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.outcome(false, Instant::now());
        }
    }
}

impl Breaker {
    /// A closed breaker for `dependency` (named in its log lines), reporting through `open`.
    pub fn new(dependency: &'static str, open: Gauge) -> Self {
        open.set(0);
        Self {
            dependency,
            state: Mutex::new(State {
                failures: 0,
                open_until: None,
                cooldown: FIRST_COOLDOWN,
                probing: false,
            }),
            open,
        }
    }

    /// Leave to call the dependency now, or `None` while the breaker is open.
    pub fn pass(&self) -> Option<Pass<'_>> {
        self.admit(Instant::now()).then_some(Pass {
            breaker: self,
            settled: false,
        })
    }

    fn admit(&self, now: Instant) -> bool {
        let mut state = self.lock();
        match state.open_until {
            None => true,
            Some(until) if now < until => false,
            // Cooled down: one probe at a time.
            Some(_) if state.probing => false,
            Some(_) => {
                state.probing = true;
                true
            }
        }
    }

    fn outcome(&self, answered: bool, now: Instant) {
        let mut state = self.lock();
        if answered {
            if state.open_until.is_some() {
                tracing::info!(
                    dependency = self.dependency,
                    "circuit closed: the dependency answers again"
                );
            }
            state.failures = 0;
            state.open_until = None;
            state.probing = false;
            state.cooldown = FIRST_COOLDOWN;
            self.open.set(0);
            return;
        }
        state.failures = state.failures.saturating_add(1);
        if state.probing {
            state.probing = false;
            state.cooldown = state.cooldown.saturating_mul(2).min(MAX_COOLDOWN);
        } else if state.failures < THRESHOLD || state.open_until.is_some() {
            return;
        } else {
            tracing::warn!(
                dependency = self.dependency,
                failures = state.failures,
                "circuit open: calls are refused at once until a probe succeeds"
            );
        }
        state.open_until = Some(now + state.cooldown);
        self.open.set(1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new("test", Gauge::default())
    }

    #[test]
    fn opens_after_consecutive_failures_and_a_success_resets_the_count() {
        let breaker = breaker();
        let now = Instant::now();
        for _ in 0..THRESHOLD - 1 {
            assert!(breaker.admit(now));
            breaker.outcome(false, now);
        }
        breaker.outcome(true, now);
        for _ in 0..THRESHOLD - 1 {
            breaker.outcome(false, now);
        }
        assert!(breaker.admit(now), "a success in between resets the count");
        breaker.outcome(false, now);
        assert!(!breaker.admit(now));
        assert_eq!(breaker.open.get(), 1);
        assert!(!breaker.admit(now + FIRST_COOLDOWN / 2));
    }

    #[test]
    fn after_the_cooldown_one_probe_decides_and_failing_probes_back_off() {
        let breaker = breaker();
        let mut now = Instant::now();
        for _ in 0..THRESHOLD {
            breaker.outcome(false, now);
        }
        let mut cooldown = FIRST_COOLDOWN;
        for _ in 0..8 {
            now += cooldown;
            assert!(breaker.admit(now), "the probe");
            assert!(!breaker.admit(now), "only one probe at a time");
            breaker.outcome(false, now);
            cooldown = (cooldown * 2).min(MAX_COOLDOWN);
            assert!(!breaker.admit(now + cooldown - Duration::from_millis(1)));
        }
        assert_eq!(cooldown, MAX_COOLDOWN);
        now += cooldown;
        assert!(breaker.admit(now));
        breaker.outcome(true, now);
        assert!(
            breaker.admit(now) && breaker.admit(now),
            "closed: every call passes"
        );
        assert_eq!(breaker.open.get(), 0);
    }

    #[test]
    fn a_pass_dropped_without_an_outcome_counts_as_a_failure() {
        let breaker = breaker();
        for _ in 0..THRESHOLD {
            drop(breaker.pass().unwrap());
        }
        assert!(breaker.pass().is_none());
    }
}
