//! The admin listener: `/metrics` (OpenMetrics to a scraper that asks for it, the Prometheus
//! text format otherwise), `/healthz` (the process is alive) and `/readyz` (every issuer's keys,
//! every revocation list and every client CRL are loaded and fresh, and the gateway is not
//! shutting down). Plain HTTP, loopback by default.
//! It never serves PHI and never exposes configuration.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::UnixTime;
use tokio::net::TcpListener;

use crate::revocation::Revocation;
use crate::telemetry::{Exposition, Metrics};
use crate::tls::Freshness;
use crate::token::Verifier;

/// What `/readyz` reports on.
pub struct Readiness {
    /// False once shutdown has begun, so load balancers stop sending traffic first.
    pub serving: AtomicBool,
    /// Key freshness of every issuer.
    pub verifier: Arc<Verifier>,
    /// Freshness of every revocation source.
    pub revocation: Arc<Revocation>,
    /// Freshness of the listener's client CRLs (none without TLS). While they are stale every
    /// presented client certificate is refused, so the replica leaves the load balancer's
    /// rotation as it does for stale keys or revocation lists.
    pub client_crls: Option<Arc<Freshness>>,
}

impl Readiness {
    /// Ready to take traffic.
    pub fn is_ready(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
            && self.verifier.is_ready()
            && self.revocation.is_ready()
            && self
                .client_crls
                .as_ref()
                .is_none_or(|crls| crls.is_fresh_at(UnixTime::now()))
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
                self.metrics
                    .publish_log_drops(crate::telemetry::log::dropped_lines());
                self.metrics.set_ready(self.readiness.is_ready());
                let format = negotiate(request.headers().get(header::ACCEPT));
                let body = Bytes::from(self.metrics.render(format));
                let mut response = Response::new(Full::new(body));
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(format.content_type()),
                );
                headers.insert(header::VARY, header::HeaderValue::from_static("accept"));
                response
            }
            "/healthz" | "/livez" => plain(StatusCode::OK, "ok\n"),
            "/readyz" if self.readiness.is_ready() => plain(StatusCode::OK, "ready\n"),
            "/readyz" => plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// OpenMetrics when the `Accept` header names it (version 1.0.0, 0.0.1 or none) at least as
/// strongly as the Prometheus text format; that format otherwise, including for no header,
/// `*/*` and anything unknown, since every scraper and person can read it.
fn negotiate(accept: Option<&header::HeaderValue>) -> Exposition {
    let Some(accept) = accept.and_then(|value| value.to_str().ok()) else {
        return Exposition::PrometheusText;
    };
    let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media_type = parts.next().unwrap_or_default().to_ascii_lowercase();
        let (mut quality, mut version) = (1.0_f32, None);
        for parameter in parts {
            match parameter.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                Some((key, value)) if key.eq_ignore_ascii_case("q") => {
                    quality = value.parse().unwrap_or(0.0);
                }
                Some((key, value)) if key.eq_ignore_ascii_case("version") => {
                    version = Some(value);
                }
                _ => {}
            }
        }
        match (media_type.as_str(), version) {
            ("application/openmetrics-text", None | Some("1.0.0" | "0.0.1")) => {
                openmetrics = openmetrics.max(quality);
            }
            ("text/plain", None | Some("0.0.4")) | ("text/*" | "*/*", _) => {
                text = text.max(quality);
            }
            _ => {}
        }
    }
    if openmetrics > 0.0 && openmetrics >= text {
        Exposition::OpenMetrics
    } else {
        Exposition::PrometheusText
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

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(accept: Option<&str>, expected: Exposition) {
        let header = accept.map(|a| header::HeaderValue::from_str(a).unwrap());
        assert_eq!(negotiate(header.as_ref()), expected, "{accept:?}");
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        use Exposition::{OpenMetrics, PrometheusText};
        // Prometheus 2.x and 3.x defaults.
        check(
            Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            ),
            OpenMetrics,
        );
        check(
            Some(
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            ),
            OpenMetrics,
        );
        check(Some("application/openmetrics-text"), OpenMetrics);
        check(
            Some("Application/OpenMetrics-Text; Version=1.0.0"),
            OpenMetrics,
        );
        check(
            Some("text/plain;q=0.5, application/openmetrics-text"),
            OpenMetrics,
        );
        // Everything else gets the Prometheus text format.
        check(None, PrometheusText);
        check(Some("*/*"), PrometheusText);
        check(Some("text/plain;version=0.0.4"), PrometheusText);
        check(Some("application/json"), PrometheusText);
        check(
            Some("application/openmetrics-text;version=2.0.0"),
            PrometheusText,
        );
        check(Some("application/openmetrics-text;q=0"), PrometheusText);
        check(
            Some("application/openmetrics-text;q=0.4, text/plain"),
            PrometheusText,
        );
        check(
            Some("application/openmetrics-text;q=nonsense"),
            PrometheusText,
        );
    }
}
