//! The metadata store: repositories, content units and their associations,
//! publications, tasks, uploads, and users, roles, permissions and login
//! tokens. A trait per aggregate ([`RepositoryStore`], [`TaskStore`],
//! [`UploadStore`], [`AccessStore`], [`EventStore`], [`PluginStore`]);
//! [`Store`] is all of them in one backend, which is what the server holds.
//!
//! [`sqlite::SqliteStore`] is the embedded default (one file in the data
//! directory); [`mongo::MongoStore`] is the scale-out backend that several
//! nodes share (`--db mongodb://…`). Every backend passes the same
//! conformance suite ([`conformance`]); the traits are shaped for a document
//! database: no joins are required of the caller, and every multi-record
//! change is one call (one transaction). [`transfer`] moves everything from
//! one backend to another (`wharf db export` / `wharf db import`).

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod listener;
pub mod mongo;
#[cfg(test)]
mod mongo_indexes;
pub mod remote;
mod schedule;
pub mod sqlite;
pub mod transfer;
pub mod version;

pub use listener::{EmailTarget, Listener, SmtpSecurity, Target};
pub use remote::{REMOTE_SETTING, Remote, Transport, remote_of};
pub use schedule::{Schedule, ScheduleClaim, ScheduledJob};
pub use version::{
    HistoryEntry, RepoVersion, UnitCounts, UnitRef, VersionCause, VersionDiff, VersionOrigin,
    last_change_per_unit,
};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wharf_core::digest::{Digest, DigestSet, DigestSetBuilder};
use wharf_core::ids::{RepoId, TaskId, UnitType, UploadId};
pub use wharf_core::time::Timestamp;

/// Where the metadata store lives (`--db` / `WHARF_DB`).
#[derive(Clone, PartialEq)]
pub enum DbLocation {
    /// The embedded SQLite file (`sqlite:PATH`; the default is
    /// `<data-dir>/wharf.db`).
    Sqlite(PathBuf),
    /// A MongoDB server (`mongodb://` or `mongodb+srv://` URL) shared by
    /// every node.
    Mongo(String),
}

impl std::str::FromStr for DbLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("mongodb://") || s.starts_with("mongodb+srv://") {
            Ok(DbLocation::Mongo(s.to_string()))
        } else if let Some(path) = s.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(
                    "sqlite: needs a file path, e.g. sqlite:/var/lib/wharf/wharf.db".into(),
                );
            }
            Ok(DbLocation::Sqlite(PathBuf::from(path)))
        } else {
            Err(format!(
                "{s:?} is not a metadata store: use mongodb://HOST:PORT/DATABASE or sqlite:PATH"
            ))
        }
    }
}

/// Shown in logs and errors: never a password.
impl std::fmt::Display for DbLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbLocation::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            DbLocation::Mongo(url) => f.write_str(&mongo::redact(url)),
        }
    }
}

impl std::fmt::Debug for DbLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl DbLocation {
    /// `location`, else the embedded file in `data_dir`.
    pub fn or_default(location: Option<&DbLocation>, data_dir: &Path) -> DbLocation {
        location
            .cloned()
            .unwrap_or_else(|| DbLocation::Sqlite(data_dir.join("wharf.db")))
    }

    /// Open (and migrate) the store.
    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match self {
            DbLocation::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(path)?),
            DbLocation::Mongo(url) => Arc::new(mongo::MongoStore::open(url).await?),
        })
    }
}

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
    /// Content-type specific importer settings (feed, upstream name, tag
    /// filters, credentials). Secrets (`password`, `token`, ...; see
    /// `docs/access.md`) read as `********`.
    #[schema(value_type = Object)]
    pub importer_config: serde_json::Value,
    /// Content-type specific distributor settings (registry name, redirect url).
    #[schema(value_type = Object)]
    pub distributor_config: serde_json::Value,
    /// How many versions to keep (the newest); `None` keeps all. Applied
    /// when the next version is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_versions: Option<u64>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// What [`RepositoryStore::update_group`] does to a group's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Members {
    /// Leave them as they are.
    Keep,
    /// Make them the group's `members`.
    Replace,
}

/// The distributor setting that protects a repository: its published
/// content is served only to callers with read permission on it.
pub const PROTECTED: &str = "protected";

/// How many publications a page of [`RepositoryStore::list_publications`]
/// reads.
pub const PUBLICATIONS_PAGE: u32 = 1000;

impl Repository {
    /// Whether the distributor setting `key` is the JSON boolean `true`
    /// (`protected`, `auto_publish`).
    pub fn setting_is_true(&self, key: &str) -> bool {
        is_true(&self.distributor_config, key)
    }
}

fn is_true(settings: &serde_json::Value, key: &str) -> bool {
    settings.get(key).and_then(serde_json::Value::as_bool) == Some(true)
}

