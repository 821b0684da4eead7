//! Real parts for the integration tests: an rcgen CA, the development issuer serving a JWKS
//! over HTTP, a recording FHIR upstream, and the gateway on `127.0.0.1:0`, configured through a
//! real YAML file. Every negative test asserts the status, the challenge, that nothing reached
//! the upstream, and that nothing secret leaked.

pub mod client;
pub mod documents;
pub mod dpop;
pub mod fhir_server;
pub mod process;
pub mod raw_upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use phigate::config::Config;
use phigate::demo::{DevIssuer, SyntheticFhir};
use phigate::proxy::Gateway;
use phigate::tls::dev_ca::{DevCa, IssuedCert};
use serde_json::Value;

pub use self::client::{TestClient, TestResponse};

pub const ISSUER: &str = "https://as-a.test";
pub const AUDIENCE: &str = "https://fhir.test";
/// The URL clients are told to use; DPoP proofs name it in `htu`.
pub const PUBLIC_BASE: &str = "https://gw.test:8443";

/// The policy most tests run under.
pub const POLICY: &str = r#"rules:
  - name: capability-statement
    methods: [GET]
    path: /metadata
    public: true
  - name: read-patient
    methods: [GET]
    path: /Patient/{id}
    scopes: [patient/Patient.r, user/Patient.r, system/Patient.r]
  - name: search-observations
    methods: [GET]
    path: /Observation
    scopes: [system/Observation.rs, user/Observation.rs]
  - name: post-observation
    methods: [POST]
    path: /Observation
    scopes: [user/Observation.c, user/Observation.rs]
  - name: read-observation
    methods: [GET]
    path: /Observation/{id}
    scopes: [user/Observation.r]
"#;

/// How to build a harness; defaults give a TLS gateway without client certificates.
pub struct Options {
    pub client_auth: Option<&'static str>,
    pub policy: String,
    pub upstream_timeout: &'static str,
    pub forward_token: bool,
    pub tokens: &'static str,
    pub insecure_plaintext: bool,
    pub algorithms: &'static str,
    pub wait_ready: bool,
    /// Put the upstream behind TLS; `Some(true)` trusts it through `upstream.ca_file`,
    /// `Some(false)` leaves only the web PKI roots (so the certificate must be refused).
    pub upstream_tls: Option<bool>,
    /// Serve the JWKS over TLS, trusted through `jwks_ca_file`.
    pub jwks_tls: bool,
    /// A `revocation:` section, verbatim (paths relative to the harness folder).
    pub revocation: String,
    /// Files to write into the harness folder before the gateway starts.
    pub files: Vec<(&'static str, String)>,
    /// Extra keys of the issuer entry, verbatim and indented (e.g. an `introspection:` block).
    pub issuer_extra: String,
    /// Extra top-level sections, verbatim (e.g. `dpop:`).
    pub extra: String,
    /// Extra keys of the `listen:` section, verbatim and indented (e.g. a `limits:` block).
    pub listen_extra: String,
    /// Put the real FHIR server (Medplum) upstream instead of the synthetic one.
    pub real_fhir: bool,
    /// Put this upstream (`http://…`) in front instead of the synthetic one (which still runs,
    /// and must stay untouched).
    pub upstream_url: Option<String>,
    /// Extra keys of the `upstream:` section, verbatim and indented (e.g. `body_timeout`).
    pub upstream_extra: String,
    /// `listen.shutdown_grace`: none by default, so a test's shutdown is not held up.
    pub shutdown_grace: &'static str,
    /// Extra keys of the `listen.tls:` section, verbatim and indented (e.g. `client_crls:`).
    pub tls_extra: String,
    /// The CA to use, when the test needs it before the gateway starts (to sign a CRL file).
    pub ca: Option<DevCa>,
    /// Name the issuer by its identifier alone (no `jwks_uri`), its metadata served by the
    /// development issuer (over TLS when `jwks_tls`).
    pub discovered: Option<Discovered>,
}

/// An issuer configured by identifier, and the metadata document it serves.
pub struct Discovered {
    /// Appended to the issuer's base URL to make its identifier (`""` or `/tenant/a`).
    pub path: &'static str,
    /// Serve OIDC discovery (appended) instead of RFC 8414 (inserted before the path).
    pub oidc: bool,
    /// The `issuer` the document claims, when it is not the identifier (a mismatch).
    pub claimed_issuer: Option<String>,
    /// The `introspection_endpoint` the document names.
    pub introspection_endpoint: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            client_auth: None,
            policy: POLICY.to_owned(),
            upstream_timeout: "5s",
            forward_token: false,
            tokens: "  clock_skew: 30s\n  max_lifetime: 15m\n",
            insecure_plaintext: false,
            algorithms: "[ES256, ES384, RS256, PS256, EdDSA]",
            wait_ready: true,
            upstream_tls: None,
            jwks_tls: false,
            revocation: String::new(),
            files: Vec::new(),
            issuer_extra: String::new(),
            extra: String::new(),
            listen_extra: String::new(),
            real_fhir: false,
            upstream_url: None,
            upstream_extra: String::new(),
            shutdown_grace: "0s",
            tls_extra: String::new(),
            ca: None,
            discovered: None,
        }
    }
}

