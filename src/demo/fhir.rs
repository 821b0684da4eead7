//! A small synthetic FHIR R4 server that records every request reaching it.
//!
//! `SyntheticFhir` plays the upstream behind the gateway: two invented patients, three invented
//! observations, reads, loose searches and creates, all as `application/fhir+json`. Its real job
//! is evidence: tests read [`SyntheticFhir::received`] to prove what the gateway forwarded (or
//! that it forwarded nothing), and hooks make it slow or leaky. It must never hold real patient
//! data and never sit behind anything but a test or `phigate demo`: it checks no credentials.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, LOCATION};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use super::{Background, Body, respond};

/// The base path every FHIR route lives under.
pub const BASE_PATH: &str = "/fhir";

const FHIR_JSON: &str = "application/fhir+json";

/// A request as it reached the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRequest {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path and query exactly as received, e.g. `/fhir/Patient?_id=123`.
    pub path_and_query: String,
    /// Headers with lower-case names, repeated names kept. Order is hyper's `HeaderMap` order:
    /// names by first appearance, each name's values in arrival order.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
    /// The HTTP version, `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
}

/// How the upstream misbehaves, for tests of what the gateway passes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamMode {
    /// Answer normally.
    #[default]
    Normal,
    /// Add `Server: Jetty(11)` and `X-Powered-By: HAPI FHIR 7.0`, which a gateway should strip.
    LeakyHeaders,
    /// Add hop-by-hop and proxy-only headers (`Connection: x-upstream-secret`,
    /// `X-Upstream-Secret`, `Keep-Alive`, `Proxy-Authenticate`, `Trailer`, `Upgrade`) that a
    /// proxy must not forward (RFC 9110 §7.6.1, §11.7.1).
    HopByHopHeaders,
    /// Answer every request with this status and an OperationOutcome.
    FixedStatus(u16),
    /// Answer every request with a valid Observation of patient 123 padded to this many bytes.
    Oversized(usize),
}

/// A synthetic FHIR R4 server on a local port. Clones share one server and one record.
#[derive(Clone)]
pub struct SyntheticFhir {
    inner: Arc<Inner>,
}

struct Inner {
    server: Background,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<ReceivedRequest>>,
    delay: Mutex<Duration>,
    mode: Mutex<UpstreamMode>,
    created: Mutex<Vec<Value>>,
    next_id: AtomicU64,
}

// === impl SyntheticFhir ===

impl SyntheticFhir {
    /// Starts serving on `bind` (tests pass `127.0.0.1:0`).
    pub async fn start(bind: SocketAddr) -> std::io::Result<Self> {
        let state = Arc::new(State::default());
        let served = Arc::clone(&state);
        let server = Background::spawn(bind, move |req| {
            let state = Arc::clone(&served);
            async move { state.serve(req).await }
        })
        .await?;
        Ok(Self {
            inner: Arc::new(Inner { server, state }),
        })
    }

    /// The FHIR base URL, e.g. `http://127.0.0.1:PORT/fhir`.
    pub fn url(&self) -> String {
        format!("http://{}{BASE_PATH}", self.inner.server.dial_addr())
    }

    /// The address the server is listening on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.server.local_addr
    }

    /// Every request received so far, in arrival order.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        lock(&self.inner.state.received).clone()
    }

    /// Forgets every recorded request.
    pub fn clear_received(&self) {
        lock(&self.inner.state.received).clear();
    }

    /// Delays every response by `delay` (after recording), to make the gateway time out.
    pub fn set_response_delay(&self, delay: Duration) {
        *lock(&self.inner.state.delay) = delay;
    }

    /// Changes how the server misbehaves.
    pub fn set_mode(&self, mode: UpstreamMode) {
        *lock(&self.inner.state.mode) = mode;
    }

    /// Stops the server: the port closes and open connections drop.
    pub fn shutdown(&self) {
        self.inner.server.shutdown();
    }

    /// Waits until the server has closed its port after [`shutdown`](Self::shutdown).
    pub async fn stopped(&self) {
        self.inner.server.stopped().await;
    }
}

impl std::fmt::Debug for SyntheticFhir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyntheticFhir")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

// === impl ReceivedRequest ===

