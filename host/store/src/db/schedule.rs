//! A schedule as stored: the job it submits, its repeating interval, and
//! when it is due next. Running it is the server's (`schedules`): every
//! node looks for due schedules, and the store's compare-and-set
//! ([`crate::db::ScheduleStore::swap_schedule`], on `revision`) lets exactly
//! one of them claim each due run.

use serde::{Deserialize, Serialize};
use wharf_core::ids::{RepoId, TaskId};
use wharf_core::time::Timestamp;

/// What a schedule submits at each run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ScheduledJob {
    /// Sync a repository from its feed.
    Sync {
        #[schema(value_type = String)]
        repository: RepoId,
    },
    /// Publish a repository's latest version.
    Publish {
        #[schema(value_type = String)]
        repository: RepoId,
    },
    /// Apply a repository's retention settings (remove the tags they no
    /// longer keep).
    Retain {
        #[schema(value_type = String)]
        repository: RepoId,
    },
    /// Remove orphaned content and blobs.
    Orphans {
        /// Keep what became unreferenced less than this many minutes ago.
        #[serde(default)]
        protection_minutes: u64,
    },
    /// Re-hash every blob (`wharf check blobs`).
    Fsck {
        /// Delete the blobs whose bytes do not match their digest.
        #[serde(default)]
        remove_corrupt: bool,
    },
}

impl ScheduledJob {
    /// The repository it works on, if any.
    pub fn repository(&self) -> Option<&RepoId> {
        match self {
            ScheduledJob::Sync { repository }
            | ScheduledJob::Publish { repository }
            | ScheduledJob::Retain { repository } => Some(repository),
            ScheduledJob::Orphans { .. } | ScheduledJob::Fsck { .. } => None,
        }
    }
}

/// A node's claim on one due run: it submits the run as task `task`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleClaim {
    /// The run claimed.
    #[schema(value_type = String, format = DateTime)]
    pub due: Timestamp,
    /// The task the run is submitted as (chosen before it is submitted, so
    /// that a claim left by a node that died can be finished by another
    /// without running twice).
    #[schema(value_type = String)]
    pub task: TaskId,
    /// When the claim was made.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// A schedule: what it runs, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Schedule {
    pub id: String,
    pub job: ScheduledJob,
    /// The ISO 8601 repeating interval (`2026-12-01T00:00:00Z/PT1H`).
    pub interval: String,
    /// When the next run is due; `None` once every run has been made.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_run: Option<Timestamp>,
    pub enabled: bool,
    /// A run claimed and not yet known to be submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ScheduleClaim>,
    /// The last run: when it was due, and its task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_run: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub last_task: Option<TaskId>,
    /// Runs made so far.
    #[serde(default)]
    pub runs: u64,
    /// Bumped by every change: what a compare-and-set compares.
    #[serde(default)]
    pub revision: u64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

impl Schedule {
    /// A new, enabled schedule that has made no run yet.
    pub fn new(
        id: String,
        job: ScheduledJob,
        interval: String,
        next_run: Option<Timestamp>,
    ) -> Self {
        Schedule {
            id,
            job,
            interval,
            next_run,
            enabled: true,
            claim: None,
            last_run: None,
            last_task: None,
            runs: 0,
            revision: 0,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
        }
    }
}
