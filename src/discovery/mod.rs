//! The well-known documents phigate answers itself and never forwards: the SMART App Launch
//! configuration (`/.well-known/smart-configuration`, at the root and under the resource's path)
//! and RFC 9728 protected resource metadata (at the URL derived from the configured resource
//! identifier, §3.1). Each is built per request from configuration, the live policy and the
//! authorization server's believed metadata, with the operator's overrides last. Nothing here
//! reads the request's `Host` or echoes anything the client sent: the resource identifier is
//! configuration, so a client cannot make phigate advertise another server.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use crate::config::{
    AlgorithmSet, DiscoveryConfig, IssuerConfig, PROTECTED_RESOURCE_PATH, Transport,
};
use crate::denial::Denial;
use crate::policy::PolicyStore;
use crate::policy::fhir::Context;
use crate::token::metadata::IssuerMetadata;

/// The SMART App Launch well-known path, relative to a FHIR base.
pub const SMART_CONFIGURATION_PATH: &str = "/.well-known/smart-configuration";

/// The documents are public and change only with configuration, the policy or the issuer.
const CACHE_CONTROL_VALUE: &str = "public, max-age=300";

/// A document phigate publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WellKnown {
    /// The SMART App Launch configuration.
    SmartConfiguration,
    /// RFC 9728 protected resource metadata.
    ProtectedResource,
    /// A protected-resource path for no resource phigate serves: 404, never forwarded.
    Unknown,
}

impl WellKnown {
    /// The document's name, as `explain` reports it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::SmartConfiguration => "SMART configuration",
            Self::ProtectedResource => "protected resource metadata (RFC 9728)",
            Self::Unknown => "unknown protected resource metadata",
        }
    }
}

/// RFC 9110 §15.5.6: a 405 names the methods the document has.
pub fn allow<B>(response: &mut Response<B>) {
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
}

/// The document phigate answers itself at the request `path` (as the client sent it), if any:
/// the gateway and `explain`/`test` ask this one question, so they agree on what is never
/// forwarded. A path that does not normalise is left to the decision chain, which refuses it.
pub fn document_at(config: &DiscoveryConfig, path: &str) -> Option<WellKnown> {
    // Normalising only decodes escapes and drops empty segments: a path that neither spells
    // `well-known` nor escapes anything cannot name a document, and skips a second
    // normalisation on every request (the decision chain does its own).
    if !path.contains("well-known") && !path.contains('%') {
        return None;
    }
    let path = crate::policy::path::normalise(path).ok()?;
    let path = path.as_str();
    let resource_path = config.resource.as_ref().map_or("", |r| r.path());
    let smart_under_resource = !resource_path.is_empty()
        && path.strip_prefix(resource_path) == Some(SMART_CONFIGURATION_PATH);
    if path == SMART_CONFIGURATION_PATH || smart_under_resource {
        return Some(WellKnown::SmartConfiguration);
    }
    let rest = path.strip_prefix(PROTECTED_RESOURCE_PATH)?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    // RFC 9728 §3.3: the document at a URL must name the resource that URL was formed from.
    let ours = config.resource.is_some() && rest == resource_path;
    Some(if ours {
        WellKnown::ProtectedResource
    } else {
        WellKnown::Unknown
    })
}

/// Whether `method` gets `document`: GET and HEAD of a document phigate publishes.
pub fn admit(method: &Method, document: WellKnown) -> Result<(), Denial> {
    if method != Method::GET && method != Method::HEAD {
        return Err(Denial::MethodNotAllowed);
    }
    if document == WellKnown::Unknown {
        return Err(Denial::ResourceNotFound);
    }
    Ok(())
}

/// What the well-known documents are built from.
pub struct Discovery {
    config: DiscoveryConfig,
    /// Every configured issuer, the RFC 9728 `authorization_servers`.
    issuers: Vec<String>,
    /// The SMART configuration's issuer's metadata.
    metadata: Option<Arc<IssuerMetadata>>,
    policy: Arc<PolicyStore>,
    /// Whether a client certificate can be presented (a client CA is configured).
    mtls: bool,
    /// `dpop.algorithms`, as the documents list them.
    dpop_algorithms: Vec<String>,
    /// The same, space-separated, as every DPoP challenge's `algs` (RFC 9449 §7.1).
    dpop_algs: String,
}

