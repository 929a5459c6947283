//! Orphan cleanup: delete units no repository holds and blobs nothing
//! references. Runs as a task (`POST /api/v1/orphans/cleanup`).
//!
//! A blob is stored before the units naming it are committed (an import in
//! flight), so only blobs older than a protection window are candidates;
//! storing an existing blob again restarts its window. Kept whatever their
//! age: blobs of units, blobs every live publication serves (recorded with
//! it, so a manifest deleted since the last publish stays served), and
//! blobs pushed to a repository in the last day (a manifest may name them).

use crate::app::App;
use crate::http::error::ApiResult;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new().route("/orphans/cleanup", post(cleanup))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
struct CleanupQuery {
    /// Keep unreferenced blobs younger than this (default 60 minutes).
    protection_minutes: Option<u64>,
}

#[utoipa::path(post, path = "/api/v1/orphans/cleanup", tag = "orphans", params(CleanupQuery),
    responses((status = 202, body = crate::db::Task)))]
async fn cleanup(
    State(app): State<Arc<App>>,
    q: Result<Query<CleanupQuery>, QueryRejection>,
) -> ApiResult<(StatusCode, Json<crate::db::Task>)> {
    let Query(q) = q?;
    let job = crate::jobs::Job::Orphans {
        protection_minutes: q.protection_minutes.unwrap_or(60),
    };
    Ok((StatusCode::ACCEPTED, Json(app.tasks.submit(job).await?)))
}

pub async fn remove_orphans(app: &App, protection: Duration) -> crate::tasks::TaskResult {
    let units = app.store.remove_orphan_units().await?;
    let referenced: HashSet<_> = app.store.referenced_blobs().await?.into_iter().collect();
    let blobs = app.blobs.clone();
    let sessions = app.plugins.runtime.env.sessions.clone();
    let cutoff = SystemTime::now() - protection;
    let (removed, bytes, idle_sessions) =
        tokio::task::spawn_blocking(move || -> std::io::Result<(u64, u64, usize)> {
            // Pushes abandoned half-way: untouched for the protection window.
            let idle_sessions = sessions.remove_idle(protection)?;
            // Pushed blobs a manifest may still name (docs/access.md).
            let received = sessions.received_blobs()?;
            let (mut removed, mut bytes) = (0, 0);
            for d in blobs.list()? {
                if referenced.contains(&d)
                    || received.contains(&d)
                    || blobs.modified(&d).is_none_or(|m| m > cutoff)
                {
                    continue;
                }
                bytes += blobs.stat(&d).unwrap_or(0);
                if blobs.remove(&d)? {
                    removed += 1;
                }
            }
            Ok((removed, bytes, idle_sessions))
        })
        .await??;
    Ok(serde_json::json!({
        "units_removed": units,
        "blobs_removed": removed,
        "bytes_freed": bytes,
        "upload_sessions_removed": idle_sessions,
    }))
}
