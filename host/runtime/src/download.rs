//! One blob of `fetch-blobs`, from a feed into the blob store, bounded:
//!
//! - **by size**: no more than the descriptor's size is read (without one,
//!   the server's `--max-blob-size`); a `Content-Length` or a body of
//!   another length is refused, and nothing is stored;
//! - **by time**: a feed that sends nothing for [`Limits::idle`] (before the
//!   answer or between two chunks of it) is given up on;
//! - **retried**: a 5xx or 429 answer, a connection error or a stall is tried
//!   again, [`Limits::tries`] attempts in all, with exponential backoff;
//!   a `Retry-After` up to [`Limits::max_retry_after`] is waited for, a
//!   longer one fails at once;
//! - **canceled**: the caller drops the future ([`unless_stopped`] polls the
//!   task's cancel flag and deadline every 100 ms); the temp file goes with
//!   the dropped writer and the connection is closed.

use crate::bindings::wharf::plugin::types;
use crate::err;
use crate::outbound::{describe_request, is_refusal};
use backon::{ExponentialBuilder, Retryable};
use std::io::Write;
use std::time::{Duration, SystemTime};
use wharf_core::digest::Digest;
use wharf_store::blobs::leases::Holder;
use wharf_store::blobs::{BlobError, BlobStore};

/// How long, how often, how patiently.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// No byte for this long ends an attempt.
    pub idle: Duration,
    /// Attempts in all (the first and the retries).
    pub tries: usize,
    /// Wait before the first retry; doubles after each.
    pub first_backoff: Duration,
    /// The longest `Retry-After` waited for.
    pub max_retry_after: Duration,
}

pub const LIMITS: Limits = Limits {
    idle: Duration::from_secs(60),
    tries: 3,
    first_backoff: Duration::from_millis(500),
    max_retry_after: Duration::from_secs(30),
};

/// How often a transfer looks at the cancel flag.
pub const STOP_POLL: Duration = Duration::from_millis(100);

/// How many bytes a download may bring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this many: the descriptor's size.
    Exactly(u64),
    /// No size given: at most this many (the server's maximum blob size).
    AtMost(u64),
}

impl Expect {
    fn bound(self) -> u64 {
        match self {
            Expect::Exactly(n) | Expect::AtMost(n) => n,
        }
    }
}

/// Run `fut` unless `stop` says why not first (looked at every
/// [`STOP_POLL`]); a stopped `fut` is dropped.
pub async fn unless_stopped<T>(
    fut: impl Future<Output = T>,
    stop: impl Fn() -> Option<&'static str>,
) -> Result<T, &'static str> {
    let watch = async {
        loop {
            if let Some(why) = stop() {
                return why;
            }
            tokio::time::sleep(STOP_POLL).await;
        }
    };
    tokio::select! {
        biased;
        why = watch => Err(why),
        out = fut => Ok(out),
    }
}

/// Why one attempt failed, and whether another may do better.
struct Failure {
    error: types::Error,
    retry: bool,
    /// What the feed asked to wait (`Retry-After`).
    retry_after: Option<Duration>,
}

impl Failure {
    fn fatal(error: types::Error) -> Self {
        Failure {
            error,
            retry: false,
            retry_after: None,
        }
    }

    fn transient(error: types::Error) -> Self {
        Failure {
            error,
            retry: true,
            retry_after: None,
        }
    }
}

