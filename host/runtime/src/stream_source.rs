//! A source whose bytes are still arriving: the body of a streaming import
//! (`POST /api/v1/repositories/{id}/import` with the archive as the body).
//!
//! The plugin sees an ordinary source: `read` and `store-range` anywhere in
//! it. Behind that, each byte is written once. A `store-range` that reaches
//! past the bytes received so far takes the bytes still to come straight
//! from the body into the blob (hashed on the plugin's thread, written by a
//! helper), so a layer is never written twice; everything else (tar
//! headers, small documents, bytes skipped over) goes to a sparse spool file
//! at its own offset. A `read` of a range that went into a blob reads that
//! blob. A read or store past what has arrived waits for the body.

use bytes::Bytes;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use wharf_core::digest::Digest;
use wharf_store::blobs::leases::Holder;
use wharf_store::blobs::{BlobError, BlobStore};

/// How long the body may send nothing before the import gives up on it.
const STALL_LIMIT: Duration = Duration::from_secs(120);
/// How often a wait for the body looks at the call's cancel flag and deadline.
const WAIT_SLICE: Duration = Duration::from_millis(250);
/// Bytes moved per step when copying already received bytes into a blob.
const COPY_CHUNK: u64 = 1 << 20;

/// Why the source cannot give the bytes asked for.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(
        "the upload ended after {got} of its {len} bytes (truncated or interrupted); nothing was imported"
    )]
    Ended { got: u64, len: u64 },
    #[error("the upload failed after {got} bytes: {reason}")]
    Broken { got: u64, reason: String },
    #[error("the upload sent nothing for {0:?}; giving up")]
    Stalled(Duration),
    #[error("stopped: {0}")]
    Interrupted(&'static str),
    #[error(
        "bytes {offset}..{end} of the upload went into a blob that was not stored (an earlier \
         error) and can no longer be read"
    )]
    Lost { offset: u64, end: u64 },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("spool file: {0}")]
    Io(#[from] std::io::Error),
}

/// A range of the body stored straight into a blob.
#[derive(Debug, Clone)]
struct Diverted {
    offset: u64,
    len: u64,
    /// `None` when the blob was not stored (wrong digest, a broken body, a
    /// write error): the bytes are gone.
    blob: Option<Digest>,
    /// Where in the blob the range starts.
    blob_offset: u64,
}

/// Says whether the call waiting for the body was canceled or ran out of
/// time, and which.
pub type Stop<'a> = &'a dyn Fn() -> Option<&'static str>;

/// The body's sending half is fed by the HTTP handler, chunk by chunk.
pub type BodySender = mpsc::Sender<Result<Bytes, String>>;

pub struct StreamSource {
    /// The declared length (the request's `Content-Length`).
    len: u64,
    body: mpsc::Receiver<Result<Bytes, String>>,
    rt: tokio::runtime::Handle,
    /// Received, not yet placed; starts at offset `placed`.
    pending: Bytes,
    /// Bytes placed so far (spooled or diverted): the stream's position.
    placed: u64,
    /// Sparse: holds every placed byte that was not diverted, at its offset.
    spool: std::fs::File,
    /// Diverted ranges, in stream order.
    diverted: Vec<Diverted>,
    blobs: Arc<BlobStore>,
}

