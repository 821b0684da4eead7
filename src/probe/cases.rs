//! The catalogue: every case the probe runs, as data — its id, the SECURITY.md entry it stands
//! for, what it sends and what a safe gateway answers. Cases are built from the run's
//! [`Context`] (the valid token, the path it may read, the forger, the issuer's published key)
//! and judged by `Judge` in `mod.rs`; nothing here touches the network. README `## Probe`
//! documents each id.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use serde_json::{Value, json};

use super::forge::{AttackerKey, Forger, Provenance, now};
use super::keys::PublishedKey;
use super::target::Outgoing;

/// Statuses a refused token gets (RFC 6750 §3.1 `invalid_token`).
pub const TOKEN_REFUSED: &[u16] = &[401];
/// Statuses a malformed credential may get: 400 `invalid_request`, or 401.
pub const REQUEST_REFUSED: &[u16] = &[400, 401];
/// Statuses a path trick sent without credentials may get: malformed, unauthenticated,
/// forbidden or not found — anything but the protected answer.
pub const PATH_REFUSED: &[u16] = &[400, 401, 403, 404];
/// Statuses an override or forbidden method may get.
pub const METHOD_REFUSED: &[u16] = &[400, 403, 405, 501];
/// Statuses an oversized request may get (or the connection closed).
pub const SIZE_REFUSED: &[u16] = &[400, 401, 413, 431, 494];

/// A change to the valid token's claims.
type ClaimEdit = Box<dyn Fn(&mut serde_json::Map<String, Value>)>;

/// What a case sends.
#[derive(Debug, Clone)]
pub enum Send {
    /// A request through the HTTP client.
    Http(Outgoing),
    /// A request head written byte for byte.
    Raw(Outgoing),
    /// A plaintext HTTP request to the TLS port.
    Plaintext,
    /// A ClientHello offering only this protocol version.
    OldTls(u16),
    /// Nothing: the case cannot run here, for this reason.
    Skip(String),
}

/// What a safe target answers.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// A 2xx answer (positive control).
    Allowed,
    /// One of these statuses, with nothing leaked.
    Refused(&'static [u16]),
    /// One of these statuses or no answer at all, with nothing leaked.
    RefusedOrClosed(&'static [u16]),
    /// No HTTP answer on the TLS port.
    NoHttp,
    /// An alert or a close, never a ServerHello.
    NoServerHello,
    /// A 4xx, or an answer holding nothing of the other patient and linking only to the
    /// target (FHIR confinement).
    Confined,
}

/// One case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its id (README `## Probe`).
    pub id: &'static str,
    /// The SECURITY.md catalogue entry.
    pub reference: &'static str,
    /// What it sends.
    pub send: Send,
    /// What passes.
    pub expect: Expect,
    /// Said beside the observation (e.g. that a token was mutated rather than re-signed).
    pub note: Option<&'static str>,
}

/// What the cases are built from.
pub struct Context<'a> {
    /// The valid token and the forger for its variants.
    pub forger: &'a Forger,
    /// The path (and query) the valid token may read.
    pub path: &'a str,
    /// The issuer's key that signed the token, or why it could not be found.
    pub published: &'a Result<PublishedKey, String>,
    /// A key of the probe's own, standing for an attacker's.
    pub attacker: &'a AttackerKey,
}

// === impl Expect ===

impl Expect {
    /// The expectation in a few words, for the report.
    pub fn describe(self) -> String {
        let statuses = |set: &[u16]| set.iter().map(u16::to_string).collect::<Vec<_>>().join("/");
        match self {
            Self::Allowed => "2xx".to_owned(),
            Self::Refused(set) => statuses(set),
            Self::RefusedOrClosed(set) => format!("{} or closed", statuses(set)),
            Self::NoHttp => "no HTTP answer".to_owned(),
            Self::NoServerHello => "alert or close".to_owned(),
            Self::Confined => "4xx or own data only".to_owned(),
        }
    }
}

// === impl Case ===

impl Case {
    fn new(id: &'static str, reference: &'static str, send: Send, expect: Expect) -> Self {
        Self {
            id,
            reference,
            send,
            expect,
            note: None,
        }
    }

    fn noted(mut self, provenance: Provenance) -> Self {
        if provenance == Provenance::Mutated {
            self.note = Some("mutated (no --issuer-key)");
        }
        self
    }
}

