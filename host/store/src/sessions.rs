//! Upload sessions: bytes a client sends through a plugin's routes (a
//! registry blob push, whole or in chunks) on their way to the blob store.
//!
//! A plugin asks for a session with a `write` plan; the host streams request
//! bodies into it and the plugin commits it as a blob once the client says
//! which digest it must have. Sessions live in `<data-dir>/blobs/sessions/`,
//! on the blob store's filesystem, so a commit is a rename, not a copy; and
//! while a session is written in order by one process, its digest is computed
//! as the bytes arrive, so a commit reads nothing back either.
//!
//! Each session has a data file `<id>` and an owner file `<id>.json` naming
//! the plugin and repository it belongs to: a plugin never reaches another
//! plugin's or another repository's sessions, and every node sharing the
//! data directory sees the same sessions.
//!
//! # Object storage
//!
//! When the blobs live in a bucket ([`Sessions::open_with`] an
//! [`ObjectHome`]), nodes share no filesystem: sessions and received-blob
//! notes live in the bucket, so any node may continue, commit or check
//! what another started (the layout is described in `sessions/bucket.rs`). `<id>` files are
//! then not used; `sessions/` only holds the temp files of chunks on their
//! way to the bucket.

mod bucket;
#[cfg(test)]
mod tests;

use crate::blobs::leases::Holder;
use crate::blobs::{
    BlobError, BlobStore, ObjectHome, StreamError, hash_file_range, stream_to_file,
};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use wharf_core::digest::{Digest, RunningDigests};
pub use wharf_core::ids::SessionId;

/// Whom a session belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    pub plugin: String,
    pub repository: String,
}

impl Owner {
    /// Whether the session is `plugin`'s (and `repository`'s, when given).
    fn owns(&self, plugin: &str, repository: Option<&str>) -> bool {
        self.plugin == plugin && repository.is_none_or(|r| r == self.repository)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("upload session {0} is not known")]
    Unknown(String),
    #[error("upload session {id} has {len} bytes; the next chunk must start there")]
    WrongOffset { id: SessionId, len: u64 },
    #[error("the body is larger than the {max} bytes allowed here")]
    TooLarge { max: u64 },
    #[error(
        "the blob is larger than this server's maximum blob size of {max} bytes (--max-blob-size)"
    )]
    BlobTooLarge { max: u64 },
    #[error("upload session {0} is being written by another request")]
    Busy(SessionId),
    #[error("the request body ended early: {0}")]
    Body(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("upload sessions: {0}")]
    Io(#[from] std::io::Error),
}

/// How long a blob received through a repository's upload session may be
/// named by that repository's later writes without being held by it.
pub const RECEIVED_FOR: Duration = Duration::from_secs(24 * 3600);

pub struct Sessions {
    /// `<blobs>/sessions`: the sessions with the directory home, chunks'
    /// temp files with an object home.
    dir: Dir,
    /// The bucket holding the sessions, if the blobs are in one.
    objects: Option<Arc<ObjectHome>>,
    /// Digest state of sessions this process wrote in order: (bytes covered,
    /// state). Lost on restart; a commit then re-reads the file.
    hashers: RunningDigests<SessionId>,
    /// Sessions with a request streaming into them right now.
    busy: Mutex<HashSet<SessionId>>,
}

/// Marks a session busy while a body streams in.
struct BusyGuard<'a>(&'a Sessions, SessionId);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.busy.lock().unwrap().remove(&self.1);
    }
}

fn data_name(id: &SessionId) -> String {
    id.0.simple().to_string()
}

fn owner_name(id: &SessionId) -> String {
    format!("{}.json", id.0.simple())
}

impl Sessions {
    /// Open (creating if needed) the session directory inside the blob
    /// store's root.
    pub fn open(blobs_root: &Path) -> std::io::Result<Self> {
        Self::open_with(blobs_root, None)
    }

    /// Open the sessions of a blob store whose root is `blobs_root` and
    /// whose blobs live in `objects`, if given
    /// ([`BlobStore::objects_shared`]): the sessions are then kept in that
    /// bucket, shared by every node using it.
    pub fn open_with(blobs_root: &Path, objects: Option<Arc<ObjectHome>>) -> std::io::Result<Self> {
        let path = blobs_root.join("sessions");
        std::fs::create_dir_all(&path)?;
        Ok(Sessions {
            dir: Dir::open_ambient_dir(&path, ambient_authority())?,
            objects,
            hashers: RunningDigests::default(),
            busy: Mutex::default(),
        })
    }

