//! Metrics and the per-request log line. Every metric name phigate exports is in this file, so
//! label cardinality can be reviewed in one place: labels carry only configuration data (rule
//! names, issuer URLs) and fixed reason codes — never a token, subject, patient, IP or raw path.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub mod log;

/// Labels of one decision: which rule, allowed or denied, and why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// Policy rule name, or `none` when no rule matched.
    pub rule: String,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// A documented reason code (`ok` for allowed requests).
    pub reason: &'static str,
}

/// Labels naming one configured issuer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabels {
    /// The issuer's configured `iss` value.
    pub issuer: String,
}

/// Labels of one JWKS fetch.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    /// The issuer's configured `iss` value.
    pub issuer: String,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Labels of one upstream exchange.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// `ok`, `unreachable` or `timed_out`.
    pub outcome: &'static str,
}

/// Every metric phigate exports, registered once at start.
pub struct Metrics {
    registry: Registry,
    requests: Family<DecisionLabels, Counter>,
    request_duration: Family<DecisionLabels, Histogram, fn() -> Histogram>,
    upstream_duration: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    jwks_fetches: Family<FetchLabels, Counter>,
    jwks_keys_loaded: Family<IssuerLabels, Gauge>,
    jwks_keys_rejected: Family<IssuerLabels, Counter>,
    jwks_key_age: Family<IssuerLabels, Gauge<f64, AtomicU64>>,
    token_cache_hits: Counter,
    token_cache_misses: Counter,
    policy_reloads: Counter,
    policy_reload_failures: Counter,
    revocation_refreshes: Family<SourceResultLabels, Counter>,
    revocation_age: Family<SourceLabels, Gauge<f64, AtomicU64>>,
    revocation_entries: Family<SourceLabels, Gauge>,
    protocol_errors: Family<ProtocolErrorLabels, Counter>,
}

/// Labels of a connection refused by the HTTP layer before any request was decided.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolErrorLabels {
    /// One of [`PROTOCOL_ERROR_KINDS`].
    pub kind: &'static str,
}

/// `malformed` (framing, syntax), `too_large` (head over the limit), `header_timeout`.
pub const PROTOCOL_ERROR_KINDS: [&str; 3] = ["malformed", "too_large", "header_timeout"];

