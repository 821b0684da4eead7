//! One record per decision, and the seam where everything that observes decisions plugs in.
//! After the response is ready, the service builds one [`DecisionRecord`] — who, from where,
//! which rule and interaction, on what resource and patient, the outcome, the statuses and the
//! latency — and hands it to [`Sinks`]: the log line, the metrics, the audit writer, and later
//! the detectors. A record never holds a secret: no token (its `jti` stands in), no claim
//! beyond identities, no query values. Sinks run off the request's critical path: each must
//! return at once (queue internally if it has slow work to do); a sink whose queue is bounded
//! lends [`Slot`]s that the decision chain reserves, so a full queue is a decision too.

mod log;
mod metrics;
mod slot;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use self::log::LogSink;
pub use self::metrics::MetricsSink;
pub use self::slot::{Capacity, Slot};
use serde::Serialize;

use crate::token::{ClientId, Jti, Subject};

/// Everything known about one decision, without secrets.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    /// When the request arrived.
    pub time: SystemTime,
    /// The request's id (also in the log line).
    pub request_id: uuid::Uuid,
    /// The client's address: the connection's (the TCP peer, or the client a trusted
    /// balancer's PROXY header announced), or behind trusted proxies the client
    /// `X-Forwarded-For` names.
    pub peer: IpAddr,
    /// The HTTP method.
    pub method: http::Method,
    /// The query's parameter names (never values).
    pub params: Option<String>,
    /// The rule that matched, if any.
    pub rule: Option<Arc<str>>,
    /// Fingerprint of the policy that decided.
    pub policy_version: Option<Arc<str>>,
    /// The verified token's identity, when a token was verified.
    pub identity: Option<Identity>,
    /// The verified client certificate's RFC 8705 thumbprint.
    pub cert_thumbprint: Option<String>,
    /// How the token was bound (`bearer`, `mtls`, `dpop`).
    pub binding: Option<&'static str>,
    /// What the request was in FHIR terms, under a `fhir: smart` rule.
    pub fhir: Option<FhirAccess>,
    /// Granted through break-glass (emergency) access.
    pub break_glass: Option<BreakGlassUse>,
    /// `allow`, `deny`, `would_deny` or `error`.
    pub decision: &'static str,
    /// A documented reason code (`ok` when allowed).
    pub reason: &'static str,
    /// The status sent to the client.
    pub status: u16,
    /// The upstream's status, when the upstream answered and its answer was released.
    pub upstream_status: Option<u16>,
    /// From request head to response head.
    pub latency: Duration,
    /// The audit queue's room reserved for this record by the decision chain.
    pub slot: Option<Slot>,
}

/// An emergency access: the break-glass rule that granted it and the operator's stated reason
/// (printable ASCII, at most `policy::MAX_JUSTIFICATION` bytes; audit data, never sent back).
#[derive(Debug, Clone)]
pub struct BreakGlassUse {
    /// The break-glass rule.
    pub rule: Arc<str>,
    /// The justification header's value.
    pub justification: String,
}

/// Who a verified token speaks for.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The issuer.
    pub issuer: Arc<str>,
    /// `client_id` (or `azp`).
    pub client_id: Option<ClientId>,
    /// `sub`.
    pub subject: Option<Subject>,
    /// `jti`: the token's name in every record.
    pub jti: Option<Jti>,
    /// The SMART launch patient.
    pub patient: Option<String>,
}

/// A FHIR request's shape.
#[derive(Debug, Clone)]
pub struct FhirAccess {
    /// The interaction, e.g. `search-type`.
    pub interaction: String,
    /// The resource type, when the interaction has one.
    pub resource_type: Option<String>,
    /// The resource id, when the request named one.
    pub resource_id: Option<String>,
}

/// Something that observes decisions; it must return at once.
pub trait Sink: Send + Sync {
    /// Takes one record.
    fn record(&self, record: &DecisionRecord);
}

/// An automatic response the monitor took; the audit trail writes it as `event: "action"`.
#[derive(Debug, Serialize)]
pub struct ActionRecord<'a> {
    /// The detector that fired.
    pub detector: &'static str,
    /// `block`, `reauthenticate`, `revoke` or `alert`.
    pub action: &'static str,
    /// `address`, `token`, `client` or `subject`.
    pub key_kind: &'static str,
    /// The address, `jti`, client id or subject (never a token).
    pub key: &'a str,
    /// Whether the action took effect (an alert: whether it was queued for delivery).
    pub ok: bool,
}

/// Something that keeps the monitor's actions (the audit trail); it must return at once.
pub trait ActionSink: Send + Sync {
    /// Takes one action.
    fn action(&self, action: &ActionRecord<'_>);
}

/// Every sink a gateway feeds, in order.
#[derive(Clone, Default)]
pub struct Sinks(Vec<Arc<dyn Sink>>);

impl Sinks {
    /// Sinks fed in the given order.
    pub fn new(sinks: Vec<Arc<dyn Sink>>) -> Self {
        Self(sinks)
    }

    /// Hands `record` to every sink.
    pub fn record(&self, record: &DecisionRecord) {
        for sink in &self.0 {
            sink.record(record);
        }
    }
}
