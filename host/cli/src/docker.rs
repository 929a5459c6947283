//! `wharf docker repo ...`: the generic repository commands for content type
//! `docker`, with Docker's settings as flags, as `pulp-admin docker repo`
//! has them. The mapping to settings keys is the docker plugin's:
//! importer `feed`, `upstream_name`, `include_tags`, `exclude_tags`,
//! `mirror`, `download_policy`, `include_names`, `exclude_names`;
//! distributor `repo_registry_id`, `redirect_url`, `auto_publish`,
//! `pull_through`, `tag_freshness`; and the host's importer `retention`.

use crate::Session;
use crate::output::{self, OutputFormat};
use crate::repo::{
    self, DescribeArgs, Intent, Note, RepoChanges, RepoColumns, RepoIdArg, RepoTaskArgs,
};
use crate::task::WaitArgs;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use wharf_core::ids::RepoId;
use wharf_store::db::{Task, Unit};

/// The content type these commands manage.
pub const CONTENT_TYPE: &str = "docker";

#[derive(Subcommand)]
pub enum DockerCommand {
    /// Docker repositories.
    #[command(subcommand)]
    Repo(Box<DockerRepoCommand>),
    /// Remotes: upstream settings (feed, account, CA, proxy, rate limit)
    /// Docker repositories share with `--remote`.
    #[command(subcommand)]
    Remote(crate::remote::RemoteCommand),
}

