//! Content types arriving while the server runs: install, use, upgrade under
//! a running task, restart from the compiled cache, remove; and the sandbox
//! refusing a plugin that tries to reach what it must not.

use crate::support::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::Duration;

/// The binary's own plugins left out: the plugin directory says exactly
/// what is loaded.
const NO_BUILTIN: [&str; 2] = ["--builtin-plugins", "false"];

/// A plugin directory with only the docker plugin.
fn docker_only(dir: &std::path::Path) -> std::path::PathBuf {
    let pd = dir.join("builtin");
    std::fs::create_dir_all(&pd).unwrap();
    std::fs::copy(
        env_path("WHARF_PLUGIN_DIR").join("docker.wasm"),
        pd.join("docker.wasm"),
    )
    .unwrap();
    pd
}

/// Install a plugin through the API: (status, answer).
pub(crate) fn install(s: &Server, wasm: &std::path::Path) -> (u16, Value) {
    let r = s
        .http
        .post(s.url("/api/v1/plugins"))
        .header("content-type", "application/wasm")
        .body(std::fs::read(wasm).unwrap())
        .send()
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().unwrap_or(Value::Null))
}

fn plugin_names(s: &Server) -> Vec<String> {
    let (_, v) = s.get_json("/api/v1/plugins");
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}@{}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect()
}

/// An HTTP server for a file tree, answering after `delay`.
fn serve_files(files: Vec<(String, Vec<u8>)>, delay: Duration) -> String {
    serve_files_as(files, delay, None)
}

