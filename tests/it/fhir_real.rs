//! FHIR behaviour against a real FHIR server (Medplum's router and in-memory repository, see
//! `support/fhir_server.rs`), seeded with patients 123 and 456 and their data. The synthetic
//! upstream stays for fault tests; everything about how a FHIR server reads a request is
//! judged here.

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use crate::support::{Harness, Options, PUBLIC_BASE, assert_no_leak};

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

fn patient_token(harness: &Harness, scope: &str, patient: &str) -> String {
    let mut claims = harness.claims(scope);
    claims["patient"] = json!(patient);
    harness.mint(&claims)
}

/// The `Type/id` of every resource in a Bundle, in order.
fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap_or("?"),
                        e["resource"]["id"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";

#[tokio::test]
async fn a_search_by_another_role_returns_only_the_patients_own_record() {
    let harness = real_fhir_harness().await;
    let token = patient_token(&harness, "launch/patient patient/Observation.rs", "123");
    // The server finds 456's record where 123 is only the performer; phigate removes it.
    let response = harness
        .client()
        .get_with_token("/Observation?performer=Patient/123", &token)
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert!(entry_ids(&body).is_empty(), "{:?}", entry_ids(&body));
    assert!(body.get("total").is_none(), "the server's count would leak");
    assert_no_leak(&response, &[&token, "o-456-perf123", "Patient/456"]);
    let fhir = harness.fhir.as_ref().unwrap();
    assert_eq!(fhir.received().await.len(), 1);
}

#[tokio::test]
async fn includes_return_only_what_the_scopes_cover() {
    let harness = real_fhir_harness().await;
    let client = harness.client();
    let narrow = patient_token(&harness, "launch/patient patient/Observation.rs", "123");
    let response = client
        .get_with_token(
            "/Observation?patient=123&_include=Observation:performer",
            &narrow,
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let ids = entry_ids(&response.json());
    assert!(
        ids.iter().all(|id| id.starts_with("Observation/o-123")),
        "{ids:?}"
    );
    assert!(ids.contains(&"Observation/o-123-lab".to_owned()), "{ids:?}");
    // With a scope for Practitioner, the shared directory entry comes along.
    let wide = patient_token(
        &harness,
        "launch/patient patient/Observation.rs patient/Practitioner.rs",
        "123",
    );
    let response = client
        .get_with_token(
            "/Observation?patient=123&_include=Observation:performer",
            &wide,
        )
        .await;
    let ids = entry_ids(&response.json());
    assert!(ids.contains(&"Practitioner/pr-9".to_owned()), "{ids:?}");
    // A reverse include that reaches another patient's record loses it.
    let both = patient_token(
        &harness,
        "launch/patient patient/Patient.rs patient/Observation.rs",
        "123",
    );
    let response = client
        .get_with_token(
            "/Patient?_id=123&_revinclude=Observation:performer&_revinclude=Observation:subject",
            &both,
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let ids = entry_ids(&response.json());
    assert!(ids.contains(&"Patient/123".to_owned()), "{ids:?}");
    assert!(ids.contains(&"Observation/o-123-vit".to_owned()), "{ids:?}");
    assert!(
        !ids.iter()
            .any(|id| id.contains("o-456") || id == "Patient/456"),
        "{ids:?}"
    );
}

#[tokio::test]
async fn reads_by_id_see_own_records_and_nothing_about_other_patients() {
    let harness = real_fhir_harness().await;
    let client = harness.client();
    let token = patient_token(&harness, "launch/patient patient/Observation.rs", "123");
    // 123's own record mentioning 456 as performer is 123's to read.
    let own = client
        .get_with_token("/Observation/o-123-perf456", &token)
        .await;
    assert_eq!(own.status, 200, "{}", own.text());
    // 456's record naming 123 as performer is about 456: answered like a missing one.
    let about_other = client
        .get_with_token("/Observation/o-456-perf123", &token)
        .await;
    let missing = client
        .get_with_token("/Observation/no-such-observation", &token)
        .await;
    assert_eq!(about_other.status, 404);
    assert_eq!(missing.status, 404);
    assert_eq!(about_other.text(), missing.text());
    assert_no_leak(&about_other, &[&token, "o-456-perf123", "Patient/456"]);
    for path in ["/Observation/o-456-lab/_history", "/Observation/o-456-lab"] {
        let response = client.get_with_token(path, &token).await;
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(response.text(), missing.text(), "{path}");
    }
}

#[tokio::test]
async fn a_granular_scope_sees_only_its_category() {
    let harness = real_fhir_harness().await;
    let client = harness.client();
    let token = patient_token(
        &harness,
        &format!("launch/patient patient/Observation.rs?category={LAB}"),
        "123",
    );
    for path in [
        "/Observation?patient=123",
        "/Observation?patient=123&category=laboratory",
        "/Observation?patient=123&code=http://loinc.org|2345-7",
    ] {
        let response = client.get_with_token(path, &token).await;
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        assert_eq!(
            entry_ids(&response.json()),
            ["Observation/o-123-lab"],
            "{path}"
        );
    }
    let lab = client
        .get_with_token("/Observation/o-123-lab", &token)
        .await;
    assert_eq!(lab.status, 200);
    let vital = client
        .get_with_token("/Observation/o-123-vit", &token)
        .await;
    assert_eq!(vital.status, 404);
}

#[tokio::test]
async fn a_batch_reading_another_patients_resource_is_withheld_whole() {
    let harness = real_fhir_harness().await;
    let token = patient_token(&harness, "launch/patient patient/Observation.rs", "123");
    let batch = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Observation/o-123-lab"}},
            {"request": {"method": "GET", "url": "Observation/o-456-lab"}},
        ],
    });
    let response = harness.client().post_fhir("/", &token, &batch).await;
    assert_eq!(response.status, 403, "{}", response.text());
    assert_no_leak(
        &response,
        &[&token, "o-456-lab", "Patient/456", "o-123-lab"],
    );
}

