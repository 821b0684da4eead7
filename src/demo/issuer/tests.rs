use std::time::Instant;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};

use super::*;
use crate::demo::tests::{Reply, get};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "https://fhir.test";

async fn start() -> DevIssuer {
    DevIssuer::start("127.0.0.1:0".parse().unwrap(), ISSUER)
        .await
        .unwrap()
}

async fn fetch(issuer: &DevIssuer) -> Reply {
    get(issuer.local_addr(), JWKS_PATH).await
}

async fn fetch_jwks(issuer: &DevIssuer) -> JwkSet {
    let reply = fetch(issuer).await;
    assert_eq!(reply.status, StatusCode::OK);
    serde_json::from_slice(&reply.body).unwrap()
}

fn claims(issuer: &DevIssuer) -> Value {
    issuer.standard_claims(
        "patient-123",
        "app-1",
        "patient/Observation.rs",
        AUDIENCE,
        Duration::from_secs(300),
    )
}

/// Decodes `token` with the published key `kid`, as a gateway would.
#[track_caller]
fn verify(jwks: &JwkSet, kid: &str, alg: Algorithm, token: &str) -> Value {
    let jwk = jwks
        .find(kid)
        .unwrap_or_else(|| panic!("{kid} is published"));
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(alg);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("{alg:?}: {e}"))
        .claims
}

#[tokio::test]
async fn jwks_is_served_with_content_type_and_cache_control() {
    let issuer = start().await;
    let reply = fetch(&issuer).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("application/jwk-set+json")
    );
    assert_eq!(reply.header("cache-control"), Some("max-age=300"));
    assert_eq!(reply.json()["keys"][0]["kid"], INITIAL_KID);
    issuer.set_cache_max_age(7);
    assert_eq!(
        fetch(&issuer).await.header("cache-control"),
        Some("max-age=7")
    );
    assert!(issuer.jwks_uri().starts_with("http://127.0.0.1:"));
    assert!(issuer.jwks_uri().ends_with("/.well-known/jwks.json"));
}

