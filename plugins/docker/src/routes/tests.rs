use super::*;
use crate::index::{Content, ManifestEntry};
use crate::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::shards::{ShardRead, ShardValue, testing::Memory};
use std::collections::BTreeMap;

use wharf_sdk::testing::digest_of as d;

pub(crate) struct FakeRegistry {
    pub(crate) publications: BTreeMap<String, Publication>,
    pub(crate) indexes: BTreeMap<String, Rc<View>>,
    pub(crate) index_reads: u32,
    /// The shards of the indexes.
    pub(crate) shards: Memory,
    /// Manifest bytes the fake host has (d('a') only).
    pub(crate) manifests: BTreeMap<String, Rc<Vec<u8>>>,
    pub(crate) repositories: Vec<Repository>,
    pub(crate) stored: BTreeMap<String, u64>,
    pub(crate) sessions: BTreeMap<String, u64>,
}

impl Registry for FakeRegistry {
    fn lookup(&mut self, name: &str) -> Option<Publication> {
        self.publications.get(name).cloned()
    }

    fn names(&mut self, after: Option<&str>, limit: u32) -> Vec<String> {
        self.publications
            .keys()
            .filter(|k| after.is_none_or(|a| k.as_str() > a))
            .take(limit as usize)
            .cloned()
            .collect()
    }

    fn index(&mut self, digest: &str) -> Result<Rc<View>, String> {
        self.index_reads += 1;
        self.indexes
            .get(digest)
            .cloned()
            .ok_or_else(|| "no such blob".to_string())
    }

    fn manifest(&mut self, digest: &str, size: u64) -> Result<Rc<Vec<u8>>, String> {
        let bytes = self
            .manifests
            .get(digest)
            .cloned()
            .ok_or_else(|| "no such blob".to_string())?;
        assert_eq!(bytes.len() as u64, size);
        Ok(bytes)
    }

    fn repository(&mut self, id: &str) -> Option<Repository> {
        self.repositories.iter().find(|r| r.id == id).cloned()
    }

    fn find_repositories(&mut self, key: &str, value: &str) -> Vec<Repository> {
        self.repositories
            .iter()
            .filter(|r| {
                serde_json::from_str::<serde_json::Value>(&r.distributor_config)
                    .ok()
                    .and_then(|c| c.get(key).and_then(|v| v.as_str().map(str::to_string)))
                    .is_some_and(|v| v == value)
            })
            .cloned()
            .collect()
    }

    fn blob_size(&mut self, digest: &str) -> Option<u64> {
        self.stored.get(digest).copied()
    }

    fn session_length(&mut self, id: &str) -> Option<u64> {
        self.sessions.get(id).copied()
    }
}

impl ShardRead for FakeRegistry {
    fn read_shard<V: ShardValue>(
        &mut self,
        digest: &str,
    ) -> Result<Rc<BTreeMap<String, V>>, String> {
        self.shards.read_shard(digest)
    }
}

impl FakeRegistry {
    /// Serve `content` as the index `digest`, in shards.
    pub(crate) fn put_index(&mut self, digest: String, content: Content) {
        let index = content.write(&mut self.shards).unwrap();
        self.indexes.insert(digest, Rc::new(View::Sharded(index)));
    }
}

/// The content of the test registry's index d('x').
pub(crate) fn content() -> Content {
    let mut index = Content::default();
    for tag in ["latest", "1.0", "2.0", "beta"] {
        index.tags.insert(tag.to_string(), d('a'));
    }
    index.tags.insert("multi".into(), d('b'));
    index.manifests.insert(
        d('a'),
        ManifestEntry {
            media_type: DOCKER_MANIFEST.into(),
            size: 10,
        },
    );
    index.manifests.insert(
        d('b'),
        ManifestEntry {
            media_type: OCI_INDEX.into(),
            size: 20,
        },
    );
    index
        .blobs
        .extend([d('a'), d('b'), d('c'), d('1')].map(|b| (b, 1)));
    index
}

