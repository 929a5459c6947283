//! `wharf repo ...`: repositories of any content type, with the content
//! type's settings as JSON (`--importer-config`, `--distributor-config`).
//! The operations here are shared with `wharf docker repo` and
//! `wharf publish-docker`, which only spell the settings differently.

use crate::Session;
use crate::api::{NewRepo, RepoDetail, RepoFilter, RepoPatch};
use crate::output::{self, OutputFormat};
use crate::task::{self, WaitArgs};
use crate::upload;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use wharf_core::ids::{RepoId, UploadId};
use wharf_store::db::{Notes, Repository, Task};

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Create a repository of a content type.
    Create(CreateArgs),
    /// Change a repository's description, notes or settings.
    Update(UpdateArgs),
    /// List repositories.
    List(ListArgs),
    /// A repository's settings, content counts and publications.
    Show(RepoIdArg),
    /// Delete a repository (its content stays while other repositories hold it).
    Delete(RepoTaskArgs),
    /// Fetch the repository's content from its feed.
    Sync(RepoTaskArgs),
    /// Make a version of the repository (the latest by default) what
    /// clients see; publishing an older one rolls back.
    Publish(PublishArgs),
    /// Copy content from one repository into another (metadata only: no
    /// bytes are duplicated), as a new version of the target.
    Copy(CopyArgs),
    /// Take content out of a repository, as a new version.
    Remove(RemoveArgs),
    /// A repository's versions: list, show, diff, restore.
    #[command(subcommand)]
    Versions(crate::version::VersionsCommand),
    /// List a repository's units of one type.
    Content(ContentArgs),
    /// Upload files into a repository.
    #[command(subcommand)]
    Uploads(UploadsCommand),
    /// Repository groups: named sets of repositories.
    #[command(subcommand)]
    Group(crate::group::GroupCommand),
}

#[derive(Args)]
pub struct RepoIdArg {
    /// The repository's id (letters, digits, '.', '-', '_').
    #[arg(long)]
    pub repo_id: RepoId,
}

#[derive(Args)]
pub struct RepoTaskArgs {
    #[command(flatten)]
    pub repo: RepoIdArg,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// What describes a repository to people, and how much of its history it
/// keeps.
#[derive(Args, Default)]
pub struct DescribeArgs {
    /// A name for people [default on create: the id].
    #[arg(long)]
    pub display_name: Option<String>,
    /// What it is for.
    #[arg(long)]
    pub description: Option<String>,
    /// A KEY=VALUE note (repeatable); on update, `KEY=` removes the note.
    #[arg(long = "note", value_name = "KEY=VALUE")]
    pub notes: Vec<Note>,
    /// Keep the newest N versions (older ones go when the next version is
    /// made); `all` keeps every version [default: all].
    #[arg(long, value_name = "N|all")]
    pub retain_versions: Option<RetainVersions>,
}

/// `--retain-versions`: a number of versions, or `all`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetainVersions(pub Option<u64>);

impl std::str::FromStr for RetainVersions {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(RetainVersions(None)),
            n => match n.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(RetainVersions(Some(n))),
                _ => Err(format!(
                    "{s:?} is not a number of versions: give 1 or more, or `all`"
                )),
            },
        }
    }
}