#[derive(Subcommand)]
pub enum DockerRepoCommand {
    /// Create a Docker repository.
    Create(DockerCreateArgs),
    /// Change a Docker repository's description, notes or settings.
    Update(DockerUpdateArgs),
    /// List Docker repositories.
    List {
        /// Only repositories with this note (repeatable: all must match).
        #[arg(long = "note", value_name = "KEY=VALUE")]
        notes: Vec<Note>,
    },
    /// A Docker repository's settings, content counts and publications.
    Show(RepoIdArg),
    /// Delete a Docker repository.
    Delete(RepoTaskArgs),
    /// Mirror images from the feed; creates the repository first if it does
    /// not exist and --feed is given. `sync schedules create|list|delete`
    /// schedules it (pulp-admin's `sync schedules create -s INTERVAL`).
    #[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
    Sync(DockerSyncArgs),
    /// Make a version of the repository pullable (`docker pull`): the
    /// latest by default; an older one rolls back.
    Publish(repo::PublishArgs),
    /// The repository's tags and manifests.
    Images(RepoIdArg),
    /// Copy images from one repository into another, as a new version of
    /// the target (no bytes are duplicated): the tags and manifests given
    /// with what they need, or every image.
    Copy {
        #[arg(long)]
        from_repo_id: RepoId,
        #[arg(long)]
        to_repo_id: RepoId,
        #[command(flatten)]
        images: ImageArgs,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Take tags or images out of a repository, as a new version: a tag
    /// alone, or a manifest with its tags and the layers no other image
    /// needs.
    Remove {
        #[command(flatten)]
        repo: RepoIdArg,
        #[command(flatten)]
        images: ImageArgs,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Point a tag at a manifest of the repository (adding or moving it),
    /// as a new version.
    Tag {
        #[command(flatten)]
        repo: RepoIdArg,
        /// The tag to add or move.
        #[arg(long, value_name = "TAG")]
        tag: String,
        /// The manifest it points at (sha256:...).
        #[arg(long, value_name = "DIGEST", required_unless_present = "from_tag")]
        manifest: Option<String>,
        /// Or: the manifest another tag points at.
        #[arg(long, value_name = "TAG", conflicts_with = "manifest")]
        from_tag: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Upload `docker save` archives.
    #[command(subcommand)]
    Uploads(DockerUploadsCommand),
    /// Remove the tags the repository's retention settings (--retain-newest,
    /// --retain-within, --retain-tags) no longer keep, as a new version; a
    /// sync does this too. `retain schedules create|list|delete` schedules it.
    #[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
    Retain(DockerRetainArgs),
}

/// What `docker repo retain` has besides running now.
#[derive(clap::Subcommand)]
pub enum RetainSubcommand {
    /// Scheduled retention runs of a repository.
    #[command(subcommand)]
    Schedules(crate::schedule::RepoScheduleCommand),
}

#[derive(Args)]
pub struct DockerRetainArgs {
    #[command(subcommand)]
    pub schedules: Option<RetainSubcommand>,
    /// The repository's id.
    #[arg(long, required = true)]
    pub repo_id: Option<RepoId>,
    /// Only list the tags that would be removed.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Subcommand)]
pub enum DockerUploadsCommand {
    /// Upload a `docker save` archive and import its images (while it
    /// arrives; with --resumable, once it is all there).
    Upload {
        #[command(flatten)]
        repo: RepoIdArg,
        /// The archive, as written by `docker save -o FILE`.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        sending: repo::SendingArgs,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// Images by tag or by manifest digest.
#[derive(Args)]
pub struct ImageArgs {
    /// A tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// A manifest digest, sha256:... (repeatable).
    #[arg(long = "manifest", value_name = "DIGEST")]
    pub manifests: Vec<String>,
}

impl ImageArgs {
    /// The references the plugin reads (tags and digests alike).
    fn references(self) -> Vec<String> {
        self.tags.into_iter().chain(self.manifests).collect()
    }
}

/// Docker's settings as flags.
#[derive(Args, Default)]
pub struct DockerSettingsArgs {
    /// Take the feed, account, download policy and how to reach the feed
    /// from this remote (`wharf docker remote create`); flags given here win
    /// over it. On update, '' removes it.
    #[arg(long, value_name = "REMOTE_ID")]
    pub remote: Option<String>,
    /// The registry to sync from, e.g. https://registry-1.docker.io (a bare
    /// host name means https://). On update, '' removes it.
    #[arg(long, value_name = "URL")]
    pub feed: Option<String>,
    /// The repository to sync from the feed, e.g. library/busybox.
    #[arg(long, value_name = "NAME")]
    pub upstream_name: Option<String>,
    /// The user the feed knows this server as (a parent Wharf's user, a
    /// registry account); on update, '' removes it.
    #[arg(long, value_name = "USER")]
    pub upstream_username: Option<String>,
    /// That user's password or token: write-only, shown back as ********.
    /// Prefer the environment variable to the flag (the flag shows in the
    /// process list); on update, '' removes it.
    #[arg(
        long,
        env = "WHARF_UPSTREAM_PASSWORD",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub upstream_password: Option<String>,
    /// Sync only tags matching GLOB (repeatable); on update replaces the
    /// list, and a single '' removes it.
    #[arg(long = "tag-include", value_name = "GLOB")]
    pub tag_include: Vec<String>,
    /// Skip tags matching GLOB (repeatable); as --tag-include on update.
    #[arg(long = "tag-exclude", value_name = "GLOB")]
    pub tag_exclude: Vec<String>,
    /// How a sync treats tags gone upstream: `true` mirrors the upstream's
    /// tags exactly (they are removed here too), `false` syncs additively
    /// (a sync adds and moves tags, never removes one; Pulp 3's default)
    /// [default: true].
    #[arg(long, value_name = "BOOL")]
    pub mirror: Option<bool>,
    /// The name clients pull by, e.g. my/app [default: the repository id].
    #[arg(long, value_name = "NAME")]
    pub repo_registry_id: Option<String>,
    /// Serve layers by redirecting to URL/<digest> (e.g. a CDN holding the
    /// published blobs) instead of from this server.
    #[arg(long, value_name = "URL")]
    pub redirect_url: Option<String>,
    /// Publish after every push (docker push, podman push, skopeo copy) and
    /// after every successful sync (in the sync's task), so what arrives is
    /// pullable at once [default: false].
    #[arg(long, value_name = "BOOL")]
    pub auto_publish: Option<bool>,
    /// When a sync downloads layers: `immediate` (during the sync),
    /// `on_demand` (the first time a client pulls one: streamed to it while
    /// stored, then served from here) or `streamed` (for every pull, never
    /// stored) [default: immediate].
    #[arg(long, value_name = "POLICY", value_parser = ["immediate", "on_demand", "streamed"])]
    pub download_policy: Option<String>,
    /// Make this a pull-through cache of the feed: `docker pull
    /// REGISTRY/<repo-registry-id>/<upstream name>:<tag>` pulls that name from
    /// the feed on first use and serves it from here after (also while the
    /// feed is down). Publishes the repository at once [default: false].
    #[arg(long, value_name = "BOOL")]
    pub pull_through: Option<bool>,
    /// How long a pull-through cache serves a pulled tag before asking the
    /// feed again, in seconds [default: 300].
    #[arg(long, value_name = "SECONDS")]
    pub tag_freshness: Option<u64>,
    /// Upstream names a pull-through cache may pull, e.g. 'library/*'
    /// (repeatable; none: all); on update replaces the list, and a single ''
    /// removes it.
    #[arg(long = "name-include", value_name = "GLOB")]
    pub name_include: Vec<String>,
    /// Upstream names it may not pull (repeatable); as --name-include on update.
    #[arg(long = "name-exclude", value_name = "GLOB")]
    pub name_exclude: Vec<String>,
    /// Retention: keep the N newest tags matching --retain-tags (see
    /// --retain-order), removing the others (and the images only they
    /// pointed at) after every sync, in the sync's version, and on `retain`. On update, the --retain-* flags given replace the whole
    /// retention setting.
    #[arg(long, value_name = "N")]
    pub retain_newest: Option<u64>,
    /// Retention: keep every matching tag that got its content within this
    /// time (e.g. 30d, 12h), besides the newest N.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub retain_within: Option<std::time::Duration>,
    /// Which tags retention applies to [default: '*']; others are never removed.
    #[arg(long, value_name = "GLOB")]
    pub retain_tags: Option<String>,
    /// What "newest" means to retention: `pushed` (the last to get their
    /// content) or `name` (version order, v1.10 after v1.9: the choice for a
    /// repository synced from a feed) [default: pushed].
    #[arg(long, value_name = "ORDER", value_parser = ["pushed", "name"])]
    pub retain_order: Option<String>,
    /// Remove the retention setting: keep every tag.
    #[arg(long, conflicts_with_all = ["retain_newest", "retain_within"])]
    pub keep_all_tags: bool,
}

impl DockerSettingsArgs {
    fn is_empty(&self) -> bool {
        self.remote.is_none()
            && self.feed.is_none()
            && self.upstream_name.is_none()
            && self.upstream_username.is_none()
            && self.upstream_password.is_none()
            && self.tag_include.is_empty()
            && self.tag_exclude.is_empty()
            && self.mirror.is_none()
            && self.repo_registry_id.is_none()
            && self.redirect_url.is_none()
            && self.auto_publish.is_none()
            && self.download_policy.is_none()
            && self.pull_through.is_none()
            && self.tag_freshness.is_none()
            && self.name_include.is_empty()
            && self.name_exclude.is_empty()
            && self.retain_newest.is_none()
            && self.retain_within.is_none()
            && !self.keep_all_tags
    }

    /// Refuse flags that mean nothing alone.
    fn check(&self) -> anyhow::Result<()> {
        let rules = self.retain_newest.is_some() || self.retain_within.is_some();
        if !rules && (self.retain_tags.is_some() || self.retain_order.is_some()) {
            anyhow::bail!(
                "--retain-tags and --retain-order shape a retention rule: give --retain-newest N \
                 or --retain-within DURATION too"
            );
        }
        Ok(())
    }

    pub fn apply(self, mut c: RepoChanges, intent: Intent) -> RepoChanges {
        RepoChanges::set(&mut c.importer, "remote", self.remote, intent);
        RepoChanges::set(
            &mut c.importer,
            "feed",
            self.feed.map(repo::feed_url),
            intent,
        );
        RepoChanges::set(&mut c.importer, "upstream_name", self.upstream_name, intent);
        RepoChanges::set(&mut c.importer, "username", self.upstream_username, intent);
        RepoChanges::set(&mut c.importer, "password", self.upstream_password, intent);
        set_globs(&mut c, "include_tags", self.tag_include, intent);
        set_globs(&mut c, "exclude_tags", self.tag_exclude, intent);
        if let Some(mirror) = self.mirror {
            c.importer.insert("mirror".into(), Value::Bool(mirror));
        }
        RepoChanges::set(
            &mut c.distributor,
            "repo_registry_id",
            self.repo_registry_id,
            intent,
        );
        RepoChanges::set(
            &mut c.distributor,
            "redirect_url",
            self.redirect_url,
            intent,
        );
        if let Some(on) = self.auto_publish {
            c.distributor.insert("auto_publish".into(), Value::Bool(on));
        }
        if let Some(policy) = self.download_policy {
            c.importer
                .insert("download_policy".into(), Value::String(policy));
        }
        set_globs(&mut c, "include_names", self.name_include, intent);
        set_globs(&mut c, "exclude_names", self.name_exclude, intent);
        if let Some(on) = self.pull_through {
            c.distributor.insert("pull_through".into(), Value::Bool(on));
        }
        if let Some(secs) = self.tag_freshness {
            c.distributor.insert("tag_freshness".into(), secs.into());
        }
        if self.retain_newest.is_some() || self.retain_within.is_some() {
            let mut rules = serde_json::Map::new();
            if let Some(n) = self.retain_newest {
                rules.insert("keep_newest".into(), n.into());
            }
            if let Some(t) = self.retain_within {
                rules.insert("keep_within".into(), t.as_secs().into());
            }
            if let Some(glob) = self.retain_tags {
                rules.insert("tags".into(), glob.into());
            }
            if let Some(order) = self.retain_order {
                rules.insert("order".into(), order.into());
            }
            c.importer.insert("retention".into(), Value::Object(rules));
        } else if self.keep_all_tags {
            c.importer.insert("retention".into(), Value::Null);
        }
        c
    }
}

fn set_globs(c: &mut RepoChanges, key: &str, globs: Vec<String>, intent: Intent) {
    if globs.is_empty() {
        return;
    }
    let value = if intent == Intent::Update && globs.iter().all(String::is_empty) {
        Value::Null
    } else {
        globs.into_iter().filter(|g| !g.is_empty()).collect()
    };
    c.importer.insert(key.to_string(), value);
}

#[derive(Args)]
pub struct DockerCreateArgs {
    #[command(flatten)]
    pub repo: RepoIdArg,
    #[command(flatten)]
    pub describe: DescribeArgs,
    #[command(flatten)]
    pub settings: DockerSettingsArgs,
}

#[derive(Args)]
pub struct DockerUpdateArgs {
    #[command(flatten)]
    pub repo: RepoIdArg,
    #[command(flatten)]
    pub describe: DescribeArgs,
    #[command(flatten)]
    pub settings: DockerSettingsArgs,
}

/// What `docker repo sync` has besides syncing now.
#[derive(clap::Subcommand)]
pub enum SyncSubcommand {
    /// Scheduled syncs of a repository.
    #[command(subcommand)]
    Schedules(crate::schedule::RepoScheduleCommand),
}

#[derive(Args)]
pub struct DockerSyncArgs {
    #[command(subcommand)]
    pub schedules: Option<SyncSubcommand>,
    /// The repository's id (letters, digits, '.', '-', '_').
    #[arg(long, required = true)]
    pub repo_id: Option<RepoId>,
    /// Settings to store before syncing (the repository is created with
    /// them if it does not exist).
    #[command(flatten)]
    pub settings: DockerSettingsArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
}

pub fn run(s: &Session, cmd: DockerCommand) -> anyhow::Result<()> {
    let cmd = match cmd {
        DockerCommand::Repo(cmd) => *cmd,
        DockerCommand::Remote(cmd) => return crate::remote::run(s, CONTENT_TYPE, cmd),
    };
    match cmd {
        DockerRepoCommand::Create(a) => {
            a.settings.check()?;
            let changes = a
                .settings
                .apply(RepoChanges::new(a.describe), Intent::Create);
            repo::create(s, a.repo.repo_id, CONTENT_TYPE, changes)?;
        }
        DockerRepoCommand::Update(a) => {
            a.settings.check()?;
            ensure_docker(s, &a.repo.repo_id)?;
            let changes = a
                .settings
                .apply(RepoChanges::new(a.describe), Intent::Update);
            repo::update(s, &a.repo.repo_id, changes)?;
        }
        DockerRepoCommand::List { notes } => {
            let repos = repo::list(s, Some(CONTENT_TYPE.to_string()), notes)?;
            repo::print_repos(s, &repos, RepoColumns::Docker);
        }
        DockerRepoCommand::Show(a) => {
            ensure_docker(s, &a.repo_id)?;
            repo::show(s, &a.repo_id)?;
        }
        DockerRepoCommand::Delete(a) => {
            ensure_docker(s, &a.repo.repo_id)?;
            repo::delete(s, &a.repo.repo_id, a.wait)?;
        }
        DockerRepoCommand::Sync(DockerSyncArgs {
            schedules: Some(SyncSubcommand::Schedules(cmd)),
            ..
        }) => crate::schedule::run_for_repo(s, "sync", cmd)?,
        DockerRepoCommand::Sync(a) => sync(s, a)?,
        DockerRepoCommand::Retain(DockerRetainArgs {
            schedules: Some(RetainSubcommand::Schedules(cmd)),
            ..
        }) => crate::schedule::run_for_repo(s, "retain", cmd)?,
        DockerRepoCommand::Retain(a) => retain(s, a)?,
        DockerRepoCommand::Publish(a) => {
            ensure_docker(s, &a.repo.repo_id)?;
            let done = repo::publish(s, &a.repo.repo_id, a.version, a.wait)?;
            print_pull_hint(s, done.as_ref());
        }
        DockerRepoCommand::Images(a) => images(s, &a.repo_id)?,
        DockerRepoCommand::Copy {
            from_repo_id,
            to_repo_id,
            images,
            wait,
        } => {
            ensure_docker(s, &from_repo_id)?;
            ensure_docker(s, &to_repo_id)?;
            let refs = images.references();
            let what = if refs.is_empty() {
                repo::Copied::Types(vec![])
            } else {
                repo::Copied::References(refs)
            };
            repo::copy(s, &from_repo_id, &to_repo_id, what, wait)?;
        }
        DockerRepoCommand::Remove { repo, images, wait } => {
            ensure_docker(s, &repo.repo_id)?;
            let refs = images.references();
            if refs.is_empty() {
                anyhow::bail!("name what to remove: --tag TAG or --manifest sha256:...");
            }
            repo::remove(s, &repo.repo_id, refs, wait)?;
        }
        DockerRepoCommand::Tag {
            repo,
            tag,
            manifest,
            from_tag,
            wait,
        } => {
            let id = &repo.repo_id;
            ensure_docker(s, id)?;
            let target = manifest.or(from_tag).expect("clap requires one");
            let t = s
                .client
                .tag(id, &tag, &target)
                .with_context(|| format!("cannot tag {target} as {tag} in repository {id}"))?;
            let done = crate::task::follow(s, t, wait, &format!("Tagging [{id}] {tag}"))?;
            repo::say_version(s, done.as_ref(), &format!("Made version of [{id}]:"));
        }
        DockerRepoCommand::Uploads(DockerUploadsCommand::Upload {
            repo,
            file,
            sending,
            wait,
        }) => {
            ensure_docker(s, &repo.repo_id)?;
            repo::upload_and_import(s, &repo.repo_id, &file, &Default::default(), sending, wait)?;
        }
    }
    Ok(())
}

/// Apply the retention settings now, and say which tags went (or would).
fn retain(s: &Session, a: DockerRetainArgs) -> anyhow::Result<()> {
    let id = &a.repo_id.context("give --repo-id")?;
    ensure_docker(s, id)?;
    let t = s
        .client
        .retain(id, a.dry_run)
        .with_context(|| format!("cannot apply the retention settings of repository {id}"))?;
    let what = if a.dry_run { "Checking" } else { "Applying" };
    let Some(done) = crate::task::follow(s, t, a.wait, &format!("{what} retention of [{id}]"))?
    else {
        return Ok(());
    };
    if s.output == OutputFormat::Json {
        return Ok(());
    }
    let result = done.result.unwrap_or_default();
    let removed: Vec<&str> = result["removed"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let verb = if a.dry_run { "Would remove" } else { "Removed" };
    let kept = result["kept"].as_u64().unwrap_or_default();
    output::say(if removed.is_empty() {
        format!("Nothing to remove from [{id}]: {kept} tags kept")
    } else {
        format!(
            "{verb} {} tags of [{id}]: {}; {kept} kept",
            removed.len(),
            removed.join(", ")
        )
    });
    Ok(())
}

/// Refuse to treat another content type's repository as a Docker one.
pub fn ensure_docker(s: &Session, id: &RepoId) -> anyhow::Result<()> {
    let detail = s.client.repo(id)?;
    let t = &detail.repo.content_type;
    if t != CONTENT_TYPE {
        anyhow::bail!("repository {id} holds {t} content, not docker; use `wharf repo ...` for it");
    }
    Ok(())
}

/// Sync, storing the given settings first: `pulp-admin docker repo sync
/// --repo-id rhel7 --feed registry.access.redhat.com --upstream-name rhel7`
/// creates and fills the repository in one command.
fn sync(s: &Session, a: DockerSyncArgs) -> anyhow::Result<()> {
    let id = &a.repo_id.clone().context("give --repo-id")?;
    a.settings.check()?;
    match s.client.repo(id) {
        Ok(d) if d.repo.content_type != CONTENT_TYPE => {
            anyhow::bail!(
                "repository {id} holds {} content, not docker; use `wharf repo sync`",
                d.repo.content_type
            );
        }
        Ok(_) if a.settings.is_empty() => {}
        Ok(_) => {
            let changes = a.settings.apply(RepoChanges::default(), Intent::Update);
            repo::update(s, id, changes)?;
        }
        Err(e) if e.is_not_found() && a.settings.feed.is_some() => {
            let changes = a.settings.apply(RepoChanges::default(), Intent::Create);
            repo::create(s, id.clone(), CONTENT_TYPE, changes)?;
        }
        Err(e) if e.is_not_found() => {
            anyhow::bail!(
                "cannot sync: repository {id} does not exist; to create it and sync in one step, give --feed URL and --upstream-name NAME"
            );
        }
        Err(e) => return Err(e.into()),
    }
    repo::sync(s, id, a.wait)?;
    Ok(())
}

/// After a publish: the command that pulls from it.
pub fn print_pull_hint(s: &Session, task: Option<&Task>) {
    let Some(name) = task
        .and_then(|t| t.result.as_ref())
        .and_then(|r| r.get("name"))
        .and_then(Value::as_str)
    else {
        return;
    };
    if s.output != OutputFormat::Table {
        return;
    }
    let server = s.client.server();
    let host = match (server.host_str(), server.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => return,
    };
    output::say(format!("Pull with: docker pull {host}/{name}:TAG"));
}

#[derive(serde::Serialize)]
struct Images {
    tags: Vec<Unit>,
    manifests: Vec<Unit>,
}

/// `images`: tags (name -> manifest) and the manifests themselves.
fn images(s: &Session, id: &RepoId) -> anyhow::Result<()> {
    ensure_docker(s, id)?;
    let images = Images {
        tags: s.client.units(id, "tag").context("cannot list tags")?,
        manifests: s
            .client
            .units(id, "manifest")
            .context("cannot list manifests")?,
    };
    if s.output == OutputFormat::Json {
        output::print_json(&images);
        return Ok(());
    }
    if images.tags.is_empty() && images.manifests.is_empty() {
        eprintln!("No images in repository {id}: sync it, or upload a `docker save` archive.");
        return Ok(());
    }
    let meta = |u: &Unit, k: &str| u.metadata.get(k).cloned().unwrap_or(Value::Null);
    let text = |v: Value| v.as_str().map(str::to_string).unwrap_or_default();
    let mut tags: Vec<Vec<String>> = images
        .tags
        .iter()
        .map(|u| vec![text(meta(u, "name")), text(meta(u, "manifest"))])
        .collect();
    tags.sort();
    output::print_table(&["tag", "manifest"], tags);
    output::say("");
    let rows = images
        .manifests
        .iter()
        .map(|u| {
            let layers = meta(u, "layers").as_array().map_or(0, Vec::len);
            let children = meta(u, "manifests").as_array().map_or(0, Vec::len);
            let platform = meta(u, "platform");
            let platform = [
                text(platform.get("os").cloned().unwrap_or(Value::Null)),
                text(platform.get("architecture").cloned().unwrap_or(Value::Null)),
            ]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("/");
            vec![
                u.key.clone(),
                text(meta(u, "media_type")),
                output::bytes(meta(u, "size").as_u64().unwrap_or(0)),
                if children > 0 {
                    format!("{children} manifests")
                } else {
                    format!("{layers} layers")
                },
                platform,
            ]
        })
        .collect();
    output::print_table(
        &["manifest", "media type", "size", "contents", "platform"],
        rows,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_flags_map_to_the_plugin_settings() {
        let args = DockerSettingsArgs {
            remote: Some("hub".into()),
            feed: Some("registry-1.docker.io".into()),
            upstream_name: Some("library/busybox".into()),
            upstream_username: Some("mirror".into()),
            upstream_password: Some("s3cret".into()),
            tag_include: vec!["1.*".into(), "latest".into()],
            tag_exclude: vec![],
            mirror: Some(false),
            repo_registry_id: Some("my/busybox".into()),
            redirect_url: Some("https://cdn.example/x".into()),
            auto_publish: Some(true),
            download_policy: Some("on_demand".into()),
            pull_through: Some(true),
            tag_freshness: Some(60),
            name_include: vec!["library/*".into()],
            name_exclude: vec![],
            retain_newest: Some(5),
            retain_within: Some(std::time::Duration::from_secs(86_400)),
            retain_tags: Some("v*".into()),
            retain_order: Some("name".into()),
            keep_all_tags: false,
        };
        assert!(args.check().is_ok());
        let c = args.apply(RepoChanges::default(), Intent::Create);
        assert_eq!(
            c.importer["retention"],
            serde_json::json!({"keep_newest": 5, "keep_within": 86400, "tags": "v*", "order": "name"})
        );
        assert_eq!(c.importer["download_policy"], "on_demand");
        assert_eq!(c.importer["remote"], "hub");
        assert_eq!(
            c.importer["include_names"],
            serde_json::json!(["library/*"])
        );
        assert!(!c.importer.contains_key("exclude_names"));
        assert_eq!(c.distributor["pull_through"], true);
        assert_eq!(c.distributor["tag_freshness"], 60);
        assert_eq!(c.importer["feed"], "https://registry-1.docker.io");
        assert_eq!(c.importer["upstream_name"], "library/busybox");
        assert_eq!(
            (&c.importer["username"], &c.importer["password"]),
            (&"mirror".into(), &"s3cret".into())
        );
        assert_eq!(
            c.importer["include_tags"],
            serde_json::json!(["1.*", "latest"])
        );
        assert!(!c.importer.contains_key("exclude_tags"));
        assert_eq!(c.importer["mirror"], false);
        assert_eq!(c.distributor["repo_registry_id"], "my/busybox");
        assert_eq!(c.distributor["redirect_url"], "https://cdn.example/x");
        assert_eq!(c.distributor["auto_publish"], true);
    }

    #[test]
    fn an_empty_glob_clears_the_list_on_update() {
        let args = DockerSettingsArgs {
            tag_include: vec![String::new()],
            redirect_url: Some(String::new()),
            ..Default::default()
        };
        let c = args.apply(RepoChanges::default(), Intent::Update);
        assert_eq!(c.importer["include_tags"], Value::Null);
        assert_eq!(c.distributor["redirect_url"], Value::Null);
    }
}
