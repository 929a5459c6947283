//! The published state the registry side reads on every request: an
//! in-memory map from (plugin, name) to publication, changed on each publish
//! here and by each change of the store's feed ([`PublicationMap::apply`],
//! one entry at a time). No request touches the database once the map is
//! whole, and no lookup walks it: a name is found by its hash, publications
//! are indexed by repository too, and the names a caller may list by
//! [`catalog`].
//!
//! At start the map is filled from the store in pages while the server
//! already answers ([`PublicationMap::load`]): a request about one name
//! reads that name from the store until then ([`PublicationMap::find`]),
//! and whatever needs every publication waits for the load
//! ([`PublicationMap::whole`]). So start-up does not grow with the number
//! of publications.

mod catalog;

pub use catalog::{Granted, GrantedRepos};

use backon::{ExponentialBuilder, Retryable};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use wharf_core::remote::PullThrough;
use wharf_store::db::{
    PUBLICATIONS_PAGE, Publication, PublicationChange, RepositoryStore, StoreResult,
};

/// How many changes [`Maps::log`] keeps for the catalog's name indexes to
/// catch up with; one further behind reads its repositories again.
const LOG: usize = 4096;

/// One plugin's published names.
#[derive(Default)]
struct Names {
    /// Name → publication: a lookup hashes the name and allocates nothing.
    by_name: HashMap<Arc<str>, Arc<Publication>>,
    /// The same names in order, for pages of them.
    sorted: BTreeSet<Arc<str>>,
    /// The names whose publication does not say its repository is
    /// protected: what anyone may list, bar the few whose setting changed
    /// since ([`Publication::says_protected`]).
    open: BTreeSet<Arc<str>>,
}

#[derive(Default)]
struct Maps {
    /// Plugin → its names.
    plugins: BTreeMap<String, Names>,
    /// Repository id → its publications (one per plugin).
    by_repo: HashMap<String, Vec<Arc<Publication>>>,
    /// How far into the store's change feed this copy is.
    seq: u64,
    /// Counts the changes to repositories' publications here
    /// (`generation`), the last [`LOG`] of them in `log`, by repository:
    /// every change after `logged_from` is there.
    generation: u64,
    log: VecDeque<(u64, String)>,
    logged_from: u64,
    /// While the start-up load runs: the repositories whose publications
    /// changed since it began, which its pages (read earlier, perhaps) must
    /// not bring back.
    changed_while_loading: Option<HashSet<String>>,
}

impl Maps {
    /// The publication of `plugin` under `name`.
    fn get(&self, plugin: &str, name: &str) -> Option<&Arc<Publication>> {
        self.plugins.get(plugin)?.by_name.get(name)
    }

    /// Publish `p`: it replaces its repository's publication for its
    /// plugin, and takes its name from any other repository.
    fn put(&mut self, p: Publication) {
        let repo = p.repo_id.to_string();
        self.remove_repo(&repo, Some(&p.plugin));
        if let Some(old) = self.take_name(&p.plugin, &p.name) {
            self.changed(old.repo_id.as_str());
        }
        self.add(Arc::new(p));
        self.changed(&repo);
    }

    /// Hold `p`, unless its name, its repository's place for its plugin,
    /// or (while loading) its repository changed since are held already:
    /// what a read from the store brings, which never replaces what the
    /// map was told since it began. No change is logged.
    fn fill(&mut self, p: Publication) {
        let repo = p.repo_id.as_str();
        let held = self.get(&p.plugin, &p.name).is_some()
            || self.of_repo(repo).any(|q| q.plugin == p.plugin)
            || self
                .changed_while_loading
                .as_ref()
                .is_some_and(|c| c.contains(repo));
        if !held {
            self.add(Arc::new(p));
        }
    }

