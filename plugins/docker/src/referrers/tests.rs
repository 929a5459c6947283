use super::*;
use crate::routes::resolve;
use crate::routes::tests::{error, req, with_unpublished};
use wharf_sdk::host::header;
use wharf_sdk::testing::digest_of as d;

const SIGNATURE: &str = "application/vnd.example.signature";
const SBOM: &str = "application/spdx+json";

fn referrer(digest: &str, artifact_type: Option<&str>) -> Descriptor {
    let mut listed = Descriptor::new(crate::manifest::OCI_MANIFEST, digest, 321);
    listed.artifact_type = artifact_type.map(str::to_string);
    listed
}

/// The test registry with d('a') signed (d('5')) and described by an SBOM
/// (d('6')), and a repository `team/new` that has no publication.
fn with_referrers() -> crate::routes::tests::FakeRegistry {
    let mut r = with_unpublished();
    let mut index = crate::routes::tests::content();
    let mut signature = referrer(&d('5'), Some(SIGNATURE));
    signature.annotations.insert(
        "org.opencontainers.image.created".into(),
        "2026-12-04".into(),
    );
    index
        .referrers
        .insert(d('a'), vec![signature, referrer(&d('6'), Some(SBOM))]);
    r.put_index(d('x'), index);
    r
}

/// A referrers answer: its body and headers, checked to be an OCI index.
#[track_caller]
fn index_answer(plan: Plan) -> (serde_json::Value, Vec<Header>) {
    let Plan::Body(b) = plan else {
        panic!("expected an index, got {plan:?}")
    };
    assert_eq!(b.status, 200);
    assert_eq!(b.content_type, OCI_INDEX);
    let v: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    (v, b.headers)
}

fn referrers_of(r: &mut crate::routes::tests::FakeRegistry, path: &str, query: &str) -> Plan {
    resolve(r, &req("GET", path, query, &[]))
}

#[test]
fn lists_the_manifests_that_refer_to_a_subject() {
    let mut r = with_referrers();
    let (v, headers) = index_answer(referrers_of(
        &mut r,
        &format!("/v2/my/app/referrers/{}", d('a')),
        "",
    ));
    assert_eq!(header(&headers, FILTERS_APPLIED), None);
    assert_eq!(
        v["manifests"],
        serde_json::json!([
            {
                "mediaType": crate::manifest::OCI_MANIFEST,
                "digest": d('5'),
                "size": 321,
                "artifactType": SIGNATURE,
                "annotations": {"org.opencontainers.image.created": "2026-12-04"},
            },
            {
                "mediaType": crate::manifest::OCI_MANIFEST,
                "digest": d('6'),
                "size": 321,
                "artifactType": SBOM,
            },
        ])
    );
}

#[test]
fn filters_by_artifact_type_and_says_so() {
    let mut r = with_referrers();
    let path = format!("/v2/my/app/referrers/{}", d('a'));
    let query = format!(
        "artifactType={}",
        SBOM.replace('/', "%2F").replace('+', "%2B")
    );
    let (v, headers) = index_answer(referrers_of(&mut r, &path, &query));
    assert_eq!(header(&headers, FILTERS_APPLIED), Some("artifactType"));
    let digests: Vec<&str> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, [d('6')]);
    // A type nothing has: an empty list, the filter still applied.
    let (v, headers) = index_answer(referrers_of(&mut r, &path, "artifactType=x%2Fy"));
    assert_eq!(v["manifests"], serde_json::json!([]));
    assert_eq!(header(&headers, FILTERS_APPLIED), Some("artifactType"));
    // An empty value filters nothing.
    let (v, headers) = index_answer(referrers_of(&mut r, &path, "artifactType="));
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(header(&headers, FILTERS_APPLIED), None);
}

#[test]
fn unknown_subjects_and_unpublished_repositories_have_none() {
    let mut r = with_referrers();
    for path in [
        // Nothing refers to it, or it does not exist: never a 404.
        format!("/v2/my/app/referrers/{}", d('b')),
        format!("/v2/my/app/referrers/{}", d('9')),
        // A repository that exists but was never published.
        format!("/v2/team/new/referrers/{}", d('a')),
    ] {
        let (v, _) = index_answer(referrers_of(&mut r, &path, ""));
        assert_eq!(v["manifests"], serde_json::json!([]), "{path}");
    }
    // HEAD is answered like GET (the host drops the body).
    let head = resolve(
        &mut r,
        &req("HEAD", &format!("/v2/my/app/referrers/{}", d('a')), "", &[]),
    );
    index_answer(head);
}

#[test]
fn refuses_bad_digests_and_unknown_names() {
    let mut r = with_referrers();
    error(
        referrers_of(&mut r, "/v2/my/app/referrers/sha256:short", ""),
        400,
        "DIGEST_INVALID",
    );
    error(
        referrers_of(&mut r, "/v2/my/app/referrers/latest", ""),
        400,
        "DIGEST_INVALID",
    );
    error(
        referrers_of(&mut r, &format!("/v2/nobody/referrers/{}", d('a')), ""),
        404,
        "NAME_UNKNOWN",
    );
    // Only reads: the referrers list is made by pushing manifests.
    let put = resolve(
        &mut r,
        &req("PUT", &format!("/v2/my/app/referrers/{}", d('a')), "", &[]),
    );
    error(put, 405, "UNSUPPORTED");
}

#[test]
fn filter_parsing() {
    assert_eq!(Filter::parse(""), Filter::default());
    assert_eq!(
        Filter::parse("n=1&artifactType=a%2Fb&artifactType=c"),
        Filter {
            artifact_types: vec!["a/b".into(), "c".into()]
        }
    );
    let untyped = referrer(&d('1'), None);
    assert!(Filter::default().admits(&untyped));
    assert!(!Filter::parse("artifactType=a").admits(&untyped));
}
