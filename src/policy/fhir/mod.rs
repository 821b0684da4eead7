//! FHIR-aware authorisation under SMART App Launch v2 scopes (`fhir: smart` rules). A request
//! is classified as a FHIR R4 interaction, the matching scope letter (c r u d s) is demanded for
//! its resource type in a context the rule permits, and a `patient/` scope confines it to the
//! token's launch patient: by id for `Patient`, by compartment parameters for searches, by a
//! body check for writes, and by a response check for reads by id. Search controls that reach
//! beyond the grant are refused unless the rule allows them, granular scopes must be honoured by
//! the request itself, and Bundles are authorised entry by entry. Pure functions: no I/O.

mod answer;
mod bundle;
mod compartment;
mod export;
mod interaction;
mod membership;
mod precondition;
mod resource_types;
mod scope;
pub(crate) mod search;

use std::fmt;

use http::Method;
use serde_json::Value;

pub use self::answer::{AnswerShape, Checked, ResponseCheck};
pub use self::bundle::{BundlePermit, authorize_bundle};
use self::interaction::{Classified, NotFhir};
pub use self::interaction::{Interaction, Level};
use self::membership::Membership;
pub use self::precondition::{Precondition, WriteKind, parse_patch, version_of};
pub use self::resource_types::{closest_r4_resource_type, is_r4_resource_type};
pub use self::scope::{Context, ScopeDoubt, SmartScope};
use self::search::{Param, ParamFault};
use crate::strict_json::{self, StrictJsonError};

/// What a `fhir: smart` rule permits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Contexts whose scopes count.
    pub contexts: Vec<Context>,
    /// Resource types the rule covers; `None` for every type.
    pub resource_types: Option<Vec<String>>,
    /// Search controls the rule explicitly allows (`_has`, `chain`, `_filter`, ...).
    pub allowed_search_params: Vec<String>,
    /// Contexts whose scopes may start a Bulk Data export (`system` unless the rule widens it).
    pub export_contexts: Vec<Context>,
}

/// The request as the FHIR layer sees it.
#[derive(Debug, Clone, Copy)]
pub struct FhirRequest<'a> {
    /// The method.
    pub method: &'a Method,
    /// The normalised path relative to the FHIR base.
    pub path: &'a str,
    /// The raw query.
    pub query: Option<&'a str>,
    /// A form-encoded body (POST `_search`), whose parameters combine with the query's.
    pub form_body: Option<&'a str>,
    /// A conditional create's `If-None-Exist` search (header, or `ifNoneExist` in a batch).
    pub if_none_exist: Option<&'a str>,
}

/// The parameters of a search, in the one form they are forwarded (see `search::canonical`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalSearch {
    /// The encoded parameters.
    pub params: String,
    /// Whether they travel as a form body (POST `_search`) rather than as the query.
    pub in_body: bool,
}

/// A write under a `patient/` or granular scope: the written resource must have the type the
/// URL names and be admitted by the scopes that grant the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyCheck {
    resource_type: String,
    membership: Membership,
}

impl BodyCheck {
    /// The type the written resource must have.
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }
}

/// A permitted FHIR request.
#[derive(Debug, Clone)]
pub struct FhirPermit {
    /// The interaction.
    pub interaction: Interaction,
    /// Its resource type.
    pub resource_type: Option<String>,
    /// The resource id the request names, if any (for the audit trail).
    pub id: Option<String>,
    /// The scope that allowed it (none for capabilities).
    pub granted: Option<SmartScope>,
    /// A check on the upstream's response.
    pub response_check: Option<ResponseCheck>,
    /// A check on the request body (writes in patient context).
    pub body_check: Option<BodyCheck>,
    /// For searches: exactly the parameters that were checked, as they are forwarded.
    pub canonical_search: Option<CanonicalSearch>,
    /// For writes in patient context: read the resource first, and pin the write to it.
    pub precondition: Option<Precondition>,
    /// Which links in the answer the forwarder seals to the token (see `policy::seal`).
    pub link_seals: Option<LinkSeals>,
}