impl Discovery {
    /// The documents for the `discovery` section, `issuers`, the listener's `transport`, the
    /// DPoP proof algorithms, the live `policy`, and `metadata` of the issuer the SMART
    /// configuration describes.
    pub fn new(
        (discovery, issuers, transport, dpop_algorithms): (
            &DiscoveryConfig,
            &[IssuerConfig],
            &Transport,
            &AlgorithmSet,
        ),
        policy: Arc<PolicyStore>,
        metadata: Option<Arc<IssuerMetadata>>,
    ) -> Self {
        let mtls = matches!(transport, Transport::Tls(files) if files.client_ca.is_some());
        Self {
            config: discovery.clone(),
            issuers: issuers
                .iter()
                .map(|issuer| issuer.issuer.to_string())
                .collect(),
            metadata,
            policy,
            mtls,
            dpop_algorithms: dpop_algorithms.names(),
            dpop_algs: dpop_algorithms.names().join(" "),
        }
    }

    /// The DPoP challenges' `algs` value: the configured proof algorithms.
    pub fn dpop_algs(&self) -> &str {
        &self.dpop_algs
    }

    /// The protected resource metadata URL, for the `resource_metadata` challenge parameter.
    pub fn resource_metadata(&self) -> Option<&str> {
        self.config.resource.as_ref().map(|r| r.metadata_url())
    }

    /// Starts refreshing the SMART configuration's issuer's metadata, unless that runs already.
    pub fn spawn_refresher(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.metadata
            .as_ref()
            .and_then(IssuerMetadata::spawn_refresher)
    }

    /// Which document the request `path` names, if any.
    pub fn resolve(&self, path: &str) -> Option<WellKnown> {
        document_at(&self.config, path)
    }

    /// The answer to `method` for `document`: the JSON for GET and HEAD, 405 otherwise (the
    /// caller adds [`allow`]).
    pub fn answer(
        &self,
        method: &Method,
        document: WellKnown,
    ) -> Result<Response<Full<Bytes>>, Denial> {
        admit(method, document)?;
        let body = match document {
            WellKnown::SmartConfiguration => self.smart_configuration(),
            WellKnown::ProtectedResource => self.protected_resource(),
            WellKnown::Unknown => return Err(Denial::ResourceNotFound),
        };
        let body = if method == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from(Value::Object(body).to_string())
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL_VALUE));
        Ok(response)
    }

    /// The issuer's own members, then what phigate enforces, then the operator's overrides.
    fn smart_configuration(&self) -> Map<String, Value> {
        let mut document = self
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.current())
            .map(|metadata| metadata.members().clone())
            .unwrap_or_default();
        let published = self.policy.snapshot().published();
        let mut capabilities = Vec::new();
        if !published.smart_contexts.is_empty() {
            capabilities.push("permission-v2");
        }
        for context in &published.smart_contexts {
            match context {
                Context::Patient => capabilities.push("permission-patient"),
                Context::User => capabilities.push("permission-user"),
                Context::System => {}
            }
        }
        document.insert("capabilities".into(), json!(capabilities));
        document.insert("scopes_supported".into(), json!(published.scopes));
        document.insert(
            "dpop_signing_alg_values_supported".into(),
            json!(self.dpop_algorithms),
        );
        document.extend(self.config.smart_overrides.clone());
        document
    }

    /// RFC 9728 §2; only called when a resource identifier is configured.
    fn protected_resource(&self) -> Map<String, Value> {
        let published = self.policy.snapshot().published();
        let mut document = Map::new();
        if let Some(resource) = &self.config.resource {
            document.insert("resource".into(), json!(resource.as_str()));
        }
        document.insert("authorization_servers".into(), json!(self.issuers));
        document.insert("scopes_supported".into(), json!(published.scopes));
        // phigate refuses a token in the query or in a form body (RFC 6750 §2.2, §2.3).
        document.insert("bearer_methods_supported".into(), json!(["header"]));
        document.insert(
            "dpop_signing_alg_values_supported".into(),
            json!(self.dpop_algorithms),
        );
        document.insert(
            "dpop_bound_access_tokens_required".into(),
            json!(published.dpop_required),
        );
        document.insert(
            "tls_client_certificate_bound_access_tokens".into(),
            json!(self.mtls),
        );
        if let Some(name) = &self.config.resource_name {
            document.insert("resource_name".into(), json!(name));
        }
        if let Some(documentation) = &self.config.resource_documentation {
            document.insert("resource_documentation".into(), json!(documentation));
        }
        document
    }
}

#[cfg(test)]
mod tests;
