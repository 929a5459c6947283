//! The importer's upload: one uploaded file becomes one `file` unit.
//!
//! The bytes never enter the guest: the host hashes and stores the whole
//! upload with `store-range`, and the plugin only records where it lives.

use crate::paths::{self, MAX_FILE_PATH};
use crate::unit::{self, FILE, FileMeta};
use serde::Deserialize;
use wharf_sdk::host::{Host, UploadSource};
use wharf_sdk::{Error, Summary};

/// The import parameters: `{"relative_path": "dir/name.txt"}`.
#[derive(Debug, Default, Deserialize)]
struct Params {
    /// `relative-path` is accepted too (the spelling the WIT example uses).
    #[serde(alias = "relative-path")]
    relative_path: Option<String>,
}

/// The relative path the client asked for, validated.
pub fn relative_path(params: &str) -> Result<String, Error> {
    let parsed: Params = wharf_sdk::json::settings(params)
        .map_err(|e| Error::invalid(format!("import params are not valid: {e}")))?;
    let path = parsed.relative_path.ok_or_else(|| {
        Error::invalid(
            r#"a file import needs its relative path: give "params": {"relative_path": "dir/name.txt"}"#,
        )
    })?;
    paths::validate(&path, "relative_path", MAX_FILE_PATH).map_err(Error::invalid)?;
    Ok(path)
}

/// Store the upload and make it the repository's file at the requested path,
/// replacing whatever file the repository held there.
pub fn import<H: Host, U: UploadSource>(
    host: &mut H,
    data: &mut U,
    params: &str,
) -> Result<Summary, Error> {
    let relative_path = relative_path(params)?;
    let size = data.len();
    let digest = data.store_range(0, size, None)?;
    let meta = FileMeta {
        relative_path,
        digest,
        size,
    };
    let key = meta.key();
    let mut removed = 0;
    let mut present = false;
    for old in unit::at_path(host, &meta.relative_path)? {
        if old.key == key {
            present = true;
        } else if host.remove_unit(FILE, &old.key)? {
            removed += 1;
        }
    }
    if !present {
        host.add_unit(&meta.to_unit())?;
    }
    let message = match (present, removed) {
        (true, _) => format!(
            "{} was already in the repository with this content",
            meta.relative_path
        ),
        (false, 0) => format!("added {} ({size} bytes)", meta.relative_path),
        (false, _) => format!(
            "replaced {} with new content ({size} bytes)",
            meta.relative_path
        ),
    };
    Ok(Summary {
        units_added: u64::from(!present),
        units_removed: removed,
        bytes_stored: size,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::testing::{FakeHost, sha256};

    #[test]
    fn params_need_a_safe_relative_path() {
        assert_eq!(
            relative_path(r#"{"relative_path":"dir/a.txt"}"#).unwrap(),
            "dir/a.txt"
        );
        assert_eq!(relative_path(r#"{"relative-path":"b"}"#).unwrap(), "b");
        for (params, why) in [
            ("{}", "needs its relative path"),
            ("", "needs its relative path"),
            (r#"{"relative_path":null}"#, "needs its relative path"),
            (r#"{"relative_path":7}"#, "not valid"),
            ("[1]", "not valid"),
            ("nope", "not valid"),
            (r#"{"relative_path":"../etc/passwd"}"#, "\"..\""),
            (r#"{"relative_path":"/abs"}"#, "absolute"),
            (r#"{"relative_path":"a//b"}"#, "empty component"),
            (r#"{"relative_path":"a\u0001"}"#, "control character"),
        ] {
            let e = relative_path(params).unwrap_err();
            assert_eq!(e.code, "invalid-input");
            assert!(e.message.contains(why), "{params}: {}", e.message);
        }
        let long = format!(r#"{{"relative_path":"{}"}}"#, "x".repeat(MAX_FILE_PATH + 1));
        assert!(
            relative_path(&long)
                .unwrap_err()
                .message
                .contains("at most")
        );
    }

    #[test]
    fn stores_the_whole_upload_and_adds_a_unit() {
        let mut host = FakeHost::default();
        let mut data = host.upload(b"hello".to_vec());
        let s = import(&mut host, &mut data, r#"{"relative_path":"dir/a.txt"}"#).unwrap();
        assert_eq!((s.units_added, s.units_removed, s.bytes_stored), (1, 0, 5));
        let digest = sha256(b"hello");
        assert_eq!(host.blob(&digest).unwrap(), b"hello");
        let unit = host
            .repo_unit(FILE, &format!("dir/a.txt:{digest}"))
            .unwrap();
        assert_eq!(
            FileMeta::from_unit(&unit).unwrap(),
            FileMeta {
                relative_path: "dir/a.txt".into(),
                digest: digest.clone(),
                size: 5
            }
        );
        assert_eq!(unit.blobs, vec![digest]);
    }

    #[test]
    fn replaces_other_content_at_the_same_path_only() {
        let mut host = FakeHost::default();
        let mut first = host.upload(b"one".to_vec());
        import(&mut host, &mut first, r#"{"relative_path":"a"}"#).unwrap();
        let mut other = host.upload(b"other".to_vec());
        import(&mut host, &mut other, r#"{"relative_path":"a.txt"}"#).unwrap();

        let mut second = host.upload(b"two".to_vec());
        let s = import(&mut host, &mut second, r#"{"relative_path":"a"}"#).unwrap();
        assert_eq!((s.units_added, s.units_removed), (1, 1));
        assert!(s.message.starts_with("replaced a"), "{}", s.message);
        assert_eq!(
            host.repo_keys(FILE),
            vec![
                format!("a.txt:{}", sha256(b"other")),
                format!("a:{}", sha256(b"two")),
            ]
        );

        // The same content again changes nothing.
        let mut again = host.upload(b"two".to_vec());
        let s = import(&mut host, &mut again, r#"{"relative_path":"a"}"#).unwrap();
        assert_eq!((s.units_added, s.units_removed), (0, 0));
        assert_eq!(host.repo_keys(FILE).len(), 2);
    }

    #[test]
    fn empty_files_are_files() {
        let mut host = FakeHost::default();
        let mut data = host.upload(Vec::new());
        let s = import(&mut host, &mut data, r#"{"relative_path":"empty"}"#).unwrap();
        assert_eq!((s.units_added, s.bytes_stored), (1, 0));
    }

    #[test]
    fn bad_params_store_nothing() {
        let mut host = FakeHost::default();
        let mut data = host.upload(b"x".to_vec());
        assert!(import(&mut host, &mut data, "{}").is_err());
        assert!(host.blob(&sha256(b"x")).is_none());
        assert!(host.repo_keys(FILE).is_empty());
    }
}