pub(crate) fn registry() -> FakeRegistry {
    let mut publications = BTreeMap::new();
    for (name, config) in [
        ("my/app", "{}"),
        (
            "other",
            r#"{"redirect_url": "https://cdn.example.com/blobs/"}"#,
        ),
        ("broken", "{}"),
        ("zeta/a/b", ""),
    ] {
        let index = if name == "broken" { d('y') } else { d('x') };
        publications.insert(
            name.to_string(),
            Publication {
                name: name.into(),
                repository_id: "r".into(),
                index,
                config: config.into(),
            },
        );
    }
    let mut manifests = BTreeMap::new();
    manifests.insert(d('a'), Rc::new(b"{manifest}".to_vec()));
    let mut r = FakeRegistry {
        publications,
        indexes: BTreeMap::new(),
        index_reads: 0,
        shards: Memory::default(),
        manifests,
        repositories: Vec::new(),
        stored: BTreeMap::new(),
        sessions: BTreeMap::new(),
    };
    r.put_index(d('x'), content());
    r
}

pub(crate) fn req(method: &str, path: &str, query: &str, accept: &[&str]) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: accept
            .iter()
            .map(|a| Header {
                name: "Accept".into(),
                value: a.to_string(),
            })
            .collect(),
        pulled: false,
    }
}

fn get(path: &str) -> Plan {
    resolve(&mut registry(), &req("GET", path, "", &[]))
}

#[track_caller]
pub(crate) fn body(plan: Plan) -> (serde_json::Value, Vec<Header>) {
    match plan {
        Plan::Body(b) => {
            assert_eq!(b.status, 200);
            assert_eq!(b.content_type, "application/json");
            (serde_json::from_slice(&b.body).unwrap(), b.headers)
        }
        other => panic!("expected a body, got {other:?}"),
    }
}

#[track_caller]
pub(crate) fn error(plan: Plan, status: u16, code: &str) -> String {
    match plan {
        Plan::Error(f) => {
            assert_eq!((f.status, f.code.as_str()), (status, code), "{}", f.message);
            f.message
        }
        other => panic!("expected {code}, got {other:?}"),
    }
}

fn link(headers: &[Header]) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name == "Link")
        .map(|h| h.value.clone())
}

#[test]
fn paths() {
    assert_eq!(parse_path("/v2/").unwrap(), Route::Base);
    assert_eq!(parse_path("/v2").unwrap(), Route::Base);
    assert_eq!(parse_path("/v2/_catalog").unwrap(), Route::Catalog);
    assert_eq!(
        parse_path("/v2/a/b/c/tags/list").unwrap(),
        Route::Tags {
            name: "a/b/c".into()
        }
    );
    assert_eq!(
        parse_path("/v2/my/manifests/app/manifests/latest").unwrap(),
        Route::Manifest {
            name: "my/manifests/app".into(),
            reference: "latest".into()
        }
    );
    assert_eq!(
        parse_path("/v2/x/manifests/y/blobs/sha256:ab").unwrap(),
        Route::Blob {
            name: "x/manifests/y".into(),
            digest: "sha256:ab".into()
        }
    );
    assert_eq!(
        parse_path("/v2/x/manifests/sha256%3Aab").unwrap(),
        Route::Manifest {
            name: "x".into(),
            reference: "sha256:ab".into()
        }
    );
    assert_eq!(
        parse_path("/v2/Bad/tags/list").unwrap_err().code,
        "NAME_INVALID"
    );
    assert_eq!(
        parse_path("/v2/a//b/manifests/x").unwrap_err().code,
        "NAME_INVALID"
    );
    assert_eq!(parse_path("/v2/a/other").unwrap_err().code, "NOT_FOUND");
    assert_eq!(parse_path("/v3/").unwrap_err().code, "NOT_FOUND");
    assert_eq!(
        parse_path("/v2/a/blobs/uploads/").unwrap(),
        Route::Uploads { name: "a".into() }
    );
    assert_eq!(
        parse_path("/v2/a/b/blobs/uploads/xyz").unwrap(),
        Route::Upload {
            name: "a/b".into(),
            id: "xyz".into()
        }
    );
    assert_eq!(
        parse_path("/v2/a/b/referrers/sha256:ab").unwrap(),
        Route::Referrers {
            name: "a/b".into(),
            digest: "sha256:ab".into()
        }
    );
    // The last marker splits, whichever it is.
    assert_eq!(
        parse_path("/v2/a/blobs/b/referrers/sha256:ab").unwrap(),
        Route::Referrers {
            name: "a/blobs/b".into(),
            digest: "sha256:ab".into()
        }
    );
    assert_eq!(
        parse_path("/v2/a/referrers/b/manifests/x").unwrap(),
        Route::Manifest {
            name: "a/referrers/b".into(),
            reference: "x".into()
        }
    );
}

