//! Blobs fetched from a feed the first time a client asks for them: what a
//! repository's units name but an `on_demand` or `streamed` sync (or a
//! pull-through pull) left on the feed (`wharf_core::remote::DownloadPolicy`).
//!
//! A registry request whose plan serves such a blob (the trust rule already
//! checked that the admitted repository serves it) starts a **fill**: the
//! repository's plugin says where the blob lives now (`locate`, with fresh
//! credentials), and one download writes it to a temp file of the blob
//! store, hashing as it goes. Every request for that digest meanwhile
//! (concurrent pulls of one layer) reads the same temp file as it grows:
//! one upstream fetch, however many clients. The last byte reaches a client
//! only once the digest is verified, so a corrupt or truncated upstream
//! answer ends every client's transfer short (their connection is cut) and
//! stores nothing; the next request tries the feed again. A verified blob
//! is stored under its digest (`on_demand`) and served from the store from
//! then on, or dropped (`streamed`: fetched again for each request).
//!
//! The download belongs to no request: a client that goes away, or reads
//! slowly, neither stops it nor slows the others.

use crate::app::App;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, watch};
use wharf_core::digest::Digest;
use wharf_core::ids::RepoId;
use wharf_core::remote::DownloadPolicy;
use wharf_runtime::calls::BlobDownload;
use wharf_runtime::host::origin;
use wharf_runtime::transport::FeedTransport;
use wharf_store::blobs::BlobError;
use wharf_store::blobs::leases::Holder;

/// Bytes handed to a client per read of the temp file.
const CHUNK: u64 = 256 * 1024;
/// A feed that sends nothing for this long (before its answer or between
/// two chunks of it) fails the fill.
const IDLE: Duration = Duration::from_secs(60);

/// How far a fill got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Progress {
    /// This many bytes are in the temp file.
    Writing(u64),
    /// Every byte is there and the digest checked out.
    Verified,
    /// The download failed (why): nothing was stored.
    Failed(String),
}

/// One download of one blob, read by every request that wants it.
struct Fill {
    size: u64,
    /// The temp file (then the stored blob), read at offsets.
    file: std::fs::File,
    progress: watch::Receiver<Progress>,
}

type Slot = Arc<OnceCell<Result<Arc<Fill>, Unservable>>>;

/// The fills in progress on this node, by digest.
#[derive(Default)]
pub struct Fills {
    running: Mutex<HashMap<Digest, Slot>>,
}

/// Why a missing blob cannot be served.
#[derive(Debug, Clone)]
pub enum Unservable {
    /// The repository cannot say where the blob is (no feed, a plugin
    /// that has no such thing, an upstream that refuses): answer as for a
    /// blob that is not there, with why.
    Unknown(String),
    /// The feed could not be reached or failed: try again.
    Unavailable(String),
}

/// Answer `method` for blob `d` of `repo`, which its units name but the
/// store lacks: from a fill (started here or already running), or for a
/// HEAD from where the blob lives (its size) without fetching it.
pub async fn serve(
    app: &Arc<App>,
    repo: &RepoId,
    d: &Digest,
    head: bool,
) -> Result<Response, Unservable> {
    if head {
        let running = app.fills.running.lock().unwrap().get(d).cloned();
        let size = match running.as_ref().and_then(|s| s.get()) {
            Some(Ok(fill)) => fill.size,
            _ => locate(app, repo, d).await?.download.size.unwrap_or(0),
        };
        return Ok(answer(size, Body::empty()));
    }
    let fill = fill(app, repo, d).await?;
    let size = fill.size;
    Ok(answer(size, Body::from_stream(stream(fill))))
}

fn answer(size: u64, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    resp
}

/// Where the plugin says the blob is now (checked: on the repository's
/// feed, allowed by the outbound policy), the repository's policy, and
/// how to reach its feed.
struct Located {
    download: BlobDownload,
    url: reqwest::Url,
    policy: DownloadPolicy,
    transport: Option<Arc<FeedTransport>>,
}

