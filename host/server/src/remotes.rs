//! Remotes (Pulp 3's Remote): `/api/v1/remotes`, upstream settings that
//! the repositories of one content type share by naming one in their
//! importer setting `remote`. A task call of such a repository sees the
//! remote's settings under the repository's own ([`resolve`]), and reaches
//! the feed through the remote's transport (its CA, TLS switch, proxy,
//! download concurrency and rate limit: [`transport`]), built once per
//! version of the remote on each node.

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::ApiErrorBody;
use crate::tasks::TaskFailure;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wharf_core::ids::RemoteId;
use wharf_core::time::Timestamp;
use wharf_runtime::transport::{DEFAULT_CONCURRENCY, FeedTransport};
use wharf_store::db::{Operation, Remote, Repository, Transport, now, remote_of};

/// The most downloads a remote may run at once.
const MAX_CONCURRENCY: u32 = 64;

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/remotes", post(create).get(list))
        .route("/remotes/{id}", get(show).patch(update).delete(remove))
}

/// The feed transport of each remote this node used, with the `updated_at`
/// of the remote it was built from.
#[derive(Default)]
pub struct Transports {
    built: Mutex<HashMap<RemoteId, (Timestamp, Arc<FeedTransport>)>>,
}

/// `repo` as its plugin sees it: with its remote's settings under its own.
/// A remote deleted since leaves the repository's own settings, so that
/// work that needs no feed (publish, copy, remove) goes on; work that does
/// asks [`require`] first.
pub async fn resolve(
    app: &App,
    mut repo: Repository,
) -> std::result::Result<Repository, TaskFailure> {
    if let Some(remote) = remote_if_present(app, &repo).await? {
        repo.importer_config = remote.importer_for(&repo.importer_config);
    }
    Ok(repo)
}

/// Fail, saying what to do, when `repo` names a remote that is gone or of
/// another content type: before work that reaches the feed (sync, pull).
pub async fn require(app: &App, repo: &Repository) -> std::result::Result<(), TaskFailure> {
    remote_for(app, repo).await.map(drop)
}

/// [`remote_for`], with a remote that is gone as none.
async fn remote_if_present(
    app: &App,
    repo: &Repository,
) -> std::result::Result<Option<Remote>, TaskFailure> {
    match remote_for(app, repo).await {
        Err(f) if f.cause == "not-found" => Ok(None),
        other => other,
    }
}

/// How a call of `repo` reaches its feed: its remote's transport, or
/// `None` for the server's own client.
pub async fn transport(
    app: &App,
    repo: &Repository,
) -> std::result::Result<Option<Arc<FeedTransport>>, TaskFailure> {
    let Some(remote) = remote_if_present(app, repo).await? else {
        return Ok(None);
    };
    if let Some((at, t)) = app.transports.built.lock().unwrap().get(&remote.id)
        && *at == remote.updated_at
    {
        return Ok(Some(t.clone()));
    }
    let built = build(app, &remote.transport)
        .map_err(|e| TaskFailure::new(format!("remote {}: {e}", remote.id), "invalid-input"))?;
    app.transports
        .built
        .lock()
        .unwrap()
        .insert(remote.id.clone(), (remote.updated_at, built.clone()));
    Ok(Some(built))
}

/// The remote `repo` names, checked to exist and to be of its content type.
async fn remote_for(
    app: &App,
    repo: &Repository,
) -> std::result::Result<Option<Remote>, TaskFailure> {
    let id = remote_of(&repo.importer_config)
        .map_err(|e| TaskFailure::new(format!("importer_config: {e}"), "invalid-input"))?;
    let Some(id) = id else { return Ok(None) };
    let remote = app.store.get_remote(&id).await?.ok_or_else(|| {
        TaskFailure::new(
            format!(
                "repository {} refers to remote {id}, which does not exist: create it \
                 (`wharf docker remote create --remote-id {id} ...`) or drop the repository's remote",
                repo.id
            ),
            "not-found",
        )
    })?;
    if remote.content_type != repo.content_type {
        return Err(TaskFailure::new(
            format!(
                "remote {id} is for {} content, repository {} holds {}",
                remote.content_type, repo.id, repo.content_type
            ),
            "invalid-input",
        ));
    }
    Ok(Some(remote))
}

