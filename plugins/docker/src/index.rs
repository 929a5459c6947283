//! The publication index: what `publish` writes and `resolve` reads back.
//!
//! Everything the registry hot path needs (tags, manifest media types, the
//! blobs clients may fetch, referrers), so serving a request never touches
//! the unit store. In memory it is a [`Content`]; stored, a small root
//! document ([`PublicationIndex`], format version 2) holding one sharded
//! map ([`crate::shards`]) of each part, so that a publish after a push
//! rewrites the few shards the push changed ([`PublicationIndex::update`])
//! instead of the whole index. Roots of format version 1 (the whole
//! index in one document, written before shards) are still read
//! ([`View::read`]); the next publish writes version 2.
//!
//! The parts:
//! - `tags`: tag → manifest digest;
//! - `manifests`: digest → media type and size;
//! - `blobs`: digest → how many of the repository's units name it
//!   (a manifest: itself, its config and layers; a blob unit: itself), so
//!   that a unit removed takes a blob out only with the last unit naming it;
//! - `referrers` (OCI 1.1): subject digest → descriptors of the manifests
//!   whose `subject` it is, in digest order, as the referrers API lists
//!   them (`mediaType`, `digest`, `size`, `artifactType`, `annotations`).

use crate::manifest::Descriptor;
use crate::model::{self, ManifestMeta};
use crate::referrers;
use crate::shards::{ShardIo, ShardRead, Shards};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use wharf_sdk::Unit;
use wharf_sdk::json::{Versioned, versioned};
use wharf_sdk::units::Changed;

/// Largest index root `resolve` reads into memory.
pub const MAX_INDEX: u64 = 64 << 20;

/// A publication's content in memory.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Content {
    pub tags: BTreeMap<String, String>,
    pub manifests: BTreeMap<String, ManifestEntry>,
    pub blobs: BTreeMap<String, u32>,
    pub referrers: BTreeMap<String, Vec<Descriptor>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub media_type: String,
    pub size: u64,
}

/// The stored root: each part as shards.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicationIndex {
    /// Format version ([`Versioned::VERSION`]): readers refuse others, so a
    /// format change cannot be misread.
    pub v: u64,
    pub tags: Shards,
    pub manifests: Shards,
    pub blobs: Shards,
    pub referrers: Shards,
}

impl Versioned for PublicationIndex {
    const VERSION_FIELD: &'static str = "v";
    const VERSION: u64 = 2;
}

/// The index of format version 1: everything in the root.
#[derive(Debug, Default, Deserialize)]
struct WholeIndex {
    tags: BTreeMap<String, String>,
    manifests: BTreeMap<String, ManifestEntry>,
    blobs: BTreeSet<String>,
    #[serde(default)]
    referrers: BTreeMap<String, Vec<Descriptor>>,
}

/// What a manifest unit puts in the index; `None` with a warning when its
/// metadata cannot be read.
struct ManifestPart {
    entry: ManifestEntry,
    /// The blobs it names: itself, its config and layers, once each.
    blobs: BTreeSet<String>,
    referrer: Option<(String, Descriptor)>,
}

impl ManifestPart {
    fn of(unit: &Unit, warnings: &mut Vec<String>) -> Option<Self> {
        let meta: ManifestMeta = match serde_json::from_str(&unit.metadata) {
            Ok(meta) => meta,
            Err(e) => {
                warnings.push(format!(
                    "manifest {} has unreadable metadata ({e}); skipped",
                    unit.key
                ));
                return None;
            }
        };
        let mut blobs = BTreeSet::from([unit.key.clone()]);
        blobs.extend(meta.config.iter().chain(&meta.layers).cloned());
        Some(ManifestPart {
            referrer: referrers::descriptor(&unit.key, &meta),
            blobs,
            entry: ManifestEntry {
                media_type: meta.media_type,
                size: meta.size,
            },
        })
    }
}

