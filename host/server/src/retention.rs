//! Retention at work (the rules are `wharf_core::retention`): which tags a
//! repository holds and when each got its content, the plan that removes
//! those the rules no longer keep (with the images only they pointed at),
//! and that plan applied inside a sync's own call, so that the sync and
//! its retention make one version.

use crate::tasks::TaskFailure;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;
use wharf_core::ids::{RepoId, UnitType};
use wharf_core::retention::{Retention, TAG_UNIT, TagAge};
use wharf_core::time::Timestamp;
use wharf_runtime::calls::{Edit, Staged, Summary, TaskAnswer};
use wharf_runtime::engine::{Plugin, PluginError};
use wharf_store::db::{Repository, Store, Unit};

/// The repository's retention settings, if it has any.
pub fn of(repo: &Repository) -> Result<Option<Retention>, TaskFailure> {
    Retention::of(&repo.importer_config).map_err(|e| {
        TaskFailure::new(
            format!("importer_config: {e}; fix it with `wharf repo update`"),
            "invalid-input",
        )
    })
}

/// A tag of the repository, keyed by its unit.
#[derive(Debug, Clone)]
pub struct Tag {
    pub key: String,
    pub age: TagAge,
    /// What it points at: the blobs its unit names (a manifest's digest).
    pub targets: Vec<String>,
}

impl Tag {
    fn of(unit: &Unit, version: u64, since: Option<Timestamp>) -> Tag {
        let name = unit.metadata["name"]
            .as_str()
            .map_or_else(|| unit.key.clone(), str::to_string);
        Tag {
            key: unit.key.clone(),
            age: TagAge {
                name,
                version,
                since,
            },
            targets: unit.blobs.iter().map(ToString::to_string).collect(),
        }
    }
}

fn tag_type() -> UnitType {
    TAG_UNIT.parse().expect("a valid unit type")
}

/// Every tag of `id`, with when it got its content.
pub async fn tags(store: &dyn Store, id: &RepoId) -> Result<Vec<Tag>, TaskFailure> {
    const PAGE: u32 = 1000;
    let tag_type = tag_type();
    let mut added = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_unit_additions(id, &tag_type, after.as_deref(), PAGE)
            .await?;
        after = page.last().map(|(k, _)| k.clone());
        let full = page.len() == PAGE as usize;
        added.extend(page);
        if !full {
            break;
        }
    }
    let mut made = HashMap::new();
    let mut after = None;
    loop {
        let page = store.list_versions(id, after, PAGE).await?;
        after = page.last().map(|v| v.number);
        let full = page.len() == PAGE as usize;
        made.extend(page.into_iter().map(|v| (v.number, v.created_at)));
        if !full {
            break;
        }
    }
    let mut tags = Vec::with_capacity(added.len());
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_units(id, &tag_type, after.as_deref(), PAGE)
            .await?;
        after = page.last().map(|u| u.key.clone());
        let full = page.len() == PAGE as usize;
        for unit in &page {
            let version = added.get(&unit.key).copied().unwrap_or_default();
            tags.push(Tag::of(unit, version, made.get(&version).cloned()));
        }
        if !full {
            break;
        }
    }
    Ok(tags)
}

/// What retention removes: tag names, and the digests only they pointed at.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub tags: Vec<String>,
    pub images: Vec<String>,
    pub kept: usize,
}

impl Plan {
    pub fn new(retention: &Retention, tags: &[Tag]) -> Plan {
        let ages: Vec<TagAge> = tags.iter().map(|t| t.age.clone()).collect();
        let doomed = retention.remove(&ages, SystemTime::now());
        let gone: HashSet<&String> = doomed.iter().collect();
        let (removed, kept): (Vec<&Tag>, Vec<&Tag>) =
            tags.iter().partition(|t| gone.contains(&t.age.name));
        let still_pointed_at: HashSet<&String> = kept.iter().flat_map(|t| &t.targets).collect();
        let mut images: Vec<String> = removed
            .iter()
            .flat_map(|t| &t.targets)
            .filter(|d| !still_pointed_at.contains(d))
            .cloned()
            .collect();
        images.sort();
        images.dedup();
        Plan {
            kept: kept.len(),
            tags: doomed,
            images,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// The plugin edit that carries it out.
    pub fn edit(&self) -> Edit {
        Edit::Remove(self.tags.iter().chain(&self.images).cloned().collect())
    }

    /// The plan as a task reports it.
    pub fn json(&self, dry_run: bool) -> serde_json::Value {
        serde_json::json!({
            "dry_run": dry_run,
            "removed": self.tags,
            "images_removed": self.images,
            "kept": self.kept,
        })
    }
}

/// `tags` (as stored before the call) as a call's staged changes leave
/// them: tags it removed are gone, tags it added are the newest.
fn with_staged(
    mut tags: Vec<Tag>,
    overlay: &BTreeMap<(UnitType, String), Option<Unit>>,
) -> Vec<Tag> {
    let tag_type = tag_type();
    let staged: HashMap<&String, &Option<Unit>> = overlay
        .iter()
        .filter(|((t, _), _)| *t == tag_type)
        .map(|((_, key), unit)| (key, unit))
        .collect();
    tags.retain(|t| !staged.contains_key(&t.key));
    let now = Timestamp::now();
    tags.extend(
        staged
            .values()
            .filter_map(|u| u.as_ref())
            .map(|u| Tag::of(u, u64::MAX, Some(now.clone()))),
    );
    tags
}

/// Apply `retention` to what a sync staged (`synced`), in the same call:
/// the plan, and the call with both changes staged. A sync that failed is
/// returned as it is; a removal the plugin refuses fails the whole task.
pub fn after_sync(
    plugin: &Plugin,
    synced: Staged<TaskAnswer<Summary>>,
    retention: &Retention,
    stored: Vec<Tag>,
    cancel: Arc<AtomicBool>,
) -> Result<(Plan, Staged<TaskAnswer<Summary>>), PluginError> {
    let Ok(summary) = &synced.answer else {
        return Ok((Plan::default(), synced));
    };
    let summary = summary.clone();
    let plan = Plan::new(retention, &with_staged(stored, &synced.call.overlay));
    if plan.is_empty() {
        return Ok((plan, synced));
    }
    let bytes = synced.bytes_stored;
    let edited = plugin.edit(*synced.call, cancel, &plan.edit())?;
    let answer = match edited.answer {
        Ok(removed) => Ok(Summary {
            units_removed: summary.units_removed + removed.units_removed,
            message: format!(
                "{}; retention removed {} tags",
                summary.message,
                plan.tags.len()
            ),
            ..summary
        }),
        Err(mut e) => {
            e.message = format!(
                "the sync worked, but its retention could not remove {}: {}; nothing was \
                 committed: fix the retention settings or the tags and sync again",
                plan.tags.join(", "),
                e.message
            );
            Err(e)
        }
    };
    Ok((
        plan,
        Staged {
            answer,
            call: edited.call,
            bytes_stored: bytes + edited.bytes_stored,
        },
    ))
}
