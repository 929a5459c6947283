//! What a task is asked to do: a [`Job`] is plain data (it is the task's
//! `input`), so any worker — in this process or a `wharf worker` fed by
//! RabbitMQ — can run it from the task record alone (`jobs` does the work).

use serde::{Deserialize, Serialize};
use wharf_core::digest::Digest;
use wharf_core::ids::{RepoId, UploadId};
use wharf_store::db::{TaskKind, TaskLock};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "lowercase")]
pub enum Job {
    /// Import an upload through the content type's importer.
    Import {
        repository: RepoId,
        upload_id: UploadId,
        #[serde(default)]
        params: serde_json::Map<String, serde_json::Value>,
        delete_upload: bool,
        /// The upload's bytes stored as this blob when the import may run
        /// on a machine without the upload's file (blobs in a bucket and
        /// workers elsewhere).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sealed: Option<Digest>,
    },
    /// Import the body of the request that started the task while it
    /// arrives (`POST /repositories/{id}/import` with the content as the
    /// body). Bound to the process that received the request.
    #[serde(rename = "import-stream")]
    ImportStream {
        repository: RepoId,
        size: u64,
        #[serde(default)]
        params: serde_json::Map<String, serde_json::Value>,
        /// The process that has the body.
        process: super::process::ProcessId,
    },
    Sync {
        repository: RepoId,
    },
    /// Publish a version of the repository (the latest when `None`).
    Publish {
        repository: RepoId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
    },
    /// Copy associations (never bytes) from `from` into `repository`: the
    /// units making up `references` (tags, digests: the content type's
    /// words) when given, else every unit of `unit_types` (all when empty).
    Copy {
        repository: RepoId,
        from: RepoId,
        #[serde(default)]
        unit_types: Vec<wharf_core::ids::UnitType>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        references: Vec<String>,
    },
    /// Take `references` (and what only they needed) out of the repository.
    Remove {
        repository: RepoId,
        references: Vec<String>,
    },
    /// Point the tag `tag` at `target`.
    Tag {
        repository: RepoId,
        tag: String,
        target: String,
    },
    /// Make version `version`'s content the repository's latest again.
    Restore {
        repository: RepoId,
        version: u64,
    },
    Delete {
        repository: RepoId,
    },
    Orphans {
        protection_minutes: u64,
    },
    /// Re-hash every stored blob; with `remove_corrupt`, delete those whose
    /// bytes do not match their name.
    Fsck {
        #[serde(default)]
        remove_corrupt: bool,
    },
    /// Remove the tags the repository's retention settings no longer
    /// keep; with `dry_run`, only say which.
    Retain {
        repository: RepoId,
        #[serde(default)]
        dry_run: bool,
    },
}

impl Job {
    pub fn kind(&self) -> TaskKind {
        match self {
            Job::Import { .. } | Job::ImportStream { .. } => TaskKind::Import,
            Job::Sync { .. } => TaskKind::Sync,
            Job::Publish { .. } => TaskKind::Publish,
            Job::Copy { .. } => TaskKind::Copy,
            Job::Remove { .. } => TaskKind::Remove,
            Job::Tag { .. } => TaskKind::Tag,
            Job::Restore { .. } => TaskKind::Restore,
            Job::Delete { .. } => TaskKind::Delete,
            Job::Orphans { .. } => TaskKind::Orphans,
            Job::Fsck { .. } => TaskKind::Fsck,
            Job::Retain { .. } => TaskKind::Retain,
        }
    }

    /// Resources the job holds while it runs; jobs sharing one run in
    /// submission order.
    pub fn locks(&self) -> Vec<TaskLock> {
        match self {
            Job::Import { repository, .. }
            | Job::ImportStream { repository, .. }
            | Job::Sync { repository }
            | Job::Publish { repository, .. }
            | Job::Copy { repository, .. }
            | Job::Remove { repository, .. }
            | Job::Tag { repository, .. }
            | Job::Restore { repository, .. }
            | Job::Retain { repository, .. }
            | Job::Delete { repository } => vec![TaskLock::Repository(repository.clone())],
            // Both delete blobs: one at a time.
            Job::Orphans { .. } | Job::Fsck { .. } => vec![TaskLock::Orphans],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_as_task_input() {
        let job = Job::Import {
            repository: "app".parse().unwrap(),
            upload_id: UploadId::new(),
            params: Default::default(),
            delete_upload: true,
            sealed: None,
        };
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(v["job"], "import");
        assert_eq!(serde_json::from_value::<Job>(v).unwrap(), job);
        assert_eq!(job.locks(), [TaskLock::Repository("app".parse().unwrap())]);
        assert_eq!(job.locks()[0].to_string(), "repository:app");
    }
}
