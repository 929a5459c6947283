//! Content that stays on the feed until a client asks (issue 19): the
//! `on_demand` and `streamed` download policies, and pull-through
//! repositories, against a CNCF distribution registry and a feed that
//! counts (and corrupts) its layer downloads; pulled by docker, podman and
//! skopeo.

use crate::registry_support::*;
use crate::support::*;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::time::Duration;

const CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

/// A feed serving one image whose layer is `bytes`, honestly.
fn honest_feed(bytes: &[u8]) -> FakeUpstream {
    FakeUpstream::start(
        CONFIG.to_vec(),
        (sha256_digest(bytes), bytes.len() as u64),
        LayerReply::Bytes(bytes.to_vec()),
    )
}

/// Temp files of blobs being written.
fn temp_blobs(s: &Server) -> usize {
    std::fs::read_dir(s.data_dir().join("blobs").join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A repository `id` (named `id/app`) syncing `feed`'s `id/app` with
/// `policy`, synced and published.
fn synced(s: &Server, id: &str, feed: &str, policy: &str) {
    docker_repo(
        s,
        id,
        &format!("{id}/app"),
        json!({"feed": feed, "upstream_name": format!("{id}/app"), "download_policy": policy}),
    );
    let t = sync(s, id);
    assert_eq!(t["state"], "finished", "{t}");
    let message = t["result"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("left on the feed"), "{message}");
    publish(s, id);
}

/// GET a blob of `id/app`: its status and whole body, or the transport
/// error that ended it (a connection cut before or during the body).
fn get_blob(s: &Server, id: &str, digest: &str) -> Result<(u16, Vec<u8>), String> {
    let r = anonymous_client()
        .get(s.url(&format!("/v2/{id}/app/blobs/{digest}")))
        .send()
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let body = r.bytes().map_err(|e| e.to_string())?;
    Ok((status, body.to_vec()))
}

#[test]
fn on_demand_sync_stores_no_layer_until_the_first_pull_and_ten_pulls_fetch_it_once() {
    let bytes: Vec<u8> = (0..(24u32 << 20)).map(|i| (i % 251) as u8).collect();
    let layer = sha256_digest(&bytes);
    let feed = honest_feed(&bytes);
    let s = Server::start();
    synced(&s, "lazy", &feed.url, "on_demand");
    // The sync brought the manifest and named the layer; no byte of it.
    assert_eq!(feed.layer_downloads(), 0);
    assert!(!stored(&s, &layer));
    assert!(content(&s, "lazy").blobs.contains(&layer));
    // HEAD answers its size without fetching it.
    let r = anonymous_client()
        .head(s.url(&format!("/v2/lazy/app/blobs/{layer}")))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "content-length"), bytes.len().to_string());
    assert_eq!(feed.layer_downloads(), 0);

    // Ten clients at once: one upstream fetch, ten whole, verified copies.
    let pulls: Vec<_> = (0..10)
        .map(|_| {
            let url = s.url(&format!("/v2/lazy/app/blobs/{layer}"));
            std::thread::spawn(move || {
                let r = Client::new().get(url).send().unwrap();
                (r.status().as_u16(), r.bytes().unwrap().to_vec())
            })
        })
        .collect();
    for p in pulls {
        let (status, body) = p.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(body.len(), bytes.len());
        assert_eq!(sha256_digest(&body), layer);
    }
    assert_eq!(
        feed.layer_downloads(),
        1,
        "one upstream fetch for ten pulls"
    );
    assert!(stored(&s, &layer), "the layer was not kept");
    // From the store from now on, Range included.
    let r = anonymous_client()
        .get(s.url(&format!("/v2/lazy/app/blobs/{layer}")))
        .header("Range", "bytes=10-19")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().unwrap().to_vec(), bytes[10..20].to_vec());
    assert_eq!(feed.layer_downloads(), 1);
}

