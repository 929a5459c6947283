//! Pushes: `docker push`, `podman push` and `skopeo copy` into Wharf, and
//! the blob-upload and manifest protocol driven by hand (chunks, resume
//! offsets, mount, wrong digests, missing blobs, oversized manifests, tag
//! deletion, auto-publish on and off, access).

use crate::registry_support::*;
use crate::support::*;
use reqwest::blocking::Response;
use serde_json::{Value, json};

/// A docker repository registered under `name`, auto-publishing or not.
pub(crate) fn push_repo(s: &Server, id: &str, name: &str, auto_publish: bool) {
    s.create_repo(json!({
        "id": id,
        "content_type": "docker",
        "distributor_config": {"repo_registry_id": name, "auto_publish": auto_publish},
    }));
}

/// A file name in a new scratch directory (kept alive by the first half).
fn out_dir_file(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = scratch();
    let file = dir.path().join(name);
    (dir, file)
}

/// `skopeo copy` of the busybox test archive to `name:tag` on the server,
/// as `user:password`.
fn skopeo_push(s: &Server, user: &str, name_tag: &str) -> std::process::Command {
    let mut c = skopeo();
    c.args([
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        user,
        &format!(
            "docker-archive:{}",
            images_dir().join("busybox.tar").display()
        ),
        &format!("docker://{}/{name_tag}", s.addr),
    ]);
    c
}

/// The status of `GET /v2/<name>/manifests/<reference>` as docker asks.
fn manifest_status(s: &Server, name: &str, reference: &str) -> Response {
    request(
        s,
        "GET",
        &format!("/v2/{name}/manifests/{reference}"),
        &[("Accept", DOCKER_ACCEPT)],
    )
}

#[test]
fn docker_push_then_pull_runs_the_image() {
    let s = Server::start();
    push_repo(&s, "team-app", "team/app", true);
    let name = format!("{}/team/app:v1", s.addr);
    let tmp = scratch();
    let config = tmp.path().join("docker");
    let docker_cfg = || docker_with_config(&config);
    docker_load_busybox_as(&name);

    // Anonymous pushes are refused.
    let (ok, out) = run(docker_cfg().args(["push", &name]));
    assert!(!ok, "anonymous push worked: {out}");

    must(docker_cfg().args(["login", &s.addr, "-u", "admin", "-p", ADMIN_PASSWORD]));
    let out = must(docker_cfg().args(["push", &name]));
    assert!(out.contains("digest: sha256:"), "{out}");
    // Pushed again: every layer is already there.
    let out = must(docker_cfg().args(["push", &name]));
    assert!(out.contains("Layer already exists"), "{out}");

    must(docker().args(["rmi", "-f", &name]));
    let out = docker_pull_run_cat(&name, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");

    // The push left ordinary units: the repository lists them.
    let c = content(&s, "team-app");
    assert_eq!(tag_names(&c), vec!["v1".to_string()]);
}

#[test]
fn podman_push_and_skopeo_copy_of_a_multi_arch_index() {
    let s = Server::start();
    push_repo(&s, "pod", "pod/app", true);
    push_repo(&s, "multi", "multi/app", true);
    let name = format!("{}/pod/app:latest", s.addr);
    podman_load_as("busybox.tar", "test/busybox", &name);
    podman_push_as_admin(&name);
    let tags = must(skopeo().args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/pod/app", s.addr),
    ]));
    assert!(tags.contains("latest"), "{tags}");
    let _ = run(podman().args(["rmi", "-f", &name]));

    // A whole multi-platform index, by skopeo, with both platforms.
    let oci = format!(
        "oci-archive:{}",
        images_dir().join("multi-arch-oci.tar").display()
    );
    let dest = format!("docker://{}/multi/app:latest", s.addr);
    let pushed = out_dir_file("pushed-digest");
    must(skopeo().args([
        "copy",
        "--all",
        "--dest-tls-verify=false",
        "--dest-creds",
        &admin_creds(),
        "--digestfile",
        &pushed.1.display().to_string(),
        &oci,
        &dest,
    ]));
    let digest = std::fs::read_to_string(&pushed.1).unwrap();
    let served = request(
        &s,
        "GET",
        "/v2/multi/app/manifests/latest",
        &[("Accept", OCI_INDEX)],
    );
    assert_eq!(served.status().as_u16(), 200);
    assert_eq!(header(&served, "docker-content-digest"), digest.trim());
    let index: Value = serde_json::from_slice(&served.bytes().unwrap()).unwrap();
    assert_eq!(
        index["manifests"].as_array().map(Vec::len),
        Some(2),
        "{index}"
    );
    // Both platforms pull back to a local directory, verified by skopeo.
    let out = pushed.0;
    for arch in ["amd64", "arm64"] {
        let dir = out.path().join(arch);
        must(skopeo().args([
            "copy",
            "--src-tls-verify=false",
            "--override-arch",
            arch,
            &dest,
            &format!("dir:{}", dir.display()),
        ]));
    }
}

