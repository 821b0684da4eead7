//! FHIR patient confinement (SECURITY.md L-*, M-*): with `--patient ID --other-patient ID2` and
//! a token confined to the first, every way of naming the second patient's data — by id, by
//! search parameter spellings, chained and reverse-chained searches, `POST _search` bodies,
//! conditional create, `_include`/`_revinclude`, compartment and `$everything` reads, batch
//! entries — and a check of every answer: no resource of the other patient, and no
//! `Bundle.link`, `fullUrl`, `Location` or `Content-Location` naming an address other than
//! the target's (or its public URL).

use http::Method;
use serde_json::{Value, json};

use super::cases::{Case, Expect, Send};
use super::target::{Answer, Outgoing};

/// The two patients: the token's own and the one it must never see.
#[derive(Debug, Clone)]
pub struct Patients {
    /// The patient the token is confined to.
    pub own: String,
    /// Another patient.
    pub other: String,
}

/// What an answer may link to, and whose data it must not hold.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// The other patient's id.
    pub other: String,
    /// Origins (`scheme://host:port`) absolute links may name.
    pub origins: Vec<String>,
}

/// The FHIR cases, own-patient control first.
pub fn plan(patients: &Patients, token: &str) -> Vec<Case> {
    let Patients { own, other } = patients;
    let bearer = format!("Bearer {token}");
    let request = |method: Method, path: String, headers: &[(&str, &str)], body: Vec<u8>| {
        let mut all = vec![("authorization".to_owned(), bearer.clone())];
        all.extend(
            headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        Send::Http(Outgoing {
            method,
            path,
            headers: all,
            body,
        })
    };
    let get = |path: String| request(Method::GET, path, &[], Vec::new());
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let fhir_json = [("content-type", "application/fhir+json")];
    let confined = |id, reference, send| Case {
        id,
        reference,
        send,
        expect: Expect::Confined,
        note: None,
    };
    let observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "text": "phigate probe" },
        "subject": { "reference": format!("Patient/{own}") },
    });
    let batch = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            { "request": { "method": "GET", "url": format!("Patient/{other}") } },
            { "request": { "method": "GET", "url": format!("Observation?patient={other}") } },
        ],
    });
    let if_none_exist = format!("patient={other}");
    vec![
        Case {
            id: "fhir-control-own",
            reference: "L-01",
            send: get(format!("/Patient/{own}")),
            expect: Expect::Allowed,
            note: None,
        },
        confined(
            "fhir-links-own-search",
            "K-07",
            get(format!("/Observation?patient={own}")),
        ),
        confined("fhir-read-other", "L-01", get(format!("/Patient/{other}"))),
        confined(
            "fhir-search-patient",
            "L-03",
            get(format!("/Observation?patient={other}")),
        ),
        confined(
            "fhir-search-patient-list",
            "L-03",
            get(format!("/Observation?patient={own},{other}")),
        ),
        confined(
            "fhir-search-patient-repeated",
            "L-03",
            get(format!("/Observation?patient={own}&patient={other}")),
        ),
        confined(
            "fhir-search-patient-reference",
            "L-03",
            get(format!("/Observation?patient=Patient/{other}")),
        ),
        confined(
            "fhir-search-subject",
            "L-03",
            get(format!("/Observation?subject=Patient/{other}")),
        ),
        confined(
            "fhir-search-subject-typed",
            "L-03",
            get(format!("/Observation?subject:Patient={other}")),
        ),
        confined(
            "fhir-search-id",
            "L-03",
            get(format!("/Patient?_id={other}")),
        ),
        confined(
            "fhir-search-chained",
            "L-09",
            get(format!("/Observation?subject:Patient._id={other}")),
        ),
        confined(
            "fhir-search-has",
            "L-09",
            get("/Patient?_has:Observation:subject:status=final".to_owned()),
        ),
        confined(
            "fhir-post-search",
            "L-05",
            request(
                Method::POST,
                "/Observation/_search".to_owned(),
                &form,
                format!("patient={other}").into_bytes(),
            ),
        ),
        confined(
            "fhir-post-search-mixed",
            "L-05",
            request(
                Method::POST,
                format!("/Observation/_search?patient={own}"),
                &form,
                format!("patient={other}").into_bytes(),
            ),
        ),
        confined(
            "fhir-conditional-create",
            "§1",
            request(
                Method::POST,
                "/Observation".to_owned(),
                &[
                    ("content-type", "application/fhir+json"),
                    ("if-none-exist", &if_none_exist),
                ],
                observation.to_string().into_bytes(),
            ),
        ),
        confined(
            "fhir-include",
            "L-07",
            get(format!(
                "/Observation?patient={other}&_include=Observation:subject"
            )),
        ),
        confined(
            "fhir-revinclude",
            "L-07",
            get(format!(
                "/Patient?_id={other}&_revinclude=Observation:subject"
            )),
        ),
        confined(
            "fhir-compartment",
            "L-01",
            get(format!("/Patient/{other}/Observation")),
        ),
        confined(
            "fhir-everything",
            "L-19",
            get(format!("/Patient/{other}/$everything")),
        ),
        confined(
            "fhir-batch",
            "M-01",
            request(
                Method::POST,
                "/".to_owned(),
                &fhir_json,
                batch.to_string().into_bytes(),
            ),
        ),
    ]
}

// === impl Confinement ===

