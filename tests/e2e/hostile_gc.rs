//! Garbage collection raced against the pushes it must not hurt (issue 16):
//! orphan cleanup with no protection window, run over and over while
//! clients push images that reuse old, unreferenced blobs (found stored
//! again on upload, or skipped after a HEAD), and everything pushed must
//! then pull whole.

use crate::registry_support::*;
use crate::support::*;
use reqwest::blocking::Response;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

const PUSHERS: usize = 6;
const ROUNDS: usize = 4;
/// Old blobs each manifest reuses.
const REUSED: usize = 3;
/// Old, unreferenced blobs to reuse.
const OLD_BLOBS: usize = 96;

const CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

/// Run `f` over and over on a thread while `running` holds; the thread and
/// how many times `f` ran.
fn over_and_over(
    running: &Arc<AtomicBool>,
    f: impl Fn() + Send + 'static,
) -> (std::thread::JoinHandle<()>, Arc<AtomicUsize>) {
    let (running, runs) = (running.clone(), Arc::new(AtomicUsize::new(0)));
    let counted = runs.clone();
    let thread = std::thread::spawn(move || {
        while running.load(Ordering::Relaxed) {
            f();
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    (thread, runs)
}

fn bearer(s: &Server) -> String {
    format!("Bearer {}", s.token)
}

fn call(s: &Server, method: &str, path: &str, auth: &str, body: Vec<u8>) -> Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    no_redirects()
        .request(method, s.url(path))
        .header("Accept", DOCKER_ACCEPT)
        .header("Authorization", auth)
        .body(body)
        .send()
        .unwrap()
}

/// Push `bytes` as a blob of `name` the way docker does: HEAD first, and
/// upload (in one request) only if the registry does not have it. Returns
/// an error message instead of panicking, so that a racing thread reports.
fn push_blob(s: &Server, name: &str, auth: &str, bytes: &[u8]) -> Result<String, String> {
    let digest = sha256_digest(bytes);
    let head = call(
        s,
        "HEAD",
        &format!("/v2/{name}/blobs/{digest}"),
        auth,
        vec![],
    );
    if head.status().as_u16() == 200 {
        return Ok(digest);
    }
    let r = call(
        s,
        "POST",
        &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
        auth,
        bytes.to_vec(),
    );
    match r.status().as_u16() {
        201 => Ok(digest),
        status => Err(format!(
            "upload of {digest} to {name}: {status} {:?}",
            r.text()
        )),
    }
}

fn manifest(config: &str, layers: &[(String, usize)]) -> Vec<u8> {
    json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
            "size": CONFIG.len(), "digest": config},
        "layers": layers.iter().map(|(d, n)| json!({
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": n, "digest": d})).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes()
}

fn old_layer(i: usize) -> Vec<u8> {
    format!("old layer {i}, pushed long ago and named by nothing").into_bytes()
}

/// Set the modification time of every file under `dir` two days back: the
/// blobs are old, and the notes that they were pushed no longer count.
fn age(dir: &Path) {
    let old = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            age(&path);
        } else {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
    }
}

/// One image of pusher `p`, round `round`: the shared config, `REUSED` old
/// layers and a layer of its own. Returns the manifest's bytes.
fn push_image(s: &Server, p: usize, round: usize) -> Result<Vec<u8>, String> {
    let (name, auth) = (format!("gc{p}/app"), bearer(s));
    let config = push_blob(s, &name, &auth, CONFIG)?;
    let mut layers = Vec::new();
    for k in 0..REUSED {
        let bytes = old_layer((p * ROUNDS * REUSED + round * REUSED + k) % OLD_BLOBS);
        layers.push((push_blob(s, &name, &auth, &bytes)?, bytes.len()));
    }
    let own = format!("layer of pusher {p}, round {round}").into_bytes();
    layers.push((push_blob(s, &name, &auth, &own)?, own.len()));
    let body = manifest(&config, &layers);
    let r = no_redirects()
        .put(s.url(&format!("/v2/{name}/manifests/r{round}")))
        .header("Authorization", &auth)
        .header("Content-Type", DOCKER_MANIFEST)
        .body(body.clone())
        .send()
        .unwrap();
    match r.status().as_u16() {
        201 => Ok(body),
        status => Err(format!(
            "manifest PUT {name}:r{round}: {status} {:?}",
            r.text()
        )),
    }
}

/// Pull `name:tag`: the manifest must be `pushed`, and every blob it names
/// must come back with its digest.
fn pull(s: &Server, name: &str, tag: &str, pushed: &[u8]) -> Result<(), String> {
    let auth = bearer(s);
    let r = call(
        s,
        "GET",
        &format!("/v2/{name}/manifests/{tag}"),
        &auth,
        vec![],
    );
    if r.status().as_u16() != 200 {
        return Err(format!("GET {name}:{tag}: {}", r.status()));
    }
    let got = r.bytes().unwrap().to_vec();
    if got != pushed {
        return Err(format!("{name}:{tag} serves another manifest"));
    }
    let m: Value = serde_json::from_slice(&got).unwrap();
    let layers = m["layers"].as_array().unwrap().iter();
    for d in layers
        .chain([&m["config"]])
        .map(|l| l["digest"].as_str().unwrap())
    {
        let r = call(s, "GET", &format!("/v2/{name}/blobs/{d}"), &auth, vec![]);
        let status = r.status().as_u16();
        let bytes = r.bytes().unwrap().to_vec();
        if status != 200 || sha256_digest(&bytes) != d {
            return Err(format!("blob {d} of {name}:{tag}: {status}"));
        }
    }
    Ok(())
}

#[test]
fn cleanups_racing_pushes_that_reuse_old_blobs_delete_nothing_they_need() {
    let s = Arc::new(Server::start());
    let auth = bearer(&s);
    s.create_repo(json!({"id": "seed", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "seed/app", "auto_publish": false}}));
    for p in 0..PUSHERS {
        s.create_repo(json!({"id": format!("gc{p}"), "content_type": "docker",
            "distributor_config": {"repo_registry_id": format!("gc{p}/app"), "auto_publish": true}}));
    }
    // Old blobs nothing references: pushed long ago, never named by a
    // manifest, so nothing but their presence makes them reusable.
    for i in 0..OLD_BLOBS {
        push_blob(&s, "seed/app", &auth, &old_layer(i)).unwrap();
    }
    push_blob(&s, "seed/app", &auth, CONFIG).unwrap();
    age(&s.data_dir().join("blobs/sha256"));
    age(&s.data_dir().join("blobs/sessions/received"));

    // Cleanups back to back while the pushes run.
    let pushing = Arc::new(AtomicBool::new(true));
    let (cleaner, cleanups) = over_and_over(&pushing, {
        let s = s.clone();
        move || {
            cleanup_now(&s);
        }
    });
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|p| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut pushed = Vec::new();
                let mut failed = Vec::new();
                for round in 0..ROUNDS {
                    match push_image(&s, p, round) {
                        Ok(m) => pushed.push((round, m)),
                        Err(e) => failed.push(e),
                    }
                }
                (pushed, failed)
            })
        })
        .collect();
    let results: Vec<_> = pushers.into_iter().map(|t| t.join().unwrap()).collect();
    pushing.store(false, Ordering::Relaxed);
    cleaner.join().unwrap();
    let failed: Vec<_> = results.iter().flat_map(|(_, f)| f.clone()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} pushes failed while {} cleanups ran: {failed:#?}",
        failed.len(),
        PUSHERS * ROUNDS,
        cleanups.load(Ordering::Relaxed)
    );
    assert!(
        cleanups.load(Ordering::Relaxed) > 0,
        "no cleanup ran during the pushes"
    );

    // Once everything is published, one more cleanup: what is served stays.
    let last = cleanup_now(&s);
    let mut broken = Vec::new();
    for (p, (pushed, _)) in results.iter().enumerate() {
        for (round, m) in pushed {
            if let Err(e) = pull(&s, &format!("gc{p}/app"), &format!("r{round}"), m) {
                broken.push(e);
            }
        }
    }
    assert!(broken.is_empty(), "after cleanup {last}: {broken:#?}");
    // The old blobs no image reused are collectable, and were collected.
    let unused = (PUSHERS * ROUNDS * REUSED..OLD_BLOBS)
        .map(|i| sha256_digest(&old_layer(i)))
        .filter(|d| {
            let hex = d.trim_start_matches("sha256:");
            let path = format!("blobs/sha256/{}/{hex}", &hex[..2]);
            s.data_dir().join(path).exists()
        })
        .count();
    assert_eq!(unused, 0, "unreferenced, unleased blobs were kept: {last}");
}

