//! Sync from a real upstream: a CNCF distribution registry on loopback,
//! filled with skopeo.

use crate::registry_support::*;
use crate::support::*;
use serde_json::{Value, json};

/// An upstream with `up/app` tags v1 and latest (busybox), v2 and dev
/// (two-layer), and old-1 (busybox).
fn upstream() -> Distribution {
    let d = Distribution::start();
    for tag in ["v1", "latest", "old-1"] {
        d.push("busybox.tar", "docker-archive", &format!("up/app:{tag}"));
    }
    for tag in ["v2", "dev"] {
        d.push("two-layer.tar", "docker-archive", &format!("up/app:{tag}"));
    }
    d
}

fn mirror_repo(s: &Server, d: &Distribution, extra: Value) {
    let mut importer = json!({"feed": d.url(), "upstream_name": "up/app"});
    for (k, v) in extra.as_object().unwrap() {
        importer[k] = v.clone();
    }
    docker_repo(s, "mirror", "mirror/app", importer);
}

fn served_tags(s: &Server) -> Value {
    let r = request(s, "GET", "/v2/mirror/app/tags/list", &[]);
    assert_eq!(r.status().as_u16(), 200);
    r.json::<Value>().unwrap()["tags"].clone()
}

fn served_digest(s: &Server, tag: &str) -> String {
    let r = request(
        s,
        "GET",
        &format!("/v2/mirror/app/manifests/{tag}"),
        &[("Accept", DOCKER_ACCEPT)],
    );
    assert_eq!(r.status().as_u16(), 200, "{tag}");
    header(&r, "docker-content-digest")
}

