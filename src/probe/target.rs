//! The probe's connections to the target: requests through hyper's HTTP/1.1 client (or, with
//! `--http2`, its HTTP/2 client) over tokio-rustls for everything a client library sends
//! faithfully, raw bytes over TLS for what
//! one would fix up (backslashes, repeated spellings), plain TCP for the plaintext case and a
//! hand-built ClientHello for old TLS versions. Every connection is new and short: a refusal
//! on one cannot colour the next case. Nothing here judges an answer.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::ProbeError;
use super::hello::{self, HelloAnswer};
use super::prover::Prover;

/// How long one exchange may take, connection included.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer the probe reads.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// A request to send: method, path and query (below the target's base path), headers, body.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The method.
    pub method: Method,
    /// Path and query, starting with `/`, appended to the target's base path.
    pub path: String,
    /// Header fields in order; repeated names are sent repeated.
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Header fields, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, decoded from chunked framing.
    pub body: Bytes,
}

/// What came back to a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// An HTTP answer.
    Answered(Answer),
    /// No answer: refused, reset, closed or timed out (the reason in fixed words).
    Closed(String),
}

/// The gateway under test.
#[derive(Clone)]
pub struct Target {
    url: Uri,
    host: String,
    port: u16,
    base_path: String,
    tls: Arc<ClientConfig>,
    /// With `--http2`: the configuration offering only `h2`, for requests through the client.
    http2: Option<Arc<ClientConfig>>,
    /// With `--dpop-key`: proves possession on every request carrying the token.
    prover: Option<Arc<Prover>>,
}

/// The TLS material the probe offers: trust anchors and an optional client certificate.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsFiles<'a> {
    /// A CA bundle to trust instead of the web PKI.
    pub ca: Option<&'a Path>,
    /// A client certificate chain for mutual TLS.
    pub cert: Option<&'a Path>,
    /// Its private key.
    pub key: Option<&'a Path>,
}

// === impl Answer ===

impl Answer {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

// === impl Target ===

impl Target {
    /// A target at `url` (`https://host:port[/base]`).
    pub fn new(url: &str, files: TlsFiles<'_>) -> Result<Self, ProbeError> {
        let parsed: Uri = url
            .parse()
            .map_err(|_| ProbeError::Usage(format!("--target {url:?} is not a URL")))?;
        if parsed.scheme_str() != Some("https") {
            return Err(ProbeError::Usage(
                "--target must be an https:// URL (the probe tests a TLS listener)".to_owned(),
            ));
        }
        let host = parsed
            .host()
            .ok_or_else(|| ProbeError::Usage(format!("--target {url:?} has no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = parsed.port_u16().unwrap_or(443);
        let base_path = parsed.path().trim_end_matches('/').to_owned();
        Ok(Self {
            tls: Arc::new(client_config(files)?),
            url: parsed,
            host,
            port,
            base_path,
            http2: None,
            prover: None,
        })
    }

    /// The same target, sending the requests of the HTTP client over HTTP/2 (ALPN `h2`); the
    /// raw requests stay HTTP/1.1, whose framing they test.
    pub fn with_http2(self) -> Self {
        let mut config = ClientConfig::clone(&self.tls);
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self {
            http2: Some(Arc::new(config)),
            ..self
        }
    }

    /// The same target, sending a request that carries the token as `DPoP` with a proof.
    pub fn with_prover(self, prover: Prover) -> Self {
        Self {
            prover: Some(Arc::new(prover)),
            ..self
        }
    }

    /// The prover, with `--dpop-key`.
    pub fn prover(&self) -> Option<&Prover> {
        self.prover.as_deref()
    }

    /// The target URL as given.
    pub fn url(&self) -> String {
        self.url.to_string()
    }

    /// `scheme://host:port` of the target, for comparing absolute links.
    pub fn origin(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }

    /// The `Host` header value.
    fn authority(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }

    async fn tcp(&self) -> std::io::Result<TcpStream> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect();
        let mut last = std::io::Error::other("the target's name resolves to no address");
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(err) => last = err,
            }
        }
        Err(last)
    }

    async fn tls(&self) -> std::io::Result<TlsStream<TcpStream>> {
        self.tls_with(&self.tls).await
    }

    async fn tls_with(&self, config: &Arc<ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from(self.host.clone()).map_err(std::io::Error::other)?;
        let tcp = self.tcp().await?;
        TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await
    }

    /// Checks that the target accepts a TLS connection at all, naming the cause if not.
    pub async fn reachable(&self) -> Result<(), ProbeError> {
        match tokio::time::timeout(EXCHANGE_TIMEOUT, self.tls()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(ProbeError::Unreachable(format!("{}: {err}", self.url()))),
            Err(_) => Err(ProbeError::Unreachable(format!(
                "{}: timed out",
                self.url()
            ))),
        }
    }

