//! Remotes as objects (Pulp 3's Remote): upstream settings and how to reach
//! the feed, shared by the repositories that name one. Checked against a
//! CNCF distribution behind a private CA: a repository with no way to trust
//! it fails to sync, two repositories naming a remote with the CA sync,
//! the remote's password never shows, its TLS switch, its rate limit and
//! its proxy (Debian's tinyproxy) take effect, and a remote deleted leaves
//! a clear error on sync (and publishing still works).

use crate::registry_support::*;
use crate::support::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    let w = crate::cli::admin(&s);
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
    // What needs no feed goes on: the synced content publishes.
    let t = s.repo_task("one", "publish", json!({}));
    assert_eq!(t["state"], "finished", "{t}");
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

/// A real HTTP proxy: Debian's tinyproxy in the foreground on a free
/// loopback port, logging every request it carries.
struct Proxy {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn start() -> Proxy {
        let dir = scratch();
        let port = free_port();
        let (conf, log) = (
            dir.path().join("tinyproxy.conf"),
            dir.path().join("tinyproxy.log"),
        );
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Info\n\
                 MaxClients 20\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tinyproxy (apt-get install tinyproxy)");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "tinyproxy did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Proxy {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        }
    }

    /// The request lines it carried (`GET http://host/path HTTP/1.1`).
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("): ").filter(|_| l.contains("Request (")))
            .map(|(_, r)| r.to_string())
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_remote_s_proxy_carries_every_request_to_the_feed() {
    let d = Distribution::start();
    d.push("busybox.tar", "docker-archive", "team/app:1");
    let mut proxy = Proxy::start();
    let s = Server::start();
    let (status, v) = s.post_json(
        "/api/v1/remotes",
        &json!({"id": "via", "content_type": "docker",
                "settings": {"feed": d.url(), "upstream_name": "team/app"},
                "transport": {"proxy": proxy.url}}),
    );
    assert_eq!(status, 201, "{v}");
    docker_repo(&s, "proxied", "rem/proxied", json!({"remote": "via"}));
    let t = sync(&s, "proxied");
    assert_eq!(t["state"], "finished", "{t}");
    let c = content(&s, "proxied");
    assert_eq!(tag_names(&c), ["1"]);
    // The manifest and every blob went through the proxy.
    let carried = proxy.requests();
    let via = |path: &str| {
        carried
            .iter()
            .any(|r| r.starts_with(&format!("GET http://{}{path}", d.addr)))
    };
    assert!(via("/v2/team/app/manifests/"), "{carried:#?}");
    for blob in &c.blobs {
        assert!(
            via(&format!("/v2/team/app/blobs/{blob}")),
            "{blob}: {carried:#?}"
        );
    }

    // The proxy gone: the sync fails and nothing goes around it.
    let _ = proxy.child.kill();
    let _ = proxy.child.wait();
    d.push("two-layer.tar", "docker-archive", "team/app:2");
    let why = failed_with(&sync(&s, "proxied"));
    assert!(why.contains("connect") || why.contains("proxy"), "{why}");
    assert_eq!(tag_names(&content(&s, "proxied")), ["1"]);
}
