//! Which repositories are protected: those whose `distributor_config` has
//! `"protected": true`. Their published content is served only to callers
//! with read permission on the repository; the others are pullable
//! anonymously. The registry hot path reads these in-memory sets, never the
//! store.
//!
//! The sets fail closed: a repository this node has not read yet counts as
//! protected, so content another node created and published is never served
//! anonymously before this node knows its setting. The registry gate, which
//! may wait, reads such a repository's setting on demand
//! ([`Protection::learn`]); the checks that may not (which repositories a
//! caller may list or mount from) count it as protected until then. The
//! sets are loaded in the background from start (one flag of each
//! repository, a page at a time with a pause between pages, so start-up
//! does not grow with the number of repositories), refreshed for one
//! repository after
//! every change this node makes to it, and reloaded in full every 30 s.
//! Changes made through other nodes arrive sooner, through the
//! publications' change feed every node follows (every 500 ms with a shared
//! store): a node that changes a repository's setting writes it into the
//! repository's publications too, and
//! [`Protection::follow`] re-reads a repository whose publication says
//! something new about it, or that this node does not know yet, before the
//! change is served. Only published content is served, so what is served
//! follows within a poll.

use std::collections::HashSet;
use std::sync::RwLock;
use wharf_core::ids::RepoId;
use wharf_runtime::publications::PublicationMap;
use wharf_store::db::{Publication, PublicationChange, Repository, Store, StoreResult};

/// The `distributor_config` key that protects a repository.
pub const KEY: &str = wharf_store::db::PROTECTED;

/// The pause between two pages of a full reload.
const PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

#[derive(Default)]
pub struct Protection {
    sets: RwLock<Sets>,
    /// Held from a refresh's read to its write, and while a full reload
    /// starts: what is recorded is never older than what it replaces.
    reading: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Sets {
    /// Every repository whose setting this node has read.
    known: HashSet<String>,
    /// Those of them that are protected.
    protected: HashSet<String>,
    /// Repositories refreshed one by one since the last full reload began:
    /// what that reload read of them may be older, so theirs wins.
    refreshed: HashSet<String>,
}

impl Sets {
    fn record(&mut self, repo: &Repository) {
        self.set(repo.id.as_str(), is_protected(repo));
    }

    fn set(&mut self, id: &str, protected: bool) {
        if protected {
            self.protected.insert(id.to_string());
        } else {
            self.protected.remove(id);
        }
        self.known.insert(id.to_string());
    }
}

pub fn is_protected(repo: &Repository) -> bool {
    repo.setting_is_true(KEY)
}

impl Protection {
    /// Whether reads of `repo_id` need permission: it is protected, or this
    /// node has not read its setting yet.
    pub fn protects(&self, repo_id: &str) -> bool {
        self.known(repo_id).unwrap_or(true)
    }

    /// Whether `repo_id` is protected, when this node has read its setting.
    fn known(&self, repo_id: &str) -> Option<bool> {
        let sets = self.sets.read().unwrap();
        sets.known
            .contains(repo_id)
            .then(|| sets.protected.contains(repo_id))
    }

    /// Whether reads of `repo_id` need permission, reading its setting
    /// from the store first when this node has not yet; when the store does
    /// not answer, it does (fail closed).
    pub async fn learn(&self, store: &dyn Store, repo_id: &str) -> bool {
        if let Some(protected) = self.known(repo_id) {
            return protected;
        }
        match repo_id.parse::<RepoId>() {
            Ok(id) => {
                if let Err(e) = self.refresh(store, &id).await {
                    tracing::warn!(
                        repo = repo_id,
                        "cannot read its protection (so it counts as protected): {e}"
                    );
                }
                self.protects(repo_id)
            }
            Err(_) => true,
        }
    }

    /// Re-read one repository's setting (after a change to it; a deleted
    /// repository is forgotten, hence protected).
    pub async fn refresh(&self, store: &dyn Store, id: &RepoId) -> StoreResult<()> {
        let _reading = self.reading.lock().await;
        let repo = store.get_repo(id).await?;
        let mut sets = self.sets.write().unwrap();
        match repo {
            Some(repo) => sets.record(&repo),
            None => {
                sets.known.remove(id.as_str());
                sets.protected.remove(id.as_str());
            }
        }
        sets.refreshed.insert(id.to_string());
        Ok(())
    }

    /// Re-read the setting of each repository whose publication `changes`
    /// bring (publications made or changed through other nodes, before
    /// `publications`, this node's copy, takes them in) when this node does
    /// not know it yet, or the publication says something new of it: other
    /// than its publication here said, or than this node holds.
    pub async fn follow(
        &self,
        store: &dyn Store,
        publications: &PublicationMap,
        changes: &[PublicationChange],
    ) -> StoreResult<()> {
        let says = |p: &Publication| p.config.get(KEY).and_then(|v| v.as_bool());
        let mut stale: Vec<&RepoId> = {
            let sets = self.sets.read().unwrap();
            changes
                .iter()
                .filter(|c| {
                    let Some(now) = &c.publication else {
                        return false;
                    };
                    let id = c.repo_id.as_str();
                    let before = publications.of(&c.plugin, id);
                    !sets.known.contains(id)
                        || before.is_some_and(|b| says(&b) != says(now))
                        || says(now).unwrap_or(false) != sets.protected.contains(id)
                })
                .map(|c| &c.repo_id)
                .collect()
        };
        stale.sort();
        stale.dedup();
        for id in stale {
            self.refresh(store, id).await?;
        }
        Ok(())
    }

    /// Re-read every repository's setting.
    pub async fn reload(&self, store: &dyn Store) -> StoreResult<()> {
        {
            // Refreshes that read before this reload are recorded before it.
            let _reading = self.reading.lock().await;
            self.sets.write().unwrap().refreshed.clear();
        }
        let mut sets = Sets::default();
        let mut after: Option<String> = None;
        loop {
            let page = store.repo_flags(KEY, after.as_deref(), 1000).await?;
            for (id, protected) in &page {
                sets.set(id.as_str(), *protected);
            }
            match page.last() {
                Some((last, _)) if page.len() == 1000 => after = Some(last.to_string()),
                _ => break,
            }
            // A background read: between pages, the store and the cores go
            // to requests first (the first read runs beside start-up).
            tokio::time::sleep(PAUSE).await;
        }
        let mut current = self.sets.write().unwrap();
        for id in std::mem::take(&mut current.refreshed) {
            for (now, was) in [
                (&mut sets.known, &current.known),
                (&mut sets.protected, &current.protected),
            ] {
                if was.contains(&id) {
                    now.insert(id.clone());
                } else {
                    now.remove(&id);
                }
            }
        }
        *current = sets;
        Ok(())
    }
}