impl Content {
    /// Build the content from a repository's units. Returns warnings for
    /// units that had to be skipped (a tag whose manifest is not in the
    /// repository).
    pub fn build(tags: &[Unit], manifests: &[Unit], blobs: &[Unit]) -> (Self, Vec<String>) {
        let mut content = Content::default();
        let mut warnings = Vec::new();
        for unit in manifests {
            let Some(part) = ManifestPart::of(unit, &mut warnings) else {
                continue;
            };
            for b in part.blobs {
                *content.blobs.entry(b).or_default() += 1;
            }
            if let Some((subject, referrer)) = part.referrer {
                content.referrers.entry(subject).or_default().push(referrer);
            }
            content.manifests.insert(unit.key.clone(), part.entry);
        }
        for unit in blobs {
            *content.blobs.entry(unit.key.clone()).or_default() += 1;
        }
        for listed in content.referrers.values_mut() {
            listed.sort_by(|a, b| a.digest.cmp(&b.digest));
        }
        for unit in tags {
            match model::tag_meta(unit) {
                Ok(tag) if content.manifests.contains_key(&tag.manifest) => {
                    if let Some(other) = content.tags.insert(tag.name.clone(), tag.manifest.clone())
                    {
                        warnings.push(format!(
                            "tag {} names two manifests; {other} dropped",
                            tag.name
                        ));
                    }
                }
                Ok(tag) => warnings.push(missing_manifest(&tag)),
                Err(e) => warnings.push(e.message),
            }
        }
        (content, warnings)
    }

    /// Store the content as shards; the root that names them.
    pub fn write<I: ShardIo>(self, io: &mut I) -> Result<PublicationIndex, String> {
        Ok(PublicationIndex {
            v: PublicationIndex::VERSION,
            tags: Shards::build(io, self.tags)?,
            manifests: Shards::build(io, self.manifests)?,
            blobs: Shards::build(io, self.blobs)?,
            referrers: Shards::build(io, self.referrers)?,
        })
    }
}

fn keys<V>(m: &BTreeMap<String, V>) -> BTreeSet<String> {
    m.keys().cloned().collect()
}

fn missing_manifest(tag: &model::TagMeta) -> String {
    format!(
        "tag {} points at manifest {} which is not in the repository; skipped",
        tag.name, tag.manifest
    )
}

/// The units that changed since the version a publication serves, by type
/// (`units.changes`).
#[derive(Debug, Default)]
pub struct Changes {
    pub tags: Vec<Changed>,
    pub manifests: Vec<Changed>,
    pub blobs: Vec<Changed>,
}

impl Changes {
    pub fn len(&self) -> usize {
        self.tags.len() + self.manifests.len() + self.blobs.len()
    }
}

impl PublicationIndex {
    /// The index after `changes`: what [`Content::build`] makes of the
    /// repository now, reading and writing only the shards the changes
    /// fall in. Returns warnings as `build` does.
    pub fn update<I: ShardIo>(
        &self,
        io: &mut I,
        changes: &Changes,
    ) -> Result<(Self, Vec<String>), String> {
        let mut warnings = Vec::new();
        let mut manifests: BTreeMap<String, Option<ManifestEntry>> = BTreeMap::new();
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        // Subject → (referrers gone, referrers come).
        let mut referred: BTreeMap<String, (BTreeSet<String>, Vec<Descriptor>)> = BTreeMap::new();
        for c in &changes.manifests {
            let Some(part) = ManifestPart::of(&c.unit, &mut warnings) else {
                continue;
            };
            let step = if c.added { 1 } else { -1 };
            for b in part.blobs {
                *counts.entry(b).or_default() += step;
            }
            if let Some((subject, referrer)) = part.referrer {
                let (gone, come) = referred.entry(subject).or_default();
                match c.added {
                    true => come.push(referrer),
                    false => drop(gone.insert(referrer.digest)),
                }
            }
            manifests.insert(c.unit.key.clone(), c.added.then_some(part.entry));
        }
        for c in &changes.blobs {
            *counts.entry(c.unit.key.clone()).or_default() += if c.added { 1 } else { -1 };
        }
        let new_manifests = self.manifests.update(io, &keys(&manifests), |key, _| {
            manifests.get(key).cloned().flatten()
        })?;
        let blobs = self
            .blobs
            .update(io, &keys(&counts), |key, old: Option<u32>| {
                let n = i64::from(old.unwrap_or(0)) + counts[key];
                u32::try_from(n).ok().filter(|n| *n > 0)
            })?;
        let referrers = self
            .referrers
            .update(io, &keys(&referred), |subject, old| {
                let (gone, come) = &referred[subject];
                let mut listed: Vec<Descriptor> = old.unwrap_or_default();
                listed.retain(|r| !gone.contains(&r.digest));
                listed.retain(|r| !come.iter().any(|c| c.digest == r.digest));
                listed.extend(come.iter().cloned());
                listed.sort_by(|a, b| a.digest.cmp(&b.digest));
                (!listed.is_empty()).then_some(listed)
            })?;
        // Tags last: one added names a manifest of the new index. A tag
        // moved is a unit removed (name@old) and one added (name@new).
        let mut tags: BTreeMap<String, Option<String>> = BTreeMap::new();
        for c in changes.tags.iter().filter(|c| !c.added) {
            match model::tag_meta(&c.unit) {
                Ok(tag) => {
                    let now = self.tags.get::<String, _>(io, &tag.name)?;
                    if now.as_deref() == Some(&tag.manifest) {
                        tags.insert(tag.name, None);
                    }
                }
                Err(e) => warnings.push(e.message),
            }
        }
        for c in changes.tags.iter().filter(|c| c.added) {
            match model::tag_meta(&c.unit) {
                Ok(tag)
                    if new_manifests
                        .get::<ManifestEntry, _>(io, &tag.manifest)?
                        .is_some() =>
                {
                    tags.insert(tag.name, Some(tag.manifest));
                }
                Ok(tag) => warnings.push(missing_manifest(&tag)),
                Err(e) => warnings.push(e.message),
            }
        }
        let tags = self
            .tags
            .update(io, &keys(&tags), |name, _| tags[name].clone())?;
        Ok((
            PublicationIndex {
                v: Self::VERSION,
                tags,
                manifests: new_manifests,
                blobs,
                referrers,
            },
            warnings,
        ))
    }

