//! Prometheus metrics, served as text (format 0.0.4) at `/metrics` on every
//! listener.
//!
//! One process-wide registry: the modules that count (plugin runtime, tasks,
//! listeners) do so with a one-line call into this module, without carrying
//! a handle around. Labels are bounded: route *templates* (never raw paths),
//! a fixed set of methods, plugin names, task kinds.

use crate::app::App;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    listener: &'static str,
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    listener: &'static str,
    route: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    listener: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    /// `ok`, or the failure code: `plugin-trap`, `plugin-deadline` (epoch
    /// interrupt at the deadline), `canceled` (epoch interrupt on cancel),
    /// `plugin-out-of-memory`, ...
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PlanLabels {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    kind: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    listener: &'static str,
    /// `over-capacity`, `header-timeout`, `idle-timeout`, `body-timeout`,
    /// `send-timeout` (see `connections`).
    reason: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Histograms<RouteLabels>,
    bytes: Family<BytesLabels, Counter>,
    handshake_failures: Family<ListenerLabels, Counter>,
    connections_open: Family<ListenerLabels, Gauge>,
    connections_closed: Family<ClosedLabels, Counter>,
    plugin_calls: Family<PluginLabels, Counter>,
    plans_repeated: Family<PlanLabels, Counter>,
    bytes_sent_by_sendfile: Counter,
    tasks_running: Family<KindLabels, Gauge>,
    tasks_ended: Family<TaskLabels, Counter>,
    task_duration: Histograms<TaskLabels>,
    blob_bytes: Gauge,
    blob_count: Gauge,
    /// The scan behind the blob gauges.
    blob_scan: Mutex<BlobScan>,
}

/// The blob gauges' scan: it walks the store in the background, a page at
/// a time; a scrape only starts it, and answers with the last figures.
#[derive(Default)]
struct BlobScan {
    running: bool,
    /// No new scan before this: [`BLOB_SCAN_EVERY`] after the last one
    /// ended, or ten times what it took, whichever is later, so a store of
    /// a million blobs costs at most a tenth of a core.
    next: Option<Instant>,
}

/// Seconds, from 0.5 ms to ~16 s: manifest GETs land at the low end, blob
/// transfers' first bytes in the middle.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Seconds, from 10 ms to ~3 h.
fn task_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 3.0, 14))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("wharf");
    let requests = Family::default();
    registry.register(
        "http_requests",
        "HTTP requests answered, by listener, route template, method and status",
        requests.clone(),
    );
    let latency: Histograms<RouteLabels> = Family::new_with_constructor(request_histogram);
    registry.register_with_unit(
        "http_request_duration",
        "Time from a request to its response headers",
        Unit::Seconds,
        latency.clone(),
    );
    let bytes = Family::default();
    registry.register_with_unit(
        "http_response_body",
        "Response body bytes sent",
        Unit::Bytes,
        bytes.clone(),
    );
    let handshake_failures = Family::default();
    registry.register(
        "tls_handshake_failures",
        "Connections to a TLS listener that did not complete a handshake (including plain HTTP)",
        handshake_failures.clone(),
    );
    let connections_open = Family::default();
    registry.register(
        "connections_open",
        "Open connections (TLS handshakes in progress included), by listener",
        connections_open.clone(),
    );
    let connections_closed = Family::default();
    registry.register(
        "connections_closed",
        "Connections refused or closed by a limit (over-capacity, header-timeout, idle-timeout, \
         send-timeout) and requests failed by body-timeout, by listener and reason",
        connections_closed.clone(),
    );
    let plugin_calls = Family::default();
    registry.register(
        "plugin_calls",
        "Plugin calls by plugin and outcome (ok, plugin-trap, plugin-deadline = epoch interrupt, ...)",
        plugin_calls.clone(),
    );
    let plans_repeated = Family::default();
    registry.register(
        "plans_repeated",
        "Registry requests answered with a plan the plugin gave before for the same request and publication, without a plugin call (http::plan_cache)",
        plans_repeated.clone(),
    );
    let bytes_sent_by_sendfile = Counter::default();
    registry.register_with_unit(
        "blob_sendfile",
        "Blob body bytes sent with sendfile(2), straight from the page cache to a plain-TCP socket (zero_copy)",
        Unit::Bytes,
        bytes_sent_by_sendfile.clone(),
    );
    let tasks_running = Family::default();
    registry.register(
        "tasks_running",
        "Tasks running in this process",
        tasks_running.clone(),
    );
    let tasks_ended = Family::default();
    registry.register(
        "tasks_ended",
        "Tasks run by this process that ended, by kind and final state",
        tasks_ended.clone(),
    );
    let task_duration: Histograms<TaskLabels> = Family::new_with_constructor(task_histogram);
    registry.register_with_unit(
        "task_duration",
        "Run time of ended tasks",
        Unit::Seconds,
        task_duration.clone(),
    );
    let blob_bytes = Gauge::default();
    registry.register_with_unit(
        "blob_store",
        "Size of the blob store (refreshed at most every 10 s)",
        Unit::Bytes,
        blob_bytes.clone(),
    );
    let blob_count = Gauge::default();
    registry.register(
        "blob_store_blobs",
        "Blobs in the blob store (refreshed at most every 10 s)",
        blob_count.clone(),
    );
    Metrics {
        registry,
        requests,
        latency,
        bytes,
        handshake_failures,
        connections_open,
        connections_closed,
        plugin_calls,
        plans_repeated,
        bytes_sent_by_sendfile,
        tasks_running,
        tasks_ended,
        task_duration,
        blob_bytes,
        blob_count,
        blob_scan: Mutex::new(BlobScan::default()),
    }
});

