use super::*;
use crate::manifest::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::model::{BLOB, MANIFEST, TAG, TagMeta, tag_key};
use crate::testing::TarBuilder;
use serde_json::json;
use wharf_sdk::testing::{FakeHost, sha256};

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// An uncompressed layer tar holding one file.
fn layer(content: &str) -> Vec<u8> {
    TarBuilder::new()
        .file("etc/hello.txt", content.as_bytes())
        .finish()
}

fn config(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap()
}

/// A legacy `docker save` of one image with the given layers and tags.
fn legacy_archive(layers: &[Vec<u8>], tags: &[&str]) -> (Vec<u8>, String) {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let config = config(&diff_ids);
    let config_name = format!("{}.json", hex(&sha256(&config)));
    let mut tar = TarBuilder::new();
    let mut paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let dir = format!("{:064x}", i + 1);
        tar = tar
            .dir(&dir)
            .file(&format!("{dir}/VERSION"), b"1.0")
            .file(&format!("{dir}/layer.tar"), l);
        paths.push(format!("{dir}/layer.tar"));
    }
    let manifest = json!([{"Config": config_name, "RepoTags": tags, "Layers": paths}]);
    let bytes = tar
        .file(&config_name, &config)
        .file("manifest.json", manifest.to_string().as_bytes())
        .finish();
    (bytes, sha256(&config))
}

fn import_bytes(host: &mut FakeHost, bytes: Vec<u8>) -> Result<Summary, Error> {
    let mut upload = host.upload(bytes);
    import(&mut upload, host)
}

fn tag_target(host: &FakeHost, name: &str) -> Option<String> {
    let tags: Vec<TagMeta> = host
        .repo_keys(TAG)
        .iter()
        .map(|k| model::tag_meta(&host.repo_unit(TAG, k).unwrap()).unwrap())
        .filter(|t| t.name == name)
        .collect();
    assert!(tags.len() <= 1, "one tag unit per name: {tags:?}");
    tags.first().map(|t| t.manifest.clone())
}

fn manifest_meta(host: &FakeHost, digest: &str) -> ManifestMeta {
    serde_json::from_str(&host.repo_unit(MANIFEST, digest).unwrap().metadata).unwrap()
}

#[test]
fn legacy_archive_becomes_schema2_manifest() {
    let layers = vec![layer("one"), layer("two")];
    let (bytes, config_digest) =
        legacy_archive(&layers, &["my/app:latest", "localhost:5000/my/app:v1"]);
    let mut host = FakeHost::default();
    let summary = import_bytes(&mut host, bytes.clone()).unwrap();

    let digest = tag_target(&host, "latest").unwrap();
    assert_eq!(tag_target(&host, "v1").unwrap(), digest);
    let stored = host.blob(&digest).unwrap();
    let parsed = manifest::parse(&stored, None).unwrap();
    assert_eq!(parsed.media_type, DOCKER_MANIFEST);
    let Kind::Image { config, layers: ls } = parsed.kind else {
        panic!()
    };
    assert_eq!(config.digest, config_digest);
    assert_eq!(config.media_type, DOCKER_CONFIG);
    assert_eq!(
        ls.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
        layers.iter().map(|l| sha256(l)).collect::<Vec<_>>()
    );
    assert!(ls.iter().all(|l| l.media_type == DOCKER_LAYER_TAR));
    assert_eq!(ls[0].size, layers[0].len() as u64);
    for l in &layers {
        assert_eq!(host.blob(&sha256(l)).unwrap(), *l);
    }

    let meta = manifest_meta(&host, &digest);
    assert_eq!(meta.config.as_deref(), Some(config_digest.as_str()));
    assert_eq!(meta.size, stored.len() as u64);
    assert_eq!(host.repo_keys(BLOB).len(), 3);
    assert_eq!(host.repo_unit(MANIFEST, &digest).unwrap().blobs.len(), 4);
    // 3 blobs + 1 manifest + 2 tags
    assert_eq!(summary.units_added, 6);
    assert_eq!(summary.units_removed, 0);
    assert!(
        summary.message.contains("latest, v1"),
        "{}",
        summary.message
    );
    assert!(host.progress.len() >= 2);

    // The manifest is a pure function of the archive.
    let mut again = FakeHost::default();
    import_bytes(&mut again, bytes).unwrap();
    assert_eq!(tag_target(&again, "latest").unwrap(), digest);
}

