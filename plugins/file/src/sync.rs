//! The importer's sync: mirror the files a remote PULP_MANIFEST lists.
//!
//! The plugin fetches and parses the manifest; the host downloads the files
//! (in parallel, verifying each sha256 while it streams, skipping what is
//! already stored). The repository then holds exactly the manifest's files.
//! Unit changes commit only if the whole sync succeeds, so a failed download
//! leaves the repository as it was (and the files that did arrive stay
//! stored for the next attempt).

use crate::manifest::{self, Entry};
use crate::unit::{FILE, FileMeta};
use serde::Deserialize;
use std::collections::BTreeSet;
use wharf_sdk::fetch::BlobDownload;
use wharf_sdk::host::Host;
use wharf_sdk::log::Level;
use wharf_sdk::paging::list_all;
use wharf_sdk::{Error, Summary, percent};

/// Largest manifest the plugin reads (the host's own cap on fetched bodies).
const MAX_MANIFEST: u64 = 64 << 20;
/// Files per `fetch-blobs` call: enough to keep the host's parallel
/// downloads busy, few enough to report progress and notice cancels often.
const BATCH: usize = 32;
/// Failures named in the error of a failed sync.
const FAILURES_SHOWN: usize = 5;

#[derive(Debug, Default, Deserialize)]
struct ImporterConfig {
    feed: Option<String>,
}

/// Where a feed's manifest and files are.
#[derive(Debug, PartialEq, Eq)]
pub struct Feed {
    /// The URL of PULP_MANIFEST.
    pub manifest_url: String,
    /// The manifest's directory, ending in `/`; file paths are relative to it.
    pub base: String,
}

impl Feed {
    /// The URL of a file the manifest lists.
    pub fn file_url(&self, relative_path: &str) -> String {
        format!("{}{}", self.base, percent::encode_path(relative_path))
    }
}

/// Understand a feed URL: the URL of a PULP_MANIFEST, or of a directory
/// (ending in `/`) holding one.
pub fn parse_feed(feed: &str) -> Result<Feed, Error> {
    let bad = |why: &str| Error::invalid(format!("feed {feed:?} {why}"));
    let url = feed.split('#').next().unwrap_or_default();
    let (url, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (url, None),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("is not an http:// or https:// URL"))?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(bad("is not an http:// or https:// URL"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad("names no host"));
    }
    if feed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace or control characters"));
    }
    let dir = &path[..=path.rfind('/').expect("path starts with '/'")];
    let base = format!("{scheme}://{authority}{dir}");
    let manifest = if path.ends_with('/') {
        format!("{base}{}", manifest::FILE_NAME)
    } else {
        format!("{scheme}://{authority}{path}")
    };
    let manifest_url = match query {
        Some(q) => format!("{manifest}?{q}"),
        None => manifest,
    };
    Ok(Feed { manifest_url, base })
}

fn feed_of(importer_config: &str) -> Result<Feed, Error> {
    let config: ImporterConfig = wharf_sdk::json::settings(importer_config)
        .map_err(|e| Error::invalid(format!("importer settings are not valid: {e}")))?;
    let feed = config.feed.filter(|f| !f.is_empty()).ok_or_else(|| {
        Error::invalid(
            r#"the repository has no feed to sync from: set importer_config {"feed": "http://host/path/PULP_MANIFEST"}"#,
        )
    })?;
    parse_feed(&feed)
}

/// Mirror the feed of the current repository.
pub fn run<H: Host>(host: &mut H, importer_config: &str) -> Result<Summary, Error> {
    let feed = feed_of(importer_config)?;
    let url = &feed.manifest_url;
    host.progress(0, 0, 0, 0, "fetching PULP_MANIFEST");
    let response = host.get(url, &[], MAX_MANIFEST)?;
    let (status, body) = (response.status, response.body);
    if !(200..300).contains(&status) {
        return Err(Error::new(
            "fetch-failed",
            format!("GET {url} answered HTTP {status}"),
        ));
    }
    let entries = manifest::parse(&body)
        .map_err(|e| Error::invalid(format!("{url} is not a valid PULP_MANIFEST: {e}")))?;
    let total_bytes: u64 = entries.iter().map(|e| e.size).sum();
    host.log(
        Level::Info,
        &format!("{url} lists {} files, {total_bytes} bytes", entries.len()),
    );

    download(host, &feed, &entries, total_bytes)?;

    let wanted: BTreeSet<String> = entries.iter().map(|e| FileMeta::from(e).key()).collect();
    let held: BTreeSet<String> = list_all(host, FILE)?.into_iter().map(|u| u.key).collect();
    let mut removed = 0;
    for key in held.difference(&wanted) {
        if host.remove_unit(FILE, key)? {
            removed += 1;
        }
    }
    let mut added = 0;
    for entry in &entries {
        let meta = FileMeta::from(entry);
        if !held.contains(&meta.key()) {
            host.add_unit(&meta.to_unit())?;
            added += 1;
        }
    }
    Ok(Summary {
        units_added: added,
        units_removed: removed,
        // The host counts the bytes it really downloaded and reports the
        // larger of the two.
        bytes_stored: 0,
        message: format!(
            "mirrored {} files from {url}: {added} added, {removed} removed",
            entries.len()
        ),
    })
}

