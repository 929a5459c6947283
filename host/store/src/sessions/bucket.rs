//! Upload sessions kept in the bucket of an object home, so that every node
//! using the bucket may continue, commit or check a session another node
//! started (requests of one push reach different nodes behind a load
//! balancer).
//!
//! Layout, under the bucket's prefix:
//!
//! - `sessions/<id>/owner.json`: the [`Owner`]; the session exists while it
//!   does.
//! - `sessions/<id>/<start>-<len>-<nonce>`: one object per appended chunk
//!   (`start` and `len` as 16 hex digits, a random 8-digit nonce telling
//!   rival chunks at one offset apart). A listing alone gives the session's
//!   length and shows whether its chunks follow each other from 0. Empty
//!   chunks are not stored.
//! - `sessions/<id>/<start>-<len>-<nonce>.sha256`: the chunk's own digest
//!   (hex), written after it: a single-chunk session is committed by a copy
//!   inside the bucket when it is there, by a download otherwise. (Keys stay
//!   short: some S3 servers name a multipart upload's parts after the whole
//!   key, within a file system's 255-byte names.)
//! - `received/<repository>/<hex>`: an empty note that the repository
//!   received the blob through one of its sessions, fresh for
//!   [`RECEIVED_FOR`] after its last write.
//! - `receivers/<hex>/<repository>`: the same note indexed by blob, so that
//!   the repositories that received a blob are one short listing. The note
//!   under `received/` is the one that counts: an index entry without it
//!   (its repository deleted) names no receiver.
//!
//! A chunk streams into a temp file of the node's `sessions/` directory,
//! hashed on the way, and is uploaded once complete: nothing of a body that
//! fails half-way reaches the bucket. A commit of a single chunk is a copy
//! inside the bucket; of several, a download of the chunks in order into a
//! new blob, hashed as it streams.
//!
//! A session is claimed (busy) per node only. Two nodes appending at the
//! same offset at once both upload their chunk, then list: whoever sees
//! another chunk at its offset withdraws its own and answers
//! [`SessionError::Busy`], so at most one of them wins and the chunks stay
//! a chain. Until the loser's chunk is gone, the session looks unknown.

use super::{Owner, RECEIVED_FOR, SessionError, SessionId, Sessions, stream_failure};
use crate::blobs::leases::Holder;
use crate::blobs::objects::{AreaKey, CHUNK_DIGEST_SUFFIX, COPY_MAX, Listed, wait};
use crate::blobs::{BlobError, BlobStore, ObjectHome, stream_to_file};
use cap_std::fs::{Dir, OpenOptions};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use wharf_core::digest::Digest;
use wharf_core::ids::RepoId;

/// The name of a session's owner document in its folder.
const OWNER: &str = "owner.json";
/// How the node's temp files of chunks on their way to the bucket start.
const TEMP_PREFIX: &str = "upload-";

/// A chunk of a session, as its key names it.
#[derive(Debug, Clone)]
struct Chunk {
    key: AreaKey,
    start: u64,
    len: u64,
    /// What the bucket says it holds.
    size: u64,
}

/// What the bucket holds of one session.
#[derive(Debug, Default)]
struct Stored {
    owner: bool,
    /// Sorted by start (then length).
    chunks: Vec<Chunk>,
    /// The chunks' digest notes.
    notes: Vec<AreaKey>,
}

impl Stored {
    /// The session's length, if it exists and its chunks follow each other
    /// from 0; `None` for an unknown session, or one whose chunks overlap
    /// or leave a gap (a race between nodes, or a tampered bucket).
    fn end(&self) -> Option<u64> {
        if !self.owner {
            return None;
        }
        let mut end = 0u64;
        for c in &self.chunks {
            if c.start != end || c.size != c.len {
                return None;
            }
            end = end.checked_add(c.len)?;
        }
        Some(end)
    }

