//! Tests of upload sessions: one suite run on the directory home and on a
//! bucket served by a real S3 server (s3s-fs), then two nodes with separate
//! local roots sharing one bucket, as behind a load balancer.

use super::*;
use crate::blobs::conformance::pattern;
use crate::blobs::objects::tests::S3s;
use crate::blobs::{AreaKey, ObjectLocation};
use std::os::unix::fs::FileExt;

/// A request body of one chunk.
fn body(
    text: &'static str,
) -> futures::stream::Iter<std::array::IntoIter<Result<bytes::Bytes, std::convert::Infallible>, 1>>
{
    futures::stream::iter([Ok(bytes::Bytes::from_static(text.as_bytes()))])
}

/// A request body of `bytes`, in pieces of 64 KiB.
fn body_of(
    bytes: &[u8],
) -> futures::stream::Iter<std::vec::IntoIter<Result<bytes::Bytes, std::convert::Infallible>>> {
    let pieces: Vec<_> = bytes
        .chunks(64 << 10)
        .map(|p| Ok(bytes::Bytes::copy_from_slice(p)))
        .collect();
    futures::stream::iter(pieces)
}

fn owner() -> Owner {
    Owner {
        plugin: "docker".into(),
        repository: "app".into(),
    }
}

/// A node: its blob store and sessions, and the temp dir of its local root.
struct Node {
    blobs: BlobStore,
    sessions: Sessions,
    _dir: tempfile::TempDir,
}

fn directory_node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open(&dir.path().join("blobs")).unwrap();
    let sessions = Sessions::open(blobs.root()).unwrap();
    Node {
        blobs,
        sessions,
        _dir: dir,
    }
}

/// A node using the bucket `location`, with a client and local root of its
/// own.
fn bucket_node(s3: &S3s, location: &ObjectLocation) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let home = s3.home(location.clone());
    let blobs = BlobStore::open_with(&dir.path().join("blobs"), Some(home)).unwrap();
    let sessions = Sessions::open_with(blobs.root(), blobs.objects_shared()).unwrap();
    Node {
        blobs,
        sessions,
        _dir: dir,
    }
}

