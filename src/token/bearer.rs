//! Extracting the bearer token from a request head (RFC 6750 §2). Only the `Authorization`
//! header is a credential; a token in the query string is refused, never used. The header must
//! be exactly `Bearer 1*SP b64token` (or `DPoP 1*SP token68`, the same grammar): two tokens, a
//! quoted one, a TAB, trailing bytes or a second scheme are malformed, never read in part. This
//! module never decodes the token and never lets its value reach `Debug`, `Display` or a log.

use std::fmt;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::TokenDigest;

/// RFC 6585 §5 / SECURITY.md §5: refuse oversized credentials before any decoding.
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

/// A raw bearer token and its digest. It has no `Display`, and its `Debug` hides the value.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken {
    text: String,
    digest: TokenDigest,
}

impl BearerToken {
    /// Wraps a token string (tests and `explain` build tokens directly); hashes it once.
    pub fn new(token: impl Into<String>) -> Self {
        let text = token.into();
        let digest = TokenDigest::of(&text);
        Self { text, digest }
    }

    /// The token text; only `token/` verification and the opt-in upstream forwarding read it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// What stands for the token everywhere else: cache keys, revocation, a DPoP `ath`.
    pub fn digest(&self) -> &TokenDigest {
        &self.digest
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Why no usable bearer token could be taken from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialFault {
    /// No `Authorization` header (RFC 6750 §3.1: answered without an error code).
    Missing,
    /// A scheme other than `Bearer`.
    UnsupportedScheme,
    /// More than one credential: repeated headers, or header plus `access_token` query.
    Multiple,
    /// `access_token` in the query string (RFC 6750 §2.3 is not offered; FAPI 2.0 forbids it).
    InQuery,
    /// Not `Bearer`/`DPoP` + `1*SP` + one `b64token`: no token, two, a quoted one, a TAB, trailing
    /// bytes, a second credential, or bytes outside visible ASCII.
    Malformed,
    /// The header exceeds [`MAX_AUTHORIZATION_BYTES`].
    TooLarge,
}

/// The authorization scheme a token came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// RFC 6750 `Bearer`.
    Bearer,
    /// RFC 9449 `DPoP`: the token must come with a proof.
    Dpop,
}

/// Takes the one bearer token from `Authorization`, refusing every ambiguous form.
pub fn bearer_from(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<BearerToken, CredentialFault> {
    credential_from(headers, query).map(|(token, _)| token)
}

/// Takes the one access token from `Authorization` (`Bearer` or `DPoP`) with its scheme.
pub fn credential_from(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(BearerToken, Scheme), CredentialFault> {
    let in_query = query.is_some_and(query_carries_token);
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(if in_query {
            CredentialFault::InQuery
        } else {
            CredentialFault::Missing
        });
    };
    // Envoy CVE-2021-32777: evaluating only one of several values bypasses authorization.
    if values.next().is_some() || in_query {
        return Err(CredentialFault::Multiple);
    }
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(CredentialFault::TooLarge);
    }
    let value = value.to_str().map_err(|_| CredentialFault::Malformed)?;
    parse_credentials(value)
}

/// RFC 9110 §11.6.2 `credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`, narrowed by
/// RFC 6750 §2.1 to `Bearer 1*SP b64token` and by RFC 9449 §7.1 to `DPoP 1*SP token68`.
fn parse_credentials(value: &str) -> Result<(BearerToken, Scheme), CredentialFault> {
    let scheme_end = value.bytes().take_while(|b| is_tchar(*b)).count();
    let (scheme, rest) = value.split_at(scheme_end);
    // RFC 9110 §11.1: the auth-scheme is case-insensitive.
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else if scheme.is_empty() {
        return Err(CredentialFault::Malformed);
    } else {
        // Another scheme (`Basic`, `Negotiate`): no credentials we accept, so no error code.
        return Err(CredentialFault::UnsupportedScheme);
    };
    // `1*SP` and only SP: a TAB or a comma after our scheme is a malformed header, not a
    // foreign scheme. The token is then the whole rest: a second token, trailing whitespace or
    // a comma-separated second credential is refused, so no part of the header is ignored.
    let token = rest.trim_start_matches(' ');
    if token.len() == rest.len() || !(is_b64token(token) || is_damaged_compact_jws(token)) {
        return Err(CredentialFault::Malformed);
    }
    Ok((BearerToken::new(token), scheme))
}

/// One compact JWS whose segments are not canonical base64url: `=` padding inside, or a space
/// within a segment (SECURITY.md B-09). Its two dots say it is one token, not two credentials,
/// so it is taken as the token it tries to be and refused by the JWS decoder as an invalid
/// token (401), never read in part. Two complete tokens (four dots) stay a malformed header.
fn is_damaged_compact_jws(token: &str) -> bool {
    token.matches('.').count() == 2
        && !token.ends_with(' ')
        && !token.contains("  ")
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/= ".contains(&b))
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// RFC 6750 §2.1 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
/// (RFC 9110 §11.2 `token68` is the same set).
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Whether a form-encoded text (query string or `application/x-www-form-urlencoded` body)
/// names an `access_token` parameter, however it is percent-encoded.
pub fn query_carries_token(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        let decoded: Vec<u8> =
            percent_encoding::percent_decode_str(&name.replace('+', " ")).collect();
        decoded.eq_ignore_ascii_case(b"access_token")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// Takes the credential from `authorization` header values (raw bytes: a test may send what
    /// `HeaderValue::from_str` would refuse) and checks token and scheme, or the fault.
    #[track_caller]
    fn check(
        authorization: &[&[u8]],
        query: Option<&str>,
        expected: Result<(&str, Scheme), CredentialFault>,
    ) {
        let mut headers = HeaderMap::new();
        for value in authorization {
            headers.append(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        }
        let actual = credential_from(&headers, query);
        assert_eq!(
            actual
                .as_ref()
                .map(|(token, scheme)| (token.expose(), *scheme))
                .map_err(|e| *e),
            expected,
            "{authorization:?}"
        );
    }

    #[test]
    fn extracts_one_token_with_its_scheme() {
        use Scheme::{Bearer, Dpop};
        let cases: [(&[u8], (&str, Scheme)); 16] = [
            (b"Bearer abc.def.ghi", ("abc.def.ghi", Bearer)),
            (b"bEaReR abc.def.ghi", ("abc.def.ghi", Bearer)),
            (b"BEARER abc", ("abc", Bearer)),
            // RFC 6750 §2.1 `1*SP`: more spaces are fine.
            (b"Bearer  abc.def.ghi", ("abc.def.ghi", Bearer)),
            (b"Bearer     abc", ("abc", Bearer)),
            (b"Bearer aZ09-._~+/", ("aZ09-._~+/", Bearer)),
            (b"Bearer abc=", ("abc=", Bearer)),
            (b"Bearer abc==", ("abc==", Bearer)),
            (b"DPoP abc.def.ghi", ("abc.def.ghi", Dpop)),
            (b"dpop  abc", ("abc", Dpop)),
            (b"DPOP abc==", ("abc==", Dpop)),
            // SECURITY.md B-09: one JWS with padding inside a segment or a space within one is
            // the token it tries to be, for the JWS decoder to refuse (401), not a second
            // credential (400).
            (b"Bearer abc=.def.ghi", ("abc=.def.ghi", Bearer)),
            (b"Bearer abc.de==.ghi", ("abc.de==.ghi", Bearer)),
            (b"Bearer ab c.def.ghi", ("ab c.def.ghi", Bearer)),
            (b"Bearer abc.def.ghi x", ("abc.def.ghi x", Bearer)),
            (b"DPoP abc.d ef.ghi", ("abc.d ef.ghi", Dpop)),
        ];
        for (value, expected) in cases {
            check(&[value], None, Ok(expected));
        }
        check(
            &[b"Bearer abc"],
            Some("_count=10&patient=123"),
            Ok(("abc", Bearer)),
        );
    }

    #[test]
    fn malformed_authorization_is_refused_whole() {
        for value in [
            // No token.
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer    ",
            b"DPoP",
            b"DPoP ",
            b"",
            // Two credentials, trailing junk, trailing whitespace.
            b"Bearer abc def",
            b"Bearer abc.def.ghi jkl.mno.pqr",
            b"Bearer abc.def.ghi x.y",
            b"Bearer abc.def.ghi ",
            b"Bearer abc.def.ghi  x",
            b"Bearer abc.def.ghi\tx",
            b"Bearer abc ",
            b"Bearer abc  ",
            b"Bearer abc\t",
            b"Bearer abc\t ",
            b"DPoP abc def",
            b"DPoP abc ",
            // A quoted token, or the auth-param form RFC 6750 does not offer.
            b"Bearer \"abc\"",
            b"Bearer token=\"abc\"",
            b"Bearer token=abc",
            b"DPoP \"abc\"",
            // Whitespace other than SP as the separator.
            b"Bearer\tabc",
            b"Bearer\t abc",
            b"Bearer \tabc",
            b"DPoP\tabc",
            // Characters outside b64token, `=` anywhere but at the end.
            b"Bearer abc!",
            b"Bearer abc;def",
            b"Bearer a=b",
            b"Bearer ==",
            b"Bearer =abc",
            b"Bearer abc\\def",
            b"Bearer abc%2Edef",
            b"Bearer abc:def",
            b"Bearer abc@def",
            b"Bearer \xc3\xa9abc",
            b"Bearer abc\x80",
            b"DPoP abc,def",
            // A comma-separated second scheme.
            b"Bearer abc, Basic dXNlcjpwYXNz",
            b"Bearer abc,Basic dXNlcjpwYXNz",
            b"Bearer, Basic dXNlcjpwYXNz",
            b"Bearer,abc",
            b"DPoP abc, Bearer abc",
            // No scheme at all.
            b" Bearer abc",
            b"\tBearer abc",
            b", Bearer abc",
            b"\"Bearer\" abc",
        ] {
            check(&[value], None, Err(CredentialFault::Malformed));
        }
    }

    #[test]
    fn refuses_every_ambiguous_or_foreign_form() {
        let unsupported = Err(CredentialFault::UnsupportedScheme);
        check(&[], None, Err(CredentialFault::Missing));
        check(&[], Some("access_token=abc"), Err(CredentialFault::InQuery));
        check(
            &[],
            Some("x=1&ACCESS_TOKEN=abc"),
            Err(CredentialFault::InQuery),
        );
        check(
            &[],
            Some("access%5Ftoken=abc"),
            Err(CredentialFault::InQuery),
        );
        check(
            &[b"Bearer abc"],
            Some("access_token=abc"),
            Err(CredentialFault::Multiple),
        );
        check(
            &[b"Bearer abc", b"Bearer abc"],
            None,
            Err(CredentialFault::Multiple),
        );
        check(
            &[b"Bearer abc", b"DPoP abc"],
            None,
            Err(CredentialFault::Multiple),
        );
        // A genuinely foreign scheme is not ours to parse: 401 without an error code.
        for value in [
            &b"Basic dXNlcjpwYXNz"[..],
            b"Basic\tdXNlcjpwYXNz",
            b"Negotiate",
            b"Negotiate abc def",
            b"MAC x",
            b"Bearerabc",
            b"DPoPabc",
            b"Bearer-x abc",
        ] {
            check(&[value], None, unsupported);
        }
        let huge = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        check(&[huge.as_bytes()], None, Err(CredentialFault::TooLarge));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = BearerToken::new("secret.token.value");
        assert!(!format!("{token:?}").contains("secret"));
    }
}
