//! Every refusal phigate gives, and the only place error responses are built. A `Denial` is a
//! decision, not a program fault: its variants carry no request data (only configuration, such as
//! the scopes a rule accepts), so nothing the client sent can be echoed. Each variant maps, by
//! one exhaustive match, to a status, an RFC 6750 challenge, a fixed FHIR OperationOutcome and a
//! documented reason code for logs and metrics.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::binding::BindingFault;
use crate::monitor::BlockFault;
use crate::policy::{PathFault, Refusal, RefusalClass};
use crate::revocation::RevocationFault;
use crate::token::{CredentialFault, TokenFault};

/// Why a request was refused.
#[derive(Debug, Clone)]
pub enum Denial {
    /// The `Authorization` header was missing, foreign, repeated or malformed.
    Credential(CredentialFault),
    /// The token failed verification, or its issuer's keys are unavailable.
    Token(TokenFault),
    /// As `Token`, for a request that used the `DPoP` scheme (RFC 9449 §7.1: DPoP challenge).
    DpopToken(TokenFault),
    /// The token's sender constraint was not met.
    Binding(BindingFault),
    /// The token is revoked, or a revocation source is stale.
    Revocation(RevocationFault),
    /// The audit trail has no room for this request's record (`audit.when_full: refuse`).
    AuditUnavailable,
    /// The monitor blocked the address, token, client or subject, or demands re-authentication.
    Blocked(BlockFault),
    /// The path cannot be normalised safely.
    Path(PathFault),
    /// An upstream may serve the path as one another rule decides (letter case, look-alikes).
    AmbiguousPath,
    /// No policy rule covers this method and path (default deny).
    NoMatchingRule,
    /// The policy refused: scopes, compartment, search parameters, Bundle entries.
    Refused(Refusal),
    /// A method phigate never forwards (TRACE, CONNECT, lower-case or unknown methods).
    MethodNotAllowed,
    /// `X-HTTP-Method-Override` and friends: refused, never followed.
    MethodOverride,
    /// `Host` missing or repeated (RFC 9112 §3.2).
    BadHost,
    /// A form body carrying `access_token` (RFC 6750 §2.2 is not offered).
    TokenInBody,
    /// A header name that imitates one phigate owns once `_` reads as `-`.
    HeaderLookalike,
    /// A header the policy reads (`If-None-Exist`) is repeated or not text.
    MalformedHeader,
    /// More path segments or query parameters than `listen.limits` allow.
    UriTooLong,
    /// The request body exceeded its cap.
    BodyTooLarge,
    /// The request body's framing is broken (chunk sizes, CRLFs, a body cut short).
    BodyMalformed,
    /// The request body did not arrive within `listen.limits.body_timeout`.
    BodyTimedOut,
    /// A read in patient context that the upstream answered 404 or 410: answered exactly like
    /// a resource of another patient, so neither tells the other apart.
    ResourceNotFound,
    /// The upstream could not be reached.
    UpstreamUnreachable,
    /// The upstream did not answer within `upstream.timeout`, or an answer phigate reads whole
    /// did not arrive within `upstream.body_timeout` / `body_idle_timeout`.
    UpstreamTimedOut,
    /// The upstream's answer cannot be trusted: `Content-Length` beside `Transfer-Encoding`
    /// (RFC 9112 §6.3), or a body phigate reads whole that broke off.
    UpstreamMalformed,
    /// The upstream asked for credentials (401, 407): its own configuration, which the client
    /// can do nothing about, so the client is never asked for them.
    UpstreamChallenge,
}

/// The `WWW-Authenticate` challenge of a denial (RFC 6750 §3).
enum Challenge {
    None,
    /// RFC 6750 §3.1: a request without credentials gets no error code.
    Bare,
    Error(&'static str),
    InsufficientScope(String),
    /// RFC 9449 §7.1: a `DPoP` challenge with an error code and the accepted algorithms.
    Dpop(&'static str),
    /// RFC 9449 §7.2: a DPoP-bound token sent as `Bearer`. Both schemes' `invalid_token`
    /// challenges, so a client learns that this token needs the `DPoP` scheme and a proof.
    BearerAndDpop,
}

/// OperationOutcome `issue.code` values (FHIR R4 IssueType).
#[derive(Clone, Copy)]
enum IssueCode {
    Login,
    Invalid,
    Forbidden,
    NotSupported,
    TooLong,
    Transient,
    Timeout,
    Exception,
    NotFound,
}

impl IssueCode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Invalid => "invalid",
            Self::Forbidden => "forbidden",
            Self::NotSupported => "not-supported",
            Self::TooLong => "too-long",
            Self::Transient => "transient",
            Self::Timeout => "timeout",
            Self::Exception => "exception",
            Self::NotFound => "not-found",
        }
    }
}

