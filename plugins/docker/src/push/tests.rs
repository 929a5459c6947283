use super::*;
use crate::manifest::{
    DOCKER_CONFIG, DOCKER_LAYER_TAR, DOCKER_MANIFEST, Descriptor, OCI_INDEX, OCI_MANIFEST,
};
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
    assert_eq!(get(&h, "Docker-Upload-UUID"), Some("s1"));
}

#[test]
fn mount_of_a_stored_blob_needs_no_upload() {
    // resolve plans a session either way: the mount is decided in write.
    let mut r = registry();
    let d = sha256(b"layer");
    let query = format!("mount={}&from=other", d.replace(':', "%3A"));
    let plan = crate::routes::resolve(
        &mut r,
        &req("POST", "/v2/my/app/blobs/uploads/", &query, &[]),
    );
    write_target(plan);
    // Stored (and visible to the pusher): 201, and the session is dropped.
    let mut host = FakeHost::default();
    let stored = host.store_bytes(b"layer", None).unwrap();
    assert_eq!(stored, d);
    host.sessions.insert("s1".into(), Vec::new());
    let w = write_req(
        &mut host,
        "POST",
        "/v2/my/app/blobs/uploads/",
        &query,
        Some("s1"),
    );
    let h = answer(w.plan, 201);
    assert_eq!(get(&h, "Docker-Content-Digest"), Some(d.as_str()));
    assert!(!host.sessions.contains_key("s1"));
    // Not stored: the session is the upload.
    host.sessions.insert("s2".into(), Vec::new());
    let query = format!("mount={}&from=other", sha256(b"missing"));
    let w = write_req(
        &mut host,
        "POST",
        "/v2/my/app/blobs/uploads/",
        &query,
        Some("s2"),
    );
    let h = answer(w.plan, 202);
    assert_eq!(get(&h, "Docker-Upload-UUID"), Some("s2"));
    // A `from` that is no name: no mount.
    host.sessions.insert("s3".into(), Vec::new());
    let query = format!("mount={d}&from=..%2Fx");
    let w = write_req(
        &mut host,
        "POST",
        "/v2/my/app/blobs/uploads/",
        &query,
        Some("s3"),
    );
    answer(w.plan, 202);
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
    assert_eq!(get(&h, "Location"), Some("/v2/a/blobs/uploads/s1"));
    host.sessions.get_mut("s1").unwrap().extend(b"world");
    let h = answer(
        write_req(&mut host, "PATCH", "/v2/a/blobs/uploads/s1", "", Some("s1")).plan,
        202,
    );
    assert_eq!(get(&h, "Range"), Some("0-10"));
    assert_eq!(get(&h, "Docker-Upload-UUID"), Some("s1"));
    assert_eq!(get(&h, "Location"), Some("/v2/a/blobs/uploads/s1"));
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
    assert_eq!(get(&h, "Docker-Content-Digest"), Some(d.as_str()));
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
fn a_pushed_blob_is_served_before_any_publish() {
    let mut r = registry();
    r.repositories = vec![repo("fresh", r#"{"repo_registry_id": "team/new"}"#)];
    let d = sha256(b"pushed layer");
    let read = |r: &mut _, method: &str, name: &str| {
        crate::routes::resolve(r, &req(method, &format!("/v2/{name}/blobs/{d}"), "", &[]))
    };
    for method in ["HEAD", "GET"] {
        error(read(&mut r, method, "team/new"), 404, "BLOB_UNKNOWN");
    }
    r.stored.insert(d.clone(), 12);
    // The host serves it only if the repository received it by upload.
    for method in ["HEAD", "GET"] {
        let plan = read(&mut r, method, "team/new");
        let Plan::Blob(b) = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(b.digest, d);
        assert_eq!(get(&b.headers, "Docker-Content-Digest"), Some(d.as_str()));
    }
    // A published repository, and a blob its publication lacks.
    assert!(matches!(read(&mut r, "GET", "my/app"), Plan::Blob(_)));
    // Never for a name no repository has.
    error(read(&mut r, "HEAD", "nobody"), 404, "NAME_UNKNOWN");
}

/// (action, reference, digest) of each event a write reports.
fn events(w: &Written) -> Vec<(ContentAction, String, Option<String>)> {
    w.events
        .iter()
        .map(|e| (e.action, e.reference.clone(), e.digest.clone()))
        .collect()
}

#[test]
fn writes_tell_what_they_pushed_and_deleted() {
    let mut host = FakeHost::default();
    let bytes = image(&mut host, b"layer");
    let digest = sha256(&bytes);
    let w = put_manifest_as(&mut host, "latest", &bytes);
    assert_eq!(
        events(&w),
        [(ContentAction::Pushed, "latest".into(), Some(digest.clone()))]
    );
    let w = put_manifest_as(&mut host, &digest, &bytes);
    assert_eq!(
        events(&w),
        [(ContentAction::Pushed, digest.clone(), Some(digest.clone()))]
    );
    let w = write_req(&mut host, "DELETE", "/v2/a/manifests/latest", "", None);
    assert_eq!(
        events(&w),
        [(
            ContentAction::Deleted,
            "latest".into(),
            Some(digest.clone())
        )]
    );
    let by_digest = format!("/v2/a/manifests/{digest}");
    let w = write_req(&mut host, "DELETE", &by_digest, "", None);
    assert_eq!(
        events(&w),
        [(ContentAction::Deleted, digest.clone(), Some(digest.clone()))]
    );
    // Failures and blob uploads tell nothing.
    let w = write_req(&mut host, "DELETE", &by_digest, "", None);
    error(w.plan.clone(), 404, "MANIFEST_UNKNOWN");
    assert!(w.events.is_empty());
    let w = put_manifest_as(&mut host, "latest", b"{not json");
    assert!(w.events.is_empty());
    host.sessions.insert("s1".into(), b"blob".to_vec());
    let w = write_req(&mut host, "POST", "/v2/a/blobs/uploads/", "", Some("s1"));
    answer(w.plan, 202);
    assert!(w.events.is_empty());
}

/// The 2-byte config OCI artifacts without a config of their own use.
const EMPTY_CONFIG: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
const SIGNATURE: &str = "application/vnd.example.signature";

/// An artifact manifest (an empty config, one layer of its own type)
/// referring to `subject`, with its layer and config stored.
fn artifact(host: &mut FakeHost, subject: &str, payload: &[u8]) -> Vec<u8> {
    assert_eq!(host.store_bytes(b"{}", None).unwrap(), EMPTY_CONFIG);
    let layer = host.store_bytes(payload, None).unwrap();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE,
        "config": {"mediaType": EMPTY_TYPE, "digest": EMPTY_CONFIG, "size": 2, "data": "e30="},
        "layers": [{"mediaType": "application/vnd.example.signature.v1", "digest": layer, "size": payload.len()}],
        "subject": {"mediaType": DOCKER_MANIFEST, "digest": subject, "size": 123},
        "annotations": {"org.opencontainers.image.created": "2026-12-04T00:00:00Z"},
    }))
    .unwrap()
}