#[tokio::test]
async fn other_paths_are_404_and_not_counted() {
    let issuer = start().await;
    for path in [
        "/",
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json/x",
    ] {
        assert_eq!(
            get(issuer.local_addr(), path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(issuer.fetch_count(), 0);
}

#[tokio::test]
async fn minted_tokens_verify_with_the_published_jwk_for_every_algorithm() {
    let issuer = start().await;
    let cases = [
        (Algorithm::ES256, "es256", "EC"),
        (Algorithm::ES384, "es384", "EC"),
        (Algorithm::RS256, "rs256", "RSA"),
        (Algorithm::PS256, "ps256", "RSA"),
        (Algorithm::EdDSA, "ed25519", "OKP"),
    ];
    for (alg, kid, _) in cases {
        issuer.add_key(alg, kid).unwrap();
    }
    let jwks = fetch_jwks(&issuer).await;
    let raw = issuer.jwks();
    for (alg, kid, kty) in cases {
        issuer.set_signing_key(kid).unwrap();
        let claims = claims(&issuer);
        let token = issuer.mint(&claims);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!((header.alg, header.kid.as_deref()), (alg, Some(kid)));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(verify(&jwks, kid, alg, &token), claims);

        let jwk = raw["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap();
        assert_eq!(jwk["kty"], kty, "{kid}");
        assert_eq!(jwk["alg"], serde_json::to_value(alg).unwrap(), "{kid}");
        assert_eq!(jwk["use"], "sig", "{kid}");
        assert!(
            jwk.get("d").is_none(),
            "{kid}: private key must not be published"
        );
    }
}

#[tokio::test]
async fn public_key_pem_verifies_minted_tokens_for_every_algorithm() {
    let issuer = start().await;
    let cases = [
        (Algorithm::ES256, "es256"),
        (Algorithm::ES384, "es384"),
        (Algorithm::RS256, "rs256"),
        (Algorithm::PS256, "ps256"),
        (Algorithm::EdDSA, "ed25519"),
    ];
    for (alg, kid) in cases {
        issuer.add_key(alg, kid).unwrap();
        issuer.set_signing_key(kid).unwrap();
        let token = issuer.mint(&claims(&issuer));
        let pem = issuer.public_key_pem(kid).unwrap();
        assert!(
            pem.starts_with("-----BEGIN PUBLIC KEY-----\n"),
            "{kid}: {pem}"
        );
        let key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem.as_bytes()),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()),
            _ => DecodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .unwrap();
        let mut validation = Validation::new(alg);
        validation.set_audience(&[AUDIENCE]);
        jsonwebtoken::decode::<Value>(&token, &key, &validation)
            .unwrap_or_else(|e| panic!("{kid}: {e}"));
    }
    assert!(matches!(
        issuer.public_key_pem("nope"),
        Err(IssuerError::UnknownKid(_))
    ));
}

#[tokio::test]
async fn standard_claims_carry_every_member() {
    let issuer = start().await;
    let claims = claims(&issuer);
    for member in [
        "iss",
        "sub",
        "client_id",
        "aud",
        "scope",
        "iat",
        "exp",
        "jti",
    ] {
        assert!(claims.get(member).is_some(), "{member}");
    }
    assert_eq!(claims["iss"], ISSUER);
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 300);
    assert_ne!(
        claims["jti"],
        self::claims(&issuer)["jti"],
        "jti must be unique"
    );
}

#[tokio::test]
async fn removed_key_disappears_and_signing_key_is_protected() {
    let issuer = start().await;
    issuer.add_key(Algorithm::ES256, "next").unwrap();
    assert!(fetch_jwks(&issuer).await.find("next").is_some());

    assert!(matches!(
        issuer.remove_key(INITIAL_KID),
        Err(IssuerError::SigningKeyInUse(_))
    ));
    issuer.set_signing_key("next").unwrap();
    issuer.remove_key(INITIAL_KID).unwrap();
    let jwks = fetch_jwks(&issuer).await;
    assert!(jwks.find(INITIAL_KID).is_none());
    assert_eq!(jwks.keys.len(), 1);
    assert!(matches!(
        issuer.remove_key(INITIAL_KID),
        Err(IssuerError::UnknownKid(_))
    ));
    let token = issuer.mint(&claims(&issuer));
    verify(&jwks, "next", Algorithm::ES256, &token);
}

#[tokio::test]
async fn key_management_errors() {
    let issuer = start().await;
    let cases = [
        (
            issuer.add_key(Algorithm::HS256, "hmac"),
            "cannot generate HS256",
        ),
        (
            issuer.add_key(Algorithm::RS512, "rs512"),
            "cannot generate RS512",
        ),
        (
            issuer.add_key(Algorithm::ES256, INITIAL_KID),
            "already exists",
        ),
        (issuer.set_signing_key("missing"), "no signing key"),
    ];
    for (result, expected) in cases {
        let message = result.unwrap_err().to_string();
        assert!(message.contains(expected), "{message}");
    }
}

#[tokio::test]
async fn status_and_body_overrides_fail_the_endpoint_until_cleared() {
    let issuer = start().await;
    issuer.set_jwks_status(503);
    assert_eq!(fetch(&issuer).await.status, StatusCode::SERVICE_UNAVAILABLE);
    issuer.set_jwks_status(200);
    issuer.set_jwks_body_override(Some("not json".to_owned()));
    let reply = fetch(&issuer).await;
    assert_eq!(
        (reply.status, &reply.body[..]),
        (StatusCode::OK, &b"not json"[..])
    );
    issuer.set_jwks_body_override(None);
    fetch_jwks(&issuer).await;
    assert_eq!(issuer.fetch_count(), 3);
}

#[tokio::test]
async fn delay_slows_the_endpoint() {
    let issuer = start().await;
    issuer.set_jwks_delay(Duration::from_millis(200));
    let started = Instant::now();
    fetch(&issuer).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn raw_jwks_are_published_verbatim_and_removable() {
    let issuer = start().await;
    let odd = [
        json!({ "kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256", "x": "AA", "y": "AA" }),
        json!({ "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" }),
        json!({ "kty": "EC", "kid": "private", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA" }),
        json!({ "kty": "RSA", "n": "AQAB", "e": "AQAB" }),
    ];
    for jwk in &odd {
        issuer.publish_raw_jwk(jwk.clone());
    }
    let published = fetch(&issuer).await.json();
    assert_eq!(published["keys"].as_array().unwrap()[1..], odd);
    issuer.remove_key("hmac").unwrap();
    assert_eq!(
        fetch(&issuer).await.json()["keys"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // A raw entry has no private key, so nothing can be signed with it.
    assert!(matches!(
        issuer.sign_with("enc", Header::new(Algorithm::ES256), &json!({})),
        Err(IssuerError::UnknownKid(_))
    ));
}

#[tokio::test]
async fn crafted_headers_are_signed_as_given() {
    let issuer = start().await;
    let jwks = fetch_jwks(&issuer).await;
    let header = Header {
        kid: Some(INITIAL_KID.to_owned()),
        ..Header::new(Algorithm::ES256)
    };
    let token = issuer
        .sign_with(INITIAL_KID, header, &claims(&issuer))
        .unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().typ.as_deref(),
        Some("JWT")
    );
    verify(&jwks, INITIAL_KID, Algorithm::ES256, &token);

    // jsonwebtoken refuses a header alg from another family than the key.
    let rsa = Header::new(Algorithm::RS256);
    assert!(matches!(
        issuer.sign_with(INITIAL_KID, rsa, &json!({})),
        Err(IssuerError::Sign(_))
    ));

    let raw_header =
        json!({ "alg": "ES256", "kid": INITIAL_KID, "typ": "at+jwt", "crit": ["exp-ext"] });
    let token = issuer
        .sign_raw(INITIAL_KID, &raw_header, &claims(&issuer))
        .unwrap();
    let (encoded_header, _) = token.split_once('.').unwrap();
    let decoded: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded_header).unwrap()).unwrap();
    assert_eq!(decoded, raw_header);
}

#[tokio::test]
async fn fetch_count_counts_concurrent_fetches() {
    let issuer = start().await;
    let fetches = (0..5).map(|_| fetch(&issuer));
    futures_util::future::join_all(fetches).await;
    assert_eq!(issuer.fetch_count(), 5);
}

#[tokio::test]
async fn shutdown_stops_serving_but_minting_continues() {
    let issuer = start().await;
    let addr = issuer.local_addr();
    issuer.shutdown();
    issuer.stopped().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert!(!issuer.mint(&claims(&issuer)).is_empty());
}

async fn post_token(
    issuer: &DevIssuer,
    content_type: &str,
    body: impl Into<bytes::Bytes>,
) -> Reply {
    let req = Request::post(TOKEN_PATH)
        .header(http::header::HOST, issuer.local_addr().to_string())
        .header(http::header::CONTENT_TYPE, content_type)
        .body(http_body_util::Full::new(body.into()))
        .unwrap();
    crate::demo::tests::send(issuer.local_addr(), req).await
}

#[tokio::test]
async fn the_token_endpoint_is_closed_until_opened_and_answers_only_form_posts() {
    let issuer = start().await;
    let form = "application/x-www-form-urlencoded";
    let request = "grant_type=client_credentials&client_id=app-1&scope=system/*.rs";
    assert_eq!(
        post_token(&issuer, form, request).await.status,
        StatusCode::NOT_FOUND
    );
    issuer.serve_tokens(GrantSettings {
        audience: AUDIENCE.to_owned(),
        lifetime: Duration::from_secs(120),
    });
    assert_eq!(
        issuer.token_endpoint(),
        format!("http://{}{TOKEN_PATH}", issuer.local_addr())
    );

    let granted = post_token(&issuer, form, request).await;
    assert_eq!(granted.status, StatusCode::OK);
    assert_eq!(granted.header("cache-control"), Some("no-store"));
    assert_eq!(granted.header("content-type"), Some("application/json"));
    let body = granted.json();
    assert_eq!(body["expires_in"], 120);
    let claims = verify(
        &fetch_jwks(&issuer).await,
        INITIAL_KID,
        Algorithm::ES256,
        body["access_token"].as_str().unwrap(),
    );
    assert_eq!(claims["scope"], "system/*.rs");
    assert_eq!(claims["sub"], "app-1");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        120
    );

    let get = get(issuer.local_addr(), TOKEN_PATH).await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.header("allow"), Some("POST"));
    let refusals = [
        (
            post_token(&issuer, "application/json", "{}").await,
            "invalid_request",
        ),
        (
            post_token(&issuer, form, vec![b'a'; MAX_REQUEST_BYTES + 1]).await,
            "invalid_request",
        ),
        (
            post_token(&issuer, form, vec![0xff, 0xfe]).await,
            "invalid_request",
        ),
        (
            post_token(&issuer, form, "grant_type=password").await,
            "unsupported_grant_type",
        ),
    ];
    for (reply, code) in refusals {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_eq!(reply.json()["error"], code);
    }
}
