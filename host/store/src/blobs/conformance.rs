//! The blob store's conformance suite: what every home of blobs (the
//! directory, a bucket) must do behind [`BlobStore`]. [`run_all`] runs each
//! check on a fresh store from the caller's factory; the directory home runs
//! it in `blobs::tests`, a bucket served by a real S3 server in
//! `blobs::objects::tests`.
//!
//! Files the checks need besides the store go under the store's root, in
//! `conformance/` (each check gets a fresh store).

use super::{BlobError, BlobStore, Holder};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use wharf_core::digest::Digest;

/// Whatever keeps a store's backing alive (a temp dir, a server): dropped
/// after the store.
pub type Guard = Box<dyn std::any::Any>;

/// One check of the suite.
pub type Check = fn(&BlobStore);

/// Every check, by name.
pub const CHECKS: &[(&str, Check)] = &[
    (
        "store_verify_dedup_and_mismatch",
        store_verify_dedup_and_mismatch,
    ),
    (
        "a_blob_is_read_while_it_is_written_and_a_discarded_one_leaves_nothing",
        a_blob_is_read_while_it_is_written_and_a_discarded_one_leaves_nothing,
    ),
    ("file_range_and_short_source", file_range_and_short_source),
    (
        "collection_spares_what_a_holder_leased_until_its_commit_is_seen",
        collection_spares_what_a_holder_leased_until_its_commit_is_seen,
    ),
    ("list_and_remove", list_and_remove),
    (
        "a_large_blob_round_trips_byte_exact",
        a_large_blob_round_trips_byte_exact,
    ),
    (
        "open_blob_after_the_cache_is_cleared_reads_it_again",
        open_blob_after_the_cache_is_cleared_reads_it_again,
    ),
    ("link_file_and_adopt", link_file_and_adopt),
    ("describe_and_probe", describe_and_probe),
    (
        "a_walk_tells_every_blob_once_while_pages_are_deleted",
        a_walk_tells_every_blob_once_while_pages_are_deleted,
    ),
];

/// Run every check, each on a fresh store from `make`; the name of the
/// check is printed before it runs, so a failure says which one it was.
pub fn run_all(make: &dyn Fn() -> (BlobStore, Guard)) {
    for (name, check) in CHECKS {
        eprintln!("blob store conformance: {name}");
        let (store, guard) = make();
        check(&store);
        drop(store);
        drop(guard);
    }
}

/// How many temp files the store has.
fn temp_files(store: &BlobStore) -> usize {
    std::fs::read_dir(store.root().join("tmp")).unwrap().count()
}

