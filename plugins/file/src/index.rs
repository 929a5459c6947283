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
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;

/// Format version; readers refuse others, so a format change is never misread.
pub const VERSION: u32 = 1;
/// Largest index `resolve` reads (the most `store-bytes` accepts).
pub const MAX_INDEX: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicationIndex {
    pub version: u32,
    /// The published PULP_MANIFEST.
    pub manifest: Stored,
    /// Relative path → content.
    pub files: BTreeMap<String, Stored>,
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
            version: VERSION,
            manifest,
            files,
        }
    }

    /// Canonical bytes: sorted maps make equal content give equal digests.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("index serializes")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_slice(bytes)
            .map_err(|e| format!("publication index is not valid: {e}"))?;
        if v.version != VERSION {
            return Err(format!(
                "publication index version {} is not {VERSION}: publish the repository again",
                v.version
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| format!("publication index is not valid: {e}"))
    }
}

/// Parsed indexes by digest, for a pooled instance serving many requests.
/// Indexes are content-addressed, so an entry never goes stale; the bounds
/// (entry count, and the byte size of the index blobs held) only cap memory.
/// Least recently used entries go first.
pub struct IndexCache {
    entries: HashMap<String, (Rc<PublicationIndex>, u64)>,
    /// Digests, least recently used first.
    order: VecDeque<String>,
    bytes: u64,
    max_entries: usize,
    max_bytes: u64,
}

impl IndexCache {
    pub fn new(max_entries: usize, max_bytes: u64) -> Self {
        IndexCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// The index with this digest; `load` reads and parses it (returning its
    /// size in bytes too) when it is not cached.
    pub fn get_or_load(
        &mut self,
        digest: &str,
        load: impl FnOnce() -> Result<(PublicationIndex, u64), String>,
    ) -> Result<Rc<PublicationIndex>, String> {
        if let Some((index, _)) = self.entries.get(digest) {
            let index = index.clone();
            if let Some(at) = self.order.iter().position(|d| d == digest) {
                let d = self.order.remove(at).expect("position is in range");
                self.order.push_back(d);
            }
            return Ok(index);
        }
        let (index, size) = load()?;
        let index = Rc::new(index);
        // Always keep the one just loaded, however large.
        while !self.order.is_empty()
            && (self.order.len() >= self.max_entries || self.bytes + size > self.max_bytes)
        {
            let oldest = self.order.pop_front().expect("not empty");
            if let Some((_, n)) = self.entries.remove(&oldest) {
                self.bytes -= n;
            }
        }
        self.order.push_back(digest.to_string());
        self.entries
            .insert(digest.to_string(), (index.clone(), size));
        self.bytes += size;
        Ok(index)
    }

    #[cfg(test)]
    fn digests(&self) -> Vec<&str> {
        self.order.iter().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

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

    #[test]
    fn cache_loads_once_and_evicts_least_recently_used() {
        let mut cache = IndexCache::new(2, u64::MAX);
        let mut loads = Vec::new();
        for digest in ["a", "b", "a", "c", "a", "b"] {
            cache
                .get_or_load(digest, || {
                    loads.push(digest);
                    Ok((index(), 10))
                })
                .unwrap();
        }
        // a, b loaded; a used; c evicts b (least recent); a hit; b evicts c.
        assert_eq!(loads, ["a", "b", "c", "b"]);
        assert_eq!(cache.digests(), ["a", "b"]);
        assert!(cache.get_or_load("x", || Err("boom".into())).is_err());
        assert_eq!(cache.digests(), ["a", "b"]);
    }

    #[test]
    fn cache_bounds_bytes_but_keeps_the_latest() {
        let mut cache = IndexCache::new(10, 100);
        for (digest, size) in [("a", 40), ("b", 40), ("c", 40)] {
            cache.get_or_load(digest, || Ok((index(), size))).unwrap();
        }
        assert_eq!(cache.digests(), ["b", "c"]);
        cache.get_or_load("huge", || Ok((index(), 500))).unwrap();
        assert_eq!(cache.digests(), ["huge"]);
        assert_eq!(cache.bytes, 500);
    }
}
