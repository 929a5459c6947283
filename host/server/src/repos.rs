//! Repositories (`/api/v1/repositories`): create, list, update, delete, and
//! the long operations on them (import an upload, sync, publish, copy,
//! remove, tag), each run as a task that locks the repository. Their
//! versions have their own module (`versions`).

use crate::app::App;
use crate::error::{Error, ErrorKind, Result};
use crate::http::ApiErrorBody;
use crate::secrets;
use crate::tasks::Job;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use wharf_core::ids::{RepoId, UploadId};
use wharf_store::db::{Notes, Publication, RepoQuery, Repository, Task, now};

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/repositories", post(create).get(list))
        .route("/repositories/{id}", get(show).patch(update).delete(delete))
        .route("/repositories/{id}/content", get(content))
        .route("/repositories/{id}/import", post(import))
        .route("/repositories/{id}/sync", post(sync))
        .route("/repositories/{id}/publish", post(publish))
        .route("/repositories/{id}/copy", post(copy))
        .route("/repositories/{id}/remove", post(remove))
        .route("/repositories/{id}/tag", post(tag))
        .route("/repositories/{id}/retain", post(retain))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRepo {
    id: String,
    #[serde(alias = "type")]
    content_type: String,
    display_name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    notes: Notes,
    #[schema(value_type = Option<Object>)]
    importer_config: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    distributor_config: Option<serde_json::Value>,
    /// How many versions to keep (the newest); all when absent.
    retain_versions: Option<u64>,
}

/// A repository as the API shows it: its secrets masked
/// ([`secrets::mask_repo`]). Every handler that answers with a repository
/// answers with this, and the only way to make one masks.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = Repository)]
pub struct RepoView(Repository);

impl From<Repository> for RepoView {
    fn from(r: Repository) -> Self {
        RepoView(secrets::mask_repo(r))
    }
}

/// A publication as the API shows it: its settings masked.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = Publication)]
pub struct PublicationView(Publication);

impl From<Publication> for PublicationView {
    fn from(p: Publication) -> Self {
        PublicationView(secrets::mask_publication(p))
    }
}

fn parse_repo_id(id: &str) -> Result<RepoId> {
    id.parse()
        .map_err(|e: wharf_core::ids::InvalidRepoId| Error::invalid(e.to_string()))
}

/// New settings: an object, without a masked secret (there is nothing stored to keep).
fn new_config(v: Option<serde_json::Value>, what: &str) -> Result<serde_json::Value> {
    secrets::unmask(config_object(v, what)?, None, what).map_err(Error::invalid)
}

fn config_object(v: Option<serde_json::Value>, what: &str) -> Result<serde_json::Value> {
    match v {
        None => Ok(serde_json::json!({})),
        Some(v @ serde_json::Value::Object(_)) => Ok(v),
        Some(_) => Err(Error::invalid(format!("{what} must be a JSON object"))),
    }
}

