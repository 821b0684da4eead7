//! A Redis server phigate shares state through (revocation lists, DPoP replay, the monitor's
//! blocks and counts): its URL as configured, and the password from `redis_password_file` when
//! the URL carries none, so that the secret can live in a file (a Kubernetes Secret, a
//! credentials directory) rather than in the configuration. `Debug` never shows either. A
//! `rediss://` URL speaks TLS and verifies the server against `redis_ca_file`'s certificates,
//! or the Mozilla roots (webpki-roots, as every other outbound call) without one.

use std::fmt;
use std::sync::Arc;

use redis::IntoConnectionInfo as _;

/// A Redis URL and the password it is used with.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisEndpoint {
    url: String,
    password: Option<Arc<str>>,
    /// PEM certificates a `rediss://` server must chain to.
    ca: Option<Arc<[u8]>>,
}

impl RedisEndpoint {
    /// `url` (`redis://host:port/db`), authenticated with `password` unless it has its own.
    pub fn new(url: impl Into<String>, password: Option<Arc<str>>) -> Self {
        Self {
            url: url.into(),
            password,
            ca: None,
        }
    }

    /// The endpoint verifying a `rediss://` server against `ca` (PEM certificates) alone.
    pub fn with_ca(self, ca: Option<Arc<[u8]>>) -> Self {
        Self { ca, ..self }
    }

    /// Whether the URL speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }

    /// Whether the URL asks the client not to verify the server (`#insecure`, the redis
    /// crate's switch), which phigate never honours.
    pub fn skips_verification(&self) -> bool {
        self.url
            .split_once('#')
            .is_some_and(|(_, fragment)| fragment.eq_ignore_ascii_case("insecure"))
    }

    /// The URL as configured, to name it in problems.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the URL itself holds a password (`redis://user:secret@host`, `redis://:secret@host`).
    pub fn has_inline_password(&self) -> bool {
        let rest = self.url.split_once("://").map_or("", |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or_default();
        authority.rsplit_once('@').is_some_and(|(userinfo, _)| {
            userinfo
                .split_once(':')
                .is_some_and(|(_, pw)| !pw.is_empty())
        })
    }

    /// A client for the server; connecting happens later, on first use.
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        let mut info = self.url.as_str().into_connection_info()?;
        if let Some(password) = &self.password
            && info.redis_settings().password().is_none()
        {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.as_ref());
            info = info.set_redis_settings(settings);
        }
        match &self.ca {
            Some(ca) if self.is_tls() => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.to_vec()),
                },
            ),
            _ => redis::Client::open(info),
        }
    }
}

impl fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A URL may carry a password of its own (`redis://:secret@host`): only the host part.
        let host = self
            .url
            .rsplit_once('@')
            .map_or(self.url.as_str(), |(_, host)| host);
        f.debug_struct("RedisEndpoint")
            .field("host", &host)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca.as_ref().map(|_| "redis_ca_file"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_file_fills_in_only_a_url_without_one() {
        let file_password = Some(Arc::from("from-file"));
        let cases = [
            ("redis://127.0.0.1:6379/0", None, None),
            (
                "redis://127.0.0.1:6379/0",
                file_password.clone(),
                Some("from-file"),
            ),
            ("redis://:own@127.0.0.1:6379/0", file_password, Some("own")),
            ("redis://user:own@127.0.0.1:6379/2", None, Some("own")),
        ];
        for (url, password, expected) in cases {
            let endpoint = RedisEndpoint::new(url, password);
            let client = endpoint.client().unwrap();
            let settings = client.get_connection_info().redis_settings();
            assert_eq!(settings.password(), expected, "{url}");
            let debug = format!("{endpoint:?}");
            assert!(
                !debug.contains("own") && !debug.contains("from-file"),
                "{debug}"
            );
        }
        assert!(RedisEndpoint::new("http://nope", None).client().is_err());
        for (url, inline) in [
            ("redis://127.0.0.1:6379/0", false),
            ("redis://:own@127.0.0.1:6379/0", true),
            ("redis://user:own@127.0.0.1:6379/0", true),
            ("redis://user@127.0.0.1:6379/0", false),
            ("redis://user:@127.0.0.1:6379/0", false),
        ] {
            assert_eq!(
                RedisEndpoint::new(url, None).has_inline_password(),
                inline,
                "{url}"
            );
        }
    }
}