/// [`serve_files`] with a `Content-Type` on every file, if given.
pub(crate) fn serve_files_as(
    files: Vec<(String, Vec<u8>)>,
    delay: Duration,
    content_type: Option<&'static str>,
) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let files = std::sync::Arc::new(files);
    std::thread::spawn(move || {
        for conn in listener.incoming().take(500) {
            let Ok(mut conn) = conn else { continue };
            let files = files.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let n = conn.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                std::thread::sleep(delay);
                let body = files
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map(|(_, b)| b.clone());
                let typed = content_type
                    .map(|t| format!("Content-Type: {t}\r\n"))
                    .unwrap_or_default();
                let head = match &body {
                    Some(b) => format!(
                        "HTTP/1.1 200 OK\r\n{typed}Content-Length: {}\r\nConnection: close\r\n\r\n",
                        b.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string()
                    }
                };
                let _ = conn.write_all(head.as_bytes());
                if let Some(b) = body {
                    let _ = conn.write_all(&b);
                }
            });
        }
    });
    format!("http://{addr}")
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn install_use_upgrade_restart_remove_without_restarting() {
    let tmp = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let mut s = Server::start_with_plugin_dir(&docker_only(tmp.path()), &NO_BUILTIN);
    assert_eq!(plugin_names(&s).len(), 1);
    let (code, v) = s.post_json(
        "/api/v1/repositories",
        &json!({"id": "f", "content_type": "file"}),
    );
    assert_eq!(code, 400, "file is not known yet: {v}");

    // Install the file content type while the server runs, with the CLI.
    let home = tmp.path().join("home");
    let cli = |args: &[&str]| {
        let mut c = std::process::Command::new(env_path("WHARF_BIN"));
        c.env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .arg("--server")
            .arg(&s.base)
            .args(args);
        c
    };
    must(&mut cli(&["login", "-u", "admin", "-p", ADMIN_PASSWORD]));
    let file_wasm = env_path("WHARF_PLUGIN_DIR").join("file.wasm");
    let out = must(cli(&["--output", "json", "plugin", "install"]).arg(&file_wasm));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["name"], "file");
    assert_eq!(v["upgraded_from"], Value::Null);
    let v1 = v["version"].as_str().unwrap().to_string();
    let out = must(&mut cli(&["plugin", "list"]));
    assert!(out.contains("file") && out.contains("docker"), "{out}");

    // Upload, publish, download.
    s.create_repo(
        json!({"id": "f", "content_type": "file", "distributor_config": {"base_path": "pub/f"}}),
    );
    let doc = tmp.path().join("hello.txt");
    std::fs::write(&doc, b"hello from a hot-loaded plugin\n").unwrap();
    let up = s.upload(&doc, 1 << 20);
    let t = s.repo_task(
        "f",
        "import",
        json!({"upload_id": up, "params": {"relative_path": "docs/hello.txt"}}),
    );
    assert_eq!(t["state"], "finished", "{t}");
    let t = s.repo_task("f", "publish", json!({}));
    assert_eq!(t["state"], "finished", "{t}");
    let got = s
        .http
        .get(s.url("/files/pub/f/docs/hello.txt"))
        .send()
        .unwrap();
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(
        got.bytes().unwrap().as_ref(),
        b"hello from a hot-loaded plugin\n"
    );
    let manifest = s
        .http
        .get(s.url("/files/pub/f/PULP_MANIFEST"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(manifest.contains("docs/hello.txt,"), "{manifest}");

    // Sync from a slow feed; upgrade the plugin while the sync runs.
    let data = b"synced bytes".to_vec();
    let feed_manifest = format!("a.txt,{},{}\n", sha256_hex(&data), data.len());
    let feed = serve_files(
        vec![
            ("/m/PULP_MANIFEST".into(), feed_manifest.into_bytes()),
            ("/m/a.txt".into(), data.clone()),
        ],
        Duration::from_millis(1500),
    );
    s.create_repo(json!({"id": "mirror", "content_type": "file", "importer_config": {"feed": format!("{feed}/m/PULP_MANIFEST")}}));
    let (code, running) = s.post_json("/api/v1/repositories/mirror/sync", &json!({}));
    assert_eq!(code, 202);
    std::thread::sleep(Duration::from_millis(300));
    let (code, v) = install(
        &s,
        &env_path("WHARF_TEST_PLUGIN_DIR").join("file-next.wasm"),
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["upgraded_from"], v1.as_str());
    let v2 = v["version"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    let t = s.wait_task(&running);
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(
        t["result"]["plugin"],
        format!("file@{v1}"),
        "the running sync finished on the old version"
    );
    let t = s.repo_task("mirror", "sync", json!({}));
    assert_eq!(
        t["result"]["plugin"],
        format!("file@{v2}"),
        "the next task uses the new version: {t}"
    );

    // Restart: both plugins are back, compiled from the cache.
    s.crash_and_restart();
    let (_, v) = s.get_json("/api/v1/plugins");
    let file = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "file")
        .expect("file plugin after restart");
    assert_eq!(file["version"], v2.as_str());
    assert_eq!(file["from_cache"], true, "{v}");
    let got = s
        .http
        .get(s.url("/files/pub/f/docs/hello.txt"))
        .send()
        .unwrap();
    assert_eq!(got.status().as_u16(), 200);

    // Removal is refused while repositories of its type exist, unless forced.
    let r = s.http.delete(s.url("/api/v1/plugins/file")).send().unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let r = s
        .http
        .delete(s.url("/api/v1/plugins/file?force=true"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(plugin_names(&s).len(), 1);
    s.crash_and_restart();
    assert_eq!(plugin_names(&s).len(), 1, "a removed plugin stays removed");
}

#[test]
fn invalid_plugins_are_refused_before_anything_changes() {
    let tmp = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let s = Server::start_with_plugin_dir(&docker_only(tmp.path()), &NO_BUILTIN);
    let garbage = tmp.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm not really").unwrap();
    let (code, v) = install(&s, &garbage);
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a valid WebAssembly component"),
        "{v}"
    );
    let (code, v) = install(
        &s,
        &env_path("WHARF_TEST_PLUGIN_DIR").join("incompatible.wasm"),
    );
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wharf:plugin@1.0.0"),
        "{v}"
    );
    assert_eq!(plugin_names(&s).len(), 1);
    assert!(
        !std::fs::read_dir(s.data_dir().join("installed-plugins"))
            .unwrap()
            .any(|_| true),
        "nothing was saved"
    );
}

#[test]
fn the_sandbox_denies_files_sockets_other_hosts_and_foreign_units() {
    let tmp = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let s = Server::start_with_plugin_dir(&docker_only(tmp.path()), &NO_BUILTIN);
    let (code, v) = install(&s, &env_path("WHARF_TEST_PLUGIN_DIR").join("snoop.wasm"));
    assert_eq!(code, 201, "{v}");
    for probe in [
        "file", "dir", "socket", "env", "units", "naming", "changes", "store", "fetch",
    ] {
        let body = s
            .http
            .get(s.url(&format!("/test/snoop/{probe}")))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(body.starts_with("denied"), "probe {probe}: {body}");
        // Units outside a task (the blob index and version diffs too): the
        // host names the rule.
        if ["units", "naming", "changes"].contains(&probe) {
            assert!(
                body.contains("only available to import, sync and publish"),
                "probe {probe}: {body}"
            );
        }
    }
    // fetch during sync reaches only the repository's feed.
    s.create_repo(json!({"id": "s", "content_type": "snoop-test", "importer_config": {"feed": "http://127.0.0.1:1/feed"}}));
    let t = s.repo_task("s", "sync", json!({}));
    assert_eq!(t["state"], "error");
    let msg = t["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("denied") && msg.contains("may only reach its repository's feed"),
        "{t}"
    );
}

/// What an anonymous client gets for `path`: status, headers and body.
fn anonymous_get(s: &Server, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = anonymous_client().get(s.url(path)).send().unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().unwrap())
}