#[test]
fn legacy_symlinked_layers_are_followed_and_stored_once() {
    let shared = layer("shared");
    let diff_ids = vec![sha256(&shared), sha256(&shared)];
    let config = config(&diff_ids);
    let manifest = json!([{"Config": "cfg.json", "RepoTags": null, "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]);
    let bytes = TarBuilder::new()
        .file("aaa/layer.tar", &shared)
        .symlink("bbb/layer.tar", "../aaa/layer.tar")
        .file("cfg.json", &config)
        .file("manifest.json", manifest.to_string().as_bytes())
        .finish();
    let mut host = FakeHost::default();
    let summary = import_bytes(&mut host, bytes).unwrap();
    // No RepoTags: the image is imported untagged.
    assert!(host.repo_keys(TAG).is_empty());
    let manifests = host.repo_keys(MANIFEST);
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifest_meta(&host, &manifests[0]).layers, diff_ids);
    assert_eq!(
        summary.bytes_stored as usize,
        shared.len() + config.len() + host.blob(&manifests[0]).unwrap().len()
    );
    assert!(summary.message.contains("no tags"));
}

/// A legacy archive whose one layer, `l/layer.tar`, is `layer`, under a
/// config that expects other bytes (diff id of "something else").
fn with_a_lying_config(layer: &[u8]) -> Vec<u8> {
    let config = config(&[sha256(b"something else")]);
    let manifest = json!([{"Config": "c.json", "RepoTags": ["a:b"], "Layers": ["l/layer.tar"]}]);
    TarBuilder::new()
        .file("l/layer.tar", layer)
        .file("c.json", &config)
        .file("manifest.json", manifest.to_string().as_bytes())
        .finish()
}

#[test]
fn legacy_layer_that_does_not_match_its_diff_id_fails_the_upload() {
    let bytes = with_a_lying_config(&layer("good"));
    let mut host = FakeHost::default();
    let err = import_bytes(&mut host, bytes).unwrap_err();
    assert_eq!(err.code, "invalid-input");
    assert!(
        err.message.contains("l/layer.tar") && err.message.contains("expected"),
        "{}",
        err.message
    );
    assert!(
        host.repo.is_empty(),
        "nothing is associated after a failed upload"
    );
}

#[test]
fn legacy_config_named_by_digest_is_checked() {
    let l = layer("x");
    let config = config(&[sha256(&l)]);
    let wrong_name = format!("{}.json", "0".repeat(64));
    let manifest = json!([{"Config": wrong_name, "RepoTags": ["a:b"], "Layers": ["l.tar"]}]);
    let bytes = TarBuilder::new()
        .file("l.tar", &l)
        .file(&wrong_name, &config)
        .file("manifest.json", manifest.to_string().as_bytes())
        .finish();
    let err = import_bytes(&mut FakeHost::default(), bytes).unwrap_err();
    assert_eq!(err.code, "invalid-input");
    assert!(err.message.contains(&wrong_name), "{}", err.message);
}

#[test]
fn reimport_moves_the_tag() {
    let mut host = FakeHost::default();
    import_bytes(&mut host, legacy_archive(&[layer("a")], &["app:latest"]).0).unwrap();
    let first = tag_target(&host, "latest").unwrap();
    let summary =
        import_bytes(&mut host, legacy_archive(&[layer("b")], &["app:latest"]).0).unwrap();
    let second = tag_target(&host, "latest").unwrap();
    assert_ne!(first, second);
    assert_eq!(summary.units_removed, 1);
    assert_eq!(host.repo_keys(TAG), vec![tag_key("latest", &second)]);
    // The old manifest stays in the repository, untagged.
    assert!(host.repo_unit(MANIFEST, &first).is_some());
}

fn expect_invalid(bytes: Vec<u8>, needles: &[&str]) {
    let mut host = FakeHost::default();
    let err = import_bytes(&mut host, bytes).unwrap_err();
    assert_eq!(err.code, "invalid-input", "{}", err.message);
    for needle in needles {
        assert!(
            err.message.contains(needle),
            "{:?} lacks {needle:?}",
            err.message
        );
    }
    assert!(
        host.blobs.borrow().is_empty(),
        "nothing stored for structurally invalid input"
    );
    assert!(host.repo.is_empty());
}

#[test]
fn structurally_invalid_archives_are_refused_before_storing() {
    expect_invalid(Vec::new(), &["empty"]);
    expect_invalid(
        TarBuilder::new().file("hello", b"x").finish(),
        &["index.json", "manifest.json"],
    );
    expect_invalid(
        TarBuilder::new()
            .file("manifest.json", b"{not json")
            .finish(),
        &["manifest.json", "not valid"],
    );
    expect_invalid(
        TarBuilder::new().file("manifest.json", b"[]").finish(),
        &["no images"],
    );
    let (full, _) = legacy_archive(&[layer("a")], &["a:b"]);
    expect_invalid(full[..full.len() / 2].to_vec(), &["truncated"]);

    let cfg = config(&[sha256(b"l")]);
    let missing = json!([{"Config": "c.json", "Layers": ["nope/layer.tar"]}]);
    expect_invalid(
        TarBuilder::new()
            .file("c.json", &cfg)
            .file("manifest.json", missing.to_string().as_bytes())
            .finish(),
        &["nope/layer.tar", "not in the archive"],
    );
    let no_config = json!([{"Config": "gone.json", "Layers": []}]);
    expect_invalid(
        TarBuilder::new()
            .file("manifest.json", no_config.to_string().as_bytes())
            .finish(),
        &["gone.json"],
    );
    let count = json!([{"Config": "c.json", "Layers": []}]);
    expect_invalid(
        TarBuilder::new()
            .file("c.json", &cfg)
            .file("manifest.json", count.to_string().as_bytes())
            .finish(),
        &["1 rootfs.diff_ids", "0 layers"],
    );
    expect_invalid(
        TarBuilder::new()
            .file("c.json", b"[1,")
            .file("manifest.json", count.to_string().as_bytes())
            .finish(),
        &["c.json", "not valid JSON"],
    );
    let huge = vec![b' '; (MAX_CONFIG + 1) as usize];
    expect_invalid(
        TarBuilder::new()
            .file("c.json", &huge)
            .file("manifest.json", count.to_string().as_bytes())
            .finish(),
        &["c.json", "limit"],
    );
    let big_manifest = vec![b' '; (MAX_LAYOUT_JSON + 1) as usize];
    expect_invalid(
        TarBuilder::new()
            .file("manifest.json", &big_manifest)
            .finish(),
        &["manifest.json", "limit"],
    );
    expect_invalid(
        TarBuilder::new()
            .file_raw_name("../manifest.json", b"[]")
            .finish(),
        &["../manifest.json"],
    );
    expect_invalid(
        TarBuilder::new()
            .symlink("manifest.json", "/etc/passwd")
            .finish(),
        &["manifest.json", "outside"],
    );

    let two = json!([
        {"Config": "c.json", "RepoTags": ["a:latest"], "Layers": ["l"]},
        {"Config": "d.json", "RepoTags": ["b:latest"], "Layers": ["l"]}
    ]);
    expect_invalid(
        TarBuilder::new()
            .file("l", b"l")
            .file("c.json", &cfg)
            .file("d.json", &cfg)
            .file("manifest.json", two.to_string().as_bytes())
            .finish(),
        &["\"latest\"", "two different images"],
    );
}

// ---- OCI layout ----

struct Layout {
    tar: TarBuilder,
}

impl Layout {
    fn new() -> Self {
        Layout {
            tar: TarBuilder::new().file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        }
    }

    fn blob(&mut self, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let tar = std::mem::take(&mut self.tar);
        self.tar = tar.file(&format!("blobs/sha256/{}", hex(&digest)), bytes);
        digest
    }

    /// An OCI image with one layer; returns (manifest digest, size, layer digest).
    fn image(&mut self, content: &str) -> (String, u64, String) {
        let l = layer(content);
        let ld = self.blob(&l);
        let c = config(std::slice::from_ref(&ld));
        let cd = self.blob(&c);
        let m = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": c.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": l.len()}]
        })
        .to_string();
        (self.blob(m.as_bytes()), m.len() as u64, ld)
    }

    fn finish(self, index: serde_json::Value) -> Vec<u8> {
        self.tar
            .file("index.json", index.to_string().as_bytes())
            .finish()
    }
}

