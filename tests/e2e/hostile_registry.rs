//! The registry side attacked as an attacker would (issue 15, the trust
//! rule): encoded, dotted and shadowed names aimed at a protected
//! repository, and digests of its blobs used as keys (HEAD, mount,
//! manifest PUT) from a repository the attacker controls. Every test also
//! checks that the legitimate path still works.

use crate::registry_support::*;
use crate::support::*;
use reqwest::blocking::Response;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::Duration;

const MALLORY: (&str, &str) = ("mallory", "mallory-password-1");
const CAROL: (&str, &str) = ("carol", "carol-password-1");

fn admin_post(s: &Server, path: &str, body: Value) {
    let (status, v) = s.post_json(path, &body);
    assert!(status < 300, "POST {path} {body}: {status} {v}");
}

/// A user whose own role grants `grants` (resource, operations).
fn user_with(s: &Server, (login, password): (&str, &str), grants: &[(&str, &[&str])]) {
    let role = format!("{login}-role");
    admin_post(s, "/api/v1/roles", json!({"id": role}));
    for (resource, ops) in grants {
        admin_post(
            s,
            "/api/v1/permissions/grant",
            json!({"role_id": role, "resource": resource, "operations": ops}),
        );
    }
    admin_post(
        s,
        "/api/v1/users",
        json!({"login": login, "name": login, "password": password, "roles": [role]}),
    );
}

/// `secret/app` (protected, the two-layer image, tag `v1`) and `public/app` (busybox)
/// published; `mallory` may change only the push repository `mallory/app`,
/// `carol` may also read `secret`.
fn two_repositories() -> Server {
    let s = Server::start();
    s.create_repo(json!({"id": "secret", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "secret/app", "protected": true}}));
    s.create_repo(json!({"id": "public", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "public/app"}}));
    s.import_and_publish("secret", &images_dir().join("two-layer.tar"));
    s.import_and_publish("public", &images_dir().join("busybox.tar"));
    for (id, name) in [("mallory", "mallory/app"), ("carol", "carol/app")] {
        s.create_repo(json!({"id": id, "content_type": "docker",
            "distributor_config": {"repo_registry_id": name, "auto_publish": true}}));
        // Published (empty) once, as a repository in use.
        publish(&s, id);
    }
    let own: &[&str] = &["read", "update", "execute"];
    user_with(&s, MALLORY, &[("/repositories/mallory/", own)]);
    user_with(
        &s,
        CAROL,
        &[
            ("/repositories/carol/", own),
            ("/repositories/secret/", &["read"]),
        ],
    );
    s
}