impl Context<'_> {
    fn token(&self) -> &str {
        &self.forger.token.text
    }

    /// `GET path` with `authorization` (when given) and `headers`.
    fn get(&self, path: &str, authorization: Option<&str>, headers: &[(&str, &str)]) -> Outgoing {
        let mut all: Vec<(String, String)> = authorization
            .map(|value| ("authorization".to_owned(), value.to_owned()))
            .into_iter()
            .collect();
        all.extend(
            headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        Outgoing {
            method: Method::GET,
            path: path.to_owned(),
            headers: all,
            body: Vec::new(),
        }
    }

    /// `GET` the valid path with `Authorization: value`.
    fn with_authorization(&self, value: &str) -> Send {
        Send::Http(self.get(self.path, Some(value), &[]))
    }

    /// `GET` the valid path with `Bearer token`.
    fn bearer(&self, token: &str) -> Send {
        self.with_authorization(&format!("Bearer {token}"))
    }

    /// The valid path without its query.
    fn bare_path(&self) -> &str {
        self.path.split('?').next().unwrap_or(self.path)
    }

    /// The valid path with its last `/` replaced by `with`.
    fn last_slash(&self, with: &str) -> String {
        let path = self.bare_path();
        match path.rfind('/') {
            Some(0) | None => format!("{path}{with}x"),
            Some(at) => format!("{}{with}{}", &path[..at], &path[at + 1..]),
        }
    }

    fn query_join(&self, extra: &str) -> String {
        match self.path.contains('?') {
            true => format!("{}&{extra}", self.path),
            false => format!("{}?{extra}", self.path),
        }
    }
}

/// Every case for this run, positive controls first (FHIR and DPoP cases are planned apart).
pub fn plan(ctx: &Context<'_>) -> Vec<Case> {
    let mut cases = controls(ctx);
    cases.extend(credentials(ctx));
    cases.extend(signatures(ctx));
    cases.extend(claims(ctx));
    cases.extend(paths(ctx));
    cases.extend(methods(ctx));
    cases.extend(transport());
    cases
}

fn controls(ctx: &Context<'_>) -> Vec<Case> {
    let token = ctx.token();
    vec![
        Case::new(
            "control-allowed",
            "§0.2",
            ctx.bearer(token),
            Expect::Allowed,
        ),
        Case::new(
            "control-scheme-case",
            "A-07",
            ctx.with_authorization(&format!("bEaReR {token}")),
            Expect::Allowed,
        ),
    ]
}

fn credentials(ctx: &Context<'_>) -> Vec<Case> {
    use Expect::{Refused, RefusedOrClosed};
    let token = ctx.token();
    let bearer = format!("Bearer {token}");
    let duplicate = ctx.get(ctx.path, Some(&bearer), &[("authorization", &bearer)]);
    let mixed = ctx.get(
        ctx.path,
        Some(&bearer),
        &[("authorization", "Bearer probe-second")],
    );
    let query = ctx.query_join(&format!("access_token={token}"));
    let huge = "A".repeat(64 * 1024);
    let padding = "p".repeat(96 * 1024);
    vec![
        Case::new(
            "no-credentials",
            "A-01",
            Send::Http(ctx.get(ctx.path, None, &[])),
            Refused(&[401]),
        ),
        Case::new(
            "query-token",
            "A-03",
            Send::Http(ctx.get(&query, None, &[])),
            Refused(REQUEST_REFUSED),
        ),
        Case::new(
            "query-and-header",
            "A-03",
            Send::Http(ctx.get(&query, Some(&bearer), &[])),
            Refused(REQUEST_REFUSED),
        ),
        Case::new(
            "duplicate-authorization",
            "A-05",
            Send::Http(duplicate),
            Refused(REQUEST_REFUSED),
        ),
        Case::new(
            "duplicate-authorization-mixed",
            "A-05",
            Send::Http(mixed),
            Refused(REQUEST_REFUSED),
        ),
        Case::new(
            "scheme-basic",
            "A-09",
            ctx.with_authorization("Basic cHJvYmU6cHJvYmU="),
            Refused(&[401]),
        ),
        Case::new(
            "scheme-missing",
            "A-09",
            ctx.with_authorization(token),
            Refused(REQUEST_REFUSED),
        ),
        Case::new(
            "bearer-empty",
            "A-01",
            ctx.with_authorization("Bearer"),
            Refused(REQUEST_REFUSED),
        ),
        Case::new(
            "two-tokens",
            "A-05",
            ctx.with_authorization(&format!("Bearer {token} {token}")),
            Refused(REQUEST_REFUSED),
        ),
        Case::new(
            "auth-params",
            "A-05",
            ctx.with_authorization(&format!("Bearer {token}, realm=\"probe\"")),
            Refused(REQUEST_REFUSED),
        ),
        Case::new(
            "tab-separator",
            "A-07",
            ctx.with_authorization(&format!("Bearer\t{token}")),
            Refused(REQUEST_REFUSED),
        ),
        Case::new(
            "quoted-token",
            "A-07",
            ctx.with_authorization(&format!("Bearer \"{token}\"")),
            Refused(REQUEST_REFUSED),
        ),
        Case::new(
            "dpop-without-proof",
            "G-03",
            ctx.with_authorization(&format!("DPoP {token}")),
            Refused(REQUEST_REFUSED),
        ),
        Case::new(
            "oversized-token",
            "A-11",
            ctx.bearer(&huge),
            RefusedOrClosed(SIZE_REFUSED),
        ),
        Case::new(
            "oversized-header",
            "A-11",
            Send::Http(ctx.get(ctx.path, Some(&bearer), &[("x-probe-padding", &padding)])),
            RefusedOrClosed(SIZE_REFUSED),
        ),
    ]
}

