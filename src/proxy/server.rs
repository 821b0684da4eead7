//! Accepting connections, one accept loop per event loop: at most `listen.max_connections` open
//! at once across all loops and `listen.max_connections_per_address` from one address, a TLS
//! handshake under `listen.handshake_timeout`, a first request head within
//! `listen.first_request_timeout`, then HTTP/1.1 or HTTP/2 by ALPN with the limits of
//! SECURITY.md §5 (header read timeout, header size, stream and window caps). A connection is
//! closed gracefully — its requests in flight finish first — after `listen.idle_timeout`
//! without a new request or past `listen.max_connection_age`: hyper's HTTP/2 server has no idle
//! bound of its own (R-S03). Failed handshakes and connections phigate closes are counted by
//! reason. On shutdown a loop stops accepting, asks each of its connections to close the same
//! way, waits for them within a deadline, and then returns. It never parses or decides on a
//! request itself.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::forward::Forwarder;
use super::lingering::{LINGER, Lingering};
use super::peers::{PeerConnections, PeerSlot};
use super::proxy_header::{self, Announced, HeaderFault};
use super::service::{GatewayService, Shared};
use crate::config::Listen;
use crate::pipeline::Connection;
use crate::telemetry::Metrics;
use crate::tls::{ClientIdentity, HandshakeFailure, LiveConfig};

/// How long in-flight requests may run after shutdown starts.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(30);
/// Bound on requests processed at once across all connections.
const MAX_CONCURRENT_REQUESTS: usize = 4096;

/// The bounds every event loop draws from, so that they hold for the gateway as a whole.
#[derive(Clone)]
pub struct Admission {
    connections: Arc<Semaphore>,
    peers: Arc<PeerConnections>,
    requests: Arc<Semaphore>,
}

impl Admission {
    /// At most `listen.max_connections` connections open, `max_connections_per_address` from
    /// one address, and `MAX_CONCURRENT_REQUESTS` requests in process, across every event loop.
    pub fn new(settings: &Listen) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(settings.max_connections)),
            peers: PeerConnections::new(settings.max_connections_per_address),
            requests: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
        }
    }

    /// A place for one more connection from `address`, or `None` (counted) past its cap.
    fn admit_address(&self, address: IpAddr, metrics: &Metrics) -> Option<PeerSlot> {
        let slot = self.peers.admit(address);
        if slot.is_none() {
            metrics.record_connection_closed("address_over_capacity");
        }
        slot
    }
}

/// One accept loop of the PHI listener.
pub struct Listener {
    /// The bound socket, registered with the runtime this loop runs on.
    pub tcp: TcpListener,
    /// The listener's current TLS configuration (shared by every loop), absent only for
    /// `insecure_plaintext`.
    pub tls: Option<Arc<LiveConfig>>,
    /// Limits from configuration.
    pub settings: Arc<Listen>,
    /// The connection cap and request limit, shared with the other loops.
    pub admission: Admission,
    /// This loop's upstream client and pool.
    pub forwarder: Arc<Forwarder>,
}