/// What a client pulling `a` sees once the repository is published.
fn published(host: &mut FakeHost) -> crate::routes::tests::FakeRegistry {
    use crate::index::{ManifestEntry, View};
    use std::rc::Rc;
    let done = crate::publish::publish(host, &repo("r", r#"{"repo_registry_id": "a"}"#)).unwrap();
    let mut r = registry();
    // The index and its shards, as the host stores them.
    r.shards.blobs.extend(host.blobs.borrow().clone());
    let index = View::read(&host.blob(&done.index).unwrap()).unwrap();
    let View::Sharded(root) = &index else {
        panic!("a publish writes shards")
    };
    r.publications.insert(
        "a".into(),
        wharf_sdk::publications::Publication {
            name: "a".into(),
            repository_id: "r".into(),
            index: done.index.clone(),
            config: "{}".into(),
        },
    );
    for (digest, _) in root.manifests.entries::<ManifestEntry, _>(&mut r).unwrap() {
        r.manifests
            .insert(digest.clone(), Rc::new(host.blob(&digest).unwrap()));
    }
    r.indexes.insert(done.index, Rc::new(index));
    r
}

/// A manifest as a client gets it: media type and bytes.
#[track_caller]
fn pull(r: &mut crate::routes::tests::FakeRegistry, reference: &str) -> (String, Vec<u8>) {
    let plan = crate::routes::resolve(
        r,
        &req(
            "GET",
            &format!("/v2/a/manifests/{reference}"),
            "",
            &[manifest::ACCEPT_ALL],
        ),
    );
    match plan {
        Plan::Body(b) if b.status == 200 => (b.content_type, b.body),
        other => panic!("expected the manifest, got {other:?}"),
    }
}

#[test]
fn artifacts_with_subjects_are_stored_and_served_as_pushed() {
    let mut host = FakeHost::default();
    let image_bytes = image(&mut host, b"layer");
    let subject = sha256(&image_bytes);
    answer(put_manifest_as(&mut host, "v1", &image_bytes).plan, 201);

    let signature = artifact(&mut host, &subject, b"signed!");
    let sig_digest = sha256(&signature);
    let w = put_manifest_as(&mut host, &sig_digest, &signature);
    let h = answer(w.plan, 201);
    assert_eq!(get(&h, "OCI-Subject"), Some(subject.as_str()));
    assert_eq!(get(&h, "Docker-Content-Digest"), Some(sig_digest.as_str()));
    let meta: ManifestMeta =
        serde_json::from_str(&host.repo_unit(MANIFEST, &sig_digest).unwrap().metadata).unwrap();
    assert_eq!(meta.subject.as_deref(), Some(subject.as_str()));
    assert_eq!(meta.artifact_type.as_deref(), Some(SIGNATURE));
    assert_eq!(
        meta.annotations["org.opencontainers.image.created"],
        "2026-12-04T00:00:00Z"
    );

    // The subject need not exist; without an artifactType the config's
    // media type names the artifact.
    let missing = crate::manifest::Descriptor::new(DOCKER_MANIFEST, &sha256(b"gone"), 1);
    let mut orphan: serde_json::Value =
        serde_json::from_slice(&artifact(&mut host, &missing.digest, b"sbom")).unwrap();
    orphan.as_object_mut().unwrap().remove("artifactType");
    let orphan = serde_json::to_vec(&orphan).unwrap();
    let h = answer(
        put_manifest_as(&mut host, &sha256(&orphan), &orphan).plan,
        201,
    );
    assert_eq!(get(&h, "OCI-Subject"), Some(missing.digest.as_str()));

    // An index can be an artifact with a subject too.
    let bundle = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "application/vnd.example.bundle",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sig_digest, "size": signature.len(), "artifactType": SIGNATURE}],
        "subject": {"mediaType": DOCKER_MANIFEST, "digest": subject, "size": image_bytes.len()},
    }))
    .unwrap();
    let bundle_digest = sha256(&bundle);
    let h = answer(
        put_manifest_as(&mut host, &bundle_digest, &bundle).plan,
        201,
    );
    assert_eq!(get(&h, "OCI-Subject"), Some(subject.as_str()));

    let mut r = published(&mut host);
    assert_eq!(
        pull(&mut r, &sig_digest),
        (OCI_MANIFEST.to_string(), signature.clone())
    );
    assert_eq!(
        pull(&mut r, &bundle_digest),
        (OCI_INDEX.to_string(), bundle.clone())
    );
    let config = crate::routes::resolve(
        &mut r,
        &req("GET", &format!("/v2/a/blobs/{EMPTY_CONFIG}"), "", &[]),
    );
    assert!(
        matches!(config, Plan::Blob(ref b) if b.digest == EMPTY_CONFIG),
        "{config:?}"
    );

    let referrers = |r: &mut _, subject: &str| {
        let plan = crate::routes::resolve(
            r,
            &req("GET", &format!("/v2/a/referrers/{subject}"), "", &[]),
        );
        let Plan::Body(b) = plan else {
            panic!("{plan:?}")
        };
        assert_eq!((b.status, b.content_type.as_str()), (200, OCI_INDEX));
        serde_json::from_slice::<serde_json::Value>(&b.body).unwrap()["manifests"].clone()
    };
    let mut listed = referrers(&mut r, &subject).as_array().unwrap().clone();
    listed.sort_by_key(|m| m["digest"].as_str().unwrap().to_string());
    let mut expected = vec![
        serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": sig_digest,
            "size": signature.len(),
            "artifactType": SIGNATURE,
            "annotations": {"org.opencontainers.image.created": "2026-12-04T00:00:00Z"},
        }),
        serde_json::json!({
            "mediaType": OCI_INDEX,
            "digest": bundle_digest,
            "size": bundle.len(),
            "artifactType": "application/vnd.example.bundle",
        }),
    ];
    expected.sort_by_key(|m| m["digest"].as_str().unwrap().to_string());
    assert_eq!(listed, expected);
    let listed = referrers(&mut r, &missing.digest);
    assert_eq!(listed[0]["artifactType"], EMPTY_TYPE);
    assert_eq!(referrers(&mut r, &sig_digest), serde_json::json!([]));
}

