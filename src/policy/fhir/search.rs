//! FHIR search parameters: parsing (URL query and, for POST `_search`, the form body — the
//! server combines both, FHIR R4 search.html §3.1.1), and the controls that can reach outside
//! what was granted: `_has`, chaining, `_type`, `_filter`, `_query`, `_list`, `_contained`,
//! and oversized `_count` are refused unless the rule allows them. `_include`/`_revinclude`
//! need no opt-in: every resource they bring back is checked on the answer.

use percent_encoding::percent_decode_str;

/// One decoded search parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The name with its modifier, e.g. `subject:Patient`.
    pub name: String,
    /// The decoded value.
    pub value: String,
}

impl Param {
    /// The name without its modifier.
    pub fn base(&self) -> &str {
        self.name.split(':').next().unwrap_or_default()
    }
}

/// The largest `_count` a client may ask for (SECURITY.md §5: FHIR `too-costly`).
pub const MAX_COUNT: u64 = 1000;

/// Parses `a=1&b=2` (form rules: `+` is a space); pieces without `=` get an empty value.
pub fn parse(text: &str) -> Vec<Param> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Param {
                name: decode(name),
                value: decode(value),
            }
        })
        .collect()
}

/// The one form the upstream receives: every checked parameter, in order, names and values
/// percent-encoded except for characters no server reads differently (ASCII letters, digits,
/// `-._~`, plus `:` in names and `,` — the FHIR OR separator — in values). A server's own
/// query parser (`;` separators, double decoding, `+`) then has nothing left to differ on.
pub fn canonical(params: &[Param]) -> String {
    const NAME: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b':');
    const VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b',');
    params
        .iter()
        .map(|p| {
            format!(
                "{}={}",
                percent_encoding::utf8_percent_encode(&p.name, NAME),
                percent_encoding::utf8_percent_encode(&p.value, VALUE)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether a raw query reads the same to every server: only characters no parser treats
/// differently (letters, digits, `-._~:/|,@!$'()*`, `&` and `=` as delimiters, and `%XX`
/// escapes other than `%25`). A `;` (an old separator), a `+` (space or plus), a double escape
/// or raw non-ASCII is refused where phigate forwards a query as the client wrote it (Bundle
/// entry URLs), because it cannot re-encode it there.
pub fn is_unambiguous(query: &str) -> bool {
    let bytes = query.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let escaped = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            if escaped.is_none_or(|value| value == b'%') {
                return false;
            }
            i += 3;
            continue;
        }
        let plain = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b':'
                    | b'/'
                    | b'|'
                    | b','
                    | b'@'
                    | b'!'
                    | b'$'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'&'
                    | b'='
            );
        if !plain {
            return false;
        }
        i += 1;
    }
    true
}

fn decode(text: &str) -> String {
    percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// Why a parameter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamFault {
    /// A control that can reach outside the grant, not allowed by the rule.
    NotAllowed,
    /// `_method`: a request pretending to be another method.
    MethodOverride,
    /// A name a server may read differently than phigate: control or non-ASCII characters,
    /// whitespace, or a case variant of a parameter that confines the search.
    NotCanonical,
}

/// Refuses parameter names that are not plainly what they say. FHIR search parameter names,
/// modifiers and chains use ASCII letters, digits, `-`, `_`, `:` and `.` only; anything else
/// (a NUL, a space a server may trim, a homoglyph) is a name phigate and the server could
/// read differently. `watched` are the parameters that confine the search: a case variant of
/// one (`PATIENT`, `Subject`) is refused, since a case-insensitive server reads it as the
/// real parameter that phigate did not check.
pub fn check_names(params: &[Param], watched: &[&str]) -> Result<(), ParamFault> {
    for param in params {
        let plain = !param.name.is_empty()
            && param
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'));
        if !plain {
            return Err(ParamFault::NotCanonical);
        }
        let base = param.base();
        if watched
            .iter()
            .any(|name| name.eq_ignore_ascii_case(base) && *name != base)
        {
            return Err(ParamFault::NotCanonical);
        }
    }
    Ok(())
}

