//! A document served over HTTP with ETag, as revocation lists and CRLs are published: the test
//! replaces the document (a new version, a new ETag) or withdraws it (503), and counts the 304
//! answers that showed phigate revalidating.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;

/// The document now served: its version (the ETag) and bytes, or none (503).
type Current = Arc<Mutex<(u64, Option<Bytes>)>>;

/// A loopback HTTP server for one document at any path.
pub struct DocumentServer {
    pub addr: SocketAddr,
    body: Current,
    not_modified: Arc<Mutex<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl DocumentServer {
    pub async fn start(initial: impl Into<Bytes>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body: Current = Arc::new(Mutex::new((1, Some(initial.into()))));
        let not_modified = Arc::new(Mutex::new(0));
        let (served, counted) = (Arc::clone(&body), Arc::clone(&not_modified));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (served, counted) = (Arc::clone(&served), Arc::clone(&counted));
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let response = answer(&served, &counted, &request);
                    async move { Ok::<_, Infallible>(response) }
                });
                crate::support::serve_connection(stream, service);
            }
        });
        Self {
            addr,
            body,
            not_modified,
            task,
        }
    }

    /// `http://…/name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    /// Serves `bytes` from now on, under a new ETag.
    pub fn publish(&self, bytes: impl Into<Bytes>) {
        let mut body = self.body.lock().unwrap();
        *body = (body.0 + 1, Some(bytes.into()));
    }

    /// Answers 503 from now on.
    pub fn withdraw(&self) {
        let mut body = self.body.lock().unwrap();
        *body = (body.0 + 1, None);
    }

    /// How many requests were answered 304.
    pub fn not_modified(&self) -> u64 {
        *self.not_modified.lock().unwrap()
    }
}

impl Drop for DocumentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(
    served: &Current,
    counted: &Mutex<u64>,
    request: &http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let (version, body) = served.lock().unwrap().clone();
    let Some(body) = body else {
        return http::Response::builder()
            .status(503)
            .body(Full::new(Bytes::new()))
            .unwrap();
    };
    let etag = format!("\"v{version}\"");
    let unchanged = request
        .headers()
        .get("if-none-match")
        .is_some_and(|v| v == etag.as_str());
    if unchanged {
        *counted.lock().unwrap() += 1;
    }
    http::Response::builder()
        .status(if unchanged { 304 } else { 200 })
        .header("etag", etag)
        .body(Full::new(if unchanged { Bytes::new() } else { body }))
        .unwrap()
}
