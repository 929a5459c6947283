//! The distributor: turn a repository's units into a publication index.
//!
//! A publish starts from the publication it replaces when it can: it reads
//! the units changed since the version that one serves and rewrites the
//! shards of the index they fall in ([`PublicationIndex::update`]), so a
//! push into a repository of 10,000 tags publishes in the time of one tag.
//! Without a previous publication (or when its version is gone, its index
//! is of format version 1 or predates loose tags, or more than a quarter
//! of it changed) it builds the index from every unit; so it does, with a
//! warning, when the previous index is corrupt: its root fails
//! [`PublicationIndex::validate`], or a shard the update reads does not
//! match the root.

use crate::index::{Changes, Content, MAX_INDEX, PublicationIndex, View};
use crate::model::{BLOB, MANIFEST, TAG};
use crate::reference::is_valid_name;
use crate::shards::{self, MAX_SHARD, ShardIo, ShardRead, ShardValue};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use wharf_sdk::host::Host;
use wharf_sdk::json::Versioned;
use wharf_sdk::log::Level;
use wharf_sdk::paging::{changes_since, list_all};
use wharf_sdk::{Error, Published, Repository, Summary};

#[derive(Debug, Default, Deserialize)]
pub struct DistributorConfig {
    pub repo_registry_id: Option<String>,
    pub redirect_url: Option<String>,
    /// Publish after every push, so pushed tags are visible at once.
    pub auto_publish: Option<bool>,
}

pub fn parse_config(json: &str) -> Result<DistributorConfig, Error> {
    let config: DistributorConfig = wharf_sdk::json::settings(json)
        .map_err(|e| Error::invalid(format!("distributor settings are not valid JSON: {e}")))?;
    if let Some(url) = config.redirect_url.as_deref().filter(|u| !u.is_empty())
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(Error::invalid(format!(
            "redirect_url {url:?} must be an http:// or https:// URL"
        )));
    }
    Ok(config)
}

/// The name clients pull by: `repo_registry_id`, else the repository id.
/// Path components the registry's routes use after a name: a name holding
/// one could be split two ways (`a/manifests` + `latest` or `a` +
/// `manifests/latest`).
const ROUTE_WORDS: [&str; 5] = ["manifests", "blobs", "tags", "uploads", "referrers"];

pub fn registry_name(config: &DistributorConfig, repo_id: &str) -> Result<String, Error> {
    let (name, from) = match config.repo_registry_id.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => (name, "repo_registry_id"),
        None => (repo_id, "the repository id"),
    };
    check_name(name)
        .map(|()| name.to_string())
        .map_err(|why| Error::invalid(format!("{from} {name:?} {why}; set repo_registry_id")))
}

/// Whether clients can use `name`; `Err` ends a sentence that starts with
/// the name.
pub fn check_name(name: &str) -> Result<(), String> {
    if !is_valid_name(name) {
        return Err(
            "is not a valid registry name: use lowercase path components \
             ([a-z0-9] separated by '.', '_' or '-') joined by '/'"
                .to_string(),
        );
    }
    if let Some(word) = name.split('/').find(|c| ROUTE_WORDS.contains(c)) {
        return Err(format!(
            "has the path component {word:?}, which the registry's routes use \
             (/v2/<name>/{word}/...): a request path could then name two repositories; \
             choose a name without {}",
            ROUTE_WORDS.join(", ")
        ));
    }
    Ok(())
}

