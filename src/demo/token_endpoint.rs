//! The development issuer's token endpoint: the OAuth 2.0 client credentials grant (RFC 6749
//! §4.4), so a person trying an example against `phigate demo` can get a token shaped like the
//! one their own authorization server would issue — `system/` scopes, a launch patient, a token
//! bound to a DPoP key or a client certificate — and send it through a gateway.
//!
//! It authenticates nobody and signs what it is asked for, within a fixed lifetime; that is why it
//! lives in `demo/` and only ever listens on loopback. A real authorization server takes the
//! binding from the client's own proof (a DPoP header, RFC 9449 §5; the mutual-TLS connection, RFC
//! 8705 §3); this one takes the thumbprint the request names (`dpop_jkt`, the parameter RFC 9449
//! §10 defines for the authorization request, and `cnf_x5t_s256`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::policy::fhir::search;

/// The path the token endpoint answers at.
pub const TOKEN_PATH: &str = "/token";

/// Longest request body read; a client credentials request is a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// What every token from the endpoint carries besides what the request asks for.
#[derive(Debug, Clone)]
pub struct GrantSettings {
    /// The `aud` of a token whose request names no `resource`.
    pub audience: String,
    /// How long each token lives (`exp - iat`, and the response's `expires_in`).
    pub lifetime: Duration,
}

/// A well-formed client credentials request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    client_id: String,
    scope: String,
    patient: Option<String>,
    resource: Option<String>,
    binding: Option<Binding>,
}

/// The key or certificate a token is bound to: the `cnf` claim it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Binding {
    /// RFC 9449 §6.1: `cnf.jkt`, the SHA-256 thumbprint of the client's DPoP key.
    Dpop(String),
    /// RFC 8705 §3.1: `cnf.x5t#S256`, the SHA-256 thumbprint of the client's certificate.
    Certificate(String),
}

/// An error response (RFC 6749 §5.2): the code, and a description naming only the parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantError {
    /// The `error` member.
    pub code: &'static str,
    /// The `error_description` member.
    pub description: &'static str,
}

impl GrantError {
    pub(super) const fn invalid_request(description: &'static str) -> Self {
        Self {
            code: "invalid_request",
            description,
        }
    }

    /// The JSON body of the 400 answer.
    pub fn body(&self) -> Value {
        json!({"error": self.code, "error_description": self.description})
    }
}