/// A scratch directory of the check, under the store's root.
fn scratch(store: &BlobStore) -> PathBuf {
    let dir = store.root().join("conformance");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `len` bytes that differ from one offset to the next (not a repeated
/// pattern with a period that divides a part size).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// All the bytes of a stored blob.
fn read_all(store: &BlobStore, d: &Digest) -> Vec<u8> {
    let f = store.open_blob(d).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, 0).unwrap();
    buf
}

pub fn store_verify_dedup_and_mismatch(store: &BlobStore) {
    let h = Holder::new();
    let d = store.store_bytes(b"hello", None, &h).unwrap();
    assert_eq!(d, Digest::of(b"hello"));
    assert_eq!(store.stat(&d), Some(5));
    assert!(store.contains(&d));
    assert!(store.modified(&d).is_some());
    assert!(store.verify(&d).unwrap());
    assert_eq!(store.store_bytes(b"hello", Some(&d), &h).unwrap(), d);
    assert_eq!(read_all(store, &d), b"hello");

    let wrong = Digest::of(b"other");
    let err = store
        .store_reader(&b"hello!"[..], Some(&wrong), &h)
        .unwrap_err();
    assert!(matches!(err, BlobError::DigestMismatch { .. }), "{err}");
    assert!(!store.contains(&Digest::of(b"hello!")));
    assert!(!store.contains(&wrong));
    assert!(matches!(
        store.store_bytes(b"hello!", Some(&wrong), &h),
        Err(BlobError::DigestMismatch { .. })
    ));
    assert_eq!(temp_files(store), 0, "no temp file left");
    assert_eq!(store.list().unwrap(), vec![d]);
    assert!(matches!(
        store.open_blob(&wrong),
        Err(BlobError::NotFound(_))
    ));
    assert!(matches!(store.verify(&wrong), Err(BlobError::NotFound(_))));
}

pub fn a_blob_is_read_while_it_is_written_and_a_discarded_one_leaves_nothing(store: &BlobStore) {
    let mut w = store.writer().unwrap();
    let r = w.reader().unwrap();
    w.write_all(b"hello ").unwrap();
    let mut buf = [0u8; 6];
    assert_eq!(r.read_at(&mut buf, 0).unwrap(), 6);
    assert_eq!(&buf, b"hello ");
    w.write_all(b"world").unwrap();
    assert_eq!(w.len(), 11);
    assert!(
        !store.contains(&Digest::of(b"hello world")),
        "not before finish"
    );
    let (d, _) = w.finish(None, &Holder::new()).unwrap();
    // The handle reads the stored blob after finish.
    let mut all = [0u8; 11];
    assert_eq!(r.read_at(&mut all, 0).unwrap(), 11);
    assert_eq!(Digest::of(&all), d);
    assert!(store.contains(&d));
    assert_eq!(read_all(store, &d), b"hello world");

    let mut w = store.writer().unwrap();
    w.write_all(b"streamed").unwrap();
    assert!(matches!(
        w.discard(&Digest::of(b"other")),
        Err(BlobError::DigestMismatch { .. })
    ));
    let mut w = store.writer().unwrap();
    w.write_all(b"streamed").unwrap();
    assert_eq!(w.discard(&Digest::of(b"streamed")).unwrap(), 8);
    assert!(!store.contains(&Digest::of(b"streamed")));
    // Dropped unfinished: nothing either.
    let mut w = store.writer().unwrap();
    w.write_all(b"abandoned").unwrap();
    drop(w);
    assert!(!store.contains(&Digest::of(b"abandoned")));
    assert_eq!(temp_files(store), 0);
    assert_eq!(store.list().unwrap(), vec![d]);
}

pub fn file_range_and_short_source(store: &BlobStore) {
    let h = Holder::new();
    let path = scratch(store).join("src");
    std::fs::write(&path, b"0123456789").unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let (d, n) = store.store_file_range(&f, 2, 3, None, &h).unwrap();
    assert_eq!((d.clone(), n), (Digest::of(b"234"), 3));
    assert_eq!(read_all(store, &d), b"234");
    // Stored already: checked, not written again.
    assert_eq!(
        store.store_file_range(&f, 2, 3, Some(&d), &h).unwrap(),
        (d.clone(), 3)
    );
    assert!(matches!(
        store.store_file_range(&f, 3, 3, Some(&d), &h),
        Err(BlobError::DigestMismatch { .. })
    ));
    assert!(matches!(
        store.store_file_range(&f, 8, 5, None, &h),
        Err(BlobError::ShortSource { .. })
    ));
    assert_eq!(temp_files(store), 0);
    assert_eq!(store.list().unwrap(), vec![d]);
}

pub fn collection_spares_what_a_holder_leased_until_its_commit_is_seen(store: &BlobStore) {
    let old = store.store_bytes(b"old", None, &Holder::new()).unwrap();
    let reused = store.store_bytes(b"reused", None, &Holder::new()).unwrap();
    let run = store.begin_collection().unwrap();
    // A push finds `reused` stored while the run goes on.
    let push = Holder::new();
    assert!(store.lease(&reused, &push).unwrap());
    assert!(!store.lease(&Digest::of(b"never stored"), &push).unwrap());
    let candidates = [old.clone(), reused.clone()];
    let done = store.collect(&candidates, run).unwrap();
    assert_eq!((done.removed, done.leased), (1, 1), "{done:?}");
    assert_eq!(done.bytes, 3);
    assert!(!store.contains(&old) && store.contains(&reused));
    assert!(matches!(store.open_blob(&old), Err(BlobError::NotFound(_))));
    // Committed and released during the run: still spared by it...
    drop(push);
    assert_eq!(store.collect(&candidates, run).unwrap().leased, 1);
    // ...and not by the next one, whose snapshot has the commit.
    let next = store.begin_collection().unwrap();
    assert_eq!(store.collect(&candidates, next).unwrap().removed, 1);
    // A blob collected is stored again, and leased, by the next write.
    let again = Holder::new();
    assert!(!store.lease(&old, &again).unwrap());
    assert_eq!(store.store_bytes(b"old", None, &again).unwrap(), old);
    let last = store.begin_collection().unwrap();
    assert_eq!(
        store
            .collect(std::slice::from_ref(&old), last)
            .unwrap()
            .leased,
        1
    );
}

/// A walk in small pages tells every blob exactly once, with the time of
/// its write when the listing knows it, even when each page is deleted as
/// it comes (what orphan cleanup does).
pub fn a_walk_tells_every_blob_once_while_pages_are_deleted(store: &BlobStore) {
    let h = Holder::new();
    let mut stored: Vec<Digest> = (0..7u8)
        .map(|i| store.store_bytes(&[i; 5], None, &h).unwrap())
        .collect();
    stored.sort();
    let mut told = Vec::new();
    store
        .walk_in_pages(2, |page| {
            for (d, modified) in page {
                let written = modified.or_else(|| store.modified(&d)).unwrap();
                let age = std::time::SystemTime::now()
                    .duration_since(written)
                    .unwrap_or_default();
                assert!(age < std::time::Duration::from_secs(600), "{d}: {age:?}");
                assert!(store.remove(&d).unwrap());
                told.push(d);
            }
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
    told.sort();
    assert_eq!(told, stored);
    assert!(store.list().unwrap().is_empty());
}

pub fn list_and_remove(store: &BlobStore) {
    assert!(store.list().unwrap().is_empty());
    let h = Holder::new();
    let mut stored: Vec<Digest> = (0..5u8)
        .map(|i| store.store_bytes(&[i; 3], None, &h).unwrap())
        .collect();
    stored.sort();
    assert_eq!(store.list().unwrap(), stored);
    assert!(store.remove(&stored[0]).unwrap());
    assert!(!store.remove(&stored[0]).unwrap(), "removed already");
    assert!(!store.contains(&stored[0]));
    assert!(matches!(
        store.open_blob(&stored[0]),
        Err(BlobError::NotFound(_))
    ));
    assert_eq!(store.list().unwrap(), stored[1..]);
    assert!(!store.remove(&Digest::of(b"never stored")).unwrap());
}

pub fn a_large_blob_round_trips_byte_exact(store: &BlobStore) {
    const LEN: usize = 20 << 20;
    let bytes = pattern(LEN, 1);
    let want = Digest::of(&bytes);
    let path = scratch(store).join("large");
    std::fs::write(&path, &bytes).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let h = Holder::new();
    // Through the pipelined writer.
    let (d, n) = store
        .store_file_range(&f, 0, LEN as u64, Some(&want), &h)
        .unwrap();
    assert_eq!((&d, n), (&want, LEN as u64));
    assert_eq!(store.stat(&d), Some(LEN as u64));
    assert!(
        read_all(store, &d) == bytes,
        "the blob reads back as written"
    );
    store.clear_cache().unwrap();
    assert!(read_all(store, &d) == bytes, "and again from its home");
    assert!(store.verify(&d).unwrap());
    // Through a plain writer, one byte short of a part boundary.
    let odd = &bytes[..(16 << 20) - 1];
    let mut w = store.writer().unwrap();
    for piece in odd.chunks(1 << 20) {
        w.write_all(piece).unwrap();
    }
    let (d2, _) = w.finish(Some(&Digest::of(odd)), &h).unwrap();
    store.clear_cache().unwrap();
    assert!(read_all(store, &d2) == odd);
    assert_eq!(temp_files(store), 0);
}

pub fn open_blob_after_the_cache_is_cleared_reads_it_again(store: &BlobStore) {
    let h = Holder::new();
    let d = store.store_bytes(b"cached", None, &h).unwrap();
    assert_eq!(read_all(store, &d), b"cached");
    store.clear_cache().unwrap();
    assert_eq!(read_all(store, &d), b"cached");
    assert_eq!(read_all(store, &d), b"cached");
    store.clear_cache().unwrap();
    assert!(store.verify(&d).unwrap());
    assert_eq!(read_all(store, &d), b"cached");
    // A small cache keeps working: entries go, blobs stay.
    store.set_cache_limit(4);
    let e = store.store_bytes(b"evicts", None, &h).unwrap();
    assert_eq!(read_all(store, &d), b"cached");
    assert_eq!(read_all(store, &e), b"evicts");
    assert_eq!(temp_files(store), 0);
}

pub fn link_file_and_adopt(store: &BlobStore) {
    use cap_std::fs::Dir;
    let dir_path = scratch(store);
    let dir = Dir::open_ambient_dir(&dir_path, cap_std::ambient_authority()).unwrap();
    let h = Holder::new();

    std::fs::write(dir_path.join("upload"), b"linked bytes").unwrap();
    let f = std::fs::File::open(dir_path.join("upload")).unwrap();
    let want = Digest::of(b"linked bytes");
    assert!(matches!(
        store.link_file(&f, &dir, "upload", 12, None, Some(&Digest::of(b"x")), &h),
        Err(BlobError::DigestMismatch { .. })
    ));
    assert!(!store.contains(&want));
    let (d, n) = store
        .link_file(&f, &dir, "upload", 12, None, Some(&want), &h)
        .unwrap();
    assert_eq!((&d, n), (&want, 12));
    assert_eq!(read_all(store, &d), b"linked bytes");
    // Known digest, stored already: leased, nothing else.
    let again = store
        .link_file(&f, &dir, "upload", 12, Some(&want), None, &h)
        .unwrap();
    assert_eq!(again, (want.clone(), 12));

    std::fs::write(dir_path.join("adopted"), b"adopted bytes").unwrap();
    let a = Digest::of(b"adopted bytes");
    store
        .adopt(&dir, std::path::Path::new("adopted"), &a, &h)
        .unwrap();
    assert!(!dir_path.join("adopted").exists(), "moved into the store");
    assert_eq!(read_all(store, &a), b"adopted bytes");
    store.clear_cache().unwrap();
    assert_eq!(read_all(store, &a), b"adopted bytes");
    let mut listed = vec![a, want];
    listed.sort();
    assert_eq!(store.list().unwrap(), listed);
    assert_eq!(temp_files(store), 0);
}

pub fn describe_and_probe(store: &BlobStore) {
    store.probe().unwrap();
    let described = store.describe();
    match store.objects() {
        Some(home) => {
            assert!(described.starts_with("s3://"), "{described}");
            assert!(described.contains(&home.location().to_string()));
        }
        None => assert!(
            described.starts_with(&store.root().display().to_string()),
            "{described}"
        ),
    }
}
