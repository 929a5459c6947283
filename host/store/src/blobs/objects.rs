//! An S3-compatible bucket as the home of blobs ([`ObjectHome`]), behind
//! [`super::BlobStore`].
//!
//! Blobs live under `<prefix>/blobs/sha256/<64 hex>` in the bucket; keys come
//! from validated [`Digest`]s only. Upload sessions shared by the nodes
//! (see [`crate::sessions`]) live under `<prefix>/sessions/` and
//! `<prefix>/received/`, reached through [`AreaKey`]s, which are made from
//! validated ids only as well. The calls are synchronous, like the rest
//! of the blob store (it runs on blocking threads): each drives the S3
//! client on the home's own small tokio runtime, so it works from any
//! thread, inside another runtime's blocking context included.
//!
//! Nothing holds a blob in memory: uploads read the file in [`PART_SIZE`]
//! pieces with at most [`PARTS_IN_FLIGHT`] parts on the wire, downloads
//! stream to a file. Retries are bounded ([`MAX_RETRIES`] within
//! [`RETRY_TIMEOUT`]), so an outage fails a push within seconds, with an
//! error that starts with `object storage (s3://…):`.

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::signer::Signer;
use object_store::{
    ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore, PutPayload, RetryConfig,
};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::unix::fs::FileExt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use wharf_core::digest::Digest;
use wharf_core::ids::{RepoId, SessionId};

/// Bytes per part of a multipart upload, and the largest blob sent with one
/// PutObject. S3 wants parts of at least 5 MiB, the last excepted.
pub const PART_SIZE: u64 = 8 << 20;
/// Parts of one upload in memory (on the wire) at once: at most
/// `PARTS_IN_FLIGHT * PART_SIZE` per upload. Three keep a loopback S3
/// server as busy as four did (scripts/bench-s3.sh) for 8 MiB less.
pub const PARTS_IN_FLIGHT: usize = 3;
/// Attempts after the first for one request.
pub const MAX_RETRIES: usize = 4;
/// Time after which a request is no longer retried.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to connect to the endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Sizes remembered before the memo starts over.
const SIZE_MEMO_MAX: usize = 100_000;
/// Chunks of a download queued between the network and the file.
const DOWNLOAD_QUEUE: usize = 8;

/// The largest object S3 copies with one CopyObject: a larger session
/// chunk is committed by a download instead.
pub const COPY_MAX: u64 = 5 << 30;
/// What ends the key of a chunk's digest note ([`AreaKey::chunk_digest`]).
pub const CHUNK_DIGEST_SUFFIX: &str = ".sha256";
/// The largest object [`ObjectHome::get_small`] reads.
const SMALL_MAX: u64 = 1 << 20;

/// A key of the upload sessions' area of the bucket, relative to the
/// prefix: `sessions/…` or `received/…`, made from validated ids only
/// (or listed from the area).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AreaKey(String);

impl AreaKey {
    /// Every session's objects.
    pub fn sessions() -> Self {
        AreaKey("sessions".into())
    }

    /// The objects of session `id`.
    pub fn session(id: &SessionId) -> Self {
        AreaKey(format!("sessions/{}", id.0.simple()))
    }

    /// The owner document of session `id`.
    pub fn session_owner(id: &SessionId) -> Self {
        AreaKey(format!("sessions/{}/owner.json", id.0.simple()))
    }

    /// A chunk of session `id`: `len` bytes from `start`, told apart from
    /// a rival chunk at the same offset by `nonce`. Short on purpose: some
    /// S3 servers name a multipart upload's parts after the whole key, and
    /// file systems cap names at 255 bytes.
    pub fn session_chunk(id: &SessionId, start: u64, len: u64, nonce: u32) -> Self {
        AreaKey(format!(
            "sessions/{}/{start:016x}-{len:016x}-{nonce:08x}",
            id.0.simple()
        ))
    }

