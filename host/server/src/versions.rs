//! Repository versions (`/api/v1/repositories/{id}/versions`): list and
//! show them, diff two, and restore one (a task that makes a new version
//! with that version's content). How the store keeps them:
//! `wharf_store::db::version`.

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::ApiErrorBody;
use crate::repos::get_repo;
use crate::tasks::Job;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use std::sync::Arc;
use wharf_core::ids::RepoId;
use wharf_store::db::{RepoVersion, Task, VersionDiff};

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/repositories/{id}/versions", get(list))
        .route("/repositories/{id}/versions/{number}", get(show))
        .route(
            "/repositories/{id}/versions/{number}/restore",
            post(restore),
        )
        .route("/repositories/{id}/diff", get(diff))
}

/// A kept version, or a 404 that says why it may be missing.
pub async fn get_version(app: &App, repo: &RepoId, n: u64) -> Result<RepoVersion> {
    app.store.get_version(repo, n).await?.ok_or_else(|| {
        Error::not_found(format!(
            "repository {repo} has no version {n}: not made yet, or deleted by its version \
             limit (retain_versions); list them with `wharf repo versions list --repo-id {repo}`"
        ))
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
struct ListQuery {
    /// Versions numbered after this one.
    after: Option<u64>,
    limit: Option<u32>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct VersionPage {
    items: Vec<RepoVersion>,
    /// Pass as `after` to get the next page; absent on the last page.
    next: Option<String>,
}

/// The versions a repository keeps, oldest first.
#[utoipa::path(get, path = "/api/v1/repositories/{id}/versions", tag = "repositories", params(ListQuery),
    responses((status = 200, body = VersionPage), (status = 404, body = ApiErrorBody)))]
async fn list(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    q: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<VersionPage>> {
    let Query(q) = q?;
    let repo = get_repo(&app, &id).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let mut items = app
        .store
        .list_versions(&repo.id, q.after, limit + 1)
        .await?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|v| v.number.to_string())
    } else {
        None
    };
    Ok(Json(VersionPage { items, next }))
}

#[utoipa::path(get, path = "/api/v1/repositories/{id}/versions/{number}", tag = "repositories",
    responses((status = 200, body = RepoVersion), (status = 404, body = ApiErrorBody)))]
async fn show(
    State(app): State<Arc<App>>,
    Path((id, number)): Path<(String, String)>,
) -> Result<Json<RepoVersion>> {
    let repo = get_repo(&app, &id).await?;
    Ok(Json(
        get_version(&app, &repo.id, number_of(&number)?).await?,
    ))
}

fn number_of(s: &str) -> Result<u64> {
    s.parse()
        .map_err(|_| Error::invalid(format!("{s:?} is not a version number")))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct DiffQuery {
    from: u64,
    to: u64,
}

/// The units `to` holds and `from` does not (`added`), and the reverse
/// (`removed`).
#[utoipa::path(get, path = "/api/v1/repositories/{id}/diff", tag = "repositories", params(DiffQuery),
    responses((status = 200, body = VersionDiff), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn diff(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    q: std::result::Result<Query<DiffQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<VersionDiff>> {
    let Query(q) = q?;
    let repo = get_repo(&app, &id).await?;
    for n in [q.from, q.to] {
        get_version(&app, &repo.id, n).await?;
    }
    Ok(Json(app.store.diff_versions(&repo.id, q.from, q.to).await?))
}

/// Make a version's content the latest again, as a new version (a task).
/// Clients see it once it is published.
#[utoipa::path(post, path = "/api/v1/repositories/{id}/versions/{number}/restore", tag = "repositories",
    responses((status = 202, body = Task), (status = 404, body = ApiErrorBody)))]
async fn restore(
    State(app): State<Arc<App>>,
    Path((id, number)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Task>)> {
    let repo = get_repo(&app, &id).await?;
    let version = get_version(&app, &repo.id, number_of(&number)?).await?;
    let job = Job::Restore {
        repository: repo.id,
        version: version.number,
    };
    Ok((StatusCode::ACCEPTED, Json(app.tasks.submit(job).await?)))
}