/// Links in an answer that phigate could not authorise from their shape, so it seals them to
/// the identity that received them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSeals {
    /// `Bundle.link` URLs at the server base (opaque page tokens such as `_getpages`).
    Pages,
    /// A Bulk Data kick-off's `Content-Location` (the status URL).
    ExportStatus,
    /// A Bulk Data status manifest's `output`, `error` and `deleted` file URLs.
    ExportFiles,
}

/// Why a FHIR request was refused. Each variant is a documented reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FhirDenial {
    /// Not a FHIR interaction shape.
    NotFhir,
    /// A FHIR shape phigate does not forward (conditional writes, unlisted operations).
    InteractionNotSupported,
    /// The rule's `resource_types` does not list the type.
    ResourceTypeNotAllowed,
    /// No scope grants the letter for the type; carries the scopes that would.
    InsufficientScope {
        /// Space-separated scopes that would have allowed the request.
        needed: String,
    },
    /// A `patient/` scope without a launch patient: never treated as unrestricted.
    PatientContextMissing,
    /// Outside the launch patient's compartment.
    CompartmentViolation,
    /// A search control the rule does not allow.
    SearchParamNotAllowed,
    /// A POST `_search` whose body is not `application/x-www-form-urlencoded`.
    SearchBodyNotForm,
    /// A conditional (`If-None-Exist`) on an interaction that is not a create.
    ConditionalNotSupported,
    /// A PATCH in patient context that is not a JSON Patch (FHIRPath Patch cannot be checked).
    PatchNotCheckable,
    /// A sealed link that does not open for this token, method or URL.
    LinkSealInvalid,
    /// A Bundle with writes and reads whose answers must be checked (they could be withheld
    /// after the writes ran).
    BundleMixesWrites,
    /// A parameter name the server could read differently (controls, case variants).
    SearchParamNotCanonical,
    /// `_method` (or an override header): refused, not followed.
    MethodOverride,
    /// A body that is not JSON, or has duplicate member names.
    BodyUnparseable,
    /// A response too large to check.
    ResponseTooLarge,
    /// A response resource outside the patient's compartment.
    ResponseNotInCompartment,
    /// A resource read by id that is outside the compartment: answered like a missing one.
    ResourceNotInCompartment,
    /// A response that cannot be checked (not JSON, duplicate members).
    ResponseUnparseable,
    /// One Bundle entry was refused; the inner reason is kept for logs.
    BundleEntryDenied(Box<Self>),
    /// Not a batch or transaction Bundle, or too many entries.
    BundleMalformed,
}

impl FhirDenial {
    /// The documented reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFhir => "not_fhir",
            Self::InteractionNotSupported => "interaction_not_supported",
            Self::ResourceTypeNotAllowed => "resource_type_not_allowed",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::PatientContextMissing => "patient_context_missing",
            Self::CompartmentViolation => "compartment_violation",
            Self::SearchParamNotAllowed => "search_param_not_allowed",
            Self::SearchBodyNotForm => "search_body_not_form",
            Self::ConditionalNotSupported => "conditional_not_supported",
            Self::PatchNotCheckable => "patch_not_checkable",
            Self::LinkSealInvalid => "link_seal_invalid",
            Self::BundleMixesWrites => "bundle_mixes_writes",
            Self::SearchParamNotCanonical => "search_param_not_canonical",
            Self::MethodOverride => "method_override",
            Self::BodyUnparseable => "body_unparseable",
            Self::ResponseTooLarge => "response_too_large",
            Self::ResponseNotInCompartment => "response_not_in_compartment",
            Self::ResourceNotInCompartment => "resource_not_in_compartment",
            Self::ResponseUnparseable => "response_unparseable",
            Self::BundleEntryDenied(_) => "bundle_entry_denied",
            Self::BundleMalformed => "bundle_malformed",
        }
    }

    /// The scopes that would have allowed the request, for the 403 challenge.
    pub fn needed_scope(&self) -> Option<String> {
        match self {
            Self::InsufficientScope { needed } => Some(needed.clone()),
            _ => None,
        }
    }
}

impl fmt::Display for FhirDenial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BundleEntryDenied(inner) => write!(f, "bundle_entry_denied ({})", inner.reason()),
            other => f.write_str(other.reason()),
        }
    }
}

