//! The Docker content type with a real Docker engine.

use crate::support::*;
use serde_json::json;

/// `docker load` the test image and `docker save` it again, so the archive is
/// exactly what this engine writes.
fn docker_save(image: &str, archive: &str, out: &std::path::Path) {
    must(
        docker()
            .args(["load", "-i"])
            .arg(images_dir().join(archive)),
    );
    must(docker().args(["save", image, "-o"]).arg(out));
}

#[test]
fn docker_save_upload_publish_pull_run() {
    let s = Server::start();
    let tmp = tempfile::tempdir_in(env_path("WHARF_TEST_RUN_DIR")).unwrap();
    let saved = tmp.path().join("saved.tar");
    docker_save("test/busybox:latest", "busybox.tar", &saved);

    s.create_repo(json!({"id": "busybox", "content_type": "docker", "distributor_config": {"repo_registry_id": "test/busybox"}}));
    let name = format!("{}/test/busybox:latest", s.addr);

    // Before a publish nothing is visible.
    let (ok, out) = run(docker().args(["pull", &name]));
    assert!(!ok, "pull of an unpublished repository succeeded: {out}");

    s.import_and_publish("busybox", &saved);
    must(docker().args(["rmi", "-f", "test/busybox:latest"]));
    let out = docker_pull_run_cat(&name, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");

    // The same archive as the body of a streaming import, into a second
    // repository: layers go from the request into blobs as they arrive.
    s.create_repo(json!({"id": "streamed", "content_type": "docker", "distributor_config": {"repo_registry_id": "test/streamed"}}));
    let t = s.import_stream("streamed", "", std::fs::read(&saved).unwrap());
    assert_eq!(t["state"], "finished", "{t}\n{}", s.log());
    let t = s.repo_task("streamed", "publish", json!({}));
    assert_eq!(t["state"], "finished", "{t}");
    let name = format!("{}/test/streamed:latest", s.addr);
    let out = docker_pull_run_cat(&name, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");
}