impl StreamSource {
    /// A source of `len` bytes fed through the returned sender; the spool
    /// file is an unlinked file in `spool_dir`.
    pub fn new(
        len: u64,
        blobs: Arc<BlobStore>,
        spool_dir: &std::path::Path,
        rt: tokio::runtime::Handle,
    ) -> std::io::Result<(Self, BodySender)> {
        // 16 network chunks (a few hundred KiB each) in flight: enough to
        // keep the plugin's thread busy, few enough to keep memory flat.
        let (tx, rx) = mpsc::channel(16);
        let source = StreamSource {
            len,
            body: rx,
            rt,
            pending: Bytes::new(),
            placed: 0,
            spool: tempfile::tempfile_in(spool_dir)?,
            diverted: Vec::new(),
            blobs,
        };
        Ok((source, tx))
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How far the body has been consumed.
    #[cfg(test)]
    pub fn position(&self) -> u64 {
        self.placed
    }

    /// The next at most `max` bytes of the body, waiting for them; `stop`
    /// says whether the call was canceled or ran out of time.
    fn next(&mut self, max: u64, stop: Stop<'_>) -> Result<Bytes, StreamError> {
        let since = Instant::now();
        while self.pending.is_empty() {
            if self.placed >= self.len {
                return Ok(Bytes::new());
            }
            if let Some(why) = stop() {
                return Err(StreamError::Interrupted(why));
            }
            let got = match self.body.try_recv() {
                Ok(chunk) => Some(chunk),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // The timer is made inside the runtime: this thread may
                    // not be one of its own.
                    let (rt, body) = (&self.rt, &mut self.body);
                    let wait =
                        rt.block_on(async { tokio::time::timeout(WAIT_SLICE, body.recv()).await });
                    match wait {
                        Ok(chunk) => chunk,
                        Err(_) if since.elapsed() > STALL_LIMIT => {
                            return Err(StreamError::Stalled(STALL_LIMIT));
                        }
                        Err(_) => continue,
                    }
                }
            };
            match got {
                Some(Ok(chunk)) => self.pending = chunk,
                Some(Err(reason)) => {
                    return Err(StreamError::Broken {
                        got: self.placed,
                        reason,
                    });
                }
                None => {
                    return Err(StreamError::Ended {
                        got: self.placed,
                        len: self.len,
                    });
                }
            }
        }
        let n = (self.pending.len() as u64)
            .min(max)
            .min(self.len - self.placed) as usize;
        let out = self.pending.split_to(n);
        self.placed += n as u64;
        Ok(out)
    }

    /// Spool the body up to `end`.
    fn spool_to(&mut self, end: u64, stop: Stop<'_>) -> Result<(), StreamError> {
        while self.placed < end {
            let at = self.placed;
            let chunk = self.next(end - at, stop)?;
            if chunk.is_empty() {
                break;
            }
            self.spool.write_all_at(&chunk, at)?;
        }
        Ok(())
    }

    /// Bytes `[offset, offset + len)`, clamped to the source, waiting for
    /// the body as needed.
    pub fn read(&mut self, offset: u64, len: u64, stop: Stop<'_>) -> Result<Vec<u8>, StreamError> {
        if offset >= self.len {
            return Ok(Vec::new());
        }
        let end = offset.saturating_add(len).min(self.len);
        self.spool_to(end, stop)?;
        let mut out = vec![0u8; (end - offset) as usize];
        self.read_placed(offset, &mut out)?;
        Ok(out)
    }

    /// Fill `buf` from placed bytes at `offset`: from the spool, or from the
    /// blob a range was diverted into.
    fn read_placed(&self, offset: u64, buf: &mut [u8]) -> Result<(), StreamError> {
        let mut at = offset;
        let end = offset + buf.len() as u64;
        // Diverted ranges are sorted and disjoint: find the first that ends after `at`.
        let mut i = self.diverted.partition_point(|d| d.offset + d.len <= at);
        while at < end {
            let out = &mut buf[(at - offset) as usize..];
            match self.diverted.get(i) {
                Some(d) if d.offset <= at => {
                    let n = (d.offset + d.len).min(end) - at;
                    let Some(blob) = &d.blob else {
                        return Err(StreamError::Lost {
                            offset: d.offset,
                            end: d.offset + d.len,
                        });
                    };
                    let file = self.blobs.open_blob(blob)?;
                    file.read_exact_at(&mut out[..n as usize], d.blob_offset + (at - d.offset))?;
                    at += n;
                    i += 1;
                }
                next => {
                    let stop = next.map_or(end, |d| d.offset.min(end));
                    let n = stop - at;
                    self.spool.read_exact_at(&mut out[..n as usize], at)?;
                    at += n;
                }
            }
        }
        Ok(())
    }

