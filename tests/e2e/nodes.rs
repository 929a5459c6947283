//! Nodes, as the seed's Pulp had them: a child Wharf mirrors repositories
//! of a parent Wharf through the registry API (the parent is the child
//! repository's feed), with Wharf's own commands. A protected repository of
//! the parent is mirrored only with the child's credentials there, and a
//! child pulls what the parent published, not what it holds unpublished.

use crate::cli::Wharf;
use crate::registry_support::*;
use crate::support::*;
use serde_json::json;

/// The digest a server serves for `name:reference`.
fn served(s: &Server, name: &str, reference: &str) -> String {
    let r = request(
        s,
        "GET",
        &format!("/v2/{name}/manifests/{reference}"),
        &[("Accept", DOCKER_ACCEPT)],
    );
    assert_eq!(r.status().as_u16(), 200, "{name}:{reference} on {}", s.base);
    header(&r, "docker-content-digest")
}

#[test]
fn a_child_mirrors_a_parents_public_and_protected_repositories() {
    let parent = Server::start();
    let child = Server::start();

    // The parent: a public repository and a protected one, published; a
    // user the child logs in as, who may read the protected one.
    docker_repo(&parent, "base", "base/busybox", json!({}));
    parent.import_and_publish("base", &images_dir().join("busybox.tar"));
    parent.create_repo(json!({"id": "secret", "content_type": "docker",
        "distributor_config": {"repo_registry_id": "base/secret", "protected": true}}));
    parent.import_and_publish("secret", &images_dir().join("two-layer.tar"));
    let (status, v) = parent.post_json(
        "/api/v1/users",
        &json!({"login": "mirror", "password": "mirror-password-1"}),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = parent.post_json(
        "/api/v1/permissions/grant",
        &json!({"login": "mirror", "resource": "/repositories/secret/", "operations": ["read"]}),
    );
    assert_eq!(status, 200, "{v}");

    // The child, with its own commands: sync from the parent, publish, pull.
    let w = Wharf::new(&child.base);
    w.login("admin", ADMIN_PASSWORD);
    w.ok(&[
        "docker",
        "repo",
        "sync",
        "--repo-id",
        "base",
        "--feed",
        &parent.base,
        "--upstream-name",
        "base/busybox",
    ]);
    w.ok(&["docker", "repo", "publish", "--repo-id", "base"]);
    assert_eq!(
        served(&child, "base", "latest"),
        served(&parent, "base/busybox", "latest")
    );
    // The protected repository: refused without credentials, and with
    // wrong ones; mirrored with the child's.
    let err = w.fails(&[
        "docker",
        "repo",
        "sync",
        "--repo-id",
        "secret",
        "--feed",
        &parent.base,
        "--upstream-name",
        "base/secret",
    ]);
    assert!(
        err.contains("credentials") || err.contains("401") || err.contains("denied"),
        "{err}"
    );
    assert!(content(&child, "secret").manifests.is_empty());
    let sync_as_mirror = |password: &str| {
        let mut sync = w.command(&[
            "docker",
            "repo",
            "sync",
            "--repo-id",
            "secret",
            "--upstream-username",
            "mirror",
        ]);
        sync.env("WHARF_UPSTREAM_PASSWORD", password);
        sync.output().unwrap()
    };
    let out = sync_as_mirror("not-the-password");
    assert!(
        !out.status.success(),
        "a wrong password mirrored the repository"
    );
    let out = sync_as_mirror("mirror-password-1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The password is write-only on the child too.
    let (_, detail) = child.get_json("/api/v1/repositories/secret");
    assert_eq!(
        detail["importer_config"]["password"], "********",
        "{detail}"
    );
    w.ok(&["docker", "repo", "publish", "--repo-id", "secret"]);
    let mirrored = served(&child, "secret", "v1");
    assert!(
        content(&parent, "secret")
            .tags
            .contains(&format!("v1@{mirrored}")),
        "the child serves the parent's protected image: {mirrored}"
    );

    // And docker pulls the mirrored image from the child.
    let image = format!("{}/base:latest", child.addr);
    let _ = run(docker().args(["rmi", "-f", &image]));
    assert!(docker_pull_run_cat(&image, "/etc/hello.txt").contains("hello from wharf"));
}