/// How often the blob store gauges may be recomputed: a scan stats every
/// blob.
const BLOB_SCAN_EVERY: Duration = Duration::from_secs(10);

/// A plugin call ended: `outcome` is `ok` or [`PluginError::code`].
///
/// [`PluginError::code`]: wharf_runtime::engine::PluginError::code
pub fn plugin_call(plugin: &str, outcome: &'static str) {
    METRICS
        .plugin_calls
        .get_or_create(&PluginLabels {
            plugin: plugin.to_string(),
            outcome,
        })
        .inc();
}

/// `n` bytes of a blob body left by sendfile(2).
pub fn sent_by_sendfile(n: usize) {
    METRICS.bytes_sent_by_sendfile.inc_by(n as u64);
}

/// A registry request of `plugin` was answered with a plan given again.
pub fn plan_repeated(plugin: &str) {
    thread_local! {
        /// This thread's handles of the family's counters, by plugin.
        static COUNTERS: std::cell::RefCell<hashbrown::HashMap<String, Counter>> =
            Default::default();
    }
    COUNTERS.with_borrow_mut(|counters| {
        if let Some(c) = counters.get(plugin) {
            c.inc();
            return;
        }
        let c = METRICS
            .plans_repeated
            .get_or_create(&PlanLabels {
                plugin: plugin.to_string(),
            })
            .clone();
        c.inc();
        counters.insert(plugin.to_string(), c);
    })
}

/// A task started running in this process.
pub fn task_started(kind: &str) {
    METRICS
        .tasks_running
        .get_or_create(&KindLabels {
            kind: kind.to_string(),
        })
        .inc();
}

/// A task that [`task_started`] ended in `state` after `ran`.
pub fn task_ended(kind: &str, state: &'static str, ran: Duration) {
    let m = &*METRICS;
    m.tasks_running
        .get_or_create(&KindLabels {
            kind: kind.to_string(),
        })
        .dec();
    let labels = TaskLabels {
        kind: kind.to_string(),
        state,
    };
    m.tasks_ended.get_or_create(&labels).inc();
    m.task_duration
        .get_or_create(&labels)
        .observe(ran.as_secs_f64());
}

/// A connection to a TLS listener failed before its handshake completed.
pub fn tls_handshake_failed(listener: &'static str) {
    METRICS
        .handshake_failures
        .get_or_create(&ListenerLabels { listener })
        .inc();
}

/// A listener accepted a connection (within its cap).
pub fn connection_opened(listener: &'static str) {
    METRICS
        .connections_open
        .get_or_create(&ListenerLabels { listener })
        .inc();
}

/// A connection that [`connection_opened`] counted is closed.
pub fn connection_ended(listener: &'static str) {
    METRICS
        .connections_open
        .get_or_create(&ListenerLabels { listener })
        .dec();
}

/// A limit refused or closed a connection, or failed a request's body.
pub fn connection_closed(listener: &'static str, reason: &'static str) {
    METRICS
        .connections_closed
        .get_or_create(&ClosedLabels { listener, reason })
        .inc();
}

