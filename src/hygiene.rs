//! Request hygiene that no policy can override: the first step of the decision chain, run on the
//! request head before any route is looked up. It refuses methods phigate never forwards, a
//! missing or repeated `Host`, method overrides, header names that imitate a header phigate owns
//! (`X_Phigate_Subject`, `x-forwarded_for`: a framework that folds `_` into `-` would read them
//! as phigate's own), and URIs with more path segments or query parameters than configured. It
//! also names the headers a client may never send upstream (identity, forwarding, routing
//! overrides, client certificates), which the forwarder strips. It reads no body and no token.

use http::header::HOST;
use http::{Method, Version, request};

use crate::config::RequestLimits;
use crate::denial::Denial;

/// Methods phigate forwards; RFC 9110 §9.1 methods are case-sensitive, so `get` is refused.
const FORWARDED_METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// Headers that ask a server to treat the request as another method (SECURITY.md I-01).
const METHOD_OVERRIDES: [&str; 4] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
];

/// Headers only phigate may send upstream. A client's copies are removed before phigate adds its
/// own, because upstreams and their frameworks trust them:
/// - identity: phigate's `x-phigate-*` namespace (see [`PROXY_OWNED_PREFIXES`]);
/// - forwarding (RFC 7239 §8, oauth2-proxy #3506): who the client is and how it connected;
/// - routing overrides that frameworks honour in place of the request line (Symfony and
///   Laravel `X-Original-URL`/`X-Rewrite-URL`, Traefik and nginx `X-Forwarded-Uri`/`-Prefix`,
///   Envoy `X-Envoy-Original-Path`, Next.js `X-Middleware-Subrequest`, CVE-2025-29927);
/// - client certificates (RFC 9440, RFC 9700 §4.13): only the TLS handshake proves one.
const PROXY_OWNED: &[&str] = &[
    // forwarding
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-protocol",
    "x-forwarded-by",
    "x-real-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-original-forwarded-for",
    "x-url-scheme",
    "front-end-https",
    // routing overrides
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-forwarded-uri",
    "x-forwarded-prefix",
    "x-forwarded-path",
    "x-original-path",
    "x-original-host",
    "x-host",
    "x-http-host-override",
    "x-middleware-subrequest",
    "x-forwarded-authority",
    "x-forwarded-server-name",
    // client certificates
    "client-cert",
    "client-cert-chain",
    "x-client-cert",
    "x-ssl-client-cert",
    "x-forwarded-client-cert",
    "ssl-client-cert",
];

/// Prefixes of header families only phigate may send: its own identity headers, and Envoy's
/// internal headers, which an Envoy-fronted upstream trusts (`x-envoy-original-path`,
/// `x-envoy-internal`, `x-envoy-external-address`).
const PROXY_OWNED_PREFIXES: &[&str] = &["x-phigate-", "x-envoy-"];

/// Credential and hop-by-hop fields whose imitation is refused as well: a server that folds `_`
/// into `-` would read `Proxy_Authorization` or `Transfer_Encoding` as the real thing.
const IMITATED_FIELDS: &[&str] = &[
    "authorization",
    "dpop",
    "proxy-authorization",
    "connection",
    "transfer-encoding",
    "content-length",
    "host",
    "te",
    "upgrade",
];

/// Whether a client-sent header of this (lower-case) name is removed before forwarding.
pub fn is_proxy_owned(name: &str) -> bool {
    PROXY_OWNED.contains(&name) || PROXY_OWNED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Refuses what no policy can allow; `limits` bound the URI.
pub fn screen(req: &request::Parts, limits: &RequestLimits) -> Result<(), Denial> {
    if !FORWARDED_METHODS.contains(&req.method) {
        return Err(Denial::MethodNotAllowed);
    }
    // RFC 9112 §3.2: a request without exactly one Host is answered 400. HTTP/2 carries the
    // authority in the URI and may omit Host.
    let hosts = req.headers.get_all(HOST).iter().count();
    let needs_host = req.version == Version::HTTP_11;
    if hosts > 1 || (needs_host && hosts == 0) {
        return Err(Denial::BadHost);
    }
    if METHOD_OVERRIDES
        .iter()
        .any(|name| req.headers.contains_key(*name))
    {
        return Err(Denial::MethodOverride);
    }
    if req.headers.keys().any(|name| imitates_owned(name.as_str())) {
        return Err(Denial::HeaderLookalike);
    }
    check_uri_size(req, limits)?;
    if req.uri.query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair == "_method" || pair.starts_with("_method="))
    }) {
        return Err(Denial::MethodOverride);
    }
    Ok(())
}

/// A name that is not itself reserved but reads as a reserved one once `_` is folded into `-`
/// (CVE-2025-64484 class). Names arrive lower-cased, and field names cannot hold whitespace
/// (RFC 9110 §5.1; hyper and h2 refuse it), so case and padding need no folding here.
fn imitates_owned(name: &str) -> bool {
    if !name.contains('_') {
        return false;
    }
    let folded = name.replace('_', "-");
    is_proxy_owned(&folded)
        || IMITATED_FIELDS.contains(&folded.as_str())
        || METHOD_OVERRIDES.contains(&folded.as_str())
}

/// RFC 9110 §15.5.15: a URI with more segments or parameters than configured is 414, answered
/// before any routing or parsing work scales with it.
fn check_uri_size(req: &request::Parts, limits: &RequestLimits) -> Result<(), Denial> {
    let segments = req.uri.path().bytes().filter(|b| *b == b'/').count();
    if segments > limits.max_path_segments {
        return Err(Denial::UriTooLong);
    }
    let params = req
        .uri
        .query()
        .map_or(0, |q| q.split('&').filter(|p| !p.is_empty()).count());
    if params > limits.max_query_params {
        return Err(Denial::UriTooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