/// A client and limits for `t`.
fn build(app: &App, t: &Transport) -> std::result::Result<Arc<FeedTransport>, String> {
    let mut b = FeedTransport::client_builder(&app.outbound);
    if let Some(pem) = &t.ca_cert {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("ca_cert is not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err("ca_cert holds no certificate".into());
        }
        b = certs.into_iter().fold(b, |b, c| b.add_root_certificate(c));
    }
    if !t.tls_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    if let Some(p) = &t.proxy {
        let proxy = reqwest::Proxy::all(p).map_err(|e| format!("proxy {p:?}: {e}"))?;
        b = b.proxy(proxy);
    }
    let client = b.build().map_err(|e| e.to_string())?;
    let concurrency = t
        .download_concurrency
        .map_or(DEFAULT_CONCURRENCY, |n| n as usize);
    Ok(FeedTransport::new(client, concurrency, t.rate_limit))
}

/// Refuse a transport that cannot work, saying why.
fn check_transport(app: &App, t: &Transport) -> Result<()> {
    if let Some(n) = t.download_concurrency
        && !(1..=MAX_CONCURRENCY).contains(&n)
    {
        return Err(Error::invalid(format!(
            "transport.download_concurrency must be 1 to {MAX_CONCURRENCY}, not {n}"
        )));
    }
    if t.rate_limit == Some(0) {
        return Err(Error::invalid(
            "transport.rate_limit is requests per second: 1 or more (leave it out for no limit)",
        ));
    }
    if let Some(p) = &t.proxy {
        let url: reqwest::Url = p
            .parse()
            .map_err(|e| Error::invalid(format!("transport.proxy {p:?} is not a URL: {e}")))?;
        app.outbound
            .check_url(&url)
            .map_err(|e| Error::invalid(format!("transport.proxy: {e}")))?;
    }
    build(app, t)
        .map(|_| ())
        .map_err(|e| Error::invalid(format!("transport: {e}")))
}

/// Refuse settings that are no object, or a feed that is no http(s) URL.
fn check_settings(settings: &serde_json::Value) -> Result<()> {
    let Some(m) = settings.as_object() else {
        return Err(Error::invalid(
            "settings must be an object of importer settings, such as {\"feed\": \"https://registry-1.docker.io\"}",
        ));
    };
    if m.contains_key(wharf_store::db::REMOTE_SETTING) {
        return Err(Error::invalid(
            "a remote's settings cannot name another remote",
        ));
    }
    if let Some(feed) = m.get("feed").and_then(|f| f.as_str()) {
        let ok = reqwest::Url::parse(feed).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err(Error::invalid(format!(
                "settings.feed {feed:?} is not an http(s) URL"
            )));
        }
    }
    wharf_core::remote::DownloadPolicy::of(settings)
        .map_err(|e| Error::invalid(format!("settings: {e}")))?;
    Ok(())
}

fn parse_id(id: &str) -> Result<RemoteId> {
    id.parse().map_err(|e| Error::invalid(format!("{e}")))
}

async fn get_remote(app: &App, id: &str) -> Result<Remote> {
    let id = parse_id(id)?;
    app.store.get_remote(&id).await?.ok_or_else(|| {
        Error::not_found(format!(
            "no remote {id}; list them with `wharf docker remote list`"
        ))
    })
}

