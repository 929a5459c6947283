//! Blobs in S3-compatible object storage (`--blob-store s3://…`), against a
//! real S3 server (s3s-fs, `WHARF_TEST_S3S_BIN`): pushes and pulls with
//! docker and skopeo, the presigned redirect, two nodes sharing nothing but
//! MongoDB and the bucket, an outage mid-push, and moving an installation's
//! blobs into a bucket.

use crate::registry_support::*;
use crate::scaling::{install_plugin, mongo_db_url, plugin_names, skopeo_pull, wait_until};
use crate::support::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "wharf-e2e";
const ACCESS_KEY: &str = "wharf-test-key";
const SECRET_KEY: &str = "wharf-test-secret-123";

/// A real S3 server over a directory of its own; buckets are its
/// sub-directories, objects files below them.
struct S3 {
    child: Option<Child>,
    root: tempfile::TempDir,
    port: u16,
}

impl S3 {
    fn start() -> S3 {
        let root = scratch();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let mut s3 = S3 {
            child: None,
            root,
            port: free_port(),
        };
        s3.resume();
        s3
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start (again) on the same port and directory.
    fn resume(&mut self) {
        let bin = std::env::var("WHARF_TEST_S3S_BIN")
            .expect("WHARF_TEST_S3S_BIN: run through scripts/test.sh, which builds s3s-fs");
        let log = std::fs::File::create(self.root.path().join("s3s.log")).unwrap();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `--s3-*` flags, and `--blob-store` with `prefix`.
    fn flags(&self, prefix: &str) -> Vec<String> {
        let mut f = vec!["--blob-store".to_string(), self.location(prefix)];
        f.extend(self.access());
        f
    }

    fn location(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    fn access(&self) -> Vec<String> {
        [
            "--s3-endpoint",
            &self.endpoint(),
            "--s3-access-key-id",
            ACCESS_KEY,
            "--s3-secret-access-key",
            SECRET_KEY,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The file s3s-fs keeps blob `digest` (`sha256:…`) in.
    fn object_file(&self, prefix: &str, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.root
            .path()
            .join(BUCKET)
            .join(prefix)
            .join("blobs/sha256")
            .join(hex)
    }

    /// Digests of the blobs under `prefix`.
    fn blobs(&self, prefix: &str) -> Vec<String> {
        let dir = self
            .root
            .path()
            .join(BUCKET)
            .join(prefix)
            .join("blobs/sha256");
        let mut out: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.len() == 64)
                    .map(|n| format!("sha256:{n}"))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start_on(s3: &S3, prefix: &str, extra: &[&str]) -> Server {
    let flags = s3.flags(prefix);
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(extra);
    Server::start_with_plugin_dir(&env_path("WHARF_PLUGIN_DIR"), &args)
}

/// Blob files in a data directory's own store (not its cache of the bucket).
fn local_blobs(s: &Server) -> usize {
    walk(&s.data_dir().join("blobs/sha256"))
}

fn walk(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.map(|e| e.unwrap().path())
        .map(|p| if p.is_dir() { walk(&p) } else { 1 })
        .sum()
}

/// The layer digests of `name:latest` as `s` serves it.
fn layers(s: &Server, name: &str) -> Vec<String> {
    layers_of(s, name, "latest")
}

/// The layer digests of `name:reference` as `s` serves it.
fn layers_of(s: &Server, name: &str, reference: &str) -> Vec<String> {
    let r = request(
        s,
        "GET",
        &format!("/v2/{name}/manifests/{reference}"),
        &[("Accept", DOCKER_ACCEPT)],
    );
    assert_eq!(r.status(), 200, "{name}:{reference}");
    let m: Value = r.json().unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn docker_pushes_and_pulls_with_blobs_in_a_bucket() {
    let s3 = S3::start();
    let s = start_on(&s3, "push", &[]);
    let (code, status) = s.get_json("/api/v1/status");
    assert_eq!(code, 200);
    assert_eq!(status["storage"]["blobs"]["ok"], true, "{status}");
    assert!(
        status["storage"]["blobs"]["location"]
            .as_str()
            .unwrap()
            .contains("s3://wharf-e2e/push"),
        "{status}"
    );

    let name = format!("{}/bucket/app:v1", s.addr);
    let tmp = scratch();
    let config = tmp.path().join("docker");
    let docker_cfg = || docker_with_config(&config);
    docker_load_busybox_as(&name);
    must(docker_cfg().args(["login", &s.addr, "-u", "admin", "-p", ADMIN_PASSWORD]));
    let out = must(docker_cfg().args(["push", &name]));
    assert!(out.contains("digest: sha256:"), "{out}");

    // The layers are objects in the bucket; the data directory holds none.
    let in_bucket = s3.blobs("push");
    let pushed = layers_of(&s, "bucket/app", "v1");
    for l in &pushed {
        assert!(in_bucket.contains(l), "{l} in the bucket: {in_bucket:?}");
    }
    assert_eq!(local_blobs(&s), 0, "no blob in <data-dir>/blobs/sha256");

    must(docker().args(["rmi", "-f", &name]));
    let out = docker_pull_run_cat(&name, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");
    let _ = run(docker().args(["rmi", "-f", &name]));

    // Range reads stream from the bucket.
    let layer = &pushed[0];
    let whole = request(&s, "GET", &format!("/v2/bucket/app/blobs/{layer}"), &[]);
    assert_eq!(whole.status(), 200);
    let whole = whole.bytes().unwrap();
    assert_eq!(&sha256_digest(&whole), layer);
    let part = request(
        &s,
        "GET",
        &format!("/v2/bucket/app/blobs/{layer}"),
        &[("Range", "bytes=10-99")],
    );
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().unwrap(), whole.slice(10..100));

    // fsck reads the bucket.
    let out = must(
        Command::new(env_path("WHARF_BIN"))
            .args(["--output", "json", "fsck", "--data-dir"])
            .arg(s.data_dir())
            .args(s3.flags("push")),
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["checked"].as_u64().unwrap(), in_bucket.len() as u64);
    assert_eq!(report["corrupt"], json!([]));
}

#[test]
fn pulls_are_redirected_to_short_lived_presigned_urls() {
    let s3 = S3::start();
    let s = start_on(&s3, "redirect", &["--blob-redirect", "5m"]);
    docker_repo(&s, "pub", "open/app", json!({}));
    s.import_and_publish("pub", &images_dir().join("busybox.tar"));
    s.create_repo(json!({
        "id": "safe", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "safe/app", "protected": true},
    }));
    s.import_and_publish("safe", &images_dir().join("busybox.tar"));

    let layer = layers(&s, "open/app")[0].clone();
    let blob = format!("/v2/open/app/blobs/{layer}");
    let r = no_redirects().get(s.url(&blob)).send().unwrap();
    assert_eq!(r.status(), 307);
    let location = header(&r, "location");
    assert!(
        location.starts_with(&s3.endpoint()),
        "to the bucket: {location}"
    );
    assert!(location.contains("X-Amz-Expires=300"), "{location}");
    let bytes = anonymous_client().get(&location).send().unwrap();
    assert_eq!(bytes.status(), 200);
    assert_eq!(sha256_digest(&bytes.bytes().unwrap()), layer);
    // HEAD answers here, without a redirect.
    let head = request(&s, "HEAD", &blob, &[]);
    assert_eq!(head.status(), 200);
    assert!(head.headers().contains_key("content-length"));

    // The attacks: a URL whose signature is altered, or stretched to
    // another object, is refused by the bucket.
    let at = location.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut forged = location.clone();
    let flipped = if &forged[at..at + 1] == "0" { "1" } else { "0" };
    forged.replace_range(at..at + 1, flipped);
    let r = anonymous_client().get(&forged).send().unwrap();
    assert_eq!(r.status(), 403, "an altered signature");
    let other = layers(&s, "open/app").last().unwrap().clone();
    if other != layer {
        let moved = location.replace(
            layer.strip_prefix("sha256:").unwrap(),
            other.strip_prefix("sha256:").unwrap(),
        );
        let r = anonymous_client().get(&moved).send().unwrap();
        assert_eq!(r.status(), 403, "another object with the same signature");
    }
    // A protected repository's blob gives an anonymous caller no URL.
    let safe_blob = format!("/v2/safe/app/blobs/{layer}");
    let r = no_redirects().get(s.url(&safe_blob)).send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("location").is_none());
    // Its readers are redirected like anyone.
    let r = no_redirects()
        .get(s.url(&safe_blob))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(r.status(), 307);

    // Clients follow the redirect.
    skopeo_pull(&s, "open/app");
    let name = format!("{}/open/app:latest", s.addr);
    let _ = run(docker().args(["rmi", "-f", &name]));
    let out = docker_pull_run_cat(&name, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");
    let _ = run(docker().args(["rmi", "-f", &name]));

    // A repository can opt out (from its next publish); a setting that is
    // not a boolean is refused.
    let r = s
        .http
        .patch(s.url("/api/v1/repositories/pub"))
        .json(&json!({"distributor_config": {"blob_redirect": "sometimes"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("blob_redirect"));
    let r = s
        .http
        .patch(s.url("/api/v1/repositories/pub"))
        .json(&json!({"distributor_config": {"blob_redirect": false}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = publish(&s, "pub");
    assert_eq!(t["state"], "finished", "{t}");
    let r = no_redirects().get(s.url(&blob)).send().unwrap();
    assert_eq!(r.status(), 200, "streamed once the repository opts out");
    assert_eq!(sha256_digest(&r.bytes().unwrap()), layer);
}

/// Two nodes and a worker with data directories of their own, sharing
/// MongoDB, RabbitMQ and the bucket only: an upload sent to one node is
/// imported by the worker (from the blob it was sealed as), what one node
/// stores the other serves, and a plugin installed on one loads on the
/// other.
#[test]
fn two_nodes_and_a_worker_share_only_mongodb_rabbitmq_and_the_bucket() {
    let s3 = S3::start();
    let db = mongo_db_url("bucket");
    let amqp = std::env::var("WHARF_TEST_AMQP_URL").expect("WHARF_TEST_AMQP_URL");
    let queue = format!("wharf.test.bucket.{}", std::process::id());
    let flags = s3.flags("nodes");
    let mut shared: Vec<&str> = flags.iter().map(String::as_str).collect();
    shared.extend(["--db", &db, "--broker", &amqp, "--broker-queue", &queue]);
    shared.extend(["--builtin-plugins", "false"]);
    let dirs = scratch();
    let plugin_dir = crate::scaling::docker_only(dirs.path());
    let mut node_args = shared.clone();
    node_args.extend(["--workers", "0"]);
    let (a, b) = (
        Server::spawn(Some(&dirs.path().join("a")), &plugin_dir, &node_args),
        Server::spawn(Some(&dirs.path().join("b")), &plugin_dir, &node_args),
    );
    let (a, b) = (a.ready(), b.ready());
    let worker_log = dirs.path().join("worker.log");
    let mut worker = Command::new(env_path("WHARF_BIN"))
        .args(["worker", "--workers", "1", "--data-dir"])
        .arg(dirs.path().join("w"))
        .arg("--plugin-dir")
        .arg(&plugin_dir)
        .args(&shared)
        .args(ALLOW_LOOPBACK)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&worker_log).unwrap())
        .spawn()
        .expect("start wharf worker");
    let worker_pid = worker.id();
    let _stop_worker = Killed(&mut worker);

    docker_repo(&a, "bb", "shared/busybox", json!({}));
    let upload = a.upload(&images_dir().join("busybox.tar"), 1 << 20);
    let t = a.repo_task("bb", "import", json!({"upload_id": upload}));
    assert_eq!(
        t["state"],
        "finished",
        "import: {t}\n{}",
        std::fs::read_to_string(&worker_log).unwrap_or_default()
    );
    assert!(
        t["worker"]
            .as_str()
            .is_some_and(|w| w.ends_with(&format!("-{worker_pid}"))),
        "the worker ran it: {t}"
    );
    let t = b.repo_task("bb", "publish", json!({}));
    assert_eq!(t["state"], "finished", "publish: {t}");
    // The publish ran on the worker: each node learns of it from the store.
    for s in [&a, &b] {
        wait_until(
            "both nodes serve the publication",
            Duration::from_secs(15),
            || tags(s, "shared/busybox") == ["latest"],
        );
    }
    assert_eq!(
        skopeo_pull(&a, "shared/busybox"),
        skopeo_pull(&b, "shared/busybox")
    );
    assert_eq!(local_blobs(&a) + local_blobs(&b), 0);

    // A plugin installed on A: its component reaches B through the bucket.
    install_plugin(&a, "file.wasm");
    wait_until(
        "node B loads the plugin installed on A",
        Duration::from_secs(20),
        || plugin_names(&b).contains(&"file".to_string()),
    );
    // Orphan cleanup keeps the component.
    cleanup_now(&a);
    let wasm = std::fs::read(env_path("WHARF_PLUGIN_DIR").join("file.wasm")).unwrap();
    assert!(s3.object_file("nodes", &sha256_digest(&wasm)).exists());
}

/// An upload (`/api/v1/uploads`) sent chunk by chunk to two nodes in turn,
/// which share only MongoDB and the bucket: each takes the chunk at the
/// offset the other recorded and refuses a replayed one with that offset;
/// a chunk sent while the bucket is down gets a clear 503 and goes through
/// when resent; either node imports the upload, which then takes no more
/// chunks and imports again from the same blob; a deleted upload leaves
/// nothing in the bucket, and neither node keeps a file of any.
#[test]
fn an_upload_whose_chunks_reach_different_nodes_is_imported_by_either() {
    let mut s3 = S3::start();
    let (_dirs, a, b) = two_nodes(&s3, "spread-upload");
    let bytes = std::fs::read(images_dir().join("busybox.tar")).unwrap();
    let (status, v) = a.post_json("/api/v1/uploads", &json!({"size": bytes.len()}));
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let put = |s: &Server, offset: usize, part: &[u8]| {
        s.http
            .put(s.url(&format!("/api/v1/uploads/{id}?offset={offset}")))
            .body(part.to_vec())
            .send()
            .unwrap()
    };
    let mut offset = 0;
    for (i, part) in bytes.chunks(bytes.len() / 5 + 1).enumerate() {
        let (to, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        if i == 1 {
            let r = put(to, 0, part);
            assert_eq!(r.status(), 416, "a replayed chunk");
            let text = r.text().unwrap();
            assert!(text.contains(&format!("at offset {offset} ")), "{text}");
        }
        if i == 2 {
            s3.stop();
            let r = put(to, offset, part);
            assert_eq!(r.status(), 503, "a chunk while the bucket is down");
            let text = r.text().unwrap();
            assert!(text.contains("object storage"), "{text}");
            s3.resume();
        }
        let r = put(to, offset, part);
        assert_eq!(r.status(), 200, "chunk {i}: {}", r.text().unwrap());
        offset += part.len();
        let (_, v) = other.get_json(&format!("/api/v1/uploads/{id}"));
        assert_eq!(v["offset"], offset, "the other node sees chunk {i}: {v}");
    }

    docker_repo(&b, "spread", "spread/busybox", json!({}));
    let kept = json!({"upload_id": id, "delete_upload": false});
    let t = b.repo_task("spread", "import", kept);
    assert_eq!(t["state"], "finished", "import on B: {t}");
    let (_, v) = a.get_json(&format!("/api/v1/uploads/{id}"));
    assert_eq!(v["sealed"], sha256_digest(&bytes), "{v}");
    let r = put(&a, offset, b"more");
    assert_eq!(r.status(), 409, "a chunk after the import");
    assert!(r.text().unwrap().contains("upload-frozen"));
    docker_repo(&a, "again", "spread/again", json!({}));
    let t = a.repo_task("again", "import", json!({"upload_id": id}));
    assert_eq!(t["state"], "finished", "the same upload imported on A: {t}");
    let (status, _) = b.get_json(&format!("/api/v1/uploads/{id}"));
    assert_eq!(
        status, 404,
        "an import deletes its upload unless told not to"
    );
    for (s, repo, name) in [
        (&a, "spread", "spread/busybox"),
        (&b, "again", "spread/again"),
    ] {
        let t = s.repo_task(repo, "publish", json!({}));
        assert_eq!(t["state"], "finished", "publish: {t}");
        // The other node learns of the publication from the store.
        wait_until(
            "both nodes serve the publication",
            Duration::from_secs(15),
            || tags(&a, name) == ["latest"] && tags(&b, name) == ["latest"],
        );
    }
    assert_eq!(
        layers_of(&b, "spread/busybox", "latest"),
        layers_of(&a, "spread/again", "latest")
    );

    // A deleted upload: its session leaves the bucket.
    let (_, v) = b.post_json("/api/v1/uploads", &json!({}));
    let gone = v["id"].as_str().unwrap().to_string();
    let r = b
        .http
        .put(b.url(&format!("/api/v1/uploads/{gone}?offset=0")))
        .body(b"half".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let session = s3
        .root
        .path()
        .join(BUCKET)
        .join("spread-upload/sessions")
        .join(gone.replace('-', ""));
    assert!(walk(&session) > 0, "the upload's chunk is in the bucket");
    let r = a
        .http
        .delete(a.url(&format!("/api/v1/uploads/{gone}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(walk(&session), 0, "nothing of a deleted upload stays");
    for s in [&a, &b] {
        assert_eq!(walk(&s.data_dir().join("uploads")), 0, "no upload file");
    }
}

/// The bucket goes away in the middle of a push: a clear error within
/// seconds, nothing visible under the digest, readiness fails; once it is
/// back the same push succeeds.
#[test]
fn an_object_storage_outage_fails_a_push_clearly_and_the_retry_succeeds() {
    let mut s3 = S3::start();
    let s = start_on(&s3, "outage", &[]);
    crate::registry_push::push_repo(&s, "outage", "outage/app", true);
    let blob: Vec<u8> = (0..(12u32 << 20)).map(|i| (i % 251) as u8).collect();
    let digest = sha256_digest(&blob);
    let post = |s: &Server| {
        s.http
            .post(s.url("/v2/outage/app/blobs/uploads/"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .unwrap()
    };
    let start = |s: &Server| -> String {
        let r = post(s);
        assert_eq!(r.status(), 202, "a session starts");
        absolute(s, &header(&r, "location"))
    };
    let finish = |s: &Server, url: &str| -> (u16, String) {
        let r = s
            .http
            .put(crate::conformance::with_query(url, "digest", &digest))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .body(blob.clone())
            .send()
            .unwrap();
        let code = r.status().as_u16();
        (code, r.text().unwrap_or_default())
    };

    // The session starts; the bucket goes before the bytes arrive. The
    // PUT fails (503: the session is not known to be gone, so the client
    // tries again rather than start over), and so does a new session, at
    // once and saying why.
    let session = start(&s);
    s3.stop();
    let started = Instant::now();
    let (code, body) = finish(&s, &session);
    assert_eq!(code, 503, "{body}");
    assert!(body.to_lowercase().contains("object storage"), "{body}");
    let r = post(&s);
    let (code, body) = (r.status().as_u16(), r.text().unwrap());
    assert!(code >= 500, "{code}: {body}");
    assert!(body.to_lowercase().contains("object storage"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failed in {:?}",
        started.elapsed()
    );
    let r = anonymous_client().get(s.url("/readyz")).send().unwrap();
    assert_eq!(r.status(), 503);

    // Back: nothing was stored, and the same PUT on the same session works.
    s3.resume();
    assert!(
        !s3.blobs("outage").contains(&digest),
        "nothing under the digest"
    );
    let (code, body) = finish(&s, &session);
    assert_eq!(code, 201, "{body}");
    assert!(s3.blobs("outage").contains(&digest));
    let r = request(&s, "HEAD", &format!("/v2/outage/app/blobs/{digest}"), &[]);
    assert_eq!(r.status(), 200);
    let r = anonymous_client().get(s.url("/readyz")).send().unwrap();
    assert_eq!(r.status(), 200);
}

/// An installation on the data directory moves its blobs into a bucket,
/// twice (the second run copies nothing), then serves from it; fsck finds a
/// tampered object.
#[test]
fn an_installation_migrates_its_blobs_into_a_bucket() {
    let s3 = S3::start();
    let mut s = Server::start();
    docker_repo(&s, "bb", "moved/busybox", json!({}));
    s.import_and_publish("bb", &images_dir().join("busybox.tar"));
    let before = skopeo_pull(&s, "moved/busybox");
    let stored = local_blobs(&s);
    assert!(stored > 0);
    s.kill();

    let migrate = || {
        let out = must(
            Command::new(env_path("WHARF_BIN"))
                .args(["--output", "json", "blobs", "migrate", "--data-dir"])
                .arg(s.data_dir())
                .args(["--to", &s3.location("moved")])
                .args(s3.access()),
        );
        // The report, then (on stderr) the progress line.
        let start = out.find('{').expect("a JSON report");
        serde_json::Deserializer::from_str(&out[start..])
            .into_iter::<Value>()
            .next()
            .unwrap()
            .unwrap()
    };
    let first = migrate();
    assert_eq!(first["copied"].as_u64().unwrap(), stored as u64, "{first}");
    let again = migrate();
    assert_eq!(again["copied"], 0, "{again}");
    assert_eq!(again["skipped"].as_u64().unwrap(), stored as u64);

    // Served from the bucket alone.
    std::fs::remove_dir_all(s.data_dir().join("blobs/sha256")).unwrap();
    let flags = s3.flags("moved");
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let s2 = Server::start_on_data_dir(Some(&s.data_dir()), &env_path("WHARF_PLUGIN_DIR"), &args);
    assert_eq!(skopeo_pull(&s2, "moved/busybox"), before);
    drop(s2);

    let victim = s3.blobs("moved").into_iter().next().expect("a blob");
    std::fs::write(s3.object_file("moved", &victim), b"tampered").unwrap();
    let (ok, out) = run(Command::new(env_path("WHARF_BIN"))
        .args(["fsck", "--data-dir"])
        .arg(s.data_dir())
        .args(s3.flags("moved")));
    assert!(!ok, "fsck fails on a corrupt blob: {out}");
    assert!(out.contains(&victim), "{out}");
}

/// Kills a child process when dropped.
struct Killed<'a>(&'a mut Child);

impl Drop for Killed<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `Location` as a URL of `s` (a path, or already absolute).
fn absolute(s: &Server, location: &str) -> String {
    if location.starts_with("http") {
        location.to_string()
    } else {
        s.url(location)
    }
}

/// A registry token with `pull` on `name`, issued by `s` to the administrator.
fn admin_pull_token(s: &Server, name: &str) -> String {
    let scope = format!("repository:{name}:pull");
    let (code, v) = crate::auth::registry_token(s, &scope, Some(("admin", ADMIN_PASSWORD)));
    assert_eq!(code, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

/// The tags `s` serves for `name` (none when it serves no such name).
fn tags(s: &Server, name: &str) -> Vec<String> {
    let r = request(s, "GET", &format!("/v2/{name}/tags/list"), &[]);
    if r.status() != 200 {
        return Vec::new();
    }
    let v: Value = r.json().unwrap_or(Value::Null);
    v["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(String::from))
        .collect()
}

/// Two nodes with data directories of their own (in the returned scratch
/// directory, as `a` and `b`) sharing a MongoDB database and the bucket's
/// `prefix`, and nothing else.
fn two_nodes(s3: &S3, prefix: &str) -> (tempfile::TempDir, Server, Server) {
    let db = mongo_db_url(prefix);
    let flags = s3.flags(prefix);
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["--db", &db]);
    let dirs = scratch();
    let plugin_dir = env_path("WHARF_PLUGIN_DIR");
    let (a, b) = (
        Server::spawn(Some(&dirs.path().join("a")), &plugin_dir, &args),
        Server::spawn(Some(&dirs.path().join("b")), &plugin_dir, &args),
    );
    (dirs, a.ready(), b.ready())
}

/// Nodes with data directories of their own, sharing only MongoDB and the
/// bucket: a
/// repository created, protected and published through one is never served
/// anonymously by the other (a node counts a repository it has not read yet
/// as protected), an unprotected one is until it is protected through the
/// first, and a registry token from one node is good on the other (the key
/// is in the store) while a forged one is not.
#[test]
fn nodes_sharing_only_mongodb_and_the_bucket_agree_on_protection_and_tokens() {
    let s3 = S3::start();
    let (dirs, a, b) = two_nodes(&s3, "protection");
    assert!(
        !dirs.path().join("a/registry-token.key").exists()
            && !dirs.path().join("b/registry-token.key").exists(),
        "the key is not a file"
    );

    // Created, protected and published through A only.
    a.create_repo(json!({
        "id": "safe", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "team/safe", "protected": true},
    }));
    a.import_and_publish("safe", &images_dir().join("busybox.tar"));
    let manifest = "/v2/team/safe/manifests/latest";
    wait_until("B serves the publication", Duration::from_secs(15), || {
        let r = b
            .http
            .get(b.url(manifest))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .unwrap();
        r.status() == 200
    });
    // The attack: anonymous reads on B, at once and for a while after.
    for _ in 0..10 {
        for path in [manifest, "/v2/team/safe/tags/list"] {
            let r = anonymous_client().get(b.url(path)).send().unwrap();
            assert_eq!(r.status(), 401, "anonymous {path} on node B");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // A token issued by A pulls from B; one signed with another key does not.
    let token = admin_pull_token(&a, "team/safe");
    let with = |t: &str| {
        anonymous_client()
            .get(b.url(manifest))
            .bearer_auth(t)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(with(&token), 200, "a token from node A on node B");
    let other = Server::start();
    let forged = admin_pull_token(&other, "team/safe");
    assert_eq!(with(&forged), 401, "a token signed by another installation");

    // An unprotected repository made through A is public on B too.
    a.create_repo(json!({
        "id": "open", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "team/open"},
    }));
    a.import_and_publish("open", &images_dir().join("busybox.tar"));
    wait_until("B serves it anonymously", Duration::from_secs(15), || {
        anonymous_client()
            .get(b.url("/v2/team/open/manifests/latest"))
            .send()
            .unwrap()
            .status()
            == 200
    });
    // Protected through A, without a publish: B stops serving it
    // anonymously within about a second (it follows the publications), not
    // after its 30 s reload.
    let r = a
        .http
        .patch(a.url("/api/v1/repositories/open"))
        .json(&json!({"distributor_config": {"protected": true}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    wait_until("B protects it", Duration::from_secs(5), || {
        anonymous_client()
            .get(b.url("/v2/team/open/manifests/latest"))
            .send()
            .unwrap()
            .status()
            == 401
    });
    let r = b
        .http
        .get(b.url("/v2/team/open/manifests/latest"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "with credentials it still pulls");
}

/// A push whose requests a load balancer spreads over two nodes that share
/// MongoDB and the bucket only: the session started on A takes a chunk on
/// A and the next on B, is committed on A, and the manifest naming the
/// blob is accepted by B (which knows the repository received it); both
/// nodes serve the image. Then docker pushes to A and pulls from B, and a
/// streaming import of a `docker save` through B is pulled from A.
#[test]
fn a_chunked_push_spread_over_two_nodes_lands_once() {
    use crate::conformance::{OciClient, desc, expect, oci_manifest, with_query};
    let s3 = S3::start();
    let (_dirs, a, b) = two_nodes(&s3, "chunks");
    let (via_a, via_b) = (OciClient::admin_at(&a.base), OciClient::admin_at(&b.base));
    a.create_repo(json!({
        "id": "spread", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "spread/app", "auto_publish": true},
    }));

    let layer: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 253) as u8).collect();
    let digest = sha256_digest(&layer);
    let half = layer.len() / 2;
    // Chunks go with the administrator's credentials at once (a client
    // that first tries without them sends megabytes to a 401).
    let patch = |s: &Server, location: &str, from: usize, to: usize| {
        no_redirects()
            .patch(absolute(s, location))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{from}-{}", to - 1))
            .body(layer[from..to].to_vec())
            .send()
            .unwrap()
    };
    let chunk = |s: &Server, location: &str, from: usize, to: usize| -> String {
        let r = patch(s, location, from, to);
        assert_eq!(r.status(), 202, "PATCH {from}-{to}");
        header(&r, "location")
    };
    let location = via_a.start_upload("spread/app");
    let location = chunk(&a, &location, 0, half);
    // The second chunk reaches B, which never saw the session start.
    let location = chunk(&b, &location, half, layer.len());
    // A chunk at a wrong offset is refused by either node.
    let r = patch(&a, &location, 0, 10);
    assert_eq!(
        r.status().as_u16(),
        416,
        "a chunk at offset 0 of a session at {}",
        layer.len()
    );
    let r = via_a.send(
        "PUT",
        &with_query(&location, "digest", &digest),
        &[("Content-Type", "application/octet-stream")],
        &[],
    );
    expect(&r, 201);
    assert!(
        s3.blobs("chunks").contains(&digest),
        "stored once, in the bucket"
    );

    // The manifest goes to B; the config blob was pushed through A.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    via_a.push_blob("spread/app", config);
    let manifest = oci_manifest(
        desc("application/vnd.oci.image.config.v1+json", config),
        vec![desc("application/vnd.oci.image.layer.v1.tar", &layer)],
        json!({}),
    );
    let r = via_b.send(
        "PUT",
        "/v2/spread/app/manifests/v1",
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        &manifest,
    );
    expect(&r, 201);
    for s in [&a, &b] {
        wait_until(
            "both nodes serve the pushed blob",
            Duration::from_secs(15),
            || {
                let r = request(s, "GET", &format!("/v2/spread/app/blobs/{digest}"), &[]);
                r.status() == 200 && sha256_digest(&r.bytes().unwrap()) == digest
            },
        );
    }

    // docker pushes to A and pulls from B.
    let pushed = format!("{}/spread/docker:v1", a.addr);
    let pulled = format!("{}/spread/docker:v1", b.addr);
    let tmp = scratch();
    let config = tmp.path().join("docker");
    docker_load_busybox_as(&pushed);
    must(docker_with_config(&config).args(["login", &a.addr, "-u", "admin", "-p", ADMIN_PASSWORD]));
    must(docker_with_config(&config).args(["push", &pushed]));
    let _ = run(docker().args(["rmi", "-f", &pushed, &pulled]));
    wait_until("B serves the pushed tag", Duration::from_secs(15), || {
        tags(&b, "spread/docker").contains(&"v1".to_string())
    });
    let out = docker_pull_run_cat(&pulled, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");
    let _ = run(docker().args(["rmi", "-f", &pulled]));

    // A streaming import of a `docker save` through B, served by A.
    docker_repo(&b, "streamed", "spread/streamed", json!({}));
    let t = b.import_stream(
        "streamed",
        "",
        std::fs::read(images_dir().join("busybox.tar")).unwrap(),
    );
    assert_eq!(t["state"], "finished", "{t}");
    let t = publish(&b, "streamed");
    assert_eq!(t["state"], "finished", "{t}");
    wait_until("A serves B's import", Duration::from_secs(15), || {
        tags(&a, "spread/streamed").contains(&"latest".to_string())
    });
    skopeo_pull(&a, "spread/streamed");
}
