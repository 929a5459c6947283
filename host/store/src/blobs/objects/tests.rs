//! Tests of the object home against a real S3 server: s3s-fs, started per
//! test on a free loopback address (see [`S3s`]), serving buckets that are
//! directories of its root.

use super::*;
use crate::blobs::leases::Holder;
use crate::blobs::{BlobError, BlobStore, conformance};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const ACCESS_KEY: &str = "wharf-test-key";
const SECRET_KEY: &str = "wharf-test-secret";

/// A private s3s-fs server, killed when dropped (the sessions' tests use
/// it too).
pub(crate) struct S3s {
    child: Child,
    pub(crate) root: tempfile::TempDir,
    endpoint: String,
    buckets: AtomicU32,
}

/// The s3s-fs binary: `WHARF_TEST_S3S_BIN`, or the one `scripts/test.sh`
/// installs. Missing, the test fails and says how to get it.
fn s3s_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WHARF_TEST_S3S_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "WHARF_TEST_S3S_BIN={} is not a file; build s3s-fs with: \
             cargo install s3s-fs --version 0.14.1 --features binary --locked --root target/tools",
            bin.display()
        );
        return bin;
    }
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/bin/s3s-fs");
    assert!(
        bin.is_file(),
        "the object storage tests need s3s-fs (a real S3 server), not found at {} and \
         WHARF_TEST_S3S_BIN is unset; build it from the workspace root with: \
         CARGO_TARGET_DIR=target/s3s-build cargo install s3s-fs --version 0.14.1 \
         --features binary --locked --root target/tools (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A free port on a loopback address of its own (127.0.0.x).
fn free_addr() -> SocketAddr {
    let seed = std::process::id() ^ std::time::UNIX_EPOCH.elapsed().unwrap().subsec_nanos();
    for i in 0..50u32 {
        let x = 2 + ((seed.wrapping_add(i * 7919)) % 250) as u8;
        if let Ok(l) = TcpListener::bind((Ipv4Addr::new(127, 0, 0, x), 0)) {
            return l.local_addr().unwrap();
        }
    }
    panic!("no free loopback port");
}

impl S3s {
    pub(crate) fn start() -> S3s {
        let bin = s3s_bin();
        let mut last = String::new();
        for _ in 0..5 {
            let root = tempfile::tempdir().unwrap();
            let addr = free_addr();
            let mut child = Command::new(&bin)
                .args(["--host", &addr.ip().to_string()])
                .args(["--port", &addr.port().to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(root.path())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    use std::io::Read;
                    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                    last = format!("s3s-fs exited ({status}): {err}");
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                    return S3s {
                        child,
                        root,
                        endpoint: format!("http://{addr}"),
                        buckets: AtomicU32::new(0),
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("s3s-fs did not start: {last}");
    }

    pub(crate) fn access(&self) -> S3Access {
        S3Access {
            endpoint: Some(self.endpoint.clone()),
            region: None,
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
        }
    }

    /// A new empty bucket, as `s3://BUCKET/PREFIX`.
    pub(crate) fn bucket(&self, prefix: &str) -> ObjectLocation {
        let n = self.buckets.fetch_add(1, Ordering::Relaxed);
        let name = format!("wharf-test-{n}");
        std::fs::create_dir(self.root.path().join(&name)).unwrap();
        format!("s3://{name}/{prefix}")
            .trim_end_matches('/')
            .parse()
            .unwrap()
    }

    pub(crate) fn home(&self, location: ObjectLocation) -> ObjectHome {
        ObjectHome::new(location, &self.access()).unwrap()
    }

    /// A store in a fresh bucket, and the temp dir of its local root.
    fn store(&self) -> (BlobStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let home = self.home(self.bucket("reg/one"));
        let store = BlobStore::open_with(&dir.path().join("blobs"), Some(home)).unwrap();
        (store, dir)
    }

    /// Where s3s-fs keeps the object of blob `d`.
    fn object_file(&self, store: &BlobStore, d: &Digest) -> PathBuf {
        let loc = store.objects().unwrap().location();
        self.root
            .path()
            .join(loc.bucket())
            .join(loc.key(d).as_ref())
    }
}

impl Drop for S3s {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_bucket_home_conforms() {
    let s3 = S3s::start();
    conformance::run_all(&|| {
        let (store, dir) = s3.store();
        (store, Box::new(dir))
    });
}

#[test]
fn blobs_are_objects_under_the_prefix_and_a_tampered_one_is_refused() {
    let s3 = S3s::start();
    let (store, _dir) = s3.store();
    let h = Holder::new();
    let d = store.store_bytes(b"layer bytes", None, &h).unwrap();
    let object = s3.object_file(&store, &d);
    assert!(object.ends_with(format!("reg/one/blobs/sha256/{}", d.hex())));
    assert_eq!(std::fs::read(&object).unwrap(), b"layer bytes");
    // Written through the node's cache, not its sha256/ directory.
    assert!(!store.root().join("sha256").exists());
    assert!(store.root().join("cache").join(d.hex()).exists());

    // Tampered in the bucket: refused on the next download, through the
    // client and behind s3s-fs's back alike.
    store.clear_cache().unwrap();
    let home = store.objects().unwrap();
    home.put_unchecked(&d, b"evil bytes!".to_vec()).unwrap();
    let e = store.open_blob(&d).unwrap_err();
    assert!(matches!(e, BlobError::DigestMismatch { .. }), "{e}");
    assert!(!store.verify(&d).unwrap());
    std::fs::write(&object, b"LAYER BYTES").unwrap();
    let e = store.open_blob(&d).unwrap_err();
    assert!(matches!(e, BlobError::DigestMismatch { .. }), "{e}");
    assert!(!store.root().join("cache").join(d.hex()).exists());
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0
    );
    // Repaired by storing it again.
    assert!(store.remove(&d).unwrap());
    assert_eq!(store.store_bytes(b"layer bytes", None, &h).unwrap(), d);
    store.clear_cache().unwrap();
    assert!(store.verify(&d).unwrap());
}

#[test]
fn keys_that_are_not_digests_are_skipped_and_ranges_and_urls_read_objects() {
    let s3 = S3s::start();
    let (store, _dir) = s3.store();
    let h = Holder::new();
    let d = store.store_bytes(b"0123456789", None, &h).unwrap();
    let home = store.objects().unwrap();
    let bucket = s3.root.path().join(home.location().bucket());
    let blobs = bucket.join("reg/one/blobs/sha256");
    std::fs::write(blobs.join("not-a-digest"), b"x").unwrap();
    std::fs::create_dir_all(blobs.join("deeper")).unwrap();
    std::fs::write(blobs.join("deeper").join(d.hex()), b"x").unwrap();
    std::fs::create_dir_all(bucket.join("elsewhere/blobs/sha256")).unwrap();
    std::fs::write(
        bucket
            .join("elsewhere/blobs/sha256")
            .join(Digest::of(b"x").hex()),
        b"x",
    )
    .unwrap();
    assert_eq!(store.list().unwrap(), vec![d.clone()]);

    let read = |start, end| -> Vec<u8> {
        let mut stream = home.get_range(&d, start, end).unwrap();
        let mut out = Vec::new();
        while let Some(chunk) = futures::executor::block_on(stream.next()) {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    };
    assert_eq!(read(2, Some(5)), b"234");
    assert_eq!(read(7, None), b"789");
    assert_eq!(read(0, None), b"0123456789");
    assert_eq!(read(4, Some(4)), b"");
    assert_eq!(home.size(&d).unwrap(), Some(10));
    assert_eq!(home.size(&Digest::of(b"none")).unwrap(), None);

    // A presigned URL reads the object without credentials.
    let url = home.presigned_get(&d, Duration::from_secs(60)).unwrap();
    assert!(url.as_str().contains("X-Amz-Signature"), "{url}");
    let (status, body) = http_get(&url);
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, b"0123456789");
}

/// A plain HTTP/1.1 GET; the status line and the body.
fn http_get(url: &url::Url) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let addr = format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port_or_known_default().unwrap()
    );
    let mut conn = TcpStream::connect(&addr).unwrap();
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    conn.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, response[split + 4..].to_vec())
}

#[test]
fn wrong_credentials_and_an_unreachable_endpoint_fail_fast_naming_object_storage() {
    let s3 = S3s::start();
    let location = s3.bucket("");
    let wrong = S3Access {
        secret_access_key: Some("not-the-secret".into()),
        ..s3.access()
    };
    let dir = tempfile::tempdir().unwrap();
    let home = ObjectHome::new(location.clone(), &wrong).unwrap();
    let store = BlobStore::open_with(dir.path(), Some(home)).unwrap();
    let e = store.probe().unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("object storage ({location})")),
        "{e}"
    );
    let e = store
        .store_bytes(b"pushed", None, &Holder::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("object storage"), "{e}");
    assert!(e.contains("credentials") || e.contains("secret"), "{e}");
    eprintln!("wrong credentials: {e}");
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );

    // Nothing listens there: the error comes within the retry budget.
    let gone = free_addr();
    let away = S3Access {
        endpoint: Some(format!("http://{gone}")),
        ..s3.access()
    };
    let home = ObjectHome::new(location.clone(), &away).unwrap();
    let started = std::time::Instant::now();
    let e = home.probe().unwrap_err().to_string();
    assert!(e.starts_with("object storage (s3://"), "{e}");
    assert!(e.contains("endpoint"), "{e}");
    eprintln!("unreachable after {:?}: {e}", started.elapsed());
    assert!(
        started.elapsed() < RETRY_TIMEOUT + Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_failed_multipart_upload_leaves_nothing_under_the_digest() {
    let s3 = S3s::start();
    let (store, dir) = s3.store();
    let home = store.objects().unwrap();
    // The file is shorter than announced: the upload stops part-way.
    let path = dir.path().join("short");
    std::fs::write(&path, vec![7u8; (PART_SIZE as usize) * 2 + 5]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let d = Digest::of(b"pretend");
    let e = home.upload(&d, &file, PART_SIZE * 4).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    assert_eq!(home.size(&d).unwrap(), None);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn locations_are_validated_and_say_what_to_write() {
    let ok: ObjectLocation = "s3://wharf-blobs".parse().unwrap();
    assert_eq!((ok.bucket(), ok.prefix()), ("wharf-blobs", ""));
    assert_eq!(ok.to_string(), "s3://wharf-blobs");
    let ok: ObjectLocation = "s3://my.bucket-1/prod/eu".parse().unwrap();
    assert_eq!((ok.bucket(), ok.prefix()), ("my.bucket-1", "prod/eu"));
    assert_eq!(ok.to_string(), "s3://my.bucket-1/prod/eu");
    assert_eq!(
        ok.key(&Digest::of(b"x")).as_ref(),
        format!("prod/eu/blobs/sha256/{}", Digest::of(b"x").hex())
    );
    for (bad, says) in [
        ("wharf-blobs", "s3://BUCKET"),
        ("https://wharf-blobs", "s3://BUCKET"),
        ("s3://ab", "3 to 63"),
        ("s3://Wharf", "lowercase"),
        ("s3://wharf_blobs", "lowercase"),
        ("s3://-wharf", "start and end"),
        ("s3://wharf/prod/", "write s3://wharf/prod"),
        ("s3://wharf//prod", "must not start"),
        ("s3://wharf/a//b", "write s3://wharf/a/b"),
        ("s3://wharf/a/../b", "\"..\""),
    ] {
        let e = bad.parse::<ObjectLocation>().unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn access_from_env_reads_the_aws_variables() {
    // Only checks the mapping, through a child process's environment, so
    // tests running in parallel see no change to theirs.
    if std::env::var_os("WHARF_S3_ACCESS_CHILD").is_some() {
        let a = S3Access::from_env();
        assert_eq!(a.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(a.region.as_deref(), Some("eu-west-3"));
        assert_eq!(a.access_key_id.as_deref(), Some("k"));
        assert_eq!(a.secret_access_key, None);
        assert!(!format!("{a:?}").contains("secret-value"));
        return;
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "blobs::objects::tests::access_from_env_reads_the_aws_variables",
        ])
        .env("WHARF_S3_ACCESS_CHILD", "1")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env_remove("AWS_REGION")
        .env("AWS_DEFAULT_REGION", "eu-west-3")
        .env("AWS_ACCESS_KEY_ID", "k")
        .env("AWS_SECRET_ACCESS_KEY", "")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let shown = format!(
        "{:?}",
        S3Access {
            secret_access_key: Some("secret-value".into()),
            ..S3Access::default()
        }
    );
    assert!(!shown.contains("secret-value"), "{shown}");
}

#[test]
fn the_cache_stays_under_its_limit_evicting_the_least_recently_used() {
    let s3 = S3s::start();
    let (store, _dir) = s3.store();
    let h = Holder::new();
    let cache = store.root().join("cache");
    let cached = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    store.set_cache_limit(25);
    let a = store.store_bytes(&[1; 10], None, &h).unwrap();
    let b = store.store_bytes(&[2; 10], None, &h).unwrap();
    // `a` used after `b`: `b` is the one to go.
    let old = SystemTime::now() - Duration::from_secs(60);
    for d in [&a, &b] {
        std::fs::File::options()
            .write(true)
            .open(cache.join(d.hex()))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    drop(store.open_blob(&a).unwrap());
    let c = store.store_bytes(&[3; 10], None, &h).unwrap();
    let mut want = vec![a.hex().to_string(), c.hex().to_string()];
    want.sort();
    assert_eq!(cached(), want);
    // `b` is still stored, and cached again when read.
    assert!(store.contains(&b));
    assert_eq!(store.open_blob(&b).unwrap().metadata().unwrap().len(), 10);
    assert!(cached().contains(&b.hex().to_string()));
    assert_eq!(cached().len(), 2);
}

/// The calls are synchronous but may come from a tokio runtime's threads,
/// blocking or not (a careless caller), and the store may be dropped there.
#[test]
fn a_bucket_store_works_and_drops_inside_a_tokio_runtime() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<BlobStore>();
    send_sync::<ObjectHome>();
    let s3 = S3s::start();
    let (store, _dir) = s3.store();
    let store = Arc::new(store);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let blocking = store.clone();
        let d = tokio::task::spawn_blocking(move || {
            let d = blocking.store_bytes(b"from a blocking thread", None, &Holder::new());
            blocking.clear_cache().unwrap();
            d
        })
        .await
        .unwrap()
        .unwrap();
        // Straight from the async thread.
        assert!(store.verify(&d).unwrap());
        assert_eq!(store.list().unwrap(), vec![d.clone()]);
        let store = Arc::into_inner(store).expect("the only handle left");
        drop(store);
    });
}

/// The sessions' area: small objects, listings, deletes, copies to a blob,
/// and a file large enough for a multipart upload streamed back. (Session
/// chunk keys are too long for s3s-fs's multipart uploads, whose metadata
/// file is named after the key in base64: a limit of s3s-fs, not of S3.
/// A note's key is short enough.)
#[test]
fn area_keys_round_trip_through_a_multipart_upload() {
    let s3 = S3s::start();
    let (store, dir) = s3.store();
    let home = store.objects().unwrap();
    let repo: RepoId = "app".parse().unwrap();
    let d = Digest::of(b"x");
    let key = AreaKey::received(&repo, &d);
    assert_eq!(home.get_small(&key).unwrap(), None);
    assert_eq!(home.head_key(&key).unwrap(), None);
    home.put_small(&key, b"doc".to_vec()).unwrap();
    assert_eq!(home.get_small(&key).unwrap(), Some(b"doc".to_vec()));
    let listed = home.list_area(&AreaKey::received_all()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, key);
    assert_eq!(listed[0].size, 3);
    assert!(home.list_area(&AreaKey::sessions()).unwrap().is_empty());

    let len = PART_SIZE + 4321;
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let path = dir.path().join("big");
    std::fs::write(&path, &bytes).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    home.upload_to(&key, &file, len).unwrap();
    let mut stream = home.stream_key(&key).unwrap();
    let mut back = Vec::new();
    while let Some(chunk) = futures::executor::block_on(stream.next()) {
        back.extend_from_slice(&chunk.unwrap());
    }
    assert!(back == bytes, "byte-exact");

    // Copied to a blob's key inside the bucket.
    let big = Digest::of(&bytes);
    home.copy_to_blob(&key, &big, len).unwrap();
    store.clear_cache().unwrap();
    assert!(store.verify(&big).unwrap());
    home.delete_key(&key).unwrap();
    home.delete_key(&key).unwrap();
    assert_eq!(home.head_key(&key).unwrap(), None);
    assert_eq!(store.list().unwrap(), vec![big]);
}

/// Called straight from an async task, the store makes far more waits than
/// tokio's cooperative budget allows one poll (many downloaded pieces,
/// many requests): they must not hang once it is spent.
#[test]
fn many_waits_from_an_async_task_do_not_hang() {
    let s3 = S3s::start();
    let (store, _dir) = s3.store();
    let h = Holder::new();
    let bytes: Vec<u8> = (0..(6u32 << 20)).map(|i| (i % 253) as u8).collect();
    let d = store.store_bytes(&bytes, None, &h).unwrap();
    store.clear_cache().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let home = store.objects().unwrap();
            for _ in 0..300 {
                home.head(&d).unwrap();
            }
            assert!(store.verify(&d).unwrap());
        });
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the waits finished");
}