/// Whether `principal` may name remote `id` in a repository's settings:
/// who may read the remote (its credentials then work for them).
pub async fn check_use(
    app: &App,
    principal: &crate::auth::Principal,
    importer: &serde_json::Value,
    content_type: &str,
) -> Result<()> {
    let Some(id) =
        remote_of(importer).map_err(|e| Error::invalid(format!("importer_config: {e}")))?
    else {
        return Ok(());
    };
    if !principal.allows(&format!("/remotes/{id}/"), Operation::Read) {
        return Err(Error::forbidden(format!(
            "user {} may not use remote {id} (read on /remotes/{id})",
            principal.login
        )));
    }
    let remote = get_remote(app, id.as_str()).await?;
    if remote.content_type != content_type {
        return Err(Error::invalid(format!(
            "remote {id} is for {} content, not {content_type}",
            remote.content_type
        )));
    }
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateRemote {
    id: String,
    content_type: String,
    /// Importer settings in the content type's words.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    settings: serde_json::Value,
    #[serde(default)]
    transport: Transport,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateRemote {
    /// Settings to set (merged key by key; `null` removes one; a secret
    /// sent back masked keeps its value).
    #[schema(value_type = Option<Object>)]
    settings: Option<serde_json::Map<String, serde_json::Value>>,
    /// The whole transport, replaced.
    transport: Option<Transport>,
}

#[utoipa::path(post, path = "/api/v1/remotes", tag = "remotes", request_body = CreateRemote,
    responses((status = 201, body = Remote), (status = 400, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
async fn create(
    State(app): State<Arc<App>>,
    body: std::result::Result<Json<CreateRemote>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Remote>)> {
    let Json(req) = body?;
    let id = parse_id(&req.id)?;
    if app.plugins.for_content_type(&req.content_type).is_none() {
        return Err(Error::invalid(format!(
            "no plugin provides content type {:?}; install it first",
            req.content_type
        )));
    }
    if app.store.get_remote(&id).await?.is_some() {
        return Err(Error::conflict(format!(
            "remote {id} exists; change it with `wharf docker remote update`"
        )));
    }
    let settings =
        crate::secrets::unmask(req.settings, None, "settings").map_err(Error::invalid)?;
    check_settings(&settings)?;
    check_transport(&app, &req.transport)?;
    let r = Remote {
        id,
        content_type: req.content_type,
        settings,
        transport: req.transport,
        created_at: now(),
        updated_at: now(),
    };
    app.store.put_remote(&r).await?;
    Ok((StatusCode::CREATED, Json(crate::secrets::mask_remote(r))))
}

#[utoipa::path(get, path = "/api/v1/remotes", tag = "remotes", responses((status = 200, body = Vec<Remote>)))]
async fn list(State(app): State<Arc<App>>) -> Result<Json<Vec<Remote>>> {
    let all = app.store.list_remotes().await?;
    Ok(Json(
        all.into_iter().map(crate::secrets::mask_remote).collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/remotes/{id}", tag = "remotes", responses((status = 200, body = Remote), (status = 404, body = ApiErrorBody)))]
async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Remote>> {
    Ok(Json(crate::secrets::mask_remote(
        get_remote(&app, &id).await?,
    )))
}

#[utoipa::path(patch, path = "/api/v1/remotes/{id}", tag = "remotes", request_body = UpdateRemote,
    responses((status = 200, body = Remote), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn update(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: std::result::Result<Json<UpdateRemote>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Remote>> {
    let Json(req) = body?;
    let mut r = get_remote(&app, &id).await?;
    if let Some(changes) = req.settings {
        let mut merged = r.settings.as_object().cloned().unwrap_or_default();
        for (k, v) in changes {
            if v.is_null() {
                merged.remove(&k);
            } else {
                merged.insert(k, v);
            }
        }
        let merged = serde_json::Value::Object(merged);
        let settings = crate::secrets::unmask(merged, Some(&r.settings), "settings")
            .map_err(Error::invalid)?;
        check_settings(&settings)?;
        r.settings = settings;
    }
    if let Some(mut t) = req.transport {
        // A proxy URL sent back as shown keeps its stored password.
        if let (Some(new), Some(old)) = (&t.proxy, &r.transport.proxy)
            && crate::secrets::mask_remote(r.clone())
                .transport
                .proxy
                .as_deref()
                == Some(new.as_str())
        {
            t.proxy = Some(old.clone());
        }
        check_transport(&app, &t)?;
        r.transport = t;
    }
    r.updated_at = now();
    app.store.put_remote(&r).await?;
    Ok(Json(crate::secrets::mask_remote(r)))
}

#[utoipa::path(delete, path = "/api/v1/remotes/{id}", tag = "remotes", responses((status = 204), (status = 404, body = ApiErrorBody)))]
async fn remove(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<StatusCode> {
    let id = parse_id(&id)?;
    if !app.store.delete_remote(&id).await? {
        return Err(Error::not_found(format!("no remote {id}")));
    }
    app.transports.built.lock().unwrap().remove(&id);
    Ok(StatusCode::NO_CONTENT)
}
