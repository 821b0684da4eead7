//! The request decision chain. Every allow or deny is decided here, in this order:
//! request hygiene → route → (public?) → bearer token → verification → [binding, revocation:
//! issue #4] → scope authorization. Each step is a small module with its own tests; this file
//! only sequences them. It never forwards anything and never builds a response.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::HOST;
use http::{HeaderValue, Method, Version, request};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::binding::{self, Binding, DpopChecker};
use crate::denial::Denial;
use crate::policy::{Grant, MAX_INSPECTED_BODY_BYTES, Permit, PolicyFault, PolicyStore};
use crate::request_body::{self, RequestBody};
use crate::revocation::Revocation;
use crate::tls::ClientIdentity;
use crate::token::{self, BearerToken, CredentialFault, Scheme, VerifiedToken, Verifier};

/// What the connection proved about the client.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The verified client certificate, if any.
    pub identity: ClientIdentity,
    /// Whether the connection is TLS (false only behind `insecure_plaintext`).
    pub tls: bool,
}

/// What the chain learned on the way, for the log line and for forwarding.
#[derive(Debug, Default)]
pub struct Facts {
    /// The matched rule.
    pub rule: Option<Arc<str>>,
    /// The verified token, once verification succeeded.
    pub token: Option<Arc<VerifiedToken>>,
    /// The raw bearer, kept only for `upstream.forward_token`.
    pub bearer: Option<BearerToken>,
    /// The scheme the token came with, so a forwarded token keeps it.
    pub scheme: Option<Scheme>,
    /// The DPoP proof that was verified, kept only to forward beside a `DPoP` token.
    pub dpop_proof: Option<HeaderValue>,
    /// Fingerprint of the policy that decided the request.
    pub policy_version: Option<Arc<str>>,
    /// How the token was bound to the client.
    pub binding: Option<Binding>,
}

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

/// Headers that ask a server to treat the request as another method.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The decision chain over a policy and a token verifier.
pub struct Pipeline {
    policy: Arc<PolicyStore>,
    verifier: Arc<Verifier>,
    revocation: Arc<Revocation>,
    dpop: Arc<DpopChecker>,
}

impl Pipeline {
    /// A chain deciding with `policy`, `verifier`, `revocation` and `dpop`.
    pub fn new(
        policy: Arc<PolicyStore>,
        verifier: Arc<Verifier>,
        revocation: Arc<Revocation>,
        dpop: Arc<DpopChecker>,
    ) -> Self {
        Self {
            policy,
            verifier,
            revocation,
            dpop,
        }
    }

    /// The DPoP nonce to advertise on responses, when nonces are required.
    pub fn dpop_nonce(&self) -> Option<String> {
        self.dpop.current_nonce()
    }