/// A content unit: shared across repositories, unique by (type, key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Unit {
    #[schema(value_type = String)]
    pub unit_type: UnitType,
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
    Remove { unit_type: UnitType, key: String },
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
    /// The repository version it serves (`None`: published before versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    #[schema(value_type = String, format = DateTime)]
    pub published_at: Timestamp,
    /// What the publish stored or read besides its index (a generated
    /// manifest file, the parts of a sharded index, say): the publication
    /// serves these, its index and the blobs of the units of `version`
    /// (without a version: these alone, recorded with its repository's
    /// units' blobs). Orphan cleanup keeps them while the publication
    /// lives; a registry request may be served only what it serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub blobs: Vec<Digest>,
}

/// A change in the publications' feed
/// ([`RepositoryStore::publication_changes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PublicationChange {
    /// Its place in the feed.
    pub seq: u64,
    pub plugin: String,
    pub repo_id: RepoId,
    /// The publication of `repo_id` for `plugin` now; `None` when it is gone.
    pub publication: Option<Publication>,
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

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Uploaded or streamed content into a repository.
    Import,
    /// A repository's feed mirrored.
    Sync,
    /// A repository's content made visible to clients.
    Publish,
    /// Units copied between repositories.
    Copy,
    /// Content (tags, images) taken out of a repository.
    Remove,
    /// A tag added or moved.
    Tag,
    /// An earlier version's content made a repository's latest again.
    Restore,
    /// A repository deleted.
    Delete,
    /// Content no repository holds removed.
    Orphans,
    /// Tags a repository's retention settings no longer keep removed.
    Retain,
    /// Every stored blob re-hashed against its name.
    Fsck,
}

impl TaskKind {
    pub const ALL: [TaskKind; 11] = [
        TaskKind::Import,
        TaskKind::Sync,
        TaskKind::Publish,
        TaskKind::Copy,
        TaskKind::Remove,
        TaskKind::Tag,
        TaskKind::Restore,
        TaskKind::Delete,
        TaskKind::Orphans,
        TaskKind::Retain,
        TaskKind::Fsck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Import => "import",
            TaskKind::Sync => "sync",
            TaskKind::Publish => "publish",
            TaskKind::Copy => "copy",
            TaskKind::Remove => "remove",
            TaskKind::Tag => "tag",
            TaskKind::Restore => "restore",
            TaskKind::Delete => "delete",
            TaskKind::Orphans => "orphans",
            TaskKind::Retain => "retain",
            TaskKind::Fsck => "fsck",
        }
    }
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        TaskKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = TaskKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown task kind {s:?}: one of {}", all.join(", "))
            })
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

/// A line a task logged (a plugin's `log` at level info or above), kept
/// in the task's record: the latest [`TASK_LOG_LINES`] of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskLogLine {
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub level: TaskLogLevel,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskLogLevel {
    Info,
    Warn,
    Error,
}

/// How many log lines a task record keeps (the latest).
pub const TASK_LOG_LINES: usize = 200;
/// The longest log line kept, in bytes; a longer one is cut, marked `…`.
pub const TASK_LOG_LINE_BYTES: usize = 2048;

impl Task {
    /// Keep `message` as the task's latest log line, dropping the oldest
    /// beyond [`TASK_LOG_LINES`] and cutting it at [`TASK_LOG_LINE_BYTES`].
    pub fn push_log(&mut self, level: TaskLogLevel, mut message: String) {
        if message.len() > TASK_LOG_LINE_BYTES {
            let mut end = TASK_LOG_LINE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        if self.log.len() >= TASK_LOG_LINES {
            self.log.drain(..=self.log.len() - TASK_LOG_LINES);
        }
        self.log.push(TaskLogLine {
            at: Timestamp::now(),
            level,
            message,
        });
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskError {
    pub message: String,
    pub cause: String,
}

/// What a task holds while it runs: tasks sharing a lock run one at a
/// time. Written `repository:<id>` (or `orphans`) in records and queries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TaskLock {
    /// The repository's content and settings.
    Repository(RepoId),
    /// Orphan cleanup: one at a time.
    Orphans,
}

impl TaskLock {
    /// The repository this lock is about.
    pub fn repository(&self) -> Option<&RepoId> {
        match self {
            TaskLock::Repository(id) => Some(id),
            TaskLock::Orphans => None,
        }
    }
}

impl std::fmt::Display for TaskLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskLock::Repository(id) => write!(f, "repository:{id}"),
            TaskLock::Orphans => f.write_str("orphans"),
        }
    }
}

