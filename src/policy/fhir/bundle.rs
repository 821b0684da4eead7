//! Batch and transaction Bundles (`POST [base]`, FHIR R4 http.html §3.1.0.11): every entry is
//! authorised exactly like a top-level request, from its `request.method` and `request.url`
//! (never `fullUrl`), and one refused entry refuses the whole Bundle. Entry URLs get the same
//! path normalisation as requests and must already be in normal form, so the upstream reads
//! the very URL that was authorised; absolute URLs are refused.

use http::Method;
use serde_json::Value;

use super::membership::Membership;
use super::search;
use super::{
    AnswerShape, FhirDenial, FhirPermit, FhirRequest, ResponseCheck, Settings, SmartScope,
    authorize, parse_body, resource_may_be_written,
};
use crate::policy::path;

/// The most entries one Bundle may carry (SECURITY.md §5).
pub const MAX_ENTRIES: usize = 1000;

/// A batch or transaction whose every entry was authorised before anything is forwarded.
#[derive(Debug, Clone)]
pub struct BundlePermit {
    /// One permit per entry, in order.
    pub entries: Vec<FhirPermit>,
    /// The check on the batch response, when any entry's answer must be checked.
    pub response_check: Option<ResponseCheck>,
}

/// Authorises every entry of a batch or transaction Bundle.
pub fn authorize_bundle(
    body: &[u8],
    grants: &[SmartScope],
    patient: Option<&str>,
    settings: &Settings,
) -> Result<BundlePermit, FhirDenial> {
    let bundle = parse_body(body)?;
    let is_batch = bundle.get("resourceType").and_then(Value::as_str) == Some("Bundle")
        && matches!(
            bundle.get("type").and_then(Value::as_str),
            Some("batch" | "transaction")
        );
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if !is_batch || entries.len() > MAX_ENTRIES {
        return Err(FhirDenial::BundleMalformed);
    }
    let entries = entries
        .iter()
        .map(|entry| {
            authorize_entry(entry, grants, patient, settings)
                .map_err(|d| FhirDenial::BundleEntryDenied(Box::new(d)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A checked read that fails is withheld with the whole response — after the Bundle ran.
    // Writes must never run for a client then told "refused", so they do not travel with
    // reads whose answers must be checked.
    let checked_read = entries
        .iter()
        .any(|e| e.response_check.is_some() && !e.interaction.is_write());
    if checked_read && entries.iter().any(|e| e.interaction.is_write()) {
        return Err(FhirDenial::BundleMixesWrites);
    }
    // Any entry whose answer must be checked makes the whole response checked, all or nothing:
    // a batch response cannot be trimmed without lying about what ran.
    let response_check = entries.iter().any(|e| e.response_check.is_some()).then(|| {
        let membership = Membership::new(grants, &settings.contexts, "rs", patient);
        ResponseCheck::new(membership, AnswerShape::Batch)
    });
    Ok(BundlePermit {
        entries,
        response_check,
    })
}

fn authorize_entry(
    entry: &Value,
    grants: &[SmartScope],
    patient: Option<&str>,
    settings: &Settings,
) -> Result<FhirPermit, FhirDenial> {
    let request = entry.get("request").ok_or(FhirDenial::BundleMalformed)?;
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .filter(|m| matches!(*m, "GET" | "POST" | "PUT" | "PATCH" | "DELETE"))
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or(FhirDenial::BundleMalformed)?;
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .ok_or(FhirDenial::BundleMalformed)?;
    let (raw_path, query) = url
        .split_once('?')
        .map_or((url, None), |(p, q)| (p, Some(q)));
    // An absolute URL (another server, or the upstream's own address) is never followed; a
    // token system in the query (`code=http://loinc.org|…`) is just a value.
    if raw_path.contains(':') || url.contains('#') {
        return Err(FhirDenial::NotFhir);
    }
    // The Bundle is forwarded as sent, so its queries must read the same to every server.
    if query.is_some_and(|q| !search::is_unambiguous(q)) {
        return Err(FhirDenial::SearchParamNotCanonical);
    }
    let raw_path = format!("/{}", raw_path.trim_start_matches('/'));
    let normal = path::normalise(&raw_path).map_err(|_| FhirDenial::NotFhir)?;
    if normal.as_str() != raw_path || raw_path == "/" {
        return Err(FhirDenial::NotFhir);
    }
    let fhir_request = FhirRequest {
        method: &method,
        path: normal.as_str(),
        query,
        form_body: None,
        if_none_exist: match request.get("ifNoneExist") {
            None => None,
            Some(Value::String(condition)) => Some(condition.as_str()),
            Some(_) => return Err(FhirDenial::BundleMalformed),
        },
    };
    let permit = authorize(&fhir_request, grants, patient, settings)?;
    // A write by id in patient context must read its target first; inside a Bundle that read
    // cannot be made before the whole Bundle runs, so such entries are refused.
    if permit.precondition.is_some() {
        return Err(FhirDenial::InteractionNotSupported);
    }
    if let Some(check) = &permit.body_check {
        let resource = entry.get("resource").ok_or(FhirDenial::BodyUnparseable)?;
        resource_may_be_written(resource, check)?;
    }
    Ok(permit)
}
