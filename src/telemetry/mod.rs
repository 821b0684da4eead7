//! Metrics and the per-request log line. Every metric name phigate exports is in this file (the
//! standard `process_*` ones in `process.rs`), so label cardinality can be reviewed in one place:
//! labels carry only configuration data (rule names, issuer URLs) and fixed reason codes — never
//! a token, subject, patient, IP or raw path. Series whose labels are known at start are present
//! at zero from the start, so a rate or an alert works before the first event.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::tls::HandshakeFailure;

pub mod log;
mod process;

/// Labels of one decision: which rule, allowed or denied, and why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// Policy rule name, or `none` when no rule matched.
    pub rule: RuleName,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// A documented reason code (`ok` for allowed requests).
    pub reason: &'static str,
}

/// A rule's name as a label value, shared with the policy rather than copied per request.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RuleName(pub Arc<str>);

impl RuleName {
    /// The label of a request no rule matched.
    pub fn none() -> Self {
        static NONE: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
        Self(Arc::clone(NONE.get_or_init(|| Arc::from("none"))))
    }
}

impl EncodeLabelValue for RuleName {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

/// Labels naming one configured issuer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabels {
    /// The issuer's configured `iss` value.
    pub issuer: String,
}

/// Labels of a dependency behind a circuit breaker.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabels {
    /// `introspection` or `dpop_replay_store`.
    pub dependency: &'static str,
    /// The issuer whose endpoint it is (empty for a store shared by all).
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
    /// One of [`UPSTREAM_OUTCOMES`].
    pub outcome: &'static str,
}

/// How an upstream exchange ended: an answer, no connection, no answer in time, or an answer
/// whose framing cannot be trusted (`Content-Length` with `Transfer-Encoding`).
pub const UPSTREAM_OUTCOMES: [&str; 4] = ["ok", "unreachable", "timed_out", "malformed"];

/// Labels of an upstream answer whose body failed after its head arrived.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamBodyLabels {
    /// One of [`UPSTREAM_BODY_FAILURES`].
    pub kind: &'static str,
}

/// `timed_out`: `upstream.body_timeout` or `body_idle_timeout` passed; `broken`: the body ended
/// early or its framing broke (a reset, a bad chunk).
pub const UPSTREAM_BODY_FAILURES: [&str; 2] = ["timed_out", "broken"];

/// Labels of a connection phigate closed on its own account.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionClosedLabels {
    /// One of [`CONNECTION_CLOSE_REASONS`].
    pub reason: &'static str,
}

/// `first_request_timeout`: no complete request head within `listen.first_request_timeout`;
/// `over_capacity`: `listen.max_connections` were already open; `address_over_capacity`:
/// `listen.max_connections_per_address` were already open from the client's address;
/// `idle_timeout` / `max_age`: closed, once its requests finished, for `listen.idle_timeout`
/// without a new request or past `listen.max_connection_age`; `proxy_header_invalid` /
/// `proxy_header_timeout`: a trusted load balancer's connection (`listen.proxy_protocol`) that
/// did not start with a well-formed PROXY header, or not within `listen.handshake_timeout`.
pub const CONNECTION_CLOSE_REASONS: [&str; 7] = [
    "first_request_timeout",
    "over_capacity",
    "address_over_capacity",
    "idle_timeout",
    "max_age",
    "proxy_header_invalid",
    "proxy_header_timeout",
];

/// Labels of one upstream response.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusClassLabels {
    /// `1xx` … `5xx`, or `other` for a status of 600 or more.
    pub class: &'static str,
}

/// The status classes present at zero from the start.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Labels of one failed TLS handshake.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeFailureLabels {
    /// A [`HandshakeFailure`] reason.
    pub reason: &'static str,
}

/// Labels of a certificate phigate holds or sees, or of a part of the listener's TLS material.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsNameLabels {
    /// `listener`, `client_ca`, `upstream` for certificates; `listener`, `client_ca`,
    /// `client_crl` for reloads.
    pub name: &'static str,
}

