//! Accepting connections, one way for every server in the project: the proxy's listener,
//! the admin server and the simulated backends.
//!
//! [`bind`] opens a listening socket (address reuse, a deep backlog) and says which flag to
//! change when it cannot. [`serve`] runs the accept loop: TCP_NODELAY on every connection,
//! a short back-off when accepting fails (out of file descriptors and the like, where
//! spinning would only make it worse), and on shutdown a graceful drain: stop accepting,
//! ask every connection to finish (HTTP/1 after its response, HTTP/2 with GOAWAY), wait up
//! to a grace period, then cut whatever is left, so that nothing outlives the server.
//!
//! [`serve_with`] also caps the connections open at once: at the cap it stops accepting
//! (new connections wait in the kernel's backlog, as with HAProxy's `maxconn`, rather than
//! being accepted only to be refused), and counts how often that happened.
//!
//! The protocol is the caller's: it turns each accepted stream into a future, usually a
//! hyper connection wrapped in [`until_drained`] (hyper's HTTP/1 and HTTP/2 connections and
//! hyper-util's auto connection all drain that way).
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Pending connections the kernel queues before `accept` (the proxy takes bursts of
/// thousands of non-persistent connections).
pub const BACKLOG: u32 = 4096;

/// Pause after a failed `accept` before trying again.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Why a listener could not be opened; the message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "cannot listen on {addr}: the port is in use; stop the other process or pass {flag} ADDR"
    )]
    InUse {
        addr: SocketAddr,
        flag: &'static str,
    },
    #[error("cannot listen on {addr}: {source}; pass another {flag} ADDR")]
    Other {
        addr: SocketAddr,
        flag: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Binds `addr` with address reuse and [`BACKLOG`]. `flag` is the option that sets the
/// address, named in the error.
pub fn bind(addr: SocketAddr, flag: &'static str) -> Result<TcpListener, BindError> {
    let other = |source| BindError::Other { addr, flag, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(other)?;
    socket.set_reuseaddr(true).map_err(other)?;
    socket.bind(addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => BindError::InUse { addr, flag },
        _ => other(e),
    })?;
    socket.listen(BACKLOG).map_err(other)
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections still open when the grace period ran out, and cut.
    pub cut: usize,
}

/// Resolves when the server starts draining: a connection then finishes what it is doing
/// and closes (see [`until_drained`]).
#[derive(Debug, Clone)]
pub struct Draining(watch::Receiver<bool>);

impl Draining {
    /// Waits until draining starts.
    pub async fn started(&mut self) {
        // An error means the server is gone, which is draining too.
        let _ = self.0.wait_for(|d| *d).await;
    }
}

/// Runs a hyper connection until it ends, or until draining starts; then asks it to finish
/// gracefully (HTTP/1: after the response in progress; HTTP/2: GOAWAY) and waits for that.
pub async fn until_drained<C: GracefulConnection>(conn: C, draining: Draining) {
    until_drained_by(conn, draining, GracefulConnection::graceful_shutdown).await
}

/// [`until_drained`] for connections that can shut down gracefully without implementing
/// [`GracefulConnection`] (hyper's connections with upgrades enabled): `graceful` asks
/// `conn` to finish.
pub async fn until_drained_by<C: Future>(
    conn: C,
    mut draining: Draining,
    graceful: impl FnOnce(std::pin::Pin<&mut C>),
) {
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        // Client-side errors (resets, malformed requests) end only that connection.
        _ = conn.as_mut() => return,
        () = draining.started() => {}
    }
    graceful(conn.as_mut());
    let _ = conn.await;
}

/// The connections a server has open, for whoever reports on them.
#[derive(Debug, Default)]
pub struct Connections {
    open: AtomicUsize,
    /// Times accepting paused because the cap was reached.
    at_cap: AtomicU64,
    /// Set once the grace period is over and what is left is being cut.
    cutting: AtomicBool,
}

impl Connections {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn at_cap(&self) -> u64 {
        self.at_cap.load(Ordering::Relaxed)
    }

