//! A listener's connections: accepted under a cap and served on the
//! [`EventLoops`], TLS handshakes under their own cap and deadline, HTTP/1.1
//! (hyper, driven here rather than by `axum::serve`, which has no timeouts)
//! with a header timeout, an idle
//! keep-alive timeout and a slow-body timeout in both directions; a graceful
//! stop. What a client gets when over a limit is in docs/configuration.md
//! ("Connections").
//!
//! Each connection is watched by its own task, which knows from a few
//! atomics (set by the socket wrapper [`Watched`] and the request wrapper
//! [`Svc`]) whether a request is in progress, since when the connection is
//! idle, since when the next request's head is arriving and since when a
//! write waits for a client that reads nothing; it closes the connection when
//! the deadline that applies has passed. A request body is wrapped in
//! [`BodyTimeout`], which fails it when the client sends nothing of it for
//! `--body-timeout` while the server waits for it.

use crate::event_loops::EventLoops;
use crate::listeners::Side;
use axum::body::Body;
use bytes::Bytes;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Connection limits of every listener (each listener has its own caps).
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// A client must send a request's head (request line and headers)
    /// within this time, counted from the connection's start for its first
    /// request and from the head's first byte for later ones; else the
    /// connection is closed.
    #[arg(long, env = "WHARF_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_positive)]
    pub header_timeout: Duration,
    /// A kept-alive connection with no request in progress is closed after
    /// this long.
    #[arg(long, env = "WHARF_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_positive)]
    pub idle_timeout: Duration,
    /// A request whose body brings nothing new for this long (while the
    /// server waits for it) fails and its connection is closed; so is a
    /// connection whose client takes nothing of a response for this long.
    /// Slow but steady transfers are never cut.
    #[arg(long, env = "WHARF_BODY_TIMEOUT", default_value = "60s", value_parser = parse_positive)]
    pub body_timeout: Duration,
    /// Open connections per listener. Past it, a plain-HTTP listener
    /// answers new connections `503` with `Retry-After` and closes them; a
    /// TLS listener closes them at once.
    #[arg(long, env = "WHARF_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// TLS handshakes in progress per listener; more connections wait for a
    /// slot (within --tls-handshake-timeout).
    #[arg(long, env = "WHARF_MAX_TLS_HANDSHAKES", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_tls_handshakes: u32,
    /// A TLS client must complete its handshake within this time from its
    /// connection (waiting for a handshake slot included); else it is closed.
    #[arg(long, env = "WHARF_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_positive)]
    pub tls_handshake_timeout: Duration,
}

fn parse_positive(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err(format!("{s:?}: must be more than zero (e.g. 10s, 1m)")),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{s:?}: {e} (e.g. 10s, 1m)")),
    }
}

/// What a client over the connection cap is told to wait before retrying.
const RETRY_AFTER_SECS: u64 = 5;
/// Over-capacity answers in progress per listener; past them an
/// over-capacity connection is just closed.
const MAX_REFUSALS: usize = 64;
/// How long an over-capacity answer waits for the request's head: a client
/// answered before it has sent its request may take the answer for a
/// broken connection (hyper's client does).
const REFUSAL_HEAD_WAIT: Duration = Duration::from_secs(1);
/// How long an over-capacity answer may take in all, reading what the
/// client sent included (so that closing does not reset the connection
/// before the client reads the answer).
const REFUSAL_TIME: Duration = Duration::from_secs(2);
/// Most bytes of a refused connection's request read before the close.
const REFUSAL_READ: usize = 64 << 10;

/// Open files the server keeps besides its connections: the store, blobs
/// being written, uploads, plugin caches.
const FILES_BESIDES_CONNECTIONS: u64 = 1024;

