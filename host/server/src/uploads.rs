//! Uploads (`/api/v1/uploads`): a client creates an upload, PUTs chunks at
//! offsets (resuming after an interruption from the offset the server
//! reports), then imports it into a repository. Chunks stream to disk; memory
//! stays flat whatever the size.
//!
//! The recorded offset only advances after the chunk is fsynced, so after a
//! crash the client resumes from bytes that are really on disk.
//!
//! Chunks that arrive in order are hashed as they stream in, so an import
//! that stores the whole upload as one blob knows its digest without reading
//! it back, and links the file into the blob store instead of copying it.
//! Once linked, an upload's bytes are the blob's: further chunks are refused.

use crate::app::App;
use crate::error::{Error, ErrorKind, Result};
use crate::http::ApiErrorBody;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use sha2::{Digest as _, Sha256};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use wharf_core::digest::RunningDigests;
use wharf_core::ids::UploadId;
use wharf_runtime::host::WholeUpload;
use wharf_store::blobs::{StreamError, stream_to_file};
use wharf_store::db::{Upload, now};

/// The directory holding upload data, named by upload id only.
pub struct UploadDir {
    dir: Dir,
    /// Digest state of uploads received in order by this process: (bytes
    /// covered, state). Lost on restart; an import then hashes the file.
    hashers: RunningDigests<UploadId>,
}

impl UploadDir {
    pub fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        wharf_core::private_files::private_dir(path)?;
        Ok(UploadDir {
            dir: Dir::open_ambient_dir(path, ambient_authority())?,
            hashers: RunningDigests::default(),
        })
    }

    /// What an import needs to link the first `len` bytes of upload `id`.
    pub fn whole(&self, id: &UploadId, len: u64) -> std::io::Result<WholeUpload> {
        let digest = self.hashers.digest(id, len);
        Ok(WholeUpload {
            dir: self.dir.try_clone()?,
            name: Self::name(id),
            digest,
        })
    }

    fn name(id: &UploadId) -> String {
        id.0.simple().to_string()
    }

    /// Uploads nobody has written to for `idle`, and no request is writing.
    /// Uploads nobody has written to for `idle`, each with its file locked
    /// (held until the caller drops it, so no writer starts on an upload
    /// about to be removed). One being written, or gone meanwhile, is
    /// skipped.
    fn idle(&self, idle: std::time::Duration) -> std::io::Result<Vec<(UploadId, std::fs::File)>> {
        fn skip_gone<T>(r: std::io::Result<T>) -> std::io::Result<Option<T>> {
            match r {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                r => r.map(Some),
            }
        }
        let mut out = Vec::new();
        for entry in self.dir.entries()? {
            let entry = entry?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<UploadId>().ok())
            else {
                continue;
            };
            let Some(meta) = skip_gone(entry.metadata())? else {
                continue;
            };
            if meta
                .modified()?
                .into_std()
                .elapsed()
                .is_ok_and(|a| a > idle)
                && let Some(file) =
                    skip_gone(self.dir.open(entry.file_name()).map(|f| f.into_std()))?
                && file.try_lock().is_ok()
            {
                out.push((id, file));
            }
        }
        Ok(out)
    }

    pub fn open_read(&self, id: &UploadId) -> std::io::Result<std::fs::File> {
        Ok(self.dir.open(Self::name(id))?.into_std())
    }

    fn open_write(&self, id: &UploadId, create: bool) -> std::io::Result<std::fs::File> {
        use cap_std::fs::OpenOptionsExt as _;
        let mut opts = OpenOptions::new();
        // Uploaded content is the uploader's until imported: private.
        opts.write(true)
            .create(create)
            .mode(wharf_core::private_files::FILE_MODE);
        Ok(self.dir.open_with(Self::name(id), &opts)?.into_std())
    }

    pub fn remove(&self, id: &UploadId) {
        let _ = self.dir.remove_file(Self::name(id));
        self.hashers.forget(id);
    }
}

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/uploads", post(create))
        .route("/uploads/{id}", get(status).put(put_chunk).delete(delete))
}

#[derive(serde::Deserialize, Default, utoipa::ToSchema)]
struct CreateUpload {
    size: Option<u64>,
}

#[utoipa::path(post, path = "/api/v1/uploads", tag = "uploads", request_body = CreateUpload,
    responses((status = 201, body = Upload)))]
