//! The unit model: what the plugin records in the host's unit store.
//!
//! - `blob`: key = digest; a config or layer.
//! - `manifest`: key = digest; a manifest or index, listing every blob it
//!   needs, and for OCI 1.1 artifacts its subject, artifact type and
//!   annotations (what the referrers API answers with).
//! - `tag`: key = `<name>@<manifest digest>`. Units are shared across
//!   repositories, so the key carries the target; a repository holds one tag
//!   unit per name, which [`set_tag`] maintains.

use crate::manifest::{Kind, Parsed};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wharf_sdk::host::Host;
use wharf_sdk::{Error, Unit};

pub const BLOB: &str = "blob";
pub const MANIFEST: &str = "manifest";
pub const TAG: &str = "tag";

/// Bytes of annotation keys and values a manifest unit keeps (the
/// publication index repeats them for every referrer).
pub const MAX_ANNOTATION_BYTES: usize = 16 << 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobMeta {
    pub media_type: String,
    pub size: u64,
    /// The upstream name a pull-through repository pulled it from: where
    /// `locate` finds it when its bytes were left on the feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestMeta {
    pub media_type: String,
    pub size: u64,
    pub config: Option<String>,
    #[serde(default)]
    pub layers: Vec<String>,
    #[serde(default)]
    pub manifests: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
    /// The digest of the manifest this one refers to (OCI `subject`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The `artifactType`, else an image manifest's config media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The document's annotations, in key order, at most
    /// [`MAX_ANNOTATION_BYTES`] of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ManifestMeta {
    pub fn new(parsed: &Parsed, size: u64, platform: Option<serde_json::Value>) -> Self {
        let (config, layers, manifests) = match &parsed.kind {
            Kind::Image { config, layers } => (
                Some(config.digest.clone()),
                layers.iter().map(|l| l.digest.clone()).collect(),
                Vec::new(),
            ),
            Kind::List { manifests } => (
                None,
                Vec::new(),
                manifests.iter().map(|m| m.digest.clone()).collect(),
            ),
        };
        ManifestMeta {
            media_type: parsed.media_type.clone(),
            size,
            config,
            layers,
            manifests,
            platform,
            subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
            artifact_type: parsed.effective_artifact_type(),
            annotations: bounded(&parsed.annotations),
        }
    }
}