    /// Everything the index holds (reads every shard).
    #[cfg(test)]
    pub fn content<I: ShardRead>(&self, io: &mut I) -> Result<Content, String> {
        Ok(Content {
            tags: self.tags.entries(io)?.into_iter().collect(),
            manifests: self.manifests.entries(io)?.into_iter().collect(),
            blobs: self.blobs.entries(io)?.into_iter().collect(),
            referrers: self.referrers.entries(io)?.into_iter().collect(),
        })
    }
}

/// A publication's index as `resolve` reads it: sharded, or whole (an
/// index of format version 1).
#[derive(Debug)]
pub enum View {
    Sharded(PublicationIndex),
    Whole(Content),
}

impl View {
    /// Parse an index root of either format.
    pub fn read(bytes: &[u8]) -> Result<Self, String> {
        match PublicationIndex::from_bytes(bytes) {
            Ok(index) => Ok(View::Sharded(index)),
            Err(e) => match versioned::<WholeIndex>(bytes, PublicationIndex::WHAT, "v", 1) {
                Ok(old) => Ok(View::Whole(Content {
                    tags: old.tags,
                    manifests: old.manifests,
                    blobs: old.blobs.into_iter().map(|b| (b, 1)).collect(),
                    referrers: old.referrers,
                })),
                Err(_) => Err(e),
            },
        }
    }

    /// The manifest a tag names.
    pub fn tag<I: ShardRead>(&self, io: &mut I, name: &str) -> Result<Option<String>, String> {
        match self {
            View::Sharded(i) => i.tags.get(io, name),
            View::Whole(c) => Ok(c.tags.get(name).cloned()),
        }
    }

    /// Up to `n` tags after `after` that start with `prefix`, in order.
    pub fn tags<I: ShardRead>(
        &self,
        io: &mut I,
        after: Option<&str>,
        prefix: &str,
        n: usize,
    ) -> Result<Vec<String>, String> {
        match self {
            View::Sharded(i) => Ok(i
                .tags
                .range::<String, _>(io, after, prefix, n)?
                .into_iter()
                .map(|(t, _)| t)
                .collect()),
            View::Whole(c) => Ok(c
                .tags
                .range(prefix.to_string()..)
                .map(|(t, _)| t)
                .take_while(|t| t.starts_with(prefix))
                .filter(|t| after.is_none_or(|a| t.as_str() > a))
                .take(n)
                .cloned()
                .collect()),
        }
    }

