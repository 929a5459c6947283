//! The publication index: what `publish` writes and `resolve` reads back.
//!
//! One JSON blob per publish holding everything the registry hot path needs
//! (tags, manifest media types, the set of fetchable blobs), so serving a
//! request never touches the unit store.

use crate::model::{self, ManifestMeta};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use wharf_sdk::Unit;

/// Format version; readers refuse others so a format change cannot be misread.
pub const VERSION: u32 = 1;
/// Largest index `resolve` reads into memory.
pub const MAX_INDEX: u64 = 64 << 20;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicationIndex {
    pub v: u32,
    /// Tag → manifest digest.
    pub tags: BTreeMap<String, String>,
    pub manifests: BTreeMap<String, ManifestEntry>,
    /// Everything clients may fetch from `/blobs/`: configs, layers, manifests.
    pub blobs: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub media_type: String,
    pub size: u64,
}

impl PublicationIndex {
    /// Build the index from a repository's units. Returns warnings for units
    /// that had to be skipped (a tag whose manifest is not in the repository).
    pub fn build(tags: &[Unit], manifests: &[Unit], blobs: &[Unit]) -> (Self, Vec<String>) {
        let mut index = PublicationIndex {
            v: VERSION,
            ..Default::default()
        };
        let mut warnings = Vec::new();
        for unit in manifests {
            let meta: ManifestMeta = match serde_json::from_str(&unit.metadata) {
                Ok(meta) => meta,
                Err(e) => {
                    warnings.push(format!(
                        "manifest {} has unreadable metadata ({e}); skipped",
                        unit.key
                    ));
                    continue;
                }
            };
            index.blobs.insert(unit.key.clone());
            index
                .blobs
                .extend(meta.config.iter().chain(&meta.layers).cloned());
            let entry = ManifestEntry {
                media_type: meta.media_type,
                size: meta.size,
            };
            index.manifests.insert(unit.key.clone(), entry);
        }
        index.blobs.extend(blobs.iter().map(|u| u.key.clone()));
        for unit in tags {
            match model::tag_meta(unit) {
                Ok(tag) if index.manifests.contains_key(&tag.manifest) => {
                    if let Some(other) = index.tags.insert(tag.name.clone(), tag.manifest.clone()) {
                        warnings.push(format!(
                            "tag {} names two manifests; {other} dropped",
                            tag.name
                        ));
                    }
                }
                Ok(tag) => warnings.push(format!(
                    "tag {} points at manifest {} which is not in the repository; skipped",
                    tag.name, tag.manifest
                )),
                Err(e) => warnings.push(e.message),
            }
        }
        (index, warnings)
    }

    /// Canonical bytes: sorted maps make equal content give equal digests.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("index serializes")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let index: PublicationIndex = serde_json::from_slice(bytes)
            .map_err(|e| format!("publication index is not valid: {e}"))?;
        if index.v != VERSION {
            return Err(format!(
                "publication index version {} is not {VERSION}: publish again",
                index.v
            ));
        }
        Ok(index)
    }
}

/// Parsed indexes by digest, for a pooled instance serving many requests.
/// Indexes are immutable (content-addressed), so entries never go stale;
/// the bound only caps memory.
pub struct IndexCache {
    entries: HashMap<String, Rc<PublicationIndex>>,
    order: VecDeque<String>,
    capacity: usize,
}

