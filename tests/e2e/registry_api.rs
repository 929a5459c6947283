//! The Docker Registry HTTP API V2 as Wharf serves it: manifests and blobs by
//! tag and digest, ranges, conditional requests, listings, errors, publish
//! isolation and redirect mode. Plain HTTP, so every header is checked.

use crate::registry_support::*;
use crate::support::*;
use serde_json::{Value, json};

/// A server with `test/busybox` published: busybox.tar (`latest`) and
/// two-layer.tar (`v1`).
fn published(distributor: Value) -> Server {
    let s = Server::start();
    s.create_repo(json!({
        "id": "busybox",
        "content_type": "docker",
        "distributor_config": distributor,
    }));
    for file in ["busybox.tar", "two-layer.tar"] {
        let t = import(&s, "busybox", &images_dir().join(file));
        assert_eq!(t["state"], "finished", "{t}");
    }
    publish(&s, "busybox");
    s
}

fn manifest_of(s: &Server, reference: &str) -> (Vec<u8>, String, Value) {
    let r = request(
        s,
        "GET",
        &format!("/v2/test/busybox/manifests/{reference}"),
        &[("Accept", DOCKER_ACCEPT)],
    );
    assert_eq!(r.status().as_u16(), 200, "{reference}");
    let digest = header(&r, "docker-content-digest");
    let bytes = r.bytes().unwrap().to_vec();
    let parsed = serde_json::from_slice(&bytes).unwrap();
    (bytes, digest, parsed)
}

#[test]
fn manifest_head_and_get_agree_by_tag_and_by_digest() {
    let s = published(json!({"repo_registry_id": "test/busybox"}));
    let (bytes, digest, _) = manifest_of(&s, "latest");
    assert_eq!(sha256_digest(&bytes), digest);
    for reference in ["latest", digest.as_str()] {
        let path = format!("/v2/test/busybox/manifests/{reference}");
        let head = request(&s, "HEAD", &path, &[("Accept", DOCKER_ACCEPT)]);
        assert_eq!(head.status().as_u16(), 200, "HEAD {reference}");
        assert_eq!(header(&head, "docker-content-digest"), digest);
        assert_eq!(header(&head, "content-type"), DOCKER_MANIFEST);
        assert_eq!(header(&head, "content-length"), bytes.len().to_string());
        assert!(head.bytes().unwrap().is_empty(), "HEAD has no body");

        let get = request(&s, "GET", &path, &[("Accept", DOCKER_ACCEPT)]);
        assert_eq!(get.status().as_u16(), 200, "GET {reference}");
        assert_eq!(header(&get, "docker-content-digest"), digest);
        // A tag can move: only an answer by digest may be cached for long.
        let cache = header(&get, "cache-control");
        assert_eq!(
            cache.contains("max-age=31536000"),
            reference.starts_with("sha256:"),
            "{reference}: Cache-Control {cache:?}"
        );
        assert_eq!(get.bytes().unwrap(), bytes);
    }
    // The two tags are two different manifests.
    let (_, v1, _) = manifest_of(&s, "v1");
    assert_ne!(v1, digest);
}

/// Plans given again (http::plan_cache) never outlive their publication:
/// a tag moved and published is served at once, by GET and HEAD alike.
#[test]
fn a_tag_moved_after_repeated_reads_is_served_at_once() {
    let s = published(json!({"repo_registry_id": "test/busybox"}));
    let (_, latest, _) = manifest_of(&s, "latest");
    let (_, v1, _) = manifest_of(&s, "v1");
    assert_ne!(latest, v1);
    let head = |s: &Server| {
        let r = request(
            s,
            "HEAD",
            "/v2/test/busybox/manifests/latest",
            &[("Accept", DOCKER_ACCEPT)],
        );
        header(&r, "docker-content-digest")
    };
    for _ in 0..3 {
        assert_eq!(manifest_of(&s, "latest").1, latest);
        assert_eq!(head(&s), latest);
    }
    let t = s.repo_task("busybox", "tag", json!({"tag": "latest", "target": v1}));
    assert_eq!(t["state"], "finished", "{t}");
    // Not published yet: still the old image.
    assert_eq!(manifest_of(&s, "latest").1, latest);
    publish(&s, "busybox");
    assert_eq!(manifest_of(&s, "latest").1, v1);
    assert_eq!(head(&s), v1);
}

