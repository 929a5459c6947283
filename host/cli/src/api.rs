//! The admin API's endpoints as typed calls. Records are the server's own
//! types ([`wharf_store::db`]), so the client and the server cannot drift apart.

use crate::client::{ApiFailure, Client, ClientError, ClientResult, SizedBody};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use wharf_core::ids::{RepoId, TaskId, UploadId};
use wharf_store::db::{
    Notes, Publication, RepoVersion, Repository, Task, TaskState, Unit, Upload, VersionDiff,
};

/// One page of a list; `next` is the `after` of the following page.
#[derive(Deserialize)]
struct Page<T> {
    items: Vec<T>,
    next: Option<String>,
}

/// `GET /repositories/{id}`: the repository with what it holds and where it
/// is published.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoDetail {
    #[serde(flatten)]
    pub repo: Repository,
    /// Units per unit type.
    pub content_counts: BTreeMap<String, u64>,
    /// The newest version's number.
    #[serde(default)]
    pub latest_version: Option<u64>,
    pub publications: Vec<Publication>,
}

/// `POST /repositories`.
#[derive(Debug, Serialize)]
pub struct NewRepo {
    pub id: RepoId,
    pub content_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub description: String,
    pub notes: Notes,
    pub importer_config: Map<String, Value>,
    pub distributor_config: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_versions: Option<u64>,
}

/// `PATCH /repositories/{id}`: only what is given changes; a `None` note or
/// a `null` setting is removed.
#[derive(Debug, Default, Serialize)]
pub struct RepoPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub notes: BTreeMap<String, Option<String>>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub importer_config: Map<String, Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub distributor_config: Map<String, Value>,
    /// `Some(None)`: keep every version again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_versions: Option<Option<u64>>,
}

impl RepoPatch {
    pub fn is_empty(&self) -> bool {
        self.retain_versions.is_none()
            && self.display_name.is_none()
            && self.description.is_none()
            && self.notes.is_empty()
            && self.importer_config.is_empty()
            && self.distributor_config.is_empty()
    }
}

/// Which repositories `list_repos` returns.
#[derive(Debug, Default)]
pub struct RepoFilter {
    pub content_type: Option<String>,
    /// Every note given must match.
    pub notes: Notes,
}

/// Which tasks `tasks` returns (newest first).
#[derive(Debug, Default)]
pub struct TaskFilter {
    pub state: Option<TaskState>,
    pub kind: Option<wharf_store::db::TaskKind>,
    pub repository: Option<RepoId>,
    pub limit: u32,
}

/// A repository request's 404 names the repository; say where to find the
/// right one.
fn unknown_repo_hint(e: ClientError) -> ClientError {
    match e {
        ClientError::Api(f) if f.code == "not-found" && f.message.starts_with("repository") => {
            ClientError::Api(ApiFailure {
                message: format!("{}; `wharf repo list` shows the repositories", f.message),
                ..f
            })
        }
        e => e,
    }
}

fn task_hint(e: ClientError) -> ClientError {
    match e {
        ClientError::Api(f) if f.code == "not-found" => ClientError::Api(ApiFailure {
            message: format!("{}; `wharf task list` shows recent tasks", f.message),
            ..f
        }),
        e => e,
    }
}

impl Client {
    /// `GET /status`, as the server wrote it (its shape is informational).
    pub fn status(&self) -> ClientResult<Value> {
        self.get("status", &[])
    }

    /// Every repository that passes `filter`, through all pages.
    pub fn list_repos(&self, filter: &RepoFilter) -> ClientResult<Vec<Repository>> {
        let mut query = Vec::new();
        if let Some(t) = &filter.content_type {
            query.push(("content_type", t.clone()));
        }
        if !filter.notes.is_empty() {
            // The server takes note filters as one comma-separated list.
            let notes: Vec<String> = filter
                .notes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            query.push(("note", notes.join(",")));
        }
        self.all_pages("repositories", query)
    }

