//! The client-facing side: a request on a plugin's routes goes to the
//! plugin's `resolve`, and the host carries out the plan it returns (serve a
//! blob with Range and ETag, send a body, redirect, fail, or carry out a
//! write through the plugin's `write`, see [`write`]). Access is checked
//! first by `auth::registry_gate`, on the canonical path
//! (`auth::canonical`) that the plugin then sees too; the plugin's view is
//! bounded by what the gate admitted (`plugins::host::ResolveCall`), and a
//! plan that serves a blob the admitted repository does not serve is
//! refused here.
//!
//! Every error on a plugin's routes, the host's refusals as much as the
//! plugin's own `error` plans, is rendered in the plugin's error format
//! (`calls::ErrorFormat`, declared by its `describe`): the host knows no
//! content type's envelope, codes or headers.

use crate::app::App;
use crate::auth::registry_token::{refusal, rendered};
use crate::http::plan_cache;
use crate::on_demand::Unservable;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use wharf_core::digest::Digest;
use wharf_core::ids::RepoId;
use wharf_runtime::calls::{ErrorFormat, Header, Plan, Refusal, Request};
use wharf_runtime::engine::{Plugin, PluginError};
use wharf_runtime::host::ResolveCall;
use wharf_runtime::visibility::Served;
use wharf_store::db::Publication;

/// Headers a plugin may see: what content negotiation, caching and writes
/// need.
const FORWARDED_HEADERS: [&str; 5] = [
    "accept",
    "content-type",
    "if-none-match",
    "range",
    "user-agent",
];

pub async fn dispatch(
    State(app): State<Arc<App>>,
    client: crate::auth::ClientAddr,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut body = Some(body);
    let resp = answer(app, client, method.clone(), uri, headers, &mut body).await;
    match body {
        // A write answered without its body (refused by the gate, say, as a
        // spec-literal client's anonymous first try is): take the rest of
        // it first, within limits, or a client still sending sees a reset
        // instead of the answer.
        Some(body) if !matches!(method, Method::GET | Method::HEAD) => {
            let limits = &crate::http::unread::AFTER_REFUSAL;
            crate::http::unread::answer_after_draining(body, limits, resp).await
        }
        _ => resp,
    }
}

/// [`dispatch`]'s work; takes `body` only for a write plan.
async fn answer(
    app: Arc<App>,
    crate::auth::ClientAddr(addr): crate::auth::ClientAddr,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: &mut Option<Body>,
) -> Response {
    let path = match crate::auth::canonical::canonical_path(uri.path()) {
        Ok(p) => p,
        Err(e) => {
            // The raw path's plugin, if its route prefixes it; else the
            // host's own format.
            let format = app
                .plugins
                .for_path(uri.path())
                .map(|p| p.errors.clone())
                .unwrap_or_default();
            let refused = refusal(
                &format,
                StatusCode::BAD_REQUEST,
                Refusal::NameInvalid,
                &e.to_string(),
            );
            return head_safe(&method, refused);
        }
    };
    let Some(plugin) = app.plugins.for_path(&path) else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let route = crate::metrics::Route::plugin(&plugin, &path);
    let mut resp = answer_for(app, addr, plugin, method, path, uri, headers, body).await;
    if let Some(route) = route {
        route.tag(&mut resp);
    }
    resp
}