/// Download `digest` with `req` (cloned for each attempt) into `blobs`;
/// returns the bytes stored.
pub(crate) async fn blob(
    blobs: &BlobStore,
    req: &reqwest::RequestBuilder,
    digest: &Digest,
    expect: Expect,
    limits: &Limits,
    holder: &Holder,
) -> Result<u64, types::Error> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(limits.first_backoff)
        .with_max_delay(limits.max_retry_after)
        .with_max_times(limits.tries.saturating_sub(1))
        .with_jitter();
    let max_wait = limits.max_retry_after;
    let attempt = || async {
        let req = req
            .try_clone()
            .ok_or_else(|| Failure::fatal(err("fetch", "the request cannot be repeated")))?;
        once(blobs, req, digest, expect, limits, holder).await
    };
    attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|f: &Failure| f.retry && f.retry_after.is_none_or(|d| d <= max_wait))
        .adjust(|f: &Failure, next| next.map(|d| f.retry_after.map_or(d, |asked| asked.max(d))))
        .notify(|f: &Failure, wait| {
            tracing::info!(%digest, "{}; trying again in {wait:.1?}", f.error.message);
        })
        .await
        .map_err(|f| match f.retry_after {
            Some(asked) if asked > max_wait => err(
                "fetch",
                format!(
                    "{}, and asked to retry after {}s (more than the {}s waited for)",
                    f.error.message,
                    asked.as_secs(),
                    max_wait.as_secs()
                ),
            ),
            _ => f.error,
        })
}

