//! Forwarding an allowed request upstream and its response back. The upstream path is taken
//! from the `Permit` and never from the request URI, so the path that was authorised is the path
//! forwarded, byte for byte. Headers are rebuilt, not patched: hop-by-hop fields and everything a
//! client could use to speak for phigate (identity, forwarding, client-certificate headers) are
//! removed before phigate adds its own; so are the upstream's own authentication challenges.
//! The request body was read whole by the decision chain. An answer streams back unless the
//! permit needs it checked or rewritten, when it is read whole (bounded) before anything reaches
//! the client; either way its body is held to `upstream.body_timeout` and `body_idle_timeout`,
//! and an answer whose framing cannot be trusted is refused.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version, request};
use http_body_util::{BodyExt, Empty, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use super::links::Links;
use crate::body::{BodyTimedOut, BoxError, Deadlines, ProxyBody, TimedBody};
use crate::config::Upstream;
use crate::denial::Denial;
use crate::hygiene;
use crate::pipeline::{Connection, Facts};
use crate::policy::fhir::{self, Checked, FhirDenial, LinkSeals, Precondition};
use crate::policy::seal::{Holder, LinkKind, LinkSealer};
use crate::policy::{Permit, Refusal};
use crate::request_body::RequestBody;
use crate::strict_json;
use crate::telemetry::Metrics;
use crate::tls::{HttpsClient, OnExpiry, TlsError, pooled_client};
use crate::token::{ClientId, Scheme, Subject, VerifiedToken};

/// The most of an upstream answer phigate buffers to check it (SECURITY.md §5: the Bundle
/// inspection buffer); a larger answer is withheld with 502.
const MAX_CHECKED_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

/// Request fields that are hop-by-hop (RFC 9110 §7.6.1), credentials phigate consumed, or
/// framing it recomputes; everything a client could use to speak for phigate (identity,
/// forwarding, routing overrides, client certificates) goes too, by `hygiene::is_proxy_owned`.
const STRIPPED_REQUEST_HEADERS: [&str; 13] = [
    "connection",
    "dpop",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
    "upgrade",
    "http2-settings",
    "host",
    "authorization",
];

/// Response fields removed: hop-by-hop and proxy-only fields, the upstream's authentication
/// challenges (its `WWW-Authenticate` or `Proxy-Authenticate` would ask the client for the
/// upstream's credentials and name its realm; R-U08), and version banners that help an
/// attacker (K-07).
const STRIPPED_RESPONSE_HEADERS: [&str; 12] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "server",
    "x-powered-by",
];

/// Sends permitted requests to the upstream over a pooled client.
pub struct Forwarder {
    client: HttpsClient<ProxyBody>,
    upstream: Upstream,
    public_base_url: Option<String>,
    sealer: Arc<LinkSealer>,
}

impl Forwarder {
    /// A forwarder for `upstream`; `https` upstreams are verified against `ca_file` or web PKI.
    /// Links in answers move from the upstream's base to `public_base_url` (or, when none is
    /// set, to the origin each request used).
    /// `sealer` seals the links a permit says phigate cannot authorise from their shape.
    pub fn new(
        upstream: Upstream,
        public_base_url: Option<String>,
        sealer: Arc<LinkSealer>,
        on_expiry: OnExpiry,
    ) -> Result<Self, TlsError> {
        let client = pooled_client(upstream.ca_file.as_deref(), upstream.http2, Some(on_expiry))?;
        Ok(Self {
            client,
            upstream,
            public_base_url,
            sealer,
        })
    }

