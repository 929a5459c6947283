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
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};
use wharf_core::digest::{Digest, DigestSet};
use wharf_store::blobs::Collected;
use wharf_store::db::Progress;

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

/// Candidates deleted per hold of the link lock: writers wait at most one
/// batch's deletes.
const BATCH: usize = 1000;

/// Remove orphan units, then orphan blobs: the blob store is walked a page
/// at a time against a compact set of the references ([`DigestSet`]),
/// and candidates are deleted in batches of [`BATCH`], so memory stays
/// bounded by the references and a page however many blobs there are. The
/// task's progress counts the blobs looked at; a cancel stops the walk
/// between batches (what was deleted stays deleted: each was an orphan).
pub async fn remove_orphans(
    app: &App,
    protection: Duration,
    ctx: &crate::tasks::TaskContext,
) -> crate::tasks::TaskResult {
    let blobs = app.blobs.clone();
    let run = tokio::task::spawn_blocking(move || blobs.begin_collection()).await??;
    let units = app.store.remove_orphan_units().await?;
    let mut referenced: DigestSet = app.store.referenced_blobs().await?;
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
    let (progress, cancel) = (ctx.progress.clone(), ctx.cancel.clone());
    let (collected, seen, idle_sessions) =
        tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let idle_sessions = sessions.remove_idle(session_idle)?;
            // Pushed blobs a manifest may still name (docs/access.md).
            let received = sessions.received_blobs()?;
            let mut collected = Collected::default();
            let mut candidates = Vec::with_capacity(BATCH);
            let mut seen = 0u64;
            let delete = |candidates: &mut Vec<Digest>, seen: u64, collected: &mut Collected| {
                *collected += blobs.collect(candidates, run)?;
                candidates.clear();
                progress(Progress {
                    items_done: seen,
                    message: format!(
                        "{seen} blobs looked at, {} removed ({} bytes)",
                        collected.removed, collected.bytes
                    ),
                    ..Progress::default()
                });
                std::io::Result::Ok(())
            };
            blobs.walk(|page| {
                for (d, modified) in page {
                    seen += 1;
                    if referenced.contains(&d) || received.contains(&d) {
                        continue;
                    }
                    if modified
                        .or_else(|| blobs.modified(&d))
                        .is_some_and(|m| m <= cutoff)
                    {
                        candidates.push(d);
                    }
                    if candidates.len() >= BATCH {
                        delete(&mut candidates, seen, &mut collected)?;
                        if cancel.load(Ordering::Relaxed) {
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                }
                Ok(ControlFlow::Continue(()))
            })?;
            // The last, partial batch (empty after a cancel), and the
            // final progress.
            delete(&mut candidates, seen, &mut collected)?;
            Ok((collected, seen, idle_sessions))
        })
        .await??;
    let summary = serde_json::json!({
        "units_removed": units,
        "blobs_seen": seen,
        "blobs_removed": collected.removed,
        "bytes_freed": collected.bytes,
        "blobs_leased": collected.leased,
        "upload_sessions_removed": idle_sessions,
    });
    if ctx.cancel.load(Ordering::Relaxed) {
        return Err(crate::tasks::TaskFailure::new(
            format!("canceled; what was removed before stays removed: {summary}"),
            "canceled",
        ));
    }
    Ok(summary)
}
