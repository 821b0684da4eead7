//! FHIR behaviour against a real FHIR server (Medplum's router and in-memory repository, see
//! `support/fhir_server.rs`), seeded with patients 123 and 456 and their data. The synthetic
//! upstream stays for fault tests; everything about how a FHIR server reads a request is
//! judged here.

use serde_json::json;

use crate::support::{Harness, Options};

const SMART_POLICY: &str = include_str!("../../policies/smart-v2.yaml");

async fn real_fhir_harness() -> Harness {
    Harness::with(Options {
        policy: SMART_POLICY.to_owned(),
        real_fhir: true,
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn a_user_token_reads_through_phigate_from_the_real_server() {
    let harness = real_fhir_harness().await;
    let fhir = harness.fhir.as_ref().unwrap();
    let mut claims = harness.claims("user/Patient.rs user/Observation.rs");
    claims["fhirUser"] = json!("Practitioner/pr-9");
    let token = harness.mint(&claims);
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["id"], "123");
    let (status, direct) = fhir.read("/Patient/123").await;
    assert_eq!(status, 200);
    assert_eq!(direct["name"], response.json()["name"]);
    let received = fhir.received().await;
    let [request] = received.as_slice() else {
        panic!("expected one request upstream, got {received:?}");
    };
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/fhir/Patient/123");
    assert_eq!(request.header_values("x-phigate-subject"), ["u-1"]);
    assert!(request.header_values("authorization").is_empty());
    assert!(request.body.is_empty());
    assert!(!response.text().contains(&fhir.origin()));
    fhir.clear_received().await;
    assert!(fhir.received().await.is_empty());
}