fn basic((login, password): (&str, &str)) -> String {
    use base64::Engine as _;
    let pair = format!("{login}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

fn admin() -> String {
    basic(("admin", ADMIN_PASSWORD))
}

/// One request written byte for byte (no client normalises the path);
/// returns the status and the body.
fn raw(s: &Server, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: {DOCKER_ACCEPT}\r\n",
        s.addr
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A request through a client, with headers and a body.
fn call(s: &Server, method: &str, path: &str, auth: &str, body: Vec<u8>) -> Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = no_redirects()
        .request(method, s.url(path))
        .header("Accept", DOCKER_ACCEPT)
        .body(body);
    if !auth.is_empty() {
        r = r.header("Authorization", auth);
    }
    r.send().unwrap()
}

/// The manifest of `name:tag` as the administrator reads it.
fn manifest(s: &Server, name: &str, tag: &str) -> Value {
    let r = call(
        s,
        "GET",
        &format!("/v2/{name}/manifests/{tag}"),
        &admin(),
        vec![],
    );
    assert_eq!(r.status().as_u16(), 200);
    r.json().unwrap()
}

/// A layer (digest, size) of `secret/app` that `public/app` does not have.
fn secret_layer(s: &Server) -> (String, u64) {
    let public: Vec<Value> = manifest(s, "public/app", "latest")["layers"]
        .as_array()
        .unwrap()
        .clone();
    let secret = manifest(s, "secret/app", "v1");
    let layer = secret["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| !public.iter().any(|p| p["digest"] == l["digest"]))
        .expect("the two-layer image has a layer busybox lacks")
        .clone();
    (
        layer["digest"].as_str().unwrap().to_string(),
        layer["size"].as_u64().unwrap(),
    )
}

#[test]
fn encoded_dotted_and_cased_names_never_reach_a_protected_repository() {
    let s = two_repositories();
    let (layer, _) = secret_layer(&s);
    let mut attacks = Vec::new();
    for tail in [
        "tags/list".to_string(),
        "manifests/v1".to_string(),
        format!("blobs/{layer}"),
    ] {
        for name in [
            "%73ecret/app",
            "secret%2Fapp",
            "secret%2fapp",
            "%2573ecret/app",
            "%252573ecret/app",
            "SECRET/app",
            "Secret/App",
            "secret//app",
            "public/app/../../secret/app",
            "public/app/%2e%2e/%2e%2e/secret/app",
            "public/app/%2E%2E/%2E%2E/secret/app",
            "./secret/app",
            "secret/./app",
            "secret/app/",
        ] {
            attacks.push(format!("/v2/{name}/{tail}"));
        }
        attacks.push(format!("/v2//secret/app/{tail}"));
    }
    for path in &attacks {
        for method in ["GET", "HEAD"] {
            let (status, body) = raw(&s, method, path, None);
            assert!(
                [400, 401, 403, 404].contains(&status),
                "{method} {path} answered {status}: {body}"
            );
            for leak in ["\"tags\"", "\"layers\"", "sha256:"] {
                assert!(
                    !body.contains(leak),
                    "{method} {path} leaked {leak}: {body}"
                );
            }
        }
    }
    // The legitimate paths: public anonymously (even written with an
    // escape, decoded once), secret with credentials.
    for path in ["/v2/public/app/tags/list", "/v2/%70ublic/app/tags/list"] {
        let (status, body) = raw(&s, "GET", path, None);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains("latest"), "{body}");
    }
    let (status, body) = raw(&s, "GET", "/v2/secret/app/tags/list", Some(&admin()));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("v1"), "{body}");
    let (status, _) = raw(
        &s,
        "HEAD",
        &format!("/v2/secret/app/blobs/{layer}"),
        Some(&admin()),
    );
    assert_eq!(status, 200);
}

#[test]
fn shadow_names_cannot_be_published_and_serve_nothing_of_the_real_repository() {
    let s = two_repositories();
    for (id, shadow) in [
        ("shadow-m", "secret/app/manifests"),
        ("shadow-b", "secret/app/blobs"),
        ("shadow-t", "secret/app/tags"),
    ] {
        s.create_repo(json!({"id": id, "content_type": "docker",
            "distributor_config": {"repo_registry_id": shadow}}));
        let t = import(&s, id, &images_dir().join("busybox.tar"));
        assert_eq!(t["state"], "finished", "{t}");
        let t = s.repo_task(id, "publish", json!({}));
        let why = failed_with(&t);
        assert!(why.contains("registry's routes use"), "{why}");
    }
    let (status, body) = raw(&s, "GET", "/v2/secret/app/manifests/v1", None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = raw(&s, "GET", "/v2/secret/app/tags/list", None);
    assert_eq!(status, 401, "{body}");
    // A name that merely contains a keyword elsewhere is still refused, and
    // an ordinary name still publishes.
    s.create_repo(json!({"id": "fine", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "fine/app"}}));
    s.import_and_publish("fine", &images_dir().join("busybox.tar"));
    let (status, _) = raw(&s, "GET", "/v2/fine/app/manifests/latest", None);
    assert_eq!(status, 200);
}

#[test]
fn a_digest_is_no_key_to_another_repositorys_blob() {
    let s = two_repositories();
    let (layer, size) = secret_layer(&s);
    let mallory = basic(MALLORY);
    // HEAD on a name the attacker may push to, anonymously or as mallory.
    for auth in ["", mallory.as_str()] {
        let r = call(
            &s,
            "HEAD",
            &format!("/v2/mallory/app/blobs/{layer}"),
            auth,
            vec![],
        );
        assert_eq!(r.status().as_u16(), 404, "HEAD told a foreign blob");
        assert!(r.headers().get("content-length").is_none_or(|l| l == "0"));
    }
    // Mount from the protected repository: no 201, an upload starts instead.
    let r = call(
        &s,
        "POST",
        &format!("/v2/mallory/app/blobs/uploads/?mount={layer}&from=secret/app"),
        &mallory,
        vec![],
    );
    assert_eq!(
        r.status().as_u16(),
        202,
        "mount of a blob mallory may not read"
    );
    // A manifest naming the foreign layer next to mallory's own config.
    let config_digest = push(&s, "mallory/app", &mallory, CONFIG);
    let put = |auth: &str, name: &str, layers: &[(&str, u64)]| {
        put_manifest(&s, auth, &format!("{name}:stolen"), &config_digest, layers)
    };
    let r = put(&mallory, "mallory/app", &[(&layer, size)]);
    assert_eq!(
        status_code(r),
        (400, "MANIFEST_BLOB_UNKNOWN".to_string()),
        "a manifest PUT linked a foreign layer"
    );
    let r = call(
        &s,
        "GET",
        &format!("/v2/mallory/app/blobs/{layer}"),
        "",
        vec![],
    );
    assert_eq!(r.status().as_u16(), 404);

    // Legitimate: mallory's own layer works, and carol, who may read
    // `secret`, mounts its layer and publishes it in her own repository.
    let own_layer = b"mallory's own layer bytes";
    let own = push(&s, "mallory/app", &mallory, own_layer);
    let r = put(&mallory, "mallory/app", &[(&own, own_layer.len() as u64)]);
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text());
    let carol = basic(CAROL);
    let r = call(
        &s,
        "POST",
        &format!("/v2/carol/app/blobs/uploads/?mount={layer}&from=secret/app"),
        &carol,
        vec![],
    );
    assert_eq!(
        r.status().as_u16(),
        201,
        "carol may read secret: mount works"
    );
    push(&s, "carol/app", &carol, CONFIG);
    let r = put(&carol, "carol/app", &[(&layer, size)]);
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text());
    let r = call(
        &s,
        "GET",
        &format!("/v2/carol/app/blobs/{layer}"),
        "",
        vec![],
    );
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().unwrap().len() as u64, size);
}

