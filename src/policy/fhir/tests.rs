use serde_json::json;

use super::*;

fn settings() -> Settings {
    Settings {
        contexts: vec![Context::Patient, Context::User, Context::System],
        resource_types: None,
        allowed_search_params: Vec::new(),
        export_contexts: vec![Context::System],
    }
}

fn scopes(text: &str) -> Vec<SmartScope> {
    text.split(' ').filter_map(SmartScope::parse).collect()
}

/// Authorises `method target` for `scope` and `patient`; returns the reason code or `ok`.
#[track_caller]
fn check(method: &str, target: &str, scope: &str, patient: Option<&str>, expected: &str) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(p, q)| (p, Some(q)));
    let request = FhirRequest {
        method: &method,
        path,
        query,
        form_body: None,
        if_none_exist: None,
    };
    let actual = authorize(&request, &scopes(scope), patient, &settings())
        .map_or_else(|d| d.reason().to_owned(), |_| "ok".to_owned());
    assert_eq!(actual, expected, "{method} {target} with {scope}");
}

const P: &str = "launch/patient patient/Patient.r patient/Observation.rs";

#[test]
fn patient_context() {
    check("GET", "/Patient/123", P, Some("123"), "ok");
    check(
        "GET",
        "/Patient/456",
        P,
        Some("123"),
        "compartment_violation",
    );
    check("GET", "/Patient/123", P, None, "patient_context_missing");
    check("GET", "/Observation?patient=123", P, Some("123"), "ok");
    check(
        "GET",
        "/Observation?patient=456",
        P,
        Some("123"),
        "compartment_violation",
    );
    check(
        "GET",
        "/Observation",
        P,
        Some("123"),
        "compartment_violation",
    );
    check("GET", "/Patient/123/Observation", P, Some("123"), "ok");
    check(
        "GET",
        "/Patient/456/Observation",
        P,
        Some("123"),
        "compartment_violation",
    );
    check("GET", "/Condition/c1", P, Some("123"), "insufficient_scope");
    check(
        "GET",
        "/",
        "patient/*.rs",
        Some("123"),
        "compartment_violation",
    );
    // Deleting patient data by id is allowed, with a precondition: the forwarder reads it first.
    check(
        "DELETE",
        "/Observation/o1",
        "patient/*.cruds",
        Some("123"),
        "ok",
    );
    check(
        "DELETE",
        "/Patient/123",
        "patient/*.cruds",
        Some("123"),
        "compartment_violation",
    );
    check(
        "POST",
        "/Patient",
        "patient/*.cruds",
        Some("123"),
        "compartment_violation",
    );
    check(
        "GET",
        "/Patient/123/$everything",
        "patient/Patient.r",
        Some("123"),
        "ok",
    );
    check(
        "GET",
        "/Patient/456/$everything",
        "patient/Patient.r",
        Some("123"),
        "compartment_violation",
    );
    check(
        "GET",
        "/Practitioner/pr-9",
        "patient/Practitioner.r",
        Some("123"),
        "ok",
    );
}

/// What the forwarder does: parse strictly, then check.
fn check_response(body: &[u8], check: &ResponseCheck) -> Result<Checked, FhirDenial> {
    let document = parse_body(body).map_err(|_| FhirDenial::ResponseUnparseable)?;
    check_answer(&document, check)
}

#[test]
fn response_check_for_reads_by_id() {
    let method = Method::GET;
    let request = FhirRequest {
        method: &method,
        path: "/Observation/o-1",
        query: None,
        form_body: None,
        if_none_exist: None,
    };
    let permit = authorize(&request, &scopes(P), Some("123"), &settings()).unwrap();
    let check = permit.response_check.unwrap();
    let own =
        json!({"resourceType": "Observation", "subject": {"reference": "Patient/123"}}).to_string();
    let other =
        json!({"resourceType": "Observation", "subject": {"reference": "Patient/456"}}).to_string();
    let bundle = json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation", "subject": {"reference": "Patient/456"}}}]}).to_string();
    let outcome = json!({"resourceType": "OperationOutcome", "issue": []}).to_string();
    assert_eq!(
        check_response(own.as_bytes(), &check),
        Ok(Checked::Unchanged)
    );
    assert_eq!(
        check_response(outcome.as_bytes(), &check),
        Ok(Checked::Unchanged)
    );
    assert_eq!(
        check_response(other.as_bytes(), &check),
        Err(FhirDenial::ResourceNotInCompartment)
    );
    assert_eq!(
        check_response(bundle.as_bytes(), &check),
        Err(FhirDenial::ResourceNotInCompartment)
    );
    assert_eq!(
        check_response(b"<Observation/>", &check),
        Err(FhirDenial::ResponseUnparseable)
    );
    let duplicate = br#"{"resourceType":"Observation","subject":{"reference":"Patient/123"},"subject":{"reference":"Patient/456"}}"#;
    assert_eq!(
        check_response(duplicate, &check),
        Err(FhirDenial::ResponseUnparseable)
    );
}

