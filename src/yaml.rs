//! YAML as phigate reads it (configuration, policies, policy tests): one place that turns a
//! parser error into a message an operator can act on, so every file reports problems alike.

/// The parser's message without its position prefix (we print our own) and without the echoed
/// source snippet, which may hold secrets from the file.
pub fn message(err: &serde_saphyr::Error) -> String {
    let full = err.to_string();
    let first = full.lines().next().unwrap_or("invalid YAML").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let without_position = match first.split_once(": ") {
        Some((position, rest)) if position.starts_with("line ") => rest,
        _ => first,
    };
    without_position.to_owned()
}