#[test]
fn refusals_on_a_plugins_routes_come_in_its_error_format() {
    let s = Server::start();
    s.create_repo(json!({"id": "sec", "content_type": "file",
        "distributor_config": {"base_path": "sec/f", "protected": true}}));
    let t = s.repo_task("sec", "publish", json!({}));
    assert_eq!(t["state"], "finished", "{t}");

    // The file plugin's shape (the admin API's), its codes, no Docker header.
    let file_error = |path: &str, want_status: u16, want_code: &str| {
        let (status, headers, body) = anonymous_get(&s, path);
        assert_eq!(status, want_status, "{path}: {body}");
        assert_eq!(headers["content-type"], "application/json", "{path}");
        assert!(
            !headers.contains_key("docker-distribution-api-version"),
            "{path}: {headers:?}"
        );
        assert!(
            !body.contains("\"errors\""),
            "{path}: Docker's envelope: {body}"
        );
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(v["error"]["code"], want_code, "{path}: {body}");
        assert!(v["error"]["message"].is_string(), "{body}");
    };
    // A host refusal: anonymous read of a protected repository.
    file_error("/files/sec/f/PULP_MANIFEST", 401, "unauthenticated");
    // A host refusal: a path that cannot be canonicalised.
    file_error("/files/..%2F..%2Fetc%2Fpasswd", 400, "invalid-path");
    // The plugin's own failure, in the same format.
    file_error("/files/nothing/here.txt", 404, "not-found");

    // The same refusals on /v2/ stay Docker's.
    let docker_error = |path: &str, want_status: u16, want_code: &str| {
        let (status, headers, body) = anonymous_get(&s, path);
        assert_eq!(status, want_status, "{path}: {body}");
        assert_eq!(headers["docker-distribution-api-version"], "registry/2.0");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(v["errors"][0]["code"], want_code, "{path}: {body}");
    };
    docker_error("/v2/", 401, "UNAUTHORIZED");
    docker_error(
        "/v2/..%2F..%2Fetc%2Fpasswd/blobs/sha256:00",
        400,
        "NAME_INVALID",
    );
    docker_error("/v2/nothing/here/manifests/latest", 404, "NAME_UNKNOWN");
}

/// The plugins built into the binary: a server with an empty plugin
/// directory serves `docker pull`; a plugin directory's plugin of the same
/// name overrides the built-in one; `--builtin-plugins false` leaves them out.
#[test]
fn the_binary_alone_serves_docker_pull_and_a_plugin_dir_overrides_its_plugins() {
    let tmp = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let alone = Server::start_with_plugin_dir(&empty, &[]);
    let names = plugin_names(&alone);
    assert!(
        names.iter().any(|n| n.starts_with("docker@"))
            && names.iter().any(|n| n.starts_with("file@")),
        "{names:?}"
    );
    // The next version of the file plugin in the plugin directory wins.
    let next = tmp.path().join("next");
    std::fs::create_dir_all(&next).unwrap();
    std::fs::copy(
        env_path("WHARF_TEST_PLUGIN_DIR").join("file-next.wasm"),
        next.join("file.wasm"),
    )
    .unwrap();
    let overridden = Server::start_with_plugin_dir(&next, &[]);
    let names = plugin_names(&overridden);
    let file: Vec<&String> = names.iter().filter(|n| n.starts_with("file@")).collect();
    assert_eq!(file.len(), 1, "{names:?}");
    assert_ne!(
        file[0], "file@0.1.0",
        "the directory's version replaced the built-in one: {names:?}"
    );

    let none = Server::start_with_plugin_dir(&empty, &NO_BUILTIN);
    assert!(plugin_names(&none).is_empty(), "{:?}", plugin_names(&none));

    // The first server, with nothing but the binary, serves docker pull.
    let s = alone;
    s.create_repo(json!({"id": "alone", "content_type": "docker", "distributor_config": {"repo_registry_id": "alone/busybox"}}));
    s.import_and_publish("alone", &images_dir().join("busybox.tar"));
    let image = format!("{}/alone/busybox:latest", s.addr);
    let _ = run(docker().args(["rmi", "-f", &image]));
    assert!(docker_pull_run_cat(&image, "/etc/hello.txt").contains("hello from wharf"));
}
