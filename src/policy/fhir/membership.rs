//! What a token may see or write, resource by resource: the one membership definition used for
//! every answer (reads, searches, includes, histories, operations, batch responses) and every
//! written body. A resource is admitted when one of the token's scopes for its type (in the
//! rule's contexts, holding one of the needed letters) admits it: a `patient/` scope only the
//! launch patient's own record or shared data (`compartment::membership`), and a granular scope
//! (`?category=…`) only resources carrying that code. An OperationOutcome is always admitted:
//! it is the server's error, not data. It decides on parsed JSON only and does no I/O.

use serde_json::Value;

use super::compartment::{self, Belonging};
use super::scope::{Context, SmartScope};

/// The scopes and launch patient that decide which resources a token may see or write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    scopes: Vec<SmartScope>,
    patient: Option<String>,
}

impl Membership {
    /// The view of `grants`, limited to `contexts`, through the scopes holding any of `letters`.
    pub fn new(
        grants: &[SmartScope],
        contexts: &[Context],
        letters: &str,
        patient: Option<&str>,
    ) -> Self {
        let scopes = grants
            .iter()
            .filter(|s| contexts.contains(&s.context))
            .filter(|s| letters.chars().any(|letter| s.letters.contains(letter)))
            .cloned()
            .collect();
        Self {
            scopes,
            patient: patient.map(str::to_owned),
        }
    }

    /// The launch patient the view is confined to, if any scope is `patient/`.
    pub fn patient(&self) -> Option<&str> {
        self.patient.as_deref()
    }

    /// Whether the token may see (or, for a write view, write) `resource`.
    pub fn admits(&self, resource: &Value) -> bool {
        let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
            return false;
        };
        if resource_type == "OperationOutcome" {
            return true;
        }
        self.scopes
            .iter()
            .filter(|scope| scope.resource_type == "*" || scope.resource_type == resource_type)
            .any(|scope| self.within_context(scope, resource) && satisfies(scope, resource))
    }

    fn within_context(&self, scope: &SmartScope, resource: &Value) -> bool {
        match scope.context {
            Context::Patient => self.patient.as_deref().is_some_and(|patient| {
                compartment::membership(resource, patient) != Belonging::Foreign
            }),
            Context::User | Context::System => true,
        }
    }
}

/// SMART 2.x granular scopes: each `param=value` restriction must hold on the resource's
/// element of that name (`category`, `code`, ...), as a FHIR token search would match it:
/// `system|code` needs both, `|code` a coding without a system, a bare `code` any system.
fn satisfies(scope: &SmartScope, resource: &Value) -> bool {
    scope
        .restrictions
        .iter()
        .all(|(param, value)| token_matches(resource.get(param.as_str()), value))
}

fn token_matches(element: Option<&Value>, wanted: &str) -> bool {
    let (system, code) = match wanted.split_once('|') {
        Some((system, code)) => (Some(system), code),
        None => (None, wanted),
    };
    let mut codings = Vec::new();
    collect_codings(element, &mut codings);
    codings.iter().any(|(coding_system, coding_code)| {
        *coding_code == code
            && match system {
                None => true,
                Some("") => coding_system.is_none(),
                Some(system) => *coding_system == Some(system),
            }
    })
}

/// The `(system, code)` pairs of a CodeableConcept, a Coding, a code, or an array of them.
fn collect_codings<'a>(element: Option<&'a Value>, out: &mut Vec<(Option<&'a str>, &'a str)>) {
    match element {
        Some(Value::Array(items)) => {
            for item in items {
                collect_codings(Some(item), out);
            }
        }
        Some(Value::String(code)) => out.push((None, code)),
        Some(Value::Object(object)) => {
            if let Some(codings) = object.get("coding") {
                collect_codings(Some(codings), out);
            } else if let Some(code) = object.get("code").and_then(Value::as_str) {
                out.push((object.get("system").and_then(Value::as_str), code));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