#[test]
fn blob_head_get_and_range_requests() {
    let s = published(json!({"repo_registry_id": "test/busybox"}));
    let (_, _, m) = manifest_of(&s, "latest");
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let size = m["layers"][0]["size"].as_u64().unwrap();
    let path = format!("/v2/test/busybox/blobs/{layer}");

    let head = request(&s, "HEAD", &path, &[]);
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(header(&head, "content-length"), size.to_string());
    assert_eq!(header(&head, "docker-content-digest"), layer);

    let full = request(&s, "GET", &path, &[]);
    assert_eq!(full.status().as_u16(), 200);
    let full = full.bytes().unwrap();
    assert_eq!(full.len() as u64, size);
    assert_eq!(sha256_digest(&full), layer);

    let r = request(&s, "GET", &path, &[("Range", "bytes=1000-1999")]);
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes 1000-1999/{size}")
    );
    assert_eq!(header(&r, "content-length"), "1000");
    assert_eq!(r.bytes().unwrap(), full[1000..2000]);

    // Open-ended and suffix ranges, as resuming clients send them.
    let r = request(
        &s,
        "GET",
        &path,
        &[("Range", &format!("bytes={}-", size - 10))],
    );
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().unwrap(), full[full.len() - 10..]);
    let r = request(&s, "GET", &path, &[("Range", "bytes=-7")]);
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().unwrap(), full[full.len() - 7..]);

    let r = request(&s, "GET", &path, &[("Range", &format!("bytes={size}-"))]);
    assert_eq!(r.status().as_u16(), 416);
    assert_eq!(header(&r, "content-range"), format!("bytes */{size}"));
}

#[test]
fn if_none_match_with_the_digest_etag_answers_304() {
    let s = published(json!({"repo_registry_id": "test/busybox"}));
    let (_, digest, m) = manifest_of(&s, "latest");
    let config = m["config"]["digest"].as_str().unwrap();
    for path in [
        "/v2/test/busybox/manifests/latest".to_string(),
        format!("/v2/test/busybox/manifests/{digest}"),
        format!("/v2/test/busybox/blobs/{config}"),
    ] {
        let first = request(&s, "GET", &path, &[("Accept", DOCKER_ACCEPT)]);
        assert_eq!(first.status().as_u16(), 200, "{path}");
        let etag = header(&first, "etag");
        assert!(!etag.is_empty(), "{path}: no ETag");
        let again = request(
            &s,
            "GET",
            &path,
            &[("Accept", DOCKER_ACCEPT), ("If-None-Match", &etag)],
        );
        assert_eq!(again.status().as_u16(), 304, "{path}");
        assert!(again.bytes().unwrap().is_empty());
        let other = request(
            &s,
            "GET",
            &path,
            &[
                ("Accept", DOCKER_ACCEPT),
                ("If-None-Match", "\"sha256:other\""),
            ],
        );
        assert_eq!(other.status().as_u16(), 200, "{path}");
    }
}

#[test]
fn tags_list_pages_with_n_last_and_link() {
    let s = Server::start();
    docker_repo(&s, "tags", "test/taglist", json!({}));
    // Five tags on one image: a docker-archive naming them all.
    let tmp = scratch();
    let archive = tmp.path().join("tags.tar");
    must(skopeo().args([
        "copy",
        "--quiet",
        &format!(
            "docker-archive:{}",
            images_dir().join("busybox.tar").display()
        ),
        &format!("docker-archive:{}:test/taglist:a", archive.display()),
        "--additional-tag",
        "test/taglist:b",
        "--additional-tag",
        "test/taglist:c",
        "--additional-tag",
        "test/taglist:d",
        "--additional-tag",
        "test/taglist:e",
    ]));
    s.import_and_publish("tags", &archive);

    let all = request(&s, "GET", "/v2/test/taglist/tags/list", &[]);
    assert_eq!(all.status().as_u16(), 200);
    assert!(header(&all, "link").is_empty());
    let all: Value = all.json().unwrap();
    assert_eq!(
        all,
        json!({"name": "test/taglist", "tags": ["a", "b", "c", "d", "e"]})
    );

    // Follow Link headers with n=2: a b | c d | e.
    let mut pages = Vec::new();
    let mut next = Some("/v2/test/taglist/tags/list?n=2".to_string());
    while let Some(path) = next.take() {
        assert!(pages.len() < 10, "pagination does not end: {pages:?}");
        let r = request(&s, "GET", &path, &[]);
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let link = header(&r, "link");
        let page: Value = r.json().unwrap();
        pages.push(page["tags"].clone());
        if !link.is_empty() {
            assert!(link.ends_with("rel=\"next\""), "{link}");
            let target = link.trim_start_matches('<').split('>').next().unwrap();
            next = Some(target.to_string());
        }
    }
    assert_eq!(
        pages,
        vec![json!(["a", "b"]), json!(["c", "d"]), json!(["e"])]
    );

    let r = request(&s, "GET", "/v2/test/taglist/tags/list?n=10&last=c", &[]);
    assert!(header(&r, "link").is_empty());
    assert_eq!(r.json::<Value>().unwrap()["tags"], json!(["d", "e"]));
}