    pub fn manifest<I: ShardRead>(
        &self,
        io: &mut I,
        digest: &str,
    ) -> Result<Option<ManifestEntry>, String> {
        match self {
            View::Sharded(i) => i.manifests.get(io, digest),
            View::Whole(c) => Ok(c.manifests.get(digest).cloned()),
        }
    }

    /// Whether clients may fetch the blob from `/blobs/`.
    pub fn has_blob<I: ShardRead>(&self, io: &mut I, digest: &str) -> Result<bool, String> {
        match self {
            View::Sharded(i) => Ok(i.blobs.get::<u32, _>(io, digest)?.is_some()),
            View::Whole(c) => Ok(c.blobs.contains_key(digest)),
        }
    }

    /// The manifests whose subject is `subject`, in digest order.
    pub fn referrers<I: ShardRead>(
        &self,
        io: &mut I,
        subject: &str,
    ) -> Result<Vec<Descriptor>, String> {
        match self {
            View::Sharded(i) => Ok(i.referrers.get(io, subject)?.unwrap_or_default()),
            View::Whole(c) => Ok(c.referrers.get(subject).cloned().unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{blob_unit, manifest_unit, tag_unit};
    use crate::shards::testing::Memory;
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
        let (content, warnings) = Content::build(&tags, &manifests, &blobs);
        assert_eq!(content.tags.len(), 1);
        assert_eq!(content.tags["latest"], d('m'));
        assert_eq!(content.manifests[&d('m')].size, 42);
        assert_eq!(content.blobs.len(), 4);
        // Named by the manifest and by its blob unit.
        assert_eq!(content.blobs[&d('c')], 2);
        assert_eq!(content.blobs[&d('m')], 1);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("gone"));

        let mut io = Memory::default();
        let index = content.clone().write(&mut io).unwrap();
        let bytes = index.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("{\"v\":2,"), "{text}");
        let View::Sharded(read) = View::read(&bytes).unwrap() else {
            panic!("a sharded index reads as one")
        };
        assert_eq!(read, index);
        assert_eq!(read.content(&mut io).unwrap(), content);
        // Same content, same bytes.
        let (again, _) = Content::build(&tags, &manifests, &blobs);
        assert_eq!(again.write(&mut io).unwrap().to_bytes(), bytes);
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
        let (content, warnings) = Content::build(&[], &manifests, &[]);
        assert!(warnings.is_empty());
        assert_eq!(content.referrers.len(), 1);
        let listed = &content.referrers[&d('m')];
        // In digest order, whatever order the units came in.
        let digests: Vec<&str> = listed.iter().map(|r| r.digest.as_str()).collect();
        assert_eq!(digests, [d('b'), d('s')]);
        assert_eq!(
            listed[1].artifact_type.as_deref(),
            Some("application/vnd.example.sig")
        );
        assert_eq!(listed[1].annotations["k"], "v");
        assert_eq!(listed[1].size, 42);
        let mut io = Memory::default();
        let index = content.clone().write(&mut io).unwrap();
        let read = View::Sharded(index);
        assert_eq!(read.referrers(&mut io, &d('m')).unwrap(), *listed);
        assert!(read.referrers(&mut io, &d('s')).unwrap().is_empty());
    }