/// One fixed description per outcome class (SECURITY.md O-01, O-05): expired, revoked, unknown
/// key and bad signature are told apart only in logs and metrics.
const INVALID_TOKEN: &str = "The access token is invalid";

/// One answer for "not there" and "not yours" (issue #7 point 5: a patient-confined token
/// must not learn whether another patient's resource exists).
const NOT_FOUND: (StatusCode, Challenge, IssueCode, &str) = (
    StatusCode::NOT_FOUND,
    Challenge::None,
    IssueCode::NotFound,
    "The resource was not found",
);

impl Denial {
    /// The documented reason code for logs and the `reason` metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Credential(fault) => match fault {
                CredentialFault::Missing => "credentials_missing",
                CredentialFault::UnsupportedScheme => "scheme_unsupported",
                CredentialFault::Multiple => "multiple_credentials",
                CredentialFault::InQuery => "token_in_query",
                CredentialFault::Malformed => "authorization_malformed",
                CredentialFault::TooLarge => "token_too_large",
            },
            Self::Token(fault) | Self::DpopToken(fault) => fault.reason(),
            Self::Binding(fault) => fault.reason(),
            Self::Revocation(RevocationFault::Revoked) | Self::Blocked(BlockFault::Revoked) => {
                "revoked"
            }
            Self::Revocation(RevocationFault::Stale) => "revocation_stale",
            Self::AuditUnavailable => "audit_unavailable",
            Self::Blocked(BlockFault::Blocked) => "blocked",
            Self::Blocked(BlockFault::ReauthenticationRequired) => "reauthentication_required",
            Self::Path(_) => "path_malformed",
            Self::AmbiguousPath => "path_ambiguous",
            Self::NoMatchingRule => "no_matching_rule",
            Self::Refused(refusal) => refusal.reason(),
            Self::MethodNotAllowed => "method_not_allowed",
            Self::MethodOverride => "method_override",
            Self::BadHost => "host_invalid",
            Self::TokenInBody => "token_in_body",
            Self::HeaderLookalike => "header_lookalike",
            Self::MalformedHeader => "header_malformed",
            Self::UriTooLong => "uri_too_long",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyMalformed => "body_malformed",
            Self::BodyTimedOut => "body_timeout",
            Self::ResourceNotFound => "not_found",
            Self::UpstreamUnreachable => "upstream_unreachable",
            Self::UpstreamTimedOut => "upstream_timeout",
            Self::UpstreamMalformed => "upstream_malformed",
            Self::UpstreamChallenge => "upstream_challenge",
        }
    }

    #[deny(clippy::wildcard_enum_match_arm)] // A new Denial must choose its response.
    fn outcome(&self) -> (StatusCode, Challenge, IssueCode, &'static str) {
        use StatusCode as S;
        match self {
            Self::Credential(CredentialFault::Missing | CredentialFault::UnsupportedScheme) => (
                S::UNAUTHORIZED,
                Challenge::Bare,
                IssueCode::Login,
                "Authentication is required",
            ),
            Self::Credential(CredentialFault::TooLarge) => (
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                Challenge::Error("invalid_request"),
                IssueCode::TooLong,
                "The request header is too large",
            ),
            Self::Credential(
                CredentialFault::Multiple | CredentialFault::InQuery | CredentialFault::Malformed,
            )
            | Self::TokenInBody => (
                S::BAD_REQUEST,
                Challenge::Error("invalid_request"),
                IssueCode::Invalid,
                "The request carries credentials in an unsupported way",
            ),
            // Our dependency failed, not the token: no `invalid_token`, so the client keeps it.
            Self::Token(TokenFault::KeysUnavailable | TokenFault::IntrospectionUnavailable)
            | Self::DpopToken(TokenFault::KeysUnavailable | TokenFault::IntrospectionUnavailable) => {
                (
                    S::SERVICE_UNAVAILABLE,
                    Challenge::None,
                    IssueCode::Transient,
                    "The service is temporarily unavailable",
                )
            }
            // Cannot audit ⇒ refuse; the token is fine, so no `invalid_token`.
            Self::Revocation(RevocationFault::Stale) | Self::AuditUnavailable => (
                S::SERVICE_UNAVAILABLE,
                Challenge::None,
                IssueCode::Transient,
                "The service is temporarily unavailable",
            ),
            Self::Binding(BindingFault::ReplayStoreUnavailable) => (
                S::SERVICE_UNAVAILABLE,
                Challenge::None,
                IssueCode::Transient,
                "The service is temporarily unavailable",
            ),
            // RFC 9449 §8: the client retries with the nonce from the `DPoP-Nonce` header.
            Self::Binding(BindingFault::NonceRequired) => (
                S::UNAUTHORIZED,
                Challenge::Dpop("use_dpop_nonce"),
                IssueCode::Login,
                "A DPoP nonce is required",
            ),
            // RFC 9449 §7.1: proof failures are `invalid_dpop_proof` under the DPoP scheme.
            Self::Binding(BindingFault::ProofMissing | BindingFault::Proof(_)) => (
                S::UNAUTHORIZED,
                Challenge::Dpop("invalid_dpop_proof"),
                IssueCode::Login,
                "The DPoP proof is invalid",
            ),
            Self::Binding(BindingFault::ProofKeyMismatch | BindingFault::NotDpopBound)
            | Self::DpopToken(_) => (
                S::UNAUTHORIZED,
                Challenge::Dpop("invalid_token"),
                IssueCode::Login,
                INVALID_TOKEN,
            ),
            Self::Binding(BindingFault::DpopProofRequired) => (
                S::UNAUTHORIZED,
                Challenge::BearerAndDpop,
                IssueCode::Login,
                INVALID_TOKEN,
            ),
            // RFC 8705 §3 and RFC 9449 §7: a binding failure is an invalid token.
            Self::Binding(
                BindingFault::MissingCertificate
                | BindingFault::CertificateMismatch
                | BindingFault::BindingRequired,
            )
            | Self::Revocation(RevocationFault::Revoked)
            | Self::Blocked(BlockFault::Revoked)
            // Like a revocation cut-off: a new token (a new login) is the way back.
            | Self::Blocked(BlockFault::ReauthenticationRequired) => (
                S::UNAUTHORIZED,
                Challenge::Error("invalid_token"),
                IssueCode::Login,
                INVALID_TOKEN,
            ),
            Self::Token(_) => (
                S::UNAUTHORIZED,
                Challenge::Error("invalid_token"),
                IssueCode::Login,
                INVALID_TOKEN,
            ),
            Self::Path(_)
            | Self::AmbiguousPath
            | Self::BadHost
            | Self::MethodOverride
            | Self::HeaderLookalike
            | Self::MalformedHeader
            | Self::BodyMalformed => (
                S::BAD_REQUEST,
                Challenge::Error("invalid_request"),
                IssueCode::Invalid,
                "The request is malformed",
            ),
            // 403, not 401: a new token would be refused just the same while the block lasts,
            // so no challenge invites the client to fetch one.
            Self::Blocked(BlockFault::Blocked) => (
                S::FORBIDDEN,
                Challenge::None,
                IssueCode::Forbidden,
                "The request is not permitted",
            ),
            Self::NoMatchingRule => (
                S::FORBIDDEN,
                Challenge::Error("insufficient_scope"),
                IssueCode::Forbidden,
                "The request is not permitted",
            ),
            Self::Refused(refusal) => match (refusal.class(), refusal.needed()) {
                (RefusalClass::Forbidden, Some(needed)) => (
                    S::FORBIDDEN,
                    Challenge::InsufficientScope(needed.to_owned()),
                    IssueCode::Forbidden,
                    "The access token does not grant this request",
                ),
                (RefusalClass::Forbidden, None) => (
                    S::FORBIDDEN,
                    Challenge::Error("insufficient_scope"),
                    IssueCode::Forbidden,
                    "The access token does not grant this request",
                ),
                (RefusalClass::Malformed, _) => (
                    S::BAD_REQUEST,
                    Challenge::Error("invalid_request"),
                    IssueCode::Invalid,
                    "The request is malformed",
                ),
                (RefusalClass::TooLarge, _) => (
                    S::PAYLOAD_TOO_LARGE,
                    Challenge::None,
                    IssueCode::TooLong,
                    "The request body is too large",
                ),
                (RefusalClass::Concealed, _) => NOT_FOUND,
                // The upstream's answer could not be checked: its fault, never the client's.
                (RefusalClass::UpstreamUnusable, _) => (
                    S::BAD_GATEWAY,
                    Challenge::None,
                    IssueCode::Exception,
                    "The service is unavailable",
                ),
            },
            Self::ResourceNotFound => NOT_FOUND,
            Self::UriTooLong => (
                S::URI_TOO_LONG,
                Challenge::None,
                IssueCode::TooLong,
                "The request URI is too long",
            ),
            Self::BodyTimedOut => (
                S::REQUEST_TIMEOUT,
                Challenge::None,
                IssueCode::Timeout,
                "The request body did not arrive in time",
            ),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                Challenge::None,
                IssueCode::NotSupported,
                "The method is not supported",
            ),
            Self::BodyTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                Challenge::None,
                IssueCode::TooLong,
                "The request body is too large",
            ),
            // RFC 9110 §15.5.2: a 401 without phigate's challenge would be malformed, and with
            // it a client would throw away a token phigate accepted.
            Self::UpstreamUnreachable | Self::UpstreamMalformed | Self::UpstreamChallenge => (
                S::BAD_GATEWAY,
                Challenge::None,
                IssueCode::Exception,
                "The service is unavailable",
            ),
            Self::UpstreamTimedOut => (
                S::GATEWAY_TIMEOUT,
                Challenge::None,
                IssueCode::Timeout,
                "The service did not answer in time",
            ),
        }
    }

    /// The status this denial answers with.
    pub fn status(&self) -> StatusCode {
        self.outcome().0
    }

    /// The complete error response; a 401's challenges name `resource_metadata`, the
    /// configured protected resource metadata URL, when there is one (RFC 9728 §5.1), and a
    /// DPoP challenge the configured proof algorithms (RFC 9449 §7.1).
    pub fn render(&self, params: ChallengeParams<'_>) -> Response<Full<Bytes>> {
        let (status, challenge, code, text) = self.outcome();
        let params = ChallengeParams {
            resource_metadata: params
                .resource_metadata
                .filter(|_| status == StatusCode::UNAUTHORIZED),
            ..params
        };
        let body = serde_json::json!({
            "resourceType": "OperationOutcome",
            "issue": [{ "severity": "error", "code": code.as_str(), "diagnostics": text }],
        });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/fhir+json"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        }
        // One field per challenge (RFC 9110 §11.6.1), Bearer first.
        for value in challenge.header_values(params) {
            headers.append(WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// What a challenge names besides its error, all of it from configuration, never from the
/// request.
#[derive(Debug, Clone, Copy)]
pub struct ChallengeParams<'a> {
    /// The protected resource metadata URL (RFC 9728 §5.1), on 401s.
    pub resource_metadata: Option<&'a str>,
    /// The DPoP proof algorithms, space-separated (`dpop.algorithms`; RFC 9449 §7.1 `algs`).
    pub dpop_algs: &'a str,
}

impl Challenge {
    fn header_values(&self, params: ChallengeParams<'_>) -> Vec<HeaderValue> {
        let algs = params.dpop_algs;
        let texts = match self {
            Self::None => vec![],
            Self::Bare => vec!["Bearer realm=\"phigate\"".to_owned()],
            Self::Error(code) => vec![bearer_error(code)],
            Self::Dpop(code) => vec![dpop_error(code, algs)],
            Self::BearerAndDpop => vec![
                bearer_error("invalid_token"),
                dpop_error("invalid_token", algs),
            ],
            // Scopes are validated scope-tokens (no quote or backslash), so quoting is safe.
            Self::InsufficientScope(scopes) => vec![format!(
                "Bearer realm=\"phigate\", error=\"insufficient_scope\", scope=\"{scopes}\""
            )],
        };
        // The URL comes from configuration (`ResourceId`: no quote or backslash), never from
        // the request, so quoting it is safe and a client cannot point it elsewhere.
        let parameter = params
            .resource_metadata
            .map(|url| format!(", resource_metadata=\"{url}\""))
            .unwrap_or_default();
        texts
            .iter()
            .filter_map(|text| HeaderValue::from_str(&format!("{text}{parameter}")).ok())
            .collect()
    }
}

fn bearer_error(code: &str) -> String {
    if code == "invalid_token" {
        format!(
            "Bearer realm=\"phigate\", error=\"invalid_token\", error_description=\"{INVALID_TOKEN}\""
        )
    } else {
        format!("Bearer realm=\"phigate\", error=\"{code}\"")
    }
}

fn dpop_error(code: &str, algs: &str) -> String {
    format!("DPoP realm=\"phigate\", error=\"{code}\", algs=\"{algs}\"")
}

#[cfg(test)]
mod tests;