/// The settings of any content type: the common ones as flags, the rest as
/// JSON objects.
#[derive(Args)]
pub struct SettingsArgs {
    /// The upstream to sync from (importer_config.feed); a bare host name
    /// means https://. On update, '' removes it.
    #[arg(long, value_name = "URL")]
    pub feed: Option<String>,
    /// The repository to sync from the feed (importer_config.upstream_name).
    #[arg(long, value_name = "NAME")]
    pub upstream_name: Option<String>,
    /// Importer settings as a JSON object; on update, merged key by key
    /// (a null value removes a key).
    #[arg(long, value_name = "JSON")]
    pub importer_config: Option<JsonObject>,
    /// Distributor (publish) settings as a JSON object; merged on update.
    #[arg(long, value_name = "JSON")]
    pub distributor_config: Option<JsonObject>,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The content type (`wharf status` lists the server's).
    #[arg(long = "type", value_name = "TYPE")]
    pub content_type: String,
    #[command(flatten)]
    pub repo: RepoIdArg,
    #[command(flatten)]
    pub describe: DescribeArgs,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub repo: RepoIdArg,
    #[command(flatten)]
    pub describe: DescribeArgs,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only repositories of this content type.
    #[arg(long = "type", value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Only repositories with this note (repeatable: all must match).
    #[arg(long = "note", value_name = "KEY=VALUE")]
    pub notes: Vec<Note>,
}

#[derive(Args)]
pub struct CopyArgs {
    /// The repository to copy from.
    #[arg(long)]
    pub from_repo_id: RepoId,
    /// The repository to copy into (of the same content type).
    #[arg(long)]
    pub to_repo_id: RepoId,
    /// Copy only units of this type (repeatable) [default: all].
    #[arg(long = "type-unit", value_name = "UNIT_TYPE")]
    pub unit_types: Vec<String>,
    /// Copy only this (repeatable), with what it needs: a tag, digest or
    /// name in the content type's words.
    #[arg(long = "reference", value_name = "REF", conflicts_with = "unit_types")]
    pub references: Vec<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub repo: RepoIdArg,
    /// The version to publish [default: the latest]; an older one rolls
    /// back what clients see.
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub repo: RepoIdArg,
    /// What to take out (repeatable): a tag, digest or name in the content
    /// type's words.
    #[arg(long = "reference", value_name = "REF", required = true)]
    pub references: Vec<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Args)]
pub struct ContentArgs {
    #[command(flatten)]
    pub repo: RepoIdArg,
    /// The unit type (e.g. tag, manifest, blob for docker).
    #[arg(long = "type", value_name = "UNIT_TYPE")]
    pub unit_type: String,
    /// What a version held [default: the latest].
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
}

#[derive(Subcommand)]
pub enum UploadsCommand {
    /// Upload a file and import it into a repository (while it arrives;
    /// with --resumable, in resumable chunks imported once all there).
    Upload(UploadArgs),
}

#[derive(Args)]
pub struct UploadArgs {
    #[command(flatten)]
    pub repo: RepoIdArg,
    /// The file to upload.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// A KEY=VALUE import parameter for the content type (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<Param>,
    #[command(flatten)]
    pub sending: SendingArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// How a file goes to the server.
#[derive(Args, Clone, Default)]
pub struct SendingArgs {
    /// Send the file as a resumable upload in 8 MiB chunks, imported once
    /// it is all there (survives a broken connection, but the server writes
    /// the bytes twice). By default the file is the body of one request and
    /// imported while it arrives.
    #[arg(long)]
    pub resumable: bool,
    /// Go on with a resumable upload that stopped part-way (its id is in
    /// the error).
    #[arg(long, value_name = "UPLOAD_ID", value_parser = crate::upload::parse_upload_id)]
    pub resume: Option<UploadId>,
}

/// `--note KEY=VALUE`; an empty value means "remove" on update.
#[derive(Clone, Debug)]
pub struct Note {
    pub key: String,
    pub value: Option<String>,
}

impl std::str::FromStr for Note {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = s
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
        Ok(Note {
            key: key.to_string(),
            value: (!value.is_empty()).then(|| value.to_string()),
        })
    }
}

/// `--param KEY=VALUE`, handed to the content type's importer as a string.
#[derive(Clone, Debug)]
pub struct Param {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for Param {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = s
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
        Ok(Param {
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

/// A JSON object given on the command line.
#[derive(Clone, Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl std::str::FromStr for JsonObject {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match serde_json::from_str(s) {
            Ok(Value::Object(m)) => Ok(JsonObject(m)),
            Ok(_) => Err("must be a JSON object, e.g. '{\"key\": \"value\"}'".into()),
            Err(e) => Err(format!("not valid JSON: {e}")),
        }
    }
}

/// Whether flags describe a new repository or changes to one: on update an
/// empty value removes a setting, on create it is a mistake.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Create,
    Update,
}

/// Everything a create or update sets, whichever flags spelled it.
#[derive(Default)]
pub struct RepoChanges {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub notes: Vec<Note>,
    pub retain_versions: Option<RetainVersions>,
    pub importer: Map<String, Value>,
    pub distributor: Map<String, Value>,
}

impl RepoChanges {
    pub fn new(describe: DescribeArgs) -> Self {
        RepoChanges {
            display_name: describe.display_name,
            description: describe.description,
            notes: describe.notes,
            retain_versions: describe.retain_versions,
            ..Default::default()
        }
    }