/// Authorises one FHIR request for a token's SMART scopes and launch patient.
pub fn authorize(
    request: &FhirRequest<'_>,
    grants: &[SmartScope],
    patient: Option<&str>,
    settings: &Settings,
) -> Result<FhirPermit, FhirDenial> {
    let classified =
        interaction::classify(request.method, request.path).map_err(|fault| match fault {
            NotFhir::Unclassifiable => FhirDenial::NotFhir,
            NotFhir::Unsupported => FhirDenial::InteractionNotSupported,
        })?;
    let mut params = request.query.map(search::parse).unwrap_or_default();
    // Only a POST search carries parameters in its body; a create's body is a resource.
    if let Some(form) = request
        .form_body
        .filter(|_| classified.interaction.is_search())
    {
        params.extend(search::parse(form));
    }
    if params.iter().any(|p| p.base() == "_method") {
        return Err(FhirDenial::MethodOverride);
    }
    let Classified {
        interaction,
        resource_type,
        id,
    } = classified;
    if interaction == Interaction::Capabilities {
        return Ok(permit(interaction, resource_type, None));
    }
    if interaction == Interaction::Batch {
        // Bundles are authorised entry by entry by `authorize_bundle`.
        return Err(FhirDenial::BundleMalformed);
    }
    if let (Some(allowed), Some(t)) = (&settings.resource_types, &resource_type)
        && !allowed.contains(t)
    {
        return Err(FhirDenial::ResourceTypeNotAllowed);
    }
    if let Interaction::Operation { name, level } = &interaction
        && name == "export"
    {
        let kick_off = match level {
            Level::System => resource_type.is_none(),
            Level::Type => resource_type.as_deref() == Some("Patient"),
            Level::Instance => resource_type.as_deref() == Some("Group"),
        };
        if !kick_off {
            return Err(FhirDenial::InteractionNotSupported);
        }
        let scope = export::authorize(&params, grants, settings)?;
        let mut granted = permit(interaction, resource_type, Some(scope.clone()));
        granted.link_seals = Some(LinkSeals::ExportStatus);
        return Ok(granted);
    }
    let letter = required_letter(&interaction, resource_type.as_deref(), id.as_deref())?;
    let scope = choose_scope(grants, settings, resource_type.as_deref(), letter)?;
    let patient_context = scope.context == Context::Patient;
    let watched = match (&resource_type, patient_context) {
        (Some(t), true) => compartment::patient_params(t),
        _ => &[],
    };
    search::check_names(&params, watched).map_err(|_| FhirDenial::SearchParamNotCanonical)?;
    if interaction.is_search() {
        let system_level = interaction == Interaction::SearchSystem;
        check_search(&params, settings, system_level, patient_context)?;
    }
    // A conditional create runs this search first and may answer with what it found: it is
    // checked exactly like a search of the type.
    if let Some(condition) = request.if_none_exist {
        if interaction != Interaction::Create {
            return Err(FhirDenial::ConditionalNotSupported);
        }
        let condition = search::parse(condition);
        search::check_names(&condition, watched)
            .map_err(|_| FhirDenial::SearchParamNotCanonical)?;
        check_search(&condition, settings, false, patient_context)?;
        if let (Some(patient), Some(t)) = (patient.filter(|_| patient_context), &resource_type)
            && !compartment::search_is_confined(t, &condition, patient)
        {
            return Err(FhirDenial::CompartmentViolation);
        }
    }
    let patient = if patient_context {
        let patient = patient.ok_or(FhirDenial::PatientContextMissing)?;
        let resource_type = resource_type.as_deref().unwrap_or_default();
        confine(&interaction, resource_type, id.as_deref(), &params, patient)?;
        Some(patient)
    } else {
        None
    };
    let mut granted = permit(interaction, resource_type, Some(scope.clone()));
    granted.id = id;
    // Whatever returns a Bundle may page through opaque links.
    if !granted.interaction.names_one_resource()
        || granted.interaction == Interaction::HistoryInstance
    {
        granted.link_seals = Some(LinkSeals::Pages);
    }
    if granted.interaction.is_search() {
        granted.canonical_search = Some(CanonicalSearch {
            params: search::canonical(&params),
            in_body: request.form_body.is_some() || request.method == Method::POST,
        });
    }
    // What the answer may hold is checked wherever the grant is narrower than "every resource
    // of the type": a launch patient, a granular scope, or includes that return other types.
    let includes = params
        .iter()
        .any(|p| matches!(p.base(), "_include" | "_revinclude"));
    if patient.is_some() || scope.is_granular() || includes {
        let shape = if granted.interaction.names_one_resource() {
            AnswerShape::ById
        } else {
            AnswerShape::Collection
        };
        let membership = Membership::new(grants, &settings.contexts, "rs", patient);
        granted.response_check = Some(ResponseCheck::new(membership, shape));
    }
    // A write by id does not show whose resource it changes: read it first (patient data only;
    // the Patient resource itself is confined by its id).
    let write = match granted.interaction {
        Interaction::Update => Some(WriteKind::Replace),
        Interaction::Patch => Some(WriteKind::Patch),
        Interaction::Delete => Some(WriteKind::Delete),
        _ => None,
    };
    let resource_type = granted.resource_type.as_deref().unwrap_or_default();
    if let (Some(kind), Some(_)) = (write, patient)
        && compartment::is_patient_data(resource_type)
        && resource_type != "Patient"
    {
        let membership = Membership::new(grants, &settings.contexts, &letter.to_string(), patient);
        granted.precondition = Some(Precondition::new(membership, kind));
    }
    if (patient.is_some() || scope.is_granular())
        && matches!(
            granted.interaction,
            Interaction::Create | Interaction::Update
        )
    {
        granted.body_check = Some(BodyCheck {
            resource_type: granted.resource_type.clone().unwrap_or_default(),
            membership: Membership::new(grants, &settings.contexts, &letter.to_string(), patient),
        });
    }
    Ok(granted)
}