    /// The note of a chunk's own digest, beside it (`<chunk>.sha256`).
    pub fn chunk_digest(chunk: &AreaKey) -> Self {
        AreaKey(format!("{}{CHUNK_DIGEST_SUFFIX}", chunk.0))
    }

    /// Every received-blob note.
    pub fn received_all() -> Self {
        AreaKey("received".into())
    }

    /// The notes of the blobs `repo` received through its sessions.
    pub fn received_by(repo: &RepoId) -> Self {
        AreaKey(format!("received/{}", repo.as_str()))
    }

    /// The note that `repo` received blob `d` through its sessions.
    pub fn received(repo: &RepoId, d: &Digest) -> Self {
        AreaKey(format!("received/{}/{}", repo.as_str(), d.hex()))
    }

    /// Every entry of the received notes' index by blob.
    pub fn receivers_all() -> Self {
        AreaKey("receivers".into())
    }

    /// The index entries of the repositories that received blob `d`.
    pub fn receivers_of(d: &Digest) -> Self {
        AreaKey(format!("receivers/{}", d.hex()))
    }

    /// The index entry of the note [`AreaKey::received`]`(repo, d)`.
    pub fn receiver(d: &Digest, repo: &RepoId) -> Self {
        AreaKey(format!("receivers/{}/{}", d.hex(), repo.as_str()))
    }

    /// The key relative to the prefix, e.g. `sessions/<id>/owner.json`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its `/`-separated segments.
    pub fn segments(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }
}

impl fmt::Display for AreaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object of the sessions' area, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: AreaKey,
    pub size: u64,
    pub modified: SystemTime,
}

/// Where in object storage the blobs live: `s3://BUCKET[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLocation {
    bucket: String,
    /// Empty, or segments joined by `/` (no leading or trailing `/`).
    prefix: String,
}

/// Why an `s3://` location was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid object storage location {given:?}: {why}")]
pub struct LocationError {
    given: String,
    why: String,
}

impl ObjectLocation {
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix, empty for none.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of blob `d`.
    fn key(&self, d: &Digest) -> Key {
        Key::from(format!("{}sha256/{}", self.blobs_prefix(), d.hex()))
    }

    /// The bucket key of `k`.
    fn area_key(&self, k: &AreaKey) -> Key {
        if self.prefix.is_empty() {
            Key::from(k.as_str())
        } else {
            Key::from(format!("{}/{}", self.prefix, k.as_str()))
        }
    }

    /// Where the blobs' keys start, with a trailing `/`.
    fn blobs_prefix(&self) -> String {
        if self.prefix.is_empty() {
            "blobs/".into()
        } else {
            format!("{}/blobs/", self.prefix)
        }
    }
}

