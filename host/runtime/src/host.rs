//! What a plugin can reach: the host side of the `wharf:plugin` imports.
//!
//! Every capability is scoped to the current call, and the scope is the
//! host's decision, never the plugin's (the trust rule, docs/access.md).
//! `resolve` (the registry hot path) sees the publication of the repository
//! the access gate admitted and only the blobs it serves, the catalog of
//! what the caller may read, repositories of its content types and the
//! length of its upload sessions. An import, sync, publish or registry write
//! sees the units and upload sessions of its own repository, and only blobs
//! it stored itself, its repository holds, it received through this
//! repository's upload sessions, or (a push) the pusher may read elsewhere;
//! `fetch` reaches that repository's feed host only. Unit changes are staged here and committed in
//! one transaction when the call succeeds, so a failed import leaves nothing
//! behind.

use crate::bindings::wharf::plugin::{
    blobs, fetch, log, publications, repositories, sessions, types, units,
};
use crate::err;
use crate::outbound::{describe_request, shown};
use crate::publications::PublicationMap;
use crate::stream_source;
use crate::transport::FeedTransport;
use crate::visibility::{Reader, Served};
use std::collections::VecDeque;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use stream_source::{StreamError, StreamSource};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wharf_core::digest::Digest;
use wharf_core::ids::UnitType;
use wharf_core::remote::DownloadPolicy;
use wharf_store::blobs::leases::Holder;
use wharf_store::blobs::{BlobError, BlobStore};
use wharf_store::db::{self, Progress, Repository, Store, UnitChange};
use wharf_store::sessions::{SessionError, Sessions};

/// Largest `read` the host answers.
pub const MAX_READ: u32 = 1 << 20;
/// Largest document a plugin may hand over with `store-bytes`.
const MAX_STORE_BYTES: usize = 64 << 20;
/// Largest unit metadata document.
const MAX_METADATA: usize = 1 << 20;
/// Largest body `fetch` buffers for the plugin (manifests, tag lists).
const MAX_FETCH_BODY: u64 = 64 << 20;

/// Shared services the imports use.
pub struct HostEnv {
    pub blobs: Arc<BlobStore>,
    pub store: Arc<dyn Store>,
    pub publications: Arc<PublicationMap>,
    pub sessions: Arc<Sessions>,
    /// What `fetch` may reach beyond the feed's origin rule; `http` is built
    /// by it and checks every resolved address and redirect hop.
    pub outbound: Arc<crate::outbound::OutboundPolicy>,
    pub http: reqwest::Client,
    pub rt: tokio::runtime::Handle,
    /// Where fetched bodies are spooled (unlinked files).
    pub spool_dir: std::path::PathBuf,
    /// The largest blob a download may bring (`--max-blob-size`).
    pub max_blob_size: u64,
    /// Told of every plugin call that ended: the plugin and `ok` or the
    /// [`PluginError::code`](crate::engine::PluginError::code) (metrics).
    pub call_ended: fn(plugin: &str, outcome: &'static str),
}

/// A whole upload, as an import may store it: the file can be linked into
/// the blob store, and its digest may be known already.
pub struct WholeUpload {
    pub dir: cap_std::fs::Dir,
    pub name: String,
    pub digest: Option<wharf_core::digest::Digest>,
}

/// Bytes a plugin holds a handle to.
pub enum SourceHandle {
    /// A byte range of a file: an upload, a stored blob, a spooled body.
    File {
        file: Arc<std::fs::File>,
        offset: u64,
        len: u64,
        /// Set when the range is a whole upload: storing all of it links
        /// the file into the blob store instead of copying it.
        whole: Option<Arc<WholeUpload>>,
    },
    /// A request body still arriving (a streaming import).
    Stream(Box<StreamSource>),
}

impl SourceHandle {
    pub fn file(file: std::fs::File) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(SourceHandle::File {
            file: Arc::new(file),
            offset: 0,
            len,
            whole: None,
        })
    }

    fn len(&self) -> u64 {
        match self {
            SourceHandle::File { len, .. } => *len,
            SourceHandle::Stream(s) => s.len(),
        }
    }
}

/// Why a call was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Deadline,
    Canceled,
}

/// A task's view: its repository, staged changes, progress.
pub struct TaskCall {
    pub repo: Repository,
    /// The repository version the call reads (`units.list`, `units.get`
    /// and the blobs it may name); `None`: the latest, as it changes.
    pub version: Option<u64>,
    /// Unit changes not yet committed; later entries win.
    pub overlay: BTreeMap<(UnitType, String), Option<db::Unit>>,
    pub changes: Vec<UnitChange>,
    pub progress: Arc<dyn Fn(Progress) + Send + Sync>,
    /// Where the plugin's log lines of level info and above go besides the
    /// server's log: the task's record ([`Self::with_log`]).
    pub log: Arc<dyn Fn(db::TaskLogLevel, String) + Send + Sync>,
    /// Origins (scheme://host:port) `fetch` may reach.
    pub allowed_origins: Vec<String>,
    /// Whether the caller may read a repository: the pusher in a registry
    /// write; `None` for tasks, which read their own repository only.
    pub reader: Option<Reader>,
    /// Blobs this call may name: stored by it, or found visible to it.
    pub visible: HashSet<Digest>,
    /// In a publish ([`Self::at_version`]): the blobs its version's units
    /// hold, read when first asked.
    held: Option<HashSet<Digest>>,
    /// In a publish: the publication it replaces ([`Self::replacing`]).
    previous: Option<Previous>,
    /// In a write: what its repository's publication serves
    /// ([`Self::serving`]).
    served: Option<Arc<Served>>,
    /// The last version diff `units.changes` read: (since, the diff).
    diff: Option<(u64, db::VersionDiff)>,
    /// The leases of the blobs this call stored or found stored
    /// (`blobs::leases`): keep it until the call's changes are committed.
    pub leases: Arc<Holder>,
    /// When `fetch-blobs` downloads (the repository's `download_policy`).
    pub policy: DownloadPolicy,
    /// Blobs `fetch-blobs` left on the feed under an `on_demand` or
    /// `streamed` policy: this call's units may name them unstored.
    pub deferred: HashSet<Digest>,
    /// How to reach the feed when the repository's remote says how
    /// ([`Self::with_transport`]); else the server's client.
    pub transport: Option<Arc<FeedTransport>>,
}