/// `GET /metrics`.
pub async fn handler(State(app): State<Arc<App>>) -> Response {
    refresh_blob_gauges(&app);
    let mut text = String::with_capacity(16 * 1024);
    if let Err(e) =
        prometheus_client::encoding::prometheus_text::encode(&mut text, &METRICS.registry)
    {
        tracing::error!("cannot encode metrics: {e}");
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode metrics\n",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

/// Start a scan of the blob store for its gauges when one is due; the
/// scrape does not wait for it (it grows with the store).
fn refresh_blob_gauges(app: &Arc<App>) {
    {
        let mut scan = METRICS.blob_scan.lock().unwrap();
        if scan.running || scan.next.is_some_and(|t| Instant::now() < t) {
            return;
        }
        scan.running = true;
    }
    /// Ends the scan however it ends (a panic too): the next is due then.
    struct Ended(Instant);
    impl Drop for Ended {
        fn drop(&mut self) {
            let mut scan = METRICS.blob_scan.lock().unwrap_or_else(|p| p.into_inner());
            scan.running = false;
            scan.next = Some(Instant::now() + BLOB_SCAN_EVERY.max(self.0.elapsed() * 10));
        }
    }
    let blobs = app.blobs.clone();
    app.runtime.spawn_blocking(move || {
        let _ended = Ended(Instant::now());
        let (mut count, mut bytes) = (0i64, 0i64);
        let walked = blobs.walk(|page| {
            for (d, _) in page {
                count += 1;
                bytes += blobs.stat(&d).unwrap_or(0) as i64;
            }
            Ok(std::ops::ControlFlow::Continue(()))
        });
        match walked {
            Ok(()) => {
                METRICS.blob_count.set(count);
                METRICS.blob_bytes.set(bytes);
            }
            Err(e) => tracing::warn!("cannot measure the blob store: {e}"),
        }
    });
}

/// The route a response answered, put on it for [`track`]'s labels: by the
/// router's route layer ([`record_route`]), or by the registry's dispatch
/// for the plugin whose route prefix the request fell under ([`Route::plugin`]).
#[derive(Clone)]
pub enum Route {
    /// An axum route's template (`/api/v1/repositories/{id}`).
    Template(MatchedPath),
    /// The route prefix (`/v2/`, labelled `/v2/*`) of a plugin: its
    /// `route`-th.
    Plugin {
        plugin: Arc<wharf_runtime::engine::Plugin>,
        route: usize,
    },
}

impl Route {
    /// The route of `plugin` that `path` falls under, if any.
    pub fn plugin(plugin: &Arc<wharf_runtime::engine::Plugin>, path: &str) -> Option<Route> {
        plugin
            .info
            .routes
            .iter()
            .position(|r| path.starts_with(r.as_str()) || r.strip_suffix('/') == Some(path))
            .map(|route| Route::Plugin {
                plugin: plugin.clone(),
                route,
            })
    }

    /// What the route's label is spelled from.
    fn label(&self) -> (RouteKind, &str) {
        match self {
            Route::Template(m) => (RouteKind::Template, m.as_str()),
            Route::Plugin { plugin, route } => (RouteKind::Plugin, &plugin.info.routes[*route]),
        }
    }

    /// Put the route on `resp`.
    pub fn tag(self, resp: &mut Response) {
        resp.extensions_mut().insert(self);
    }
}

/// Route layer: note the matched route template on the response for [`track`].
pub async fn record_route(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    if let Some(m) = matched {
        Route::Template(m).tag(&mut resp);
    }
    resp
}

/// What [`track`] needs: the listener's name and the plugins (whose route
/// prefixes name the requests no route and no plugin answered for).
#[derive(Clone)]
pub struct Tracker {
    pub app: Arc<App>,
    pub listener: &'static str,
}

/// Outer layer: count the request, its latency and its body bytes.
pub async fn track(State(t): State<Tracker>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let uri = req.uri().clone();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let elapsed = start.elapsed().as_secs_f64();
    let counter = match resp.extensions().get::<Route>() {
        Some(route) => route_handles(t.listener, route.label(), method, |h| {
            h.answered(status, elapsed)
        }),
        // Neither a route nor a plugin answered (a path no plugin claims,
        // one that is not canonical): rare, and labelled from the path.
        None => {
            let unrouted = plugin_route(&t.app, uri.path());
            route_handles(t.listener, (RouteKind::Template, &unrouted), method, |h| {
                h.answered(status, elapsed)
            })
        }
    };
    resp.map(|body| {
        Body::new(Counted {
            inner: body,
            counter,
        })
    })
}

/// What a route's label is spelled from: a template, as it is, or a
/// plugin's route prefix, with `*` after it.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
enum RouteKind {
    Template,
    Plugin,
}

impl RouteKind {
    fn spell(self, name: &str) -> String {
        match self {
            RouteKind::Template => name.to_string(),
            RouteKind::Plugin => format!("{name}*"),
        }
    }
}

/// The metrics of one listener, route and method, taken from the families
/// once per thread: counting a request then costs a lookup in a small
/// map of this thread's, not three label hashes under the families' locks.
struct RouteHandles {
    route: String,
    listener: &'static str,
    method: &'static str,
    latency: Histogram,
    bytes: Counter,
    /// Requests by status, as statuses are first seen.
    requests: Vec<(u16, Counter)>,
}

impl RouteHandles {
    /// Count one request answered with `status` after `elapsed` seconds;
    /// the counter of its body bytes.
    fn answered(&mut self, status: u16, elapsed: f64) -> Counter {
        let requests = match self.requests.iter().find(|(s, _)| *s == status) {
            Some((_, c)) => c,
            None => {
                let c = METRICS
                    .requests
                    .get_or_create(&RequestLabels {
                        listener: self.listener,
                        route: self.route.clone(),
                        method: self.method,
                        status,
                    })
                    .clone();
                self.requests.push((status, c));
                &self.requests.last().expect("just pushed").1
            }
        };
        requests.inc();
        self.latency.observe(elapsed);
        self.bytes.clone()
    }
}

/// Where [`RouteHandles`] are found: by listener, route and method.
#[derive(Hash, PartialEq, Eq)]
struct RouteKey {
    listener: &'static str,
    route: (RouteKind, Box<str>),
    method: &'static str,
}

/// [`RouteKey`] borrowed, to look up without allocating.
#[derive(Hash)]
struct RouteAsked<'a> {
    listener: &'static str,
    route: (RouteKind, &'a str),
    method: &'static str,
}

impl hashbrown::Equivalent<RouteKey> for RouteAsked<'_> {
    fn equivalent(&self, key: &RouteKey) -> bool {
        self.listener == key.listener
            && self.method == key.method
            && self.route.0 == key.route.0
            && self.route.1 == &*key.route.1
    }
}

thread_local! {
    /// Labels are bounded (route templates, plugin prefixes, a fixed set of
    /// methods), and so is this map.
    static ROUTES: std::cell::RefCell<hashbrown::HashMap<RouteKey, RouteHandles>> =
        Default::default();
}

/// Run `f` on the metrics of `listener`, `route` and `method`.
fn route_handles<R>(
    listener: &'static str,
    (kind, name): (RouteKind, &str),
    method: &'static str,
    f: impl FnOnce(&mut RouteHandles) -> R,
) -> R {
    let asked = RouteAsked {
        listener,
        route: (kind, name),
        method,
    };
    ROUTES.with_borrow_mut(|routes| {
        if let Some(h) = routes.get_mut(&asked) {
            return f(h);
        }
        let spelled = kind.spell(name);
        let m = &*METRICS;
        let handles = RouteHandles {
            latency: m
                .latency
                .get_or_create(&RouteLabels {
                    listener,
                    route: spelled.clone(),
                    method,
                })
                .clone(),
            bytes: m
                .bytes
                .get_or_create(&BytesLabels {
                    listener,
                    route: spelled.clone(),
                })
                .clone(),
            requests: Vec::new(),
            route: spelled,
            listener,
            method,
        };
        let key = RouteKey {
            listener,
            route: (kind, name.into()),
            method,
        };
        f(routes.entry(key).or_insert(handles))
    })
}

/// The route template of a request no axum route matched and no plugin
/// answered: the plugin route prefix its path falls under (`/v2/*`), else
/// `unmatched`.
fn plugin_route(app: &App, path: &str) -> String {
    match app
        .plugins
        .for_path(path)
        .and_then(|p| Route::plugin(&p, path))
    {
        Some(route) => {
            let (kind, name) = route.label();
            kind.spell(name)
        }
        None => "unmatched".into(),
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A response body that counts the bytes actually sent (a client that
/// disconnects halfway through a blob is counted for what it got).
struct Counted {
    inner: Body,
    counter: Counter,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
