//! FHIR request classification and Bundle inspection through the decision chain's own steps
//! (`pipeline::route`, `permit_public`, `authorize`) under the shipped SMART v2 policy: hygiene,
//! routing, interaction classification, search parameters and their canonical form, compartment
//! checks, written bodies, JSON Patch, batch and transaction Bundles entry by entry; then the
//! permit's check of the upstream's answer. Asserts that a permit forwards the authorised path.
//!
//! Input: a written request (`phigate_fuzz::request`): `@scope` and `@patient` lines for the
//! token, the request head, a blank line, the body, and optionally `@answer` and a response.
#![no_main]

use std::path::Path;
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use phigate::config::RequestLimits;
use phigate::pipeline;
use phigate::policy::{PolicyTable, ScopeSet, fhir};
use phigate::token::{Confirmation, VerifiedToken};
use phigate_fuzz::{forwarding, request};

const POLICY: &str = include_str!("../../policies/smart-v2.yaml");

static TABLE: LazyLock<PolicyTable> = LazyLock::new(|| {
    PolicyTable::from_yaml(POLICY, Path::new("smart-v2.yaml"))
        .unwrap_or_else(|err| panic!("the shipped policy: {err}"))
});

fuzz_target!(|data: &[u8]| {
    let Some(written) = request::parse(data) else {
        return;
    };
    let Ok(scopes) = ScopeSet::from_claims(Some(&serde_json::Value::from(written.scope)), None)
    else {
        return;
    };
    let token = VerifiedToken {
        issuer: Arc::from("https://as.test"),
        subject: None,
        client_id: None,
        jti: None,
        patient: written.patient.map(str::to_owned),
        scopes,
        expires_at: i64::MAX,
        issued_at: None,
        confirmation: Confirmation::None,
    };
    let parts = &written.parts;
    let Ok(route) = pipeline::route(&TABLE, parts, &RequestLimits::default()) else {
        return;
    };
    let authorised = route.path().clone();
    let permit = if route.is_public() {
        pipeline::permit_public(route, parts, written.body)
    } else {
        pipeline::authorize(route, &token, parts, written.body, None)
    };
    let Ok(permit) = permit else {
        return;
    };
    forwarding::check(&TABLE, &parts.method, &parts.uri, &authorised, &permit);
    let answer = written
        .answer
        .and_then(|answer| serde_json::from_slice::<serde_json::Value>(answer).ok());
    if let (Some(check), Some(answer)) = (permit.response_check(), &answer) {
        let _ = fhir::check_answer(answer, check);
    }
    if let (Some(precondition), Some(current)) = (permit.precondition(), &answer) {
        let _ = precondition.check(current, Some(written.body));
    }
});
