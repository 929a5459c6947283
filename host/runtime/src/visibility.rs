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
//!   the repository's (the publish moves it, or the feed's follower on the
//!   other nodes: [`ServedSets::advance`]). Bounded by [`MAX_BLOBS`].
//! - [`Reader`]: whether the caller of the current request may read a
//!   repository; a digest held by a repository the caller may read may be
//!   mounted or linked by it.

use crate::publications::Granted;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use wharf_core::digest::Digest;
use wharf_core::ids::RepoId;
use wharf_store::db::{Publication, RepoVersion, Store, StoreError, StoreResult, Timestamp};

/// Whether the caller of the current request may read a repository, and
/// which protected ones it was granted (so the catalog can list those
/// without testing the others).
#[derive(Clone)]
pub struct Reader {
    may_read: Arc<dyn Fn(&RepoId) -> bool + Send + Sync>,
    granted: Granted,
}

impl Reader {
    /// `may_read` decides; `granted` covers every protected repository it
    /// lets through.
    pub fn new(
        may_read: impl Fn(&RepoId) -> bool + Send + Sync + 'static,
        granted: Granted,
    ) -> Self {
        Reader {
            may_read: Arc::new(may_read),
            granted,
        }
    }

    /// A reader that may read nothing (tasks, anonymous callers of
    /// protected content).
    pub fn nothing() -> Self {
        Reader::new(|_| false, Granted::Nothing)
    }

    pub fn may_read(&self, repo: &RepoId) -> bool {
        (self.may_read)(repo)
    }

    pub fn granted(&self) -> &Granted {
        &self.granted
    }
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
    /// The blobs of those units (their 32 bytes), with how many of the
    /// units name each.
    units: HashMap<[u8; 32], u32>,
    /// What the publish stored or read (and, for a publication from
    /// before versions, everything it serves).
    parts: HashSet<[u8; 32]>,
}

impl ServedState {
    /// How many blobs it holds (what [`ServedSets`] bounds).
    fn len(&self) -> usize {
        self.units.len() + self.parts.len()
    }
}

impl Served {
    /// A set of exactly `blobs`.
    #[cfg(test)]
    pub fn new(repo: RepoId, blobs: impl IntoIterator<Item = Digest>) -> Self {
        Served {
            repo,
            state: RwLock::new(ServedState {
                parts: blobs.into_iter().map(|d| d.to_bytes()).collect(),
                ..ServedState::default()
            }),
        }
    }

    pub fn contains(&self, d: &Digest) -> bool {
        let s = self.state.read().unwrap();
        if s.index.as_ref() == Some(d) {
            return true;
        }
        let bytes = d.to_bytes();
        s.units.contains_key(&bytes) || s.parts.contains(&bytes)
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

/// One repository's served set, the lock that one update at a time holds
/// while it reads the store, and when it was last asked for.
#[derive(Default)]
struct Slot {
    served: Mutex<Option<Arc<Served>>>,
    update: tokio::sync::Mutex<()>,
    used: AtomicU64,
}

/// How many blobs the served sets of one node hold at most, all
/// repositories together: about 50 bytes each, so 64 MiB or so. Past it,
/// the sets of the repositories served least lately are dropped (down to
/// three quarters of it), and read again when next served.
pub const MAX_BLOBS: usize = 1 << 20;

/// The served set of every repository's current publication, built on
/// first use (shared by concurrent requests) and moved forward when the
/// repository is published again; at most [`MAX_BLOBS`] blobs in all.
pub struct ServedSets {
    slots: Mutex<Slots>,
    /// Counts the uses of sets, for [`Slot::used`].
    clock: AtomicU64,
    max_blobs: usize,
}

#[derive(Default)]
struct Slots {
    by_repo: HashMap<RepoId, Held>,
    /// The blobs they hold, all together.
    blobs: usize,
}

struct Held {
    slot: Arc<Slot>,
    /// The blobs its set held when last counted.
    blobs: usize,
}

impl Default for ServedSets {
    fn default() -> Self {
        ServedSets::with_max_blobs(MAX_BLOBS)
    }
}

impl ServedSets {
    /// Served sets holding at most `max_blobs` blobs in all (beyond one
    /// repository's, which is held whatever its size).
    pub fn with_max_blobs(max_blobs: usize) -> Self {
        ServedSets {
            slots: Mutex::default(),
            clock: AtomicU64::new(0),
            max_blobs,
        }
    }

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
            let mut slots = self.slots.lock().unwrap();
            match slots.by_repo.get(&p.repo_id) {
                Some(held) => held.slot.clone(),
                None => {
                    let slot = Arc::new(Slot::default());
                    let held = Held {
                        slot: slot.clone(),
                        blobs: 0,
                    };
                    slots.by_repo.insert(p.repo_id.clone(), held);
                    slot
                }
            }
        };
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        slot.used.store(tick, Ordering::Relaxed);
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
                        *s.units.entry(d.to_bytes()).or_default() += n;
                    }
                    for (d, n) in gone {
                        let d = d.to_bytes();
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
                    s.parts = p.blobs.iter().map(Digest::to_bytes).collect();
                    let blobs = s.len();
                    drop(s);
                    self.count(&p.repo_id, &slot, blobs);
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
        let blobs = served.state.read().unwrap().len();
        self.count(&p.repo_id, &slot, blobs);
        Ok(served)
    }