    /// Forwards one permitted request and returns the upstream's response, or why not.
    pub async fn forward(
        &self,
        parts: request::Parts,
        body: RequestBody,
        permit: &Permit,
        facts: &Facts,
        conn: &Connection,
        metrics: &Arc<Metrics>,
    ) -> Result<Response<ProxyBody>, Denial> {
        let uri = self.upstream_uri(permit)?;
        let links = self.links(&parts, conn);
        let pinned_version = match permit.precondition() {
            Some(precondition) => {
                let patch = body.bytes().map(|b| &b[..]);
                Some(
                    self.read_before_write(permit, precondition, patch, facts, conn, metrics)
                        .await?,
                )
            }
            None => None,
        };
        let body = match permit.forwarded_search_body() {
            Some(search) => Full::new(Bytes::from(search.to_owned()))
                .map_err(|never| match never {})
                .boxed_unsync(),
            None => body.into_proxy_body()?,
        };
        let mut request = Request::new(body);
        *request.method_mut() = parts.method;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = self.upstream_headers(parts.headers, facts, conn);
        if let Some(name) = permit.withheld_header() {
            request.headers_mut().remove(name);
        }
        if let Some(version) = pinned_version {
            request.headers_mut().insert(header::IF_MATCH, version);
        }
        if permit.forwarded_search_body().is_some() {
            request.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        }
        if permit.response_check().is_some() {
            // The compartment check reads JSON; ask for nothing else.
            request.headers_mut().insert(
                header::ACCEPT,
                HeaderValue::from_static("application/fhir+json"),
            );
        }
        let response = self.send(request, metrics).await?;
        let (mut head, body) = response.into_parts();
        let body = TimedBody::new(body, self.body_deadlines());
        strip_hop_by_hop(&mut head.headers, &STRIPPED_RESPONSE_HEADERS);
        links.rewrite_headers(&mut head.headers);
        let holder = facts.token.as_deref().map(VerifiedToken::holder);
        let sealing = permit
            .link_seals()
            .zip(holder.as_ref())
            .map(|(seals, holder)| Sealing {
                links: &links,
                sealer: &self.sealer,
                seals,
                holder,
            });
        if let Some(sealing) = &sealing {
            sealing.seal_headers(&mut head.headers);
        }
        if let Some(check) = permit.response_check() {
            // "Not there" answers exactly like "not yours" (the check's refusal below), so a
            // patient-confined token cannot probe for other patients' resources.
            if check.is_by_id() && matches!(head.status, StatusCode::NOT_FOUND | StatusCode::GONE) {
                return Err(Denial::ResourceNotFound);
            }
        }
        let inspected = permit.response_check().is_some()
            || (permit.fhir().is_some() && is_json(&head.headers));
        let links = &links;
        if !inspected {
            // An upstream reset or a passed deadline mid-body surfaces as a body error, which
            // aborts the downstream response instead of completing it: a truncated Bundle never
            // looks whole (R-U03, R-U04).
            let metrics = Arc::clone(metrics);
            let body = body.map_err(move |err| {
                let kind = body_failure(&err);
                metrics.record_upstream_body_failure(kind);
                tracing::warn!(
                    upstream.body = kind,
                    "upstream answer cut off mid-body; the client's response is aborted"
                );
                err
            });
            return Ok(Response::from_parts(head, body.boxed_unsync()));
        }
        let bytes = inspect_answer(body, permit, links, sealing.as_ref(), metrics).await?;
        // The body may have been filtered or rewritten: hyper sets the new length.
        head.headers.remove(header::CONTENT_LENGTH);
        Ok(Response::from_parts(
            head,
            Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync(),
        ))
    }

