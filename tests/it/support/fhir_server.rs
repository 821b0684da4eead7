//! A real FHIR server for the FHIR tests: Medplum's router and in-memory repository (npm
//! `@medplum/fhir-router`, pinned in `tests/fhir-server/package-lock.json`) behind our small
//! HTTP wrapper `tests/fhir-server/server.mjs`, one node process per test on a loopback port.
//! Its FHIR behaviour is nobody's here, which is the point: phigate is judged against how a
//! real server reads requests, not against our own expectations.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One request as the FHIR server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The request target, e.g. `/fhir/Observation?patient=123`.
    pub path: String,
    /// Header lines as sent, name and value alternating lower-cased by nothing.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    /// Every value of a header, matched case-insensitively.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A running FHIR server; the process is killed on drop.
pub struct FhirServer {
    child: Child,
    port: u16,
}

fn server_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir-server")
}

/// Installs the pinned packages once per test run when they are missing (`.ci/run` installs
/// them up front; this keeps a plain `cargo test` working on a fresh clone).
fn ensure_installed() {
    static INSTALL: Mutex<bool> = Mutex::new(false);
    let mut done = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if *done {
        return;
    }
    let dir = server_dir();
    if !dir.join("node_modules/@medplum/fhir-router").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed for the FHIR server tests");
        assert!(status.success(), "npm ci in tests/fhir-server failed");
    }
    *done = true;
}

impl FhirServer {
    /// Starts a server seeded with patients 123 and 456 and their data.
    pub async fn start() -> Self {
        tokio::task::spawn_blocking(ensure_installed).await.unwrap();
        // Medplum targets Node 22; Node 20 runs it with WebSocket enabled explicitly.
        let mut child = Command::new("node")
            .args(["--experimental-websocket", "server.mjs", "0"])
            .current_dir(server_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node is needed for the FHIR server tests");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("the FHIR server did not start within 60 s")
            .unwrap()
            .expect("the FHIR server exited before listening");
        let ready: Value = serde_json::from_str(&line).unwrap();
        let port = u16::try_from(ready["port"].as_u64().unwrap()).unwrap();
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, port }
    }

    /// The FHIR base URL, as an upstream for phigate.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/fhir", self.port)
    }

    /// The server's own address, which must never reach a client through phigate.
    pub fn origin(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Everything the server received, in order.
    pub async fn received(&self) -> Vec<Received> {
        let body = self.admin(http::Method::GET, "/__received").await;
        let list: Value = serde_json::from_slice(&body).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| Received {
                method: r["method"].as_str().unwrap().to_owned(),
                path: r["path"].as_str().unwrap().to_owned(),
                headers: r["headers"]
                    .as_array()
                    .unwrap()
                    .chunks(2)
                    .map(|pair| {
                        (
                            pair[0].as_str().unwrap().to_owned(),
                            pair[1].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect(),
                body: r["body"].as_str().unwrap().to_owned(),
            })
            .collect()
    }

    /// Forgets what was received.
    pub async fn clear_received(&self) {
        self.admin(http::Method::DELETE, "/__received").await;
    }

    /// Reads straight from the server, bypassing phigate and its record, as JSON.
    pub async fn read(&self, path: &str) -> (u16, Value) {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let request = http::Request::get(format!("{}{path}", self.url()))
            .header("x-test-direct", "1")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn admin(&self, method: http::Method, path: &str) -> Bytes {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.port))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client.request(request).await.unwrap();
        response.into_body().collect().await.unwrap().to_bytes()
    }
}

impl Drop for FhirServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