    /// Start an empty session.
    pub fn create(&self, owner: &Owner) -> std::io::Result<SessionId> {
        let id = SessionId::new();
        self.create_as(id, owner)?;
        Ok(id)
    }

    /// Start an empty session under an id the caller chose (the id of the
    /// upload it holds), new and unguessable like [`SessionId::new`]'s.
    pub fn create_as(&self, id: SessionId, owner: &Owner) -> std::io::Result<()> {
        if let Some(home) = &self.objects {
            return bucket::create(home, id, owner);
        }
        let json = serde_json::to_vec(owner).expect("owner serializes");
        self.dir.write(owner_name(&id), json)?;
        self.dir.open_with(
            data_name(&id),
            OpenOptions::new().write(true).create_new(true),
        )?;
        self.hashers.put(id, 0, Sha256::new());
        Ok(())
    }

    /// The session `id` if it exists and belongs to `plugin` (and to
    /// `repository`, when given); an error when the bucket holding the
    /// sessions cannot be asked (a session there may exist all the same).
    pub fn find(
        &self,
        id: &str,
        plugin: &str,
        repository: Option<&str>,
    ) -> std::io::Result<Option<SessionId>> {
        let Ok(id) = id.parse::<SessionId>() else {
            return Ok(None);
        };
        if let Some(home) = &self.objects {
            return bucket::find(home, id, plugin, repository);
        }
        let owner = self.dir.read(owner_name(&id)).ok();
        let owner = owner.and_then(|json| serde_json::from_slice::<Owner>(&json).ok());
        Ok(owner.filter(|o| o.owns(plugin, repository)).map(|_| id))
    }

    /// Bytes received so far, `None` for no such session; an error when the
    /// bucket holding the sessions cannot be asked.
    pub fn length(&self, id: &SessionId) -> std::io::Result<Option<u64>> {
        if let Some(home) = &self.objects {
            return bucket::length(home, id);
        }
        Ok(self.dir.metadata(data_name(id)).ok().map(|m| m.len()))
    }