#[test]
fn catalog_lists_published_names_only() {
    let s = Server::start();
    for (id, name) in [("one", "team/one"), ("two", "team/two"), ("three", "zzz")] {
        docker_repo(&s, id, name, json!({}));
    }
    for id in ["one", "two"] {
        s.import_and_publish(id, &images_dir().join("busybox.tar"));
    }
    // "three" exists but was never published: not in the catalog.
    let r = request(&s, "GET", "/v2/_catalog", &[]);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<Value>().unwrap(),
        json!({"repositories": ["team/one", "team/two"]})
    );
    let r = request(&s, "GET", "/v2/_catalog?n=1", &[]);
    let link = header(&r, "link");
    assert!(link.contains("rel=\"next\""), "{link}");
    assert_eq!(
        r.json::<Value>().unwrap()["repositories"],
        json!(["team/one"])
    );
    let r = request(&s, "GET", "/v2/_catalog?n=1&last=team/one", &[]);
    assert!(header(&r, "link").is_empty());
    assert_eq!(
        r.json::<Value>().unwrap()["repositories"],
        json!(["team/two"])
    );
}

#[test]
fn unknown_names_manifests_blobs_and_invalid_digests_get_registry_errors() {
    let s = published(json!({"repo_registry_id": "test/busybox"}));
    docker_repo(&s, "unpublished", "test/unpublished", json!({}));
    let t = import(&s, "unpublished", &images_dir().join("busybox.tar"));
    assert_eq!(t["state"], "finished", "{t}");
    let zero = format!("sha256:{}", "0".repeat(64));
    for (path, status, code) in [
        // A repository that exists without a publication lacks the
        // manifest; only a name no repository has is unknown.
        (
            "/v2/test/unpublished/manifests/latest".to_string(),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            "/v2/no/such/repo/blobs/".to_string() + &zero,
            404,
            "NAME_UNKNOWN",
        ),
        (
            "/v2/test/busybox/manifests/nope".to_string(),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            format!("/v2/test/busybox/manifests/{zero}"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            format!("/v2/test/busybox/blobs/{zero}"),
            404,
            "BLOB_UNKNOWN",
        ),
        (
            "/v2/test/busybox/blobs/sha256:xyz".to_string(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "/v2/test/busybox/manifests/sha256:1234".to_string(),
            400,
            "DIGEST_INVALID",
        ),
    ] {
        let r = request(&s, "GET", &path, &[("Accept", DOCKER_ACCEPT)]);
        assert_eq!(r.status().as_u16(), status, "{path}");
        assert_eq!(header(&r, "content-type"), "application/json", "{path}");
        assert_eq!(error_code(r), code, "{path}");
        let head = request(&s, "HEAD", &path, &[("Accept", DOCKER_ACCEPT)]);
        assert_eq!(head.status().as_u16(), status, "HEAD {path}");
    }
    // Its tag list is empty until it is published.
    let r = request(&s, "GET", "/v2/test/unpublished/tags/list", &[]);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<Value>().unwrap(),
        json!({"name": "test/unpublished", "tags": []})
    );
    // A blob of another published repository is not reachable through this one.
    docker_repo(&s, "other", "test/other", json!({}));
    s.import_and_publish("other", &images_dir().join("busybox-oci.tar"));
    let (_, _, m) = manifest_of(&s, "v1");
    let second_layer = m["layers"][1]["digest"].as_str().unwrap();
    let r = request(
        &s,
        "GET",
        &format!("/v2/test/other/blobs/{second_layer}"),
        &[],
    );
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(error_code(r), "BLOB_UNKNOWN");
    let (ok, out) = run(docker().args(["pull", &format!("{}/test/unpublished:latest", s.addr)]));
    assert!(!ok, "docker pulled an unpublished repository: {out}");
}

#[test]
fn content_imported_after_a_publish_stays_invisible_until_the_next_publish() {
    let s = Server::start();
    docker_repo(&s, "app", "test/app", json!({}));
    s.import_and_publish("app", &images_dir().join("busybox.tar"));
    let tags = |s: &Server| -> Value {
        let r = request(s, "GET", "/v2/test/app/tags/list", &[]);
        r.json::<Value>().unwrap()["tags"].clone()
    };
    assert_eq!(tags(&s), json!(["latest"]));
    let r = request(
        &s,
        "GET",
        "/v2/test/app/manifests/latest",
        &[("Accept", DOCKER_ACCEPT)],
    );
    let latest = header(&r, "docker-content-digest");

    // two-layer.tar brings tag v1 and its second layer.
    let t = import(&s, "app", &images_dir().join("two-layer.tar"));
    assert_eq!(t["state"], "finished", "{t}");
    let c = content(&s, "app");
    assert_eq!(tag_names(&c), ["latest", "v1"]);
    let v1_manifest = c
        .tags
        .iter()
        .find_map(|k| k.strip_prefix("v1@"))
        .unwrap()
        .to_string();

    assert_eq!(tags(&s), json!(["latest"]), "v1 visible before publish");
    let r = request(
        &s,
        "GET",
        "/v2/test/app/manifests/v1",
        &[("Accept", DOCKER_ACCEPT)],
    );
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(error_code(r), "MANIFEST_UNKNOWN");
    let r = request(
        &s,
        "GET",
        &format!("/v2/test/app/manifests/{v1_manifest}"),
        &[("Accept", DOCKER_ACCEPT)],
    );
    assert_eq!(
        r.status().as_u16(),
        404,
        "v1 by digest visible before publish"
    );
    let (ok, out) = run(docker().args(["pull", &format!("{}/test/app:v1", s.addr)]));
    assert!(!ok, "docker pulled an unpublished tag: {out}");

    publish(&s, "app");
    assert_eq!(tags(&s), json!(["latest", "v1"]));
    let r = request(
        &s,
        "GET",
        "/v2/test/app/manifests/v1",
        &[("Accept", DOCKER_ACCEPT)],
    );
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "docker-content-digest"), v1_manifest);
    // The tag published before did not move.
    let r = request(
        &s,
        "GET",
        "/v2/test/app/manifests/latest",
        &[("Accept", DOCKER_ACCEPT)],
    );
    assert_eq!(header(&r, "docker-content-digest"), latest);
}

