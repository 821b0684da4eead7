//! Strict structural parsing of a compact JWS before any key or signature work: exactly three
//! canonical base64url segments (RFC 7515 §2, §7.1), JSON objects without duplicate member names
//! (RFC 7515 §4, RFC 8725 §2.6), and no header feature phigate does not implement (`crit`,
//! nested or encrypted tokens). It never chooses a key and never trusts a key the token carries.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::TokenFault;
use crate::strict_json::{self, StrictJsonError};

/// A compact JWS split into its parts, with header and payload decoded strictly.
#[derive(Debug)]
pub struct CompactJws {
    /// The protected header.
    pub header: JoseHeader,
    /// The claims object.
    pub claims: Map<String, Value>,
}

/// The header members phigate reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    /// `alg`, as written.
    pub alg: String,
    /// `kid`, if present.
    pub kid: Option<String>,
    /// `typ`, if present.
    pub typ: Option<String>,
}

/// Parses `token` strictly; any deviation is a [`TokenFault`].
pub fn parse(token: &str) -> Result<CompactJws, TokenFault> {
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        // Two segments is a stripped signature, five a JWE (RFC 7516): neither is accepted.
        return Err(TokenFault::Malformed);
    };
    if signature.is_empty() {
        return Err(TokenFault::Malformed);
    }
    let header = decode_object(header)?;
    let claims = decode_object(payload)?;
    decode_segment(signature)?;
    Ok(CompactJws {
        header: read_header(&header)?,
        claims,
    })
}

fn read_header(header: &Map<String, Value>) -> Result<JoseHeader, TokenFault> {
    let optional_string = |name: &str| match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenFault::Malformed),
    };
    let alg = optional_string("alg")?.ok_or(TokenFault::Malformed)?;
    // RFC 7515 §4.1.11: a `crit` extension we do not understand makes the JWS invalid, and we
    // understand none. `enc`/`zip` mark a JWE; `cty: JWT` a nested token (RFC 7519 §5.2): both
    // would need decryption or recursion, which phigate never does for an access token.
    if ["crit", "enc", "zip", "cty"]
        .iter()
        .any(|name| header.contains_key(*name))
    {
        return Err(TokenFault::UnsupportedHeader);
    }
    Ok(JoseHeader {
        alg,
        kid: optional_string("kid")?,
        typ: optional_string("typ")?,
    })
}

fn decode_segment(segment: &str) -> Result<Vec<u8>, TokenFault> {
    // The engine refuses padding and non-zero trailing bits (RFC 4648 §3.5), so one token has
    // exactly one spelling: a revocation by token hash cannot be dodged by re-encoding.
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenFault::Malformed)
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, TokenFault> {
    if segment.is_empty() {
        return Err(TokenFault::Malformed);
    }
    let bytes = decode_segment(segment)?;
    match strict_json::parse(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) | Err(StrictJsonError::Invalid) => Err(TokenFault::Malformed),
        Err(StrictJsonError::DuplicateMember) => Err(TokenFault::DuplicateMember),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), b64("sig"))
    }

    #[track_caller]
    fn check(token: &str, expected: Result<(&str, Option<&str>), TokenFault>) {
        let actual = parse(token).map(|jws| (jws.header.alg, jws.header.kid));
        let expected = expected.map(|(alg, kid)| (alg.to_owned(), kid.map(str::to_owned)));
        assert_eq!(actual, expected, "{token}");
    }

    #[test]
    fn accepts_a_well_formed_jws() {
        check(
            &token(r#"{"alg":"ES256","kid":"k1"}"#, r#"{"sub":"a"}"#),
            Ok(("ES256", Some("k1"))),
        );
    }

    #[test]
    fn refuses_structural_faults() {
        let good = token(r#"{"alg":"ES256"}"#, "{}");
        let (header, rest) = good.split_once('.').unwrap();
        let (payload, signature) = rest.split_once('.').unwrap();
        let padded = format!("{header}=.{payload}.{signature}");
        let standard_alphabet =
            format!("{header}.{payload}.{}", signature.replace('-', "+") + "+/");
        check(&format!("{header}.{payload}."), Err(TokenFault::Malformed));
        check(&format!("{header}.{payload}"), Err(TokenFault::Malformed));
        check(&format!("{good}.x"), Err(TokenFault::Malformed));
        check(&format!("{good}.x.y"), Err(TokenFault::Malformed));
        check(
            &format!(".{payload}.{signature}"),
            Err(TokenFault::Malformed),
        );
        check(&padded, Err(TokenFault::Malformed));
        check(&standard_alphabet, Err(TokenFault::Malformed));
        check(
            &format!("{header}.{payload}.{signature} x"),
            Err(TokenFault::Malformed),
        );
        check(&token("[1]", "{}"), Err(TokenFault::Malformed));
        check(&token(r#"{"kid":"k"}"#, "{}"), Err(TokenFault::Malformed));
        check(&token(r#"{"alg":5}"#, "{}"), Err(TokenFault::Malformed));
        check(
            &token(r#"{"alg":"ES256"}"#, "not json"),
            Err(TokenFault::Malformed),
        );
    }

    #[test]
    fn refuses_non_canonical_trailing_bits() {
        // "sig" encodes to "c2ln"; "c2lm" differs only in bits that a lax decoder ignores for
        // a two-character tail, so build a 2-byte payload whose last char carries spare bits.
        let canonical = URL_SAFE_NO_PAD.encode([0xffu8, 0xf0]); // "__A"
        assert_eq!(canonical, "__A");
        let header = b64(r#"{"alg":"ES256"}"#);
        let payload = b64("{}");
        check(&format!("{header}.{payload}.__A"), Ok(("ES256", None)));
        check(
            &format!("{header}.{payload}.__B"),
            Err(TokenFault::Malformed),
        );
    }

    #[test]
    fn refuses_duplicate_members_at_any_depth() {
        check(
            &token(r#"{"alg":"ES256","alg":"none"}"#, "{}"),
            Err(TokenFault::DuplicateMember),
        );
        check(
            &token(r#"{"alg":"ES256","kid":"a","kid":"b"}"#, "{}"),
            Err(TokenFault::DuplicateMember),
        );
        check(
            &token(r#"{"alg":"ES256"}"#, r#"{"sub":"a","sub":"b"}"#),
            Err(TokenFault::DuplicateMember),
        );
        check(
            &token(r#"{"alg":"ES256"}"#, r#"{"cnf":{"jkt":"a","jkt":"b"}}"#),
            Err(TokenFault::DuplicateMember),
        );
    }

    #[test]
    fn refuses_header_features_it_does_not_implement() {
        for header in [
            r#"{"alg":"ES256","crit":["exp"],"exp":1}"#,
            r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#,
            r#"{"alg":"ES256","zip":"DEF"}"#,
            r#"{"alg":"ES256","cty":"JWT"}"#,
        ] {
            check(&token(header, "{}"), Err(TokenFault::UnsupportedHeader));
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        check(
            &token(r#"{"alg":"ES256"}"#, &deep),
            Err(TokenFault::Malformed),
        );
    }
}
