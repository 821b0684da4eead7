//! One conditional GET of a JSON document an issuer publishes — its JWKS, its RFC 8414 / OIDC
//! metadata — shared so both are fetched by the same rules: `crate::fetch`'s (no redirect
//! followed, a status other than 200 or 304 refused, `If-None-Match` when a validator is held,
//! a size cap, a deadline), plus what issuer documents add: the `Cache-Control` lifetime
//! clamped and a JSON content type. It never decides what the bytes mean: the caller parses and
//! keeps the document.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http_body_util::Empty;

use crate::fetch::{Failure, Fetched};
use crate::tls::HttpsClient;

/// Upper bound on how long a Cache-Control header may keep a document without a refetch.
const MAX_CACHE_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// Lower bound on how often a Cache-Control header may make us refetch.
const MIN_CACHE_LIFETIME: Duration = Duration::from_secs(60);

/// The HTTP client used for issuer documents.
pub type DocumentClient = HttpsClient<Empty<Bytes>>;

/// Why a fetch failed; only operators see it, in logs and `explain`.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No answer, or not a 200 or 304 (`crate::fetch`'s rules, shared with every source).
    #[error(transparent)]
    Get(#[from] Failure),
    /// Not a JSON content type.
    #[error("content type is not JSON")]
    ContentType,
    /// Not JSON, or not the document expected.
    #[error("document refused: {0}")]
    Document(&'static str),
    /// The issuer's metadata, which names the JWKS URL, is unavailable or was refused.
    #[error("issuer metadata unavailable: {0}")]
    Metadata(String),
}

/// What to fetch and how.
pub struct Conditional<'a> {
    /// The document's URL.
    pub uri: &'a http::Uri,
    /// The `Accept` header.
    pub accept: &'static str,
    /// Media types besides `application/json` the document may come as.
    pub also_json: &'static str,
    /// The validator held, sent as `If-None-Match`.
    pub etag: Option<HeaderValue>,
    /// The lifetime without a `Cache-Control` header.
    pub default_lifetime: Duration,
    /// A larger body is refused.
    pub max_bytes: usize,
    /// Bound on the whole exchange, body included.
    pub timeout: Duration,
}

/// What a fetch brought.
pub enum Answer {
    /// A new document, with its cache lifetime and validator.
    Document {
        body: Bytes,
        lifetime: Duration,
        etag: Option<HeaderValue>,
    },
    /// 304 Not Modified: what is held is current for `lifetime` more.
    Unchanged { lifetime: Duration },
}

/// GETs `wanted.uri`, conditionally on `wanted.etag`, within `wanted.timeout`; a document
/// must come as JSON.
pub async fn get(client: &DocumentClient, wanted: Conditional<'_>) -> Result<Answer, FetchError> {
    let fetched = crate::fetch::get(
        client,
        wanted.uri,
        (wanted.etag.as_ref(), Some(wanted.accept)),
        wanted.max_bytes,
        wanted.timeout,
    )
    .await?;
    let lifetime =
        |head: &http::HeaderMap| cache_lifetime(head.get(CACHE_CONTROL), wanted.default_lifetime);
    match fetched {
        Fetched::NotModified { head } => Ok(Answer::Unchanged {
            lifetime: lifetime(&head),
        }),
        Fetched::Document { etag, body, head } => {
            if !is_json(head.get(CONTENT_TYPE), wanted.also_json) {
                return Err(FetchError::ContentType);
            }
            Ok(Answer::Document {
                body,
                lifetime: lifetime(&head),
                etag,
            })
        }
    }
}

/// When the next scheduled refresh is due after `failures` failed attempts in a row, or
/// `None` to follow the document's own lifetime.
pub fn retry_delay(failures: u32) -> Option<Duration> {
    // Capped exponential backoff with jitter so replicas do not fetch in lockstep.
    (failures > 0).then(|| {
        let base = Duration::from_secs(1u64 << failures.min(6));
        // Under a second: one random byte in 256ths of a second (`* 4` ms reached 1.02 s).
        let jitter =
            Duration::from_millis(u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 1000 / 256);
        base + jitter
    })
}

/// RFC 9111 `max-age`, clamped to [1 min, 1 h] (a configured default below a minute lowers the
/// floor); `no-store`/`no-cache` mean the floor; no header means `default`.
fn cache_lifetime(header: Option<&HeaderValue>, default: Duration) -> Duration {
    let floor = MIN_CACHE_LIFETIME.min(default);
    let Some(value) = header.and_then(|v| v.to_str().ok()) else {
        return default;
    };
    let mut lifetime = None;
    for directive in value.split(',').map(str::trim) {
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache")
        {
            return floor;
        }
        if let Some(seconds) = directive
            .strip_prefix("max-age=")
            .and_then(|s| s.parse::<u64>().ok())
        {
            lifetime = Some(Duration::from_secs(seconds));
        }
    }
    lifetime.unwrap_or(default).clamp(floor, MAX_CACHE_LIFETIME)
}

fn is_json(content_type: Option<&HeaderValue>, also: &str) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json") || essence.eq_ignore_ascii_case(also)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let value = |s: &'static str| HeaderValue::from_static(s);
        let jwks = "application/jwk-set+json";
        assert!(is_json(Some(&value("application/json")), jwks));
        assert!(is_json(
            Some(&value("application/jwk-set+json; charset=utf-8")),
            jwks
        ));
        assert!(!is_json(
            Some(&value("application/jwk-set+json")),
            "application/json"
        ));
        assert!(!is_json(Some(&value("text/html")), jwks));
        assert!(!is_json(None, jwks));
    }

    #[test]
    fn cache_lifetime_follows_cache_control_within_bounds() {
        let ten_minutes = Duration::from_secs(600);
        let check = |header: Option<&'static str>, default: Duration, expected: u64| {
            let value = header.map(HeaderValue::from_static);
            assert_eq!(
                cache_lifetime(value.as_ref(), default),
                Duration::from_secs(expected),
                "{header:?}"
            );
        };
        check(None, ten_minutes, 600);
        check(Some("max-age=300"), ten_minutes, 300);
        check(Some("public, max-age=120"), ten_minutes, 120);
        check(Some("max-age=0"), ten_minutes, 60);
        check(Some("max-age=31536000"), ten_minutes, 3600);
        check(Some("no-store"), ten_minutes, 60);
        check(Some("no-cache, max-age=900"), ten_minutes, 60);
        check(Some("private"), ten_minutes, 600);
        check(Some("max-age=0"), Duration::from_secs(1), 1);
    }

    #[test]
    fn retries_back_off_and_success_follows_the_document() {
        assert_eq!(retry_delay(0), None);
        let first = retry_delay(1).unwrap();
        assert!(first >= Duration::from_secs(2) && first < Duration::from_secs(3));
        let capped = retry_delay(40).unwrap();
        assert!(capped >= Duration::from_secs(64) && capped < Duration::from_secs(66));
    }
}