#[utoipa::path(post, path = "/api/v1/repositories", tag = "repositories", request_body = CreateRepo,
    responses((status = 201, body = Repository), (status = 400, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
async fn create(
    State(app): State<Arc<App>>,
    axum::Extension(principal): axum::Extension<crate::auth::Principal>,
    body: std::result::Result<Json<CreateRepo>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<RepoView>)> {
    let Json(req) = body?;
    let id = parse_repo_id(&req.id)?;
    if app.plugins.for_content_type(&req.content_type).is_none() {
        // Installed on another node moments ago? (plugins::sync)
        if let Err(e) = crate::plugins::sync::reconcile(&app).await {
            tracing::warn!("cannot reconcile plugins with the store: {e:#}");
        }
    }
    if app.plugins.for_content_type(&req.content_type).is_none() {
        let known: Vec<String> = app
            .plugins
            .list()
            .iter()
            .flat_map(|p| p.info.content_types.iter().map(|(t, _)| t.clone()))
            .collect();
        return Err(Error::invalid(format!(
            "unknown content type {:?}; this server has: {}",
            req.content_type,
            known.join(", ")
        )));
    }
    let repo = Repository {
        display_name: req.display_name.unwrap_or_else(|| id.to_string()),
        id,
        content_type: req.content_type,
        description: req.description,
        notes: req.notes,
        importer_config: new_config(req.importer_config, "importer_config")?,
        distributor_config: new_config(req.distributor_config, "distributor_config")?,
        retain_versions: retain_versions(req.retain_versions)?,
        created_at: now(),
        updated_at: now(),
    };
    let pull_through = check_host_settings(&repo)?;
    crate::remotes::check_use(&app, &principal, &repo.importer_config, &repo.content_type).await?;
    app.store.create_repo(&repo).await?;
    app.auth
        .protection
        .refresh(app.store.as_ref(), &repo.id)
        .await?;
    if pull_through {
        publish_pull_through(&app, &repo.id).await?;
    }
    Ok((StatusCode::CREATED, Json(repo.into())))
}

/// Check the settings the host itself reads, whatever the content type:
/// `download_policy` (importer), `pull_through` and `tag_freshness`
/// (distributor), and `blob_redirect` (distributor: whether blob GETs are
/// redirected to the bucket). True for a pull-through repository.
fn check_host_settings(repo: &Repository) -> Result<bool> {
    use wharf_core::remote::{DownloadPolicy, PullThrough};
    if let Some(v) = repo.distributor_config.get(BLOB_REDIRECT)
        && !v.is_boolean()
        && !v.is_null()
    {
        return Err(Error::invalid(format!(
            "distributor_config: {BLOB_REDIRECT} is true (answer blob GETs with a redirect to \
             the object storage) or false (stream them through the server), not {v}"
        )));
    }
    DownloadPolicy::of(&repo.importer_config)
        .map_err(|e| Error::invalid(format!("importer_config: {e}")))?;
    wharf_core::retention::Retention::of(&repo.importer_config)
        .map_err(|e| Error::invalid(format!("importer_config: {e}")))?;
    let pull_through = PullThrough::of(&repo.distributor_config)
        .map_err(|e| Error::invalid(format!("distributor_config: {e}")))?;
    Ok(pull_through.is_some())
}

/// The distributor setting that turns blob redirects to object storage on
/// or off for one repository (docs/scaling.md); it takes effect with the
/// repository's next publish.
pub const BLOB_REDIRECT: &str = "blob_redirect";

/// A pull-through repository answers for the names below its own once it
/// is published: publish it (empty, at first) as soon as it becomes one.
async fn publish_pull_through(app: &Arc<App>, id: &RepoId) -> Result<()> {
    crate::jobs::publish_on_push(app, id).await.map_err(|f| {
        Error::internal(format!(
            "the repository is saved, but publishing it as a pull-through cache failed: {}; \
             publish it with `wharf repo publish --repo-id {id}`",
            f.message
        ))
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
struct ListQuery {
    after: Option<String>,
    limit: Option<u32>,
    content_type: Option<String>,
    /// `key=value`, repeatable as `note=a=1&note=b=2` is not supported by
    /// serde_urlencoded; use comma separated `note=a=1,b=2`.
    note: Option<String>,
}

/// A version limit as asked for: at least 1 (the latest is always kept).
fn retain_versions(n: Option<u64>) -> Result<Option<u64>> {
    match n {
        Some(0) => Err(Error::invalid(
            "retain_versions must be at least 1 (the latest version is always kept); \
             leave it out to keep every version",
        )),
        n => Ok(n),
    }
}

pub fn parse_notes(s: &str) -> Result<Notes> {
    let mut notes = Notes::new();
    for pair in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::invalid(format!("note filter {pair:?} is not key=value")))?;
        notes.insert(k.to_string(), v.to_string());
    }
    Ok(notes)
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/repositories", tag = "repositories", params(ListQuery),
    responses((status = 200, body = Page<Repository>), (status = 400, body = ApiErrorBody)))]
async fn list(
    State(app): State<Arc<App>>,
    q: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<RepoView>>> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let query = RepoQuery {
        after: q.after,
        limit: limit + 1,
        content_type: q.content_type,
        notes: q
            .note
            .as_deref()
            .map(parse_notes)
            .transpose()?
            .unwrap_or_default(),
        setting: None,
    };
    let mut items = app.store.list_repos(&query).await?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|r| r.id.to_string())
    } else {
        None
    };
    let items = items.into_iter().map(RepoView::from).collect();
    Ok(Json(Page { items, next }))
}

