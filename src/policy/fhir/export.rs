//! Bulk Data kick-off (`$export` at system level, `Patient/$export`, `Group/{id}/$export`,
//! FHIR Bulk Data Access 2.0). An export reads every resource of every type it names for many
//! patients at once, so it is decided on what it would return, not on the type in its URL:
//! only `system/` scopes count unless the rule widens `export_contexts`, every `_type` must be
//! covered by a scope, no `_type` means "every type", which only a `*` scope covers, and every
//! `_typeFilter` query is checked like a search of its type. A `patient/` scope never exports.

use super::scope::{Context, SmartScope};
use super::search::{self, Param};
use super::{FhirDenial, Settings};

/// The letter an export needs for each type it returns (SMART 2.x: an export is a search).
const EXPORT_LETTER: char = 's';

/// Decides a kick-off request; returns the scope that covers it.
pub fn authorize<'a>(
    params: &[Param],
    grants: &'a [SmartScope],
    settings: &Settings,
) -> Result<&'a SmartScope, FhirDenial> {
    let usable: Vec<&SmartScope> = grants
        .iter()
        .filter(|s| s.context != Context::Patient && settings.export_contexts.contains(&s.context))
        .filter(|s| !s.is_granular() && s.letters.contains(EXPORT_LETTER))
        .collect();
    let needed = |types: &str| FhirDenial::InsufficientScope {
        needed: settings
            .export_contexts
            .iter()
            .map(|c| format!("{}/{types}.{EXPORT_LETTER}", c.as_str()))
            .collect::<Vec<_>>()
            .join(" "),
    };
    let covering = |resource_type: &str| {
        usable
            .iter()
            .copied()
            .find(|s| s.resource_type == "*" || s.resource_type == resource_type)
    };
    let types = requested_types(params)?;
    let chosen = if types.is_empty() {
        // Without `_type` the server exports every type it has.
        usable
            .iter()
            .copied()
            .find(|s| s.resource_type == "*")
            .ok_or_else(|| needed("*"))?
    } else {
        let mut chosen = None;
        for resource_type in &types {
            let scope = covering(resource_type).ok_or_else(|| needed(resource_type))?;
            chosen.get_or_insert(scope);
        }
        chosen.ok_or_else(|| needed("*"))?
    };
    for filter in params.iter().filter(|p| p.base() == "_typeFilter") {
        check_type_filter(&filter.value, &types, &covering, settings)?;
    }
    Ok(chosen)
}

/// The types named by every `_type` (comma lists, possibly repeated).
fn requested_types(params: &[Param]) -> Result<Vec<String>, FhirDenial> {
    let mut types = Vec::new();
    for param in params.iter().filter(|p| p.base() == "_type") {
        if param.name != "_type" {
            return Err(FhirDenial::SearchParamNotAllowed);
        }
        for resource_type in param.value.split(',') {
            if !is_type_name(resource_type) {
                return Err(FhirDenial::SearchParamNotAllowed);
            }
            types.push(resource_type.to_owned());
        }
    }
    Ok(types)
}

/// One `_typeFilter` value, `Type?query[,Type?query…]`: its type must be exported and covered,
/// and its query passes the same controls as a search.
fn check_type_filter<'a>(
    value: &str,
    types: &[String],
    covering: &impl Fn(&str) -> Option<&'a SmartScope>,
    settings: &Settings,
) -> Result<(), FhirDenial> {
    for filter in value.split(',') {
        let (resource_type, query) = filter
            .split_once('?')
            .ok_or(FhirDenial::SearchParamNotAllowed)?;
        let named = types.is_empty() || types.iter().any(|t| t == resource_type);
        if !is_type_name(resource_type) || !named || covering(resource_type).is_none() {
            return Err(FhirDenial::SearchParamNotAllowed);
        }
        let params = search::parse(query);
        search::check_names(&params, &[]).map_err(|_| FhirDenial::SearchParamNotCanonical)?;
        search::check_controls(&params, &settings.allowed_search_params, false, false)
            .map_err(|_| FhirDenial::SearchParamNotAllowed)?;
    }
    Ok(())
}

