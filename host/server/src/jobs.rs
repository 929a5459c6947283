//! What each kind of task does: the work behind each [`Job`] (the plain
//! data a task is asked to do, defined with the tasks), run by whichever
//! worker takes the task.

use crate::app::App;
use crate::retention;
use crate::tasks::{Job, TaskContext, TaskFailure, TaskResult};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wharf_core::digest::Digest;
use wharf_core::ids::{RepoId, UploadId};
use wharf_runtime::calls::{BlobDownload, Edit, Staged, Summary, TaskAnswer};
use wharf_runtime::engine::{Plugin, PluginError};
use wharf_runtime::host::{Previous, SourceHandle, TaskCall, origin};
use wharf_runtime::stream_source::StreamSource;
use wharf_store::blobs::leases::Holder;
use wharf_store::db::{
    Publication, RepoVersion, Repository, UnitChange, VersionCause, VersionOrigin, now,
};

/// Run a job to its end.
pub async fn run(app: Arc<App>, job: Job, ctx: TaskContext) -> TaskResult {
    let app = &app;
    // A task's plugin calls read the publication map (`publications.lookup`
    // and `names` of its own repository): it waits until the map holds
    // every publication, as it does only for a moment after start.
    app.publications.whole().await;
    match job {
        Job::Import {
            repository,
            upload_id,
            params,
            delete_upload,
            sealed,
        } => {
            let upload = Imported {
                id: upload_id,
                sealed,
                delete: delete_upload,
            };
            import(app, &repository, upload, params, ctx).await
        }
        // Started by `Tasks::run_here` with its body; a record alone (say,
        // redelivered after a crash) has no body to read.
        Job::ImportStream { .. } => Err(TaskFailure::new(
            "a streaming import reads the body of the request that started it, so only the \
             process that received that request can run it; send the content again",
            "not-rerunnable",
        )),
        Job::Sync { repository } => {
            let (repo, plugin) = repo_and_plugin(app, &repository).await?;
            crate::remotes::require(app, &repo).await?;
            let version = plugin_version(&plugin);
            let auto_publish = publishes_after_changes(&repo);
            // Retention applies to what the sync brings, in the same
            // version: a tag the sync brings back and retention removes
            // again changes nothing.
            let retained = match retention::of(&repo)? {
                Some(r) => Some((r, retention::tags(app.store.as_ref(), &repository).await?)),
                None => None,
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            let run = run_plugin_task(
                app,
                plugin,
                repo,
                ctx.clone(),
                Some(VersionCause::Sync),
                move |p, call, cancel| {
                    let synced = p.sync(call, cancel.clone())?;
                    let Some((retention, tags)) = retained else {
                        return Ok(synced);
                    };
                    let (plan, staged) =
                        retention::after_sync(p, synced, &retention, tags, cancel)?;
                    let _ = tx.send(plan);
                    Ok(staged)
                },
            )
            .await?;
            let mut result = run.summary_json(version);
            if let Ok(plan) = rx.await {
                result["retention"] = plan.json(false);
            }
            if auto_publish {
                // pulp-admin's `--auto-publish`: the synced content is
                // served at once, in the same task.
                let published = publish(app, &repository, None, ctx).await.map_err(|f| {
                    TaskFailure::new(
                        format!(
                            "the sync succeeded ({}), but the publish after it (auto_publish) failed: {}; \
                             publish again with `wharf repo publish --repo-id {repository}`",
                            result["message"].as_str().unwrap_or_default(),
                            f.message
                        ),
                        f.cause,
                    )
                })?;
                result["published"] = published;
            }
            Ok(result)
        }
        Job::Publish {
            repository,
            version,
        } => publish(app, &repository, version, ctx).await,
        Job::Copy {
            repository,
            from,
            unit_types,
            references,
        } => copy(app, &repository, &from, unit_types, references, ctx).await,
        Job::Remove {
            repository,
            references,
        } => {
            edit(
                app,
                &repository,
                Edit::Remove(references),
                VersionCause::Remove,
                ctx,
            )
            .await
        }
        Job::Tag {
            repository,
            tag,
            target,
        } => {
            let edit_tag = Edit::Tag { name: tag, target };
            edit(app, &repository, edit_tag, VersionCause::Tag, ctx).await
        }
        Job::Restore {
            repository,
            version,
        } => restore(app, &repository, version, ctx).await,
        Job::Delete { repository } => {
            // What it received lately is forgotten first: a repository
            // made again under its id must not read it. Again after the
            // delete, for a push that landed in between.
            forget_received(app, &repository).await?;
            app.store.delete_repo(&repository).await?;
            app.auth
                .protection
                .refresh(app.store.as_ref(), &repository)
                .await?;
            app.publications.remove_repo(repository.as_str());
            app.served.forget(&repository);
            if let Err(e) = forget_received(app, &repository).await {
                tracing::warn!(repo = %repository, "{}", e.message);
            }
            Ok(serde_json::json!({"deleted": repository}))
        }
        Job::Orphans { protection_minutes } => {
            let protection = Duration::from_secs(60 * protection_minutes);
            crate::orphans::remove_orphans(app, protection, &ctx).await
        }
        Job::Fsck { remove_corrupt } => crate::fsck::task(app, remove_corrupt, &ctx).await,
        Job::Retain {
            repository,
            dry_run,
        } => retain(app, &repository, dry_run, ctx).await,
    }
}

/// Remove the tags `id`'s retention settings no longer keep (with
/// `dry_run`, only name them), through its plugin, as a version made for
/// retention; what only they held goes to orphan cleanup.
async fn retain(app: &Arc<App>, id: &RepoId, dry_run: bool, ctx: TaskContext) -> TaskResult {
    let (repo, _) = repo_and_plugin(app, id).await?;
    let retention = retention::of(&repo)?.ok_or_else(|| {
        TaskFailure::new(
            format!(
                "repository {id} keeps every tag: give it retention settings first \
                 (`wharf docker repo update --repo-id {id} --retain-newest N`)"
            ),
            "invalid-input",
        )
    })?;
    let tags = retention::tags(app.store.as_ref(), id).await?;
    let plan = retention::Plan::new(&retention, &tags);
    let mut result = plan.json(dry_run);
    if !dry_run && !plan.is_empty() {
        let run = edit(app, id, plan.edit(), VersionCause::Retention, ctx).await?;
        result["version"] = run["version"].clone();
    }
    Ok(result)
}

async fn repo_and_plugin(app: &App, id: &RepoId) -> Result<(Repository, Arc<Plugin>), TaskFailure> {
    let repo = app.store.get_repo(id).await?.ok_or_else(|| {
        TaskFailure::new(format!("repository {id} no longer exists"), "not-found")
    })?;
    // The plugin sees its remote's settings under its own.
    let repo = crate::remotes::resolve(app, repo).await?;
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

/// The upload an import reads.
struct Imported {
    id: UploadId,
    /// Its bytes as a blob, for a node without its file.
    sealed: Option<Digest>,
    /// Removed once imported.
    delete: bool,
}

impl Imported {
    /// The bytes whose receipt was recorded: the upload's file on the node
    /// that received it, else its sealed blob.
    async fn source(&self, app: &Arc<App>, len: u64) -> Result<SourceHandle, TaskFailure> {
        match (app.uploads.open_read(&self.id), &self.sealed) {
            (Ok(file), _) => Ok(SourceHandle::File {
                file: Arc::new(file),
                offset: 0,
                len,
                whole: Some(Arc::new(app.uploads.whole(&self.id, len)?)),
            }),
            (Err(e), Some(d)) if e.kind() == std::io::ErrorKind::NotFound => {
                let (blobs, d) = (app.blobs.clone(), d.clone());
                let file = tokio::task::spawn_blocking(move || blobs.open_blob(&d))
                    .await
                    .map_err(|e| TaskFailure::new(e.to_string(), "internal"))?
                    .map_err(|e| {
                        TaskFailure::new(format!("reading the sealed upload: {e}"), "internal")
                    })?;
                Ok(SourceHandle::File {
                    file: Arc::new(file),
                    offset: 0,
                    len,
                    whole: None,
                })
            }
            (Err(e), _) => Err(e.into()),
        }
    }
}

async fn import(
    app: &Arc<App>,
    id: &RepoId,
    imported: Imported,
    params: serde_json::Map<String, serde_json::Value>,
    ctx: TaskContext,
) -> TaskResult {
    let (repo, plugin) = repo_and_plugin(app, id).await?;
    let upload_id = imported.id;
    let upload = app.store.get_upload(&upload_id).await?.ok_or_else(|| {
        TaskFailure::new(format!("upload {upload_id} no longer exists"), "not-found")
    })?;
    let source = imported.source(app, upload.offset).await?;
    let params = serde_json::Value::Object(params).to_string();
    let version = plugin_version(&plugin);
    let run = run_plugin_task(
        app,
        plugin,
        repo,
        ctx,
        Some(VersionCause::Import),
        move |p, call, cancel| p.upload(call, cancel, source, &params),
    )
    .await?;
    if imported.delete {
        app.store.delete_upload(&upload_id).await?;
        app.uploads.remove(&upload_id);
    }
    Ok(run.summary_json(version))
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
    let run = run_plugin_task(
        &app,
        plugin,
        repo,
        ctx,
        Some(VersionCause::Import),
        move |p, call, cancel| {
            p.upload(
                call,
                cancel,
                SourceHandle::Stream(Box::new(source)),
                &params,
            )
        },
    )
    .await?;
    Ok(run.summary_json(version))
}

async fn publish(
    app: &Arc<App>,
    id: &RepoId,
    version: Option<u64>,
    ctx: TaskContext,
) -> TaskResult {
    // The publication it replaces and the name's other holder are read
    // from the map: inline after a push too, not only as a task.
    let publications = app.publications.whole().await;
    let (repo, plugin) = repo_and_plugin(app, id).await?;
    let plugin_name = plugin.info.name.clone();
    let plugin_ver = plugin_version(&plugin);
    // One exact version: the plugin reads that version's units, and the
    // publication serves that version's blobs and what the publish itself
    // stored or read (`visibility::ServedSets`, which moves the served set
    // of the publication it replaces by the units changed since).
    let version = match version {
        Some(n) => app.store.get_version(&repo.id, n).await?.ok_or_else(|| {
            TaskFailure::new(
                format!(
                    "repository {} has no version {n} (deleted by its version limit, or not made yet); \
                     list them with `wharf repo versions list --repo-id {}`",
                    repo.id, repo.id
                ),
                "not-found",
            )
        })?,
        None => latest_version(app, &repo.id).await?,
    };
    let previous = previous_publication(app, &plugin_name, &repo).await?;
    let run = run_plugin_task(app, plugin, repo.clone(), ctx, None, {
        let n = version.number;
        move |p, call, cancel| p.publish(call.at_version(n).replacing(previous), cancel)
    })
    .await?;
    let (published, seen) = (run.answer, run.visible);
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
    if let Some(other) = publications.get(&plugin_name, &published.name)
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
        version: Some(version.number),
        config: repo.distributor_config.clone(),
        published_at: now(),
        blobs: seen
            .into_iter()
            .filter(|d| *d != published_index)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    app.store.put_publication(&publication).await?;
    app.publications.put(publication.clone());
    drop(run.leases);
    advance_served(app, &publication).await;
    let mut result = summary_json(&published.summary, 0, plugin_ver, &run.secrets);
    result["name"] = published.name.into();
    result["index"] = published.index.into();
    result["version"] = version.number.into();
    Ok(result)
}

/// Move what this node serves of `p`'s repository to `p` now rather than
/// on the next request (which reads it again if this fails).
pub(crate) async fn advance_served(app: &App, p: &Publication) {
    if let Err(e) = app.served.advance(app.store.as_ref(), p).await {
        tracing::debug!(repo = %p.repo_id, "what the new publication serves is read on its first request: {e}");
    }
}

/// Drop the notes of the blobs `repo` received lately (it is being
/// deleted).
async fn forget_received(app: &App, repo: &RepoId) -> Result<(), TaskFailure> {
    let (sessions, id) = (app.plugins.runtime.env.sessions.clone(), repo.clone());
    tokio::task::spawn_blocking(move || sessions.forget_received(&id))
        .await
        .map_err(std::io::Error::other)
        .and_then(|done| done)
        .map_err(|e| {
            TaskFailure::new(
                format!(
                    "cannot forget the blobs repository {repo} received lately ({e}); \
                     try again once the blob store answers"
                ),
                "io",
            )
        })
}

/// The publication of `repo` by `plugin` that a publish replaces, when it
/// serves a version of this repository: the publish may start from it.
/// Without one (none, one of a deleted repository of the same id, or one
/// whose version is gone), the publish reads every unit.
async fn previous_publication(
    app: &App,
    plugin: &str,
    repo: &Repository,
) -> Result<Option<Previous>, TaskFailure> {
    let Some(publication) = app
        .publications
        .of(plugin, repo.id.as_str())
        .filter(|p| p.is_of(repo))
    else {
        return Ok(None);
    };
    let Some(version) = publication.version else {
        return Ok(None);
    };
    let served = match app.served.get(app.store.as_ref(), &publication).await {
        Ok(served) => served,
        Err(wharf_store::db::StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(Some(Previous {
        publication,
        version,
        served,
    }))
}

/// A repository's newest version.
async fn latest_version(app: &App, id: &RepoId) -> Result<RepoVersion, TaskFailure> {
    app.store.latest_version(id).await?.ok_or_else(|| {
        TaskFailure::new(
            format!("repository {id} has no versions; run `wharf fsck`"),
            "corrupt",
        )
    })
}

/// Copy units from `from` into `to` as one new version of `to`: every unit
/// of `unit_types`, or the units making up `references`, which the plugin
/// of `from` names (`select`) and the plugin of `to` adopts (a copied tag
/// replacing the tag of that name there).
async fn copy(
    app: &Arc<App>,
    to: &RepoId,
    from: &RepoId,
    unit_types: Vec<wharf_core::ids::UnitType>,
    references: Vec<String>,
    ctx: TaskContext,
) -> TaskResult {
    if references.is_empty() {
        let origin = VersionOrigin::new(VersionCause::Copy, Some(ctx.id));
        let made = app.store.copy_units(from, to, &unit_types, &origin).await?;
        return Ok(version_json(made.as_ref()));
    }
    let (source, plugin) = repo_and_plugin(app, from).await?;
    let selected = run_plugin_task(
        app,
        plugin,
        source,
        ctx.clone(),
        None,
        move |p, call, cancel| p.select(call, cancel, &references),
    )
    .await?
    .answer;
    let mut units = Vec::with_capacity(selected.len());
    for r in &selected {
        let unit = app
            .store
            .get_unit(from, &r.unit_type, &r.key)
            .await?
            .ok_or_else(|| {
                TaskFailure::new(
                    format!(
                        "{} {} left repository {from} during the copy; copy again",
                        r.unit_type, r.key
                    ),
                    "conflict",
                )
            })?;
        units.push(unit);
    }
    let (target, plugin) = repo_and_plugin(app, to).await?;
    let version = plugin_version(&plugin);
    let run = run_plugin_task(
        app,
        plugin,
        target,
        ctx,
        Some(VersionCause::Copy),
        move |p, mut call, cancel| {
            for u in units {
                call.stage(u);
            }
            p.edit(call, cancel, &Edit::Adopt(selected))
        },
    )
    .await?;
    let mut result = version_json(run.version.as_ref());
    result["plugin"] = version.into();
    result["message"] = run.answer.message.into();
    Ok(result)
}

/// Change a repository's content through its plugin (remove, tag).
async fn edit(
    app: &Arc<App>,
    id: &RepoId,
    change: Edit,
    cause: VersionCause,
    ctx: TaskContext,
) -> TaskResult {
    let (repo, plugin) = repo_and_plugin(app, id).await?;
    let version = plugin_version(&plugin);
    let run = run_plugin_task(
        app,
        plugin,
        repo,
        ctx,
        Some(cause),
        move |p, call, cancel| p.edit(call, cancel, &change),
    )
    .await?;
    Ok(run.summary_json(version))
}

/// Make version `n`'s content the latest again, as a new version: what it
/// costs is what changed since, not the repository's size.
async fn restore(app: &Arc<App>, id: &RepoId, n: u64, ctx: TaskContext) -> TaskResult {
    let latest = latest_version(app, id).await?;
    let diff = app
        .store
        .diff_versions(id, latest.number, n)
        .await
        .map_err(|e| match e {
            wharf_store::db::StoreError::NotFound(what) => TaskFailure::new(
                format!("{what}: it was deleted by the version limit, or never made"),
                "not-found",
            ),
            e => e.into(),
        })?;
    let mut changes: Vec<UnitChange> = diff
        .removed
        .into_iter()
        .map(|r| UnitChange::Remove {
            unit_type: r.unit_type,
            key: r.key,
        })
        .collect();
    for r in diff.added {
        let unit = app
            .store
            .get_version_unit(id, n, &r.unit_type, &r.key)
            .await?
            .ok_or_else(|| {
                TaskFailure::new(
                    format!("{} {} of version {n} is gone", r.unit_type, r.key),
                    "conflict",
                )
            })?;
        changes.push(UnitChange::Add(unit));
    }
    let origin = VersionOrigin::new(VersionCause::Restore, Some(ctx.id));
    let made = app.store.apply_changes(id, &changes, &origin).await?;
    let mut result = version_json(made.as_ref());
    result["restored"] = n.into();
    Ok(result)
}

/// What a task that made (or did not need to make) a version answers.
fn version_json(made: Option<&RepoVersion>) -> serde_json::Value {
    serde_json::json!({
        "version": made.map(|v| v.number),
        "units_added": made.map_or(0, |v| v.added.values().sum::<u64>()),
        "units_removed": made.map_or(0, |v| v.removed.values().sum::<u64>()),
    })
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
/// without the task (no record, no queue); also after a pull-through
/// repository's pull ([`pull`]). Publishes of one repository on
/// this node run one at a time, each reading the repository's state when
/// it starts, so the last to finish shows every push answered before it.
pub async fn publish_on_push(app: &Arc<App>, repo: &RepoId) -> Result<(), TaskFailure> {
    let lock = app.push_publishes.of(repo);
    let _held = lock.lock().await;
    publish(app, repo, None, inline_context()).await.map(|_| ())
}

/// A context for work done inline, for a request, with no task record.
fn inline_context() -> TaskContext {
    TaskContext {
        id: wharf_core::ids::TaskId::new(),
        cancel: Arc::new(AtomicBool::new(false)),
        progress: Arc::new(|_| {}),
        log: Arc::new(|_, _| {}),
    }
}

/// Pull `reference` (the plugin's words, from its `pull` plan) of a
/// pull-through repository's feed into it, for the request that asked,
/// and publish it when that changed it: the same work as a sync of one
/// reference, without a task. The version it makes says `pull`.
pub async fn pull(app: &Arc<App>, repository: &RepoId, reference: &str) -> Result<(), TaskFailure> {
    let (repo, plugin) = repo_and_plugin(app, repository).await?;
    crate::remotes::require(app, &repo).await?;
    let wanted = reference.to_string();
    let run = run_plugin_task(
        app,
        plugin,
        repo,
        inline_context(),
        Some(VersionCause::Pull),
        move |p, call, cancel| p.pull(call, cancel, &wanted),
    )
    .await?;
    tracing::info!(repo = %repository, reference, "{}", run.answer.message);
    if run.version.is_some() {
        publish_on_push(app, repository).await?;
    }
    Ok(())
}

/// Where to download `digest`, a blob `repository` names but left on its
/// feed (`download_policy`), as its plugin says now; with the repository,
/// whose settings say whether to keep it.
pub async fn locate(
    app: &Arc<App>,
    repository: &RepoId,
    digest: &wharf_core::digest::Digest,
) -> Result<(BlobDownload, Repository), TaskFailure> {
    let (repo, plugin) = repo_and_plugin(app, repository).await?;
    let wanted = digest.to_string();
    let run = run_plugin_task(
        app,
        plugin,
        repo.clone(),
        inline_context(),
        None,
        move |p, call, cancel| p.locate(call, cancel, &wanted),
    )
    .await?;
    Ok((run.answer, repo))
}

/// Whether the repository is published after each push and each successful
/// sync: its distributor's `auto_publish` (pulp-admin's `--auto-publish`).
fn publishes_after_changes(repo: &Repository) -> bool {
    repo.setting_is_true("auto_publish")
}

/// What a plugin task call did, once its staged changes are committed.
struct PluginRun<R> {
    answer: R,
    /// Bytes it stored.
    bytes: u64,
    /// The blobs it may name.
    visible: std::collections::HashSet<wharf_core::digest::Digest>,
    /// The leases of those blobs (`blobs::leases`): keep them until
    /// whatever names the blobs beyond the units (a publication) is
    /// recorded.
    leases: Arc<Holder>,
    /// The version its changes made; `None` when it changed nothing.
    version: Option<RepoVersion>,
    /// The repository's secrets, which no text of the plugin's that the
    /// task records (error, log line, summary) may carry.
    secrets: Vec<String>,
}

impl PluginRun<Summary> {
    fn summary_json(&self, plugin: String) -> serde_json::Value {
        let mut v = summary_json(&self.answer, self.bytes, plugin, &self.secrets);
        v["version"] = self.version.as_ref().map(|v| v.number).into();
        v
    }
}

/// Run one plugin task call off the async threads, and commit its staged
/// unit changes in one transaction, as a new version made for `cause`,
/// if, and only if, it succeeded. A call made with no cause (publish,
/// select) may not change content.
async fn run_plugin_task<R: Send + 'static>(
    app: &Arc<App>,
    plugin: Arc<Plugin>,
    repo: Repository,
    ctx: TaskContext,
    cause: Option<VersionCause>,
    f: impl FnOnce(&Plugin, TaskCall, Arc<AtomicBool>) -> Result<Staged<TaskAnswer<R>>, PluginError>
    + Send
    + 'static,
) -> Result<PluginRun<R>, TaskFailure> {
    let feed = feed_of(&repo);
    // A failure, the progress message, the log lines and the summary are
    // recorded in the task, which whoever may read the repository reads:
    // never with the repository's secrets.
    let secrets = crate::secrets::secret_values(&repo);
    let log = {
        let (sink, secrets) = (ctx.log.clone(), secrets.clone());
        Arc::new(move |level, line: String| sink(level, crate::secrets::scrub(&line, &secrets)))
    };
    let progress = {
        let (sink, secrets) = (ctx.progress.clone(), secrets.clone());
        Arc::new(move |mut p: wharf_store::db::Progress| {
            p.message = crate::secrets::scrub(&p.message, &secrets);
            sink(p)
        })
    };
    let transport = crate::remotes::transport(app, &repo).await?;
    let call = TaskCall::new(
        repo.clone(),
        progress,
        feed.iter().map(origin).collect(),
        None,
    )
    .with_log(log)
    .with_transport(transport);
    let cancel = ctx.cancel.clone();
    let outcome = tokio::task::spawn_blocking(move || f(&plugin, call, cancel))
        .await
        .map_err(|e| TaskFailure::new("the plugin call panicked in the host", e.to_string()))?;
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
    let answer = answer.map_err(|e| failure(e.message, e.code))?;
    if ctx.cancel.load(Ordering::Relaxed) {
        return Err(TaskFailure::new(
            "canceled; nothing was committed",
            "canceled",
        ));
    }
    let version = match cause {
        _ if call.changes.is_empty() => None,
        Some(cause) => {
            let origin = VersionOrigin::new(cause, Some(ctx.id));
            app.store
                .apply_changes(&repo.id, &call.changes, &origin)
                .await?
        }
        None => {
            return Err(TaskFailure::new(
                "the plugin changed content in a call that may only read it; nothing was committed",
                "plugin-invalid",
            ));
        }
    };
    Ok(PluginRun {
        answer,
        bytes,
        visible: call.visible,
        leases: call.leases,
        version,
        secrets,
    })
}

/// The repository's feed (importer setting `feed`), if it has a valid one:
/// the origin its plugin's calls may fetch from.
pub fn feed_of(repo: &Repository) -> Option<reqwest::Url> {
    repo.importer_config
        .get("feed")
        .and_then(|f| f.as_str())
        .and_then(|f| f.parse().ok())
}

/// `name@version`: which plugin version ran a task (upgrades happen live).
fn plugin_version(p: &Plugin) -> String {
    format!("{}@{}", p.info.name, p.info.version)
}

/// A plugin's summary as a task result, its message scrubbed of `secrets`.
fn summary_json(
    s: &Summary,
    bytes_stored: u64,
    plugin: String,
    secrets: &[String],
) -> serde_json::Value {
    serde_json::json!({
        "plugin": plugin,
        "units_added": s.units_added,
        "units_removed": s.units_removed,
        "bytes_stored": s.bytes_stored.max(bytes_stored),
        "message": crate::secrets::scrub(&s.message, secrets),
    })
}
