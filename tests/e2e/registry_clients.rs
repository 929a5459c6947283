//! Published images through real clients other than the Docker engine:
//! podman and skopeo, single images and a multi-platform OCI index.

use crate::registry_support::*;
use crate::support::*;
use serde_json::{Value, json};

/// A server with `test/busybox:latest` imported from the `docker save`
/// archive and published.
fn published_busybox() -> Server {
    let s = Server::start();
    docker_repo(&s, "busybox", "test/busybox", json!({}));
    s.import_and_publish("busybox", &images_dir().join("busybox.tar"));
    s
}

fn skopeo_json(args: &[&str]) -> Value {
    let out = must(skopeo().args(args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("skopeo {args:?}: {e}\n{out}"))
}

#[test]
fn podman_pulls_and_runs_a_published_image() {
    let s = published_busybox();
    let name = format!("{}/test/busybox:latest", s.addr);
    let _ = run(podman().args(["rmi", "-f", &name]));
    must(podman().args(["pull", "--tls-verify=false", &name]));
    let out = must(podman().args([
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        &name,
        "cat",
        "/etc/hello.txt",
    ]));
    assert!(out.contains("hello from wharf"), "{out}");
    // podman recorded the digest Wharf served, for this repository (the
    // image's first digest may come from another test's `podman load` of
    // the same busybox image).
    let digests = must(podman().args([
        "image",
        "inspect",
        "--format",
        "{{range .RepoDigests}}{{.}} {{end}}",
        &name,
    ]));
    let served = request(
        &s,
        "GET",
        "/v2/test/busybox/manifests/latest",
        &[("Accept", DOCKER_ACCEPT)],
    );
    let pulled = format!(
        "{}/test/busybox@{}",
        s.addr,
        header(&served, "docker-content-digest")
    );
    assert!(
        digests.split_whitespace().any(|d| d == pulled),
        "{pulled} not in {digests}"
    );
    let _ = run(podman().args(["rmi", "-f", &name]));
}

#[test]
fn skopeo_inspect_raw_bytes_hash_to_the_served_digest() {
    let s = published_busybox();
    let reference = format!("docker://{}/test/busybox:latest", s.addr);
    let raw = must(skopeo().args(["inspect", "--raw", "--tls-verify=false", &reference]));
    let served = request(
        &s,
        "GET",
        "/v2/test/busybox/manifests/latest",
        &[("Accept", DOCKER_ACCEPT)],
    );
    let digest = header(&served, "docker-content-digest");
    assert_eq!(header(&served, "content-type"), DOCKER_MANIFEST);
    assert_eq!(sha256_digest(&served.bytes().unwrap()), digest);
    assert_eq!(sha256_digest(raw.as_bytes()), digest, "{raw}");

    let manifest: Value = serde_json::from_str(&raw).unwrap();
    let parsed = skopeo_json(&["inspect", "--tls-verify=false", &reference]);
    assert_eq!(parsed["Digest"], digest.as_str());
    assert_eq!(parsed["Architecture"], "amd64");
    assert_eq!(parsed["Os"], "linux");
    let layers: Vec<&Value> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["digest"])
        .collect();
    let parsed_layers: Vec<&Value> = parsed["Layers"].as_array().unwrap().iter().collect();
    assert_eq!(parsed_layers, layers);
    assert_eq!(
        manifest["config"]["digest"],
        image_info("busybox.tar")["config_digest"]
    );
}

