//! `wharf publish-docker`: the seed's `pulp-publish-docker` in one command.
//!
//! ```text
//! docker save my/app | wharf publish-docker --id app --repo my/app --publish
//! wharf publish-docker --id app --repo my/app -f my-app.tar --publish
//! wharf publish-docker --id app --repo my/app          # create only
//! wharf publish-docker --id app --publish              # publish only
//! wharf publish-docker --list
//! ```
//!
//! It creates the repository if needed (registry name `--repo`, redirect
//! `-u`), uploads the archive from `-f` or stdin, imports it, and publishes
//! with `--publish`, saying what it did as `pulp-publish-docker` does.

use crate::Session;
use crate::docker::{self, CONTENT_TYPE};
use crate::output;
use crate::progress::Progress;
use crate::repo::{self, DescribeArgs, Intent, Note, RepoChanges, RepoColumns};
use crate::task::WaitArgs;
use crate::upload;
use anyhow::Context as _;
use clap::Args;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
use wharf_core::ids::RepoId;

#[derive(Args)]
#[command(after_help = "\
Upload: will create the repository if needed, optionally publish:
  docker save my/app | wharf publish-docker --id app --repo my/app --publish
  wharf publish-docker --id app --repo my/app -f /run/docker_uploads/my-app.tar --publish
Create the repository only:  wharf publish-docker --id app --repo my/app
Publish an existing one:     wharf publish-docker --id app --publish
List repositories:           wharf publish-docker --list")]
pub struct PublishDockerArgs {
    /// The Wharf repository id (letters, digits, '.', '-', '_').
    #[arg(short = 'i', long = "id", required_unless_present = "list")]
    pub id: Option<RepoId>,
    /// The Docker repository name for `docker pull <name>` [default: the id].
    #[arg(short = 'r', long = "repo", value_name = "NAME")]
    pub repo: Option<String>,
    /// The repository's description.
    #[arg(short = 'd', long)]
    pub description: Option<String>,
    /// The repository's display name.
    #[arg(short = 'n', long = "name", value_name = "DISPLAY_NAME")]
    pub display_name: Option<String>,
    /// A KEY=VALUE note on the repository (repeatable).
    #[arg(long = "note", value_name = "KEY=VALUE")]
    pub notes: Vec<Note>,
    /// Serve layers by redirecting to URL/<digest> instead of from this server.
    #[arg(short = 'u', long = "url", value_name = "URL")]
    pub redirect_url: Option<String>,
    /// The `docker save` archive to upload [default: stdin, when it is not
    /// a terminal].
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Publish the repository; with an upload, or alone.
    #[arg(short = 'p', long)]
    pub publish: bool,
    /// List the Docker repositories; used alone.
    #[arg(
        short = 'l',
        long,
        conflicts_with_all = ["id", "repo", "description", "display_name", "notes", "redirect_url", "file", "publish"]
    )]
    pub list: bool,
}

const RULE: &str = "+----------------------------------------------------------------------+";

/// A section title, framed as pulp-admin frames them.
fn banner(title: &str) {
    eprintln!("\n{RULE}\n{title:^72}\n{RULE}\n");
}

pub fn run(s: &Session, a: PublishDockerArgs) -> anyhow::Result<()> {
    if a.list {
        let repos = repo::list(s, Some(CONTENT_TYPE.to_string()), Vec::new())?;
        repo::print_repos(s, &repos, RepoColumns::Docker);
        return Ok(());
    }
    let id = a.id.clone().expect("clap requires --id without --list");
    let created = ensure_repository(s, &id, &a)?;

    // What to upload: the file, else whatever `docker save` pipes in.
    let spooled;
    let archive = match &a.file {
        Some(f) => Some((f.clone(), display_name(f))),
        None if !std::io::stdin().is_terminal() => {
            spooled = spool_stdin()?;
            spooled
                .as_ref()
                .map(|tmp| (tmp.path().to_path_buf(), "stdin".to_string()))
        }
        None => None,
    };
    let wait = WaitArgs { no_wait: false };
    if let Some((path, label)) = &archive {
        banner("Unit Upload");
        let task = upload::stream_import(&s.client, &id, path, label, &Default::default())?;
        crate::task::follow(s, task, wait, &format!("Importing into [{id}]"))?;
    }
    if a.publish {
        banner(&format!("Publishing Repository [{id}]"));
        let task = repo::publish(s, &id, None, wait)?;
        docker::print_pull_hint(s, task.as_ref());
    }
    if archive.is_none() && !a.publish && !created {
        output::say(format!(
            "Repository [{id}] is ready; nothing to upload: pipe `docker save` into this command or give -f FILE (and --publish to publish)"
        ));
    }
    Ok(())
}