/// The suite, each check on a fresh node from `make`.
async fn suite(make: &dyn Fn() -> Node) {
    received_notes_belong_to_one_repository(&make());
    chunks_commit_and_digest_is_checked(&make()).await;
    abort_and_idle_removal_drop_a_session(&make()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_directory_home_passes_the_suite() {
    suite(&directory_node).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_home_passes_the_suite() {
    let s3 = S3s::start();
    suite(&|| bucket_node(&s3, &s3.bucket("reg/one"))).await;
}

fn received_notes_belong_to_one_repository(node: &Node) {
    let sessions = &node.sessions;
    let d = Digest::of(b"layer");
    assert!(!sessions.received("app", &d));
    sessions.mark_received("app", &d);
    assert!(sessions.received("app", &d));
    assert!(!sessions.received("other", &d));
    assert!(!sessions.received("app", &Digest::of(b"other")));
    assert!(!sessions.received("../app", &d));
    sessions.remove_stale_notes().unwrap();
    assert!(sessions.received("app", &d), "a fresh note stays");
    assert!(sessions.received_blobs().unwrap().contains(&d));
    let receivers = sessions.receivers(&d);
    assert_eq!(receivers.len(), 1);
    assert_eq!(receivers[0].as_str(), "app");
    assert!(sessions.receivers(&Digest::of(b"other")).is_empty());

    // Receivers come from the index by blob; a repository deleted (its
    // notes forgotten) is no receiver, the others stay.
    sessions.mark_received("web", &d);
    let names = |r: Vec<wharf_core::ids::RepoId>| {
        let mut n: Vec<String> = r.iter().map(|id| id.to_string()).collect();
        n.sort();
        n
    };
    assert_eq!(names(sessions.receivers(&d)), ["app", "web"]);
    sessions.forget_received(&"web".parse().unwrap()).unwrap();
    assert!(!sessions.received("web", &d));
    assert_eq!(names(sessions.receivers(&d)), ["app"]);
    sessions
        .forget_received(&"never-received".parse().unwrap())
        .unwrap();
}

async fn chunks_commit_and_digest_is_checked(node: &Node) {
    let (blobs, sessions) = (&node.blobs, &node.sessions);
    let id = sessions.create(&owner()).unwrap();
    let s = id.to_string();
    assert_eq!(sessions.length(&id).unwrap(), Some(0));
    assert_eq!(sessions.find(&s, "docker", Some("app")).unwrap(), Some(id));
    assert_eq!(sessions.find(&s, "docker", Some("other")).unwrap(), None);
    assert_eq!(sessions.find(&s, "file", None).unwrap(), None);
    assert_eq!(
        sessions.find("../../etc/passwd", "docker", None).unwrap(),
        None
    );
    // A session under a name no plugin has (the server's own uploads) is
    // no plugin's, whatever name or repository a lookup gives.
    let own = Owner {
        plugin: "(uploads)".into(),
        repository: String::new(),
    };
    let theirs = SessionId::new();
    sessions.create_as(theirs, &own).unwrap();
    let t = theirs.to_string();
    for plugin in ["docker", "file", "", "uploads"] {
        assert_eq!(sessions.find(&t, plugin, None).unwrap(), None, "{plugin}");
        assert_eq!(
            sessions.find(&t, plugin, Some("")).unwrap(),
            None,
            "{plugin}"
        );
    }
    assert_eq!(sessions.find(&t, "(uploads)", None).unwrap(), Some(theirs));
    let n = sessions.append(id, body("hello "), None, u64::MAX, u64::MAX);
    assert_eq!(n.await.unwrap(), 6);
    let wrong = sessions
        .append(id, body("x"), Some(3), u64::MAX, u64::MAX)
        .await;
    assert!(matches!(
        wrong,
        Err(SessionError::WrongOffset { len: 6, .. })
    ));
    let big = sessions
        .append(id, body("too long"), Some(6), 4, u64::MAX)
        .await;
    assert!(matches!(big, Err(SessionError::TooLarge { .. })));
    // The blob's cap counts what the session already holds (6 bytes).
    let past_blob = sessions
        .append(id, body("12345"), Some(6), u64::MAX, 10)
        .await;
    assert!(matches!(
        past_blob,
        Err(SessionError::BlobTooLarge { max: 10 })
    ));
    assert_eq!(
        sessions.length(&id).unwrap(),
        Some(6),
        "a refused chunk leaves nothing"
    );
    // An empty chunk changes nothing.
    let empty = sessions.append(id, body(""), Some(6), u64::MAX, u64::MAX);
    assert_eq!(empty.await.unwrap(), 6);
    sessions
        .append(id, body("world"), Some(6), u64::MAX, u64::MAX)
        .await
        .unwrap();
    let expect = Digest::of(b"hello world");
    let (d, len) = sessions
        .commit(id, blobs, Some(&expect), &Holder::new())
        .unwrap();
    assert_eq!((d, len), (expect.clone(), 11));
    assert!(blobs.contains(&expect));
    assert_eq!(read_all(blobs, &expect), b"hello world");
    assert_eq!(sessions.length(&id).unwrap(), None);
    assert_eq!(sessions.find(&s, "docker", None).unwrap(), None);
    assert!(matches!(
        sessions.commit(id, blobs, None, &Holder::new()),
        Err(SessionError::Unknown(_))
    ));

    // Without the in-memory state (another process wrote it), the commit
    // re-reads the file; a wrong digest stores nothing.
    let id = sessions.create(&owner()).unwrap();
    sessions
        .append(id, body("abc"), None, u64::MAX, u64::MAX)
        .await
        .unwrap();
    sessions.hashers.forget(&id);
    let bad = Digest::of(b"abd");
    assert!(
        sessions
            .commit(id, blobs, Some(&bad), &Holder::new())
            .is_err()
    );
    assert!(!blobs.contains(&Digest::of(b"abc")));
    assert_eq!(
        sessions.length(&id).unwrap(),
        None,
        "a mismatch ends the session"
    );

    // An empty session commits as the empty blob.
    let id = sessions.create(&owner()).unwrap();
    let (d, len) = sessions.commit(id, blobs, None, &Holder::new()).unwrap();
    assert_eq!((d, len), (Digest::of(b""), 0));
}

async fn abort_and_idle_removal_drop_a_session(node: &Node) {
    let sessions = &node.sessions;
    let id = sessions.create(&owner()).unwrap();
    sessions
        .append(id, body("bytes"), None, u64::MAX, u64::MAX)
        .await
        .unwrap();
    assert!(sessions.abort(&id));
    assert_eq!(sessions.length(&id).unwrap(), None);
    assert!(!sessions.abort(&id), "aborted already");

    let id = sessions.create(&owner()).unwrap();
    sessions
        .append(id, body("bytes"), None, u64::MAX, u64::MAX)
        .await
        .unwrap();
    assert_eq!(sessions.remove_idle(Duration::from_secs(3600)).unwrap(), 0);
    assert_eq!(
        sessions.length(&id).unwrap(),
        Some(5),
        "a fresh session stays"
    );
    // Object times have a resolution of a second.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(sessions.remove_idle(Duration::from_secs(1)).unwrap(), 1);
    assert_eq!(sessions.length(&id).unwrap(), None);
    assert_eq!(
        sessions.find(&id.to_string(), "docker", None).unwrap(),
        None
    );
}

/// All the bytes of a stored blob.
fn read_all(blobs: &BlobStore, d: &Digest) -> Vec<u8> {
    let f = blobs.open_blob(d).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, 0).unwrap();
    buf
}

/// The session objects in the bucket of `node`.
fn session_objects(node: &Node) -> usize {
    let home = node.blobs.objects().unwrap();
    home.list_area(&AreaKey::sessions()).unwrap().len()
}

/// Two nodes (A, B) with separate local roots, one bucket.
fn two_nodes(s3: &S3s) -> (Node, Node) {
    let location = s3.bucket("reg/shared");
    (bucket_node(s3, &location), bucket_node(s3, &location))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_continues_and_commits_on_any_node() {
    let s3 = S3s::start();
    let (a, b) = two_nodes(&s3);
    let id = a.sessions.create(&owner()).unwrap();
    let s = id.to_string();
    // Only its plugin and repository reach it, on the other node too.
    assert_eq!(
        b.sessions.find(&s, "docker", Some("app")).unwrap(),
        Some(id)
    );
    assert_eq!(b.sessions.find(&s, "docker", Some("other")).unwrap(), None);
    assert_eq!(b.sessions.find(&s, "file", None).unwrap(), None);
    assert_eq!(b.sessions.length(&id).unwrap(), Some(0));

    // A few MiB on A, a small chunk on B. (Not more than a part: s3s-fs
    // cannot start a multipart upload of a key this long, see
    // `blobs::objects::tests::area_keys_round_trip_through_a_multipart_upload`.)
    let first = pattern((3 << 20) + 12345, 1);
    let second = pattern(777, 2);
    let n = a
        .sessions
        .append(id, body_of(&first), Some(0), u64::MAX, u64::MAX)
        .await
        .unwrap();
    assert_eq!(n, first.len() as u64);
    assert_eq!(b.sessions.length(&id).unwrap(), Some(n));
    let wrong = b
        .sessions
        .append(id, body("x"), Some(3), u64::MAX, u64::MAX)
        .await;
    assert!(
        matches!(wrong, Err(SessionError::WrongOffset { len, .. }) if len == n),
        "{wrong:?}"
    );
    let end = b
        .sessions
        .append(id, body_of(&second), Some(n), u64::MAX, u64::MAX)
        .await
        .unwrap();
    assert_eq!(a.sessions.length(&id).unwrap(), Some(end));
    assert_eq!(b.sessions.length(&id).unwrap(), Some(end));
    // Nothing stays on the nodes' disks.
    for node in [&a, &b] {
        let temps = std::fs::read_dir(node.blobs.root().join("sessions")).unwrap();
        assert_eq!(temps.count(), 0);
    }

    let whole = [first, second].concat();
    let expect = Digest::of(&whole);
    let (d, len) = a
        .sessions
        .commit(id, &a.blobs, Some(&expect), &Holder::new())
        .unwrap();
    assert_eq!((d, len), (expect.clone(), whole.len() as u64));
    assert!(b.blobs.contains(&expect));
    assert_eq!(read_all(&b.blobs, &expect), whole, "byte-exact from B");
    assert!(b.blobs.verify(&expect).unwrap());
    assert_eq!(a.sessions.length(&id).unwrap(), None);
    assert_eq!(b.sessions.length(&id).unwrap(), None);
    assert_eq!(session_objects(&a), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_single_chunk_is_committed_by_a_copy_in_the_bucket() {
    let s3 = S3s::start();
    let (a, b) = two_nodes(&s3);
    let id = a.sessions.create(&owner()).unwrap();
    b.sessions
        .append(id, body("one chunk"), None, u64::MAX, u64::MAX)
        .await
        .unwrap();
    let (d, len) = a
        .sessions
        .commit(id, &a.blobs, None, &Holder::new())
        .unwrap();
    assert_eq!((d.clone(), len), (Digest::of(b"one chunk"), 9));
    // Copied, not downloaded: A's cache did not get it.
    assert!(!a.blobs.root().join("cache").join(d.hex()).exists());
    assert_eq!(b.blobs.objects().unwrap().size(&d).unwrap(), Some(9));
    assert_eq!(read_all(&b.blobs, &d), b"one chunk");
    assert_eq!(session_objects(&a), 0);

    // The same bytes again: the blob is there, only leased.
    let id = b.sessions.create(&owner()).unwrap();
    a.sessions
        .append(id, body("one chunk"), None, u64::MAX, u64::MAX)
        .await
        .unwrap();
    let again = b
        .sessions
        .commit(id, &b.blobs, Some(&d), &Holder::new())
        .unwrap();
    assert_eq!(again, (d, 9));
    assert_eq!(session_objects(&a), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_digest_stores_nothing_and_ends_the_session() {
    let s3 = S3s::start();
    let (a, b) = two_nodes(&s3);
    let bad = Digest::of(b"something else");
    // One chunk, then two.
    for chunks in [&["abc"][..], &["ab", "c"][..]] {
        let id = a.sessions.create(&owner()).unwrap();
        for (i, chunk) in chunks.iter().enumerate() {
            let node = if i % 2 == 0 { &a } else { &b };
            node.sessions
                .append(id, body(chunk), None, u64::MAX, u64::MAX)
                .await
                .unwrap();
        }
        let e = b
            .sessions
            .commit(id, &b.blobs, Some(&bad), &Holder::new())
            .unwrap_err();
        assert!(
            matches!(e, SessionError::Blob(BlobError::DigestMismatch { .. })),
            "{e}"
        );
        assert!(!a.blobs.contains(&Digest::of(b"abc")));
        assert!(a.blobs.list().unwrap().is_empty());
        assert_eq!(a.sessions.length(&id).unwrap(), None);
        assert_eq!(session_objects(&a), 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn received_notes_abort_and_idle_removal_are_shared() {
    let s3 = S3s::start();
    let (a, b) = two_nodes(&s3);
    let d = Digest::of(b"layer");
    a.sessions.mark_received("app", &d);
    assert!(b.sessions.received("app", &d));
    assert!(!b.sessions.received("other", &d));
    let receivers = b.sessions.receivers(&d);
    assert_eq!(receivers.len(), 1);
    assert_eq!(receivers[0].as_str(), "app");
    assert!(b.sessions.received_blobs().unwrap().contains(&d));

    // A note older than RECEIVED_FOR no longer counts and goes.
    let location = a.blobs.objects().unwrap().location().clone();
    let note = s3
        .root
        .path()
        .join(location.bucket())
        .join(location.prefix())
        .join("received/app")
        .join(d.hex());
    std::fs::File::options()
        .write(true)
        .open(&note)
        .unwrap()
        .set_modified(SystemTime::now() - RECEIVED_FOR - Duration::from_secs(60))
        .unwrap();
    assert!(!b.sessions.received("app", &d));
    assert!(b.sessions.receivers(&d).is_empty());
    assert!(b.sessions.received_blobs().unwrap().is_empty());
    b.sessions.remove_idle(Duration::from_secs(3600)).unwrap();
    assert!(!note.exists());

    // Aborted on the other node.
    let id = a.sessions.create(&owner()).unwrap();
    a.sessions
        .append(id, body("bytes"), None, u64::MAX, u64::MAX)
        .await
        .unwrap();
    assert!(b.sessions.abort(&id));
    assert_eq!(a.sessions.length(&id).unwrap(), None);
    assert_eq!(session_objects(&a), 0);

    // Idle on A, removed by B; a stale temp file of B's goes too.
    let id = a.sessions.create(&owner()).unwrap();
    a.sessions
        .append(id, body("bytes"), None, u64::MAX, u64::MAX)
        .await
        .unwrap();
    let temp = b
        .blobs
        .root()
        .join("sessions")
        .join(format!("upload-{}-dead", id.0.simple()));
    std::fs::write(&temp, b"half a chunk").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&temp)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    assert_eq!(
        b.sessions.remove_idle(Duration::from_secs(3600)).unwrap(),
        0
    );
    assert!(!temp.exists());
    assert_eq!(a.sessions.length(&id).unwrap(), Some(5));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(b.sessions.remove_idle(Duration::from_secs(1)).unwrap(), 1);
    assert_eq!(a.sessions.length(&id).unwrap(), None);
    assert_eq!(session_objects(&a), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_racing_at_one_offset_leave_one_chain() {
    let s3 = S3s::start();
    let (a, b) = two_nodes(&s3);
    let id = a.sessions.create(&owner()).unwrap();
    let (x, y) = futures::join!(
        a.sessions
            .append(id, body("from a"), Some(0), u64::MAX, u64::MAX),
        b.sessions
            .append(id, body("from b!"), Some(0), u64::MAX, u64::MAX),
    );
    let winners = [&x, &y].iter().filter(|r| r.is_ok()).count();
    assert!(winners <= 1, "{x:?} {y:?}");
    for r in [&x, &y] {
        if let Err(e) = r {
            // Busy if it raced; told the new length if the other was done
            // before it looked.
            assert!(
                matches!(e, SessionError::Busy(_) | SessionError::WrongOffset { .. }),
                "{e}"
            );
        }
    }
    let len = a.sessions.length(&id).unwrap().expect("a chain");
    assert_eq!(Some(len), b.sessions.length(&id).unwrap());
    assert_eq!(len, x.as_ref().or(y.as_ref()).copied().unwrap_or(0));
}
