//! The names a caller may list (the registry's catalog), found without
//! walking the names it may not read: the ones anyone may read come from
//! the names whose publication does not say its repository is protected,
//! the protected ones from what the caller was granted ([`Granted`]). A
//! caller granted three of a million protected repositories pays for a
//! page and its three, not for the million.
//!
//! Every name found still passes the caller's `may_read` (the request's
//! `visibility::Reader`): the indexes only pick candidates. A repository whose setting changed from protected to
//! open is listed to callers not granted it once its publication says so
//! (the node that changes the setting writes it there at once).

use super::{Maps, PublicationMap, Walk, in_runs};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use wharf_core::ids::RepoId;
use wharf_store::db::Publication;

/// (plugin, name)
type Key = (String, String);

/// The protected repositories a caller was granted read on, beyond the
/// unprotected ones anyone may read.
#[derive(Clone, Debug, Default)]
pub enum Granted {
    /// None (anonymous callers, tasks).
    #[default]
    Nothing,
    /// Perhaps any (a super-user; a grant on every repository, or one
    /// stored in a form from before normalisation): the catalog walks
    /// every name.
    Any,
    /// Read on these repositories.
    Repos(Arc<GrantedRepos>),
    /// Pull on the publications of these names (a registry token's scopes).
    Names(Arc<[String]>),
}

/// Repositories a user was granted read on, with their publications'
/// names in order: filled on first use, then moved forward by the map's
/// changes to those repositories, as long as the user's permissions are
/// kept between requests.
#[derive(Debug)]
pub struct GrantedRepos {
    ids: HashSet<String>,
    names: Mutex<NameIndex>,
}

#[derive(Debug, Default)]
struct NameIndex {
    /// The map's generation it reflects (`None`: never filled).
    generation: Option<u64>,
    names: BTreeMap<Key, Arc<Publication>>,
    of_repo: HashMap<String, Vec<Key>>,
}