/// Annotations in key order while their keys and values fit in
/// [`MAX_ANNOTATION_BYTES`]; the rest are dropped.
fn bounded(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut used = 0usize;
    annotations
        .iter()
        .take_while(|(k, v)| {
            used += k.len() + v.len();
            used <= MAX_ANNOTATION_BYTES
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagMeta {
    pub name: String,
    pub manifest: String,
}

pub fn blob_unit(digest: &str, media_type: &str, size: u64) -> Unit {
    blob_unit_with(digest, media_type, size, None)
}

/// A blob pulled from the upstream name `upstream` of a pull-through
/// repository's feed.
pub fn blob_unit_from(digest: &str, media_type: &str, size: u64, upstream: &str) -> Unit {
    blob_unit_with(digest, media_type, size, Some(upstream.to_string()))
}

fn blob_unit_with(digest: &str, media_type: &str, size: u64, upstream: Option<String>) -> Unit {
    let meta = BlobMeta {
        media_type: media_type.to_string(),
        size,
        upstream,
    };
    Unit {
        unit_type: BLOB.to_string(),
        key: digest.to_string(),
        metadata: serde_json::to_string(&meta).expect("metadata serializes"),
        blobs: vec![digest.to_string()],
    }
}

/// A manifest unit keeps alive its own bytes and everything it references
/// (children of an index too, so a half-removed index stays pullable).
pub fn manifest_unit(digest: &str, meta: &ManifestMeta) -> Unit {
    let mut blobs = vec![digest.to_string()];
    for d in meta
        .config
        .iter()
        .chain(&meta.layers)
        .chain(&meta.manifests)
    {
        if !blobs.contains(d) {
            blobs.push(d.clone());
        }
    }
    Unit {
        unit_type: MANIFEST.to_string(),
        key: digest.to_string(),
        metadata: serde_json::to_string(meta).expect("metadata serializes"),
        blobs,
    }
}

pub fn tag_key(name: &str, manifest: &str) -> String {
    format!("{name}@{manifest}")
}

pub fn tag_unit(name: &str, manifest: &str) -> Unit {
    let meta = TagMeta {
        name: name.to_string(),
        manifest: manifest.to_string(),
    };
    Unit {
        unit_type: TAG.to_string(),
        key: tag_key(name, manifest),
        metadata: serde_json::to_string(&meta).expect("metadata serializes"),
        blobs: vec![manifest.to_string()],
    }
}

/// The tag a tag unit names, from its metadata (or its key when that fails).
pub fn tag_meta(unit: &Unit) -> Result<TagMeta, Error> {
    serde_json::from_str(&unit.metadata).or_else(|_| {
        unit.key
            .split_once('@')
            .map(|(name, manifest)| TagMeta {
                name: name.to_string(),
                manifest: manifest.to_string(),
            })
            .ok_or_else(|| {
                Error::new(
                    "corrupt",
                    format!("tag unit {:?} has unreadable metadata", unit.key),
                )
            })
    })
}

/// What [`set_tag`] changed.
#[derive(Debug, Default, PartialEq)]
pub struct TagChange {
    pub added: bool,
    pub removed: u64,
}

/// Point tag `name` of the current repository at `manifest`, dropping the
/// association with whatever it pointed at before.
pub fn set_tag<H: Host + ?Sized>(
    host: &mut H,
    name: &str,
    manifest: &str,
) -> Result<TagChange, Error> {
    let wanted = tag_key(name, manifest);
    let mut change = TagChange::default();
    let mut present = false;
    for unit in tags_named(host, name)? {
        if unit.key == wanted {
            present = true;
        } else if host.remove_unit(TAG, &unit.key)? {
            change.removed += 1;
        }
    }
    if !present {
        host.add_unit(&tag_unit(name, manifest))?;
        change.added = true;
    }
    Ok(change)
}

/// Drop tag `name` from the current repository: the manifest it pointed
/// at, or `None` if it had no such tag.
pub fn remove_tag<H: Host + ?Sized>(host: &mut H, name: &str) -> Result<Option<String>, Error> {
    let mut removed = None;
    for unit in tags_named(host, name)? {
        if host.remove_unit(TAG, &unit.key)? {
            removed = Some(tag_meta(&unit)?.manifest);
        }
    }
    Ok(removed)
}

/// Tag units for `name`: keys sort by name first and tags cannot contain `@`,
/// so they are exactly the keys after `name@` that start with it.
pub fn tags_named<H: Host + ?Sized>(host: &mut H, name: &str) -> Result<Vec<Unit>, Error> {
    wharf_sdk::paging::list_prefixed(host, TAG, &format!("{name}@"), 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::testing::FakeHost;

    use wharf_sdk::testing::digest_of as d;

    #[test]
    fn manifest_unit_lists_every_blob_once() {
        let meta = ManifestMeta {
            media_type: "m".into(),
            size: 3,
            config: Some(d('c')),
            layers: vec![d('1'), d('2'), d('1')],
            manifests: vec![],
            ..Default::default()
        };
        let u = manifest_unit(&d('m'), &meta);
        assert_eq!(u.blobs, vec![d('m'), d('c'), d('1'), d('2')]);
        let back: ManifestMeta = serde_json::from_str(&u.metadata).unwrap();
        assert_eq!(back, meta);
        assert!(!u.metadata.contains("platform"));
        assert!(!u.metadata.contains("subject"), "{}", u.metadata);
    }

    #[test]
    fn artifact_fields_are_recorded_and_annotations_bounded() {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::manifest::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.example.sbom", "digest": d('c'), "size": 2},
            "layers": [],
            "subject": {"mediaType": crate::manifest::OCI_MANIFEST, "digest": d('f'), "size": 9},
            "annotations": {"a": "1", "b": "x".repeat(MAX_ANNOTATION_BYTES), "c": "3"},
        });
        let parsed = crate::manifest::parse(manifest.to_string().as_bytes(), None).unwrap();
        let meta = ManifestMeta::new(&parsed, 100, None);
        assert_eq!(meta.subject, Some(d('f')));
        // No artifactType: the config's media type stands for it.
        assert_eq!(
            meta.artifact_type.as_deref(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(meta.annotations.keys().collect::<Vec<_>>(), ["a"]);
        let back: ManifestMeta =
            serde_json::from_str(&manifest_unit(&d('m'), &meta).metadata).unwrap();
        assert_eq!(back, meta);
        // Metadata written before these fields existed still reads.
        let old: ManifestMeta =
            serde_json::from_str(r#"{"media_type":"m","size":1,"config":null}"#).unwrap();
        assert_eq!((old.subject, old.artifact_type), (None, None));
    }

    #[test]
    fn set_tag_moves_and_keeps_one_per_name() {
        let mut host = FakeHost::default();
        host.pretend_stored(&d('a'));
        host.pretend_stored(&d('b'));
        assert_eq!(
            set_tag(&mut host, "latest", &d('a')).unwrap(),
            TagChange {
                added: true,
                removed: 0
            }
        );
        set_tag(&mut host, "latest-old", &d('a')).unwrap();
        set_tag(&mut host, "late", &d('b')).unwrap();
        assert_eq!(
            set_tag(&mut host, "latest", &d('a')).unwrap(),
            TagChange {
                added: false,
                removed: 0
            }
        );
        assert_eq!(
            set_tag(&mut host, "latest", &d('b')).unwrap(),
            TagChange {
                added: true,
                removed: 1
            }
        );
        let keys: Vec<String> = host.repo_keys(TAG);
        // Byte order: '-' sorts before '@'.
        assert_eq!(
            keys,
            vec![
                tag_key("late", &d('b')),
                tag_key("latest-old", &d('a')),
                tag_key("latest", &d('b'))
            ]
        );
        let meta = tag_meta(&host.repo_unit(TAG, &tag_key("latest", &d('b'))).unwrap()).unwrap();
        assert_eq!(
            meta,
            TagMeta {
                name: "latest".into(),
                manifest: d('b')
            }
        );
    }

    #[test]
    fn set_tag_pages_past_many_stale_units() {
        let mut host = FakeHost::default();
        // A repository left with many units for one name (e.g. by an older
        // plugin) is cleaned up in one call.
        for i in 0..40u32 {
            let digest = format!("sha256:{:064x}", i);
            host.pretend_stored(&digest);
            host.add_unit(&tag_unit("v1", &digest)).unwrap();
        }
        host.pretend_stored(&d('f'));
        let change = set_tag(&mut host, "v1", &d('f')).unwrap();
        assert_eq!(
            change,
            TagChange {
                added: true,
                removed: 40
            }
        );
        assert_eq!(host.repo_keys(TAG), vec![tag_key("v1", &d('f'))]);
    }
}
