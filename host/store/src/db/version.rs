//! Repository versions: every change to a repository's content makes a new,
//! immutable, numbered version (Pulp 3's model). Version 0 is the
//! repository as created (empty; for a repository older than versions, its
//! content when the store was upgraded).
//!
//! How the stores keep them: an association records the version that added
//! it; removing it moves it to the repository's *retired* associations with
//! the version that removed it. Version N's content is therefore the
//! current associations added at or before N plus the retired ones added at
//! or before N and removed after N. Making a version costs the changed
//! units, never the repository's size, and versions share units (a version
//! costs metadata, never bytes). Keeping only the newest versions
//! ([`crate::db::Repository::retain_versions`]) deletes the older version
//! records and the retired associations nothing kept can see; their units
//! then go to orphan cleanup unless something else holds them.

use super::{Timestamp, Unit, UnitChange};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use wharf_core::ids::{RepoId, TaskId, UnitType};

/// Why a version was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VersionCause {
    /// The repository was created (version 0).
    Created,
    /// Content uploaded or streamed in.
    Import,
    /// The repository's feed mirrored.
    Sync,
    /// A registry client pushed.
    Push,
    /// A pull-through repository pulled what a client asked for.
    Pull,
    /// Units copied from another repository.
    Copy,
    /// Content taken out.
    Remove,
    /// A tag added or moved.
    Tag,
    /// An earlier version's content made the latest again.
    Restore,
    /// Tags the retention settings no longer keep taken out.
    Retention,
}

/// What makes a change: recorded in the version it makes.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionOrigin {
    pub cause: VersionCause,
    /// The task, when a task makes it (a push makes versions without one).
    pub task: Option<TaskId>,
}

impl VersionOrigin {
    pub fn new(cause: VersionCause, task: Option<TaskId>) -> Self {
        VersionOrigin { cause, task }
    }
}

/// Units per unit type.
pub type UnitCounts = BTreeMap<UnitType, u64>;

/// One immutable state of a repository's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RepoVersion {
    #[schema(value_type = String)]
    pub repo_id: RepoId,
    /// 0 for the repository as created, then 1, 2, … without gaps.
    pub number: u64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub cause: VersionCause,
    #[schema(value_type = Option<String>)]
    pub task: Option<TaskId>,
    /// Units this version added, per type.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub added: UnitCounts,
    /// Units this version removed, per type.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub removed: UnitCounts,
    /// Units this version holds, per type.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub content: UnitCounts,
}

impl RepoVersion {
    /// Version 0 of a repository created now, holding `content`.
    pub fn initial(repo_id: RepoId, content: UnitCounts) -> Self {
        RepoVersion {
            repo_id,
            number: 0,
            created_at: Timestamp::now(),
            cause: VersionCause::Created,
            task: None,
            added: UnitCounts::new(),
            removed: UnitCounts::new(),
            content,
        }
    }

    /// The version after `self` that adds and removes these counts.
    pub fn next(
        &self,
        origin: &VersionOrigin,
        added: UnitCounts,
        removed: UnitCounts,
    ) -> RepoVersion {
        let mut content = self.content.clone();
        for (t, n) in &added {
            *content.entry(t.clone()).or_default() += n;
        }
        for (t, n) in &removed {
            let left = content.entry(t.clone()).or_default();
            *left = left.saturating_sub(*n);
        }
        content.retain(|_, n| *n > 0);
        RepoVersion {
            repo_id: self.repo_id.clone(),
            number: self.number + 1,
            created_at: Timestamp::now(),
            cause: origin.cause,
            task: origin.task,
            added,
            removed,
            content,
        }
    }

    /// Units added plus units removed.
    pub fn changed(&self) -> u64 {
        self.added.values().chain(self.removed.values()).sum()
    }
}

/// A unit named by its type and key.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct UnitRef {
    #[schema(value_type = String)]
    pub unit_type: UnitType,
    pub key: String,
}

/// What changed between two versions of one repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionDiff {
    pub from: u64,
    pub to: u64,
    /// In `to`, not in `from`; in type and key order.
    pub added: Vec<UnitRef>,
    /// In `from`, not in `to`; in type and key order.
    pub removed: Vec<UnitRef>,
}

/// One association in a repository's history, as `db export` carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub unit: Unit,
    pub added_in: u64,
    /// `None` while the repository holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_in: Option<u64>,
}

/// The diff from version `from` to `to`, given what the higher of the two
/// gained since the lower (`gained`) and what it lost (`lost`): a unit in
/// both (removed, then added again) did not change.
pub fn diff(from: u64, to: u64, gained: Vec<UnitRef>, lost: Vec<UnitRef>) -> VersionDiff {
    let gained: BTreeSet<UnitRef> = gained.into_iter().collect();
    let lost: BTreeSet<UnitRef> = lost.into_iter().collect();
    let mut up: Vec<UnitRef> = gained.difference(&lost).cloned().collect();
    let mut down: Vec<UnitRef> = lost.difference(&gained).cloned().collect();
    if from > to {
        std::mem::swap(&mut up, &mut down);
    }
    VersionDiff {
        from,
        to,
        added: up,
        removed: down,
    }
}

/// One change per unit, the last one given winning (the order a plugin
/// staged them in), in type and key order.
pub fn last_change_per_unit(changes: &[UnitChange]) -> Vec<&UnitChange> {
    let mut last: BTreeMap<(&str, &str), &UnitChange> = BTreeMap::new();
    for c in changes {
        let k = match c {
            UnitChange::Add(u) => (u.unit_type.as_str(), u.key.as_str()),
            UnitChange::Remove { unit_type, key } => (unit_type.as_str(), key.as_str()),
        };
        last.insert(k, c);
    }
    last.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(t: &str, k: &str) -> Unit {
        Unit {
            unit_type: t.parse().unwrap(),
            key: k.into(),
            metadata: serde_json::json!({}),
            blobs: vec![],
        }
    }

    #[test]
    fn the_last_change_to_a_unit_wins() {
        let add = UnitChange::Add(unit("tag", "a"));
        let remove = UnitChange::Remove {
            unit_type: "tag".parse().unwrap(),
            key: "a".into(),
        };
        let other = UnitChange::Add(unit("blob", "z"));
        let changes = [add.clone(), other.clone(), remove.clone()];
        assert_eq!(last_change_per_unit(&changes), vec![&other, &remove]);
        let changes = [remove, add.clone()];
        assert_eq!(last_change_per_unit(&changes), vec![&add]);
    }

    #[test]
    fn a_next_version_counts_its_content() {
        let t: UnitType = "tag".parse().unwrap();
        let v0 = RepoVersion::initial("r".parse().unwrap(), [(t.clone(), 2)].into());
        let origin = VersionOrigin::new(VersionCause::Remove, None);
        let v1 = v0.next(&origin, UnitCounts::new(), [(t.clone(), 2)].into());
        assert_eq!(v1.number, 1);
        assert!(v1.content.is_empty(), "a type with none left is not listed");
        assert_eq!(v1.changed(), 2);
    }
}