fn signatures(ctx: &Context<'_>) -> Vec<Case> {
    use Expect::Refused;
    let forger = ctx.forger;
    let token = &forger.token;
    let input = token.signing_input();
    let mut cases = vec![
        Case::new(
            "alg-none",
            "B-01",
            ctx.bearer(&forger.unsecured("none")),
            Refused(TOKEN_REFUSED),
        ),
        Case::new(
            "alg-none-capitalised",
            "B-01",
            ctx.bearer(&forger.unsecured("None")),
            Refused(TOKEN_REFUSED),
        ),
    ];
    for (id, secret) in [
        ("hmac-jwk-text", hmac_jwk_text(ctx)),
        ("hmac-public-pem", hmac_pem(ctx)),
    ] {
        let send = match secret {
            Ok(secret) => ctx.bearer(&forger.hmac(secret.as_bytes())),
            Err(reason) => Send::Skip(reason),
        };
        cases.push(Case::new(id, "B-03", send, Refused(TOKEN_REFUSED)));
    }
    let (unknown_kid, provenance) = forger.with_header(|h| {
        h.insert("kid".to_owned(), json!("phigate-probe-unknown-kid"));
    });
    cases.push(
        Case::new(
            "unknown-kid",
            "O-05",
            ctx.bearer(&unknown_kid),
            Refused(TOKEN_REFUSED),
        )
        .noted(provenance),
    );
    let embedded = forger.by_attacker(ctx.attacker, json!({ "jwk": ctx.attacker.jwk }));
    let jku = forger.by_attacker(
        ctx.attacker,
        json!({ "kid": "phigate-probe-attacker", "jku": "https://127.0.0.1:9/jwks.json" }),
    );
    for (id, reference, forged) in [
        ("embedded-jwk", "B-11", embedded),
        ("jku-header", "B-13", jku),
    ] {
        let send = match forged {
            Ok(forged) => ctx.bearer(&forged),
            Err(err) => Send::Skip(err.to_string()),
        };
        cases.push(Case::new(id, reference, send, Refused(TOKEN_REFUSED)));
    }
    let (tampered, _) = forger.with_claims(|c| {
        c.insert("sub".to_owned(), json!("phigate-probe-tampered"));
    });
    let tampered = format!(
        "{}.{}",
        tampered.rsplit_once('.').map_or("", |(head, _)| head),
        token.signature
    );
    let signature = URL_SAFE_NO_PAD.decode(&token.signature).unwrap_or_default();
    let flipped = {
        let mut bytes = signature.clone();
        if let Some(byte) = bytes.get_mut(signature.len() / 2) {
            *byte ^= 0x01;
        }
        URL_SAFE_NO_PAD.encode(bytes)
    };
    let zeros = URL_SAFE_NO_PAD.encode(vec![0u8; signature.len().max(64)]);
    let (header_b64, claims_b64) = input.split_once('.').unwrap_or((input, ""));
    cases.extend([
        Case::new(
            "tampered-payload",
            "B-07",
            ctx.bearer(&tampered),
            Refused(TOKEN_REFUSED),
        ),
        Case::new(
            "tampered-signature",
            "B-05",
            ctx.bearer(&format!("{input}.{flipped}")),
            Refused(TOKEN_REFUSED),
        ),
        Case::new(
            "signature-zero",
            "B-05",
            ctx.bearer(&format!("{input}.{zeros}")),
            Refused(TOKEN_REFUSED),
        ),
        Case::new(
            "signature-stripped",
            "B-07",
            ctx.bearer(&format!("{input}.")),
            Refused(TOKEN_REFUSED),
        ),
        Case::new(
            "two-segments",
            "B-07",
            ctx.bearer(input),
            Refused(TOKEN_REFUSED),
        ),
        Case::new(
            "jwe-shape",
            "B-19",
            ctx.bearer(&format!(
                "{header_b64}.{claims_b64}.AAAA.{}.AAAA",
                token.signature
            )),
            Refused(TOKEN_REFUSED),
        ),
        Case::new(
            "b64-padding",
            "B-09",
            ctx.bearer(&format!("{}=", token.text)),
            Refused(TOKEN_REFUSED),
        ),
        Case::new(
            "b64-padding-inside",
            "B-09",
            ctx.bearer(&format!("{header_b64}=.{claims_b64}.{}", token.signature)),
            Refused(TOKEN_REFUSED),
        ),
        Case::new(
            "space-in-segment",
            "B-09",
            ctx.bearer(&{
                let (left, right) = claims_b64.split_at(claims_b64.len() / 2);
                format!("{header_b64}.{left} {right}.{}", token.signature)
            }),
            Refused(TOKEN_REFUSED),
        ),
        Case::new(
            "b64-spare-bits",
            "B-09",
            spare_bits(ctx),
            Refused(TOKEN_REFUSED),
        ),
    ]);
    let header_text = Value::Object(token.header.clone()).to_string();
    let duplicated = format!("{{\"alg\":\"none\",{}", header_text.trim_start_matches('{'));
    let (duplicate, provenance) = forger.with_header_text(&duplicated);
    cases.push(
        Case::new(
            "duplicate-header-member",
            "B-21",
            ctx.bearer(&duplicate),
            Refused(TOKEN_REFUSED),
        )
        .noted(provenance),
    );
    cases.push(Case::new(
        "garbage-token",
        "B-07",
        ctx.bearer("phigate-probe-not-a-jwt"),
        Refused(TOKEN_REFUSED),
    ));
    cases
}

