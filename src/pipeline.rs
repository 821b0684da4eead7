//! The request decision chain. Every allow or deny is decided here, in this order:
//! audit room → request hygiene → route → blocked address → (public? read the body under the
//! unauthenticated cap) → bearer token → verification → binding → revocation → blocked token,
//! client or subject, or re-authentication cut-off → the whole body (bounded, by a deadline) →
//! scope authorization. Each step is a small module with its own tests; this file only
//! sequences them. It never forwards anything and never builds a response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, request};

use crate::audit::AuditGate;
use crate::binding::{self, Binding, DpopChecker};
use crate::config::RequestLimits;
use crate::denial::Denial;
use crate::hygiene;
use crate::monitor::Hooks;
use crate::peer::ClientAddress;
use crate::policy::fhir::FhirDenial;
use crate::policy::seal::{self, LinkSealer, OpenedLink};
use crate::policy::{
    Content, Grant, Permit, PolicyFault, PolicyStore, PolicyTable, Refusal, Route,
};
use crate::record::Slot;
use crate::request_body::{self, RequestBody};
use crate::revocation::Revocation;
use crate::tls::ClientIdentity;
use crate::token::{self, BearerToken, ClientId, CredentialFault, Scheme, VerifiedToken, Verifier};

/// What the connection proved about the client.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The TCP peer, or the client a trusted load balancer's PROXY header announced
    /// (`listen.proxy_protocol`).
    pub peer: SocketAddr,
    /// The verified client certificate, if any.
    pub identity: ClientIdentity,
    /// Whether the connection is TLS (false only behind `insecure_plaintext`).
    pub tls: bool,
}

/// What the chain learned on the way, for the log line and for forwarding.
#[derive(Debug, Default)]
pub struct Facts {
    /// The client behind trusted proxies (`listen.trusted_proxies`), when the service worked it
    /// out; otherwise the TCP peer is the client.
    pub client: Option<ClientAddress>,
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
    /// Room in the audit queue for this request's record.
    pub audit_slot: Option<Slot>,
}

impl Facts {
    /// The address the request is held to: the client behind trusted proxies, or the TCP peer.
    pub fn client_ip(&self, conn: &Connection) -> std::net::IpAddr {
        self.client
            .as_ref()
            .map_or_else(|| conn.peer.ip(), |client| client.address)
    }
}

/// The decision chain over a policy and a token verifier.
pub struct Pipeline {
    policy: Arc<PolicyStore>,
    verifier: Arc<Verifier>,
    revocation: Arc<Revocation>,
    dpop: Arc<DpopChecker>,
    limits: RequestLimits,
    sealer: Arc<LinkSealer>,
    audit: Option<AuditGate>,
    monitor: Hooks,
}

impl Pipeline {
    /// A chain deciding with `policy`, `verifier`, `revocation` and `dpop`, under `limits`;
    /// `sealer` opens links the upstream handed out earlier; `monitor` holds what the monitor's
    /// actions refuse.
    pub fn new(
        policy: Arc<PolicyStore>,
        verifier: Arc<Verifier>,
        revocation: Arc<Revocation>,
        dpop: Arc<DpopChecker>,
        limits: RequestLimits,
        sealer: Arc<LinkSealer>,
        monitor: Hooks,
    ) -> Self {
        Self {
            policy,
            verifier,
            revocation,
            dpop,
            limits,
            sealer,
            monitor,
            audit: None,
        }
    }

    /// The same chain, refusing what the audit trail behind `gate` has no room to record.
    pub fn with_audit(self, gate: AuditGate) -> Self {
        Self {
            audit: Some(gate),
            ..self
        }
    }

    /// Opens the seal on a link the upstream handed out earlier (a page, an export's status or
    /// files), for this token's identity; a seal that does not open is refused.
    fn open_sealed_link(
        &self,
        route: &Route<'_>,
        token: &VerifiedToken,
    ) -> Result<Option<OpenedLink>, Denial> {
        let Some(query) = route.query().filter(|_| route.is_fhir()) else {
            return Ok(None);
        };
        let sealed = query
            .split('&')
            .any(|pair| pair.starts_with(seal::SEAL_PARAM));
        if !sealed {
            return Ok(None);
        }
        self.sealer
            .open(&token.holder(), route.path().as_str(), query)
            .map(Some)
            .ok_or_else(|| Denial::Refused(Refusal::from(FhirDenial::LinkSealInvalid)))
    }

