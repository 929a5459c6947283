//! Wharf on several machines (docs/scaling.md): two `wharf serve` nodes and
//! `wharf worker`s sharing MongoDB (`WHARF_TEST_MONGO_URL`), RabbitMQ
//! (`WHARF_TEST_AMQP_URL`) and one data directory; and the move of an
//! embedded installation to MongoDB with `wharf db export|import`.

use crate::registry_support::*;
use crate::support::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn service(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run through scripts/test.sh"))
}

/// A database of its own on the test MongoDB server.
pub(crate) fn mongo_db_url(what: &str) -> String {
    let base = service("WHARF_TEST_MONGO_URL");
    let (base, query) = match base.split_once('?') {
        Some((b, q)) => (b.to_string(), format!("?{q}")),
        None => (base, String::new()),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let base = base.trim_end_matches('/');
    format!(
        "{base}/wharf_e2e_{what}_{}_{nanos}{query}",
        std::process::id()
    )
}

/// A plugin directory with only the docker plugin (file arrives by install).
pub(crate) fn docker_only(dir: &Path) -> PathBuf {
    let pd = dir.join("builtin");
    std::fs::create_dir_all(&pd).unwrap();
    std::fs::copy(
        env_path("WHARF_PLUGIN_DIR").join("docker.wasm"),
        pd.join("docker.wasm"),
    )
    .unwrap();
    pd
}

/// What every process of one installation shares.
struct Cluster {
    dir: tempfile::TempDir,
    plugin_dir: PathBuf,
    db: String,
    amqp: String,
    queue: String,
}

impl Cluster {
    fn new(what: &str) -> Cluster {
        let dir = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
        let plugin_dir = docker_only(dir.path());
        Cluster {
            plugin_dir,
            db: mongo_db_url(what),
            amqp: service("WHARF_TEST_AMQP_URL"),
            queue: format!("wharf.test.scaling.{what}.{}", std::process::id()),
            dir,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn shared_args(&self) -> Vec<&str> {
        vec![
            "--db",
            &self.db,
            "--broker",
            &self.amqp,
            "--broker-queue",
            &self.queue,
        ]
    }

    /// An API/registry node (no task workers of its own), not yet ready.
    fn spawn_node(&self) -> Server {
        let mut args = self.shared_args();
        args.extend(["--workers", "0", "--builtin-plugins", "false"]);
        Server::spawn(Some(&self.data_dir()), &self.plugin_dir, &args)
    }

    fn worker(&self, n: usize) -> Worker {
        let log = std::fs::File::create(self.dir.path().join(format!("worker{n}.log"))).unwrap();
        let child = Command::new(env_path("WHARF_BIN"))
            .args(["worker", "--workers", "1", "--data-dir"])
            .arg(self.data_dir())
            .arg("--plugin-dir")
            .arg(&self.plugin_dir)
            .args(self.shared_args())
            .args(["--builtin-plugins", "false"])
            .args(ALLOW_LOOPBACK)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start wharf worker");
        Worker {
            child,
            log: self.dir.path().join(format!("worker{n}.log")),
        }
    }
}

struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    /// Tasks it runs record `<host>-<pid>` as their worker.
    fn runs(&self, task: &Value) -> bool {
        task["worker"]
            .as_str()
            .is_some_and(|w| w.ends_with(&format!("-{}", self.child.id())))
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- worker log ({}) ---\n{log}", self.log.display());
        }
    }
}

/// An upstream that answers every request with 404 after `delay`.
fn slow_feed(delay: Duration) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(1000) {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                std::thread::sleep(delay);
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    format!("http://{addr}")
}

fn submit(s: &Server, repo: &str, action: &str, body: Value) -> Value {
    let (code, t) = s.post_json(&format!("/api/v1/repositories/{repo}/{action}"), &body);
    assert_eq!(code, 202, "{action} {repo}: {t}");
    t
}

pub(crate) fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Install the built plugin component `file` (e.g. `file.wasm`) through `s`'s API.
pub(crate) fn install_plugin(s: &Server, file: &str) {
    let r = s
        .http
        .post(s.url("/api/v1/plugins"))
        .header("content-type", "application/wasm")
        .body(std::fs::read(env_path("WHARF_PLUGIN_DIR").join(file)).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap());
}

pub(crate) fn plugin_names(s: &Server) -> Vec<String> {
    let (code, v) = s.get_json("/api/v1/plugins");
    assert_eq!(code, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

/// Pull every blob of `name:latest` from `s` with skopeo; returns the
/// manifest digest it saw.
pub(crate) fn skopeo_pull(s: &Server, name: &str) -> String {
    let out = scratch();
    must(skopeo().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/{name}:latest", s.addr),
        &format!("dir:{}", out.path().display()),
    ]));
    let manifest = std::fs::read(out.path().join("manifest.json")).unwrap();
    sha256_digest(&manifest)
}

#[test]
fn two_nodes_and_two_workers_share_mongodb_rabbitmq_and_the_data_directory() {
    let c = Cluster::new("nodes");
    // Both nodes start at once on an empty database and data directory:
    // one creates the first administrator and the registry token key, the
    // other uses them.
    let (a, b) = (c.spawn_node(), c.spawn_node());
    let (a, b) = (a.ready(), b.ready());
    let w1 = c.worker(1);
    let w2 = c.worker(2);

    // Users and login tokens live in the shared store.
    let (code, v) = a.post_json(
        "/api/v1/users",
        &json!({"login": "ops", "password": "ops-password-1", "roles": ["super-users"]}),
    );
    assert_eq!(code, 201, "{v}");
    let ops_token = b.login("ops", "ops-password-1");
    let via_a = a.client_with_token(&ops_token);
    assert_eq!(
        via_a
            .get(a.url("/api/v1/repositories"))
            .send()
            .unwrap()
            .status(),
        200,
        "a token issued by node B works on node A"
    );

    // Upload through A, import (on a worker), publish through B.
    docker_repo(&a, "bb", "test/busybox", json!({}));
    let upload = a.upload(&images_dir().join("busybox.tar"), 1 << 20);
    let t = a.repo_task("bb", "import", json!({"upload_id": upload}));
    assert_eq!(t["state"], "finished", "import: {t}");
    assert!(w1.runs(&t) || w2.runs(&t), "import ran on a worker: {t}");
    let t = b.repo_task("bb", "publish", json!({}));
    assert_eq!(t["state"], "finished", "publish: {t}");

    // Both nodes serve the publication (each follows the shared store).
    for s in [&a, &b] {
        wait_until(
            "the publication reaches both nodes",
            Duration::from_secs(15),
            || {
                // The repository exists on both at once; its tag comes with
                // the publication.
                let r = s
                    .http
                    .get(s.url("/v2/test/busybox/tags/list"))
                    .send()
                    .unwrap();
                r.status() == 200 && r.json::<Value>().unwrap()["tags"] == json!(["latest"])
            },
        );
    }
    let digest_a = skopeo_pull(&a, "test/busybox");
    let digest_b = skopeo_pull(&b, "test/busybox");
    assert_eq!(digest_a, digest_b, "both nodes serve the same manifest");
    let name = format!("{}/test/busybox:latest", b.addr);
    let _ = run(docker().args(["rmi", "-f", &name]));
    must(docker().args(["pull", &name]));
    let _ = run(docker().args(["rmi", "-f", &name]));

    // Tasks spread over the workers: four slow syncs on four repositories
    // (one task per worker at a time, so both must take some).
    let feed = slow_feed(Duration::from_millis(800));
    for r in ["s1", "s2", "s3", "s4"] {
        a.create_repo(json!({"id": r, "content_type": "docker", "importer_config": {"feed": feed, "upstream_name": "x"}}));
    }
    let tasks: Vec<Value> = ["s1", "s2", "s3", "s4"]
        .iter()
        .enumerate()
        .map(|(i, r)| submit(if i % 2 == 0 { &a } else { &b }, r, "sync", json!({})))
        .collect();
    let done: Vec<Value> = tasks.iter().map(|t| b.wait_task(t)).collect();
    for t in &done {
        assert_eq!(t["state"], "error", "the slow feed answers 404: {t}");
    }
    assert!(
        done.iter().any(|t| w1.runs(t)) && done.iter().any(|t| w2.runs(t)),
        "tasks ran on both workers: {:?}",
        done.iter().map(|t| t["worker"].clone()).collect::<Vec<_>>()
    );

    // SIGKILL of the worker running a task loses nothing: the other takes it.
    let feed = slow_feed(Duration::from_secs(3));
    a.create_repo(json!({"id": "k", "content_type": "docker", "importer_config": {"feed": feed, "upstream_name": "x"}}));
    let t = submit(&b, "k", "sync", json!({}));
    let id = t["id"].as_str().unwrap().to_string();
    let mut running = Value::Null;
    wait_until("the sync starts", Duration::from_secs(30), || {
        running = a.get_json(&format!("/api/v1/tasks/{id}")).1;
        running["state"] == "running"
    });
    let (mut victim, survivor) = if w1.runs(&running) {
        (w1, w2)
    } else {
        assert!(w2.runs(&running), "{running}");
        (w2, w1)
    };
    victim.kill();
    let t = a.wait_task(&t);
    assert!(survivor.runs(&t), "the other worker ran it again: {t}");
    assert_eq!(t["state"], "error", "{t}");
    // Not left locked, nothing partial: the repository takes new work.
    let upload = b.upload(&images_dir().join("busybox.tar"), 4 << 20);
    let t = a.repo_task("k", "import", json!({"upload_id": upload}));
    assert_eq!(t["state"], "finished", "{t}");
    let (_, repo) = b.get_json("/api/v1/repositories/k");
    assert!(
        repo["content_counts"]["tag"].as_u64().unwrap() >= 1,
        "{repo}"
    );

    // A plugin installed on A reaches B (and the workers); removed on B, it
    // leaves A.
    assert!(!plugin_names(&b).contains(&"file".to_string()));
    install_plugin(&a, "file.wasm");
    wait_until(
        "node B loads the plugin installed on A",
        Duration::from_secs(15),
        || plugin_names(&b).contains(&"file".to_string()),
    );
    // A worker runs the new content type; node A serves what it published.
    b.create_repo(
        json!({"id": "files", "content_type": "file", "distributor_config": {"base_path": "pub/f"}}),
    );
    let doc = c.dir.path().join("hello.txt");
    std::fs::write(&doc, b"hello from node B\n").unwrap();
    let up = b.upload(&doc, 1 << 20);
    let t = b.repo_task(
        "files",
        "import",
        json!({"upload_id": up, "params": {"relative_path": "docs/hello.txt"}}),
    );
    assert_eq!(t["state"], "finished", "{t}");
    let t = b.repo_task("files", "publish", json!({}));
    assert_eq!(t["state"], "finished", "{t}");
    wait_until("node A serves the file", Duration::from_secs(15), || {
        a.http
            .get(a.url("/files/pub/f/docs/hello.txt"))
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    let r = b
        .http
        .delete(b.url("/api/v1/plugins/file?force=true"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    wait_until(
        "node A unloads the plugin removed on B",
        Duration::from_secs(15),
        || !plugin_names(&a).contains(&"file".to_string()),
    );
    drop(survivor);
    drop(victim);
}

#[test]
fn an_embedded_installation_moves_to_mongodb() {
    let tmp = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let plugins = env_path("WHARF_PLUGIN_DIR");
    let mut old = Server::start_with_plugin_dir(&plugins, &[]);
    docker_repo(&old, "bb", "test/busybox", json!({}));
    old.import_and_publish("bb", &images_dir().join("busybox.tar"));
    let (code, v) = old.post_json(
        "/api/v1/users",
        &json!({"login": "dev", "password": "dev-password-1"}),
    );
    assert_eq!(code, 201, "{v}");
    let (_, repos_before) = old.get_json("/api/v1/repositories/bb");
    let (_, versions_before) = old.get_json("/api/v1/repositories/bb/versions");
    assert_eq!(versions_before["items"].as_array().unwrap().len(), 2);
    let digest_before = skopeo_pull(&old, "test/busybox");
    let (_, status) = old.get_json("/api/v1/status");
    assert_eq!(status["storage"]["db"]["backend"], "sqlite", "{status}");
    assert_eq!(status["storage"]["db"]["ok"], true, "{status}");
    // Stop the server, then move its metadata.
    old.kill();
    let data = old.data_dir();
    let dump = tmp.path().join("dump.jsonl");
    let out = Command::new(env_path("WHARF_BIN"))
        .args(["db", "export", "--include-secrets", "--data-dir"])
        .arg(&data)
        .stdout(std::fs::File::create(&dump).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = mongo_db_url("moved");
    let out = Command::new(env_path("WHARF_BIN"))
        .args(["db", "import", "--db", &db])
        .stdin(std::fs::File::open(&dump).unwrap())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    assert!(said.contains("1 repositories"), "{said}");
    // A second import into the same database is refused, changing nothing.
    let again = Command::new(env_path("WHARF_BIN"))
        .args(["db", "import", "--db", &db])
        .stdin(std::fs::File::open(&dump).unwrap())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("empty database"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The same data directory (blobs), the metadata now in MongoDB.
    let new = Server::start_on_data_dir(Some(&data), &plugins, &["--db", &db]);
    let (_, status) = new.get_json("/api/v1/status");
    assert_eq!(status["storage"]["db"]["backend"], "mongodb", "{status}");
    assert_eq!(status["storage"]["db"]["ok"], true, "{status}");
    let (_, repo) = new.get_json("/api/v1/repositories/bb");
    assert_eq!(
        repo["content_counts"], repos_before["content_counts"],
        "{repo}"
    );
    assert!(
        repo["content_counts"]["tag"].as_u64().unwrap() >= 1,
        "{repo}"
    );
    let (_, versions_after) = new.get_json("/api/v1/repositories/bb/versions");
    assert_eq!(versions_after, versions_before, "the versions move too");
    new.login("dev", "dev-password-1");
    assert_eq!(skopeo_pull(&new, "test/busybox"), digest_before);
    // The SQLite file is no longer needed.
    std::fs::remove_file(data.join("wharf.db")).unwrap();
    let (code, _) = new.get_json("/api/v1/repositories/bb");
    assert_eq!(code, 200, "the server does not use the SQLite file");
    drop(old);
}

/// Pushes to one repository through two nodes at once each make a version,
/// and MongoDB numbers them 1..N without a gap or a duplicate.
#[test]
fn versions_are_numbered_without_gaps_when_two_nodes_push_at_once() {
    use crate::conformance::{OCI_MANIFEST, OciClient, push_image};
    let dir = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let plugins = docker_only(dir.path());
    let db = mongo_db_url("versions");
    let data = dir.path().join("data");
    let args = ["--db", db.as_str()];
    let (a, b) = (
        Server::spawn(Some(&data), &plugins, &args),
        Server::spawn(Some(&data), &plugins, &args),
    );
    let (a, b) = (a.ready(), b.ready());
    // The first push creates the repository (version 1 holds the image).
    let image = push_image(&OciClient::admin_at(&a.base), "team/busy", "first", "busy");
    const TAGS: usize = 12;
    let bases = [a.base.clone(), b.base.clone()];
    let pushes: Vec<_> = (0..TAGS)
        .map(|i| {
            let base = bases[i % 2].clone();
            let manifest = image.manifest.clone();
            std::thread::spawn(move || {
                OciClient::admin_at(&base).push_manifest(
                    "team/busy",
                    &format!("t{i}"),
                    OCI_MANIFEST,
                    &manifest,
                )
            })
        })
        .collect();
    for p in pushes {
        assert_eq!(p.join().unwrap(), image.digest);
    }
    let (status, page) = a.get_json("/api/v1/repositories/team-busy/versions?limit=1000");
    assert_eq!(status, 200, "{page}");
    let numbers: Vec<u64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["number"].as_u64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (0..=(TAGS as u64 + 1)).collect::<Vec<_>>(),
        "{page}"
    );
    for v in &page["items"].as_array().unwrap()[2..] {
        assert_eq!(v["cause"], "push", "{v}");
        assert_eq!(v["added"]["tag"], 1, "each push added its tag: {v}");
    }
    let (_, latest) = b.get_json("/api/v1/repositories/team-busy");
    assert_eq!(latest["content_counts"]["tag"], TAGS as u64 + 1, "{latest}");
}

/// The tasks of `kind` on `repo`, oldest first.
fn tasks_of(s: &Server, kind: &str, repo: &str) -> Vec<Value> {
    let (status, v) = s.get_json("/api/v1/tasks?limit=1000");
    assert_eq!(status, 200, "{v}");
    let mut out: Vec<Value> = v["items"]
        .as_array()
        .or(v.as_array())
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == kind && t["input"]["repository"] == repo)
        .cloned()
        .collect();
    out.sort_by(|a, b| a["created_at"].as_str().cmp(&b["created_at"].as_str()));
    out
}

#[test]
fn a_schedule_runs_each_due_time_once_with_two_nodes_looking() {
    let c = Cluster::new("schedules");
    let (a, b) = (c.spawn_node(), c.spawn_node());
    let (a, b) = (a.ready(), b.ready());
    let _w = c.worker(1);
    docker_repo(&a, "timed", "test/timed", json!({}));
    // Three runs, two seconds apart, the first two seconds from now.
    let start =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(2))
            .to_string();
    let (status, made) = a.post_json(
        "/api/v1/schedules",
        &json!({"job": {"kind": "publish", "repository": "timed"},
            "interval": format!("R3/{start}/PT2S")}),
    );
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(made["next_run"].as_str().unwrap()[..19], start[..19]);
    // Both nodes see it.
    let (status, _) = b.get_json(&format!("/api/v1/schedules/{id}"));
    assert_eq!(status, 200);
    wait_until("three runs", Duration::from_secs(30), || {
        let (_, s) = b.get_json(&format!("/api/v1/schedules/{id}"));
        s["runs"] == 3 && s["next_run"].is_null()
    });
    // Give a duplicate time to show up, then count.
    std::thread::sleep(Duration::from_secs(3));
    let runs = tasks_of(&a, "publish", "timed");
    assert_eq!(runs.len(), 3, "one task per due time: {runs:#?}");
    for t in &runs {
        let t = a.wait_task(t);
        assert_eq!(t["state"], "finished", "{t}");
    }
    // On time: each task created within a couple of seconds of its due time.
    let due0 = humantime::parse_rfc3339_weak(&start).unwrap();
    for (n, t) in runs.iter().enumerate() {
        let created = humantime::parse_rfc3339_weak(t["created_at"].as_str().unwrap()).unwrap();
        let due = due0 + Duration::from_secs(2 * n as u64);
        let late = created.duration_since(due).unwrap_or_default();
        assert!(
            created + Duration::from_millis(50) >= due && late < Duration::from_secs(3),
            "run {n} due {due:?} created {created:?}"
        );
    }
}

/// A user holding many permissions (a large set is kept between its
/// requests, `auth::PermissionSets`) loses one the moment it is revoked
/// through another node, and gains it back the moment it is granted; what
/// it may not see stays hidden meanwhile.
#[test]
fn a_revoke_through_one_node_holds_at_once_on_the_other_for_a_user_with_many_permissions() {
    let c = Cluster::new("perms");
    let (a, b) = (c.spawn_node(), c.spawn_node());
    let (a, b) = (a.ready(), b.ready());
    let (code, v) = a.post_json(
        "/api/v1/users",
        &json!({"login": "bot", "password": "bot-password-1"}),
    );
    assert_eq!(code, 201, "{v}");
    let change = |s: &Server, what: &str, resource: &str| {
        let (code, v) = s.post_json(
            &format!("/api/v1/permissions/{what}"),
            &json!({"login": "bot", "resource": resource, "operations": ["read"]}),
        );
        assert_eq!(code, 200, "{what} {resource}: {v}");
    };
    // As many grants as a CI user gets from creating 80 repositories by
    // pushing: past what is read each time.
    for i in 0..80 {
        change(&a, "grant", &format!("/repositories/r{i}"));
    }
    for id in ["target", "other"] {
        docker_repo(&a, id, &format!("perm/{id}"), json!({}));
    }
    change(&a, "grant", "/repositories/target");
    let bot = b.client_with_token(&b.login("bot", "bot-password-1"));
    let get = |id: &str| {
        bot.get(b.url(&format!("/api/v1/repositories/{id}")))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    // The first requests read the set and keep it; later ones use it.
    for _ in 0..4 {
        assert_eq!(get("target"), 200);
        assert_eq!(get("other"), 403, "never granted");
    }
    change(&a, "revoke", "/repositories/target");
    assert_eq!(
        get("target"),
        403,
        "revoked through node A: refused on B at once"
    );
    assert_eq!(get("target"), 403);
    change(&a, "grant", "/repositories/target");
    assert_eq!(get("target"), 200, "granted again through A");
    assert_eq!(get("other"), 403);
}