    /// Sends `outgoing` through hyper's HTTP/1.1 client on a new TLS connection — with
    /// `--dpop-key`, its token as `DPoP` beside a proof, once more with the server's nonce when
    /// the first try was refused for want of it.
    pub async fn send(&self, outgoing: &Outgoing) -> Reply {
        let Some(prover) = &self.prover else {
            return self.send_as_is(outgoing).await;
        };
        let Some(proven) = prover.prove(outgoing) else {
            return self.send_as_is(outgoing).await;
        };
        let reply = self.send_as_is(&proven).await;
        if let Reply::Answered(answer) = &reply
            && prover.learn(answer)
            && let Some(again) = prover.prove(outgoing)
        {
            return self.send_as_is(&again).await;
        }
        reply
    }

    /// Sends `outgoing` exactly as built, credentials included; a nonce the answer hands out is
    /// kept for later proofs.
    pub async fn send_as_is(&self, outgoing: &Outgoing) -> Reply {
        let reply = self.send_once(outgoing).await;
        if let (Some(prover), Reply::Answered(answer)) = (&self.prover, &reply) {
            prover.learn(answer);
        }
        reply
    }

    async fn send_once(&self, outgoing: &Outgoing) -> Reply {
        match tokio::time::timeout(EXCHANGE_TIMEOUT, self.exchange(outgoing)).await {
            Ok(Ok(answer)) => Reply::Answered(answer),
            Ok(Err(reason)) => Reply::Closed(reason),
            Err(_) => Reply::Closed("no answer within 10 s".to_owned()),
        }
    }

