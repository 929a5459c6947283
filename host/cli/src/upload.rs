//! Sending files. By default a file is the body of a streaming import
//! ([`stream_import`]): one request, imported while it arrives.
//!
//! Resumable uploads: create an upload of the file's size, PUT it in chunks
//! streamed from the file (memory stays flat whatever the size), and after a
//! failed chunk ask the server how much it really has and go on from there.
//!
//! The server records an offset only once the chunk is on its disk, so its
//! offset is the truth; the client never guesses.
//!
//! Either way a request's body is a region of the file ([`file_body`]): a
//! thread reads it in 1 MiB pieces a few ahead of the socket, and the bar
//! moves as each piece goes out.

use crate::client::{Client, SizedBody};
use crate::progress::Progress;
use anyhow::Context as _;
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::time::Duration;
use tokio_stream::StreamExt as _;
use wharf_core::ids::{RepoId, UploadId};
use wharf_store::db::{Task, Upload};

/// Bytes per PUT: big enough that request overhead vanishes, small enough
/// that a failure costs little to resend.
pub const CHUNK_SIZE: u64 = 8 * 1024 * 1024;
/// Attempts at one chunk before giving up (the server's offset decides
/// where each attempt starts).
const ATTEMPTS: u32 = 5;
/// Deadline of one chunk: 8 MiB at a slow 20 KiB/s.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(400);
/// Bytes per read of a body, and per write to the socket: few enough
/// pieces that handing each to the sending thread costs nothing.
const PIECE: u64 = 1024 * 1024;
/// Pieces read ahead of the socket.
const READ_AHEAD: usize = 4;

/// `--resume UPLOAD_ID`.
pub fn parse_upload_id(s: &str) -> Result<UploadId, String> {
    s.parse().map_err(|_| {
        format!("an upload id is a UUID (as the error of the stopped upload shows it), not {s:?}")
    })
}

/// An upload that failed part-way; the server keeps what it received.
#[derive(Debug, thiserror::Error)]
#[error(
    "uploading {file} stopped at byte {offset} of {size}: {reason}; the server keeps the {offset} bytes: run the same command with `--resume {id}` to go on from there"
)]
pub struct UploadStopped {
    pub file: String,
    pub id: UploadId,
    pub offset: u64,
    pub size: u64,
    pub reason: String,
}

/// Upload `path` (shown as `label`), or resume upload `resume`, and return
/// the complete upload.
pub fn upload_file(
    client: &Client,
    path: &Path,
    label: &str,
    resume: Option<UploadId>,
) -> anyhow::Result<Upload> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let mut upload = match resume {
        Some(id) => {
            let upload = client
                .upload(&id)
                .with_context(|| format!("cannot resume upload {id}"))?;
            if upload.size != Some(size) {
                anyhow::bail!(
                    "upload {id} was started for {} bytes but {} has {size}; is it the same file? Leave out --resume to start a new upload",
                    upload
                        .size
                        .map_or("an unknown number of".into(), |s| s.to_string()),
                    path.display()
                );
            }
            upload
        }
        None => client
            .create_upload(size)
            .context("cannot create an upload on the server")?,
    };
    let progress = Progress::bytes(&format!("Uploading: {label}"), Some(size));
    progress.set_position(upload.offset);
    let mut failures = 0u32;
    // Why the server did not answer the last time we asked for its offset.
    let mut server_trouble: Option<String> = None;
    while upload.offset < size {
        let offset = upload.offset;
        let len = CHUNK_SIZE.min(size - offset);
        let sent = send_chunk(client, &file, &upload.id, offset, len, &progress);
        match sent {
            Ok(u) => {
                upload = u;
                failures = 0;
                server_trouble = None;
            }
            Err(e) => {
                failures += 1;
                // A server that does not answer explains a failed chunk
                // better than the broken request does.
                let mut reason = server_trouble.take().unwrap_or(e.reason);
                let stop = |reason: String, offset: u64| UploadStopped {
                    file: path.display().to_string(),
                    id: upload.id,
                    offset,
                    size,
                    reason,
                };
                if !e.transient || failures >= ATTEMPTS {
                    progress.abandon();
                    return Err(stop(reason, offset).into());
                }
                std::thread::sleep(Duration::from_secs(1 << (failures - 1)));
                // Where to go on: the server's offset, not ours.
                match client.upload(&upload.id) {
                    Ok(u) => upload = u,
                    Err(e2) if e2.is_transient() => {
                        reason = e2.to_string();
                        server_trouble = Some(reason.clone());
                    }
                    Err(e2) => {
                        progress.abandon();
                        return Err(stop(e2.to_string(), offset).into());
                    }
                }
                progress.set_position(upload.offset);
                progress.note(&format!(
                    "chunk at byte {offset} failed ({reason}); trying again from byte {} (attempt {} of {ATTEMPTS})",
                    upload.offset,
                    failures + 1
                ));
            }
        }
    }
    progress.finish("... completed");
    Ok(upload)
}

