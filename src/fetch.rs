//! Fetching a document phigate keeps current from a file or an HTTP(S) URL: the revocation
//! list sources and the client-certificate CRLs both read through here, so both bound a
//! document's size and a call's time the same way, and name their source the same way in
//! metrics and logs. It never decides whether a document is good; its callers parse it.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http::header::{ETAG, IF_NONE_MATCH};
use http_body_util::{BodyExt, Empty, Limited};

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::Connect;

/// What a GET brought back.
#[derive(Debug)]
pub enum Fetched {
    /// RFC 9110 §15.4.5: 304, our copy is current.
    NotModified,
    /// A 200 with its body and entity tag.
    Document {
        /// The `ETag` to send back next time.
        etag: Option<HeaderValue>,
        /// The body, at most the caller's bound.
        body: Bytes,
    },
}

/// GETs `url` within `timeout`, with `If-None-Match` when an `etag` is held; a body past
/// `max_bytes` or any status but 200 and 304 is an error.
pub async fn get<C>(
    client: &Client<C, Empty<Bytes>>,
    url: &http::Uri,
    etag: Option<&HeaderValue>,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Fetched, String>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let call = async {
        let mut request = http::Request::get(url.clone());
        if let Some(tag) = etag {
            request = request.header(IF_NONE_MATCH, tag.clone());
        }
        let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        match response.status().as_u16() {
            304 => Ok(Fetched::NotModified),
            200 => {
                let etag = response.headers().get(ETAG).cloned();
                let body = Limited::new(response.into_body(), max_bytes)
                    .collect()
                    .await
                    .map_err(|_| "body too large or cut short".to_owned())?
                    .to_bytes();
                Ok(Fetched::Document { etag, body })
            }
            status => Err(format!("status {status}")),
        }
    };
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()))
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