    /// Index `p`, whose name and place are free.
    fn add(&mut self, p: Arc<Publication>) {
        let name: Arc<str> = Arc::from(p.name.as_str());
        if !self.plugins.contains_key(&p.plugin) {
            self.plugins.insert(p.plugin.clone(), Names::default());
        }
        let names = self.plugins.get_mut(&p.plugin).expect("just made");
        if !p.says_protected() {
            names.open.insert(name.clone());
        }
        names.sorted.insert(name.clone());
        names.by_name.insert(name, p.clone());
        self.by_repo
            .entry(p.repo_id.to_string())
            .or_default()
            .push(p);
    }

    /// Take `name` of `plugin` out of every index.
    fn take_name(&mut self, plugin: &str, name: &str) -> Option<Arc<Publication>> {
        let names = self.plugins.get_mut(plugin)?;
        let p = names.by_name.remove(name)?;
        names.sorted.remove(name);
        names.open.remove(name);
        if names.by_name.is_empty() {
            self.plugins.remove(plugin);
        }
        let repo = p.repo_id.as_str();
        if let Some(held) = self.by_repo.get_mut(repo) {
            held.retain(|q| !Arc::ptr_eq(q, &p));
            if held.is_empty() {
                self.by_repo.remove(repo);
            }
        }
        Some(p)
    }

    /// `repo` has no publication for `plugin` (none: for any plugin).
    fn remove_repo(&mut self, repo: &str, plugin: Option<&str>) {
        let gone: Vec<(String, String)> = self
            .of_repo(repo)
            .filter(|p| plugin.is_none_or(|q| p.plugin == q))
            .map(|p| (p.plugin.clone(), p.name.clone()))
            .collect();
        for (plugin, name) in gone {
            self.take_name(&plugin, &name);
        }
        self.changed(repo);
    }

    /// Note that `repo`'s publications changed.
    fn changed(&mut self, repo: &str) {
        self.generation += 1;
        if self.log.len() == LOG
            && let Some((oldest, _)) = self.log.pop_front()
        {
            self.logged_from = oldest;
        }
        self.log.push_back((self.generation, repo.to_string()));
        if let Some(changed) = &mut self.changed_while_loading {
            changed.insert(repo.to_string());
        }
    }

    /// Note a change the log does not tell: whoever follows it reads its
    /// repositories again.
    fn changed_untold(&mut self) {
        self.generation += 1;
        self.logged_from = self.generation;
        self.log.clear();
    }

    /// The plugins that publish something.
    fn plugins(&self) -> impl Iterator<Item = &str> {
        self.plugins.keys().map(String::as_str)
    }

    /// The publications of `repo` (one per plugin).
    fn of_repo<'a>(&'a self, repo: &str) -> impl Iterator<Item = &'a Arc<Publication>> + 'a {
        self.by_repo.get(repo).into_iter().flatten()
    }
}

pub struct PublicationMap {
    maps: RwLock<Maps>,
    /// Whether the map holds every publication (false while the start-up
    /// load runs), read on every request; `loaded` tells waiters.
    whole: AtomicBool,
    loaded: watch::Sender<bool>,
}

impl Default for PublicationMap {
    /// An empty map that is whole: nothing is published.
    fn default() -> Self {
        PublicationMap {
            maps: RwLock::default(),
            whole: AtomicBool::new(true),
            loaded: watch::Sender::new(true),
        }
    }
}

impl PublicationMap {
    /// An empty map to be filled by [`Self::load`] from the store, whose
    /// change feed was at `seq` before the load (see
    /// `RepositoryStore::publication_seq`): the feed is followed from there
    /// once it is whole, so a change made while the pages are read is taken
    /// in again.
    pub fn loading(seq: u64) -> Self {
        PublicationMap {
            maps: RwLock::new(Maps {
                seq,
                changed_while_loading: Some(HashSet::new()),
                ..Maps::default()
            }),
            whole: AtomicBool::new(false),
            loaded: watch::Sender::new(false),
        }
    }