/// [`answer`] for the plugin whose routes `path` (canonical) falls under.
#[allow(clippy::too_many_arguments)]
async fn answer_for(
    app: Arc<App>,
    addr: Option<std::net::IpAddr>,
    plugin: Arc<Plugin>,
    method: Method,
    path: String,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: &mut Option<Body>,
) -> Response {
    // Protected repositories, pushes and the API root need credentials.
    let admitted = match crate::auth::registry_gate::admit(
        &app, &plugin, &method, &path, &headers, addr,
    )
    .await
    {
        Ok(a) => a,
        Err(denied) => return denied,
    };
    // What the admitted repository serves: the only blobs this request
    // may see or be answered with.
    let (mut publication, mut served) =
        match admitted_publication(&app, &plugin.info.name, &plugin.errors, &admitted).await {
            Ok(s) => s.unzip(),
            Err(resp) => return head_safe(&method, resp),
        };
    let repository: Option<RepoId> = admitted.repository.as_deref().and_then(|r| r.parse().ok());
    let scope = |served: &Option<Arc<Served>>| ResolveCall {
        admitted: served.clone(),
        repository: repository.clone(),
        write: !matches!(method, Method::GET | Method::HEAD),
        reader: admitted.reader.clone(),
    };
    let mut req = Request {
        method: method.as_str().to_string(),
        path,
        query: uri.query().unwrap_or("").to_string(),
        headers: headers
            .iter()
            .filter(|(k, _)| FORWARDED_HEADERS.contains(&k.as_str()))
            .filter_map(|(k, v)| {
                Some(Header {
                    name: k.to_string(),
                    value: v.to_str().ok()?.to_string(),
                })
            })
            .collect(),
        pulled: false,
    };
    let mut plan = resolve(&app, &plugin, publication.as_deref(), scope(&served), &req);
    // A pull-through repository lacks the reference, or may hold a stale
    // copy: pull it (or not: `pull_through`), then ask again.
    let mut pull_failed = None;
    if let Ok(Plan::Pull(reference)) = &plan {
        if let Some(repo) = &repository
            && let Err(f) = crate::pull_through::refresh(&app, repo, reference).await
        {
            pull_failed = Some(f);
        }
        // The pull may have published: serve what the repository serves now.
        (publication, served) =
            match admitted_publication(&app, &plugin.info.name, &plugin.errors, &admitted).await {
                Ok(s) => s.unzip(),
                Err(resp) => return head_safe(&method, resp),
            };
        req.pulled = true;
        plan = resolve(&app, &plugin, publication.as_deref(), scope(&served), &req);
    }
    match plan {
        Ok(Plan::Pull(_)) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the plugin asked for a pull again after one\n",
        ),
        // Nothing there after a pull that failed: say why.
        Ok(Plan::Error(f)) if f.status == 404 && pull_failed.is_some() => head_safe(
            &method,
            pull_failure(&plugin.errors, f, pull_failed.expect("checked")),
        ),
        // The gate let a read through without write access: a write plan
        // for it is the plugin's bug, never carried out.
        Ok(Plan::Write(_)) if matches!(method, Method::GET | Method::HEAD) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the plugin planned a write for a read request\n",
        ),
        Ok(Plan::Write(w)) => {
            let body = body.take().expect("the body is read once");
            let plan = match crate::http::write::run(
                &app, &plugin, admitted, req, w, &headers, body,
            )
            .await
            {
                Ok(plan) => plan,
                Err(resp) => return unread_body_closes(&method, head_safe(&method, resp)),
            };
            execute(
                &app,
                &plugin.errors,
                &method,
                &headers,
                plan,
                served.as_deref(),
                &|_| false,
            )
            .await
        }
        Ok(plan) => {
            // A blob pushed to the admitted repository is readable there at
            // once (GET and HEAD), before any manifest or publish names it;
            // never through another repository's name.
            let sessions = &app.plugins.runtime.env.sessions;
            let pushed = |d: &Digest| {
                admitted
                    .repository
                    .as_deref()
                    .is_some_and(|repo| sessions.received(repo, d))
            };
            execute(
                &app,
                &plugin.errors,
                &method,
                &headers,
                plan,
                served.as_deref(),
                &pushed,
            )
            .await
        }
        Err(e) => head_safe(&method, plugin_failure(&plugin.errors, e)),
    }
}

/// The answer to a read that found nothing after a pull that failed: the
/// plugin's own 404 when the upstream lacks it too, else why the pull
/// failed (a name the repository may not pull: 403; the upstream down or
/// failing: 503).
fn pull_failure(
    errors: &ErrorFormat,
    not_found: wharf_runtime::calls::Failure,
    failure: crate::pull_through::PullFailure,
) -> Response {
    let (status, kind) = match failure.code.as_str() {
        "not-found" => {
            let body = errors.render(&not_found.code, &not_found.message);
            return rendered(StatusCode::NOT_FOUND, body);
        }
        "denied" => (StatusCode::FORBIDDEN, Refusal::Denied),
        _ => (StatusCode::SERVICE_UNAVAILABLE, Refusal::Unavailable),
    };
    let message = format!("the upstream could not be pulled from: {}", failure.message);
    refusal(errors, status, kind, &message)
}

