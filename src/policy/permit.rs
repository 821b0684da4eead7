//! `Permit`: the proof that a route was authorised, and the only thing the forwarder accepts.
//! Its fields are private and only `policy` can build one, so no other module can invent an
//! authorisation or change the path that was authorised. A permit may oblige the forwarder to
//! check the upstream's response (patient compartment) before releasing it, and under a
//! report-only rule it remembers the refusal it stands in for.

use std::sync::Arc;

use super::break_glass::Emergency;
use super::fhir::{
    BundlePermit, CanonicalSearch, FhirPermit, LinkSeals, Precondition, ResponseCheck,
};
use super::path::NormalPath;
use super::route::Refusal;
use super::seal::LinkKind;

/// What the FHIR classification found, for logs, `explain` and the response check.
#[derive(Debug, Clone)]
pub struct FhirFacts {
    interaction: String,
    resource_type: Option<String>,
    resource_id: Option<String>,
    response_check: Option<ResponseCheck>,
    canonical_search: Option<CanonicalSearch>,
    precondition: Option<Precondition>,
    link_seals: Option<LinkSeals>,
}

impl FhirFacts {
    pub(super) fn single(permit: FhirPermit) -> Self {
        Self {
            interaction: permit.interaction.to_string(),
            resource_type: permit.resource_type,
            resource_id: permit.id,
            response_check: permit.response_check,
            canonical_search: permit.canonical_search,
            precondition: permit.precondition,
            link_seals: permit.link_seals,
        }
    }

    pub(super) fn followed(
        kind: LinkKind,
        response_check: Option<ResponseCheck>,
        link_seals: Option<LinkSeals>,
    ) -> Self {
        Self {
            interaction: kind.as_str().to_owned(),
            resource_type: None,
            resource_id: None,
            response_check,
            canonical_search: None,
            precondition: None,
            link_seals,
        }
    }

    pub(super) fn bundle(permit: BundlePermit) -> Self {
        Self {
            interaction: format!("batch ({} entries)", permit.entries.len()),
            resource_type: None,
            resource_id: None,
            response_check: permit.response_check,
            canonical_search: None,
            precondition: None,
            link_seals: None,
        }
    }

    /// The interaction, e.g. `search-type Observation`.
    pub fn interaction(&self) -> &str {
        &self.interaction
    }

    /// The resource type, if the interaction has one.
    pub fn resource_type(&self) -> Option<&str> {
        self.resource_type.as_deref()
    }

    /// The resource id the request names, if any.
    pub fn resource_id(&self) -> Option<&str> {
        self.resource_id.as_deref()
    }
}

/// An authorised request: the rule, the normalised path, the untouched query, and the scope
/// that satisfied the rule (none for public routes).
#[derive(Debug, Clone)]
pub struct Permit {
    rule: Arc<str>,
    path: NormalPath,
    query: Option<String>,
    granted: Option<String>,
    fhir: Option<FhirFacts>,
    would_deny: Option<Refusal>,
    break_glass: Option<Emergency>,
    withheld: Option<http::HeaderName>,
}

impl Permit {
    pub(super) fn new(
        rule: Arc<str>,
        path: NormalPath,
        query: Option<String>,
        granted: Option<String>,
    ) -> Self {
        Self {
            rule,
            path,
            query,
            granted,
            fhir: None,
            would_deny: None,
            break_glass: None,
            withheld: None,
        }
    }

    pub(super) fn withholding(mut self, header: Option<http::HeaderName>) -> Self {
        self.withheld = header;
        self
    }

    pub(super) fn emergency(mut self, emergency: Emergency) -> Self {
        self.break_glass = Some(emergency);
        self
    }

    pub(super) fn with_fhir(mut self, fhir: Option<FhirFacts>) -> Self {
        self.fhir = fhir;
        self
    }

    pub(super) fn reporting(mut self, refusal: Refusal) -> Self {
        self.would_deny = Some(refusal);
        self
    }

    /// The rule that permitted the request.
    pub fn rule_name(&self) -> &str {
        &self.rule
    }

    /// The authorised, normalised path.
    pub fn path(&self) -> &NormalPath {
        &self.path
    }

    /// The path and the query exactly as they are forwarded: a search's checked parameters in
    /// their canonical form (none in the URL when they travel as a POST body), otherwise the
    /// original query.
    pub fn path_and_query(&self) -> String {
        let query = match self.canonical_search() {
            Some(search) if search.in_body || search.params.is_empty() => None,
            Some(search) => Some(search.params.as_str()),
            None => self.query.as_deref(),
        };
        match query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.as_str().to_owned(),
        }
    }

    /// For a POST search: the form body forwarded in place of the client's, holding exactly
    /// the parameters that were checked, from the URL and the body combined.
    pub fn forwarded_search_body(&self) -> Option<&str> {
        self.canonical_search()
            .filter(|search| search.in_body)
            .map(|search| search.params.as_str())
    }

    fn canonical_search(&self) -> Option<&CanonicalSearch> {
        self.fhir.as_ref().and_then(|f| f.canonical_search.as_ref())
    }

    /// The scope that satisfied the rule (none for public and report-only permits).
    pub fn granted_scope(&self) -> Option<&str> {
        self.granted.as_deref()
    }

    /// The FHIR classification, under a `fhir: smart` rule.
    pub fn fhir(&self) -> Option<&FhirFacts> {
        self.fhir.as_ref()
    }

    /// The response check the forwarder must pass before releasing the upstream's answer.
    pub fn response_check(&self) -> Option<&ResponseCheck> {
        self.fhir.as_ref().and_then(|f| f.response_check.as_ref())
    }

    /// Which links in the answer the forwarder must seal to the token.
    pub fn link_seals(&self) -> Option<LinkSeals> {
        self.fhir.as_ref().and_then(|f| f.link_seals)
    }

    /// The read the forwarder must make, and pass, before a write in patient context.
    pub fn precondition(&self) -> Option<&Precondition> {
        self.fhir.as_ref().and_then(|f| f.precondition.as_ref())
    }

    /// Granted through break-glass: which break-glass rule, and the stated justification.
    pub fn break_glass(&self) -> Option<&Emergency> {
        self.break_glass.as_ref()
    }

    /// A request header the upstream must not receive: the break-glass justification, which is
    /// phigate's audit data (the log), not the upstream's.
    pub fn withheld_header(&self) -> Option<&http::HeaderName> {
        self.withheld.as_ref()
    }

    /// Under a report-only rule: the refusal this permit stands in for.
    pub fn would_deny(&self) -> Option<&Refusal> {
        self.would_deny.as_ref()
    }
}