struct ChunkError {
    reason: String,
    transient: bool,
}

/// Send `path` (shown as `label`) as the body of a streaming import into
/// `repo`: the server imports it while it arrives. Returns the ended task.
pub fn stream_import(
    client: &Client,
    repo: &RepoId,
    path: &Path,
    label: &str,
    params: &Map<String, Value>,
) -> anyhow::Result<Task> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let progress = Progress::bytes(&format!("Uploading: {label}"), Some(size));
    let body = file_body(&file, 0, size, &progress)
        .with_context(|| format!("cannot read {}", path.display()))?;
    // As long as the chunks' deadline allows at the same slow rate.
    let timeout = CHUNK_TIMEOUT + Duration::from_secs(size / (20 * 1024));
    let sent = client.import_stream(repo, params, body, timeout);
    match sent {
        Ok(task) => {
            progress.finish("... completed");
            Ok(task)
        }
        Err(e) => {
            progress.abandon();
            let hint = if e.is_transient() {
                format!(
                    "; if the server refused the content early, `wharf task list --repo-id {repo}` shows why; \
                     otherwise run the command again, or add --resumable to send it in chunks that survive interruptions"
                )
            } else {
                String::new()
            };
            Err(anyhow::anyhow!("importing {}: {e}{hint}", path.display()))
        }
    }
}

/// PUT bytes `[offset, offset + len)` of `file`, read as the request goes.
fn send_chunk(
    client: &Client,
    file: &File,
    id: &UploadId,
    offset: u64,
    len: u64,
    progress: &Progress,
) -> Result<Upload, ChunkError> {
    let body = file_body(file, offset, len, progress).map_err(|e| ChunkError {
        reason: format!("reading the file: {e}"),
        transient: false,
    })?;
    client
        .put_chunk(id, offset, body, CHUNK_TIMEOUT)
        .map_err(|e| ChunkError {
            transient: e.is_transient()
                || e.api()
                    .is_some_and(|f| f.status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE),
            reason: e.to_string(),
        })
}

/// Bytes `[offset, offset + len)` of `file` as a request body, read as it
/// is sent: a thread of its own (with a handle of its own) reads [`PIECE`]s
/// up to [`READ_AHEAD`] ahead, and the bar shows each piece handed to the
/// connection. A failed read fails the request with its error; a request
/// that ends early ends the thread.
fn file_body(
    file: &File,
    offset: u64,
    len: u64,
    progress: &Progress,
) -> std::io::Result<SizedBody> {
    let mut reader = file.try_clone()?;
    reader.seek(SeekFrom::Start(offset))?;
    let (pieces, received) = tokio::sync::mpsc::channel(READ_AHEAD);
    std::thread::Builder::new()
        .name("upload-reader".into())
        .spawn(move || {
            let mut left = len;
            while left > 0 {
                let n = PIECE.min(left);
                let mut piece = vec![0; n as usize];
                let read = reader.read_exact(&mut piece).map(|()| piece);
                let failed = read.is_err();
                if pieces.blocking_send(read).is_err() || failed {
                    return;
                }
                left -= n;
            }
        })?;
    let progress = progress.clone();
    let mut sent = offset;
    let body = tokio_stream::wrappers::ReceiverStream::new(received).map(move |piece| {
        if let Ok(piece) = &piece {
            sent += piece.len() as u64;
            progress.set_position(sent);
        }
        piece
    });
    Ok(SizedBody {
        body: reqwest::Body::wrap_stream(body),
        len,
    })
}
