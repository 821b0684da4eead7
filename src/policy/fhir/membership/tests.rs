use serde_json::{Value, json};

use super::*;

const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";

fn observation(subject: &str, category: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "subject": {"reference": subject},
    })
}

#[track_caller]
fn check(scopes: &str, patient: Option<&str>, resource: &Value, expected: bool) {
    let grants: Vec<SmartScope> = scopes.split(' ').filter_map(SmartScope::parse).collect();
    let view = Membership::new(
        &grants,
        &[Context::Patient, Context::User, Context::System],
        "rs",
        patient,
    );
    assert_eq!(view.admits(resource), expected, "{scopes} / {resource}");
}

#[test]
fn patient_scopes_admit_only_the_patients_own_record_and_shared_data() {
    let p = "patient/Observation.rs patient/Patient.r patient/Practitioner.r";
    check(
        p,
        Some("123"),
        &observation("Patient/123", "laboratory"),
        true,
    );
    check(
        p,
        Some("123"),
        &observation("Patient/456", "laboratory"),
        false,
    );
    check(
        p,
        Some("123"),
        &json!({"resourceType": "Patient", "id": "123"}),
        true,
    );
    check(
        p,
        Some("123"),
        &json!({"resourceType": "Patient", "id": "456"}),
        false,
    );
    check(
        p,
        Some("123"),
        &json!({"resourceType": "Practitioner", "id": "pr-9"}),
        true,
    );
    // A type the token has no scope for is never admitted, shared or not.
    check(
        p,
        Some("123"),
        &json!({"resourceType": "Organization", "id": "o"}),
        false,
    );
    check(
        p,
        Some("123"),
        &json!({"resourceType": "Condition", "subject": {"reference": "Patient/123"}}),
        false,
    );
    // Data about patient 456 stays foreign even where 123 is the performer.
    let about_other = json!({"resourceType": "Observation", "subject": {"reference": "Patient/456"}, "performer": [{"reference": "Patient/123"}]});
    check(p, Some("123"), &about_other, false);
    // The patient's own record that mentions someone else in a role is still theirs.
    let own_with_other = json!({"resourceType": "Observation", "subject": {"reference": "Patient/123"}, "performer": [{"reference": "Patient/456"}]});
    check(p, Some("123"), &own_with_other, true);
    // No owner and the patient only as performer: theirs through the role.
    let role_only =
        json!({"resourceType": "Observation", "performer": [{"reference": "Patient/123"}]});
    check(p, Some("123"), &role_only, true);
    let orphan = json!({"resourceType": "Observation", "status": "final"});
    check(p, Some("123"), &orphan, false);
    let group = json!({"resourceType": "Observation", "subject": {"reference": "Group/g1"}, "performer": [{"reference": "Patient/123"}]});
    check(p, Some("123"), &group, false);
    // A patient/ scope without a launch patient admits nothing of the compartment.
    check(p, None, &observation("Patient/123", "laboratory"), false);
}

#[test]
fn user_and_system_scopes_admit_by_type() {
    check(
        "user/Observation.rs",
        None,
        &observation("Patient/456", "laboratory"),
        true,
    );
    check(
        "user/Observation.rs",
        None,
        &json!({"resourceType": "Patient", "id": "456"}),
        false,
    );
    check(
        "system/*.rs",
        None,
        &json!({"resourceType": "Patient", "id": "456"}),
        true,
    );
    check(
        "system/*.c",
        None,
        &json!({"resourceType": "Patient", "id": "456"}),
        false,
    );
    check(
        "user/Observation.rs",
        None,
        &json!({"resourceType": "OperationOutcome"}),
        true,
    );
    check("user/Observation.rs", None, &json!({"id": "x"}), false);
}

#[test]
fn granular_scopes_admit_only_resources_carrying_their_code() {
    let gran = format!("patient/Observation.rs?category={LAB}");
    check(
        &gran,
        Some("123"),
        &observation("Patient/123", "laboratory"),
        true,
    );
    check(
        &gran,
        Some("123"),
        &observation("Patient/123", "vital-signs"),
        false,
    );
    check(
        &gran,
        Some("123"),
        &observation("Patient/456", "laboratory"),
        false,
    );
    check(
        "user/Observation.rs?category=laboratory",
        None,
        &observation("Patient/456", "laboratory"),
        true,
    );
    check(
        "user/Observation.rs?category=|laboratory",
        None,
        &observation("Patient/456", "laboratory"),
        false,
    );
    check(
        "user/Observation.rs?category=other|laboratory",
        None,
        &observation("Patient/456", "laboratory"),
        false,
    );
    // A second, plain scope for the type admits what the granular one does not.
    check(
        &format!("{gran} patient/Observation.s"),
        Some("123"),
        &observation("Patient/123", "vital-signs"),
        true,
    );
    let coded = json!({"resourceType": "Observation", "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}, "subject": {"reference": "Patient/123"}});
    check(
        "patient/Observation.rs?code=http://loinc.org|2345-7",
        Some("123"),
        &coded,
        true,
    );
    check(
        "patient/Observation.rs?code=http://loinc.org|8867-4",
        Some("123"),
        &coded,
        false,
    );
}