/// The plan `resolve` gives for `req`, or the one it gave before for the
/// same request on the same `publication`, when that call read nothing
/// else (`plan_cache`). Reads only: a write, or a request after a pull,
/// always asks the plugin. The plan is checked against what the
/// publication serves afterwards either way.
fn resolve(
    app: &App,
    plugin: &Plugin,
    publication: Option<&Publication>,
    scope: ResolveCall,
    req: &Request,
) -> Result<Plan, PluginError> {
    let asked = publication
        .filter(|_| !scope.write && !req.pulled)
        .map(|publication| plan_cache::Asked {
            plugin: &plugin.wasm_digest,
            publication,
            request: req,
        });
    if let Some(plan) = asked.and_then(|a| app.plans.get(a)) {
        crate::metrics::plan_repeated(&plugin.name);
        return Ok(Plan::clone(&plan));
    }
    // resolve is short and bounded by its deadline. WASI's sync bindings
    // block on the runtime (e.g. a guest writing stderr), which a worker
    // thread may not do: block_in_place hands this worker's other tasks to
    // another thread instead of paying a thread hop per request.
    let (plan, repeatable) = tokio::task::block_in_place(|| plugin.resolve_repeatable(scope, req))?;
    if let Some(asked) = asked.filter(|_| repeatable) {
        app.plans.keep(asked, &plan);
    }
    Ok(plan)
}

/// The publication the gate admitted, if it admitted one, and what it
/// serves.
async fn admitted_publication(
    app: &App,
    plugin: &str,
    errors: &ErrorFormat,
    admitted: &crate::auth::registry_gate::Admitted,
) -> Result<Option<(Arc<Publication>, Arc<Served>)>, Response> {
    let Some(repo) = &admitted.repository else {
        return Ok(None);
    };
    let Some(publication) = app
        .publications
        .for_repo(repo)
        .into_iter()
        .find(|p| p.plugin == plugin)
    else {
        return Ok(None);
    };
    app.served
        .get(app.store.as_ref(), &publication)
        .await
        .map(|served| Some((publication, served)))
        .map_err(|e| {
            tracing::error!(repo, "reading what the publication serves: {e}");
            refusal(
                errors,
                StatusCode::SERVICE_UNAVAILABLE,
                Refusal::Unavailable,
                "the metadata store is not answering; try again",
            )
        })
}

/// A write refused while its body was read leaves the rest of the body on
/// the connection: ask the client not to reuse it, or its next request on
/// it fails half-way.
fn unread_body_closes(method: &Method, mut resp: Response) -> Response {
    if !matches!(*method, Method::GET | Method::HEAD) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn head_safe(method: &Method, mut resp: Response) -> Response {
    if *method == Method::HEAD {
        *resp.body_mut() = Body::empty();
    }
    resp
}

pub(crate) fn plugin_failure(errors: &ErrorFormat, e: PluginError) -> Response {
    tracing::warn!("registry request failed: {e}");
    // Every instance taken: the client should come back, not give up.
    let (status, kind, retry_after) = match e {
        PluginError::Busy { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Refusal::TooManyRequests,
            Some("1"),
        ),
        // A backend (the bucket of upload sessions) did not answer.
        PluginError::Unavailable { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Unavailable,
            Some("5"),
        ),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, Refusal::Internal, None),
    };
    let mut resp = refusal(errors, status, kind, &e.to_string());
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static(secs));
    }
    resp
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// The plugin's headers win over the host's defaults (a first occurrence
/// replaces, repeats append).
fn add_headers(resp: &mut Response, headers: &[Header]) {
    let mut seen = std::collections::HashSet::new();
    for h in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(&h.name),
            HeaderValue::try_from(&h.value),
        ) {
            if seen.insert(k.clone()) {
                resp.headers_mut().insert(k, v);
            } else {
                resp.headers_mut().append(k, v);
            }
        }
    }
}