impl IndexCache {
    pub fn new(capacity: usize) -> Self {
        IndexCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn get_or_load(
        &mut self,
        digest: &str,
        load: impl FnOnce() -> Result<PublicationIndex, String>,
    ) -> Result<Rc<PublicationIndex>, String> {
        if let Some(index) = self.entries.get(digest) {
            return Ok(index.clone());
        }
        let index = Rc::new(load()?);
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.entries.remove(&oldest);
        }
        self.order.push_back(digest.to_string());
        self.entries.insert(digest.to_string(), index.clone());
        Ok(index)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Small immutable documents (manifests) by digest, bounded by total bytes.
pub struct ByteCache {
    entries: HashMap<String, Rc<Vec<u8>>>,
    order: VecDeque<String>,
    bytes: usize,
    budget: usize,
}

impl ByteCache {
    pub fn new(budget: usize) -> Self {
        ByteCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    pub fn get_or_load(
        &mut self,
        digest: &str,
        load: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<Rc<Vec<u8>>, String> {
        if let Some(bytes) = self.entries.get(digest) {
            return Ok(bytes.clone());
        }
        let bytes = Rc::new(load()?);
        if bytes.len() > self.budget {
            return Ok(bytes);
        }
        while self.bytes + bytes.len() > self.budget {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.entries.remove(&oldest) {
                self.bytes -= old.len();
            }
        }
        self.bytes += bytes.len();
        self.order.push_back(digest.to_string());
        self.entries.insert(digest.to_string(), bytes.clone());
        Ok(bytes)
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{blob_unit, manifest_unit, tag_unit};

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn meta(config: Option<String>, layers: Vec<String>) -> ManifestMeta {
        ManifestMeta {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 42,
            config,
            layers,
            manifests: vec![],
            platform: None,
        }
    }

    #[test]
    fn builds_and_round_trips() {
        let manifests = vec![manifest_unit(&d('m'), &meta(Some(d('c')), vec![d('1')]))];
        let blobs = vec![
            blob_unit(&d('c'), "x", 1),
            blob_unit(&d('1'), "y", 2),
            blob_unit(&d('2'), "y", 3),
        ];
        let tags = vec![tag_unit("latest", &d('m')), tag_unit("gone", &d('z'))];
        let (index, warnings) = PublicationIndex::build(&tags, &manifests, &blobs);
        assert_eq!(index.tags.len(), 1);
        assert_eq!(index.tags["latest"], d('m'));
        assert_eq!(index.manifests[&d('m')].size, 42);
        assert_eq!(index.blobs.len(), 4);
        assert!(index.blobs.contains(&d('m')));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("gone"));

        let bytes = index.to_bytes();
        assert_eq!(PublicationIndex::from_bytes(&bytes).unwrap(), index);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("{\"v\":1,"), "{text}");
        // Same content, same bytes.
        let (again, _) = PublicationIndex::build(&tags, &manifests, &blobs);
        assert_eq!(again.to_bytes(), text.as_bytes());
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        assert!(
            PublicationIndex::from_bytes(br#"{"v":2,"tags":{},"manifests":{},"blobs":[]}"#)
                .unwrap_err()
                .contains("version 2")
        );
        assert!(PublicationIndex::from_bytes(b"nope").is_err());
    }

    #[test]
    fn byte_cache_stays_within_its_budget() {
        let mut cache = ByteCache::new(10);
        let mut loads = 0;
        for (digest, len) in [
            ("a", 4),
            ("b", 4),
            ("a", 4),
            ("c", 4),
            ("a", 4),
            ("big", 11),
        ] {
            let got = cache
                .get_or_load(digest, || {
                    loads += 1;
                    Ok(vec![0; len])
                })
                .unwrap();
            assert_eq!(got.len(), len);
            assert!(cache.bytes() <= 10);
        }
        // a, b loaded; a hit; c evicts a; a reloaded (evicting b); big never cached.
        assert_eq!(loads, 5);
        assert_eq!(cache.bytes(), 8);
        assert!(cache.get_or_load("x", || Err("boom".into())).is_err());
    }

    #[test]
    fn cache_is_bounded_and_loads_once() {
        let mut cache = IndexCache::new(2);
        let mut loads = 0;
        for digest in ["a", "b", "a", "c", "a"] {
            cache
                .get_or_load(digest, || {
                    loads += 1;
                    Ok(PublicationIndex::default())
                })
                .unwrap();
        }
        // a, b loaded; a hit; c evicts a; a reloaded (evicting b).
        assert_eq!(loads, 4);
        assert_eq!(cache.len(), 2);
        assert!(cache.get_or_load("x", || Err("boom".into())).is_err());
        assert_eq!(cache.len(), 2);
    }
}
