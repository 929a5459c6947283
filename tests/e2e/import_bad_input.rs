//! Hostile and broken `docker save` archives: each import fails as a task in
//! state `error` with a message that says what is wrong, and the repository
//! keeps exactly the content it had.

use crate::registry_support::*;
use crate::support::*;
use serde_json::json;

/// Import `bytes` into a repository that already holds busybox, both ways
/// (a resumable upload imported afterwards, and the body of a streaming
/// import); each import must fail with a message containing every one of
/// `needles`, and leave the repository (and what it serves) as it was.
fn refused(bytes: &[u8], needles: &[&str]) {
    let s = Server::start();
    docker_repo(&s, "app", "test/app", json!({}));
    s.import_and_publish("app", &images_dir().join("busybox.tar"));
    let before = content(&s, "app");
    assert_eq!(tag_names(&before), ["latest"]);

    let tmp = scratch();
    let file = tmp.path().join("bad.tar");
    std::fs::write(&file, bytes).unwrap();
    let uploaded = import(&s, "app", &file);
    let streamed = s.import_stream("app", "", bytes.to_vec());
    for (how, t) in [("upload", uploaded), ("stream", streamed)] {
        let message = failed_with(&t);
        eprintln!("import ({how}) refused: {message}");
        for needle in needles {
            assert!(
                message.contains(needle),
                "error message ({how}) lacks {needle:?}: {message}"
            );
        }
    }
    assert_eq!(content(&s, "app"), before);
    // A publish after the failure publishes the same content.
    publish(&s, "app");
    let r = request(&s, "GET", "/v2/test/app/tags/list", &[]);
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["tags"],
        json!(["latest"])
    );
}

fn busybox_archive() -> Vec<u8> {
    std::fs::read(images_dir().join("busybox.tar")).unwrap()
}

/// Offset of the data of member `name` in a tar archive (ustar names only).
fn member_data_offset(tar: &[u8], name: &str) -> usize {
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at] != 0 {
        let header = &tar[at..at + 512];
        let end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let size_field = std::str::from_utf8(&header[124..136]).unwrap();
        let size =
            usize::from_str_radix(size_field.trim_matches(|c| c == '\0' || c == ' '), 8).unwrap();
        if &header[..end] == name.as_bytes() {
            return at + 512;
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    panic!("{name} is not in the archive");
}

#[test]
fn a_corrupted_tar_header_is_refused() {
    let mut bytes = busybox_archive();
    // Garble the first member's header: its checksum no longer matches.
    for b in &mut bytes[..512] {
        *b ^= 0x5a;
    }
    refused(&bytes, &["not a valid tar archive"]);
}

#[test]
fn a_truncated_archive_is_refused() {
    let bytes = busybox_archive();
    refused(&bytes[..bytes.len() / 2], &["truncated"]);
}

#[test]
fn an_empty_upload_is_refused() {
    refused(&[], &["empty"]);
}

#[test]
fn a_member_with_a_dotdot_path_is_refused() {
    let bytes = Tar::new()
        .file("manifest.json", b"[]")
        .file("../evil", b"x")
        .finish();
    refused(&bytes, &["../evil", "`..`"]);
}

#[test]
fn a_member_with_an_absolute_path_is_refused() {
    let bytes = Tar::new()
        .file("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .file("manifest.json", b"[]")
        .finish();
    refused(&bytes, &["/etc/passwd", "absolute path"]);
}

#[test]
fn a_symlink_escaping_the_archive_is_refused() {
    let bytes = Tar::new()
        .file(
            "manifest.json",
            br#"[{"Config":"c.json","Layers":["l/layer.tar"]}]"#,
        )
        .file("c.json", br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#)
        .symlink("l/layer.tar", "../../../etc/shadow")
        .finish();
    refused(&bytes, &["l/layer.tar", "points outside the archive"]);
}

#[test]
fn a_layer_whose_digest_is_not_the_configs_diff_id_is_refused() {
    // The real archive with one byte of the layer's file content changed.
    let mut bytes = busybox_archive();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::process::Command::new("tar")
            .args(["-xOf"])
            .arg(images_dir().join("busybox.tar"))
            .arg("manifest.json")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let layer_path = manifest[0]["Layers"][0].as_str().unwrap();
    let diff_id = format!(
        "sha256:{}",
        layer_path
            .trim_end_matches(".tar")
            .rsplit('/')
            .next()
            .unwrap()
    );
    let at = member_data_offset(&bytes, layer_path);
    bytes[at + 600] ^= 0x01;
    refused(&bytes, &["layer", &diff_id, "digest"]);
}

#[test]
fn a_manifest_json_naming_a_missing_file_is_refused() {
    let bytes = Tar::new()
        .file(
            "manifest.json",
            br#"[{"Config":"missing.json","RepoTags":["x:latest"],"Layers":[]}]"#,
        )
        .finish();
    refused(&bytes, &["missing.json", "not in the archive"]);
}

#[test]
fn a_100_mb_manifest_json_is_refused_without_being_read() {
    let mut doc = Vec::with_capacity(100 << 20);
    doc.extend_from_slice(b"[{\"Config\":\"c.json\",\"Layers\":[],\"Pad\":\"");
    doc.resize((100 << 20) - 3, b'a');
    doc.extend_from_slice(b"\"}]");
    let bytes = Tar::new().file("manifest.json", &doc).finish();
    refused(&bytes, &["manifest.json", "byte limit"]);
}