impl ReceivedRequest {
    /// The first value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).next()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + use<'a> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(move |(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    fn from_parts(parts: &Parts, body: &Bytes) -> Self {
        Self {
            method: parts.method.to_string(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), ToString::to_string),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value)
                })
                .collect(),
            body: body.to_vec(),
            version: format!("{:?}", parts.version),
        }
    }
}

// === impl State ===

impl State {
    async fn serve(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|collected| collected.to_bytes());
        // Record before anything else so a test sees a request even when the gateway gave up.
        let recorded = body.as_ref().map_or_else(|_| Bytes::new(), Clone::clone);
        lock(&self.received).push(ReceivedRequest::from_parts(&parts, &recorded));
        let delay = *lock(&self.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mode = *lock(&self.mode);
        let mut response = match (mode, body) {
            (UpstreamMode::FixedStatus(code), _) => {
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                outcome(status, "exception", "synthetic failure")
            }
            (UpstreamMode::Oversized(bytes), _) => fhir_json(
                StatusCode::OK,
                &json!({
                    "resourceType": "Observation",
                    "id": "o-123-big",
                    "subject": { "reference": "Patient/123" },
                    "note": [{ "text": "x".repeat(bytes) }],
                }),
            ),
            (_, Err(_)) => outcome(StatusCode::BAD_REQUEST, "structure", "unreadable body"),
            (_, Ok(body)) => self.route(&parts, &body),
        };
        decorate(&mut response, mode);
        response
    }