#[test]
fn skopeo_copies_to_dir_and_oci_layouts_and_lists_tags() {
    let s = published_busybox();
    // A second tag from the same repository, and a second image.
    let t = import(&s, "busybox", &images_dir().join("two-layer.tar"));
    assert_eq!(t["state"], "finished", "{t}");
    publish(&s, "busybox");

    let tags = skopeo_json(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/test/busybox", s.addr),
    ]);
    assert_eq!(tags["Tags"], json!(["latest", "v1"]), "{tags}");

    let tmp = scratch();
    let dir = tmp.path().join("dir");
    let oci = tmp.path().join("oci");
    let src = format!("docker://{}/test/busybox:v1", s.addr);
    must(skopeo().args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &src,
        &format!("dir:{}", dir.display()),
    ]));
    must(skopeo().args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &src,
        &format!("oci:{}:v1", oci.display()),
    ]));

    // dir: keeps the manifest byte for byte and every blob under its digest.
    let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    let served = request(
        &s,
        "GET",
        "/v2/test/busybox/manifests/v1",
        &[("Accept", DOCKER_ACCEPT)],
    );
    assert_eq!(
        sha256_digest(&manifest),
        header(&served, "docker-content-digest")
    );
    let m: Value = serde_json::from_slice(&manifest).unwrap();
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    for l in m["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_string());
    }
    assert_eq!(blobs.len(), 3);
    for d in &blobs {
        let bytes = std::fs::read(dir.join(d.strip_prefix("sha256:").unwrap())).unwrap();
        assert_eq!(&sha256_digest(&bytes), d);
    }

    // oci: skopeo had to convert (OCI layers are compressed), so the layout
    // holds the same filesystem: its config's diff ids are the layers served.
    let back = skopeo_json(&["inspect", &format!("oci:{}:v1", oci.display())]);
    assert_eq!(back["Architecture"], "amd64");
    assert_eq!(back["Layers"].as_array().unwrap().len(), 2);
    let blob = |d: &str| {
        std::fs::read(
            oci.join("blobs/sha256")
                .join(d.strip_prefix("sha256:").unwrap()),
        )
        .unwrap()
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    let oci_manifest: Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let config: Value =
        serde_json::from_slice(&blob(oci_manifest["config"]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"], json!(blobs[1..]));
    for l in oci_manifest["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        assert_eq!(sha256_digest(&blob(d)), d, "OCI layout blob {d}");
    }
}

#[test]
fn multi_arch_index_is_served_and_each_platform_resolves() {
    let info = images_json()["multi_arch"].clone();
    let index_digest = info["index_digest"].as_str().unwrap().to_string();
    let amd64 = info["platforms"]["amd64"].as_str().unwrap().to_string();
    let arm64 = info["platforms"]["arm64"].as_str().unwrap().to_string();

    let s = Server::start();
    docker_repo(&s, "multi", "test/multi", json!({}));
    s.import_and_publish("multi", &images_dir().join("multi-arch-oci.tar"));
    let reference = format!("docker://{}/test/multi:latest", s.addr);

    // The tag names the index itself, byte for byte.
    let raw = must(skopeo().args(["inspect", "--raw", "--tls-verify=false", &reference]));
    assert_eq!(sha256_digest(raw.as_bytes()), index_digest, "{raw}");
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);

    // Each platform picks its own child.
    for (arch, child) in [("amd64", &amd64), ("arm64", &arm64)] {
        let parsed = skopeo_json(&[
            "inspect",
            "--override-arch",
            arch,
            "--override-os",
            "linux",
            "--tls-verify=false",
            &reference,
        ]);
        assert_eq!(parsed["Architecture"], arch, "{parsed}");
        let child_raw = must(skopeo().args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/test/multi@{child}", s.addr),
        ]));
        let child_manifest: Value = serde_json::from_str(&child_raw).unwrap();
        let child_layers: Vec<&Value> = child_manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| &l["digest"])
            .collect();
        let parsed_layers: Vec<&Value> = parsed["Layers"].as_array().unwrap().iter().collect();
        assert_eq!(parsed_layers, child_layers, "{arch}");

        let tmp = scratch();
        must(skopeo().args([
            "copy",
            "--quiet",
            "--override-arch",
            arch,
            "--src-tls-verify=false",
            &reference,
            &format!("dir:{}", tmp.path().display()),
        ]));
        let copied = std::fs::read(tmp.path().join("manifest.json")).unwrap();
        assert_eq!(
            &sha256_digest(&copied),
            child,
            "{arch} copied another child"
        );
    }

    // GET by digest with only the index media type accepted.
    for method in ["GET", "HEAD"] {
        let r = request(
            &s,
            method,
            &format!("/v2/test/multi/manifests/{index_digest}"),
            &[("Accept", OCI_INDEX)],
        );
        assert_eq!(r.status().as_u16(), 200, "{method}");
        assert_eq!(header(&r, "content-type"), OCI_INDEX);
        assert_eq!(header(&r, "docker-content-digest"), index_digest);
        assert_eq!(header(&r, "content-length"), raw.len().to_string());
        if method == "GET" {
            assert_eq!(r.bytes().unwrap(), raw.as_bytes());
        }
    }
    // A client that only takes single-image manifests is told it is not there.
    let r = request(
        &s,
        "GET",
        "/v2/test/multi/manifests/latest",
        &[("Accept", DOCKER_MANIFEST)],
    );
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(error_code(r), "MANIFEST_UNKNOWN");

    // And docker pulls its own platform out of the index.
    let name = format!("{}/test/multi:latest", s.addr);
    let out = docker_pull_run_cat(&name, "/etc/arch.txt");
    assert_eq!(out.trim(), "amd64");
}

// Pushes to names no repository has (issue 17): the push creates the
// repository; nothing is set up through the admin API.

/// The names `GET /v2/_catalog` lists.
fn catalog(s: &Server) -> Value {
    let r = request(s, "GET", "/v2/_catalog", &[]);
    assert_eq!(r.status().as_u16(), 200);
    r.json::<Value>().unwrap()["repositories"].clone()
}

