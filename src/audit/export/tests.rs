use serde_json::{Value, json};

use super::*;

/// A decision record as the trail holds it, with `changes` applied.
fn record(changes: Value) -> String {
    let mut record = json!({
        "seq": 4, "event": "decision", "time": "2026-12-07T12:00:00.000Z",
        "request_id": "6f1c", "source": "10.0.0.7", "method": "GET",
        "client_id": "app-1", "subject": "u-1", "patient": "p-9",
        "issuer": "https://as.test", "jti": "j-1", "cert_thumbprint": null, "binding": "bearer",
        "rule": "read", "policy_version": "abc", "interaction": "read",
        "resource_type": "Observation", "resource_id": "o-1", "decision": "allow",
        "status": 200, "reason": "ok", "upstream_status": 200, "latency_ms": 1.5,
        "prev": "00", "mac": "11",
    });
    for (key, value) in changes.as_object().unwrap() {
        record[key] = value.clone();
    }
    record.to_string()
}

/// (action, outcome, subtype code, entity references or types)
#[track_caller]
fn check(changes: Value, expected: (&str, &str, Option<&str>, &[&str])) {
    let event = audit_event(&record(changes)).unwrap();
    let entities: Vec<String> = event["entity"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|e| {
                    let what = &e["what"];
                    what["reference"]
                        .as_str()
                        .or(what["type"].as_str())
                        .unwrap()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    let got = (
        event["action"].as_str().unwrap(),
        event["outcome"].as_str().unwrap(),
        event["subtype"][0]["code"].as_str(),
        entities.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(
        got,
        (expected.0, expected.1, expected.2, expected.3.to_vec())
    );
}

#[test]
fn each_record_becomes_a_balp_shaped_audit_event() {
    check(
        json!({}),
        ("R", "0", Some("read"), &["Patient/p-9", "Observation/o-1"]),
    );
    check(
        json!({"interaction": "create", "method": "POST", "resource_id": null}),
        ("C", "0", Some("create"), &["Patient/p-9", "Observation"]),
    );
    check(
        json!({"interaction": "patch"}),
        ("U", "0", Some("patch"), &["Patient/p-9", "Observation/o-1"]),
    );
    check(
        json!({"interaction": "delete", "decision": "deny", "reason": "insufficient_scope"}),
        (
            "D",
            "4",
            Some("delete"),
            &["Patient/p-9", "Observation/o-1"],
        ),
    );
    check(
        json!({"interaction": "search-compartment", "resource_id": null, "decision": "error"}),
        ("E", "8", Some("search"), &["Patient/p-9", "Observation"]),
    );
    // Not a FHIR rule: the method decides the action, and there is no subtype.
    check(
        json!({"interaction": null, "resource_type": null, "resource_id": null, "patient": null, "method": "DELETE"}),
        ("D", "0", None, &[]),
    );
}

#[test]
fn agents_name_user_client_and_phigate_and_the_trail_events_are_left_out() {
    let event = audit_event(&record(json!({}))).unwrap();
    assert_eq!(event["resourceType"], "AuditEvent");
    assert_eq!(event["type"]["code"], "rest");
    assert_eq!(event["recorded"], "2026-12-07T12:00:00.000Z");
    let agents = event["agent"].as_array().unwrap();
    assert_eq!(agents.len(), 3);
    assert_eq!(agents[0]["who"]["identifier"]["value"], "u-1");
    assert_eq!(agents[0]["requestor"], true);
    assert_eq!(agents[1]["who"]["identifier"]["value"], "app-1");
    assert_eq!(agents[1]["network"]["address"], "10.0.0.7");
    assert_eq!(agents[2]["who"]["display"], "phigate");
    // No token or claim other than identities exists to leak: the jti is not exported either.
    assert!(!event.to_string().contains("j-1"));

    let anonymous = audit_event(&record(json!({"subject": null, "client_id": null}))).unwrap();
    assert_eq!(anonymous["agent"][0]["requestor"], true);
    assert!(anonymous["agent"][0].get("who").is_none());

    let restart = r#"{"seq":0,"event":"chain_restart","time":"t","reason":"damaged_tail","prev":"0","mac":"1"}"#;
    assert_eq!(audit_event(restart), None);
    assert_eq!(audit_event("not json"), None);
}

#[test]
fn a_break_glass_record_carries_emergency_treatment_as_its_purpose() {
    let justification = "ED bay 2: unconscious patient";
    let event = audit_event(&record(json!({
        "break_glass_rule": "emergency-read",
        "break_glass_justification": justification,
        "reason": "break_glass",
    })))
    .unwrap();
    let purpose = &event["purposeOfEvent"][0];
    assert_eq!(purpose["coding"][0]["code"], "ETREAT", "{event}");
    assert_eq!(purpose["text"], justification);
    let user = event["agent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["requestor"] == true)
        .unwrap();
    assert_eq!(user["purposeOfUse"][0]["coding"][0]["code"], "ETREAT");
    // An ordinary grant states no purpose.
    let ordinary = audit_event(&record(json!({}))).unwrap();
    assert!(ordinary.get("purposeOfEvent").is_none(), "{ordinary}");
}