impl std::str::FromStr for TaskLock {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "orphans" {
            return Ok(TaskLock::Orphans);
        }
        match s.split_once(':') {
            Some(("repository", id)) => id
                .parse()
                .map(TaskLock::Repository)
                .map_err(|e: wharf_core::ids::InvalidRepoId| e.to_string()),
            _ => Err(format!(
                "unknown task lock {s:?}: expected repository:<id> or orphans"
            )),
        }
    }
}

impl TryFrom<String> for TaskLock {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<TaskLock> for String {
    fn from(l: TaskLock) -> String {
        l.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    #[schema(value_type = String)]
    pub id: TaskId,
    pub kind: TaskKind,
    pub state: TaskState,
    /// Resources the task locks (e.g. `repository:app`).
    #[schema(value_type = Vec<String>)]
    pub locks: Vec<TaskLock>,
    pub worker: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
    pub progress: Progress,
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub error: Option<TaskError>,
    /// What the task was asked to do (kind-specific JSON).
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// Cancel was asked for; the worker running it stops at its next check.
    #[serde(default)]
    pub cancel_requested: bool,
    /// What it logged, oldest first: the latest [`TASK_LOG_LINES`] lines.
    #[serde(default)]
    pub log: Vec<TaskLogLine>,
}

impl Publication {
    /// Whether this publication was made of `repo` and not of an earlier
    /// repository of the same id: one published before `repo` was created
    /// is the deleted one's, still in a node's map that has not caught up
    /// with the delete (a worker's map, a server's between feed polls).
    pub fn is_of(&self, repo: &Repository) -> bool {
        self.repo_id == repo.id && self.published_at >= repo.created_at
    }

    /// Whether its settings say its repository is protected ([`PROTECTED`]):
    /// what the repository said when it was published, or since, when a
    /// node changed the setting. Only a hint: the access gate decides on
    /// the repository's own setting.
    pub fn says_protected(&self) -> bool {
        is_true(&self.config, PROTECTED)
    }

    /// Set one distributor setting, as if it had been published with it;
    /// whether that changed anything.
    pub fn set_setting(&mut self, key: &str, value: &serde_json::Value) -> bool {
        match self.config.as_object_mut() {
            Some(config) if config.get(key) != Some(value) => {
                config.insert(key.to_string(), value.clone());
                true
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Upload {
    #[schema(value_type = String)]
    pub id: UploadId,
    /// Declared total size, if the client gave one.
    pub size: Option<u64>,
    /// Bytes received so far; the next chunk must start here.
    pub offset: u64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// The blob the upload's bytes were stored as for an import (blobs in
    /// a bucket, where no node holds the upload as a file): it takes no
    /// more chunks, and later imports read that blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub sealed: Option<Digest>,
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

/// An operation a permission grants on a resource path.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl Operation {
    pub const ALL: [Operation; 5] = [
        Operation::Create,
        Operation::Read,
        Operation::Update,
        Operation::Delete,
        Operation::Execute,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Read => "read",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Execute => "execute",
        }
    }
}

/// Where a user's password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserSource {
    /// An argon2 hash in this store.
    Local,
    /// A bind to the configured LDAP directory; roles come from its groups.
    Ldap,
}

/// A user of the admin API and the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub login: String,
    pub name: String,
    /// PHC string (argon2id); `None` for LDAP users.
    pub password_hash: Option<String>,
    pub source: UserSource,
    /// Role ids, sorted. Stored as memberships: deleting a role removes it here.
    pub roles: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A named set of users that permissions can be granted to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Role {
    pub id: String,
    pub description: String,
    /// Logins of the members, sorted (read-only: change with role membership calls).
    pub users: Vec<String>,
}

/// Who a permission is granted to.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
pub enum Subject {
    #[serde(rename = "login")]
    User(String),
    #[serde(rename = "role_id")]
    Role(String),
}

/// Operations granted on a resource path (and everything below it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Permission {
    #[serde(flatten)]
    pub subject: Subject,
    /// Normalised: starts and ends with `/` (e.g. `/repositories/app/`).
    pub resource: String,
    /// Sorted, no duplicates.
    pub operations: Vec<Operation>,
}

/// A login token: only its SHA-256 is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub login: String,
    pub created_at: Timestamp,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Filters for listing repositories.
#[derive(Debug, Clone, Default)]
pub struct RepoQuery {
    pub after: Option<String>,
    pub limit: u32,
    pub content_type: Option<String>,
    /// Every note given must match.
    pub notes: Notes,
    /// A distributor setting that must hold this string (`(key, value)`),
    /// answered from an index (see [`indexed_settings`]); a key or value
    /// the store does not index matches nothing.
    pub setting: Option<(String, String)>,
}

/// The longest distributor setting value the store indexes.
pub const MAX_INDEXED_SETTING: usize = 256;

/// Whether a distributor setting key is one the store indexes: 1-64
/// letters, digits, `-` or `_`.
pub fn is_setting_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The distributor settings a repository is found by ([`RepoQuery::setting`]):
/// its top-level string values of at most [`MAX_INDEXED_SETTING`] bytes
/// under keys that pass [`is_setting_key`].
pub fn indexed_settings(repo: &Repository) -> Vec<(&str, &str)> {
    repo.distributor_config
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .filter(|(k, v)| is_setting_key(k) && v.len() <= MAX_INDEXED_SETTING)
        .collect()
}

impl RepoQuery {
    /// Whether the setting filter can match at all.
    pub fn setting_is_indexed(&self) -> bool {
        self.setting
            .as_ref()
            .is_none_or(|(k, v)| is_setting_key(k) && v.len() <= MAX_INDEXED_SETTING)
    }
}

#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    pub state: Option<TaskState>,
    pub kind: Option<TaskKind>,
    pub lock: Option<TaskLock>,
    pub limit: u32,
}

/// Whether a plugin installed through the API is in force or was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    Installed,
    Removed,
}

/// The last install or removal of a plugin through the API: what every node
/// reconciles its loaded plugins with (see `plugins::sync`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstalledPlugin {
    pub name: String,
    pub state: PluginState,
    /// The version installed, or the one that was removed.
    pub version: String,
    /// The component installed (`<data-dir>/installed-plugins/<name>.wasm`
    /// must have this digest), or the one that was removed.
    pub wasm_sha256: Digest,
    pub changed_at: Timestamp,
}