    /// Every key, the owner's first: deleting them in order ends the
    /// session for every node at once.
    fn keys(&self, id: &SessionId) -> Vec<AreaKey> {
        let mut keys = Vec::with_capacity(self.chunks.len() + 1);
        if self.owner {
            keys.push(AreaKey::session_owner(id));
        }
        keys.extend(self.chunks.iter().map(|c| c.key.clone()));
        keys.extend(self.notes.iter().cloned());
        keys
    }
}

/// The chunk a listed key names, if it names one (`<start>-<len>-<nonce>`).
fn chunk(listed: &Listed) -> Option<Chunk> {
    let name = listed.key.segments().next_back()?;
    let mut parts = name.splitn(3, '-');
    let start = parts.next()?;
    let len = parts.next()?;
    let nonce = parts.next()?;
    if start.len() != 16 || len.len() != 16 || nonce.len() != 8 {
        return None;
    }
    u32::from_str_radix(nonce, 16).ok()?;
    Some(Chunk {
        key: listed.key.clone(),
        start: u64::from_str_radix(start, 16).ok()?,
        len: u64::from_str_radix(len, 16).ok()?,
        size: listed.size,
    })
}

/// A random nonce for a chunk's key.
fn rand_nonce() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

/// A chunk's own digest, from its note (none if the note is missing or
/// malformed: the commit then hashes the bytes).
fn chunk_digest(home: &ObjectHome, c: &Chunk) -> io::Result<Option<Digest>> {
    let note = home.get_small(&AreaKey::chunk_digest(&c.key))?;
    Ok(note
        .and_then(|hex| String::from_utf8(hex).ok())
        .and_then(|hex| format!("sha256:{}", hex.trim()).parse().ok()))
}

/// What the bucket holds of session `id`.
fn stored(home: &ObjectHome, id: &SessionId) -> io::Result<Stored> {
    let mut out = Stored::default();
    for listed in home.list_area(&AreaKey::session(id))? {
        if listed.key.segments().count() != 3 {
            continue; // Deeper: not one of ours.
        }
        if listed.key.segments().next_back() == Some(OWNER) {
            out.owner = true;
        } else if listed.key.as_str().ends_with(CHUNK_DIGEST_SUFFIX) {
            out.notes.push(listed.key);
        } else if let Some(c) = chunk(&listed) {
            out.chunks.push(c);
        }
    }
    out.chunks.sort_by_key(|c| (c.start, c.len));
    Ok(out)
}

/// Delete the objects of a session, its owner first; best effort (idle
/// cleanup removes what is left).
fn remove(home: &ObjectHome, id: &SessionId, stored: &Stored) {
    for key in stored.keys(id) {
        if let Err(e) = home.delete_key(&key) {
            tracing::warn!(session = %id, "cannot remove {key}: {e}");
        }
    }
}

/// Run `f` on a blocking thread (the home's calls wait for the bucket).
async fn blocking<T: Send + 'static>(
    home: &Arc<ObjectHome>,
    f: impl FnOnce(&ObjectHome) -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let home = home.clone();
    tokio::task::spawn_blocking(move || f(&home))
        .await
        .map_err(|e| io::Error::other(format!("object storage task: {e}")))?
}

/// Whether something written at `t` is younger than `span`; a time ahead
/// of this node's clock (the bucket's clock runs ahead) counts as now.
fn younger(t: SystemTime, span: Duration) -> bool {
    SystemTime::now().duration_since(t).unwrap_or_default() < span
}

pub(super) fn create(home: &ObjectHome, id: SessionId, owner: &Owner) -> io::Result<()> {
    let json = serde_json::to_vec(owner).expect("owner serializes");
    home.put_small(&AreaKey::session_owner(&id), json)
}