#[test]
fn redirect_url_answers_blob_gets_with_302_to_the_url_and_digest() {
    let s = published(json!({
        "repo_registry_id": "test/busybox",
        "redirect_url": "https://cdn.example.com/blobs/",
    }));
    let (_, _, m) = manifest_of(&s, "latest");
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let r = request(&s, "GET", &format!("/v2/test/busybox/blobs/{layer}"), &[]);
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(
        header(&r, "location"),
        format!("https://cdn.example.com/blobs/{layer}")
    );
    // Manifests and HEADs are still answered here, unknown blobs still fail here.
    let (_, digest, _) = manifest_of(&s, "latest");
    assert!(digest.starts_with("sha256:"));
    let r = request(&s, "HEAD", &format!("/v2/test/busybox/blobs/{layer}"), &[]);
    assert_eq!(r.status().as_u16(), 200);
    let zero = format!("sha256:{}", "0".repeat(64));
    let r = request(&s, "GET", &format!("/v2/test/busybox/blobs/{zero}"), &[]);
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(error_code(r), "BLOB_UNKNOWN");

    // Without redirect_url (after an update and a publish) blobs come from Wharf.
    let r = s
        .http
        .patch(s.url("/api/v1/repositories/busybox"))
        .json(&json!({"distributor_config": {"redirect_url": null}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    publish(&s, "busybox");
    let r = request(&s, "GET", &format!("/v2/test/busybox/blobs/{layer}"), &[]);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(sha256_digest(&r.bytes().unwrap()), layer);
}
