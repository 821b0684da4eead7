//! Offline decisions for `explain` and `test`: the gateway's own decision chain
//! (`pipeline::route`, `permit_public`, `credential`, `authorize` — the very functions
//! `Pipeline::decide` runs) around a token the operator supplied, without a network, a signature
//! check or an upstream. Reason codes are `Denial::reason()`'s, so an explanation says what the
//! gateway would say. Before the chain, the same question the gateway asks first: is this a
//! well-known document phigate answers itself (`discovery::document_at`)?

use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method, request};

use crate::config::{DiscoveryConfig, RequestLimits};
use crate::denial::Denial;
use crate::discovery::{self, WellKnown};
use crate::pipeline;
use crate::policy::{Permit, PolicyTable};
use crate::token::{CredentialFault, TokenFault, VerifiedToken};

/// The policy's verdict on one request.
pub struct Verdict {
    /// The matched rule, if any.
    pub rule: Option<String>,
    /// What the rule demands, in words.
    pub access: Option<String>,
    /// The token's scopes, space-separated (empty without a token).
    pub token_scopes: String,
    /// Allowed or denied (with a reason code and what would have sufficed).
    pub outcome: Result<Allowed, Denied>,
}

/// How an allowed request is answered.
pub enum Allowed {
    /// Forwarded upstream under this permit.
    Forwarded(Box<Permit>),
    /// Answered by phigate itself, never forwarded: a discovery document.
    Answered(WellKnown),
}

impl Allowed {
    /// The permit, when the request is forwarded.
    pub fn permit(&self) -> Option<&Permit> {
        match self {
            Self::Forwarded(permit) => Some(permit.as_ref()),
            Self::Answered(_) => None,
        }
    }
}

/// A denial as `explain` and `test` report it.
pub struct Denied {
    /// The documented reason code.
    pub reason: &'static str,
    /// Scopes that would have allowed the request.
    pub needed: Option<String>,
}

impl From<Denial> for Denied {
    fn from(denial: Denial) -> Self {
        Self {
            reason: denial.reason(),
            needed: match &denial {
                Denial::Refused(refusal) => refusal.needed().map(str::to_owned),
                _ => None,
            },
        }
    }
}

/// The token the request carries, as the operator described it.
pub enum OfflineToken<'a> {
    /// No token.
    Absent,
    /// A token whose signature and claims passed (or claims taken as verified).
    Verified(&'a VerifiedToken),
    /// A token the gateway would refuse, and why.
    Refused(TokenFault),
}

/// The request an operator describes.
pub struct OfflineRequest<'a> {
    pub method: &'a Method,
    /// Path and query.
    pub target: &'a str,
    /// Headers beyond `Host` and the body's type (a break-glass justification, `If-None-Exist`).
    pub headers: &'a [(HeaderName, HeaderValue)],
    pub body: Option<&'a [u8]>,
}

/// One `Name: value` header as an operator writes it, or why it is not one.
pub fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("{:?} is not a header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of {name} is not a header value"))?;
    Ok((name, value))
}

/// Decides `request` for `token`, as the gateway configured with `policy` and `discovery`
/// would (`test`, which has a policy alone, passes the default: no resource identifier).
pub fn decide(
    policy: &PolicyTable,
    discovery: &DiscoveryConfig,
    request: &OfflineRequest<'_>,
    token: &OfflineToken<'_>,
) -> Verdict {
    let mut verdict = Verdict {
        rule: None,
        access: None,
        token_scopes: match token {
            OfflineToken::Verified(token) => token.scopes.to_header_value(),
            OfflineToken::Absent | OfflineToken::Refused(_) => String::new(),
        },
        outcome: Err(Denied::from(Denial::NoMatchingRule)),
    };
    let Some(parts) = request_parts(request) else {
        verdict.outcome = Err(Denied::from(Denial::Path(
            crate::policy::PathFault::NotAbsolute,
        )));
        return verdict;
    };
    if let Some(document) = discovery::document_at(discovery, parts.uri.path()) {
        verdict.outcome = discovery::admit(&parts.method, document)
            .map(|()| Allowed::Answered(document))
            .map_err(Denied::from);
        return verdict;
    }
    let body = request.body.unwrap_or_default();
    let limits = RequestLimits::default();
    let route = match pipeline::route(policy, &parts, &limits) {
        Ok(route) => route,
        Err(denial) => {
            verdict.outcome = Err(denial.into());
            return verdict;
        }
    };
    verdict.rule = Some(route.rule_name().to_owned());
    verdict.access = Some(route.access_summary());
    verdict.outcome = if route.is_public() {
        pipeline::permit_public(route, &parts, body)
    } else {
        match token {
            // The request carries no `Authorization`: the credential step says what the
            // gateway says (missing, or a token in the query).
            OfflineToken::Absent => Err(pipeline::credential(&parts)
                .err()
                .unwrap_or(Denial::Credential(CredentialFault::Missing))),
            OfflineToken::Refused(fault) => Err(Denial::Token(*fault)),
            OfflineToken::Verified(token) => pipeline::authorize(route, token, &parts, body, None),
        }
    }
    .map(|permit| Allowed::Forwarded(Box::new(permit)))
    .map_err(Denied::from);
    verdict
}