impl TaskCall {
    pub fn new(
        repo: Repository,
        progress: Arc<dyn Fn(Progress) + Send + Sync>,
        allowed_origins: Vec<String>,
        reader: Option<Reader>,
    ) -> Self {
        // A setting the host cannot read was refused when it was written;
        // one written before that check downloads as it always did.
        let policy = DownloadPolicy::of(&repo.importer_config).unwrap_or_default();
        TaskCall {
            repo,
            policy,
            deferred: HashSet::new(),
            transport: None,
            version: None,
            overlay: BTreeMap::new(),
            changes: Vec::new(),
            progress,
            log: Arc::new(|_, _| {}),
            allowed_origins,
            reader,
            visible: HashSet::new(),
            held: None,
            previous: None,
            served: None,
            diff: None,
            leases: Arc::new(Holder::new()),
        }
    }
}

impl TaskCall {
    /// The same call, its plugin's log lines also given to `log`.
    pub fn with_log(mut self, log: Arc<dyn Fn(db::TaskLogLevel, String) + Send + Sync>) -> Self {
        self.log = log;
        self
    }

    /// The same call reaching the feed through `transport` (a remote's).
    pub fn with_transport(mut self, transport: Option<Arc<FeedTransport>>) -> Self {
        self.transport = transport;
        self
    }

    /// The same call reading version `n` of its repository.
    pub fn at_version(mut self, n: u64) -> Self {
        self.version = Some(n);
        self
    }

    /// The same call, a publish replacing `previous`: the plugin may read
    /// that publication's index and what it serves, and the units changed
    /// since its version (`publications.previous`, `units.changes`).
    pub fn replacing(mut self, previous: Option<Previous>) -> Self {
        self.previous = previous;
        self
    }

    /// The same call, a write to a repository whose publication serves
    /// `served`: it may name those blobs (a registry `HEAD` says they are
    /// there), without reading every blob the repository holds.
    pub fn serving(mut self, served: Option<Arc<Served>>) -> Self {
        self.served = served;
        self
    }

    /// Stage the addition of a unit the host vouches for (one another
    /// repository holds, copied in): the plugin reads it as staged, and it
    /// commits with the call's own changes.
    pub fn stage(&mut self, u: db::Unit) {
        self.overlay
            .insert((u.unit_type.clone(), u.key.clone()), Some(u.clone()));
        self.changes.push(UnitChange::Add(u));
    }
}

/// The publication a publish replaces: it serves `version` of the
/// repository, and `served` is what it serves.
pub struct Previous {
    pub publication: Arc<db::Publication>,
    pub version: u64,
    pub served: Arc<Served>,
}

impl Previous {
    fn serves(&self, d: &Digest) -> bool {
        self.publication.index == *d || self.served.contains(d)
    }
}

/// A registry request's view: what the access gate admitted.
pub struct ResolveCall {
    /// The repository the gate admitted and what its publication serves;
    /// `None` when the path names no published repository.
    pub admitted: Option<Arc<Served>>,
    /// The repository the gate admitted, published or not: blobs it
    /// received through its own upload sessions are readable at once.
    pub repository: Option<wharf_core::ids::RepoId>,
    /// A push: a digest that a repository the caller may read holds may
    /// be looked at (a cross-repository mount).
    pub write: bool,
    pub reader: Reader,
}

impl ResolveCall {
    /// A request that was admitted for nothing.
    pub fn nothing() -> Self {
        ResolveCall {
            admitted: None,
            repository: None,
            write: false,
            reader: crate::visibility::Reader::nothing(),
        }
    }

    fn serves(&self, d: &Digest) -> bool {
        self.admitted.as_ref().is_some_and(|s| s.contains(d))
    }
}

/// What the current call may touch.
pub enum CallScope {
    /// Loading: `describe` only.
    Describe,
    /// A registry request.
    Resolve(Box<ResolveCall>),
    Task(Box<TaskCall>),
}

/// Keeps the tail of a plugin's stderr (panic messages) without ever failing
/// a write.
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<u8>>>);

const STDERR_TAIL: usize = 4096;

impl StderrTail {
    pub fn take(&self) -> String {
        let mut buf = self.0.lock().unwrap();
        let bytes: Vec<u8> = buf.drain(..).collect();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }
}

impl wasmtime_wasi::cli::IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::OutputStream for StderrTail {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), wasmtime_wasi::p2::StreamError> {
        let mut buf = self.0.lock().unwrap();
        buf.extend(bytes.iter());
        let excess = buf.len().saturating_sub(STDERR_TAIL);
        buf.drain(..excess);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), wasmtime_wasi::p2::StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, wasmtime_wasi::p2::StreamError> {
        Ok(64 * 1024)
    }
}

/// Memory limit that remembers it was hit, so the error can say so.
pub struct MemoryLimit {
    inner: StoreLimits,
    pub max_bytes: usize,
    pub hit: bool,
}

impl MemoryLimit {
    pub fn new(max_bytes: usize) -> Self {
        let inner = StoreLimitsBuilder::new()
            .memory_size(max_bytes)
            .trap_on_grow_failure(true)
            .build();
        MemoryLimit {
            inner,
            max_bytes,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
        }
        self.inner.memory_growing(current, desired, maximum)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
}

/// The data of one plugin instance's store.
pub struct HostState {
    pub plugin: Arc<str>,
    /// The content types the plugin described: the repositories it may see.
    pub content_types: Arc<[String]>,
    pub env: Arc<HostEnv>,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: MemoryLimit,
    pub stderr: StderrTail,
    pub scope: CallScope,
    pub deadline: Instant,
    pub cancel: Option<Arc<AtomicBool>>,
    pub interrupted: Option<Interrupt>,
    pub bytes_stored: u64,
    /// Why a host import could not ask a backend during this call (the
    /// bucket holding upload sessions, say) and answered "none": the
    /// call's answer may rest on that, so it is not used.
    pub unanswered: Option<String>,
    /// Set when the call reads more than its request and admitted
    /// publication (see [`crate::varies`]).
    pub varies: crate::varies::Varies,
}

impl HostState {
    pub fn new(
        plugin: Arc<str>,
        content_types: Arc<[String]>,
        env: Arc<HostEnv>,
        memory_bytes: usize,
    ) -> Self {
        let stderr = StderrTail::default();
        // No preopened directories, no environment, no arguments, no network:
        // a plugin reaches the world only through the imports below.
        // Clocks and random generators that tell when a call read them.
        let varies = crate::varies::Varies::default();
        let random = || crate::varies::Random {
            varies: varies.clone(),
            inner: wasmtime_wasi::thread_rng(),
        };
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(crate::varies::WallClock(varies.clone()))
            .monotonic_clock(crate::varies::MonotonicClock {
                varies: varies.clone(),
                since: Instant::now(),
            })
            .secure_random(random())
            .insecure_random(random())
            .build();
        HostState {
            plugin,
            content_types,
            env,
            wasi,
            table: ResourceTable::new(),
            limits: MemoryLimit::new(memory_bytes),
            stderr,
            scope: CallScope::Describe,
            deadline: Instant::now(),
            cancel: None,
            interrupted: None,
            unanswered: None,
            varies,
            bytes_stored: 0,
        }
    }