impl Listener {
    /// Serves until `shutdown` turns true (or its sender is gone), then drains.
    pub async fn serve(self, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
        // This loop's connections only: each holds one of these while it lives, so the drain
        // below waits for exactly them, whatever the other loops hold of the shared caps.
        let max_connections = self.settings.max_connections;
        let open_here = Arc::new(Semaphore::new(max_connections));
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // R-S04: past a cap a connection is closed at once, before any TLS work,
                        // so a flood cannot take every descriptor from established clients.
                        let Ok(slot) = Arc::clone(&self.admission.connections).try_acquire_owned()
                        else {
                            shared.metrics.record_connection_closed("over_capacity");
                            drop(stream);
                            continue;
                        };
                        // A load balancer announcing its clients is counted by each client's
                        // address once its header is read, never as one address.
                        let announces = self.settings.proxy_protocol
                            && self.settings.trusted_proxies.trusts(peer.ip());
                        let peer_slot = if announces {
                            None
                        } else {
                            let Some(slot) =
                                self.admission.admit_address(peer.ip(), &shared.metrics)
                            else {
                                drop(stream);
                                continue;
                            };
                            Some(slot)
                        };
                        // Never short: `open_here` has as many places as the global cap.
                        let Ok(here) = Arc::clone(&open_here).try_acquire_owned() else {
                            continue;
                        };
                        let task = Connected {
                            shared: Arc::clone(&shared),
                            forwarder: Arc::clone(&self.forwarder),
                            settings: Arc::clone(&self.settings),
                            tls: self.tls.clone(),
                            admission: self.admission.clone(),
                            shutdown: shutdown.clone(),
                        };
                        tokio::spawn(async move {
                            let _open = task.shared.metrics.connection_opened();
                            if announces {
                                task.serve_announced(stream, peer).await;
                            } else {
                                task.serve(stream, peer).await;
                            }
                            drop((slot, peer_slot, here));
                        });
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
        // Every connection watches `shutdown` and closes once its requests finish; each returns
        // its place as it goes, so all places free means all this loop's connections are gone.
        let every_place = u32::try_from(max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(DRAIN_DEADLINE, open_here.acquire_many(every_place))
            .await
            .is_err()
        {
            tracing::warn!("drain deadline passed; closing remaining connections");
        }
    }
}

struct Connected {
    shared: Arc<Shared>,
    forwarder: Arc<Forwarder>,
    settings: Arc<Listen>,
    tls: Option<Arc<LiveConfig>>,
    admission: Admission,
    shutdown: watch::Receiver<bool>,
}

/// Why a connection is to be closed, by its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// No complete first request head in time: closed at once.
    FirstRequest,
    /// No new request for `listen.idle_timeout`: closed once its requests finish.
    Idle,
    /// Older than `listen.max_connection_age`: closed once its requests finish.
    Age,
}

/// When a connection opened and when its latest request arrived.
struct Activity {
    opened: Instant,
    /// Milliseconds from `opened` to the latest request, plus one; zero before the first.
    latest_request: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            latest_request: AtomicU64::new(0),
        }
    }

    fn request_arrived(&self) {
        let since = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.latest_request.store(since + 1, Ordering::Release);
    }

    /// The next moment the connection's clock closes it, and why.
    fn next_expiry(&self, settings: &Listen) -> (Instant, Expiry) {
        let aged = (self.opened + settings.max_connection_age, Expiry::Age);
        let waiting = match self.latest_request.load(Ordering::Acquire) {
            0 => (
                self.opened + settings.first_request_timeout,
                Expiry::FirstRequest,
            ),
            since => (
                self.opened + Duration::from_millis(since - 1) + settings.idle_timeout,
                Expiry::Idle,
            ),
        };
        if aged.0 < waiting.0 { aged } else { waiting }
    }
}