async fn create(
    State(app): State<Arc<App>>,
    body: Option<Json<CreateUpload>>,
) -> Result<(StatusCode, Json<Upload>)> {
    let req = body.map(|b| b.0).unwrap_or_default();
    let upload = Upload {
        id: UploadId::new(),
        size: req.size,
        offset: 0,
        created_at: now(),
    };
    app.uploads
        .open_write(&upload.id, true)
        .map_err(Error::internal)?;
    app.store.put_upload(&upload).await?;
    Ok((StatusCode::CREATED, Json(upload)))
}

fn parse_id(id: &str) -> Result<UploadId> {
    id.parse()
        .map_err(|_| Error::invalid(format!("invalid upload id {id:?}")))
}

pub async fn get_upload(app: &App, id: &UploadId) -> Result<Upload> {
    app.store
        .get_upload(id)
        .await?
        .ok_or_else(|| Error::not_found(format!("upload {id} not found")))
}

#[utoipa::path(get, path = "/api/v1/uploads/{id}", tag = "uploads",
    responses((status = 200, body = Upload), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody)))]
async fn status(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Upload>> {
    Ok(Json(get_upload(&app, &parse_id(&id)?).await?))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
pub(crate) struct ChunkQuery {
    pub(crate) offset: Option<u64>,
}

/// The chunk's start: `?offset=N` or `Content-Range: bytes N-M/T`.
pub(crate) fn chunk_offset(q: &ChunkQuery, headers: &HeaderMap) -> Result<Option<u64>> {
    if let Some(o) = q.offset {
        return Ok(Some(o));
    }
    let Some(v) = headers.get("content-range") else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or("");
    let start = v
        .strip_prefix("bytes ")
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| {
            Error::invalid(format!(
                "cannot parse Content-Range {v:?}; use 'bytes START-END/TOTAL'"
            ))
        })?;
    Ok(Some(start))
}

/// Append a chunk at `?offset=N` (or `Content-Range: bytes N-M/T`); the
/// offset must equal the bytes received so far.
#[utoipa::path(put, path = "/api/v1/uploads/{id}", tag = "uploads", params(ChunkQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = Upload), (status = 416, body = ApiErrorBody), (status = 400, body = ApiErrorBody), (status = 404, body = ApiErrorBody), (status = 409, body = ApiErrorBody, description = "another request is writing the upload (upload-busy), or it was imported as a blob and is frozen (upload-frozen)")))]
async fn put_chunk(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<ChunkQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut body = Some(body);
    match write_chunk(&app, &id, &q, &headers, &mut body).await {
        Ok(upload) => Json(upload).into_response(),
        // Refused before the chunk was read (busy, frozen, wrong offset):
        // take the rest of it first, or a client still sending sees a
        // reset instead of the answer.
        Err(e) => match body {
            Some(body) => {
                let limits = &crate::http::unread::AFTER_REFUSAL;
                crate::http::unread::answer_after_draining(body, limits, e.into_response()).await
            }
            None => e.into_response(),
        },
    }
}

/// [`put_chunk`]'s work; takes `body` once it starts reading it.
async fn write_chunk(
    app: &Arc<App>,
    id: &str,
    q: &ChunkQuery,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Upload> {
    let id = parse_id(id)?;
    let mut upload = get_upload(app, &id).await?;
    let offset = chunk_offset(q, headers)?.unwrap_or(upload.offset);
    if offset != upload.offset {
        return Err(Error::new(
            ErrorKind::BadRange,
            "wrong-offset",
            format!(
                "upload {id} has {} bytes; send the next chunk at offset {} (got {offset})",
                upload.offset, upload.offset
            ),
        ));
    }
    let file = app
        .uploads
        .open_write(&id, false)
        .map_err(Error::internal)?;
    // One writer at a time, and never a wait: a second request writing this
    // upload (or an import linking it into the blob store, which holds the
    // same lock; once it has, the bytes are the blob's and must not change)
    // is answered 409 at once instead of parking a thread on the lock.
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(Error::new(
                ErrorKind::Conflict,
                "upload-busy",
                format!(
                    "upload {id} is being written by another request; wait for it to end, \
                     then resume at the offset GET /api/v1/uploads/{id} reports"
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::internal(e)),
    }
    if file.metadata().map_err(Error::internal)?.nlink() > 1 {
        return Err(Error::new(
            ErrorKind::Conflict,
            "upload-frozen",
            format!(
                "upload {id} was imported as a blob and can no longer change; start a new upload"
            ),
        ));
    }
    // Keep hashing only if the state covers exactly the recorded bytes.
    let hasher = app
        .uploads
        .hashers
        .take(&id, offset)
        .or_else(|| (offset == 0).then(Sha256::new));
    // Bytes past the recorded offset are from a chunk that never completed.
    file.set_len(offset).map_err(Error::internal)?;
    let file = Arc::new(file);
    let limit = upload.size.map_or(u64::MAX, |s| s - offset);
    let body = body
        .take()
        .expect("the body is read once")
        .into_data_stream();
    let outcome = stream_to_file(file.clone(), offset, body, limit, hasher).await;
    let (written, hasher) = match outcome {
        Ok(done) => done,
        Err(e) => {
            let _ = file.set_len(offset);
            return Err(match e {
                StreamError::Body(e) => Error::invalid(format!(
                    "the chunk ended early ({e}); resume at offset {offset}"
                )),
                StreamError::TooLarge { .. } => Error::invalid(format!(
                    "upload {id} was declared as {} bytes; this chunk goes past the end",
                    upload.size.unwrap_or(0)
                )),
                StreamError::Io(e) => Error::internal(e),
            });
        }
    };
    upload.offset = offset + written;
    app.store.put_upload(&upload).await?;
    if let Some(h) = hasher {
        app.uploads.hashers.put(id, upload.offset, h);
    }
    Ok(upload)
}

/// With blobs in a bucket and tasks on the broker, an import may run on a
/// machine without the upload's file: store its recorded bytes as a blob
/// first (the import's source there; hashed once, and an upload imported
/// twice is stored once). The blob is leased for [`leases::LEASE_FOR`]
/// here, and orphan cleanup's protection window covers it elsewhere.
///
/// [`leases::LEASE_FOR`]: wharf_store::blobs::leases::LEASE_FOR
pub async fn seal(app: &Arc<App>, upload: &Upload) -> Result<Option<wharf_core::digest::Digest>> {
    if app.blobs.objects().is_none() || !app.tasks.is_brokered() {
        return Ok(None);
    }
    let (app2, id, len) = (app.clone(), upload.id, upload.offset);
    let sealed = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let file = app2.uploads.open_read(&id)?;
        let holder = wharf_store::blobs::leases::Holder::new();
        let (digest, _) = app2
            .blobs
            .store_file_range(&file, 0, len, None, &holder)
            .map_err(std::io::Error::other)?;
        holder.keep();
        Ok(digest)
    })
    .await
    .map_err(Error::internal)?
    .map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            "blob-store-unavailable",
            format!(
                "cannot store upload {} for the worker that will import it: {e}; try again",
                upload.id
            ),
        )
    })?;
    Ok(Some(sealed))
}

