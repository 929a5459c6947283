//! Content-addressed blob storage.
//!
//! Blobs live under `<data-dir>/blobs/sha256/<2 hex>/<64 hex>`. A blob is
//! written to `blobs/tmp/`, hashed while it streams, fsynced, and renamed into
//! place only when its digest is known (and matches any expectation), so a
//! reader never sees a partial or corrupt blob under a digest name, even after
//! a crash. All access goes through a cap-std `Dir`: paths come from validated
//! [`Digest`]s only, never from a request.
//!
//! Every way a blob becomes available to name — written, found written
//! already, linked — leases it for the caller's [`Holder`] under the link
//! lock ([`leases`]), so orphan cleanup cannot delete it before the unit or
//! publication naming it commits.
//!
//! # Object storage
//!
//! Opened with an [`ObjectHome`] ([`BlobStore::open_with`]), the blobs live
//! in an S3-compatible bucket instead of `sha256/`. Writes are staged,
//! hashed and verified in `tmp/` exactly as above; where the directory home
//! renames or links the file into place, the object home uploads it (under
//! the link lock, leased like any other) and then moves it into the node's
//! verified cache, `cache/<64 hex>`, so the next read is local. A blob found
//! in the bucket already is not uploaded again. Reads come from the cache,
//! filled on a miss by a download that is hashed and refused unless it
//! matches its digest: the bucket is not trusted blindly. The cache is kept
//! under [`CACHE_LIMIT`] (see [`BlobStore::set_cache_limit`]) by evicting
//! the entries least recently used.
//!
//! Listing, removal, collection and verification work on the bucket. Leases
//! stay files of this node's `leases/` directory: leases across nodes that
//! share a bucket but not a data directory are out of scope, and cleanup
//! relies on its protection window for the writes of other nodes. For the
//! same reason a node's cache may serve a blob that another node removed
//! from the bucket.

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod leases;
pub mod objects;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use leases::{Generation, Holder, Leases};
pub use objects::{AreaKey, ObjectHome, ObjectLocation, S3Access};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wharf_core::digest::Digest;

/// Bytes moved per read while copying; large enough that syscalls vanish in
/// the profile, small enough that memory stays flat.
const COPY_CHUNK: usize = 1 << 20;

/// Bytes gathered before a `write` while streaming to a file. Small enough
/// that the buffers in flight (a few per stream) keep memory flat.
const STREAM_BUFFER: usize = 1 << 20;
/// Bytes written between two starts of the kernel's writeback.
const WRITEBACK_EVERY: u64 = 32 << 20;
/// The same for a blob's writer thread: an import fsyncs one blob per layer,
/// each waiting for the bytes written since the last start, so a shorter
/// tail keeps that wait short (115 → 30 ms in all for 8 layers of a 1 GiB
/// import, measured).
const BLOB_WRITEBACK_EVERY: u64 = 8 << 20;
/// Blobs from this size on are written by a helper thread while the caller
/// hashes; below it a thread costs more than it saves.
const PIPELINE_FROM: u64 = 4 << 20;
/// Pieces queued for a blob's writer thread: with 1 MiB pieces (file
/// copies) at most 16 MiB in flight; network chunks are far smaller.
const PIPELINE_DEPTH: usize = 16;

/// Why streaming a request body to a file stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the body ended early: {0}")]
    Body(String),
    #[error("the body is larger than the {max} bytes allowed here")]
    TooLarge { max: u64 },
    #[error("writing the body: {0}")]
    Io(#[from] io::Error),
}

/// Append a request body to `file` at `offset`, at most `max` bytes, and
/// wait until it is on disk; with `hasher`, hash it on the way. Returns the
/// bytes written and the hasher.
///
/// Receiving, writing and hashing overlap: the body is gathered into 1 MiB
/// buffers on the async side, and two blocking threads write (starting the
/// kernel's writeback every 32 MiB, so the final `sync_data` waits for the
/// tail only) and hash them. On an error, bytes past `offset` may have been
/// written: the caller truncates.
pub async fn stream_to_file<E: std::fmt::Display>(
    file: std::sync::Arc<std::fs::File>,
    offset: u64,
    mut body: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    max: u64,
    hasher: Option<Sha256>,
) -> Result<(u64, Option<Sha256>), StreamError> {
    use futures::StreamExt;
    use tokio::sync::mpsc;
    let (write_tx, mut write_rx) = mpsc::channel::<Arc<Vec<u8>>>(2);
    let writer = tokio::task::spawn_blocking(move || -> io::Result<()> {
        let (mut at, mut writeback) = (offset, offset);
        while let Some(buf) = write_rx.blocking_recv() {
            file.write_all_at(&buf, at)?;
            at += buf.len() as u64;
            if at - writeback >= WRITEBACK_EVERY {
                start_writeback(&file, writeback, at - writeback);
                writeback = at;
            }
        }
        file.sync_data()
    });
    let (hash_tx, hashing) = match hasher {
        Some(mut h) => {
            let (tx, mut rx) = mpsc::channel::<Arc<Vec<u8>>>(2);
            let task = tokio::task::spawn_blocking(move || {
                while let Some(buf) = rx.blocking_recv() {
                    h.update(&buf[..]);
                }
                h
            });
            (Some(tx), Some(task))
        }
        None => (None, None),
    };
    let mut buf = Vec::with_capacity(STREAM_BUFFER);
    let mut written = 0u64;
    let mut failure = None;
    loop {
        let next = body.next().await;
        let done = match next {
            Some(Ok(chunk)) => {
                written += chunk.len() as u64;
                if written > max {
                    failure = Some(StreamError::TooLarge { max });
                    break;
                }
                buf.extend_from_slice(&chunk);
                false
            }
            Some(Err(e)) => {
                failure = Some(StreamError::Body(e.to_string()));
                break;
            }
            None => true,
        };
        if (done && !buf.is_empty()) || buf.len() >= STREAM_BUFFER {
            let full = Arc::new(std::mem::replace(
                &mut buf,
                Vec::with_capacity(STREAM_BUFFER),
            ));
            if let Some(tx) = &hash_tx
                && tx.send(full.clone()).await.is_err()
            {
                break; // The hasher never fails; the writer's error follows.
            }
            if write_tx.send(full).await.is_err() {
                break;
            }
        }
        if done {
            break;
        }
    }
    drop(write_tx);
    drop(hash_tx);
    let wrote = writer
        .await
        .map_err(|e| io::Error::other(format!("writer thread: {e}")))?;
    let hasher = match hashing {
        Some(t) => Some(
            t.await
                .map_err(|e| io::Error::other(format!("hash thread: {e}")))?,
        ),
        None => None,
    };
    if let Some(f) = failure {
        return Err(f);
    }
    wrote?;
    Ok((written, hasher))
}

