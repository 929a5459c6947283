//! Blob bodies that never pass through this process on a plain-TCP
//! listener: nginx's `sendfile on`.
//!
//! On a plain-TCP connection the socket is a [`SendfileStream`], and a
//! request answered on it runs inside [`answering`]. There [`file_body`]
//! maps a blob file into memory and makes its body of slices of that
//! mapping, each registered here with the file and offset it shows; a write
//! that starts in a registered slice becomes `sendfile(2)` from the file at
//! the slice's offset, so the bytes go from the page cache to the socket
//! without being read, and the mapping itself is never touched. On a TLS
//! connection, which must encrypt the bytes, [`file_body`] streams the file
//! through the blocking pool instead, as it does when a file cannot be
//! mapped: a read error there (a blob removed under a shared NFS data
//! directory, a failing disk) ends one response, where a fault on a mapping
//! would end the process.
//!
//! Only blob files are mapped: they are written aside and renamed into
//! place, never changed after, and removed by unlinking, which leaves a
//! mapped file whole; a file that ends early makes `sendfile` end the
//! response early. Like nginx without `aio threads`, `sendfile` reads a
//! file that is not in the page cache on the calling thread: the
//! connection's event loop, whose other connections wait meanwhile.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncSeekExt as _, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A body frame's size: the slices a mapped body is sent in.
const FRAME: usize = 16 * 1024 * 1024;
/// A read's size when a body is streamed instead.
const STREAM_CHUNK: usize = 256 * 1024;

tokio::task_local! {
    /// Whether the request being answered came on a [`SendfileStream`].
    static ON_SENDFILE_SOCKET: bool;
}

/// Answer a request with `answer`, which came on a [`SendfileStream`] when
/// `sendfile` says so.
pub fn answering<F: std::future::Future>(
    sendfile: bool,
    answer: F,
) -> impl std::future::Future<Output = F::Output> {
    ON_SENDFILE_SOCKET.scope(sendfile, answer)
}

/// The mapped regions alive, by start address: (length, the file).
static REGIONS: RwLock<BTreeMap<usize, (usize, Arc<File>)>> = RwLock::new(BTreeMap::new());
/// How many there are, so that writes skip the lookup when none is.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// A blob file mapped whole; registered while it lives.
struct Mapped {
    map: memmap2::Mmap,
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        REGIONS
            .write()
            .unwrap()
            .remove(&(self.map.as_ptr() as usize));
        LIVE.fetch_sub(1, Ordering::Release);
    }
}

/// Bytes `start..end` of the blob file `file` as a body: frames of mapped
/// memory, which the [`SendfileStream`] the request came on sends with
/// `sendfile(2)`; else (TLS, or a file that cannot be mapped) reads.
pub async fn file_body(file: File, start: u64, end: u64) -> io::Result<axum::body::Body> {
    if start >= end {
        return Ok(axum::body::Body::empty());
    }
    let file = if ON_SENDFILE_SOCKET.try_with(|on| *on).unwrap_or(false) {
        let file = Arc::new(file);
        match mapped_body(&file, start, end) {
            Ok(body) => return Ok(body),
            Err(e) => {
                tracing::debug!("a blob file is streamed, not mapped: {e}");
                // Not registered: this is the only handle.
                Arc::into_inner(file).expect("only registered once mapped")
            }
        }
    } else {
        file
    };
    let mut file = tokio::fs::File::from_std(file);
    if start > 0 {
        file.seek(io::SeekFrom::Start(start)).await?;
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(end - start), STREAM_CHUNK);
    Ok(axum::body::Body::from_stream(stream))
}

/// [`file_body`] of mapped memory.
fn mapped_body(file: &Arc<File>, start: u64, end: u64) -> io::Result<axum::body::Body> {
    // SAFETY: a blob file is never written after it is in place (module
    // docs); the mapping is read-only, lives as long as its slices, and
    // only sendfile(2) reads what it maps.
    let map = unsafe { memmap2::MmapOptions::new().map(&**file)? };
    if (map.len() as u64) < end {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the blob file is shorter than its size",
        ));
    }
    let file = file.clone();
    let (base, len) = (map.as_ptr() as usize, map.len());
    REGIONS.write().unwrap().insert(base, (len, file));
    LIVE.fetch_add(1, Ordering::Release);
    let whole = Bytes::from_owner(Mapped { map });
    let (start, end) = (start as usize, end as usize);
    let frames = (start..end)
        .step_by(FRAME)
        .map(move |at| Ok::<_, io::Error>(whole.slice(at..end.min(at + FRAME))));
    Ok(axum::body::Body::from_stream(futures::stream::iter(frames)))
}

/// The file and offset `buf` starts at, when it lies in a mapped blob, and
/// how many of its bytes do.
fn mapped(buf: &[u8]) -> Option<(Arc<File>, u64, usize)> {
    if buf.is_empty() || LIVE.load(Ordering::Acquire) == 0 {
        return None;
    }
    let at = buf.as_ptr() as usize;
    let regions = REGIONS.read().unwrap();
    let (&base, (len, file)) = regions.range(..=at).next_back()?;
    let offset = at - base;
    (offset < *len).then(|| (file.clone(), offset as u64, buf.len().min(len - offset)))
}

/// A plain-TCP socket that sends mapped blob slices with `sendfile(2)`.
pub struct SendfileStream {
    tcp: TcpStream,
}

impl SendfileStream {
    pub fn new(tcp: TcpStream) -> Self {
        SendfileStream { tcp }
    }

    /// Send `len` bytes of `file` from `offset`, as much as the socket takes.
    fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        file: &File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let (sock, src): (RawFd, RawFd) = (self.tcp.as_raw_fd(), file.as_raw_fd());
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let sent = self.tcp.try_io(Interest::WRITABLE, || {
                let mut off = offset as libc::off_t;
                // SAFETY: both descriptors are open for the call (the file
                // is held by `file`, the socket by `self`).
                let n = unsafe { libc::sendfile(sock, src, &mut off, len) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match sent {
                // The socket is full after all: wait for it again; or a
                // signal came first: try again.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the blob file ended before its mapping (changed on disk?)",
                    )));
                }
                Ok(n) => {
                    crate::metrics::sent_by_sendfile(n);
                    return Poll::Ready(Ok(n));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match mapped(buf) {
            Some((file, offset, len)) => self.poll_sendfile(cx, &file, offset, len),
            None => Pin::new(&mut self.tcp).poll_write(cx, buf),
        }
    }

    /// The slices before the first mapped one go out with one `writev`;
    /// a mapped one first goes out with `sendfile`.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs
            .iter()
            .enumerate()
            .find_map(|(i, b)| Some((i, mapped(b)?)));
        match first {
            Some((0, (file, offset, len))) => self.poll_sendfile(cx, &file, offset, len),
            Some((k, _)) => Pin::new(&mut self.tcp).poll_write_vectored(cx, &bufs[..k]),
            None => Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