/// Labels of one revocation refresh.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceResultLabels {
    /// The revocation source.
    pub source: String,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Labels naming one revocation source (its configured kind and name, no credentials).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// e.g. `redis:phigate:revoked`, `file:revoked.json`.
    pub source: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~26 s: covers a cached-token decision and a slow FHIR search.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Builds and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("phigate");
        let metrics = Self {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            upstream_duration: Family::new_with_constructor(latency_histogram),
            jwks_fetches: Family::default(),
            jwks_keys_loaded: Family::default(),
            jwks_keys_rejected: Family::default(),
            jwks_key_age: Family::default(),
            token_cache_hits: Counter::default(),
            token_cache_misses: Counter::default(),
            policy_reloads: Counter::default(),
            policy_reload_failures: Counter::default(),
            revocation_refreshes: Family::default(),
            revocation_age: Family::default(),
            revocation_entries: Family::default(),
            protocol_errors: Family::default(),
            registry: Registry::default(),
        };
        // prometheus-client appends `_total` to counters itself.
        registry.register(
            "decisions",
            "Requests decided, by rule, decision and reason",
            metrics.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head",
            metrics.request_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time the upstream took to answer with a response head",
            metrics.upstream_duration.clone(),
        );
        registry.register(
            "jwks_fetches",
            "JWKS fetches by issuer and result",
            metrics.jwks_fetches.clone(),
        );
        registry.register(
            "jwks_keys_loaded",
            "Usable verification keys currently loaded per issuer",
            metrics.jwks_keys_loaded.clone(),
        );
        registry.register(
            "jwks_keys_rejected",
            "JWKS entries refused at load (private members, weak or malformed keys), each counted once",
            metrics.jwks_keys_rejected.clone(),
        );
        registry.register(
            "jwks_key_age_seconds",
            "Seconds since the issuer's keys were last fetched successfully",
            metrics.jwks_key_age.clone(),
        );
        registry.register(
            "token_cache_hits",
            "Verified-token cache hits",
            metrics.token_cache_hits.clone(),
        );
        registry.register(
            "token_cache_misses",
            "Verified-token cache misses",
            metrics.token_cache_misses.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reloads that swapped in a new policy",
            metrics.policy_reloads.clone(),
        );
        registry.register(
            "policy_reload_failures",
            "Policy reloads refused because the new file did not compile",
            metrics.policy_reload_failures.clone(),
        );
        registry.register(
            "revocation_refreshes",
            "Revocation list refreshes by source and result",
            metrics.revocation_refreshes.clone(),
        );
        registry.register(
            "revocation_list_age_seconds",
            "Seconds since the source's list was last confirmed current",
            metrics.revocation_age.clone(),
        );
        registry.register(
            "revocation_entries",
            "Entries held per revocation source",
            metrics.revocation_entries.clone(),
        );
        registry.register(
            "client_protocol_errors",
            "Requests the HTTP layer refused before phigate decided anything (client errors)",
            metrics.protocol_errors.clone(),
        );
        // Present at zero from the start, so an alert can watch the rate.
        for kind in PROTOCOL_ERROR_KINDS {
            drop(
                metrics
                    .protocol_errors
                    .get_or_create(&ProtocolErrorLabels { kind }),
            );
        }
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts a request the HTTP layer refused (hyper answered 400/431 itself, or timed out).
    pub fn record_protocol_error(&self, kind: &'static str) {
        self.protocol_errors
            .get_or_create(&ProtocolErrorLabels { kind })
            .inc();
    }

    /// Counts one decided request and its latency.
    pub fn record_decision(&self, labels: &DecisionLabels, seconds: f64) {
        self.requests.get_or_create(labels).inc();
        self.request_duration.get_or_create(labels).observe(seconds);
    }

    /// Records how long the upstream took, by outcome.
    pub fn record_upstream(&self, outcome: &'static str, seconds: f64) {
        self.upstream_duration
            .get_or_create(&UpstreamLabels { outcome })
            .observe(seconds);
    }

    /// Counts one JWKS fetch.
    pub fn record_jwks_fetch(&self, issuer: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.jwks_fetches
            .get_or_create(&FetchLabels {
                issuer: issuer.to_owned(),
                result,
            })
            .inc();
    }

    /// Sets the number of usable keys for an issuer.
    pub fn set_jwks_keys_loaded(&self, issuer: &str, count: usize) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.jwks_keys_loaded
            .get_or_create(&issuer_labels(issuer))
            .set(count);
    }

    /// Makes an issuer's rejected-keys counter present at zero.
    pub fn init_jwks_keys_rejected(&self, issuer: &str) {
        // Creating the series is the point; the read guard is released at once.
        drop(
            self.jwks_keys_rejected
                .get_or_create(&issuer_labels(issuer)),
        );
    }

    /// Counts JWKS entries refused at load.
    pub fn record_jwks_keys_rejected(&self, issuer: &str, count: u64) {
        self.jwks_keys_rejected
            .get_or_create(&issuer_labels(issuer))
            .inc_by(count);
    }

    /// Sets the age of an issuer's key set.
    pub fn set_jwks_key_age(&self, issuer: &str, seconds: f64) {
        self.jwks_key_age
            .get_or_create(&issuer_labels(issuer))
            .set(seconds);
    }

    /// Counts a verified-token cache lookup.
    pub fn record_token_cache(&self, hit: bool) {
        if hit {
            self.token_cache_hits.inc();
        } else {
            self.token_cache_misses.inc();
        }
    }

    /// Counts a policy reload by outcome.
    pub fn record_policy_reload(&self, swapped: bool) {
        if swapped {
            self.policy_reloads.inc();
        } else {
            self.policy_reload_failures.inc();
        }
    }

    /// Counts a revocation refresh by source and outcome.
    pub fn record_revocation_refresh(&self, source: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.revocation_refreshes
            .get_or_create(&SourceResultLabels {
                source: source.to_owned(),
                result,
            })
            .inc();
    }

    /// Sets a revocation source's list age and size.
    pub fn set_revocation_list(&self, source: &str, age_seconds: f64, entries: usize) {
        let labels = SourceLabels {
            source: source.to_owned(),
        };
        self.revocation_age.get_or_create(&labels).set(age_seconds);
        self.revocation_entries
            .get_or_create(&labels)
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn issuer_labels(issuer: &str) -> IssuerLabels {
    IssuerLabels {
        issuer: issuer.to_owned(),
    }
}