impl FromStr for ObjectLocation {
    type Err = LocationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |why: String| LocationError {
            given: s.to_string(),
            why,
        };
        let rest = s.strip_prefix("s3://").ok_or_else(|| {
            fail(
                "write it as s3://BUCKET or s3://BUCKET/PREFIX (e.g. s3://wharf-blobs/prod)".into(),
            )
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !(3..=63).contains(&bucket.len()) {
            return Err(fail(format!(
                "the bucket name {bucket:?} must be 3 to 63 characters long"
            )));
        }
        if let Some(c) = bucket
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
        {
            return Err(fail(format!(
                "the bucket name {bucket:?} has {c:?}: use lowercase letters, digits, '-' and '.' only"
            )));
        }
        let edge = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !bucket.starts_with(edge) || !bucket.ends_with(edge) {
            return Err(fail(format!(
                "the bucket name {bucket:?} must start and end with a lowercase letter or digit"
            )));
        }
        if !prefix.is_empty() {
            if prefix.ends_with('/') || prefix.starts_with('/') {
                return Err(fail(format!(
                    "the prefix {prefix:?} must not start or end with '/': write s3://{bucket}/{}",
                    prefix.trim_matches('/')
                )));
            }
            for segment in prefix.split('/') {
                if segment.is_empty() {
                    return Err(fail(format!(
                        "the prefix {prefix:?} has an empty segment ('//'): write s3://{bucket}/{}",
                        prefix
                            .split('/')
                            .filter(|s| !s.is_empty())
                            .collect::<Vec<_>>()
                            .join("/")
                    )));
                }
                if segment == ".." || segment == "." {
                    return Err(fail(format!(
                        "the prefix {prefix:?} has a {segment:?} segment: name the prefix plainly"
                    )));
                }
                if segment.chars().any(|c| c.is_control()) {
                    return Err(fail(format!(
                        "the prefix {prefix:?} has a control character"
                    )));
                }
            }
        }
        Ok(ObjectLocation {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl fmt::Display for ObjectLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// How to reach and sign in to the object storage.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Access {
    /// The service's URL, for an S3-compatible server (`http://` allowed);
    /// none for AWS itself.
    pub endpoint: Option<String>,
    /// Defaults to `us-east-1`.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl fmt::Debug for S3Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Access")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl S3Access {
    /// From `AWS_ENDPOINT_URL`, `AWS_REGION` (or `AWS_DEFAULT_REGION`),
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`; unset or empty
    /// variables are `None`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        S3Access {
            endpoint: var("AWS_ENDPOINT_URL"),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
        }
    }
}

/// The runtime the S3 client runs on. Shut down without waiting when
/// dropped, so a store dropped on an async thread does not panic.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("runtime until dropped")
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A bucket (and prefix) holding blobs, with the client and runtime that
/// reach it.
pub struct ObjectHome {
    location: ObjectLocation,
    endpoint: String,
    store: Arc<AmazonS3>,
    runtime: OwnRuntime,
    sizes: Mutex<HashMap<Digest, u64>>,
}

impl fmt::Debug for ObjectHome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl ObjectHome {
    /// A client for `location` (no request is made: see [`Self::probe`]).
    pub fn new(location: ObjectLocation, access: &S3Access) -> io::Result<Self> {
        let region = access.region.as_deref().unwrap_or("us-east-1");
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(location.bucket())
            .with_region(region)
            .with_retry(RetryConfig {
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_allow_http(true),
            );
        let endpoint = match &access.endpoint {
            Some(e) => {
                builder = builder
                    .with_endpoint(e)
                    .with_allow_http(true)
                    .with_virtual_hosted_style_request(false);
                e.clone()
            }
            None => {
                // AWS itself: bucket names in the host.
                builder = builder.with_virtual_hosted_style_request(true);
                format!("https://s3.{region}.amazonaws.com")
            }
        };
        if let Some(k) = &access.access_key_id {
            builder = builder.with_access_key_id(k);
        }
        if let Some(s) = &access.secret_access_key {
            builder = builder.with_secret_access_key(s);
        }
        let store = builder.build().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "object storage ({location}): cannot set up the client: {e}; \
                     check the endpoint URL and region"
                ),
            )
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("wharf-s3")
            .enable_all()
            .build()?;
        Ok(ObjectHome {
            location,
            endpoint,
            store: Arc::new(store),
            runtime: OwnRuntime(Some(runtime)),
            sizes: Mutex::default(),
        })
    }

    pub fn location(&self) -> &ObjectLocation {
        &self.location
    }

    /// The runtime the client runs on, to spawn streaming reads on.
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.runtime.get().handle().clone()
    }

    /// `s3://bucket/prefix at ENDPOINT`.
    pub fn describe(&self) -> String {
        format!("{} at {}", self.location, self.endpoint)
    }

    /// Run `fut` on the home's runtime and wait for it, from any thread.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = io::Result<T>> + Send + 'static,
    ) -> io::Result<T> {
        let task = self.runtime.get().spawn(fut);
        wait(task).map_err(|e| io::Error::other(format!("object storage task failed: {e}")))?
    }

    /// An object_store error as an `io::Error` naming the location and
    /// what to check.
    fn error(&self, doing: &str, e: object_store::Error) -> io::Error {
        error(&self.location, doing, e)
    }

    fn remember(&self, d: &Digest, size: u64) {
        let mut sizes = self.sizes.lock().unwrap();
        if sizes.len() >= SIZE_MEMO_MAX {
            sizes.clear();
        }
        sizes.insert(d.clone(), size);
    }

    fn forget(&self, d: &Digest) {
        self.sizes.lock().unwrap().remove(d);
    }

    /// Store the first `len` bytes of `file` as blob `d` (the caller
    /// verified them): one PutObject up to [`PART_SIZE`], a multipart
    /// upload beyond, aborted on any error so nothing is left under `d`.
    pub fn upload(&self, d: &Digest, file: &std::fs::File, len: u64) -> io::Result<()> {
        self.upload_key(self.location.key(d), file, len)?;
        self.remember(d, len);
        Ok(())
    }

    /// Store the first `len` bytes of `file` under `key`, as
    /// [`Self::upload`] does.
    fn upload_key(&self, key: Key, file: &std::fs::File, len: u64) -> io::Result<()> {
        if len <= PART_SIZE {
            self.put(key, read_piece(file, 0, len)?, "uploading")?;
        } else {
            self.upload_parts(file, key, len)?;
        }
        Ok(())
    }

    fn upload_parts(&self, file: &std::fs::File, key: Key, len: u64) -> io::Result<()> {
        let store = self.store.clone();
        let loc = self.location.clone();
        let mut upload = self.run(async move {
            store
                .put_multipart(&key)
                .await
                .map_err(|e| error(&loc, "starting a multipart upload", e))
        })?;
        let sent = self.send_parts(&mut upload, file, len);
        let loc = self.location.clone();
        match sent {
            Ok(()) => self.run(async move {
                match upload.complete().await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let _ = upload.abort().await;
                        Err(error(&loc, "completing a multipart upload", e))
                    }
                }
            }),
            Err(e) => {
                // Best effort: a failed abort leaves parts that the bucket's
                // lifecycle rule for incomplete uploads removes.
                let _ = self.run(async move {
                    let _ = upload.abort().await;
                    Ok(())
                });
                Err(e)
            }
        }
    }

    /// Read and send the parts, at most [`PARTS_IN_FLIGHT`] at once.
    fn send_parts(
        &self,
        upload: &mut Box<dyn MultipartUpload>,
        file: &std::fs::File,
        len: u64,
    ) -> io::Result<()> {
        let mut in_flight = std::collections::VecDeque::new();
        let wait = |task: tokio::task::JoinHandle<object_store::Result<()>>| -> io::Result<()> {
            wait(task)
                .map_err(|e| io::Error::other(format!("object storage task failed: {e}")))?
                .map_err(|e| self.error("uploading a part", e))
        };
        let mut at = 0;
        while at < len {
            // A slot first, then the piece: no part waits in memory.
            if in_flight.len() >= PARTS_IN_FLIGHT {
                wait(in_flight.pop_front().expect("parts in flight"))?;
            }
            let piece = read_piece(file, at, (len - at).min(PART_SIZE))?;
            at += piece.len() as u64;
            let _entered = self.runtime.get().enter();
            let part = upload.put_part(PutPayload::from(piece));
            in_flight.push_back(self.runtime.get().spawn(part));
        }
        for task in in_flight {
            wait(task)?;
        }
        Ok(())
    }

    /// Stream blob `d` into `dest` (from offset 0); its size. Not found is
    /// an error of kind `NotFound`.
    pub fn download(&self, d: &Digest, dest: &std::fs::File) -> io::Result<u64> {
        let mut stream = self.get_range(d, 0, None)?;
        let mut at = 0u64;
        loop {
            let next = wait(stream.next());
            match next {
                Some(chunk) => {
                    let chunk = chunk?;
                    dest.write_all_at(&chunk, at)?;
                    at += chunk.len() as u64;
                }
                None => break,
            }
        }
        Ok(at)
    }

    /// Bytes `[start, end)` of blob `d` (to its end without `end`), as a
    /// stream driven by the home's runtime: it may be polled from any
    /// executor, or none ([`wait`]). At most a few
    /// chunks are buffered ahead. An empty range is an empty stream, asked
    /// of nobody.
    pub fn get_range(
        &self,
        d: &Digest,
        start: u64,
        end: Option<u64>,
    ) -> io::Result<futures::stream::BoxStream<'static, io::Result<bytes::Bytes>>> {
        self.get_key_range(self.location.key(d), start, end)
    }