/// Build and store the publication index of the version being published.
pub fn publish<H: Host>(host: &mut H, repo: &Repository) -> Result<Published, Error> {
    let config = parse_config(&repo.distributor_config)?;
    let name = registry_name(&config, &repo.id)?;
    let mut io = HostShards {
        host,
        read: HashMap::new(),
        stored: 0,
    };
    let (index, warnings, how) = match from_previous(&mut io)? {
        Some(done) => done,
        None => {
            let tags = list_all(io.host, TAG)?;
            let manifests = list_all(io.host, MANIFEST)?;
            let blobs = list_all(io.host, BLOB)?;
            let (content, warnings) = Content::build(&tags, &manifests, &blobs);
            let index = content.write(&mut io).map_err(shard_error)?;
            (index, warnings, "from every unit".to_string())
        }
    };
    let host = io.host;
    for warning in &warnings {
        host.log(Level::Warn, warning);
    }
    let bytes = index.to_bytes();
    let digest = host.store_bytes(&bytes, None)?;
    let message = format!(
        "published {name}: {} tag(s), {} manifest(s), {} blob(s), {how}",
        index.tags.len(),
        index.manifests.len(),
        index.blobs.len()
    );
    host.log(Level::Info, &message);
    Ok(Published {
        name,
        index: digest,
        summary: Summary {
            units_added: 0,
            units_removed: 0,
            bytes_stored: io.stored + bytes.len() as u64,
            message,
        },
    })
}

/// The index of the publication this one replaces, moved forward by the
/// units changed since the version it serves; `None` when there is none
/// to start from (then every unit is read).
fn from_previous<H: Host>(
    io: &mut HostShards<'_, H>,
) -> Result<Option<(PublicationIndex, Vec<String>, String)>, Error> {
    let Some(previous) = io.host.previous() else {
        return Ok(None);
    };
    let Some(root) = previous_root(io.host, &previous.index) else {
        return Ok(None);
    };
    // Past a quarter of the index, reading every unit costs less.
    let held = root.tags.len() + root.manifests.len() + root.blobs.len();
    let mut cap = (held / 4).max(2 * MAX_SHARD);
    let mut changes = Changes::default();
    for (unit_type, into) in [
        (TAG, &mut changes.tags),
        (MANIFEST, &mut changes.manifests),
        (BLOB, &mut changes.blobs),
    ] {
        match changes_since(io.host, previous.version, unit_type, cap) {
            Ok(Some(changed)) => {
                cap -= changed.len();
                *into = changed;
            }
            Ok(None) => return Ok(None),
            // The version limit dropped that version.
            Err(e) if e.code == "not-found" => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    match root.update(io, &changes) {
        Ok((index, warnings)) => {
            let how = format!(
                "{} unit(s) changed since version {}",
                changes.len(),
                previous.version
            );
            Ok(Some((index, warnings, how)))
        }
        Err(e) => {
            let why = format!("the previous index cannot be updated ({e}); rebuilding it");
            io.host.log(Level::Warn, &why);
            Ok(None)
        }
    }
}

/// The root of the index the previous publication serves, checked
/// ([`PublicationIndex::validate`]), if an update can start from it: not
/// one of format version 1, unreadable, corrupt (said in a warning), or
/// written before loose tags were kept.
fn previous_root<H: Host>(host: &mut H, digest: &str) -> Option<PublicationIndex> {
    let bytes = host.read_blob(digest, MAX_INDEX).ok()?;
    let why = match PublicationIndex::from_bytes(&bytes) {
        Ok(root) => match root.validate() {
            Ok(()) if root.loose_tags.is_some() => return Some(root),
            Ok(()) => {
                host.log(
                    Level::Info,
                    "the previous index predates loose tags; rebuilding it",
                );
                return None;
            }
            Err(e) => e,
        },
        // One of format version 1 is rebuilt as a matter of course.
        Err(_) if matches!(View::read(&bytes), Ok(View::Whole(_))) => return None,
        Err(e) => e,
    };
    host.log(
        Level::Warn,
        &format!("the previous index cannot be updated ({why}); rebuilding it"),
    );
    None
}

/// Shards through the host: read (once per publish) and stored as blobs;
/// a shard kept from the previous publication is stat'ed, which tells the
/// host to keep serving it.
struct HostShards<'a, H: Host> {
    host: &'a mut H,
    read: HashMap<String, shards::AnyShard>,
    /// Bytes of the shards stored.
    stored: u64,
}

impl<H: Host> ShardRead for HostShards<'_, H> {
    fn read_shard<V: ShardValue>(
        &mut self,
        digest: &str,
    ) -> Result<Rc<BTreeMap<String, V>>, String> {
        if let Some(shard) = self.read.get(digest) {
            return shards::typed(shard, digest);
        }
        let bytes = self
            .host
            .read_blob(digest, MAX_INDEX)
            .map_err(|e| e.message)?;
        let shard = shards::parse_any::<V>(&bytes)?;
        self.read.insert(digest.to_string(), shard.clone());
        shards::typed(&shard, digest)
    }
}

