//! Accepting connections: TLS handshake under a deadline, HTTP/1.1 or HTTP/2 by ALPN with the
//! limits of SECURITY.md §5 (header read timeout, header size, stream and window caps), failed
//! handshakes counted by reason, and
//! graceful shutdown that stops accepting, lets in-flight requests finish within a deadline, and
//! then closes. It never parses or decides on a request itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::service::{GatewayService, Shared};
use crate::config::Listen;
use crate::pipeline::Connection;
use crate::tls::{ClientIdentity, HandshakeFailure};

/// RFC 9325 / SECURITY.md R-T02: a handshake that stalls is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may run after shutdown starts.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(30);
/// Bound on requests processed at once across all connections.
const MAX_CONCURRENT_REQUESTS: usize = 4096;

/// The accept loop of the PHI listener.
pub struct Listener {
    /// The bound socket.
    pub tcp: TcpListener,
    /// The TLS acceptor, absent only for `insecure_plaintext`.
    pub tls: Option<TlsAcceptor>,
    /// Limits from configuration.
    pub settings: Listen,
}

impl Listener {
    /// Serves until `shutdown` turns true, then drains.
    pub async fn serve(self, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
        let graceful = GracefulShutdown::new();
        let settings = Arc::new(self.settings);
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_REQUESTS));
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let watcher = graceful.watcher();
                        let task = Connected {
                            shared: Arc::clone(&shared),
                            settings: Arc::clone(&settings),
                            tls: self.tls.clone(),
                            limit: Arc::clone(&limit),
                        };
                        tokio::spawn(async move { task.serve(stream, peer, watcher).await });
                    }
                    Err(err) => {
                        // EMFILE and friends: back off instead of spinning (R-S04).
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = shutdown.changed() => break,
            }
        }
        drop(self.tcp);
        if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain deadline passed; closing remaining connections");
        }
    }
}

struct Connected {
    shared: Arc<Shared>,
    settings: Arc<Listen>,
    tls: Option<TlsAcceptor>,
    limit: Arc<tokio::sync::Semaphore>,
}

impl Connected {
    async fn serve(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let _ = stream.set_nodelay(true);
        let builder = self.http_builder();
        match &self.tls {
            Some(acceptor) => {
                let tls_stream = match tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    acceptor.accept(stream),
                )
                .await
                {
                    Ok(Ok(tls_stream)) => tls_stream,
                    Ok(Err(err)) => {
                        let failure = HandshakeFailure::of(&err);
                        tracing::debug!(error = %err, reason = failure.reason(), "TLS handshake failed");
                        self.shared.metrics.record_handshake_failure(failure);
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        let failure = HandshakeFailure::Timeout;
                        self.shared.metrics.record_handshake_failure(failure);
                        return;
                    }
                };
                let identity = ClientIdentity::from_peer_certificates(
                    tls_stream.get_ref().1.peer_certificates(),
                );
                let conn = Connection {
                    peer,
                    identity,
                    tls: true,
                };
                let service = self.service(conn);
                let served = watcher
                    .watch(builder.serve_connection(TokioIo::new(tls_stream), service))
                    .await;
                self.count_protocol_error(served);
            }
            None => {
                let conn = Connection {
                    peer,
                    identity: ClientIdentity::anonymous(),
                    tls: false,
                };
                let service = self.service(conn);
                let served = watcher
                    .watch(builder.serve_connection(TokioIo::new(stream), service))
                    .await;
                self.count_protocol_error(served);
            }
        }
    }

    /// hyper answers a broken request head (400, 431) or a slow one itself, before any
    /// request reaches the decision chain; those are counted here as the client's errors.
    fn count_protocol_error(&self, served: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
        let Err(err) = served else { return };
        let Some(err) = err.downcast_ref::<hyper::Error>() else {
            return;
        };
        let kind = if err.is_parse_too_large() {
            "too_large"
        } else if err.is_parse() || err.is_parse_status() {
            "malformed"
        } else if err.is_timeout() {
            "header_timeout"
        } else {
            return;
        };
        self.shared.metrics.record_protocol_error(kind);
    }

    fn service(
        &self,
        conn: Connection,
    ) -> TowerToHyperService<tower::limit::ConcurrencyLimit<GatewayService>> {
        let service = tower::ServiceBuilder::new()
            .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(
                Arc::clone(&self.limit),
            ))
            .service(GatewayService::new(Arc::clone(&self.shared), conn));
        TowerToHyperService::new(service)
    }

    fn http_builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let max_header_bytes = self.settings.max_header_bytes;
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.settings.header_read_timeout)
            .max_buf_size(max_header_bytes.max(8192))
            .max_headers(100)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(100)
            .initial_stream_window_size(64 * 1024)
            .initial_connection_window_size(1024 * 1024)
            .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        builder
    }
}
