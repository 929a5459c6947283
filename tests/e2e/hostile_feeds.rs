//! Feeds that misbehave, as an attacker (or a broken mirror) would: a layer
//! that never ends, one that never ends while its task is canceled, one
//! that is unavailable at first; and pushes past the server's maximum blob
//! size (issue 16, bounded work). Every test also checks the legitimate
//! path still works.

use crate::registry_support::*;
use crate::support::*;
use reqwest::blocking::Response;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

/// A docker repository mirroring `feed`'s `name`.
fn mirror(s: &Server, id: &str, feed: &FakeUpstream) {
    docker_repo(
        s,
        id,
        &format!("{id}/app"),
        json!({"feed": feed.url, "upstream_name": format!("{id}/app")}),
    );
}

/// Temp files of blobs being written (`<data-dir>/blobs/tmp`).
fn temp_blobs(s: &Server) -> Vec<String> {
    std::fs::read_dir(s.data_dir().join("blobs").join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Bytes of every file under `dir` (a few levels deep at most).
fn disk_usage(dir: &Path, depth: usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() && depth > 0 => disk_usage(&e.path(), depth - 1),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Wait (at most `limit`) until `done`; how long it took, or `None`.
fn within(limit: Duration, done: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn an_endless_layer_is_cut_off_at_its_descriptors_size() {
    let s = Server::start();
    // The descriptor says 1 MiB; the feed sends bytes until it is hung up on.
    let layer = sha256_digest(b"the layer the manifest promises");
    let size: u64 = 1 << 20;
    let feed = FakeUpstream::start(
        CONFIG.to_vec(),
        (layer.clone(), size),
        LayerReply::Endless {
            pause: Duration::ZERO,
        },
    );
    mirror(&s, "endless", &feed);
    let t = sync(&s, "endless");
    let message = failed_with(&t);
    assert!(
        message.contains(&layer)
            && message.contains("more than the 1048576 bytes its descriptor gives"),
        "{message}"
    );
    // The feed was hung up on: what it got out is the descriptor's size plus
    // what socket buffers hold, not gigabytes, and it was asked once.
    assert!(
        within(Duration::from_secs(5), || feed.layer_streams_open() == 0).is_some(),
        "the feed is still being read"
    );
    let sent = feed.layer_bytes_sent();
    assert!(sent < 32 << 20, "the feed got {sent} bytes out");
    assert_eq!(feed.layer_downloads(), 1, "a body too large is not retried");
    assert_eq!(temp_blobs(&s), Vec::<String>::new(), "a temp file was left");
    let used = disk_usage(&s.data_dir().join("blobs"), 4);
    assert!(used < 8 << 20, "the blob store grew by {used} bytes");
    assert_eq!(content(&s, "endless").blobs, Vec::<String>::new());

    // An honest feed of the same shape mirrors.
    let bytes = vec![b'l'; 3 << 20];
    let layer = sha256_digest(&bytes);
    let honest = FakeUpstream::start(
        CONFIG.to_vec(),
        (layer.clone(), bytes.len() as u64),
        LayerReply::Bytes(bytes),
    );
    mirror(&s, "honest", &honest);
    let t = sync(&s, "honest");
    assert_eq!(t["state"], "finished", "{t}");
    assert!(content(&s, "honest").blobs.contains(&layer));
}

#[test]
fn a_cancel_stops_an_endless_download_within_a_second() {
    let s = Server::start();
    // 1 GiB promised, 64 KiB every 10 ms delivered: still going when canceled.
    let layer = sha256_digest(b"a big layer");
    let feed = FakeUpstream::start(
        CONFIG.to_vec(),
        (layer, 1 << 30),
        LayerReply::Endless {
            pause: Duration::from_millis(10),
        },
    );
    mirror(&s, "slow", &feed);
    let (status, task) = s.post_json("/api/v1/repositories/slow/sync", &json!({}));
    assert_eq!(status, 202, "{task}");
    assert!(
        within(Duration::from_secs(60), || feed.layer_bytes_sent()
            > 1 << 20)
        .is_some(),
        "the download never started: {}",
        s.log()
    );
    let id = task["id"].as_str().unwrap();
    let asked = Instant::now();
    let (status, v) = s.post_json(&format!("/api/v1/tasks/{id}/cancel"), &json!({}));
    assert!(status < 300, "cancel: {status} {v}");
    // The feed sees the connection closed within a second or two.
    let stopped = within(Duration::from_secs(10), || feed.layer_streams_open() == 0);
    let took = asked.elapsed();
    assert!(
        stopped.is_some() && took < Duration::from_secs(2),
        "the feed was still read {took:?} after the cancel"
    );
    let sent = feed.layer_bytes_sent();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(feed.layer_bytes_sent(), sent, "bytes still flow");
    let t = s.wait_task(&task);
    assert_eq!(t["state"], "canceled", "{t}");
    assert_eq!(temp_blobs(&s), Vec::<String>::new(), "a temp file was left");
    assert_eq!(
        feed.layer_downloads(),
        1,
        "a canceled download is not retried"
    );
}

#[test]
fn an_unavailable_feed_is_retried_after_what_it_asks() {
    let s = Server::start();
    let bytes = b"a layer behind a busy mirror".to_vec();
    let layer = sha256_digest(&bytes);
    // 503 with `Retry-After: 1` first, then the bytes.
    let feed = FakeUpstream::start(
        CONFIG.to_vec(),
        (layer.clone(), bytes.len() as u64),
        LayerReply::UnavailableThen(1, bytes.clone()),
    );
    mirror(&s, "busy", &feed);
    let start = Instant::now();
    let t = sync(&s, "busy");
    assert_eq!(t["state"], "finished", "{t}");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "Retry-After ignored"
    );
    assert_eq!(feed.layer_downloads(), 2);
    publish(&s, "busy");
    let r = request(&s, "GET", &format!("/v2/busy/app/blobs/{layer}"), &[]);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().unwrap().to_vec(), bytes);

    // Unavailable for good: a few tries, then a clear failure.
    let down = FakeUpstream::start(
        CONFIG.to_vec(),
        (layer, bytes.len() as u64),
        LayerReply::UnavailableThen(usize::MAX, bytes),
    );
    mirror(&s, "down", &down);
    let message = failed_with(&sync(&s, "down"));
    assert!(message.contains("503"), "{message}");
    assert_eq!(down.layer_downloads(), 3, "three tries in all");
}

/// The admin's client, on registry paths.
fn send(s: &Server, method: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = s.http.request(method, s.url(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(body).send().unwrap()
}

fn status_and_message(r: Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().unwrap_or(Value::Null);
    (
        status,
        v["errors"][0]["message"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn pushes_and_syncs_past_the_maximum_blob_size_are_refused() {
    let s =
        Server::start_with_plugin_dir(&env_path("WHARF_PLUGIN_DIR"), &["--max-blob-size", "1MiB"]);
    s.create_repo(json!({"id": "small", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "small/app", "auto_publish": true}}));

    // In one request: over the limit, 413 naming it; under it, stored.
    let big = vec![b'b'; (1 << 20) + 1];
    let digest = sha256_digest(&big);
    let r = send(
        &s,
        "POST",
        &format!("/v2/small/app/blobs/uploads/?digest={digest}"),
        &[],
        big,
    );
    let (status, message) = status_and_message(r);
    assert_eq!(status, 413, "{message}");
    assert!(message.contains("--max-blob-size"), "{message}");
    let fits = vec![b'f'; 1 << 20];
    let digest = sha256_digest(&fits);
    let r = send(
        &s,
        "POST",
        &format!("/v2/small/app/blobs/uploads/?digest={digest}"),
        &[],
        fits,
    );
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text());

    // In chunks: each fits, together they do not.
    let r = send(&s, "POST", "/v2/small/app/blobs/uploads/", &[], vec![]);
    assert_eq!(r.status().as_u16(), 202);
    let location = header(&r, "location");
    let half = 600 << 10;
    let r = send(
        &s,
        "PATCH",
        &location,
        &[("Content-Range", &format!("0-{}", half - 1))],
        vec![b'c'; half],
    );
    assert_eq!(r.status().as_u16(), 202);
    let r = send(
        &s,
        "PATCH",
        &location,
        &[("Content-Range", &format!("{half}-{}", 2 * half - 1))],
        vec![b'c'; half],
    );
    let (status, message) = status_and_message(r);
    assert_eq!(status, 413, "{message}");
    assert!(message.contains("--max-blob-size"), "{message}");
    // The session keeps what it had; a last chunk that fits completes it.
    let rest = (1 << 20) - half;
    let r = send(
        &s,
        "PATCH",
        &location,
        &[("Content-Range", &format!("{half}-{}", half + rest - 1))],
        vec![b'c'; rest],
    );
    assert_eq!(r.status().as_u16(), 202, "{:?}", r.text());
    let digest = sha256_digest(&vec![b'c'; 1 << 20]);
    let r = send(
        &s,
        "PUT",
        &format!("{location}?digest={digest}"),
        &[],
        vec![],
    );
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text());

    // A feed whose descriptor gives more than the limit is not even asked.
    let layer = sha256_digest(b"too big to mirror");
    let feed = FakeUpstream::start(
        CONFIG.to_vec(),
        (layer, 2 << 20),
        LayerReply::Bytes(vec![b'x'; 2 << 20]),
    );
    mirror(&s, "huge", &feed);
    let message = failed_with(&sync(&s, "huge"));
    assert!(
        message.contains("more than this server's maximum blob size of 1048576"),
        "{message}"
    );
    assert_eq!(feed.layer_downloads(), 0);
}