pub async fn get_repo(app: &App, id: &str) -> Result<Repository> {
    let id = parse_repo_id(id)?;
    app.store
        .get_repo(&id)
        .await?
        .ok_or_else(|| Error::not_found(format!("repository {id} not found")))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct RepoDetail {
    #[serde(flatten)]
    repo: RepoView,
    content_counts: BTreeMap<String, u64>,
    /// The newest version's number.
    latest_version: Option<u64>,
    /// Each publication names the version it serves (`version`).
    publications: Vec<PublicationView>,
}

#[utoipa::path(get, path = "/api/v1/repositories/{id}", tag = "repositories",
    responses((status = 200, body = RepoDetail), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<RepoDetail>> {
    let repo = get_repo(&app, &id).await?;
    // The newest version's counts, kept with it: no count of the
    // repository's units per request.
    let latest = app.store.latest_version(&repo.id).await?;
    let content_counts = latest
        .as_ref()
        .map(|v| {
            v.content
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(t, n)| (t.as_str().to_string(), *n))
                .collect()
        })
        .unwrap_or_default();
    let publications = app
        .publications
        .whole()
        .await
        .for_repo(repo.id.as_str())
        .into_iter()
        .map(|p| PublicationView::from((*p).clone()))
        .collect();
    let latest_version = latest.map(|v| v.number);
    Ok(Json(RepoDetail {
        repo: repo.into(),
        content_counts,
        latest_version,
        publications,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateRepo {
    display_name: Option<String>,
    description: Option<String>,
    /// Notes to set; a null value removes the note.
    notes: Option<BTreeMap<String, Option<String>>>,
    /// Merged into the existing settings; a null value removes a key. A
    /// secret (e.g. `password`) sent back as read, `********`, keeps its
    /// stored value.
    #[schema(value_type = Option<Object>)]
    importer_config: Option<serde_json::Map<String, serde_json::Value>>,
    #[schema(value_type = Option<Object>)]
    distributor_config: Option<serde_json::Map<String, serde_json::Value>>,
    /// How many versions to keep; `null` keeps all again. Applied when the
    /// next version is made.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    retain_versions: Option<Option<u64>>,
}

/// A field that may be absent (outer `None`), `null` (`Some(None)`) or set.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Merge `delta` into stored settings; a secret sent back masked (as read)
/// keeps its stored value.
fn merge(
    into: &mut serde_json::Value,
    delta: serde_json::Map<String, serde_json::Value>,
    what: &str,
) -> Result<()> {
    let delta = secrets::unmask(serde_json::Value::Object(delta), Some(&*into), what)
        .map_err(Error::invalid)?;
    let serde_json::Value::Object(delta) = delta else {
        unreachable!("unmask keeps the shape")
    };
    let obj = into.as_object_mut().expect("configs are objects");
    for (k, v) in delta {
        if v.is_null() {
            obj.remove(&k);
        } else {
            obj.insert(k, v);
        }
    }
    Ok(())
}

#[utoipa::path(patch, path = "/api/v1/repositories/{id}", tag = "repositories", request_body = UpdateRepo,
    responses((status = 200, body = Repository), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn update(
    State(app): State<Arc<App>>,
    axum::Extension(principal): axum::Extension<crate::auth::Principal>,
    Path(id): Path<String>,
    body: std::result::Result<Json<UpdateRepo>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<RepoView>> {
    let Json(req) = body?;
    let mut repo = get_repo(&app, &id).await?;
    let remote_before = repo
        .importer_config
        .get(wharf_store::db::REMOTE_SETTING)
        .cloned();
    let protected_before = crate::auth::protection::is_protected(&repo);
    if let Some(d) = req.display_name {
        repo.display_name = d;
    }
    if let Some(d) = req.description {
        repo.description = d;
    }
    for (k, v) in req.notes.unwrap_or_default() {
        match v {
            Some(v) => repo.notes.insert(k, v),
            None => repo.notes.remove(&k),
        };
    }
    if let Some(c) = req.importer_config {
        merge(&mut repo.importer_config, c, "importer_config")?;
    }
    if let Some(c) = req.distributor_config {
        merge(&mut repo.distributor_config, c, "distributor_config")?;
    }
    if let Some(n) = req.retain_versions {
        repo.retain_versions = retain_versions(n)?;
    }
    repo.updated_at = now();
    let pull_through = check_host_settings(&repo)?;
    if repo.importer_config.get(wharf_store::db::REMOTE_SETTING) != remote_before.as_ref() {
        crate::remotes::check_use(&app, &principal, &repo.importer_config, &repo.content_type)
            .await?;
    }
    app.store.update_repo(&repo).await?;
    app.auth
        .protection
        .refresh(app.store.as_ref(), &repo.id)
        .await?;
    let protected = crate::auth::protection::is_protected(&repo);
    if protected != protected_before {
        // Other nodes follow the publications every half second, not the
        // repositories: tell them there (`Protection::follow`).
        let (key, value) = (
            crate::auth::protection::KEY,
            serde_json::Value::Bool(protected),
        );
        app.store
            .set_publication_setting(&repo.id, key, &value)
            .await?;
        app.publications.set_setting(repo.id.as_str(), key, &value);
    }
    app.pulls.forget(&repo.id);
    if pull_through {
        // Its publication carries the settings the registry side reads.
        publish_pull_through(&app, &repo.id).await?;
    }
    Ok(Json(repo.into()))
}

#[utoipa::path(delete, path = "/api/v1/repositories/{id}", tag = "repositories",
    responses((status = 202, body = Task), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn delete(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<wharf_store::db::Task>)> {
    let repo = get_repo(&app, &id).await?;
    submit(
        &app,
        Job::Delete {
            repository: repo.id,
        },
    )
    .await
}

#[derive(Deserialize, utoipa::IntoParams)]
struct ContentQuery {
    #[serde(rename = "type")]
    unit_type: String,
    after: Option<String>,
    limit: Option<u32>,
    /// A version's content instead of the latest.
    version: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/repositories/{id}/content", tag = "repositories", params(ContentQuery),
    responses((status = 200, body = Page<wharf_store::db::Unit>), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn content(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    q: std::result::Result<Query<ContentQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<wharf_store::db::Unit>>> {
    let Query(q) = q?;
    let unit_type: wharf_core::ids::UnitType = q
        .unit_type
        .parse()
        .map_err(|e: wharf_core::ids::InvalidUnitType| Error::invalid(e.to_string()))?;
    let repo = get_repo(&app, &id).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let after = q.after.as_deref();
    let mut items = match q.version {
        None => {
            app.store
                .list_units(&repo.id, &unit_type, after, limit + 1)
                .await?
        }
        Some(n) => {
            crate::versions::get_version(&app, &repo.id, n).await?;
            app.store
                .list_version_units(&repo.id, n, &unit_type, after, limit + 1)
                .await?
        }
    };
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|u| u.key.clone())
    } else {
        None
    };
    Ok(Json(Page { items, next }))
}

/// Submit a job as a task; answers 202 with the task.
async fn submit(app: &Arc<App>, job: Job) -> Result<(StatusCode, Json<Task>)> {
    Ok((StatusCode::ACCEPTED, Json(app.tasks.submit(job).await?)))
}

pub(crate) fn plugin_for(app: &App, repo: &Repository) -> Result<()> {
    match app.plugins.for_content_type(&repo.content_type) {
        Some(_) => Ok(()),
        None => Err(Error::new(
            ErrorKind::Conflict,
            "plugin-missing",
            format!(
                "no plugin provides content type {:?} of repository {}; install it first",
                repo.content_type, repo.id
            ),
        )),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ImportRequest {
    upload_id: String,
    /// Delete the upload after a successful import (default true).
    #[serde(default = "yes")]
    delete_upload: bool,
    /// Content-type specific import parameters, handed to the plugin.
    #[serde(default)]
    #[schema(value_type = Object)]
    params: serde_json::Map<String, serde_json::Value>,
}

fn yes() -> bool {
    true
}

/// Import content into a repository, either of two ways:
/// - JSON `{"upload_id": ...}`: import a finished resumable upload (a task
///   is queued; 202 at once);
/// - the content itself as the body (`application/octet-stream` or
///   `application/x-tar`, with `Content-Length`; plugin parameters as query
///   parameters): the plugin imports it while it arrives, so each byte is
///   received, hashed and written once. The task runs in this process and
///   the answer (202, the ended task) comes when it ends.
#[utoipa::path(post, path = "/api/v1/repositories/{id}/import", tag = "repositories",
    request_body(content(
        (ImportRequest = "application/json"),
        (Vec<u8> = "application/octet-stream"),
        (Vec<u8> = "application/x-tar"),
    )),
    responses((status = 202, body = Task), (status = 400, body = ApiErrorBody), (status = 403, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody), (status = 411, body = ApiErrorBody), (status = 415, body = ApiErrorBody)))]
async fn import(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    axum::Extension(principal): axum::Extension<crate::auth::Principal>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/json" => {}
        "application/octet-stream" | "application/x-tar" => {
            return crate::http::stream_import::run(app, &id, &principal, query, &headers, body)
                .await;
        }
        _ => {
            return Err(Error::new(
                ErrorKind::UnsupportedType,
                "unsupported-media-type",
                format!(
                    "send JSON {{\"upload_id\": ...}} (application/json) to import an upload, or the \
                     content itself as application/octet-stream; got {content_type:?}"
                ),
            ));
        }
    }
    if !query.is_empty() {
        return Err(Error::invalid(
            "query parameters are for streaming imports; put params in the JSON body",
        ));
    }
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| Error::invalid(format!("cannot read the request: {e}")))?;
    let Json(req) = Json::<ImportRequest>::from_bytes(&bytes)?;
    let repo = get_repo(&app, &id).await?;
    plugin_for(&app, &repo)?;
    let upload_id: UploadId = req
        .upload_id
        .parse()
        .map_err(|_| Error::invalid(format!("invalid upload id {:?}", req.upload_id)))?;
    let upload = crate::uploads::get_upload(&app, &upload_id).await?;
    if let Some(size) = upload.size
        && upload.offset < size
    {
        return Err(Error::invalid(format!(
            "upload {upload_id} is incomplete: {} of {size} bytes received; resume it at offset {}",
            upload.offset, upload.offset
        )));
    }
    let sealed = crate::uploads::seal(&app, upload).await?;
    let job = Job::Import {
        repository: repo.id,
        upload_id,
        params: req.params,
        delete_upload: req.delete_upload,
        sealed,
    };
    Ok(submit(&app, job).await?.into_response())
}

#[utoipa::path(post, path = "/api/v1/repositories/{id}/sync", tag = "repositories",
    responses((status = 202, body = Task), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn sync(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<wharf_store::db::Task>)> {
    let repo = get_repo(&app, &id).await?;
    plugin_for(&app, &repo)?;
    submit(
        &app,
        Job::Sync {
            repository: repo.id,
        },
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    /// The version to publish (a rollback, when it is an older one); the
    /// latest when absent.
    version: Option<u64>,
}

/// Publish a version of the repository: what clients are served becomes
/// exactly that version. The body is optional.
#[utoipa::path(post, path = "/api/v1/repositories/{id}/publish", tag = "repositories", request_body = Option<PublishRequest>,
    responses((status = 202, body = Task), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn publish(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: std::result::Result<
        Option<Json<PublishRequest>>,
        axum::extract::rejection::JsonRejection,
    >,
) -> Result<(StatusCode, Json<wharf_store::db::Task>)> {
    let version = body?.and_then(|Json(r)| r.version);
    let repo = get_repo(&app, &id).await?;
    plugin_for(&app, &repo)?;
    if let Some(n) = version {
        crate::versions::get_version(&app, &repo.id, n).await?;
    }
    submit(
        &app,
        Job::Publish {
            repository: repo.id,
            version,
        },
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CopyRequest {
    /// The repository to copy from.
    from: String,
    /// Unit types to copy; all when empty.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    unit_types: Vec<wharf_core::ids::UnitType>,
    /// Copy only these, with what each needs to be served: tags or
    /// digests, in the content type's words (e.g. `latest`,
    /// `sha256:…`). Not together with `unit_types`.
    #[serde(default)]
    references: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/repositories/{id}/copy", tag = "repositories", request_body = CopyRequest,
    responses((status = 202, body = Task), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn copy(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: std::result::Result<Json<CopyRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<wharf_store::db::Task>)> {
    let Json(req) = body?;
    let to = get_repo(&app, &id).await?;
    let from = get_repo(&app, &req.from).await?;
    if from.content_type != to.content_type {
        return Err(Error::invalid(format!(
            "cannot copy {} content into {} repository {}",
            from.content_type, to.content_type, to.id
        )));
    }
    if !req.references.is_empty() && !req.unit_types.is_empty() {
        return Err(Error::invalid(
            "give references or unit_types, not both: references copy those images with what they need",
        ));
    }
    references(&req.references, true)?;
    plugin_for(&app, &from)?;
    submit(
        &app,
        Job::Copy {
            repository: to.id,
            from: from.id,
            unit_types: req.unit_types,
            references: req.references,
        },
    )
    .await
}

/// References as a request gives them: at most 1,000, each 1-256 bytes
/// without control characters (the plugin decides what they mean).
fn references(refs: &[String], may_be_empty: bool) -> Result<()> {
    if refs.is_empty() && !may_be_empty {
        return Err(Error::invalid(
            "name at least one reference (a tag or a digest)",
        ));
    }
    if refs.len() > 1000 {
        return Err(Error::invalid("at most 1000 references per request"));
    }
    for r in refs {
        if r.is_empty() || r.len() > 256 || r.chars().any(char::is_control) {
            return Err(Error::invalid(format!(
                "{r:?} is not a reference: 1-256 characters, no control characters"
            )));
        }
    }
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RemoveRequest {
    /// What to take out: tags or digests, in the content type's words.
    references: Vec<String>,
}

/// Take tags or images out of a repository, as a task that makes a new
/// version (removing an image takes its tags and what no other image of
/// the repository needs).
#[utoipa::path(post, path = "/api/v1/repositories/{id}/remove", tag = "repositories", request_body = RemoveRequest,
    responses((status = 202, body = Task), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn remove(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: std::result::Result<Json<RemoveRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<wharf_store::db::Task>)> {
    let Json(req) = body?;
    references(&req.references, false)?;
    let repo = get_repo(&app, &id).await?;
    plugin_for(&app, &repo)?;
    submit(
        &app,
        Job::Remove {
            repository: repo.id,
            references: req.references,
        },
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TagRequest {
    /// The tag to add or move.
    tag: String,
    /// What it points at: a digest or another tag.
    target: String,
}

/// Point a tag at an image of the repository, as a task that makes a new
/// version.
#[utoipa::path(post, path = "/api/v1/repositories/{id}/tag", tag = "repositories", request_body = TagRequest,
    responses((status = 202, body = Task), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn tag(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: std::result::Result<Json<TagRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<wharf_store::db::Task>)> {
    let Json(req) = body?;
    references(&[req.tag.clone(), req.target.clone()], false)?;
    let repo = get_repo(&app, &id).await?;
    plugin_for(&app, &repo)?;
    submit(
        &app,
        Job::Tag {
            repository: repo.id,
            tag: req.tag,
            target: req.target,
        },
    )
    .await
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RetainRequest {
    /// Only say which tags would go.
    #[serde(default)]
    dry_run: bool,
}

/// Remove the tags the repository's retention settings (importer setting
/// `retention`) no longer keep, as a task that makes a new version; with
/// `dry_run`, the task only lists them. A sync applies retention too.
#[utoipa::path(post, path = "/api/v1/repositories/{id}/retain", tag = "repositories", request_body = RetainRequest,
    responses((status = 202, body = Task), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn retain(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: std::result::Result<Json<RetainRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<wharf_store::db::Task>)> {
    let Json(req) = body?;
    let repo = get_repo(&app, &id).await?;
    plugin_for(&app, &repo)?;
    match wharf_core::retention::Retention::of(&repo.importer_config) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(Error::invalid(format!(
                "repository {id} keeps every tag: give it retention settings first \
                 (importer_config.retention, or `wharf docker repo update --repo-id {id} --retain-newest N`)"
            )));
        }
        Err(e) => return Err(Error::invalid(format!("importer_config: {e}"))),
    }
    submit(
        &app,
        Job::Retain {
            repository: repo.id,
            dry_run: req.dry_run,
        },
    )
    .await
}
