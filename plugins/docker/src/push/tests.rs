use super::*;
use crate::manifest::{DOCKER_CONFIG, DOCKER_LAYER_TAR, DOCKER_MANIFEST, Descriptor, OCI_INDEX};
use crate::routes::tests::{error, registry, req};
use wharf_sdk::testing::{FakeHost, sha256};

fn repo(id: &str, distributor: &str) -> Repository {
    Repository {
        id: id.into(),
        content_type: "docker".into(),
        importer_config: "{}".into(),
        distributor_config: distributor.into(),
    }
}

#[track_caller]
fn write_target(plan: Plan) -> WritePlan {
    match plan {
        Plan::Write(w) => w,
        other => panic!("expected a write plan, got {other:?}"),
    }
}

#[track_caller]
fn answer(plan: Plan, status: u16) -> Vec<Header> {
    match plan {
        Plan::Body(b) => {
            assert_eq!(b.status, status, "{:?}", b.headers);
            b.headers
        }
        other => panic!("expected a {status} answer, got {other:?}"),
    }
}

fn get<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    wharf_sdk::host::header(headers, name)
}

#[test]
fn pushes_find_their_repository() {
    let mut r = registry();
    r.repositories = vec![
        repo("pushed", r#"{"repo_registry_id": "team/app"}"#),
        repo("plain", "{}"),
        repo("renamed", r#"{"repo_registry_id": "else/where"}"#),
        repo("twin1", r#"{"repo_registry_id": "twin"}"#),
        repo("twin2", r#"{"repo_registry_id": "twin"}"#),
    ];
    let start = |r: &mut _, name: &str| {
        crate::routes::resolve(
            r,
            &req("POST", &format!("/v2/{name}/blobs/uploads/"), "", &[]),
        )
    };
    // Published names win: the gate checked access by publication.
    let w = write_target(start(&mut r, "my/app"));
    assert_eq!(w.repository, "r");
    assert!(matches!(w.body, BodyTarget::NewSession));
    assert_eq!(write_target(start(&mut r, "team/app")).repository, "pushed");
    assert_eq!(write_target(start(&mut r, "plain")).repository, "plain");
    // A repository known under another name is not reachable by its id.
    error(start(&mut r, "renamed"), 404, "NAME_UNKNOWN");
    let msg = error(start(&mut r, "nobody/here"), 404, "NAME_UNKNOWN");
    assert!(msg.contains("--repo-registry-id nobody/here"), "{msg}");
    let msg = error(start(&mut r, "twin"), 400, "NAME_INVALID");
    assert!(msg.contains("twin1, twin2"), "{msg}");
}

#[test]
fn plans_per_route() {
    let mut r = registry();
    let plan = |r: &mut _, m: &str, path: &str| crate::routes::resolve(r, &req(m, path, "", &[]));
    let w = write_target(plan(&mut r, "PATCH", "/v2/my/app/blobs/uploads/s1"));
    assert!(matches!(w.body, BodyTarget::Session(ref s) if s == "s1"));
    let w = write_target(plan(&mut r, "PUT", "/v2/my/app/manifests/latest"));
    assert!(matches!(w.body, BodyTarget::NewSession));
    assert_eq!(w.max_body, MAX_MANIFEST);
    let w = write_target(plan(&mut r, "DELETE", "/v2/my/app/manifests/latest"));
    assert!(matches!(w.body, BodyTarget::None));
    error(
        plan(&mut r, "GET", "/v2/my/app/blobs/uploads/nope"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    r.sessions.insert("s1".into(), 10);
    let h = answer(plan(&mut r, "GET", "/v2/my/app/blobs/uploads/s1"), 204);
    assert_eq!(get(&h, "Range"), Some("0-9"));
    assert_eq!(get(&h, "Location"), Some("/v2/my/app/blobs/uploads/s1"));
}

#[test]
fn mount_of_a_stored_blob_needs_no_upload() {
    let mut r = registry();
    let d = sha256(b"layer");
    r.stored.insert(d.clone(), 5);
    let query = format!("mount={}&from=other", d.replace(':', "%3A"));
    let plan = crate::routes::resolve(
        &mut r,
        &req("POST", "/v2/my/app/blobs/uploads/", &query, &[]),
    );
    let h = answer(plan, 201);
    assert_eq!(get(&h, "Docker-Content-Digest"), Some(d.as_str()));
    // Not stored: an ordinary upload starts.
    let query = format!("mount={}&from=other", sha256(b"missing"));
    let plan = crate::routes::resolve(
        &mut r,
        &req("POST", "/v2/my/app/blobs/uploads/", &query, &[]),
    );
    write_target(plan);
}

fn write_req(
    host: &mut FakeHost,
    method: &str,
    path: &str,
    query: &str,
    session: Option<&str>,
) -> Written {
    write(
        host,
        &req(method, path, query, &[]),
        &repo("r", r#"{"auto_publish": true}"#),
        session,
    )
}

#[test]
fn chunked_upload_then_commit() {
    let mut host = FakeHost::default();
    host.sessions.insert("s1".into(), b"hello ".to_vec());
    let w = write_req(&mut host, "POST", "/v2/a/blobs/uploads/", "", Some("s1"));
    let h = answer(w.plan, 202);
    assert!(!w.publish, "a blob upload changes no units");
    assert_eq!(get(&h, "Range"), Some("0-5"));
    assert_eq!(get(&h, "Docker-Upload-UUID"), Some("s1"));
    host.sessions.get_mut("s1").unwrap().extend(b"world");
    let h = answer(
        write_req(&mut host, "PATCH", "/v2/a/blobs/uploads/s1", "", Some("s1")).plan,
        202,
    );
    assert_eq!(get(&h, "Range"), Some("0-10"));
    let d = sha256(b"hello world");
    let h = answer(
        write_req(
            &mut host,
            "PUT",
            "/v2/a/blobs/uploads/s1",
            &format!("digest={}", d.replace(':', "%3A")),
            Some("s1"),
        )
        .plan,
        201,
    );
    assert_eq!(
        get(&h, "Location"),
        Some(format!("/v2/a/blobs/{d}").as_str())
    );
    assert_eq!(host.blob(&d).unwrap(), b"hello world");
    assert!(host.sessions.is_empty());
}

#[test]
fn wrong_digest_stores_nothing() {
    let mut host = FakeHost::default();
    host.sessions.insert("s1".into(), b"bytes".to_vec());
    let wrong = sha256(b"other");
    let w = write_req(
        &mut host,
        "PUT",
        "/v2/a/blobs/uploads/s1",
        &format!("digest={wrong}"),
        Some("s1"),
    );
    error(w.plan, 400, "DIGEST_INVALID");
    assert!(host.blobs.borrow().is_empty());
    let w = write_req(&mut host, "PUT", "/v2/a/blobs/uploads/s2", "", Some("s2"));
    error(w.plan, 400, "DIGEST_INVALID");
    let w = write_req(&mut host, "DELETE", "/v2/a/blobs/uploads/s9", "", None);
    error(w.plan, 404, "BLOB_UPLOAD_UNKNOWN");
}

/// An image's config and layer stored, and its manifest's bytes.
fn image(host: &mut FakeHost, layer: &[u8]) -> Vec<u8> {
    let config = host.store_bytes(b"{\"config\":{}}", None).unwrap();
    let layer_digest = host.store_bytes(layer, None).unwrap();
    manifest::docker_schema2(
        &Descriptor::new(DOCKER_CONFIG, &config, 13),
        &[Descriptor::new(
            DOCKER_LAYER_TAR,
            &layer_digest,
            layer.len() as u64,
        )],
    )
}

fn put_manifest_as(host: &mut FakeHost, reference: &str, bytes: &[u8]) -> Written {
    host.sessions.insert("m".into(), bytes.to_vec());
    write_req(
        host,
        "PUT",
        &format!("/v2/a/manifests/{reference}"),
        "",
        Some("m"),
    )
}

#[test]
fn manifest_put_by_tag_records_units_and_publishes() {
    let mut host = FakeHost::default();
    let bytes = image(&mut host, b"layer one");
    let digest = sha256(&bytes);
    let w = put_manifest_as(&mut host, "latest", &bytes);
    let h = answer(w.plan, 201);
    assert!(w.publish, "auto_publish is on");
    assert_eq!(get(&h, "Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(host.repo_keys(MANIFEST), vec![digest.clone()]);
    assert_eq!(host.repo_keys(crate::model::BLOB).len(), 2);
    assert_eq!(
        host.repo_keys(TAG),
        vec![crate::model::tag_key("latest", &digest)]
    );
    // Moving the tag replaces it.
    let other = image(&mut host, b"layer two");
    answer(put_manifest_as(&mut host, "latest", &other).plan, 201);
    assert_eq!(
        host.repo_keys(TAG),
        vec![crate::model::tag_key("latest", &sha256(&other))]
    );
}

#[test]
fn manifest_put_rejects_bad_documents() {
    let mut host = FakeHost::default();
    let bytes = image(&mut host, b"layer");
    // By digest: must match the body.
    let w = put_manifest_as(&mut host, &sha256(b"not it"), &bytes);
    error(w.plan, 400, "DIGEST_INVALID");
    let w = put_manifest_as(&mut host, "latest", b"{not json");
    error(w.plan, 400, "MANIFEST_INVALID");
    let w = put_manifest_as(&mut host, "latest", b"");
    error(w.plan, 400, "MANIFEST_INVALID");
    // Names a blob that was never pushed.
    let missing = manifest::docker_schema2(
        &Descriptor::new(DOCKER_CONFIG, &sha256(b"no config"), 9),
        &[],
    );
    let w = put_manifest_as(&mut host, "latest", &missing);
    let msg = error(w.plan, 400, "MANIFEST_BLOB_UNKNOWN");
    assert!(msg.contains("push it first"), "{msg}");
    // A size that disagrees with the stored blob.
    let config = host.store_bytes(b"{}", None).unwrap();
    let lying = manifest::docker_schema2(&Descriptor::new(DOCKER_CONFIG, &config, 99), &[]);
    let w = put_manifest_as(&mut host, "latest", &lying);
    error(w.plan, 400, "MANIFEST_INVALID");
    assert!(host.repo_keys(TAG).is_empty());
    assert!(host.repo_keys(MANIFEST).is_empty());
}

#[test]
fn index_needs_its_children_pushed_first() {
    let mut host = FakeHost::default();
    let child = image(&mut host, b"amd64 layer");
    let child_digest = sha256(&child);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": child_digest, "size": child.len()}],
    }))
    .unwrap();
    let w = put_manifest_as(&mut host, "multi", &index);
    error(w.plan, 400, "MANIFEST_BLOB_UNKNOWN");
    answer(put_manifest_as(&mut host, &child_digest, &child).plan, 201);
    assert!(host.repo_keys(TAG).is_empty(), "by digest: no tag");
    answer(put_manifest_as(&mut host, "multi", &index).plan, 201);
    assert_eq!(host.repo_keys(MANIFEST).len(), 2);
}

#[test]
fn deletes_tags_and_manifests() {
    let mut host = FakeHost::default();
    let bytes = image(&mut host, b"layer");
    let digest = sha256(&bytes);
    answer(put_manifest_as(&mut host, "one", &bytes).plan, 201);
    answer(put_manifest_as(&mut host, "two", &bytes).plan, 201);
    let w = write_req(&mut host, "DELETE", "/v2/a/manifests/one", "", None);
    answer(w.plan, 202);
    assert!(w.publish);
    assert_eq!(
        host.repo_keys(TAG),
        vec![crate::model::tag_key("two", &digest)]
    );
    let w = write_req(&mut host, "DELETE", "/v2/a/manifests/one", "", None);
    error(w.plan, 404, "MANIFEST_UNKNOWN");
    // By digest: the manifest and every tag on it.
    let w = write_req(
        &mut host,
        "DELETE",
        &format!("/v2/a/manifests/{digest}"),
        "",
        None,
    );
    answer(w.plan, 202);
    assert!(host.repo_keys(TAG).is_empty());
    assert!(host.repo_keys(MANIFEST).is_empty());
}

#[test]
fn head_of_a_pushed_blob_answers_before_any_publish() {
    let mut r = registry();
    r.repositories = vec![repo("fresh", r#"{"repo_registry_id": "team/new"}"#)];
    let d = sha256(b"pushed layer");
    let head = |r: &mut _, name: &str| {
        crate::routes::resolve(r, &req("HEAD", &format!("/v2/{name}/blobs/{d}"), "", &[]))
    };
    error(head(&mut r, "team/new"), 404, "NAME_UNKNOWN");
    r.stored.insert(d.clone(), 12);
    assert!(matches!(head(&mut r, "team/new"), Plan::Blob(ref b) if b.digest == d));
    // A published repository, and a blob its publication lacks.
    assert!(matches!(head(&mut r, "my/app"), Plan::Blob(_)));
    // Never the bytes, and never for a name nobody can push to.
    let get = crate::routes::resolve(
        &mut r,
        &req("GET", &format!("/v2/team/new/blobs/{d}"), "", &[]),
    );
    error(get, 404, "NAME_UNKNOWN");
    error(head(&mut r, "nobody"), 404, "NAME_UNKNOWN");
}
