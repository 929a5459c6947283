//! Remotes as objects (Pulp 3's Remote): upstream settings and how to reach
//! the feed, shared by the repositories that name one. Checked against a
//! CNCF distribution behind a private CA: a repository with no way to trust
//! it fails to sync, two repositories naming a remote with the CA sync,
//! the remote's password never shows, its TLS switch and its rate limit
//! take effect, and a remote deleted leaves a clear error.

use crate::cli::Wharf;
use crate::registry_support::*;
use crate::support::*;
use serde_json::json;
use std::time::Instant;

#[test]
fn repositories_sharing_a_remote_sync_from_an_upstream_behind_its_ca() {
    let tmp = scratch();
    let pki = crate::serving::Pki::new(tmp.path(), "upstream");
    let (cert, key) = pki.leaf("registry");
    let d = Distribution::start_with_tls(&cert, &key);
    d.push("busybox.tar", "docker-archive", "team/app:1");
    d.push("two-layer.tar", "docker-archive", "team/app:2");
    let s = Server::start();

    // The feed alone, with no way to trust it: the sync says why.
    docker_repo(
        &s,
        "direct",
        "rem/direct",
        json!({"feed": d.url(), "upstream_name": "team/app"}),
    );
    let why = failed_with(&sync(&s, "direct"));
    assert!(why.contains("certificate"), "{why}");

    // A remote that carries the CA, its account and a rate limit.
    let w = Wharf::new(&s.base);
    w.login("admin", ADMIN_PASSWORD);
    let ca = pki.ca().to_str().unwrap().to_string();
    w.ok(&[
        "docker",
        "remote",
        "create",
        "--remote-id",
        "private",
        "--url",
        &d.url(),
        "--ca-cert-file",
        &ca,
        "--upstream-username",
        "robot",
        "--upstream-password",
        "remote-s3cret-pw",
        "--rate-limit",
        "100",
    ]);
    let shown = w.ok(&["docker", "remote", "show", "--remote-id", "private"]);
    assert!(!shown.contains("remote-s3cret-pw"), "{shown}");
    assert!(
        shown.contains("********") && shown.contains("BEGIN CERTIFICATE"),
        "{shown}"
    );
    let listed = w.ok(&["docker", "remote", "list"]);
    assert!(
        listed.contains("private") && listed.contains("own CA"),
        "{listed}"
    );

    // Two repositories name it; each adds its own settings.
    w.ok(&[
        "docker",
        "repo",
        "create",
        "--repo-id",
        "one",
        "--remote",
        "private",
        "--upstream-name",
        "team/app",
    ]);
    w.ok(&[
        "docker",
        "repo",
        "create",
        "--repo-id",
        "two",
        "--remote",
        "private",
        "--upstream-name",
        "team/app",
        "--tag-include",
        "2",
    ]);
    for (id, tags) in [("one", vec!["1", "2"]), ("two", vec!["2"])] {
        let t = sync(&s, id);
        assert_eq!(t["state"], "finished", "{id}: {t}");
        assert_eq!(tag_names(&content(&s, id)), tags, "{id}");
        let text = t.to_string();
        assert!(!text.contains("remote-s3cret-pw"), "{text}");
    }
    // The repository shows what it names, not the remote's secrets.
    let (_, repo) = s.get_json("/api/v1/repositories/one");
    assert_eq!(repo["importer_config"]["remote"], "private", "{repo}");
    assert!(repo["importer_config"].get("password").is_none(), "{repo}");

    // Mistakes are refused when written.
    let (status, v) = s.post_json(
        "/api/v1/repositories",
        &json!({"id": "ghost", "content_type": "docker", "importer_config": {"remote": "nope"}}),
    );
    assert_eq!(status, 404, "{v}");
    let (status, v) = s.post_json(
        "/api/v1/remotes",
        &json!({"id": "files", "content_type": "file", "settings": {"feed": d.url()}}),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = s.post_json(
        "/api/v1/repositories",
        &json!({"id": "mixed", "content_type": "docker", "importer_config": {"remote": "files"}}),
    );
    assert_eq!(status, 400, "{v}");
    for transport in [
        json!({"download_concurrency": 0}),
        json!({"rate_limit": 0}),
        json!({"ca_cert": "not a certificate"}),
        json!({"proxy": "http://169.254.169.254:3128"}),
    ] {
        let (status, v) = s.post_json(
            "/api/v1/remotes",
            &json!({"id": "bad", "content_type": "docker", "transport": transport}),
        );
        assert_eq!(status, 400, "{transport}: {v}");
    }

    // The TLS switch: no CA, no verification, and the sync still works
    // (the transport is rebuilt when the remote changes).
    w.ok(&[
        "docker",
        "remote",
        "update",
        "--remote-id",
        "private",
        "--tls-verify",
        "false",
    ]);
    let (_, r) = s.get_json("/api/v1/remotes/private");
    assert_eq!(r["transport"]["tls_verify"], false, "{r}");
    assert!(r["transport"].get("ca_cert").is_none(), "{r}");
    d.push("busybox.tar", "docker-archive", "team/app:3");
    let t = sync(&s, "one");
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(tag_names(&content(&s, "one")), ["1", "2", "3"]);

    // Deleted: the repositories naming it say so.
    w.ok(&["docker", "remote", "delete", "--remote-id", "private"]);
    let why = failed_with(&sync(&s, "two"));
    assert!(
        why.contains("remote private, which does not exist"),
        "{why}"
    );
}

#[test]
fn a_remote_s_rate_limit_spaces_the_downloads_of_a_sync() {
    let d = Distribution::start();
    d.push("many-layers.tar", "docker-archive", "team/many:1");
    let s = Server::start();
    let (status, v) = s.post_json(
        "/api/v1/remotes",
        &json!({"id": "slow", "content_type": "docker",
                "settings": {"feed": d.url(), "upstream_name": "team/many"},
                "transport": {"rate_limit": 10, "download_concurrency": 8}}),
    );
    assert_eq!(status, 201, "{v}");
    docker_repo(&s, "paced", "rem/paced", json!({"remote": "slow"}));
    let started = Instant::now();
    let t = sync(&s, "paced");
    let paced = started.elapsed();
    assert_eq!(t["state"], "finished", "{t}");
    let blobs = content(&s, "paced").blobs.len();
    assert!(blobs >= 21, "20 layers and a config: {blobs}");
    // At 10 requests a second, the 21 downloads alone take 2 s at least.
    assert!(paced.as_secs_f64() >= 2.0, "{paced:?} for {blobs} blobs");
}