/// Serves one accepted connection of a test's HTTP server (HTTP/1.1, or HTTP/2 with prior
/// knowledge) with `service` on its own task; a connection error only ends that connection.
pub fn serve_connection<S>(stream: tokio::net::TcpStream, service: S)
where
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<http_body_util::Full<bytes::Bytes>>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    tokio::spawn(async move {
        let builder =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        let _ = builder
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    });
}

/// Everything one test needs, started and wired.
pub struct Harness {
    pub issuer: DevIssuer,
    pub upstream: SyntheticFhir,
    /// The real FHIR server, when [`Options::real_fhir`] put it upstream.
    pub fhir: Option<fhir_server::FhirServer>,
    pub gateway: Option<Gateway>,
    pub ca: DevCa,
    pub dir: tempfile::TempDir,
    pub config_file: PathBuf,
    /// The configured issuer identifier, which minted tokens carry as `iss`.
    pub issuer_id: String,
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl Harness {
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Self {
        let issuer = DevIssuer::start(loopback(), ISSUER).await.unwrap();
        Self::with_issuer(options, issuer).await
    }

    /// Like [`Harness::with`], with an issuer the test prepared (e.g. failing before start).
    pub async fn with_issuer(mut options: Options, issuer: DevIssuer) -> Self {
        let upstream = SyntheticFhir::start(loopback()).await.unwrap();
        let fhir = if options.real_fhir {
            Some(fhir_server::FhirServer::start().await)
        } else {
            None
        };
        let dir = tempfile::tempdir().unwrap();
        let ca = options
            .ca
            .take()
            .unwrap_or_else(|| DevCa::new("phigate test CA").unwrap());
        let upstream_url = match (&options.upstream_url, options.upstream_tls) {
            (Some(url), _) => url.clone(),
            (None, Some(_)) => format!(
                "https://localhost:{}/fhir",
                tls_front(&ca, upstream.local_addr()).await.port()
            ),
            (None, None) => fhir.as_ref().map_or_else(|| upstream.url(), |f| f.url()),
        };
        let issuer_base = if options.jwks_tls {
            let front = tls_front(&ca, issuer.local_addr()).await;
            format!("https://localhost:{}", front.port())
        } else {
            issuer.base_url()
        };
        let jwks_uri = format!("{issuer_base}{}", phigate::demo::issuer::JWKS_PATH);
        let issuer_id = match &options.discovered {
            Some(discovered) => serve_metadata(&issuer, &issuer_base, discovered),
            None => ISSUER.to_owned(),
        };
        let endpoints = Endpoints {
            upstream: upstream_url,
            jwks: options.discovered.is_none().then_some(jwks_uri),
            issuer: issuer_id.clone(),
        };
        let config_file = write_config(&dir, &ca, &endpoints, &options);
        let config = Config::load(&config_file).unwrap_or_else(|err| panic!("{err}"));
        let gateway = Gateway::start(config).await.unwrap();
        let harness = Self {
            issuer,
            upstream,
            fhir,
            gateway: Some(gateway),
            ca,
            dir,
            config_file,
            issuer_id,
        };
        if options.wait_ready {
            harness.wait_ready().await;
        }
        harness
    }

    pub fn gateway(&self) -> &Gateway {
        self.gateway.as_ref().unwrap()
    }

    pub fn addr(&self) -> SocketAddr {
        self.gateway().local_addr()
    }

    /// Waits for `/readyz` (keys loaded): an event, not a timed assertion.
    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if self.admin_get("/readyz").await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("gateway never became ready");
    }