impl Connected {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        match &self.tls {
            Some(live) => {
                // The configuration current at accept: a reload reaches new handshakes only.
                let Some(tls_stream) = self.handshake(&live.acceptor(), stream).await else {
                    return;
                };
                let identity = ClientIdentity::from_peer_certificates(
                    tls_stream.get_ref().1.peer_certificates(),
                );
                let conn = Connection {
                    peer,
                    identity,
                    tls: true,
                };
                self.serve_http(TokioIo::new(Lingering::new(tls_stream, LINGER)), conn)
                    .await;
            }
            None => {
                let conn = Connection {
                    peer,
                    identity: ClientIdentity::anonymous(),
                    tls: false,
                };
                self.serve_http(TokioIo::new(Lingering::new(stream, LINGER)), conn)
                    .await;
            }
        }
    }

    /// A connection from a trusted load balancer (`listen.proxy_protocol`): its PROXY header,
    /// read within `listen.handshake_timeout`, names the client the connection is held to,
    /// under that client's own per-address cap; a connection without a well-formed header is
    /// closed before any TLS work.
    async fn serve_announced(self, mut stream: TcpStream, balancer: SocketAddr) {
        let read = tokio::time::timeout(
            self.settings.handshake_timeout,
            proxy_header::read(&mut stream),
        )
        .await;
        let peer = match read {
            Ok(Ok(Announced::Client(client))) => client,
            Ok(Ok(Announced::Proxy)) => balancer,
            // The balancer hung up first, as its TCP health checks do: nothing phigate closed.
            Ok(Err(HeaderFault::Closed)) => return,
            Ok(Err(fault)) => {
                tracing::debug!(?fault, peer = %balancer, "PROXY protocol header refused");
                self.shared
                    .metrics
                    .record_connection_closed("proxy_header_invalid");
                return;
            }
            Err(_) => {
                self.shared
                    .metrics
                    .record_connection_closed("proxy_header_timeout");
                return;
            }
        };
        let Some(_peer_slot) = self
            .admission
            .admit_address(peer.ip(), &self.shared.metrics)
        else {
            return;
        };
        self.serve(stream, peer).await;
    }

    /// The TLS handshake within `listen.handshake_timeout` (R-T01, R-T02: a peer that never
    /// starts or never finishes one is dropped); a failure is counted by its reason.
    async fn handshake(
        &self,
        acceptor: &TlsAcceptor,
        stream: TcpStream,
    ) -> Option<TlsStream<TcpStream>> {
        let failure = match tokio::time::timeout(
            self.settings.handshake_timeout,
            acceptor.accept(stream),
        )
        .await
        {
            Ok(Ok(tls_stream)) => return Some(tls_stream),
            Ok(Err(err)) => {
                let failure = HandshakeFailure::of(&err);
                tracing::debug!(error = %err, reason = failure.reason(), "TLS handshake failed");
                failure
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                HandshakeFailure::Timeout
            }
        };
        self.shared.metrics.record_handshake_failure(failure);
        None
    }

    /// Serves HTTP on an established connection until it ends, or until its clock or shutdown
    /// closes it. Its first request head must be complete within
    /// `listen.first_request_timeout`: hyper's header timeout starts only once the protocol is
    /// known (after the first bytes) and HTTP/2 has none, so without this a connection that
    /// never sends a byte, or only a preface, would hold its slot forever.
    async fn serve_http<I>(&self, io: I, conn: Connection)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let seen = Arc::clone(&activity);
        let service = tower::ServiceBuilder::new()
            .map_request(move |request| {
                seen.request_arrived();
                request
            })
            .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(
                Arc::clone(&self.admission.requests),
            ))
            .service(GatewayService::new(
                Arc::clone(&self.shared),
                Arc::clone(&self.forwarder),
                conn,
            ));
        let builder = self.http_builder();
        let connection = builder.serve_connection(io, TowerToHyperService::new(service));
        tokio::pin!(connection);
        let mut shutdown = self.shutdown.clone();
        let mut closing = false;
        let result = loop {
            let (deadline, expiry) = activity.next_expiry(&self.settings);
            tokio::select! {
                biased;
                result = connection.as_mut() => break result,
                _ = shutdown.wait_for(|stop| *stop), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = tokio::time::sleep_until(deadline), if !closing => {
                    // A request may have arrived while the timer ran: then the clock moved on.
                    if activity.next_expiry(&self.settings) != (deadline, expiry) {
                        continue;
                    }
                    let reason = match expiry {
                        Expiry::FirstRequest => {
                            tracing::debug!("no request within the first-request timeout; closing");
                            self.shared
                                .metrics
                                .record_connection_closed("first_request_timeout");
                            return;
                        }
                        Expiry::Idle => "idle_timeout",
                        Expiry::Age => "max_age",
                    };
                    self.shared.metrics.record_connection_closed(reason);
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        };
        self.count_protocol_error(result);
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