fn check_search(
    params: &[Param],
    settings: &Settings,
    system_level: bool,
    patient_context: bool,
) -> Result<(), FhirDenial> {
    search::check_controls(
        params,
        &settings.allowed_search_params,
        system_level,
        patient_context,
    )
    .map_err(|fault| match fault {
        ParamFault::NotAllowed => FhirDenial::SearchParamNotAllowed,
        ParamFault::MethodOverride => FhirDenial::MethodOverride,
        ParamFault::NotCanonical => FhirDenial::SearchParamNotCanonical,
    })
}

fn permit(
    interaction: Interaction,
    resource_type: Option<String>,
    granted: Option<SmartScope>,
) -> FhirPermit {
    FhirPermit {
        interaction,
        resource_type,
        id: None,
        granted,
        response_check: None,
        body_check: None,
        canonical_search: None,
        precondition: None,
        link_seals: None,
    }
}

/// The permission letter; operations are decided by name (others are not forwarded).
fn required_letter(
    interaction: &Interaction,
    resource_type: Option<&str>,
    id: Option<&str>,
) -> Result<char, FhirDenial> {
    if let Some(letter) = interaction.letter() {
        return Ok(letter);
    }
    match (interaction, resource_type, id) {
        // Patient/{id}/$everything reads the patient's record: a read of Patient.
        (
            Interaction::Operation {
                name,
                level: Level::Instance,
            },
            Some("Patient"),
            Some(_),
        ) if name == "everything" => Ok('r'),
        _ => Err(FhirDenial::InteractionNotSupported),
    }
}

/// The best scope granting `letter` on the type: unrestricted contexts before `patient/`, and
/// plain scopes before granular ones.
fn choose_scope<'a>(
    grants: &'a [SmartScope],
    settings: &Settings,
    resource_type: Option<&str>,
    letter: char,
) -> Result<&'a SmartScope, FhirDenial> {
    let candidates = grants
        .iter()
        .filter(|s| settings.contexts.contains(&s.context) && s.grants(resource_type, letter));
    let rank = |s: &SmartScope| (s.is_granular(), s.context == Context::Patient);
    candidates
        .min_by_key(|s| rank(s))
        .ok_or_else(|| FhirDenial::InsufficientScope {
            needed: settings
                .contexts
                .iter()
                .map(|c| format!("{}/{}.{letter}", c.as_str(), resource_type.unwrap_or("*")))
                .collect::<Vec<_>>()
                .join(" "),
        })
}

