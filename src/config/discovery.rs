//! The `discovery:` section: the protected resource's identifier (RFC 9728), its name and
//! documentation, which issuer the SMART configuration describes, and the operator's overrides
//! of that document. The identifier always comes from here (or from a single https audience),
//! never from a request's `Host`, which a client chooses.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::raw::{At, RawDiscovery, RawIssuer};
use super::{Builder, IssuerConfig};

/// The RFC 9728 well-known path; the resource's path, if any, follows it (§3.1).
pub const PROTECTED_RESOURCE_PATH: &str = "/.well-known/oauth-protected-resource";

/// What phigate publishes about itself.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryConfig {
    /// The protected resource's identifier; without one, the protected resource metadata is
    /// not served and no challenge names it.
    pub resource: Option<ResourceId>,
    /// `resource_name`.
    pub resource_name: Option<String>,
    /// `resource_documentation`.
    pub resource_documentation: Option<String>,
    /// The issuer whose metadata the SMART configuration carries.
    pub authorization_server: Option<Arc<str>>,
    /// Members that replace what phigate would say in the SMART configuration.
    pub smart_overrides: Map<String, Value>,
}

/// An RFC 9728 resource identifier: an absolute `https` URL without query or fragment, free of
/// quotes and backslashes so it can stand in a challenge's quoted string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceId {
    text: String,
    /// The path without its terminating slash; empty for the root (§3.1).
    path: String,
    metadata_url: String,
}

impl ResourceId {
    /// Parses an identifier, or says why it is not one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let refused = || {
            format!(
                "{text:?} is not a resource identifier: an absolute https:// URL without query \
                 or fragment"
            )
        };
        let uri: http::Uri = text.parse().map_err(|_| refused())?;
        let authority = uri.authority().filter(|a| !a.as_str().contains('@'));
        let plain = !text.contains(['#', '"', '\\']) && uri.query().is_none();
        let (Some("https"), Some(authority), true) = (uri.scheme_str(), authority, plain) else {
            return Err(refused());
        };
        let path = uri.path().trim_end_matches('/').to_owned();
        Ok(Self {
            metadata_url: format!("https://{authority}{PROTECTED_RESOURCE_PATH}{path}"),
            text: text.to_owned(),
            path,
        })
    }

    /// The identifier as configured (`resource`, compared by clients byte for byte).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The identifier's path without a terminating slash, empty for the root.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Where its metadata is published (RFC 9728 §3.1: the well-known path inserted between
    /// the host and the path).
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }
}

impl Builder<'_> {
    pub(super) fn discovery(
        &mut self,
        raw: Option<&RawDiscovery>,
        issuers: &At<Vec<RawIssuer>>,
        built: &[IssuerConfig],
    ) -> DiscoveryConfig {
        let resource = match raw.and_then(|r| r.resource.as_ref()) {
            Some(at) => self.check(at, ResourceId::parse(&at.value)),
            None => self.default_resource(issuers, built),
        };
        let resource_documentation = raw
            .and_then(|r| r.resource_documentation.as_ref())
            .and_then(|at| {
                let url = ResourceId::parse(&at.value)
                    .map(|_| at.value.clone())
                    .map_err(|_| "discovery.resource_documentation must be an https:// URL".into());
                self.check(at, url)
            });
        let authorization_server = match raw.and_then(|r| r.authorization_server.as_ref()) {
            Some(at) => {
                let known = built
                    .iter()
                    .find(|issuer| *issuer.issuer == at.value)
                    .map(|issuer| Arc::clone(&issuer.issuer))
                    .ok_or_else(|| {
                        "discovery.authorization_server must be one of issuers[].issuer".to_owned()
                    });
                self.check(at, known)
            }
            // The first issuer is the one an operator lists first: the main one.
            None => built.first().map(|issuer| Arc::clone(&issuer.issuer)),
        };
        let smart_overrides = raw
            .and_then(|r| r.smart_configuration.as_ref())
            .and_then(|at| {
                let members = match &at.value {
                    Value::Object(members) if !members.contains_key("") => Ok(members.clone()),
                    _ => Err("discovery.smart_configuration must be a map of JSON members".into()),
                };
                self.check(at, members)
            })
            .unwrap_or_default();
        DiscoveryConfig {
            resource,
            resource_name: raw.and_then(|r| r.resource_name.clone()),
            resource_documentation,
            authorization_server,
            smart_overrides,
        }
    }

    /// Without `discovery.resource`, the one audience every issuer's tokens are for, when it is
    /// an https URL: that is the identifier clients already ask tokens for. Anything else would
    /// be a guess, so nothing is published and the operator hears why.
    fn default_resource(
        &mut self,
        issuers: &At<Vec<RawIssuer>>,
        built: &[IssuerConfig],
    ) -> Option<ResourceId> {
        let mut audiences = built.iter().flat_map(|issuer| issuer.audiences.iter());
        let first = audiences.next()?;
        let single = audiences.all(|audience| audience == first);
        let resource = single.then(|| ResourceId::parse(first).ok()).flatten();
        if resource.is_none() {
            self.warning(
                issuers,
                "discovery.resource is not set and the issuers' audiences are not one https:// \
                 URL: /.well-known/oauth-protected-resource answers 404 and 401 challenges name \
                 no resource_metadata; set discovery.resource to the URL clients ask tokens for",
            );
        }
        resource
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: Option<(&str, &str)>) {
        let parsed = ResourceId::parse(text).ok();
        let got = parsed.as_ref().map(|r| (r.path(), r.metadata_url()));
        assert_eq!(got, expected, "{text}");
    }

    #[test]
    fn metadata_url_inserts_the_well_known_path_before_the_resource_path() {
        check(
            "https://fhir.example.org",
            Some((
                "",
                "https://fhir.example.org/.well-known/oauth-protected-resource",
            )),
        );
        check(
            "https://fhir.example.org/",
            Some((
                "",
                "https://fhir.example.org/.well-known/oauth-protected-resource",
            )),
        );
        check(
            "https://fhir.example.org:8443/fhir/r4/",
            Some((
                "/fhir/r4",
                "https://fhir.example.org:8443/.well-known/oauth-protected-resource/fhir/r4",
            )),
        );
    }

    #[test]
    fn only_plain_https_urls_are_identifiers() {
        for refused in [
            "http://fhir.example.org",
            "fhir.example.org",
            "/fhir",
            "https://fhir.example.org/fhir?x=1",
            "https://fhir.example.org/fhir#top",
            "https://user@fhir.example.org/",
            "urn:fhir",
            "",
        ] {
            check(refused, None);
        }
    }
}
