//! The metadata store: repositories, content units and their associations,
//! publications, tasks and uploads, behind one trait.
//!
//! [`sqlite::SqliteStore`] is the embedded default (one file in the data
//! directory). Every backend passes the same conformance suite
//! ([`conformance`]); the trait is shaped for a document database too: no
//! joins are required of the caller, and every multi-record change is one call
//! (one transaction).

pub mod conformance;
pub mod sqlite;

use crate::digest::Digest;
use crate::ids::{RepoId, TaskId, UploadId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub type Notes = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("metadata store: {0}")]
    Backend(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Repository {
    #[schema(value_type = String)]
    pub id: RepoId,
    pub content_type: String,
    pub display_name: String,
    pub description: String,
    pub notes: Notes,
    /// Content-type specific importer settings (feed, upstream name, tag filters).
    #[schema(value_type = Object)]
    pub importer_config: serde_json::Value,
    /// Content-type specific distributor settings (registry name, redirect url).
    #[schema(value_type = Object)]
    pub distributor_config: serde_json::Value,
    pub created_at: String,
    pub updated_at: String,
}

/// A content unit: shared across repositories, unique by (type, key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Unit {
    pub unit_type: String,
    pub key: String,
    /// The plugin's JSON.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    #[schema(value_type = Vec<String>)]
    pub blobs: Vec<Digest>,
}

/// One staged change to a repository's content.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitChange {
    /// Create the unit if absent, associate it with the repository.
    Add(Unit),
    /// Drop the association.
    Remove { unit_type: String, key: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Publication {
    pub plugin: String,
    /// Client-facing name, unique per plugin.
    pub name: String,
    #[schema(value_type = String)]
    pub repo_id: RepoId,
    #[schema(value_type = String)]
    pub index: Digest,
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    pub published_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Waiting,
    Running,
    Finished,
    Error,
    Canceled,
}

impl TaskState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Finished | TaskState::Error | TaskState::Canceled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Waiting => "waiting",
            TaskState::Running => "running",
            TaskState::Finished => "finished",
            TaskState::Error => "error",
            TaskState::Canceled => "canceled",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub items_done: u64,
    pub items_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskError {
    pub message: String,
    pub cause: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    #[schema(value_type = String)]
    pub id: TaskId,
    /// `import`, `sync`, `publish`, `copy`, `delete`, `orphans`.
    pub kind: String,
    pub state: TaskState,
    /// Resources the task locks (e.g. `repository:app`).
    pub locks: Vec<String>,
    pub worker: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub progress: Progress,
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub error: Option<TaskError>,
    /// What the task was asked to do (kind-specific JSON).
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Upload {
    #[schema(value_type = String)]
    pub id: UploadId,
    /// Declared total size, if the client gave one.
    pub size: Option<u64>,
    /// Bytes received so far; the next chunk must start here.
    pub offset: u64,
    pub created_at: String,
}

/// A named set of repositories (the seed's repository groups).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Group {
    /// Same grammar as repository ids.
    #[schema(value_type = String)]
    pub id: RepoId,
    pub display_name: String,
    pub description: String,
    pub notes: Notes,
    #[schema(value_type = Vec<String>)]
    pub members: Vec<RepoId>,
}

/// Filters for listing repositories.
#[derive(Debug, Clone, Default)]
pub struct RepoQuery {
    pub after: Option<String>,
    pub limit: u32,
    pub content_type: Option<String>,
    /// Every note given must match.
    pub notes: Notes,
}

#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    pub state: Option<TaskState>,
    pub kind: Option<String>,
    pub lock: Option<String>,
    pub limit: u32,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> StoreResult<()>;

    async fn create_repo(&self, repo: &Repository) -> StoreResult<()>;
    async fn get_repo(&self, id: &RepoId) -> StoreResult<Option<Repository>>;
    async fn update_repo(&self, repo: &Repository) -> StoreResult<()>;
    /// Delete a repository, its associations and its publications.
    async fn delete_repo(&self, id: &RepoId) -> StoreResult<bool>;
    async fn list_repos(&self, q: &RepoQuery) -> StoreResult<Vec<Repository>>;

    /// Apply staged changes atomically: all of them or none.
    async fn apply_changes(&self, repo: &RepoId, changes: &[UnitChange]) -> StoreResult<()>;
    /// Units of `unit_type` associated with `repo`, in key order after `after`.
    async fn list_units(
        &self,
        repo: &RepoId,
        unit_type: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Unit>>;
    async fn get_unit(
        &self,
        repo: &RepoId,
        unit_type: &str,
        key: &str,
    ) -> StoreResult<Option<Unit>>;
    /// Number of associated units per type.
    async fn count_units(&self, repo: &RepoId) -> StoreResult<BTreeMap<String, u64>>;
    /// Copy associations (never bytes); returns how many were new in `to`.
    async fn copy_units(
        &self,
        from: &RepoId,
        to: &RepoId,
        unit_types: &[String],
    ) -> StoreResult<u64>;
    /// Delete units no repository references; returns how many.
    async fn remove_orphan_units(&self) -> StoreResult<u64>;
    /// Every blob some unit references.
    async fn referenced_blobs(&self) -> StoreResult<Vec<Digest>>;

    /// Replace the publication of `p.repo_id` for `p.plugin`.
    async fn put_publication(&self, p: &Publication) -> StoreResult<()>;
    async fn list_publications(&self) -> StoreResult<Vec<Publication>>;

    async fn put_task(&self, t: &Task) -> StoreResult<()>;
    async fn get_task(&self, id: &TaskId) -> StoreResult<Option<Task>>;
    async fn list_tasks(&self, q: &TaskQuery) -> StoreResult<Vec<Task>>;

    /// Create a group; its members must exist.
    async fn create_group(&self, g: &Group) -> StoreResult<()>;
    async fn get_group(&self, id: &RepoId) -> StoreResult<Option<Group>>;
    /// Replace a group's fields and members.
    async fn update_group(&self, g: &Group) -> StoreResult<()>;
    async fn delete_group(&self, id: &RepoId) -> StoreResult<bool>;
    /// Groups in id order; with `notes`, only groups having all of them.
    async fn list_groups(&self, notes: &Notes) -> StoreResult<Vec<Group>>;

    async fn put_upload(&self, u: &Upload) -> StoreResult<()>;
    async fn get_upload(&self, id: &UploadId) -> StoreResult<Option<Upload>>;
    async fn delete_upload(&self, id: &UploadId) -> StoreResult<bool>;
}

/// Now, as RFC 3339 UTC.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
