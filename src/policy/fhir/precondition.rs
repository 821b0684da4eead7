//! Writes in patient context whose request does not show whose resource they change: `PUT`,
//! `PATCH` and `DELETE` of compartment data by id. The forwarder first reads the resource as it
//! is now; it must be the launch patient's (by the same `Membership` as every answer), a JSON
//! Patch applied to it must leave it the patient's, and the write is then forwarded with
//! `If-Match` on the version read, so a concurrent change makes the upstream refuse rather than
//! phigate approve stale state. Pure functions on parsed JSON; the forwarder does the reading.

use serde_json::Value;

use super::FhirDenial;
use super::membership::Membership;
use crate::strict_json;

/// What a write changes, which decides what the check reads from its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// `PUT`: the body (already checked) replaces the resource.
    Replace,
    /// `PATCH` with a JSON Patch (RFC 6902) body.
    Patch,
    /// `DELETE`.
    Delete,
}

/// The obligation to read a resource before writing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precondition {
    membership: Membership,
    kind: WriteKind,
}

impl Precondition {
    pub(super) fn new(membership: Membership, kind: WriteKind) -> Self {
        Self { membership, kind }
    }

    /// What the write is.
    pub fn kind(&self) -> WriteKind {
        self.kind
    }

    /// What the precondition enforces, in words (for `phigate explain`).
    pub fn describe(&self) -> &'static str {
        match self.kind {
            WriteKind::Patch => {
                "the resource is read first: it and the patched result must be the launch patient's; then written with If-Match on the version read"
            }
            WriteKind::Replace | WriteKind::Delete => {
                "the resource is read first and must be the launch patient's; then written with If-Match on the version read"
            }
        }
    }

    /// Checks the resource as it is now (and, for a patch, as it would become).
    pub fn check(&self, current: &Value, patch_body: Option<&[u8]>) -> Result<(), FhirDenial> {
        // "Not yours" answers exactly like "not there".
        if !self.membership.admits(current) {
            return Err(FhirDenial::ResourceNotInCompartment);
        }
        if self.kind != WriteKind::Patch {
            return Ok(());
        }
        let operations = parse_patch(patch_body.unwrap_or_default())?;
        let mut patched = current.clone();
        json_patch::patch(&mut patched, &operations.0).map_err(|_| FhirDenial::BodyUnparseable)?;
        // A patch may not change what the resource is, nor whose it is (L-17).
        let same = |name: &str| patched.get(name) == current.get(name);
        if same("resourceType") && same("id") && self.membership.admits(&patched) {
            Ok(())
        } else {
            Err(FhirDenial::CompartmentViolation)
        }
    }
}

/// Parses a JSON Patch body strictly (no duplicate members); FHIRPath Patch and anything else
/// cannot be checked in patient context.
pub fn parse_patch(body: &[u8]) -> Result<json_patch::Patch, FhirDenial> {
    let value = strict_json::parse(body).map_err(|_| FhirDenial::BodyUnparseable)?;
    if !value.is_array() {
        return Err(FhirDenial::PatchNotCheckable);
    }
    serde_json::from_value(value).map_err(|_| FhirDenial::BodyUnparseable)
}

/// The version to pin the write to: the `ETag` the read answered with, else `meta.versionId`.
pub fn version_of(etag: Option<&str>, current: &Value) -> Option<String> {
    etag.map(str::to_owned).or_else(|| {
        current
            .pointer("/meta/versionId")
            .and_then(Value::as_str)
            .map(|version| format!("W/\"{version}\""))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::scope::{Context, SmartScope};
    use super::*;

    fn precondition(kind: WriteKind) -> Precondition {
        let grants: Vec<SmartScope> = ["patient/Observation.rud"]
            .iter()
            .filter_map(|s| SmartScope::parse(s))
            .collect();
        Precondition::new(
            Membership::new(&grants, &[Context::Patient], "u", Some("123")),
            kind,
        )
    }

    fn observation(patient: &str) -> Value {
        json!({"resourceType": "Observation", "id": "o-1", "status": "final", "meta": {"versionId": "7"}, "subject": {"reference": format!("Patient/{patient}")}})
    }

    #[track_caller]
    fn check(kind: WriteKind, current: &Value, patch: &str, expected: Result<(), FhirDenial>) {
        assert_eq!(
            precondition(kind).check(current, Some(patch.as_bytes())),
            expected,
            "{current} {patch}"
        );
    }

    #[test]
    fn the_current_resource_must_be_the_patients() {
        check(WriteKind::Replace, &observation("123"), "", Ok(()));
        check(WriteKind::Delete, &observation("123"), "", Ok(()));
        check(
            WriteKind::Replace,
            &observation("456"),
            "",
            Err(FhirDenial::ResourceNotInCompartment),
        );
        check(
            WriteKind::Delete,
            &observation("456"),
            "",
            Err(FhirDenial::ResourceNotInCompartment),
        );
    }

    #[test]
    fn a_patch_must_leave_the_resource_the_patients() {
        let own = observation("123");
        check(
            WriteKind::Patch,
            &own,
            r#"[{"op":"replace","path":"/status","value":"amended"}]"#,
            Ok(()),
        );
        for moving in [
            r#"[{"op":"replace","path":"/subject/reference","value":"Patient/456"}]"#,
            r#"[{"op":"remove","path":"/subject"}]"#,
            r#"[{"op":"replace","path":"/id","value":"o-2"}]"#,
            r#"[{"op":"replace","path":"/resourceType","value":"Condition"}]"#,
        ] {
            check(
                WriteKind::Patch,
                &own,
                moving,
                Err(FhirDenial::CompartmentViolation),
            );
        }
        check(
            WriteKind::Patch,
            &own,
            r#"[{"op":"test","path":"/status","value":"draft"}]"#,
            Err(FhirDenial::BodyUnparseable),
        );
        check(
            WriteKind::Patch,
            &own,
            r#"{"resourceType":"Parameters"}"#,
            Err(FhirDenial::PatchNotCheckable),
        );
        check(
            WriteKind::Patch,
            &own,
            r#"[{"op":"replace","path":"/status","value":"a","value":"b"}]"#,
            Err(FhirDenial::BodyUnparseable),
        );
    }

    #[test]
    fn the_version_read_is_the_version_written() {
        let current = observation("123");
        assert_eq!(
            version_of(Some("W/\"9\""), &current).as_deref(),
            Some("W/\"9\"")
        );
        assert_eq!(version_of(None, &current).as_deref(), Some("W/\"7\""));
        assert_eq!(version_of(None, &json!({})), None);
    }
}