    /// Fill the map from the store, page by page, and say it is whole. A
    /// page that cannot be read is tried again, with a warning, until it is.
    pub async fn load(&self, store: &dyn RepositoryStore) {
        self.load_in_pages(store, PUBLICATIONS_PAGE).await
    }

    async fn load_in_pages(&self, store: &dyn RepositoryStore, page_size: u32) {
        let started = std::time::Instant::now();
        let mut after: Option<(String, String)> = None;
        loop {
            let read = || async {
                let after = after.as_ref().map(|(p, n)| (p.as_str(), n.as_str()));
                store.publications_after(after, page_size).await
            };
            let page = read
                .retry(
                    ExponentialBuilder::default()
                        .with_max_delay(Duration::from_secs(5))
                        .without_max_times(),
                )
                .notify(|e, _| tracing::warn!("reading the publications: {e}; trying again"))
                .await
                .expect("retried without end");
            let full = page.len() == page_size as usize;
            after = page.last().map(|p| (p.plugin.clone(), p.name.clone()));
            self.fill(page);
            if !full {
                break;
            }
        }
        let held = {
            let mut maps = self.maps.write().unwrap();
            maps.changed_while_loading = None;
            maps.by_repo.values().map(Vec::len).sum::<usize>()
        };
        self.whole.store(true, Ordering::Release);
        self.loaded.send_replace(true);
        tracing::info!(
            publications = held,
            ms = started.elapsed().as_millis() as u64,
            "publications loaded"
        );
    }

    /// Hold `pubs`, read from the store, as far as the map was not told
    /// otherwise since ([`Maps::fill`]).
    fn fill(&self, pubs: Vec<Publication>) {
        let mut maps = self.maps.write().unwrap();
        for p in pubs {
            maps.fill(p);
        }
        maps.changed_untold();
    }

    /// Whether the map holds every publication (the start-up load is done).
    pub fn is_whole(&self) -> bool {
        self.whole.load(Ordering::Acquire)
    }

    /// The map, once it holds every publication: for whatever must not
    /// miss one (a publish, a feed follower, a catalog, a repository's
    /// details).
    pub async fn whole(&self) -> &Self {
        if !self.is_whole() {
            let mut loaded = self.loaded.subscribe();
            // The sender lives as long as `self`.
            let _ = loaded.wait_for(|whole| *whole).await;
        }
        self
    }

    /// The publication of `plugin` under `name`: from the map, or while it
    /// loads, from the store (then held, so the request's later lookups
    /// find it). A name the store does not have either waits for the load:
    /// what comes next for it (a pull-through base, a new repository)
    /// rests on every publication.
    pub async fn find(
        &self,
        store: &dyn RepositoryStore,
        plugin: &str,
        name: &str,
    ) -> StoreResult<Option<Arc<Publication>>> {
        if self.is_whole() {
            return Ok(self.get(plugin, name));
        }
        if let Some(p) = self.get(plugin, name) {
            return Ok(Some(p));
        }
        match store.publication_named(plugin, name).await? {
            Some(p) => self.fill(vec![p]),
            None => {
                self.whole().await;
            }
        }
        Ok(self.get(plugin, name))
    }

    /// Hold `pubs`, the store's publications at feed position `seq` (read
    /// before them), and nothing else.
    #[cfg(test)]
    pub fn replace_all(&self, pubs: Vec<Publication>, seq: u64) {
        let mut maps = self.maps.write().unwrap();
        let (generation, changed) = (maps.generation, maps.changed_while_loading.take());
        *maps = Maps {
            seq,
            generation,
            ..Maps::default()
        };
        for p in pubs {
            maps.fill(p);
        }
        maps.changed_untold();
        maps.changed_while_loading = changed;
    }

    /// Take in one change of the store's feed: the publication of its
    /// repository for its plugin is replaced, or gone.
    pub fn apply(&self, change: &PublicationChange) {
        let mut maps = self.maps.write().unwrap();
        match &change.publication {
            Some(p) => maps.put(p.clone()),
            None => maps.remove_repo(change.repo_id.as_str(), Some(&change.plugin)),
        }
        maps.seq = maps.seq.max(change.seq);
    }