    /// Bytes `[start, end)` of the object `key`, as [`Self::get_range`].
    fn get_key_range(
        &self,
        key: Key,
        start: u64,
        end: Option<u64>,
    ) -> io::Result<futures::stream::BoxStream<'static, io::Result<bytes::Bytes>>> {
        if end.is_some_and(|end| end <= start) {
            return Ok(futures::stream::empty().boxed());
        }
        let range = match end {
            Some(end) => Some(GetRange::Bounded(start..end)),
            None if start > 0 => Some(GetRange::Offset(start)),
            None => None,
        };
        let options = GetOptions {
            range,
            ..GetOptions::default()
        };
        let store = self.store.clone();
        let loc = self.location.clone();
        let result = self.run(async move {
            store
                .get_opts(&key, options)
                .await
                .map_err(|e| error(&loc, "reading", e))
        })?;
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(DOWNLOAD_QUEUE);
        let loc = self.location.clone();
        self.runtime.get().spawn(async move {
            let mut body = result.into_stream();
            while let Some(chunk) = body.next().await {
                let failed = chunk.is_err();
                let chunk = chunk.map_err(|e| error(&loc, "reading", e));
                if tx.send(chunk).await.is_err() || failed {
                    break; // The reader is gone, or told of the error.
                }
            }
        });
        Ok(tokio_stream_of(rx))
    }

    /// The size of blob `d`, if stored (HEAD, remembered).
    pub fn size(&self, d: &Digest) -> io::Result<Option<u64>> {
        if let Some(&n) = self.sizes.lock().unwrap().get(d) {
            return Ok(Some(n));
        }
        Ok(self.head(d)?.map(|(size, _)| size))
    }

    /// Size and last modification of blob `d`, if stored (always asks).
    pub fn head(&self, d: &Digest) -> io::Result<Option<(u64, SystemTime)>> {
        let key = self.location.key(d);
        let store = self.store.clone();
        let loc = self.location.clone();
        let meta = self.run(async move {
            match store.head(&key).await {
                Ok(meta) => Ok(Some(meta)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(error(&loc, "looking up", e)),
            }
        })?;
        Ok(meta.map(|m| {
            self.remember(d, m.size);
            (m.size, SystemTime::from(m.last_modified))
        }))
    }

    /// A URL that reads blob `d` without credentials for `ttl`.
    pub fn presigned_get(&self, d: &Digest, ttl: Duration) -> io::Result<url::Url> {
        let key = self.location.key(d);
        let store = self.store.clone();
        let loc = self.location.clone();
        self.run(async move {
            store
                .signed_url(http::Method::GET, &key, ttl)
                .await
                .map_err(|e| error(&loc, "signing a URL", e))
        })
    }

    /// Whether the bucket answers (a listing of at most one key): for
    /// readiness checks.
    pub fn probe(&self) -> io::Result<()> {
        let prefix = Key::from(self.location.blobs_prefix().trim_end_matches('/'));
        let store = self.store.clone();
        let loc = self.location.clone();
        self.run(async move {
            let mut listing = store.list(Some(&prefix));
            match listing.next().await {
                Some(Err(e)) => Err(error(&loc, "listing", e)),
                _ => Ok(()),
            }
        })
    }

    /// Delete blob `d`; whether it was there.
    pub fn remove(&self, d: &Digest) -> io::Result<bool> {
        self.forget(d);
        let there = self.head(d)?.is_some();
        self.forget(d);
        if !there {
            return Ok(false);
        }
        self.delete(self.location.key(d))?;
        Ok(true)
    }

    /// Delete the object at `key` (gone already is fine).
    fn delete(&self, key: Key) -> io::Result<()> {
        let store = self.store.clone();
        let loc = self.location.clone();
        self.run(async move {
            match store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(error(&loc, "deleting", e)),
            }
        })
    }

    /// Up to `limit` stored blobs after `after`, in key order, each with
    /// the time of its last write: one page of the bucket's listing, so a
    /// walk of a million objects holds one page at a time.
    pub fn list_page(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> io::Result<Vec<(Digest, SystemTime)>> {
        let prefix = Key::from(format!("{}sha256", self.location.blobs_prefix()));
        let offset = after.map(|d| self.location.key(d));
        let store = self.store.clone();
        let loc = self.location.clone();
        let found = self.run(async move {
            let mut listing = match &offset {
                Some(o) => store.list_with_offset(Some(&prefix), o),
                None => store.list(Some(&prefix)),
            };
            let mut found = Vec::new();
            while found.len() < limit
                && let Some(meta) = listing.next().await
            {
                let meta = meta.map_err(|e| error(&loc, "listing", e))?;
                let parts: Vec<_> = meta.location.parts().collect();
                if parts.len() != prefix.parts().count() + 1 {
                    continue; // Deeper: not one of ours.
                }
                let name = parts.last().expect("one part at least");
                if let Ok(d) = format!("sha256:{}", name.as_ref()).parse::<Digest>() {
                    found.push((d, meta.size, SystemTime::from(meta.last_modified)));
                }
            }
            Ok(found)
        })?;
        let mut out = Vec::with_capacity(found.len());
        for (d, size, modified) in found {
            self.remember(&d, size);
            out.push((d, modified));
        }
        Ok(out)
    }

    /// Put small `bytes` (a document, an empty note) under `key`.
    pub fn put_small(&self, key: &AreaKey, bytes: Vec<u8>) -> io::Result<()> {
        self.put(self.location.area_key(key), bytes, "writing")
    }

    /// One PutObject of `bytes` under `key`; `doing` names it in an error.
    fn put(&self, key: Key, bytes: Vec<u8>, doing: &'static str) -> io::Result<()> {
        let store = self.store.clone();
        let loc = self.location.clone();
        self.run(async move {
            store
                .put(&key, PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|e| error(&loc, doing, e))
        })
    }

    /// The bytes of the small object `key`, if it exists; one larger than
    /// 1 MiB is refused unread.
    pub fn get_small(&self, key: &AreaKey) -> io::Result<Option<Vec<u8>>> {
        let key = self.location.area_key(key);
        let store = self.store.clone();
        let loc = self.location.clone();
        self.run(async move {
            let got = match store.get(&key).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(error(&loc, "reading", e)),
            };
            if got.meta.size > SMALL_MAX {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "object storage ({loc}): {key} has {} bytes, more than expected",
                        got.meta.size
                    ),
                ));
            }
            let bytes = got.bytes().await.map_err(|e| error(&loc, "reading", e))?;
            Ok(Some(bytes.to_vec()))
        })
    }

    /// Size and last modification of the object `key`, if it exists.
    pub fn head_key(&self, key: &AreaKey) -> io::Result<Option<(u64, SystemTime)>> {
        let key = self.location.area_key(key);
        let store = self.store.clone();
        let loc = self.location.clone();
        self.run(async move {
            match store.head(&key).await {
                Ok(m) => Ok(Some((m.size, SystemTime::from(m.last_modified)))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(error(&loc, "looking up", e)),
            }
        })
    }

    /// Every object under `prefix` (at any depth), sorted by key.
    pub fn list_area(&self, prefix: &AreaKey) -> io::Result<Vec<Listed>> {
        let key = self.location.area_key(prefix);
        let strip = match self.location.prefix() {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let store = self.store.clone();
        let loc = self.location.clone();
        let mut found = self.run(async move {
            let mut listing = store.list(Some(&key));
            let mut found = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| error(&loc, "listing", e))?;
                if let Some(rel) = meta.location.as_ref().strip_prefix(&strip) {
                    found.push(Listed {
                        key: AreaKey(rel.to_string()),
                        size: meta.size,
                        modified: SystemTime::from(meta.last_modified),
                    });
                }
            }
            Ok(found)
        })?;
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// Delete the object `key` (gone already is fine).
    pub fn delete_key(&self, key: &AreaKey) -> io::Result<()> {
        self.delete(self.location.area_key(key))
    }

    /// Store the first `len` bytes of `file` under `key`: one PutObject up
    /// to [`PART_SIZE`], a multipart upload beyond, aborted on any error so
    /// nothing is left under `key`.
    pub fn upload_to(&self, key: &AreaKey, file: &std::fs::File, len: u64) -> io::Result<()> {
        self.upload_key(self.location.area_key(key), file, len)
    }

    /// The bytes of the object `key`, streamed as [`Self::get_range`]
    /// streams a blob's. Not found is an error of kind `NotFound`.
    pub fn stream_key(
        &self,
        key: &AreaKey,
    ) -> io::Result<futures::stream::BoxStream<'static, io::Result<bytes::Bytes>>> {
        self.get_key_range(self.location.area_key(key), 0, None)
    }

    /// Copy the object `from` (a session's chunk of `len` bytes, which the
    /// caller knows hash to `d`) to blob `d`'s key, inside the bucket (one
    /// CopyObject: at most [`COPY_MAX`] bytes).
    pub fn copy_to_blob(&self, from: &AreaKey, d: &Digest, len: u64) -> io::Result<()> {
        if len > COPY_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("object storage: {from} is too large to copy ({len} bytes)"),
            ));
        }
        let from = self.location.area_key(from);
        let to = self.location.key(d);
        let store = self.store.clone();
        let loc = self.location.clone();
        self.forget(d);
        self.run(async move {
            store
                .copy(&from, &to)
                .await
                .map_err(|e| error(&loc, "copying", e))
        })?;
        self.remember(d, len);
        Ok(())
    }

    /// Put `bytes` under `d`'s key unchecked: for tests that tamper with
    /// the bucket.
    #[cfg(any(test, feature = "testing"))]
    pub fn put_unchecked(&self, d: &Digest, bytes: Vec<u8>) -> io::Result<()> {
        self.forget(d);
        self.put(self.location.key(d), bytes, "uploading")
    }
}