/// Confines the shape of a `patient/`-scoped request to the launch patient; what comes back is
/// checked separately, against the same membership.
fn confine(
    interaction: &Interaction,
    resource_type: &str,
    id: Option<&str>,
    params: &[Param],
    patient: &str,
) -> Result<(), FhirDenial> {
    let own_id = id == Some(patient);
    let patient_data = compartment::is_patient_data(resource_type);
    // A type phigate cannot place in or out of the compartment is refused, not assumed shared.
    if !resource_type.is_empty() && !patient_data && !compartment::is_shared_data(resource_type) {
        return Err(FhirDenial::CompartmentViolation);
    }
    let ok = match interaction {
        // The path names the patient; parameters naming another one contradict it.
        Interaction::SearchCompartment { patient: target } => {
            target == patient && compartment::names_only(resource_type, params, patient).is_some()
        }
        // An owner-less type (Provenance?target=…) is searched as asked, provided nothing names
        // another patient, and its answer is filtered.
        Interaction::SearchType => {
            compartment::search_is_confined(resource_type, params, patient)
                || (compartment::is_ownerless(resource_type)
                    && compartment::names_only(resource_type, params, patient).is_some())
        }
        // Type history cannot be narrowed by parameters; its answer is filtered entry by entry.
        Interaction::HistoryType => true,
        Interaction::SearchSystem | Interaction::HistorySystem => false,
        Interaction::Read | Interaction::Vread | Interaction::HistoryInstance
            if resource_type == "Patient" =>
        {
            own_id
        }
        Interaction::Update if resource_type == "Patient" => own_id,
        // Reads by id are checked on the answer; writes on the body.
        Interaction::Read | Interaction::Vread | Interaction::HistoryInstance => true,
        Interaction::Create => resource_type != "Patient",
        Interaction::Update => true,
        // Patching or deleting the Patient itself is not a patient app's to do; other patient
        // data is read first and pinned (see `precondition`).
        Interaction::Patch | Interaction::Delete => resource_type != "Patient",
        Interaction::Operation { .. } => resource_type == "Patient" && own_id,
        Interaction::Capabilities | Interaction::Batch => true,
    };
    if ok {
        Ok(())
    } else {
        Err(FhirDenial::CompartmentViolation)
    }
}

/// Checks a written resource: the type the URL names, no duplicate members that the upstream
/// might read differently, and admitted by the scopes that grant the write.
pub fn authorize_write_body(body: &[u8], check: &BodyCheck) -> Result<(), FhirDenial> {
    let resource = parse_body(body)?;
    resource_may_be_written(&resource, check)
}

fn resource_may_be_written(resource: &Value, check: &BodyCheck) -> Result<(), FhirDenial> {
    let same_type =
        resource.get("resourceType").and_then(Value::as_str) == Some(check.resource_type.as_str());
    if same_type && check.membership.admits(resource) {
        Ok(())
    } else {
        Err(FhirDenial::CompartmentViolation)
    }
}

fn parse_body(body: &[u8]) -> Result<Value, FhirDenial> {
    strict_json::parse(body).map_err(|err| match err {
        StrictJsonError::DuplicateMember | StrictJsonError::Invalid => FhirDenial::BodyUnparseable,
    })
}

/// What following a sealed link obliges: a page is checked like any search answer (and its own
/// page links sealed again); an export status seals the files it lists; a file passes as it is,
/// since only the client that started the export can follow its link.
pub fn follow_sealed(
    kind: crate::policy::seal::LinkKind,
    grants: &[SmartScope],
    patient: Option<&str>,
    settings: &Settings,
) -> (Option<ResponseCheck>, Option<LinkSeals>) {
    use crate::policy::seal::LinkKind;
    match kind {
        LinkKind::Page => {
            let membership = Membership::new(grants, &settings.contexts, "rs", patient);
            (
                Some(ResponseCheck::new(membership, AnswerShape::Collection)),
                Some(LinkSeals::Pages),
            )
        }
        LinkKind::ExportStatus => (None, Some(LinkSeals::ExportFiles)),
        LinkKind::ExportFile => (None, None),
    }
}

/// Checks an upstream answer before release (see `answer`); the forwarder parses it strictly
/// (`strict_json`) and never passes on one that does not parse.
pub fn check_answer(document: &Value, check: &ResponseCheck) -> Result<Checked, FhirDenial> {
    answer::check(document, check)
}

#[cfg(test)]
mod tests;