fn claims(ctx: &Context<'_>) -> Vec<Case> {
    let forger = ctx.forger;
    let now = now();
    let issuer = forger
        .token
        .claim_str("iss")
        .unwrap_or("https://issuer.invalid")
        .to_owned();
    let edits: Vec<(&'static str, &'static str, ClaimEdit)> = vec![
        (
            "expired",
            "C-01",
            Box::new(move |c| {
                c.insert("iat".to_owned(), json!(now - 7200));
                c.insert("exp".to_owned(), json!(now - 3600));
            }),
        ),
        (
            "not-yet-valid",
            "C-05",
            Box::new(move |c| {
                c.insert("nbf".to_owned(), json!(now + 3600));
            }),
        ),
        (
            "exp-missing",
            "C-03",
            Box::new(|c| {
                c.remove("exp");
            }),
        ),
        (
            "wrong-audience",
            "C-09",
            Box::new(|c| {
                c.insert("aud".to_owned(), json!("https://phigate-probe.invalid"));
            }),
        ),
        (
            "wrong-issuer",
            "C-07",
            Box::new(|c| {
                c.insert("iss".to_owned(), json!("https://phigate-probe.invalid"));
            }),
        ),
        (
            "issuer-trailing-slash",
            "C-07",
            Box::new(move |c| {
                c.insert("iss".to_owned(), json!(format!("{issuer}/")));
            }),
        ),
    ];
    let mut cases: Vec<Case> = edits
        .into_iter()
        .map(|(id, reference, edit)| {
            let (token, provenance) = forger.with_claims(|c| edit(c));
            Case::new(
                id,
                reference,
                ctx.bearer(&token),
                Expect::Refused(TOKEN_REFUSED),
            )
            .noted(provenance)
        })
        .collect();
    let (dpop_typed, provenance) = forger.with_header(|h| {
        h.insert("typ".to_owned(), json!("dpop+jwt"));
    });
    cases.push(
        Case::new(
            "typ-dpop-proof",
            "C-11",
            ctx.bearer(&dpop_typed),
            Expect::Refused(TOKEN_REFUSED),
        )
        .noted(provenance),
    );
    cases
}