/// Wait for `fut` on this thread, whatever thread it is, outside tokio's
/// cooperative budget. On a thread inside a runtime's context (an async
/// task calling the store directly), a spent budget makes tokio's channels
/// and join handles answer `Pending` and leave their wake-up to a scheduler
/// that this wait keeps from running: the thread would wait forever.
pub fn wait<F: Future>(fut: F) -> F::Output {
    futures::executor::block_on(tokio::task::unconstrained(fut))
}

fn error(location: &ObjectLocation, doing: &str, e: object_store::Error) -> io::Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    let hint = match kind {
        io::ErrorKind::NotFound => "",
        io::ErrorKind::PermissionDenied => {
            "; check the access key and secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) \
             and the bucket's policy"
        }
        _ => {
            "; check that the endpoint (AWS_ENDPOINT_URL) is reachable, the credentials \
             are right and the bucket exists"
        }
    };
    io::Error::new(
        kind,
        format!("object storage ({location}): {doing}: {e}{hint}"),
    )
}

/// `len` bytes of `file` from `at`, read in full.
fn read_piece(file: &std::fs::File, at: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, at).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ended before byte {} of the blob", at + len),
            )
        } else {
            e
        }
    })?;
    Ok(buf)
}

/// A stream of what a channel receives.
fn tokio_stream_of<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> futures::stream::BoxStream<'static, T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) }).boxed()
}

#[cfg(test)]
pub(crate) mod tests;