/// Connections are open files: raise the soft limit on them to the hard
/// limit, and warn when `listeners` listeners at their caps could still run
/// out of it (an accept that fails for lack of descriptors is retried
/// after 100 ms, during which the listener answers no one).
pub fn raise_open_file_limit(listeners: usize, limits: &Limits) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return;
    }
    let want = rl.rlim_max.min(1 << 20);
    if rl.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            rl.rlim_cur = want;
        }
    }
    let need = listeners as u64 * (u64::from(limits.max_connections) + MAX_REFUSALS as u64)
        + FILES_BESIDES_CONNECTIONS;
    if rl.rlim_cur < need {
        tracing::warn!(
            open_file_limit = rl.rlim_cur,
            needed = need,
            "the open-file limit is below what {listeners} listener(s) at --max-connections {} \
             may need: raise it (ulimit -n, systemd LimitNOFILE=) or lower --max-connections",
            limits.max_connections
        );
    }
}

/// One listener's caps, shared by its connections.
struct Shared {
    limits: Limits,
    side: &'static str,
    local: SocketAddr,
    conns: Arc<Semaphore>,
    handshakes: Semaphore,
    refusals: Arc<Semaphore>,
    /// When "at the connection cap" was last logged, and how many were
    /// refused since.
    warned: Mutex<(Option<Instant>, u64)>,
}

/// A bound socket and how its connections are served.
pub struct Listener {
    pub tcp: TcpListener,
    /// TLS, or plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub limits: Limits,
    pub side: Side,
}

/// Serve `router` on `listener` until `stop` fires: connections are
/// accepted here and served on `loops`. Then stop accepting, close idle
/// connections, let requests in progress finish and return once every
/// connection is closed (the caller bounds the wait).
pub async fn serve(
    listener: Listener,
    router: axum::Router,
    loops: Arc<EventLoops>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let Listener {
        tcp,
        tls,
        limits,
        side,
    } = listener;
    let local = tcp.local_addr()?;
    let max = limits.max_connections;
    let shared = Arc::new(Shared {
        side: side.as_str(),
        local,
        conns: Arc::new(Semaphore::new(max as usize)),
        handshakes: Semaphore::new(limits.max_tls_handshakes as usize),
        refusals: Arc::new(Semaphore::new(MAX_REFUSALS)),
        warned: Mutex::new((None, 0)),
        limits,
    });
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = tcp.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    tracing::warn!("accept on {local}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = shared.conns.clone().try_acquire_owned() else {
            over_capacity(&shared, stream, tls.is_none());
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Moved to the loop's own epoll: taken out of this runtime's here
        // and registered with the loop's there.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, "cannot hand the connection over: {e}");
                continue;
            }
        };
        let (shared, router, stop, tls) =
            (shared.clone(), router.clone(), stop.clone(), tls.clone());
        let (event_loop, seat) = loops.place();
        event_loop.spawn(async move {
            let _held = (permit, seat);
            let stream = match TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%peer, "cannot serve the connection: {e}");
                    return;
                }
            };
            crate::metrics::connection_opened(shared.side);
            connection(&shared, stream, peer, tls, router, stop).await;
            crate::metrics::connection_ended(shared.side);
        });
    }
    // Stop accepting at once: the socket closes here.
    drop(tcp);
    // Every connection holds a permit until it is closed.
    let _all = shared.conns.acquire_many(max).await;
    Ok(())
}

