//! Fuzz targets for the plugin's parsers of untrusted input (docs/fuzzing.md):
//! `docker save` archives (the tar scanner and the import behind it),
//! manifests and indexes, registry paths, and `WWW-Authenticate` challenges.
//! Each runs for `WHARF_FUZZ_SECONDS` on its corpus in `fuzz/corpus/<target>/`
//! and on mutants of it.

use crate::archive::Archive;
use crate::auth::{token_from_body, token_url};
use crate::manifest::{self, Kind, docker_schema2, is_manifest_type};
use crate::reference::{is_sha256_digest, is_valid_name};
use crate::routes::{Route, parse_page, parse_path};
use crate::testing::TarBuilder;
use crate::upload;
use std::io::Cursor;
use wharf_fuzz::proptest::prelude::*;
use wharf_fuzz::proptest::string::string_regex;
use wharf_sdk::challenge::parse as parse_challenge;
use wharf_sdk::percent::decode as percent_decode;
use wharf_sdk::testing::FakeHost;

// ------------------------------------------------------------------ tar --

/// Recompute the checksum of every block that looks like a ustar/GNU header,
/// so mutated header fields reach the parser instead of failing the checksum.
fn fix_checksums(bytes: &mut [u8]) {
    for block in bytes.chunks_exact_mut(512) {
        if &block[257..262] != b"ustar" {
            continue;
        }
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }
}

/// Scan `bytes` and check what a scan promises: members lie inside the
/// archive, their names are normalized, and every one can be found and read.
fn check_scan(bytes: &[u8]) -> Result<(), TestCaseError> {
    let len = bytes.len() as u64;
    let mut visited = Vec::new();
    let mut reader = Cursor::new(bytes);
    let scanned = Archive::scan_visiting(&mut reader, |_, path, range| {
        visited.push((path.to_string(), range));
        Ok(())
    });
    for (path, range) in &visited {
        prop_assert!(
            range
                .offset
                .checked_add(range.size)
                .is_some_and(|end| end <= len),
            "member {path:?} at {range:?} is outside the {len} byte archive"
        );
        prop_assert!(
            !path.is_empty()
                && !path.starts_with('/')
                && path.split('/').all(|s| !matches!(s, "" | "." | "..")),
            "member name {path:?} is not normalized"
        );
    }
    if let Ok(archive) = scanned {
        for (path, range) in &visited {
            prop_assert_eq!(
                archive.file(path).ok(),
                Some(*range),
                "lookup of {:?}",
                path
            );
            let read = archive.read(&mut reader, path, len);
            prop_assert_eq!(read.map(|b| b.len() as u64).ok(), Some(range.size));
        }
    }
    Ok(())
}

fn check_archive(input: &[u8]) -> Result<(), TestCaseError> {
    let mut fixed = input.to_vec();
    fix_checksums(&mut fixed);
    for bytes in [input, &fixed[..]] {
        check_scan(bytes)?;
        // The whole import on top of the scanner: it may refuse, never panic.
        let mut host = FakeHost::default();
        let mut upload = host.upload(bytes.to_vec());
        let _ = upload::import(&mut upload, &mut host);
    }
    Ok(())
}

/// Small archives of files, directories and links with awkward names: the
/// tar writer refuses `..` and absolute member names, so only raw-named
/// files and link targets carry them.
fn generated_archives() -> BoxedStrategy<Vec<u8>> {
    let core = "([a-z]{1,3}|blobs/sha256/[0-9a-f]{4}|manifest\\.json|index\\.json|layer\\.tar)(/[a-z]{1,3}|/\\.){0,2}";
    let name = string_regex(&format!("(\\./)?{core}")).unwrap();
    let hostile = string_regex(&format!("(\\.\\./|/|\\./)?{core}(/\\.\\.)?")).unwrap();
    let entry = (
        0u8..5,
        name,
        hostile,
        prop::collection::vec(any::<u8>(), 0..40),
    );
    prop::collection::vec(entry, 1..6)
        .prop_map(|entries| {
            let mut tar = TarBuilder::new();
            for (kind, path, hostile, data) in entries {
                tar = match kind {
                    0 => tar.file(&path, &data),
                    1 => tar.dir(&path),
                    2 => tar.symlink(&path, &hostile),
                    3 => tar.hardlink(&path, &hostile),
                    _ => tar.file_raw_name(&hostile, &data),
                };
            }
            tar.finish()
        })
        .boxed()
}

