//! The local server's connections: HTTP/1.1 with a header-read timeout that also ends idle
//! keep-alive connections, and a connection cap under the process's file-descriptor limit.
//! At the cap the oldest connection with no request in flight is closed to make room, so
//! idle or slow clients can never starve new requests of sockets.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// File descriptors kept free of client connections: the store, agent logs, child
/// processes and outgoing HTTP need some.
const FD_RESERVE: u64 = 256;

/// How the listener treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A connection must send a request's headers within this long, and an idle
    /// keep-alive connection is closed after it.
    pub header_timeout: Duration,
    /// A request body must arrive within this long (else 408).
    pub body_timeout: Duration,
    /// At most this many client connections at once (default: the fd limit minus a
    /// reserve).
    pub max_connections: Option<usize>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(30),
            max_connections: None,
        }
    }
}

/// A listener with a backlog for bursts of thousands of connections (the kernel caps it at
/// `net.core.somaxconn`).
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Raises the soft open-files limit to the hard one and returns how many connections fit
/// beside the reserve.
pub fn connection_capacity() -> usize {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024)
        }
    };
    let reserve = FD_RESERVE.min(soft / 4);
    usize::try_from(soft.saturating_sub(reserve)).unwrap_or(usize::MAX)
}

struct Connection {
    /// Requests of this connection being served.
    in_flight: Arc<AtomicUsize>,
    task: AbortHandle,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// By id: the lowest id is the oldest connection.
    open: BTreeMap<u64, Connection>,
}

impl Registry {
    /// Closes the oldest connection with no request in flight; false if every one is busy.
    fn evict_oldest_idle(&mut self) -> bool {
        let idle = self
            .open
            .iter()
            .find(|(_, c)| c.in_flight.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id);
        match idle.and_then(|id| self.open.remove(&id)) {
            Some(conn) => {
                conn.task.abort();
                true
            }
            None => false,
        }
    }
}

/// Accepts and serves connections until `shutdown` resolves; each request goes to
/// `serve` with the peer's address.
pub async fn run<S, F>(
    listener: TcpListener,
    limits: ConnectionLimits,
    serve: S,
    shutdown: impl Future<Output = ()>,
) where
    S: Fn(SocketAddr, http::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = http::Response<axum::body::Body>> + Send + 'static,
{
    let capacity = limits
        .max_connections
        .unwrap_or_else(connection_capacity)
        .max(1);
    tracing::debug!(capacity, "accepting connections");
    let registry = Arc::new(Mutex::new(Registry::default()));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors (or a similar transient error): make room and
                    // try again rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    registry
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .evict_oldest_idle();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let mut reg = registry.lock().unwrap_or_else(PoisonError::into_inner);
        if reg.open.len() >= capacity && !reg.evict_oldest_idle() {
            // Every connection is serving a request: refuse this one (closing it) rather
            // than run out of descriptors.
            drop(reg);
            drop(stream);
            continue;
        }
        let id = reg.next_id;
        reg.next_id += 1;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let counter = in_flight.clone();
        let serve = serve.clone();
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(Activity(counter.clone()));
            let serve = serve.clone();
            async move { Ok::<_, std::convert::Infallible>(serve(peer, req).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let forget = registry.clone();
        let task = tokio::spawn(async move {
            let _ = conn.await;
            forget
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .open
                .remove(&id);
        });
        reg.open.insert(
            id,
            Connection {
                in_flight,
                task: task.abort_handle(),
            },
        );
    }
    // Stop: close the connections (handlers run in tasks of their own and finish).
    let open = std::mem::take(&mut registry.lock().unwrap_or_else(PoisonError::into_inner).open);
    for conn in open.into_values() {
        conn.task.abort();
    }
}

/// A request's handle on its connection's activity: the server marks the connection busy
/// once the request is read and its handler runs. Until then (a slow client still sending
/// headers or body) the connection may be closed to make room.
#[derive(Clone)]
pub struct Activity(Arc<AtomicUsize>);

impl Activity {
    /// Busy until the returned guard is dropped.
    pub fn busy(&self) -> Busy {
        self.0.fetch_add(1, Ordering::AcqRel);
        Busy(self.0.clone())
    }
}

pub struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