    /// How far into the store's change feed this copy is.
    pub fn seq(&self) -> u64 {
        self.maps.read().unwrap().seq
    }

    /// The publication of `repo` for `plugin`.
    pub fn of(&self, plugin: &str, repo: &str) -> Option<Arc<Publication>> {
        let maps = self.maps.read().unwrap();
        maps.of_repo(repo).find(|p| p.plugin == plugin).cloned()
    }

    /// Publish `p`, replacing any earlier publication of its repository.
    pub fn put(&self, p: Publication) {
        self.maps.write().unwrap().put(p);
    }

    pub fn remove_repo(&self, repo: &str) {
        self.maps.write().unwrap().remove_repo(repo, None);
    }

    /// Set `key` in the settings of `repo`'s publications, as
    /// `RepositoryStore::set_publication_setting` did in the store: this
    /// node lists them accordingly at once, not when the feed brings it.
    pub fn set_setting(&self, repo: &str, key: &str, value: &serde_json::Value) {
        let mut maps = self.maps.write().unwrap();
        let changed: Vec<Publication> = maps
            .of_repo(repo)
            .filter_map(|p| {
                let mut p = Publication::clone(p);
                p.set_setting(key, value).then_some(p)
            })
            .collect();
        for p in changed {
            maps.put(p);
        }
    }

    /// The publication of `plugin` under `name`, as far as the map holds it
    /// (see [`Self::find`] while it loads).
    pub fn get(&self, plugin: &str, name: &str) -> Option<Arc<Publication>> {
        self.maps.read().unwrap().get(plugin, name).cloned()
    }

    /// The pull-through repository (distributor setting `pull_through`)
    /// published by `plugin` under the longest name that `name` continues
    /// below (`hub` for `hub/library/alpine`), if any: the repository a
    /// read of a name no repository has is about.
    pub fn pull_through_base(&self, plugin: &str, name: &str) -> Option<Arc<Publication>> {
        let maps = self.maps.read().unwrap();
        let mut base = name;
        while let Some(cut) = base.rfind('/') {
            base = &base[..cut];
            if let Some(p) = maps.get(plugin, base)
                && PullThrough::of(&p.config).is_ok_and(|pt| pt.is_some())
            {
                return Some(p.clone());
            }
        }
        None
    }

    pub fn for_repo(&self, repo: &str) -> Vec<Arc<Publication>> {
        self.maps.read().unwrap().of_repo(repo).cloned().collect()
    }

    /// Names published by `plugin` whose publication passes `keep`, sorted,
    /// after `after`.
    ///
    /// `keep` runs with the map unlocked (it may read the map itself, as a
    /// token caller's reader does: a second read lock taken while a writer
    /// waits would deadlock), on runs of candidates copied out under the
    /// lock.
    pub fn names_where(
        &self,
        plugin: &str,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&Publication) -> bool,
    ) -> Vec<String> {
        self.walk(Walk::All, plugin, after, limit, keep)
    }

    /// [`Self::names_where`] over every name (`All`) or the names whose
    /// publication does not say its repository is protected (`Open`).
    fn walk(
        &self,
        walk: Walk,
        plugin: &str,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&Publication) -> bool,
    ) -> Vec<String> {
        let run = |cursor: &str, n: usize| -> Vec<Arc<Publication>> {
            let maps = self.maps.read().unwrap();
            let Some(names) = maps.plugins.get(plugin) else {
                return Vec::new();
            };
            let set = match walk {
                Walk::All => &names.sorted,
                Walk::Open => &names.open,
            };
            set.range::<str, _>((Bound::Excluded(cursor), Bound::Unbounded))
                .take(n)
                .filter_map(|name| names.by_name.get(name).cloned())
                .collect()
        };
        in_runs(after, limit, run, &keep)
            .into_iter()
            .map(|p| p.name.clone())
            .collect()
    }
}

