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
//!   them (`mediaType`, `digest`, `size`, `artifactType`, `annotations`);
//! - `loose_tags` (for publishes only, `resolve` never reads it): the tag
//!   units `tags` does not tell, by name ([`Content::loose_tags`]) and by
//!   the manifest they name, so that an update finds the tags a manifest
//!   coming or going concerns: a tag copied before its manifest is served
//!   once the manifest comes, as a build would. A plain tag (one unit
//!   `name@manifest`, its manifest in the repository) is only in `tags`,
//!   so the usual push costs nothing here; the tags naming a manifest that
//!   goes are found by reading `tags` whole, which only a manifest removed
//!   costs. A root without it (written before it was kept) is rebuilt.
//!
//! A root read from storage is checked ([`PublicationIndex::validate`],
//! and each shard read against the root: [`crate::shards`]): a corrupt one
//! is an error for `resolve` and a full build for a publish, never a
//! wrong answer.

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
    /// The tag names whose units `tags` does not tell, with their units:
    /// one waiting for its manifest (copied before it, or its manifest
    /// removed), with two units, or with a unit whose key is not
    /// `name@manifest`.
    pub loose_tags: BTreeMap<String, TagUnits>,
}

/// A tag name's units: unit key → the manifest it names.
pub type TagUnits = BTreeMap<String, String>;

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
    /// `None` in a root written before loose tags were kept: a publish
    /// cannot update that one, and rebuilds.
    #[serde(default)]
    pub loose_tags: Option<LooseTags>,
}

/// The loose tags ([`Content::loose_tags`]) as shards.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct LooseTags {
    /// Tag name → its units ([`TagUnits`]).
    pub by_name: Shards,
    /// Manifest digest → the loose tag names with a unit naming it.
    pub by_manifest: Shards,
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
    /// repository). A tag name with several units serves the manifest of
    /// the last (in key order) whose manifest is in the repository.
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
        let mut names: BTreeMap<String, TagUnits> = BTreeMap::new();
        for unit in tags {
            match model::tag_meta(unit) {
                Ok(tag) => drop(
                    names
                        .entry(tag.name)
                        .or_default()
                        .insert(unit.key.clone(), tag.manifest),
                ),
                Err(e) => warnings.push(e.message),
            }
        }
        for (name, units) in names {
            let placed = Placed::of(&name, &units, |m| content.manifests.contains_key(m));
            warnings.extend(placed.warnings);
            if let Some(manifest) = placed.serves {
                content.tags.insert(name.clone(), manifest);
            }
            if placed.loose {
                content.loose_tags.insert(name, units);
            }
        }
        (content, warnings)
    }

    /// Store the content as shards; the root that names them.
    pub fn write<I: ShardIo>(self, io: &mut I) -> Result<PublicationIndex, String> {
        let by_manifest = by_manifest(&self.loose_tags);
        Ok(PublicationIndex {
            v: PublicationIndex::VERSION,
            tags: Shards::build(io, self.tags)?,
            manifests: Shards::build(io, self.manifests)?,
            blobs: Shards::build(io, self.blobs)?,
            referrers: Shards::build(io, self.referrers)?,
            loose_tags: Some(LooseTags {
                by_name: Shards::build(io, self.loose_tags)?,
                by_manifest: Shards::build(io, by_manifest)?,
            }),
        })
    }
}

/// Loose tags by the manifests their units name.
fn by_manifest(loose: &BTreeMap<String, TagUnits>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, units) in loose {
        for manifest in units.values() {
            out.entry(manifest.clone())
                .or_default()
                .insert(name.clone());
        }
    }
    out
}

/// What the index makes of a tag name's units, as a build does: it serves
/// the manifest of the last unit (in key order) whose manifest is in the
/// repository; it is loose unless it is one unit `name@manifest` naming
/// a manifest of the repository.
struct Placed {
    serves: Option<String>,
    loose: bool,
    warnings: Vec<String>,
}

impl Placed {
    fn of(name: &str, units: &TagUnits, present: impl Fn(&str) -> bool) -> Self {
        let mut serves = None;
        let mut warnings = Vec::new();
        for manifest in units.values() {
            if !present(manifest) {
                warnings.push(missing_manifest(name, manifest));
            } else if let Some(other) = serves.replace(manifest.clone()) {
                warnings.push(format!("tag {name} names two manifests; {other} dropped"));
            }
        }
        let plain = match units.iter().next() {
            Some((key, manifest)) => {
                units.len() == 1 && serves.is_some() && *key == model::tag_key(name, manifest)
            }
            None => true,
        };
        Placed {
            serves,
            loose: !plain,
            warnings,
        }
    }
}

