use super::*;
use crate::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX};
use crate::model::{BLOB, TagMeta};
use serde_json::json;
use std::cell::RefCell;
use std::rc::Rc;
use wharf_sdk::testing::{FakeHost, sha256};

#[test]
fn settings_name_what_is_missing() {
    let err = settings("").unwrap_err();
    assert_eq!(err.code, "invalid-input");
    assert!(err.message.contains("feed"), "{}", err.message);
    let err = settings(r#"{"feed": "http://h:1"}"#).unwrap_err();
    assert!(err.message.contains("upstream_name"), "{}", err.message);
    assert!(settings(r#"{"feed": "ftp://h", "upstream_name": "a"}"#).is_err());
    assert!(settings(r#"{"feed": "http://h", "upstream_name": "A b"}"#).is_err());
    assert!(
        settings("{")
            .unwrap_err()
            .message
            .contains("not valid JSON")
    );
    let s = settings(r#"{"feed": "http://h:1/", "upstream_name": "library/busybox", "include_tags": ["1.*"], "username": "u"}"#).unwrap();
    assert_eq!(s.feed, "http://h:1");
    assert_eq!(s.filter.include, vec!["1.*"]);
    assert_eq!(s.credentials, Some(("u".to_string(), String::new())));
}

#[test]
fn links() {
    assert_eq!(
        next_link(r#"</v2/x/tags/list?last=b&n=2>; rel="next""#).as_deref(),
        Some("/v2/x/tags/list?last=b&n=2")
    );
    assert_eq!(
        next_link(r#"<http://a/1>; rel="prev", <http://a/3>; rel=next"#).as_deref(),
        Some("http://a/3")
    );
    assert_eq!(next_link(r#"<http://a/1>; rel="prev""#), None);
    assert_eq!(
        absolute_url("http://h:5000", "/v2/x?n=1"),
        "http://h:5000/v2/x?n=1"
    );
    assert_eq!(absolute_url("https://h/prefix", "/v2/x"), "https://h/v2/x");
    assert_eq!(
        absolute_url("http://h", "https://other/v2"),
        "https://other/v2"
    );
    assert_eq!(absolute_url("http://h", "v2/x"), "http://h/v2/x");
}

/// An upstream registry in memory, with optional Bearer auth and paginated tags.
#[derive(Default)]
struct Upstream {
    name: String,
    tags: BTreeMap<String, String>,
    /// Digest → (media type, bytes) for manifests and blobs.
    content: BTreeMap<String, (String, Vec<u8>)>,
    token: Option<String>,
    page: usize,
    /// Serve this digest with wrong bytes.
    corrupt: Option<String>,
    /// Serve this digest with more bytes than its descriptor gives.
    padded: Option<String>,
}

impl Upstream {
    fn new(name: &str) -> Self {
        Upstream {
            name: name.into(),
            page: 2,
            ..Default::default()
        }
    }

    fn put(&mut self, media_type: &str, bytes: Vec<u8>) -> (String, u64) {
        let digest = sha256(&bytes);
        let size = bytes.len() as u64;
        self.content
            .insert(digest.clone(), (media_type.into(), bytes));
        (digest, size)
    }

    /// A Docker schema2 image with `layers` distinct layers; returns its digest.
    fn image(&mut self, seed: &str, layers: usize) -> (String, u64) {
        let (cd, cs) = self.put(
            crate::manifest::DOCKER_CONFIG,
            format!("config {seed}").into_bytes(),
        );
        let layers: Vec<_> = (0..layers)
            .map(|i| {
                let (d, s) = self.put("application/vnd.docker.image.rootfs.diff.tar.gzip", format!("layer {seed} {i}").into_bytes());
                json!({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d, "size": s})
            })
            .collect();
        let m = json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": crate::manifest::DOCKER_CONFIG, "digest": cd, "size": cs}, "layers": layers});
        self.put(DOCKER_MANIFEST, serde_json::to_vec_pretty(&m).unwrap())
    }

    fn list(&mut self, children: &[(String, u64)]) -> String {
        let manifests: Vec<_> = children
            .iter()
            .enumerate()
            .map(|(i, (d, s))| json!({"mediaType": DOCKER_MANIFEST, "digest": d, "size": s, "platform": {"architecture": format!("arch{i}"), "os": "linux"}}))
            .collect();
        self.put(
            DOCKER_LIST,
            json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": manifests})
                .to_string()
                .into_bytes(),
        )
        .0
    }

    fn tag(&mut self, tag: &str, digest: &str) {
        self.tags.insert(tag.into(), digest.into());
    }

    fn serve(&self, url: &str, headers: &[Header]) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let auth = headers
            .iter()
            .find(|h| h.name == "Authorization")
            .map(|h| h.value.as_str());
        if url.starts_with("http://up/token?") {
            assert!(
                url.contains(&format!(
                    "scope=repository%3A{}%3Apull",
                    self.name.replace('/', "%2F")
                )),
                "{url}"
            );
            if auth != Some(&wharf_sdk::challenge::basic("u", "p")) {
                return (401, vec![], vec![]);
            }
            return (
                200,
                vec![],
                json!({"token": self.token}).to_string().into_bytes(),
            );
        }
        if let Some(token) = &self.token
            && auth != Some(&format!("Bearer {token}"))
        {
            let challenge = format!(
                r#"Bearer realm="http://up/token",service="up",scope="repository:{}:pull""#,
                self.name
            );
            return (
                401,
                vec![("WWW-Authenticate".into(), challenge)],
                b"{}".to_vec(),
            );
        }
        let base = format!("http://up/v2/{}", self.name);
        let Some(rest) = url.strip_prefix(&base) else {
            return (404, vec![], vec![]);
        };
        if let Some(query) = rest.strip_prefix("/tags/list") {
            let last = query
                .split("last=")
                .nth(1)
                .map(|l| l.split('&').next().unwrap().to_string());
            let tags: Vec<&String> = self
                .tags
                .keys()
                .filter(|t| last.as_ref().is_none_or(|l| *t > l))
                .collect();
            let page: Vec<&String> = tags.iter().take(self.page).copied().collect();
            let mut headers = vec![];
            if tags.len() > self.page {
                headers.push((
                    "Link".into(),
                    format!(
                        "</v2/{}/tags/list?n={}&last={}>; rel=\"next\"",
                        self.name,
                        self.page,
                        page.last().unwrap()
                    ),
                ));
            }
            return (
                200,
                headers,
                json!({"name": self.name, "tags": page})
                    .to_string()
                    .into_bytes(),
            );
        }
        if let Some(reference) = rest.strip_prefix("/manifests/") {
            let digest = self
                .tags
                .get(reference)
                .cloned()
                .unwrap_or(reference.to_string());
            return match self.content.get(&digest) {
                Some((mt, bytes)) => (
                    200,
                    vec![
                        ("Content-Type".into(), mt.clone()),
                        ("Docker-Content-Digest".into(), digest),
                    ],
                    bytes.clone(),
                ),
                None => (404, vec![], vec![]),
            };
        }
        if let Some(digest) = rest.strip_prefix("/blobs/") {
            if self.corrupt.as_deref() == Some(digest) {
                return (200, vec![], b"corrupted".to_vec());
            }
            if self.padded.as_deref() == Some(digest) {
                let mut bytes = self.content[digest].1.clone();
                bytes.extend_from_slice(&[0; 4096]);
                return (200, vec![], bytes);
            }
            return match self.content.get(digest) {
                Some((_, bytes)) => (200, vec![], bytes.clone()),
                None => (404, vec![], vec![]),
            };
        }
        (404, vec![], vec![])
    }
}

fn host_for(upstream: &Rc<RefCell<Upstream>>) -> FakeHost {
    let upstream = upstream.clone();
    FakeHost::with_http(move |url, headers| upstream.borrow().serve(url, headers))
}

fn config(extra: &str) -> String {
    format!(r#"{{"feed": "http://up", "upstream_name": "library/busybox"{extra}}}"#)
}

fn tags_of(host: &FakeHost) -> BTreeMap<String, String> {
    host.repo_keys(TAG)
        .iter()
        .map(|k| {
            let t: TagMeta = model::tag_meta(&host.repo_unit(TAG, k).unwrap()).unwrap();
            (t.name, t.manifest)
        })
        .collect()
}

#[test]
fn mirrors_tags_and_skips_what_it_has() {
    let up = Rc::new(RefCell::new(Upstream::new("library/busybox")));
    let (a, _) = up.borrow_mut().image("a", 2);
    let (b, _) = up.borrow_mut().image("b", 1);
    for (tag, d) in [
        ("1.0", &a),
        ("1.1", &b),
        ("latest", &b),
        ("old", &a),
        ("rc-1", &b),
    ] {
        up.borrow_mut().tag(tag, d);
    }
    let mut host = host_for(&up);
    let summary = run(&mut host, &config(r#", "exclude_tags": ["rc-*"]"#)).unwrap();
    let tags = tags_of(&host);
    assert_eq!(
        tags.keys().collect::<Vec<_>>(),
        vec!["1.0", "1.1", "latest", "old"]
    );
    assert_eq!(tags["1.0"], a);
    assert_eq!(tags["latest"], b);
    // 2 configs + 3 layers, each downloaded once.
    assert_eq!(host.downloads.len(), 5);
    assert_eq!(host.repo_keys(BLOB).len(), 5);
    assert_eq!(host.repo_keys(MANIFEST), {
        let mut v = vec![a.clone(), b.clone()];
        v.sort();
        v
    });
    // Tag list pages were followed (page size 2, 5 tags).
    assert_eq!(
        host.gets
            .iter()
            .filter(|u| u.contains("/tags/list"))
            .count(),
        3
    );
    assert!(summary.units_added >= 5 + 2 + 4);
    assert!(summary.message.contains("4 updated"), "{}", summary.message);

    // Unchanged upstream: one manifest GET per tag, no downloads, no changes.
    host.gets.clear();
    host.downloads.clear();
    let summary = run(&mut host, &config(r#", "exclude_tags": ["rc-*"]"#)).unwrap();
    assert!(host.downloads.is_empty());
    assert_eq!(
        host.gets
            .iter()
            .filter(|u| u.contains("/manifests/"))
            .count(),
        4
    );
    assert_eq!((summary.units_added, summary.units_removed), (0, 0));
    assert!(
        summary.message.contains("4 unchanged"),
        "{}",
        summary.message
    );

    // Upstream drops `old` and moves `latest`: mirror semantics.
    let (c, _) = up.borrow_mut().image("c", 1);
    up.borrow_mut().tags.remove("old");
    up.borrow_mut().tag("latest", &c);
    host.downloads.clear();
    let summary = run(&mut host, &config(r#", "exclude_tags": ["rc-*"]"#)).unwrap();
    let tags = tags_of(&host);
    assert_eq!(
        tags.keys().collect::<Vec<_>>(),
        vec!["1.0", "1.1", "latest"]
    );
    assert_eq!(tags["latest"], c);
    assert_eq!(host.downloads.len(), 2);
    assert_eq!(summary.units_removed, 2, "old removed, latest moved");

    // A narrower filter removes tags that no longer match.
    run(&mut host, &config(r#", "include_tags": ["1.?"]"#)).unwrap();
    assert_eq!(
        tags_of(&host).keys().collect::<Vec<_>>(),
        vec!["1.0", "1.1"]
    );
}

#[test]
fn an_additive_sync_adds_and_moves_tags_but_never_removes_one() {
    let up = Rc::new(RefCell::new(Upstream::new("library/busybox")));
    let (a, _) = up.borrow_mut().image("a", 1);
    let (b, _) = up.borrow_mut().image("b", 1);
    up.borrow_mut().tag("latest", &a);
    up.borrow_mut().tag("old", &b);
    let mut host = host_for(&up);
    let additive = config(r#", "mirror": false"#);
    run(&mut host, &additive).unwrap();

    // Upstream drops `old`, moves `latest` and adds `new`.
    let (c, _) = up.borrow_mut().image("c", 1);
    up.borrow_mut().tags.remove("old");
    up.borrow_mut().tag("latest", &c);
    up.borrow_mut().tag("new", &c);
    let summary = run(&mut host, &additive).unwrap();
    let tags = tags_of(&host);
    assert_eq!(
        tags.keys().collect::<Vec<_>>(),
        vec!["latest", "new", "old"]
    );
    assert_eq!(
        (tags["latest"].as_str(), tags["old"].as_str()),
        (c.as_str(), b.as_str())
    );
    assert!(
        summary.message.contains("(additive)") && summary.message.contains("0 removed"),
        "{}",
        summary.message
    );

    // The same repository as a mirror: `old` goes.
    let summary = run(&mut host, &config("")).unwrap();
    assert_eq!(
        tags_of(&host).keys().collect::<Vec<_>>(),
        vec!["latest", "new"]
    );
    assert!(
        summary.message.contains("(mirror)") && summary.message.contains("1 removed"),
        "{}",
        summary.message
    );
}

#[test]
fn manifest_lists_fetch_children_by_digest() {
    let up = Rc::new(RefCell::new(Upstream::new("library/busybox")));
    let amd = up.borrow_mut().image("amd", 1);
    let arm = up.borrow_mut().image("arm", 1);
    let list = up.borrow_mut().list(&[amd.clone(), arm.clone()]);
    up.borrow_mut().tag("multi", &list);
    let mut host = host_for(&up);
    run(&mut host, &config("")).unwrap();
    assert_eq!(tags_of(&host)["multi"], list);
    let meta: ManifestMeta =
        serde_json::from_str(&host.repo_unit(MANIFEST, &list).unwrap().metadata).unwrap();
    assert_eq!(meta.media_type, DOCKER_LIST);
    assert_eq!(meta.manifests, vec![amd.0.clone(), arm.0.clone()]);
    let child: ManifestMeta =
        serde_json::from_str(&host.repo_unit(MANIFEST, &arm.0).unwrap().metadata).unwrap();
    assert_eq!(child.platform.unwrap()["architecture"], "arch1");
    assert!(
        host.gets
            .iter()
            .any(|u| u.ends_with(&format!("/manifests/{}", amd.0)))
    );
    assert_eq!(host.downloads.len(), 4);
    assert_eq!(
        host.blob(&list).unwrap(),
        up.borrow().content[&list].1,
        "stored byte for byte"
    );
    assert_ne!(meta.media_type, OCI_INDEX);
}

#[test]
fn bearer_auth_with_credentials() {
    let up = Rc::new(RefCell::new(Upstream::new("private/app")));
    up.borrow_mut().token = Some("t0k3n".into());
    let m = up.borrow_mut().image("p", 1);
    up.borrow_mut().tag("v1", &m.0);
    let mut host = host_for(&up);
    let settings = r#"{"feed": "http://up", "upstream_name": "private/app", "username": "u", "password": "p"}"#;
    run(&mut host, settings).unwrap();
    assert_eq!(tags_of(&host)["v1"], m.0);
    assert_eq!(host.downloads.len(), 2, "downloads carry the token");

    let mut host = host_for(&up);
    let err = run(
        &mut host,
        r#"{"feed": "http://up", "upstream_name": "private/app"}"#,
    )
    .unwrap_err();
    assert_eq!(err.code, "denied");
}

#[test]
fn corrupt_blob_fails_its_tag_only() {
    let up = Rc::new(RefCell::new(Upstream::new("library/busybox")));
    let good = up.borrow_mut().image("good", 1);
    let bad = up.borrow_mut().image("bad", 1);
    up.borrow_mut().tag("good", &good.0);
    up.borrow_mut().tag("bad", &bad.0);
    let bad_config = sha256(b"config bad");
    up.borrow_mut().corrupt = Some(bad_config.clone());
    let mut host = host_for(&up);
    let err = run(&mut host, &config("")).unwrap_err();
    assert!(
        err.message.contains("tag bad") && err.message.contains(&bad_config),
        "{}",
        err.message
    );
    let tags = tags_of(&host);
    assert_eq!(tags.keys().collect::<Vec<_>>(), vec!["good"]);
    assert!(
        host.repo_unit(MANIFEST, &bad.0).is_none(),
        "no incomplete manifest units"
    );
}

#[test]
fn downloads_are_bounded_by_the_descriptors_size() {
    let up = Rc::new(RefCell::new(Upstream::new("library/busybox")));
    let (d, _) = up.borrow_mut().image("x", 1);
    up.borrow_mut().tag("t", &d);
    // The layer: the one blob of the manifest that is neither it nor its config.
    let layer = sha256(b"layer x 0");
    up.borrow_mut().padded = Some(layer.clone());
    let mut host = host_for(&up);
    let err = run(&mut host, &config("")).unwrap_err();
    assert!(
        err.message.contains(&layer) && err.message.contains("the descriptor gives 9 bytes"),
        "{}",
        err.message
    );
    assert!(tags_of(&host).is_empty());
}

#[test]
fn wrong_manifest_digest_is_refused() {
    let up = Rc::new(RefCell::new(Upstream::new("library/busybox")));
    let (d, _) = up.borrow_mut().image("x", 1);
    up.borrow_mut().tag("t", &d);
    let content = up.borrow().content[&d].clone();
    // The upstream serves other bytes under the tag than its digest header says.
    let lie = sha256(b"lie");
    up.borrow_mut().content.insert(lie.clone(), content);
    up.borrow_mut().tag("t", &lie);
    let mut host = host_for(&up);
    let err = run(&mut host, &config("")).unwrap_err();
    assert_eq!(err.code, "upstream-error");
    assert!(
        err.message.contains("tag t") && err.message.contains("expected"),
        "{}",
        err.message
    );
    assert!(tags_of(&host).is_empty());
}

#[test]
fn unknown_upstream_repository() {
    let up = Rc::new(RefCell::new(Upstream::new("library/other")));
    let mut host = host_for(&up);
    let err = run(&mut host, &config("")).unwrap_err();
    assert_eq!(err.code, "not-found");
    assert!(err.message.contains("library/busybox"));
}
