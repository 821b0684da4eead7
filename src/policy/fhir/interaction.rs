//! Classifying a request as a FHIR R4 RESTful interaction (FHIR R4 http.html): read, vread,
//! history, search (GET and POST `_search`), create, update, patch, delete, capabilities,
//! operations at system, type and instance level, and batch/transaction. A path that is not one
//! of these shapes is not FHIR and is refused; so are conditional writes, whose target the
//! gateway cannot see.

use std::fmt;

use http::Method;

/// Where an operation is invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `[base]/$op`.
    System,
    /// `[base]/Type/$op`.
    Type,
    /// `[base]/Type/id/$op`.
    Instance,
}

/// A FHIR interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    /// `GET Type/id`.
    Read,
    /// `GET Type/id/_history/vid`.
    Vread,
    /// `GET Type/id/_history`.
    HistoryInstance,
    /// `GET Type/_history`.
    HistoryType,
    /// `GET _history`.
    HistorySystem,
    /// `GET Type?…` or `POST Type/_search`.
    SearchType,
    /// `GET ?…` or `POST _search`.
    SearchSystem,
    /// `GET Patient/id/Type?…`.
    SearchCompartment {
        /// The compartment's patient id.
        patient: String,
    },
    /// `POST Type`.
    Create,
    /// `PUT Type/id`.
    Update,
    /// `PATCH Type/id`.
    Patch,
    /// `DELETE Type/id`.
    Delete,
    /// `GET metadata`.
    Capabilities,
    /// `$name` at some level.
    Operation {
        /// The operation name without `$`.
        name: String,
        /// Where it is invoked.
        level: Level,
    },
    /// `POST /` with a batch or transaction Bundle.
    Batch,
}

impl Interaction {
    /// The SMART permission letter the interaction needs; `None` for capabilities, batches
    /// (decided entry by entry) and operations (decided by name).
    pub fn letter(&self) -> Option<char> {
        match self {
            // SMART 2.x: read covers read, vread and instance history; search covers search
            // and type or system history.
            Self::Read | Self::Vread | Self::HistoryInstance => Some('r'),
            Self::SearchType
            | Self::SearchSystem
            | Self::SearchCompartment { .. }
            | Self::HistoryType
            | Self::HistorySystem => Some('s'),
            Self::Create => Some('c'),
            Self::Update | Self::Patch => Some('u'),
            Self::Delete => Some('d'),
            Self::Capabilities | Self::Operation { .. } | Self::Batch => None,
        }
    }

    /// Whether the interaction is a search (its parameters are checked).
    pub fn is_search(&self) -> bool {
        matches!(
            self,
            Self::SearchType | Self::SearchSystem | Self::SearchCompartment { .. }
        )
    }

    /// Whether the interaction changes data.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Self::Create | Self::Update | Self::Patch | Self::Delete
        )
    }

    /// Whether the request names one resource, so its answer is that resource (or its history).
    pub fn names_one_resource(&self) -> bool {
        matches!(
            self,
            Self::Read
                | Self::Vread
                | Self::HistoryInstance
                | Self::Create
                | Self::Update
                | Self::Patch
                | Self::Delete
        )
    }
}

impl fmt::Display for Interaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read => f.write_str("read"),
            Self::Vread => f.write_str("vread"),
            Self::HistoryInstance => f.write_str("history-instance"),
            Self::HistoryType => f.write_str("history-type"),
            Self::HistorySystem => f.write_str("history-system"),
            Self::SearchType => f.write_str("search-type"),
            Self::SearchSystem => f.write_str("search-system"),
            Self::SearchCompartment { .. } => f.write_str("search-compartment"),
            Self::Create => f.write_str("create"),
            Self::Update => f.write_str("update"),
            Self::Patch => f.write_str("patch"),
            Self::Delete => f.write_str("delete"),
            Self::Capabilities => f.write_str("capabilities"),
            Self::Operation { name, .. } => write!(f, "operation ${name}"),
            Self::Batch => f.write_str("batch"),
        }
    }
}