/// Each caller's catalog is what it may read, page by page, among many
/// protected names it may not: anonymous and users without grants see the
/// open ones, a user granted one protected repository and a token for one
/// name see it too, and a repository turned open or protected is listed
/// accordingly at once.
#[test]
fn the_catalog_lists_only_what_the_caller_may_read() {
    let s = two_repositories();
    for i in 0..6 {
        let id = format!("hidden{i}");
        s.create_repo(json!({"id": id, "content_type": "docker",
            "distributor_config": {"repo_registry_id": format!("hidden/r{i}"), "protected": true}}));
        publish(&s, &id);
    }
    let page = |auth: Option<&str>, query: &str| catalog_page(&s, auth, query);
    let names = |auth: Option<&str>| page(auth, "");
    // Every page of one name, each after the last.
    let paged = |auth: Option<&str>| -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        loop {
            let query = match all.last() {
                Some(last) => format!("?n=1&last={last}"),
                None => "?n=1".to_string(),
            };
            let got = page(auth, &query);
            assert!(got.len() <= 1, "{got:?}");
            if got.is_empty() {
                return all;
            }
            all.extend(got);
        }
    };
    let open = ["carol/app", "mallory/app", "public/app"]
        .map(String::from)
        .to_vec();
    let with_secret = ["carol/app", "mallory/app", "public/app", "secret/app"]
        .map(String::from)
        .to_vec();
    assert_eq!(names(None), open);
    assert_eq!(paged(None), open);
    let mallory = basic(MALLORY);
    assert_eq!(names(Some(&mallory)), open);
    let carol = basic(CAROL);
    assert_eq!(names(Some(&carol)), with_secret);
    assert_eq!(paged(Some(&carol)), with_secret);
    let (status, token) =
        crate::auth::registry_token(&s, "repository:secret/app:pull", Some(CAROL));
    assert_eq!(status, 200, "{token}");
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    assert_eq!(paged(Some(&bearer)), with_secret);
    let everything = names(Some(&admin()));
    assert_eq!(everything.len(), 4 + 6, "{everything:?}");
    assert_eq!(paged(Some(&admin())), everything);

    // Turned open, a protected repository is listed to anyone at once;
    // protected again, it is not.
    let protect = |on: bool| {
        let r = s
            .http
            .patch(s.url("/api/v1/repositories/hidden3"))
            .json(&json!({"distributor_config": {"protected": on}}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{:?}", r.text());
    };
    protect(false);
    let mut opened = open.clone();
    opened.insert(1, "hidden/r3".to_string());
    assert_eq!(paged(None), opened);
    assert_eq!(names(Some(&mallory)), opened);
    protect(true);
    assert_eq!(paged(None), open);
}

/// The whole catalog `auth` may list, one request.
fn catalog(s: &Server, auth: Option<&str>) -> Vec<String> {
    catalog_page(s, auth, "")
}

/// The names of one catalog page (`query`: `?n=…&last=…`, or nothing).
fn catalog_page(s: &Server, auth: Option<&str>, query: &str) -> Vec<String> {
    let (status, body) = raw(s, "GET", &format!("/v2/_catalog{query}"), auth);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// Restarted, while its publications load from the store, the server serves
/// a protected name to its reader only and lists each caller what it
/// listed before: nothing is missing, nothing shown to whom it may not be.
#[test]
fn a_restarted_server_serves_and_lists_what_it_did_before() {
    let mut s = two_repositories();
    for i in 0..12 {
        let id = format!("hidden{i}");
        s.create_repo(json!({"id": id, "content_type": "docker",
            "distributor_config": {"repo_registry_id": format!("hidden/r{i}"), "protected": i % 2 == 0}}));
        publish(&s, &id);
    }
    let callers = [
        None,
        Some(basic(MALLORY)),
        Some(basic(CAROL)),
        Some(admin()),
    ];
    let before: Vec<Vec<String>> = callers.iter().map(|c| catalog(&s, c.as_deref())).collect();
    assert_eq!(before[3].len(), 4 + 12, "{:?}", before[3]);
    assert!(before[2].contains(&"secret/app".to_string()));
    assert!(!before[0].contains(&"secret/app".to_string()));
    let manifest = "/v2/secret/app/manifests/v1";
    for round in 0..3 {
        s.crash_and_restart();
        // A name first: served before the catalog made anyone wait.
        let (status, body) = raw(&s, "GET", manifest, Some(&basic(CAROL)));
        assert_eq!(status, 200, "round {round}: {body}");
        let (status, _) = raw(&s, "GET", manifest, Some(&basic(MALLORY)));
        assert!(matches!(status, 401 | 403 | 404), "round {round}: {status}");
        let (status, _) = raw(&s, "GET", manifest, None);
        assert!(matches!(status, 401 | 404), "round {round}: {status}");
        for (caller, listed) in callers.iter().zip(&before) {
            assert_eq!(&catalog(&s, caller.as_deref()), listed, "round {round}");
        }
    }
    // The legitimate writes still work after the restarts: a publish.
    publish(&s, "hidden1");
    assert_eq!(catalog(&s, Some(&admin())), before[3]);
}

/// An image config the manifests of these tests name (its content is never
/// read).
const CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

/// `PUT /v2/<name>/manifests/<tag>` (`name_tag` is `name:tag`) of a Docker
/// schema 2 manifest naming the config [`CONFIG`] (stored as
/// `config_digest`) and `layers` (digest, size).
fn put_manifest(
    s: &Server,
    auth: &str,
    name_tag: &str,
    config_digest: &str,
    layers: &[(&str, u64)],
) -> Response {
    let (name, tag) = name_tag.rsplit_once(':').unwrap();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
            "size": CONFIG.len(), "digest": config_digest},
        "layers": layers.iter().map(|(d, n)| json!({
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": n, "digest": d})).collect::<Vec<_>>(),
    });
    no_redirects()
        .put(s.url(&format!("/v2/{name}/manifests/{tag}")))
        .header("Authorization", auth)
        .header(
            "Content-Type",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .body(m.to_string())
        .send()
        .unwrap()
}

/// Push `bytes` as a blob of `name` in one request; returns its digest.
fn push(s: &Server, name: &str, auth: &str, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let r = call(
        s,
        "POST",
        &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
        auth,
        bytes.to_vec(),
    );
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text());
    digest
}

fn status_code(r: Response) -> (u16, String) {
    let status = r.status().as_u16();
    (status, error_code(r))
}

#[test]
fn a_feed_that_merely_lists_a_protected_digest_gets_no_bytes() {
    let s = two_repositories();
    let (layer, size) = secret_layer(&s);
    // The attacker's upstream names the protected layer but cannot serve it.
    let liar = FakeUpstream::start(
        CONFIG.to_vec(),
        (layer.clone(), size),
        LayerReply::Bytes(vec![b'x'; size as usize]),
    );
    docker_repo(
        &s,
        "evil",
        "evil/app",
        json!({"feed": liar.url, "upstream_name": "evil/app"}),
    );
    let t = sync(&s, "evil");
    assert!(
        liar.layer_downloads() >= 1,
        "the sync linked the stored blob instead of downloading it: {t}"
    );
    assert_ne!(
        t["state"], "finished",
        "a layer with wrong bytes was accepted: {t}"
    );
    let _ = s.repo_task("evil", "publish", json!({}));
    let r = call(
        &s,
        "GET",
        &format!("/v2/evil/app/blobs/{layer}"),
        "",
        vec![],
    );
    assert_eq!(r.status().as_u16(), 404, "the protected layer leaked");
    // The protected repository still serves its own layer intact.
    let r = call(
        &s,
        "GET",
        &format!("/v2/secret/app/blobs/{layer}"),
        &admin(),
        vec![],
    );
    assert_eq!(r.status().as_u16(), 200);
    let real = r.bytes().unwrap().to_vec();
    assert_eq!(sha256_digest(&real), layer);

    // Legitimate: an upstream that really has the bytes is mirrored (they
    // are downloaded and verified, even though the store has them).
    let honest = FakeUpstream::start(
        CONFIG.to_vec(),
        (layer.clone(), size),
        LayerReply::Bytes(real),
    );
    docker_repo(
        &s,
        "mirror",
        "mirror/app",
        json!({"feed": honest.url, "upstream_name": "evil/app"}),
    );
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(honest.layer_downloads(), 1);
    publish(&s, "mirror");
    let r = call(
        &s,
        "GET",
        &format!("/v2/mirror/app/blobs/{layer}"),
        "",
        vec![],
    );
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn cleanup_keeps_what_a_publication_serves_and_what_was_just_pushed() {
    let s = Server::start();
    s.create_repo(json!({"id": "gc", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "gc/app", "auto_publish": false}}));
    publish(&s, "gc");
    let auth = admin();
    let layer = b"a layer that only a manifest names";
    // Pushed blobs no manifest names yet survive a cleanup: the manifest
    // that names them afterwards is accepted and served.
    let config_digest = push(&s, "gc/app", &auth, CONFIG);
    let layer_digest = push(&s, "gc/app", &auth, layer);
    cleanup_now(&s);
    let layers = [(layer_digest.as_str(), layer.len() as u64)];
    let r = put_manifest(&s, &auth, "gc/app:v1", &config_digest, &layers);
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text());
    publish(&s, "gc");
    let served = |path: &str| call(&s, "GET", path, "", vec![]).status().as_u16();
    assert_eq!(served(&format!("/v2/gc/app/blobs/{layer_digest}")), 200);

    // A manifest deleted after the publish: its units go, the publication
    // still serves it until the next publish, and a cleanup keeps its bytes.
    let r = call(&s, "DELETE", "/v2/gc/app/manifests/v1", &auth, vec![]);
    assert_eq!(r.status().as_u16(), 202);
    let removed = cleanup_now(&s);
    assert_eq!(served("/v2/gc/app/manifests/v1"), 200, "cleanup: {removed}");
    assert_eq!(served(&format!("/v2/gc/app/blobs/{layer_digest}")), 200);
    // Once published without it, its bytes are collectable (the pushed-blob
    // notes aside) and the tag is gone.
    publish(&s, "gc");
    assert_eq!(served("/v2/gc/app/manifests/v1"), 404);
}

/// A blob one repository just received (pushed, named by no manifest yet)
/// is readable through that repository only: another repository's name
/// does not tell it (HEAD), but a pusher who may read the first may mount
/// it into the second, and a manifest there may then name it.
#[test]
fn a_blob_a_readable_repository_just_received_is_mounted_not_told() {
    let s = Server::start();
    for id in ["first", "second"] {
        s.create_repo(json!({"id": id, "content_type": "docker",
            "distributor_config": {"repo_registry_id": format!("{id}/app"), "auto_publish": false}}));
        publish(&s, id);
    }
    let auth = admin();
    let config = push(&s, "first/app", &auth, CONFIG);
    let layer = b"a layer first/app received";
    let layer_digest = push(&s, "first/app", &auth, layer);
    for d in [&config, &layer_digest] {
        let path = |name: &str| format!("/v2/{name}/blobs/{d}");
        for method in ["HEAD", "GET"] {
            let r = call(&s, method, &path("first/app"), &auth, vec![]);
            assert_eq!(r.status().as_u16(), 200, "{method} of {d} in first/app");
            let r = call(&s, method, &path("second/app"), &auth, vec![]);
            assert_eq!(r.status().as_u16(), 404, "{method} of {d} in second/app");
        }
        let r = call(
            &s,
            "POST",
            &format!("/v2/second/app/blobs/uploads/?mount={d}&from=first/app"),
            &auth,
            vec![],
        );
        assert_eq!(r.status().as_u16(), 201, "mount of {d} into second/app");
    }
    let layers = [(layer_digest.as_str(), layer.len() as u64)];
    let r = put_manifest(&s, &auth, "second/app:v1", &config, &layers);
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text());
}