impl<H: Host> ShardIo for HostShards<'_, H> {
    fn write_shard(&mut self, bytes: &[u8]) -> Result<String, String> {
        self.stored += bytes.len() as u64;
        self.host.store_bytes(bytes, None).map_err(|e| e.message)
    }

    fn keep_shard(&mut self, digest: &str) -> Result<(), String> {
        self.host
            .stat(digest)
            .map(|_| ())
            .ok_or_else(|| format!("shard {digest} of the previous index is not readable"))
    }
}

fn shard_error(message: String) -> Error {
    Error::new("io", format!("writing the publication index: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ManifestMeta, blob_unit, manifest_unit, tag_unit};
    use std::collections::BTreeSet;
    use wharf_sdk::publications::PublishedBefore;
    use wharf_sdk::testing::FakeHost;

    fn repo(id: &str, config: &str) -> Repository {
        Repository {
            id: id.into(),
            content_type: "docker".into(),
            importer_config: String::new(),
            distributor_config: config.into(),
        }
    }

    #[test]
    fn names_and_settings() {
        let none = DistributorConfig::default();
        assert_eq!(registry_name(&none, "busybox").unwrap(), "busybox");
        let err = registry_name(&none, "My Repo").unwrap_err();
        assert_eq!(err.code, "invalid-input");
        assert!(err.message.contains("repo_registry_id"), "{}", err.message);
        let c = parse_config(r#"{"repo_registry_id": "team/app"}"#).unwrap();
        assert_eq!(registry_name(&c, "ignored id").unwrap(), "team/app");
        let c = parse_config(r#"{"repo_registry_id": "Team/App"}"#).unwrap();
        assert!(
            registry_name(&c, "x")
                .unwrap_err()
                .message
                .contains("Team/App")
        );
        assert!(parse_config("{").is_err());
        assert!(parse_config(r#"{"redirect_url": "ftp://x"}"#).is_err());
        assert!(parse_config(r#"{"redirect_url": "https://cdn/x"}"#).is_ok());
        assert!(parse_config("").is_ok());
    }

    #[test]
    fn publishes_an_index_of_the_repository() {
        let mut host = FakeHost::default();
        let m = host.store_bytes(b"manifest", None).unwrap();
        let c = host.store_bytes(b"config", None).unwrap();
        let l = host.store_bytes(b"layer", None).unwrap();
        host.add_unit(&blob_unit(&c, "c", 6)).unwrap();
        host.add_unit(&blob_unit(&l, "l", 5)).unwrap();
        let meta = ManifestMeta {
            media_type: crate::manifest::DOCKER_MANIFEST.into(),
            size: 8,
            config: Some(c.clone()),
            layers: vec![l.clone()],
            manifests: vec![],
            ..Default::default()
        };
        host.add_unit(&manifest_unit(&m, &meta)).unwrap();
        host.add_unit(&tag_unit("latest", &m)).unwrap();

        let published =
            publish(&mut host, &repo("r1", r#"{"repo_registry_id":"my/app"}"#)).unwrap();
        assert_eq!(published.name, "my/app");
        let content = content_of(&mut host, &published.index);
        assert_eq!(content.tags["latest"], m);
        assert_eq!(
            content.manifests[&m].media_type,
            crate::manifest::DOCKER_MANIFEST
        );
        assert_eq!(content.blobs.len(), 3);
        assert!(published.summary.message.contains("1 tag(s)"));
        assert!(published.summary.message.contains("from every unit"));

        // Publishing unchanged content yields the same index blob.
        assert_eq!(
            publish(&mut host, &repo("r1", r#"{"repo_registry_id":"my/app"}"#))
                .unwrap()
                .index,
            published.index
        );
    }

    /// What an index holds.
    fn content_of(host: &mut FakeHost, index: &str) -> Content {
        let root = PublicationIndex::from_bytes(&host.blob(index).unwrap()).unwrap();
        let mut io = HostShards {
            host,
            read: HashMap::new(),
            stored: 0,
        };
        root.content(&mut io).unwrap()
    }

    /// A repository `r1` of `tags` small images (tags `t00000`…), published
    /// once: the host, the repository, the publication and its version.
    fn published_with_tags(tags: u32) -> (FakeHost, Repository, Published, u64) {
        let mut host = FakeHost::default();
        for n in 0..tags {
            push(&mut host, &format!("t{n:05}"), n);
        }
        let r = repo("r1", "");
        let first = publish(&mut host, &r).unwrap();
        let version = host.snapshot();
        (host, r, first, version)
    }

    /// Store a small image tagged `tag`; its manifest digest.
    fn push(host: &mut FakeHost, tag: &str, n: u32) -> String {
        let l = host
            .store_bytes(format!("layer {n}").as_bytes(), None)
            .unwrap();
        let meta = ManifestMeta {
            media_type: crate::manifest::OCI_MANIFEST.into(),
            size: 8,
            layers: vec![l.clone()],
            ..Default::default()
        };
        let m = host
            .store_bytes(format!("manifest {n}").as_bytes(), None)
            .unwrap();
        host.add_unit(&blob_unit(&l, "l", 7)).unwrap();
        host.add_unit(&manifest_unit(&m, &meta)).unwrap();
        host.add_unit(&tag_unit(tag, &m)).unwrap();
        m
    }

    #[test]
    fn a_publish_after_a_push_reads_only_what_changed() {
        let (mut host, r, first, version) = published_with_tags(2000);
        host.previous = Some(PublishedBefore {
            name: "r1".into(),
            index: first.index.clone(),
            version,
        });
        // Move one tag, add one image, remove one tag.
        let moved = push(&mut host, "t00007", 9000);
        push(&mut host, "new", 9001);
        let was = content_of(&mut host, &first.index).tags["t00007"].clone();
        host.remove_unit(TAG, &crate::model::tag_key("t00007", &was))
            .unwrap();
        let gone = content_of(&mut host, &first.index).tags["t00100"].clone();
        host.remove_unit(TAG, &crate::model::tag_key("t00100", &gone))
            .unwrap();
        let stored_before = host.blobs.borrow().len();
        let next = publish(&mut host, &r).unwrap();
        assert!(
            next.summary
                .message
                .contains(&format!("unit(s) changed since version {version}")),
            "{}",
            next.summary.message
        );
        // A few shards and the root, not the whole index again.
        let written = host.blobs.borrow().len() - stored_before;
        assert!(written <= 8, "{written} blobs written");
        assert!(next.summary.bytes_stored < first.summary.bytes_stored / 4);
        // The same content a publish of every unit makes.
        let content = content_of(&mut host, &next.index);
        assert_eq!(content.tags["t00007"], moved);
        assert!(content.tags.contains_key("new"));
        assert!(!content.tags.contains_key("t00100"));
        let all = |host: &mut FakeHost, t| list_all(host, t).unwrap();
        let (built, _) = Content::build(
            &all(&mut host, TAG),
            &all(&mut host, MANIFEST),
            &all(&mut host, BLOB),
        );
        assert_eq!(content, built);

        // More than a quarter of the index changed: everything is read.
        let version = host.snapshot();
        host.previous = Some(PublishedBefore {
            name: "r1".into(),
            index: next.index.clone(),
            version,
        });
        for n in 0..1000 {
            push(&mut host, &format!("u{n:05}"), 10_000 + n);
        }
        let big = publish(&mut host, &r).unwrap();
        assert!(
            big.summary.message.contains("from every unit"),
            "{}",
            big.summary.message
        );
        let (built, _) = Content::build(
            &all(&mut host, TAG),
            &all(&mut host, MANIFEST),
            &all(&mut host, BLOB),
        );
        assert_eq!(content_of(&mut host, &big.index), built);

        // The version it started from is gone: everything is read again.
        host.previous.as_mut().unwrap().version = 99;
        let again = publish(&mut host, &r).unwrap();
        assert!(again.summary.message.contains("from every unit"));
        assert_eq!(content_of(&mut host, &again.index), built);
    }

    /// Publish `r` replacing `before` (an index and the version it
    /// serves); the publication, what a build of every unit makes, and
    /// the version the new one serves.
    fn publish_after(
        host: &mut FakeHost,
        r: &Repository,
        (index, version): (&str, u64),
    ) -> (Published, Content, u64) {
        host.previous = Some(PublishedBefore {
            name: r.id.clone(),
            index: index.to_string(),
            version,
        });
        host.logs.clear();
        let published = publish(host, r).unwrap();
        let all = |host: &mut FakeHost, t| list_all(host, t).unwrap();
        let (built, _) = Content::build(&all(host, TAG), &all(host, MANIFEST), &all(host, BLOB));
        (published, built, host.snapshot())
    }

    /// `got` is `want`; on failure, says how they differ in short.
    fn assert_same(got: &Content, want: &Content) {
        let tags = |c: &Content| -> BTreeSet<(String, String)> {
            c.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let differ: Vec<_> = tags(got)
            .symmetric_difference(&tags(want))
            .cloned()
            .collect();
        assert!(
            got == want,
            "tags differing: {differ:?}; loose: {:?} and {:?}",
            got.loose_tags,
            want.loose_tags
        );
    }

    #[test]
    fn tags_copied_before_their_manifest_are_published_when_it_comes() {
        let (mut host, r, first, version) = published_with_tags(600);
        // A tag copied in before its manifest (as a copy by unit type can).
        let m = host.store_bytes(b"manifest 9000", None).unwrap();
        let l = host.store_bytes(b"layer 9000", None).unwrap();
        host.add_unit(&tag_unit("early", &m)).unwrap();
        let (waiting, built, version) = publish_after(&mut host, &r, (&first.index, version));
        let message = &waiting.summary.message;
        assert!(message.contains("changed since"), "{message}");
        let content = content_of(&mut host, &waiting.index);
        assert!(!content.tags.contains_key("early"));
        assert!(content.loose_tags.contains_key("early"));
        assert_same(&content, &built);

        // Its manifest comes; the tag does not change.
        let meta = ManifestMeta {
            media_type: crate::manifest::OCI_MANIFEST.into(),
            size: 8,
            layers: vec![l.clone()],
            ..Default::default()
        };
        host.add_unit(&blob_unit(&l, "l", 7)).unwrap();
        host.add_unit(&manifest_unit(&m, &meta)).unwrap();
        let (came, built, version) = publish_after(&mut host, &r, (&waiting.index, version));
        let message = &came.summary.message;
        assert!(message.contains("changed since"), "{message}");
        let content = content_of(&mut host, &came.index);
        assert_eq!(content.tags.get("early"), Some(&m));
        assert_same(&content, &built);

        // It goes; the tag stays in the repository but is not served.
        host.remove_unit(MANIFEST, &m).unwrap();
        let (went, built, _) = publish_after(&mut host, &r, (&came.index, version));
        let message = &went.summary.message;
        assert!(message.contains("changed since"), "{message}");
        let content = content_of(&mut host, &went.index);
        assert!(!content.tags.contains_key("early"));
        assert_same(&content, &built);
    }

    /// A change that makes an index root corrupt.
    type Corruption = fn(&mut PublicationIndex);

    /// The index `index` with `corrupt` applied to its root, stored.
    fn corrupted(
        host: &mut FakeHost,
        index: &str,
        corrupt: impl FnOnce(&mut PublicationIndex),
    ) -> String {
        let mut root = PublicationIndex::from_bytes(&host.blob(index).unwrap()).unwrap();
        corrupt(&mut root);
        host.store_bytes(&root.to_bytes(), None).unwrap()
    }

    #[test]
    fn a_publish_from_a_corrupt_index_rebuilds_it() {
        let (mut host, r, first, version) = published_with_tags(600);
        // Two tags moved: their update reads the tags shards 0 and 1.
        push(&mut host, "t00010", 9010);
        push(&mut host, "t00300", 9300);
        for name in ["t00010", "t00300"] {
            let was = content_of(&mut host, &first.index).tags[name].clone();
            host.remove_unit(TAG, &crate::model::tag_key(name, &was))
                .unwrap();
        }
        let publish_from = |host: &mut FakeHost, index: &str| {
            host.previous = Some(PublishedBefore {
                name: "r1".into(),
                index: index.to_string(),
                version,
            });
            host.logs.clear();
            publish(host, &r).unwrap()
        };
        let all = |host: &mut FakeHost, t| list_all(host, t).unwrap();
        let (built, _) = Content::build(
            &all(&mut host, TAG),
            &all(&mut host, MANIFEST),
            &all(&mut host, BLOB),
        );
        // As written, the index is updated.
        let good = publish_from(&mut host, &first.index);
        assert!(
            good.summary.message.contains("changed since"),
            "{}",
            good.summary.message
        );
        assert_same(&content_of(&mut host, &good.index), &built);

        let cases: [(Corruption, &str); 9] = [
            // The root alone tells.
            (|i| i.tags.0.swap(0, 1), "its map tags starts its shard 1"),
            (
                |i| i.tags.0[1].first = i.tags.0[0].first.clone(),
                "its map tags starts",
            ),
            (|i| i.manifests.0[0].len = 0, "holds 0 entries"),
            // A length that would lift the limit past which it rebuilds.
            (
                |i| i.blobs.0[0].len = 1 << 40,
                "holds 1099511627776 entries",
            ),
            (
                |i| i.manifests.0[1].digest = "md5:x".into(),
                "is not a sha256 digest",
            ),
            // The shards read tell.
            (
                |i| i.tags.0.iter_mut().for_each(|s| s.len -= 1),
                "where the index says 255",
            ),
            (|i| i.tags.0[1].first = "t00255".into(), "\"t00255\""),
            (
                |i| i.tags.0[1].digest = i.tags.0[2].digest.clone(),
                "is not the one the index names",
            ),
            // A shard of another map.
            (
                |i| i.tags.0[0].digest = i.manifests.0[0].digest.clone(),
                "publication index shard is not valid",
            ),
        ];
        // One written before loose tags were kept is rebuilt, quietly.
        let older = corrupted(&mut host, &first.index, |i| i.loose_tags = None);
        let rebuilt = publish_from(&mut host, &older);
        assert!(rebuilt.summary.message.contains("from every unit"));
        assert_eq!(
            host.logs[0],
            "the previous index predates loose tags; rebuilding it"
        );
        assert_same(&content_of(&mut host, &rebuilt.index), &built);

        for (corrupt, says) in cases {
            let bad = corrupted(&mut host, &first.index, corrupt);
            let rebuilt = publish_from(&mut host, &bad);
            let message = &rebuilt.summary.message;
            assert!(message.contains("from every unit"), "{says}: {message}");
            assert_same(&content_of(&mut host, &rebuilt.index), &built);
            assert!(
                host.logs
                    .iter()
                    .any(|l| l.contains("rebuilding it") && l.contains(says)),
                "{says}: {:?}",
                host.logs
            );
        }
    }
}