/// Checks every parameter against the rule's `allowed` controls.
pub fn check_controls(
    params: &[Param],
    allowed: &[String],
    system_level: bool,
    patient_context: bool,
) -> Result<(), ParamFault> {
    let permits = |control: &str| allowed.iter().any(|a| a == control);
    for param in params {
        let base = param.base();
        if base == "_method" {
            return Err(ParamFault::MethodOverride);
        }
        // `Patient:link` follows links to other patients: never in patient context.
        let links_patients =
            (base == "_include" || base == "_revinclude") && param.value.contains("Patient:link");
        if patient_context && links_patients {
            return Err(ParamFault::NotAllowed);
        }
        let control = match base {
            // Includes return other resources, and every one of them is checked on the answer
            // against the token's scopes: allowed without an opt-in.
            "_include" | "_revinclude" => continue,
            "_has" | "_filter" | "_query" | "_list" | "_contained" | "_containedType" => base,
            "_type" if system_level => "_type",
            // A chained parameter (`subject.name`, `subject:Patient.name`) searches other resources.
            _ if param.name.contains('.') => "chain",
            "_count" => {
                if param
                    .value
                    .parse::<u64>()
                    .map_or(true, |count| count > MAX_COUNT)
                {
                    return Err(ParamFault::NotAllowed);
                }
                continue;
            }
            _ => continue,
        };
        if !permits(control) {
            return Err(ParamFault::NotAllowed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[track_caller]
    fn check(query: &str, allowed: &[&str], system: bool, expected: Result<(), ParamFault>) {
        let allowed: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            check_controls(&parse(query), &allowed, system, true),
            expected,
            "{query}"
        );
    }

    #[test]
    fn parsing() {
        let params = parse("subject%3APatient=123&code=a+b&flag&x=%2541");
        assert_eq!(
            params[0],
            Param {
                name: "subject:Patient".into(),
                value: "123".into()
            }
        );
        assert_eq!(params[0].base(), "subject");
        assert_eq!(params[1].value, "a b");
        assert_eq!(params[2].value, "");
        assert_eq!(params[3].value, "%41");
    }

    #[test]
    fn canonical_form() {
        let canonical = |query: &str| canonical(&parse(query));
        assert_eq!(canonical("patient=123&code=a+b"), "patient=123&code=a%20b");
        assert_eq!(
            canonical("subject%3APatient=123&code=http://loinc.org|1,x|2"),
            "subject:Patient=123&code=http%3A%2F%2Floinc.org%7C1,x%7C2"
        );
        assert_eq!(canonical("a=1;b=2"), "a=1%3Bb%3D2");
        assert_eq!(canonical("x=%2541"), "x=%2541");
        assert_eq!(canonical(""), "");
        // Canonical text parses back to the same parameters.
        let query = "subject:Patient=123&name=Ren%C3%A9e&flag";
        assert_eq!(parse(&canonical(query)), parse(query));
    }

    #[test]
    fn unambiguous_queries() {
        for plain in [
            "patient=123",
            "code=http://loinc.org|2345-7&_count=10",
            "subject:Patient=123&name=Ren%C3%A9e&x=%26",
            "",
        ] {
            assert!(is_unambiguous(plain), "{plain}");
        }
        for ambiguous in [
            "a=1;b=2",
            "name=a+b",
            "x=%2526",
            "x=%zz",
            "x=%2",
            "x=é",
            "x=a b",
            "x=<script>",
        ] {
            assert!(!is_unambiguous(ambiguous), "{ambiguous}");
        }
    }

    #[test]
    fn controls() {
        check(
            "patient=123&code=x&_count=50&_sort=date",
            &[],
            false,
            Ok(()),
        );
        check("_include=Observation:performer", &[], false, Ok(()));
        check(
            "_include=Observation:performer",
            &["_include"],
            false,
            Ok(()),
        );
        check(
            "_include:iterate=Patient:link",
            &["_include"],
            false,
            Err(ParamFault::NotAllowed),
        );
        check("_revinclude=*", &[], false, Ok(()));
        check("_include:iterate=Observation:subject", &[], false, Ok(()));
        check(
            "_has:Observation:patient:code=1",
            &[],
            false,
            Err(ParamFault::NotAllowed),
        );
        check(
            "subject:Patient.name=Smith",
            &[],
            false,
            Err(ParamFault::NotAllowed),
        );
        check(
            "patient.general-practitioner=x",
            &[],
            false,
            Err(ParamFault::NotAllowed),
        );
        check("_type=Patient", &[], true, Err(ParamFault::NotAllowed));
        check("_type=Patient", &[], false, Ok(()));
        check(
            "_filter=patient eq 456",
            &[],
            false,
            Err(ParamFault::NotAllowed),
        );
        check("_query=named", &[], false, Err(ParamFault::NotAllowed));
        check("_list=$current", &[], false, Err(ParamFault::NotAllowed));
        check("_contained=both", &[], false, Err(ParamFault::NotAllowed));
        check("_count=100000", &[], false, Err(ParamFault::NotAllowed));
        check("_count=abc", &[], false, Err(ParamFault::NotAllowed));
        check(
            "_method=DELETE",
            &["_include"],
            false,
            Err(ParamFault::MethodOverride),
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,80}") {
            let _ = parse(&text);
        }
    }
}
