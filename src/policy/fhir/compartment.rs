//! The Patient compartment (FHIR R4 CompartmentDefinition "Patient"): which resource types
//! belong to a patient, through which search parameters and reference elements. A `patient/`
//! scope confines searches to the launch patient by these parameters, and resources read or
//! written by id are checked through these elements. A resource type not listed here is not
//! patient data for this purpose (Practitioner, Organization, Medication, ...).

use serde_json::Value;

use super::search::Param;

/// One compartment member type: the search parameters that name its patient, the elements
/// that say whose record it is (`owners`), and the elements through which a patient appears
/// in another role (`roles`: performer, author, recipient, ...).
struct Member {
    resource_type: &'static str,
    params: &'static [&'static str],
    owners: &'static [&'static str],
    roles: &'static [&'static str],
}

/// From the FHIR R4 Patient CompartmentDefinition (the common clinical types), each parameter
/// mapped to the element it searches.
const MEMBERS: &[Member] = &[
    Member {
        resource_type: "Observation",
        params: &["subject", "patient", "performer"],
        owners: &["subject"],
        roles: &["performer"],
    },
    Member {
        resource_type: "Condition",
        params: &["patient", "subject", "asserter"],
        owners: &["subject"],
        roles: &["asserter"],
    },
    Member {
        resource_type: "Encounter",
        params: &["patient", "subject"],
        owners: &["subject"],
        roles: &[],
    },
    Member {
        resource_type: "MedicationRequest",
        params: &["subject", "patient"],
        owners: &["subject"],
        roles: &[],
    },
    Member {
        resource_type: "MedicationStatement",
        params: &["subject", "patient"],
        owners: &["subject"],
        roles: &[],
    },
    Member {
        resource_type: "AllergyIntolerance",
        params: &["patient", "recorder", "asserter"],
        owners: &["patient"],
        roles: &["recorder", "asserter"],
    },
    Member {
        resource_type: "Procedure",
        params: &["patient", "subject", "performer"],
        owners: &["subject"],
        roles: &["performer.actor"],
    },
    Member {
        resource_type: "Immunization",
        params: &["patient"],
        owners: &["patient"],
        roles: &[],
    },
    Member {
        resource_type: "DiagnosticReport",
        params: &["subject", "patient"],
        owners: &["subject"],
        roles: &[],
    },
    Member {
        resource_type: "DocumentReference",
        params: &["subject", "patient", "author"],
        owners: &["subject"],
        roles: &["author"],
    },
    Member {
        resource_type: "CarePlan",
        params: &["patient", "subject", "performer"],
        owners: &["subject"],
        roles: &[],
    },
    Member {
        resource_type: "Goal",
        params: &["patient", "subject"],
        owners: &["subject"],
        roles: &[],
    },
    Member {
        resource_type: "ServiceRequest",
        params: &["subject", "patient", "performer"],
        owners: &["subject"],
        roles: &["performer"],
    },
    Member {
        resource_type: "Claim",
        params: &["patient", "payee"],
        owners: &["patient"],
        roles: &["payee.party"],
    },
    Member {
        resource_type: "Coverage",
        params: &["policy-holder", "subscriber", "beneficiary", "payor"],
        owners: &["beneficiary"],
        roles: &["subscriber", "policyHolder", "payor"],
    },
    Member {
        resource_type: "ExplanationOfBenefit",
        params: &["patient", "payee"],
        owners: &["patient"],
        roles: &["payee.party"],
    },
    Member {
        resource_type: "QuestionnaireResponse",
        params: &["subject", "author"],
        owners: &["subject"],
        roles: &["author"],
    },
    Member {
        resource_type: "Appointment",
        params: &["actor", "patient"],
        owners: &[],
        roles: &["participant.actor"],
    },
    Member {
        resource_type: "Specimen",
        params: &["subject", "patient"],
        owners: &["subject"],
        roles: &[],
    },
    Member {
        resource_type: "Device",
        params: &["patient"],
        owners: &["patient"],
        roles: &[],
    },
    Member {
        resource_type: "FamilyMemberHistory",
        params: &["patient"],
        owners: &["patient"],
        roles: &[],
    },
    Member {
        resource_type: "MedicationAdministration",
        params: &["patient", "subject", "performer"],
        owners: &["subject"],
        roles: &["performer.actor"],
    },
    Member {
        resource_type: "MedicationDispense",
        params: &["subject", "patient", "receiver"],
        owners: &["subject"],
        roles: &["receiver"],
    },
    Member {
        resource_type: "CareTeam",
        params: &["patient", "subject", "participant"],
        owners: &["subject"],
        roles: &["participant.member"],
    },
    Member {
        resource_type: "EpisodeOfCare",
        params: &["patient"],
        owners: &["patient"],
        roles: &[],
    },
    Member {
        resource_type: "Composition",
        params: &["subject", "author", "attester"],
        owners: &["subject"],
        roles: &["author", "attester.party"],
    },
    Member {
        resource_type: "ImagingStudy",
        params: &["patient"],
        owners: &["subject"],
        roles: &[],
    },
    Member {
        resource_type: "Media",
        params: &["subject"],
        owners: &["subject"],
        roles: &[],
    },
    Member {
        resource_type: "Flag",
        params: &["patient"],
        owners: &["subject"],
        roles: &[],
    },
    Member {
        resource_type: "List",
        params: &["subject", "source"],
        owners: &["subject"],
        roles: &["source"],
    },
    Member {
        resource_type: "Consent",
        params: &["patient"],
        owners: &["patient"],
        roles: &[],
    },
    Member {
        resource_type: "RiskAssessment",
        params: &["subject"],
        owners: &["subject"],
        roles: &[],
    },
    Member {
        resource_type: "NutritionOrder",
        params: &["patient"],
        owners: &["patient"],
        roles: &[],
    },
    Member {
        resource_type: "DeviceRequest",
        params: &["subject", "performer"],
        owners: &["subject"],
        roles: &["performer"],
    },
    Member {
        resource_type: "Communication",
        params: &["subject", "sender", "recipient"],
        owners: &["subject"],
        roles: &["sender", "recipient"],
    },
    Member {
        resource_type: "CommunicationRequest",
        params: &["subject", "sender", "recipient", "requester"],
        owners: &["subject"],
        roles: &["sender", "recipient", "requester"],
    },
    Member {
        resource_type: "ClinicalImpression",
        params: &["subject"],
        owners: &["subject"],
        roles: &[],
    },
    Member {
        resource_type: "AdverseEvent",
        params: &["subject"],
        owners: &["subject"],
        roles: &[],
    },
    Member {
        resource_type: "DetectedIssue",
        params: &["patient"],
        owners: &["patient"],
        roles: &[],
    },
    Member {
        resource_type: "RelatedPerson",
        params: &["patient"],
        owners: &["patient"],
        roles: &[],
    },
    // Owned by no one element: in a patient's compartment through its targets (R4: the
    // `patient` parameter is `target.where(resolve() is Patient)`).
    Member {
        resource_type: "Provenance",
        params: &["patient"],
        owners: &[],
        roles: &["target"],
    },
    Member {
        resource_type: "Account",
        params: &["subject"],
        owners: &["subject"],
        roles: &[],
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

/// Whether a compartment type has no owner element (Provenance, Appointment): a search on it
/// cannot be confined by parameters, only its answer can be checked.
pub fn is_ownerless(resource_type: &str) -> bool {
    member(resource_type).is_some_and(|m| m.owners.is_empty())
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

/// Whether a resource (parsed JSON) is `patient`'s data — the one membership definition used
/// for reads, written bodies and every answer. Patient: its own id. A member type: every
/// reference in an owner element (`subject`, `patient`, `beneficiary`, ...) names the patient,
/// and the patient appears at least once (as owner or in a role). So a resource about another
/// patient never belongs, even when the launch patient is its performer or author, and the
/// patient's own record still belongs when it mentions someone else in a role. Shared data
/// (Practitioner, Medication, ...) belongs to no one and is `Shared`; anything else is
/// `Foreign`.
pub fn membership(resource: &Value, patient: &str) -> Belonging {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
        return Belonging::Foreign;
    };
    if resource_type == "Patient" {
        return if resource.get("id").and_then(Value::as_str) == Some(patient) {
            Belonging::Own
        } else {
            Belonging::Foreign
        };
    }
    let Some(member) = member(resource_type) else {
        return if is_shared_data(resource_type) {
            Belonging::Shared
        } else {
            Belonging::Foreign
        };
    };
    let own = format!("Patient/{patient}");
    let mut appears = false;
    for reference in member
        .owners
        .iter()
        .flat_map(|path| references_at(resource, path))
    {
        if reference != own {
            return Belonging::Foreign;
        }
        appears = true;
    }
    for reference in member
        .roles
        .iter()
        .flat_map(|path| references_at(resource, path))
    {
        // Without an owner element nothing says whose it is: a second patient makes it theirs.
        if member.owners.is_empty() && reference.starts_with("Patient/") && reference != own {
            return Belonging::Foreign;
        }
        appears |= reference == own;
    }
    if appears {
        Belonging::Own
    } else {
        Belonging::Foreign
    }
}

/// Whose data a resource is, from one patient's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Belonging {
    /// The patient's own record.
    Own,
    /// Data about no patient (directories, terminology, knowledge).
    Shared,
    /// Another patient's data, or data phigate cannot place.
    Foreign,
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

    #[track_caller]
    fn belongs(resource: Value, expected: Belonging) {
        assert_eq!(membership(&resource, "123"), expected, "{resource}");
    }

    #[test]
    fn resource_membership() {
        use Belonging::{Foreign, Own, Shared};
        let reference = |r: &str| json!({ "reference": r });
        belongs(
            json!({"resourceType": "Observation", "subject": reference("Patient/123")}),
            Own,
        );
        belongs(
            json!({"resourceType": "Observation", "subject": reference("Patient/456")}),
            Foreign,
        );
        // The patient's own record, mentioning another patient in a role.
        belongs(
            json!({"resourceType": "Observation", "subject": reference("Patient/123"), "performer": [reference("Patient/456")]}),
            Own,
        );
        // Another patient's record, with this patient in a role: about 456, not 123's.
        belongs(
            json!({"resourceType": "Observation", "subject": reference("Patient/456"), "performer": [reference("Patient/123")]}),
            Foreign,
        );
        belongs(
            json!({"resourceType": "Observation", "status": "final"}),
            Foreign,
        );
        belongs(
            json!({"resourceType": "Observation", "subject": reference("https://other.example/fhir/Patient/123")}),
            Foreign,
        );
        belongs(
            json!({"resourceType": "Appointment", "participant": [{"actor": reference("Practitioner/1")}, {"actor": reference("Patient/123")}]}),
            Own,
        );
        belongs(
            json!({"resourceType": "Coverage", "beneficiary": reference("Patient/123"), "subscriber": reference("Patient/456")}),
            Own,
        );
        belongs(
            json!({"resourceType": "Coverage", "beneficiary": reference("Patient/456"), "subscriber": reference("Patient/123")}),
            Foreign,
        );
        belongs(json!({"resourceType": "Patient", "id": "123"}), Own);
        belongs(json!({"resourceType": "Patient", "id": "456"}), Foreign);
        belongs(json!({"resourceType": "Practitioner", "id": "p"}), Shared);
        belongs(json!({"resourceType": "Provenance", "id": "p"}), Foreign);
        belongs(
            json!({"resourceType": "Provenance", "target": [reference("Patient/123")]}),
            Own,
        );
        belongs(
            json!({"resourceType": "Provenance", "target": [reference("Observation/o-123-lab")]}),
            Foreign,
        );
        belongs(
            json!({"resourceType": "Provenance", "target": [reference("Patient/123"), reference("Patient/456")]}),
            Foreign,
        );
        belongs(
            json!({"resourceType": "Appointment", "participant": [{"actor": reference("Patient/123")}, {"actor": reference("Patient/456")}]}),
            Foreign,
        );
        belongs(json!({"id": "p"}), Foreign);
    }
}