    fn claim(&self, id: SessionId) -> Result<BusyGuard<'_>, SessionError> {
        if !self.busy.lock().unwrap().insert(id) {
            return Err(SessionError::Busy(id));
        }
        Ok(BusyGuard(self, id))
    }

    /// Stream `body` onto the end of the session. `start`, when the client
    /// gave one (`Content-Range`), must be the session's length. The body
    /// may bring at most `max_body` bytes, and the session may not grow past
    /// `max_blob` (checked while the session is claimed, so concurrent
    /// chunks cannot add up past it). Nothing of a body that fails
    /// half-way stays. Returns the new length.
    pub async fn append<E: std::fmt::Display>(
        &self,
        id: SessionId,
        body: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        start: Option<u64>,
        max_body: u64,
        max_blob: u64,
    ) -> Result<u64, SessionError> {
        if let Some(home) = &self.objects {
            return self
                .append_to_bucket(home, id, body, start, max_body, max_blob)
                .await;
        }
        let _busy = self.claim(id)?;
        let file = self
            .dir
            .open_with(data_name(&id), OpenOptions::new().write(true))
            .map_err(|_| SessionError::Unknown(id.to_string()))?
            .into_std();
        let len = file.metadata()?.len();
        if start.is_some_and(|s| s != len) {
            return Err(SessionError::WrongOffset { id, len });
        }
        let room = max_blob.saturating_sub(len);
        let max = max_body.min(room);
        // Keep hashing only if the state covers exactly what is on disk.
        let hasher = self.hashers.take(&id, len);
        let file = std::sync::Arc::new(file);
        let outcome = stream_to_file(file.clone(), len, body, max, hasher).await;
        match outcome {
            Ok((written, hasher)) => {
                if let Some(h) = hasher {
                    self.hashers.put(id, len + written, h);
                }
                Ok(len + written)
            }
            Err(e) => {
                let _ = file.set_len(len);
                Err(stream_failure(e, room, max_body, max_blob))
            }
        }
    }

    /// Store the session's bytes as a blob, leased to `holder`, and end the
    /// session; on a digest mismatch the session ends too (its bytes can
    /// never become that blob).
    pub fn commit(
        &self,
        id: SessionId,
        blobs: &BlobStore,
        expect: Option<&Digest>,
        holder: &Holder,
    ) -> Result<(Digest, u64), SessionError> {
        if let Some(home) = &self.objects {
            return self.commit_in_bucket(home, id, blobs, expect, holder);
        }
        let _busy = self.claim(id)?;
        let file = self
            .dir
            .open(data_name(&id))
            .map_err(|_| SessionError::Unknown(id.to_string()))?
            .into_std();
        let len = file.metadata()?.len();
        let digest = match self.hashers.take(&id, len) {
            Some(h) => Digest::from_hasher(h),
            None => hash_file_range(&file, 0, len)?,
        };
        drop(file);
        if let Some(e) = expect
            && *e != digest
        {
            self.remove(&id);
            return Err(BlobError::DigestMismatch {
                expected: e.clone(),
                actual: digest,
            }
            .into());
        }
        blobs.adopt(&self.dir, Path::new(&data_name(&id)), &digest, holder)?;
        let _ = self.dir.remove_file(owner_name(&id));
        Ok((digest, len))
    }

    /// Note that `repository` received the blob `digest` through one of its
    /// sessions, so that its later writes (the manifest PUT naming the
    /// blob), on any node sharing this directory, may name it. Kept as an
    /// empty file `received/<repository>/<hex>`; a note older than
    /// [`RECEIVED_FOR`] no longer counts. Indexed by blob as
    /// `receivers/<hex>/<repository>`, so that [`Self::receivers`] reads
    /// one small directory; the note under `received/` is the one that
    /// counts. Best effort: without the note the client is asked to push
    /// the blob again.
    pub fn mark_received(&self, repository: &str, digest: &Digest) {
        if let Some(home) = &self.objects {
            return bucket::mark_received(home, repository, digest);
        }
        if repository.parse::<wharf_core::ids::RepoId>().is_err() {
            return;
        }
        let noted = [
            (Path::new("received").join(repository), digest.hex()),
            (Path::new("receivers").join(digest.hex()), repository),
        ]
        .into_iter()
        .try_for_each(|(dir, name)| self.write_note(&dir, name));
        if let Err(e) = noted {
            tracing::warn!(repository, %digest, "cannot note a received blob: {e}");
        }
    }

    /// Write the empty note `dir/name`, making `dir` when it is missing
    /// (again, if stale-note cleanup removed it meanwhile).
    fn write_note(&self, dir: &Path, name: &str) -> std::io::Result<()> {
        let path = dir.join(name);
        match self.dir.write(&path, b"") {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.dir.create_dir_all(dir)?;
                self.dir.write(&path, b"")
            }
            done => done,
        }
    }

    /// Drop every note of what `repository` received: it is deleted, and
    /// a repository made again under its id must not read what it
    /// received (nor keep those blobs from orphan cleanup).
    pub fn forget_received(&self, repository: &wharf_core::ids::RepoId) -> std::io::Result<()> {
        if let Some(home) = &self.objects {
            return bucket::forget_received(home, repository);
        }
        let notes = Path::new("received").join(repository.as_str());
        let held = match self.dir.read_dir(&notes) {
            Ok(held) => held,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for note in held {
            let hex = note?.file_name();
            let entry = Path::new("receivers").join(&hex).join(repository.as_str());
            match self.dir.remove_file(entry) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        match self.dir.remove_dir_all(notes) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Whether `repository` received `digest` through its sessions lately.
    pub fn received(&self, repository: &str, digest: &Digest) -> bool {
        if repository.parse::<wharf_core::ids::RepoId>().is_err() {
            return false;
        }
        if let Some(home) = &self.objects {
            return bucket::received(home, repository, digest);
        }
        let path = Path::new("received").join(repository).join(digest.hex());
        self.dir
            .metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.into_std().elapsed().is_ok_and(|age| age < RECEIVED_FOR))
    }

    /// End a session and drop its bytes.
    pub fn abort(&self, id: &SessionId) -> bool {
        if let Some(home) = &self.objects {
            return bucket::abort(home, id);
        }
        let existed = self.dir.remove_file(owner_name(id)).is_ok();
        self.remove(id);
        existed
    }

    fn remove(&self, id: &SessionId) {
        let _ = self.dir.remove_file(data_name(id));
        let _ = self.dir.remove_file(owner_name(id));
        self.hashers.forget(id);
    }

    /// Drop sessions nobody has written to for `idle`; returns how many.
    pub fn remove_idle(&self, idle: Duration) -> std::io::Result<usize> {
        if let Some(home) = &self.objects {
            return self.remove_idle_in_bucket(home, idle);
        }
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in self.dir.entries()? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.parse::<SessionId>().ok()) else {
                continue;
            };
            let Some(modified) = modified(&entry)? else {
                continue;
            };
            let in_use = self.busy.lock().unwrap().contains(&id);
            if !in_use && now.duration_since(modified).unwrap_or_default() > idle {
                self.remove(&id);
                removed += 1;
            }
        }
        self.remove_stale_notes()?;
        Ok(removed)
    }

    /// The repositories that received `digest` through their sessions lately.
    pub fn receivers(&self, digest: &Digest) -> Vec<wharf_core::ids::RepoId> {
        if let Some(home) = &self.objects {
            return bucket::receivers(home, digest);
        }
        // The index names candidates; each repository's own note decides.
        let Ok(entries) = self.dir.read_dir(Path::new("receivers").join(digest.hex())) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|repo| self.received(repo, digest))
            .filter_map(|repo| repo.parse().ok())
            .collect()
    }

    /// Every blob some repository received through its sessions lately and
    /// may still name: orphan cleanup keeps them.
    pub fn received_blobs(&self) -> std::io::Result<HashSet<Digest>> {
        if let Some(home) = &self.objects {
            return bucket::received_blobs(home);
        }
        let mut out = HashSet::new();
        let Ok(received) = self.dir.open_dir("received") else {
            return Ok(out);
        };
        for repo in received.entries()? {
            let repo = received.open_dir(repo?.file_name())?;
            for note in repo.entries()? {
                let note = note?;
                let Some(modified) = modified(&note)? else {
                    continue;
                };
                if modified.elapsed().is_ok_and(|a| a < RECEIVED_FOR)
                    && let Some(d) = note
                        .file_name()
                        .to_str()
                        .and_then(|hex| format!("sha256:{hex}").parse().ok())
                {
                    out.insert(d);
                }
            }
        }
        Ok(out)
    }

    /// Drop received-blob notes that no longer count.
    fn remove_stale_notes(&self) -> std::io::Result<()> {
        if let Some(home) = &self.objects {
            return bucket::remove_stale_notes(home);
        }
        for area in ["received", "receivers"] {
            let Ok(notes) = self.dir.open_dir(area) else {
                continue;
            };
            for group in notes.entries()? {
                let name = group?.file_name();
                // Gone meanwhile: a repository deleted, or another node's
                // cleanup sharing this directory.
                let group = match notes.open_dir(&name) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    group => group?,
                };
                let mut left = false;
                for note in group.entries()? {
                    let note = note?;
                    let Some(modified) = modified(&note)? else {
                        continue;
                    };
                    if modified.elapsed().is_ok_and(|a| a >= RECEIVED_FOR) {
                        let _ = group.remove_file(note.file_name());
                    } else {
                        left = true;
                    }
                }
                // One directory per blob ever received: drop the empty ones
                // (a note written meanwhile makes the removal fail, or
                // makes its directory again).
                if area == "receivers" && !left {
                    let _ = notes.remove_dir(&name);
                }
            }
        }
        Ok(())
    }
}

/// When a session's file or a note was last written; `None` if it went
/// while its directory was listed (a session committed or removed
/// meanwhile: cleanup runs while pushes do).
fn modified(entry: &cap_std::fs::DirEntry) -> std::io::Result<Option<SystemTime>> {
    match entry.metadata().and_then(|m| m.modified()) {
        Ok(t) => Ok(Some(t.into_std())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The error of a body that could not be streamed into a session: `room`
/// is what the session could still take before `max_blob`.
fn stream_failure(e: StreamError, room: u64, max_body: u64, max_blob: u64) -> SessionError {
    match e {
        StreamError::Body(m) => SessionError::Body(m),
        StreamError::TooLarge { .. } if room < max_body => {
            SessionError::BlobTooLarge { max: max_blob }
        }
        StreamError::TooLarge { max } => SessionError::TooLarge { max },
        StreamError::Io(e) => SessionError::Io(e),
    }
}
