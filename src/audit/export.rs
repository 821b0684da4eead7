//! FHIR R4 AuditEvent resources from audit records, in the shape of IHE Basic Audit Log Patterns
//! (BALP) for RESTful activity: `type` rest, `subtype` the FHIR interaction, `action` C/R/U/D/E,
//! `recorded`, `outcome`, an agent each for the user (subject), the client application (with
//! the network address) and phigate, phigate as `source`, and entities for the patient and the
//! resource; a break-glass grant carries `purposeOfEvent` ETREAT (emergency treatment) and its
//! justification as the user agent's `purposeOfUse` text. It reads records that `verify` has
//! accepted; it never sees a token and adds nothing the record does not hold.

use serde_json::{Value, json};

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const PURPOSE_OF_USE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// The AuditEvent for one audit line, or `None` for a line that records no decision (a
/// `chain_restart`) or is not JSON.
pub fn audit_event(line: &str) -> Option<Value> {
    let record: Value = serde_json::from_str(line).ok()?;
    if record["event"] != "decision" {
        return None;
    }
    let text = |field: &str| record[field].as_str();
    let interaction = text("interaction");
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": text("request_id"),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "action": action(interaction, text("method")),
        "recorded": text("time"),
        "outcome": outcome(text("decision")),
        "outcomeDesc": text("reason"),
        "agent": agents(&record),
        "source": {
            "observer": { "display": "phigate" },
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server",
            }],
        },
    });
    if let Some(interaction) = interaction {
        event["subtype"] = json!([{
            "system": "http://hl7.org/fhir/restful-interaction",
            // R4 has no `search-compartment`: a compartment search is a `search`.
            "code": if interaction == "search-compartment" { "search" } else { interaction },
        }]);
    }
    if record["break_glass_rule"].is_string() {
        let emergency = json!({
            "coding": [{ "system": PURPOSE_OF_USE, "code": "ETREAT", "display": "Emergency Treatment" }],
            "text": record["break_glass_justification"],
        });
        event["purposeOfEvent"] = json!([emergency]);
        if let Some(user) = event["agent"]
            .as_array_mut()
            .and_then(|agents| agents.iter_mut().find(|a| a["requestor"] == true))
        {
            user["purposeOfUse"] = json!([emergency]);
        }
    }
    let entities = entities(&record);
    if !entities.is_empty() {
        event["entity"] = Value::Array(entities);
    }
    Some(event)
}

/// BALP's action: create C, read R, update U, delete D, everything else (searches,
/// operations) E; by method when the rule was not a FHIR one.
fn action(interaction: Option<&str>, method: Option<&str>) -> &'static str {
    match (interaction, method) {
        (Some("create"), _) => "C",
        (Some("read" | "vread" | "history-instance" | "history-type" | "history-system"), _) => "R",
        (Some("update" | "patch"), _) => "U",
        (Some("delete"), _) => "D",
        (Some(_), _) => "E",
        (None, Some("GET" | "HEAD")) => "R",
        (None, Some("POST")) => "C",
        (None, Some("PUT" | "PATCH")) => "U",
        (None, Some("DELETE")) => "D",
        (None, _) => "E",
    }
}

/// 0 success; 4 minor failure (refused); 8 serious failure (the upstream failed).
fn outcome(decision: Option<&str>) -> &'static str {
    match decision {
        Some("allow" | "would_deny") => "0",
        Some("error") => "8",
        _ => "4",
    }
}

fn agents(record: &Value) -> Vec<Value> {
    let issuer = &record["issuer"];
    let mut agents = Vec::new();
    if let Some(subject) = record["subject"].as_str() {
        agents.push(json!({
            "type": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP",
                "display": "information recipient",
            }]},
            "who": { "identifier": { "system": issuer, "value": subject } },
            "requestor": true,
        }));
    }
    let mut client = json!({
        "type": { "coding": [{ "system": DCM, "code": "110153", "display": "Source Role ID" }] },
        "requestor": agents.is_empty(),
        "network": { "address": record["source"], "type": "2" },
    });
    if let Some(client_id) = record["client_id"].as_str() {
        client["who"] = json!({ "identifier": { "system": issuer, "value": client_id } });
    }
    agents.push(client);
    agents.push(json!({
        "type": { "coding": [{ "system": DCM, "code": "110152", "display": "Destination Role ID" }] },
        "who": { "display": "phigate" },
        "requestor": false,
    }));
    agents
}

fn entities(record: &Value) -> Vec<Value> {
    let mut entities = Vec::new();
    if let Some(patient) = record["patient"].as_str() {
        entities.push(json!({
            "what": { "reference": format!("Patient/{patient}") },
            "type": { "system": ENTITY_TYPE, "code": "1", "display": "Person" },
            "role": { "system": OBJECT_ROLE, "code": "1", "display": "Patient" },
        }));
    }
    if let Some(resource_type) = record["resource_type"].as_str() {
        let what = match record["resource_id"].as_str() {
            Some(id) => json!({ "reference": format!("{resource_type}/{id}") }),
            None => json!({ "type": resource_type }),
        };
        entities.push(json!({
            "what": what,
            "type": { "system": ENTITY_TYPE, "code": "2", "display": "System Object" },
            "role": { "system": OBJECT_ROLE, "code": "4", "display": "Domain Resource" },
        }));
    }
    entities
}

#[cfg(test)]
mod tests;