#[test]
fn user_and_system_contexts() {
    check("GET", "/Patient/456", "user/Patient.r", None, "ok");
    check("GET", "/Observation", "system/*.rs", None, "ok");
    check(
        "DELETE",
        "/Patient/1",
        "system/*.rs",
        None,
        "insufficient_scope",
    );
    check("POST", "/Observation", "user/Observation.c", None, "ok");
    check("PATCH", "/Observation/1", "user/Observation.u", None, "ok");
    check("GET", "/metadata", "", None, "ok");
    check("POST", "/$export", "system/*.rs", None, "ok");
    check(
        "POST",
        "/$reindex",
        "system/*.cruds",
        None,
        "interaction_not_supported",
    );
    check(
        "DELETE",
        "/Observation?code=x",
        "user/*.cruds",
        None,
        "interaction_not_supported",
    );
    check("GET", "/patient/1", "user/*.cruds", None, "not_fhir");
}

#[test]
fn insufficient_scope_names_what_would_suffice() {
    let method = Method::GET;
    let request = FhirRequest {
        method: &method,
        path: "/Condition/1",
        query: None,
        form_body: None,
        if_none_exist: None,
    };
    let denial = authorize(&request, &scopes("user/Patient.r"), None, &settings()).unwrap_err();
    assert_eq!(
        denial.needed_scope().as_deref(),
        Some("patient/Condition.r user/Condition.r system/Condition.r")
    );
}

#[test]
fn rule_settings_limit_contexts_types_and_controls() {
    let method = Method::GET;
    let request = FhirRequest {
        method: &method,
        path: "/Observation",
        query: Some("_has:Observation:patient:code=1"),
        form_body: None,
        if_none_exist: None,
    };
    let narrow = Settings {
        contexts: vec![Context::System],
        resource_types: Some(vec!["Patient".into()]),
        allowed_search_params: Vec::new(),
        export_contexts: vec![Context::System],
    };
    assert_eq!(
        authorize(&request, &scopes("user/*.rs"), None, &narrow)
            .unwrap_err()
            .reason(),
        "resource_type_not_allowed"
    );
    let typed = Settings {
        resource_types: None,
        ..narrow
    };
    assert_eq!(
        authorize(&request, &scopes("user/*.rs"), None, &typed)
            .unwrap_err()
            .reason(),
        "insufficient_scope"
    );
    assert_eq!(
        authorize(&request, &scopes("system/*.rs"), None, &typed)
            .unwrap_err()
            .reason(),
        "search_param_not_allowed"
    );
    let open = Settings {
        allowed_search_params: vec!["_has".into()],
        ..typed
    };
    assert!(authorize(&request, &scopes("system/*.rs"), None, &open).is_ok());
    // Includes need no opt-in: what they bring back is checked on the answer.
    let include = FhirRequest {
        query: Some("_include=Observation:subject"),
        ..request
    };
    let permit = authorize(&include, &scopes("system/Observation.rs"), None, &open).unwrap();
    assert!(permit.response_check.is_some());
}

#[test]
fn form_body_parameters_combine_with_the_query() {
    let method = Method::POST;
    let request = FhirRequest {
        method: &method,
        path: "/Observation/_search",
        query: Some("patient=123"),
        form_body: Some("patient=456"),
        if_none_exist: None,
    };
    assert_eq!(
        authorize(&request, &scopes(P), Some("123"), &settings())
            .unwrap_err()
            .reason(),
        "compartment_violation"
    );
    let request = FhirRequest {
        form_body: Some("_method=DELETE"),
        if_none_exist: None,
        ..request
    };
    assert_eq!(
        authorize(&request, &scopes(P), Some("123"), &settings())
            .unwrap_err()
            .reason(),
        "method_override"
    );
}