/// Ask the kernel to start writing a range back (no waiting). Only a hint:
/// durability still comes from `sync_data`.
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor we own for the call's
    // duration; it reads no memory of ours.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// The default bound of an object home's node-local cache of blobs.
pub const CACHE_LIMIT: u64 = 2 << 30;

/// Temp files older than this are from writes that died.
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {0} is not stored")]
    NotFound(Digest),
    #[error("the source ended after {got} of {want} bytes")]
    ShortSource { want: u64, got: u64 },
    #[error("blob storage: {0}")]
    Io(#[from] io::Error),
}

pub struct BlobStore {
    dir: Dir,
    root: PathBuf,
    tmp_seq: AtomicU64,
    leases: Leases,
    /// The bucket holding the blobs, if not `sha256/` (shared with the
    /// upload sessions: [`BlobStore::objects_shared`]).
    objects: Option<Arc<ObjectHome>>,
    /// Bytes the cache of an object home is trimmed to after a fill.
    cache_limit: AtomicU64,
    /// Bytes in the cache as last counted plus those filled since
    /// ([`UNCOUNTED`] before the first count): the cache's directory is
    /// scanned only when this passes the limit.
    cache_used: AtomicU64,
}

/// `cache_used` while the cache has never been counted.
const UNCOUNTED: u64 = u64::MAX;

/// What [`BlobStore::collect`] did.
#[derive(Debug, Default, PartialEq)]
pub struct Collected {
    pub removed: u64,
    pub bytes: u64,
    /// Candidates kept because something is about to name them.
    pub leased: u64,
}

impl std::ops::AddAssign for Collected {
    fn add_assign(&mut self, other: Collected) {
        self.removed += other.removed;
        self.bytes += other.bytes;
        self.leased += other.leased;
    }
}

/// Blobs a page of [`BlobStore::walk`] holds from a bucket's listing.
const WALK_PAGE: usize = 1000;

/// One page of [`BlobStore::walk`]: digests with the time of their last
/// write when the listing told it.
pub type Page = Vec<(Digest, Option<std::time::SystemTime>)>;

/// Threads [`BlobStore::collect`] deletes with.
const DELETERS: usize = 16;

impl BlobStore {
    /// Open (creating if needed) the blob store in `root`.
    pub fn open(root: &Path) -> io::Result<Self> {
        Self::open_with(root, None)
    }

