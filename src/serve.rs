//! The HTTP server's own accept loop (hyper 1 through hyper-util), in place of
//! `axum::serve`, which runs hyper without any timer: a client that sends half a
//! request, or keeps a connection open and idle, would hold a descriptor forever.
//!
//! Every connection has a watchdog that closes it when:
//! - its request head is not complete within the header timeout
//!   (`NAS_SYNC_HEADER_TIMEOUT_SECS`), counted from the accept for the first request
//!   and from the first byte of each later one;
//! - it sits idle between requests (keep-alive) for the idle timeout
//!   (`NAS_SYNC_IDLE_TIMEOUT_SECS`);
//! - a request is in progress but nothing has been read or written for the idle
//!   timeout plus the request timeout (a client that stopped reading its answer).
//!
//! hyper's own `header_read_timeout` is not used: it also runs while a keep-alive
//! connection waits for its next request, so it would end every idle connection
//! after the (short) header timeout, and a proxy reusing its pooled connection would
//! race that close far more often than with a longer idle timeout.
//!
//! Connections are counted: at most `ConnLimits::max` in all and `per_address` from one
//! client address (an IPv6 client as its /64; trusted proxies, which carry every phone
//! behind them, are not limited per address). A connection over either limit gets a
//! short 503 or 429 and is closed at once, so one client cannot use up the process's
//! descriptors. Past three quarters of `max`, idle keep-alive connections are closed
//! after the header timeout instead of the idle timeout.
//!
//! The rest is what `axum::serve` did: HTTP/1 with upgrades (the WebSocket route) and
//! HTTP/2, `ConnectInfo<SocketAddr>` for handlers, `TCP_NODELAY`, accept errors
//! (EMFILE and friends) logged and backed off instead of ending the loop, and a
//! graceful shutdown that stops accepting, lets in-flight requests finish and closes
//! idle connections.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How long a connection may take or wait (see the module doc).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Time allowed for a request's head (request line and headers).
    pub header: Duration,
    /// Time an idle keep-alive connection is kept.
    pub idle: Duration,
    /// Time a request in progress may go without reading or writing a byte.
    pub stall: Duration,
}

/// How many connections may be open (see the module doc).
#[derive(Clone)]
pub struct ConnLimits {
    /// In all.
    pub max: usize,
    /// From one client address (`address_key`).
    pub per_address: usize,
    /// Peers not limited per address (trusted proxies).
    pub exempt: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

impl ConnLimits {
    /// `max` and `per_address`, nobody exempt.
    pub fn new(max: usize, per_address: usize) -> ConnLimits {
        ConnLimits {
            max: max.max(1),
            per_address: per_address.max(1),
            exempt: Arc::new(|_| false),
        }
    }
}

/// Raises this process's open-files limit to its hard limit (a NAS's default soft
/// limit of 1024 is a few hundred clients); returns the soft limit in force.
pub fn raise_open_files() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            open_files_limit()
        }
    }
}

/// The soft open-files limit of this process (0 when unknown).
pub fn open_files_limit() -> u64 {
    rlimit::Resource::NOFILE.get().map_or(0, |(soft, _)| soft)
}

/// The connections allowed when `NAS_SYNC_MAX_CONNECTIONS` is not set: the open-files
/// limit less what the database pool and the process itself need, 64 to 10,000.
pub fn default_max_connections(open_files: u64, db_connections: u32) -> usize {
    let spare = open_files.saturating_sub(u64::from(db_connections) + 64);
    usize::try_from(spare.clamp(64, 10_000)).unwrap_or(10_000)
}

/// The key a client address is counted under: an IPv4 address as it is, an IPv6
/// address's /64 (one host or subscriber gets a whole /64); IPv4-mapped IPv6 is IPv4.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The open connections, in all and per address.
struct Open {
    limits: ConnLimits,
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
    /// The total of `counts`, readable without the lock: the watchdogs read it at
    /// every change of their connection's state (every request).
    total: AtomicUsize,
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    Full,
    Address,
}