    /// Reads the resource a write in patient context changes, checks it (and a patch's result)
    /// belongs to the patient, and returns the version to pin the write to with `If-Match`.
    /// A missing resource answers like a foreign one; anything unusable refuses the write.
    async fn read_before_write(
        &self,
        permit: &Permit,
        precondition: &Precondition,
        patch: Option<&[u8]>,
        facts: &Facts,
        conn: &Connection,
        metrics: &Metrics,
    ) -> Result<HeaderValue, Denial> {
        let unusable = || Denial::Refused(Refusal::from(FhirDenial::ResponseUnparseable));
        let uri = Uri::builder()
            .scheme(self.upstream.scheme.clone())
            .authority(self.upstream.authority.clone())
            .path_and_query(format!("{}{}", self.upstream.base_path, permit.path()))
            .build()
            .map_err(|_| unusable())?;
        let mut request = Request::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
        *request.uri_mut() = uri;
        *request.headers_mut() = self.upstream_headers(HeaderMap::new(), facts, conn);
        request.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("application/fhir+json"),
        );
        let response = self.send(request, metrics).await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND | StatusCode::GONE => return Err(Denial::ResourceNotFound),
            _ => return Err(unusable()),
        }
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = TimedBody::new(response.into_body(), self.body_deadlines());
        let bytes = read_whole(body, metrics)
            .await
            .map_err(|unread| match unread {
                Unread::TooLarge => unusable(),
                Unread::Failed(denial) => denial,
            })?;
        let current = strict_json::parse(&bytes).map_err(|_| unusable())?;
        precondition
            .check(&current, patch)
            .map_err(|denial| Denial::Refused(Refusal::from(denial)))?;
        fhir::version_of(etag.as_deref(), &current)
            .and_then(|version| HeaderValue::from_str(&version).ok())
            .ok_or_else(unusable)
    }

    /// Links from the upstream's base to the public one: `listen.public_base_url`, or the
    /// origin the client used (HTTP/2 `:authority`, else `Host`).
    fn links(&self, parts: &request::Parts, conn: &Connection) -> Links {
        let upstream_base = format!(
            "{}://{}{}",
            self.upstream.scheme, self.upstream.authority, self.upstream.base_path
        );
        let public_base = self.public_base_url.clone().unwrap_or_else(|| {
            let authority = parts
                .uri
                .authority()
                .map(ToString::to_string)
                .or_else(|| {
                    parts
                        .headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .and_then(|h| h.parse::<http::uri::Authority>().ok())
                        .map(|a| a.to_string())
                })
                .unwrap_or_else(|| "localhost".to_owned());
            let scheme = if conn.tls { "https" } else { "http" };
            format!("{scheme}://{authority}")
        });
        Links::new(&upstream_base, &public_base)
    }

    /// The deadlines on an upstream answer's body, from its head on.
    fn body_deadlines(&self) -> Deadlines {
        Deadlines {
            total: self.upstream.body_timeout,
            idle: self.upstream.body_idle_timeout,
        }
    }

    /// Sends one request upstream and waits for the answer's head within `upstream.timeout`,
    /// recording how it went. An answer whose framing cannot be trusted, or that asks for
    /// credentials, is refused here, before anything of it is used.
    async fn send(
        &self,
        request: Request<ProxyBody>,
        metrics: &Metrics,
    ) -> Result<Response<Incoming>, Denial> {
        let started = Instant::now();
        let sent = tokio::time::timeout(self.upstream.timeout, self.client.request(request)).await;
        let elapsed = started.elapsed().as_secs_f64();
        match sent {
            // RFC 9112 §6.3: `Transfer-Encoding` beside `Content-Length` "ought to be handled
            // as an error". hyper reads such a body by its chunks yet keeps the stale length,
            // which would frame (truncate) the client's response: refused, never passed on.
            Ok(Ok(response))
                if response.headers().contains_key(header::TRANSFER_ENCODING)
                    && response.headers().contains_key(header::CONTENT_LENGTH) =>
            {
                metrics.record_upstream("malformed", elapsed);
                tracing::warn!("upstream answer has both Content-Length and Transfer-Encoding");
                Err(Denial::UpstreamMalformed)
            }
            Ok(Ok(response)) => {
                metrics.record_upstream("ok", elapsed);
                metrics.record_upstream_status(response.status());
                if matches!(
                    response.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::PROXY_AUTHENTICATION_REQUIRED
                ) {
                    tracing::warn!(
                        upstream.status = response.status().as_u16(),
                        "upstream asked phigate for credentials"
                    );
                    return Err(Denial::UpstreamChallenge);
                }
                Ok(response)
            }
            Ok(Err(err)) => {
                metrics.record_upstream("unreachable", elapsed);
                tracing::warn!(error = %err, "upstream request failed");
                Err(Denial::UpstreamUnreachable)
            }
            Err(_) => {
                metrics.record_upstream("timed_out", elapsed);
                Err(Denial::UpstreamTimedOut)
            }
        }
    }

    fn upstream_uri(&self, permit: &Permit) -> Result<Uri, Denial> {
        let path_and_query = format!("{}{}", self.upstream.base_path, permit.path_and_query());
        Uri::builder()
            .scheme(self.upstream.scheme.clone())
            .authority(self.upstream.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| Denial::NoMatchingRule)
    }

    fn upstream_headers(
        &self,
        mut headers: HeaderMap,
        facts: &Facts,
        conn: &Connection,
    ) -> HeaderMap {
        strip_hop_by_hop(&mut headers, &STRIPPED_REQUEST_HEADERS);
        let owned: Vec<HeaderName> = headers
            .keys()
            .filter(|name| hygiene::is_proxy_owned(name.as_str()))
            .cloned()
            .collect();
        for name in owned {
            headers.remove(name);
        }
        // RFC 7230 §5.4: the upstream sees its own authority, never the client's Host.
        if let Ok(host) = HeaderValue::from_str(self.upstream.authority.as_str()) {
            headers.insert(header::HOST, host);
        }
        // The socket peer is the only address phigate can vouch for, unless it is a trusted
        // proxy: then the part of its chain that was believed comes first (K-03).
        let chain = facts
            .client
            .as_ref()
            .and_then(|client| client.forwarded_for.as_deref());
        let forwarded_for = match chain {
            Some(chain) => HeaderValue::from_str(chain),
            None => HeaderValue::from_str(&facts.client_ip(conn).to_string()),
        };
        if let Ok(value) = forwarded_for {
            headers.insert("x-forwarded-for", value);
        }
        let proto = if conn.tls { "https" } else { "http" };
        headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
        if let Some(token) = &facts.token {
            let subject_kind = if token.subject_is_client() {
                "client"
            } else {
                "user"
            };
            insert_claim(
                &mut headers,
                "x-phigate-subject",
                token.subject.as_ref().map(Subject::as_str),
            );
            // RFC 9700 §4.15: a client-credentials token's `sub` is a client, not a person.
            headers.insert(
                "x-phigate-subject-kind",
                HeaderValue::from_static(subject_kind),
            );
            insert_claim(
                &mut headers,
                "x-phigate-client-id",
                token.client_id.as_ref().map(ClientId::as_str),
            );
            insert_claim(
                &mut headers,
                "x-phigate-scopes",
                Some(&token.scopes.to_header_value()),
            );
        }
        if self.upstream.forward_token
            && let Some(bearer) = &facts.bearer
        {
            // RFC 9449 §7.1: a DPoP token is not a bearer token; it travels with its own scheme
            // and the proof phigate verified, never rewritten to `Bearer`.
            let (scheme, proof) = match facts.scheme {
                Some(Scheme::Dpop) => ("DPoP", facts.dpop_proof.as_ref()),
                Some(Scheme::Bearer) | None => ("Bearer", None),
            };
            if let Ok(value) = HeaderValue::from_str(&format!("{scheme} {}", bearer.expose())) {
                headers.insert(header::AUTHORIZATION, value);
                if let Some(proof) = proof {
                    headers.insert("dpop", proof.clone());
                }
            }
        }
        headers
    }
}