    /// Set a string setting; on update an empty value removes it.
    pub fn set(map: &mut Map<String, Value>, key: &str, value: Option<String>, intent: Intent) {
        if let Some(v) = value {
            let v = if v.is_empty() && intent == Intent::Update {
                Value::Null
            } else {
                Value::String(v)
            };
            map.insert(key.to_string(), v);
        }
    }

    /// The generic settings flags, the named ones overriding the JSON.
    pub fn with_settings(mut self, s: SettingsArgs, intent: Intent) -> Self {
        if let Some(JsonObject(m)) = s.importer_config {
            self.importer.extend(m);
        }
        if let Some(JsonObject(m)) = s.distributor_config {
            self.distributor.extend(m);
        }
        Self::set(&mut self.importer, "feed", s.feed.map(feed_url), intent);
        Self::set(&mut self.importer, "upstream_name", s.upstream_name, intent);
        self
    }

    fn into_new(self, id: RepoId, content_type: String) -> anyhow::Result<NewRepo> {
        let mut notes = Notes::new();
        for n in self.notes {
            let value = n.value.with_context(|| {
                format!("note {:?} has no value; give --note {}=VALUE", n.key, n.key)
            })?;
            notes.insert(n.key, value);
        }
        Ok(NewRepo {
            id,
            content_type,
            display_name: self.display_name,
            description: self.description.unwrap_or_default(),
            notes,
            importer_config: self.importer,
            distributor_config: self.distributor,
            retain_versions: self.retain_versions.and_then(|r| r.0),
        })
    }

    fn into_patch(self) -> RepoPatch {
        RepoPatch {
            display_name: self.display_name,
            description: self.description,
            notes: self.notes.into_iter().map(|n| (n.key, n.value)).collect(),
            importer_config: self.importer,
            distributor_config: self.distributor,
            retain_versions: self.retain_versions.map(|r| r.0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.display_name.is_none()
            && self.description.is_none()
            && self.retain_versions.is_none()
            && self.notes.is_empty()
            && self.importer.is_empty()
            && self.distributor.is_empty()
    }
}

/// A feed as the importer wants it: `registry.example.com` is short for
/// `https://registry.example.com` (the seed syncs `--feed
/// registry.access.redhat.com`); '' is kept, to remove the feed.
pub fn feed_url(feed: String) -> String {
    if feed.is_empty() || feed.contains("://") {
        feed
    } else {
        format!("https://{feed}")
    }
}

pub fn run(s: &Session, cmd: RepoCommand) -> anyhow::Result<()> {
    match cmd {
        RepoCommand::Create(a) => {
            let changes = RepoChanges::new(a.describe).with_settings(a.settings, Intent::Create);
            create(s, a.repo.repo_id, &a.content_type, changes)?;
        }
        RepoCommand::Update(a) => {
            let changes = RepoChanges::new(a.describe).with_settings(a.settings, Intent::Update);
            update(s, &a.repo.repo_id, changes)?;
        }
        RepoCommand::List(a) => {
            let repos = list(s, a.content_type, a.notes)?;
            print_repos(s, &repos, RepoColumns::Generic);
        }
        RepoCommand::Show(a) => {
            show(s, &a.repo_id)?;
        }
        RepoCommand::Delete(a) => delete(s, &a.repo.repo_id, a.wait)?,
        RepoCommand::Sync(a) => {
            sync(s, &a.repo.repo_id, a.wait)?;
        }
        RepoCommand::Publish(a) => {
            publish(s, &a.repo.repo_id, a.version, a.wait)?;
        }
        RepoCommand::Copy(a) => {
            let what = if a.references.is_empty() {
                Copied::Types(a.unit_types)
            } else {
                Copied::References(a.references)
            };
            copy(s, &a.from_repo_id, &a.to_repo_id, what, a.wait)?
        }
        RepoCommand::Remove(a) => remove(s, &a.repo.repo_id, a.references, a.wait)?,
        RepoCommand::Versions(c) => crate::version::run(s, c)?,
        RepoCommand::Content(a) => content(s, &a.repo.repo_id, &a.unit_type, a.version)?,
        RepoCommand::Uploads(UploadsCommand::Upload(a)) => {
            let params = a
                .params
                .into_iter()
                .map(|p| (p.key, Value::String(p.value)))
                .collect();
            upload_and_import(s, &a.repo.repo_id, &a.file, &params, a.sending, a.wait)?;
        }
        RepoCommand::Group(c) => crate::group::run(s, c)?,
    }
    Ok(())
}

pub fn create(
    s: &Session,
    id: RepoId,
    content_type: &str,
    changes: RepoChanges,
) -> anyhow::Result<Repository> {
    let new = changes.into_new(id, content_type.to_string())?;
    let repo = s.client.create_repo(&new).map_err(|e| match e.api() {
        Some(f) if f.code == "conflict" => anyhow::anyhow!(
            "cannot create repository {}: {}; change it with `wharf repo update --repo-id {}`",
            new.id,
            f.message,
            new.id
        ),
        _ => anyhow::Error::new(e).context(format!("cannot create repository {}", new.id)),
    })?;
    match s.output {
        OutputFormat::Json => output::print_json(&repo),
        OutputFormat::Table => {
            output::say(format!("Repository [{}] successfully created", repo.id))
        }
    }
    Ok(repo)
}

pub fn update(s: &Session, id: &RepoId, changes: RepoChanges) -> anyhow::Result<Repository> {
    if changes.is_empty() {
        anyhow::bail!(
            "nothing to update in repository {id}: give at least one setting (see --help)"
        );
    }
    let repo = s
        .client
        .update_repo(id, &changes.into_patch())
        .with_context(|| format!("cannot update repository {id}"))?;
    match s.output {
        OutputFormat::Json => output::print_json(&repo),
        OutputFormat::Table => {
            output::say(format!("Repository [{}] successfully updated", repo.id))
        }
    }
    Ok(repo)
}

pub fn list(
    s: &Session,
    content_type: Option<String>,
    notes: Vec<Note>,
) -> anyhow::Result<Vec<Repository>> {
    let mut filter = RepoFilter {
        content_type,
        notes: Notes::new(),
    };
    for n in notes {
        let value = n.value.unwrap_or_default();
        // The server takes note filters as one comma-separated list.
        if value.contains(',') {
            anyhow::bail!("a --note filter cannot contain ',' (in {}={value})", n.key);
        }
        filter.notes.insert(n.key, value);
    }
    s.client
        .list_repos(&filter)
        .context("cannot list repositories")
}

/// Which columns a repository table has.
#[derive(Clone, Copy)]
pub enum RepoColumns {
    /// Any content type: the type and the feed.
    Generic,
    /// Docker: the name `docker pull` uses, the feed and upstream name.
    Docker,
}

fn config_str<'a>(config: &'a Value, key: &str) -> &'a str {
    config.get(key).and_then(Value::as_str).unwrap_or("")
}

