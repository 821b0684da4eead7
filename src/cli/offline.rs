//! Offline decisions for `explain` and `test`: the policy's verdict on a request and a set of
//! claims, computed exactly as the gateway's chain computes it after token verification, but
//! without a network, a signature or an upstream.

use http::{Method, Uri};
use serde_json::{Map, Value};

use crate::policy::{Grant, Permit, PolicyFault, PolicyTable, Refusal, ScopeSet};

/// The policy's verdict on one request.
pub struct Verdict {
    /// The matched rule, if any.
    pub rule: Option<String>,
    /// What the rule demands, in words.
    pub access: Option<String>,
    /// The token's scopes, space-separated (empty without claims).
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

impl From<Refusal> for Denied {
    fn from(refusal: Refusal) -> Self {
        Self {
            reason: refusal.reason(),
            needed: refusal.needed().map(str::to_owned),
        }
    }
}

fn denied(reason: &'static str) -> Denied {
    Denied {
        reason,
        needed: None,
    }
}

/// Decides `method target` for a token with `claims` (`None`: no token at all).
pub fn decide(
    policy: &PolicyTable,
    method: &Method,
    target: &str,
    claims: Option<&Map<String, Value>>,
    patient_claim: &str,
    body: Option<&[u8]>,
) -> Verdict {
    let mut verdict = Verdict {
        rule: None,
        access: None,
        token_scopes: String::new(),
        outcome: Err(denied("no_matching_rule")),
    };
    let Ok(uri) = target.parse::<Uri>() else {
        verdict.outcome = Err(denied("path_malformed"));
        return verdict;
    };
    let route = match policy.resolve(method, &uri) {
        Ok(route) => route,
        Err(PolicyFault::MalformedPath(_)) => {
            verdict.outcome = Err(denied("path_malformed"));
            return verdict;
        }
        Err(PolicyFault::NoMatchingRule) => return verdict,
        Err(PolicyFault::AmbiguousPath) => {
            verdict.outcome = Err(denied("path_ambiguous"));
            return verdict;
        }
    };
    verdict.rule = Some(route.rule_name().to_owned());
    verdict.access = Some(route.access_summary());
    if route.is_public() {
        verdict.outcome = route
            .permit_public()
            .ok_or_else(|| denied("no_matching_rule"));
        return verdict;
    }
    let Some(claims) = claims else {
        verdict.outcome = Err(denied("credentials_missing"));
        return verdict;
    };
    let scopes = match ScopeSet::from_claims(claims.get("scope"), claims.get("scp")) {
        Ok(scopes) => scopes,
        Err(crate::policy::ScopeClaimFault::Ambiguous) => {
            verdict.outcome = Err(denied("scope_ambiguous"));
            return verdict;
        }
        Err(crate::policy::ScopeClaimFault::Malformed) => {
            verdict.outcome = Err(denied("claims_malformed"));
            return verdict;
        }
    };
    verdict.token_scopes = scopes.to_header_value();
    // The gateway refuses a launch patient that is not one FHIR id; so does the explanation.
    let patient = match crate::token::launch_patient(claims, patient_claim) {
        Ok(patient) => patient,
        Err(fault) => {
            verdict.outcome = Err(denied(fault.reason()));
            return verdict;
        }
    };
    let grant = Grant {
        scopes: &scopes,
        patient: patient.as_deref(),
    };
    // A body given to `explain` or `test` is taken as the client would send it for the
    // interaction: a form for a POST search, a resource or Bundle otherwise.
    let content = crate::policy::Content {
        body,
        form: body.is_some(),
        if_none_exist: None,
        opened: None,
    };
    verdict.outcome = route.authorize(&grant, &content).map_err(Denied::from);
    verdict
}
