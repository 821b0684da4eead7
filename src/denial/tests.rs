use http::header::WWW_AUTHENTICATE;
use http_body_util::BodyExt;

use super::*;

/// Renders `denial` and checks status, challenge and OperationOutcome code.
#[track_caller]
fn check(denial: Denial, status: u16, challenge: Option<&str>, code: &str) {
    let response = denial.render();
    assert_eq!(response.status().as_u16(), status);
    let header = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header.as_deref(), challenge);
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

#[test]
fn each_denial_has_its_status_challenge_and_outcome() {
    let invalid = "Bearer realm=\"phigate\", error=\"invalid_token\", error_description=\"The access token is invalid\"";
    let bad_request = Some("Bearer realm=\"phigate\", error=\"invalid_request\"");
    check(
        Denial::Credential(CredentialFault::Missing),
        401,
        Some("Bearer realm=\"phigate\""),
        "login",
    );
    check(
        Denial::Credential(CredentialFault::UnsupportedScheme),
        401,
        Some("Bearer realm=\"phigate\""),
        "login",
    );
    check(
        Denial::Credential(CredentialFault::Multiple),
        400,
        bad_request,
        "invalid",
    );
    check(
        Denial::Credential(CredentialFault::InQuery),
        400,
        bad_request,
        "invalid",
    );
    check(
        Denial::Credential(CredentialFault::TooLarge),
        431,
        bad_request,
        "too-long",
    );
    check(Denial::TokenInBody, 400, bad_request, "invalid");
    check(
        Denial::Token(TokenFault::Expired),
        401,
        Some(invalid),
        "login",
    );
    check(
        Denial::Token(TokenFault::BadSignature),
        401,
        Some(invalid),
        "login",
    );
    check(
        Denial::Token(TokenFault::KeysUnavailable),
        503,
        None,
        "transient",
    );
    check(
        Denial::NoMatchingRule,
        403,
        Some("Bearer realm=\"phigate\", error=\"insufficient_scope\""),
        "forbidden",
    );
    check(Denial::MethodNotAllowed, 405, None, "not-supported");
    check(Denial::MethodOverride, 400, bad_request, "invalid");
    check(Denial::AmbiguousPath, 400, bad_request, "invalid");
    check(Denial::BadHost, 400, bad_request, "invalid");
    check(Denial::BodyTooLarge, 413, None, "too-long");
    check(Denial::UpstreamUnreachable, 502, None, "exception");
    check(Denial::UpstreamTimedOut, 504, None, "timeout");
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
            let response = Denial::Token(fault).render();
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
    let response = Denial::Token(TokenFault::KeysUnavailable).render();
    assert_eq!(response.headers()["retry-after"], "5");
}

#[test]
fn an_ambiguous_path_is_told_apart_from_a_malformed_one_in_logs_only() {
    let ambiguous = Denial::AmbiguousPath;
    let malformed = Denial::Path(PathFault::DotSegment);
    assert_eq!(ambiguous.reason(), "path_ambiguous");
    assert_eq!(malformed.reason(), "path_malformed");
    let parts = |denial: &Denial| {
        let response = denial.render();
        (response.status(), format!("{:?}", response.headers()))
    };
    assert_eq!(parts(&ambiguous), parts(&malformed));
}