pub fn print_repos(s: &Session, repos: &[Repository], columns: RepoColumns) {
    if s.output == OutputFormat::Json {
        return output::print_json(&repos);
    }
    if repos.is_empty() {
        eprintln!("No repositories.");
        return;
    }
    let (headers, rows): (&[&str], Vec<Vec<String>>) = match columns {
        RepoColumns::Generic => (
            &["id", "type", "display name", "feed", "notes"],
            repos
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.content_type.clone(),
                        r.display_name.clone(),
                        config_str(&r.importer_config, "feed").to_string(),
                        output::notes(&r.notes),
                    ]
                })
                .collect(),
        ),
        RepoColumns::Docker => (
            &[
                "id",
                "registry id",
                "display name",
                "feed",
                "upstream name",
                "notes",
            ],
            repos
                .iter()
                .map(|r| {
                    let registry_id = match config_str(&r.distributor_config, "repo_registry_id") {
                        "" => r.id.to_string(),
                        name => name.to_string(),
                    };
                    vec![
                        r.id.to_string(),
                        registry_id,
                        r.display_name.clone(),
                        config_str(&r.importer_config, "feed").to_string(),
                        config_str(&r.importer_config, "upstream_name").to_string(),
                        output::notes(&r.notes),
                    ]
                })
                .collect(),
        ),
    };
    output::print_table(headers, rows);
}

