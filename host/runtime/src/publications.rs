//! The published state the registry side reads on every request: an
//! in-memory map from (plugin, name) to publication, loaded from the store at
//! start, changed on each publish here and by each change of the store's
//! feed ([`PublicationMap::apply`], one entry at a time). No request touches
//! the database, and no lookup walks the map: publications are indexed by
//! name and by repository, and the names a caller may list by [`catalog`].

mod catalog;

pub use catalog::{Granted, GrantedRepos};

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use wharf_core::remote::PullThrough;
use wharf_store::db::{Publication, PublicationChange};

/// (plugin, name)
type Key = (String, String);

/// How many changes [`Maps::log`] keeps for the catalog's name indexes to
/// catch up with; one further behind reads its repositories again.
const LOG: usize = 4096;

#[derive(Default)]
struct Maps {
    by_name: BTreeMap<Key, Arc<Publication>>,
    /// Repository id → the keys of its publications (one per plugin).
    by_repo: HashMap<String, Vec<Key>>,
    /// The names whose publication does not say its repository is
    /// protected: what anyone may list, bar the few whose setting changed
    /// since ([`Publication::says_protected`]).
    open: BTreeSet<Key>,
    /// How far into the store's change feed this copy is.
    seq: u64,
    /// Counts the changes to repositories' publications here
    /// (`generation`), the last [`LOG`] of them in `log`, by repository:
    /// every change after `logged_from` is there.
    generation: u64,
    log: VecDeque<(u64, String)>,
    logged_from: u64,
}

impl Maps {
    fn insert(&mut self, p: Publication) {
        let key = (p.plugin.clone(), p.name.clone());
        let repo = p.repo_id.to_string();
        if p.says_protected() {
            self.open.remove(&key);
        } else {
            self.open.insert(key.clone());
        }
        // A name taken over from another repository leaves that one.
        if let Some(old) = self.by_name.insert(key.clone(), Arc::new(p))
            && old.repo_id.as_str() != repo
            && let Some(keys) = self.by_repo.get_mut(old.repo_id.as_str())
        {
            keys.retain(|k| *k != key);
            self.changed(old.repo_id.as_str());
        }
        let keys = self.by_repo.entry(repo.clone()).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
        self.changed(&repo);
    }

    /// The publication of `repo` for `plugin` is now `p` (none: gone).
    fn replace(&mut self, plugin: &str, repo: &str, p: Option<Publication>) {
        self.remove_repo(repo, Some(plugin));
        if let Some(p) = p {
            self.insert(p);
        }
    }

    fn remove_repo(&mut self, repo: &str, plugin: Option<&str>) {
        let Some(keys) = self.by_repo.get_mut(repo) else {
            return;
        };
        keys.retain(|key| {
            let gone = plugin.is_none_or(|p| key.0 == p);
            if gone
                && self
                    .by_name
                    .get(key)
                    .is_some_and(|p| p.repo_id.as_str() == repo)
            {
                self.by_name.remove(key);
                self.open.remove(key);
            }
            !gone
        });
        if keys.is_empty() {
            self.by_repo.remove(repo);
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
    }

    /// The plugins that publish something, each found by one seek.
    fn plugins(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        loop {
            // Past every key of the last plugin found: its name and a 0.
            let from = match out.last() {
                Some(p) => (format!("{p}\0"), String::new()),
                None => (String::new(), String::new()),
            };
            match self.by_name.range(from..).next() {
                Some(((p, _), _)) => out.push(p.clone()),
                None => return out,
            }
        }
    }

    /// The publications of `repo` (one per plugin).
    fn of_repo<'a>(&'a self, repo: &'a str) -> impl Iterator<Item = &'a Arc<Publication>> + 'a {
        self.by_repo
            .get(repo)
            .into_iter()
            .flatten()
            .filter_map(|key| self.by_name.get(key))
            .filter(move |p| p.repo_id.as_str() == repo)
    }
}

#[derive(Default)]
pub struct PublicationMap {
    maps: RwLock<Maps>,
}

impl PublicationMap {
    /// Hold `pubs`, the store's publications at feed position `seq` (read
    /// before them: see `RepositoryStore::publication_seq`).
    pub fn replace_all(&self, pubs: Vec<Publication>, seq: u64) {
        let mut maps = Maps {
            seq,
            ..Maps::default()
        };
        for p in pubs {
            maps.insert(p);
        }
        let mut current = self.maps.write().unwrap();
        // Later than every change before: whoever followed those reads
        // again.
        maps.generation += current.generation + 1;
        maps.logged_from = maps.generation;
        maps.log.clear();
        *current = maps;
    }

    /// Take in one change of the store's feed: the publication of its
    /// repository for its plugin is replaced, or gone.
    pub fn apply(&self, change: &PublicationChange) {
        let mut maps = self.maps.write().unwrap();
        maps.replace(
            &change.plugin,
            change.repo_id.as_str(),
            change.publication.clone(),
        );
        maps.seq = maps.seq.max(change.seq);
    }

    /// How far into the store's change feed this copy is.
    pub fn seq(&self) -> u64 {
        self.maps.read().unwrap().seq
    }

    /// The publication of `repo` for `plugin`.
    pub fn of(&self, plugin: &str, repo: &str) -> Option<Arc<Publication>> {
        let maps = self.maps.read().unwrap();
        maps.by_repo
            .get(repo)?
            .iter()
            .find(|key| key.0 == plugin)
            .and_then(|key| maps.by_name.get(key))
            .filter(|p| p.repo_id.as_str() == repo)
            .cloned()
    }

    /// Publish `p`, replacing any earlier publication of its repository.
    pub fn put(&self, p: Publication) {
        let (plugin, repo) = (p.plugin.clone(), p.repo_id.to_string());
        self.maps.write().unwrap().replace(&plugin, &repo, Some(p));
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
            maps.insert(p);
        }
    }

    pub fn get(&self, plugin: &str, name: &str) -> Option<Arc<Publication>> {
        self.maps
            .read()
            .unwrap()
            .by_name
            .get(&(plugin.to_string(), name.to_string()))
            .cloned()
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
            if let Some(p) = maps.by_name.get(&(plugin.to_string(), base.to_string()))
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
        self.walk(Names::All, plugin, after, limit, keep)
    }

    /// [`Self::names_where`] over every name (`All`) or the names whose
    /// publication does not say its repository is protected (`Open`).
    fn walk(
        &self,
        names: Names,
        plugin: &str,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&Publication) -> bool,
    ) -> Vec<String> {
        let run = |cursor: &str, n: usize| -> Vec<Arc<Publication>> {
            let maps = self.maps.read().unwrap();
            let start = (plugin.to_string(), cursor.to_string());
            let later = |(p, name): &Key| p == plugin && name.as_str() > cursor;
            match names {
                Names::All => maps
                    .by_name
                    .range(start..)
                    .take_while(|(k, _)| k.0 == plugin)
                    .filter(|(k, _)| later(k))
                    .take(n)
                    .map(|(_, p)| p.clone())
                    .collect(),
                Names::Open => maps
                    .open
                    .range(start..)
                    .take_while(|k| k.0 == plugin)
                    .filter(|k| later(k))
                    .take(n)
                    .filter_map(|k| maps.by_name.get(k).cloned())
                    .collect(),
            }
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
enum Names {
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