    fn route(&self, parts: &Parts, body: &[u8]) -> Response<Body> {
        // `/fhirPatient/123` is not under the base: the prefix must end at a segment boundary.
        let Some(rest) = parts
            .uri
            .path()
            .strip_prefix(BASE_PATH)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        else {
            return not_found();
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        if let Some(response) = self.opaque_links(parts, &segments) {
            return response;
        }
        let query = Query::parse(parts.uri.query());
        let get = parts.method == Method::GET;
        match segments.as_slice() {
            ["metadata"] if get => fhir_json(StatusCode::OK, &capability_statement()),
            ["Patient"] if get => bundle(patients().into_iter().filter(|p| query.matches_id(p))),
            ["Patient", id] if get => self.read("Patient", id),
            ["Patient", id, "Observation"] if get => bundle(
                self.observations()
                    .into_iter()
                    .filter(|o| subject_is(o, id) && query.matches_id(o)),
            ),
            ["Observation"] if get => bundle(
                self.observations()
                    .into_iter()
                    .filter(|o| query.matches_id(o) && query.matches_subject(o)),
            ),
            ["Observation", id] if get => self.read("Observation", id),
            ["Observation"] if parts.method == Method::POST => self.create_observation(body),
            ["metadata" | "Patient" | "Observation"] | ["Patient" | "Observation", _] => outcome(
                StatusCode::METHOD_NOT_ALLOWED,
                "not-supported",
                "method not supported",
            ),
            _ => not_found(),
        }
    }

    /// What a HAPI-style server hands out as absolute URLs of its own, for tests of sealed
    /// links: an opaque page token at the server base (`?_getpages=`), and a Bulk Data export
    /// (kick-off → status URL → manifest → output file).
    fn opaque_links(&self, parts: &Parts, segments: &[&str]) -> Option<Response<Body>> {
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let base = format!("http://{host}{BASE_PATH}");
        let query = parts.uri.query().unwrap_or_default();
        let response = match (parts.method.as_str(), segments) {
            // A one-entry page (`_count=1`) links to the rest through an opaque token.
            ("GET", ["Observation"]) if query.split('&').any(|p| p == "_count=1") => {
                let mut page = json!({
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "entry": [],
                    "link": [
                        { "relation": "self", "url": format!("{base}/Observation?{query}") },
                        { "relation": "next", "url": format!("{base}?_getpages=page1&_getpagesoffset=1") },
                    ],
                });
                page["entry"] = Value::Array(
                    self.observations()
                        .into_iter()
                        .take(1)
                        .map(|resource| json!({ "resource": resource }))
                        .collect(),
                );
                fhir_json(StatusCode::OK, &page)
            }
            // The opaque page holds every Observation: whoever follows it gets them all.
            ("GET", []) if query.starts_with("_getpages=") => {
                let page = json!({
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "entry": self.observations().into_iter().map(|resource| json!({ "resource": resource })).collect::<Vec<_>>(),
                    "link": [{ "relation": "next", "url": format!("{base}?_getpages=page1&_getpagesoffset=9") }],
                });
                fhir_json(StatusCode::OK, &page)
            }
            ("GET" | "POST", [.., "$export"]) => {
                let mut response = respond(StatusCode::ACCEPTED, FHIR_JSON, "");
                if let Ok(location) = HeaderValue::from_str(&format!(
                    "{base}/$export-poll-status?_jobId=job1"
                )) {
                    response
                        .headers_mut()
                        .insert(http::header::CONTENT_LOCATION, location);
                }
                response
            }
            ("GET", ["$export-poll-status"]) => respond(
                StatusCode::OK,
                "application/json",
                json!({
                    "transactionTime": "2026-01-01T00:00:00Z",
                    "request": format!("{base}/$export"),
                    "requiresAccessToken": true,
                    "output": [{ "type": "Patient", "url": format!("{base}/bulk/job1/Patient.ndjson") }],
                    "error": [],
                })
                .to_string(),
            ),
            ("DELETE", ["$export-poll-status"]) => respond(StatusCode::ACCEPTED, FHIR_JSON, ""),
            ("GET", ["bulk", "job1", "Patient.ndjson"]) => respond(
                StatusCode::OK,
                "application/fhir+ndjson",
                patients()
                    .iter()
                    .map(|p| format!("{p}\n"))
                    .collect::<String>(),
            ),
            _ => return None,
        };
        Some(response)
    }

    fn read(&self, resource_type: &str, id: &str) -> Response<Body> {
        let all = match resource_type {
            "Patient" => patients(),
            _ => self.observations(),
        };
        match all.into_iter().find(|r| r["id"] == id) {
            Some(resource) => fhir_json(StatusCode::OK, &resource),
            None => not_found(),
        }
    }

    fn observations(&self) -> Vec<Value> {
        let mut all = observations();
        all.extend(lock(&self.created).iter().cloned());
        all
    }

    fn create_observation(&self, body: &[u8]) -> Response<Body> {
        let Ok(mut resource) = serde_json::from_slice::<Value>(body) else {
            return outcome(StatusCode::BAD_REQUEST, "structure", "body is not JSON");
        };
        if resource["resourceType"] != "Observation" {
            return outcome(
                StatusCode::BAD_REQUEST,
                "invalid",
                "expected an Observation",
            );
        }
        let id = format!("new-{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        resource["id"] = json!(id);
        resource["meta"] = json!({ "versionId": "1" });
        lock(&self.created).push(resource.clone());
        let mut response = fhir_json(StatusCode::CREATED, &resource);
        // FHIR R4 §3.1.0.8: Location names the new version. A path, not a URL, so the
        // upstream's own address never appears in what the gateway relays.
        if let Ok(location) =
            HeaderValue::from_str(&format!("{BASE_PATH}/Observation/{id}/_history/1"))
        {
            response.headers_mut().insert(LOCATION, location);
        }
        response
    }
}

/// Adds the headers `mode` asks for.
fn decorate(response: &mut Response<Body>, mode: UpstreamMode) {
    let extra: &[(&str, &str)] = match mode {
        UpstreamMode::LeakyHeaders => &[("server", "Jetty(11)"), ("x-powered-by", "HAPI FHIR 7.0")],
        UpstreamMode::HopByHopHeaders => &[
            ("connection", "x-upstream-secret"),
            ("x-upstream-secret", "must-not-pass"),
            ("keep-alive", "timeout=5"),
            ("proxy-authenticate", "Basic realm=\"upstream\""),
            ("proxy-authorization", "Basic dXBzdHJlYW0="),
            ("trailer", "x-checksum"),
            ("upgrade", "h2c"),
        ],
        UpstreamMode::Normal | UpstreamMode::FixedStatus(_) | UpstreamMode::Oversized(_) => &[],
    };
    for (name, value) in extra {
        response.headers_mut().append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}

/// Locks a mutex, ignoring poison: a panicking test cannot leave the record half-written.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// === search parameters ===

/// The few search parameters the server understands; the rest are ignored, as FHIR allows.
#[derive(Default)]
struct Query {
    id: Option<String>,
    subject: Option<String>,
}

impl Query {
    fn parse(query: Option<&str>) -> Self {
        let mut parsed = Self::default();
        for pair in query.unwrap_or_default().split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(&value.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            match name {
                "_id" => parsed.id = Some(value),
                "patient" | "subject" => {
                    // Both `123` and `Patient/123` name the same patient.
                    let id = value.strip_prefix("Patient/").unwrap_or(&value).to_owned();
                    parsed.subject = Some(id);
                }
                _ => {}
            }
        }
        parsed
    }

    fn matches_id(&self, resource: &Value) -> bool {
        self.id
            .as_ref()
            .is_none_or(|id| resource["id"] == id.as_str())
    }

    fn matches_subject(&self, observation: &Value) -> bool {
        self.subject
            .as_ref()
            .is_none_or(|id| subject_is(observation, id))
    }
}

fn subject_is(observation: &Value, patient_id: &str) -> bool {
    observation["subject"]["reference"] == format!("Patient/{patient_id}").as_str()
}

// === responses ===

fn fhir_json(status: StatusCode, resource: &Value) -> Response<Body> {
    respond(status, FHIR_JSON, resource.to_string())
}

fn bundle(resources: impl Iterator<Item = Value>) -> Response<Body> {
    let entries: Vec<Value> = resources
        .map(|resource| json!({ "resource": resource, "search": { "mode": "match" } }))
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": entries.len(),
        "entry": entries,
    });
    fhir_json(StatusCode::OK, &bundle)
}

fn outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response<Body> {
    let outcome = json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": code, "diagnostics": diagnostics }],
    });
    fhir_json(status, &outcome)
}