pub fn show(s: &Session, id: &RepoId) -> anyhow::Result<RepoDetail> {
    let d = s.client.repo(id)?;
    match s.output {
        OutputFormat::Json => output::print_json(&d),
        OutputFormat::Table => {
            let r = &d.repo;
            let counts = d
                .content_counts
                .iter()
                .map(|(t, n)| format!("{t}: {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let publications = d
                .publications
                .iter()
                .map(|p| {
                    let version = p
                        .version
                        .map_or(String::new(), |n| format!("version {n}, "));
                    format!("{} ({version}by {}, {})", p.name, p.plugin, p.published_at)
                })
                .collect::<Vec<_>>()
                .join("\n");
            output::print_details(&[
                ("Id", r.id.to_string()),
                ("Type", r.content_type.clone()),
                ("Display Name", r.display_name.clone()),
                ("Description", r.description.clone()),
                ("Notes", output::notes(&r.notes)),
                (
                    "Latest Version",
                    d.latest_version.map_or("none".into(), |n| n.to_string()),
                ),
                (
                    "Keeps Versions",
                    r.retain_versions
                        .map_or("all".into(), |n| format!("the newest {n}")),
                ),
                ("Importer", r.importer_config.to_string()),
                ("Distributor", r.distributor_config.to_string()),
                (
                    "Content",
                    if counts.is_empty() {
                        "none".into()
                    } else {
                        counts
                    },
                ),
                (
                    "Published",
                    if publications.is_empty() {
                        "never".into()
                    } else {
                        publications
                    },
                ),
                ("Created", r.created_at.to_string()),
                ("Updated", r.updated_at.to_string()),
            ]);
        }
    }
    Ok(d)
}

pub fn delete(s: &Session, id: &RepoId, wait: WaitArgs) -> anyhow::Result<()> {
    let t = s
        .client
        .delete_repo(id)
        .with_context(|| format!("cannot delete repository {id}"))?;
    if task::follow(s, t, wait, &format!("Deleting [{id}]"))?.is_some()
        && s.output == OutputFormat::Table
    {
        output::say(format!("Repository [{id}] successfully deleted"));
    }
    Ok(())
}

pub fn sync(s: &Session, id: &RepoId, wait: WaitArgs) -> anyhow::Result<Option<Task>> {
    let t = s
        .client
        .sync_repo(id)
        .with_context(|| format!("cannot sync repository {id}"))?;
    task::follow(s, t, wait, &format!("Synchronizing [{id}]"))
}

/// Publish a version (the latest when `None`); returns the finished task,
/// whose result names the publication and the version.
pub fn publish(
    s: &Session,
    id: &RepoId,
    version: Option<u64>,
    wait: WaitArgs,
) -> anyhow::Result<Option<Task>> {
    let t = s
        .client
        .publish_repo(id, version)
        .with_context(|| format!("cannot publish repository {id}"))?;
    let what = match version {
        Some(n) => format!("Publishing version {n} of [{id}]"),
        None => format!("Publishing [{id}]"),
    };
    let done = task::follow(s, t, wait, &what)?;
    say_version(s, done.as_ref(), "Published version");
    Ok(done)
}

/// After a task that made or published a version: which one.
pub fn say_version(s: &Session, done: Option<&Task>, what: &str) {
    let n = done
        .and_then(|t| t.result.as_ref())
        .and_then(|r| r.get("version"));
    if s.output == OutputFormat::Table {
        match n.and_then(Value::as_u64) {
            Some(n) => output::say(format!("{what} {n}")),
            None if n.is_some() => output::say("Nothing changed: no new version"),
            None => {}
        }
    }
}

/// What a copy takes.
pub enum Copied {
    /// Every unit of these types (all when empty).
    Types(Vec<String>),
    /// These tags, digests or names, with what each needs.
    References(Vec<String>),
}

pub fn copy(
    s: &Session,
    from: &RepoId,
    to: &RepoId,
    what: Copied,
    wait: WaitArgs,
) -> anyhow::Result<()> {
    let t = match &what {
        Copied::Types(types) => s.client.copy_units(from, to, types),
        Copied::References(refs) => s.client.copy_references(from, to, refs),
    }
    .with_context(|| format!("cannot copy from repository {from} into {to}"))?;
    let done = task::follow(s, t, wait, &format!("Copying [{from}] into [{to}]"))?;
    say_version(s, done.as_ref(), &format!("Made version of [{to}]:"));
    Ok(())
}

/// Take references out of a repository, as a new version.
pub fn remove(
    s: &Session,
    id: &RepoId,
    references: Vec<String>,
    wait: WaitArgs,
) -> anyhow::Result<()> {
    let t = s
        .client
        .remove_references(id, &references)
        .with_context(|| format!("cannot remove content from repository {id}"))?;
    let done = task::follow(s, t, wait, &format!("Removing from [{id}]"))?;
    say_version(s, done.as_ref(), &format!("Made version of [{id}]:"));
    Ok(())
}

fn content(s: &Session, id: &RepoId, unit_type: &str, version: Option<u64>) -> anyhow::Result<()> {
    let units = s.client.version_units(id, unit_type, version)?;
    match s.output {
        OutputFormat::Json => output::print_json(&units),
        OutputFormat::Table if units.is_empty() => {
            eprintln!("No {unit_type} units in repository {id}.")
        }
        OutputFormat::Table => output::print_table(
            &["key", "blobs", "metadata"],
            units
                .iter()
                .map(|u| {
                    vec![
                        u.key.clone(),
                        u.blobs.len().to_string(),
                        output::compact_json(&u.metadata, 100),
                    ]
                })
                .collect(),
        ),
    }
    Ok(())
}

/// Send a file and import it into a repository: by default as the body of
/// a streaming import (which ends with its request), else as a resumable
/// upload whose import task is followed unless `--no-wait`.
pub fn upload_and_import(
    s: &Session,
    repo: &RepoId,
    file: &Path,
    params: &Map<String, Value>,
    sending: SendingArgs,
    wait: WaitArgs,
) -> anyhow::Result<Option<Task>> {
    // Find out now, not after sending gigabytes, that the repository is wrong.
    s.client.repo(repo)?;
    let label = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string());
    if !sending.resumable && sending.resume.is_none() {
        let task = upload::stream_import(&s.client, repo, file, &label, params)?;
        return task::follow(s, task, wait, &format!("Importing into [{repo}]"));
    }
    let upload = upload::upload_file(&s.client, file, &label, sending.resume)?;
    import(s, repo, &upload.id, params, wait)
}

/// Import a complete upload. If the import task fails, the upload is
/// discarded: the content type rejected those bytes, so keeping them for a
/// `--resume` would not help.
pub fn import(
    s: &Session,
    repo: &RepoId,
    upload: &UploadId,
    params: &Map<String, Value>,
    wait: WaitArgs,
) -> anyhow::Result<Option<Task>> {
    if s.output == OutputFormat::Table {
        eprintln!("Importing into the repository...");
    }
    let outcome = s
        .client
        .import_upload(repo, upload, params)
        .with_context(|| format!("cannot import upload {upload} into repository {repo}"))
        .and_then(|t| task::follow(s, t, wait, &format!("Importing into [{repo}]")));
    if let Err(e) = &outcome
        && e.downcast_ref::<task::TaskFailed>().is_some()
    {
        let _ = s.client.delete_upload(upload);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_and_params() {
        let n: Note = "env=prod".parse().unwrap();
        assert_eq!((n.key.as_str(), n.value.as_deref()), ("env", Some("prod")));
        let n: Note = "env=".parse().unwrap();
        assert_eq!(n.value, None, "an empty value removes the note");
        assert!("=x".parse::<Note>().is_err());
        assert!("novalue".parse::<Note>().is_err());
        let p: Param = "path=a=b".parse().unwrap();
        assert_eq!((p.key.as_str(), p.value.as_str()), ("path", "a=b"));
    }

    #[test]
    fn feeds_default_to_https() {
        assert_eq!(
            feed_url("registry.access.redhat.com".into()),
            "https://registry.access.redhat.com"
        );
        assert_eq!(feed_url("http://h:5000".into()), "http://h:5000");
        assert_eq!(feed_url(String::new()), "");
    }

    #[test]
    fn empty_values_remove_settings_on_update_only() {
        let settings = || SettingsArgs {
            feed: Some(String::new()),
            upstream_name: Some("library/busybox".into()),
            importer_config: Some(r#"{"feed": "x", "other": 1}"#.parse().unwrap()),
            distributor_config: None,
        };
        let c = RepoChanges::default().with_settings(settings(), Intent::Update);
        assert_eq!(c.importer["feed"], Value::Null);
        assert_eq!(c.importer["upstream_name"], "library/busybox");
        assert_eq!(c.importer["other"], 1);
        let c = RepoChanges::default().with_settings(settings(), Intent::Create);
        assert_eq!(c.importer["feed"], "");
    }

    #[test]
    fn a_note_without_value_is_refused_on_create() {
        let c = RepoChanges::new(DescribeArgs {
            notes: vec!["env=".parse().unwrap()],
            ..Default::default()
        });
        let err = c
            .into_new("r".parse().unwrap(), "docker".into())
            .unwrap_err();
        assert!(err.to_string().contains("--note env=VALUE"), "{err}");
    }
}