/// One attempt.
async fn once(
    blobs: &BlobStore,
    req: reqwest::RequestBuilder,
    digest: &Digest,
    expect: Expect,
    limits: &Limits,
    holder: &Holder,
) -> Result<u64, Failure> {
    let idle = limits.idle;
    let silent = |after: &str| {
        Failure::transient(err(
            "fetch",
            format!(
                "{digest}: the feed sent nothing for {}s {after}",
                idle.as_secs_f32()
            ),
        ))
    };
    let mut resp = match tokio::time::timeout(idle, req.send()).await {
        Err(_) => return Err(silent("when asked")),
        Ok(Err(e)) => {
            // A refused address (the outbound policy) or a bad request is
            // no better the second time; connections and timeouts may be.
            let retry = (e.is_connect() || e.is_timeout() || e.is_request())
                && !e.is_builder()
                && !is_refusal(&e);
            let error = err("fetch", format!("{digest}: {}", describe_request(e)));
            return Err(Failure {
                error,
                retry,
                retry_after: None,
            });
        }
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    // The status and its reason only: an upstream's error body never
    // reaches the task record.
    if !status.is_success() {
        let retry = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        return Err(Failure {
            error: err("fetch", format!("{digest}: upstream answered {status}")),
            retry,
            retry_after: retry.then(|| retry_after(resp.headers())).flatten(),
        });
    }
    if let Some(len) = resp.content_length() {
        match expect {
            Expect::Exactly(n) if len != n => {
                return Err(Failure::fatal(err(
                    "size-mismatch",
                    format!(
                        "{digest}: the feed announced {len} bytes, its descriptor gives {n}; nothing was stored"
                    ),
                )));
            }
            Expect::AtMost(max) if len > max => {
                return Err(Failure::fatal(too_large(digest, expect)));
            }
            _ => {}
        }
    }
    let mut w = blobs
        .writer()
        .map_err(|e| Failure::fatal(err("io", e.to_string())))?;
    let mut got = 0u64;
    loop {
        let chunk = match tokio::time::timeout(idle, resp.chunk()).await {
            Err(_) => return Err(silent(&format!("after {got} bytes"))),
            Ok(Err(e)) => {
                return Err(Failure::transient(err(
                    "fetch",
                    format!("{digest}: after {got} bytes: {}", describe_request(e)),
                )));
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        got += chunk.len() as u64;
        if got > expect.bound() {
            // Dropping the writer removes its temp file; dropping the
            // response closes the connection.
            return Err(Failure::fatal(too_large(digest, expect)));
        }
        w.write_all(&chunk)
            .map_err(|e| Failure::fatal(err("io", e.to_string())))?;
    }
    if let Expect::Exactly(n) = expect
        && got != n
    {
        return Err(Failure::fatal(err(
            "size-mismatch",
            format!(
                "{digest}: the feed sent {got} bytes, its descriptor gives {n}; nothing was stored"
            ),
        )));
    }
    let (_, n) = w.finish(Some(digest), holder).map_err(|e| {
        Failure::fatal(match e {
            BlobError::DigestMismatch { expected, actual } => err(
                "digest-mismatch",
                format!("upstream served wrong bytes for {expected} (they hash to {actual}); nothing was stored"),
            ),
            e => err("io", e.to_string()),
        })
    })?;
    Ok(n)
}

fn too_large(digest: &Digest, expect: Expect) -> types::Error {
    let why = match expect {
        Expect::Exactly(n) => format!("the {n} bytes its descriptor gives"),
        Expect::AtMost(n) => {
            format!("{n} bytes, this server's maximum blob size (--max-blob-size)")
        }
    };
    err(
        "too-large",
        format!("{digest}: the feed sent more than {why}; cut off, nothing was stored"),
    )
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// How the fake feed answers one request.
    #[derive(Clone)]
    enum Reply {
        /// A whole answer, written as is.
        Raw(String),
        /// Headers without a length, then bytes until the client hangs up.
        Endless,
        /// Headers, then silence.
        Stall,
    }

    /// A feed on loopback answering its n-th request with `replies[n]` (the
    /// last one again after that); counts requests.
    fn feed(replies: Vec<Reply>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/blob", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(16) {
                let Ok(mut conn) = conn else { break };
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let reply = replies[n.min(replies.len() - 1)].clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf);
                    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
                    match reply {
                        Reply::Raw(s) => {
                            let _ = conn.write_all(s.as_bytes());
                        }
                        Reply::Endless => {
                            let _ = conn.write_all(head.as_bytes());
                            let chunk = vec![b'x'; 64 << 10];
                            // Bounded: 1 GiB, far past any limit here.
                            for _ in 0..(1 << 14) {
                                if conn.write_all(&chunk).is_err() {
                                    break;
                                }
                            }
                        }
                        Reply::Stall => {
                            let _ = conn.write_all(head.as_bytes());
                            std::thread::sleep(Duration::from_secs(10));
                        }
                    }
                });
            }
        });
        (url, count)
    }

    fn ok(body: &str) -> Reply {
        Reply::Raw(format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
    }

    fn status(line: &str, extra: &str) -> Reply {
        Reply::Raw(format!(
            "HTTP/1.1 {line}\r\nContent-Length: 0\r\n{extra}Connection: close\r\n\r\n"
        ))
    }

    const FAST: Limits = Limits {
        idle: Duration::from_millis(300),
        tries: 3,
        first_backoff: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(2),
    };

    struct Run {
        result: Result<u64, types::Error>,
        requests: usize,
        temp_files: usize,
        took: Duration,
    }

    fn run(replies: Vec<Reply>, body: &str, expect: Option<Expect>, limits: Limits) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let digest = Digest::of(body.as_bytes());
        let expect = expect.unwrap_or(Expect::Exactly(body.len() as u64));
        let (url, count) = feed(replies);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let start = Instant::now();
        let result = rt.block_on(async {
            let req = reqwest::Client::new().get(&url);
            blob(&store, &req, &digest, expect, &limits, &Holder::new()).await
        });
        Run {
            result,
            requests: count.load(Ordering::SeqCst),
            temp_files: std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            took: start.elapsed(),
        }
    }

    #[test]
    fn stores_exactly_the_described_bytes() {
        let r = run(vec![ok("hello")], "hello", None, FAST);
        assert_eq!(r.result.unwrap(), 5);
        assert_eq!(r.requests, 1);
    }

    #[test]
    fn an_endless_body_is_cut_off_at_the_descriptors_size() {
        let r = run(vec![Reply::Endless], "hello", None, FAST);
        let e = r.result.unwrap_err();
        assert_eq!(e.code, "too-large", "{}", e.message);
        assert!(
            e.message
                .contains("more than the 5 bytes its descriptor gives"),
            "{}",
            e.message
        );
        assert_eq!(r.requests, 1, "a body too large is not asked for again");
        assert_eq!(r.temp_files, 0);
        // Without a size, the server's maximum bounds it.
        let r = run(
            vec![Reply::Endless],
            "hello",
            Some(Expect::AtMost(1 << 20)),
            FAST,
        );
        let e = r.result.unwrap_err();
        assert!(e.message.contains("--max-blob-size"), "{}", e.message);
        assert_eq!(r.temp_files, 0);
    }

    #[test]
    fn a_length_other_than_the_descriptors_is_refused() {
        // Announced: refused before a byte is read.
        let r = run(vec![ok("hello!")], "hello", None, FAST);
        let e = r.result.unwrap_err();
        assert_eq!(e.code, "size-mismatch");
        assert!(e.message.contains("announced 6 bytes"), "{}", e.message);
        // Shorter, without a length.
        let short = Reply::Raw("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhell".into());
        let r = run(vec![short], "hello", None, FAST);
        let e = r.result.unwrap_err();
        assert!(e.message.contains("sent 4 bytes"), "{}", e.message);
        assert_eq!(r.temp_files, 0);
    }

    #[test]
    fn unavailable_and_throttled_answers_are_retried() {
        let r = run(
            vec![
                status("503 Service Unavailable", ""),
                status("429 Too Many Requests", "Retry-After: 1\r\n"),
                ok("hello"),
            ],
            "hello",
            None,
            FAST,
        );
        assert_eq!(r.result.unwrap(), 5);
        assert_eq!(r.requests, 3);
        assert!(r.took >= Duration::from_secs(1), "Retry-After was honoured");
        // Three attempts, then the last answer.
        let r = run(vec![status("502 Bad Gateway", "")], "hello", None, FAST);
        assert!(r.result.unwrap_err().message.contains("502"));
        assert_eq!(r.requests, 3);
    }

    #[test]
    fn what_another_try_cannot_mend_is_not_retried() {
        let r = run(vec![status("404 Not Found", "")], "hello", None, FAST);
        assert!(r.result.unwrap_err().message.contains("404"));
        assert_eq!(r.requests, 1);
        let r = run(
            vec![status("503 Service Unavailable", "Retry-After: 3600\r\n")],
            "hello",
            None,
            FAST,
        );
        let e = r.result.unwrap_err();
        assert!(e.message.contains("retry after 3600s"), "{}", e.message);
        assert_eq!(r.requests, 1);
        let r = run(vec![ok("hellO")], "hello", None, FAST);
        assert_eq!(r.result.unwrap_err().code, "digest-mismatch");
        assert_eq!(r.requests, 1);
    }

    #[test]
    fn a_refused_address_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (url, count) = feed(vec![ok("hello")]);
        // A name that resolves to loopback, which the default policy refuses.
        let url = url.replace("127.0.0.1", "localhost");
        let limits = Limits {
            first_backoff: Duration::from_secs(5),
            ..FAST
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let start = Instant::now();
        let result = rt.block_on(async {
            let client = Arc::new(crate::outbound::OutboundPolicy::default())
                .client_builder()
                .build()
                .unwrap();
            let expect = Expect::Exactly(5);
            blob(
                &store,
                &client.get(&url),
                &Digest::of(b"hello"),
                expect,
                &limits,
                &Holder::new(),
            )
            .await
        });
        let e = result.unwrap_err();
        assert!(e.message.contains("127.0.0.1"), "{}", e.message);
        assert!(start.elapsed() < Duration::from_secs(4), "it was retried");
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_silent_feed_is_given_up_on() {
        let limits = Limits { tries: 2, ..FAST };
        let r = run(vec![Reply::Stall], "hello", None, limits);
        let e = r.result.unwrap_err();
        assert!(e.message.contains("sent nothing for 0.3s"), "{}", e.message);
        assert_eq!(r.requests, 2);
        assert!(r.took < Duration::from_secs(5), "{:?}", r.took);
        assert_eq!(r.temp_files, 0);
    }

    #[test]
    fn a_stop_ends_a_transfer_at_once_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let digest = Digest::of(b"never");
        let (url, _) = feed(vec![Reply::Endless]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let start = Instant::now();
        let stopped = rt.block_on(async {
            let req = reqwest::Client::new().get(&url);
            let holder = Holder::new();
            let download = blob(
                &store,
                &req,
                &digest,
                Expect::AtMost(u64::MAX),
                &FAST,
                &holder,
            );
            unless_stopped(download, || {
                (start.elapsed() > Duration::from_millis(300)).then_some("canceled")
            })
            .await
        });
        assert_eq!(stopped.unwrap_err(), "canceled");
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