/// Labels naming one client CRL source (its configured file name or URL host and path).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CrlSourceLabels {
    /// e.g. `file:clients.crl`, `http:pki.example/clients.crl`.
    pub source: String,
}

/// Labels of an emergency (break-glass) access.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakGlassLabels {
    /// The break-glass rule that granted it.
    pub rule: String,
}

/// Labels naming the running build.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Every metric phigate exports, registered once at start.
pub struct Metrics {
    registry: Registry,
    requests: Family<DecisionLabels, Counter>,
    request_duration: Family<DecisionLabels, Histogram, LatencyBuckets>,
    requests_in_flight: Gauge,
    upstream_duration: Family<UpstreamLabels, Histogram, LatencyBuckets>,
    upstream_responses: Family<StatusClassLabels, Counter>,
    upstream_body_failures: Family<UpstreamBodyLabels, Counter>,
    tls_handshake_failures: Family<HandshakeFailureLabels, Counter>,
    connections_open: Gauge,
    connections_closed: Family<ConnectionClosedLabels, Counter>,
    jwks_fetches: Family<FetchLabels, Counter>,
    jwks_keys_loaded: Family<IssuerLabels, Gauge>,
    jwks_keys_rejected: Family<IssuerLabels, Counter>,
    jwks_key_age: Family<IssuerLabels, Gauge<f64, AtomicU64>>,
    issuer_metadata_failures: Family<IssuerLabels, Counter>,
    issuer_metadata_age: Family<IssuerLabels, Gauge<f64, AtomicU64>>,
    issuer_clock_offset: Family<IssuerLabels, Gauge>,
    token_cache_hits: Counter,
    token_cache_misses: Counter,
    policy_reloads: Counter,
    policy_reload_failures: Counter,
    revocation_refreshes: Family<SourceResultLabels, Counter>,
    revocation_age: Family<SourceLabels, Gauge<f64, AtomicU64>>,
    revocation_entries: Family<SourceLabels, Gauge>,
    protocol_errors: Family<ProtocolErrorLabels, Counter>,
    ready: Gauge,
    certificate_expiry: Family<TlsNameLabels, Gauge>,
    tls_reloads: Family<TlsNameLabels, Counter>,
    tls_reload_failures: Family<TlsNameLabels, Counter>,
    crl_age: Family<CrlSourceLabels, Gauge>,
    crl_stale: Family<CrlSourceLabels, Gauge>,
    break_glass: Family<BreakGlassLabels, Counter>,
    audit_queue_depth: Gauge,
    audit_records: Counter,
    audit_refused: Counter,
    audit_dropped: Counter,
    audit_write_errors: Counter,
    detector_firings: Family<DetectorLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    monitor_dropped: Counter,
    circuit_open: Family<DependencyLabels, Gauge>,
    log_dropped: Counter,
}

/// Labels of one detector firing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DetectorLabels {
    /// One of [`DETECTORS`].
    pub detector: &'static str,
}

/// Labels of one automatic-response action.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// One of [`ACTIONS`].
    pub action: &'static str,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Every detector the monitor runs, so each reads 0 before it first fires (`break_glass`: an
/// emergency-access grant, always alerted when a webhook is configured).
pub const DETECTORS: [&str; 7] = [
    "repeated_failures",
    "refused_token_reuse",
    "traffic_spike",
    "bulk_access",
    "new_country",
    "impossible_travel",
    "break_glass",
];
/// Every action a detector can take.
pub const ACTIONS: [&str; 5] = ["log", "alert", "block", "reauthenticate", "revoke"];

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

/// The shortest wait the top finite latency bucket must exceed, whatever the configuration.
const LATENCY_FLOOR: Duration = Duration::from_secs(60);