    /// Store bytes `[offset, offset + len)` as a blob. Bytes already
    /// received are copied; the rest come straight from the body.
    pub fn store_range(
        &mut self,
        offset: u64,
        len: u64,
        expect: Option<&Digest>,
        stop: Stop<'_>,
        holder: &Holder,
    ) -> Result<Digest, StreamError> {
        let end = offset + len;
        debug_assert!(end <= self.len, "the caller checks the range");
        let blobs = self.blobs.clone();
        // Already stored: the bytes still have to prove they match, but
        // need not be written. Leased, so that it stays stored until the
        // import commits (if leasing fails, it is written again).
        let known = expect.filter(|d| blobs.lease(d, holder).unwrap_or(false));
        let mut writer = match known {
            Some(_) => None,
            None => Some(blobs.pipelined_writer(len)?),
        };
        let mut hasher = known.map(|_| <sha2::Sha256 as sha2::Digest>::new());
        let mut feed = |bytes: Bytes| -> Result<(), StreamError> {
            match (&mut writer, &mut hasher) {
                (Some(w), _) => w.push(bytes)?,
                (None, Some(h)) => sha2::Digest::update(h, &bytes),
                (None, None) => unreachable!("one of the two is set"),
            }
            Ok(())
        };
        // Bytes behind the stream's position: copy them.
        let mut at = offset;
        while at < end.min(self.placed) {
            let n = (end.min(self.placed) - at).min(COPY_CHUNK);
            let mut buf = vec![0u8; n as usize];
            self.read_placed(at, &mut buf)?;
            feed(buf.into())?;
            at += n;
        }
        // Bytes still to come: skip to the range, then take them from the body.
        if self.placed < offset {
            self.spool_to(offset, stop)?;
        }
        let divert_from = self.placed.max(offset);
        let mut taken = Ok(());
        while self.placed < end {
            taken = self.next(end - self.placed, stop).and_then(&mut feed);
            if taken.is_err() {
                break;
            }
        }
        let result = match (taken, writer, hasher) {
            (Err(e), _, _) => Err(e),
            (Ok(()), Some(w), _) => w
                .finish(expect, holder)
                .map(|(d, _)| d)
                .map_err(StreamError::from),
            (Ok(()), None, Some(h)) => {
                let actual = Digest::from_hasher(h);
                let expected = known.expect("hash-only when the blob is known");
                if &actual == expected {
                    Ok(actual)
                } else {
                    Err(BlobError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    }
                    .into())
                }
            }
            (Ok(()), None, None) => unreachable!("one of the two is set"),
        };
        // Whatever happened, the bytes taken from the body are accounted
        // for: in the blob, or lost.
        if divert_from < self.placed {
            self.diverted.push(Diverted {
                offset: divert_from,
                len: self.placed - divert_from,
                blob: result.as_ref().ok().cloned(),
                blob_offset: divert_from - offset,
            });
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_stop() -> Option<&'static str> {
        None
    }