pub(super) fn find(
    home: &ObjectHome,
    id: SessionId,
    plugin: &str,
    repository: Option<&str>,
) -> io::Result<Option<SessionId>> {
    let Some(json) = home.get_small(&AreaKey::session_owner(&id))? else {
        return Ok(None);
    };
    let owner = serde_json::from_slice::<Owner>(&json).ok();
    Ok(owner.filter(|o| o.owns(plugin, repository)).map(|_| id))
}

pub(super) fn length(home: &ObjectHome, id: &SessionId) -> io::Result<Option<u64>> {
    Ok(stored(home, id)?.end())
}

pub(super) fn abort(home: &ObjectHome, id: &SessionId) -> bool {
    match stored(home, id) {
        Ok(s) => {
            remove(home, id, &s);
            s.owner
        }
        Err(e) => {
            tracing::warn!(session = %id, "{e}");
            false
        }
    }
}

pub(super) fn mark_received(home: &ObjectHome, repository: &str, digest: &Digest) {
    let noted = match repository.parse::<RepoId>() {
        Ok(repo) => home
            .put_small(&AreaKey::received(&repo, digest), Vec::new())
            .and_then(|_| home.put_small(&AreaKey::receiver(digest, &repo), Vec::new())),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidInput, e)),
    };
    if let Err(e) = noted {
        tracing::warn!(repository, %digest, "cannot note a received blob: {e}");
    }
}

pub(super) fn received(home: &ObjectHome, repository: &str, digest: &Digest) -> bool {
    let Ok(repo) = repository.parse::<RepoId>() else {
        return false;
    };
    match home.head_key(&AreaKey::received(&repo, digest)) {
        Ok(found) => found.is_some_and(|(_, t)| younger(t, RECEIVED_FOR)),
        Err(e) => {
            tracing::warn!(repository, %digest, "{e}");
            false
        }
    }
}

/// Every received note: its repository, blob and age, and its key.
fn notes(home: &ObjectHome) -> io::Result<Vec<(RepoId, Digest, SystemTime, AreaKey)>> {
    let mut out = Vec::new();
    for listed in home.list_area(&AreaKey::received_all())? {
        let segments: Vec<&str> = listed.key.segments().collect();
        let [_, repo, hex] = segments[..] else {
            continue;
        };
        if let (Ok(repo), Ok(d)) = (repo.parse(), format!("sha256:{hex}").parse()) {
            out.push((repo, d, listed.modified, listed.key.clone()));
        }
    }
    Ok(out)
}

/// The repositories that received `digest` lately: the index entries under
/// it, each confirmed by its repository's own note.
pub(super) fn receivers(home: &ObjectHome, digest: &Digest) -> Vec<RepoId> {
    match home.list_area(&AreaKey::receivers_of(digest)) {
        Ok(listed) => listed
            .into_iter()
            .filter(|l| younger(l.modified, RECEIVED_FOR))
            .filter_map(|l| l.key.segments().nth(2)?.parse::<RepoId>().ok())
            .filter(|repo| received(home, repo.as_str(), digest))
            .collect(),
        Err(e) => {
            tracing::warn!(%digest, "cannot list the receivers of a blob: {e}");
            Vec::new()
        }
    }
}

pub(super) fn received_blobs(home: &ObjectHome) -> io::Result<HashSet<Digest>> {
    Ok(notes(home)?
        .into_iter()
        .filter(|(_, _, t, _)| younger(*t, RECEIVED_FOR))
        .map(|(_, d, ..)| d)
        .collect())
}

pub(super) fn forget_received(home: &ObjectHome, repo: &RepoId) -> io::Result<()> {
    for listed in home.list_area(&AreaKey::received_by(repo))? {
        home.delete_key(&listed.key)?;
        let hex = listed.key.segments().nth(2).unwrap_or_default();
        if let Ok(d) = format!("sha256:{hex}").parse::<Digest>() {
            home.delete_key(&AreaKey::receiver(&d, repo))?;
        }
    }
    Ok(())
}

