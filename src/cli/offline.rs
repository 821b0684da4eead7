//! Offline decisions for `explain` and `test`: the gateway's own decision chain
//! (`pipeline::route`, `permit_public`, `credential`, `authorize` — the very functions
//! `Pipeline::decide` runs) around a token the operator supplied, without a network, a signature
//! check or an upstream. Reason codes are `Denial::reason()`'s, so an explanation says what the
//! gateway would say.

use http::header::{CONTENT_TYPE, HOST};
use http::{Method, request};

use crate::config::RequestLimits;
use crate::denial::Denial;
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
    /// Allowed (with the permit) or denied (with a reason code and what would have sufficed).
    pub outcome: Result<Permit, Denied>,
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

/// Decides `method target` (with an optional body) for `token`, as the gateway would.
pub fn decide(
    policy: &PolicyTable,
    method: &Method,
    target: &str,
    token: &OfflineToken<'_>,
    body: Option<&[u8]>,
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
    let Some(parts) = request_parts(method, target, body.is_some()) else {
        verdict.outcome = Err(Denied::from(Denial::Path(
            crate::policy::PathFault::NotAbsolute,
        )));
        return verdict;
    };
    let body = body.unwrap_or_default();
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
    .map_err(Denied::from);
    verdict
}

/// The request head the gateway would see: one `Host`, and a body's type as a client would
/// send it for the interaction (a form for a POST search, FHIR JSON otherwise).
fn request_parts(method: &Method, target: &str, has_body: bool) -> Option<request::Parts> {
    let mut builder = http::Request::builder()
        .method(method.clone())
        .uri(target)
        .header(HOST, "phigate.explain");
    if has_body {
        let path = target.split('?').next().unwrap_or_default();
        let content_type = if path.ends_with("/_search") {
            "application/x-www-form-urlencoded"
        } else {
            "application/fhir+json"
        };
        builder = builder.header(CONTENT_TYPE, content_type);
    }
    builder.body(()).ok().map(|request| request.into_parts().0)
}