fn not_found() -> Response<Body> {
    outcome(StatusCode::NOT_FOUND, "not-found", "resource not found")
}

// === synthetic data ===

/// Marks every resource as invented, so nobody mistakes demo output for a record.
fn synthetic_meta() -> Value {
    json!({ "tag": [{ "system": "urn:phigate:demo", "code": "synthetic" }] })
}

fn capability_statement() -> Value {
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "software": { "name": "phigate synthetic FHIR" },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "resource": [
                { "type": "Patient", "interaction": [{ "code": "read" }, { "code": "search-type" }] },
                {
                    "type": "Observation",
                    "interaction": [{ "code": "read" }, { "code": "search-type" }, { "code": "create" }],
                    "searchParam": [
                        { "name": "patient", "type": "reference" },
                        { "name": "subject", "type": "reference" },
                    ],
                },
            ],
        }],
    })
}

fn patients() -> Vec<Value> {
    [
        ("123", "Quillfeather", "Ada", "female", "1980-01-01"),
        ("456", "Brightwater", "Tomas", "male", "1975-06-15"),
    ]
    .into_iter()
    .map(|(id, family, given, gender, birth_date)| {
        json!({
            "resourceType": "Patient",
            "id": id,
            "meta": synthetic_meta(),
            "name": [{ "family": family, "given": [given] }],
            "gender": gender,
            "birthDate": birth_date,
        })
    })
    .collect()
}

fn observations() -> Vec<Value> {
    [
        ("o-123-lab", "123", "laboratory", "2345-7", "Glucose", 95.0, "mg/dL"),
        ("o-123-vit", "123", "vital-signs", "8867-4", "Heart rate", 72.0, "/min"),
        ("o-456-lab", "456", "laboratory", "718-7", "Hemoglobin", 14.1, "g/dL"),
    ]
    .into_iter()
    .map(|(id, patient, category, loinc, display, value, unit)| {
        json!({
            "resourceType": "Observation",
            "id": id,
            "meta": synthetic_meta(),
            "status": "final",
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": category,
            }] }],
            "code": { "coding": [{ "system": "http://loinc.org", "code": loinc, "display": display }] },
            "subject": { "reference": format!("Patient/{patient}") },
            "valueQuantity": { "value": value, "unit": unit },
        })
    })
    .collect()
}

#[cfg(test)]
mod tests;
