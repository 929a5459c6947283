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
//!
//! With blobs in a bucket (`--blob-store s3://…`) nodes share no directory:
//! an upload's chunks are then objects of an upload session in the bucket,
//! so any node takes the next chunk, and an import first stores the
//! session's bytes as a blob ("seals" the upload) and reads that blob,
//! wherever it runs.

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
use wharf_core::digest::{Digest, RunningDigests};
use wharf_core::ids::{SessionId, UploadId};
use wharf_runtime::host::WholeUpload;
use wharf_store::blobs::{StreamError, stream_to_file};
use wharf_store::db::{Upload, now};
use wharf_store::sessions::{Owner, SessionError};

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
        sealed: None,
    };
    if app.blobs.objects().is_some() {
        let sessions = app.plugins.runtime.env.sessions.clone();
        let session = session_of(&upload.id);
        tokio::task::spawn_blocking(move || sessions.create_as(session, &uploads_owner()))
            .await
            .map_err(Error::internal)?
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    "blob-store-unavailable",
                    format!("cannot start the upload in object storage: {e}; try again"),
                )
            })?;
    } else {
        app.uploads
            .open_write(&upload.id, true)
            .map_err(Error::internal)?;
    }
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

/// [`put_chunk`]'s work; takes `body` once it starts reading it, and puts
/// back what it did not read when it refuses the chunk.
async fn write_chunk(
    app: &Arc<App>,
    id: &str,
    q: &ChunkQuery,
    headers: &HeaderMap,
    body: &mut Option<Body>,
) -> Result<Upload> {
    let id = parse_id(id)?;
    let upload = get_upload(app, &id).await?;
    if upload.sealed.is_some() {
        return Err(frozen(&id));
    }
    let offset = chunk_offset(q, headers)?.unwrap_or(upload.offset);
    if offset != upload.offset {
        return Err(wrong_offset(&id, upload.offset, offset));
    }
    if app.blobs.objects().is_some() {
        append_to_bucket(app, upload, body).await
    } else {
        append_to_file(app, upload, body).await
    }
}

/// The chunk appended to the upload's file in this node's upload directory.
async fn append_to_file(app: &App, mut upload: Upload, body: &mut Option<Body>) -> Result<Upload> {
    let (id, offset) = (upload.id, upload.offset);
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
        Err(std::fs::TryLockError::WouldBlock) => return Err(busy(&id)),
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::internal(e)),
    }
    if file.metadata().map_err(Error::internal)?.nlink() > 1 {
        return Err(frozen(&id));
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
                StreamError::Body(e) => ended_early(&e, offset),
                StreamError::TooLarge { .. } => past_end(&upload),
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

/// The session holding an upload's bytes when the blobs are in a bucket.
fn session_of(id: &UploadId) -> SessionId {
    SessionId(id.0)
}

/// The owner of those sessions: a name no plugin can have (plugin names
/// are letters, digits, `-` and `_`), so that no plugin reaches them, and
/// of no repository.
fn uploads_owner() -> Owner {
    Owner {
        plugin: "(uploads)".to_string(),
        repository: String::new(),
    }
}

/// With blobs in a bucket no node keeps an upload's file: the chunk
/// becomes one more object of the upload's session in the bucket
/// (`wharf_store::sessions`), so that the next chunk, the status and the
/// import may reach any node.
async fn append_to_bucket(
    app: &App,
    mut upload: Upload,
    body: &mut Option<Body>,
) -> Result<Upload> {
    let (id, offset) = (upload.id, upload.offset);
    let limit = upload.size.map_or(u64::MAX, |s| s - offset);
    let mut stream = body
        .take()
        .expect("the body is read once")
        .into_data_stream();
    let appended = app
        .plugins
        .runtime
        .env
        .sessions
        .append(session_of(&id), &mut stream, Some(offset), limit, u64::MAX)
        .await;
    let refused = match appended {
        Ok(len) => {
            upload.offset = len;
            app.store.put_upload(&upload).await?;
            return Ok(upload);
        }
        Err(SessionError::WrongOffset { len, .. }) => {
            // The bucket holds more than the record says: a node stopped
            // between storing a chunk and recording it. The bucket is right.
            upload.offset = len;
            app.store.put_upload(&upload).await?;
            wrong_offset(&id, len, offset)
        }
        Err(SessionError::Busy(_)) => busy(&id),
        // Ended meanwhile: sealed by an import, deleted, or expired.
        Err(SessionError::Unknown(_)) => match get_upload(app, &id).await?.sealed {
            Some(_) => frozen(&id),
            None => gone(&id),
        },
        Err(SessionError::Body(e)) => return Err(ended_early(&e, offset)),
        Err(SessionError::TooLarge { .. } | SessionError::BlobTooLarge { .. }) => {
            return Err(past_end(&upload));
        }
        Err(e @ (SessionError::Io(_) | SessionError::Blob(_))) => {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "blob-store-unavailable",
                format!("cannot store the chunk in object storage: {e}; resume at offset {offset}"),
            ));
        }
    };
    // Refused before reading: what is left is the caller's to drain.
    *body = Some(Body::from_stream(stream));
    Err(refused)
}