pub(super) fn remove_stale_notes(home: &ObjectHome) -> io::Result<()> {
    for area in [AreaKey::received_all(), AreaKey::receivers_all()] {
        for listed in home.list_area(&area)? {
            if !younger(listed.modified, RECEIVED_FOR) {
                home.delete_key(&listed.key)?;
            }
        }
    }
    Ok(())
}

/// A temp file of the node's `sessions/` directory, removed when dropped.
struct LocalTemp<'a> {
    dir: &'a Dir,
    name: String,
}

impl Drop for LocalTemp<'_> {
    fn drop(&mut self) {
        let _ = self.dir.remove_file(&self.name);
    }
}

/// The session a temp file's name says it belongs to.
fn temp_session(name: &str) -> Option<SessionId> {
    let rest = name.strip_prefix(TEMP_PREFIX)?;
    rest.get(..32)?.parse().ok()
}

impl Sessions {
    /// [`Sessions::append`] with an object home: the body becomes one more
    /// chunk object of the session.
    pub(super) async fn append_to_bucket<E: std::fmt::Display>(
        &self,
        home: &Arc<ObjectHome>,
        id: SessionId,
        body: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        start: Option<u64>,
        max_body: u64,
        max_blob: u64,
    ) -> Result<u64, SessionError> {
        let _busy = self.claim(id)?;
        let len = blocking(home, move |h| stored(h, &id))
            .await?
            .end()
            .ok_or_else(|| SessionError::Unknown(id.to_string()))?;
        if start.is_some_and(|s| s != len) {
            return Err(SessionError::WrongOffset { id, len });
        }
        let room = max_blob.saturating_sub(len);
        let max = max_body.min(room);
        let name = format!(
            "{TEMP_PREFIX}{}-{}",
            id.0.simple(),
            uuid::Uuid::new_v4().simple()
        );
        let file = self
            .dir
            .open_with(
                &name,
                OpenOptions::new().read(true).write(true).create_new(true),
            )?
            .into_std();
        let _temp = LocalTemp {
            dir: &self.dir,
            name,
        };
        let file = Arc::new(file);
        let (written, hasher) = stream_to_file(file.clone(), 0, body, max, Some(Sha256::new()))
            .await
            .map_err(|e| stream_failure(e, room, max_body, max_blob))?;
        if written == 0 {
            return Ok(len);
        }
        let digest = Digest::from_hasher(hasher.expect("hashed"));
        let key = AreaKey::session_chunk(&id, len, written, rand_nonce());
        let (mine, note) = (key.clone(), AreaKey::chunk_digest(&key));
        blocking(home, move |h| {
            h.upload_to(&mine, &file, written)?;
            h.put_small(&note, digest.hex().as_bytes().to_vec())
        })
        .await?;
        // Another node may have appended at the same offset meanwhile, or
        // ended the session: then this chunk goes.
        let now = blocking(home, move |h| stored(h, &id)).await?;
        let rival = now.chunks.iter().any(|c| c.start == len && c.key != key);
        if rival || !now.owner {
            let mine = key.clone();
            let withdrawn = blocking(home, move |h| {
                h.delete_key(&AreaKey::chunk_digest(&mine))?;
                h.delete_key(&mine)
            })
            .await;
            if let Err(e) = withdrawn {
                tracing::warn!(session = %id, "cannot withdraw {key}: {e}");
            }
            return Err(if rival {
                SessionError::Busy(id)
            } else {
                SessionError::Unknown(id.to_string())
            });
        }
        Ok(len + written)
    }

