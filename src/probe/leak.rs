//! The leak check every refused answer goes through: no piece of a token the probe sent, no
//! claim value, no stack trace, no internal address, no software version and no file path in
//! the status line, the headers or the body. Findings name the kind of leak in fixed words and
//! never repeat the secret itself, so a report can be shared.

use std::net::Ipv4Addr;

use super::target::Answer;

/// What must not come back: the tokens sent and the valid token's claim values.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    tokens: Vec<String>,
    claims: Vec<(String, String)>,
}

/// Claim values shorter than this are too common to tell a leak from chance (`u-1`, `123`).
const MIN_CLAIM_LEN: usize = 6;
/// A run of this many characters of a token segment counts as a piece of it.
const PIECE_LEN: usize = 12;

/// Texts that show a stack trace or a crash.
const TRACES: &[&str] = &[
    "panicked at",
    "stack backtrace",
    "RUST_BACKTRACE",
    "Traceback (most recent call last)",
    "Exception in thread",
    "\tat java.",
    "\tat org.",
    "NullPointerException",
    "at Object.<anonymous>",
    "node:internal",
    "System.Exception",
];

/// Texts that name software and its version.
const BANNERS: &[&str] = &[
    "phigate/",
    "hyper/",
    "nginx/",
    "Apache/",
    "Jetty(",
    "Kestrel",
    "Express",
    "Werkzeug/",
    "gunicorn/",
    "Tomcat/",
    "envoy",
    "HAPI FHIR ",
];

/// Texts that look like a path on the server's disk or a source location.
const PATHS: &[&str] = &[
    "/home/",
    "/root/",
    "/usr/",
    "/var/",
    "/tmp/",
    "/etc/",
    "/opt/",
    "/srv/",
    "C:\\",
    ".rs:",
    ".java:",
    ".py\", line",
    ".js:",
    "/src/",
];

/// Headers that exist only to name the software.
const BANNER_HEADERS: &[&str] = &["server", "x-powered-by", "x-aspnet-version", "x-runtime"];

// === impl Secrets ===

impl Secrets {
    /// Secrets for a run: the valid token and its claims' string values (`iss`, `aud` and
    /// `scope` excepted: a challenge may name them, RFC 6750 §3).
    pub fn new(token: &str, claims: &serde_json::Map<String, serde_json::Value>) -> Self {
        let claims = claims
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "iss" | "aud" | "scope" | "scp" | "typ"))
            .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
            .filter(|(_, value)| value.len() >= MIN_CLAIM_LEN)
            .collect();
        Self {
            tokens: vec![token.to_owned()],
            claims,
        }
    }

    /// These secrets and the tokens (or proofs) a case sent.
    pub fn with_tokens(&self, tokens: &[String]) -> Self {
        let mut secrets = self.clone();
        secrets
            .tokens
            .extend(tokens.iter().filter(|t| !t.is_empty()).cloned());
        secrets
    }

    /// Every leak found in `answer`, each in a few fixed words.
    pub fn findings(&self, answer: &Answer) -> Vec<String> {
        let mut text = String::new();
        for (name, value) in &answer.headers {
            text.push_str(&format!("{name}: {value}\n"));
        }
        text.push_str(&String::from_utf8_lossy(&answer.body));
        let mut found = Vec::new();
        if self.tokens.iter().any(|token| has_piece(&text, token)) {
            found.push("a piece of the token".to_owned());
        }
        if text.contains("eyJ") {
            found.push("base64url JSON (`eyJ`)".to_owned());
        }
        for (name, value) in &self.claims {
            if text.contains(value.as_str()) {
                found.push(format!("claim `{name}`"));
            }
        }
        if let Some(trace) = TRACES.iter().find(|t| text.contains(*t)) {
            found.push(format!("a stack trace ({trace:?})"));
        }
        if let Some(banner) = BANNERS.iter().find(|b| text.contains(*b)) {
            found.push(format!("a software name ({banner:?})"));
        }
        for (name, _) in &answer.headers {
            if BANNER_HEADERS.contains(&name.as_str()) {
                found.push(format!("a `{name}` header"));
            }
        }
        if let Some(path) = PATHS.iter().find(|p| text.contains(*p)) {
            found.push(format!("a file path ({path:?})"));
        }
        if let Some(addr) = internal_address(&text) {
            found.push(format!("an internal address ({addr})"));
        }
        found
    }
}

/// True when `text` holds the token or any run of [`PIECE_LEN`] characters of one of its
/// segments (a segment echoed in part, or re-encoded around a changed character).
fn has_piece(text: &str, token: &str) -> bool {
    if text.contains(token) {
        return true;
    }
    token
        .split('.')
        .filter(|segment| segment.len() >= PIECE_LEN)
        .any(|segment| {
            segment
                .as_bytes()
                .windows(PIECE_LEN)
                .step_by(PIECE_LEN / 2)
                .any(|piece| std::str::from_utf8(piece).is_ok_and(|piece| text.contains(piece)))
        })
}

/// The first loopback, private or link-local IPv4 address written in `text`.
fn internal_address(text: &str) -> Option<Ipv4Addr> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|word| word.matches('.').count() == 3)
        .filter_map(|word| word.parse::<Ipv4Addr>().ok())
        .find(|ip| ip.is_loopback() || ip.is_private() || ip.is_link_local())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(headers: &[(&str, &str)], body: &str) -> Answer {
        Answer {
            status: 401,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec().into(),
        }
    }

    #[track_caller]
    fn check(headers: &[(&str, &str)], body: &str, expected: &[&str]) {
        let claims = serde_json::json!({"sub": "alice-0042", "iss": "https://as.test", "jti": "j"});
        let secrets = Secrets::new(
            "aaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbb.cccccccccccccccccccc",
            claims.as_object().unwrap(),
        );
        assert_eq!(secrets.findings(&answer(headers, body)), expected);
    }

    #[test]
    fn fixed_error_bodies_leak_nothing() {
        check(
            &[(
                "www-authenticate",
                "Bearer realm=\"phigate\", error=\"invalid_token\"",
            )],
            r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"login"}]}"#,
            &[],
        );
        check(&[], "issued by https://as.test", &[]);
    }

    #[test]
    fn each_kind_of_leak_is_named_without_the_secret() {
        check(&[], "xxbbbbbbbbbbbbbbxx", &["a piece of the token"]);
        check(&[], "subject alice-0042", &["claim `sub`"]);
        check(
            &[],
            "thread 'main' panicked at src/x.rs:1",
            &["a stack trace (\"panicked at\")", "a file path (\".rs:\")"],
        );
        check(&[("server", "x")], "", &["a `server` header"]);
        check(
            &[],
            "upstream 10.0.3.7:8080 refused",
            &["an internal address (10.0.3.7)"],
        );
        check(&[], "seen from 8.8.8.8", &[]);
    }
}