    /// A source over `data` sent in `chunk`-byte pieces by a tokio task,
    /// optionally cut short after `send` bytes.
    fn source(
        rt: &tokio::runtime::Runtime,
        dir: &std::path::Path,
        data: Vec<u8>,
        chunk: usize,
        send: usize,
    ) -> (StreamSource, Arc<BlobStore>) {
        let blobs = Arc::new(BlobStore::open(&dir.join("blobs")).unwrap());
        let (src, tx) =
            StreamSource::new(data.len() as u64, blobs.clone(), dir, rt.handle().clone()).unwrap();
        rt.spawn(async move {
            for piece in data[..send].chunks(chunk) {
                if tx.send(Ok(Bytes::copy_from_slice(piece))).await.is_err() {
                    return;
                }
            }
        });
        (src, blobs)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn reads_and_stores_anywhere_writing_each_byte_once() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bytes = data(10 << 20);
        let (mut src, blobs) = source(&rt, dir.path(), bytes.clone(), 65536, bytes.len());
        // A header read, then a range stored as it arrives.
        assert_eq!(src.read(0, 512, &no_stop).unwrap(), &bytes[..512]);
        let d = src
            .store_range(512, 6 << 20, None, &no_stop, &Holder::new())
            .unwrap();
        assert_eq!(d, Digest::of(&bytes[512..512 + (6 << 20)]));
        assert_eq!(src.position(), 512 + (6 << 20));
        // A read spanning spool, blob and bytes still to come.
        let (a, b) = (100, (7 << 20) as u64);
        assert_eq!(
            src.read(a, b - a, &no_stop).unwrap(),
            &bytes[a as usize..b as usize]
        );
        // A range partly behind the position, with the right expectation.
        let want = Digest::of(&bytes[(6 << 20)..(9 << 20)]);
        let got = src
            .store_range(6 << 20, 3 << 20, Some(&want), &no_stop, &Holder::new())
            .unwrap();
        assert_eq!(got, want);
        // Already stored: only hashed, and still checked.
        assert_eq!(
            src.store_range(512, 6 << 20, Some(&d), &no_stop, &Holder::new())
                .unwrap(),
            d
        );
        assert_eq!(blobs.list().unwrap().len(), 2);
        // The diverted bytes were never spooled: the spool is sparse there.
        use std::os::unix::fs::MetadataExt;
        let blocks = src.spool.metadata().unwrap().blocks() * 512;
        assert!(blocks < (4 << 20), "spool holds {blocks} bytes");
    }

    #[test]
    fn a_wrong_digest_stores_nothing_and_the_bytes_are_reported_lost() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bytes = data(6 << 20);
        let (mut src, blobs) = source(&rt, dir.path(), bytes.clone(), 1 << 20, bytes.len());
        let wrong = Digest::of(b"not these bytes");
        let err = src
            .store_range(0, 5 << 20, Some(&wrong), &no_stop, &Holder::new())
            .unwrap_err();
        assert!(
            matches!(err, StreamError::Blob(BlobError::DigestMismatch { .. })),
            "{err}"
        );
        assert!(blobs.list().unwrap().is_empty());
        let err = src.read(10, 10, &no_stop).unwrap_err();
        assert!(matches!(err, StreamError::Lost { .. }), "{err}");
        // Bytes after the refused range are still fine.
        assert_eq!(
            src.read(5 << 20, 10, &no_stop).unwrap(),
            &bytes[5 << 20..(5 << 20) + 10]
        );
    }

    #[test]
    fn a_short_body_ends_with_a_clear_error() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bytes = data(1 << 20);
        let (mut src, blobs) = source(&rt, dir.path(), bytes, 4096, 300_000);
        let err = src
            .store_range(0, 1 << 20, None, &no_stop, &Holder::new())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("ended after 300000 of its 1048576 bytes"),
            "{err}"
        );
        assert!(blobs.list().unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("blobs/tmp"))
                .unwrap()
                .count(),
            0
        );
        // The bytes taken before the end are accounted for as lost, not
        // read back as zeros.
        let err = src.read(0, 10, &no_stop).unwrap_err();
        assert!(matches!(err, StreamError::Lost { .. }), "{err}");
    }

    #[test]
    fn a_cancel_stops_a_wait() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let blobs = Arc::new(BlobStore::open(&dir.path().join("blobs")).unwrap());
        let (mut src, _tx) =
            StreamSource::new(100, blobs, dir.path(), rt.handle().clone()).unwrap();
        let err = src.read(0, 10, &|| Some("canceled")).unwrap_err();
        assert!(matches!(err, StreamError::Interrupted("canceled")));
    }
}
