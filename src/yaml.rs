//! YAML syntax errors as an operator can act on them (configuration, policies, policy tests —
//! one module, so every file reports problems alike): the position of the fault itself (the tab
//! that indents a line, not the scalar the parser was reading when it met it), the parser's
//! message with a hint for the usual indentation mistakes, and never the source snippet the
//! parser echoes, which may hold secrets from the file.

/// Where a YAML text failed to parse, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlFault {
    /// 1-based line, 0 when the parser gave none.
    pub line: u64,
    /// 1-based column, 0 when the parser gave none.
    pub column: u64,
    /// The parser's message, without its position prefix, with a hint where one helps.
    pub message: String,
}

/// Explains why `text` did not parse.
pub fn diagnose(text: &str, err: &serde_saphyr::Error) -> YamlFault {
    let (line, column) = err.location().map_or((0, 0), |at| (at.line(), at.column()));
    explain(text, line, column, &err.to_string())
}

/// How the parser (granit-parser) words its tab errors.
const TAB_MESSAGES: [&str; 4] = [
    "tabs disallowed",
    "tab cannot be used",
    "found a tab",
    "start with a tab",
];

fn explain(text: &str, line: u64, column: u64, full: &str) -> YamlFault {
    let bare = bare_message(full);
    // The scanner meets a tab that indents a line while it is still reading the line above,
    // and reports that line: point at the tab instead.
    if TAB_MESSAGES.iter().any(|m| bare.contains(m))
        && let Some((tab_line, tab_column)) = indenting_tab(text, line)
    {
        return YamlFault {
            line: tab_line,
            column: tab_column,
            message: "a tab character indents this line: YAML indents with spaces only".into(),
        };
    }
    let hint = if bare.contains("mapping values are not allowed") {
        " (this line is indented deeper than the key above it, or a value holding ': ' needs quotes)"
    } else if bare.contains("did not find expected key") {
        " (this line is not indented like the keys above it)"
    } else if bare.contains("did not find expected '-' indicator") {
        " (this line is not indented like the list items above it)"
    } else {
        ""
    };
    YamlFault {
        line,
        column,
        message: format!("{bare}{hint}"),
    }
}

fn bare_message(full: &str) -> String {
    let first = full.lines().next().unwrap_or("invalid YAML").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let without_position = match first.split_once(": ") {
        Some((position, rest)) if position.starts_with("line ") => rest,
        _ => first,
    };
    // Advice about the library's options means nothing to someone editing the file.
    without_position
        .split_once(", set DuplicateKeyPolicy")
        .map_or(without_position, |(message, _)| message)
        .to_owned()
}

/// The first tab in the indentation of a non-blank line, at or after `from_line`.
fn indenting_tab(text: &str, from_line: u64) -> Option<(u64, u64)> {
    text.lines()
        .zip(1u64..)
        .filter(|(_, number)| *number >= from_line)
        .find_map(|(line, number)| {
            let indentation = line.len() - line.trim_start_matches([' ', '\t']).len();
            let blank = line.trim().is_empty();
            let tab = line[..indentation].find('\t')?;
            (!blank).then(|| (number, tab as u64 + 1))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only parsed, to provoke errors")]
    struct Doc {
        address: Option<String>,
        tls: Option<std::collections::BTreeMap<String, String>>,
        rules: Option<Vec<std::collections::BTreeMap<String, serde_json::Value>>>,
    }

    /// Parses `text` and checks the position reported and a piece of the message.
    #[track_caller]
    fn check(text: &str, line: u64, column: u64, message: &str) {
        let err = serde_saphyr::from_str::<Doc>(text).expect_err(text);
        let fault = diagnose(text, &err);
        assert_eq!((fault.line, fault.column), (line, column), "{fault:?}");
        assert!(fault.message.contains(message), "{fault:?}");
        assert!(!fault.message.contains("-->"), "snippet echoed: {fault:?}");
    }

    #[test]
    fn tabs_are_reported_where_they_are() {
        let tab = "a tab character indents this line";
        check("address: x\ntls:\n\tcert_file: a\n", 3, 1, tab);
        // The parser blames the end of line 3 here; the tab is on line 4.
        check(
            "address: x\ntls:\n  cert_file: a\n\tkey_file: b\n",
            4,
            1,
            tab,
        );
        check("rules:\n  - name: a\n  \tmethods: [GET]\n", 3, 3, tab);
        check(
            "address: x\n\ntls:\n  cert_file: a\n\t\n\tkey_file: b\n",
            6,
            1,
            tab,
        );
    }

    #[test]
    fn indentation_mistakes_name_the_line_and_say_what_is_wrong() {
        check(
            "address: x\ntls:\n  cert_file: a\n   key_file: b\n",
            4,
            12,
            "indented deeper than the key above it",
        );
        check(
            "address: x\ntls:\n  cert_file: a\n key_file: b\n",
            4,
            2,
            "not indented like the keys above it",
        );
        check(
            "rules:\n  - name: a\n    methods: [GET]\n  - name: b\n   path: /x\n",
            5,
            4,
            "not indented like the list items above it",
        );
    }

    #[test]
    fn other_errors_keep_the_parser_position_and_drop_library_advice() {
        check(
            "address: x\naddress: y\n",
            2,
            1,
            "duplicate mapping key: address",
        );
        let err = serde_saphyr::from_str::<Doc>("address: x\naddress: y\n").unwrap_err();
        assert!(!diagnose("", &err).message.contains("DuplicateKeyPolicy"));
        check("address: \"x\n", 1, 10, "unclosed quote");
        check("adress: x\n", 1, 1, "unknown field `adress`");
    }
}