/// Latency histogram bounds: doubling from 100 µs (a cached-token decision) until one exceeds
/// both a minute and `longest`, the longest a request can wait on configured timers. A request
/// that hits its timeout then lands in a finite bucket rather than only in `+Inf`, so quantiles
/// near the timeout stay readable.
#[derive(Clone, Debug)]
struct LatencyBuckets(Arc<[f64]>);

impl LatencyBuckets {
    fn past(longest: Duration) -> Self {
        let top = longest.max(LATENCY_FLOOR).as_secs_f64();
        let mut bounds = vec![0.0001_f64];
        while bounds.last().is_some_and(|&bound| bound <= top) {
            bounds.push(bounds[bounds.len() - 1] * 2.0);
        }
        Self(bounds.into())
    }
}

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// A request counted in `phigate_requests_in_flight` until this is dropped: when its response
/// head is ready, or when the client goes away and the request's future is dropped.
#[must_use = "the request stops counting as in flight when this is dropped"]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A client connection counted in `phigate_connections_open` until this is dropped.
#[must_use = "the connection stops counting as open when this is dropped"]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The two text formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// OpenMetrics 1.0 text, for a scraper that asks for it (Prometheus does).
    OpenMetrics,
    /// The Prometheus text format 0.0.4, for everything else (curl, older scrapers).
    PrometheusText,
}

impl Exposition {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Builds and registers every metric, with latency buckets up to at least a minute.
    pub fn new() -> Self {
        Self::with_longest_wait(Duration::ZERO)
    }

    /// Builds and registers every metric, with latency buckets reaching past `longest`.
    pub fn with_longest_wait(longest: Duration) -> Self {
        let buckets = LatencyBuckets::past(longest);
        let metrics = Self {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(buckets.clone()),
            requests_in_flight: Gauge::default(),
            upstream_duration: Family::new_with_constructor(buckets),
            upstream_responses: Family::default(),
            upstream_body_failures: Family::default(),
            tls_handshake_failures: Family::default(),
            connections_open: Gauge::default(),
            connections_closed: Family::default(),
            jwks_fetches: Family::default(),
            jwks_keys_loaded: Family::default(),
            jwks_keys_rejected: Family::default(),
            jwks_key_age: Family::default(),
            issuer_metadata_failures: Family::default(),
            issuer_metadata_age: Family::default(),
            issuer_clock_offset: Family::default(),
            token_cache_hits: Counter::default(),
            token_cache_misses: Counter::default(),
            policy_reloads: Counter::default(),
            policy_reload_failures: Counter::default(),
            revocation_refreshes: Family::default(),
            revocation_age: Family::default(),
            revocation_entries: Family::default(),
            protocol_errors: Family::default(),
            ready: Gauge::default(),
            certificate_expiry: Family::default(),
            tls_reloads: Family::default(),
            tls_reload_failures: Family::default(),
            crl_age: Family::default(),
            crl_stale: Family::default(),
            break_glass: Family::default(),
            audit_queue_depth: Gauge::default(),
            audit_records: Counter::default(),
            audit_refused: Counter::default(),
            audit_dropped: Counter::default(),
            audit_write_errors: Counter::default(),
            detector_firings: Family::default(),
            actions: Family::default(),
            monitor_dropped: Counter::default(),
            circuit_open: Family::default(),
            log_dropped: Counter::default(),
            registry: Registry::default(),
        };
        let mut root = Registry::default();
        // `process_*` are the names every dashboard knows: they take no `phigate_` prefix.
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("phigate");
        metrics.register_all(registry);
        metrics.show_known_series_at_zero();
        Self {
            registry: root,
            ..metrics
        }
    }

