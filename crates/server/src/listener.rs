//! lintel's HTTP accept loop, in place of `axum::serve`, which has no header, idle or body
//! timeouts and no connection limit: an idle client could hold every descriptor.
//!
//! Every connection is registered with what it is doing: a request in flight (from the
//! service call until its response body is dropped, so an event stream counts), or
//! waiting for one, since when. A sweeper closes those that wait too long. At the
//! connection limit a new connection sheds idle ones, never one with a request in flight:
//! first those that never completed a request (idle or slowloris), from the address
//! holding the most connections, the longest waiting first; then kept-alive ones the same
//! way. An attacker that only opens connections can thus not push out a client that uses
//! its own.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::proxies::TrustedProxies;

/// The HTTP settings an operator may tune (`[http]`).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// A request's head must be complete this long after the connection opened (its
    /// first request) or after its first byte (later ones).
    pub header_timeout: Duration,
    /// A kept-alive connection waits this long for its next request.
    pub idle_timeout: Duration,
    /// A request's body must be complete this long after its head.
    pub body_timeout: Duration,
    /// At most this many connections; `None`: as many as the descriptors allow (capped).
    pub max_connections: Option<usize>,
    /// At shutdown, requests in flight may take this long to finish.
    pub shutdown_grace: Duration,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` say who the client is.
    pub trusted_proxies: TrustedProxies,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_connections: None,
            shutdown_grace: Duration::from_secs(5),
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// Without a configured maximum, no more connections than this however many descriptors
/// there are: a door hub has no use for more, and each idle connection costs memory.
const AUTO_MAX_CONNECTIONS: usize = 16_384;

/// Listens on `addr` with a long accept queue (the kernel caps it at `somaxconn`): while
/// lintel is at its connection limit, new connections wait there rather than have their
/// SYN dropped (a client retries only after a second).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Raises the soft descriptor limit to the hard one (systemd's soft default is 1,024);
/// the soft limit in force afterwards.
pub fn raise_descriptor_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
            tracing::warn!(error = %e, soft, "the descriptor limit could not be raised");
            soft
        }
    }
}

/// How many connections `descriptors` leave room for: the rest is kept for the database,
/// the decision log, outbound HTTP, MQTT, serial ports and files (and for a batch of shed
/// connections still closing).
pub fn connections_allowed(descriptors: u64) -> usize {
    let reserve = (descriptors / 8).clamp(64, 512);
    usize::try_from(descriptors.saturating_sub(reserve)).unwrap_or(usize::MAX).max(16)
}

/// How many idle connections are shed at once (one scan of the registry for many
/// connections admitted).
fn shed_batch(max: usize) -> usize {
    (max / 64).clamp(1, 64)
}

/// The body of a request that did not arrive within the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body timeout")]
pub struct BodyTimeout;

/// Whether an error (a body extractor's, say) comes from the body timeout.
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| e.is::<BodyTimeout>())
}

const NEVER: u64 = u64::MAX;

/// Milliseconds since the server started: what connections' times are kept in.
#[derive(Clone, Copy)]
struct Clock(std::time::Instant);

impl Clock {
    fn now(self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }
}

struct Conn {
    id: u64,
    peer: SocketAddr,
    clock: Clock,
    /// Requests in flight (HTTP/2 has several at once).
    busy: AtomicU32,
    /// Whether a request was completed on it (a kept-alive connection).
    served: AtomicBool,
    /// Since when it has waited for a request: its opening, or the end of the last one.
    waiting_since: AtomicU64,
    /// When the first byte of the next request came (on a kept-alive connection).
    head_since: AtomicU64,
    /// Asks it to close: at once when nothing is in flight, else after the request.
    shed: Notify,
}

impl Conn {
    fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }

    /// When it has waited too long for a request (nothing while one is in flight: bodies
    /// have their own deadline; a response body fully handed to hyper ends its request, so
    /// a client that reads none of its answers is idle here).
    fn deadline(&self, config: &HttpConfig) -> Option<u64> {
        if self.busy() {
            return None;
        }
        let after = |since: u64, timeout: Duration| since.saturating_add(timeout.as_millis() as u64);
        let head = self.head_since.load(Ordering::Acquire);
        Some(if !self.served.load(Ordering::Acquire) {
            after(self.waiting_since.load(Ordering::Acquire), config.header_timeout)
        } else if head != NEVER {
            after(head, config.header_timeout)
        } else {
            after(self.waiting_since.load(Ordering::Acquire), config.idle_timeout)
        })
    }
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    per_address: HashMap<IpAddr, u32>,
    /// Connections asked to close whose sockets are still open: they count against the
    /// limit until they are gone.
    closing: usize,
}

impl Registry {
    fn insert(&mut self, peer: SocketAddr, clock: Clock) -> Arc<Conn> {
        self.next_id += 1;
        let conn = Arc::new(Conn {
            id: self.next_id,
            peer,
            clock,
            busy: AtomicU32::new(0),
            served: AtomicBool::new(false),
            waiting_since: AtomicU64::new(clock.now()),
            head_since: AtomicU64::new(NEVER),
            shed: Notify::new(),
        });
        self.conns.insert(conn.id, conn.clone());
        *self.per_address.entry(peer.ip()).or_default() += 1;
        conn
    }

    /// The `n` connections with nothing in flight to shed first: those that never completed
    /// a request, then kept-alive ones; each from the address holding the most
    /// connections, the longest waiting first.
    fn victims(&self, n: usize) -> Vec<u64> {
        let mut idle: Vec<_> = self
            .conns
            .values()
            .filter(|c| !c.busy())
            .map(|c| {
                let held = self.per_address.get(&c.peer.ip()).copied().unwrap_or(0);
                (c.served.load(Ordering::Acquire), Reverse(held), c.waiting_since.load(Ordering::Acquire), c.id)
            })
            .collect();
        if idle.len() > n && n > 0 {
            idle.select_nth_unstable(n - 1);
        }
        idle.truncate(n);
        idle.sort_unstable();
        idle.into_iter().map(|(.., id)| id).collect()
    }

    fn occupied(&self) -> usize {
        self.conns.len() + self.closing
    }

    /// Asks a registered connection to close (it leaves the registry, counted as closing).
    fn close(&mut self, id: u64) {
        let Some(conn) = self.remove(id) else { return };
        self.closing += 1;
        conn.shed.notify_one();
    }

    fn remove(&mut self, id: u64) -> Option<Arc<Conn>> {
        let conn = self.conns.remove(&id)?;
        if let Some(n) = self.per_address.get_mut(&conn.peer.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&conn.peer.ip());
            }
        }
        Some(conn)
    }
}

struct Shared {
    config: HttpConfig,
    max: usize,
    clock: Clock,
    builder: auto::Builder<TokioExecutor>,
    registry: Mutex<Registry>,
    /// Cancelled when lintel begins to shut down.
    stopping: CancellationToken,
    /// Cancelled when the grace is over: what is left is dropped.
    force: CancellationToken,
    /// Told when a closing connection is gone (there is room again).
    room: Notify,
    tracker: TaskTracker,
    /// When the connection limit was last reported in the log.
    warned_at: AtomicU64,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks a batch of connections with nothing in flight to close (see the module's
    /// comment for which); how many.
    fn shed(&self, registry: &mut Registry) -> usize {
        let victims = registry.victims(shed_batch(self.max));
        for &id in &victims {
            registry.close(id);
        }
        metrics::counter!("lintel_http_connections_shed_total", "why" => "limit").increment(victims.len() as u64);
        victims.len()
    }

    /// Says in the log (at most every 10 s) that the connection limit is being hit.
    fn warn_at_limit(&self, what: &str, open: usize) {
        let now = self.clock.now();
        let last = self.warned_at.load(Ordering::Relaxed);
        if (last == NEVER || now.saturating_sub(last) >= 10_000)
            && self.warned_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(open, max = self.max, "{what}");
        }
    }
}

/// Whether a new connection can be served.
enum Room {
    Made(Arc<Conn>),
    /// Every connection has a request in flight: none to shed (how many there are).
    None(usize),
    /// Connections shed are still closing.
    Coming,
}

/// lintel's HTTP server: accepts, serves with limits and timeouts, and drains at shutdown.
pub struct Http {
    shared: Arc<Shared>,
}

impl Http {
    /// With `descriptors` the soft descriptor limit; `stopping` is cancelled when lintel
    /// begins to shut down.
    pub fn new(config: HttpConfig, descriptors: u64, stopping: CancellationToken) -> Self {
        let allowed = connections_allowed(descriptors);
        let max = match config.max_connections {
            Some(n) if n > allowed => {
                tracing::warn!(
                    max_connections = n,
                    descriptors,
                    allowed,
                    "[http] max_connections is more than the descriptor limit leaves room for; using {allowed}"
                );
                allowed
            }
            Some(n) => n.max(1),
            None => allowed.min(AUTO_MAX_CONNECTIONS),
        };
        // No timer: hyper's HTTP/1 header timeout would also end kept-alive connections
        // after it (it runs while one waits for its next request), so there would be no
        // idle timeout of its own; the sweeper keeps both. HTTP/2 keep-alive pings are off
        // too: an answer to one would count as the start of a request.
        let builder = auto::Builder::new(TokioExecutor::new());
        Self {
            shared: Arc::new(Shared {
                config,
                max,
                clock: Clock(std::time::Instant::now()),
                builder,
                registry: Mutex::default(),
                stopping,
                force: CancellationToken::new(),
                room: Notify::new(),
                tracker: TaskTracker::new(),
                warned_at: AtomicU64::new(NEVER),
            }),
        }
    }

    pub fn max_connections(&self) -> usize {
        self.shared.max
    }

    /// Accepts and serves connections until `shutdown` resolves, then stops accepting.
    pub async fn accept_until(&self, listener: TcpListener, app: Router, shutdown: impl Future<Output = ()>) {
        tokio::spawn(sweep(self.shared.clone()));
        let mut shutdown = pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => self.admit(stream, peer, &app).await,
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // Out of descriptors, most likely: make room, and back off a moment
                    // rather than spin on the error.
                    let open = {
                        let mut registry = self.shared.registry();
                        if registry.closing < shed_batch(self.shared.max) {
                            self.shared.shed(&mut registry);
                        }
                        registry.occupied()
                    };
                    self.shared.warn_at_limit(&format!("accepting a connection failed: {e}"), open);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Serves a new connection if there is room, making room by shedding idle ones. Those
    /// shed still hold their sockets for a moment: at most a batch of them is let past the
    /// limit (the descriptors' reserve covers it); beyond that, this waits for them.
    async fn admit(&self, stream: TcpStream, peer: SocketAddr, app: &Router) {
        let shared = &self.shared;
        loop {
            match self.room_for(peer) {
                Room::Made(conn) => {
                    shared.tracker.spawn(serve_connection(shared.clone(), conn, stream, app.clone()));
                    return;
                }
                Room::None(open) => {
                    shared
                        .warn_at_limit("connection limit reached with every connection busy: refusing new ones", open);
                    metrics::counter!("lintel_http_connections_shed_total", "why" => "refused").increment(1);
                    refuse(&stream);
                    return;
                }
                // Bounded: a permit left from an earlier close only costs a turn of the loop.
                Room::Coming => {
                    let _ = tokio::time::timeout(Duration::from_millis(100), shared.room.notified()).await;
                }
            }
        }
    }

    fn room_for(&self, peer: SocketAddr) -> Room {
        let shared = &self.shared;
        let batch = shed_batch(shared.max);
        let mut registry = shared.registry();
        let open = registry.conns.len();
        if open >= shared.max {
            let shed = if registry.closing < batch { shared.shed(&mut registry) } else { 0 };
            if shed == 0 && registry.closing == 0 {
                return Room::None(open);
            }
            shared.warn_at_limit("connection limit reached: closing idle connections to make room", open);
        }
        if registry.conns.len() < shared.max && registry.occupied() < shared.max + batch {
            Room::Made(registry.insert(peer, shared.clock))
        } else {
            Room::Coming
        }
    }

    /// After `stopping` was cancelled: connections with nothing in flight close at once,
    /// the others after their request; what is left at `deadline` is dropped.
    pub async fn drain(&self, deadline: Instant) {
        let tracker = &self.shared.tracker;
        tracker.close();
        if tokio::time::timeout_at(deadline, tracker.wait()).await.is_err() {
            tracing::warn!(connections = tracker.len(), "requests still in flight at the end of the grace: cut off");
            self.shared.force.cancel();
            tracker.wait().await;
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Answers a connection lintel has no room for with a 503 (as far as its socket takes it
/// without waiting), and closes it.
fn refuse(stream: &TcpStream) {
    let problem = lintel_proto::Problem {
        kind: "urn:lintel:problem:unavailable".into(),
        title: "Service Unavailable".into(),
        status: 503,
        detail: "lintel has no room for another connection now; try again shortly".into(),
        extensions: Default::default(),
    };
    let body = serde_json::to_string(&problem).unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {}\r\ncontent-length: {}\r\nretry-after: 1\r\n\
         connection: close\r\n\r\n{body}",
        lintel_proto::PROBLEM_CONTENT_TYPE,
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Closes the connections that waited too long, a few times per shortest timeout.
async fn sweep(shared: Arc<Shared>) {
    let config = &shared.config;
    let every =
        (config.header_timeout.min(config.idle_timeout) / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.stopping.cancelled() => return,
        }
        let now = shared.clock.now();
        let mut registry = shared.registry();
        let expired: Vec<u64> =
            registry.conns.values().filter(|c| c.deadline(config).is_some_and(|at| at <= now)).map(|c| c.id).collect();
        for &id in &expired {
            registry.close(id);
        }
        metrics::gauge!("lintel_http_connections").set(registry.occupied() as f64);
        drop(registry);
        if !expired.is_empty() {
            metrics::counter!("lintel_http_connections_shed_total", "why" => "timeout").increment(expired.len() as u64);
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, conn: Arc<Conn>, stream: TcpStream, app: Router) {
    let _registered = Registered { shared: &shared, id: conn.id };
    let io = TokioIo::new(Watched { stream, conn: conn.clone() });
    let service = {
        let (conn, body_timeout) = (conn.clone(), shared.config.body_timeout);
        let proxies = shared.config.trusted_proxies.clone();
        hyper::service::service_fn(move |request| handle(request, &app, &conn, body_timeout, &proxies))
    };
    let mut connection = pin!(shared.builder.serve_connection(io, service));
    let mut finishing = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = conn.shed.notified(), if !finishing => {}
            () = shared.stopping.cancelled(), if !finishing => {}
            () = shared.force.cancelled() => return,
        }
        // Asked to close: nothing lost when nothing is in flight; else after the request.
        if !conn.busy() {
            return;
        }
        finishing = true;
        connection.as_mut().graceful_shutdown();
    }
}

/// Takes a connection out of the registry when its task ends (if it is still there).
struct Registered<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut registry = self.shared.registry();
        if registry.remove(self.id).is_none() {
            registry.closing -= 1;
            drop(registry);
            self.shared.room.notify_one();
        }
    }
}

fn handle(
    request: Request<Incoming>,
    app: &Router,
    conn: &Arc<Conn>,
    body_timeout: Duration,
    proxies: &TrustedProxies,
) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send + use<> {
    let in_flight = InFlight::begin(conn.clone());
    let (mut parts, body) = request.into_parts();
    // What `into_make_service_with_connect_info` gave handlers (the limiter keys on it):
    // the client, as a trusted proxy names it, else the peer.
    let client = proxies.client(conn.peer.ip(), &parts.headers);
    parts.extensions.insert(ConnectInfo(SocketAddr::new(client, conn.peer.port())));
    let body = Deadline { body, at: Instant::now() + body_timeout, sleep: None };
    let response = app.clone().oneshot(Request::from_parts(parts, Body::new(body)));
    async move {
        let response = match response.await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        Ok(response.map(|body| Body::new(Answer { body, _in_flight: in_flight })))
    }
}

/// A request in flight, from the service call until its response body is dropped.
struct InFlight(Arc<Conn>);

impl InFlight {
    fn begin(conn: Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Self(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        // Set before the count drops, so the sweeper never sees it idle with old times.
        conn.head_since.store(NEVER, Ordering::Release);
        conn.served.store(true, Ordering::Release);
        conn.waiting_since.store(conn.clock.now(), Ordering::Release);
        conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is dropped.
struct Answer {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails with [`BodyTimeout`] when it is not complete by `at`.
struct Deadline {
    body: Incoming,
    at: Instant,
    /// Made only when the body has to be waited for (most arrive with their head).
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let at = this.at;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket, noting when the first byte of a kept-alive connection's next
/// request arrives (from then on, the header timeout counts).
struct Watched {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        let conn = &self.conn;
        if buf.filled().len() > before && !conn.busy() && conn.head_since.load(Ordering::Relaxed) == NEVER {
            conn.head_since.store(conn.clock.now(), Ordering::Release);
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_room_for_other_descriptors() {
        assert_eq!(connections_allowed(1024), 896);
        assert_eq!(connections_allowed(256), 192);
        assert_eq!(connections_allowed(65_536), 65_024);
        assert_eq!(connections_allowed(10), 16);
        assert_eq!(connections_allowed(u64::MAX), usize::MAX - 512);
    }

    #[test]
    fn idle_connections_that_never_served_go_first_then_the_busiest_address_longest_waiting() {
        let clock = Clock(std::time::Instant::now());
        let mut registry = Registry::default();
        let at = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 40_000);
        let mut add = |ip: &str, served: bool, waiting_since: u64, busy: u32| {
            let conn = registry.insert(at(ip), clock);
            conn.served.store(served, Ordering::Relaxed);
            conn.waiting_since.store(waiting_since, Ordering::Relaxed);
            conn.busy.store(busy, Ordering::Relaxed);
            conn.id
        };
        let kept_alive = add("10.0.0.1", true, 1, 0);
        let in_flight = add("10.0.0.9", false, 0, 1);
        let lone_new = add("10.0.0.1", false, 5, 0);
        let crowd: Vec<u64> = (0..3).map(|i| add("10.0.0.9", false, 10 + i, 0)).collect();
        let _ = add("10.0.0.9", true, 2, 0);
        let order = registry.victims(10);
        assert_eq!(order[..4], [crowd[0], crowd[1], crowd[2], lone_new]);
        assert!(!order.contains(&in_flight), "a request in flight is never shed");
        assert_eq!(order.len(), 6);
        assert_eq!(order[5], kept_alive, "a kept-alive connection of a quiet address goes last");
        assert_eq!(registry.victims(2), [crowd[0], crowd[1]]);
        assert!(registry.victims(0).is_empty());
    }

    #[test]
    fn body_timeouts_are_found_behind_wrappers() {
        let wrapped = axum::Error::new(BodyTimeout);
        assert!(is_body_timeout(&wrapped));
        assert!(!is_body_timeout(&axum::Error::new(io::Error::other("reset"))));
    }
}