fn insert_claim(headers: &mut HeaderMap, name: &'static str, value: Option<&str>) {
    if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(name, value);
    }
}

/// Removes `fixed` fields and every field the `Connection` header nominates (RFC 9110 §7.6.1).
/// Nominated names are collected first, so `Connection: X-Phigate-Subject` cannot make phigate
/// drop its own header: identity headers are added after this runs (K-05).
fn strip_hop_by_hop(headers: &mut HeaderMap, fixed: &[&str]) {
    let nominated: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in nominated {
        headers.remove(name);
    }
    for name in fixed {
        headers.remove(*name);
    }
}

/// Reads a FHIR answer (bounded) before any byte reaches the client, checks it against the
/// permit's response check, and moves its links behind the gateway. An answer that must be
/// checked but is too large or not JSON is refused, never passed through; one that needs only
/// its links rewritten and is not JSON passes as it came.
async fn inspect_answer(
    body: TimedBody<Incoming>,
    permit: &Permit,
    links: &Links,
    sealing: Option<&Sealing<'_>>,
    metrics: &Metrics,
) -> Result<Bytes, Denial> {
    let refused = |denial: FhirDenial| Denial::Refused(Refusal::from(denial));
    let bytes = read_whole(body, metrics)
        .await
        .map_err(|unread| match unread {
            Unread::TooLarge => refused(FhirDenial::ResponseTooLarge),
            Unread::Failed(denial) => denial,
        })?;
    // No body (204, a minimal write, HEAD) holds no resource.
    if bytes.is_empty() {
        return Ok(bytes);
    }
    let check = permit.response_check();
    let mut document = match strict_json::parse(&bytes) {
        Ok(document) => document,
        Err(_) if check.is_none() => return Ok(bytes),
        Err(_) => return Err(refused(FhirDenial::ResponseUnparseable)),
    };
    let mut changed = false;
    if let Some(check) = check {
        match (fhir::check_answer(&document, check), permit.would_deny()) {
            (Ok(Checked::Unchanged), _) => {}
            (Ok(Checked::Filtered(filtered)), _) => {
                document = filtered;
                changed = true;
            }
            (Err(denial), Some(_)) => {
                tracing::warn!(
                    denial.reason = denial.reason(),
                    decision = "would_deny",
                    "report-only response check"
                );
            }
            (Err(denial), None) => return Err(refused(denial)),
        }
    }
    changed |= links.rewrite_document(&mut document);
    if let Some(sealing) = sealing {
        changed |= sealing.seal_document(&mut document);
    }
    Ok(if changed {
        Bytes::from(document.to_string())
    } else {
        bytes
    })
}

