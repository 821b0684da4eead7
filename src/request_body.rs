//! A request body that streams to the upstream unless a decision step must read it: a form
//! body is read to refuse an `access_token` hidden in it, and SMART rules read Bundles,
//! POST `_search` parameters and writes. Reading is bounded, and never happens before the token
//! has been verified (an unauthenticated client cannot make phigate buffer anything).

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::denial::Denial;
use crate::proxy::forward::{BoxError, ProxyBody};

/// The most phigate buffers of a form body.
pub const MAX_FORM_BODY_BYTES: usize = 1024 * 1024;

/// A request body, streaming or already read.
pub enum RequestBody {
    /// Not read yet; forwarded as it arrives.
    Streaming(Incoming),
    /// Read into memory by a decision step.
    Buffered(Bytes),
}

impl RequestBody {
    /// Reads the whole body, up to `limit` bytes (413 beyond), and keeps it for forwarding.
    pub async fn buffer(&mut self, limit: usize) -> Result<&Bytes, Denial> {
        if let Self::Streaming(_) = self {
            let Self::Streaming(incoming) = std::mem::replace(self, Self::Buffered(Bytes::new()))
            else {
                return Err(Denial::BodyTooLarge);
            };
            let bytes = Limited::new(incoming, limit)
                .collect()
                .await
                .map_err(|_| Denial::BodyTooLarge)?
                .to_bytes();
            *self = Self::Buffered(bytes);
        }
        match self {
            Self::Buffered(bytes) => Ok(bytes),
            Self::Streaming(_) => Err(Denial::BodyTooLarge),
        }
    }

    /// The body for the upstream request.
    pub fn into_proxy_body(self) -> ProxyBody {
        match self {
            Self::Streaming(incoming) => incoming.map_err(BoxError::from).boxed_unsync(),
            Self::Buffered(bytes) => Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync(),
        }
    }
}

/// Whether the request carries an `application/x-www-form-urlencoded` body.
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}