impl GrantedRepos {
    pub fn new(ids: impl IntoIterator<Item = String>) -> Self {
        GrantedRepos {
            ids: ids.into_iter().collect(),
            names: Mutex::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Up to `n` publications of these repositories by `plugin`, in name
    /// order, after `after`.
    fn after(
        &self,
        map: &PublicationMap,
        plugin: &str,
        after: &str,
        n: usize,
    ) -> Vec<Arc<Publication>> {
        let mut index = self.names.lock().unwrap();
        index.catch_up(&map.maps.read().unwrap(), &self.ids);
        let start = (plugin.to_string(), after.to_string());
        index
            .names
            .range(start..)
            .take_while(|(k, _)| k.0 == plugin)
            .filter(|(k, _)| k.1.as_str() > after)
            .take(n)
            .map(|(_, p)| p.clone())
            .collect()
    }
}

impl NameIndex {
    /// Reflect `maps` now: by the changes logged since, when the log still
    /// holds them all, else by reading every repository again.
    fn catch_up(&mut self, maps: &Maps, ids: &HashSet<String>) {
        match self.generation {
            Some(g) if g == maps.generation => return,
            Some(g) if g >= maps.logged_from => {
                let changed: BTreeSet<&str> = maps
                    .log
                    .iter()
                    .rev()
                    .take_while(|(n, _)| *n > g)
                    .map(|(_, repo)| repo.as_str())
                    .filter(|repo| ids.contains(*repo))
                    .collect();
                for repo in changed {
                    self.refill(maps, repo);
                }
            }
            _ => {
                *self = NameIndex::default();
                for repo in ids {
                    self.refill(maps, repo);
                }
            }
        }
        self.generation = Some(maps.generation);
    }

    /// `repo`'s names are what `maps` has now.
    fn refill(&mut self, maps: &Maps, repo: &str) {
        for key in self.of_repo.remove(repo).unwrap_or_default() {
            // Another of these repositories may have taken the name over.
            if self
                .names
                .get(&key)
                .is_some_and(|p| p.repo_id.as_str() == repo)
            {
                self.names.remove(&key);
            }
        }
        let now: Vec<Key> = maps
            .of_repo(repo)
            .map(|p| {
                let key = (p.plugin.clone(), p.name.clone());
                self.names.insert(key.clone(), p.clone());
                key
            })
            .collect();
        if !now.is_empty() {
            self.of_repo.insert(repo.to_string(), now);
        }
    }
}

impl PublicationMap {
    /// A page of the registry's catalog: the names published by `plugin`
    /// whose repository the caller `may_read`, sorted, after `after`, at
    /// most `limit`. `granted` covers every protected repository `may_read`
    /// lets through. Costs the page and what the caller was granted,
    /// however many names it may not read.
    pub fn catalog(
        &self,
        plugin: &str,
        after: Option<&str>,
        limit: usize,
        may_read: &dyn Fn(&RepoId) -> bool,
        granted: &Granted,
    ) -> Vec<String> {
        let may_read = |p: &Publication| may_read(&p.repo_id);
        let granted = match granted {
            Granted::Any => return self.names_where(plugin, after, limit, may_read),
            Granted::Nothing => Vec::new(),
            Granted::Names(names) => self.named(plugin, after, names, &may_read),
            Granted::Repos(repos) => self.granted_repos(repos, plugin, after, limit, &may_read),
        };
        let open = self.walk(Walk::Open, plugin, after, limit, may_read);
        open.into_iter()
            .chain(granted.into_iter().map(|p| p.name.clone()))
            .collect::<BTreeSet<String>>()
            .into_iter()
            .take(limit)
            .collect()
    }

    /// The publications by `plugin` of the repositories published under
    /// `names` (by any plugin: a token's grant on a name is a grant on its
    /// repository) the caller may read, after `after`, in order.
    fn named(
        &self,
        plugin: &str,
        after: Option<&str>,
        names: &[String],
        may_read: &dyn Fn(&Publication) -> bool,
    ) -> Vec<Arc<Publication>> {
        let mut found: Vec<Arc<Publication>> = {
            let maps = self.maps.read().unwrap();
            names
                .iter()
                .flat_map(|n| maps.plugins().filter_map(|q| maps.get(q, n)))
                .flat_map(|p| maps.of_repo(p.repo_id.as_str()))
                .filter(|p| p.plugin == plugin && after.is_none_or(|a| p.name.as_str() > a))
                .cloned()
                .collect()
        };
        found.retain(|p| may_read(p));
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found.dedup_by(|a, b| a.name == b.name);
        found
    }

    /// Up to `limit` publications of `repos` by `plugin` the caller may
    /// read, after `after`, in order.
    fn granted_repos(
        &self,
        repos: &GrantedRepos,
        plugin: &str,
        after: Option<&str>,
        limit: usize,
        may_read: &dyn Fn(&Publication) -> bool,
    ) -> Vec<Arc<Publication>> {
        in_runs(
            after,
            limit,
            |cursor, n| repos.after(self, plugin, cursor, n),
            may_read,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publications::LOG;
    use crate::visibility::Reader;
    use std::sync::RwLock;

    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    fn publication(plugin: &str, name: &str, repo: &str, protected: bool) -> Publication {
        let mut p = super::super::tests::publication(plugin, name, repo);
        p.config = serde_json::json!({ "protected": protected });
        p
    }

    /// Every page of the catalog, page by page.
    fn pages(m: &PublicationMap, reader: &Reader, n: usize) -> Vec<String> {
        let mut all = Vec::new();
        loop {
            let after = all.last().map(String::as_str);
            let page = m.catalog(
                "docker",
                after,
                n,
                &|id| reader.may_read(id),
                reader.granted(),
            );
            assert!(page.len() <= n);
            all.extend(page.iter().cloned());
            if page.len() < n {
                return all;
            }
        }
    }

    /// What the catalog must list: every name whose repository the reader
    /// lets through, found by testing them all.
    fn every_readable(m: &PublicationMap, reader: &Reader) -> Vec<String> {
        m.names_where("docker", None, usize::MAX, |p| reader.may_read(&p.repo_id))
    }

    /// The indexes list what testing every name lists, for callers granted
    /// nothing, some repositories, some names or anything, while
    /// publications come, go, change hands and change their setting, and
    /// after more changes than the log keeps.
    #[test]
    fn a_catalog_lists_what_testing_every_name_lists() {
        let mut rng = Rng(7);
        let m = Arc::new(PublicationMap::default());
        // The repositories' own settings, as the access gate reads them.
        let protected: Arc<RwLock<HashSet<String>>> = Arc::default();
        let repo = |i: usize| format!("r{i:03}");
        let granted_ids: Vec<String> = (0..200).step_by(7).map(repo).collect();
        let granted_repos = Arc::new(GrantedRepos::new(granted_ids.clone()));
        let token_names: Arc<[String]> = (0..300).step_by(11).map(|i| format!("n{i:03}")).collect();
        let reader_of = |granted: Granted| {
            let (protected, granted_ids, token_names, m) = (
                protected.clone(),
                granted_ids.clone(),
                token_names.clone(),
                m.clone(),
            );
            let kind = match &granted {
                Granted::Nothing => 0,
                Granted::Repos(_) => 1,
                Granted::Names(_) => 2,
                Granted::Any => 3,
            };
            Reader::new(
                move |id: &RepoId| {
                    if !protected.read().unwrap().contains(id.as_str()) {
                        return true;
                    }
                    match kind {
                        0 => false,
                        1 => granted_ids.iter().any(|g| g == id.as_str()),
                        // As a token caller's reader does: read the map.
                        2 => m
                            .for_repo(id.as_str())
                            .iter()
                            .any(|p| token_names.contains(&p.name)),
                        _ => true,
                    }
                },
                granted,
            )
        };
        let readers = [
            reader_of(Granted::Nothing),
            reader_of(Granted::Repos(granted_repos.clone())),
            reader_of(Granted::Names(token_names.clone())),
            reader_of(Granted::Any),
        ];
        for round in 0..40 {
            let changes = if round == 20 {
                2 * LOG
            } else {
                1 + rng.below(60)
            };
            for _ in 0..changes {
                let (i, name) = (rng.below(200), format!("n{:03}", rng.below(300)));
                let plugin = ["docker", "docker", "file"][rng.below(3)];
                match rng.below(10) {
                    0 => m.remove_repo(&repo(i)),
                    1 => {
                        // A setting changed: the repository first, then
                        // its publications say so.
                        let mut set = protected.write().unwrap();
                        let now = !set.remove(&repo(i));
                        if now {
                            set.insert(repo(i));
                        }
                        drop(set);
                        if let Some(p) = m.of("docker", &repo(i)) {
                            m.put(publication("docker", &p.name, &repo(i), now));
                        }
                    }
                    _ => {
                        let now = protected.read().unwrap().contains(&repo(i));
                        m.put(publication(plugin, &name, &repo(i), now));
                    }
                }
            }
            if round == 30 {
                let kept: Vec<Publication> = (0..120)
                    .map(|i| publication("docker", &format!("n{i:03}"), &repo(i), i % 2 == 0))
                    .collect();
                *protected.write().unwrap() = (0..200).filter(|i| i % 2 == 0).map(repo).collect();
                m.replace_all(kept, 1);
            }
            for (k, reader) in readers.iter().enumerate() {
                let want = every_readable(&m, reader);
                let n = 1 + rng.below(40);
                assert_eq!(
                    pages(&m, reader, n),
                    want,
                    "round {round}, reader {k}, pages of {n}"
                );
            }
        }
        // The granted caller's catalog did not walk the others: its index
        // holds its own repositories' names alone.
        let index = granted_repos.names.lock().unwrap();
        assert!(
            index
                .names
                .values()
                .all(|p| granted_ids.contains(&p.repo_id.to_string()))
        );
    }

    /// A setting changed through this node moves the name between the
    /// indexes at once, before the feed brings it.
    #[test]
    fn a_setting_changed_here_moves_the_name_at_once() {
        let m = PublicationMap::default();
        m.put(publication("docker", "a", "ra", false));
        m.put(publication("docker", "b", "rb", false));
        let anyone =
            |m: &PublicationMap| m.catalog("docker", None, 10, &|_| true, &Granted::Nothing);
        assert_eq!(anyone(&m), ["a", "b"]);
        m.set_setting("ra", "protected", &serde_json::Value::Bool(true));
        assert_eq!(anyone(&m), ["b"]);
        assert!(m.get("docker", "a").unwrap().says_protected());
        m.set_setting("ra", "protected", &serde_json::Value::Bool(false));
        assert_eq!(anyone(&m), ["a", "b"]);
    }
}
