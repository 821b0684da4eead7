//! Offline decisions for `explain` and `test`: the policy's verdict on a request and a token —
//! claims as written, or a token the verifier accepted — computed exactly as the gateway's chain
//! computes it after token verification, but without a network or an upstream.

use http::{Method, Uri};
use serde_json::{Map, Value};

use crate::policy::{Grant, Permit, PolicyFault, PolicyTable, Refusal, ScopeClaimFault, ScopeSet};
use crate::token::{TokenFault, VerifiedToken, launch_patient};

/// The policy's verdict on one request.
pub struct Verdict {
    /// The matched rule, if any.
    pub rule: Option<String>,
    /// What the rule demands, in words.
    pub access: Option<String>,
    /// The token's scopes, space-separated (empty without a usable token).
    pub token_scopes: String,
    /// The token's launch patient, if it has a usable one.
    pub token_patient: Option<String>,
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

/// The token a verdict is about, as `explain` and `test` were given it.
pub enum Presented<'a> {
    /// No token at all.
    Nothing,
    /// Claims as written (a `--claims` file, a test case), read by the gateway's own rules.
    Claims {
        /// The claims object.
        claims: &'a Map<String, Value>,
        /// The claim naming the launch patient.
        patient_claim: &'a str,
    },
    /// A token the verifier accepted (`explain --token`): exactly what the gateway decides on.
    Verified(&'a VerifiedToken),
}

/// What a token grants the policy: its scopes and launch patient.
struct Granted {
    scopes: ScopeSet,
    patient: Option<String>,
}

impl Presented<'_> {
    /// What the token grants, or the reason the gateway would refuse it; `None` without one.
    fn granted(&self) -> Option<Result<Granted, Denied>> {
        match self {
            Self::Nothing => None,
            Self::Claims {
                claims,
                patient_claim,
            } => Some(granted_by_claims(claims, patient_claim)),
            Self::Verified(token) => Some(Ok(Granted {
                scopes: token.scopes.clone(),
                patient: token.patient.clone(),
            })),
        }
    }
}

/// Scopes and launch patient read from claims as `token::claims` reads them: both `scope` and
/// `scp`, or a launch patient that is not one FHIR id, refuse the token.
fn granted_by_claims(claims: &Map<String, Value>, patient_claim: &str) -> Result<Granted, Denied> {
    let scopes =
        ScopeSet::from_claims(claims.get("scope"), claims.get("scp")).map_err(|fault| {
            denied(match fault {
                ScopeClaimFault::Ambiguous => TokenFault::ScopeAmbiguous.reason(),
                ScopeClaimFault::Malformed => TokenFault::MalformedClaims.reason(),
            })
        })?;
    let patient = launch_patient(claims, patient_claim).map_err(|fault| denied(fault.reason()))?;
    Ok(Granted { scopes, patient })
}

/// Decides `method target` for `token`.
pub fn decide(
    policy: &PolicyTable,
    method: &Method,
    target: &str,
    token: &Presented<'_>,
    body: Option<&[u8]>,
) -> Verdict {
    let granted = token.granted();
    let mut verdict = Verdict {
        rule: None,
        access: None,
        token_scopes: String::new(),
        token_patient: None,
        outcome: Err(denied("no_matching_rule")),
    };
    if let Some(Ok(granted)) = &granted {
        verdict.token_scopes = granted.scopes.to_header_value();
        verdict.token_patient.clone_from(&granted.patient);
    }
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
    let Granted { scopes, patient } = match granted {
        None => {
            verdict.outcome = Err(denied("credentials_missing"));
            return verdict;
        }
        Some(Err(refused)) => {
            verdict.outcome = Err(refused);
            return verdict;
        }
        Some(Ok(granted)) => granted,
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::token::Confirmation;

    const POLICY: &str = r#"rules:
  - {name: metadata, methods: [GET], path: /metadata, public: true}
  - {name: read-patient, methods: [GET], path: "/Patient/{id}", scopes: [user/Patient.r]}
"#;

    fn claims(value: serde_json::Value) -> Map<String, Value> {
        let Value::Object(claims) = value else {
            unreachable!("claims are an object")
        };
        claims
    }

    /// A token the verifier accepted, granting `scope`.
    fn verified(scope: &str) -> VerifiedToken {
        VerifiedToken {
            issuer: Arc::from("https://as.test"),
            subject: None,
            client_id: None,
            jti: None,
            patient: None,
            scopes: ScopeSet::from_claims(Some(&json!(scope)), None).unwrap(),
            expires_at: 0,
            issued_at: None,
            confirmation: Confirmation::None,
        }
    }

    /// The verdict on `GET target` for `token`: allowed, or the denial's reason.
    #[track_caller]
    fn check(target: &str, token: &Presented<'_>, expected: Result<(), &str>) {
        let policy = PolicyTable::from_yaml(POLICY, Path::new("policy.yaml")).unwrap();
        let verdict = decide(&policy, &Method::GET, target, token, None);
        let actual = verdict.outcome.map(drop).map_err(|denied| denied.reason);
        assert_eq!(actual, expected, "{target}");
    }

    #[test]
    fn claims_as_written_and_a_verified_token_are_read_alike() {
        let granted = claims(json!({"scope": "user/Patient.r"}));
        let other = claims(json!({"scope": "user/Observation.r"}));
        let ambiguous = claims(json!({"scope": "user/Patient.r", "scp": ["user/Patient.r"]}));
        let two_patients = claims(json!({"scope": "user/Patient.r", "patient": "1,2"}));
        let as_written = |claims| Presented::Claims {
            claims,
            patient_claim: "patient",
        };
        let (token, other_token) = (verified("user/Patient.r"), verified("user/Observation.r"));
        check("/Patient/1", &as_written(&granted), Ok(()));
        check("/Patient/1", &Presented::Verified(&token), Ok(()));
        let refused = Err("insufficient_scope");
        check("/Patient/1", &as_written(&other), refused);
        check("/Patient/1", &Presented::Verified(&other_token), refused);
        check(
            "/Patient/1",
            &as_written(&ambiguous),
            Err("scope_ambiguous"),
        );
        check(
            "/Patient/1",
            &as_written(&two_patients),
            Err("patient_claim_malformed"),
        );
        check(
            "/Patient/1",
            &Presented::Nothing,
            Err("credentials_missing"),
        );
        // A public rule needs no token, and a refused one does not stand in its way.
        check("/metadata", &Presented::Nothing, Ok(()));
        check("/metadata", &as_written(&ambiguous), Ok(()));
    }
}