    pub fn repo(&self, id: &RepoId) -> ClientResult<RepoDetail> {
        self.get(&format!("repositories/{id}"), &[])
            .map_err(unknown_repo_hint)
    }

    pub fn create_repo(&self, repo: &NewRepo) -> ClientResult<Repository> {
        self.post("repositories", repo)
    }

    pub fn update_repo(&self, id: &RepoId, patch: &RepoPatch) -> ClientResult<Repository> {
        self.patch(&format!("repositories/{id}"), patch)
            .map_err(unknown_repo_hint)
    }

    pub fn delete_repo(&self, id: &RepoId) -> ClientResult<Task> {
        self.delete(&format!("repositories/{id}"))
            .map_err(unknown_repo_hint)
    }

    pub fn sync_repo(&self, id: &RepoId) -> ClientResult<Task> {
        self.repo_task(id, "sync", serde_json::json!({}))
    }

    /// Publish a version (the latest when `None`).
    pub fn publish_repo(&self, id: &RepoId, version: Option<u64>) -> ClientResult<Task> {
        let body = match version {
            Some(n) => serde_json::json!({"version": n}),
            None => serde_json::json!({}),
        };
        self.repo_task(id, "publish", body)
    }

    /// Copy the units making up `references` (tags, digests: the content
    /// type's words) from `from` into `to`.
    pub fn copy_references(
        &self,
        from: &RepoId,
        to: &RepoId,
        references: &[String],
    ) -> ClientResult<Task> {
        let body = serde_json::json!({"from": from, "references": references});
        self.repo_task(to, "copy", body)
    }

    /// Take `references` out of a repository.
    pub fn remove_references(&self, id: &RepoId, references: &[String]) -> ClientResult<Task> {
        self.repo_task(id, "remove", serde_json::json!({"references": references}))
    }

    /// Apply a repository's retention settings (`dry_run`: only list what
    /// would go).
    pub fn retain(&self, id: &RepoId, dry_run: bool) -> ClientResult<Task> {
        self.repo_task(id, "retain", serde_json::json!({"dry_run": dry_run}))
    }

    /// Point `tag` at `target` in a repository.
    pub fn tag(&self, id: &RepoId, tag: &str, target: &str) -> ClientResult<Task> {
        self.repo_task(id, "tag", serde_json::json!({"tag": tag, "target": target}))
    }

    /// Every version a repository keeps, oldest first.
    pub fn versions(&self, id: &RepoId) -> ClientResult<Vec<RepoVersion>> {
        self.all_pages(&format!("repositories/{id}/versions"), vec![])
            .map_err(unknown_repo_hint)
    }

    pub fn version(&self, id: &RepoId, n: u64) -> ClientResult<RepoVersion> {
        self.get(&format!("repositories/{id}/versions/{n}"), &[])
            .map_err(unknown_repo_hint)
    }

    pub fn diff(&self, id: &RepoId, from: u64, to: u64) -> ClientResult<VersionDiff> {
        let q = [("from", from.to_string()), ("to", to.to_string())];
        self.get(&format!("repositories/{id}/diff"), &q)
            .map_err(unknown_repo_hint)
    }

    /// Make version `n`'s content the latest again (a task).
    pub fn restore_version(&self, id: &RepoId, n: u64) -> ClientResult<Task> {
        self.repo_task(id, &format!("versions/{n}/restore"), serde_json::json!({}))
    }

    /// Copy unit associations (never bytes) from `from` into `to`; every
    /// unit type when `unit_types` is empty.
    pub fn copy_units(
        &self,
        from: &RepoId,
        to: &RepoId,
        unit_types: &[String],
    ) -> ClientResult<Task> {
        let body = serde_json::json!({"from": from, "unit_types": unit_types});
        self.repo_task(to, "copy", body)
    }

