//! Tag-level operations on a repository, in Docker's words (the `select`
//! and `edit` exports): which units make up some tags or digests, so that
//! the host can copy just those into another repository; removing tags or
//! manifests with what only they needed; and tagging a manifest.
//!
//! A reference is a tag (`latest`) or a manifest digest (`sha256:...`).
//! The closure of a manifest is the manifest, the children of an index
//! (recursively), the `blob` units of every config and layer, and the
//! referrers (manifests whose `subject` is in the closure: signatures,
//! SBOMs), so that an image copied elsewhere is served whole, referrers API
//! included. Foreign layers have no `blob` unit and are not listed.
//!
//! Removing never takes away what another image of the repository still
//! needs: children, referrers and blobs of a removed manifest go only when
//! no remaining manifest refers to them and no remaining tag names them.

use crate::model::{self, BLOB, MANIFEST, ManifestMeta, TAG};
use crate::reference::{is_sha256_digest, is_valid_digest, is_valid_tag};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use wharf_sdk::host::Host;
use wharf_sdk::paging::list_all;
use wharf_sdk::{Change, Error, Summary, UnitRef};

/// A reference as a client names content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reference<'a> {
    Tag(&'a str),
    Digest(&'a str),
}

/// A tag or a digest; anything else is `invalid`. A well-formed digest of
/// another algorithm is merely unknown (`not-found` later).
fn parse(reference: &str) -> Result<Reference<'_>, Error> {
    if reference.contains(':') {
        if is_valid_digest(reference) {
            return Ok(Reference::Digest(reference));
        }
        return Err(Error::invalid_reference(format!(
            "{reference:?} is not a digest (sha256:<64 lowercase hex>)"
        )));
    }
    if is_valid_tag(reference) {
        return Ok(Reference::Tag(reference));
    }
    Err(Error::invalid_reference(format!(
        "{reference:?} is neither a tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}) nor a digest"
    )))
}

/// The repository's manifests, blobs and tags, read once.
struct Content {
    manifests: BTreeMap<String, ManifestMeta>,
    blobs: HashSet<String>,
    /// (tag unit key, tag name, manifest digest).
    tags: Vec<(String, String, String)>,
    /// The indexes listing each manifest as a child.
    parents: HashMap<String, Vec<String>>,
    /// The manifests whose subject each manifest is.
    referrers: HashMap<String, Vec<String>>,
}

impl Content {
    fn load<H: Host + ?Sized>(host: &mut H) -> Result<Self, Error> {
        let mut content = Content::manifests(host)?;
        content.blobs = list_all(host, BLOB)?.into_iter().map(|u| u.key).collect();
        for unit in list_all(host, TAG)? {
            let meta = model::tag_meta(&unit)?;
            content.tags.push((unit.key, meta.name, meta.manifest));
        }
        Ok(content)
    }

    /// The manifests alone (no tags, no blobs): what a selection reads,
    /// whatever the number of tags.
    fn manifests<H: Host + ?Sized>(host: &mut H) -> Result<Self, Error> {
        let mut manifests = BTreeMap::new();
        for unit in list_all(host, MANIFEST)? {
            let meta: ManifestMeta = serde_json::from_str(&unit.metadata).map_err(|e| {
                Error::new(
                    "corrupt",
                    format!("manifest unit {} has unreadable metadata: {e}", unit.key),
                )
            })?;
            manifests.insert(unit.key, meta);
        }
        let mut parents: HashMap<String, Vec<String>> = HashMap::new();
        let mut referrers: HashMap<String, Vec<String>> = HashMap::new();
        for (digest, meta) in &manifests {
            for child in &meta.manifests {
                parents
                    .entry(child.clone())
                    .or_default()
                    .push(digest.clone());
            }
            if let Some(subject) = &meta.subject {
                referrers
                    .entry(subject.clone())
                    .or_default()
                    .push(digest.clone());
            }
        }
        Ok(Content {
            manifests,
            blobs: HashSet::new(),
            tags: Vec::new(),
            parents,
            referrers,
        })
    }

    /// The tag units named `name` (one, unless an older plugin left more).
    fn tagged(&self, name: &str) -> Vec<&(String, String, String)> {
        self.tags.iter().filter(|(_, n, _)| n == name).collect()
    }