    /// Called by the epoch callback on every tick while guest code runs.
    pub fn check_interrupt(&mut self) -> Option<Interrupt> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            self.interrupted = Some(Interrupt::Canceled);
        } else if Instant::now() >= self.deadline {
            self.interrupted = Some(Interrupt::Deadline);
        }
        self.interrupted
    }

    /// The current task call's feed transport, if a remote gave one.
    fn transport(&self) -> Option<Arc<FeedTransport>> {
        match &self.scope {
            CallScope::Task(t) => t.transport.clone(),
            _ => None,
        }
    }

    fn task(&mut self, what: &str) -> Result<&mut TaskCall, types::Error> {
        match &mut self.scope {
            CallScope::Task(t) => Ok(t),
            _ => Err(err(
                "denied",
                format!("{what} is only available to import, sync and publish calls"),
            )),
        }
    }

    fn source(&self, r: &Resource<SourceHandle>) -> Result<&SourceHandle, types::Error> {
        self.table
            .get(r)
            .map_err(|e| err("invalid-handle", e.to_string()))
    }

    fn source_mut(
        &mut self,
        r: &Resource<SourceHandle>,
    ) -> Result<&mut SourceHandle, types::Error> {
        self.table
            .get_mut(r)
            .map_err(|e| err("invalid-handle", e.to_string()))
    }

    /// What stops a wait for a streaming source's body: the call's cancel
    /// flag and deadline (the epoch check cannot fire inside a host call).
    fn stop_check(&self) -> impl Fn() -> Option<&'static str> + use<> {
        let (cancel, deadline) = (self.cancel.clone(), self.deadline);
        move || {
            if cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                Some("the task was canceled")
            } else if Instant::now() >= deadline {
                Some("the task ran past its deadline")
            } else {
                None
            }
        }
    }

    fn store_blob<T>(
        &mut self,
        f: impl FnOnce(&BlobStore) -> Result<T, BlobError>,
        len: u64,
    ) -> Result<T, types::Error> {
        let out = f(&self.env.blobs).map_err(blob_err)?;
        self.bytes_stored += len;
        Ok(out)
    }

    /// Record that this call stored (or verified) `d`: it may name it.
    fn stored(&mut self, d: &Digest) {
        if let CallScope::Task(t) = &mut self.scope {
            t.visible.insert(d.clone());
        }
    }

    /// Whether the current call may open, stat or name the blob `d`. A
    /// blob it may not see looks exactly like one that is not stored.
    fn may_see(&mut self, d: &Digest) -> bool {
        // Served by the admitted publication: the answer rests on it alone.
        if !matches!(&self.scope, CallScope::Resolve(r) if r.serves(d)) {
            self.varies.mark();
        }
        let env = self.env.clone();
        let holders = || env.rt.block_on(env.store.repos_holding_blob(d));
        match &mut self.scope {
            CallScope::Describe => false,
            CallScope::Resolve(r) => {
                r.serves(d)
                    // A blob just pushed to the admitted repository, or to
                    // a repository the caller may read (a mount's source).
                    || r
                        .repository
                        .as_ref()
                        .is_some_and(|repo| env.sessions.received(repo.as_str(), d))
                    || env.sessions.receivers(d).iter().any(|id| r.reader.may_read(id))
                    || (r.write
                        && holders().is_ok_and(|repos| repos.iter().any(|id| r.reader.may_read(id))))
            }
            CallScope::Task(t) => {
                if t.visible.contains(d) || env.sessions.received(t.repo.id.as_str(), d) {
                    return true;
                }
                // What the publication a publish replaces serves (kept by
                // the new one when the publish reads it), or what a write's
                // repository's publication serves.
                if t.previous.as_ref().is_some_and(|p| p.serves(d))
                    || t.served.as_ref().is_some_and(|s| s.contains(d))
                {
                    t.visible.insert(d.clone());
                    return true;
                }
                let held = match t.version {
                    // A publish reads one version: what it holds, read once
                    // (a publish costs its version already).
                    Some(v) => t
                        .held
                        .get_or_insert_with(|| {
                            let held = env.rt.block_on(env.store.version_blobs(&t.repo.id, v));
                            held.unwrap_or_default().into_iter().collect()
                        })
                        .contains(d),
                    // One indexed lookup, whatever the repository holds.
                    None => env
                        .rt
                        .block_on(env.store.repo_holds_blob(&t.repo.id, d))
                        .unwrap_or(false),
                };
                // As a registry HEAD answers (the client skips the upload
                // on its word): also what a repository the writer may read
                // holds, or received lately.
                let seen = held
                    || t.reader.as_ref().is_some_and(|reader| {
                        env.sessions
                            .receivers(d)
                            .iter()
                            .any(|id| reader.may_read(id))
                            || holders()
                                .is_ok_and(|repos| repos.iter().any(|id| reader.may_read(id)))
                    });
                if seen {
                    t.visible.insert(d.clone());
                }
                seen
            }
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn blob_err(e: BlobError) -> types::Error {
    let code = match &e {
        BlobError::DigestMismatch { .. } => "digest-mismatch",
        BlobError::NotFound(_) => "not-found",
        BlobError::ShortSource { .. } => "invalid-input",
        BlobError::Io(_) => "io",
    };
    err(code, e.to_string())
}

/// At most `len` bytes at `offset` of a source that is a file range.
fn read_file(
    file: &std::fs::File,
    base: u64,
    total: u64,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, types::Error> {
    use std::os::unix::fs::FileExt;
    if offset >= total {
        return Ok(Vec::new());
    }
    let n = len.min(total - offset) as usize;
    let mut buf = vec![0u8; n];
    let mut done = 0;
    while done < n {
        let got = file
            .read_at(&mut buf[done..], base + offset + done as u64)
            .map_err(|e| err("io", e.to_string()))?;
        if got == 0 {
            break;
        }
        done += got;
    }
    buf.truncate(done);
    Ok(buf)
}

fn stream_err(e: StreamError) -> types::Error {
    match e {
        StreamError::Blob(b) => blob_err(b),
        StreamError::Interrupted(_) => err("interrupted", e.to_string()),
        StreamError::Io(_) => err("io", e.to_string()),
        _ => err("invalid-input", e.to_string()),
    }
}

fn parse_digest(d: &str) -> Result<Digest, types::Error> {
    d.parse::<Digest>()
        .map_err(|e| err("invalid-input", e.to_string()))
}

fn store_err(e: db::StoreError) -> types::Error {
    err("store", e.to_string())
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        if let CallScope::Task(t) = &self.scope {
            let kept = match level {
                log::Level::Info => Some(db::TaskLogLevel::Info),
                log::Level::Warn => Some(db::TaskLogLevel::Warn),
                log::Level::Error => Some(db::TaskLogLevel::Error),
                log::Level::Trace | log::Level::Debug => None,
            };
            if let Some(kept) = kept {
                (t.log)(kept, message.clone());
            }
        }
        let plugin = &*self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn progress(
        &mut self,
        items_done: u64,
        items_total: u64,
        bytes_done: u64,
        bytes_total: u64,
        message: String,
    ) {
        if let CallScope::Task(t) = &self.scope {
            (t.progress)(Progress {
                items_done,
                items_total,
                bytes_done,
                bytes_total,
                message,
            });
        }
    }
}

impl blobs::Host for HostState {
    fn max_read(&mut self) -> u32 {
        MAX_READ
    }

    fn open(&mut self, digest: String) -> Result<Resource<SourceHandle>, types::Error> {
        let d = parse_digest(&digest)?;
        if !self.may_see(&d) {
            return Err(blob_err(BlobError::NotFound(d)));
        }
        let file = self.env.blobs.open_blob(&d).map_err(|e| {
            // Served but not stored yet (left on a feed): it may be soon.
            self.varies.mark();
            blob_err(e)
        })?;
        let handle = SourceHandle::file(file).map_err(|e| err("io", e.to_string()))?;
        self.table
            .push(handle)
            .map_err(|e| err("resources", e.to_string()))
    }

    fn stat(&mut self, digest: String) -> Option<u64> {
        let d = digest.parse::<Digest>().ok()?;
        if !self.may_see(&d) {
            return None;
        }
        // A write deciding on this answer that the blob is there (a mount,
        // a layer not stored again, a shard a publish keeps) will name it:
        // it is leased until then. (A publication being replaced does not
        // hold it that long: a push's publish and a publish task, or two
        // nodes, may replace it at once.)
        if let Some(holder) = self.linker()
            && !self.env.blobs.lease(&d, &holder).unwrap_or(false)
        {
            return None;
        }
        let size = self.env.blobs.stat(&d);
        if size.is_none() {
            self.varies.mark();
        }
        size
    }

    fn store_bytes(
        &mut self,
        bytes: Vec<u8>,
        expect: Option<String>,
    ) -> Result<String, types::Error> {
        self.varies.mark();
        // Only import, sync and publish write content; resolve reads.
        let holder = self.task("blobs.store-bytes")?.leases.clone();
        if bytes.len() > MAX_STORE_BYTES {
            return Err(err(
                "too-large",
                format!("store-bytes takes at most {MAX_STORE_BYTES} bytes"),
            ));
        }
        let expect = expect.as_deref().map(parse_digest).transpose()?;
        let len = bytes.len() as u64;
        let d = self.store_blob(|b| b.store_bytes(&bytes, expect.as_ref(), &holder), len)?;
        self.stored(&d);
        Ok(d.into())
    }
}

impl blobs::HostSource for HostState {
    fn len(&mut self, this: Resource<SourceHandle>) -> u64 {
        self.source(&this).map(SourceHandle::len).unwrap_or(0)
    }

    fn read(
        &mut self,
        this: Resource<SourceHandle>,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, types::Error> {
        let (len, stop) = (len.min(MAX_READ) as u64, self.stop_check());
        match self.source_mut(&this)? {
            SourceHandle::Stream(stream) => stream.read(offset, len, &stop).map_err(stream_err),
            SourceHandle::File {
                file,
                offset: base,
                len: total,
                ..
            } => read_file(file, *base, *total, offset, len),
        }
    }

    fn store_range(
        &mut self,
        this: Resource<SourceHandle>,
        offset: u64,
        len: u64,
        expect: Option<String>,
    ) -> Result<String, types::Error> {
        self.varies.mark();
        let expect = expect.as_deref().map(parse_digest).transpose()?;
        let total = self.source(&this)?.len();
        if offset.checked_add(len).is_none_or(|end| end > total) {
            return Err(err(
                "invalid-input",
                format!("range {offset}+{len} is outside the source ({total} bytes)"),
            ));
        }
        let stop = self.stop_check();
        let holder = self.linker().unwrap_or_default();
        let (file, start, whole) = match self.source_mut(&this)? {
            SourceHandle::Stream(stream) => {
                let stored = stream
                    .store_range(offset, len, expect.as_ref(), &stop, &holder)
                    .map_err(stream_err)?;
                self.bytes_stored += len;
                self.stored(&stored);
                return Ok(stored.into());
            }
            SourceHandle::File {
                file,
                offset: base,
                whole,
                ..
            } => {
                // Storing all of an upload links its file instead of copying.
                let whole = whole
                    .clone()
                    .filter(|_| *base == 0 && offset == 0 && len == total);
                (file.clone(), *base + offset, whole)
            }
        };
        let (d, _) = self.store_blob(
            |b| match &whole {
                Some(w) => b.link_file(
                    &file,
                    &w.dir,
                    &w.name,
                    len,
                    w.digest.as_ref(),
                    expect.as_ref(),
                    &holder,
                ),
                None => b.store_file_range(&file, start, len, expect.as_ref(), &holder),
            },
            len,
        )?;
        self.stored(&d);
        Ok(d.into())
    }

    fn drop(&mut self, rep: Resource<SourceHandle>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl units::Host for HostState {
    fn add(&mut self, unit: units::Unit) -> Result<(), types::Error> {
        self.varies.mark();
        let unit_type = parse_unit_type(&unit.unit_type)?;
        if unit.key.is_empty() || unit.key.len() > 1024 {
            return Err(err("invalid-input", "unit keys are 1-1024 bytes"));
        }
        if unit.metadata.len() > MAX_METADATA {
            return Err(err(
                "too-large",
                format!("unit metadata is limited to {MAX_METADATA} bytes"),
            ));
        }
        let metadata: serde_json::Value = serde_json::from_str(&unit.metadata)
            .map_err(|e| err("invalid-input", format!("unit metadata is not JSON: {e}")))?;
        let mut blobs = Vec::with_capacity(unit.blobs.len());
        for b in &unit.blobs {
            let d = parse_digest(b)?;
            // A unit may only name bytes that are really stored, and that
            // this call may see (it stored them, its repository holds them,
            // or the pusher may read a repository that does). Leased, so
            // that they are still stored when the unit commits.
            let t = self.task("units.add")?;
            if t.deferred.contains(&d) {
                // Left on the feed by this call's `fetch-blobs`: fetched
                // when a client first asks for it.
                blobs.push(d);
                continue;
            }
            let holder = t.leases.clone();
            let named = self.may_see(&d)
                && self
                    .env
                    .blobs
                    .lease(&d, &holder)
                    .map_err(|e| err("io", format!("leasing blob {d}: {e}")))?;
            if !named {
                return Err(err(
                    "not-found",
                    format!(
                        "unit {} names blob {d}, which is not stored or not visible to this \
                         repository; store (or push) its bytes first",
                        unit.key
                    ),
                ));
            }
            blobs.push(d);
        }
        let u = db::Unit {
            unit_type,
            key: unit.key,
            metadata,
            blobs,
        };
        let t = self.task("units.add")?;
        t.overlay
            .insert((u.unit_type.clone(), u.key.clone()), Some(u.clone()));
        t.changes.push(UnitChange::Add(u));
        Ok(())
    }

    fn remove(&mut self, unit_type: String, key: String) -> Result<bool, types::Error> {
        self.varies.mark();
        let existed = self.get(unit_type.clone(), key.clone())?.is_some();
        let unit_type = parse_unit_type(&unit_type)?;
        let t = self.task("units.remove")?;
        t.overlay.insert((unit_type.clone(), key.clone()), None);
        t.changes.push(UnitChange::Remove { unit_type, key });
        Ok(existed)
    }

    fn list(
        &mut self,
        unit_type: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<units::Unit>, types::Error> {
        self.varies.mark();
        let limit = limit.clamp(1, 10_000);
        let unit_type = parse_unit_type(&unit_type)?;
        let env = self.env.clone();
        let t = self.task("units.list")?;
        let staged = t.staged_after(&unit_type, after.as_deref(), |_| true);
        let want = limit + hidden(&staged);
        let rows = env
            .rt
            .block_on(async {
                match t.version {
                    Some(v) => {
                        env.store
                            .list_version_units(&t.repo.id, v, &unit_type, after.as_deref(), want)
                            .await
                    }
                    None => {
                        env.store
                            .list_units(&t.repo.id, &unit_type, after.as_deref(), want)
                            .await
                    }
                }
            })
            .map_err(store_err)?;
        Ok(merge_staged(rows, staged, want, limit))
    }

    fn get(&mut self, unit_type: String, key: String) -> Result<Option<units::Unit>, types::Error> {
        self.varies.mark();
        let unit_type = parse_unit_type(&unit_type)?;
        let env = self.env.clone();
        let t = self.task("units.get")?;
        if let Some(staged) = t.overlay.get(&(unit_type.clone(), key.clone())) {
            return Ok(staged.clone().map(to_wit_unit));
        }
        let u = env
            .rt
            .block_on(async {
                match t.version {
                    Some(v) => {
                        env.store
                            .get_version_unit(&t.repo.id, v, &unit_type, &key)
                            .await
                    }
                    None => env.store.get_unit(&t.repo.id, &unit_type, &key).await,
                }
            })
            .map_err(store_err)?;
        Ok(u.map(to_wit_unit))
    }

    fn changes(
        &mut self,
        since: u64,
        unit_type: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<units::Changed>, types::Error> {
        self.varies.mark();
        let limit = limit.clamp(1, 10_000) as usize;
        let unit_type = parse_unit_type(&unit_type)?;
        let env = self.env.clone();
        let t = self.task("units.changes")?;
        let Some(now) = t.version else {
            return Err(err(
                "denied",
                "units.changes is only available to publish calls, which read one version",
            ));
        };
        // Read once per `since` and call, whatever the paging.
        if t.diff.as_ref().is_none_or(|(s, _)| *s != since) {
            let diff = env
                .rt
                .block_on(env.store.diff_versions(&t.repo.id, since, now))
                .map_err(|e| match e {
                    db::StoreError::NotFound(what) => err(
                        "not-found",
                        format!("{what}: the version limit dropped it; publish everything instead"),
                    ),
                    e => store_err(e),
                })?;
            t.diff = Some((since, diff));
        }
        let (_, diff) = t.diff.as_ref().expect("read above");
        let keys = changed_keys(diff, &unit_type, after.as_deref(), limit);
        let mut out = Vec::with_capacity(keys.len());
        for (key, added) in keys {
            let version = if added { now } else { since };
            let unit = env
                .rt
                .block_on(
                    env.store
                        .get_version_unit(&t.repo.id, version, &unit_type, &key),
                )
                .map_err(store_err)?
                .ok_or_else(|| {
                    err(
                        "not-found",
                        format!("{unit_type} {key} of version {version} is gone; publish everything instead"),
                    )
                })?;
            out.push(units::Changed {
                unit: to_wit_unit(unit),
                added,
            });
        }
        Ok(out)
    }

    /// A page of the blob index, merged with the call's staged changes as
    /// `list` merges them.
    fn naming(
        &mut self,
        blob: String,
        unit_type: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<units::Unit>, types::Error> {
        self.varies.mark();
        let limit = limit.clamp(1, 10_000);
        let blob = parse_digest(&blob)?;
        let unit_type = parse_unit_type(&unit_type)?;
        let env = self.env.clone();
        let t = self.task("units.naming")?;
        if t.version.is_some() {
            return Err(err(
                "denied",
                "units.naming reads the repository as it changes: not in publish, which reads one version",
            ));
        }
        // A staged unit that does not name the blob hides the stored one.
        let staged = t.staged_after(&unit_type, after.as_deref(), |u| u.blobs.contains(&blob));
        let want = limit + hidden(&staged);
        let rows = env
            .rt
            .block_on(env.store.list_units_naming(
                &t.repo.id,
                &blob,
                &unit_type,
                after.as_deref(),
                want,
            ))
            .map_err(store_err)?;
        Ok(merge_staged(rows, staged, want, limit))
    }
}

impl TaskCall {
    /// The staged changes of `unit_type` after `after`, in key order: a
    /// unit staged for addition that fails `keep` counts as removed.
    fn staged_after(
        &self,
        unit_type: &UnitType,
        after: Option<&str>,
        keep: impl Fn(&db::Unit) -> bool,
    ) -> Vec<(String, Option<db::Unit>)> {
        self.overlay
            .range((unit_type.clone(), after.unwrap_or_default().to_string())..)
            .take_while(|((ty, _), _)| ty == unit_type)
            .filter(|((_, k), _)| after.is_none_or(|a| k.as_str() > a))
            .map(|((_, k), v)| (k.clone(), v.clone().filter(|u| keep(u))))
            .collect()
    }
}

/// How many stored rows `staged` may hide: ask the store for that many more.
fn hidden(staged: &[(String, Option<db::Unit>)]) -> u32 {
    staged.iter().filter(|(_, v)| v.is_none()).count() as u32
}

/// A page of stored units (`want` asked for) merged with the staged
/// changes of the same range, at most `limit`.
fn merge_staged(
    rows: Vec<db::Unit>,
    staged: Vec<(String, Option<db::Unit>)>,
    want: u32,
    limit: u32,
) -> Vec<units::Unit> {
    // Staged keys beyond the last stored row may hide stored rows that were
    // not fetched, so a full page bounds what may be merged.
    let bound = (rows.len() as u32 == want)
        .then(|| rows.last().map(|u| u.key.clone()))
        .flatten();
    let mut merged: BTreeMap<String, db::Unit> =
        rows.into_iter().map(|u| (u.key.clone(), u)).collect();
    for (k, v) in staged {
        if bound.as_ref().is_some_and(|b| &k > b) {
            continue;
        }
        match v {
            Some(u) => merged.insert(k, u),
            None => merged.remove(&k),
        };
    }
    merged
        .into_values()
        .take(limit as usize)
        .map(to_wit_unit)
        .collect()
}

/// The keys of `unit_type` in `diff`, after `after`, in key order, at most
/// `limit`, each with whether it was added (else removed).
fn changed_keys(
    diff: &db::VersionDiff,
    unit_type: &UnitType,
    after: Option<&str>,
    limit: usize,
) -> Vec<(String, bool)> {
    let of = |refs: &[db::UnitRef], added: bool| {
        // In type and key order: start past `after` by binary search.
        let start = refs.partition_point(|r| match after {
            Some(a) => (&r.unit_type, r.key.as_str()) <= (unit_type, a),
            None => r.unit_type < *unit_type,
        });
        refs[start..]
            .iter()
            .take_while(|r| r.unit_type == *unit_type)
            .take(limit)
            .map(|r| (r.key.clone(), added))
            .collect::<Vec<_>>()
    };
    let mut keys = of(&diff.added, true);
    keys.extend(of(&diff.removed, false));
    keys.sort();
    keys.truncate(limit);
    keys
}

/// A unit type a plugin named, checked.
fn parse_unit_type(s: &str) -> Result<UnitType, types::Error> {
    s.parse()
        .map_err(|e: wharf_core::ids::InvalidUnitType| err("invalid-input", e.to_string()))
}

fn to_wit_unit(u: db::Unit) -> units::Unit {
    units::Unit {
        unit_type: u.unit_type.into(),
        key: u.key,
        metadata: u.metadata.to_string(),
        blobs: u.blobs.into_iter().map(String::from).collect(),
    }
}

impl publications::Host for HostState {
    /// Only the publication of the repository this call is about: the one
    /// the gate admitted, or the task's own. A name below a pull-through
    /// repository's name (`hub/library/alpine` below `hub`) finds that
    /// repository's publication, whose `name` then says where it starts.
    fn lookup(&mut self, name: String) -> Option<publications::Publication> {
        let mine = match &self.scope {
            CallScope::Resolve(r) => r.admitted.as_ref().map(|s| s.repo.clone()),
            CallScope::Task(t) => Some(t.repo.id.clone()),
            CallScope::Describe => None,
        }?;
        let map = &self.env.publications;
        let found = map
            .get(&self.plugin, &name)
            // A name below a pull-through repository's is that repository's.
            .or_else(|| map.pull_through_base(&self.plugin, &name))
            .filter(|p| p.repo_id == mine)
            .map(|p| publications::Publication {
                name: p.name.clone(),
                repository_id: p.repo_id.to_string(),
                index: p.index.to_string(),
                config: p.config.to_string(),
            });
        // Found, it is the admitted publication; not found, the answer
        // rests on the other publications.
        if found.is_none() {
            self.varies.mark();
        }
        found
    }

    /// Only in a publish: the publication it replaces.
    fn previous(&mut self) -> Option<publications::PublishedBefore> {
        self.varies.mark();
        let CallScope::Task(t) = &self.scope else {
            return None;
        };
        t.previous.as_ref().map(|p| publications::PublishedBefore {
            name: p.publication.name.clone(),
            index: p.publication.index.to_string(),
            version: p.version,
        })
    }

    /// Names of the repositories the caller may read (a task: its own).
    fn names(&mut self, after: Option<String>, limit: u32) -> Vec<String> {
        self.varies.mark();
        let limit = limit.clamp(1, 10_000) as usize;
        let after = after.as_deref();
        match &self.scope {
            CallScope::Resolve(r) => {
                let reader = &r.reader;
                self.env.publications.catalog(
                    &self.plugin,
                    after,
                    limit,
                    &|repo| reader.may_read(repo),
                    reader.granted(),
                )
            }
            CallScope::Task(t) => {
                self.env
                    .publications
                    .names_where(&self.plugin, after, limit, |p| p.repo_id == t.repo.id)
            }
            CallScope::Describe => Vec::new(),
        }
    }
}

fn session_err(e: SessionError) -> types::Error {
    match e {
        SessionError::Blob(b) => blob_err(b),
        SessionError::Unknown(_) => err("not-found", e.to_string()),
        SessionError::Busy(_) => err("busy", e.to_string()),
        other => err("io", other.to_string()),
    }
}

impl HostState {
    /// A session of this plugin, of the write's repository when in a write.
    fn session(&mut self, id: &str) -> Option<wharf_store::sessions::SessionId> {
        let repo = match &self.scope {
            CallScope::Task(t) => Some(t.repo.id.as_str()),
            CallScope::Resolve(_) => None,
            CallScope::Describe => return None,
        };
        let found = self.env.sessions.find(id, &self.plugin, repo);
        self.answered(found).flatten()
    }

    /// What a backend answered, or `None` noted as [`HostState::unanswered`].
    fn answered<T>(&mut self, r: std::io::Result<T>) -> Option<T> {
        r.map_err(|e| self.unanswered = Some(format!("upload sessions: {e}")))
            .ok()
    }

    fn owns(&self, r: &Repository) -> bool {
        self.content_types.contains(&r.content_type)
    }

    /// Who leases the blobs this call finds stored, if it may name them: a
    /// task's holder, released after its commit; for a registry write's
    /// `resolve` (a mount), whose blob a later request names, one kept
    /// until its leases lapse.
    fn linker(&self) -> Option<Arc<Holder>> {
        match &self.scope {
            CallScope::Task(t) => Some(t.leases.clone()),
            CallScope::Resolve(r) if r.write => {
                let kept = Holder::new();
                kept.keep();
                Some(Arc::new(kept))
            }
            _ => None,
        }
    }
}

impl sessions::Host for HostState {
    fn length(&mut self, id: String) -> Option<u64> {
        self.varies.mark();
        let id = self.session(&id)?;
        let length = self.env.sessions.length(&id);
        self.answered(length).flatten()
    }

    fn commit(&mut self, id: String, expect: Option<String>) -> Result<String, types::Error> {
        self.varies.mark();
        let holder = self.task("sessions.commit")?.leases.clone();
        let expect = expect.as_deref().map(parse_digest).transpose()?;
        let sid = self
            .session(&id)
            .ok_or_else(|| err("not-found", format!("upload session {id} is not known")))?;
        let (digest, len) = self
            .env
            .sessions
            .commit(sid, &self.env.blobs, expect.as_ref(), &holder)
            .map_err(session_err)?;
        self.bytes_stored += len;
        self.stored(&digest);
        // Later writes of this repository (the manifest PUT that names
        // this blob) may name it too, on any node.
        let repo = self.task("sessions.commit")?.repo.id.clone();
        self.env.sessions.mark_received(repo.as_str(), &digest);
        Ok(digest.into())
    }

    fn abort(&mut self, id: String) -> bool {
        self.varies.mark();
        if self.task("sessions.abort").is_err() {
            return false;
        }
        self.session(&id)
            .is_some_and(|sid| self.env.sessions.abort(&sid))
    }

    fn receive(&mut self, digest: String) -> bool {
        self.varies.mark();
        let Ok(repo) = self.task("sessions.receive").map(|t| t.repo.id.clone()) else {
            return false;
        };
        let Ok(d) = digest.parse::<Digest>() else {
            return false;
        };
        if !self.may_see(&d) {
            return false;
        }
        // Leased until the note is written, so cleanup cannot take the
        // blob between the check and the note.
        if let Some(holder) = self.linker()
            && !self.env.blobs.lease(&d, &holder).unwrap_or(false)
        {
            return false;
        }
        if !self.env.blobs.contains(&d) {
            return false;
        }
        self.env.sessions.mark_received(repo.as_str(), &d);
        true
    }
}

impl repositories::Host for HostState {
    fn get(&mut self, id: String) -> Option<types::Repository> {
        self.varies.mark();
        if matches!(self.scope, CallScope::Describe) {
            return None;
        }
        let id: wharf_core::ids::RepoId = id.parse().ok()?;
        let env = self.env.clone();
        let repo = env.rt.block_on(env.store.get_repo(&id)).ok()??;
        self.owns(&repo).then(|| crate::wit_repo(&repo))
    }

    fn find(&mut self, distributor_key: String, value: String) -> Vec<types::Repository> {
        self.varies.mark();
        if matches!(self.scope, CallScope::Describe) {
            return Vec::new();
        }
        let env = self.env.clone();
        let mut found = Vec::new();
        // Answered from the store's settings index, a page at a time.
        for content_type in self.content_types.iter() {
            let mut q = db::RepoQuery {
                after: None,
                limit: 1000,
                content_type: Some(content_type.clone()),
                setting: Some((distributor_key.clone(), value.clone())),
                ..Default::default()
            };
            loop {
                let Ok(page) = env.rt.block_on(env.store.list_repos(&q)) else {
                    return found;
                };
                let full = page.len() == q.limit as usize;
                q.after = page.last().map(|r| r.id.to_string());
                found.extend(page.iter().map(crate::wit_repo));
                if !full {
                    break;
                }
            }
        }
        found
    }
}

/// `scheme://host:port` of a URL.
pub fn origin(url: &reqwest::Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

impl HostState {
    fn check_fetch_url(&mut self, url: &str) -> Result<reqwest::Url, types::Error> {
        let url: reqwest::Url = url
            .parse()
            .map_err(|e| err("invalid-input", format!("bad URL {url:?}: {e}")))?;
        let outbound = self.env.outbound.clone();
        let t = self.task("fetch")?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(err(
                "denied",
                format!("fetch only speaks http and https, not {}", url.scheme()),
            ));
        }
        // Internal addresses first: the feed itself may name one.
        outbound
            .check_url(&url)
            .map_err(|e| err("denied", e.to_string()))?;
        if !t.allowed_origins.contains(&origin(&url)) {
            return Err(err(
                "denied",
                format!(
                    "fetch of {url} denied: a plugin may only reach its repository's feed ({})",
                    t.allowed_origins
                        .first()
                        .map(String::as_str)
                        .unwrap_or("none configured")
                ),
            ));
        }
        Ok(url)
    }

    /// A bearer challenge from the feed names the realm that issues its
    /// tokens; the realm may live on another host, and is allowed once the
    /// feed itself pointed at it — if the outbound policy lets it through (a
    /// learned realm's hostname is still checked again when it resolves).
    fn learn_auth_realm(&mut self, headers: &reqwest::header::HeaderMap) {
        for v in headers.get_all(reqwest::header::WWW_AUTHENTICATE) {
            let Ok(v) = v.to_str() else { continue };
            let Some(rest) = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
            else {
                continue;
            };
            let realm = rest
                .split(',')
                .find_map(|p| p.trim().strip_prefix("realm="))
                .map(|r| r.trim_matches('"'));
            let Some(realm) = realm.and_then(|r| r.parse::<reqwest::Url>().ok()) else {
                continue;
            };
            if let Err(e) = self.env.outbound.check_url(&realm) {
                tracing::warn!(plugin = %self.plugin, "token realm not learned: {e}");
                continue;
            }
            if let CallScope::Task(t) = &mut self.scope {
                let o = origin(&realm);
                if !t.allowed_origins.contains(&o) {
                    t.allowed_origins.push(o);
                }
            }
        }
    }
}

fn build_request(
    http: &reqwest::Client,
    method: &str,
    url: reqwest::Url,
    headers: &[types::Header],
) -> Result<reqwest::RequestBuilder, types::Error> {
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|e| err("invalid-input", e.to_string()))?;
    if !matches!(method, reqwest::Method::GET | reqwest::Method::HEAD) {
        return Err(err("denied", "fetch may only GET or HEAD"));
    }
    let mut req = http.request(method, url);
    for h in headers {
        req = req.header(&h.name, &h.value);
    }
    Ok(req)
}

impl fetch::Host for HostState {
    fn fetch(&mut self, req: fetch::Request) -> Result<fetch::Response, types::Error> {
        self.varies.mark();
        use std::io::Write;
        let url = self.check_fetch_url(&req.url)?;
        let env = self.env.clone();
        let transport = self.transport();
        let http = transport.as_ref().map_or(&env.http, |t| &t.http);
        let request = build_request(http, &req.method, url.clone(), &req.headers)?;
        let fetching = async {
            if let Some(t) = &transport {
                t.turn().await;
            }
            let mut resp = crate::outbound::send_idempotent(request)
                .await
                .map_err(|e| {
                    err(
                        "fetch",
                        format!("GET {}: {}", shown(&url), describe_request(e)),
                    )
                })?;
            let mut file =
                tempfile::tempfile_in(&env.spool_dir).map_err(|e| err("io", e.to_string()))?;
            let mut got = 0u64;
            while let Some(chunk) = resp.chunk().await.map_err(|e| {
                err(
                    "fetch",
                    format!("reading {}: {}", shown(&url), describe_request(e)),
                )
            })? {
                got += chunk.len() as u64;
                if got > MAX_FETCH_BODY {
                    return Err(err(
                        "too-large",
                        format!("{url} answered more than {MAX_FETCH_BODY} bytes; use fetch-blobs"),
                    ));
                }
                file.write_all(&chunk)
                    .map_err(|e| err("io", e.to_string()))?;
            }
            Ok::<_, types::Error>((resp.status().as_u16(), resp.headers().clone(), file))
        };
        // A cancel stops a slow answer too (see `fetch_blobs`).
        let fetched = env
            .rt
            .block_on(crate::download::unless_stopped(fetching, self.stop_check()));
        let (status, headers, file) = fetched.map_err(|why| err("canceled", why))??;
        self.learn_auth_realm(&headers);
        let body = SourceHandle::file(file).map_err(|e| err("io", e.to_string()))?;
        let body = self
            .table
            .push(body)
            .map_err(|e| err("resources", e.to_string()))?;
        let headers = headers
            .iter()
            .filter_map(|(k, v)| {
                Some(types::Header {
                    name: k.to_string(),
                    value: v.to_str().ok()?.to_string(),
                })
            })
            .collect();
        Ok(fetch::Response {
            status,
            headers,
            body,
        })
    }

    fn fetch_blobs(
        &mut self,
        downloads: Vec<fetch::BlobDownload>,
    ) -> Vec<Result<String, types::Error>> {
        self.varies.mark();
        use crate::download::{self, Expect};
        use futures::StreamExt;
        let env = self.env.clone();
        let stop = self.stop_check();
        if let Some(why) = stop() {
            return downloads
                .iter()
                .map(|_| Err(err("canceled", why)))
                .collect();
        }
        let max = env.max_blob_size;
        let transport = self.transport();
        let http = transport.as_ref().map_or(&env.http, |t| &t.http).clone();
        let concurrency = transport
            .as_ref()
            .map_or(crate::transport::DEFAULT_CONCURRENCY, |t| t.concurrency);
        let holder = self.linker().unwrap_or_default();
        let defers = matches!(&self.scope, CallScope::Task(t) if t.policy.defers());
        let mut prepared = Vec::with_capacity(downloads.len());
        for d in &downloads {
            prepared.push(parse_digest(&d.digest).and_then(|digest| {
                let url = self.check_fetch_url(&d.url)?;
                // Bounded by the descriptor's size, or by the server's
                // maximum blob size without one.
                let expect = match d.size {
                    Some(n) if n > max => {
                        return Err(err(
                            "too-large",
                            format!("{digest}: its descriptor gives {n} bytes, more than this server's maximum blob size of {max} (--max-blob-size)"),
                        ));
                    }
                    Some(n) => Expect::Exactly(n),
                    None => Expect::AtMost(max),
                };
                // Skipped only when this repository already holds it: a
                // digest a feed merely lists is never a key to bytes stored
                // for another repository; those are downloaded and verified.
                let held =
                    self.may_see(&digest) && env.blobs.lease(&digest, &holder).unwrap_or(false);
                Ok((
                    digest,
                    held,
                    expect,
                    build_request(&http, "GET", url, &d.headers)?,
                ))
            }));
        }
        if defers {
            // `on_demand` / `streamed`: nothing is downloaded now; what is
            // not stored yet is named by digest, fetched by `locate` later.
            return prepared
                .into_iter()
                .map(|p| {
                    let (digest, held, _, _) = p?;
                    if !held && let CallScope::Task(t) = &mut self.scope {
                        t.deferred.insert(digest.clone());
                    }
                    Ok(String::from(digest))
                })
                .collect();
        }
        let count = prepared.len();
        let all = futures::stream::iter(prepared.into_iter().map(|p| {
            let (env, holder, transport) = (env.clone(), holder.clone(), transport.clone());
            async move {
                let (digest, held, expect, req) = p?;
                if held {
                    return Ok((digest, 0));
                }
                if let Some(t) = &transport {
                    t.turn().await;
                }
                download::blob(
                    &env.blobs,
                    &req,
                    &digest,
                    expect,
                    &download::LIMITS,
                    &holder,
                )
                .await
                .map(|n| (digest, n))
            }
        }))
        .buffered(concurrency)
        .collect::<Vec<_>>();
        // A cancel (or the deadline) drops every transfer within
        // `STOP_POLL`: connections close, temp files go.
        let results: Vec<Result<(Digest, u64), types::Error>> =
            match env.rt.block_on(download::unless_stopped(all, stop)) {
                Ok(results) => results,
                Err(why) => (0..count).map(|_| Err(err("canceled", why))).collect(),
            };
        results
            .into_iter()
            .map(|r| {
                r.map(|(d, n)| {
                    self.bytes_stored += n;
                    self.stored(&d);
                    String::from(d)
                })
            })
            .collect()
    }
}