/// PUT `name:tag` of the manifest `body`.
fn put_tag(s: &Server, name: &str, tag: &str, body: &[u8]) -> Result<(), String> {
    let r = no_redirects()
        .put(s.url(&format!("/v2/{name}/manifests/{tag}")))
        .header("Authorization", bearer(s))
        .header("Content-Type", DOCKER_MANIFEST)
        .body(body.to_vec())
        .send()
        .unwrap();
    match r.status().as_u16() {
        201 => Ok(()),
        status => Err(format!("PUT {name}:{tag}: {status} {:?}", r.text())),
    }
}

/// A push's own publish (auto-publish), publish tasks and cleanups with no
/// protection window, all at once on one repository whose index spans
/// several shards: a publish keeps the shards a push did not touch, and
/// neither racing publish nor cleanup may leave the publication naming a
/// shard that is gone. Every tag pulls afterwards.
#[test]
fn pushes_publish_tasks_and_cleanups_at_once_leave_every_tag_served() {
    const TAGS: usize = 1200; // three shards of tags (512 a shard at most)
    const PUSHED: usize = 24;
    let s = Arc::new(Server::start());
    let (name, auth) = ("race/app", bearer(&s));
    s.create_repo(json!({"id": "race", "content_type": "docker",
        "distributor_config": {"repo_registry_id": name, "auto_publish": false}}));
    let config = push_blob(&s, name, &auth, CONFIG).unwrap();
    let layer = b"the one layer of every tag".to_vec();
    let layer = (push_blob(&s, name, &auth, &layer).unwrap(), layer.len());
    let body = manifest(&config, std::slice::from_ref(&layer));
    for i in 0..TAGS {
        put_tag(&s, name, &format!("t{i:04}"), &body).unwrap();
    }
    publish(&s, "race");
    let r = s
        .http
        .patch(s.url("/api/v1/repositories/race"))
        .json(&json!({"distributor_config": {"auto_publish": true}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    age(&s.data_dir().join("blobs/sha256"));
    age(&s.data_dir().join("blobs/sessions/received"));
    // Pushed since: kept for its pusher until a manifest names it.
    let other = b"a second layer, of the tags moved".to_vec();
    let other = (push_blob(&s, name, &auth, &other).unwrap(), other.len());
    let moved = manifest(&config, &[layer, other]);

    let pushing = Arc::new(AtomicBool::new(true));
    let (cleaner, cleanups) = over_and_over(&pushing, {
        let s = s.clone();
        move || {
            cleanup_now(&s);
        }
    });
    let (publisher, publishes) = over_and_over(&pushing, {
        let s = s.clone();
        move || {
            publish(&s, "race");
        }
    });
    // New tags land in the last shard, moved ones in the first: each
    // publish keeps the shards between.
    let pushers: Vec<_> = [("z", body.clone()), ("t", moved.clone())]
        .into_iter()
        .map(|(prefix, m)| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..PUSHED)
                    .filter_map(|i| {
                        // z0000, z0001, …; t0000 … t0007 over and over.
                        let n = if prefix == "z" { i } else { i % 8 };
                        put_tag(&s, name, &format!("{prefix}{n:04}"), &m).err()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let failed: Vec<String> = pushers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    pushing.store(false, Ordering::Relaxed);
    cleaner.join().unwrap();
    publisher.join().unwrap();
    assert!(failed.is_empty(), "{failed:#?}");
    let (ran, published) = (
        cleanups.load(Ordering::Relaxed),
        publishes.load(Ordering::Relaxed),
    );
    assert!(
        ran > 0 && published > 0,
        "{ran} cleanups, {published} publishes ran beside the pushes"
    );

    // Settled: one more cleanup, then every tag is served whole.
    let last = cleanup_now(&s);
    let tags = (0..TAGS)
        .map(|i| format!("t{i:04}"))
        .chain((0..PUSHED).map(|i| format!("z{i:04}")));
    let mut broken = Vec::new();
    for (n, tag) in tags.enumerate() {
        let want = if n < 8 { &moved } else { &body };
        // Every manifest GET reads the index; the blobs of one in 200 too.
        let r = if n % 200 == 0 {
            pull(&s, name, &tag, want)
        } else {
            let r = call(
                &s,
                "GET",
                &format!("/v2/{name}/manifests/{tag}"),
                &auth,
                vec![],
            );
            match r.status().as_u16() {
                200 if r.bytes().unwrap().as_ref() == want.as_slice() => Ok(()),
                status => Err(format!("GET {name}:{tag}: {status} or another manifest")),
            }
        };
        broken.extend(r.err());
    }
    assert!(broken.is_empty(), "after cleanup {last}: {broken:#?}");
}
