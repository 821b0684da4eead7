//! The Patient compartment (FHIR R4 CompartmentDefinition "Patient"): which resource types
//! belong to a patient, through which search parameters and reference elements. A `patient/`
//! scope confines searches to the launch patient by these parameters, and resources read or
//! written by id are checked through these elements. A resource type not listed here is not
//! patient data for this purpose (Practitioner, Organization, Medication, ...).

use serde_json::Value;

use super::search::Param;

/// One compartment member type: its patient search parameters and reference elements.
struct Member {
    resource_type: &'static str,
    params: &'static [&'static str],
    elements: &'static [&'static str],
}

/// From the FHIR R4 Patient CompartmentDefinition (a subset of the common clinical types).
const MEMBERS: &[Member] = &[
    Member {
        resource_type: "Observation",
        params: &["subject", "patient", "performer"],
        elements: &["subject", "performer"],
    },
    Member {
        resource_type: "Condition",
        params: &["patient", "subject", "asserter"],
        elements: &["subject", "asserter"],
    },
    Member {
        resource_type: "Encounter",
        params: &["patient", "subject"],
        elements: &["subject"],
    },
    Member {
        resource_type: "MedicationRequest",
        params: &["subject", "patient"],
        elements: &["subject"],
    },
    Member {
        resource_type: "MedicationStatement",
        params: &["subject", "patient"],
        elements: &["subject"],
    },
    Member {
        resource_type: "AllergyIntolerance",
        params: &["patient", "recorder", "asserter"],
        elements: &["patient", "recorder", "asserter"],
    },
    Member {
        resource_type: "Procedure",
        params: &["patient", "subject", "performer"],
        elements: &["subject"],
    },
    Member {
        resource_type: "Immunization",
        params: &["patient"],
        elements: &["patient"],
    },
    Member {
        resource_type: "DiagnosticReport",
        params: &["subject", "patient"],
        elements: &["subject"],
    },
    Member {
        resource_type: "DocumentReference",
        params: &["subject", "patient", "author"],
        elements: &["subject", "author"],
    },
    Member {
        resource_type: "CarePlan",
        params: &["patient", "subject", "performer"],
        elements: &["subject"],
    },
    Member {
        resource_type: "Goal",
        params: &["patient", "subject"],
        elements: &["subject"],
    },
    Member {
        resource_type: "ServiceRequest",
        params: &["subject", "patient", "performer"],
        elements: &["subject"],
    },
    Member {
        resource_type: "Claim",
        params: &["patient", "payee"],
        elements: &["patient"],
    },
    Member {
        resource_type: "Coverage",
        params: &["policy-holder", "subscriber", "beneficiary", "payor"],
        elements: &["beneficiary", "subscriber", "policyHolder"],
    },
    Member {
        resource_type: "ExplanationOfBenefit",
        params: &["patient", "payee"],
        elements: &["patient"],
    },
    Member {
        resource_type: "QuestionnaireResponse",
        params: &["subject", "author"],
        elements: &["subject", "author"],
    },
    Member {
        resource_type: "Appointment",
        params: &["actor", "patient"],
        elements: &["participant.actor"],
    },
    Member {
        resource_type: "Specimen",
        params: &["subject", "patient"],
        elements: &["subject"],
    },
    Member {
        resource_type: "Device",
        params: &["patient"],
        elements: &["patient"],
    },
    Member {
        resource_type: "FamilyMemberHistory",
        params: &["patient"],
        elements: &["patient"],
    },
    Member {
        resource_type: "MedicationAdministration",
        params: &["patient", "subject", "performer"],
        elements: &["subject"],
    },
    Member {
        resource_type: "MedicationDispense",
        params: &["subject", "patient", "receiver"],
        elements: &["subject"],
    },
    Member {
        resource_type: "CareTeam",
        params: &["patient", "subject", "participant"],
        elements: &["subject"],
    },
    Member {
        resource_type: "EpisodeOfCare",
        params: &["patient"],
        elements: &["patient"],
    },
    Member {
        resource_type: "Composition",
        params: &["subject", "author", "attester"],
        elements: &["subject"],
    },
    Member {
        resource_type: "ImagingStudy",
        params: &["patient"],
        elements: &["subject"],
    },
    Member {
        resource_type: "Media",
        params: &["subject"],
        elements: &["subject"],
    },
    Member {
        resource_type: "Flag",
        params: &["patient"],
        elements: &["subject"],
    },
    Member {
        resource_type: "List",
        params: &["subject", "source"],
        elements: &["subject"],
    },
    Member {
        resource_type: "Consent",
        params: &["patient"],
        elements: &["patient"],
    },
    Member {
        resource_type: "RiskAssessment",
        params: &["subject"],
        elements: &["subject"],
    },
    Member {
        resource_type: "NutritionOrder",
        params: &["patient"],
        elements: &["patient"],
    },
    Member {
        resource_type: "DeviceRequest",
        params: &["subject", "performer"],
        elements: &["subject"],
    },
    Member {
        resource_type: "Communication",
        params: &["subject", "sender", "recipient"],
        elements: &["subject"],
    },
    Member {
        resource_type: "CommunicationRequest",
        params: &["subject", "sender", "recipient", "requester"],
        elements: &["subject"],
    },
    Member {
        resource_type: "ClinicalImpression",
        params: &["subject"],
        elements: &["subject"],
    },
    Member {
        resource_type: "AdverseEvent",
        params: &["subject"],
        elements: &["subject"],
    },
    Member {
        resource_type: "DetectedIssue",
        params: &["patient"],
        elements: &["patient"],
    },
    Member {
        resource_type: "RelatedPerson",
        params: &["patient"],
        elements: &["patient"],
    },
    Member {
        resource_type: "Account",
        params: &["subject"],
        elements: &["subject"],
    },
];