const DAVE: (&str, &str) = ("dave", "dave-password-1");

/// A push to a name no repository has creates one, but only for a caller
/// who may create repositories, only under a name the plugin accepts, and
/// never by taking over an existing repository: a name that is another
/// repository's id (not its name) gets its own repository, an existing
/// name stays its owner's. The creator may go on pushing to what it made.
#[test]
fn pushes_to_new_names_create_only_what_the_pusher_may_create() {
    let s = two_repositories();
    // dave may create repositories and nothing else.
    user_with(&s, DAVE, &[("/repositories/", &["create"])]);
    let exists = |id: &str| s.get_json(&format!("/api/v1/repositories/{id}")).0 == 200;
    let repo_count = || {
        s.get_json("/api/v1/repositories?limit=1000").1["items"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = repo_count();

    // Anonymous and mallory (no create): refused, nothing created.
    for (auth, status) in [("", 401), (basic(MALLORY).as_str(), 403)] {
        let r = call(&s, "POST", "/v2/team/new/blobs/uploads/", auth, vec![]);
        assert_eq!(r.status().as_u16(), status, "{:?}", r.text());
    }
    assert!(!exists("team-new"));
    // Names the plugin refuses, or the path canonicalisation does.
    let dave = basic(DAVE);
    for (path, status) in [
        ("/v2/Team/New/blobs/uploads/", 400),
        ("/v2/team/tags/x/blobs/uploads/", 400),
        ("/v2/team/..%2Fsecret/blobs/uploads/", 400),
        ("/v2/team%2fnew/blobs/uploads/", 400),
    ] {
        let r = call(&s, "POST", path, &dave, vec![]);
        assert_eq!(r.status().as_u16(), status, "{path}: {:?}", r.text());
    }
    assert_eq!(repo_count(), before, "a refused name created a repository");

    // An existing name is its owner's: dave may not push to it.
    let r = call(&s, "POST", "/v2/secret/app/blobs/uploads/", &dave, vec![]);
    assert_eq!(r.status().as_u16(), 403);
    // `secret` is a repository's id but not its name: dave's push makes a
    // repository of its own, and the protected one is untouched.
    let config = push(&s, "secret", &dave, CONFIG);
    let created = s.get_json("/api/v1/repositories?limit=1000").1["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["distributor_config"]["repo_registry_id"] == "secret")
        .cloned()
        .expect("a repository named secret");
    let id = created["id"].as_str().unwrap().to_string();
    assert!(
        id.starts_with("secret-") && id.len() == "secret-".len() + 8,
        "{id}"
    );
    let (_, original) = s.get_json("/api/v1/repositories/secret");
    assert_eq!(
        original["distributor_config"]["repo_registry_id"],
        "secret/app"
    );
    // The creator goes on pushing to what it made; the image is pullable.
    let layer = b"dave's layer";
    let layer_digest = push(&s, "secret", &dave, layer);
    let r = put_manifest(
        &s,
        &dave,
        "secret:v1",
        &config,
        &[(&layer_digest, layer.len() as u64)],
    );
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text());
    let (status, _) = raw(&s, "GET", "/v2/secret/manifests/v1", None);
    assert_eq!(status, 200);
    // And the protected repository still serves only its own, to its readers.
    let (status, _) = raw(&s, "GET", "/v2/secret/app/manifests/v1", None);
    assert_eq!(status, 401);
    let (status, _) = raw(&s, "GET", "/v2/secret/app/manifests/v1", Some(&admin()));
    assert_eq!(status, 200);
}

/// Two first pushes of one new name at once create one repository.
#[test]
fn concurrent_first_pushes_of_a_name_create_one_repository() {
    let s = Server::start();
    // A login token: six password checks at once would be throttled.
    let auth = format!("Bearer {}", s.login("admin", ADMIN_PASSWORD));
    std::thread::scope(|scope| {
        for i in 0..6 {
            let (s, auth) = (&s, auth.clone());
            scope.spawn(move || push(s, "race/app", &auth, format!("blob {i}").as_bytes()));
        }
    });
    let items = s.get_json("/api/v1/repositories?limit=1000").1["items"].clone();
    let named: Vec<&Value> = items
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["distributor_config"]["repo_registry_id"] == "race/app")
        .collect();
    assert_eq!(named.len(), 1, "{items}");
    assert_eq!(named[0]["id"], "race-app");
}