    /// A plain HTTP GET on the admin listener: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        client::plain_get(self.gateway().admin_addr(), path).await
    }

    /// A TLS client trusting the test CA, speaking HTTP/1.1.
    pub fn client(&self) -> TestClient {
        TestClient::new(self.addr(), &self.ca, None, false)
    }

    /// A TLS client whose connections come from `source` (a 127.0.0.0/8 address).
    pub fn client_from(&self, source: std::net::IpAddr) -> TestClient {
        TestClient::from_source(self.addr(), &self.ca, None, false, Some(source))
    }

    /// A TLS client presenting `cert`.
    pub fn client_with_cert(&self, cert: &IssuedCert) -> TestClient {
        TestClient::new(self.addr(), &self.ca, Some(cert), false)
    }

    /// A TLS client speaking HTTP/2 (ALPN h2).
    pub fn h2_client(&self) -> TestClient {
        TestClient::new(self.addr(), &self.ca, None, true)
    }

    /// Standard claims for `scope` from the configured issuer, signed with its current key.
    pub fn claims(&self, scope: &str) -> Value {
        let mut claims =
            self.issuer
                .standard_claims("u-1", "app-1", scope, AUDIENCE, Duration::from_secs(300));
        claims["iss"] = Value::from(self.issuer_id.as_str());
        claims
    }

    pub fn token(&self, scope: &str) -> String {
        self.issuer.mint(&self.claims(scope))
    }

    pub fn mint(&self, claims: &Value) -> String {
        self.issuer.mint(claims)
    }

    /// The sum of every `/metrics` sample whose line starts with `series`.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, metrics) = self.admin_get("/metrics").await;
        metrics
            .lines()
            .filter(|line| line.starts_with(series))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Polls until a new client is answered 200 for `/metadata`: a cap freed, a listener back.
    pub async fn eventually_serves_a_new_client(&self) {
        eventually(Duration::from_secs(60), || async {
            self.client()
                .try_send(http::Method::GET, "/metadata", &[], bytes::Bytes::new())
                .await
                .is_ok_and(|response| response.status == 200)
        })
        .await;
    }

    /// Polls `/metrics` until `series` reads at least `wanted`.
    pub async fn eventually_metric(&self, series: &str, wanted: f64) {
        eventually(Duration::from_secs(20), || async {
            self.metric(series).await >= wanted
        })
        .await;
    }

    /// Everything the upstream received, as (method, path and query).
    pub fn upstream_paths(&self) -> Vec<(String, String)> {
        self.upstream
            .received()
            .into_iter()
            .map(|r| (r.method, r.path_and_query))
            .collect()
    }
}

/// A TLS terminator (certificate from `ca` for `localhost`) in front of a plain HTTP server.
async fn tls_front(ca: &DevCa, backend: SocketAddr) -> SocketAddr {
    let cert = ca.issue_server(&["localhost"]).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert_der.clone()], cert.key_der.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    addr
}

struct Endpoints {
    upstream: String,
    /// `None`: the issuer is configured by identifier and its JWKS discovered.
    jwks: Option<String>,
    issuer: String,
}

/// Serves `discovered`'s metadata document on `issuer` (reached at `base`) and returns the
/// identifier it describes.
fn serve_metadata(issuer: &DevIssuer, base: &str, discovered: &Discovered) -> String {
    let id = format!("{base}{}", discovered.path);
    let mut document = serde_json::json!({
        "issuer": discovered.claimed_issuer.as_deref().unwrap_or(&id),
        "jwks_uri": format!("{base}{}", phigate::demo::issuer::JWKS_PATH),
        "authorization_endpoint": format!("{id}/authorize"),
        "token_endpoint": format!("{id}/token"),
        "revocation_endpoint": format!("{id}/revoke"),
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "x-not-passed-on": "internal",
    });
    if let Some(endpoint) = &discovered.introspection_endpoint {
        document["introspection_endpoint"] = Value::from(endpoint.as_str());
    }
    let path = if discovered.oidc {
        format!("{}/.well-known/openid-configuration", discovered.path)
    } else {
        format!("/.well-known/oauth-authorization-server{}", discovered.path)
    };
    issuer.set_metadata(&path, Some(&document));
    id
}

