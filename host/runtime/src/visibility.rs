//! What a request may see: the host's half of the trust rule
//! (docs/access.md). The access gate admits a registry request for one
//! repository; everything a plugin then opens, stats, links or plans to
//! serve is checked here, so a plugin is trusted to parse, never to
//! authorise.
//!
//! - [`Served`]: the blobs a published repository serves: its index, the
//!   blobs of the units of the repository version it serves, and what its
//!   publish stored or read (`Publication::blobs`). Kept warm in
//!   [`ServedSets`], so the hot path never asks the database, and moved
//!   from one publication to the next by the units that changed between
//!   their versions, so a publish after a push costs the push's size, not
//!   the repository's.
//! - [`Reader`]: whether the caller of the current request may read a
//!   repository; a digest held by a repository the caller may read may be
//!   mounted or linked by it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use wharf_core::digest::Digest;
use wharf_core::ids::RepoId;
use wharf_store::db::{Publication, RepoVersion, Store, StoreError, StoreResult, Timestamp};

/// Whether the caller of the current request may read a repository.
pub type Reader = Arc<dyn Fn(&RepoId) -> bool + Send + Sync>;

/// A reader that may read nothing (tasks, anonymous callers of protected
/// content).
pub fn no_reader() -> Reader {
    Arc::new(|_: &RepoId| false)
}

/// The blobs one publication of a repository serves. When the repository
/// is published again it becomes the next publication's set in place
/// ([`ServedSets::get`]): a request that holds it sees one publication's
/// set or the next one's, never a mix of the two.
#[derive(Debug)]
pub struct Served {
    pub repo: RepoId,
    state: RwLock<ServedState>,
}

#[derive(Debug, Default)]
struct ServedState {
    /// The publication it is of: its index and when it was published.
    index: Option<Digest>,
    published_at: Option<Timestamp>,
    /// The repository version whose units `units` counts, and when that
    /// version was made: a repository deleted and made again under the
    /// same id numbers its versions again, and must not be moved from the
    /// old one's.
    version: Option<(u64, Timestamp)>,
    /// The blobs of those units, with how many of the units name each.
    units: HashMap<Digest, u32>,
    /// What the publish stored or read (and, for a publication from
    /// before versions, everything it serves).
    parts: HashSet<Digest>,
}

impl Served {
    /// A set of exactly `blobs`.
    #[cfg(test)]
    pub fn new(repo: RepoId, blobs: impl IntoIterator<Item = Digest>) -> Self {
        Served {
            repo,
            state: RwLock::new(ServedState {
                parts: blobs.into_iter().collect(),
                ..ServedState::default()
            }),
        }
    }

    pub fn contains(&self, d: &Digest) -> bool {
        let s = self.state.read().unwrap();
        s.index.as_ref() == Some(d) || s.units.contains_key(d) || s.parts.contains(d)
    }

    /// Whether this is the set of `p`.
    fn is_of(&self, p: &Publication) -> bool {
        let s = self.state.read().unwrap();
        s.index.as_ref() == Some(&p.index)
            && s.published_at.as_ref() == Some(&p.published_at)
            && s.version.as_ref().map(|(n, _)| *n) == p.version
    }

    /// The version whose units it counts.
    fn version(&self) -> Option<(u64, Timestamp)> {
        self.state.read().unwrap().version.clone()
    }
}

/// One repository's served set, and the lock that one update at a time
/// holds while it reads the store.
#[derive(Default)]
struct Slot {
    served: Mutex<Option<Arc<Served>>>,
    update: tokio::sync::Mutex<()>,
}

/// The served set of every repository's current publication, built on
/// first use (shared by concurrent requests) and moved forward when the
/// repository is published again.
#[derive(Default)]
pub struct ServedSets {
    by_repo: Mutex<HashMap<RepoId, Arc<Slot>>>,
}