/// Remove uploads and registry upload sessions idle for longer than
/// `idle`; returns how many of each.
pub async fn expire(app: &App, idle: std::time::Duration) -> anyhow::Result<(usize, usize)> {
    let locked = tokio::task::block_in_place(|| app.uploads.idle(idle))?;
    for (id, _lock) in &locked {
        app.store.delete_upload(id).await?;
        app.uploads.remove(id);
    }
    let sessions = app.plugins.runtime.env.sessions.clone();
    let sessions = tokio::task::spawn_blocking(move || sessions.remove_idle(idle)).await??;
    Ok((locked.len(), sessions))
}

/// Once at start and then every quarter of `--upload-expiry` (at most ten
/// minutes apart), [`expire`] what has been idle that long.
pub fn spawn_expiry(app: &Arc<App>) {
    let (app, idle) = (Arc::downgrade(app), app.config.upload_expiry);
    let period = (idle / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(600),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let Some(app) = app.upgrade() else { return };
            match expire(&app, idle).await {
                Ok((0, 0)) => {}
                Ok((uploads, sessions)) => {
                    tracing::info!(
                        uploads,
                        sessions,
                        ?idle,
                        "removed idle uploads and upload sessions"
                    )
                }
                Err(e) => tracing::warn!("removing idle uploads: {e}"),
            }
        }
    });
}

#[utoipa::path(delete, path = "/api/v1/uploads/{id}", tag = "uploads",
    responses((status = 204), (status = 404, body = ApiErrorBody)))]
async fn delete(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<StatusCode> {
    let id = parse_id(&id)?;
    if !app.store.delete_upload(&id).await? {
        return Err(Error::not_found(format!("upload {id} not found")));
    }
    app.uploads.remove(&id);
    Ok(StatusCode::NO_CONTENT)
}