    async fn exchange(&self, outgoing: &Outgoing) -> Result<Answer, String> {
        let path = format!("{}{}", self.base_path, outgoing.path);
        // HTTP/2 carries the authority in the request URI (`:authority`), HTTP/1.1 in `Host`.
        let request = match &self.http2 {
            Some(_) => Request::builder().uri(format!("https://{}{path}", self.authority())),
            None => Request::builder()
                .uri(path)
                .header(http::header::HOST, self.authority()),
        };
        let mut request = request.method(outgoing.method.clone());
        for (name, value) in &outgoing.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(Full::new(Bytes::from(outgoing.body.clone())))
            .map_err(|_| "the request cannot be expressed by an HTTP client".to_owned())?;
        let response = match &self.http2 {
            Some(config) => {
                let stream = self
                    .tls_with(config)
                    .await
                    .map_err(|err| closed_reason(&err))?;
                let (mut sender, connection) = hyper::client::conn::http2::handshake(
                    hyper_util::rt::TokioExecutor::new(),
                    TokioIo::new(stream),
                )
                .await
                .map_err(|_| "the HTTP/2 handshake failed".to_owned())?;
                tokio::spawn(connection);
                sender.send_request(request).await
            }
            None => {
                let stream = self.tls().await.map_err(|err| closed_reason(&err))?;
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|_| "the HTTP/1.1 handshake failed".to_owned())?;
                tokio::spawn(connection);
                sender.send_request(request).await
            }
        }
        .map_err(|_| "the connection closed without an answer".to_owned())?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|_| "the answer's body broke off".to_owned())?
            .to_bytes();
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body,
        })
    }

    /// Writes an HTTP/1.1 request head built from `outgoing` byte for byte (nothing checked or
    /// fixed up; `Host` and `Connection: close` added) on a new TLS connection, and reads the
    /// answer.
    pub async fn send_raw(&self, outgoing: &Outgoing) -> Reply {
        let mut bytes = format!(
            "{} {}{} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n",
            outgoing.method,
            self.base_path,
            outgoing.path,
            self.authority()
        );
        for (name, value) in &outgoing.headers {
            bytes.push_str(&format!("{name}: {value}\r\n"));
        }
        if !outgoing.body.is_empty() {
            bytes.push_str(&format!("content-length: {}\r\n", outgoing.body.len()));
        }
        bytes.push_str("\r\n");
        let mut bytes = bytes.into_bytes();
        bytes.extend_from_slice(&outgoing.body);
        let exchange = async {
            let mut stream = self.tls().await.map_err(|err| closed_reason(&err))?;
            stream
                .write_all(&bytes)
                .await
                .map_err(|err| closed_reason(&err))?;
            let read = read_answer(&mut stream).await;
            parse_answer(&read)
                .map(|(answer, _)| answer)
                .ok_or_else(|| match read.is_empty() {
                    true => "the connection closed without an answer".to_owned(),
                    false => "the answer is not HTTP/1.1".to_owned(),
                })
        };
        match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Reply::Answered(answer),
            Ok(Err(reason)) => Reply::Closed(reason),
            Err(_) => Reply::Closed("no answer within 10 s".to_owned()),
        }
    }

    /// Sends a plaintext HTTP/1.1 request to the TLS port; returns the first bytes answered.
    pub async fn plaintext(&self) -> Result<Vec<u8>, String> {
        let request = format!(
            "GET / HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
            self.authority()
        );
        self.raw_tcp(request.as_bytes()).await
    }

    /// Offers only `version` in a hand-built ClientHello and reads the answer.
    pub async fn old_hello(&self, version: u16) -> Result<HelloAnswer, String> {
        let sni = self.host.parse::<std::net::IpAddr>().is_err();
        let hello = hello::client_hello(version, sni.then_some(self.host.as_str()));
        let answer = self.raw_tcp(&hello).await?;
        Ok(hello::classify(&answer))
    }

    /// Writes `bytes` on plain TCP and reads what comes back until close, 16 KiB or 5 s.
    async fn raw_tcp(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let mut stream = self.tcp().await.map_err(|err| closed_reason(&err))?;
        // A server may close before reading everything: what it said is what matters.
        let _ = stream.write_all(bytes).await;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        let read = async {
            while answer.len() < 16 * 1024 {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
        Ok(answer)
    }
}

/// A TLS client configuration trusting `files.ca` (or the web PKI), offering HTTP/1.1 only.
fn client_config(files: TlsFiles<'_>) -> Result<ClientConfig, ProbeError> {
    let roots = match files.ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in crate::tls::load_certificates(path)
                .map_err(|err| ProbeError::Usage(err.to_string()))?
            {
                roots
                    .add(cert)
                    .map_err(|err| ProbeError::Usage(format!("{}: {err}", path.display())))?;
            }
            roots
        }
        None => rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| ProbeError::Usage(err.to_string()))?
        .with_root_certificates(roots);
    let mut config = match (files.cert, files.key) {
        (Some(cert), Some(key)) => {
            let chain = crate::tls::load_certificates(cert)
                .map_err(|err| ProbeError::Usage(err.to_string()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|err| ProbeError::Usage(format!("{}: {err}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|err| ProbeError::Usage(format!("--cert/--key: {err}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(ProbeError::Usage("--cert and --key go together".to_owned()));
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Why a connection gave no answer, in fixed words.
fn closed_reason(err: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => "connection reset".to_owned(),
        ErrorKind::UnexpectedEof => "the connection closed".to_owned(),
        _ if err.to_string().contains("alert") => "a TLS alert".to_owned(),
        _ => "the connection failed".to_owned(),
    }
}

/// Reads until the answer is complete, the peer closes, or the cap.
async fn read_answer(stream: &mut TlsStream<TcpStream>) -> Vec<u8> {
    let mut read = Vec::new();
    let mut chunk = [0u8; 8192];
    while read.len() < MAX_ANSWER_BYTES {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
        if parse_answer(&read).is_some_and(|(_, complete)| complete) {
            break;
        }
    }
    read
}

/// Parses an HTTP/1.1 answer: `Some((answer, complete))` once its head has arrived.
fn parse_answer(bytes: &[u8]) -> Option<(Answer, bool)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(bytes.get(..end)?);
    let rest = bytes.get(end + 4..)?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()?
        .strip_prefix("HTTP/1.")?
        .get(2..5)?
        .parse()
        .ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let (body, complete) = if value("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        dechunk(rest)
    } else if let Some(length) = value("content-length").and_then(|l| l.parse::<usize>().ok()) {
        (
            rest.get(..length.min(rest.len()))?.to_vec(),
            rest.len() >= length,
        )
    } else {
        (rest.to_vec(), false)
    };
    Some((
        Answer {
            status,
            headers,
            body: body.into(),
        },
        complete,
    ))
}

/// Decodes chunked framing as far as it goes: (body, whether the last chunk arrived).
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size_text = String::from_utf8_lossy(rest.get(..line_end).unwrap_or_default());
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return (body, false);
        };
        if size == 0 {
            return (body, true);
        }
        let Some(chunk) = rest.get(line_end + 2..line_end + 2 + size) else {
            return (body, false);
        };
        body.extend_from_slice(chunk);
        rest = rest.get(line_end + 4 + size..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_answers_parse_with_either_framing() {
        let (answer, complete) =
            parse_answer(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok")
                .unwrap();
        assert_eq!((answer.status, complete), (401, true));
        assert_eq!(answer.header("x-a"), Some("b"));
        let (answer, complete) = parse_answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((&answer.body[..], complete), (&b"abc"[..], true));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_none());
        assert!(parse_answer(b"\x15\x03\x03\x00\x02\x02\x32\r\n\r\n").is_none());
    }
}
