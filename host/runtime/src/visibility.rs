//! What a request may see: the host's half of the trust rule
//! (docs/access.md). The access gate admits a registry request for one
//! repository; everything a plugin then opens, stats, links or plans to
//! serve is checked here, so a plugin is trusted to parse, never to
//! authorise.
//!
//! - [`Served`]: the blobs a published repository serves (recorded with
//!   the publication: its units' blobs at publish time, what the publish
//!   stored, and its index), kept warm in [`ServedSets`], so the hot path
//!   never asks the database.
//! - [`Reader`]: whether the caller of the current request may read a
//!   repository; a digest held by a repository the caller may read may be
//!   mounted or linked by it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;
use wharf_core::digest::Digest;
use wharf_core::ids::RepoId;
use wharf_store::db::{Publication, Store, StoreResult};

/// Whether the caller of the current request may read a repository.
pub type Reader = Arc<dyn Fn(&RepoId) -> bool + Send + Sync>;

/// A reader that may read nothing (tasks, anonymous callers of protected
/// content).
pub fn no_reader() -> Reader {
    Arc::new(|_: &RepoId| false)
}

/// The blobs one publication of a repository serves.
#[derive(Debug)]
pub struct Served {
    pub repo: RepoId,
    blobs: HashSet<Digest>,
}

impl Served {
    pub fn new(repo: RepoId, blobs: impl IntoIterator<Item = Digest>) -> Self {
        Served {
            repo,
            blobs: blobs.into_iter().collect(),
        }
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.blobs.contains(d)
    }
}

type Slot = Arc<OnceCell<Arc<Served>>>;

/// The served set of every repository's current publication, built on first
/// use (one store query, shared by concurrent requests) and replaced when
/// the publication's index changes.
#[derive(Default)]
pub struct ServedSets {
    by_repo: Mutex<HashMap<RepoId, (Digest, Slot)>>,
}

impl ServedSets {
    /// What `p` serves: its index and the blobs it recorded at publish
    /// time (a publication from before those were recorded: its
    /// repository's units' blobs when first asked).
    ///
    /// A unit removed after the publish stays served until the next
    /// publish, as the publication itself does.
    pub async fn get(&self, store: &dyn Store, p: &Publication) -> StoreResult<Arc<Served>> {
        let slot = {
            let mut map = self.by_repo.lock().unwrap();
            match map.get(&p.repo_id) {
                Some((index, slot)) if *index == p.index => slot.clone(),
                _ => {
                    let slot = Slot::default();
                    map.insert(p.repo_id.clone(), (p.index.clone(), slot.clone()));
                    slot
                }
            }
        };
        slot.get_or_try_init(|| async {
            let mut blobs = if p.blobs.is_empty() {
                store.repo_blobs(&p.repo_id).await?
            } else {
                p.blobs.clone()
            };
            blobs.push(p.index.clone());
            Ok(Arc::new(Served::new(p.repo_id.clone(), blobs)))
        })
        .await
        .cloned()
    }

    /// Forget a repository (deleted, or its content changed in place).
    pub fn forget(&self, repo: &RepoId) {
        self.by_repo.lock().unwrap().remove(repo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_sets_hold_only_their_blobs() {
        let s = Served::new("r".parse().unwrap(), [Digest::of(b"a")]);
        assert!(s.contains(&Digest::of(b"a")));
        assert!(!s.contains(&Digest::of(b"b")));
    }
}