fn paths(ctx: &Context<'_>) -> Vec<Case> {
    let path = ctx.bare_path();
    // Raw heads throughout: a client library may normalise the very trick under test.
    let unauthenticated = |p: String| Send::Raw(ctx.get(&p, None, &[]));
    let raw = unauthenticated;
    let refused = Expect::Refused(PATH_REFUSED);
    vec![
        Case::new(
            "path-double-slash",
            "H-01",
            unauthenticated(format!("/{path}")),
            refused,
        ),
        Case::new(
            "path-inner-double-slash",
            "H-01",
            unauthenticated(ctx.last_slash("//")),
            refused,
        ),
        Case::new(
            "path-dot-dot",
            "H-01",
            unauthenticated(format!("/phigate-probe/..{path}")),
            refused,
        ),
        Case::new(
            "path-encoded-dot-dot",
            "H-01",
            unauthenticated(format!("/phigate-probe/%2e%2e{path}")),
            refused,
        ),
        Case::new(
            "path-encoded-slash",
            "H-03",
            unauthenticated(ctx.last_slash("%2F")),
            refused,
        ),
        Case::new(
            "path-semicolon",
            "H-05",
            unauthenticated(format!("/phigate-probe/..;{path}")),
            refused,
        ),
        Case::new(
            "path-parameter",
            "H-05",
            unauthenticated(format!("{path};probe=1")),
            refused,
        ),
        Case::new("path-backslash", "H-03", raw(ctx.last_slash("\\")), refused),
        Case::new(
            "path-encoded-backslash",
            "H-03",
            unauthenticated(ctx.last_slash("%5C")),
            refused,
        ),
    ]
}

fn methods(ctx: &Context<'_>) -> Vec<Case> {
    let bearer = format!("Bearer {}", ctx.token());
    let refused = Expect::Refused(METHOD_REFUSED);
    let override_header =
        |name: &str| Send::Http(ctx.get(ctx.path, Some(&bearer), &[(name, "DELETE")]));
    let mut trace = ctx.get(ctx.path, Some(&bearer), &[]);
    trace.method = Method::TRACE;
    vec![
        Case::new(
            "method-override-header",
            "I-01",
            override_header("x-http-method-override"),
            refused,
        ),
        Case::new(
            "method-override-x-method",
            "I-01",
            override_header("x-method-override"),
            refused,
        ),
        Case::new(
            "method-override-query",
            "I-01",
            Send::Http(ctx.get(&ctx.query_join("_method=DELETE"), Some(&bearer), &[])),
            refused,
        ),
        Case::new("method-trace", "H-15", Send::Http(trace), refused),
    ]
}

fn transport() -> Vec<Case> {
    vec![
        Case::new(
            "plaintext-on-tls-port",
            "N-01",
            Send::Plaintext,
            Expect::NoHttp,
        ),
        Case::new(
            "ssl3-offered",
            "N-03",
            Send::OldTls(0x0300),
            Expect::NoServerHello,
        ),
        Case::new(
            "tls10-offered",
            "N-03",
            Send::OldTls(0x0301),
            Expect::NoServerHello,
        ),
        Case::new(
            "tls11-offered",
            "N-03",
            Send::OldTls(0x0302),
            Expect::NoServerHello,
        ),
    ]
}

fn hmac_jwk_text(ctx: &Context<'_>) -> Result<String, String> {
    ctx.published
        .as_ref()
        .map(PublishedKey::jwk_text)
        .map_err(Clone::clone)
}

fn hmac_pem(ctx: &Context<'_>) -> Result<String, String> {
    let key = ctx.published.as_ref().map_err(Clone::clone)?;
    key.spki_pem()
        .ok_or_else(|| "the issuer's key type has no PEM form the probe builds".to_owned())
}

/// The valid token with the last signature character changed only in its unused low bits, so
/// it decodes to the same bytes (RFC 4648 §3.5): a strict decoder refuses it.
fn spare_bits(ctx: &Context<'_>) -> Send {
    let token = &ctx.forger.token;
    let decoded_len = URL_SAFE_NO_PAD
        .decode(&token.signature)
        .map_or(0, |b| b.len());
    let unused_bits = (token.signature.len() * 6).saturating_sub(decoded_len * 8);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let Some(last) = token.signature.bytes().last() else {
        return Send::Skip("the token has no signature".to_owned());
    };
    if unused_bits == 0 {
        return Send::Skip("the signature's length leaves no spare bits".to_owned());
    }
    let Some(index) = ALPHABET.iter().position(|c| *c == last) else {
        return Send::Skip("the signature is not base64url".to_owned());
    };
    let changed = ALPHABET.get(index ^ 1).copied().unwrap_or(b'A');
    let mut text = token.text.clone();
    text.pop();
    text.push(char::from(changed));
    ctx.bearer(&text)
}
