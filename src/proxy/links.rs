//! Keeping links behind the gateway. A FHIR server builds absolute URLs from its own base —
//! `Bundle.link` (self, next), `entry.fullUrl`, `Location`, `Content-Location`, absolute
//! references — and that base is the upstream's plain-HTTP address. A client that followed one
//! would bypass phigate, and the address itself is internal. Every such URL is rewritten from
//! the upstream's base to the public base (`listen.public_base_url`, or the request's own
//! origin when none is configured), in response headers and anywhere in a JSON body. It never
//! changes what a link points at beyond its base.

use http::{HeaderMap, HeaderValue, header};
use serde_json::Value;

use crate::policy::seal::{Holder, LinkKind, LinkSealer};

/// The response headers that carry URLs.
const LINK_HEADERS: [header::HeaderName; 2] = [header::LOCATION, header::CONTENT_LOCATION];

/// Rewrites URLs under one base to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    upstream_base: String,
    public_base: String,
}

impl Links {
    /// Links from `upstream_base` (e.g. `http://10.0.0.5:8080/fhir`) to `public_base`
    /// (e.g. `https://gw.example.org`); trailing slashes are ignored.
    pub fn new(upstream_base: &str, public_base: &str) -> Self {
        Self {
            upstream_base: upstream_base.trim_end_matches('/').to_owned(),
            public_base: public_base.trim_end_matches('/').to_owned(),
        }
    }

    /// The public form of `url`, when it lies under the upstream's base. Scheme and host
    /// compare case-insensitively (RFC 3986 §6.2.2.1); the base must end at a path segment
    /// boundary, so `/fhir` never matches `/fhirx`.
    pub fn rewrite(&self, url: &str) -> Option<String> {
        let base = &self.upstream_base;
        let head = url.get(..base.len())?;
        if !head.eq_ignore_ascii_case(base) {
            return None;
        }
        let rest = &url[base.len()..];
        if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
            return None;
        }
        let rest = if rest.is_empty() || rest.starts_with(['?', '#']) {
            format!("/{rest}")
        } else {
            rest.to_owned()
        };
        Some(format!("{}{rest}", self.public_base))
    }

    /// `url` (already public) with a seal for `holder`, when it lies under the public base and
    /// `wanted` accepts its path.
    pub fn seal(
        &self,
        url: &str,
        sealer: &LinkSealer,
        kind: LinkKind,
        holder: &Holder<'_>,
        wanted: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let target = url.strip_prefix(&self.public_base)?;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let path = if path.is_empty() { "/" } else { path };
        if !path.starts_with('/') || !wanted(path) {
            return None;
        }
        Some(format!(
            "{}{}",
            self.public_base,
            sealer.seal(kind, holder, path, query)
        ))
    }

    /// Rewrites `Location` and `Content-Location`.
    pub fn rewrite_headers(&self, headers: &mut HeaderMap) {
        for name in LINK_HEADERS {
            let rewritten = headers
                .get(&name)
                .and_then(|value| value.to_str().ok())
                .and_then(|url| self.rewrite(url))
                .and_then(|url| HeaderValue::from_str(&url).ok());
            if let Some(value) = rewritten {
                headers.insert(name, value);
            }
        }
    }

    /// Rewrites every string in a JSON document that is a URL under the upstream's base;
    /// says whether anything changed.
    pub fn rewrite_document(&self, value: &mut Value) -> bool {
        match value {
            Value::String(text) => match self.rewrite(text) {
                Some(public) => {
                    *text = public;
                    true
                }
                None => false,
            },
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.rewrite_document(item) | changed),
            Value::Object(members) => members.values_mut().fold(false, |changed, member| {
                self.rewrite_document(member) | changed
            }),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check(url: &str, expected: Option<&str>) {
        let links = Links::new("http://10.0.0.5:8080/fhir", "https://gw.test:8443");
        assert_eq!(links.rewrite(url).as_deref(), expected, "{url}");
    }

    #[test]
    fn urls_under_the_upstream_base_move_to_the_public_base() {
        check(
            "http://10.0.0.5:8080/fhir/Observation?patient=123&_offset=20",
            Some("https://gw.test:8443/Observation?patient=123&_offset=20"),
        );
        check(
            "HTTP://10.0.0.5:8080/fhir/Patient/123/_history/2",
            Some("https://gw.test:8443/Patient/123/_history/2"),
        );
        check("http://10.0.0.5:8080/fhir", Some("https://gw.test:8443/"));
        check(
            "http://10.0.0.5:8080/fhir?_getpages=abc",
            Some("https://gw.test:8443/?_getpages=abc"),
        );
        check("http://10.0.0.5:8080/fhirx/Patient/1", None);
        check("http://10.0.0.5:8081/fhir/Patient/1", None);
        check("Patient/123", None);
        check("https://terminology.hl7.org/CodeSystem/x", None);
    }

    #[test]
    fn documents_and_headers_are_rewritten_everywhere() {
        let links = Links::new("http://up:1/fhir/", "https://gw/");
        let mut bundle = json!({
            "resourceType": "Bundle",
            "link": [{"relation": "next", "url": "http://up:1/fhir/Observation?_offset=1"}],
            "entry": [{"fullUrl": "http://up:1/fhir/Observation/o", "resource": {"subject": {"reference": "http://up:1/fhir/Patient/1"}, "valueString": "plain text"}}],
        });
        assert!(links.rewrite_document(&mut bundle));
        assert_eq!(bundle["link"][0]["url"], "https://gw/Observation?_offset=1");
        assert_eq!(bundle["entry"][0]["fullUrl"], "https://gw/Observation/o");
        assert_eq!(
            bundle["entry"][0]["resource"]["subject"]["reference"],
            "https://gw/Patient/1"
        );
        assert!(!links.rewrite_document(&mut json!({"a": ["b", 1, null]})));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::LOCATION,
            HeaderValue::from_static("http://up:1/fhir/Observation/o/_history/1"),
        );
        headers.insert(
            header::CONTENT_LOCATION,
            HeaderValue::from_static("Observation/o"),
        );
        links.rewrite_headers(&mut headers);
        assert_eq!(
            headers[header::LOCATION],
            "https://gw/Observation/o/_history/1"
        );
        assert_eq!(headers[header::CONTENT_LOCATION], "Observation/o");
    }
}