    /// `repo`'s set (in `slot`) now holds `blobs`: past the bound, drop the
    /// sets served least lately, bar this one. A slot dropped meanwhile
    /// (forgotten, or dropped for another) is not counted.
    fn count(&self, repo: &RepoId, slot: &Arc<Slot>, blobs: usize) {
        let mut slots = self.slots.lock().unwrap();
        let Slots {
            by_repo,
            blobs: all,
        } = &mut *slots;
        match by_repo.get_mut(repo) {
            Some(held) if Arc::ptr_eq(&held.slot, slot) => {
                *all = *all - held.blobs + blobs;
                held.blobs = blobs;
            }
            _ => return,
        }
        if *all <= self.max_blobs {
            return;
        }
        let mut by_age: Vec<(u64, RepoId)> = by_repo
            .iter()
            .filter(|(id, _)| *id != repo)
            .map(|(id, held)| (held.slot.used.load(Ordering::Relaxed), id.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, id) in by_age {
            if *all <= self.max_blobs - self.max_blobs / 4 {
                break;
            }
            if let Some(held) = by_repo.remove(&id) {
                *all -= held.blobs;
            }
        }
    }

    /// How many blobs the sets hold, all together.
    #[cfg(test)]
    fn blobs(&self) -> usize {
        self.slots.lock().unwrap().blobs
    }

    /// Move the set of `p`'s repository to `p` when this node holds one
    /// (a publication made here, or read from the feed), so that the next
    /// request finds it moved: by the units changed since, in the publish
    /// or the feed's follower, not on a request's path. A repository this
    /// node has not served yet is left for its first request.
    pub async fn advance(&self, store: &dyn Store, p: &Publication) -> StoreResult<()> {
        let held = self
            .slots
            .lock()
            .unwrap()
            .by_repo
            .get(&p.repo_id)
            .is_some_and(|held| held.slot.served.lock().unwrap().is_some());
        if held {
            self.get(store, p).await?;
        }
        Ok(())
    }

    /// Whether this node holds the set of `p`.
    #[cfg(test)]
    fn holds(&self, p: &Publication) -> bool {
        self.slots
            .lock()
            .unwrap()
            .by_repo
            .get(&p.repo_id)
            .and_then(|held| held.slot.served.lock().unwrap().clone())
            .is_some_and(|s| s.is_of(p))
    }

    /// Forget a repository (deleted, or its content changed in place).
    pub fn forget(&self, repo: &RepoId) {
        let mut slots = self.slots.lock().unwrap();
        if let Some(held) = slots.by_repo.remove(repo) {
            slots.blobs -= held.blobs;
        }
    }
}

/// What `p` serves, read whole.
async fn whole(store: &dyn Store, p: &Publication) -> StoreResult<Served> {
    let mut state = ServedState {
        index: Some(p.index.clone()),
        published_at: Some(p.published_at.clone()),
        version: None,
        parts: p.blobs.iter().map(Digest::to_bytes).collect(),
        units: HashMap::new(),
    };
    match p.version {
        Some(v) => {
            let made = made_at(store, p, v).await?;
            state.units = store
                .version_blob_refs(&p.repo_id, v)
                .await?
                .into_iter()
                .map(|(d, n)| (d.to_bytes(), n))
                .collect();
            state.version = Some((v, made));
        }
        None if p.blobs.is_empty() => {
            let blobs = store.repo_blobs(&p.repo_id).await?;
            state.parts.extend(blobs.iter().map(Digest::to_bytes));
        }
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
pub(crate) mod tests {
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

    pub(crate) fn repository(id: &str) -> Repository {
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

    /// A publish moves the set this node holds (off the next request's
    /// path), and leaves a repository no request read for its first one.
    #[tokio::test(flavor = "multi_thread")]
    async fn advancing_moves_only_a_set_held() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let store: &dyn Store = &store;
        store.create_repo(&repository("r")).await.unwrap();
        change(store, &[unit("a", &["x"])]).await;
        let sets = ServedSets::default();
        let first = publish(store, &[]).await;
        sets.advance(store, &first).await.unwrap();
        assert!(!sets.holds(&first), "no request read it: nothing to move");
        let s = sets.get(store, &first).await.unwrap();
        change(store, &[unit("b", &["y"])]).await;
        let second = publish(store, &[]).await;
        assert!(!sets.holds(&second));
        sets.advance(store, &second).await.unwrap();
        assert!(sets.holds(&second), "moved by the publish");
        assert_eq!(serves(&s, &["x", "y"]), [true, true]);
    }

    /// Past the bound, the sets served least lately go (one in use keeps
    /// answering), and come back whole when next served.
    #[tokio::test(flavor = "multi_thread")]
    async fn served_sets_hold_at_most_their_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let store: &dyn Store = &store;
        let origin = VersionOrigin::new(VersionCause::Push, None);
        let mut pubs = Vec::new();
        for (id, n) in [("a", 4), ("b", 4), ("c", 3)] {
            let repo: RepoId = id.parse().unwrap();
            store.create_repo(&repository(id)).await.unwrap();
            let blobs: Vec<String> = (0..n).map(|i| format!("{id}{i}")).collect();
            let blobs: Vec<&str> = blobs.iter().map(String::as_str).collect();
            let changes = [unit(id, &blobs)];
            store
                .apply_changes(&repo, &changes, &origin)
                .await
                .unwrap()
                .unwrap();
            let v = store.latest_version(&repo).await.unwrap().unwrap().number;
            pubs.push(Publication {
                plugin: "docker".into(),
                name: id.into(),
                repo_id: repo,
                index: Digest::of(id.as_bytes()),
                version: Some(v),
                config: serde_json::json!({}),
                published_at: Timestamp::now(),
                blobs: Vec::new(),
            });
        }
        let sets = ServedSets::with_max_blobs(10);
        let a = sets.get(store, &pubs[0]).await.unwrap();
        sets.get(store, &pubs[1]).await.unwrap();
        assert_eq!(sets.blobs(), 8);
        sets.get(store, &pubs[0]).await.unwrap(); // "b" is now the least lately
        sets.get(store, &pubs[2]).await.unwrap();
        assert_eq!(sets.blobs(), 7, "11 is past 10: b goes, down to 7");
        let held: Vec<bool> = pubs.iter().map(|p| sets.holds(p)).collect();
        assert_eq!(held, [true, false, true]);
        let again = sets.get(store, &pubs[1]).await.unwrap();
        assert_eq!(
            serves(&again, &["b0", "b3"]),
            [true, true],
            "read again whole"
        );
        assert_eq!(
            sets.blobs(),
            4 + 3,
            "b's fill dropped a, which is still in use"
        );
        assert!(!sets.holds(&pubs[0]));
        assert_eq!(serves(&a, &["a0", "a3", "b0"]), [true, true, false]);
        sets.forget(&pubs[2].repo_id);
        assert_eq!(sets.blobs(), 4);
    }

    #[test]
    fn served_sets_hold_only_their_blobs() {
        let s = Served::new("r".parse().unwrap(), [Digest::of(b"a")]);
        assert!(s.contains(&Digest::of(b"a")));
        assert!(!s.contains(&Digest::of(b"b")));
    }
}