#[test]
fn oci_layout_with_nested_index_and_tags() {
    let mut layout = Layout::new();
    let (amd, amd_size, amd_layer) = layout.image("amd64");
    let (arm, arm_size, _) = layout.image("arm64");
    let (single, single_size, _) = layout.image("single");
    let nested = json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd, "size": amd_size, "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm, "size": arm_size, "platform": {"architecture": "arm64", "os": "linux"}}
        ]
    })
    .to_string();
    let nested_digest = layout.blob(nested.as_bytes());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": OCI_INDEX, "digest": nested_digest, "size": nested.len(),
             "annotations": {"io.containerd.image.name": "docker.io/my/app:multi", "org.opencontainers.image.ref.name": "multi"}},
            {"mediaType": OCI_MANIFEST, "digest": single, "size": single_size,
             "annotations": {"org.opencontainers.image.ref.name": "1.0"}}
        ]
    });
    let mut host = FakeHost::default();
    let summary = import_bytes(&mut host, layout.finish(index)).unwrap();

    assert_eq!(tag_target(&host, "multi").unwrap(), nested_digest);
    assert_eq!(tag_target(&host, "1.0").unwrap(), single);
    let list = manifest_meta(&host, &nested_digest);
    assert_eq!(list.media_type, OCI_INDEX);
    assert_eq!(list.manifests, vec![amd.clone(), arm.clone()]);
    assert_eq!(list.config, None);
    let amd_meta = manifest_meta(&host, &amd);
    assert_eq!(amd_meta.platform.unwrap()["architecture"], "amd64");
    assert_eq!(amd_meta.layers, vec![amd_layer.clone()]);
    assert_eq!(
        host.blob(&nested_digest).unwrap(),
        nested.as_bytes(),
        "indexes are stored as-is"
    );
    assert_eq!(host.repo_keys(MANIFEST).len(), 4);
    assert_eq!(host.repo_keys(BLOB).len(), 6);
    assert_eq!(summary.units_added, 4 + 6 + 2);
    let blob: serde_json::Value =
        serde_json::from_str(&host.repo_unit(BLOB, &amd_layer).unwrap().metadata).unwrap();
    assert_eq!(blob["media_type"], "application/vnd.oci.image.layer.v1.tar");
}