async fn locate(app: &Arc<App>, repo: &RepoId, d: &Digest) -> Result<Located, Unservable> {
    let (download, repository) = crate::jobs::locate(app, repo, d).await.map_err(|f| {
        let why = format!(
            "blob {d} is not stored here and its feed cannot say where it is: {}",
            f.message
        );
        match f.cause.as_str() {
            "fetch" | "upstream-error" | "plugin-busy" | "plugin-deadline" => {
                Unservable::Unavailable(why)
            }
            _ => Unservable::Unknown(why),
        }
    })?;
    if download.digest != d.as_str() {
        return Err(Unservable::Unknown(format!(
            "the plugin located {} when asked for {d}",
            download.digest
        )));
    }
    let url: reqwest::Url = download.url.parse().map_err(|e| {
        Unservable::Unknown(format!("the plugin located {d} at an invalid URL: {e}"))
    })?;
    // Only the repository's own feed: a plugin never points the host
    // anywhere else (redirects from there are checked hop by hop).
    let feed = crate::jobs::feed_of(&repository);
    let on_feed = feed.is_some_and(|f| origin(&f) == origin(&url));
    if !on_feed {
        return Err(Unservable::Unknown(format!(
            "the plugin located {d} off the repository's feed ({})",
            origin(&url)
        )));
    }
    app.outbound
        .check_url(&url)
        .map_err(|e| Unservable::Unknown(format!("blob {d}: {e}")))?;
    let transport = crate::remotes::transport(app, &repository)
        .await
        .map_err(|f| Unservable::Unavailable(format!("blob {d}: {}", f.message)))?;
    Ok(Located {
        policy: DownloadPolicy::of(&repository.importer_config).unwrap_or_default(),
        download,
        url,
        transport,
    })
}

/// The fill of `d`: the running one, or one started now.
async fn fill(app: &Arc<App>, repo: &RepoId, d: &Digest) -> Result<Arc<Fill>, Unservable> {
    let slot = app
        .fills
        .running
        .lock()
        .unwrap()
        .entry(d.clone())
        .or_default()
        .clone();
    slot.get_or_init(|| async {
        let started = start(app, repo, d).await;
        if started.is_err() {
            // Nothing runs: the next request tries afresh.
            app.fills.running.lock().unwrap().remove(d);
        }
        started
    })
    .await
    .clone()
}

/// Locate the blob, ask the feed for it, and start the download that
/// writes it.
async fn start(app: &Arc<App>, repo: &RepoId, d: &Digest) -> Result<Arc<Fill>, Unservable> {
    let Located {
        download,
        url,
        policy,
        transport,
    } = locate(app, repo, d).await?;
    let size = download
        .size
        .ok_or_else(|| Unservable::Unknown(format!("the plugin located {d} without its size")))?;
    if size > app.config.max_blob_size {
        return Err(Unservable::Unknown(format!(
            "blob {d} is {size} bytes, more than this server's maximum blob size of {} (--max-blob-size)",
            app.config.max_blob_size
        )));
    }
    let http = match &transport {
        Some(t) => {
            t.turn().await;
            &t.http
        }
        None => &app.plugins.runtime.env.http,
    };
    let mut req = http.get(url.clone());
    for h in &download.headers {
        req = req.header(h.name.as_str(), h.value.as_str());
    }
    let unavailable =
        |why: String| Unservable::Unavailable(format!("fetching {d} from its feed: {why}"));
    let resp = match tokio::time::timeout(IDLE, req.send()).await {
        Err(_) => return Err(unavailable(format!("no answer in {}s", IDLE.as_secs()))),
        Ok(Err(e)) => return Err(unavailable(wharf_runtime::outbound::describe_request(e))),
        Ok(Ok(r)) => r,
    };
    if !resp.status().is_success() {
        return Err(unavailable(format!("the feed answered {}", resp.status())));
    }
    if resp.content_length().is_some_and(|n| n != size) {
        return Err(unavailable(format!(
            "the feed announced {} bytes, the descriptor gives {size}",
            resp.content_length().unwrap_or_default()
        )));
    }
    let (tx, progress) = watch::channel(Progress::Writing(0));
    let (opened, file) = tokio::sync::oneshot::channel();
    let (app, d) = (app.clone(), d.clone());
    // It serves waiters on every event loop, and outlives this request.
    app.runtime.clone().spawn(async move {
        let outcome = write_blob(&app, resp, &d, size, policy, opened, &tx).await;
        match &outcome {
            Ok(()) => tracing::info!(digest = %d, size, %policy, "fetched from the feed on demand"),
            Err(why) => {
                tracing::warn!(digest = %d, "on-demand fetch failed, nothing stored: {why}")
            }
        }
        // Stored (or failed): later requests find the blob, or try again.
        app.fills.running.lock().unwrap().remove(&d);
        tx.send_replace(match outcome {
            Ok(()) => Progress::Verified,
            Err(why) => Progress::Failed(why),
        });
    });
    let file = file
        .await
        .map_err(|_| Unservable::Unavailable("blob storage: the download did not start".into()))?
        .map_err(|e| Unservable::Unavailable(format!("blob storage: {e}")))?;
    Ok(Arc::new(Fill {
        size,
        file,
        progress,
    }))
}