impl TokenRequest {
    /// Parses a form-encoded request body (RFC 6749 §4.4.2). Unknown parameters are ignored
    /// (§3.1), a repeated one is refused (§3.1), and so is any value that would make a claim
    /// other than the one named.
    pub fn parse(form: &str) -> Result<Self, GrantError> {
        let params = search::parse(form);
        let one = |name: &str| -> Result<Option<&str>, GrantError> {
            let mut values = params
                .iter()
                .filter(|p| p.name == name)
                .map(|p| p.value.as_str());
            let first = values.next();
            match values.next() {
                Some(_) => Err(GrantError::invalid_request(
                    "a parameter is sent more than once",
                )),
                None => Ok(first),
            }
        };
        match one("grant_type")? {
            None => return Err(GrantError::invalid_request("grant_type is missing")),
            Some("client_credentials") => {}
            Some(_) => {
                return Err(GrantError {
                    code: "unsupported_grant_type",
                    description: "only client_credentials is served here",
                });
            }
        }
        let client_id = one("client_id")?
            .ok_or(GrantError::invalid_request("client_id is missing"))?
            .to_owned();
        if !is_client_id(&client_id) {
            return Err(GrantError::invalid_request(
                "client_id must be 1 to 128 letters, digits, '.', '_' or '-'",
            ));
        }
        let scope = one("scope")?.unwrap_or_default();
        if !is_scope(scope) {
            return Err(GrantError {
                code: "invalid_scope",
                description: "scope must be one or more scope tokens separated by single spaces",
            });
        }
        let patient = one("patient")?.map(str::to_owned);
        // The gateway's own rule for a launch patient: never mint one it would refuse.
        if patient
            .as_deref()
            .is_some_and(|id| !crate::token::is_fhir_id(id))
        {
            return Err(GrantError::invalid_request(
                "patient must be a FHIR id: 1 to 64 letters, digits, '-' or '.'",
            ));
        }
        let resource = one("resource")?.map(str::to_owned);
        if resource.as_deref().is_some_and(|uri| !is_resource(uri)) {
            // RFC 8707 §2: an absolute URI without a fragment.
            return Err(GrantError {
                code: "invalid_target",
                description: "resource must be an absolute https URI without a fragment",
            });
        }
        let binding = match (one("dpop_jkt")?, one("cnf_x5t_s256")?) {
            (Some(_), Some(_)) => {
                return Err(GrantError::invalid_request(
                    "a token is bound to a DPoP key or to a certificate, not both",
                ));
            }
            (Some(jkt), None) if is_sha256_thumbprint(jkt) => Some(Binding::Dpop(jkt.to_owned())),
            (None, Some(x5t)) if is_sha256_thumbprint(x5t) => {
                Some(Binding::Certificate(x5t.to_owned()))
            }
            (None, None) => None,
            _ => {
                return Err(GrantError::invalid_request(
                    "a thumbprint is 43 base64url characters (SHA-256, RFC 7638 / RFC 8705)",
                ));
            }
        };
        Ok(Self {
            client_id,
            scope: scope.to_owned(),
            patient,
            resource,
            binding,
        })
    }

    /// The access token's claims, issued at `now` (seconds since the epoch) by `issuer`.
    pub fn claims(&self, issuer: &str, settings: &GrantSettings, now: u64) -> Value {
        let mut claims = json!({
            "iss": issuer,
            // A client acting for itself is its own subject (RFC 9068 §2.2).
            "sub": self.client_id,
            "client_id": self.client_id,
            "aud": self.resource.as_deref().unwrap_or(&settings.audience),
            "scope": self.scope,
            "iat": now,
            "exp": now.saturating_add(settings.lifetime.as_secs()),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        if let Some(patient) = &self.patient {
            claims["patient"] = json!(patient);
        }
        match &self.binding {
            Some(Binding::Dpop(jkt)) => claims["cnf"] = json!({"jkt": jkt}),
            Some(Binding::Certificate(x5t)) => claims["cnf"] = json!({"x5t#S256": x5t}),
            None => {}
        }
        claims
    }

    /// The successful response (RFC 6749 §5.1; `token_type` DPoP per RFC 9449 §5, `patient` as
    /// SMART App Launch puts the launch context beside the token).
    pub fn response(&self, access_token: &str, settings: &GrantSettings) -> Value {
        let token_type = match self.binding {
            Some(Binding::Dpop(_)) => "DPoP",
            Some(Binding::Certificate(_)) | None => "Bearer",
        };
        let mut response = json!({
            "access_token": access_token,
            "token_type": token_type,
            "expires_in": settings.lifetime.as_secs(),
            "scope": self.scope,
        });
        if let Some(patient) = &self.patient {
            response["patient"] = json!(patient);
        }
        response
    }
}

fn is_client_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// RFC 6749 §3.3: `scope-token *( SP scope-token )`, each token `1*NQCHAR`.
fn is_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope.split(' ').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
        })
}

fn is_resource(uri: &str) -> bool {
    uri.strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        && !uri.contains('#')
        && uri.bytes().all(|b| b.is_ascii_graphic())
}

/// A SHA-256 thumbprint: the canonical unpadded base64url of 32 bytes, read by the rule every
/// digest phigate reads follows.
fn is_sha256_thumbprint(text: &str) -> bool {
    crate::token::TokenDigest::from_base64url(text).is_some()
}

#[cfg(test)]
mod tests;
