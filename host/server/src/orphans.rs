//! Orphan cleanup: delete units no repository holds and blobs nothing
//! references. Runs as a task (`POST /api/v1/orphans/cleanup`).
//!
//! Kept whatever their age: blobs of units, blobs every live publication
//! serves (recorded with it, so a manifest deleted since the last publish
//! stays served), blobs pushed to a repository in the last day (a manifest
//! may name them), and leased blobs: those a plugin call stored, found
//! stored or linked, until its changes commit (`blobs::leases`). The
//! references are a snapshot taken after the run began a new lease
//! generation; whatever became referenced since was leased first, so the
//! candidates are re-checked for leases, and deleted, under the link lock
//! that every writer takes to lease. Beyond that, only blobs unused for the
//! protection window go; with no window, in-flight work is still safe.
//! Upload sessions are left to the upload expiry (`uploads`), however short
//! the window: a session idle for a second may be a push between two
//! requests.

use crate::app::App;
use crate::error::Result;
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
    /// Keep unreferenced blobs unused for less than this (default 60
    /// minutes). In-flight work is kept whatever this is (leases).
    protection_minutes: Option<u64>,
}

#[utoipa::path(post, path = "/api/v1/orphans/cleanup", tag = "orphans", params(CleanupQuery),
    responses((status = 202, body = wharf_store::db::Task)))]
async fn cleanup(
    State(app): State<Arc<App>>,
    q: std::result::Result<Query<CleanupQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<wharf_store::db::Task>)> {
    let Query(q) = q?;
    let job = crate::tasks::Job::Orphans {
        protection_minutes: q.protection_minutes.unwrap_or(60),
    };
    Ok((StatusCode::ACCEPTED, Json(app.tasks.submit(job).await?)))
}

pub async fn remove_orphans(app: &App, protection: Duration) -> crate::tasks::TaskResult {
    let blobs = app.blobs.clone();
    let run = tokio::task::spawn_blocking(move || blobs.begin_collection()).await??;
    let units = app.store.remove_orphan_units().await?;
    let mut referenced: HashSet<_> = app.store.referenced_blobs().await?.into_iter().collect();
    // Installed plugins' components: nodes load them from the blob store.
    referenced.extend(
        app.store
            .list_installed_plugins()
            .await?
            .into_iter()
            .filter(|p| p.state == wharf_store::db::PluginState::Installed)
            .map(|p| p.wasm_sha256),
    );
    let blobs = app.blobs.clone();
    let sessions = app.plugins.runtime.env.sessions.clone();
    let session_idle = protection.max(app.config.upload_expiry);
    let cutoff = SystemTime::now() - protection;
    let (collected, idle_sessions) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let idle_sessions = sessions.remove_idle(session_idle)?;
        // Pushed blobs a manifest may still name (docs/access.md).
        let received = sessions.received_blobs()?;
        let candidates: Vec<_> = blobs
            .list()?
            .into_iter()
            .filter(|d| {
                !referenced.contains(d)
                    && !received.contains(d)
                    && blobs.modified(d).is_some_and(|m| m <= cutoff)
            })
            .collect();
        Ok((blobs.collect(&candidates, run)?, idle_sessions))
    })
    .await??;
    Ok(serde_json::json!({
        "units_removed": units,
        "blobs_removed": collected.removed,
        "bytes_freed": collected.bytes,
        "blobs_leased": collected.leased,
        "upload_sessions_removed": idle_sessions,
    }))
}