#[test]
fn oci_layout_is_preferred_over_manifest_json() {
    let mut layout = Layout::new();
    let (m, size, _) = layout.image("x");
    layout.tar = std::mem::take(&mut layout.tar).file("manifest.json", b"this would not parse");
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": m, "size": size,
        "annotations": {"io.containerd.image.name": "localhost:5000/x:7"}}]});
    let mut host = FakeHost::default();
    import_bytes(&mut host, layout.finish(index)).unwrap();
    assert_eq!(tag_target(&host, "7").unwrap(), m);
}

#[test]
fn oci_layout_errors() {
    let mut layout = Layout::new();
    let (m, size, _) = layout.image("x");
    let base = std::mem::take(&mut layout.tar);

    let wrong_size =
        json!({"manifests": [{"mediaType": OCI_MANIFEST, "digest": m, "size": size + 1}]});
    expect_invalid(
        Layout { tar: base.clone() }.finish(wrong_size),
        &["bytes", &m],
    );

    let missing = sha256(b"missing");
    let dangling =
        json!({"manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 7}]});
    expect_invalid(
        Layout { tar: base.clone() }.finish(dangling),
        &["index.json", &missing, "not in the archive"],
    );

    expect_invalid(
        Layout { tar: base.clone() }.finish(json!({"manifests": []})),
        &["no manifests"],
    );
    expect_invalid(
        TarBuilder::new()
            .file("index.json", b"{\"manifests\": 3}")
            .finish(),
        &["index.json", "not valid"],
    );
    let bad_digest = json!({"manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:../../etc", "size": 1}]});
    expect_invalid(
        Layout { tar: base.clone() }.finish(bad_digest),
        &["sha256 digest"],
    );
    expect_invalid(
        TarBuilder::new()
            .file("oci-layout", br#"{"imageLayoutVersion":"2.0.0"}"#)
            .file("index.json", b"{}")
            .finish(),
        &["oci-layout", "2.0.0"],
    );
}

#[test]
fn oci_layer_with_wrong_content_fails() {
    // A layer blob whose file name is not the digest of its bytes.
    let l = layer("real");
    let fake = sha256(b"claimed");
    let c = config(std::slice::from_ref(&fake));
    let cd = sha256(&c);
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "x", "digest": cd, "size": c.len()},
        "layers": [{"mediaType": "y", "digest": fake, "size": l.len()}]})
    .to_string();
    let md = sha256(m.as_bytes());
    let bytes = TarBuilder::new()
        .file(&format!("blobs/sha256/{}", hex(&fake)), &l)
        .file(&format!("blobs/sha256/{}", hex(&cd)), &c)
        .file(&format!("blobs/sha256/{}", hex(&md)), m.as_bytes())
        .file(
            "index.json",
            json!({"manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": m.len()}]})
                .to_string()
                .as_bytes(),
        )
        .finish();
    let mut host = FakeHost::default();
    let err = import_bytes(&mut host, bytes).unwrap_err();
    assert_eq!(err.code, "invalid-input");
    assert!(err.message.contains(&fake), "{}", err.message);
    assert!(host.repo.is_empty());
}