#[test]
fn writes_in_patient_context_check_the_body() {
    let own =
        json!({"resourceType": "Observation", "subject": {"reference": "Patient/123"}}).to_string();
    let other =
        json!({"resourceType": "Observation", "subject": {"reference": "Patient/456"}}).to_string();
    let scopes = scopes("launch/patient patient/Observation.cu patient/Condition.c");
    let body_check = |method: &str, path: &str| {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let request = FhirRequest {
            method: &method,
            path,
            query: None,
            form_body: None,
            if_none_exist: None,
        };
        authorize(&request, &scopes, Some("123"), &settings())
            .unwrap()
            .body_check
            .unwrap()
    };
    let create = body_check("POST", "/Observation");
    assert_eq!(authorize_write_body(own.as_bytes(), &create), Ok(()));
    assert_eq!(
        authorize_write_body(other.as_bytes(), &create),
        Err(FhirDenial::CompartmentViolation)
    );
    assert_eq!(
        authorize_write_body(own.as_bytes(), &body_check("POST", "/Condition")),
        Err(FhirDenial::CompartmentViolation)
    );
    assert_eq!(
        authorize_write_body(b"{", &create),
        Err(FhirDenial::BodyUnparseable)
    );
    // The write view counts only the scopes that grant the write letter.
    let update = body_check("PUT", "/Observation/o-1");
    assert_eq!(authorize_write_body(own.as_bytes(), &update), Ok(()));
}

#[track_caller]
fn check_bundle(entries: serde_json::Value, expected: &str) {
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": entries}).to_string();
    let actual = authorize_bundle(
        bundle.as_bytes(),
        &scopes("patient/*.cruds"),
        Some("123"),
        &settings(),
    )
    .map_or_else(
        |d| d.to_string(),
        |permit| format!("ok {}", permit.entries.len()),
    );
    assert_eq!(actual, expected);
}

#[test]
fn bundles_are_authorised_entry_by_entry() {
    let get = |url: &str| json!({"request": {"method": "GET", "url": url}});
    check_bundle(
        json!([get("Patient/123"), get("Observation?patient=123")]),
        "ok 2",
    );
    check_bundle(json!([get("/Patient/123")]), "ok 1");
    check_bundle(
        json!([get("Patient/123"), get("Patient/456")]),
        "bundle_entry_denied (compartment_violation)",
    );
    for url in [
        "Patient/123/../456",
        "Patient%2F456",
        "https://gw.test/Patient/456",
        "http://127.0.0.1:1/fhir/Patient/456",
        "Patient/123#x",
        "Patient//123",
        "",
    ] {
        check_bundle(json!([get(url)]), "bundle_entry_denied (not_fhir)");
    }
    check_bundle(
        json!([get("Observation?patient=456")]),
        "bundle_entry_denied (compartment_violation)",
    );
    check_bundle(
        json!([get("Patient/123?_method=DELETE")]),
        "bundle_entry_denied (method_override)",
    );
    let put_other = json!({"fullUrl": "Patient/123", "resource": {"resourceType": "Patient", "id": "456"}, "request": {"method": "PUT", "url": "Patient/456"}});
    check_bundle(
        json!([put_other]),
        "bundle_entry_denied (compartment_violation)",
    );
    let put_mismatch = json!({"resource": {"resourceType": "Patient", "id": "456"}, "request": {"method": "PUT", "url": "Patient/123"}});
    check_bundle(
        json!([put_mismatch]),
        "bundle_entry_denied (compartment_violation)",
    );
    let create_own = json!({"resource": {"resourceType": "Observation", "subject": {"reference": "Patient/123"}}, "request": {"method": "POST", "url": "Observation"}});
    check_bundle(json!([create_own]), "ok 1");
    check_bundle(
        json!([{"request": {"method": "TRACE", "url": "Patient/123"}}]),
        "bundle_entry_denied (bundle_malformed)",
    );
}

#[test]
fn malformed_bundles() {
    let s = settings();
    let grants = scopes("user/*.cruds");
    for body in [
        json!({"resourceType": "Bundle", "type": "collection", "entry": []}).to_string(),
        json!({"resourceType": "Patient"}).to_string(),
        format!(
            "{{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[{}]}}",
            vec!["{\"request\":{\"method\":\"GET\",\"url\":\"Patient/1\"}}"; MAX_ENTRIES_PLUS_ONE]
                .join(",")
        ),
    ] {
        assert_eq!(
            authorize_bundle(body.as_bytes(), &grants, None, &s)
                .unwrap_err()
                .reason(),
            "bundle_malformed"
        );
    }
    let duplicate = br#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/1","url":"Patient/2"}}]}"#;
    assert_eq!(
        authorize_bundle(duplicate, &grants, None, &s)
            .unwrap_err()
            .reason(),
        "body_unparseable"
    );
}

const MAX_ENTRIES_PLUS_ONE: usize = bundle::MAX_ENTRIES + 1;

