//! What each kind of task does: the work behind each [`Job`] (the plain
//! data a task is asked to do, defined with the tasks), run by whichever
//! worker takes the task.

use crate::app::App;
use crate::tasks::{Job, TaskContext, TaskFailure, TaskResult};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wharf_core::ids::{RepoId, UploadId};
use wharf_runtime::calls::{Staged, Summary, TaskAnswer};
use wharf_runtime::engine::{Plugin, PluginError};
use wharf_runtime::host::{SourceHandle, TaskCall, origin};
use wharf_runtime::stream_source::StreamSource;
use wharf_store::blobs::leases::Holder;
use wharf_store::db::{Publication, Repository, now};

/// Run a job to its end.
pub async fn run(app: Arc<App>, job: Job, ctx: TaskContext) -> TaskResult {
    let app = &app;
    match job {
        Job::Import {
            repository,
            upload_id,
            params,
            delete_upload,
        } => import(app, &repository, upload_id, params, delete_upload, ctx).await,
        // Started by `Tasks::run_here` with its body; a record alone (say,
        // redelivered after a crash) has no body to read.
        Job::ImportStream { .. } => Err(TaskFailure::new(
            "a streaming import reads the body of the request that started it, so only the \
             process that received that request can run it; send the content again",
            "not-rerunnable",
        )),
        Job::Sync { repository } => {
            let (repo, plugin) = repo_and_plugin(app, &repository).await?;
            let version = plugin_version(&plugin);
            let (summary, bytes, _, _) =
                run_plugin_task(app, plugin, repo, ctx, |p, call, cancel| {
                    p.sync(call, cancel)
                })
                .await?;
            Ok(summary_json(&summary, bytes, version))
        }
        Job::Publish { repository } => publish(app, &repository, ctx).await,
        Job::Copy {
            repository,
            from,
            unit_types,
        } => {
            let n = app
                .store
                .copy_units(&from, &repository, &unit_types)
                .await?;
            Ok(serde_json::json!({"units_added": n}))
        }
        Job::Delete { repository } => {
            app.store.delete_repo(&repository).await?;
            app.publications.remove_repo(repository.as_str());
            Ok(serde_json::json!({"deleted": repository}))
        }
        Job::Orphans { protection_minutes } => {
            crate::orphans::remove_orphans(app, Duration::from_secs(60 * protection_minutes)).await
        }
    }
}

async fn repo_and_plugin(app: &App, id: &RepoId) -> Result<(Repository, Arc<Plugin>), TaskFailure> {
    let repo = app.store.get_repo(id).await?.ok_or_else(|| {
        TaskFailure::new(format!("repository {id} no longer exists"), "not-found")
    })?;
    let mut plugin = app.plugins.for_content_type(&repo.content_type);
    if plugin.is_none() {
        // Installed on another node moments ago, before this one's next
        // reconciliation round?
        if let Err(e) = crate::plugins::sync::reconcile(app).await {
            tracing::warn!("cannot reconcile plugins with the store: {e:#}");
        }
        plugin = app.plugins.for_content_type(&repo.content_type);
    }
    let plugin = plugin.ok_or_else(|| {
        TaskFailure::new(
            format!(
                "no plugin provides content type {:?}; install it first",
                repo.content_type
            ),
            "plugin-missing",
        )
    })?;
    Ok((repo, plugin))
}

async fn import(
    app: &Arc<App>,
    id: &RepoId,
    upload_id: UploadId,
    params: serde_json::Map<String, serde_json::Value>,
    delete_upload: bool,
    ctx: TaskContext,
) -> TaskResult {
    let (repo, plugin) = repo_and_plugin(app, id).await?;
    let upload = app.store.get_upload(&upload_id).await?.ok_or_else(|| {
        TaskFailure::new(format!("upload {upload_id} no longer exists"), "not-found")
    })?;
    let file = app.uploads.open_read(&upload_id)?;
    // The source is exactly the bytes whose receipt was recorded.
    let source = SourceHandle::File {
        file: Arc::new(file),
        offset: 0,
        len: upload.offset,
        whole: Some(Arc::new(app.uploads.whole(&upload_id, upload.offset)?)),
    };
    let params = serde_json::Value::Object(params).to_string();
    let version = plugin_version(&plugin);
    let (summary, bytes, _, _) = run_plugin_task(app, plugin, repo, ctx, move |p, call, cancel| {
        p.upload(call, cancel, source, &params)
    })
    .await?;
    if delete_upload {
        app.store.delete_upload(&upload_id).await?;
        app.uploads.remove(&upload_id);
    }
    Ok(summary_json(&summary, bytes, version))
}

/// Run a streaming import: `source` is fed by the request body as the
/// plugin reads it.
pub async fn import_stream(
    app: Arc<App>,
    id: RepoId,
    params: serde_json::Map<String, serde_json::Value>,
    source: StreamSource,
    ctx: TaskContext,
) -> TaskResult {
    let (repo, plugin) = repo_and_plugin(&app, &id).await?;
    let params = serde_json::Value::Object(params).to_string();
    let version = plugin_version(&plugin);
    let (summary, bytes, _, _) =
        run_plugin_task(&app, plugin, repo, ctx, move |p, call, cancel| {
            p.upload(
                call,
                cancel,
                SourceHandle::Stream(Box::new(source)),
                &params,
            )
        })
        .await?;
    Ok(summary_json(&summary, bytes, version))
}

