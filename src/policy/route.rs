//! A request matched to its rule, and the rule's verdict on a token's grant: a `Permit`, or a
//! `Refusal` carrying only configuration data (the scopes that would have sufficed) and a
//! documented reason code. Under a report-only rule a refusal becomes a permit that remembers
//! what it would have refused, so the caller can log `would_deny` and forward.

use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::break_glass::BreakGlass;
use super::fhir::{self, FhirDenial, FhirRequest, SmartScope};
use super::path::NormalPath;
use super::permit::{FhirFacts, Permit};
use super::rule::{Access, Rule};
use super::scope::ScopeSet;
use super::seal::{LinkKind, OpenedLink};

/// What a verified token grants, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'a> {
    /// The token's scopes.
    pub scopes: &'a ScopeSet,
    /// The SMART launch patient, if the token carries one.
    pub patient: Option<&'a str>,
    /// How long ago the token was issued (`iat`; zero when in the allowed future), if it says.
    pub token_age: Option<Duration>,
}

/// What the policy reads of a request beyond its method, path and query.
#[derive(Debug, Clone, Copy, Default)]
pub struct Content<'a> {
    /// The request body, read whole, where [`Route::needs_body`].
    pub body: Option<&'a [u8]>,
    /// Whether the body is declared `application/x-www-form-urlencoded`.
    pub form: bool,
    /// The `If-None-Exist` header of a conditional create.
    pub if_none_exist: Option<&'a str>,
    /// A sealed link the pipeline opened for this token (see `seal`).
    pub opened: Option<&'a OpenedLink>,
    /// The break-glass justification header ([`Route::break_glass_header`]), if sent.
    pub justification: Option<&'a str>,
}

/// How a refusal is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalClass {
    /// 403 `insufficient_scope`.
    Forbidden,
    /// 400 `invalid_request`: the request itself is unusable (unparseable body, override trick).
    Malformed,
    /// 413: a body too large to inspect.
    TooLarge,
    /// 404, exactly as for a missing resource: a read of another patient's resource.
    Concealed,
    /// 502: the upstream's answer cannot be checked (too large, not JSON).
    UpstreamUnusable,
}

/// Why the policy refused a request; no request data, only configuration and a reason code.
#[derive(Debug, Clone)]
pub struct Refusal {
    reason: &'static str,
    class: RefusalClass,
    needed: Option<Arc<str>>,
}

impl Refusal {
    /// The documented reason code.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// How to answer it.
    pub fn class(&self) -> RefusalClass {
        self.class
    }

    /// The scopes that would have allowed the request, space-separated, if known.
    pub fn needed(&self) -> Option<&str> {
        self.needed.as_deref()
    }

    pub(super) fn plain(reason: &'static str, class: RefusalClass) -> Self {
        Self {
            reason,
            class,
            needed: None,
        }
    }

    fn insufficient_scope(needed: &Arc<str>) -> Self {
        Self {
            reason: "insufficient_scope",
            class: RefusalClass::Forbidden,
            needed: Some(Arc::clone(needed)),
        }
    }
}

impl From<FhirDenial> for Refusal {
    fn from(denial: FhirDenial) -> Self {
        let reason = denial.reason();
        let class = match reason {
            "body_unparseable"
            | "bundle_malformed"
            | "method_override"
            | "search_param_not_canonical"
            | "search_body_not_form"
            | "patch_not_checkable" => RefusalClass::Malformed,
            "response_too_large" | "response_unparseable" => RefusalClass::UpstreamUnusable,
            "resource_not_in_compartment" => RefusalClass::Concealed,
            _ => RefusalClass::Forbidden,
        };
        Self {
            reason,
            class,
            needed: denial.needed_scope().map(Arc::from),
        }
    }
}

/// A request matched to its rule, before authorisation.
#[derive(Debug)]
pub struct Route<'a> {
    pub(super) rule: &'a Rule,
    pub(super) method: Method,
    pub(super) path: NormalPath,
    pub(super) query: Option<String>,
    /// The policy's break-glass section, when it has a rule for this request.
    pub(super) break_glass: Option<(&'a BreakGlass, &'a Rule)>,
    /// No ordinary rule matched: `rule` is the break-glass rule, which grants only through
    /// break-glass.
    pub(super) emergency_only: bool,
    /// The policy's break-glass justification header, whether or not a rule here uses it.
    pub(super) withheld: Option<&'a http::HeaderName>,
}