/// Types that hold no patient's data (directories, terminology, knowledge artefacts). Under a
/// `patient/` scope they are readable without confinement; a type that is neither listed here
/// nor a compartment member is refused in patient context, because phigate cannot show it
/// belongs to the patient.
const SHARED_TYPES: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "HealthcareService",
    "Endpoint",
    "Medication",
    "Substance",
    "Questionnaire",
    "ValueSet",
    "CodeSystem",
    "ConceptMap",
    "StructureDefinition",
    "CapabilityStatement",
    "SearchParameter",
    "OperationDefinition",
    "PlanDefinition",
    "ActivityDefinition",
    "Library",
    "Measure",
];

/// Whether `resource_type` holds no patient's data.
pub fn is_shared_data(resource_type: &str) -> bool {
    SHARED_TYPES.contains(&resource_type)
}

fn member(resource_type: &str) -> Option<&'static Member> {
    MEMBERS.iter().find(|m| m.resource_type == resource_type)
}

/// Whether `resource_type` holds patient data (is in the Patient compartment, or is Patient).
pub fn is_patient_data(resource_type: &str) -> bool {
    resource_type == "Patient" || member(resource_type).is_some()
}

/// The parameters through which a search on `resource_type` names a patient: its compartment
/// parameters, or `_id` for Patient itself. A case variant of one of these is refused in
/// patient context (`PATIENT`, `Subject`): a lenient server may read it as the real one.
pub fn patient_params(resource_type: &str) -> &'static [&'static str] {
    if resource_type == "Patient" {
        return &["_id"];
    }
    member(resource_type).map_or(&[], |m| m.params)
}

/// Checks a search on `resource_type` is confined to `patient`: at least one compartment
/// parameter names the patient, and every compartment parameter present names only the patient
/// (no other ids, OR lists, absolute URLs, versions, or modifiers other than `:Patient`).
pub fn search_is_confined(resource_type: &str, params: &[Param], patient: &str) -> bool {
    if resource_type == "Patient" {
        let ids: Vec<&Param> = params.iter().filter(|p| p.base() == "_id").collect();
        return matches!(ids.as_slice(), [only] if only.name == "_id" && only.value == patient);
    }
    if member(resource_type).is_none() {
        return true;
    }
    names_only(resource_type, params, patient) == Some(true)
}

/// Whether the compartment parameters of a search name only `patient`: `Some(true)` when at
/// least one names it and none names anything else, `Some(false)` when none is present, `None`
/// when one names something else. A compartment search (`Patient/123/Observation`) may still
/// carry them, and then they must not name another patient either.
pub fn names_only(resource_type: &str, params: &[Param], patient: &str) -> Option<bool> {
    let own_reference = format!("Patient/{patient}");
    let watched = patient_params(resource_type);
    let mut named = false;
    for param in params.iter().filter(|p| watched.contains(&p.base())) {
        let names_patient = match param.name.split_once(':') {
            None if param.base() == "patient" => {
                param.value == patient || param.value == own_reference
            }
            None if param.base() == "_id" => param.value == patient,
            None => param.value == own_reference,
            Some((_, "Patient")) => param.value == patient,
            Some(_) => false,
        };
        if !names_patient {
            return None;
        }
        named = true;
    }
    Some(named)
}

