//! The published state the registry side reads on every request: an
//! in-memory map from (plugin, name) to publication, loaded from the store at
//! start and replaced on each publish. No request touches the database.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use wharf_store::db::Publication;

#[derive(Default)]
pub struct PublicationMap {
    by_name: RwLock<BTreeMap<(String, String), Arc<Publication>>>,
}

impl PublicationMap {
    pub fn replace_all(&self, pubs: Vec<Publication>) {
        let map = pubs
            .into_iter()
            .map(|p| ((p.plugin.clone(), p.name.clone()), Arc::new(p)))
            .collect();
        *self.by_name.write().unwrap() = map;
    }

    /// Publish `p`, replacing any earlier publication of its repository.
    pub fn put(&self, p: Publication) {
        let mut map = self.by_name.write().unwrap();
        map.retain(|_, old| !(old.plugin == p.plugin && old.repo_id == p.repo_id));
        map.insert((p.plugin.clone(), p.name.clone()), Arc::new(p));
    }

    pub fn remove_repo(&self, repo: &str) {
        self.by_name
            .write()
            .unwrap()
            .retain(|_, p| p.repo_id.as_str() != repo);
    }

    pub fn get(&self, plugin: &str, name: &str) -> Option<Arc<Publication>> {
        self.by_name
            .read()
            .unwrap()
            .get(&(plugin.to_string(), name.to_string()))
            .cloned()
    }

    pub fn for_repo(&self, repo: &str) -> Vec<Arc<Publication>> {
        self.by_name
            .read()
            .unwrap()
            .values()
            .filter(|p| p.repo_id.as_str() == repo)
            .cloned()
            .collect()
    }

    /// Names published by `plugin` whose publication passes `keep`, sorted,
    /// after `after`.
    pub fn names_where(
        &self,
        plugin: &str,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&Publication) -> bool,
    ) -> Vec<String> {
        let map = self.by_name.read().unwrap();
        let start = (plugin.to_string(), after.unwrap_or("").to_string());
        map.range(start..)
            .take_while(|((p, _), _)| p == plugin)
            .filter(|((_, n), _)| after.is_none_or(|a| n.as_str() > a))
            .filter(|(_, p)| keep(p))
            .take(limit)
            .map(|((_, n), _)| n.clone())
            .collect()
    }
}