/// Write the answer's body to a temp file of the blob store (a handle on
/// it goes to `opened`, for the readers), hashing as it goes and telling
/// `tx` how far it got; then store the blob under its digest, or, for a
/// `streamed` repository, check the digest and drop the bytes.
async fn write_blob(
    app: &App,
    mut resp: reqwest::Response,
    d: &Digest,
    size: u64,
    policy: DownloadPolicy,
    opened: tokio::sync::oneshot::Sender<std::io::Result<std::fs::File>>,
    tx: &watch::Sender<Progress>,
) -> Result<(), String> {
    let mut w = match app.blobs.writer() {
        Ok(w) => w,
        Err(e) => {
            let why = format!("blob storage: {e}");
            let _ = opened.send(Err(e));
            return Err(why);
        }
    };
    let _ = opened.send(w.reader());
    loop {
        let chunk = match tokio::time::timeout(IDLE, resp.chunk()).await {
            Err(_) => return Err(format!("the feed sent nothing for {}s", IDLE.as_secs())),
            Ok(Err(e)) => {
                return Err(format!(
                    "after {} bytes: {}",
                    w.len(),
                    wharf_runtime::outbound::describe_request(e)
                ));
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        if w.len() + chunk.len() as u64 > size {
            return Err(format!(
                "the feed sent more than the {size} bytes the descriptor gives; cut off"
            ));
        }
        w.write_all(&chunk)
            .map_err(|e| format!("blob storage: {e}"))?;
        tx.send_replace(Progress::Writing(w.len()));
    }
    if w.len() != size {
        return Err(format!(
            "the feed sent {} bytes, the descriptor gives {size}",
            w.len()
        ));
    }
    let checked = tokio::task::block_in_place(|| match policy {
        DownloadPolicy::Streamed => w.discard(d).map(|_| ()),
        _ => w.finish(Some(d), &Holder::new()).map(|_| ()),
    });
    checked.map_err(|e| match e {
        BlobError::DigestMismatch { expected, actual } => format!(
            "the feed served wrong bytes for {expected} (they hash to {actual}); nothing was stored"
        ),
        e => format!("blob storage: {e}"),
    })
}

/// The bytes of a fill as a response body: what the temp file holds, as it
/// grows, all but the last byte until the digest is verified; an error
/// (the client's connection cut) when the fill fails.
fn stream(fill: Arc<Fill>) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    futures::stream::unfold((fill, 0u64), |(fill, at)| async move {
        let mut progress = fill.progress.clone();
        loop {
            let ready = match &*progress.borrow_and_update() {
                Progress::Writing(n) => (*n).min(fill.size.saturating_sub(1)),
                Progress::Verified => fill.size,
                Progress::Failed(why) => {
                    let e = std::io::Error::other(why.clone());
                    return (at < fill.size).then_some((Err(e), (fill.clone(), fill.size)));
                }
            };
            if at < ready {
                let want = (ready - at).min(CHUNK) as usize;
                let mut buf = vec![0u8; want];
                return match fill.file.read_at(&mut buf, at) {
                    Ok(0) => Some((
                        Err(std::io::Error::other("the blob's temp file ended early")),
                        (fill.clone(), fill.size),
                    )),
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(Bytes::from(buf)), (fill.clone(), at + n as u64)))
                    }
                    Err(e) => Some((Err(e), (fill.clone(), fill.size))),
                };
            }
            if at >= fill.size {
                return None;
            }
            if progress.changed().await.is_err() {
                // The download went away without a word: nothing verified.
                let e = std::io::Error::other("the download stopped");
                return Some((Err(e), (fill.clone(), fill.size)));
            }
        }
    })
}
