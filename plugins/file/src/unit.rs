//! The `file` unit: one file's content at one relative path.
//!
//! Key: `<relative path>:<digest>`. Units are shared by every repository, and
//! `units::add` reuses an existing unit with the same key, so a key of the
//! relative path alone would hand repository B the content repository A
//! stored at that path. With the digest in the key, two repositories holding
//! different content at `a.txt` hold two different units.
//!
//! A repository still holds at most one file per relative path. The digest
//! has a fixed length, so the keys of all files at path `P` are exactly the
//! keys that start with `P:sha256:` and are 72 bytes longer than `P`; the
//! host lists units in key (byte) order, so [`at_path`] finds them with one
//! short listing that starts right after `P:sha256:`, instead of reading the
//! whole repository.

use crate::manifest::Entry;
use crate::paths::KEY_DIGEST_SUFFIX;
use serde::{Deserialize, Serialize};
use wharf_sdk::host::Host;
use wharf_sdk::paging::{self, LIST_PAGE};
use wharf_sdk::{Error, Unit};

/// The unit type (and content type) name.
pub const FILE: &str = "file";

/// A `file` unit's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub relative_path: String,
    pub digest: String,
    pub size: u64,
}

impl FileMeta {
    pub fn key(&self) -> String {
        key(&self.relative_path, &self.digest)
    }

    pub fn to_unit(&self) -> Unit {
        Unit {
            unit_type: FILE.to_string(),
            key: self.key(),
            metadata: serde_json::to_string(self).expect("metadata serializes"),
            blobs: vec![self.digest.clone()],
        }
    }

    pub fn from_unit(unit: &Unit) -> Result<Self, Error> {
        serde_json::from_str(&unit.metadata).map_err(|e| {
            Error::new(
                "invalid-unit",
                format!("file unit {} has unreadable metadata: {e}", unit.key),
            )
        })
    }

    pub fn to_entry(&self) -> Entry {
        Entry {
            relative_path: self.relative_path.clone(),
            digest: self.digest.clone(),
            size: self.size,
        }
    }
}

impl From<&Entry> for FileMeta {
    fn from(e: &Entry) -> Self {
        FileMeta {
            relative_path: e.relative_path.clone(),
            digest: e.digest.clone(),
            size: e.size,
        }
    }
}

/// The unit key of `digest` at `relative_path`.
pub fn key(relative_path: &str, digest: &str) -> String {
    format!("{relative_path}:{digest}")
}

/// Whether `key` is the key of some file at `relative_path`.
pub fn is_key_at(key: &str, relative_path: &str) -> bool {
    key.len() == relative_path.len() + KEY_DIGEST_SUFFIX
        && key
            .strip_prefix(relative_path)
            .and_then(|rest| rest.strip_prefix(":sha256:"))
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The current repository's `file` units at `relative_path` (normally none
/// or one).
pub fn at_path<H: Host + ?Sized>(host: &mut H, relative_path: &str) -> Result<Vec<Unit>, Error> {
    let mut found =
        paging::list_prefixed(host, FILE, &format!("{relative_path}:sha256:"), LIST_PAGE)?;
    // Keys of longer paths that start with `P:sha256:` sort among ours; the
    // length tells them apart.
    found.retain(|unit| is_key_at(&unit.key, relative_path));
    Ok(found)
}

/// Test helper: associate a file unit with the fake host's repository,
/// pretending its blob is stored.
#[cfg(test)]
pub trait AddFile {
    fn add_file(&mut self, meta: &FileMeta);
}

#[cfg(test)]
impl AddFile for wharf_sdk::testing::FakeHost {
    fn add_file(&mut self, meta: &FileMeta) {
        self.pretend_stored(&meta.digest);
        self.add_unit(&meta.to_unit()).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::testing::FakeHost;

    use wharf_sdk::testing::digest_of as d;

    fn meta(path: &str, c: char) -> FileMeta {
        FileMeta {
            relative_path: path.to_string(),
            digest: d(c),
            size: 1,
        }
    }

    #[test]
    fn unit_round_trips() {
        let m = meta("dir/a.txt", 'a');
        let u = m.to_unit();
        assert_eq!(u.unit_type, "file");
        assert_eq!(u.key, format!("dir/a.txt:{}", d('a')));
        assert_eq!(u.blobs, vec![d('a')]);
        assert_eq!(FileMeta::from_unit(&u).unwrap(), m);
        let v: serde_json::Value = serde_json::from_str(&u.metadata).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"relative_path": "dir/a.txt", "digest": d('a'), "size": 1})
        );
    }

    #[test]
    fn keys_belong_to_exactly_one_path() {
        let k = key("a", &d('1'));
        assert!(is_key_at(&k, "a"));
        assert!(!is_key_at(&k, "a:sha256"));
        assert!(!is_key_at(&key("a:sha256:x", &d('1')), "a"));
        assert!(!is_key_at(&key("ab", &d('1')), "a"));
    }

    #[test]
    fn finds_files_at_a_path_among_lookalikes() {
        let mut host = FakeHost::default();
        // Paths whose keys sort right around `a:sha256:...`.
        let lookalikes = [
            "a",
            "a.txt",
            "a:b",
            "a:sha256:zzz",
            &format!("a:sha256:{}", "0".repeat(64)),
            "a:sha256:",
            "b",
        ];
        for (i, p) in lookalikes.iter().enumerate() {
            host.add_file(&meta(p, char::from(b'0' + i as u8)));
        }
        host.add_file(&meta("a", 'f'));
        let found: Vec<String> = at_path(&mut host, "a")
            .unwrap()
            .into_iter()
            .map(|u| u.key)
            .collect();
        assert_eq!(found, vec![key("a", &d('0')), key("a", &d('f'))]);
        for p in lookalikes {
            let found = at_path(&mut host, p).unwrap();
            let want = if p == "a" { 2 } else { 1 };
            assert_eq!(found.len(), want, "{p}");
            for u in found {
                assert_eq!(FileMeta::from_unit(&u).unwrap().relative_path, p);
            }
        }
        assert!(at_path(&mut host, "c").unwrap().is_empty());
    }

    #[test]
    fn at_path_pages_past_many_lookalikes() {
        let mut host = FakeHost::default();
        for i in 0..(LIST_PAGE + 20) {
            host.add_file(&FileMeta {
                relative_path: format!("p:sha256:{i:04}"),
                digest: d('1'),
                size: 1,
            });
        }
        host.add_file(&FileMeta {
            relative_path: "p".into(),
            digest: format!("sha256:{}", "f".repeat(64)),
            size: 1,
        });
        assert_eq!(at_path(&mut host, "p").unwrap().len(), 1);
        assert_eq!(
            paging::list_all(&mut host, FILE).unwrap().len(),
            LIST_PAGE as usize + 21
        );
    }
}