    /// The manifest a reference names: `not-found` unless the repository
    /// holds it.
    fn resolve(&self, reference: Reference<'_>) -> Result<String, Error> {
        let digest = match reference {
            Reference::Tag(name) => match self.tagged(name).first() {
                Some((_, _, manifest)) => manifest.clone(),
                None => {
                    return Err(Error::not_found(format!(
                        "tag {name} is not in the repository"
                    )));
                }
            },
            Reference::Digest(digest) => digest.to_string(),
        };
        if !self.manifests.contains_key(&digest) {
            return Err(Error::not_found(format!(
                "manifest {digest} is not in the repository"
            )));
        }
        Ok(digest)
    }

    /// The indexes of the repository that list `digest` as a child.
    fn parents(&self, digest: &str) -> &[String] {
        self.parents.get(digest).map_or(&[], Vec::as_slice)
    }

    /// The manifests of the repository whose subject is `digest`.
    fn referrers(&self, digest: &str) -> &[String] {
        self.referrers.get(digest).map_or(&[], Vec::as_slice)
    }

    /// Configs and layers of a manifest.
    fn blobs_of(meta: &ManifestMeta) -> impl Iterator<Item = &String> {
        meta.config.iter().chain(&meta.layers)
    }
}

/// Units in the order first met, each once.
#[derive(Default)]
struct Selection {
    units: Vec<UnitRef>,
    seen: HashSet<(&'static str, String)>,
}

impl Selection {
    fn push(&mut self, unit_type: &'static str, key: &str) -> bool {
        let fresh = self.seen.insert((unit_type, key.to_string()));
        if fresh {
            self.units.push(UnitRef::new(unit_type, key));
        }
        fresh
    }