    /// Open the blob store in `root`, the blobs' home being `objects` if
    /// given (`root` then holds temp files, leases and the node's cache;
    /// see the module documentation), `root/sha256` if not.
    pub fn open_with(root: &Path, objects: Option<ObjectHome>) -> io::Result<Self> {
        if objects.is_some() {
            std::fs::create_dir_all(root.join(CACHE))?;
        } else {
            std::fs::create_dir_all(root.join("sha256"))?;
        }
        std::fs::create_dir_all(root.join("tmp"))?;
        let dir = Dir::open_ambient_dir(root, ambient_authority())?;
        // Leftover temp files belong to writes that never finished. Other
        // nodes sharing this directory may be writing theirs right now, so
        // only files untouched for a day go.
        for entry in dir.read_dir("tmp")? {
            let entry = entry?;
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| {
                    std::time::SystemTime::now()
                        .duration_since(t.into_std())
                        .ok()
                })
                .is_some_and(|age| age > STALE_TMP);
            if stale {
                let _ = dir.remove_file(Path::new("tmp").join(entry.file_name()));
            }
        }
        Ok(BlobStore {
            dir,
            root: root.to_path_buf(),
            tmp_seq: AtomicU64::new(0),
            leases: Leases::open(root)?,
            objects: objects.map(Arc::new),
            cache_limit: AtomicU64::new(CACHE_LIMIT),
            cache_used: AtomicU64::new(UNCOUNTED),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bucket holding the blobs, if they are in object storage.
    pub fn objects(&self) -> Option<&ObjectHome> {
        self.objects.as_deref()
    }

    /// The bucket holding the blobs, if any, to share: upload sessions
    /// keep theirs there too ([`crate::sessions::Sessions::open_with`]).
    pub fn objects_shared(&self) -> Option<Arc<ObjectHome>> {
        self.objects.clone()
    }

    /// Where the blobs live: the directory, or `s3://bucket/prefix at
    /// ENDPOINT`.
    pub fn describe(&self) -> String {
        match &self.objects {
            Some(home) => home.describe(),
            None => self.root.join("sha256").display().to_string(),
        }
    }

    /// Whether the blobs' home answers: the directory is there, or the
    /// bucket can be listed (for readiness checks).
    pub fn probe(&self) -> io::Result<()> {
        self.dir.metadata("tmp")?;
        match &self.objects {
            Some(home) => home.probe(),
            None => self.dir.metadata("sha256").map(|_| ()),
        }
    }

    /// Bound the node-local cache of an object home to `bytes` (from the
    /// next fill on).
    pub fn set_cache_limit(&self, bytes: u64) {
        self.cache_limit.store(bytes, Ordering::Relaxed);
    }

    /// Empty the node-local cache of an object home (nothing to do for a
    /// directory home): the next reads download and verify again.
    pub fn clear_cache(&self) -> io::Result<()> {
        if self.objects.is_none() {
            return Ok(());
        }
        for entry in self.dir.read_dir(CACHE)? {
            let name = entry?.file_name();
            match self.dir.remove_file(Path::new(CACHE).join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        self.cache_used.store(UNCOUNTED, Ordering::Relaxed);
        Ok(())
    }

    fn cache_path(d: &Digest) -> PathBuf {
        Path::new(CACHE).join(d.hex())
    }

    /// Give the cache `d` of `len` bytes with `put` (a rename or link to
    /// the path it is handed), then trim the cache if it is over its limit;
    /// a failure only costs the cached copy.
    fn fill_cache(&self, d: &Digest, len: u64, put: impl FnOnce(&Path) -> io::Result<()>) -> bool {
        match put(&Self::cache_path(d)) {
            Ok(()) => {
                let used = self
                    .cache_used
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                        (used != UNCOUNTED).then(|| used.saturating_add(len))
                    })
                    .map_or(UNCOUNTED, |before| before.saturating_add(len));
                if used == UNCOUNTED || used > self.cache_limit.load(Ordering::Relaxed) {
                    self.trim_cache();
                }
                true
            }
            Err(e) => {
                tracing::debug!("blob {d} not cached: {e}");
                false
            }
        }
    }

    /// Count the cache and evict the least recently used entries until it
    /// is under its limit.
    fn trim_cache(&self) {
        let limit = self.cache_limit.load(Ordering::Relaxed);
        let Ok(entries) = self.dir.read_dir(CACHE) else {
            return;
        };
        let mut cached = Vec::new();
        let mut total = 0u64;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let used = meta
                .modified()
                .map(|t| t.into_std())
                .unwrap_or(std::time::UNIX_EPOCH);
            total += meta.len();
            cached.push((used, meta.len(), entry.file_name()));
        }
        if total > limit {
            cached.sort();
            for (_, len, name) in cached {
                if total <= limit {
                    break;
                }
                if self.dir.remove_file(Path::new(CACHE).join(name)).is_ok() {
                    total -= len;
                }
            }
        }
        self.cache_used.store(total, Ordering::Relaxed);
    }

    /// A new temp file, readable and writable, and its path.
    fn tmp_file(&self) -> io::Result<(PathBuf, std::fs::File)> {
        let name = format!(
            "{}-{}-{}",
            std::process::id(),
            self.tmp_seq.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4().simple()
        );
        let tmp = Path::new("tmp").join(name);
        let file = self.dir.open_with(
            &tmp,
            OpenOptions::new().read(true).write(true).create_new(true),
        )?;
        Ok((tmp, file.into_std()))
    }

    /// Download blob `d` from `home` into the cache, refusing bytes that do
    /// not hash to `d`; a handle on the cached copy.
    fn fetch(&self, home: &ObjectHome, d: &Digest) -> Result<std::fs::File, BlobError> {
        use futures::StreamExt;
        let (tmp, file) = self.tmp_file()?;
        let _remove = TmpGuard {
            dir: &self.dir,
            path: &tmp,
        };
        let mut stream = match home.get_range(d, 0, None) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound(d.clone()));
            }
            stream => stream?,
        };
        let mut hasher = Sha256::new();
        let mut at = 0u64;
        while let Some(chunk) = objects::wait(stream.next()) {
            let chunk = chunk?;
            file.write_all_at(&chunk, at)?;
            hasher.update(&chunk);
            at += chunk.len() as u64;
        }
        let actual = Digest::from_hasher(hasher);
        if &actual != d {
            tracing::warn!(
                "object storage ({}): the object of blob {d} holds {actual}: refused",
                home.location()
            );
            return Err(BlobError::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
        file.sync_all()?;
        self.fill_cache(d, at, |dest| self.dir.rename(&tmp, &self.dir, dest));
        Ok(file)
    }

    /// Upload the verified bytes of `file` as blob `d` and lease it to
    /// `holder`, under the link lock: cleanup cannot delete it between the
    /// two.
    fn place_object(
        &self,
        home: &ObjectHome,
        d: &Digest,
        holder: &Holder,
        file: &std::fs::File,
        len: u64,
    ) -> io::Result<()> {
        let locked = self.leases.linking()?;
        home.upload(d, file, len)?;
        self.leases.grant(&locked, holder, d)
    }

    /// Make the object `chunk` of the bucket (a session's only chunk, of
    /// `len` bytes hashing to `d`: the caller hashed them when it stored
    /// the chunk) blob `d` with a copy inside the bucket, leased to
    /// `holder` under the link lock, as [`Self::place_object`] does; if
    /// `d` is stored already, only lease it. Only for an object home.
    pub fn adopt_object(
        &self,
        chunk: &AreaKey,
        d: &Digest,
        len: u64,
        holder: &Holder,
    ) -> Result<(), BlobError> {
        let Some(home) = &self.objects else {
            return Err(io::Error::other("adopt_object needs blobs in object storage").into());
        };
        if self.reuse(d, holder)? {
            return Ok(());
        }
        let locked = self.leases.linking()?;
        home.copy_to_blob(chunk, d, len)?;
        self.leases.grant(&locked, holder, d)?;
        Ok(())
    }

    /// Whether `d` is stored, asking the bucket rather than the memo of
    /// sizes: what a lease is granted on.
    fn stored_now(&self, d: &Digest) -> io::Result<bool> {
        match &self.objects {
            Some(home) => Ok(home.head(d)?.is_some()),
            None => Ok(self.contains(d)),
        }
    }

    fn rel_path(d: &Digest) -> PathBuf {
        let hex = d.hex();
        Path::new("sha256").join(&hex[..2]).join(hex)
    }

    /// Open a stored blob for reading. With an object home, from the node's
    /// cache, filled first if needed (a download, verified).
    pub fn open_blob(&self, d: &Digest) -> Result<std::fs::File, BlobError> {
        if let Some(home) = &self.objects {
            return match self.dir.open(Self::cache_path(d)) {
                Ok(f) => {
                    let f = f.into_std();
                    // Recently used: evicted last.
                    let _ = f.set_modified(std::time::SystemTime::now());
                    Ok(f)
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.fetch(home, d),
                Err(e) => Err(e.into()),
            };
        }
        match self.dir.open(Self::rel_path(d)) {
            Ok(f) => Ok(f.into_std()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BlobError::NotFound(d.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// A blob's bytes if this node has them in a file: the blob directory,
    /// or the node's cache of the bucket (never a download). For serving,
    /// which streams from the bucket otherwise.
    pub fn local_file(&self, d: &Digest) -> io::Result<Option<std::fs::File>> {
        let path = match &self.objects {
            Some(_) => Self::cache_path(d),
            None => Self::rel_path(d),
        };
        match self.dir.open(path) {
            Ok(f) => Ok(Some(f.into_std())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Size of a stored blob, if present. With an object home, an error
    /// reaching the bucket is logged and answers `None`.
    pub fn stat(&self, d: &Digest) -> Option<u64> {
        if let Some(home) = &self.objects {
            return home.size(d).unwrap_or_else(|e| {
                tracing::warn!("blob {d}: {e}");
                None
            });
        }
        self.dir.metadata(Self::rel_path(d)).ok().map(|m| m.len())
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.stat(d).is_some()
    }

    /// If `d` is stored, lease it to `holder` (see [`leases`]) and say so:
    /// the holder may name it, and it stays stored until the holder's
    /// changes commit. A blob not stored, or collected meanwhile, answers
    /// `false`.
    pub fn lease(&self, d: &Digest, holder: &Holder) -> io::Result<bool> {
        let locked = self.leases.linking()?;
        if !self.stored_now(d)? {
            return Ok(false);
        }
        self.leases.grant(&locked, holder, d)?;
        Ok(true)
    }

    /// A blob about to be stored again: if it is stored already, lease it
    /// to `holder`, restart its protection window and say so.
    fn reuse(&self, d: &Digest, holder: &Holder) -> io::Result<bool> {
        let stored = self.lease(d, holder)?;
        if stored {
            self.touch(d)?;
        }
        Ok(stored)
    }

    /// Give blob `d` its name with `put` (a rename or a link to the path it
    /// is handed), leasing it to `holder` under the link lock, then fsync
    /// the directory: cleanup cannot delete it between the two.
    fn place(
        &self,
        d: &Digest,
        holder: &Holder,
        put: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<()> {
        let dest = Self::rel_path(d);
        self.dir
            .create_dir_all(dest.parent().expect("sharded path"))?;
        let locked = self.leases.linking()?;
        put(&dest)?;
        self.leases.grant(&locked, holder, d)?;
        drop(locked);
        self.sync_parent(&dest)
    }

    /// Start a cleanup run (see [`leases`]): take the snapshot of what is
    /// referenced after this, and pass the generation to [`Self::collect`].
    pub fn begin_collection(&self) -> io::Result<Generation> {
        self.leases.begin_collection()
    }

    /// Delete the `candidates` that hold no lease counting for `run`,
    /// deciding under the link lock so that no writer leases one
    /// meanwhile: orphan cleanup, after its own checks.
    pub fn collect(&self, candidates: &[Digest], run: Generation) -> io::Result<Collected> {
        let locked = self.leases.collecting()?;
        let held = self.leases.held(&locked, run)?;
        let mut out = Collected::default();
        let doomed: Vec<&Digest> = candidates.iter().filter(|d| !held.contains(d)).collect();
        out.leased = (candidates.len() - doomed.len()) as u64;
        // Deletes of different files do not wait for each other, and one
        // costs about a millisecond on some disks (ext4 mounted with
        // `discard`) or a round trip to a bucket: spread them over threads.
        let per_thread = doomed.len().div_ceil(DELETERS).max(1);
        let parts: Vec<io::Result<Collected>> = std::thread::scope(|s| {
            let deleters: Vec<_> = doomed
                .chunks(per_thread)
                .map(|part| {
                    s.spawn(move || {
                        let mut done = Collected::default();
                        for d in part {
                            let size = self.stat(d);
                            if self.remove(d)? {
                                done.removed += 1;
                                done.bytes += size.unwrap_or(0);
                            }
                        }
                        Ok(done)
                    })
                })
                .collect();
            deleters
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(io::Error::other("a blob deleter panicked")))
                })
                .collect()
        });
        for part in parts {
            out += part?;
        }
        drop(locked);
        Ok(out)
    }

    /// Start writing a new blob.
    pub fn writer(&self) -> io::Result<BlobWriter<'_>> {
        // Readable too: a blob fetched on demand is read by its clients
        // while it is written (`BlobWriter::reader`).
        let (tmp, file) = self.tmp_file()?;
        Ok(BlobWriter {
            store: self,
            tmp,
            file: Some(file),
            hasher: Sha256::new(),
            len: 0,
            writeback: 0,
        })
    }

    /// Store everything `r` yields.
    pub fn store_reader(
        &self,
        mut r: impl Read,
        expect: Option<&Digest>,
        holder: &Holder,
    ) -> Result<(Digest, u64), BlobError> {
        let mut w = self.writer()?;
        let mut buf = vec![0u8; COPY_CHUNK];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n])?;
        }
        w.finish(expect, holder)
    }

    /// Store bytes `[offset, offset + len)` of `file`.
    pub fn store_file_range(
        &self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
        expect: Option<&Digest>,
        holder: &Holder,
    ) -> Result<(Digest, u64), BlobError> {
        // Already stored: hashing is still needed to prove the range matches,
        // but the write and fsync are not.
        if let Some(d) = expect
            && self.lease(d, holder)?
        {
            let actual = hash_file_range(file, offset, len)?;
            return if &actual == d {
                Ok((actual, len))
            } else {
                Err(BlobError::DigestMismatch {
                    expected: d.clone(),
                    actual,
                })
            };
        }
        let mut w = self.pipelined_writer(len)?;
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(COPY_CHUNK as u64) as usize;
            let mut buf = vec![0u8; want];
            let n = file.read_at(&mut buf, offset + done)?;
            if n == 0 {
                return Err(BlobError::ShortSource {
                    want: len,
                    got: done,
                });
            }
            buf.truncate(n);
            w.push(buf.into())?;
            done += n as u64;
        }
        w.finish(expect, holder)
    }

    /// Start a blob of about `len` bytes whose bytes a helper thread writes
    /// while the caller hashes them: on a long copy, hashing and writing each
    /// keep a core busy. Small blobs are written in place.
    pub fn pipelined_writer(&self, len: u64) -> io::Result<PipelinedWriter<'_>> {
        let mut inner = self.writer()?;
        let background = if len >= PIPELINE_FROM {
            let mut file = inner.file.take().expect("fresh writer");
            let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(PIPELINE_DEPTH);
            let thread = std::thread::Builder::new()
                .name("wharf-blob-writer".into())
                .spawn(move || -> io::Result<std::fs::File> {
                    // Pieces (network chunks, often a few hundred KiB) are
                    // written in batches of STREAM_BUFFER with one `writev`,
                    // never copied.
                    let mut batch: Vec<bytes::Bytes> = Vec::new();
                    let mut batched = 0usize;
                    let (mut at, mut writeback) = (0u64, 0u64);
                    let mut flush = |batch: &mut Vec<bytes::Bytes>,
                                     file: &mut std::fs::File|
                     -> io::Result<()> {
                        let mut slices: Vec<io::IoSlice<'_>> =
                            batch.iter().map(|b| io::IoSlice::new(b)).collect();
                        let mut rest = &mut slices[..];
                        while !rest.is_empty() {
                            let n = file.write_vectored(rest)?;
                            if n == 0 {
                                return Err(io::ErrorKind::WriteZero.into());
                            }
                            at += n as u64;
                            io::IoSlice::advance_slices(&mut rest, n);
                        }
                        batch.clear();
                        if at - writeback >= BLOB_WRITEBACK_EVERY {
                            start_writeback(file, writeback, at - writeback);
                            writeback = at;
                        }
                        Ok(())
                    };
                    while let Ok(piece) = rx.recv() {
                        batched += piece.len();
                        batch.push(piece);
                        if batched >= STREAM_BUFFER {
                            flush(&mut batch, &mut file)?;
                            batched = 0;
                        }
                    }
                    flush(&mut batch, &mut file)?;
                    Ok(file)
                })?;
            Some((tx, thread))
        } else {
            None
        };
        Ok(PipelinedWriter { inner, background })
    }

    /// Store a small in-memory document.
    pub fn store_bytes(
        &self,
        bytes: &[u8],
        expect: Option<&Digest>,
        holder: &Holder,
    ) -> Result<Digest, BlobError> {
        let actual = Digest::of(bytes);
        if let Some(e) = expect
            && e != &actual
        {
            return Err(BlobError::DigestMismatch {
                expected: e.clone(),
                actual,
            });
        }
        if !self.reuse(&actual, holder)? {
            let mut w = self.writer()?;
            w.write_all(bytes)?;
            w.finish(Some(&actual), holder)?;
        }
        Ok(actual)
    }

    /// A blob stored again: orphan cleanup's protection window starts over
    /// (what keeps it for whatever is about to name it is its lease; this
    /// keeps the window meaning "unused for"). An object's time cannot be
    /// changed in place: its window is its last upload's, and its lease
    /// covers it until the commit naming it.
    fn touch(&self, d: &Digest) -> io::Result<()> {
        if self.objects.is_some() {
            return Ok(());
        }
        let existing = self
            .dir
            .open_with(Self::rel_path(d), OpenOptions::new().write(true))?;
        existing
            .into_std()
            .set_modified(std::time::SystemTime::now())
    }

    /// Make a rename or link into `dest`'s directory durable: without this
    /// a power cut after an acknowledgement may lose the name.
    fn sync_parent(&self, dest: &Path) -> io::Result<()> {
        let parent = dest.parent().expect("sharded path");
        // Read-only, not `open_dir`: cap-std opens directories O_PATH,
        // which cannot be fsynced.
        self.dir.open(parent)?.into_std().sync_all()
    }

    /// Move the file `name` of `from` (on the same filesystem) into the store
    /// as blob `d`, whose digest the caller computed from its bytes. The file
    /// is fsynced before it gets its digest name.
    pub fn adopt(
        &self,
        from: &Dir,
        name: &Path,
        d: &Digest,
        holder: &Holder,
    ) -> Result<(), BlobError> {
        if self.reuse(d, holder)? {
            from.remove_file(name)?;
            return Ok(());
        }
        if let Some(home) = &self.objects {
            let file = from.open(name)?.into_std();
            let len = file.metadata()?.len();
            self.place_object(home, d, holder, &file, len)?;
            file.sync_all()?;
            if !self.fill_cache(d, len, |dest| from.rename(name, &self.dir, dest)) {
                from.remove_file(name)?;
            }
            return Ok(());
        }
        from.open(name)?.into_std().sync_all()?;
        match self.place(d, holder, |dest| from.rename(name, &self.dir, dest)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                // A data directory split over filesystems: copy, verifying.
                let file = from.open(name)?.into_std();
                self.store_reader(file, Some(d), holder)?;
                from.remove_file(name)?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Store all `len` bytes of `file` (the file `name` in `dir`) by linking
    /// it into the store: no copy, no second fsync (the caller fsynced it).
    /// `known` is its digest if the caller hashed it while receiving it.
    /// Falls back to a copy where links cannot be made.
    #[allow(clippy::too_many_arguments)]
    pub fn link_file(
        &self,
        file: &std::fs::File,
        dir: &Dir,
        name: &str,
        len: u64,
        known: Option<&Digest>,
        expect: Option<&Digest>,
        holder: &Holder,
    ) -> Result<(Digest, u64), BlobError> {
        // Chunks are written under this lock (see `uploads`), so the bytes
        // cannot change between the checks and the link; after the link they
        // are refused.
        file.lock()?;
        let linked = self.link_locked(file, dir, name, len, known, expect, holder);
        file.unlock()?;
        linked
    }

    #[allow(clippy::too_many_arguments)]
    fn link_locked(
        &self,
        file: &std::fs::File,
        dir: &Dir,
        name: &str,
        len: u64,
        known: Option<&Digest>,
        expect: Option<&Digest>,
        holder: &Holder,
    ) -> Result<(Digest, u64), BlobError> {
        if file.metadata()?.len() != len {
            // Bytes of an unfinished chunk follow: copy the range instead.
            return self.store_file_range(file, 0, len, expect, holder);
        }
        let actual = match known {
            Some(d) => d.clone(),
            None => hash_file_range(file, 0, len)?,
        };
        if let Some(e) = expect
            && e != &actual
        {
            return Err(BlobError::DigestMismatch {
                expected: e.clone(),
                actual,
            });
        }
        if self.reuse(&actual, holder)? {
            return Ok((actual, len));
        }
        if let Some(home) = &self.objects {
            self.place_object(home, &actual, holder, file, len)?;
            self.fill_cache(&actual, len, |dest| dir.hard_link(name, &self.dir, dest));
            return Ok((actual, len));
        }
        let mut unlinkable = false;
        let placed = self.place(&actual, holder, |dest| {
            match dir.hard_link(name, &self.dir, dest) {
                // Linked by another writer meanwhile: leased all the same.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => {
                    unlinkable = true;
                    Err(e)
                }
                Ok(()) => Ok(()),
            }
        });
        match placed {
            Err(_) if unlinkable => self.store_file_range(file, 0, len, Some(&actual), holder),
            placed => Ok(placed.map(|()| (actual, len))?),
        }
    }

    /// When a blob was written.
    pub fn modified(&self, d: &Digest) -> Option<std::time::SystemTime> {
        if let Some(home) = &self.objects {
            return match home.head(d) {
                Ok(found) => found.map(|(_, t)| t),
                Err(e) => {
                    tracing::warn!("blob {d}: {e}");
                    None
                }
            };
        }
        self.dir
            .metadata(Self::rel_path(d))
            .ok()?
            .modified()
            .ok()
            .map(|t| t.into_std())
    }

    /// Remove a blob (orphan cleanup, fsck repair).
    pub fn remove(&self, d: &Digest) -> io::Result<bool> {
        if let Some(home) = &self.objects {
            match self.dir.remove_file(Self::cache_path(d)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            return home.remove(d);
        }
        match self.dir.remove_file(Self::rel_path(d)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every stored blob, a page at a time: one shard directory, or one
    /// page of the bucket's listing. `each` gets the page's digests, with
    /// the time of their last write when the listing told it (a bucket);
    /// else [`BlobStore::modified`] tells it. Memory stays bounded by a
    /// page however many blobs there are; `each` may delete what it was
    /// given, and stops the walk with `Break` (a canceled task, say).
    pub fn walk(&self, each: impl FnMut(Page) -> io::Result<ControlFlow<()>>) -> io::Result<()> {
        self.walk_in_pages(WALK_PAGE, each)
    }

    /// [`BlobStore::walk`] with pages of `page` blobs from a bucket.
    pub fn walk_in_pages(
        &self,
        page: usize,
        mut each: impl FnMut(Page) -> io::Result<ControlFlow<()>>,
    ) -> io::Result<()> {
        if let Some(home) = &self.objects {
            let mut after: Option<Digest> = None;
            loop {
                let page_size = page.max(1);
                let page = home.list_page(after.as_ref(), page_size)?;
                let full = page.len() == page_size;
                after = page.last().map(|(d, _)| d.clone());
                let told = each(page.into_iter().map(|(d, t)| (d, Some(t))).collect())?;
                if !full || told.is_break() {
                    return Ok(());
                }
            }
        }
        let mut shards: Vec<_> = self
            .dir
            .read_dir("sha256")?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        shards.sort();
        for shard in shards {
            let mut page = Vec::new();
            for entry in self.dir.read_dir(Path::new("sha256").join(&shard))? {
                let name = entry?.file_name();
                if let Some(d) = name
                    .to_str()
                    .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok())
                {
                    page.push((d, None));
                }
            }
            if each(page)?.is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Every stored digest, sorted (names that are not valid digests are
    /// skipped). Holds them all: [`BlobStore::walk`] holds a page.
    pub fn list(&self) -> io::Result<Vec<Digest>> {
        let mut out = Vec::new();
        self.walk(|page| {
            out.extend(page.into_iter().map(|(d, _)| d));
            Ok(ControlFlow::Continue(()))
        })?;
        out.sort();
        Ok(out)
    }

    /// Re-hash a stored blob and compare with its name. With an object
    /// home, the object is downloaded again (refreshing the cached copy when
    /// it matches).
    pub fn verify(&self, d: &Digest) -> Result<bool, BlobError> {
        if let Some(home) = &self.objects {
            return match self.fetch(home, d) {
                Ok(_) => Ok(true),
                Err(BlobError::DigestMismatch { .. }) => Ok(false),
                Err(e) => Err(e),
            };
        }
        let f = self.open_blob(d)?;
        let len = f.metadata()?.len();
        Ok(&hash_file_range(&f, 0, len)? == d)
    }
}

pub fn hash_file_range(file: &std::fs::File, offset: u64, len: u64) -> Result<Digest, BlobError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_CHUNK.min(len.max(1) as usize)];
    let mut done = 0u64;
    while done < len {
        let want = ((len - done) as usize).min(buf.len());
        let n = file.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            return Err(BlobError::ShortSource {
                want: len,
                got: done,
            });
        }
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok(Digest::from_hasher(hasher))
}

/// A blob being written. Dropped without [`BlobWriter::finish`], it leaves
/// nothing behind.
pub struct BlobWriter<'a> {
    store: &'a BlobStore,
    tmp: PathBuf,
    file: Option<std::fs::File>,
    hasher: Sha256,
    len: u64,
    /// Offset up to which the kernel's writeback was started.
    writeback: u64,
}

impl BlobWriter<'_> {
    /// Another handle on the temp file, for reading what is written so far
    /// (at offsets: `FileExt::read_at`) while the writer goes on; it reads
    /// the stored blob after [`BlobWriter::finish`] (with an object home,
    /// its cached copy: only `finish` uploads).
    pub fn reader(&self) -> io::Result<std::fs::File> {
        self.file.as_ref().expect("not finished").try_clone()
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Check the bytes against `expect` and drop them: nothing is stored
    /// (a blob served once and never kept).
    pub fn discard(self, expect: &Digest) -> Result<u64, BlobError> {
        let actual = Digest::from_hasher(self.hasher.clone());
        if &actual != expect {
            return Err(BlobError::DigestMismatch {
                expected: expect.clone(),
                actual,
            });
        }
        Ok(self.len)
    }

    /// Verify, fsync and move the blob into place, leased to `holder`.
    pub fn finish(
        mut self,
        expect: Option<&Digest>,
        holder: &Holder,
    ) -> Result<(Digest, u64), BlobError> {
        let file = self.file.take().expect("finish called once");
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if let Some(e) = expect
            && e != &actual
        {
            return Err(BlobError::DigestMismatch {
                expected: e.clone(),
                actual,
            });
        }
        let store = self.store;
        if store.reuse(&actual, holder)? {
            return Ok((actual, self.len)); // Drop removes the temp file.
        }
        if let Some(home) = &store.objects {
            // The node keeps its copy as the blob's cache entry, durable
            // before it is named: its fsync runs beside the upload, not
            // after it.
            let (placed, synced) = std::thread::scope(|s| {
                let synced = s.spawn(|| file.sync_all());
                let placed = store.place_object(home, &actual, holder, &file, self.len);
                (placed, synced.join().expect("the fsync does not panic"))
            });
            placed?;
            synced?;
            drop(file);
            let tmp = &self.tmp;
            let renamed = store.fill_cache(&actual, self.len, |dest| {
                store.dir.rename(tmp, &store.dir, dest)
            });
            if renamed {
                self.tmp.clear();
            }
            return Ok((actual, self.len));
        }
        file.sync_all()?;
        drop(file);
        let tmp = &self.tmp;
        store.place(&actual, holder, |dest| {
            store.dir.rename(tmp, &store.dir, dest)
        })?;
        self.tmp.clear();
        Ok((actual, self.len))
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().expect("not finished");
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        // Let the disk work while the copy goes on: `finish` then waits
        // for the tail only.
        if self.len - self.writeback >= WRITEBACK_EVERY {
            start_writeback(file, self.writeback, self.len - self.writeback);
            self.writeback = self.len;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A blob being written by a helper thread (see
/// [`BlobStore::pipelined_writer`]). Dropped without
/// [`PipelinedWriter::finish`], it leaves nothing behind.
pub struct PipelinedWriter<'a> {
    inner: BlobWriter<'a>,
    /// The writer thread and its queue; `None` for small blobs, written in
    /// place.
    background: Option<(
        std::sync::mpsc::SyncSender<bytes::Bytes>,
        std::thread::JoinHandle<io::Result<std::fs::File>>,
    )>,
}

impl PipelinedWriter<'_> {
    /// Hash `bytes` here and queue them for the writer (no copy).
    pub fn push(&mut self, bytes: bytes::Bytes) -> io::Result<()> {
        if self.background.is_none() {
            return self.inner.write_all(&bytes);
        }
        self.inner.hasher.update(&bytes);
        self.inner.len += bytes.len() as u64;
        self.send(bytes)
    }

    fn send(&mut self, buf: bytes::Bytes) -> io::Result<()> {
        let (tx, _) = self.background.as_ref().expect("background writer");
        if tx.send(buf).is_ok() {
            return Ok(());
        }
        // The thread stopped: its error says why.
        Err(self
            .join()
            .err()
            .unwrap_or_else(|| io::Error::other("blob writer thread stopped")))
    }

    /// Wait for the writer thread and take its file back.
    fn join(&mut self) -> io::Result<()> {
        if let Some((tx, thread)) = self.background.take() {
            drop(tx);
            let file = thread
                .join()
                .map_err(|_| io::Error::other("blob writer thread panicked"))??;
            self.inner.file = Some(file);
        }
        Ok(())
    }

    /// Write what is left, then verify, fsync and move the blob into place,
    /// leased to `holder`.
    pub fn finish(
        mut self,
        expect: Option<&Digest>,
        holder: &Holder,
    ) -> Result<(Digest, u64), BlobError> {
        self.join()?;
        self.inner.finish(expect, holder)
    }
}

/// The cache's directory in an object home's root.
const CACHE: &str = "cache";

/// Removes a temp file when dropped (whether or not it was renamed since).
struct TmpGuard<'a> {
    dir: &'a Dir,
    path: &'a Path,
}

impl Drop for TmpGuard<'_> {
    fn drop(&mut self) {
        let _ = self.dir.remove_file(self.path);
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = self.store.dir.remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conformance suite on the directory home.
    #[test]
    fn the_directory_home_conforms() {
        conformance::run_all(&|| {
            let tmp = tempfile::tempdir().unwrap();
            let store = BlobStore::open(&tmp.path().join("blobs")).unwrap();
            (store, Box::new(tmp))
        });
    }
}