#[tokio::test]
async fn links_stay_behind_the_gateway_and_paging_works_through_it() {
    let harness = real_fhir_harness().await;
    let fhir = harness.fhir.as_ref().unwrap();
    let client = harness.client();
    for token in [
        patient_token(&harness, "launch/patient patient/Observation.rs", "123"),
        harness.token("user/Observation.rs"),
    ] {
        let first = client
            .get_with_token("/Observation?patient=123&_count=1", &token)
            .await;
        assert_eq!(first.status, 200, "{}", first.text());
        assert!(!first.text().contains(&fhir.origin()), "{}", first.text());
        let body = first.json();
        let next = body["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .expect("a next link")
            .to_owned();
        assert!(next.starts_with(PUBLIC_BASE), "{next}");
        for entry in body["entry"].as_array().unwrap() {
            let full_url = entry["fullUrl"].as_str().unwrap();
            assert!(full_url.starts_with(PUBLIC_BASE), "{full_url}");
        }
        // The next page, fetched through phigate exactly as the link says.
        let page = client
            .get_with_token(&next[PUBLIC_BASE.len()..], &token)
            .await;
        assert_eq!(page.status, 200, "{}", page.text());
        let ids = entry_ids(&page.json());
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_ne!(ids, entry_ids(&body), "the next page is another page");
    }
}

#[tokio::test]
async fn a_created_resources_location_points_at_the_gateway() {
    let harness = real_fhir_harness().await;
    let fhir = harness.fhir.as_ref().unwrap();
    let token = harness.token("user/Observation.crs");
    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Weight"},
        "subject": {"reference": "Patient/123"},
    });
    let response = harness
        .client()
        .post_fhir("/Observation", &token, &observation)
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
    let location = response.headers["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{PUBLIC_BASE}/Observation/")),
        "{location}"
    );
    assert_no_leak(&response, &[&token, &fhir.origin()]);
}

