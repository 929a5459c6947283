//! The publication index: what `publish` stores and `resolve` reads back.
//!
//! One JSON blob per publish mapping every relative path to its digest and
//! size, plus the digest of the PULP_MANIFEST built with it, so serving a
//! request never touches the unit store:
//!
//! ```json
//! {"version":1,
//!  "manifest":{"digest":"sha256:…","size":181},
//!  "files":{"dir/a.txt":{"digest":"sha256:…","size":5}}}
//! ```

use crate::manifest::Entry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wharf_sdk::json::Versioned;

/// Largest index `resolve` reads (the most `store-bytes` accepts).
pub const MAX_INDEX: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicationIndex {
    /// Format version ([`Versioned::VERSION`]): readers refuse others, so a
    /// format change is never misread.
    pub version: u64,
    /// The published PULP_MANIFEST.
    pub manifest: Stored,
    /// Relative path → content.
    pub files: BTreeMap<String, Stored>,
}

impl Versioned for PublicationIndex {
    const VERSION_FIELD: &'static str = "version";
    const VERSION: u64 = 1;
}

impl PublicationIndex {
    pub fn new(manifest: Stored, entries: &[Entry]) -> Self {
        let files = entries
            .iter()
            .map(|e| {
                let stored = Stored {
                    digest: e.digest.clone(),
                    size: e.size,
                };
                (e.relative_path.clone(), stored)
            })
            .collect();
        PublicationIndex {
            version: Self::VERSION,
            manifest,
            files,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use wharf_sdk::testing::digest_of as d;

    fn index() -> PublicationIndex {
        let entries = vec![
            Entry {
                relative_path: "b/x".into(),
                digest: d('b'),
                size: 2,
            },
            Entry {
                relative_path: "a".into(),
                digest: d('a'),
                size: 1,
            },
        ];
        let manifest = Stored {
            digest: d('m'),
            size: 150,
        };
        PublicationIndex::new(manifest, &entries)
    }

    #[test]
    fn round_trips_canonically() {
        let i = index();
        let bytes = i.to_bytes();
        assert_eq!(PublicationIndex::from_bytes(&bytes).unwrap(), i);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"version":1,"manifest":{{"digest":"{}","size":150}},"files":{{"a":{{"digest":"{}","size":1}},"b/x":{{"digest":"{}","size":2}}}}}}"#,
                d('m'),
                d('a'),
                d('b')
            )
        );
        assert_eq!(index().to_bytes(), bytes);
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        let e = PublicationIndex::from_bytes(br#"{"version":2,"whatever":true}"#).unwrap_err();
        assert!(e.contains("version 2"), "{e}");
        assert!(PublicationIndex::from_bytes(b"nope").is_err());
        assert!(PublicationIndex::from_bytes(br#"{"version":1}"#).is_err());
    }
}