/// Have the host download every listed file (stored ones are skipped), and
/// check each against the manifest's size too.
fn download<H: Host>(
    host: &mut H,
    feed: &Feed,
    entries: &[Entry],
    total_bytes: u64,
) -> Result<(), Error> {
    let total = entries.len() as u64;
    let (mut done, mut bytes_done) = (0u64, 0u64);
    let mut failures: Vec<String> = Vec::new();
    host.progress(0, total, 0, total_bytes, "downloading files");
    for batch in entries.chunks(BATCH) {
        let downloads: Vec<BlobDownload> = batch
            .iter()
            .map(|e| BlobDownload {
                url: feed.file_url(&e.relative_path),
                headers: Vec::new(),
                digest: e.digest.clone(),
                // The manifest's size: the host reads no more than this.
                size: Some(e.size),
            })
            .collect();
        let results = host.fetch_blobs(&downloads);
        if results.len() != batch.len() {
            return Err(Error::new(
                "host",
                format!(
                    "fetch-blobs answered {} results for {} downloads",
                    results.len(),
                    batch.len()
                ),
            ));
        }
        for (entry, result) in batch.iter().zip(results) {
            let path = &entry.relative_path;
            match result.map(|digest| host.stat(&digest)) {
                Err(e) => failures.push(format!("{path}: {}", e.message)),
                Ok(Some(size)) if size == entry.size => {}
                Ok(got) => failures.push(format!(
                    "{path}: the manifest says {} bytes, the file has {}",
                    entry.size,
                    got.map_or("none".to_string(), |n| n.to_string())
                )),
            }
            done += 1;
            bytes_done += entry.size;
        }
        host.progress(done, total, bytes_done, total_bytes, "downloading files");
    }
    if failures.is_empty() {
        return Ok(());
    }
    let shown = failures[..failures.len().min(FAILURES_SHOWN)].join("; ");
    let more = match failures.len().saturating_sub(FAILURES_SHOWN) {
        0 => String::new(),
        n => format!("; and {n} more"),
    };
    Err(Error::new(
        "download-failed",
        format!(
            "{} of {total} files could not be mirrored, so the repository is unchanged: {shown}{more}",
            failures.len()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::AddFile;
    use std::collections::HashMap;
    use wharf_sdk::testing::{FakeHost, sha256};

    #[test]
    fn feeds_name_the_manifest_and_its_directory() {
        let f = parse_feed("http://h:8000/path/to/PULP_MANIFEST").unwrap();
        assert_eq!(f.manifest_url, "http://h:8000/path/to/PULP_MANIFEST");
        assert_eq!(f.base, "http://h:8000/path/to/");
        assert_eq!(f.file_url("a b/c.iso"), "http://h:8000/path/to/a%20b/c.iso");

        let f = parse_feed("https://h/repo/").unwrap();
        assert_eq!(f.manifest_url, "https://h/repo/PULP_MANIFEST");
        assert_eq!(f.base, "https://h/repo/");

        let f = parse_feed("http://h").unwrap();
        assert_eq!(f.manifest_url, "http://h/PULP_MANIFEST");
        assert_eq!(f.base, "http://h/");

        let f = parse_feed("http://h/m/MANIFEST.csv?token=1#frag").unwrap();
        assert_eq!(f.manifest_url, "http://h/m/MANIFEST.csv?token=1");
        assert_eq!(f.base, "http://h/m/");
    }

    #[test]
    fn refuses_feeds_that_are_not_http() {
        for feed in [
            "ftp://h/x",
            "/local/PULP_MANIFEST",
            "http:///x",
            "http://h/a b",
        ] {
            assert_eq!(
                parse_feed(feed).unwrap_err().code,
                "invalid-input",
                "{feed}"
            );
        }
        let e = feed_of("{}").unwrap_err();
        assert!(e.message.contains("no feed"), "{}", e.message);
        assert!(feed_of(r#"{"feed": 3}"#).is_err());
    }

    /// A feed at http://feed/repo/ serving `files` and their manifest.
    fn feed_host(files: &[(&str, &[u8])]) -> FakeHost {
        let mut served: HashMap<String, Vec<u8>> = HashMap::new();
        let mut manifest = String::new();
        for (path, bytes) in files {
            let hex = sha256(bytes)["sha256:".len()..].to_string();
            manifest.push_str(&format!("{path},{hex},{}\n", bytes.len()));
            served.insert(
                format!("http://feed/repo/{}", percent::encode_path(path)),
                bytes.to_vec(),
            );
        }
        served.insert(
            "http://feed/repo/PULP_MANIFEST".into(),
            manifest.into_bytes(),
        );
        FakeHost::serving(move |url| match served.get(url) {
            Some(body) => (200, body.clone()),
            None => (404, b"not found".to_vec()),
        })
    }

    const CONFIG: &str = r#"{"feed":"http://feed/repo/PULP_MANIFEST"}"#;

    #[test]
    fn mirrors_the_manifest() {
        let mut host = feed_host(&[("a.txt", b"alpha"), ("dir/b c.bin", b"beta")]);
        // Already held: one file that stays, one that the feed dropped.
        host.add_file(&FileMeta {
            relative_path: "old".into(),
            digest: sha256(b"old"),
            size: 3,
        });
        let s = run(&mut host, CONFIG).unwrap();
        assert_eq!((s.units_added, s.units_removed), (2, 1));
        assert_eq!(
            host.repo_keys(FILE),
            vec![
                format!("a.txt:{}", sha256(b"alpha")),
                format!("dir/b c.bin:{}", sha256(b"beta")),
            ]
        );
        assert_eq!(host.blob(&sha256(b"beta")).unwrap(), b"beta");
        assert!(
            host.fetched
                .contains(&"http://feed/repo/dir/b%20c.bin".to_string())
        );
        assert_eq!(host.progress.last(), Some(&(2, 2, 9, 9)));

        // Again: nothing changes.
        let s = run(&mut host, CONFIG).unwrap();
        assert_eq!((s.units_added, s.units_removed), (0, 0));
    }

    #[test]
    fn downloads_in_batches() {
        let names: Vec<String> = (0..(BATCH * 2 + 1)).map(|i| format!("f{i}")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), n.as_bytes())).collect();
        let mut host = feed_host(&files);
        let s = run(&mut host, CONFIG).unwrap();
        assert_eq!(s.units_added, files.len() as u64);
        assert_eq!(host.batches, vec![BATCH, BATCH, 1]);
    }

    #[test]
    fn an_empty_manifest_empties_the_repository() {
        let mut host = feed_host(&[]);
        host.add_file(&FileMeta {
            relative_path: "x".into(),
            digest: sha256(b"x"),
            size: 1,
        });
        let s = run(&mut host, CONFIG).unwrap();
        assert_eq!((s.units_added, s.units_removed), (0, 1));
        assert!(host.repo_keys(FILE).is_empty());
    }

    #[test]
    fn a_failed_download_changes_nothing() {
        let good = sha256(b"good")["sha256:".len()..].to_string();
        let wrong = sha256(b"expected")["sha256:".len()..].to_string();
        let manifest = format!("good,{good},4\nbad,{wrong},8\nmissing,{good},4\n");
        let mut host = FakeHost::serving(move |url| match url {
            "http://feed/repo/PULP_MANIFEST" => (200, manifest.clone().into_bytes()),
            "http://feed/repo/good" => (200, b"good".to_vec()),
            "http://feed/repo/bad" => (200, b"tampered".to_vec()),
            _ => (404, Vec::new()),
        });
        let e = run(&mut host, CONFIG).unwrap_err();
        assert_eq!(e.code, "download-failed");
        assert!(e.message.starts_with("2 of 3 files"), "{}", e.message);
        assert!(e.message.contains("bad: expected"), "{}", e.message);
        assert!(e.message.contains("missing: "), "{}", e.message);
        assert!(host.repo_keys(FILE).is_empty());
    }

    #[test]
    fn a_size_that_disagrees_with_the_manifest_fails() {
        let hex = sha256(b"data")["sha256:".len()..].to_string();
        let manifest = format!("f,{hex},99\n");
        let mut host = FakeHost::serving(move |url| match url {
            "http://feed/repo/PULP_MANIFEST" => (200, manifest.clone().into_bytes()),
            _ => (200, b"data".to_vec()),
        });
        // The host refuses the body (it is bounded by the manifest's size).
        let e = run(&mut host, CONFIG).unwrap_err();
        assert!(
            e.message.contains("f: ") && e.message.contains("gives 99 bytes, upstream sent 4"),
            "{}",
            e.message
        );
    }

    #[test]
    fn manifest_errors_name_the_url_and_line() {
        let mut host = FakeHost::serving(|_| (200, b"a,xyz,1\n".to_vec()));
        let e = run(&mut host, CONFIG).unwrap_err();
        assert_eq!(e.code, "invalid-input");
        assert!(
            e.message.starts_with(
                "http://feed/repo/PULP_MANIFEST is not a valid PULP_MANIFEST: line 1:"
            ),
            "{}",
            e.message
        );
        let mut host = FakeHost::serving(|_| (404, Vec::new()));
        let e = run(&mut host, CONFIG).unwrap_err();
        assert!(e.message.contains("answered HTTP 404"), "{}", e.message);
    }
}
