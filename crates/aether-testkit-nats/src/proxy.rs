//! [`TcpProxy`]: a loopback TCP forwarder that can cut connections.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CUT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP proxy on a free loopback port that forwards bytes both ways to a target
/// (typically a [`NatsServer`](crate::NatsServer)), and can cut every connection.
///
/// Clients connect to [`Self::url`]. [`Self::cut`] closes every live connection and,
/// until [`Self::restore`], closes new ones right after accepting them (the port stays
/// bound, so no other process can take it). Dropping the proxy stops it and closes
/// every connection.
///
/// It runs on the tokio runtime it was started on. A client that learns other servers'
/// addresses from a cluster (INFO `connect_urls`) may reconnect around the proxy; use
/// `ConnectOptions::ignore_discovered_servers` there.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    /// `true` while cut.
    cut: watch::Sender<bool>,
    /// Connections currently forwarded.
    active: AtomicUsize,
    /// Connections accepted and forwarded since the start.
    accepted: AtomicUsize,
}

impl TcpProxy {
    /// Starts a proxy on `127.0.0.1:<free port>` forwarding to `target`.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound, or outside a tokio runtime.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap_or_else(|err| panic!("TcpProxy: cannot bind a loopback port: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("TcpProxy: cannot read the local address: {err}"));
        let shared = Arc::new(Shared {
            cut: watch::Sender::new(false),
            active: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
        });
        let accept_task = tokio::spawn(accept_loop(listener, target, Arc::clone(&shared)));
        Self {
            addr,
            target,
            shared,
            accept_task,
        }
    }

    /// Client URL of the proxy, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Closes every live connection (both sides see the TCP connection end) and closes
    /// new ones right after accepting them, until [`Self::restore`]. Returns once every
    /// live connection is closed.
    ///
    /// # Panics
    ///
    /// When the connections are not closed within 5 s (the runtime is starved).
    pub async fn cut(&self) {
        self.shared.cut.send_replace(true);
        let deadline = Instant::now() + CUT_TIMEOUT;
        while self.shared.active.load(Ordering::SeqCst) > 0 {
            assert!(
                Instant::now() < deadline,
                "TcpProxy: connections still open {CUT_TIMEOUT:?} after cut()"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Forwards new connections again after [`Self::cut`].
    pub fn restore(&self) {
        self.shared.cut.send_replace(false);
    }

    /// Whether the proxy is cut.
    pub fn is_cut(&self) -> bool {
        *self.shared.cut.borrow()
    }

    /// Number of connections being forwarded right now.
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Number of connections forwarded since the proxy started (cut-time rejects excluded).
    pub fn accepted_connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        // Ends every connection task.
        self.shared.cut.send_replace(true);
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            // E.g. too many open files: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if *shared.cut.borrow() {
            drop(inbound);
            continue;
        }
        shared.active.fetch_add(1, Ordering::SeqCst);
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let guard = ActiveGuard(Arc::clone(&shared));
        tokio::spawn(forward(inbound, target, guard));
    }
}

/// Decrements the active count when a connection task ends, however it ends.
struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn forward(mut inbound: TcpStream, target: SocketAddr, guard: ActiveGuard) {
    let mut cut = guard.0.cut.subscribe();
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target));
    let mut outbound = tokio::select! {
        result = connect => match result {
            Ok(Ok(outbound)) => outbound,
            // Target down: close the client side, as a dead server would.
            _ => return,
        },
        _ = cut.wait_for(|cut| *cut) => return,
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
    // Both streams drop here, closing both connections.
}
