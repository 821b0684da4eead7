//! The token front end, everything before the signature: the `Authorization` grammar
//! (`credential_from`), the strict compact-JWS parse, the algorithm allow-list and the claim
//! rules (`trusted_claims` runs `claims::validate`, as `explain` does). Keys and signatures
//! need the network and are left to the integration tests.
//!
//! Input, first line `raw`: an `Authorization` value, then optionally a line with a query
//! string. First line `json`: a JOSE header, a claims object and a signature, one per line,
//! that the target base64url-encodes into `Bearer h.p.s`, so mutations reach the claims.
#![no_main]

use std::sync::LazyLock;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use phigate::config::{IssuerConfig, TokenBounds};
use phigate::jose;
use phigate::token::{self, BearerToken};
use phigate_fuzz::jws;

static ISSUER: LazyLock<IssuerConfig> = LazyLock::new(|| IssuerConfig::offline("patient"));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((mode, rest)) = text.split_once('\n') else {
        return;
    };
    let (value, query) = match mode {
        "raw" => match rest.split_once('\n') {
            Some((value, query)) => (value.to_owned(), Some(query)),
            None => (rest.to_owned(), None),
        },
        "json" => {
            let mut lines = rest.splitn(3, '\n');
            let header = lines.next().unwrap_or_default();
            let claims = lines.next().unwrap_or_default();
            let signature = lines.next().unwrap_or_default();
            (
                format!(
                    "Bearer {}",
                    jws::unsigned(header, claims, signature.as_bytes())
                ),
                None,
            )
        }
        _ => return,
    };
    check(&value, query);
});

fn check(value: &str, query: Option<&str>) {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(AUTHORIZATION, value);
    }
    let Ok((bearer, _scheme)) = token::credential_from(&headers, query) else {
        return;
    };
    // The credential is the whole rest of the value after the scheme and its spaces: never a
    // part of it (RFC 6750 §2.1 `b64token`; a second token or trailing bytes are refused).
    let text = value
        .split_once(' ')
        .map(|(_, rest)| rest.trim_start_matches(' '))
        .unwrap_or_else(|| panic!("a credential without a space: {value:?}"));
    assert_eq!(bearer, BearerToken::new(text), "{value:?}");
    let Ok(parsed) = jose::compact::parse(text) else {
        return;
    };
    // The signature covers exactly what was received (RFC 7515 §5.2).
    assert_eq!(
        format!("{}.{}", parsed.signing_input, parsed.signature),
        text
    );
    if jose::algorithm(&parsed.header.alg).is_none() {
        return;
    }
    let _ = token::trusted_claims(parsed.claims, &ISSUER, &TokenBounds::default());
}