fn write_config(
    dir: &tempfile::TempDir,
    ca: &DevCa,
    endpoints: &Endpoints,
    options: &Options,
) -> PathBuf {
    let path = dir.path();
    ca.issue_server(&["localhost", "127.0.0.1"])
        .unwrap()
        .write_pem_files(path, "server")
        .unwrap();
    ca.write_cert_pem(path, "clients-ca.crt").unwrap();
    std::fs::write(path.join("policy.yaml"), &options.policy).unwrap();
    for (name, text) in &options.files {
        std::fs::write(path.join(name), text).unwrap();
    }
    let transport = if options.insecure_plaintext {
        "  insecure_plaintext: true\n".to_owned()
    } else {
        let mut tls = "  tls:\n    cert_file: server.crt\n    key_file: server.key\n".to_owned();
        if let Some(mode) = options.client_auth {
            tls.push_str(&format!(
                "    client_ca_file: clients-ca.crt\n    client_auth: {mode}\n"
            ));
        }
        tls.push_str(&options.tls_extra);
        tls
    };
    let config = format!(
        "listen:\n  address: \"127.0.0.1:0\"\n  public_base_url: \"{PUBLIC_BASE}\"\n  shutdown_grace: {grace}\n{listen_extra}{transport}admin:\n  address: \"127.0.0.1:0\"\nupstream:\n  url: \"{upstream}\"\n  timeout: {timeout}\n  forward_token: {forward}\n{upstream_extra}{upstream_ca}issuers:\n  - issuer: \"{issuer}\"\n{jwks}{jwks_ca}    audiences: [\"{AUDIENCE}\"]\n    algorithms: {algorithms}\n{issuer_extra}tokens:\n{tokens}{revocation}{extra}policy_file: policy.yaml\n",
        upstream = endpoints.upstream,
        timeout = options.upstream_timeout,
        forward = options.forward_token,
        issuer = endpoints.issuer,
        jwks = endpoints
            .jwks
            .as_ref()
            .map(|uri| format!("    jwks_uri: \"{uri}\"\n"))
            .unwrap_or_default(),
        algorithms = options.algorithms,
        upstream_ca = if options.upstream_tls == Some(true) {
            "  ca_file: clients-ca.crt\n"
        } else {
            ""
        },
        jwks_ca = if options.jwks_tls {
            "    jwks_ca_file: clients-ca.crt\n"
        } else {
            ""
        },
        tokens = options.tokens,
        revocation = options.revocation,
        issuer_extra = options.issuer_extra,
        extra = options.extra,
        listen_extra = options.listen_extra,
        upstream_extra = options.upstream_extra,
        grace = options.shutdown_grace,
    );
    let file = path.join("phigate.yaml");
    std::fs::write(&file, config).unwrap();
    file
}

/// Starts the `phigate run` binary with `config` and returns it with its TLS address. Its log
/// is read for its whole life, so its writes never hit a closed pipe.
pub async fn spawn_binary_gateway(config: &std::path::Path) -> (std::process::Child, SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_phigate"))
        .args(["run", "--config"])
        .arg(config)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (port_tx, port_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut port_tx = Some(port_tx);
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if value["message"] == "phigate serving" {
                let port = value["listen.address"]
                    .as_str()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok());
                if let (Some(tx), Some(port)) = (port_tx.take(), port) {
                    let _ = tx.send(port);
                }
            }
        }
    });
    let port = tokio::time::timeout(Duration::from_secs(30), port_rx)
        .await
        .unwrap()
        .expect("the gateway binary started");
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Stops a gateway started by [`spawn_binary_gateway`].
pub async fn stop_binary_gateway(child: std::process::Child) {
    let _ = process::terminate(child).await;
}

/// Polls `condition` (an event, not a timing) until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition never held within {limit:?}");
}

/// Awaits `future`, failing the test instead of hanging when it never ends: a guard against a
/// regression that waits forever, not a timing assertion.
pub async fn within<T>(limit: Duration, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("no outcome within {limit:?}"))
}

/// Polls until `path` answers `wanted` for `token`.
pub async fn eventually_status(client: &TestClient, path: &str, token: &str, wanted: u16) {
    eventually(Duration::from_secs(15), || async {
        client.get_with_token(path, token).await.status == wanted
    })
    .await;
}