/// The request head the gateway would see: one `Host`, a body's type as a client would send it
/// for the interaction (a form for a POST search, FHIR JSON otherwise), and the headers given.
fn request_parts(request: &OfflineRequest<'_>) -> Option<request::Parts> {
    let mut builder = http::Request::builder()
        .method(request.method.clone())
        .uri(request.target)
        .header(HOST, "phigate.explain");
    let typed = request.headers.iter().any(|(name, _)| name == CONTENT_TYPE);
    if request.body.is_some() && !typed {
        let path = request.target.split('?').next().unwrap_or_default();
        let content_type = if path.ends_with("/_search") {
            "application/x-www-form-urlencoded"
        } else {
            "application/fhir+json"
        };
        builder = builder.header(CONTENT_TYPE, content_type);
    }
    for (name, value) in request.headers {
        builder = builder.header(name, value);
    }
    builder.body(()).ok().map(|request| request.into_parts().0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ResourceId;

    /// A policy with a catch-all public rule: any request the chain saw would be forwarded.
    fn forwarding_everything() -> PolicyTable {
        let text =
            "rules:\n  - name: all\n    methods: [GET, POST]\n    path: /**\n    public: true\n";
        PolicyTable::from_yaml(text, std::path::Path::new("policy.yaml")).unwrap()
    }

    fn outcome(discovery: &DiscoveryConfig, method: Method, target: &str) -> String {
        let request = OfflineRequest {
            method: &method,
            target,
            headers: &[],
            body: None,
        };
        let verdict = decide(
            &forwarding_everything(),
            discovery,
            &request,
            &OfflineToken::Absent,
        );
        match verdict.outcome {
            Ok(Allowed::Answered(document)) => format!("answered {document:?}"),
            Ok(Allowed::Forwarded(permit)) => format!("forwarded {}", permit.path_and_query()),
            Err(denied) => format!("deny {}", denied.reason),
        }
    }

    // The gateway's own question, asked before any rule: a rule that would forward a
    // well-known path is never reached, and explain/test say so as the gateway counts it.
    #[test]
    fn well_known_documents_are_answered_before_any_rule() {
        let none = DiscoveryConfig::default();
        let r4 = DiscoveryConfig {
            resource: Some(ResourceId::parse("https://fhir.test/r4").unwrap()),
            ..DiscoveryConfig::default()
        };
        let smart = "/.well-known/smart-configuration";
        let cases = [
            (&none, Method::GET, smart, "answered SmartConfiguration"),
            (&none, Method::HEAD, smart, "answered SmartConfiguration"),
            // Escapes are decoded first, as the chain decodes them.
            (
                &none,
                Method::GET,
                "//%2Ewell-known/smart%2Dconfiguration",
                "answered SmartConfiguration",
            ),
            // A spelling that does not normalise is the chain's to refuse, as in the gateway.
            (
                &none,
                Method::GET,
                "/Patient/../.well-known/smart-configuration",
                "deny path_malformed",
            ),
            (&none, Method::POST, smart, "deny method_not_allowed"),
            // Without a resource identifier no protected resource metadata is published.
            (
                &none,
                Method::GET,
                "/.well-known/oauth-protected-resource",
                "deny not_found",
            ),
            (
                &none,
                Method::GET,
                "/r4/.well-known/smart-configuration",
                "forwarded /r4/.well-known/smart-configuration",
            ),
            (
                &r4,
                Method::GET,
                "/r4/.well-known/smart-configuration",
                "answered SmartConfiguration",
            ),
            (
                &r4,
                Method::GET,
                "/.well-known/oauth-protected-resource/r4",
                "answered ProtectedResource",
            ),
            (&r4, Method::GET, "/Patient/1", "forwarded /Patient/1"),
        ];
        for (discovery, method, target, expected) in cases {
            assert_eq!(
                outcome(discovery, method.clone(), target),
                expected,
                "{method} {target}"
            );
        }
    }
}