    #[test]
    fn reads_indexes_of_version_1() {
        let old = format!(
            r#"{{"v":1,"tags":{{"latest":"{m}"}},"manifests":{{"{m}":{{"media_type":"x","size":1}}}},"blobs":["{m}"]}}"#,
            m = d('m')
        );
        let index = View::read(old.as_bytes()).unwrap();
        let mut io = Memory::default();
        assert_eq!(index.tag(&mut io, "latest").unwrap(), Some(d('m')));
        assert_eq!(index.manifest(&mut io, &d('m')).unwrap().unwrap().size, 1);
        assert!(index.has_blob(&mut io, &d('m')).unwrap());
        assert!(!index.has_blob(&mut io, &d('x')).unwrap());
        assert!(index.referrers(&mut io, &d('m')).unwrap().is_empty());
        assert_eq!(index.tags(&mut io, None, "", 10).unwrap(), ["latest"]);
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        assert!(
            View::read(br#"{"v":3,"tags":[],"manifests":[],"blobs":[],"referrers":[]}"#)
                .unwrap_err()
                .contains("version 3")
        );
        assert!(View::read(b"nope").is_err());
    }

    /// A small deterministic generator (no dependency for one test).
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// The units of a repository as a publish lists them.
    fn units_of(repo: &BTreeMap<(String, String), Unit>, unit_type: &str) -> Vec<Unit> {
        repo.iter()
            .filter(|((t, _), _)| t == unit_type)
            .map(|(_, u)| u.clone())
            .collect()
    }

    /// The changes between two states of a repository, as the host's
    /// `units.changes` gives them.
    fn changes(
        then: &BTreeMap<(String, String), Unit>,
        now: &BTreeMap<(String, String), Unit>,
    ) -> Changes {
        let mut out = Changes::default();
        for (id, unit) in then
            .iter()
            .filter(|(id, _)| !now.contains_key(*id))
            .chain(now.iter().filter(|(id, _)| !then.contains_key(*id)))
        {
            let c = Changed {
                unit: unit.clone(),
                added: now.contains_key(id),
            };
            match id.0.as_str() {
                model::TAG => out.tags.push(c),
                model::MANIFEST => out.manifests.push(c),
                _ => out.blobs.push(c),
            }
        }
        out
    }

    #[test]
    fn an_update_makes_what_a_build_makes() {
        let mut rng = Lcg(7);
        let mut io = Memory::default();
        let mut repo: BTreeMap<(String, String), Unit> = BTreeMap::new();
        let mut index = Content::default().write(&mut io).unwrap();
        let digest = |i: u64| format!("sha256:{i:064x}");
        for round in 0..30 {
            let then = repo.clone();
            // Pushes: a manifest with a layer (shared with others), a
            // subject sometimes, tagged; tags moved; images removed.
            for _ in 0..if round == 0 { 3000 } else { 1 + rng.below(40) } {
                // A digest names one content: the manifest's layer and
                // subject follow from it.
                let n = 1000 + rng.below(3000);
                let m = digest(n);
                match rng.below(10) {
                    0..=5 => {
                        let layer = digest(n % 200);
                        let mut meta = meta(Some(digest(500)), vec![layer.clone()]);
                        if n.is_multiple_of(4) {
                            meta.subject = Some(digest(1000 + n * 7 % 3000));
                        }
                        // A push of a tag replaces the tag of that name.
                        let name = format!("t{}", rng.below(2000));
                        repo.retain(|(t, _), u| {
                            t != model::TAG || model::tag_meta(u).unwrap().name != name
                        });
                        for u in [
                            manifest_unit(&m, &meta),
                            blob_unit(&layer, "l", 1),
                            tag_unit(&name, &m),
                        ] {
                            repo.insert((u.unit_type.clone(), u.key.clone()), u);
                        }
                    }
                    6..=7 => {
                        // Move a tag to another manifest of the repository.
                        let tags = units_of(&repo, model::TAG);
                        let manifests = units_of(&repo, model::MANIFEST);
                        if let (Some(t), Some(to)) = (
                            tags.get(rng.below(tags.len().max(1) as u64) as usize),
                            manifests.get(rng.below(manifests.len().max(1) as u64) as usize),
                        ) {
                            let name = model::tag_meta(t).unwrap().name;
                            repo.remove(&(t.unit_type.clone(), t.key.clone()));
                            let u = tag_unit(&name, &to.key);
                            repo.insert((u.unit_type.clone(), u.key.clone()), u);
                        }
                    }
                    _ => {
                        // Remove an image: its manifest, its tags.
                        repo.retain(|(t, k), u| {
                            !(t == model::MANIFEST && *k == m
                                || t == model::TAG && model::tag_meta(u).unwrap().manifest == m)
                        });
                    }
                }
            }
            let (updated, _) = index.update(&mut io, &changes(&then, &repo)).unwrap();
            let (built, _) = Content::build(
                &units_of(&repo, model::TAG),
                &units_of(&repo, model::MANIFEST),
                &units_of(&repo, model::BLOB),
            );
            let got = updated.content(&mut io).unwrap();
            assert_eq!(got, built, "round {round}");
            index = updated;
        }
        assert!(
            index.tags.0.len() > 1,
            "the test grows several shards: {:?}",
            index.tags.0.iter().map(|s| s.len).collect::<Vec<_>>()
        );
    }
}
