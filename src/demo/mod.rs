//! Stand-ins for the parties around the gateway, for `phigate demo` and for tests.
//!
//! [`DevIssuer`] plays the authorization server (a JWKS endpoint, a token minter and, for the
//! demo, a client credentials token endpoint),
//! [`SyntheticFhir`] plays the protected FHIR server (invented data, and a record of every request
//! that reached it), and [`DpopKey`] a client holding a DPoP key. The two servers serve plain HTTP on a local port and stop on `shutdown()` or when their
//! last handle drops. Nothing here may be used in production or fed real patient data: the issuer
//! signs whatever it is asked to, and the FHIR server has no access control at all.

pub mod dpop;
pub mod fhir;
pub mod issuer;
pub mod token_endpoint;

pub use dpop::DpopKey;
pub use fhir::{ReceivedRequest, SyntheticFhir, UpstreamMode};
pub use issuer::{DevIssuer, IssuerError};

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The response body every demo server uses: small and fully buffered.
type Body = Full<Bytes>;

/// A local HTTP/1.1 and HTTP/2 (prior knowledge) server running on a background task.
///
/// Dropping it stops the server, so the owning handle's lifetime bounds the port's.
struct Background {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
}

// === impl Background ===

impl Background {
    /// Binds `bind` and serves every request with `handler` until stopped.
    async fn spawn<H, F>(bind: SocketAddr, handler: H) -> io::Result<Self>
    where
        H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = TcpListener::bind(bind).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let (stopped_tx, stopped) = watch::channel(false);
        tokio::spawn(accept_loop(listener, handler, stop_rx, stopped_tx));
        Ok(Self {
            local_addr,
            stop,
            stopped,
        })
    }

    /// The address clients should dial: loopback when bound to an unspecified address.
    fn dial_addr(&self) -> SocketAddr {
        let mut addr = self.local_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        addr
    }

    /// Asks the server to stop; it closes the listener and drops open connections.
    fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Waits until the listener is closed and every connection is gone.
    async fn stopped(&self) {
        let mut stopped = self.stopped.clone();
        // An error means the task is gone, which is just as stopped.
        let _ = stopped.wait_for(|done| *done).await;
    }
}

async fn accept_loop<H, F>(
    listener: TcpListener,
    handler: H,
    mut stop: watch::Receiver<bool>,
    stopped: watch::Sender<bool>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // Err means every handle was dropped, which is a request to stop too.
            () = stopping(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let handler = handler.clone();
                    connections.spawn(serve_connection(stream, handler));
                }
                // Out of file descriptors and the like: back off rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
    stopped.send_replace(true);
}

/// Resolves once a stop is requested or every handle is gone.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    // The guard wait_for returns is not Send, so it must not outlive this function.
    let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
}

async fn serve_connection<H, F>(stream: tokio::net::TcpStream, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let service = service_fn(move |req| {
        let response = handler(req);
        async move { Ok::<_, Infallible>(response.await) }
    });
    // The auto builder reads the preface, so HTTP/2 prior knowledge works beside HTTP/1.1.
    // A connection error only ends that connection; the peer sees the reset.
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Builds a response with a status, a content type and a body.
fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests;
