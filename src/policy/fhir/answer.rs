//! Checking the upstream's answer before any byte of it is released, against the same
//! `Membership` that decided the request. What the token may not see is removed from a search
//! (matches, includes, `$everything`, type history), withheld whole when the request named one
//! resource (read, vread, instance history, a write's echo — answered like a missing resource,
//! so "not yours" reads as "not there"), and withheld whole from a batch or transaction
//! response. An answer that cannot be checked (not JSON, duplicate members) is never passed
//! through. Pure functions on parsed JSON.

use serde_json::Value;

use super::FhirDenial;
use super::membership::Membership;

/// How the answer relates to the request, which decides what a refused resource costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerShape {
    /// The request named one resource: anything not admitted withholds the whole answer.
    ById,
    /// A search or history: entries not admitted are removed.
    Collection,
    /// A batch or transaction response: anything not admitted withholds the whole answer.
    Batch,
}

/// What the forwarder must check in the upstream's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseCheck {
    membership: Membership,
    shape: AnswerShape,
}

/// The outcome of a passed check.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    /// Everything in the answer may be seen: release it as it came.
    Unchanged,
    /// Entries were removed: release this document instead.
    Filtered(Value),
}

impl ResponseCheck {
    pub(super) fn new(membership: Membership, shape: AnswerShape) -> Self {
        Self { membership, shape }
    }

    /// Whether the request named one resource by id (read, vread, instance history, writes).
    pub fn is_by_id(&self) -> bool {
        self.shape == AnswerShape::ById
    }

    /// What the check enforces, in words (for `phigate explain`).
    pub fn describe(&self) -> String {
        let whose = match self.membership.patient() {
            Some(_) => "the launch patient's own record or shared data the scopes cover",
            None => "resources of types (and granular codes) the scopes cover",
        };
        let cost = match self.shape {
            AnswerShape::ById => "otherwise answered 404, like a missing resource",
            AnswerShape::Collection => "other entries are removed",
            AnswerShape::Batch => "otherwise the whole response is withheld",
        };
        format!("every resource returned must be {whose}; {cost}")
    }
}

/// Checks a parsed upstream answer.
pub fn check(document: &Value, check: &ResponseCheck) -> Result<Checked, FhirDenial> {
    let admits = |resource: &Value| check.membership.admits(resource);
    let is_bundle = document.get("resourceType").and_then(Value::as_str) == Some("Bundle");
    let entries = document.get("entry").and_then(Value::as_array);
    let entry_admitted = |entry: &Value| entry.get("resource").is_none_or(admits);
    let wholly_admitted = || {
        if is_bundle {
            entries.is_none_or(|entries| entries.iter().all(entry_admitted))
        } else {
            admits(document)
        }
    };
    match check.shape {
        AnswerShape::ById | AnswerShape::Batch if wholly_admitted() => Ok(Checked::Unchanged),
        AnswerShape::ById => Err(FhirDenial::ResourceNotInCompartment),
        AnswerShape::Batch => Err(FhirDenial::ResponseNotInCompartment),
        AnswerShape::Collection if !is_bundle => {
            if admits(document) {
                Ok(Checked::Unchanged)
            } else {
                Err(FhirDenial::ResponseNotInCompartment)
            }
        }
        AnswerShape::Collection => {
            let Some(entries) = entries else {
                return Ok(Checked::Unchanged);
            };
            if entries.iter().all(entry_admitted) {
                return Ok(Checked::Unchanged);
            }
            let kept: Vec<Value> = entries
                .iter()
                .filter(|entry| entry_admitted(entry))
                .cloned()
                .collect();
            let mut filtered = document.clone();
            if let Some(object) = filtered.as_object_mut() {
                object.insert("entry".to_owned(), Value::Array(kept));
                // The server counted what the token may not see: the count would leak it.
                object.remove("total");
            }
            Ok(Checked::Filtered(filtered))
        }
    }
}

#[cfg(test)]
mod tests;
