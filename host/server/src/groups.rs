//! Repository groups (`/api/v1/groups`): named sets of repositories with a
//! description and notes.

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::ApiErrorBody;
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use wharf_core::ids::RepoId;
use wharf_store::db::{Group, Members, Notes};

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/groups", post(create).get(list))
        .route("/groups/{id}", get(show).patch(update).delete(remove))
        .route("/groups/{id}/members", post(add_member))
        .route("/groups/{id}/members/{repo_id}", delete(remove_member))
}

fn parse_id(id: &str) -> Result<RepoId> {
    id.parse().map_err(|_| {
        Error::invalid(format!(
            "invalid group or repository id {id:?}: use letters, digits, '.', '-' or '_'"
        ))
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    id: String,
    display_name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    notes: Notes,
    #[serde(default)]
    members: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/groups", tag = "groups", request_body = CreateGroup,
    responses((status = 201, body = Group), (status = 400, body = ApiErrorBody), (status = 409, body = ApiErrorBody)))]
async fn create(
    State(app): State<Arc<App>>,
    body: std::result::Result<Json<CreateGroup>, JsonRejection>,
) -> Result<(StatusCode, Json<Group>)> {
    let Json(req) = body?;
    let id = parse_id(&req.id)?;
    let g = Group {
        display_name: req.display_name.unwrap_or_else(|| id.to_string()),
        id,
        description: req.description,
        notes: req.notes,
        members: req
            .members
            .iter()
            .map(|m| parse_id(m))
            .collect::<Result<_>>()?,
    };
    app.store.create_group(&g).await?;
    Ok((StatusCode::CREATED, Json(g)))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct ListQuery {
    /// `key=value[,key=value]`
    note: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", params(ListQuery), responses((status = 200, body = Vec<Group>)))]
async fn list(
    State(app): State<Arc<App>>,
    q: std::result::Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<Group>>> {
    let Query(q) = q?;
    let notes = q
        .note
        .as_deref()
        .map(crate::repos::parse_notes)
        .transpose()?
        .unwrap_or_default();
    Ok(Json(app.store.list_groups(&notes).await?))
}

async fn get_group(app: &App, id: &str) -> Result<Group> {
    let id = parse_id(id)?;
    app.store
        .get_group(&id)
        .await?
        .ok_or_else(|| Error::not_found(format!("group {id} not found")))
}

#[utoipa::path(get, path = "/api/v1/groups/{id}", tag = "groups", responses((status = 200, body = Group), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Group>> {
    Ok(Json(get_group(&app, &id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateGroup {
    display_name: Option<String>,
    description: Option<String>,
    /// A null value removes the note.
    notes: Option<BTreeMap<String, Option<String>>>,
    /// Replaces the members when given.
    members: Option<Vec<String>>,
}

#[utoipa::path(patch, path = "/api/v1/groups/{id}", tag = "groups", request_body = UpdateGroup,
    responses((status = 200, body = Group), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn update(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: std::result::Result<Json<UpdateGroup>, JsonRejection>,
) -> Result<Json<Group>> {
    let Json(req) = body?;
    let mut g = get_group(&app, &id).await?;
    if let Some(d) = req.display_name {
        g.display_name = d;
    }
    if let Some(d) = req.description {
        g.description = d;
    }
    for (k, v) in req.notes.unwrap_or_default() {
        match v {
            Some(v) => g.notes.insert(k, v),
            None => g.notes.remove(&k),
        };
    }
    let members = match req.members {
        Some(m) => {
            g.members = m.iter().map(|m| parse_id(m)).collect::<Result<_>>()?;
            Members::Replace
        }
        None => Members::Keep,
    };
    app.store.update_group(&g, members).await?;
    Ok(Json(get_group(&app, &id).await?))
}

#[utoipa::path(delete, path = "/api/v1/groups/{id}", tag = "groups", responses((status = 204), (status = 404, body = ApiErrorBody)))]
async fn remove(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<StatusCode> {
    let id = parse_id(&id)?;
    match app.store.delete_group(&id).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(Error::not_found(format!("group {id} not found"))),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AddMember {
    repo_id: String,
}

#[utoipa::path(post, path = "/api/v1/groups/{id}/members", tag = "groups", request_body = AddMember,
    responses((status = 200, body = Group), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn add_member(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: std::result::Result<Json<AddMember>, JsonRejection>,
) -> Result<Json<Group>> {
    let Json(req) = body?;
    let (group, repo) = (parse_id(&id)?, parse_id(&req.repo_id)?);
    app.store.set_group_member(&group, &repo, true).await?;
    Ok(Json(get_group(&app, &id).await?))
}

#[utoipa::path(delete, path = "/api/v1/groups/{id}/members/{repo_id}", tag = "groups",
    responses((status = 200, body = Group), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn remove_member(
    State(app): State<Arc<App>>,
    Path((id, repo)): Path<(String, String)>,
) -> Result<Json<Group>> {
    let (group, repo) = (parse_id(&id)?, parse_id(&repo)?);
    if !app.store.set_group_member(&group, &repo, false).await? {
        return Err(Error::not_found(format!(
            "repository {repo} is not a member of group {id}"
        )));
    }
    Ok(Json(get_group(&app, &id).await?))
}