#[test]
fn without_auto_publish_a_push_stays_invisible_until_publish() {
    let s = Server::start();
    push_repo(&s, "quiet", "quiet/app", false);
    must(&mut skopeo_push(&s, &admin_creds(), "quiet/app:v1"));
    let r = manifest_status(&s, "quiet/app", "v1");
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(error_code(r), "MANIFEST_UNKNOWN");
    publish(&s, "quiet");
    assert_eq!(
        manifest_status(&s, "quiet/app", "v1").status().as_u16(),
        200
    );
    // A second push to the now-published name: still not visible before the
    // next publish.
    must(&mut skopeo_push(&s, &admin_creds(), "quiet/app:v2"));
    assert_eq!(
        manifest_status(&s, "quiet/app", "v2").status().as_u16(),
        404
    );
    publish(&s, "quiet");
    assert_eq!(
        manifest_status(&s, "quiet/app", "v2").status().as_u16(),
        200
    );
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

fn status_and_code(r: Response) -> (u16, String) {
    (r.status().as_u16(), error_code(r))
}

/// A spec-literal client tries anonymously first, body and all: the gate's
/// 401 reaches it (the body is read and dropped, not left on the socket to
/// reset the connection), to several clients at once, and the same push
/// with credentials then goes through.
#[test]
fn an_anonymous_first_try_with_a_large_body_gets_its_401_not_a_reset() {
    let s = Server::start();
    push_repo(&s, "big", "big/app", true);
    let layer: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = sha256_digest(&layer);
    let path = format!("/v2/big/app/blobs/uploads/?digest={digest}");
    let anonymous = reqwest::blocking::Client::new();
    std::thread::scope(|t| {
        let tries: Vec<_> = (0..4)
            .map(|_| t.spawn(|| anonymous.post(s.url(&path)).body(layer.clone()).send()))
            .collect();
        for attempt in tries {
            let r = attempt
                .join()
                .unwrap()
                .expect("the 401 arrives, not a reset");
            assert_eq!(r.status().as_u16(), 401);
            assert!(header(&r, "www-authenticate").starts_with("Bearer realm="));
        }
    });
    let r = send(&s, "POST", &path, &[], layer.clone());
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap());
    let r = send(
        &s,
        "HEAD",
        &format!("/v2/big/app/blobs/{digest}"),
        &[],
        vec![],
    );
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn blob_uploads_chunked_resumed_mounted_and_checked() {
    let s = Server::start();
    push_repo(&s, "raw", "raw/app", true);

    // No credentials: the token challenge.
    let r = request(&s, "POST", "/v2/raw/app/blobs/uploads/", &[]);
    assert_eq!(r.status().as_u16(), 401);
    assert!(header(&r, "www-authenticate").starts_with("Bearer realm="));
    // A name nobody registered: the admin's push creates its repository.
    let r = send(&s, "POST", "/v2/nobody/here/blobs/uploads/", &[], vec![]);
    assert_eq!(r.status().as_u16(), 202);
    let (status, repo) = s.get_json("/api/v1/repositories/nobody-here");
    assert_eq!(status, 200, "{repo}");
    assert_eq!(
        repo["distributor_config"]["repo_registry_id"],
        "nobody/here"
    );
    assert_eq!(repo["distributor_config"]["auto_publish"], true);

    // Start, two chunks, a chunk at the wrong offset, status, finish.
    let r = send(&s, "POST", "/v2/raw/app/blobs/uploads/", &[], vec![]);
    assert_eq!(r.status().as_u16(), 202);
    let location = header(&r, "location");
    assert!(
        location.starts_with("/v2/raw/app/blobs/uploads/"),
        "{location}"
    );
    let r = send(
        &s,
        "PATCH",
        &location,
        &[("Content-Range", "0-5")],
        b"hello ".to_vec(),
    );
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(header(&r, "range"), "0-5");
    let r = send(
        &s,
        "PATCH",
        &location,
        &[("Content-Range", "0-4")],
        b"world".to_vec(),
    );
    assert_eq!(r.status().as_u16(), 416, "a chunk must start at the end");
    assert_eq!(
        header(&r, "range"),
        "0-5",
        "the answer says where to resume"
    );
    let r = send(
        &s,
        "PATCH",
        &location,
        &[("Content-Range", "6-10")],
        b"world".to_vec(),
    );
    assert_eq!(header(&r, "range"), "0-10");
    let r = send(&s, "GET", &location, &[], vec![]);
    assert_eq!(
        (r.status().as_u16(), header(&r, "range")),
        (204, "0-10".into())
    );
    let digest = sha256_digest(b"hello world");
    let r = send(
        &s,
        "PUT",
        &format!("{location}?digest={digest}"),
        &[],
        vec![],
    );
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/raw/app/blobs/{digest}")
    );
    let r = send(&s, "GET", &location, &[], vec![]);
    assert_eq!(status_and_code(r), (404, "BLOB_UPLOAD_UNKNOWN".into()));

    // A wrong digest stores nothing and ends the upload.
    let r = send(&s, "POST", "/v2/raw/app/blobs/uploads/", &[], vec![]);
    let location = header(&r, "location");
    send(&s, "PATCH", &location, &[], b"some bytes".to_vec());
    let claimed = sha256_digest(b"other bytes");
    let r = send(
        &s,
        "PUT",
        &format!("{location}?digest={claimed}"),
        &[],
        vec![],
    );
    assert_eq!(status_and_code(r), (400, "DIGEST_INVALID".into()));
    let fsck = std::process::Command::new(env_path("WHARF_BIN"))
        .args(["fsck", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&fsck.stdout).to_string();
    assert!(fsck.status.success(), "{report}");
    let refused = sha256_digest(b"some bytes");
    let path = s
        .data_dir()
        .join("blobs/sha256")
        .join(&refused[7..9])
        .join(&refused[7..]);
    assert!(!path.exists(), "bytes under a digest they do not have");

    // Monolithic: the whole blob with the POST.
    let mono = b"a whole blob in one request".to_vec();
    let mono_digest = sha256_digest(&mono);
    let r = send(
        &s,
        "POST",
        &format!("/v2/raw/app/blobs/uploads/?digest={mono_digest}"),
        &[],
        mono,
    );
    assert_eq!(r.status().as_u16(), 201);

    // Mount of a blob this repository received a moment ago: it is
    // already there for its manifest, so the mount answers 201.
    let r = send(
        &s,
        "POST",
        &format!("/v2/raw/app/blobs/uploads/?mount={digest}&from=other/repo"),
        &[],
        vec![],
    );
    assert_eq!(r.status().as_u16(), 201);
    // Mount of a digest nobody stored: an upload starts instead (mounts
    // across users and repositories: tests/e2e/hostile_registry.rs).
    let unknown = sha256_digest(b"never uploaded anywhere");
    let r = send(
        &s,
        "POST",
        &format!("/v2/raw/app/blobs/uploads/?mount={unknown}&from=other/repo"),
        &[],
        vec![],
    );
    assert_eq!(r.status().as_u16(), 202);
    // Canceling an upload.
    let r = send(&s, "POST", "/v2/raw/app/blobs/uploads/", &[], vec![]);
    let location = header(&r, "location");
    assert_eq!(
        send(&s, "DELETE", &location, &[], vec![]).status().as_u16(),
        204
    );
    let r = send(&s, "PATCH", &location, &[], b"late".to_vec());
    assert_eq!(status_and_code(r), (404, "BLOB_UPLOAD_UNKNOWN".into()));
}

/// Push a small blob in one request; returns its digest.
fn push_blob(s: &Server, name: &str, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let r = send(
        s,
        "POST",
        &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
        &[],
        bytes.to_vec(),
    );
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap_or_default());
    digest
}

