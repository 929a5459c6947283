//! `/api/v1/tasks`: list, show, cancel.

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::ApiErrorBody;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use std::sync::Arc;
use wharf_core::ids::TaskId;
use wharf_store::db::{Task, TaskKind, TaskQuery, TaskState};

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/tasks", get(list))
        .route("/tasks/{id}", get(show))
        .route("/tasks/{id}/cancel", post(cancel))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
struct ListQuery {
    state: Option<TaskState>,
    #[param(value_type = Option<String>)]
    kind: Option<TaskKind>,
    repository: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(ListQuery),
    responses((status = 200, body = Vec<Task>)))]
async fn list(
    State(app): State<Arc<App>>,
    q: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Task>>> {
    let Query(q) = q?;
    let query = TaskQuery {
        state: q.state,
        kind: q.kind,
        lock: q
            .repository
            .map(|r| r.parse().map(wharf_store::db::TaskLock::Repository))
            .transpose()
            .map_err(|e: wharf_core::ids::InvalidRepoId| Error::invalid(e.to_string()))?,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    Ok(Json(app.tasks.list(&query).await?))
}

fn parse(id: &str) -> Result<TaskId> {
    id.parse()
        .map_err(|_| Error::invalid(format!("invalid task id {id:?}")))
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks",
    responses((status = 200, body = Task), (status = 404, body = ApiErrorBody)))]
async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Task>> {
    let id = parse(&id)?;
    app.tasks
        .get(&id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::not_found(format!("task {id} not found")))
}

#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks",
    responses((status = 202, body = Task), (status = 409, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn cancel(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Task>)> {
    let id = parse(&id)?;
    let task = app
        .tasks
        .get(&id)
        .await?
        .ok_or_else(|| Error::not_found(format!("task {id} not found")))?;
    if task.state.is_final() || !app.tasks.cancel(&id).await? {
        return Err(Error::conflict(format!(
            "task {id} already ended ({})",
            task.state.as_str()
        )));
    }
    let task = app.tasks.get(&id).await?.unwrap_or(task);
    Ok((StatusCode::ACCEPTED, Json(task)))
}