/// The fixed 401 challenge every token failure gets (SECURITY.md 401-token).
pub const INVALID_TOKEN: &str = "Bearer realm=\"phigate\", error=\"invalid_token\", error_description=\"The access token is invalid\", resource_metadata=\"https://fhir.test/.well-known/oauth-protected-resource\"";
/// The challenge of a request without credentials.
pub const BARE_CHALLENGE: &str = "Bearer realm=\"phigate\", resource_metadata=\"https://fhir.test/.well-known/oauth-protected-resource\"";
/// Where the harness's resource metadata is: the single audience is the resource.
pub const RESOURCE_METADATA: &str = "https://fhir.test/.well-known/oauth-protected-resource";

/// Asserts the response says nothing secret: no token or long piece of one, no listed value
/// (claims, addresses), no file path, panic or crate banner.
#[track_caller]
pub fn assert_no_leak(response: &TestResponse, secrets: &[&str]) {
    let mut text = format!("{} ", response.status);
    for (name, value) in &response.headers {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text.push_str(&String::from_utf8_lossy(&response.body));
    for secret in secrets {
        if secret.is_empty() {
            continue;
        }
        assert!(!text.contains(secret), "response leaks {secret:?}: {text}");
        // Any 12-character piece of a token segment (SECURITY.md NL (1)).
        for segment in secret.split('.').filter(|s| s.len() >= 12) {
            for window in segment.as_bytes().windows(12).step_by(6) {
                let piece = std::str::from_utf8(window).unwrap();
                assert!(
                    !text.contains(piece),
                    "response leaks part of a token: {text}"
                );
            }
        }
    }
    for banned in [
        ".rs:",
        "panicked",
        "RUST_BACKTRACE",
        "/tmp/",
        "hyper",
        "phigate/0",
        "eyJ",
    ] {
        assert!(!text.contains(banned), "response leaks {banned:?}: {text}");
    }
    assert!(
        response.headers.get("server").is_none(),
        "server banner: {text}"
    );
}

/// Asserts a denial: status, exact challenge (or none), OperationOutcome body, no upstream.
#[track_caller]
pub fn assert_denied(
    harness: &Harness,
    response: &TestResponse,
    status: u16,
    challenge: Option<&str>,
) {
    assert_eq!(response.status, status, "body: {}", response.text());
    let actual = response
        .headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap());
    assert_eq!(actual, challenge);
    assert_eq!(response.headers["content-type"], "application/fhir+json");
    assert_eq!(response.headers["cache-control"], "no-store");
    assert_eq!(response.json()["resourceType"], "OperationOutcome");
    assert!(
        harness.upstream.received().is_empty(),
        "upstream saw {:?}",
        harness.upstream_paths()
    );
}

/// A DER CRL as the PEM file `client_crls: - file:` reads.
pub fn pem_crl(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN X509 CRL-----\n{body}\n-----END X509 CRL-----\n")
}

/// A country database: loopback in the US, the documentation networks in France and Germany.
pub fn country_database(dir: &std::path::Path) -> std::path::PathBuf {
    #[derive(serde::Serialize)]
    struct Record {
        country: std::collections::BTreeMap<&'static str, &'static str>,
    }
    let mut writer = mmdb_writer::Writer::new("GeoIP2-Country");
    for (net, code) in [
        ("127.0.0.0/8", "US"),
        ("198.51.100.0/24", "FR"),
        ("203.0.113.0/24", "DE"),
    ] {
        let record = Record {
            country: [("iso_code", code)].into(),
        };
        let net = net.parse::<mmdb_writer::ipnet::IpNet>().unwrap();
        writer.insert(net, &record).unwrap();
    }
    let path = dir.join("countries.mmdb");
    std::fs::write(&path, writer.to_bytes().unwrap()).unwrap();
    path
}

/// [`POLICY`] with one break-glass rule, `emergency-read` (GET `/Patient/{id}`), granted to the
/// `phigate/break-glass` scope on tokens issued within a minute, with an `X-Break-Glass-Reason`.
pub fn break_glass_policy() -> String {
    format!(
        "{POLICY}break_glass:\n  scope: phigate/break-glass\n  max_duration: 1m\n  justification_header: X-Break-Glass-Reason\n  rules:\n    - name: emergency-read\n      methods: [GET]\n      path: /Patient/{{id}}\n"
    )
}

/// `GET /Patient/123` with `token` and one more header, which must be allowed.
pub async fn get_patient_allowed(harness: &Harness, token: &str, header: (&str, &str)) {
    let bearer = format!("Bearer {token}");
    let response = harness
        .client()
        .send(
            http::Method::GET,
            "/Patient/123",
            &[("authorization", bearer.as_str()), header],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
}
