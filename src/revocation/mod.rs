//! Revocation: every verified token is checked against every configured source — an HTTP(S)
//! list polled with ETag, a local file, and a Redis set kept current by pub/sub — on every
//! request, so a token cached as valid is refused on its next request once it is listed. Each
//! source has a staleness bound: past it, requests are refused with 503 and `/readyz` reports
//! not ready (fail closed), until the source answers again.

mod list;
mod sources;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use self::list::{Entry, ListError, MAX_ENTRIES, RevocationSet};
pub use self::sources::SourceProblem;
use crate::config::{RevocationLocation, RevocationSource};
use crate::telemetry::Metrics;
use crate::token::{TokenDigest, VerifiedToken};

/// Why a token failed the revocation check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationFault {
    /// A source lists the token.
    Revoked,
    /// A source is past its staleness bound: phigate cannot decide.
    Stale,
}

/// One source's current list and freshness.
pub struct SourceState {
    label: String,
    max_stale: Duration,
    set: RwLock<RevocationSet>,
    fresh_at: Mutex<Option<Instant>>,
}

impl SourceState {
    fn new(label: String, max_stale: Duration) -> Self {
        Self {
            label,
            max_stale,
            set: RwLock::new(RevocationSet::default()),
            fresh_at: Mutex::new(None),
        }
    }

    /// Whether the list was confirmed current within the staleness bound (monotonic clock).
    fn is_fresh(&self) -> bool {
        self.age().is_some_and(|age| age <= self.max_stale)
    }

    fn age(&self) -> Option<Duration> {
        self.fresh_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|at| at.elapsed())
    }

    /// Replaces the whole list and marks it current.
    fn replace(&self, set: RevocationSet) {
        *self
            .set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = set;
        self.mark_fresh();
    }

    /// Adds one entry (a pub/sub message) without changing freshness.
    fn insert(&self, entry: Entry) {
        self.set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(entry, unix_now());
    }

    fn mark_fresh(&self) {
        *self
            .fresh_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    }

    fn revokes(&self, token: &VerifiedToken, digest: &TokenDigest) -> bool {
        self.set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .revokes(token, digest)
    }

    fn len(&self) -> usize {
        self.set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// All configured sources.
pub struct Revocation {
    sources: Vec<(RevocationSource, Arc<sources::Connector>, Arc<SourceState>)>,
    max_lifetime: i64,
    metrics: Arc<Metrics>,
}

impl Revocation {
    /// Sources from configuration, each with its client built (every problem reported); nothing
    /// is read until [`Revocation::spawn`].
    pub fn new(
        configs: &[RevocationSource],
        max_lifetime: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Vec<SourceProblem>> {
        let mut sources = Vec::new();
        let mut problems = Vec::new();
        for config in configs {
            let label = config.location.label();
            // Present at zero from the start, so an alert on failed refreshes sees the first.
            metrics.init_revocation_source(&label);
            match sources::connect(&config.location) {
                Ok(connector) => sources.push((
                    config.clone(),
                    Arc::new(connector),
                    Arc::new(SourceState::new(label, config.max_stale)),
                )),
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            sources,
            max_lifetime: i64::try_from(max_lifetime.as_secs()).unwrap_or(i64::MAX),
            metrics,
        })
    }

    /// Starts one background task per source.
    pub fn spawn(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.sources
            .iter()
            .map(|(config, connector, state)| {
                let state = Arc::clone(state);
                let connector = Arc::clone(connector);
                let config = config.clone();
                let metrics = Arc::clone(&self.metrics);
                let max_lifetime = self.max_lifetime;
                tokio::spawn(async move {
                    sources::run(config, connector, state, metrics, max_lifetime).await
                })
            })
            .collect()
    }

    /// Refuses a revoked token, and any token while a source is stale.
    pub fn check(
        &self,
        token: &VerifiedToken,
        digest: &TokenDigest,
    ) -> Result<(), RevocationFault> {
        for (_, _, state) in &self.sources {
            if !state.is_fresh() {
                return Err(RevocationFault::Stale);
            }
            if state.revokes(token, digest) {
                return Err(RevocationFault::Revoked);
            }
        }
        Ok(())
    }

    /// Ready when every source is fresh.
    pub fn is_ready(&self) -> bool {
        self.sources.iter().all(|(_, _, state)| state.is_fresh())
    }

    /// Publishes list ages and sizes (called at scrape time).
    pub fn publish_metrics(&self) {
        for (_, _, state) in &self.sources {
            let age = state.age().map_or(f64::INFINITY, |age| age.as_secs_f64());
            self.metrics
                .set_revocation_list(&state.label, age, state.len());
        }
    }
}

/// Seconds since the epoch (wall clock, for token times).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A short description of a location for log lines.
fn describe(location: &RevocationLocation) -> String {
    location.label()
}