/// Why an upstream answer phigate needed whole could not be read.
enum Unread {
    /// Over [`MAX_CHECKED_RESPONSE_BYTES`]; each caller says what that means for it.
    TooLarge,
    /// The upstream's fault, counted: 504 past a deadline, 502 when the body broke off.
    Failed(Denial),
}

/// Reads an upstream answer whole, within its deadlines, before any of it reaches the client.
async fn read_whole(body: TimedBody<Incoming>, metrics: &Metrics) -> Result<Bytes, Unread> {
    match Limited::new(body, MAX_CHECKED_RESPONSE_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(Unread::TooLarge),
        Err(err) => {
            let kind = body_failure(&err);
            metrics.record_upstream_body_failure(kind);
            tracing::warn!(
                upstream.body = kind,
                "upstream answer could not be read whole"
            );
            Err(Unread::Failed(if BodyTimedOut::is(&err) {
                Denial::UpstreamTimedOut
            } else {
                Denial::UpstreamMalformed
            }))
        }
    }
}

/// The `phigate_upstream_body_failures_total` kind of a body error.
fn body_failure(err: &BoxError) -> &'static str {
    if BodyTimedOut::is(err) {
        "timed_out"
    } else {
        "broken"
    }
}

/// Whether a response declares a JSON body (`application/fhir+json`, `application/json`).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            let essence = essence.trim();
            essence.eq_ignore_ascii_case("application/fhir+json")
                || essence.eq_ignore_ascii_case("application/json")
        })
}

/// The permit's obligation to seal links phigate cannot authorise from their shape.
struct Sealing<'a> {
    links: &'a Links,
    sealer: &'a LinkSealer,
    seals: LinkSeals,
    holder: &'a Holder<'a>,
}

impl Sealing<'_> {
    /// A kick-off's status URL (`Content-Location`), sealed to the client that started it.
    fn seal_headers(&self, headers: &mut HeaderMap) {
        if self.seals != LinkSeals::ExportStatus {
            return;
        }
        let sealed = headers
            .get(header::CONTENT_LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|url| {
                self.links.seal(
                    url,
                    self.sealer,
                    LinkKind::ExportStatus,
                    self.holder,
                    |_| true,
                )
            })
            .and_then(|url| HeaderValue::from_str(&url).ok());
        if let Some(value) = sealed {
            headers.insert(header::CONTENT_LOCATION, value);
        }
    }

    /// Page links at the server base (opaque page tokens), or an export manifest's file URLs.
    fn seal_document(&self, document: &mut Value) -> bool {
        let (members, kind, wanted): (&[&str], LinkKind, fn(&str) -> bool) = match self.seals {
            LinkSeals::Pages => (&["link"], LinkKind::Page, |path| path == "/"),
            LinkSeals::ExportFiles => (
                &["output", "error", "deleted"],
                LinkKind::ExportFile,
                |_| true,
            ),
            LinkSeals::ExportStatus => return false,
        };
        let mut changed = false;
        for member in members {
            let Some(items) = document.get_mut(*member).and_then(Value::as_array_mut) else {
                continue;
            };
            for item in items {
                let sealed = item
                    .get("url")
                    .and_then(Value::as_str)
                    .and_then(|url| self.links.seal(url, self.sealer, kind, self.holder, wanted));
                if let Some(url) = sealed {
                    item["url"] = Value::String(url);
                    changed = true;
                }
            }
        }
        changed
    }
}