    /// Whether the server is cutting the connections that outlived the grace period:
    /// work that ends now ends because of it.
    pub fn cutting(&self) -> bool {
        self.cutting.load(Ordering::Relaxed)
    }
}

/// How [`serve_with`] runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long connections may take to finish once draining starts.
    pub grace: Duration,
    /// Connections open at once; at the cap accepting pauses.
    pub max_connections: usize,
    pub connections: Arc<Connections>,
}

impl Options {
    /// No cap, for servers that only the operator uses (admin, simulated backends).
    pub fn new(grace: Duration) -> Self {
        Options {
            grace,
            max_connections: Semaphore::MAX_PERMITS,
            connections: Arc::default(),
        }
    }
}

/// [`serve_with`] without a connection cap.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    connection: F,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Drained
where
    F: FnMut(TcpStream, SocketAddr, Draining) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve_with(listener, connection, shutdown, Options::new(grace)).await
}

/// Accepts on `listener` until `shutdown` resolves, running the future `connection` makes of
/// each accepted stream as a task of its own, at most `max_connections` at once; then
/// drains: [`Draining`] resolves for every connection, and those still open after `grace`
/// are cut.
pub async fn serve_with<F, Fut>(
    listener: TcpListener,
    mut connection: F,
    shutdown: impl Future<Output = ()>,
    options: Options,
) -> Drained
where
    F: FnMut(TcpStream, SocketAddr, Draining) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Options {
        grace,
        max_connections,
        connections,
    } = options;
    let (drain, draining) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)));
    let mut warned: Option<std::time::Instant> = None;
    loop {
        if slots.available_permits() == 0 {
            connections.at_cap.fetch_add(1, Ordering::Relaxed);
            // Once per 10 s at most: a server held at its cap would otherwise log per close.
            if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                warned = Some(std::time::Instant::now());
                tracing::warn!(
                    "{max_connections} connections open: not accepting more until one closes \
                     (--max-connections)"
                );
            }
        }
        // One wait for the three things that can happen: shutdown, a connection ending,
        // and (only with a free slot) a new connection.
        let free = slots.available_permits() > 0;
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Reap finished connections as they end, so the set stays the size of what is open.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept(), if free => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed on {:?}: {e}", listener.local_addr().ok());
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Only this loop takes permits, and it saw one free just now.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        // Latency is what this project measures; small writes must not wait for acks.
        let _ = stream.set_nodelay(true);
        let conn = connection(stream, peer, Draining(draining.clone()));
        let open = connections.clone();
        open.open.fetch_add(1, Ordering::Relaxed);
        conns.spawn(async move {
            conn.await;
            open.open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    drop(listener);
    let _ = drain.send(true);
    let all_done = async { while conns.join_next().await.is_some() {} };
    let cut = match tokio::time::timeout(grace, all_done).await {
        Ok(()) => 0,
        Err(_) => conns.len(),
    };
    connections.cutting.store(cut > 0, Ordering::Relaxed);
    // Whatever is left holds the server's state: end it now rather than after the caller.
    conns.shutdown().await;
    Drained { cut }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_in_use_names_the_flag() {
        let first = bind("127.0.0.1:0".parse().unwrap(), "--listen").unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind(addr, "--listen").unwrap_err();
        assert!(matches!(err, BindError::InUse { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("cannot listen on {addr}: the port is in use; stop the other process or pass --listen ADDR")
        );
    }

    #[tokio::test]
    async fn draining_waits_for_the_grace_then_cuts() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), "--listen").unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // The first connection ignores draining (a stuck request), the second honours it.
        let mut accepted = 0;
        let server = tokio::spawn(serve(
            listener,
            move |_stream, _peer, mut draining: Draining| {
                accepted += 1;
                let stuck = accepted == 1;
                async move {
                    if stuck {
                        std::future::pending::<()>().await;
                    } else {
                        draining.started().await;
                    }
                }
            },
            async move {
                let _ = stopped.await;
            },
            Duration::from_millis(200),
        ));
        let _a = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _b = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = stop.send(());
        let started = std::time::Instant::now();
        let drained = server.await.unwrap();
        assert_eq!(drained, Drained { cut: 1 });
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}