async fn publish(app: &Arc<App>, id: &RepoId, ctx: TaskContext) -> TaskResult {
    let (repo, plugin) = repo_and_plugin(app, id).await?;
    let plugin_name = plugin.info.name.clone();
    let version = plugin_version(&plugin);
    // What the publication serves: every blob of the repository's units
    // (read before and after the plugin's call, so a unit changed meanwhile
    // is covered either way) and what the publish itself stored or read.
    let before = app.store.repo_blobs(&repo.id).await?;
    let (published, _, seen, _leases) =
        run_plugin_task(app, plugin, repo.clone(), ctx, |p, call, cancel| {
            p.publish(call, cancel)
        })
        .await?;
    let after = app.store.repo_blobs(&repo.id).await?;
    let index = published
        .index
        .parse()
        .map_err(|e| TaskFailure::new(format!("plugin returned {e}"), "plugin-invalid"))?;
    if !app.blobs.contains(&index) {
        return Err(TaskFailure::new(
            format!("plugin published index {index}, which it never stored"),
            "plugin-invalid",
        ));
    }
    if let Some(other) = app.publications.get(&plugin_name, &published.name)
        && other.repo_id != repo.id
    {
        return Err(TaskFailure::new(
            format!(
                "name {:?} is already published by repository {}; choose another registry name",
                published.name, other.repo_id
            ),
            "conflict",
        ));
    }
    let published_index = index.clone();
    let publication = Publication {
        plugin: plugin_name,
        name: published.name.clone(),
        repo_id: repo.id.clone(),
        index,
        config: repo.distributor_config.clone(),
        published_at: now(),
        blobs: before
            .into_iter()
            .chain(after)
            .chain(seen)
            .filter(|d| *d != published_index)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    app.store.put_publication(&publication).await?;
    app.publications.put(publication);
    let mut result = summary_json(&published.summary, 0, version);
    result["name"] = published.name.into();
    result["index"] = published.index.into();
    Ok(result)
}

/// Per-repository locks of publishes on push ([`publish_on_push`]).
#[derive(Default)]
pub struct PublishLocks(
    std::sync::Mutex<std::collections::HashMap<RepoId, Arc<tokio::sync::Mutex<()>>>>,
);

impl PublishLocks {
    fn of(&self, repo: &RepoId) -> Arc<tokio::sync::Mutex<()>> {
        self.0
            .lock()
            .unwrap()
            .entry(repo.clone())
            .or_default()
            .clone()
    }
}

/// Publish a repository that publishes on push, right after a push changed
/// it and before the push is answered: the same work as a publish task,
/// without the task (no record, no queue). Publishes of one repository on
/// this node run one at a time, each reading the repository's state when
/// it starts, so the last to finish shows every push answered before it.
pub async fn publish_on_push(app: &Arc<App>, repo: &RepoId) -> Result<(), TaskFailure> {
    let lock = app.push_publishes.of(repo);
    let _held = lock.lock().await;
    let ctx = TaskContext {
        id: wharf_core::ids::TaskId::new(),
        cancel: Arc::new(AtomicBool::new(false)),
        progress: Arc::new(|_| {}),
    };
    publish(app, repo, ctx).await.map(|_| ())
}

/// Run one plugin task call off the async threads, and commit its staged
/// unit changes in one transaction if, and only if, it succeeded. Returns
/// what it answered, the bytes it stored, the blobs it may name and their
/// leases (`blobs::leases`): keep those until whatever names the blobs
/// beyond the units (a publication) is recorded.
async fn run_plugin_task<R: Send + 'static>(
    app: &Arc<App>,
    plugin: Arc<Plugin>,
    repo: Repository,
    ctx: TaskContext,
    f: impl FnOnce(&Plugin, TaskCall, Arc<AtomicBool>) -> Result<Staged<TaskAnswer<R>>, PluginError>
    + Send
    + 'static,
) -> Result<
    (
        R,
        u64,
        std::collections::HashSet<wharf_core::digest::Digest>,
        Arc<Holder>,
    ),
    TaskFailure,
> {
    let feed = repo
        .importer_config
        .get("feed")
        .and_then(|f| f.as_str())
        .and_then(|f| f.parse::<reqwest::Url>().ok());
    let call = TaskCall::new(
        repo.clone(),
        ctx.progress.clone(),
        feed.iter().map(origin).collect(),
        None,
    );
    let cancel = ctx.cancel.clone();
    let outcome = tokio::task::spawn_blocking(move || f(&plugin, call, cancel))
        .await
        .map_err(|e| TaskFailure::new("the plugin call panicked in the host", e.to_string()))?;
    // A failure is recorded in the task, which whoever may read the
    // repository reads: never with the repository's secrets in it.
    let secrets = crate::secrets::secret_values(&repo);
    let failure = |message: String, cause: String| {
        TaskFailure::new(
            crate::secrets::scrub(&message, &secrets),
            crate::secrets::scrub(&cause, &secrets),
        )
    };
    let Staged {
        answer,
        call,
        bytes_stored: bytes,
    } = outcome.map_err(|e| failure(e.to_string(), e.code().into()))?;
    let value = answer.map_err(|e| failure(e.message, e.code))?;
    if ctx.cancel.load(Ordering::Relaxed) {
        return Err(TaskFailure::new(
            "canceled; nothing was committed",
            "canceled",
        ));
    }
    if !call.changes.is_empty() {
        app.store.apply_changes(&repo.id, &call.changes).await?;
    }
    Ok((value, bytes, call.visible, call.leases))
}

/// `name@version`: which plugin version ran a task (upgrades happen live).
fn plugin_version(p: &Plugin) -> String {
    format!("{}@{}", p.info.name, p.info.version)
}

fn summary_json(s: &Summary, bytes_stored: u64, plugin: String) -> serde_json::Value {
    serde_json::json!({
        "plugin": plugin,
        "units_added": s.units_added,
        "units_removed": s.units_removed,
        "bytes_stored": s.bytes_stored.max(bytes_stored),
        "message": s.message,
    })
}