impl ServedSets {
    /// What `p` serves: its index, the blobs of the units of the version
    /// it serves, and the blobs it recorded at publish time (a publication
    /// from before versions: those alone, or its repository's units' blobs
    /// when it recorded none).
    ///
    /// The first time, one store query reads the version's blobs. After
    /// that, a new publication of the repository moves the set forward by
    /// the units that changed between the two versions (`diff_versions`),
    /// falling back to a whole read when the earlier version is gone.
    pub async fn get(&self, store: &dyn Store, p: &Publication) -> StoreResult<Arc<Served>> {
        let slot = {
            let mut map = self.by_repo.lock().unwrap();
            match map.get(&p.repo_id) {
                Some(slot) => slot.clone(),
                None => map.entry(p.repo_id.clone()).or_default().clone(),
            }
        };
        let current = || slot.served.lock().unwrap().clone();
        if let Some(served) = current().filter(|s| s.is_of(p)) {
            return Ok(served);
        }
        let _one_update = slot.update.lock().await;
        let held = current();
        if let Some(served) = held.as_ref().filter(|s| s.is_of(p)) {
            return Ok(served.clone());
        }
        if let Some(served) = held
            && let (Some(from), Some(to)) = (served.version(), p.version)
        {
            match moved(store, p, from, to).await {
                Ok(Some((units, gone, made))) => {
                    let mut s = served.state.write().unwrap();
                    for (d, n) in units {
                        *s.units.entry(d).or_default() += n;
                    }
                    for (d, n) in gone {
                        if let Some(held) = s.units.get_mut(&d) {
                            *held = held.saturating_sub(n);
                            if *held == 0 {
                                s.units.remove(&d);
                            }
                        }
                    }
                    s.version = Some((to, made));
                    s.index = Some(p.index.clone());
                    s.published_at = Some(p.published_at.clone());
                    s.parts = p.blobs.iter().cloned().collect();
                    drop(s);
                    return Ok(served);
                }
                // Much changed, or the earlier version is gone: read the
                // whole set.
                Ok(None) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let served = Arc::new(whole(store, p).await?);
        *slot.served.lock().unwrap() = Some(served.clone());
        Ok(served)
    }

    /// Forget a repository (deleted, or its content changed in place).
    pub fn forget(&self, repo: &RepoId) {
        self.by_repo.lock().unwrap().remove(repo);
    }
}

/// What `p` serves, read whole.
async fn whole(store: &dyn Store, p: &Publication) -> StoreResult<Served> {
    let mut state = ServedState {
        index: Some(p.index.clone()),
        published_at: Some(p.published_at.clone()),
        version: None,
        parts: p.blobs.iter().cloned().collect(),
        units: HashMap::new(),
    };
    match p.version {
        Some(v) => {
            let made = made_at(store, p, v).await?;
            state.units = store
                .version_blob_refs(&p.repo_id, v)
                .await?
                .into_iter()
                .collect();
            state.version = Some((v, made));
        }
        None if p.blobs.is_empty() => state.parts.extend(store.repo_blobs(&p.repo_id).await?),
        None => {}
    }
    Ok(Served {
        repo: p.repo_id.clone(),
        state: RwLock::new(state),
    })
}

/// What moving a served set takes: the blobs the units added name, those
/// the units removed named (each with how many of them name it), and when
/// the new version was made.
type Moved = (HashMap<Digest, u32>, HashMap<Digest, u32>, Timestamp);

/// Version `v` of `p`'s repository.
async fn version(store: &dyn Store, p: &Publication, v: u64) -> StoreResult<RepoVersion> {
    let version = store.get_version(&p.repo_id, v).await?;
    version.ok_or_else(|| StoreError::NotFound(format!("version {v} of repository {}", p.repo_id)))
}

/// When version `v` of `p`'s repository was made.
async fn made_at(store: &dyn Store, p: &Publication, v: u64) -> StoreResult<Timestamp> {
    Ok(version(store, p, v).await?.created_at)
}

/// The blobs the units added between version `from` (made at the time
/// given) and `to` of `p`'s repository name, and those the units removed
/// named, each with how many of those units name it; and when `to` was
/// made. `None` when so much changed that reading the whole set costs
/// less; not found when `from` is gone, or is another repository's of the
/// same id.
async fn moved(
    store: &dyn Store,
    p: &Publication,
    (from, from_made): (u64, Timestamp),
    to: u64,
) -> StoreResult<Option<Moved>> {
    if made_at(store, p, from).await? != from_made {
        return Err(StoreError::NotFound(format!(
            "version {from} of the repository {} served before",
            p.repo_id
        )));
    }
    let target = version(store, p, to).await?;
    let diff = store.diff_versions(&p.repo_id, from, to).await?;
    // Past a quarter of the repository, one read of the whole set costs
    // less than a read per unit changed.
    let held: u64 = target.content.values().sum();
    if (diff.added.len() + diff.removed.len()) as u64 > (held / 4).max(256) {
        return Ok(None);
    }
    let made = target.created_at;
    let mut out = [HashMap::new(), HashMap::new()];
    for (refs, version, counts) in [(&diff.added, to, 0), (&diff.removed, from, 1)] {
        for r in refs {
            let unit = store
                .get_version_unit(&p.repo_id, version, &r.unit_type, &r.key)
                .await?
                .ok_or_else(|| {
                    StoreError::NotFound(format!("{} {} of version {version}", r.unit_type, r.key))
                })?;
            for b in unit.blobs {
                *out[counts].entry(b).or_default() += 1;
            }
        }
    }
    let [units, gone] = out;
    Ok(Some((units, gone, made)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_store::db::sqlite::SqliteStore;
    use wharf_store::db::{Repository, Unit, UnitChange, VersionCause, VersionOrigin};

    fn unit(key: &str, blobs: &[&str]) -> UnitChange {
        UnitChange::Add(Unit {
            unit_type: "layer".parse().unwrap(),
            key: key.into(),
            metadata: serde_json::json!({}),
            blobs: blobs.iter().map(|b| Digest::of(b.as_bytes())).collect(),
        })
    }

    fn gone(key: &str) -> UnitChange {
        UnitChange::Remove {
            unit_type: "layer".parse().unwrap(),
            key: key.into(),
        }
    }

    fn repository(id: &str) -> Repository {
        Repository {
            id: id.parse().unwrap(),
            content_type: "docker".into(),
            display_name: id.into(),
            description: String::new(),
            notes: Default::default(),
            importer_config: serde_json::json!({}),
            distributor_config: serde_json::json!({}),
            retain_versions: None,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        }
    }

    /// A publication of the repository's latest version.
    async fn publish(store: &dyn Store, parts: &[&str]) -> Publication {
        let id: RepoId = "r".parse().unwrap();
        let v = store.latest_version(&id).await.unwrap().unwrap().number;
        Publication {
            plugin: "docker".into(),
            name: "r".into(),
            repo_id: id,
            index: Digest::of(format!("index {v}").as_bytes()),
            version: Some(v),
            config: serde_json::json!({}),
            published_at: Timestamp::now(),
            blobs: parts.iter().map(|b| Digest::of(b.as_bytes())).collect(),
        }
    }

    async fn change(store: &dyn Store, changes: &[UnitChange]) {
        let origin = VersionOrigin::new(VersionCause::Push, None);
        let id: RepoId = "r".parse().unwrap();
        store
            .apply_changes(&id, changes, &origin)
            .await
            .unwrap()
            .unwrap();
    }

    fn serves(s: &Served, blobs: &[&str]) -> Vec<bool> {
        blobs
            .iter()
            .map(|b| s.contains(&Digest::of(b.as_bytes())))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_served_set_moves_with_the_versions_and_counts_units() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let store: &dyn Store = &store;
        store.create_repo(&repository("r")).await.unwrap();
        change(
            store,
            &[unit("a", &["x", "shared"]), unit("b", &["shared"])],
        )
        .await;
        let sets = ServedSets::default();
        let first = publish(store, &["part1"]).await;
        let s = sets.get(store, &first).await.unwrap();
        assert_eq!(
            serves(&s, &["x", "shared", "part1", "y"]),
            [true, true, true, false]
        );
        assert!(s.contains(&first.index));

        // "a" goes ("x" with it; "shared" stays, "b" names it), "c" comes.
        change(store, &[gone("a"), unit("c", &["y"])]).await;
        let second = publish(store, &["part2"]).await;
        let moved = sets.get(store, &second).await.unwrap();
        assert!(Arc::ptr_eq(&s, &moved), "moved in place, not read again");
        assert_eq!(
            serves(&moved, &["x", "shared", "y", "part1", "part2"]),
            [false, true, true, false, true]
        );
        assert!(moved.contains(&second.index) && !moved.contains(&first.index));
        // "b" goes too: nothing names "shared" any more.
        change(store, &[gone("b")]).await;
        let third = publish(store, &[]).await;
        let s = sets.get(store, &third).await.unwrap();
        assert_eq!(serves(&s, &["shared", "y"]), [false, true]);

        // Deleted and made again under the same id, with as many versions:
        // nothing of the old repository is served.
        store.delete_repo(&"r".parse().unwrap()).await.unwrap();
        store.create_repo(&repository("r")).await.unwrap();
        for k in ["p", "q", "s"] {
            change(store, &[unit(k, &[k])]).await;
        }
        let again = publish(store, &[]).await;
        assert_eq!((&again.index, again.version), (&third.index, third.version));
        let s = sets.get(store, &again).await.unwrap();
        assert_eq!(serves(&s, &["y", "p", "q", "s"]), [false, true, true, true]);
    }

    #[test]
    fn served_sets_hold_only_their_blobs() {
        let s = Served::new("r".parse().unwrap(), [Digest::of(b"a")]);
        assert!(s.contains(&Digest::of(b"a")));
        assert!(!s.contains(&Digest::of(b"b")));
    }
}