/// A connection past the cap: a plain-HTTP client gets a short `503` with
/// `Retry-After` once its request's head arrived (or after
/// [`REFUSAL_HEAD_WAIT`]); the rest of its request is read and dropped, so
/// that the close does not reset the connection before it reads the answer.
/// A TLS client, or any client while [`MAX_REFUSALS`] answers are under way,
/// is closed at once.
fn over_capacity(shared: &Arc<Shared>, stream: TcpStream, plain: bool) {
    crate::metrics::connection_closed(shared.side, "over-capacity");
    {
        let mut warned = shared.warned.lock().unwrap();
        warned.1 += 1;
        if warned
            .0
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(
                listener = %shared.local,
                max_connections = shared.limits.max_connections,
                refused = warned.1,
                "at the connection cap: refusing new connections"
            );
            *warned = (Some(Instant::now()), 0);
        }
    }
    if !plain {
        return;
    }
    let Ok(permit) = shared.refusals.clone().try_acquire_owned() else {
        return;
    };
    let body = format!(
        "This server has too many open connections ({} on this listener): retry in {RETRY_AFTER_SECS} s.\n",
        shared.limits.max_connections
    );
    tokio::spawn(async move {
        let _permit = permit;
        let mut stream = stream;
        let reply = format!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {RETRY_AFTER_SECS}\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(REFUSAL_TIME, async {
            let mut buf = [0u8; 4096];
            let mut head = Vec::new();
            let _ = tokio::time::timeout(REFUSAL_HEAD_WAIT, async {
                while head.len() < REFUSAL_READ && !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await? {
                        0 => break,
                        n => head.extend_from_slice(&buf[..n]),
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            stream.write_all(reply.as_bytes()).await?;
            stream.shutdown().await?;
            let mut read = head.len();
            while read < REFUSAL_READ {
                match stream.read(&mut buf).await? {
                    0 => break,
                    n => read += n,
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
    });
}

/// One accepted connection, from its TLS handshake (if any) to its close.
async fn connection(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
    stop: CancellationToken,
) {
    let Some(acceptor) = tls else {
        // Blob bodies leave a plain socket by sendfile(2).
        let stream = crate::zero_copy::SendfileStream::new(stream);
        return http(shared, stream, true, peer, router, stop).await;
    };
    let handshake = crate::listeners::handshake(
        &acceptor,
        stream,
        shared.local,
        shared.limits.tls_handshake_timeout,
        &shared.handshakes,
    );
    let stream = tokio::select! {
        _ = stop.cancelled() => return,
        r = handshake => match r {
            Ok(s) => s,
            Err(e) => {
                crate::metrics::tls_handshake_failed(shared.side);
                tracing::debug!(%peer, "TLS handshake failed: {e}");
                return;
            }
        },
    };
    http(shared, stream, false, peer, router, stop).await
}

/// HTTP/1.1 on `io` until the client or a deadline closes it, or `stop`
/// fires: then a connection with no request in progress is closed at once,
/// and one with a request finishes it first.
async fn http<I>(
    shared: &Shared,
    io: I,
    sendfile: bool,
    peer: SocketAddr,
    router: axum::Router,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = hyper_util::rt::TokioIo::new(Watched {
        inner: io,
        activity: activity.clone(),
    });
    let service = Svc {
        router,
        peer,
        activity: activity.clone(),
        body_timeout: shared.limits.body_timeout,
        side: shared.side,
        sendfile,
    };
    // hyper's own header timeout is left off: it would also bound how long
    // a kept-alive connection may wait for its next request.
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(&shared.limits);
        let changed = activity.changed.notified();
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            _ = stop.cancelled(), if !stopping => {
                if activity.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = changed => {}
            _ = sleep_until(deadline) => {
                if let Some((at, reason)) = activity.deadline(&shared.limits)
                    && at <= Instant::now()
                {
                    crate::metrics::connection_closed(shared.side, reason);
                    tracing::debug!(%peer, reason, "closing the connection");
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<(Instant, &'static str)>) {
    match deadline {
        Some((at, _)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What a connection is doing, as far as its deadlines go. Times are
/// milliseconds since `start`, plus one (0: not set).
struct Activity {
    start: Instant,
    /// Requests whose response has not been sent (or dropped) yet.
    in_flight: AtomicUsize,
    /// Whether a request has started on this connection.
    served: AtomicBool,
    /// When the last response ended.
    idle_since: AtomicU64,
    /// When the first byte arrived since the connection became idle: the
    /// next request's head is arriving.
    head_since: AtomicU64,
    /// Since when a write waits for the client to take bytes.
    write_blocked_since: AtomicU64,
    /// Woken when a deadline comes nearer.
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    fn at(&self, stamp: u64) -> Instant {
        self.start + Duration::from_millis(stamp.saturating_sub(1))
    }

    /// The deadline that applies now, and what passing it means.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, &'static str)> {
        // A write that waits for the client: also after the last response
        // body was handed over, while its last bytes are still unsent.
        let blocked = self.write_blocked_since.load(Ordering::Acquire);
        let send = (blocked != 0).then(|| (self.at(blocked) + limits.body_timeout, "send-timeout"));
        let other = if self.in_flight.load(Ordering::Acquire) > 0 {
            // The request body has its own timeout (`BodyTimeout`); the
            // server may take its time to answer.
            None
        } else if !self.served.load(Ordering::Acquire) {
            Some((self.start + limits.header_timeout, "header-timeout"))
        } else {
            match self.head_since.load(Ordering::Acquire) {
                0 => {
                    let idle = self.idle_since.load(Ordering::Acquire);
                    Some((self.at(idle) + limits.idle_timeout, "idle-timeout"))
                }
                head => Some((self.at(head) + limits.header_timeout, "header-timeout")),
            }
        };
        match (send, other) {
            (Some(s), Some(o)) => Some(if s.0 <= o.0 { s } else { o }),
            (s, o) => s.or(o),
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Release);
        self.head_since.store(0, Ordering::Release);
        InFlight(self.clone())
    }

    fn read(&self) {
        if self.head_since.load(Ordering::Relaxed) == 0
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.served.load(Ordering::Relaxed)
        {
            self.head_since.store(self.now(), Ordering::Release);
            self.changed.notify_one();
        }
    }

    fn write_blocked(&self, blocked: bool) {
        let was = self.write_blocked_since.load(Ordering::Relaxed);
        if blocked && was == 0 {
            self.write_blocked_since
                .store(self.now(), Ordering::Release);
            self.changed.notify_one();
        } else if !blocked && was != 0 {
            self.write_blocked_since.store(0, Ordering::Release);
        }
    }
}

/// A request in progress: ends when its response body is dropped (sent,
/// or abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.idle_since.store(a.now(), Ordering::Release);
            a.changed.notify_one();
        }
    }
}

/// The connection's socket, noting reads and writes that wait for the
/// client in its [`Activity`].
struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> Watched<I> {
    fn note<T>(&self, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        self.activity.write_blocked(polled.is_pending());
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The router as hyper's service: every request gets the peer's address
/// (`ConnectInfo`, as `axum::serve` gives it), a body with a timeout, and
/// counts as in progress until its response body is dropped.
#[derive(Clone)]
struct Svc {
    router: axum::Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    body_timeout: Duration,
    side: &'static str,
    /// The socket is a [`crate::zero_copy::SendfileStream`].
    sendfile: bool,
}

type Answer = Pin<Box<dyn Future<Output = Result<axum::response::Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Svc {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Answer {
        let in_flight = self.activity.request_started();
        let (timeout, side) = (self.body_timeout, self.side);
        let mut req = req.map(|body| Body::new(BodyTimeout::new(body, timeout, side)));
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let answer = tower_service::Service::call(&mut self.router.clone(), req);
        let answer = crate::zero_copy::answering(self.sendfile, answer);
        Box::pin(async move {
            let resp = answer.await?;
            Ok(resp.map(|inner| Body::new(Tracked { inner, in_flight })))
        })
    }
}

/// A response body that keeps its request in progress until dropped.
struct Tracked {
    inner: Body,
    #[allow(dead_code)] // Held for its Drop.
    in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails when its client sends nothing for `timeout`
/// while the server waits for it. Time the server spends elsewhere (not
/// polling the body) never counts.
struct BodyTimeout {
    inner: hyper::body::Incoming,
    timeout: Duration,
    side: &'static str,
    /// Since when the server waits for the next piece (none: it does not).
    waiting_since: Option<Instant>,
    /// Fires at or before the deadline; moved only when it fires early,
    /// so that a fast upload does not reset a timer for every piece.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    failed: bool,
}

impl BodyTimeout {
    fn new(inner: hyper::body::Incoming, timeout: Duration, side: &'static str) -> Self {
        BodyTimeout {
            inner,
            timeout,
            side,
            waiting_since: None,
            sleep: None,
            failed: false,
        }
    }
}

/// The error of a request body whose client stopped sending.
#[derive(Debug, thiserror::Error)]
#[error("the client sent nothing of the request body for {0:?} (--body-timeout)")]
pub struct BodyStalled(pub Duration);

impl http_body::Body for BodyTimeout {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting_since = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = *this.waiting_since.get_or_insert_with(Instant::now) + this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        while sleep.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                this.failed = true;
                crate::metrics::connection_closed(this.side, "body-timeout");
                return Poll::Ready(Some(Err(BodyStalled(this.timeout).into())));
            }
            sleep.as_mut().reset(deadline);
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args as _, FromArgMatches as _};

    fn limits(args: &[&str]) -> Result<Limits, String> {
        let cmd = Limits::augment_args(clap::Command::new("serve"));
        let m = cmd
            .try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Limits::from_arg_matches(&m).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_refusals() {
        let l = limits(&[]).unwrap();
        assert_eq!(l.header_timeout, Duration::from_secs(10));
        assert_eq!(l.idle_timeout, Duration::from_secs(60));
        assert_eq!(l.body_timeout, Duration::from_secs(60));
        assert_eq!(l.max_connections, 4096);
        assert_eq!(l.max_tls_handshakes, 256);
        assert_eq!(l.tls_handshake_timeout, Duration::from_secs(10));
        assert!(
            limits(&["--header-timeout", "0s"])
                .unwrap_err()
                .contains("more than zero")
        );
        assert!(limits(&["--max-connections", "0"]).is_err());
    }

    #[test]
    fn deadlines_follow_the_connection() {
        let l = limits(&[
            "--header-timeout",
            "2s",
            "--idle-timeout",
            "9s",
            "--body-timeout",
            "5s",
        ])
        .unwrap();
        let near = |at: Instant, want: Duration| {
            let left = at.saturating_duration_since(Instant::now());
            assert!(
                left <= want && left + Duration::from_millis(500) > want,
                "{left:?} vs {want:?}"
            );
        };
        let a = Arc::new(Activity::new());
        // A new connection: its first head within the header timeout.
        assert_eq!(
            a.deadline(&l),
            Some((a.start + l.header_timeout, "header-timeout"))
        );
        a.read();
        assert_eq!(
            a.deadline(&l),
            Some((a.start + l.header_timeout, "header-timeout"))
        );
        // A request in progress: no deadline unless a write waits.
        let req = a.request_started();
        assert_eq!(a.deadline(&l), None);
        a.write_blocked(true);
        let (at, reason) = a.deadline(&l).unwrap();
        assert_eq!(reason, "send-timeout");
        near(at, l.body_timeout);
        a.write_blocked(false);
        assert_eq!(a.deadline(&l), None);
        // Idle after the response.
        drop(req);
        let (at, reason) = a.deadline(&l).unwrap();
        assert_eq!(reason, "idle-timeout");
        near(at, l.idle_timeout);
        // The last bytes of that response wait for a client reading nothing.
        a.write_blocked(true);
        let (at, reason) = a.deadline(&l).unwrap();
        assert_eq!(reason, "send-timeout");
        near(at, l.body_timeout);
        a.write_blocked(false);
        // The next head's first byte: the header timeout from there.
        a.read();
        let (at, reason) = a.deadline(&l).unwrap();
        assert_eq!(reason, "header-timeout");
        near(at, l.header_timeout);
    }
}