    /// Import a complete upload into a repository; the server deletes the
    /// upload when the import succeeds.
    pub fn import_upload(
        &self,
        repo: &RepoId,
        upload: &UploadId,
        params: &Map<String, Value>,
    ) -> ClientResult<Task> {
        let body = serde_json::json!({"upload_id": upload, "params": params});
        self.repo_task(repo, "import", body)
    }

    /// Send the content itself to be imported while it arrives; the answer
    /// is the ended import task. Parameters go as query parameters.
    pub fn import_stream(
        &self,
        repo: &RepoId,
        params: &Map<String, Value>,
        body: SizedBody,
        timeout: Duration,
    ) -> ClientResult<Task> {
        let query: Vec<(&str, String)> = params
            .iter()
            .map(|(k, v)| {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                (k.as_str(), v)
            })
            .collect();
        self.send_body(
            reqwest::Method::POST,
            &format!("repositories/{repo}/import"),
            &query,
            body,
            timeout,
        )
        .map_err(unknown_repo_hint)
    }

    /// The long operations answer 202 with the task doing the work.
    fn repo_task(&self, id: &RepoId, op: &str, body: Value) -> ClientResult<Task> {
        self.post(&format!("repositories/{id}/{op}"), &body)
            .map_err(unknown_repo_hint)
    }

    /// The units of one type in a repository, through all pages.
    pub fn units(&self, repo: &RepoId, unit_type: &str) -> ClientResult<Vec<Unit>> {
        self.version_units(repo, unit_type, None)
    }

    /// The units of one type in a version of a repository (the latest when
    /// `None`), through all pages.
    pub fn version_units(
        &self,
        repo: &RepoId,
        unit_type: &str,
        version: Option<u64>,
    ) -> ClientResult<Vec<Unit>> {
        let mut query = vec![("type", unit_type.to_string())];
        if let Some(n) = version {
            query.push(("version", n.to_string()));
        }
        self.all_pages(&format!("repositories/{repo}/content"), query)
            .map_err(unknown_repo_hint)
    }

    fn all_pages<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: Vec<(&str, String)>,
    ) -> ClientResult<Vec<T>> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut q = query.clone();
            q.push(("limit", "1000".into()));
            if let Some(a) = after.take() {
                q.push(("after", a));
            }
            let page: Page<T> = self.get(path, &q)?;
            items.extend(page.items);
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(items),
            }
        }
    }

    pub fn create_upload(&self, size: u64) -> ClientResult<Upload> {
        self.post("uploads", &serde_json::json!({"size": size}))
    }

    pub fn upload(&self, id: &UploadId) -> ClientResult<Upload> {
        self.get(&format!("uploads/{id}"), &[])
    }

    /// Send bytes `[offset, offset + body length)` of an upload.
    pub fn put_chunk(
        &self,
        id: &UploadId,
        offset: u64,
        body: SizedBody,
        timeout: Duration,
    ) -> ClientResult<Upload> {
        self.send_body(
            reqwest::Method::PUT,
            &format!("uploads/{id}"),
            &[("offset", offset.to_string())],
            body,
            timeout,
        )
    }

    pub fn delete_upload(&self, id: &UploadId) -> ClientResult<()> {
        self.delete_empty(&format!("uploads/{id}"))
    }

    pub fn tasks(&self, filter: &TaskFilter) -> ClientResult<Vec<Task>> {
        let mut q = vec![("limit", filter.limit.to_string())];
        if let Some(s) = filter.state {
            q.push(("state", s.as_str().to_string()));
        }
        if let Some(k) = &filter.kind {
            q.push(("kind", k.to_string()));
        }
        if let Some(r) = &filter.repository {
            q.push(("repository", r.to_string()));
        }
        self.get("tasks", &q)
    }

    pub fn task(&self, id: &TaskId) -> ClientResult<Task> {
        self.get(&format!("tasks/{id}"), &[]).map_err(task_hint)
    }

    pub fn cancel_task(&self, id: &TaskId) -> ClientResult<Task> {
        self.post(&format!("tasks/{id}/cancel"), &serde_json::json!({}))
            .map_err(task_hint)
    }
}