impl Open {
    fn lock(&self) -> MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let key = (!(self.limits.exempt)(peer)).then(|| address_key(peer));
        let mut counts = self.lock();
        if counts.0 >= self.limits.max {
            return Err(Refused::Full);
        }
        if let Some(k) = key {
            let n = counts.1.entry(k).or_insert(0);
            if *n >= self.limits.per_address {
                return Err(Refused::Address);
            }
            *n += 1;
        }
        counts.0 += 1;
        self.total.store(counts.0, Ordering::Relaxed);
        metrics::gauge!("http_connections").set(counts.0 as f64);
        Ok(Slot {
            open: self.clone(),
            key,
        })
    }

    /// Three quarters full: idle connections go sooner.
    fn pressed(&self) -> bool {
        self.total.load(Ordering::Relaxed) * 4 >= self.limits.max * 3
    }
}

/// One admitted connection; dropped when it ends.
struct Slot {
    open: Arc<Open>,
    key: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.open.lock();
        counts.0 = counts.0.saturating_sub(1);
        self.open.total.store(counts.0, Ordering::Relaxed);
        if let Some(k) = self.key
            && let Some(n) = counts.1.get_mut(&k)
        {
            *n -= 1;
            if *n == 0 {
                counts.1.remove(&k);
            }
        }
        metrics::gauge!("http_connections").set(counts.0 as f64);
    }
}