fn display_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Create the repository, or bring the settings given here into the
/// existing one (only those that differ, so a repeated command is quiet).
/// Returns whether it was created.
fn ensure_repository(s: &Session, id: &RepoId, a: &PublishDockerArgs) -> anyhow::Result<bool> {
    let existing = match s.client.repo(id) {
        Ok(d) => d.repo,
        Err(e) if e.is_not_found() => {
            let describe = DescribeArgs {
                display_name: a.display_name.clone(),
                description: a.description.clone(),
                notes: a.notes.clone(),
                retain_versions: None,
            };
            let settings = docker::DockerSettingsArgs {
                repo_registry_id: a.repo.clone(),
                redirect_url: a.redirect_url.clone(),
                ..Default::default()
            };
            let changes = settings.apply(RepoChanges::new(describe), Intent::Create);
            repo::create(s, id.clone(), CONTENT_TYPE, changes)?;
            return Ok(true);
        }
        Err(e) => return Err(e).context(format!("cannot look up repository {id}")),
    };
    if existing.content_type != CONTENT_TYPE {
        anyhow::bail!(
            "repository {id} holds {} content, not docker; choose another --id",
            existing.content_type
        );
    }
    let differs = |given: &Option<String>, current: &str| {
        given
            .as_deref()
            .filter(|g| *g != current)
            .map(str::to_string)
    };
    let distributor = |key: &str| {
        existing
            .distributor_config
            .get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let describe = DescribeArgs {
        display_name: differs(&a.display_name, &existing.display_name),
        description: differs(&a.description, &existing.description),
        notes: a
            .notes
            .iter()
            .filter(|n| existing.notes.get(&n.key) != n.value.as_ref())
            .cloned()
            .collect(),
        retain_versions: None,
    };
    let settings = docker::DockerSettingsArgs {
        repo_registry_id: differs(&a.repo, &distributor("repo_registry_id")),
        redirect_url: differs(&a.redirect_url, &distributor("redirect_url")),
        ..Default::default()
    };
    let changes = settings.apply(RepoChanges::new(describe), Intent::Update);
    if !changes.is_empty() {
        repo::update(s, id, changes)?;
    }
    Ok(false)
}

/// Copy stdin to a temporary file, streaming: the upload needs its size up
/// front and a file it can re-read from any offset to resume. `None` when
/// stdin was empty.
fn spool_stdin() -> anyhow::Result<Option<tempfile::NamedTempFile>> {
    let mut tmp = tempfile::Builder::new()
        .prefix("wharf-docker-save-")
        .suffix(".tar")
        .tempfile()
        .context("cannot create a temporary file for stdin (set TMPDIR to a roomier place?)")?;
    let progress = Progress::bytes("Reading: stdin", None);
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("cannot read stdin"),
        };
        tmp.write_all(&buf[..n]).with_context(|| {
            format!(
                "cannot write {} (set TMPDIR to a roomier place?)",
                tmp.path().display()
            )
        })?;
        total += n as u64;
        progress.set_position(total);
    }
    tmp.flush()?;
    if total == 0 {
        progress.abandon();
        eprintln!("stdin was empty: nothing to upload");
        return Ok(None);
    }
    progress.finish("... completed");
    Ok(Some(tmp))
}
