//! Fetching a document phigate keeps current from a file or an HTTP(S) URL: the revocation
//! list sources, the client-certificate CRLs and (through `token::fetch`) the issuers' JWKS and
//! metadata all GET through here, so all follow no redirect, revalidate with `ETag`, and bound
//! a document's size and a call's time the same way; file and URL sources are named the same
//! way in metrics and logs. It never decides whether a document is good; its callers parse it.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Empty, Limited};

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::Connect;

/// What a GET brought back, with the answer's head for callers that read more of it (an
/// issuer document's `Cache-Control` and `Content-Type`).
#[derive(Debug)]
pub enum Fetched {
    /// RFC 9110 §15.4.5: 304, our copy is current.
    NotModified {
        /// The answer's headers.
        head: HeaderMap,
    },
    /// A 200 with its body and entity tag.
    Document {
        /// The `ETag` to send back next time.
        etag: Option<HeaderValue>,
        /// The body, at most the caller's bound.
        body: Bytes,
        /// The answer's headers.
        head: HeaderMap,
    },
}

/// Why a GET brought nothing; only operators see it, in logs, metrics' sources and `explain`.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Connection, TLS or protocol failure, with its causes.
    #[error("request failed: {0}")]
    Transport(String),
    /// No whole answer within the deadline.
    #[error("request timed out")]
    TimedOut,
    /// A status other than 200 and 304 (redirects are not followed).
    #[error("endpoint answered {0}")]
    Status(u16),
    /// The body was over the caller's bound, or cut short.
    #[error("body over the size cap or cut short")]
    Body,
}

/// GETs `url` within `timeout` (body included), with `If-None-Match` when an `etag` is held and
/// `Accept` when given; a body past `max_bytes` or any status but 200 and 304 is a failure.
pub async fn get<C>(
    client: &Client<C, Empty<Bytes>>,
    url: &http::Uri,
    (etag, accept): (Option<&HeaderValue>, Option<&'static str>),
    max_bytes: usize,
    timeout: Duration,
) -> Result<Fetched, Failure>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let call = async {
        let mut request = http::Request::get(url.clone());
        if let Some(tag) = etag {
            request = request.header(IF_NONE_MATCH, tag.clone());
        }
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        let request = request
            .body(Empty::new())
            .map_err(|err| Failure::Transport(err.to_string()))?;
        let response = client
            .request(request)
            .await
            .map_err(|err| Failure::Transport(error_chain(&err)))?;
        match response.status().as_u16() {
            304 => Ok(Fetched::NotModified {
                head: response.headers().clone(),
            }),
            200 => {
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, max_bytes)
                    .collect()
                    .await
                    .map_err(|_| Failure::Body)?
                    .to_bytes();
                Ok(Fetched::Document {
                    etag: parts.headers.get(ETAG).cloned(),
                    body,
                    head: parts.headers,
                })
            }
            status => Err(Failure::Status(status)),
        }
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or(Err(Failure::TimedOut))
}

/// An error and its causes, joined: hyper's own message ("client error (Connect)") names no
/// cause, and an operator needs the refused connection or the failed certificate check.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The file's bytes, unless it is larger than `max_bytes`.
pub async fn read_bounded(path: &Path, max_bytes: usize) -> std::io::Result<Vec<u8>> {
    let too_large = || std::io::Error::other(format!("larger than {max_bytes} bytes"));
    if tokio::fs::metadata(path).await?.len() > max_bytes as u64 {
        return Err(too_large());
    }
    let bytes = tokio::fs::read(path).await?;
    // It may have grown between the two looks.
    if bytes.len() > max_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

/// A file source as metrics name it: `file:` and the file name, never the folder.
pub fn file_label(path: &Path) -> String {
    format!(
        "file:{}",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    )
}

/// A URL source as metrics name it: host and path, never credentials or a query.
pub fn url_label(url: &http::Uri) -> String {
    format!(
        "http:{}{}",
        url.authority().map_or("", |a| a.host()),
        url.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_no_folder_credentials_or_query() {
        assert_eq!(file_label(Path::new("/etc/phigate/ca.crl")), "file:ca.crl");
        let url: http::Uri = "https://user:pw@pki.test:8443/ca.crl?token=x"
            .parse()
            .unwrap();
        assert_eq!(url_label(&url), "http:pki.test/ca.crl");
    }
}
