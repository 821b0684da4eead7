//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the process is alive) and
//! `/readyz` (every issuer's keys are loaded and fresh, and the gateway is not shutting down).
//! Plain HTTP, loopback by default. It never serves PHI and never exposes configuration.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::revocation::Revocation;
use crate::telemetry::Metrics;
use crate::token::Verifier;

/// What `/readyz` reports on.
pub struct Readiness {
    /// False once shutdown has begun, so load balancers stop sending traffic first.
    pub serving: AtomicBool,
    /// Key freshness of every issuer.
    pub verifier: Arc<Verifier>,
    /// Freshness of every revocation source.
    pub revocation: Arc<Revocation>,
}

impl Readiness {
    /// Ready to take traffic.
    pub fn is_ready(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
            && self.verifier.is_ready()
            && self.revocation.is_ready()
    }
}

/// The admin HTTP server.
pub struct AdminServer {
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// Readiness to report.
    pub readiness: Arc<Readiness>,
}

impl AdminServer {
    /// Serves until the task is aborted.
    pub async fn serve(self, listener: TcpListener) {
        let this = Arc::new(self);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let this = Arc::clone(&this);
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let this = Arc::clone(&this);
                    async move { Ok::<_, Infallible>(this.answer(&request)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        match request.uri().path() {
            "/metrics" => {
                self.readiness.verifier.publish_key_ages();
                self.readiness.revocation.publish_metrics();
                let mut response = Response::new(Full::new(Bytes::from(self.metrics.render())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                response
            }
            "/healthz" | "/livez" => plain(StatusCode::OK, "ok\n"),
            "/readyz" if self.readiness.is_ready() => plain(StatusCode::OK, "ready\n"),
            "/readyz" => plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