    /// The bounds every request is held to.
    pub fn limits(&self) -> &RequestLimits {
        &self.limits
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
        // Cannot audit ⇒ refuse: room for this request's record is taken before anything else,
        // so every decision that follows, allow or deny, has somewhere to be written.
        if let Some(gate) = &self.audit {
            facts.audit_slot = gate.admit()?;
        }
        // One snapshot decides the whole request, even if a reload lands meanwhile.
        let policy = self.policy.snapshot();
        facts.policy_version = Some(Arc::from(policy.version()));
        let route = route(&policy, req, &self.limits)?;
        facts.rule = Some(Arc::from(route.rule_name()));
        // Before any token work, so a blocked address cannot keep the verifier busy.
        self.monitor
            .blocks
            .check_address(facts.client_ip(conn))
            .map_err(Denial::Blocked)?;
        if route.is_public() {
            // No token vouches for this client: whatever it sends is read under the small cap.
            let body = body
                .complete(self.limits.max_unauthenticated_body_bytes)
                .await?;
            return permit_public(route, req, body);
        }
        let (bearer, scheme) = credential(req)?;
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
                    bearer.digest(),
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
            .or_else(|| policy.client_binding(verified.client_id.as_ref().map(ClientId::as_str)));
        binding::enforce(required, binding).map_err(Denial::Binding)?;
        facts.binding = Some(binding);
        let digest = *bearer.digest();
        self.monitor.verified(&verified, &bearer);
        facts.bearer = Some(bearer);
        facts.scheme = Some(scheme);
        if scheme == Scheme::Dpop {
            // The binding step verified exactly one proof; that one travels with the token.
            facts.dpop_proof = req.headers.get("dpop").cloned();
        }
        self.revocation
            .check(&verified, &digest)
            .map_err(Denial::Revocation)?;
        self.monitor
            .blocks
            .check_token(&verified)
            .map_err(Denial::Blocked)?;
        // The whole body is read before anything is forwarded, so a framing error is answered
        // as the client's (400) and the upstream never sees half a request.
        let body = body.complete(self.limits.max_body_bytes).await?;
        let opened = self.open_sealed_link(&route, &verified)?;
        authorize(route, &verified, req, body, opened.as_ref())
    }
}

// === the steps, shared with `explain` and `test` ===
//
// `Pipeline::decide` runs them with live dependencies; `cli::offline` runs the very same
// functions around a token it was given, so an explanation can never drift from the gateway.

/// Steps 1 and 2: request hygiene, then the route — which comes first only to learn what the
/// request needs (public? which scopes?).
pub fn route<'p>(
    policy: &'p PolicyTable,
    req: &request::Parts,
    limits: &RequestLimits,
) -> Result<Route<'p>, Denial> {
    hygiene::screen(req, limits)?;
    policy
        .resolve(&req.method, &req.uri)
        .map_err(|fault| match fault {
            PolicyFault::MalformedPath(fault) => Denial::Path(fault),
            PolicyFault::NoMatchingRule => Denial::NoMatchingRule,
            PolicyFault::AmbiguousPath => Denial::AmbiguousPath,
        })
}

/// Step 3: a public route's permit, once its (small) body was read.
pub fn permit_public(
    route: Route<'_>,
    req: &request::Parts,
    body: &[u8],
) -> Result<Permit, Denial> {
    // A token in the URL leaks into upstream logs even where none is needed.
    if req
        .uri
        .query()
        .is_some_and(token::bearer::query_carries_token)
    {
        return Err(Denial::Credential(CredentialFault::InQuery));
    }
    refuse_form_token(req, body)?;
    route.permit_public().ok_or(Denial::NoMatchingRule)
}

/// Step 4: the one credential of a request that needs a token.
pub fn credential(req: &request::Parts) -> Result<(BearerToken, Scheme), Denial> {
    token::credential_from(&req.headers, req.uri.query()).map_err(Denial::Credential)
}

/// Step 8: the policy's verdict on a verified token, the request and its whole body.
pub fn authorize(
    route: Route<'_>,
    token: &VerifiedToken,
    req: &request::Parts,
    body: &[u8],
    opened: Option<&OpenedLink>,
) -> Result<Permit, Denial> {
    refuse_form_token(req, body)?;
    let grant = Grant {
        scopes: &token.scopes,
        patient: token.patient.as_deref(),
        token_age: token.issued_at.map(age_of),
    };
    let justification = match route.break_glass_header() {
        Some(name) => single_header(&req.headers, name.as_str())?,
        None => None,
    };
    let content = Content {
        body: route.needs_body().then_some(body),
        form: request_body::is_form(&req.headers),
        // More than one, or one that is not text, is malformed and never forwarded unread.
        if_none_exist: single_header(&req.headers, "if-none-exist")?,
        opened,
        justification,
    };
    route.authorize(&grant, &content).map_err(Denial::Refused)
}

/// How long ago a token was issued at `iat` (seconds since the epoch); zero for an `iat` in
/// the future, which verification admitted within the clock skew.
fn age_of(iat: i64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Duration::from_secs(u64::try_from(now.saturating_sub(iat)).unwrap_or(0))
}

/// RFC 6750 §2.2 (form-encoded body parameter) is not offered: a form body naming
/// `access_token` is refused, and it is never forwarded.
fn refuse_form_token(req: &request::Parts, body: &[u8]) -> Result<(), Denial> {
    if !request_body::is_form(&req.headers) {
        return Ok(());
    }
    if token::bearer::query_carries_token(&String::from_utf8_lossy(body)) {
        return Err(Denial::TokenInBody);
    }
    Ok(())
}

/// The one value of a header the policy reads, if present; repeated or non-text is refused.
fn single_header<'a>(headers: &'a http::HeaderMap, name: &str) -> Result<Option<&'a str>, Denial> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Denial::MalformedHeader);
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| Denial::MalformedHeader)
}