    fn register_all(&self, registry: &mut Registry) {
        // prometheus-client appends `_total` to counters itself, and `_info` to an info metric.
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because the log writer could not keep up (never audit records)",
            self.log_dropped.clone(),
        );
        registry.register(
            "circuit_open",
            "1 while calls to a failing dependency are refused at once (circuit breaker open)",
            self.circuit_open.clone(),
        );
        registry.register(
            "build",
            "The running build; always 1",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        registry.register(
            "requests_in_flight",
            "Requests received and not yet answered with a response head",
            self.requests_in_flight.clone(),
        );
        registry.register(
            "upstream_responses",
            "Upstream responses by status class",
            self.upstream_responses.clone(),
        );
        registry.register(
            "upstream_body_failures",
            "Upstream answers whose body timed out or broke after the head arrived, by kind",
            self.upstream_body_failures.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes on the PHI listener that failed, by reason",
            self.tls_handshake_failures.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections open on the PHI listener, handshakes included",
            self.connections_open.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections phigate closed before they carried a request, by reason",
            self.connections_closed.clone(),
        );
        registry.register(
            "decisions",
            "Requests decided, by rule, decision and reason",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head",
            self.request_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time the upstream took to answer with a response head",
            self.upstream_duration.clone(),
        );
        registry.register(
            "jwks_fetches",
            "JWKS fetches by issuer and result",
            self.jwks_fetches.clone(),
        );
        registry.register(
            "jwks_keys_loaded",
            "Usable verification keys currently loaded per issuer",
            self.jwks_keys_loaded.clone(),
        );
        registry.register(
            "jwks_keys_rejected",
            "JWKS entries refused at load (private members, weak or malformed keys), each counted once",
            self.jwks_keys_rejected.clone(),
        );
        registry.register(
            "jwks_key_age_seconds",
            "Seconds since the issuer's keys were last fetched successfully",
            self.jwks_key_age.clone(),
        );
        registry.register(
            "issuer_metadata_fetch_failures",
            "Issuer metadata (RFC 8414 / OIDC discovery) refreshes that failed or were refused",
            self.issuer_metadata_failures.clone(),
        );
        registry.register(
            "issuer_metadata_age_seconds",
            "Seconds since the issuer's metadata was last fetched or revalidated successfully",
            self.issuer_metadata_age.clone(),
        );
        registry.register(
            "issuer_clock_offset_seconds",
            "The issuer's clock minus ours, estimated as the largest iat - now of the tokens verified from their signature in the current and previous minute",
            self.issuer_clock_offset.clone(),
        );
        registry.register(
            "token_cache_hits",
            "Verified-token cache hits",
            self.token_cache_hits.clone(),
        );
        registry.register(
            "token_cache_misses",
            "Verified-token cache misses",
            self.token_cache_misses.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reloads that swapped in a new policy",
            self.policy_reloads.clone(),
        );
        registry.register(
            "policy_reload_failures",
            "Policy reloads refused because the new file did not compile",
            self.policy_reload_failures.clone(),
        );
        registry.register(
            "revocation_refreshes",
            "Revocation list refreshes by source and result",
            self.revocation_refreshes.clone(),
        );
        registry.register(
            "revocation_list_age_seconds",
            "Seconds since the source's list was last confirmed current",
            self.revocation_age.clone(),
        );
        registry.register(
            "revocation_entries",
            "Entries held per revocation source",
            self.revocation_entries.clone(),
        );
        registry.register(
            "client_protocol_errors",
            "Requests the HTTP layer refused before phigate decided anything (client errors)",
            self.protocol_errors.clone(),
        );
        registry.register(
            "ready",
            "1 when /readyz answers ready (keys, revocation lists and client CRLs fresh, not shutting down), else 0",
            self.ready.clone(),
        );
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter (unix seconds) of the listener certificate, the earliest client CA, and the upstream's certificate as last verified",
            self.certificate_expiry.clone(),
        );
        registry.register(
            "tls_reloads",
            "Listener certificate, client CA or client CRL changes taken into use without a restart",
            self.tls_reloads.clone(),
        );
        registry.register(
            "tls_reload_failures",
            "Listener certificate, client CA or client CRL changes refused (the previous one keeps serving)",
            self.tls_reload_failures.clone(),
        );
        registry.register(
            "tls_crl_age_seconds",
            "Seconds since the client CRL source last gave a good list",
            self.crl_age.clone(),
        );
        registry.register(
            "tls_crl_stale",
            "1 while the client CRL source is past nextUpdate or client_crl_max_stale: handshakes presenting a client certificate fail",
            self.crl_stale.clone(),
        );
        registry.register(
            "break_glass",
            "Requests granted through break-glass (emergency) access, by break-glass rule",
            self.break_glass.clone(),
        );
        registry.register(
            "audit_queue_depth",
            "Audit slots in use: requests holding room for their record, and records not yet written",
            self.audit_queue_depth.clone(),
        );
        registry.register(
            "audit_records",
            "Audit records written",
            self.audit_records.clone(),
        );
        registry.register(
            "audit_refused",
            "Requests refused with 503 audit_unavailable because the audit queue was full",
            self.audit_refused.clone(),
        );
        registry.register(
            "audit_dropped",
            "Decisions that reached no audit record because the audit queue was full",
            self.audit_dropped.clone(),
        );
        registry.register(
            "audit_write_errors",
            "Audit writes that failed and were retried",
            self.audit_write_errors.clone(),
        );
        registry.register(
            "detector_firings",
            "Times a monitor detector fired, by detector",
            self.detector_firings.clone(),
        );
        registry.register(
            "actions",
            "Automatic-response actions taken, by action and result",
            self.actions.clone(),
        );
        registry.register(
            "monitor_records_dropped",
            "Decision records the monitor dropped because its queue was full",
            self.monitor_dropped.clone(),
        );
    }

    /// Creates every series whose labels are fixed, so each reads 0 before its first event.
    fn show_known_series_at_zero(&self) {
        // Creating a series is the point; each read guard is released at once.
        for kind in PROTOCOL_ERROR_KINDS {
            drop(
                self.protocol_errors
                    .get_or_create(&ProtocolErrorLabels { kind }),
            );
        }
        for outcome in UPSTREAM_OUTCOMES {
            drop(
                self.upstream_duration
                    .get_or_create(&UpstreamLabels { outcome }),
            );
        }
        for kind in UPSTREAM_BODY_FAILURES {
            drop(
                self.upstream_body_failures
                    .get_or_create(&UpstreamBodyLabels { kind }),
            );
        }
        for reason in CONNECTION_CLOSE_REASONS {
            drop(
                self.connections_closed
                    .get_or_create(&ConnectionClosedLabels { reason }),
            );
        }
        for class in STATUS_CLASSES {
            drop(
                self.upstream_responses
                    .get_or_create(&StatusClassLabels { class }),
            );
        }
        for failure in HandshakeFailure::ALL {
            let reason = failure.reason();
            drop(
                self.tls_handshake_failures
                    .get_or_create(&HandshakeFailureLabels { reason }),
            );
        }
        for detector in DETECTORS {
            drop(
                self.detector_firings
                    .get_or_create(&DetectorLabels { detector }),
            );
        }
        for action in ACTIONS {
            for result in ["ok", "error"] {
                drop(self.actions.get_or_create(&ActionLabels { action, result }));
            }
        }
    }

    /// Counts one firing of `detector`.
    pub fn record_detector_firing(&self, detector: &'static str) {
        self.detector_firings
            .get_or_create(&DetectorLabels { detector })
            .inc();
    }

    /// Counts one action and whether it succeeded.
    pub fn record_action(&self, action: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.actions
            .get_or_create(&ActionLabels { action, result })
            .inc();
    }

    /// Counts a decision record the monitor had no room for.
    pub fn record_monitor_dropped(&self) {
        self.monitor_dropped.inc();
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn request_started(&self) -> InFlight {
        self.requests_in_flight.inc();
        InFlight(self.requests_in_flight.clone())
    }

    /// Counts a client connection as open until the returned guard is dropped.
    pub fn connection_opened(&self) -> OpenConnection {
        self.connections_open.inc();
        OpenConnection(self.connections_open.clone())
    }

    /// Counts a connection phigate closed before it carried a request (one of
    /// [`CONNECTION_CLOSE_REASONS`]).
    pub fn record_connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ConnectionClosedLabels { reason })
            .inc();
    }

    /// Counts an upstream answer whose body failed after its head (one of
    /// [`UPSTREAM_BODY_FAILURES`]).
    pub fn record_upstream_body_failure(&self, kind: &'static str) {
        self.upstream_body_failures
            .get_or_create(&UpstreamBodyLabels { kind })
            .inc();
    }

    /// Counts a TLS handshake that failed, by [`HandshakeFailure::reason`].
    pub fn record_handshake_failure(&self, failure: HandshakeFailure) {
        let reason = failure.reason();
        self.tls_handshake_failures
            .get_or_create(&HandshakeFailureLabels { reason })
            .inc();
    }

    /// Counts an upstream response by its status class.
    pub fn record_upstream_status(&self, status: http::StatusCode) {
        let class = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "other",
        };
        self.upstream_responses
            .get_or_create(&StatusClassLabels { class })
            .inc();
    }

    /// Counts a request the HTTP layer refused (hyper answered 400/431 itself, or timed out).
    pub fn record_protocol_error(&self, kind: &'static str) {
        self.protocol_errors
            .get_or_create(&ProtocolErrorLabels { kind })
            .inc();
    }

    /// The gauge of audit slots in use (the audit queue's capacity keeps it).
    pub fn audit_queue_depth(&self) -> Gauge {
        self.audit_queue_depth.clone()
    }

    /// Counts one audit record written.
    pub fn record_audit_written(&self) {
        self.audit_records.inc();
    }

    /// Counts one request refused because the audit queue was full.
    pub fn record_audit_refused(&self) {
        self.audit_refused.inc();
    }

    /// Counts one decision that reached no audit record.
    pub fn record_audit_dropped(&self) {
        self.audit_dropped.inc();
    }

    /// Counts one failed audit write.
    pub fn record_audit_write_error(&self) {
        self.audit_write_errors.inc();
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

    /// Brings the dropped-log-lines counter up to `total` (read at scrape time).
    pub fn publish_log_drops(&self, total: u64) {
        self.log_dropped
            .inc_by(total.saturating_sub(self.log_dropped.get()));
    }

    /// The gauge of `dependency`'s circuit breaker (for `issuer`, or empty), present from start.
    pub fn circuit_gauge(&self, dependency: &'static str, issuer: &str) -> Gauge {
        let labels = DependencyLabels {
            dependency,
            issuer: issuer.to_owned(),
        };
        self.circuit_open.get_or_create(&labels).clone()
    }

    /// Sets the number of usable keys for an issuer.
    pub fn set_jwks_keys_loaded(&self, issuer: &str, count: usize) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.jwks_keys_loaded
            .get_or_create(&issuer_labels(issuer))
            .set(count);
    }

    /// Makes an issuer's fetch and rejected-keys counters present at zero.
    pub fn init_issuer(&self, issuer: &str) {
        // Creating the series is the point; each read guard is released at once.
        drop(
            self.jwks_keys_rejected
                .get_or_create(&issuer_labels(issuer)),
        );
        for result in ["ok", "error"] {
            drop(self.jwks_fetches.get_or_create(&FetchLabels {
                issuer: issuer.to_owned(),
                result,
            }));
        }
    }

    /// Makes a revocation source's refresh counters present at zero.
    pub fn init_revocation_source(&self, source: &str) {
        for result in ["ok", "error"] {
            drop(
                self.revocation_refreshes
                    .get_or_create(&SourceResultLabels {
                        source: source.to_owned(),
                        result,
                    }),
            );
        }
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

    /// Makes an issuer's metadata failure counter present at zero.
    pub fn init_issuer_metadata(&self, issuer: &str) {
        drop(
            self.issuer_metadata_failures
                .get_or_create(&issuer_labels(issuer)),
        );
    }

    /// Counts one failed or refused issuer metadata refresh.
    pub fn record_issuer_metadata_failure(&self, issuer: &str) {
        self.issuer_metadata_failures
            .get_or_create(&issuer_labels(issuer))
            .inc();
    }

    /// Sets the age of an issuer's metadata.
    pub fn set_issuer_metadata_age(&self, issuer: &str, seconds: f64) {
        self.issuer_metadata_age
            .get_or_create(&issuer_labels(issuer))
            .set(seconds);
    }

    /// Sets the estimate of an issuer's clock offset (positive: the issuer is ahead).
    pub fn set_issuer_clock_offset(&self, issuer: &str, seconds: i64) {
        self.issuer_clock_offset
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

    /// Sets whether the gateway is ready (read at each scrape).
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Records a certificate's notAfter under `name` (`listener`, `client_ca`, `upstream`).
    pub fn set_certificate_expiry(&self, name: &'static str, not_after: SystemTime) {
        record_expiry(&self.certificate_expiry, name, not_after);
    }

    /// A recorder for certificates seen on the wire (the upstream's), named `name`: its series
    /// appears with the first verified certificate, never as a zero that alerts would read as
    /// expired.
    pub fn on_certificate_expiry(&self, name: &'static str) -> crate::tls::OnExpiry {
        let family = self.certificate_expiry.clone();
        Arc::new(move |not_after| record_expiry(&family, name, not_after))
    }

    /// Makes the reload counters of each part present at zero.
    pub fn init_tls_reloads(&self, names: &[&'static str]) {
        for &name in names {
            drop(self.tls_reloads.get_or_create(&TlsNameLabels { name }));
            drop(
                self.tls_reload_failures
                    .get_or_create(&TlsNameLabels { name }),
            );
        }
    }

    /// Counts a change to a part of the listener's TLS material, taken or refused.
    pub fn record_tls_reload(&self, name: &'static str, taken: bool) {
        let family = if taken {
            &self.tls_reloads
        } else {
            &self.tls_reload_failures
        };
        family.get_or_create(&TlsNameLabels { name }).inc();
    }

    /// Sets a client CRL source's age (none before its first good read) and staleness.
    pub fn set_crl_status(&self, source: &str, age_seconds: Option<i64>, stale: bool) {
        let labels = CrlSourceLabels {
            source: source.to_owned(),
        };
        if let Some(age) = age_seconds {
            self.crl_age.get_or_create(&labels).set(age);
        }
        self.crl_stale.get_or_create(&labels).set(i64::from(stale));
    }

    /// Makes each break-glass rule's counter present at zero.
    pub fn init_break_glass<'a>(&self, rules: impl IntoIterator<Item = &'a str>) {
        for rule in rules {
            drop(self.break_glass.get_or_create(&BreakGlassLabels {
                rule: rule.to_owned(),
            }));
        }
    }

    /// Counts one request granted through break-glass access.
    pub fn record_break_glass(&self, rule: &str) {
        self.break_glass
            .get_or_create(&BreakGlassLabels {
                rule: rule.to_owned(),
            })
            .inc();
    }

    /// Renders every metric in `format`.
    pub fn render(&self, format: Exposition) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and no metric's encoding does either.
        let _ = match format {
            Exposition::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
            Exposition::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        out
    }
}

fn record_expiry(family: &Family<TlsNameLabels, Gauge>, name: &'static str, not_after: SystemTime) {
    let seconds = match not_after.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    };
    family.get_or_create(&TlsNameLabels { name }).set(seconds);
}

fn issuer_labels(issuer: &str) -> IssuerLabels {
    IssuerLabels {
        issuer: issuer.to_owned(),
    }
}

#[cfg(test)]
mod tests;
