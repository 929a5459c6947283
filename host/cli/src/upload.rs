//! Sending files. By default a file is the body of a streaming import
//! ([`stream_import`]): one request, imported while it arrives.
//!
//! Resumable uploads: create an upload of the file's size, PUT it in chunks
//! streamed from the file (memory stays flat whatever the size), and after a
//! failed chunk ask the server how much it really has and go on from there.
//!
//! The server records an offset only once the chunk is on its disk, so its
//! offset is the truth; the client never guesses.

use crate::client::Client;
use crate::progress::Progress;
use anyhow::Context as _;
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;
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
    let body = CountingReader {
        inner: file,
        at: 0,
        progress: progress.clone(),
    };
    // As long as the chunks' deadline allows at the same slow rate.
    let timeout = CHUNK_TIMEOUT + Duration::from_secs(size / (20 * 1024));
    let sent = client.import_stream(
        repo,
        params,
        reqwest::blocking::Body::sized(body, size),
        timeout,
    );
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
    let local = |e: std::io::Error| ChunkError {
        reason: format!("reading the file: {e}"),
        transient: false,
    };
    // A handle of its own: the body reader runs on reqwest's thread.
    let mut reader = file.try_clone().map_err(local)?;
    reader.seek(SeekFrom::Start(offset)).map_err(local)?;
    let body = CountingReader {
        inner: reader.take(len),
        at: offset,
        progress: progress.clone(),
    };
    let body = reqwest::blocking::Body::sized(body, len);
    client
        .put_chunk(id, offset, body, CHUNK_TIMEOUT)
        .map_err(|e| ChunkError {
            transient: e.is_transient()
                || e.api()
                    .is_some_and(|f| f.status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE),
            reason: e.to_string(),
        })
}

/// Moves the bar as the body is read (that is, as it is sent).
struct CountingReader<R> {
    inner: R,
    at: u64,
    progress: Progress,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.at += n as u64;
        self.progress.set_position(self.at);
        Ok(n)
    }
}
