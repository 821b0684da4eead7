use http::header::WWW_AUTHENTICATE;
use http_body_util::BodyExt;

use super::*;

/// The challenge parameters of a gateway with the default DPoP algorithms.
fn params(resource_metadata: Option<&str>) -> ChallengeParams<'_> {
    ChallengeParams {
        resource_metadata,
        dpop_algs: "ES256 PS256 EdDSA",
    }
}

/// Renders `denial` and checks status, challenge and OperationOutcome code.
#[track_caller]
fn check(denial: Denial, status: u16, challenge: &[&str], code: &str) {
    let response = denial.render(params(None));
    assert_eq!(response.status().as_u16(), status);
    let headers: Vec<&str> = response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(headers, challenge);
    assert_eq!(response.headers()["content-type"], "application/fhir+json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = futures_util::FutureExt::now_or_never(response.into_body().collect())
        .unwrap()
        .unwrap()
        .to_bytes();
    let outcome: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], code);
}

const INVALID: &str = "Bearer realm=\"phigate\", error=\"invalid_token\", error_description=\"The access token is invalid\"";
const BAD_REQUEST: &str = "Bearer realm=\"phigate\", error=\"invalid_request\"";
const BARE: &str = "Bearer realm=\"phigate\"";
const DPOP_INVALID: &str =
    "DPoP realm=\"phigate\", error=\"invalid_token\", algs=\"ES256 PS256 EdDSA\"";
const DPOP_PROOF: &str =
    "DPoP realm=\"phigate\", error=\"invalid_dpop_proof\", algs=\"ES256 PS256 EdDSA\"";

#[test]
fn each_denial_has_its_status_challenge_and_outcome() {
    use CredentialFault as C;
    let cases: Vec<(Denial, u16, &[&str], &str)> = vec![
        (Denial::Credential(C::Missing), 401, &[BARE], "login"),
        (Denial::AuditUnavailable, 503, &[], "transient"),
        (
            Denial::Credential(C::UnsupportedScheme),
            401,
            &[BARE],
            "login",
        ),
        (
            Denial::Credential(C::Multiple),
            400,
            &[BAD_REQUEST],
            "invalid",
        ),
        (
            Denial::Credential(C::InQuery),
            400,
            &[BAD_REQUEST],
            "invalid",
        ),
        (
            Denial::Credential(C::Malformed),
            400,
            &[BAD_REQUEST],
            "invalid",
        ),
        (
            Denial::Credential(C::TooLarge),
            431,
            &[BAD_REQUEST],
            "too-long",
        ),
        (Denial::TokenInBody, 400, &[BAD_REQUEST], "invalid"),
        (Denial::Token(TokenFault::Expired), 401, &[INVALID], "login"),
        (
            Denial::Token(TokenFault::BadSignature),
            401,
            &[INVALID],
            "login",
        ),
        (
            Denial::Token(TokenFault::PatientClaimMalformed),
            401,
            &[INVALID],
            "login",
        ),
        (
            Denial::Token(TokenFault::IdentityClaimMalformed),
            401,
            &[INVALID],
            "login",
        ),
        (
            Denial::Token(TokenFault::KeysUnavailable),
            503,
            &[],
            "transient",
        ),
        (
            Denial::DpopToken(TokenFault::Expired),
            401,
            &[DPOP_INVALID],
            "login",
        ),
        (
            Denial::NoMatchingRule,
            403,
            &["Bearer realm=\"phigate\", error=\"insufficient_scope\""],
            "forbidden",
        ),
        (Denial::Blocked(BlockFault::Blocked), 403, &[], "forbidden"),
        (
            Denial::Blocked(BlockFault::ReauthenticationRequired),
            401,
            &[INVALID],
            "login",
        ),
        (Denial::MethodNotAllowed, 405, &[], "not-supported"),
        (Denial::MethodOverride, 400, &[BAD_REQUEST], "invalid"),
        (Denial::AmbiguousPath, 400, &[BAD_REQUEST], "invalid"),
        (Denial::BadHost, 400, &[BAD_REQUEST], "invalid"),
        (Denial::HeaderLookalike, 400, &[BAD_REQUEST], "invalid"),
        (Denial::UriTooLong, 414, &[], "too-long"),
        (Denial::BodyTooLarge, 413, &[], "too-long"),
        (Denial::BodyMalformed, 400, &[BAD_REQUEST], "invalid"),
        (Denial::BodyTimedOut, 408, &[], "timeout"),
        (Denial::ResourceNotFound, 404, &[], "not-found"),
        (Denial::UpstreamUnreachable, 502, &[], "exception"),
        (Denial::UpstreamTimedOut, 504, &[], "timeout"),
        (Denial::UpstreamMalformed, 502, &[], "exception"),
        // The upstream's challenge never becomes the client's: no WWW-Authenticate at all.
        (Denial::UpstreamChallenge, 502, &[], "exception"),
    ];
    for (denial, status, challenge, code) in cases {
        check(denial, status, challenge, code);
    }
}