async fn execute(
    app: &Arc<App>,
    errors: &ErrorFormat,
    method: &Method,
    req_headers: &HeaderMap,
    plan: Plan,
    served: Option<&Served>,
    pushed: &(dyn Fn(&Digest) -> bool + Sync),
) -> Response {
    match plan {
        Plan::Body(b) => {
            let status =
                StatusCode::from_u16(b.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let len = b.body.len();
            let mut resp = if *method == Method::HEAD {
                Response::new(Body::empty())
            } else {
                Response::new(Body::from(b.body))
            };
            *resp.status_mut() = status;
            if !b.content_type.is_empty()
                && let Ok(v) = HeaderValue::try_from(&b.content_type)
            {
                resp.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            // A 304 has no body, and says nothing of one.
            if status != StatusCode::NOT_MODIFIED {
                resp.headers_mut()
                    .insert(header::CONTENT_LENGTH, len.into());
            }
            add_headers(&mut resp, &b.headers);
            resp
        }
        Plan::Redirect(url) => match HeaderValue::try_from(url) {
            Ok(v) => {
                let mut resp = StatusCode::FOUND.into_response();
                resp.headers_mut().insert(header::LOCATION, v);
                resp
            }
            Err(_) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin redirected to an invalid URL\n",
            ),
        },
        Plan::Error(f) => {
            let status =
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            head_safe(method, rendered(status, errors.render(&f.code, &f.message)))
        }
        Plan::Write(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the plugin answered a write with another write\n",
        ),
        Plan::Pull(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the plugin asked for a pull where none can be made\n",
        ),
        Plan::Blob(b) => match b.digest.parse::<Digest>() {
            // The trust rule: only what the admitted repository serves.
            Ok(d) if !served.is_some_and(|s| s.contains(&d)) && !pushed(&d) => {
                tracing::warn!(digest = %d, repo = ?served.map(|s| &s.repo), "plugin planned to serve a blob the admitted repository does not serve; refused");
                blob_unknown(errors, method, &d)
            }
            Ok(d) => {
                serve_blob(
                    app,
                    errors,
                    method,
                    req_headers,
                    &d,
                    &b.media_type,
                    &b.headers,
                    served.map(|s| &s.repo),
                )
                .await
            }
            Err(e) => {
                tracing::error!("plugin asked to serve {e}");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "plugin asked to serve an invalid digest\n",
                )
            }
        },
    }
}

fn blob_unknown(errors: &ErrorFormat, method: &Method, d: &Digest) -> Response {
    head_safe(
        method,
        refusal(
            errors,
            StatusCode::NOT_FOUND,
            Refusal::BlobUnknown,
            &format!("blob {d} is not stored"),
        ),
    )
}

/// A single `bytes=` range, resolved against `len`. `Err` means unsatisfiable.
pub(crate) fn parse_range(v: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = v.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // Multiple ranges: serve the whole blob instead.
    }
    let (a, b) = spec.split_once('-')?;
    let range = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            if n == 0 || len == 0 {
                return Some(Err(()));
            }
            (len.saturating_sub(n), len - 1)
        }
        (a, "") => (a.parse().ok()?, len.saturating_sub(1)),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(len.saturating_sub(1)),
        ),
    };
    if range.0 >= len || range.0 > range.1 {
        return Some(Err(()));
    }
    Some(Ok(range))
}

/// The headers of every blob answer: ETag, the media type, the plugin's.
fn blob_headers(resp: &mut Response, d: &Digest, media_type: &str, extra: &[Header]) {
    let h = resp.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::try_from(format!("\"{d}\"")).expect("digest is ASCII"),
    );
    if let Ok(v) = HeaderValue::try_from(media_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    add_headers(resp, extra);
}

/// Where a blob's bytes come from.
enum Source {
    /// A file of this node: the blob directory, or the node's cache of a
    /// bucket.
    File(std::fs::File),
    /// The bucket, streamed through this node.
    Object,
}

/// How long a presigned URL lives when a repository asks for redirects and
/// the server sets no lifetime (`--blob-redirect`).
const REDIRECT_FOR: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether blob GETs of `repo` are answered with a redirect to the bucket,
/// and for how long the URL is good: its publication's `blob_redirect`
/// (true/false) if set, else the server's `--blob-redirect`. Never without
/// a bucket.
fn redirect_for(app: &App, repo: Option<&RepoId>) -> Option<std::time::Duration> {
    app.blobs.objects()?;
    let setting = repo.and_then(|r| {
        app.publications
            .for_repo(r.as_str())
            .iter()
            .find_map(|p| p.config.get(crate::repos::BLOB_REDIRECT)?.as_bool())
    });
    match setting {
        Some(false) => None,
        Some(true) => Some(app.config.blob_redirect.unwrap_or(REDIRECT_FOR)),
        None => app.config.blob_redirect,
    }
}

