//! The per-request tower service: answers the well-known discovery documents itself (after the
//! request hygiene, never forwarded), runs the decision chain for everything else, forwards
//! what it permits, renders what it denies, and hands one `DecisionRecord` per request to the
//! sinks (log line, metrics, audit trail).
//! Its error type is `Infallible`: every failure is a response.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::forward::Forwarder;
use crate::body::ProxyBody;
use crate::denial::{ChallengeParams, Denial};
use crate::discovery::{self, Discovery};
use crate::peer::TrustedProxies;
use crate::pipeline::{Connection, Facts, Pipeline};
use crate::policy::RefusalClass;
use crate::record::{BreakGlassUse, DecisionRecord, FhirAccess, Identity, Sinks};
use crate::request_body::RequestBody;
use crate::telemetry::Metrics;

/// What every connection's service shares, on every event loop.
pub struct Shared {
    /// The decision chain.
    pub pipeline: Pipeline,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Where every decision's record goes (log line, metrics, ...).
    pub sinks: Sinks,
    /// The well-known documents, and the URL 401 challenges name.
    pub discovery: Discovery,
    /// The proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
}

/// The gateway service for one connection.
#[derive(Clone)]
pub struct GatewayService {
    shared: Arc<Shared>,
    forwarder: Arc<Forwarder>,
    conn: Arc<Connection>,
}

impl GatewayService {
    /// A service for requests arriving on `conn`, forwarded through the upstream pool of the
    /// event loop that accepted it.
    pub fn new(shared: Arc<Shared>, forwarder: Arc<Forwarder>, conn: Connection) -> Self {
        Self {
            shared,
            forwarder,
            conn: Arc::new(conn),
        }
    }
}

impl tower::Service<Request<Incoming>> for GatewayService {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let forwarder = Arc::clone(&self.forwarder);
        let conn = Arc::clone(&self.conn);
        Box::pin(async move { Ok(handle(&shared, &forwarder, &conn, request).await) })
    }
}

/// What is read of a refused request's unread body so that its stream ends cleanly
/// ([`RequestBody::discard`]): enough for the small bodies that arrive with their headers, never
/// long enough to make a refusal a slot a slow client can hold.
const REFUSED_BODY_DRAIN_BYTES: usize = 64 * 1024;
const REFUSED_BODY_DRAIN_GRACE: Duration = Duration::from_millis(200);

