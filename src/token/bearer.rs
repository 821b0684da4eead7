//! Extracting the bearer token from a request head (RFC 6750 §2). Only the `Authorization`
//! header is a credential; a token in the query string is refused, never used. This module never
//! decodes the token and never lets its value reach `Debug`, `Display` or a log.

use std::fmt;

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// RFC 6585 §5 / SECURITY.md §5: refuse oversized credentials before any decoding.
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

/// A raw bearer token. It has no `Display`, and its `Debug` hides the value.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token string (tests and the development issuer build tokens directly).
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token text; only `token/` verification and the opt-in upstream forwarding read it.
    pub fn expose(&self) -> &str {
        &self.0
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
    /// The header is not visible ASCII, or the scheme has no token.
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
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    // RFC 9110 §11.1: the auth-scheme is case-insensitive.
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(CredentialFault::UnsupportedScheme);
    };
    // RFC 6750 §2.1: `Bearer 1*SP b64token`; more spaces are allowed before the token.
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(CredentialFault::Malformed);
    }
    Ok((BearerToken(token.to_owned()), scheme))
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

    #[track_caller]
    fn check(authorization: &[&str], query: Option<&str>, expected: Result<&str, CredentialFault>) {
        let mut headers = HeaderMap::new();
        for value in authorization {
            headers.append(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        let actual = bearer_from(&headers, query);
        assert_eq!(
            actual.as_ref().map(BearerToken::expose).map_err(|e| *e),
            expected
        );
    }

    #[test]
    fn extracts_one_bearer_token() {
        check(&["Bearer abc.def.ghi"], None, Ok("abc.def.ghi"));
        check(&["bEaReR abc.def.ghi"], None, Ok("abc.def.ghi"));
        check(&["Bearer  abc.def.ghi"], None, Ok("abc.def.ghi"));
        check(&["Bearer abc"], Some("_count=10&patient=123"), Ok("abc"));
    }

    #[test]
    fn refuses_every_ambiguous_or_foreign_form() {
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
            &["Bearer abc"],
            Some("access_token=abc"),
            Err(CredentialFault::Multiple),
        );
        check(
            &["Bearer abc", "Bearer abc"],
            None,
            Err(CredentialFault::Multiple),
        );
        check(
            &["Basic dXNlcjpwYXNz"],
            None,
            Err(CredentialFault::UnsupportedScheme),
        );
        check(
            &["Negotiate abc"],
            None,
            Err(CredentialFault::UnsupportedScheme),
        );
        check(
            &["Bearerabc"],
            None,
            Err(CredentialFault::UnsupportedScheme),
        );
        check(&["Bearer"], None, Err(CredentialFault::Malformed));
        check(&["Bearer    "], None, Err(CredentialFault::Malformed));
        let huge = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        check(&[huge.as_str()], None, Err(CredentialFault::TooLarge));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = BearerToken::new("secret.token.value");
        assert!(!format!("{token:?}").contains("secret"));
    }
}