#[test]
fn config_names() {
    let hex = "ab".repeat(32);
    assert_eq!(
        digest_of_name(&format!("{hex}.json")),
        Some(format!("sha256:{hex}"))
    );
    assert_eq!(
        digest_of_name(&format!("blobs/sha256/{hex}")),
        Some(format!("sha256:{hex}"))
    );
    assert_eq!(digest_of_name("config.json"), None);
    assert_eq!(digest_of_name(&hex), None);
}

/// Archives written by real tools (`docker save`, `skopeo copy ...
/// docker-archive:/oci-archive:`): point WHARF_DOCKER_ARCHIVES at a
/// directory of `*.tar` and run with `--ignored`.
#[test]
#[ignore]
fn real_archives() {
    let dir = std::env::var("WHARF_DOCKER_ARCHIVES").expect("set WHARF_DOCKER_ARCHIVES");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "tar") {
            continue;
        }
        let mut host = FakeHost::default();
        let summary = import_bytes(&mut host, std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        println!("{}: {}", path.display(), summary.message);
        for key in host.repo_keys(MANIFEST) {
            let meta = manifest_meta(&host, &key);
            let parsed =
                manifest::parse(&host.blob(&key).unwrap(), Some(&meta.media_type)).unwrap();
            for child in parsed.children() {
                assert!(
                    host.blob(&child.digest).is_some(),
                    "{} needs {}",
                    key,
                    child.digest
                );
            }
        }
        assert!(!host.repo_keys(TAG).is_empty());
        seen += 1;
    }
    assert!(seen > 0);
}

/// A layer of about `mib` MiB: large enough to be stored during the scan.
fn big_layer(mib: usize) -> Vec<u8> {
    let content: Vec<u8> = (0..mib << 20).map(|i| (i % 251) as u8).collect();
    TarBuilder::new().file("data.bin", &content).finish()
}

#[test]
fn large_layers_are_stored_during_the_scan_and_checked_against_the_config_after() {
    let big = big_layer(2);
    assert!(big.len() as u64 >= STORE_EARLY_FROM);
    let (bytes, _) = legacy_archive(&[layer("small"), big.clone()], &["big:1"]);
    let mut host = FakeHost::default();
    import_bytes(&mut host, bytes).unwrap();
    let m = tag_target(&host, "1").expect("tagged");
    assert_eq!(manifest_meta(&host, &m).layers[1], sha256(&big));

    // The same layer under a config that expects other bytes: stored early,
    // refused when checked, nothing associated.
    let bytes = with_a_lying_config(&big);
    let mut host = FakeHost::default();
    let err = import_bytes(&mut host, bytes).unwrap_err();
    assert_eq!(err.code, "invalid-input");
    assert!(
        err.message.contains("l/layer.tar")
            && err.message.contains(&sha256(b"something else"))
            && err.message.contains("digest mismatch"),
        "{}",
        err.message
    );
    assert!(host.repo.is_empty());
}

#[test]
fn a_large_oci_blob_whose_name_is_not_its_digest_fails_as_the_scan_meets_it() {
    let big = big_layer(2);
    let claimed = sha256(b"claimed");
    // Nothing else in the archive: the mismatch is found before any
    // index.json or manifest is looked at.
    let bytes = TarBuilder::new()
        .file(&format!("blobs/sha256/{}", hex(&claimed)), &big)
        .finish();
    let mut host = FakeHost::default();
    let err = import_bytes(&mut host, bytes).unwrap_err();
    assert_eq!(err.code, "invalid-input");
    assert!(
        err.message.contains(&claimed) && err.message.contains("blobs/sha256/"),
        "{}",
        err.message
    );
}