/// Up to `limit` publications that pass `keep`, in name order after
/// `after`, from runs of candidates that `run(cursor, n)` copies out (up to
/// `n` after the name `cursor`; "" is before every name): `keep` runs with
/// nothing locked.
fn in_runs(
    after: Option<&str>,
    limit: usize,
    run: impl Fn(&str, usize) -> Vec<Arc<Publication>>,
    keep: &dyn Fn(&Publication) -> bool,
) -> Vec<Arc<Publication>> {
    const RUN: usize = 256;
    let mut out = Vec::new();
    let mut cursor = after.unwrap_or_default().to_string();
    while out.len() < limit {
        let candidates = run(&cursor, RUN);
        let Some(last) = candidates.last() else { break };
        cursor = last.name.clone();
        let full = candidates.len() == RUN;
        out.extend(
            candidates
                .into_iter()
                .filter(|p| keep(p))
                .take(limit - out.len()),
        );
        if !full {
            break;
        }
    }
    out
}

/// Which names [`PublicationMap::walk`] walks.
#[derive(Clone, Copy)]
enum Walk {
    All,
    Open,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn publication(plugin: &str, name: &str, repo: &str) -> Publication {
        Publication {
            plugin: plugin.into(),
            name: name.into(),
            repo_id: repo.parse().unwrap(),
            index: wharf_core::digest::Digest::of(name.as_bytes()),
            version: None,
            config: serde_json::json!({}),
            published_at: wharf_core::time::Timestamp::now(),
            blobs: Vec::new(),
        }
    }

    /// `keep` runs with the map unlocked: it may read it, even change it
    /// (which would hang here if the filter held the lock), and the pages
    /// it picks are the same across runs of candidates.
    #[test]
    fn names_where_filters_with_the_map_unlocked_in_pages() {
        let m = PublicationMap::default();
        for i in 0..700 {
            m.put(publication("docker", &format!("n{i:04}"), &format!("r{i}")));
        }
        m.put(publication("other", "n0001x", "o"));
        let kept = |p: &Publication| {
            // What a token caller's reader does: read the map again.
            !m.for_repo(p.repo_id.as_str()).is_empty() && p.name.ends_with('0')
        };
        let first = m.names_where("docker", None, 30, kept);
        assert_eq!(first.len(), 30);
        assert_eq!(first[0], "n0000");
        let next = m.names_where("docker", first.last().map(String::as_str), 100, kept);
        assert_eq!(next.first().map(String::as_str), Some("n0300"));
        assert_eq!(next.len(), 40, "the rest, across runs of candidates");
        // A filter that writes: with the lock held, this would never return.
        let wrote = m.names_where("docker", Some("n0690"), 5, |p| {
            m.put(publication("file", &p.name, "w"));
            true
        });
        assert_eq!(wrote.len(), 5);
    }

    fn names(m: &PublicationMap, repo: &str) -> Vec<String> {
        m.for_repo(repo).iter().map(|p| p.name.clone()).collect()
    }

    #[test]
    fn a_repository_has_one_publication_per_plugin_found_by_name_and_repository() {
        let m = PublicationMap::default();
        m.put(publication("docker", "a/app", "a"));
        m.put(publication("file", "a-files", "a"));
        assert_eq!(names(&m, "a"), ["a/app", "a-files"]);
        // A new name for the repository replaces its old one.
        m.put(publication("docker", "a/renamed", "a"));
        assert!(m.get("docker", "a/app").is_none());
        assert_eq!(names(&m, "a"), ["a-files", "a/renamed"]);
        // A name another repository takes over leaves the first without it.
        m.put(publication("docker", "a/renamed", "b"));
        assert_eq!(names(&m, "a"), ["a-files"]);
        assert_eq!(names(&m, "b"), ["a/renamed"]);
        m.remove_repo("a");
        assert!(names(&m, "a").is_empty());
        assert!(m.get("file", "a-files").is_none());
        assert_eq!(m.get("docker", "a/renamed").unwrap().repo_id.as_str(), "b");
        m.replace_all(vec![publication("docker", "x", "c")], 7);
        assert_eq!((names(&m, "c"), m.seq()), (vec!["x".to_string()], 7));
        assert!(names(&m, "b").is_empty());
        assert_eq!(
            m.names_where("docker", None, 10, |_| true),
            ["x".to_string()]
        );
    }