    /// Decides one request from its head, its body (read only when a step needs it) and its
    /// connection.
    pub async fn decide(
        &self,
        req: &request::Parts,
        body: &mut RequestBody,
        conn: &Connection,
        facts: &mut Facts,
    ) -> Result<Permit, Denial> {
        screen(req)?;
        // One snapshot decides the whole request, even if a reload lands meanwhile.
        let policy = self.policy.snapshot();
        facts.policy_version = Some(Arc::from(policy.version()));
        // The route comes first only to learn what the request needs (public? which scopes?).
        let route = policy
            .resolve(&req.method, &req.uri)
            .map_err(|fault| match fault {
                PolicyFault::MalformedPath(fault) => Denial::Path(fault),
                PolicyFault::NoMatchingRule => Denial::NoMatchingRule,
            })?;
        facts.rule = Some(Arc::from(route.rule_name()));
        if route.is_public() {
            // A token in the URL leaks into upstream logs even where none is needed.
            if req
                .uri
                .query()
                .is_some_and(token::bearer::query_carries_token)
            {
                return Err(Denial::Credential(CredentialFault::InQuery));
            }
            refuse_form_token(req, body).await?;
            return route.permit_public().ok_or(Denial::NoMatchingRule);
        }
        let (bearer, scheme) =
            token::credential_from(&req.headers, req.uri.query()).map_err(Denial::Credential)?;
        // RFC 9449 §7.1: a DPoP request is answered with a DPoP challenge.
        let token_denial = match scheme {
            Scheme::Dpop => Denial::DpopToken,
            Scheme::Bearer => Denial::Token,
        };
        let verified = self.verifier.verify(&bearer).await.map_err(token_denial)?;
        let verified = self
            .verifier
            .complete(
                verified,
                &bearer,
                route.requires_introspection(),
                route.wants_launch_patient(),
            )
            .await
            .map_err(token_denial)?;
        facts.token = Some(Arc::clone(&verified));
        let binding = match scheme {
            Scheme::Dpop => self
                .dpop
                .check(
                    &verified,
                    bearer.expose(),
                    &req.headers,
                    &req.method,
                    req.uri.path(),
                )
                .await
                .map_err(Denial::Binding)?,
            Scheme::Bearer => binding::check(&verified, &conn.identity).map_err(Denial::Binding)?,
        };
        let required = route
            .required_binding()
            .or_else(|| policy.client_binding(verified.client_id.as_deref()));
        binding::enforce(required, binding).map_err(Denial::Binding)?;
        facts.binding = Some(binding);
        let token_hash = URL_SAFE_NO_PAD.encode(token::sha256(bearer.expose().as_bytes()));
        facts.bearer = Some(bearer);
        facts.scheme = Some(scheme);
        if scheme == Scheme::Dpop {
            // The binding step verified exactly one proof; that one travels with the token.
            facts.dpop_proof = req.headers.get("dpop").cloned();
        }
        self.revocation
            .check(&verified, &token_hash)
            .map_err(Denial::Revocation)?;
        refuse_form_token(req, body).await?;
        let inspected = if route.needs_body() {
            Some(body.buffer(MAX_INSPECTED_BODY_BYTES).await?.clone())
        } else {
            None
        };
        let grant = Grant {
            scopes: &verified.scopes,
            patient: verified.patient.as_deref(),
        };
        route
            .authorize(&grant, inspected.as_deref())
            .map_err(Denial::Refused)
    }
}

/// RFC 6750 §2.2 (form-encoded body parameter) is not offered: a form body naming
/// `access_token` is refused, and it is never forwarded.
async fn refuse_form_token(req: &request::Parts, body: &mut RequestBody) -> Result<(), Denial> {
    if !request_body::is_form(&req.headers) {
        return Ok(());
    }
    let bytes = body.buffer(request_body::MAX_FORM_BODY_BYTES).await?;
    if token::bearer::query_carries_token(&String::from_utf8_lossy(bytes)) {
        return Err(Denial::TokenInBody);
    }
    Ok(())
}

/// Request hygiene that no policy can override.
fn screen(req: &request::Parts) -> Result<(), Denial> {
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
    if req.uri.query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair == "_method" || pair.starts_with("_method="))
    }) {
        return Err(Denial::MethodOverride);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(method: &str, target: &str, headers: &[(&str, &str)], expected: Option<&str>) {
        let mut builder = http::Request::builder().method(method).uri(target);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        assert_eq!(
            screen(&parts).err().map(|d| d.reason()),
            expected,
            "{method} {target} {headers:?}"
        );
    }

    #[test]
    fn screen_refuses_methods_overrides_and_bad_hosts() {
        check("GET", "/Patient/1", &[("host", "gw")], None);
        check(
            "TRACE",
            "/Patient/1",
            &[("host", "gw")],
            Some("method_not_allowed"),
        );
        check(
            "CONNECT",
            "gw:443",
            &[("host", "gw")],
            Some("method_not_allowed"),
        );
        check(
            "get",
            "/Patient/1",
            &[("host", "gw")],
            Some("method_not_allowed"),
        );
        check(
            "FOO",
            "/Patient/1",
            &[("host", "gw")],
            Some("method_not_allowed"),
        );
        check("GET", "/Patient/1", &[], Some("host_invalid"));
        check(
            "GET",
            "/Patient/1",
            &[("host", "a"), ("host", "b")],
            Some("host_invalid"),
        );
        check(
            "POST",
            "/Patient/1",
            &[("host", "gw"), ("x-http-method-override", "GET")],
            Some("method_override"),
        );
        check(
            "GET",
            "/Patient/1",
            &[("host", "gw"), ("X-HTTP-Method", "DELETE")],
            Some("method_override"),
        );
        check(
            "GET",
            "/Patient/1",
            &[("host", "gw"), ("X-Method-Override", "PUT")],
            Some("method_override"),
        );
        check(
            "POST",
            "/Patient?_method=DELETE",
            &[("host", "gw")],
            Some("method_override"),
        );
        check("GET", "/Patient?_methodical=1", &[("host", "gw")], None);
    }
}