#[test]
fn sync_mirrors_only_the_tags_the_filters_allow() {
    let d = upstream();
    let s = Server::start();
    mirror_repo(
        &s,
        &d,
        json!({"include_tags": ["v*", "latest", "old-*"], "exclude_tags": ["v2", "old-*"]}),
    );
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    publish(&s, "mirror");
    assert_eq!(served_tags(&s), json!(["latest", "v1"]));
    assert_eq!(tag_names(&content(&s, "mirror")), ["latest", "v1"]);
    for tag in ["latest", "v1"] {
        assert_eq!(served_digest(&s, tag), d.manifest("up/app", tag).1);
    }
    // Two tags of one image: one manifest, its config and one layer.
    let c = content(&s, "mirror");
    assert_eq!(c.counts, json!({"blob": 2, "manifest": 1, "tag": 2}));
    let (_, v1) = d.manifest("up/app", "v1");
    assert_eq!(c.manifests, [v1]);

    // Widening the filter brings the others; no filter mirrors everything.
    let r = s
        .http
        .patch(s.url("/api/v1/repositories/mirror"))
        .json(&json!({"importer_config": {"include_tags": null, "exclude_tags": null}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    publish(&s, "mirror");
    assert_eq!(
        served_tags(&s),
        json!(["dev", "latest", "old-1", "v1", "v2"])
    );
    let name = format!("{}/mirror/app:dev", s.addr);
    let out = docker_pull_run_cat(&name, "/etc/second.txt");
    assert_eq!(out.trim(), "second layer");
}

#[test]
fn resync_moves_a_changed_tag_and_fetches_only_the_new_blobs() {
    let d = upstream();
    let s = Server::start();
    mirror_repo(
        &s,
        &d,
        json!({"include_tags": ["v*", "latest"], "exclude_tags": ["v2"]}),
    );
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    publish(&s, "mirror");
    let (_, busybox) = d.manifest("up/app", "v1");
    assert_eq!(served_digest(&s, "v1"), busybox);

    // A sync with nothing new upstream stores nothing.
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(t["result"]["bytes_stored"], 0, "{t}");
    assert_eq!(t["result"]["units_added"], 0, "{t}");

    // Upstream v1 now points at the two-layer image (the busybox layer is shared).
    d.push("two-layer.tar", "docker-archive", "up/app:v1");
    let (raw, moved) = d.manifest("up/app", "v1");
    assert_ne!(moved, busybox);
    let m: Value = serde_json::from_slice(&raw).unwrap();
    let old: Value = serde_json::from_slice(&d.manifest("up/app", "latest").0).unwrap();
    assert_eq!(m["layers"][0]["digest"], old["layers"][0]["digest"]);
    let new_bytes = raw.len() as u64
        + m["config"]["size"].as_u64().unwrap()
        + m["layers"][1]["size"].as_u64().unwrap();

    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(
        t["result"]["bytes_stored"], new_bytes,
        "only the new manifest, config and layer should be fetched: {t}"
    );
    let message = t["result"]["message"].as_str().unwrap();
    assert!(message.contains("1 unchanged, 1 updated"), "{message}");

    // Invisible until published, then the tag has moved and latest has not.
    assert_eq!(served_digest(&s, "v1"), busybox);
    publish(&s, "mirror");
    assert_eq!(served_digest(&s, "v1"), moved);
    assert_eq!(served_digest(&s, "latest"), busybox);
    let c = content(&s, "mirror");
    assert_eq!(c.tags.len(), 2, "one unit per tag: {:?}", c.tags);
    assert!(c.tags.contains(&format!("v1@{moved}")), "{:?}", c.tags);

    let name = format!("{}/mirror/app:v1", s.addr);
    let out = docker_pull_run_cat(&name, "/etc/second.txt");
    assert_eq!(out.trim(), "second layer");

    // A tag deleted upstream leaves the mirror at the next sync.
    let r = reqwest::blocking::Client::new()
        .delete(format!("{}/v2/up/app/manifests/{busybox}", d.url()))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "distribution delete");
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    publish(&s, "mirror");
    assert_eq!(served_tags(&s), json!(["v1"]));
}

#[test]
fn sync_of_an_upstream_serving_wrong_bytes_fails_and_changes_nothing() {
    let d = Distribution::start();
    d.push("busybox.tar", "docker-archive", "up/app:v1");
    let s = Server::start();
    mirror_repo(&s, &d, json!({}));
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    publish(&s, "mirror");
    let before = content(&s, "mirror");

    // A new tag whose new layer the upstream serves corrupted (same length).
    d.push("two-layer.tar", "docker-archive", "up/app:v2");
    let (raw, _) = d.manifest("up/app", "v2");
    let m: Value = serde_json::from_slice(&raw).unwrap();
    let layer = m["layers"][1]["digest"].as_str().unwrap();
    let file = d.blob_file(layer);
    let mut bytes = std::fs::read(&file).unwrap();
    for b in bytes.iter_mut() {
        *b ^= 0x5a;
    }
    std::fs::write(&file, &bytes).unwrap();

    let t = sync(&s, "mirror");
    let message = failed_with(&t);
    assert!(
        message.contains(layer) && message.contains("wrong bytes"),
        "{message}"
    );
    assert_eq!(content(&s, "mirror"), before);
    // Nothing stored under the digest either: a later sync cannot be fooled.
    let t = sync(&s, "mirror");
    assert!(failed_with(&t).contains(layer));
    publish(&s, "mirror");
    assert_eq!(served_tags(&s), json!(["v1"]));
}

#[test]
fn sync_of_a_20_layer_image_brings_every_layer_byte_for_byte() {
    let d = Distribution::start();
    d.push("many-layers.tar", "docker-archive", "up/app:many");
    let (raw, digest) = d.manifest("up/app", "many");
    let upstream: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(upstream["layers"].as_array().unwrap().len(), 20);

    let s = Server::start();
    mirror_repo(&s, &d, json!({}));
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    let expected: u64 = raw.len() as u64
        + upstream["config"]["size"].as_u64().unwrap()
        + upstream["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>();
    assert_eq!(t["result"]["bytes_stored"], expected, "{t}");
    publish(&s, "mirror");
    assert_eq!(served_digest(&s, "many"), digest);

    // skopeo verifies every blob against its digest while copying.
    let tmp = scratch();
    must(skopeo().args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/mirror/app:many", s.addr),
        &format!("dir:{}", tmp.path().display()),
    ]));
    assert_eq!(
        std::fs::read(tmp.path().join("manifest.json")).unwrap(),
        raw
    );
    for layer in upstream["layers"].as_array().unwrap() {
        let d = layer["digest"].as_str().unwrap();
        assert!(
            tmp.path()
                .join(d.strip_prefix("sha256:").unwrap())
                .is_file()
        );
    }
}

#[test]
fn sync_of_a_missing_upstream_repository_fails_clearly() {
    let d = Distribution::start();
    let s = Server::start();
    mirror_repo(&s, &d, json!({}));
    let message = failed_with(&sync(&s, "mirror"));
    assert!(message.contains("up/app"), "{message}");
    assert_eq!(content(&s, "mirror").counts, json!({}), "nothing was added");
}

/// `mirror: false` (`--mirror false`): a sync adds and moves tags but keeps
/// those gone upstream; switched to a mirror (`wharf docker repo update
/// --mirror true`), the next sync removes them.
#[test]
fn an_additive_sync_keeps_tags_gone_upstream_and_a_mirror_sync_removes_them() {
    let d = upstream();
    let s = Server::start();
    mirror_repo(&s, &d, json!({"mirror": false}));
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    let all = ["dev", "latest", "old-1", "v1", "v2"];
    assert_eq!(tag_names(&content(&s, "mirror")), all);

    // Upstream deletes the two-layer image: its tags v2 and dev go with it.
    let (_, two) = d.manifest("up/app", "v2");
    let r = reqwest::blocking::Client::new()
        .delete(format!("{}/v2/up/app/manifests/{two}", d.url()))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{}", d.log());

    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    assert!(
        t["result"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("(additive)") && m.contains("0 removed")),
        "{t}"
    );
    assert_eq!(tag_names(&content(&s, "mirror")), all);

    let w = crate::cli::admin(&s);
    w.ok(&[
        "docker",
        "repo",
        "update",
        "--repo-id",
        "mirror",
        "--mirror",
        "true",
    ]);
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(tag_names(&content(&s, "mirror")), ["latest", "old-1", "v1"]);
}

/// `auto_publish` (`--auto-publish true`, pulp-admin's): a successful sync
/// publishes in its own task, so the synced tags are pullable at once; a
/// failed sync publishes nothing.
#[test]
fn a_sync_of_an_auto_publish_repository_publishes_what_it_brought() {
    let d = upstream();
    let s = Server::start();
    s.create_repo(json!({
        "id": "mirror",
        "content_type": "docker",
        "importer_config": {"feed": d.url(), "upstream_name": "up/app", "include_tags": ["v1"]},
        "distributor_config": {"repo_registry_id": "mirror/app", "auto_publish": true},
    }));
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    assert!(t["result"]["published"].is_object(), "{t}");
    assert_eq!(served_tags(&s), json!(["v1"]));
    assert_eq!(served_digest(&s, "v1"), d.manifest("up/app", "v1").1);

    // A sync that fails (an upstream name that does not exist) changes
    // nothing and publishes nothing: v1 stays served.
    let r = s
        .http
        .patch(s.url("/api/v1/repositories/mirror"))
        .json(&json!({"importer_config": {"upstream_name": "up/none", "include_tags": null}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "error", "{t}");
    assert_eq!(served_tags(&s), json!(["v1"]));

    // Widened again: the new tags are served after the sync alone.
    let r = s
        .http
        .patch(s.url("/api/v1/repositories/mirror"))
        .json(&json!({"importer_config": {"upstream_name": "up/app"}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(
        served_tags(&s),
        json!(["dev", "latest", "old-1", "v1", "v2"])
    );
}

/// An upstream behind HTTP basic auth (distribution's htpasswd): a sync
/// without credentials, or with a wrong password, fails saying so and
/// stores nothing; with the account (the password write-only, never shown
/// back nor in the task), it syncs.
#[test]
fn sync_from_an_upstream_behind_basic_auth_needs_its_account() {
    let d = Distribution::start_with_basic_auth("mirror", "up-s3cret-pw");
    d.push("busybox.tar", "docker-archive", "up/app:v1");
    let s = Server::start();
    mirror_repo(&s, &d, json!({}));
    let error = failed_with(&sync(&s, "mirror"));
    assert!(
        error.contains("the upstream asks for Basic auth: set username and password"),
        "{error}"
    );

    let set = |importer: Value| {
        let r = s
            .http
            .patch(s.url("/api/v1/repositories/mirror"))
            .json(&json!({"importer_config": importer}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    };
    set(json!({"username": "mirror", "password": "wrong-password"}));
    let error = failed_with(&sync(&s, "mirror"));
    assert!(error.contains("refused the credentials"), "{error}");
    assert!(tag_names(&content(&s, "mirror")).is_empty());

    set(json!({"password": "up-s3cret-pw"}));
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}\n{}", d.log());
    assert_eq!(tag_names(&content(&s, "mirror")), ["v1"]);
    assert!(!t.to_string().contains("up-s3cret-pw"), "{t}");
    let (_, repo) = s.get_json("/api/v1/repositories/mirror");
    assert_eq!(repo["importer_config"]["password"], "********", "{repo}");
}

/// A feed URL with the account in it (`http://user:password@host`): the
/// task's record never carries the password: not its log lines nor its
/// result's message, which name the feed, masked.
#[test]
fn a_password_in_the_feed_url_never_reaches_the_tasks_log_or_error() {
    let d = Distribution::start_with_basic_auth("mirror", "in-url-s3cret");
    d.push("busybox.tar", "docker-archive", "up/app:v1");
    let s = Server::start();
    let feed = format!("http://mirror:in-url-s3cret@{}", d.addr);
    docker_repo(
        &s,
        "mirror",
        "mirror/app",
        json!({"feed": feed, "upstream_name": "up/app"}),
    );
    let t = sync(&s, "mirror");
    let log = t["log"].as_array().cloned().unwrap_or_default();
    assert!(!log.is_empty(), "the sync logged nothing: {t}");
    assert!(!t.to_string().contains("in-url-s3cret"), "{t}");
    assert_eq!(t["state"], "finished", "{t}");
    let masked = format!("http://mirror:********@{}", d.addr);
    assert!(
        t["result"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&masked)),
        "{t}"
    );
}

/// An upstream behind token auth (distribution's `token` auth: a Bearer
/// token from the token server its challenge names, issue 19): without an
/// account, or with a wrong password, the token server refuses the sync,
/// which fails saying so and stores nothing; with the account (set by
/// `wharf docker repo update --upstream-username`, the password from the
/// environment), the sync gets a pull token for the upstream name and
/// brings the image byte for byte. Neither the password nor a token
/// reaches the task's record.
#[test]
fn sync_from_an_upstream_behind_token_auth_gets_a_token_with_its_account() {
    let password = "tok-s3cret-pw";
    let (d, tokens) = Distribution::start_with_token_auth("mirror", password);
    d.push("busybox.tar", "docker-archive", "up/app:v1");
    let (raw, digest) = d.manifest("up/app", "v1");
    // The registry itself wants a token: its challenge names the realm.
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/v2/up/app/manifests/v1", d.url()))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let challenge = header(&r, "www-authenticate");
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{}\"", tokens.realm())),
        "{challenge}"
    );
    // skopeo pushed (and read back) with tokens of its own.
    assert!(
        tokens.issued().iter().any(|t| t
            .granted
            .contains(&"repository:up/app:pull,push".to_string())),
        "{:?}",
        tokens.issued()
    );

    let s = Server::start();
    mirror_repo(&s, &d, json!({}));
    let (issued, refused) = (tokens.issued().len(), tokens.refused());
    let t = sync(&s, "mirror");
    let error = failed_with(&t);
    assert!(
        error.contains(&tokens.realm())
            && error.contains("answered 401")
            && error.contains("set username and password"),
        "{error}"
    );
    assert!(
        tokens.refused() > refused,
        "the sync never asked for a token"
    );
    assert_eq!(content(&s, "mirror").counts, json!({}), "nothing was added");

    let r = s
        .http
        .patch(s.url("/api/v1/repositories/mirror"))
        .json(&json!({"importer_config": {"username": "mirror", "password": "wrong-password"}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let refused = tokens.refused();
    let t = sync(&s, "mirror");
    let error = failed_with(&t);
    assert!(
        error.contains(&tokens.realm())
            && error.contains("answered 401")
            && error.contains("refused the credentials"),
        "{error}"
    );
    assert!(!t.to_string().contains("wrong-password"), "{t}");
    assert!(
        tokens.refused() > refused,
        "the wrong password was not tried"
    );
    assert_eq!(
        tokens.issued().len(),
        issued,
        "a wrong password got a token"
    );
    assert_eq!(content(&s, "mirror").counts, json!({}), "nothing was added");

    let w = crate::cli::admin(&s);
    let mut update = w.command(&[
        "docker",
        "repo",
        "update",
        "--repo-id",
        "mirror",
        "--upstream-username",
        "mirror",
    ]);
    update.env("WHARF_UPSTREAM_PASSWORD", password);
    let (ok, out) = run(&mut update);
    assert!(ok, "{out}");
    let t = sync(&s, "mirror");
    assert_eq!(t["state"], "finished", "{t}\n{}", d.log());
    assert_eq!(tag_names(&content(&s, "mirror")), ["v1"]);
    // The sync's tokens: the account's, for pulls of the upstream name only.
    let used = tokens.issued().split_off(issued);
    assert!(!used.is_empty(), "the sync got no token");
    for token in &used {
        assert_eq!(token.subject, "mirror");
        assert_eq!(token.granted, ["repository:up/app:pull"], "{token:?}");
        assert!(!t.to_string().contains(&token.token), "a token in {t}");
    }
    assert!(!t.to_string().contains(password), "{t}");
    let (_, repo) = s.get_json("/api/v1/repositories/mirror");
    assert_eq!(repo["importer_config"]["password"], "********", "{repo}");

    // Pullable from Wharf: the upstream's manifest and every blob, verified.
    publish(&s, "mirror");
    let r = request(
        &s,
        "GET",
        "/v2/mirror/app/manifests/v1",
        &[("Accept", DOCKER_ACCEPT)],
    );
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "docker-content-digest"), digest);
    assert_eq!(r.bytes().unwrap().to_vec(), raw);
    let m: Value = serde_json::from_slice(&raw).unwrap();
    let layers = m["layers"].as_array().unwrap();
    let blobs = layers.iter().chain([&m["config"]]);
    for blob in blobs {
        let blob = blob["digest"].as_str().unwrap();
        let r = request(&s, "GET", &format!("/v2/mirror/app/blobs/{blob}"), &[]);
        assert_eq!(r.status().as_u16(), 200, "{blob}");
        assert_eq!(sha256_digest(&r.bytes().unwrap()), blob);
    }
}