fn schema2(config: (&str, usize), layers: &[(&str, usize)]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config.0, "size": config.1},
        "layers": layers.iter().map(|(d, n)| json!({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d, "size": n})).collect::<Vec<Value>>(),
    }))
    .unwrap()
}

fn put_manifest(s: &Server, name: &str, reference: &str, bytes: Vec<u8>) -> Response {
    send(
        s,
        "PUT",
        &format!("/v2/{name}/manifests/{reference}"),
        &[("Content-Type", DOCKER_MANIFEST)],
        bytes,
    )
}

#[test]
fn manifests_are_checked_tagged_and_deleted() {
    let s = Server::start();
    push_repo(&s, "man", "man/app", true);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = push_blob(&s, "man/app", config);
    let layer = b"not really a tarball, but bytes all the same";
    let layer_digest = push_blob(&s, "man/app", layer);

    // Names a blob never pushed: refused, and nothing is recorded.
    let missing = sha256_digest(b"never pushed");
    let bad = schema2((&config_digest, config.len()), &[(&missing, 3)]);
    let r = put_manifest(&s, "man/app", "v1", bad);
    assert_eq!(status_and_code(r), (400, "MANIFEST_BLOB_UNKNOWN".into()));
    // A size that lies.
    let bad = schema2((&config_digest, config.len() + 1), &[]);
    let r = put_manifest(&s, "man/app", "v1", bad);
    assert_eq!(status_and_code(r), (400, "MANIFEST_INVALID".into()));
    let r = put_manifest(&s, "man/app", "v1", b"{\"schemaVersion\": 2".to_vec());
    assert_eq!(status_and_code(r), (400, "MANIFEST_INVALID".into()));
    // A 5 MiB document is refused before the plugin reads it.
    let r = put_manifest(&s, "man/app", "v1", vec![b' '; 5 << 20]);
    assert_eq!(r.status().as_u16(), 413);
    let c = content(&s, "man");
    assert!(tag_names(&c).is_empty(), "{c:?}");

    // A good one, by tag: pullable at once (auto-publish).
    let good = schema2(
        (&config_digest, config.len()),
        &[(&layer_digest, layer.len())],
    );
    let digest = sha256_digest(&good);
    let r = put_manifest(&s, "man/app", &sha256_digest(b"wrong"), good.clone());
    assert_eq!(status_and_code(r), (400, "DIGEST_INVALID".into()));
    let r = put_manifest(&s, "man/app", "v1", good.clone());
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(header(&r, "docker-content-digest"), digest);
    let r = manifest_status(&s, "man/app", "v1");
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(r.bytes().unwrap().to_vec(), good);
    let r = request(&s, "GET", &format!("/v2/man/app/blobs/{layer_digest}"), &[]);
    assert_eq!(r.bytes().unwrap().to_vec(), layer.to_vec());
    // And by digest, and a second tag.
    assert_eq!(
        put_manifest(&s, "man/app", &digest, good.clone())
            .status()
            .as_u16(),
        201
    );
    assert_eq!(
        put_manifest(&s, "man/app", "v2", good).status().as_u16(),
        201
    );
    let r = request(&s, "GET", "/v2/man/app/tags/list", &[]);
    let tags: Value = r.json().unwrap();
    assert_eq!(tags["tags"], json!(["v1", "v2"]));

    // Tag deletion.
    let r = send(&s, "DELETE", "/v2/man/app/manifests/v1", &[], vec![]);
    assert_eq!(r.status().as_u16(), 202);
    let r = manifest_status(&s, "man/app", "v1");
    assert_eq!(status_and_code(r), (404, "MANIFEST_UNKNOWN".into()));
    let r = send(&s, "DELETE", "/v2/man/app/manifests/v1", &[], vec![]);
    assert_eq!(status_and_code(r), (404, "MANIFEST_UNKNOWN".into()));
    // Deleting by digest takes the remaining tag with it.
    let r = send(
        &s,
        "DELETE",
        &format!("/v2/man/app/manifests/{digest}"),
        &[],
        vec![],
    );
    assert_eq!(r.status().as_u16(), 202);
    let r = request(&s, "GET", "/v2/man/app/tags/list", &[]);
    let tags: Value = r.json().unwrap();
    assert_eq!(tags["tags"], json!([]));
    // Blobs are not deleted by the registry API.
    let r = send(
        &s,
        "DELETE",
        &format!("/v2/man/app/blobs/{layer_digest}"),
        &[],
        vec![],
    );
    assert_eq!(status_and_code(r), (405, "UNSUPPORTED".into()));
}