    /// `digest` with its children, blobs (those `held` says the repository
    /// has a unit of) and referrers.
    fn closure(
        &mut self,
        content: &Content,
        digest: &str,
        mut held: impl FnMut(&str) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        let mut todo = vec![digest.to_string()];
        while let Some(d) = todo.pop() {
            let Some(meta) = content.manifests.get(&d) else {
                continue;
            };
            if !self.push(MANIFEST, &d) {
                continue;
            }
            for blob in Content::blobs_of(meta) {
                if held(blob)? {
                    self.push(BLOB, blob);
                }
            }
            todo.extend(meta.manifests.iter().cloned());
            todo.extend(content.referrers(&d).iter().cloned());
        }
        Ok(())
    }
}

/// The units that make up `references`: a tag brings its tag unit and the
/// closure of its manifest, a digest the closure of its manifest.
pub fn select<H: Host + ?Sized>(
    host: &mut H,
    references: &[String],
) -> Result<Vec<UnitRef>, Error> {
    let parsed = references
        .iter()
        .map(|r| parse(r))
        .collect::<Result<Vec<_>, _>>()?;
    // Tags and blobs are looked up one by one: copying one tag out of
    // thousands reads that tag, not the thousands.
    let content = Content::manifests(host)?;
    let mut selection = Selection::default();
    for reference in parsed {
        let digest = match reference {
            Reference::Tag(name) => {
                let tags = model::tags_named(host, name)?;
                let Some(first) = tags.first() else {
                    return Err(Error::not_found(format!(
                        "tag {name} is not in the repository"
                    )));
                };
                let digest = model::tag_meta(first)?.manifest;
                for t in &tags {
                    selection.push(TAG, &t.key);
                }
                digest
            }
            Reference::Digest(digest) => digest.to_string(),
        };
        if !content.manifests.contains_key(&digest) {
            return Err(Error::not_found(format!(
                "manifest {digest} is not in the repository"
            )));
        }
        selection.closure(&content, &digest, |blob| {
            Ok(host.get_unit(BLOB, blob)?.is_some())
        })?;
    }
    Ok(selection.units)
}

/// Carry out `change` on the current repository.
pub fn edit<H: Host + ?Sized>(host: &mut H, change: &Change) -> Result<Summary, Error> {
    match change {
        Change::Remove(references) => remove(host, references),
        Change::Tag(t) => tag(host, &t.name, &t.target),
        Change::Adopt(units) => {
            let removed = wharf_sdk::adopt::replace_namesakes(host, units, TAG, |host, unit| {
                model::tags_named(host, &model::tag_meta(unit)?.name)
            })?;
            Ok(Summary::edited(
                0,
                removed,
                format!("{removed} tag(s) replaced by copied ones"),
            ))
        }
    }
}

/// Remove tags (the tag unit only) and manifests (with every tag on them,
/// and the children, referrers and blobs nothing remaining needs).
pub fn remove<H: Host + ?Sized>(host: &mut H, references: &[String]) -> Result<Summary, Error> {
    let parsed = references
        .iter()
        .map(|r| parse(r))
        .collect::<Result<Vec<_>, _>>()?;
    let content = Content::load(host)?;
    let mut tag_keys: BTreeSet<String> = BTreeSet::new();
    let mut explicit: BTreeSet<String> = BTreeSet::new();
    for reference in parsed {
        match reference {
            Reference::Tag(name) => {
                let tagged = content.tagged(name);
                if tagged.is_empty() {
                    return Err(Error::not_found(format!(
                        "tag {name} is not in the repository"
                    )));
                }
                tag_keys.extend(tagged.into_iter().map(|(key, _, _)| key.clone()));
            }
            Reference::Digest(_) => {
                explicit.insert(content.resolve(reference)?);
            }
        }
    }
    for digest in &explicit {
        if let Some(index) = content
            .parents(digest)
            .iter()
            .find(|i| !explicit.contains(*i))
        {
            return Err(Error::conflict(format!(
                "manifest {digest} belongs to index {index}; remove the index"
            )));
        }
    }

    // Manifests that go: those named, then the children and referrers of
    // those that go which no remaining index lists and no remaining tag
    // names (a child listed by another index is seen again when that one
    // goes).
    let tagged: HashSet<&String> = content
        .tags
        .iter()
        .filter(|(key, _, _)| !tag_keys.contains(key))
        .map(|(_, _, manifest)| manifest)
        .collect();
    let mut gone = explicit.clone();
    let mut todo: Vec<String> = explicit.iter().cloned().collect();
    while let Some(digest) = todo.pop() {
        let children = content.manifests.get(&digest).map(|m| &m.manifests);
        for next in children
            .into_iter()
            .flatten()
            .chain(content.referrers(&digest))
        {
            if gone.contains(next)
                || tagged.contains(next)
                || !content.manifests.contains_key(next)
                || content.parents(next).iter().any(|p| !gone.contains(p))
            {
                continue;
            }
            gone.insert(next.clone());
            todo.push(next.clone());
        }
    }
    let still_needed: HashSet<&String> = content
        .manifests
        .iter()
        .filter(|(d, _)| !gone.contains(*d))
        .flat_map(|(_, m)| Content::blobs_of(m))
        .collect();
    let blobs: BTreeSet<&String> = gone
        .iter()
        .filter_map(|d| content.manifests.get(d))
        .flat_map(Content::blobs_of)
        .filter(|b| content.blobs.contains(*b) && !still_needed.contains(b))
        .collect();
    for (key, _, manifest) in &content.tags {
        if gone.contains(manifest) {
            tag_keys.insert(key.clone());
        }
    }

    let mut removed = [0u64; 3];
    for (i, unit_type, keys) in [
        (0, TAG, tag_keys.iter().collect::<Vec<_>>()),
        (1, MANIFEST, gone.iter().collect()),
        (2, BLOB, blobs.into_iter().collect()),
    ] {
        for key in keys {
            if host.remove_unit(unit_type, key)? {
                removed[i] += 1;
            }
        }
    }
    let [tags, manifests, blobs] = removed;
    Ok(Summary::edited(
        0,
        tags + manifests + blobs,
        format!("removed {tags} tag(s), {manifests} manifest(s), {blobs} blob(s)"),
    ))
}

/// Point tag `name` at the manifest `target` (a tag or a digest of the
/// repository) names, as a push of that tag would.
pub fn tag<H: Host + ?Sized>(host: &mut H, name: &str, target: &str) -> Result<Summary, Error> {
    if !is_valid_tag(name) {
        return Err(Error::invalid_reference(format!(
            "invalid tag {name:?}: use [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
        )));
    }
    let digest = match parse(target)? {
        Reference::Tag(t) => match model::tags_named(host, t)?.first() {
            Some(unit) => model::tag_meta(unit)?.manifest,
            None => {
                return Err(Error::not_found(format!(
                    "tag {t} is not in the repository"
                )));
            }
        },
        Reference::Digest(d) => d.to_string(),
    };
    if !is_sha256_digest(&digest) || host.get_unit(MANIFEST, &digest)?.is_none() {
        return Err(Error::not_found(format!(
            "manifest {digest} is not in the repository"
        )));
    }
    let change = model::set_tag(host, name, &digest)?;
    let message = if change.added {
        format!("tagged {digest} as {name}")
    } else {
        format!("{name} already tags {digest}")
    };
    Ok(Summary::edited(
        u64::from(change.added),
        change.removed,
        message,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{blob_unit, manifest_unit, tag_key, tag_unit};
    use wharf_sdk::TagEdit;
    use wharf_sdk::testing::FakeHost;
    use wharf_sdk::testing::digest_of as d;

    fn image(host: &mut FakeHost, digest: &str, config: &str, layers: &[&str]) {
        for b in std::iter::once(&config).chain(layers) {
            host.pretend_stored(b);
            host.add_unit(&blob_unit(b, "application/octet-stream", 1))
                .unwrap();
        }
        let meta = ManifestMeta {
            media_type: crate::manifest::OCI_MANIFEST.into(),
            size: 10,
            config: Some(config.to_string()),
            layers: layers.iter().map(|l| l.to_string()).collect(),
            ..Default::default()
        };
        host.pretend_stored(digest);
        host.add_unit(&manifest_unit(digest, &meta)).unwrap();
    }

    fn index(host: &mut FakeHost, digest: &str, children: &[&str]) {
        let meta = ManifestMeta {
            media_type: crate::manifest::OCI_INDEX.into(),
            size: 10,
            manifests: children.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        };
        host.pretend_stored(digest);
        host.add_unit(&manifest_unit(digest, &meta)).unwrap();
    }

    fn referrer(host: &mut FakeHost, digest: &str, subject: &str, config: &str) {
        host.pretend_stored(config);
        host.add_unit(&blob_unit(config, "application/vnd.example", 1))
            .unwrap();
        let meta = ManifestMeta {
            media_type: crate::manifest::OCI_MANIFEST.into(),
            size: 10,
            config: Some(config.to_string()),
            subject: Some(subject.to_string()),
            ..Default::default()
        };
        host.pretend_stored(digest);
        host.add_unit(&manifest_unit(digest, &meta)).unwrap();
    }

    fn tag_it(host: &mut FakeHost, name: &str, digest: &str) {
        host.add_unit(&tag_unit(name, digest)).unwrap();
    }

    fn strings(refs: &[&str]) -> Vec<String> {
        refs.iter().map(|r| r.to_string()).collect()
    }

    fn sorted(units: Vec<UnitRef>) -> Vec<(String, String)> {
        let mut v: Vec<_> = units.into_iter().map(|u| (u.unit_type, u.key)).collect();
        v.sort();
        v
    }

    fn pairs(units: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<_> = units
            .iter()
            .map(|(t, k)| (t.to_string(), k.to_string()))
            .collect();
        v.sort();
        v
    }

    /// Two images sharing layer `1`, an index over both tagged `multi`,
    /// image `a` also tagged `a`, and a third image `c` tagged `c`.
    fn repository() -> FakeHost {
        let mut host = FakeHost::default();
        image(&mut host, &d('a'), &d('1'), &[&d('2'), &d('3')]);
        image(&mut host, &d('b'), &d('4'), &[&d('2'), &d('5')]);
        image(&mut host, &d('c'), &d('6'), &[&d('2')]);
        index(&mut host, &d('e'), &[&d('a'), &d('b')]);
        tag_it(&mut host, "multi", &d('e'));
        tag_it(&mut host, "c", &d('c'));
        host
    }

    #[test]
    fn select_of_a_tag_is_the_tag_and_its_closure() {
        let mut host = repository();
        let units = select(&mut host, &strings(&["c"])).unwrap();
        assert_eq!(
            sorted(units),
            pairs(&[
                (TAG, &tag_key("c", &d('c'))),
                (MANIFEST, &d('c')),
                (BLOB, &d('6')),
                (BLOB, &d('2')),
            ])
        );
    }

    #[test]
    fn select_of_an_index_includes_its_children_once() {
        let mut host = repository();
        let units = select(&mut host, &strings(&["multi", &d('e'), &d('a')])).unwrap();
        assert_eq!(units.len(), 9, "no duplicates");
        assert_eq!(
            sorted(units),
            pairs(&[
                (TAG, &tag_key("multi", &d('e'))),
                (MANIFEST, &d('e')),
                (MANIFEST, &d('a')),
                (MANIFEST, &d('b')),
                (BLOB, &d('1')),
                (BLOB, &d('2')),
                (BLOB, &d('3')),
                (BLOB, &d('4')),
                (BLOB, &d('5')),
            ])
        );
        // A digest brings no tags.
        let by_digest = select(&mut host, &strings(&[&d('c')])).unwrap();
        assert!(by_digest.iter().all(|u| u.unit_type != TAG));
    }

    #[test]
    fn select_brings_referrers_along() {
        let mut host = repository();
        referrer(&mut host, &d('f'), &d('c'), &d('7'));
        let units = sorted(select(&mut host, &strings(&[&d('c')])).unwrap());
        assert!(units.contains(&(MANIFEST.into(), d('f'))));
        assert!(units.contains(&(BLOB.into(), d('7'))));
    }

    #[test]
    fn select_refuses_unknown_and_malformed_references() {
        let mut host = repository();
        let e = select(&mut host, &strings(&["nope"])).unwrap_err();
        assert_eq!(e.code, "not-found");
        assert!(e.message.contains("nope"), "{}", e.message);
        let e = select(&mut host, &strings(&[&d('9')])).unwrap_err();
        assert_eq!(e.code, "not-found");
        assert!(e.message.contains(&d('9')), "{}", e.message);
        for bad in ["-x", "a/b", "sha256:abc", "md5:00"] {
            assert_eq!(
                select(&mut host, &strings(&[bad])).unwrap_err().code,
                "invalid",
                "{bad}"
            );
        }
    }

    #[test]
    fn removing_a_tag_removes_the_tag_only() {
        let mut host = repository();
        let s = remove(&mut host, &strings(&["c"])).unwrap();
        assert_eq!(s.units_removed, 1);
        assert!(host.repo_keys(TAG).iter().all(|k| !k.starts_with("c@")));
        assert!(host.repo_unit(MANIFEST, &d('c')).is_some());
        assert_eq!(
            remove(&mut host, &strings(&["c"])).unwrap_err().code,
            "not-found"
        );
    }

    #[test]
    fn removing_a_manifest_keeps_a_layer_another_needs() {
        let mut host = repository();
        let s = remove(&mut host, &strings(&[&d('c')])).unwrap();
        // The tag c, the manifest, its config; layer 2 is shared.
        assert_eq!(s.units_removed, 3, "{}", s.message);
        assert!(host.repo_unit(MANIFEST, &d('c')).is_none());
        assert!(host.repo_unit(BLOB, &d('6')).is_none());
        assert!(host.repo_unit(BLOB, &d('2')).is_some());
        assert_eq!(host.repo_keys(TAG), vec![tag_key("multi", &d('e'))]);
    }

    #[test]
    fn removing_an_index_takes_its_children_unless_needed() {
        let mut host = repository();
        // `a` is tagged on its own: it stays, with its blobs.
        tag_it(&mut host, "a", &d('a'));
        referrer(&mut host, &d('f'), &d('b'), &d('7'));
        let s = remove(&mut host, &strings(&[&d('e')])).unwrap();
        // Tag multi; manifests e, b and b's referrer f; blobs 4, 5 and 7.
        assert_eq!(s.units_removed, 7, "{}", s.message);
        assert_eq!(host.repo_keys(MANIFEST), vec![d('a'), d('c')]);
        assert_eq!(host.repo_keys(BLOB), vec![d('1'), d('2'), d('3'), d('6')]);
        assert_eq!(
            host.repo_keys(TAG),
            vec![tag_key("a", &d('a')), tag_key("c", &d('c'))]
        );
    }

    #[test]
    fn a_child_another_index_lists_stays() {
        let mut host = repository();
        index(&mut host, &d('d'), &[&d('b'), &d('c')]);
        let s = remove(&mut host, &strings(&[&d('e')])).unwrap();
        // Tag multi; manifests e and a; blobs 1 and 3 (b is d's child too).
        assert_eq!(s.units_removed, 5, "{}", s.message);
        assert_eq!(host.repo_keys(MANIFEST), vec![d('b'), d('c'), d('d')]);
        // Then d takes b with it, but not c, which is tagged.
        remove(&mut host, &strings(&[&d('d')])).unwrap();
        assert_eq!(host.repo_keys(MANIFEST), vec![d('c')]);
        assert_eq!(host.repo_keys(BLOB), vec![d('2'), d('6')]);
    }

    #[test]
    fn removing_a_child_of_a_remaining_index_conflicts() {
        let mut host = repository();
        let e = remove(&mut host, &strings(&[&d('a')])).unwrap_err();
        assert_eq!(e.code, "conflict");
        assert!(e.message.contains(&d('e')), "{}", e.message);
        assert!(host.repo_unit(MANIFEST, &d('a')).is_some());
        // With its index, it goes.
        remove(&mut host, &strings(&[&d('a'), &d('e')])).unwrap();
        assert_eq!(host.repo_keys(MANIFEST), vec![d('c')]);
    }

    #[test]
    fn an_adopted_tag_replaces_its_namesake_and_nothing_else() {
        let mut host = repository();
        // `c` copied in from elsewhere, pointing at b: the old `c` goes.
        let copied = tag_unit("c", &d('b'));
        host.add_unit(&copied).unwrap();
        let adopted = vec![UnitRef::new(TAG, copied.key.clone())];
        let s = edit(&mut host, &Change::Adopt(adopted)).unwrap();
        assert_eq!(s.units_removed, 1, "{}", s.message);
        assert_eq!(
            host.repo_keys(TAG),
            vec![tag_key("c", &d('b')), tag_key("multi", &d('e'))]
        );
        assert!(
            host.repo_unit(MANIFEST, &d('c')).is_some(),
            "manifests stay"
        );
        // Adopting what the repository does not hold is refused.
        let missing = vec![UnitRef::new(TAG, tag_key("zz", &d('b')))];
        let e = edit(&mut host, &Change::Adopt(missing)).unwrap_err();
        assert_eq!(e.code, "not-found");
    }

    #[test]
    fn tagging_adds_a_pushed_tag_and_repoints() {
        let mut host = repository();
        let s = tag(&mut host, "prod", "c").unwrap();
        assert_eq!((s.units_added, s.units_removed), (1, 0));
        let unit = host.repo_unit(TAG, &tag_key("prod", &d('c'))).unwrap();
        // Exactly what a push or an import records.
        let pushed = tag_unit("prod", &d('c'));
        assert_eq!(
            (unit.key, unit.metadata, unit.blobs),
            (pushed.key, pushed.metadata, pushed.blobs)
        );
        let s = edit(
            &mut host,
            &Change::Tag(TagEdit {
                name: "prod".into(),
                target: d('e'),
            }),
        )
        .unwrap();
        assert_eq!((s.units_added, s.units_removed), (1, 1));
        assert_eq!(
            host.repo_keys(TAG),
            vec![
                tag_key("c", &d('c')),
                tag_key("multi", &d('e')),
                tag_key("prod", &d('e'))
            ]
        );
    }

    #[test]
    fn tagging_refuses_bad_names_and_unknown_targets() {
        let mut host = repository();
        assert_eq!(tag(&mut host, ".x", "c").unwrap_err().code, "invalid");
        assert_eq!(tag(&mut host, "ok", "a b").unwrap_err().code, "invalid");
        assert_eq!(tag(&mut host, "ok", "nope").unwrap_err().code, "not-found");
        let e = tag(&mut host, "ok", &d('9')).unwrap_err();
        assert_eq!(e.code, "not-found");
        assert!(e.message.contains(&d('9')));
        assert!(host.repo_keys(TAG).iter().all(|k| !k.starts_with("ok@")));
    }
}