#[tokio::test]
async fn a_post_search_forwards_exactly_the_checked_parameters_as_a_form() {
    let harness = real_fhir_harness().await;
    let fhir = harness.fhir.as_ref().unwrap();
    let client = harness.client();
    let token = patient_token(&harness, "launch/patient patient/Observation.rs", "123");
    let bearer = format!("Bearer {token}");
    let form = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    // The URL alone names the patient; Medplum searches the body only, so phigate moves the
    // checked parameters there.
    for (path, body, expected) in [
        (
            "/Observation/_search?patient=123",
            "",
            vec!["o-123-lab", "o-123-perf456", "o-123-vit"],
        ),
        (
            "/Observation/_search?patient=123",
            "code=2345-7",
            vec!["o-123-lab"],
        ),
        (
            "/Observation/_search",
            "patient=123&code=2345-7",
            vec!["o-123-lab"],
        ),
    ] {
        fhir.clear_received().await;
        let response = client
            .send(Method::POST, path, &form, Bytes::from(body))
            .await;
        assert_eq!(response.status, 200, "{path} {body}: {}", response.text());
        let mut ids: Vec<String> = entry_ids(&response.json())
            .into_iter()
            .map(|id| id.trim_start_matches("Observation/").to_owned())
            .collect();
        ids.sort();
        assert_eq!(ids, expected, "{path} {body}");
        let received = fhir.received().await;
        let [request] = received.as_slice() else {
            panic!("{received:?}");
        };
        assert_eq!(request.path, "/fhir/Observation/_search");
        assert_eq!(
            request.header_values("content-type"),
            ["application/x-www-form-urlencoded"]
        );
        assert!(request.body.contains("patient=123"), "{}", request.body);
    }
    fhir.clear_received().await;
    // URL and body combine, as FHIR says: naming 456 anywhere is refused.
    let response = client
        .send(
            Method::POST,
            "/Observation/_search?patient=123",
            &form,
            Bytes::from("patient=456"),
        )
        .await;
    assert_eq!(response.status, 403, "{}", response.text());
    // A JSON body, which servers read differently, is refused outright.
    for content_type in ["application/json", "application/fhir+json", "text/plain"] {
        let response = client
            .send(
                Method::POST,
                "/Observation/_search?patient=123",
                &[
                    ("authorization", bearer.as_str()),
                    ("content-type", content_type),
                ],
                Bytes::from(r#"{"patient":"456"}"#),
            )
            .await;
        assert_eq!(response.status, 400, "{content_type}: {}", response.text());
    }
    assert!(fhir.received().await.is_empty());
}

#[tokio::test]
async fn get_searches_are_forwarded_in_canonical_form() {
    let harness = real_fhir_harness().await;
    let fhir = harness.fhir.as_ref().unwrap();
    let token = harness.token("user/Observation.rs");
    let response = harness
        .client()
        .get_with_token(
            "/Observation?subject%3APatient=123&code=a;b&_count=5",
            &token,
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let received = fhir.received().await;
    assert_eq!(
        received[0].path,
        "/fhir/Observation?subject:Patient=123&code=a%3Bb&_count=5"
    );
}

#[tokio::test]
async fn a_conditional_create_is_checked_like_a_search() {
    let harness = real_fhir_harness().await;
    let fhir = harness.fhir.as_ref().unwrap();
    let client = harness.client();
    let token = patient_token(&harness, "launch/patient patient/Observation.crs", "123");
    let bearer = format!("Bearer {token}");
    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": "Patient/123"},
    });
    let create = |condition: &'static str| {
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", "application/fhir+json"),
            ("if-none-exist", condition),
        ];
        let body = Bytes::from(observation.to_string());
        let client = &client;
        async move {
            client
                .send(Method::POST, "/Observation", &headers, body)
                .await
        }
    };
    // A condition that would find another patient's resource is refused before it runs.
    for condition in [
        "code=2345-7&patient=456",
        "code=2345-7",
        "patient=123,456&code=2345-7",
    ] {
        let response = create(condition).await;
        assert_eq!(response.status, 403, "{condition}: {}", response.text());
        assert_no_leak(&response, &[&token, "o-456-lab"]);
    }
    assert!(fhir.received().await.is_empty());
    // Confined to the patient, it runs, and the existing match comes back checked.
    let response = create("patient=123&code=http://loinc.org|2345-7").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["id"], "o-123-lab");
    // The same inside a batch entry.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [{
        "request": {"method": "POST", "url": "Observation", "ifNoneExist": "code=2345-7&patient=456"},
        "resource": observation,
    }]});
    fhir.clear_received().await;
    let response = client.post_fhir("/", &token, &batch).await;
    assert_eq!(response.status, 403, "{}", response.text());
    assert!(fhir.received().await.is_empty());
}