#[test]
fn pages() {
    assert_eq!(parse_page("").unwrap(), Page::default());
    assert_eq!(
        parse_page("n=5&last=a%2Fb").unwrap(),
        Page {
            n: Some(5),
            last: Some("a/b".into())
        }
    );
    assert_eq!(
        parse_page("n=x").unwrap_err().code,
        "PAGINATION_NUMBER_INVALID"
    );
    assert_eq!(
        parse_page("n=-1").unwrap_err().code,
        "PAGINATION_NUMBER_INVALID"
    );
}

#[test]
fn accept_negotiation() {
    let h = |vals: &[&str]| {
        vals.iter()
            .map(|v| Header {
                name: "accept".into(),
                value: v.to_string(),
            })
            .collect::<Vec<_>>()
    };
    assert!(accepts(&[], OCI_INDEX));
    assert!(accepts(&h(&[""]), OCI_INDEX));
    assert!(accepts(&h(&["*/*"]), OCI_INDEX));
    assert!(accepts(&h(&["application/*;q=0.5"]), OCI_INDEX));
    assert!(accepts(
        &h(&[
            DOCKER_MANIFEST,
            &format!("{OCI_INDEX}; q=0.9, {OCI_MANIFEST}")
        ]),
        OCI_INDEX
    ));
    assert!(!accepts(&h(&[DOCKER_MANIFEST, DOCKER_LIST]), OCI_INDEX));
    assert!(accepts(
        &h(&["Application/VND.docker.distribution.manifest.v2+json"]),
        DOCKER_MANIFEST
    ));
}

#[test]
fn base_and_unsupported_writes() {
    let (v, _) = body(get("/v2/"));
    assert_eq!(v, serde_json::json!({}));
    let plan = resolve(&mut registry(), &req("POST", "/v2/", "", &[]));
    error(plan, 405, "UNSUPPORTED");
    let plan = resolve(
        &mut registry(),
        &req("DELETE", &format!("/v2/my/app/blobs/{}", d('a')), "", &[]),
    );
    error(plan, 405, "UNSUPPORTED");
}

#[test]
fn catalog_pages() {
    let (v, h) = body(get("/v2/_catalog"));
    assert_eq!(
        v["repositories"],
        serde_json::json!(["broken", "my/app", "other", "zeta/a/b"])
    );
    assert_eq!(link(&h), None);
    let (v, h) = body(resolve(
        &mut registry(),
        &req("GET", "/v2/_catalog", "n=2", &[]),
    ));
    assert_eq!(v["repositories"], serde_json::json!(["broken", "my/app"]));
    assert_eq!(
        link(&h).unwrap(),
        "</v2/_catalog?n=2&last=my/app>; rel=\"next\""
    );
    let (v, h) = body(resolve(
        &mut registry(),
        &req("GET", "/v2/_catalog", "n=2&last=my/app", &[]),
    ));
    assert_eq!(v["repositories"], serde_json::json!(["other", "zeta/a/b"]));
    assert_eq!(link(&h), None);
    let (v, _) = body(resolve(
        &mut registry(),
        &req("GET", "/v2/_catalog", "n=0", &[]),
    ));
    assert_eq!(v["repositories"], serde_json::json!([]));
}