#[test]
fn parameter_names_are_canonical_in_patient_context() {
    for target in [
        "/Observation?PATIENT=456",
        "/Observation?Subject=Patient/456",
        "/Observation?patient=123&PATIENT=456",
        "/Observation?patient=123&Patient:Patient=456",
        "/Observation?patient=123&pat%00ient=456",
        "/Observation?patient=123&patient%20=456",
        "/Observation?patient=123&%0Apatient=456",
        "/Observation?patient=123&p%C3%A4tient=456",
        "/Observation?patient=123&=456",
    ] {
        check("GET", target, P, Some("123"), "search_param_not_canonical");
    }
    check(
        "GET",
        "/Patient?_ID=456",
        "launch/patient patient/Patient.rs",
        Some("123"),
        "search_param_not_canonical",
    );
    check(
        "GET",
        "/Observation?patient=123&code:text=x&value-quantity=1",
        P,
        Some("123"),
        "ok",
    );
    // Outside patient context case variants confine nothing, but controls are still refused.
    check(
        "GET",
        "/Observation?PATIENT=456",
        "user/Observation.rs",
        None,
        "ok",
    );
    check(
        "GET",
        "/Observation?pat%00ient=456",
        "user/Observation.rs",
        None,
        "search_param_not_canonical",
    );
}

#[test]
fn compartment_search_cannot_name_another_patient() {
    check("GET", "/Patient/123/Observation", P, Some("123"), "ok");
    check(
        "GET",
        "/Patient/123/Observation?subject=Patient/123",
        P,
        Some("123"),
        "ok",
    );
    for query in [
        "subject=Patient/456",
        "patient=456",
        "patient=123,456",
        "subject:Patient=456",
        "patient:missing=true",
    ] {
        check(
            "GET",
            &format!("/Patient/123/Observation?{query}"),
            P,
            Some("123"),
            "compartment_violation",
        );
    }
}

#[test]
fn writes_by_id_in_patient_context_carry_a_precondition() {
    let grants = scopes("launch/patient patient/Observation.cruds patient/Patient.ru");
    let precondition = |method: &str, path: &str| {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let request = FhirRequest {
            method: &method,
            path,
            query: None,
            form_body: None,
            if_none_exist: None,
        };
        authorize(&request, &grants, Some("123"), &settings())
            .unwrap()
            .precondition
            .map(|p| p.kind())
    };
    assert_eq!(
        precondition("PUT", "/Observation/o1"),
        Some(WriteKind::Replace)
    );
    assert_eq!(
        precondition("PATCH", "/Observation/o1"),
        Some(WriteKind::Patch)
    );
    assert_eq!(
        precondition("DELETE", "/Observation/o1"),
        Some(WriteKind::Delete)
    );
    assert_eq!(precondition("POST", "/Observation"), None);
    assert_eq!(precondition("GET", "/Observation/o1"), None);
    // The Patient resource is confined by its id instead.
    assert_eq!(precondition("PUT", "/Patient/123"), None);
}

#[test]
fn bundle_writes_by_id_in_patient_context_are_refused() {
    for (method, url) in [
        ("PUT", "Observation/o-456-lab"),
        ("PATCH", "Observation/o-123-lab"),
        ("DELETE", "Observation/o-123-lab"),
    ] {
        check_bundle(
            json!([{
                "request": {"method": method, "url": url},
                "resource": {"resourceType": "Observation", "id": "o-456-lab", "subject": {"reference": "Patient/123"}},
            }]),
            "bundle_entry_denied (interaction_not_supported)",
        );
    }
}

#[test]
fn bundle_entry_queries_must_read_the_same_to_every_server() {
    check_bundle(
        json!([{"request": {"method": "GET", "url": "Observation?patient=123&code=http://loinc.org|2345-7"}}]),
        "ok 1",
    );
    for url in [
        "Observation?patient=123;patient=456",
        "Observation?patient=123&name=a+b",
        "Observation?patient=%2531%2532%2533",
    ] {
        check_bundle(
            json!([{"request": {"method": "GET", "url": url}}]),
            "bundle_entry_denied (search_param_not_canonical)",
        );
    }
}

#[test]
fn bundles_never_mix_writes_with_checked_reads() {
    let own = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/123"}});
    check_bundle(
        json!([
            {"request": {"method": "POST", "url": "Observation"}, "resource": own},
            {"request": {"method": "GET", "url": "Observation/o-456-lab"}},
        ]),
        "bundle_mixes_writes",
    );
    check_bundle(
        json!([
            {"request": {"method": "POST", "url": "Observation"}, "resource": own},
            {"request": {"method": "POST", "url": "Observation"}, "resource": own},
        ]),
        "ok 2",
    );
}
