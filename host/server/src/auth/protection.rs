//! Which repositories are protected: those whose `distributor_config` has
//! `"protected": true`. Their published content is served only to callers
//! with read permission on the repository; the others are pullable
//! anonymously. The registry hot path reads this in-memory set, never the
//! store: it is loaded at start, reloaded after every repository change made
//! through this server's API, and every 30 s (changes made through another
//! host sharing the store).

use std::collections::HashSet;
use std::sync::RwLock;
use wharf_store::db::{RepoQuery, Repository, Store, StoreResult};

/// The `distributor_config` key that protects a repository.
pub const KEY: &str = "protected";

#[derive(Default)]
pub struct Protection {
    ids: RwLock<HashSet<String>>,
}

pub fn is_protected(repo: &Repository) -> bool {
    repo.distributor_config.get(KEY).and_then(|v| v.as_bool()) == Some(true)
}

impl Protection {
    pub fn contains(&self, repo_id: &str) -> bool {
        self.ids.read().unwrap().contains(repo_id)
    }

    /// Re-read every repository's setting.
    pub async fn reload(&self, store: &dyn Store) -> StoreResult<()> {
        let mut ids = HashSet::new();
        let mut after = None;
        loop {
            let page = store
                .list_repos(&RepoQuery {
                    after: after.clone(),
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            ids.extend(
                page.iter()
                    .filter(|r| is_protected(r))
                    .map(|r| r.id.to_string()),
            );
            match page.last() {
                Some(last) if page.len() == 1000 => after = Some(last.id.to_string()),
                _ => break,
            }
        }
        *self.ids.write().unwrap() = ids;
        Ok(())
    }
}