#[test]
fn tag_lists() {
    let (v, h) = body(get("/v2/my/app/tags/list"));
    assert_eq!(
        v,
        serde_json::json!({"name": "my/app", "tags": ["1.0", "2.0", "beta", "latest", "multi"]})
    );
    assert_eq!(link(&h), None);
    let (v, h) = body(resolve(
        &mut registry(),
        &req("GET", "/v2/my/app/tags/list", "n=2&last=1.0", &[]),
    ));
    assert_eq!(v["tags"], serde_json::json!(["2.0", "beta"]));
    assert_eq!(
        link(&h).unwrap(),
        "</v2/my/app/tags/list?n=2&last=beta>; rel=\"next\""
    );
    error(get("/v2/nobody/tags/list"), 404, "NAME_UNKNOWN");
    error(get("/v2/NoBody/tags/list"), 400, "NAME_INVALID");
    error(get("/v2/broken/tags/list"), 500, "UNKNOWN");
}

#[test]
fn manifests() {
    let all = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX];
    for reference in ["latest", &d('a')] {
        let plan = resolve(
            &mut registry(),
            &req(
                "GET",
                &format!("/v2/my/app/manifests/{reference}"),
                "",
                &[&all.join(", ")],
            ),
        );
        // Small manifests are answered inline, with the headers clients use.
        let Plan::Body(b) = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(b.status, 200);
        assert_eq!(b.body, b"{manifest}");
        assert_eq!(b.content_type, DOCKER_MANIFEST);
        assert_eq!(b.headers[0].name, "Docker-Content-Digest");
        assert_eq!(b.headers[0].value, d('a'));
        assert_eq!(b.headers[1].name, "ETag");
        assert_eq!(b.headers[1].value, format!("\"{}\"", d('a')));
        let cached = b.headers.iter().any(|h| h.name == "Cache-Control");
        assert_eq!(cached, reference.contains(':'), "{reference}");

        // The ETag back in If-None-Match: 304 without a body.
        let mut conditional = req("GET", &format!("/v2/my/app/manifests/{reference}"), "", &[]);
        for value in [
            format!("\"{}\"", d('a')),
            format!("\"x\", W/\"{}\"", d('a')),
        ] {
            conditional.headers = vec![Header {
                name: "If-None-Match".into(),
                value,
            }];
            let Plan::Body(b) = resolve(&mut registry(), &conditional) else {
                panic!("no 304")
            };
            assert_eq!((b.status, b.body.len()), (304, 0));
        }
        conditional.headers[0].value = format!("\"{}\"", d('b'));
        assert!(matches!(
            resolve(&mut registry(), &conditional),
            Plan::Body(Body { status: 200, .. })
        ));
    }
    // A manifest the instance cannot read is left to the host to serve;
    // HEAD behaves the same (the host drops the body).
    let plan = resolve(
        &mut registry(),
        &req("HEAD", "/v2/zeta/a/b/manifests/multi", "", &[]),
    );
    assert!(
        matches!(plan, Plan::Blob(ref b) if b.media_type == OCI_INDEX && b.digest == d('b')),
        "{plan:?}"
    );

    let plan = resolve(
        &mut registry(),
        &req(
            "GET",
            "/v2/my/app/manifests/multi",
            "",
            &[DOCKER_MANIFEST, DOCKER_LIST],
        ),
    );
    let message = error(plan, 404, "MANIFEST_UNKNOWN");
    assert!(message.contains(OCI_INDEX), "{message}");

    error(get("/v2/my/app/manifests/nope"), 404, "MANIFEST_UNKNOWN");
    error(
        get(&format!("/v2/my/app/manifests/{}", d('c'))),
        404,
        "MANIFEST_UNKNOWN",
    );
    error(
        get("/v2/my/app/manifests/sha256:xyz"),
        400,
        "DIGEST_INVALID",
    );
    error(get("/v2/my/app/manifests/-bad"), 400, "TAG_INVALID");
    error(get("/v2/no/such/manifests/latest"), 404, "NAME_UNKNOWN");
}