#[test]
fn pushing_needs_update_on_the_repository() {
    let s = Server::start();
    push_repo(&s, "guarded", "guarded/app", true);
    let (status, v) = s.post_json(
        "/api/v1/users",
        &json!({"login": "reader", "password": "reader-password"}),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = s.post_json(
        "/api/v1/permissions/grant",
        &json!({"login": "reader", "resource": "/repositories/guarded/", "operations": ["read"]}),
    );
    assert_eq!(status, 200, "{v}");
    let reader = s.client_with_token(&s.login("reader", "reader-password"));
    let r = reader
        .post(s.url("/v2/guarded/app/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(status_and_code(r), (403, "DENIED".into()));
    let (ok, out) = run(&mut skopeo_push(
        &s,
        "reader:reader-password",
        "guarded/app:v1",
    ));
    assert!(!ok, "a reader pushed: {out}");
    // The same with update: the push goes through.
    let (status, v) = s.post_json(
        "/api/v1/permissions/grant",
        &json!({"login": "reader", "resource": "/repositories/", "operations": ["update"]}),
    );
    assert_eq!(status, 200, "{v}");
    must(&mut skopeo_push(
        &s,
        "reader:reader-password",
        "guarded/app:v1",
    ));
}

/// A repository that publishes on push is republished by what each push
/// changed: the Docker plugin rewrites the shards of its index that the
/// changed tags, manifests and blobs fall in, and the host moves what the
/// publication serves by the units that changed between the two versions.
/// Whatever the steps, clients see exactly what the repository holds: tag
/// pages across shards, a moved tag, a removed image's own layer gone
/// while a layer another image shares stays, and nothing of a deleted
/// repository once one of the same name is made again.
#[test]
fn publishing_on_push_moves_the_publication_by_the_change() {
    let s = Server::start();
    push_repo(&s, "inc", "inc/app", true);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = push_blob(&s, "inc/app", config);
    let layer =
        |s: &Server, name: &str, text: &str| (push_blob(s, name, text.as_bytes()), text.len());
    let shared = layer(&s, "inc/app", "a layer two images share");
    let own = layer(&s, "inc/app", "the first image's own layer");
    let first = schema2(
        (&config_digest, config.len()),
        &[(&shared.0, shared.1), (&own.0, own.1)],
    );
    let first_digest = sha256_digest(&first);
    // More tags than one shard holds (512), each push a publish.
    let tags: Vec<String> = (0..600).map(|i| format!("t{i:03}")).collect();
    for tag in &tags {
        let r = put_manifest(&s, "inc/app", tag, first.clone());
        assert_eq!(r.status().as_u16(), 201, "{tag}");
    }
    let second_layer = layer(&s, "inc/app", "the second image's own layer");
    let second = schema2(
        (&config_digest, config.len()),
        &[(&shared.0, shared.1), (&second_layer.0, second_layer.1)],
    );
    let second_digest = sha256_digest(&second);
    assert_eq!(
        put_manifest(&s, "inc/app", "t300", second.clone())
            .status()
            .as_u16(),
        201
    );
    let tag_page = |last: &str| {
        let r = request(
            &s,
            "GET",
            &format!("/v2/inc/app/tags/list?n=4&last={last}"),
            &[],
        );
        r.json::<Value>().unwrap()["tags"].clone()
    };
    assert_eq!(tag_page("t298"), json!(["t299", "t300", "t301", "t302"]));
    assert_eq!(tag_page("t599"), json!([]));
    let all: Value = request(&s, "GET", "/v2/inc/app/tags/list", &[])
        .json()
        .unwrap();
    assert_eq!(all["tags"].as_array().unwrap().len(), 600);
    let digest_of = |tag: &str| {
        header(
            &manifest_status(&s, "inc/app", tag),
            "docker-content-digest",
        )
    };
    assert_eq!(digest_of("t300"), second_digest, "the moved tag");
    assert_eq!(digest_of("t301"), first_digest);
    let blob_status = |s: &Server, name: &str, digest: &str| {
        request(s, "GET", &format!("/v2/{name}/blobs/{digest}"), &[])
            .status()
            .as_u16()
    };
    assert_eq!(blob_status(&s, "inc/app", &own.0), 200);

    // Remove the first image (its tags and its own layer go with it), then
    // publish: the moved tag's image and the shared layer stay.
    let t = s.repo_task("inc", "remove", json!({"references": [first_digest]}));
    assert_eq!(t["state"], "finished", "{t}");
    let t = s.repo_task("inc", "publish", json!({}));
    assert_eq!(t["state"], "finished", "{t}");
    assert!(
        t["result"]["message"]
            .as_str()
            .unwrap()
            .contains("changed since version"),
        "{t}"
    );
    assert_eq!(
        status_and_code(manifest_status(&s, "inc/app", "t301")),
        (404, "MANIFEST_UNKNOWN".into())
    );
    assert_eq!(
        status_and_code(manifest_status(&s, "inc/app", &first_digest)),
        (404, "MANIFEST_UNKNOWN".into())
    );
    assert_eq!(digest_of("t300"), second_digest);
    assert_eq!(
        blob_status(&s, "inc/app", &shared.0),
        200,
        "the shared layer"
    );
    assert_eq!(blob_status(&s, "inc/app", &second_layer.0), 200);
    let all: Value = request(&s, "GET", "/v2/inc/app/tags/list", &[])
        .json()
        .unwrap();
    assert_eq!(all["tags"], json!(["t300"]));

    // An image imported (nothing of it came through the repository's
    // upload sessions, which a repository may read for a day), then
    // removed: once published, its blobs are no longer served.
    let t = import(&s, "inc", &images_dir().join("busybox.tar"));
    assert_eq!(t["state"], "finished", "{t}");
    publish(&s, "inc");
    let busybox = digest_of("latest");
    let busybox_config = image_info("busybox.tar")["config_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(blob_status(&s, "inc/app", &busybox_config), 200);
    let t = s.repo_task("inc", "remove", json!({"references": [busybox]}));
    assert_eq!(t["state"], "finished", "{t}");
    publish(&s, "inc");
    assert_eq!(
        blob_status(&s, "inc/app", &busybox_config),
        404,
        "the removed image's config"
    );
    assert_eq!(
        blob_status(&s, "inc/app", &busybox),
        404,
        "the removed manifest"
    );
    assert_eq!(blob_status(&s, "inc/app", &shared.0), 200);
    assert_eq!(digest_of("t300"), second_digest);

    // The repository deleted and made again under the same name: nothing
    // of the old one is served through the new one.
    let r = s
        .http
        .delete(s.url("/api/v1/repositories/inc"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let t = s.wait_task(&r.json().unwrap());
    assert_eq!(t["state"], "finished", "{t}");
    push_repo(&s, "inc", "inc/app", true);
    let config_digest = push_blob(&s, "inc/app", config);
    let fresh = layer(&s, "inc/app", "the new repository's layer");
    let third = schema2((&config_digest, config.len()), &[(&fresh.0, fresh.1)]);
    for tag in ["a", "b", "c"] {
        assert_eq!(
            put_manifest(&s, "inc/app", tag, third.clone())
                .status()
                .as_u16(),
            201
        );
    }
    assert_eq!(blob_status(&s, "inc/app", &fresh.0), 200);
    for gone in [&shared.0, &second_layer.0, &second_digest] {
        assert_eq!(
            blob_status(&s, "inc/app", gone),
            404,
            "{gone} of the deleted repository"
        );
    }
    assert_eq!(
        status_and_code(manifest_status(&s, "inc/app", "t300")),
        (404, "MANIFEST_UNKNOWN".into())
    );
}

/// A manifest push may name what a `HEAD` of the repository said is there:
/// the blobs its publication serves, here an image removed from the
/// repository since the last publish (and never pushed through its upload
/// sessions, so only the publication vouches for it). A blob neither
/// served nor held stays unknown.
#[test]
fn a_push_may_name_what_a_head_said_is_there() {
    let s = Server::start();
    push_repo(&s, "said", "said/app", false);
    let t = import(&s, "said", &images_dir().join("busybox.tar"));
    assert_eq!(t["state"], "finished", "{t}");
    publish(&s, "said");
    let r = request(
        &s,
        "GET",
        "/v2/said/app/manifests/latest",
        &[("Accept", DOCKER_MANIFEST)],
    );
    let image: Value = r.json().unwrap();
    let digest_size = |d: &Value| {
        (
            d["digest"].as_str().unwrap().to_string(),
            d["size"].as_u64().unwrap() as usize,
        )
    };
    let (config, config_size) = digest_size(&image["config"]);
    let (layer, layer_size) = digest_size(&image["layers"][0]);
    let manifest = header(
        &manifest_status(&s, "said/app", "latest"),
        "docker-content-digest",
    );
    let t = s.repo_task("said", "remove", json!({"references": [manifest]}));
    assert_eq!(t["state"], "finished", "{t}");

    for blob in [&config, &layer] {
        let r = request(&s, "HEAD", &format!("/v2/said/app/blobs/{blob}"), &[]);
        assert_eq!(
            r.status().as_u16(),
            200,
            "the publication still serves {blob}"
        );
    }
    let again = schema2((&config, config_size), &[(&layer, layer_size)]);
    let r = put_manifest(&s, "said/app", "again", again);
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap_or_default());
    let missing = sha256_digest(b"neither served nor held");
    let bad = schema2((&config, config_size), &[(&missing, 3)]);
    let r = put_manifest(&s, "said/app", "bad", bad);
    assert_eq!(status_and_code(r), (400, "MANIFEST_BLOB_UNKNOWN".into()));
}
