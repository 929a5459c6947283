//! The publication index: what `publish` writes and `resolve` reads back.
//!
//! One JSON blob per publish holding everything the registry hot path needs
//! (tags, manifest media types, the set of fetchable blobs), so serving a
//! request never touches the unit store.
//!
//! Format version 1. Fields added since are optional and left out when
//! empty, so indexes written before them read as they were (with nothing
//! in the new fields), and an index that has nothing for them keeps the
//! bytes, and the digest, it had before:
//! - `referrers` (OCI 1.1): subject digest → descriptors of the manifests
//!   whose `subject` it is, in digest order, as the referrers API lists
//!   them (`mediaType`, `digest`, `size`, `artifactType`, `annotations`).

use crate::manifest::Descriptor;
use crate::model::{self, ManifestMeta};
use crate::referrers;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use wharf_sdk::Unit;
use wharf_sdk::json::Versioned;

/// Largest index `resolve` reads into memory.
pub const MAX_INDEX: u64 = 64 << 20;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicationIndex {
    /// Format version ([`Versioned::VERSION`]): readers refuse others, so a
    /// format change cannot be misread.
    pub v: u64,
    /// Tag → manifest digest.
    pub tags: BTreeMap<String, String>,
    pub manifests: BTreeMap<String, ManifestEntry>,
    /// Everything clients may fetch from `/blobs/`: configs, layers, manifests.
    pub blobs: BTreeSet<String>,
    /// Subject digest → the manifests that refer to it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub referrers: BTreeMap<String, Vec<Descriptor>>,
}

impl Versioned for PublicationIndex {
    const VERSION_FIELD: &'static str = "v";
    const VERSION: u64 = 1;
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
            v: Self::VERSION,
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
            if let Some((subject, referrer)) = referrers::descriptor(&unit.key, &meta) {
                index.referrers.entry(subject).or_default().push(referrer);
            }
            let entry = ManifestEntry {
                media_type: meta.media_type,
                size: meta.size,
            };
            index.manifests.insert(unit.key.clone(), entry);
        }
        index.blobs.extend(blobs.iter().map(|u| u.key.clone()));
        for listed in index.referrers.values_mut() {
            listed.sort_by(|a, b| a.digest.cmp(&b.digest));
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{blob_unit, manifest_unit, tag_unit};

    use wharf_sdk::testing::digest_of as d;

    fn meta(config: Option<String>, layers: Vec<String>) -> ManifestMeta {
        ManifestMeta {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 42,
            config,
            layers,
            manifests: vec![],
            ..Default::default()
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
        // Nothing refers to anything: the index is as it was before referrers.
        assert!(!text.contains("referrers"), "{text}");
        // Same content, same bytes.
        let (again, _) = PublicationIndex::build(&tags, &manifests, &blobs);
        assert_eq!(again.to_bytes(), text.as_bytes());
    }

    #[test]
    fn maps_subjects_to_their_referrers() {
        let mut signature = meta(Some(d('e')), vec![d('1')]);
        signature.subject = Some(d('m'));
        signature.artifact_type = Some("application/vnd.example.sig".into());
        signature.annotations.insert("k".into(), "v".into());
        let mut sbom = meta(Some(d('e')), vec![d('2')]);
        sbom.subject = Some(d('m'));
        let manifests = vec![
            manifest_unit(&d('m'), &meta(Some(d('c')), vec![])),
            manifest_unit(&d('s'), &signature),
            manifest_unit(&d('b'), &sbom),
        ];
        let (index, warnings) = PublicationIndex::build(&[], &manifests, &[]);
        assert!(warnings.is_empty());
        assert_eq!(index.referrers.len(), 1);
        let listed = &index.referrers[&d('m')];
        // In digest order, whatever order the units came in.
        let digests: Vec<&str> = listed.iter().map(|r| r.digest.as_str()).collect();
        assert_eq!(digests, [d('b'), d('s')]);
        assert_eq!(
            listed[1].artifact_type.as_deref(),
            Some("application/vnd.example.sig")
        );
        assert_eq!(listed[1].annotations["k"], "v");
        assert_eq!(listed[1].size, 42);
        let text = String::from_utf8(index.to_bytes()).unwrap();
        assert!(
            text.contains(r#""artifactType":"application/vnd.example.sig""#),
            "{text}"
        );
        assert_eq!(
            PublicationIndex::from_bytes(text.as_bytes()).unwrap(),
            index
        );
    }

    #[test]
    fn reads_indexes_written_before_referrers() {
        let old = format!(
            r#"{{"v":1,"tags":{{"latest":"{m}"}},"manifests":{{"{m}":{{"media_type":"x","size":1}}}},"blobs":["{m}"]}}"#,
            m = d('m')
        );
        let index = PublicationIndex::from_bytes(old.as_bytes()).unwrap();
        assert_eq!(index.tags["latest"], d('m'));
        assert!(index.referrers.is_empty());
        assert_eq!(index.to_bytes(), old.as_bytes());
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
}