#[test]
fn docker_push_to_a_new_name_then_pull_runs_the_image() {
    let s = Server::start();
    let name = format!("{}/fresh/docker:v1", s.addr);
    let tmp = scratch();
    let config = tmp.path().join("docker");
    let docker_cfg = || docker_with_config(&config);
    docker_load_busybox_as(&name);
    // Anonymous: refused, and no repository appears.
    let (ok, out) = run(docker_cfg().args(["push", &name]));
    assert!(!ok, "anonymous push worked: {out}");
    assert_eq!(catalog(&s), json!([]));

    must(docker_cfg().args(["login", &s.addr, "-u", "admin", "-p", ADMIN_PASSWORD]));
    let out = must(docker_cfg().args(["push", &name]));
    assert!(out.contains("digest: sha256:"), "{out}");
    assert_eq!(catalog(&s), json!(["fresh/docker"]));
    must(docker().args(["rmi", "-f", &name]));
    // Anyone pulls it back (the created repository is public).
    let out = docker_pull_run_cat(&name, "/etc/hello.txt");
    assert!(out.contains("hello from wharf"), "{out}");
}

#[test]
fn podman_push_to_a_new_name_and_skopeo_lists_its_tags() {
    let s = Server::start();
    let name = format!("{}/fresh/podman:v1", s.addr);
    // An image no other podman test uses: podman keeps one record per image
    // id, and a push rewrites its digest under another test's feet.
    podman_load_as("many-layers.tar", "test/many", &name);
    let (ok, out) = run(podman().args([
        "push",
        "--tls-verify=false",
        "--creds",
        "nobody:wrong",
        &name,
    ]));
    assert!(!ok, "a push with wrong credentials worked: {out}");
    podman_push_as_admin(&name);
    let _ = run(podman().args(["rmi", "-f", &name]));
    let tags = must(skopeo().args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/fresh/podman", s.addr),
    ]));
    let tags: Value = serde_json::from_str(&tags).unwrap();
    assert_eq!(tags["Tags"], json!(["v1"]), "{tags}");
    // The bytes pulled back are the image pushed.
    let raw = must(skopeo().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ]));
    let served = request(
        &s,
        "GET",
        "/v2/fresh/podman/manifests/v1",
        &[("Accept", DOCKER_ACCEPT)],
    );
    assert_eq!(
        sha256_digest(raw.as_bytes()),
        header(&served, "docker-content-digest")
    );
}

#[test]
fn skopeo_copies_a_multi_arch_index_to_a_new_name_and_deletes_it() {
    let s = Server::start();
    let tmp = scratch();
    let digest_file = tmp.path().join("digest");
    let dest = format!("docker://{}/fresh/multi:latest", s.addr);
    must(skopeo().args([
        "copy",
        "--all",
        "--dest-tls-verify=false",
        "--dest-creds",
        &admin_creds(),
        "--digestfile",
        &digest_file.display().to_string(),
        &format!(
            "oci-archive:{}",
            images_dir().join("multi-arch-oci.tar").display()
        ),
        &dest,
    ]));
    let digest = std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .to_string();
    let served = request(
        &s,
        "GET",
        "/v2/fresh/multi/manifests/latest",
        &[("Accept", OCI_INDEX)],
    );
    assert_eq!(served.status().as_u16(), 200);
    assert_eq!(header(&served, "docker-content-digest"), digest);
    let index: Value = served.json().unwrap();
    let children: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(children.len(), 2, "{index}");
    for arch in ["amd64", "arm64"] {
        let dir = tmp.path().join(arch);
        must(skopeo().args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--override-arch",
            arch,
            &dest,
            &format!("dir:{}", dir.display()),
        ]));
        let copied = std::fs::read(dir.join("manifest.json")).unwrap();
        assert!(
            children.contains(&sha256_digest(&copied)),
            "{arch}: not a child of the index"
        );
    }

    // skopeo delete resolves the tag and deletes the index by digest.
    let (ok, out) = run(skopeo().args(["delete", "--tls-verify=false", &dest]));
    assert!(!ok, "an anonymous delete worked: {out}");
    must(skopeo().args([
        "delete",
        "--tls-verify=false",
        "--creds",
        &admin_creds(),
        &dest,
    ]));
    for reference in ["latest", digest.as_str()] {
        let r = request(
            &s,
            "GET",
            &format!("/v2/fresh/multi/manifests/{reference}"),
            &[("Accept", OCI_INDEX)],
        );
        assert_eq!(r.status().as_u16(), 404, "{reference} after the delete");
        assert_eq!(error_code(r), "MANIFEST_UNKNOWN");
    }
    let (ok, out) = run(skopeo().args(["inspect", "--raw", "--tls-verify=false", &dest]));
    assert!(!ok, "the deleted index is still served: {out}");
}