#[test]
fn a_corrupt_upstream_layer_is_cut_off_and_never_stored() {
    let bytes = vec![b'g'; 4 << 20];
    let layer = sha256_digest(&bytes);
    // The right length, the wrong bytes.
    let mut wrong = bytes.clone();
    wrong[1 << 20] = b'X';
    let feed = FakeUpstream::start(
        CONFIG.to_vec(),
        (layer.clone(), bytes.len() as u64),
        LayerReply::Bytes(wrong),
    );
    let s = Server::start();
    synced(&s, "bad", &feed.url, "on_demand");
    for attempt in 1..=2 {
        // The transfer is cut: before its headers, or short of its length.
        if let Ok((status, body)) = get_blob(&s, "bad", &layer) {
            panic!(
                "a corrupt layer was answered {status} with {} bytes",
                body.len()
            );
        }
        // Each request asks the feed again: nothing bad was kept.
        assert_eq!(feed.layer_downloads(), attempt);
        assert!(!stored(&s, &layer));
    }
    assert!(
        s.log().contains("served wrong bytes"),
        "the log does not say why"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(temp_blobs(&s), 0, "a temp file was left");

    // An honest feed of the same shape serves.
    let honest = honest_feed(&bytes);
    synced(&s, "good", &honest.url, "on_demand");
    assert_eq!(get_blob(&s, "good", &layer).unwrap(), (200, bytes));
    assert!(stored(&s, &layer));
}

#[test]
fn streamed_layers_are_fetched_for_every_pull_and_never_stored() {
    let bytes = vec![b's'; 3 << 20];
    let layer = sha256_digest(&bytes);
    let feed = honest_feed(&bytes);
    let s = Server::start();
    synced(&s, "stream", &feed.url, "streamed");
    for n in 1..=2 {
        assert_eq!(
            get_blob(&s, "stream", &layer).unwrap(),
            (200, bytes.clone())
        );
        assert_eq!(feed.layer_downloads(), n);
        assert!(!stored(&s, &layer));
    }
}

#[test]
fn an_unknown_download_policy_is_refused_with_the_choices() {
    let s = Server::start();
    let (status, v) = s.post_json(
        "/api/v1/repositories",
        &json!({"id": "x", "content_type": "docker",
            "importer_config": {"download_policy": "lazy"}}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        message(&v).contains("immediate, on_demand or streamed"),
        "{v}"
    );
}

/// An upstream with `library/busybox:latest` and `:1`, and `other/app:1`.
fn hub_upstream() -> Distribution {
    let d = Distribution::start();
    d.push("busybox.tar", "docker-archive", "library/busybox:latest");
    d.push("busybox.tar", "docker-archive", "library/busybox:1");
    d.push("two-layer.tar", "docker-archive", "other/app:1");
    d
}

/// A pull-through repository `hub` of `feed` (only `library/*`).
fn hub(s: &Server, feed: &str, distributor: Value) {
    let mut d = json!({"repo_registry_id": "hub", "pull_through": true});
    for (k, v) in distributor.as_object().unwrap() {
        d[k] = v.clone();
    }
    s.create_repo(json!({
        "id": "hub",
        "content_type": "docker",
        "importer_config": {"feed": feed, "download_policy": "on_demand",
            "include_names": ["library/*"]},
        "distributor_config": d,
    }));
}

fn manifest_status(s: &Server, path: &str) -> (u16, String, String) {
    let r = request(s, "GET", path, &[("Accept", DOCKER_ACCEPT)]);
    let status = r.status().as_u16();
    let digest = header(&r, "docker-content-digest");
    (status, digest, r.text().unwrap_or_default())
}

#[test]
fn docker_and_podman_pull_through_and_pull_again_with_the_upstream_down() {
    let d = hub_upstream();
    let s = Server::start();
    hub(&s, &d.url(), json!({}));
    let (_, upstream_digest) = d.manifest("library/busybox", "latest");

    // Nothing pulled yet: the repository holds nothing.
    assert!(content(&s, "hub").blobs.is_empty());
    let image = format!("{}/hub/library/busybox:latest", s.addr);
    let out = docker_pull_run_cat(&image, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");
    let (status, digest, _) = manifest_status(&s, "/v2/hub/library/busybox/manifests/latest");
    assert_eq!((status, digest.as_str()), (200, upstream_digest.as_str()));
    // The pull made a version of the repository, named for what made it.
    let (_, versions) = s.get_json("/api/v1/repositories/hub/versions");
    assert!(versions.to_string().contains("\"pull\""), "{versions}");
    let tags = request(&s, "GET", "/v2/hub/library/busybox/tags/list", &[]);
    assert_eq!(tags.json::<Value>().unwrap()["tags"], json!(["latest"]));

    // podman, by another tag of the same name.
    let podman_image = format!("{}/hub/library/busybox:1", s.addr);
    must(podman().args(["pull", "--tls-verify=false", &podman_image]));
    let _ = run(podman().args(["rmi", "-f", &podman_image]));

    // Names the repository may not pull: refused, nothing fetched.
    let (status, _, body) = manifest_status(&s, "/v2/hub/other/app/manifests/1");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("include_names"), "{body}");
    // A tag the upstream lacks.
    let (status, _, body) = manifest_status(&s, "/v2/hub/library/busybox/manifests/nope");
    assert_eq!(status, 404, "{body}");

    // The upstream goes away: what was pulled still pulls (tags go stale,
    // and are served as they were).
    drop(d);
    let out = docker_pull_run_cat(&image, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");
    let (status, digest, _) = manifest_status(&s, "/v2/hub/library/busybox/manifests/latest");
    assert_eq!((status, digest.as_str()), (200, upstream_digest.as_str()));
    // What was never pulled says the upstream is not there.
    let (status, _, body) = manifest_status(&s, "/v2/hub/library/alpine/manifests/3");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("UNAVAILABLE"), "{body}");
}

#[test]
fn a_pulled_tag_is_asked_for_again_only_after_its_freshness() {
    let d = hub_upstream();
    let s = Server::start();
    hub(&s, &d.url(), json!({"tag_freshness": 2}));
    let path = "/v2/hub/library/busybox/manifests/latest";
    let (status, first, _) = manifest_status(&s, path);
    assert_eq!(status, 200);
    // The tag moves upstream.
    d.push("two-layer.tar", "docker-archive", "library/busybox:latest");
    let (_, moved) = d.manifest("library/busybox", "latest");
    assert_ne!(first, moved);
    let (_, still, _) = manifest_status(&s, path);
    assert_eq!(
        still, first,
        "asked the upstream again within the freshness"
    );
    std::thread::sleep(Duration::from_millis(2500));
    let (status, now, _) = manifest_status(&s, path);
    assert_eq!((status, now.as_str()), (200, moved.as_str()));
    // By digest, the old manifest is still served (it is in the cache).
    let (status, _, _) = manifest_status(&s, &format!("/v2/hub/library/busybox/manifests/{first}"));
    assert_eq!(status, 200);
}

#[test]
fn a_protected_pull_through_repository_needs_a_token_and_takes_no_pushes() {
    let d = hub_upstream();
    let s = Server::start();
    hub(&s, &d.url(), json!({"protected": true}));
    let path = "/v2/hub/library/busybox/manifests/latest";
    // Anonymous: a challenge naming the scope, and nothing pulled.
    let r = request(&s, "GET", path, &[("Accept", DOCKER_ACCEPT)]);
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        header(&r, "www-authenticate").contains("repository:hub/library/busybox:pull"),
        "{}",
        header(&r, "www-authenticate")
    );
    assert!(
        content(&s, "hub").blobs.is_empty(),
        "an anonymous request pulled"
    );
    // A token for the name pulls.
    let token = anonymous_client()
        .get(
            s.url("/api/v1/registry/token?service=wharf&scope=repository:hub/library/busybox:pull"),
        )
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = anonymous_client()
        .get(s.url(path))
        .header("Accept", DOCKER_ACCEPT)
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // An anonymous token grants nothing here.
    let anon = anonymous_client()
        .get(
            s.url("/api/v1/registry/token?service=wharf&scope=repository:hub/library/busybox:pull"),
        )
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    let r = anonymous_client()
        .get(s.url(path))
        .header("Accept", DOCKER_ACCEPT)
        .bearer_auth(anon["token"].as_str().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // docker, logged in, pulls through it.
    let tmp = scratch();
    let config = tmp.path().join("docker");
    must(docker_with_config(&config).args(["login", &s.addr, "-u", "admin", "-p", ADMIN_PASSWORD]));
    let image = format!("{}/hub/library/busybox:1", s.addr);
    must(docker_with_config(&config).args(["pull", &image]));
    let _ = run(docker().args(["rmi", "-f", &image]));
}

#[test]
fn a_pull_through_cache_of_an_upstream_behind_a_private_ca_pulls_once_trusted() {
    let tmp = scratch();
    let pki = crate::serving::Pki::new(tmp.path(), "upstream");
    let (cert, key) = pki.leaf("registry");
    let d = Distribution::start_with_tls(&cert, &key);
    d.push("busybox.tar", "docker-archive", "library/busybox:latest");
    assert!(d.url().starts_with("https://"), "{}", d.url());
    let path = "/v2/hub/library/busybox/manifests/latest";

    // Not trusted: nothing pulled, and the answer says why.
    let s = Server::start();
    hub(&s, &d.url(), json!({}));
    let (status, _, body) = manifest_status(&s, path);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("certificate"), "{body}");
    assert!(content(&s, "hub").blobs.is_empty());

    // Trusted through --outbound-ca-cert: the pull, and the layers fetched
    // on demand, go over TLS to the upstream.
    let s = Server::start_with_plugin_dir(
        &env_path("WHARF_PLUGIN_DIR"),
        &["--outbound-ca-cert", pki.ca().to_str().unwrap()],
    );
    hub(&s, &d.url(), json!({}));
    let image = format!("{}/hub/library/busybox:latest", s.addr);
    let out = docker_pull_run_cat(&image, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");
    let (status, _, _) = manifest_status(&s, path);
    assert_eq!(status, 200);
}

/// A pull-through cache of an upstream behind token auth (its own token
/// server): without the account, a pull is refused, the token server having
/// said no, and nothing is kept; with it (the importer's `username` and
/// `password`: a change of settings forgets the failed pull), docker pulls
/// through, the layers fetched on demand with a pull token of the
/// account's.
#[test]
fn a_pull_through_cache_of_an_upstream_behind_token_auth_pulls_with_its_account() {
    let (d, tokens) = Distribution::start_with_token_auth("cache", "pt-s3cret-pw");
    d.push("busybox.tar", "docker-archive", "library/busybox:latest");
    let (raw, upstream_digest) = d.manifest("library/busybox", "latest");
    let layer = serde_json::from_slice::<Value>(&raw).unwrap()["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let s = Server::start();
    // A pull's outcome, a failure too, stands for the tag's freshness (300 s
    // here), unless the repository's settings change.
    hub(&s, &d.url(), json!({}));
    let path = "/v2/hub/library/busybox/manifests/latest";

    let refused = tokens.refused();
    let (status, _, body) = manifest_status(&s, path);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(&tokens.realm()) && body.contains("answered 401"),
        "{body}"
    );
    assert!(
        tokens.refused() > refused,
        "the pull never asked for a token"
    );
    assert!(content(&s, "hub").blobs.is_empty());

    let r = s
        .http
        .patch(s.url("/api/v1/repositories/hub"))
        .json(&json!({"importer_config": {"username": "cache", "password": "pt-s3cret-pw"}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let issued = tokens.issued().len();
    let image = format!("{}/hub/library/busybox:latest", s.addr);
    let out = docker_pull_run_cat(&image, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");
    let (status, digest, _) = manifest_status(&s, path);
    assert_eq!((status, digest.as_str()), (200, upstream_digest.as_str()));
    // The engine may hold that layer already (another test loaded the same
    // image): ask for it as a client that lacks it would.
    let r = anonymous_client()
        .get(s.url(&format!("/v2/hub/library/busybox/blobs/{layer}")))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(sha256_digest(&r.bytes().unwrap()), layer);
    assert!(stored(&s, &layer), "the layer was not fetched and kept");
    // The pull's tokens, and the layer's: the account's, for pulls only.
    let used = tokens.issued().split_off(issued);
    assert!(
        used.len() >= 2,
        "a token for the pull and the layers: {used:?}"
    );
    // Neither the password nor a token is shown back or logged.
    let (_, repo) = s.get_json("/api/v1/repositories/hub");
    assert_eq!(repo["importer_config"]["password"], "********", "{repo}");
    let log = s.log();
    assert!(!log.contains("pt-s3cret-pw"), "the password is in the log");
    for token in &used {
        assert_eq!(token.subject, "cache");
        assert_eq!(token.granted, ["repository:library/busybox:pull"]);
        assert!(!log.contains(&token.token), "a token is in the log");
    }
}