impl Confinement {
    /// What in `answer` breaks confinement, in a few words each.
    pub fn findings(&self, answer: &Answer) -> Vec<String> {
        let mut found = Vec::new();
        for name in ["location", "content-location"] {
            if answer
                .header(name)
                .is_some_and(|value| self.is_foreign(value))
            {
                found.push(format!("`{name}` names another address"));
            }
        }
        let Ok(body) = serde_json::from_slice::<Value>(&answer.body) else {
            return found;
        };
        let mut resources = Vec::new();
        self.walk(&body, &mut resources, &mut found);
        for resource in resources {
            found.push(format!("the other patient's data ({resource})"));
        }
        found.dedup();
        found
    }

    fn walk(&self, value: &Value, resources: &mut Vec<String>, found: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                if self.belongs_to_other(object) {
                    let kind = object
                        .get("resourceType")
                        .and_then(Value::as_str)
                        .unwrap_or("resource");
                    let id = object.get("id").and_then(Value::as_str).unwrap_or("?");
                    resources.push(format!("{kind}/{id}"));
                }
                if object.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
                    self.check_bundle_links(object, found);
                }
                for child in object.values() {
                    self.walk(child, resources, found);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, resources, found);
                }
            }
            _ => {}
        }
    }

    /// The other Patient itself, or a resource whose owner element (`subject`, `patient`,
    /// `beneficiary`, `individual`) names it. A mere mention elsewhere (a `performer`) is not
    /// enough: a resource owned by the token's patient may name others and still be its own.
    fn belongs_to_other(&self, object: &serde_json::Map<String, Value>) -> bool {
        let Some(kind) = object.get("resourceType").and_then(Value::as_str) else {
            return false;
        };
        if kind == "Patient" {
            return object.get("id").and_then(Value::as_str) == Some(self.other.as_str());
        }
        let reference = format!("Patient/{}", self.other);
        ["subject", "patient", "beneficiary", "individual"]
            .iter()
            .filter_map(|field| object.get(*field)?.get("reference")?.as_str())
            .any(|r| r == reference || r.ends_with(&format!("/{reference}")))
    }

    fn check_bundle_links(&self, bundle: &serde_json::Map<String, Value>, found: &mut Vec<String>) {
        let links = bundle
            .get("link")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|link| link.get("url")?.as_str());
        if links.into_iter().any(|url| self.is_foreign(url)) {
            found.push("a `Bundle.link` names another address".to_owned());
        }
        let entries = bundle
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for entry in entries {
            if entry
                .get("fullUrl")
                .and_then(Value::as_str)
                .is_some_and(|u| self.is_foreign(u))
            {
                found.push("a `fullUrl` names another address".to_owned());
            }
            let location = entry
                .get("response")
                .and_then(|r| r.get("location"))
                .and_then(Value::as_str);
            if location.is_some_and(|u| self.is_foreign(u)) {
                found.push("an entry's `response.location` names another address".to_owned());
            }
        }
    }

    /// True for an absolute http(s) URL whose origin is not one the target answers at.
    fn is_foreign(&self, url: &str) -> bool {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return false;
        }
        origin(&lower).is_none_or(|o| !self.origins.contains(&o))
    }
}

/// `scheme://host:port` of an absolute URL, the port spelled out.
pub fn origin(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some(format!("{scheme}://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(headers: &[(&str, &str)], body: Value) -> Answer {
        Answer {
            status: 200,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.to_string().into_bytes().into(),
        }
    }

    #[track_caller]
    fn check(headers: &[(&str, &str)], body: Value, expected: &[&str]) {
        let confinement = Confinement {
            other: "456".to_owned(),
            origins: vec!["https://gw.test:8443".to_owned()],
        };
        assert_eq!(confinement.findings(&answer(headers, body)), expected);
    }

    #[test]
    fn own_data_with_own_links_passes() {
        check(
            &[("location", "https://GW.test:8443/Observation/1")],
            json!({"resourceType": "Bundle", "link": [{"url": "https://gw.test:8443/Observation?patient=456"}],
                   "entry": [{"fullUrl": "Observation/1", "resource": {"resourceType": "Observation", "subject": {"reference": "Patient/123"}}}]}),
            &[],
        );
    }

    #[test]
    fn an_owner_element_counts_and_a_mention_does_not() {
        check(
            &[],
            json!({"resourceType": "Observation", "id": "o-9", "subject": {"reference": "Patient/123"},
                   "performer": [{"reference": "Patient/456"}]}),
            &[],
        );
        check(
            &[],
            json!({"resourceType": "Coverage", "id": "c-1", "beneficiary": {"reference": "Patient/456"}}),
            &["the other patient's data (Coverage/c-1)"],
        );
    }

    #[test]
    fn foreign_data_and_links_are_named() {
        check(
            &[],
            json!({"resourceType": "Patient", "id": "456"}),
            &["the other patient's data (Patient/456)"],
        );
        check(
            &[("content-location", "http://10.0.0.5:8080/fhir/Patient/1")],
            json!({"resourceType": "Bundle", "entry": [{"fullUrl": "http://upstream:8080/Observation/9",
                   "resource": {"resourceType": "Observation", "id": "9", "subject": {"reference": "http://upstream:8080/Patient/456"}}}]}),
            &[
                "`content-location` names another address",
                "a `fullUrl` names another address",
                "the other patient's data (Observation/9)",
            ],
        );
    }
}
