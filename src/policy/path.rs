//! Request-path normalisation, the security core of routing. A path either becomes one
//! canonical `NormalPath` — which is what rules match and what is forwarded upstream, so the
//! authorised path is the forwarded path byte for byte — or it is refused. Refused outright
//! rather than "cleaned": dot segments in any spelling (RFC 3986 §5.2.4; Envoy CVE-2019-9901),
//! encoded slashes and backslashes (Envoy CVE-2021-29492, Istio CVE-2021-31920), `;` parameters
//! (the `..;/` class), NUL and control characters (Envoy CVE-2019-9900), invalid or overlong
//! UTF-8, and invisible characters. FHIR paths never need any of them.
//!
//! Canonical means: no empty segments (so no duplicate and no trailing slash: most upstreams
//! serve `/Report/secret/` as `/Report/secret`, so a rule must decide it as that), and every
//! character that may stand raw in a segment (RFC 3986 `pchar`) written raw, every other byte
//! percent-encoded in upper-case hex. Upstreams that decode `%24` to `$` before routing then see
//! the very path a rule matched.
//!
//! Some equivalences cannot be canonicalised away because upstreams disagree on them: letter
//! case (ASP.NET routing and IIS ignore it, HAPI does not), non-ASCII characters that an
//! upstream may map to ASCII (Unicode case mappings such as `ſ` → `S` and `K` → `k`, fullwidth
//! forms, Windows best-fit), and trailing dots and spaces (Windows drops them). For those this
//! module only answers whether a segment *may* equal a pattern literal (`may_equal`); the table
//! refuses a request for which that changes the deciding rule.

use std::fmt;

use percent_encoding::percent_decode_str;

/// Paths longer than this are refused before any work.
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathFault {
    /// Longer than [`MAX_PATH_BYTES`].
    TooLong,
    /// Not starting with `/` (e.g. `*` or an absolute URI).
    NotAbsolute,
    /// A `.` or `..` segment, raw or percent-encoded.
    DotSegment,
    /// `%2F` inside a segment.
    EncodedSlash,
    /// `\` raw or as `%5C`.
    Backslash,
    /// `;` raw or as `%3B`.
    Semicolon,
    /// NUL or another control character, raw or encoded.
    ControlCharacter,
    /// `%` not followed by two hex digits.
    MalformedEscape,
    /// Decoded bytes that are not UTF-8 (including overlong forms).
    InvalidUtf8,
    /// Zero-width, bidi-control or byte-order-mark characters.
    InvisibleCharacter,
    /// A raw byte outside RFC 3986 `pchar` (space, quote, non-ASCII, ...).
    InvalidCharacter,
}

/// A canonical path: starts with `/`, no empty, `.` or `..` segments (so no trailing slash unless
/// it is `/`), `pchar` characters decoded, every other escape in upper-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath(String);

impl NormalPath {
    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments between slashes, none of them empty; `/` has none.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        let rest = &self.0[1..];
        rest.split('/').filter(move |_| !rest.is_empty())
    }
}

impl fmt::Display for NormalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Normalises a raw request path (without its query), or says why it cannot be trusted.
pub fn normalise(raw: &str) -> Result<NormalPath, PathFault> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathFault::TooLong);
    }
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(PathFault::NotAbsolute);
    };
    let mut out = String::with_capacity(raw.len());
    // Empty segments (duplicate, leading or trailing slashes) are dropped: upstreams merge them,
    // so `/Report/secret/` and `//Report//secret` must be decided as `/Report/secret`.
    for segment in rest.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        normalise_segment(segment, &mut out)?;
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(NormalPath(out))
}

fn normalise_segment(segment: &str, out: &mut String) -> Result<(), PathFault> {
    let start = out.len();
    let mut decoded = Vec::with_capacity(segment.len());
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathFault::MalformedEscape)?;
            let value = u8::from_str_radix(
                std::str::from_utf8(hex).map_err(|_| PathFault::MalformedEscape)?,
                16,
            )
            .map_err(|_| PathFault::MalformedEscape)?;
            check_byte(value)?;
            if is_pchar(value) {
                // RFC 3986 §6.2.2.2 makes unreserved characters equal to their escapes; most
                // upstreams also decode sub-delims, `:` and `@` before routing (`%24lastn` is
                // `$lastn` to them), so the canonical form writes every `pchar` raw.
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push_str(&format!("{value:02X}"));
            }
            decoded.push(value);
            i += 3;
        } else {
            check_byte(byte)?;
            if !is_pchar(byte) {
                return Err(PathFault::InvalidCharacter);
            }
            out.push(char::from(byte));
            decoded.push(byte);
            i += 1;
        }
    }
    let text = std::str::from_utf8(&decoded).map_err(|_| PathFault::InvalidUtf8)?;
    if text.chars().any(is_invisible) {
        return Err(PathFault::InvisibleCharacter);
    }
    if matches!(&out[start..], "." | "..") {
        return Err(PathFault::DotSegment);
    }
    Ok(())
}

/// Bytes refused whether raw or percent-encoded.
fn check_byte(byte: u8) -> Result<(), PathFault> {
    match byte {
        b'/' => Err(PathFault::EncodedSlash),
        b'\\' => Err(PathFault::Backslash),
        b';' => Err(PathFault::Semicolon),
        0x00..=0x1f | 0x7f => Err(PathFault::ControlCharacter),
        _ => Ok(()),
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` minus `%` (handled as an escape) and `;` (refused above).
fn is_pchar(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

// === Loose equality ===

/// Characters Windows drops from the end of a file name, so `secret.` and `secret%20` may be
/// served as `secret`.
const TRAILING_IGNORED: [char; 2] = ['.', ' '];

/// Whether an upstream may serve the canonical `segment` as the pattern literal `literal`
/// (ASCII only): equal ignoring ASCII case and trailing dots and spaces, where any non-ASCII
/// character may stand for any one character. Exact equality always implies it.
pub(super) fn may_equal(segment: &str, literal: &str) -> bool {
    // Lossy: a canonical segment always decodes to UTF-8, and U+FFFD is non-ASCII, which only
    // widens what may match — the safe direction.
    let decoded = percent_decode_str(segment).decode_utf8_lossy();
    let mut theirs = decoded.trim_end_matches(TRAILING_IGNORED).chars();
    let mut ours = literal.trim_end_matches(TRAILING_IGNORED).chars();
    loop {
        match (theirs.next(), ours.next()) {
            (None, None) => return true,
            (Some(t), Some(o)) if !t.is_ascii() || t.eq_ignore_ascii_case(&o) => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests;