    /// [`Sessions::commit`] with an object home.
    pub(super) fn commit_in_bucket(
        &self,
        home: &ObjectHome,
        id: SessionId,
        blobs: &BlobStore,
        expect: Option<&Digest>,
        holder: &Holder,
    ) -> Result<(Digest, u64), SessionError> {
        let _busy = self.claim(id)?;
        let stored = stored(home, &id)?;
        let len = stored
            .end()
            .ok_or_else(|| SessionError::Unknown(id.to_string()))?;
        // A single chunk whose digest note is there: a copy inside the
        // bucket. Anything else: a download, hashed as it streams.
        let single = match stored.chunks.as_slice() {
            [only] if only.len <= COPY_MAX => chunk_digest(home, only)?.map(|d| (only, d)),
            _ => None,
        };
        let committed = match single {
            Some((only, digest)) => match expect {
                Some(e) if *e != digest => Err(BlobError::DigestMismatch {
                    expected: e.clone(),
                    actual: digest,
                }),
                _ => blobs
                    .adopt_object(&only.key, &digest, only.len, holder)
                    .map(|()| (digest, len)),
            },
            None => download(home, blobs, &stored.chunks, expect, holder),
        };
        match committed {
            Ok(done) => {
                remove(home, &id, &stored);
                Ok(done)
            }
            Err(e @ BlobError::DigestMismatch { .. }) => {
                // Its bytes can never become that blob.
                remove(home, &id, &stored);
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// [`Sessions::remove_idle`] with an object home: sessions whose newest
    /// object is older than `idle`, and this node's temp files as old.
    pub(super) fn remove_idle_in_bucket(
        &self,
        home: &ObjectHome,
        idle: Duration,
    ) -> io::Result<usize> {
        let mut sessions: HashMap<SessionId, (SystemTime, Vec<AreaKey>)> = HashMap::new();
        for listed in home.list_area(&AreaKey::sessions())? {
            let Some(id) = listed
                .key
                .segments()
                .nth(1)
                .and_then(|s| s.parse::<SessionId>().ok())
            else {
                continue;
            };
            let entry = sessions
                .entry(id)
                .or_insert((SystemTime::UNIX_EPOCH, Vec::new()));
            entry.0 = entry.0.max(listed.modified);
            if listed.key.segments().next_back() == Some(OWNER) {
                entry.1.insert(0, listed.key);
            } else {
                entry.1.push(listed.key);
            }
        }
        let mut removed = 0;
        for (id, (newest, keys)) in sessions {
            let in_use = self.busy.lock().unwrap().contains(&id);
            if in_use || younger(newest, idle) {
                continue;
            }
            for key in keys {
                home.delete_key(&key)?;
            }
            removed += 1;
        }
        self.remove_stale_temps(idle)?;
        remove_stale_notes(home)?;
        Ok(removed)
    }

    /// Remove the temp files of chunks untouched for `idle` whose session
    /// is not being written here (a node that died while streaming).
    fn remove_stale_temps(&self, idle: Duration) -> io::Result<()> {
        for entry in self.dir.entries()? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(temp_session) else {
                continue;
            };
            let Some(modified) = super::modified(&entry)? else {
                continue;
            };
            let in_use = self.busy.lock().unwrap().contains(&id);
            if !in_use && !younger(modified, idle) {
                let _ = self.dir.remove_file(&name);
            }
        }
        Ok(())
    }
}

/// Store the chunks, in order, as one blob: downloaded into a blob writer
/// (hashed as they stream, never whole in memory), which verifies and
/// uploads it.
fn download(
    home: &ObjectHome,
    blobs: &BlobStore,
    chunks: &[Chunk],
    expect: Option<&Digest>,
    holder: &Holder,
) -> Result<(Digest, u64), BlobError> {
    let mut w = blobs.writer()?;
    for c in chunks {
        let mut stream = home.stream_key(&c.key)?;
        let mut got = 0u64;
        while let Some(piece) = wait(stream.next()) {
            let piece = piece?;
            got += piece.len() as u64;
            w.write_all(&piece)?;
        }
        if got != c.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "object storage ({}): {} holds {got} bytes, not {}",
                    home.location(),
                    c.key,
                    c.len
                ),
            )
            .into());
        }
    }
    w.finish(expect, holder)
}
