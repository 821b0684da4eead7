//! HTTP clients for the tests: a TLS client (HTTP/1.1 or HTTP/2, optional client certificate)
//! trusting the test CA, a raw TLS socket for bytes no well-behaved client would send, and a
//! plain HTTP GET for the admin listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use phigate::tls::dev_ca::{DevCa, IssuedCert};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A collected response.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The client side TLS configuration for the test CA.
pub fn tls_config(ca: &DevCa, cert: Option<&IssuedCert>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match cert {
        Some(cert) => builder
            .with_client_auth_cert(vec![cert.cert_der.clone()], cert.key_der.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    }
}

/// A TLS session to `addr` as `localhost`, trusting `ca`, presenting `cert` when given and
/// offering `alpn`: the handshake's outcome, for tests that look at the session itself.
pub async fn tls_connect(
    addr: SocketAddr,
    ca: &DevCa,
    cert: Option<&IssuedCert>,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut config = tls_config(ca, cert);
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

pub struct TestClient {
    base: String,
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
}

impl TestClient {
    pub fn new(addr: SocketAddr, ca: &DevCa, cert: Option<&IssuedCert>, h2: bool) -> Self {
        Self::from_source(addr, ca, cert, h2, None)
    }

    /// A client whose connections leave from `source` (any 127.0.0.0/8 address works on
    /// loopback), so tests can stand for clients in different places.
    pub fn from_source(
        addr: SocketAddr,
        ca: &DevCa,
        cert: Option<&IssuedCert>,
        h2: bool,
        source: Option<std::net::IpAddr>,
    ) -> Self {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_local_address(source);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(ca, cert))
            .https_only();
        let connector = if h2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        let mut client = Client::builder(TokioExecutor::new());
        client.http2_only(h2);
        Self {
            base: format!("https://localhost:{}", addr.port()),
            client: client.build(connector),
        }
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> TestResponse {
        self.send(
            Method::GET,
            path,
            &[("authorization", &format!("Bearer {token}"))],
            Bytes::new(),
        )
        .await
    }

    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<TestResponse, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (head, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(TestResponse {
            status: head.status,
            headers: head.headers,
            body,
        })
    }

    /// POSTs a FHIR JSON document with a bearer token.
    pub async fn post_fhir(
        &self,
        path: &str,
        token: &str,
        document: &serde_json::Value,
    ) -> TestResponse {
        let bearer = format!("Bearer {token}");
        self.send(
            Method::POST,
            path,
            &[
                ("authorization", &bearer),
                ("content-type", "application/fhir+json"),
            ],
            Bytes::from(document.to_string()),
        )
        .await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> TestResponse {
        self.try_send(method, path, headers, body).await.unwrap()
    }
}

/// Sends raw bytes over TLS and returns everything read until the server closes or goes quiet.
pub async fn raw_tls(addr: SocketAddr, ca: &DevCa, bytes: &[u8]) -> String {
    let mut config = tls_config(ca, None);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    // A server may answer and close before it has read everything (a refusal of broken
    // framing): what it answered is still there to read.
    let _ = tls.write_all(bytes).await;
    read_until_quiet(&mut tls).await
}

/// Reads until EOF, error, or two quiet seconds.
pub async fn read_until_quiet<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A plain HTTP/1.1 GET: (status, body).
pub async fn plain_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = plain_get_with(addr, path, &[]).await;
    (status, body)
}

/// A plain HTTP/1.1 GET with extra request headers: (status, response headers, body).
pub async fn plain_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, HeaderMap::new(), String::new());
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = Request::get(path).header("host", "localhost");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::new())).unwrap();
    let Ok(response) = sender.send_request(request).await else {
        return (0, HeaderMap::new(), String::new());
    };
    let status = response.status().as_u16();
    let (head, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        status,
        head.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}
