//! Blob verification: re-hash every blob (in the data directory or the
//! bucket) and report those whose bytes do not match their name, deleting
//! them only when asked. Offline as `wharf fsck`, or on a running server as
//! a task (`POST /api/v1/blobs/fsck`) with progress and cancel. The store
//! is walked a page at a time ([`BlobStore::walk`]): memory stays bounded
//! however many blobs there are.

use crate::app::App;
use crate::error::Result;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wharf_core::digest::Digest;
use wharf_store::blobs::BlobStore;
use wharf_store::db::Progress;

#[derive(Debug, Default, serde::Serialize)]
pub struct FsckReport {
    pub checked: u64,
    pub bytes: u64,
    pub corrupt: Vec<Digest>,
    pub removed: Vec<Digest>,
}

/// Check every blob of `blobs`; `progress` hears of each one checked. A
/// set `cancel` stops the walk at the next blob.
pub fn check(
    blobs: &BlobStore,
    remove_corrupt: bool,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&FsckReport),
) -> std::io::Result<FsckReport> {
    let mut report = FsckReport::default();
    blobs.walk(|page| {
        for (d, _) in page {
            if cancel.load(Ordering::Relaxed) {
                return Ok(ControlFlow::Break(()));
            }
            report.checked += 1;
            report.bytes += blobs.stat(&d).unwrap_or(0);
            if !blobs.verify(&d).map_err(std::io::Error::other)? {
                if remove_corrupt && blobs.remove(&d)? {
                    report.removed.push(d.clone());
                }
                report.corrupt.push(d);
            }
            progress(&report);
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(report)
}

/// `wharf fsck`: check the blob store of a data directory.
pub fn run(
    data_dir: &Path,
    store: &crate::config::BlobArgs,
    remove_corrupt: bool,
) -> anyhow::Result<FsckReport> {
    let root = data_dir.join("blobs");
    anyhow::ensure!(
        store.blob_store.is_some() || root.is_dir(),
        "{} has no blob store (is this a wharf data directory?)",
        data_dir.display()
    );
    let blobs = store.open(&root)?;
    Ok(check(
        &blobs,
        remove_corrupt,
        &AtomicBool::new(false),
        &mut |_| {},
    )?)
}

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new().route("/blobs/fsck", post(start))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
struct FsckQuery {
    /// Delete the blobs whose bytes do not match their name (default:
    /// only report them).
    remove_corrupt: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/blobs/fsck", tag = "blobs", params(FsckQuery),
    responses((status = 202, body = wharf_store::db::Task)))]
async fn start(
    State(app): State<Arc<App>>,
    q: std::result::Result<Query<FsckQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<wharf_store::db::Task>)> {
    let Query(q) = q?;
    let job = crate::tasks::Job::Fsck {
        remove_corrupt: q.remove_corrupt.unwrap_or(false),
    };
    Ok((StatusCode::ACCEPTED, Json(app.tasks.submit(job).await?)))
}

/// The fsck task: [`check`] on the server's blob store.
pub async fn task(
    app: &App,
    remove_corrupt: bool,
    ctx: &crate::tasks::TaskContext,
) -> crate::tasks::TaskResult {
    let blobs = app.blobs.clone();
    let (sink, cancel) = (ctx.progress.clone(), ctx.cancel.clone());
    let report = tokio::task::spawn_blocking(move || {
        check(&blobs, remove_corrupt, &cancel, &mut |r| {
            sink(Progress {
                items_done: r.checked,
                bytes_done: r.bytes,
                message: format!("{} blobs checked, {} corrupt", r.checked, r.corrupt.len()),
                ..Progress::default()
            })
        })
    })
    .await??;
    if ctx.cancel.load(Ordering::Relaxed) {
        return Err(crate::tasks::TaskFailure::new(
            format!(
                "canceled after checking {} blobs; {} corrupt so far",
                report.checked,
                report.corrupt.len()
            ),
            "canceled",
        ));
    }
    Ok(serde_json::to_value(&report)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_and_optionally_removes_corrupt_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = wharf_store::blobs::BlobStore::open(&dir.path().join("blobs")).unwrap();
        let holder = wharf_store::blobs::leases::Holder::new();
        let good = blobs.store_bytes(b"good", None, &holder).unwrap();
        let bad = blobs.store_bytes(b"bad", None, &holder).unwrap();
        let hex = bad.hex();
        std::fs::write(
            dir.path().join("blobs/sha256").join(&hex[..2]).join(hex),
            b"tampered",
        )
        .unwrap();
        let r = super::run(dir.path(), &Default::default(), false).unwrap();
        assert_eq!(
            (r.checked, r.corrupt.clone(), r.removed.len()),
            (2, vec![bad.clone()], 0)
        );
        assert!(
            blobs.contains(&bad),
            "fsck without --remove-corrupt deletes nothing"
        );
        let r = super::run(dir.path(), &Default::default(), true).unwrap();
        assert_eq!(r.removed, vec![bad.clone()]);
        assert!(!blobs.contains(&bad) && blobs.contains(&good));
    }
}
