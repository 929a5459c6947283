//! The distributor: write a PULP_MANIFEST and an index of the repository's
//! files, and name the publication by its base path.

use crate::index::{PublicationIndex, Stored};
use crate::manifest::{self, Entry};
use crate::paths::{self, MAX_BASE_PATH};
use crate::unit::{FILE, FileMeta};
use serde::Deserialize;
use wharf_sdk::host::Host;
use wharf_sdk::json::Versioned;
use wharf_sdk::log::Level;
use wharf_sdk::paging::list_all;
use wharf_sdk::{Error, Published, Repository, Summary};

#[derive(Debug, Default, Deserialize)]
struct DistributorConfig {
    base_path: Option<String>,
}

/// Where the publication appears under `/files/`: `base_path` from the
/// distributor settings, else the repository id.
pub fn base_path(distributor_config: &str, repo_id: &str) -> Result<String, Error> {
    let config: DistributorConfig = wharf_sdk::json::settings(distributor_config)
        .map_err(|e| Error::invalid(format!("distributor settings are not valid: {e}")))?;
    let (path, what) = match config.base_path.filter(|p| !p.is_empty()) {
        Some(p) => (p, "base_path"),
        None => (
            repo_id.to_string(),
            "the repository id (the default base_path)",
        ),
    };
    paths::validate(&path, what, MAX_BASE_PATH).map_err(Error::invalid)?;
    Ok(path)
}

/// The repository's files as manifest entries, sorted by relative path. Two
/// files at one path (possible after copying between repositories, which
/// does not go through the plugin) are an error: which one to serve is not
/// the plugin's guess to make.
fn entries(units: &[wharf_sdk::Unit]) -> Result<Vec<Entry>, Error> {
    let mut entries = units
        .iter()
        .map(|u| FileMeta::from_unit(u).map(|m| m.to_entry()))
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort_by(|a, b| {
        a.relative_path
            .cmp(&b.relative_path)
            .then(a.digest.cmp(&b.digest))
    });
    if let Some(pair) = entries
        .windows(2)
        .find(|w| w[0].relative_path == w[1].relative_path)
    {
        return Err(Error::new(
            "conflict",
            format!(
                "the repository holds two files at {:?} ({} and {}), e.g. after a copy; \
                 import the one to keep again (an import replaces the file at its path) or sync",
                pair[0].relative_path, pair[0].digest, pair[1].digest
            ),
        ));
    }
    Ok(entries)
}

pub fn publish<H: Host>(host: &mut H, repo: &Repository) -> Result<Published, Error> {
    let name = base_path(&repo.distributor_config, &repo.id)?;
    let entries = entries(&list_all(host, FILE)?)?;
    if entries
        .iter()
        .any(|e| e.relative_path == manifest::FILE_NAME)
    {
        host.log(
            Level::Warn,
            &format!(
                "the repository holds a file named {0} at its root; /files/{name}/{0} serves the generated manifest instead",
                manifest::FILE_NAME
            ),
        );
    }
    let text = manifest::format(&entries);
    let manifest = Stored {
        digest: host.store_bytes(text.as_bytes(), None)?,
        size: text.len() as u64,
    };
    let index = PublicationIndex::new(manifest, &entries).to_bytes();
    let index_digest = host.store_bytes(&index, None)?;
    let files: u64 = entries.iter().map(|e| e.size).sum();
    Ok(Published {
        summary: Summary {
            units_added: 0,
            units_removed: 0,
            bytes_stored: (text.len() + index.len()) as u64,
            message: format!(
                "published {} files ({files} bytes) at /files/{name}/",
                entries.len()
            ),
        },
        name,
        index: index_digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::AddFile;
    use wharf_sdk::testing::{FakeHost, sha256};

    fn repo(distributor_config: &str) -> Repository {
        Repository {
            id: "repo1".into(),
            content_type: "file".into(),
            importer_config: "{}".into(),
            distributor_config: distributor_config.into(),
        }
    }

    fn file(host: &mut FakeHost, path: &str, content: &[u8]) {
        let digest = host.store_bytes(content, None).unwrap();
        host.add_file(&FileMeta {
            relative_path: path.into(),
            digest,
            size: content.len() as u64,
        });
    }

    #[test]
    fn base_path_defaults_to_the_repository_id() {
        assert_eq!(base_path("{}", "repo1").unwrap(), "repo1");
        assert_eq!(base_path("", "repo1").unwrap(), "repo1");
        assert_eq!(base_path(r#"{"base_path":""}"#, "repo1").unwrap(), "repo1");
        assert_eq!(
            base_path(r#"{"base_path":"pub/isos","other":1}"#, "r").unwrap(),
            "pub/isos"
        );
        for bad in [
            r#"{"base_path":"/abs"}"#,
            r#"{"base_path":"a/../b"}"#,
            r#"{"base_path":"a/"}"#,
            r#"{"base_path":7}"#,
        ] {
            assert_eq!(
                base_path(bad, "r").unwrap_err().code,
                "invalid-input",
                "{bad}"
            );
        }
    }

    #[test]
    fn writes_a_sorted_manifest_and_an_index() {
        let mut host = FakeHost::default();
        file(&mut host, "z.txt", b"zz");
        file(&mut host, "a", b"a");
        file(&mut host, "a.txt", b"aaa");
        file(&mut host, "a/b", b"ab");
        let p = publish(&mut host, &repo(r#"{"base_path":"pub/files"}"#)).unwrap();
        assert_eq!(p.name, "pub/files");
        assert!(p.summary.message.contains("4 files (8 bytes)"));

        let index = PublicationIndex::from_bytes(&host.blob(&p.index).unwrap()).unwrap();
        let text = String::from_utf8(host.blob(&index.manifest.digest).unwrap()).unwrap();
        let hex = |b: &[u8]| sha256(b)["sha256:".len()..].to_string();
        assert_eq!(
            text,
            format!(
                "a,{},1\na.txt,{},3\na/b,{},2\nz.txt,{},2\n",
                hex(b"a"),
                hex(b"aaa"),
                hex(b"ab"),
                hex(b"zz")
            )
        );
        assert_eq!(index.manifest.size, text.len() as u64);
        assert_eq!(index.files.len(), 4);
        assert_eq!(
            index.files["a/b"],
            Stored {
                digest: sha256(b"ab"),
                size: 2
            }
        );
    }

    #[test]
    fn an_empty_repository_publishes_an_empty_manifest() {
        let mut host = FakeHost::default();
        let p = publish(&mut host, &repo("{}")).unwrap();
        assert_eq!(p.name, "repo1");
        let index = PublicationIndex::from_bytes(&host.blob(&p.index).unwrap()).unwrap();
        assert!(index.files.is_empty());
        assert_eq!(host.blob(&index.manifest.digest).unwrap(), b"");
    }

    #[test]
    fn two_files_at_one_path_are_a_conflict() {
        let mut host = FakeHost::default();
        file(&mut host, "a", b"one");
        file(&mut host, "a", b"two");
        let e = publish(&mut host, &repo("{}")).unwrap_err();
        assert_eq!(e.code, "conflict");
        assert!(e.message.contains("two files at \"a\""), "{}", e.message);
    }

    #[test]
    fn warns_when_a_file_is_shadowed_by_the_manifest() {
        let mut host = FakeHost::default();
        file(&mut host, "PULP_MANIFEST", b"mine");
        publish(&mut host, &repo("{}")).unwrap();
        assert!(host.logs[0].contains("serves the generated manifest"));
    }
}