impl Route<'_> {
    /// The matched rule's name.
    pub fn rule_name(&self) -> &str {
        &self.rule.name
    }

    /// Whether the rule needs no token.
    pub fn is_public(&self) -> bool {
        matches!(self.rule.access, Access::Public)
    }

    /// What the rule demands, in words.
    pub fn access_summary(&self) -> String {
        self.rule.access_summary()
    }

    /// The normalised path.
    pub fn path(&self) -> &NormalPath {
        &self.path
    }

    /// The query as the client sent it.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// Whether the rule is `fhir: smart` (sealed links are opened only under such rules).
    pub fn is_fhir(&self) -> bool {
        matches!(self.rule.access, Access::Smart(_))
    }

    /// The header carrying a break-glass justification, when break-glass could grant this
    /// request.
    pub fn break_glass_header(&self) -> Option<&http::HeaderName> {
        self.break_glass.map(|(section, _)| section.header())
    }

    /// Whether the rule demands a live introspection of every token (RFC 7662).
    pub fn requires_introspection(&self) -> bool {
        self.rule.introspect_always
    }

    /// Whether the rule confines by launch patient (SMART), so a missing one is worth looking up.
    pub fn wants_launch_patient(&self) -> bool {
        matches!(self.rule.access, Access::Smart(_))
    }

    /// The sender constraint the rule demands, if any.
    pub fn required_binding(&self) -> Option<super::Requirement> {
        self.rule.binding
    }

    /// Whether authorising needs the request body (SMART writes, `_search` and Bundles).
    pub fn needs_body(&self) -> bool {
        matches!(self.rule.access, Access::Smart(_))
            && matches!(self.method, Method::POST | Method::PUT | Method::PATCH)
    }

    /// A permit for a public route; `None` for any other.
    pub fn permit_public(self) -> Option<Permit> {
        let rule = Arc::clone(&self.rule.name);
        let withheld = self.withheld.cloned();
        self.is_public()
            .then(|| Permit::new(rule, self.path, self.query, None).withholding(withheld))
    }

    /// Authorises `grant` for the request and its `content`.
    pub fn authorize(self, grant: &Grant<'_>, content: &Content<'_>) -> Result<Permit, Refusal> {
        let withheld = self.withheld.cloned();
        self.decide(grant, content)
            .map(|permit| permit.withholding(withheld))
    }

    fn decide(self, grant: &Grant<'_>, content: &Content<'_>) -> Result<Permit, Refusal> {
        let verdict = match &self.rule.access {
            // Only break-glass may grant here; the rule's own scope check must not.
            _ if self.emergency_only => {
                Err(Refusal::plain("no_matching_rule", RefusalClass::Forbidden))
            }
            Access::Public => Ok((None, None)),
            Access::AnyOf { scopes, needed } => match grant.scopes.first_satisfying(scopes) {
                Some(scope) => Ok((Some(scope.as_str().to_owned()), None)),
                None => Err(Refusal::insufficient_scope(needed)),
            },
            Access::Smart(settings) => match content.opened {
                Some(opened) => self.follow_sealed(settings, grant, opened),
                None => self.authorize_smart(settings, grant, content),
            },
        };
        let rule = Arc::clone(&self.rule.name);
        // A followed link goes upstream exactly as the upstream wrote it, seal removed.
        let query = match content.opened {
            Some(opened) if !opened.query.is_empty() => Some(opened.query.clone()),
            Some(_) => None,
            None => self.query,
        };
        // Break-glass only widens what a token may read: it is consulted where the ordinary
        // verdict refused for lack of a grant, never for a request that is itself malformed.
        let verdict = match (verdict, self.break_glass) {
            (Err(refusal), Some((section, emergency_rule)))
                if refusal.class() == RefusalClass::Forbidden =>
            {
                match section.admit(emergency_rule, grant, content.justification) {
                    Some(Ok(emergency)) => {
                        let name = Arc::clone(&emergency_rule.name);
                        let scope = Some(section.scope().as_str().to_owned());
                        let permit = Permit::new(name, self.path, query, scope);
                        return Ok(permit.emergency(emergency));
                    }
                    Some(Err(emergency_refusal)) => Err(emergency_refusal),
                    None => Err(refusal),
                }
            }
            (verdict, _) => verdict,
        };
        match verdict {
            Ok((granted, fhir)) => Ok(Permit::new(rule, self.path, query, granted).with_fhir(fhir)),
            Err(refusal) if self.rule.is_report_only() && !self.emergency_only => {
                Ok(Permit::new(rule, self.path, query, None).reporting(refusal))
            }
            Err(refusal) => Err(refusal),
        }
    }

    /// A link the upstream handed to this token, sealed to it, followed as what it was: a page is
    /// checked like the search it came from, an export's status and files belong to the client
    /// that started it.
    fn follow_sealed(
        &self,
        settings: &fhir::Settings,
        grant: &Grant<'_>,
        opened: &OpenedLink,
    ) -> Result<(Option<String>, Option<FhirFacts>), Refusal> {
        let method_fits = match opened.kind {
            LinkKind::Page | LinkKind::ExportFile => self.method == Method::GET,
            LinkKind::ExportStatus => matches!(self.method, Method::GET | Method::DELETE),
        };
        if !method_fits {
            return Err(FhirDenial::LinkSealInvalid.into());
        }
        let scopes: Vec<SmartScope> = grant
            .scopes
            .iter()
            .filter_map(|s| SmartScope::parse(s.as_str()))
            .collect();
        let (check, seals) = fhir::follow_sealed(opened.kind, &scopes, grant.patient, settings);
        Ok((None, Some(FhirFacts::followed(opened.kind, check, seals))))
    }

    fn authorize_smart(
        &self,
        settings: &fhir::Settings,
        grant: &Grant<'_>,
        content: &Content<'_>,
    ) -> Result<(Option<String>, Option<FhirFacts>), Refusal> {
        let body = content.body;
        let scopes: Vec<SmartScope> = grant
            .scopes
            .iter()
            .filter_map(|s| SmartScope::parse(s.as_str()))
            .collect();
        if self.method == Method::POST && self.path.as_str() == "/" {
            let body = body.ok_or(FhirDenial::BundleMalformed)?;
            let permit = fhir::authorize_bundle(body, &scopes, grant.patient, settings)?;
            let facts = FhirFacts::bundle(permit);
            return Ok((None, Some(facts)));
        }
        // A POST search reads its parameters from a form body; any other body (JSON, a
        // Parameters resource) is read differently by different servers, so it is refused.
        let searching = self.method == Method::POST && self.path.as_str().ends_with("/_search");
        let body_text = body.filter(|b| !b.is_empty());
        if searching && body_text.is_some() && !content.form {
            return Err(FhirDenial::SearchBodyNotForm.into());
        }
        let form_body = body_text
            .filter(|_| self.method == Method::POST && content.form)
            .map(|b| std::str::from_utf8(b).map_err(|_| FhirDenial::SearchBodyNotForm))
            .transpose()?;
        let request = FhirRequest {
            method: &self.method,
            path: self.path.as_str(),
            query: self.query.as_deref(),
            form_body,
            if_none_exist: content.if_none_exist,
        };
        let permit = fhir::authorize(&request, &scopes, grant.patient, settings)?;
        if let Some(check) = &permit.body_check {
            let body = body.ok_or(FhirDenial::BodyUnparseable)?;
            fhir::authorize_write_body(body, check)?;
        }
        // A patch that cannot be applied here cannot be checked: refused before any read.
        if let Some(precondition) = &permit.precondition
            && precondition.kind() == fhir::WriteKind::Patch
        {
            fhir::parse_patch(body.unwrap_or_default())?;
        }
        let granted = permit.granted.as_ref().map(ToString::to_string);
        Ok((granted, Some(FhirFacts::single(permit))))
    }
}