#[test]
fn each_binding_fault_has_its_challenges() {
    use BindingFault as B;
    let cases: Vec<(BindingFault, u16, &[&str])> = vec![
        (B::MissingCertificate, 401, &[INVALID]),
        (B::CertificateMismatch, 401, &[INVALID]),
        (B::BindingRequired, 401, &[INVALID]),
        // RFC 9449 §7.2: a DPoP-bound token sent as Bearer hears both schemes.
        (B::DpopProofRequired, 401, &[INVALID, DPOP_INVALID]),
        (B::ProofMissing, 401, &[DPOP_PROOF]),
        (
            B::Proof(crate::binding::dpop::DpopFault::Replayed),
            401,
            &[DPOP_PROOF],
        ),
        (B::ProofKeyMismatch, 401, &[DPOP_INVALID]),
        (B::NotDpopBound, 401, &[DPOP_INVALID]),
        (B::ReplayStoreUnavailable, 503, &[]),
        (
            B::NonceRequired,
            401,
            &["DPoP realm=\"phigate\", error=\"use_dpop_nonce\", algs=\"ES256 PS256 EdDSA\""],
        ),
    ];
    for (fault, status, challenge) in cases {
        let code = if status == 503 { "transient" } else { "login" };
        check(Denial::Binding(fault), status, challenge, code);
    }
}

#[test]
fn every_token_fault_renders_the_same_response() {
    let faults = [
        TokenFault::Expired,
        TokenFault::UnknownKey,
        TokenFault::BadSignature,
        TokenFault::AudienceMismatch,
    ];
    let rendered: Vec<_> = faults
        .into_iter()
        .map(|fault| {
            let response = Denial::Token(fault).render(params(None));
            let body = futures_util::FutureExt::now_or_never(response.body().clone().collect())
                .unwrap()
                .unwrap()
                .to_bytes();
            (response.status(), format!("{:?}", response.headers()), body)
        })
        .collect();
    assert!(rendered.windows(2).all(|pair| pair[0] == pair[1]));
}

#[test]
fn service_unavailable_says_when_to_retry() {
    let response = Denial::Token(TokenFault::KeysUnavailable).render(params(None));
    assert_eq!(response.headers()["retry-after"], "5");
}

#[test]
fn an_ambiguous_path_is_told_apart_from_a_malformed_one_in_logs_only() {
    let ambiguous = Denial::AmbiguousPath;
    let malformed = Denial::Path(PathFault::DotSegment);
    assert_eq!(ambiguous.reason(), "path_ambiguous");
    assert_eq!(malformed.reason(), "path_malformed");
    let parts = |denial: &Denial| {
        let response = denial.render(params(None));
        (response.status(), format!("{:?}", response.headers()))
    };
    assert_eq!(parts(&ambiguous), parts(&malformed));
}

#[test]
fn every_401_challenge_names_the_resource_metadata_and_nothing_else_does() {
    let url = "https://fhir.test/.well-known/oauth-protected-resource";
    let challenges = |denial: Denial| -> (u16, Vec<String>) {
        let response = denial.render(params(Some(url)));
        let values = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        (response.status().as_u16(), values)
    };
    let param = format!(", resource_metadata=\"{url}\"");
    for denial in [
        Denial::Credential(CredentialFault::Missing),
        Denial::Token(TokenFault::Expired),
        Denial::DpopToken(TokenFault::BadSignature),
        Denial::Binding(BindingFault::DpopProofRequired),
        Denial::Binding(BindingFault::NonceRequired),
        Denial::Binding(BindingFault::ProofMissing),
        Denial::Revocation(RevocationFault::Revoked),
    ] {
        let (status, values) = challenges(denial.clone());
        assert_eq!(status, 401, "{denial:?}");
        assert!(!values.is_empty(), "{denial:?}");
        assert!(values.iter().all(|v| v.ends_with(&param)), "{values:?}");
    }
    assert_eq!(
        challenges(Denial::Credential(CredentialFault::Missing)).1,
        [format!("Bearer realm=\"phigate\"{param}")]
    );
    // A 400 or 403 challenge is about the request or the scope, not where to learn more.
    for denial in [
        Denial::Credential(CredentialFault::InQuery),
        Denial::NoMatchingRule,
    ] {
        let (status, values) = challenges(denial);
        assert_ne!(status, 401);
        assert!(
            values.iter().all(|v| !v.contains("resource_metadata")),
            "{values:?}"
        );
    }
}

#[test]
fn dpop_challenges_name_the_configured_algorithms() {
    let response =
        Denial::Binding(crate::binding::BindingFault::ProofMissing).render(ChallengeParams {
            resource_metadata: None,
            dpop_algs: "ES256",
        });
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        "DPoP realm=\"phigate\", error=\"invalid_dpop_proof\", algs=\"ES256\""
    );
}