async fn handle(
    shared: &Shared,
    forwarder: &Forwarder,
    conn: &Connection,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let time = SystemTime::now();
    let _in_flight = shared.metrics.request_started();
    let (parts, body) = request.into_parts();
    let mut body = RequestBody::new(body, shared.pipeline.limits().body_timeout);
    let method = parts.method.clone();
    let params = parameter_names(parts.uri.query());
    let mut facts = Facts {
        client: Some(
            shared
                .trusted_proxies
                .client_of(conn.peer.ip(), &parts.headers),
        ),
        ..Facts::default()
    };
    let mut would_deny = None;
    let mut fhir = None;
    let mut break_glass = None;
    let well_known = shared.discovery.resolve(parts.uri.path());
    let outcome = match well_known {
        Some(document) => crate::hygiene::screen(&parts, shared.pipeline.limits())
            .and_then(|()| shared.discovery.answer(&parts.method, document))
            .map(|answer| answer.map(|body| body.map_err(|never| match never {}).boxed_unsync())),
        None => match shared
            .pipeline
            .decide(&parts, &mut body, conn, &mut facts)
            .await
        {
            Ok(permit) => {
                // Report-only: the refusal is logged and counted, and the request goes on.
                would_deny = permit.would_deny().map(|refusal| refusal.reason());
                break_glass = permit.break_glass().map(|emergency| BreakGlassUse {
                    rule: std::sync::Arc::from(emergency.rule_name()),
                    justification: emergency.justification().to_owned(),
                });
                fhir = permit.fhir().map(|f| FhirAccess {
                    interaction: f.interaction().to_owned(),
                    resource_type: f.resource_type().map(str::to_owned),
                    resource_id: f.resource_id().map(str::to_owned),
                });
                forwarder
                    .forward(parts, body, &permit, &facts, conn, &shared.metrics)
                    .await
            }
            Err(denial) => {
                // HTTP/1.1 needs no help (hyper drains or closes the connection, and the
                // listener's lingering close keeps the refusal from being reset away), and
                // reading the body of an `Expect: 100-continue` request would invite it.
                if parts.version == http::Version::HTTP_2
                    && !parts.headers.contains_key(http::header::EXPECT)
                {
                    body.discard(REFUSED_BODY_DRAIN_BYTES, REFUSED_BODY_DRAIN_GRACE)
                        .await;
                }
                Err(denial)
            }
        },
    };
    let (decision, reason) = match (&outcome, would_deny) {
        (Ok(_), Some(reason)) => ("would_deny", reason),
        // An emergency access counts apart from routine allows in every decision series.
        (Ok(_), None) if break_glass.is_some() => ("allow", "break_glass"),
        (Ok(_), None) if well_known.is_some() => ("allow", "well_known"),
        (Ok(_), None) => ("allow", "ok"),
        (Err(denial), _) => (decision_label(denial), denial.reason()),
    };
    let released = outcome.is_ok();
    let mut response = outcome.unwrap_or_else(|denial| {
        render(
            &denial,
            ChallengeParams {
                resource_metadata: shared.discovery.resource_metadata(),
                dpop_algs: shared.discovery.dpop_algs(),
            },
        )
    });
    if well_known.is_some() && response.status() == http::StatusCode::METHOD_NOT_ALLOWED {
        discovery::allow(&mut response);
    }
    // RFC 9449 §8.2: a fresh nonce may ride on any response.
    if let Some(nonce) = shared
        .pipeline
        .dpop_nonce()
        .and_then(|n| http::HeaderValue::from_str(&n).ok())
    {
        response.headers_mut().insert("dpop-nonce", nonce);
    }
    let status = response.status().as_u16();
    let record = DecisionRecord {
        time,
        request_id: uuid::Uuid::new_v4(),
        peer: facts.client_ip(conn),
        method,
        params,
        rule: facts.rule.clone(),
        policy_version: facts.policy_version.clone(),
        identity: facts.token.as_deref().map(|token| Identity {
            issuer: std::sync::Arc::clone(&token.issuer),
            client_id: token.client_id.clone(),
            subject: token.subject.clone(),
            jti: token.jti.clone(),
            patient: token.patient.clone(),
        }),
        cert_thumbprint: conn.identity.thumbprint().map(|t| t.as_str().to_owned()),
        binding: facts.binding.map(|b| b.as_str()),
        fhir,
        break_glass,
        decision,
        reason,
        status,
        upstream_status: released.then_some(status),
        latency: started.elapsed(),
        slot: facts.audit_slot.take(),
    };
    shared.sinks.record(&record);
    response
}

fn render(denial: &Denial, params: ChallengeParams<'_>) -> Response<ProxyBody> {
    denial
        .render(params)
        .map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

/// The query's parameter names, never their values: values hold PHI (names, birth dates,
/// identifiers, patient ids). A name that does not look like a FHIR parameter is masked.
fn parameter_names(query: Option<&str>) -> Option<String> {
    let names: Vec<&str> = query?
        .split('&')
        .filter(|pair| !pair.is_empty())
        .take(32)
        .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
        .map(|name| {
            let plain = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'));
            if plain { name } else { "?" }
        })
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// Upstream failures are errors, not denials, in the metrics; a client's broken framing is a
/// denial (the client's fault), never an upstream error.
fn decision_label(denial: &Denial) -> &'static str {
    match denial {
        Denial::UpstreamUnreachable
        | Denial::UpstreamTimedOut
        | Denial::UpstreamMalformed
        | Denial::UpstreamChallenge => "error",
        Denial::Refused(refusal) if refusal.class() == RefusalClass::UpstreamUnusable => "error",
        _ => "deny",
    }
}
