use serde_json::{Value, json};

use super::super::scope::{Context, SmartScope};
use super::*;

fn view(scopes: &str, patient: Option<&str>) -> Membership {
    let grants: Vec<SmartScope> = scopes.split(' ').filter_map(SmartScope::parse).collect();
    Membership::new(&grants, &[Context::Patient, Context::User], "rs", patient)
}

const P: &str = "patient/Observation.rs patient/Patient.r patient/Practitioner.r";

fn obs(id: &str, patient: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "subject": {"reference": format!("Patient/{patient}")}})
}

fn searchset(resources: &[Value]) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": resources.len(),
        "entry": resources.iter().map(|r| json!({"resource": r, "search": {"mode": "match"}})).collect::<Vec<_>>(),
    })
}

#[track_caller]
fn check_shape(shape: AnswerShape, document: &Value, expected: Result<Option<Value>, FhirDenial>) {
    let rule = ResponseCheck::new(view(P, Some("123")), shape);
    let actual = check(document, &rule).map(|checked| match checked {
        Checked::Unchanged => None,
        Checked::Filtered(document) => Some(document),
    });
    assert_eq!(actual, expected, "{document}");
}

#[test]
fn reads_by_id_withhold_what_is_not_the_patients() {
    check_shape(AnswerShape::ById, &obs("a", "123"), Ok(None));
    check_shape(
        AnswerShape::ById,
        &json!({"resourceType": "OperationOutcome"}),
        Ok(None),
    );
    check_shape(
        AnswerShape::ById,
        &obs("b", "456"),
        Err(FhirDenial::ResourceNotInCompartment),
    );
    // Instance history: one foreign version withholds the whole history.
    let history = json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": obs("a", "123")}, {"resource": obs("a", "456")}]});
    check_shape(
        AnswerShape::ById,
        &history,
        Err(FhirDenial::ResourceNotInCompartment),
    );
}

#[test]
fn searches_lose_what_is_not_the_patients_and_their_total() {
    let own = searchset(&[
        obs("a", "123"),
        json!({"resourceType": "Practitioner", "id": "pr"}),
    ]);
    check_shape(AnswerShape::Collection, &own, Ok(None));
    let mixed = searchset(&[
        obs("a", "123"),
        obs("b", "456"),
        json!({"resourceType": "Patient", "id": "456"}),
        json!({"resourceType": "Organization", "id": "o"}),
        json!({"resourceType": "OperationOutcome"}),
    ]);
    let expected = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": obs("a", "123"), "search": {"mode": "match"}},
            {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "match"}},
        ],
    });
    check_shape(AnswerShape::Collection, &mixed, Ok(Some(expected)));
    check_shape(
        AnswerShape::Collection,
        &obs("b", "456"),
        Err(FhirDenial::ResponseNotInCompartment),
    );
}

#[test]
fn batch_responses_are_all_or_nothing() {
    let response = |resources: &[Value]| json!({"resourceType": "Bundle", "type": "batch-response", "entry": resources.iter().map(|r| json!({"resource": r, "response": {"status": "200 OK"}})).collect::<Vec<_>>()});
    check_shape(AnswerShape::Batch, &response(&[obs("a", "123")]), Ok(None));
    check_shape(
        AnswerShape::Batch,
        &response(&[obs("a", "123"), obs("b", "456")]),
        Err(FhirDenial::ResponseNotInCompartment),
    );
    let no_resources = json!({"resourceType": "Bundle", "type": "transaction-response", "entry": [{"response": {"status": "201 Created"}}]});
    check_shape(AnswerShape::Batch, &no_resources, Ok(None));
}

#[test]
fn descriptions_name_what_is_enforced() {
    let by_id = ResponseCheck::new(view(P, Some("123")), AnswerShape::ById);
    assert!(by_id.describe().contains("launch patient"));
    assert!(by_id.describe().contains("404"));
    let user = ResponseCheck::new(view("user/Observation.rs", None), AnswerShape::Collection);
    assert!(user.describe().contains("removed"));
}