/// Find blob `d`: its size and where to read it. `Ok(None)` when it is not
/// stored; an error when the bucket does not answer.
async fn locate(app: &Arc<App>, d: &Digest) -> std::io::Result<Option<(u64, Source)>> {
    if let Some(f) = app.blobs.local_file(d)? {
        let len = f.metadata()?.len();
        return Ok(Some((len, Source::File(f))));
    }
    if app.blobs.objects().is_none() {
        return Ok(None);
    }
    let (blobs, d) = (app.blobs.clone(), d.clone());
    tokio::task::spawn_blocking(move || {
        let objects = blobs.objects().expect("checked");
        Ok(objects.size(&d)?.map(|n| (n, Source::Object)))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// A 503 saying why a blob cannot be read now.
fn unavailable(errors: &ErrorFormat, method: &Method, why: &str) -> Response {
    head_safe(
        method,
        refusal(
            errors,
            StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Unavailable,
            why,
        ),
    )
}

#[allow(clippy::too_many_arguments)]
async fn serve_blob(
    app: &Arc<App>,
    errors: &ErrorFormat,
    method: &Method,
    req_headers: &HeaderMap,
    d: &Digest,
    media_type: &str,
    extra: &[Header],
    repo: Option<&RepoId>,
) -> Response {
    let (len, source) = match locate(app, d).await {
        Ok(Some(found)) => found,
        // Named by the repository's units, left on its feed: fetch it.
        Ok(None) if repo.is_some() => {
            let repo = repo.expect("checked");
            return match crate::on_demand::serve(app, repo, d, *method == Method::HEAD).await {
                Ok(mut resp) => {
                    blob_headers(&mut resp, d, media_type, extra);
                    resp
                }
                Err(Unservable::Unknown(why)) => {
                    tracing::warn!(repo = %repo, "{why}");
                    blob_unknown(errors, method, d)
                }
                Err(Unservable::Unavailable(why)) => {
                    tracing::warn!(repo = %repo, "{why}");
                    unavailable(errors, method, &why)
                }
            };
        }
        Ok(None) => return blob_unknown(errors, method, d),
        Err(e) if app.blobs.objects().is_some() => {
            tracing::error!("blob {d} cannot be read: {e}");
            return unavailable(
                errors,
                method,
                &format!("the blob store does not answer; try again later ({e})"),
            );
        }
        Err(e) => {
            tracing::error!("publication names {d}, which cannot be opened: {e}");
            return blob_unknown(errors, method, d);
        }
    };
    let etag = format!("\"{d}\"");
    let mut resp = Response::new(Body::empty());
    resp.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    blob_headers(&mut resp, d, media_type, extra);
    if req_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return resp;
    }
    // The Crane mode: the client fetches the bytes (Range included) from
    // the bucket, with a URL good for this blob only and only for a while.
    if *method == Method::GET
        && let Some(ttl) = redirect_for(app, repo)
    {
        let (blobs, key) = (app.blobs.clone(), d.clone());
        let url = tokio::task::spawn_blocking(move || {
            let objects = blobs.objects().expect("redirects need a bucket");
            objects.presigned_get(&key, ttl)
        })
        .await;
        return match url {
            Ok(Ok(url)) => match HeaderValue::try_from(url.as_str()) {
                Ok(v) => {
                    let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
                    resp.headers_mut().insert(header::LOCATION, v);
                    resp.headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    blob_headers(&mut resp, d, media_type, extra);
                    resp
                }
                Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "invalid presigned URL\n"),
            },
            Ok(Err(e)) => unavailable(errors, method, &format!("cannot sign a URL for {d}: {e}")),
            Err(e) => unavailable(errors, method, &format!("cannot sign a URL for {d}: {e}")),
        };
    }
    let range = req_headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, len));
    let (start, end) = match range {
        None => (0, len),
        Some(Ok((a, b))) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            resp.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::try_from(format!("bytes {a}-{b}/{len}")).expect("ascii"),
            );
            (a, b + 1)
        }
        Some(Err(())) => {
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            resp.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::try_from(format!("bytes */{len}")).expect("ascii"),
            );
            return resp;
        }
    };
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, (end - start).into());
    if *method == Method::HEAD {
        return resp;
    }
    match source {
        Source::File(file) => match crate::zero_copy::file_body(file, start, end).await {
            Ok(body) => *resp.body_mut() = body,
            Err(e) => {
                tracing::error!("blob {d} cannot be read: {e}");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read blob\n");
            }
        },
        Source::Object => {
            let (blobs, key) = (app.blobs.clone(), d.clone());
            let stream = tokio::task::spawn_blocking(move || {
                let objects = blobs.objects().expect("located in the bucket");
                objects.get_range(&key, start, Some(end))
            })
            .await;
            match stream {
                Ok(Ok(stream)) => *resp.body_mut() = Body::from_stream(stream),
                Ok(Err(e)) => {
                    return unavailable(errors, method, &format!("cannot read {d}: {e}"));
                }
                Err(e) => {
                    return unavailable(errors, method, &format!("cannot read {d}: {e}"));
                }
            }
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Some(Ok((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        // An empty blob has no last byte (the byte-range fuzz target).
        assert_eq!(parse_range("bytes=-10", 0), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