    /// The start-up load: pages fill the map while a request finds its one
    /// name in the store, and neither undoes a change made since the load
    /// began; a name nobody has waits for the whole map.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_map_loads_in_pages_and_finds_names_meanwhile() {
        use crate::visibility::tests::repository;
        use wharf_store::db::sqlite::SqliteStore;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
        for i in 0..10 {
            let id = format!("r{i}");
            store.create_repo(&repository(&id)).await.unwrap();
            let p = publication("docker", &format!("n{i}"), &id);
            store.put_publication(&p).await.unwrap();
        }
        let m = Arc::new(PublicationMap::loading(
            store.publication_seq().await.unwrap(),
        ));
        assert!(!m.is_whole());
        assert!(m.get("docker", "n5").is_none());
        let found = m.find(store.as_ref(), "docker", "n5").await.unwrap();
        assert_eq!(found.unwrap().repo_id.as_str(), "r5", "read from the store");
        assert_eq!(m.of("docker", "r5").unwrap().name, "n5", "and held");
        // Changes made here meanwhile: r2 takes n1, r3 is gone.
        m.put(publication("docker", "n1", "r2"));
        m.remove_repo("r3");
        let nobody = tokio::spawn({
            let (m, store) = (m.clone(), store.clone());
            async move { m.find(store.as_ref(), "docker", "nobody").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !nobody.is_finished(),
            "a name nobody has waits for the load"
        );
        m.load_in_pages(store.as_ref(), 3).await;
        assert!(m.is_whole());
        assert!(nobody.await.unwrap().unwrap().is_none());
        assert_eq!(
            m.names_where("docker", None, 100, |_| true),
            ["n0", "n1", "n4", "n5", "n6", "n7", "n8", "n9"],
            "the pages did not bring back what changed here"
        );
        assert_eq!(m.get("docker", "n1").unwrap().repo_id.as_str(), "r2");
        assert!(m.of("docker", "r1").is_none() && m.of("docker", "r3").is_none());
        assert_eq!(names(&m, "r2"), ["n1"]);
        // Once whole, a change is a change again.
        m.put(publication("docker", "n3", "r3"));
        assert_eq!(names(&m, "r3"), ["n3"]);
    }

    #[test]
    fn feed_changes_replace_or_remove_one_publication() {
        let m = PublicationMap::default();
        m.replace_all(
            vec![
                publication("docker", "a/app", "a"),
                publication("file", "a-files", "a"),
            ],
            3,
        );
        let change = |seq, plugin: &str, repo: &str, p: Option<Publication>| PublicationChange {
            seq,
            plugin: plugin.into(),
            repo_id: repo.parse().unwrap(),
            publication: p,
        };
        m.apply(&change(
            4,
            "docker",
            "a",
            Some(publication("docker", "a/new", "a")),
        ));
        assert_eq!(names(&m, "a"), ["a-files", "a/new"]);
        assert_eq!(m.of("docker", "a").unwrap().name, "a/new");
        m.apply(&change(
            5,
            "docker",
            "b",
            Some(publication("docker", "a/new", "b")),
        ));
        assert_eq!(
            (names(&m, "a"), names(&m, "b")),
            (vec!["a-files".to_string()], vec!["a/new".to_string()])
        );
        assert!(m.of("docker", "a").is_none());
        m.apply(&change(6, "file", "a", None));
        assert!(names(&m, "a").is_empty());
        assert_eq!(m.seq(), 6);
    }
}