/// Repositories, their content (units and their associations),
/// publications and repository groups.
#[async_trait::async_trait]
pub trait RepositoryStore: Send + Sync {
    async fn create_repo(&self, repo: &Repository) -> StoreResult<()>;

    async fn get_repo(&self, id: &RepoId) -> StoreResult<Option<Repository>>;

    async fn update_repo(&self, repo: &Repository) -> StoreResult<()>;

    /// Delete a repository, its associations and its publications.
    async fn delete_repo(&self, id: &RepoId) -> StoreResult<bool>;

    async fn list_repos(&self, q: &RepoQuery) -> StoreResult<Vec<Repository>>;

    /// Repositories in id order after `after`, at most `limit`, each with
    /// whether its distributor setting `key` is `true`: what a node reads
    /// of every repository in the background (`protected`), without whole
    /// documents where the backend can.
    async fn repo_flags(
        &self,
        key: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(RepoId, bool)>> {
        let page = self
            .list_repos(&RepoQuery {
                after: after.map(str::to_string),
                limit,
                ..Default::default()
            })
            .await?;
        Ok(page
            .into_iter()
            .map(|r| {
                let on = r.setting_is_true(key);
                (r.id, on)
            })
            .collect())
    }

    /// Apply staged changes atomically, all of them or none, as one new
    /// version (the last change to a unit wins). Returns that version, or
    /// `None` when nothing changed (adding what the repository holds,
    /// removing what it does not): no version is made then.
    async fn apply_changes(
        &self,
        repo: &RepoId,
        changes: &[UnitChange],
        origin: &VersionOrigin,
    ) -> StoreResult<Option<RepoVersion>>;

    /// Units of `unit_type` associated with `repo`, in key order after `after`.
    async fn list_units(
        &self,
        repo: &RepoId,
        unit_type: &UnitType,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Unit>>;

    /// The keys of `repo`'s units of `unit_type`, each with the version
    /// that gave it its current unit (a tag moved to a new manifest counts
    /// from the move), in key order after `after`: what retention sorts by.
    async fn list_unit_additions(
        &self,
        repo: &RepoId,
        unit_type: &UnitType,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<(String, u64)>>;

    async fn get_unit(
        &self,
        repo: &RepoId,
        unit_type: &UnitType,
        key: &str,
    ) -> StoreResult<Option<Unit>>;

    /// [`RepositoryStore::list_units`] of version `version`.
    async fn list_version_units(
        &self,
        repo: &RepoId,
        version: u64,
        unit_type: &UnitType,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Unit>>;

    /// [`RepositoryStore::get_unit`] in version `version`.
    async fn get_version_unit(
        &self,
        repo: &RepoId,
        version: u64,
        unit_type: &UnitType,
        key: &str,
    ) -> StoreResult<Option<Unit>>;

    /// Number of associated units per type.
    async fn count_units(&self, repo: &RepoId) -> StoreResult<BTreeMap<UnitType, u64>>;

    /// Copy the associations (never bytes) of every unit of `unit_types`
    /// (every unit when empty) as one new version of `to`; `None` when `to`
    /// held them all already.
    async fn copy_units(
        &self,
        from: &RepoId,
        to: &RepoId,
        unit_types: &[UnitType],
        origin: &VersionOrigin,
    ) -> StoreResult<Option<RepoVersion>>;

    /// A repository's versions kept, oldest first, numbered after `after`.
    async fn list_versions(
        &self,
        repo: &RepoId,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<RepoVersion>>;

    /// One version, if kept.
    async fn get_version(&self, repo: &RepoId, number: u64) -> StoreResult<Option<RepoVersion>>;

    /// The newest version (every repository has at least version 0).
    async fn latest_version(&self, repo: &RepoId) -> StoreResult<Option<RepoVersion>>;

    /// Units in `to` and not in `from`, and the reverse; both versions must
    /// be kept ([`StoreError::NotFound`] otherwise). Costs the units
    /// changed between them.
    async fn diff_versions(&self, repo: &RepoId, from: u64, to: u64) -> StoreResult<VersionDiff>;

    /// Every blob the units of version `version` reference.
    async fn version_blobs(&self, repo: &RepoId, version: u64) -> StoreResult<Vec<Digest>> {
        let refs = self.version_blob_refs(repo, version).await?;
        Ok(refs.into_iter().map(|(d, _)| d).collect())
    }

    /// Every blob the units of version `version` reference, with how many
    /// of those units reference it: what a publication of that version
    /// serves, counted so that a unit removed later takes a blob out only
    /// with the last unit naming it.
    async fn version_blob_refs(
        &self,
        repo: &RepoId,
        version: u64,
    ) -> StoreResult<Vec<(Digest, u32)>>;

    /// A repository's associations, current and retired, with their units:
    /// in type, key and version order after `after` (what `db export`
    /// carries).
    async fn list_history(
        &self,
        repo: &RepoId,
        after: Option<&(UnitRef, u64)>,
        limit: u32,
    ) -> StoreResult<Vec<HistoryEntry>>;

    /// Write history entries and version records as exported (`db import`
    /// into a repository that has no content yet): units are created if
    /// absent; when `versions` is not empty, it replaces every version
    /// record the repository has (so give them all at once).
    async fn import_history(
        &self,
        repo: &RepoId,
        entries: &[HistoryEntry],
        versions: &[RepoVersion],
    ) -> StoreResult<()>;

    /// Delete units no repository references; returns how many.
    async fn remove_orphan_units(&self) -> StoreResult<u64>;

    /// Every blob some unit or publication references, read a row at a
    /// time into a compact set (32 bytes a blob).
    async fn referenced_blobs(&self) -> StoreResult<DigestSet>;

    /// Every blob the units associated with `repo` (its latest version)
    /// reference: what the repository may serve (see `visibility`).
    async fn repo_blobs(&self, repo: &RepoId) -> StoreResult<Vec<Digest>>;

    /// Whether a unit associated with `repo` (its latest version)
    /// references `blob`: one indexed lookup, whatever the repository or
    /// the installation holds (what a registry write asks of a blob it
    /// names).
    async fn repo_holds_blob(&self, repo: &RepoId, blob: &Digest) -> StoreResult<bool>;

    /// Units of `unit_type` associated with `repo` (its latest version)
    /// that name `blob`, in key order after `after`, at most `limit`: a
    /// range of the blob index (the tags that point at a manifest, say),
    /// whatever else the repository holds.
    async fn list_units_naming(
        &self,
        repo: &RepoId,
        blob: &Digest,
        unit_type: &UnitType,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Unit>>;

    /// The repositories some unit of which (in their latest versions)
    /// references `blob`, from an index on the blob.
    async fn repos_holding_blob(&self, blob: &Digest) -> StoreResult<Vec<RepoId>>;

    /// Replace the publication of `p.repo_id` for `p.plugin`.
    async fn put_publication(&self, p: &Publication) -> StoreResult<()>;

    /// Up to `limit` publications after `after` (plugin, name), ordered by
    /// plugin, then name: one page of an index, however many there are.
    async fn publications_after(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<Publication>>;

    /// The publication of `plugin` under `name`, if any.
    async fn publication_named(&self, plugin: &str, name: &str)
    -> StoreResult<Option<Publication>>;

    /// Every publication, ordered by plugin, then name, read page by page
    /// ([`RepositoryStore::publications_after`]).
    async fn list_publications(&self) -> StoreResult<Vec<Publication>> {
        let mut all: Vec<Publication> = Vec::new();
        loop {
            let after = all.last().map(|p| (p.plugin.as_str(), p.name.as_str()));
            let page = self.publications_after(after, PUBLICATIONS_PAGE).await?;
            let full = page.len() == PUBLICATIONS_PAGE as usize;
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    /// Where the publications' change feed is: every change (a publish, a
    /// setting changed in place, a publication gone with its repository or
    /// its name) moves it forward. Read it before [`list_publications`],
    /// then follow [`publication_changes`] from it.
    ///
    /// [`list_publications`]: RepositoryStore::list_publications
    /// [`publication_changes`]: RepositoryStore::publication_changes
    async fn publication_seq(&self) -> StoreResult<u64>;

    /// Up to `limit` changes after `after`, oldest first, each with the
    /// publication as it is now. A publication changed several times is
    /// told once, at its last change; changes are told in the order they
    /// were committed, so following them from a position leaves a copy of
    /// the publications that equals [`RepositoryStore::list_publications`].
    async fn publication_changes(
        &self,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<PublicationChange>>;

    /// Set one distributor setting in the publications of `repo` (as if
    /// they had been published with it), changing nothing else of them; a
    /// publish racing with it keeps its own. Returns how many changed.
    async fn set_publication_setting(
        &self,
        repo: &RepoId,
        key: &str,
        value: &serde_json::Value,
    ) -> StoreResult<usize>;

    /// Create a group; its members must exist.
    async fn create_group(&self, g: &Group) -> StoreResult<()>;

    async fn get_group(&self, id: &RepoId) -> StoreResult<Option<Group>>;

    /// Replace a group's fields, and its members when told to: a change
    /// of its fields alone leaves the members as they are now, not as the
    /// caller read them.
    async fn update_group(&self, g: &Group, members: Members) -> StoreResult<()>;

    /// Add (`member`) or remove repository `repo` from group `id`, leaving
    /// its other members as they are now (two adds at once both land);
    /// returns whether anything changed. The group must exist, and the
    /// repository too when added.
    async fn set_group_member(&self, id: &RepoId, repo: &RepoId, member: bool)
    -> StoreResult<bool>;

    async fn delete_group(&self, id: &RepoId) -> StoreResult<bool>;

    /// Groups in id order; with `notes`, only groups having all of them.
    async fn list_groups(&self, notes: &Notes) -> StoreResult<Vec<Group>>;
}

/// Tasks: their records, live progress and cancel requests.
#[async_trait::async_trait]
pub trait TaskStore: Send + Sync {
    async fn put_task(&self, t: &Task) -> StoreResult<()>;

    /// Write a task that has not ended yet (progress, start), keeping a cancel
    /// request already recorded. Returns false, writing nothing, if the
    /// stored task already ended: a late progress write never undoes an end.
    async fn update_live_task(&self, t: &Task) -> StoreResult<bool>;

    /// Record a cancel request if the task has not ended; false otherwise.
    async fn request_task_cancel(&self, id: &TaskId) -> StoreResult<bool>;

    async fn get_task(&self, id: &TaskId) -> StoreResult<Option<Task>>;

    async fn list_tasks(&self, q: &TaskQuery) -> StoreResult<Vec<Task>>;
}

/// Resumable uploads (the records; the bytes are in the data directory).
#[async_trait::async_trait]
pub trait UploadStore: Send + Sync {
    async fn put_upload(&self, u: &Upload) -> StoreResult<()>;

    async fn get_upload(&self, id: &UploadId) -> StoreResult<Option<Upload>>;

    async fn delete_upload(&self, id: &UploadId) -> StoreResult<bool>;
}

/// Users, roles, permissions and login tokens.
#[async_trait::async_trait]
pub trait AccessStore: Send + Sync {
    /// Create a user; its roles must exist.
    async fn create_user(&self, u: &User) -> StoreResult<()>;

    async fn get_user(&self, login: &str) -> StoreResult<Option<User>>;

    /// Replace a user's fields and roles; the roles must exist.
    async fn update_user(&self, u: &User) -> StoreResult<()>;

    /// Delete a user with its memberships, permissions and tokens.
    async fn delete_user(&self, login: &str) -> StoreResult<bool>;

    /// Users in login order.
    async fn list_users(&self) -> StoreResult<Vec<User>>;

    async fn create_role(&self, r: &Role) -> StoreResult<()>;

    async fn get_role(&self, id: &str) -> StoreResult<Option<Role>>;

    /// Delete a role with its memberships and permissions.
    async fn delete_role(&self, id: &str) -> StoreResult<bool>;

    /// Roles in id order.
    async fn list_roles(&self) -> StoreResult<Vec<Role>>;

    /// Add (`member`) or remove a user from a role; returns whether anything
    /// changed. Both must exist.
    async fn set_role_member(&self, role: &str, login: &str, member: bool) -> StoreResult<bool>;

    /// Add operations to the subject's permission on `resource`; the subject
    /// must exist. Returns the permission as it now is.
    async fn grant(
        &self,
        subject: &Subject,
        resource: &str,
        ops: &[Operation],
    ) -> StoreResult<Permission>;

    /// Remove operations (the permission goes when none is left); returns
    /// whether anything changed.
    async fn revoke(
        &self,
        subject: &Subject,
        resource: &str,
        ops: &[Operation],
    ) -> StoreResult<bool>;

    /// The permissions of the given subjects (all when empty), by subject and resource.
    async fn list_permissions(&self, subjects: &[Subject]) -> StoreResult<Vec<Permission>>;

    /// A number that moves with every change to any permission (a grant, a
    /// revoke, a user or role deleted with its permissions), on every node:
    /// a permission list read when it stood at the same number is current.
    async fn permissions_seq(&self) -> StoreResult<u64>;

    /// Store a token; its user must exist.
    async fn put_token(&self, t: &ApiToken) -> StoreResult<()>;

    async fn get_token(&self, hash: &str) -> StoreResult<Option<ApiToken>>;

    async fn delete_token(&self, hash: &str) -> StoreResult<bool>;

    /// Delete every token of a user; returns how many.
    async fn delete_user_tokens(&self, login: &str) -> StoreResult<u64>;

    /// Delete tokens that expired before `now` (Unix seconds); returns how many.
    async fn delete_expired_tokens(&self, now: u64) -> StoreResult<u64>;
}

/// Event listeners.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync {
    async fn put_listener(&self, l: &crate::db::Listener) -> StoreResult<()>;

    async fn list_listeners(&self) -> StoreResult<Vec<crate::db::Listener>>;

    async fn delete_listener(&self, id: &str) -> StoreResult<bool>;
}

/// Schedules of recurring work. A node claims a due run with a
/// compare-and-set on the schedule's `revision` ([`Self::swap_schedule`]),
/// so that one node, and only one, submits it.
#[async_trait::async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Create or replace a schedule.
    async fn put_schedule(&self, s: &Schedule) -> StoreResult<()>;

    async fn get_schedule(&self, id: &str) -> StoreResult<Option<Schedule>>;

    /// Every schedule, by id.
    async fn list_schedules(&self) -> StoreResult<Vec<Schedule>>;

    async fn delete_schedule(&self, id: &str) -> StoreResult<bool>;

    /// Replace the schedule `new.id` with `new` if, and only if, its stored
    /// revision is still `expected`; false (nothing changed) otherwise.
    async fn swap_schedule(&self, expected: u64, new: &Schedule) -> StoreResult<bool>;
}

/// Remotes: upstream settings repositories share.
#[async_trait::async_trait]
pub trait RemoteStore: Send + Sync {
    /// Create or replace a remote.
    async fn put_remote(&self, r: &Remote) -> StoreResult<()>;

    async fn get_remote(&self, id: &wharf_core::ids::RemoteId) -> StoreResult<Option<Remote>>;

    /// Every remote, by id.
    async fn list_remotes(&self) -> StoreResult<Vec<Remote>>;

    async fn delete_remote(&self, id: &wharf_core::ids::RemoteId) -> StoreResult<bool>;
}

/// Installs and removals of plugins, which every node reconciles with.
#[async_trait::async_trait]
pub trait PluginStore: Send + Sync {
    /// Record the install or removal of a plugin (one record per name).
    async fn put_installed_plugin(&self, p: &InstalledPlugin) -> StoreResult<()>;

    /// Every plugin record, by name.
    async fn list_installed_plugins(&self) -> StoreResult<Vec<InstalledPlugin>>;
}

/// Secrets the nodes sharing the store must agree on (the registry token
/// signing key): made once, by whichever node asks first.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync {
    /// The secret named `name`: stored as `candidate` if there is none yet,
    /// else the one stored (another node's, made first). Exactly one value
    /// wins however many nodes ask at once.
    async fn ensure_secret(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>>;
}

/// The whole metadata store: one backend holding every aggregate. Code
/// that needs one aggregate names its trait (`TaskStore`, ...).
#[async_trait::async_trait]
pub trait Store:
    RepositoryStore
    + TaskStore
    + UploadStore
    + AccessStore
    + EventStore
    + PluginStore
    + ScheduleStore
    + RemoteStore
    + SecretStore
    + 'static
{
    /// Which backend this is: `"sqlite"` or `"mongodb"` (reported by
    /// `/api/v1/status` as `storage.db.backend`).
    fn backend(&self) -> &'static str;

    /// A cheap round trip, for readiness.
    async fn ping(&self) -> StoreResult<()>;
}

/// Now, as records keep it.
pub fn now() -> Timestamp {
    Timestamp::now()
}

#[cfg(test)]
mod tests {
    use super::{DbLocation, TaskKind};

    /// A publication still in a lagging node's map after its repository was
    /// deleted and made again under the same id is not the new one's.
    #[test]
    fn a_publication_older_than_its_repository_is_another_repositorys() {
        let at = |t: &str| -> wharf_core::time::Timestamp {
            serde_json::from_value(serde_json::json!(t)).unwrap()
        };
        let repo: super::Repository = serde_json::from_value(serde_json::json!({
            "id": "app", "content_type": "docker", "display_name": "app", "description": "",
            "notes": {}, "importer_config": {}, "distributor_config": {},
            "created_at": "2026-12-06T10:00:00Z", "updated_at": "2026-12-06T10:00:00Z"
        }))
        .unwrap();
        let mut p = super::Publication {
            plugin: "docker".into(),
            name: "app".into(),
            repo_id: "app".parse().unwrap(),
            index: wharf_core::digest::Digest::of(b"index"),
            version: Some(1),
            config: serde_json::json!({}),
            published_at: at("2026-12-06T09:59:59Z"),
            blobs: Vec::new(),
        };
        assert!(!p.is_of(&repo), "published before the repository was made");
        p.published_at = at("2026-12-06T10:00:01Z");
        assert!(p.is_of(&repo));
        p.repo_id = "other".parse().unwrap();
        assert!(!p.is_of(&repo), "another repository's");
    }

    #[test]
    fn a_task_keeps_its_latest_log_lines_each_cut_to_size() {
        use super::{TASK_LOG_LINE_BYTES, TASK_LOG_LINES, TaskLogLevel};
        let mut t: super::Task = serde_json::from_value(serde_json::json!({
            "id": "01234567-89ab-7def-8123-456789abcdef", "kind": "sync", "state": "running",
            "locks": [], "worker": null, "created_at": "2026-12-04T00:00:00Z",
            "started_at": null, "finished_at": null, "progress": {"items_done": 0,
            "items_total": 0, "bytes_done": 0, "bytes_total": 0, "message": ""},
            "result": null, "error": null, "input": {}
        }))
        .expect("a record of before task logs reads with none");
        assert!(t.log.is_empty());
        for i in 0..TASK_LOG_LINES + 5 {
            t.push_log(TaskLogLevel::Info, format!("line {i}"));
        }
        assert_eq!(t.log.len(), TASK_LOG_LINES);
        assert_eq!(t.log[0].message, "line 5");
        t.push_log(TaskLogLevel::Error, "é".repeat(TASK_LOG_LINE_BYTES));
        let last = &t.log.last().unwrap().message;
        assert!(last.len() <= TASK_LOG_LINE_BYTES + '…'.len_utf8() && last.ends_with('…'));
        assert_eq!(t.log.len(), TASK_LOG_LINES);
    }

    #[test]
    fn task_locks_read_back_from_their_text() {
        use super::TaskLock;
        for text in ["repository:app", "orphans"] {
            let lock: TaskLock = text.parse().unwrap();
            assert_eq!(lock.to_string(), text);
            assert_eq!(serde_json::to_value(&lock).unwrap(), text);
        }
        assert_eq!(
            "repository:app"
                .parse::<TaskLock>()
                .unwrap()
                .repository()
                .unwrap()
                .as_str(),
            "app"
        );
        for bad in ["repository:", "repository:a/b", "group:x", "orphans:x"] {
            assert!(bad.parse::<TaskLock>().is_err(), "{bad}");
            assert!(serde_json::from_value::<TaskLock>(bad.into()).is_err());
        }
    }

    #[test]
    fn task_kinds_parse_back_and_an_unknown_one_names_the_known_ones() {
        for k in TaskKind::ALL {
            assert_eq!(k.as_str().parse::<TaskKind>(), Ok(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        let err = "bogus".parse::<TaskKind>().unwrap_err();
        assert!(err.contains("bogus") && err.contains("orphans"), "{err}");
        assert!("Import".parse::<TaskKind>().is_err(), "kinds are lowercase");
    }

    #[test]
    fn db_locations_parse_and_never_show_a_password() {
        let m: DbLocation = "mongodb://u:pw@db1:27017/wharf".parse().unwrap();
        assert_eq!(
            m,
            DbLocation::Mongo("mongodb://u:pw@db1:27017/wharf".into())
        );
        assert_eq!(m.to_string(), "mongodb://***@db1:27017/wharf");
        assert_eq!(format!("{m:?}"), "mongodb://***@db1:27017/wharf");
        assert_eq!(
            "sqlite:/srv/w.db".parse::<DbLocation>().unwrap(),
            DbLocation::Sqlite("/srv/w.db".into())
        );
        let err = "postgres://x".parse::<DbLocation>().unwrap_err();
        assert!(
            err.contains("mongodb://") && err.contains("sqlite:"),
            "{err}"
        );
        assert!("sqlite:".parse::<DbLocation>().is_err());
        assert_eq!(
            DbLocation::or_default(None, std::path::Path::new("/d")),
            DbLocation::Sqlite("/d/wharf.db".into())
        );
    }
}
