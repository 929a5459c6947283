//! Pull-through caches: a repository whose distributor setting
//! `pull_through` is on answers reads of any name below its own
//! (`hub/library/alpine` below `hub`, see `registry_names`) by pulling
//! what the client asks for from its feed, once, and serving it from then
//! on; pulls still work while the upstream is down.
//!
//! Its plugin decides what needs pulling: it answers a request with a
//! `pull` plan naming a reference in its own words. This module decides
//! whether to pull: not again within the repository's `tag_freshness` of
//! the last pull of that reference (its outcome, failure included, is
//! reused), and only once for concurrent requests (they wait for the same
//! pull). The pull itself is `jobs::pull`: one reference synced into the
//! repository as a new version, then published.

use crate::app::App;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wharf_core::ids::RepoId;
use wharf_core::remote::PullThrough;

/// References remembered per node before the stale ones are forgotten.
const REMEMBERED: usize = 10_000;

/// Why a pull did not bring the reference: the plugin's machine word
/// (`not-found`, `denied`, `fetch`, ...) and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFailure {
    pub code: String,
    pub message: String,
}

/// The last pull of one reference.
struct Pulled {
    at: Instant,
    outcome: Result<(), PullFailure>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Pulled>>>;

/// The pulls of this node, by repository and reference.
#[derive(Default)]
pub struct Pulls {
    slots: Mutex<HashMap<(RepoId, String), Slot>>,
}

impl Pulls {
    /// Forget what `repo` pulled and failed to pull: its settings changed
    /// (a fixed account, another feed), so the next request asks again.
    pub fn forget(&self, repo: &RepoId) {
        self.slots.lock().unwrap().retain(|(r, _), _| r != repo);
    }

    fn slot(&self, repo: &RepoId, reference: &str, freshness: Duration) -> Slot {
        let mut slots = self.slots.lock().unwrap();
        if slots.len() >= REMEMBERED {
            // Forget what is stale and not being pulled.
            slots.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot.try_lock().map_or(true, |p| {
                        p.as_ref().is_some_and(|p| p.at.elapsed() < freshness)
                    })
            });
        }
        slots
            .entry((repo.clone(), reference.to_string()))
            .or_default()
            .clone()
    }
}

/// Bring `reference` of the pull-through repository `repo` up to date for
/// a request: pull it unless it was pulled within the repository's
/// freshness (then that pull's outcome stands), sharing one pull among
/// concurrent requests. A repository that is not a pull-through cache
/// pulls nothing.
pub async fn refresh(app: &Arc<App>, repo: &RepoId, reference: &str) -> Result<(), PullFailure> {
    let Some(settings) = app
        .publications
        .for_repo(repo.as_str())
        .iter()
        .find_map(|p| PullThrough::of(&p.config).ok().flatten())
    else {
        return Ok(());
    };
    let slot = app.pulls.slot(repo, reference, settings.freshness);
    let mut last = slot.lock().await;
    if let Some(pulled) = last.as_ref()
        && pulled.at.elapsed() < settings.freshness
    {
        return pulled.outcome.clone();
    }
    let outcome = crate::jobs::pull(app, repo, reference)
        .await
        .map_err(|f| PullFailure {
            code: f.cause,
            message: f.message,
        });
    if let Err(f) = &outcome {
        tracing::warn!(repo = %repo, reference, code = %f.code, "pull-through pull failed: {}", f.message);
    }
    *last = Some(Pulled {
        at: Instant::now(),
        outcome: outcome.clone(),
    });
    outcome
}