/// Whether a resource (parsed JSON) belongs to `patient`'s compartment, as `expected_type`
/// (`None`: any member type, as in a Bundle).
pub fn resource_belongs(resource: &Value, expected_type: Option<&str>, patient: &str) -> bool {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
        return false;
    };
    if expected_type.is_some_and(|t| t != resource_type) {
        return false;
    }
    if resource_type == "Patient" {
        return resource.get("id").and_then(Value::as_str) == Some(patient);
    }
    let Some(member) = member(resource_type) else {
        // Shared data (a Practitioner in a searchset) passes; anything phigate cannot place does not.
        return expected_type.is_none() && is_shared_data(resource_type);
    };
    let own = format!("Patient/{patient}");
    let references = member
        .elements
        .iter()
        .flat_map(|path| references_at(resource, path));
    let mut any_own = false;
    for reference in references {
        if reference.starts_with("Patient/") {
            if reference != own {
                // A member resource that points at another patient is not (only) ours.
                return false;
            }
            any_own = true;
        }
    }
    any_own
}

/// The `reference` strings found at a dotted element path (arrays are walked).
fn references_at<'a>(value: &'a Value, path: &str) -> Vec<&'a str> {
    let mut current = vec![value];
    for step in path.split('.') {
        current = current
            .into_iter()
            .filter_map(|v| v.get(step))
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().collect::<Vec<_>>(),
                other => vec![other],
            })
            .collect();
    }
    current
        .into_iter()
        .filter_map(|v| v.get("reference").and_then(Value::as_str))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::search::parse;
    use super::*;

    #[track_caller]
    fn check(resource_type: &str, query: &str, expected: bool) {
        assert_eq!(
            search_is_confined(resource_type, &parse(query), "123"),
            expected,
            "{resource_type}?{query}"
        );
    }

    #[test]
    fn search_confinement() {
        check("Observation", "patient=123", true);
        check("Observation", "patient=Patient/123", true);
        check("Observation", "subject=Patient/123", true);
        check("Observation", "subject:Patient=123", true);
        check(
            "Observation",
            "patient=123&subject=Patient/123&code=x",
            true,
        );
        check("Observation", "", false);
        check("Observation", "code=x", false);
        check("Observation", "patient=456", false);
        check("Observation", "patient=123,456", false);
        check("Observation", "patient=123&patient=456", false);
        check("Observation", "subject=Patient/456", false);
        check("Observation", "subject=123", false);
        check(
            "Observation",
            "subject=https://other.example/fhir/Patient/123",
            false,
        );
        check("Observation", "subject:Patient=456", false);
        check("Observation", "patient:missing=true", false);
        check("Observation", "subject=Group/g1", false);
        check("Observation", "patient=Patient/123/_history/1", false);
        check("Observation", "patient=123&performer=Patient/456", false);
        check("Patient", "_id=123", true);
        check("Patient", "_id=456", false);
        check("Patient", "_id=123,456", false);
        check("Patient", "name=x", false);
        check("Practitioner", "name=x", true);
        check("MedicationAdministration", "subject=Patient/123", true);
        check("Consent", "patient=456", false);
    }

    #[test]
    fn resource_membership() {
        let own = json!({"resourceType": "Observation", "subject": {"reference": "Patient/123"}});
        let other = json!({"resourceType": "Observation", "subject": {"reference": "Patient/456"}});
        let mixed = json!({"resourceType": "Observation", "subject": {"reference": "Patient/123"}, "performer": [{"reference": "Patient/456"}]});
        let orphan = json!({"resourceType": "Observation", "status": "final"});
        let appointment = json!({"resourceType": "Appointment", "participant": [{"actor": {"reference": "Practitioner/1"}}, {"actor": {"reference": "Patient/123"}}]});
        assert!(resource_belongs(&own, Some("Observation"), "123"));
        assert!(!resource_belongs(&own, Some("Condition"), "123"));
        assert!(!resource_belongs(&other, Some("Observation"), "123"));
        assert!(!resource_belongs(&mixed, None, "123"));
        assert!(!resource_belongs(&orphan, None, "123"));
        assert!(resource_belongs(&appointment, None, "123"));
        assert!(resource_belongs(
            &json!({"resourceType": "Patient", "id": "123"}),
            Some("Patient"),
            "123"
        ));
        assert!(!resource_belongs(
            &json!({"resourceType": "Patient", "id": "456"}),
            None,
            "123"
        ));
        assert!(resource_belongs(
            &json!({"resourceType": "Practitioner", "id": "p"}),
            None,
            "123"
        ));
        assert!(!resource_belongs(
            &json!({"resourceType": "Practitioner"}),
            Some("Observation"),
            "123"
        ));
        assert!(!resource_belongs(
            &json!({"resourceType": "Provenance", "id": "p"}),
            None,
            "123"
        ));
    }
}