fn busy(id: &UploadId) -> Error {
    Error::new(
        ErrorKind::Conflict,
        "upload-busy",
        format!(
            "upload {id} is being written by another request; wait for it to end, \
             then resume at the offset GET /api/v1/uploads/{id} reports"
        ),
    )
}

fn frozen(id: &UploadId) -> Error {
    Error::new(
        ErrorKind::Conflict,
        "upload-frozen",
        format!("upload {id} was imported as a blob and can no longer change; start a new upload"),
    )
}

fn gone(id: &UploadId) -> Error {
    Error::not_found(format!(
        "upload {id} holds no bytes any more: it was deleted, or expired after --upload-expiry \
         without writes; start a new upload"
    ))
}

fn wrong_offset(id: &UploadId, have: u64, got: u64) -> Error {
    Error::new(
        ErrorKind::BadRange,
        "wrong-offset",
        format!("upload {id} has {have} bytes; send the next chunk at offset {have} (got {got})"),
    )
}

fn ended_early(e: &str, offset: u64) -> Error {
    Error::invalid(format!(
        "the chunk ended early ({e}); resume at offset {offset}"
    ))
}

fn past_end(upload: &Upload) -> Error {
    Error::invalid(format!(
        "upload {} was declared as {} bytes; this chunk goes past the end",
        upload.id,
        upload.size.unwrap_or(0)
    ))
}

/// The blob an import reads the upload from, if it must read one: with
/// blobs in a bucket, its session's bytes stored as a blob (hashed once;
/// the upload then takes no more chunks, and importing it again reads the
/// same blob). The blob is leased for [`leases::LEASE_FOR`] here, and
/// orphan cleanup's protection window covers it elsewhere. Without a
/// bucket the import reads the upload's file: `None`.
///
/// [`leases::LEASE_FOR`]: wharf_store::blobs::leases::LEASE_FOR
pub async fn seal(app: &Arc<App>, mut upload: Upload) -> Result<Option<Digest>> {
    if app.blobs.objects().is_none() {
        return Ok(None);
    }
    if let Some(sealed) = &upload.sealed {
        return Ok(Some(sealed.clone()));
    }
    let id = upload.id;
    let (sessions, blobs) = (app.plugins.runtime.env.sessions.clone(), app.blobs.clone());
    let committed = tokio::task::spawn_blocking(move || {
        let holder = wharf_store::blobs::leases::Holder::new();
        let committed = sessions.commit(session_of(&id), &blobs, None, &holder);
        if committed.is_ok() {
            holder.keep();
        }
        committed
    })
    .await
    .map_err(Error::internal)?;
    match committed {
        Ok((digest, len)) => {
            upload.offset = len;
            upload.sealed = Some(digest.clone());
            app.store.put_upload(&upload).await?;
            Ok(Some(digest))
        }
        // Another import sealed it meanwhile, or it is gone.
        Err(SessionError::Unknown(_)) => match get_upload(app, &id).await?.sealed {
            Some(sealed) => Ok(Some(sealed)),
            None => Err(gone(&id)),
        },
        Err(SessionError::Busy(_)) => Err(busy(&id)),
        Err(e) => Err(Error::new(
            ErrorKind::Unavailable,
            "blob-store-unavailable",
            format!("cannot store upload {id} as a blob for its import: {e}; try again"),
        )),
    }
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

/// Every quarter of `--upload-expiry` (at most ten minutes apart), the
/// first at most 30 s after start, [`expire`] what has been idle that long.
/// Not at once: a walk of every session and received note would compete
/// with the start-up for the cores.
pub fn spawn_expiry(app: &Arc<App>) {
    let (app, idle) = (Arc::downgrade(app), app.config.upload_expiry);
    let period = (idle / 4).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(600),
    );
    tokio::spawn(async move {
        let first = tokio::time::Instant::now() + period.min(std::time::Duration::from_secs(30));
        let mut tick = tokio::time::interval_at(first, period);
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
    if app.blobs.objects().is_some() {
        let sessions = app.plugins.runtime.env.sessions.clone();
        // Best effort: what stays is removed once idle.
        let _ = tokio::task::spawn_blocking(move || sessions.abort(&session_of(&id))).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