/// The manifests a loose tag's units name (none for a plain tag).
fn named(units: &Option<TagUnits>) -> BTreeSet<String> {
    units.iter().flat_map(|u| u.values().cloned()).collect()
}

fn keys<V>(m: &BTreeMap<String, V>) -> BTreeSet<String> {
    m.keys().cloned().collect()
}

fn missing_manifest(name: &str, manifest: &str) -> String {
    format!("tag {name} points at manifest {manifest} which is not in the repository; skipped")
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

/// The tag units changed, by tag name.
#[derive(Default)]
struct TagChanges(BTreeMap<String, TagChange>);

/// A tag name's units changed: the keys removed, the units added.
#[derive(Default)]
struct TagChange {
    removed: BTreeSet<String>,
    added: TagUnits,
}

impl TagChanges {
    /// By name; a unit whose tag cannot be read is skipped with a warning
    /// (a build skips it too).
    fn of(changed: &[Changed], warnings: &mut Vec<String>) -> Self {
        let mut out = TagChanges::default();
        for c in changed {
            match model::tag_meta(&c.unit) {
                Ok(tag) => {
                    let change = out.0.entry(tag.name).or_default();
                    match c.added {
                        true => drop(change.added.insert(c.unit.key.clone(), tag.manifest)),
                        false => drop(change.removed.insert(c.unit.key.clone())),
                    }
                }
                Err(e) => warnings.push(e.message),
            }
        }
        out
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
        let loose = self.loose_tags.as_ref().ok_or(
            "the index predates loose tags (an earlier version of the plugin wrote it); \
             it is rebuilt",
        )?;
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
        // Tags last: whether a tag is served depends on the new manifests.
        let (tags, loose_tags) = self.update_tags(
            io,
            loose,
            TagChanges::of(&changes.tags, &mut warnings),
            &manifests,
            &new_manifests,
            &mut warnings,
        )?;
        Ok((
            PublicationIndex {
                v: Self::VERSION,
                tags,
                manifests: new_manifests,
                blobs,
                referrers,
                loose_tags: Some(loose_tags),
            },
            warnings,
        ))
    }

    /// `tags` and `loose_tags` after `changed` (tag units) and `manifests`
    /// (each manifest come, or gone: `None`), with `now` the manifests of
    /// the new index. Only the tag names concerned are read and placed
    /// again ([`Placed`]): those of the units changed, the loose ones
    /// naming a manifest that came or went, the plain ones naming a
    /// manifest that went (found by reading `tags` whole).
    fn update_tags<I: ShardIo>(
        &self,
        io: &mut I,
        loose: &LooseTags,
        mut changed: TagChanges,
        manifests: &BTreeMap<String, Option<ManifestEntry>>,
        now: &Shards,
        warnings: &mut Vec<String>,
    ) -> Result<(Shards, LooseTags), String> {
        for digest in manifests.keys() {
            let names = loose.by_manifest.get::<BTreeSet<String>, _>(io, digest)?;
            for name in names.unwrap_or_default() {
                changed.0.entry(name).or_default();
            }
        }
        let gone: BTreeSet<&String> = manifests
            .iter()
            .filter_map(|(digest, entry)| entry.is_none().then_some(digest))
            .collect();
        if !gone.is_empty() {
            for name in self.tags.find::<String, _>(io, |m| gone.contains(m))? {
                changed.0.entry(name).or_default();
            }
        }
        let mut present: BTreeMap<String, bool> = BTreeMap::new();
        let mut tags: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut loose_tags: BTreeMap<String, Option<TagUnits>> = BTreeMap::new();
        // Manifest → (loose names gone, loose names come).
        let mut by_manifest: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> =
            BTreeMap::new();
        for (name, change) in changed.0 {
            let served = self.tags.get::<String, _>(io, &name)?;
            let was = loose.by_name.get::<TagUnits, _>(io, &name)?;
            let mut units = match (&was, &served) {
                (Some(units), _) => units.clone(),
                (None, Some(manifest)) => {
                    TagUnits::from([(model::tag_key(&name, manifest), manifest.clone())])
                }
                (None, None) => TagUnits::new(),
            };
            units.retain(|key, _| !change.removed.contains(key));
            units.extend(change.added);
            for manifest in units.values() {
                if !present.contains_key(manifest) {
                    let there = now.get::<ManifestEntry, _>(io, manifest)?.is_some();
                    present.insert(manifest.clone(), there);
                }
            }
            let placed = Placed::of(&name, &units, |m| present[m]);
            warnings.extend(placed.warnings);
            let is = placed.loose.then_some(units);
            let (before, after) = (named(&was), named(&is));
            for digest in before.difference(&after) {
                let (gone, _) = by_manifest.entry(digest.clone()).or_default();
                gone.insert(name.clone());
            }
            for digest in after.difference(&before) {
                let (_, come) = by_manifest.entry(digest.clone()).or_default();
                come.insert(name.clone());
            }
            if placed.serves != served {
                tags.insert(name.clone(), placed.serves);
            }
            if is != was {
                loose_tags.insert(name, is);
            }
        }
        let tags = self
            .tags
            .update(io, &keys(&tags), |name, _| tags[name].clone())?;
        let by_name = loose
            .by_name
            .update(io, &keys(&loose_tags), |name, _| loose_tags[name].clone())?;
        let by_manifest = loose.by_manifest.update(
            io,
            &keys(&by_manifest),
            |digest, old: Option<BTreeSet<String>>| {
                let (gone, come) = &by_manifest[digest];
                let mut names = old.unwrap_or_default();
                names.retain(|n| !gone.contains(n));
                names.extend(come.iter().cloned());
                (!names.is_empty()).then_some(names)
            },
        )?;
        Ok((
            tags,
            LooseTags {
                by_name,
                by_manifest,
            },
        ))
    }

    /// Check a root read from storage as far as the root alone tells
    /// ([`Shards::validate`] of each map): a corrupt one is an error that
    /// says which map and what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let loose = self.loose_tags.iter().flat_map(|l| {
            [
                ("loose_tags.by_name", &l.by_name),
                ("loose_tags.by_manifest", &l.by_manifest),
            ]
        });
        [
            ("tags", &self.tags),
            ("manifests", &self.manifests),
            ("blobs", &self.blobs),
            ("referrers", &self.referrers),
        ]
        .into_iter()
        .chain(loose)
        .try_for_each(|(what, shards)| {
            shards.validate().map_err(|why| {
                format!(
                    "{} is corrupt: its map {what} {why}; publish the repository again",
                    Self::WHAT
                )
            })
        })
    }

    /// Everything the index holds (reads every shard).
    #[cfg(test)]
    pub fn content<I: ShardRead>(&self, io: &mut I) -> Result<Content, String> {
        let loose = self.loose_tags.clone().unwrap_or_default();
        Ok(Content {
            tags: self.tags.entries(io)?.into_iter().collect(),
            manifests: self.manifests.entries(io)?.into_iter().collect(),
            blobs: self.blobs.entries(io)?.into_iter().collect(),
            referrers: self.referrers.entries(io)?.into_iter().collect(),
            loose_tags: loose.by_name.entries(io)?.into_iter().collect(),
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
    /// Parse an index root of either format; a sharded one is checked
    /// ([`PublicationIndex::validate`]).
    pub fn read(bytes: &[u8]) -> Result<Self, String> {
        match PublicationIndex::from_bytes(bytes) {
            Ok(index) => index.validate().map(|()| View::Sharded(index)),
            Err(e) => match versioned::<WholeIndex>(bytes, PublicationIndex::WHAT, "v", 1) {
                Ok(old) => Ok(View::Whole(Content {
                    tags: old.tags,
                    manifests: old.manifests,
                    blobs: old.blobs.into_iter().map(|b| (b, 1)).collect(),
                    referrers: old.referrers,
                    loose_tags: BTreeMap::new(),
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
    use crate::shards::MAX_SHARD;
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

    /// An index of `n` images `t00000`... in `io`, and its content.
    fn images(io: &mut Memory, n: u64) -> (PublicationIndex, Repo) {
        let mut repo = Repo::new();
        for i in 0..n {
            for u in image(1000 + i) {
                put(&mut repo, u);
            }
            put(&mut repo, tag_unit(&format!("t{i:05}"), &digest(1000 + i)));
        }
        let (content, _) = Content::build(
            &units_of(&repo, model::TAG),
            &units_of(&repo, model::MANIFEST),
            &units_of(&repo, model::BLOB),
        );
        (content.write(io).unwrap(), repo)
    }

    /// Update `index` from `then` to `now`; check it makes what a build
    /// makes; the new index.
    fn update_as_build(
        io: &mut Memory,
        index: &PublicationIndex,
        then: &Repo,
        now: &Repo,
    ) -> PublicationIndex {
        let (updated, _) = index.update(io, &changes(then, now)).unwrap();
        let (built, _) = Content::build(
            &units_of(now, model::TAG),
            &units_of(now, model::MANIFEST),
            &units_of(now, model::BLOB),
        );
        assert_eq!(updated.content(io).unwrap(), built);
        updated
    }

    #[test]
    fn a_tag_is_served_once_its_manifest_comes_and_not_once_it_goes() {
        let mut io = Memory::default();
        let (index, repo) = images(&mut io, 600);
        let early = digest(9000);
        let view = |index: &PublicationIndex| View::Sharded(index.clone());

        // Tags copied before their manifest: loose, not served.
        let mut now = repo.clone();
        put(&mut now, tag_unit("early", &early));
        put(&mut now, tag_unit("t00300", &early));
        let index = update_as_build(&mut io, &index, &repo, &now);
        assert_eq!(view(&index).tag(&mut io, "early").unwrap(), None);
        // t00300 has two units: the one whose manifest is there serves.
        assert_eq!(
            view(&index).tag(&mut io, "t00300").unwrap(),
            Some(digest(1300))
        );

        // The manifest comes, no tag changing: both serve it (t00300's
        // unit of the larger key wins, as in a build).
        let then = now.clone();
        for u in image(9000) {
            put(&mut now, u);
        }
        let (reads, writes) = (io.reads, io.writes);
        index.update(&mut io, &changes(&then, &now)).unwrap();
        // The shards of the keys it changes: the manifest, its 3 blobs, its
        // subject's referrers, 2 tags in 2 shards, the loose tags by name
        // and by manifest; each read about twice (`Memory` has no cache).
        assert!(
            io.writes - writes <= 9,
            "{} shards written",
            io.writes - writes
        );
        assert!(io.reads - reads <= 20, "{} shards read", io.reads - reads);
        let index = update_as_build(&mut io, &index, &then, &now);
        assert_eq!(
            view(&index).tag(&mut io, "early").unwrap(),
            Some(early.clone())
        );
        assert_eq!(
            view(&index).tag(&mut io, "t00300").unwrap(),
            Some(early.clone())
        );

        // It goes, the tags standing: they wait for it again.
        let then = now.clone();
        now.remove(&(model::MANIFEST.to_string(), early.clone()));
        let index = update_as_build(&mut io, &index, &then, &now);
        assert_eq!(view(&index).tag(&mut io, "early").unwrap(), None);
        assert_eq!(
            view(&index).tag(&mut io, "t00300").unwrap(),
            Some(digest(1300))
        );

        // A manifest of a plain tag goes: the tag is no longer served.
        let then = now.clone();
        now.remove(&(model::MANIFEST.to_string(), digest(1007)));
        let index = update_as_build(&mut io, &index, &then, &now);
        assert_eq!(view(&index).tag(&mut io, "t00007").unwrap(), None);
        let loose = index.content(&mut io).unwrap().loose_tags;
        assert_eq!(
            loose.keys().collect::<Vec<_>>(),
            ["early", "t00007", "t00300"]
        );
    }

    #[test]
    fn a_corrupt_root_is_refused_when_read() {
        let mut io = Memory::default();
        let (index, _) = images(&mut io, 600);
        assert!(View::read(&index.to_bytes()).is_ok());
        let refused = |corrupt: fn(&mut PublicationIndex), says: &str| {
            let mut bad = index.clone();
            corrupt(&mut bad);
            let why = View::read(&bad.to_bytes()).unwrap_err();
            assert!(
                why.contains(says) && why.contains("publish the repository again"),
                "{why}"
            );
        };
        refused(|i| i.tags.0.swap(0, 1), "its map tags starts its shard 1");
        refused(
            |i| i.manifests.0[1].first = i.manifests.0[0].first.clone(),
            "its map manifests starts its shard 1",
        );
        refused(|i| i.blobs.0[0].len = 0, "its map blobs says its shard 0");
        refused(
            |i| i.blobs.0[0].len = 1 << 40,
            "holds 1099511627776 entries",
        );
        refused(
            |i| i.referrers.0[0].digest = "sha256:nope".into(),
            "its map referrers names shard 0 by \"sha256:nope\"",
        );
        refused(
            |i| {
                let loose = i.loose_tags.as_mut().unwrap();
                loose.by_name = i.tags.clone();
                loose.by_name.0[2].len = MAX_SHARD + 1;
            },
            "its map loose_tags.by_name says its shard 2",
        );
    }

    #[test]
    fn a_shard_unlike_the_root_is_an_error_for_lookups_and_updates() {
        let mut io = Memory::default();
        let (index, repo) = images(&mut io, 600);
        // A push that moves t00010 and t00300: its update reads the tags
        // shards 0 and 1.
        let mut now = repo.clone();
        for (name, n) in [("t00010", 9010), ("t00300", 9300)] {
            now.retain(|(t, _), u| t != model::TAG || model::tag_meta(u).unwrap().name != name);
            for u in image(n) {
                put(&mut now, u);
            }
            put(&mut now, tag_unit(name, &digest(n)));
        }
        let changes = changes(&repo, &now);
        let refused = |io: &mut Memory, corrupt: fn(&mut PublicationIndex), says: &str| {
            let mut bad = index.clone();
            corrupt(&mut bad);
            // The root alone looks right.
            let View::Sharded(bad) = View::read(&bad.to_bytes()).unwrap() else {
                panic!("a sharded root")
            };
            let view = View::Sharded(bad.clone());
            for why in [
                view.tag(io, "t00010").map(drop).unwrap_err(),
                view.tag(io, "t00300").map(drop).unwrap_err(),
                view.tags(io, None, "", 1000).map(drop).unwrap_err(),
                bad.update(io, &changes).map(drop).unwrap_err(),
            ] {
                assert!(why.contains(says) && why.contains("corrupt"), "{why}");
            }
        };
        refused(
            &mut io,
            |i| i.tags.0.iter_mut().for_each(|s| s.len -= 1),
            "where the index says 255",
        );
        refused(
            &mut io,
            |i| i.tags.0.iter_mut().for_each(|s| s.first.push('0')),
            "where the index says \"t",
        );
        refused(
            &mut io,
            |i| i.tags.0[1].first = "t00255".into(),
            "\"t00255\"",
        );
        refused(
            &mut io,
            |i| {
                i.tags.0[0].digest = i.tags.0[1].digest.clone();
                i.tags.0[1].digest = i.tags.0[2].digest.clone();
            },
            "is not the one the index names",
        );
        // The root as written serves and updates.
        let View::Sharded(good) = View::read(&index.to_bytes()).unwrap() else {
            panic!("a sharded root")
        };
        update_as_build(&mut io, &good, &repo, &now);
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

    type Repo = BTreeMap<(String, String), Unit>;

    fn put(repo: &mut Repo, unit: Unit) {
        repo.insert((unit.unit_type.clone(), unit.key.clone()), unit);
    }

    fn digest(i: u64) -> String {
        format!("sha256:{i:064x}")
    }

    /// The manifest and layer units of image `n`: a digest names one
    /// content, so the manifest's layer (shared with others) and subject
    /// (sometimes) follow from it.
    fn image(n: u64) -> [Unit; 2] {
        let layer = digest(n % 200);
        let mut meta = meta(Some(digest(500)), vec![layer.clone()]);
        if n.is_multiple_of(4) {
            meta.subject = Some(digest(1000 + n * 7 % 3000));
        }
        [manifest_unit(&digest(n), &meta), blob_unit(&layer, "l", 1)]
    }

    /// How often the steps that test loose tags changed something.
    #[derive(Default, Debug)]
    struct Seen {
        /// A manifest came while a tag naming it stood.
        came: usize,
        /// A manifest went while a tag naming it stood.
        went: usize,
    }

    /// The tags of `repo` whose manifest is not in it.
    fn waiting(repo: &Repo) -> Vec<model::TagMeta> {
        units_of(repo, model::TAG)
            .iter()
            .map(|u| model::tag_meta(u).unwrap())
            .filter(|t| !repo.contains_key(&(model::MANIFEST.into(), t.manifest.clone())))
            .collect()
    }

    /// One random step of a repository's life: pushes (a tag replaces
    /// its namesake), tags moved, images removed; and what copies by unit
    /// type and removals of single units make: tags before their
    /// manifests, those manifests coming, manifests removed under their
    /// tags, two units of one tag name, a unit whose key is not
    /// `name@manifest`.
    fn step(rng: &mut Lcg, repo: &mut Repo, seen: &mut Seen) {
        let n = 1000 + rng.below(3000);
        let m = digest(n);
        let pick = |rng: &mut Lcg, units: &[Unit]| {
            let i = rng.below(units.len().max(1) as u64) as usize;
            units.get(i).cloned()
        };
        match rng.below(16) {
            0..=7 => {
                let name = format!("t{}", rng.below(2000));
                repo.retain(|(t, _), u| {
                    t != model::TAG || model::tag_meta(u).unwrap().name != name
                });
                for u in image(n) {
                    put(repo, u);
                }
                put(repo, tag_unit(&name, &m));
            }
            8..=9 => {
                // Move a tag to another manifest of the repository.
                let tag = pick(rng, &units_of(repo, model::TAG));
                let to = pick(rng, &units_of(repo, model::MANIFEST));
                if let (Some(t), Some(to)) = (tag, to) {
                    let name = model::tag_meta(&t).unwrap().name;
                    repo.remove(&(t.unit_type.clone(), t.key.clone()));
                    put(repo, tag_unit(&name, &to.key));
                }
            }
            10 => {
                // Remove an image: its manifest, its tags.
                repo.retain(|(t, k), u| {
                    !(t == model::MANIFEST && *k == m
                        || t == model::TAG && model::tag_meta(u).unwrap().manifest == m)
                });
            }
            11 => {
                // A tag copied before its manifest.
                put(repo, tag_unit(&format!("c{}", rng.below(500)), &m));
            }
            12 => {
                // The manifest a tag waits for comes.
                let waiting = waiting(repo);
                if let Some(t) = waiting.get(rng.below(waiting.len().max(1) as u64) as usize) {
                    let n = u64::from_str_radix(&t.manifest["sha256:".len()..], 16).unwrap();
                    for u in image(n) {
                        put(repo, u);
                    }
                    seen.came += 1;
                }
            }
            13 => {
                // The manifest of a tag removed, the tag left standing.
                if let Some(t) = pick(rng, &units_of(repo, model::TAG)) {
                    let manifest = model::tag_meta(&t).unwrap().manifest;
                    if repo.remove(&(model::MANIFEST.into(), manifest)).is_some() {
                        seen.went += 1;
                    }
                }
            }
            14 => {
                // A second unit of a tag name (a copy that kept both).
                if let Some(t) = pick(rng, &units_of(repo, model::TAG)) {
                    put(repo, tag_unit(&model::tag_meta(&t).unwrap().name, &m));
                }
            }
            _ => {
                // A unit whose key does not say its tag.
                let mut u = tag_unit(&format!("t{}", rng.below(2000)), &m);
                u.key = model::tag_key(&format!("x{}", rng.below(100)), &digest(n + 1));
                put(repo, u);
            }
        }
    }

    #[test]
    fn an_update_makes_what_a_build_makes() {
        let mut rng = Lcg(7);
        let mut io = Memory::default();
        let mut repo = Repo::new();
        let mut seen = Seen::default();
        let mut index = Content::default().write(&mut io).unwrap();
        let mut most_loose = 0;
        for round in 0..40 {
            let then = repo.clone();
            for _ in 0..if round == 0 { 3000 } else { 1 + rng.below(40) } {
                step(&mut rng, &mut repo, &mut seen);
            }
            let (updated, _) = index.update(&mut io, &changes(&then, &repo)).unwrap();
            let (built, _) = Content::build(
                &units_of(&repo, model::TAG),
                &units_of(&repo, model::MANIFEST),
                &units_of(&repo, model::BLOB),
            );
            let got = updated.content(&mut io).unwrap();
            assert_eq!(got, built, "round {round}");
            let loose = updated.loose_tags.as_ref().unwrap();
            let by_manifest: BTreeMap<String, BTreeSet<String>> = loose
                .by_manifest
                .entries(&mut io)
                .unwrap()
                .into_iter()
                .collect();
            assert_eq!(
                by_manifest,
                super::by_manifest(&built.loose_tags),
                "round {round}"
            );
            most_loose = most_loose.max(built.loose_tags.len());
            index = updated;
            if round == 0 {
                // Count what updates of a few changes saw.
                seen = Seen::default();
            }
        }
        assert!(
            index.tags.0.len() > 1,
            "the test grows several shards: {:?}",
            index.tags.0.iter().map(|s| s.len).collect::<Vec<_>>()
        );
        assert!(seen.came > 20 && seen.went > 20, "{seen:?}");
        assert!(most_loose > 100, "{most_loose} loose tags at most");
    }
}