/// Answers a connection that is not admitted and closes it (at most a second spent).
async fn refuse(mut tcp: TcpStream, why: Refused) {
    let (status, code, message) = match why {
        Refused::Full => (
            "503 Service Unavailable",
            "UNAVAILABLE",
            "The server has too many connections open; try again shortly.",
        ),
        Refused::Address => (
            "429 Too Many Requests",
            "RATE_LIMITED",
            "Too many connections from this address; close some and try again.",
        ),
    };
    let body = format!(
        r#"{{"error":"{}","code":"{code}","message":"{message}","details":{{}}}}"#,
        if why == Refused::Full {
            "Unavailable"
        } else {
            "RateLimited"
        }
    );
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = tcp.write_all(answer.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and
/// waits for the open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let open = Arc::new(Open {
        limits,
        counts: Mutex::new((0, HashMap::new())),
        total: AtomicUsize::new(0),
    });
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().header_read_timeout(None).keep_alive(true);
    let builder = Arc::new(builder);
    let mut backoff = Duration::ZERO;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::ZERO;
                pair
            }
            // The peer gave up before the accept: nothing to do.
            Err(e) if per_connection(&e) => continue,
            // Out of descriptors (EMFILE, ENFILE) or memory: connections wait in the
            // backlog while some close; the loop goes on.
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64,
                    "could not accept a connection; retrying");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        let slot = match open.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                metrics::counter!("http_connections_refused_total",
                    "reason" => if why == Refused::Full { "full" } else { "address" })
                .increment(1);
                tracing::debug!(%peer, ?why, "connection refused: too many open");
                tracker.spawn(refuse(tcp, why));
                continue;
            }
        };
        // No Nagle delay: a response written in several pieces (headers, then a gzip
        // stream) would otherwise wait for the client's delayed ACK, about 40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        tracker.spawn(connection(
            tcp,
            peer,
            app.clone(),
            builder.clone(),
            timeouts,
            slot,
            stop.clone(),
        ));
    }
    drop(listener);
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Accept errors about one connection only (the loop goes on at once).
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Serves one connection until it ends, its watchdog fires, or shutdown lets its
/// in-flight requests finish.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    timeouts: Timeouts,
    slot: Slot,
    stop: CancellationToken,
) {
    let watch = Arc::new(Watch::new(timeouts, slot.open.clone()));
    let _slot = slot;
    let io = TokioIo::new(Watched {
        inner: tcp,
        watch: watch.clone(),
    });
    let service = PerConnection {
        app,
        peer,
        watch: watch.clone(),
    };
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            reason = watch.expired() => {
                tracing::debug!(%peer, reason, "closing a connection");
                return;
            }
            () = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Where a connection is in its life, for the watchdog.
struct WatchState {
    /// Requests in progress (their answers not yet fully written).
    busy: usize,
    /// No request seen yet: the head is due `header` after the accept.
    fresh: bool,
    /// When the connection last became idle (the accept, or an answer's end).
    idle_since: Instant,
    /// The first byte of the next request, read while idle.
    first_byte: Option<Instant>,
    /// The last byte read or written.
    last_io: Instant,
}

/// One connection's watchdog state, shared by its IO, its service and its task.
struct Watch {
    timeouts: Timeouts,
    /// The server's connections: under pressure, idle ones go sooner.
    open: Arc<Open>,
    state: Mutex<WatchState>,
    changed: tokio::sync::Notify,
}

impl Watch {
    fn new(timeouts: Timeouts, open: Arc<Open>) -> Watch {
        let now = Instant::now();
        Watch {
            timeouts,
            open,
            state: Mutex::new(WatchState {
                busy: 0,
                fresh: true,
                idle_since: now,
                first_byte: None,
                last_io: now,
            }),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, WatchState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When the connection is to be closed if nothing changes, and why.
    fn deadline(&self) -> (Instant, &'static str) {
        let s = self.lock();
        let t = self.timeouts;
        if s.busy > 0 {
            (s.last_io + t.stall, "stalled")
        } else if s.fresh {
            (s.idle_since + t.header, "header timeout")
        } else if let Some(first) = s.first_byte {
            (first + t.header, "header timeout")
        } else if self.open.pressed() {
            (
                s.idle_since + t.idle.min(t.header),
                "idle timeout (many connections open)",
            )
        } else {
            (s.idle_since + t.idle, "idle timeout")
        }
    }

    /// Resolves when the deadline passes (with the reason).
    async fn expired(&self) -> &'static str {
        loop {
            let (deadline, reason) = self.deadline();
            if Instant::now() >= deadline {
                return reason;
            }
            // Looked at again within a second: pressure may have come meanwhile.
            let wake = deadline.min(Instant::now() + Duration::from_secs(1));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = self.changed.notified() => {}
            }
        }
    }

    /// Bytes were read: the first of a request's head starts its header timeout.
    fn read(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        s.last_io = now;
        if s.busy == 0 && !s.fresh && s.first_byte.is_none() {
            s.first_byte = Some(now);
            drop(s);
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        self.lock().last_io = Instant::now();
    }

    /// A request's head is complete: busy until its answer is written (or dropped).
    fn begin(self: &Arc<Self>) -> Busy {
        {
            let mut s = self.lock();
            s.busy += 1;
            s.fresh = false;
            s.first_byte = None;
            s.last_io = Instant::now();
        }
        self.changed.notify_one();
        Busy(self.clone())
    }
}

/// A request in progress; dropped with its answer's body.
struct Busy(Arc<Watch>);

impl Drop for Busy {
    fn drop(&mut self) {
        {
            let mut s = self.0.lock();
            s.busy = s.busy.saturating_sub(1);
            if s.busy == 0 {
                s.idle_since = Instant::now();
                s.first_byte = None;
            }
        }
        self.0.changed.notify_one();
    }
}

/// The TCP stream, telling the watchdog about every byte read or written.
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.watch.read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.watch.wrote();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.watch.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The router for one connection: adds `ConnectInfo` and marks the connection busy
/// from a request's head until its answer's body is done.
#[derive(Clone)]
struct PerConnection {
    app: Router,
    peer: SocketAddr,
    watch: Arc<Watch>,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for PerConnection {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, mut req: Request<Incoming>) -> Answer {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let busy = self.watch.begin();
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(req).await?;
            Ok(response.map(|body| Tracked { body, _busy: busy }))
        })
    }
}

/// An answer's body, holding its request's [`Busy`] until hyper drops it.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
