//! A JWKS document as the issuer's endpoint serves it (`jwks::parse_key_set`): every entry
//! goes through `jose::jwk` (private members, key families and their floors, `use`, `key_ops`,
//! `alg` labels) and the issuer's algorithm allow-list. A key set is not a client's input, but
//! it arrives over the network and a refused entry must never stop the others.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use phigate::config::{AlgorithmSet, IssuerConfig};
use phigate::token::jwks;

static ISSUER: LazyLock<IssuerConfig> = LazyLock::new(|| IssuerConfig {
    issuer: Arc::from("https://as.test"),
    jwks_uri: Some(http::Uri::from_static("https://as.test/jwks")),
    jwks_ca_file: None,
    audiences: vec!["https://fhir.test".to_owned()],
    algorithms: AlgorithmSet::parse(&["RS256", "PS256", "ES256", "ES384", "EdDSA"])
        .unwrap_or_else(|err| panic!("{err}")),
    patient_claim: "patient".to_owned(),
    introspection: None,
});

fuzz_target!(|data: &[u8]| {
    let _ = jwks::parse_key_set(data, &ISSUER);
});