#[tokio::test]
async fn writes_by_id_read_the_resource_first_and_pin_its_version() {
    let harness = real_fhir_harness().await;
    let fhir = harness.fhir.as_ref().unwrap();
    let client = harness.client();
    let token = patient_token(&harness, "launch/patient patient/Observation.crud", "123");
    let bearer = format!("Bearer {token}");
    let json = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/fhir+json"),
    ];
    // 456's record, overwritten with a body that names 123: refused like a missing resource.
    let takeover = json!({"resourceType": "Observation", "id": "o-456-lab", "status": "final",
        "code": {"text": "x"}, "subject": {"reference": "Patient/123"}});
    let response = client
        .send(
            Method::PUT,
            "/Observation/o-456-lab",
            &json,
            Bytes::from(takeover.to_string()),
        )
        .await;
    assert_eq!(response.status, 404, "{}", response.text());
    let deleted = client
        .send(
            Method::DELETE,
            "/Observation/o-456-lab",
            &[("authorization", bearer.as_str())],
            Bytes::new(),
        )
        .await;
    assert_eq!(deleted.status, 404, "{}", deleted.text());
    let (_, untouched) = fhir.read("/Observation/o-456-lab").await;
    assert_eq!(untouched["subject"]["reference"], "Patient/456");
    assert!(
        fhir.received().await.iter().all(|r| r.method == "GET"),
        "only the reads reached the server"
    );
    // The patient's own record: read, then written with If-Match on the version read.
    fhir.clear_received().await;
    let (_, current) = fhir.read("/Observation/o-123-vit").await;
    let mut amended = current.clone();
    amended["status"] = json!("amended");
    let response = client
        .send(
            Method::PUT,
            "/Observation/o-123-vit",
            &json,
            Bytes::from(amended.to_string()),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let received = fhir.received().await;
    let methods: Vec<&str> = received.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["GET", "PUT"]);
    let version = current["meta"]["versionId"].as_str().unwrap();
    assert_eq!(
        received[1].header_values("if-match"),
        [format!("W/\"{version}\"").as_str()]
    );
    // A stale pin is the server's to refuse: the version read is gone now.
    assert_ne!(response.json()["meta"]["versionId"], version);
}

#[tokio::test]
async fn a_patch_may_not_move_a_resource_to_another_patient() {
    let harness = real_fhir_harness().await;
    let fhir = harness.fhir.as_ref().unwrap();
    let client = harness.client();
    let token = patient_token(&harness, "launch/patient patient/Observation.rus", "123");
    let bearer = format!("Bearer {token}");
    let patch = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json-patch+json"),
    ];
    let moving = r#"[{"op":"replace","path":"/subject/reference","value":"Patient/456"}]"#;
    let response = client
        .send(
            Method::PATCH,
            "/Observation/o-123-lab",
            &patch,
            Bytes::from(moving),
        )
        .await;
    assert_eq!(response.status, 403, "{}", response.text());
    let (_, unchanged) = fhir.read("/Observation/o-123-lab").await;
    assert_eq!(unchanged["subject"]["reference"], "Patient/123");
    // FHIRPath Patch cannot be applied here, so it cannot be checked.
    let fhirpath = json!({"resourceType": "Parameters", "parameter": []});
    let response = client
        .send(
            Method::PATCH,
            "/Observation/o-123-lab",
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/fhir+json"),
            ],
            Bytes::from(fhirpath.to_string()),
        )
        .await;
    assert_eq!(response.status, 400, "{}", response.text());
    // A patch that keeps the record the patient's goes through, pinned to the version read.
    fhir.clear_received().await;
    let harmless = r#"[{"op":"replace","path":"/status","value":"amended"}]"#;
    let response = client
        .send(
            Method::PATCH,
            "/Observation/o-123-lab",
            &patch,
            Bytes::from(harmless),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["status"], "amended");
    let received = fhir.received().await;
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[1].header_values("if-match").len(), 1);
}

#[tokio::test]
async fn a_provenance_search_by_target_returns_only_the_patients_provenance() {
    let harness = real_fhir_harness().await;
    let token = patient_token(
        &harness,
        "launch/patient patient/Observation.rs patient/Provenance.rs",
        "123",
    );
    let response = harness
        .client()
        .get_with_token("/Provenance?target=Observation/o-123-lab", &token)
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    // prov-123 names only the Observation (not in the compartment by R4's definition), and
    // prov-both names patient 456 as well: both removed.
    assert_eq!(entry_ids(&response.json()), ["Provenance/prov-p123"]);
    assert!(!response.text().contains("Patient/456"));
}

#[tokio::test]
async fn a_batch_never_runs_writes_for_a_client_then_told_refused() {
    let harness = real_fhir_harness().await;
    let fhir = harness.fhir.as_ref().unwrap();
    let token = patient_token(&harness, "launch/patient patient/Observation.crs", "123");
    let own = json!({"resourceType": "Observation", "status": "final", "code": {"text": "Weight"},
        "subject": {"reference": "Patient/123"}});
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "POST", "url": "Observation"}, "resource": own},
        {"request": {"method": "GET", "url": "Observation/o-456-lab"}},
    ]});
    let response = harness.client().post_fhir("/", &token, &batch).await;
    assert_eq!(response.status, 403, "{}", response.text());
    assert!(fhir.received().await.is_empty(), "nothing ran");
    // Writes alone go through.
    let writes = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "POST", "url": "Observation"}, "resource": own},
    ]});
    let response = harness.client().post_fhir("/", &token, &writes).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["type"], "batch-response");
}