#[test]
fn blobs_and_redirects() {
    let plan = get(&format!("/v2/my/app/blobs/{}", d('1')));
    let Plan::Blob(b) = plan else {
        panic!("{plan:?}")
    };
    assert_eq!(
        (b.digest.as_str(), b.media_type.as_str()),
        (d('1').as_str(), "application/octet-stream")
    );
    assert_eq!(b.headers[0].value, d('1'));

    error(
        get(&format!("/v2/my/app/blobs/{}", d('9'))),
        404,
        "BLOB_UNKNOWN",
    );
    error(get("/v2/my/app/blobs/sha256:short"), 400, "DIGEST_INVALID");
    error(
        get(&format!("/v2/my/app/blobs/sha512:{}", "0".repeat(128))),
        404,
        "BLOB_UNKNOWN",
    );

    let plan = get(&format!("/v2/other/blobs/{}", d('1')));
    assert!(
        matches!(plan, Plan::Redirect(ref url) if *url == format!("https://cdn.example.com/blobs/{}", d('1'))),
        "{plan:?}"
    );
    // Manifests are never redirected; HEAD on blobs is answered locally.
    assert!(matches!(
        get("/v2/other/manifests/latest"),
        Plan::Body(Body { status: 200, .. })
    ));
    let plan = resolve(
        &mut registry(),
        &req("HEAD", &format!("/v2/other/blobs/{}", d('1')), "", &[]),
    );
    assert!(matches!(plan, Plan::Blob(_)));
    // Unknown blobs are not redirected.
    error(
        get(&format!("/v2/other/blobs/{}", d('9'))),
        404,
        "BLOB_UNKNOWN",
    );
}

#[test]
fn redirect_config() {
    assert_eq!(redirect_url(""), None);
    assert_eq!(redirect_url(r#"{"redirect_url": ""}"#), None);
    assert_eq!(
        redirect_url(r#"{"redirect_url": "http://x"}"#).as_deref(),
        Some("http://x")
    );
    assert_eq!(redirect_url(r#"{"redirect_url": 5}"#), None);
}

/// The test registry and a repository, `team/new`, that was never published.
pub(crate) fn with_unpublished() -> FakeRegistry {
    let mut r = registry();
    r.repositories.push(Repository {
        id: "fresh".into(),
        content_type: "docker".into(),
        importer_config: "{}".into(),
        distributor_config: r#"{"repo_registry_id": "team/new"}"#.into(),
    });
    r
}

#[test]
fn an_unpublished_repository_reads_as_empty() {
    let mut r = with_unpublished();
    let mut get = |path: &str| resolve(&mut r, &req("GET", path, "", &[]));
    let (v, h) = body(get("/v2/team/new/tags/list"));
    assert_eq!(v, serde_json::json!({"name": "team/new", "tags": []}));
    assert_eq!(link(&h), None);
    error(
        get("/v2/team/new/manifests/latest"),
        404,
        "MANIFEST_UNKNOWN",
    );
    error(
        get(&format!("/v2/team/new/manifests/{}", d('a'))),
        404,
        "MANIFEST_UNKNOWN",
    );
    // A bad reference is still a bad reference.
    error(get("/v2/team/new/manifests/-x"), 400, "TAG_INVALID");
    error(
        get("/v2/team/new/manifests/sha256:x"),
        400,
        "DIGEST_INVALID",
    );
    error(
        get(&format!("/v2/team/new/blobs/{}", d('1'))),
        404,
        "BLOB_UNKNOWN",
    );
    // Its id is no name of it: it has a repo_registry_id.
    error(get("/v2/fresh/tags/list"), 404, "NAME_UNKNOWN");
    error(get("/v2/nobody/manifests/latest"), 404, "NAME_UNKNOWN");
    error(
        get(&format!("/v2/nobody/blobs/{}", d('1'))),
        404,
        "NAME_UNKNOWN",
    );
}