#[test]
fn fuzz_docker_save_archives() {
    let dictionary: &[&[u8]] = &[
        b"manifest.json",
        b"index.json",
        b"oci-layout",
        b"blobs/sha256/",
        b"layer.tar",
        b"../",
        b"/",
        b"ustar\0",
        b"ustar  \0",
        b"././@LongLink",
        b"PaxHeader",
        b"path=",
        b"linkpath=",
        b"size=",
        b"77777777777",
        b"\"Layers\":[",
        b"\"Config\":",
        b"\"RepoTags\":[\"",
    ];
    wharf_fuzz::run(
        "docker-save",
        dictionary,
        generated_archives(),
        check_archive,
    );
}

// ------------------------------------------------------------- manifests --

fn check_manifest(bytes: &[u8]) -> Result<(), TestCaseError> {
    for declared in [
        None,
        Some(manifest::DOCKER_MANIFEST),
        Some(manifest::OCI_INDEX),
        Some("Application/Vnd.Docker.Distribution.Manifest.List.V2+json; x=y"),
        Some("application/json"),
    ] {
        let Ok(parsed) = manifest::parse(bytes, declared) else {
            continue;
        };
        prop_assert!(
            is_manifest_type(&parsed.media_type),
            "accepted a {:?}",
            parsed.media_type
        );
        for d in parsed.children() {
            prop_assert!(is_sha256_digest(&d.digest), "kept digest {:?}", d.digest);
        }
        // An image rebuilt as Docker schema2 parses back to the same content.
        if let Kind::Image { config, layers } = &parsed.kind {
            let rebuilt = manifest::parse(&docker_schema2(config, layers), None)
                .map_err(TestCaseError::fail)?;
            let Kind::Image {
                config: config2,
                layers: layers2,
            } = rebuilt.kind
            else {
                return Err(TestCaseError::fail("schema2 image parsed as a list"));
            };
            let key = |d: &manifest::Descriptor| (d.digest.clone(), d.size, d.media_type.clone());
            prop_assert_eq!(key(config), key(&config2));
            prop_assert_eq!(
                layers.iter().map(key).collect::<Vec<_>>(),
                layers2.iter().map(key).collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}

#[test]
fn fuzz_manifests_and_indexes() {
    let dictionary: &[&[u8]] = &[
        b"\"schemaVersion\":2,",
        b"\"mediaType\":\"application/vnd.oci.image.index.v1+json\",",
        b"\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",",
        b"\"manifests\":[",
        b"\"layers\":[",
        b"\"config\":{",
        b"\"digest\":\"sha256:",
        b"\"size\":",
        b"-1",
        b"1e400",
        b"18446744073709551616",
        b"null",
        b"\\u0000",
        b"{}",
        b"[]",
    ];
    let digest = "\"(sha256:[0-9a-f]{64}|sha256:[0-9a-fA-F]{0,65}|sha512:[0-9a-f]{3}|)\"";
    let size = "(0|1|-1|18446744073709551615|18446744073709551616|1\\.5|\"7\"|null)";
    let descriptor =
        format!("\\{{\"mediaType\":\"[a-z./+]{{0,12}}\",\"digest\":{digest},\"size\":{size}\\}}");
    let generated = format!(
        "\\{{(\"schemaVersion\":[0-3],)?(\"mediaType\":\"application/vnd\\.(oci|docker)[a-z.+0-9]{{0,30}}\",)?(\"config\":{descriptor},)?\"(layers|manifests)\":\\[({descriptor},){{0,2}}{descriptor}?\\]\\}}"
    );
    wharf_fuzz::run_matching("manifest", dictionary, &generated, check_manifest);
}

// ------------------------------------------------------- registry paths --

/// The path a route was parsed from, in its plain form.
fn path_of(route: &Route) -> String {
    match route {
        Route::Base => "/v2/".to_string(),
        Route::Catalog => "/v2/_catalog".to_string(),
        Route::Tags { name } => format!("/v2/{name}/tags/list"),
        Route::Manifest { name, reference } => format!("/v2/{name}/manifests/{reference}"),
        Route::Blob { name, digest } => format!("/v2/{name}/blobs/{digest}"),
        Route::Uploads { name } => format!("/v2/{name}/blobs/uploads/"),
        Route::Upload { name, id } => format!("/v2/{name}/blobs/uploads/{id}"),
        Route::Referrers { name, digest } => format!("/v2/{name}/referrers/{digest}"),
    }
}

fn check_registry_path(bytes: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(bytes);
    if let Some(decoded) = percent_decode(&text) {
        prop_assert!(decoded.len() <= text.len());
    }
    let _ = parse_page(&text);
    let Ok(route) = parse_path(&text) else {
        return Ok(());
    };
    let name = match &route {
        Route::Base | Route::Catalog => None,
        Route::Tags { name }
        | Route::Manifest { name, .. }
        | Route::Blob { name, .. }
        | Route::Uploads { name }
        | Route::Upload { name, .. }
        | Route::Referrers { name, .. } => Some(name),
    };
    if let Some(name) = name {
        prop_assert!(is_valid_name(name), "route names repository {name:?}");
    }
    // Nothing is lost: a plain path is the route written out again (up to
    // the optional trailing `/` of the base and of the uploads route).
    if !text.contains('%') {
        let plain = |p: &str| p.trim_end_matches('/').to_string();
        prop_assert_eq!(plain(&path_of(&route)), plain(&text));
        prop_assert_eq!(parse_path(&path_of(&route)).ok(), Some(route));
    }
    Ok(())
}

#[test]
fn fuzz_registry_paths() {
    let dictionary: &[&[u8]] = &[
        b"/v2/",
        b"/manifests/",
        b"/blobs/",
        b"/blobs/uploads/",
        b"/tags/list",
        b"/referrers/",
        b"_catalog",
        b"sha256:",
        b"%2F",
        b"%2e%2e",
        b"%",
        b"%ff",
        b"__",
        b"--",
        b"?n=1&last=",
    ];
    wharf_fuzz::run_matching(
        "registry-path",
        dictionary,
        "(/v2)?(/([a-z0-9]|[._-]{1,2}|%[0-9a-fA-F]{2}|%){0,6}){0,5}(/manifests/|/blobs/|/tags/list|/blobs/uploads/?|/referrers/)?[a-zA-Z0-9:._%/-]{0,72}",
        check_registry_path,
    );
}

// --------------------------------------------------- WWW-Authenticate --

/// A challenge written out with every value quoted and escaped.
fn render(scheme: &str, params: &std::collections::BTreeMap<String, String>) -> String {
    let params: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{scheme} {}", params.join(", "))
}

fn check_challenge(bytes: &[u8]) -> Result<(), TestCaseError> {
    let _ = token_from_body(bytes);
    let header = String::from_utf8_lossy(bytes);
    let Some(challenge) = parse_challenge(&header) else {
        return Ok(());
    };
    let scheme = &challenge.scheme;
    prop_assert!(
        !scheme.is_empty()
            && !scheme.chars().any(char::is_whitespace)
            && *scheme == scheme.to_ascii_lowercase(),
        "scheme {scheme:?}"
    );
    for key in challenge.params.keys() {
        prop_assert_eq!(key, &key.to_ascii_lowercase());
    }
    // The parse is stable: written out canonically, it parses the same.
    let again = parse_challenge(&render(scheme, &challenge.params));
    prop_assert_eq!(again.as_ref(), Some(&challenge));
    // A token URL is the realm plus an escaped query.
    if let Ok(url) = token_url(&challenge, "repository:library/busybox:pull") {
        let realm = &challenge.params["realm"];
        let query = url.strip_prefix(realm.as_str()).unwrap_or_default();
        prop_assert!(
            query.starts_with(['?', '&'])
                && query[1..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%&=".contains(&b)),
            "token URL {url:?} from realm {realm:?}"
        );
    }
    Ok(())
}

#[test]
fn fuzz_www_authenticate() {
    let dictionary: &[&[u8]] = &[
        b"Bearer ",
        b"Basic ",
        b"realm=",
        b"realm=\"https://",
        b"service=",
        b"scope=",
        b"error=\"insufficient_scope\"",
        b"\"",
        b"\\",
        b"\\\"",
        b",",
        b"=",
        b" ",
        b"\t",
        b"\xc2\xa0",
    ];
    wharf_fuzz::run_matching(
        "www-authenticate",
        dictionary,
        "[A-Za-z]{0,8}([ \t,]{1,2}[A-Za-z_]{0,7}[ ]?=[ ]?(\"([^\"\\\\]|\\\\.){0,12}\"?|[^,\" ]{0,12})){0,4}[ ,]?",
        check_challenge,
    );
}