fn is_type_name(text: &str) -> bool {
    text.len() > 1
        && text.starts_with(|c: char| c.is_ascii_uppercase())
        && text.chars().all(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::super::search::parse;
    use super::*;

    fn settings(export_contexts: Vec<Context>) -> Settings {
        Settings {
            contexts: vec![Context::Patient, Context::User, Context::System],
            resource_types: None,
            allowed_search_params: Vec::new(),
            export_contexts,
        }
    }

    #[track_caller]
    fn check(scopes: &str, query: &str, expected: Result<&str, &str>) {
        let grants: Vec<SmartScope> = scopes.split(' ').filter_map(SmartScope::parse).collect();
        let actual = authorize(&parse(query), &grants, &settings(vec![Context::System]))
            .map(|s| s.to_string())
            .map_err(|d| d.reason());
        assert_eq!(
            actual.as_deref().map_err(|e| *e),
            expected,
            "{scopes} ?{query}"
        );
    }

    #[test]
    fn an_export_is_decided_on_every_type_it_returns() {
        check("system/*.rs", "", Ok("system/*.rs"));
        check(
            "system/*.rs",
            "_type=Patient,Observation",
            Ok("system/*.rs"),
        );
        check(
            "system/Patient.rs system/Observation.rs",
            "_type=Patient&_type=Observation",
            Ok("system/Patient.rs"),
        );
        // The issue's case: a Patient read scope exporting Observations.
        check(
            "user/Patient.rs",
            "_type=Observation",
            Err("insufficient_scope"),
        );
        check(
            "system/Patient.rs",
            "_type=Observation",
            Err("insufficient_scope"),
        );
        check("system/Patient.rs", "", Err("insufficient_scope"));
        check(
            "patient/*.rs",
            "_type=Observation",
            Err("insufficient_scope"),
        );
        check("system/*.r", "_type=Observation", Err("insufficient_scope"));
        check(
            "system/Observation.rs?category=laboratory",
            "_type=Observation",
            Err("insufficient_scope"),
        );
        check(
            "system/*.rs",
            "_type=observation",
            Err("search_param_not_allowed"),
        );
        check(
            "system/*.rs",
            "_type:not=Patient",
            Err("search_param_not_allowed"),
        );
    }

    #[test]
    fn type_filters_are_searches_of_exported_types() {
        check(
            "system/Observation.rs",
            "_type=Observation&_typeFilter=Observation%3Fcategory%3Dlaboratory",
            Ok("system/Observation.rs"),
        );
        check(
            "system/Observation.rs",
            "_type=Observation&_typeFilter=Condition%3Fcode%3Dx",
            Err("search_param_not_allowed"),
        );
        check(
            "system/*.rs",
            "_typeFilter=Observation%3F_has%3AProvenance%3Atarget%3Aagent%3Dx",
            Err("search_param_not_allowed"),
        );
        check(
            "system/*.rs",
            "_typeFilter=Observation",
            Err("search_param_not_allowed"),
        );
    }

    #[test]
    fn a_rule_may_widen_the_contexts_that_export() {
        let grants: Vec<SmartScope> = ["user/*.rs"]
            .iter()
            .filter_map(|s| SmartScope::parse(s))
            .collect();
        let wide = settings(vec![Context::System, Context::User]);
        assert!(authorize(&parse("_type=Patient"), &grants, &wide).is_ok());
        let patient: Vec<SmartScope> = ["patient/*.rs"]
            .iter()
            .filter_map(|s| SmartScope::parse(s))
            .collect();
        let widest = settings(vec![Context::System, Context::User, Context::Patient]);
        assert!(authorize(&parse("_type=Patient"), &patient, &widest).is_err());
    }
}