/// A classified request: the interaction, its resource type and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The interaction.
    pub interaction: Interaction,
    /// The resource type addressed, if any.
    pub resource_type: Option<String>,
    /// The resource id addressed, if any.
    pub id: Option<String>,
}

/// Why a request is not a supported FHIR interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFhir {
    /// The path is not a FHIR shape.
    Unclassifiable,
    /// A FHIR shape phigate does not forward (conditional writes, unknown method).
    Unsupported,
}

/// FHIR R4: resource type names are capitalised letters.
pub fn is_type(segment: &str) -> bool {
    segment.len() > 1
        && segment.starts_with(|c: char| c.is_ascii_uppercase())
        && segment.chars().all(|c| c.is_ascii_alphabetic())
}

/// FHIR R4 `id`: `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_id(segment: &str) -> bool {
    (1..=64).contains(&segment.len())
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

fn operation(segment: &str) -> Option<String> {
    let name = segment.strip_prefix('$')?;
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    valid.then(|| name.to_owned())
}

/// Classifies `method path` (a normalised path relative to the FHIR base).
pub fn classify(method: &Method, path: &str) -> Result<Classified, NotFhir> {
    let segments: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    if path.ends_with('/') && path != "/" {
        return Err(NotFhir::Unclassifiable);
    }
    let at = |interaction, resource_type: Option<&str>, id: Option<&str>| Classified {
        interaction,
        resource_type: resource_type.map(str::to_owned),
        id: id.map(str::to_owned),
    };
    let m = method.as_str();
    let classified = match (m, segments.as_slice()) {
        ("POST", []) => at(Interaction::Batch, None, None),
        ("GET", []) => at(Interaction::SearchSystem, None, None),
        ("GET", ["metadata"]) => at(Interaction::Capabilities, None, None),
        ("POST", ["_search"]) => at(Interaction::SearchSystem, None, None),
        ("GET", ["_history"]) => at(Interaction::HistorySystem, None, None),
        ("GET" | "POST", [op]) if operation(op).is_some() => at(
            Interaction::Operation {
                name: operation(op).unwrap_or_default(),
                level: Level::System,
            },
            None,
            None,
        ),
        (_, [t, ..]) if !is_type(t) => return Err(NotFhir::Unclassifiable),
        ("GET", [t]) => at(Interaction::SearchType, Some(t), None),
        ("POST", [t]) => at(Interaction::Create, Some(t), None),
        // Conditional update/patch/delete act on whatever matches the query: not forwarded.
        ("PUT" | "PATCH" | "DELETE", [_]) => return Err(NotFhir::Unsupported),
        ("POST", [t, "_search"]) => at(Interaction::SearchType, Some(t), None),
        ("GET", [t, "_history"]) => at(Interaction::HistoryType, Some(t), None),
        ("GET" | "POST", [t, op]) if operation(op).is_some() => at(
            Interaction::Operation {
                name: operation(op).unwrap_or_default(),
                level: Level::Type,
            },
            Some(t),
            None,
        ),
        (_, [_, id, ..]) if !is_id(id) => return Err(NotFhir::Unclassifiable),
        ("GET", [t, id]) => at(Interaction::Read, Some(t), Some(id)),
        ("PUT", [t, id]) => at(Interaction::Update, Some(t), Some(id)),
        ("PATCH", [t, id]) => at(Interaction::Patch, Some(t), Some(id)),
        ("DELETE", [t, id]) => at(Interaction::Delete, Some(t), Some(id)),
        ("GET", [t, id, "_history"]) => at(Interaction::HistoryInstance, Some(t), Some(id)),
        ("GET", [t, id, "_history", vid]) if is_id(vid) => {
            at(Interaction::Vread, Some(t), Some(id))
        }
        ("GET" | "POST", [t, id, op]) if operation(op).is_some() => at(
            Interaction::Operation {
                name: operation(op).unwrap_or_default(),
                level: Level::Instance,
            },
            Some(t),
            Some(id),
        ),
        ("GET", ["Patient", id, t]) if is_type(t) => at(
            Interaction::SearchCompartment {
                patient: (*id).to_owned(),
            },
            Some(t),
            None,
        ),
        ("GET" | "POST" | "PUT" | "PATCH" | "DELETE", _) => return Err(NotFhir::Unclassifiable),
        _ => return Err(NotFhir::Unsupported),
    };
    Ok(classified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(
        method: &str,
        path: &str,
        expected: Result<(&str, Option<&str>, Option<&str>), NotFhir>,
    ) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let actual =
            classify(&method, path).map(|c| (c.interaction.to_string(), c.resource_type, c.id));
        let expected =
            expected.map(|(i, t, id)| (i.to_owned(), t.map(str::to_owned), id.map(str::to_owned)));
        assert_eq!(actual, expected, "{path}");
    }

    #[test]
    fn interactions() {
        check(
            "GET",
            "/Patient/123",
            Ok(("read", Some("Patient"), Some("123"))),
        );
        check(
            "GET",
            "/Patient/123/_history/2",
            Ok(("vread", Some("Patient"), Some("123"))),
        );
        check(
            "GET",
            "/Patient/123/_history",
            Ok(("history-instance", Some("Patient"), Some("123"))),
        );
        check(
            "GET",
            "/Patient/_history",
            Ok(("history-type", Some("Patient"), None)),
        );
        check("GET", "/_history", Ok(("history-system", None, None)));
        check(
            "GET",
            "/Observation",
            Ok(("search-type", Some("Observation"), None)),
        );
        check(
            "POST",
            "/Observation/_search",
            Ok(("search-type", Some("Observation"), None)),
        );
        check("GET", "/", Ok(("search-system", None, None)));
        check("POST", "/_search", Ok(("search-system", None, None)));
        check(
            "GET",
            "/Patient/123/Observation",
            Ok(("search-compartment", Some("Observation"), None)),
        );
        check(
            "POST",
            "/Observation",
            Ok(("create", Some("Observation"), None)),
        );
        check(
            "PUT",
            "/Observation/o-1",
            Ok(("update", Some("Observation"), Some("o-1"))),
        );
        check(
            "PATCH",
            "/Observation/o-1",
            Ok(("patch", Some("Observation"), Some("o-1"))),
        );
        check(
            "DELETE",
            "/Observation/o-1",
            Ok(("delete", Some("Observation"), Some("o-1"))),
        );
        check("GET", "/metadata", Ok(("capabilities", None, None)));
        check("POST", "/$export", Ok(("operation $export", None, None)));
        check(
            "GET",
            "/Patient/$export",
            Ok(("operation $export", Some("Patient"), None)),
        );
        check(
            "GET",
            "/Patient/123/$everything",
            Ok(("operation $everything", Some("Patient"), Some("123"))),
        );
        check("POST", "/", Ok(("batch", None, None)));
    }

    #[test]
    fn refused_shapes() {
        check("GET", "/patient/123", Err(NotFhir::Unclassifiable));
        check("GET", "/Patient/123/", Err(NotFhir::Unclassifiable));
        check("GET", "/Patient/a%20b", Err(NotFhir::Unclassifiable));
        check(
            "GET",
            "/Patient/123/Observation/x",
            Err(NotFhir::Unclassifiable),
        );
        check("DELETE", "/Observation", Err(NotFhir::Unsupported));
        check("PUT", "/Observation", Err(NotFhir::Unsupported));
        check("HEAD", "/Observation/1", Err(NotFhir::Unsupported));
        check("GET", "/Patient/$", Err(NotFhir::Unclassifiable));
    }
}
