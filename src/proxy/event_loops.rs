//! The event loops that serve the PHI listener (`listen.event_loops`). `per_core`, the default,
//! runs one OS thread per core, each with a current-thread runtime, its own `SO_REUSEPORT`
//! socket on the listen address and its own upstream pool, so that a connection stays on one
//! thread from accept to close. `shared` runs one accept loop on the gateway's multi-thread
//! runtime. Every loop draws on one connection cap and one request limit, and all of them stop
//! together. This module binds sockets and starts threads; it never reads a request.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::{oneshot, watch};

use super::forward::Forwarder;
use super::server::{Admission, Listener};
use super::service::Shared;
use crate::config::{EventLoops, Listen};
use crate::tls::LiveConfig;

/// The listen backlog: tokio's own for `TcpListener::bind`.
const BACKLOG: i32 = 1024;

/// How many event loops `mode` runs: one, or one per core this process may use.
pub fn count(mode: EventLoops) -> usize {
    match mode {
        EventLoops::Shared => 1,
        // Counts what CPU affinity and cgroup quotas leave, not the machine's cores.
        EventLoops::PerCore => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
    }
}

/// Binds `count` listening sockets to `address` and returns them with the bound address. More
/// than one share the port through `SO_REUSEPORT`, which the kernel lets only sockets of the
/// same user join; all take the port the first was given (when `address` asks for port 0).
pub fn bind(
    address: SocketAddr,
    count: usize,
) -> std::io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    let mut address = address;
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        // As tokio's `TcpListener::bind`: a restart need not wait out the old connections.
        socket.set_reuse_address(true)?;
        if count > 1 {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&address.into())?;
        socket.listen(BACKLOG)?;
        let listener = std::net::TcpListener::from(socket);
        address = listener.local_addr()?;
        sockets.push(listener);
    }
    Ok((sockets, address))
}

/// What every event loop serves with, besides its socket and upstream pool.
pub struct Common {
    /// The decision chain, sinks and metrics.
    pub shared: Arc<Shared>,
    /// The listener's current TLS configuration, absent only for `insecure_plaintext`.
    pub tls: Option<Arc<LiveConfig>>,
    /// The listener's configuration.
    pub settings: Listen,
    /// Turns true when the loops must stop accepting and drain.
    pub shutdown: watch::Receiver<bool>,
}

/// The running event loops.
pub struct Serving {
    finished: Vec<oneshot::Receiver<()>>,
}

impl Serving {
    /// Starts one loop per socket, each with the upstream pool beside it (as many as sockets).
    /// Must be called on the gateway's runtime, which the `shared` loop runs on.
    pub fn start(
        sockets: Vec<std::net::TcpListener>,
        forwarders: Vec<Forwarder>,
        common: Common,
    ) -> std::io::Result<Self> {
        let mode = common.settings.event_loops;
        let admission = Admission::new(&common.settings);
        let settings = Arc::new(common.settings);
        let draining = Arc::new(watch::Sender::new(0));
        let mut finished = Vec::with_capacity(sockets.len());
        for (index, (socket, forwarder)) in sockets.into_iter().zip(forwarders).enumerate() {
            let runtime = match mode {
                EventLoops::Shared => None,
                EventLoops::PerCore => Some(
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?,
                ),
            };
            // A socket is registered with the runtime that will poll it.
            let tcp = {
                let _context = runtime.as_ref().map(tokio::runtime::Runtime::enter);
                TcpListener::from_std(socket)?
            };
            let listener = Listener {
                tcp,
                tls: common.tls.clone(),
                settings: Arc::clone(&settings),
                admission: admission.clone(),
                forwarder: Arc::new(forwarder),
            };
            let draining = Draining::join(&draining);
            let served = listener.serve(Arc::clone(&common.shared), common.shutdown.clone());
            let serve_and_drain = async move {
                served.await;
                draining.finish().await;
            };
            finished.push(run(index, runtime, serve_and_drain)?);
        }
        Ok(Self { finished })
    }

    /// Resolves once every loop has stopped accepting and drained its connections.
    pub async fn drained(self) {
        for finished in self.finished {
            // A loop that panicked dropped its sender: it is not serving either.
            let _ = finished.await;
        }
    }
}

/// Runs one loop: on the gateway's runtime, or on a thread of its own that drives `runtime`.
/// The receiver resolves once the loop is over and, on its own thread, its runtime is gone.
fn run(
    index: usize,
    runtime: Option<Runtime>,
    serve_and_drain: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<oneshot::Receiver<()>> {
    let (done, finished) = oneshot::channel();
    match runtime {
        None => {
            tokio::spawn(async move {
                serve_and_drain.await;
                let _ = done.send(());
            });
        }
        Some(runtime) => {
            std::thread::Builder::new()
                .name(format!("phigate-loop-{index}"))
                .spawn(move || {
                    runtime.block_on(serve_and_drain);
                    // Dropping the runtime ends the tasks left on it (pooled upstream
                    // connections) before `drained` returns.
                    drop(runtime);
                    let _ = done.send(());
                })?;
        }
    }
    Ok(finished)
}

/// One loop's share of the count of loops still draining.
struct Draining(Arc<watch::Sender<usize>>);

impl Draining {
    /// Counts one more loop as serving until its share is finished or dropped.
    fn join(count: &Arc<watch::Sender<usize>>) -> Self {
        count.send_modify(|draining| *draining += 1);
        Self(Arc::clone(count))
    }

    /// Marks this loop drained, then keeps its runtime turning until every loop has drained:
    /// a shared client (JWKS, introspection, the DPoP replay store's Redis connection) keeps a
    /// connection's task on the runtime of the loop that opened it, and another loop may still
    /// be serving a request over it.
    async fn finish(self) {
        let mut all = self.0.subscribe();
        drop(self);
        let _ = all.wait_for(|draining| *draining == 0).await;
    }
}

impl Drop for Draining {
    // On drop rather than in `finish`, so a loop that panicked does not hold the others.
    fn drop(&mut self) {
        self.0
            .send_modify(|draining| *draining = draining.saturating_sub(1));
    }
}