#[test]
fn referrers_tag_schema_indexes_are_accepted_and_served() {
    // Clients that find no referrers API push an index of the referrers
    // under the tag `sha256-<hex of the subject>`.
    let mut host = FakeHost::default();
    let image_bytes = image(&mut host, b"layer");
    let subject = sha256(&image_bytes);
    answer(put_manifest_as(&mut host, "v1", &image_bytes).plan, 201);
    let signature = artifact(&mut host, &subject, b"signed!");
    answer(
        put_manifest_as(&mut host, &sha256(&signature), &signature).plan,
        201,
    );
    let fallback = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(&signature), "size": signature.len(), "artifactType": SIGNATURE}],
    }))
    .unwrap();
    let tag = subject.replace(':', "-");
    let w = put_manifest_as(&mut host, &tag, &fallback);
    assert_eq!(events(&w)[0].1, tag);
    answer(w.plan, 201);

    let mut r = published(&mut host);
    let (v, _) = crate::routes::tests::body(crate::routes::resolve(
        &mut r,
        &req("GET", "/v2/a/tags/list", "", &[]),
    ));
    assert_eq!(v["tags"], serde_json::json!([tag, "v1"]));
    assert_eq!(pull(&mut r, &tag), (OCI_INDEX.to_string(), fallback));
}
